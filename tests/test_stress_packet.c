/* test_stress_packet.c - seeded concurrency stress of buffet_packet.h's thread-safe parts, each
   with 2 and with 4 threads, random yields and short random delays so that interleavings vary:
     store   the pool's shared store under per-thread caches: alloc and free (single, bulk,
             raw bulk, without a cache), packets and raw buffers handed to another thread and
             freed there, raw buffers made packets, bursts mixing both, cache flushes,
             statistics read meanwhile (struct, JSON, Prometheus);
     refs    shared packets and their reference counts: references and clones taken from
             published packets on every thread, checked and dropped there or on another thread,
             packets retired while others still hold them, written only once buffet says they
             are alone again.
   Conservation is checked as it runs and at the end: a buffer is never out twice (its holder is
   swapped into its user area atomically when it comes out, and back out before it is freed),
   the bytes a holder wrote are intact when it frees (or another thread frees) the packet, a
   packet buffet calls alone has no other holder, every reference count is back to 1 before the
   last free, and the statistics add up to what the threads did. Operations per scenario and
   thread count: bt_stress_ops() (tests/bt.h: 10^7 in the gcc C11 build, 4*10^6 under TSan);
   BUFFET_STRESS_SEED picks the seed (printed). C11 and C++17. */
#ifndef BUFFET_IMPLEMENTATION
#define BUFFET_IMPLEMENTATION
#endif
#include "../buffet_packet.h"
#include "bt.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#define TS_MAX_THREADS 4
#define TS_HELD 48           /* packets a thread holds at most */
#define TS_BOX 256           /* a thread's mailbox */
#define TS_SLOTS 16          /* published packets (refs) */

/* ---------------------------------------------------------------------------------------------
   Helpers: a per-thread random generator, yields and delays, mailboxes */

static uint64_t ts_seed;

