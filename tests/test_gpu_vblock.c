/* test_gpu_vblock.c - the tests of buffet_gpu.h's suballocator: buffet_gpu_vblock (TLSF over
   offsets) and buffet_gpu_ring (per-frame linear allocation). Every function with normal use and
   each documented error: bad descs, size 0, sizes that are too large or overflow when rounded,
   alignments 0, 3 and huge, double frees, another block's and garbage handles, handles used after
   a reset, exhaustion, max_allocations, a bookkeeping allocator that fails at each point (state
   unchanged), one whose blocks die with a frame (refused), leaks reported at destroy, slots whose
   generations run out, statistics and JSON. Then the model tests: a seeded random sequence of
   alloc/free of random sizes and alignments (10^6 in the plain build; fewer under valgrind and
   qemu, BUFFET_STRESS_OPS overrides) checked against a reference that owns every granule of the
   block: no overlap, alignment held, every byte accounted for, free ranges coalesced (their
   count and the largest equal the model's maximal runs); and the same for the ring, with marks.
   The seed is printed; BUFFET_STRESS_SEED repeats it. The bookkeeping goes through buffet's debug
   allocator, so a leak or a bad free fails the test. C11 and C++17 (common subset). */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"
#include "bt.h"

#include <time.h>

static uint64_t tg_rng;
static uint64_t tg_rand(void) {   /* splitmix64 */
    uint64_t z = (tg_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static buffet_debug *tg_debug(void) {
    buffet_debug *d = NULL;
    buffet_debug_desc dd;
    memset(&dd, 0, sizeof dd);
    dd.quarantine_count = SIZE_MAX;   /* node tables are large: no quarantine */
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_OK && d != NULL);
    return d;
}

static void tg_debug_done(buffet_debug *d) {
    buffet_debug_stats st = buffet_debug_get_stats(d);
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.mismatched_frees == 0);
    if (st.live_count) buffet_debug_report_leaks(d, stderr);
    buffet_debug_destroy(d);
}

static buffet_gpu_vblock *tg_block(buffet_debug *d, uint64_t size, uint64_t min_align, bt_log *l) {
    buffet_gpu_vblock_desc desc;
    buffet_gpu_vblock *b = NULL;
    memset(&desc, 0, sizeof desc);
    desc.size = size;
    desc.min_align = min_align;
    desc.allocator = buffet_debug_allocator(d);
    if (l) desc.log = bt_logger(l);
    desc.name = "test";
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_OK && b != NULL);
    return b;
}

/* ---------------------------------------------------------------------------------------------
   vblock: normal use */

static void test_vblock_basic(void) {
    buffet_debug *d = tg_debug();
    bt_log l;
    buffet_gpu_vblock *b = tg_block(d, 1 << 20, 0, &l);
    buffet_gpu_valloc h[4];
    uint64_t off[4], o, s;
    buffet_gpu_vblock_stats st;
    int i;
    st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(st.size == 1 << 20 && st.free_bytes == 1 << 20 && st.free_ranges == 1 && st.largest_free == 1 << 20);
    BT_CHECK(st.allocations == 0 && st.fragmentation == 0.0);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 100, 1, &off[0], &h[0]) == BUFFET_OK && off[0] == 0 && h[0] != 0);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1000, 256, &off[1], &h[1]) == BUFFET_OK && off[1] == 256);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 7, 1, &off[2], &h[2]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 4096, 4096, &off[3], &h[3]) == BUFFET_OK && off[3] % 4096 == 0);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    /* the gap [100, 256) is a free range of its own, and the 7 bytes may land in it */
    BT_CHECK(off[2] >= 100 && (off[2] + 7 <= 256 || off[2] >= 1256));
    BT_CHECK(buffet_gpu_vblock_get(b, h[1], &o, &s) == BUFFET_OK && o == 256 && s == 1000);
    BT_CHECK(buffet_gpu_vblock_get(b, h[1], NULL, NULL) == BUFFET_OK);
    st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(st.allocations == 4 && st.allocated_bytes == 100 + 1000 + 7 + 4096);
    BT_CHECK(st.free_bytes == (1 << 20) - st.allocated_bytes && st.free_ranges >= 2);
    BT_CHECK(st.fragmentation > 0.0 && st.fragmentation < 0.01 && st.total_allocs == 4);
    /* freed in an order that merges left, right and both */
    BT_CHECK(buffet_gpu_vblock_free(b, h[1]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h[3]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h[0]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h[2]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(st.free_ranges == 1 && st.largest_free == 1 << 20 && st.allocations == 0 && st.allocated_bytes == 0);
    BT_CHECK(st.total_frees == 4 && st.failed_allocs == 0 && l.total == 0);
    /* fill exactly, in sizes of every small class */
    for (i = 0; i < 64; i++) BT_CHECK(buffet_gpu_vblock_alloc(b, 16384, 1, &o, &h[0]) == BUFFET_OK && o == (uint64_t)i * 16384);
    BT_CHECK(buffet_gpu_vblock_get_stats(b).free_bytes == 0 && buffet_gpu_vblock_get_stats(b).free_ranges == 0);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, 1, &o, &h[1]) == BUFFET_ERR_EXHAUSTED && bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 1);
    BT_CHECK(l.level == BUFFET_LOG_DEBUG);
    buffet_gpu_vblock_reset(b);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

