/* bench.h - the harness shared by the benchmarks in bench/ (C11; everything is static, so each
   program has its own copy). It offers:
     die()                         print "BENCH_NAME: what" to stderr and exit(1)
     now_ns()                      clock_gettime(CLOCK_MONOTONIC) in ns
     escape(p)                     compiler barrier: p's memory must be assumed read
     cpu_relax(), backoff(&spins)  spin-wait helpers (pause, then sched_yield after 4096 spins)
     rnd()                         xorshift64, one fixed seed: the same sequence in every run
     cmp_double()                  qsort comparator for medians
     ALWAYS_INLINE, NOINLINE       function attributes for timed loops and their wrappers
     spread, print_spread(), note_spread()
                                   the noise report (widest interquartile range / median seen
                                   since the last print_spread())
     fixed_iters, bench_read_iters(), bench_print_iters()
                                   BUFFET_BENCH_ITERS=N: one untimed-in-effect run of each
     bench_table, bench_run()      under `make bench-count` (callgrind, BUFFET_BENCH_COUNT=1):
                                   each contestant's run counted alone, dumped with its table,
                                   name and operations for tools/bench_count.sh
     contestant, measure()         with MAX_CONTESTANTS defined: run(ctx, iters) returns elapsed
                                   ns; median ns/op of REPS alternating repetitions, calibrated
     paired_ratio(a, b)            after measure(): the median over repetitions of b's time over
                                   a's in the same repetition (slow drifts of the machine cancel)
     bench_print_machine(), bench_print_load(), bench_print_reexec()
                                   the "buffet VERSION BENCH_NAME", "machine:", "compiler:",
                                   "load:" lines and the jemalloc re-execution note
     sym(), open_lib(), missing()  dlopen/dlsym helpers for peers loaded at run time
     bench_open_jemalloc()         dlopen jemalloc, re-executing once with more static TLS
     bench_je_version(), bench_mi_version(), bench_tc_version()
     bench_pick_cpus()             the first two CPUs this process may use (BUFFET_BENCH_NOPIN)
     bench_pin_self()              the calling thread onto one CPU, the CPUs it had kept
   Include it after the buffet header (which defines _GNU_SOURCE), with these defined first:
     BENCH_NAME        the program's name as a string literal, e.g. "bench_core"
     REPS              timed repetitions per contestant (odd: a true median)
     MAX_CONTESTANTS   optional: the most contestants measure() takes; without it neither
                       contestant nor measure() is defined (a bench with a harness of its own) */
#ifndef BUFFET_BENCH_H
#define BUFFET_BENCH_H

#if !defined(BENCH_NAME) || !defined(REPS)
#error "bench.h: define BENCH_NAME and REPS before including it"
#endif

#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define BENCH_FN static __attribute__((unused))
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define NOINLINE static __attribute__((noinline))

__attribute__((noreturn)) BENCH_FN void die(const char *what) { fprintf(stderr, BENCH_NAME ": %s\n", what); exit(1); }
BENCH_FN uint64_t now_ns(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
/* The compiler must assume p's memory is read: stops stores and alloc/free pairs being elided. */
static inline void escape(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ volatile("" ::: "memory");
#endif
}
/* Spin a while, then give the CPU away: when something else runs on a 2-CPU machine, the other
   side of a ring may not be running, and pure spinning would measure time slices. */
static inline void backoff(unsigned *spins) {
    if (++*spins < 4096) cpu_relax();
    else sched_yield();
}
static uint64_t rng = 0x9e3779b97f4a7c15u;
BENCH_FN uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
BENCH_FN int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y);
}

/* ---- noise report and BUFFET_BENCH_ITERS ---- */
/* Largest interquartile range / median seen by measure() since the last reset: how noisy. */
static double spread;
static char spread_where[96];
/* BUFFET_BENCH_ITERS=N: run each contestant once for N iterations, untimed in effect (for
   valgrind --tool=callgrind). Set by main; 0: measure normally. */
static size_t fixed_iters;

