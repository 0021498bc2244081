/* deliberately wrong: core may not include adapter/ (used by the layers_selftest test) */
#include "adapter/kernels.h"
/* deliberately wrong: the same through a public header (road/llm.h belongs to llm) */
#include "road/llm.h"
