/* test_misuse_core_debug.c - tests/test_misuse_core.c in a debug build (BUFFET_DEBUG 1): the same
   misuse, every check on, and each report must name the caller's file. */
#define BUFFET_IMPLEMENTATION
#define BUFFET_DEBUG 1
#define MC_NAME "test_misuse_core_debug.c"
#include "test_misuse_core.c"
