/* deliberately wrong: train and serve are siblings */
#include "serve/server.h"
