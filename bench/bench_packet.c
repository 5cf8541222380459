// pkg-config-optional: libdpdk
/* bench_packet.c - buffet_packet.h against DPDK's mbuf/mempool (the design it follows) and the
   general-purpose allocators a C programmer would otherwise use for packet buffers, side by side
   in one process run:
     a) one 2048-class packet: alloc, write 64 bytes of data, free (and the same writing through
        the append API, which also sets the lengths)
     b) bursts: alloc_bulk 32, write 64 bytes into each, free_bulk 32; the same with the burst size
        drawn from 1..64 at random for every burst (one table, the same for every contestant), so
        that the branch predictor cannot learn the pattern; DPDK's raw rte_mempool_get_bulk /
        put_bulk (no mbuf reset) as the reference of what a pointer cache costs, against buffet's raw
        buffers (buffet_pkt_alloc_bulk_raw / free_bulk_raw: no header reset either)
     c) clone + free: a zero-copy clone of a 64-byte packet (a header of its own, data shared and
        counted in the original's reference count), then the clone freed
     d) 2 threads: A allocates bursts of 32 from its cache and writes 64 bytes into each, passes
        the pointers in batches of 32 over an SPSC ring to B, which frees them into its own cache
     e) memory: what the 2048 class costs beyond its data rooms, buffet and DPDK
     f) 2 threads, one object per hand-off: A allocates one buffer, writes 64 bytes into it and
        publishes its pointer into an SPSC ring; B takes the pointers one at a time and frees each
        at once into its own cache (a pipeline's producer and consumer, no bursts). buffet's packet
        pool against rte_pktmbuf_alloc/free, buffet_frame.h's object pool (2176-byte objects) against
        DPDK's raw rte_mempool_get/put on the same mbuf objects, glibc as the baseline
   Peers: DPDK through its real API (rte_eal_init, rte_pktmbuf_pool_create, rte_pktmbuf_alloc,
   ..._bulk, rte_pktmbuf_clone, rte_mempool_get_bulk, rte_mempool_get/put); glibc malloc/free;
   jemalloc (malloc/free
   of libjemalloc.so.2), mimalloc (mi_malloc/mi_free), tcmalloc (tc_malloc/tc_free), each loaded
   with dlopen(RTLD_NOW | RTLD_LOCAL), so nothing is linked and the process's malloc stays
   glibc's. The malloc-style peers allocate 2176 B: headroom + data room, what DPDK's
   RTE_MBUF_DEFAULT_BUF_SIZE holds. A peer that is absent is skipped with the reason. DPDK is
   optional: without its headers (libdpdk-dev) this file still builds and skips it; the
   pkg-config line above gives the flags when it is installed (`make bench-deps`).
   DPDK's EAL runs with --no-pci --no-shconf -l <CPU A> --no-telemetry and --in-memory when
   enough 2 MiB huge pages are free for its pools, else --no-huge (4 KiB pages: slower, said so).
   Every number is the median of REPS repetitions after a warm-up; within a repetition the
   contestants alternate (order reversed every other repetition); clock_gettime(CLOCK_MONOTONIC).
   Placement moves these loops by up to 2x (see run_shifted and hold_buffet), so each repetition
   runs with the stack at another offset in its page and with another buffer being recycled.
   Ratios are peer / buffet: above 1 means buffet is faster. Every buffer is written after
   allocation and the writes escape to the compiler, so nothing can be elided.
   Environment: BUFFET_BENCH_ONLY=abcdef picks sections; BUFFET_BENCH_ITERS=N runs each contestant
   once for N iterations (for valgrind --tool=callgrind: instructions per buffer = inclusive Ir of
   the contestant's function / buffers; under valgrind also set BUFFET_BENCH_DPDK_NOHUGE=1, as the
   EAL cannot reserve its address space there, and BUFFET_BENCH_REEXEC=1 with
   GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384, as re-executing for jemalloc's static TLS
   would start the valgrind tool itself); BUFFET_BENCH_NOPIN=1 leaves threads unpinned;
   BUFFET_BENCH_NODPDK=1 skips DPDK; BUFFET_BENCH_DPDK_NOHUGE=1 runs it on 4 KiB pages;
   BUFFET_BENCH_FRAME_HEAP=1 puts f)'s frame pool on the heap (4 KiB pages) instead of THP;
   BUFFET_BENCH_FRAME_CACHE=N gives its caches N pointers (default BUFFET_POOL_CACHE_MAX).
   Build: gcc -std=c11 -O2 -pthread bench/bench_packet.c -o bench_packet \
              $(pkg-config --cflags --libs libdpdk)      # the last part only for DPDK */
#define BUFFET_IMPLEMENTATION
#include "../buffet_packet.h"   /* first: it defines _GNU_SOURCE for the headers below */
#include "../buffet_frame.h"    /* f): the object pool */

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#if defined(__has_include)
#  if __has_include(<rte_mbuf.h>)
#    define HAVE_DPDK 1
#  endif
#endif
#ifndef HAVE_DPDK
#  define HAVE_DPDK 0
#endif
#if HAVE_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_memzone.h>
#include <rte_ring.h>
#include <rte_version.h>
#endif

#define BENCH_NAME "bench_packet"
#define REPS 31                   /* timed repetitions per contestant (odd: a true median) */
#define TARGET_NS 5000000.0       /* a) to c): each timed repetition runs about this long */
#define XT_TARGET_NS 20000000.0   /* d): longer, so that starting a thread is noise */
#define NC 9                      /* contestants */
#define BURST 32
#define MAX_BURST 64
#define NBURSTS 4096              /* the random burst table (a power of two) */
#define DATA_ROOM 2048
#define HEADROOM 128              /* buffet's default and DPDK's RTE_PKTMBUF_HEADROOM */
#define PEER_SIZE (HEADROOM + DATA_ROOM)   /* 2176: what malloc-style peers allocate */
#define POOL_N 2048               /* buffers in buffet's pool (3 huge pages); DPDK's has 2047 (2^11 - 1, its advice) */
#define BUFFET_CACHE BUFFET_PKT_CACHE_MAX   /* buffet cache (512): refills and spills half at a time */
#define DPDK_CACHE 256            /* DPDK cache: refills to 256 + n, flushes above 384 */
#define XT_RING 512               /* d): pointers in the SPSC ring */
#define MEM_N 16384               /* e): buffers in the pool measured */
#define DPDK_HUGE_NEED_KB (8 * 1024)    /* DPDK's EAL and pools here take 4 huge pages of 2 MiB */

#include "bench.h"   /* the harness: now_ns, escape, backoff, rnd, the noise report, peers, ... */

static const unsigned char payload[64] = "an Ethernet header, an IPv4 header and a UDP header, roughly...";
/* The touch: 64 bytes of data written (a frame's headers), one byte varying. */
ALWAYS_INLINE void write64(unsigned char *d, size_t i) {
    memcpy(d, payload, 64);
    d[63] = (unsigned char)i;
    escape(d);
}

static uint8_t burst_len[NBURSTS];   /* 1..64 uniform, the same for every contestant */
static double burst_mean;

/* ---- the contestants ---- */
enum { C_BUFFET, C_DPDK, C_RAW, C_GLIBC, C_JE, C_MI, C_TC, C_BUFRAW, C_FPOOL };
static bool con[NC];               /* present */
static char cwhy[NC][256];         /* why not */

static struct {
    void *je, *mi, *tc;
    void *(*je_malloc)(size_t);
    void (*je_free)(void *);
    void *(*mi_malloc)(size_t);
    void (*mi_free)(void *);
    void *(*tc_malloc)(size_t);
    void (*tc_free)(void *);
    char ver_je[64], ver_mi[64], ver_tc[64];
} P;

static void load_peers(char **argv) {
    P.je = bench_open_jemalloc(argv, cwhy[C_JE], sizeof cwhy[C_JE]);
    if (P.je && (!sym(P.je, "malloc", &P.je_malloc) || !sym(P.je, "free", &P.je_free) || P.je_malloc == malloc))
        P.je = missing(P.je, "libjemalloc.so.2", "malloc/free of its own", cwhy[C_JE], sizeof cwhy[C_JE]);
    if (P.je) bench_je_version(P.je, P.ver_je, sizeof P.ver_je);
    P.mi = open_lib("libmimalloc.so.2", cwhy[C_MI], sizeof cwhy[C_MI]);
    if (P.mi && (!sym(P.mi, "mi_malloc", &P.mi_malloc) || !sym(P.mi, "mi_free", &P.mi_free)))
        P.mi = missing(P.mi, "libmimalloc.so.2", "mi_malloc/mi_free", cwhy[C_MI], sizeof cwhy[C_MI]);
    if (P.mi) bench_mi_version(P.mi, P.ver_mi, sizeof P.ver_mi);
    P.tc = open_lib("libtcmalloc_minimal.so.4", cwhy[C_TC], sizeof cwhy[C_TC]);
    if (P.tc && (!sym(P.tc, "tc_malloc", &P.tc_malloc) || !sym(P.tc, "tc_free", &P.tc_free)))
        P.tc = missing(P.tc, "libtcmalloc_minimal.so.4", "tc_malloc/tc_free", cwhy[C_TC], sizeof cwhy[C_TC]);
    if (P.tc) bench_tc_version(P.tc, P.ver_tc, sizeof P.ver_tc);
    con[C_GLIBC] = true;
    con[C_JE] = P.je != NULL;
    con[C_MI] = P.mi != NULL;
    con[C_TC] = P.tc != NULL;
}

/* Each peer through its own entry points; the templates below take these as constant arguments
   and are always inlined, so every call is direct (glibc) or one indirect call into the peer. */
