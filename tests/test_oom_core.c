/* test_oom_core.c - the out-of-memory sweep of buffet.h: every public function that allocates
   (buffers made and mapped, chain append/prepend/concat/split, the registry and its buffers, the
   debug allocator and its table, the adapter's hooks, buffet_alloc/_ex/_array and
   buffet_realloc) is run over a buffet_failing allocator with its 1st, 2nd, 3rd ... attempt
   failing (alone, and with every later one too) until the call succeeds. Each failure must be a
   clean error (the allocator's reason: BUFFET_ERR_NOMEM), with no crash and no leak (a
   buffet_debug under the failing allocator counts every block), the object still usable or
   cleanly destroyable, and a chain or buffer exactly as it was before the failed call. Prints
   how many allocation points each function has. C11 and C++17. */
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"
#include "bt.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
   The sweep */

typedef struct oom_env {
    buffet_debug *dbg;         /* under the failing allocator: counts every block left behind */
    buffet_failing fail;
    buffet_allocator a;        /* the failing allocator: what the function under test gets */
    buffet_buf *buf, *other;
    buffet_chain c, t;
    buffet_registry *reg;
    buffet_debug *d2;
    buffet_adapter ad;
    void *p, *blocks[40];
    size_t size;
    int fd, released, logged;
    /* a chain as it was before the call */
    size_t len, count, tlen, tcount;
    uint32_t refs, other_refs;
    unsigned char bytes[2048], tbytes[2048];
} oom_env;

typedef struct oom_case {
    const char *name;
    void (*setup)(oom_env *e);                    /* allocates through e->a: nothing fails yet */
    buffet_result (*call)(oom_env *e);            /* the call under test */
    void (*check)(oom_env *e, buffet_result r);   /* as it was (r != OK) or right (OK); then used */
    void (*teardown)(oom_env *e);
} oom_case;

static void oom_log(void *user, buffet_log_level level, buffet_result code, const char *msg, const char *file, int line) {
    (void)level; (void)code; (void)msg; (void)file; (void)line;
    ((oom_env *)user)->logged++;
}
static buffet_logger oom_logger(oom_env *e) {
    buffet_logger lg;
    lg.fn = oom_log;
    lg.user = e;
    return lg;
}

static int oom_total_points;

/* Run case k with the n-th attempt failing (and every later one when after), n = 1, 2, ...
   until a run has no failure in it. Returns: the allocation points (-1: it went wrong). */
static int oom_sweep(const oom_case *k, bool after) {
    uint64_t n;
    for (n = 1; n <= 200; n++) {
        oom_env *e = (oom_env *)calloc(1, sizeof *e);
        buffet_debug_desc dd;
        buffet_debug_stats st;
        buffet_result r;
        bool injected;
        uint64_t failures;
        if (!e) return -1;
        memset(&dd, 0, sizeof dd);
        dd.log.fn = buffet_log_silent;
        if (buffet_debug_create(&e->dbg, &dd) != BUFFET_OK) { free(e); return -1; }
        buffet_failing_init(&e->fail, buffet_debug_allocator(e->dbg), 0, false);
        e->a = buffet_failing_allocator(&e->fail);
        e->fd = -1;
        if (k->setup) k->setup(e);
        e->fail.fail_at = e->fail.allocs + n;
        e->fail.fail_after = after;
        failures = e->fail.failures;
        r = k->call(e);
        injected = e->fail.failures > failures;
        e->fail.fail_at = 0;
        e->fail.fail_after = false;
        if (injected && r != BUFFET_OK) {
            if (r != BUFFET_ERR_NOMEM) fprintf(stderr, "  %s: attempt %d failed: %s\n", k->name, (int)n, buffet_result_str(r));
            BT_CHECK(r == BUFFET_ERR_NOMEM);   /* the failing allocator's reason, passed on */
        }
        if (!injected) BT_CHECK(r == BUFFET_OK);
        k->check(e, r);
        if (k->teardown) k->teardown(e);
        st = buffet_debug_get_stats(e->dbg);
        if (st.live_count) fprintf(stderr, "  %s: attempt %d failing: %zu blocks leaked\n", k->name, (int)n, st.live_count);
        BT_CHECK(st.live_count == 0 && st.double_frees + st.foreign_frees + st.mismatched_frees + st.corruptions == 0);
        buffet_debug_destroy(e->dbg);
        free(e);
        if (!injected) return (int)n - 1;
    }
    BT_CHECK(!"the call never succeeded");
    return -1;
}

