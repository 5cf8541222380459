// link:
/* bench_frame.c - buffet_frame.h against the allocators a C programmer would otherwise use for
   per-frame scratch memory and fixed-size objects, side by side in one process run:
     a) a frame of 1000 objects of 16..256 B: buffet_frame_alloc + begin/end vs glibc, jemalloc,
        mimalloc and tcmalloc (malloc each, free all at the frame's end), glibc obstack
        (obstack_free to the frame's first object), talloc (a context per frame, and a
        talloc_pool reset by talloc_free_children) and APR pools (apr_palloc + apr_pool_clear)
     b) one size of object: get+touch+put pairs and bursts of 32 (get 32, then put 32) through a
        pool cache vs the general-purpose allocators' malloc/free of the same size
     c) two threads: A gets and writes objects, hands their pointers to B in batches of 32 over
        a single-producer single-consumer ring; B reads and puts (frees) them
   The peers are loaded at run time with dlopen(RTLD_NOW | RTLD_LOCAL) and called through their
   own entry points, so this program links with nothing extra and the process's malloc stays
   glibc's; a peer that is not installed is skipped with the reason. (`make bench-deps`
   installs them.) jemalloc needs 2.6 KiB of static TLS, more than glibc keeps for dlopen: when
   its dlopen fails for that reason the program re-executes itself once with
   GLIBC_TUNABLES=glibc.rtld.optional_static_tls raised.
   Every number is the median of REPS repetitions after a warm-up; within a repetition the
   contestants alternate (order reversed every other repetition). Object sizes come from one
   pre-generated table, the same sequence for every contestant. Objects are written after
   allocation (in a), in three rounds: the first 16 B, all of it, or nothing, the last for the
   allocators' own cost); the arenas are reset between frames, so no number measures an
   exhausted arena.
   Ratios are peer / buffet: above 1 means buffet is faster. a) also has a plain bump pointer in
   the same loop (the floor the frame arena is held to: within 1.1x) and a scope over the heap
   begun and ended per frame (held to 5x faster than glibc malloc/free).
   Environment: BUFFET_BENCH_ONLY=abc picks sections; BUFFET_BENCH_ITERS=N runs each contestant
   once for N iterations (for callgrind); BUFFET_BENCH_NOPIN=1 leaves c)'s threads unpinned.
   Instructions per allocation in a): BUFFET_BENCH_ONLY=a BUFFET_BENCH_ITERS=200
   BUFFET_BENCH_REEXEC=1 GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 valgrind
   --tool=callgrind --toggle-collect='frame_*' --dump-after=frame_buffet --dump-after=frame_bump
   ... ./bench_frame (a --dump-after for every frame_* contestant): each dump's total / 200000
   is one contestant's count, writing 16 B in the first round, whole objects in the second,
   nothing in the third (the allocator and the loop alone).
   Under valgrind a scope over the heap keeps no spare blocks: its count includes the malloc and
   free of its blocks every frame.
   Build: gcc -std=c11 -O2 -pthread bench/bench_frame.c -o bench_frame */
#define BUFFET_IMPLEMENTATION
#include "../buffet_frame.h"   /* first: it defines _GNU_SOURCE for the headers below */

#include <obstack.h>
#include <pthread.h>
#include <stdatomic.h>

#define obstack_chunk_alloc malloc
#define obstack_chunk_free free

#define BENCH_NAME "bench_frame"
#define REPS 11                   /* timed repetitions per contestant (odd: a true median) */
#define TARGET_NS 10000000.0      /* a) and b): each timed repetition runs about this long */
#define PC_TARGET_NS 25000000.0   /* c): longer, so that starting two threads is noise */
#define MAX_CONTESTANTS 12
#define OBJS 1000                 /* objects per frame in a) */
#define NSIZES 8192               /* the size table (a power of two) */
#define SIZE_MASK (NSIZES - 1)
#define MIN_SIZE 16
#define MAX_SIZE 256
#define BURST 32                  /* b) burst length */
#define PC_BATCH 32               /* c) pointers per ring slot */
#define PC_RING 64                /* c) slots in the ring */

#include "bench.h"   /* the harness: now_ns, escape, backoff, rnd, contestant, measure, peers, ... */

static uint16_t sizes[NSIZES];   /* 16..256, uniform; the same for every contestant */

/* How much of an object a loop writes: its first 16 bytes (a header being filled in), all of
   it, or nothing (the allocator's cost alone, as a count in make bench-count). 0 and 1 are a
   bool "whole", as section b) passes it. */
enum { WRITE_16, WRITE_ALL, WRITE_NONE };
static inline void touch(void *p, size_t size, int wr) {
    if (wr == WRITE_NONE) {   /* the pointer is used, and no memory: escape's barrier would make
                                 every contestant store and reload its state per object */
        __asm__ volatile("" : : "r"(p));
        return;
    }
    if (wr == WRITE_ALL) memset(p, 0x5a, size);
    else memset(p, 0x5a, 16);
    escape(p);
}

/* ---- the peers, loaded at run time ---- */
typedef struct peer_apr_pool peer_apr_pool;   /* apr_pool_t, opaque */
static struct {
    void *je, *mi, *tc, *tl, *apr;
    const char *tc_lib;
    char why_je[256], why_mi[256], why_tc[256], why_tl[256], why_apr[256];
    char ver_je[64], ver_mi[64], ver_tc[64], ver_tl[64], ver_apr[64];
    void *(*je_malloc)(size_t);
    void (*je_sdallocx)(void *, size_t, int);
    void *(*mi_malloc)(size_t);
    void (*mi_free)(void *);
    void *(*tc_malloc)(size_t);
    void (*tc_free_sized)(void *, size_t);
    void *(*tl_named_const)(const void *, size_t, const char *);
    int (*tl_free)(void *, const char *);
    void (*tl_free_children)(void *);
    void *(*tl_pool)(const void *, size_t);
    int (*tl_major)(void), (*tl_minor)(void);
    int (*apr_initialize)(void);
    void (*apr_terminate)(void);
    int (*apr_pool_create_ex)(peer_apr_pool **, peer_apr_pool *, int (*)(int), void *);
    void *(*apr_palloc)(peer_apr_pool *, size_t);
    void (*apr_pool_clear)(peer_apr_pool *);
    void (*apr_pool_destroy)(peer_apr_pool *);
    const char *(*apr_version_string)(void);
} P;

