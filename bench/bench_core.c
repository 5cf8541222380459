// count-iters: 200
// link:
/* bench_core.c - buffet.h against the peers a C programmer would otherwise use, side by side in
   one process run:
     a) the heap allocator (buffet_heap() and a zero allocator) vs glibc malloc/free
     b) the debug allocator vs glibc malloc/free (a checking tool: expect it to be slower)
     c) a zero-copy chain exported with buffet_chain_iovec + writev vs memcpy into one buffer + write
     d) growing and shrinking a block: buffet_realloc over the heap vs realloc(3)
   Every number is the median of REPS repetitions after a warm-up; within a repetition the
   contestants alternate (and swap order every other repetition). Ratios are peer / buffet:
   above 1 means buffet is faster.
   Build: gcc -std=c11 -O2 -pthread bench/bench_core.c -o bench_core */
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"   /* first: it defines _GNU_SOURCE for the headers below */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#define BENCH_NAME "bench_core"
#define REPS 21                 /* timed repetitions per contestant (odd: a true median) */
#define TARGET_NS 8000000.0     /* each timed repetition runs about this long */
#define MAX_CONTESTANTS 3
#define LIVE 1000               /* allocations live at once in the "many live" workloads */
#define PERMS 16                /* distinct random free orders, cycled */
#include "bench.h"              /* the harness: now_ns, escape, rnd, contestant, measure, ... */

/* ---- a) and b): allocators ---- */
typedef struct alloc_ctx {
    bool use_malloc;            /* else the buffet allocator a */
    buffet_allocator a;
    size_t size;                /* pair workloads */
    size_t *sizes;              /* many-live workloads: LIVE sizes */
    uint16_t (*perm)[LIVE];     /* PERMS random free orders */
    void **ptrs;
} alloc_ctx;

static inline void touch(unsigned char *p, size_t size) {   /* write every cache line */
    for (size_t o = 0; o < size; o += 64) p[o] = (unsigned char)o;
    p[size - 1] = 1;
    escape(p);
}

static uint64_t run_pairs(void *vctx, size_t iters) {
    alloc_ctx *x = (alloc_ctx *)vctx;
    size_t size = x->size;
    uint64_t t0 = now_ns();
    if (x->use_malloc) {
        for (size_t i = 0; i < iters; i++) {
            unsigned char *p = (unsigned char *)malloc(size);
            if (!p) die("malloc failed");
            touch(p, size); free(p);
        }
    } else {
        for (size_t i = 0; i < iters; i++) {
            unsigned char *p = (unsigned char *)BUFFET_ALLOC(x->a, size);
            if (!p) die("buffet_alloc failed");
            touch(p, size); BUFFET_FREE(x->a, p, size);
        }
    }
    return now_ns() - t0;
}

static uint64_t run_live(void *vctx, size_t iters) {
    alloc_ctx *x = (alloc_ctx *)vctx;
    uint64_t t0 = now_ns();
    for (size_t r = 0; r < iters; r++) {
        const uint16_t *perm = x->perm[r % PERMS];
        if (x->use_malloc) {
            for (size_t i = 0; i < LIVE; i++) {
                unsigned char *p = (unsigned char *)malloc(x->sizes[i]);
                if (!p) die("malloc failed");
                touch(p, x->sizes[i]); x->ptrs[i] = p;
            }
            for (size_t i = 0; i < LIVE; i++) free(x->ptrs[perm[i]]);
        } else {
            for (size_t i = 0; i < LIVE; i++) {
                unsigned char *p = (unsigned char *)BUFFET_ALLOC(x->a, x->sizes[i]);
                if (!p) die("buffet_alloc failed");
                touch(p, x->sizes[i]); x->ptrs[i] = p;
            }
            for (size_t i = 0; i < LIVE; i++) BUFFET_FREE(x->a, x->ptrs[perm[i]], x->sizes[perm[i]]);
        }
    }
    return now_ns() - t0;
}

static const size_t pair_sizes[] = { 16, 64, 256, 1024, 4096 };
#define NPAIR (sizeof pair_sizes / sizeof pair_sizes[0])

/* One row of workload w (0..NPAIR-1: pairs; NPAIR: 1000 live x 64 B; NPAIR+1: 1000 live, mixed). */
static void alloc_row(int w, buffet_allocator *as, const char **names, int n, double *out,
                      size_t *fixed_sizes, size_t *mixed_sizes, uint16_t (*perm)[LIVE], void **ptrs) {
    alloc_ctx x[MAX_CONTESTANTS];
    contestant c[MAX_CONTESTANTS];
    for (int i = 0; i < n; i++) {
        memset(&x[i], 0, sizeof x[i]);
        x[i].use_malloc = (i == 0);
        if (i) x[i].a = as[i - 1];
        x[i].size = w < (int)NPAIR ? pair_sizes[w] : 0;
        x[i].sizes = w == (int)NPAIR ? fixed_sizes : mixed_sizes;
        x[i].perm = perm; x[i].ptrs = ptrs;
        c[i].name = names[i]; c[i].ctx = &x[i];
        c[i].run = w < (int)NPAIR ? run_pairs : run_live;
        c[i].ops_per_iter = w < (int)NPAIR ? 1.0 : (double)LIVE;
    }
    measure(c, n, out, TARGET_NS, 1);
}

