/*
 * llm/model_threads.h - the thread count a model's calls run with, for code outside llm/ that
 * sizes per-thread buffers the way the model will (train/memory.c: attention's scratch).
 */
#ifndef ROAD_LLM_MODEL_THREADS_H
#define ROAD_LLM_MODEL_THREADS_H

#include "road/llm.h"

/* road_get_num_threads() inside the model's thread scope (road_model_params.n_threads): the
 * threads road_model_loss_backward and road_model_forward give their kernels (>= 1). */
int road__model_threads(const road_model *m);

#endif