static inline void *glibc_alloc(size_t n) { return malloc(n); }
static inline void glibc_free(void *p) { free(p); }
static inline void *je_alloc(size_t n) { return P.je_malloc(n); }
static inline void je_free(void *p) { P.je_free(p); }
static inline void *mi_alloc(size_t n) { return P.mi_malloc(n); }
static inline void mi_free(void *p) { P.mi_free(p); }
static inline void *tc_alloc(size_t n) { return P.tc_malloc(n); }
static inline void tc_free(void *p) { P.tc_free(p); }
typedef void *(*gp_alloc_fn)(size_t);
typedef void (*gp_free_fn)(void *);

/* ---- CPUs: A (and the EAL's main lcore) on the first CPU this process may use, B on the second ---- */
static int cpu[2] = { -1, -1 };

/* ---- buffet ---- */
/* The pool's bookkeeping allocator: the heap, with each block placed place_shift bytes into a
   page, so that each repetition can put the main thread's cache somewhere else (see hold_buffet). */
static size_t place_shift;
static void *place_alloc(void *self, size_t size, size_t align, buffet_site site) {
    (void)self; (void)site;
    if (align < 64) align = 64;
    /* room for: the pointer to raw, rounding up to a page, the shift (< 4096), the alignment */
    unsigned char *raw = (unsigned char *)malloc(size + sizeof(void *) + 4095 + 4096 + align);
    if (!raw) return NULL;
    uintptr_t p = (((uintptr_t)raw + sizeof(void *) + 4095) & ~(uintptr_t)4095) + place_shift;
    p = (p + align - 1) & ~(uintptr_t)(align - 1);
    memcpy((void *)(p - sizeof(void *)), &raw, sizeof raw);
    return (void *)p;
}
static bool place_resize(void *self, void *ptr, size_t old_size, size_t new_size, size_t align) {
    (void)self; (void)ptr; (void)old_size; (void)new_size; (void)align;
    return false;
}
static void place_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    void *raw;
    (void)self; (void)size; (void)align; (void)site;
    if (!ptr) return;
    memcpy(&raw, (unsigned char *)ptr - sizeof(void *), sizeof raw);
    free(raw);
}
static uint32_t place_contract(const void *self) {
    (void)self;
    return BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE;   /* malloc underneath */
}
static const buffet_allocator_vtable place_vtable = { place_alloc, place_resize, place_free, NULL, place_contract, NULL };

static struct {
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;   /* the main thread's (thread A's in d) */
    unsigned cls;
    buffet_pkt *orig;          /* c): the packet cloned */
    buffet_pkt *orig2;         /* c): the packet whose clones are held (orig's count stays 1) */
} B;

/* f): buffet_frame.h's object pool, objects of DPDK's mbuf buffer size (headroom + data room),
   line-aligned as DPDK's are, all in one slab made at create (initial = max), so that every
   object is found through the cache's hint as in a long-running pipeline. Its parent puts
   blocks of 2 MiB or more in their own THP-advised mapping (the slab), as the packet pool's
   regions and DPDK's memory are on huge pages; smaller ones come from the heap. */
#define THP_MIN ((size_t)2 << 20)
static void *thp_alloc(void *self, size_t size, size_t align, buffet_site site) {
    void *p;
    (void)self; (void)site;
    if (size < THP_MIN) {
        if (align < sizeof(void *)) align = sizeof(void *);
        return posix_memalign(&p, align, size) == 0 ? p : NULL;
    }
    /* 2 MiB more, then the slop cut off both ends: the block starts on a 2 MiB boundary */
    size_t len = (size + 4095) & ~(size_t)4095;
    unsigned char *m = (unsigned char *)mmap(NULL, len + THP_MIN, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    unsigned char *a = (unsigned char *)(((uintptr_t)m + THP_MIN - 1) & ~(uintptr_t)(THP_MIN - 1));
    if (a > m) munmap(m, (size_t)(a - m));
    if (m + len + THP_MIN > a + len) munmap(a + len, (size_t)(m + len + THP_MIN - (a + len)));
    madvise(a, len, MADV_HUGEPAGE);   /* advice only: without THP, 4 KiB pages */
    return a;
}
static void thp_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)self; (void)align; (void)site;
    if (!ptr) return;
    if (size < THP_MIN) free(ptr);
    else munmap(ptr, (size + 4095) & ~(size_t)4095);
}
static const buffet_allocator_vtable thp_vtable = { thp_alloc, NULL, thp_free, NULL, place_contract, NULL };

static struct {
    buffet_pool *pool;
    buffet_pool_cache *cache;  /* thread A's (the main thread's) */
    uint32_t cache_cap;        /* BUFFET_POOL_CACHE_MAX, or BUFFET_BENCH_FRAME_CACHE */
} F;

static void frame_pool_setup(void) {
    buffet_pool_desc d;
    memset(&d, 0, sizeof d);
    if (!getenv("BUFFET_BENCH_FRAME_HEAP")) d.parent.vtable = &thp_vtable;
    d.obj_size = PEER_SIZE;
    d.obj_align = 64;
    d.initial = d.max = d.slab_objs = POOL_N;
    if (buffet_pool_create(&F.pool, &d) != BUFFET_OK) die("buffet_pool_create failed");
    F.cache_cap = getenv("BUFFET_BENCH_FRAME_CACHE") ? (uint32_t)atoi(getenv("BUFFET_BENCH_FRAME_CACHE"))
                                                    : BUFFET_POOL_CACHE_MAX;
    if (buffet_pool_cache_create(&F.cache, F.pool, F.cache_cap) != BUFFET_OK)
        die("buffet_pool_cache_create failed");
    con[C_FPOOL] = true;
}

static void buffet_setup(void) {
    buffet_pkt_pool_desc d;
    memset(&d, 0, sizeof d);
    d.name = "bench";
    d.class_sizes[0] = DATA_ROOM;
    d.initial = d.max = POOL_N;
    d.allocator.vtable = &place_vtable;
    if (buffet_pkt_pool_create(&B.pool, &d) != BUFFET_OK) die("buffet_pkt_pool_create failed");
    if (buffet_pkt_cache_create(&B.cache, B.pool, BUFFET_CACHE) != BUFFET_OK) die("buffet_pkt_cache_create failed");
    int k = buffet_pkt_pool_class(B.pool, DATA_ROOM);
    if (k < 0) die("no 2048 class");
    B.cls = (unsigned)k;
    for (int i = 0; i < 2; i++) {
        buffet_pkt *p = buffet_pkt_alloc_class(B.cache, B.cls);
        unsigned char *data = p ? (unsigned char *)buffet_pkt_append(p, 64) : NULL;
        if (!data) die("buffet: the packet to clone");
        memcpy(data, payload, 64);
        if (i) B.orig2 = p; else B.orig = p;
    }
    con[C_BUFFET] = true;
}