/* min_align rounds sizes and offsets; alignment gaps become free ranges that later fit others. */
static void test_vblock_min_align(void) {
    buffet_debug *d = tg_debug();
    buffet_gpu_vblock *b = tg_block(d, 1 << 16, 256, NULL);
    buffet_gpu_valloc h, h2, h3;
    uint64_t o, s, o2, o3;
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, 1, &o, &h) == BUFFET_OK && o == 0);
    BT_CHECK(buffet_gpu_vblock_get(b, h, NULL, &s) == BUFFET_OK && s == 256);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 300, 4096, &o2, &h2) == BUFFET_OK && o2 == 4096);
    BT_CHECK(buffet_gpu_vblock_get(b, h2, NULL, &s) == BUFFET_OK && s == 512);
    BT_CHECK(buffet_gpu_vblock_get_stats(b).allocated_bytes == 768);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 3840, 1, &o3, &h3) == BUFFET_OK && o3 == 256);   /* the gap, exactly */
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h2) == BUFFET_OK && buffet_gpu_vblock_free(b, h) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h3) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_get_stats(b).free_ranges == 1);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

/* A block above 4 GiB, and one of 2^63 bytes: offsets past 32 bits, the top size class. */
static void test_vblock_large(void) {
    buffet_debug *d = tg_debug();
    buffet_gpu_vblock *b = tg_block(d, (uint64_t)1 << 63, 0, NULL);
    buffet_gpu_valloc h[3];
    uint64_t o[3];
    BT_CHECK(buffet_gpu_vblock_alloc(b, (uint64_t)1 << 62, 1, &o[0], &h[0]) == BUFFET_OK && o[0] == 0);
    BT_CHECK(buffet_gpu_vblock_alloc(b, (uint64_t)5 << 32, (uint64_t)1 << 40, &o[1], &h[1]) == BUFFET_OK);
    BT_CHECK(o[1] % ((uint64_t)1 << 40) == 0 && o[1] >= (uint64_t)1 << 62);
    BT_CHECK(buffet_gpu_vblock_alloc(b, (uint64_t)1 << 62, 1, &o[2], &h[2]) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h[0]) == BUFFET_OK && buffet_gpu_vblock_free(b, h[1]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_alloc(b, (uint64_t)1 << 63, 1, &o[2], &h[2]) == BUFFET_OK && o[2] == 0);
    BT_CHECK(buffet_gpu_vblock_get_stats(b).free_bytes == 0);
    BT_CHECK(buffet_gpu_vblock_free(b, h[2]) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   vblock: errors */

static uint32_t tg_frame_contract(const void *self) { (void)self; return 0; }   /* blocks die with a frame */
static void *tg_no_alloc(void *self, size_t size, size_t align, buffet_site site) {
    (void)self; (void)size; (void)align; (void)site;
    return NULL;
}
static void tg_no_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)self; (void)ptr; (void)size; (void)align; (void)site;
}

static void test_vblock_create_errors(void) {
    buffet_debug *d = tg_debug();
    buffet_gpu_vblock_desc desc;
    buffet_gpu_vblock *b = (buffet_gpu_vblock *)&desc;
    buffet_allocator_vtable vt;
    buffet_failing f;
    bt_log l;
    int at;
    memset(&desc, 0, sizeof desc);
    desc.allocator = buffet_debug_allocator(d);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_gpu_vblock_create(NULL, &desc) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_create(&b, NULL) == BUFFET_ERR_INVALID && b == NULL);
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_INVALID && b == NULL);   /* size 0 */
    desc.size = ((uint64_t)1 << 63) + 1;
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_INVALID);
    desc.size = UINT64_MAX;
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_INVALID);
    desc.size = 4096;
    desc.min_align = 3;
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_INVALID);
    desc.size = 4000;
    desc.min_align = 64;   /* not a multiple */
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_INVALID && bt_logged(&l, BUFFET_ERR_INVALID) == 5);
    desc.size = 4096;
    /* bookkeeping whose blocks die with a frame */
    memset(&vt, 0, sizeof vt);
    vt.alloc = tg_no_alloc;
    vt.free = tg_no_free;
    vt.contract = tg_frame_contract;
    desc.allocator.self = &vt;
    desc.allocator.vtable = &vt;
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_LIFETIME && bt_logged(&l, BUFFET_ERR_LIFETIME) == 1);
    desc.allocator = buffet_null_allocator();
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_NOMEM && b == NULL);
    /* a bookkeeping failure at each allocation create makes */
    for (at = 1; at <= 2; at++) {
        buffet_failing_init(&f, buffet_debug_allocator(d), (uint64_t)at, false);
        desc.allocator = buffet_failing_allocator(&f);
        BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_ERR_NOMEM && b == NULL);
        BT_CHECK(buffet_debug_get_stats(d).live_count == 0);
        buffet_failing_deinit(&f);
    }
    tg_debug_done(d);
}