/* One contestant's quartiles (ns): remembered when its spread is the widest so far. */
BENCH_FN void note_spread(const char *name, double med, double q1, double q3) {
    double iqr = (q3 - q1) / med;
    if (iqr > spread) {
        spread = iqr;
        snprintf(spread_where, sizeof spread_where, "%s, %.2f..%.2f ns", name, q1, q3);
    }
}
/* fixed_iters from BUFFET_BENCH_ITERS (call it first in main), and the line saying it is set. */
BENCH_FN void bench_read_iters(void) {
    if (getenv("BUFFET_BENCH_ITERS")) fixed_iters = (size_t)strtoull(getenv("BUFFET_BENCH_ITERS"), NULL, 10);
}
/* make bench-count: tools/bench_count.sh runs the benches under valgrind --tool=callgrind
   --collect-atstart=no with BUFFET_BENCH_COUNT=1; only contestants' runs are collected, each
   dumped on its own as "bench-count|TABLE|NAME|OPERATIONS", and the script divides. */
#if defined(__has_include)
#  if __has_include(<valgrind/callgrind.h>)
#    include <valgrind/callgrind.h>
#    define BENCH_CALLGRIND 1
#  endif
#endif
static const char *bench_table = "";   /* the table the next contestants belong to */
/* Whether this run counts (BUFFET_BENCH_COUNT under valgrind): bench_count_begin starts collecting,
   bench_count_end stops and dumps NAME's count over its ops operations. A bench whose operations
   are only known after the run (bench_packet's buffers) calls these itself; the rest use bench_run. */
BENCH_FN bool bench_counting(void) {
#ifdef BENCH_CALLGRIND
    static int counting = -1;
    if (counting < 0) counting = getenv("BUFFET_BENCH_COUNT") != NULL && RUNNING_ON_VALGRIND;
    return counting;
#else
    return false;
#endif
}
BENCH_FN void bench_count_begin(void) {
#ifdef BENCH_CALLGRIND
    if (bench_counting()) CALLGRIND_TOGGLE_COLLECT;
#endif
}
BENCH_FN void bench_count_end(const char *name, double ops) {
#ifdef BENCH_CALLGRIND
    if (bench_counting()) {
        char label[512];
        CALLGRIND_TOGGLE_COLLECT;
        snprintf(label, sizeof label, "bench-count|%s|%s|%.0f", bench_table, name, ops);
        CALLGRIND_DUMP_STATS_AT(label);
    }
#else
    (void)name; (void)ops;
#endif
}
/* One run of a contestant, counted alone under make bench-count. */
BENCH_FN uint64_t bench_run(const char *name, double ops_per_iter, uint64_t (*run)(void *, size_t), void *ctx,
                            size_t iters) {
    uint64_t t;
    bench_count_begin();
    t = run(ctx, iters);
    bench_count_end(name, (double)iters * ops_per_iter);
    return t;
}
BENCH_FN void bench_print_iters(void) {
    if (fixed_iters) printf("BUFFET_BENCH_ITERS=%zu: one run of each, timings are not measurements\n", fixed_iters);
}
BENCH_FN void print_spread(void) {
    if (fixed_iters) return;
    printf("   (noise: the widest interquartile range in this section is %.0f%% of its median: %s)\n", spread * 100,
           spread_where);
    spread = 0;
}

#ifdef MAX_CONTESTANTS
/* ---- the harness: run(ctx, iters) returns elapsed ns; ops_per_iter converts to ns/op ---- */
typedef struct contestant {
    const char *name;
    uint64_t (*run)(void *ctx, size_t iters);
    void *ctx;
    double ops_per_iter;
} contestant;

/* Median ns/op of each contestant into out[]. Calibration (from min_iters up, so that a fixed
   cost per run, such as starting threads, stays small) doubles as the warm-up; one more untimed
   run at the final count follows it. Within a repetition the contestants alternate, in reverse
   order every other repetition. */
