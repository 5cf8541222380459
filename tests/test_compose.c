/* test_compose.c - the seams between buffet's pieces, written the way a user's program would be:
   a buffer from a frame allocator that outlives its frame, a pool allocator's buffer dropped on
   another thread, a debug allocator over a frame arena, a packet pool destroyed while registered
   and while its packets sit in a chain, 65,535 clones of one packet, callbacks that call back in,
   the reason behind every failed allocation, leak reports that name the user's lines, frames in
   flight, sealed shared memory, aligned packet buffers, realloc over the heap, and the matrix of
   every allocator kind behind every object that stores one. Each of these crashed, raced or lied
   before the allocator contracts; each must now work or be refused with its documented error.
   tests/test_compose_debug.c runs the same file in a BUFFET_DEBUG build. C11 and C++17. */
#ifndef BUFFET_IMPLEMENTATION
#define BUFFET_IMPLEMENTATION
#endif
#include "../buffet_packet.h"
#include "../buffet_frame.h"
#include "bt.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef TC_NAME
#define TC_NAME "test_compose.c"
#endif

/* ---------------------------------------------------------------------------------------------
   Helpers */


static bool tc_all(const void *p, size_t n, unsigned char v) {
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++)
        if (b[i] != v) return false;
    return true;
}

/* The text a report wrote to a FILE*, read back. */
static char *tc_read_all(FILE *f) {
    long n;
    char *s;
    fflush(f);
    n = ftell(f);
    rewind(f);
    s = (char *)calloc(1, (size_t)n + 1);
    if (s && n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    return s;
}

/* Every "leak" line of a report names this file (the user's line), never buffet's or "?".
   *lines: the blocks the lines stand for (a debug allocator's line sums up one site's blocks). */
static bool tc_leaks_name_us(const char *report, int *lines) {
    const char *p = report;
    *lines = 0;
    while ((p = strstr(p, "leak: ")) != NULL) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line - 1 ? len : sizeof line - 1), p);
        if (!strstr(line, "test_compose") || strstr(line, "buffet.h") || strstr(line, "? in ?()")) {
            fprintf(stderr, "%s: a leak line that does not name the user's line: %s\n", TC_NAME, line);
            return false;
        }
        {
            const char *in = strstr(line, " bytes in ");
            int blocks = 1;
            if (in && sscanf(in, " bytes in %d block", &blocks) != 1) blocks = 1;
            *lines += blocks;
        }
        p += len;
    }
    return true;
}

/* Run fn(arg) on a thread; false when it has not finished within `seconds` (a deadlock). */
static bool tc_finishes(void *(*fn)(void *), void *arg, int seconds) {
    pthread_t t;
    struct timespec until;
    if (pthread_create(&t, NULL, fn, arg) != 0) return false;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    if (pthread_timedjoin_np(t, NULL, &until) != 0) {
        fprintf(stderr, "%s: a call did not return within %d s: deadlock\n", TC_NAME, seconds);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
   1. A buffer from a frame allocator, still referenced after its frame ends. Its block is pinned
   (as a transfer pins it): later frames' scratch cannot overwrite it, and the chunk goes back
   when the chain lets go, even after the arena itself is destroyed. */
static void test_frame_buffer_outlives_frame(void) {
    buffet_frame_arena *fa;
    buffet_chain c;
    buffet_buf *b;
    unsigned char out[256];
    int i, round;
    for (round = 0; round < 2; round++) {
        buffet_frame_desc fdesc;
        memset(&fdesc, 0, sizeof fdesc);
        fdesc.chunk_size = 4096;
        BT_CHECK(buffet_frame_create(&fa, &fdesc) == BUFFET_OK);
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        buffet_buf_desc bdesc;
        memset(&bdesc, 0, sizeof bdesc);
        bdesc.size = 256;
        bdesc.allocator = buffet_frame_allocator(fa);
        BT_CHECK(buffet_buf_create(&b, &bdesc) == BUFFET_OK);
        BT_CHECK(b->pin != NULL);
        memset(b->data, 0x5a, 256);
        BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_chain_append(&c, b, 0, 256) == BUFFET_OK);
        buffet_buf_unref(b);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        for (i = 0; i < 8; i++) {   /* later frames fill whole chunks with scratch */
            void *scratch;
            BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
            scratch = buffet_frame_alloc(fa, 3500, 16);
            BT_CHECK(scratch != NULL);
            if (scratch) memset(scratch, 0xee, 3500);
            BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        }
        BT_CHECK(buffet_chain_copy_out(&c, 0, out, sizeof out) == BUFFET_OK && tc_all(out, sizeof out, 0x5a));
        if (round == 1) buffet_frame_destroy(fa);   /* the arena goes first: the chain's release frees the chunk */
        buffet_chain_deinit(&c);
        if (round == 0) {
            buffet_frame_stats st;
            BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK && buffet_frame_end(fa) == BUFFET_OK);
            st = buffet_frame_get_stats(fa);
            BT_CHECK(st.transfers_sent >= 1);
            buffet_frame_destroy(fa);
        }
    }
}

/* 2. A buffer whose allocator is a pool cache's, dropped on another thread while the owner keeps
   allocating through the same allocator: the drop goes to the shared store (TSan: no race). */
typedef struct tc_hand { buffet_buf *bufs[256]; int n; } tc_hand;
static void *tc_unref_all(void *arg) {
    tc_hand *h = (tc_hand *)arg;
    int i;
    for (i = 0; i < h->n; i++) buffet_buf_unref(h->bufs[i]);
    return NULL;
}
static void test_pool_buffer_dropped_elsewhere(void) {
    buffet_pool *pool;
    buffet_pool_cache *cache;
    buffet_allocator a;
    buffet_pool_stats st;
    static tc_hand hand;
    buffet_buf *mine[256];
    pthread_t t;
    int i;
    buffet_pool_desc pdesc;
    memset(&pdesc, 0, sizeof pdesc);
    pdesc.obj_size = 512;
    pdesc.obj_align = 64;
    BT_CHECK(buffet_pool_create(&pool, &pdesc) == BUFFET_OK);
    BT_CHECK(buffet_pool_cache_create(&cache, pool, 64) == BUFFET_OK);
    a = buffet_pool_allocator(cache);
    BT_CHECK(buffet_allocator_contract(a) == (BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE));
    hand.n = 256;
    buffet_buf_desc bdesc1;
    memset(&bdesc1, 0, sizeof bdesc1);
    bdesc1.size = 100;
    bdesc1.allocator = a;
    for (i = 0; i < 256; i++) BT_CHECK(buffet_buf_create(&hand.bufs[i], &bdesc1) == BUFFET_OK);
    BT_CHECK(pthread_create(&t, NULL, tc_unref_all, &hand) == 0);
    for (i = 0; i < 256; i++) {   /* meanwhile the owner goes on through its cache */
        buffet_buf_desc bdesc2;
        memset(&bdesc2, 0, sizeof bdesc2);
        bdesc2.size = 100;
        bdesc2.allocator = a;
        BT_CHECK(buffet_buf_create(&mine[i], &bdesc2) == BUFFET_OK);
        buffet_buf_unref(mine[i]);
    }
    pthread_join(t, NULL);
    buffet_pool_cache_destroy(cache);
    st = buffet_pool_get_stats(pool);
    BT_CHECK(st.in_store == st.created && st.double_puts == 0);
    buffet_pool_destroy(pool);
}