static void test_vblock_alloc_errors(void) {
    buffet_debug *d = tg_debug();
    bt_log l;
    buffet_gpu_vblock *b = tg_block(d, 1 << 20, 256, &l);
    buffet_gpu_valloc h = 77, h2;
    uint64_t o = 77, o2;
    buffet_gpu_vblock_stats st;
    BT_CHECK(buffet_gpu_vblock_alloc(NULL, 1, 1, &o, &h) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, 1, NULL, &h) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, 1, &o, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 0, 1, &o, &h) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, 0, &o, &h) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, 3, &o, &h) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, UINT64_MAX, &o, &h) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_alloc(b, UINT64_MAX, 1, &o, &h) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_gpu_vblock_alloc(b, UINT64_MAX - 200, 1, &o, &h) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_gpu_vblock_alloc(b, UINT64_MAX - 255, 1, &o, &h) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_gpu_vblock_alloc(b, (1 << 20) + 1, 1, &o, &h) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_gpu_vblock_alloc(b, SIZE_MAX, 1, &o, &h) != BUFFET_OK);
    BT_CHECK(o == 77 && h == 77);
    st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(st.failed_allocs == 9 && st.allocations == 0 && st.free_ranges == 1);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 4 && bt_logged(&l, BUFFET_ERR_OVERFLOW) >= 2 && bt_logged(&l, BUFFET_ERR_TOO_LARGE) >= 2);
    /* a huge alignment: only offset 0 has it */
    BT_CHECK(buffet_gpu_vblock_alloc(b, 256, (uint64_t)1 << 63, &o, &h) == BUFFET_OK && o == 0);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 256, (uint64_t)1 << 63, &o2, &h2) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 256, (uint64_t)1 << 20, &o2, &h2) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 256, (uint64_t)1 << 19, &o2, &h2) == BUFFET_OK && o2 == 1 << 19);
    BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_OK && buffet_gpu_vblock_free(b, h2) == BUFFET_OK);
    /* the whole block, then nothing more */
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1 << 20, 1 << 20, &o, &h) == BUFFET_OK && o == 0);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 1, 1, &o2, &h2) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

static void test_vblock_max_allocations(void) {
    buffet_debug *d = tg_debug();
    buffet_gpu_vblock_desc desc;
    buffet_gpu_vblock *b = NULL;
    buffet_gpu_valloc h[5];
    uint64_t o;
    bt_log l;
    int i;
    memset(&desc, 0, sizeof desc);
    desc.size = 1 << 20;
    desc.max_allocations = 4;
    desc.allocator = buffet_debug_allocator(d);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_OK);
    for (i = 0; i < 4; i++) BT_CHECK(buffet_gpu_vblock_alloc(b, 10, 1, &o, &h[i]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 10, 1, &o, &h[4]) == BUFFET_ERR_EXHAUSTED && bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 1);
    BT_CHECK(buffet_gpu_vblock_free(b, h[2]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 10, 1, &o, &h[2]) == BUFFET_OK && o == 20);
    for (i = 0; i < 4; i++) BT_CHECK(buffet_gpu_vblock_free(b, h[i]) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

/* Double frees, another block's handles, garbage, handles from before a reset: refused, counted,
   and the block unchanged. */
static void test_vblock_misuse(void) {
    buffet_debug *d = tg_debug();
    bt_log l, l2;
    buffet_gpu_vblock *b = tg_block(d, 1 << 20, 0, &l), *other = tg_block(d, 1 << 20, 0, &l2);
    buffet_gpu_valloc h, h2, ho, keep;
    uint64_t o, o2;
    buffet_gpu_vblock_stats st;
    unsigned k;
    BT_CHECK(buffet_gpu_vblock_alloc(b, 4096, 1, &o, &h) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 4096, 1, &o, &keep) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_alloc(other, 4096, 1, &o2, &ho) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(NULL, h) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_free(b, ho) == BUFFET_ERR_FOREIGN);     /* same slot and generation, other block */
    BT_CHECK(buffet_gpu_vblock_free(other, h) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_vblock_get(b, ho, &o, NULL) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_vblock_free(b, 0) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_vblock_free(b, UINT64_MAX) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_vblock_free(b, (h & ~(uint64_t)0xFFFFFFFFu) | 0xFFFFFFF0u) == BUFFET_ERR_FOREIGN);   /* slot out of range */
    BT_CHECK(buffet_gpu_vblock_free(b, h + ((uint64_t)5 << 32)) == BUFFET_ERR_FOREIGN);   /* a generation never issued */
    BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_gpu_vblock_get(b, h, &o, NULL) == BUFFET_ERR_DOUBLE_FREE);
    /* the slot used again: the old handle still names nothing */
    BT_CHECK(buffet_gpu_vblock_alloc(b, 4096, 1, &o, &h2) == BUFFET_OK && h2 != h);
    BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_gpu_vblock_get(b, h2, &o2, NULL) == BUFFET_OK && o2 == o);
    /* garbage of every shape, with this block's tag */
    tg_rng = 12345;
    for (k = 0; k < 10000; k++) {
        buffet_gpu_valloc g = tg_rand();
        if (k & 1) g = (h & ~(uint64_t)0xFFFFFFFFFFFFull) | (g & 0xFFFF0000000Full);
        if (g == h2 || g == keep) continue;
        BT_CHECK(buffet_gpu_vblock_free(b, g) != BUFFET_OK);
    }
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(st.allocations == 2 && st.allocated_bytes == 8192);
    BT_CHECK(st.double_frees >= 2 && st.foreign_frees >= 5 && st.double_frees + st.foreign_frees >= 10005);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_DOUBLE_FREE) + bt_logged(&l, BUFFET_ERR_FOREIGN) == st.double_frees + st.foreign_frees);
    /* use after reset */
    buffet_gpu_vblock_reset(b);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(b, h2) == BUFFET_ERR_DOUBLE_FREE && buffet_gpu_vblock_free(b, keep) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_gpu_vblock_get(b, keep, NULL, NULL) == BUFFET_ERR_DOUBLE_FREE);
    st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(st.allocations == 0 && st.free_ranges == 1 && st.largest_free == 1 << 20);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 4096, 1, &o, &h) == BUFFET_OK && o == 0);
    BT_CHECK(h != h2 && h != keep);
    BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_free(other, ho) == BUFFET_OK);
    BT_CHECK(l2.total == 1 && l2.last == BUFFET_ERR_FOREIGN);   /* h given to other */
    buffet_gpu_vblock_destroy(b);
    buffet_gpu_vblock_destroy(other);
    /* NULLs */
    buffet_gpu_vblock_destroy(NULL);
    buffet_gpu_vblock_reset(NULL);
    BT_CHECK(buffet_gpu_vblock_get(NULL, 1, NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_check(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_vblock_get_stats(NULL).size == 0);
    tg_debug_done(d);
}

/* The node table cannot grow: the allocation is refused with the allocator's reason and nothing
   changes; once memory is back, it works. */
static void test_vblock_bookkeeping_fails(void) {
    buffet_debug *d = tg_debug();
    buffet_failing f;
    buffet_gpu_vblock_desc desc;
    buffet_gpu_vblock *b = NULL;
    buffet_gpu_valloc h[200];
    uint64_t o;
    bt_log l;
    int i, n = 0;
    buffet_result r = BUFFET_OK;
    buffet_gpu_vblock_stats before, after;
    buffet_failing_init(&f, buffet_debug_allocator(d), 3, true);   /* struct, node table; then nothing */
    memset(&desc, 0, sizeof desc);
    desc.size = 1 << 20;
    desc.allocator = buffet_failing_allocator(&f);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_OK);
    for (i = 0; i < 200 && r == BUFFET_OK; i++) {
        before = buffet_gpu_vblock_get_stats(b);
        r = buffet_gpu_vblock_alloc(b, 100, 64, &o, &h[n]);
        if (r == BUFFET_OK) n++;
    }
    BT_CHECK(r == BUFFET_ERR_NOMEM && n >= 20 && bt_logged(&l, BUFFET_ERR_NOMEM) == 1);
    after = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(after.allocations == before.allocations && after.allocated_bytes == before.allocated_bytes);
    BT_CHECK(after.free_ranges == before.free_ranges && after.failed_allocs == before.failed_allocs + 1);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    /* frees need no memory */
    for (i = 0; i < n; i += 2) BT_CHECK(buffet_gpu_vblock_free(b, h[i]) == BUFFET_OK);
    f.fail_at = 0;
    f.fail_after = false;
    for (i = 0; i < 100; i++) BT_CHECK(buffet_gpu_vblock_alloc(b, 100, 64, &o, &h[n + i]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);   /* with live allocations: reported, bookkeeping freed */
    buffet_failing_deinit(&f);
    tg_debug_done(d);
}

static void test_vblock_leaks(void) {
    buffet_debug *d = tg_debug();
    bt_log l;
    buffet_gpu_vblock *b = tg_block(d, 1 << 20, 0, &l);
    buffet_gpu_valloc h;
    uint64_t o;
    int i;
    for (i = 0; i < 3; i++) BT_CHECK(buffet_gpu_vblock_alloc(b, 1000, 1, &o, &h) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LEAK) == 4);
    BT_CHECK(strstr(l.all, "1000 bytes at offset 2000") != NULL && strstr(l.all, "3 allocations (3000 bytes)") != NULL);
    b = tg_block(d, 1 << 20, 0, &l);
    for (i = 0; i < 100; i++) BT_CHECK(buffet_gpu_vblock_alloc(b, 10, 1, &o, &h) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LEAK) == 9 && strstr(l.last_msg, "100 allocations (1000 bytes)") != NULL);
    b = tg_block(d, 1 << 20, 0, &l);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 10, 1, &o, &h) == BUFFET_OK && buffet_gpu_vblock_free(b, h) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    BT_CHECK(l.total == 0);
    tg_debug_done(d);
}

