/* compile_static.c - a single-file program with BUFFET_STATIC: every buffet function is static,
   so nothing but main may be exported (tools/run_tests.sh checks that with nm), and the
   functions left unused must not warn. */
#define BUFFET_STATIC
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"
#include "../buffet_frame.h"
#include "../buffet_packet.h"
#include "../buffet_net.h"
#include "../buffet_gpu.h"

#include <stdio.h>

int main(void) {
    printf("compile_static.c: buffet %lu\n", (unsigned long)buffet_version());
    return buffet_version() == BUFFET_VERSION_NUMBER ? 0 : 1;
}
