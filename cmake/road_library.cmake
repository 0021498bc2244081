# cmake/road_library.cmake - how road's libraries are put together (included by the top
# CMakeLists.txt; the cut itself is written there and in docs/architecture.md, "Libraries").
#
# Each layer group is compiled once, as an OBJECT library, and every library is linked from the
# object files of its group and of all the groups below it. So libroad-serve contains libroad,
# which contains libroad-core: a program links exactly one of them. They cannot be stacked
# (libroad-serve.so on top of libroad.so) because only ROAD_API functions are exported, and
# the upper layers call the lower layers' internal ones (road_malloc, road_error, the JSON
# helpers); exporting those would make them part of the ABI.

# road_add_objects(<target> SOURCES <file>... DEPS <dependency>...)
# One layer group's object files: position independent (they go into the shared libraries
# too), hidden symbols except ROAD_API. DEPS give the group its include paths and flags only:
# a group that includes a dependency it does not declare fails to compile where that
# dependency's headers are not on the default path.
function(road_add_objects target)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${target} OBJECT ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_definitions(${target} PRIVATE ROAD_BUILDING_LIBRARY ROAD_VERSION="${PROJECT_VERSION}")
  target_link_libraries(${target} PRIVATE ${ARG_DEPS})
endfunction()

# road_link_items(<out-var> <dependency>...)
# The dependencies as plain link items (library paths and flags) for the installed static
# libraries, so that road's CMake package needs no find_package of its own to use them: an
# imported target is replaced by what it links, one level down (pkg-config's and FindOpenMP's
# targets are flat).
function(road_link_items out)
  set(items)
  foreach(dep ${ARGN})
    if(TARGET ${dep})
      get_target_property(libs ${dep} INTERFACE_LINK_LIBRARIES)
      if(libs)
        foreach(lib ${libs})
          # FindOpenMP lists Threads::Threads; it is a flag or nothing (glibc >= 2.34).
          if(lib STREQUAL "Threads::Threads")
            set(lib ${CMAKE_THREAD_LIBS_INIT})
          endif()
          list(APPEND items ${lib})
        endforeach()
      endif()
      if(dep STREQUAL "Threads::Threads")
        list(APPEND items ${CMAKE_THREAD_LIBS_INIT})
      endif()
    else()
      list(APPEND items ${dep})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES items)
  set(${out} ${items} PARENT_SCOPE)
endfunction()

# road_add_library(<name> OUTPUT_NAME <file name> EXPORT_NAME <name in road::>
#                  OBJECTS <object library>... DEPS <dependency>...)
# <name>_static and <name>_shared, both lib<OUTPUT_NAME>, exported as road::<EXPORT_NAME>
# (shared) and road::<EXPORT_NAME>_static. In this build tree the dependencies are public (the
# CLI, tests and benchmarks include cJSON, OpenBLAS and libmicrohttpd headers themselves);
# installed, the shared library hides them and the static one lists them as plain link items.
function(road_add_library name)
  cmake_parse_arguments(ARG "" "OUTPUT_NAME;EXPORT_NAME" "OBJECTS;DEPS" ${ARGN})
  set(objects)
  foreach(obj ${ARG_OBJECTS})
    list(APPEND objects $<TARGET_OBJECTS:${obj}>)
  endforeach()
  road_link_items(installed_deps ${ARG_DEPS})

  add_library(${name}_static STATIC ${objects})
  add_library(${name}_shared SHARED ${objects})
  set_target_properties(${name}_static PROPERTIES OUTPUT_NAME ${ARG_OUTPUT_NAME}
                        EXPORT_NAME ${ARG_EXPORT_NAME}_static)
  set_target_properties(${name}_shared PROPERTIES OUTPUT_NAME ${ARG_OUTPUT_NAME}
                        EXPORT_NAME ${ARG_EXPORT_NAME}
                        VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
  foreach(t ${name}_static ${name}_shared)
    target_include_directories(${t} PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>
                               $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    target_link_libraries(${t} PUBLIC "$<BUILD_INTERFACE:${ARG_DEPS}>")
  endforeach()
  target_link_libraries(${name}_static INTERFACE "$<INSTALL_INTERFACE:${installed_deps}>")
  # The shared library must resolve every symbol itself: this is what proves the cut (an object
  # of road-core calling into the adapter manager, or needing PCRE2, fails to link here).
  # Clang's sanitizer runtimes are linked into executables only, so not under ROAD_SANITIZE.
  if(NOT ROAD_SANITIZE)
    target_link_options(${name}_shared PRIVATE LINKER:--no-undefined)
  endif()
endfunction()

# road_check_sources_assigned(<all library sources>...)
# Every .c under src/ outside cli/ must belong to a library: a new layer folder would otherwise
# be left out silently and fail only where something calls into it.
function(road_check_sources_assigned)
  file(GLOB_RECURSE all CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/*.c)
  list(FILTER all EXCLUDE REGEX "/src/cli/")
  if(ARGN)
    list(REMOVE_ITEM all ${ARGN})
  endif()
  if(all)
    string(REPLACE ";" "\n  " all "${all}")
    message(FATAL_ERROR "road: these sources belong to no library (give their layer one in "
                        "CMakeLists.txt, 'the libraries'):\n  ${all}")
  endif()
endfunction()