static void load_peers(char **argv) {
    P.je = bench_open_jemalloc(argv, P.why_je, sizeof P.why_je);
    if (P.je) {
        if (!sym(P.je, "malloc", &P.je_malloc) || P.je_malloc == malloc)
            P.je = missing(P.je, "libjemalloc.so.2", "malloc of its own", P.why_je, sizeof P.why_je);
        else if (!sym(P.je, "sdallocx", &P.je_sdallocx))
            P.je = missing(P.je, "libjemalloc.so.2", "sdallocx", P.why_je, sizeof P.why_je);
    }
    if (P.je) bench_je_version(P.je, P.ver_je, sizeof P.ver_je);
    P.mi = open_lib("libmimalloc.so.2", P.why_mi, sizeof P.why_mi);
    if (P.mi && (!sym(P.mi, "mi_malloc", &P.mi_malloc) || !sym(P.mi, "mi_free", &P.mi_free)))
        P.mi = missing(P.mi, "libmimalloc.so.2", "mi_malloc/mi_free", P.why_mi, sizeof P.why_mi);
    if (P.mi) bench_mi_version(P.mi, P.ver_mi, sizeof P.ver_mi);
    P.tc_lib = "libtcmalloc_minimal.so.4";
    P.tc = open_lib(P.tc_lib, P.why_tc, sizeof P.why_tc);
    if (!P.tc) P.tc = open_lib(P.tc_lib = "libtcmalloc.so.4", P.why_tc, sizeof P.why_tc);
    if (P.tc && (!sym(P.tc, "tc_malloc", &P.tc_malloc) || !sym(P.tc, "tc_free_sized", &P.tc_free_sized)))
        P.tc = missing(P.tc, "libtcmalloc", "tc_malloc/tc_free_sized", P.why_tc, sizeof P.why_tc);
    if (P.tc) bench_tc_version(P.tc, P.ver_tc, sizeof P.ver_tc);
    P.tl = open_lib("libtalloc.so.2", P.why_tl, sizeof P.why_tl);
    if (P.tl && (!sym(P.tl, "talloc_named_const", &P.tl_named_const) || !sym(P.tl, "_talloc_free", &P.tl_free) ||
                 !sym(P.tl, "talloc_free_children", &P.tl_free_children) || !sym(P.tl, "talloc_pool", &P.tl_pool)))
        P.tl = missing(P.tl, "libtalloc.so.2", "talloc_named_const/_talloc_free/talloc_free_children/talloc_pool",
                       P.why_tl, sizeof P.why_tl);
    if (P.tl) {
        bool v = sym(P.tl, "talloc_version_major", &P.tl_major) && sym(P.tl, "talloc_version_minor", &P.tl_minor);
        snprintf(P.ver_tl, sizeof P.ver_tl, "%d.%d", v ? P.tl_major() : 0, v ? P.tl_minor() : 0);
    }
    P.apr = open_lib("libapr-1.so.0", P.why_apr, sizeof P.why_apr);
    if (P.apr && (!sym(P.apr, "apr_initialize", &P.apr_initialize) || !sym(P.apr, "apr_terminate", &P.apr_terminate) ||
                  !sym(P.apr, "apr_pool_create_ex", &P.apr_pool_create_ex) || !sym(P.apr, "apr_palloc", &P.apr_palloc) ||
                  !sym(P.apr, "apr_pool_clear", &P.apr_pool_clear) || !sym(P.apr, "apr_pool_destroy", &P.apr_pool_destroy)))
        P.apr = missing(P.apr, "libapr-1.so.0", "the pool functions", P.why_apr, sizeof P.why_apr);
    if (P.apr && P.apr_initialize() != 0) {
        snprintf(P.why_apr, sizeof P.why_apr, "apr_initialize failed");
        dlclose(P.apr); P.apr = NULL;
    }
    if (P.apr)
        snprintf(P.ver_apr, sizeof P.ver_apr, "%.40s",
                 sym(P.apr, "apr_version_string", &P.apr_version_string) ? P.apr_version_string() : "?");
}

/* The general-purpose allocators, each through its fastest documented entry points (sized free
   where offered). frame_gp, obj_gp and pc_produce/pc_consume take these as constant arguments
   and are always inlined, so every call is direct (glibc) or one indirect call into the peer. */
static inline void *glibc_alloc(size_t n) { return malloc(n); }
static inline void glibc_free(void *p, size_t n) { (void)n; free(p); }
static inline void *je_alloc(size_t n) { return P.je_malloc(n); }
static inline void je_free(void *p, size_t n) { P.je_sdallocx(p, n, 0); }
static inline void *mi_alloc(size_t n) { return P.mi_malloc(n); }
static inline void mi_free(void *p, size_t n) { (void)n; P.mi_free(p); }
static inline void *tc_alloc(size_t n) { return P.tc_malloc(n); }
static inline void tc_free(void *p, size_t n) { P.tc_free_sized(p, n); }
typedef void *(*gp_alloc_fn)(size_t);
typedef void (*gp_free_fn)(void *, size_t);

/* ---- a) frames ---- */
/* The floor: a plain bump pointer over one block, sizes rounded up to 16 (so every pointer is
   16-aligned), a bounds check, reset at the frame's end. What the frame arena is held to. */
typedef struct bump_arena { unsigned char *base, *cur, *end; } bump_arena;
ALWAYS_INLINE void *bump_alloc(bump_arena *b, size_t n) {
    unsigned char *p = b->cur;
    n = (n + 15) & ~(size_t)15;
    if (n > (size_t)(b->end - p)) return NULL;
    b->cur = p + n;
    return p;
}

