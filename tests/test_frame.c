/* test_frame.c - the tests of buffet_frame.h: frame arenas (lifetimes, chunks, alignment, batches,
   resize, checkpoints, the allocator interface, growable arrays, tags, statistics and JSON,
   budgets), transfers, barriers, scopes and object pools, each with its documented errors, bad
   input and a failing parent allocator at every allocation point, failure reasons, allocator
   contracts, callbacks that call back in, sites, then multi-threaded tests.
   Everything allocates through buffet's debug allocator, so a leak or a bad free fails the test.

   Uses of frame memory after it is released (frame k's, once frame k+N begins) and of pool
   objects after their put are deliberate in a fork()ed child only, where the tool watching
   (ASan, valgrind: BUFFET_TEST_MODE says which) must report them; with neither watching, the
   poison bytes are read directly instead. Compiled as C11 and as C++17 (common subset). */
#define BUFFET_IMPLEMENTATION
#define BUFFET_DEBUG 1
#include "../buffet_frame.h"
#include "bt.h"

#include <errno.h>
#include <pthread.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__has_include)
#  if __has_include(<valgrind/memcheck.h>)
#    include <valgrind/valgrind.h>
#    include <valgrind/memcheck.h>
#    define TF_HAVE_VALGRIND 1
#  endif
#endif
#ifndef TF_HAVE_VALGRIND
#  define TF_HAVE_VALGRIND 0
#endif

/* Bytes a frame allocation of n takes: its size rounded up to the arena's 16-byte grain (what
   budgets and statistics count). */
#define TF_R(n) (((size_t)(n) + 15) & ~(size_t)15)

/* ---------------------------------------------------------------------------------------------
   Helpers: a log callback that counts codes, debug allocators, the run mode, a JSON checker. */


static buffet_debug *tf_debug(void) {
    buffet_debug *d = NULL;
    BT_CHECK(buffet_debug_create(&d, NULL) == BUFFET_OK && d != NULL);
    return d;
}

static size_t tf_live(buffet_debug *d) { return buffet_debug_get_stats(d).live_count; }

/* The end of every test: nothing leaked, nothing freed twice or with the wrong size, no guard
   or quarantine byte overwritten. */
static void tf_debug_done(buffet_debug *d) {
    buffet_debug_stats st = buffet_debug_get_stats(d);
    BT_CHECK(buffet_debug_check(d) == BUFFET_OK);
    BT_CHECK(st.live_count == 0);
    BT_CHECK(st.double_frees == 0 && st.foreign_frees == 0);
    BT_CHECK(st.mismatched_frees == 0 && st.corruptions == 0);
    if (st.live_count) buffet_debug_report_leaks(d, stderr);
    buffet_debug_destroy(d);
}

/* A frame arena over d with the given chunk size and frames in flight, logging into l. */
static buffet_frame_arena *tf_arena_grow(buffet_debug *d, size_t chunk_size, size_t max_chunk, uint32_t in_flight,
                                         bt_log *l) {
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = chunk_size;
    desc.max_chunk_size = max_chunk;
    desc.frames_in_flight = in_flight;
    if (l) desc.log = bt_logger(l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    return fa;
}
/* The same with chunks that grow as they do by default (max_chunk_size 0). */
static buffet_frame_arena *tf_arena(buffet_debug *d, size_t chunk_size, uint32_t in_flight, bt_log *l) {
    return tf_arena_grow(d, chunk_size, 0, in_flight, l);
}

/* Begins scope s over parent inside outer (may be NULL), logging into l (NULL: the outer
   scope's logger, else silent). */
static buffet_result tf_scope_begin(buffet_scope *s, buffet_allocator parent, buffet_scope *outer, bt_log *l) {
    buffet_scope_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.parent = parent;
    desc.outer = outer;
    if (l) desc.log = bt_logger(l);
    return buffet_scope_begin(s, &desc);
}

static bool tf_aligned(const void *p, size_t align) { return ((uintptr_t)p & (align - 1)) == 0; }

static void tf_fill(void *p, size_t n, unsigned seed) {
    size_t i;
    for (i = 0; i < n; i++) ((unsigned char *)p)[i] = (unsigned char)(seed + i * 7);
}
static bool tf_intact(const void *p, size_t n, unsigned seed) {
    size_t i;
    for (i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != (unsigned char)(seed + i * 7)) return false;
    return true;
}

/* How the runner runs us (tools/run_tests.sh exports BUFFET_TEST_MODE: test, asan, tsan or
   valgrind); run by hand it is "test". */
static const char *tf_mode(void) {
    const char *m = getenv("BUFFET_TEST_MODE");
    return m && *m ? m : "test";
}
static bool tf_mode_is(const char *m) { return strcmp(tf_mode(), m) == 0; }

static bool tf_on_valgrind(void) {
#if TF_HAVE_VALGRIND
    return RUNNING_ON_VALGRIND != 0;
#else
    return false;
#endif
}

/* Freed frame memory may be read (to see the 0xDD poison) only when no tool is watching: ASan
   and valgrind would rightly report the read. That is mode test and tsan. */
static bool tf_may_read_freed(void) {
    return !BUFFET_TRACK_ASAN && !tf_on_valgrind() && (tf_mode_is("test") || tf_mode_is("tsan"));
}

static bool tf_all_bytes(const void *p, size_t n, unsigned char v) {
    size_t i;
    for (i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != v) return false;
    return true;
}

/* Well-formed enough for a stats dump: strings close, escapes are JSON's, control characters
   are escaped, braces and brackets balance outside strings, nothing follows the top level. */
static bool tf_json_ok(const char *s) {
    char stack[64];
    int depth = 0;
    bool in_str = false, done = false;
    for (; *s; s++) {
        char c = *s;
        if (done && c != ' ' && c != '\n') return false;
        if (in_str) {
            if (c == '\\') {
                s++;
                if (!*s || !strchr("\"\\/bfnrtu", *s)) return false;
            } else if (c == '"') {
                in_str = false;
            } else if ((unsigned char)c < 0x20) {
                return false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (depth == 64) return false;
            stack[depth++] = c;
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[--depth] != (c == '}' ? '{' : '[')) return false;
            if (depth == 0) done = true;
        }
    }
    return done && !in_str;
}

/* ---------------------------------------------------------------------------------------------
   Deliberate bad reads, in a child process so the parent's own run stays clean. */

/* Runs bad() in a fork()ed child and checks that the tool watching this run reported its read
   of dead memory: ASan prints "use-after-poison" and exits non-zero; valgrind counts an error
   (VALGRIND_COUNT_ERRORS), which the child sends back through a pipe. */
static void tf_expect_caught(void (*bad)(void), const char *what) {
    int fds[2];
    pid_t pid;
    int status = 0;
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0) {
        BT_CHECK(!"pipe failed");
        return;
    }
    if (BUFFET_TRACK_ASAN) {
        static char text[1 << 16];
        size_t len = 0;
        ssize_t n;
        char sink[4096];
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            dup2(fds[1], 2);   /* ASan reports on stderr: the parent reads it */
            bad();
            _exit(3);          /* not reached when ASan caught the read */
        }
        close(fds[1]);
        BT_CHECK(pid > 0);
        for (;;) {   /* drain everything, so a long report never blocks the child */
            n = read(fds[0], len < sizeof text - 1 ? text + len : sink,
                     len < sizeof text - 1 ? sizeof text - 1 - len : sizeof sink);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            if (len < sizeof text - 1) len += (size_t)n;
        }
        text[len] = '\0';
        close(fds[0]);
        BT_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        BT_CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
        BT_CHECK(strstr(text, "use-after-poison") != NULL);
        if (!strstr(text, "use-after-poison"))
            fprintf(stderr, "%s: ASan did not report a use after poison; the child said:\n%s\n", what, text);
        else
            fprintf(stderr, "test_frame: %s: ASan reported it in a child process, as it should\n", what);
        return;
    }
#if TF_HAVE_VALGRIND
    if (tf_on_valgrind()) {
        char seen = 0;
        pid = fork();
        if (pid == 0) {
            unsigned before, after;
            close(fds[0]);
            before = VALGRIND_COUNT_ERRORS;
            bad();
            after = VALGRIND_COUNT_ERRORS;
            seen = after > before ? '1' : '0';
            if (write(fds[1], &seen, 1) != 1) _exit(2);
            _exit(after > before ? 0 : 1);
        }
        close(fds[1]);
        BT_CHECK(pid > 0);
        fprintf(stderr, "test_frame: %s: the valgrind report of an invalid read in child process %d "
                        "that follows is EXPECTED (the test checks that valgrind sees it)\n", what, (int)pid);
        while (read(fds[0], &seen, 1) < 0 && errno == EINTR) {}
        close(fds[0]);
        BT_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        /* valgrind turns a child's exit status into --error-exitcode (99) once it found errors */
        BT_CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 99));
        BT_CHECK(seen == '1');
        fprintf(stderr, "test_frame: %s: valgrind reported it, as it should\n", what);
        return;
    }
#endif
    close(fds[0]);
    close(fds[1]);
    (void)bad; (void)status; (void)pid;
    fprintf(stderr, "test_frame: %s: no tool watching; not run\n", what);
}

/* ---------------------------------------------------------------------------------------------
   Frame arenas: creation, state errors, bad input. */

/* create/destroy, each create error, NULL arguments, begin twice, end without begin, allocation
   outside a frame: refused, counted as misuse and logged, and the arena stays usable. */
static void test_frame_create_and_state(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_frame_stats st;
    bt_log l;
    void *p;

    BT_CHECK(buffet_frame_create(NULL, NULL) == BUFFET_ERR_INVALID);
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.log = bt_logger(&l);
    desc.frames_in_flight = BUFFET_FRAME_MAX_IN_FLIGHT + 1;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    desc.frames_in_flight = 2;
    desc.chunk_size = 1023;                        /* below 1 KiB */
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    desc.chunk_size = ((size_t)1 << 30) + 1;       /* above 1 GiB */
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    desc.chunk_size = SIZE_MAX;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    desc.chunk_size = 4096;
    desc.max_chunk_size = 4095;                    /* below chunk_size */
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    desc.max_chunk_size = ((size_t)1 << 30) + 1;   /* above 1 GiB */
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    desc.max_chunk_size = SIZE_MAX;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    desc.chunk_size = 0;
    desc.max_chunk_size = 0;
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 7);
    BT_CHECK(tf_live(d) == 0);                     /* a refused create allocates nothing */

    /* No desc: every default (heap, 64 KiB chunks, one frame in flight, warn after 8 frames).
       The arena's settings are private: they are seen through what it does. */
    BT_CHECK(buffet_frame_create(&fa, NULL) == BUFFET_OK && fa != NULL);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = buffet_frame_alloc(fa, 100, 16);
    BT_CHECK(p != NULL && tf_aligned(p, 16));
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == 1 && st.chunk_bytes == ((size_t)64 << 10));    /* 64 KiB chunks */
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 100, 16) == p);       /* one in flight: frame 1's chunk is reused */
    BT_CHECK(buffet_frame_get_stats(fa).chunks == 1);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    /* A zero desc (but for the logger) is the same defaults: an unreceived transfer is reported
       when frame 1 + 8 begins. */
    memset(&desc, 0, sizeof desc);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (fa) {
        buffet_frame_transfer *t;
        int f;
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        p = buffet_frame_alloc(fa, 100, 16);
        t = p ? buffet_frame_transfer_send(fa, p, 100) : NULL;
        BT_CHECK(t != NULL);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        for (f = 2; f <= 10; f++) {
            BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
            BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == (f >= 9 ? 1u : 0u));
            BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        }
        BT_CHECK(buffet_frame_get_stats(fa).chunks == 1);   /* pinned by t: no new chunk was needed */
        buffet_frame_transfer_release(t);
        buffet_frame_destroy(fa);
    }
    buffet_frame_destroy(NULL);
    BT_CHECK(buffet_frame_begin(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_end(NULL) == BUFFET_ERR_INVALID);

    fa = tf_arena(d, 4096, 2, &l);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_ERR_STATE);               /* end without begin */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && buffet_frame_get_stats(fa).misuse == 1);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_ERR_STATE);             /* begin twice */
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.frame == 1 && st.misuse == 2 && bt_logged(&l, BUFFET_ERR_STATE) == 2);
    p = buffet_frame_alloc(fa, 64, 8);                                  /* nothing changed */
    BT_CHECK(p != NULL);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_ERR_STATE);               /* end twice */
    /* Outside a frame every allocation is refused: the memory would have no lifetime. */
    BT_CHECK(buffet_frame_alloc(fa, 64, 8) == NULL);
    BT_CHECK(BUFFET_FRAME_NEW(fa, double) == NULL);
    BT_CHECK(buffet_frame_alloc_array(fa, 4, 4, 4) == NULL);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.misuse == 6 && bt_logged(&l, BUFFET_ERR_STATE) == 6);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK && buffet_frame_get_stats(fa).frame == 2);
    BT_CHECK(buffet_frame_alloc(fa, 64, 8) != NULL);
    /* Destroy in the middle of a frame is allowed and frees everything. */
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* Size 0, SIZE_MAX, count * size overflow and bad alignments: NULL, never a crash or a
   wrapped-around small block; bad alignments are logged as BUFFET_ERR_INVALID. */
static void test_frame_bad_input(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, &l);
    void *p;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 0, 16) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, 16, 0) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, 16, 3) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, 16, 6) == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 3);
    /* Once a chunk is open the fast path runs: the same answers there. */
    p = buffet_frame_alloc(fa, 32, 16);
    BT_CHECK(p != NULL);
    BT_CHECK(buffet_frame_alloc(fa, 0, 16) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, 0, 1) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, 16, 0) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, 16, 3) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, 16, 6) == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 6);
    /* Sizes whose chunk size would overflow (the header and alignment are added to them). */
    BT_CHECK(buffet_frame_alloc(fa, SIZE_MAX, 16) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, SIZE_MAX - 8, 1) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, SIZE_MAX, 4096) == NULL);
    BT_CHECK(buffet_frame_alloc(fa, SIZE_MAX - 4000, 4096) == NULL);
    /* count * size overflow, through every array entry point. */
    BT_CHECK(buffet_frame_alloc_array(fa, SIZE_MAX / 2 + 1, 2, 1) == NULL);
    BT_CHECK(buffet_frame_alloc_array(fa, 2, SIZE_MAX / 2 + 1, 1) == NULL);
    BT_CHECK(buffet_frame_alloc_array(fa, 0, 8, 8) == NULL);
    BT_CHECK(BUFFET_FRAME_NEW_ARRAY(fa, double, SIZE_MAX / 4) == NULL);
    BT_CHECK(BUFFET_FRAME_NEW_ARRAY(fa, double, 0) == NULL);
    BT_CHECK(buffet_frame_get_stats(fa).count == 1);    /* none of them counted */
    /* The arena is unharmed: the first block is intact and more fit after it. */
    tf_fill(p, 32, 1);
    BT_CHECK(buffet_frame_alloc(fa, 64, 16) != NULL);
    BT_CHECK(tf_intact(p, 32, 1));
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(tf_live(d) == buffet_frame_get_stats(fa).chunks + 1);   /* chunks + the arena */
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Frame arenas: lifetimes and chunks. */

/* Is [p, p+n) poisoned for ASan (fully)? Only meaningful in an ASan build. */
static bool tf_asan_poisoned(const void *p, size_t n) {
#if BUFFET_TRACK_ASAN
    size_t i;
    for (i = 0; i < n; i++)
        if (!__asan_address_is_poisoned((const unsigned char *)p + i)) return false;
    return true;
#else
    (void)p; (void)n;
    return false;
#endif
}

/* With N frames in flight, memory of frame k is intact through frames k+1..k+N-1, still after
   buffet_frame_end of frame k+N-1, and is released only by buffet_frame_begin of frame k+N:
   the oversized chunk of frame k goes back to the parent exactly then, and the small block
   reads as the 0xDD poison (no tool watching) or is poisoned for ASan. */
static void tf_lifetime(uint32_t n) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, n, NULL);
    const uint64_t k = 3;
    unsigned char *kept = NULL, *big = NULL;
    uint64_t f;
    for (f = 1; f <= k + n + 1; f++) {
        unsigned char *p;
        size_t live = tf_live(d);
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        if (f > k && f < k + n) BT_CHECK(tf_intact(kept, 256, 0x40) && tf_intact(big, 5000, 0x41));
        /* Only the begin of frame k+N gives anything back: frame k's oversized chunk. */
        BT_CHECK(tf_live(d) == (f == k + n ? live - 1 : live));
        /* Checked first thing in frame k+N: its first allocation may reuse the chunk. */
        if (f == k + n && tf_may_read_freed()) BT_CHECK(tf_all_bytes(kept, 256, 0xDD));
        if (f == k + n && BUFFET_TRACK_ASAN) BT_CHECK(tf_asan_poisoned(kept, 256));
        p = (unsigned char *)buffet_frame_alloc(fa, 256, 16);
        BT_CHECK(p != NULL);
        if (!p) break;
        if (f == k) {
            kept = p;
            tf_fill(kept, 256, 0x40);
            big = (unsigned char *)buffet_frame_alloc(fa, 5000, 16);   /* a chunk of its own */
            BT_CHECK(big != NULL && buffet_frame_get_stats(fa).oversized == 1);
            if (!big) break;
            tf_fill(big, 5000, 0x41);
        } else {
            if (f > k && f < k + n) BT_CHECK(p != kept);   /* a live block is never handed out again */
            tf_fill(p, 256, (unsigned)f);
        }
        if (f > k && f < k + n) BT_CHECK(tf_intact(kept, 256, 0x40));
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        /* After the end of frames k..k+N-1 (with N = 1: of frame k itself) it is all still there. */
        if (f >= k && f < k + n) BT_CHECK(tf_intact(kept, 256, 0x40) && tf_intact(big, 5000, 0x41));
    }
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

static void test_frame_lifetime(void) {
    uint32_t n;
    for (n = 1; n <= 3; n++) tf_lifetime(n);
    BT_CHECK(BUFFET_FRAME_MAX_IN_FLIGHT >= 3);
}

/* The same work every frame needs the same chunks: after a warm-up, no frame asks the parent
   for memory and the number of chunks held stays put. The first frame needs 3 chunks of 4 KiB,
   so later chunks are 3 times the size, and each frame fits in one. */
static void test_frame_chunk_reuse(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 2, NULL);
    size_t chunks = 0, parent_allocs = 0;
    int f, i;
    for (f = 1; f <= 300; f++) {
        buffet_frame_stats st;
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        for (i = 0; i < 10; i++) {
            void *p = buffet_frame_alloc(fa, 1000, 8);
            BT_CHECK(p != NULL);
            if (p) tf_fill(p, 1000, (unsigned)(f + i));
        }
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        st = buffet_frame_get_stats(fa);
        BT_CHECK(st.spare_chunks <= st.chunks && st.oversized == 0);
        if (f == 10) {
            chunks = st.chunks;
            parent_allocs = buffet_debug_get_stats(d).total_count;
            BT_CHECK(chunks >= 2 && chunks <= 3);   /* one a frame, 2 frames in flight, a spare */
            BT_CHECK(st.chunk_bytes == chunks * 3 * 4096);
        } else if (f > 10) {
            BT_CHECK(st.chunks == chunks);
            BT_CHECK(buffet_debug_get_stats(d).total_count == parent_allocs);
        }
    }
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* One big frame leaves many spare chunks (once the next frame begins: until then they are
   the big frame's, in flight); many small frames after it give them back. Chunks of one size
   (max_chunk_size = chunk_size), so that the big frame's are kept. */
static void test_frame_trim(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena_grow(d, 4096, 4096, 1, NULL);
    buffet_frame_stats st;
    int f, i;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    for (i = 0; i < 20; i++) BT_CHECK(buffet_frame_alloc(fa, 3000, 8) != NULL);   /* a chunk each */
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == 20 && st.spare_chunks == 0);       /* frame 1's memory is still valid */
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == 20 && st.spare_chunks == 20);      /* frame 2 began: all spare now */
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    for (f = 0; f < 400; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(buffet_frame_alloc(fa, 100, 8) != NULL);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks <= 2 && st.spare_chunks <= 1);
    BT_CHECK(tf_live(d) == st.chunks + 1);
    BT_CHECK(st.chunk_bytes == st.chunks * 4096);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* Frames that need several chunks make later chunks larger (k chunks: k times the size), up to
   max_chunk_size, so a steady frame fits in one chunk and meets the slow path once. Spares
   smaller than a new chunk go back to the parent when it comes. A parent that refuses a grown
   chunk stops the growing, and the spares or chunks of the first size serve, unlogged: the
   frame loses nothing it had before. */
static void tf_frames(buffet_frame_arena *fa, int frames, int objs, size_t size) {
    int f, i;
    for (f = 0; f < frames; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        for (i = 0; i < objs; i++) {
            void *p = buffet_frame_alloc(fa, size, 16);
            BT_CHECK(p != NULL);
            if (p) tf_fill(p, size, (unsigned)i);
        }
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
}
static void test_frame_chunk_growth(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_frame_stats st;
    buffet_failing fl;
    buffet_frame_desc desc;
    bt_log l;
    size_t allocs;

    /* 10 of 1000 bytes: 3 chunks of 4 KiB (4 objects fit in one), then one of 12 KiB */
    tf_frames(fa, 1, 10, 1000);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == 3 && st.chunk_bytes == 3 * 4096);
    tf_frames(fa, 1, 10, 1000);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == 1 && st.chunk_bytes == 3 * 4096 && st.spare_chunks == 0);   /* the 3 replaced */
    allocs = buffet_debug_get_stats(d).total_count;
    tf_frames(fa, 50, 10, 1000);
    BT_CHECK(buffet_debug_get_stats(d).total_count == allocs);   /* steady: no parent call */
    /* a frame 2.5 times as big: 3 chunks of 12 KiB, then 9 times 4 KiB */
    tf_frames(fa, 2, 25, 1000);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == 1 && st.chunk_bytes == 9 * 4096);
    buffet_frame_destroy(fa);

    /* the limit: never past max_chunk_size (8 KiB), however big the frame */
    fa = tf_arena_grow(d, 4096, 8192, 1, NULL);
    tf_frames(fa, 3, 40, 1000);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunk_bytes == st.chunks * 8192 && st.chunks == 5);
    buffet_frame_destroy(fa);

    /* the parent refuses the grown chunk (its 5th request: the arena, then 3 chunks, then the
       12 KiB one): the 3 spares serve frame 2 as they served frame 1, and chunks stay 4 KiB */
    buffet_failing_init(&fl, buffet_debug_allocator(d), 5, false);
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_failing_allocator(&fl);
    desc.chunk_size = 4096;
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK);
    tf_frames(fa, 4, 10, 1000);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(fl.failures == 1 && st.failures == 0 && bt_logged(&l, BUFFET_ERR_NOMEM) == 0);
    BT_CHECK(st.chunks == 3 && st.chunk_bytes == 3 * 4096);
    buffet_frame_destroy(fa);
    BT_CHECK(tf_live(d) == 0);
    tf_debug_done(d);
}

/* Requests larger than a chunk get a chunk of their own, are counted, and go back to the parent
   when their frame is freed, at the next begin (they are never kept spare). */
