/* test_misuse_core.c - every documented misuse of buffet.h's public functions, as a careless
   user would commit it: zero, huge, misaligned and overflowing sizes; double frees and double
   unrefs; foreign pointers; use after reset; exhaustion; a failing parent; NULL arguments;
   registry misuse (duplicate names, a full registry, removal from inside a provider, nested
   calls, a provider that breaks its contract); buffet_buf_map_fd with hostile files. In a
   release build each must be refused with its documented error (and a log line where the object
   has a logger), or be provably harmless: the allocator's own counts stay right and later use
   works. tests/test_misuse_core_debug.c runs this file with BUFFET_DEBUG 1, where every report
   must also name the caller's file (this one). C11 and C++17. */
#ifndef BUFFET_IMPLEMENTATION
#define BUFFET_IMPLEMENTATION
#endif
#include "../buffet.h"
#define BT_HUGE_IS_NULL   /* absurd heap requests come back NULL under the sanitizers */
#include "bt.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MC_NAME
#define MC_NAME "test_misuse_core.c"
#endif
/* What every report of a misuse names in a debug build: the caller's file. */
#define MC_TAG "test_misuse_core"


static bool mc_mode(const char *m) {
    const char *v = getenv("BUFFET_TEST_MODE");
    return v && strcmp(v, m) == 0;
}
/* Valgrind calls malloc(SIZE_MAX) a "fishy value" error; SIZE_MAX / 2 is as impossible. */
static size_t mc_huge(void) { return mc_mode("valgrind") ? SIZE_MAX / 2 : SIZE_MAX; }
/* Touching a quarantined block is what ASan (and valgrind, with BUFFET_DEBUG's tracking) exist
   to stop: there the tool itself reports the misuse, and the test cannot go on. */
static bool mc_tool_watches_freed(void) {
    return BUFFET_TRACK_ASAN || (BUFFET_TRACK_VALGRIND && mc_mode("valgrind"));
}

/* ---------------------------------------------------------------------------------------------
   A logger that keeps everything it hears */

static buffet_logger mc_silent(void) {
    buffet_logger lg;
    lg.fn = buffet_log_silent;
    lg.user = NULL;
    return lg;
}
static int mc_count(const char *s, const char *what) {
    int n = 0;
    while ((s = strstr(s, what)) != NULL) { n++; s += strlen(what); }
    return n;
}

/* The misuse was reported with `code`; in a debug build the report names the caller's file. */
#define MC_REPORTED(l, code) do { \
    BT_CHECK((l)->count[-(int)(code)] > 0); \
    if (BUFFET_DEBUG >= 1 && !strstr((l)->all, MC_TAG)) { \
        BT_CHECK(!"the report names the caller's file"); \
        fprintf(stderr, "  %s:%d: heard: %s", MC_NAME, __LINE__, (l)->total ? (l)->all : "(nothing)\n"); \
    } } while (0)

/* For functions whose signature carries no call site (registry add and remove): logged. */
#define MC_LOGGED(l, code) BT_CHECK((l)->count[-(int)(code)] > 0)

static buffet_debug *mc_debug(bt_log *l) {
    buffet_debug_desc dd;
    buffet_debug *d = NULL;
    memset(&dd, 0, sizeof dd);
    dd.log = l ? bt_logger(l) : mc_silent();
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_OK && d);
    return d;
}
static buffet_debug_stats mc_stats(buffet_debug *d) { return buffet_debug_get_stats(d); }
static size_t mc_errors(buffet_debug *d) {
    buffet_debug_stats s = mc_stats(d);
    return s.double_frees + s.foreign_frees + s.mismatched_frees + s.corruptions;
}

/* Through the out-of-line calls: gcc, seeing buffet_alloc's inline heap path, would warn of
   sizes and frees that only a non-heap allocator receives here. */
static void *mc_alloc(buffet_allocator a, size_t size, size_t align, buffet_site site) {
    void *p = NULL;
    buffet_alloc_ex(a, size, align, site, &p);
    return p;
}
static void mc_free(buffet_allocator a, void *p, size_t size, size_t align, buffet_site site) {
    buffet_free_ex(a, p, size, align, site);
}

/* An allocator whose blocks die with a scope and cannot be pinned (contract 0). */
static void *mc_scope_alloc(void *self, size_t size, size_t align, buffet_site site) {
    (void)self; (void)align; (void)site;
    return malloc(size);
}
static void mc_scope_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)self; (void)size; (void)align; (void)site;
    free(ptr);
}
static uint32_t mc_scope_contract(const void *self) { (void)self; return 0; }
static const buffet_allocator_vtable mc_scope_vt = {mc_scope_alloc, NULL, mc_scope_free, NULL, mc_scope_contract, NULL};
static int mc_scope_self;
static buffet_allocator mc_scope(void) { return buffet_allocator_of(&mc_scope_self, &mc_scope_vt); }

/* ---------------------------------------------------------------------------------------------
   The allocator interface */