/* ---- DPDK ---- */
static long proc_field(const char *file, const char *key) {   /* a "Key: number" field, -1 if absent */
    char line[256];
    long v = -1;
    FILE *f = fopen(file, "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) { v = strtol(line + strlen(key), NULL, 10); break; }
    if (f) fclose(f);
    return v;
}
static long meminfo(const char *key) { return proc_field("/proc/meminfo", key); }

static struct {
    char eal[256];              /* the EAL arguments used */
    char pages[128];            /* what pages its memory is on, and why */
    char xt[160];               /* how d)'s threads got their mempool caches */
#if HAVE_DPDK
    struct rte_mempool *mp, *clone_mp;
    struct rte_mbuf *orig;      /* c): the packet cloned */
    struct rte_mbuf *orig2;     /* c): the packet whose clones are held */
#endif
} D;

static void dpdk_setup(const char *prog) {
#if HAVE_DPDK
    if (getenv("BUFFET_BENCH_NODPDK")) {
        snprintf(cwhy[C_DPDK], sizeof cwhy[C_DPDK], "BUFFET_BENCH_NODPDK is set");
        return;
    }
    long free_pages = meminfo("HugePages_Free:"), page_kb = meminfo("Hugepagesize:");
    bool huge = free_pages > 0 && page_kb > 0 && free_pages * page_kb >= DPDK_HUGE_NEED_KB;
    if (getenv("BUFFET_BENCH_DPDK_NOHUGE")) {
        huge = false;
        snprintf(D.pages, sizeof D.pages, "4 KiB pages (--no-huge: BUFFET_BENCH_DPDK_NOHUGE is set)");
    } else if (huge)
        snprintf(D.pages, sizeof D.pages, "2 MiB huge pages (--in-memory; %ld free)", free_pages);
    else
        snprintf(D.pages, sizeof D.pages, "4 KiB pages (--no-huge: %ld huge pages free, %d MiB wanted)",
                 free_pages < 0 ? 0 : free_pages, DPDK_HUGE_NEED_KB / 1024);
    char lcore[16];
    snprintf(lcore, sizeof lcore, "%d", cpu[0] < 0 ? 0 : cpu[0]);
    char *args[] = { (char *)prog, "--no-pci", "--no-shconf", "-l", lcore, huge ? "--in-memory" : "--no-huge",
                     "--no-telemetry", "--log-level=lib.eal:warning", NULL };
    int argc = (int)(sizeof args / sizeof args[0]) - 1;
    size_t len = 0;
    for (int i = 1; i < argc; i++) len += (size_t)snprintf(D.eal + len, len < sizeof D.eal ? sizeof D.eal - len : 0, "%s%s", i > 1 ? " " : "", args[i]);
    fflush(stdout);
    if (rte_eal_init(argc, args) < 0) {
        snprintf(cwhy[C_DPDK], sizeof cwhy[C_DPDK], "rte_eal_init(%.120s) failed: %.100s", D.eal, rte_strerror(rte_errno));
        return;
    }
    /* POOL_N - 1 = 2^11 - 1 (DPDK's advice: its ring then has no unused half), the same 2048 + 128 data room. */
    D.mp = rte_pktmbuf_pool_create("bench", POOL_N - 1, DPDK_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    /* Clones need headers only: DPDK's usual "indirect" pool has no data room. */
    D.clone_mp = D.mp ? rte_pktmbuf_pool_create("clone", POOL_N - 1, DPDK_CACHE, 0, 0, SOCKET_ID_ANY) : NULL;
    if (!D.mp || !D.clone_mp) {
        snprintf(cwhy[C_DPDK], sizeof cwhy[C_DPDK], "rte_pktmbuf_pool_create failed: %s", rte_strerror(rte_errno));
        return;
    }
    for (int i = 0; i < 2; i++) {
        struct rte_mbuf *m = rte_pktmbuf_alloc(D.mp);
        char *data = m ? rte_pktmbuf_append(m, 64) : NULL;
        if (!data) die("DPDK: the packet to clone");
        memcpy(data, payload, 64);
        if (i) D.orig2 = m; else D.orig = m;
    }
    con[C_DPDK] = con[C_RAW] = true;
#else
    (void)prog;
    snprintf(cwhy[C_DPDK], sizeof cwhy[C_DPDK], "built without DPDK's headers (install libdpdk-dev: make bench-deps)");
#endif
}

static void dpdk_teardown(void) {
#if HAVE_DPDK
    if (!con[C_DPDK]) return;
    rte_pktmbuf_free(D.orig);
    rte_pktmbuf_free(D.orig2);
    /* Every buffer is back: in the ring or in some lcore's cache (which rte_mempool_in_use_count sees). */
    if (rte_mempool_in_use_count(D.mp) != 0 || rte_mempool_in_use_count(D.clone_mp) != 0)
        die("DPDK: mbufs not back at the end");
    rte_mempool_free(D.clone_mp);
    rte_mempool_free(D.mp);
    rte_eal_cleanup();
#endif
}

/* ---- the harness: run(ctx, iters, &buffers) returns elapsed ns and how many buffers it moved ---- */
typedef uint64_t (*run_fn)(const void *ctx, size_t iters, uint64_t *bufs);
typedef struct contestant {
    const char *name;
    run_fn run;
    const void *ctx;
} contestant;

typedef struct result { double med, q1, q3; } result;   /* ns per buffer */

/* Buffers each timed run takes out first (see "which buffer gets recycled" below). */
#define MAX_HOLD 32
static size_t hold_n;
static size_t hold_of(int r) { return (size_t)(r * 7) % MAX_HOLD; }

static double run_once(const contestant *c, size_t iters) {
    uint64_t bufs = 0, t = c->run(c->ctx, iters, &bufs);
    return (double)t / (double)(bufs ? bufs : 1);
}
/* The same with the stack `shift` bytes lower. Where the loop's stack slots sit relative to the
   buffers (bits 0..11 of the address: 4 KiB aliasing of loads with earlier stores) moved DPDK's
   single alloc+free from 5.1 to 10.1 ns and buffet's from 6.3 to 8.1 ns with the length of the
   environment (which moves the stack); the
   repetitions therefore spread the stack over a page and the median is over placements. */
NOINLINE double run_shifted(const contestant *c, size_t iters, size_t shift) {
    volatile char pad[shift + 16];
    pad[0] = 0;
    double ns = run_once(c, iters);
    escape((void *)pad);
    return ns;
}
static size_t shift_of(int r) { return ((size_t)r * 4096 / REPS) & ~(size_t)15; }

/* Median ns/buffer of each contestant. Calibration (from min_iters up) doubles as the warm-up;
   one more untimed run at the final count follows it. */
static void measure(contestant *c, int n, result *out, double target, size_t min_iters) {
    size_t iters[NC];
    double s[NC][REPS];
    if (fixed_iters) {   /* callgrind: instructions per buffer = the function's inclusive Ir / buffers */
        for (int i = 0; i < n; i++) {
            uint64_t bufs = 0, t;
            bench_count_begin();
            t = c[i].run(c[i].ctx, fixed_iters, &bufs);
            bench_count_end(c[i].name, (double)bufs);
            out[i].med = out[i].q1 = out[i].q3 = (double)t / (double)(bufs ? bufs : 1);
            printf("   [%s: %llu buffers]\n", c[i].name, (unsigned long long)bufs);
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        size_t it = min_iters;
        uint64_t t, bufs;
        while ((t = c[i].run(c[i].ctx, it, &bufs)) < target / 8) it *= 2;
        double want = (double)it * target / (double)(t ? t : 1);
        iters[i] = want < (double)min_iters ? min_iters : (size_t)want;
        c[i].run(c[i].ctx, iters[i], &bufs);
    }
    for (int r = 0; r < REPS; r++)
        for (int j = 0; j < n; j++) {
            int i = (r & 1) ? n - 1 - j : j;
            hold_n = hold_of(r);
            s[i][r] = run_shifted(&c[i], iters[i], shift_of(r));
            hold_n = 0;
        }
    for (int i = 0; i < n; i++) {
        qsort(s[i], REPS, sizeof(double), cmp_double);
        out[i].med = s[i][REPS / 2];
        out[i].q1 = s[i][REPS / 4];
        out[i].q3 = s[i][(3 * REPS) / 4];
        note_spread(c[i].name, out[i].med, out[i].q1, out[i].q3);
    }
}

/* ---- which buffer gets recycled ----
   A LIFO cache hands the same buffer back again and again, and where that buffer lies relative to
   the cache's arrays and the stack (4 KiB aliasing of loads with earlier stores, cache sets)
   moved buffet's single alloc+free between 5.8 and 7.9 ns, and where the cache struct lies in
   its page moved buffet's bursts between 4.1 and 5.1 ns. So each timed run of buffet starts
   with a new cache at another offset in its page (DPDK's caches sit where its mempool puts them:
   they are flushed), whose first allocation refills it with the buffers next in the shared ring
   (a FIFO); and each timed run first takes hold_n buffers out through the contestant's own API
   (given back after the clock stops): the repetitions recycle different buffers, and the median
   is over placements. */

NOINLINE void hold_buffet(void **h, bool take, bool clone) {
    if (take) {   /* a new cache, placed elsewhere; its first refill takes the buffers next in the ring */
        buffet_pkt_cache_destroy(B.cache);
        place_shift = hold_n * 128 % 4096;   /* a multiple of 64, below 4096 */
        if (buffet_pkt_cache_create(&B.cache, B.pool, BUFFET_CACHE) != BUFFET_OK) die("buffet_pkt_cache_create failed");
    }
    for (size_t i = 0; i < hold_n; i++) {
        if (take) {
            h[i] = clone ? buffet_pkt_clone(B.cache, B.orig2) : buffet_pkt_alloc_class(B.cache, B.cls);
            if (!h[i]) die("buffet: holding buffers failed");
        } else {
            buffet_pkt_free(B.cache, (buffet_pkt *)h[hold_n - 1 - i]);   /* reverse: the cache's order comes back */
        }
    }
}
#if HAVE_DPDK
NOINLINE void hold_dpdk(void **h, bool take, bool clone) {
    if (take) {   /* the refill takes the buffers next in the ring */
        rte_mempool_cache_flush(rte_mempool_default_cache(D.mp, rte_lcore_id()), D.mp);
        rte_mempool_cache_flush(rte_mempool_default_cache(D.clone_mp, rte_lcore_id()), D.clone_mp);
    }
    for (size_t i = 0; i < hold_n; i++) {
        if (take) {
            h[i] = clone ? rte_pktmbuf_clone(D.orig2, D.clone_mp) : rte_pktmbuf_alloc(D.mp);
            if (!h[i]) die("DPDK: holding buffers failed");
        } else {
            rte_pktmbuf_free((struct rte_mbuf *)h[hold_n - 1 - i]);
        }
    }
}
#endif
ALWAYS_INLINE void hold_gp(void **h, bool take, gp_alloc_fn al, gp_free_fn fr) {
    for (size_t i = 0; i < hold_n; i++) {
        if (take) {
            if (!(h[i] = al(PEER_SIZE))) die("malloc failed");
        } else {
            fr(h[hold_n - 1 - i]);
        }
    }
}

/* ---- a) single alloc + write 64 B + free ----
   Each contestant and variant is a function of its own (a template always inlined into a
   noinline wrapper), so that callgrind's inclusive counts name it. */
ALWAYS_INLINE uint64_t single_buffet_t(size_t iters, uint64_t *bufs, bool append) {
    buffet_pkt_cache *c;
    const unsigned cls = B.cls;
    void *held[MAX_HOLD];
    hold_buffet(held, true, false);
    c = B.cache;   /* a new one each run */
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        buffet_pkt *p = buffet_pkt_alloc_class(c, cls);
        if (!p) die("buffet_pkt_alloc_class failed");
        unsigned char *d = append ? (unsigned char *)buffet_pkt_append(p, 64) : (unsigned char *)buffet_pkt_data(p);
        if (!d) die("buffet_pkt_append failed");
        write64(d, i);
        buffet_pkt_free(c, p);
    }
    *bufs = iters;
    uint64_t t = now_ns() - t0;
    hold_buffet(held, false, false);
    return t;
}
NOINLINE uint64_t single_buffet(const void *x, size_t it, uint64_t *b) { (void)x; return single_buffet_t(it, b, false); }
NOINLINE uint64_t append_buffet(const void *x, size_t it, uint64_t *b) { (void)x; return single_buffet_t(it, b, true); }

#if HAVE_DPDK
ALWAYS_INLINE uint64_t single_dpdk_t(size_t iters, uint64_t *bufs, bool append) {
    struct rte_mempool *mp = D.mp;
    void *held[MAX_HOLD];
    hold_dpdk(held, true, false);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        struct rte_mbuf *m = rte_pktmbuf_alloc(mp);
        if (!m) die("rte_pktmbuf_alloc failed");
        unsigned char *d = append ? (unsigned char *)rte_pktmbuf_append(m, 64) : rte_pktmbuf_mtod(m, unsigned char *);
        if (!d) die("rte_pktmbuf_append failed");
        write64(d, i);
        rte_pktmbuf_free(m);
    }
    *bufs = iters;
    uint64_t t = now_ns() - t0;
    hold_dpdk(held, false, false);
    return t;
}
NOINLINE uint64_t single_dpdk(const void *x, size_t it, uint64_t *b) { (void)x; return single_dpdk_t(it, b, false); }
NOINLINE uint64_t append_dpdk(const void *x, size_t it, uint64_t *b) { (void)x; return single_dpdk_t(it, b, true); }
#endif

ALWAYS_INLINE uint64_t single_gp(size_t iters, uint64_t *bufs, gp_alloc_fn al, gp_free_fn fr) {
    void *held[MAX_HOLD];
    hold_gp(held, true, al, fr);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        unsigned char *p = (unsigned char *)al(PEER_SIZE);
        if (!p) die("malloc failed");
        write64(p + HEADROOM, i);
        fr(p);
    }
    *bufs = iters;
    uint64_t t = now_ns() - t0;
    hold_gp(held, false, al, fr);
    return t;
}