/* 3. A debug allocator over a frame arena: its table lives in its bookkeeping allocator, and
   its blocks are pinned, so after a frame boundary it still reports the one leak, and its
   guard checks read live memory. */
static void test_debug_over_frame(void) {
    buffet_frame_arena *fa;
    buffet_debug *d;
    buffet_allocator a;
    void *leak, *freed;
    FILE *f = tmpfile();
    char *text;
    int i, lines = 0;
    BT_CHECK(f != NULL);
    buffet_frame_desc fdesc;
    memset(&fdesc, 0, sizeof fdesc);
    fdesc.chunk_size = 4096;
    BT_CHECK(buffet_frame_create(&fa, &fdesc) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    buffet_debug_desc ddesc;
    memset(&ddesc, 0, sizeof ddesc);
    ddesc.parent = buffet_frame_allocator(fa);
    BT_CHECK(buffet_debug_create(&d, &ddesc) == BUFFET_OK);
    a = buffet_debug_allocator(d);
    leak = BUFFET_ALLOC(a, 100);
    freed = BUFFET_ALLOC(a, 50);
    BT_CHECK(leak && freed);
    if (leak) memset(leak, 1, 100);
    BUFFET_FREE(a, freed, 50);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    for (i = 0; i < 4; i++) {
        void *scratch;
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        scratch = buffet_frame_alloc(fa, 3500, 16);
        if (scratch) memset(scratch, 0xee, 3500);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK);
    BT_CHECK(f && buffet_debug_report_leaks(d, f) == 1);
    text = f ? tc_read_all(f) : NULL;
    BT_CHECK(text && tc_leaks_name_us(text, &lines) && lines == 1);
    free(text);
    BUFFET_FREE(a, leak, 100);
    BT_CHECK(buffet_debug_report_leaks(d, NULL) == 0);
    buffet_debug_destroy(d);
    buffet_frame_destroy(fa);
    if (f) fclose(f);
}

/* 4. A packet pool destroyed while it is registered and while its packets are in a chain: it
   leaves the registry at once, the chain's bytes stay readable, and the pool goes when the
   chain lets go. Then the other order: the registry destroyed first. */
static void test_pkt_pool_destroyed_under_users(void) {
    buffet_registry *r;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    buffet_pkt *p;
    buffet_chain c;
    buffet_buf *b;
    char text[2048];
    unsigned char out[300];
    buffet_request net;
    memset(&net, 0, sizeof net);
    net.usage = BUFFET_USAGE_NETWORK;
    net.size = 300;
    BT_CHECK(buffet_registry_create(&r, NULL) == BUFFET_OK);
    buffet_pkt_pool_desc kdesc1;
    memset(&kdesc1, 0, sizeof kdesc1);
    kdesc1.name = "rx-compose";
    kdesc1.initial = 64;
    BT_CHECK(buffet_pkt_pool_create(&pool, &kdesc1) == BUFFET_OK);
    BT_CHECK(buffet_pkt_pool_register(pool, r) == BUFFET_OK);
    buffet_explain(r, &net, text, sizeof text);
    BT_CHECK(strstr(text, "chose 'rx-compose'") != NULL);
    BT_CHECK(buffet_pkt_cache_create(&cache, pool, 0) == BUFFET_OK);
    p = buffet_pkt_alloc(cache, 300);
    BT_CHECK(p != NULL);
    if (!p) return;
    memset(buffet_pkt_append(p, 300), 0x33, 300);
    BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
    BT_CHECK(buffet_pkt_to_chain(p, &c) == BUFFET_OK);
    buffet_pkt_free(cache, p);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);   /* deferred: the chain still holds a segment */
    buffet_explain(r, &net, text, sizeof text);
    BT_CHECK(strstr(text, "rx-compose") == NULL);   /* the scorer no longer sees it */
    BT_CHECK(buffet_registry_create_buf(r, &net, &b) == BUFFET_OK);   /* served by another provider */
    buffet_buf_unref(b);
    BT_CHECK(buffet_chain_copy_out(&c, 0, out, 300) == BUFFET_OK && tc_all(out, 300, 0x33));
    buffet_chain_deinit(&c);   /* the last buffer comes back: the pool is released here */
    buffet_registry_destroy(r);

    /* the other order: the registry goes first, and tells the pool */
    BT_CHECK(buffet_registry_create(&r, NULL) == BUFFET_OK);
    buffet_pkt_pool_desc kdesc2;
    memset(&kdesc2, 0, sizeof kdesc2);
    kdesc2.name = "rx-compose";
    kdesc2.initial = 64;
    BT_CHECK(buffet_pkt_pool_create(&pool, &kdesc2) == BUFFET_OK);
    BT_CHECK(buffet_pkt_pool_register(pool, r) == BUFFET_OK);
    buffet_registry_destroy(r);
    buffet_pkt_pool_destroy(pool);
}

/* 5. 65,535 references to one packet's data, then one clone more: refused, not wrapped; the
   original's free keeps the data while clones hold it, and a new allocation gets other bytes. */
static void test_pkt_clone_count_checked(void) {
    enum { N = 65534 };   /* clones that fit: the original holds the 65,535th reference */
    buffet_pkt_pool *pool;
    buffet_pkt_cache *cache;
    buffet_pkt *p, *q, *extra, **clones = (buffet_pkt **)calloc(N, sizeof *clones);
    buffet_chain c;
    int i, made = 0;
    BT_CHECK(clones != NULL);
    if (!clones) return;
    buffet_pkt_pool_desc kdesc;
    memset(&kdesc, 0, sizeof kdesc);
    kdesc.initial = 1024;
    kdesc.max = 16384;
    kdesc.grow = 4096;
    BT_CHECK(buffet_pkt_pool_create(&pool, &kdesc) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&cache, pool, 0) == BUFFET_OK);
    p = buffet_pkt_alloc(cache, 64);
    BT_CHECK(p != NULL);
    if (!p) return;
    memset(buffet_pkt_append(p, 64), 0x77, 64);
    for (i = 0; i < N; i++) {
        clones[i] = buffet_pkt_clone(cache, p);
        if (!clones[i]) break;
        made++;
    }
    BT_CHECK(made == N);
    extra = buffet_pkt_clone(cache, p);
    BT_CHECK(extra == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_pkt_ref(p) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
    BT_CHECK(buffet_pkt_to_chain(p, &c) == BUFFET_ERR_OVERFLOW && buffet_chain_len(&c) == 0);
    buffet_chain_deinit(&c);
    buffet_pkt_free(cache, p);   /* clones still hold the data */
    q = buffet_pkt_alloc(cache, 64);
    BT_CHECK(q != NULL && q != p);
    if (q) memset(buffet_pkt_append(q, 64), 0xcc, 64);
    BT_CHECK(made == 0 || tc_all(buffet_pkt_data(clones[0]), 64, 0x77));
    BT_CHECK(made == 0 || tc_all(buffet_pkt_data(clones[made - 1]), 64, 0x77));
    for (i = 0; i < made; i++) buffet_pkt_free(cache, clones[i]);
    buffet_pkt_free(cache, q);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);
    free(clones);
}

