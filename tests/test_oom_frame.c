/* test_oom_frame.c - the out-of-memory sweep of buffet_frame.h: every public function that
   allocates (arena and pool creation, a frame allocation that needs a new or an oversized chunk,
   batches, arrays, growable arrays, transfers and pins, scope allocations and deferred actions,
   pool caches, gets that grow the pool, bulk and shared gets, the pool allocator) runs over a
   failing allocator with its 1st, 2nd, 3rd ... parent allocation failing, once and from then
   on, until the call succeeds. Each failure must be a clean error (NULL or an error code, the
   reason BUFFET_ERR_NOMEM, the failure counted where the object counts them), leave the object
   as it was and usable, and leak nothing: the failing allocator sits over a debug allocator
   that must end every step with nothing live and no error. Prints how many allocation points
   each function has. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_frame.h"
#include "bt.h"

/* One step of a sweep: a debug allocator with a failing allocator over it. */
typedef struct to_ctx {
    buffet_debug *d;
    buffet_failing f;
    buffet_allocator a;        /* the failing allocator: what the objects under test use */
} to_ctx;

static void to_begin(to_ctx *x) {
    buffet_debug_desc dd;
    memset(x, 0, sizeof *x);
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_silent;   /* the failures are injected; the counts are checked */
    BT_CHECK(buffet_debug_create(&x->d, &dd) == BUFFET_OK);
    buffet_failing_init(&x->f, buffet_debug_allocator(x->d), 0, false);
    x->a = buffet_failing_allocator(&x->f);
}

/* The step is over: everything it made is gone, and nothing was freed wrongly. */
static void to_end(to_ctx *x) {
    buffet_debug_stats st = buffet_debug_get_stats(x->d);
    BT_CHECK(st.live_count == 0);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.mismatched_frees == 0 && st.corruptions == 0);
    BT_CHECK(buffet_debug_check(x->d) == BUFFET_OK);
    if (st.live_count) buffet_debug_report_leaks(x->d, stderr);
    buffet_debug_destroy(x->d);
}

/* From the k-th parent allocation on (after: all of them; else that one only), fail. */
static void to_arm(to_ctx *x, uint64_t k, bool after) {
    x->f.fail_at = BUFFET__LOAD(&x->f.allocs, BUFFET__RELAXED) + k;
    x->f.fail_after = after;
}
static void to_disarm(to_ctx *x) { x->f.fail_at = 0; }

/* A failure the sweep injected: reported as such. */
static void to_nomem(void) { BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM); }

static buffet_frame_arena *to_arena(to_ctx *x, size_t chunk_size) {
    buffet_frame_desc d;
    buffet_frame_arena *fa = NULL;
    memset(&d, 0, sizeof d);
    d.parent = x->a;
    d.chunk_size = chunk_size;
    d.frames_in_flight = 2;
    BT_CHECK(buffet_frame_create(&fa, &d) == BUFFET_OK && fa != NULL);
    return fa;
}

static buffet_pool *to_pool(to_ctx *x, size_t initial) {
    buffet_pool_desc d;
    buffet_pool *p = NULL;
    memset(&d, 0, sizeof d);
    d.obj_size = 48;
    d.slab_objs = 8;
    d.initial = initial;
    d.parent = x->a;
    BT_CHECK(buffet_pool_create(&p, &d) == BUFFET_OK && p != NULL);
    return p;
}

static bool to_all(const unsigned char *p, size_t n, unsigned char v) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != v) return false;
    return true;
}

/* The arena still works: a frame with an allocation in it, then the arena goes. */
static void to_arena_done(buffet_frame_arena *fa, bool in_frame) {
    if (!in_frame) BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 100, 16) != NULL);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
}

/* ---------------------------------------------------------------------------------------------
   The calls under test: each makes what it needs with no failure armed, arms the sweep's
   failure around the one call, checks the outcome, proves the object still works, destroys it.
   Returns whether the call succeeded. */

static bool to_frame_create(to_ctx *x, uint64_t k, bool after) {
    buffet_frame_desc d;
    buffet_frame_arena *fa = NULL;
    buffet_result r;
    memset(&d, 0, sizeof d);
    d.parent = x->a;
    to_arm(x, k, after);
    r = buffet_frame_create(&fa, &d);
    to_disarm(x);
    if (r != BUFFET_OK) {
        BT_CHECK(r == BUFFET_ERR_NOMEM && fa == NULL);
        return false;
    }
    to_arena_done(fa, false);
    return true;
}

