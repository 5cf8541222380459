/* fuzz_core.c - libFuzzer target for buffet.h. The input bytes are a program: each operation
   (a byte, then its arguments) is applied to buffet and to a plain reference model, and after
   every step every invariant and every byte is compared:
     buffers   heap, mmap, shm and wrapped buffers (sizes 0, small, huge, overflowing; bad kinds
               and alignments), ref/unref, fill/clear/write/read/copy at hostile offsets, slices;
               the model keeps each buffer's bytes and the references the fuzzer holds, so every
               refcount must equal ours plus the chains' slices, and a buffer must be gone (its
               debug allocator's block freed, its release called once) exactly when the last goes
     chains    three chains (over the heap, a debug allocator, and a failing allocator over that
               debug allocator, which refuses the next attempt when the input says so): append,
               prepend, concat, split, consume, copy_out, find, iovec, deinit; each chain is a
               byte vector in the model, and a refused call must leave both chains unchanged
     blocks    alloc/free/resize/realloc on the heap, a debug allocator, a failing allocator over
               it, a fixed allocator (bump model: the exact address, exhaustion, reset) and the
               adapter (its sized face and its malloc/calloc/realloc/free hooks); every live block
               holds its own fill byte, so any aliasing shows
     misuse    on the debug allocator: double free (from the quarantine and long after), foreign
               and interior pointers, wrong size or alignment, resize of freed or foreign blocks,
               guard overruns and underruns, writes after free; each must be refused, counted and
               logged exactly once. On the fixed allocator: foreign, interior and stale pointers.
   Build (libFuzzer):
     clang -x c -std=c11 -Wall -Wextra -Wpedantic -Werror -Wshadow -O1 -g -fsanitize=fuzzer,address,undefined \
           -I. -Itests/fuzz tests/fuzz/fuzz_core.c -o /tmp/fc && /tmp/fc -max_total_time=120 /tmp/corpus tests/fuzz/corpus/core
   Replay (gcc, g++, valgrind, qemu): add -DBUFFET_FUZZ_MAIN, drop -fsanitize=fuzzer, and pass the
   corpus folder. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "buffet.h"
#include "fuzz.h"
#define BT_HUGE_IS_NULL   /* the huge sizes below come back NULL under ASan and TSan (the replay runs under both) */
#include "../bt.h"

#include <unistd.h>

#define FC_RECS 10          /* buffers alive at once */
#define FC_CHAINS 3
#define FC_SLICES 4
#define FC_BLOCKS 32        /* allocator blocks alive at once */
#define FC_BUF_MAX 2048     /* largest buffer that may succeed */
#define FC_BLK_MAX 1024     /* largest block that may succeed */
#define FC_CHAIN_MAX 8192   /* the model refuses to grow a chain past this (not buffet) */
#define FC_SEGS 96
#define FC_FIXED_CAP 4096
#define FC_GONE 16          /* pointers freed long ago, for double frees and stale frees */

/* ---------------------------------------------------------------------------------------------
   Hostile numbers */

/* Under valgrind a request of 2^63 bytes or more is itself an error ("fishy value"): there the
   huge sizes stay below 2^62, as impossible to serve. */
#if defined(__has_include)
#  if __has_include(<valgrind/valgrind.h>)
#    include <valgrind/valgrind.h>
#    define FC_ON_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#  endif
#endif
#ifndef FC_ON_VALGRIND
#  define FC_ON_VALGRIND() false
#endif
static bool fc_valgrind;
static size_t fc_tame(size_t v) { return fc_valgrind && v > SIZE_MAX / 4 ? SIZE_MAX / 4 - (v & 255) : v; }

/* A size: mostly small, else 0, overflowing, or beyond any address space (2^48 and up: the heap,
   mmap and memfd all refuse it; never 2 GiB..1 TiB, which ASan and libFuzzer treat as a bug). */
static size_t fc_size(fz_in *in, size_t small_max) {
    uint8_t k = fz_u8(in);
    switch (k & 7) {
    case 0: return 0;
    case 1: return fc_tame(SIZE_MAX - (size_t)(k >> 3));
    case 2: return ((size_t)1 << (48 + (k >> 3 & 7))) + fz_u8(in);
    case 3: return fc_tame(SIZE_MAX / 2 + (size_t)(k >> 3));
    default: return (size_t)fz_u16(in) % (small_max + 1);
    }
}
/* An offset into something of `size` bytes: mostly inside, sometimes at or past the end. */
static size_t fc_off(fz_in *in, size_t size) {
    uint8_t k = fz_u8(in);
    switch (k & 7) {
    case 0: return 0;
    case 1: return size;
    case 2: return size + 1 + (size_t)(k >> 3);
    case 3: return SIZE_MAX - (size_t)(k >> 3);
    default: return (size_t)fz_u16(in) % (size + 1);
    }
}
/* A length from off: mostly fitting, sometimes one too many or overflowing. */
static size_t fc_len(fz_in *in, size_t off, size_t size) {
    size_t room = off <= size ? size - off : 0;
    uint8_t k = fz_u8(in);
    switch (k & 7) {
    case 0: return 0;
    case 1: return room;
    case 2: return room + 1;
    case 3: return SIZE_MAX - (size_t)(k >> 3);
    default: return (size_t)fz_u16(in) % (room + 1);
    }
}
static size_t fc_align(fz_in *in) {
    static const size_t aligns[16] = {1, 2, 4, 8, 16, 16, 32, 64, 64, 128, 256, 4096, 8, 16, 3, 0};
    return aligns[fz_u8(in) & 15];
}
static bool fc_in_range(size_t off, size_t len, size_t size) { return off <= size && len <= size - off; }

/* ---------------------------------------------------------------------------------------------
   State: buffet's objects and their models */


typedef struct fc_rec {
    buffet_buf *b;             /* NULL: free slot */
    uint32_t kind;
    size_t size;
    unsigned char *model;      /* the bytes it must hold */
    uint32_t ours;             /* references the fuzzer holds itself (creation, refs) */
    uint32_t slices;           /* ...and through its slices */
    unsigned char *wrap_mem;   /* WRAP: the memory, freed by the release callback */
    unsigned released;         /* WRAP: release calls */
} fc_rec;

typedef struct fc_seg { int rec; size_t off, len; } fc_seg;
typedef struct fc_chain { buffet_chain c; fc_seg seg[FC_SEGS]; size_t n, len; } fc_chain;

enum { FC_HEAP, FC_DEBUG, FC_FAILING, FC_FIXED, FC_AD_FACE, FC_AD_HOOK, FC_KINDS };
typedef struct fc_blk { int ai; unsigned char *p; size_t size, align; unsigned char pat; bool damaged; } fc_blk;
typedef struct fc_q { unsigned char *p; size_t size; bool dirty; } fc_q;

typedef struct fc_state {
    fz_in in;
    buffet_debug *dbuf, *dch, *dmis, *dad;
    bt_log lbuf, lch, lmis, lad, lfx;
    buffet_failing fch, fmis;
    buffet_fixed fx;
    unsigned char *fx_base;
    size_t fx_cap, fx_used, fx_last;   /* the bump model; fx_last SIZE_MAX: no last block */
    buffet_adapter ad;
    fc_rec rec[FC_RECS];
    fc_chain ch[FC_CHAINS];
    buffet_slice sl[FC_SLICES];
    int sl_rec[FC_SLICES];
    fc_blk blk[FC_BLOCKS];
    size_t nblk;
    unsigned char next_pat;
    /* the debug allocator dmis: its quarantine and the errors it must have counted */
    size_t guard, q_max, q_max_bytes, qn, qbytes;
    fc_q q[64];
    unsigned char *gone[FC_GONE];      /* dmis pointers that left the quarantine */
    size_t ngone;
    unsigned char *stale[FC_GONE];     /* fixed pointers from before a reset */
    size_t stale_size[FC_GONE], nstale;
    size_t m_double, m_foreign, m_mismatch, m_corrupt, m_fx_foreign;
} fc_state;

static fc_state S;
static unsigned char fc_fixed_mem[FC_FIXED_CAP + 64] __attribute__((aligned(64)));

