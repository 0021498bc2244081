/*
 * llm/model_threads.c - the thread count a model's calls run with (model_threads.h). A file of
 * its own so that the model's layout stays private to llm/.
 */
#include "core/threads.h"
#include "llm/model_internal.h"
#include "llm/model_threads.h"

int road__model_threads(const road_model *m) {
    ROAD_THREAD_SCOPE(m ? m->n_threads : 0);
    const int n = road_get_num_threads();
    return n > 0 ? n : 1;
}
