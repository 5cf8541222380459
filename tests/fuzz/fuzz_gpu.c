/* fuzz_gpu.c - libFuzzer target for buffet_gpu.h's suballocator. The input picks a vblock (size,
   min_align, max_allocations, a bookkeeping allocator that fails now and then) and a ring (size,
   min_align), then a sequence of operations: vblock alloc (sizes 0, small, near 2^64; alignments
   0, 3, small, huge), free, get, reset, statistics; misuse: double free, a handle from before a
   reset, another block's handle, garbage handles; ring alloc, mark, release in order, out of
   order, twice, another ring's mark, garbage marks, reset. A plain model owns every byte of both
   (which allocation holds it), the live handles and the outstanding marks, and computes the
   result every call must return; after every step the counters are compared, and every 16 steps
   (every step with FZ_TRACE set) buffet_gpu_vblock_check must pass and the free ranges must be
   the model's maximal free runs (coalesced, every byte accounted for). A refusal as full must be honest: no
   free run as large as the request plus its worst padding and TLSF's rounding. At the end both
   are torn down, and the debug allocator under the bookkeeping must hold nothing.

   Build (libFuzzer):  clang -x c -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -I. -Itests/fuzz
                       tests/fuzz/fuzz_gpu.c -o fuzz_gpu
   Replay (any compiler, C or C++): add -DBUFFET_FUZZ_MAIN and give files or folders as arguments. */
#define BUFFET_IMPLEMENTATION
#include "../../buffet_gpu.h"
#include "fuzz.h"

#define FZ_LIVE 256
#define FZ_STALE 16
#define FZ_STEPS 400
#define FZ_RING_LIVE 512

typedef struct fz_va { buffet_gpu_valloc h; uint64_t off, size; } fz_va;
typedef struct fz_ra { uint64_t off, size, seq; } fz_ra;   /* seq: the next mark to be taken when allocated */

typedef struct fz {
    fz_in in;
    buffet_debug *dbg;
    buffet_failing fail;
    buffet_gpu_vblock *b, *other;
    buffet_gpu_valloc other_h;
    uint64_t size, min_align;
    uint32_t max_allocs;
    unsigned char *own;          /* byte of the block: 1 when a live allocation holds it */
    fz_va live[FZ_LIVE];
    unsigned n;
    uint64_t bytes;
    buffet_gpu_valloc stale[FZ_STALE];   /* freed or reset handles */
    unsigned nstale;
    uint64_t failed, double_frees, foreign_frees;
    unsigned exhausted_scans;

    buffet_gpu_ring ring, ring2;
    uint64_t rsize, rmin;
    unsigned char *rown;
    fz_ra rl[FZ_RING_LIVE];
    unsigned rn;
    buffet_gpu_ring_mark marks[BUFFET_GPU_RING_MARKS];
    unsigned nmarks;
    uint64_t next_seq;           /* sequence of the next mark taken (1-based, as the ring counts) */
    buffet_gpu_ring_mark released[FZ_STALE];
    unsigned nreleased;
    buffet_gpu_ring_mark mark2;
    bool trace;                  /* FZ_TRACE set: each step's operation to stderr, every check every step */
} fz;