/* Bad sizes and alignments on every allocator kind: refused, with the reason, nothing leaked. */
static void test_alloc_bad_arguments(void) {
    bt_log lg;
    buffet_debug *d = mc_debug(&lg);
    buffet_failing f;
    buffet_fixed fx;
    buffet_fixed_desc fd;
    buffet_adapter ad;
    static unsigned char mem[4096] __attribute__((aligned(64)));
    buffet_allocator as[6];
    const char *why = NULL;
    size_t k;
    if (!d) return;
    buffet_failing_init(&f, buffet_debug_allocator(d), 0, false);
    memset(&fd, 0, sizeof fd);
    fd.mem = mem;
    fd.cap = sizeof mem;
    BT_CHECK(buffet_fixed_init(&fx, &fd) == BUFFET_OK);
    BT_CHECK(buffet_adapter_init(&ad, buffet_debug_allocator(d), 0) == BUFFET_OK);
    as[0] = buffet_heap();
    as[1] = buffet_debug_allocator(d);
    as[2] = buffet_failing_allocator(&f);
    as[3] = buffet_fixed_allocator(&fx);
    as[4] = buffet_adapter_allocator(&ad);
    as[5] = buffet_null_allocator();
    for (k = 0; k < 6; k++) {
        buffet_allocator a = as[k];
        void *p = (void *)&k;
        size_t huge = k == 0 ? mc_huge() : SIZE_MAX;
        /* size 0: NULL, and no error */
        BT_CHECK(buffet_alloc(a, 0, 16, BUFFET_SITE) == NULL);
        BT_CHECK(buffet_alloc_ex(a, 0, 16, BUFFET_SITE, &p) == BUFFET_OK && p == NULL);
        /* alignments that are not powers of two */
        BT_CHECK(buffet_alloc_ex(a, 8, 0, BUFFET_SITE, &p) == BUFFET_ERR_INVALID && p == NULL);
        BT_CHECK(buffet_alloc_ex(a, 8, 3, BUFFET_SITE, &p) == BUFFET_ERR_INVALID && p == NULL);
        BT_CHECK(buffet_alloc(a, 8, 24, BUFFET_SITE) == NULL && buffet_alloc_error(&why) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_alloc_ex(a, 8, 16, BUFFET_SITE, NULL) == BUFFET_ERR_INVALID);
        /* huge and overflowing sizes */
        BT_CHECK(buffet_alloc(a, huge, 16, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) != BUFFET_OK);
        BT_CHECK(buffet_alloc_array(a, SIZE_MAX / 2, 3, 16, BUFFET_SITE) == NULL);
        BT_CHECK(buffet_alloc_error(&why) == BUFFET_ERR_OVERFLOW && why && *why);
        /* resize and realloc with bad arguments change nothing */
        BT_CHECK(!buffet_resize(a, NULL, 8, 16, 16));
        if (k == 5) continue;
        p = buffet_alloc(a, 32, 16, BUFFET_SITE);
        BT_CHECK(p != NULL);
        if (!p) continue;
        memset(p, 0x42, 32);
        BT_CHECK(!buffet_resize(a, p, 0, 16, 16) && !buffet_resize(a, p, 32, 0, 16) && !buffet_resize(a, p, 32, 64, 3));
        BT_CHECK(!buffet_resize(a, p, 32, huge, 16));
        BT_CHECK(buffet_realloc(a, p, 32, 64, 3, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_realloc(a, p, 0, 64, 16, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_realloc(a, p, 32, huge, 16, BUFFET_SITE) == NULL);
        BT_CHECK(((unsigned char *)p)[0] == 0x42 && ((unsigned char *)p)[31] == 0x42);   /* untouched */
        /* a free with a bad alignment frees nothing: the block is still ours */
        BT_CHECK(buffet_free_ex(a, p, 32, 3, BUFFET_SITE) == BUFFET_ERR_INVALID);
        BT_CHECK(((unsigned char *)p)[0] == 0x42);
        buffet_free_array(a, p, SIZE_MAX / 2, 3, 16, BUFFET_SITE);   /* overflowing: nothing */
        BT_CHECK(buffet_free_ex(a, NULL, 32, 16, BUFFET_SITE) == BUFFET_OK);
        buffet_free(a, p, 32, 16, BUFFET_SITE);
    }
    /* the null allocator refuses, and says why */
    BT_CHECK(buffet_alloc(buffet_null_allocator(), 8, 8, BUFFET_SITE) == NULL && buffet_alloc_error(&why) == BUFFET_ERR_NOMEM);
    BT_CHECK(buffet_alloc(buffet_debug_allocator(NULL), 8, 8, BUFFET_SITE) == NULL);
    BT_CHECK(buffet_alloc(buffet_fixed_allocator(NULL), 8, 8, BUFFET_SITE) == NULL);
    BT_CHECK(buffet_alloc(buffet_failing_allocator(NULL), 8, 8, BUFFET_SITE) == NULL);
    BT_CHECK(buffet_alloc(buffet_adapter_allocator(NULL), 8, 8, BUFFET_SITE) == NULL);
    BT_CHECK(mc_stats(d).live_count == 0 && mc_errors(d) == 0);
    buffet_adapter_deinit(&ad);
    buffet_fixed_deinit(&fx);
    buffet_failing_deinit(&f);
    buffet_debug_destroy(d);
}

/* ---------------------------------------------------------------------------------------------
   The debug allocator: each misuse refused, counted once, logged once, naming the caller */

static void test_debug_double_free(void) {
    bt_log lg;
    buffet_debug *d = mc_debug(&lg);
    buffet_allocator a = buffet_debug_allocator(d);
    void *p, *q;
    if (!d) return;
    p = buffet_alloc(a, 40, 8, BUFFET_SITE);
    q = buffet_alloc(a, 40, 8, BUFFET_SITE);
    buffet_free(a, p, 40, 8, BUFFET_SITE);
    buffet_free_ex(a, p, 40, 8, BUFFET_SITE);                 /* twice */
    BT_CHECK(mc_stats(d).double_frees == 1 && lg.count[-BUFFET_ERR_DOUBLE_FREE] == 1);
    BT_CHECK(buffet_debug_last_error(d) == BUFFET_ERR_DOUBLE_FREE && buffet_debug_last_error(d) == BUFFET_OK);
    /* the report names both frees and the allocation: all this file's lines */
    BT_CHECK(mc_count(lg.all, MC_TAG) >= 3);
    MC_REPORTED(&lg, BUFFET_ERR_DOUBLE_FREE);
    /* a resize of the freed block is the same misuse */
    BT_CHECK(!buffet_resize(a, p, 40, 80, 8));
    BT_CHECK(mc_stats(d).double_frees == 2);
    /* the allocator is unharmed: q is intact, and the counts add up */
    memset(q, 7, 40);
    buffet_free(a, q, 40, 8, BUFFET_SITE);
    BT_CHECK(mc_stats(d).live_count == 0 && mc_stats(d).free_count == 2 && mc_stats(d).corruptions == 0);
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK);
    buffet_debug_destroy(d);
}

static void test_debug_foreign(void) {
    bt_log lg, lg2;
    buffet_debug *d = mc_debug(&lg), *other = mc_debug(&lg2);
    buffet_allocator a = buffet_debug_allocator(d);
    unsigned char stack[64];
    unsigned char *p, *theirs, *heap;
    if (!d || !other) return;
    p = (unsigned char *)buffet_alloc(a, 64, 16, BUFFET_SITE);
    theirs = (unsigned char *)buffet_alloc(buffet_debug_allocator(other), 64, 16, BUFFET_SITE);
    heap = (unsigned char *)malloc(64);
    buffet_free_ex(a, stack, sizeof stack, 16, BUFFET_SITE);     /* the stack */
    buffet_free_ex(a, p + 16, 48, 16, BUFFET_SITE);              /* inside a live block, misaligned */
    buffet_free_ex(a, theirs, 64, 16, BUFFET_SITE);              /* another debug allocator's */
    buffet_free_ex(a, heap, 64, 16, BUFFET_SITE);                /* the heap's */
    BT_CHECK(!buffet_resize(a, stack, 64, 128, 16));
    BT_CHECK(mc_stats(d).foreign_frees == 5 && lg.count[-BUFFET_ERR_FOREIGN] == 5);
    MC_REPORTED(&lg, BUFFET_ERR_FOREIGN);
    /* nothing was freed: every block is still whole and still counted */
    BT_CHECK(mc_stats(d).live_count == 1 && mc_stats(other).live_count == 1 && mc_errors(other) == 0);
    memset(p, 1, 64);
    memset(theirs, 2, 64);
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK && buffet_debug_check(other) == BUFFET_OK);
    buffet_free(a, p, 64, 16, BUFFET_SITE);
    buffet_free(buffet_debug_allocator(other), theirs, 64, 16, BUFFET_SITE);
    free(heap);
    BT_CHECK(mc_stats(d).live_count == 0 && mc_stats(other).live_count == 0);
    buffet_debug_destroy(d);
    buffet_debug_destroy(other);
}

static void test_debug_wrong_size(void) {
    bt_log lg;
    buffet_debug *d = mc_debug(&lg);
    buffet_allocator a = buffet_debug_allocator(d);
    void *p, *q, *r;
    if (!d) return;
    p = buffet_alloc(a, 100, 16, BUFFET_SITE);
    q = buffet_alloc(a, 100, 64, BUFFET_SITE);
    r = buffet_alloc(a, 100, 16, BUFFET_SITE);
    buffet_free(a, p, 99, 16, BUFFET_SITE);       /* the wrong size */
    buffet_free(a, q, 100, 16, BUFFET_SITE);      /* the wrong alignment */
    BT_CHECK(!buffet_resize(a, r, 50, 200, 16));  /* a resize from the wrong size: refused */
    BT_CHECK(mc_stats(d).mismatched_frees == 3 && lg.count[-BUFFET_ERR_MISMATCH] == 3);
    MC_REPORTED(&lg, BUFFET_ERR_MISMATCH);
    /* the record knew the truth: both blocks were released whole, r is untouched */
    BT_CHECK(mc_stats(d).live_count == 1 && mc_stats(d).live_bytes == 100 && mc_stats(d).corruptions == 0);
    buffet_free(a, r, 100, 16, BUFFET_SITE);
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK && mc_stats(d).live_count == 0);
    buffet_debug_destroy(d);
}

/* An overrun is one error: counted and logged once, however many times it is looked at. */
static void test_debug_overrun_once(void) {
    bt_log lg;
    buffet_debug *d = mc_debug(&lg);
    buffet_allocator a = buffet_debug_allocator(d);
    unsigned char *p, *q;
    if (!d) return;
    p = (unsigned char *)buffet_alloc(a, 24, 8, BUFFET_SITE);
    q = (unsigned char *)buffet_alloc(a, 24, 8, BUFFET_SITE);
    p[24] = 0;    /* one byte past the end */
    q[-1] = 0;    /* one byte before the start */
    BT_CHECK(buffet_debug_check(d) == BUFFET_ERR_CORRUPT);
    BT_CHECK(mc_stats(d).corruptions == 2);
    MC_REPORTED(&lg, BUFFET_ERR_CORRUPT);
    BT_CHECK(mc_count(lg.all, "overrun:") == 1 && mc_count(lg.all, "underrun:") == 1);
    /* looked at again, resized, freed: the same two errors (FAILS until buffet_debug_check and
       the resize path restore the guards they reported, as free does) */
    buffet_debug_check(d);
    BT_CHECK(!buffet_resize(a, p, 24, 12, 8) || true);
    buffet_free(a, p, 24, 8, BUFFET_SITE);
    buffet_free(a, q, 24, 8, BUFFET_SITE);
    BT_CHECK(mc_stats(d).corruptions == 2);
    BT_CHECK(lg.count[-BUFFET_ERR_CORRUPT] == 2);
    BT_CHECK(mc_stats(d).live_count == 0);
    buffet_debug_destroy(d);
    BT_CHECK(lg.count[-BUFFET_ERR_CORRUPT] == 2);
}