static buffet_allocator fc_alloc_of(int ai) {
    switch (ai) {
    case FC_HEAP: return buffet_heap();
    case FC_DEBUG: return buffet_debug_allocator(S.dmis);
    case FC_FAILING: return buffet_failing_allocator(&S.fmis);
    case FC_FIXED: return buffet_fixed_allocator(&S.fx);
    default: return buffet_adapter_allocator(&S.ad);
    }
}
static bool fc_on_dmis(int ai) { return ai == FC_DEBUG || ai == FC_FAILING; }

/* ---------------------------------------------------------------------------------------------
   Checks */

static size_t fc_chain_refs(const buffet_buf *b) {
    size_t n = 0, i, k;
    for (k = 0; k < FC_CHAINS; k++)
        for (i = 0; i < buffet_chain_count(&S.ch[k].c); i++) n += buffet_chain_at(&S.ch[k].c, i)->buf == b;
    return n;
}
static size_t fc_model_refs(int r) {
    size_t n = 0, i, k;
    for (k = 0; k < FC_CHAINS; k++)
        for (i = 0; i < S.ch[k].n; i++) n += S.ch[k].seg[i].rec == r;
    return n;
}
static int fc_rec_of(const buffet_buf *b) {
    int i;
    for (i = 0; i < FC_RECS; i++)
        if (S.rec[i].b && S.rec[i].b == b) return i;
    return -1;
}

/* The chain's bytes as the model says, into out (at least len bytes). */
static void fc_chain_expect(const fc_chain *c, unsigned char *out) {
    size_t i, pos = 0;
    for (i = 0; i < c->n; i++) {
        memcpy(out + pos, S.rec[c->seg[i].rec].model + c->seg[i].off, c->seg[i].len);
        pos += c->seg[i].len;
    }
    FZ_CHECK(pos == c->len);
}

static unsigned char fc_tmp[FC_CHAIN_MAX + 16], fc_tmp2[FC_CHAIN_MAX + 16];

static size_t fc_live_blocks(int a, int b) {
    size_t i, n = 0;
    for (i = 0; i < S.nblk; i++) n += S.blk[i].ai == a || S.blk[i].ai == b;
    return n;
}

static void fc_check_all(void) {
    size_t i, k, live = 0, with_array;
    buffet_debug_stats st;
    for (i = 0; i < FC_RECS; i++) {
        fc_rec *r = &S.rec[i];
        if (!r->b) continue;
        live++;
        FZ_CHECK(buffet_buf_refcount(r->b) == r->ours + r->slices + fc_chain_refs(r->b));
        FZ_CHECK((fc_chain_refs(r->b) > 0) == (fc_model_refs((int)i) > 0));
        FZ_CHECK(r->b->size == r->size && r->b->kind == r->kind && r->b->data);
        FZ_CHECK(buffet_buf_read(r->b, 0, fc_tmp, r->size) == BUFFET_OK);
        FZ_CHECK(memcmp(fc_tmp, r->model, r->size) == 0);
    }
    for (k = 0; k < FC_CHAINS; k++) {
        fc_chain *c = &S.ch[k];
        size_t sum = 0;
        FZ_CHECK(buffet_chain_len(&c->c) == c->len);
        FZ_CHECK(buffet_chain_count(&c->c) <= c->n);   /* contiguous slices may merge, never split */
        FZ_CHECK(buffet_chain_at(&c->c, buffet_chain_count(&c->c)) == NULL);
        for (i = 0; i < buffet_chain_count(&c->c); i++) {
            const buffet_slice *s = buffet_chain_at(&c->c, i);
            FZ_CHECK(s && s->len > 0 && fc_rec_of(s->buf) >= 0 && fc_in_range(s->off, s->len, s->buf->size));
            FZ_CHECK(buffet_slice_data(s) == (unsigned char *)s->buf->data + s->off);
            sum += s->len;
        }
        FZ_CHECK(sum == c->len);
        fc_chain_expect(c, fc_tmp2);
        FZ_CHECK(buffet_chain_copy_out(&c->c, 0, fc_tmp, c->len) == BUFFET_OK);
        FZ_CHECK(memcmp(fc_tmp, fc_tmp2, c->len) == 0);
    }
    for (i = 0; i < FC_SLICES; i++) {
        if (!S.sl[i].buf) continue;
        FZ_CHECK(S.sl_rec[i] >= 0 && S.rec[S.sl_rec[i]].b == S.sl[i].buf);
    }
    /* every buffer is one block of dbuf (heap: header and data; the others: the header) */
    st = buffet_debug_get_stats(S.dbuf);
    FZ_CHECK(st.live_count == live && st.double_frees + st.foreign_frees + st.mismatched_frees + st.corruptions == 0);
    /* a chain's slice array is one block, or none */
    with_array = (S.ch[1].c.slices != NULL) + (S.ch[2].c.slices != NULL);
    st = buffet_debug_get_stats(S.dch);
    FZ_CHECK(st.live_count == with_array && st.double_frees + st.foreign_frees + st.mismatched_frees + st.corruptions == 0);
    st = buffet_debug_get_stats(S.dad);
    FZ_CHECK(st.live_count == fc_live_blocks(FC_AD_FACE, FC_AD_HOOK));
    FZ_CHECK(st.double_frees + st.foreign_frees + st.mismatched_frees + st.corruptions == 0);
    st = buffet_debug_get_stats(S.dmis);
    FZ_CHECK(st.live_count == fc_live_blocks(FC_DEBUG, FC_FAILING));
    FZ_CHECK(st.double_frees == S.m_double && st.foreign_frees == S.m_foreign);
    FZ_CHECK(st.mismatched_frees == S.m_mismatch && st.corruptions == S.m_corrupt);
    FZ_CHECK(st.total_count == st.live_count + st.free_count);
    /* each refusal is logged once; damage reports past the log queue's 4 lines per call are
       summed up in one more line, so the lines are bounded by the count, not equal to it */
    FZ_CHECK(S.lmis.count[-BUFFET_ERR_DOUBLE_FREE] == S.m_double && S.lmis.count[-BUFFET_ERR_FOREIGN] == S.m_foreign);
    FZ_CHECK(S.lmis.count[-BUFFET_ERR_MISMATCH] == S.m_mismatch);
    FZ_CHECK(S.lmis.count[-BUFFET_ERR_CORRUPT] <= S.m_corrupt);
    FZ_CHECK(S.lfx.count[-BUFFET_ERR_FOREIGN] == S.m_fx_foreign);
    for (i = 0; i < S.nblk; i++) {
        const fc_blk *b = &S.blk[i];
        size_t j;
        FZ_CHECK(b->p && ((uintptr_t)b->p & (b->align - 1)) == 0);
        for (j = 0; j < b->size; j++) FZ_CHECK(b->p[j] == b->pat);
        if (b->ai == FC_AD_FACE || b->ai == FC_AD_HOOK) FZ_CHECK(buffet_adapter_size(b->p) == b->size);
    }
}

/* Buffers the fuzzer no longer holds and no chain refers to must be gone now. */
static void fc_settle(void) {
    int i;
    for (i = 0; i < FC_RECS; i++) {
        fc_rec *r = &S.rec[i];
        if (!r->b || r->ours || r->slices || fc_model_refs(i)) continue;
        if (r->kind == BUFFET_BUF_WRAP) FZ_CHECK(r->released == 1 && r->wrap_mem == NULL);
        free(r->model);
        memset(r, 0, sizeof *r);
    }
}

/* ---------------------------------------------------------------------------------------------
   Buffers and slices */

static void fc_release(void *user, void *data, size_t size) {
    fc_rec *r = (fc_rec *)user;
    FZ_CHECK(data == r->wrap_mem && size == r->size && r->released == 0);
    r->released++;
    free(r->wrap_mem);
    r->wrap_mem = NULL;
}

static int fc_pick_rec(void) {
    int i, start = fz_u8(&S.in) % FC_RECS;
    for (i = 0; i < FC_RECS; i++)
        if (S.rec[(start + i) % FC_RECS].b) return (start + i) % FC_RECS;
    return -1;
}

