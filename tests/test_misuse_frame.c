/* test_misuse_frame.c - misuse of buffet_frame.h that must not corrupt anything: a pool object put
   twice, a put of a pointer that is no object of the pool (a stack address, an interior or
   misaligned pointer, another pool's object), a rollback to a stale checkpoint (an earlier
   frame's, one from before an earlier rollback or free, another arena's), a resize or free of a
   block that was handed to another thread, a scope begun twice, sizes that overflow, bulk calls
   asked for more than the pool can ever hold, stats names that are not UTF-8. In a release
   build each is refused (or provably harmless) and logged; tests/test_misuse_frame_debug.c runs
   the same file with BUFFET_DEBUG 1, where every log line also names the caller's file and line.
   After each misuse the objects are checked: nothing handed out twice, no live byte changed.
   C11 and C++17. */
#ifndef BUFFET_IMPLEMENTATION
#define BUFFET_IMPLEMENTATION
#endif
#include "../buffet_frame.h"
#include "bt.h"

#ifndef TM_NAME
#define TM_NAME "test_misuse_frame.c"
#endif

/* ---------------------------------------------------------------------------------------------
   Helpers */


/* The latest log line names this file: the caller's line (BUFFET_SITE), not buffet's. */
static bool tm_names_us(const bt_log *l) {
    if (strstr(l->last_msg, "test_misuse_frame")) return true;
    fprintf(stderr, "%s: the log line does not name the caller's file: %s\n", TM_NAME, l->last_msg);
    return false;
}

static buffet_debug *tm_debug(void) {
    buffet_debug *d = NULL;
    BT_CHECK(buffet_debug_create(&d, NULL) == BUFFET_OK && d != NULL);
    return d;
}
static void tm_debug_done(buffet_debug *d) {
    buffet_debug_stats st = buffet_debug_get_stats(d);
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0);
    BT_CHECK(st.mismatched_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(d, stderr);
    buffet_debug_destroy(d);
}

static void tm_fill(void *p, size_t n, unsigned seed) {
    size_t i;
    for (i = 0; i < n; i++) ((unsigned char *)p)[i] = (unsigned char)(seed * 31 + i * 7 + 1);
}
static bool tm_intact(const void *p, size_t n, unsigned seed) {
    size_t i;
    for (i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != (unsigned char)(seed * 31 + i * 7 + 1)) return false;
    return true;
}
static bool tm_overlap(const void *a, size_t an, const void *b, size_t bn) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + bn && y < x + an;
}

static buffet_pool *tm_pool(buffet_debug *d, size_t obj_size, size_t slab_objs, size_t max, bt_log *l) {
    buffet_pool_desc desc;
    buffet_pool *p = NULL;
    memset(&desc, 0, sizeof desc);
    desc.obj_size = obj_size;
    desc.slab_objs = slab_objs;
    desc.max = max;
    desc.parent = buffet_debug_allocator(d);
    if (l) desc.log = bt_logger(l);
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_OK && p != NULL);
    return p;
}

/* Every object of a pool of `max` objects, taken out at once through c: each exactly once
   (distinct, none overlapping), and then the pool is empty. Puts them all back. */
static void tm_pool_drain_distinct(buffet_pool_cache *c, size_t max, size_t obj_size) {
    void *objs[64];
    size_t n = 0, i, j;
    bool distinct = true;
    BT_CHECK(max <= 64);
    while (n < 64) {
        void *o = buffet_pool_get(c);
        if (!o) break;
        objs[n++] = o;
    }
    BT_CHECK(n == max);
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++)
            if (tm_overlap(objs[i], obj_size, objs[j], obj_size)) distinct = false;
    BT_CHECK(distinct);
    for (i = 0; i < n; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
}