static void test_frame_oversized(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_frame_stats st;
    unsigned char *small, *big, *big_aligned, *after;
    size_t chunks_before;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    small = (unsigned char *)buffet_frame_alloc(fa, 100, 16);
    big = (unsigned char *)buffet_frame_alloc(fa, 10000, 16);
    BT_CHECK(small != NULL && big != NULL && tf_aligned(big, 16));
    if (!small || !big) goto out;
    tf_fill(small, 100, 1);
    tf_fill(big, 10000, 2);
    big_aligned = (unsigned char *)buffet_frame_alloc(fa, 5000, 4096);
    BT_CHECK(big_aligned != NULL && tf_aligned(big_aligned, 4096));
    if (big_aligned) tf_fill(big_aligned, 5000, 3);
    after = (unsigned char *)buffet_frame_alloc(fa, 100, 16);   /* small ones go on as before */
    BT_CHECK(after != NULL);
    if (after) tf_fill(after, 100, 4);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.oversized == 2);
    BT_CHECK(tf_intact(small, 100, 1) && tf_intact(big, 10000, 2));
    BT_CHECK(!big_aligned || tf_intact(big_aligned, 5000, 3));
    chunks_before = st.chunks;
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == chunks_before && st.oversized == 2);    /* valid until the next begin */
    BT_CHECK(tf_intact(big, 10000, 2) && (!big_aligned || tf_intact(big_aligned, 5000, 3)));
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == chunks_before - 2 && st.oversized == 2);
    BT_CHECK(tf_live(d) == st.chunks + 1);
    /* Exactly one chunk: the slow path hands out a chunk of exactly chunk_size bytes, whole. */
    BT_CHECK(buffet_frame_alloc(fa, 3000, 8) != NULL);
    BT_CHECK(buffet_frame_get_stats(fa).oversized == 2);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
out:
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

typedef struct tf_vec3 { double x, y, z; } tf_vec3;

/* Every power-of-two alignment up to 4096 is honoured, in a large chunk and in one smaller than
   the alignment; the typed macros and the array and batch calls allocate what they say. */
static void test_frame_alignment_and_arrays(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 65536, 1, NULL);
    buffet_frame_arena *tiny = tf_arena(d, 1024, 1, NULL);
    size_t align, i;
    tf_vec3 *v, *arr;
    void *out[128];
    size_t count0;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK && buffet_frame_begin(tiny) == BUFFET_OK);
    for (align = 1; align <= 4096; align *= 2) {
        unsigned char *p = (unsigned char *)buffet_frame_alloc(fa, 1, align);
        unsigned char *q = (unsigned char *)buffet_frame_alloc(fa, 100, align);
        unsigned char *t = (unsigned char *)buffet_frame_alloc(tiny, 10, align);
        BT_CHECK(p && tf_aligned(p, align) && q && tf_aligned(q, align) && t && tf_aligned(t, align));
        if (p) p[0] = 1;
        if (q) tf_fill(q, 100, (unsigned)align);
        if (t) tf_fill(t, 10, (unsigned)align);
    }
    v = BUFFET_FRAME_NEW(fa, tf_vec3);
    BT_CHECK(v != NULL && tf_aligned(v, BUFFET_ALIGNOF(tf_vec3)));
    arr = BUFFET_FRAME_NEW_ARRAY(fa, tf_vec3, 1000);
    BT_CHECK(arr != NULL && tf_aligned(arr, BUFFET_ALIGNOF(tf_vec3)));
    if (v && arr) {
        v->x = 1.0;
        for (i = 0; i < 1000; i++) arr[i].x = arr[i].y = arr[i].z = (double)i;
        BT_CHECK(v->x == 1.0 && arr[999].z == 999.0 && (unsigned char *)arr >= (unsigned char *)(v + 1));
    }
    BT_CHECK(buffet_frame_alloc_array(fa, 10, 8, 8) != NULL);

    /* alloc_batch: n distinct, aligned, non-overlapping objects in one call, counted as n. */
    count0 = buffet_frame_get_stats(fa).count;
    BT_CHECK(buffet_frame_alloc_batch(fa, 50, 24, 32, out) == 50);
    for (i = 0; i < 50; i++) {
        BT_CHECK(tf_aligned(out[i], 32));
        if (i) BT_CHECK((unsigned char *)out[i] >= (unsigned char *)out[i - 1] + 24);
        tf_fill(out[i], 24, (unsigned)i);
    }
    for (i = 0; i < 50; i++) BT_CHECK(tf_intact(out[i], 24, (unsigned)i));
    BT_CHECK(buffet_frame_get_stats(fa).count == count0 + 50);
    /* bigger than a chunk: one oversized block, still n objects */
    BT_CHECK(buffet_frame_alloc_batch(tiny, 100, 64, 64, out) == 100);
    for (i = 0; i < 100; i++) {
        BT_CHECK(tf_aligned(out[i], 64));
        tf_fill(out[i], 64, (unsigned)i);
    }
    for (i = 0; i < 100; i++) BT_CHECK(tf_intact(out[i], 64, (unsigned)i));
    /* refused: nothing written to out */
    out[0] = out;
    BT_CHECK(buffet_frame_alloc_batch(fa, 0, 16, 16, out) == 0);
    BT_CHECK(buffet_frame_alloc_batch(fa, 4, 0, 16, out) == 0);
    BT_CHECK(buffet_frame_alloc_batch(fa, 4, 16, 3, out) == 0);
    BT_CHECK(buffet_frame_alloc_batch(fa, 4, 16, 0, out) == 0);
    BT_CHECK(buffet_frame_alloc_batch(fa, 4, 16, 16, NULL) == 0);
    BT_CHECK(buffet_frame_alloc_batch(fa, SIZE_MAX / 16, 32, 16, out) == 0);   /* n * stride overflows */
    BT_CHECK(buffet_frame_alloc_batch(fa, 2, SIZE_MAX - 2, 16, out) == 0);     /* size rounds up past SIZE_MAX */
    BT_CHECK(buffet_frame_alloc_batch(NULL, 2, 16, 16, out) == 0);
    BT_CHECK(out[0] == (void *)out);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK && buffet_frame_end(tiny) == BUFFET_OK);
    buffet_frame_destroy(fa);
    buffet_frame_destroy(tiny);
    tf_debug_done(d);
}

/* Resize grows and shrinks only the newest allocation, in place; everything else is refused
   and left as it was. */
static void test_frame_resize(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    unsigned char *p, *q, *r;
    BT_CHECK(!buffet_frame_resize(fa, NULL, 0, 10));
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = (unsigned char *)buffet_frame_alloc(fa, 100, 1);
    BT_CHECK(p != NULL);
    if (!p) goto out;
    tf_fill(p, 100, 5);
    BT_CHECK(buffet_frame_resize(fa, p, 100, 200));            /* grow the newest */
    BT_CHECK(tf_intact(p, 100, 5));
    memset(p + 100, 0x77, 100);                                 /* the new bytes are usable */
    BT_CHECK(buffet_frame_resize(fa, p, 200, 200));
    BT_CHECK(!buffet_frame_resize(fa, p, 150, 300));           /* wrong old size */
    BT_CHECK(!buffet_frame_resize(fa, p, 200, 0));
    BT_CHECK(!buffet_frame_resize(NULL, p, 200, 300));
    q = (unsigned char *)buffet_frame_alloc(fa, 50, 1);
    BT_CHECK(q == p + TF_R(200));
    BT_CHECK(!buffet_frame_resize(fa, p, 200, 300));           /* no longer the newest */
    BT_CHECK(!buffet_frame_resize(fa, p, 200, 100));
    BT_CHECK(buffet_frame_resize(fa, q, 50, 20));              /* shrink the newest */
    r = (unsigned char *)buffet_frame_alloc(fa, 10, 1);
    BT_CHECK(r == q + TF_R(20));                                /* the bytes given back are reused */
    BT_CHECK(!buffet_frame_resize(fa, r, 10, 100000));         /* beyond the chunk */
    BT_CHECK(buffet_frame_resize(fa, r, 10, 30));              /* ...and it is still usable */
    BT_CHECK(tf_intact(p, 100, 5) && p[150] == 0x77);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(!buffet_frame_resize(fa, r, 30, 40));             /* outside a frame */
out:
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* A batch of 24-byte objects puts its last one off the 16-byte grain, yet it is the newest
   allocation: freeing it (through the allocator) or resizing it must leave the arena's pointer on
   the grain, so that later allocations stay 16-aligned. A fuzzer found the pointer left at the
   object's start, and an align-16 request answered 8 bytes off. */
static void test_frame_batch_last_off_grain(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_allocator al = buffet_frame_allocator(fa);
    void *objs[2];
    unsigned char *p, *last;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc_batch(fa, 2, 24, 8, objs) == 2);
    last = (unsigned char *)objs[1];
    BT_CHECK(((uintptr_t)objs[0] & 15) == 0 && last == (unsigned char *)objs[0] + 24);   /* off the grain */
    BUFFET_FREE_ALIGNED(al, objs[0], 24, 8);                   /* not the newest: nothing happens */
    BT_CHECK(buffet_frame_resize(fa, last, 24, 40));           /* the newest grows... */
    p = (unsigned char *)buffet_frame_alloc(fa, 16, 16);
    BT_CHECK(p == last + 40 && ((uintptr_t)p & 15) == 0);
    BT_CHECK(buffet_frame_alloc_batch(fa, 2, 24, 8, objs) == 2);
    BT_CHECK(buffet_frame_resize(fa, objs[1], 24, 3));         /* ...shrinks... */
    p = (unsigned char *)buffet_frame_alloc(fa, 16, 16);
    BT_CHECK(p == (unsigned char *)objs[1] + 8 && ((uintptr_t)p & 15) == 0);
    BT_CHECK(buffet_frame_alloc_batch(fa, 2, 24, 8, objs) == 2);
    BUFFET_FREE_ALIGNED(al, objs[1], 24, 8);                   /* ...and goes early */
    p = (unsigned char *)buffet_frame_alloc(fa, 16, 16);
    BT_CHECK(p == (unsigned char *)objs[1] + 8 && ((uintptr_t)p & 15) == 0);
    if (p) memset(p, 1, 16);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* Rollback frees everything after the checkpoint (its bytes are handed out again, chunks
   opened after it are released); a checkpoint of another frame is refused. */
static void test_frame_checkpoint(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 4096, 2, &l);
    buffet_frame_mark m, start, old;
    unsigned char *a, *b, *c, *b2;
    size_t bytes, chunks;
    BT_CHECK(buffet_frame_rollback(NULL, m = buffet_frame_checkpoint(NULL)) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    start = buffet_frame_checkpoint(fa);                         /* before any chunk */
    a = (unsigned char *)buffet_frame_alloc(fa, 100, 16);
    BT_CHECK(a != NULL);
    if (!a) goto out;
    tf_fill(a, 100, 9);
    m = buffet_frame_checkpoint(fa);
    bytes = buffet_frame_get_stats(fa).bytes;
    chunks = buffet_frame_get_stats(fa).chunks;
    b = (unsigned char *)buffet_frame_alloc(fa, 200, 16);
    c = (unsigned char *)buffet_frame_alloc(fa, 3000, 16);      /* fills the chunk */
    BT_CHECK(b && c && buffet_frame_alloc(fa, 1000, 16) != NULL);   /* so a new chunk */
    BT_CHECK(buffet_frame_alloc(fa, 9000, 16) != NULL);            /* and an oversized one */
    BT_CHECK(buffet_frame_get_stats(fa).chunks == chunks + 2);
    BT_CHECK(buffet_frame_rollback(fa, m) == BUFFET_OK);
    BT_CHECK(buffet_frame_get_stats(fa).bytes == bytes);
    BT_CHECK(buffet_frame_get_stats(fa).chunks == chunks + 1);   /* the oversized one went back */
    b2 = (unsigned char *)buffet_frame_alloc(fa, 200, 16);
    BT_CHECK(b2 == b);                                           /* reused */
    BT_CHECK(tf_intact(a, 100, 9));                              /* before the mark: untouched */
    BT_CHECK(buffet_frame_rollback(fa, m) == BUFFET_OK);         /* twice to one mark is fine */
    BT_CHECK(buffet_frame_rollback(fa, start) == BUFFET_OK);     /* back to an empty frame */
    BT_CHECK(buffet_frame_get_stats(fa).bytes == 0 && buffet_frame_get_stats(fa).count == 0);
    a = (unsigned char *)buffet_frame_alloc(fa, 64, 16);
    BT_CHECK(a != NULL);
    old = buffet_frame_checkpoint(fa);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_rollback(fa, old) == BUFFET_ERR_STATE);   /* outside a frame */
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 64, 16) != NULL);
    BT_CHECK(buffet_frame_rollback(fa, old) == BUFFET_ERR_STATE);   /* a mark of frame 1 in frame 2 */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 2 && buffet_frame_get_stats(fa).misuse == 2);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
out:
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Frame arenas: the allocator interface, growable arrays, tags, statistics. */

/* Through buffet_allocator: alloc bumps, resize grows the newest in place, free gives the
   newest back at once and ignores the rest (they go with the frame). */
static void test_frame_allocator(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_allocator al = buffet_frame_allocator(fa);
    unsigned char *p, *q, *r, *s;
    void *vp;
    size_t bytes0;
    BT_CHECK(buffet_frame_allocator(NULL).vtable == buffet_null_allocator().vtable);
    /* Over a thread-safe parent: blocks die with their frame, resizes, pins; owned. */
    BT_CHECK(buffet_allocator_contract(al) == (BUFFET_CONTRACT_RESIZE | BUFFET_CONTRACT_PIN));
    BT_CHECK(buffet_allocator_check(al, BUFFET_NEED_UNTIL_FREED, "test", NULL) == BUFFET_ERR_LIFETIME);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);
    bytes0 = buffet_frame_get_stats(fa).bytes;
    p = (unsigned char *)buffet_alloc(al, 64, 16, BUFFET_SITE);
    BT_CHECK(p != NULL && tf_aligned(p, 16));
    if (!p) goto out;
    BT_CHECK(buffet_resize(al, p, 64, 128, 16));
    tf_fill(p, 128, 3);
    BT_CHECK(buffet_frame_get_stats(fa).bytes == bytes0 + 128);
    buffet_free(al, p, 128, 16, BUFFET_SITE);                  /* the newest: back at once */
    BT_CHECK(buffet_frame_get_stats(fa).bytes == bytes0);
    q = (unsigned char *)buffet_alloc(al, 64, 16, BUFFET_SITE);
    BT_CHECK(q == p);
    r = (unsigned char *)buffet_alloc(al, 32, 16, BUFFET_SITE);
    BT_CHECK(r != NULL);
    tf_fill(q, 64, 4);
    buffet_free(al, q, 64, 16, BUFFET_SITE);                   /* not the newest: waits */
    BT_CHECK(buffet_frame_get_stats(fa).bytes == bytes0 + 96 && tf_intact(q, 64, 4));
    BT_CHECK(!buffet_resize(al, q, 64, 100, 16));
    s = (unsigned char *)buffet_realloc(al, q, 64, 256, 16, BUFFET_SITE);   /* so it moves */
    BT_CHECK(s != NULL && s != q && tf_intact(s, 64, 4));
    BT_CHECK(BUFFET_NEW(al, tf_vec3) != NULL);
    BT_CHECK(buffet_alloc(al, 0, 16, BUFFET_SITE) == NULL);
    BT_CHECK(buffet_alloc(al, 16, 3, BUFFET_SITE) == NULL);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_alloc(al, 16, 16, BUFFET_SITE) == NULL);  /* outside a frame */
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    vp = &vp;
    BT_CHECK(buffet_alloc_ex(al, 16, 16, BUFFET_SITE, &vp) == BUFFET_ERR_STATE && vp == NULL);
out:
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* A growable array keeps its contents through growth in place, moves (when something else was
   allocated after it) and chunk changes. */
static void test_frame_vec(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_frame_vec v, w, z;
    int i, bad = 0, x;
    tf_vec3 e;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    buffet_frame_vec_init(&v, fa, sizeof(int), 0);
    BT_CHECK(v.len == 0 && v.cap == 0 && v.data == NULL && v.align == BUFFET_DEFAULT_ALIGN);
    buffet_frame_vec_init(&w, fa, sizeof(tf_vec3), BUFFET_ALIGNOF(tf_vec3));
    for (i = 0; i < 10000; i++) {
        int *slot;
        x = i * 3;
        slot = (int *)buffet_frame_vec_push(&v, &x);
        if (!slot || *slot != x) bad++;
        if (i % 100 == 50) {   /* something else after the array: its next growth must move */
            if (!buffet_frame_alloc(fa, 40, 8)) bad++;
        }
        if (i < 500) {
            e.x = e.y = e.z = (double)i;
            if (!buffet_frame_vec_push(&w, &e)) bad++;
        }
    }
    BT_CHECK(bad == 0);
    BT_CHECK(v.len == 10000 && v.cap >= 10000 && w.len == 500);
    for (i = 0; i < 10000 && v.data; i++)
        if (((int *)v.data)[i] != i * 3) bad++;
    for (i = 0; i < 500 && w.data; i++)
        if (((tf_vec3 *)w.data)[i].z != (double)i) bad++;
    BT_CHECK(bad == 0);
    BT_CHECK(tf_aligned(w.data, BUFFET_ALIGNOF(tf_vec3)));
    /* bad use */
    x = 1;
    BT_CHECK(buffet_frame_vec_push(NULL, &x) == NULL);
    BT_CHECK(buffet_frame_vec_push(&v, NULL) == NULL && v.len == 10000);
    buffet_frame_vec_init(&z, fa, 0, 0);
    BT_CHECK(buffet_frame_vec_push(&z, &x) == NULL);
    buffet_frame_vec_init(&z, NULL, 4, 0);
    BT_CHECK(buffet_frame_vec_push(&z, &x) == NULL);
    buffet_frame_vec_init(NULL, fa, 4, 0);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_vec_init(&z, fa, sizeof(int), 0);
    BT_CHECK(buffet_frame_vec_push(&z, &x) == NULL);            /* outside a frame */
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* Tags attribute bytes and counts to the innermost pushed name, per frame, with peak and
   totals; equal strings are one tag; the stack and the table have limits (the defaults). */
#define TF_MAX_TAGS 64     /* buffet_frame_desc.max_tags 0 */
#define TF_TAG_DEPTH 32    /* buffet_frame_desc.tag_depth 0 */

static void test_frame_tags(void) {
    static char names[TF_MAX_TAGS + 4][16];
    static const char physics_copy[] = "physics";   /* another pointer, the same name */
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 65536, 1, &l);
    buffet_frame_tag_stats ts;
    buffet_budget b;
    unsigned i, added;
    BT_CHECK(buffet_frame_push_tag(NULL, "x") == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_push_tag(fa, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_pop_tag(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    /* sizes are multiples of the alignment, so no padding is charged */
    BT_CHECK(buffet_frame_push_tag(fa, "physics") == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 64, 16) && buffet_frame_alloc(fa, 64, 16));
    BT_CHECK(buffet_frame_push_tag(fa, "ai") == BUFFET_OK);     /* nested */
    BT_CHECK(buffet_frame_alloc(fa, 32, 16) != NULL);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);            /* physics again */
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 48, 16) != NULL);            /* untagged */
    BT_CHECK(buffet_frame_push_tag(fa, physics_copy) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_get_tag_stats(fa, "physics", &ts));
    BT_CHECK(ts.bytes == 160 && ts.count == 4 && strcmp(ts.name, "physics") == 0);
    BT_CHECK(buffet_frame_get_tag_stats(fa, "ai", &ts) && ts.bytes == 32 && ts.count == 1);
    BT_CHECK(buffet_frame_get_tag_stats(fa, "untagged", &ts) && ts.bytes == 48 && ts.count == 1);
    BT_CHECK(buffet_frame_get_stats(fa).tag_count == 3 && buffet_frame_get_stats(fa).bytes == 240);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "physics") == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 64, 16) != NULL);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_get_tag_stats(fa, "physics", &ts));
    BT_CHECK(ts.bytes == 64 && ts.count == 1 && ts.peak_bytes == 160);   /* this frame; peak */
    BT_CHECK(ts.total_bytes == 224 && ts.total_count == 5);               /* all frames */
    BT_CHECK(buffet_frame_get_tag_stats(fa, "ai", &ts) && ts.bytes == 0 && ts.count == 0 && ts.total_count == 1);
    BT_CHECK(!buffet_frame_get_tag_stats(fa, "nope", &ts));
    BT_CHECK(!buffet_frame_get_tag_stats(NULL, "ai", &ts) && !buffet_frame_get_tag_stats(fa, "ai", NULL));

    /* pop with nothing pushed */
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && buffet_frame_get_stats(fa).misuse == 1);
    /* too deep */
    for (i = 0; i < TF_TAG_DEPTH; i++) BT_CHECK(buffet_frame_push_tag(fa, "deep") == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "deep") == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 1);
    BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);            /* still "deep" */
    for (i = 0; i < TF_TAG_DEPTH; i++) BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_frame_get_tag_stats(fa, "deep", &ts) && ts.count == 1);
    /* too many: 4 tags exist (untagged, physics, ai, deep); the table holds MAX_TAGS */
    added = 0;
    for (i = 0; i < TF_MAX_TAGS + 4; i++) {
        snprintf(names[i], sizeof names[i], "tag%u", i);
        if (buffet_frame_push_tag(fa, names[i]) != BUFFET_OK) break;
        added++;
        BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    }
    BT_CHECK(added == TF_MAX_TAGS - 4);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 2);
    memset(&b, 0, sizeof b);
    b.hard = 100;
    BT_CHECK(buffet_frame_set_tag_budget(fa, "one more", &b) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_frame_push_tag(fa, "physics") == BUFFET_OK);   /* known names still work */
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_get_stats(fa).tag_count == TF_MAX_TAGS);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* desc.max_tags and desc.tag_depth set small: the push or tag budget past them is refused
   (BUFFET_ERR_EXHAUSTED, logged) and names already known go on working; 65536 is the most
   either may be (above: BUFFET_ERR_INVALID at create, nothing allocated). */
static void test_frame_tag_limits(void) {
    static const uint32_t bad[] = {65537, UINT32_MAX};
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_frame_tag_stats ts;
    buffet_budget b;
    bt_log l;
    size_t i;
    memset(&desc, 0, sizeof desc);
    memset(&b, 0, sizeof b);
    b.hard = 100;
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 4096;
    desc.max_tags = 3;   /* "untagged" and two more */
    desc.tag_depth = 2;
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "a") == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "b") == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "a") == BUFFET_ERR_EXHAUSTED);   /* the stack is full */
    BT_CHECK(buffet_frame_push_tag(fa, "new") == BUFFET_ERR_EXHAUSTED);  /* ...and adds no tag */
    BT_CHECK(buffet_frame_get_stats(fa).tag_count == 3 && !buffet_frame_get_tag_stats(fa, "new", &ts));
    BT_CHECK(bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 2);
    BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);                  /* still "b" */
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "c") == BUFFET_ERR_EXHAUSTED);   /* the table is full */
    BT_CHECK(buffet_frame_set_tag_budget(fa, "c", &b) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 3);
    BT_CHECK(buffet_frame_set_tag_budget(fa, "b", &b) == BUFFET_OK);  /* a known name */
    BT_CHECK(buffet_frame_push_tag(fa, "a") == BUFFET_OK);             /* [a, a]: known, depth 2 */
    BT_CHECK(buffet_frame_alloc(fa, 32, 16) != NULL);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK && buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_frame_get_stats(fa).tag_count == 3);
    BT_CHECK(buffet_frame_get_tag_stats(fa, "b", &ts) && ts.count == 1 && ts.bytes == 16);
    BT_CHECK(buffet_frame_get_tag_stats(fa, "a", &ts) && ts.count == 1 && ts.bytes == 32);
    BT_CHECK(!buffet_frame_get_tag_stats(fa, "c", &ts));
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);

    /* max_tags 1: "untagged" alone; tag_depth 1: one name at a time */
    desc.max_tags = 1;
    desc.tag_depth = 1;
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "x") == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_frame_set_tag_budget(fa, "x", &b) == BUFFET_ERR_EXHAUSTED);
    BT_CHECK(buffet_frame_push_tag(fa, "untagged") == BUFFET_OK);      /* the one there is */
    BT_CHECK(buffet_frame_push_tag(fa, "untagged") == BUFFET_ERR_EXHAUSTED);   /* depth 1 */
    BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_get_stats(fa).tag_count == 1 && buffet_frame_get_stats(fa).bytes == 16);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);

    /* the largest limits are taken; anything above is refused */
    desc.max_tags = 65536;
    desc.tag_depth = 65536;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (fa) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(buffet_frame_push_tag(fa, "deep") == BUFFET_OK);
        BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);
        BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        buffet_frame_destroy(fa);
    }
    desc.log = bt_logger(&l);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fa = NULL;
        desc.max_tags = bad[i];
        desc.tag_depth = 0;
        BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
        desc.max_tags = 0;
        desc.tag_depth = bad[i];
        BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_INVALID && fa == NULL);
    }
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 4 && l.total == 4);
    BT_CHECK(tf_live(d) == 0);