static double bench_sample[MAX_CONTESTANTS][REPS];   /* the last measure()'s ns/op, by repetition */
BENCH_FN void measure(contestant *c, int n, double *out, double target, size_t min_iters) {
    size_t iters[MAX_CONTESTANTS];
    static double s[MAX_CONTESTANTS][REPS];
    if (fixed_iters) {
        for (int i = 0; i < n; i++)
            out[i] = (double)bench_run(c[i].name, c[i].ops_per_iter, c[i].run, c[i].ctx, fixed_iters) /
                     ((double)fixed_iters * c[i].ops_per_iter);
        return;
    }
    for (int i = 0; i < n; i++) {
        size_t it = min_iters; uint64_t t;
        while ((t = c[i].run(c[i].ctx, it)) < target / 8) it *= 2;
        double want = (double)it * target / (double)(t ? t : 1);
        iters[i] = want < (double)min_iters ? min_iters : (size_t)want;
        c[i].run(c[i].ctx, iters[i]);
    }
    for (int r = 0; r < REPS; r++)
        for (int j = 0; j < n; j++) {
            int i = (r & 1) ? n - 1 - j : j;
            s[i][r] = (double)c[i].run(c[i].ctx, iters[i]) / ((double)iters[i] * c[i].ops_per_iter);
        }
    memcpy(bench_sample, s, sizeof s);
    for (int i = 0; i < n; i++) {
        qsort(s[i], REPS, sizeof(double), cmp_double);
        out[i] = s[i][REPS / 2];
        note_spread(c[i].name, out[i], s[i][REPS / 4], s[i][(3 * REPS) / 4]);
    }
}
BENCH_FN double paired_ratio(int a, int b) {
    double r[REPS];
    for (int k = 0; k < REPS; k++) r[k] = bench_sample[b][k] / bench_sample[a][k];
    qsort(r, REPS, sizeof(double), cmp_double);
    return r[REPS / 2];
}
#endif

/* ---- what ran where ---- */
/* "buffet VERSION BENCH_NAME", "machine: ..." (more: appended to that line, "" for nothing) and
   "compiler: ...". */
BENCH_FN void bench_print_machine(const char *more) {
    char model[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) { p += 2; p[strcspn(p, "\n")] = 0; snprintf(model, sizeof model, "%s", p); }
            break;
        }
    if (f) fclose(f);
    struct utsname u; uname(&u);
    printf("buffet %s " BENCH_NAME "\n", BUFFET_VERSION_STRING);
    printf("machine:  %s, nproc %ld, %s %s, glibc %s%s\n", model, sysconf(_SC_NPROCESSORS_ONLN),
           u.sysname, u.release, gnu_get_libc_version(), more);
#if defined(__clang__)
    printf("compiler: clang %s", __clang_version__);
#else
    printf("compiler: gcc %s", __VERSION__);
#endif
#ifdef __OPTIMIZE__
    printf(" (optimized)\n");
#else
    printf(" (NOT optimized: numbers are meaningless)\n");
#endif
}
/* "load:     " and /proc/loadavg. */
BENCH_FN void bench_print_load(void) {
    char line[512];
    printf("load:     ");
    fflush(stdout);
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fgets(line, sizeof line, f)) printf("%s", line); else printf("unknown\n");
    if (f) fclose(f);
}
/* The note under the peers when bench_open_jemalloc re-executed the program. */
BENCH_FN void bench_print_reexec(bool je_loaded) {
    if (getenv("BUFFET_BENCH_REEXEC") && je_loaded)
        printf("          (jemalloc: re-executed with GLIBC_TUNABLES=%s)\n", getenv("GLIBC_TUNABLES"));
}