static buffet_frame_arena *tm_arena(buffet_debug *d, bt_log *l) {
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 4096;
    if (l) desc.log = bt_logger(l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    return fa;
}

/* ---------------------------------------------------------------------------------------------
   Pools */

/* The case: every object out, all put back, one of them twice. The second put is refused
   (it used to be taken, overflow the store by one pointer and come out twice). */
static void test_pool_double_put(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_pool *p = tm_pool(d, 64, 8, 8, &l);
    buffet_pool_cache *c = NULL;
    buffet_pool_stats st;
    void *objs[8];
    int i;
    if (!p) goto out;
    BT_CHECK(buffet_pool_cache_create(&c, p, 16) == BUFFET_OK && c != NULL);
    if (!c) goto out;
    BT_CHECK(buffet_pool_get_bulk(c, objs, 8) == 8);
    for (i = 0; i < 8; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
    BT_CHECK(buffet_pool_put(c, objs[7]) == BUFFET_ERR_DOUBLE_FREE);     /* still in the cache */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_DOUBLE_FREE) == 1 && tm_names_us(&l));
    buffet_pool_cache_flush(c);
    BT_CHECK(buffet_pool_put(c, objs[3]) == BUFFET_ERR_DOUBLE_FREE);     /* in the store */
    BT_CHECK(buffet_pool_put_shared(p, objs[3]) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(tm_names_us(&l));
    BT_CHECK(buffet_pool_put_bulk(c, objs, 2) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(tm_names_us(&l));
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.double_puts == 5 && st.in_store + c->count == 8);
    tm_pool_drain_distinct(c, 8, 64);
    /* and once more with the object out on another path: put_shared first, then the cache */
    buffet_pool_cache_flush(c);
    objs[0] = buffet_pool_get_shared(p);
    BT_CHECK(objs[0] != NULL && buffet_pool_put_shared(p, objs[0]) == BUFFET_OK);
    BT_CHECK(buffet_pool_put(c, objs[0]) == BUFFET_ERR_DOUBLE_FREE);
    tm_pool_drain_distinct(c, 8, 64);
    buffet_pool_cache_flush(c);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.in_store == 8 && st.in_use == 0 && st.double_puts == 6);
out:
    buffet_pool_cache_destroy(c);
    buffet_pool_destroy(p);
    tm_debug_done(d);
}

/* Pointers that are no object of the pool: refused with BUFFET_ERR_FOREIGN, counted, logged with
   the caller's line, and never handed out. None of them is read or written by the pool. */
static void test_pool_foreign_put(void) {
    buffet_debug *d = tm_debug();
    bt_log la, lb;
    buffet_pool *pa = tm_pool(d, 48, 8, 8, &la);
    buffet_pool *pb = tm_pool(d, 48, 8, 8, &lb);
    buffet_pool_cache *ca = NULL, *cb = NULL;
    unsigned char local[64];
    void *bad[7], *o, *ob, *heap;
    buffet_pool_stats st;
    size_t i;
    if (!pa || !pb) goto out;
    BT_CHECK(buffet_pool_cache_create(&ca, pa, 8) == BUFFET_OK && buffet_pool_cache_create(&cb, pb, 8) == BUFFET_OK);
    if (!ca || !cb) goto out;
    o = buffet_pool_get(ca);
    ob = buffet_pool_get(cb);
    heap = malloc(64);
    BT_CHECK(o && ob && heap);
    if (!o || !ob || !heap) goto out_free;
    tm_fill(o, 48, 1);
    tm_fill(ob, 48, 2);
    memset(local, 0x5a, sizeof local);
    bad[0] = local;                                   /* the stack */
    bad[1] = (unsigned char *)o + 1;                  /* misaligned, inside an object */
    bad[2] = (unsigned char *)o + 16;                 /* interior, aligned */
    bad[3] = ob;                                      /* another pool's object */
    bad[4] = heap;                                    /* the heap */
    bad[5] = (unsigned char *)o - 4096 * 64;          /* far before the slab */
    bad[6] = (void *)(uintptr_t)0x10;                 /* not memory at all */
    for (i = 0; i < 7; i++) {
        BT_CHECK(buffet_pool_put(ca, bad[i]) == BUFFET_ERR_FOREIGN);
        BT_CHECK(tm_names_us(&la));
    }
    BT_CHECK(buffet_pool_put_shared(pa, local) == BUFFET_ERR_FOREIGN && tm_names_us(&la));
    BT_CHECK(buffet_pool_put_bulk(ca, bad, 2) == BUFFET_ERR_FOREIGN && tm_names_us(&la));
    BT_CHECK(buffet_pool_put(ca, NULL) == BUFFET_ERR_INVALID);
    st = buffet_pool_get_stats(pa);
    BT_CHECK(st.foreign_puts == 10 && bt_logged(&la, BUFFET_ERR_FOREIGN) == 10);
    BT_CHECK(buffet_pool_get_stats(pb).foreign_puts == 0 && lb.total == 0);
    /* nothing changed: the objects keep their bytes, the pool hands out only its own */
    BT_CHECK(tm_intact(o, 48, 1) && tm_intact(ob, 48, 2));
    for (i = 0; i < sizeof local; i++) BT_CHECK(local[i] == 0x5a);
    BT_CHECK(buffet_pool_put(ca, o) == BUFFET_OK && buffet_pool_put(cb, ob) == BUFFET_OK);
    tm_pool_drain_distinct(ca, 8, 48);
    {
        void *objs[8];
        size_t n, j;
        bool ours = true;
        n = buffet_pool_get_bulk(ca, objs, 8);
        BT_CHECK(n == 8);
        for (i = 0; i < n; i++)
            for (j = 0; j < 7; j++)
                if (objs[i] == bad[j]) ours = false;
        BT_CHECK(ours);
        BT_CHECK(buffet_pool_put_bulk(ca, objs, n) == BUFFET_OK);
    }
out_free:
    free(heap);
out:
    buffet_pool_cache_destroy(ca);
    buffet_pool_cache_destroy(cb);
    buffet_pool_destroy(pa);
    buffet_pool_destroy(pb);
    tm_debug_done(d);
}