/* One write after free: found once, by the check, and not again when the block leaves the
   quarantine or at destroy. */
static void test_debug_write_after_free_once(void) {
    bt_log lg;
    buffet_debug *d;
    buffet_allocator a;
    unsigned char *p;
    int i;
    if (mc_tool_watches_freed()) BT_SKIP("tool", "ASan/valgrind report a write after free themselves (the quarantine is poisoned)");
    d = mc_debug(&lg);
    if (!d) return;
    a = buffet_debug_allocator(d);
    p = (unsigned char *)buffet_alloc(a, 32, 16, BUFFET_SITE);
    buffet_free(a, p, 32, 16, BUFFET_SITE);
    p[5] = 1;
    BT_CHECK(buffet_debug_check(d) == BUFFET_ERR_CORRUPT);
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK);
    MC_REPORTED(&lg, BUFFET_ERR_CORRUPT);
    for (i = 0; i < 100; i++) buffet_free(a, buffet_alloc(a, 32, 16, BUFFET_SITE), 32, 16, BUFFET_SITE);   /* evicts it */
    BT_CHECK(mc_stats(d).corruptions == 1);
    buffet_debug_destroy(d);
    BT_CHECK(lg.count[-BUFFET_ERR_CORRUPT] == 1 && mc_count(lg.all, "write after free") == 1);
}

/* Six writes after free found in one call: six counted, and none lost unseen: the log queue
   tells 4 and then one line for the rest. */
static void test_debug_every_damage_logged(void) {
    bt_log lg;
    buffet_debug *d;
    buffet_allocator a;
    unsigned char *p[6];
    int i;
    if (mc_tool_watches_freed()) BT_SKIP("tool", "ASan/valgrind report a write after free themselves (the quarantine is poisoned)");
    d = mc_debug(&lg);
    if (!d) return;
    a = buffet_debug_allocator(d);
    for (i = 0; i < 6; i++) p[i] = (unsigned char *)buffet_alloc(a, 16, 16, BUFFET_SITE);
    for (i = 0; i < 6; i++) buffet_free(a, p[i], 16, 16, BUFFET_SITE);
    for (i = 0; i < 6; i++) p[i][3] = 0;
    BT_CHECK(buffet_debug_check(d) == BUFFET_ERR_CORRUPT);
    BT_CHECK(mc_stats(d).corruptions == 6);
    BT_CHECK(lg.count[-BUFFET_ERR_CORRUPT] == 5 && strstr(lg.all, "and 2 more") != NULL);
    buffet_debug_destroy(d);
}

/* A debug allocator made with desc NULL (the README's quick start) must speak: its reports go to
   stderr. */
static void test_debug_null_desc_prints(void) {
    char path[] = "/tmp/buffet-misuse-XXXXXX";
    int fd = mkstemp(path), saved;
    buffet_debug *d = NULL;
    char text[4096];
    ssize_t n;
    void *p;
    if (fd < 0) BT_SKIP("tmp", "mkstemp failed");
    unlink(path);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    BT_CHECK(buffet_debug_create(&d, NULL) == BUFFET_OK);
    if (d) {
        p = buffet_alloc(buffet_debug_allocator(d), 8, 8, BUFFET_SITE);
        buffet_free(buffet_debug_allocator(d), p, 8, 8, BUFFET_SITE);
        buffet_free_ex(buffet_debug_allocator(d), p, 8, 8, BUFFET_SITE);
        buffet_debug_destroy(d);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    BT_CHECK(strstr(text, "double free") != NULL);
    BT_CHECK(strstr(text, MC_TAG) != NULL);
}

/* Leaks are reported once each: to out when it is given (and only there), else to the logger;
   one line per site, however many blocks it leaked. */
static void test_debug_leaks_once(void) {
    bt_log lg;
    buffet_debug *d = mc_debug(&lg);
    buffet_allocator a = buffet_debug_allocator(d);
    void *p[4];
    FILE *out = tmpfile();
    char text[4096];
    size_t n;
    int i;
    if (!d || !out) {
        if (out) fclose(out);
        BT_SKIP("tmp", "tmpfile failed");
    }
    for (i = 0; i < 3; i++) p[i] = buffet_alloc(a, 10, 8, BUFFET_SITE);   /* one site, three blocks */
    p[3] = buffet_alloc(a, 20, 8, BUFFET_SITE);                           /* another site */
    BT_CHECK(buffet_debug_report_leaks(d, out) == 4);
    fflush(out);
    rewind(out);
    n = fread(text, 1, sizeof text - 1, out);
    text[n] = '\0';
    fclose(out);
    BT_CHECK(lg.count[-BUFFET_ERR_LEAK] == 0);        /* out was given: the logger hears nothing */
    BT_CHECK(mc_count(text, "leak:") == 2);               /* one line per site */
    BT_CHECK(mc_count(text, MC_TAG) == 2);
    BT_CHECK(buffet_debug_report_leaks(d, NULL) == 4);
    BT_CHECK(lg.count[-BUFFET_ERR_LEAK] == 2 && mc_count(lg.all, MC_TAG) == 2);
    for (i = 0; i < 3; i++) buffet_free(a, p[i], 10, 8, BUFFET_SITE);
    buffet_free(a, p[3], 20, 8, BUFFET_SITE);
    BT_CHECK(buffet_debug_report_leaks(d, NULL) == 0 && lg.count[-BUFFET_ERR_LEAK] == 2);
    buffet_debug_destroy(d);
}

/* A logger may call back into the allocator that is reporting to it. */
typedef struct mc_reentrant { buffet_debug *d; int calls; } mc_reentrant;
static void mc_reentrant_log(void *user, buffet_log_level level, buffet_result code, const char *msg, const char *file, int line) {
    mc_reentrant *r = (mc_reentrant *)user;
    buffet_allocator a = buffet_debug_allocator(r->d);
    void *p;
    (void)level; (void)code; (void)msg; (void)file; (void)line;
    r->calls++;
    p = buffet_alloc(a, 16, 16, BUFFET_SITE);
    buffet_free(a, p, 16, 16, BUFFET_SITE);
    (void)buffet_debug_get_stats(r->d);
}
static void test_debug_reentrant_logger(void) {
    buffet_debug_desc dd;
    mc_reentrant re;
    buffet_debug *d = NULL;
    unsigned char local[8];
    memset(&dd, 0, sizeof dd);
    memset(&re, 0, sizeof re);
    dd.log.fn = mc_reentrant_log;
    dd.log.user = &re;
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_OK);
    if (!d) return;
    re.d = d;
    buffet_free_ex(buffet_debug_allocator(d), local, 8, 8, BUFFET_SITE);
    BT_CHECK(re.calls == 1 && mc_stats(d).foreign_frees == 1 && mc_stats(d).live_count == 0);
    buffet_debug_destroy(d);
}