/* One slot used 70000 times: its 16-bit generation runs out, the slot retires, and its first
   handle is still refused as freed. */
static void test_vblock_generations(void) {
    buffet_debug *d = tg_debug();
    buffet_gpu_vblock *b = tg_block(d, 1 << 20, 0, NULL);
    buffet_gpu_valloc first = 0, h = 0, last = 0;
    uint64_t o;
    int i;
    buffet_gpu_vblock_stats st;
    for (i = 0; i < 70000; i++) {
        BT_CHECK(buffet_gpu_vblock_alloc(b, 4096, 1, &o, &h) == BUFFET_OK && o == 0);
        if (i == 0) first = h;
        if (i == 65535) last = h;
        BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_OK);
    }
    st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(st.retired_nodes >= 1 && st.nodes < 64);
    BT_CHECK(buffet_gpu_vblock_free(b, first) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_gpu_vblock_free(b, last) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    /* a reset retires the spent slots it meets too */
    BT_CHECK(buffet_gpu_vblock_alloc(b, 4096, 1, &o, &h) == BUFFET_OK);
    buffet_gpu_vblock_reset(b);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK && buffet_gpu_vblock_free(b, h) == BUFFET_ERR_DOUBLE_FREE);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

/* Does s contain "key":value (value as text, up to a , or })? */
static int tg_json_has(const char *s, const char *key, const char *value) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":%s", key, value);
    const char *p = strstr(s, pat);
    return p && (p[strlen(pat)] == ',' || p[strlen(pat)] == '}');
}

