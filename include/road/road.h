/*
 * road/road.h - everything libroad offers, in one include.
 */
#ifndef ROAD_ROAD_H
#define ROAD_ROAD_H

#include "road/core.h"
#include "road/json.h"
#include "road/rot.h"
#include "road/linear.h"
#include "road/config.h"
#include "road/adapter_set.h"
#include "road/safetensors.h"
#include "road/outdir.h"
#include "road/quant.h"
#include "road/llm.h"
#include "road/tokenizer.h"
#include "road/train.h"
#include "road/serve.h"

#endif