static void test_debug_create_misuse(void) {
    bt_log lg;
    buffet_debug_desc dd;
    buffet_debug *d = (buffet_debug *)&dd;
    BT_CHECK(buffet_debug_create(NULL, NULL) == BUFFET_ERR_INVALID);
    memset(&dd, 0, sizeof dd);
    dd.log = bt_logger(&lg);
    dd.guard_size = 7;
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_ERR_INVALID && d == NULL);
    dd.guard_size = 8192;
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_ERR_INVALID && d == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_INVALID);
    dd.guard_size = 0;
    dd.parent = mc_scope();   /* blocks that die with a scope cannot be kept until freed */
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_ERR_LIFETIME && d == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_LIFETIME);
    dd.parent = buffet_heap();
    dd.bookkeeping = mc_scope();
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_ERR_LIFETIME && d == NULL);
    /* NULL objects: refused or nothing */
    buffet_debug_destroy(NULL);
    BT_CHECK(buffet_debug_check(NULL) == BUFFET_ERR_INVALID && buffet_debug_last_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_debug_report_leaks(NULL, stderr) == 0 && buffet_debug_get_stats(NULL).live_count == 0);
    /* a debug allocator over the null allocator: made, and refuses every allocation */
    dd.bookkeeping = buffet_heap();
    dd.parent = buffet_null_allocator();
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_OK && d);
    if (d) {
        BT_CHECK(buffet_alloc(buffet_debug_allocator(d), 8, 8, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
        BT_CHECK(mc_stats(d).failed_allocs == 1 && mc_stats(d).live_count == 0);
        buffet_debug_destroy(d);
    }
}

/* A failing parent: allocations fail cleanly, nothing is recorded for them. */
static void test_debug_failing_parent(void) {
    buffet_failing f;
    buffet_debug_desc dd;
    buffet_debug *d = NULL;
    bt_log lg;
    void *p;
    buffet_failing_init(&f, buffet_heap(), 2, true);
    memset(&dd, 0, sizeof dd);
    dd.parent = buffet_failing_allocator(&f);
    dd.log = bt_logger(&lg);
    BT_CHECK(buffet_debug_create(&d, &dd) == BUFFET_OK);
    if (!d) return;
    p = buffet_alloc(buffet_debug_allocator(d), 8, 8, BUFFET_SITE);
    BT_CHECK(p != NULL);
    BT_CHECK(buffet_alloc(buffet_debug_allocator(d), 8, 8, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
    BT_CHECK(mc_stats(d).failed_allocs == 1 && mc_stats(d).live_count == 1);
    MC_REPORTED(&lg, BUFFET_ERR_NOMEM);
    buffet_free(buffet_debug_allocator(d), p, 8, 8, BUFFET_SITE);
    BT_CHECK(mc_stats(d).live_count == 0 && f.failures == 1 && f.allocs == 2);
    buffet_debug_destroy(d);
    /* a deinit'd failing allocator refuses everything */
    buffet_failing_deinit(&f);
    BT_CHECK(buffet_alloc(buffet_failing_allocator(&f), 8, 8, BUFFET_SITE) == NULL);
    buffet_failing_init(NULL, buffet_heap(), 0, false);
    buffet_failing_deinit(NULL);
}

/* ---------------------------------------------------------------------------------------------
   The fixed allocator: exhaustion, foreign pointers, use after reset and after deinit */

static void test_fixed_misuse(void) {
    static unsigned char mem[256] __attribute__((aligned(64)));
    buffet_fixed fx;
    buffet_fixed_desc fd;
    buffet_allocator a;
    bt_log lg;
    unsigned char local[16], *p, *q, *r;
    const char *why;
    BT_CHECK(buffet_fixed_init(NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_fixed_init(&fx, NULL) == BUFFET_ERR_INVALID);
    memset(&fd, 0, sizeof fd);
    fd.cap = 64;   /* mem NULL with a capacity */
    BT_CHECK(buffet_fixed_init(&fx, &fd) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_alloc(buffet_fixed_allocator(&fx), 8, 8, BUFFET_SITE) == NULL);   /* refuses after the failed init */
    fd.mem = mem;
    fd.cap = sizeof mem;
    fd.log = bt_logger(&lg);
    BT_CHECK(buffet_fixed_init(&fx, &fd) == BUFFET_OK);
    a = buffet_fixed_allocator(&fx);
    /* exhaustion: refused with its reason, and what was given stays whole */
    p = (unsigned char *)mc_alloc(a, 200, 8, BUFFET_SITE);
    BT_CHECK(p == mem);
    memset(p, 0x11, 200);
    BT_CHECK(mc_alloc(a, 100, 8, BUFFET_SITE) == NULL && buffet_alloc_error(&why) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(mc_alloc(a, SIZE_MAX, 8, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(mc_alloc(a, 8, (size_t)1 << 40, BUFFET_SITE) == NULL);
    BT_CHECK(!buffet_resize(a, p, 200, 257, 8) && !buffet_resize(a, p, 200, SIZE_MAX, 8));
    /* a foreign pointer: refused and logged, naming the caller */
    buffet_free_ex(a, local, sizeof local, 8, BUFFET_SITE);
    BT_CHECK(lg.count[-BUFFET_ERR_FOREIGN] == 1);
    MC_REPORTED(&lg, BUFFET_ERR_FOREIGN);
    /* inside the buffer but not a block, or the wrong size: ignored */
    mc_free(a, p + 8, 16, 8, BUFFET_SITE);
    mc_free(a, p, 199, 8, BUFFET_SITE);
    q = (unsigned char *)mc_alloc(a, 8, 8, BUFFET_SITE);
    BT_CHECK(q == mem + 200);
    BT_CHECK(p[0] == 0x11 && p[199] == 0x11);
    /* double free of the last block: the second is a no-op */
    mc_free(a, q, 8, 8, BUFFET_SITE);
    mc_free(a, q, 8, 8, BUFFET_SITE);
    r = (unsigned char *)mc_alloc(a, 16, 8, BUFFET_SITE);
    BT_CHECK(r == mem + 200);
    memset(r, 0x22, 16);
    /* use after reset: a stale pointer that is not the newest block changes nothing. (One that
       is the newest block, same address and size, frees it: a bump allocator cannot tell them
       apart; see the report.) */
    buffet_fixed_reset(&fx);
    q = (unsigned char *)mc_alloc(a, 64, 8, BUFFET_SITE);
    BT_CHECK(q == mem);
    memset(q, 0x33, 64);
    mc_free(a, p, 200, 8, BUFFET_SITE);       /* stale: same address, another size */
    mc_free(a, r, 16, 8, BUFFET_SITE);        /* stale: beyond the newest block */
    BT_CHECK(mc_alloc(a, 8, 8, BUFFET_SITE) == mem + 64);
    BT_CHECK(q[0] == 0x33 && q[63] == 0x33);
    BT_CHECK(lg.count[-BUFFET_ERR_FOREIGN] == 1);
    /* use after deinit: refuses everything; a free is foreign */
    buffet_fixed_deinit(&fx);
    BT_CHECK(mc_alloc(a, 8, 8, BUFFET_SITE) == NULL);
    buffet_fixed_reset(NULL);
    buffet_fixed_deinit(NULL);
}

/* ---------------------------------------------------------------------------------------------
   The adapter */

static void test_adapter_misuse(void) {
    bt_log lg;
    buffet_debug *d = mc_debug(&lg);
    buffet_adapter ad;
    unsigned char *p, *q;
    if (!d) return;
    BT_CHECK(buffet_adapter_init(NULL, buffet_heap(), 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_adapter_init(&ad, buffet_heap(), 3) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_adapter_init(&ad, buffet_heap(), 8192) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_adapter_init(&ad, mc_scope(), 0) == BUFFET_ERR_LIFETIME);
    /* after a failed init the adapter refuses, as after deinit (FAILS: init leaves *ad as it was,
       so a caller that goes on uses whatever bytes were there) */
    memset(&ad, 0xA5, sizeof ad);
    BT_CHECK(buffet_adapter_init(&ad, buffet_heap(), 3) == BUFFET_ERR_INVALID);
    BT_CHECK(ad.parent.vtable == buffet_null_allocator().vtable);
    if (ad.parent.vtable == buffet_null_allocator().vtable) BT_CHECK(buffet_adapter_malloc(&ad, 8) == NULL);
    BT_CHECK(buffet_adapter_init(&ad, buffet_debug_allocator(d), 0) == BUFFET_OK);
    /* zero, huge and overflowing sizes */
    BT_CHECK(buffet_adapter_malloc(&ad, 0) == NULL && buffet_adapter_malloc(&ad, SIZE_MAX) == NULL);
    BT_CHECK(buffet_adapter_malloc(&ad, SIZE_MAX - 8) == NULL);
    BT_CHECK(buffet_adapter_calloc(&ad, SIZE_MAX / 2, 3) == NULL && buffet_adapter_calloc(&ad, 0, 8) == NULL);
    BT_CHECK(buffet_adapter_zalloc(&ad, 0xFFFFFFFFu, 0xFFFFu) == NULL);   /* 2^48 bytes */
    BT_CHECK(buffet_alloc(buffet_adapter_allocator(&ad), 8, 8192, BUFFET_SITE) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    p = (unsigned char *)buffet_adapter_malloc(&ad, 10);
    BT_CHECK(p != NULL);
    if (!p) goto out;
    memset(p, 9, 10);
    BT_CHECK(buffet_adapter_realloc(&ad, p, SIZE_MAX) == NULL && buffet_adapter_realloc(&ad, p, SIZE_MAX - 4) == NULL);
    BT_CHECK(p[0] == 9 && p[9] == 9 && buffet_adapter_size(p) == 10);
    /* NULLs */
    BT_CHECK(buffet_adapter_malloc(NULL, 8) == NULL && buffet_adapter_calloc(NULL, 1, 8) == NULL && buffet_adapter_realloc(NULL, p, 8) == NULL);
    buffet_adapter_free(NULL, p);
    buffet_adapter_free(&ad, NULL);
    buffet_adapter_zfree(&ad, NULL);
    BT_CHECK(buffet_adapter_size(NULL) == 0);
    /* realloc to 0 frees; a wrong size through the sized face is harmless (the header knows) */
    BT_CHECK(buffet_adapter_realloc(&ad, p, 0) == NULL);
    q = (unsigned char *)buffet_alloc(buffet_adapter_allocator(&ad), 30, 16, BUFFET_SITE);
    buffet_free(buffet_adapter_allocator(&ad), q, 3, 1, BUFFET_SITE);
    BT_CHECK(mc_stats(d).live_count == 0 && mc_errors(d) == 0);
    /* a double free, and a pointer that is no block: the adapter checks its header, refuses
       and logs both, and passes nothing made up to its parent */
    {
        bt_log al;
        unsigned char local[64];
        ad.log = bt_logger(&al);
        memset(local, 0x5a, sizeof local);
        buffet_adapter_free(&ad, local + 32);
        BT_CHECK(al.count[-BUFFET_ERR_FOREIGN] == 1);
        BT_CHECK(buffet_adapter_realloc(&ad, local + 32, 100) == NULL && al.count[-BUFFET_ERR_FOREIGN] == 2);
        if (!mc_tool_watches_freed()) {
            p = (unsigned char *)buffet_adapter_malloc(&ad, 10);
            buffet_adapter_free(&ad, p);
            buffet_adapter_free(&ad, p);
            BT_CHECK(al.count[-BUFFET_ERR_FOREIGN] == 3 && strstr(al.all, "not a live block") != NULL);
        }
        BT_CHECK(mc_stats(d).live_count == 0 && mc_errors(d) == 0);
    }
    buffet_adapter_deinit(&ad);
    BT_CHECK(buffet_adapter_malloc(&ad, 8) == NULL && buffet_alloc(buffet_adapter_allocator(&ad), 8, 8, BUFFET_SITE) == NULL);
    buffet_adapter_deinit(NULL);
out:
    buffet_debug_destroy(d);
}

/* ---------------------------------------------------------------------------------------------
   Buffers and slices */

static void mc_release(void *user, void *data, size_t size) {
    (void)data; (void)size;
    (*(int *)user)++;
}

static void test_buf_create_misuse(void) {
    bt_log lg;
    buffet_buf_desc d;
    buffet_buf *b = (buffet_buf *)&d;
    buffet_fixed fx;
    buffet_fixed_desc fd;
    static unsigned char mem[1024];
    unsigned char wrap[16];
    int released = 0;
    BT_CHECK(buffet_buf_create(NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_buf_create(&b, NULL) == BUFFET_ERR_INVALID && b == NULL);
    memset(&d, 0, sizeof d);
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_INVALID && b == NULL);   /* size 0 */
    MC_REPORTED(&lg, BUFFET_ERR_INVALID);
    d.size = 64;
    d.kind = 42;
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_INVALID && b == NULL);   /* no such kind */
    MC_REPORTED(&lg, BUFFET_ERR_INVALID);
    d.kind = BUFFET_BUF_HEAP;
    d.align = 48;
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_INVALID && b == NULL);   /* not a power of two */
    MC_REPORTED(&lg, BUFFET_ERR_INVALID);
    d.align = 0;
    d.kind = BUFFET_BUF_WRAP;
    d.log = bt_logger(&lg);
    d.release = mc_release;
    d.release_user = &released;
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_INVALID && b == NULL);   /* WRAP without memory */
    MC_REPORTED(&lg, BUFFET_ERR_INVALID);
    /* overflowing sizes, each kind: refused and logged */
    {
        static const uint32_t kinds[3] = {BUFFET_BUF_HEAP, BUFFET_BUF_MMAP, BUFFET_BUF_SHM};
        int k;
        for (k = 0; k < 3; k++) {
            memset(&d, 0, sizeof d);
            d.kind = kinds[k];
            d.size = SIZE_MAX - 1;
            d.log = bt_logger(&lg);
            BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_OVERFLOW && b == NULL);
            MC_REPORTED(&lg, BUFFET_ERR_OVERFLOW);
            /* huge but not overflowing: no memory (or no system) for it */
            d.size = (size_t)1 << 62;
            d.log = bt_logger(&lg);
            BT_CHECK(buffet_buf_create(&b, &d) != BUFFET_OK && b == NULL);
            BT_CHECK(lg.total >= 1);
        }
    }
    /* allocators that cannot hold a buffer */
    memset(&d, 0, sizeof d);
    d.size = 64;
    d.allocator = mc_scope();
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_LIFETIME && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_LIFETIME);
    memset(&fd, 0, sizeof fd);
    fd.mem = mem;
    fd.cap = sizeof mem;
    BT_CHECK(buffet_fixed_init(&fx, &fd) == BUFFET_OK);
    d.allocator = buffet_fixed_allocator(&fx);
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_THREAD && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_THREAD);
    d.allocator = buffet_null_allocator();
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_NOMEM && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_NOMEM);
    /* a failing allocator: refused, nothing leaked, a WRAP buffer's release NOT called */
    {
        buffet_failing f;
        buffet_debug *dbg = mc_debug(NULL);
        if (!dbg) return;
        buffet_failing_init(&f, buffet_debug_allocator(dbg), 1, true);
        d.allocator = buffet_failing_allocator(&f);
        d.kind = BUFFET_BUF_WRAP;
        d.wrap_data = wrap;
        d.size = sizeof wrap;
        d.release = mc_release;
        d.release_user = &released;
        d.log = bt_logger(&lg);
        BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_ERR_NOMEM && b == NULL && released == 0);
        MC_REPORTED(&lg, BUFFET_ERR_NOMEM);
        BT_CHECK(mc_stats(dbg).live_count == 0);
        buffet_debug_destroy(dbg);
    }
}

static void test_buf_ops_misuse(void) {
    buffet_buf_desc d;
    buffet_buf *b = NULL, *c = NULL;
    buffet_slice s;
    buffet_chain ch;
    unsigned char tmp[64] = {0};
    memset(&d, 0, sizeof d);
    d.size = 64;
    d.flags = BUFFET_BUF_ZERO;
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
    BT_CHECK(buffet_buf_create(&c, &d) == BUFFET_OK);
    if (!b || !c) return;
    /* out of range, overflowing offsets, NULL pointers: refused, nothing written */
    BT_CHECK(buffet_buf_fill(b, 60, 5, 1) == BUFFET_ERR_RANGE && buffet_buf_fill(b, 65, 0, 1) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_buf_fill(b, SIZE_MAX, 2, 1) == BUFFET_ERR_RANGE && buffet_buf_fill(b, 2, SIZE_MAX, 1) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_buf_clear(b, 1, SIZE_MAX - 0) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_buf_write(b, 0, NULL, 4) == BUFFET_ERR_INVALID && buffet_buf_write(b, 63, tmp, 2) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_buf_read(b, 0, NULL, 4) == BUFFET_ERR_INVALID && buffet_buf_read(b, SIZE_MAX - 1, tmp, 2) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_buf_copy(b, 0, c, 1, 64) == BUFFET_ERR_RANGE && buffet_buf_copy(b, 1, c, 0, 64) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_buf_copy(NULL, 0, c, 0, 1) == BUFFET_ERR_INVALID && buffet_buf_copy(b, 0, NULL, 0, 1) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_buf_fill(NULL, 0, 0, 0) == BUFFET_ERR_INVALID && buffet_buf_read(NULL, 0, tmp, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_buf_read(b, 0, tmp, 64) == BUFFET_OK && tmp[0] == 0 && tmp[63] == 0);
    BT_CHECK(buffet_buf_write(b, 64, NULL, 0) == BUFFET_OK && buffet_buf_read(b, 64, NULL, 0) == BUFFET_OK);
    /* slices */
    BT_CHECK(buffet_slice_make(NULL, b, 0, 1) == BUFFET_ERR_INVALID && buffet_slice_make(&s, NULL, 0, 1) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_slice_make(&s, b, 1, 64) == BUFFET_ERR_RANGE && buffet_slice_make(&s, b, SIZE_MAX, 2) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_buf_refcount(b) == 1);
    buffet_slice_release(NULL);
    memset(&s, 0, sizeof s);
    buffet_slice_release(&s);
    /* references: NULL, and the ceiling (never wraps) */
    BT_CHECK(buffet_buf_ref(NULL) == NULL && buffet_buf_unref(NULL) == 0 && buffet_buf_refcount(NULL) == 0);
    b->refcount = BUFFET_BUF_REF_MAX;   /* as if 2^31 holders had taken one */
    BT_CHECK(buffet_buf_ref(b) == NULL && buffet_buf_refcount(b) == BUFFET_BUF_REF_MAX);
    BT_CHECK(buffet_slice_make(&s, b, 0, 1) == BUFFET_ERR_OVERFLOW && buffet_buf_refcount(b) == BUFFET_BUF_REF_MAX);
    buffet_chain_init(&ch, buffet_heap());
    BT_CHECK(buffet_chain_append(&ch, c, 0, 8) == BUFFET_OK);
    BT_CHECK(buffet_chain_append(&ch, b, 0, 8) == BUFFET_ERR_OVERFLOW && buffet_chain_len(&ch) == 8 && buffet_chain_count(&ch) == 1);
    BT_CHECK(buffet_chain_prepend(&ch, b, 0, 8) == BUFFET_ERR_OVERFLOW && buffet_chain_len(&ch) == 8);
    b->refcount = 1;
    buffet_chain_deinit(&ch);
    BT_CHECK(buffet_buf_unref(b) == 0 && buffet_buf_unref(c) == 0);
}

/* A second unref of a gone buffer writes into freed memory. With buffet_debug as its allocator
   the header waits in the quarantine, so the write is found and reported, naming the line that
   created the buffer; the allocator is unharmed. */
static void test_buf_double_unref(void) {
    bt_log lg;
    buffet_debug *dbg;
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    if (mc_tool_watches_freed()) BT_SKIP("tool", "ASan/valgrind report the use after free themselves (the quarantine is poisoned)");
    dbg = mc_debug(&lg);
    if (!dbg) return;
    memset(&d, 0, sizeof d);
    d.size = 32;
    d.allocator = buffet_debug_allocator(dbg);
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
    if (!b) return;
    BT_CHECK(buffet_buf_unref(b) == 0);
    buffet_buf_unref(b);   /* the misuse */
    BT_CHECK(buffet_debug_check(dbg) == BUFFET_ERR_CORRUPT);
    BT_CHECK(mc_stats(dbg).corruptions == 1 && mc_stats(dbg).live_count == 0);
    BT_CHECK(strstr(lg.all, "write after free") && strstr(lg.all, MC_TAG));
    buffet_debug_destroy(dbg);
}

/* buffet_buf_map_fd with hostile files: invalid, closed, empty, a pipe, a directory, a plain
   file, unsealed, write-sealed, read-only, larger than the caller's bound, huge, and a file
   that grows after mapping. */
static void test_buf_map_fd_misuse(void) {
    bt_log lg;
    buffet_buf_desc d;
    buffet_buf *b = (buffet_buf *)&d;
    int fd, p[2], dir, ro;
    char path[64];
    unsigned char byte = 0;
    memset(&d, 0, sizeof d);
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_map_fd(NULL, 0, &d) == BUFFET_ERR_INVALID);
    /* a negative or closed descriptor: refused, and said why (FAILS: both are refused silently) */
    BT_CHECK(buffet_buf_map_fd(&b, -1, &d) == BUFFET_ERR_INVALID && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_INVALID);
    fd = memfd_create("mc-closed", MFD_CLOEXEC);
    close(fd);
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_ERR_SYSTEM && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_SYSTEM);
    /* an empty memfd, a pipe, a directory */
    fd = memfd_create("mc-empty", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_ERR_INVALID && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_INVALID);
    close(fd);
    if (pipe(p) == 0) {
        BT_CHECK(buffet_buf_map_fd(&b, p[0], &d) == BUFFET_ERR_INVALID && b == NULL);
        close(p[0]);
        close(p[1]);
    }
    dir = open("/", O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {
        BT_CHECK(buffet_buf_map_fd(&b, dir, &d) != BUFFET_OK && b == NULL);
        close(dir);
    }
    /* a plain file: nothing seals it */
    snprintf(path, sizeof path, "/tmp/mc-plain-XXXXXX");
    fd = mkstemp(path);
    if (fd >= 0) {
        unlink(path);
        BT_CHECK(ftruncate(fd, 4096) == 0);
        d.log = bt_logger(&lg);
        BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_ERR_UNSAFE && b == NULL);
        MC_REPORTED(&lg, BUFFET_ERR_UNSAFE);
        close(fd);
    }
    /* a memfd that can still shrink: refused; accepted only when the caller says so */
    fd = memfd_create("mc-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    BT_CHECK(ftruncate(fd, 8192) == 0);
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_ERR_UNSAFE && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_UNSAFE);
    d.flags = BUFFET_BUF_UNSEALED;
    BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_OK && b && b->size == 8192);
    buffet_buf_unref(b);
    d.flags = 0;
    /* sealed against shrinking but not growing: the buffer keeps the size it was mapped with */
    BT_CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_OK && b && b->size == 8192);
    if (b) {
        BT_CHECK(ftruncate(fd, 3 * 8192) == 0);
        BT_CHECK(b->size == 8192 && buffet_buf_write(b, 8191, &byte, 1) == BUFFET_OK);
        BT_CHECK(buffet_buf_write(b, 8192, &byte, 1) == BUFFET_ERR_RANGE);
        BT_CHECK(ftruncate(fd, 4096) != 0);   /* and nobody can cut it under us */
        buffet_buf_unref(b);
    }
    /* larger than the caller's bound: refused before mapping */
    d.size = 4096;
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_ERR_TOO_LARGE && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_TOO_LARGE);
    d.size = 0;
    /* read-only descriptor: mmap for writing fails; a clean error */
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ro = open(path, O_RDONLY);
    if (ro >= 0) {
        d.log = bt_logger(&lg);
        BT_CHECK(buffet_buf_map_fd(&b, ro, &d) != BUFFET_OK && b == NULL);
        BT_CHECK(lg.total >= 1);
        close(ro);
    }
    /* write-sealed: the same */
    BT_CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == 0);
    d.log = bt_logger(&lg);
    BT_CHECK(buffet_buf_map_fd(&b, fd, &d) == BUFFET_ERR_SYSTEM && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_SYSTEM);
    close(fd);
    /* huge and sparse (2^62 bytes): no address space holds it; a clean error */
    fd = memfd_create("mc-huge", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (ftruncate(fd, (off_t)1 << 62) == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
        d.log = bt_logger(&lg);
        BT_CHECK(buffet_buf_map_fd(&b, fd, &d) != BUFFET_OK && b == NULL);
        BT_CHECK(lg.total >= 1);
    }
    close(fd);
}