static void test_vblock_json(void) {
    buffet_debug *d = tg_debug();
    buffet_gpu_vblock_desc desc;
    buffet_gpu_vblock *b = NULL;
    buffet_gpu_valloc h;
    uint64_t o;
    char out[1024], small[16];
    size_t n;
    memset(&desc, 0, sizeof desc);
    desc.size = 1 << 20;
    desc.min_align = 64;
    desc.allocator = buffet_debug_allocator(d);
    desc.name = "heap \"0\"\n\xff";
    BT_CHECK(buffet_gpu_vblock_create(&b, &desc) == BUFFET_OK);
    BT_CHECK(buffet_gpu_vblock_alloc(b, 100, 1, &o, &h) == BUFFET_OK);
    n = buffet_gpu_vblock_stats_json(b, out, sizeof out);
    BT_CHECK(n == strlen(out) && out[0] == '{' && out[n - 1] == '}');
    BT_CHECK(strstr(out, "\"vblock\":\"heap \\\"0\\\"\\n\xEF\xBF\xBD\"") != NULL);
    BT_CHECK(tg_json_has(out, "size", "1048576") && tg_json_has(out, "min_align", "64") && tg_json_has(out, "allocations", "1"));
    BT_CHECK(tg_json_has(out, "allocated_bytes", "128") && tg_json_has(out, "free_ranges", "1"));
    BT_CHECK(tg_json_has(out, "fragmentation", "0.000000") && tg_json_has(out, "largest_free", "1048448"));
    BT_CHECK(buffet_gpu_vblock_stats_json(b, small, sizeof small) == n && strlen(small) == sizeof small - 1);
    BT_CHECK(buffet_gpu_vblock_stats_json(b, NULL, 0) == n);
    BT_CHECK(buffet_gpu_vblock_stats_json(NULL, out, sizeof out) > 0 && tg_json_has(out, "size", "0"));
    BT_CHECK(buffet_gpu_vblock_free(b, h) == BUFFET_OK);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   vblock: the model test. The block is 64 MiB with min_align 16; the model owns one bit per
   16-byte granule. */

#define TG_SIZE ((uint64_t)64 << 20)
#define TG_GRAN 16u
#define TG_BITS (TG_SIZE / TG_GRAN)
#define TG_LIVE_MAX 8192

typedef struct tg_live { buffet_gpu_valloc h; uint64_t off, size, align; } tg_live;
static uint64_t tg_map[TG_BITS / 64];
static tg_live tg_lv[TG_LIVE_MAX];

/* Set (on) or clear granules [g, g+n); returns whether each was in the other state before. */
static int tg_mark(uint64_t g, uint64_t n, int on) {
    int ok = 1;
    while (n) {
        uint64_t w = g / 64, b = g % 64, k = 64 - b < n ? 64 - b : n;
        uint64_t m = (k == 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1)) << b;
        if (on) { ok &= (tg_map[w] & m) == 0; tg_map[w] |= m; }
        else { ok &= (tg_map[w] & m) == m; tg_map[w] &= ~m; }
        g += k;
        n -= k;
    }
    return ok;
}

/* The maximal runs of free granules: how many, and the longest (bytes). */
static void tg_runs(uint64_t *count, uint64_t *longest, uint64_t *free_bytes) {
    uint64_t g, run = 0;
    *count = *longest = *free_bytes = 0;
    for (g = 0; g <= TG_BITS; g++) {
        int used = g == TG_BITS || (tg_map[g / 64] >> (g % 64) & 1);
        if (!used) { run++; continue; }
        if (run) {
            (*count)++;
            *free_bytes += run * TG_GRAN;
            if (run * TG_GRAN > *longest) *longest = run * TG_GRAN;
        }
        run = 0;
    }
}

static unsigned long long tg_seed(void) {
    const char *s = getenv("BUFFET_STRESS_SEED");
    return s && *s ? strtoull(s, NULL, 10) : (unsigned long long)time(NULL) ^ ((unsigned long long)clock() << 20);
}

static void tg_compare(buffet_gpu_vblock *b, unsigned n, uint64_t bytes) {
    uint64_t runs, longest, free_bytes;
    buffet_gpu_vblock_stats st = buffet_gpu_vblock_get_stats(b);
    BT_CHECK(buffet_gpu_vblock_check(b) == BUFFET_OK);
    tg_runs(&runs, &longest, &free_bytes);
    BT_CHECK(st.allocations == n && st.allocated_bytes == bytes && st.free_bytes == TG_SIZE - bytes);
    BT_CHECK(free_bytes == st.free_bytes);         /* every byte accounted for */
    BT_CHECK(runs == st.free_ranges);              /* coalesced: one range per maximal run */
    BT_CHECK(longest == st.largest_free);
}

