/* test_misuse_packet.c - buffet_packet.h used the way a careless user or a hostile peer would:
   chain cycles and segments chained twice, pools with tiny classes and a headroom of 1, copies
   of headers and foreign pointers given to free, lengths written into the public header fields
   so that they do not add up, references to and clones of free packets, double frees (of clone
   headers whose bytes the shared store has taken over, too), clones and linearizes across
   pools, NUMA nodes that do not exist, bursts larger than the cache or the class, pool names
   that are not valid UTF-8, and two threads cloning and freeing one packet at once (run under
   TSan). Each misuse must be refused (or be harmless) and leave the pool whole: every buffer
   comes back exactly once, nothing is handed out that is not a buffer. Each refusal is logged
   with the call site, so every log line checked here must name this file.
   tests/test_misuse_packet_debug.c runs the same file in a BUFFET_DEBUG build, where foreign
   pointers of every kind are caught too. C11 and C++17. */
#ifndef BUFFET_IMPLEMENTATION
#define BUFFET_IMPLEMENTATION
#endif
#include "../buffet_packet.h"
#include "bt.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#ifndef TM_NAME
#define TM_NAME "test_misuse_packet.c"
#endif

/* ---------------------------------------------------------------------------------------------
   Helpers */


/* The last line logged names a line of this file (the call site of the misuse). */
static bool tm_names_site(const bt_log *l) {
    bool ok = strstr(l->last_msg, "test_misuse_packet.c:") != NULL;
    if (!ok) fprintf(stderr, "log line without the call site: %s\n", l->last_msg);
    return ok;
}

/* One test's environment: a debug allocator for the pools' bookkeeping (a leak of it fails the
   test) and a log. */
typedef struct tm_env { buffet_debug *dbg; bt_log log; } tm_env;

static void tm_begin(tm_env *e) {
    memset(e, 0, sizeof *e);
    BT_CHECK(buffet_debug_create(&e->dbg, NULL) == BUFFET_OK);
}
static void tm_end(tm_env *e) {
    buffet_debug_stats st = buffet_debug_get_stats(e->dbg);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(e->dbg, stderr);
    buffet_debug_destroy(e->dbg);
}

/* Classes 64, 512 and 2048, 64 buffers each, at most 128, no huge pages. */
static void tm_desc(tm_env *e, buffet_pkt_pool_desc *d) {
    memset(d, 0, sizeof *d);
    d->name = "misuse";
    d->class_sizes[0] = 64;
    d->class_sizes[1] = 512;
    d->class_sizes[2] = 2048;
    d->initial = 64;
    d->max = 128;
    d->no_huge_pages = true;
    d->allocator = buffet_debug_allocator(e->dbg);
    d->log.fn = bt_log_fn;
    d->log.user = &e->log;
}
static buffet_pkt_pool *tm_pool(const buffet_pkt_pool_desc *d) {
    buffet_pkt_pool *p = NULL;
    BT_CHECK(buffet_pkt_pool_create(&p, d) == BUFFET_OK && p != NULL);
    return p;
}
static buffet_pkt_cache *tm_cache(buffet_pkt_pool *p, uint32_t size) {
    buffet_pkt_cache *c = NULL;
    BT_CHECK(buffet_pkt_cache_create(&c, p, size) == BUFFET_OK && c != NULL);
    return c;
}

/* Every buffer of every class is back (caches flushed or destroyed first). */
static void tm_all_back(buffet_pkt_pool *p) {
    buffet_pkt_stats s = buffet_pkt_pool_get_stats(p);
    unsigned k;
    for (k = 0; k <= s.nclasses; k++) BT_CHECK(s.cls[k].in_use == 0 && s.cls[k].allocs == s.cls[k].frees);
    BT_CHECK(buffet_pkt_pool_report_leaks(p, NULL) == 0);
}

/* A packet of `n` pattern bytes (seed + i). */
static buffet_pkt *tm_packet(buffet_pkt_cache *c, size_t n, unsigned seed) {
    buffet_pkt *p = buffet_pkt_alloc(c, n);
    unsigned char *d;
    size_t i;
    if (!p) return NULL;
    d = (unsigned char *)buffet_pkt_append(p, n);
    if (!d) return p;
    for (i = 0; i < n; i++) d[i] = (unsigned char)(seed + i);
    return p;
}
static bool tm_is_pattern(const void *src, size_t n, unsigned seed) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] != (unsigned char)(seed + i)) return false;
    return true;
}

/* Does p's chain end within `max` segments (no cycle)? */
static bool tm_ends(const buffet_pkt *p, unsigned max) {
    while (p && max--) p = p->next;
    return p == NULL;
}

/* The run mode (BUFFET_TEST_MODE), for scaling loops. */
static unsigned long tm_scaled(unsigned long n) {
    const char *m = getenv("BUFFET_TEST_MODE");
    if (m && strcmp(m, "valgrind") == 0) return n / 20 ? n / 20 : 1;
    if (m && (strcmp(m, "aarch64") == 0 || strcmp(m, "asan") == 0)) return n / 4 ? n / 4 : 1;
    return n;
}

