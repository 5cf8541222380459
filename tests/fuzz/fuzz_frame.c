/* fuzz_frame.c - libFuzzer target for buffet_frame.h. The input is a program: each operation is a
   byte (what) followed by its arguments, applied to a frame arena (its frame allocator, frames,
   checkpoints and rollbacks, transfers), two object pools with two caches, and two nested scopes,
   all over a failing allocator (the program may arm the next few parent allocations to fail)
   over a debug allocator (guards, leaks). Next to them a plain reference model keeps what must
   hold: every live frame block, pool object and scope block carries its own fill pattern, and
   after every step each of their bytes is compared, the blocks are checked not to overlap, the
   counters (misuse, failures, double and foreign puts) are compared with the model's, and the
   pools' objects are all accounted for. Misuse is part of the alphabet and must be refused: a
   rollback to a stale checkpoint (another arena's, an earlier frame's, one the arena went back
   below), a resize or free of a transferred block, a pool object put twice, a pointer that is no
   object of the pool, a scope begun twice.

   libFuzzer: clang -x c -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -I. -Itests/fuzz \
              tests/fuzz/fuzz_frame.c -o /tmp/ff && /tmp/ff tests/fuzz/corpus/frame
   replay:    gcc (or g++ -x c++ -std=c++17) -DBUFFET_FUZZ_MAIN ... && ./ff tests/fuzz/corpus/frame */
#define BUFFET_IMPLEMENTATION
#include "buffet_frame.h"
#include "fuzz.h"

#define FF_BLOCKS 64      /* live frame blocks the model follows (more are not made) */
#define FF_CHAIN 256      /* allocations of the current frame that hold a place in the arena */
#define FF_MARKS 8
#define FF_TRANSFERS 12
#define FF_OBJS 96        /* pool objects out at once */
#define FF_KNOWN 32       /* objects known to be back in the pool (for double puts) */
#define FF_SCOPE_BLOCKS 32
#define FF_DEFERS 32
#define FF_BIG 4096       /* largest frame block the model fills (larger: only hostile sizes) */

/* The fill pattern: byte i of the block with id `id` is (id * 7 + i) mod 256, so that any run
   of it is a slice of one table and is written and compared whole (memset/memcmp speed, also
   under ASan). Blocks with ids apart by other than a multiple of 256 / 7 differ at every byte;
   overlaps are checked apart from it anyway. */
static unsigned char ff_table[512];
static const unsigned char *ff_run(uint32_t id, size_t off) {
    if (!ff_table[1]) {
        size_t i;
        for (i = 0; i < sizeof ff_table; i++) ff_table[i] = (unsigned char)i;
    }
    return ff_table + ((id * 7u + off) & 255u);
}
static void ff_fill(unsigned char *p, size_t n, uint32_t id, size_t off) {
    while (n) {
        size_t k = n < 256 ? n : 256;
        memcpy(p, ff_run(id, off), k);
        p += k;
        off += k;
        n -= k;
    }
}
static bool ff_intact(const unsigned char *p, size_t n, uint32_t id, size_t off) {
    while (n) {
        size_t k = n < 256 ? n : 256;
        if (memcmp(p, ff_run(id, off), k) != 0) return false;
        p += k;
        off += k;
        n -= k;
    }
    return true;
}

/* ---- the model ---- */
typedef struct ff_block {
    unsigned char *p;
    size_t size;
    uint32_t id;           /* pattern */
    uint64_t frame;
    uint64_t entry;        /* the chain entry holding its place (0: none, an earlier frame's) */
    bool transferred;      /* handed on this frame: the arena must not resize or free it */
} ff_block;

/* An allocation that holds a place in the current frame, oldest first. `gen` changes when the
   place changes (a resize, or part of a batch given back): a mark on top of it is then stale. */
typedef struct ff_entry {
    uint64_t uid, gen;
    unsigned blocks;       /* live model blocks of it (a batch has several) */
    bool transferred;      /* a rollback below it must be refused */
} ff_entry;

typedef struct ff_mark {
    buffet_frame_mark m;
    bool used, other;      /* other: taken in arena B */
    uint64_t frame;
    size_t len;            /* chain length when taken */
    uint64_t top_gen;      /* the top entry's gen then (0: empty chain) */
    size_t low;            /* the lowest the arena's position (bytes charged) has been since */
} ff_mark;

typedef struct ff_transfer {
    buffet_frame_transfer *t;
    unsigned char *p;
    size_t size, off;      /* the range, and its offset in its block */
    uint32_t id;           /* the block's pattern */
    bool received;
} ff_transfer;

typedef struct ff_obj { unsigned char *p; uint32_t id; } ff_obj;

typedef struct ff_scope_block { unsigned char *p; size_t size; uint32_t id; } ff_scope_block;

typedef struct ff {
    buffet_debug *dbg;
    buffet_failing fail;
    buffet_allocator parent;
    /* frames */
    buffet_frame_arena *a, *b;
    buffet_allocator fa;
    uint32_t in_flight;
    size_t chunk_size;
    bool in_frame, b_in_frame;
    uint64_t frame;
    ff_block blocks[FF_BLOCKS];
    unsigned nblocks;
    ff_entry chain[FF_CHAIN];
    unsigned nchain;
    uint64_t next_uid, next_gen;
    unsigned drops;        /* drops this frame with a mark taken before them */
    bool mark_since_drop;
    ff_mark marks[FF_MARKS];
    ff_transfer transfers[FF_TRANSFERS];
    unsigned ntransfers;
    uint64_t misuse, failures;
    unsigned tags;
    /* pools */
    buffet_pool *p1, *p2;
    buffet_pool_cache *c[2];
    buffet_pool_cache *c2;  /* a cache of p2 */
    size_t obj_size, obj_align, max;
    ff_obj objs[FF_OBJS];
    unsigned nobjs;
    void *known[FF_KNOWN]; /* objects put back (each in the pool now, or handed out again: see ff_known_drop) */
    unsigned nknown;
    unsigned char *foreign_obj;   /* one of p2's objects, out for the whole run */
    uint64_t double_puts, foreign_puts, pool_failures;
    /* scopes */
    buffet_scope s, inner;
    bool s_active, inner_active;
    ff_scope_block sblocks[FF_SCOPE_BLOCKS];
    unsigned nsblocks;
    int defers_ran[FF_DEFERS * 2];
    unsigned ndefers_ran, ndefers, inner_defers;
    uint32_t next_id;
} ff;

