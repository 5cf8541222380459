/* test_packet_debug.c - the tests of buffet_packet.h in a debug build (BUFFET_DEBUG 1): every test
   of test_packet.c (included below), then what only a debug build does: a double free caught at
   the second free and named by its site and the site that took the buffer, foreign pointers
   (a header on the stack, a header inside another buffer, a buffer of another pool), cookies
   around every buffer checked at free, the per-buffer history, and leak reports naming the line
   that took each buffer. Compiled as C11 and as C++17 (common subset). */
#define BUFFET_IMPLEMENTATION
#define BUFFET_DEBUG 1
#include "../buffet_packet.h"
#include "bt.h"

#define TP_DEBUG_TESTS 1
#include "test_packet.c"

/* "file:line" of a line of this file, as a site names it. */
static void tp_site(char *out, size_t cap, int line) { snprintf(out, cap, "%s:%d", __FILE__, line); }

static void test_debug_double_free_site(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    char taken[256], second[256];
    int taken_line, second_line;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    taken_line = __LINE__; p = buffet_pkt_alloc(c, 100);
    BT_CHECK(p != NULL);
    buffet_pkt_free(c, p);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 0);
    second_line = __LINE__; buffet_pkt_free(c, p);
    /* caught at this very free */
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 1 && e.log.last == BUFFET_ERR_DOUBLE_FREE);
    tp_site(taken, sizeof taken, taken_line);
    tp_site(second, sizeof second, second_line);
    BT_CHECK(strstr(e.log.last_msg, second) != NULL);                        /* where it happened */
    BT_CHECK(strstr(e.log.last_msg, "test_debug_double_free_site") != NULL);
    BT_CHECK(strstr(e.log.last_msg, taken) != NULL);                         /* who had taken it */
    if (!strstr(e.log.last_msg, second) || !strstr(e.log.last_msg, taken))
        fprintf(stderr, "message: %s\nwanted %s and %s\n", e.log.last_msg, second, taken);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).double_frees == 1);
    /* a clone's header, and a segment of a chain */
    p = buffet_pkt_alloc(c, 10);
    q = buffet_pkt_clone(c, p);
    buffet_pkt_free(c, q);
    second_line = __LINE__; buffet_pkt_free(c, q);
    tp_site(second, sizeof second, second_line);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 2 && strstr(e.log.last_msg, second) != NULL);
    BT_CHECK(p && p->refcnt == 1);
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).double_frees == 2);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

static void test_debug_foreign(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool, *other;
    buffet_pkt_cache *c;
    buffet_pkt *p, *inner, *ob;
    buffet_pkt fake = BT_ZERO;
    buffet_pkt_stats s;
    uint64_t foreign;
    FILE *f;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    d.name = "other";
    other = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 10);
    BT_CHECK(p != NULL);
    if (p && other) {
        /* a header on the stack that looks like one of the pool's */
        memcpy(&fake, p, sizeof fake);
        buffet_pkt_free(c, &fake);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 1 && e.log.last == BUFFET_ERR_FOREIGN);
        BT_CHECK(strstr(e.log.last_msg, "test_debug_foreign") != NULL);   /* the site */
        BT_CHECK(buffet_pkt_pool_get_stats(pool).foreign_frees == 1);
        buffet_pkt_free_shared(&fake);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 2);
        f = tmpfile();
        if (f) {
            BT_CHECK(buffet_pkt_history_dump(&fake, f) == 0);
            fclose(f);
        }
        /* a header inside another buffer's data room: in the pool's memory, not at a buffer */
        foreign = buffet_pkt_pool_get_stats(pool).foreign_frees;
        inner = (buffet_pkt *)p->buf;
        memcpy(inner, p, sizeof *inner);
        buffet_pkt_free(c, inner);
        BT_CHECK(buffet_pkt_pool_get_stats(pool).foreign_frees == foreign + 1);
        /* a buffer of another pool whose header says it is this pool's */
        ob = buffet_pkt_alloc_shared(other, 10);
        BT_CHECK(ob != NULL);
        if (ob) {
            ob->pool = pool;
            buffet_pkt_free(c, ob);
            BT_CHECK(buffet_pkt_pool_get_stats(pool).foreign_frees == foreign + 2);
            ob->pool = other;
            BT_CHECK(ob->refcnt == 1);   /* untouched */
            /* honestly labelled, it goes home through any cache */
            buffet_pkt_free(c, ob);
            s = buffet_pkt_pool_get_stats(other);
            BT_CHECK(s.cls[0].frees == 1 && s.cls[0].in_use == 0 && s.foreign_frees == 0);
        }
        BT_CHECK(p->refcnt == 1);   /* none of it touched the real buffer */
    }
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    tp_all_back(other);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).double_frees == 0);
    buffet_pkt_pool_destroy(other);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Cookies around every buffer: an overrun of the data room (or an underrun into the line before
   the header) is reported when the buffer is freed. */
