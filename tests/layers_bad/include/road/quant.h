/* deliberately wrong: a public header of quant may not include one of adapter (used by the
 * layers_selftest test) */
#include "road/linear.h"