static ff F;

static void ff_defer_fn(void *arg) {
    int v = (int)(intptr_t)arg;
    if (F.ndefers_ran < sizeof F.defers_ran / sizeof F.defers_ran[0]) F.defers_ran[F.ndefers_ran++] = v;
}

static uint64_t ff_injected(void) { return BUFFET__LOAD(&F.fail.failures, BUFFET__RELAXED); }

/* ---- frame model helpers ---- */
static ff_entry *ff_entry_of(uint64_t uid) {
    unsigned i;
    for (i = 0; i < F.nchain; i++)
        if (F.chain[i].uid == uid) return &F.chain[i];
    return NULL;
}

static void ff_block_remove(unsigned i) {
    ff_entry *e = ff_entry_of(F.blocks[i].entry);
    if (e && e->blocks) e->blocks--;
    F.blocks[i] = F.blocks[--F.nblocks];
}

/* The arena's position went down (a give-back, a rollback, a resize): marks taken before may
   now be stale; the implementation keeps BUFFET__FRAME_DROPS such drops exactly. */
static void ff_dropped(void) {
    if (F.mark_since_drop) F.drops++;
    F.mark_since_drop = false;
}

/* Pop chain entries down to n: their blocks die. */
static void ff_chain_pop_to(unsigned n) {
    while (F.nchain > n) {
        uint64_t uid = F.chain[F.nchain - 1].uid;
        unsigned i;
        for (i = F.nblocks; i-- > 0;)
            if (F.blocks[i].entry == uid) F.blocks[i] = F.blocks[--F.nblocks];
        F.nchain--;
    }
}

static uint64_t ff_chain_push(bool transferred) {
    ff_entry *e;
    FZ_CHECK(F.nchain < FF_CHAIN);
    e = &F.chain[F.nchain++];
    e->uid = ++F.next_uid;
    e->gen = ++F.next_gen;
    e->blocks = 0;
    e->transferred = transferred;
    return e->uid;
}

static void ff_add_block(unsigned char *p, size_t size, uint64_t entry) {
    ff_block *b;
    ff_entry *e = ff_entry_of(entry);
    FZ_CHECK(F.nblocks < FF_BLOCKS);
    b = &F.blocks[F.nblocks++];
    b->p = p;
    b->size = size;
    b->id = ++F.next_id;
    b->frame = F.frame;
    b->entry = entry;
    b->transferred = false;
    if (e) e->blocks++;
    ff_fill(p, size, b->id, 0);
}

/* Frame k+N begins: frame k's blocks die (their transferred ranges live on in F.transfers). */
static void ff_frame_began(void) {
    unsigned i;
    for (i = F.nblocks; i-- > 0;)
        if (F.blocks[i].frame + F.in_flight <= F.frame) F.blocks[i] = F.blocks[--F.nblocks];
    for (i = 0; i < F.nblocks; i++) F.blocks[i].entry = 0;
    F.nchain = 0;
    F.drops = 0;
    F.mark_since_drop = false;
}

/* ---- checks after every step ---- */
typedef struct ff_range { uintptr_t lo, hi; } ff_range;
static int ff_range_cmp(const void *x, const void *y) {
    const ff_range *a = (const ff_range *)x, *b = (const ff_range *)y;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}
/* No two of the n ranges overlap (sorted by start, each ends before the next begins). */
static bool ff_disjoint(ff_range *r, unsigned n) {
    unsigned i;
    qsort(r, n, sizeof r[0], ff_range_cmp);
    for (i = 1; i < n; i++)
        if (r[i].lo < r[i - 1].hi) return false;
    return true;
}

static void ff_check_all(void) {
    ff_range r[FF_OBJS + FF_BLOCKS];
    unsigned i, n = 0;
    buffet_frame_stats fs;
    buffet_pool_stats ps;
    size_t out_here = 0;
    for (i = 0; i < F.nblocks; i++) {
        FZ_CHECK(ff_intact(F.blocks[i].p, F.blocks[i].size, F.blocks[i].id, 0));
        r[n].lo = (uintptr_t)F.blocks[i].p;
        r[n++].hi = (uintptr_t)F.blocks[i].p + F.blocks[i].size;
    }
    FZ_CHECK(ff_disjoint(r, n));
    for (i = 0; i < F.ntransfers; i++) FZ_CHECK(ff_intact(F.transfers[i].p, F.transfers[i].size, F.transfers[i].id, F.transfers[i].off));
    fs = buffet_frame_get_stats(F.a);
    for (i = 0; i < FF_MARKS; i++)
        if (F.marks[i].used && !F.marks[i].other && F.in_frame && F.marks[i].frame == F.frame && fs.bytes < F.marks[i].low)
            F.marks[i].low = fs.bytes;
    FZ_CHECK(fs.misuse == F.misuse);
    FZ_CHECK(fs.failures == F.failures);
    FZ_CHECK(fs.frame == F.frame);
    /* pools: every object out is intact and distinct, and every object is somewhere */
    for (n = 0, i = 0; i < F.nobjs; i++) {
        FZ_CHECK(ff_intact(F.objs[i].p, F.obj_size, F.objs[i].id, 0));
        FZ_CHECK(((uintptr_t)F.objs[i].p & (F.obj_align - 1)) == 0);
        r[n].lo = (uintptr_t)F.objs[i].p;
        r[n++].hi = (uintptr_t)F.objs[i].p + F.obj_size;
        out_here++;
    }
    FZ_CHECK(ff_disjoint(r, n));
    ps = buffet_pool_get_stats(F.p1);
    FZ_CHECK(ps.created == ps.in_store + F.c[0]->count + F.c[1]->count + out_here);
    FZ_CHECK(ps.double_puts == F.double_puts && ps.foreign_puts == F.foreign_puts);
    FZ_CHECK(ps.failures == F.pool_failures);
    FZ_CHECK(F.max == 0 || ps.created <= F.max);
    ps = buffet_pool_get_stats(F.p2);
    FZ_CHECK(ps.double_puts == 0 && ps.foreign_puts == 0);
    /* scopes */
    for (i = 0; i < F.nsblocks; i++) FZ_CHECK(ff_intact(F.sblocks[i].p, F.sblocks[i].size, F.sblocks[i].id, 0));
    FZ_CHECK(!F.s_active || F.s.count == F.nsblocks);
}

