/* test_stress_frame.c - seeded concurrency stress of every thread-safe part of buffet_frame.h,
   with 2 and then 4 threads each:
     shared store   threads get and put through buffet_pool_get_shared / _put_shared only, and
                    hand objects to each other;
     caches         a cache per thread (gets, puts, bulk gets and puts, flushes), objects handed
                    to other threads and put back there (through their cache, the store, or the
                    pool's allocator interface from a thread that is not the cache's);
     store          producers get objects and hand each one alone to a consumer, which puts it
                    into its own cache (or the store); small caches and slabs keep the lock-free
                    store's ring busy and make it be replaced by a larger one while in use;
     transfers      one thread runs frames and hands blocks to the others by transfers and by
                    buffers over its frame allocator (pins); they check, then release them;
     barrier        every thread runs frames in an arena of its own and meets the others at a
                    buffet_frame_barrier; the one the barrier picks checks the round.
   Random yields and short random delays vary the interleavings. At the end everything is
   accounted for: every object held by one thread at a time (each thread stamps the objects it
   holds, atomically, and finds its stamp unchanged when it lets go; the store part flags each
   object held), every object back in the pool once (the store and the caches holding every
   object made), the statistics adding up, every transfer received and released once with its
   bytes intact, one winner per barrier round. Operations per part and thread count:
   bt_stress_ops() (tests/bt.h: 10^7 in the gcc C11 build, 4*10^6 under TSan); BUFFET_STRESS_SEED
   picks the seed. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_frame.h"
#include "bt.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#if defined(__has_include)
#  if __has_include(<valgrind/memcheck.h>)
#    include <valgrind/memcheck.h>
#    define TS_DEFINED(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#  endif
#endif
#ifndef TS_DEFINED
#  define TS_DEFINED(p, n) ((void)(p), (void)(n))
#endif

#define TS_MAX_THREADS 4
#define TS_HELD 32            /* objects a thread holds at most */
#define TS_RING 256           /* hand-over queue slots */

static uint64_t ts_seed;

/* ---------------------------------------------------------------------------------------------
   Helpers: a per-thread random generator, yields and delays, a hand-over queue. */

typedef struct ts_rng { uint64_t s; } ts_rng;
static uint64_t ts_next(ts_rng *r) {
    /* xorshift64* */
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}
static unsigned ts_below(ts_rng *r, unsigned n) { return (unsigned)((ts_next(r) >> 33) % n); }

/* Now and then give the CPU away, or dawdle a little: other interleavings. */
static void ts_jitter(ts_rng *r) {
    uint64_t x = ts_next(r);
    if ((x & 4095) == 0) sched_yield();
    else if ((x & 511) == 1) {
        volatile unsigned spin = (unsigned)(x >> 40) & 1023;
        while (spin) spin = spin - 1;
    }
}

static uint64_t ts_ops(void) { return bt_stress_ops(); }

/* A bounded queue of pointers, under a mutex (the test's own plumbing, not under test). The
   non-blocking push and pop serve the pools; the blocking ones the transfers. */
