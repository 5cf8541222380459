/* test_stress_core.c - seeded concurrency stress of every thread-safe type of buffet.h, with 2
   and with 4 threads: buffet_buf references shared and handed between threads (the last one
   dropped on any of them), the heap, the debug allocator used from several threads, the failing
   allocator's counters, the adapter over the heap, and the registry with buffers made while
   providers come and go. Each thread does its share of the operations with random yields and
   short random spins, so that interleavings vary from run to run, and hands blocks and references
   to the others through a shared mailbox (atomic exchange). Conservation checks: every refcount
   ends where it started; allocations and frees balance; the debug allocator's live count and
   bytes equal what the threads hold; the failing allocator counted every attempt and refusal;
   no block is ever held by two holders (each holder stamps its id into the block it holds and
   finds it still there); no provider is called after its removal returned.
   Operations per type and thread count (all threads together): bt_stress_ops() (tests/bt.h:
   10^7 in the gcc C11 build, 4*10^6 under TSan). The seed is BUFFET_STRESS_SEED or the clock,
   printed with the counts. C11 and C++17; TSan clean. */
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"
#include "bt.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#define ST_MAIL 16       /* the mailbox: slots of blocks or references in transit */
#define ST_HOLD 16       /* what one thread holds at a time */
#define ST_BUFS 8        /* long-lived shared buffers */
#define ST_PROVS 4       /* providers that come and go */
#define ST_MAX_THREADS 4
#define ST_MAGIC 0x5EEDB10Cu

static uint64_t st_ops_total, st_seed;

/* ---------------------------------------------------------------------------------------------
   Randomness and jitter */

static uint64_t st_next(uint64_t *s) {   /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}
/* Now and then give the core away or spin a little, so that the threads' steps interleave
   differently on every run. */
static void st_jitter(uint64_t r) {
    unsigned k;
    if ((r & 1023) == 0) sched_yield();
    else if ((r & 127) == 1)
        for (k = (unsigned)(r >> 10) & 31; k; k--) buffet__cpu_relax();
}

/* ---------------------------------------------------------------------------------------------
   A run: one type, one thread count */

enum { ST_BUF, ST_HEAP, ST_DEBUG, ST_FAILING, ST_ADAPTER, ST_REGISTRY, ST_TYPES };
static const char *const st_names[ST_TYPES] = {"buffet_buf refcounts", "heap allocator", "debug allocator",
                                               "failing allocator", "adapter over the heap", "registry"};

/* Every block the allocator types hand out starts with this stamp. */
typedef struct st_stamp { uint32_t owner, magic, size, align; } st_stamp;

typedef struct st_prov {
    int registered;        /* atomic: 1 from before its add until its remove returned */
    int claim;             /* atomic: the thread adding or removing it (0: none) */
    int in_call;           /* atomic: calls inside it now */
    uint64_t creates;      /* atomic */
    int detached;          /* atomic */
    int adds, removes;     /* by the claim holder */
    char name[24];
} st_prov;

typedef struct st_run {
    int type, nthreads;
    uint64_t ops;          /* per thread */
    void *mail[ST_MAIL];   /* atomic */
    buffet_buf *bufs[ST_BUFS];
    buffet_debug *dbg;
    buffet_failing fail;
    buffet_adapter ad;
    buffet_registry *reg;
    st_prov prov[ST_PROVS];
    int errors;            /* atomic: broken invariants seen by the threads */
    uint64_t made, gone;   /* atomic: transient buffers created, destroyed */
} st_run;

typedef struct st_thread {
    st_run *run;
    pthread_t th;
    uint32_t id;           /* 1-based */
    uint64_t rng;
    void *held[ST_HOLD];
    uint64_t allocs, frees, attempts, nulls, bufs_made;
} st_thread;

static void st_fail(st_run *run, const char *what) {
    if (BUFFET__FETCH_ADD(&run->errors, 1, BUFFET__RELAXED) < 5) fprintf(stderr, "stress: %s\n", what);
}