/* ---- sizes and alignments from the input ---- */
static size_t ff_size(fz_in *in) {
    size_t n = fz_size(in, 300);
    /* Sizes the model cannot fill are kept only when hostile (past what any chunk can be). */
    if (n > FF_BIG && n <= ((size_t)1 << 48)) n = 1 + (n & (FF_BIG - 1));
    return n;
}
static size_t ff_align(fz_in *in) {
    uint8_t k = fz_u8(in);
    if (k >= 0xFC) return (k & 1) ? 3 : 0;    /* not a power of two */
    if (k >= 0xF0) return (size_t)1 << (8 + (k & 3) * 4 / 3);   /* 256 to 4096: padding, oversized chunks */
    return (size_t)1 << (k & 7);
}

/* What a frame allocation of size at align must do now: -1 nothing counted (size 0), 0 succeed
   (or fail by an injected parent failure), 1 fail counted, 2 fail counted as misuse too. */
static int ff_expect_alloc(size_t size, size_t align) {
    if (size == 0) return -1;
    if (!buffet_is_pow2(align)) return 1;
    if (!F.in_frame) return 2;
    if (size > ((size_t)1 << 48)) return 1;
    return 0;
}

/* One frame allocation through `how` (0: buffet_frame_alloc, 1: the allocator, 2: an array). */
static void ff_op_alloc(fz_in *in, int how) {
    size_t size = ff_size(in), align = ff_align(in), count = 1;
    uint64_t inj = ff_injected();
    unsigned char *p;
    int want;
    if (how == 2) {
        count = fz_u8(in) & 7;
        if (fz_u8(in) & 1) count = SIZE_MAX / 3;
        if (count == 0) count = 1;
    }
    if (how == 1 && (size == 0 || !buffet_is_pow2(align))) return;   /* buffet_alloc's own checks, not the arena's */
    if (F.nblocks == FF_BLOCKS || F.nchain == FF_CHAIN) return;
    want = ff_expect_alloc(count > 1 && size && size > SIZE_MAX / count ? SIZE_MAX : size * count, align);
    if (how == 0) p = (unsigned char *)buffet_frame_alloc(F.a, size, align);
    else if (how == 1) p = (unsigned char *)buffet_alloc(F.fa, size, align, BUFFET_SITE);
    else p = (unsigned char *)buffet_frame_alloc_array(F.a, count, size, align);
    if (want == -1) {
        FZ_CHECK(p == NULL);
        return;
    }
    if (want > 0) {
        FZ_CHECK(p == NULL);
        F.failures++;
        if (want == 2) F.misuse++;
        return;
    }
    if (!p) {
        FZ_CHECK(ff_injected() > inj);   /* only a parent failure may refuse a sound request */
        F.failures++;
        return;
    }
    FZ_CHECK(((uintptr_t)p & (align - 1)) == 0);
    ff_add_block(p, size * count, ff_chain_push(false));
}

static void ff_op_batch(fz_in *in) {
    size_t n = fz_u8(in) % 9, size = fz_size(in, 64), align = ff_align(in), stride, total, i, got;
    uint64_t inj = ff_injected(), uid;
    void *out[8];
    int want;
    if (fz_u8(in) == 0xFF) n = SIZE_MAX / 2;   /* hostile count: overflows; out[] is never written */
    if (size > 64 && size <= ((size_t)1 << 48)) size = 64;
    if (F.nblocks + 8 > FF_BLOCKS || F.nchain == FF_CHAIN) return;
    if (n == 0 || size == 0) {
        FZ_CHECK(buffet_frame_alloc_batch(F.a, n, size, align, out) == 0);
        return;
    }
    total = SIZE_MAX;
    if (buffet_is_pow2(align) && buffet_align_up(size, align, &stride) && !buffet_mul(stride, n, &total)) total = SIZE_MAX;
    want = ff_expect_alloc(total, align);
    got = buffet_frame_alloc_batch(F.a, n, size, align, out);
    if (want > 0) {
        FZ_CHECK(got == 0);
        F.failures++;
        if (want == 2) F.misuse++;
        return;
    }
    if (got == 0) {
        FZ_CHECK(ff_injected() > inj);
        F.failures++;
        return;
    }
    FZ_CHECK(got == n && n <= 8);
    uid = ff_chain_push(false);
    for (i = 0; i < n; i++) {
        FZ_CHECK(((uintptr_t)out[i] & (align - 1)) == 0);
        ff_add_block((unsigned char *)out[i], size, uid);
    }
}

static ff_block *ff_pick_block(fz_in *in) {
    if (F.nblocks == 0) return NULL;
    return &F.blocks[fz_u8(in) % F.nblocks];
}

/* The block the arena's top is the end of (the only one a free or resize may change). */
/* The newest allocation: it ends at cur once its size is rounded up to the arena's 16-byte grain
   (a batch of objects under 16 bytes apart has none: it takes a grain more). */
static bool ff_is_top(const ff_block *b) {
    size_t held;
    if (!F.in_frame || b->p > F.a->cur) return false;
    held = (size_t)(F.a->cur - b->p);
    return b->size <= held && held - b->size < 16;
}