/* Is s[0..n) valid UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF)? */
static bool tm_utf8(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], need, min, cp, k;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; min = 0x80; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; min = 0x800; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; min = 0x10000; cp = c & 0x07; }
        else return false;
        for (k = 1; k <= need; k++) {
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += need + 1;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
   Chains: cycles, a segment in two chains, a packet behind itself */

static void test_chain_cycles(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *a, *b, *x, *y, *z, *w, *q;
    unsigned char tmp[512];
    const void *r;
    unsigned invalid;
    tm_begin(&e);
    tm_desc(&e, &d);
    pool = tm_pool(&d);
    c = tm_cache(pool, 0);
    a = tm_packet(c, 100, 0);
    b = tm_packet(c, 50, 100);
    BT_CHECK(a && b && buffet_pkt_chain(a, b) == BUFFET_OK && b->nb_segs == 0);
    /* b behind a, then a behind b: a cycle that ref, trim, read and clone would follow forever */
    invalid = bt_logged(&e.log, BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_chain(b, a) == BUFFET_ERR_INVALID);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_INVALID) == invalid + 1 && tm_names_site(&e.log));
    if (b->next == a) b->next = NULL;   /* a cycle would hang everything below: break it, the check failed */
    BT_CHECK(a->next == b && b->next == NULL && a->nb_segs == 2 && a->pkt_len == 150);
    /* a packet behind itself, a head or a segment */
    BT_CHECK(buffet_pkt_chain(a, a) == BUFFET_ERR_INVALID && tm_names_site(&e.log));
    BT_CHECK(buffet_pkt_chain(b, b) == BUFFET_ERR_INVALID);
    BT_CHECK(a->next == b && b->next == NULL);
    /* a longer chain, and a cycle through its middle or its end */
    x = tm_packet(c, 10, 150);
    y = tm_packet(c, 10, 160);
    z = tm_packet(c, 10, 170);
    BT_CHECK(x && y && z && buffet_pkt_chain(x, y) == BUFFET_OK && buffet_pkt_chain(x, z) == BUFFET_OK);
    BT_CHECK(buffet_pkt_chain(z, x) == BUFFET_ERR_INVALID && tm_names_site(&e.log));
    BT_CHECK(buffet_pkt_chain(y, x) == BUFFET_ERR_INVALID);
    if (z && z->next == x) z->next = NULL;
    if (y && y->next == x) y->next = z;
    BT_CHECK(tm_ends(x, 4) && x->nb_segs == 3 && x->pkt_len == 30);
    /* a head with its segments behind another packet: fine, it becomes a segment */
    BT_CHECK(buffet_pkt_chain(a, x) == BUFFET_OK && a->nb_segs == 5 && a->pkt_len == 180 && x->nb_segs == 0);
    /* ...and then cannot be a head, nor be chained a second time anywhere */
    w = tm_packet(c, 5, 180);
    BT_CHECK(w != NULL);
    BT_CHECK(buffet_pkt_chain(x, w) == BUFFET_ERR_INVALID && tm_names_site(&e.log));   /* x is a segment */
    BT_CHECK(buffet_pkt_chain(z, w) == BUFFET_ERR_INVALID);   /* the last segment */
    BT_CHECK(buffet_pkt_chain(w, y) == BUFFET_ERR_INVALID);   /* y is in a's chain already */
    BT_CHECK(buffet_pkt_chain(w, b) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_chain(w, a) == BUFFET_OK);             /* a whole packet may follow w */
    BT_CHECK(buffet_pkt_chain(a, w) == BUFFET_ERR_INVALID);   /* but not lead it back */
    BT_CHECK(tm_ends(w, 8) && w->nb_segs == 6 && w->pkt_len == 185);
    /* a segment freed alone (the middle one, the last one, through either free) would leave the
       chain linking a buffer handed out again: refused, nothing changes */
    {
        unsigned state = bt_logged(&e.log, BUFFET_ERR_STATE);
        buffet_pkt_free(c, y);
        buffet_pkt_free(c, z);
        buffet_pkt_free_shared(b);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == state + 3 && tm_names_site(&e.log));
        BT_CHECK(y->refcnt == 1 && z->refcnt == 1 && b->refcnt == 1 && tm_ends(w, 8));
    }
    /* everything still works on the whole */
    r = buffet_pkt_read(w, 0, 185, tmp);
    BT_CHECK(r == tmp && tm_is_pattern(tmp, 5, 180) && tm_is_pattern(tmp + 5, 180, 0));
    BT_CHECK(buffet_pkt_ref(w) == BUFFET_OK && a->refcnt == 2 && z->refcnt == 2);
    q = buffet_pkt_clone(c, w);
    BT_CHECK(q && q->nb_segs == 6 && q->pkt_len == 185 && tm_ends(q, 8));
    buffet_pkt_free(c, q);
    buffet_pkt_free(c, w);
    BT_CHECK(buffet_pkt_trim(w, 5) == BUFFET_OK && w->pkt_len == 180);
    BT_CHECK(buffet_pkt_linearize(c, &w) == BUFFET_OK && w && w->nb_segs == 1 && w->len == 180);
    BT_CHECK(w && tm_is_pattern(buffet_pkt_data(w), 5, 180) && tm_is_pattern((unsigned char *)buffet_pkt_data(w) + 5, 175, 0));
    buffet_pkt_free(c, w);
    buffet_pkt_cache_flush(c);
    tm_all_back(pool);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* A chain a caller linked by hand (next written directly) into a cycle: a free ends, every other
   call refuses it. */
static void test_hand_made_cycle(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *a, *b;
    unsigned char tmp[64];
    tm_begin(&e);
    tm_desc(&e, &d);
    pool = tm_pool(&d);
    c = tm_cache(pool, 0);
    a = tm_packet(c, 10, 0);
    b = tm_packet(c, 10, 10);
    BT_CHECK(a && b);
    if (a && b) {
        a->next = b;
        b->next = a;
        a->nb_segs = 2;
        a->pkt_len = 20;
        BT_CHECK(buffet_pkt_read(a, 0, 20, tmp) == NULL && bt_logged(&e.log, BUFFET_ERR_INVALID) == 1 && tm_names_site(&e.log));
        BT_CHECK(buffet_pkt_ref(a) == BUFFET_ERR_INVALID && a->refcnt == 1);
        BT_CHECK(buffet_pkt_clone(c, a) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_pkt_trim(a, 1) == BUFFET_ERR_INVALID && buffet_pkt_adj(a, 1) == NULL);
        BT_CHECK(buffet_pkt_append(a, 1) == NULL && buffet_pkt_prepend(a, 1) == NULL);
        BT_CHECK(buffet_pkt_linearize(c, &a) == BUFFET_ERR_INVALID);
        /* free walks a, b, then meets a again, free now: refused there, the walk ends */
        buffet_pkt_free(c, a);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 1 && tm_names_site(&e.log));
    }
    buffet_pkt_cache_flush(c);
    tm_all_back(pool);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Lengths that do not add up */