static bool to_frame_begin(to_ctx *x, uint64_t k, bool after) {
    buffet_frame_arena *fa = to_arena(x, 1024);
    buffet_result r;
    if (!fa) return true;
    to_arm(x, k, after);
    r = buffet_frame_begin(fa);
    to_disarm(x);
    BT_CHECK(r == BUFFET_OK);   /* begin allocates nothing: it cannot fail for memory */
    to_arena_done(fa, true);
    return true;
}

/* kind 0: a block that needs a new chunk; 1: an oversized one (a chunk of its own); 2: a batch;
   3: an array; 4: through the arena's allocator interface. */
static bool to_frame_alloc_kind(to_ctx *x, uint64_t k, bool after, int kind) {
    buffet_frame_arena *fa = to_arena(x, 1024);
    unsigned char *first, *p = NULL;
    void *objs[4];
    buffet_frame_stats before, now;
    if (!fa) return true;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    first = (unsigned char *)buffet_frame_alloc(fa, 700, 16);
    BT_CHECK(first != NULL);
    if (!first) {
        to_arena_done(fa, true);
        return true;
    }
    memset(first, 0x5a, 700);
    before = buffet_frame_get_stats(fa);
    to_arm(x, k, after);
    switch (kind) {
    case 0: p = (unsigned char *)buffet_frame_alloc(fa, 600, 16); break;
    case 1: p = (unsigned char *)buffet_frame_alloc(fa, 5000, 64); break;
    case 2: p = buffet_frame_alloc_batch(fa, 4, 150, 16, objs) == 4 ? (unsigned char *)objs[0] : NULL; break;
    case 3: p = (unsigned char *)buffet_frame_alloc_array(fa, 30, 20, 8); break;
    default: p = (unsigned char *)buffet_alloc(buffet_frame_allocator(fa), 600, 16, BUFFET_SITE); break;
    }
    to_disarm(x);
    now = buffet_frame_get_stats(fa);
    BT_CHECK(to_all(first, 700, 0x5a));
    if (!p) {
        to_nomem();
        BT_CHECK(now.failures == before.failures + 1 && now.count == before.count && now.bytes == before.bytes);
        BT_CHECK(now.chunks == before.chunks);
        to_arena_done(fa, true);
        return false;
    }
    BT_CHECK(now.failures == before.failures && now.chunks == before.chunks + 1);
    memset(p, 0x33, 600);
    to_arena_done(fa, true);
    return true;
}
static bool to_frame_alloc_chunk(to_ctx *x, uint64_t k, bool after) { return to_frame_alloc_kind(x, k, after, 0); }
static bool to_frame_alloc_oversized(to_ctx *x, uint64_t k, bool after) { return to_frame_alloc_kind(x, k, after, 1); }
static bool to_frame_alloc_batch(to_ctx *x, uint64_t k, bool after) { return to_frame_alloc_kind(x, k, after, 2); }
static bool to_frame_alloc_array(to_ctx *x, uint64_t k, bool after) { return to_frame_alloc_kind(x, k, after, 3); }
static bool to_frame_allocator(to_ctx *x, uint64_t k, bool after) { return to_frame_alloc_kind(x, k, after, 4); }

/* A growable array that must move to a new chunk. */
static bool to_frame_vec_push(to_ctx *x, uint64_t k, bool after) {
    buffet_frame_arena *fa = to_arena(x, 1024);
    buffet_frame_vec v;
    uint64_t e, i;
    bool ok = true;
    if (!fa) return true;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    buffet_frame_vec_init(&v, fa, sizeof(uint64_t), 8);
    for (i = 0; i < 64; i++) BT_CHECK(buffet_frame_vec_push(&v, &i) != NULL);
    BT_CHECK(buffet_frame_alloc(fa, 8, 8) != NULL);   /* the array is no longer the latest: it must move */
    e = 64;
    to_arm(x, k, after);
    if (!buffet_frame_vec_push(&v, &e)) ok = false;
    to_disarm(x);
    if (!ok) {
        to_nomem();
        BT_CHECK(v.len == 64 && v.cap == 64);
        BT_CHECK(buffet_frame_vec_push(&v, &e) != NULL);   /* still usable */
    }
    BT_CHECK(v.len == 65);
    for (i = 0; i < v.len; i++) BT_CHECK(((const uint64_t *)v.data)[i] == i);
    to_arena_done(fa, true);
    return ok;
}

static bool to_frame_push_tag(to_ctx *x, uint64_t k, bool after) {
    buffet_frame_arena *fa = to_arena(x, 1024);
    buffet_result r;
    if (!fa) return true;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    to_arm(x, k, after);
    r = buffet_frame_push_tag(fa, "tag");
    to_disarm(x);
    BT_CHECK(r == BUFFET_OK);   /* the tags are allocated with the arena */
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    to_arena_done(fa, true);
    return true;
}