typedef struct ts_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *slot[TS_RING];
    unsigned head, count;
    unsigned any;              /* atomic copy of count != 0: a look without the lock */
    bool closed;
} ts_queue;
static void ts_queue_init(ts_queue *q) {
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
}
static void ts_queue_deinit(ts_queue *q) {
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
}
/* Push, waiting for room. */
static void ts_push_wait(ts_queue *q, void *p) {
    pthread_mutex_lock(&q->mu);
    while (q->count == TS_RING) pthread_cond_wait(&q->cv, &q->mu);
    q->slot[(q->head + q->count++) % TS_RING] = p;
    if (q->count == 1) pthread_cond_broadcast(&q->cv);   /* it was empty: a popper may wait */
    pthread_mutex_unlock(&q->mu);
}
/* Pop, waiting for an item; NULL once the queue is closed and empty. */
static void *ts_pop_wait(ts_queue *q) {
    void *p = NULL;
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && !q->closed) pthread_cond_wait(&q->cv, &q->mu);
    if (q->count) {
        p = q->slot[q->head];
        q->head = (q->head + 1) % TS_RING;
        if (q->count-- == TS_RING) pthread_cond_broadcast(&q->cv);   /* it was full: a pusher may wait */
    }
    pthread_mutex_unlock(&q->mu);
    return p;
}
static void ts_close(ts_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
static bool ts_push(ts_queue *q, void *p) {
    bool ok;
    pthread_mutex_lock(&q->mu);
    ok = q->count < TS_RING;
    if (ok) q->slot[(q->head + q->count++) % TS_RING] = p;
    __atomic_store_n(&q->any, 1u, __ATOMIC_RELAXED);   /* a hint only: the mutex orders the items */
    pthread_mutex_unlock(&q->mu);
    return ok;
}
static void *ts_pop(ts_queue *q) {
    void *p = NULL;
    if (!__atomic_load_n(&q->any, __ATOMIC_RELAXED)) return NULL;   /* most of the time: nothing */
    pthread_mutex_lock(&q->mu);
    if (q->count) {
        p = q->slot[q->head];
        q->head = (q->head + 1) % TS_RING;
        q->count--;
    }
    if (!q->count) __atomic_store_n(&q->any, 0u, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&q->mu);
    return p;
}

/* A start line: each of `total` threads counts itself in, then waits for all the others. */
static void ts_wait_start(pthread_mutex_t *mu, unsigned *started, unsigned total) {
    pthread_mutex_lock(mu);
    (*started)++;
    pthread_mutex_unlock(mu);
    for (;;) {
        unsigned n;
        pthread_mutex_lock(mu);
        n = *started;
        pthread_mutex_unlock(mu);
        if (n == total) break;
        sched_yield();
    }
}

/* ---------------------------------------------------------------------------------------------
   Pools. An object held by a thread starts with a stamp word: the run's mark, the holder and a
   serial, exchanged atomically when the object is taken and when it is let go, so that two
   holders at once would see each other's stamp. The rest of the object is a pattern of the
   stamp. */

#define TS_OBJ 64
#define TS_HELD_MARK 0xB0FFE7u    /* high bits of a stamp while the object is held */
#define TS_FREE_WORD 0xF4EEF4EEF4EEF4EEull

typedef struct ts_pool_run {
    buffet_pool *pool;
    unsigned nthreads;
    uint64_t ops_per_thread;
    bool shared_only;          /* the shared-store part: no caches */
    buffet_pool_cache *caches[TS_MAX_THREADS];
    ts_queue inbox[TS_MAX_THREADS];
    pthread_mutex_t start_mu;
    unsigned started;
    uint64_t gets[TS_MAX_THREADS], puts[TS_MAX_THREADS], handed[TS_MAX_THREADS], bad[TS_MAX_THREADS];
} ts_pool_run;

typedef struct ts_worker { ts_pool_run *run; unsigned id; } ts_worker;

static uint64_t ts_stamp(unsigned id, uint64_t serial) {
    return ((uint64_t)TS_HELD_MARK << 40) | ((uint64_t)id << 32) | (serial & 0xFFFFFFFFu);
}
static bool ts_is_held(uint64_t w) { return (w >> 40) == TS_HELD_MARK; }

/* The rest of the object: the stamp again, then a byte of it (whole-range writes and compares:
   cheap under TSan and valgrind). */
static void ts_pattern(unsigned char *o, uint64_t stamp) {
    memcpy(o + 8, &stamp, 8);
    memset(o + 16, (int)(stamp * 31 & 0xFF), TS_OBJ - 16);
}
static bool ts_pattern_ok(const unsigned char *o, uint64_t stamp) {
    unsigned char want[TS_OBJ];
    ts_pattern(want, stamp);
    return memcmp(o + 8, want + 8, TS_OBJ - 8) == 0;
}

/* Take o: it must not be held by anyone (its stamp word is not a holder's). A new object's
   word is whatever the slab held: valgrind is told that reading it is meant. */
static bool ts_take(unsigned char *o, uint64_t stamp) {
    uint64_t was;
    TS_DEFINED(o, 8);
    was = __atomic_exchange_n((uint64_t *)(void *)o, stamp, __ATOMIC_RELAXED);
    if (ts_is_held(was)) return false;
    ts_pattern(o, stamp);
    return true;
}
/* Let go of o: it still carries our stamp and pattern. */
static bool ts_let_go(unsigned char *o, uint64_t stamp) {
    bool ok = ts_pattern_ok(o, stamp);
    uint64_t was = __atomic_exchange_n((uint64_t *)(void *)o, TS_FREE_WORD, __ATOMIC_RELAXED);
    return ok && was == stamp;
}

typedef struct ts_held { unsigned char *o; uint64_t stamp; } ts_held;

/* Another thread's object arrives: check it as its sender left it, and make it ours. */
static bool ts_adopt(unsigned char *o, unsigned id, uint64_t serial, ts_held *h) {
    uint64_t was = __atomic_load_n((uint64_t *)(void *)o, __ATOMIC_RELAXED);
    bool ok = ts_is_held(was) && ts_pattern_ok(o, was) && ((was >> 32) & 0xFF) != id;
    h->o = o;
    h->stamp = ts_stamp(id, serial);
    __atomic_store_n((uint64_t *)(void *)o, h->stamp, __ATOMIC_RELAXED);
    ts_pattern(o, h->stamp);
    return ok;
}

static void *ts_pool_worker(void *arg) {
    ts_worker *w = (ts_worker *)arg;
    ts_pool_run *run = w->run;
    unsigned id = w->id, nheld = 0, i;
    ts_held held[TS_HELD];
    ts_rng rng;
    uint64_t op, serial = 0;
    buffet_pool_cache *c = NULL;
    void *bulk[8];
    rng.s = ts_seed * 0x9E3779B97F4A7C15ull + id + 1;
    if (!run->shared_only) {
        if (buffet_pool_cache_create(&c, run->pool, 4 + ts_below(&rng, 61)) != BUFFET_OK) {
            run->bad[id]++;
            return NULL;
        }
        run->caches[id] = c;
    }
    /* everyone has a cache before anyone hands objects to someone else's allocator face */
    ts_wait_start(&run->start_mu, &run->started, run->nthreads);
    for (op = 0; op < run->ops_per_thread; op++) {
        unsigned what = ts_below(&rng, 16);
        void *in;
        ts_jitter(&rng);
        /* what others handed us: checked, adopted, held */
        if (nheld < TS_HELD && (in = ts_pop(&run->inbox[id])) != NULL) {
            if (!ts_adopt((unsigned char *)in, id, ++serial, &held[nheld])) run->bad[id]++;
            nheld++;
            continue;
        }
        if (nheld < TS_HELD && (what < 7 || nheld == 0)) {
            /* get: through the cache, the store, or in bulk */
            unsigned k, want = (!run->shared_only && what == 0) ? 1 + ts_below(&rng, 8) : 1;
            if (want > TS_HELD - nheld) want = TS_HELD - nheld;
            if (want > 1) {
                if (buffet_pool_get_bulk(c, bulk, want) != want) {
                    run->bad[id]++;
                    continue;
                }
            } else {
                bulk[0] = run->shared_only || what == 1 ? buffet_pool_get_shared(run->pool) : buffet_pool_get(c);
                if (!bulk[0]) {
                    run->bad[id]++;
                    continue;
                }
            }
            for (k = 0; k < want; k++) {
                held[nheld].o = (unsigned char *)bulk[k];
                held[nheld].stamp = ts_stamp(id, ++serial);
                if (!ts_take(held[nheld].o, held[nheld].stamp)) run->bad[id]++;
                nheld++;
            }
            run->gets[id] += want;
            continue;
        }
        /* let one go: back through our cache or the store, or to another thread */
        i = ts_below(&rng, nheld);
        {
            ts_held h = held[i];
            unsigned to = ts_below(&rng, run->nthreads);
            held[i] = held[--nheld];
            if (what >= 13 && to != id) {
                /* handed on still stamped: the receiver checks our stamp, then puts it back */
                if (!ts_pattern_ok(h.o, h.stamp) || __atomic_load_n((uint64_t *)(void *)h.o, __ATOMIC_RELAXED) != h.stamp) run->bad[id]++;
                if (ts_push(&run->inbox[to], h.o)) {
                    run->handed[id]++;
                    continue;
                }
            }
            if (!ts_let_go(h.o, h.stamp)) run->bad[id]++;
            if (run->shared_only || what == 7) {
                if (buffet_pool_put_shared(run->pool, h.o) != BUFFET_OK) run->bad[id]++;
            } else if (what == 8) {
                /* another thread's cache, as an allocator: from here it goes to the store */
                buffet_allocator other = buffet_pool_allocator(run->caches[to]);
                buffet_free(other, h.o, TS_OBJ, 1, BUFFET_SITE);
            } else if (what == 9 && nheld > 0) {
                /* two at once */
                ts_held h2 = held[--nheld];
                if (!ts_let_go(h2.o, h2.stamp)) run->bad[id]++;
                bulk[0] = h.o;
                bulk[1] = h2.o;
                if (buffet_pool_put_bulk(c, bulk, 2) != BUFFET_OK) run->bad[id]++;
                run->puts[id]++;
            } else {
                if (buffet_pool_put(c, h.o) != BUFFET_OK) run->bad[id]++;
            }
            run->puts[id]++;
            if (!run->shared_only && what == 10 && ts_below(&rng, 8) == 0) buffet_pool_cache_flush(c);
        }
    }
    /* everything back: what we hold, then (once everyone is done) what others handed us */
    for (i = 0; i < nheld; i++) {
        if (!ts_let_go(held[i].o, held[i].stamp)) run->bad[id]++;
        if (buffet_pool_put_shared(run->pool, held[i].o) != BUFFET_OK) run->bad[id]++;
        run->puts[id]++;
    }
    return NULL;
}

static void ts_pool_part(unsigned nthreads, bool shared_only) {
    ts_pool_run *run = (ts_pool_run *)calloc(1, sizeof *run);
    ts_worker w[TS_MAX_THREADS];
    pthread_t th[TS_MAX_THREADS];
    buffet_pool_desc d;
    buffet_pool_stats st;
    uint64_t gets = 0, puts = 0, handed = 0, bad = 0;
    unsigned i;
    void *p;
    if (!run) {
        BT_CHECK(!"out of memory");
        return;
    }
    memset(&d, 0, sizeof d);
    d.obj_size = TS_OBJ;
    d.slab_objs = 64;
    BT_CHECK(buffet_pool_create(&run->pool, &d) == BUFFET_OK);
    if (!run->pool) {
        free(run);
        return;
    }
    run->nthreads = nthreads;
    run->ops_per_thread = ts_ops() / nthreads;
    run->shared_only = shared_only;
    pthread_mutex_init(&run->start_mu, NULL);
    for (i = 0; i < nthreads; i++) ts_queue_init(&run->inbox[i]);
    for (i = 0; i < nthreads; i++) {
        w[i].run = run;
        w[i].id = i;
        BT_CHECK(pthread_create(&th[i], NULL, ts_pool_worker, &w[i]) == 0);
    }
    for (i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
    /* objects still in inboxes: their senders counted them handed, not put */
    for (i = 0; i < nthreads; i++) {
        while ((p = ts_pop(&run->inbox[i])) != NULL) {
            uint64_t was = __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
            BT_CHECK(ts_is_held(was) && ts_pattern_ok((const unsigned char *)p, was));
            __atomic_store_n((uint64_t *)p, TS_FREE_WORD, __ATOMIC_RELAXED);
            BT_CHECK(buffet_pool_put_shared(run->pool, p) == BUFFET_OK);
            puts++;
        }
        ts_queue_deinit(&run->inbox[i]);
    }
    for (i = 0; i < nthreads; i++) {
        gets += run->gets[i];
        puts += run->puts[i];
        handed += run->handed[i];
        bad += run->bad[i];
        buffet_pool_cache_destroy(run->caches[i]);
    }
    st = buffet_pool_get_stats(run->pool);
    BT_CHECK(bad == 0);
    /* every object back exactly once: as many puts as gets, and the store holds them all */
    BT_CHECK(gets == puts);
    BT_CHECK(st.gets == gets && st.puts == puts);
    BT_CHECK(st.in_store == st.created && st.in_use == 0 && st.caches == 0);
    BT_CHECK(st.double_puts == 0 && st.foreign_puts == 0 && st.failures == 0);
    printf("  pool %-11s %u threads: %llu operations (%llu gets, %llu puts, %llu handed to another thread), %zu objects made\n",
           shared_only ? "shared store" : "caches", nthreads,
           (unsigned long long)(run->ops_per_thread * nthreads), (unsigned long long)gets, (unsigned long long)puts,
           (unsigned long long)handed, st.created);
    if (bad) fprintf(stderr, "test_stress_frame.c: %llu objects found wrong (seed %llu)\n", (unsigned long long)bad, (unsigned long long)ts_seed);
    buffet_pool_destroy(run->pool);
    pthread_mutex_destroy(&run->start_mu);
    free(run);
}

static void test_stress_pool_shared(void) {
    ts_pool_part(2, true);
    ts_pool_part(4, true);
}
static void test_stress_pool_caches(void) {
    ts_pool_part(2, false);
    ts_pool_part(4, false);
}

/* ---------------------------------------------------------------------------------------------
   The store across threads: producers get objects (their cache, now and then the store by
   get_shared or a bulk get) and hand each one alone to a consumer, which puts it into its own
   cache (now and then put_shared, or another consumer's allocator face); both flush now and
   then. Small caches spill and refill the store's ring all the time, and small slabs make the
   pool grow, and its ring be replaced by a larger one, while the others use it without the
   lock. Each round is a new pool. A held object carries a flag word, exchanged atomically when
   it is handed out and when it is put back: an object handed out twice sees the flag set. */

#define TS_XS_MAX 4           /* producers, and consumers, at most */
#define TS_XS_ROUNDS 4
#define TS_XS_HELD 0x48454C4448454C44ull   /* the flag while a user holds the object */
#define TS_XS_BACK 0x4241434B4241434Bull   /* ... and once it is put back */

typedef struct ts_xs_run {
    buffet_pool *pool;
    unsigned nprod, ncons;
    uint64_t per_prod;         /* objects each producer hands on */
    buffet_pool_cache *prod_c[TS_XS_MAX], *cons_c[TS_XS_MAX];
    ts_queue q[TS_XS_MAX];     /* one per consumer */
    pthread_mutex_t start_mu;
    unsigned started;
    uint64_t gets[TS_XS_MAX], puts[TS_XS_MAX], bad[2 * TS_XS_MAX];
} ts_xs_run;

typedef struct ts_xs_worker { ts_xs_run *run; unsigned id; bool consumer; } ts_xs_worker;

/* Every consumer has its cache before any producer starts (its allocator face is used). */
static void ts_xs_wait_start(ts_xs_run *run) {
    ts_wait_start(&run->start_mu, &run->started, run->nprod + run->ncons);
}

/* An object comes out of the pool: nobody may hold it (its flag word is not HELD), then its
   bytes are written. A new object's word is whatever the slab held: valgrind is told that
   reading it is meant. */
static bool ts_xs_out(unsigned char *o, uint64_t tag) {
    TS_DEFINED(o, 8);
    if (__atomic_exchange_n((uint64_t *)(void *)o, TS_XS_HELD, __ATOMIC_RELAXED) == TS_XS_HELD) return false;
    memcpy(o + 8, &tag, 8);
    memset(o + 16, (int)(tag & 0xFF), TS_OBJ - 16);
    return true;
}
/* ... and goes back: still held, its bytes as written. */
static bool ts_xs_back(unsigned char *o) {
    uint64_t tag;
    unsigned i;
    bool ok = true;
    memcpy(&tag, o + 8, 8);
    for (i = 16; i < TS_OBJ; i++)
        if (o[i] != (unsigned char)(tag & 0xFF)) ok = false;
    return __atomic_exchange_n((uint64_t *)(void *)o, TS_XS_BACK, __ATOMIC_RELAXED) == TS_XS_HELD && ok;
}

static void *ts_xs_producer(void *arg) {
    ts_xs_worker *w = (ts_xs_worker *)arg;
    ts_xs_run *run = w->run;
    unsigned id = w->id;
    ts_rng rng;
    uint64_t sent = 0;
    buffet_pool_cache *c = NULL;
    void *objs[8];
    rng.s = ts_seed * 0x9E3779B97F4A7C15ull + 101 + id;
    if (buffet_pool_cache_create(&c, run->pool, 1 + ts_below(&rng, 8)) != BUFFET_OK) {
        run->bad[id]++;
        ts_xs_wait_start(run);
        return NULL;
    }
    run->prod_c[id] = c;
    ts_xs_wait_start(run);
    while (sent < run->per_prod) {
        unsigned what = ts_below(&rng, 32), n = 1, k;
        ts_jitter(&rng);
        if (what == 0) {
            objs[0] = buffet_pool_get_shared(run->pool);
        } else if (what == 1) {
            n = 1 + ts_below(&rng, 8);
            if (buffet_pool_get_bulk(c, objs, n) != n) objs[0] = NULL;
        } else {
            objs[0] = buffet_pool_get(c);
        }
        if (!objs[0]) {
            run->bad[id]++;
            break;
        }
        run->gets[id] += n;
        for (k = 0; k < n; k++) {   /* one object per hand-off */
            if (!ts_xs_out((unsigned char *)objs[k], (uint64_t)id << 56 | sent)) run->bad[id]++;
            ts_push_wait(&run->q[ts_below(&rng, run->ncons)], objs[k]);
            sent++;
        }
        if (what == 2 && ts_below(&rng, 8) == 0) buffet_pool_cache_flush(c);
    }
    return NULL;
}

static void *ts_xs_consumer(void *arg) {
    ts_xs_worker *w = (ts_xs_worker *)arg;
    ts_xs_run *run = w->run;
    unsigned id = w->id;
    ts_rng rng;
    buffet_pool_cache *c = NULL;
    void *o;
    rng.s = ts_seed * 0x9E3779B97F4A7C15ull + 201 + id;
    if (buffet_pool_cache_create(&c, run->pool, 1 + ts_below(&rng, 8)) != BUFFET_OK) {
        run->bad[TS_XS_MAX + id]++;
        ts_xs_wait_start(run);
        return NULL;
    }
    run->cons_c[id] = c;
    ts_xs_wait_start(run);
    while ((o = ts_pop_wait(&run->q[id])) != NULL) {
        unsigned what = ts_below(&rng, 32), to = ts_below(&rng, run->ncons);
        ts_jitter(&rng);
        if (!ts_xs_back((unsigned char *)o)) run->bad[TS_XS_MAX + id]++;
        if (what == 0 || (what == 1 && !run->cons_c[to])) {
            if (buffet_pool_put_shared(run->pool, o) != BUFFET_OK) run->bad[TS_XS_MAX + id]++;
        } else if (what == 1) {   /* a consumer's allocator face: the store, unless it is ours */
            buffet_free(buffet_pool_allocator(run->cons_c[to]), o, TS_OBJ, 1, BUFFET_SITE);
        } else if (buffet_pool_put(c, o) != BUFFET_OK) {
            run->bad[TS_XS_MAX + id]++;
        }
        run->puts[id]++;
        if (what == 2 && ts_below(&rng, 8) == 0) buffet_pool_cache_flush(c);
    }
    return NULL;
}

static void ts_xs_part(unsigned nprod, unsigned ncons) {
    ts_xs_run *run = (ts_xs_run *)calloc(1, sizeof *run);
    ts_xs_worker w[2 * TS_XS_MAX];
    pthread_t th[2 * TS_XS_MAX];
    uint64_t gets = 0, puts = 0, bad = 0, handed = 0;
    size_t created = 0, grown = 0;
    unsigned i, round;
    if (!run) {
        BT_CHECK(!"out of memory");
        return;
    }
    for (round = 0; round < TS_XS_ROUNDS; round++) {
        buffet_pool_desc d;
        buffet_pool_stats st;
        size_t cached = 0;
        uint64_t rgets = 0, rputs = 0;
        memset(run, 0, sizeof *run);
        memset(&d, 0, sizeof d);
        d.obj_size = TS_OBJ;
        d.slab_objs = 8;       /* grows often: the ring is replaced while in use */
        BT_CHECK(buffet_pool_create(&run->pool, &d) == BUFFET_OK);
        if (!run->pool) break;
        run->nprod = nprod;
        run->ncons = ncons;
        run->per_prod = ts_ops() / (TS_XS_ROUNDS * (nprod + ncons));
        pthread_mutex_init(&run->start_mu, NULL);
        for (i = 0; i < ncons; i++) ts_queue_init(&run->q[i]);
        for (i = 0; i < nprod + ncons; i++) {
            w[i].run = run;
            w[i].consumer = i >= nprod;
            w[i].id = w[i].consumer ? i - nprod : i;
            BT_CHECK(pthread_create(&th[i], NULL, w[i].consumer ? ts_xs_consumer : ts_xs_producer, &w[i]) ==
                     0);
        }
        for (i = 0; i < nprod; i++) pthread_join(th[i], NULL);
        for (i = 0; i < ncons; i++) ts_close(&run->q[i]);   /* consumers end once their queue is empty */
        for (i = nprod; i < nprod + ncons; i++) pthread_join(th[i], NULL);
        for (i = 0; i < TS_XS_MAX; i++) {
            rgets += run->gets[i];
            rputs += run->puts[i];
            if (run->prod_c[i]) cached += run->prod_c[i]->count;
            if (run->cons_c[i]) cached += run->cons_c[i]->count;
        }
        for (i = 0; i < 2 * TS_XS_MAX; i++) bad += run->bad[i];
        /* conservation before the caches go: every object in the store or in a cache */
        st = buffet_pool_get_stats(run->pool);
        BT_CHECK(st.in_store + cached == st.created);
        BT_CHECK(rgets == rputs && rgets >= nprod * run->per_prod);   /* a bulk get may pass the count */
        for (i = 0; i < TS_XS_MAX; i++) {
            buffet_pool_cache_destroy(run->prod_c[i]);
            buffet_pool_cache_destroy(run->cons_c[i]);
        }
        st = buffet_pool_get_stats(run->pool);
        BT_CHECK(st.in_store == st.created && st.in_use == 0 && st.caches == 0);
        BT_CHECK(st.gets == rgets && st.puts == rputs);
        BT_CHECK(st.double_puts == 0 && st.foreign_puts == 0 && st.failures == 0);
        gets += rgets;
        puts += rputs;
        handed += rgets;
        created += st.created;
        grown += st.slabs;
        for (i = 0; i < ncons; i++) ts_queue_deinit(&run->q[i]);
        pthread_mutex_destroy(&run->start_mu);
        buffet_pool_destroy(run->pool);
    }
    BT_CHECK(bad == 0);
    printf("  pool store   %u producers, %u consumers: %u rounds, %llu objects handed on one at a time "
           "(%llu gets, %llu puts), %zu objects made in %zu slabs\n", nprod, ncons, round,
           (unsigned long long)handed, (unsigned long long)gets, (unsigned long long)puts, created, grown);
    if (bad)
        fprintf(stderr, "test_stress_frame.c: %llu objects found wrong (seed %llu)\n",
                (unsigned long long)bad, (unsigned long long)ts_seed);
    free(run);
}

static void test_stress_pool_store(void) {
    ts_xs_part(1, 1);
    ts_xs_part(2, 2);
}

/* ---------------------------------------------------------------------------------------------
   Transfers and pins: thread 0 runs frames and hands blocks on; the others check and let go. */

typedef struct ts_item {
    buffet_frame_transfer *t;  /* a transfer, or */
    buffet_buf *b;             /* a buffer over the frame allocator (pinned) */
    uint64_t seq;
    buffet_frame_transfer *next;   /* the transfer of the next item of this batch, or NULL */
} ts_item;

typedef struct ts_xfer_run {
    buffet_frame_arena *arena;
    unsigned nthreads;
    uint64_t items;            /* to hand on in all */
    ts_queue q[TS_MAX_THREADS];
    uint64_t received[TS_MAX_THREADS], bad[TS_MAX_THREADS];
    uint64_t sent, pinned, frames;
} ts_xfer_run;

/* A handed-on block: its number, then a byte of it. */
static void ts_xfill(unsigned char *p, size_t size, uint64_t seq) {
    memcpy(p, &seq, 8);
    memset(p + 8, (int)(seq * 131 & 0xFF), size - 8);
}
static bool ts_xok(const unsigned char *p, size_t size, uint64_t seq) {
    unsigned char want[256];
    ts_xfill(want, size, seq);
    return memcmp(p, want, size) == 0;
}

static void *ts_xfer_sender(void *arg) {
    ts_xfer_run *run = (ts_xfer_run *)arg;
    ts_rng rng;
    uint64_t seq = 0;
    buffet_allocator fa = buffet_frame_allocator(run->arena);
    rng.s = ts_seed * 0xD1B54A32D192ED03ull + 7;
    while (seq < run->items) {
        unsigned n = 1 + ts_below(&rng, 48), k;
        /* a batch per receiver and frame, linked through the items: first and last */
        buffet_frame_transfer *head[TS_MAX_THREADS] = { NULL, NULL, NULL, NULL };
        ts_item *tail[TS_MAX_THREADS] = { NULL, NULL, NULL, NULL };
        if (buffet_frame_begin(run->arena) != BUFFET_OK) {
            run->bad[0]++;
            break;
        }
        run->frames++;
        for (k = 0; k < n && seq < run->items; k++) {
            ts_item *it;
            size_t size = 16 + ts_below(&rng, 240);
            unsigned to = 1 + ts_below(&rng, run->nthreads - 1);
            unsigned char *p;
            ts_jitter(&rng);
            /* filler the receivers never see, so blocks do not all start chunks */
            if (ts_below(&rng, 4) == 0 && !buffet_frame_alloc(run->arena, 1 + ts_below(&rng, 200), 8)) run->bad[0]++;
            it = (ts_item *)buffet_frame_alloc(run->arena, sizeof *it, BUFFET_ALIGNOF(ts_item));
            if (!it) {
                run->bad[0]++;
                continue;
            }
            memset(it, 0, sizeof *it);
            it->seq = ++seq;
            if (ts_below(&rng, 4) == 0) {
                buffet_buf_desc d;
                memset(&d, 0, sizeof d);
                d.size = size;
                d.allocator = fa;
                if (buffet_buf_create(&it->b, &d) != BUFFET_OK) {
                    run->bad[0]++;
                    continue;
                }
                p = (unsigned char *)it->b->data;
                run->pinned++;
            } else {
                p = (unsigned char *)buffet_frame_alloc(run->arena, size, 8);
                if (!p) {
                    run->bad[0]++;
                    continue;
                }
            }
            ts_xfill(p, size, it->seq);
            if (!it->b) {
                it->t = buffet_frame_transfer_send(run->arena, p, size);
                if (!it->t) {
                    run->bad[0]++;
                    continue;
                }
            }
            /* the item is frame memory too, read by the receiver until it lets go: a transfer */
            {
                buffet_frame_transfer *ti = buffet_frame_transfer_send(run->arena, it, sizeof *it);
                if (!ti) {
                    run->bad[0]++;
                    continue;
                }
                if (tail[to]) tail[to]->next = ti;
                else head[to] = ti;
                tail[to] = it;
            }
            run->sent++;
        }
        for (k = 1; k < run->nthreads; k++)
            if (head[k]) ts_push_wait(&run->q[k], head[k]);
        if (buffet_frame_end(run->arena) != BUFFET_OK) run->bad[0]++;
    }
    {
        unsigned i;
        for (i = 1; i < run->nthreads; i++) ts_close(&run->q[i]);
    }
    return NULL;
}

typedef struct ts_recv { ts_xfer_run *run; unsigned id; } ts_recv;

static void *ts_xfer_receiver(void *arg) {
    ts_recv *r = (ts_recv *)arg;
    ts_xfer_run *run = r->run;
    ts_rng rng;
    rng.s = ts_seed * 0x94D049BB133111EBull + r->id;
    for (;;) {
        buffet_frame_transfer *ti = (buffet_frame_transfer *)ts_pop_wait(&run->q[r->id]), *next;
        ts_item *it;
        size_t size = 0;
        const unsigned char *p;
        if (!ti) break;   /* closed: the sender is done */
    item:
        ts_jitter(&rng);
        it = (ts_item *)buffet_frame_transfer_receive(ti, &size);
        if (!it || size != sizeof *it) {
            run->bad[r->id]++;
            continue;
        }
        if (it->b) {
            p = (const unsigned char *)it->b->data;
            size = it->b->size;
        } else {
            p = (const unsigned char *)buffet_frame_transfer_receive(it->t, &size);
        }
        if (size < 16 || size > 256 || !ts_xok(p, size, it->seq)) run->bad[r->id]++;
        /* the last reference may be the one that frees the chunk, here, after its frame */
        if (it->b) buffet_buf_unref(it->b);
        else buffet_frame_transfer_release(it->t);
        next = it->next;
        buffet_frame_transfer_release(ti);   /* the item is gone after this */
        run->received[r->id]++;
        if ((ti = next) != NULL) goto item;
    }
    return NULL;
}

static void ts_xfer_part(unsigned nthreads) {
    ts_xfer_run *run = (ts_xfer_run *)calloc(1, sizeof *run);
    ts_recv rv[TS_MAX_THREADS];
    pthread_t th[TS_MAX_THREADS];
    buffet_frame_desc d;
    buffet_frame_stats st;
    uint64_t received = 0, bad = 0;
    unsigned i;
    if (!run) {
        BT_CHECK(!"out of memory");
        return;
    }
    memset(&d, 0, sizeof d);
    d.chunk_size = 4096;
    d.frames_in_flight = 2;
    BT_CHECK(buffet_frame_create(&run->arena, &d) == BUFFET_OK);
    if (!run->arena) {
        free(run);
        return;
    }
    run->nthreads = nthreads;
    run->items = ts_ops() / 2;   /* an item is two operations: handed on, and taken and let go */
    for (i = 0; i < nthreads; i++) ts_queue_init(&run->q[i]);
    BT_CHECK(pthread_create(&th[0], NULL, ts_xfer_sender, run) == 0);
    for (i = 1; i < nthreads; i++) {
        rv[i].run = run;
        rv[i].id = i;
        BT_CHECK(pthread_create(&th[i], NULL, ts_xfer_receiver, &rv[i]) == 0);
    }
    for (i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
    for (i = 0; i < nthreads; i++) {
        received += run->received[i];
        bad += run->bad[i];
        BT_CHECK(run->q[i].count == 0);
        ts_queue_deinit(&run->q[i]);
    }
    BT_CHECK(bad == 0);
    BT_CHECK(run->sent == run->items && received == run->sent);
    /* everything released: a few frames later every chunk is back in use or spare */
    for (i = 0; i < 3; i++) BT_CHECK(buffet_frame_begin(run->arena) == BUFFET_OK && buffet_frame_end(run->arena) == BUFFET_OK);
    st = buffet_frame_get_stats(run->arena);
    BT_CHECK(st.transfers_sent == 2 * run->sent);   /* each item's own, and its block's (or pin's) */
    BT_CHECK(st.misuse == 0 && st.failures == 0);
    BT_CHECK(st.chunks == st.spare_chunks);         /* none held by a receiver any more */
    printf("  transfers %u threads: %llu operations (%llu blocks handed on in %llu frames, %llu of them as pinned buffers)\n",
           nthreads, (unsigned long long)(2 * run->items), (unsigned long long)run->sent, (unsigned long long)run->frames,
           (unsigned long long)run->pinned);
    buffet_frame_destroy(run->arena);
    free(run);
}

static void test_stress_transfers(void) {
    ts_xfer_part(2);
    ts_xfer_part(4);
}

/* ---------------------------------------------------------------------------------------------
   Barrier: each thread runs frames in its own arena; one winner per round checks the round. */

#define TS_ROUND_WORK 500      /* allocations per thread per round */

typedef struct ts_barrier_run {
    buffet_frame_barrier b;
    unsigned nthreads;
    uint64_t rounds;
    uint64_t arrived[TS_MAX_THREADS];   /* written by each thread before the barrier */
    uint64_t winners, bad;              /* written by the winner only, between two barriers */
    uint64_t ops[TS_MAX_THREADS];
} ts_barrier_run;

typedef struct ts_bworker { ts_barrier_run *run; unsigned id; } ts_bworker;

static void *ts_barrier_worker(void *arg) {
    ts_bworker *w = (ts_bworker *)arg;
    ts_barrier_run *run = w->run;
    buffet_frame_arena *a = NULL;
    buffet_frame_desc d;
    ts_rng rng;
    uint64_t round;
    rng.s = ts_seed * 0xBF58476D1CE4E5B9ull + w->id;
    memset(&d, 0, sizeof d);
    d.chunk_size = 8192;
    if (buffet_frame_create(&a, &d) != BUFFET_OK) {
        run->bad++;
        return NULL;
    }
    for (round = 1; round <= run->rounds; round++) {
        unsigned k;
        uint64_t sum = 0;
        BT_CHECK(buffet_frame_begin(a) == BUFFET_OK);
        for (k = 0; k < TS_ROUND_WORK; k++) {
            uint64_t *v = BUFFET_FRAME_NEW(a, uint64_t);
            if (!v) {
                run->bad++;
                break;
            }
            *v = round + k;
            sum += *v;
            if ((k & 63) == 0) ts_jitter(&rng);
        }
        BT_CHECK(buffet_frame_end(a) == BUFFET_OK);
        BT_CHECK(sum == round * TS_ROUND_WORK + (uint64_t)TS_ROUND_WORK * (TS_ROUND_WORK - 1) / 2);
        run->arrived[w->id] = round;
        run->ops[w->id] += TS_ROUND_WORK + 1;
        if (buffet_frame_barrier_wait(&run->b)) {
            /* the serial part: every thread has finished this round, none has started the next */
            unsigned i;
            run->winners++;
            for (i = 0; i < run->nthreads; i++)
                if (run->arrived[i] != round) run->bad++;
        }
        /* a second meeting, so that the winner's checks end before anyone moves on */
        buffet_frame_barrier_wait(&run->b);
    }
    buffet_frame_destroy(a);
    return NULL;
}

static void ts_barrier_part(unsigned nthreads) {
    ts_barrier_run *run = (ts_barrier_run *)calloc(1, sizeof *run);
    ts_bworker w[TS_MAX_THREADS];
    pthread_t th[TS_MAX_THREADS];
    uint64_t ops = 0;
    unsigned i;
    if (!run) {
        BT_CHECK(!"out of memory");
        return;
    }
    BT_CHECK(buffet_frame_barrier_init(&run->b, nthreads) == BUFFET_OK);
    run->nthreads = nthreads;
    run->rounds = ts_ops() / nthreads / (TS_ROUND_WORK + 1);
    if (run->rounds == 0) run->rounds = 1;
    for (i = 0; i < nthreads; i++) {
        w[i].run = run;
        w[i].id = i;
        BT_CHECK(pthread_create(&th[i], NULL, ts_barrier_worker, &w[i]) == 0);
    }
    for (i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
    for (i = 0; i < nthreads; i++) ops += run->ops[i];
    BT_CHECK(run->bad == 0);
    BT_CHECK(run->winners == run->rounds);
    BT_CHECK(run->b.generation == 2 * run->rounds && run->b.waiting == 0);
    printf("  barrier   %u threads: %llu operations (%llu rounds, one winner each)\n", nthreads, (unsigned long long)ops,
           (unsigned long long)run->rounds);
    buffet_frame_barrier_deinit(&run->b);
    free(run);
}

static void test_stress_barrier(void) {
    ts_barrier_part(2);
    ts_barrier_part(4);
}

static void ts_lap(const char *what) {
    static struct timespec t0;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t0.tv_sec) printf("  (%s: %.1f s)\n", what, (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9);
    t0 = t;
}

int main(void) {
    const char *s = getenv("BUFFET_STRESS_SEED");
    ts_seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    printf("test_stress_frame.c: seed %llu (BUFFET_STRESS_SEED=%llu repeats it), %llu operations per part and thread count\n",
           (unsigned long long)ts_seed, (unsigned long long)ts_seed, (unsigned long long)ts_ops());
    fflush(stdout);
    ts_lap("start");
    BT_RUN(test_stress_pool_shared);
    ts_lap("shared store");
    BT_RUN(test_stress_pool_caches);
    ts_lap("caches");
    BT_RUN(test_stress_pool_store);
    ts_lap("store across threads");
    BT_RUN(test_stress_transfers);
    ts_lap("transfers");
    BT_RUN(test_stress_barrier);
    ts_lap("barrier");
    return bt_finish("test_stress_frame.c");
}