/* Every call that reads the lengths refuses p (logged, naming this file), and nothing changes. */
static void tm_refused_everywhere(tm_env *e, buffet_pkt_cache *c, buffet_pkt *p, buffet_pkt *other) {
    unsigned char tmp[4096];
    buffet_chain ch;
    buffet_pkt *before = p;
    unsigned invalid = bt_logged(&e->log, BUFFET_ERR_INVALID);
    uint32_t pkt_len = p->pkt_len, len = p->len;
    uint16_t refcnt = p->refcnt;
    BT_CHECK(buffet_pkt_read(p, 0, 1, tmp) == NULL && tm_names_site(&e->log));
    BT_CHECK(buffet_pkt_read(p, p->pkt_len > 10 ? p->pkt_len - 10 : 0, 10, tmp) == NULL);
    BT_CHECK(buffet_pkt_linearize(c, &p) == BUFFET_ERR_INVALID && p == before && tm_names_site(&e->log));
    BT_CHECK(buffet_pkt_clone(c, p) == NULL && tm_names_site(&e->log));
    BT_CHECK(buffet_pkt_ref(p) == BUFFET_ERR_INVALID && tm_names_site(&e->log));
    BT_CHECK(buffet_pkt_trim(p, 1) == BUFFET_ERR_INVALID && tm_names_site(&e->log));
    BT_CHECK(buffet_pkt_adj(p, 1) == NULL && tm_names_site(&e->log));
    BT_CHECK(buffet_pkt_chain(p, other) == BUFFET_ERR_INVALID && tm_names_site(&e->log));
    BT_CHECK(buffet_pkt_chain(other, p) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(e->dbg)) == BUFFET_OK);
    BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_ERR_INVALID && buffet_chain_len(&ch) == 0 && tm_names_site(&e->log));
    buffet_chain_deinit(&ch);
    BT_CHECK(bt_logged(&e->log, BUFFET_ERR_INVALID) >= invalid + 10);
    BT_CHECK(p->pkt_len == pkt_len && p->len == len && p->refcnt == refcnt && other->next == NULL && other->nb_segs == 1);
}

static void test_inconsistent_lengths(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *o, *a, *b;
    unsigned char tmp[256];
    uint32_t keep32;
    uint16_t keep16;
    tm_begin(&e);
    tm_desc(&e, &d);
    pool = tm_pool(&d);
    c = tm_cache(pool, 0);
    p = tm_packet(c, 100, 7);
    o = tm_packet(c, 10, 0);
    BT_CHECK(p && o);
    if (!p || !o) goto out;
    /* pkt_len larger, then smaller, than the data */
    p->pkt_len = 5000;
    tm_refused_everywhere(&e, c, p, o);
    p->pkt_len = 5;
    tm_refused_everywhere(&e, c, p, o);
    p->pkt_len = 100;
    /* len beyond the data room (and pkt_len agreeing with it) */
    p->len = p->pkt_len = 70000;
    BT_CHECK(buffet_pkt_tailroom(p) == 0 && buffet_pkt_append(p, 1) == NULL);
    tm_refused_everywhere(&e, c, p, o);
    p->len = p->pkt_len = 100;
    /* data_off beyond the data room: prepend must not hand out memory past it */
    keep16 = p->data_off;
    p->data_off = 65535;
    BT_CHECK(buffet_pkt_prepend(p, 10) == NULL && buffet_pkt_append(p, 10) == NULL && buffet_pkt_tailroom(p) == 0);
    tm_refused_everywhere(&e, c, p, o);
    p->data_off = keep16;
    /* nb_segs */
    p->nb_segs = 7;
    tm_refused_everywhere(&e, c, p, o);
    p->nb_segs = 1;
    /* repaired: all of it works again */
    BT_CHECK(buffet_pkt_read(p, 0, 100, tmp) == buffet_pkt_data(p) && tm_is_pattern(buffet_pkt_data(p), 100, 7));
    BT_CHECK(buffet_pkt_adj(p, 1) != NULL && buffet_pkt_trim(p, 1) == BUFFET_OK && p->pkt_len == 98);
    /* a chain whose segment changed behind its back (appended to, trimmed directly) */
    a = tm_packet(c, 40, 0);
    b = tm_packet(c, 40, 40);
    BT_CHECK(a && b && buffet_pkt_chain(a, b) == BUFFET_OK);
    if (a && b) {
        BT_CHECK(buffet_pkt_append(b, 8) != NULL);   /* b's own view: harmless to memory */
        tm_refused_everywhere(&e, c, a, o);
        keep32 = b->len;
        b->len = 40;
        BT_CHECK(buffet_pkt_read(a, 0, 80, tmp) == tmp && tm_is_pattern(tmp, 80, 0));
        b->len = keep32 - 20;   /* shorter than a believes */
        tm_refused_everywhere(&e, c, a, o);
        b->len = 40;
        /* a segment read on its own is not a packet either (it counts 0 segments) */
        BT_CHECK(buffet_pkt_read(b, 0, 1, tmp) == NULL && tm_names_site(&e.log));
        BT_CHECK(buffet_pkt_linearize(c, &a) == BUFFET_OK && a->len == 80 && tm_is_pattern(buffet_pkt_data(a), 80, 0));
        buffet_pkt_free(c, a);
    }
    buffet_pkt_free(c, p);
    buffet_pkt_free(c, o);
out:
    buffet_pkt_cache_flush(c);
    tm_all_back(pool);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Copies of headers, foreign pointers, free packets */

static unsigned tm_ext_frees;
static void tm_ext_free(void *opaque, void *mem) { (void)opaque; (void)mem; tm_ext_frees++; }

/* Allocate (and free) more than a cache and a ring hold of every class: none of it is one of
   the `n` addresses in bad[]. */
static void tm_never_handed_out(buffet_pkt_cache *c, buffet_pkt *const *bad, size_t n) {
    buffet_pkt *got[200];
    size_t i, j, k, m = 0;
    for (k = 0; k < 3; k++) {
        static const size_t sizes[3] = {10, 500, 2000};
        for (m = 0; m < 60 && (got[m] = buffet_pkt_alloc(c, sizes[k])) != NULL; m++) {
            for (j = 0; j < n; j++) BT_CHECK(got[m] != bad[j]);
        }
        for (i = 0; i < m; i++) buffet_pkt_free(c, got[i]);
    }
    got[0] = buffet_pkt_alloc(c, 10);
    for (m = 1; got[0] && m < 120 && (got[m] = buffet_pkt_clone(c, got[0])) != NULL; m++) {
        for (j = 0; j < n; j++) BT_CHECK(got[m] != bad[j]);
    }
    for (i = m; i-- > 0;) buffet_pkt_free(c, got[i]);
}

static void test_header_copies(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q, *x, *s, *bad[5], *list[1];
    buffet_pkt copy, qcopy, xcopy, chaincopy, *inner;
    static unsigned char mem[600];
    buffet_chain ch;
    buffet_pkt_stats st;
    tm_begin(&e);
    tm_desc(&e, &d);
    pool = tm_pool(&d);
    c = tm_cache(pool, 0);
    tm_ext_frees = 0;
    p = tm_packet(c, 300, 3);
    q = p ? buffet_pkt_clone(c, p) : NULL;
    x = buffet_pkt_attach_external(c, mem, sizeof mem, tm_ext_free, NULL);
    BT_CHECK(p && q && x);
    if (!p || !q || !x) goto out;
    memcpy(&copy, p, sizeof copy);
    memcpy(&qcopy, q, sizeof qcopy);
    memcpy(&xcopy, x, sizeof xcopy);
    /* freed through a cache, without one, in a burst */
    buffet_pkt_free(c, &copy);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 1 && tm_names_site(&e.log));
    buffet_pkt_free_shared(&copy);
    list[0] = &copy;
    buffet_pkt_free_bulk(c, list, 1);
    buffet_pkt_free(c, &qcopy);
    BT_CHECK(tm_names_site(&e.log));
    buffet_pkt_free_shared(&qcopy);
    buffet_pkt_free(c, &xcopy);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 6);
    st = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(st.foreign_frees == 6 && st.double_frees == 0);
    BT_CHECK(p->refcnt == 2 && q->refcnt == 1 && x->refcnt == 1 && tm_ext_frees == 0);   /* nothing dropped */
    /* a header-shaped copy inside a buffer's data room */
    inner = (buffet_pkt *)buffet_pkt_data(p);
    memcpy(inner, p, sizeof *inner);
    buffet_pkt_free(c, inner);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 7 && p->refcnt == 2);
    /* what would share or free the original through a copy is refused too */
    BT_CHECK(buffet_pkt_clone(c, &copy) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID && tm_names_site(&e.log));
    BT_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(e.dbg)) == BUFFET_OK);
    BT_CHECK(buffet_pkt_to_chain(&copy, &ch) == BUFFET_ERR_INVALID && tm_names_site(&e.log));
    BT_CHECK(buffet_pkt_to_chain(&qcopy, &ch) == BUFFET_ERR_INVALID && buffet_chain_len(&ch) == 0);
    buffet_chain_deinit(&ch);
    BT_CHECK(p->refcnt == 2);
    s = tm_packet(c, 20, 0);
    BT_CHECK(s && buffet_pkt_chain(s, &copy) == BUFFET_ERR_INVALID && tm_names_site(&e.log));
    BT_CHECK(s && buffet_pkt_chain(&copy, s) == BUFFET_ERR_INVALID && s->nb_segs == 1 && p->next == NULL);
    if (s && buffet_pkt_chain(p, s) == BUFFET_OK) {
        memcpy(&chaincopy, p, sizeof chaincopy);   /* a copy of a chain's head: linearize would free its segments */
        list[0] = &chaincopy;
        BT_CHECK(buffet_pkt_linearize(c, &list[0]) == BUFFET_ERR_INVALID && list[0] == &chaincopy && tm_names_site(&e.log));
        BT_CHECK(s->refcnt == 1 && p->next == s);
        s = NULL;   /* p's now */
    }
    /* none of the copies is ever handed out */
    bad[0] = &copy; bad[1] = &qcopy; bad[2] = &xcopy; bad[3] = inner; bad[4] = &chaincopy;
    tm_never_handed_out(c, bad, 5);
    buffet_pkt_free(c, s);
    buffet_pkt_free(c, q);
    buffet_pkt_free(c, x);
    BT_CHECK(tm_ext_frees == 1);
    BT_CHECK(p->refcnt == 1);
    buffet_pkt_free(c, p);