/* ---------------------------------------------------------------------------------------------
   Chains */

static void test_chain_misuse(void) {
    buffet_chain c, t;
    buffet_buf_desc d;
    buffet_buf *b = NULL;
    unsigned char tmp[32];
    struct iovec iov[4];
    size_t pos = 0;
    memset(&d, 0, sizeof d);
    d.size = 32;
    d.flags = BUFFET_BUF_ZERO;
    BT_CHECK(buffet_buf_create(&b, &d) == BUFFET_OK);
    if (!b) return;
    BT_CHECK(buffet_chain_init(NULL, buffet_heap()) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK && buffet_chain_init(&t, buffet_heap()) == BUFFET_OK);
    BT_CHECK(buffet_chain_append(NULL, b, 0, 1) == BUFFET_ERR_INVALID && buffet_chain_append(&c, NULL, 0, 1) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_chain_append(&c, b, 0, 33) == BUFFET_ERR_RANGE && buffet_chain_prepend(&c, b, SIZE_MAX, 2) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_chain_append(&c, b, 0, 16) == BUFFET_OK && buffet_chain_append(&c, b, 20, 12) == BUFFET_OK);
    BT_CHECK(buffet_chain_concat(&c, &c) == BUFFET_ERR_INVALID && buffet_chain_concat(NULL, &c) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_chain_split(&c, 4, &c) == BUFFET_ERR_INVALID && buffet_chain_split(&c, 29, &t) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_chain_consume(&c, 29) == BUFFET_ERR_RANGE && buffet_chain_consume(NULL, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_chain_copy_out(&c, 0, NULL, 4) == BUFFET_ERR_INVALID && buffet_chain_copy_out(&c, 20, tmp, 9) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_chain_copy_out(&c, SIZE_MAX, tmp, 2) == BUFFET_ERR_RANGE);
    BT_CHECK(buffet_chain_find(&c, 0, tmp, 0, &pos) == BUFFET_ERR_INVALID && buffet_chain_find(&c, 0, NULL, 1, &pos) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_chain_find(&c, SIZE_MAX, tmp, 1, &pos) == BUFFET_ERR_NOT_FOUND);
    BT_CHECK(buffet_chain_iovec(&c, 0, 8, NULL, 4) == 0 && buffet_chain_iovec(&c, 0, 8, iov, 0) == 0 && buffet_chain_iovec(&c, 28, 8, iov, 4) == 0);
    /* every refusal left the chain as it was */
    BT_CHECK(buffet_chain_len(&c) == 28 && buffet_chain_count(&c) == 2 && buffet_buf_refcount(b) == 3);
    BT_CHECK(buffet_chain_at(&c, 2) == NULL && buffet_chain_at(&c, SIZE_MAX) == NULL);
    /* deinit twice, and reuse after deinit */
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(NULL);
    BT_CHECK(buffet_buf_refcount(b) == 1);
    BT_CHECK(buffet_chain_append(&c, b, 0, 4) == BUFFET_OK && buffet_chain_len(&c) == 4);
    buffet_chain_deinit(&c);
    /* an allocator whose blocks die with a scope: refused at init, and the chain refuses to grow */
    BT_CHECK(buffet_chain_init(&c, mc_scope()) == BUFFET_ERR_LIFETIME);
    BT_CHECK(buffet_chain_append(&c, b, 0, 4) != BUFFET_OK && buffet_chain_len(&c) == 0 && buffet_buf_refcount(b) == 1);
    buffet_chain_deinit(&c);
    /* a failing allocator: refused, unchanged, no reference taken */
    {
        buffet_failing f;
        buffet_failing_init(&f, buffet_heap(), 1, true);
        BT_CHECK(buffet_chain_init(&c, buffet_failing_allocator(&f)) == BUFFET_OK);
        BT_CHECK(buffet_chain_append(&c, b, 0, 4) == BUFFET_ERR_NOMEM && buffet_chain_len(&c) == 0 && buffet_buf_refcount(b) == 1);
        BT_CHECK(buffet_chain_append(&t, b, 0, 4) == BUFFET_OK);
        BT_CHECK(buffet_chain_concat(&c, &t) == BUFFET_ERR_NOMEM && buffet_chain_len(&t) == 4 && buffet_chain_len(&c) == 0);
        BT_CHECK(buffet_chain_split(&t, 2, &c) == BUFFET_ERR_NOMEM && buffet_chain_len(&t) == 4 && buffet_buf_refcount(b) == 2);
        buffet_chain_deinit(&c);
        buffet_chain_deinit(&t);
    }
    BT_CHECK(buffet_buf_unref(b) == 0);
}

/* ---------------------------------------------------------------------------------------------
   The registry */

typedef struct mc_prov {
    buffet_registry *r;
    const char *remove;        /* a provider to remove from inside the call */
    buffet_result removed;     /* what that remove returned */
    int depth, nest;           /* nest: how deep score calls create_buf again */
    int detached, scores, creates;
    bool in_create;            /* remove from create rather than score */
    bool lie;                  /* create says OK without a buffer */
} mc_prov;

static int mc_prov_score(void *self, const buffet_request *q, char *why, size_t cap) {
    mc_prov *p = (mc_prov *)self;
    (void)q;
    p->scores++;
    if (cap) snprintf(why, cap, "misuse test");
    if (p->depth < p->nest) {
        buffet_request rq;
        buffet_buf *b = NULL;
        p->depth++;
        memset(&rq, 0, sizeof rq);
        rq.size = 8;
        if (buffet_registry_create_buf(p->r, &rq, &b) == BUFFET_OK) buffet_buf_unref(b);
        p->depth--;
    }
    if (p->remove && !p->in_create) p->removed = buffet_registry_remove(p->r, p->remove);
    return 100;
}
static buffet_result mc_prov_create(void *self, const buffet_request *q, buffet_buf **out) {
    mc_prov *p = (mc_prov *)self;
    buffet_buf_desc d;
    p->creates++;
    if (p->remove && p->in_create) p->removed = buffet_registry_remove(p->r, p->remove);
    if (p->lie) return BUFFET_OK;
    memset(&d, 0, sizeof d);
    d.size = q->size;
    return buffet_buf_create(out, &d);
}
static void mc_prov_detach(void *self, buffet_registry *r) {
    (void)r;
    ((mc_prov *)self)->detached++;
}
static buffet_provider mc_provider(const char *name, mc_prov *p) {
    buffet_provider pv;
    memset(&pv, 0, sizeof pv);
    pv.name = name;
    pv.score = mc_prov_score;
    pv.create = mc_prov_create;
    pv.self = p;
    pv.detach = mc_prov_detach;
    return pv;
}

static void test_registry_misuse(void) {
    bt_log lg;
    buffet_registry_desc rd;
    buffet_registry *r = NULL;
    buffet_provider pv;
    buffet_request q;
    buffet_buf *b = NULL;
    mc_prov a, c;
    char names[BUFFET_REGISTRY_MAX][16], text[512];
    int i, added = 0;
    BT_CHECK(buffet_registry_create(NULL, NULL) == BUFFET_ERR_INVALID);
    memset(&rd, 0, sizeof rd);
    rd.allocator = mc_scope();
    rd.log = bt_logger(&lg);
    BT_CHECK(buffet_registry_create(&r, &rd) == BUFFET_ERR_LIFETIME && r == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_LIFETIME);
    rd.allocator = buffet_heap();
    rd.log = bt_logger(&lg);
    BT_CHECK(buffet_registry_create(&r, &rd) == BUFFET_OK && r);
    if (!r) return;
    memset(&a, 0, sizeof a);
    memset(&c, 0, sizeof c);
    a.r = c.r = r;
    /* bad providers */
    pv = mc_provider("a", &a);
    BT_CHECK(buffet_registry_add(NULL, &pv) == BUFFET_ERR_INVALID && buffet_registry_add(r, NULL) == BUFFET_ERR_INVALID);
    pv.name = NULL;
    BT_CHECK(buffet_registry_add(r, &pv) == BUFFET_ERR_INVALID);
    pv = mc_provider("a", &a);
    pv.score = NULL;
    BT_CHECK(buffet_registry_add(r, &pv) == BUFFET_ERR_INVALID);
    pv = mc_provider("a", &a);
    pv.create = NULL;
    BT_CHECK(buffet_registry_add(r, &pv) == BUFFET_ERR_INVALID);
    /* duplicate names: the built-ins' and our own */
    pv = mc_provider("heap", &a);
    BT_CHECK(buffet_registry_add(r, &pv) == BUFFET_ERR_INVALID);
    BT_CHECK(lg.count[-BUFFET_ERR_INVALID] >= 1);
    pv = mc_provider("a", &a);
    BT_CHECK(buffet_registry_add(r, &pv) == BUFFET_OK && buffet_registry_add(r, &pv) == BUFFET_ERR_INVALID);
    /* full */
    for (i = 0; i < BUFFET_REGISTRY_MAX; i++) {
        buffet_result res;
        snprintf(names[i], sizeof names[i], "fill%d", i);
        pv = mc_provider(names[i], &c);
        pv.detach = NULL;
        res = buffet_registry_add(r, &pv);
        if (res == BUFFET_OK) added++;
        else BT_CHECK(res == BUFFET_ERR_EXHAUSTED);
    }
    BT_CHECK(added == BUFFET_REGISTRY_MAX - 4 && lg.count[-BUFFET_ERR_EXHAUSTED] >= 1);
    for (i = 0; i < added; i++) BT_CHECK(buffet_registry_remove(r, names[i]) == BUFFET_OK);
    /* remove: NULLs, unknown, twice */
    BT_CHECK(buffet_registry_remove(NULL, "a") == BUFFET_ERR_INVALID && buffet_registry_remove(r, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_registry_remove(r, "nobody") == BUFFET_ERR_NOT_FOUND);
    /* removal from inside its own score: refused, not a deadlock */
    a.remove = "a";
    memset(&q, 0, sizeof q);
    q.size = 64;
    BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_OK && b);
    buffet_buf_unref(b);
    BT_CHECK(a.removed == BUFFET_ERR_STATE && a.detached == 0);
    /* ...from inside its own create, the same */
    a.in_create = true;
    a.removed = BUFFET_OK;
    BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_OK && b);
    buffet_buf_unref(b);
    BT_CHECK(a.removed == BUFFET_ERR_STATE);
    /* ...another provider, from inside a score (every provider is held while scoring): refused;
       from inside create (only its own is held): done */
    pv = mc_provider("c", &c);
    BT_CHECK(buffet_registry_add(r, &pv) == BUFFET_OK);
    a.in_create = false;
    a.remove = "c";
    BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_OK && b);
    buffet_buf_unref(b);
    BT_CHECK(a.removed == BUFFET_ERR_STATE && c.detached == 0);
    a.in_create = true;
    BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_OK && b);
    buffet_buf_unref(b);
    BT_CHECK(a.removed == BUFFET_OK && c.detached == 1);
    MC_LOGGED(&lg, BUFFET_ERR_STATE);
    /* re-entrant: a score that asks the registry again, deeper than it tracks, then removes */
    a.remove = "heap";
    a.in_create = false;
    a.nest = 12;
    BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_OK && b);
    buffet_buf_unref(b);
    BT_CHECK(a.removed == BUFFET_ERR_STATE);
    a.nest = 0;
    a.remove = NULL;
    /* a provider that says OK without a buffer must not make create_buf say OK with none
       (FAILS: the registry passes the lie on, and the caller dereferences NULL) */
    a.lie = true;
    b = (buffet_buf *)&a;
    {
        buffet_result res = buffet_registry_create_buf(r, &q, &b);
        BT_CHECK(res != BUFFET_OK || b != NULL);
        if (res == BUFFET_OK && b) buffet_buf_unref(b);
    }
    a.lie = false;
    /* bad requests */
    BT_CHECK(buffet_registry_create_buf(r, NULL, &b) == BUFFET_ERR_INVALID && b == NULL);
    BT_CHECK(buffet_registry_create_buf(NULL, &q, &b) == BUFFET_ERR_INVALID && buffet_registry_create_buf(r, &q, NULL) == BUFFET_ERR_INVALID);
    q.size = 0;
    BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_ERR_INVALID && b == NULL);
    BT_CHECK(buffet_registry_remove(r, "a") == BUFFET_OK && a.detached == 1);
    q.size = 64;
    q.usage = BUFFET_USAGE_DEVICE_READ;   /* nobody here serves device memory */
    lg.count[-BUFFET_ERR_UNSUPPORTED] = 0;
    lg.all_len = 0;
    lg.all[0] = '\0';
    BT_CHECK(buffet_registry_create_buf(r, &q, &b) == BUFFET_ERR_UNSUPPORTED && b == NULL);
    MC_REPORTED(&lg, BUFFET_ERR_UNSUPPORTED);
    /* explain: NULLs, and a buffer too small for the text */
    BT_CHECK(buffet_explain(NULL, &q, text, sizeof text) > 0 && buffet_explain(r, NULL, text, sizeof text) > 0);
    BT_CHECK(buffet_explain(r, &q, NULL, 100) > 0);
    text[0] = 'x';
    BT_CHECK(buffet_explain(r, &q, text, 1) > 0 && text[0] == '\0');
    BT_CHECK(buffet_explain(r, &q, text, 10) > 9 && strlen(text) == 9);
    /* the process-wide registry is never destroyed */
    buffet_registry_destroy(buffet_registry_default());
    BT_CHECK(buffet_registry_default() != NULL);
    buffet_registry_destroy(NULL);
    buffet_registry_destroy(r);
    BT_CHECK(a.detached == 1 && c.detached == 1);
}