static buffet_allocator st_alloc_of(st_run *run) {
    switch (run->type) {
    case ST_DEBUG: return buffet_debug_allocator(run->dbg);
    case ST_FAILING: return buffet_failing_allocator(&run->fail);
    case ST_ADAPTER: return buffet_adapter_allocator(&run->ad);
    default: return buffet_heap();
    }
}

/* ---------------------------------------------------------------------------------------------
   Allocator types: allocate, stamp, check, hand over, free */

/* A holder takes a block: the stamp must be whole, and from now on names this holder. */
static void st_take(st_thread *t, st_stamp *s) {
    if (s->magic != (ST_MAGIC ^ s->size)) st_fail(t->run, "a block's stamp was overwritten");
    s->owner = t->id;
}
/* Still ours? Another holder would have written its own id. */
static void st_check(st_thread *t, const st_stamp *s) {
    if (s->owner != t->id || s->magic != (ST_MAGIC ^ s->size)) st_fail(t->run, "a block held by two holders");
    if (t->run->type == ST_ADAPTER && buffet_adapter_size(s) != s->size) st_fail(t->run, "the adapter forgot a block's size");
}

static void st_free_block(st_thread *t, st_stamp *s) {
    st_check(t, s);
    s->magic = 0;   /* a second holder of this block would now see a broken stamp */
    if (t->run->type == ST_ADAPTER && (t->frees & 1)) buffet_adapter_free(&t->run->ad, s);
    else buffet_free(st_alloc_of(t->run), s, s->size, s->align, BUFFET_SITE);
    t->frees++;
}

static void st_alloc_op(st_thread *t, uint64_t r) {
    st_run *run = t->run;
    size_t j = (size_t)(r >> 8) % ST_HOLD;
    st_stamp *s = (st_stamp *)t->held[j];
    switch ((r >> 16) & 7) {
    case 0:
    case 1:
    case 2: {  /* allocate into an empty hand, or free what is there */
        uint32_t size = 16 + (uint32_t)((r >> 24) & 255), align = (r >> 40) & 1 ? 64 : 16;
        if (s) {
            st_free_block(t, s);
            t->held[j] = NULL;
            return;
        }
        t->attempts++;
        if (run->type == ST_ADAPTER && (r >> 41) & 1) {
            s = (st_stamp *)buffet_adapter_malloc(&run->ad, size);
            align = 16;
        } else {
            s = (st_stamp *)buffet_alloc(st_alloc_of(run), size, align, BUFFET_SITE);
        }
        if (!s) {
            t->nulls++;
            if (run->type != ST_FAILING) st_fail(run, "an allocation failed");
            return;
        }
        if (((uintptr_t)s & (align - 1)) != 0) st_fail(run, "a misaligned block");
        s->size = size;
        s->align = align;
        s->magic = ST_MAGIC ^ size;
        s->owner = t->id;
        t->held[j] = s;
        t->allocs++;
        return;
    }
    case 3: {  /* hand what is in this hand to the mailbox, taking what was there */
        void **slot = &run->mail[(r >> 24) % ST_MAIL];
        if (s) st_check(t, s);
        s = (st_stamp *)BUFFET__EXCHANGE(slot, t->held[j], BUFFET__ACQ_REL);
        if (s) st_take(t, s);
        t->held[j] = s;
        return;
    }
    case 5:   /* the adapter's realloc: the block moves or grows, keeps its stamp */
        if (run->type == ST_ADAPTER && s) {
            uint32_t size = 16 + (uint32_t)((r >> 24) & 511);
            st_stamp *n;
            st_check(t, s);
            n = (st_stamp *)buffet_adapter_realloc(&run->ad, s, size);
            if (!n) {
                st_fail(run, "an adapter realloc failed");
                return;
            }
            n->size = size;
            n->align = 16;
            n->magic = ST_MAGIC ^ size;
            t->held[j] = n;
            return;
        }
        /* fall through */
    default:
        if (s) st_check(t, s);
        return;
    }
}

/* ---------------------------------------------------------------------------------------------
   buffet_buf: references taken, dropped and handed over; transient buffers dropped anywhere */