/* ---- b) bursts: 32, or 1..64 from the table ---- */
ALWAYS_INLINE size_t burst_of(bool random, size_t it) { return random ? burst_len[it & (NBURSTS - 1)] : BURST; }

ALWAYS_INLINE uint64_t burst_buffet_t(size_t iters, uint64_t *bufs, bool random) {
    buffet_pkt_cache *c;
    const unsigned cls = B.cls;
    buffet_pkt *v[MAX_BURST];
    void *held[MAX_HOLD];
    hold_buffet(held, true, false);
    c = B.cache;   /* a new one each run */
    uint64_t total = 0, t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        size_t n = burst_of(random, it);
        if (buffet_pkt_alloc_bulk(c, cls, v, n) != n) die("buffet_pkt_alloc_bulk failed");
        for (size_t j = 0; j < n; j++) write64((unsigned char *)buffet_pkt_data(v[j]), j);
        buffet_pkt_free_bulk(c, v, n);
        total += n;
    }
    *bufs = total;
    uint64_t t = now_ns() - t0;
    hold_buffet(held, false, false);
    return t;
}
NOINLINE uint64_t burst32_buffet(const void *x, size_t it, uint64_t *b) { (void)x; return burst_buffet_t(it, b, false); }
NOINLINE uint64_t burstrnd_buffet(const void *x, size_t it, uint64_t *b) { (void)x; return burst_buffet_t(it, b, true); }

/* buffet's raw buffers (buffet_pkt_alloc_bulk_raw / free_bulk_raw): no header reset, as DPDK's raw
   mempool calls below; the data written where a fresh packet's data starts (after the headroom),
   found from the pointer as DPDK's is (buffet_pkt_raw_buf: the header's line is not read). */
ALWAYS_INLINE uint64_t burst_bufraw_t(size_t iters, uint64_t *bufs, bool random) {
    buffet_pkt_cache *c;
    const unsigned cls = B.cls;
    buffet_pkt *v[MAX_BURST];
    void *held[MAX_HOLD];
    hold_buffet(held, true, false);
    c = B.cache;   /* a new one each run */
    uint64_t total = 0, t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        size_t n = burst_of(random, it);
        if (buffet_pkt_alloc_bulk_raw(c, cls, v, n) != n) die("buffet_pkt_alloc_bulk_raw failed");
        for (size_t j = 0; j < n; j++) write64(buffet_pkt_raw_buf(c, v[j]) + HEADROOM, j);
        buffet_pkt_free_bulk_raw(c, v, n);
        total += n;
    }
    *bufs = total;
    uint64_t t = now_ns() - t0;
    hold_buffet(held, false, false);
    return t;
}
NOINLINE uint64_t burst32_bufraw(const void *x, size_t it, uint64_t *b) { (void)x; return burst_bufraw_t(it, b, false); }
NOINLINE uint64_t burstrnd_bufraw(const void *x, size_t it, uint64_t *b) { (void)x; return burst_bufraw_t(it, b, true); }

#if HAVE_DPDK
ALWAYS_INLINE uint64_t burst_dpdk_t(size_t iters, uint64_t *bufs, bool random) {
    struct rte_mempool *mp = D.mp;
    struct rte_mbuf *v[MAX_BURST];
    void *held[MAX_HOLD];
    hold_dpdk(held, true, false);
    uint64_t total = 0, t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        unsigned n = (unsigned)burst_of(random, it);
        if (rte_pktmbuf_alloc_bulk(mp, v, n) != 0) die("rte_pktmbuf_alloc_bulk failed");
        for (unsigned j = 0; j < n; j++) write64(rte_pktmbuf_mtod(v[j], unsigned char *), j);
        rte_pktmbuf_free_bulk(v, n);
        total += n;
    }
    *bufs = total;
    uint64_t t = now_ns() - t0;
    hold_dpdk(held, false, false);
    return t;
}
NOINLINE uint64_t burst32_dpdk(const void *x, size_t it, uint64_t *b) { (void)x; return burst_dpdk_t(it, b, false); }
NOINLINE uint64_t burstrnd_dpdk(const void *x, size_t it, uint64_t *b) { (void)x; return burst_dpdk_t(it, b, true); }

/* The raw pointer cache under the mbufs: no header reset, no refcount check on free. */
ALWAYS_INLINE uint64_t burst_raw_t(size_t iters, uint64_t *bufs, bool random) {
    struct rte_mempool *mp = D.mp;
    void *v[MAX_BURST];
    void *held[MAX_HOLD];
    hold_dpdk(held, true, false);
    uint64_t total = 0, t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        unsigned n = (unsigned)burst_of(random, it);
        if (rte_mempool_get_bulk(mp, v, n) != 0) die("rte_mempool_get_bulk failed");
        for (unsigned j = 0; j < n; j++)   /* where the data of a fresh mbuf starts */
            write64((unsigned char *)v[j] + sizeof(struct rte_mbuf) + RTE_PKTMBUF_HEADROOM, j);
        rte_mempool_put_bulk(mp, v, n);
        total += n;
    }
    *bufs = total;
    uint64_t t = now_ns() - t0;
    hold_dpdk(held, false, false);
    return t;
}
NOINLINE uint64_t burst32_raw(const void *x, size_t it, uint64_t *b) { (void)x; return burst_raw_t(it, b, false); }
NOINLINE uint64_t burstrnd_raw(const void *x, size_t it, uint64_t *b) { (void)x; return burst_raw_t(it, b, true); }
#endif

ALWAYS_INLINE uint64_t burst_gp(size_t iters, uint64_t *bufs, bool random, gp_alloc_fn al, gp_free_fn fr) {
    unsigned char *v[MAX_BURST];
    void *held[MAX_HOLD];
    hold_gp(held, true, al, fr);
    uint64_t total = 0, t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        size_t n = burst_of(random, it);
        for (size_t j = 0; j < n; j++) {
            v[j] = (unsigned char *)al(PEER_SIZE);
            if (!v[j]) die("malloc failed");
            write64(v[j] + HEADROOM, j);
        }
        for (size_t j = 0; j < n; j++) fr(v[j]);
        total += n;
    }
    *bufs = total;
    uint64_t t = now_ns() - t0;
    hold_gp(held, false, al, fr);
    return t;
}

/* ---- c) clone + free ---- */
NOINLINE uint64_t clone_buffet(const void *vx, size_t iters, uint64_t *bufs) {
    buffet_pkt_cache *c;
    buffet_pkt *orig = B.orig;
    void *held[MAX_HOLD];
    hold_buffet(held, true, true);
    c = B.cache;   /* a new one each run */
    uint64_t t0 = now_ns();
    (void)vx;
    for (size_t i = 0; i < iters; i++) {
        buffet_pkt *q = buffet_pkt_clone(c, orig);
        if (!q) die("buffet_pkt_clone failed");
        q->out_port = (uint16_t)i;   /* a clone exists to get metadata of its own */
        escape(q);
        buffet_pkt_free(c, q);
    }
    *bufs = iters;
    uint64_t t = now_ns() - t0;
    hold_buffet(held, false, true);
    return t;
}

#if HAVE_DPDK
NOINLINE uint64_t clone_dpdk(const void *vx, size_t iters, uint64_t *bufs) {
    struct rte_mempool *cmp = D.clone_mp;
    struct rte_mbuf *orig = D.orig;
    void *held[MAX_HOLD];
    hold_dpdk(held, true, true);
    uint64_t t0 = now_ns();
    (void)vx;
    for (size_t i = 0; i < iters; i++) {
        struct rte_mbuf *q = rte_pktmbuf_clone(orig, cmp);
        if (!q) die("rte_pktmbuf_clone failed");
        q->port = (uint16_t)i;
        escape(q);
        rte_pktmbuf_free(q);
    }
    *bufs = iters;
    uint64_t t = now_ns() - t0;
    hold_dpdk(held, false, true);
    return t;
}
#endif

/* The malloc-style peers' functions, one per peer and workload. */
#define GP_FUNCS(name)                                                                                      \
    NOINLINE uint64_t single_##name(const void *x, size_t it, uint64_t *b) {                                \
        (void)x; return single_gp(it, b, name##_alloc, name##_free);                                        \
    }                                                                                                       \
    NOINLINE uint64_t burst32_##name(const void *x, size_t it, uint64_t *b) {                               \
        (void)x; return burst_gp(it, b, false, name##_alloc, name##_free);                                  \
    }                                                                                                       \
    NOINLINE uint64_t burstrnd_##name(const void *x, size_t it, uint64_t *b) {                              \
        (void)x; return burst_gp(it, b, true, name##_alloc, name##_free);                                   \
    }
GP_FUNCS(glibc)
GP_FUNCS(je)
GP_FUNCS(mi)
GP_FUNCS(tc)

/* ---- d) two threads: A allocates and writes, B frees, pointers pass over an SPSC ring ---- */
typedef struct xt_ctx {
    _Alignas(64) atomic_size_t tail;    /* pointers published by A */
    _Alignas(64) atomic_size_t head;    /* pointers taken by B */
    _Alignas(64) atomic_int ready, go, finished;
    _Alignas(64) void *slot[XT_RING];
    int kind;
    bool one;                  /* f): one object per hand-off; d): BURST */
    size_t total;
    uint64_t got;
    char err[256];
} xt_ctx;