/* An object put back on one path and again on another, with objects of several slabs in play:
   the pool's lookup finds each slab, and a double put through any path is refused. */
static void test_pool_double_put_many_slabs(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_pool *p = tm_pool(d, 24, 8, 64, &l);
    buffet_pool_cache *c = NULL;
    void *objs[64];
    size_t n, i;
    if (!p) goto out;
    BT_CHECK(buffet_pool_cache_create(&c, p, 4) == BUFFET_OK && c != NULL);
    if (!c) goto out;
    n = buffet_pool_get_bulk(c, objs, 64);
    BT_CHECK(n == 64 && buffet_pool_get_stats(p).slabs == 8);
    if (n != 64) goto out;
    for (i = 0; i < 64; i++) tm_fill(objs[i], 24, (unsigned)i);
    for (i = 0; i < 64; i += 2) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
    for (i = 0; i < 64; i += 2) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_ERR_DOUBLE_FREE);
    for (i = 0; i < 64; i += 2) BT_CHECK(buffet_pool_put_shared(p, objs[i]) == BUFFET_ERR_DOUBLE_FREE);
    for (i = 1; i < 64; i += 2) BT_CHECK(tm_intact(objs[i], 24, (unsigned)i));
    for (i = 1; i < 64; i += 2) BT_CHECK(buffet_pool_put_shared(p, objs[i]) == BUFFET_OK);
    BT_CHECK(buffet_pool_get_stats(p).double_puts == 64);
    tm_pool_drain_distinct(c, 64, 24);
out:
    buffet_pool_cache_destroy(c);
    buffet_pool_destroy(p);
    tm_debug_done(d);
}

/* Two puts of one object at the same instant on two threads can both pass the inline check (a
   load, then a store: no locked instruction on the fast path). Simulated here by setting the
   object's state byte back to "out" between the two puts (white-box: the pool's own lookup):
   the copy is found when it would be handed out a second time, dropped and counted, and every
   object is still in the pool exactly once afterwards. */
static void test_pool_racing_puts_copy(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_pool *p = tm_pool(d, 32, 8, 16, &l);
    buffet_pool_cache *c1 = NULL, *c2 = NULL;
    buffet__slab *slab;
    void *o, *a, *b;
    buffet_pool_stats st;
    if (!p) goto out;
    BT_CHECK(buffet_pool_cache_create(&c1, p, 16) == BUFFET_OK && buffet_pool_cache_create(&c2, p, 16) == BUFFET_OK);
    if (!c1 || !c2) goto out;
    o = buffet_pool_get(c1);
    slab = o ? buffet__pool_find(p, o) : NULL;
    BT_CHECK(o != NULL && slab != NULL);
    if (!slab) goto out;
    BT_CHECK(buffet_pool_put(c1, o) == BUFFET_OK);
    slab->span.state[((unsigned char *)o - slab->span.objs) / buffet_pool_get_stats(p).stride] = 1;   /* the race */
    BT_CHECK(buffet_pool_put(c2, o) == BUFFET_OK);     /* in both caches now */
    a = buffet_pool_get(c1);
    b = buffet_pool_get(c2);
    BT_CHECK(a == o && b != NULL && b != o);          /* never out twice */
    BT_CHECK(buffet_pool_get_stats(p).double_puts == 1 && bt_logged(&l, BUFFET_ERR_DOUBLE_FREE) == 1);
    BT_CHECK(buffet_pool_put(c1, a) == BUFFET_OK && buffet_pool_put(c2, b) == BUFFET_OK);
    buffet_pool_cache_flush(c1);
    buffet_pool_cache_flush(c2);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.in_store == 16 && st.created == 16 && st.in_use == 0);
    tm_pool_drain_distinct(c1, 16, 32);
