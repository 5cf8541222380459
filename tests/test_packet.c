/* test_packet.c - the tests of buffet_packet.h: pools (defaults, create errors, size classes,
   growth, exhaustion, huge pages, NUMA placement), caches, packet operations (headroom, tailroom,
   prepend/append/adj/trim, metadata, user area, multi-segment packets, read, linearize,
   to_chain), zero copy (references, clones, external buffers), bulk and shared allocation,
   statistics (struct, JSON, Prometheus text read by prometheus_client's parser), watermarks,
   leak reports, the registry provider, a failing bookkeeping allocator at every allocation point,
   failure reasons (buffet_alloc_error), the bookkeeping allocator's contract, reference counts
   at their limit, destroy while buffers, caches, chains or registries still hold the pool,
   buffet_pkt_allocator, callbacks that call back in, and two-thread stress tests. The
   bookkeeping allocator of every pool is buffet's debug allocator, so a leak or a bad free of it
   fails the test.

   This file is the release build. tests/test_packet_debug.c defines BUFFET_DEBUG 1 and includes
   this file, so every test here runs in both builds, and adds the debug-only tests (double free
   named by site, foreign pointers, cookies, history, leak reports with sites). Compiled as C11
   and as C++17 (common subset: no designated initializers, no compound literals). */
#ifndef BUFFET_IMPLEMENTATION
#define BUFFET_IMPLEMENTATION
#endif
#include "../buffet_packet.h"
#include "bt.h"
#include <inttypes.h>

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#if BUFFET_TRACK_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* ---------------------------------------------------------------------------------------------
   Helpers: a test environment (debug allocator + log), pool
   descriptions, byte patterns, a JSON checker, python3 for the real parsers. */

static void tp_log_clear(bt_log *l) { memset(l, 0, sizeof *l); }

/* One test's environment: a debug allocator for the pools' bookkeeping and a log. */
typedef struct tp_env {
    buffet_debug *dbg;
    bt_log log;
} tp_env;

static void tp_begin(tp_env *e) {
    memset(e, 0, sizeof *e);
    BT_CHECK(buffet_debug_create(&e->dbg, NULL) == BUFFET_OK && e->dbg != NULL);
}

static buffet_logger tp_logger(tp_env *e) {
    buffet_logger lg;
    lg.fn = bt_log_fn;
    lg.user = &e->log;
    return lg;
}

/* The end of every test: the bookkeeping allocator has nothing live, nothing freed twice or
   with the wrong size, no guard byte overwritten. */
static void tp_end(tp_env *e) {
    buffet_debug_stats st = buffet_debug_get_stats(e->dbg);
    BT_CHECK(buffet_debug_check(e->dbg) == BUFFET_OK);
    BT_CHECK(st.live_count == 0);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.mismatched_frees == 0);
    BT_CHECK(st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(e->dbg, stderr);
    buffet_debug_destroy(e->dbg);
    e->dbg = NULL;
}

/* A pool description with the environment's allocator and log, everything else default. */
static void tp_desc(tp_env *e, buffet_pkt_pool_desc *d) {
    memset(d, 0, sizeof *d);
    d->allocator = buffet_debug_allocator(e->dbg);
    d->log = tp_logger(e);
}

/* A small pool: classes 64, 512 and 2048, 64 buffers each at first (a multiple of 64 fills whole
   pages exactly whatever the stride, so `created` is exact), at most 128, no huge pages. */
static void tp_small(tp_env *e, buffet_pkt_pool_desc *d) {
    tp_desc(e, d);
    d->name = "small";
    d->class_sizes[0] = 64;
    d->class_sizes[1] = 512;
    d->class_sizes[2] = 2048;
    d->initial = 64;
    d->max = 128;
    d->no_huge_pages = true;
}

static buffet_pkt_pool *tp_pool(const buffet_pkt_pool_desc *d) {
    buffet_pkt_pool *p = NULL;
    buffet_result r = buffet_pkt_pool_create(&p, d);
    BT_CHECK(r == BUFFET_OK && p != NULL);
    if (r != BUFFET_OK) fprintf(stderr, "pool create: %s\n", buffet_result_str(r));
    return p;
}

static buffet_pkt_cache *tp_cache(buffet_pkt_pool *p, uint32_t size) {
    buffet_pkt_cache *c = NULL;
    BT_CHECK(buffet_pkt_cache_create(&c, p, size) == BUFFET_OK && c != NULL);
    return c;
}

/* Every buffer is back: no class has one in use, and the rings hold all that were created
   (the caches must be flushed or destroyed first). */
static void tp_all_back(buffet_pkt_pool *p) {
    buffet_pkt_stats s = buffet_pkt_pool_get_stats(p);
    unsigned k;
    for (k = 0; k <= s.nclasses; k++) BT_CHECK(s.cls[k].in_use == 0);
    BT_CHECK(buffet_pkt_pool_report_leaks(p, NULL) == 0);
}

static int tp_cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

/* The run mode (BUFFET_TEST_MODE) and how much work the stress tests do in it. */
static const char *tp_mode(void) {
    const char *m = getenv("BUFFET_TEST_MODE");
    return m ? m : "";
}
static bool tp_slow_mode(void) { return strcmp(tp_mode(), "valgrind") == 0; }

/* Byte patterns: seed + i. */
static void tp_pattern(void *dst, size_t n, unsigned seed) {
    unsigned char *d = (unsigned char *)dst;
    size_t i;
    for (i = 0; i < n; i++) d[i] = (unsigned char)(seed + i);
}
static bool tp_is_pattern(const void *src, size_t n, unsigned seed) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] != (unsigned char)(seed + i)) return false;
    return true;
}

/* Append n pattern bytes to packet p. */
static bool tp_put(buffet_pkt *p, size_t n, unsigned seed) {
    void *d = buffet_pkt_append(p, n);
    if (!d) return false;
    tp_pattern(d, n, seed);
    return true;
}

/* Huge pages free now (HugePages_Free of /proc/meminfo; 0 when unreadable). */
static long tp_huge_pages_free(void) {
    char line[256];
    long n = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "HugePages_Free: %ld", &n) == 1) break;
    fclose(f);
    return n;
}

/* Can this process map a 2 MiB huge page at all? /proc/meminfo may count free pages that a
   process cannot have: qemu's user mode reads the host's count but refuses MAP_HUGETLB. */
static bool tp_hugetlb_maps(void) {
    void *m = mmap(NULL, (size_t)2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (m == MAP_FAILED) return false;
    munmap(m, (size_t)2 << 20);
    return true;
}

/* A JSON checker, enough to tell well-formed from not (RFC 8259 grammar, no semantics). */
typedef struct tp_json { const char *s; int depth; } tp_json;
static bool tp_json_value(tp_json *j);
static void tp_json_ws(tp_json *j) { while (*j->s == ' ' || *j->s == '\n' || *j->s == '\r' || *j->s == '\t') j->s++; }
static bool tp_json_string(tp_json *j) {
    if (*j->s != '"') return false;
    for (j->s++; *j->s != '"'; j->s++) {
        if ((unsigned char)*j->s < 0x20) return false;
        if (*j->s == '\\') {
            j->s++;
            if (*j->s == 'u') {
                int i;
                for (i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", j->s[i]) || j->s[i] == '\0') return false;
                j->s += 4;
            } else if (!*j->s || !strchr("\"\\/bfnrt", *j->s)) {
                return false;
            }
        }
    }
    j->s++;
    return true;
}
static bool tp_json_number(tp_json *j) {
    const char *start = j->s;
    if (*j->s == '-') j->s++;
    if (*j->s == '0') j->s++;
    else if (*j->s >= '1' && *j->s <= '9') while (*j->s >= '0' && *j->s <= '9') j->s++;
    else return false;
    if (*j->s == '.') {
        j->s++;
        if (!(*j->s >= '0' && *j->s <= '9')) return false;
        while (*j->s >= '0' && *j->s <= '9') j->s++;
    }
    if (*j->s == 'e' || *j->s == 'E') {
        j->s++;
        if (*j->s == '+' || *j->s == '-') j->s++;
        if (!(*j->s >= '0' && *j->s <= '9')) return false;
        while (*j->s >= '0' && *j->s <= '9') j->s++;
    }
    return j->s != start;
}
static bool tp_json_value(tp_json *j) {
    bool ok = true;
    tp_json_ws(j);
    if (++j->depth > 64) return false;
    if (*j->s == '{' || *j->s == '[') {
        char close = *j->s == '{' ? '}' : ']';
        bool object = close == '}';
        j->s++;
        tp_json_ws(j);
        if (*j->s == close) {
            j->s++;
        } else {
            for (;;) {
                tp_json_ws(j);
                if (object) {
                    if (!tp_json_string(j)) return false;
                    tp_json_ws(j);
                    if (*j->s++ != ':') return false;
                }
                if (!tp_json_value(j)) return false;
                tp_json_ws(j);
                if (*j->s == ',') { j->s++; continue; }
                if (*j->s++ != close) return false;
                break;
            }
        }
    } else if (*j->s == '"') {
        ok = tp_json_string(j);
    } else if (strncmp(j->s, "true", 4) == 0) {
        j->s += 4;
    } else if (strncmp(j->s, "false", 5) == 0) {
        j->s += 5;
    } else if (strncmp(j->s, "null", 4) == 0) {
        j->s += 4;
    } else {
        ok = tp_json_number(j);
    }
    j->depth--;
    tp_json_ws(j);
    return ok;
}
static bool tp_json_ok(const char *s) {
    tp_json j;
    j.s = s;
    j.depth = 0;
    return tp_json_value(&j) && *j.s == '\0';
}

/* A python3 that can import `module` ("python3" first, then Debian's /usr/bin/python3, where the
   python3-* packages install), or NULL. */
static const char *tp_python(const char *module) {
    static const char *const cands[] = {"python3", "/usr/bin/python3"};
    char cmd[256];
    size_t i;
    for (i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s -c 'import %s' >/dev/null 2>&1", cands[i], module);
        if (system(cmd) == 0) return cands[i];
    }
    return NULL;
}

/* Write text to a new temporary file; its name goes to path[0..cap). */
static bool tp_write_temp(const char *text, char *path, size_t cap) {
    int fd;
    size_t len = strlen(text), done = 0;
    snprintf(path, cap, "/tmp/buffet_test_packet_XXXXXX");
    fd = mkstemp(path);
    if (fd < 0) return false;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(fd);
    return done == len;
}

/* Run a shell command and keep the first line it prints (without the newline). */
static bool tp_run_line(const char *cmd, char *out, size_t cap) {
    FILE *f = popen(cmd, "r");
    bool got;
    out[0] = '\0';
    if (!f) return false;
    got = fgets(out, (int)cap, f) != NULL;
    if (pclose(f) != 0) got = false;
    out[strcspn(out, "\n")] = '\0';
    return got;
}

/* Everything a FILE received (rewound and read back into out[0..cap), NUL-terminated). */
static size_t tp_read_back(FILE *f, char *out, size_t cap) {
    size_t n;
    rewind(f);
    n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    return n;
}

/* ---------------------------------------------------------------------------------------------
   Pools and caches: defaults, errors, classes */

static void test_pool_defaults(void) {
    static const uint32_t sizes[] = {64, 128, 256, 512, 1024, 2048, 9216};
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt_stats s;
    buffet_pkt *p;
    unsigned k;
    tp_begin(&e);
    tp_desc(&e, &d);   /* every field zero but the allocator and the log */
    pool = tp_pool(&d);
    if (!pool) { tp_end(&e); return; }
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(strcmp(s.name, "pkt") == 0);
    BT_CHECK(s.nclasses == 7);
    BT_CHECK(s.numa_node == buffet_pkt_numa_current());
    BT_CHECK(s.region_bytes > 0);
    for (k = 0; k < 7; k++) {
        BT_CHECK(s.cls[k].data_room == sizes[k]);
        BT_CHECK(s.cls[k].created >= 256 && s.cls[k].created <= s.cls[k].max);
        BT_CHECK(s.cls[k].max == 16384);
        BT_CHECK(s.cls[k].in_use == 0 && s.cls[k].allocs == 0 && s.cls[k].failures == 0);
        /* header + headroom + data room, whole cache lines, never a power of two */
        BT_CHECK(s.cls[k].stride >= sizeof(buffet_pkt) + 128 + sizes[k]);
        BT_CHECK(s.cls[k].stride % 64 == 0 && !buffet_is_pow2(s.cls[k].stride));
    }
    BT_CHECK(s.cls[7].data_room == 0);          /* the clone class */
    BT_CHECK(s.cls[7].max == 16384 * 7);
    for (k = 0; k <= BUFFET_PKT_MAX_CLASSES; k++) BT_CHECK(s.cls[k].clone == (k == 7));   /* exactly the clone class */
    BT_CHECK(sizeof(buffet_pkt) == 64);
    BT_CHECK(buffet_pkt_pool_class(pool, 0) == 0);
    BT_CHECK(buffet_pkt_pool_class(pool, 64) == 0);
    BT_CHECK(buffet_pkt_pool_class(pool, 65) == 1);
    BT_CHECK(buffet_pkt_pool_class(pool, 1500) == 5);
    BT_CHECK(buffet_pkt_pool_class(pool, 9216) == 6);
    BT_CHECK(buffet_pkt_pool_class(pool, 9217) == -1);
    BT_CHECK(buffet_pkt_pool_class(pool, SIZE_MAX) == -1);
    BT_CHECK(buffet_pkt_pool_class(NULL, 10) == -1);
    c = tp_cache(pool, 0);
    BT_CHECK(c->size == 64);                     /* size 0: 64 per class */
    p = buffet_pkt_alloc(c, 1500);
    BT_CHECK(p != NULL);
    if (p) {
        BT_CHECK(p->cls == 5 && p->pool == pool && p->flags == 0);
        BT_CHECK(buffet_pkt_headroom(p) == 128);  /* the default headroom */
        BT_CHECK(buffet_pkt_tailroom(p) == 2048);
        BT_CHECK(p->buf_len == 128 + 2048);
        BT_CHECK(buffet_pkt_data(p) == (void *)(p->buf + 128));
        BT_CHECK(p->len == 0 && p->pkt_len == 0 && p->nb_segs == 1 && p->next == NULL && p->refcnt == 1);
        BT_CHECK(p->timestamp == 0 && p->hash == 0 && p->in_port == 0 && p->out_port == 0);
        BT_CHECK(p->vlan_tci == 0 && p->packet_type == 0);
        BT_CHECK(buffet_pkt_user(p) == NULL);       /* no user area asked for */
        BT_CHECK(((uintptr_t)p % 64) == 0 && ((uintptr_t)p->buf % 64) == 0);
        BT_CHECK(tp_put(p, 1500, 7) && tp_is_pattern(buffet_pkt_data(p), 1500, 7));
    }
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    BT_CHECK(e.log.count[-(int)BUFFET_ERR_INVALID] == 0);
    buffet_pkt_pool_destroy(pool);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_LEAK) == 0);
    buffet_pkt_pool_destroy(NULL);               /* does nothing */
    tp_end(&e);
}

/* pool_create's documented errors: each refused, logged, nothing leaked, *out NULL. */
static void tp_create_fails(tp_env *e, const buffet_pkt_pool_desc *d, buffet_result want, const char *what) {
    buffet_pkt_pool *p = (buffet_pkt_pool *)&p;   /* not NULL: create must clear it */
    unsigned before = bt_logged(&e->log, want);
    buffet_result r = buffet_pkt_pool_create(&p, d);
    if (r != want) fprintf(stderr, "pool_create with %s: %s, expected %s\n", what, buffet_result_str(r), buffet_result_str(want));
    BT_CHECK(r == want);
    BT_CHECK(p == NULL);
    BT_CHECK(bt_logged(&e->log, want) == before + 1);
    if (r == BUFFET_OK) buffet_pkt_pool_destroy(p);
    BT_CHECK(buffet_debug_get_stats(e->dbg).live_count == 0);
}

static void test_pool_create_errors(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *p;
    unsigned k;
    tp_begin(&e);
    tp_small(&e, &d);
    BT_CHECK(buffet_pkt_pool_create(NULL, &d) == BUFFET_ERR_INVALID);
    /* class sizes not ascending, or equal */
    tp_small(&e, &d);
    d.class_sizes[1] = 32;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "class sizes descending");
    tp_small(&e, &d);
    d.class_sizes[1] = 64;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "equal class sizes");
    /* a class below 8 bytes: a free buffer's data room must hold the store's batch count */
    tp_small(&e, &d);
    d.class_sizes[0] = 7;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "class size 7");
    tp_small(&e, &d);
    d.class_sizes[0] = 1;
    d.class_sizes[1] = 0;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "class size 1");
    tp_small(&e, &d);
    d.class_sizes[1] = 4;   /* a small one after a big one is refused anyway; below 8 as well */
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "class size 4 after 64");
    /* ...while exactly 8 is fine */
    tp_small(&e, &d);
    d.class_sizes[0] = 8;
    p = NULL;
    BT_CHECK(buffet_pkt_pool_create(&p, &d) == BUFFET_OK && p != NULL);
    if (p) {
        buffet_pkt_cache *c = tp_cache(p, 0);
        buffet_pkt *q = buffet_pkt_alloc(c, 8), *r = buffet_pkt_alloc(c, 9);
        BT_CHECK(q && q->cls == 0 && buffet_pkt_tailroom(q) == 8 && tp_put(q, 8, 1));
        BT_CHECK(r && r->cls == 1);
        buffet_pkt_free(c, q);
        buffet_pkt_free(c, r);
        buffet_pkt_cache_destroy(c);
        tp_all_back(p);   /* 8-byte buffers went through the store's batches and came back */
    }
    buffet_pkt_pool_destroy(p);
    /* headroom above 65535 */
    tp_small(&e, &d);
    d.headroom = 65536;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "headroom 65536");
    /* initial > max */
    tp_small(&e, &d);
    d.initial = 256;
    d.max = 128;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "initial > max");
    /* a class above 65535 bytes with the headroom (data_off is 16 bits) */
    tp_small(&e, &d);
    d.class_sizes[3] = 65536 - 128;
    d.initial = 1;
    d.max = 2;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "class + headroom = 65536");
    /* ...while exactly 65535 is fine */
    tp_small(&e, &d);
    d.class_sizes[3] = 65535 - 128;
    d.initial = 1;
    d.max = 2;
    p = NULL;
    BT_CHECK(buffet_pkt_pool_create(&p, &d) == BUFFET_OK && p != NULL);
    BT_CHECK(buffet_pkt_pool_class(p, 65535 - 128) == 3);
    buffet_pkt_pool_destroy(p);
    /* the largest headroom a 64-byte class allows: 65535 in all */
    tp_small(&e, &d);
    d.headroom = 65535;
    d.class_sizes[1] = d.class_sizes[2] = 0;
    tp_create_fails(&e, &d, BUFFET_ERR_INVALID, "headroom 65535 + class 64");
    d.headroom = 65535 - 64;
    p = NULL;
    BT_CHECK(buffet_pkt_pool_create(&p, &d) == BUFFET_OK && p != NULL);
    if (p) {
        buffet_pkt_cache *c = tp_cache(p, 0);
        buffet_pkt *q = buffet_pkt_alloc(c, 10);
        BT_CHECK(q && buffet_pkt_headroom(q) == 65535 - 64 && buffet_pkt_tailroom(q) == 64);
        BT_CHECK(q && buffet_pkt_prepend(q, 65535 - 64) == (void *)q->buf);
        buffet_pkt_free(c, q);
        buffet_pkt_cache_destroy(c);
    }
    buffet_pkt_pool_destroy(p);
    /* BUFFET_PKT_MAX_CLASSES classes: the most a pool can have, the same in every translation unit */
    BT_CHECK(BUFFET_PKT_MAX_CLASSES == 12 && BUFFET_PKT_CACHE_MAX == 512);
    BT_CHECK(sizeof d.class_sizes / sizeof d.class_sizes[0] == BUFFET_PKT_MAX_CLASSES);
    BT_CHECK(sizeof ((buffet_pkt_stats *)NULL)->cls / sizeof(buffet_pkt_class_stats) == BUFFET_PKT_MAX_CLASSES + 1);
    tp_small(&e, &d);
    for (k = 0; k < BUFFET_PKT_MAX_CLASSES; k++) d.class_sizes[k] = 64u * (k + 1);
    d.initial = 1;
    d.max = 4;
    p = NULL;
    BT_CHECK(buffet_pkt_pool_create(&p, &d) == BUFFET_OK && p != NULL);
    if (p) {
        buffet_pkt_stats s = buffet_pkt_pool_get_stats(p);
        BT_CHECK(s.nclasses == BUFFET_PKT_MAX_CLASSES);
        BT_CHECK(buffet_pkt_pool_class(p, 64u * BUFFET_PKT_MAX_CLASSES) == BUFFET_PKT_MAX_CLASSES - 1);
    }
    buffet_pkt_pool_destroy(p);
    /* initial == max is fine; a NULL name is "pkt" */
    tp_small(&e, &d);
    d.name = NULL;
    d.initial = d.max = 64;
    p = tp_pool(&d);
    BT_CHECK(p && strcmp(buffet_pkt_pool_get_stats(p).name, "pkt") == 0);
    buffet_pkt_pool_destroy(p);
    tp_end(&e);
}