/* A's side: allocate a burst, write each buffer, publish the pointers. */
ALWAYS_INLINE void xt_alloc(int kind, size_t i, void **v) {
    (void)i;
    switch (kind) {
    case C_BUFFET:
        if (buffet_pkt_alloc_bulk(B.cache, B.cls, (buffet_pkt **)v, BURST) != BURST) die("buffet_pkt_alloc_bulk failed");
        for (size_t j = 0; j < BURST; j++) write64((unsigned char *)buffet_pkt_data((buffet_pkt *)v[j]), j);
        break;
#if HAVE_DPDK
    case C_DPDK:
        if (rte_pktmbuf_alloc_bulk(D.mp, (struct rte_mbuf **)v, BURST) != 0) die("rte_pktmbuf_alloc_bulk failed");
        for (size_t j = 0; j < BURST; j++) write64(rte_pktmbuf_mtod((struct rte_mbuf *)v[j], unsigned char *), j);
        break;
#endif
#define XT_GP_ALLOC(k, name)                                                       \
    case k:                                                                        \
        for (size_t j = 0; j < BURST; j++) {                                       \
            v[j] = name##_alloc(PEER_SIZE);                                        \
            if (!v[j]) die("malloc failed");                                       \
            write64((unsigned char *)v[j] + HEADROOM, j);                          \
        }                                                                          \
        break;
    XT_GP_ALLOC(C_GLIBC, glibc)
    XT_GP_ALLOC(C_JE, je)
    XT_GP_ALLOC(C_MI, mi)
    XT_GP_ALLOC(C_TC, tc)
    default: die("bad kind");
    }
}
ALWAYS_INLINE void xt_free(int kind, buffet_pkt_cache *cb, buffet_pool_cache *fb, void **v) {
    (void)fb;
    switch (kind) {
    case C_BUFFET: buffet_pkt_free_bulk(cb, (buffet_pkt *const *)v, BURST); break;
#if HAVE_DPDK
    case C_DPDK: rte_pktmbuf_free_bulk((struct rte_mbuf **)v, BURST); break;
#endif
    case C_GLIBC: for (size_t j = 0; j < BURST; j++) glibc_free(v[j]); break;
    case C_JE: for (size_t j = 0; j < BURST; j++) je_free(v[j]); break;
    case C_MI: for (size_t j = 0; j < BURST; j++) mi_free(v[j]); break;
    case C_TC: for (size_t j = 0; j < BURST; j++) tc_free(v[j]); break;
    default: die("bad kind");
    }
}

/* ---- f) two threads, one object per hand-off: A allocates one, writes it, publishes its pointer
   alone; B takes one pointer at a time and frees it at once into its own cache ---- */
/* A's side: one object, its 64 bytes written where a packet's data starts. */
ALWAYS_INLINE void xt1_alloc(int kind, size_t i, void **v) {
    void *o;
    switch (kind) {
    case C_BUFFET: {
        buffet_pkt *p = buffet_pkt_alloc_class(B.cache, B.cls);
        if (!p) die("buffet_pkt_alloc_class failed");
        write64((unsigned char *)buffet_pkt_data(p), i);
        o = p;
        break;
    }
    case C_FPOOL:
        if (!(o = buffet_pool_get(F.cache))) die("buffet_pool_get failed");
        write64((unsigned char *)o + HEADROOM, i);
        break;
#if HAVE_DPDK
    case C_DPDK: {
        struct rte_mbuf *m = rte_pktmbuf_alloc(D.mp);
        if (!m) die("rte_pktmbuf_alloc failed");
        write64(rte_pktmbuf_mtod(m, unsigned char *), i);
        o = m;
        break;
    }
    case C_RAW:   /* where the data of a fresh mbuf starts, as in b)'s raw rows */
        if (rte_mempool_get(D.mp, &o) != 0) die("rte_mempool_get failed");
        write64((unsigned char *)o + sizeof(struct rte_mbuf) + RTE_PKTMBUF_HEADROOM, i);
        break;
#endif
    case C_GLIBC:
        if (!(o = glibc_alloc(PEER_SIZE))) die("malloc failed");
        write64((unsigned char *)o + HEADROOM, i);
        break;
    default: die("bad kind");
    }
    v[0] = o;
}
/* B's side: the object freed at once, into B's own cache. */
ALWAYS_INLINE void xt1_free(int kind, buffet_pkt_cache *cb, buffet_pool_cache *fb, void **v) {
    void *o = v[0];
    switch (kind) {
    case C_BUFFET: buffet_pkt_free(cb, (buffet_pkt *)o); break;
    case C_FPOOL: if (buffet_pool_put(fb, o) != BUFFET_OK) die("buffet_pool_put failed"); break;
#if HAVE_DPDK
    case C_DPDK: rte_pktmbuf_free((struct rte_mbuf *)o); break;
    case C_RAW: rte_mempool_put(D.mp, o); break;
#endif
    case C_GLIBC: glibc_free(o); break;
    default: die("bad kind");
    }
}

/* Reset x's counters and start thread B (fn) on the second CPU; returns once B is ready. */
static pthread_t xt_start(xt_ctx *x, void *(*fn)(void *)) {
    pthread_t b;
    pthread_attr_t attr;
    unsigned spins = 0;
    x->got = 0;
    atomic_store(&x->tail, 0);
    atomic_store(&x->head, 0);
    atomic_store(&x->ready, 0);
    atomic_store(&x->go, 0);
    atomic_store(&x->finished, 0);
    pthread_attr_init(&attr);
    if (cpu[1] >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu[1], &set);
        pthread_attr_setaffinity_np(&attr, sizeof set, &set);
    }
    if (pthread_create(&b, &attr, fn, x) != 0) die("pthread_create failed");
    pthread_attr_destroy(&attr);
    while (!atomic_load_explicit(&x->ready, memory_order_acquire)) backoff(&spins);
    return b;
}

/* Thread B's loop, for d) (n = BURST: pointers come a burst at a time) and f) (n = 1): take n
   pointers, free them at once (free_n), until all have come. */
ALWAYS_INLINE void xt_consume(xt_ctx *x, size_t n, buffet_pkt_cache *cb, buffet_pool_cache *fb,
                              void (*free_n)(int, buffet_pkt_cache *, buffet_pool_cache *, void **)) {
    unsigned spins = 0;
    size_t h = 0, t = 0, total = x->total;
    while (h < total) {
        void *v[BURST];
        spins = 0;
        while (t == h) {
            t = atomic_load_explicit(&x->tail, memory_order_acquire);
            if (t == h) backoff(&spins);
        }
        memcpy(v, &x->slot[h & (XT_RING - 1)], n * sizeof *v);   /* A publishes whole batches */
        h += n;
        atomic_store_explicit(&x->head, h, memory_order_release);
        free_n(x->kind, cb, fb, v);
    }
    x->got = h;
}

/* Thread A's loop and the run's timing, for d) and f) as above: allocate n objects (alloc_n),
   wait for room, publish their pointers; timed from the start signal until B has freed the
   last one. A is the calling thread (the EAL's main lcore for DPDK), B already started. */
ALWAYS_INLINE uint64_t xt_produce(xt_ctx *x, pthread_t b, size_t n, void (*alloc_n)(int, size_t, void **)) {
    const size_t total = x->total;
    size_t t = 0, h = 0;
    unsigned spins = 0;
    uint64_t t0 = now_ns();
    atomic_store_explicit(&x->go, 1, memory_order_release);
    while (t < total) {
        void *v[BURST];
        alloc_n(x->kind, t, v);
        spins = 0;
        while (t + n - h > XT_RING) {
            h = atomic_load_explicit(&x->head, memory_order_acquire);
            if (t + n - h > XT_RING) backoff(&spins);
        }
        memcpy(&x->slot[t & (XT_RING - 1)], v, n * sizeof *v);
        t += n;
        atomic_store_explicit(&x->tail, t, memory_order_release);
    }
    spins = 0;
    while (!atomic_load_explicit(&x->finished, memory_order_acquire)) backoff(&spins);
    uint64_t dt = now_ns() - t0;
    pthread_join(b, NULL);
    if (x->got != total) die("cross-thread run: objects lost");
    return dt;
}

/* Thread B of d) and f): its own caches; for DPDK, registered so that it has an lcore id and
   with it the mempool's per-lcore cache. Set up before the start signal, torn down after the
   finish. */
static void *xt_consumer(void *arg) {
    xt_ctx *x = (xt_ctx *)arg;
    buffet_pkt_cache *cb = NULL;
    buffet_pool_cache *fb = NULL;
    unsigned spins = 0;
    if (x->kind == C_BUFFET && buffet_pkt_cache_create(&cb, B.pool, BUFFET_CACHE) != BUFFET_OK)
        die("buffet_pkt_cache_create failed");
    if (x->kind == C_FPOOL && buffet_pool_cache_create(&fb, F.pool, F.cache_cap) != BUFFET_OK)
        die("buffet_pool_cache_create failed");
#if HAVE_DPDK
    if (x->kind == C_DPDK || x->kind == C_RAW) {
        if (rte_thread_register() != 0) die("rte_thread_register failed");
        if (rte_lcore_id() == LCORE_ID_ANY || !rte_mempool_default_cache(D.mp, rte_lcore_id()))
            die("DPDK: registered thread B has no mempool cache");
    }
#endif
    atomic_store_explicit(&x->ready, 1, memory_order_release);
    while (!atomic_load_explicit(&x->go, memory_order_acquire)) backoff(&spins);
    if (x->one) xt_consume(x, 1, cb, fb, xt1_free);
    else xt_consume(x, BURST, cb, fb, xt_free);
    atomic_store_explicit(&x->finished, 1, memory_order_release);
    buffet_pkt_cache_destroy(cb);
    buffet_pool_cache_destroy(fb);
#if HAVE_DPDK
    if (x->kind == C_DPDK || x->kind == C_RAW) rte_thread_unregister();
#endif
    return NULL;
}

