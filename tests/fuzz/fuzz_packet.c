/* fuzz_packet.c - libFuzzer target for buffet_packet.h. The input picks one or two packet pools
   (classes down to 8 bytes, headroom down to 1, a user area, small maxima so that exhaustion is
   common) and then a sequence of operations on them: alloc (by size, by class, 0 and huge sizes,
   without a cache, through the allocator face, in bulk), free (through a cache, another pool's
   cache, without a cache, in bulk), ref, clone, external memory, prepend, append, adj, trim,
   chain, linearize, read and write at offsets, metadata and user area, to_chain (and releasing
   those chains), cache flush; and misuse: double free, a copy of a header, a heap block of
   garbage or a pointer into a buffer given to free, a chain's segment freed alone, chains onto
   themselves or through segments, lengths made not to add up,
   references to and clones of free packets, bursts larger than the cache. Raw buffers too
   (buffet_pkt_alloc_bulk_raw: lent free buffers, refcnt 0 and the lent mark in nb_segs): taken in
   bursts (0, above the cache, more than there are), their rooms and the fields from data_off on
   written by the program, made packets (buffet_pkt_init_raw), and given back in bursts mixed with
   what must be refused (the same buffer twice, one given back before, a packet, a clone's header,
   NULL, a pointer into a buffer, a copy of a header, one whose mark the program overwrote), through
   their pool's cache, another pool's or none; and freed as packets (refused as double frees).
   While lent, buffet must write nothing of a raw buffer: header, user area and room are compared
   whole. A plain model keeps
   every live header (its view of the data, its reference count, its place in its chain, its
   metadata), every data room's bytes, and the counters buffet must report; after every step
   every header, every byte, every chain and every counter is compared with it (FZ_CHECK aborts
   at the first difference). At the end everything is freed and the pools destroyed (half the
   time destroyed first, while packets are still out), and the debug allocator under the pools'
   bookkeeping must hold nothing.

   Build (libFuzzer):  clang -x c -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -I. -Itests/fuzz
                       tests/fuzz/fuzz_packet.c -o fuzz_packet
   Replay (any compiler, C or C++): add -DBUFFET_FUZZ_MAIN and give files or folders as arguments.
   -DBUFFET_DEBUG=1 fuzzes the debug build (foreign pointers caught by address, histories). */
#define BUFFET_IMPLEMENTATION
#include "../../buffet_packet.h"
#include "fuzz.h"

#define FZ_POOLS 2
#define FZ_HDRS 700
#define FZ_HANDLES 32
#define FZ_CHAINS 4
#define FZ_SLICES 24
#define FZ_EXTS 8
#define FZ_BLOCKS 8
#define FZ_SEGS 12          /* the model builds chains of at most this many segments */
#define FZ_STEPS 300
#define FZ_FREED 16         /* recently released headers, for double frees */
#define FZ_USER_MAX 128

enum { FZ_DIRECT, FZ_CLONE, FZ_EXT, FZ_RAW };   /* RAW: lent by buffet_pkt_alloc_bulk_raw */

/* A header buffet handed out, as the model sees it. */
typedef struct fz_hdr {
    buffet_pkt *p;            /* NULL: this slot is free */
    int pool, kind;
    unsigned cls;
    int room;                 /* DIRECT, RAW: itself; CLONE: the direct header with the data; EXT: -1 - ext */
    int refs;                 /* the reference count buffet must show (RAW: 0) */
    uint32_t data_off, len, buf_len;
    int next;                 /* next segment (a header index), -1: none */
    uint32_t pkt_len;         /* head: bytes of the chain; a chained-behind segment keeps its old value */
    uint16_t nb_segs;         /* head: segments; 0 once chained behind another */
    uint64_t timestamp;
    uint32_t hash;
    uint16_t in_port, out_port, vlan_tci, packet_type;
    unsigned char user[FZ_USER_MAX];
    unsigned char *bytes;     /* DIRECT, RAW: the data room's bytes (buf_len) */
    buffet_pkt snap;          /* RAW: the whole header as the program left it (buffet writes none of it) */
} fz_hdr;

typedef struct fz_ext {       /* caller memory given to buffet_pkt_attach_external */
    unsigned char *mem;       /* NULL: slot free */
    size_t size;
    uint32_t buf_len;
    int count;                /* packets referring to it */
    int frees;                /* free_fn calls seen */
    unsigned char *bytes;     /* the model of mem[0..buf_len) */
} fz_ext;

typedef struct fz_slice { int hdr, room; uint32_t off, len; } fz_slice;
typedef struct fz_chain { bool used; buffet_chain ch; int n; fz_slice sl[FZ_SLICES]; } fz_chain;
typedef struct fz_block { void *p; size_t size; int pool, cache; unsigned cls; unsigned char seed; } fz_block;

typedef struct fz_pool {
    buffet_pkt_pool *p;
    buffet_pkt_cache *c[2];   /* c[1] may be NULL */
    buffet_pkt_pool_desc d;
    unsigned nclasses;
    uint32_t room[BUFFET_PKT_MAX_CLASSES];     /* data room per class */
    size_t max[BUFFET_PKT_MAX_CLASSES + 1];    /* per class, the clone class last */
    uint64_t failures[BUFFET_PKT_MAX_CLASSES + 1];
    uint64_t double_frees, foreign_frees;
} fz_pool;

typedef struct fz {
    fz_in in;
    buffet_debug *dbg;
    int npools;
    fz_pool pool[FZ_POOLS];
    fz_hdr h[FZ_HDRS];
    int handle[FZ_HANDLES];   /* head header of each packet the program holds, -1: none */
    fz_ext ext[FZ_EXTS];
    fz_chain chain[FZ_CHAINS];
    fz_block block[FZ_BLOCKS];
    struct { buffet_pkt *p; int pool; bool clone; } freed[FZ_FREED];   /* clone: a clone class header */
    unsigned nfreed;
    struct { buffet_pkt *p; int pool; } raw_freed[FZ_FREED];   /* raw buffers recently given back */
    unsigned nraw_freed;
    bool destroy_first;       /* teardown: destroy the pools before their packets come back */
    bool trace;               /* FZ_TRACE set: each step's operation to stderr */
    unsigned char seed;
    unsigned logged[24];
} fz;

static void fz_log(void *user, buffet_log_level level, buffet_result code, const char *msg, const char *file, int line) {
    fz *S = (fz *)user;
    (void)level; (void)msg; (void)file; (void)line;
    if (-(int)code >= 0 && -(int)code < 24) S->logged[-(int)code]++;
}

static void fz_ext_free(void *opaque, void *mem) {
    fz_ext *e = (fz_ext *)opaque;
    /* once, for its own memory (the model drops its counts after buffet's call: compared then) */
    FZ_CHECK(e->mem == mem && e->count >= 1 && e->frees == 0);
    e->frees++;
}

/* ---------------------------------------------------------------------------------------------
   The model's bookkeeping */

static unsigned char *fz_room_bytes(fz *S, int room) {
    return room >= 0 ? S->h[room].bytes : S->ext[-1 - room].bytes;
}

static int fz_new_hdr(fz *S) {
    int i;
    for (i = 0; i < FZ_HDRS; i++)
        if (!S->h[i].p) return i;
    return -1;
}

/* Is header pointer p one the model holds live? */
static int fz_find(const fz *S, const buffet_pkt *p) {
    int i;
    for (i = 0; i < FZ_HDRS; i++)
        if (S->h[i].p == p) return i;
    return -1;
}

static int fz_free_handle(fz *S) {
    int i;
    for (i = 0; i < FZ_HANDLES; i++)
        if (S->handle[i] < 0) return i;
    return -1;
}

/* A header buffet just handed out (p), entered into the model. */
static int fz_add(fz *S, buffet_pkt *p, int pool, int kind, unsigned cls, int room, uint32_t buf_len, uint32_t data_off) {
    int i = fz_new_hdr(S), k;
    fz_hdr *H;
    FZ_CHECK(i >= 0);
    FZ_CHECK(fz_find(S, p) < 0);   /* never out twice */
    for (k = 0; k < FZ_BLOCKS; k++)
        FZ_CHECK(!S->block[k].p || (unsigned char *)S->block[k].p - S->pool[S->block[k].pool].p->hdr_size != (unsigned char *)p);
    H = &S->h[i];
    memset(H, 0, sizeof *H);
    /* the user area is not reset at allocation: what is there is what the model expects */
    if (S->pool[pool].d.user_size) memcpy(H->user, buffet_pkt_user(p), S->pool[pool].d.user_size);
    H->p = p;
    H->pool = pool;
    H->kind = kind;
    H->cls = cls;
    H->room = kind == FZ_DIRECT || kind == FZ_RAW ? i : room;
    H->refs = 1;
    H->buf_len = buf_len;
    H->data_off = data_off;
    H->next = -1;
    H->nb_segs = 1;
    if (kind == FZ_DIRECT || kind == FZ_RAW) {
        H->bytes = (unsigned char *)malloc(buf_len ? buf_len : 1);
        FZ_CHECK(H->bytes != NULL);
        memset(H->bytes, 0, buf_len);
    }
    return i;
}

/* One reference of header i dropped (as buffet does for each segment a free walks). */
static void fz_unref(fz *S, int i) {
    fz_hdr *H = &S->h[i];
    FZ_CHECK(H->p && H->refs > 0);
    if (--H->refs > 0) return;
    if (H->kind == FZ_CLONE) {
        fz_unref(S, H->room);
    } else if (H->kind == FZ_EXT) {
        fz_ext *e = &S->ext[-1 - H->room];
        FZ_CHECK(e->count > 0);
        e->count--;
    } else {
        free(H->bytes);
        H->bytes = NULL;
    }
    S->freed[S->nfreed % FZ_FREED].p = H->p;
    S->freed[S->nfreed % FZ_FREED].pool = H->pool;
    S->freed[S->nfreed++ % FZ_FREED].clone = H->kind != FZ_DIRECT;
    H->p = NULL;
}