static void test_cache_create_errors(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = (buffet_pkt_cache *)&c;
    BT_CHECK(buffet_pkt_cache_create(&c, pool, BUFFET_PKT_CACHE_MAX + 1) == BUFFET_ERR_INVALID);
    BT_CHECK(c == NULL);
    c = (buffet_pkt_cache *)&c;
    BT_CHECK(buffet_pkt_cache_create(&c, NULL, 0) == BUFFET_ERR_INVALID && c == NULL);
    BT_CHECK(buffet_pkt_cache_create(NULL, pool, 0) == BUFFET_ERR_INVALID);
    c = tp_cache(pool, BUFFET_PKT_CACHE_MAX);
    BT_CHECK(c && c->size == BUFFET_PKT_CACHE_MAX && c->pool == pool);
    if (c) {
        /* a pointer array per class and one for the clone class, all empty at first */
        unsigned k;
        buffet_pkt *p;
        BT_CHECK(c->nclasses == 3 && pthread_equal(c->owner, pthread_self()));
        for (k = 0; k <= c->nclasses; k++) BT_CHECK(c->cls[k].count == 0);
        p = buffet_pkt_alloc(c, 600);   /* class 2: its array holds the rest of the refill */
        BT_CHECK(p && c->cls[2].count > 0 && c->cls[0].count == 0 && c->cls[1].count == 0);
        buffet_pkt_free(c, p);
        BT_CHECK(c->cls[2].count > 0 && c->objs[2][c->cls[2].count - 1] == (void *)p);   /* pushed on top */
    }
    buffet_pkt_cache_destroy(c);
    c = tp_cache(pool, 1);   /* the smallest cache works: every refill takes one */
    if (c) {
        buffet_pkt *a = buffet_pkt_alloc(c, 10), *b = buffet_pkt_alloc(c, 10);
        BT_CHECK(a && b && a != b);
        buffet_pkt_free(c, a);
        buffet_pkt_free(c, b);
    }
    buffet_pkt_cache_destroy(c);
    buffet_pkt_cache_destroy(NULL);   /* does nothing */
    buffet_pkt_cache_flush(NULL);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Sizes: 0 is the smallest class and an empty packet; above the largest class is refused,
   counted and logged; a class index that is not a data class is refused. */
static void test_alloc_sizes(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 0);
    BT_CHECK(p && p->cls == 0 && p->len == 0 && p->pkt_len == 0 && p->nb_segs == 1);
    BT_CHECK(p && buffet_pkt_headroom(p) == 128 && buffet_pkt_tailroom(p) == 64);
    /* a reused buffer comes back reset */
    if (p) {
        BT_CHECK(tp_put(p, 10, 1));
        p->timestamp = 99; p->hash = 5; p->in_port = 1; p->out_port = 2; p->vlan_tci = 3; p->packet_type = 4;
        BT_CHECK(buffet_pkt_prepend(p, 20) != NULL);
        buffet_pkt_free(c, p);
        q = buffet_pkt_alloc(c, 64);
        BT_CHECK(q == p);   /* the cache is LIFO */
        BT_CHECK(q && q->len == 0 && q->pkt_len == 0 && q->data_off == 128 && q->timestamp == 0);
        BT_CHECK(q && q->hash == 0 && q->in_port == 0 && q->out_port == 0 && q->vlan_tci == 0);
        BT_CHECK(q && q->packet_type == 0 && q->refcnt == 1 && q->nb_segs == 1 && q->next == NULL);
        buffet_pkt_free(c, q);
    }
    p = buffet_pkt_alloc(c, 2048);   /* the largest class, exactly */
    BT_CHECK(p && p->cls == 2 && buffet_pkt_tailroom(p) == 2048);
    buffet_pkt_free(c, p);
    p = buffet_pkt_alloc(c, 65);
    BT_CHECK(p && p->cls == 1);
    buffet_pkt_free(c, p);
    /* no class is big enough: BUFFET_ERR_TOO_LARGE, logged and recorded (not "exhausted") */
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_alloc(c, 2049) == NULL);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_TOO_LARGE) == 1 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_pkt_alloc(c, SIZE_MAX) == NULL);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_TOO_LARGE) == 2 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 0);
    BT_CHECK(buffet_pkt_alloc(NULL, 10) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].failures + s.cls[1].failures + s.cls[2].failures == 2);
    /* by class index */
    p = buffet_pkt_alloc_class(c, 1);
    BT_CHECK(p && p->cls == 1 && buffet_pkt_tailroom(p) == 512 && buffet_pkt_headroom(p) == 128);
    buffet_pkt_free(c, p);
    BT_CHECK(buffet_pkt_alloc_class(c, 5) == NULL);            /* no such class */
    q = buffet_pkt_alloc_class(c, 3);                          /* 3 classes: 3 is the clone class */
    BT_CHECK(q == NULL);
    if (q) buffet_pkt_free(c, q);
    buffet_pkt_free(c, NULL);                                  /* does nothing */
    /* the out-of-line halves the inline fast paths call */
    p = buffet__pkt_alloc_slow(c, 2, BUFFET_SITE);
    BT_CHECK(p && p->cls == 2 && buffet_pkt_headroom(p) == 128 && p->len == 0 && p->refcnt == 1);
    buffet__pkt_free_slow(c, p, BUFFET_SITE);
    BT_CHECK(buffet__pkt_alloc_slow(NULL, 0, BUFFET_SITE) == NULL);
    BT_CHECK(buffet__pkt_alloc_slow(c, 7, BUFFET_SITE) == NULL);
    buffet__pkt_free_slow(c, NULL, BUFFET_SITE);
#if !BUFFET_DEBUG
    BT_CHECK(buffet_pkt_history_dump(p, stderr) == 0);        /* release builds keep no history */
#endif
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Packet operations */

static void test_headroom_tailroom(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p;
    unsigned char *data, *h;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 100);   /* class 512 */
    if (!p) { BT_CHECK(p != NULL); buffet_pkt_cache_destroy(c); buffet_pkt_pool_destroy(pool); tp_end(&e); return; }
    /* append: into the tailroom */
    data = (unsigned char *)buffet_pkt_append(p, 100);
    BT_CHECK(data == buffet_pkt_data(p));
    tp_pattern(data, 100, 3);
    BT_CHECK(p->len == 100 && p->pkt_len == 100 && buffet_pkt_tailroom(p) == 412);
    BT_CHECK(buffet_pkt_append(p, 413) == NULL);                 /* past the tailroom */
    BT_CHECK(buffet_pkt_append(p, SIZE_MAX) == NULL);
    BT_CHECK(p->len == 100 && p->pkt_len == 100 && buffet_pkt_tailroom(p) == 412);
    BT_CHECK(buffet_pkt_append(p, 0) == (void *)(data + 100));   /* zero bytes: where they would go */
    h = (unsigned char *)buffet_pkt_append(p, 412);              /* exactly the tailroom */
    BT_CHECK(h == data + 100 && buffet_pkt_tailroom(p) == 0 && p->len == 512);
    BT_CHECK(buffet_pkt_append(p, 1) == NULL);
    BT_CHECK(buffet_pkt_trim(p, 412) == BUFFET_OK && p->len == 100 && p->pkt_len == 100);
    /* prepend: into the headroom */
    h = (unsigned char *)buffet_pkt_prepend(p, 14);
    BT_CHECK(h == data - 14 && h == buffet_pkt_data(p));
    BT_CHECK(buffet_pkt_headroom(p) == 114 && p->len == 114 && p->pkt_len == 114);
    memset(h, 0xEE, 14);
    BT_CHECK(buffet_pkt_prepend(p, 115) == NULL);                /* past the headroom: unchanged */
    BT_CHECK(buffet_pkt_prepend(p, SIZE_MAX) == NULL);
    BT_CHECK(buffet_pkt_headroom(p) == 114 && p->len == 114 && p->pkt_len == 114);
    BT_CHECK(buffet_pkt_data(p) == (void *)h);
    BT_CHECK(buffet_pkt_prepend(p, 0) == (void *)h);
    BT_CHECK(buffet_pkt_prepend(p, 114) == (void *)p->buf);      /* exactly the headroom */
    BT_CHECK(buffet_pkt_headroom(p) == 0 && p->len == 228);
    BT_CHECK(buffet_pkt_prepend(p, 1) == NULL);
    /* adj: drop from the front */
    BT_CHECK(buffet_pkt_adj(p, 229) == NULL);                    /* past the length: unchanged */
    BT_CHECK(buffet_pkt_adj(p, SIZE_MAX) == NULL);
    BT_CHECK(p->len == 228 && p->pkt_len == 228 && buffet_pkt_headroom(p) == 0);
    BT_CHECK(buffet_pkt_adj(p, 114) == (void *)h);
    BT_CHECK(buffet_pkt_adj(p, 14) == (void *)data && p->len == 100 && p->pkt_len == 100);
    BT_CHECK(tp_is_pattern(buffet_pkt_data(p), 100, 3));
    BT_CHECK(buffet_pkt_adj(p, 0) == (void *)data);
    /* trim: drop from the end */
    BT_CHECK(buffet_pkt_trim(p, 101) == BUFFET_ERR_RANGE);       /* past the length: unchanged */
    BT_CHECK(buffet_pkt_trim(p, SIZE_MAX) == BUFFET_ERR_RANGE);
    BT_CHECK(p->len == 100 && p->pkt_len == 100);
    BT_CHECK(buffet_pkt_trim(p, 0) == BUFFET_OK && p->len == 100);
    BT_CHECK(buffet_pkt_trim(p, 40) == BUFFET_OK && p->len == 60 && p->pkt_len == 60);
    BT_CHECK(buffet_pkt_tailroom(p) == 512 - 60);
    BT_CHECK(tp_is_pattern(buffet_pkt_data(p), 60, 3));
    BT_CHECK(buffet_pkt_adj(p, 60) != NULL && p->len == 0 && p->pkt_len == 0);   /* all of it */
    BT_CHECK(buffet_pkt_trim(p, 1) == BUFFET_ERR_RANGE);
    /* NULL */
    BT_CHECK(buffet_pkt_prepend(NULL, 1) == NULL);
    BT_CHECK(buffet_pkt_append(NULL, 1) == NULL);
    BT_CHECK(buffet_pkt_adj(NULL, 1) == NULL);
    BT_CHECK(buffet_pkt_trim(NULL, 1) == BUFFET_ERR_INVALID);
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* The user area: present and distinct per packet when asked for, NULL otherwise; metadata
   fields are the caller's. */
static void test_user_area(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p[8];
    unsigned i, j;
    tp_begin(&e);
    tp_small(&e, &d);
    d.user_size = 40;
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    BT_CHECK(buffet_pkt_pool_user_size(pool) == 40 && buffet_pkt_pool_user_size(NULL) == 0);
    for (i = 0; i < 8; i++) {
        p[i] = buffet_pkt_alloc(c, i * 200);   /* classes 64, 512, 2048 */
        BT_CHECK(p[i] != NULL);
        if (!p[i]) continue;
        BT_CHECK(buffet_pkt_user(p[i]) != NULL);
        BT_CHECK(((uintptr_t)buffet_pkt_user(p[i]) % 8) == 0);
        /* the user area lies between the header and the data room */
        BT_CHECK((unsigned char *)buffet_pkt_user(p[i]) >= (unsigned char *)p[i] + sizeof(buffet_pkt));
        BT_CHECK((unsigned char *)buffet_pkt_user(p[i]) + 40 <= p[i]->buf);
        memset(buffet_pkt_user(p[i]), (int)i + 1, 40);
        BT_CHECK(tp_put(p[i], i * 10, i));
    }
    for (i = 0; i < 8; i++) {
        unsigned char *u = (unsigned char *)buffet_pkt_user(p[i]);
        for (j = 0; j < 8; j++) BT_CHECK(j == i || buffet_pkt_user(p[j]) != (void *)u);
        for (j = 0; j < 40; j++) BT_CHECK(u[j] == (unsigned char)(i + 1));
        BT_CHECK(tp_is_pattern(buffet_pkt_data(p[i]), i * 10, i));
    }
    buffet_pkt_free_bulk(c, p, 8);
    BT_CHECK(buffet_pkt_user(NULL) == NULL);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    /* without a user area */
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p[0] = buffet_pkt_alloc(c, 10);
    BT_CHECK(p[0] && buffet_pkt_user(p[0]) == NULL);
    buffet_pkt_free(c, p[0]);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Three segments of 100, 50 and 30 bytes, pattern seed 0 running through all of them. */
static buffet_pkt *tp_three_segments(buffet_pkt_cache *c) {
    buffet_pkt *a = buffet_pkt_alloc(c, 100), *b = buffet_pkt_alloc(c, 50), *t = buffet_pkt_alloc(c, 30);
    if (!a || !b || !t) {
        buffet_pkt_free(c, a); buffet_pkt_free(c, b); buffet_pkt_free(c, t);
        return NULL;
    }
    tp_put(a, 100, 0);
    tp_put(b, 50, 100);
    tp_put(t, 30, 150);
    BT_CHECK(buffet_pkt_chain(b, t) == BUFFET_OK);
    BT_CHECK(buffet_pkt_chain(a, b) == BUFFET_OK);
    return a;
}

static void test_multi_segment(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *x, *y;
    unsigned char tmp[256];
    const unsigned char *r;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = tp_three_segments(c);
    BT_CHECK(p != NULL);
    if (p) {
        BT_CHECK(p->nb_segs == 3 && p->pkt_len == 180 && p->len == 100);
        BT_CHECK(p->next && p->next->len == 50 && p->next->next && p->next->next->len == 30);
        BT_CHECK(p->next->next->next == NULL);
        /* inside one segment: a pointer into the packet */
        r = (const unsigned char *)buffet_pkt_read(p, 10, 20, tmp);
        BT_CHECK(r == (const unsigned char *)buffet_pkt_data(p) + 10);
        r = (const unsigned char *)buffet_pkt_read(p, 120, 30, tmp);
        BT_CHECK(r == (const unsigned char *)buffet_pkt_data(p->next) + 20 && tp_is_pattern(r, 30, 120));
        r = (const unsigned char *)buffet_pkt_read(p, 150, 30, tmp);
        BT_CHECK(r == (const unsigned char *)buffet_pkt_data(p->next->next) && tp_is_pattern(r, 30, 150));
        /* across segments: copied into tmp */
        memset(tmp, 0, sizeof tmp);
        r = (const unsigned char *)buffet_pkt_read(p, 90, 20, tmp);
        BT_CHECK(r == tmp && tp_is_pattern(tmp, 20, 90));
        r = (const unsigned char *)buffet_pkt_read(p, 0, 180, tmp);
        BT_CHECK(r == tmp && tp_is_pattern(tmp, 180, 0));
        r = (const unsigned char *)buffet_pkt_read(p, 99, 52, tmp);   /* three segments */
        BT_CHECK(r == tmp && tp_is_pattern(tmp, 52, 99));
        /* out of range */
        BT_CHECK(buffet_pkt_read(p, 170, 11, tmp) == NULL);
        BT_CHECK(buffet_pkt_read(p, 181, 0, tmp) == NULL);
        BT_CHECK(buffet_pkt_read(p, 0, 181, tmp) == NULL);
        BT_CHECK(buffet_pkt_read(p, SIZE_MAX, 2, tmp) == NULL);
        BT_CHECK(buffet_pkt_read(p, 2, SIZE_MAX, tmp) == NULL);
        BT_CHECK(buffet_pkt_read(NULL, 0, 1, tmp) == NULL);
        BT_CHECK(buffet_pkt_read(p, 180, 0, tmp) != NULL);          /* empty range at the end */
        /* append and trim work on the last segment, adj and prepend on the first */
        BT_CHECK(buffet_pkt_append(p, 10) == (void *)((unsigned char *)buffet_pkt_data(p->next->next) + 30));
        BT_CHECK(p->pkt_len == 190 && p->next->next->len == 40 && p->len == 100);
        BT_CHECK(buffet_pkt_trim(p, 41) == BUFFET_ERR_RANGE && p->pkt_len == 190);   /* more than the last has */
        BT_CHECK(buffet_pkt_trim(p, 10) == BUFFET_OK && p->pkt_len == 180 && p->next->next->len == 30);
        BT_CHECK(buffet_pkt_adj(p, 101) == NULL && p->pkt_len == 180);               /* more than the first has */
        BT_CHECK(buffet_pkt_adj(p, 10) != NULL && p->pkt_len == 170 && p->len == 90);
        BT_CHECK(buffet_pkt_prepend(p, 10) != NULL && p->pkt_len == 180 && p->len == 100);
        r = (const unsigned char *)buffet_pkt_read(p, 0, 180, tmp);
        BT_CHECK(r == tmp && tp_is_pattern(tmp, 180, 0));
        /* chain errors: nothing changes */
        BT_CHECK(buffet_pkt_chain(NULL, p) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_pkt_chain(p, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_pkt_chain(p, p) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_pkt_chain(p, p->next->next) == BUFFET_ERR_INVALID);   /* already in it */
        BT_CHECK(p->nb_segs == 3 && p->pkt_len == 180);
        x = buffet_pkt_alloc(c, 10);
        BT_CHECK(x && tp_put(x, 10, 180));
        if (x) {
            uint16_t segs = p->nb_segs;
            uint32_t len = p->pkt_len;
            p->nb_segs = 65534;            /* as if it had the most segments a packet can have */
            BT_CHECK(buffet_pkt_chain(p, x) == BUFFET_ERR_OVERFLOW);   /* 65535 is the lent mark */
            p->nb_segs = segs;
            p->pkt_len = UINT32_MAX - 5;   /* as if it held almost 4 GiB */
            BT_CHECK(buffet_pkt_chain(p, x) == BUFFET_ERR_OVERFLOW);
            p->pkt_len = len;
            BT_CHECK(p->next->next->next == NULL && x->nb_segs == 1);
            /* a multi-segment tail */
            y = buffet_pkt_alloc(c, 10);
            BT_CHECK(y && tp_put(y, 5, 190));
            if (y) BT_CHECK(buffet_pkt_chain(x, y) == BUFFET_OK && x->nb_segs == 2 && x->pkt_len == 15);
            BT_CHECK(buffet_pkt_chain(p, x) == BUFFET_OK);
            BT_CHECK(p->nb_segs == 5 && p->pkt_len == 195);
            r = (const unsigned char *)buffet_pkt_read(p, 0, 195, tmp);
            BT_CHECK(r == tmp && tp_is_pattern(tmp, 195, 0));
        }
        buffet_pkt_free(c, p);   /* every segment */
    }
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Metadata a packet carries, set and compared as a whole. */
static void tp_set_meta(buffet_pkt *p, unsigned seed) {
    p->timestamp = 1000000007ull * seed;
    p->hash = 0x9E3779B9u ^ seed;
    p->in_port = (uint16_t)(seed + 1);
    p->out_port = (uint16_t)(seed + 2);
    p->vlan_tci = (uint16_t)(seed + 3);
    p->packet_type = (uint16_t)(seed + 4);
}
static bool tp_has_meta(const buffet_pkt *p, unsigned seed) {
    return p->timestamp == 1000000007ull * seed && p->hash == (0x9E3779B9u ^ seed) &&
           p->in_port == (uint16_t)(seed + 1) && p->out_port == (uint16_t)(seed + 2) &&
           p->vlan_tci == (uint16_t)(seed + 3) && p->packet_type == (uint16_t)(seed + 4);
}

static void test_linearize(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q, *first, *held[200];
    size_t n = 0;
    unsigned char tmp[512];
    tp_begin(&e);
    tp_small(&e, &d);
    d.user_size = 16;
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    /* fits in the first segment's tailroom: copied there, the same header */
    p = tp_three_segments(c);   /* 100 + 50 + 30 in 512-byte class buffers */
    BT_CHECK(p != NULL);
    if (p) {
        tp_set_meta(p, 5);
        memset(buffet_pkt_user(p), 0x5A, 16);
        first = p;
        BT_CHECK(buffet_pkt_linearize(c, &p) == BUFFET_OK);
        BT_CHECK(p == first && p->next == NULL && p->nb_segs == 1 && p->len == 180 && p->pkt_len == 180);
        BT_CHECK(tp_is_pattern(buffet_pkt_data(p), 180, 0) && tp_has_meta(p, 5));
        BT_CHECK(((unsigned char *)buffet_pkt_user(p))[15] == 0x5A);
        BT_CHECK(buffet_pkt_linearize(c, &p) == BUFFET_OK && p == first);   /* one segment already */
        buffet_pkt_free(c, p);
    }
    /* needs a bigger class: *p replaced, metadata and user area kept */
    p = buffet_pkt_alloc(c, 64);
    q = buffet_pkt_alloc(c, 64);
    BT_CHECK(p && q);
    if (p && q) {
        BT_CHECK(tp_put(p, 64, 0) && tp_put(q, 64, 64));   /* class 64, full: no tailroom */
        BT_CHECK(buffet_pkt_chain(p, q) == BUFFET_OK);
        tp_set_meta(p, 9);
        memset(buffet_pkt_user(p), 0x77, 16);
        first = p;
        BT_CHECK(buffet_pkt_linearize(c, &p) == BUFFET_OK);
        BT_CHECK(p != first && p->cls == 1 && p->next == NULL && p->nb_segs == 1);
        BT_CHECK(p->len == 128 && p->pkt_len == 128 && tp_is_pattern(buffet_pkt_data(p), 128, 0));
        BT_CHECK(tp_has_meta(p, 9) && ((unsigned char *)buffet_pkt_user(p))[0] == 0x77);
        BT_CHECK(buffet_pkt_headroom(p) == 128);
        buffet_pkt_free(c, p);
    } else {
        buffet_pkt_free(c, p);
        buffet_pkt_free(c, q);
    }
    /* no class big enough: BUFFET_ERR_RANGE, unchanged */
    p = buffet_pkt_alloc(c, 2048);
    q = buffet_pkt_alloc(c, 2048);
    BT_CHECK(p && q);
    if (p && q) {
        BT_CHECK(tp_put(p, 2048, 0) && tp_put(q, 100, 0));
        BT_CHECK(buffet_pkt_chain(p, q) == BUFFET_OK);
        first = p;
        BT_CHECK(buffet_pkt_linearize(c, &p) == BUFFET_ERR_RANGE);
        BT_CHECK(p == first && p->nb_segs == 2 && p->pkt_len == 2148 && p->next == q && q->len == 100);
        BT_CHECK(tp_is_pattern(buffet_pkt_data(p), 2048, 0) && tp_is_pattern(buffet_pkt_data(q), 100, 0));
        buffet_pkt_free(c, p);
    } else {
        buffet_pkt_free(c, p);
        buffet_pkt_free(c, q);
    }
    /* the bigger class exhausted: BUFFET_ERR_EXHAUSTED, unchanged */
    p = buffet_pkt_alloc(c, 64);
    q = buffet_pkt_alloc(c, 64);
    BT_CHECK(p && q && tp_put(p, 64, 0) && tp_put(q, 64, 64) && buffet_pkt_chain(p, q) == BUFFET_OK);
    while (n < 200 && (held[n] = buffet_pkt_alloc(c, 512)) != NULL) n++;
    BT_CHECK(n == 128);   /* the 512 class at its max */
    if (p && q) {
        first = p;
        BT_CHECK(buffet_pkt_linearize(c, &p) == BUFFET_ERR_EXHAUSTED);
        BT_CHECK(p == first && p->nb_segs == 2 && p->pkt_len == 128 && p->next == q);
        BT_CHECK(buffet_pkt_read(p, 0, 128, tmp) == (void *)tmp && tp_is_pattern(tmp, 128, 0));
        buffet_pkt_free(c, p);
    }
    buffet_pkt_free_bulk(c, held, n);
    /* bad arguments */
    p = NULL;
    BT_CHECK(buffet_pkt_linearize(c, &p) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_linearize(c, NULL) == BUFFET_ERR_INVALID);
    p = buffet_pkt_alloc(c, 10);
    BT_CHECK(buffet_pkt_linearize(NULL, &p) == BUFFET_ERR_INVALID);
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

static void test_to_chain(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *z;
    buffet_chain ch;
    unsigned char tmp[256];
    buffet_buf *b;
    buffet_buf_desc bd;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    buffet_chain_init(&ch, buffet_debug_allocator(e.dbg));
    /* the chain has something already: the packet's bytes go after it */
    memset(&bd, 0, sizeof bd);
    bd.size = 8;
    bd.allocator = buffet_debug_allocator(e.dbg);
    BT_CHECK(buffet_buf_create(&b, &bd) == BUFFET_OK);
    memset(b->data, 0xAB, 8);
    BT_CHECK(buffet_chain_append(&ch, b, 0, 8) == BUFFET_OK);
    buffet_buf_unref(b);
    p = tp_three_segments(c);
    BT_CHECK(p != NULL);
    if (p) {
        z = buffet_pkt_alloc(c, 10);   /* an empty segment adds no slice */
        BT_CHECK(z && buffet_pkt_chain(p, z) == BUFFET_OK);
        BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_OK);
        BT_CHECK(buffet_chain_len(&ch) == 8 + 180 && buffet_chain_count(&ch) == 4);
        BT_CHECK(buffet_chain_copy_out(&ch, 8, tmp, 180) == BUFFET_OK && tp_is_pattern(tmp, 180, 0));
        /* zero copy: the slices point into the packet */
        BT_CHECK(buffet_chain_at(&ch, 1) && buffet_slice_data(buffet_chain_at(&ch, 1)) == buffet_pkt_data(p));
        BT_CHECK(p->refcnt == 2 && p->next->refcnt == 2);
        /* the packet freed first: the chain keeps the data alive */
        buffet_pkt_free(c, p);
        buffet_pkt_cache_flush(c);
        BT_CHECK(buffet_pkt_pool_report_leaks(pool, NULL) == 3);
        BT_CHECK(buffet_chain_copy_out(&ch, 8, tmp, 180) == BUFFET_OK && tp_is_pattern(tmp, 180, 0));
        BT_CHECK(buffet_chain_copy_out(&ch, 0, tmp, 8) == BUFFET_OK && tmp[0] == 0xAB && tmp[7] == 0xAB);
    }
    buffet_chain_deinit(&ch);   /* ...until now: every buffer back in the pool */
    tp_all_back(pool);
    /* chain first, packet after */
    p = tp_three_segments(c);
    BT_CHECK(p != NULL);
    if (p) {
        BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_OK && buffet_chain_len(&ch) == 180);
        buffet_chain_deinit(&ch);
        BT_CHECK(p->refcnt == 1 && tp_is_pattern(buffet_pkt_data(p), 100, 0));
        BT_CHECK(buffet_pkt_to_chain(NULL, &ch) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_pkt_to_chain(p, NULL) == BUFFET_ERR_INVALID);
        buffet_pkt_free(c, p);
    }
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Zero copy: references, clones, external buffers; double free */

static void test_ref(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p;
    buffet_pkt_stats s;
    buffet_chain ch;
    size_t live;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 100);
    BT_CHECK(p && tp_put(p, 100, 1));
    BT_CHECK(p && buffet__pkt_alone(p));
    BT_CHECK(buffet_pkt_ref(p) == BUFFET_OK && p->refcnt == 2);
    BT_CHECK(p && !buffet__pkt_alone(p));
    BT_CHECK(buffet_pkt_prepend(p, 1) == NULL && buffet_pkt_append(p, 1) == NULL);   /* shared now */
    buffet_pkt_unref(c, p);                /* one reference left: still ours */
    BT_CHECK(p->refcnt == 1 && tp_is_pattern(buffet_pkt_data(p), 100, 1));
    BT_CHECK(buffet_pkt_prepend(p, 1) != NULL);   /* not shared any more */
    buffet_pkt_cache_flush(c);
    BT_CHECK(buffet_pkt_pool_report_leaks(pool, NULL) == 1);
    buffet_pkt_free(c, p);                 /* the last one */
    buffet_pkt_cache_flush(c);
    tp_all_back(pool);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[1].allocs == 1 && s.cls[1].frees == 1 && s.double_frees == 0);
    /* every segment of a chain */
    p = tp_three_segments(c);
    BT_CHECK(p && buffet_pkt_ref(p) == BUFFET_OK);
    BT_CHECK(p && p->refcnt == 2 && p->next->refcnt == 2 && p->next->next->refcnt == 2);
    buffet_pkt_free(c, p);
    BT_CHECK(p && p->refcnt == 1 && p->next->next->refcnt == 1);
    buffet_pkt_free(c, p);
    /* errors */
    BT_CHECK(buffet_pkt_ref(NULL) == BUFFET_ERR_INVALID);
    p = buffet_pkt_alloc(c, 10);
    if (p) {
        p->refcnt = 65535;   /* as if 65535 holders had it */
        BT_CHECK(buffet_pkt_ref(p) == BUFFET_ERR_OVERFLOW && p->refcnt == 65535);
        p->refcnt = 65534;   /* one below: the last reference there is */
        BT_CHECK(buffet_pkt_ref(p) == BUFFET_OK && p->refcnt == 65535);
        p->refcnt = 1;
        buffet_pkt_free(c, p);
    }
    /* a later segment at the limit: refused, and the earlier segments get their references back */
    p = tp_three_segments(c);
    BT_CHECK(p != NULL && buffet_chain_init(&ch, buffet_debug_allocator(e.dbg)) == BUFFET_OK);
    if (p) {
        p->next->next->refcnt = 65535;
        BT_CHECK(buffet_pkt_ref(p) == BUFFET_ERR_OVERFLOW);
        BT_CHECK(p->refcnt == 1 && p->next->refcnt == 1 && p->next->next->refcnt == 65535);
        /* into a chain: the same, the chain unchanged and nothing left allocated */
        live = buffet_debug_get_stats(e.dbg).live_count;
        tp_log_clear(&e.log);
        BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_ERR_OVERFLOW);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_OVERFLOW) == 1);
        BT_CHECK(buffet_chain_len(&ch) == 0 && buffet_chain_count(&ch) == 0);
        BT_CHECK(p->refcnt == 1 && p->next->refcnt == 1 && p->next->next->refcnt == 65535);
        BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == live);
        p->next->next->refcnt = 1;
        BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_OK && buffet_chain_len(&ch) == 180);
        buffet_chain_deinit(&ch);
        BT_CHECK(p->refcnt == 1 && p->next->refcnt == 1 && p->next->next->refcnt == 1);
        buffet_pkt_free(c, p);
    }
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* A second free is caught (release builds: a free buffer's count is 0; debug builds: its state),
   logged as BUFFET_ERR_DOUBLE_FREE and counted; the buffer is not given out twice. */
static void test_double_free(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q, *r;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 10);
    buffet_pkt_free(c, p);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 0);
    buffet_pkt_free(c, p);                         /* in the cache */
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 1);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.double_frees == 1);
    q = buffet_pkt_alloc(c, 10);
    r = buffet_pkt_alloc(c, 10);
    BT_CHECK(q == p && r != p);                    /* cached once, not twice */
    buffet_pkt_free(c, q);
    buffet_pkt_free(c, r);
    buffet_pkt_cache_flush(c);
    buffet_pkt_free(c, p);                         /* in the ring */
    buffet_pkt_free_shared(p);                     /* without a cache */
    buffet_pkt_free_bulk(c, &p, 1);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 4);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).double_frees == 4);
    /* the second free of a clone */
    p = buffet_pkt_alloc(c, 10);
    q = buffet_pkt_clone(c, p);
    BT_CHECK(p && q);
    buffet_pkt_free(c, q);
    buffet_pkt_free(c, q);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 5);
    BT_CHECK(p && p->refcnt == 1);                 /* the original lost one reference, not two */
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.double_frees == 5 && s.cls[0].allocs == s.cls[0].frees);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

