/* test_misuse_packet_debug.c - tests/test_misuse_packet.c in a debug build (BUFFET_DEBUG 1): the same
   misuse, each refused and logged with its call site, and foreign pointers of every kind caught. */
#define BUFFET_IMPLEMENTATION
#define BUFFET_DEBUG 1
#define TM_NAME "test_misuse_packet_debug.c"
#include "test_misuse_packet.c"