static const char *alloc_row_name(int w, char *tmp, size_t cap) {
    if (w < (int)NPAIR) snprintf(tmp, cap, "alloc+touch+free %4zu B", pair_sizes[w]);
    else if (w == (int)NPAIR) snprintf(tmp, cap, "1000 live 64 B, rnd free");
    else snprintf(tmp, cap, "1000 live 16-4096 B, rnd");
    return tmp;
}

/* ---- c) chains ---- */
typedef struct chain_ctx {
    bool use_chain;             /* else memcpy into flat + write */
    int fd;                     /* -1: no system call (build/copy cost only) */
    size_t n, piece, total;
    buffet_buf **bufs;
    buffet_chain chain;
    struct iovec *iov;
    unsigned char *flat;
} chain_ctx;

static void write_all(int fd, const void *p, size_t len) {
    const unsigned char *b = (const unsigned char *)p;
    while (len) {
        ssize_t w = write(fd, b, len);
        if (w < 0) { if (errno == EINTR) continue; die("write failed"); }
        b += w; len -= (size_t)w;
    }
}
static void writev_all(int fd, struct iovec *iov, int cnt, size_t len) {
    while (len) {
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0) { if (errno == EINTR) continue; die("writev failed"); }
        len -= (size_t)w;
        size_t left = (size_t)w;   /* partial write: skip what went out */
        while (cnt && left >= iov->iov_len) { left -= iov->iov_len; iov++; cnt--; }
        if (cnt) { iov->iov_base = (char *)iov->iov_base + left; iov->iov_len -= left; }
    }
}

static uint64_t run_chain(void *vctx, size_t iters) {
    chain_ctx *x = (chain_ctx *)vctx;
    uint64_t t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        if (x->use_chain) {
            for (size_t i = 0; i < x->n; i++)
                if (buffet_chain_append(&x->chain, x->bufs[i], 0, x->piece) != BUFFET_OK) die("chain_append failed");
            size_t cnt = buffet_chain_iovec(&x->chain, 0, SIZE_MAX, x->iov, x->n);
            if (cnt != x->n) die("chain_iovec: unexpected count");
            escape(x->iov);
            if (x->fd >= 0) writev_all(x->fd, x->iov, (int)cnt, x->total);
            if (buffet_chain_consume(&x->chain, x->total) != BUFFET_OK) die("chain_consume failed");
        } else {
            unsigned char *o = x->flat;
            for (size_t i = 0; i < x->n; i++) { memcpy(o, x->bufs[i]->data, x->piece); o += x->piece; }
            escape(x->flat);
            if (x->fd >= 0) write_all(x->fd, x->flat, x->total);
        }
    }
    return now_ns() - t0;
}

static volatile size_t drained;
static void *drain(void *arg) {
    int fd = *(int *)arg;
    static unsigned char sink[1 << 18];
    size_t total = 0;
    for (;;) {
        ssize_t r = read(fd, sink, sizeof sink);
        if (r > 0) total += (size_t)r;
        else if (r == 0 || errno != EINTR) break;
    }
    drained = total;
    return NULL;
}

/* ---- d) growth ---- */
typedef struct grow_ctx {
    bool use_libc;              /* realloc(3); else buffet_realloc over the heap */
    int shape;                  /* 0: +4 KiB steps to 8 MiB; 1: x1.5 steps to 256 MiB; 2: 1 MiB then 16 B */
} grow_ctx;

static uint64_t run_grow(void *vctx, size_t iters) {
    grow_ctx *x = (grow_ctx *)vctx;
    buffet_allocator h = buffet_heap();
    uint64_t t0 = now_ns();
    for (size_t it = 0; it < iters; it++) {
        size_t size = x->shape == 2 ? (size_t)1 << 20 : 4096, limit = x->shape == 0 ? (size_t)8 << 20 : (size_t)256 << 20;
        unsigned char *p = (unsigned char *)(x->use_libc ? malloc(size) : buffet_alloc(h, size, 16, BUFFET_SITE));
        if (!p) die("allocation failed");
        p[size - 1] = 1;
        if (x->shape == 2) {
            unsigned char *q = (unsigned char *)(x->use_libc ? realloc(p, 16) : buffet_realloc(h, p, size, 16, 16, BUFFET_SITE));
            if (!q) die("shrink failed");
            p = q;
            size = 16;
        }
        while (x->shape != 2 && size < limit) {
            size_t next = x->shape == 0 ? size + 4096 : size + size / 2;
            unsigned char *q = (unsigned char *)(x->use_libc ? realloc(p, next) : buffet_realloc(h, p, size, next, 16, BUFFET_SITE));
            if (!q) die("growth failed");
            p = q;
            size = next;
            p[size - 1] = 1;   /* the new end is written, as a growing buffer's would be */
        }
        escape(p);
        if (x->use_libc) free(p);
        else buffet_free(h, p, size, 16, BUFFET_SITE);
    }
    return now_ns() - t0;
}

