/* test_oom_packet.c - the out-of-memory sweep of buffet_packet.h: every public function that
   allocates (pool create, cache create, class growth under alloc, alloc_class, alloc_bulk,
   alloc_shared and the allocator face, clone, attach_external, linearize, to_chain, and a
   registry's create through the pool's provider) runs over a failing allocator whose 1st, 2nd,
   3rd ... attempt fails (once, and from then on) until the call succeeds without a failure.
   Each failure must be clean: the documented error (the allocator's NOMEM), nothing changed,
   nothing leaked (the failing allocator's parent is a debug allocator, empty after every round),
   and the pool still usable, then cleanly destroyed. Prints how many allocation points each
   function has. C11 and C++17. */
#ifndef BUFFET_IMPLEMENTATION
#define BUFFET_IMPLEMENTATION
#endif
#include "../buffet_packet.h"
#include "bt.h"

/* ---------------------------------------------------------------------------------------------
   The environment of one sweep: a debug allocator under a failing one, and a log. */

typedef struct to_env {
    buffet_debug *dbg;
    buffet_failing f;
    unsigned nomem_logged;
} to_env;

static void to_log(void *user, buffet_log_level level, buffet_result code, const char *msg, const char *file, int line) {
    to_env *e = (to_env *)user;
    (void)level; (void)msg; (void)file; (void)line;
    if (code == BUFFET_ERR_NOMEM) e->nomem_logged++;
}

static buffet_allocator to_fa(to_env *e) { return buffet_failing_allocator(&e->f); }
/* The n-th attempt from now fails, and every later one when `after`. */
static void to_arm(to_env *e, uint64_t n, bool after) {
    e->f.fail_at = e->f.allocs + n;
    e->f.fail_after = after;
}
static void to_disarm(to_env *e) {
    e->f.fail_at = 0;
    e->f.fail_after = false;
}

/* What a case sets up and the call under test leaves. */
typedef struct to_ctx {
    to_env *e;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *keep[16];
    size_t nkeep;
    buffet_pkt *p, *q;
    buffet_chain ch;
    bool ch_used;
    buffet_registry *reg;
    buffet_buf *buf;
    void *block;
    buffet_result r;
    unsigned char mem[700];
} to_ctx;

/* A pool of classes 64 and 512 (one class when `one`), bookkeeping from the failing allocator. */
static buffet_result to_pool_desc(to_ctx *x, buffet_pkt_pool_desc *d, bool one) {
    memset(d, 0, sizeof *d);
    d->name = "oom";
    d->class_sizes[0] = 64;
    if (!one) d->class_sizes[1] = 512;
    d->initial = 1;
    d->grow = 1;
    d->max = 64;
    d->no_huge_pages = true;
    d->allocator = to_fa(x->e);
    d->log.fn = to_log;
    d->log.user = x->e;
    return BUFFET_OK;
}
static void to_pool(to_ctx *x, bool one, uint32_t user_size) {
    buffet_pkt_pool_desc d;
    to_pool_desc(x, &d, one);
    d.user_size = user_size;
    BT_CHECK(buffet_pkt_pool_create(&x->pool, &d) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&x->c, x->pool, 4) == BUFFET_OK);
}

/* Take every buffer class k has made so far (kept in x->keep), so that the next must grow it. */
static void to_drain(to_ctx *x, unsigned k) {
    buffet_pkt_stats s = buffet_pkt_pool_get_stats(x->pool);
    size_t i, n = s.cls[k].created;
    for (i = 0; i < n && x->nkeep < 16; i++) {
        x->keep[x->nkeep] = buffet_pkt_alloc_class(x->c, k);
        BT_CHECK(x->keep[x->nkeep] != NULL);
        x->nkeep++;
    }
    BT_CHECK(buffet_pkt_pool_get_stats(x->pool).cls[k].created == n);   /* none grown yet */
}