/* Removing a provider while another thread is inside it: remove waits until that call returns,
   and nothing calls into the provider once remove has returned. */
typedef struct mc_busy {
    buffet_registry *r;
    int inside, go, removed, calls_after, detached;   /* atomics */
} mc_busy;
static int mc_busy_score(void *self, const buffet_request *q, char *why, size_t cap) {
    mc_busy *m = (mc_busy *)self;
    (void)q; (void)why; (void)cap;
    if (__atomic_load_n(&m->removed, __ATOMIC_ACQUIRE)) __atomic_fetch_add(&m->calls_after, 1, __ATOMIC_RELAXED);
    return 100;
}
static buffet_result mc_busy_create(void *self, const buffet_request *q, buffet_buf **out) {
    mc_busy *m = (mc_busy *)self;
    buffet_buf_desc d;
    __atomic_store_n(&m->inside, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&m->go, __ATOMIC_ACQUIRE)) sched_yield();
    memset(&d, 0, sizeof d);
    d.size = q->size;
    __atomic_store_n(&m->inside, 0, __ATOMIC_RELEASE);
    return buffet_buf_create(out, &d);
}
static void mc_busy_detach(void *self, buffet_registry *r) {
    (void)r;
    __atomic_fetch_add(&((mc_busy *)self)->detached, 1, __ATOMIC_RELAXED);
}
static void *mc_busy_user(void *arg) {
    mc_busy *m = (mc_busy *)arg;
    buffet_request q;
    buffet_buf *b = NULL;
    memset(&q, 0, sizeof q);
    q.size = 32;
    if (buffet_registry_create_buf(m->r, &q, &b) == BUFFET_OK) buffet_buf_unref(b);
    return b ? arg : NULL;
}
static void *mc_busy_remover(void *arg) {
    mc_busy *m = (mc_busy *)arg;
    buffet_result r = buffet_registry_remove(m->r, "busy");
    /* returned: the call it waited for is over */
    if (__atomic_load_n(&m->inside, __ATOMIC_ACQUIRE)) r = BUFFET_ERR_STATE;
    __atomic_store_n(&m->removed, 1, __ATOMIC_RELEASE);
    return r == BUFFET_OK ? arg : NULL;
}
static void test_registry_remove_in_use(void) {
    mc_busy m;
    buffet_provider pv;
    pthread_t user, remover;
    void *ok_user = NULL, *ok_remove = NULL;
    struct timespec ms = {0, 20 * 1000 * 1000};
    buffet_request q;
    buffet_buf *b = NULL;
    memset(&m, 0, sizeof m);
    BT_CHECK(buffet_registry_create(&m.r, NULL) == BUFFET_OK);
    if (!m.r) return;
    memset(&pv, 0, sizeof pv);
    pv.name = "busy";
    pv.score = mc_busy_score;
    pv.create = mc_busy_create;
    pv.detach = mc_busy_detach;
    pv.self = &m;
    BT_CHECK(buffet_registry_add(m.r, &pv) == BUFFET_OK);
    BT_CHECK(pthread_create(&user, NULL, mc_busy_user, &m) == 0);
    while (!__atomic_load_n(&m.inside, __ATOMIC_ACQUIRE)) sched_yield();
    BT_CHECK(pthread_create(&remover, NULL, mc_busy_remover, &m) == 0);
    nanosleep(&ms, NULL);   /* time for a wrong remove to return early; a right one waits anyway */
    BT_CHECK(__atomic_load_n(&m.removed, __ATOMIC_ACQUIRE) == 0);
    __atomic_store_n(&m.go, 1, __ATOMIC_RELEASE);
    pthread_join(user, &ok_user);
    pthread_join(remover, &ok_remove);
    BT_CHECK(ok_user != NULL && ok_remove != NULL && m.detached == 1);
    /* gone: the next request goes elsewhere and never reaches it */
    memset(&q, 0, sizeof q);
    q.size = 32;
    BT_CHECK(buffet_registry_create_buf(m.r, &q, &b) == BUFFET_OK && b);
    buffet_buf_unref(b);
    BT_CHECK(m.calls_after == 0 && buffet_registry_remove(m.r, "busy") == BUFFET_ERR_NOT_FOUND);
    buffet_registry_destroy(m.r);
    BT_CHECK(m.detached == 1);
}

int main(void) {
    BT_RUN(test_alloc_bad_arguments);
    BT_RUN(test_debug_double_free);
    BT_RUN(test_debug_foreign);
    BT_RUN(test_debug_wrong_size);
    BT_RUN(test_debug_overrun_once);
    BT_RUN(test_debug_write_after_free_once);
    BT_RUN(test_debug_every_damage_logged);
    BT_RUN(test_debug_null_desc_prints);
    BT_RUN(test_debug_leaks_once);
    BT_RUN(test_debug_reentrant_logger);
    BT_RUN(test_debug_create_misuse);
    BT_RUN(test_debug_failing_parent);
    BT_RUN(test_fixed_misuse);
    BT_RUN(test_adapter_misuse);
    BT_RUN(test_buf_create_misuse);
    BT_RUN(test_buf_ops_misuse);
    BT_RUN(test_buf_double_unref);
    BT_RUN(test_buf_map_fd_misuse);
    BT_RUN(test_chain_misuse);
    BT_RUN(test_registry_misuse);
    BT_RUN(test_registry_remove_in_use);
    return bt_finish(MC_NAME);
}