typedef struct frame_ctx {
    int wr;                      /* WRITE_16, WRITE_ALL or WRITE_NONE */
    void **ptrs;                 /* OBJS: what the malloc-style contestants free at the frame's end */
    buffet_frame_arena *fa, *fa2;      /* 1 and 2 frames in flight */
    bump_arena *bump;
    struct obstack ob;
    void *tl_pool;
    peer_apr_pool *apr_pool;
} frame_ctx;

/* A contestant's loop compiled once per WRITE_* (a constant in each), so that no loop tests the
   mode per object: call is the _run function's call, with wr_ for the mode. */
#define BY_WRITE(x, call)                                      \
    switch ((x)->wr) {                                         \
    case WRITE_NONE: { const int wr_ = WRITE_NONE; return call; } \
    case WRITE_ALL: { const int wr_ = WRITE_ALL; return call; }   \
    default: { const int wr_ = WRITE_16; return call; }           \
    }

ALWAYS_INLINE uint64_t frame_buffet_run(size_t iters, buffet_frame_arena *fa, const int wr) {
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        buffet_frame_begin(fa);
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = buffet_frame_alloc(fa, n, 16);
            if (!p) die("buffet_frame_alloc failed");
            touch(p, n, wr);
        }
        buffet_frame_end(fa);
    }
    return now_ns() - t0;
}
static uint64_t frame_buffet(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_buffet_run(it, x->fa, wr_)) }
static uint64_t frame_buffet2(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_buffet_run(it, x->fa2, wr_)) }

ALWAYS_INLINE uint64_t frame_bump_run(frame_ctx *x, size_t iters, const int wr) {
    bump_arena *b = x->bump;
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = bump_alloc(b, n);
            if (!p) die("bump_alloc failed");
            touch(p, n, wr);
        }
        b->cur = b->base;
    }
    return now_ns() - t0;
}
static uint64_t frame_bump(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_bump_run(x, it, wr_)) }

/* A scope over the heap per frame: begin, the frame's objects, end (frees them all). */
ALWAYS_INLINE uint64_t frame_scope_run(size_t iters, const int wr) {
    buffet_scope s;
    buffet_scope_desc desc;
    memset(&desc, 0, sizeof desc);
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        if (buffet_scope_begin(&s, &desc) != BUFFET_OK) die("buffet_scope_begin failed");
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = buffet_scope_alloc(&s, n, 16);
            if (!p) die("buffet_scope_alloc failed");
            touch(p, n, wr);
        }
        if (buffet_scope_end(&s) != BUFFET_OK) die("buffet_scope_end failed");
    }
    return now_ns() - t0;
}
static uint64_t frame_scope(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_scope_run(it, wr_)) }

ALWAYS_INLINE uint64_t frame_gp_run(frame_ctx *x, size_t iters, gp_alloc_fn al, gp_free_fn fr, const int wr) {
    void **ptrs = x->ptrs;
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = al(n);
            if (!p) die("malloc failed");
            touch(p, n, wr);
            ptrs[i] = p;
        }
        for (size_t i = 0; i < OBJS; i++) fr(ptrs[i], sizes[(base + i) & SIZE_MASK]);
    }
    return now_ns() - t0;
}
static uint64_t frame_glibc(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_gp_run(x, it, glibc_alloc, glibc_free, wr_)) }
static uint64_t frame_je(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_gp_run(x, it, je_alloc, je_free, wr_)) }
static uint64_t frame_mi(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_gp_run(x, it, mi_alloc, mi_free, wr_)) }
static uint64_t frame_tc(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_gp_run(x, it, tc_alloc, tc_free, wr_)) }

ALWAYS_INLINE uint64_t frame_obstack_run(frame_ctx *x, size_t iters, const int wr) {
    struct obstack *ob = &x->ob;
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        void *first = NULL;
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = obstack_alloc(ob, n);
            if (!p) die("obstack_alloc failed");
            if (i == 0) first = p;
            touch(p, n, wr);
        }
        obstack_free(ob, first);
    }
    return now_ns() - t0;
}
static uint64_t frame_obstack(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_obstack_run(x, it, wr_)) }

ALWAYS_INLINE uint64_t frame_talloc_run(size_t iters, const int wr) {
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        void *ctx = P.tl_named_const(NULL, 0, "frame");
        if (!ctx) die("talloc failed");
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = P.tl_named_const(ctx, n, "obj");
            if (!p) die("talloc_size failed");
            touch(p, n, wr);
        }
        P.tl_free(ctx, "bench_frame.c");
    }
    return now_ns() - t0;
}
static uint64_t frame_talloc(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_talloc_run(it, wr_)) }

ALWAYS_INLINE uint64_t frame_talloc_pool_run(frame_ctx *x, size_t iters, const int wr) {
    void *pool = x->tl_pool;
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = P.tl_named_const(pool, n, "obj");
            if (!p) die("talloc_size failed");
            touch(p, n, wr);
        }
        P.tl_free_children(pool);
    }
    return now_ns() - t0;
}
static uint64_t frame_talloc_pool(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_talloc_pool_run(x, it, wr_)) }

ALWAYS_INLINE uint64_t frame_apr_run(frame_ctx *x, size_t iters, const int wr) {
    peer_apr_pool *pool = x->apr_pool;
    uint64_t t0 = now_ns();
    for (size_t f = 0; f < iters; f++) {
        size_t base = f * OBJS;
        for (size_t i = 0; i < OBJS; i++) {
            size_t n = sizes[(base + i) & SIZE_MASK];
            void *p = P.apr_palloc(pool, n);
            if (!p) die("apr_palloc failed");
            touch(p, n, wr);
        }
        P.apr_pool_clear(pool);
    }
    return now_ns() - t0;
}
static uint64_t frame_apr(void *v, size_t it) { frame_ctx *x = (frame_ctx *)v; BY_WRITE(x, frame_apr_run(x, it, wr_)) }

/* ---- b) one size: pairs and bursts ---- */
typedef struct obj_ctx {
    size_t size;
    bool whole;
    int burst;                   /* 1: pairs; BURST; 0: random bursts from burst_len[] */
    buffet_pool_cache *cache;
    void *ptrs[64];
} obj_ctx;