static void test_debug_cookies(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    unsigned char saved;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 500);
    BT_CHECK(p && tp_put(p, 512, 1));   /* the whole data room: fine */
    buffet_pkt_free(c, p);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_CORRUPT) == 0 && buffet_pkt_pool_get_stats(pool).corruptions == 0);
    p = buffet_pkt_alloc(c, 500);
    if (p) {
        saved = p->buf[p->buf_len];    /* the byte just past the data room */
        p->buf[p->buf_len] = (unsigned char)~saved;
        buffet_pkt_free(c, p);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_CORRUPT) == 1 && e.log.last == BUFFET_ERR_CORRUPT);
        BT_CHECK(strstr(e.log.last_msg, "back") != NULL);
        BT_CHECK(buffet_pkt_pool_get_stats(pool).corruptions == 1);
        p->buf[p->buf_len] = saved;
        q = buffet_pkt_alloc(c, 500);   /* repaired: clean again */
        BT_CHECK(q == p);
        buffet_pkt_free(c, q);
        BT_CHECK(buffet_pkt_pool_get_stats(pool).corruptions == 1);
    }
    p = buffet_pkt_alloc(c, 10);
    if (p) {
        unsigned char *before = (unsigned char *)p - 1;   /* the last byte of the line before */
        saved = *before;
        *before = (unsigned char)~saved;
        buffet_pkt_free(c, p);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_CORRUPT) == 2 && strstr(e.log.last_msg, "front") != NULL);
        *before = saved;
    }
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).corruptions == 2);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* The first " <op> at " of a history dump at or after `from` (NULL: the start), or NULL. */
static const char *tp_hist_find(const char *text, const char *op, const char *from) {
    char key[64];
    snprintf(key, sizeof key, " %s at ", op);
    return strstr(from ? from : text, key);
}