static void oom_run(const oom_case *k) {
    int alone = oom_sweep(k, false), all = oom_sweep(k, true);
    printf("  %-34s %d allocation point%s (alone: %d)\n", k->name, all, all == 1 ? "" : "s", alone);
    BT_CHECK(alone == all);   /* a call makes the same attempts whether or not later ones fail */
    if (all > 0) oom_total_points += all;
}

/* ---------------------------------------------------------------------------------------------
   Helpers */

static buffet_buf *oom_heap_buf(size_t size, unsigned char v) {
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    memset(&d, 0, sizeof d);
    d.size = size;
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK && b);
    if (b) buffet_buf_fill(b, 0, size, v);
    return b;
}

/* A chain's length, slice count and bytes, to compare after a failed call. */
static void oom_snap(const buffet_chain *c, size_t *len, size_t *count, unsigned char *bytes) {
    *len = buffet_chain_len(c);
    *count = buffet_chain_count(c);
    BT_CHECK(*len <= 2048 && buffet_chain_copy_out(c, 0, bytes, *len) == BUFFET_OK);
}
static bool oom_same(const buffet_chain *c, size_t len, size_t count, const unsigned char *bytes) {
    unsigned char now[2048];
    return buffet_chain_len(c) == len && buffet_chain_count(c) == count &&
           buffet_chain_copy_out(c, 0, now, len) == BUFFET_OK && memcmp(now, bytes, len) == 0;
}
static void oom_snap_all(oom_env *e) {
    oom_snap(&e->c, &e->len, &e->count, e->bytes);
    oom_snap(&e->t, &e->tlen, &e->tcount, e->tbytes);
    e->refs = buffet_buf_refcount(e->buf);
    e->other_refs = buffet_buf_refcount(e->other);
}
static bool oom_same_all(const oom_env *e) {
    return oom_same(&e->c, e->len, e->count, e->bytes) && oom_same(&e->t, e->tlen, e->tcount, e->tbytes) &&
           buffet_buf_refcount(e->buf) == e->refs && buffet_buf_refcount(e->other) == e->other_refs;
}

/* Append slices of b (never contiguous, so each is a slice of its own) until the array is full:
   the next append must grow it. */
static void oom_fill_chain(buffet_chain *c, buffet_buf *b) {
    size_t off = 0;
    do {
        BT_CHECK(buffet_chain_append(c, b, off % 60, 1) == BUFFET_OK);
        off += 2;
    } while (c->head + c->count < c->cap && c->count < 100);
}

/* ---------------------------------------------------------------------------------------------
   Buffers */

static void oom_rel(void *user, void *data, size_t size) {
    (void)data; (void)size;
    ((oom_env *)user)->released++;
}