static uint8_t burst_len[1024];  /* random burst lengths 1..63 (mean 32), the same for all */

ALWAYS_INLINE size_t burst_of(const obj_ctx *x, size_t it) {
    return x->burst ? (size_t)x->burst : burst_len[it & 1023];
}

static uint64_t obj_pool(void *vctx, size_t iters) {
    obj_ctx *x = (obj_ctx *)vctx;
    buffet_pool_cache *c = x->cache;
    const size_t size = x->size;
    const bool whole = x->whole;
    uint64_t t0 = now_ns();
    if (x->burst == 1) {
        for (size_t it = 0; it < iters; it++) {
            void *p = buffet_pool_get(c);
            if (!p) die("buffet_pool_get failed");
            touch(p, size, whole);
            buffet_pool_put(c, p);
        }
    } else {
        for (size_t it = 0; it < iters; it++) {
            size_t n = burst_of(x, it);
            for (size_t i = 0; i < n; i++) {
                void *p = buffet_pool_get(c);
                if (!p) die("buffet_pool_get failed");
                touch(p, size, whole);
                x->ptrs[i] = p;
            }
            for (size_t i = 0; i < n; i++) buffet_pool_put(c, x->ptrs[i]);
        }
    }
    return now_ns() - t0;
}

static uint64_t obj_pool_bulk(void *vctx, size_t iters) {
    obj_ctx *x = (obj_ctx *)vctx;
    buffet_pool_cache *c = x->cache;
    const size_t size = x->size;
    const bool whole = x->whole;
    uint64_t t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        size_t n = burst_of(x, it);
        if (buffet_pool_get_bulk(c, x->ptrs, n) != n) die("buffet_pool_get_bulk failed");
        for (size_t i = 0; i < n; i++) touch(x->ptrs[i], size, whole);
        buffet_pool_put_bulk(c, x->ptrs, n);
    }
    return now_ns() - t0;
}

ALWAYS_INLINE uint64_t obj_gp(obj_ctx *x, size_t iters, gp_alloc_fn al, gp_free_fn fr) {
    const size_t size = x->size;
    const bool whole = x->whole;
    uint64_t t0 = now_ns();
    if (x->burst == 1) {
        for (size_t it = 0; it < iters; it++) {
            void *p = al(size);
            if (!p) die("malloc failed");
            touch(p, size, whole);
            fr(p, size);
        }
    } else {
        for (size_t it = 0; it < iters; it++) {
            size_t n = burst_of(x, it);
            for (size_t i = 0; i < n; i++) {
                void *p = al(size);
                if (!p) die("malloc failed");
                touch(p, size, whole);
                x->ptrs[i] = p;
            }
            for (size_t i = 0; i < n; i++) fr(x->ptrs[i], size);
        }
    }
    return now_ns() - t0;
}
static uint64_t obj_glibc(void *x, size_t it) { return obj_gp((obj_ctx *)x, it, glibc_alloc, glibc_free); }
static uint64_t obj_je(void *x, size_t it) { return obj_gp((obj_ctx *)x, it, je_alloc, je_free); }
static uint64_t obj_mi(void *x, size_t it) { return obj_gp((obj_ctx *)x, it, mi_alloc, mi_free); }
static uint64_t obj_tc(void *x, size_t it) { return obj_gp((obj_ctx *)x, it, tc_alloc, tc_free); }

/* ---- c) producer/consumer over an SPSC ring of pointer batches ---- */
#define PC_FIXED 4096   /* baseline: objects cycled from a fixed array (more than can be in flight) */
typedef struct pc_slot { size_t n; void *p[PC_BATCH]; } pc_slot;
typedef struct pc_ctx {
    _Alignas(64) atomic_size_t tail;   /* slots published by the producer */
    _Alignas(64) atomic_size_t head;   /* slots consumed by the consumer */
    _Alignas(64) atomic_int go;
    pc_slot slots[PC_RING];
    int kind;                          /* index into pc_kinds */
    buffet_pool *pool;
    uint32_t cache_cap;
    size_t size, total;
    unsigned char *fixed;              /* baseline: PC_FIXED objects */
    uint64_t sum;
} pc_ctx;
typedef struct pc_side { pc_ctx *x; void (*fn)(pc_ctx *); } pc_side;
enum { PC_POOL, PC_BULK, PC_GP, PC_NONE };

static void pc_wait_go(pc_ctx *x) {
    unsigned spins = 0;
    while (!atomic_load_explicit(&x->go, memory_order_acquire)) backoff(&spins);
}

/* Producer: objects numbered 0..total-1, the number in the first 8 bytes, 16 bytes written. */
ALWAYS_INLINE void pc_produce(pc_ctx *x, int mode, gp_alloc_fn al, buffet_pool_cache *c) {
    size_t sent = 0, t = 0, size = x->size, total = x->total;
    pc_wait_go(x);
    while (sent < total) {
        size_t n = total - sent < PC_BATCH ? total - sent : PC_BATCH;
        unsigned spins = 0;
        while (t - atomic_load_explicit(&x->head, memory_order_acquire) >= PC_RING) backoff(&spins);
        pc_slot *s = &x->slots[t % PC_RING];
        if (mode == PC_BULK && buffet_pool_get_bulk(c, s->p, n) != n) die("buffet_pool_get_bulk failed");
        for (size_t i = 0; i < n; i++) {
            void *p = mode == PC_BULK ? s->p[i]
                    : mode == PC_POOL ? buffet_pool_get(c)
                    : mode == PC_GP ? al(size)
                    : x->fixed + ((sent + i) % PC_FIXED) * size;
            if (!p) die("allocation failed");
            memset(p, 0x5a, 16);
            memcpy(p, &(uint64_t){ sent + i }, 8);
            s->p[i] = p;
        }
        s->n = n;
        atomic_store_explicit(&x->tail, ++t, memory_order_release);
        sent += n;
    }
}
ALWAYS_INLINE void pc_consume(pc_ctx *x, int mode, gp_free_fn fr, buffet_pool_cache *c) {
    size_t got = 0, h = 0, size = x->size, total = x->total;
    uint64_t sum = 0;
    pc_wait_go(x);
    while (got < total) {
        unsigned spins = 0;
        while (atomic_load_explicit(&x->tail, memory_order_acquire) == h) backoff(&spins);
        pc_slot *s = &x->slots[h % PC_RING];
        size_t n = s->n;
        for (size_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, s->p[i], 8);
            sum += v;
            if (mode == PC_POOL) buffet_pool_put(c, s->p[i]);
            else if (mode == PC_GP) fr(s->p[i], size);
        }
        if (mode == PC_BULK) buffet_pool_put_bulk(c, s->p, n);
        got += n;
        atomic_store_explicit(&x->head, ++h, memory_order_release);
    }
    x->sum = sum;
}