out:
    buffet_pool_cache_destroy(c1);
    buffet_pool_cache_destroy(c2);
    buffet_pool_destroy(p);
    tm_debug_done(d);
}

/* Sizes: an initial count, a max or a slab whose bytes overflow (or could never be addressed) is
   refused at create with a log line, before anything is allocated. */
static void test_pool_create_limits(void) {
    static const struct { size_t obj_size, initial, max, slab_objs; buffet_result want; } cases[] = {
        { 64, (size_t)1 << 33, 0, 0, BUFFET_ERR_INVALID },               /* more than 2^32 objects */
        { (size_t)1 << 40, (size_t)1 << 30, 0, 0, BUFFET_ERR_OVERFLOW }, /* initial * size overflows */
        { (size_t)1 << 40, 0, (size_t)1 << 30, 0, BUFFET_ERR_OVERFLOW }, /* max * size overflows */
        { (size_t)1 << 40, 0, 0, (size_t)1 << 30, BUFFET_ERR_OVERFLOW }, /* slab * size overflows */
        { (size_t)1 << 36, (size_t)1 << 20, 0, 0, BUFFET_ERR_OVERFLOW }, /* objects past 2^31 bytes */
        { (size_t)1 << 30, (size_t)1 << 20, 0, 0, BUFFET_ERR_OVERFLOW }, /* initial: 2^50 bytes, never addressable */
        { (size_t)1 << 20, 0, (size_t)1 << 30, 0, BUFFET_ERR_OVERFLOW }, /* max: 2^50 bytes */
        { 64, ((size_t)1 << 32) + 1, 0, 0, BUFFET_ERR_INVALID },         /* initial past 2^32 objects */
        { SIZE_MAX, 1, 0, 0, BUFFET_ERR_OVERFLOW },
        { SIZE_MAX - 4096, 0, 0, 0, BUFFET_ERR_OVERFLOW },
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        buffet_debug *d = tm_debug();
        buffet_pool_desc desc;
        buffet_pool *p = NULL;
        bt_log l;
        buffet_result r;
        memset(&desc, 0, sizeof desc);
        desc.obj_size = cases[k].obj_size;
        desc.initial = cases[k].initial;
        desc.max = cases[k].max;
        desc.slab_objs = cases[k].slab_objs;
        desc.parent = buffet_debug_allocator(d);
        desc.log = bt_logger(&l);
        r = buffet_pool_create(&p, &desc);
        if (r != cases[k].want) fprintf(stderr, "%s: pool case %zu: %s\n", TM_NAME, k, buffet_result_str(r));
        BT_CHECK(r == cases[k].want && p == NULL);
        BT_CHECK(l.total >= 1 && l.last == cases[k].want);
        BT_CHECK(buffet_debug_get_stats(d).total_count == 0);   /* nothing was tried */
        if (p) buffet_pool_destroy(p);
        tm_debug_done(d);
    }
}

/* A bulk get for more objects than the pool can ever hold: 0 at once, counted as a failure, and
   the pool does not grow towards it. */
static void test_pool_bulk_too_many(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_pool *p = tm_pool(d, 32, 8, 16, &l);
    buffet_pool *big = tm_pool(d, 32, 8, 0, NULL);
    buffet_pool_cache *c = NULL, *cbig = NULL;
    void *objs[32];
    buffet_pool_stats st;
    if (!p || !big) goto out;
    BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_OK && buffet_pool_cache_create(&cbig, big, 8) == BUFFET_OK);
    if (!c || !cbig) goto out;
    BT_CHECK(buffet_pool_get_bulk(c, objs, 17) == 0);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.failures == 1 && st.in_use == 0 && st.created <= 16);
    BT_CHECK(buffet_pool_get_bulk(c, objs, 16) == 16);
    BT_CHECK(buffet_pool_get_bulk(c, objs + 16, 1) == 0);
    BT_CHECK(buffet_pool_get_stats(p).failures == 2);
    BT_CHECK(buffet_pool_put_bulk(c, objs, 16) == BUFFET_OK);
    /* no max: asking for more than 2^32 objects fails at once instead of growing to it */
    BT_CHECK(buffet_pool_get_bulk(cbig, objs, ((size_t)1 << 32) + 1) == 0);
    st = buffet_pool_get_stats(big);
    BT_CHECK(st.failures == 1 && st.created == 8);
out:
    buffet_pool_cache_destroy(c);
    buffet_pool_cache_destroy(cbig);
    buffet_pool_destroy(p);
    buffet_pool_destroy(big);
    tm_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Frames */

/* A checkpoint of another arena taken at the same frame number before anything was allocated:
   refused; rolling back to it used to drop this arena's whole frame under its live blocks. */
