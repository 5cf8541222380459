/* compile_layout_a.c - the implementation, configured with larger limits than compile_layout_b.c,
   which uses it. No public struct's layout depends on a configuration macro, so the two agree on
   every struct, and the inline fast paths of b stay inside what a created: run under ASan, this
   pair finds any overflow a layout mismatch would cause. */
#define BUFFET_IMPLEMENTATION
#define BUFFET_POOL_CACHE_MAX 1024
#define BUFFET_FRAME_MAX_IN_FLIGHT 8
#define BUFFET_REGISTRY_MAX 64
#include "../buffet_frame.h"
#include "../buffet_packet.h"