static void test_clone(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q, *r, *m, *mc;
    buffet_pkt_stats s;
    unsigned char tmp[256];
    tp_begin(&e);
    tp_small(&e, &d);
    d.user_size = 8;
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 100);
    if (!p) { BT_CHECK(p != NULL); buffet_pkt_cache_destroy(c); buffet_pkt_pool_destroy(pool); tp_end(&e); return; }
    BT_CHECK(tp_put(p, 100, 1));
    tp_set_meta(p, 1);
    memset(buffet_pkt_user(p), 0x11, 8);
    q = buffet_pkt_clone(c, p);
    BT_CHECK(q != NULL && q != p);
    if (q) {
        /* shares the data, has metadata of its own */
        BT_CHECK(q->buf == p->buf && buffet_pkt_data(q) == buffet_pkt_data(p));
        BT_CHECK((q->flags & BUFFET_PKT_CLONE) != 0 && q->pool == pool);
        BT_CHECK(q->len == 100 && q->pkt_len == 100 && q->nb_segs == 1 && q->refcnt == 1);
        BT_CHECK(p->refcnt == 2);
        BT_CHECK(tp_has_meta(q, 1));
        BT_CHECK(buffet_pkt_user(q) != NULL && buffet_pkt_user(q) != buffet_pkt_user(p));
        BT_CHECK(((unsigned char *)buffet_pkt_user(q))[7] == 0x11);
        tp_set_meta(q, 2);
        memset(buffet_pkt_user(q), 0x22, 8);
        BT_CHECK(tp_has_meta(p, 1) && ((unsigned char *)buffet_pkt_user(p))[0] == 0x11);
        /* writing around shared data is refused, on both sides; nothing changes */
        BT_CHECK(buffet_pkt_prepend(q, 1) == NULL && buffet_pkt_append(q, 1) == NULL);
        BT_CHECK(buffet_pkt_prepend(p, 1) == NULL && buffet_pkt_append(p, 1) == NULL);
        BT_CHECK(p->len == 100 && q->len == 100 && p->data_off == 128 && q->data_off == 128);
        /* its own view: adj and trim change only the clone */
        BT_CHECK(buffet_pkt_adj(q, 10) != NULL && buffet_pkt_trim(q, 10) == BUFFET_OK);
        BT_CHECK(q->len == 80 && p->len == 100 && tp_is_pattern(buffet_pkt_data(q), 80, 11));
        /* the original freed first: the clone's data stays intact */
        buffet_pkt_free(c, p);
        BT_CHECK(p->refcnt == 1);
        BT_CHECK(tp_is_pattern(buffet_pkt_data(q), 80, 11));
        buffet_pkt_cache_flush(c);
        s = buffet_pkt_pool_get_stats(pool);
        BT_CHECK(s.cls[1].in_use == 1 && s.cls[3].in_use == 1 && s.cls[3].allocs == 1);
        /* a clone of a clone shares the same data */
        r = buffet_pkt_clone(c, q);
        BT_CHECK(r && r->buf == p->buf && r->len == 80 && tp_has_meta(r, 2) && p->refcnt == 2);
        BT_CHECK(r && ((unsigned char *)buffet_pkt_user(r))[3] == 0x22);
        buffet_pkt_free(c, q);
        BT_CHECK(r && tp_is_pattern(buffet_pkt_data(r), 80, 11) && p->refcnt == 1);
        buffet_pkt_free(c, r);
    }
    buffet_pkt_cache_flush(c);
    tp_all_back(pool);
    /* a multi-segment packet: every segment cloned */
    m = tp_three_segments(c);
    BT_CHECK(m != NULL);
    if (m) {
        tp_set_meta(m, 3);
        mc = buffet_pkt_clone(c, m);
        BT_CHECK(mc && mc->nb_segs == 3 && mc->pkt_len == 180 && mc->next && mc->next->next);
        BT_CHECK(mc && mc->next->buf == m->next->buf && mc->next->next->buf == m->next->next->buf);
        BT_CHECK(mc && m->refcnt == 2 && m->next->refcnt == 2 && m->next->next->refcnt == 2);
        BT_CHECK(mc && tp_has_meta(mc, 3));
        BT_CHECK(mc && buffet_pkt_append(mc, 1) == NULL && buffet_pkt_append(m, 1) == NULL);
        buffet_pkt_free(c, m);
        BT_CHECK(mc && buffet_pkt_read(mc, 0, 180, tmp) == (void *)tmp && tp_is_pattern(tmp, 180, 0));
        buffet_pkt_free(c, mc);
    }
    /* bad arguments */
    BT_CHECK(buffet_pkt_clone(c, NULL) == NULL);
    p = buffet_pkt_alloc(c, 10);
    BT_CHECK(buffet_pkt_clone(NULL, p) == NULL);
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[3].allocs == 5 && s.cls[3].frees == 5 && s.cls[3].data_room == 0);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* External memory's release callback: how often, with what. */
static int tp_ext_calls;
static void *tp_ext_mem, *tp_ext_opaque;
static void tp_ext_free(void *opaque, void *mem) {
    tp_ext_calls++;
    tp_ext_mem = mem;
    tp_ext_opaque = opaque;
}

/* The clone class runs dry: NULL, counted, logged; a half-made multi-segment clone is undone. */
static void test_clone_exhaustion(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *m, *clones[64];
    unsigned char ext[256];
    size_t n = 0;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    d.class_sizes[1] = d.class_sizes[2] = 0;   /* one class: the clone class holds max * 1 */
    d.initial = d.max = 64;
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 10);
    m = buffet_pkt_alloc(c, 10);
    if (m) {   /* three segments of the one class */
        buffet_pkt *s1 = buffet_pkt_alloc(c, 10), *s2 = buffet_pkt_alloc(c, 10);
        BT_CHECK(s1 && s2 && buffet_pkt_chain(m, s1) == BUFFET_OK && buffet_pkt_chain(m, s2) == BUFFET_OK);
    }
    BT_CHECK(p && m && m->nb_segs == 3);
    if (p && m) {
        while (n < 64 && (clones[n] = buffet_pkt_clone(c, p)) != NULL) n++;
        BT_CHECK(n == 64 && p->refcnt == 65);
        tp_log_clear(&e.log);
        BT_CHECK(buffet_pkt_clone(c, p) == NULL);
        BT_CHECK(bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 1 && p->refcnt == 65);
        BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
        /* external memory needs a header of the clone class too */
        tp_ext_calls = 0;
        BT_CHECK(buffet_pkt_attach_external(c, ext, sizeof ext, tp_ext_free, NULL) == NULL);
        BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED && tp_ext_calls == 0);
        buffet_pkt_free(c, clones[--n]);
        buffet_pkt_free(c, clones[--n]);
        BT_CHECK(buffet_pkt_clone(c, m) == NULL);   /* needs three headers, two are left */
        BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
        BT_CHECK(m->refcnt == 1 && m->next->refcnt == 1 && m->next->next->refcnt == 1);
        buffet_pkt_free_bulk(c, clones, n);
        BT_CHECK(p->refcnt == 1);
    }
    buffet_pkt_free(c, p);
    buffet_pkt_free(c, m);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[1].failures == 3 && s.cls[1].created == 64);   /* two clones and the external header */
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

static void test_external(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *x, *c1, *c2;
    unsigned char *mem = (unsigned char *)malloc(4096);
    int marker = 0;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    tp_ext_calls = 0;
    /* the caller's bytes are there already: the packet starts empty at offset 0 and claims them */
    tp_pattern(mem, 4096, 9);
    x = buffet_pkt_attach_external(c, mem, 4096, tp_ext_free, &marker);
    BT_CHECK(x != NULL);
    if (x) {
        BT_CHECK((x->flags & BUFFET_PKT_EXTERNAL) != 0 && x->pool == pool && x->refcnt == 1);
        BT_CHECK(x->len == 0 && x->pkt_len == 0 && x->nb_segs == 1 && buffet_pkt_headroom(x) == 0);
        BT_CHECK(x->buf_len < 4096 && x->buf_len >= 4096 - 64 && buffet_pkt_tailroom(x) == x->buf_len);
        BT_CHECK(x->buf >= mem && x->buf + x->buf_len <= mem + 4096);
        BT_CHECK(buffet_pkt_data(x) == (void *)mem);   /* "starts empty at offset 0" */
        BT_CHECK(buffet_pkt_append(x, 100) == buffet_pkt_data(x) && x->len == 100);
        BT_CHECK(tp_is_pattern(buffet_pkt_data(x), 100, 9));   /* the bytes already there */
        BT_CHECK(buffet_pkt_prepend(x, 1) == NULL);             /* no headroom */
        BT_CHECK(buffet_pkt_append(x, x->buf_len - 100 + 1) == NULL);
        tp_pattern(buffet_pkt_data(x), 100, 42);
        /* clones share it; the callback runs once, when the last of them goes */
        c1 = buffet_pkt_clone(c, x);
        c2 = c1 ? buffet_pkt_clone(c, c1) : NULL;
        BT_CHECK(c1 && c2 && c1->buf == x->buf && c2->buf == x->buf);
        BT_CHECK(buffet_pkt_append(x, 1) == NULL);              /* shared now */
        buffet_pkt_free(c, x);
        BT_CHECK(tp_ext_calls == 0);
        BT_CHECK(c1 && tp_is_pattern(buffet_pkt_data(c1), 100, 42));
        buffet_pkt_free(c, c2);
        BT_CHECK(tp_ext_calls == 0);
        buffet_pkt_free(c, c1);
        BT_CHECK(tp_ext_calls == 1 && tp_ext_mem == (void *)mem && tp_ext_opaque == (void *)&marker);
    }
    buffet_pkt_cache_flush(c);
    BT_CHECK(buffet_pkt_pool_report_leaks(pool, NULL) == 0);
    /* a misaligned block, and no callback at all */
    x = buffet_pkt_attach_external(c, mem + 3, 1000, NULL, NULL);
    BT_CHECK(x && x->buf >= mem + 3 && x->buf + x->buf_len <= mem + 1003);
    buffet_pkt_free(c, x);
    BT_CHECK(tp_ext_calls == 1);
    /* too small: nothing is left after the shared count */
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_attach_external(c, mem, 0, tp_ext_free, NULL) == NULL);
    BT_CHECK(buffet_pkt_attach_external(c, mem, 8, tp_ext_free, NULL) == NULL);
    BT_CHECK(buffet_pkt_attach_external(c, mem, 16, tp_ext_free, NULL) == NULL);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_INVALID) == 3);
    BT_CHECK(buffet_pkt_attach_external(c, NULL, 4096, tp_ext_free, NULL) == NULL);
    BT_CHECK(buffet_pkt_attach_external(NULL, mem, 4096, tp_ext_free, NULL) == NULL);
    BT_CHECK(tp_ext_calls == 1);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    free(mem);
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Bulk and shared allocation, caches, exhaustion, growth */