static void test_vblock_model(void) {
    buffet_debug *d = tg_debug();
    buffet_gpu_vblock *b = tg_block(d, TG_SIZE, TG_GRAN, NULL);
    unsigned long long seed = tg_seed(), ops = bt_stress_ops(), i, fails = 0;
    unsigned n = 0, target = 1000, checks = 0;
    uint64_t bytes = 0;
    if (!getenv("BUFFET_STRESS_OPS")) {
        if (bt_mode("valgrind")) ops = 50000;
        else if (bt_mode("aarch64")) ops = 200000;
        else ops = 1000000;
    }
    printf("vblock model: %llu operations, seed %llu (BUFFET_STRESS_SEED=%llu repeats them)\n", ops, seed, seed);
    fflush(stdout);
    tg_rng = seed;
    memset(tg_map, 0, sizeof tg_map);
    for (i = 0; i < ops; i++) {
        uint64_t r = tg_rand();
        if (i % 50000 == 0) target = 64 + (unsigned)(tg_rand() % (TG_LIVE_MAX - 64));   /* fill levels vary */
        if (n < target ? (r & 7) != 0 : (r & 7) == 0) {
            /* sizes log-uniform 1 B .. 256 KiB, now and then up to 4 MiB; alignments 1 .. 64 KiB */
            uint64_t size = 1 + (tg_rand() & ((((uint64_t)1) << (tg_rand() % ((r >> 8) % 64 == 0 ? 22 : 18))) - 1));
            uint64_t align = (uint64_t)1 << ((r >> 16) % 8 == 0 ? (r >> 20) % 17 : (r >> 20) % 9), off, s;
            buffet_gpu_valloc h;
            buffet_result res;
            if (n == TG_LIVE_MAX) continue;
            res = buffet_gpu_vblock_alloc(b, size, align, &off, &h);
            if (res != BUFFET_OK) {
                uint64_t runs, longest, fb;
                BT_CHECK(res == BUFFET_ERR_EXHAUSTED);
                /* a failure is honest: no free range holds even the size */
                if (fails++ < 200) {
                    tg_runs(&runs, &longest, &fb);
                    BT_CHECK(longest < size + align + (size + align) / 16 + TG_GRAN);
                }
                continue;
            }
            s = (size + TG_GRAN - 1) / TG_GRAN * TG_GRAN;
            BT_CHECK(off % align == 0 && off % TG_GRAN == 0 && off + s <= TG_SIZE);   /* alignment held */
            BT_CHECK(tg_mark(off / TG_GRAN, s / TG_GRAN, 1));                       /* no overlap */
            tg_lv[n].h = h;
            tg_lv[n].off = off;
            tg_lv[n].size = s;
            tg_lv[n].align = align;
            n++;
            bytes += s;
        } else if (n) {
            unsigned k = (unsigned)(tg_rand() % n);
            uint64_t o2, s2;
            BT_CHECK(buffet_gpu_vblock_get(b, tg_lv[k].h, &o2, &s2) == BUFFET_OK && o2 == tg_lv[k].off && s2 == tg_lv[k].size);
            BT_CHECK(buffet_gpu_vblock_free(b, tg_lv[k].h) == BUFFET_OK);
            if ((r & 0xFF) == 1) BT_CHECK(buffet_gpu_vblock_free(b, tg_lv[k].h) == BUFFET_ERR_DOUBLE_FREE);
            BT_CHECK(tg_mark(tg_lv[k].off / TG_GRAN, tg_lv[k].size / TG_GRAN, 0));
            bytes -= tg_lv[k].size;
            tg_lv[k] = tg_lv[--n];
        }
        if (i % 20000 == 19999) { tg_compare(b, n, bytes); checks++; }
        if (bt_cur_failed > 20) break;
    }
    tg_compare(b, n, bytes);
    printf("vblock model: %u live at the end, %llu refused as full, %u full comparisons, fragmentation %.4f\n", n, fails,
           checks + 1, buffet_gpu_vblock_get_stats(b).fragmentation);
    while (n) {
        BT_CHECK(buffet_gpu_vblock_free(b, tg_lv[--n].h) == BUFFET_OK);
        tg_mark(tg_lv[n].off / TG_GRAN, tg_lv[n].size / TG_GRAN, 0);
    }
    tg_compare(b, 0, 0);
    BT_CHECK(buffet_gpu_vblock_get_stats(b).free_ranges == 1);
    buffet_gpu_vblock_destroy(b);
    tg_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   ring */

static void test_ring_basic(void) {
    buffet_gpu_ring r;
    buffet_gpu_ring_desc desc;
    buffet_gpu_ring_mark m1, m2, m3;
    buffet_gpu_ring_stats st;
    uint64_t o;
    bt_log l;
    char out[512];
    memset(&desc, 0, sizeof desc);
    desc.size = 1024;
    desc.min_align = 16;
    desc.log = bt_logger(&l);
    desc.name = "upload";
    BT_CHECK(buffet_gpu_ring_init(&r, &desc) == BUFFET_OK);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 100, 1, &o) == BUFFET_OK && o == 0);      /* 112 with min_align */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 10, 256, &o) == BUFFET_OK && o == 256);
    BT_CHECK(buffet_gpu_ring_mark_take(&r, &m1) == BUFFET_OK && m1 != 0);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 500, 1, &o) == BUFFET_OK && o == 272);
    BT_CHECK(buffet_gpu_ring_mark_take(&r, &m2) == BUFFET_OK && m2 != m1);
    st = buffet_gpu_ring_get_stats(&r);
    BT_CHECK(st.used == 272 + 512 && st.marks_outstanding == 2 && st.allocs == 3);
    /* 300 more do not fit before the end (784 + 300 > 1024), nor after wrapping while frame 1 is live */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 300, 1, &o) == BUFFET_ERR_EXHAUSTED && bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 1);
    BT_CHECK(buffet_gpu_ring_release(&r, m1) == BUFFET_OK);
    BT_CHECK(buffet_gpu_ring_get_stats(&r).used == 512);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 300, 1, &o) == BUFFET_ERR_EXHAUSTED);   /* [0, 272) is free: 300 needs more */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 200, 1, &o) == BUFFET_OK && o == 784);   /* fits before the end */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 200, 1, &o) == BUFFET_OK && o == 0);     /* wraps: 32 bytes skipped */
    st = buffet_gpu_ring_get_stats(&r);
    BT_CHECK(st.wraps == 1 && st.used == 512 + 208 + 32 + 208);
    BT_CHECK(buffet_gpu_ring_mark_take(&r, &m3) == BUFFET_OK);
    BT_CHECK(buffet_gpu_ring_release(&r, m3) == BUFFET_OK);       /* frees m2's frame too */
    BT_CHECK(buffet_gpu_ring_get_stats(&r).used == 0 && buffet_gpu_ring_get_stats(&r).marks_outstanding == 0);
    BT_CHECK(buffet_gpu_ring_release(&r, m2) == BUFFET_ERR_DOUBLE_FREE);   /* older than one released */
    BT_CHECK(buffet_gpu_ring_release(&r, m3) == BUFFET_ERR_DOUBLE_FREE);
    /* empty: starts again at 0, the whole ring is free */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 1024, 1, &o) == BUFFET_OK && o == 0);
    BT_CHECK(buffet_gpu_ring_get_stats(&r).peak_used == 1024);
    BT_CHECK(buffet_gpu_ring_stats_json(&r, out, sizeof out) == strlen(out));
    BT_CHECK(strstr(out, "\"ring\":\"upload\"") && tg_json_has(out, "used", "1024") && tg_json_has(out, "wraps", "1"));
    BT_CHECK(tg_json_has(out, "bad_marks", "2") && tg_json_has(out, "failures", "2"));
    buffet_gpu_ring_reset(&r);
    BT_CHECK(buffet_gpu_ring_get_stats(&r).used == 0);
    buffet_gpu_ring_deinit(&r);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 1, 1, &o) == BUFFET_ERR_INVALID);
}

