/* compile_two_a.c - the one translation unit that implements buffet; compile_two_b.c only
   uses it. Linked together they must give no duplicate or missing symbol, also when this
   file is compiled as C++ and the other as C (extern "C"). */
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"
#include "../buffet_frame.h"
#include "../buffet_packet.h"
#include "../buffet_net.h"
#include "../buffet_gpu.h"
