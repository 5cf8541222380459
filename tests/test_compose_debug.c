/* test_compose_debug.c - tests/test_compose.c in a debug build (BUFFET_DEBUG 1): the same seams with
   every check on, plus the packet pool's leak report naming the lines that took clones and bulks. */
#define BUFFET_IMPLEMENTATION
#define BUFFET_DEBUG 1
#define TC_NAME "test_compose_debug.c"
#include "test_compose.c"
