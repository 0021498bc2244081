# tests/demo_check.cmake - runs `road demo --quick` and checks its report:
#   - every task: the adapter's exact match beats the base's by at least MARGIN (absolute);
#   - the adapter merged into the weights gives the unmerged adapter's answers (all of them:
#     greedy decoding of the same function; merge changes logits by float rounding only).
# Run as: cmake -DROAD=<road binary> -DOUT=<scratch folder> -P demo_check.cmake
#
# MARGIN: on the shipped model the base scores 0-40% per task (it picks among four
# transformations) and a full-length run's adapters score above 90%; the quick run (60 steps
# instead of 150) is held to a 40-point gain, well below what it reaches, so the test checks
# that adapters learn, not a lucky seed.
set(MARGIN 0.40)
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${ROAD}" demo --quick --threads 2 --out "${OUT}" --report "${OUT}/report.json"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "road demo failed (${rc}):\n${err}")
endif()
file(READ "${OUT}/report.json" report)
foreach(task reverse upper shift)
  string(JSON base GET "${report}" tasks ${task} base)
  string(JSON adapted GET "${report}" tasks ${task} adapted)
  # cmake has no float compare: compare in tenths of a percent
  string(REGEX REPLACE "^0*([0-9]*)\\.?([0-9]?)([0-9]?)([0-9]?).*$" "\\1\\2\\3\\4" b "${base}000")
  string(REGEX REPLACE "^0*([0-9]*)\\.?([0-9]?)([0-9]?)([0-9]?).*$" "\\1\\2\\3\\4" a "${adapted}000")
  string(REGEX REPLACE "^0*([0-9]*)\\.?([0-9]?)([0-9]?)([0-9]?).*$" "\\1\\2\\3\\4" mg "${MARGIN}000")
  if(b STREQUAL "")
    set(b 0)
  endif()
  if(a STREQUAL "")
    set(a 0)
  endif()
  math(EXPR gain "${a} - ${b}")
  if(gain LESS mg)
    message(FATAL_ERROR "task ${task}: base ${base}, adapted ${adapted}: gain below ${MARGIN}")
  endif()
  message("task ${task}: base ${base} -> adapted ${adapted}")
endforeach()
string(JSON same GET "${report}" merged_identical)
string(JSON n GET "${report}" merged_n)
if(NOT same EQUAL n)
  message(FATAL_ERROR "merged adapter: ${same} of ${n} answers identical to the unmerged adapter")
endif()