/* One run of d): bursts of BURST, in ring slots BURST at a time. */
ALWAYS_INLINE uint64_t xt_run(const void *vx, size_t iters, uint64_t *bufs, int kind) {
    xt_ctx *x = (xt_ctx *)vx;
    x->kind = kind;
    x->one = false;
    x->total = (iters + BURST - 1) / BURST * BURST;
    *bufs = x->total;
    return xt_produce(x, xt_start(x, xt_consumer), BURST, xt_alloc);
}
NOINLINE uint64_t xt_buffet(const void *x, size_t it, uint64_t *b) { return xt_run(x, it, b, C_BUFFET); }
#if HAVE_DPDK
NOINLINE uint64_t xt_dpdk(const void *x, size_t it, uint64_t *b) { return xt_run(x, it, b, C_DPDK); }
#endif
NOINLINE uint64_t xt_glibc(const void *x, size_t it, uint64_t *b) { return xt_run(x, it, b, C_GLIBC); }
NOINLINE uint64_t xt_je(const void *x, size_t it, uint64_t *b) { return xt_run(x, it, b, C_JE); }
NOINLINE uint64_t xt_mi(const void *x, size_t it, uint64_t *b) { return xt_run(x, it, b, C_MI); }
NOINLINE uint64_t xt_tc(const void *x, size_t it, uint64_t *b) { return xt_run(x, it, b, C_TC); }

/* One run of f): one object per hand-off. */
ALWAYS_INLINE uint64_t xt1_run(const void *vx, size_t iters, uint64_t *bufs, int kind) {
    xt_ctx *x = (xt_ctx *)vx;
    x->kind = kind;
    x->one = true;
    x->total = iters;
    *bufs = iters;
    return xt_produce(x, xt_start(x, xt_consumer), 1, xt1_alloc);
}
NOINLINE uint64_t xt1_buffet(const void *x, size_t it, uint64_t *b) { return xt1_run(x, it, b, C_BUFFET); }
NOINLINE uint64_t xt1_fpool(const void *x, size_t it, uint64_t *b) { return xt1_run(x, it, b, C_FPOOL); }
#if HAVE_DPDK
NOINLINE uint64_t xt1_dpdk(const void *x, size_t it, uint64_t *b) { return xt1_run(x, it, b, C_DPDK); }
NOINLINE uint64_t xt1_raw(const void *x, size_t it, uint64_t *b) { return xt1_run(x, it, b, C_RAW); }
#endif
NOINLINE uint64_t xt1_glibc(const void *x, size_t it, uint64_t *b) { return xt1_run(x, it, b, C_GLIBC); }

/* ---- output ---- */
static void print_machine(void) {
    char pages[96];
    if (buffet_pkt_pool_get_stats(B.pool).huge_pages)
        snprintf(pages, sizeof pages, "explicit 2 MiB huge pages");
    else   /* no huge pages left: the regions were advised for THP; did the kernel give some? */
        snprintf(pages, sizeof pages, "THP-advised pages (this process has %ld KiB of AnonHugePages)",
                 proc_field("/proc/self/smaps_rollup", "AnonHugePages:"));
    char huge[64];
    snprintf(huge, sizeof huge, ", huge pages free %ld of %ld", meminfo("HugePages_Free:"), meminfo("HugePages_Total:"));
    bench_print_machine(huge);
    printf("buffet:   one pool, class 2048 only (+ its clone class), headroom %d, initial = max = %d,\n"
           "          caches of %d pointers (refill/spill half); pool regions on %s\n",
           HEADROOM, POOL_N, BUFFET_CACHE, pages);
#if HAVE_DPDK
    if (con[C_DPDK])
        printf("peers:    %-10s %-8s %s; EAL %s\n"
               "          %-10s %-8s pools of %d mbufs (cache %d, data room %d), clones from a %d-mbuf pool with no data room\n",
               "DPDK", rte_version() + strlen("DPDK "), D.pages, D.eal, "", "", POOL_N - 1, DPDK_CACHE,
               RTE_MBUF_DEFAULT_BUF_SIZE, POOL_N - 1);
    else
#endif
        printf("peers:    %-10s skipped: %s\n", "DPDK", cwhy[C_DPDK]);
    printf("          %-10s %-8s malloc, free (the process's malloc), %d B\n", "glibc", gnu_get_libc_version(), PEER_SIZE);
#define PEER(k, label, ver, how)                                                                  \
    if (con[k]) printf("          %-10s %-8s %s, %d B\n", label, ver, how, PEER_SIZE);            \
    else printf("          %-10s skipped: %s\n", label, cwhy[k]);
    PEER(C_JE, "jemalloc", P.ver_je, "libjemalloc.so.2: malloc, free")
    PEER(C_MI, "mimalloc", P.ver_mi, "libmimalloc.so.2: mi_malloc, mi_free")
    PEER(C_TC, "tcmalloc", P.ver_tc, "libtcmalloc_minimal.so.4: tc_malloc, tc_free")
#undef PEER
    bench_print_reexec(con[C_JE]);
    printf("method:   median of %d repetitions after a warm-up; contestants alternate within each\n"
           "          repetition; clock_gettime(CLOCK_MONOTONIC); ratio = peer / buffet (> 1: buffet faster);\n"
           "          single-thread work runs on CPU %d; buffet's implementation is in this file (one TU)\n",
           REPS, cpu[0]);
    bench_print_load();
}

/* What the goal lines need. */
static struct {
    bool a, b, d, e, f;
    result a_res[NC], b_fixed[NC], b_rand[NC], d_res[NC], f_res[NC];
    bool a_on[NC], b_on[NC], d_on[NC], f_on[NC];
    double mem_overhead, dpdk_mem_overhead;
} G;

static void print_header(void) { printf("   %-34s %9s %10s %12s\n", "contestant", "ns/buf", "Mbuf/s", "peer/buffet"); }
static void print_rows(const contestant *c, int n, const result *r) {
    for (int i = 0; i < n; i++)
        printf("   %-34s %9.2f %10.1f %11.2fx\n", c[i].name, r[i].med, 1e3 / r[i].med, r[i].med / r[0].med);
}

static void section_a(void) {
    printf("\na) one 2048-class packet: alloc, write 64 B of data, free (ns per buffer)\n");
    for (int w = 0; w < 2; w++) {
        contestant c[NC];
        int kind[NC], n = 0;
        c[n] = (contestant){ w ? "buffet alloc_class/append/free" : "buffet alloc_class/free", w ? append_buffet : single_buffet, NULL };
        kind[n++] = C_BUFFET;
#if HAVE_DPDK
        if (con[C_DPDK]) {
            c[n] = (contestant){ w ? "DPDK rte_pktmbuf_alloc/append/free" : "DPDK rte_pktmbuf_alloc/free",
                                 w ? append_dpdk : single_dpdk, NULL };
            kind[n++] = C_DPDK;
        }
#endif
        if (!w) {
            c[n] = (contestant){ "glibc malloc/free", single_glibc, NULL }; kind[n++] = C_GLIBC;
            if (con[C_JE]) { c[n] = (contestant){ "jemalloc malloc/free", single_je, NULL }; kind[n++] = C_JE; }
            if (con[C_MI]) { c[n] = (contestant){ "mimalloc mi_malloc/mi_free", single_mi, NULL }; kind[n++] = C_MI; }
            if (con[C_TC]) { c[n] = (contestant){ "tcmalloc tc_malloc/tc_free", single_tc, NULL }; kind[n++] = C_TC; }
        }
        result r[NC];
        bench_table = w ? "a) one packet: alloc, append 64 B, free" : "a) one packet: alloc, write 64 B, free";
        measure(c, n, r, TARGET_NS, 1024);
        if (w) printf("   the same, writing through the append API (which sets len and pkt_len too):\n");
        else print_header();
        print_rows(c, n, r);
        if (!w) {
            G.a = true;
            for (int i = 0; i < n; i++) { G.a_res[kind[i]] = r[i]; G.a_on[kind[i]] = true; }
        }
        fflush(stdout);
    }
    print_spread();
}