static void test_bulk(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c, *small;
    buffet_pkt *pkts[32], *held[128];
    size_t i, j, n = 0;
    uint64_t failures;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 64);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, pkts, 32) == 32);
    for (i = 0; i < 32; i++) {
        BT_CHECK(pkts[i] && pkts[i]->cls == 0 && pkts[i]->len == 0 && pkts[i]->refcnt == 1);
        BT_CHECK(pkts[i] && buffet_pkt_headroom(pkts[i]) == 128 && buffet_pkt_tailroom(pkts[i]) == 64);
        for (j = 0; j < i; j++) BT_CHECK(pkts[i] != pkts[j]);
        if (pkts[i]) tp_put(pkts[i], 64, (unsigned)i);
    }
    for (i = 0; i < 32; i++) BT_CHECK(tp_is_pattern(buffet_pkt_data(pkts[i]), 64, (unsigned)i));
    buffet_pkt_free_bulk(c, pkts, 32);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].allocs == 32 && s.cls[0].frees == 32 && s.cls[0].in_use == 0);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 2, pkts, 32) == 32 && pkts[31]->cls == 2);   /* another class */
    buffet_pkt_free_bulk(c, pkts, 32);
    /* all or nothing: 100 of 128 taken, a burst of 32 gets none, 28 get theirs */
    while (n < 100 && (held[n] = buffet_pkt_alloc(c, 64)) != NULL) n++;
    BT_CHECK(n == 100);
    for (i = 0; i < 32; i++) pkts[i] = NULL;
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, pkts, 32) == 0);
    for (i = 0; i < 32; i++) BT_CHECK(pkts[i] == NULL);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 1 && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, pkts, 28) == 28);
    BT_CHECK(buffet_pkt_alloc(c, 64) == NULL);
    buffet_pkt_free_bulk(c, pkts, 28);
    buffet_pkt_free_bulk(c, held, n);
    /* bad arguments: nothing taken */
    BT_CHECK(buffet_pkt_alloc_bulk(c, 3, pkts, 4) == 0);    /* the clone class is not for data */
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 9, pkts, 4) == 0);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, NULL, 4) == 0);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, pkts, 0) == 0);
    BT_CHECK(buffet_pkt_alloc_bulk(NULL, 0, pkts, 4) == 0);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    buffet_pkt_free_bulk(c, NULL, 4);                       /* does nothing */
    buffet_pkt_cache_flush(c);
    failures = buffet_pkt_pool_get_stats(pool).cls[0].failures;
    small = tp_cache(pool, 16);
    /* more than the cache holds: never fits, so BUFFET_ERR_TOO_LARGE, logged and counted */
    tp_log_clear(&e.log);
    for (i = 0; i < 32; i++) pkts[i] = NULL;
    BT_CHECK(buffet_pkt_alloc_bulk(small, 0, pkts, 17) == 0);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_TOO_LARGE) == 1 && bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 0);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[0].failures == failures + 1);
    for (i = 0; i < 32; i++) BT_CHECK(pkts[i] == NULL);
    BT_CHECK(buffet_pkt_alloc_bulk(small, 0, pkts, 32) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(small && small->cls[0].count == 0);             /* nothing taken from the store for it */
    BT_CHECK(buffet_pkt_alloc_bulk(small, 0, pkts, 16) == 16);   /* exactly the cache: fine */
    buffet_pkt_free_bulk(small, pkts, 16);
    buffet_pkt_cache_destroy(small);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Raw buffers (buffet_pkt_alloc_bulk_raw / free_bulk_raw): refcnt 0 (to buffet they are free),
   nb_segs the lent mark, data rooms writable; made packets by buffet_pkt_init_raw; bad arguments
   refused with nothing taken; the counts of every class add up at the end. */
static void test_raw_bulk(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c, *small;
    buffet_pkt *v[64], *held[128], *p;
    size_t i, j, n = 0;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 64);
    /* a burst: distinct buffers of the class, at their places, free to buffet, rooms writable */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 1, v, 32) == 32);
    for (i = 0; i < 32; i++) {
        BT_CHECK(v[i]->cls == 1 && v[i]->pool == pool && v[i]->refcnt == 0 && v[i]->flags == 0);
        BT_CHECK(v[i]->nb_segs == BUFFET_PKT_RAW_LENT);
        BT_CHECK(v[i]->buf == buffet_pkt_raw_buf(c, v[i]) && v[i]->buf_len == 128 + 512);
        for (j = 0; j < i; j++) BT_CHECK(v[i] != v[j]);
        tp_pattern(v[i]->buf, v[i]->buf_len, (unsigned)i);   /* every byte of the room */
    }
    for (i = 0; i < 32; i++) BT_CHECK(tp_is_pattern(v[i]->buf, 640, (unsigned)i));
    s = buffet_pkt_pool_get_stats(pool);
    buffet_pkt_free_bulk_raw(c, v, 32);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[1].allocs == 32 && s.cls[1].frees == 32 && s.cls[1].in_use == 0);
    BT_CHECK(s.double_frees == 0 && s.foreign_frees == 0);
    /* a raw buffer made a packet: as buffet_pkt_alloc's, then freed as one */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, v, 4) == 4);
    buffet_pkt_init_raw(c, v[0]);
    BT_CHECK(v[0]->refcnt == 1 && v[0]->nb_segs == 1 && v[0]->next == NULL && v[0]->len == 0 && v[0]->pkt_len == 0);
    BT_CHECK(buffet_pkt_headroom(v[0]) == 128 && buffet_pkt_tailroom(v[0]) == 64 && v[0]->hash == 0);
    BT_CHECK(tp_put(v[0], 64, 7) && tp_is_pattern(buffet_pkt_data(v[0]), 64, 7));
    p = buffet_pkt_clone(c, v[0]);                        /* a packet like any other */
    BT_CHECK(p != NULL && v[0]->refcnt == 2);
    buffet_pkt_free(c, p);
    buffet_pkt_free(c, v[0]);
    /* one the caller fills itself, freed in a packet burst with one from alloc */
    v[1]->data_off = 100;
    v[1]->len = v[1]->pkt_len = 10;
    v[1]->next = NULL;
    v[1]->nb_segs = 1;
    v[1]->refcnt = 1;
    held[0] = v[1];
    held[1] = buffet_pkt_alloc(c, 10);
    BT_CHECK(held[1] != NULL);
    buffet_pkt_free_bulk(c, held, 2);
    /* a raw buffer freed as a packet: refused as a free one (a double free), still the caller's */
    tp_log_clear(&e.log);
    buffet_pkt_free(c, v[2]);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 1);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).double_frees == 1);
    BT_CHECK(buffet_pkt_ref(v[2]) == BUFFET_ERR_STATE && buffet_pkt_clone(c, v[2]) == NULL);
    /* a packet given back raw, with a clone's header: both refused */
    p = buffet_pkt_alloc(c, 10);
    held[0] = p;
    held[1] = p ? buffet_pkt_clone(c, p) : NULL;
    BT_CHECK(p && held[1]);
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk_raw(c, held, 2);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 1 && bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 1);
    BT_CHECK(p && p->refcnt == 2 && held[1]->refcnt == 1);
    buffet_pkt_free_bulk(c, held, 2);
    /* the rest back raw, with NULL entries (they do nothing) */
    held[0] = NULL; held[1] = v[2]; held[2] = NULL; held[3] = v[3];
    buffet_pkt_free_bulk_raw(c, held, 4);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].in_use == 0 && s.cls[0].allocs == s.cls[0].frees);
    /* bad arguments: nothing taken, the reason recorded */
    for (i = 0; i < 64; i++) v[i] = NULL;
    BT_CHECK(buffet_pkt_alloc_bulk_raw(NULL, 0, v, 4) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 3, v, 4) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);   /* clones */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 12, v, 4) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, NULL, 4) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, v, 0) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    for (i = 0; i < 128; i++) held[i] = NULL;
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, held, 65) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, held, (size_t)-1) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    for (i = 0; i < 64; i++) BT_CHECK(v[i] == NULL && held[i] == NULL);
    buffet_pkt_free_bulk_raw(c, NULL, 4);                /* do nothing */
    buffet_pkt_free_bulk_raw(c, v, 0);
    buffet_pkt_free_bulk_raw(c, v, 64);                   /* all NULL */
    buffet_pkt_free_bulk_raw(NULL, v, 64);
    /* exhaustion: all or nothing */
    while (n < 100 && (held[n] = buffet_pkt_alloc(c, 64)) != NULL) n++;
    BT_CHECK(n == 100);
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, v, 32) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 1);
    for (i = 0; i < 32; i++) BT_CHECK(v[i] == NULL);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, v, 28) == 28 && buffet_pkt_alloc(c, 64) == NULL);
    buffet_pkt_free_bulk_raw(c, v, 28);
    buffet_pkt_free_bulk(c, held, n);
    /* bursts beyond the cache's room, of mixed classes, through a small cache and without one */
    small = tp_cache(pool, 16);
    for (i = 0; i < 4; i++) BT_CHECK(buffet_pkt_alloc_bulk_raw(c, (unsigned)(i % 3), v + 16 * i, 16) == 16);
    buffet_pkt_free_bulk_raw(small, v, 48);
    buffet_pkt_free_bulk_raw(NULL, v + 48, 16);
    buffet_pkt_cache_destroy(small);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    for (i = 0; i <= s.nclasses; i++) BT_CHECK(s.cls[i].in_use == 0 && s.cls[i].allocs == s.cls[i].frees);
    BT_CHECK(s.double_frees == 1 && s.foreign_frees == 2);   /* the clone's header and the packet given back raw */
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* A raw buffer given back twice (alone, in a later burst, within one burst), a packet given back
   raw, and a raw buffer begun as a packet are refused in every build, not only debug ones: the
   lent mark. The good buffers of a burst that holds a bad one still go back, and a drain of the
   whole class afterwards hands out every buffer once. */
static void test_raw_bulk_twice(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *v[32], *w[8], *all[128], *p;
    size_t i, j, n = 0;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 64);
    /* a burst back, then the same burst again: all 16 refused */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 1, v, 16) == 16);
    buffet_pkt_free_bulk_raw(c, v, 16);
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk_raw(c, v, 16);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 16);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).double_frees == 16);
    /* within one burst: the first of each pair goes back, the second is refused; the buffers
       before the repeat, whose marks the inline check had cleared, go back once */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 1, v, 4) == 4);
    w[0] = v[0]; w[1] = v[1]; w[2] = v[2]; w[3] = v[0]; w[4] = v[3]; w[5] = v[3];
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk_raw(c, w, 6);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 2);
    for (i = 0; i < 4; i++) BT_CHECK(v[i]->nb_segs != BUFFET_PKT_RAW_LENT);
    /* a packet given back raw in a burst of raw buffers of its class, at a header's place: the
       address passes, the mark does not */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 1, v, 3) == 3);
    p = buffet_pkt_alloc_class(c, 1);
    BT_CHECK(p != NULL);
    w[0] = v[0]; w[1] = v[1]; w[2] = p; w[3] = v[2];
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk_raw(c, w, 4);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 1 && p && p->refcnt == 1);
    buffet_pkt_free(c, p);
    /* a raw buffer begun as a packet by the caller, freed as one, then given back raw */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 1, v, 1) == 1);
    v[0]->data_off = 128;
    v[0]->len = v[0]->pkt_len = 0;
    v[0]->next = NULL;
    v[0]->nb_segs = 1;
    v[0]->refcnt = 1;
    buffet_pkt_free(c, v[0]);
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk_raw(c, v, 1);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 1);
    /* a raw buffer half begun as a packet (refcnt written, the lent mark still there), in the
       middle of a burst: the inline path, which reads refcnt and nb_segs as one word, leaves it
       to the careful way, which refuses it as a packet; made a packet, it is freed as one */
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 1, v, 3) == 3);
    v[1]->refcnt = 1;
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk_raw(c, v, 3);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 1 && v[1]->refcnt == 1 && v[1]->nb_segs == BUFFET_PKT_RAW_LENT);
    BT_CHECK(v[0]->nb_segs == 0 && v[2]->nb_segs == 0);
    buffet_pkt_init_raw(c, v[1]);
    buffet_pkt_free(c, v[1]);
    /* the whole class drained, raw and as packets: every buffer once */
    while (n + 32 <= 128 && buffet_pkt_alloc_bulk_raw(c, 1, all + n, 32) == 32) n += 32;
    BT_CHECK(n == 128 && buffet_pkt_alloc_class(c, 1) == NULL);
    for (i = 0; i < n; i++)
        for (j = 0; j < i; j++) BT_CHECK(all[i] != all[j]);
    buffet_pkt_free_bulk_raw(c, all, n);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[1].in_use == 0 && s.cls[1].allocs == s.cls[1].frees);
    BT_CHECK(s.double_frees == 16 + 2 + 1 && s.foreign_frees == 2);   /* the packet and the half-begun one given back raw */
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* A raw buffer of another pool given back through a cache goes to its own pool; a raw buffer
   from a region grown after the cache's last refill is taken the careful way. */
static void test_raw_bulk_pools(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *a, *b;
    buffet_pkt_cache *ca, *cb;
    buffet_pkt *v[64];
    size_t i;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    d.initial = 16;   /* grows in steps of 16: several regions per class */
    a = tp_pool(&d);
    b = tp_pool(&d);
    ca = tp_cache(a, 64);
    cb = tp_cache(b, 64);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(ca, 0, v, 32) == 32 && buffet_pkt_alloc_bulk_raw(cb, 0, v + 32, 32) == 32);
    buffet_pkt_free_bulk_raw(ca, v, 64);                  /* a's and b's, through a's cache */
    BT_CHECK(ca->cls[0].count <= 64);
    buffet_pkt_cache_flush(ca);
    buffet_pkt_cache_flush(cb);
    s = buffet_pkt_pool_get_stats(b);
    BT_CHECK(s.cls[0].in_use == 0 && s.cls[0].allocs == 32 && s.cls[0].frees == 32 && s.foreign_frees == 0);
    s = buffet_pkt_pool_get_stats(a);
    BT_CHECK(s.cls[0].in_use == 0 && s.foreign_frees == 0 && s.cls[0].created >= 32);
    /* every buffer of the class out, back, out again: each comes back exactly once */
    for (i = 0; i < 2; i++) {
        size_t k;
        BT_CHECK(buffet_pkt_alloc_bulk_raw(ca, 0, v, 64) == 64);
        for (k = 1; k < 64; k++) BT_CHECK(v[k] != v[k - 1]);
        buffet_pkt_free_bulk_raw(ca, v, 64);
    }
    buffet_pkt_cache_destroy(ca);
    buffet_pkt_cache_destroy(cb);
    tp_all_back(a);
    tp_all_back(b);
    buffet_pkt_pool_destroy(a);
    buffet_pkt_pool_destroy(b);
    tp_end(&e);
}

/* buffet_pkt_free_bulk checks a burst once and moves it, and frees what it cannot move one by
   one: NULL entries, a packet listed twice (the second a double free), clones, chains, packets
   of other classes and pools, copies of headers, more than the cache holds. alloc_bulk resets
   every header field a user may have written. */
static void test_bulk_free_burst(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool, *other;
    buffet_pkt_cache *c, *oc;
    buffet_pkt *v[48], *burst[100], copy;
    size_t i, n = 0;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    other = tp_pool(&d);
    c = tp_cache(pool, 64);
    oc = tp_cache(other, 64);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, v, 32) == 32 && buffet_pkt_alloc_bulk(c, 2, v + 32, 8) == 8);
    BT_CHECK(buffet_pkt_alloc_bulk(oc, 0, v + 40, 4) == 4);
    for (i = 0; i < 44; i++) BT_CHECK(tp_put(v[i], 8, (unsigned)i));
    BT_CHECK(buffet_pkt_chain(v[1], v[2]) == BUFFET_OK);   /* v[2] is v[1]'s now */
    memcpy(&copy, v[3], sizeof copy);
    burst[n++] = v[0];
    burst[n++] = NULL;
    burst[n++] = v[1];                                     /* a chain: both segments */
    burst[n++] = &copy;                                    /* foreign: refused */
    burst[n++] = v[3];
    burst[n++] = buffet_pkt_clone(c, v[4]);                /* a clone and its original */
    burst[n++] = v[4];
    for (i = 5; i < 20; i++) burst[n++] = v[i];
    burst[n++] = v[5];                                     /* twice: a double free */
    for (i = 20; i < 44; i++) burst[n++] = v[i];           /* class 2 and the other pool's among them */
    for (i = 0; i < 30; i++) burst[n++] = NULL;
    BT_CHECK(burst[5] != NULL && n == 77);
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk(c, burst, n);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 1 && bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 1);
    buffet_pkt_cache_flush(c);
    buffet_pkt_cache_flush(oc);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.double_frees == 1 && s.foreign_frees == 1);
    for (i = 0; i <= s.nclasses; i++) BT_CHECK(s.cls[i].in_use == 0 && s.cls[i].allocs == s.cls[i].frees);
    s = buffet_pkt_pool_get_stats(other);
    BT_CHECK(s.cls[0].in_use == 0 && s.cls[0].frees == 4);
    /* more than the cache holds, and without a cache */
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, v, 48) == 48);
    for (i = 0; i < 48; i++) burst[i] = v[i];
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, v, 48) == 48);
    for (i = 0; i < 48; i++) burst[48 + i] = v[i];
    buffet_pkt_free_bulk(c, burst, 90);
    buffet_pkt_free_bulk(NULL, burst + 90, 6);
    /* headers reset: what a user wrote is gone at the next allocation */
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, v, 32) == 32);
    for (i = 0; i < 32; i++) {
        v[i]->timestamp = 77;
        v[i]->hash = 5;
        v[i]->in_port = v[i]->out_port = v[i]->vlan_tci = v[i]->packet_type = 9;
        BT_CHECK(tp_put(v[i], 30, 1));
    }
    buffet_pkt_free_bulk(c, v, 32);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, v, 32) == 32);
    for (i = 0; i < 32; i++) {
        BT_CHECK(v[i]->timestamp == 0 && v[i]->hash == 0 && v[i]->in_port == 0 && v[i]->out_port == 0);
        BT_CHECK(v[i]->vlan_tci == 0 && v[i]->packet_type == 0 && v[i]->len == 0 && v[i]->pkt_len == 0);
        BT_CHECK(v[i]->refcnt == 1 && v[i]->nb_segs == 1 && v[i]->next == NULL && buffet_pkt_headroom(v[i]) == 128);
    }
    buffet_pkt_free_bulk(c, v, 32);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_cache_destroy(oc);
    tp_all_back(pool);
    tp_all_back(other);
    buffet_pkt_pool_destroy(pool);
    buffet_pkt_pool_destroy(other);
    tp_end(&e);
}

#if BUFFET_DEBUG >= 1
/* Debug builds take the careful way for every raw buffer: a second put, a packet given back raw
   and a pointer into a buffer are caught even alone in a burst; the history names raw calls. */
static void test_raw_bulk_debug(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *v[8], *one[1], *p;
    char text[4096];
    FILE *f;
    size_t got;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 64);
    BT_CHECK(buffet_pkt_alloc_bulk_raw(c, 0, v, 8) == 8);
    buffet_pkt_free_bulk_raw(c, v, 4);
    tp_log_clear(&e.log);
    buffet_pkt_free_bulk_raw(c, v + 3, 1);                  /* again */
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_DOUBLE_FREE) == 1 && strstr(e.log.last_msg, "test_packet.c:") != NULL);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).double_frees == 1);
    p = buffet_pkt_alloc(c, 10);                            /* a packet, alone in a raw burst */
    one[0] = p;
    buffet_pkt_free_bulk_raw(c, one, 1);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 1 && p && p->refcnt == 1);
    buffet_pkt_free(c, p);
    one[0] = (buffet_pkt *)(v[4]->buf + 64);                /* a pointer into a raw buffer's room */
    memset(v[4]->buf, 0, v[4]->buf_len);
    buffet_pkt_free_bulk_raw(c, one, 1);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_FOREIGN) == 1);
    f = tmpfile();
    BT_CHECK(f != NULL);
    if (f) {
        BT_CHECK(buffet_pkt_history_dump(v[0], f) >= 2);
        rewind(f);
        got = fread(text, 1, sizeof text - 1, f);
        text[got] = 0;
        BT_CHECK(strstr(text, "alloc raw") != NULL && strstr(text, "free raw") != NULL);
        fclose(f);
    }
    buffet_pkt_free_bulk_raw(c, v + 4, 4);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}
#endif

static void test_shared_alloc(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    buffet_pkt_stats s;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    p = buffet_pkt_alloc_shared(pool, 100);
    BT_CHECK(p && p->cls == 1 && buffet_pkt_headroom(p) == 128 && buffet_pkt_tailroom(p) == 512 && p->refcnt == 1);
    BT_CHECK(p && tp_put(p, 512, 4) && tp_is_pattern(buffet_pkt_data(p), 512, 4));
    s = buffet_pkt_pool_get_stats(pool);   /* no cache: counted at once */
    BT_CHECK(s.cls[1].allocs == 1 && s.cls[1].in_use == 1);
    buffet_pkt_free_shared(p);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[1].frees == 1 && s.cls[1].in_use == 0);
    BT_CHECK(buffet_pkt_alloc_shared(NULL, 10) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_alloc_shared(pool, 2049) == NULL);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_TOO_LARGE) == 1 && bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 0);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    buffet_pkt_free_shared(NULL);
    /* mixed with a cache either way */
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 10);
    q = buffet_pkt_alloc_shared(pool, 10);
    BT_CHECK(p && q && p != q);
    buffet_pkt_free_shared(p);
    buffet_pkt_free(c, q);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[2].failures == 1 && s.cls[0].allocs == 2 && s.cls[0].frees == 2);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Statistics per class after flushes: allocs, frees, in use, failures, cache hit rate,
   utilisation. */
static void test_stats(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p[40], *cl;
    buffet_pkt_stats s;
    size_t i;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 16);   /* a refill takes 8 */
    for (i = 0; i < 20; i++) BT_CHECK((p[i] = buffet_pkt_alloc(c, 10)) != NULL);
    cl = buffet_pkt_clone(c, p[0]);
    BT_CHECK(cl != NULL);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(strcmp(s.name, "small") == 0 && s.nclasses == 3 && !s.huge_pages);
    BT_CHECK(s.cls[0].data_room == 64 && s.cls[1].data_room == 512 && s.cls[2].data_room == 2048);
    BT_CHECK(s.cls[0].created == 64 && s.cls[0].max == 128);
    BT_CHECK(s.cls[0].allocs == 20 && s.cls[0].frees == 0 && s.cls[0].in_use == 20);
    BT_CHECK(s.cls[0].cache_misses == 3);                 /* refills at the 1st, 9th, 17th */
    BT_CHECK(s.cls[0].cache_hit_rate > 0.849 && s.cls[0].cache_hit_rate < 0.851);
    BT_CHECK(s.cls[0].utilisation > 20.0 / 128 - 1e-9 && s.cls[0].utilisation < 20.0 / 128 + 1e-9);
    BT_CHECK(s.cls[1].allocs == 0 && s.cls[1].in_use == 0 && s.cls[1].cache_hit_rate == 0.0);
    BT_CHECK(s.cls[3].allocs == 1 && s.cls[3].in_use == 1 && s.cls[3].max == 3 * 128);
    BT_CHECK(s.double_frees == 0 && s.foreign_frees == 0 && s.corruptions == 0);
    BT_CHECK(s.region_bytes >= 64 * (s.cls[0].stride + s.cls[1].stride + s.cls[2].stride));
    buffet_pkt_free(c, cl);
    for (i = 0; i < 20; i++) buffet_pkt_free(c, p[i]);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].allocs == 20 && s.cls[0].frees == 20 && s.cls[0].in_use == 0 && s.cls[0].utilisation == 0.0);
    BT_CHECK(s.cls[3].frees == 1 && s.cls[3].in_use == 0);
    /* failures */
    BT_CHECK(buffet_pkt_alloc(c, 5000) == NULL);
    for (i = 0; i < 40; i++) p[i] = buffet_pkt_alloc(c, 2000);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[2].failures == 1 && s.cls[2].in_use == 40 && s.cls[2].allocs == 40);
    for (i = 0; i < 40; i++) buffet_pkt_free(c, p[i]);
    buffet_pkt_cache_destroy(c);   /* merges too */
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[2].frees == 40 && s.cls[2].in_use == 0);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    s = buffet_pkt_pool_get_stats(NULL);
    BT_CHECK(s.nclasses == 0 && s.name == NULL);
    tp_end(&e);
}