out:
    tf_debug_done(d);
}

/* The stats struct and the JSON dump agree with what was done; the JSON is well formed, names
   every tag, escapes a name with a quote, and truncates like snprintf. */
static void test_frame_stats_json(void) {
    static const char quoted[] = "say \"hi\"\\ \x01";
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 65536, 1, NULL);
    buffet_frame_stats st;
    static char json[8192];
    char small[16];
    size_t n;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, "render") == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 96, 16) != NULL);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_push_tag(fa, quoted) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 16, 16) != NULL);
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 20000, 16) != NULL);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.frame == 1 && st.count == 3 && st.bytes == 20112 && st.peak_bytes == 20112);
    BT_CHECK(st.chunks == 1 && st.chunk_bytes == 65536 && st.spare_chunks == 0);
    BT_CHECK(st.oversized == 0 && st.transfers_sent == 0 && st.misuse == 0 && st.tag_count == 3);
    BT_CHECK(st.hard_failures == 0 && st.soft_hits == 0);
    n = buffet_frame_stats_json(fa, json, sizeof json);
    BT_CHECK(n == strlen(json) && n < sizeof json);
    BT_CHECK(tf_json_ok(json));
    BT_CHECK(strstr(json, "\"tags\":[") != NULL);
    BT_CHECK(strstr(json, "\"name\":\"render\"") && strstr(json, "\"name\":\"untagged\""));
    BT_CHECK(strstr(json, "\"name\":\"say \\\"hi\\\"\\\\ \\u0001\"") != NULL);
    BT_CHECK(strstr(json, "\"frame\":1,") && strstr(json, "\"bytes\":20112,") && strstr(json, "\"bytes\":96,"));
    if (!tf_json_ok(json)) fprintf(stderr, "JSON: %s\n", json);
    BT_CHECK(buffet_frame_stats_json(fa, small, sizeof small) == n);   /* truncated, terminated */
    BT_CHECK(strlen(small) == sizeof small - 1 && memcmp(small, json, sizeof small - 1) == 0);
    BT_CHECK(buffet_frame_stats_json(fa, NULL, 0) == n);
    BT_CHECK(buffet_frame_stats_json(fa, small, 0) == n);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.frame == 1 && st.chunks == 1 && st.spare_chunks == 0);   /* frame 1's until frame 2 begins */
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.frame == 2 && st.chunks == 1 && st.spare_chunks == 1 && st.bytes == 0 && st.count == 0);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    n = buffet_frame_stats_json(NULL, json, sizeof json);   /* no arena: zeros, no tags */
    BT_CHECK(n == strlen(json) && tf_json_ok(json) && strstr(json, "\"tags\":[]") != NULL);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Frame arenas: budgets, and a parent that fails. */

typedef struct tf_soft { int calls; size_t used, limit; const char *name; } tf_soft;

static void tf_on_soft(void *user, const char *name, size_t used, size_t soft) {
    tf_soft *s = (tf_soft *)user;
    s->calls++;
    s->used = used;
    s->limit = soft;
    s->name = name;
}

/* Allocates size-byte blocks (align 4) until one is refused or max succeed; returns how many. */
static int tf_alloc_until_null(buffet_frame_arena *fa, size_t size, int max) {
    int n = 0;
    while (n < max && buffet_frame_alloc(fa, size, 4) != NULL) n++;
    return n;
}

/* The arena's own budget: the soft limit calls back exactly once in each frame that passes it;
   the hard limit refuses (NULL, counted, BUFFET_ERR_BUDGET logged) and resets with the frame. */
static void test_frame_budget_arena(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_frame_stats st;
    tf_soft soft;
    bt_log l;
    int f;
    memset(&soft, 0, sizeof soft);
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.log = bt_logger(&l);
    desc.budget.name = "main";
    desc.budget.soft = 1000;
    desc.budget.on_soft = tf_on_soft;
    desc.budget.user = &soft;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK);
    if (!fa) goto out;
    for (f = 1; f <= 3; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        /* 2000 bytes in frames 1 and 2 (over the soft limit), 500 in frame 3 */
        BT_CHECK(tf_alloc_until_null(fa, 100, f < 3 ? 20 : 5) == (f < 3 ? 20 : 5));
        BT_CHECK(soft.calls == (f < 3 ? f : 2));
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    BT_CHECK(soft.used > 1000 && soft.limit == 1000 && soft.name && strcmp(soft.name, "main") == 0);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.soft_hits == 2 && st.hard_failures == 0 && st.peak_bytes == 20 * TF_R(100));
    BT_CHECK(bt_logged(&l, BUFFET_ERR_BUDGET) == 2);             /* a warning each time */
    buffet_frame_destroy(fa);

    /* hard: 10 blocks of 100 (112 bytes each: sizes round up to 16) fill the limit exactly; the
       11th, and anything bigger, fails */
    memset(&desc.budget, 0, sizeof desc.budget);
    desc.budget.hard = 10 * TF_R(100);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK);
    if (!fa) goto out;
    for (f = 1; f <= 2; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(tf_alloc_until_null(fa, 100, 100) == 10);
        BT_CHECK(buffet_frame_alloc(fa, 5000, 16) == NULL);      /* would need an oversized chunk */
        BT_CHECK(buffet_frame_alloc(fa, 1, 1) == NULL);
        st = buffet_frame_get_stats(fa);
        BT_CHECK(st.bytes == 10 * TF_R(100) && st.hard_failures == (uint64_t)f * 3);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    BT_CHECK(bt_logged(&l, BUFFET_ERR_BUDGET) == 6);
    BT_CHECK(buffet_frame_get_budget(fa).hard_failures == 6 && buffet_frame_get_budget(fa).peak == 10 * TF_R(100));
    /* a batch is all or nothing under the limit too: nothing written, nothing charged */
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    {
        void *objs[100];
        objs[0] = objs;
        BT_CHECK(buffet_frame_alloc_batch(fa, 100, 16, 16, objs) == 0 && objs[0] == (void *)objs);
        BT_CHECK(buffet_frame_get_stats(fa).bytes == 0 && buffet_frame_get_stats(fa).count == 0);
        BT_CHECK(buffet_frame_alloc_batch(fa, 70, 16, 16, objs) == 70);    /* 1120 bytes fit */
        BT_CHECK(buffet_frame_alloc_batch(fa, 1, 16, 16, objs) == 0);      /* 16 more do not */
        BT_CHECK(buffet_frame_get_stats(fa).bytes == 1120 && buffet_frame_get_stats(fa).count == 70);
    }
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

/* A tag's budget limits only what is allocated under that tag. */
static void test_frame_budget_tag(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 65536, 1, &l);
    buffet_frame_tag_stats ts;
    buffet_budget b;
    tf_soft soft;
    int f;
    memset(&soft, 0, sizeof soft);
    memset(&b, 0, sizeof b);
    b.soft = 3 * TF_R(100);
    b.hard = 5 * TF_R(100);
    b.on_soft = tf_on_soft;
    b.user = &soft;
    BT_CHECK(buffet_frame_set_tag_budget(NULL, "gfx", &b) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_set_tag_budget(fa, NULL, &b) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_set_tag_budget(fa, "gfx", NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_set_tag_budget(fa, "gfx", &b) == BUFFET_OK);   /* creates the tag */
    for (f = 1; f <= 2; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(buffet_frame_alloc(fa, 1000, 4) != NULL);          /* untagged: no limit */
        BT_CHECK(buffet_frame_push_tag(fa, "gfx") == BUFFET_OK);
        BT_CHECK(tf_alloc_until_null(fa, 100, 100) == 5);
        BT_CHECK(soft.calls == f);
        BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_OK);
        BT_CHECK(tf_alloc_until_null(fa, 100, 30) == 30);           /* the others go on */
        BT_CHECK(buffet_frame_get_tag_stats(fa, "gfx", &ts));
        BT_CHECK(ts.bytes == 5 * TF_R(100) && ts.count == 5 && ts.hard_failures == (uint64_t)f && ts.soft_hits == (uint64_t)f);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    BT_CHECK(soft.name && strcmp(soft.name, "gfx") == 0 && soft.limit == 3 * TF_R(100));
    BT_CHECK(buffet_frame_get_stats(fa).hard_failures == 2 && buffet_frame_get_stats(fa).soft_hits == 2);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_BUDGET) == 4);           /* 2 soft warnings, 2 refusals */
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* One buffet_budget shared by two arenas of a thread: the hard limit holds for their sum, the
   soft callback runs once a frame, and each begin gives back what that arena charged. */
static void test_frame_budget_thread(void) {
    buffet_debug *d = tf_debug();
    buffet_budget shared;
    buffet_frame_desc desc;
    buffet_frame_arena *a1 = NULL, *a2 = NULL;
    tf_soft soft;
    int f, n1, n2;
    memset(&soft, 0, sizeof soft);
    memset(&shared, 0, sizeof shared);
    shared.name = "thread";
    shared.hard = 20 * TF_R(1000);   /* 20 blocks of 1000 (1008 each: sizes round up to 16) */
    shared.soft = 5000;
    shared.on_soft = tf_on_soft;
    shared.user = &soft;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.thread_budget = &shared;
    BT_CHECK(buffet_frame_create(&a1, &desc) == BUFFET_OK);
    BT_CHECK(buffet_frame_create(&a2, &desc) == BUFFET_OK);
    if (!a1 || !a2) goto out;
    for (f = 1; f <= 3; f++) {
        bool more1 = true, more2 = true;
        BT_CHECK(buffet_frame_begin(a1) == BUFFET_OK && buffet_frame_begin(a2) == BUFFET_OK);
        BT_CHECK(shared.used == 0);
        n1 = n2 = 0;
        while (more1 || more2) {   /* take turns until both are refused */
            if (more1 && (more1 = buffet_frame_alloc(a1, 1000, 4) != NULL)) n1++;
            if (more2 && (more2 = buffet_frame_alloc(a2, 1000, 4) != NULL)) n2++;
        }
        BT_CHECK((size_t)(n1 + n2) * TF_R(1000) <= shared.hard);    /* the limit holds for the sum */
        BT_CHECK(n1 + n2 >= 18 && n1 > 0 && n2 > 0);                 /* and was nearly reached */
        if (n1 + n2 < 20) fprintf(stderr, "test_frame: thread budget: %d of 20 blocks of 1000 bytes under a 20160-byte limit\n", n1 + n2);
        BT_CHECK(shared.used <= shared.hard && shared.peak <= shared.hard);
        BT_CHECK(soft.calls == f);
        BT_CHECK(buffet_frame_end(a1) == BUFFET_OK && buffet_frame_end(a2) == BUFFET_OK);
    }
    BT_CHECK(shared.hard_failures >= 6 && shared.soft_hits == 3);
    BT_CHECK(soft.name && strcmp(soft.name, "thread") == 0);
    /* destroyed in the middle of a frame, an arena still gives back its charge and reservation */
    BT_CHECK(buffet_frame_begin(a1) == BUFFET_OK && buffet_frame_begin(a2) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(a1, 3000, 4) != NULL && buffet_frame_alloc(a2, 2000, 4) != NULL);
    BT_CHECK(shared.used == TF_R(3000) + 2000 && shared.reserved > 0);
    buffet_frame_destroy(a1);
    BT_CHECK(buffet_frame_get_stats(a2).bytes == 2000);
    BT_CHECK(buffet_frame_end(a2) == BUFFET_OK);
    buffet_frame_destroy(a2);
    BT_CHECK(shared.used == 0 && shared.reserved == 0);       /* the arenas gave back their charge */
out:
    tf_debug_done(d);
}

/* buffet_frame_get_budget: the arena's own budget as it stands (its limits and counters, as a
   copy: writing to it changes nothing); the reservation never reaches past a limit and is
   back to 0 after the end; NULL gives all zeros. */
static void test_frame_get_budget(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_budget b;
    bt_log l;
    b = buffet_frame_get_budget(NULL);
    BT_CHECK(b.name == NULL && b.soft == 0 && b.hard == 0 && b.on_soft == NULL && b.user == NULL);
    BT_CHECK(b.used == 0 && b.reserved == 0 && b.peak == 0 && b.soft_hits == 0 && b.hard_failures == 0 && !b.soft_fired);
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 4096;
    desc.log = bt_logger(&l);
    desc.budget.name = "frame";
    desc.budget.soft = 300;
    desc.budget.hard = 992;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.name && strcmp(b.name, "frame") == 0 && b.soft == 300 && b.hard == 992);
    BT_CHECK(b.used == 0 && b.reserved == 0 && b.peak == 0 && b.soft_hits == 0 && b.hard_failures == 0);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 200, 8) != NULL);
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.used == TF_R(200) && b.used + b.reserved <= b.soft && !b.soft_fired);   /* the fast path stops at the soft limit */
    BT_CHECK(buffet_frame_alloc(fa, 192, 8) != NULL);                            /* past the soft limit */
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.used == 400 && b.soft_fired && b.soft_hits == 1 && b.peak == 400);
    BT_CHECK(b.used + b.reserved <= b.hard);
    BT_CHECK(buffet_frame_alloc(fa, 700, 8) == NULL);                            /* past the hard one */
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.used == 400 && b.hard_failures == 1 && b.used + b.reserved <= b.hard);
    BT_CHECK(buffet_frame_alloc(fa, 600, 8) == NULL);                            /* 608 with its rounding: past it */
    BT_CHECK(buffet_frame_alloc(fa, 592, 8) != NULL);                            /* exactly to it */
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.used == 992 && b.reserved == 0 && b.peak == 992);
    b.used = 5;                                                                   /* a copy */
    b.hard = 1;
    BT_CHECK(buffet_frame_get_budget(fa).used == 992 && buffet_frame_get_budget(fa).hard == 992);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.used == 992 && b.reserved == 0);       /* the last frame's, until the next begins */
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.used == 0 && b.reserved == 0 && !b.soft_fired && b.peak == 992);
    BT_CHECK(b.soft_hits == 1 && b.hard_failures == 2);
    BT_CHECK(buffet_frame_alloc(fa, 100, 8) != NULL);
    BT_CHECK(buffet_frame_get_budget(fa).used == TF_R(100) && buffet_frame_get_stats(fa).bytes == TF_R(100));
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_BUDGET) == 3);   /* the soft warning and the refusals */
    buffet_frame_destroy(fa);

    /* no budget: no limits, the counters still count */
    fa = tf_arena(d, 4096, 1, NULL);
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.name != NULL && b.soft == 0 && b.hard == 0 && b.on_soft == NULL);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 3000, 8) != NULL);
    b = buffet_frame_get_budget(fa);
    BT_CHECK(b.used == TF_R(3000) && b.peak == TF_R(3000) && b.hard_failures == 0 && b.soft_hits == 0);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

/* What a soft-budget callback saw, and what it did, from inside the call. */
typedef struct tf_reenter {
    buffet_frame_arena *fa;
    int calls;
    size_t extra;                  /* bytes the callback allocates from the arena */
    size_t used_arg, stats_bytes, budget_used_after;
    size_t stats_count;
    bool alloc_ok;
} tf_reenter;

static void tf_soft_reenter(void *user, const char *name, size_t used, size_t soft) {
    tf_reenter *r = (tf_reenter *)user;
    buffet_frame_stats st = buffet_frame_get_stats(r->fa);
    (void)name;
    (void)soft;
    r->calls++;
    r->used_arg = used;
    r->stats_bytes = st.bytes;
    r->stats_count = st.count;
    r->alloc_ok = buffet_frame_alloc(r->fa, r->extra, 4) != NULL;
    r->budget_used_after = buffet_frame_get_budget(r->fa).used;
}

/* A soft-budget callback that calls into its arena (buffet_frame_get_stats, buffet_frame_alloc)
   sees the allocation that passed the limit already charged, charges its own allocation once,
   and leaves nothing half-done: the reservation is 0 after every end and at every begin, the
   thread budget agrees with the arena, and later frames under the hard limit see no failure. */
static void test_frame_budget_callback_reentry(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_budget shared, b;
    buffet_frame_stats st;
    tf_reenter r;
    bt_log l;
    int f, i;
    memset(&r, 0, sizeof r);
    memset(&shared, 0, sizeof shared);
    shared.name = "thread";
    shared.hard = (size_t)1 << 20;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 4096;
    desc.log = bt_logger(&l);
    desc.budget.name = "main";
    desc.budget.soft = 10 * TF_R(100);     /* blocks of 100 take 112 (sizes round up to 16) */
    desc.budget.hard = 30 * TF_R(100);
    desc.budget.on_soft = tf_soft_reenter;
    desc.budget.user = &r;
    desc.thread_budget = &shared;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    r.fa = fa;
    r.extra = 100;
    for (f = 1; f <= 5; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        b = buffet_frame_get_budget(fa);
        BT_CHECK(b.used == 0 && b.reserved == 0 && !b.soft_fired);
        BT_CHECK(shared.used == 0 && shared.reserved == 0);
        for (i = 0; i < 10; i++) BT_CHECK(buffet_frame_alloc(fa, 100, 4) != NULL);   /* at the limit */
        BT_CHECK(r.calls == f - 1);
        BT_CHECK(buffet_frame_alloc(fa, 100, 4) != NULL);                            /* past it */
        BT_CHECK(r.calls == f && r.alloc_ok);
        BT_CHECK(r.used_arg == 11 * TF_R(100) && r.stats_bytes == 11 * TF_R(100) && r.stats_count == 11);   /* charged before the call */
        BT_CHECK(r.budget_used_after == 12 * TF_R(100));                              /* its own, once */
        st = buffet_frame_get_stats(fa);
        b = buffet_frame_get_budget(fa);
        BT_CHECK(st.bytes == 12 * TF_R(100) && st.count == 12 && b.used == 12 * TF_R(100) && shared.used == 12 * TF_R(100));
        BT_CHECK(b.soft_hits == (uint64_t)f && b.used + b.reserved <= b.hard);
        if (f == 1) {
            BT_CHECK(tf_alloc_until_null(fa, 100, 100) == 18);                       /* up to the hard limit */
            BT_CHECK(buffet_frame_get_budget(fa).used == 30 * TF_R(100) && shared.used == 30 * TF_R(100));
        } else {
            BT_CHECK(tf_alloc_until_null(fa, 100, 13) == 13);                        /* 25 blocks in all */
            BT_CHECK(buffet_frame_get_budget(fa).used == 25 * TF_R(100) && shared.used == 25 * TF_R(100));
        }
        BT_CHECK(r.calls == f);                                                       /* once a frame */
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        b = buffet_frame_get_budget(fa);
        BT_CHECK(b.reserved == 0 && shared.reserved == 0);
        BT_CHECK(b.hard_failures == 1);                                               /* frame 1's only */
    }
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.hard_failures == 1 && st.soft_hits == 5 && st.peak_bytes == 30 * TF_R(100));
    BT_CHECK(bt_logged(&l, BUFFET_ERR_BUDGET) == 6 && l.total == 6);   /* 5 soft warnings, 1 refusal */
    BT_CHECK(shared.hard_failures == 0);
    buffet_frame_destroy(fa);
    BT_CHECK(shared.used == 0 && shared.reserved == 0);
out:
    tf_debug_done(d);
}

/* What a logger saw from inside its call. */
typedef struct tf_log_reenter {
    buffet_frame_arena *fa;
    unsigned calls;
    buffet_result last;
    buffet_frame_stats seen;       /* buffet_frame_get_stats in the latest call */
    bool alloc_ok;                 /* an allocation in the latest call (in a frame) */
    bool busy;                     /* in the callback: what it causes itself is only counted */
    unsigned nested;
} tf_log_reenter;

static void tf_log_reenter_fn(void *user, buffet_log_level level, buffet_result code, const char *msg,
                              const char *file, int line) {
    tf_log_reenter *r = (tf_log_reenter *)user;
    (void)level; (void)msg; (void)file; (void)line;
    if (r->busy) {
        r->nested++;
        return;
    }
    r->calls++;
    r->last = code;
    if (!r->fa) return;
    r->busy = true;
    r->seen = buffet_frame_get_stats(r->fa);
    r->alloc_ok = buffet_frame_alloc(r->fa, 8, 8) != NULL;
    r->busy = false;
}

/* A logger that calls buffet_frame_get_stats (and allocates) from inside the log callback sees
   consistent state: the refusal it is told of already counted, the bytes charged, the new
   frame begun; the arena goes on normally after it. */
static void test_frame_logger_reentry(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_frame_transfer *t;
    buffet_failing fail;
    tf_log_reenter r;
    buffet_frame_stats st;
    void *p;
    int f;
    memset(&r, 0, sizeof r);
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 4096;
    desc.transfer_warn_frames = 2;
    desc.budget.soft = 500;
    desc.budget.hard = 2000;
    desc.log.fn = tf_log_reenter_fn;
    desc.log.user = &r;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    r.fa = fa;
    BT_CHECK(buffet_frame_alloc(fa, 64, 8) == NULL);                 /* outside a frame */
    BT_CHECK(r.calls == 1 && r.last == BUFFET_ERR_STATE && r.seen.misuse == 1 && !r.alloc_ok);
    BT_CHECK(r.nested == 1 && buffet_frame_get_stats(fa).misuse == 2);   /* its own allocation, refused too */
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 400, 8) != NULL && r.calls == 1);
    BT_CHECK(buffet_frame_alloc(fa, 200, 8) != NULL);                /* the soft warning */
    BT_CHECK(r.calls == 2 && r.last == BUFFET_ERR_BUDGET && r.alloc_ok);
    BT_CHECK(r.seen.bytes == 400 + TF_R(200) && r.seen.count == 2 && r.seen.soft_hits == 1);
    BT_CHECK(buffet_frame_alloc(fa, 2000, 8) == NULL);               /* the hard refusal */
    BT_CHECK(r.calls == 3 && r.last == BUFFET_ERR_BUDGET && r.alloc_ok);
    BT_CHECK(r.seen.hard_failures == 1 && r.seen.bytes == 400 + TF_R(200) + TF_R(8) && r.seen.count == 3);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_BUDGET);         /* the logger's allocation did not change why */
    BT_CHECK(buffet_frame_pop_tag(fa) == BUFFET_ERR_STATE);          /* nothing pushed */
    BT_CHECK(r.calls == 4 && r.seen.misuse == 3 && r.seen.bytes == 400 + TF_R(200) + 2 * TF_R(8));
    p = buffet_frame_alloc(fa, 100, 16);
    t = p ? buffet_frame_transfer_send(fa, p, 100) : NULL;
    BT_CHECK(t != NULL);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.bytes >= 716 && st.count == 6 && st.misuse == 3 && st.hard_failures == 1);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    for (f = 2; f <= 3; f++) {   /* the unreceived-transfer warning comes as frame 3 begins */
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(r.calls == (f == 3 ? 5u : 4u));
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    BT_CHECK(r.last == BUFFET_ERR_STATE && r.seen.frame == 3 && r.alloc_ok);   /* in frame 3, begun */
    BT_CHECK(r.seen.bytes == 0 && r.seen.count == 0 && r.seen.chunks == 1);   /* a fresh frame; the pinned chunk */
    buffet_frame_transfer_release(t);
    buffet_frame_destroy(fa);

    /* a chunk the parent refuses: the logger sees the frame as it was */
    memset(&r, 0, sizeof r);
    memset(&desc.budget, 0, sizeof desc.budget);
    buffet_failing_init(&fail, buffet_debug_allocator(d), 2, false);   /* 1: the arena, 2: its first chunk */
    desc.parent = buffet_failing_allocator(&fail);
    fa = NULL;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    r.fa = fa;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 100, 8) == NULL);
    BT_CHECK(r.calls == 1 && r.last == BUFFET_ERR_NOMEM && r.seen.frame == 1 && r.seen.bytes == 0);
    BT_CHECK(r.alloc_ok && r.seen.chunks == 0);                      /* the logger's own allocation got chunk 3 */
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
    BT_CHECK(buffet_frame_alloc(fa, 100, 8) != NULL);
    st = buffet_frame_get_stats(fa);
    BT_CHECK(st.chunks == 1 && st.count == 2 && st.bytes >= 108);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