static void pc_pool_side(pc_ctx *x, bool producer, int mode) {
    buffet_pool_cache *c;
    if (buffet_pool_cache_create(&c, x->pool, x->cache_cap) != BUFFET_OK) die("buffet_pool_cache_create failed");
    if (producer) { if (mode == PC_BULK) pc_produce(x, PC_BULK, NULL, c); else pc_produce(x, PC_POOL, NULL, c); }
    else { if (mode == PC_BULK) pc_consume(x, PC_BULK, NULL, c); else pc_consume(x, PC_POOL, NULL, c); }
    buffet_pool_cache_destroy(c);
}
static void pc_pool_producer(pc_ctx *x) { pc_pool_side(x, true, PC_POOL); }
static void pc_pool_consumer(pc_ctx *x) { pc_pool_side(x, false, PC_POOL); }
static void pc_bulk_producer(pc_ctx *x) { pc_pool_side(x, true, PC_BULK); }
static void pc_bulk_consumer(pc_ctx *x) { pc_pool_side(x, false, PC_BULK); }
static void pc_none_producer(pc_ctx *x) { pc_produce(x, PC_NONE, NULL, NULL); }
static void pc_none_consumer(pc_ctx *x) { pc_consume(x, PC_NONE, NULL, NULL); }
#define PC_GP(name)                                                                            \
    static void pc_##name##_producer(pc_ctx *x) { pc_produce(x, PC_GP, name##_alloc, NULL); }  \
    static void pc_##name##_consumer(pc_ctx *x) { pc_consume(x, PC_GP, name##_free, NULL); }
PC_GP(glibc)
PC_GP(je)
PC_GP(mi)
PC_GP(tc)

static void *pc_thread(void *arg) { pc_side *s = (pc_side *)arg; s->fn(s->x); return NULL; }

/* A and B each get a CPU of their own (the first two this process may use), so that the
   scheduler cannot put both on one CPU for a while; -1: no pinning (fewer than 2 CPUs). */
static int pc_cpu[2] = { -1, -1 };
static void pc_start(pthread_t *t, pc_side *side, int cpu) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_attr_setaffinity_np(&attr, sizeof set, &set);
    }
    if (pthread_create(t, &attr, pc_thread, side) != 0) die("pthread_create failed");
    pthread_attr_destroy(&attr);
}

static const struct { const char *name; void (*producer)(pc_ctx *); void (*consumer)(pc_ctx *); uint32_t cap; } pc_kinds[] = {
    { "buffet pool get/put", pc_pool_producer, pc_pool_consumer, 0 },
    { "buffet pool bulk", pc_bulk_producer, pc_bulk_consumer, 0 },
    { "buffet get/put cache 512", pc_pool_producer, pc_pool_consumer, BUFFET_POOL_CACHE_MAX },
    { "glibc malloc/free", pc_glibc_producer, pc_glibc_consumer, 0 },
    { "jemalloc", pc_je_producer, pc_je_consumer, 0 },
    { "mimalloc", pc_mi_producer, pc_mi_consumer, 0 },
    { "tcmalloc", pc_tc_producer, pc_tc_consumer, 0 },
    { "(no allocator: floor)", pc_none_producer, pc_none_consumer, 0 },
};
enum { NPC = sizeof pc_kinds / sizeof pc_kinds[0] };

/* One run: iters objects from A to B. Timed from the start signal to both threads' end. */
static uint64_t pc_run(void *vctx, size_t iters) {
    pc_ctx *x = (pc_ctx *)vctx;
    pthread_t a, b;
    pc_side sa = { x, pc_kinds[x->kind].producer }, sb = { x, pc_kinds[x->kind].consumer };
    atomic_store(&x->tail, 0);
    atomic_store(&x->head, 0);
    atomic_store(&x->go, 0);
    x->total = iters;
    pc_start(&a, &sa, pc_cpu[0]);
    pc_start(&b, &sb, pc_cpu[1]);
    usleep(1000);   /* both threads are waiting for the signal */
    uint64_t t0 = now_ns();
    atomic_store_explicit(&x->go, 1, memory_order_release);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    uint64_t t = now_ns() - t0;
    if (x->sum != (uint64_t)iters * (iters - 1) / 2) die("producer/consumer: objects lost or corrupted");
    return t;
}

/* ---- output ---- */
static void print_machine(void) {
    char how[128];
    bench_print_machine("");
    printf("peers:    %-10s %-7s %-46s found\n", "glibc", gnu_get_libc_version(), "malloc, free (the process's malloc)");
    printf("          %-10s %-7s %-46s found\n", "obstack", gnu_get_libc_version(), "glibc obstack_alloc, obstack_free");
#define PEER(h, label, ver, why, ...)                                                   \
    snprintf(how, sizeof how, __VA_ARGS__);                                             \
    if (h) printf("          %-10s %-7s %-46s found\n", label, ver, how);               \
    else printf("          %-10s skipped: %s\n", label, why);
    PEER(P.je, "jemalloc", P.ver_je, P.why_je, "libjemalloc.so.2: malloc, sdallocx")
    PEER(P.mi, "mimalloc", P.ver_mi, P.why_mi, "libmimalloc.so.2: mi_malloc, mi_free")
    PEER(P.tc, "tcmalloc", P.ver_tc, P.why_tc, "%s: tc_malloc, tc_free_sized", P.tc_lib)
    PEER(P.tl, "talloc", P.ver_tl, P.why_tl, "libtalloc.so.2: talloc_size, talloc_free, pool")
    PEER(P.apr, "APR", P.ver_apr, P.why_apr, "libapr-1.so.0: apr_palloc, apr_pool_clear")
#undef PEER
    bench_print_reexec(P.je != NULL);
    printf("method:   median of %d repetitions after a warm-up; contestants alternate within each\n"
           "          repetition; clock_gettime(CLOCK_MONOTONIC); ratio = peer / buffet (> 1: buffet faster)\n", REPS);
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) printf("warning:  fewer than 2 CPUs: c) measures time slicing\n");
    bench_print_load();
}

