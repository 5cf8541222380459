/* bt.h - the tiny test harness of buffet's tests (C11 and C++17).
   BT_CHECK(c) records a failure and goes on; BT_SKIP(feature, why) ends the current test
   as skipped, or as failed when `feature` is named in BUFFET_REQUIRE (comma-separated).
   bt_run(name, fn) runs one test; bt_finish(file) prints "<file>: N passed, N failed, N skipped"
   and returns the exit status (0 when nothing failed). */
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

static void bt_run(const char *name, void (*fn)(void)) {
    bt_cur = name; bt_cur_failed = 0; bt_cur_skipped = 0;
    fn();
    if (bt_cur_failed) bt_failed++;
    else if (bt_cur_skipped) bt_skipped++;
    else bt_passed++;
}
#define BT_RUN(fn) bt_run(#fn, fn)

static int bt_finish(const char *file) {
    printf("%s: %d passed, %d failed, %d skipped\n", file, bt_passed, bt_failed, bt_skipped); fflush(stdout);
    return bt_failed ? 1 : 0;
}
#endif