/* A class at its max: NULL, a failure counted and logged, and everything back at the end. */
static void test_exhaustion(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p[65];
    buffet_pkt_stats s;
    size_t i, n = 0;
    const char *why = NULL;
    tp_begin(&e);
    tp_small(&e, &d);
    d.class_sizes[1] = d.class_sizes[2] = 0;
    d.initial = d.max = 64;
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    while (n < 65 && (p[n] = buffet_pkt_alloc(c, 64)) != NULL) n++;
    BT_CHECK(n == 64);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 1);
    BT_CHECK(buffet_alloc_error(&why) == BUFFET_ERR_EXHAUSTED && why && *why);   /* recorded, with a reason */
    BT_CHECK(buffet_pkt_alloc(c, 1) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_pkt_alloc_shared(pool, 1) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 3 && bt_logged(&e.log, BUFFET_ERR_TOO_LARGE) == 0);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].created == 64 && s.cls[0].in_use == 64 && s.cls[0].failures == 3);
    BT_CHECK(s.cls[0].utilisation > 0.999);
    BT_CHECK(buffet_pkt_pool_report_leaks(pool, NULL) == 64);
    /* by class and in bulk: the same reason, each counted */
    BT_CHECK(buffet_pkt_alloc_class(c, 0) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_pkt_alloc_bulk(c, 0, &p[64], 1) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    buffet_pkt_cache_flush(c);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[0].failures == 5 && bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 5);
    for (i = 0; i < n; i++) buffet_pkt_free(c, p[i]);
    p[0] = buffet_pkt_alloc(c, 64);   /* there again */
    BT_CHECK(p[0] != NULL);
    buffet_pkt_free(c, p[0]);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].created == 64 && s.cls[0].failures == 5);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* initial < max: the class grows `grow` buffers at a time, up to max and no further. */
static void test_growth(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p[260];
    buffet_pkt_stats s;
    size_t i, n = 0, region = 0;
    tp_begin(&e);
    tp_small(&e, &d);
    d.class_sizes[2] = 0;
    d.initial = 64;
    d.grow = 64;
    d.max = 256;
    pool = tp_pool(&d);
    c = tp_cache(pool, 16);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].created == 64 && s.cls[1].created == 64 && s.cls[0].max == 256);
    region = s.region_bytes;
    for (n = 0; n < 260; n++) {
        p[n] = buffet_pkt_alloc(c, 64);
        if (!p[n]) break;
        s = buffet_pkt_pool_get_stats(pool);
        /* exactly as many as needed, in steps of 64 */
        if (s.cls[0].created != (n / 64 + 1) * 64) {
            BT_CHECK(s.cls[0].created == (n / 64 + 1) * 64);
            fprintf(stderr, "after %zu allocations: %zu created\n", n + 1, s.cls[0].created);
            break;
        }
    }
    BT_CHECK(n == 256);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[0].created == 256 && s.cls[1].created == 64);   /* the other class did not grow */
    BT_CHECK(s.region_bytes == region + 3 * 64 * s.cls[0].stride);
    BT_CHECK(s.cls[0].failures == 1 && bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 1);
    for (i = 0; i < n; i++) buffet_pkt_free(c, p[i]);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    /* grow 0: steps of `initial` */
    tp_small(&e, &d);
    d.initial = 64;
    d.max = 192;
    pool = tp_pool(&d);
    c = tp_cache(pool, 16);
    for (n = 0; n < 65; n++) p[n] = buffet_pkt_alloc(c, 2048);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(p[64] != NULL && s.cls[2].created == 128);
    for (i = 0; i < n; i++) buffet_pkt_free(c, p[i]);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Placement: huge pages, NUMA */

/* Regions of 2 MiB or more use explicit huge pages when some are free, never with
   no_huge_pages; either way the buffers work. */
static void test_huge_pages(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_stats s;
    buffet_pkt *p[16];
    long free_before, free_during;
    size_t i;
    tp_begin(&e);
    tp_small(&e, &d);
    d.class_sizes[0] = 2048;
    d.class_sizes[1] = d.class_sizes[2] = 0;
    d.initial = d.max = 1024;    /* 1024 buffers of 2048 bytes and more: a region over 2 MiB */
    d.no_huge_pages = true;
    pool = tp_pool(&d);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(!s.huge_pages && s.region_bytes >= ((size_t)2 << 20));
    for (i = 0; i < 16; i++) {
        p[i] = buffet_pkt_alloc_shared(pool, 2048);
        BT_CHECK(p[i] && tp_put(p[i], 2048, (unsigned)i));
    }
    for (i = 0; i < 16; i++) {
        BT_CHECK(tp_is_pattern(buffet_pkt_data(p[i]), 2048, (unsigned)i));
        buffet_pkt_free_shared(p[i]);
    }
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    /* the same pool with huge pages allowed */
    free_before = tp_huge_pages_free();
    if (free_before >= 2 && !tp_hugetlb_maps()) {
        tp_end(&e);
        BT_SKIP("hugetlb", "huge pages are free, but this process cannot map one (qemu's user mode refuses MAP_HUGETLB)");
    }
    d.no_huge_pages = false;
    pool = tp_pool(&d);
    s = buffet_pkt_pool_get_stats(pool);
    free_during = tp_huge_pages_free();
    for (i = 0; i < 16; i++) {
        p[i] = buffet_pkt_alloc_shared(pool, 2048);
        BT_CHECK(p[i] && tp_put(p[i], 2048, (unsigned)i + 3));
    }
    for (i = 0; i < 16; i++) {
        BT_CHECK(tp_is_pattern(buffet_pkt_data(p[i]), 2048, (unsigned)i + 3));
        buffet_pkt_free_shared(p[i]);
    }
    tp_all_back(pool);
    if (free_before >= 2) {
        BT_CHECK(s.huge_pages);
        BT_CHECK(s.region_bytes >= ((size_t)2 << 20));   /* whole huge pages, the rest in small ones */
        BT_CHECK(free_during < free_before);   /* the region took some of them */
        if (!s.huge_pages) fprintf(stderr, "%ld huge pages were free, the pool used none\n", free_before);
    } else {
        BT_CHECK(!s.huge_pages);
    }
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
    if (free_before == 0) BT_SKIP("hugetlb", "no huge pages free (HugePages_Free 0; reserve some in /proc/sys/vm/nr_hugepages)");
    if (free_before < 2) BT_SKIP("hugetlb", "one huge page free; the test pool's region needs two");
}

/* Status of the page holding addr per move_pages(2) (a node, or -errno); false when the call
   itself fails. */
static bool tp_move_pages_node(const void *addr, int *status) {
    void *page = (void *)((uintptr_t)addr & ~(uintptr_t)4095);
    *status = -1;
    return syscall(SYS_move_pages, 0, 1UL, &page, NULL, status, 0) == 0;
}

/* A pool for desc_node (a desc.numa_node value) that must land on want_node (-1: the caller's). */
static void tp_numa_pool(tp_env *e, int desc_node, int want_node, bool *move_pages_ok) {
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_stats s;
    buffet_pkt *p;
    int status = -1, cur_before = buffet_pkt_numa_current();
    tp_small(e, &d);
    d.numa_node = desc_node;
    pool = tp_pool(&d);
    if (!pool) return;
    s = buffet_pkt_pool_get_stats(pool);
    if (want_node >= 0) BT_CHECK(s.numa_node == want_node);
    else BT_CHECK(s.numa_node == cur_before || s.numa_node == buffet_pkt_numa_current());   /* it may move */
    p = buffet_pkt_alloc_shared(pool, 2048);
    BT_CHECK(p != NULL);
    if (p) {
        memset(p->buf, 0x5C, p->buf_len);   /* touched: the page is placed now */
        BT_CHECK(buffet_pkt_numa_node_of(buffet_pkt_data(p)) == s.numa_node);
        BT_CHECK(buffet_pkt_numa_node_of(p) == s.numa_node);
        if (tp_move_pages_node(buffet_pkt_data(p), &status)) {
            if (status != s.numa_node) fprintf(stderr, "move_pages: node %d, pool node %d\n", status, s.numa_node);
            BT_CHECK(status == s.numa_node);
        } else {
            *move_pages_ok = false;
        }
        buffet_pkt_free_shared(p);
    }
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
}

static void test_numa(void) {
    tp_env e;
    int nodes = buffet_pkt_numa_nodes(), cur = buffet_pkt_numa_current();
    bool move_pages_ok = true;
    int x = 0;
    errno = 0;
    if (buffet_pkt_numa_node_of(&x) < 0 && errno == ENOSYS)   /* qemu's user mode has no such call */
        BT_SKIP("numa", "get_mempolicy(2) is not implemented here: the node of a page cannot be read");
    tp_begin(&e);
    BT_CHECK(nodes >= 1);
    BT_CHECK(cur >= 0 && cur < nodes);
    BT_CHECK(buffet_pkt_numa_node_of(&x) >= 0 && buffet_pkt_numa_node_of(&x) < nodes);
    tp_numa_pool(&e, BUFFET_PKT_NODE(0), 0, &move_pages_ok);                 /* node 0 */
    tp_numa_pool(&e, 0, -1, &move_pages_ok);                                /* the caller's */
    if (nodes > 1) tp_numa_pool(&e, BUFFET_PKT_NODE(nodes - 1), nodes - 1, &move_pages_ok);
    tp_end(&e);
    if (!move_pages_ok) BT_SKIP("numa", "move_pages(2) is not allowed here: no cross-check of the placement");
}

/* ---------------------------------------------------------------------------------------------
   Observability: JSON, Prometheus text, watermarks, leak reports, the registry */

#define TP_ODD_NAME "q\"b\\s"   /* a quote and a backslash */

/* A pool named TP_ODD_NAME with 5 packets of class 2048 allocated and freed, and 2 still out. */
static buffet_pkt_pool *tp_stats_pool(tp_env *e, buffet_pkt **out2) {
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p[5];
    size_t i;
    tp_small(e, &d);
    d.name = TP_ODD_NAME;
    pool = tp_pool(&d);
    if (!pool) return NULL;
    c = tp_cache(pool, 0);
    for (i = 0; i < 5; i++) p[i] = buffet_pkt_alloc(c, 1500);
    for (i = 0; i < 3; i++) buffet_pkt_free(c, p[i]);
    out2[0] = p[3];
    out2[1] = p[4];
    buffet_pkt_cache_destroy(c);
    return pool;
}

static void test_stats_json(void) {
    tp_env e;
    buffet_pkt_pool *pool;
    buffet_pkt *out[2];
    char *json, small[10], path[64], cmd[512], line[256];
    size_t len;
    const char *py;
    tp_begin(&e);
    pool = tp_stats_pool(&e, out);
    if (!pool) { tp_end(&e); return; }
    len = buffet_pkt_pool_stats_json(pool, NULL, 0);
    BT_CHECK(len > 100);
    json = (char *)malloc(len + 1);
    BT_CHECK(buffet_pkt_pool_stats_json(pool, json, len + 1) == len && strlen(json) == len);
    BT_CHECK(tp_json_ok(json));
    if (!tp_json_ok(json)) fprintf(stderr, "not JSON: %s\n", json);
    BT_CHECK(strstr(json, "\"pool\":\"q\\\"b\\\\s\"") != NULL);   /* escaped */
    BT_CHECK(strstr(json, "\"class\":\"2048\"") != NULL && strstr(json, "\"class\":\"clone\"") != NULL);
    BT_CHECK(strstr(json, "\"allocs\":5,\"frees\":3") != NULL);
    /* too small a buffer: truncated, terminated, the full length returned */
    BT_CHECK(buffet_pkt_pool_stats_json(pool, small, sizeof small) == len && strlen(small) == sizeof small - 1);
    BT_CHECK(strncmp(small, json, sizeof small - 1) == 0);
    /* a real parser */
    py = tp_python("json");
    if (py && tp_write_temp(json, path, sizeof path)) {
        snprintf(cmd, sizeof cmd, "%s -c 'import json,sys; d=json.load(open(sys.argv[1])); "
                 "c=[k for k in d[\"classes\"] if k[\"class\"]==\"2048\"][0]; "
                 "print(d[\"pool\"], len(d[\"classes\"]), c[\"allocs\"], c[\"in_use\"])' %s", py, path);
        BT_CHECK(tp_run_line(cmd, line, sizeof line));
        BT_CHECK(strcmp(line, TP_ODD_NAME " 4 5 2") == 0);
        if (strcmp(line, TP_ODD_NAME " 4 5 2") != 0) fprintf(stderr, "python json said: %s\n", line);
        unlink(path);
    }
    free(json);
    /* no pool: still JSON */
    len = buffet_pkt_pool_stats_json(NULL, line, sizeof line);
    BT_CHECK(len < sizeof line && tp_json_ok(line));
    buffet_pkt_free_shared(out[0]);
    buffet_pkt_free_shared(out[1]);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
    if (!py) BT_SKIP("python3", "python3 not installed: JSON checked by the built-in checker only");
}

/* The Prometheus text exposition, read by prometheus_client's own parser. */
static const char tp_prom_script[] =
    "import sys\n"
    "from prometheus_client.parser import text_string_to_metric_families\n"
    "n = 0\n"
    "allocs = -1\n"
    "pools = set()\n"
    "for fam in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
    "    for s in fam.samples:\n"
    "        n += 1\n"
    "        pools.add(s.labels['pool'])\n"
    "        if s.name == 'buffet_pkt_allocs_total' and s.labels['class'] == '2048':\n"
    "            allocs = s.value\n"
    "print(n, int(allocs), len(pools), list(pools)[0] == sys.argv[2])\n";

static void test_stats_prometheus(void) {
    tp_env e;
    buffet_pkt_pool *pool;
    buffet_pkt *out[2];
    char *text, small[16], path[64], script[64], cmd[512], line[256];
    const char *py, *l;
    size_t len;
    bool lines_ok = true;
    tp_begin(&e);
    pool = tp_stats_pool(&e, out);
    if (!pool) { tp_end(&e); return; }
    len = buffet_pkt_pool_stats_prometheus(pool, NULL, 0);
    text = (char *)malloc(len + 1);
    BT_CHECK(buffet_pkt_pool_stats_prometheus(pool, text, len + 1) == len && strlen(text) == len);
    BT_CHECK(strstr(text, "buffet_pkt_allocs_total{pool=\"q\\\"b\\\\s\",class=\"2048\"} 5\n") != NULL);
    BT_CHECK(strstr(text, "buffet_pkt_buffers_in_use{pool=\"q\\\"b\\\\s\",class=\"2048\"} 2\n") != NULL);
    BT_CHECK(strstr(text, "# TYPE buffet_pkt_allocs_total counter\n") != NULL);
    for (l = text; *l; l = strchr(l, '\n') + 1) {   /* comments and samples, each line ended */
        if (strncmp(l, "# HELP ", 7) != 0 && strncmp(l, "# TYPE ", 7) != 0 && strncmp(l, "buffet_pkt_", 11) != 0) lines_ok = false;
        if (!strchr(l, '\n')) { lines_ok = false; break; }
    }
    BT_CHECK(lines_ok);
    BT_CHECK(buffet_pkt_pool_stats_prometheus(pool, small, sizeof small) == len && strlen(small) == sizeof small - 1);
    BT_CHECK(buffet_pkt_pool_stats_prometheus(NULL, small, sizeof small) == 0 && small[0] == '\0');
    py = tp_python("prometheus_client");
    if (py && tp_write_temp(text, path, sizeof path)) {
        if (tp_write_temp(tp_prom_script, script, sizeof script)) {
            snprintf(cmd, sizeof cmd, "%s %s %s '%s'", py, script, path, TP_ODD_NAME);
            BT_CHECK(tp_run_line(cmd, line, sizeof line));
            /* 9 metrics for each of the 3 classes and the clone class */
            BT_CHECK(strcmp(line, "36 5 1 True") == 0);
            if (strcmp(line, "36 5 1 True") != 0) fprintf(stderr, "prometheus_client said: %s\n%s", line, text);
            unlink(script);
        }
        unlink(path);
    }
    free(text);
    buffet_pkt_free_shared(out[0]);
    buffet_pkt_free_shared(out[1]);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
    if (!py) BT_SKIP("prometheus", "python3-prometheus-client not installed");
}

typedef struct tp_wm {
    buffet_pkt_pool *pool;
    unsigned high, low, other;
    size_t last_in_use, last_max;
    unsigned last_cls;
} tp_wm;

static void tp_wm_fn(void *user, buffet_pkt_pool *pool, unsigned cls, size_t in_use, size_t max, bool high) {
    tp_wm *w = (tp_wm *)user;
    buffet_pkt_stats s = buffet_pkt_pool_get_stats(pool);   /* called without the pool's lock */
    if (pool != w->pool || s.nclasses != 1) w->other++;
    if (high) w->high++;
    else w->low++;
    w->last_cls = cls;
    w->last_in_use = in_use;
    w->last_max = max;
}

/* Take packets until n are out, or give back until n are out; then flush (the counters merge). */
static void tp_hold(buffet_pkt_cache *c, buffet_pkt **held, size_t *n, size_t want) {
    while (*n < want) held[(*n)++] = buffet_pkt_alloc(c, 10);
    while (*n > want) buffet_pkt_free(c, held[--(*n)]);
    buffet_pkt_cache_flush(c);
}

/* The callback fires once crossing the high mark, once crossing back under the low one. */
static void test_watermark(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *held[64];
    size_t n = 0;
    tp_wm w;
    tp_begin(&e);
    memset(&w, 0, sizeof w);
    tp_small(&e, &d);
    d.class_sizes[1] = d.class_sizes[2] = 0;
    d.initial = d.max = 64;
    d.watermark_high = 50;   /* 32 of 64 */
    d.watermark_low = 25;    /* 16 of 64 */
    d.on_watermark = tp_wm_fn;
    d.watermark_user = &w;
    pool = tp_pool(&d);
    w.pool = pool;
    c = tp_cache(pool, 8);
    tp_hold(c, held, &n, 31);
    BT_CHECK(w.high == 0 && w.low == 0);
    tp_hold(c, held, &n, 40);
    BT_CHECK(w.high == 1 && w.low == 0);
    BT_CHECK(w.last_cls == 0 && w.last_max == 64 && w.last_in_use >= 32 && w.last_in_use <= 40);
    tp_hold(c, held, &n, 60);          /* still above: no second call */
    tp_hold(c, held, &n, 20);          /* between the marks: nothing */
    BT_CHECK(w.high == 1 && w.low == 0);
    tp_hold(c, held, &n, 10);
    BT_CHECK(w.high == 1 && w.low == 1 && w.last_in_use <= 16);
    tp_hold(c, held, &n, 5);
    BT_CHECK(w.high == 1 && w.low == 1);
    tp_hold(c, held, &n, 33);          /* crossing again fires again */
    BT_CHECK(w.high == 2 && w.low == 1);
    tp_hold(c, held, &n, 0);
    BT_CHECK(w.high == 2 && w.low == 2 && w.other == 0);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    /* the default marks: 90 and 70 percent */
    memset(&w, 0, sizeof w);
    tp_small(&e, &d);
    d.class_sizes[1] = d.class_sizes[2] = 0;
    d.initial = d.max = 64;
    d.on_watermark = tp_wm_fn;
    d.watermark_user = &w;
    pool = tp_pool(&d);
    w.pool = pool;
    c = tp_cache(pool, 8);
    tp_hold(c, held, &n, 57);          /* 57 * 100 < 64 * 90 */
    BT_CHECK(w.high == 0);
    tp_hold(c, held, &n, 58);
    BT_CHECK(w.high == 1);
    tp_hold(c, held, &n, 45);          /* 45 * 100 > 64 * 70 */
    BT_CHECK(w.low == 0);
    tp_hold(c, held, &n, 44);
    BT_CHECK(w.low == 1);
    tp_hold(c, held, &n, 0);
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Buffers still out: counted (those in caches too, until flushed), written to a FILE, and
   reported when the pool is destroyed with them out; such a pool is released only when the
   last of them comes back. */
static void test_leak_report(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    FILE *f;
    char text[4096];
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 10);
    q = buffet_pkt_alloc(c, 1000);
    BT_CHECK(p && q);
    buffet_pkt_free(c, q);
    BT_CHECK(buffet_pkt_pool_report_leaks(pool, NULL) >= 2);   /* the cache holds some */
    buffet_pkt_cache_flush(c);
    f = tmpfile();
    BT_CHECK(f != NULL);
    if (f) {
        BT_CHECK(buffet_pkt_pool_report_leaks(pool, f) == 1);
        tp_read_back(f, text, sizeof text);
        BT_CHECK(strstr(text, "1 buffer out") != NULL);
        fclose(f);
    }
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_pool_report_leaks(pool, NULL) == 1);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_LEAK) >= 1);          /* "to out and the log" */
    BT_CHECK(buffet_pkt_pool_report_leaks(NULL, NULL) == 0);
    buffet_pkt_cache_destroy(c);
    tp_log_clear(&e.log);
    buffet_pkt_pool_destroy(pool);                               /* p still out */
    /* a warning with the count (debug builds: each buffer too, as a leak) */
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 1 && strstr(e.log.all, "small") != NULL);
    if (BUFFET_DEBUG) BT_CHECK(bt_logged(&e.log, BUFFET_ERR_LEAK) >= 1);
    if (bt_logged(&e.log, BUFFET_ERR_STATE) == 0) fprintf(stderr, "destroy with a buffer out logged nothing\n");
    /* destroy never frees under a user: p is still good, the pool's memory still there */
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count > 0);
    if (p) {
        BT_CHECK(tp_put(p, 64, 3) && tp_is_pattern(buffet_pkt_data(p), 64, 3));
        buffet_pkt_free_shared(p);                               /* the last one: the pool goes now */
    }
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
    tp_end(&e);                                                  /* the pool's own memory is all gone */
}