/* What the goal lines need from the sections. */
typedef struct goals {
    bool a_run, a_faster[2];           /* a): [0] writing 16 B, [1] writing whole objects */
    double a_glibc[2], a_closest[2];
    double a_bump[2], a_scope[2];      /* buffet / bump pointer; glibc / scope over the heap */
    const char *a_closest_name[2];
    bool b_run, b_faster;
    double b_closest;
    char b_closest_row[96];
} goals;

static double sizes_mean, burst_mean;

static void section_a(goals *g) {
    static void *frame_ptrs[OBJS];
    static unsigned char bump_block[(size_t)OBJS * MAX_SIZE] __attribute__((aligned(64)));
    bump_arena bump = { bump_block, bump_block, bump_block + sizeof bump_block };
    frame_ctx fx[3];   /* by WRITE_*: the first 16 B, the whole object, nothing */
    memset(fx, 0, sizeof fx);
    buffet_frame_arena *fa, *fa2;
    if (buffet_frame_create(&fa, &(buffet_frame_desc){ .frames_in_flight = 1 }) != BUFFET_OK ||
        buffet_frame_create(&fa2, &(buffet_frame_desc){ .frames_in_flight = 2 }) != BUFFET_OK)
        die("buffet_frame_create failed");
    void *tl_pool = P.tl ? P.tl_pool(NULL, (size_t)1 << 20) : NULL;
    if (P.tl && !tl_pool) die("talloc_pool failed");
    peer_apr_pool *apr_pool = NULL;
    if (P.apr && P.apr_pool_create_ex(&apr_pool, NULL, NULL, NULL) != 0) die("apr_pool_create_ex failed");
    for (int w = 0; w < 3; w++) {
        fx[w].wr = w;
        fx[w].ptrs = frame_ptrs;
        fx[w].fa = fa;
        fx[w].fa2 = fa2;
        fx[w].bump = &bump;
        if (!obstack_begin(&fx[w].ob, 65536)) die("obstack_begin failed");
        fx[w].tl_pool = tl_pool;
        fx[w].apr_pool = apr_pool;
    }
    /* Rows 0 and 1 are buffet's own; row 2 is glibc (the 10x goal); rows 3 and 4 are the bump
       pointer (the floor the arena is held to) and a scope over the heap (held to glibc): they
       are no peers of the arena's goal. */
    enum { ROW_GLIBC = 2, ROW_BUMP = 3, ROW_SCOPE = 4 };
    struct { const char *name; uint64_t (*run)(void *, size_t); bool on; } fc[] = {
        { "buffet_frame_alloc", frame_buffet, true },
        { "  (2 frames in flight)", frame_buffet2, true },
        { "glibc malloc/free", frame_glibc, true },
        { "bump pointer (floor)", frame_bump, true },
        { "buffet_scope (heap)", frame_scope, true },
        { "jemalloc", frame_je, P.je != NULL },
        { "mimalloc", frame_mi, P.mi != NULL },
        { "tcmalloc", frame_tc, P.tc != NULL },
        { "glibc obstack", frame_obstack, true },
        { "talloc (ctx/frame)", frame_talloc, P.tl != NULL },
        { "talloc_pool 1 MiB", frame_talloc_pool, P.tl != NULL },
        { "APR pool", frame_apr, P.apr != NULL },
    };
    enum { NFC = sizeof fc / sizeof fc[0] };
    const char *names[MAX_CONTESTANTS];
    double r[3][MAX_CONTESTANTS];
    int n = 0;
    for (int w = 0; w < 3; w++) {
        contestant c[MAX_CONTESTANTS];
        n = 0;
        for (int i = 0; i < (int)NFC; i++) {
            if (!fc[i].on) continue;
            names[n] = fc[i].name;
            c[n++] = (contestant){ .name = fc[i].name, .run = fc[i].run, .ctx = &fx[w], .ops_per_iter = OBJS };
        }
        bench_table = w == WRITE_ALL ? "a) frame allocation, whole object written"
                      : w == WRITE_16 ? "a) frame allocation, first 16 B written"
                                      : "a) frame allocation, nothing written";
        measure(c, n, r[w], TARGET_NS, 1);
    }
    printf("\na) frame allocation: %d objects per frame, sizes %d..%d B uniform (mean %.0f B, one table), align 16\n"
           "   (APR: 8), then the frame reset (buffet_frame_end / free of each / obstack_free / talloc_free /\n"
           "   apr_pool_clear). ns per object, frame reset included. The bump pointer is the floor\n"
           "   (sizes rounded to 16, reset per frame); buffet_scope (heap) is a scope over the heap\n"
           "   begun and ended per frame.\n",
           OBJS, MIN_SIZE, MAX_SIZE, sizes_mean);
    printf("   %-22s %24s   %24s   %24s\n", "", "write first 16 B", "write whole object", "write nothing");
    printf("   %-22s %10s %13s   %10s %13s   %10s %13s\n", "contestant", "ns/obj", "peer/buffet", "ns/obj", "peer/buffet",
           "ns/obj", "peer/buffet");
    g->a_run = true;
    for (int w = 0; w < 2; w++) {
        g->a_faster[w] = true;
        g->a_glibc[w] = r[w][ROW_GLIBC] / r[w][0];
        g->a_bump[w] = r[w][0] / r[w][ROW_BUMP];
        g->a_scope[w] = r[w][ROW_GLIBC] / r[w][ROW_SCOPE];
        g->a_closest[w] = 1e9;
    }
    for (int i = 0; i < n; i++) {
        printf("   %-22s %10.2f %12.2fx   %10.2f %12.2fx   %10.2f %12.2fx\n", names[i], r[0][i], r[0][i] / r[0][0], r[1][i],
               r[1][i] / r[1][0], r[2][i], r[2][i] / r[2][0]);
        for (int w = 0; w < 2 && i > ROW_SCOPE; w++) {
            double ratio = r[w][i] / r[w][0];
            if (ratio <= 1.0) g->a_faster[w] = false;
            if (ratio < g->a_closest[w]) { g->a_closest[w] = ratio; g->a_closest_name[w] = names[i]; }
        }
    }
    print_spread();
    buffet_frame_stats st = buffet_frame_get_stats(fa), st2 = buffet_frame_get_stats(fa2);
    if (st.misuse || st.hard_failures || st2.misuse || st2.hard_failures) die("frame arena reported misuse");
    printf("   (buffet arena: %zu chunks of %zu KiB held with 1 frame in flight, %zu of %zu KiB with 2)\n", st.chunks,
           st.chunk_bytes / (st.chunks ? st.chunks : 1) >> 10, st2.chunks, st2.chunk_bytes / (st2.chunks ? st2.chunks : 1) >> 10);
    fflush(stdout);
    for (int w = 0; w < 3; w++) obstack_free(&fx[w].ob, NULL);
    buffet_frame_destroy(fa);
    buffet_frame_destroy(fa2);
    if (P.tl) P.tl_free(tl_pool, "bench_frame.c");
    if (P.apr) P.apr_pool_destroy(apr_pool);
}

