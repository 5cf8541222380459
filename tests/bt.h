/* bt.h - the tiny test harness of buffet's tests (C11 and C++17).
   BT_CHECK(c) records a failure and goes on; BT_SKIP(feature, why) ends the current test
   as skipped, or as failed when `feature` is named in BUFFET_REQUIRE (comma-separated).
   bt_run(name, fn) runs one test; bt_finish(file) prints "<file>: N passed, N failed, N skipped"
   and returns the exit status (0 when nothing failed).
   Included after a buffet header, it also gives bt_log: a logger that records what it hears.
   With BT_HUGE_IS_NULL defined first, ASan and TSan return NULL for absurd heap requests (as
   glibc does) instead of stopping the run: for tests that ask for SIZE_MAX on purpose. */
#ifndef BT_H
#define BT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
#define BT_ZERO {}
#else
#define BT_ZERO {0}
#endif

static int bt_passed, bt_failed, bt_skipped, bt_cur_failed, bt_cur_skipped;
static const char *bt_cur = "";

#define BT_CHECK(c) do { if (!(c)) { bt_cur_failed++; \
    fprintf(stderr, "FAIL %s: %s:%d: %s\n", bt_cur, __FILE__, __LINE__, #c); } } while (0)
#define BT_SKIP(feature, why) do { bt_skip_(feature, why); return; } while (0)

__attribute__((unused)) static int bt_required(const char *feature) {
    const char *r = getenv("BUFFET_REQUIRE");
    size_t n = strlen(feature);
    while (r && *r) {
        const char *end = strchr(r, ',');
        size_t len = end ? (size_t)(end - r) : strlen(r);
        if ((len == n && strncmp(r, feature, n) == 0) || (len == 3 && strncmp(r, "all", 3) == 0)) return 1;
        r = end ? end + 1 : NULL;
    }
    return 0;
}

__attribute__((unused)) static void bt_skip_(const char *feature, const char *why) {
    if (bt_required(feature)) {
        bt_cur_failed++;
        fprintf(stderr, "FAIL %s: required '%s' skipped: %s\n", bt_cur, feature, why);
    } else {
        bt_cur_skipped = 1;
        printf("SKIP %s: %s\n", bt_cur, why);
    }
}

/* Is the runner running us in mode m (BUFFET_TEST_MODE: test, asan, tsan, valgrind, aarch64)? */
__attribute__((unused)) static int bt_mode(const char *m) {
    const char *v = getenv("BUFFET_TEST_MODE");
    return v && strcmp(v, m) == 0;
}

/* Operations a stress test runs per type and thread count: 10^7 in the plain gcc C11 build,
   4*10^6 under TSan (each access costs it tens of times more; races show in far fewer operations,
   and CI must stay within its time), 10^6 in the clang and C++ builds (the same code, checked with
   less) and under ASan and qemu, 10^5 under valgrind; BUFFET_STRESS_OPS overrides. */
__attribute__((unused)) static unsigned long long bt_stress_ops(void) {
    const char *o = getenv("BUFFET_STRESS_OPS"), *m = getenv("BUFFET_TEST_MODE");
    if (o && *o) return strtoull(o, NULL, 10);
    if (m && strcmp(m, "valgrind") == 0) return 100000ull;
    if (m && (strcmp(m, "asan") == 0 || strcmp(m, "aarch64") == 0)) return 1000000ull;
    if (m && strcmp(m, "tsan") == 0) return 4000000ull;
#if defined(__clang__) || defined(__cplusplus)
    return 1000000ull;
#endif
    return 10000000ull;
}

#if defined(__SANITIZE_ADDRESS__)
#define BT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BT_ASAN 1
#endif
#endif
#ifdef BT_ASAN
#include <dlfcn.h>
#endif
/* Under ASan, keep Mesa's lavapipe driver loaded for the whole run (call before the first
   Vulkan instance). The Vulkan loader unloads a driver when its last instance goes; memory the
   driver still held through its own statics then looks leaked to LeakSanitizer, in frames of an
   unknown module that no suppression can name (seen on AMD EPYC machines: 128 bytes per
   instance). Kept loaded, the driver's statics keep that memory reachable, and a leak of ours
   still shows. Elsewhere this does nothing. */
__attribute__((unused)) static void bt_keep_vulkan_driver(void) {
#ifdef BT_ASAN
    (void)dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
#endif
}

__attribute__((unused)) static void bt_run(const char *name, void (*fn)(void)) {
    bt_cur = name; bt_cur_failed = 0; bt_cur_skipped = 0;
    fn();
    if (bt_cur_failed) bt_failed++;
    else if (bt_cur_skipped) bt_skipped++;
    else bt_passed++;
}
#define BT_RUN(fn) bt_run(#fn, fn)

__attribute__((unused)) static int bt_finish(const char *file) {
    printf("%s: %d passed, %d failed, %d skipped\n", file, bt_passed, bt_failed, bt_skipped); fflush(stdout);
    return bt_failed ? 1 : 0;
}
#endif  /* BT_H */

#ifdef BT_HUGE_IS_NULL
#  if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#    define BT_SANITIZED 1
#  elif defined(__has_feature)
#    if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#      define BT_SANITIZED 1
#    endif
#  endif
#  ifdef BT_SANITIZED
#    ifdef __cplusplus
extern "C" {
#    endif
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "allocator_may_return_null=1"; }
#    ifdef __cplusplus
}
#    endif
#  endif
#endif

#if defined(BUFFET_H_INCLUDED) && !defined(BT_LOG_DEFINED)
#define BT_LOG_DEFINED
/* What a logger heard: lines per code (count[-code]), the last code, level and line, and every
   line in `all` (one a line, cut when full). Tests assert on codes and on sites in lines. */
typedef struct bt_log {
    unsigned count[32];
    unsigned total;
    buffet_result last;
    buffet_log_level level;
    char last_msg[512];
    char all[16384];
    size_t all_len;
} bt_log;

__attribute__((unused)) static void bt_log_fn(void *user, buffet_log_level level, buffet_result code, const char *msg,
                                              const char *file, int line) {
    bt_log *l = (bt_log *)user;
    int n;
    (void)file; (void)line;
    if (code <= 0 && code > -32) l->count[-(int)code]++;
    l->total++;
    l->last = code;
    l->level = level;
    snprintf(l->last_msg, sizeof l->last_msg, "%s", msg);
    n = snprintf(l->all + l->all_len, sizeof l->all - l->all_len, "%s\n", msg);
    if (n > 0) l->all_len = l->all_len + (size_t)n < sizeof l->all ? l->all_len + (size_t)n : sizeof l->all - 1;
}
/* Clears l and returns a logger that records into it. */
__attribute__((unused)) static buffet_logger bt_logger(bt_log *l) {
    buffet_logger lg;
    memset(l, 0, sizeof *l);
    lg.fn = bt_log_fn;
    lg.user = l;
    return lg;
}
/* Lines heard with this code. */
__attribute__((unused)) static unsigned bt_logged(const bt_log *l, buffet_result code) {
    return code <= 0 && code > -32 ? l->count[-(int)code] : 0;
}
#endif