static void ff_op_resize(fz_in *in, bool via_allocator) {
    ff_block *b = ff_pick_block(in);
    size_t new_size = ff_size(in), old;
    bool top, ok;
    ff_entry *e;
    if (!b) return;
    if (new_size > FF_BIG) new_size = FF_BIG;
    top = ff_is_top(b);
    e = ff_entry_of(b->entry);
    old = b->size;
    ok = via_allocator ? buffet_resize(F.fa, b->p, b->size, new_size, 1) : buffet_frame_resize(F.a, b->p, b->size, new_size);
    if (new_size == 0 || (via_allocator && new_size == old)) {
        FZ_CHECK(ok == (new_size != 0));   /* buffet_resize answers these itself */
        return;
    }
    if (!top) {
        FZ_CHECK(!ok);
        return;
    }
    if (b->transferred) {
        FZ_CHECK(!ok);
        F.misuse++;
        return;
    }
    if (new_size < old) FZ_CHECK(ok);      /* a shrink always works */
    if (!ok || new_size == old) return;
    b->size = new_size;
    if (new_size > old) ff_fill(b->p + old, new_size - old, b->id, old);
    FZ_CHECK(e != NULL);
    e->gen = ++F.next_gen;
    ff_dropped();
}

static void ff_op_free(fz_in *in) {
    ff_block *b = ff_pick_block(in);
    bool top;
    const unsigned char *cur;
    ff_entry *e;
    if (!b) return;
    top = ff_is_top(b);
    cur = F.a->cur;
    buffet_free(F.fa, b->p, b->size, 1, BUFFET_SITE);
    if (top && b->transferred) {
        FZ_CHECK(F.a->cur == cur);
        F.misuse++;
        return;   /* refused: still the user's (and the receiver's) */
    }
    e = ff_entry_of(b->entry);
    if (top) {
        /* back to the block's start, or the grain after it (a batch's last object may start off it) */
        FZ_CHECK(F.a->cur == b->p + ((size_t)(0u - (uintptr_t)b->p) & 15));
        FZ_CHECK(e != NULL);
        ff_dropped();
        if (e == &F.chain[F.nchain - 1] && e->blocks == 1) {
            ff_block_remove((unsigned)(b - F.blocks));
            F.nchain--;
        } else {
            e->gen = ++F.next_gen;   /* the last object of a batch: the batch's place shrank */
            ff_block_remove((unsigned)(b - F.blocks));
        }
    } else {
        FZ_CHECK(F.a->cur == cur);
        ff_block_remove((unsigned)(b - F.blocks));   /* freed: the user's no more, reused when its frame goes */
    }
}

static void ff_op_realloc(fz_in *in) {
    ff_block *b = ff_pick_block(in);
    size_t new_size = ff_size(in), old, keep;
    bool top, transferred;
    uint32_t id;
    unsigned char *p, *oldp;
    uint64_t inj = ff_injected(), entry;
    if (!b || new_size == 0 || new_size > FF_BIG || F.nchain == FF_CHAIN) return;
    top = ff_is_top(b);
    old = b->size;
    oldp = b->p;
    id = b->id;
    transferred = b->transferred;
    entry = b->entry;
    if (!F.in_frame) {
        /* Outside a frame only the move's allocation is tried: refused as misuse. */
        p = (unsigned char *)buffet_realloc(F.fa, b->p, old, new_size, 1, BUFFET_SITE);
        if (new_size == old) {
            FZ_CHECK(p == oldp);
        } else {
            FZ_CHECK(p == NULL);
            F.misuse++;
            F.failures++;
        }
        return;
    }
    p = (unsigned char *)buffet_realloc(F.fa, b->p, old, new_size, 1, BUFFET_SITE);
    if (new_size == old) {
        FZ_CHECK(p == oldp);
        return;
    }
    if (top && transferred) F.misuse++;   /* the in-place resize is refused */
    if (p == oldp) {
        ff_entry *e = ff_entry_of(entry);
        FZ_CHECK(top && !transferred && e != NULL);
        b->size = new_size;
        if (new_size > old) ff_fill(p + old, new_size - old, id, old);
        e->gen = ++F.next_gen;
        ff_dropped();
        return;
    }
    if (!p) {
        FZ_CHECK(ff_injected() > inj);
        F.failures++;
        return;
    }
    /* Moved: the old block is freed (not the top any more, so it stays put until its frame goes). */
    keep = old < new_size ? old : new_size;
    FZ_CHECK(ff_intact(p, keep, id, 0));
    ff_block_remove((unsigned)(b - F.blocks));
    if (F.nblocks < FF_BLOCKS) ff_add_block(p, new_size, ff_chain_push(false));
    else ff_chain_push(false);
}

static void ff_op_checkpoint(fz_in *in) {
    ff_mark *k = &F.marks[fz_u8(in) % FF_MARKS];
    bool other = (fz_u8(in) & 7) == 0;
    k->used = true;
    k->other = other;
    k->m = buffet_frame_checkpoint(other ? F.b : F.a);
    k->frame = other ? 0 : (F.in_frame ? F.frame : 0);
    k->len = F.nchain;
    k->top_gen = F.nchain ? F.chain[F.nchain - 1].gen : 0;
    k->low = k->m.consumed;
    if (!other) F.mark_since_drop = true;
}

/* Is the mark's chunk, in the same use, one of the current frame's? (White-box: the arena's own
   list. A chunk a rollback let go may be put to use again later in the frame.) */
static bool ff_chunk_reachable(const buffet_frame_mark *m) {
    buffet__frame *a = buffet__frame_of(F.a);
    const buffet_frame_chunk *c;
    if (!m->chunk) return true;
    for (c = a->slots[a->frame % a->in_flight]; c; c = c->next)
        if (c == m->chunk) return c->use == m->chunk_use;
    return false;
}