static bool to_frame_transfer_send(to_ctx *x, uint64_t k, bool after) {
    buffet_frame_arena *fa = to_arena(x, 1024);
    buffet_frame_transfer *t;
    unsigned char *p;
    uint64_t sent;
    if (!fa) return true;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = (unsigned char *)buffet_frame_alloc(fa, 64, 16);
    BT_CHECK(p != NULL);
    if (!p) {
        to_arena_done(fa, true);
        return true;
    }
    memset(p, 0x42, 64);
    sent = buffet_frame_get_stats(fa).transfers_sent;
    to_arm(x, k, after);
    t = buffet_frame_transfer_send(fa, p, 64);
    to_disarm(x);
    if (!t) {
        to_nomem();
        BT_CHECK(buffet_frame_get_stats(fa).transfers_sent == sent);
        /* nothing was handed on: the block may still be freed through the allocator */
        buffet_free(buffet_frame_allocator(fa), p, 64, 16, BUFFET_SITE);
        BT_CHECK(buffet_frame_get_stats(fa).misuse == 0);
        to_arena_done(fa, true);
        return false;
    }
    BT_CHECK(buffet_frame_transfer_receive(t, NULL) == p && to_all(p, 64, 0x42));
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK && buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);   /* its frame is gone; the transfer keeps it */
    BT_CHECK(to_all(p, 64, 0x42));
    buffet_frame_transfer_release(t);
    to_arena_done(fa, true);
    return true;
}

/* A pin: a buffer over the frame allocator pins its block (a transfer received at once). */
static bool to_frame_pin(to_ctx *x, uint64_t k, bool after) {
    buffet_frame_arena *fa = to_arena(x, 4096);
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    buffet_result r;
    if (!fa) return true;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    memset(&d, 0, sizeof d);
    d.size = 256;
    d.allocator = buffet_frame_allocator(fa);
    to_arm(x, k, after);
    r = buffet_buf_create(&b, &d);
    to_disarm(x);
    if (r != BUFFET_OK) {
        /* the pin's own reason (its transfer's allocation), not BUFFET_ERR_LIFETIME */
        if (r != BUFFET_ERR_NOMEM) fprintf(stderr, "test_oom_frame.c: a failed pin reads as %s\n", buffet_result_str(r));
        BT_CHECK(b == NULL && r == BUFFET_ERR_NOMEM);
        to_arena_done(fa, true);
        return false;
    }
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_buf_unref(b);
    to_arena_done(fa, false);
    return true;
}

static bool to_scope_call(to_ctx *x, uint64_t k, bool after, bool defer) {
    buffet_scope s;
    buffet_scope_desc d;
    buffet_result r = BUFFET_OK;
    void *p = NULL;
    memset(&d, 0, sizeof d);
    d.parent = x->a;
    BT_CHECK(buffet_scope_begin(&s, &d) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&s, 32, 16) != NULL);
    to_arm(x, k, after);
    if (defer) r = buffet_scope_defer(&s, free, NULL);
    else p = buffet_scope_alloc(&s, 100, 64);
    to_disarm(x);
    if (defer ? r != BUFFET_OK : p == NULL) {
        if (defer) BT_CHECK(r == BUFFET_ERR_NOMEM);
        else to_nomem();
        BT_CHECK(s.count == 1);
        BT_CHECK(buffet_scope_alloc(&s, 100, 64) != NULL);   /* still usable */
        BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
        return false;
    }
    BT_CHECK(s.count == (defer ? 1u : 2u));
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
    return true;
}
static bool to_scope_alloc(to_ctx *x, uint64_t k, bool after) { return to_scope_call(x, k, after, false); }
static bool to_scope_defer(to_ctx *x, uint64_t k, bool after) { return to_scope_call(x, k, after, true); }

static bool to_scope_begin(to_ctx *x, uint64_t k, bool after) {
    buffet_scope s;
    buffet_scope_desc d;
    buffet_result r;
    memset(&d, 0, sizeof d);
    d.parent = x->a;
    to_arm(x, k, after);
    r = buffet_scope_begin(&s, &d);
    to_disarm(x);
    BT_CHECK(r == BUFFET_OK);   /* the scope is the caller's memory: nothing to allocate */
    BT_CHECK(buffet_scope_alloc(&s, 16, 16) != NULL && buffet_scope_end(&s) == BUFFET_OK);
    return true;
}

