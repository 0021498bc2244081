/* deliberately wrong: core may not include adapter/ (used by the layers_selftest test) */
#include "adapter/kernels.h"