static void section_b(void) {
    printf("\nb) bursts: alloc_bulk n, write 64 B into each, free_bulk n (malloc-style peers: n mallocs, then n\n"
           "   frees); n = 32, or n drawn from 1..64 at random for every burst (mean %.1f). ns per buffer\n",
           burst_mean);
    contestant c[2][NC];
    int kind[NC], n = 0;
    for (int w = 0; w < 2; w++) {
        n = 0;
#define BURST_FN(name) (w ? burstrnd_##name : burst32_##name)
        c[w][n] = (contestant){ "buffet alloc_bulk/free_bulk", BURST_FN(buffet), NULL }; kind[n++] = C_BUFFET;
        c[w][n] = (contestant){ "buffet alloc/free_bulk_raw (raw)", BURST_FN(bufraw), NULL }; kind[n++] = C_BUFRAW;
#if HAVE_DPDK
        if (con[C_DPDK]) {
            c[w][n] = (contestant){ "DPDK rte_pktmbuf_alloc/free_bulk", BURST_FN(dpdk), NULL }; kind[n++] = C_DPDK;
            c[w][n] = (contestant){ "DPDK rte_mempool_get/put_bulk (raw)", BURST_FN(raw), NULL }; kind[n++] = C_RAW;
        }
#endif
        c[w][n] = (contestant){ "glibc malloc/free", BURST_FN(glibc), NULL }; kind[n++] = C_GLIBC;
        if (con[C_JE]) { c[w][n] = (contestant){ "jemalloc malloc/free", BURST_FN(je), NULL }; kind[n++] = C_JE; }
        if (con[C_MI]) { c[w][n] = (contestant){ "mimalloc mi_malloc/mi_free", BURST_FN(mi), NULL }; kind[n++] = C_MI; }
        if (con[C_TC]) { c[w][n] = (contestant){ "tcmalloc tc_malloc/tc_free", BURST_FN(tc), NULL }; kind[n++] = C_TC; }
#undef BURST_FN
    }
    result r[2][NC];
    bench_table = "b) bursts of 32: alloc_bulk, write 64 B, free_bulk (per buffer)";
    measure(c[0], n, r[0], TARGET_NS, 64);
    bench_table = "b) bursts of 1..64 at random (per buffer)";
    measure(c[1], n, r[1], TARGET_NS, 64);
    printf("   %-36s %25s   %25s\n", "", "burst 32", "burst 1..64 random");
    printf("   %-36s %8s %7s %9s   %8s %7s %9s\n", "contestant", "ns/buf", "Mbuf/s", "peer/buf.", "ns/buf", "Mbuf/s", "peer/buf.");
    for (int i = 0; i < n; i++) {
        printf("   %-36s %8.2f %7.1f %8.2fx   %8.2f %7.1f %8.2fx\n", c[0][i].name, r[0][i].med, 1e3 / r[0][i].med,
               r[0][i].med / r[0][0].med, r[1][i].med, 1e3 / r[1][i].med, r[1][i].med / r[1][0].med);
        G.b_fixed[kind[i]] = r[0][i];
        G.b_rand[kind[i]] = r[1][i];
        G.b_on[kind[i]] = true;
    }
    G.b = true;
    print_spread();
    fflush(stdout);
}

static void section_c(void) {
    printf("\nc) clone + free: a zero-copy clone of a 64-byte packet (own header and metadata, data shared),\n"
           "   metadata written, the clone freed (the original stays). ns per clone+free. The malloc-style\n"
           "   peers have no zero-copy clone (their alternative is a copy): not run.\n");
    contestant c[NC];
    int n = 0;
    c[n++] = (contestant){ "buffet_pkt_clone/free", clone_buffet, NULL };
#if HAVE_DPDK
    if (con[C_DPDK]) c[n++] = (contestant){ "DPDK rte_pktmbuf_clone/free", clone_dpdk, NULL };
#endif
    result r[NC];
    bench_table = "c) clone + free";
    measure(c, n, r, TARGET_NS, 1024);
    print_header();
    print_rows(c, n, r);
    print_spread();
    fflush(stdout);
}

static void section_d(void) {
    static xt_ctx x[NC];
#if HAVE_DPDK
    if (con[C_DPDK])
        snprintf(D.xt, sizeof D.xt, "DPDK: A is the EAL's main lcore; B calls rte_thread_register() (then has an lcore id and a mempool cache)");
#endif
    printf("\nd) 2 threads: A allocates bursts of 32 (buffet_pkt_alloc_bulk / rte_pktmbuf_alloc_bulk / 32 mallocs)\n"
           "   and writes 64 B into each, passes the pointers in batches of 32 over an SPSC ring (%d pointers) to\n"
           "   B, which frees them into its own cache (buffet_pkt_free_bulk on B's cache / rte_pktmbuf_free_bulk /\n"
           "   free on B). A runs on CPU %d, B on CPU %d (-1: not pinned).\n", XT_RING, cpu[0], cpu[1]);
    if (D.xt[0]) printf("   %s\n", D.xt);
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) printf("   warning: fewer than 2 CPUs: this measures time slicing\n");
    contestant c[NC];
    int kind[NC], n = 0;
    c[n] = (contestant){ "buffet", xt_buffet, &x[C_BUFFET] }; kind[n++] = C_BUFFET;
#if HAVE_DPDK
    if (con[C_DPDK]) { c[n] = (contestant){ "DPDK rte_pktmbuf", xt_dpdk, &x[C_DPDK] }; kind[n++] = C_DPDK; }
#endif
    c[n] = (contestant){ "glibc malloc/free", xt_glibc, &x[C_GLIBC] }; kind[n++] = C_GLIBC;
    if (con[C_JE]) { c[n] = (contestant){ "jemalloc malloc/free", xt_je, &x[C_JE] }; kind[n++] = C_JE; }
    if (con[C_MI]) { c[n] = (contestant){ "mimalloc mi_malloc/mi_free", xt_mi, &x[C_MI] }; kind[n++] = C_MI; }
    if (con[C_TC]) { c[n] = (contestant){ "tcmalloc tc_malloc/tc_free", xt_tc, &x[C_TC] }; kind[n++] = C_TC; }
    result r[NC];
    bench_table = "d) 2 threads: bursts of 32 allocated on one, freed on the other";
    measure(c, n, r, XT_TARGET_NS, (size_t)1 << 16);
    print_header();
    print_rows(c, n, r);
    for (int i = 0; i < n; i++) { G.d_res[kind[i]] = r[i]; G.d_on[kind[i]] = true; }
    G.d = true;
    print_spread();
    fflush(stdout);
}

static void section_f(void) {
    static xt_ctx x[NC];
#if HAVE_DPDK
    if (con[C_DPDK])
        snprintf(D.xt, sizeof D.xt, "DPDK: A is the EAL's main lcore; B calls rte_thread_register() "
                 "(then has an lcore id and a mempool cache)");
#endif
    printf("\nf) 2 threads, one object per hand-off: A allocates one (2048-class packet / %d-byte frame\n"
           "   pool object / mbuf / mempool object / malloc), writes 64 B into it and publishes its pointer\n"
           "   alone into an SPSC ring (%d pointers); B takes one pointer at a time and frees it at once\n"
           "   into its own cache (buffet_pkt_free / buffet_pool_put / rte_pktmbuf_free / rte_mempool_put /\n"
           "   free). A runs on CPU %d, B on CPU %d (-1: not pinned). Pools: buffet's packet pool and\n"
           "   DPDK's mbuf pool as in a) to d), the frame pool with initial = max = %d (one slab), caches\n"
           "   of %d; rte_mempool_get/put use the mbuf pool's objects raw. ns per object (peer/buffet:\n"
           "   against the packet pool's row)\n",
           PEER_SIZE, XT_RING, cpu[0], cpu[1], POOL_N, F.cache_cap);
    if (D.xt[0]) printf("   %s\n", D.xt);
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        printf("   warning: fewer than 2 CPUs: this measures time slicing\n");
    contestant c[NC];
    int kind[NC], n = 0;
    c[n] = (contestant){ "buffet packet pool", xt1_buffet, &x[C_BUFFET] }; kind[n++] = C_BUFFET;
    c[n] = (contestant){ "buffet frame object pool (raw)", xt1_fpool, &x[C_FPOOL] }; kind[n++] = C_FPOOL;
#if HAVE_DPDK
    if (con[C_DPDK]) {
        c[n] = (contestant){ "DPDK rte_pktmbuf_alloc/free", xt1_dpdk, &x[C_DPDK] }; kind[n++] = C_DPDK;
        c[n] = (contestant){ "DPDK rte_mempool_get/put (raw)", xt1_raw, &x[C_RAW] }; kind[n++] = C_RAW;
    }
#endif
    c[n] = (contestant){ "glibc malloc/free", xt1_glibc, &x[C_GLIBC] }; kind[n++] = C_GLIBC;
    result r[NC];
    bench_table = "f) 2 threads: one object per hand-off, allocated on one, freed on the other";
    measure(c, n, r, XT_TARGET_NS, (size_t)1 << 16);
    print_header();
    print_rows(c, n, r);
    for (int i = 0; i < n; i++) { G.f_res[kind[i]] = r[i]; G.f_on[kind[i]] = true; }
    G.f = true;
    print_spread();
    fflush(stdout);
}

/* A class's ring capacity (the smallest power of two >= max), read from the pool itself: the
   implementation is in this file. */
static size_t ring_capacity(const buffet_pkt_pool *p, unsigned k) { return (size_t)p->cls[k].ring.mask + 1; }