/* 6a. A soft-budget callback that reads the frame's statistics and allocates: it runs after the
   allocation is complete, so nothing is charged twice and no reservation leaks (a leak would
   turn into hard failures in later frames). */
typedef struct tc_soft { buffet_frame_arena *fa; int calls; size_t seen_bytes; } tc_soft;
static void tc_on_soft(void *user, const char *name, size_t used, size_t soft) {
    tc_soft *s = (tc_soft *)user;
    buffet_frame_stats st = buffet_frame_get_stats(s->fa);
    (void)name; (void)soft;
    s->calls++;
    s->seen_bytes = st.bytes;
    BT_CHECK(st.bytes >= used);
    BT_CHECK(buffet_frame_alloc(s->fa, 16, 8) != NULL);
}
static void test_soft_budget_callback_reenters(void) {
    buffet_frame_arena *fa;
    tc_soft s;
    int frame, i;
    memset(&s, 0, sizeof s);
    buffet_frame_desc fd;
    memset(&fd, 0, sizeof fd);
    fd.chunk_size = 8192;
    fd.budget.name = "frame";
    fd.budget.soft = 2000;
    fd.budget.hard = 6000;
    fd.budget.on_soft = tc_on_soft;
    fd.budget.user = &s;
    BT_CHECK(buffet_frame_create(&fa, &fd) == BUFFET_OK);
    s.fa = fa;
    for (frame = 0; frame < 50; frame++) {
        buffet_budget b;
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        for (i = 0; i < 100; i++) BT_CHECK(buffet_frame_alloc(fa, 48, 16) != NULL);   /* 4800 of 6000 bytes */
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        b = buffet_frame_get_budget(fa);
        BT_CHECK(b.reserved == 0);
        BT_CHECK(b.used <= 6000 && b.hard_failures == 0);
    }
    BT_CHECK(s.calls == 50 && s.seen_bytes > 2000);
    BT_CHECK(buffet_frame_get_stats(fa).hard_failures == 0);
    buffet_frame_destroy(fa);
}

/* 6b. A debug allocator's logger that reads the allocator's statistics: it is called after the
   lock is released, so it does not deadlock (and sees the counted error). */