/* A registry of the test's own: the environment's allocator and log. */
static buffet_result tp_registry(tp_env *e, buffet_registry **r) {
    buffet_registry_desc rd;
    memset(&rd, 0, sizeof rd);
    rd.allocator = buffet_debug_allocator(e->dbg);
    rd.log = tp_logger(e);
    return buffet_registry_create(r, &rd);
}

/* The pool as the registry's provider of network buffers. */
static void test_registry(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_registry *r = NULL;
    buffet_request req;
    buffet_buf *b = NULL;
    buffet_pkt_stats s;
    char why[1024];
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    BT_CHECK(tp_registry(&e, &r) == BUFFET_OK);
    BT_CHECK(buffet_pkt_pool_register(pool, r) == BUFFET_OK);
    BT_CHECK(buffet_pkt_pool_register(pool, r) == BUFFET_ERR_INVALID);   /* the name is taken */
    BT_CHECK(buffet_pkt_pool_register(NULL, r) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pkt_pool_register(pool, NULL) == BUFFET_ERR_INVALID);
    memset(&req, 0, sizeof req);
    req.usage = BUFFET_USAGE_NETWORK | BUFFET_USAGE_HOST_WRITE;
    req.size = 1000;
    req.allocator = buffet_debug_allocator(e.dbg);
    BT_CHECK(buffet_explain(r, &req, why, sizeof why) > 0 && strstr(why, "chose 'small'") != NULL);
    BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_OK && b != NULL);
    if (b) {
        BT_CHECK(b->data != NULL && b->size == 1000);
        tp_pattern(b->data, 1000, 6);
        s = buffet_pkt_pool_get_stats(pool);
        BT_CHECK(s.cls[2].allocs == 1 && s.cls[2].in_use == 1);   /* from the 2048 class */
        buffet_buf_unref(b);
        s = buffet_pkt_pool_get_stats(pool);
        BT_CHECK(s.cls[2].frees == 1 && s.cls[2].in_use == 0);
    }
    /* bigger than the largest class: some other provider serves it */
    req.size = 4096;
    b = NULL;
    BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_OK && b != NULL);
    buffet_buf_unref(b);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[2].allocs == 1);
    buffet_registry_destroy(r);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* A free buffer's data room is poisoned for ASan (and, in debug builds, no-access for valgrind);
   its header stays readable. */
static void test_poison(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 100);
    BT_CHECK(p != NULL);
    if (p) {
#if BUFFET_TRACK_ASAN
        BT_CHECK(!__asan_address_is_poisoned(p->buf) && !__asan_address_is_poisoned(p->buf + p->buf_len - 1));
#endif
        buffet_pkt_free(c, p);   /* into the cache */
        BT_CHECK(p->refcnt == 0 && p->pool == pool);   /* the header: readable */
#if BUFFET_TRACK_ASAN
        BT_CHECK(__asan_address_is_poisoned(p->buf) && __asan_address_is_poisoned(p->buf + p->buf_len - 1));
#endif
#if BUFFET_TRACK_VALGRIND
        if (RUNNING_ON_VALGRIND) {
            unsigned char vbits[16];
            BT_CHECK(VALGRIND_GET_VBITS(p->buf + 100, vbits, sizeof vbits) == 3);   /* 3: not addressable */
        }
#endif
        q = buffet_pkt_alloc(c, 100);   /* the same buffer, usable again */
        BT_CHECK(q == p);
#if BUFFET_TRACK_ASAN
        BT_CHECK(!__asan_address_is_poisoned(q->buf + 200));
#endif
        if (q) tp_put(q, 512, 1);
        buffet_pkt_cache_flush(c);
        buffet_pkt_free_shared(q);      /* into the ring */
#if BUFFET_TRACK_ASAN
        BT_CHECK(__asan_address_is_poisoned(p->buf + 200));
#endif
        BT_CHECK(p->refcnt == 0);
    }
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* A destroyed pool leaves no ASan poison behind: the next mapping at the same addresses (the
   kernel hands them out again at once) belongs to someone else, who must be able to use it. */
static void test_destroy_unpoisons(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    size_t bytes;
    void *m, *bad;
    tp_begin(&e);
    tp_small(&e, &d);
    d.class_sizes[0] = 2048;
    d.class_sizes[1] = d.class_sizes[2] = 0;
    d.initial = d.max = 64;
    pool = tp_pool(&d);
    bytes = buffet_pkt_pool_get_stats(pool).region_bytes;
    buffet_pkt_pool_destroy(pool);
    m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    BT_CHECK(m != MAP_FAILED);
    if (m != MAP_FAILED) {
#if BUFFET_TRACK_ASAN
        bad = __asan_region_is_poisoned(m, bytes);
        BT_CHECK(bad == NULL);
        if (bad) {
            fprintf(stderr, "fresh mapping %p..%p still poisoned at %p after buffet_pkt_pool_destroy\n", m,
                    (void *)((char *)m + bytes), bad);
            ASAN_UNPOISON_MEMORY_REGION(m, bytes);
        }
#else
        bad = NULL;
        (void)bad;
#endif
        memset(m, 1, bytes);   /* ours to use */
        munmap(m, bytes);
    }
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   A failing bookkeeping allocator at every allocation point: a clean error, nothing leaked */

static void test_fail_pool_create(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_failing f;
    buffet_result r = BUFFET_ERR_NOMEM;
    uint64_t at, failed, needed = 0;
    int after;
    tp_begin(&e);
    for (after = 0; after <= 1; after++) {   /* the Nth allocation fails; then also every later one */
        failed = 0;
        for (at = 1, r = BUFFET_ERR_NOMEM; at < 500 && r != BUFFET_OK; at++) {
            tp_small(&e, &d);
            d.user_size = 32;
            buffet_failing_init(&f, buffet_debug_allocator(e.dbg), at, after != 0);
            d.allocator = buffet_failing_allocator(&f);
            pool = (buffet_pkt_pool *)&pool;
            r = buffet_pkt_pool_create(&pool, &d);
            if (r == BUFFET_OK) {
                BT_CHECK(f.failures == 0 && pool != NULL);
                needed = f.allocs;
                buffet_pkt_pool_destroy(pool);
            } else {
                BT_CHECK(r == BUFFET_ERR_NOMEM && pool == NULL && f.failures >= 1);
                failed++;
            }
            BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
        }
        BT_CHECK(r == BUFFET_OK);
        /* every allocation create makes is a point that fails cleanly: the pool, a ring per
           data class (the clone class's comes with its first clone), a region per class
           (debug builds: and its records) */
        BT_CHECK(failed == needed && needed >= 1 + 3 + 3);
    }
    /* cache_create: its one allocation */
    tp_small(&e, &d);
    buffet_failing_init(&f, buffet_debug_allocator(e.dbg), 0, false);
    d.allocator = buffet_failing_allocator(&f);
    pool = tp_pool(&d);
    if (pool) {
        f.fail_at = f.allocs + 1;
        c = (buffet_pkt_cache *)&c;
        BT_CHECK(buffet_pkt_cache_create(&c, pool, 0) == BUFFET_ERR_NOMEM && c == NULL);
        BT_CHECK(f.failures == 1);
        f.fail_at = 0;
        c = tp_cache(pool, 0);
        /* the first clone allocates the clone class's ring: refused cleanly when that fails */
        {
            buffet_pkt *p = buffet_pkt_alloc(c, 10), *q;
            BT_CHECK(p != NULL);
            f.fail_at = f.allocs + 1;
            BT_CHECK(buffet_pkt_clone(c, p) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
            BT_CHECK(f.failures == 2 && p && p->refcnt == 1);
            f.fail_at = 0;
            q = buffet_pkt_clone(c, p);
            BT_CHECK(q != NULL && p && p->refcnt == 2);
            buffet_pkt_free(c, q);
            buffet_pkt_free(c, p);
        }
        buffet_pkt_cache_destroy(c);
        tp_all_back(pool);
        buffet_pkt_pool_destroy(pool);
    }
    tp_end(&e);
}

/* Growth whose bookkeeping allocation fails: NULL and a failure counted, the class unchanged,
   and growth works once memory is back. */
static void test_fail_growth(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_failing f;
    buffet_pkt *p[70];
    buffet_pkt_stats s;
    uint64_t at;
    size_t i, n;
    bool grew = false;
    tp_begin(&e);
    for (at = 1; at < 10 && !grew; at++) {
        tp_small(&e, &d);
        d.class_sizes[1] = d.class_sizes[2] = 0;
        d.initial = 64;
        d.max = 256;
        buffet_failing_init(&f, buffet_debug_allocator(e.dbg), 0, false);
        d.allocator = buffet_failing_allocator(&f);
        pool = tp_pool(&d);
        if (!pool) break;
        c = tp_cache(pool, 16);
        for (n = 0; n < 64; n++) p[n] = buffet_pkt_alloc(c, 10);
        BT_CHECK(p[63] != NULL);
        f.fail_at = f.allocs + at;   /* the at-th allocation growth makes */
        p[n] = buffet_pkt_alloc(c, 10);
        s = buffet_pkt_pool_get_stats(pool);
        if (p[n]) {
            grew = true;   /* past the last allocation point */
            BT_CHECK(f.failures == 0 && s.cls[0].created == 128);
            n++;
        } else {
            buffet_pkt_cache_flush(c);
            s = buffet_pkt_pool_get_stats(pool);
            BT_CHECK(f.failures == 1 && s.cls[0].created == 64 && s.cls[0].failures == 1);
            f.fail_at = 0;
            p[n] = buffet_pkt_alloc(c, 10);   /* memory is back */
            s = buffet_pkt_pool_get_stats(pool);
            BT_CHECK(p[n] != NULL && s.cls[0].created == 128);
            if (p[n]) n++;
        }
        for (i = 0; i < n; i++) buffet_pkt_free(c, p[i]);
        buffet_pkt_cache_destroy(c);
        tp_all_back(pool);
        buffet_pkt_pool_destroy(pool);
        BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
    }
    BT_CHECK(grew && at >= 2);   /* at least one point failed (the region), then it grew */
    tp_end(&e);
}

/* to_chain whose buffer headers or chain arrays cannot be allocated: BUFFET_ERR_NOMEM, the
   chain unchanged, no reference left behind. */
static void test_fail_to_chain(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_failing f;
    buffet_pkt *p;
    buffet_chain ch;
    buffet_buf *b = NULL;
    buffet_buf_desc bd;
    buffet_result r = BUFFET_ERR_NOMEM;
    unsigned char tmp[256];
    uint64_t at;
    size_t live;
    int with_slice;
    tp_begin(&e);
    tp_small(&e, &d);
    buffet_failing_init(&f, buffet_debug_allocator(e.dbg), 0, false);
    d.allocator = buffet_failing_allocator(&f);
    pool = tp_pool(&d);
    c = tp_cache(pool, 0);
    p = tp_three_segments(c);
    BT_CHECK(p != NULL);
    memset(&bd, 0, sizeof bd);
    bd.size = 4;
    bd.allocator = buffet_debug_allocator(e.dbg);
    BT_CHECK(buffet_buf_create(&b, &bd) == BUFFET_OK);
    for (with_slice = 0; p && b && with_slice <= 1; with_slice++) {
        for (at = 1, r = BUFFET_ERR_NOMEM; at < 50 && r != BUFFET_OK; at++) {
            buffet_chain_init(&ch, buffet_failing_allocator(&f));
            if (with_slice) BT_CHECK(buffet_chain_append(&ch, b, 0, 4) == BUFFET_OK);
            live = buffet_debug_get_stats(e.dbg).live_count;
            f.fail_at = f.allocs + at;
            r = buffet_pkt_to_chain(p, &ch);
            f.fail_at = 0;
            if (r == BUFFET_OK) {
                BT_CHECK(buffet_chain_len(&ch) == (size_t)(180 + 4 * with_slice));
                BT_CHECK(buffet_chain_copy_out(&ch, (size_t)(4 * with_slice), tmp, 180) == BUFFET_OK);
                BT_CHECK(tp_is_pattern(tmp, 180, 0) && p->refcnt == 2);
            } else {
                BT_CHECK(r == BUFFET_ERR_NOMEM);
                BT_CHECK(buffet_chain_len(&ch) == (size_t)(4 * with_slice));
                BT_CHECK(buffet_chain_count(&ch) == (size_t)with_slice);
                BT_CHECK(p->refcnt == 1 && p->next->refcnt == 1 && p->next->next->refcnt == 1);
                BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == live);
            }
            buffet_chain_deinit(&ch);
            BT_CHECK(p->refcnt == 1 && p->next->next->refcnt == 1);
        }
        BT_CHECK(r == BUFFET_OK && at >= 4);   /* three buffers and an array at least */
    }
    buffet_buf_unref(b);
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Lifetimes and contracts: the bookkeeping allocator's contract, destroy while users remain
   (a cache, a chain, registries), reference limits, the registry provider's alignment, the
   allocator face, callbacks that call back in */

/* An allocator whose blocks die with a frame (no BUFFET_CONTRACT_UNTIL_FREED): malloc behind a
   contract that says so. A pool must refuse it for its bookkeeping. */
static void *tp_short_alloc(void *self, size_t size, size_t align, buffet_site site) {
    (void)self; (void)align; (void)site;
    return malloc(size);
}
static void tp_short_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)self; (void)size; (void)align; (void)site;
    free(ptr);
}
static uint32_t tp_short_contract(const void *self) {
    (void)self;
    return BUFFET_CONTRACT_THREAD_SAFE;
}
static const buffet_allocator_vtable tp_short_vtable = {
    tp_short_alloc, NULL, tp_short_free, NULL, tp_short_contract, NULL
};
static int tp_short_self;

/* The bookkeeping allocator is used from any thread for as long as the pool lives: one that
   serves a single owner thread, or whose blocks die early, is refused before anything is taken. */
static void test_pool_allocator_contract(void) {
    static unsigned char mem[1 << 16];
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *p;
    buffet_fixed f;
    buffet_fixed_desc fd;
    tp_begin(&e);
    /* a fixed buffer: one owner thread (BUFFET_ERR_THREAD) */
    memset(&fd, 0, sizeof fd);
    fd.mem = mem;
    fd.cap = sizeof mem;
    BT_CHECK(buffet_fixed_init(&f, &fd) == BUFFET_OK);
    tp_small(&e, &d);
    d.allocator = buffet_fixed_allocator(&f);
    tp_create_fails(&e, &d, BUFFET_ERR_THREAD, "a fixed-buffer bookkeeping allocator");
    BT_CHECK(f.used == 0);   /* refused before taking anything from it */
    buffet_fixed_deinit(&f);
    /* blocks that die with a frame (BUFFET_ERR_LIFETIME) */
    tp_small(&e, &d);
    d.allocator = buffet_allocator_of(&tp_short_self, &tp_short_vtable);
    tp_create_fails(&e, &d, BUFFET_ERR_LIFETIME, "a bookkeeping allocator whose blocks die early");
    /* the heap (a zero allocator) is fine */
    tp_small(&e, &d);
    memset(&d.allocator, 0, sizeof d.allocator);
    p = tp_pool(&d);
    buffet_pkt_pool_destroy(p);
    tp_end(&e);
}

#if !BUFFET_DEBUG   /* the release layout's memory (debug builds add guard lines, cookies, records) */
/* Every byte the process maps, from /proc/self/smaps (the Size of each mapping). Returns: 0
   when it cannot be read. */
static uint64_t tp_mapped_bytes(void) {
    char line[256];
    uint64_t kb = 0, v;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Size: %" SCNu64 " kB", &v) == 1) kb += v;
    fclose(f);
    return kb * 1024;
}

/* A bookkeeping allocator over a static arena, which is mapped before the test starts: what a
   pool takes through it is counted here, not in the mappings. */
static unsigned char tp_arena[1 << 18];
static size_t tp_arena_used, tp_arena_bytes;
static void *tp_arena_alloc(void *self, size_t size, size_t align, buffet_site site) {
    size_t at;
    (void)self, (void)site;
    at = (__atomic_load_n(&tp_arena_used, __ATOMIC_RELAXED) + align - 1) & ~(align - 1);
    if (at + size > sizeof tp_arena) return buffet_alloc_fail(BUFFET_ERR_NOMEM, "test arena full");
    __atomic_store_n(&tp_arena_used, at + size, __ATOMIC_RELAXED);   /* one thread in this test */
    __atomic_fetch_add(&tp_arena_bytes, size, __ATOMIC_RELAXED);
    return tp_arena + at;
}
static void tp_arena_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)self, (void)ptr, (void)align, (void)site;
    __atomic_fetch_sub(&tp_arena_bytes, size, __ATOMIC_RELAXED);
}
static uint32_t tp_arena_contract(const void *self) {
    (void)self;
    return BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE;
}
static const buffet_allocator_vtable tp_arena_vtable = {
    tp_arena_alloc, NULL, tp_arena_free, NULL, tp_arena_contract, NULL
};

/* The 2048 class's memory: a pool of that class alone, full (16384 buffers), costs at most 3%
   over its data rooms (headroom + 2048 bytes each), counting every byte the pool maps (the
   growth of /proc/self/smaps across the create) and every byte of its bookkeeping. A pool that
   never clones carries no clone ring; the first clone adds it. */
static void test_memory_2048(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, *q;
    uint64_t before, mapped, book, rooms;
    double over;
    if (bt_mode("valgrind") || bt_mode("aarch64"))
        BT_SKIP("smaps", "the mappings seen are the host tool's (valgrind or qemu), not the pool's alone");
    tp_begin(&e);
    tp_desc(&e, &d);
    d.name = "mem2048";
    d.class_sizes[0] = 2048;
    d.initial = d.max = 16384;
    d.allocator = buffet_allocator_of(tp_arena, &tp_arena_vtable);
    pool = tp_pool(&d);   /* once first: libraries loaded at run time (libnuma) are mapped now */
    buffet_pkt_pool_destroy(pool);
    BT_CHECK(tp_arena_bytes == 0);
    tp_arena_used = 0;
    before = tp_mapped_bytes();
    pool = tp_pool(&d);
    mapped = tp_mapped_bytes() - before;
    book = tp_arena_bytes;
    rooms = (uint64_t)16384 * (128 + 2048);
    over = (double)(mapped + book) / (double)rooms - 1;
    printf("  2048 class, 16384 buffers: %" PRIu64 " B mapped + %" PRIu64 " B bookkeeping for %" PRIu64
           " B of data rooms: %.2f%% over\n", mapped, book, rooms, over * 100);
    BT_CHECK(before != 0 && mapped >= rooms && over <= 0.03);
    /* the first clone brings the clone class's ring (and its first region) */
    c = tp_cache(pool, 0);
    p = buffet_pkt_alloc(c, 100);
    q = p ? buffet_pkt_clone(c, p) : NULL;
    BT_CHECK(q != NULL && tp_arena_bytes > book);
    buffet_pkt_free(c, q);
    buffet_pkt_free(c, p);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    buffet_pkt_pool_destroy(pool);
    BT_CHECK(tp_arena_bytes == 0);
    tp_end(&e);
}
#endif

/* Destroyed with a cache still attached: released only when the cache goes. Meanwhile whatever
   the cache cannot serve from what it holds fails with BUFFET_ERR_STATE (counted, logged), and
   nothing new attaches (caches, registries). */
static void test_destroy_with_cache(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c, *c2;
    buffet_registry *r = NULL;
    buffet_pkt *p, *pkts[1];
    buffet_pkt_stats s;
    unsigned char mem[256];
    uint64_t failures = 0;
    unsigned k;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = pool ? tp_cache(pool, 2) : NULL;   /* a refill takes one: empty again after each alloc */
    p = c ? buffet_pkt_alloc(c, 10) : NULL;
    if (!p) {
        BT_CHECK(p != NULL);
        buffet_pkt_cache_destroy(c);
        buffet_pkt_pool_destroy(pool);
        tp_end(&e);
        return;
    }
    BT_CHECK(c->cls[0].count == 0 && tp_put(p, 10, 4));
    tp_log_clear(&e.log);
    buffet_pkt_pool_destroy(pool);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 1 && strstr(e.log.all, "small") != NULL);
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count > 0);   /* not released: p and c are out */
    /* every way to allocate: BUFFET_ERR_STATE */
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_alloc(c, 10) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_pkt_alloc_class(c, 2) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    pkts[0] = NULL;
    BT_CHECK(buffet_pkt_alloc_bulk(c, 1, pkts, 1) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_STATE && !pkts[0]);
    BT_CHECK(buffet_pkt_alloc_shared(pool, 10) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_pkt_clone(c, p) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_pkt_attach_external(c, mem, sizeof mem, NULL, NULL) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_alloc(buffet_pkt_allocator(c), 100, 16, BUFFET_SITE) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 7 && bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 0);
    BT_CHECK(p->refcnt == 1);   /* the refused clone took no reference */
    s = buffet_pkt_pool_get_stats(pool);
    for (k = 0; k <= s.nclasses; k++) failures += s.cls[k].failures;
    BT_CHECK(failures == 7 && s.cls[3].failures == 2);
    /* nothing new attaches */
    c2 = (buffet_pkt_cache *)&c2;
    BT_CHECK(buffet_pkt_cache_create(&c2, pool, 0) == BUFFET_ERR_STATE && c2 == NULL);
    BT_CHECK(tp_registry(&e, &r) == BUFFET_OK);
    BT_CHECK(buffet_pkt_pool_register(pool, r) == BUFFET_ERR_STATE);
    buffet_registry_destroy(r);
    /* what is out still works */
    BT_CHECK(tp_is_pattern(buffet_pkt_data(p), 10, 4) && tp_put(p, 20, 5));
    buffet_pkt_free(c, p);          /* into the cache: the pool still waits for the cache */
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count > 0);
    buffet_pkt_cache_destroy(c);    /* the last user: the pool is released with it */
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
    /* a cache and no buffer out: the same */
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = pool ? tp_cache(pool, 0) : NULL;
    buffet_pkt_pool_destroy(pool);
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count > 0);
    buffet_pkt_cache_flush(c);
    buffet_pkt_cache_destroy(c);
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
    tp_end(&e);
}