static void op_buf_create(void) {
    static const uint32_t kinds[8] = {BUFFET_BUF_HEAP, BUFFET_BUF_HEAP, BUFFET_BUF_HEAP, BUFFET_BUF_MMAP,
                                      BUFFET_BUF_SHM, BUFFET_BUF_WRAP, BUFFET_BUF_WRAP, 9};
    uint8_t k = fz_u8(&S.in);
    uint32_t kind = kinds[k & 7];
    bool wrap_null = kind == BUFFET_BUF_WRAP && (k & 0x80);
    size_t size = kind == BUFFET_BUF_WRAP ? (size_t)fz_u16(&S.in) % (FC_BUF_MAX + 1) : fc_size(&S.in, FC_BUF_MAX);
    size_t align = fc_align(&S.in), live_before = buffet_debug_get_stats(S.dbuf).live_count;
    uint8_t flags = fz_u8(&S.in), pat = fz_u8(&S.in);
    buffet_buf_desc d;
    buffet_buf *b = (buffet_buf *)&d;   /* must come back NULL on failure */
    buffet_result r, want = BUFFET_OK;
    fc_rec *rec = NULL;
    int i;
    for (i = 0; i < FC_RECS; i++)
        if (!S.rec[i].b) { rec = &S.rec[i]; break; }
    if (!rec) return;
    memset(rec, 0, sizeof *rec);
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.size = size;
    d.align = align == 1 ? 0 : align;   /* 0: the default (64) */
    d.flags = (flags & 1 ? (uint32_t)BUFFET_BUF_ZERO : 0u) | (flags & 2 ? (uint32_t)BUFFET_BUF_NO_THP : 0u) |
              (flags & 4 ? (uint32_t)BUFFET_BUF_POPULATE : 0u);
    d.allocator = buffet_debug_allocator(S.dbuf);
    d.log = bt_logger(&S.lbuf);
    d.name = "fuzz";
    if (kind == BUFFET_BUF_WRAP && !wrap_null && size) {
        rec->wrap_mem = (unsigned char *)malloc(size);
        FZ_CHECK(rec->wrap_mem);
        memset(rec->wrap_mem, pat, size);
        d.wrap_data = rec->wrap_mem;
        d.release = fc_release;
        d.release_user = rec;
    }
    if (size == 0 || kind == 9 || wrap_null || (kind == BUFFET_BUF_HEAP && d.align && !buffet_is_pow2(d.align)))
        want = BUFFET_ERR_INVALID;
    else if (size >= SIZE_MAX - 64 && kind != BUFFET_BUF_WRAP)
        want = BUFFET_ERR_OVERFLOW;   /* no header or page rounding fits */
    rec->kind = kind;
    rec->size = size;
    r = buffet_buf_create(&b, &d);
    if (want != BUFFET_OK || size > FC_BUF_MAX) {
        if (want != BUFFET_OK) FZ_CHECK(r == want);
        else FZ_CHECK(r != BUFFET_OK);
        FZ_CHECK(b == NULL && buffet_debug_get_stats(S.dbuf).live_count == live_before && rec->released == 0);
        free(rec->wrap_mem);
        memset(rec, 0, sizeof *rec);
        return;
    }
    FZ_CHECK(r == BUFFET_OK && b && buffet_buf_refcount(b) == 1 && b->size == size);
    rec->b = b;
    rec->ours = 1;
    rec->model = (unsigned char *)malloc(size);
    FZ_CHECK(rec->model);
    if (kind == BUFFET_BUF_HEAP) FZ_CHECK(((uintptr_t)b->data & ((d.align ? d.align : 64) - 1)) == 0);
    if (kind == BUFFET_BUF_MMAP || kind == BUFFET_BUF_SHM) FZ_CHECK(((uintptr_t)b->data & 4095) == 0);
    if (kind == BUFFET_BUF_WRAP) {
        FZ_CHECK(b->data == rec->wrap_mem);
        memset(rec->model, pat, size);
    } else if (kind != BUFFET_BUF_HEAP || (d.flags & BUFFET_BUF_ZERO)) {
        memset(rec->model, 0, size);   /* zeroed, as documented */
    } else {
        FZ_CHECK(buffet_buf_fill(b, 0, size, pat) == BUFFET_OK);   /* undefined bytes: define them */
        memset(rec->model, pat, size);
    }
}

static void op_buf_ref(void) {
    int i = fc_pick_rec();
    if (i < 0) {
        FZ_CHECK(buffet_buf_ref(NULL) == NULL && buffet_buf_unref(NULL) == 0 && buffet_buf_refcount(NULL) == 0);
        return;
    }
    if (fz_u8(&S.in) & 1) {
        FZ_CHECK(buffet_buf_ref(S.rec[i].b) == S.rec[i].b);
        S.rec[i].ours++;
    } else if (S.rec[i].ours) {
        uint32_t want = S.rec[i].ours + S.rec[i].slices + (uint32_t)fc_chain_refs(S.rec[i].b) - 1;
        FZ_CHECK(buffet_buf_unref(S.rec[i].b) == want);
        S.rec[i].ours--;
    }
}

/* fill, clear, write, read or copy at hostile offsets: refused ranges change nothing */
static void op_buf_bytes(void) {
    uint8_t what = fz_u8(&S.in) % 6;
    int i = fc_pick_rec(), j;
    size_t off, len, soff;
    uint8_t v;
    buffet_result r;
    if (i < 0) {
        FZ_CHECK(buffet_buf_fill(NULL, 0, 1, 0) == BUFFET_ERR_INVALID && buffet_buf_read(NULL, 0, fc_tmp, 1) == BUFFET_ERR_INVALID);
        return;
    }
    off = fc_off(&S.in, S.rec[i].size);
    len = fc_len(&S.in, off, S.rec[i].size);
    v = fz_u8(&S.in);
    switch (what) {
    case 0:
    case 1:
        r = what ? buffet_buf_fill(S.rec[i].b, off, len, v) : buffet_buf_clear(S.rec[i].b, off, len);
        if (!what) v = 0;
        FZ_CHECK(r == (fc_in_range(off, len, S.rec[i].size) ? BUFFET_OK : BUFFET_ERR_RANGE));
        if (r == BUFFET_OK) memset(S.rec[i].model + off, v, len);
        break;
    case 2: {
        bool null_src = (v & 1) && len;
        size_t k;
        for (k = 0; k < len && k < sizeof fc_tmp; k++) fc_tmp[k] = (unsigned char)(v + k * 7);
        r = buffet_buf_write(S.rec[i].b, off, null_src ? NULL : fc_tmp, len);
        if (!fc_in_range(off, len, S.rec[i].size)) FZ_CHECK(r == BUFFET_ERR_RANGE);
        else if (null_src) FZ_CHECK(r == BUFFET_ERR_INVALID);
        else FZ_CHECK(r == BUFFET_OK);
        if (r == BUFFET_OK) memcpy(S.rec[i].model + off, fc_tmp, len);
        break;
    }
    case 3:
        r = buffet_buf_read(S.rec[i].b, off, (v & 1) && len ? NULL : fc_tmp, len);
        if (!fc_in_range(off, len, S.rec[i].size)) FZ_CHECK(r == BUFFET_ERR_RANGE);
        else if ((v & 1) && len) FZ_CHECK(r == BUFFET_ERR_INVALID);
        else FZ_CHECK(r == BUFFET_OK && memcmp(fc_tmp, S.rec[i].model + off, len) == 0);
        break;
    default:
        j = fc_pick_rec();   /* may be i: overlapping copies within one buffer */
        soff = fc_off(&S.in, S.rec[j].size);
        r = buffet_buf_copy(S.rec[i].b, off, S.rec[j].b, soff, len);
        FZ_CHECK(r == (fc_in_range(off, len, S.rec[i].size) && fc_in_range(soff, len, S.rec[j].size) ? BUFFET_OK : BUFFET_ERR_RANGE));
        if (r == BUFFET_OK) memmove(S.rec[i].model + off, S.rec[j].model + soff, len);
        break;
    }
}