/* A packet of n pattern bytes (seed + i). */
static buffet_pkt *to_packet(to_ctx *x, size_t n, unsigned seed) {
    buffet_pkt *p = buffet_pkt_alloc(x->c, n);
    unsigned char *d = p ? (unsigned char *)buffet_pkt_append(p, n) : NULL;
    size_t i;
    BT_CHECK(d != NULL);
    for (i = 0; d && i < n; i++) d[i] = (unsigned char)(seed + i);
    return p;
}
static bool to_bytes_ok(const buffet_pkt *p, size_t n, unsigned seed) {
    unsigned char tmp[2048];
    const unsigned char *r = (const unsigned char *)buffet_pkt_read(p, 0, n, tmp);
    size_t i;
    if (!r || p->pkt_len != n) return false;
    for (i = 0; i < n; i++)
        if (r[i] != (unsigned char)(seed + i)) return false;
    return true;
}

/* The pool still works (a packet of every class, and a clone), then everything is freed and
   the pool destroyed. */
static void to_finish(to_ctx *x) {
    size_t i;
    if (x->pool && !x->c) BT_CHECK(buffet_pkt_cache_create(&x->c, x->pool, 4) == BUFFET_OK);
    if (x->pool) {
        buffet_pkt_stats s = buffet_pkt_pool_get_stats(x->pool);
        unsigned k;
        for (k = 0; k < s.nclasses && x->c; k++) {
            buffet_pkt *p = buffet_pkt_alloc_class(x->c, k), *q;
            BT_CHECK(p != NULL);
            q = p ? buffet_pkt_clone(x->c, p) : NULL;
            BT_CHECK(q != NULL);
            buffet_pkt_free(x->c, q);
            buffet_pkt_free(x->c, p);
        }
    }
    for (i = 0; i < x->nkeep; i++) buffet_pkt_free(x->c, x->keep[i]);
    if (x->ch_used) buffet_chain_deinit(&x->ch);
    buffet_buf_unref(x->buf);
    if (x->block) buffet_free(buffet_pkt_allocator(x->c), x->block, 100, 64, BUFFET_SITE);
    buffet_pkt_free(x->c, x->q);
    buffet_pkt_free(x->c, x->p);
    buffet_pkt_cache_destroy(x->c);
    if (x->pool) {
        buffet_pkt_stats s = buffet_pkt_pool_get_stats(x->pool);
        unsigned k;
        for (k = 0; k <= s.nclasses; k++) BT_CHECK(s.cls[k].in_use == 0);
    }
    buffet_pkt_pool_destroy(x->pool);
    buffet_registry_destroy(x->reg);
}

/* ---------------------------------------------------------------------------------------------
   The cases: setup (nothing fails), the call (armed; true when it succeeded), the check of what
   a failure left. */

typedef struct to_case {
    const char *name;
    void (*setup)(to_ctx *x);
    bool (*call)(to_ctx *x);
    void (*failed)(to_ctx *x);   /* the call failed: nothing changed? */
} to_case;

static void setup_none(to_ctx *x) { (void)x; }

static bool call_pool_create(to_ctx *x) {
    buffet_pkt_pool_desc d;
    to_pool_desc(x, &d, false);
    d.initial = 8;
    d.max = 64;
    x->r = buffet_pkt_pool_create(&x->pool, &d);
    return x->r == BUFFET_OK;
}
static void failed_pool_create(to_ctx *x) {
    BT_CHECK(x->r == BUFFET_ERR_NOMEM && x->pool == NULL && x->e->nomem_logged > 0);
}

static void setup_pool(to_ctx *x) { to_pool(x, false, 0); }
static bool call_cache_create(to_ctx *x) {
    buffet_pkt_cache *c = NULL;
    x->r = buffet_pkt_cache_create(&c, x->pool, 8);
    if (x->r != BUFFET_OK) {
        BT_CHECK(x->r == BUFFET_ERR_NOMEM && c == NULL);
        return false;
    }
    BT_CHECK(c != NULL);
    if (c) {   /* it works */
        buffet_pkt *p = buffet_pkt_alloc(c, 10);
        BT_CHECK(p != NULL);
        buffet_pkt_free(c, p);
    }
    buffet_pkt_cache_destroy(c);
    return true;
}
static void failed_nothing(to_ctx *x) { (void)x; }