static void st_buf_gone(void *user, void *data, size_t size) {
    (void)size;
    BUFFET__FETCH_ADD(&((st_run *)user)->gone, 1, BUFFET__RELAXED);
    free(data);
}

/* The buffer is alive and is the one we took: its first word is its magic. */
static void st_buf_check(st_thread *t, const buffet_buf *b) {
    uint32_t m;
    memcpy(&m, b->data, sizeof m);
    if (m != ST_MAGIC || buffet_buf_refcount(b) == 0) st_fail(t->run, "a held buffer is gone");
}

static void st_buf_op(st_thread *t, uint64_t r) {
    st_run *run = t->run;
    size_t j = (size_t)(r >> 8) % ST_HOLD;
    buffet_buf *b = (buffet_buf *)t->held[j];
    switch ((r >> 16) & 7) {
    case 0:
    case 1:
    case 2:   /* take a reference to a shared buffer, or drop the one held */
        if (b) {
            st_buf_check(t, b);
            buffet_buf_unref(b);
            t->held[j] = NULL;
            t->frees++;
        } else {
            b = buffet_buf_ref(run->bufs[(r >> 24) & 1 ? 0 : (r >> 25) % ST_BUFS]);   /* half on one hot buffer */
            if (!b || buffet_buf_refcount(b) < 2) st_fail(run, "a reference was refused");
            t->held[j] = b;
            t->allocs++;
        }
        return;
    case 3: {  /* hand it over */
        void **slot = &run->mail[(r >> 24) % ST_MAIL];
        b = (buffet_buf *)BUFFET__EXCHANGE(slot, t->held[j], BUFFET__ACQ_REL);
        if (b) st_buf_check(t, b);
        t->held[j] = b;
        return;
    }
    case 5:   /* a transient buffer: one reference kept, one mailed; the last goes anywhere */
        if ((r >> 24 & 15) == 0 && !b) {
            buffet_buf_desc d;
            uint32_t m = ST_MAGIC;
            memset(&d, 0, sizeof d);
            d.kind = BUFFET_BUF_WRAP;
            d.size = 64;
            d.wrap_data = malloc(64);
            d.release = st_buf_gone;
            d.release_user = run;
            d.allocator = buffet_debug_allocator(run->dbg);
            if (!d.wrap_data || buffet_buf_create(&b, &d) != BUFFET_OK) {
                free(d.wrap_data);
                st_fail(run, "a buffer could not be made");
                return;
            }
            memcpy(b->data, &m, sizeof m);
            BUFFET__FETCH_ADD(&run->made, 1, BUFFET__RELAXED);
            t->held[j] = buffet_buf_ref(b);
            t->allocs++;
            b = (buffet_buf *)BUFFET__EXCHANGE(&run->mail[(r >> 28) % ST_MAIL], b, BUFFET__ACQ_REL);
            if (b) {
                st_buf_check(t, b);
                buffet_buf_unref(b);
                t->frees++;
            }
            return;
        }
        /* fall through */
    default:
        if (b) st_buf_check(t, b);
        return;
    }
}

/* ---------------------------------------------------------------------------------------------
   The registry: buffers made while providers come and go */

static void st_prov_enter(st_run *run, st_prov *p) {
    BUFFET__FETCH_ADD(&p->in_call, 1, BUFFET__ACQ_REL);
    if (!BUFFET__LOAD(&p->registered, BUFFET__ACQUIRE)) st_fail(run, "a provider was called after its removal returned");
}
static void st_prov_leave(st_prov *p) { BUFFET__FETCH_SUB(&p->in_call, 1, BUFFET__ACQ_REL); }

typedef struct st_prov_self { st_run *run; st_prov *p; } st_prov_self;
static st_prov_self st_selves[ST_PROVS];