static void section_e(void) {
    printf("\ne) memory of the 2048 class: a pool of that class alone, initial = max = %d, headroom %d.\n"
           "   overhead = (stats.region_bytes + 8 B x the class ring's capacity (one slot per batch of buffers, read from the pool)\n"
           "               + sizeof(struct buffet_pkt_pool)) / (created x (headroom + 2048)) - 1\n", MEM_N, HEADROOM);
    for (int v = 0; v < 2; v++) {
        buffet_pkt_pool *p;
        buffet_pkt_pool_desc d;
        memset(&d, 0, sizeof d);
        d.name = "mem";
        d.class_sizes[0] = DATA_ROOM;
        d.initial = d.max = MEM_N;
        d.no_huge_pages = v == 1;
        if (buffet_pkt_pool_create(&p, &d) != BUFFET_OK) die("buffet_pkt_pool_create (memory) failed");
        buffet_pkt_stats st = buffet_pkt_pool_get_stats(p);
        const buffet_pkt_class_stats *k = &st.cls[0], *kc = &st.cls[st.nclasses];
        size_t ring = sizeof(void *) * ring_capacity(p, 0), clone_ring = sizeof(void *) * ring_capacity(p, st.nclasses);
        size_t total = st.region_bytes + ring + sizeof(struct buffet_pkt_pool);
        double useful = (double)k->created * (HEADROOM + DATA_ROOM);
        double ov = (double)total / useful - 1;
        printf("   %s: regions %zu B (%s pages), %zu created, stride %zu B (%zu B header + %d B headroom + %d B data%s),\n"
               "     ring %zu B (%zu slots for max %zu), pool struct %zu B: overhead %.2f%%\n"
               "     (per buffer %.2f%%, region rounding %.2f%%, ring %.2f%%, struct %.3f%%; the clone class's ring,\n"
               "     %zu B for its max of %zu clones, comes with the first clone: it would add %.2f%%)\n",
               v ? "no_huge_pages" : "default desc ", st.region_bytes, st.huge_pages ? "explicit 2 MiB" : v ? "4 KiB" : "THP-advised",
               k->created, k->stride, sizeof(buffet_pkt), HEADROOM, DATA_ROOM,
               k->stride > sizeof(buffet_pkt) + HEADROOM + DATA_ROOM ? " + colour line" : "",
               ring, ring_capacity(p, 0), k->max, sizeof(struct buffet_pkt_pool), ov * 100,
               ((double)k->stride / (HEADROOM + DATA_ROOM) - 1) * 100,
               (double)(st.region_bytes - k->created * k->stride) / useful * 100, (double)ring / useful * 100,
               (double)sizeof(struct buffet_pkt_pool) / useful * 100, clone_ring, kc->max, (double)clone_ring / useful * 100);
        if (v == 0) G.mem_overhead = ov;
        buffet_pkt_pool_destroy(p);
    }
    printf("   (a cache is another %zu B per thread, for every class)\n", sizeof(buffet_pkt_cache));
    G.e = true;
#if HAVE_DPDK
    if (con[C_DPDK]) {
        struct rte_mempool_objsz sz;
        uint32_t obj = rte_mempool_calc_obj_size(D.mp->elt_size, 0, &sz);
        size_t chunks = 0;
        struct rte_mempool_memhdr *h;
        STAILQ_FOREACH(h, &D.mp->mem_list, next) chunks += h->len;
        double per_obj = (double)chunks / D.mp->size;
        size_t hdr = D.mp->mz ? D.mp->mz->len : 0;
        unsigned n16 = MEM_N - 1;
        ssize_t ring16 = rte_ring_get_memsize(rte_align32pow2(n16 + 1));
        double total = n16 * per_obj + (double)(ring16 > 0 ? ring16 : 0) + (double)hdr;
        double ov = total / ((double)n16 * RTE_MBUF_DEFAULT_BUF_SIZE) - 1;
        printf("   DPDK: rte_mempool_calc_obj_size: %u B per mbuf (%u B object header + %u B element (%zu B rte_mbuf\n"
               "     + %u B data room) + %u B trailer) = %.2f%% over the data room; this run's pool holds %.0f B per\n"
               "     mbuf in its memory chunks (%s); a %u-mbuf pool: chunks + ring %zd B + pool header %zu B\n"
               "     (per-lcore caches for %d lcores included) = %.2f%% overhead\n",
               obj, sz.header_size, sz.elt_size, sizeof(struct rte_mbuf), RTE_MBUF_DEFAULT_BUF_SIZE, sz.trailer_size,
               ((double)obj / RTE_MBUF_DEFAULT_BUF_SIZE - 1) * 100, per_obj, D.pages, n16, ring16, hdr, RTE_MAX_LCORE,
               ov * 100);
        G.dpdk_mem_overhead = ov;
    }
#endif
    fflush(stdout);
}

static void print_goals(void) {
    printf("\n");
    if (fixed_iters) {
        printf("(BUFFET_BENCH_ITERS is set: no goal is judged)\n");
        return;
    }
    if (G.a) {
        if (G.a_on[C_DPDK]) {
            double r = G.a_res[C_DPDK].med / G.a_res[C_BUFFET].med;
            printf("goal: single alloc+free faster than DPDK rte_pktmbuf_alloc/free: %.2fx (%.2f vs %.2f ns): %s\n", r,
                   G.a_res[C_BUFFET].med, G.a_res[C_DPDK].med, r > 1.0 ? "met" : "not met");
        } else {
            printf("goal: single alloc+free faster than DPDK rte_pktmbuf_alloc/free: not measured (DPDK: %s)\n", cwhy[C_DPDK]);
        }
    }
    if (G.b) {
        double mps = 1e3 / G.b_fixed[C_BUFFET].med, mps_r = 1e3 / G.b_rand[C_BUFFET].med;
        if (G.b_on[C_DPDK]) {
            double r = G.b_fixed[C_DPDK].med / G.b_fixed[C_BUFFET].med, rr = G.b_rand[C_DPDK].med / G.b_rand[C_BUFFET].med;
            printf("goal: bursts at least as fast as DPDK rte_pktmbuf_alloc_bulk/free_bulk: burst 32 %.2fx, random 1..64 %.2fx: %s\n",
                   r, rr, r >= 1.0 && rr >= 1.0 ? "met" : "not met");
        } else {
            printf("goal: bursts at least as fast as DPDK's bulk calls: not measured (DPDK: %s)\n", cwhy[C_DPDK]);
        }
        printf("goal: bursts well beyond 100M buffers/s per core: burst 32 %.0f M/s, random 1..64 %.0f M/s: %s\n", mps, mps_r,
               mps > 100 && mps_r > 100 ? "met" : "not met");
        if (G.b_on[C_RAW] && G.b_on[C_BUFRAW]) {   /* issue 13: time ratios buffet / DPDK, lower is better */
            double r = G.b_fixed[C_BUFRAW].med / G.b_fixed[C_RAW].med, rr = G.b_rand[C_BUFRAW].med / G.b_rand[C_RAW].med;
            double h = G.b_fixed[C_BUFFET].med / G.b_fixed[C_DPDK].med, hr = G.b_rand[C_BUFFET].med / G.b_rand[C_DPDK].med;
            printf("goal: raw bulk <= 1.0x the time of DPDK rte_mempool_get/put_bulk: burst 32 %.2fx, random 1..64 %.2fx: %s\n",
                   r, rr, r <= 1.0 && rr <= 1.0 ? "met" : "not met");
            printf("goal: bulk alloc+free (headers reset) <= 0.6x the time of rte_pktmbuf_alloc_bulk/free_bulk: burst 32 "
                   "%.2fx, random 1..64 %.2fx: %s\n", h, hr, h <= 0.6 && hr <= 0.6 ? "met" : "not met");
        }
    }
    if (G.d) {
        if (G.d_on[C_DPDK]) {
            double r = G.d_res[C_DPDK].med / G.d_res[C_BUFFET].med;
            printf("goal: cross-thread throughput at or above DPDK's: %.1f vs %.1f M buffers/s (%.2fx): %s\n",
                   1e3 / G.d_res[C_BUFFET].med, 1e3 / G.d_res[C_DPDK].med, r, r >= 1.0 ? "met" : "not met");
        } else {
            printf("goal: cross-thread throughput at or above DPDK's: not measured (DPDK: %s)\n", cwhy[C_DPDK]);
        }
    }
    if (G.e) {
        char dpdk[64] = "DPDK not measured";
        if (G.dpdk_mem_overhead > 0) snprintf(dpdk, sizeof dpdk, "DPDK's %.2f%%", G.dpdk_mem_overhead * 100);
        printf("goal: memory overhead <= 3%% for the 2048 class: %.2f%% (%s): %s\n", G.mem_overhead * 100, dpdk,
               G.mem_overhead <= 0.03 ? "met" : "not met");
    }
    if (G.f) {   /* issue 13: throughput ratios, the peer's time over buffet's: at or above 1 is met */
        if (G.f_on[C_DPDK] && G.f_on[C_RAW]) {
            double r = G.f_res[C_DPDK].med / G.f_res[C_BUFFET].med;
            double rf = G.f_res[C_RAW].med / G.f_res[C_FPOOL].med;
            printf("goal: cross-thread throughput, one object per hand-off, >= 1.0x DPDK: packet pool vs "
                   "rte_pktmbuf %.2fx, frame pool vs rte_mempool %.2fx: %s\n", r, rf,
                   r >= 1.0 && rf >= 1.0 ? "met" : "not met");
        } else {
            printf("goal: cross-thread throughput, one object per hand-off, >= 1.0x DPDK: not measured "
                   "(DPDK: %s)\n", cwhy[C_DPDK]);
        }
    }
}

int main(int argc, char **argv) {
    (void)argc;
    load_peers(argv);   /* may re-execute the program: before any output */
    const char *only = getenv("BUFFET_BENCH_ONLY");
    bench_read_iters();
    uint64_t start = now_ns();
    bench_pick_cpus(cpu);
    dpdk_setup(argv[0]);   /* the EAL pins this thread to CPU A (-l) */
    if (!con[C_DPDK]) bench_pin_self(cpu[0], NULL);
    buffet_setup();
    frame_pool_setup();
    for (size_t i = 0; i < NBURSTS; i++) {
        burst_len[i] = (uint8_t)(1 + rnd() % MAX_BURST);
        burst_mean += burst_len[i] / (double)NBURSTS;
    }
    print_machine();
    bench_print_iters();
    if (!only || strchr(only, 'a')) section_a();
    if (!only || strchr(only, 'b')) section_b();
    if (!only || strchr(only, 'c')) section_c();
    if (!only || strchr(only, 'd')) section_d();
    if (!only || strchr(only, 'e')) section_e();
    if (!only || strchr(only, 'f')) section_f();
    print_goals();

    buffet_pkt_free(B.cache, B.orig);
    buffet_pkt_free(B.cache, B.orig2);
    buffet_pkt_cache_destroy(B.cache);
    buffet_pkt_stats st = buffet_pkt_pool_get_stats(B.pool);
    for (unsigned k = 0; k <= st.nclasses; k++)
        if (st.cls[k].in_use) die("buffet: buffers not back at the end");
    printf("\n(buffet pool at the end: %llu allocations of the 2048 class, cache hit rate %.4f; total run %.1f s)\n",
           (unsigned long long)st.cls[0].allocs, st.cls[0].cache_hit_rate, (double)(now_ns() - start) / 1e9);
    buffet_pkt_pool_destroy(B.pool);
    buffet_pool_cache_destroy(F.cache);
    buffet_pool_stats fs = buffet_pool_get_stats(F.pool);
    if (fs.in_store != fs.created || fs.double_puts || fs.foreign_puts)
        die("buffet: frame pool objects not back at the end");
    buffet_pool_destroy(F.pool);
    dpdk_teardown();
    return 0;
}