/* Growth of class 0: all it has taken, and a 4000-byte user area, so that each growth makes
   one buffer (a burst of 4 grows 4 times). */
static void setup_grow(to_ctx *x) {
    to_pool(x, false, 4000);
    to_drain(x, 0);
}
static bool call_alloc(to_ctx *x) {
    x->p = buffet_pkt_alloc(x->c, 10);
    x->r = x->p ? BUFFET_OK : buffet_alloc_error(NULL);
    return x->p != NULL;
}
static bool call_alloc_class(to_ctx *x) {
    x->p = buffet_pkt_alloc_class(x->c, 0);
    x->r = x->p ? BUFFET_OK : buffet_alloc_error(NULL);
    return x->p != NULL;
}
static bool call_alloc_shared(to_ctx *x) {
    x->p = buffet_pkt_alloc_shared(x->pool, 10);
    x->r = x->p ? BUFFET_OK : buffet_alloc_error(NULL);
    return x->p != NULL;
}
static bool call_alloc_bulk(to_ctx *x) {
    buffet_pkt *v[4];
    size_t n = buffet_pkt_alloc_bulk(x->c, 0, v, 4), i;
    x->r = n ? BUFFET_OK : buffet_alloc_error(NULL);
    for (i = 0; i < n; i++) buffet_pkt_free(x->c, v[i]);
    return n == 4;
}
static bool call_allocator_face(to_ctx *x) {
    x->block = buffet_alloc(buffet_pkt_allocator(x->c), 100, 64, BUFFET_SITE);
    x->r = x->block ? BUFFET_OK : buffet_alloc_error(NULL);
    return x->block != NULL;
}
static void failed_grow(to_ctx *x) {
    buffet_pkt_stats s;
    buffet_pkt_cache_flush(x->c);
    s = buffet_pkt_pool_get_stats(x->pool);
    BT_CHECK(x->r == BUFFET_ERR_NOMEM && s.cls[0].failures >= 1 && s.cls[0].in_use == x->nkeep);
}

/* Clones of a three-segment packet, each clone header a growth of its own (a 4000-byte user
   area makes one header per page): the second and third can fail after the first succeeded. */
static void setup_clone(to_ctx *x) {
    buffet_pkt *b, *t;
    to_pool(x, false, 4000);
    x->p = to_packet(x, 60, 0);
    b = to_packet(x, 60, 60);
    t = to_packet(x, 60, 120);
    BT_CHECK(buffet_pkt_chain(b, t) == BUFFET_OK && buffet_pkt_chain(x->p, b) == BUFFET_OK);
}
static bool call_clone(to_ctx *x) {
    x->q = buffet_pkt_clone(x->c, x->p);
    x->r = x->q ? BUFFET_OK : buffet_alloc_error(NULL);
    if (x->q) BT_CHECK(to_bytes_ok(x->q, 180, 0) && x->p->refcnt == 2);
    return x->q != NULL;
}
static void failed_clone(to_ctx *x) {
    const buffet_pkt *s;
    BT_CHECK(x->r == BUFFET_ERR_NOMEM && to_bytes_ok(x->p, 180, 0));
    for (s = x->p; s; s = s->next) BT_CHECK(s->refcnt == 1);
}

static bool call_attach(to_ctx *x) {
    x->q = buffet_pkt_attach_external(x->c, x->mem, sizeof x->mem, NULL, NULL);
    x->r = x->q ? BUFFET_OK : buffet_alloc_error(NULL);
    return x->q != NULL;
}
static void failed_attach(to_ctx *x) { BT_CHECK(x->r == BUFFET_ERR_NOMEM); }
static void setup_attach(to_ctx *x) { to_pool(x, false, 4000); }