/* The pool still works: objects out and back, then it goes. */
static void to_pool_done(buffet_pool *p, buffet_pool_cache *c) {
    void *o[3];
    int i;
    for (i = 0; i < 3; i++) {
        o[i] = c ? buffet_pool_get(c) : buffet_pool_get_shared(p);
        BT_CHECK(o[i] != NULL);
    }
    for (i = 0; i < 3; i++)
        if (o[i]) BT_CHECK((c ? buffet_pool_put(c, o[i]) : buffet_pool_put_shared(p, o[i])) == BUFFET_OK);
    if (c) buffet_pool_cache_destroy(c);
    BT_CHECK(buffet_pool_get_stats(p).in_use == 0);
    buffet_pool_destroy(p);
}

static bool to_pool_create_n(to_ctx *x, uint64_t k, bool after, size_t initial) {
    buffet_pool_desc d;
    buffet_pool *p = NULL;
    buffet_result r;
    memset(&d, 0, sizeof d);
    d.obj_size = 48;
    d.slab_objs = 8;
    d.initial = initial;
    d.parent = x->a;
    to_arm(x, k, after);
    r = buffet_pool_create(&p, &d);
    to_disarm(x);
    if (r != BUFFET_OK) {
        BT_CHECK(r == BUFFET_ERR_NOMEM && p == NULL);
        return false;
    }
    BT_CHECK(buffet_pool_get_stats(p).created >= initial);
    to_pool_done(p, NULL);
    return true;
}
static bool to_pool_create(to_ctx *x, uint64_t k, bool after) { return to_pool_create_n(x, k, after, 0); }
static bool to_pool_create_initial(to_ctx *x, uint64_t k, bool after) { return to_pool_create_n(x, k, after, 100); }

static bool to_pool_cache_create(to_ctx *x, uint64_t k, bool after) {
    buffet_pool *p = to_pool(x, 0);
    buffet_pool_cache *c = NULL;
    buffet_result r;
    if (!p) return true;
    to_arm(x, k, after);
    r = buffet_pool_cache_create(&c, p, 16);
    to_disarm(x);
    if (r != BUFFET_OK) {
        BT_CHECK(r == BUFFET_ERR_NOMEM && c == NULL && buffet_pool_get_stats(p).caches == 0);
        to_pool_done(p, NULL);
        return false;
    }
    to_pool_done(p, c);
    return true;
}

/* kind 0: a get through a cache; 1: a bulk get; 2: a shared get; 3: the pool's allocator; each
   when the pool's objects are all out, so that it must grow. */
static bool to_pool_grow_kind(to_ctx *x, uint64_t k, bool after, int kind) {
    buffet_pool *p = to_pool(x, 0);
    buffet_pool_cache *c = NULL;
    void *held[8], *got[20];
    size_t n = 0, i, want = kind == 1 ? 20 : 1;
    buffet_pool_stats before, now;
    if (!p) return true;
    BT_CHECK(buffet_pool_cache_create(&c, p, 4) == BUFFET_OK);
    if (!c) {
        buffet_pool_destroy(p);
        return true;
    }
    for (i = 0; i < 8; i++) {
        held[i] = buffet_pool_get_shared(p);
        BT_CHECK(held[i] != NULL);
    }
    before = buffet_pool_get_stats(p);
    BT_CHECK(before.in_store == 0 && before.created == 8);
    to_arm(x, k, after);
    switch (kind) {
    case 0: got[0] = buffet_pool_get(c); n = got[0] ? 1 : 0; break;
    case 1: n = buffet_pool_get_bulk(c, got, want); break;
    case 2: got[0] = buffet_pool_get_shared(p); n = got[0] ? 1 : 0; break;
    default: got[0] = buffet_alloc(buffet_pool_allocator(c), 40, 8, BUFFET_SITE); n = got[0] ? 1 : 0; break;
    }
    to_disarm(x);
    now = buffet_pool_get_stats(p);
    if (n == 0) {
        to_nomem();
        BT_CHECK(now.failures == before.failures + 1 && now.in_use + c->count == before.in_use && now.gets == before.gets);
    } else {
        BT_CHECK(n == want && now.created > before.created);
        for (i = 0; i < n; i++) memset(got[i], 0x11, 48);
        for (i = 0; i < n; i++) BT_CHECK(buffet_pool_put(c, got[i]) == BUFFET_OK);
    }
    for (i = 0; i < 8; i++)
        if (held[i]) BT_CHECK(buffet_pool_put_shared(p, held[i]) == BUFFET_OK);
    to_pool_done(p, c);
    return n != 0;
}
static bool to_pool_get(to_ctx *x, uint64_t k, bool after) { return to_pool_grow_kind(x, k, after, 0); }
static bool to_pool_get_bulk(to_ctx *x, uint64_t k, bool after) { return to_pool_grow_kind(x, k, after, 1); }
static bool to_pool_get_shared(to_ctx *x, uint64_t k, bool after) { return to_pool_grow_kind(x, k, after, 2); }
static bool to_pool_allocator(to_ctx *x, uint64_t k, bool after) { return to_pool_grow_kind(x, k, after, 3); }

