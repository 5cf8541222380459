/* compile_all.c - every buffet header, implementation included, in one C11 translation unit.
   The siblings come first and buffet.h last, and one header twice, because users may include
   them in any order and more than once. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"
#include "../buffet_net.h"
#include "../buffet_packet.h"
#include "../buffet_frame.h"
#include "../buffet.h"
#include "../buffet_frame.h"

#include <stdio.h>

int main(void) {
    printf("compile_all.c: buffet %s (%lu)\n", BUFFET_VERSION_STRING, (unsigned long)buffet_version());
    return buffet_version() == BUFFET_VERSION_NUMBER ? 0 : 1;
}