static void test_ring_errors(void) {
    buffet_gpu_ring r, r2;
    buffet_gpu_ring_desc desc;
    buffet_gpu_ring_mark m = 0, m2 = 0, old, marks[BUFFET_GPU_RING_MARKS];
    uint64_t o = 77;
    bt_log l;
    int i;
    memset(&desc, 0, sizeof desc);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_gpu_ring_init(NULL, &desc) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_init(&r, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_init(&r, &desc) == BUFFET_ERR_INVALID);   /* size 0 */
    desc.size = 1000;
    desc.min_align = 3;
    BT_CHECK(buffet_gpu_ring_init(&r, &desc) == BUFFET_ERR_INVALID);
    desc.min_align = 16;   /* 1000 is no multiple */
    BT_CHECK(buffet_gpu_ring_init(&r, &desc) == BUFFET_ERR_INVALID);
    desc.size = UINT64_MAX - 15;
    BT_CHECK(buffet_gpu_ring_init(&r, &desc) == BUFFET_ERR_INVALID);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 4);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 1, 1, &o) == BUFFET_ERR_INVALID);   /* not initialised */
    desc.size = 4096;
    BT_CHECK(buffet_gpu_ring_init(&r, &desc) == BUFFET_OK && buffet_gpu_ring_init(&r2, &desc) == BUFFET_OK);
    BT_CHECK(buffet_gpu_ring_alloc(NULL, 1, 1, &o) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 1, 1, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 0, 1, &o) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 1, 0, &o) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 1, 3, &o) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_alloc(&r, UINT64_MAX, 1, &o) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_gpu_ring_alloc(&r, SIZE_MAX - 3, 1, &o) == BUFFET_ERR_OVERFLOW || sizeof(size_t) < 8);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 4097, 1, &o) == BUFFET_ERR_TOO_LARGE && o == 77);
    BT_CHECK(buffet_gpu_ring_get_stats(&r).failures == 6 && buffet_gpu_ring_get_stats(&r).used == 0);
    /* huge alignment: offset 0 has every alignment */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 16, (uint64_t)1 << 63, &o) == BUFFET_OK && o == 0);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 16, (uint64_t)1 << 63, &o) == BUFFET_ERR_EXHAUSTED);   /* would wrap over itself */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 16, 1024, &o) == BUFFET_OK && o == 1024);
    /* marks: NULLs, garbage, another ring's, never taken, out of order, too many */
    BT_CHECK(buffet_gpu_ring_mark_take(NULL, &m) == BUFFET_ERR_INVALID && buffet_gpu_ring_mark_take(&r, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_release(NULL, 1) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_ring_mark_take(&r, &m) == BUFFET_OK && buffet_gpu_ring_mark_take(&r2, &m2) == BUFFET_OK);
    BT_CHECK(buffet_gpu_ring_release(&r, m2) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_ring_release(&r2, m) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_ring_release(&r, 0) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_ring_release(&r, m + 1) == BUFFET_ERR_FOREIGN);   /* not taken yet */
    BT_CHECK(buffet_gpu_ring_release(&r, UINT64_MAX) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_ring_get_stats(&r).used == 1040);
    old = m;
    for (i = 0; i < BUFFET_GPU_RING_MARKS - 1; i++) BT_CHECK(buffet_gpu_ring_mark_take(&r, &marks[i]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_ring_mark_take(&r, &m) == BUFFET_ERR_EXHAUSTED && bt_logged(&l, BUFFET_ERR_EXHAUSTED) >= 1);
    BT_CHECK(buffet_gpu_ring_release(&r, marks[5]) == BUFFET_OK);
    BT_CHECK(buffet_gpu_ring_release(&r, marks[2]) == BUFFET_ERR_DOUBLE_FREE);   /* out of order: released with 5 */
    BT_CHECK(buffet_gpu_ring_release(&r, old) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_gpu_ring_get_stats(&r).used == 0 && buffet_gpu_ring_get_stats(&r).bad_marks == 6);
    BT_CHECK(buffet_gpu_ring_mark_take(&r, &m) == BUFFET_OK);
    /* reset: every mark goes stale */
    BT_CHECK(buffet_gpu_ring_alloc(&r, 100, 1, &o) == BUFFET_OK);
    buffet_gpu_ring_reset(&r);
    BT_CHECK(buffet_gpu_ring_release(&r, marks[10]) == BUFFET_ERR_DOUBLE_FREE && buffet_gpu_ring_release(&r, m) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_gpu_ring_get_stats(&r).marks_outstanding == 0 && buffet_gpu_ring_get_stats(&r).used == 0);
    BT_CHECK(buffet_gpu_ring_alloc(&r, 4096, 1, &o) == BUFFET_OK && o == 0);
    buffet_gpu_ring_reset(NULL);
    buffet_gpu_ring_deinit(NULL);
    BT_CHECK(buffet_gpu_ring_get_stats(NULL).size == 0 && buffet_gpu_ring_stats_json(NULL, NULL, 0) > 0);
    buffet_gpu_ring_deinit(&r);
    BT_CHECK(buffet_gpu_ring_mark_take(&r, &m) == BUFFET_ERR_INVALID && buffet_gpu_ring_release(&r, m) == BUFFET_ERR_INVALID);
    buffet_gpu_ring_deinit(&r2);
}

/* Frames of random allocations, marks released after 1..3 frames, against a model of the live
   allocations and the granules they own. */
#define TR_SIZE (1u << 18)
static unsigned char tr_own[TR_SIZE / 16];   /* 1: a live allocation owns the granule */
typedef struct tr_alloc { uint64_t off, size; unsigned frame; } tr_alloc;

static void test_ring_model(void) {
    static tr_alloc live[65536];
    buffet_gpu_ring r;
    buffet_gpu_ring_desc desc;
    buffet_gpu_ring_mark marks[4];
    unsigned long long seed = tg_seed(), frames = bt_mode("valgrind") ? 2000 : 20000, f;
    unsigned n = 0, head = 0, nmarks = 0, i, k;
    uint64_t used = 0;
    memset(&desc, 0, sizeof desc);
    desc.size = TR_SIZE;
    desc.min_align = 16;
    BT_CHECK(buffet_gpu_ring_init(&r, &desc) == BUFFET_OK);
    memset(tr_own, 0, sizeof tr_own);
    tg_rng = seed + 1;
    printf("ring model: %llu frames, seed %llu\n", frames, seed);
    for (f = 1; f <= frames; f++) {
        unsigned per = (unsigned)(tg_rand() % 24);
        for (i = 0; i < per && n < 65536; i++) {
            uint64_t size = 1 + tg_rand() % (tg_rand() % 16 == 0 ? 65536 : 2048), align = (uint64_t)1 << (tg_rand() % 10), off, s;
            buffet_result res = buffet_gpu_ring_alloc(&r, size, align, &off);
            if (res == BUFFET_ERR_EXHAUSTED) continue;
            BT_CHECK(res == BUFFET_OK);
            if (res != BUFFET_OK) break;
            s = (size + 15) & ~(uint64_t)15;
            BT_CHECK(off % align == 0 && off + s <= TR_SIZE);
            for (k = 0; k < s / 16; k++) {
                BT_CHECK(tr_own[off / 16 + k] == 0);
                tr_own[off / 16 + k] = 1;
            }
            live[(head + n++) % 65536].off = off;
            live[(head + n - 1) % 65536].size = s;
            live[(head + n - 1) % 65536].frame = (unsigned)f;
            used += s;
        }
        BT_CHECK(buffet_gpu_ring_get_stats(&r).used >= used);   /* padding and skipped ends come on top */
        if (nmarks == 4) break;
        BT_CHECK(buffet_gpu_ring_mark_take(&r, &marks[nmarks]) == BUFFET_OK);
        nmarks++;
        /* the oldest frame's fence passes after 1..3 frames; now and then two at once */
        if (nmarks >= 1 + tg_rand() % 3) {
            unsigned drop = nmarks >= 2 && tg_rand() % 4 == 0 ? 2 : 1;
            unsigned last_frame = (unsigned)f - nmarks + drop;
            BT_CHECK(buffet_gpu_ring_release(&r, marks[drop - 1]) == BUFFET_OK);
            if (drop == 2) BT_CHECK(buffet_gpu_ring_release(&r, marks[0]) == BUFFET_ERR_DOUBLE_FREE);
            for (k = drop; k < nmarks; k++) marks[k - drop] = marks[k];
            nmarks -= drop;
            while (n && live[head].frame <= last_frame) {
                for (k = 0; k < live[head].size / 16; k++) tr_own[live[head].off / 16 + k] = 0;
                used -= live[head].size;
                head = (head + 1) % 65536;
                n--;
            }
        }
        if (bt_cur_failed > 20) break;
    }
    BT_CHECK(buffet_gpu_ring_get_stats(&r).failures < frames);   /* a full ring happens, but not always */
    printf("ring model: %llu allocations, %llu wraps, %llu refused as full, peak %llu of %u bytes\n",
           (unsigned long long)buffet_gpu_ring_get_stats(&r).allocs, (unsigned long long)buffet_gpu_ring_get_stats(&r).wraps,
           (unsigned long long)buffet_gpu_ring_get_stats(&r).failures, (unsigned long long)buffet_gpu_ring_get_stats(&r).peak_used,
           TR_SIZE);
    buffet_gpu_ring_deinit(&r);
}

int main(void) {
    BT_RUN(test_vblock_basic);
    BT_RUN(test_vblock_min_align);
    BT_RUN(test_vblock_large);
    BT_RUN(test_vblock_create_errors);
    BT_RUN(test_vblock_alloc_errors);
    BT_RUN(test_vblock_max_allocations);
    BT_RUN(test_vblock_misuse);
    BT_RUN(test_vblock_bookkeeping_fails);
    BT_RUN(test_vblock_leaks);
    BT_RUN(test_vblock_generations);
    BT_RUN(test_vblock_json);
    BT_RUN(test_vblock_model);
    BT_RUN(test_ring_basic);
    BT_RUN(test_ring_errors);
    BT_RUN(test_ring_model);
    return bt_finish("test_gpu_vblock");
}
