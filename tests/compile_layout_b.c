/* compile_layout_b.c - uses the implementation of compile_layout_a.c with the default (smaller)
   limits: a pool cache of 1000 pointers and 6 frames in flight, beyond this file's own limits but
   within the implementation's, filled and emptied through the inline fast paths; and a packet
   cache filled to its (constant) capacity. */
#include "../buffet_frame.h"
#include "../buffet_packet.h"

#include <stdio.h>

int main(void) {
    buffet_pool *pool;
    buffet_pool_cache *pc;
    buffet_pkt_pool *pp;
    buffet_pkt_cache *kc;
    buffet_frame_arena *fa;
    buffet_pool_desc pd;
    buffet_pkt_pool_desc kd;
    buffet_frame_desc fd;
    static void *objs[1000];
    static buffet_pkt *pkts[BUFFET_PKT_CACHE_MAX];
    unsigned i, frame;
    int bad = 0;
    memset(&pd, 0, sizeof pd);
    pd.obj_size = 32;
    pd.initial = 4000;
    memset(&kd, 0, sizeof kd);
    kd.initial = 2000;
    memset(&fd, 0, sizeof fd);
    fd.frames_in_flight = 6;
    if (buffet_pool_create(&pool, &pd) != BUFFET_OK || buffet_pool_cache_create(&pc, pool, 1000) != BUFFET_OK ||
        buffet_pkt_pool_create(&pp, &kd) != BUFFET_OK || buffet_pkt_cache_create(&kc, pp, BUFFET_PKT_CACHE_MAX) != BUFFET_OK ||
        buffet_frame_create(&fa, &fd) != BUFFET_OK) {
        printf("compile_layout_b.c: create failed\n");
        return 1;
    }
    for (i = 0; i < 1000; i++) bad |= (objs[i] = buffet_pool_get(pc)) == NULL;
    for (i = 0; i < 1000; i++) bad |= buffet_pool_put(pc, objs[i]) != BUFFET_OK;   /* the cache fills to 1000 */
    bad |= pc->count != 1000;
    for (i = 0; i < BUFFET_PKT_CACHE_MAX; i++) bad |= (pkts[i] = buffet_pkt_alloc(kc, 100)) == NULL;
    for (i = 0; i < BUFFET_PKT_CACHE_MAX; i++) buffet_pkt_free(kc, pkts[i]);
    bad |= kc->cls[1].count == 0 || kc->cls[1].count > BUFFET_PKT_CACHE_MAX;
    for (frame = 0; frame < 20; frame++) {
        buffet_frame_begin(fa);
        bad |= buffet_frame_alloc(fa, 1000, 16) == NULL;
        buffet_frame_end(fa);
    }
    buffet_frame_destroy(fa);
    buffet_pkt_cache_destroy(kc);
    buffet_pkt_pool_destroy(pp);
    buffet_pool_cache_destroy(pc);
    buffet_pool_destroy(pool);
    printf("compile_layout_b.c: %s\n", bad ? "FAILED" : "a pool cache of 1000, a full packet cache and 6 frames in flight across differently configured units");
    return bad;
}