/* A two-segment packet whose first segment has no room for the rest: linearize needs a packet
   of class 1, whose page is all taken. */
static void setup_linearize(to_ctx *x) {
    buffet_pkt *t;
    to_pool(x, false, 0);
    to_drain(x, 1);
    x->p = to_packet(x, 64, 0);
    t = to_packet(x, 50, 64);
    BT_CHECK(buffet_pkt_chain(x->p, t) == BUFFET_OK);
}
static bool call_linearize(to_ctx *x) {
    buffet_pkt *before = x->p;
    x->r = buffet_pkt_linearize(x->c, &x->p);
    if (x->r == BUFFET_OK) BT_CHECK(x->p != before && x->p->nb_segs == 1 && to_bytes_ok(x->p, 114, 0));
    else BT_CHECK(x->p == before);
    return x->r == BUFFET_OK;
}
static void failed_linearize(to_ctx *x) {
    BT_CHECK(x->r == BUFFET_ERR_NOMEM && x->p->nb_segs == 2 && to_bytes_ok(x->p, 114, 0));
}

/* A three-segment packet into a chain that already holds a slice: one buffer per segment (from
   the pool's allocator), a slice array for them and a larger one for the chain (from the
   chain's). */
static void setup_to_chain(to_ctx *x) {
    buffet_buf_desc bd;
    buffet_buf *b = NULL;
    setup_clone(x);
    BT_CHECK(buffet_chain_init(&x->ch, to_fa(x->e)) == BUFFET_OK);
    x->ch_used = true;
    memset(&bd, 0, sizeof bd);
    bd.size = 16;
    bd.allocator = to_fa(x->e);
    BT_CHECK(buffet_buf_create(&b, &bd) == BUFFET_OK);
    BT_CHECK(b && buffet_chain_append(&x->ch, b, 0, 16) == BUFFET_OK);
    buffet_buf_unref(b);
}
static bool call_to_chain(to_ctx *x) {
    x->r = buffet_pkt_to_chain(x->p, &x->ch);
    if (x->r == BUFFET_OK) BT_CHECK(buffet_chain_len(&x->ch) == 196 && x->p->refcnt == 2);
    return x->r == BUFFET_OK;
}
static void failed_to_chain(to_ctx *x) {
    const buffet_pkt *s;
    BT_CHECK(x->r == BUFFET_ERR_NOMEM && buffet_chain_len(&x->ch) == 16);
    for (s = x->p; s; s = s->next) BT_CHECK(s->refcnt == 1);
}

/* A network buffer from a registry whose best provider is the pool (its packet needs growth;
   the buffer's header comes from the request's allocator, the failing one too). */
static void setup_registry(to_ctx *x) {
    buffet_registry_desc rd;
    setup_grow(x);
    memset(&rd, 0, sizeof rd);
    rd.allocator = buffet_debug_allocator(x->e->dbg);
    BT_CHECK(buffet_registry_create(&x->reg, &rd) == BUFFET_OK);
    BT_CHECK(x->reg && buffet_pkt_pool_register(x->pool, x->reg) == BUFFET_OK);
}
static bool call_registry(to_ctx *x) {
    buffet_request q;
    memset(&q, 0, sizeof q);
    q.usage = BUFFET_USAGE_NETWORK;
    q.size = 40;
    q.allocator = to_fa(x->e);
    x->r = buffet_registry_create_buf(x->reg, &q, &x->buf);
    if (x->r == BUFFET_OK) BT_CHECK(x->buf && x->buf->size == 40);
    else BT_CHECK(x->buf == NULL);
    return x->r == BUFFET_OK;
}
static void failed_registry(to_ctx *x) {
    buffet_pkt_stats s;
    buffet_pkt_cache_flush(x->c);
    s = buffet_pkt_pool_get_stats(x->pool);
    BT_CHECK(x->r == BUFFET_ERR_NOMEM && s.cls[0].in_use == x->nkeep);
}