/* Why buffet_frame_alloc returned NULL, for buffet_alloc_error() (and buffet_alloc_ex through
   the arena's allocator): BUFFET_ERR_STATE outside a frame, BUFFET_ERR_BUDGET over a hard
   budget, BUFFET_ERR_NOMEM when the parent fails (an oversized chunk too), BUFFET_ERR_INVALID and
   BUFFET_ERR_OVERFLOW for bad arguments; each logged with the same code. */
static void test_frame_alloc_errors(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa;
    buffet_failing fail;
    void *objs[4], *p;
    bt_log l;
    fa = tf_arena(d, 4096, 1, &l);
    BT_CHECK(buffet_frame_alloc(fa, 64, 8) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_STATE && bt_logged(&l, BUFFET_ERR_STATE) == 1);
    p = &p;
    BT_CHECK(buffet_alloc_ex(buffet_frame_allocator(fa), 64, 8, BUFFET_SITE, &p) == BUFFET_ERR_STATE && p == NULL);
    BT_CHECK(buffet_frame_alloc_batch(fa, 4, 16, 16, objs) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 64, 8) != NULL);
    BT_CHECK(buffet_frame_alloc(fa, 64, 3) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_alloc_array(fa, SIZE_MAX / 2, 4, 4) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_frame_alloc(fa, SIZE_MAX - 16, 8) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);

    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 4096;
    desc.budget.hard = TF_R(1000);
    desc.log = bt_logger(&l);
    fa = NULL;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 1000, 8) != NULL);
    BT_CHECK(buffet_frame_alloc(fa, 1, 1) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_BUDGET);
    p = &p;
    BT_CHECK(buffet_alloc_ex(buffet_frame_allocator(fa), 8, 8, BUFFET_SITE, &p) == BUFFET_ERR_BUDGET && p == NULL);
    BT_CHECK(buffet_frame_alloc_batch(fa, 2, 8, 8, objs) == 0 && buffet_alloc_error(NULL) == BUFFET_ERR_BUDGET);
    BT_CHECK(buffet_frame_alloc(fa, 5000, 8) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_BUDGET);   /* oversized */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_BUDGET) == 4 && buffet_frame_get_budget(fa).hard_failures == 4);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);

    /* 1: the arena, 2: its first chunk (refused), 3 on: served; then an oversized one refused */
    buffet_failing_init(&fail, buffet_debug_allocator(d), 2, false);
    desc.parent = buffet_failing_allocator(&fail);
    memset(&desc.budget, 0, sizeof desc.budget);
    desc.log = bt_logger(&l);
    fa = NULL;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(fa, 100, 8) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_NOMEM) == 1 && fail.failures == 1);
    BT_CHECK(buffet_frame_alloc(fa, 100, 8) != NULL);
    buffet_failing_init(&fail, buffet_debug_allocator(d), 1, true);    /* from now on, every request */
    BT_CHECK(buffet_frame_alloc(fa, 10000, 8) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);
    p = &p;
    BT_CHECK(buffet_alloc_ex(buffet_frame_allocator(fa), 4000, 8, BUFFET_SITE, &p) == BUFFET_ERR_NOMEM && p == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_NOMEM) == 3);
    BT_CHECK(buffet_frame_alloc(fa, 100, 8) != NULL);                 /* the chunk in use goes on */
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_failing_init(&fail, buffet_debug_allocator(d), 0, false);   /* so that destroy frees through it */
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

/* Chunks must live until the arena frees them: another frame's or a scope's allocator is
   refused (BUFFET_ERR_LIFETIME, logged, nothing allocated). A fixed buffer serves one thread:
   it is taken, but nothing may then free a chunk from another thread, so transfer_send is
   refused (BUFFET_ERR_THREAD) and the arena's allocator does not offer PIN; a full buffer
   fails an allocation with the parent's reason (BUFFET_ERR_EXHAUSTED). */
static void test_frame_create_parents(void) {
    static unsigned char mem[32768];
    buffet_debug *d = tf_debug();
    buffet_frame_arena *outer = tf_arena(d, 4096, 1, NULL), *fa = NULL;
    buffet_frame_desc desc;
    buffet_fixed fx;
    buffet_fixed_desc fd;
    buffet_scope sc;
    unsigned char *p;
    size_t live, used;
    bt_log l;
    int n;
    memset(&desc, 0, sizeof desc);
    desc.chunk_size = 4096;
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_begin(outer) == BUFFET_OK);
    live = tf_live(d);
    desc.parent = buffet_frame_allocator(outer);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_LIFETIME && fa == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LIFETIME) == 1 && buffet_frame_get_stats(outer).count == 0);
    BT_CHECK(tf_scope_begin(&sc, buffet_debug_allocator(d), NULL, NULL) == BUFFET_OK);
    desc.parent = buffet_scope_allocator(&sc);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_ERR_LIFETIME && fa == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LIFETIME) == 2 && sc.count == 0);
    BT_CHECK(buffet_scope_end(&sc) == BUFFET_OK);
    BT_CHECK(tf_live(d) == live && l.total == 2);
    BT_CHECK(buffet_frame_end(outer) == BUFFET_OK);
    buffet_frame_destroy(outer);

    memset(&fd, 0, sizeof fd);
    fd.mem = mem;
    fd.cap = sizeof mem;
    BT_CHECK(buffet_fixed_init(&fx, &fd) == BUFFET_OK);
    desc.parent = buffet_fixed_allocator(&fx);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && fa != NULL);
    if (!fa) goto out;
    BT_CHECK(fx.used > 0);                                          /* the arena itself is in mem */
    BT_CHECK(buffet_allocator_contract(buffet_frame_allocator(fa)) == BUFFET_CONTRACT_RESIZE);   /* no PIN */
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = (unsigned char *)buffet_frame_alloc(fa, 100, 16);
    BT_CHECK(p != NULL && p >= mem && p + 100 <= mem + sizeof mem);
    BT_CHECK(p && buffet_frame_transfer_send(fa, p, 100) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_THREAD && bt_logged(&l, BUFFET_ERR_THREAD) == 1);
    BT_CHECK(buffet_frame_get_stats(fa).transfers_sent == 0);
    n = tf_alloc_until_null(fa, 3000, 100);                          /* a chunk each, until mem is full */
    BT_CHECK(n >= 2 && n < 8);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED && bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 1);
    used = fx.used;
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);                  /* the same chunks serve again */
    BT_CHECK(tf_alloc_until_null(fa, 3000, 100) == n && fx.used == used);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_EXHAUSTED && bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 2);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
out:
    buffet_fixed_deinit(&fx);
    tf_debug_done(d);
}

/* Everything in an arena that asks its parent for memory: create, new chunks, an oversized
   chunk, a batch, a transfer handle, a growing array, over three frames. Returns how many
   operations reported a failure. */
static unsigned tf_frame_scenario(buffet_allocator parent, bt_log *l) {
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    unsigned failed = 0;
    int f, i;
    memset(&desc, 0, sizeof desc);
    desc.parent = parent;
    desc.chunk_size = 4096;
    desc.max_chunk_size = 4096;   /* a grown chunk refused is not a failure (test_frame_chunk_growth) */
    desc.frames_in_flight = 2;
    desc.log = bt_logger(l);
    if (buffet_frame_create(&fa, &desc) != BUFFET_OK) {
        BT_CHECK(fa == NULL);
        return 1;
    }
    for (f = 0; f < 3; f++) {
        buffet_frame_vec v;
        void *objs[8], *p;
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        for (i = 0; i < 3; i++) {             /* a chunk each */
            p = buffet_frame_alloc(fa, 3000, 16);
            if (p) tf_fill(p, 3000, (unsigned)i);
            else failed++;
        }
        p = buffet_frame_alloc(fa, 10000, 16);   /* oversized */
        if (p) tf_fill(p, 10000, 1);
        else failed++;
        if (buffet_frame_alloc_batch(fa, 8, 500, 16, objs) != 8) failed++;
        p = buffet_frame_alloc(fa, 100, 16);
        if (!p) {
            failed++;
        } else {
            buffet_frame_transfer *t = buffet_frame_transfer_send(fa, p, 100);
            if (!t) {
                failed++;
            } else {
                BT_CHECK(buffet_frame_transfer_receive(t, NULL) == p);
                buffet_frame_transfer_release(t);
            }
        }
        buffet_frame_vec_init(&v, fa, sizeof(int), 0);
        for (i = 0; i < 3000; i++)
            if (!buffet_frame_vec_push(&v, &i)) failed++;
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    buffet_frame_destroy(fa);
    return failed;
}

/* For n = 1, 2, ...: the nth request to the parent fails. The operation that made it fails
   cleanly (NULL or BUFFET_ERR_NOMEM, logged once), the others go on, and after destroy nothing
   is left, until a run asks the parent n-1 times or fewer. */
static void test_frame_failing_parent(void) {
    buffet_debug *d = tf_debug();
    uint64_t n;
    bool clean = false;
    for (n = 1; n <= 500 && !clean; n++) {
        buffet_failing f;
        bt_log l;
        unsigned failed;
        buffet_failing_init(&f, buffet_debug_allocator(d), n, false);
        failed = tf_frame_scenario(buffet_failing_allocator(&f), &l);
        BT_CHECK(tf_live(d) == 0);
        BT_CHECK(failed == f.failures);
        BT_CHECK(bt_logged(&l, BUFFET_ERR_NOMEM) == f.failures);
        if (failed != f.failures) fprintf(stderr, "  at n=%llu: %u operations failed, %llu parent failures\n",
                                          (unsigned long long)n, failed, (unsigned long long)f.failures);
        clean = f.failures == 0;
    }
    BT_CHECK(clean);
    tf_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Transfers, barriers, use after frame_end. */

typedef struct tf_recv {
    buffet_frame_transfer *t;
    size_t size;
    unsigned seed;
    bool ok;
} tf_recv;

/* A receiver thread: takes delivery, checks every byte, lets go. */
static void *tf_receiver(void *arg) {
    tf_recv *r = (tf_recv *)arg;
    size_t size = 0;
    unsigned char *p = (unsigned char *)buffet_frame_transfer_receive(r->t, &size);
    r->ok = p != NULL && size == r->size && tf_intact(p, size, r->seed);
    buffet_frame_transfer_release(r->t);
    return NULL;
}

static void tf_receive_on_thread(tf_recv *r) {
    pthread_t th;
    BT_CHECK(pthread_create(&th, NULL, tf_receiver, r) == 0);
    BT_CHECK(pthread_join(th, NULL) == 0);
    BT_CHECK(r->ok);
}

/* Memory sent from frame 1 outlives its frame while another thread holds it; released, its
   chunk goes back to the arena; the sender's other frames never reuse it meanwhile. */
static void test_frame_transfer(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 4096, 2, &l);
    unsigned char *p;
    tf_recv r;
    int f;
    size_t chunks_held;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = (unsigned char *)buffet_frame_alloc(fa, 1000, 16);
    BT_CHECK(p != NULL);
    if (!p) return;
    tf_fill(p, 1000, 0x5A);
    memset(&r, 0, sizeof r);
    r.size = 1000;
    r.seed = 0x5A;
    r.t = buffet_frame_transfer_send(fa, p, 1000);
    BT_CHECK(r.t != NULL && buffet_frame_get_stats(fa).transfers_sent == 1);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    for (f = 2; f <= 5; f++) {   /* with 2 in flight, frame 1's memory would go when frame 3 begins */
        unsigned char *q;
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        q = (unsigned char *)buffet_frame_alloc(fa, 3000, 16);
        BT_CHECK(q != NULL && (q + 3000 <= p || q >= p + 1000));
        if (q) tf_fill(q, 3000, (unsigned)f);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        BT_CHECK(tf_intact(p, 1000, 0x5A));
    }
    chunks_held = buffet_frame_get_stats(fa).chunks;
    if (r.t) tf_receive_on_thread(&r);
    for (f = 6; f <= 8; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(buffet_frame_alloc(fa, 3000, 16) != NULL);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    BT_CHECK(buffet_frame_get_stats(fa).chunks <= chunks_held);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 0);             /* no unreceived-transfer warning */
    BT_CHECK(tf_live(d) == buffet_frame_get_stats(fa).chunks + 1);   /* the handle is gone too */
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* A transfer nobody receives is reported once, transfer_warn_frames frames after it was sent
   (BUFFET_ERR_STATE warning, counted); its chunk stays alive until it is released. */
static void test_frame_transfer_unreceived(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_frame_transfer *t;
    unsigned char *p;
    bt_log l;
    int f;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.chunk_size = 4096;
    desc.transfer_warn_frames = 3;
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK);
    if (!fa) goto out;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = (unsigned char *)buffet_frame_alloc(fa, 200, 16);
    BT_CHECK(p != NULL);
    if (!p) goto out_arena;
    tf_fill(p, 200, 7);
    t = buffet_frame_transfer_send(fa, p, 200);
    BT_CHECK(t != NULL);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    for (f = 2; f <= 10; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        /* frame f begins f-1 frames after the send: the warning comes as frame 4 begins, once */
        BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == (f >= 4 ? 1u : 0u) && l.total == (f >= 4 ? 1u : 0u));
        BT_CHECK(buffet_frame_alloc(fa, 200, 16) != NULL);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == (f >= 4 ? 1u : 0u));
    }
    BT_CHECK(tf_intact(p, 200, 7));                              /* still alive */
    BT_CHECK(buffet_frame_get_stats(fa).chunks == 2);            /* the pinned one + the one in use */
    BT_CHECK(buffet_frame_get_stats(fa).transfers_unreceived == 1);
    if (t) {
        BT_CHECK(buffet_frame_transfer_receive(t, NULL) == p);
        buffet_frame_transfer_release(t);
    }
    for (f = 11; f <= 12; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(buffet_frame_alloc(fa, 200, 16) != NULL);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && l.total == 1);   /* the one warning, no more */
    BT_CHECK(tf_live(d) == buffet_frame_get_stats(fa).chunks + 1);   /* the handle went with the pin */
out_arena:
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

/* Only memory of the current frame can be sent, and only within what was allocated. */
static void test_frame_transfer_errors(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 4096, 2, &l);
    unsigned char *old, *p, *first;
    int local = 0;
    buffet_frame_transfer *t;
    size_t size = 1;
    BT_CHECK(buffet_frame_transfer_send(NULL, &local, 4) == NULL);
    BT_CHECK(buffet_frame_transfer_receive(NULL, &size) == NULL);
    buffet_frame_transfer_release(NULL);
    BT_CHECK(buffet_frame_transfer_send(fa, &local, 4) == NULL);        /* outside a frame */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    old = (unsigned char *)buffet_frame_alloc(fa, 100, 16);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    first = (unsigned char *)buffet_frame_alloc(fa, 3000, 16);
    p = (unsigned char *)buffet_frame_alloc(fa, 2000, 16);          /* in a second chunk */
    BT_CHECK(old && first && p);
    BT_CHECK(buffet_frame_transfer_send(fa, NULL, 4) == NULL);
    BT_CHECK(buffet_frame_transfer_send(fa, old, 100) == NULL);      /* frame 1's: still valid, not this frame's */
    BT_CHECK(buffet_frame_transfer_send(fa, &local, sizeof local) == NULL);   /* the stack */
    BT_CHECK(buffet_frame_transfer_send(fa, p, 2001) == NULL);       /* past what was allocated */
    BT_CHECK(buffet_frame_transfer_send(fa, p + 2000, 1) == NULL);
    BT_CHECK(buffet_frame_transfer_send(fa, first, 5000) == NULL);   /* past its chunk */
    BT_CHECK(buffet_frame_get_stats(fa).misuse == 6 && buffet_frame_get_stats(fa).transfers_sent == 0);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_FOREIGN) == 5);
    t = buffet_frame_transfer_send(fa, first + 1000, 2000);          /* a piece of an older chunk: fine */
    BT_CHECK(t != NULL);
    if (t) {
        BT_CHECK(buffet_frame_transfer_receive(t, &size) == first + 1000 && size == 2000);
        buffet_frame_transfer_release(t);
    }
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* The slow path is public (the inline fast path calls it): it must hold up on its own. */
static void test_frame_alloc_slow_direct(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, &l);
    unsigned char *p;
    BT_CHECK(buffet__frame_alloc_slow(NULL, 16, 16) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet__frame_alloc_slow(fa, 16, 16) == NULL);          /* outside a frame */
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(buffet__frame_alloc_slow(fa, 0, 16) == NULL);
    BT_CHECK(buffet__frame_alloc_slow(fa, 16, 3) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet__frame_alloc_slow(fa, SIZE_MAX, 16) == NULL);
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    p = (unsigned char *)buffet__frame_alloc_slow(fa, 100, 64);
    BT_CHECK(p != NULL && (uintptr_t)p % 64 == 0);
    if (p) memset(p, 1, 100);
    BT_CHECK(buffet_frame_alloc(fa, 8, 8) != NULL);                 /* the fast path carries on */
    BT_CHECK(buffet_frame_get_stats(fa).count == 2);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* Memory handed to another thread cannot be rolled back under it: the rollback is refused and
   nothing changes; a mark taken after the transfer still works. */
static void test_frame_rollback_over_transfer(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, &l);
    buffet_frame_mark before, after;
    buffet_frame_transfer *t;
    unsigned char *p, *q;
    size_t count;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    before = buffet_frame_checkpoint(fa);
    p = (unsigned char *)buffet_frame_alloc(fa, 64, 16);
    BT_CHECK(p != NULL);
    if (!p) goto out;
    tf_fill(p, 64, 3);
    t = buffet_frame_transfer_send(fa, p, 64);
    BT_CHECK(t != NULL);
    after = buffet_frame_checkpoint(fa);
    q = (unsigned char *)buffet_frame_alloc(fa, 64, 16);
    count = buffet_frame_get_stats(fa).count;
    BT_CHECK(buffet_frame_rollback(fa, before) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && buffet_frame_get_stats(fa).misuse == 1);
    BT_CHECK(buffet_frame_get_stats(fa).count == count);          /* unchanged */
    BT_CHECK(tf_intact(p, 64, 3));
    BT_CHECK(buffet_frame_rollback(fa, after) == BUFFET_OK);      /* q goes, p stays */
    BT_CHECK(buffet_frame_alloc(fa, 64, 16) == q);
    if (t) {
        BT_CHECK(buffet_frame_transfer_receive(t, NULL) == p);
        buffet_frame_transfer_release(t);
    }
out:
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* The arena goes away while transfers are out: the last receiver to let go frees the chunk
   (two transfers from one chunk, an oversized one, released on other threads). */
