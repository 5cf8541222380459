// link: -lz
/* core_zlib.c - drive zlib's memory through a buffet allocator. zlib frees without a size, so
   a buffet_adapter (which remembers each block's size) sits between zlib and a debug allocator
   that counts, guards and checks every block zlib asks for.
   Build: cc -std=c11 -O2 examples/core_zlib.c -lz -o core_zlib */
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"
#include <zlib.h>

#define INPUT_SIZE (1u << 20)

static int fail(const char *what, int code) {
    fprintf(stderr, "core_zlib: %s failed (%d)\n", what, code);
    return 1;
}

int main(void) {
    /* zlib -> adapter -> debug allocator -> heap */
    buffet_debug *dbg;
    if (buffet_debug_create(&dbg, &(buffet_debug_desc){ .log = { .fn = buffet_log_stderr } }) != BUFFET_OK)
        return fail("buffet_debug_create", 0);
    buffet_adapter ad;
    buffet_adapter_init(&ad, buffet_debug_allocator(dbg), 0);

    /* The data (from the plain heap, so the debug counters see only zlib's own memory). */
    buffet_allocator heap = buffet_heap();
    unsigned char *in = (unsigned char *)BUFFET_ALLOC(heap, INPUT_SIZE);
    unsigned char *packed = (unsigned char *)BUFFET_ALLOC(heap, INPUT_SIZE * 2);
    unsigned char *out = (unsigned char *)BUFFET_ALLOC(heap, INPUT_SIZE);
    if (!in || !packed || !out) return fail("allocation", 0);
    for (size_t off = 0; off < INPUT_SIZE;) {   /* log-like text: compressible, not trivially */
        char line[80];
        int n = snprintf(line, sizeof line, "%08zx GET /item/%zu status=%d\n", off, (off * 7919) % 10007,
                         off % 13 ? 200 : 404);
        for (int i = 0; i < n && off < INPUT_SIZE; i++) in[off++] = (unsigned char)line[i];
    }

    z_stream zs = { .zalloc = buffet_adapter_zalloc, .zfree = buffet_adapter_zfree, .opaque = &ad };
    int rc = deflateInit(&zs, Z_BEST_COMPRESSION);
    if (rc != Z_OK) return fail("deflateInit", rc);
    zs.next_in = in; zs.avail_in = INPUT_SIZE;
    zs.next_out = packed; zs.avail_out = INPUT_SIZE * 2;
    if ((rc = deflate(&zs, Z_FINISH)) != Z_STREAM_END) return fail("deflate", rc);
    size_t packed_len = zs.total_out;
    deflateEnd(&zs);
    buffet_debug_stats after_deflate = buffet_debug_get_stats(dbg);

    z_stream zi = { .zalloc = buffet_adapter_zalloc, .zfree = buffet_adapter_zfree, .opaque = &ad };
    if ((rc = inflateInit(&zi)) != Z_OK) return fail("inflateInit", rc);
    zi.next_in = packed; zi.avail_in = (uInt)packed_len;
    zi.next_out = out; zi.avail_out = INPUT_SIZE;
    if ((rc = inflate(&zi, Z_FINISH)) != Z_STREAM_END) return fail("inflate", rc);
    size_t out_len = zi.total_out;
    inflateEnd(&zi);

    buffet_debug_stats st = buffet_debug_get_stats(dbg);
    bool same = out_len == INPUT_SIZE && memcmp(in, out, INPUT_SIZE) == 0;
    printf("zlib %s: %u bytes -> %zu bytes compressed (%.1f%%) -> %zu bytes: round trip %s\n",
           zlibVersion(), INPUT_SIZE, packed_len, 100.0 * (double)packed_len / INPUT_SIZE, out_len,
           same ? "ok" : "FAILED");
    printf("zlib's memory through buffet: deflate %zu allocations, inflate %zu; "
           "peak %zu bytes live (adapter headers included)\n",
           after_deflate.total_count, st.total_count - after_deflate.total_count, st.peak_bytes);
    size_t errors = st.double_frees + st.foreign_frees + st.mismatched_frees + st.corruptions;
    size_t leaks = buffet_debug_report_leaks(dbg, stdout);
    if (buffet_debug_check(dbg) != BUFFET_OK) errors++;
    printf("%s: %zu leaks, %zu errors\n", leaks || errors ? "PROBLEM" : "clean", leaks, errors);

    BUFFET_FREE(heap, in, INPUT_SIZE);
    BUFFET_FREE(heap, packed, INPUT_SIZE * 2);
    BUFFET_FREE(heap, out, INPUT_SIZE);
    buffet_debug_destroy(dbg);
    return same && !leaks && !errors ? 0 : 1;
}