/* Destroyed while its packets sit in a buffet_chain (buffet_pkt_to_chain): nothing is freed
   under the chain; the chain's release of the last segment releases the pool. */
static void test_destroy_with_chain(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p;
    buffet_chain ch;
    unsigned char tmp[256];
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = pool ? tp_cache(pool, 0) : NULL;
    BT_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(e.dbg)) == BUFFET_OK);
    p = c ? tp_three_segments(c) : NULL;
    BT_CHECK(p != NULL);
    if (p) {
        BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_OK && buffet_chain_len(&ch) == 180);
        buffet_pkt_free(c, p);   /* the chain holds the only references now */
    }
    buffet_pkt_cache_destroy(c);
    tp_log_clear(&e.log);
    buffet_pkt_pool_destroy(pool);   /* three segments still in the chain */
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_STATE) == 1);
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count > 0);
    /* the chain's bytes: still there (ASan and valgrind watch every one) */
    memset(tmp, 0, sizeof tmp);
    BT_CHECK(buffet_chain_copy_out(&ch, 0, tmp, 180) == BUFFET_OK && tp_is_pattern(tmp, 180, 0));
    /* the first segment comes back alone: the pool waits for the others */
    BT_CHECK(buffet_chain_consume(&ch, 100) == BUFFET_OK && buffet_chain_count(&ch) == 2);
    memset(tmp, 0, sizeof tmp);
    BT_CHECK(buffet_chain_copy_out(&ch, 0, tmp, 80) == BUFFET_OK && tp_is_pattern(tmp, 80, 100));
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count > 0);
    buffet_chain_deinit(&ch);        /* the last two: the pool is released now */
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);
    tp_end(&e);
}

/* A pool in registries: destroy takes it out of every one at once (a later request cannot
   reach it), a buffer it served keeps it alive until released; a registry destroyed (or the pool
   removed) first is forgotten by the pool; a pool is in at most 8. */
static void test_destroy_registered(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool, *other;
    buffet_registry *r[9];
    buffet_request req;
    buffet_buf *b = NULL, *x;
    char why[2048];
    size_t i;
    tp_begin(&e);
    for (i = 0; i < 9; i++) {
        r[i] = NULL;
        BT_CHECK(tp_registry(&e, &r[i]) == BUFFET_OK && r[i] != NULL);
    }
    memset(&req, 0, sizeof req);
    req.usage = BUFFET_USAGE_NETWORK | BUFFET_USAGE_HOST_WRITE;
    req.size = 1000;
    req.allocator = buffet_debug_allocator(e.dbg);
    /* destroyed with nothing out: released at once, and no registry offers it any more */
    tp_small(&e, &d);
    d.name = "gone";
    other = tp_pool(&d);
    BT_CHECK(buffet_pkt_pool_register(other, r[2]) == BUFFET_OK);
    buffet_explain(r[2], &req, why, sizeof why);
    BT_CHECK(strstr(why, "chose 'gone'") != NULL);
    buffet_pkt_pool_destroy(other);
    buffet_explain(r[2], &req, why, sizeof why);   /* ASan: nothing calls into the freed pool */
    BT_CHECK(strstr(why, "gone") == NULL);
    x = NULL;
    BT_CHECK(buffet_registry_create_buf(r[2], &req, &x) == BUFFET_OK && x != NULL);
    buffet_buf_unref(x);
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 9);   /* the registries */
    tp_small(&e, &d);
    d.name = "netpool";   /* a name no other provider's reason contains */
    pool = tp_pool(&d);
    if (!pool) goto out;
    /* in eight registries at most */
    for (i = 0; i < 8; i++) BT_CHECK(buffet_pkt_pool_register(pool, r[i]) == BUFFET_OK);
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_pool_register(pool, r[8]) == BUFFET_ERR_EXHAUSTED && bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 1);
    buffet_explain(r[8], &req, why, sizeof why);
    BT_CHECK(strstr(why, "netpool") == NULL);
    /* a registry destroyed first: the pool forgets it (and never touches it again), so there is room */
    buffet_registry_destroy(r[0]);
    r[0] = NULL;
    BT_CHECK(buffet_pkt_pool_register(pool, r[8]) == BUFFET_OK);
    /* removed by name: forgotten the same way */
    BT_CHECK(buffet_registry_remove(r[1], "netpool") == BUFFET_OK);
    buffet_explain(r[1], &req, why, sizeof why);
    BT_CHECK(strstr(why, "netpool") == NULL);
    BT_CHECK(buffet_pkt_pool_register(pool, r[1]) == BUFFET_OK);
    /* a buffer of the pool through a registry */
    buffet_explain(r[3], &req, why, sizeof why);
    BT_CHECK(strstr(why, "chose 'netpool'") != NULL);
    BT_CHECK(buffet_registry_create_buf(r[3], &req, &b) == BUFFET_OK && b != NULL);
    if (b) tp_pattern(b->data, 1000, 8);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[2].in_use == 1);
    /* destroyed with that buffer out: out of all eight registries now, released later */
    buffet_pkt_pool_destroy(pool);
    for (i = 1; i < 9; i++) {
        buffet_explain(r[i], &req, why, sizeof why);
        BT_CHECK(strstr(why, "netpool") == NULL);
        x = NULL;
        BT_CHECK(buffet_registry_create_buf(r[i], &req, &x) == BUFFET_OK && x != NULL);   /* someone else serves it */
        if (x) memset(x->data, 1, 1000);
        buffet_buf_unref(x);
    }
    BT_CHECK(b && tp_is_pattern(b->data, 1000, 8));
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count > 8);   /* the pool, besides the registries */
    buffet_buf_unref(b);   /* the pool's last buffer: released now */
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 8);
out:
    for (i = 0; i < 9; i++) buffet_registry_destroy(r[i]);
    tp_end(&e);
}

/* The registry provider puts a request's data at the request's alignment (0: 64 bytes) whatever
   the pool's headroom, and only serves what fits with the offset that takes. */
static void test_registry_alignment(void) {
    static const size_t aligns[] = {0, 64, 32, 16, 8};
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_registry *r = NULL;
    buffet_request req;
    buffet_buf *b;
    char why[2048];
    size_t i;
    tp_begin(&e);
    tp_small(&e, &d);
    d.headroom = 100;   /* not a multiple of 64 (nor of 8) */
    pool = tp_pool(&d);
    BT_CHECK(tp_registry(&e, &r) == BUFFET_OK);
    if (!pool || !r) goto out;
    BT_CHECK(buffet_pkt_pool_register(pool, r) == BUFFET_OK);
    memset(&req, 0, sizeof req);
    req.usage = BUFFET_USAGE_NETWORK | BUFFET_USAGE_HOST_WRITE;
    req.size = 1000;
    req.allocator = buffet_debug_allocator(e.dbg);
    for (i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        size_t want = aligns[i] ? aligns[i] : 64;
        req.align = aligns[i];
        b = NULL;
        BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_OK && b != NULL);
        if (!b) continue;
        BT_CHECK(((uintptr_t)b->data % want) == 0 && b->size == 1000);
        if ((uintptr_t)b->data % want) fprintf(stderr, "align %zu: data at %p\n", aligns[i], b->data);
        BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[2].in_use == 1);   /* the pool served it */
        tp_pattern(b->data, 1000, (unsigned)i);                         /* every byte in the data room */
        BT_CHECK(tp_is_pattern(b->data, 1000, (unsigned)i));
        buffet_buf_unref(b);
    }
    /* headroom 100 and align 0: data 64-byte aligned, after the full headroom (so 28 bytes of the
       largest class go to the offset) */
    req.align = 0;
    req.size = 2048 - 28;
    buffet_explain(r, &req, why, sizeof why);
    BT_CHECK(strstr(why, "chose 'small'") != NULL);
    b = NULL;
    BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_OK && b && ((uintptr_t)b->data % 64) == 0);
    if (b) tp_pattern(b->data, b->size, 9);
    buffet_buf_unref(b);
    req.size = 2048 - 27;   /* does not fit after the offset: another provider */
    buffet_explain(r, &req, why, sizeof why);
    BT_CHECK(strstr(why, "chose 'small'") == NULL && strstr(why, "small cannot") != NULL);
    /* above 64 bytes: never from the pool */
    req.size = 100;
    req.align = 128;
    buffet_explain(r, &req, why, sizeof why);
    BT_CHECK(strstr(why, "small cannot") != NULL);
    b = NULL;
    BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_OK && b && ((uintptr_t)b->data % 128) == 0);
    buffet_buf_unref(b);
    BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[2].allocs == 6);
    tp_all_back(pool);
out:
    buffet_registry_destroy(r);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* Every count stops at 65535 references: the clone, ref or chain slice past it is refused with
   BUFFET_ERR_OVERFLOW (logged, recorded) and changes nothing; the data outlives every holder. */
static void test_ref_limit(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *p, **clones;
    buffet_chain ch;
    buffet_buf *b = NULL;
    buffet_buf_desc bd;
    buffet_pkt_stats s;
    size_t n = 0, live;
    tp_begin(&e);
    tp_small(&e, &d);
    d.class_sizes[1] = d.class_sizes[2] = 0;   /* one class: the clone class holds max * 1 */
    d.initial = 64;
    d.grow = 8192;
    d.max = 65536;                              /* enough headers for one more than the count allows */
    pool = tp_pool(&d);
    c = pool ? tp_cache(pool, 0) : NULL;
    clones = (buffet_pkt **)malloc(65535 * sizeof *clones);
    p = c ? buffet_pkt_alloc(c, 64) : NULL;
    if (!p || !clones) {
        BT_CHECK(p != NULL && clones != NULL);
        free(clones);
        buffet_pkt_free(c, p);
        buffet_pkt_cache_destroy(c);
        buffet_pkt_pool_destroy(pool);
        tp_end(&e);
        return;
    }
    BT_CHECK(tp_put(p, 64, 21));
    tp_log_clear(&e.log);
    while (n < 65535 && (clones[n] = buffet_pkt_clone(c, p)) != NULL) n++;
    BT_CHECK(n == 65534 && p->refcnt == 65535);   /* the packet's own reference and 65534 clones */
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(bt_logged(&e.log, BUFFET_ERR_OVERFLOW) == 1 && bt_logged(&e.log, BUFFET_ERR_EXHAUSTED) == 0);
    buffet_pkt_cache_flush(c);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[1].in_use == 65534);            /* the refused clone's header went back */
    /* a clone of a clone counts on the same data: refused too */
    BT_CHECK(buffet_pkt_clone(c, clones[7]) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(p->refcnt == 65535 && clones[7]->refcnt == 1);
    /* ref */
    BT_CHECK(buffet_pkt_ref(p) == BUFFET_ERR_OVERFLOW && p->refcnt == 65535);
    /* into a chain that has something already: refused, the chain as it was, nothing left over */
    BT_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(e.dbg)) == BUFFET_OK);
    memset(&bd, 0, sizeof bd);
    bd.size = 4;
    bd.allocator = buffet_debug_allocator(e.dbg);
    BT_CHECK(buffet_buf_create(&b, &bd) == BUFFET_OK);
    BT_CHECK(b && buffet_chain_append(&ch, b, 0, 4) == BUFFET_OK);
    buffet_buf_unref(b);
    live = buffet_debug_get_stats(e.dbg).live_count;
    tp_log_clear(&e.log);
    BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_ERR_OVERFLOW && bt_logged(&e.log, BUFFET_ERR_OVERFLOW) == 1);
    BT_CHECK(buffet_chain_len(&ch) == 4 && buffet_chain_count(&ch) == 1 && p->refcnt == 65535);
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == live);
    /* one holder fewer: room for exactly one more */
    buffet_pkt_free(c, clones[--n]);
    BT_CHECK(p->refcnt == 65534);
    BT_CHECK(buffet_pkt_to_chain(p, &ch) == BUFFET_OK && p->refcnt == 65535 && buffet_chain_len(&ch) == 68);
    BT_CHECK(buffet_pkt_ref(p) == BUFFET_ERR_OVERFLOW && buffet_pkt_clone(c, p) == NULL);
    buffet_chain_deinit(&ch);
    BT_CHECK(p->refcnt == 65534 && buffet_pkt_ref(p) == BUFFET_OK && p->refcnt == 65535);
    buffet_pkt_unref(c, p);
    /* the original first, then every clone: its bytes stay intact until the very last */
    buffet_pkt_free(c, p);
    BT_CHECK(p->refcnt == 65533 && tp_is_pattern(buffet_pkt_data(clones[0]), 64, 21));
    buffet_pkt_free_bulk(c, clones, n - 1);
    BT_CHECK(p->refcnt == 1 && tp_is_pattern(buffet_pkt_data(clones[n - 1]), 64, 21));
    BT_CHECK(tp_is_pattern(buffet_pkt_data(p), 64, 21));
    buffet_pkt_free(c, clones[n - 1]);
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
    s = buffet_pkt_pool_get_stats(pool);
    BT_CHECK(s.cls[1].allocs == s.cls[1].frees && s.cls[1].created <= 65536 && s.double_frees == 0);
    buffet_pkt_pool_destroy(pool);
    free(clones);
    tp_end(&e);
}

/* The other thread of test_pkt_allocator: frees blocks the owner made, makes and frees its own
   (through the pool), and makes some for the owner to free. */
typedef struct tp_blocks {
    buffet_allocator a;
    size_t size;
    void *mine[16];     /* made on the cache's thread, freed here */
    void *theirs[16];   /* made here, freed on the cache's thread */
    unsigned bad;
} tp_blocks;

static void *tp_blocks_other(void *arg) {
    tp_blocks *t = (tp_blocks *)arg;
    size_t i;
    for (i = 0; i < 16; i++) {
        if (!t->mine[i] || !tp_is_pattern(t->mine[i], t->size, (unsigned)i)) t->bad++;
        buffet_free(t->a, t->mine[i], t->size, 64, BUFFET_SITE);
    }
    for (i = 0; i < 300; i++) {
        void *x = buffet_alloc(t->a, t->size, 64, BUFFET_SITE);
        if (!x || (uintptr_t)x % 64) {
            t->bad++;
            continue;
        }
        tp_pattern(x, t->size, (unsigned)i);
        if (!tp_is_pattern(x, t->size, (unsigned)i)) t->bad++;
        buffet_free(t->a, x, t->size, 64, BUFFET_SITE);
    }
    for (i = 0; i < 16; i++) {
        t->theirs[i] = buffet_alloc(t->a, t->size, 64, BUFFET_SITE);
        if (t->theirs[i]) tp_pattern(t->theirs[i], t->size, (unsigned)i + 100);
        else t->bad++;
    }
    return NULL;
}

/* buffet_pkt_allocator: blocks of up to a class's whole data room (headroom included), 64-byte
   aligned, from the smallest class that fits, given back on free; thread-safe (another thread
   goes through the pool); larger or more aligned: NULL with BUFFET_ERR_TOO_LARGE. */