static buffet_result oom_buf_kind(oom_env *e, uint32_t kind) {
    buffet_buf_desc d;
    static unsigned char wrap[64];
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.size = 64;
    d.allocator = e->a;
    d.log = oom_logger(e);
    d.wrap_data = wrap;
    d.release = oom_rel;
    d.release_user = e;
    return buffet_buf_create(&e->buf, &d);
}
static buffet_result oom_call_buf_heap(oom_env *e) { return oom_buf_kind(e, BUFFET_BUF_HEAP); }
static buffet_result oom_call_buf_mmap(oom_env *e) { return oom_buf_kind(e, BUFFET_BUF_MMAP); }
static buffet_result oom_call_buf_shm(oom_env *e) { return oom_buf_kind(e, BUFFET_BUF_SHM); }
static buffet_result oom_call_buf_wrap(oom_env *e) { return oom_buf_kind(e, BUFFET_BUF_WRAP); }
static void oom_check_buf(oom_env *e, buffet_result r) {
    unsigned char x[64];
    if (r != BUFFET_OK) {
        BT_CHECK(e->buf == NULL && e->released == 0 && e->logged >= 1);   /* refused, said why; no release */
        return;
    }
    BT_CHECK(e->buf && buffet_buf_refcount(e->buf) == 1 && e->buf->size >= 64);
    BT_CHECK(buffet_buf_fill(e->buf, 0, 64, 3) == BUFFET_OK && buffet_buf_read(e->buf, 0, x, 64) == BUFFET_OK && x[63] == 3);
}
static void oom_down_buf(oom_env *e) {
    bool wrap = e->buf && e->buf->kind == BUFFET_BUF_WRAP;
    buffet_buf_unref(e->buf);
    if (wrap) BT_CHECK(e->released == 1);
}