static void test_frame_transfer_after_destroy(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    unsigned char *p, *q, *big;
    tf_recv r[3];
    int i;
    memset(r, 0, sizeof r);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = (unsigned char *)buffet_frame_alloc(fa, 500, 16);
    q = (unsigned char *)buffet_frame_alloc(fa, 700, 16);
    big = (unsigned char *)buffet_frame_alloc(fa, 20000, 16);
    BT_CHECK(p && q && big);
    if (!p || !q || !big) goto out;
    tf_fill(p, 500, 1);
    tf_fill(q, 700, 2);
    tf_fill(big, 20000, 3);
    r[0].t = buffet_frame_transfer_send(fa, p, 500), r[0].size = 500, r[0].seed = 1;
    r[1].t = buffet_frame_transfer_send(fa, q, 700), r[1].size = 700, r[1].seed = 2;
    r[2].t = buffet_frame_transfer_send(fa, big, 20000), r[2].size = 20000, r[2].seed = 3;
    BT_CHECK(r[0].t && r[1].t && r[2].t);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    fa = NULL;
    BT_CHECK(tf_live(d) == 5);   /* two chunks and three handles wait for their receivers */
    for (i = 0; i < 3; i++)
        if (r[i].t) tf_receive_on_thread(&r[i]);
out:
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

#define TF_BARRIER_THREADS 4
#define TF_BARRIER_ROUNDS 400

typedef struct tf_barrier_run {
    buffet_frame_barrier barrier;
    unsigned arrived[TF_BARRIER_ROUNDS];
    unsigned trues[TF_BARRIER_ROUNDS];
    unsigned early;   /* a thread left a round before everyone arrived */
} tf_barrier_run;

static void *tf_barrier_thread(void *arg) {
    tf_barrier_run *run = (tf_barrier_run *)arg;
    int r;
    for (r = 0; r < TF_BARRIER_ROUNDS; r++) {
        __atomic_fetch_add(&run->arrived[r], 1u, __ATOMIC_SEQ_CST);
        if (buffet_frame_barrier_wait(&run->barrier)) __atomic_fetch_add(&run->trues[r], 1u, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&run->arrived[r], __ATOMIC_SEQ_CST) != TF_BARRIER_THREADS)
            __atomic_fetch_add(&run->early, 1u, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* n threads, many rounds: nobody leaves a round early and exactly one thread gets true. */
static void test_frame_barrier(void) {
    static tf_barrier_run run;
    pthread_t th[TF_BARRIER_THREADS];
    buffet_frame_barrier one;
    int i, bad = 0;
    BT_CHECK(buffet_frame_barrier_init(NULL, 2) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_barrier_init(&one, 0) == BUFFET_ERR_INVALID);
    BT_CHECK(!buffet_frame_barrier_wait(NULL));
    BT_CHECK(buffet_frame_barrier_init(&one, 1) == BUFFET_OK);
    BT_CHECK(buffet_frame_barrier_wait(&one) && buffet_frame_barrier_wait(&one));   /* alone: always last */
    buffet_frame_barrier_deinit(&one);
    BT_CHECK(!buffet_frame_barrier_wait(&one));                  /* after deinit: refused */
    buffet_frame_barrier_deinit(&one);
    buffet_frame_barrier_deinit(NULL);

    memset(&run, 0, sizeof run);
    BT_CHECK(buffet_frame_barrier_init(&run.barrier, TF_BARRIER_THREADS) == BUFFET_OK);
    for (i = 0; i < TF_BARRIER_THREADS; i++) BT_CHECK(pthread_create(&th[i], NULL, tf_barrier_thread, &run) == 0);
    for (i = 0; i < TF_BARRIER_THREADS; i++) BT_CHECK(pthread_join(th[i], NULL) == 0);
    for (i = 0; i < TF_BARRIER_ROUNDS; i++)
        if (run.trues[i] != 1 || run.arrived[i] != TF_BARRIER_THREADS) bad++;
    BT_CHECK(bad == 0 && run.early == 0);
    buffet_frame_barrier_deinit(&run.barrier);
}

/* The deliberate bad read, run in a child: frame memory read after the next frame began (one
   frame in flight: frame 1's memory is valid after its end, until frame 2 begins). */
static void tf_bad_frame_read(void) {
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    unsigned char *p;
    volatile unsigned char v;
    memset(&desc, 0, sizeof desc);
    desc.chunk_size = 4096;
    if (buffet_frame_create(&fa, &desc) != BUFFET_OK) return;
    buffet_frame_begin(fa);
    p = (unsigned char *)buffet_frame_alloc(fa, 64, 16);
    if (p) memset(p, 1, 64);
    buffet_frame_end(fa);
    if (p) v = ((volatile unsigned char *)p)[10];   /* after its end: still valid, not reported */
    buffet_frame_begin(fa);
    if (p) v = ((volatile unsigned char *)p)[10];   /* after the next begin: must be reported */
    (void)v;
    buffet_frame_end(fa);
    buffet_frame_destroy(fa);
}

/* Freed frame memory is poisoned: ASan and valgrind report a read of it; without them it reads
   back as 0xDD. It is freed when frame k+N begins, not when frame k (or k+N-1) ends. */
static void test_frame_use_after_end(void) {
    if (tf_mode_is("asan")) BT_CHECK(BUFFET_TRACK_ASAN);
    if (tf_mode_is("valgrind")) BT_CHECK(tf_on_valgrind());
    if (tf_may_read_freed()) {
        buffet_debug *d = tf_debug();
        buffet_frame_arena *fa = tf_arena(d, 4096, 2, NULL);
        unsigned char *p;
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        p = (unsigned char *)buffet_frame_alloc(fa, 300, 16);
        BT_CHECK(p != NULL);
        if (p) memset(p, 1, 300);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        BT_CHECK(p && tf_all_bytes(p, 300, 1));                  /* 2 in flight: alive after its end */
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        BT_CHECK(p && tf_all_bytes(p, 300, 1));                  /* and after frame 2's end */
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        BT_CHECK(p && tf_all_bytes(p, 300, 0xDD));               /* frame 3 began: gone */
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        buffet_frame_destroy(fa);
        tf_debug_done(d);
    } else {
        tf_expect_caught(tf_bad_frame_read, "use after the next frame_begin");
    }
}

/* ---------------------------------------------------------------------------------------------
   Scopes. */

/* An allocator that records the order in which a scope frees its allocations (blocks[i] is the
   user pointer of allocation i; its free is event 100 + i), passing everything to parent.
   Deferred actions record their own numbers in the same list. It also keeps the site of the
   latest allocation. */
typedef struct tf_rec {
    buffet_allocator parent;
    void *blocks[8];
    int nblocks;
    int events[32];
    int n;
    buffet_site site;
} tf_rec;

static void tf_rec_event(tf_rec *r, int ev) {
    if (r->n < 32) r->events[r->n++] = ev;
}
static void *tf_rec_alloc(void *self, size_t size, size_t align, buffet_site site) {
    ((tf_rec *)self)->site = site;
    return buffet_alloc(((tf_rec *)self)->parent, size, align, site);
}
static void tf_rec_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    tf_rec *r = (tf_rec *)self;
    int i;
    for (i = 0; i < r->nblocks; i++)   /* the scope frees the block its entry heads */
        if ((unsigned char *)r->blocks[i] > (unsigned char *)ptr && (unsigned char *)r->blocks[i] < (unsigned char *)ptr + size)
            tf_rec_event(r, 100 + i);
    buffet_free(r->parent, ptr, size, align, site);
}
static const buffet_allocator_vtable tf_rec_vtable = {tf_rec_alloc, NULL, tf_rec_free, NULL, NULL, NULL};
/* The same, promising thread safety (for pools and transfers; used from one thread here). */
static uint32_t tf_rec_contract(const void *self) {
    (void)self;
    return BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE;
}
static const buffet_allocator_vtable tf_rec_ts_vtable = {tf_rec_alloc, NULL, tf_rec_free, NULL, tf_rec_contract, NULL};

typedef struct tf_defer { tf_rec *rec; int id; int *runs; } tf_defer;
static void tf_deferred(void *arg) {
    tf_defer *df = (tf_defer *)arg;
    if (df->rec) tf_rec_event(df->rec, df->id);
    if (df->runs) (*df->runs)++;
}

/* The end runs the deferred actions newest first, all before any memory goes (an action may
   use any of the scope's memory), then gives back the large allocations (newest first), then
   the blocks. Small allocations share blocks; a large or over-aligned one has its own. */
static void test_scope_order(void) {
    buffet_debug *d = tf_debug();
    tf_rec rec;
    buffet_allocator ra;
    buffet_scope s;
    tf_defer df[3];
    int i;
    memset(&rec, 0, sizeof rec);
    rec.parent = buffet_debug_allocator(d);
    ra.self = &rec;
    ra.vtable = &tf_rec_vtable;
    for (i = 0; i < 3; i++) df[i].rec = &rec, df[i].id = i + 1, df[i].runs = NULL;
    BT_CHECK(tf_scope_begin(&s, ra, NULL, NULL) == BUFFET_OK);
    rec.blocks[rec.nblocks++] = buffet_scope_alloc(&s, 32, 16);
    BT_CHECK(buffet_scope_defer(&s, tf_deferred, &df[0]) == BUFFET_OK);
    rec.blocks[rec.nblocks++] = buffet_scope_alloc(&s, 64, 16);
    BT_CHECK(buffet_scope_defer(&s, tf_deferred, &df[1]) == BUFFET_OK);
    BT_CHECK(buffet_scope_defer(&s, tf_deferred, &df[2]) == BUFFET_OK);
    rec.blocks[rec.nblocks++] = buffet_scope_alloc(&s, 16, 4096);    /* over-aligned: large */
    rec.blocks[rec.nblocks++] = buffet_scope_alloc(&s, 10000, 8);    /* large */
    rec.blocks[rec.nblocks++] = buffet_scope_alloc(&s, 7, 64);       /* in the block, 64-aligned */
    BT_CHECK(rec.blocks[0] && rec.blocks[1] && rec.blocks[2] && rec.blocks[3] && rec.blocks[4]);
    BT_CHECK(tf_aligned(rec.blocks[0], 16) && tf_aligned(rec.blocks[1], 16) && tf_aligned(rec.blocks[2], 4096));
    BT_CHECK(tf_aligned(rec.blocks[3], 8) && tf_aligned(rec.blocks[4], 64));
    BT_CHECK(rec.blocks[1] == (unsigned char *)rec.blocks[0] + 32 + 32);   /* a bump past the first and an action */
    for (i = 0; i < 5; i++)
        if (rec.blocks[i]) memset(rec.blocks[i], i, 7);
    if (rec.blocks[3]) memset(rec.blocks[3], 3, 10000);
    BT_CHECK(s.count == 5 && s.bytes == 32 + 64 + 16 + 10000 + 7 && s.active);
    BT_CHECK(tf_live(d) == 3);   /* one block, two large allocations */
    BT_CHECK(rec.n == 0);        /* nothing runs before the end */
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
    /* actions 3, 2, 1; then the large ones, newest first (103, 102); then the block (100, 101, 104) */
    BT_CHECK(rec.n == 8 && rec.events[0] == 3 && rec.events[1] == 2 && rec.events[2] == 1);
    BT_CHECK(rec.n == 8 && rec.events[3] == 103 && rec.events[4] == 102);
    BT_CHECK(rec.n == 8 && rec.events[5] == 100 && rec.events[6] == 101 && rec.events[7] == 104);
    if (rec.n != 8 || rec.events[0] != 3 || rec.events[3] != 103)
        fprintf(stderr, "  order (%d): %d %d %d %d %d %d %d %d\n", rec.n, rec.events[0], rec.events[1], rec.events[2], rec.events[3],
                rec.events[4], rec.events[5], rec.events[6], rec.events[7]);
    BT_CHECK(!s.active && s.count == 0 && s.bytes == 0 && tf_live(d) == 0);
    tf_debug_done(d);
}

/* Nesting: ending the outer scope ends the inner ones first (innermost first); a scope has at
   most one active inner; begin inside an ended scope is refused. */
static void test_scope_nesting(void) {
    buffet_debug *d = tf_debug();
    buffet_allocator a = buffet_debug_allocator(d);
    buffet_scope outer, inner, innermost, other;
    tf_rec rec;
    tf_defer df[3];
    bt_log l;
    static const int expect[] = {3, 2, 1};
    int i;
    memset(&rec, 0, sizeof rec);
    for (i = 0; i < 3; i++) df[i].rec = &rec, df[i].id = i + 1, df[i].runs = NULL;
    BT_CHECK(tf_scope_begin(NULL, a, NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(tf_scope_begin(&outer, a, NULL, &l) == BUFFET_OK);
    BT_CHECK(tf_scope_begin(&outer, a, &outer, NULL) == BUFFET_ERR_INVALID);   /* its own outer */
    BT_CHECK(buffet_scope_defer(&outer, tf_deferred, &df[0]) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&outer, 100, 16) != NULL);
    BT_CHECK(tf_scope_begin(&inner, a, &outer, NULL) == BUFFET_OK);
    BT_CHECK(outer.inner == &inner && inner.outer == &outer);
    BT_CHECK(tf_scope_begin(&other, a, &outer, NULL) == BUFFET_ERR_STATE);    /* outer has an inner */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1);
    BT_CHECK(buffet_scope_alloc(&inner, 200, 16) != NULL);
    BT_CHECK(buffet_scope_defer(&inner, tf_deferred, &df[1]) == BUFFET_OK);
    BT_CHECK(tf_scope_begin(&innermost, a, &inner, NULL) == BUFFET_OK);
    BT_CHECK(buffet_scope_defer(&innermost, tf_deferred, &df[2]) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&innermost, 300, 16) != NULL);
    BT_CHECK(buffet_scope_end(&outer) == BUFFET_OK);
    BT_CHECK(rec.n == 3 && memcmp(rec.events, expect, sizeof expect) == 0);
    BT_CHECK(!outer.active && !inner.active && !innermost.active && outer.inner == NULL);
    BT_CHECK(buffet_scope_end(&inner) == BUFFET_ERR_STATE);                 /* already ended */
    BT_CHECK(tf_scope_begin(&other, a, &outer, NULL) == BUFFET_ERR_STATE);    /* outer has ended */
    BT_CHECK(tf_live(d) == 0);

    /* an inner scope ended on its own frees its slot in the outer one */
    BT_CHECK(tf_scope_begin(&outer, a, NULL, NULL) == BUFFET_OK);
    BT_CHECK(tf_scope_begin(&inner, a, &outer, NULL) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&inner, 10, 8) != NULL);
    BT_CHECK(buffet_scope_end(&inner) == BUFFET_OK && outer.inner == NULL);
    BT_CHECK(tf_scope_begin(&other, a, &outer, NULL) == BUFFET_OK);
    BT_CHECK(buffet_scope_end(&outer) == BUFFET_OK && !other.active);
    tf_debug_done(d);
}

/* Misuse and bad input: refused with the documented code, nothing allocated. */
static void test_scope_errors(void) {
    buffet_debug *d = tf_debug();
    buffet_scope s;
    bt_log l;
    int runs = 0;
    tf_defer df;
    df.rec = NULL;
    df.id = 1;
    df.runs = &runs;
    BT_CHECK(tf_scope_begin(&s, buffet_debug_allocator(d), NULL, &l) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&s, 0, 16) == NULL);
    BT_CHECK(buffet_scope_alloc(&s, 16, 0) == NULL);
    BT_CHECK(buffet_scope_alloc(&s, 16, 3) == NULL);
    BT_CHECK(buffet_scope_alloc(&s, SIZE_MAX, 16) == NULL);       /* the entry header would overflow it */
    BT_CHECK(buffet_scope_alloc(&s, SIZE_MAX - 8, 64) == NULL);
    BT_CHECK(buffet_scope_alloc(NULL, 16, 16) == NULL);
    BT_CHECK(buffet_scope_defer(&s, NULL, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_scope_defer(NULL, tf_deferred, &df) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_scope_end(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(s.count == 0 && tf_live(d) == 0);
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&s, 16, 16) == NULL);             /* after the end */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1);
    BT_CHECK(buffet_scope_defer(&s, tf_deferred, &df) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 2);               /* said why */
    BT_CHECK(buffet_scope_end(&s) == BUFFET_ERR_STATE);
    BT_CHECK(runs == 0 && tf_live(d) == 0);
    tf_debug_done(d);
}

/* The scope as an allocator: a free of the newest allocation releases it at once, any other
   waits for the end; a zero parent is the heap. */
static void test_scope_allocator(void) {
    buffet_debug *d = tf_debug();
    buffet_scope s, h;
    buffet_allocator al;
    int runs = 0;
    tf_defer df;
    void *p, *q, *r;
    df.rec = NULL;
    df.id = 1;
    df.runs = &runs;
    BT_CHECK(buffet_scope_allocator(NULL).vtable == buffet_null_allocator().vtable);
    BT_CHECK(tf_scope_begin(&s, buffet_debug_allocator(d), NULL, NULL) == BUFFET_OK);
    al = buffet_scope_allocator(&s);
    p = buffet_alloc(al, 100, 16, BUFFET_SITE);
    BT_CHECK(p != NULL && tf_live(d) == 1 && s.count == 1 && s.bytes == 100);   /* the first block */
    buffet_free(al, p, 100, 16, BUFFET_SITE);                   /* newest: its bytes come back now */
    BT_CHECK(tf_live(d) == 1 && s.count == 0 && s.bytes == 0);
    q = buffet_alloc(al, 50, 16, BUFFET_SITE);
    BT_CHECK(q == p);                                           /* ...and are used again */
    buffet_free(al, (char *)q + 8, 42, 16, BUFFET_SITE);        /* a pointer into it: nothing moves */
    BT_CHECK(s.count == 1 && s.bytes == 50);
    r = buffet_alloc(al, 60, 16, BUFFET_SITE);
    BT_CHECK(r == (char *)q + 64 && ((uintptr_t)r & 15) == 0);
    BT_CHECK(q && r);
    buffet_free(al, q, 50, 16, BUFFET_SITE);                    /* not the newest: at the end */
    BT_CHECK(s.count == 2);
    BT_CHECK(buffet_scope_defer(&s, tf_deferred, &df) == BUFFET_OK);
    buffet_free(al, r, 60, 16, BUFFET_SITE);                    /* a deferred action is newer */
    BT_CHECK(s.count == 2 && tf_live(d) == 1);
    p = buffet_alloc(al, 50000, 16, BUFFET_SITE);               /* large: a parent allocation of its own */
    BT_CHECK(p != NULL && tf_live(d) == 2 && s.count == 3);
    q = buffet_alloc(al, 40000, 16, BUFFET_SITE);
    BT_CHECK(q != NULL && tf_live(d) == 3 && s.count == 4);
    buffet_free(al, p, 50000, 16, BUFFET_SITE);                 /* a large one goes at once, newest or not */
    BT_CHECK(tf_live(d) == 2 && s.count == 3 && s.bytes == 50 + 60 + 40000);
    BT_CHECK(!buffet_resize(al, r, 60, 70, 16));                /* no resize */
    BT_CHECK(BUFFET_NEW(al, tf_vec3) != NULL && tf_live(d) == 2);
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
    BT_CHECK(runs == 1 && tf_live(d) == 0);
    BT_CHECK(buffet_alloc(al, 16, 16, BUFFET_SITE) == NULL);   /* ended */
    /* a zero parent: the heap */
    BT_CHECK(tf_scope_begin(&h, buffet_heap(), NULL, NULL) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&h, 1000, 64) != NULL && buffet_scope_end(&h) == BUFFET_OK);
    memset(&al, 0, sizeof al);
    BT_CHECK(tf_scope_begin(&h, al, NULL, NULL) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&h, 1000, 64) != NULL && buffet_scope_end(&h) == BUFFET_OK);
    tf_debug_done(d);
}

/* A scope's parent must keep blocks until they are freed: a frame's allocator and another
   scope's are refused (BUFFET_ERR_LIFETIME, logged; nest scopes with `outer` instead), and
   the refused scope is left inactive; a NULL desc is BUFFET_ERR_INVALID. */
static void test_scope_parents(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_scope outer, s;
    bt_log l;
    BT_CHECK(buffet_scope_begin(&s, NULL) == BUFFET_ERR_INVALID);
    memset(&s, 0, sizeof s);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    BT_CHECK(tf_scope_begin(&s, buffet_frame_allocator(fa), NULL, &l) == BUFFET_ERR_LIFETIME);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LIFETIME) == 1 && !s.active);
    BT_CHECK(buffet_scope_alloc(&s, 16, 16) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(tf_scope_begin(&outer, buffet_debug_allocator(d), NULL, NULL) == BUFFET_OK);
    BT_CHECK(tf_scope_begin(&s, buffet_scope_allocator(&outer), NULL, &l) == BUFFET_ERR_LIFETIME);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LIFETIME) == 1 && !s.active && outer.count == 0);
    /* the same scope nested with `outer` is fine, and a zero or heap parent as before */
    BT_CHECK(tf_scope_begin(&s, buffet_debug_allocator(d), &outer, NULL) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&s, 16, 16) != NULL);
    BT_CHECK(buffet_scope_end(&outer) == BUFFET_OK && !s.active);
    BT_CHECK(buffet_frame_get_stats(fa).count == 0);            /* the frame was never asked */
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    tf_debug_done(d);
}

/* For n = 1, 2, ...: the nth request to the parent fails (then, with `after`, every one after
   it). A refused block is asked again at just the size needed, so a user sees a failure only
   when that fails too: the allocation returns NULL or the defer BUFFET_ERR_NOMEM (its action
   never runs), with the parent's reason, logged; the scope goes on, and its end gives back
   everything it got. Small, block-sized and large requests. */
static void test_scope_failing_parent(void) {
    buffet_debug *d = tf_debug();
    static const size_t sizes[] = {100, 3000, 20000, 5000, 16, 9000, 200};
    uint64_t n;
    int after;
    for (after = 0; after < 2; after++) {
        bool clean = false;
        for (n = 1; n <= 100 && !clean; n++) {
            buffet_failing f;
            buffet_scope s;
            int runs = 0, deferred = 0;
            unsigned failed = 0, i;
            tf_defer df;
            bt_log l;
            df.rec = NULL;
            df.id = 1;
            df.runs = &runs;
            buffet_failing_init(&f, buffet_debug_allocator(d), n, after == 1);
            BT_CHECK(tf_scope_begin(&s, buffet_failing_allocator(&f), NULL, &l) == BUFFET_OK);
            for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
                buffet_result r;
                void *p = buffet_scope_alloc(&s, sizes[i], 16);
                if (p) {
                    memset(p, 0, sizes[i]);
                } else {
                    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);   /* the parent's reason */
                    failed++;
                }
                r = buffet_scope_defer(&s, tf_deferred, &df);
                if (r == BUFFET_OK) {
                    deferred++;
                } else {
                    BT_CHECK(r == BUFFET_ERR_NOMEM);
                    failed++;
                }
            }
            BT_CHECK(failed <= f.failures);
            BT_CHECK(bt_logged(&l, BUFFET_ERR_NOMEM) >= failed);        /* every refusal said why */
            if (after) BT_CHECK(f.failures == 0 || failed > 0);        /* nothing more comes once the parent is out */
            BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
            BT_CHECK(runs == deferred);
            BT_CHECK(tf_live(d) == 0);
            clean = f.failures == 0;
        }
        BT_CHECK(clean && n > 3 && n < 100);
    }
    tf_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Object pools. */

/* Runs fn in a fork()ed child, so that a crash fails one test instead of ending the run. The
   child's BT_CHECK failures count; its output is shown when it fails. Returns: it passed. */
static bool tf_run_in_child(void (*fn)(void), const char *what) {
    static char text[1 << 14];
    char sink[4096];
    size_t len = 0;
    ssize_t n;
    int fds[2], status = 0;
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0) return false;
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        bt_cur_failed = 0;
        fn();
        _exit(bt_cur_failed ? 1 : 0);
    }
    close(fds[1]);
    for (;;) {
        n = read(fds[0], len < sizeof text - 1 ? text + len : sink,
                 len < sizeof text - 1 ? sizeof text - 1 - len : sizeof sink);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (len < sizeof text - 1) len += (size_t)n;
    }
    text[len] = '\0';
    close(fds[0]);
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    if (WIFSIGNALED(status)) fprintf(stderr, "FAIL %s: %s: the child died of signal %d\n", bt_cur, what, WTERMSIG(status));
    else fprintf(stderr, "FAIL %s: %s: the child exited with %d\n", bt_cur, what, WEXITSTATUS(status));
    fprintf(stderr, "%.1500s%s\n", text, len > 1500 ? "\n[...]" : "");
    return false;
}

static buffet_pool *tf_pool(buffet_debug *d, size_t obj_size, size_t slab_objs, size_t max, int checks, bt_log *l) {
    buffet_pool_desc desc;
    buffet_pool *p = NULL;
    memset(&desc, 0, sizeof desc);
    desc.obj_size = obj_size;
    desc.slab_objs = slab_objs;
    desc.max = max;
    desc.checks = checks;
    desc.parent = buffet_debug_allocator(d);
    if (l) desc.log = bt_logger(l);
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_OK && p != NULL);
    return p;
}

/* After every cache is flushed each object is back in the store, and every get had a put. */
static void tf_pool_conserved(buffet_pool *p) {
    buffet_pool_stats st = buffet_pool_get_stats(p);
    BT_CHECK(st.in_store == st.created && st.in_use == 0 && st.gets == st.puts);
}