static void test_frame_rollback_other_arena(void) {
    buffet_debug *d = tm_debug();
    bt_log la, lb;
    buffet_frame_arena *a = tm_arena(d, &la), *b = tm_arena(d, &lb);
    buffet_frame_mark mb;
    unsigned char *x, *y;
    if (!a || !b) goto out;
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK && buffet_frame_begin(b) == BUFFET_OK);
    mb = buffet_frame_checkpoint(b);
    x = (unsigned char *)buffet_frame_alloc(a, 100, 16);
    BT_CHECK(x != NULL);
    if (!x) goto out_end;
    tm_fill(x, 100, 3);
    BT_CHECK(buffet_frame_rollback(a, mb) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&la, BUFFET_ERR_STATE) == 1 && tm_names_us(&la));
    y = (unsigned char *)buffet_frame_alloc(a, 100, 16);
    BT_CHECK(y != NULL && !tm_overlap(x, 100, y, 100) && tm_intact(x, 100, 3));
    BT_CHECK(buffet_frame_get_stats(a).count == (BUFFET_FRAME_COUNT ? 2u : 0u) && buffet_frame_get_stats(a).misuse == 1);
    /* and with memory in b's mark: still another arena's */
    BT_CHECK(buffet_frame_alloc(b, 10, 1) != NULL);
    mb = buffet_frame_checkpoint(b);
    BT_CHECK(buffet_frame_rollback(a, mb) == BUFFET_ERR_STATE && tm_intact(x, 100, 3));
out_end:
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK && buffet_frame_end(b) == BUFFET_OK);
out:
    buffet_frame_destroy(a);
    buffet_frame_destroy(b);
    tm_debug_done(d);
}

/* A checkpoint from before an earlier rollback (taken after the point rolled back to) is stale:
   refused, and the block allocated since stays whole. */
static void test_frame_rollback_stale_after_rollback(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_frame_arena *a = tm_arena(d, &l);
    buffet_frame_mark m1, m2, m3;
    unsigned char *x, *b, *y;
    if (!a) goto out;
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(a, 32, 16) != NULL);
    m1 = buffet_frame_checkpoint(a);
    x = (unsigned char *)buffet_frame_alloc(a, 64, 16);
    m2 = buffet_frame_checkpoint(a);
    BT_CHECK(x != NULL && buffet_frame_rollback(a, m1) == BUFFET_OK);
    b = (unsigned char *)buffet_frame_alloc(a, 200, 16);      /* reuses x's bytes and more */
    BT_CHECK(b != NULL);
    if (!b) goto out_end;
    tm_fill(b, 200, 4);
    BT_CHECK(buffet_frame_rollback(a, m2) == BUFFET_ERR_STATE);
    BT_CHECK(tm_names_us(&l));
    y = (unsigned char *)buffet_frame_alloc(a, 64, 16);
    BT_CHECK(y != NULL && !tm_overlap(b, 200, y, 64) && tm_intact(b, 200, 4));
    /* m1 is below everything rolled back: still good, and so is a new mark */
    m3 = buffet_frame_checkpoint(a);
    BT_CHECK(buffet_frame_alloc(a, 8, 8) != NULL && buffet_frame_rollback(a, m3) == BUFFET_OK);
    BT_CHECK(buffet_frame_rollback(a, m3) == BUFFET_OK);   /* the same mark again: nothing to free */
    BT_CHECK(buffet_frame_rollback(a, m1) == BUFFET_OK);
    BT_CHECK(buffet_frame_rollback(a, m3) == BUFFET_ERR_STATE);   /* above m1: stale now */
    /* a mark above a block freed through the allocator is stale too */
    x = (unsigned char *)buffet_frame_alloc(a, 48, 16);
    m2 = buffet_frame_checkpoint(a);
    buffet_free(buffet_frame_allocator(a), x, 48, 16, BUFFET_SITE);
    b = (unsigned char *)buffet_frame_alloc(a, 300, 16);
    BT_CHECK(b != NULL);
    if (!b) goto out_end;
    tm_fill(b, 300, 5);
    BT_CHECK(buffet_frame_rollback(a, m2) == BUFFET_ERR_STATE && tm_intact(b, 300, 5));
    y = (unsigned char *)buffet_frame_alloc(a, 64, 16);
    BT_CHECK(y != NULL && !tm_overlap(b, 300, y, 64));
    /* and a mark on top of a block that then grew in place: rolling back would cut the block */
    x = (unsigned char *)buffet_frame_alloc(a, 32, 16);
    m2 = buffet_frame_checkpoint(a);
    BT_CHECK(x != NULL && buffet_frame_resize(a, x, 32, 200));
    if (x) tm_fill(x, 200, 8);
    BT_CHECK(buffet_frame_rollback(a, m2) == BUFFET_ERR_STATE && x && tm_intact(x, 200, 8));