static void oom_setup_map(oom_env *e) {
    e->fd = memfd_create("oom-map", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    BT_CHECK(e->fd >= 0 && ftruncate(e->fd, 8192) == 0 && fcntl(e->fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
}
static buffet_result oom_call_map(oom_env *e) {
    buffet_buf_desc d;
    memset(&d, 0, sizeof d);
    d.allocator = e->a;
    d.log = oom_logger(e);
    return buffet_buf_map_fd(&e->buf, e->fd, &d);
}
static void oom_check_map(oom_env *e, buffet_result r) {
    if (r != BUFFET_OK) {
        BT_CHECK(e->buf == NULL && e->logged >= 1);
        return;
    }
    BT_CHECK(e->buf && e->buf->size == 8192 && buffet_buf_fill(e->buf, 8000, 192, 1) == BUFFET_OK);
}
static void oom_down_map(oom_env *e) {
    buffet_buf_unref(e->buf);
    if (e->fd >= 0) close(e->fd);
}

/* ---------------------------------------------------------------------------------------------
   Chains (over the failing allocator; the buffers come from the heap) */

static void oom_setup_chain(oom_env *e) {
    e->buf = oom_heap_buf(64, 0x41);
    e->other = oom_heap_buf(64, 0x42);
    BT_CHECK(buffet_chain_init(&e->c, e->a) == BUFFET_OK && buffet_chain_init(&e->t, e->a) == BUFFET_OK);
}
static void oom_setup_chain_full(oom_env *e) {
    oom_setup_chain(e);
    oom_fill_chain(&e->c, e->buf);
    oom_snap_all(e);
}
static void oom_setup_chain_empty(oom_env *e) {
    oom_setup_chain(e);
    oom_snap_all(e);
}
static void oom_setup_concat(oom_env *e) {
    oom_setup_chain(e);
    oom_fill_chain(&e->c, e->buf);
    BT_CHECK(buffet_chain_append(&e->t, e->other, 0, 5) == BUFFET_OK && buffet_chain_append(&e->t, e->other, 10, 5) == BUFFET_OK);
    oom_snap_all(e);
}
static void oom_setup_split(oom_env *e) {
    oom_setup_chain(e);
    BT_CHECK(buffet_chain_append(&e->c, e->buf, 0, 10) == BUFFET_OK && buffet_chain_append(&e->c, e->other, 0, 10) == BUFFET_OK);
    BT_CHECK(buffet_chain_append(&e->c, e->buf, 20, 10) == BUFFET_OK);
    oom_fill_chain(&e->t, e->other);   /* the tail must grow to take the moved slices */
    oom_snap_all(e);
}
static buffet_result oom_call_append(oom_env *e) { return buffet_chain_append(&e->c, e->other, 40, 7); }
static buffet_result oom_call_prepend(oom_env *e) { return buffet_chain_prepend(&e->c, e->other, 40, 7); }
static buffet_result oom_call_concat(oom_env *e) { return buffet_chain_concat(&e->c, &e->t); }
static buffet_result oom_call_split(oom_env *e) { return buffet_chain_split(&e->c, 15, &e->t); }   /* inside a slice */

static void oom_check_chain(oom_env *e, buffet_result r) {
    if (r != BUFFET_OK) BT_CHECK(oom_same_all(e));   /* both chains and every reference as they were */
    /* usable: it grows again now that nothing fails */
    BT_CHECK(buffet_chain_append(&e->c, e->other, 50, 3) == BUFFET_OK && buffet_chain_prepend(&e->c, e->buf, 60, 2) == BUFFET_OK);
}
static void oom_check_add(oom_env *e, buffet_result r, bool front) {
    unsigned char x[2048];
    if (r == BUFFET_OK) {
        BT_CHECK(buffet_chain_len(&e->c) == e->len + 7 && buffet_buf_refcount(e->other) == e->other_refs + 1);
        BT_CHECK(buffet_chain_copy_out(&e->c, front ? 7 : 0, x, e->len) == BUFFET_OK && memcmp(x, e->bytes, e->len) == 0);
    }
    oom_check_chain(e, r);
}
static void oom_check_append(oom_env *e, buffet_result r) { oom_check_add(e, r, false); }
static void oom_check_prepend(oom_env *e, buffet_result r) { oom_check_add(e, r, true); }
/* concat: c holds its bytes then t's, t is empty */
static void oom_check_concat(oom_env *e, buffet_result r) {
    unsigned char x[4096];
    if (r == BUFFET_OK) {
        BT_CHECK(buffet_chain_len(&e->c) == e->len + e->tlen && buffet_chain_len(&e->t) == 0 && buffet_chain_count(&e->t) == 0);
        BT_CHECK(buffet_chain_copy_out(&e->c, 0, x, e->len + e->tlen) == BUFFET_OK);
        BT_CHECK(memcmp(x, e->bytes, e->len) == 0 && memcmp(x + e->len, e->tbytes, e->tlen) == 0);
        BT_CHECK(buffet_buf_refcount(e->other) == e->other_refs && buffet_buf_refcount(e->buf) == e->refs);
    }
    oom_check_chain(e, r);
}
/* split at 15: c keeps its first 15 bytes, t gets the rest after its own */
static void oom_check_split(oom_env *e, buffet_result r) {
    unsigned char x[4096];
    if (r == BUFFET_OK) {
        BT_CHECK(buffet_chain_len(&e->c) == 15 && buffet_chain_len(&e->t) == e->tlen + e->len - 15);
        BT_CHECK(buffet_chain_copy_out(&e->c, 0, x, 15) == BUFFET_OK && memcmp(x, e->bytes, 15) == 0);
        BT_CHECK(buffet_chain_copy_out(&e->t, 0, x, e->tlen + e->len - 15) == BUFFET_OK);
        BT_CHECK(memcmp(x, e->tbytes, e->tlen) == 0 && memcmp(x + e->tlen, e->bytes + 15, e->len - 15) == 0);
        BT_CHECK(buffet_buf_refcount(e->other) == e->other_refs + 1);   /* the straddling slice: one more */
    }
    oom_check_chain(e, r);
}
static void oom_down_chain(oom_env *e) {
    buffet_chain_deinit(&e->c);
    buffet_chain_deinit(&e->t);
    BT_CHECK(buffet_buf_unref(e->buf) == 0 && buffet_buf_unref(e->other) == 0);   /* no reference leaked */
}

/* ---------------------------------------------------------------------------------------------
   The registry */

static buffet_result oom_call_reg_create(oom_env *e) {
    buffet_registry_desc d;
    memset(&d, 0, sizeof d);
    d.allocator = e->a;
    d.log = oom_logger(e);
    return buffet_registry_create(&e->reg, &d);
}
static void oom_check_reg(oom_env *e, buffet_result r) {
    buffet_request q;
    buffet_buf *b = NULL;
    if (r != BUFFET_OK) {
        BT_CHECK(e->reg == NULL && e->logged >= 1);
        return;
    }
    memset(&q, 0, sizeof q);
    q.size = 32;
    BT_CHECK(buffet_registry_create_buf(e->reg, &q, &b) == BUFFET_OK && b);
    buffet_buf_unref(b);
}
static void oom_down_reg(oom_env *e) {
    buffet_buf_unref(e->buf);
    buffet_registry_destroy(e->reg);
}
static void oom_setup_reg(oom_env *e) {
    BT_CHECK(buffet_registry_create(&e->reg, NULL) == BUFFET_OK);
}
static buffet_result oom_reg_buf(oom_env *e, uint32_t usage, size_t size) {
    buffet_request q;
    memset(&q, 0, sizeof q);
    q.usage = usage;
    q.size = size;
    q.allocator = e->a;
    return buffet_registry_create_buf(e->reg, &q, &e->buf);
}
static buffet_result oom_call_reg_heap(oom_env *e) { return oom_reg_buf(e, 0, 100); }
static buffet_result oom_call_reg_mmap(oom_env *e) { return oom_reg_buf(e, 0, (size_t)1 << 20); }
static buffet_result oom_call_reg_shm(oom_env *e) { return oom_reg_buf(e, BUFFET_USAGE_SHARE_PROCESS, 100); }
static void oom_check_reg_buf(oom_env *e, buffet_result r) {
    if (r != BUFFET_OK) {
        BT_CHECK(e->buf == NULL);
        return;
    }
    BT_CHECK(e->buf && buffet_buf_fill(e->buf, 0, e->buf->size, 1) == BUFFET_OK);
}

/* ---------------------------------------------------------------------------------------------
   The debug allocator: its creation, and its table growing inside an allocation */

static buffet_result oom_call_dbg_create(oom_env *e) {
    buffet_debug_desc d;
    memset(&d, 0, sizeof d);
    d.parent = e->a;
    d.bookkeeping = e->a;
    d.log = oom_logger(e);
    return buffet_debug_create(&e->d2, &d);
}
static void oom_check_dbg(oom_env *e, buffet_result r) {
    void *p;
    if (r != BUFFET_OK) {
        BT_CHECK(e->d2 == NULL && e->logged >= 1);
        return;
    }
    p = buffet_alloc(buffet_debug_allocator(e->d2), 10, 8, BUFFET_SITE);
    BT_CHECK(p != NULL);
    buffet_free(buffet_debug_allocator(e->d2), p, 10, 8, BUFFET_SITE);
}
static void oom_down_dbg(oom_env *e) {
    size_t i;
    if (!e->d2) return;
    for (i = 0; i < 40; i++)
        if (e->blocks[i]) buffet_free(buffet_debug_allocator(e->d2), e->blocks[i], 24, 8, BUFFET_SITE);
    BT_CHECK(buffet_debug_get_stats(e->d2).live_count == 0);
    buffet_debug_destroy(e->d2);
}
/* 32 blocks fill the table to half: the 33rd allocation must grow it, through bookkeeping */
static void oom_setup_dbg_table(oom_env *e) {
    buffet_debug_desc d;
    size_t i;
    memset(&d, 0, sizeof d);
    d.bookkeeping = e->a;
    d.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&e->d2, &d) == BUFFET_OK);
    for (i = 0; i < 32 && e->d2; i++) e->blocks[i] = buffet_alloc(buffet_debug_allocator(e->d2), 24, 8, BUFFET_SITE);
}
static buffet_result oom_call_dbg_table(oom_env *e) {
    return buffet_alloc_ex(buffet_debug_allocator(e->d2), 24, 8, BUFFET_SITE, &e->blocks[32]);
}
static void oom_check_dbg_table(oom_env *e, buffet_result r) {
    buffet_debug_stats st = buffet_debug_get_stats(e->d2);
    size_t i;
    BT_CHECK(st.live_count == (r == BUFFET_OK ? 33u : 32u) && st.failed_allocs == (r == BUFFET_OK ? 0u : 1u));
    for (i = 33; i < 40; i++) BT_CHECK((e->blocks[i] = buffet_alloc(buffet_debug_allocator(e->d2), 24, 8, BUFFET_SITE)) != NULL);
    BT_CHECK(buffet_debug_check(e->d2) == BUFFET_OK);
}
/* a debug allocator's block from a failing parent */
static void oom_setup_dbg_parent(oom_env *e) {
    buffet_debug_desc d;
    memset(&d, 0, sizeof d);
    d.parent = e->a;
    d.log.fn = buffet_log_silent;
    BT_CHECK(buffet_debug_create(&e->d2, &d) == BUFFET_OK);
}
static buffet_result oom_call_dbg_parent(oom_env *e) {
    return buffet_alloc_ex(buffet_debug_allocator(e->d2), 24, 8, BUFFET_SITE, &e->blocks[0]);
}
static void oom_check_dbg_parent(oom_env *e, buffet_result r) {
    buffet_debug_stats st = buffet_debug_get_stats(e->d2);
    BT_CHECK(st.live_count == (r == BUFFET_OK ? 1u : 0u) && st.failed_allocs == (r == BUFFET_OK ? 0u : 1u));
    if (r != BUFFET_OK) BT_CHECK(e->blocks[0] == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
}

/* ---------------------------------------------------------------------------------------------
   The adapter's hooks, and the allocator calls themselves */

static void oom_setup_ad(oom_env *e) {
    BT_CHECK(buffet_adapter_init(&e->ad, e->a, 0) == BUFFET_OK);
}
static void oom_setup_ad_block(oom_env *e) {
    oom_setup_ad(e);
    e->p = buffet_adapter_malloc(&e->ad, 100);
    BT_CHECK(e->p != NULL);
    if (e->p) memset(e->p, 0x5C, 100);
    e->size = 100;
}
static buffet_result oom_ptr(oom_env *e, void *p, size_t size) {
    if (!p) return buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_STATE;
    e->p = p;
    e->size = size;
    return BUFFET_OK;
}
static buffet_result oom_call_ad_malloc(oom_env *e) { return oom_ptr(e, buffet_adapter_malloc(&e->ad, 300), 300); }
static buffet_result oom_call_ad_calloc(oom_env *e) { return oom_ptr(e, buffet_adapter_calloc(&e->ad, 30, 10), 300); }
static buffet_result oom_call_ad_zalloc(oom_env *e) { return oom_ptr(e, buffet_adapter_zalloc(&e->ad, 30, 10), 300); }
static buffet_result oom_call_ad_realloc_null(oom_env *e) { return oom_ptr(e, buffet_adapter_realloc(&e->ad, NULL, 300), 300); }
static buffet_result oom_call_ad_face(oom_env *e) {
    return oom_ptr(e, buffet_alloc(buffet_adapter_allocator(&e->ad), 300, 64, BUFFET_SITE), 300);
}
static buffet_result oom_call_ad_grow(oom_env *e) {
    void *p = buffet_adapter_realloc(&e->ad, e->p, 5000);
    return p ? oom_ptr(e, p, 5000) : BUFFET_ERR_NOMEM;
}
static buffet_result oom_call_ad_shrink(oom_env *e) {
    void *p = buffet_adapter_realloc(&e->ad, e->p, 10);
    return p ? oom_ptr(e, p, 10) : BUFFET_ERR_NOMEM;
}
static void oom_check_ad(oom_env *e, buffet_result r) {
    unsigned char *p = (unsigned char *)e->p;
    size_t keep = e->size < 100 ? e->size : 100, i;
    if (!p) {
        BT_CHECK(r != BUFFET_OK);
        return;
    }
    BT_CHECK(buffet_adapter_size(p) == e->size);
    if (r != BUFFET_OK || e->size != 300) {   /* a block from setup: kept whole, or its prefix moved */
        for (i = 0; i < keep; i++) BT_CHECK(p[i] == 0x5C);
    }
    memset(p, 1, e->size);
}
static void oom_down_ad(oom_env *e) {
    buffet_adapter_free(&e->ad, e->p);
    buffet_adapter_deinit(&e->ad);
}

static buffet_result oom_call_alloc(oom_env *e) { return oom_ptr(e, buffet_alloc(e->a, 300, 16, BUFFET_SITE), 300); }
static buffet_result oom_call_alloc_ex(oom_env *e) {
    buffet_result r = buffet_alloc_ex(e->a, 300, 4096, BUFFET_SITE, &e->p);
    if (r == BUFFET_OK) BT_CHECK(e->p && ((uintptr_t)e->p & 4095) == 0);
    e->size = 300;
    return r;
}
static buffet_result oom_call_alloc_array(oom_env *e) { return oom_ptr(e, buffet_alloc_array(e->a, 30, 10, 16, BUFFET_SITE), 300); }
static void oom_setup_block(oom_env *e) {
    e->p = buffet_alloc(e->a, 100, 16, BUFFET_SITE);
    BT_CHECK(e->p != NULL);
    if (e->p) memset(e->p, 0x5C, 100);
    e->size = 100;
}
static buffet_result oom_call_realloc_grow(oom_env *e) {
    void *p = buffet_realloc(e->a, e->p, e->size, 5000, 16, BUFFET_SITE);
    return p ? oom_ptr(e, p, 5000) : buffet_alloc_error(NULL);
}
static buffet_result oom_call_realloc_shrink(oom_env *e) {
    void *p = buffet_realloc(e->a, e->p, e->size, 10, 16, BUFFET_SITE);
    return p ? oom_ptr(e, p, 10) : buffet_alloc_error(NULL);
}
static buffet_result oom_call_realloc_null(oom_env *e) {
    void *p = buffet_realloc(e->a, NULL, 0, 300, 16, BUFFET_SITE);
    return p ? oom_ptr(e, p, 300) : buffet_alloc_error(NULL);
}
static void oom_check_block(oom_env *e, buffet_result r) {
    unsigned char *p = (unsigned char *)e->p;
    size_t i, keep = e->size < 100 ? e->size : 100;
    if (!p) {
        BT_CHECK(r != BUFFET_OK);
        return;
    }
    if (e->size != 300) for (i = 0; i < keep; i++) BT_CHECK(p[i] == 0x5C);   /* kept, or moved whole */
    memset(p, 1, e->size);
}
static void oom_down_block(oom_env *e) {
    if (e->p) buffet_free(e->a, e->p, e->size, 16, BUFFET_SITE);
}
static void oom_down_block_4096(oom_env *e) {
    if (e->p) buffet_free(e->a, e->p, 300, 4096, BUFFET_SITE);
}

/* ---------------------------------------------------------------------------------------------
   The table of cases */

static const oom_case oom_cases[] = {
    {"buffet_buf_create (HEAP)", NULL, oom_call_buf_heap, oom_check_buf, oom_down_buf},
    {"buffet_buf_create (MMAP)", NULL, oom_call_buf_mmap, oom_check_buf, oom_down_buf},
    {"buffet_buf_create (SHM)", NULL, oom_call_buf_shm, oom_check_buf, oom_down_buf},
    {"buffet_buf_create (WRAP)", NULL, oom_call_buf_wrap, oom_check_buf, oom_down_buf},
    {"buffet_buf_map_fd", oom_setup_map, oom_call_map, oom_check_map, oom_down_map},
    {"buffet_chain_append (empty)", oom_setup_chain_empty, oom_call_append, oom_check_append, oom_down_chain},
    {"buffet_chain_append (full)", oom_setup_chain_full, oom_call_append, oom_check_append, oom_down_chain},
    {"buffet_chain_prepend (empty)", oom_setup_chain_empty, oom_call_prepend, oom_check_prepend, oom_down_chain},
    {"buffet_chain_prepend (full)", oom_setup_chain_full, oom_call_prepend, oom_check_prepend, oom_down_chain},
    {"buffet_chain_concat", oom_setup_concat, oom_call_concat, oom_check_concat, oom_down_chain},
    {"buffet_chain_split", oom_setup_split, oom_call_split, oom_check_split, oom_down_chain},
    {"buffet_registry_create", NULL, oom_call_reg_create, oom_check_reg, oom_down_reg},
    {"buffet_registry_create_buf (heap)", oom_setup_reg, oom_call_reg_heap, oom_check_reg_buf, oom_down_reg},
    {"buffet_registry_create_buf (mmap)", oom_setup_reg, oom_call_reg_mmap, oom_check_reg_buf, oom_down_reg},
    {"buffet_registry_create_buf (shm)", oom_setup_reg, oom_call_reg_shm, oom_check_reg_buf, oom_down_reg},
    {"buffet_debug_create", NULL, oom_call_dbg_create, oom_check_dbg, oom_down_dbg},
    {"debug alloc (table grows)", oom_setup_dbg_table, oom_call_dbg_table, oom_check_dbg_table, oom_down_dbg},
    {"debug alloc (parent)", oom_setup_dbg_parent, oom_call_dbg_parent, oom_check_dbg_parent, oom_down_dbg},
    {"buffet_adapter_malloc", oom_setup_ad, oom_call_ad_malloc, oom_check_ad, oom_down_ad},
    {"buffet_adapter_calloc", oom_setup_ad, oom_call_ad_calloc, oom_check_ad, oom_down_ad},
    {"buffet_adapter_zalloc", oom_setup_ad, oom_call_ad_zalloc, oom_check_ad, oom_down_ad},
    {"buffet_adapter_realloc (NULL)", oom_setup_ad, oom_call_ad_realloc_null, oom_check_ad, oom_down_ad},
    {"buffet_adapter_realloc (grow)", oom_setup_ad_block, oom_call_ad_grow, oom_check_ad, oom_down_ad},
    {"buffet_adapter_realloc (shrink)", oom_setup_ad_block, oom_call_ad_shrink, oom_check_ad, oom_down_ad},
    {"adapter allocator face", oom_setup_ad, oom_call_ad_face, oom_check_ad, oom_down_ad},
    {"buffet_alloc", NULL, oom_call_alloc, oom_check_block, oom_down_block},
    {"buffet_alloc_ex (align 4096)", NULL, oom_call_alloc_ex, oom_check_block, oom_down_block_4096},
    {"buffet_alloc_array", NULL, oom_call_alloc_array, oom_check_block, oom_down_block},
    {"buffet_realloc (NULL)", NULL, oom_call_realloc_null, oom_check_block, oom_down_block},
    {"buffet_realloc (grow)", oom_setup_block, oom_call_realloc_grow, oom_check_block, oom_down_block},
    {"buffet_realloc (shrink)", oom_setup_block, oom_call_realloc_shrink, oom_check_block, oom_down_block},
};

static void test_oom_sweep(void) {
    size_t i;
    printf("out-of-memory sweep of buffet.h (attempt n fails, alone and with all after it):\n");
    for (i = 0; i < sizeof oom_cases / sizeof oom_cases[0]; i++) oom_run(&oom_cases[i]);
    printf("  %d allocation points in %d functions\n", oom_total_points, (int)(sizeof oom_cases / sizeof oom_cases[0]));
}

int main(void) {
    BT_RUN(test_oom_sweep);
    return bt_finish("test_oom_core.c");
}