static void section_b(goals *g) {
    static const size_t obj_sizes[] = { 64, 256 };
    static const struct { int burst; bool whole; const char *label; } shapes[] = {
        { 1, false, "get+put pair, write 16 B" }, { 1, true, "get+put pair, write all" },
        { BURST, false, "burst 32, write 16 B" }, { BURST, true, "burst 32, write all" },
        { 0, false, "burst 1..63 rnd, write 16 B" },
    };
    /* Rows 0 and 1 are buffet's own; the rest are the general-purpose allocators. */
    struct { const char *name; uint64_t (*run)(void *, size_t); bool on; } oc[] = {
        { "buffet pool", obj_pool, true }, { "pool bulk", obj_pool_bulk, true },
        { "glibc", obj_glibc, true }, { "jemalloc", obj_je, P.je != NULL },
        { "mimalloc", obj_mi, P.mi != NULL }, { "tcmalloc", obj_tc, P.tc != NULL },
    };
    enum { NOC = sizeof oc / sizeof oc[0] };
    printf("\nb) one object size through a pool cache (buffet_pool_get/put, default cache of 64) vs the\n"
           "   general-purpose allocators' malloc/free of that size; bursts get n objects, then put them\n"
           "   back in the same order. ns per object (get+write+put); (ratio) = peer / buffet pool get/put;\n"
           "   \"pool bulk\" is buffet_pool_get_bulk/put_bulk, shown for comparison (not in the goal).\n");
    printf("   %-32s", "workload");
    for (int i = 0; i < (int)NOC; i++) if (oc[i].on) printf(" %15s", oc[i].name);
    printf("   fastest general-purpose\n");
    g->b_run = g->b_faster = true;
    g->b_closest = 1e9;
    for (size_t zi = 0; zi < sizeof obj_sizes / sizeof obj_sizes[0]; zi++) {
        buffet_pool *pool;
        if (buffet_pool_create(&pool, &(buffet_pool_desc){ .obj_size = obj_sizes[zi] }) != BUFFET_OK)
            die("buffet_pool_create failed");
        buffet_pool_cache *cache;
        if (buffet_pool_cache_create(&cache, pool, 0) != BUFFET_OK) die("buffet_pool_cache_create failed");
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            obj_ctx ox;
            memset(&ox, 0, sizeof ox);
            ox.size = obj_sizes[zi]; ox.whole = shapes[si].whole; ox.burst = shapes[si].burst; ox.cache = cache;
            contestant c[MAX_CONTESTANTS];
            int map[MAX_CONTESTANTS], n = 0;
            for (int i = 0; i < (int)NOC; i++) {
                if (!oc[i].on || (i == 1 && ox.burst == 1)) continue;
                map[n] = i;
                c[n++] = (contestant){ .name = oc[i].name, .run = oc[i].run, .ctx = &ox,
                                       .ops_per_iter = ox.burst == 1 ? 1.0 : ox.burst ? BURST : burst_mean };
            }
            double r[MAX_CONTESTANTS], best = 1e30;
            const char *best_name = "";
            static char table[96];
            snprintf(table, sizeof table, "b) pool, %zu B objects: %s", obj_sizes[zi], shapes[si].label);
            bench_table = table;
            measure(c, n, r, TARGET_NS, 1);
            char row[64];
            snprintf(row, sizeof row, "%3zu B %s", obj_sizes[zi], shapes[si].label);
            printf("   %-32s", row);
            for (int i = 0, k = 0; i < (int)NOC; i++) {
                if (!oc[i].on) continue;
                if (k < n && map[k] == i) {
                    if (i < 2) printf(" %15.2f", r[k]);   /* buffet's own: no ratio */
                    else printf(" %7.2f (%4.1fx)", r[k], r[k] / r[0]);
                    if (i >= 2 && r[k] < best) { best = r[k]; best_name = oc[i].name; }
                    k++;
                } else {
                    printf(" %15s", "-");
                }
            }
            printf("   %-9s %5.2fx\n", best_name, best / r[0]);
            fflush(stdout);
            if (best <= r[0]) g->b_faster = false;
            if (best / r[0] < g->b_closest) {
                g->b_closest = best / r[0];
                snprintf(g->b_closest_row, sizeof g->b_closest_row, "%s, %s", row, best_name);
            }
        }
        buffet_pool_cache_destroy(cache);
        buffet_pool_stats ps = buffet_pool_get_stats(pool);
        if (ps.in_use != 0 || ps.gets != ps.puts) die("pool: objects not back after b)");
        buffet_pool_destroy(pool);
    }
    print_spread();
}