static void ff_op_rollback(fz_in *in) {
    ff_mark *k = &F.marks[fz_u8(in) % FF_MARKS];
    buffet_result r, want_ok;
    bool valid, blocked = false;
    unsigned i;
    if (!k->used) return;
    /* Good: ours, this frame's, no allocation under it changed since (the chain), and the arena
       never went below it since (which alignment padding given back can do with the chain
       unchanged). */
    valid = !k->other && F.in_frame && k->frame == F.frame && k->len <= F.nchain &&
            (k->len == 0 ? true : F.chain[k->len - 1].gen == k->top_gen) && k->low >= k->m.consumed;
    if (valid)
        for (i = k->len; i < F.nchain; i++) blocked |= F.chain[i].transferred;
    r = buffet_frame_rollback(F.a, k->m);
    want_ok = valid && !blocked ? BUFFET_OK : BUFFET_ERR_STATE;
    if (r != want_ok) {
        /* Never a stale mark accepted. A good one may be refused: past BUFFET__FRAME_DROPS drops
           (kept exactly up to there), or taken at the start of a chunk a rollback has let go. */
        FZ_CHECK(r == BUFFET_ERR_STATE && (F.drops > BUFFET__FRAME_DROPS || !ff_chunk_reachable(&k->m)));
    }
    if (r != BUFFET_OK) {
        F.misuse++;
        return;
    }
    if (F.nchain > k->len) {
        ff_chain_pop_to((unsigned)k->len);
    }
    ff_dropped();
}

static void ff_op_begin(void) {
    buffet_result r = buffet_frame_begin(F.a);
    if (F.in_frame) {
        FZ_CHECK(r == BUFFET_ERR_STATE);
        F.misuse++;
        return;
    }
    FZ_CHECK(r == BUFFET_OK);
    F.in_frame = true;
    F.frame++;
    ff_frame_began();
    if (!F.b_in_frame) F.b_in_frame = buffet_frame_begin(F.b) == BUFFET_OK;
}

static void ff_op_end(void) {
    buffet_result r = buffet_frame_end(F.a);
    if (!F.in_frame) {
        FZ_CHECK(r == BUFFET_ERR_STATE);
        F.misuse++;
        return;
    }
    FZ_CHECK(r == BUFFET_OK);
    F.in_frame = false;
    if (F.b_in_frame && buffet_frame_end(F.b) == BUFFET_OK) F.b_in_frame = false;
}

static void ff_op_send(fz_in *in) {
    ff_block *b = ff_pick_block(in);
    size_t off = 0, len;
    buffet_frame_transfer *t;
    uint64_t inj = ff_injected();
    bool ok;
    if (!b || F.ntransfers == FF_TRANSFERS) return;
    len = b->size;
    if (fz_u8(in) & 1) {
        off = fz_u8(in) % b->size;
        len = 1 + fz_u8(in) % (b->size - off);
    }
    ok = F.in_frame && b->frame == F.frame;
    t = buffet_frame_transfer_send(F.a, b->p + off, len);
    if (!ok) {
        FZ_CHECK(t == NULL);
        F.misuse++;
        return;
    }
    if (!t) {
        FZ_CHECK(ff_injected() > inj);
        return;
    }
    F.transfers[F.ntransfers].t = t;
    F.transfers[F.ntransfers].p = b->p + off;
    F.transfers[F.ntransfers].size = len;
    F.transfers[F.ntransfers].off = off;
    F.transfers[F.ntransfers].id = b->id;
    F.transfers[F.ntransfers].received = false;
    F.ntransfers++;
    b->transferred = true;
    {
        ff_entry *e = ff_entry_of(b->entry);
        FZ_CHECK(e != NULL);
        e->transferred = true;
    }
}

static void ff_op_receive(fz_in *in) {
    ff_transfer *t;
    size_t size = 0;
    if (!F.ntransfers) return;
    t = &F.transfers[fz_u8(in) % F.ntransfers];
    FZ_CHECK(buffet_frame_transfer_receive(t->t, &size) == t->p && size == t->size);
    t->received = true;
}