/* The program gives up handle k (buffet frees every segment of its packet). */
static void fz_drop_handle(fz *S, int k) {
    int s = S->handle[k];
    S->handle[k] = -1;
    while (s >= 0) {
        int next = S->h[s].next;
        fz_unref(S, s);
        s = next;
    }
}

static int fz_segments(const fz *S, int head) {
    int n = 0;
    for (; head >= 0; head = S->h[head].next) n++;
    return n;
}

/* Buffers of class k of pool P that a cache (or, cache < 0, the pool itself) can still get:
   the max, less those out (model) and those sitting in the other caches. */
static size_t fz_avail(fz *S, int pool, unsigned k, int cache) {
    fz_pool *P = &S->pool[pool];
    size_t live = 0;
    int i, c;
    for (i = 0; i < FZ_HDRS; i++)
        if (S->h[i].p && S->h[i].pool == pool && S->h[i].cls == k) live++;
    for (i = 0; i < FZ_BLOCKS; i++)
        if (S->block[i].p && S->block[i].pool == pool && S->block[i].cls == k) live++;
    for (c = 0; c < 2; c++)
        if (P->c[c] && c != cache) live += P->c[c]->cls[k].count;
    FZ_CHECK(live <= P->max[k]);
    return P->max[k] - live;
}

/* Is the data of header i shared, as buffet decides before writing into a room? */
static bool fz_shared(fz *S, int i) {
    const fz_hdr *H = &S->h[i];
    if (H->kind == FZ_CLONE) return true;
    if (H->kind == FZ_EXT) return S->ext[-1 - H->room].count != 1 || H->refs != 1;
    return H->refs != 1;
}

/* The next pattern byte for data the program writes. */
static unsigned char fz_byte(fz *S) { return (unsigned char)(S->seed = (unsigned char)(S->seed * 73 + 41)); }

/* ---------------------------------------------------------------------------------------------
   The comparison: every header, byte, chain and counter */

/* A raw buffer: its fixed fields, refcnt 0, the lent mark, and every byte of header, user area
   and room as the program left them. */
static void fz_check_raw(fz *S, int i) {
    fz_hdr *H = &S->h[i];
    buffet_pkt *p = H->p;
    fz_pool *P = &S->pool[H->pool];
    FZ_CHECK(p->pool == P->p && p->buf == buffet_pkt_raw_buf(P->c[0], p) && p->buf_len == H->buf_len &&
             p->cls == H->cls && p->flags == 0);
    FZ_CHECK(p->refcnt == 0 && p->nb_segs == BUFFET_PKT_RAW_LENT);
    FZ_CHECK(memcmp(p, &H->snap, sizeof *p) == 0);
    if (P->d.user_size) FZ_CHECK(memcmp(buffet_pkt_user(p), H->user, P->d.user_size) == 0);
    FZ_CHECK(memcmp(p->buf, H->bytes, H->buf_len) == 0);
}

static void fz_check_hdr(fz *S, int i) {
    fz_hdr *H = &S->h[i];
    const buffet_pkt *p = H->p;
    fz_pool *P = &S->pool[H->pool];
    if (H->kind == FZ_RAW) { fz_check_raw(S, i); return; }
    FZ_CHECK(p->pool == P->p);
    FZ_CHECK(p->refcnt == H->refs);
    FZ_CHECK(p->data_off == H->data_off && p->len == H->len && p->buf_len == H->buf_len);
    FZ_CHECK(p->cls == (H->kind == FZ_DIRECT ? H->cls : P->nclasses));
    FZ_CHECK(p->flags == (H->kind == FZ_DIRECT ? 0 : H->kind == FZ_CLONE ? BUFFET_PKT_CLONE : BUFFET_PKT_EXTERNAL));
    FZ_CHECK(p->timestamp == H->timestamp && p->hash == H->hash && p->in_port == H->in_port &&
             p->out_port == H->out_port && p->vlan_tci == H->vlan_tci && p->packet_type == H->packet_type);
    if (P->d.user_size) FZ_CHECK(memcmp(buffet_pkt_user(p), H->user, P->d.user_size) == 0);
    FZ_CHECK(buffet_pkt_headroom(p) == H->data_off && buffet_pkt_tailroom(p) == H->buf_len - H->data_off - H->len);
    FZ_CHECK(memcmp(buffet_pkt_data(p), fz_room_bytes(S, H->room) + H->data_off, H->len) == 0);
    if (H->kind == FZ_DIRECT) FZ_CHECK(p->buf == (const unsigned char *)p + P->p->hdr_size);
    else if (H->kind == FZ_CLONE) FZ_CHECK(p->buf == S->h[H->room].p->buf);
    else FZ_CHECK(p->buf == S->ext[-1 - H->room].mem);
}

static void fz_check_all(fz *S) {
    int i, k, n;
    for (i = 0; i < FZ_HDRS; i++)
        if (S->h[i].p) fz_check_hdr(S, i);
    for (k = 0; k < FZ_HANDLES; k++) {
        int s = S->handle[k];
        uint64_t bytes = 0;
        if (s < 0) continue;
        FZ_CHECK(S->h[s].p && S->h[s].nb_segs >= 1);
        FZ_CHECK(S->h[s].p->nb_segs == S->h[s].nb_segs && S->h[s].p->pkt_len == S->h[s].pkt_len);
        for (n = 0; s >= 0; s = S->h[s].next, n++) {
            const fz_hdr *H = &S->h[s];
            FZ_CHECK(H->p && (n == 0 || H->p->nb_segs == 0));
            FZ_CHECK(H->p->next == (H->next >= 0 ? S->h[H->next].p : NULL));
            bytes += H->len;
        }
        FZ_CHECK(n == S->h[S->handle[k]].nb_segs && bytes == S->h[S->handle[k]].pkt_len);
    }
    for (k = 0; k < FZ_CHAINS; k++) {
        fz_chain *C = &S->chain[k];
        size_t off = 0;
        unsigned char buf[4096];
        if (!C->used) continue;
        for (n = 0; n < C->n; n++) {
            const fz_slice *sl = &C->sl[n];
            uint32_t done, part;
            FZ_CHECK(S->h[sl->hdr].p != NULL);
            for (done = 0; done < sl->len; done += part) {   /* in pieces: an external slice may be 64 KiB */
                part = sl->len - done < sizeof buf ? sl->len - done : (uint32_t)sizeof buf;
                FZ_CHECK(buffet_chain_copy_out(&C->ch, off + done, buf, part) == BUFFET_OK);
                FZ_CHECK(memcmp(buf, fz_room_bytes(S, sl->room) + sl->off + done, part) == 0);
            }
            off += sl->len;
        }
        FZ_CHECK(buffet_chain_len(&C->ch) == off);
    }
    for (k = 0; k < FZ_EXTS; k++) {
        fz_ext *E = &S->ext[k];
        if (!E->mem) continue;
        FZ_CHECK(E->frees == (E->count == 0 ? 1 : 0));
        if (E->count == 0) {   /* released: the slot is free again */
            free(E->mem);
            free(E->bytes);
            E->mem = E->bytes = NULL;
        }
    }
    for (k = 0; k < S->npools; k++) {
        fz_pool *P = &S->pool[k];
        buffet_pkt_stats st = buffet_pkt_pool_get_stats(P->p);
        unsigned c;
        FZ_CHECK(st.double_frees == P->double_frees && st.foreign_frees == P->foreign_frees && st.corruptions == 0);
        for (c = 0; c <= P->nclasses; c++) FZ_CHECK(st.cls[c].failures == P->failures[c]);
    }
}

/* ---------------------------------------------------------------------------------------------
   Setup */

static const uint32_t fz_sizes[] = {8, 9, 16, 40, 64, 100, 256, 512, 1000, 2048};
static const uint32_t fz_headrooms[] = {1, 7, 16, 64, 128, 300, 0 /* 128 */, 2};
static const uint32_t fz_users[] = {0, 0, 1, 64, 100, 0, 17, 0};
static const size_t fz_maxes[] = {1, 2, 4, 8, 16, 24, 3, 12};
static const uint32_t fz_cache_sizes[] = {1, 2, 4, 8, 32, 0 /* 64 */, 3, 512};

static bool fz_pool_create(fz *S, int i) {
    fz_pool *P = &S->pool[i];
    unsigned n, k, first, cfg = fz_u8(&S->in), cfg2 = fz_u8(&S->in);
    buffet_result r;
    memset(P, 0, sizeof *P);
    n = 1 + cfg % 3;
    first = (cfg >> 2) % 8;
    P->d.name = i ? "fuzz1" : "fuzz0";
    for (k = 0; k < n && first + k * (1 + (cfg2 & 1)) < sizeof fz_sizes / sizeof fz_sizes[0]; k++)
        P->d.class_sizes[k] = fz_sizes[first + k * (1 + (cfg2 & 1))];
    n = k;
    P->d.headroom = fz_headrooms[(cfg >> 5) & 7];
    P->d.user_size = fz_users[(cfg2 >> 1) & 7];
    P->d.max = fz_maxes[(cfg2 >> 4) & 7];
    P->d.initial = 1 + fz_u8(&S->in) % P->d.max;
    P->d.grow = fz_u8(&S->in) % 4;
    P->d.no_huge_pages = true;
    P->d.allocator = buffet_debug_allocator(S->dbg);
    P->d.log.fn = fz_log;
    P->d.log.user = S;
    r = buffet_pkt_pool_create(&P->p, &P->d);
    FZ_CHECK(r == BUFFET_OK && P->p);
    P->nclasses = n;
    for (k = 0; k < n; k++) {
        P->room[k] = P->d.class_sizes[k];
        P->max[k] = P->d.max;
    }
    P->max[n] = P->d.max * n;
    FZ_CHECK(buffet_pkt_cache_create(&P->c[0], P->p, fz_cache_sizes[cfg2 >> 7 | (fz_u8(&S->in) & 3) << 1]) == BUFFET_OK);
    if (cfg2 & 8) FZ_CHECK(buffet_pkt_cache_create(&P->c[1], P->p, fz_cache_sizes[fz_u8(&S->in) & 7]) == BUFFET_OK);
    return true;
}