static buffet_debug *tc_dbg;
static size_t tc_dbg_seen;
static void tc_dbg_log(void *user, buffet_log_level level, buffet_result code, const char *msg, const char *file, int line) {
    (void)user; (void)level; (void)code; (void)msg; (void)file; (void)line;
    tc_dbg_seen = buffet_debug_get_stats(tc_dbg).double_frees + buffet_debug_get_stats(tc_dbg).foreign_frees;
}
static void *tc_dbg_misuse(void *arg) {
    buffet_allocator a = buffet_debug_allocator(tc_dbg);
    void *p = BUFFET_ALLOC(a, 32);
    int stack;
    (void)arg;
    /* buffet_free_ex: gcc would see through the inline heap path of buffet_free and refuse to build */
    buffet_free_ex(a, p, 32, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
    buffet_free_ex(a, p, 32, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);        /* double free: logged */
    buffet_free_ex(a, &stack, 4, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);    /* foreign pointer: logged */
    return NULL;
}
static void test_debug_logger_reenters(void) {
    buffet_logger lg;
    lg.fn = tc_dbg_log;
    lg.user = NULL;
    buffet_debug_desc ddesc;
    memset(&ddesc, 0, sizeof ddesc);
    ddesc.log = lg;
    BT_CHECK(buffet_debug_create(&tc_dbg, &ddesc) == BUFFET_OK);
    BT_CHECK(tc_finishes(tc_dbg_misuse, NULL, 20));
    BT_CHECK(tc_dbg_seen == 2);
    buffet_debug_destroy(tc_dbg);
}

/* 6c. A registry provider whose score calls back into the registry (explain, add, remove of
   another provider): score runs outside the registry's lock. */
static buffet_registry *tc_reg;
static int tc_score_calls;
static int tc_reentrant_score(void *self, const buffet_request *q, char *why, size_t cap) {
    char text[512];
    (void)self; (void)q;
    if (tc_score_calls++ == 0) {
        buffet_request inner;
        memset(&inner, 0, sizeof inner);
        inner.size = 1;
        buffet_explain(tc_reg, &inner, text, sizeof text);
        BT_CHECK(buffet_registry_remove(tc_reg, "reentrant") == BUFFET_ERR_STATE);   /* itself: refused */
    }
    if (cap) snprintf(why, cap, "re-entrant");
    return 1;
}
/* Its create removes another provider of the same registry: a create holds only its own. */
static buffet_result tc_never_create(void *self, const buffet_request *q, buffet_buf **out) {
    (void)self; (void)q; (void)out;
    BT_CHECK(buffet_registry_remove(tc_reg, "victim") == BUFFET_OK);
    return BUFFET_ERR_UNSUPPORTED;
}
static void *tc_reg_explain(void *arg) {
    char text[1024];
    buffet_request q;
    (void)arg;
    memset(&q, 0, sizeof q);
    q.size = 64;
    buffet_explain(tc_reg, &q, text, sizeof text);
    return NULL;
}
static int tc_victim_score(void *self, const buffet_request *q, char *why, size_t cap) {
    (void)self; (void)q;
    if (cap) snprintf(why, cap, "victim");
    return 0;
}
static void *tc_reg_create(void *arg) {
    buffet_request q;
    buffet_buf *b;
    (void)arg;
    memset(&q, 0, sizeof q);
    q.size = 64;
    q.usage = BUFFET_USAGE_DEVICE_READ;   /* only the test's providers serve it */
    BT_CHECK(buffet_registry_create_buf(tc_reg, &q, &b) == BUFFET_ERR_UNSUPPORTED);
    return NULL;
}
static void test_registry_callbacks_reenter(void) {
    buffet_provider p, victim;
    char text[1024];
    buffet_request q;
    memset(&p, 0, sizeof p);
    p.name = "reentrant";
    p.score = tc_reentrant_score;
    p.create = tc_never_create;
    victim = p;
    victim.name = "victim";
    victim.score = tc_victim_score;
    BT_CHECK(buffet_registry_create(&tc_reg, NULL) == BUFFET_OK);
    BT_CHECK(buffet_registry_add(tc_reg, &p) == BUFFET_OK);
    BT_CHECK(buffet_registry_add(tc_reg, &victim) == BUFFET_OK);
    BT_CHECK(tc_finishes(tc_reg_explain, NULL, 20));
    BT_CHECK(tc_score_calls >= 2);
    BT_CHECK(tc_finishes(tc_reg_create, NULL, 20));   /* "reentrant" wins and removes "victim" */
    memset(&q, 0, sizeof q);
    q.size = 64;
    buffet_explain(tc_reg, &q, text, sizeof text);
    BT_CHECK(strstr(text, "victim") == NULL && strstr(text, "reentrant") != NULL);
    BT_CHECK(buffet_registry_remove(tc_reg, "reentrant") == BUFFET_OK);
    buffet_registry_destroy(tc_reg);
}

/* 7. Every failed allocation carries its real cause: no frame begun, a budget, a pool at its
   max, a request too big for a pool, plain out of memory; through buffet_alloc_ex and through
   the allocating functions of each header, and in their log lines. */
static void test_failure_reasons(void) {
    buffet_frame_arena *fa;
    buffet_pool *pool;
    buffet_pool_cache *cache;
    buffet_failing fail;
    buffet_debug *d;
    buffet_buf *b;
    buffet_chain c1, c2;
    bt_log lg;
    void *p;
    buffet_frame_desc fd;
    buffet_buf_desc bd;
    buffet_debug_desc dd;
    memset(&fd, 0, sizeof fd);
    fd.budget.hard = 1000;
    BT_CHECK(buffet_frame_create(&fa, &fd) == BUFFET_OK);
    BT_CHECK(buffet_alloc_ex(buffet_frame_allocator(fa), 64, 16, BUFFET_SITE, &p) == BUFFET_ERR_STATE && p == NULL);
    memset(&bd, 0, sizeof bd);
    bd.size = 64;
    bd.allocator = buffet_frame_allocator(fa);
    bd.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_create(&b, &bd) == BUFFET_ERR_STATE);
    BT_CHECK(lg.total == 1 && lg.last == BUFFET_ERR_STATE && strstr(lg.last_msg, "frame") != NULL);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_alloc_ex(buffet_frame_allocator(fa), 2000, 16, BUFFET_SITE, &p) == BUFFET_ERR_BUDGET);
    BT_CHECK(buffet_frame_alloc(fa, 2000, 16) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_BUDGET);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);

    buffet_pool_desc pdesc;
    memset(&pdesc, 0, sizeof pdesc);
    pdesc.obj_size = 256;
    pdesc.initial = 1;
    pdesc.max = 1;
    BT_CHECK(buffet_pool_create(&pool, &pdesc) == BUFFET_OK);
    BT_CHECK(buffet_pool_cache_create(&cache, pool, 0) == BUFFET_OK);
    BT_CHECK(buffet_alloc_ex(buffet_pool_allocator(cache), 1000, 16, BUFFET_SITE, &p) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_chain_init(&c1, buffet_pool_allocator(cache)) == BUFFET_OK);
    BT_CHECK(buffet_chain_init(&c2, buffet_pool_allocator(cache)) == BUFFET_OK);
    buffet_buf_desc bdesc;
    memset(&bdesc, 0, sizeof bdesc);
    bdesc.size = 10;
    BT_CHECK(buffet_buf_create(&b, &bdesc) == BUFFET_OK);
    BT_CHECK(buffet_chain_append(&c1, b, 0, 10) == BUFFET_OK);                 /* the pool's one object */
    BT_CHECK(buffet_chain_append(&c2, b, 0, 10) == BUFFET_ERR_EXHAUSTED);      /* none left */
    BT_CHECK(buffet_pool_get(cache) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    buffet_chain_deinit(&c1);
    buffet_chain_deinit(&c2);
    buffet_buf_unref(b);
    buffet_pool_cache_destroy(cache);
    buffet_pool_destroy(pool);

    buffet_failing_init(&fail, buffet_heap(), 1, true);
    memset(&dd, 0, sizeof dd);
    dd.parent = buffet_failing_allocator(&fail);
    dd.log = bt_logger(&lg);
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_OK);
    BT_CHECK(buffet_alloc_ex(buffet_debug_allocator(d), 64, 16, BUFFET_SITE, &p) == BUFFET_ERR_NOMEM);
    BT_CHECK(lg.last == BUFFET_ERR_NOMEM);
    buffet_debug_destroy(d);
    buffet_failing_deinit(&fail);
}

/* 8. Leak reports name the user's line for everything an allocating call made: chain arrays,
   buffer headers, registries, frame arenas, pools and their caches, packet pools and caches. */
static void test_leak_sites_name_the_user(void) {
    buffet_debug *d;
    buffet_allocator a;
    buffet_chain c;
    buffet_buf *b, *wrap;
    buffet_registry *r;
    buffet_frame_arena *fa;
    buffet_pool *pool;
    buffet_pool_cache *pc;
    buffet_pkt_pool *pp;
    buffet_pkt_cache *kc;
    static char memory[64];
    FILE *f = tmpfile();
    char *text;
    int lines = 0;
    size_t n;
    BT_CHECK(f != NULL && buffet_debug_create(&d, NULL) == BUFFET_OK);
    if (!f) return;
    a = buffet_debug_allocator(d);
    BT_CHECK(buffet_chain_init(&c, a) == BUFFET_OK);
    buffet_buf_desc bdesc;
    memset(&bdesc, 0, sizeof bdesc);
    bdesc.size = 32;
    bdesc.allocator = a;
    BT_CHECK(buffet_buf_create(&b, &bdesc) == BUFFET_OK);
    buffet_buf_desc wd;
    memset(&wd, 0, sizeof wd);
    wd.kind = BUFFET_BUF_WRAP;
    wd.size = sizeof memory;
    wd.wrap_data = memory;
    wd.allocator = a;
    BT_CHECK(buffet_buf_create(&wrap, &wd) == BUFFET_OK);
    BT_CHECK(buffet_chain_append(&c, b, 0, 32) == BUFFET_OK);
    buffet_registry_desc rdesc;
    memset(&rdesc, 0, sizeof rdesc);
    rdesc.allocator = a;
    BT_CHECK(buffet_registry_create(&r, &rdesc) == BUFFET_OK);
    buffet_frame_desc fdesc;
    memset(&fdesc, 0, sizeof fdesc);
    fdesc.parent = a;
    BT_CHECK(buffet_frame_create(&fa, &fdesc) == BUFFET_OK);
    buffet_pool_desc pdesc;
    memset(&pdesc, 0, sizeof pdesc);
    pdesc.obj_size = 64;
    pdesc.parent = a;
    BT_CHECK(buffet_pool_create(&pool, &pdesc) == BUFFET_OK);
    BT_CHECK(buffet_pool_cache_create(&pc, pool, 0) == BUFFET_OK);
    buffet_pkt_pool_desc kdesc;
    memset(&kdesc, 0, sizeof kdesc);
    kdesc.initial = 32;
    kdesc.allocator = a;
    BT_CHECK(buffet_pkt_pool_create(&pp, &kdesc) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&kc, pp, 0) == BUFFET_OK);
    n = buffet_debug_report_leaks(d, f);
    BT_CHECK(n >= 10);
    text = tc_read_all(f);
    BT_CHECK(text && tc_leaks_name_us(text, &lines) && (size_t)lines == n);
    free(text);
    buffet_pkt_cache_destroy(kc);
    buffet_pkt_pool_destroy(pp);
    buffet_pool_cache_destroy(pc);
    buffet_pool_destroy(pool);
    buffet_frame_destroy(fa);
    buffet_registry_destroy(r);
    buffet_chain_deinit(&c);
    buffet_buf_unref(b);
    buffet_buf_unref(wrap);
    BT_CHECK(buffet_debug_report_leaks(d, NULL) == 0);
    buffet_debug_destroy(d);
    fclose(f);
}