static void print_machine(void) {
    bench_print_machine("");
    printf("method:   median of %d repetitions of ~%.0f ms after a warm-up; contestants alternate\n"
           "          within each repetition; ratio = peer / buffet (> 1: buffet faster)\n",
           REPS, TARGET_NS / 1e6);
}

int main(void) {
    uint64_t start = now_ns();
    static char table[160];   /* bench_table: the row being measured, for make bench-count */
    bench_read_iters();
    print_machine();
    bench_print_iters();

    /* shared inputs of the allocator workloads */
    static size_t fixed_sizes[LIVE], mixed_sizes[LIVE];
    static uint16_t perm[PERMS][LIVE];
    static void *ptrs[LIVE];
    for (size_t i = 0; i < LIVE; i++) { fixed_sizes[i] = 64; mixed_sizes[i] = pair_sizes[rnd() % NPAIR]; }
    for (int p = 0; p < PERMS; p++) {
        for (size_t i = 0; i < LIVE; i++) perm[p][i] = (uint16_t)i;
        for (size_t i = LIVE - 1; i > 0; i--) {
            size_t j = (size_t)(rnd() % (i + 1)); uint16_t t = perm[p][i]; perm[p][i] = perm[p][j]; perm[p][j] = t;
        }
    }
    char tmp[64];
    double r[MAX_CONTESTANTS];

    printf("\na) heap allocator vs glibc malloc/free (ns per alloc+free; every cache line written)\n");
    printf("%-27s %9s %11s %10s %12s %12s\n", "workload", "malloc", "buffet_heap", "zero-alloc",
           "malloc/heap", "malloc/zero");
    buffet_allocator heap_as[2] = { buffet_heap(), { NULL, NULL } };
    const char *heap_names[3] = { "malloc", "buffet_heap", "zero" };
    for (int w = 0; w < (int)NPAIR + 2; w++) {
        snprintf(table, sizeof table, "a) heap vs malloc: %s", alloc_row_name(w, tmp, sizeof tmp));
        bench_table = table;
        alloc_row(w, heap_as, heap_names, 3, r, fixed_sizes, mixed_sizes, perm, ptrs);
        printf("%-27s %9.1f %11.1f %10.1f %11.2fx %11.2fx\n", alloc_row_name(w, tmp, sizeof tmp),
               r[0], r[1], r[2], r[0] / r[1], r[0] / r[2]);
        fflush(stdout);
    }

    printf("\nb) debug allocator (defaults: 16 B guards, 64-block quarantine) vs glibc malloc/free\n");
    printf("%-27s %9s %11s %12s\n", "workload", "malloc", "debug", "malloc/debug");
    buffet_debug *dbg;
    if (buffet_debug_create(&dbg, NULL) != BUFFET_OK) die("buffet_debug_create failed");
    buffet_allocator dbg_as[1] = { buffet_debug_allocator(dbg) };
    const char *dbg_names[2] = { "malloc", "debug" };
    for (int w = 0; w < (int)NPAIR + 2; w++) {
        snprintf(table, sizeof table, "b) debug vs malloc: %s", alloc_row_name(w, tmp, sizeof tmp));
        bench_table = table;
        alloc_row(w, dbg_as, dbg_names, 2, r, fixed_sizes, mixed_sizes, perm, ptrs);
        printf("%-27s %9.1f %11.1f %11.3fx\n", alloc_row_name(w, tmp, sizeof tmp), r[0], r[1], r[0] / r[1]);
        fflush(stdout);
    }
    buffet_debug_stats st = buffet_debug_get_stats(dbg);
    size_t leaks = buffet_debug_report_leaks(dbg, NULL);   /* NULL: just count */
    if (leaks || st.double_frees || st.foreign_frees || st.mismatched_frees || st.corruptions)
        printf("!! debug allocator found problems: %zu leaks, %zu errors\n", leaks,
               st.double_frees + st.foreign_frees + st.mismatched_frees + st.corruptions);
    buffet_debug_destroy(dbg);

    printf("\nc) message of N slices: chain_append (refcount, no copy) + chain_iovec + writev\n"
           "   vs memcpy into one buffer + write (ns per message; chain reset by consume)\n");
    printf("%-22s %-10s %10s %10s %11s\n", "message", "sink", "chain", "memcpy", "copy/chain");
    static const struct { size_t n, piece; } shapes[] = { { 16, 256 }, { 64, 1500 }, { 8, 65536 } };
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0) die("open /dev/null failed");
    int pfd[2];
    if (pipe(pfd) != 0) die("pipe failed");
    fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20);   /* best effort: fewer wake-ups of the reader */
    pthread_t reader;
    if (pthread_create(&reader, NULL, drain, &pfd[0]) != 0) die("pthread_create failed");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s].n, piece = shapes[s].piece, total = n * piece;
        buffet_buf **bufs = (buffet_buf **)calloc(n, sizeof *bufs);
        struct iovec *iov = (struct iovec *)calloc(n, sizeof *iov);
        unsigned char *flat = (unsigned char *)malloc(total);
        if (!bufs || !iov || !flat) die("out of memory");
        for (size_t i = 0; i < n; i++) {
            buffet_buf_desc d = { 0 };
            d.size = piece;
            if (buffet_buf_create(&bufs[i], &d) != BUFFET_OK) die("buffet_buf_create failed");
            if (buffet_buf_fill(bufs[i], 0, piece, (uint8_t)i) != BUFFET_OK) die("buffet_buf_fill failed");
        }
        memset(flat, 0, total);
        static const char *sink_names[3] = { "none", "/dev/null", "pipe" };
        int fds[3] = { -1, devnull, pfd[1] };
        for (int k = 0; k < 3; k++) {
            chain_ctx x[2];
            contestant c[2];
            for (int i = 0; i < 2; i++) {
                memset(&x[i], 0, sizeof x[i]);
                x[i].use_chain = (i == 0); x[i].fd = fds[k];
                x[i].n = n; x[i].piece = piece; x[i].total = total;
                x[i].bufs = bufs; x[i].iov = iov; x[i].flat = flat;
                buffet_chain_init(&x[i].chain, buffet_heap());
                c[i].name = i ? "memcpy" : "chain"; c[i].run = run_chain; c[i].ctx = &x[i];
                c[i].ops_per_iter = 1.0;
            }
            snprintf(tmp, sizeof tmp, "%3zu x %5zu B = %zu KiB", n, piece, total / 1024);
            snprintf(table, sizeof table, "c) chain vs memcpy, to %s: %s", sink_names[k], tmp);
            bench_table = table;
            measure(c, 2, r, TARGET_NS, 1);
            if (buffet_chain_len(&x[0].chain) != 0) die("chain not empty after consume");
            buffet_chain_deinit(&x[0].chain);
            printf("%-22s %-10s %10.0f %10.0f %10.2fx\n", tmp, sink_names[k], r[0], r[1], r[1] / r[0]);
            fflush(stdout);
        }
        for (size_t i = 0; i < n; i++) {
            if (buffet_buf_refcount(bufs[i]) != 1) die("a slice reference leaked");
            buffet_buf_unref(bufs[i]);
        }
        free(bufs); free(iov); free(flat);
    }
    close(pfd[1]);
    pthread_join(reader, NULL);
    close(pfd[0]); close(devnull);

    printf("\nd) resizing a block: buffet_realloc over the heap vs realloc(3) (ms per whole sequence)\n");
    printf("%-34s %10s %10s %14s\n", "sequence", "realloc", "buffet", "realloc/buffet");
    static const char *grow_names[3] = { "grow +4 KiB steps to 8 MiB", "grow x1.5 steps to 256 MiB", "1 MiB, shrink to 16 B" };
    /* a whole sequence per iteration: page faults and mremap, not instructions, are its cost */
    for (int shape = 0; shape < 3 && !fixed_iters; shape++) {
        grow_ctx gx[2];
        contestant c[2];
        for (int i = 0; i < 2; i++) {
            gx[i].use_libc = (i == 0);
            gx[i].shape = shape;
            c[i].name = i ? "buffet_realloc" : "realloc"; c[i].run = run_grow; c[i].ctx = &gx[i]; c[i].ops_per_iter = 1.0;
        }
        measure(c, 2, r, TARGET_NS, 1);
        printf("%-34s %10.3f %10.3f %13.2fx\n", grow_names[shape], r[0] / 1e6, r[1] / 1e6, r[0] / r[1]);
        fflush(stdout);
    }
    printf("\n(pipe reader drained %.1f MiB; total run %.1f s)\n", (double)drained / 1048576.0,
           (double)(now_ns() - start) / 1e9);
    return 0;
}