/* A put never allocates (the store has room for every object): it cannot fail for memory. */
static bool to_pool_put(to_ctx *x, uint64_t k, bool after) {
    buffet_pool *p = to_pool(x, 0);
    buffet_pool_cache *c = NULL;
    void *o[8];
    int i;
    if (!p) return true;
    BT_CHECK(buffet_pool_cache_create(&c, p, 2) == BUFFET_OK);
    for (i = 0; i < 8; i++) o[i] = buffet_pool_get_shared(p);
    to_arm(x, k, after);
    for (i = 0; i < 8; i++)
        if (o[i]) BT_CHECK((i & 1 ? buffet_pool_put_shared(p, o[i]) : buffet_pool_put(c, o[i])) == BUFFET_OK);
    to_disarm(x);
    to_pool_done(p, c);
    return true;
}

/* ---------------------------------------------------------------------------------------------
   The sweep */

typedef bool (*to_fn)(to_ctx *, uint64_t, bool);

static unsigned to_points_total, to_functions;

/* Runs fn with the 1st, 2nd, ... allocation failing (once, then from then on) until it succeeds. */
static void to_sweep(const char *name, to_fn fn) {
    unsigned points[2] = { 0, 0 };
    int mode;
    for (mode = 0; mode < 2; mode++) {
        uint64_t k;
        for (k = 1; k <= 64; k++) {
            to_ctx x;
            bool ok;
            to_begin(&x);
            ok = fn(&x, k, mode == 1);
            to_end(&x);
            if (ok) break;
        }
        BT_CHECK(k <= 64);   /* it succeeds once it is given enough */
        points[mode] = (unsigned)(k - 1);
    }
    /* Failing only the k-th allocation or all from the k-th: the same points come first. */
    BT_CHECK(points[0] == points[1]);
    printf("  %-34s %u allocation point%s swept\n", name, points[1], points[1] == 1 ? "" : "s");
    to_points_total += points[1];
    to_functions++;
}

static void test_oom_frames(void) {
    to_sweep("buffet_frame_create", to_frame_create);
    to_sweep("buffet_frame_begin", to_frame_begin);
    to_sweep("buffet_frame_alloc (new chunk)", to_frame_alloc_chunk);
    to_sweep("buffet_frame_alloc (oversized)", to_frame_alloc_oversized);
    to_sweep("buffet_frame_alloc_batch", to_frame_alloc_batch);
    to_sweep("buffet_frame_alloc_array", to_frame_alloc_array);
    to_sweep("buffet_frame_allocator alloc", to_frame_allocator);
    to_sweep("buffet_frame_vec_push", to_frame_vec_push);
    to_sweep("buffet_frame_push_tag", to_frame_push_tag);
    to_sweep("buffet_frame_transfer_send", to_frame_transfer_send);
    to_sweep("frame allocator pin (buf_create)", to_frame_pin);
}

static void test_oom_scopes(void) {
    to_sweep("buffet_scope_begin", to_scope_begin);
    to_sweep("buffet_scope_alloc", to_scope_alloc);
    to_sweep("buffet_scope_defer", to_scope_defer);
}

static void test_oom_pools(void) {
    to_sweep("buffet_pool_create", to_pool_create);
    to_sweep("buffet_pool_create (initial 100)", to_pool_create_initial);
    to_sweep("buffet_pool_cache_create", to_pool_cache_create);
    to_sweep("buffet_pool_get (grows)", to_pool_get);
    to_sweep("buffet_pool_get_bulk (grows)", to_pool_get_bulk);
    to_sweep("buffet_pool_get_shared (grows)", to_pool_get_shared);
    to_sweep("buffet_pool_allocator alloc", to_pool_allocator);
    to_sweep("buffet_pool_put / put_shared", to_pool_put);
}

int main(void) {
    printf("test_oom_frame.c: allocation points per function (each failed once, and from then on):\n");
    BT_RUN(test_oom_frames);
    BT_RUN(test_oom_scopes);
    BT_RUN(test_oom_pools);
    printf("test_oom_frame.c: %u allocation points swept in %u functions\n", to_points_total, to_functions);
    return bt_finish("test_oom_frame.c");
}