/* The headroom a pool's packets start with. */
static uint32_t fz_headroom(const fz_pool *P) { return P->d.headroom ? P->d.headroom : 128; }

/* A cache of pool `pool` picked by the input (index into P->c, never a NULL one). */
static int fz_pick_cache(fz *S, int pool) {
    return (fz_u8(&S->in) & 1) && S->pool[pool].c[1] ? 1 : 0;
}

/* A handle picked by the input that holds a packet, or -1. */
static int fz_pick_handle(fz *S) {
    int k = fz_u8(&S->in) % FZ_HANDLES, i;
    for (i = 0; i < FZ_HANDLES; i++, k = (k + 1) % FZ_HANDLES)
        if (S->handle[k] >= 0) return k;
    return -1;
}

/* The smallest class of pool P with at least `size` bytes of data room, or -1. */
static int fz_class_for(const fz_pool *P, size_t size) {
    unsigned k;
    for (k = 0; k < P->nclasses; k++)
        if (size <= P->room[k]) return (int)k;
    return -1;
}

/* A new direct packet of class k in the model, for p that buffet handed out. */
static int fz_add_direct(fz *S, buffet_pkt *p, int pool, unsigned k) {
    fz_pool *P = &S->pool[pool];
    return fz_add(S, p, pool, FZ_DIRECT, k, 0, fz_headroom(P) + P->room[k], fz_headroom(P));
}

/* An allocation that had to fail: NULL, for this reason, counted on class k (k < 0: not counted). */
static void fz_expect_fail(fz *S, const void *got, buffet_result why, int pool, int k) {
    const char *text;
    FZ_CHECK(got == NULL);
    if (buffet_alloc_error(&text) != why)
        fprintf(stderr, "fuzz: wanted %s, got %s (%s)\n", buffet_result_str(why), buffet_result_str(buffet_alloc_error(NULL)), text);
    FZ_CHECK(buffet_alloc_error(NULL) == why);
    if (k >= 0) S->pool[pool].failures[k]++;
}

/* ---------------------------------------------------------------------------------------------
   Operations */

/* A packet for `size` bytes through cache `cache` of pool `pool` (-1: without a cache), into a
   new handle. Returns: the handle, or -1 (none free, or refused as the model predicts). */
static int fz_alloc_size(fz *S, int pool, int cache, size_t size) {
    fz_pool *P = &S->pool[pool];
    int k = fz_class_for(P, size), hk = fz_free_handle(S);
    size_t avail;
    buffet_pkt *p;
    if (hk < 0) return -1;
    avail = k < 0 ? 0 : fz_avail(S, pool, (unsigned)k, cache);
    p = cache < 0 ? buffet_pkt_alloc_shared(P->p, size) : buffet_pkt_alloc(P->c[cache], size);
    if (k < 0) { fz_expect_fail(S, p, BUFFET_ERR_TOO_LARGE, pool, (int)P->nclasses - 1); return -1; }
    if (avail == 0) { fz_expect_fail(S, p, BUFFET_ERR_EXHAUSTED, pool, k); return -1; }
    FZ_CHECK(p != NULL && p->next == NULL && p->nb_segs == 1 && p->pkt_len == 0 && p->len == 0 && p->refcnt == 1);
    FZ_CHECK(p->hash == 0 && p->timestamp == 0 && p->in_port == 0 && p->packet_type == 0);
    FZ_CHECK(p->data_off == fz_headroom(P) && buffet_pkt_tailroom(p) == P->room[k]);
    S->handle[hk] = fz_add_direct(S, p, pool, (unsigned)k);
    return hk;
}

static void op_alloc(fz *S) {
    int pool = fz_u8(&S->in) % S->npools, cache = fz_pick_cache(S, pool), hk = fz_free_handle(S);
    fz_pool *P = &S->pool[pool];
    unsigned how = fz_u8(&S->in) % 4;
    size_t size;
    buffet_pkt *p;
    if (hk < 0) return;
    if (how == 3) {   /* by class, maybe one that is not there */
        unsigned cls = fz_u8(&S->in) % (P->nclasses + 2);
        bool ok = cls < P->nclasses && fz_avail(S, pool, cls, cache) > 0;
        p = buffet_pkt_alloc_class(P->c[cache], cls);
        if (cls >= P->nclasses) { fz_expect_fail(S, p, BUFFET_ERR_INVALID, pool, -1); return; }
        if (!ok) { fz_expect_fail(S, p, BUFFET_ERR_EXHAUSTED, pool, (int)cls); return; }
        FZ_CHECK(p != NULL);
        S->handle[hk] = fz_add_direct(S, p, pool, cls);
        return;
    }
    size = fz_size(&S->in, 2100);
    fz_alloc_size(S, pool, how == 2 ? -1 : cache, size);
}