static int st_prov_score(void *self, const buffet_request *q, char *why, size_t cap) {
    st_prov_self *s = (st_prov_self *)self;
    (void)q;
    st_prov_enter(s->run, s->p);
    if (cap) why[0] = '\0';
    st_prov_leave(s->p);
    return 100;
}
static buffet_result st_prov_create(void *self, const buffet_request *q, buffet_buf **out) {
    st_prov_self *s = (st_prov_self *)self;
    buffet_buf_desc d;
    buffet_result r;
    st_prov_enter(s->run, s->p);
    memset(&d, 0, sizeof d);
    d.size = q->size;
    d.allocator = q->allocator;
    r = buffet_buf_create(out, &d);
    if (r == BUFFET_OK) BUFFET__FETCH_ADD(&s->p->creates, 1, BUFFET__RELAXED);
    st_prov_leave(s->p);
    return r;
}
static void st_prov_detach(void *self, buffet_registry *r) {
    (void)r;
    BUFFET__FETCH_ADD(&((st_prov_self *)self)->p->detached, 1, BUFFET__RELAXED);
}

static void st_reg_op(st_thread *t, uint64_t r) {
    st_run *run = t->run;
    if (((r >> 8) & 15) == 0) {   /* add or remove a provider this thread claims */
        int k = (int)((r >> 12) % ST_PROVS), zero = 0;
        st_prov *p = &run->prov[k];
        buffet_provider pv;
        if (!BUFFET__CAS(&p->claim, &zero, (int)t->id, BUFFET__ACQUIRE, BUFFET__RELAXED)) return;
        memset(&pv, 0, sizeof pv);
        pv.name = p->name;
        pv.score = st_prov_score;
        pv.create = st_prov_create;
        pv.detach = st_prov_detach;
        pv.self = &st_selves[k];
        if (!BUFFET__LOAD(&p->registered, BUFFET__RELAXED)) {
            BUFFET__STORE(&p->registered, 1, BUFFET__RELEASE);
            if (buffet_registry_add(run->reg, &pv) != BUFFET_OK) st_fail(run, "a provider could not be added");
            p->adds++;
        } else {
            int detached = BUFFET__LOAD(&p->detached, BUFFET__RELAXED);
            if (buffet_registry_add(run->reg, &pv) != BUFFET_ERR_INVALID) st_fail(run, "a duplicate name was accepted");
            if (buffet_registry_remove(run->reg, p->name) != BUFFET_OK) st_fail(run, "a provider could not be removed");
            if (BUFFET__LOAD(&p->in_call, BUFFET__ACQUIRE) != 0) st_fail(run, "remove returned with calls inside the provider");
            if (BUFFET__LOAD(&p->detached, BUFFET__RELAXED) != detached + 1) st_fail(run, "detach was not called once");
            BUFFET__STORE(&p->registered, 0, BUFFET__RELEASE);
            p->removes++;
        }
        BUFFET__STORE(&p->claim, 0, BUFFET__RELEASE);
        return;
    }
    {
        buffet_request q;
        buffet_buf *b = NULL;
        memset(&q, 0, sizeof q);
        q.size = 16 + (r >> 20 & 63);
        if (buffet_registry_create_buf(run->reg, &q, &b) != BUFFET_OK || !b) {
            st_fail(run, "create_buf failed");
            return;
        }
        if (buffet_buf_refcount(b) != 1 || b->size != q.size) st_fail(run, "create_buf gave a wrong buffer");
        buffet_buf_unref(b);
        t->bufs_made++;
    }
}

/* ---------------------------------------------------------------------------------------------
   Threads, and the checks after them */

static void *st_main(void *arg) {
    st_thread *t = (st_thread *)arg;
    uint64_t i;
    for (i = 0; i < t->run->ops; i++) {
        uint64_t r = st_next(&t->rng);
        st_jitter(r);
        switch (t->run->type) {
        case ST_BUF: st_buf_op(t, r); break;
        case ST_REGISTRY: st_reg_op(t, r); break;
        default: st_alloc_op(t, r); break;
        }
    }
    return NULL;
}