out:
    buffet_pkt_cache_flush(c);
    tm_all_back(pool);
    st = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(st.double_frees == 0);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* Raw buffers given back wrong: a stack block, a heap block, a copy of a raw header, a pointer
   into a buffer, NULL entries, another pool's buffers, a clone's header. Each foreign one is
   refused and logged with the call site, the burst's genuine buffers still go back, and none of
   the foreign addresses is ever handed out. */
static void test_raw_bulk_misuse(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *v[16], *burst[16], *bad[4], copy, *orig, *clone;
    unsigned char stack_block[256];
    unsigned char *heap_block = (unsigned char *)calloc(1, 256);
    buffet_pkt_stats st;
    size_t i;
    tm_begin(&e);
    tm_desc(&e, &d);
    pool = tm_pool(&d);
    c = tm_cache(pool, 0);
    memset(stack_block, 0xA5, sizeof stack_block);
    BT_CHECK(heap_block != NULL && buffet_pkt_alloc_bulk_raw(c, 1, v, 16) == 16);
    if (!heap_block) goto out;
    memcpy(&copy, v[0], sizeof copy);
    memset(v[1]->buf, 0, v[1]->buf_len);
    orig = buffet_pkt_alloc(c, 10);
    clone = orig ? buffet_pkt_clone(c, orig) : NULL;
    BT_CHECK(clone != NULL);
    bad[0] = (buffet_pkt *)stack_block;
    bad[1] = (buffet_pkt *)heap_block;
    bad[2] = &copy;
    bad[3] = (buffet_pkt *)(v[1]->buf + 128);
    /* alone, and mixed into bursts of genuine buffers */
    for (i = 0; i < 4; i++) buffet_pkt_free_bulk_raw(c, bad + i, 1);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 4 && tm_names_site(&e.log));
    burst[0] = v[2]; burst[1] = bad[0]; burst[2] = v[3]; burst[3] = NULL; burst[4] = bad[1]; burst[5] = v[4];
    burst[6] = bad[2]; burst[7] = v[5]; burst[8] = bad[3]; burst[9] = clone; burst[10] = v[6];
    buffet_pkt_free_bulk_raw(c, burst, 11);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 9 && tm_names_site(&e.log));
    st = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(st.foreign_frees == 9 && st.double_frees == 0);
    BT_CHECK(clone && clone->refcnt == 1);
    tm_never_handed_out(c, bad, 4);
    for (i = 0; i < sizeof stack_block; i++) BT_CHECK(stack_block[i] == 0xA5);
    /* an address where nothing is mapped, first in a burst and alone: refused by its address,
       never read (a read would end the test here) */
    {
        void *gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        BT_CHECK(gone != MAP_FAILED);
        if (gone != MAP_FAILED) {
            BT_CHECK(munmap(gone, 4096) == 0);
            burst[0] = (buffet_pkt *)gone; burst[1] = v[7];
            buffet_pkt_free_bulk_raw(c, burst, 2);
            buffet_pkt_free_bulk_raw(c, burst, 1);
            buffet_pkt_free_bulk_raw(NULL, burst, 1);
            st = buffet_pkt_pool_get_stats(pool);
            BT_CHECK(st.foreign_frees >= 9 + 2 && v[7]->nb_segs != BUFFET_PKT_RAW_LENT);
            v[7] = NULL;   /* back already */
        }
    }
    /* the clone as a packet, its original, and the rest raw */
    buffet_pkt_free(c, clone);
    buffet_pkt_free(c, orig);
    buffet_pkt_free_bulk_raw(c, v, 2);
    buffet_pkt_free_bulk_raw(c, v + 7, 9);