static uint64_t ts_rand(uint64_t *s) {   /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Now and then a yield, or a short busy delay, so that the threads interleave differently. */
static void ts_jitter(uint64_t *rng) {
    uint64_t r = ts_rand(rng);
    if ((r & 1023) == 0) {
        sched_yield();
    } else if ((r & 255) == 1) {
        volatile unsigned spin = 0;
        unsigned n = (unsigned)(r >> 20) % 300;
        while (spin < n) spin++;
    }
}

static unsigned long ts_ops(void) { return (unsigned long)bt_stress_ops(); }

/* A message between threads: a packet handed over with what its sender knows of it. */
typedef struct ts_msg {
    buffet_pkt *p;
    buffet_pkt *base;       /* refs: the published packet a reference or clone came from */
    uint64_t serial;
    uint32_t len;
    bool raw;               /* store: a raw buffer (buffet_pkt_alloc_bulk_raw), not a packet */
} ts_msg;

typedef struct ts_box {
    pthread_mutex_t mu;
    ts_msg m[TS_BOX];
    unsigned n;
} ts_box;

static bool ts_send(ts_box *b, const ts_msg *m) {
    bool ok;
    pthread_mutex_lock(&b->mu);
    ok = b->n < TS_BOX;
    if (ok) b->m[b->n++] = *m;
    pthread_mutex_unlock(&b->mu);
    return ok;
}
static unsigned ts_recv(ts_box *b, ts_msg *out, unsigned max) {
    unsigned n;
    pthread_mutex_lock(&b->mu);
    n = b->n < max ? b->n : max;
    b->n -= n;
    memcpy(out, b->m + b->n, n * sizeof *out);
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* The pattern a packet of serial s carries: its serial in the first 8 bytes, then s-derived bytes. */
static void ts_fill(unsigned char *d, uint32_t len, uint64_t serial) {
    uint32_t i;
    memcpy(d, &serial, sizeof serial);
    for (i = 8; i < len; i++) d[i] = (unsigned char)(serial * 31 + i);
}
static bool ts_intact(const unsigned char *d, uint32_t len, uint64_t serial) {
    uint64_t s;
    uint32_t i;
    memcpy(&s, d, sizeof s);
    if (s != serial) return false;
    for (i = 8; i < len; i++)
        if (d[i] != (unsigned char)(serial * 31 + i)) return false;
    return true;
}

/* The holder word in a buffer's user area: 0 while buffet has it, else the holder's id. */
static uint64_t *ts_word(const buffet_pkt *p) { return (uint64_t *)buffet_pkt_user(p); }

/* ---------------------------------------------------------------------------------------------
   store: the shared store under caches, cross-thread frees, statistics readers */

typedef struct ts_store {
    buffet_pkt_pool *pool;
    unsigned nthreads;
    unsigned long ops_per_thread;
    ts_box box[TS_MAX_THREADS];
    uint64_t out_twice, bad_bytes, bad_stats;    /* atomic: what went wrong */
    uint64_t allocs[BUFFET_PKT_MAX_CLASSES], frees[BUFFET_PKT_MAX_CLASSES];   /* atomic */
    uint64_t failures, ops_done;                 /* atomic */
} ts_store;

typedef struct ts_thread { void *shared; unsigned id; } ts_thread;

typedef struct ts_held { buffet_pkt *p; uint64_t serial; uint32_t len; bool raw; } ts_held;

/* Where a held buffer's bytes are: a packet's data, or a raw buffer's room after the headroom
   (where its data would start as a packet: buffet_pkt_init_raw keeps them). */
static unsigned char *ts_bytes(const ts_held *h) {
    return h->raw ? h->p->buf + 128 : (unsigned char *)buffet_pkt_data(h->p);
}

/* p just came out to thread `me`: it must not be out anywhere else. */
static void ts_take(ts_store *S, buffet_pkt *p, uint64_t me) {
    /* relaxed: the exchange's total order alone tells whether two holders overlap */
    if (__atomic_exchange_n(ts_word(p), me, __ATOMIC_RELAXED) != 0) __atomic_fetch_add(&S->out_twice, 1, __ATOMIC_RELAXED);
}
/* p is about to go back from thread `me`: it must still be its, with its bytes. */
static void ts_give(ts_store *S, const ts_held *h, uint64_t me) {
    if (!ts_intact(ts_bytes(h), h->len, h->serial) || h->p->refcnt != (h->raw ? 0 : 1) || (!h->raw && h->p->len != h->len) ||
        (h->raw && h->p->nb_segs != BUFFET_PKT_RAW_LENT))
        __atomic_fetch_add(&S->bad_bytes, 1, __ATOMIC_RELAXED);
    if (__atomic_exchange_n(ts_word(h->p), (uint64_t)0, __ATOMIC_RELAXED) != me) __atomic_fetch_add(&S->out_twice, 1, __ATOMIC_RELAXED);
}

/* A new packet's bytes, and its record. */
static void ts_stamp(ts_store *S, buffet_pkt *p, uint64_t me, uint64_t serial, uint64_t *rng, ts_held *h) {
    uint32_t len = 8 + (uint32_t)(ts_rand(rng) % 57);
    ts_take(S, p, me);
    ts_fill((unsigned char *)buffet_pkt_append(p, len), len, serial);
    h->p = p;
    h->serial = serial;
    h->len = len;
    h->raw = false;
    __atomic_fetch_add(&S->allocs[p->cls], 1, __ATOMIC_RELAXED);
}

/* A new raw buffer's bytes, and its record. */
static void ts_stamp_raw(ts_store *S, buffet_pkt *p, uint64_t me, uint64_t serial, uint64_t *rng, ts_held *h) {
    h->p = p;
    h->serial = serial;
    h->len = 8 + (uint32_t)(ts_rand(rng) % 57);
    h->raw = true;
    ts_take(S, p, me);
    ts_fill(ts_bytes(h), h->len, serial);
    __atomic_fetch_add(&S->allocs[p->cls], 1, __ATOMIC_RELAXED);
}

/* Give back one held buffer from thread `me`, through cache c (NULL: without one): checked,
   counted, then freed as what it is. */
static void ts_release(ts_store *S, buffet_pkt_cache *c, const ts_held *h, uint64_t me) {
    ts_give(S, h, me);
    __atomic_fetch_add(&S->frees[h->p->cls], 1, __ATOMIC_RELAXED);
    if (h->raw) buffet_pkt_free_bulk_raw(c, &h->p, 1);
    else if (c) buffet_pkt_free(c, h->p);
    else buffet_pkt_free_shared(h->p);
}

static void ts_store_check_stats(ts_store *S, uint64_t *rng) {
    buffet_pkt_stats st = buffet_pkt_pool_get_stats(S->pool);
    unsigned k;
    for (k = 0; k <= st.nclasses; k++)
        if (st.cls[k].created > st.cls[k].max || st.cls[k].in_use > st.cls[k].max)
            __atomic_fetch_add(&S->bad_stats, 1, __ATOMIC_RELAXED);
    if ((ts_rand(rng) & 255) == 0) {
        char text[8192];
        size_t n = (ts_rand(rng) & 1) ? buffet_pkt_pool_stats_json(S->pool, text, sizeof text)
                                      : buffet_pkt_pool_stats_prometheus(S->pool, text, sizeof text);
        if (n == 0 || (text[0] != '{' && text[0] != '#')) __atomic_fetch_add(&S->bad_stats, 1, __ATOMIC_RELAXED);
    }
}

static void *ts_store_thread(void *arg) {
    ts_thread *t = (ts_thread *)arg;
    ts_store *S = (ts_store *)t->shared;
    uint64_t me = t->id + 1, rng = ts_seed * 0x9E3779B97F4A7C15ull + me, counter = 0;
    buffet_pkt_cache *c = NULL;
    ts_held held[TS_HELD];
    unsigned nheld = 0, i;
    unsigned long op;
    buffet_pkt *v[16], *w[16];
    ts_msg m[16];
    BT_CHECK(buffet_pkt_cache_create(&c, S->pool, 1 + (uint32_t)(ts_rand(&rng) % 64)) == BUFFET_OK);
    for (op = 0; op < S->ops_per_thread; op++) {
        uint64_t r = ts_rand(&rng);
        unsigned what = (unsigned)(r % 112);
        ts_jitter(&rng);
        if (what < 30 && nheld < TS_HELD) {                      /* alloc through the cache */
            buffet_pkt *p = buffet_pkt_alloc(c, (size_t)(r >> 8) % 2049);
            if (!p) { __atomic_fetch_add(&S->failures, 1, __ATOMIC_RELAXED); continue; }
            ts_stamp(S, p, me, me << 48 | ++counter, &rng, &held[nheld++]);
        } else if (what < 35 && nheld < TS_HELD) {               /* without a cache */
            buffet_pkt *p = buffet_pkt_alloc_shared(S->pool, (size_t)(r >> 8) % 2049);
            if (!p) { __atomic_fetch_add(&S->failures, 1, __ATOMIC_RELAXED); continue; }
            ts_stamp(S, p, me, me << 48 | ++counter, &rng, &held[nheld++]);
        } else if (what < 40 && nheld + 16 <= TS_HELD) {         /* a burst */
            unsigned k = (unsigned)(r >> 8) % 3, n = 1 + (unsigned)(r >> 16) % 16;
            if (n > c->size) n = c->size;
            if (buffet_pkt_alloc_bulk(c, k, v, n) != n) { __atomic_fetch_add(&S->failures, 1, __ATOMIC_RELAXED); continue; }
            for (i = 0; i < n; i++) ts_stamp(S, v[i], me, me << 48 | ++counter, &rng, &held[nheld++]);
        } else if (what < 65 && nheld) {                         /* free one (through the cache, or without) */
            unsigned j = (unsigned)(r >> 8) % nheld;
            ts_release(S, what < 60 ? c : NULL, &held[j], me);
            held[j] = held[--nheld];
        } else if (what < 68 && nheld >= 4) {                    /* free a burst: packets and raw buffers */
            unsigned n = 1 + (unsigned)(r >> 8) % 4, np = 0, nr = 0;
            for (i = 0; i < n; i++) {
                ts_held *h = &held[nheld - 1 - i];
                ts_give(S, h, me);
                __atomic_fetch_add(&S->frees[h->p->cls], 1, __ATOMIC_RELAXED);
                if (h->raw) w[nr++] = h->p;
                else v[np++] = h->p;
            }
            nheld -= n;
            buffet_pkt_free_bulk(c, v, np);
            buffet_pkt_free_bulk_raw(c, w, nr);
        } else if (what < 85 && nheld) {                         /* hand one to another thread */
            unsigned j = (unsigned)(r >> 8) % nheld, to = (t->id + 1 + (unsigned)(r >> 24) % (S->nthreads - 1)) % S->nthreads;
            ts_msg msg;
            msg.p = held[j].p;
            msg.base = NULL;
            msg.serial = held[j].serial;
            msg.len = held[j].len;
            msg.raw = held[j].raw;
            /* the receiver's id goes in first: from the send on, the packet is its */
            if (__atomic_exchange_n(ts_word(msg.p), (uint64_t)to + 1, __ATOMIC_RELAXED) != me)
                __atomic_fetch_add(&S->out_twice, 1, __ATOMIC_RELAXED);
            if (ts_send(&S->box[to], &msg)) held[j] = held[--nheld];
            else __atomic_store_n(ts_word(msg.p), me, __ATOMIC_RELAXED);   /* full: keep it */
        } else if (what < 93) {                                  /* take what others sent */
            unsigned n = ts_recv(&S->box[t->id], m, 16);
            for (i = 0; i < n; i++) {
                ts_held h;
                h.p = m[i].p;
                h.serial = m[i].serial;
                h.len = m[i].len;
                h.raw = m[i].raw;
                if (nheld < TS_HELD && (ts_rand(&rng) & 1)) {
                    held[nheld++] = h;                          /* kept, freed later */
                } else {                                        /* freed here: a cross-thread free */
                    ts_release(S, c, &h, me);
                }
            }
        } else if (what < 95) {
            buffet_pkt_cache_flush(c);
        } else if (what < 100) {
            ts_store_check_stats(S, &rng);
        } else if (what < 105 && nheld + 16 <= TS_HELD) {       /* a raw burst */
            unsigned k = (unsigned)(r >> 8) % 3, n = 1 + (unsigned)(r >> 16) % 16;
            if (n > c->size) n = c->size;
            if (buffet_pkt_alloc_bulk_raw(c, k, v, n) != n) { __atomic_fetch_add(&S->failures, 1, __ATOMIC_RELAXED); continue; }
            for (i = 0; i < n; i++) ts_stamp_raw(S, v[i], me, me << 48 | ++counter, &rng, &held[nheld++]);
        } else if (what < 107 && nheld) {                       /* a raw buffer made a packet, its bytes kept */
            ts_held *h = &held[(unsigned)(r >> 8) % nheld];
            if (h->raw) {
                buffet_pkt_init_raw(c, h->p);
                if (buffet_pkt_append(h->p, h->len) != h->p->buf + 128) __atomic_fetch_add(&S->bad_bytes, 1, __ATOMIC_RELAXED);
                h->raw = false;
            }
        } else if (nheld) {                                     /* raw buffers back in a burst */
            unsigned n = 0;
            for (i = 0; i < nheld && n < 16;) {
                if (held[i].raw) {
                    ts_give(S, &held[i], me);
                    __atomic_fetch_add(&S->frees[held[i].p->cls], 1, __ATOMIC_RELAXED);
                    w[n++] = held[i].p;
                    held[i] = held[--nheld];
                } else {
                    i++;
                }
            }
            buffet_pkt_free_bulk_raw((r >> 40) & 7 ? c : NULL, w, n);
        }
    }
    /* give everything back: held, then what is still in the mailbox (others may still send:
       the main thread drains the boxes after the join) */
    for (i = 0; i < nheld; i++) ts_release(S, c, &held[i], me);
    buffet_pkt_cache_destroy(c);
    __atomic_fetch_add(&S->ops_done, op, __ATOMIC_RELAXED);
    return NULL;
}

static void ts_store_run(unsigned nthreads, unsigned long ops) {
    ts_store *S = (ts_store *)calloc(1, sizeof(ts_store));
    buffet_pkt_pool_desc d;
    buffet_pkt_stats st;
    ts_thread th[TS_MAX_THREADS];
    pthread_t tid[TS_MAX_THREADS];
    buffet_debug *dbg = NULL;
    unsigned i, k;
    uint64_t allocs = 0;
    BT_CHECK(S != NULL && buffet_debug_create(&dbg, NULL) == BUFFET_OK);
    if (!S || !dbg) return;
    memset(&d, 0, sizeof d);
    d.name = "stress store";
    d.class_sizes[0] = 64;
    d.class_sizes[1] = 512;
    d.class_sizes[2] = 2048;
    d.user_size = 8;
    d.initial = 32;          /* small, so that the classes grow while the threads run */
    d.grow = 32;
    d.max = 4096;
    d.no_huge_pages = true;
    d.allocator = buffet_debug_allocator(dbg);
    BT_CHECK(buffet_pkt_pool_create(&S->pool, &d) == BUFFET_OK);
    S->nthreads = nthreads;
    S->ops_per_thread = ops / nthreads;
    for (i = 0; i < nthreads; i++) pthread_mutex_init(&S->box[i].mu, NULL);
    for (i = 0; i < nthreads; i++) {
        th[i].shared = S;
        th[i].id = i;
        BT_CHECK(pthread_create(&tid[i], NULL, ts_store_thread, &th[i]) == 0);
    }
    for (i = 0; i < nthreads; i++) pthread_join(tid[i], NULL);
    /* what is left in the mailboxes comes back through no cache */
    for (i = 0; i < nthreads; i++) {
        for (k = 0; k < S->box[i].n; k++) {
            ts_held h;
            h.p = S->box[i].m[k].p;
            h.serial = S->box[i].m[k].serial;
            h.len = S->box[i].m[k].len;
            h.raw = S->box[i].m[k].raw;
            ts_release(S, NULL, &h, i + 1);
        }
        pthread_mutex_destroy(&S->box[i].mu);
    }
    /* every buffer back, and the counters add up to what the threads did */
    st = buffet_pkt_pool_get_stats(S->pool);
    for (k = 0; k < st.nclasses; k++) {
        BT_CHECK(st.cls[k].in_use == 0 && st.cls[k].allocs == S->allocs[k] && st.cls[k].frees == S->frees[k]);
        BT_CHECK(st.cls[k].allocs == st.cls[k].frees && st.cls[k].created <= st.cls[k].max);
        BT_CHECK(st.cls[k].failures == 0);
        allocs += st.cls[k].allocs;
    }
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    BT_CHECK(S->out_twice == 0 && S->bad_bytes == 0 && S->bad_stats == 0 && S->failures == 0);
    BT_CHECK(buffet_pkt_pool_report_leaks(S->pool, NULL) == 0);
    BT_CHECK(S->ops_done == S->ops_per_thread * nthreads);
    printf("stress store, %u threads: %lu operations, %llu packets out and back, seed %llu\n", nthreads,
           (unsigned long)S->ops_done, (unsigned long long)allocs, (unsigned long long)ts_seed);
    buffet_pkt_pool_destroy(S->pool);
    BT_CHECK(buffet_debug_get_stats(dbg).live_count == 0);
    buffet_debug_destroy(dbg);
    free(S);
}

/* ---------------------------------------------------------------------------------------------
   refs: shared packets, references and clones across threads */

typedef struct ts_slot {
    pthread_mutex_t mu;
    buffet_pkt *p;           /* the published packet (the slot holds one reference), or NULL */
    uint64_t serial;
    uint32_t len;
} ts_slot;

typedef struct ts_refs {
    buffet_pkt_pool *pool;
    unsigned nthreads;
    unsigned long ops_per_thread;
    ts_slot slot[TS_SLOTS];
    ts_box box[TS_MAX_THREADS];
    uint64_t published, refs, clones, dropped, alone, not_alone;   /* atomic */
    uint64_t bad_bytes, bad_alone, ops_done;                       /* atomic */
} ts_refs;

/* The other holders of published packet p (references and clones taken from it): in the first
   bytes of its headroom, which its clones share but never read (a clone copies the user area,
   so a count there would be read while others change it). Taken holders add before buffet
   counts them; they subtract before buffet drops them. */
static uint64_t *ts_holders(const buffet_pkt *base) { return (uint64_t *)base->buf; }

/* Drop a reference or clone of base taken by this thread (or handed to it), after checking its bytes. */
static void ts_drop(ts_refs *R, buffet_pkt_cache *c, const ts_msg *m) {
    if (!ts_intact((const unsigned char *)buffet_pkt_data(m->p), m->len, m->serial) || m->p->len != m->len)
        __atomic_fetch_add(&R->bad_bytes, 1, __ATOMIC_RELAXED);
    /* relaxed: buffet's own drop (a release) follows and carries this */
    __atomic_fetch_sub(ts_holders(m->base), 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&R->dropped, 1, __ATOMIC_RELAXED);
    buffet_pkt_free(c, m->p);
}

/* The slot's packet leaves it; its last other holder may still be reading. */
static void ts_retire(ts_refs *R, buffet_pkt_cache *c, buffet_pkt *p, uint64_t serial, uint32_t len) {
    unsigned char *d;
    if (!ts_intact((const unsigned char *)buffet_pkt_data(p), len, serial)) __atomic_fetch_add(&R->bad_bytes, 1, __ATOMIC_RELAXED);
    d = (unsigned char *)buffet_pkt_prepend(p, 1);
    if (d) {
        /* buffet says no one else holds it: no holder may be left, and writing is safe (a clone
           still reading would see its bytes change) */
        if (__atomic_load_n(ts_holders(p), __ATOMIC_RELAXED) != 0) __atomic_fetch_add(&R->bad_alone, 1, __ATOMIC_RELAXED);
        memset(d, 0xEE, len + 1);
        __atomic_fetch_add(&R->alone, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(&R->not_alone, 1, __ATOMIC_RELAXED);
    }
    buffet_pkt_free(c, p);
}

static void *ts_refs_thread(void *arg) {
    ts_thread *t = (ts_thread *)arg;
    ts_refs *R = (ts_refs *)t->shared;
    uint64_t me = t->id + 1, rng = ts_seed * 0xD1B54A32D192ED03ull + me, counter = 0;
    buffet_pkt_cache *c = NULL;
    ts_msg held[TS_HELD], m[16];
    unsigned nheld = 0, i;
    unsigned long op;
    BT_CHECK(buffet_pkt_cache_create(&c, R->pool, 1 + (uint32_t)(ts_rand(&rng) % 32)) == BUFFET_OK);
    for (op = 0; op < R->ops_per_thread; op++) {
        uint64_t r = ts_rand(&rng);
        unsigned what = (unsigned)(r % 100);
        ts_slot *s = &R->slot[(r >> 8) % TS_SLOTS];
        ts_jitter(&rng);
        if (what < 10) {                                          /* publish a packet */
            pthread_mutex_lock(&s->mu);
            if (!s->p) {
                buffet_pkt *p = buffet_pkt_alloc(c, 8 + (size_t)(r >> 16) % 600);
                if (p) {
                    uint32_t len = 8 + (uint32_t)(r >> 32) % 200;
                    if (len > buffet_pkt_tailroom(p)) len = (uint32_t)buffet_pkt_tailroom(p);
                    __atomic_store_n(ts_holders(p), (uint64_t)0, __ATOMIC_RELAXED);
                    s->serial = me << 48 | ++counter;
                    s->len = len;
                    ts_fill((unsigned char *)buffet_pkt_append(p, len), len, s->serial);
                    s->p = p;
                    __atomic_fetch_add(&R->published, 1, __ATOMIC_RELAXED);
                }
            }
            pthread_mutex_unlock(&s->mu);
        } else if (what < 45 && nheld < TS_HELD) {               /* a reference or a clone of it */
            pthread_mutex_lock(&s->mu);
            if (s->p) {
                ts_msg h;
                bool clone = (r >> 40) & 1;
                h.base = s->p;
                h.serial = s->serial;
                h.len = s->len;
                __atomic_fetch_add(ts_holders(s->p), 1, __ATOMIC_RELAXED);
                if (clone) {
                    h.p = buffet_pkt_clone(c, s->p);
                } else {
                    h.p = buffet_pkt_ref(s->p) == BUFFET_OK ? s->p : NULL;
                }
                if (h.p) {
                    held[nheld++] = h;
                    __atomic_fetch_add(clone ? &R->clones : &R->refs, 1, __ATOMIC_RELAXED);
                } else {
                    __atomic_fetch_sub(ts_holders(s->p), 1, __ATOMIC_RELAXED);
                    __atomic_fetch_add(&R->bad_bytes, 1, __ATOMIC_RELAXED);   /* no reason to fail here */
                }
            }
            pthread_mutex_unlock(&s->mu);
        } else if (what < 70 && nheld) {                          /* check one and drop it */
            unsigned j = (unsigned)(r >> 8) % nheld;
            ts_drop(R, c, &held[j]);
            held[j] = held[--nheld];
        } else if (what < 80 && nheld) {                          /* hand one over: dropped there */
            unsigned j = (unsigned)(r >> 8) % nheld, to = (t->id + 1 + (unsigned)(r >> 24) % (R->nthreads - 1)) % R->nthreads;
            if (ts_send(&R->box[to], &held[j])) held[j] = held[--nheld];
        } else if (what < 88) {                                   /* drop what was handed over */
            unsigned n = ts_recv(&R->box[t->id], m, 16);
            for (i = 0; i < n; i++) ts_drop(R, c, &m[i]);
        } else if (what < 98) {                                   /* retire a published packet */
            buffet_pkt *p;
            uint64_t serial;
            uint32_t len;
            pthread_mutex_lock(&s->mu);
            p = s->p;
            serial = s->serial;
            len = s->len;
            s->p = NULL;
            pthread_mutex_unlock(&s->mu);
            if (p) ts_retire(R, c, p, serial, len);
        } else {
            buffet_pkt_cache_flush(c);
        }
    }
    for (i = 0; i < nheld; i++) ts_drop(R, c, &held[i]);
    buffet_pkt_cache_destroy(c);
    __atomic_fetch_add(&R->ops_done, op, __ATOMIC_RELAXED);
    return NULL;
}

static void ts_refs_run(unsigned nthreads, unsigned long ops) {
    ts_refs *R = (ts_refs *)calloc(1, sizeof(ts_refs));
    buffet_pkt_pool_desc d;
    buffet_pkt_stats st;
    buffet_pkt_cache *c = NULL;
    ts_thread th[TS_MAX_THREADS];
    pthread_t tid[TS_MAX_THREADS];
    buffet_debug *dbg = NULL;
    unsigned i, k;
    BT_CHECK(R != NULL && buffet_debug_create(&dbg, NULL) == BUFFET_OK);
    if (!R || !dbg) return;
    memset(&d, 0, sizeof d);
    d.name = "stress refs";
    d.class_sizes[0] = 256;
    d.class_sizes[1] = 1024;
    d.user_size = 8;         /* copied into every clone */
    d.initial = 16;
    d.grow = 16;
    d.max = 2048;
    d.no_huge_pages = true;
    d.allocator = buffet_debug_allocator(dbg);
    BT_CHECK(buffet_pkt_pool_create(&R->pool, &d) == BUFFET_OK);
    R->nthreads = nthreads;
    R->ops_per_thread = ops / nthreads;
    for (i = 0; i < TS_SLOTS; i++) pthread_mutex_init(&R->slot[i].mu, NULL);
    for (i = 0; i < nthreads; i++) pthread_mutex_init(&R->box[i].mu, NULL);
    for (i = 0; i < nthreads; i++) {
        th[i].shared = R;
        th[i].id = i;
        BT_CHECK(pthread_create(&tid[i], NULL, ts_refs_thread, &th[i]) == 0);
    }
    for (i = 0; i < nthreads; i++) pthread_join(tid[i], NULL);
    BT_CHECK(buffet_pkt_cache_create(&c, R->pool, 0) == BUFFET_OK);
    for (i = 0; i < nthreads; i++) {
        for (k = 0; k < R->box[i].n; k++) ts_drop(R, c, &R->box[i].m[k]);
        pthread_mutex_destroy(&R->box[i].mu);
    }
    /* every other holder gone: each published packet is back to its one reference */
    for (i = 0; i < TS_SLOTS; i++) {
        if (R->slot[i].p) {
            BT_CHECK(R->slot[i].p->refcnt == 1 && *ts_holders(R->slot[i].p) == 0);
            ts_retire(R, c, R->slot[i].p, R->slot[i].serial, R->slot[i].len);
        }
        pthread_mutex_destroy(&R->slot[i].mu);
    }
    buffet_pkt_cache_destroy(c);
    st = buffet_pkt_pool_get_stats(R->pool);
    for (k = 0; k <= st.nclasses; k++) BT_CHECK(st.cls[k].in_use == 0 && st.cls[k].allocs == st.cls[k].frees);
    BT_CHECK(st.cls[0].allocs + st.cls[1].allocs == R->published);
    BT_CHECK(st.cls[st.nclasses].allocs == R->clones);                /* one clone header each */
    BT_CHECK(R->refs + R->clones == R->dropped);
    BT_CHECK(R->alone + R->not_alone == R->published);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    BT_CHECK(R->bad_bytes == 0 && R->bad_alone == 0);
    BT_CHECK(R->ops_done == R->ops_per_thread * nthreads);
    BT_CHECK(buffet_pkt_pool_report_leaks(R->pool, NULL) == 0);
    printf("stress refs, %u threads: %lu operations, %llu packets published, %llu references and %llu clones "
           "taken and dropped, %llu retired alone, seed %llu\n", nthreads, (unsigned long)R->ops_done,
           (unsigned long long)R->published, (unsigned long long)R->refs, (unsigned long long)R->clones,
           (unsigned long long)R->alone, (unsigned long long)ts_seed);
    buffet_pkt_pool_destroy(R->pool);
    BT_CHECK(buffet_debug_get_stats(dbg).live_count == 0);
    buffet_debug_destroy(dbg);
    free(R);
}

static void test_stress_store_2(void) { ts_store_run(2, ts_ops()); }
static void test_stress_store_4(void) { ts_store_run(4, ts_ops()); }
static void test_stress_refs_2(void) { ts_refs_run(2, ts_ops()); }
static void test_stress_refs_4(void) { ts_refs_run(4, ts_ops()); }

int main(void) {
    const char *s = getenv("BUFFET_STRESS_SEED");
    ts_seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    if (ts_seed == 0) ts_seed = 1;
    printf("stress seed %llu (BUFFET_STRESS_SEED=%llu repeats it), %lu operations per scenario and thread count\n",
           (unsigned long long)ts_seed, (unsigned long long)ts_seed, ts_ops());
    BT_RUN(test_stress_store_2);
    BT_RUN(test_stress_store_4);
    BT_RUN(test_stress_refs_2);
    BT_RUN(test_stress_refs_4);
    return bt_finish("test_stress_packet.c");
}
