/* placeholder, replaced below */
#include <stdio.h>
#include "road/road.h"
int main(void) {
    printf("road %s\n", road_version());
    return 0;
}
