/* test_misuse_frame_debug.c - tests/test_misuse_frame.c in a debug build (BUFFET_DEBUG 1): the
   same misuse, refused the same way, with the pools' own checks on; every log line still names
   the caller's file and line. */
#define BUFFET_IMPLEMENTATION
#define BUFFET_DEBUG 1
#define TM_NAME "test_misuse_frame_debug.c"
#include "test_misuse_frame.c"