static void op_slice(void) {
    int k = fz_u8(&S.in) % FC_SLICES, i;
    size_t off, len;
    buffet_result r;
    if (S.sl[k].buf) {
        S.rec[S.sl_rec[k]].slices--;
        buffet_slice_release(&S.sl[k]);
        FZ_CHECK(S.sl[k].buf == NULL && S.sl[k].len == 0);
        buffet_slice_release(&S.sl[k]);   /* a zeroed slice: nothing */
        buffet_slice_release(NULL);
        return;
    }
    i = fc_pick_rec();
    if (i < 0) {
        FZ_CHECK(buffet_slice_make(&S.sl[k], NULL, 0, 0) == BUFFET_ERR_INVALID);
        return;
    }
    off = fc_off(&S.in, S.rec[i].size);
    len = fc_len(&S.in, off, S.rec[i].size);
    FZ_CHECK(buffet_slice_make(NULL, S.rec[i].b, 0, 0) == BUFFET_ERR_INVALID);
    r = buffet_slice_make(&S.sl[k], S.rec[i].b, off, len);
    if (!fc_in_range(off, len, S.rec[i].size)) {
        FZ_CHECK(r == BUFFET_ERR_RANGE);
        memset(&S.sl[k], 0, sizeof S.sl[k]);
        return;
    }
    FZ_CHECK(r == BUFFET_OK && S.sl[k].buf == S.rec[i].b && S.sl[k].off == off && S.sl[k].len == len);
    FZ_CHECK(buffet_slice_data(&S.sl[k]) == (unsigned char *)S.rec[i].b->data + off);
    S.sl_rec[k] = i;
    S.rec[i].slices++;
}

/* ---------------------------------------------------------------------------------------------
   Chains */

/* Arm the chain 2's failing allocator to refuse its next attempt (when the input says so). */
static bool fc_arm(int ci) {
    if (ci != 2 || !(fz_u8(&S.in) & 1)) return false;
    S.fch.fail_at = S.fch.allocs + 1;
    return true;
}
static void fc_disarm(void) { S.fch.fail_at = 0; }

static void op_chain_add(bool front) {
    int ci = fz_u8(&S.in) % FC_CHAINS, i = fc_pick_rec();
    fc_chain *c = &S.ch[ci];
    size_t off, len;
    uint64_t failures = S.fch.failures;
    buffet_result r;
    bool armed;
    if (i < 0) {
        FZ_CHECK(buffet_chain_append(&c->c, NULL, 0, 1) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_chain_prepend(NULL, NULL, 0, 1) == BUFFET_ERR_INVALID);
        return;
    }
    off = fc_off(&S.in, S.rec[i].size);
    len = fc_len(&S.in, off, S.rec[i].size);
    if (fc_in_range(off, len, S.rec[i].size) && (c->len + len > FC_CHAIN_MAX || c->n == FC_SEGS)) return;
    armed = fc_arm(ci);
    r = front ? buffet_chain_prepend(&c->c, S.rec[i].b, off, len) : buffet_chain_append(&c->c, S.rec[i].b, off, len);
    fc_disarm();
    if (!fc_in_range(off, len, S.rec[i].size)) {
        FZ_CHECK(r == BUFFET_ERR_RANGE);
        return;
    }
    if (r == BUFFET_ERR_NOMEM) {   /* refused: the chain is as it was (checked by fc_check_all) */
        FZ_CHECK(armed && S.fch.failures == failures + 1);
        return;
    }
    FZ_CHECK(r == BUFFET_OK);
    if (len == 0) return;
    if (front) {
        memmove(c->seg + 1, c->seg, c->n * sizeof *c->seg);
        c->seg[0].rec = i, c->seg[0].off = off, c->seg[0].len = len;
    } else {
        c->seg[c->n].rec = i, c->seg[c->n].off = off, c->seg[c->n].len = len;
    }
    c->n++;
    c->len += len;
}

static void op_chain_concat(void) {
    int ci = fz_u8(&S.in) % FC_CHAINS, cj = fz_u8(&S.in) % FC_CHAINS;
    fc_chain *c = &S.ch[ci], *src = &S.ch[cj];
    buffet_result r;
    bool armed;
    if (ci == cj) {
        FZ_CHECK(buffet_chain_concat(&c->c, &c->c) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_chain_concat(NULL, &c->c) == BUFFET_ERR_INVALID && buffet_chain_concat(&c->c, NULL) == BUFFET_ERR_INVALID);
        return;
    }
    if (c->len + src->len > FC_CHAIN_MAX || c->n + src->n > FC_SEGS) return;
    armed = fc_arm(ci);
    r = buffet_chain_concat(&c->c, &src->c);
    fc_disarm();
    if (r == BUFFET_ERR_NOMEM) {
        FZ_CHECK(armed);
        return;
    }
    FZ_CHECK(r == BUFFET_OK && buffet_chain_len(&src->c) == 0 && buffet_chain_count(&src->c) == 0);
    memcpy(c->seg + c->n, src->seg, src->n * sizeof *c->seg);
    c->n += src->n;
    c->len += src->len;
    src->n = src->len = 0;
}

static void op_chain_split(void) {
    int ci = fz_u8(&S.in) % FC_CHAINS, cj = fz_u8(&S.in) % FC_CHAINS;
    fc_chain *c = &S.ch[ci], *t = &S.ch[cj];
    size_t at = fc_off(&S.in, c->len), i, pos = 0;
    buffet_result r;
    bool armed;
    if (ci == cj) {
        FZ_CHECK(buffet_chain_split(&c->c, 0, &c->c) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_chain_split(NULL, 0, &c->c) == BUFFET_ERR_INVALID && buffet_chain_split(&c->c, 0, NULL) == BUFFET_ERR_INVALID);
        return;
    }
    if (at <= c->len && (t->len + (c->len - at) > FC_CHAIN_MAX || t->n + c->n + 1 > FC_SEGS)) return;
    armed = fc_arm(cj);
    r = buffet_chain_split(&c->c, at, &t->c);
    fc_disarm();
    if (at > c->len) {
        FZ_CHECK(r == BUFFET_ERR_RANGE);
        return;
    }
    if (r == BUFFET_ERR_NOMEM) {
        FZ_CHECK(armed);
        return;
    }
    FZ_CHECK(r == BUFFET_OK);
    if (at == c->len) return;
    for (i = 0; pos + c->seg[i].len <= at; i++) pos += c->seg[i].len;
    if (at > pos) {   /* the straddling segment: its head stays, its tail moves */
        fc_seg head = c->seg[i];
        head.len = at - pos;
        c->seg[i].off += at - pos;
        c->seg[i].len -= at - pos;
        memcpy(t->seg + t->n, c->seg + i, (c->n - i) * sizeof *c->seg);
        t->n += c->n - i;
        c->seg[i] = head;
        c->n = i + 1;
    } else {
        memcpy(t->seg + t->n, c->seg + i, (c->n - i) * sizeof *c->seg);
        t->n += c->n - i;
        c->n = i;
    }
    t->len += c->len - at;
    c->len = at;
}

static void op_chain_consume(void) {
    fc_chain *c = &S.ch[fz_u8(&S.in) % FC_CHAINS];
    size_t n = fc_off(&S.in, c->len);
    buffet_result r = buffet_chain_consume(&c->c, n);
    FZ_CHECK(buffet_chain_consume(NULL, 0) == BUFFET_ERR_INVALID);
    if (n > c->len) {
        FZ_CHECK(r == BUFFET_ERR_RANGE);
        return;
    }
    FZ_CHECK(r == BUFFET_OK);
    c->len -= n;
    while (n) {
        if (c->seg[0].len > n) {
            c->seg[0].off += n;
            c->seg[0].len -= n;
            break;
        }
        n -= c->seg[0].len;
        memmove(c->seg, c->seg + 1, (c->n - 1) * sizeof *c->seg);
        c->n--;
    }
}