out_end:
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
out:
    buffet_frame_destroy(a);
    tm_debug_done(d);
}

/* Found by tests/fuzz/fuzz_frame.c: a mark at the start of a chunk that a rollback then let go
   is stale once that chunk comes back into use later in the frame, even though the same pointer
   is in the arena's list again: rolling back to it used to cut only the reused chunk, keep
   uncharged a chunk put to use after the mark (here one holding a transferred block), and skip
   the transfer check. */
static void test_frame_rollback_reused_chunk(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_frame_desc desc;
    buffet_frame_arena *a = NULL;
    buffet_frame_mark m0, m1;
    buffet_frame_transfer *t = NULL;
    unsigned char *p, *big, *small;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 1024;
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_create(&a, &desc) == BUFFET_OK && a != NULL);
    if (!a) goto out;
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    m0 = buffet_frame_checkpoint(a);                                     /* no chunk yet */
    p = (unsigned char *)buffet_frame_alloc(a, 271, 1);
    BT_CHECK(p != NULL);
    buffet_free(buffet_frame_allocator(a), p, 271, 1, BUFFET_SITE);     /* back to the chunk's start */
    m1 = buffet_frame_checkpoint(a);
    BT_CHECK(buffet_frame_rollback(a, m0) == BUFFET_OK);                /* lets the chunk go */
    big = (unsigned char *)buffet_frame_alloc(a, 3974, 8);              /* a chunk of its own */
    t = big ? buffet_frame_transfer_send(a, big, 3974) : NULL;
    small = (unsigned char *)buffet_frame_alloc(a, 19, 128);            /* the first chunk, reused */
    BT_CHECK(big != NULL && t != NULL && small != NULL);
    if (!big || !small) goto out_end;
    tm_fill(big, 3974, 9);
    tm_fill(small, 19, 10);
    BT_CHECK(buffet_frame_rollback(a, m1) == BUFFET_ERR_STATE && tm_names_us(&l));
    BT_CHECK(tm_intact(big, 3974, 9) && tm_intact(small, 19, 10) &&
             buffet_frame_get_stats(a).count == (BUFFET_FRAME_COUNT ? 2u : 0u));
out_end:
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
    buffet_frame_transfer_release(t);
out:
    buffet_frame_destroy(a);
    tm_debug_done(d);
}

/* Marks from an earlier frame, a zero mark and a mark taken outside a frame: refused. */
static void test_frame_rollback_stale_frames(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_frame_arena *a = tm_arena(d, &l);
    buffet_frame_mark m0, mout, zero;
    unsigned char *x;
    if (!a) goto out;
    memset(&zero, 0, sizeof zero);
    mout = buffet_frame_checkpoint(a);
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    m0 = buffet_frame_checkpoint(a);
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    x = (unsigned char *)buffet_frame_alloc(a, 64, 16);
    BT_CHECK(x != NULL);
    if (!x) goto out_end;
    tm_fill(x, 64, 6);
    BT_CHECK(buffet_frame_rollback(a, m0) == BUFFET_ERR_STATE && tm_names_us(&l));
    BT_CHECK(buffet_frame_rollback(a, mout) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_frame_rollback(a, zero) == BUFFET_ERR_STATE);
    BT_CHECK(tm_intact(x, 64, 6) && buffet_frame_get_stats(a).count == (BUFFET_FRAME_COUNT ? 1u : 0u));
out_end:
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
out:
    buffet_frame_destroy(a);
    tm_debug_done(d);
}

/* A block handed to another thread by a transfer cannot be resized or freed through the frame
   allocator: the receiver's bytes are never reused while it holds them. */