out:
    buffet_pkt_cache_flush(c);
    tm_all_back(pool);
    buffet_pkt_cache_destroy(c);
    free(heap_block);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* Debug builds find every buffer by its address before reading its header: anything else is
   foreign, whatever its `pool` field holds (here: an address that would crash if followed). */
static void test_foreign_pointers(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool, *other;
    buffet_pkt_cache *c;
    buffet_pkt *p, *ob, *h, stack_hdr;
    buffet_pkt_stats st;
    unsigned foreign;
    tm_begin(&e);
    tm_desc(&e, &d);
    pool = tm_pool(&d);
    d.name = "other";
    other = tm_pool(&d);
    c = tm_cache(pool, 0);
    p = tm_packet(c, 100, 0);
    ob = buffet_pkt_alloc_shared(other, 10);
    h = (buffet_pkt *)malloc(sizeof *h + 2048);
    BT_CHECK(p && ob && h && other);
    if (!p || !ob || !h || !other) goto out;
    /* malloc'd memory full of garbage; a stack header naming an impossible pool */
    memset(h, 0xA5, sizeof *h + 2048);
    memset(&stack_hdr, 0, sizeof stack_hdr);
    stack_hdr.pool = (buffet_pkt_pool *)(uintptr_t)16;
    stack_hdr.refcnt = 1;
    buffet_pkt_free(c, h);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 1 && tm_names_site(&e.log));
    buffet_pkt_free(c, &stack_hdr);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 2 && tm_names_site(&e.log));
    buffet_pkt_free_shared(h);            /* no cache, and no pool to tell: refused quietly */
    buffet_pkt_free_shared(&stack_hdr);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 2);
    BT_CHECK(buffet_pkt_history_dump(&stack_hdr, stderr) == 0 && buffet_pkt_history_dump(h, stderr) == 0);
    /* naming a real pool, without a cache: that pool hears of it */
    stack_hdr.pool = pool;
    buffet_pkt_free_shared(&stack_hdr);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 3 && tm_names_site(&e.log));
    /* a pointer into a buffer (8-byte aligned, inside the data room) */
    buffet_pkt_free(c, (buffet_pkt *)((unsigned char *)buffet_pkt_data(p) + 8));
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 4);
    /* a stack header naming a pool destroyed: no longer a live pool, so not followed */
    {
        buffet_pkt_pool *gone = tm_pool(&d);
        stack_hdr.pool = gone;
        buffet_pkt_pool_destroy(gone);
        buffet_pkt_free(c, &stack_hdr);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 5);
    }
#if BUFFET_DEBUG >= 1
    /* another pool's buffer whose header was forged to say it is this pool's: debug builds find
       it by its address and it stays out, untouched (release builds trust a forged `pool`) */
    ob->pool = pool;
    buffet_pkt_free(c, ob);
    buffet_pkt_free_shared(ob);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 7 && ob->refcnt == 1);
    ob->pool = other;
    BT_CHECK(buffet_pkt_pool_get_stats(other).foreign_frees == 1);   /* the free_shared of ob */
#endif
    foreign = (unsigned)buffet_pkt_pool_get_stats(pool).foreign_frees;
    BT_CHECK(foreign == (BUFFET_DEBUG >= 1 ? 6u : 5u));   /* the one told to no pool was counted nowhere */
    buffet_pkt_free(c, ob);   /* honestly labelled, it goes home */
    BT_CHECK(p->refcnt == 1);
    buffet_pkt_free(c, p);
out:
    free(h);
    buffet_pkt_cache_flush(c);
    tm_all_back(pool);
    if (other) tm_all_back(other);
    st = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(st.double_frees == 0);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(other);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* Pools past BUFFET_PKT_MAX_POOLS are refused with a clear error; a slot freed is taken again. */
static void test_pool_limit(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool **pools, *extra = NULL;
    size_t n = 0, i;
    tm_begin(&e);
    tm_desc(&e, &d);
    d.class_sizes[1] = d.class_sizes[2] = 0;
    d.initial = d.max = 1;
    pools = (buffet_pkt_pool **)calloc(BUFFET_PKT_MAX_POOLS + 1, sizeof *pools);
    BT_CHECK(pools != NULL);
    if (!pools) return;
    while (n <= BUFFET_PKT_MAX_POOLS && buffet_pkt_pool_create(&pools[n], &d) == BUFFET_OK) n++;
    /* other tests' pools are all destroyed, so every slot was ours to take */
    BT_CHECK(n == BUFFET_PKT_MAX_POOLS && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 1);
    buffet_pkt_pool_destroy(pools[n / 2]);
    BT_CHECK(buffet_pkt_pool_create(&extra, &d) == BUFFET_OK && extra != NULL);
    pools[n / 2] = extra;
    for (i = 0; i < n; i++) buffet_pkt_pool_destroy(pools[i]);
    free(pools);
    tm_end(&e);
}