static void test_pkt_allocator(void) {
    static const size_t sizes[] = {1, 128 + 64, 128 + 64 + 1, 128 + 512, 128 + 512 + 1, 128 + 2048};
    static const unsigned classes[] = {0, 0, 1, 1, 2, 2};
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_allocator a;
    buffet_buf *buf = NULL;
    buffet_buf_desc bd;
    tp_blocks t;
    pthread_t th;
    void *out;
    unsigned char *blk;
    size_t i;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    c = pool ? tp_cache(pool, 0) : NULL;
    if (!c) goto out;
    a = buffet_pkt_allocator(c);
    BT_CHECK(buffet_allocator_contract(a) == (BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE));
    BT_CHECK(buffet_allocator_check(a, BUFFET_NEED_UNTIL_FREED | BUFFET_NEED_THREAD_SAFE, "test", NULL) == BUFFET_OK);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        blk = (unsigned char *)buffet_alloc(a, sizes[i], 16, BUFFET_SITE);
        BT_CHECK(blk != NULL && ((uintptr_t)blk % 64) == 0);
        if (!blk) continue;
        tp_pattern(blk, sizes[i], (unsigned)i);   /* every byte writable (ASan, valgrind watch) */
        BT_CHECK(tp_is_pattern(blk, sizes[i], (unsigned)i));
        buffet_pkt_cache_flush(c);
        BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[classes[i]].in_use == 1);   /* the smallest that fits */
        buffet_free(a, blk, sizes[i], 16, BUFFET_SITE);
        buffet_pkt_cache_flush(c);
        BT_CHECK(buffet_pkt_pool_get_stats(pool).cls[classes[i]].in_use == 0);   /* given back */
    }
    blk = (unsigned char *)buffet_alloc(a, 100, 64, BUFFET_SITE);   /* 64: the most it aligns to */
    BT_CHECK(blk && ((uintptr_t)blk % 64) == 0);
    buffet_free(a, blk, 100, 64, BUFFET_SITE);
    /* too large, or aligned above 64 */
    BT_CHECK(buffet_alloc(a, 128 + 2048 + 1, 16, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_alloc(a, 100, 128, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    out = &out;
    BT_CHECK(buffet_alloc_ex(a, SIZE_MAX, 16, BUFFET_SITE, &out) == BUFFET_ERR_TOO_LARGE && out == NULL);
    BT_CHECK(buffet_alloc(buffet_pkt_allocator(NULL), 100, 16, BUFFET_SITE) == NULL);   /* no cache: refuses */
    /* under a buffet_buf: header and data in one block of a class */
    memset(&bd, 0, sizeof bd);
    bd.size = 1000;
    bd.allocator = a;
    BT_CHECK(buffet_buf_create(&buf, &bd) == BUFFET_OK && buf != NULL);
    if (buf) {
        memset(buf->data, 7, 1000);
        buffet_buf_unref(buf);
    }
    bd.size = 4000;
    buf = (buffet_buf *)&buf;
    BT_CHECK(buffet_buf_create(&buf, &bd) == BUFFET_ERR_TOO_LARGE && buf == NULL);
    /* another thread: frees the owner's blocks, allocates its own, while the owner does too */
    memset(&t, 0, sizeof t);
    t.a = a;
    t.size = 1000;
    for (i = 0; i < 16; i++) {
        t.mine[i] = buffet_alloc(a, t.size, 64, BUFFET_SITE);
        if (t.mine[i]) tp_pattern(t.mine[i], t.size, (unsigned)i);
    }
    BT_CHECK(pthread_create(&th, NULL, tp_blocks_other, &t) == 0);
    for (i = 0; i < 300; i++) {
        void *x = buffet_alloc(a, t.size, 64, BUFFET_SITE);
        BT_CHECK(x != NULL);
        if (!x) continue;
        tp_pattern(x, t.size, (unsigned)i);
        BT_CHECK(tp_is_pattern(x, t.size, (unsigned)i));
        buffet_free(a, x, t.size, 64, BUFFET_SITE);
    }
    pthread_join(th, NULL);
    BT_CHECK(t.bad == 0);
    for (i = 0; i < 16; i++) {
        BT_CHECK(t.theirs[i] && tp_is_pattern(t.theirs[i], t.size, (unsigned)i + 100));
        buffet_free(a, t.theirs[i], t.size, 64, BUFFET_SITE);
    }
    buffet_pkt_cache_destroy(c);
    tp_all_back(pool);
out:
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

/* A logger and a watermark callback that call back into the pool: they run outside its lock, so
   statistics, leak reports and allocation work from inside them; a logger may even give back
   the last buffer while destroy is telling it about that buffer. */
typedef struct tp_reenter {
    bt_log log;
    buffet_pkt_pool *pool;   /* its statistics are read from every message and crossing */
    buffet_pkt *last;        /* given back from inside destroy's warning */
    unsigned calls, crossings, bad;
} tp_reenter;

static void tp_reenter_log(void *user, buffet_log_level level, buffet_result code, const char *msg,
                           const char *file, int line) {
    tp_reenter *r = (tp_reenter *)user;
    bt_log_fn(&r->log, level, code, msg, file, line);
    if (r->pool) {
        buffet_pkt_stats s = buffet_pkt_pool_get_stats(r->pool);   /* takes the pool's lock */
        r->calls++;
        if (s.nclasses != 1 || !s.name || strcmp(s.name, "small") != 0) r->bad++;
    }
    if (code == BUFFET_ERR_STATE && r->last) {
        buffet_pkt *p = r->last;
        r->last = NULL;
        buffet_pkt_free_shared(p);
    }
}

static void tp_reenter_wm(void *user, buffet_pkt_pool *pool, unsigned cls, size_t in_use, size_t max, bool high) {
    tp_reenter *r = (tp_reenter *)user;
    buffet_pkt *x;
    (void)cls; (void)in_use; (void)max; (void)high;
    r->crossings++;
    if (buffet_pkt_pool_get_stats(pool).nclasses != 1) r->bad++;
    buffet_pkt_pool_report_leaks(pool, NULL);   /* logs: the logger calls in too */
    x = buffet_pkt_alloc_shared(pool, 10);      /* may fail (logged) when the class is full */
    buffet_pkt_free_shared(x);
}

static void test_callbacks_reenter(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *c;
    buffet_pkt *held[64];
    size_t n = 0;
    tp_reenter r;
    unsigned calls;
    tp_begin(&e);
    memset(&r, 0, sizeof r);
    tp_small(&e, &d);
    d.class_sizes[1] = d.class_sizes[2] = 0;
    d.initial = d.max = 64;
    d.watermark_high = 50;
    d.watermark_low = 25;
    d.on_watermark = tp_reenter_wm;
    d.watermark_user = &r;
    d.log.fn = tp_reenter_log;
    d.log.user = &r;
    pool = tp_pool(&d);
    if (!pool) { tp_end(&e); return; }
    r.pool = pool;
    c = tp_cache(pool, 8);
    tp_hold(c, held, &n, 40);   /* over the high mark: the callback calls in */
    BT_CHECK(r.crossings == 1 && r.calls >= 1);
    tp_hold(c, held, &n, 64);
    calls = r.calls;
    BT_CHECK(buffet_pkt_alloc(c, 10) == NULL);   /* the class is full: its warning's logger calls in */
    BT_CHECK(bt_logged(&r.log, BUFFET_ERR_EXHAUSTED) >= 1 && r.calls > calls);
    calls = r.calls;
    BT_CHECK(buffet_pkt_pool_report_leaks(pool, NULL) == 64 && r.calls > calls);
    tp_hold(c, held, &n, 1);    /* under the low mark */
    BT_CHECK(r.crossings == 2);
    buffet_pkt_cache_destroy(c);
    /* destroy with held[0] out: its warning's logger gives held[0] back, the pool's last buffer */
    r.last = held[0];
    calls = r.calls;
    buffet_pkt_pool_destroy(pool);
    BT_CHECK(r.last == NULL && r.calls > calls && bt_logged(&r.log, BUFFET_ERR_STATE) == 1);
    r.pool = NULL;
    BT_CHECK(r.bad == 0);
    BT_CHECK(buffet_debug_get_stats(e.dbg).live_count == 0);   /* released, once */
    tp_end(&e);
}

/* Two threads clone one packet and free the clones (each holding a reference to it), so its
   count moves from both sides at once; the last reference returns it. */
typedef struct tp_cstress {
    buffet_pkt_pool *pool;
    buffet_pkt *p;
    size_t rounds;
    size_t bad[2], made[2];
} tp_cstress;

typedef struct tp_cworker {
    tp_cstress *s;
    unsigned id;
} tp_cworker;

static void *tp_clone_worker(void *arg) {
    tp_cworker *w = (tp_cworker *)arg;
    tp_cstress *s = w->s;
    buffet_pkt_cache *c = NULL;
    buffet_pkt *held[8];
    size_t i, n = 0;
    if (buffet_pkt_cache_create(&c, s->pool, 16) != BUFFET_OK) {
        s->bad[w->id]++;
        buffet_pkt_free_shared(s->p);
        return NULL;
    }
    for (i = 0; i < s->rounds; i++) {
        buffet_pkt *q = buffet_pkt_clone(c, s->p);
        if (!q) {
            s->bad[w->id]++;
            continue;
        }
        if (q->buf != s->p->buf || q->len != 100 || !tp_is_pattern(buffet_pkt_data(q), 100, 5)) s->bad[w->id]++;
        s->made[w->id]++;
        held[n++] = q;
        if (n == 8 || (i + w->id) % 3 == 0) {
            if (i % 2) buffet_pkt_free_bulk(c, held, n);
            else while (n) buffet_pkt_free_shared(held[--n]);
            n = 0;
        }
    }
    buffet_pkt_free_bulk(c, held, n);
    buffet_pkt_free(c, s->p);   /* this thread's reference */
    buffet_pkt_cache_destroy(c);
    return NULL;
}

static void test_clone_two_threads(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_cache *c;
    tp_cstress s;
    tp_cworker w[2];
    pthread_t t[2];
    buffet_pkt_stats st;
    unsigned i, k;
    tp_begin(&e);
    memset(&s, 0, sizeof s);
    tp_small(&e, &d);
    d.log.fn = NULL;   /* the test's log is not thread-safe */
    s.pool = tp_pool(&d);
    c = s.pool ? tp_cache(s.pool, 0) : NULL;
    s.p = c ? buffet_pkt_alloc(c, 100) : NULL;
    buffet_pkt_cache_destroy(c);
    if (!s.p) {
        BT_CHECK(s.p != NULL);
        buffet_pkt_pool_destroy(s.pool);
        tp_end(&e);
        return;
    }
    BT_CHECK(tp_put(s.p, 100, 5) && buffet_pkt_ref(s.p) == BUFFET_OK);   /* one reference per worker */
    s.rounds = tp_slow_mode() ? 5000 : 30000;
    for (i = 0; i < 2; i++) {
        w[i].s = &s;
        w[i].id = i;
        BT_CHECK(pthread_create(&t[i], NULL, tp_clone_worker, &w[i]) == 0);
    }
    for (i = 0; i < 2; i++) pthread_join(t[i], NULL);
    BT_CHECK(s.bad[0] == 0 && s.bad[1] == 0 && s.made[0] == s.rounds && s.made[1] == s.rounds);
    st = buffet_pkt_pool_get_stats(s.pool);
    for (k = 0; k <= st.nclasses; k++) BT_CHECK(st.cls[k].in_use == 0 && st.cls[k].allocs == st.cls[k].frees);
    BT_CHECK(st.cls[3].allocs == 2 * s.rounds && st.cls[1].allocs == 1);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    BT_CHECK(buffet_pkt_pool_report_leaks(s.pool, NULL) == 0);
    buffet_pkt_pool_destroy(s.pool);
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   Two threads: A allocates, writes, clones and passes packets to B through a queue; B checks
   and frees them into its own cache. Both also allocate and free a little on their own side, so
   each ring has more than one producer and consumer. */

#define TP_QCAP 128

typedef struct tp_queue {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    buffet_pkt *items[TP_QCAP];
    size_t head, count;
    bool done;
} tp_queue;

static void tp_queue_push(tp_queue *q, buffet_pkt *p) {
    pthread_mutex_lock(&q->mu);
    while (q->count == TP_QCAP) pthread_cond_wait(&q->changed, &q->mu);
    q->items[(q->head + q->count++) % TP_QCAP] = p;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->mu);
}

/* The next packet, or NULL once the producer is done and the queue is empty. */
static buffet_pkt *tp_queue_pop(tp_queue *q) {
    buffet_pkt *p = NULL;
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && !q->done) pthread_cond_wait(&q->changed, &q->mu);
    if (q->count) {
        p = q->items[q->head];
        q->head = (q->head + 1) % TP_QCAP;
        q->count--;
        pthread_cond_broadcast(&q->changed);
    }
    pthread_mutex_unlock(&q->mu);
    return p;
}

typedef struct tp_stress {
    buffet_pkt_pool *pool;
    tp_queue q;
    size_t packets;            /* A: how many to make */
    size_t sent, received;     /* packets and clones through the queue */
    size_t bad, retries;
} tp_stress;

/* An allocation that waits for B to give buffers back when the class is at its max. */
static buffet_pkt *tp_stress_alloc(tp_stress *s, buffet_pkt_cache *c, size_t size) {
    buffet_pkt *p;
    while ((p = buffet_pkt_alloc(c, size)) == NULL) {
        s->retries++;
        sched_yield();
    }
    return p;
}

static void *tp_producer(void *arg) {
    tp_stress *s = (tp_stress *)arg;
    buffet_pkt_cache *c = NULL;
    size_t i;
    if (buffet_pkt_cache_create(&c, s->pool, 32) != BUFFET_OK) {
        s->bad++;
        pthread_mutex_lock(&s->q.mu);
        s->q.done = true;
        pthread_cond_broadcast(&s->q.changed);
        pthread_mutex_unlock(&s->q.mu);
        return NULL;
    }
    for (i = 0; i < s->packets; i++) {
        size_t size = (i * 37) % 2049;
        buffet_pkt *p = tp_stress_alloc(s, c, size), *q;
        tp_put(p, size, (unsigned)i);
        p->hash = (uint32_t)i;
        p->timestamp = i;
        if (i % 7 == 0) {   /* a second segment */
            buffet_pkt *t = tp_stress_alloc(s, c, 10);
            tp_put(t, 10, (unsigned)(i + size));
            buffet_pkt_chain(p, t);
        }
        if (i % 13 == 0) {  /* one that never leaves this thread */
            buffet_pkt *x = tp_stress_alloc(s, c, 100);
            buffet_pkt_free(c, x);
        }
        if (i % 3 == 0) {   /* a clone travels too */
            while ((q = buffet_pkt_clone(c, p)) == NULL) { s->retries++; sched_yield(); }
            tp_queue_push(&s->q, q);
            s->sent++;
        }
        if (i % 11 == 0) {  /* a second reference: B frees it twice */
            buffet_pkt_ref(p);
            tp_queue_push(&s->q, p);
            s->sent++;
        }
        tp_queue_push(&s->q, p);
        s->sent++;
    }
    pthread_mutex_lock(&s->q.mu);
    s->q.done = true;
    pthread_cond_broadcast(&s->q.changed);
    pthread_mutex_unlock(&s->q.mu);
    buffet_pkt_cache_destroy(c);
    return NULL;
}

static void *tp_consumer(void *arg) {
    tp_stress *s = (tp_stress *)arg;
    buffet_pkt_cache *c = NULL;
    buffet_pkt *p;
    unsigned char *tmp = (unsigned char *)malloc(4096);
    if (!tmp || buffet_pkt_cache_create(&c, s->pool, 64) != BUFFET_OK) {
        s->bad++;
        while ((p = tp_queue_pop(&s->q)) != NULL) buffet_pkt_free_shared(p);
        free(tmp);
        return NULL;
    }
    while ((p = tp_queue_pop(&s->q)) != NULL) {
        size_t i = p->hash, size = (i * 37) % 2049;
        const void *d = buffet_pkt_read(p, 0, size, tmp);
        if (p->timestamp != i || !d || !tp_is_pattern(d, size, (unsigned)i)) s->bad++;
        if (i % 7 == 0 && (p->nb_segs != 2 || p->pkt_len != size + 10 ||
                           !tp_is_pattern(buffet_pkt_data(p->next), 10, (unsigned)(i + size)))) s->bad++;
        if (i % 5 == 0) {   /* one of B's own */
            buffet_pkt *x = buffet_pkt_alloc(c, 100);
            if (x) buffet_pkt_free(c, x);
        }
        buffet_pkt_free(c, p);
        s->received++;
    }
    buffet_pkt_cache_destroy(c);
    free(tmp);
    return NULL;
}

static void test_two_threads(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    tp_stress s;
    pthread_t a, b;
    buffet_pkt_stats st;
    unsigned k;
    tp_begin(&e);
    memset(&s, 0, sizeof s);
    tp_small(&e, &d);
    d.log.fn = NULL;        /* the test's log is not thread-safe */
    d.max = 512;
    s.pool = tp_pool(&d);
    if (!s.pool) { tp_end(&e); return; }
    s.packets = tp_slow_mode() ? 10000 : 50000;
    pthread_mutex_init(&s.q.mu, NULL);
    pthread_cond_init(&s.q.changed, NULL);
    BT_CHECK(pthread_create(&b, NULL, tp_consumer, &s) == 0);
    BT_CHECK(pthread_create(&a, NULL, tp_producer, &s) == 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    BT_CHECK(s.bad == 0);
    BT_CHECK(s.received == s.sent && s.sent > s.packets);
    /* every buffer accounted for */
    st = buffet_pkt_pool_get_stats(s.pool);
    for (k = 0; k <= st.nclasses; k++) {
        BT_CHECK(st.cls[k].in_use == 0 && st.cls[k].allocs == st.cls[k].frees);
        BT_CHECK(st.cls[k].created <= st.cls[k].max);
    }
    BT_CHECK(st.cls[0].allocs > 0 && st.cls[2].allocs > 0 && st.cls[3].allocs >= s.packets / 3);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0 && st.corruptions == 0);
    BT_CHECK(buffet_pkt_pool_report_leaks(s.pool, NULL) == 0);
    buffet_pkt_pool_destroy(s.pool);
    pthread_cond_destroy(&s.q.changed);
    pthread_mutex_destroy(&s.q.mu);
    tp_end(&e);
}

/* ---------------------------------------------------------------------------------------------
   The tests of both builds; test_packet_debug.c runs these and its own. */

/* The shared store keeps free buffers in batches that live in the buffers themselves. Mixed
   traffic (a cache smaller than a batch, frees without a cache, partial flushes) must never lose
   or duplicate a buffer: drain the class completely, twice, and check every buffer is distinct. */
static void test_store_batches(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool;
    buffet_pkt_cache *small, *big;
    buffet_pkt *all[128];
    size_t n, i, round;
    tp_begin(&e);
    tp_small(&e, &d);
    pool = tp_pool(&d);
    small = pool ? tp_cache(pool, 6) : NULL;       /* smaller than a batch of the 64 class */
    big = pool ? tp_cache(pool, 0) : NULL;
    if (!small || !big) goto out;
    for (round = 0; round < 2; round++) {
        /* Until the class is dry: what the caches still hold is not lost, only not shared. */
        for (n = 0; n < 128; n++) {
            all[n] = n % 3 == 0 ? buffet_pkt_alloc(small, 10) : n % 3 == 1 ? buffet_pkt_alloc(big, 10)
                                                                         : buffet_pkt_alloc_shared(pool, 10);
            if (!all[n]) break;
        }
        BT_CHECK(n > 64 && n + small->cls[0].count + big->cls[0].count == 128);
        qsort(all, n, sizeof all[0], tp_cmp_ptr);
        for (i = 1; i < n; i++) BT_CHECK(all[i] != all[i - 1]);
        for (i = 0; i < n; i++) {
            if (i % 4 == 0) buffet_pkt_free_shared(all[i]);
            else if (i % 4 == 1) buffet_pkt_free(small, all[i]);
            else buffet_pkt_free(big, all[i]);
        }
        buffet_pkt_cache_flush(small);
        buffet_pkt_cache_flush(big);
        tp_all_back(pool);
    }
out:
    buffet_pkt_cache_destroy(small);
    buffet_pkt_cache_destroy(big);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}


/* The functions behind the macros and the inline fast paths are public too: called directly
   they behave the same (the _at forms take the call site; the _slow forms the careful path). */
static void test_direct_entry_points(void) {
    tp_env e;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *pool = NULL;
    buffet_pkt_cache *c = NULL;
    buffet_pkt *p, *q, *x, *bulk[4];
    buffet_chain ch;
    unsigned char *w, mem[512];
    size_t n;
    tp_begin(&e);
    tp_small(&e, &d);
    BT_CHECK(buffet_pkt_pool_create_at(&pool, &d, BUFFET_SITE) == BUFFET_OK && pool != NULL);
    BT_CHECK(buffet_pkt_pool_create_at(NULL, &d, BUFFET_SITE) == BUFFET_ERR_INVALID);
    BT_CHECK(!pool || buffet_pkt_cache_create_at(&c, pool, 0, BUFFET_SITE) == BUFFET_OK);
    if (!c) goto out;
    /* bulk, clone, external, linearize, to_chain */
    n = buffet_pkt_alloc_bulk_at(c, 1, bulk, 4, BUFFET_SITE);
    BT_CHECK(n == 4);
    if (n != 4) goto out;
    BT_CHECK(bulk[3]->cls == 1 && bulk[0] != bulk[3]);
    BT_CHECK(tp_put(bulk[0], 40, 1) && tp_put(bulk[1], 60, 41) && buffet_pkt_chain(bulk[0], bulk[1]) == BUFFET_OK);
    x = buffet_pkt_clone_at(c, bulk[0], BUFFET_SITE);
    BT_CHECK(x && x->nb_segs == 2 && x->pkt_len == 100 && bulk[0]->refcnt == 2 && bulk[1]->refcnt == 2);
    buffet_pkt_free_at(c, x, BUFFET_SITE);
    BT_CHECK(buffet_pkt_linearize_at(c, &bulk[0], BUFFET_SITE) == BUFFET_OK && bulk[0]->nb_segs == 1);
    BT_CHECK(bulk[0]->len == 100 && tp_is_pattern(buffet_pkt_data(bulk[0]), 100, 1));
    BT_CHECK(buffet_chain_init(&ch, buffet_debug_allocator(e.dbg)) == BUFFET_OK);
    BT_CHECK(buffet_pkt_to_chain_at(bulk[0], &ch, BUFFET_SITE) == BUFFET_OK && buffet_chain_len(&ch) == 100);
    buffet_chain_deinit(&ch);
    buffet_pkt_free_bulk(c, bulk, 1);
    buffet_pkt_free_bulk(c, bulk + 2, 2);
    x = buffet_pkt_attach_external_at(c, mem, sizeof mem, NULL, NULL, BUFFET_SITE);
    BT_CHECK(x && (x->flags & BUFFET_PKT_EXTERNAL) && buffet_pkt_data(x) == (void *)mem);
    buffet_pkt_free_at(c, x, BUFFET_SITE);
    p = buffet_pkt_alloc_at(c, 100, BUFFET_SITE);
    q = buffet_pkt_alloc_class_at(c, 0, BUFFET_SITE);
    BT_CHECK(p && q && p->cls == 1 && q->cls == 0);
    BT_CHECK(buffet_pkt_alloc_class_at(c, 3, BUFFET_SITE) == NULL);   /* the clone class is not for data */
    if (p && q) {
        w = (unsigned char *)buffet__pkt_append_slow(p, 10);
        BT_CHECK(w == (unsigned char *)buffet_pkt_data(p) && p->len == 10 && p->pkt_len == 10);
        w = (unsigned char *)buffet__pkt_prepend_slow(p, 4);
        BT_CHECK(w == (unsigned char *)buffet_pkt_data(p) && p->len == 14 && buffet_pkt_headroom(p) == 124);
        BT_CHECK(buffet__pkt_prepend_slow(p, 1000) == NULL && p->len == 14);
        BT_CHECK(buffet__pkt_append_slow(NULL, 1) == NULL && buffet__pkt_prepend_slow(NULL, 1) == NULL);
        /* the header reset every allocation does */
        p->hash = 7; p->timestamp = 9; p->in_port = 3; p->vlan_tci = 2;
        buffet__pkt_reset(p, 32);
        BT_CHECK(p->data_off == 32 && p->len == 0 && p->pkt_len == 0 && p->hash == 0 && p->timestamp == 0);
        BT_CHECK(p->in_port == 0 && p->vlan_tci == 0 && p->refcnt == 1 && p->nb_segs == 1 && p->next == NULL);
        BT_CHECK(p->buf != NULL && p->pool == pool && p->cls == 1);   /* what the buffer is stays */
        buffet_pkt_free_at(c, p, BUFFET_SITE);
        buffet_pkt_free_at(c, q, BUFFET_SITE);
    }
    buffet_pkt_free_at(c, NULL, BUFFET_SITE);
    buffet_pkt_cache_flush(c);
    tp_all_back(pool);
out:
    buffet_pkt_cache_destroy(c);
    buffet_pkt_pool_destroy(pool);
    tp_end(&e);
}

static void tp_run_common(void) {
    BT_RUN(test_destroy_unpoisons);   /* first: under ASan, a failure here makes later tests crash */
    BT_RUN(test_store_batches);
    BT_RUN(test_direct_entry_points);
    BT_RUN(test_pool_defaults);
    BT_RUN(test_pool_create_errors);
    BT_RUN(test_cache_create_errors);
    BT_RUN(test_alloc_sizes);
    BT_RUN(test_headroom_tailroom);
    BT_RUN(test_user_area);
    BT_RUN(test_multi_segment);
    BT_RUN(test_linearize);
    BT_RUN(test_to_chain);
    BT_RUN(test_ref);
    BT_RUN(test_double_free);
    BT_RUN(test_clone);
    BT_RUN(test_clone_exhaustion);
    BT_RUN(test_external);
    BT_RUN(test_bulk);
    BT_RUN(test_raw_bulk);
    BT_RUN(test_raw_bulk_twice);
    BT_RUN(test_raw_bulk_pools);
    BT_RUN(test_bulk_free_burst);
#if BUFFET_DEBUG >= 1
    BT_RUN(test_raw_bulk_debug);
#endif
    BT_RUN(test_shared_alloc);
    BT_RUN(test_stats);
    BT_RUN(test_exhaustion);
    BT_RUN(test_growth);
    BT_RUN(test_huge_pages);
    BT_RUN(test_numa);
    BT_RUN(test_stats_json);
    BT_RUN(test_stats_prometheus);
    BT_RUN(test_watermark);
    BT_RUN(test_leak_report);
    BT_RUN(test_registry);
    BT_RUN(test_poison);
    BT_RUN(test_fail_pool_create);
    BT_RUN(test_fail_growth);
    BT_RUN(test_fail_to_chain);
    BT_RUN(test_pool_allocator_contract);
#if !BUFFET_DEBUG
    BT_RUN(test_memory_2048);
#endif
    BT_RUN(test_destroy_with_cache);
    BT_RUN(test_destroy_with_chain);
    BT_RUN(test_destroy_registered);
    BT_RUN(test_registry_alignment);
    BT_RUN(test_ref_limit);
    BT_RUN(test_pkt_allocator);
    BT_RUN(test_callbacks_reenter);
    BT_RUN(test_two_threads);
    BT_RUN(test_clone_two_threads);
}

#ifndef TP_DEBUG_TESTS
int main(void) {
    tp_run_common();
    return bt_finish("test_packet.c");
}
#endif
