# cmake/road_install.cmake - install rules (included by the top CMakeLists.txt after the
# libraries and the road command are defined): the three libraries (static and shared),
# include/road/, the road command, a pkg-config file per library and the CMake package
# (find_package(road): road::core, road::road, road::serve). The ctest `install` test
# (tests/install/) installs into a temporary prefix and builds programs against both.
include(CMakePackageConfigHelpers)

set(ROAD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/road)
set(ROAD_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(TARGETS road RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS road_core_static road_core_shared road_static road_shared
                road_serve_static road_serve_shared
        EXPORT roadTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/road DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# ---- pkg-config ------------------------------------------------------------------------------
# A shared link (pkg-config --libs road) gets -lroad alone; a static one (--static) gets what
# libroad.a needs in Libs.private: each dependency as this build linked it (its own
# `pkg-config --libs`), not as Requires.private. Requires.private would also pull each
# dependency's static closure (openblas.pc: gfortran; libmicrohttpd.pc: GnuTLS and its
# libraries), which only a link of those libraries themselves as archives needs, and which
# Debian's -dev packages do not install: on Debian 12 `pkg-config --static --libs road-serve`
# then fails on -lgfortran and -lunistring.
set(ROAD_PC_COMMON_LIBS)
if(ROAD_OPENMP)
  foreach(lib ${OpenMP_C_LIB_NAMES})
    list(APPEND ROAD_PC_COMMON_LIBS -l${lib})
  endforeach()
endif()
list(APPEND ROAD_PC_COMMON_LIBS ${CMAKE_THREAD_LIBS_INIT} -lm)
# road_pc_libs(<out-var> <pkg-config module prefix>...): Libs.private for those modules.
function(road_pc_libs out)
  set(flags)
  foreach(pkg ${ARGN})
    if(pkg STREQUAL "OPENBLAS" AND ROAD_OPENBLAS_OPENMP AND ROAD_OPENBLAS_DIR)
      # the OpenMP OpenBLAS this build linked by path (openblas.pc may name the pthreads one)
      list(APPEND flags -L${ROAD_OPENBLAS_DIR} -lopenblas)
    else()
      list(APPEND flags ${${pkg}_LDFLAGS})
    endif()
  endforeach()
  list(APPEND flags ${ROAD_PC_COMMON_LIBS})
  list(REMOVE_DUPLICATES flags)
  string(REPLACE ";" " " flags "${flags}")
  set(${out} "${flags}" PARENT_SCOPE)
endfunction()

# Paths inside the .pc file are relative to the file's own folder (${pcfiledir}), so the tree
# may be installed with `cmake --install --prefix` elsewhere than configured, or moved.
file(RELATIVE_PATH ROAD_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" ROAD_PC_TO_PREFIX "${ROAD_PC_TO_PREFIX}")

# road_install_pc(<name> <description> <pkg-config module prefix>...)
function(road_install_pc name description)
  set(ROAD_PC_NAME ${name})
  set(ROAD_PC_DESCRIPTION "${description}")
  road_pc_libs(ROAD_PC_LIBS_PRIVATE ${ARGN})
  configure_file(${CMAKE_SOURCE_DIR}/cmake/road.pc.in ${CMAKE_BINARY_DIR}/pkgconfig/${name}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/${name}.pc DESTINATION ${ROAD_PKGCONFIG_DIR})
endfunction()
road_install_pc(road-core
  "RoAd kernels and adapted linear layer, quantized weights, safetensors and JSON" ${ROAD_CORE_PKGS})
road_install_pc(road
  "RoAd adapters for Llama-family models: adapter manager, model, tokenizer, training" ${ROAD_PKGS})
road_install_pc(road-serve
  "road with its serving engine and OpenAI-compatible HTTP server" ${ROAD_SERVE_PKGS})

# ---- CMake package ----------------------------------------------------------------------------
install(EXPORT roadTargets NAMESPACE road:: DESTINATION ${ROAD_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/roadConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/roadConfig.cmake INSTALL_DESTINATION ${ROAD_CMAKE_DIR})
# 0.x: a minor version may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/roadConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/roadConfig.cmake ${CMAKE_BINARY_DIR}/cmake/roadConfigVersion.cmake
        DESTINATION ${ROAD_CMAKE_DIR})