/* A reference to, or a clone of, a packet already free must not bring it back while it sits in
   a cache; a second free (of a packet, a clone, a chain) is refused and nothing comes out twice. */
static void test_use_after_free(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q, *r, *a, *b, *got[4];
    buffet_chain ch;
    unsigned dbl, i;
    unsigned char tmp[16];
    tm_begin(&e);
    tm_desc(&e, &d);
    pool = tm_pool(&d);
    c = tm_cache(pool, 0);
    p = tm_packet(c, 10, 0);
    BT_CHECK(p != NULL);
    if (!p) goto out;
    buffet_pkt_free(c, p);
    BT_CHECK(buffet_pkt_ref(p) == BUFFET_ERR_STATE && p->refcnt == 0 && tm_names_site(&e.log));
    BT_CHECK(buffet_pkt_clone(c, p) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE && tm_names_site(&e.log));
    BT_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(e.dbg)) == BUFFET_OK);
    BT_CHECK(buffet_pkt_to_chain(p, &ch) != BUFFET_OK && buffet_chain_len(&ch) == 0);
    buffet_chain_deinit(&ch);
    BT_CHECK(p->refcnt == 0);
    q = buffet_pkt_alloc(c, 10);
    r = buffet_pkt_alloc(c, 10);
    BT_CHECK(q == p && r != p);   /* out once */
    buffet_pkt_free(c, r);
    /* a clone's data, freed under it: the clone's second free changes nothing */
    r = buffet_pkt_clone(c, q);
    BT_CHECK(r != NULL);
    buffet_pkt_free(c, r);
    dbl = bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE);
    buffet_pkt_free(c, r);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == dbl + 1 && tm_names_site(&e.log) && q->refcnt == 1);
    BT_CHECK(buffet_pkt_clone(c, r) == NULL);   /* a free clone header */
    buffet_pkt_free(c, q);
    /* a chain freed twice: the second stops at its free head */
    a = tm_packet(c, 10, 0);
    b = tm_packet(c, 10, 0);
    BT_CHECK(a && b && buffet_pkt_chain(a, b) == BUFFET_OK);
    buffet_pkt_free(c, a);
    buffet_pkt_free(c, a);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == dbl + 2 && tm_names_site(&e.log));
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, got, 4) == 4);
    BT_CHECK(got[0] != got[1] && got[0] != got[2] && got[0] != got[3] && got[1] != got[2] && got[1] != got[3] &&
             got[2] != got[3]);
    buffet_pkt_free_bulk(c, got, 4);
    /* clone headers freed and flushed into the shared store, where the first of each batch keeps
       the batch's list in the header bytes after `refcnt`: a second free of one, or a reference
       to it, must not follow that list as `next` */
    p = tm_packet(c, 10, 0);
    for (i = 0; p && i < 4; i++) got[i] = buffet_pkt_clone(c, p);
    BT_CHECK(p && got[0] && got[1] && got[2] && got[3]);
    if (p && got[0] && got[1] && got[2] && got[3]) {
        buffet_pkt_free_bulk(c, got, 4);
        buffet_pkt_cache_flush(c);
        for (i = 0; i < 4; i++) {
            buffet_pkt_free(c, got[i]);
            buffet_pkt_free_shared(got[i]);
            BT_CHECK(buffet_pkt_ref(got[i]) == BUFFET_ERR_STATE && buffet_pkt_clone(c, got[i]) == NULL);
            BT_CHECK(buffet_pkt_read(got[i], 0, 1, tmp) == NULL && buffet_pkt_trim(got[i], 0) != BUFFET_OK);
        }
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == dbl + 10 && p->refcnt == 1);
    }
    buffet_pkt_free(c, p);
out:
    buffet_pkt_cache_flush(c);
    tm_all_back(pool);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* A chain holding a segment of another pool (whose header is larger: a user area) cloned
   through the head's pool: its clone would find the data's owner through the wrong layout. */
static void test_clone_across_pools(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pa, *pb;
    buffet_pkt_cache *ca, *cb;
    buffet_pkt *a, *b, *q;
    unsigned char tmp[64];
    tm_begin(&e);
    tm_desc(&e, &d);
    pa = tm_pool(&d);
    d.user_size = 64;
    d.name = "with user area";
    pb = tm_pool(&d);
    ca = tm_cache(pa, 0);
    cb = tm_cache(pb, 0);
    a = tm_packet(ca, 20, 0);
    b = tm_packet(cb, 20, 20);
    BT_CHECK(a && b && buffet_pkt_chain(a, b) == BUFFET_OK);   /* chains may mix pools */
    q = buffet_pkt_clone(ca, a);
    BT_CHECK(q == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID && tm_names_site(&e.log));
    BT_CHECK(a->refcnt == 1 && b->refcnt == 1);
    BT_CHECK(buffet_pkt_read(a, 0, 40, tmp) == tmp && tm_is_pattern(tmp, 40, 0));
    buffet_pkt_free(ca, a);   /* each segment goes home */
    buffet_pkt_cache_destroy(ca);
    buffet_pkt_cache_destroy(cb);
    tm_all_back(pa);
    tm_all_back(pb);
    buffet_pkt_pool_destroy(pa);
    buffet_pkt_pool_destroy(pb);
    tm_end(&e);
}

/* Linearize through a cache of another pool: the new packet is that pool's, and only as much of
   the user area as both pools have is copied (the whole source area used to be copied into a
   header without one: a NULL destination). */
