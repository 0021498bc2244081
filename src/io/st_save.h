/*
 * io/st_save.h - the last step of every safetensors file the library writes into a folder
 * (private): save the writer under a name in that folder unless an earlier step failed, and
 * free it either way.
 */
#ifndef ROAD_IO_ST_SAVE_H
#define ROAD_IO_ST_SAVE_H

#include "road/core.h"
#include "road/safetensors.h"

/* When s is ROAD_OK, save w as "dir/name"; free w in any case (NULL is fine). Returns s when it
 * is not ROAD_OK, else the save's status (ROAD_ERR_NO_MEMORY when the path cannot be built). */
road_status road__st_writer_finish(road_st_writer *w, road_status s, const char *dir,
                                   const char *name);

#endif