#if BUFFET_DEBUG >= 1
/* 8b. In a debug build, a packet pool's leak report names the user's line for a clone and for
   each packet of a bulk allocation. */
static void test_pkt_leak_sites_name_the_user(void) {
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *clone, *bulk[4];
    FILE *f = tmpfile();
    char *text, want_clone[64], want_bulk[64];
    int clone_line, bulk_line;
    BT_CHECK(f != NULL);
    if (!f) return;
    buffet_pkt_pool_desc kdesc;
    memset(&kdesc, 0, sizeof kdesc);
    kdesc.initial = 32;
    BT_CHECK(buffet_pkt_pool_create(&pool, &kdesc) == BUFFET_OK);
    BT_CHECK(buffet_pkt_cache_create(&c, pool, 0) == BUFFET_OK);
    p = buffet_pkt_alloc(c, 100);
    BT_CHECK(p != NULL);
    clone_line = __LINE__; clone = buffet_pkt_clone(c, p);
    bulk_line = __LINE__; BT_CHECK(buffet_pkt_alloc_bulk(c, 0, bulk, 4) == 4);
    BT_CHECK(clone != NULL);
    BT_CHECK(buffet_pkt_pool_report_leaks(pool, f) >= 6);
    text = tc_read_all(f);
    snprintf(want_clone, sizeof want_clone, "%s:%d", __FILE__, clone_line);
    snprintf(want_bulk, sizeof want_bulk, "%s:%d", __FILE__, bulk_line);
    BT_CHECK(text && strstr(text, want_clone) != NULL);
    BT_CHECK(text && strstr(text, want_bulk) != NULL);
    BT_CHECK(text && strstr(text, "in ?()") == NULL);
    free(text);
    buffet_pkt_free(c, clone);
    buffet_pkt_free(c, p);
    buffet_pkt_free_bulk(c, bulk, 4);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    fclose(f);
}
#endif

/* 9. Frames in flight: frame k's memory is intact until frame k+N begins, for N = 1, 2, 3, and
   released (reused) then. */
static void test_frames_in_flight(void) {
    uint32_t n;
    for (n = 1; n <= 3; n++) {
        buffet_frame_arena *fa;
        unsigned char *mine;
        uint32_t j;
        buffet_frame_desc fdesc;
        memset(&fdesc, 0, sizeof fdesc);
        fdesc.frames_in_flight = n;
        fdesc.chunk_size = 4096;
        BT_CHECK(buffet_frame_create(&fa, &fdesc) == BUFFET_OK);
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        mine = (unsigned char *)buffet_frame_alloc(fa, 1000, 16);
        BT_CHECK(mine != NULL);
        if (!mine) return;
        memset(mine, 0x42, 1000);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        for (j = 1; j < n; j++) {   /* frames k+1 .. k+N-1 run and end */
            unsigned char *other;
            BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
            other = (unsigned char *)buffet_frame_alloc(fa, 1000, 16);
            BT_CHECK(other != NULL && (other + 1000 <= mine || other >= mine + 1000));
            if (other) memset(other, 0x99, 1000);
            BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        }
        BT_CHECK(tc_all(mine, 1000, 0x42));   /* a renderer waiting on frame k's fence still reads it */
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);   /* frame k+N: frame k's chunk is free again */
#if BUFFET_TRACK_ASAN
        BT_CHECK(__asan_address_is_poisoned(mine));
#endif
        BT_CHECK(buffet_frame_alloc(fa, 1000, 16) == mine);   /* and reused first */
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        buffet_frame_destroy(fa);
    }
}

/* 10. Shared memory from another process: an fd its sender can still shrink is refused (a
   shrink would kill the reader with SIGBUS), with the file's name in the log; a sealed one, or
   an opt-in, is mapped. */
static void test_map_fd_checks_seals(void) {
    buffet_buf *b, *shm;
    bt_log lg;
    int fd = memfd_create("peer-frames", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    BT_CHECK(fd >= 0 && ftruncate(fd, 8192) == 0);
    buffet_buf_desc bdesc1;
    memset(&bdesc1, 0, sizeof bdesc1);
    bdesc1.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_map_fd(&b, fd, &bdesc1) == BUFFET_ERR_UNSAFE && b == NULL);
    BT_CHECK(lg.last == BUFFET_ERR_UNSAFE && strstr(lg.last_msg, "peer-frames") != NULL);
    buffet_buf_desc bdesc2;
    memset(&bdesc2, 0, sizeof bdesc2);
    bdesc2.flags = BUFFET_BUF_UNSEALED;
    BT_CHECK(buffet_buf_map_fd(&b, fd, &bdesc2) == BUFFET_OK && b->size == 8192);
    buffet_buf_unref(b);
    BT_CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    BT_CHECK(buffet_buf_map_fd(&b, fd, NULL) == BUFFET_OK);
    buffet_buf_unref(b);
    close(fd);
    buffet_buf_desc bdesc3;
    memset(&bdesc3, 0, sizeof bdesc3);
    bdesc3.kind = BUFFET_BUF_SHM;
    bdesc3.size = 4096;
    BT_CHECK(buffet_buf_create(&shm, &bdesc3) == BUFFET_OK);
    BT_CHECK(buffet_buf_map_fd(&b, shm->fd, NULL) == BUFFET_OK);   /* buffet's own are sealed */
    buffet_buf_unref(b);
    buffet_buf_unref(shm);
}

/* 11. A packet pool behind the registry keeps the alignment it promises, whatever its headroom. */
static void test_pkt_provider_alignment(void) {
    buffet_registry *r;
    buffet_pkt_pool *pool;
    buffet_buf *b;
    buffet_request q;
    size_t align;
    BT_CHECK(buffet_registry_create(&r, NULL) == BUFFET_OK);
    buffet_pkt_pool_desc kdesc;
    memset(&kdesc, 0, sizeof kdesc);
    kdesc.headroom = 100;
    kdesc.initial = 16;
    BT_CHECK(buffet_pkt_pool_create(&pool, &kdesc) == BUFFET_OK);
    BT_CHECK(buffet_pkt_pool_register(pool, r) == BUFFET_OK);
    for (align = 0; align <= 64; align = align ? align * 2 : 1) {
        memset(&q, 0, sizeof q);
        q.usage = BUFFET_USAGE_NETWORK;
        q.size = 1400;
        q.align = align;
        BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_OK);
        BT_CHECK(b && b->size == 1400 && (uintptr_t)b->data % (align ? align : 64) == 0);
        if (b) memset(b->data, 0x11, b->size);
        buffet_buf_unref(b);
    }
    buffet_pkt_pool_destroy(pool);
    buffet_registry_destroy(r);
}