static void test_frame_transferred_block(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_frame_arena *a = tm_arena(d, &l);
    buffet_allocator fa;
    buffet_frame_transfer *t, *t1 = NULL;
    unsigned char *x, *y, *z;
    size_t got = 0;
    if (!a) goto out;
    fa = buffet_frame_allocator(a);
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    x = (unsigned char *)buffet_alloc(fa, 256, 16, BUFFET_SITE);
    BT_CHECK(x != NULL);
    if (!x) goto out_end;
    tm_fill(x, 256, 7);
    t1 = buffet_frame_transfer_send(a, x, 256);
    BT_CHECK(t1 != NULL);
    if (!t1) goto out_end;
    BT_CHECK(buffet_frame_transfer_receive(t1, &got) == x && got == 256);
    /* shrink, grow, free: all refused, all logged with our line */
    BT_CHECK(!buffet_frame_resize(a, x, 256, 16));
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1);
    BT_CHECK(!buffet_frame_resize(a, x, 256, 512));
    BT_CHECK(!buffet_resize(fa, x, 256, 100, 16));
    buffet_free(fa, x, 256, 16, BUFFET_SITE);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 4 && tm_names_us(&l));
    y = (unsigned char *)buffet_alloc(fa, 256, 16, BUFFET_SITE);
    BT_CHECK(y != NULL && !tm_overlap(x, 256, y, 256) && tm_intact(x, 256, 7));
    /* realloc moves it instead: a copy, and the original stays the receiver's */
    z = (unsigned char *)buffet_realloc(fa, y, 256, 64, 16, BUFFET_SITE);   /* y is not transferred */
    BT_CHECK(z == y);
    t = buffet_frame_transfer_send(a, y, 64);
    BT_CHECK(t != NULL);
    z = (unsigned char *)buffet_realloc(fa, y, 64, 4000, 16, BUFFET_SITE);
    BT_CHECK(z != NULL && z != y && tm_intact(x, 256, 7));
    BT_CHECK(buffet_frame_get_stats(a).misuse >= 4);
    if (t) buffet_frame_transfer_release(t);
out_end:
    buffet_frame_transfer_release(t1);
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK && buffet_frame_end(a) == BUFFET_OK);
out:
    buffet_frame_destroy(a);
    tm_debug_done(d);
}

/* Frame misuse that was refused before: still refused, now naming the caller. */
static void test_frame_misuse_sites(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_frame_arena *a = tm_arena(d, &l);
    if (!a) goto out;
    {
    unsigned char local[8];
    BT_CHECK(buffet_frame_end(a) == BUFFET_ERR_STATE && tm_names_us(&l));
    BT_CHECK(buffet_frame_transfer_send(a, local, sizeof local) == NULL && tm_names_us(&l));
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(a) == BUFFET_ERR_STATE && tm_names_us(&l));
    BT_CHECK(buffet_frame_pop_tag(a) == BUFFET_ERR_STATE && tm_names_us(&l));
    BT_CHECK(buffet_frame_transfer_send(a, local, sizeof local) == NULL && tm_names_us(&l));
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
    BT_CHECK(buffet_frame_get_stats(a).misuse == 5);
    }
out:
    buffet_frame_destroy(a);
    tm_debug_done(d);
}

/* A batch that overflows or fails is counted in the arena's failures. */
static void test_frame_batch_failure_counted(void) {
    buffet_debug *d = tm_debug();
    buffet_frame_arena *a = tm_arena(d, NULL);
    void *out[4];
    if (!a) goto out;
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc_batch(a, SIZE_MAX / 2, 16, 16, out) == 0);
    BT_CHECK(buffet_frame_alloc_batch(a, 4, SIZE_MAX / 2, 16, out) == 0);
    BT_CHECK(buffet_frame_alloc(a, SIZE_MAX - 8, 16) == NULL);
    BT_CHECK(buffet_frame_get_stats(a).failures == 3);
    BT_CHECK(buffet_frame_alloc_batch(a, 4, 16, 16, out) == 4 && buffet_frame_get_stats(a).failures == 3);
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(a, 16, 16) == NULL && buffet_frame_get_stats(a).failures == 4);
out:
    buffet_frame_destroy(a);
    tm_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Scopes */

static void tm_count(void *arg) { (*(int *)arg)++; }

/* Begin on an active scope is refused: its allocations and deferred actions stay, and its end
   runs each once. A scope never begun (zeroed) refuses every call. */