static void ff_op_release(fz_in *in) {
    unsigned i;
    if (!F.ntransfers) return;
    i = fz_u8(in) % F.ntransfers;
    buffet_frame_transfer_release(F.transfers[i].t);
    F.transfers[i] = F.transfers[--F.ntransfers];
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool ff_utf8_ok(const unsigned char *p) {
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

static void ff_op_tag(fz_in *in) {
    static const char *const names[] = { "physics", "audio", "caf\xc3\xa9", "cut \xe2\x82", "\xff" };
    static char json[4096];
    buffet_result r;
    uint8_t k = fz_u8(in);
    if ((k & 6) == 6) {
        /* the stats as JSON: complete, and UTF-8 whatever the tag names are */
        size_t n = buffet_frame_stats_json(F.a, json, sizeof json);
        FZ_CHECK(n < sizeof json && strlen(json) == n && json[0] == '{' && json[n - 1] == '}');
        FZ_CHECK(ff_utf8_ok((const unsigned char *)json));
        n = buffet_pool_stats_json(F.p1, json, sizeof json);
        FZ_CHECK(n < sizeof json && ff_utf8_ok((const unsigned char *)json));
        return;
    }
    if (k & 1) {
        r = buffet_frame_push_tag(F.a, names[fz_u8(in) % 5]);
        if (r == BUFFET_OK) F.tags++;
        else FZ_CHECK(r == BUFFET_ERR_EXHAUSTED);
    } else {
        r = buffet_frame_pop_tag(F.a);
        if (F.tags) {
            FZ_CHECK(r == BUFFET_OK);
            F.tags--;
        } else {
            FZ_CHECK(r == BUFFET_ERR_STATE);
            F.misuse++;
        }
    }
}

/* ---- pools ---- */
static void ff_known_add(void *p) {
    if (F.nknown == FF_KNOWN) memmove(F.known, F.known + 1, (FF_KNOWN - 1) * sizeof F.known[0]), F.nknown--;
    F.known[F.nknown++] = p;
}
/* p was handed out again: no longer known to be in the pool. */
static void ff_known_drop(const void *p) {
    unsigned i;
    for (i = 0; i < F.nknown; i++)
        if (F.known[i] == p) {
            F.known[i] = F.known[--F.nknown];
            return;
        }
}

static void ff_got(void *p) {
    unsigned i;
    FZ_CHECK(F.nobjs < FF_OBJS);
    for (i = 0; i < F.nobjs; i++) FZ_CHECK(F.objs[i].p != p);   /* never out twice */
    ff_known_drop(p);
    F.objs[F.nobjs].p = (unsigned char *)p;
    F.objs[F.nobjs].id = ++F.next_id;
    ff_fill(F.objs[F.nobjs].p, F.obj_size, F.objs[F.nobjs].id, 0);
    F.nobjs++;
}

/* Could a get through cache c (NULL: the store) fail now, other than by an injected failure? */
static bool ff_pool_may_be_empty(buffet_pool_cache *c, size_t n) {
    buffet_pool_stats s = buffet_pool_get_stats(F.p1);
    size_t max = F.max ? F.max : (size_t)1 << 32;
    return n > (c ? c->count : 0) + s.in_store + (max - s.created);
}

static void ff_op_get(fz_in *in) {
    buffet_pool_cache *c = F.c[fz_u8(in) & 1];
    bool may_fail = ff_pool_may_be_empty(c, 1);
    uint64_t inj = ff_injected();
    void *p;
    if (F.nobjs == FF_OBJS) return;
    p = buffet_pool_get(c);
    if (!p) {
        FZ_CHECK(may_fail || ff_injected() > inj);
        F.pool_failures++;
        return;
    }
    ff_got(p);
}

static void ff_op_get_shared(void) {
    bool may_fail = ff_pool_may_be_empty(NULL, 1);
    uint64_t inj = ff_injected();
    void *p;
    if (F.nobjs == FF_OBJS) return;
    p = buffet_pool_get_shared(F.p1);
    if (!p) {
        FZ_CHECK(may_fail || ff_injected() > inj);
        F.pool_failures++;
        return;
    }
    ff_got(p);
}

static void ff_op_get_bulk(fz_in *in) {
    buffet_pool_cache *c = F.c[fz_u8(in) & 1];
    size_t n = fz_u8(in) % 17, got, i;
    bool may_fail;
    uint64_t inj = ff_injected();
    void *out[16];
    if (fz_u8(in) == 0xEE) {
        /* hostile: more than the pool can ever hold (out[] is not written) */
        FZ_CHECK(F.max == 0 || buffet_pool_get_bulk(c, out, F.max + 1) == 0);
        if (F.max) F.pool_failures++;
        return;
    }
    if (F.nobjs + n > FF_OBJS) return;
    may_fail = ff_pool_may_be_empty(c, n);
    got = buffet_pool_get_bulk(c, out, n);
    if (n == 0) {
        FZ_CHECK(got == 0);
        return;
    }
    if (got == 0) {
        FZ_CHECK(may_fail || ff_injected() > inj);
        F.pool_failures++;
        return;
    }
    FZ_CHECK(got == n && !may_fail);
    for (i = 0; i < n; i++) ff_got(out[i]);
}

static void ff_put_obj(unsigned i, int how) {
    void *p = F.objs[i].p;
    buffet_result r;
    F.objs[i] = F.objs[--F.nobjs];
    if (how == 2) r = buffet_pool_put_shared(F.p1, p);
    else r = buffet_pool_put(F.c[how], p);
    FZ_CHECK(r == BUFFET_OK);
    ff_known_add(p);
}

static void ff_op_put(fz_in *in) {
    int how = fz_u8(in) % 3;
    if (!F.nobjs) return;
    ff_put_obj(fz_u8(in) % F.nobjs, how);
}

static void ff_op_put_bulk(fz_in *in) {
    buffet_pool_cache *c = F.c[fz_u8(in) & 1];
    size_t n = fz_u8(in) % 17, i;
    void *objs[16];
    if (n > F.nobjs) n = F.nobjs;
    for (i = 0; i < n; i++) {
        objs[i] = F.objs[F.nobjs - 1].p;
        F.nobjs--;
        ff_known_add(objs[i]);
    }
    FZ_CHECK(buffet_pool_put_bulk(c, objs, n) == BUFFET_OK);
}

/* A double put: an object already back. Refused through every path, and never out twice. */
static void ff_op_double_put(fz_in *in) {
    int how = fz_u8(in) % 4;
    void *p, *two[2];
    buffet_result r;
    if (!F.nknown) return;
    p = F.known[fz_u8(in) % F.nknown];
    if (how == 3) {
        two[0] = p;
        two[1] = p;
        r = buffet_pool_put_bulk(F.c[0], two, 2);
        F.double_puts += 2;
    } else {
        r = how == 2 ? buffet_pool_put_shared(F.p1, p) : buffet_pool_put(F.c[how], p);
        F.double_puts++;
    }
    FZ_CHECK(r == BUFFET_ERR_DOUBLE_FREE);
}

/* A put of something that is no object of p1. */
static void ff_op_foreign_put(fz_in *in) {
    unsigned char local[32];
    int what = fz_u8(in) % 5, how = fz_u8(in) % 3;
    unsigned char *p;
    buffet_result r;
    switch (what) {
    case 0: p = local; break;
    case 1: p = F.foreign_obj; break;
    case 2:
        if (!F.nblocks) return;
        p = F.blocks[fz_u8(in) % F.nblocks].p;
        break;
    case 3:
        if (!F.nobjs || F.obj_size < 2) return;
        p = F.objs[fz_u8(in) % F.nobjs].p + 1 + fz_u8(in) % (F.obj_size - 1);   /* interior: never an object's start */
        break;
    default: p = (unsigned char *)(uintptr_t)(0x1000 + fz_u16(in)); break;
    }
    r = how == 2 ? buffet_pool_put_shared(F.p1, p) : buffet_pool_put(F.c[how], p);
    FZ_CHECK(r == BUFFET_ERR_FOREIGN);
    F.foreign_puts++;
}

static void ff_op_flush(fz_in *in) {
    int which = fz_u8(in) % 3;
    if (which < 2) {
        buffet_pool_cache_flush(F.c[which]);
        FZ_CHECK(F.c[which]->count == 0);
    } else {
        /* the second cache goes and comes back: its objects back to the store first */
        uint64_t inj = ff_injected();
        buffet_pool_cache_destroy(F.c[1]);
        F.c[1] = NULL;
        if (buffet_pool_cache_create(&F.c[1], F.p1, (uint32_t)(1 + fz_u8(in) % 16)) != BUFFET_OK) {
            FZ_CHECK(ff_injected() > inj);
            F.fail.fail_at = 0;
            FZ_CHECK(buffet_pool_cache_create(&F.c[1], F.p1, 4) == BUFFET_OK);
        }
    }
}

/* ---- scopes ---- */
static void ff_op_scope(fz_in *in) {
    int what = fz_u8(in) % 7;
    uint64_t inj = ff_injected();
    buffet_scope_desc d;
    memset(&d, 0, sizeof d);
    d.parent = F.parent;
    switch (what) {
    case 0: {   /* begin: refused while active (its blocks and actions stay) */
        buffet_result r = buffet_scope_begin(&F.s, &d);
        if (F.s_active) FZ_CHECK(r == BUFFET_ERR_STATE);
        else {
            FZ_CHECK(r == BUFFET_OK);
            F.s_active = true;
            F.ndefers = 0;
            F.ndefers_ran = 0;
        }
        break;
    }
    case 1: {   /* alloc */
        size_t size = ff_size(in), align = ff_align(in);
        unsigned char *p;
        if (size > 512 && size <= ((size_t)1 << 48)) size = 512;
        if (F.nsblocks == FF_SCOPE_BLOCKS) return;
        p = (unsigned char *)buffet_scope_alloc(&F.s, size, align);
        if (!F.s_active || size == 0 || !buffet_is_pow2(align) || size > ((size_t)1 << 48)) {
            FZ_CHECK(p == NULL);
            return;
        }
        if (!p) {
            FZ_CHECK(ff_injected() > inj);
            return;
        }
        FZ_CHECK(((uintptr_t)p & (align - 1)) == 0);
        F.sblocks[F.nsblocks].p = p;
        F.sblocks[F.nsblocks].size = size;
        F.sblocks[F.nsblocks].id = ++F.next_id;
        ff_fill(p, size, F.next_id, 0);
        F.nsblocks++;
        break;
    }
    case 2: {   /* defer */
        buffet_result r;
        if (F.ndefers == FF_DEFERS) return;
        r = buffet_scope_defer(&F.s, ff_defer_fn, (void *)(intptr_t)F.ndefers);
        if (!F.s_active) FZ_CHECK(r == BUFFET_ERR_STATE);
        else if (r == BUFFET_OK) F.ndefers++;
        else FZ_CHECK(ff_injected() > inj);
        break;
    }
    case 3: {   /* free the newest through the scope's allocator */
        if (!F.s_active || !F.nsblocks) return;
        buffet_free(buffet_scope_allocator(&F.s), F.sblocks[F.nsblocks - 1].p, F.sblocks[F.nsblocks - 1].size, 1, BUFFET_SITE);
        /* released at once only when it is the newest entry (no defer since) */
        if (F.s.count == F.nsblocks - 1) F.nsblocks--;
        break;
    }
    case 4: {   /* end: actions newest first, inner scope ended first */
        buffet_result r = buffet_scope_end(&F.s);
        unsigned i;
        if (!F.s_active) {
            FZ_CHECK(r == BUFFET_ERR_STATE);
            return;
        }
        FZ_CHECK(r == BUFFET_OK);
        if (F.inner_active) FZ_CHECK(F.ndefers_ran >= F.inner_defers);
        for (i = 0; i < F.inner_defers; i++) FZ_CHECK(F.defers_ran[i] == (int)(1000 + F.inner_defers - 1 - i));
        FZ_CHECK(F.ndefers_ran == F.ndefers + F.inner_defers);
        for (i = 0; i < F.ndefers; i++) FZ_CHECK(F.defers_ran[F.inner_defers + i] == (int)(F.ndefers - 1 - i));
        F.s_active = F.inner_active = false;
        F.nsblocks = 0;
        F.ndefers = F.inner_defers = 0;
        F.ndefers_ran = 0;
        break;
    }
    case 5: {   /* the inner scope: begin (only in an active outer without one), a defer */
        buffet_result r;
        if (F.inner_active) {
            if (F.inner_defers < FF_DEFERS && buffet_scope_defer(&F.inner, ff_defer_fn, (void *)(intptr_t)(1000 + F.inner_defers)) == BUFFET_OK)
                F.inner_defers++;
            return;
        }
        d.outer = &F.s;
        r = buffet_scope_begin(&F.inner, &d);
        if (!F.s_active) {
            FZ_CHECK(r == BUFFET_ERR_STATE);
            return;
        }
        FZ_CHECK(r == BUFFET_OK);
        F.inner_active = true;
        F.inner_defers = 0;
        F.ndefers_ran = 0;
        break;
    }
    default: {   /* the inner scope ends on its own */
        unsigned i;
        if (!F.inner_active) {
            FZ_CHECK(buffet_scope_end(&F.inner) == BUFFET_ERR_STATE);
            return;
        }
        F.ndefers_ran = 0;
        FZ_CHECK(buffet_scope_end(&F.inner) == BUFFET_OK);
        FZ_CHECK(F.ndefers_ran == F.inner_defers);
        for (i = 0; i < F.inner_defers; i++) FZ_CHECK(F.defers_ran[i] == (int)(1000 + F.inner_defers - 1 - i));
        F.inner_active = false;
        F.inner_defers = 0;
        F.ndefers_ran = 0;
        break;
    }
    }
}

/* ---- set up, run, tear down ---- */
static bool ff_setup(fz_in *in) {
    buffet_debug_desc dd;
    buffet_frame_desc fd;
    buffet_pool_desc pd;
    uint8_t k;
    memset(&F, 0, sizeof F);
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_silent;   /* refusals are the point here; the counts are checked */
    dd.quarantine_count = SIZE_MAX;   /* none: ASan (or the replay's checks) watch freed memory */
    FZ_CHECK(buffet_debug_create(&F.dbg, &dd) == BUFFET_OK);
    buffet_failing_init(&F.fail, buffet_debug_allocator(F.dbg), 0, false);
    F.parent = buffet_failing_allocator(&F.fail);
    k = fz_u8(in);
    F.in_flight = 1 + (k & 3);
    F.chunk_size = (size_t)1024 << ((k >> 2) & 3);
    memset(&fd, 0, sizeof fd);
    fd.parent = F.parent;
    fd.chunk_size = F.chunk_size;
    /* chunks that grow as by default, never, or up to 4 times the first size */
    fd.max_chunk_size = (k >> 4 & 3) == 1 ? F.chunk_size : (k >> 4 & 3) == 2 ? 4 * F.chunk_size : 0;
    fd.frames_in_flight = F.in_flight;
    fd.max_tags = 4;
    fd.tag_depth = 4;
    FZ_CHECK(buffet_frame_create(&F.a, &fd) == BUFFET_OK);
    FZ_CHECK(buffet_frame_create(&F.b, &fd) == BUFFET_OK);
    F.fa = buffet_frame_allocator(F.a);
    k = fz_u8(in);
    memset(&pd, 0, sizeof pd);
    pd.obj_size = 1 + fz_u8(in) % 200;
    pd.obj_align = (k & 0x80) ? (size_t)1 << (k & 7) : 0;
    pd.max = (k & 0x40) ? 8 + (size_t)(fz_u8(in) % 64) : 0;
    pd.slab_objs = (k & 0x20) ? 1 + (size_t)(fz_u8(in) % 16) : 32;
    pd.checks = (k & 0x10) ? 1 : ((k & 0x08) ? -1 : 0);
    pd.parent = F.parent;
    FZ_CHECK(buffet_pool_create(&F.p1, &pd) == BUFFET_OK);
    F.obj_size = pd.obj_size;
    F.obj_align = pd.obj_align;
    if (!F.obj_align) for (F.obj_align = 16; F.obj_align > 1 && pd.obj_size % F.obj_align; F.obj_align /= 2) {}
    F.max = pd.max;
    FZ_CHECK(buffet_pool_cache_create(&F.c[0], F.p1, (uint32_t)(1 + fz_u8(in) % 16)) == BUFFET_OK);
    FZ_CHECK(buffet_pool_cache_create(&F.c[1], F.p1, 4) == BUFFET_OK);
    pd.max = 0;
    pd.checks = 0;
    pd.slab_objs = 8;
    FZ_CHECK(buffet_pool_create(&F.p2, &pd) == BUFFET_OK);
    F.foreign_obj = (unsigned char *)buffet_pool_get_shared(F.p2);
    FZ_CHECK(F.foreign_obj != NULL);
    return true;
}

static void ff_teardown(void) {
    buffet_debug_stats st;
    unsigned i;
    F.fail.fail_at = 0;
    while (F.ntransfers) buffet_frame_transfer_release(F.transfers[--F.ntransfers].t);
    if (F.in_frame) FZ_CHECK(buffet_frame_end(F.a) == BUFFET_OK);
    if (F.b_in_frame) FZ_CHECK(buffet_frame_end(F.b) == BUFFET_OK);
    buffet_frame_destroy(F.a);
    buffet_frame_destroy(F.b);
    for (i = 0; i < F.nobjs; i++) FZ_CHECK(buffet_pool_put(F.c[i & 1], F.objs[i].p) == BUFFET_OK);
    F.nobjs = 0;
    buffet_pool_cache_destroy(F.c[0]);
    buffet_pool_cache_destroy(F.c[1]);
    FZ_CHECK(buffet_pool_get_stats(F.p1).in_use == 0);
    buffet_pool_destroy(F.p1);
    FZ_CHECK(buffet_pool_put_shared(F.p2, F.foreign_obj) == BUFFET_OK);
    buffet_pool_destroy(F.p2);
    if (F.s_active) FZ_CHECK(buffet_scope_end(&F.s) == BUFFET_OK);
    st = buffet_debug_get_stats(F.dbg);
    FZ_CHECK(st.live_count == 0);
    FZ_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.mismatched_frees == 0 && st.corruptions == 0);
    FZ_CHECK(buffet_debug_check(F.dbg) == BUFFET_OK);
    buffet_debug_destroy(F.dbg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_in in;
    in.p = data;
    in.n = size;
    ff_setup(&in);
    while (fz_more(&in)) {
        uint8_t op = fz_u8(&in);
        switch (op % 32) {
        case 0: case 1: ff_op_begin(); break;
        case 2: ff_op_end(); break;
        case 3: case 4: case 5: ff_op_alloc(&in, 0); break;
        case 6: ff_op_alloc(&in, 1); break;
        case 7: ff_op_alloc(&in, 2); break;
        case 8: ff_op_batch(&in); break;
        case 9: ff_op_resize(&in, (op & 0x20) != 0); break;
        case 10: ff_op_realloc(&in); break;
        case 11: case 12: ff_op_free(&in); break;
        case 13: case 14: ff_op_checkpoint(&in); break;
        case 15: case 16: ff_op_rollback(&in); break;
        case 17: ff_op_send(&in); break;
        case 18: ff_op_receive(&in); break;
        case 19: ff_op_release(&in); break;
        case 20: ff_op_tag(&in); break;
        case 21: ff_op_get(&in); break;
        case 22: ff_op_put(&in); break;
        case 23: ff_op_get_bulk(&in); break;
        case 24: ff_op_put_bulk(&in); break;
        case 25: if (op & 0x20) ff_op_get_shared(); else ff_op_flush(&in); break;
        case 26: ff_op_double_put(&in); break;
        case 27: ff_op_foreign_put(&in); break;
        case 28: case 29: ff_op_scope(&in); break;
        case 30: ff_op_get(&in); break;
        default:   /* arm the k-th next parent allocation to fail (0: none) */
            F.fail.fail_at = (op & 0x20) ? 0 : BUFFET__LOAD(&F.fail.allocs, BUFFET__RELAXED) + 1 + fz_u8(&in) % 4;
            break;
        }
        ff_check_all();
    }
    ff_teardown();
    return 0;
}