/* ---- peers loaded at run time ---- */
/* dlsym into a function pointer without an object-to-function pointer cast (ISO C). */
BENCH_FN bool sym(void *lib, const char *name, void *fnptr) {
    void *s = lib ? dlsym(lib, name) : NULL;
    if (s) memcpy(fnptr, &s, sizeof s);
    return s != NULL;
}
/* dlopen(RTLD_NOW | RTLD_LOCAL); on failure the reason goes to why. */
BENCH_FN void *open_lib(const char *name, char *why, size_t cap) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, cap, "%s", dlerror());
    return h;
}
/* Closes h and says in why that lib lacks name; returns NULL (the handle to store). */
BENCH_FN void *missing(void *h, const char *lib, const char *name, char *why, size_t cap) {
    snprintf(why, cap, "%s has no %s", lib, name);
    dlclose(h);
    return NULL;
}
/* libjemalloc.so.2. jemalloc wants 2.6 KiB of static TLS, more than glibc keeps for dlopen, and
   that is settable only at start-up: when dlopen fails for that reason the program re-executes
   itself once (BUFFET_BENCH_REEXEC marks the second run) with
   GLIBC_TUNABLES=glibc.rtld.optional_static_tls raised. Call it before any output. */
BENCH_FN void *bench_open_jemalloc(char **argv, char *why, size_t cap) {
    void *h = open_lib("libjemalloc.so.2", why, cap);
    if (!h && strstr(why, "static TLS") && !getenv("BUFFET_BENCH_REEXEC")) {
        static char tun[512];
        const char *old = getenv("GLIBC_TUNABLES");
        snprintf(tun, sizeof tun, "%s%sglibc.rtld.optional_static_tls=16384", old ? old : "", old ? ":" : "");
        setenv("GLIBC_TUNABLES", tun, 1);
        setenv("BUFFET_BENCH_REEXEC", "1", 1);
        fflush(stdout);
        execv("/proc/self/exe", argv);
        snprintf(why, cap, "static TLS too small and re-executing failed");
    }
    return h;
}
/* The peers' versions, as their libraries report them ("?" or 0 where they cannot). */
BENCH_FN void bench_je_version(void *je, char *out, size_t cap) {
    int (*mallctl)(const char *, void *, size_t *, void *, size_t);
    const char *v = "?"; size_t len = sizeof v;
    if (sym(je, "mallctl", &mallctl) && mallctl("version", &v, &len, NULL, 0) != 0) v = "?";
    snprintf(out, cap, "%.*s", (int)strcspn(v, "-"), v);   /* "5.3.0-0-g54ea...": 5.3.0 */
}
BENCH_FN void bench_mi_version(void *mi, char *out, size_t cap) {
    int (*mi_version)(void);
    int v = sym(mi, "mi_version", &mi_version) ? mi_version() : 0;
    snprintf(out, cap, "%d.%d.%d", v / 100, v / 10 % 10, v % 10);
}
BENCH_FN void bench_tc_version(void *tc, char *out, size_t cap) {
    const char *(*tc_version)(int *, int *, const char **);
    int ma = 0, mi = 0; const char *patch = "";
    if (sym(tc, "tc_version", &tc_version)) tc_version(&ma, &mi, &patch);
    snprintf(out, cap, "%d.%d%.20s", ma, mi, patch ? patch : "");
}

/* ---- CPUs ---- */
/* out[0], out[1]: the first two CPUs this process may use; -1, -1 when there are fewer than 2
   or BUFFET_BENCH_NOPIN is set (no pinning). */
BENCH_FN void bench_pick_cpus(int out[2]) {
    cpu_set_t set;
    int k = 0;
    out[0] = out[1] = -1;
    if (getenv("BUFFET_BENCH_NOPIN") || sched_getaffinity(0, sizeof set, &set) != 0) return;
    for (int i = 0; i < CPU_SETSIZE && k < 2; i++)
        if (CPU_ISSET(i, &set)) out[k++] = i;
    if (k < 2) out[0] = out[1] = -1;
}
/* The calling thread onto cpu (nothing when cpu < 0); the CPUs it could use go to old (may be
   NULL), for sched_setaffinity(0, sizeof *old, old) to give them back. */
BENCH_FN void bench_pin_self(int cpu, cpu_set_t *old) {
    cpu_set_t set;
    if (old && sched_getaffinity(0, sizeof *old, old) != 0) die("sched_getaffinity failed");
    if (cpu < 0) return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity failed");
}

#endif /* BUFFET_BENCH_H */