static void test_scope_begin_twice(void) {
    buffet_debug *d = tm_debug();
    bt_log l;
    buffet_scope s, zeroed;
    buffet_scope_desc desc;
    int ran = 0;
    void *p;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_scope_begin(&s, &desc) == BUFFET_OK);
    p = buffet_scope_alloc(&s, 64, 16);
    BT_CHECK(p != NULL && buffet_scope_defer(&s, tm_count, &ran) == BUFFET_OK);
    BT_CHECK(buffet_scope_begin(&s, &desc) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && tm_names_us(&l));
    BT_CHECK(s.count == 1 && buffet_debug_get_stats(d).live_count == 1);   /* one block: the allocation and the action */
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK && ran == 1);
    BT_CHECK(buffet_debug_get_stats(d).live_count == 0);
    BT_CHECK(buffet_scope_end(&s) == BUFFET_ERR_STATE && tm_names_us(&l) && ran == 1);
    /* begun again after its end: fine */
    BT_CHECK(buffet_scope_begin(&s, &desc) == BUFFET_OK && buffet_scope_end(&s) == BUFFET_OK);
    memset(&zeroed, 0, sizeof zeroed);
    BT_CHECK(buffet_scope_alloc(&zeroed, 16, 16) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_scope_defer(&zeroed, tm_count, &ran) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_scope_end(&zeroed) == BUFFET_ERR_STATE && ran == 1);
    tm_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Stats text: names that are not UTF-8 */

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool tm_utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n, i;
        uint32_t cp;
        if (*p < 0x80) { p++; continue; }
        if (*p >= 0xC2 && *p <= 0xDF) n = 2, cp = *p & 0x1Fu;
        else if (*p >= 0xE0 && *p <= 0xEF) n = 3, cp = *p & 0x0Fu;
        else if (*p >= 0xF0 && *p <= 0xF4) n = 4, cp = *p & 0x07u;
        else return false;
        for (i = 1; i < n; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i] & 0x3Fu);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        p += n;
    }
    return true;
}

/* JSON strings close, escapes are JSON's, no raw control character, brackets balance. */
static bool tm_json_ok(const char *s) {
    char stack[64];
    int depth = 0;
    bool in_str = false, done = false;
    for (; *s; s++) {
        char c = *s;
        if (done) return false;
        if (in_str) {
            if (c == '\\') {
                s++;
                if (!*s || !strchr("\"\\/bfnrtu", *s)) return false;
            } else if (c == '"') {
                in_str = false;
            } else if ((unsigned char)c < 0x20) {
                return false;
            }
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '{' || c == '[') {
            if (depth == 64) return false;
            stack[depth++] = c;
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[--depth] != (c == '}' ? '{' : '[')) return false;
            if (depth == 0) done = true;
        }
    }
    return done && !in_str;
}

static void test_stats_json_utf8(void) {
    static const char *const names[] = {
        "latin1 \xe9t\xe9",                 /* Latin-1, not UTF-8 */
        "cut \xe2\x82",                      /* a euro sign cut after two bytes */
        "overlong \xc0\xaf",
        "surrogate \xed\xa0\x80",
        "quote \" backslash \\ tab \t nl \n",
        "ok \xe2\x82\xac \xf0\x9f\x8d\xbd",
        "\xff\xfe\xfd",
    };
    buffet_debug *d = tm_debug();
    buffet_frame_arena *a = tm_arena(d, NULL);
    buffet_pool *p = tm_pool(d, 16, 8, 0, NULL);
    static char json[8192];
    size_t i, n;
    if (!a || !p) goto out;
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        BT_CHECK(buffet_frame_push_tag(a, names[i]) == BUFFET_OK);
        BT_CHECK(buffet_frame_alloc(a, 8, 8) != NULL);
        BT_CHECK(buffet_frame_pop_tag(a) == BUFFET_OK);
    }
    n = buffet_frame_stats_json(a, json, sizeof json);
    BT_CHECK(n < sizeof json && tm_utf8_ok(json) && tm_json_ok(json));
    BT_CHECK(strstr(json, "\xe2\x82\xac") != NULL);    /* good UTF-8 kept as it is */
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
    n = buffet_pool_stats_json(p, json, sizeof json);
    BT_CHECK(n < sizeof json && tm_utf8_ok(json) && tm_json_ok(json));
out:
    buffet_frame_destroy(a);
    buffet_pool_destroy(p);
    tm_debug_done(d);
}

int main(void) {
    BT_RUN(test_pool_double_put);
    BT_RUN(test_pool_foreign_put);
    BT_RUN(test_pool_double_put_many_slabs);
    BT_RUN(test_pool_racing_puts_copy);
    BT_RUN(test_pool_create_limits);
    BT_RUN(test_pool_bulk_too_many);
    BT_RUN(test_frame_rollback_other_arena);
    BT_RUN(test_frame_rollback_stale_after_rollback);
    BT_RUN(test_frame_rollback_stale_frames);
    BT_RUN(test_frame_rollback_reused_chunk);
    BT_RUN(test_frame_transferred_block);
    BT_RUN(test_frame_misuse_sites);
    BT_RUN(test_frame_batch_failure_counted);
    BT_RUN(test_scope_begin_twice);
    BT_RUN(test_stats_json_utf8);
    return bt_finish(TM_NAME);
}
