/* compile_two_b.c - uses buffet without implementing it; see compile_two_a.c. */
#include "../buffet_gpu.h"
#include "../buffet_net.h"
#include "../buffet_packet.h"
#include "../buffet_frame.h"
#include "../buffet.h"

#include <stdio.h>

int main(void) {
    printf("compile_two_b.c: buffet %lu\n", (unsigned long)buffet_version());
    return buffet_version() == BUFFET_VERSION_NUMBER ? 0 : 1;
}