/* Every create error, and the defaults. */
static void test_pool_create(void) {
    buffet_debug *d = tf_debug();
    buffet_pool_desc desc;
    buffet_pool *p = NULL;
    buffet_pool_stats st;
    bt_log l;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(d);
    desc.log = bt_logger(&l);
    BT_CHECK(buffet_pool_create(NULL, &desc) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pool_create(&p, NULL) == BUFFET_ERR_INVALID && p == NULL);
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_INVALID && p == NULL);   /* obj_size 0 */
    desc.obj_size = 64;
    desc.obj_align = 3;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_INVALID && p == NULL);
    desc.obj_align = 6;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_INVALID && p == NULL);
    desc.obj_align = 8192;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_INVALID && p == NULL);
    desc.obj_align = 0;
    desc.initial = 10;
    desc.max = 5;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_INVALID && p == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 4);
    desc.initial = desc.max = 0;
    desc.obj_size = SIZE_MAX;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_OVERFLOW && p == NULL);
    desc.obj_size = SIZE_MAX - 3;
    desc.obj_align = 16;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_OVERFLOW && p == NULL);
    desc.obj_size = (size_t)1 << 41;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_OVERFLOW && p == NULL);
    /* at most 2^32 objects, whether max or initial asks for more */
    desc.obj_size = 64;
    desc.max = ((size_t)1 << 32) + 1;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_INVALID && p == NULL);
    desc.max = 0;
    desc.initial = ((size_t)1 << 32) + 1;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_INVALID && p == NULL);
    desc.initial = 0;
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 6);
    BT_CHECK(tf_live(d) == 0);
    buffet_pool_destroy(NULL);

    /* defaults: alignment from the size, one slab made at create */
    desc.obj_align = 0;
    desc.obj_size = 12;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_OK && p != NULL);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.obj_size == 12 && st.stride == 12 && st.created >= 8 && st.slabs == 1 && st.max == ((size_t)1 << 32));
    BT_CHECK(st.in_store == st.created && st.gets == 0 && st.puts == 0 && st.caches == 0);
    buffet_pool_destroy(p);
    desc.obj_size = 64;
    desc.initial = 100;
    desc.slab_objs = 16;
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_OK && p != NULL);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.created >= 100 && st.stride == 64);
    buffet_pool_destroy(p);
    desc.initial = desc.max = 7;   /* initial == max is allowed */
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_OK && p != NULL);
    BT_CHECK(buffet_pool_get_stats(p).created == 7);
    buffet_pool_destroy(p);
    desc.initial = 0;
    desc.max = (size_t)1 << 32;    /* the largest max */
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_OK && p != NULL);
    BT_CHECK(buffet_pool_get_stats(p).max == ((size_t)1 << 32));
    buffet_pool_destroy(p);
    tf_debug_done(d);
}

/* The pool grows from any thread and keeps its slabs until it goes: a parent that serves one
   thread is refused (BUFFET_ERR_THREAD), one whose blocks die with a frame or a scope too
   (BUFFET_ERR_LIFETIME); each is logged and nothing is allocated. */
static void test_pool_create_parents(void) {
    static unsigned char mem[1 << 16];
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_pool_desc desc;
    buffet_pool *p = NULL;
    buffet_fixed fx;
    buffet_fixed_desc fd;
    buffet_scope sc;
    size_t live;
    bt_log l;
    memset(&fd, 0, sizeof fd);
    fd.mem = mem;
    fd.cap = sizeof mem;
    BT_CHECK(buffet_fixed_init(&fx, &fd) == BUFFET_OK);
    memset(&desc, 0, sizeof desc);
    desc.obj_size = 64;
    desc.log = bt_logger(&l);
    desc.parent = buffet_fixed_allocator(&fx);
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_THREAD && p == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_THREAD) == 1 && fx.used == 0);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    live = tf_live(d);
    desc.parent = buffet_frame_allocator(fa);
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_LIFETIME && p == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LIFETIME) == 1 && buffet_frame_get_stats(fa).bytes == 0);
    BT_CHECK(tf_scope_begin(&sc, buffet_debug_allocator(d), NULL, NULL) == BUFFET_OK);
    desc.parent = buffet_scope_allocator(&sc);
    BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_ERR_LIFETIME && p == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_LIFETIME) == 2 && sc.count == 0);
    BT_CHECK(buffet_scope_end(&sc) == BUFFET_OK);
    BT_CHECK(tf_live(d) == live && l.total == 3);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
    buffet_fixed_deinit(&fx);
    tf_debug_done(d);
}

/* get/put through a cache, with checks on and off: distinct, aligned, non-overlapping objects;
   conservation after a flush; the cache's documented limits (cap 0: 64, at most 512). */
static void tf_pool_get_put(int checks) {
    buffet_debug *d = tf_debug();
    buffet_pool *p = tf_pool(d, 64, 32, 0, checks, NULL);
    buffet_pool_cache *c = NULL, *c2 = NULL;
    static void *objs[200];
    int i, j, bad = 0;
    size_t live;
    void *o;
    if (!p) goto out;
    live = tf_live(d);
    BT_CHECK(buffet_pool_cache_create(NULL, p, 0) == BUFFET_ERR_INVALID);
    c = (buffet_pool_cache *)&c;
    BT_CHECK(buffet_pool_cache_create(&c, NULL, 0) == BUFFET_ERR_INVALID && c == NULL);
    BT_CHECK(buffet_pool_cache_create(&c, p, 513) == BUFFET_ERR_INVALID && c == NULL);
    BT_CHECK(buffet_pool_cache_create(&c, p, UINT32_MAX) == BUFFET_ERR_INVALID && c == NULL);
    BT_CHECK(tf_live(d) == live && buffet_pool_get_stats(p).caches == 0);   /* nothing allocated */
    BT_CHECK(buffet_pool_cache_create(&c, p, 512) == BUFFET_OK && c && c->cap == 512);
    BT_CHECK(buffet_pool_cache_create(&c2, p, 0) == BUFFET_OK && c2 && c2->cap == 64);
    BT_CHECK(buffet_pool_get_stats(p).caches == 2 && tf_live(d) == live + 2);
    buffet_pool_cache_destroy(c);
    buffet_pool_cache_destroy(c2);
    buffet_pool_cache_destroy(NULL);
    BT_CHECK(buffet_pool_get_stats(p).caches == 0 && tf_live(d) == live);
    BT_CHECK(buffet_pool_cache_create(&c, p, 16) == BUFFET_OK && c != NULL);
    if (!c) goto out_pool;
    BT_CHECK(c->cap == 16 && c->count == 0 && c->checks == (checks >= 0) && c->pool == p);
    for (i = 0; i < 200; i++) {
        objs[i] = buffet_pool_get(c);
        if (!objs[i] || !tf_aligned(objs[i], 16)) bad++;
        else tf_fill(objs[i], 64, (unsigned)i);
    }
    BT_CHECK(bad == 0);
    for (i = 0; i < 200 && !bad; i++) {
        if (!tf_intact(objs[i], 64, (unsigned)i)) bad++;
        for (j = 0; j < i; j++)
            if (objs[i] == objs[j]) bad++;
    }
    BT_CHECK(bad == 0);
    for (i = 0; i < 200; i++)
        if (objs[i] && buffet_pool_put(c, objs[i]) != BUFFET_OK) bad++;
    BT_CHECK(bad == 0);
    o = buffet_pool_get(c);                  /* last in, first out: warm in cache */
    BT_CHECK(o == objs[199]);
    BT_CHECK(buffet_pool_put(c, o) == BUFFET_OK);
    BT_CHECK(buffet_pool_put(c, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet__pool_put_slow(NULL, o, BUFFET_SITE) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet__pool_get_slow(NULL) == NULL);
    buffet_pool_cache_flush(c);
    buffet_pool_cache_flush(NULL);
    BT_CHECK(c->count == 0);
    tf_pool_conserved(p);
    BT_CHECK(buffet_pool_get_stats(p).gets == 201 && buffet_pool_get_stats(p).created >= 200);
    o = buffet_pool_get(c);                  /* the cache works on after a flush (the store is a */
    BT_CHECK(o != NULL);                     /* FIFO ring: not necessarily the object flushed last) */
    if (o) BT_CHECK(buffet_pool_put(c, o) == BUFFET_OK);
    buffet_pool_cache_destroy(c);            /* gives its objects back */
    tf_pool_conserved(p);
    BT_CHECK(buffet_pool_get_stats(p).caches == 0 && buffet_pool_get_stats(p).gets == 202);
out_pool:
    buffet_pool_destroy(p);
out:
    tf_debug_done(d);
}

static void tf_pool_get_put_fast(void) { tf_pool_get_put(-1); }

static void test_pool_get_put(void) {
    tf_pool_get_put(0);    /* checks on (BUFFET_DEBUG) */
    /* Checks off: the inline fast paths, which must keep the ASan/valgrind tracking too (an
       object handed out is addressable, one put back is poisoned). In a child, so that a
       sanitizer abort there fails this test alone instead of ending the run. */
    BT_CHECK(tf_run_in_child(tf_pool_get_put_fast, "get/put with checks off"));
}

/* The pool grows a slab at a time up to max, then gets fail (NULL, counted, logged); objects
   put back are handed out again without growth. */
static void test_pool_growth(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_pool *p = tf_pool(d, 32, 8, 20, 0, &l);
    buffet_pool_cache *c = NULL;
    void *objs[32], *o;
    buffet_pool_stats st;
    int n = 0, i;
    if (!p) goto out;
    BT_CHECK(buffet_pool_get_stats(p).created == 8);   /* one slab at create */
    BT_CHECK(buffet_pool_cache_create(&c, p, 4) == BUFFET_OK);
    while (n < 32 && (objs[n] = buffet_pool_get(c)) != NULL) n++;
    BT_CHECK(n == 20);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.created == 20 && st.slabs == 3 && st.max == 20 && st.failures == 1);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 1);
    BT_CHECK(buffet_pool_get_shared(p) == NULL);
    BT_CHECK(buffet_pool_get_bulk(c, &o, 1) == 0);
    BT_CHECK(buffet_pool_get_stats(p).failures == 3);
    for (i = 0; i < n; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
    for (i = 0; i < n; i++) BT_CHECK((objs[i] = buffet_pool_get(c)) != NULL);   /* again: no growth */
    BT_CHECK(buffet_pool_get_stats(p).created == 20 && buffet_pool_get_stats(p).slabs == 3);
    for (i = 0; i < n; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
    buffet_pool_cache_flush(c);
    tf_pool_conserved(p);
    buffet_pool_cache_destroy(c);
    buffet_pool_destroy(p);
out:
    tf_debug_done(d);
}

/* Bulk get is all or nothing at max; bulk put sends back everything it can and reports the
   bad pointers; both work with checks off (fast paths) too. */
static void test_pool_bulk(void) {
    buffet_debug *d = tf_debug();
    buffet_pool *p = tf_pool(d, 64, 10, 50, 0, NULL);
    buffet_pool *q = tf_pool(d, 64, 10, 0, -1, NULL);
    buffet_pool_cache *c = NULL, *cq = NULL;
    void *objs[64], *mixed[4];
    int local = 0, i, j, bad = 0;
    if (!p || !q) goto out;
    BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_OK && buffet_pool_cache_create(&cq, q, 64) == BUFFET_OK);
    BT_CHECK(buffet_pool_get_bulk(c, objs, 30) == 30);
    BT_CHECK(buffet_pool_get_bulk(c, objs + 30, 21) == 0);      /* only 20 left: nothing taken */
    BT_CHECK(buffet_pool_get_stats(p).failures == 1);
    BT_CHECK(buffet_pool_get_bulk(c, objs + 30, 20) == 20);
    BT_CHECK(buffet_pool_get_bulk(c, objs + 50, 1) == 0);
    for (i = 0; i < 50; i++) {
        if (!tf_aligned(objs[i], 16)) bad++;
        for (j = 0; j < i; j++)
            if (objs[i] == objs[j]) bad++;
        tf_fill(objs[i], 64, (unsigned)i);
    }
    for (i = 0; i < 50; i++)
        if (!tf_intact(objs[i], 64, (unsigned)i)) bad++;
    BT_CHECK(bad == 0);
    BT_CHECK(buffet_pool_get_bulk(c, objs, 0) == 0 && buffet_pool_get_bulk(c, NULL, 2) == 0);
    BT_CHECK(buffet_pool_get_bulk(NULL, objs, 2) == 0);
    BT_CHECK(buffet_pool_put_bulk(c, objs, 50) == BUFFET_OK);
    BT_CHECK(buffet_pool_put_bulk(c, NULL, 0) == BUFFET_OK);
    BT_CHECK(buffet_pool_put_bulk(c, NULL, 2) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pool_put_bulk(NULL, objs, 2) == BUFFET_ERR_INVALID);
    /* a bad pointer among good ones: the good ones still go back */
    BT_CHECK(buffet_pool_get_bulk(c, mixed, 3) == 3);
    mixed[3] = mixed[2];
    mixed[2] = &local;
    BT_CHECK(buffet_pool_put_bulk(c, mixed, 4) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_pool_get_bulk(c, mixed, 2) == 2);
    mixed[2] = mixed[1];
    mixed[1] = NULL;
    BT_CHECK(buffet_pool_put_bulk(c, mixed, 3) == BUFFET_ERR_INVALID);   /* NULL: skipped */
    buffet_pool_cache_flush(c);
    tf_pool_conserved(p);
    BT_CHECK(buffet_pool_get_stats(p).gets == 55 && buffet_pool_get_stats(p).foreign_puts == 1);

    /* checks off: from the store, then from and to the cache without a lock */
    BT_CHECK(buffet_pool_get_bulk(cq, objs, 10) == 10);
    BT_CHECK(buffet_pool_put_bulk(cq, objs, 10) == BUFFET_OK && cq->count == 10);
    BT_CHECK(buffet_pool_get_bulk(cq, objs, 5) == 5 && cq->count == 5);
    for (i = 0; i < 5; i++) tf_fill(objs[i], 64, (unsigned)i);
    BT_CHECK(buffet_pool_put_bulk(cq, objs, 5) == BUFFET_OK);
    buffet_pool_cache_flush(cq);
    tf_pool_conserved(q);
    buffet_pool_cache_destroy(cq);
    buffet_pool_cache_destroy(c);
    buffet_pool_destroy(q);
    buffet_pool_destroy(p);
out:
    tf_debug_done(d);
}

/* Bulk put with checks off and a NULL among the objects: documented as "the bad ones are
   skipped; the rest go back", so BUFFET_ERR_INVALID and every other object back in the pool. */
static void tf_put_bulk_null_fast(void) {
    buffet_debug *d = tf_debug();
    buffet_pool *p = tf_pool(d, 64, 10, 0, -1, NULL);
    buffet_pool_cache *c = NULL;
    void *objs[3];
    if (!p) return;
    BT_CHECK(buffet_pool_cache_create(&c, p, 64) == BUFFET_OK);
    BT_CHECK(buffet_pool_get_bulk(c, objs, 2) == 2);
    objs[2] = objs[1];
    objs[1] = NULL;
    BT_CHECK(buffet_pool_put_bulk(c, objs, 3) == BUFFET_ERR_INVALID);
    buffet_pool_cache_flush(c);
    tf_pool_conserved(p);
    buffet_pool_cache_destroy(c);
    buffet_pool_destroy(p);
    tf_debug_done(d);
}

static void test_pool_put_bulk_null(void) {
    /* In a child: buffet_frame.h as first committed recursed forever here (stack overflow);
       a crash must not take the other tests with it. */
    BT_CHECK(tf_run_in_child(tf_put_bulk_null_fast, "put_bulk with a NULL, checks off"));
}

/* get_shared / put_shared go straight to the store, from any thread, with the same checks. */
static void test_pool_shared(void) {
    buffet_debug *d = tf_debug();
    buffet_pool *p = tf_pool(d, 40, 8, 0, 0, NULL);
    void *o, *o2;
    int local = 0;
    buffet_pool_stats st;
    if (!p) goto out;
    o = buffet_pool_get_shared(p);
    o2 = buffet_pool_get_shared(p);
    BT_CHECK(o && o2 && o != o2 && tf_aligned(o, 8));
    if (!o || !o2) goto out_pool;
    tf_fill(o, 40, 1);
    tf_fill(o2, 40, 2);
    BT_CHECK(tf_intact(o, 40, 1) && tf_intact(o2, 40, 2));
    BT_CHECK(buffet_pool_put_shared(p, o) == BUFFET_OK);
    BT_CHECK(buffet_pool_put_shared(p, o) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_pool_put_shared(p, &local) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_pool_put_shared(p, NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pool_put_shared(NULL, o2) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_pool_get_shared(NULL) == NULL);
    BT_CHECK(buffet_pool_put_shared(p, o2) == BUFFET_OK);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.gets == 2 && st.puts == 2 && st.double_puts == 1 && st.foreign_puts == 1);
    tf_pool_conserved(p);
out_pool:
    buffet_pool_destroy(p);
out:
    tf_debug_done(d);
}

/* A cache as an allocator: requests up to obj_size and obj_align, NULL for anything else
   (BUFFET_ERR_TOO_LARGE); blocks live until freed and may be freed on any thread. */
static void test_pool_allocator(void) {
    buffet_debug *d = tf_debug();
    buffet_pool *p = tf_pool(d, 48, 8, 0, 0, NULL);
    buffet_pool_cache *c = NULL, zero;
    buffet_allocator al;
    void *a, *b;
    if (!p) goto out;
    BT_CHECK(buffet_pool_allocator(NULL).vtable == buffet_null_allocator().vtable);
    memset(&zero, 0, sizeof zero);
    BT_CHECK(buffet_pool_allocator(&zero).vtable == buffet_null_allocator().vtable);   /* no pool attached */
    BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_OK && c != NULL);
    if (!c) goto out_pool;
    al = buffet_pool_allocator(c);
    BT_CHECK(buffet_allocator_contract(al) == (BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE));
    BT_CHECK(buffet_allocator_check(al, BUFFET_NEED_UNTIL_FREED | BUFFET_NEED_THREAD_SAFE, "test", NULL) == BUFFET_OK);
    a = buffet_alloc(al, 48, 16, BUFFET_SITE);
    b = BUFFET_NEW(al, tf_vec3);
    BT_CHECK(a && b && a != b && tf_aligned(a, 16));
    BT_CHECK(buffet_alloc(al, 49, 16, BUFFET_SITE) == NULL);       /* bigger than an object */
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_alloc(al, 16, 32, BUFFET_SITE) == NULL);       /* more aligned than one */
    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_TOO_LARGE);
    BT_CHECK(buffet_alloc(al, 0, 16, BUFFET_SITE) == NULL);
    if (a) memset(a, 1, 48);
    buffet_free(al, a, 48, 16, BUFFET_SITE);
    buffet_free(al, b, sizeof(tf_vec3), BUFFET_ALIGNOF(tf_vec3), BUFFET_SITE);
    buffet_pool_cache_flush(c);
    tf_pool_conserved(p);
    BT_CHECK(buffet_pool_get_stats(p).gets == 2);
    buffet_pool_cache_destroy(c);
out_pool:
    buffet_pool_destroy(p);
out:
    tf_debug_done(d);
}

typedef struct tf_pool_remote {
    buffet_allocator al;
    void *mine;        /* allocated on the cache's thread, freed by the other */
    int bad;
} tf_pool_remote;

/* The other thread: one object allocated and freed here, and the owner's object freed here. */
static void *tf_pool_remote_thread(void *arg) {
    tf_pool_remote *r = (tf_pool_remote *)arg;
    unsigned char *o = (unsigned char *)buffet_alloc(r->al, 48, 16, BUFFET_SITE);
    if (!o || !tf_aligned(o, 16) || o == r->mine) r->bad++;
    if (o) {
        tf_fill(o, 48, 9);
        if (!tf_intact(o, 48, 9)) r->bad++;
        buffet_free(r->al, o, 48, 16, BUFFET_SITE);
    }
    if (!tf_intact(r->mine, 48, 5)) r->bad++;
    buffet_free(r->al, r->mine, 48, 16, BUFFET_SITE);
    return NULL;
}

/* buffet_pool_allocator from a thread other than the cache's: its alloc and free go to the
   shared store (counted at once in the pool's statistics, the cache untouched), an object the
   cache's thread allocated may be freed there, and nothing races (TSan). */
static void test_pool_allocator_threads(void) {
    buffet_debug *d = tf_debug();
    buffet_pool *p = tf_pool(d, 48, 8, 0, 0, NULL);
    buffet_pool_cache *c = NULL;
    buffet_pool_stats st;
    tf_pool_remote r;
    pthread_t th;
    uint32_t count;
    uint64_t gets;
    void *o;
    if (!p) goto out;
    BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_OK && c != NULL);
    if (!c) goto out_pool;
    memset(&r, 0, sizeof r);
    r.al = buffet_pool_allocator(c);
    r.mine = buffet_alloc(r.al, 48, 16, BUFFET_SITE);     /* through the cache: a refill of 4 */
    BT_CHECK(r.mine != NULL && c->count == 3 && c->gets == 1);
    if (!r.mine) goto out_cache;
    tf_fill(r.mine, 48, 5);
    count = c->count;
    gets = c->gets;
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.gets == 0 && st.puts == 0 && st.in_store == st.created - 4);
    BT_CHECK(pthread_create(&th, NULL, tf_pool_remote_thread, &r) == 0);
    BT_CHECK(pthread_join(th, NULL) == 0);
    BT_CHECK(r.bad == 0);
    BT_CHECK(c->count == count && c->gets == gets && c->puts == 0);   /* the cache was not touched */
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.gets == 1 && st.puts == 2);                           /* the store served the other thread */
    BT_CHECK(st.in_store == st.created - 3 && st.double_puts == 0 && st.foreign_puts == 0);
    o = buffet_alloc(r.al, 48, 16, BUFFET_SITE);                      /* the cache again, on its thread */
    BT_CHECK(o != NULL && c->count == count - 1);
    buffet_free(r.al, o, 48, 16, BUFFET_SITE);
    BT_CHECK(c->count == count);
out_cache:
    buffet_pool_cache_destroy(c);
    tf_pool_conserved(p);
out_pool:
    buffet_pool_destroy(p);
out:
    tf_debug_done(d);
}

/* Checks on: a second put of an object, a pointer from the stack, an object of another pool
   and a pointer inside an object are refused with their code, counted and logged; the store
   is not corrupted by them. */