static void test_linearize_across_pools(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pa, *pb;
    buffet_pkt_cache *ca, *cb;
    buffet_pkt *p, *q, *before;
    size_t k;
    tm_begin(&e);
    tm_desc(&e, &d);
    d.user_size = 64;
    pa = tm_pool(&d);
    d.user_size = 0;
    d.name = "no user area";
    pb = tm_pool(&d);
    ca = tm_cache(pa, 0);
    cb = tm_cache(pb, 0);
    for (k = 0; k < 2; k++) {
        buffet_pkt_cache *into = k ? ca : cb;
        p = tm_packet(ca, 64, 0);
        q = tm_packet(ca, 64, 64);
        BT_CHECK(p && q && buffet_pkt_chain(p, q) == BUFFET_OK);
        if (!p || !q) break;
        memset(buffet_pkt_user(p), 0x5A, 64);
        p->hash = 77;
        before = p;
        BT_CHECK(buffet_pkt_linearize(into, &p) == BUFFET_OK && p != before && p->nb_segs == 1);
        BT_CHECK(p->pool == (k ? pa : pb) && p->hash == 77 && tm_is_pattern(buffet_pkt_data(p), 128, 0));
        BT_CHECK(k ? ((unsigned char *)buffet_pkt_user(p))[63] == 0x5A : buffet_pkt_user(p) == NULL);
        buffet_pkt_free(into, p);
    }
    buffet_pkt_cache_destroy(ca);
    buffet_pkt_cache_destroy(cb);
    tm_all_back(pa);
    tm_all_back(pb);
    buffet_pkt_pool_destroy(pa);
    buffet_pkt_pool_destroy(pb);
    tm_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Pool shapes and limits */

static void test_tiny_classes(void) {
    static const uint32_t refused[][3] = {{1, 0, 0}, {2, 0, 0}, {7, 0, 0}, {4, 8, 0}, {8, 7, 0}, {8, 9, 9}};
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p[40], *q;
    size_t i, k, n;
    tm_begin(&e);
    for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        tm_desc(&e, &d);
        memset(d.class_sizes, 0, sizeof d.class_sizes);
        memcpy(d.class_sizes, refused[i], sizeof refused[i]);
        d.headroom = 1;
        pool = NULL;
        BT_CHECK(buffet_pkt_pool_create(&pool, &d) == BUFFET_ERR_INVALID && pool == NULL);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_INVALID) == i + 1 && tm_names_site(&e.log));
    }
    /* the smallest that is allowed, with the smallest headroom and user area, works */
    for (k = 0; k < 3; k++) {
        tm_desc(&e, &d);
        memset(d.class_sizes, 0, sizeof d.class_sizes);
        d.class_sizes[0] = 8;
        d.class_sizes[1] = 9;
        d.headroom = 1;
        d.user_size = (uint32_t)k;
        d.initial = 16;
        d.max = 40;
        pool = tm_pool(&d);
        if (!pool) continue;
        c = tm_cache(pool, 4);
        for (n = 0; n < 40 && (p[n] = buffet_pkt_alloc(c, 8)) != NULL; n++) {
            BT_CHECK(buffet_pkt_headroom(p[n]) == 1 && buffet_pkt_tailroom(p[n]) == 8);
            BT_CHECK(buffet_pkt_append(p[n], 8) != NULL && buffet_pkt_prepend(p[n], 1) != NULL);
            BT_CHECK(buffet_pkt_append(p[n], 1) == NULL && buffet_pkt_prepend(p[n], 1) == NULL);
            memset(buffet_pkt_data(p[n]), (int)n, 9);
        }
        BT_CHECK(n == 40 && buffet_pkt_alloc(c, 8) == NULL);
        q = n ? buffet_pkt_clone(c, p[0]) : NULL;
        BT_CHECK(q && ((unsigned char *)buffet_pkt_data(q))[8] == 0);
        buffet_pkt_free(c, q);
        for (i = 0; i < n; i++) {
            BT_CHECK(((unsigned char *)buffet_pkt_data(p[i]))[0] == (unsigned char)i);
            buffet_pkt_free(c, p[i]);
        }
        BT_CHECK(buffet_pkt_alloc_bulk(c, 1, p, 4) == 4);
        buffet_pkt_free_bulk(c, p, 4);
        buffet_pkt_cache_destroy(c);
        tm_all_back(pool);
        buffet_pkt_pool_destroy(pool);
    }
    tm_end(&e);
}

/* The NUMA nodes this machine has, as the kernel lists them; -1 for the first index it lacks. */
static int tm_missing_node(void) {
    char path[64];
    int i;
    if (access("/sys/devices/system/node", F_OK) != 0) return 1;
    for (i = 0; i < 4096; i++) {
        snprintf(path, sizeof path, "/sys/devices/system/node/node%d", i);
        if (access(path, F_OK) != 0) return i;
    }
    return -1;
}

static void test_numa_missing_node(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool = NULL;
    int missing = tm_missing_node(), bad[5], i;
    unsigned invalid;
    tm_begin(&e);
    bad[0] = BUFFET_PKT_NODE(missing);
    bad[1] = BUFFET_PKT_NODE(4095);
    bad[2] = INT_MAX;
    bad[3] = -1;
    bad[4] = INT_MIN;
    for (i = 0; i < 5; i++) {
        if (missing < 0 && i == 0) continue;
        tm_desc(&e, &d);
        d.numa_node = bad[i];
        invalid = bt_logged(&e.log, BUFFET_ERR_INVALID);
        pool = NULL;
        BT_CHECK(buffet_pkt_pool_create(&pool, &d) == BUFFET_ERR_INVALID && pool == NULL);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_INVALID) == invalid + 1 && tm_names_site(&e.log));
        buffet_pkt_pool_destroy(pool);
    }
    /* node 0 exists everywhere */
    tm_desc(&e, &d);
    d.numa_node = BUFFET_PKT_NODE(0);
    pool = tm_pool(&d);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).numa_node == 0);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* Every bulk call asked for more than it can deliver returns nothing and counts a failure. */
static void test_bulk_failures_counted(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *got[64];
    buffet_pkt_stats st;
    size_t i;
    tm_begin(&e);
    tm_desc(&e, &d);
    d.initial = d.max = 64;
    pool = tm_pool(&d);
    c = tm_cache(pool, 16);
    /* more than the cache can hold */
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, got, 17) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_TOO_LARGE) == 1 && tm_names_site(&e.log));
    st = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(st.cls[0].failures == 1 && st.cls[0].in_use == 0);
    /* more than the class has left */
    for (i = 0; i < 4; i++) BT_CHECK(buffet_pkt_alloc_bulk(c, 0, got + 16 * i, 16) == 16);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, got, 1) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, got, 16) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_pkt_alloc_shared(pool, 10) == NULL);
    buffet_pkt_cache_flush(c);
    st = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(st.cls[0].failures == 4 && st.cls[0].in_use == 64);
    /* asked for nothing, or for a class there is not: invalid, not a shortage */
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, got, 0) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 9, got, 1) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    buffet_pkt_free_bulk(c, got, 64);
    buffet_pkt_cache_destroy(c);
    tm_all_back(pool);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[0].failures == 4);
    buffet_pkt_pool_destroy(pool);
    tm_end(&e);
}