/* copy_out, find and iovec: read-only, checked against the model's bytes */
static void op_chain_read(void) {
    fc_chain *c = &S.ch[fz_u8(&S.in) % FC_CHAINS];
    uint8_t what = fz_u8(&S.in) % 3;
    size_t off = fc_off(&S.in, c->len), len;
    buffet_result r;
    fc_chain_expect(c, fc_tmp2);
    if (what == 0) {
        len = fc_len(&S.in, off, c->len);
        r = buffet_chain_copy_out(&c->c, off, fc_tmp, len);
        FZ_CHECK(r == (fc_in_range(off, len, c->len) ? BUFFET_OK : BUFFET_ERR_RANGE));
        if (r == BUFFET_OK) FZ_CHECK(memcmp(fc_tmp, fc_tmp2 + off, len) == 0);
        FZ_CHECK(buffet_chain_copy_out(&c->c, 0, NULL, 1) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_chain_copy_out(&c->c, 0, NULL, 0) == BUFFET_OK);
        FZ_CHECK(buffet_chain_copy_out(NULL, 0, fc_tmp, 0) == BUFFET_ERR_INVALID);
    } else if (what == 1) {
        unsigned char needle[16] = {0};
        size_t n = fz_u8(&S.in) % 17, pos = 7, want = SIZE_MAX, p, k;
        if ((fz_u8(&S.in) & 1) && c->len) {   /* a needle that is there */
            size_t at = (size_t)fz_u16(&S.in) % c->len;
            if (n > c->len - at) n = c->len - at;
            memcpy(needle, fc_tmp2 + at, n);
        } else {
            for (k = 0; k < n; k++) needle[k] = fz_u8(&S.in);
        }
        r = buffet_chain_find(&c->c, off, needle, n, &pos);
        if (n == 0) {
            FZ_CHECK(r == BUFFET_ERR_INVALID);
            return;
        }
        for (p = off; off < c->len && n <= c->len && p <= c->len - n; p++)
            if (memcmp(fc_tmp2 + p, needle, n) == 0) { want = p; break; }
        if (want == SIZE_MAX) FZ_CHECK(r == BUFFET_ERR_NOT_FOUND);
        else FZ_CHECK(r == BUFFET_OK && pos == want);
        FZ_CHECK(buffet_chain_find(&c->c, 0, NULL, 1, &pos) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_chain_find(&c->c, 0, needle, 1, NULL) == BUFFET_ERR_INVALID);
    } else {
        struct iovec iov[8];
        size_t max_len = fc_size(&S.in, FC_CHAIN_MAX), max_iov = fz_u8(&S.in) % 9, n, k, pos = off, total = 0;
        if (max_len >= SIZE_MAX / 2) max_len = SIZE_MAX;   /* "everything" */
        n = buffet_chain_iovec(&c->c, off, max_len, iov, max_iov);
        FZ_CHECK(n <= max_iov);
        if (off >= c->len || max_iov == 0 || max_len == 0) FZ_CHECK(n == 0);
        else FZ_CHECK(n > 0);
        for (k = 0; k < n; k++) {
            FZ_CHECK(iov[k].iov_len > 0 && pos + iov[k].iov_len <= c->len);
            FZ_CHECK(memcmp(iov[k].iov_base, fc_tmp2 + pos, iov[k].iov_len) == 0);
            pos += iov[k].iov_len;
            total += iov[k].iov_len;
        }
        if (n) FZ_CHECK(total <= max_len);
        /* stopped early only for want of iovecs */
        if (n && n < max_iov) FZ_CHECK(total == (max_len < c->len - off ? max_len : c->len - off));
        FZ_CHECK(buffet_chain_iovec(NULL, 0, 1, iov, 1) == 0 && buffet_chain_iovec(&c->c, 0, 1, NULL, 1) == 0);
    }
}

static void op_chain_reset(void) {
    int ci = fz_u8(&S.in) % FC_CHAINS;
    fc_chain *c = &S.ch[ci];
    buffet_chain_deinit(&c->c);
    buffet_chain_deinit(NULL);
    FZ_CHECK(buffet_chain_len(&c->c) == 0 && buffet_chain_count(&c->c) == 0 && c->c.slices == NULL);
    c->n = c->len = 0;
    if (fz_u8(&S.in) & 1) {   /* init again over the same allocator */
        buffet_allocator a = ci == 0 ? buffet_heap() : ci == 1 ? buffet_debug_allocator(S.dch) : buffet_failing_allocator(&S.fch);
        FZ_CHECK(buffet_chain_init(&c->c, a) == BUFFET_OK);
    }
}

/* ---------------------------------------------------------------------------------------------
   Allocator blocks */

static unsigned char fc_new_pat(void) {
    size_t i;
    for (;;) {
        bool used = false;
        S.next_pat = (unsigned char)(S.next_pat + 1);
        if (S.next_pat == 0 || S.next_pat == 0xCD || S.next_pat == 0xDD || S.next_pat == 0xFB) continue;
        for (i = 0; i < S.nblk; i++) used |= S.blk[i].pat == S.next_pat;
        if (!used) return S.next_pat;
    }
}

static void fc_fill(fc_blk *b, size_t from) {
    if (b->size > from) memset(b->p + from, b->pat, b->size - from);
}

/* The fixed allocator's bump model: where the next block of size/align goes, or NULL. */
static unsigned char *fc_fixed_next(size_t size, size_t align) {
    uintptr_t start = (uintptr_t)S.fx_base + S.fx_used, aligned;
    size_t off;
    if (!S.fx_base || !buffet_align_up(start, align, &aligned)) return NULL;
    off = (size_t)(aligned - (uintptr_t)S.fx_base);
    if (off > S.fx_cap || size > S.fx_cap - off) return NULL;
    return S.fx_base + off;
}
static void fc_fixed_took(unsigned char *p, size_t size) {
    S.fx_last = (size_t)(p - S.fx_base);
    S.fx_used = S.fx_last + size;
}
static bool fc_fixed_is_last(const unsigned char *p, size_t size) {
    return S.fx_last != SIZE_MAX && p == S.fx_base + S.fx_last && S.fx_last + size == S.fx_used;
}
static void fc_fixed_freed(const unsigned char *p, size_t size) {
    if (fc_fixed_is_last(p, size)) {
        S.fx_used = S.fx_last;
        S.fx_last = SIZE_MAX;
    }
}

static void fc_gone(unsigned char *p) {
    if (S.ngone == FC_GONE) memmove(S.gone, S.gone + 1, --S.ngone * sizeof *S.gone);
    S.gone[S.ngone++] = p;
}

/* A dmis block was freed (with its true size): into the quarantine, pushing old ones out. */
static void fc_dmis_freed(unsigned char *p, size_t size) {
    if (S.q_max == 0 || size > S.q_max_bytes) {
        fc_gone(p);
        return;
    }
    while (S.qn == S.q_max || S.qbytes + size > S.q_max_bytes) {
        if (S.q[0].dirty) S.m_corrupt++;   /* the write after free shows when it leaves */
        S.qbytes -= S.q[0].size;
        fc_gone(S.q[0].p);
        memmove(S.q, S.q + 1, --S.qn * sizeof *S.q);
    }
    S.q[S.qn].p = p;
    S.q[S.qn].size = size;
    S.q[S.qn].dirty = false;
    S.qn++;
    S.qbytes += size;
}

static void fc_blk_remove(size_t i) { S.blk[i] = S.blk[--S.nblk]; }

/* The model's side of a successful free of block i. */
static void fc_blk_freed(size_t i) {
    fc_blk *b = &S.blk[i];
    if (fc_on_dmis(b->ai)) {
        if (b->damaged) S.m_corrupt++;
        fc_dmis_freed(b->p, b->size);
    } else if (b->ai == FC_FIXED) {
        fc_fixed_freed(b->p, b->size);
    }
    fc_blk_remove(i);
}

static int fc_pick_blk(void) {
    size_t start = fz_u8(&S.in);
    return S.nblk ? (int)(start % S.nblk) : -1;
}