/* 12. buffet_realloc over the heap is realloc(3): shrinking gives memory back, growing in small
   steps keeps the contents. The fixed allocator shrinks any block in place. */
static void test_realloc_over_heap_and_fixed(void) {
    buffet_allocator h = buffet_heap();
    buffet_fixed f;
    static unsigned char mem[4096];
    unsigned char *p = (unsigned char *)buffet_alloc(h, (size_t)1 << 20, 16, BUFFET_SITE), *q;
    size_t size, step = 4096, i;
    void *a, *b2;
    BT_CHECK(p != NULL);
    if (!p) return;
    memset(p, 7, 16);
    q = (unsigned char *)buffet_realloc(h, p, (size_t)1 << 20, 16, 16, BUFFET_SITE);
    BT_CHECK(q && tc_all(q, 16, 7) && malloc_usable_size(q) < 4096);
    buffet_free(h, q, 16, 16, BUFFET_SITE);
    p = (unsigned char *)buffet_alloc(h, step, 16, BUFFET_SITE);
    for (size = step; p && size < ((size_t)8 << 20); size += step) {
        p[size - step] = (unsigned char)(size / step);
        q = (unsigned char *)buffet_realloc(h, p, size, size + step, 16, BUFFET_SITE);
        BT_CHECK(q != NULL);
        if (!q) break;
        p = q;
    }
    for (i = 1; p && i < size / step; i++)
        if (p[(i - 1) * step] != (unsigned char)i) break;
    BT_CHECK(p && i == size / step);
    buffet_free(h, p, size, 16, BUFFET_SITE);

    buffet_fixed_desc xdesc;
    memset(&xdesc, 0, sizeof xdesc);
    xdesc.mem = mem;
    xdesc.cap = sizeof mem;
    BT_CHECK(buffet_fixed_init(&f, &xdesc) == BUFFET_OK);
    a = BUFFET_ALLOC(buffet_fixed_allocator(&f), 1000);
    b2 = BUFFET_ALLOC(buffet_fixed_allocator(&f), 1000);
    BT_CHECK(a && b2 && buffet_realloc(buffet_fixed_allocator(&f), a, 1000, 100, BUFFET_DEFAULT_ALIGN, BUFFET_SITE) == a);
    buffet_fixed_deinit(&f);
}

/* ---------------------------------------------------------------------------------------------
   13. The matrix: every allocator kind behind every object that stores an allocator. Each cell
   either works for real (created, used across a frame boundary where the row is a frame, torn
   down, leak-free) or is refused with its documented error. The expected table is the manual's
   (buffet.h, CONTRACTS). */
typedef struct tc_row {
    const char *name;
    buffet_allocator a;
    buffet_frame_arena *fa;         /* the frame row: crossed by tc_boundary */
    buffet_scope scope;
    buffet_fixed fixed;
    buffet_failing failing;
    buffet_adapter adapter;
    buffet_debug *debug;
    buffet_pool *pool;
    buffet_pool_cache *pool_cache;
    buffet_pkt_pool *pkt_pool;
    buffet_pkt_cache *pkt_cache;
} tc_row;

enum { TC_HEAP, TC_NULL, TC_DEBUG, TC_FIXED, TC_FAILING, TC_ADAPTER, TC_FRAME, TC_SCOPE, TC_POOL, TC_PKT, TC_ROWS };
static const char *const tc_row_names[TC_ROWS] = {
    "heap", "null", "debug", "fixed", "failing", "adapter", "frame", "scope", "pool cache", "packet cache"
};
static unsigned char tc_fixed_mem[1 << 20];

static void tc_row_make(tc_row *r, int kind) {
    memset(r, 0, sizeof *r);
    r->name = tc_row_names[kind];
    switch (kind) {
    case TC_HEAP: r->a = buffet_heap(); break;
    case TC_NULL: r->a = buffet_null_allocator(); break;
    case TC_DEBUG: {
        BT_CHECK(buffet_debug_create(&r->debug, NULL) == BUFFET_OK);
        r->a = buffet_debug_allocator(r->debug);
        break;
    }
    case TC_FIXED: {
        buffet_fixed_desc xdesc;
        memset(&xdesc, 0, sizeof xdesc);
        xdesc.mem = tc_fixed_mem;
        xdesc.cap = sizeof tc_fixed_mem;
        BT_CHECK(buffet_fixed_init(&r->fixed, &xdesc) == BUFFET_OK);
        r->a = buffet_fixed_allocator(&r->fixed);
        break;
    }
    case TC_FAILING: {
        buffet_failing_init(&r->failing, buffet_heap(), 0, false);
        r->a = buffet_failing_allocator(&r->failing);
        break;
    }
    case TC_ADAPTER: {
        BT_CHECK(buffet_adapter_init(&r->adapter, buffet_heap(), 16) == BUFFET_OK);
        r->a = buffet_adapter_allocator(&r->adapter);
        break;
    }
    case TC_FRAME: {
        buffet_frame_desc fdesc;
        memset(&fdesc, 0, sizeof fdesc);
        fdesc.chunk_size = 64 << 10;
        BT_CHECK(buffet_frame_create(&r->fa, &fdesc) == BUFFET_OK);
        BT_CHECK(buffet_frame_begin(r->fa) == BUFFET_OK);
        r->a = buffet_frame_allocator(r->fa);
        break;
    }
    case TC_SCOPE: {
        buffet_scope_desc sdesc;
        memset(&sdesc, 0, sizeof sdesc);
        sdesc.parent = buffet_heap();
        BT_CHECK(buffet_scope_begin(&r->scope, &sdesc) == BUFFET_OK);
        r->a = buffet_scope_allocator(&r->scope);
        break;
    }
    case TC_POOL: {
        buffet_pool_desc pdesc;
        memset(&pdesc, 0, sizeof pdesc);
        pdesc.obj_size = 512;
        pdesc.obj_align = 64;
        pdesc.max = 4096;
        BT_CHECK(buffet_pool_create(&r->pool, &pdesc) == BUFFET_OK);
        BT_CHECK(buffet_pool_cache_create(&r->pool_cache, r->pool, 0) == BUFFET_OK);
        r->a = buffet_pool_allocator(r->pool_cache);
        break;
    }
    default: {
        buffet_pkt_pool_desc kdesc;
        memset(&kdesc, 0, sizeof kdesc);
        kdesc.initial = 64;
        BT_CHECK(buffet_pkt_pool_create(&r->pkt_pool, &kdesc) == BUFFET_OK);
        BT_CHECK(buffet_pkt_cache_create(&r->pkt_cache, r->pkt_pool, 0) == BUFFET_OK);
        r->a = buffet_pkt_allocator(r->pkt_cache);
        break;
    }
    }
}