static void section_c(void) {
    bench_pick_cpus(pc_cpu);
    bool on[NPC] = { true, true, true, true, P.je != NULL, P.mi != NULL, P.tc != NULL, true };
    printf("\nc) 2 threads: A gets and writes objects (16 B) and passes their pointers to B in batches of %d\n"
           "   over an SPSC ring (%d slots); B reads each and puts (frees) it. buffet: one pool, a cache per\n"
           "   thread (default 64 pointers; the third row: 512); the malloc-style allocators free on the\n"
           "   other thread. The last row cycles %d preallocated objects: what moving objects between the\n"
           "   cores costs with no allocator at all. A runs on CPU %d, B on CPU %d (-1: not pinned).\n",
           PC_BATCH, PC_RING, PC_FIXED, pc_cpu[0], pc_cpu[1]);
    printf("   %-23s", "contestant");
    static const size_t pc_sizes[] = { 64, 256 };
    for (size_t zi = 0; zi < 2; zi++) printf("   %6zu B: ns/obj    Mobj/s  peer/buffet", pc_sizes[zi]);
    printf("\n");
    double pr[2][NPC];
    for (size_t zi = 0; zi < 2; zi++) {
        buffet_pool *pool;
        if (buffet_pool_create(&pool, &(buffet_pool_desc){ .obj_size = pc_sizes[zi] }) != BUFFET_OK)
            die("buffet_pool_create failed");
        unsigned char *fixed = (unsigned char *)aligned_alloc(64, PC_FIXED * pc_sizes[zi]);
        if (!fixed) die("out of memory");
        memset(fixed, 0, PC_FIXED * pc_sizes[zi]);
        static pc_ctx px[NPC];
        contestant c[MAX_CONTESTANTS];
        int n = 0, map[NPC];
        for (int k = 0; k < (int)NPC; k++) {
            if (!on[k]) continue;
            memset(&px[k], 0, sizeof px[k]);
            px[k].kind = k; px[k].pool = pool; px[k].size = pc_sizes[zi]; px[k].cache_cap = pc_kinds[k].cap;
            px[k].fixed = fixed;
            map[n] = k;
            c[n++] = (contestant){ .name = pc_kinds[k].name, .run = pc_run, .ctx = &px[k], .ops_per_iter = 1.0 };
        }
        double r[MAX_CONTESTANTS];
        static char table[96];
        snprintf(table, sizeof table, "c) 2 threads, %zu B objects made on one, freed on the other", pc_sizes[zi]);
        bench_table = table;
        measure(c, n, r, PC_TARGET_NS, (size_t)1 << 16);
        for (int i = 0; i < n; i++) pr[zi][map[i]] = r[i];
        buffet_pool_stats ps = buffet_pool_get_stats(pool);
        if (ps.in_use != 0) die("pool: objects not back after c)");
        buffet_pool_destroy(pool);
        free(fixed);
    }
    for (int k = 0; k < (int)NPC; k++) {
        if (!on[k]) continue;
        printf("   %-23s", pc_kinds[k].name);
        for (size_t zi = 0; zi < 2; zi++)
            printf("   %17.2f %9.2f %11.2fx", pr[zi][k], 1e3 / pr[zi][k], pr[zi][k] / pr[zi][0]);
        printf("\n");
    }
    print_spread();
}

int main(int argc, char **argv) {
    (void)argc;
    load_peers(argv);   /* may re-execute the program: before any output */
    const char *only = getenv("BUFFET_BENCH_ONLY");
    bench_read_iters();
    uint64_t start = now_ns();
    print_machine();
    bench_print_iters();
    for (size_t i = 0; i < NSIZES; i++) {
        sizes[i] = (uint16_t)(MIN_SIZE + rnd() % (MAX_SIZE - MIN_SIZE + 1));
        sizes_mean += sizes[i] / (double)NSIZES;
    }
    for (size_t i = 0; i < 1024; i++) {
        burst_len[i] = (uint8_t)(1 + rnd() % 63);
        burst_mean += burst_len[i] / 1024.0;
    }
    goals g;
    memset(&g, 0, sizeof g);
    if (!only || strchr(only, 'a')) section_a(&g);
    if (!only || strchr(only, 'b')) section_b(&g);
    if (!only || strchr(only, 'c')) section_c();

    printf("\n");
    for (int w = 0; w < 2 && g.a_run; w++)
        printf("goal: frame arena >= 10x glibc malloc/free per object and faster than every peer in a), %s: "
               "%.1fx glibc, closest peer %s %.2fx: %s\n", w ? "writing whole objects" : "writing 16 B",
               g.a_glibc[w], g.a_closest_name[w], g.a_closest[w], g.a_glibc[w] >= 10.0 && g.a_faster[w] ? "met" : "not met");
    for (int w = 0; w < 2 && g.a_run; w++)
        printf("goal: frame arena <= 1.1x a bump pointer, %s: %.2fx: %s\n",
               w ? "writing whole objects" : "writing 16 B", g.a_bump[w], g.a_bump[w] <= 1.1 ? "met" : "not met");
    for (int w = 0; w < 2 && g.a_run; w++)
        printf("goal: scope over the heap >= 5x glibc malloc/free, %s: %.1fx: %s\n",
               w ? "writing whole objects" : "writing 16 B", g.a_scope[w],
               g.a_scope[w] >= 5.0 ? "met" : "not met");
    if (g.b_run)
        printf("goal: pool get/put faster than the fastest general-purpose allocator in every row of b): "
               "closest %.2fx (%s): %s\n", g.b_closest, g.b_closest_row, g.b_faster ? "met" : "not met");
    printf("\n(total run %.1f s)\n", (double)(now_ns() - start) / 1e9);
    if (P.apr) P.apr_terminate();
    return 0;
}