static void op_blk_alloc(void) {
    int ai = fz_u8(&S.in) % FC_KINDS;
    uint8_t how = fz_u8(&S.in);
    size_t size = fc_size(&S.in, ai == FC_FIXED ? FC_FIXED_CAP / 8 : FC_BLK_MAX), align = fc_align(&S.in), count = 1;
    buffet_allocator a = fc_alloc_of(ai);
    uint64_t failures = S.fmis.failures;
    unsigned char *p = NULL, *want = NULL;
    buffet_result r = BUFFET_OK;
    bool armed = false, fits;
    fc_blk *b;
    if (S.nblk == FC_BLOCKS) return;
    if (ai == FC_FAILING && (how & 0x10)) {
        S.fmis.fail_at = S.fmis.allocs + 1;
        armed = true;
    }
    if (ai != FC_AD_HOOK && (how & 3) == 3) align = BUFFET_DEFAULT_ALIGN;   /* BUFFET_ALLOC's */
    if (ai != FC_AD_HOOK && (how & 3) == 2 && (how & 4)) {   /* an array of 3 */
        count = 3;
        if (size <= FC_FIXED_CAP) size /= 3;
        else if (fc_valgrind) size = SIZE_MAX / 2;   /* an overflowing product, not a 2^63-byte request */
    }
    if (ai == FC_FIXED && buffet_is_pow2(align) && size <= FC_FIXED_CAP) want = fc_fixed_next(size * count, align);
    if (ai == FC_AD_HOOK) {
        align = S.ad.align;
        size_t total;
        switch (how & 3) {
        case 0: p = (unsigned char *)buffet_adapter_malloc(&S.ad, size); break;
        case 1:
            /* count * size overflows for size > 2 (for size > 1 under valgrind: see fc_tame) */
            count = (how & 4) ? (fc_valgrind ? SIZE_MAX : SIZE_MAX / 2) : 1;
            p = (unsigned char *)buffet_adapter_calloc(&S.ad, count, size);
            size = buffet_mul(count, size, &total) ? total : SIZE_MAX;
            if (p) FZ_CHECK(p[0] == 0 && memcmp(p, p + 1, size - 1) == 0);
            break;
        case 2: p = (unsigned char *)buffet_adapter_realloc(&S.ad, NULL, size); break;
        default:
            if (size > 0xFFFF) size = 0;   /* zlib's sizes are unsigned ints */
            p = (unsigned char *)buffet_adapter_zalloc(&S.ad, 1, (unsigned)size);
            break;
        }
    } else {
        size_t total;
        switch (how & 3) {
        case 0: p = (unsigned char *)buffet_alloc(a, size, align, BUFFET_SITE); break;
        case 1: r = buffet_alloc_ex(a, size, align, BUFFET_SITE, (void **)&p); break;
        case 2:
            p = (unsigned char *)buffet_alloc_array(a, count, size, align, BUFFET_SITE);
            if (!buffet_mul(count, size, &total)) {
                FZ_CHECK(p == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
                total = SIZE_MAX;
            }
            size = total;
            break;
        default:
            p = (unsigned char *)BUFFET_ALLOC(a, size);
            break;
        }
        if ((how & 3) == 1) {
            if (!buffet_is_pow2(align)) FZ_CHECK(r == BUFFET_ERR_INVALID && p == NULL);
            else if (size == 0) FZ_CHECK(r == BUFFET_OK && p == NULL);
            else FZ_CHECK((r == BUFFET_OK) == (p != NULL));
        }
    }
    S.fmis.fail_at = 0;
    fits = size > 0 && size <= (ai == FC_FIXED ? FC_FIXED_CAP : FC_BLK_MAX) && buffet_is_pow2(align);
    if (!fits || (armed && S.fmis.failures == failures + 1) || (ai == FC_FIXED && !want)) {
        FZ_CHECK(p == NULL);
        if (armed && fits) FZ_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
        if (ai == FC_FIXED && fits) FZ_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
        return;
    }
    FZ_CHECK(p != NULL);
    if (ai == FC_FIXED) {
        FZ_CHECK(p == want);
        fc_fixed_took(p, size);
    }
    if (ai == FC_AD_FACE) align = align > S.ad.align ? align : S.ad.align;
    b = &S.blk[S.nblk++];
    b->ai = ai;
    b->p = p;
    b->size = size;
    b->align = align;
    b->pat = fc_new_pat();
    b->damaged = false;
    fc_fill(b, 0);
}

static void op_blk_free(void) {
    int i = fc_pick_blk();
    uint8_t how = fz_u8(&S.in);
    fc_blk *b;
    buffet_allocator a;
    if (i < 0) {
        buffet_free(buffet_debug_allocator(S.dmis), NULL, 1, 16, BUFFET_SITE);   /* NULL: nothing */
        buffet_adapter_free(&S.ad, NULL);
        return;
    }
    b = &S.blk[i];
    a = fc_alloc_of(b->ai);
    if (b->ai == FC_AD_HOOK || b->ai == FC_AD_FACE) {
        /* either face frees what the other allocated */
        if (how & 1) buffet_adapter_free(&S.ad, b->p);
        else if (how & 2) buffet_adapter_zfree(&S.ad, b->p);
        else buffet_free(buffet_adapter_allocator(&S.ad), b->p, b->size, b->align, BUFFET_SITE);
    } else if (how & 1) {
        FZ_CHECK(buffet_free_ex(a, b->p, b->size, 3, BUFFET_SITE) == BUFFET_ERR_INVALID);   /* nothing freed */
        return;
    } else if (how & 2) {
        FZ_CHECK(buffet_free_ex(a, b->p, b->size, b->align, BUFFET_SITE) == BUFFET_OK);
    } else {
        buffet_free_array(a, b->p, 1, b->size, b->align, BUFFET_SITE);
    }
    fc_blk_freed((size_t)i);
}

/* Resize in place, or realloc; a refusal leaves the block as it was. */
static void op_blk_resize(void) {
    int i = fc_pick_blk();
    uint8_t how = fz_u8(&S.in);
    size_t new_size, keep;
    fc_blk *b;
    buffet_allocator a;
    uint64_t failures = S.fmis.failures;
    bool armed = false;
    if (i < 0) return;
    b = &S.blk[i];
    /* A damaged block's resize is refused once the damage is told (whichever path reaches the
       debug allocator first): the check op and the free model that telling, so skip it here. */
    if (b->damaged) return;
    new_size = fc_size(&S.in, FC_BLK_MAX);
    a = fc_alloc_of(b->ai);
    if (b->ai == FC_FAILING && (how & 0x10)) {
        S.fmis.fail_at = S.fmis.allocs + 1;
        armed = true;
    }
    keep = new_size < b->size ? new_size : b->size;
    if (b->ai == FC_AD_HOOK || (b->ai == FC_AD_FACE && (how & 2))) {   /* either face's block */
        unsigned char *p = (unsigned char *)buffet_adapter_realloc(&S.ad, b->p, new_size);
        if (new_size == 0) {
            FZ_CHECK(p == NULL);
            fc_blk_remove((size_t)i);
            return;
        }
        if (!p) {
            FZ_CHECK(new_size > FC_BLK_MAX);
            return;
        }
        FZ_CHECK(new_size <= FC_BLK_MAX && ((uintptr_t)p & (b->align - 1)) == 0);
        for (keep = 0; keep < (new_size < b->size ? new_size : b->size); keep++) FZ_CHECK(p[keep] == b->pat);
        b->p = p;
        b->size = new_size;
    } else if (how & 1) {
        bool fixed_last = b->ai == FC_FIXED && fc_fixed_is_last(b->p, b->size);
        bool ok = buffet_resize(a, b->p, b->size, new_size, b->align);
        S.fmis.fail_at = 0;
        if (new_size == 0) FZ_CHECK(!ok);
        if (new_size == b->size) FZ_CHECK(ok);
        if (new_size > FC_BLK_MAX && b->ai != FC_FIXED) FZ_CHECK(!ok);
        if (b->ai == FC_AD_FACE && new_size != b->size) FZ_CHECK(!ok);   /* no resize in place */
        if (b->ai == FC_FIXED && new_size && new_size != b->size) {
            /* the last block grows to the end of the buffer; any block shrinks */
            bool want = fixed_last ? new_size <= S.fx_cap - S.fx_last : new_size < b->size;
            FZ_CHECK(ok == want);
            if (ok && fixed_last) S.fx_used = S.fx_last + new_size;
        }
        if (!ok) return;
        b->size = new_size;
    } else {
        unsigned char *want_fixed = NULL, *p;
        bool fixed_grows = new_size == b->size;   /* the same size: the same block */
        if (b->ai == FC_FIXED && new_size && new_size != b->size) {
            /* in place when it can, else a new block (which becomes the last; the old one's free
               is then a no-op) */
            fixed_grows = fc_fixed_is_last(b->p, b->size) ? new_size <= S.fx_cap - S.fx_last : new_size < b->size;
            if (!fixed_grows) want_fixed = fc_fixed_next(new_size, b->align);
        }
        p = (unsigned char *)buffet_realloc(a, b->p, b->size, new_size, b->align, BUFFET_SITE);
        S.fmis.fail_at = 0;
        if (new_size == 0) {
            FZ_CHECK(p == NULL);
            fc_blk_freed((size_t)i);
            return;
        }
        if (!p) {
            FZ_CHECK(new_size > FC_BLK_MAX || (armed && S.fmis.failures > failures) || (b->ai == FC_FIXED && !fixed_grows && !want_fixed));
            return;
        }
        FZ_CHECK(new_size <= (b->ai == FC_FIXED ? FC_FIXED_CAP : FC_BLK_MAX));
        FZ_CHECK(((uintptr_t)p & (b->align - 1)) == 0);
        for (keep = 0; keep < (new_size < b->size ? new_size : b->size); keep++) FZ_CHECK(p[keep] == b->pat);
        if (b->ai == FC_FIXED) {
            if (fixed_grows) {
                FZ_CHECK(p == b->p);
                if (fc_fixed_is_last(b->p, b->size)) S.fx_used = S.fx_last + new_size;
            } else {
                FZ_CHECK(p == want_fixed);
                fc_fixed_took(p, new_size);   /* the old block is not the last now: its free is a no-op */
            }
        }
        if (fc_on_dmis(b->ai) && p != b->p) {
            fc_dmis_freed(b->p, b->size);   /* moved: the old block went to the quarantine */
        }
        b->p = p;
        b->size = new_size;
    }
    fc_fill(b, keep);
}

/* Misuse of the debug allocator: each must be refused, counted and logged exactly once. */
static void op_dmis_misuse(void) {
    uint8_t what = fz_u8(&S.in) % 8;
    buffet_allocator a = buffet_debug_allocator(S.dmis);
    int i = fc_pick_blk();
    size_t k;
    unsigned char local[32];
    switch (what) {
    case 0:   /* double free, while the block waits in the quarantine */
        if (!S.qn) return;
        k = fz_u8(&S.in) % S.qn;
        buffet_free_ex(a, S.q[k].p, S.q[k].size, 16, BUFFET_SITE);
        S.m_double++;
        return;
    case 1: {  /* double free long after: foreign (unless the address came back from the heap) */
        unsigned char *p;
        size_t j;
        if (!S.ngone) return;
        p = S.gone[fz_u8(&S.in) % S.ngone];
        for (j = 0; j < S.nblk; j++)
            if (fc_on_dmis(S.blk[j].ai) && S.blk[j].p == p) return;   /* the same address is live again */
        for (j = 0; j < S.qn; j++)
            if (S.q[j].p == p) return;
        buffet_free_ex(a, p, 1, 16, BUFFET_SITE);
        S.m_foreign++;
        return;
    }
    case 2:   /* a pointer it never gave: the stack, the heap, or inside a live block */
        if (i >= 0 && fc_on_dmis(S.blk[i].ai) && (fz_u8(&S.in) & 1)) buffet_free_ex(a, S.blk[i].p + 1, 1, 1, BUFFET_SITE);
        else buffet_free_ex(a, local, sizeof local, 16, BUFFET_SITE);
        S.m_foreign++;
        return;
    case 3:   /* the wrong size or alignment: counted, and the block still freed right */
        if (i < 0 || !fc_on_dmis(S.blk[i].ai)) return;
        if (fz_u8(&S.in) & 1) buffet_free(a, S.blk[i].p, S.blk[i].size + 1, S.blk[i].align, BUFFET_SITE);
        else buffet_free(a, S.blk[i].p, S.blk[i].size, S.blk[i].align * 2, BUFFET_SITE);
        S.m_mismatch++;
        fc_blk_freed((size_t)i);
        return;
    case 4:   /* resize with the wrong old size, of a freed block, of a foreign pointer */
        if (i >= 0 && fc_on_dmis(S.blk[i].ai) && !S.blk[i].damaged) {
            FZ_CHECK(!buffet_resize(a, S.blk[i].p, S.blk[i].size + 1, (S.blk[i].size + 1) * 2, S.blk[i].align));
            S.m_mismatch++;
        } else if (S.qn) {
            FZ_CHECK(!buffet_resize(a, S.q[0].p, S.q[0].size, S.q[0].size * 2 + 1, 16));
            S.m_double++;
        } else {
            FZ_CHECK(!buffet_resize(a, local, 8, 16, 8));
            S.m_foreign++;
        }
        return;
    case 5: {  /* an overrun or underrun into the guards: found at free */
        fc_blk *b;
        size_t d;
        if (i < 0 || !fc_on_dmis(S.blk[i].ai) || S.blk[i].damaged) return;
        b = &S.blk[i];
        d = 1 + fz_u8(&S.in) % S.guard;
        if (fz_u8(&S.in) & 1) b->p[b->size + d - 1] = 0;
        else b->p[-(ptrdiff_t)d] = 0;
        b->damaged = true;
        return;
    }
    case 6:   /* a write after free: found when the block leaves the quarantine, or by a check */
#if !BUFFET_TRACK_ASAN   /* under ASan the quarantine is poisoned: ASan itself would stop us */
        if (!S.qn) return;
        k = fz_u8(&S.in) % S.qn;
        if (!S.q[k].size) return;
        S.q[k].p[fz_u8(&S.in) % S.q[k].size] = 0x5A;
        S.q[k].dirty = true;
#endif
        return;
    default: {
        size_t j, dirty = 0;
        buffet_result r;
        /* damaged guards of live blocks are told once and repaired: their free stays quiet */
        for (j = 0; j < S.nblk; j++) {
            if (fc_on_dmis(S.blk[j].ai) && S.blk[j].damaged) {
                dirty++;
                S.blk[j].damaged = false;
            }
        }
        for (j = 0; j < S.qn; j++) {
            dirty += S.q[j].dirty;
            S.q[j].dirty = false;   /* reported once: the poison is restored */
        }
        r = buffet_debug_check(S.dmis);
        FZ_CHECK(r == (dirty ? BUFFET_ERR_CORRUPT : BUFFET_OK));
        S.m_corrupt += dirty;
        FZ_CHECK(buffet_debug_check(S.dmis) == BUFFET_OK);   /* and only once */
        return;
    }
    }
}

/* The fixed allocator: reset, and frees it must ignore (foreign: logged; interior, stale). */
static void op_fixed(void) {
    uint8_t what = fz_u8(&S.in) % 4;
    buffet_allocator a = buffet_fixed_allocator(&S.fx);
    unsigned char local[16];
    size_t i;
    switch (what) {
    case 0:   /* reset: every block is forgotten; their pointers go stale */
        for (i = 0; i < S.nblk;) {
            if (S.blk[i].ai != FC_FIXED) { i++; continue; }
            if (S.nstale < FC_GONE) {
                S.stale[S.nstale] = S.blk[i].p;
                S.stale_size[S.nstale++] = S.blk[i].size;
            }
            fc_blk_remove(i);
        }
        buffet_fixed_reset(&S.fx);
        buffet_fixed_reset(NULL);
        S.fx_used = 0;
        S.fx_last = SIZE_MAX;
        return;
    case 1:
        buffet_free_ex(a, local, sizeof local, 1, BUFFET_SITE);   /* also over mem NULL, cap 0 */
        S.m_fx_foreign++;
        return;
    case 2: {  /* a stale pointer from before the reset */
        size_t k;
        if (!S.nstale) return;
        k = fz_u8(&S.in) % S.nstale;
        /* A stale pointer equal to the newest block (same address, same size) would free that
           live block: a bump allocator cannot tell the two apart (the manual says so). Only the
           harmless ones here. */
        if (fc_fixed_is_last(S.stale[k], S.stale_size[k])) return;
        buffet_free_ex(a, S.stale[k], S.stale_size[k], 1, BUFFET_SITE);
        return;
    }
    default:   /* inside a live block, or a live block with the wrong size: ignored */
        for (i = 0; i < S.nblk; i++) {
            const fc_blk *b = &S.blk[i];
            if (b->ai != FC_FIXED) continue;
            if (b->size > 1) buffet_free_ex(a, b->p + 1, b->size - 1, 1, BUFFET_SITE);
            if (!fc_fixed_is_last(b->p, b->size + 1)) buffet_free_ex(a, b->p, b->size + 1, 1, BUFFET_SITE);
            return;
        }
        return;
    }
}

/* ---------------------------------------------------------------------------------------------
   One input */

static void fc_setup(void) {
    static const size_t guards[8] = {0, 8, 16, 16, 24, 32, 64, 16};
    static const size_t qcounts[8] = {0, 1, 2, 3, 5, 8, 16, SIZE_MAX};
    static const size_t qbytes[4] = {0, 256, 2048, 64};
    static const size_t ad_aligns[4] = {0, 32, 64, 4096};
    buffet_debug_desc dd;
    buffet_fixed_desc fd;
    uint8_t cfg = fz_u8(&S.in), cfg2 = fz_u8(&S.in);
    size_t fx_off, i;
    fz_in in = S.in;
    memset(&S, 0, sizeof S);
    S.in = in;
    memset(&dd, 0, sizeof dd);
    dd.log = bt_logger(&S.lbuf);
    FZ_CHECK(buffet_debug_create(&S.dbuf, &dd) == BUFFET_OK);
    dd.log = bt_logger(&S.lch);
    FZ_CHECK(buffet_debug_create(&S.dch, &dd) == BUFFET_OK);
    dd.log = bt_logger(&S.lad);
    FZ_CHECK(buffet_debug_create(&S.dad, &dd) == BUFFET_OK);
    dd.log = bt_logger(&S.lmis);
    dd.guard_size = guards[cfg & 7];
    dd.quarantine_count = qcounts[cfg >> 3 & 7];
    dd.quarantine_bytes = qbytes[cfg >> 6 & 3];
    FZ_CHECK(buffet_debug_create(&S.dmis, &dd) == BUFFET_OK);
    S.guard = dd.guard_size ? dd.guard_size : 16;
    S.q_max = dd.quarantine_count == 0 ? 64 : dd.quarantine_count == SIZE_MAX ? 0 : dd.quarantine_count;
    S.q_max_bytes = dd.quarantine_bytes ? dd.quarantine_bytes : (size_t)1 << 20;
    buffet_failing_init(&S.fch, buffet_debug_allocator(S.dch), 0, false);
    buffet_failing_init(&S.fmis, buffet_debug_allocator(S.dmis), 0, false);
    FZ_CHECK(buffet_chain_init(&S.ch[0].c, buffet_heap()) == BUFFET_OK);
    FZ_CHECK(buffet_chain_init(&S.ch[1].c, buffet_debug_allocator(S.dch)) == BUFFET_OK);
    FZ_CHECK(buffet_chain_init(&S.ch[2].c, buffet_failing_allocator(&S.fch)) == BUFFET_OK);
    FZ_CHECK(buffet_adapter_init(&S.ad, buffet_debug_allocator(S.dad), ad_aligns[cfg2 & 3]) == BUFFET_OK);
    FZ_CHECK(S.ad.align == (ad_aligns[cfg2 & 3] ? ad_aligns[cfg2 & 3] : 16));
    /* the fixed buffer: any start alignment, any capacity, or none at all (mem NULL, cap 0) */
    fx_off = (cfg2 >> 2) & 63;
    S.fx_cap = (cfg2 & 0x80) ? 0 : FC_FIXED_CAP - (size_t)fz_u8(&S.in) * 8;
    S.fx_base = S.fx_cap || !(cfg2 & 0x40) ? fc_fixed_mem + fx_off : NULL;
    memset(&fd, 0, sizeof fd);
    fd.mem = S.fx_base;
    fd.cap = S.fx_cap;
    fd.log = bt_logger(&S.lfx);
    FZ_CHECK(buffet_fixed_init(&S.fx, &fd) == BUFFET_OK);
    S.fx_last = SIZE_MAX;
    for (i = 0; i < FC_SLICES; i++) S.sl_rec[i] = -1;
}

static void fc_teardown(void) {
    size_t i;
    buffet_debug_stats st;
    for (i = 0; i < FC_SLICES; i++) {
        if (!S.sl[i].buf) continue;
        S.rec[S.sl_rec[i]].slices--;
        buffet_slice_release(&S.sl[i]);
    }
    for (i = 0; i < FC_RECS; i++)
        while (S.rec[i].b && S.rec[i].ours) {
            buffet_buf_unref(S.rec[i].b);
            S.rec[i].ours--;
        }
    for (i = 0; i < FC_CHAINS; i++) {
        buffet_chain_deinit(&S.ch[i].c);
        S.ch[i].n = S.ch[i].len = 0;
    }
    fc_settle();
    for (i = 0; i < FC_RECS; i++) FZ_CHECK(S.rec[i].b == NULL);
    while (S.nblk) {
        fc_blk *b = &S.blk[S.nblk - 1];
        if (b->ai == FC_AD_HOOK) buffet_adapter_free(&S.ad, b->p);
        else buffet_free(fc_alloc_of(b->ai), b->p, b->size, b->align, BUFFET_SITE);
        fc_blk_freed(S.nblk - 1);
    }
    fc_check_all();
    /* nothing leaked anywhere */
    FZ_CHECK(buffet_debug_report_leaks(S.dbuf, NULL) == 0 && buffet_debug_report_leaks(S.dch, NULL) == 0);
    FZ_CHECK(buffet_debug_report_leaks(S.dad, NULL) == 0 && buffet_debug_report_leaks(S.dmis, NULL) == 0);
    st = buffet_debug_get_stats(S.dmis);
    FZ_CHECK(st.live_count == 0 && st.live_bytes == 0);
    FZ_CHECK(S.lbuf.count[-BUFFET_ERR_LEAK] + S.lch.count[-BUFFET_ERR_LEAK] + S.lad.count[-BUFFET_ERR_LEAK] + S.lmis.count[-BUFFET_ERR_LEAK] == 0);
    buffet_adapter_deinit(&S.ad);
    FZ_CHECK(buffet_adapter_malloc(&S.ad, 8) == NULL);   /* a deinit'd adapter refuses */
    buffet_failing_deinit(&S.fch);
    buffet_failing_deinit(&S.fmis);
    buffet_fixed_deinit(&S.fx);
    buffet_debug_destroy(S.dbuf);
    buffet_debug_destroy(S.dch);
    buffet_debug_destroy(S.dad);
    buffet_debug_destroy(S.dmis);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fc_valgrind = FC_ON_VALGRIND();
    S.in.p = data;
    S.in.n = size;
    fc_setup();
    fc_check_all();
    while (fz_more(&S.in)) {
        switch (fz_u8(&S.in) % 16) {
        case 0: op_buf_create(); break;
        case 1: op_buf_ref(); break;
        case 2: op_buf_bytes(); break;
        case 3: op_slice(); break;
        case 4: op_chain_add(false); break;
        case 5: op_chain_add(true); break;
        case 6: op_chain_concat(); break;
        case 7: op_chain_split(); break;
        case 8: op_chain_consume(); break;
        case 9: op_chain_read(); break;
        case 10: op_chain_reset(); break;
        case 11: op_blk_alloc(); break;
        case 12: op_blk_free(); break;
        case 13: op_blk_resize(); break;
        case 14: op_dmis_misuse(); break;
        default: op_fixed(); break;
        }
        fc_settle();
        fc_check_all();
    }
    fc_teardown();
    return 0;
}