/* The frame row's frame ends and later frames scribble over whatever was not kept alive. */
static void tc_boundary(tc_row *r) {
    int i;
    if (!r->fa) return;
    BT_CHECK(buffet_frame_end(r->fa) == BUFFET_OK);
    for (i = 0; i < 3; i++) {
        void *s;
        BT_CHECK(buffet_frame_begin(r->fa) == BUFFET_OK);
        s = buffet_frame_alloc(r->fa, 60 << 10, 16);
        if (s) memset(s, 0xee, 60 << 10);
        BT_CHECK(buffet_frame_end(r->fa) == BUFFET_OK);
    }
    BT_CHECK(buffet_frame_begin(r->fa) == BUFFET_OK);
}

static void tc_row_free(tc_row *r) {
    if (r->debug) {
        BT_CHECK(buffet_debug_report_leaks(r->debug, NULL) == 0);
        buffet_debug_destroy(r->debug);
    }
    if (r->fa) {
        buffet_frame_end(r->fa);
        buffet_frame_destroy(r->fa);
    }
    if (r->scope.active) buffet_scope_end(&r->scope);
    if (r->pool_cache) buffet_pool_cache_destroy(r->pool_cache);
    if (r->pool) {
        BT_CHECK(buffet_pool_get_stats(r->pool).in_use == 0);
        buffet_pool_destroy(r->pool);
    }
    if (r->pkt_cache) buffet_pkt_cache_destroy(r->pkt_cache);
    if (r->pkt_pool) buffet_pkt_pool_destroy(r->pkt_pool);
    buffet_failing_deinit(&r->failing);
    buffet_adapter_deinit(&r->adapter);
    buffet_fixed_deinit(&r->fixed);
}

/* Each column: make the consumer over r->a, use it (across a frame boundary), tear it down.
   Returns: BUFFET_OK when it worked for real, the error it was refused with, or
   BUFFET_ERR_CORRUPT when it "worked" but lost data. */
static buffet_result tc_col_buffer(tc_row *r) {
    buffet_buf *b;
    unsigned char out[200];
    buffet_buf_desc bdesc;
    memset(&bdesc, 0, sizeof bdesc);
    bdesc.size = 200;
    bdesc.allocator = r->a;
    buffet_result res = buffet_buf_create(&b, &bdesc);
    if (res != BUFFET_OK) return res;
    memset(b->data, 0x61, 200);
    tc_boundary(r);
    res = buffet_buf_read(b, 0, out, 200) == BUFFET_OK && tc_all(out, 200, 0x61) ? BUFFET_OK : BUFFET_ERR_CORRUPT;
    buffet_buf_unref(b);
    return res;
}
static buffet_result tc_col_chain(tc_row *r) {
    buffet_chain c;
    buffet_buf *b;
    unsigned char out[10 * 16];
    int i;
    buffet_result res = buffet_chain_init(&c, r->a);
    if (res != BUFFET_OK) return res;
    buffet_buf_desc bdesc;
    memset(&bdesc, 0, sizeof bdesc);
    bdesc.size = 16 * 20;
    if (buffet_buf_create(&b, &bdesc) != BUFFET_OK) return BUFFET_ERR_NOMEM;
    memset(b->data, 0x62, 16 * 20);
    for (i = 0; i < 10 && res == BUFFET_OK; i++) res = buffet_chain_append(&c, b, (size_t)i * 32, 16);   /* 10 slices */
    buffet_buf_unref(b);
    if (res == BUFFET_OK) {
        tc_boundary(r);
        res = buffet_chain_copy_out(&c, 0, out, sizeof out) == BUFFET_OK && tc_all(out, sizeof out, 0x62) ? BUFFET_OK
                                                                                                     : BUFFET_ERR_CORRUPT;
    }
    buffet_chain_deinit(&c);
    return res;
}
static buffet_result tc_col_debug(tc_row *r) {
    buffet_debug *d;
    unsigned char *p;
    buffet_debug_desc ddesc;
    memset(&ddesc, 0, sizeof ddesc);
    ddesc.parent = r->a;
    ddesc.quarantine_count = SIZE_MAX;
    buffet_result res = buffet_debug_create(&d, &ddesc);
    if (res != BUFFET_OK) return res;
    res = buffet_alloc_ex(buffet_debug_allocator(d), 100, 16, BUFFET_SITE, (void **)&p);
    if (res == BUFFET_OK) {
        memset(p, 0x63, 100);
        tc_boundary(r);
        res = buffet_debug_check(d) == BUFFET_OK && tc_all(p, 100, 0x63) && buffet_debug_report_leaks(d, NULL) == 1
              ? BUFFET_OK : BUFFET_ERR_CORRUPT;
        BUFFET_FREE(buffet_debug_allocator(d), p, 100);
    }
    buffet_debug_destroy(d);
    return res;
}
static buffet_result tc_col_registry(tc_row *r) {
    buffet_registry *reg;
    buffet_buf *b;
    buffet_request q;
    buffet_registry_desc rdesc;
    memset(&rdesc, 0, sizeof rdesc);
    rdesc.allocator = r->a;
    buffet_result res = buffet_registry_create(&reg, &rdesc);
    if (res != BUFFET_OK) return res;
    tc_boundary(r);
    memset(&q, 0, sizeof q);
    q.size = 64;
    res = buffet_registry_create_buf(reg, &q, &b);
    if (res == BUFFET_OK) buffet_buf_unref(b);
    buffet_registry_destroy(reg);
    return res;
}
static buffet_result tc_col_frame(tc_row *r) {
    buffet_frame_arena *fa;
    void *p;
    int i;
    buffet_frame_desc fdesc;
    memset(&fdesc, 0, sizeof fdesc);
    fdesc.parent = r->a;
    fdesc.chunk_size = 4096;
    buffet_result res = buffet_frame_create(&fa, &fdesc);
    if (res != BUFFET_OK) return res;
    for (i = 0; i < 3 && res == BUFFET_OK; i++) {
        buffet_frame_begin(fa);
        res = buffet_alloc_ex(buffet_frame_allocator(fa), 3000, 16, BUFFET_SITE, &p);
        if (res == BUFFET_OK) memset(p, 0x64, 3000);
        buffet_frame_end(fa);
        tc_boundary(r);
    }
    buffet_frame_destroy(fa);
    return res;
}
static buffet_result tc_col_pool(tc_row *r) {
    buffet_pool *pool;
    buffet_pool_cache *c;
    void *objs[40];
    buffet_pool_desc pdesc;
    memset(&pdesc, 0, sizeof pdesc);
    pdesc.obj_size = 16;
    pdesc.slab_objs = 8;
    pdesc.parent = r->a;
    buffet_result res = buffet_pool_create(&pool, &pdesc);
    if (res != BUFFET_OK) return res;
    res = buffet_pool_cache_create(&c, pool, 16);
    if (res == BUFFET_OK) {
        size_t n = buffet_pool_get_bulk(c, objs, 40);   /* grows the pool: more slabs from r->a */
        if (n != 40) res = buffet_alloc_error(NULL);
        else buffet_pool_put_bulk(c, objs, 40);
        buffet_pool_cache_destroy(c);
    }
    buffet_pool_destroy(pool);
    return res;
}
static buffet_result tc_col_pkt_pool(tc_row *r) {
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p;
    buffet_pkt_pool_desc kdesc;
    memset(&kdesc, 0, sizeof kdesc);
    kdesc.initial = 16;
    kdesc.allocator = r->a;
    buffet_result res = buffet_pkt_pool_create(&pool, &kdesc);
    if (res != BUFFET_OK) return res;
    res = buffet_pkt_cache_create(&c, pool, 0);
    if (res == BUFFET_OK) {
        p = buffet_pkt_alloc(c, 100);
        if (!p) res = buffet_alloc_error(NULL);
        buffet_pkt_free(c, p);
        buffet_pkt_cache_destroy(c);
    }
    buffet_pkt_pool_destroy(pool);
    return res;
}
static buffet_result tc_col_scope(tc_row *r) {
    buffet_scope s;
    void *p;
    buffet_scope_desc sdesc;
    memset(&sdesc, 0, sizeof sdesc);
    sdesc.parent = r->a;
    buffet_result res = buffet_scope_begin(&s, &sdesc);
    if (res != BUFFET_OK) return res;
    p = buffet_scope_alloc(&s, 100, 16);
    res = p ? BUFFET_OK : buffet_alloc_error(NULL);
    buffet_scope_end(&s);
    return res;
}
static buffet_result tc_col_adapter(tc_row *r) {
    buffet_adapter ad;
    void *p;
    buffet_result res = buffet_adapter_init(&ad, r->a, 16);
    if (res != BUFFET_OK) return res;
    p = buffet_adapter_malloc(&ad, 100);
    res = p ? BUFFET_OK : buffet_alloc_error(NULL);
    buffet_adapter_free(&ad, p);
    buffet_adapter_deinit(&ad);
    return res;
}