static void test_pool_double_put_and_foreign(void) {
    buffet_debug *d = tf_debug();
    bt_log la, lb;
    buffet_pool *pa = tf_pool(d, 64, 8, 0, 0, &la);
    buffet_pool *pb = tf_pool(d, 64, 8, 0, 0, &lb);
    buffet_pool_cache *ca = NULL, *cb = NULL;
    void *o, *ob, *o2;
    int local = 0;
    buffet_pool_stats st;
    if (!pa || !pb) goto out;
    BT_CHECK(buffet_pool_cache_create(&ca, pa, 8) == BUFFET_OK && buffet_pool_cache_create(&cb, pb, 8) == BUFFET_OK);
    o = buffet_pool_get(ca);
    o2 = buffet_pool_get(ca);
    ob = buffet_pool_get(cb);
    BT_CHECK(o && o2 && ob);
    if (!o || !o2 || !ob) goto out;
    BT_CHECK(buffet_pool_put(ca, o) == BUFFET_OK);
    BT_CHECK(buffet_pool_put(ca, o) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_pool_put(ca, &local) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_pool_put(ca, ob) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_pool_put(ca, (unsigned char *)o2 + 1) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_pool_put(ca, NULL) == BUFFET_ERR_INVALID);
    st = buffet_pool_get_stats(pa);
    BT_CHECK(st.double_puts == 1 && st.foreign_puts == 3);
    BT_CHECK(bt_logged(&la, BUFFET_ERR_DOUBLE_FREE) == 1 && bt_logged(&la, BUFFET_ERR_FOREIGN) == 3);
    BT_CHECK(buffet_pool_get_stats(pb).foreign_puts == 0 && lb.total == 0);
    BT_CHECK(buffet_pool_put(cb, ob) == BUFFET_OK);               /* where it belongs */
    BT_CHECK(buffet_pool_put(ca, o2) == BUFFET_OK);
    buffet_pool_cache_flush(ca);
    buffet_pool_cache_flush(cb);
    tf_pool_conserved(pa);
    tf_pool_conserved(pb);
    /* after the flush too: the double put is caught in the store as well as in a cache */
    BT_CHECK(buffet_pool_put(ca, o) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(buffet_pool_get_stats(pa).double_puts == 2);
out:
    buffet_pool_cache_destroy(ca);
    buffet_pool_cache_destroy(cb);
    buffet_pool_destroy(pa);
    buffet_pool_destroy(pb);
    tf_debug_done(d);
}

/* Checks off (a release build's pool), every object out and put back, one of them twice: the
   second put is refused at once (BUFFET_ERR_DOUBLE_FREE, counted), so the store never holds an
   object twice, whether the first copy is in the cache, in the store after a flush, or came
   back by put_shared. Run in a child: ASan must find nothing. */
static void tf_double_put_unchecked(void) {
    buffet_debug *d = tf_debug();
    buffet_pool *p = tf_pool(d, 64, 8, 8, -1, NULL);
    buffet_pool_cache *c = NULL;
    buffet_pool_stats st;
    void *objs[8];
    int i;
    if (!p) return;
    BT_CHECK(buffet_pool_cache_create(&c, p, 16) == BUFFET_OK && c != NULL);
    if (!c) goto out;
    BT_CHECK(buffet_pool_get_bulk(c, objs, 8) == 8 && buffet_pool_get_stats(p).in_store == 0);
    for (i = 0; i < 8; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
    BT_CHECK(buffet_pool_put(c, objs[7]) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(c->count == 8);
    buffet_pool_cache_flush(c);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.in_store == 8 && st.created == 8 && st.double_puts == 1);
    /* the same through put_shared, and with every object put twice */
    BT_CHECK(buffet_pool_get_bulk(c, objs, 8) == 8);
    for (i = 0; i < 8; i++) BT_CHECK(buffet_pool_put_shared(p, objs[i]) == BUFFET_OK);
    BT_CHECK(buffet_pool_put_shared(p, objs[0]) == BUFFET_ERR_DOUBLE_FREE);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.in_store == 8 && st.double_puts == 2);
    BT_CHECK(buffet_pool_get_bulk(c, objs, 8) == 8);
    for (i = 0; i < 8; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
    for (i = 0; i < 8; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_ERR_DOUBLE_FREE);
    BT_CHECK(c->count == 8);
    buffet_pool_cache_flush(c);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.in_store == 8 && st.double_puts == 10);
    buffet_pool_cache_destroy(c);
out:
    buffet_pool_destroy(p);
    tf_debug_done(d);
}

static void test_pool_double_put_unchecked(void) {
    BT_CHECK(tf_run_in_child(tf_double_put_unchecked, "double put with checks off"));
}

/* Every obj_align up to 4096 is honoured; the stride keeps it. */
static void test_pool_alignment(void) {
    static const size_t aligns[] = {1, 8, 64, 256, 4096};
    buffet_debug *d = tf_debug();
    size_t k;
    for (k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
        buffet_pool_desc desc;
        buffet_pool *p = NULL;
        buffet_pool_cache *c = NULL;
        void *objs[20];
        int i, bad = 0;
        memset(&desc, 0, sizeof desc);
        desc.obj_size = 24;
        desc.obj_align = aligns[k];
        desc.slab_objs = 8;
        desc.parent = buffet_debug_allocator(d);
        BT_CHECK(buffet_pool_create(&p, &desc) == BUFFET_OK);
        if (!p) continue;
        BT_CHECK(buffet_pool_get_stats(p).stride % aligns[k] == 0 && buffet_pool_get_stats(p).stride >= 24);
        BT_CHECK(buffet_pool_cache_create(&c, p, 4) == BUFFET_OK && c != NULL);
        if (!c) {
            buffet_pool_destroy(p);
            continue;
        }
        for (i = 0; i < 20; i++) {
            objs[i] = buffet_pool_get(c);
            if (!objs[i] || !tf_aligned(objs[i], aligns[k])) bad++;
            else memset(objs[i], i, 24);
        }
        BT_CHECK(bad == 0);
        for (i = 0; i < 20; i++)
            if (objs[i]) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
        buffet_pool_cache_flush(c);
        tf_pool_conserved(p);
        buffet_pool_cache_destroy(c);
        buffet_pool_destroy(p);
    }
    tf_debug_done(d);
}

/* The stats struct and JSON match what happened; destroying a pool with objects out and a
   cache attached is logged as a warning (BUFFET_ERR_STATE) and frees nothing under them: the
   pool goes when they come back. */
static void test_pool_stats_json(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_pool *p = tf_pool(d, 100, 10, 25, 0, &l);
    buffet_pool_cache *c = NULL;
    buffet_pool_stats st;
    static char json[2048];
    char small[8];
    void *objs[3];
    size_t n;
    if (!p) goto out;
    BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_OK && c != NULL);
    if (!c) goto out_pool;
    BT_CHECK(buffet_pool_get_bulk(c, objs, 3) == 3);
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.obj_size == 100 && st.stride == 100 && st.max == 25 && st.slabs == 1 && st.created == 10);
    BT_CHECK(st.in_store == 7 && st.in_use == 3 && st.puts == 0 && st.failures == 0 && st.caches == 1);
    BT_CHECK(st.gets == 0 && c->gets == 3);      /* the cache counts; a flush adds it to the pool's */
    buffet_pool_cache_flush(c);
    BT_CHECK(buffet_pool_get_stats(p).gets == 3 && c->gets == 0);
    n = buffet_pool_stats_json(p, json, sizeof json);
    BT_CHECK(n == strlen(json) && tf_json_ok(json));
    BT_CHECK(strstr(json, "\"created\":10,") && strstr(json, "\"in_use\":3,") && strstr(json, "\"gets\":3,"));
    BT_CHECK(strstr(json, "\"max\":25,") && strstr(json, "\"obj_size\":100,") && strstr(json, "\"caches\":1,"));
    BT_CHECK(buffet_pool_stats_json(p, small, sizeof small) == n && strlen(small) == sizeof small - 1);
    BT_CHECK(buffet_pool_stats_json(p, NULL, 0) == n);
    n = buffet_pool_stats_json(NULL, json, sizeof json);
    BT_CHECK(n == strlen(json) && tf_json_ok(json) && strstr(json, "\"caches\":0,"));
    buffet_pool_destroy(p);                                       /* 3 objects still out, a cache attached */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && bt_logged(&l, BUFFET_ERR_LEAK) == 0 && l.total == 1);
    BT_CHECK(tf_live(d) > 0);                                     /* nothing freed under them */
    memset(objs[0], 0x55, 100);
    BT_CHECK(buffet_pool_put_bulk(c, objs, 3) == BUFFET_OK);
    buffet_pool_cache_destroy(c);                                 /* the last user: the pool goes too */
    BT_CHECK(tf_live(d) == 0 && l.total == 1);
    goto out;
out_pool:
    buffet_pool_destroy(p);
out:
    tf_debug_done(d);
}

/* buffet_pool_destroy with objects out frees nothing under them: it warns (BUFFET_ERR_STATE),
   refuses new gets and caches (BUFFET_ERR_STATE, nothing kept), takes the objects back through
   put_shared, and releases the pool when the last one returns (no leak for the debug
   allocator, ASan or valgrind). */
static void test_pool_destroy_deferred(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_pool *p = tf_pool(d, 64, 8, 0, 0, &l);
    buffet_pool_cache *c = NULL;
    buffet_pool_stats st;
    void *o1, *o2;
    size_t live;
    if (!p) goto out;
    o1 = buffet_pool_get_shared(p);
    o2 = buffet_pool_get_shared(p);
    BT_CHECK(o1 && o2);
    if (!o1 || !o2) {
        buffet_pool_put_shared(p, o1);
        buffet_pool_put_shared(p, o2);
        buffet_pool_destroy(p);
        goto out;
    }
    tf_fill(o1, 64, 1);
    live = tf_live(d);
    buffet_pool_destroy(p);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && l.total == 1);
    BT_CHECK(tf_live(d) == live);                                  /* nothing freed */
    tf_fill(o2, 64, 2);                                            /* the objects are still theirs */
    BT_CHECK(tf_intact(o1, 64, 1) && tf_intact(o2, 64, 2));
    BT_CHECK(buffet_pool_get_shared(p) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_STATE);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 2);                /* the refused get says why */
    c = (buffet_pool_cache *)&c;
    BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_ERR_STATE && c == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 3 && tf_live(d) == live);   /* its block went back */
    st = buffet_pool_get_stats(p);
    BT_CHECK(st.in_use == 2 && st.caches == 0 && st.gets == 2 && st.puts == 0);
    BT_CHECK(buffet_pool_put_shared(p, o1) == BUFFET_OK);
    BT_CHECK(tf_live(d) == live && buffet_pool_get_stats(p).in_use == 1);
    BT_CHECK(buffet_pool_put_shared(p, o1) == BUFFET_ERR_DOUBLE_FREE);     /* checks still on */
    BT_CHECK(buffet_pool_put_shared(p, o2) == BUFFET_OK);                  /* the last: released */
    BT_CHECK(tf_live(d) == 0 && bt_logged(&l, BUFFET_ERR_STATE) == 3);
out:
    tf_debug_done(d);
}

/* A pool destroyed while caches are attached stays until the last cache is destroyed: the
   caches go on working (their objects and those out included), and the last destroy
   releases the pool. */
static void test_pool_destroy_with_cache(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_pool *p = tf_pool(d, 64, 8, 0, 0, &l);
    buffet_pool_cache *c1 = NULL, *c2 = NULL;
    void *o, *o2;
    size_t live;
    if (!p) goto out;
    BT_CHECK(buffet_pool_cache_create(&c1, p, 8) == BUFFET_OK && buffet_pool_cache_create(&c2, p, 8) == BUFFET_OK);
    if (!c1 || !c2) {
        buffet_pool_cache_destroy(c1);
        buffet_pool_cache_destroy(c2);
        buffet_pool_destroy(p);
        goto out;
    }
    BT_CHECK(buffet_pool_get_stats(p).caches == 2);
    o = buffet_pool_get(c1);
    BT_CHECK(o != NULL);
    if (o) tf_fill(o, 64, 3);
    live = tf_live(d);
    buffet_pool_destroy(p);                                        /* all objects back, two caches out */
    BT_CHECK(bt_logged(&l, BUFFET_ERR_STATE) == 1 && tf_live(d) == live);
    BT_CHECK(buffet_pool_get_stats(p).caches == 2);
    o2 = buffet_pool_get(c1);                                      /* from c1's objects */
    BT_CHECK(o2 != NULL && o2 != o);
    BT_CHECK(!o || tf_intact(o, 64, 3));
    if (o) BT_CHECK(buffet_pool_put(c2, o) == BUFFET_OK);          /* into the other cache */
    if (o2) BT_CHECK(buffet_pool_put(c1, o2) == BUFFET_OK);
    buffet_pool_cache_destroy(c1);
    BT_CHECK(tf_live(d) == live - 1 && buffet_pool_get_stats(p).caches == 1);   /* c1's block only */
    buffet_pool_cache_destroy(c2);                                 /* the last: the pool goes */
    BT_CHECK(tf_live(d) == 0 && l.total == 1);
out:
    tf_debug_done(d);
}

typedef struct tf_pool_race {
    buffet_pool *pool;
    void *obj;
    buffet_frame_barrier start;
} tf_pool_race;

static void *tf_pool_race_thread(void *arg) {
    tf_pool_race *r = (tf_pool_race *)arg;
    buffet_frame_barrier_wait(&r->start);
    buffet_pool_put_shared(r->pool, r->obj);
    return NULL;
}

/* After buffet_pool_destroy the last users come back from different threads at once: one
   thread destroys its cache while another puts the last object back. Whichever is last
   releases the pool; the other must not touch it after letting go (TSan, ASan: clean). */
static void test_pool_destroy_race(void) {
    buffet_debug *d = tf_debug();
    int i, rounds = tf_mode_is("valgrind") ? 20 : 300;
    for (i = 0; i < rounds; i++) {
        tf_pool_race r;
        buffet_pool_cache *c = NULL;
        pthread_t th;
        memset(&r, 0, sizeof r);
        r.pool = tf_pool(d, 64, 8, 0, 0, NULL);
        if (!r.pool) break;
        BT_CHECK(buffet_pool_cache_create(&c, r.pool, 8) == BUFFET_OK && c != NULL);
        r.obj = c ? buffet_pool_get(c) : NULL;
        BT_CHECK(r.obj != NULL);
        if (!c || !r.obj) {
            buffet_pool_cache_destroy(c);
            buffet_pool_put_shared(r.pool, r.obj);
            buffet_pool_destroy(r.pool);
            break;
        }
        buffet_pool_destroy(r.pool);                  /* one object and one cache still out */
        BT_CHECK(buffet_frame_barrier_init(&r.start, 2) == BUFFET_OK);
        BT_CHECK(pthread_create(&th, NULL, tf_pool_race_thread, &r) == 0);
        buffet_frame_barrier_wait(&r.start);
        buffet_pool_cache_destroy(c);
        BT_CHECK(pthread_join(th, NULL) == 0);
        buffet_frame_barrier_deinit(&r.start);
        BT_CHECK(tf_live(d) == 0);                    /* released by one of them */
    }
    tf_debug_done(d);
}

/* For n = 1, 2, ...: the nth request to the parent fails: pool_create or cache_create returns
   BUFFET_ERR_NOMEM with nothing left behind, or a get that needed the pool to grow returns NULL
   (counted, with the parent's reason for buffet_alloc_error);
   nothing leaks either way. A cache of 2 refills one object at a time, so every growth
   happens on an empty store and every failed growth shows as a NULL. */
static void test_pool_failing_parent(void) {
    buffet_debug *d = tf_debug();
    uint64_t n;
    bool clean = false;
    for (n = 1; n <= 200 && !clean; n++) {
        buffet_failing f;
        buffet_pool_desc desc;
        buffet_pool *p = NULL;
        buffet_pool_cache *c = NULL;
        static void *objs[40];
        unsigned failed = 0, got = 0, i;
        buffet_result r;
        bt_log l;
        buffet_failing_init(&f, buffet_debug_allocator(d), n, false);
        memset(&desc, 0, sizeof desc);
        desc.obj_size = 64;
        desc.slab_objs = 8;
        desc.initial = 8;
        desc.parent = buffet_failing_allocator(&f);
        desc.log = bt_logger(&l);
        r = buffet_pool_create(&p, &desc);
        if (r != BUFFET_OK) {
            BT_CHECK(r == BUFFET_ERR_NOMEM && p == NULL && bt_logged(&l, BUFFET_ERR_NOMEM) <= 1);
            failed++;
        } else if ((r = buffet_pool_cache_create(&c, p, 2)) != BUFFET_OK) {   /* the cache is allocated too */
            BT_CHECK(r == BUFFET_ERR_NOMEM && c == NULL && buffet_pool_get_stats(p).caches == 0);
            failed++;
            buffet_pool_destroy(p);
        } else {
            for (i = 0; i < 40; i++) {   /* 5 slabs' worth: 4 growths, each a store resize and a slab */
                void *o = buffet_pool_get(c);
                if (o) {
                    memset(o, 0, 64);
                    objs[got++] = o;
                } else {
                    BT_CHECK(buffet_alloc_error(NULL) == BUFFET_ERR_NOMEM);   /* the parent's reason */
                    failed++;
                }
            }
            BT_CHECK(buffet_pool_get_stats(p).failures == failed);
            BT_CHECK(bt_logged(&l, BUFFET_ERR_NOMEM) == failed && bt_logged(&l, BUFFET_ERR_EXHAUSTED) == 0);
            for (i = 0; i < got; i++) BT_CHECK(buffet_pool_put(c, objs[i]) == BUFFET_OK);
            buffet_pool_cache_flush(c);
            tf_pool_conserved(p);
            buffet_pool_cache_destroy(c);
            buffet_pool_destroy(p);
        }
        BT_CHECK(failed == f.failures);
        BT_CHECK(tf_live(d) == 0);
        clean = f.failures == 0;
    }
    BT_CHECK(clean && n > 5);
    tf_debug_done(d);
}

/* The deliberate bad read, run in a child: a pool object read after it was put back. */
static void tf_bad_pool_read(void) {
    buffet_pool_desc desc;
    buffet_pool *p = NULL;
    buffet_pool_cache *c = NULL;
    unsigned char *o;
    volatile unsigned char v;
    memset(&desc, 0, sizeof desc);
    desc.obj_size = 64;
    if (buffet_pool_create(&p, &desc) != BUFFET_OK) return;
    if (buffet_pool_cache_create(&c, p, 8) != BUFFET_OK) return;
    o = (unsigned char *)buffet_pool_get(c);
    if (o) {
        memset(o, 1, 64);
        buffet_pool_put(c, o);
        v = ((volatile unsigned char *)o)[5];   /* use after put: must be reported */
        (void)v;
    }
    buffet_pool_cache_destroy(c);
    buffet_pool_destroy(p);
}

/* An object put back is poisoned: ASan and valgrind report a read of it. Without them pool
   objects carry no fill pattern to look at, so what is checked is that it really went back:
   the cache hands the same object out next. */
static void test_pool_use_after_put(void) {
    if (tf_may_read_freed()) {
        buffet_debug *d = tf_debug();
        buffet_pool *p = tf_pool(d, 64, 8, 0, 0, NULL);
        buffet_pool_cache *c = NULL;
        void *o;
        if (!p) return;
        BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_OK && c != NULL);
        if (c) {
            o = buffet_pool_get(c);
            BT_CHECK(o != NULL && buffet_pool_put(c, o) == BUFFET_OK);
            BT_CHECK(buffet_pool_get(c) == o);
            BT_CHECK(buffet_pool_put(c, o) == BUFFET_OK);
            buffet_pool_cache_flush(c);
            tf_pool_conserved(p);
            buffet_pool_cache_destroy(c);
        }
        buffet_pool_destroy(p);
        tf_debug_done(d);
    } else {
        tf_expect_caught(tf_bad_pool_read, "use after pool put");
    }
}

/* Was site s made by BUFFET_SITE in function func of this file? */
static bool tf_site_here(buffet_site s, const char *func) {
    return s.where && strstr(s.where, "test_frame.c:") && s.func && strcmp(s.func, func) == 0;
}

/* The macros pass the caller's BUFFET_SITE to the parent allocator (scope_alloc, scope_defer,
   frame_create, transfer_send, pool_create, pool_cache_create), and their *_at forms pass the
   site given, so a leak report names the line that asked. */
static void test_sites(void) {
    buffet_debug *d = tf_debug();
    const buffet_site custom = buffet_site_make("caller.c:7", "caller");
    buffet_frame_arena *fa = NULL;
    buffet_frame_transfer *t;
    buffet_frame_desc desc;
    buffet_pool_desc pd;
    buffet_pool *p = NULL;
    buffet_pool_cache *c = NULL;
    buffet_allocator ra;
    buffet_scope s;
    tf_defer df;
    tf_rec rec;
    int runs = 0;
    void *q;
    memset(&rec, 0, sizeof rec);
    rec.parent = buffet_debug_allocator(d);
    ra.self = &rec;
    ra.vtable = &tf_rec_ts_vtable;
    df.rec = NULL;
    df.id = 1;
    df.runs = &runs;
    BT_CHECK(tf_scope_begin(&s, ra, NULL, NULL) == BUFFET_OK);
    /* the parent is asked for a block (or a large allocation) with the site of the call that needed it */
    BT_CHECK(buffet_scope_alloc(&s, 32, 16) != NULL && tf_site_here(rec.site, "test_sites"));
    BT_CHECK(buffet_scope_alloc_at(&s, 20000, 16, custom) != NULL && rec.site.where == custom.where);
    BT_CHECK(buffet_scope_alloc(&s, 5000, 16) != NULL && tf_site_here(rec.site, "test_sites"));   /* a new block */
    BT_CHECK(buffet_scope_defer(&s, tf_deferred, &df) == BUFFET_OK);
    BT_CHECK(buffet_scope_alloc(&s, 3120, 16) != NULL);       /* the rest of that block */
    BT_CHECK(buffet_scope_defer_at(&s, tf_deferred, &df, custom) == BUFFET_OK && rec.site.func == custom.func);
    BT_CHECK(buffet_scope_alloc_at(NULL, 32, 16, custom) == NULL && buffet_scope_defer_at(NULL, tf_deferred, &df, custom) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK && runs == 2);

    memset(&desc, 0, sizeof desc);
    desc.parent = ra;
    desc.chunk_size = 4096;
    BT_CHECK(buffet_frame_create(&fa, &desc) == BUFFET_OK && tf_site_here(rec.site, "test_sites"));
    buffet_frame_destroy(fa);
    fa = NULL;
    BT_CHECK(buffet_frame_create_at(&fa, &desc, custom) == BUFFET_OK && fa && rec.site.where == custom.where);
    BT_CHECK(buffet_frame_create_at(NULL, &desc, custom) == BUFFET_ERR_INVALID);
    if (fa) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        q = buffet_frame_alloc(fa, 64, 16);
        t = q ? buffet_frame_transfer_send(fa, q, 64) : NULL;
        BT_CHECK(t != NULL && tf_site_here(rec.site, "test_sites"));
        buffet_frame_transfer_release(t);
        t = q ? buffet_frame_transfer_send_at(fa, q, 64, custom) : NULL;
        BT_CHECK(t != NULL && rec.site.where == custom.where);
        buffet_frame_transfer_release(t);
        BT_CHECK(buffet_frame_transfer_send_at(NULL, q, 64, custom) == NULL);
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
        buffet_frame_destroy(fa);
    }

    memset(&pd, 0, sizeof pd);
    pd.obj_size = 64;
    pd.parent = ra;
    BT_CHECK(buffet_pool_create(&p, &pd) == BUFFET_OK && tf_site_here(rec.site, "test_sites"));
    buffet_pool_destroy(p);
    p = NULL;
    BT_CHECK(buffet_pool_create_at(&p, &pd, custom) == BUFFET_OK && p && rec.site.where == custom.where);
    BT_CHECK(buffet_pool_create_at(NULL, &pd, custom) == BUFFET_ERR_INVALID);
    if (p) {
        BT_CHECK(buffet_pool_cache_create(&c, p, 8) == BUFFET_OK && tf_site_here(rec.site, "test_sites"));
        buffet_pool_cache_destroy(c);
        c = NULL;
        BT_CHECK(buffet_pool_cache_create_at(&c, p, 8, custom) == BUFFET_OK && c && rec.site.where == custom.where);
        BT_CHECK(buffet_pool_cache_create_at(NULL, p, 8, custom) == BUFFET_ERR_INVALID);
        buffet_pool_cache_destroy(c);
        buffet_pool_destroy(p);
    }
    tf_debug_done(d);
}

/* ---------------------------------------------------------------------------------------------
   Threads together: per-thread arenas in lockstep, a pool with cross-thread puts, transfers. */

#define TF_MT_FRAMES 200
#define TF_MT_OBJS 8        /* objects A hands to B each frame */
#define TF_QUEUE_CAP 1024

/* A mutex-protected FIFO of pointers between the two threads. */
typedef struct tf_queue {
    pthread_mutex_t mu;
    void *items[TF_QUEUE_CAP];
    size_t head, count;
} tf_queue;

static bool tf_queue_push(tf_queue *q, void *x) {
    bool ok;
    pthread_mutex_lock(&q->mu);
    ok = q->count < TF_QUEUE_CAP;
    if (ok) q->items[(q->head + q->count++) % TF_QUEUE_CAP] = x;
    pthread_mutex_unlock(&q->mu);
    return ok;
}

static void *tf_queue_pop(tf_queue *q) {
    void *x = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->count) {
        x = q->items[q->head];
        q->head = (q->head + 1) % TF_QUEUE_CAP;
        q->count--;
    }
    pthread_mutex_unlock(&q->mu);
    return x;
}

typedef struct tf_obj { uint32_t magic, frame, index; unsigned char pad[52]; } tf_obj;   /* 64 bytes */
#define TF_MAGIC 0x0b1ec7u