static void op_alloc_bulk(fz *S) {
    int pool = fz_u8(&S->in) % S->npools, cache = fz_pick_cache(S, pool), i, free_handles = 0;
    fz_pool *P = &S->pool[pool];
    unsigned cls = fz_u8(&S->in) % (P->nclasses + 1);
    size_t n = fz_u8(&S->in) % 40, got, avail;
    buffet_pkt *v[600];
    for (i = 0; i < FZ_HANDLES; i++) free_handles += S->handle[i] < 0;
    if (n > (size_t)free_handles && n <= P->c[cache]->size) return;   /* the model could not hold them */
    avail = cls < P->nclasses ? fz_avail(S, pool, cls, cache) : 0;
    got = buffet_pkt_alloc_bulk(P->c[cache], cls, v, n);
    if (n == 0 || cls >= P->nclasses) { FZ_CHECK(got == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID); return; }
    if (n > P->c[cache]->size) {   /* a burst larger than the cache: refused, counted */
        FZ_CHECK(got == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
        P->failures[cls]++;
        return;
    }
    /* the cache keeps what it could get when the class runs short: count the store before */
    if (avail < n) {
        FZ_CHECK(got == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
        P->failures[cls]++;
        return;
    }
    FZ_CHECK(got == n);
    for (i = 0; i < (int)n; i++) {
        FZ_CHECK(v[i]->refcnt == 1 && v[i]->len == 0 && v[i]->next == NULL);
        S->handle[fz_free_handle(S)] = fz_add_direct(S, v[i], pool, cls);
    }
}

static void op_free(fz *S) {
    int k = fz_pick_handle(S), pool, how = fz_u8(&S->in) % 4;
    buffet_pkt *p;
    if (k < 0) return;
    p = S->h[S->handle[k]].p;
    pool = S->h[S->handle[k]].pool;
    switch (how) {
    case 0: buffet_pkt_free(S->pool[pool].c[fz_pick_cache(S, pool)], p); break;
    case 1: buffet_pkt_free_shared(p); break;
    case 2: buffet_pkt_free(S->pool[(pool + 1) % S->npools].c[0], p); break;   /* another pool's cache */
    default: buffet_pkt_unref(S->pool[pool].c[0], p); break;
    }
    fz_drop_handle(S, k);
}

static void op_free_bulk(fz *S) {
    int pool = fz_u8(&S->in) % S->npools, n = fz_u8(&S->in) % 8, i, k;
    buffet_pkt *v[8] = {NULL};
    int ks[8], m = 0;
    for (i = 0; i < n; i++) {
        k = fz_pick_handle(S);
        if (k < 0) break;
        for (m = 0; m < i && ks[m] != k; m++) {}
        if (m < i) break;   /* picked twice: stop there */
        ks[i] = k;
        v[i] = S->h[S->handle[k]].p;
    }
    n = i;
    buffet_pkt_free_bulk(S->pool[pool].c[fz_pick_cache(S, pool)], v, (size_t)n);
    for (i = 0; i < n; i++) fz_drop_handle(S, ks[i]);
}

static void op_ref(fz *S) {
    int k = fz_pick_handle(S), hk = fz_free_handle(S), s;
    if (k < 0 || hk < 0) return;
    FZ_CHECK(buffet_pkt_ref(S->h[S->handle[k]].p) == BUFFET_OK);
    for (s = S->handle[k]; s >= 0; s = S->h[s].next) S->h[s].refs++;
    S->handle[hk] = S->handle[k];
}

/* The metadata and user area buffet copies from src's header to dst's. */
static void fz_copy_meta(fz *S, int dst, int src) {
    fz_hdr *D = &S->h[dst];
    const fz_hdr *X = &S->h[src];
    D->timestamp = X->timestamp;
    D->hash = X->hash;
    D->in_port = X->in_port;
    D->out_port = X->out_port;
    D->vlan_tci = X->vlan_tci;
    D->packet_type = X->packet_type;
    memcpy(D->user, X->user, sizeof D->user);
}

static void op_clone(fz *S) {
    int k = fz_pick_handle(S), hk = fz_free_handle(S), pool, cache, s, prev = -1, head = -1, segs, n;
    size_t avail;
    fz_pool *P;
    buffet_pkt *q, *r;
    if (k < 0 || hk < 0) return;
    pool = S->h[S->handle[k]].pool;
    segs = fz_segments(S, S->handle[k]);
    if (fz_u8(&S->in) % 8 == 0 && S->npools > 1) {   /* through another pool's cache: refused */
        q = buffet_pkt_clone(S->pool[1 - pool].c[0], S->h[S->handle[k]].p);
        FZ_CHECK(q == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
        return;
    }
    P = &S->pool[pool];
    cache = fz_pick_cache(S, pool);
    avail = fz_avail(S, pool, P->nclasses, cache);
    q = buffet_pkt_clone(P->c[cache], S->h[S->handle[k]].p);
    for (n = 0, s = S->handle[k]; s >= 0 && S->h[s].pool == pool; s = S->h[s].next) n++;
    if (s >= 0) {
        /* a segment of another pool chained in (its clone could not find its data): refused when
           the clone gets there, unless the clone class ran out on the way */
        if (avail < (size_t)n) fz_expect_fail(S, q, BUFFET_ERR_EXHAUSTED, pool, (int)P->nclasses);
        else fz_expect_fail(S, q, BUFFET_ERR_INVALID, pool, -1);
        return;
    }
    if (avail < (size_t)segs) {
        fz_expect_fail(S, q, BUFFET_ERR_EXHAUSTED, pool, (int)P->nclasses);
        return;
    }
    FZ_CHECK(q != NULL);
    for (s = S->handle[k], r = q; s >= 0; s = S->h[s].next, r = r->next) {
        const fz_hdr *X = &S->h[s];
        int kind = X->kind == FZ_EXT ? FZ_EXT : FZ_CLONE, room = X->room, i;
        FZ_CHECK(r != NULL);
        i = fz_add(S, r, pool, kind, P->nclasses, room, X->buf_len, X->data_off);
        FZ_CHECK(P->d.user_size == 0 || memcmp(S->h[i].user, X->user, P->d.user_size) == 0);
        S->h[i].len = X->len;
        S->h[i].pkt_len = X->pkt_len;
        S->h[i].nb_segs = X->nb_segs;
        fz_copy_meta(S, i, s);
        if (kind == FZ_EXT) S->ext[-1 - room].count++;
        else S->h[room].refs++;
        if (prev >= 0) S->h[prev].next = i;
        else head = i;
        prev = i;
    }
    FZ_CHECK(r == NULL);
    S->handle[hk] = head;
}

static void op_attach(fz *S) {
    int hk = fz_free_handle(S), e, pool = fz_u8(&S->in) % S->npools, i, cache;
    fz_pool *P = &S->pool[pool];
    size_t size = fz_size(&S->in, 3000), skip, avail;
    uintptr_t start;
    bool fits;
    fz_ext *E;
    buffet_pkt *p;
    for (e = 0; e < FZ_EXTS && S->ext[e].mem; e++) {}
    if (hk < 0 || e == FZ_EXTS || size > 70000) return;
    E = &S->ext[e];
    memset(E, 0, sizeof *E);
    E->mem = (unsigned char *)malloc(size ? size : 1);
    FZ_CHECK(E->mem != NULL);
    for (i = 0; i < (int)size; i++) E->mem[i] = fz_byte(S);
    start = size >= 32 ? (((uintptr_t)E->mem + size - 32) & ~(uintptr_t)7) : 0;
    skip = size >= 32 ? (uintptr_t)E->mem + size - start : 0;
    fits = size >= 32 && start > (uintptr_t)E->mem && size - skip <= 65535;
    cache = fz_pick_cache(S, pool);
    avail = fz_avail(S, pool, P->nclasses, cache);
    p = buffet_pkt_attach_external(P->c[cache], E->mem, size, fz_ext_free, E);
    if (!fits || avail == 0) {
        fz_expect_fail(S, p, fits ? BUFFET_ERR_EXHAUSTED : BUFFET_ERR_INVALID, pool, fits ? (int)P->nclasses : -1);
        free(E->mem);
        E->mem = NULL;
        return;
    }
    E->size = size;
    E->buf_len = (uint32_t)(size - skip);
    E->count = 1;
    E->bytes = (unsigned char *)malloc(E->buf_len);
    FZ_CHECK(E->bytes != NULL);
    memcpy(E->bytes, E->mem, E->buf_len);
    S->handle[hk] = fz_add(S, p, pool, FZ_EXT, P->nclasses, -1 - e, E->buf_len, 0);
}

/* Grow handle k's packet by n bytes at the end (or the front), as the model predicts. */
static void fz_grow(fz *S, int k, size_t n, bool append) {
    int s, last, head;
    size_t i;
    unsigned char *w;
    bool ok;
    fz_hdr *H;
    head = S->handle[k];
    for (last = head; S->h[last].next >= 0; last = S->h[last].next) {}
    s = append ? last : head;
    H = &S->h[s];
    ok = !fz_shared(S, s) && (append ? n <= H->buf_len - H->data_off - H->len : n <= H->data_off) &&
         S->h[head].pkt_len + (uint64_t)n <= UINT32_MAX;
    w = (unsigned char *)(append ? buffet_pkt_append(S->h[head].p, n) : buffet_pkt_prepend(S->h[head].p, n));
    if (!ok) { FZ_CHECK(w == NULL); return; }
    FZ_CHECK(w != NULL);
    if (!append) H->data_off -= (uint32_t)n;
    FZ_CHECK(w == H->p->buf + (append ? H->data_off + H->len : H->data_off));
    for (i = 0; i < n; i++) fz_room_bytes(S, H->room)[(append ? H->data_off + H->len : H->data_off) + i] = w[i] = fz_byte(S);
    H->len += (uint32_t)n;
    S->h[head].pkt_len += (uint32_t)n;
}

static void op_prepend_append(fz *S, bool append) {
    int k = fz_pick_handle(S);
    size_t n = fz_size(&S->in, 300);
    if (k >= 0) fz_grow(S, k, n, append);
}

static void op_adj_trim(fz *S, bool trim) {
    int k = fz_pick_handle(S), last, head;
    size_t n = fz_size(&S->in, 300);
    if (k < 0) return;
    head = S->handle[k];
    for (last = head; S->h[last].next >= 0; last = S->h[last].next) {}
    if (trim) {
        buffet_result r = buffet_pkt_trim(S->h[head].p, n);
        if (n > S->h[last].len) { FZ_CHECK(r == BUFFET_ERR_RANGE); return; }
        FZ_CHECK(r == BUFFET_OK);
        S->h[last].len -= (uint32_t)n;
    } else {
        void *r = buffet_pkt_adj(S->h[head].p, n);
        if (n > S->h[head].len) { FZ_CHECK(r == NULL); return; }
        FZ_CHECK(r != NULL);
        S->h[head].data_off += (uint32_t)n;
        S->h[head].len -= (uint32_t)n;
        FZ_CHECK(r == buffet_pkt_data(S->h[head].p));
    }
    S->h[head].pkt_len -= (uint32_t)n;
}

/* Do all segments of the packet at head have exactly `holders` references from handles (and
   none from elsewhere that buffet would count on the same header)? Used to keep the program's
   chains well formed: chaining a packet another handle also holds is the caller's bug. */
static int fz_holders(fz *S, int head) {
    int k, n = 0;
    for (k = 0; k < FZ_HANDLES; k++) n += S->handle[k] == head;
    return n;
}

static void fz_chain_two(fz *S, int a, int b);

static void op_chain(fz *S) {
    int a = fz_pick_handle(S), b, ha, hb, i;
    if (a < 0) return;
    b = fz_pick_handle(S);
    /* mostly another packet; now and then the same one */
    for (i = 1; b == a && (fz_u8(&S->in) & 3) && i < FZ_HANDLES; i++)
        if (S->handle[(a + i) % FZ_HANDLES] >= 0) b = (a + i) % FZ_HANDLES;
    ha = S->handle[a];
    hb = S->handle[b];
    if (ha == hb) {   /* a packet behind itself */
        FZ_CHECK(buffet_pkt_chain(S->h[ha].p, S->h[hb].p) == BUFFET_ERR_INVALID);
        return;
    }
    fz_chain_two(S, a, b);
}

/* Handle b's packet behind handle a's (different packets), when the model can follow it. */
static void fz_chain_two(fz *S, int a, int b) {
    int ha = S->handle[a], hb = S->handle[b], last;
    buffet_result r;
    /* the model keeps chains short, and whole: neither packet held twice */
    if (fz_segments(S, ha) + fz_segments(S, hb) > FZ_SEGS || fz_holders(S, ha) != 1 || fz_holders(S, hb) != 1) return;
    r = buffet_pkt_chain(S->h[ha].p, S->h[hb].p);
    FZ_CHECK(r == BUFFET_OK);
    for (last = ha; S->h[last].next >= 0; last = S->h[last].next) {}
    S->h[last].next = hb;
    S->h[ha].nb_segs = (uint16_t)(S->h[ha].nb_segs + S->h[hb].nb_segs);
    S->h[ha].pkt_len += S->h[hb].pkt_len;
    S->h[hb].nb_segs = 0;
    S->handle[b] = -1;
}

static void op_linearize(fz *S) {
    int k = fz_pick_handle(S), head, pool, cache, s, nk, i;
    size_t avail;
    fz_pool *P;
    fz_hdr *H;
    buffet_pkt *p;
    buffet_result r;
    uint32_t tail;
    if (k < 0) return;
    head = S->handle[k];
    H = &S->h[head];
    pool = H->pool;
    P = &S->pool[fz_u8(&S->in) % S->npools];   /* the cache may be another pool's: the new packet comes from it */
    cache = fz_pick_cache(S, (int)(P - S->pool));
    p = H->p;
    if (H->next < 0 || fz_holders(S, head) != 1) {
        if (H->next < 0) FZ_CHECK(buffet_pkt_linearize(P->c[cache], &p) == BUFFET_OK && p == H->p);
        return;
    }
    tail = H->buf_len - H->data_off - H->len;
    if (H->pkt_len - H->len <= tail && !fz_shared(S, head)) {
        /* into the first segment's tailroom: the rest is freed */
        unsigned char *room = fz_room_bytes(S, H->room);
        uint32_t at = H->data_off + H->len;
        r = buffet_pkt_linearize(P->c[cache], &p);
        FZ_CHECK(r == BUFFET_OK && p == H->p);
        for (s = H->next; s >= 0; s = S->h[s].next) {
            memcpy(room + at, fz_room_bytes(S, S->h[s].room) + S->h[s].data_off, S->h[s].len);
            at += S->h[s].len;
        }
        for (s = H->next; s >= 0;) {
            int next = S->h[s].next;
            fz_unref(S, s);
            s = next;
        }
        H->next = -1;
        H->len = H->pkt_len;
        H->nb_segs = 1;
        return;
    }
    nk = fz_class_for(P, H->pkt_len);
    avail = nk < 0 ? 0 : fz_avail(S, (int)(P - S->pool), (unsigned)nk, cache);
    r = buffet_pkt_linearize(P->c[cache], &p);
    if (nk < 0) { FZ_CHECK(r == BUFFET_ERR_RANGE && p == H->p); return; }
    if (avail == 0) {
        FZ_CHECK(r == BUFFET_ERR_EXHAUSTED && p == H->p);
        P->failures[nk]++;
        return;
    }
    FZ_CHECK(r == BUFFET_OK && p != H->p);
    i = fz_add_direct(S, p, (int)(P - S->pool), (unsigned)nk);
    {
        fz_hdr *N = &S->h[i];
        uint32_t at = N->data_off;
        uint32_t user = P->d.user_size < S->pool[pool].d.user_size ? P->d.user_size : S->pool[pool].d.user_size;
        H = &S->h[head];
        for (s = head; s >= 0; s = S->h[s].next) {
            memcpy(N->bytes + at, fz_room_bytes(S, S->h[s].room) + S->h[s].data_off, S->h[s].len);
            at += S->h[s].len;
        }
        N->len = N->pkt_len = H->pkt_len;
        /* as much of the user area as both pools have is copied; the rest is what was there */
        FZ_CHECK(memcmp(N->user, H->user, user) == 0);
        fz_copy_meta(S, i, head);
        if (P->d.user_size) memcpy(N->user, buffet_pkt_user(p), P->d.user_size);
    }
    fz_drop_handle(S, k);
    S->handle[k] = i;
}

static void op_read(fz *S) {
    int k = fz_pick_handle(S), head, s;
    size_t off = fz_size(&S->in, 3000), len = fz_size(&S->in, 3000), pos = 0;
    unsigned char tmp[8192], want[8192];
    const unsigned char *r;
    bool in_one = false, use_tmp;
    const unsigned char *where = NULL;
    if (k < 0) return;
    head = S->handle[k];
    use_tmp = (fz_u8(&S->in) & 7) != 0 && len <= sizeof tmp;
    r = (const unsigned char *)buffet_pkt_read(S->h[head].p, off, len, use_tmp ? tmp : NULL);
    if (!buffet_in_range(off, len, S->h[head].pkt_len)) { FZ_CHECK(r == NULL); return; }
    if (len > sizeof want) return;
    /* the bytes the model has for [off, off+len), and where buffet should point when one segment holds them */
    for (s = head; s >= 0; s = S->h[s].next) {
        const fz_hdr *H = &S->h[s];
        size_t a = pos > off ? pos : off, b = pos + H->len < off + len ? pos + H->len : off + len;
        if (a < b) memcpy(want + (a - off), fz_room_bytes(S, H->room) + H->data_off + (a - pos), b - a);
        if (!where && off >= pos && off < pos + H->len) {
            in_one = len <= pos + H->len - off;
            where = H->p->buf + H->data_off + (off - pos);
        }
        pos += H->len;
    }
    if (len == 0) { FZ_CHECK(r == S->h[head].p->buf + S->h[head].p->data_off); return; }
    if (in_one) FZ_CHECK(r == where);
    else if (!use_tmp) { FZ_CHECK(r == NULL); return; }
    else FZ_CHECK(r == tmp);
    FZ_CHECK(memcmp(r, want, len) == 0);
}

static void op_write(fz *S) {
    int k = fz_pick_handle(S), s, n = fz_u8(&S->in) % FZ_SEGS;
    size_t off, len, i;
    fz_hdr *H;
    if (k < 0) return;
    for (s = S->handle[k]; n-- > 0 && S->h[s].next >= 0;) s = S->h[s].next;
    H = &S->h[s];
    if (H->len == 0) return;
    off = fz_u16(&S->in) % H->len;
    len = fz_u16(&S->in) % (H->len - off + 1);
    /* straight into the data (shared data too: the clones see it, as the model's rooms do) */
    for (i = 0; i < len; i++)
        ((unsigned char *)buffet_pkt_data(H->p))[off + i] = fz_room_bytes(S, H->room)[H->data_off + off + i] = fz_byte(S);
}

static void op_meta(fz *S) {
    int k = fz_pick_handle(S);
    fz_hdr *H;
    fz_pool *P;
    if (k < 0) return;
    H = &S->h[S->handle[k]];
    P = &S->pool[H->pool];
    H->p->timestamp = H->timestamp = fz_u64(&S->in);
    H->p->hash = H->hash = fz_u32(&S->in);
    H->p->in_port = H->in_port = fz_u16(&S->in);
    H->p->vlan_tci = H->vlan_tci = fz_u16(&S->in);
    H->p->packet_type = H->packet_type = fz_u8(&S->in);
    if (P->d.user_size) {
        size_t i;
        unsigned char *u = (unsigned char *)buffet_pkt_user(H->p);
        for (i = 0; i < P->d.user_size && i < FZ_USER_MAX; i++) u[i] = H->user[i] = fz_byte(S);
    } else {
        FZ_CHECK(buffet_pkt_user(H->p) == NULL);
    }
}

static void op_to_chain(fz *S) {
    int k = fz_pick_handle(S), c, s;
    fz_chain *C;
    if (k < 0) return;
    for (c = 0; c < FZ_CHAINS && S->chain[c].used; c++) {}
    if (c == FZ_CHAINS) {   /* all in use: release one instead */
        c = fz_u8(&S->in) % FZ_CHAINS;
        C = &S->chain[c];
        buffet_chain_deinit(&C->ch);
        for (s = 0; s < C->n; s++) fz_unref(S, C->sl[s].hdr);
        C->used = false;
        return;
    }
    C = &S->chain[c];
    FZ_CHECK(buffet_chain_init(&C->ch, buffet_debug_allocator(S->dbg)) == BUFFET_OK);
    FZ_CHECK(buffet_pkt_to_chain(S->h[S->handle[k]].p, &C->ch) == BUFFET_OK);
    C->used = true;
    C->n = 0;
    for (s = S->handle[k]; s >= 0; s = S->h[s].next) {
        fz_hdr *H = &S->h[s];
        if (H->len == 0) continue;
        FZ_CHECK(C->n < FZ_SLICES);
        C->sl[C->n].hdr = s;
        C->sl[C->n].room = H->room;
        C->sl[C->n].off = H->data_off;
        C->sl[C->n].len = H->len;
        C->n++;
        H->refs++;
    }
}

static void op_flush(fz *S) {
    int pool = fz_u8(&S->in) % S->npools, k;
    fz_pool *P = &S->pool[pool];
    buffet_pkt_stats st;
    unsigned c;
    buffet_pkt_cache_flush(P->c[0]);
    if (P->c[1]) buffet_pkt_cache_flush(P->c[1]);
    for (k = 0; k < 2; k++)
        for (c = 0; P->c[k] && c <= P->nclasses; c++) FZ_CHECK(P->c[k]->cls[c].count == 0);
    /* flushed, the counters are exact: in use = what the model holds */
    st = buffet_pkt_pool_get_stats(P->p);
    for (c = 0; c <= P->nclasses; c++) FZ_CHECK(st.cls[c].in_use == P->max[c] - fz_avail(S, pool, c, -1));
}

static void op_block(fz *S) {
    int b = fz_u8(&S->in) % FZ_BLOCKS, pool, cache;
    fz_block *B = &S->block[b];
    if (B->p) {   /* give it back, its bytes intact */
        size_t i;
        for (i = 0; i < B->size; i++) FZ_CHECK(((unsigned char *)B->p)[i] == (unsigned char)(B->seed + i));
        buffet_free(buffet_pkt_allocator(S->pool[B->pool].c[B->cache]), B->p, B->size, 64, BUFFET_SITE);
        B->p = NULL;
        return;
    }
    pool = fz_u8(&S->in) % S->npools;
    cache = fz_pick_cache(S, pool);
    {
        fz_pool *P = &S->pool[pool];
        size_t size = 1 + fz_u16(&S->in) % 2500, i;
        unsigned k;
        size_t avail;
        void *got;
        for (k = 0; k < P->nclasses && fz_headroom(P) + P->room[k] < size; k++) {}
        avail = k < P->nclasses ? fz_avail(S, pool, k, cache) : 0;
        got = buffet_alloc(buffet_pkt_allocator(P->c[cache]), size, 64, BUFFET_SITE);
        if (k == P->nclasses) { fz_expect_fail(S, got, BUFFET_ERR_TOO_LARGE, pool, (int)P->nclasses - 1); return; }
        if (avail == 0) { fz_expect_fail(S, got, BUFFET_ERR_EXHAUSTED, pool, (int)k); return; }
        B->p = got;
        FZ_CHECK(B->p != NULL && ((uintptr_t)B->p & 63) == 0);
        FZ_CHECK(fz_find(S, (buffet_pkt *)((unsigned char *)B->p - P->p->hdr_size)) < 0);
        B->size = size;
        B->pool = pool;
        B->cache = cache;
        B->cls = k;
        B->seed = fz_byte(S);
        for (i = 0; i < size; i++) ((unsigned char *)B->p)[i] = (unsigned char)(B->seed + i);
    }
}

/* Two to four packets of a pool, each with some data, chained into one: the shape most of the
   other operations find interesting. */
static void op_compose(fz *S) {
    int pool = fz_u8(&S->in) % S->npools, n = 2 + fz_u8(&S->in) % 3, i, first = -1, k;
    for (i = 0; i < n; i++) {
        size_t size = fz_u16(&S->in) % 2100;
        k = fz_alloc_size(S, pool, fz_pick_cache(S, pool), size);
        if (k < 0) return;
        fz_grow(S, k, size % (S->pool[pool].room[S->h[S->handle[k]].cls] + 1), true);
        if (first < 0) first = k;
        else fz_chain_two(S, first, k);
    }
}

/* ---------------------------------------------------------------------------------------------
   Misuse: each refused, nothing changed (the comparison after the step says so) */

static void op_double_free(fz *S) {
    unsigned i = fz_u8(&S->in) % FZ_FREED;
    buffet_pkt *p = S->freed[i].p;
    int pool = S->freed[i].pool, b;
    if (!p || fz_find(S, p) >= 0) return;   /* out again: no longer a double free */
    for (b = 0; b < FZ_BLOCKS; b++)
        if (S->block[b].p && (unsigned char *)S->block[b].p - S->pool[S->block[b].pool].p->hdr_size == (unsigned char *)p) return;
    FZ_CHECK(p->refcnt == 0);
    switch (fz_u8(&S->in) % 3) {
    case 0: buffet_pkt_free(S->pool[pool].c[0], p); break;
    case 1: buffet_pkt_free_shared(p); break;
    default: buffet_pkt_free(S->pool[(pool + 1) % S->npools].c[0], p); break;
    }
    S->pool[pool].double_frees++;
    /* nor may a reference or a clone bring it back */
    FZ_CHECK(buffet_pkt_ref(p) != BUFFET_OK && p->refcnt == 0);
    FZ_CHECK(buffet_pkt_clone(S->pool[pool].c[0], p) == NULL);
}

/* A block that is no packet (heap memory holding the input's bytes, its `pool` field set to
   something that is no live pool) given to free: refused, counted on the cache's pool. */
static void op_garbage(fz *S) {
    int c = (int)(fz_u8(&S->in) % S->npools), i;
    unsigned char *m = (unsigned char *)malloc(sizeof(buffet_pkt) + 256);
    buffet_pkt *h = (buffet_pkt *)m;
    uintptr_t fake[3];
    FZ_CHECK(m != NULL);
    for (i = 0; i < (int)sizeof(buffet_pkt) + 256; i++) m[i] = fz_u8(&S->in);
    fake[0] = 0;
    fake[1] = 16;
    fake[2] = (uintptr_t)m;
    h->pool = (buffet_pkt_pool *)fake[fz_u8(&S->in) % 3];
    if (fz_u8(&S->in) & 1) {
        buffet_pkt_free(S->pool[c].c[0], h);
        S->pool[c].foreign_frees++;
    } else {
        buffet_pkt_free_shared(h);   /* no cache and no pool: refused without a word */
    }
    free(m);
}

static void op_foreign(fz *S) {
    int k = fz_pick_handle(S), n = fz_u8(&S->in) % FZ_SEGS, s, pool, how = fz_u8(&S->in) % 6;
    buffet_pkt copy;
    buffet_chain ch;
    if (k < 0) return;
    for (s = S->handle[k]; n-- > 0 && S->h[s].next >= 0;) s = S->h[s].next;
    pool = S->h[s].pool;
    memcpy(&copy, S->h[s].p, sizeof copy);
    switch (how) {
    case 0: {
        int c = (int)(fz_u8(&S->in) % S->npools);
        buffet_pkt_free(S->pool[c].c[0], &copy);
        S->pool[c].foreign_frees++;
        break;
    }
    case 1:
        buffet_pkt_free_shared(&copy);
        S->pool[pool].foreign_frees++;
        break;
    case 2:   /* a copy of a data buffer's header cannot be cloned (its clones would free the original) */
        if (S->h[s].kind != FZ_DIRECT || s != S->handle[k]) return;
        FZ_CHECK(buffet_pkt_clone(S->pool[pool].c[0], &copy) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
        break;
    case 3:
        if (s != S->handle[k]) return;
        FZ_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(S->dbg)) == BUFFET_OK);
        FZ_CHECK(buffet_pkt_to_chain(&copy, &ch) == BUFFET_ERR_INVALID && buffet_chain_len(&ch) == 0);
        buffet_chain_deinit(&ch);
        break;
    case 4: {
        int o = fz_pick_handle(S);
        if (s != S->handle[k] || o < 0 || S->handle[o] == S->handle[k]) return;
        FZ_CHECK(buffet_pkt_chain(S->h[S->handle[o]].p, &copy) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_pkt_chain(&copy, S->h[S->handle[o]].p) == BUFFET_ERR_INVALID);
        break;
    }
    default: {
        buffet_pkt *pp = &copy;
        if (s != S->handle[k]) return;
        FZ_CHECK(buffet_pkt_linearize(S->pool[pool].c[0], &pp) == (copy.next ? BUFFET_ERR_INVALID : BUFFET_OK) && pp == &copy);
        break;
    }
    }
}

/* A packet put next to itself, or behind one of its own segments, or a segment made a head. */
static void op_chain_misuse(fz *S) {
    int k = fz_pick_handle(S), o, seg;
    buffet_pkt *head;
    if (k < 0) return;
    head = S->h[S->handle[k]].p;
    seg = S->h[S->handle[k]].next;
    o = fz_pick_handle(S);
    FZ_CHECK(buffet_pkt_chain(head, head) == BUFFET_ERR_INVALID);
    if (seg >= 0) {
        /* a segment freed alone would leave its head linking a buffer handed out again */
        if (fz_u8(&S->in) & 1) buffet_pkt_free(S->pool[S->h[seg].pool].c[0], S->h[seg].p);
        else buffet_pkt_free_shared(S->h[seg].p);
        FZ_CHECK(buffet_pkt_chain(S->h[seg].p, head) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_pkt_chain(head, S->h[seg].p) == BUFFET_ERR_INVALID);
        if (o >= 0 && S->handle[o] != S->handle[k]) {
            FZ_CHECK(buffet_pkt_chain(S->h[seg].p, S->h[S->handle[o]].p) == BUFFET_ERR_INVALID);
            FZ_CHECK(buffet_pkt_chain(S->h[S->handle[o]].p, S->h[seg].p) == BUFFET_ERR_INVALID);
        }
    }
}

/* The header fields written so that the lengths no longer add up: every call that reads them
   refuses the packet; then they are put back. */
static void op_bad_lengths(fz *S) {
    int k = fz_pick_handle(S), n = fz_u8(&S->in) % FZ_SEGS, s, field = fz_u8(&S->in) % 4, o;
    uint32_t delta = 1 + fz_u16(&S->in);
    buffet_pkt *head, *seg, saved_head, saved_seg, *pp;
    unsigned char tmp[64];
    buffet_chain ch;
    if (k < 0) return;
    head = S->h[S->handle[k]].p;
    for (s = S->handle[k]; n-- > 0 && S->h[s].next >= 0;) s = S->h[s].next;
    seg = S->h[s].p;
    memcpy(&saved_head, head, sizeof saved_head);
    memcpy(&saved_seg, seg, sizeof saved_seg);
    switch (field) {
    case 0: head->pkt_len += delta; break;
    case 1: head->nb_segs = (uint16_t)(head->nb_segs + (delta % 60000 ? delta % 60000 : 1)); break;
    case 2: seg->len += delta; break;
    default: seg->data_off = (uint16_t)(seg->buf_len + delta % 1000 < 65536 ? seg->buf_len + delta % 1000 : 65535); break;
    }
    if (field == 3 && seg->data_off <= seg->buf_len) seg->data_off = 65535;
    o = fz_pick_handle(S);
    FZ_CHECK(buffet_pkt_read(head, 0, 1, tmp) == NULL);
    FZ_CHECK(buffet_pkt_trim(head, 0) == BUFFET_ERR_INVALID);
    FZ_CHECK(buffet_pkt_adj(head, 0) == NULL);
    FZ_CHECK(buffet_pkt_ref(head) == BUFFET_ERR_INVALID);
    FZ_CHECK(buffet_pkt_clone(S->pool[S->h[S->handle[k]].pool].c[0], head) == NULL);
    pp = head;
    FZ_CHECK(buffet_pkt_linearize(S->pool[S->h[S->handle[k]].pool].c[0], &pp) == BUFFET_ERR_INVALID && pp == head);
    FZ_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(S->dbg)) == BUFFET_OK);
    FZ_CHECK(buffet_pkt_to_chain(head, &ch) == BUFFET_ERR_INVALID && buffet_chain_len(&ch) == 0);
    buffet_chain_deinit(&ch);
    if (o >= 0 && S->handle[o] != S->handle[k]) {
        buffet_result r1 = buffet_pkt_chain(head, S->h[S->handle[o]].p);
        buffet_result r2 = buffet_pkt_chain(S->h[S->handle[o]].p, head);
        FZ_CHECK(r1 != BUFFET_OK && r2 != BUFFET_OK);
    }
    memcpy(head, &saved_head, sizeof saved_head);
    if (seg != head) memcpy(seg, &saved_seg, sizeof saved_seg);
    FZ_CHECK(buffet_pkt_read(head, 0, 0, tmp) != NULL);
}