static void st_run_one(int type, int nthreads) {
    st_run *run = (st_run *)calloc(1, sizeof *run);
    st_thread th[ST_MAX_THREADS];
    buffet_debug_desc dd;
    buffet_debug_stats ds;
    uint64_t allocs = 0, frees = 0, attempts = 0, nulls = 0, bufs_made = 0, creates = 0, held = 0, held_bytes = 0;
    size_t base_count, base_bytes, base_total;
    struct timespec t0, t1;
    int i, k, adds = 0, removes = 0, detached = 0;
    size_t m;
    if (!run) return;
    run->type = type;
    run->nthreads = nthreads;
    run->ops = (st_ops_total ? st_ops_total : 1) / (uint64_t)nthreads;
    memset(&dd, 0, sizeof dd);
    dd.log.fn = buffet_log_stderr;
    BT_CHECK(buffet_debug_create(&run->dbg, &dd) == BUFFET_OK);
    if (!run->dbg) { free(run); return; }
    buffet_failing_init(&run->fail, buffet_heap(), run->ops * (uint64_t)nthreads / 10 + 1, true);
    BT_CHECK(buffet_adapter_init(&run->ad, buffet_heap(), 0) == BUFFET_OK);
    BT_CHECK(buffet_registry_create(&run->reg, NULL) == BUFFET_OK);
    for (k = 0; k < ST_BUFS; k++) {
        buffet_buf_desc d;
        uint32_t magic = ST_MAGIC;
        memset(&d, 0, sizeof d);
        d.size = 64;
        d.allocator = buffet_debug_allocator(run->dbg);
        BT_CHECK(buffet_buf_create(&run->bufs[k], &d) == BUFFET_OK);
        if (run->bufs[k]) memcpy(run->bufs[k]->data, &magic, sizeof magic);
    }
    for (k = 0; k < ST_PROVS; k++) {
        snprintf(run->prov[k].name, sizeof run->prov[k].name, "stress%d", k);
        st_selves[k].run = run;
        st_selves[k].p = &run->prov[k];
    }
    memset(th, 0, sizeof th);
    for (i = 0; i < nthreads; i++) {
        th[i].run = run;
        th[i].id = (uint32_t)i + 1;
        th[i].rng = st_seed ^ ((uint64_t)(type * 16 + nthreads) << 32) ^ (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
        if (!th[i].rng) th[i].rng = 1;
    }
    ds = buffet_debug_get_stats(run->dbg);   /* the baseline: the shared buffers */
    base_count = ds.live_count;
    base_bytes = ds.live_bytes;
    base_total = ds.total_count;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < nthreads; i++) BT_CHECK(pthread_create(&th[i].th, NULL, st_main, &th[i]) == 0);
    for (i = 0; i < nthreads; i++) pthread_join(th[i].th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    BT_CHECK(run->errors == 0);
    for (i = 0; i < nthreads; i++) {
        allocs += th[i].allocs;
        frees += th[i].frees;
        attempts += th[i].attempts;
        nulls += th[i].nulls;
        bufs_made += th[i].bufs_made;
    }
    /* what is still held: in the threads' hands and in the mailbox */
    for (i = 0; i < nthreads; i++)
        for (k = 0; k < ST_HOLD; k++)
            if (th[i].held[k]) {
                held++;
                if (type != ST_BUF && type != ST_REGISTRY) held_bytes += ((st_stamp *)th[i].held[k])->size;
            }
    for (m = 0; m < ST_MAIL; m++)
        if (run->mail[m]) {
            held++;
            if (type != ST_BUF && type != ST_REGISTRY) held_bytes += ((st_stamp *)run->mail[m])->size;
        }
    if (type == ST_DEBUG) {   /* the debug allocator's counts equal what the threads hold */
        ds = buffet_debug_get_stats(run->dbg);
        BT_CHECK(ds.live_count == base_count + held && ds.live_bytes == base_bytes + held_bytes);
        BT_CHECK(ds.total_count == base_total + allocs && ds.free_count == frees);
        BT_CHECK(ds.double_frees + ds.foreign_frees + ds.mismatched_frees + ds.corruptions + ds.failed_allocs == 0);
        BT_CHECK(buffet_debug_check(run->dbg) == BUFFET_OK);
    }
    if (type != ST_BUF && type != ST_REGISTRY) BT_CHECK(allocs == frees + held);
    if (type == ST_FAILING) {   /* every attempt counted; every refusal seen by exactly one caller */
        uint64_t want = attempts >= run->fail.fail_at ? attempts - run->fail.fail_at + 1 : 0;
        BT_CHECK(run->fail.allocs == attempts && run->fail.failures == nulls && nulls == want);
    }
    /* give everything back */
    for (i = 0; i < nthreads; i++)
        for (k = 0; k < ST_HOLD; k++) {
            void *p = th[i].held[k];
            if (!p) continue;
            if (type == ST_BUF) buffet_buf_unref((buffet_buf *)p);
            else st_free_block(&th[i], (st_stamp *)p);
        }
    for (m = 0; m < ST_MAIL; m++) {
        void *p = run->mail[m];
        if (!p) continue;
        if (type == ST_BUF) buffet_buf_unref((buffet_buf *)p);
        else {
            ((st_stamp *)p)->owner = th[0].id;
            st_free_block(&th[0], (st_stamp *)p);
        }
    }
    BT_CHECK(run->errors == 0);
    /* references end where they started; every transient buffer went exactly once */
    for (k = 0; k < ST_BUFS; k++) BT_CHECK(buffet_buf_refcount(run->bufs[k]) == 1);
    BT_CHECK(run->made == run->gone);
    for (k = 0; k < ST_BUFS; k++) buffet_buf_unref(run->bufs[k]);
    for (k = 0; k < ST_PROVS; k++) {
        st_prov *p = &run->prov[k];
        if (p->registered) BT_CHECK(buffet_registry_remove(run->reg, p->name) == BUFFET_OK);
        creates += p->creates;
        adds += p->adds;
        removes += p->removes;
        detached += p->detached;
        BT_CHECK(p->in_call == 0);
    }
    if (type == ST_REGISTRY) {   /* our providers made some of the buffers ("heap" the rest); a detach per removal */
        BT_CHECK(creates <= bufs_made && removes <= adds && detached == adds);
    }
    ds = buffet_debug_get_stats(run->dbg);
    BT_CHECK(ds.live_count == 0 && ds.live_bytes == 0 && ds.total_count == ds.free_count);
    printf("  %-24s %d threads: %llu ops in %.2f s (seed %llu)\n", st_names[type], nthreads,
           (unsigned long long)(run->ops * (uint64_t)nthreads),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, (unsigned long long)st_seed);
    if (type == ST_REGISTRY)
        printf("  %-24s           %llu buffers made, %d providers added and removed\n", "",
               (unsigned long long)bufs_made, adds);
    if (type == ST_FAILING)
        printf("  %-24s           %llu attempts, %llu refused\n", "", (unsigned long long)attempts, (unsigned long long)nulls);
    buffet_registry_destroy(run->reg);
    buffet_adapter_deinit(&run->ad);
    buffet_failing_deinit(&run->fail);
    buffet_debug_destroy(run->dbg);
    free(run);
}

static void st_run_type(int type) {
    st_run_one(type, 2);
    st_run_one(type, 4);
}
static void test_stress_buf(void) { st_run_type(ST_BUF); }
static void test_stress_heap(void) { st_run_type(ST_HEAP); }
static void test_stress_debug(void) { st_run_type(ST_DEBUG); }
static void test_stress_failing(void) { st_run_type(ST_FAILING); }
static void test_stress_adapter(void) { st_run_type(ST_ADAPTER); }
static void test_stress_registry(void) { st_run_type(ST_REGISTRY); }

int main(void) {
    const char *seed = getenv("BUFFET_STRESS_SEED");
    st_ops_total = bt_stress_ops();
    st_seed = seed && *seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL);
    printf("stress: %llu operations per type and thread count, seed %llu (BUFFET_STRESS_SEED=%llu repeats the choices)\n",
           (unsigned long long)st_ops_total, (unsigned long long)st_seed, (unsigned long long)st_seed);
    BT_RUN(test_stress_buf);
    BT_RUN(test_stress_heap);
    BT_RUN(test_stress_debug);
    BT_RUN(test_stress_failing);
    BT_RUN(test_stress_adapter);
    BT_RUN(test_stress_registry);
    return bt_finish("test_stress_core.c");
}