enum { TC_COLS = 9 };
static buffet_result (*const tc_cols[TC_COLS])(tc_row *) = {
    tc_col_buffer, tc_col_chain, tc_col_debug, tc_col_registry, tc_col_frame, tc_col_pool, tc_col_pkt_pool,
    tc_col_scope, tc_col_adapter
};
static const char *const tc_col_names[TC_COLS] = {
    "buffer", "chain", "debug", "registry", "frame", "pool", "packet pool", "scope", "adapter"
};
#define OK BUFFET_OK
#define LIFE BUFFET_ERR_LIFETIME
#define THR BUFFET_ERR_THREAD
#define NOM BUFFET_ERR_NOMEM
#define BIG BUFFET_ERR_TOO_LARGE
/* The manual's table (buffet.h, CONTRACTS): rows are allocator kinds, columns the objects. */
static const buffet_result tc_expect[TC_ROWS][TC_COLS] = {
    /*               buffer chain debug registry frame pool  pkt pool scope adapter */
    /* heap      */ { OK,   OK,   OK,   OK,      OK,   OK,   OK,      OK,   OK },
    /* null      */ { NOM,  NOM,  NOM,  NOM,     NOM,  NOM,  NOM,     NOM,  NOM },
    /* debug     */ { OK,   OK,   OK,   OK,      OK,   OK,   OK,      OK,   OK },
    /* fixed     */ { THR,  OK,   OK,   OK,      OK,   THR,  THR,     OK,   OK },
    /* failing   */ { OK,   OK,   OK,   OK,      OK,   OK,   OK,      OK,   OK },
    /* adapter   */ { OK,   OK,   OK,   OK,      OK,   OK,   OK,      OK,   OK },
    /* frame     */ { OK,   OK,   OK,   OK,      LIFE, LIFE, LIFE,    LIFE, LIFE },
    /* scope     */ { LIFE, LIFE, LIFE, LIFE,    LIFE, LIFE, LIFE,    LIFE, LIFE },
    /* pool cache*/ { OK,   OK,   OK,   BIG,     BIG,  OK,   BIG,     OK,   OK },
    /* pkt cache */ { OK,   OK,   OK,   OK,      BIG,  OK,   BIG,     OK,   OK },
};
#undef OK
#undef LIFE
#undef THR
#undef NOM
#undef BIG

static const char *tc_short(buffet_result r) {
    switch (r) {
    case BUFFET_OK: return "works";
    case BUFFET_ERR_LIFETIME: return "LIFETIME";
    case BUFFET_ERR_THREAD: return "THREAD";
    case BUFFET_ERR_NOMEM: return "NOMEM";
    case BUFFET_ERR_TOO_LARGE: return "TOO_LARGE";
    default: return buffet_result_str(r);
    }
}

static void test_combination_matrix(void) {
    int i, j;
    printf("%-13s", "allocator");
    for (j = 0; j < TC_COLS; j++) printf(" | %-11s", tc_col_names[j]);
    printf("\n");
    for (i = 0; i < TC_ROWS; i++) {
        printf("%-13s", tc_row_names[i]);
        for (j = 0; j < TC_COLS; j++) {
            tc_row r;
            buffet_result got;
            tc_row_make(&r, i);
            got = tc_cols[j](&r);
            tc_row_free(&r);
            printf(" | %-11s", tc_short(got));
            if (got != tc_expect[i][j]) {
                bt_cur_failed++;
                fprintf(stderr, "\nFAIL %s: %s behind a %s: %s, expected %s\n", bt_cur, tc_row_names[i], tc_col_names[j],
                        buffet_result_str(got), buffet_result_str(tc_expect[i][j]));
            }
        }
        printf("\n");
    }
    fflush(stdout);
}

int main(void) {
    BT_RUN(test_frame_buffer_outlives_frame);
    BT_RUN(test_pool_buffer_dropped_elsewhere);
    BT_RUN(test_debug_over_frame);
    BT_RUN(test_pkt_pool_destroyed_under_users);
    BT_RUN(test_pkt_clone_count_checked);
    BT_RUN(test_soft_budget_callback_reenters);
    BT_RUN(test_debug_logger_reenters);
    BT_RUN(test_registry_callbacks_reenter);
    BT_RUN(test_failure_reasons);
    BT_RUN(test_leak_sites_name_the_user);
#if BUFFET_DEBUG >= 1
    BT_RUN(test_pkt_leak_sites_name_the_user);
#endif
    BT_RUN(test_frames_in_flight);
    BT_RUN(test_map_fd_checks_seals);
    BT_RUN(test_pkt_provider_alignment);
    BT_RUN(test_realloc_over_heap_and_fixed);
    BT_RUN(test_combination_matrix);
    return bt_finish(TC_NAME);
}