/* Pool names that are not valid UTF-8, or cut inside a character at 47 bytes: statistics stay
   valid UTF-8 (JSON and Prometheus text). */
static void test_stats_names_utf8(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    char name[61], *out;
    const char *names[3];
    size_t i, n, len;
    int form;
    tm_begin(&e);
    for (i = 0; i < 30; i++) { name[2 * i] = (char)0xC3; name[2 * i + 1] = (char)0xA9; }   /* "é" x 30 */
    name[60] = '\0';
    names[0] = "caf\xc3";
    names[1] = name;
    names[2] = "\xff\xfe ok \xe2\x82";
    for (n = 0; n < 3; n++) {
        tm_desc(&e, &d);
        d.name = names[n];
        d.initial = 8;
        pool = tm_pool(&d);
        if (!pool) continue;
        if (n == 1) {
            const char *s = buffet_pkt_pool_get_stats(pool).name;
            BT_CHECK(strlen(s) == 46 && tm_utf8(s, strlen(s)));   /* cut before the character that did not fit */
        }
        for (form = 0; form < 2; form++) {
            size_t (*write)(buffet_pkt_pool *, char *, size_t) = form ? buffet_pkt_pool_stats_prometheus : buffet_pkt_pool_stats_json;
            len = write(pool, NULL, 0);
            out = (char *)malloc(len + 1);
            BT_CHECK(out && write(pool, out, len + 1) == len);
            if (out && !tm_utf8(out, len)) {
                BT_CHECK(!"the stats are UTF-8");
                fprintf(stderr, "%s stats of pool %zu are not UTF-8 (buffet__append_quoted)\n", form ? "Prometheus" : "JSON", n);
            }
            free(out);
        }
        buffet_pkt_pool_destroy(pool);
    }
    tm_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Two threads on one packet's count: a clone handed over and freed there while the owner frees
   its own reference, or waits to write into the data once it is alone again (TSan checks every
   read and write of the counts, and of the data, is ordered). */

typedef struct tm_race {
    buffet_pkt_pool *pool;
    buffet_pkt *slot;        /* atomic: the packet handed over, NULL when empty */
    unsigned long rounds;
    unsigned long seen;      /* B: packets received whose bytes were right */
} tm_race;

static void *tm_race_b(void *arg) {
    tm_race *r = (tm_race *)arg;
    buffet_pkt_cache *c = NULL;
    unsigned long i;
    BT_CHECK(buffet_pkt_cache_create(&c, r->pool, 8) == BUFFET_OK);
    for (i = 0; i < r->rounds; i++) {
        buffet_pkt *q;
        unsigned spins = 0;
        while ((q = __atomic_load_n(&r->slot, __ATOMIC_ACQUIRE)) == NULL)
            if (++spins % 64 == 0) sched_yield();
        __atomic_store_n(&r->slot, (buffet_pkt *)NULL, __ATOMIC_RELAXED);
        if (q->len == 32 && ((unsigned char *)buffet_pkt_data(q))[0] == (unsigned char)i) r->seen++;
        if (i % 3 == 0) sched_yield();
        /* a clone, or (every 4th) a second reference to the owner itself */
        buffet_pkt_free(c, q);
    }
    buffet_pkt_cache_destroy(c);
    return NULL;
}

static void test_clone_free_race(void) {
    tm_env e;
    buffet_pkt_pool_desc d;
    tm_race r;
    pthread_t t;
    buffet_pkt_cache *c;
    unsigned long i, alone = 0;
    tm_begin(&e);
    tm_desc(&e, &d);
    memset(&r, 0, sizeof r);
    r.pool = tm_pool(&d);
    r.rounds = tm_scaled(5000);
    c = tm_cache(r.pool, 8);
    BT_CHECK(pthread_create(&t, NULL, tm_race_b, &r) == 0);
    for (i = 0; i < r.rounds; i++) {
        buffet_pkt *p = buffet_pkt_alloc(c, 32), *q;
        unsigned spins = 0;
        BT_CHECK(p != NULL);
        if (!p) break;
        memset(buffet_pkt_append(p, 32), (int)(unsigned char)i, 32);
        if (i % 4 == 3) {
            BT_CHECK(buffet_pkt_ref(p) == BUFFET_OK);
            q = p;
        } else {
            q = buffet_pkt_clone(c, p);
            BT_CHECK(q != NULL);
        }
        while (__atomic_load_n(&r.slot, __ATOMIC_ACQUIRE) != NULL)
            if (++spins % 64 == 0) sched_yield();
        __atomic_store_n(&r.slot, q, __ATOMIC_RELEASE);
        if (i % 2) {
            buffet_pkt_free(c, p);   /* races B's free of its reference */
        } else {
            /* wait until p is alone again, then write into its data (B may free at any time) */
            while (buffet_pkt_prepend(p, 1) == NULL) sched_yield();
            ((unsigned char *)buffet_pkt_data(p))[0] = 0xEE;
            alone++;
            buffet_pkt_free(c, p);
        }
    }
    pthread_join(t, NULL);
    BT_CHECK(r.seen == r.rounds && alone == (r.rounds + 1) / 2);
    buffet_pkt_cache_destroy(c);
    tm_all_back(r.pool);
    buffet_pkt_pool_destroy(r.pool);
    tm_end(&e);
}

int main(void) {
    BT_RUN(test_chain_cycles);
    BT_RUN(test_hand_made_cycle);
    BT_RUN(test_inconsistent_lengths);
    BT_RUN(test_header_copies);
    BT_RUN(test_foreign_pointers);
    BT_RUN(test_raw_bulk_misuse);
    BT_RUN(test_pool_limit);
    BT_RUN(test_use_after_free);
    BT_RUN(test_clone_across_pools);
    BT_RUN(test_linearize_across_pools);
    BT_RUN(test_tiny_classes);
    BT_RUN(test_numa_missing_node);
    BT_RUN(test_bulk_failures_counted);
    BT_RUN(test_stats_names_utf8);
    BT_RUN(test_clone_free_race);
    return bt_finish(TM_NAME);
}
