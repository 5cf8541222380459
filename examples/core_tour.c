/* core_tour.c - a tour of buffet.h: a debug allocator, typed allocation, one buffer of each host
   kind, a zero-copy chain of slices of them, the registry, and a leak report.
   Build: cc -std=c11 -O2 examples/core_tour.c -o core_tour */
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"

typedef struct point { double x, y; } point;

static int fail(const char *what, buffet_result r) {
    fprintf(stderr, "core_tour: %s: %s\n", what, buffet_result_str(r));
    return 1;
}

int main(void) {
    /* 1. A debug allocator over the heap: everything below allocates through it, so every
          block is guarded, counted and remembered with the line that allocated it. */
    buffet_debug *dbg;
    buffet_result r = buffet_debug_create(&dbg, &(buffet_debug_desc){ .guard_size = 32 });
    if (r != BUFFET_OK) return fail("buffet_debug_create", r);
    buffet_allocator a = buffet_debug_allocator(dbg);

    /* 2. Typed allocation: the macros fill in size, alignment and the call site. */
    point *p = BUFFET_NEW(a, point);
    int *squares = BUFFET_NEW_ARRAY(a, int, 10);
    if (!p || !squares) return fail("BUFFET_NEW", BUFFET_ERR_NOMEM);
    *p = (point){ .x = 1.5, .y = -2 };
    for (int i = 0; i < 10; i++) squares[i] = i * i;
    printf("BUFFET_NEW point (%.1f, %.1f); BUFFET_NEW_ARRAY squares[9] = %d\n", p->x, p->y, squares[9]);
    BUFFET_DELETE(a, point, p);
    BUFFET_DELETE_ARRAY(a, int, squares, 10);

    /* 3. One buffer of each host kind, each holding one piece of an HTTP request. */
    static const uint32_t kinds[] = { BUFFET_BUF_HEAP, BUFFET_BUF_MMAP, BUFFET_BUF_SHM };
    static const char *kind_names[] = { "heap", "mmap", "shm" };
    static const char *text[] = { "GET /index.html HTTP/1.1\r\n", "Host: example.org\r\n", "\r\n" };
    buffet_buf *bufs[3];
    for (int k = 0; k < 3; k++) {
        r = buffet_buf_create(&bufs[k], &(buffet_buf_desc){ .kind = kinds[k], .size = 4096, .allocator = a,
                                                           .name = "core_tour" });   /* name: SHM only */
        if (r != BUFFET_OK) return fail("buffet_buf_create", r);
        buffet_buf_write(bufs[k], 0, text[k], strlen(text[k]));
        printf("%-4s buffer: %zu bytes, fd %d, %zu bytes mapped\n", kind_names[k], bufs[k]->size,
               bufs[k]->fd, bufs[k]->map_size);
    }

    /* 4. A chain of slices of the three buffers: references, no copies. */
    buffet_chain c, tail;
    buffet_chain_init(&c, a);
    buffet_chain_init(&tail, a);
    for (int k = 0; k < 3; k++) {
        if ((r = buffet_chain_append(&c, bufs[k], 0, strlen(text[k]))) != BUFFET_OK) return fail("append", r);
        buffet_buf_unref(bufs[k]);   /* the chain holds its own reference now */
    }
    size_t end;
    if ((r = buffet_chain_find(&c, 0, "\r\n\r\n", 4, &end)) != BUFFET_OK) return fail("find", r);
    printf("chain: %zu bytes in %zu slices; end of headers at byte %zu (across two slices)\n",
           buffet_chain_len(&c), buffet_chain_count(&c), end);
    if ((r = buffet_chain_split(&c, strlen(text[0]), &tail)) != BUFFET_OK) return fail("split", r);
    char line[64] = { 0 };
    buffet_chain_copy_out(&c, 0, line, buffet_chain_len(&c) - 2);   /* without the \r\n */
    struct iovec iov[4];
    size_t n = buffet_chain_iovec(&tail, 0, SIZE_MAX, iov, 4);
    printf("split: request line \"%s\"; the rest is %zu bytes in %zu iovecs (%zu + %zu) for writev\n",
           line, buffet_chain_len(&tail), n, iov[0].iov_len, n > 1 ? iov[1].iov_len : 0);
    buffet_chain_deinit(&c);
    buffet_chain_deinit(&tail);   /* the last references go: the three buffers are freed */

    /* 5. The registry: which kind of buffer a request gets, and why. */
    buffet_registry *reg;
    if ((r = buffet_registry_create(&reg, &(buffet_registry_desc){ .allocator = a })) != BUFFET_OK) return fail("registry", r);
    buffet_request reqs[2] = {
        { .size = 256 },
        { .usage = BUFFET_USAGE_HOST_WRITE | BUFFET_USAGE_SHARE_PROCESS, .size = 1 << 20 },
    };
    for (int i = 0; i < 2; i++) {
        char why[1024];
        buffet_explain(reg, &reqs[i], why, sizeof why);
        printf("explain request %d:\n%s\n", i + 1, why);
    }
    buffet_registry_destroy(reg);

    /* 6. A deliberate leak, so the debug allocator has something to report. */
    point *forgotten = BUFFET_NEW(a, point);
    size_t leaks = buffet_debug_report_leaks(dbg, stdout);
    printf("the leak above is intentional\n");
    BUFFET_DELETE(a, point, forgotten);   /* ...and freed now, so valgrind stays clean */
    buffet_debug_stats st = buffet_debug_get_stats(dbg);
    printf("debug allocator: %zu allocations, peak %zu bytes live, %zu errors found\n", st.total_count,
           st.peak_bytes, st.double_frees + st.foreign_frees + st.mismatched_frees + st.corruptions);
    buffet_debug_destroy(dbg);
    return leaks == 1 && st.live_count == 0 ? 0 : 1;
}
