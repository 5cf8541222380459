/* fuzz.h - what buffet's fuzzers (tests/fuzz/fuzz_*.c) share: a reader that turns the input bytes
   into operations, a check that stops the run at the first difference from the reference model,
   and, when built with -DBUFFET_FUZZ_MAIN (no libFuzzer: gcc, C++, valgrind, qemu), a main that
   replays files and folders of inputs, so that the seed corpus is a regression test everywhere.
   A fuzzer defines LLVMFuzzerTestOneInput and includes this file after the buffet headers. */
#ifndef BUFFET_FUZZ_H
#define BUFFET_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The input, read front to back; past its end every read gives 0, so any input is a program. */
typedef struct fz_in { const uint8_t *p; size_t n; } fz_in;

static inline int fz_more(const fz_in *in) { return in->n > 0; }
static inline uint8_t fz_u8(fz_in *in) {
    uint8_t v = 0;
    if (in->n) { v = *in->p++; in->n--; }
    return v;
}
static inline uint16_t fz_u16(fz_in *in) { uint16_t lo = fz_u8(in); return (uint16_t)(lo | (uint16_t)(fz_u8(in) << 8)); }
static inline uint32_t fz_u32(fz_in *in) { uint32_t lo = fz_u16(in); return lo | ((uint32_t)fz_u16(in) << 16); }
static inline uint64_t fz_u64(fz_in *in) { uint64_t lo = fz_u32(in); return lo | ((uint64_t)fz_u32(in) << 32); }
/* A size that is mostly small but can be 0, huge or overflowing: what hostile input looks like. */
static inline size_t fz_size(fz_in *in, size_t small_max) {
    uint8_t k = fz_u8(in);
    switch (k & 7) {
    case 0: return 0;
    case 1: return SIZE_MAX - (size_t)(k >> 3);
    case 2: return ((size_t)1 << (k >> 3 & 31)) + (size_t)fz_u8(in) - 128;
    default: return small_max ? (size_t)fz_u16(in) % (small_max + 1) : 0;
    }
}

/* A difference from the model: print where and why, then abort so libFuzzer keeps the input. */
#define FZ_CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)

#ifdef __cplusplus
extern "C"
#endif
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef BUFFET_FUZZ_MAIN
#include <dirent.h>
#include <sys/stat.h>

static int fz_replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (!f) { perror(path); return 1; }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return 1; }
    buf = (uint8_t *)malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); fclose(f); return 1; }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

/* Each argument is an input file or a folder of them; prints how many ran. */
int main(int argc, char **argv) {
    int i, runs = 0, bad = 0;
    for (i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { perror(argv[i]); bad++; continue; }
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            char path[4096];
            while (d && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') continue;
                snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
                bad += fz_replay_file(path); runs++;
            }
            if (d) closedir(d);
        } else { bad += fz_replay_file(argv[i]); runs++; }
    }
    printf("%s: %d inputs replayed, %d unreadable\n", argv[0], runs, bad);
    return bad || runs == 0 ? 1 : 0;
}
#endif
#endif