/* ---------------------------------------------------------------------------------------------
   The sweep */

static unsigned to_points_total;

/* Fail the 1st, 2nd, ... attempt of the call (once, then from then on) until it succeeds with
   nothing refused. Returns: the allocation points (attempts of the call that succeeded). */
static void to_sweep(const to_case *k) {
    unsigned points[2] = {0, 0}, failures_seen[2] = {0, 0};
    int after;
    for (after = 0; after < 2; after++) {
        uint64_t n;
        for (n = 1; n < 1000; n++) {
            to_env e;
            to_ctx x;
            uint64_t allocs0, failures0, attempts;
            bool ok;
            memset(&e, 0, sizeof e);
            memset(&x, 0, sizeof x);
            BT_CHECK(buffet_debug_create(&e.dbg, NULL) == BUFFET_OK);
            buffet_failing_init(&e.f, buffet_debug_allocator(e.dbg), 0, false);
            x.e = &e;
            k->setup(&x);
            allocs0 = e.f.allocs;
            failures0 = e.f.failures;
            e.nomem_logged = 0;
            to_arm(&e, n, after != 0);
            ok = k->call(&x);
            attempts = e.f.allocs - allocs0;
            to_disarm(&e);
            if (!ok) {
                BT_CHECK(e.f.failures > failures0);   /* only the injected failure fails it */
                k->failed(&x);
                failures_seen[after]++;
            }
            to_finish(&x);
            BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
            if (buffet_debug_get_stats(e.dbg).live_count) {
                fprintf(stderr, "oom %s: leak after failing attempt %u%s\n", k->name, (unsigned)n, after ? " and later" : "");
                buffet_debug_report_leaks(e.dbg, stderr);
            }
            buffet_debug_destroy(e.dbg);
            if (ok && e.f.failures == failures0) {   /* succeeded with no attempt refused: every point swept */
                points[after] = (unsigned)attempts;
                break;
            }
        }
        BT_CHECK(n < 1000);
    }
    BT_CHECK(points[0] == points[1] && points[0] >= 1 && failures_seen[0] == points[0] && failures_seen[1] == points[1]);
    to_points_total += points[0];
    printf("oom %-26s %u allocation points swept (failing once: %u clean failures; failing from then on: %u)\n",
           k->name, points[0], failures_seen[0], failures_seen[1]);
}

static const to_case to_cases[] = {
    {"buffet_pkt_pool_create", setup_none, call_pool_create, failed_pool_create},
    {"buffet_pkt_cache_create", setup_pool, call_cache_create, failed_nothing},
    {"buffet_pkt_alloc (growth)", setup_grow, call_alloc, failed_grow},
    {"buffet_pkt_alloc_class", setup_grow, call_alloc_class, failed_grow},
    {"buffet_pkt_alloc_bulk", setup_grow, call_alloc_bulk, failed_grow},
    {"buffet_pkt_alloc_shared", setup_grow, call_alloc_shared, failed_grow},
    {"buffet_pkt_allocator", setup_grow, call_allocator_face, failed_grow},
    {"buffet_pkt_clone", setup_clone, call_clone, failed_clone},
    {"buffet_pkt_attach_external", setup_attach, call_attach, failed_attach},
    {"buffet_pkt_linearize", setup_linearize, call_linearize, failed_linearize},
    {"buffet_pkt_to_chain", setup_to_chain, call_to_chain, failed_to_chain},
    {"registry create (provider)", setup_registry, call_registry, failed_registry},
};

static void test_oom_sweep(void) {
    size_t i;
    for (i = 0; i < sizeof to_cases / sizeof to_cases[0]; i++) to_sweep(&to_cases[i]);
    printf("oom: %u allocation points in %u functions\n", to_points_total, (unsigned)(sizeof to_cases / sizeof to_cases[0]));
}

int main(void) {
    BT_RUN(test_oom_sweep);
    return bt_finish("test_oom_packet.c");
}