/* ---------------------------------------------------------------------------------------------
   Raw buffers: lent in bursts, written by the program, made packets or given back raw */

#define FZ_BURST 24         /* entries in a raw burst given back */

/* The model's raw buffers (header indices) into list. Returns: how many. */
static int fz_raws(const fz *S, int *list) {
    int i, n = 0;
    for (i = 0; i < FZ_HDRS; i++)
        if (S->h[i].p && S->h[i].kind == FZ_RAW) list[n++] = i;
    return n;
}

/* Is p a buffer an op_block allocation holds (out, though not in the model's headers)? */
static bool fz_in_block(const fz *S, const buffet_pkt *p) {
    int b;
    for (b = 0; b < FZ_BLOCKS; b++) {
        const fz_block *B = &S->block[b];
        if (B->p && (const unsigned char *)B->p - S->pool[B->pool].p->hdr_size == (const unsigned char *)p)
            return true;
    }
    return false;
}

/* A burst of raw buffers of a class, all or nothing; each room then written with model bytes. */
static void op_alloc_bulk_raw(fz *S) {
    int pool = fz_u8(&S->in) % S->npools, cache = fz_pick_cache(S, pool), i, h;
    fz_pool *P = &S->pool[pool];
    unsigned cls = fz_u8(&S->in) % (P->nclasses + 1);
    unsigned b = fz_u8(&S->in);
    /* mostly small; now and then the cache's size, one more, or more than any cache holds */
    size_t n = b < 250 ? b % 40 : b == 255 ? BUFFET_PKT_CACHE_MAX + 1 : P->c[cache]->size + (b & 1);
    size_t got, avail, j;
    buffet_pkt *v[BUFFET_PKT_CACHE_MAX + 1];
    avail = cls < P->nclasses ? fz_avail(S, pool, cls, cache) : 0;
    got = buffet_pkt_alloc_bulk_raw(P->c[cache], cls, v, n);
    if (S->trace)
        fprintf(stderr, "  alloc_bulk_raw: pool %d class %u: %zu of %zu, got %zu (cache of %u)\n", pool, cls,
                n, avail, got, P->c[cache]->size);
    if (n == 0 || cls >= P->nclasses) {
        FZ_CHECK(got == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
        return;
    }
    if (n > P->c[cache]->size) {
        FZ_CHECK(got == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
        P->failures[cls]++;
        return;
    }
    if (avail < n) {
        FZ_CHECK(got == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
        P->failures[cls]++;
        return;
    }
    FZ_CHECK(got == n);
    for (i = 0; i < (int)n; i++) {
        buffet_pkt *p = v[i];
        unsigned char *room = buffet_pkt_raw_buf(P->c[cache], p);
        fz_hdr *H;
        FZ_CHECK(p->pool == P->p && p->cls == cls && p->flags == 0 && p->buf == room &&
                 p->buf_len == fz_headroom(P) + P->room[cls]);
        FZ_CHECK(p->refcnt == 0 && p->nb_segs == BUFFET_PKT_RAW_LENT);
        h = fz_add(S, p, pool, FZ_RAW, cls, 0, p->buf_len, 0);   /* checks it is out only once */
        H = &S->h[h];
        H->refs = 0;
        H->nb_segs = BUFFET_PKT_RAW_LENT;
        for (j = 0; j < H->buf_len; j++) room[j] = H->bytes[j] = fz_byte(S);
        memcpy(&H->snap, p, sizeof *p);
    }
}

enum { FZ_E_NULL, FZ_E_RAW, FZ_E_FREED, FZ_E_LIVE, FZ_E_COPY, FZ_E_INTO };

/* A burst given back raw: the model's raw buffers mixed with what must be refused; the model
   says which go back and what each refusal is counted as (see buffet__pkt_put_raw). */
static void op_free_bulk_raw(fz *S) {
    int cp = fz_u8(&S->in) % S->npools, how = fz_u8(&S->in) % 4, n = fz_u8(&S->in) % (FZ_BURST + 1), i, nr;
    buffet_pkt_cache *c = how == 3 ? NULL : S->pool[cp].c[how == 1 && S->pool[cp].c[1] ? 1 : 0];
    int raws[FZ_HDRS], ent[FZ_BURST], idx[FZ_BURST], fpool[FZ_BURST], scribbled = -1;
    bool fclone[FZ_BURST], back[FZ_HDRS];
    size_t off[FZ_BURST];
    buffet_pkt *v[FZ_BURST] = {NULL}, copies[FZ_BURST];
    nr = fz_raws(S, raws);
    memset(back, 0, sizeof back);
    for (i = 0; i < n; i++) {
        unsigned k = fz_u8(&S->in) % 16, pick = fz_u8(&S->in);
        ent[i] = FZ_E_NULL;
        idx[i] = fpool[i] = -1;
        fclone[i] = false;
        off[i] = 0;
        v[i] = NULL;
        if (k < 8 && nr) {   /* a raw buffer (picked again later in the burst: given back twice) */
            ent[i] = FZ_E_RAW;
            idx[i] = raws[pick % nr];
            v[i] = S->h[idx[i]].p;
        } else if (k == 8 && i) {   /* the same entry as an earlier one */
            int j = (int)(pick % (unsigned)i);
            ent[i] = ent[j], idx[i] = idx[j], fpool[i] = fpool[j], fclone[i] = fclone[j];
            off[i] = off[j], v[i] = v[j];
        } else if (k == 9 || k == 10) {   /* a raw buffer given back before, or a freed packet's header */
            buffet_pkt *p = k == 9 ? S->raw_freed[pick % FZ_FREED].p : S->freed[pick % FZ_FREED].p;
            if (!p || fz_find(S, p) >= 0 || fz_in_block(S, p)) continue;   /* out again: no longer free */
            ent[i] = FZ_E_FREED;
            v[i] = p;
            fpool[i] = k == 9 ? S->raw_freed[pick % FZ_FREED].pool : S->freed[pick % FZ_FREED].pool;
            fclone[i] = k == 10 && S->freed[pick % FZ_FREED].clone;
        } else if (k == 11 || k == 12) {   /* a live header: any (11), or a clone's or external one (12) */
            int s, t;
            for (s = 0, t = (int)(pick * 3u % FZ_HDRS); s < FZ_HDRS; s++, t = (t + 1) % FZ_HDRS)
                if (S->h[t].p && S->h[t].kind != FZ_RAW && (k == 11 || S->h[t].kind != FZ_DIRECT)) break;
            if (s == FZ_HDRS) continue;
            ent[i] = FZ_E_LIVE;
            idx[i] = t;
            v[i] = S->h[t].p;
        } else if (k == 14 && nr) {   /* a pointer into a raw buffer's room, where a header would fit */
            fz_hdr *H = &S->h[raws[pick % nr]];
            size_t room = H->buf_len;
            if (room < sizeof(buffet_pkt) + 8) continue;
            ent[i] = FZ_E_INTO;
            idx[i] = raws[pick % nr];
            off[i] = 8 + (fz_u16(&S->in) % (room - sizeof(buffet_pkt) - 8 + 1) & ~(size_t)7);
            v[i] = (buffet_pkt *)(void *)(H->p->buf + off[i]);
        } else if (k == 15 && nr) {   /* a copy of a raw buffer's header */
            ent[i] = FZ_E_COPY;
            idx[i] = raws[pick % nr];
            memcpy(&copies[i], S->h[idx[i]].p, sizeof copies[i]);
            v[i] = &copies[i];
        }
    }
    /* a pointer into a room given back earlier in the burst would be read after its buffer is free
       (poisoned): the caller's use after free, not a misuse buffet is to see */
    for (i = 0; i < n; i++) {
        int j;
        for (j = 0; ent[i] == FZ_E_INTO && j < i; j++)
            if (ent[j] == FZ_E_RAW && idx[j] == idx[i]) ent[i] = FZ_E_NULL, v[i] = NULL;
    }
    /* now and then a raw buffer of the burst whose nb_segs the program wrote (begun as a packet) */
    if (n && (fz_u8(&S->in) & 3) == 0) {
        int j = fz_u8(&S->in) % n;
        uint16_t mark = fz_u16(&S->in);
        if (ent[j] == FZ_E_RAW && mark != BUFFET_PKT_RAW_LENT) {
            scribbled = idx[j];
            S->h[scribbled].p->nb_segs = mark;
        }
    }
    buffet_pkt_free_bulk_raw(c, n || (fz_u8(&S->in) & 1) ? v : NULL, (size_t)n);
    /* in order: what goes back, what is counted where */
    for (i = 0; i < n; i++) {
        switch (ent[i]) {
        case FZ_E_RAW:
            if (idx[i] == scribbled || back[idx[i]]) S->pool[S->h[idx[i]].pool].double_frees++;
            else back[idx[i]] = true;
            break;
        case FZ_E_FREED:
            /* a free header: a clone class one is no raw buffer (foreign), a data one a double free */
            if (fclone[i]) S->pool[fpool[i]].foreign_frees++;
            else S->pool[fpool[i]].double_frees++;
            break;
        case FZ_E_LIVE:
            /* a packet (references held), or a clone's or external header: no raw buffer,
               counted as foreign on its own pool */
            S->pool[S->h[idx[i]].pool].foreign_frees++;
            break;
        case FZ_E_COPY:   /* no header's place (found by address, not read): foreign on the cache's pool */
        case FZ_E_INTO:
            if (c) S->pool[cp].foreign_frees++;
            break;
        default: break;
        }
    }
    if (scribbled >= 0) S->h[scribbled].p->nb_segs = BUFFET_PKT_RAW_LENT;   /* still lent: mark put back */
    if (S->trace) {
        int q, nb = 0;
        for (i = 0; i < FZ_HDRS; i++) nb += back[i];
        fprintf(stderr, "  free_bulk_raw through %s: %d entries (kinds", c ? "a cache" : "no cache", n);
        for (i = 0; i < n; i++) fprintf(stderr, " %d", ent[i]);
        fprintf(stderr, "), %d back", nb);
        for (q = 0; q < S->npools; q++)
            fprintf(stderr, "; pool %d: %llu double, %llu foreign", q,
                    (unsigned long long)S->pool[q].double_frees,
                    (unsigned long long)S->pool[q].foreign_frees);
        fprintf(stderr, "\n");
    }
    for (i = 0; i < FZ_HDRS; i++)
        if (back[i]) {
            fz_hdr *H = &S->h[i];
            S->raw_freed[S->nraw_freed % FZ_FREED].p = H->p;
            S->raw_freed[S->nraw_freed++ % FZ_FREED].pool = H->pool;
            S->freed[S->nfreed % FZ_FREED].p = H->p;
            S->freed[S->nfreed % FZ_FREED].pool = H->pool;
            S->freed[S->nfreed++ % FZ_FREED].clone = false;
            free(H->bytes);
            H->bytes = NULL;
            H->p = NULL;
        }
}

/* A raw buffer's fields from data_off on written by the program (it stays raw: they are its
   own), or the buffer made a packet with buffet_pkt_init_raw, as buffet_pkt_alloc leaves one. */
static void op_init_raw(fz *S) {
    int raws[FZ_HDRS], nr = fz_raws(S, raws), r, hk = fz_free_handle(S), how = fz_u8(&S->in) % 4;
    fz_hdr *H;
    fz_pool *P;
    buffet_pkt *p;
    if (nr == 0) return;
    r = raws[fz_u8(&S->in) % nr];
    H = &S->h[r];
    P = &S->pool[H->pool];
    p = H->p;
    if (how == 0) {
        unsigned nx = fz_u8(&S->in);
        p->data_off = fz_u16(&S->in);
        /* next: none, itself, or another header (a free buffer's links must never be followed) */
        p->next = nx < 64 ? NULL : nx < 128 ? p : S->h[nx % FZ_HDRS].p;
        p->timestamp = fz_u64(&S->in);
        p->pkt_len = fz_u32(&S->in);
        p->len = fz_u32(&S->in);
        p->hash = fz_u32(&S->in);
        p->in_port = fz_u16(&S->in);
        p->out_port = fz_u16(&S->in);
        p->vlan_tci = fz_u16(&S->in);
        p->packet_type = fz_u16(&S->in);
        if (P->d.user_size) {
            size_t i;
            unsigned char *u = (unsigned char *)buffet_pkt_user(p);
            for (i = 0; i < P->d.user_size; i++) u[i] = H->user[i] = fz_byte(S);
        }
        memcpy(&H->snap, p, sizeof *p);
        return;
    }
    if (hk < 0) return;
    buffet_pkt_init_raw(P->c[fz_pick_cache(S, H->pool)], p);
    FZ_CHECK(p->next == NULL && p->nb_segs == 1 && p->pkt_len == 0 && p->len == 0 && p->refcnt == 1);
    FZ_CHECK(p->hash == 0 && p->timestamp == 0 && p->in_port == 0 && p->out_port == 0 && p->vlan_tci == 0 &&
             p->packet_type == 0);
    FZ_CHECK(p->data_off == fz_headroom(P) && buffet_pkt_tailroom(p) == P->room[H->cls]);
    /* a direct packet from now on: its room keeps the bytes written while raw */
    H->kind = FZ_DIRECT;
    H->refs = 1;
    H->data_off = fz_headroom(P);
    H->len = H->pkt_len = 0;
    H->nb_segs = 1;
    H->next = -1;
    H->timestamp = 0;
    H->hash = 0;
    H->in_port = H->out_port = H->vlan_tci = H->packet_type = 0;
    S->handle[hk] = r;
}

/* A raw buffer freed as a packet: refcnt 0 makes it a free buffer to buffet, so each is refused
   as a double free (on its own pool), and a reference or a clone refused; it stays lent. */
static void op_raw_misuse(fz *S) {
    int raws[FZ_HDRS], nr = fz_raws(S, raws), r, pool, how = fz_u8(&S->in) % 5;
    fz_pool *P;
    buffet_pkt *p;
    if (nr == 0) return;
    r = raws[fz_u8(&S->in) % nr];
    p = S->h[r].p;
    pool = S->h[r].pool;
    P = &S->pool[pool];
    switch (how) {
    case 0: buffet_pkt_free(P->c[fz_pick_cache(S, pool)], p); break;
    case 1: buffet_pkt_free_shared(p); break;
    case 2: buffet_pkt_free(S->pool[(pool + 1) % S->npools].c[0], p); break;
    case 3: buffet_pkt_unref(P->c[0], p); break;
    default: buffet_pkt_free_bulk(P->c[fz_pick_cache(S, pool)], &p, 1); break;
    }
    P->double_frees++;
    FZ_CHECK(buffet_pkt_ref(p) != BUFFET_OK);
    FZ_CHECK(buffet_pkt_clone(P->c[0], p) == NULL);
}

/* ---------------------------------------------------------------------------------------------
   The run */

static void fz_teardown(fz *S) {
    int k, i;
    bool destroy_first = S->destroy_first;
    for (k = 0; k < FZ_CHAINS; k++)
        if (S->chain[k].used) {
            buffet_chain_deinit(&S->chain[k].ch);
            for (i = 0; i < S->chain[k].n; i++) fz_unref(S, S->chain[k].sl[i].hdr);
            S->chain[k].used = false;
        }
    if (destroy_first) {
        /* destroyed with packets and caches out: released when the last comes back */
        for (k = 0; k < S->npools; k++) buffet_pkt_pool_destroy(S->pool[k].p);
        for (k = 0; k < S->npools; k++) FZ_CHECK(buffet_pkt_alloc_shared(S->pool[k].p, 1) == NULL &&
                                                 buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    }
    for (k = 0; k < FZ_HANDLES; k++)
        if (S->handle[k] >= 0) {
            buffet_pkt_free(S->pool[S->h[S->handle[k]].pool].c[0], S->h[S->handle[k]].p);
            fz_drop_handle(S, k);
        }
    for (k = 0; k < FZ_BLOCKS; k++)
        if (S->block[k].p) {
            buffet_free(buffet_pkt_allocator(S->pool[S->block[k].pool].c[S->block[k].cache]), S->block[k].p, S->block[k].size, 64,
                        BUFFET_SITE);
            S->block[k].p = NULL;
        }
    {   /* the raw buffers go back in one burst, every pool's (through pool 0's cache, or none) */
        buffet_pkt *v[FZ_HDRS];
        int n = 0;
        for (i = 0; i < FZ_HDRS; i++)
            if (S->h[i].p && S->h[i].kind == FZ_RAW) {
                v[n++] = S->h[i].p;
                free(S->h[i].bytes);
                S->h[i].bytes = NULL;
                S->h[i].p = NULL;
            }
        buffet_pkt_free_bulk_raw(S->seed & 1 ? NULL : S->pool[0].c[0], v, (size_t)n);
    }
    for (i = 0; i < FZ_HDRS; i++) FZ_CHECK(S->h[i].p == NULL);
    for (k = 0; k < FZ_EXTS; k++)
        if (S->ext[k].mem) {
            FZ_CHECK(S->ext[k].count == 0 && S->ext[k].frees == 1);
            free(S->ext[k].mem);
            free(S->ext[k].bytes);
        }

    for (k = 0; k < S->npools; k++) {
        fz_pool *P = &S->pool[k];
        if (!destroy_first) {
            unsigned c;
            buffet_pkt_stats st;
            buffet_pkt_cache_flush(P->c[0]);
            if (P->c[1]) buffet_pkt_cache_flush(P->c[1]);
            st = buffet_pkt_pool_get_stats(P->p);
            for (c = 0; c <= P->nclasses; c++) FZ_CHECK(st.cls[c].in_use == 0);
            FZ_CHECK(buffet_pkt_pool_report_leaks(P->p, NULL) == 0);
        }
        buffet_pkt_cache_destroy(P->c[0]);
        buffet_pkt_cache_destroy(P->c[1]);
        if (!destroy_first) buffet_pkt_pool_destroy(P->p);
    }
    /* every pool released: nothing of their bookkeeping is left */
    FZ_CHECK(buffet_debug_get_stats(S->dbg).live_count == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz *S = (fz *)calloc(1, sizeof *S);
    buffet_debug_desc dd;
    int k, steps = 0;
    FZ_CHECK(S != NULL);
    S->trace = getenv("FZ_TRACE") != NULL;
    S->in.p = data;
    S->in.n = size;
    for (k = 0; k < FZ_HANDLES; k++) S->handle[k] = -1;
    memset(&dd, 0, sizeof dd);
    dd.quarantine_count = 8;
    FZ_CHECK(buffet_debug_create(&S->dbg, &dd) == BUFFET_OK);
    k = fz_u8(&S->in);
    S->npools = (k & 1) + 1;
    S->destroy_first = (k & 2) != 0;
    S->seed = fz_u8(&S->in);
    for (k = 0; k < S->npools; k++) fz_pool_create(S, k);
    while (fz_more(&S->in) && steps++ < FZ_STEPS) {
        unsigned byte = fz_u8(&S->in), op = byte % 28;
        /* the raw ops: bytes no input of the corpus used as an operation when they came, so that
           the inputs before them keep their meaning */
        if (byte >= 249 && byte <= 254) {
            if (S->trace) fprintf(stderr, "step %d: raw op %u\n", steps, byte);
            switch (byte) {
            case 249: case 250: op_alloc_bulk_raw(S); break;
            case 251: case 252: op_free_bulk_raw(S); break;
            case 253: op_init_raw(S); break;
            default: op_raw_misuse(S); break;
            }
            fz_check_all(S);
            continue;
        }
        if (S->trace) fprintf(stderr, "step %d: op %u\n", steps, op);
        switch (op) {
        case 0: case 1: case 2: op_alloc(S); break;
        case 3: op_alloc_bulk(S); break;
        case 4: case 5: op_free(S); break;
        case 6: op_free_bulk(S); break;
        case 7: op_ref(S); break;
        case 8: op_clone(S); break;
        case 9: op_attach(S); break;
        case 10: op_prepend_append(S, false); break;
        case 11: case 12: op_prepend_append(S, true); break;
        case 13: op_adj_trim(S, false); break;
        case 14: op_adj_trim(S, true); break;
        case 15: op_chain(S); break;
        case 16: op_linearize(S); break;
        case 17: op_read(S); break;
        case 18: op_write(S); break;
        case 19: op_meta(S); break;
        case 20: op_to_chain(S); break;
        case 21: op_flush(S); break;
        case 22: op_block(S); break;
        case 23: op_double_free(S); break;
        case 24: if (fz_u8(&S->in) & 1) op_foreign(S); else op_garbage(S); break;
        case 25: case 26: op_compose(S); break;
        default:
            if (fz_u8(&S->in) & 1) op_chain_misuse(S);
            else op_bad_lengths(S);
            break;
        }
        fz_check_all(S);
    }
    fz_teardown(S);
    buffet_debug_destroy(S->dbg);
    free(S);
    return 0;
}