typedef struct tf_mt {
    buffet_debug *d;
    buffet_pool *pool;
    buffet_frame_barrier barrier;
    tf_queue objs, transfers;
    /* each written by one thread, read after the join */
    uint64_t a_gets, a_kept, b_puts, a_sent, b_received, a_warnings;
    int a_bad, b_bad;
} tf_mt;

/* Each thread's own frame work: some blocks, checked at the end of the frame. */
static int tf_mt_frame_work(buffet_frame_arena *fa, unsigned f) {
    unsigned char *blocks[10];
    int i, bad = 0;
    for (i = 0; i < 10; i++) {
        blocks[i] = (unsigned char *)buffet_frame_alloc(fa, 500, 16);
        if (blocks[i]) tf_fill(blocks[i], 500, f + (unsigned)i);
        else bad++;
    }
    for (i = 0; i < 10; i++)
        if (blocks[i] && !tf_intact(blocks[i], 500, f + (unsigned)i)) bad++;
    return bad;
}

/* A: gets pool objects and hands them to B; sends frame memory to B every frame. */
static void *tf_mt_thread_a(void *arg) {
    tf_mt *mt = (tf_mt *)arg;
    buffet_frame_desc desc;
    buffet_frame_arena *fa = NULL;
    buffet_pool_cache *c = NULL;
    unsigned f, i;
    bt_log l;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(mt->d);
    desc.chunk_size = 4096;
    desc.frames_in_flight = 2;
    desc.transfer_warn_frames = 4;
    desc.log = bt_logger(&l);   /* only this thread's arena logs into l */
    if (buffet_frame_create(&fa, &desc) != BUFFET_OK || buffet_pool_cache_create(&c, mt->pool, 16) != BUFFET_OK) mt->a_bad++;
    for (f = 1; f <= TF_MT_FRAMES; f++) {
        unsigned char *p;
        buffet_frame_transfer *t;
        if (!fa || buffet_frame_begin(fa) != BUFFET_OK) mt->a_bad++;
        if (fa) mt->a_bad += tf_mt_frame_work(fa, f);
        for (i = 0; i < TF_MT_OBJS; i++) {
            tf_obj *o = (tf_obj *)buffet_pool_get(c);
            if (!o) {
                mt->a_bad++;
                continue;
            }
            mt->a_gets++;
            o->magic = TF_MAGIC;
            o->frame = f;
            o->index = i;
            if (!tf_queue_push(&mt->objs, o)) {   /* B is behind: keep it */
                mt->a_kept++;
                if (buffet_pool_put(c, o) != BUFFET_OK) mt->a_bad++;
            }
        }
        p = fa ? (unsigned char *)buffet_frame_alloc(fa, 256, 16) : NULL;
        if (p) {
            tf_fill(p, 256, f & 0xff);   /* byte 0 is the seed: B checks the rest against it */
            t = buffet_frame_transfer_send(fa, p, 256);
            if (t && tf_queue_push(&mt->transfers, t)) mt->a_sent++;
            else mt->a_bad++;
        } else {
            mt->a_bad++;
        }
        if (fa && buffet_frame_end(fa) != BUFFET_OK) mt->a_bad++;
        buffet_frame_barrier_wait(&mt->barrier);
    }
    buffet_frame_barrier_wait(&mt->barrier);   /* B has drained both queues and released all */
    for (f = 0; f < 3 && fa; f++) {            /* the pinned chunks come back */
        buffet_frame_begin(fa);
        mt->a_bad += tf_mt_frame_work(fa, f);
        buffet_frame_end(fa);
    }
    mt->a_warnings = bt_logged(&l, BUFFET_ERR_STATE);   /* unreceived-transfer warnings */
    buffet_pool_cache_destroy(c);
    buffet_frame_destroy(fa);
    return NULL;
}

/* B: receives what A sent, checks it, puts the objects into its own cache. */
static void tf_mt_drain(tf_mt *mt, buffet_pool_cache *c) {
    void *x;
    while ((x = tf_queue_pop(&mt->objs)) != NULL) {
        tf_obj *o = (tf_obj *)x;
        if (o->magic != TF_MAGIC || o->index >= TF_MT_OBJS || o->frame == 0 || o->frame > TF_MT_FRAMES) mt->b_bad++;
        o->magic = 0;
        if (buffet_pool_put(c, o) == BUFFET_OK) mt->b_puts++;
        else mt->b_bad++;
    }
    while ((x = tf_queue_pop(&mt->transfers)) != NULL) {
        buffet_frame_transfer *t = (buffet_frame_transfer *)x;
        size_t size = 0;
        unsigned char *p = (unsigned char *)buffet_frame_transfer_receive(t, &size);
        if (!p || size != 256 || !tf_intact(p, 256, p[0])) mt->b_bad++;
        buffet_frame_transfer_release(t);
        mt->b_received++;
    }
}

static void *tf_mt_thread_b(void *arg) {
    tf_mt *mt = (tf_mt *)arg;
    buffet_frame_desc desc;
    buffet_frame_arena *fb = NULL;
    buffet_pool_cache *c = NULL;
    unsigned f;
    memset(&desc, 0, sizeof desc);
    desc.parent = buffet_debug_allocator(mt->d);
    desc.chunk_size = 4096;
    desc.frames_in_flight = 3;
    if (buffet_frame_create(&fb, &desc) != BUFFET_OK || buffet_pool_cache_create(&c, mt->pool, 16) != BUFFET_OK) mt->b_bad++;
    for (f = 1; f <= TF_MT_FRAMES; f++) {
        if (!fb || buffet_frame_begin(fb) != BUFFET_OK) mt->b_bad++;
        if (fb) mt->b_bad += tf_mt_frame_work(fb, f * 3);
        tf_mt_drain(mt, c);    /* what A sent in earlier frames (and maybe this one) */
        if (fb && buffet_frame_end(fb) != BUFFET_OK) mt->b_bad++;
        buffet_frame_barrier_wait(&mt->barrier);
    }
    tf_mt_drain(mt, c);        /* A's last frame, sent before the last barrier */
    buffet_frame_barrier_wait(&mt->barrier);
    buffet_pool_cache_destroy(c);
    buffet_frame_destroy(fb);
    return NULL;
}

/* Two threads, a frame at a time. At the end: every object A got was put back by B (or by A
   when the queue was full), the pool holds all it made, and A's transfers were all received
   (none reported as unreceived); no leak, no tool report. */
static void test_threads_together(void) {
    static tf_mt mt;
    pthread_t a, b;
    buffet_pool_stats st;
    buffet_pool_desc desc;
    memset(&mt, 0, sizeof mt);
    mt.d = tf_debug();
    pthread_mutex_init(&mt.objs.mu, NULL);
    pthread_mutex_init(&mt.transfers.mu, NULL);
    memset(&desc, 0, sizeof desc);
    desc.obj_size = sizeof(tf_obj);
    desc.slab_objs = 32;
    desc.parent = buffet_debug_allocator(mt.d);
    BT_CHECK(sizeof(tf_obj) == 64);
    BT_CHECK(buffet_pool_create(&mt.pool, &desc) == BUFFET_OK);
    BT_CHECK(buffet_frame_barrier_init(&mt.barrier, 2) == BUFFET_OK);
    if (!mt.pool) return;
    BT_CHECK(pthread_create(&a, NULL, tf_mt_thread_a, &mt) == 0);
    BT_CHECK(pthread_create(&b, NULL, tf_mt_thread_b, &mt) == 0);
    BT_CHECK(pthread_join(a, NULL) == 0 && pthread_join(b, NULL) == 0);
    BT_CHECK(mt.a_bad == 0 && mt.b_bad == 0);
    BT_CHECK(mt.a_gets == (uint64_t)TF_MT_FRAMES * TF_MT_OBJS);
    BT_CHECK(mt.a_gets == mt.b_puts + mt.a_kept);                  /* every object accounted for */
    BT_CHECK(mt.a_sent == TF_MT_FRAMES && mt.b_received == mt.a_sent && mt.a_warnings == 0);
    st = buffet_pool_get_stats(mt.pool);
    BT_CHECK(st.in_store == st.created && st.gets == st.puts && st.gets == mt.a_gets);
    BT_CHECK(st.double_puts == 0 && st.foreign_puts == 0 && st.failures == 0);
    buffet_pool_destroy(mt.pool);
    buffet_frame_barrier_deinit(&mt.barrier);
    pthread_mutex_destroy(&mt.objs.mu);
    pthread_mutex_destroy(&mt.transfers.mu);
    tf_debug_done(mt.d);
}

/* ---------------------------------------------------------------------------------------------
   The 16-byte grain (the bump pointer stays aligned) and scopes as arenas. */

/* Every alignment from 1 to 4096 is honoured; up to 16 nothing is padded (each block takes its
   size rounded up to 16 and the next starts there), above it only the pointer is aligned; size
   0, a bad align, sizes no chunk can be and count * size overflows are refused, counted, and
   leave the bump pointer where it was. */
static void test_frame_grain(void) {
    buffet_debug *d = tf_debug();
    bt_log l;
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, &l);
    size_t align, size;
    unsigned char *p, *q, *cur;
    uint64_t failures;
    if (!fa) goto out;
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    for (align = 1; align <= 16; align *= 2)
        for (size = 1; size <= 40; size += 13) {
            p = (unsigned char *)buffet_frame_alloc(fa, size, align);
            q = (unsigned char *)buffet_frame_alloc(fa, 1, 1);
            BT_CHECK(p && q && tf_aligned(p, 16) && q == p + TF_R(size));
            if (p) memset(p, 0x11, size);
        }
    for (align = 32; align <= 4096; align *= 2) {
        p = (unsigned char *)buffet_frame_alloc(fa, 24, align);
        BT_CHECK(p && tf_aligned(p, align) && fa->cur == p + 32);
        if (p) memset(p, 0x22, 24);
    }
    cur = fa->cur;
    failures = buffet_frame_get_stats(fa).failures;
    BT_CHECK(buffet_frame_alloc(fa, 0, 16) == NULL);                 /* nothing: not a failure */
    BT_CHECK(buffet_frame_alloc(fa, 16, 0) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_alloc(fa, 16, 24) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_frame_alloc(fa, SIZE_MAX, 16) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_frame_alloc(fa, SIZE_MAX - 14, 1) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_frame_alloc(fa, ((size_t)1 << 48) + 1, 16) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_frame_alloc(fa, 16, (size_t)1 << 63) == NULL);   /* aligning would wrap */
    BT_CHECK(buffet_frame_alloc_array(fa, SIZE_MAX / 2, 3, 8) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(fa->cur == cur && buffet_frame_get_stats(fa).failures == failures + 7);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_INVALID) == 2 && bt_logged(&l, BUFFET_ERR_OVERFLOW) == 5);
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

/* A frame that fills its chunk mid-way goes on in a new one: every block stays intact, none
   crosses a chunk's end, and the statistics are derived right (count: every allocation;
   bytes: the rounded sizes). */
static void test_frame_chunk_exhaustion(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 1024, 2, NULL);
    unsigned char *ptrs[300];
    size_t sizes[300], total = 0;
    buffet_frame_stats st;
    int i, f;
    if (!fa) goto out;
    for (f = 0; f < 3; f++) {
        BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
        total = 0;
        for (i = 0; i < 300; i++) {
            sizes[i] = 1 + (size_t)((i * 37 + f * 11) % 200);
            ptrs[i] = (unsigned char *)buffet_frame_alloc(fa, sizes[i], i % 3 ? 8 : 64);
            BT_CHECK(ptrs[i] != NULL);
            if (!ptrs[i]) goto out_frame;
            tf_fill(ptrs[i], sizes[i], i);
            total += TF_R(sizes[i]);
        }
        for (i = 0; i < 300; i++) BT_CHECK(tf_intact(ptrs[i], sizes[i], i));
        st = buffet_frame_get_stats(fa);
        BT_CHECK(st.count == 300 && st.bytes >= total && st.bytes < total + 300 * 64);   /* 64-aligned ones may pad */
        BT_CHECK(st.chunks >= 2);
    out_frame:
        BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    }
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

/* The newest allocation is found through its rounding: a free or resize with a size inside
   its 16 bytes works, a batch of objects under 16 bytes apart has no newest one (freeing its
   objects early would give back their neighbours), and a resize within the rounding moves
   nothing (yet makes a mark above the block stale, as every resize does). */
static void test_frame_newest_rounding(void) {
    buffet_debug *d = tf_debug();
    buffet_frame_arena *fa = tf_arena(d, 4096, 1, NULL);
    buffet_allocator al;
    buffet_frame_mark m;
    void *objs[4];
    unsigned char *p, *cur;
    if (!fa) goto out;
    al = buffet_frame_allocator(fa);
    BT_CHECK(buffet_frame_begin(fa) == BUFFET_OK);
    p = (unsigned char *)buffet_frame_alloc(fa, 20, 4);
    BT_CHECK(p != NULL && fa->cur == p + 32);
    m = buffet_frame_checkpoint(fa);
    BT_CHECK(buffet_frame_resize(fa, p, 20, 30));               /* inside its 32: nothing moves */
    BT_CHECK(fa->cur == p + 32);
    BT_CHECK(buffet_frame_rollback(fa, m) == BUFFET_ERR_STATE);  /* ...but the block under m changed */
    BT_CHECK(buffet_frame_resize(fa, p, 30, 33) && fa->cur == p + 48);
    BT_CHECK(buffet_frame_resize(fa, p, 33, 1) && fa->cur == p + 16);
    buffet_free(al, p, 1, 4, BUFFET_SITE);
    BT_CHECK(fa->cur == p);                                     /* given back */
    BT_CHECK(buffet_frame_alloc_batch(fa, 4, 4, 4, objs) == 4);
    BT_CHECK(objs[1] == (unsigned char *)objs[0] + 4 && objs[3] == (unsigned char *)objs[0] + 12);
    cur = fa->cur;
    BT_CHECK(cur == (unsigned char *)objs[0] + 32);             /* 16 bytes, and a grain more */
    buffet_free(al, objs[3], 4, 4, BUFFET_SITE);
    buffet_free(al, objs[2], 4, 4, BUFFET_SITE);
    BT_CHECK(fa->cur == cur && !buffet_frame_resize(fa, objs[3], 4, 8));
    BT_CHECK(buffet_frame_alloc_batch(fa, 3, 24, 8, objs) == 3);   /* 24 apart: the last is the newest */
    BT_CHECK(buffet_frame_resize(fa, objs[2], 24, 40) && !buffet_frame_resize(fa, objs[1], 24, 40));
    BT_CHECK(buffet_frame_end(fa) == BUFFET_OK);
    buffet_frame_destroy(fa);
out:
    tf_debug_done(d);
}

static void tf_scope_use(void *arg) {
    unsigned char *p = (unsigned char *)arg;
    p[0]++;   /* the scope's memory is still there when its actions run */
}

typedef struct tf_scope_ctx { buffet_scope *s; int allocs; } tf_scope_ctx;
static void tf_scope_alloc_at_end(void *arg) {
    tf_scope_ctx *c = (tf_scope_ctx *)arg;
    /* the scope is still active while its actions run: it allocates and defers more */
    if (buffet_scope_alloc(c->s, 50, 16) != NULL) c->allocs++;
    if (buffet_scope_alloc(c->s, 30000, 16) != NULL) c->allocs++;
}

/* A scope bump-allocates small requests from blocks (few parent requests for many
   allocations), keeps large and over-aligned ones apart, runs its actions with all its memory
   still there (and what they allocate or defer is handled too), and gives everything back. */
static void test_scope_arena(void) {
    buffet_debug *d = tf_debug();
    buffet_allocator a = buffet_debug_allocator(d);
    buffet_scope s;
    tf_scope_ctx ctx;
    unsigned char *first = NULL, *p;
    size_t bytes = 0, i, align;
    size_t allocs;
    BT_CHECK(tf_scope_begin(&s, a, NULL, NULL) == BUFFET_OK);
    allocs = buffet_debug_get_stats(d).total_count;
    for (i = 0; i < 1000; i++) {
        size_t n = 16 + (i * 97) % 241;
        p = (unsigned char *)buffet_scope_alloc(&s, n, 16);
        BT_CHECK(p && tf_aligned(p, 16));
        if (!p) break;
        memset(p, (int)i, n);
        if (!first) first = p;
        bytes += n;
    }
    BT_CHECK(s.count == 1000 && s.bytes == bytes);
    BT_CHECK(buffet_debug_get_stats(d).total_count - allocs <= 8);   /* 4, 8, 16, 32, 64, 64... KiB */
    for (align = 1; align <= 64; align *= 2) {
        p = (unsigned char *)buffet_scope_alloc(&s, 3, align);
        BT_CHECK(p && tf_aligned(p, align));
    }
    allocs = buffet_debug_get_stats(d).total_count;
    p = (unsigned char *)buffet_scope_alloc(&s, 10, 128);         /* over-aligned: its own */
    BT_CHECK(p && tf_aligned(p, 128) && buffet_debug_get_stats(d).total_count == allocs + 1);
    p = (unsigned char *)buffet_scope_alloc(&s, 100000, 16);      /* large: its own */
    BT_CHECK(p && buffet_debug_get_stats(d).total_count == allocs + 2);
    if (p) memset(p, 1, 100000);
    BT_CHECK(buffet_scope_alloc(&s, SIZE_MAX, 16) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_scope_alloc(&s, SIZE_MAX - 40, 8) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_OVERFLOW);
    BT_CHECK(buffet_scope_alloc(&s, 16, 48) == NULL && buffet_alloc_error(NULL) == BUFFET_ERR_INVALID);
    if (first) {
        first[0] = 7;
        BT_CHECK(buffet_scope_defer(&s, tf_scope_use, first) == BUFFET_OK);
    }
    ctx.s = &s;
    ctx.allocs = 0;
    BT_CHECK(buffet_scope_defer(&s, tf_scope_alloc_at_end, &ctx) == BUFFET_OK);
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
    BT_CHECK(ctx.allocs == 2 && !s.active && s.count == 0 && tf_live(d) == 0);
    tf_debug_done(d);
}

static void *tf_scope_thread(void *arg) {
    buffet_scope s;
    buffet_scope_desc desc;
    int i, f;
    memset(&desc, 0, sizeof desc);
    for (f = 0; f < 20; f++) {
        if (buffet_scope_begin(&s, &desc) != BUFFET_OK) return NULL;
        for (i = 0; i < 500; i++) {
            unsigned char *p = (unsigned char *)buffet_scope_alloc(&s, 16 + (size_t)i % 200, 16);
            if (!p) return NULL;
            memset(p, f, 16);
        }
        buffet_scope_end(&s);
    }
    return arg;
}

/* A scope over the heap: the blocks of an ended scope serve the thread's next scope (the
   same memory again, poisoned for ASan in between), and a thread's spares go with it (the
   leak checkers of the ASan and valgrind runs see the rest). */
static void test_scope_heap_spares(void) {
    buffet_scope s;
    buffet_scope_desc desc;
    unsigned char *p, *q;
    pthread_t t[2];
    int ids[2];
    void *r0 = NULL, *r1 = NULL;
    memset(&desc, 0, sizeof desc);
    BT_CHECK(buffet_scope_begin(&s, &desc) == BUFFET_OK);
    p = (unsigned char *)buffet_scope_alloc(&s, 100, 16);
    BT_CHECK(p != NULL);
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
    if (p && BUFFET_TRACK_ASAN) BT_CHECK(tf_asan_poisoned(p, 100));   /* use after the end: caught */
    BT_CHECK(buffet_scope_begin(&s, &desc) == BUFFET_OK);
    q = (unsigned char *)buffet_scope_alloc(&s, 100, 16);
    BT_CHECK(q != NULL);
    if (!tf_on_valgrind()) BT_CHECK(q == p);                     /* the spare block again */
    if (q) memset(q, 0, 100);
    BT_CHECK(buffet_scope_end(&s) == BUFFET_OK);
    BT_CHECK(pthread_create(&t[0], NULL, tf_scope_thread, &ids[0]) == 0);
    BT_CHECK(pthread_create(&t[1], NULL, tf_scope_thread, &ids[1]) == 0);
    BT_CHECK(pthread_join(t[0], &r0) == 0 && pthread_join(t[1], &r1) == 0);
    BT_CHECK(r0 == &ids[0] && r1 == &ids[1]);
}

int main(void) {
    /* frame arenas */
    BT_RUN(test_frame_create_and_state);
    BT_RUN(test_frame_bad_input);
    BT_RUN(test_frame_lifetime);
    BT_RUN(test_frame_chunk_reuse);
    BT_RUN(test_frame_trim);
    BT_RUN(test_frame_chunk_growth);
    BT_RUN(test_frame_oversized);
    BT_RUN(test_frame_alignment_and_arrays);
    BT_RUN(test_frame_resize);
    BT_RUN(test_frame_batch_last_off_grain);
    BT_RUN(test_frame_checkpoint);
    BT_RUN(test_frame_allocator);
    BT_RUN(test_frame_vec);
    BT_RUN(test_frame_tags);
    BT_RUN(test_frame_tag_limits);
    BT_RUN(test_frame_stats_json);
    BT_RUN(test_frame_budget_arena);
    BT_RUN(test_frame_budget_tag);
    BT_RUN(test_frame_budget_thread);
    BT_RUN(test_frame_get_budget);
    BT_RUN(test_frame_budget_callback_reentry);
    BT_RUN(test_frame_logger_reentry);
    BT_RUN(test_frame_alloc_errors);
    BT_RUN(test_frame_create_parents);
    BT_RUN(test_frame_failing_parent);
    BT_RUN(test_frame_use_after_end);
    /* transfers and barriers */
    BT_RUN(test_frame_transfer);
    BT_RUN(test_frame_transfer_unreceived);
    BT_RUN(test_frame_transfer_errors);
    BT_RUN(test_frame_rollback_over_transfer);
    BT_RUN(test_frame_alloc_slow_direct);
    BT_RUN(test_frame_transfer_after_destroy);
    BT_RUN(test_frame_barrier);
    /* scopes */
    BT_RUN(test_scope_order);
    BT_RUN(test_scope_nesting);
    BT_RUN(test_scope_errors);
    BT_RUN(test_scope_allocator);
    BT_RUN(test_scope_parents);
    BT_RUN(test_scope_failing_parent);
    BT_RUN(test_frame_grain);
    BT_RUN(test_frame_chunk_exhaustion);
    BT_RUN(test_frame_newest_rounding);
    BT_RUN(test_scope_arena);
    BT_RUN(test_scope_heap_spares);
    /* pools */
    BT_RUN(test_pool_create);
    BT_RUN(test_pool_create_parents);
    BT_RUN(test_pool_get_put);
    BT_RUN(test_pool_growth);
    BT_RUN(test_pool_bulk);
    BT_RUN(test_pool_put_bulk_null);
    BT_RUN(test_pool_shared);
    BT_RUN(test_pool_allocator);
    BT_RUN(test_pool_allocator_threads);
    BT_RUN(test_pool_double_put_and_foreign);
    BT_RUN(test_pool_double_put_unchecked);
    BT_RUN(test_pool_alignment);
    BT_RUN(test_pool_stats_json);
    BT_RUN(test_pool_destroy_deferred);
    BT_RUN(test_pool_destroy_with_cache);
    BT_RUN(test_pool_destroy_race);
    BT_RUN(test_pool_failing_parent);
    BT_RUN(test_pool_use_after_put);
    /* allocation sites */
    BT_RUN(test_sites);
    /* everything together, on two threads */
    BT_RUN(test_threads_together);
    return bt_finish("test_frame.c");
}