/* The history lists the last operations on a buffer in order, each with its site. */
static void test_debug_history(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    FILE *f;
    char text[4096], site[256];
    const char *at;
    int alloc_line, free_line;
    size_t i;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    f = tmpfile();
    BT_CHECK(f != NULL);
    alloc_line = __LINE__; p = buffet_pkt_alloc(c, 10);
    BT_CHECK(p != NULL);
    if (p && f) {
        q = buffet_pkt_clone(c, p);
        BT_CHECK(q && buffet_pkt_ref(p) == BUFFET_OK);
        buffet_pkt_free(c, q);
        buffet_pkt_free(c, p);
        free_line = __LINE__; buffet_pkt_free(c, p);
        /* out of cache, alloc, clone, ref, free (the clone's), free, free, into cache */
        BT_CHECK(buffet_pkt_history_dump(p, f) == 8);
        tp_read_back(f, text, sizeof text);
        at = tp_hist_find(text, "out of cache", NULL);
        BT_CHECK(at != NULL);
        at = tp_hist_find(text, "alloc", at);
        BT_CHECK(at != NULL);
        tp_site(site, sizeof site, alloc_line);
        BT_CHECK(at && strstr(at, site) != NULL && strstr(at, "test_debug_history()") != NULL);
        at = at ? tp_hist_find(text, "clone", at) : NULL;
        BT_CHECK(at != NULL);
        at = at ? tp_hist_find(text, "ref", at) : NULL;
        BT_CHECK(at != NULL);
        for (i = 0; i < 3; i++) {
            at = at ? tp_hist_find(text, "free", at + 1) : NULL;
            BT_CHECK(at != NULL);
        }
        tp_site(site, sizeof site, free_line);
        BT_CHECK(at && strncmp(at + strlen(" free at "), site, strlen(site)) == 0);   /* the last free */
        at = at ? tp_hist_find(text, "into cache", at) : NULL;
        BT_CHECK(at != NULL);
        if (!at) fprintf(stderr, "history:\n%s", text);
        /* only the last BUFFET_PKT_HISTORY operations are kept */
        q = buffet_pkt_alloc(c, 10);
        BT_CHECK(q == p);
        for (i = 0; i < 10; i++) buffet_pkt_ref(q);
        for (i = 0; i < 11; i++) buffet_pkt_free(c, q);
        fclose(f);
        f = tmpfile();
        BT_CHECK(f != NULL);
        if (!f) goto out;
        BT_CHECK(buffet_pkt_history_dump(p, f) == BUFFET_PKT_HISTORY);
        tp_read_back(f, text, sizeof text);
        BT_CHECK(tp_hist_find(text, "alloc", NULL) == NULL && tp_hist_find(text, "into cache", NULL) != NULL);
        BT_CHECK(buffet_pkt_history_dump(NULL, f) == 0 && buffet_pkt_history_dump(p, NULL) == 0);
    }
out:
    if (f) fclose(f);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Leak reports name the line that took each buffer: to a FILE, to the log, and at destroy. */
static void test_debug_leak_sites(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q, *b[2], *x;
    FILE *f;
    char text[4096], site_p[256], site_q[256], site_b[256], site_x[256];
    int line_p, line_q, line_b, line_x;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    line_p = __LINE__; p = buffet_pkt_alloc(c, 10);
    line_q = __LINE__; q = buffet_pkt_alloc(c, 1000);
    line_b = __LINE__; BT_CHECK(buffet_pkt_alloc_bulk(c, 1, b, 2) == 2);   /* each of a burst */
    line_x = __LINE__; x = buffet_pkt_clone(c, q);                      /* and a clone's header */
    BT_CHECK(p && q && x);
    tp_site(site_p, sizeof site_p, line_p);
    tp_site(site_q, sizeof site_q, line_q);
    tp_site(site_b, sizeof site_b, line_b);
    tp_site(site_x, sizeof site_x, line_x);
    buffet_pkt_cache_flush(c);
    f = tmpfile();
    BT_CHECK(f != NULL);
    if (f) {
        tp_log_clear(&e.log);
        BT_CHECK(buffet_pkt_pool_report_leaks(pool, f) == 5);
        tp_read_back(f, text, sizeof text);
        BT_CHECK(strstr(text, site_p) != NULL && strstr(text, site_q) != NULL);
        BT_CHECK(strstr(text, site_b) != NULL && strstr(strstr(text, site_b) + 1, site_b) != NULL);   /* twice */
        BT_CHECK(strstr(text, site_x) != NULL);
        BT_CHECK(strstr(text, "in test_debug_leak_sites()") != NULL && strstr(text, "5 buffers out") != NULL);
        if (!strstr(text, site_p) || !strstr(text, site_b)) fprintf(stderr, "report:\n%s(wanted %s, %s)\n", text, site_p, site_b);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_LEAK) >= 5);   /* each (and maybe a summary) */
        BT_CHECK(strstr(e.log.all, site_p) != NULL && strstr(e.log.all, site_q) != NULL);
        fclose(f);
    }
    buffet_pkt_free(c, x);
    buffet_pkt_free_bulk(c, b, 2);
    buffet_pkt_free(c, q);
    buffet_pkt_cache_destroy(c);
    tp_log_clear(&e.log);
    buffet_pkt_pool_destroy(pool);   /* p is still out: the log names where it was taken */
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_LEAK) >= 1 && bt_logged(&e.log, BUFFET_ERR_STATE) == 1);
    BT_CHECK(strstr(e.log.all, site_p) != NULL && strstr(e.log.all, site_q) == NULL);
    /* the release waits for p; its history still works meanwhile */
    f = tmpfile();
    if (f && p) {
        BT_CHECK(buffet_pkt_history_dump(p, f) >= 2);
        tp_read_back(f, text, sizeof text);
        BT_CHECK(strstr(text, site_p) != NULL);
    }
    if (f) fclose(f);
    buffet_pkt_free_shared(p);       /* the last buffer: the pool is released now */
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
    tp_end(&e);
}

int main(void) {
    tp_run_common();
    BT_RUN(test_debug_double_free_site);
    BT_RUN(test_debug_foreign);
    BT_RUN(test_debug_cookies);
    BT_RUN(test_debug_history);
    BT_RUN(test_debug_leak_sites);
    return bt_finish("test_packet_debug.c");
}