static uint64_t fz_round(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* Maximal runs of free bytes in own[0..size): how many, the longest and their sum. */
static void fz_runs(const unsigned char *own, uint64_t size, uint64_t *count, uint64_t *longest, uint64_t *sum) {
    uint64_t i = 0;
    *count = *longest = *sum = 0;
    while (i < size) {
        const unsigned char *p = (const unsigned char *)memchr(own + i, 0, (size_t)(size - i));
        const unsigned char *q;
        uint64_t start, len;
        if (!p) break;
        start = (uint64_t)(p - own);
        q = (const unsigned char *)memchr(p, 1, (size_t)(size - start));
        len = (q ? (uint64_t)(q - own) : size) - start;
        (*count)++;
        *sum += len;
        if (len > *longest) *longest = len;
        i = start + len;
    }
}

static void fz_stale_add(fz *S, buffet_gpu_valloc h) { S->stale[S->nstale++ % FZ_STALE] = h; }

/* The counters every step; every invariant (check) and the free runs now and then: both walk
   the whole block. */
static void fz_compare(fz *S, bool full) {
    buffet_gpu_vblock_stats st = buffet_gpu_vblock_get_stats(S->b);
    FZ_CHECK(st.allocations == S->n && st.allocated_bytes == S->bytes && st.free_bytes == S->size - S->bytes);
    FZ_CHECK(st.failed_allocs == S->failed && st.double_frees == S->double_frees && st.foreign_frees == S->foreign_frees);
    if (full) {
        uint64_t count, longest, sum;
        FZ_CHECK(buffet_gpu_vblock_check(S->b) == BUFFET_OK);
        fz_runs(S->own, S->size, &count, &longest, &sum);
        FZ_CHECK(count == st.free_ranges && longest == st.largest_free && sum == st.free_bytes);
    }
}

/* An alignment: mostly small powers of two, sometimes 0, 3, huge or all ones. */
static uint64_t fz_align(fz *S) {
    uint8_t k = fz_u8(&S->in);
    switch (k >> 5) {
    case 0: return 0;
    case 1: return k & 1 ? 3 : UINT64_MAX;
    case 2: return (uint64_t)1 << (k & 63);
    default: return (uint64_t)1 << (k % 13);
    }
}

/* A request size: 0, small, around the block's size, or near 2^64. */
static uint64_t fz_req(fz *S, uint64_t around) {
    uint8_t k = fz_u8(&S->in);
    switch (k & 7) {
    case 0: return 0;
    case 1: return UINT64_MAX - (k >> 3);
    case 2: return around + (uint64_t)(k >> 3) - 16;
    case 3: return 1 + fz_u16(&S->in) % 4096;
    default: return 1 + fz_u8(&S->in) % 512;
    }
}

static void op_alloc(fz *S) {
    uint64_t size = fz_req(S, S->size), align = fz_align(S), off = 7, a, s = 0;
    buffet_gpu_valloc h = 7;
    buffet_result want = BUFFET_OK, r;
    if (size == 0 || align == 0 || (align & (align - 1))) want = BUFFET_ERR_INVALID;
    else if (size > UINT64_MAX - (S->min_align - 1)) want = BUFFET_ERR_OVERFLOW;
    else if ((s = fz_round(size, S->min_align)) > S->size) want = BUFFET_ERR_TOO_LARGE;
    else if (S->n >= S->max_allocs) want = BUFFET_ERR_EXHAUSTED;
    if (S->n == FZ_LIVE && want == BUFFET_OK) return;   /* the model is full: not a case to test */
    r = buffet_gpu_vblock_alloc(S->b, size, align, &off, &h);
    if (want != BUFFET_OK) {
        FZ_CHECK(r == want && off == 7 && h == 7);
        S->failed++;
        return;
    }
    if (r == BUFFET_ERR_NOMEM) {   /* the bookkeeping refused to grow: nothing changed */
        FZ_CHECK(S->fail.failures > 0 && off == 7);
        S->failed++;
        return;
    }
    a = align > S->min_align ? align : S->min_align;
    if (r == BUFFET_ERR_EXHAUSTED) {
        uint64_t count, longest, sum, need = s + (a > S->min_align ? a - S->min_align : 0);
        S->failed++;
        if (S->exhausted_scans++ >= 16) return;   /* each scan reads the whole block: a few suffice */
        fz_runs(S->own, S->size, &count, &longest, &sum);
        /* TLSF's good fit rounds the request up to its class's top: under 1/32 more */
        FZ_CHECK(need > S->size || longest < need + need / 32 + 1);
        return;
    }
    FZ_CHECK(r == BUFFET_OK && h != 0);
    FZ_CHECK(off % a == 0 && off <= S->size && s <= S->size - off);
    FZ_CHECK(memchr(S->own + off, 1, (size_t)s) == NULL);   /* no overlap */
    memset(S->own + off, 1, (size_t)s);
    S->live[S->n].h = h;
    S->live[S->n].off = off;
    S->live[S->n].size = s;
    S->n++;
    S->bytes += s;
}

static void op_free(fz *S) {
    unsigned k;
    uint64_t o, sz;
    if (!S->n) return;
    k = fz_u8(&S->in) % S->n;
    FZ_CHECK(buffet_gpu_vblock_get(S->b, S->live[k].h, &o, &sz) == BUFFET_OK && o == S->live[k].off && sz == S->live[k].size);
    FZ_CHECK(buffet_gpu_vblock_free(S->b, S->live[k].h) == BUFFET_OK);
    memset(S->own + S->live[k].off, 0, (size_t)S->live[k].size);
    S->bytes -= S->live[k].size;
    fz_stale_add(S, S->live[k].h);
    S->live[k] = S->live[--S->n];
}

static void op_misuse(fz *S) {
    uint8_t k = fz_u8(&S->in);
    buffet_gpu_valloc g;
    unsigned i;
    switch (k % 4) {
    case 0:   /* a freed handle (or one from before a reset), whose slot may hold a new allocation */
        if (!S->nstale) return;
        g = S->stale[fz_u8(&S->in) % (S->nstale < FZ_STALE ? S->nstale : FZ_STALE)];
        FZ_CHECK(buffet_gpu_vblock_free(S->b, g) == BUFFET_ERR_DOUBLE_FREE);
        FZ_CHECK(buffet_gpu_vblock_get(S->b, g, NULL, NULL) == BUFFET_ERR_DOUBLE_FREE);
        S->double_frees++;
        break;
    case 1:   /* another block's live handle */
        FZ_CHECK(buffet_gpu_vblock_free(S->b, S->other_h) == BUFFET_ERR_FOREIGN);
        S->foreign_frees++;
        break;
    default:  /* garbage: from the input, half of it with this block's tag */
        g = fz_u64(&S->in);
        if (k & 1 && S->n) g = (S->live[0].h & ~(uint64_t)0xFFFFFFFFFFFFull) | (g & 0xFFFFFFFFFFFFull);
        for (i = 0; i < S->n; i++)
            if (S->live[i].h == g) return;
        {
            buffet_result r = buffet_gpu_vblock_free(S->b, g);
            FZ_CHECK(r == BUFFET_ERR_DOUBLE_FREE || r == BUFFET_ERR_FOREIGN);
            if (r == BUFFET_ERR_DOUBLE_FREE) S->double_frees++;
            else S->foreign_frees++;
        }
        break;
    }
}

static void op_reset(fz *S) {
    unsigned i;
    if (fz_u8(&S->in) % 4) return;   /* rare: it wipes out the state built so far */
    buffet_gpu_vblock_reset(S->b);
    for (i = 0; i < S->n; i++) fz_stale_add(S, S->live[i].h);
    S->n = 0;
    S->bytes = 0;
    memset(S->own, 0, (size_t)S->size);
}

static void op_stats(fz *S) {
    char json[1024];
    size_t n = buffet_gpu_vblock_stats_json(S->b, json, sizeof json);
    FZ_CHECK(n < sizeof json && n == strlen(json) && json[0] == '{' && json[n - 1] == '}');
    fz_compare(S, true);
}

/* ---- ring ---- */

static void fz_ring_drop_until(fz *S, uint64_t seq) {   /* allocations made before mark seq */
    unsigned i = 0, j = 0;
    for (; i < S->rn; i++) {
        if (S->rl[i].seq <= seq) memset(S->rown + S->rl[i].off, 0, (size_t)S->rl[i].size);
        else S->rl[j++] = S->rl[i];
    }
    S->rn = j;
}

static void op_ring_alloc(fz *S) {
    uint64_t size = fz_req(S, S->rsize), align = fz_align(S), off = 7, s = 0;
    buffet_result want = BUFFET_OK, r;
    if (size == 0 || align == 0 || (align & (align - 1))) want = BUFFET_ERR_INVALID;
    else if (size > UINT64_MAX - (S->rmin - 1)) want = BUFFET_ERR_OVERFLOW;
    else if ((s = fz_round(size, S->rmin)) > S->rsize) want = BUFFET_ERR_TOO_LARGE;
    if (want == BUFFET_OK && S->rn == FZ_RING_LIVE) return;
    r = buffet_gpu_ring_alloc(&S->ring, size, align, &off);
    if (want != BUFFET_OK) {
        FZ_CHECK(r == want && off == 7);
        return;
    }
    if (r == BUFFET_ERR_EXHAUSTED) {
        FZ_CHECK(S->rn > 0);   /* an empty ring fits anything up to its size */
        return;
    }
    FZ_CHECK(r == BUFFET_OK);
    FZ_CHECK(off % (align > S->rmin ? align : S->rmin) == 0 && off <= S->rsize && s <= S->rsize - off);
    FZ_CHECK(memchr(S->rown + off, 1, (size_t)s) == NULL);
    memset(S->rown + off, 1, (size_t)s);
    S->rl[S->rn].off = off;
    S->rl[S->rn].size = s;
    S->rl[S->rn].seq = S->next_seq;
    S->rn++;
}

static void op_ring_mark(fz *S) {
    buffet_gpu_ring_mark m = 0;
    buffet_result r = buffet_gpu_ring_mark_take(&S->ring, &m);
    if (S->nmarks == BUFFET_GPU_RING_MARKS) {
        FZ_CHECK(r == BUFFET_ERR_EXHAUSTED && m == 0);
        return;
    }
    FZ_CHECK(r == BUFFET_OK && m != 0);
    S->marks[S->nmarks++] = m;
    S->next_seq++;
}

static void op_ring_release(fz *S) {
    uint8_t k = fz_u8(&S->in);
    unsigned i;
    buffet_gpu_ring_mark m;
    switch (k % 5) {
    case 0: case 1: case 2: {   /* in order, or a newer one that takes the older with it */
        unsigned j;
        if (!S->nmarks) return;
        j = k % 3 == 0 ? 0 : fz_u8(&S->in) % S->nmarks;
        m = S->marks[j];
        FZ_CHECK(buffet_gpu_ring_release(&S->ring, m) == BUFFET_OK);
        for (i = 0; i <= j; i++) S->released[S->nreleased++ % FZ_STALE] = S->marks[i];
        fz_ring_drop_until(S, S->next_seq - (S->nmarks - j));
        memmove(S->marks, S->marks + j + 1, (S->nmarks - j - 1) * sizeof S->marks[0]);
        S->nmarks -= j + 1;
        break;
    }
    case 3:   /* released already, or out of order */
        if (!S->nreleased) return;
        m = S->released[fz_u8(&S->in) % (S->nreleased < FZ_STALE ? S->nreleased : FZ_STALE)];
        FZ_CHECK(buffet_gpu_ring_release(&S->ring, m) == BUFFET_ERR_DOUBLE_FREE);
        break;
    default:  /* another ring's, or garbage */
        m = k & 8 ? S->mark2 : fz_u64(&S->in);
        for (i = 0; i < S->nmarks; i++)
            if (S->marks[i] == m) return;
        {
            buffet_result r = buffet_gpu_ring_release(&S->ring, m);
            FZ_CHECK(r == BUFFET_ERR_FOREIGN || r == BUFFET_ERR_DOUBLE_FREE);
        }
        break;
    }
}

static void op_ring_reset(fz *S) {
    unsigned i;
    if (fz_u8(&S->in) % 4) return;
    buffet_gpu_ring_reset(&S->ring);
    for (i = 0; i < S->nmarks; i++) S->released[S->nreleased++ % FZ_STALE] = S->marks[i];
    S->nmarks = 0;
    fz_ring_drop_until(S, UINT64_MAX);
}

static void fz_ring_compare(fz *S) {
    buffet_gpu_ring_stats st = buffet_gpu_ring_get_stats(&S->ring);
    uint64_t live = 0;
    unsigned i;
    for (i = 0; i < S->rn; i++) live += S->rl[i].size;
    FZ_CHECK(st.marks_outstanding == S->nmarks && st.used >= live && st.used <= S->rsize);
    FZ_CHECK(S->rn > 0 || st.used == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz *S = (fz *)calloc(1, sizeof *S);
    buffet_debug_desc dd;
    buffet_gpu_vblock_desc vd;
    buffet_gpu_ring_desc rd;
    static const uint64_t aligns[4] = {1, 8, 64, 256};
    uint64_t o;
    int steps = 0;
    uint8_t k;
    FZ_CHECK(S != NULL);
    S->in.p = data;
    S->in.n = size;
    S->trace = getenv("FZ_TRACE") != NULL;
    memset(&dd, 0, sizeof dd);
    dd.quarantine_count = SIZE_MAX;
    FZ_CHECK(buffet_debug_create(&S->dbg, &dd) == BUFFET_OK);
    buffet_failing_init(&S->fail, buffet_debug_allocator(S->dbg), 0, false);

    k = fz_u8(&S->in);
    S->min_align = aligns[k & 3];
    S->size = (1 + fz_u16(&S->in) % 1024) * S->min_align;
    S->max_allocs = k & 4 ? 1u + fz_u8(&S->in) % 64u : 0x7FFFFFFEu;
    memset(&vd, 0, sizeof vd);
    vd.size = S->size;
    vd.min_align = k & 3 ? S->min_align : 0;
    vd.max_allocations = S->max_allocs == 0x7FFFFFFEu ? 0 : S->max_allocs;
    vd.allocator = buffet_failing_allocator(&S->fail);
    vd.name = "fuzz";
    FZ_CHECK(buffet_gpu_vblock_create(&S->b, &vd) == BUFFET_OK);
    if (k & 8) {   /* from here, the bookkeeping fails now and then */
        S->fail.per_million = 100000;
        S->fail.seed = k;
    }
    vd.allocator = buffet_debug_allocator(S->dbg);
    vd.max_allocations = 0;
    FZ_CHECK(buffet_gpu_vblock_create(&S->other, &vd) == BUFFET_OK);
    FZ_CHECK(buffet_gpu_vblock_alloc(S->other, 1, 1, &o, &S->other_h) == BUFFET_OK);
    S->own = (unsigned char *)calloc(1, (size_t)S->size);
    FZ_CHECK(S->own != NULL);

    k = fz_u8(&S->in);
    S->rmin = aligns[k & 3];
    S->rsize = (1 + fz_u16(&S->in) % 1024) * S->rmin;
    memset(&rd, 0, sizeof rd);
    rd.size = S->rsize;
    rd.min_align = S->rmin;
    rd.name = "fuzz ring";
    FZ_CHECK(buffet_gpu_ring_init(&S->ring, &rd) == BUFFET_OK && buffet_gpu_ring_init(&S->ring2, &rd) == BUFFET_OK);
    FZ_CHECK(buffet_gpu_ring_mark_take(&S->ring2, &S->mark2) == BUFFET_OK);
    S->rown = (unsigned char *)calloc(1, (size_t)S->rsize);
    FZ_CHECK(S->rown != NULL);
    S->next_seq = 1;

    while (fz_more(&S->in) && steps++ < FZ_STEPS) {
        unsigned op = fz_u8(&S->in) % 16;
        if (S->trace) fprintf(stderr, "step %d: op %u\n", steps, op);
        switch (op) {
        case 0: case 1: case 2: case 3: op_alloc(S); break;
        case 4: case 5: case 6: op_free(S); break;
        case 7: op_misuse(S); break;
        case 8: op_reset(S); break;
        case 9: op_stats(S); break;
        case 10: case 11: op_ring_alloc(S); break;
        case 12: op_ring_mark(S); break;
        case 13: op_ring_release(S); break;
        case 14: op_ring_reset(S); break;
        default: {
            /* get of a live allocation and of garbage */
            uint64_t sz;
            if (S->n) FZ_CHECK(buffet_gpu_vblock_get(S->b, S->live[0].h, &o, &sz) == BUFFET_OK && o == S->live[0].off);
            FZ_CHECK(buffet_gpu_vblock_get(S->b, S->other_h, &o, &sz) == BUFFET_ERR_FOREIGN);
            break;
        }
        }
        fz_compare(S, (steps & 15) == 0 || S->trace);
        fz_ring_compare(S);
    }
    fz_compare(S, true);
    /* teardown: half the time with allocations still live (reported as leaks) */
    if (fz_u8(&S->in) & 1)
        while (S->n) FZ_CHECK(buffet_gpu_vblock_free(S->b, S->live[--S->n].h) == BUFFET_OK);
    buffet_gpu_vblock_destroy(S->b);
    buffet_gpu_vblock_destroy(S->other);
    buffet_gpu_ring_deinit(&S->ring);
    buffet_gpu_ring_deinit(&S->ring2);
    FZ_CHECK(buffet_debug_get_stats(S->dbg).live_count == 0);
    buffet_failing_deinit(&S->fail);
    buffet_debug_destroy(S->dbg);
    free(S->own);
    free(S->rown);
    free(S);
    return 0;
}
