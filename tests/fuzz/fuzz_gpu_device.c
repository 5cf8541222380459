/* fuzz_gpu_device.c - libFuzzer target for buffet_gpu.h's devices, on the host backend. The input
   picks the device (block size, staging size, a limit, a bookkeeping-and-memory allocator that
   fails now and then) and a sequence of operations: buffers of sizes 0, small, huge and near 2^64,
   alignments 0, 3, small, huge, intents in range and not; releases; uploads from chains of one to
   four pieces (heap and pinned) at any offset; downloads of any range; device copies between any
   two buffers (overlapping ones included); frames begun, ended and allocated from in any order;
   another device's buffer and a host buffer where a GPU buffer belongs; statistics. A plain model
   keeps every live buffer's bytes and computes the result each call must return (a call may also
   fail for the allocator that fails, BUFFET_ERR_NOMEM, and then the model reads the bytes back);
   downloads must equal the model, the statistics must count the live buffers. At the end the
   device is destroyed and the debug allocator under it must hold nothing.

   Build (libFuzzer):  clang -x c -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -I. -Itests/fuzz
                       tests/fuzz/fuzz_gpu_device.c -o fuzz_gpu_device
   Replay (any compiler, C or C++): add -DBUFFET_FUZZ_MAIN and give files or folders as arguments. */
#define BUFFET_IMPLEMENTATION
#include "../../buffet_gpu.h"
#include "fuzz.h"

#define FD_LIVE 24
#define FD_MAX 65536             /* largest buffer the model keeps bytes for */
#define FD_STEPS 300

typedef struct fd_buf { buffet_buf *b; unsigned char *bytes; uint64_t size; } fd_buf;

typedef struct fd {
    fz_in in;
    buffet_debug *dbg;
    buffet_failing fail;
    buffet_gpu_device *d, *other;
    buffet_buf *foreign;
    fd_buf live[FD_LIVE];
    unsigned n;
    bool in_frame;
    uint64_t block_size, limit;
} fd;

static buffet_result fd_download(fd *S, buffet_buf *b, uint64_t off, uint64_t len, unsigned char *out) {
    buffet_chain c;
    buffet_result r;
    buffet_chain_init(&c, buffet_heap());
    r = buffet_gpu_download(S->d, b, off, len, &c, NULL);
    if (r == BUFFET_OK) {
        FZ_CHECK(c.len == len);
        FZ_CHECK(buffet_chain_copy_out(&c, 0, out, (size_t)len) == BUFFET_OK);
    } else {
        FZ_CHECK(c.len == 0);     /* nothing appended on error */
    }
    buffet_chain_deinit(&c);
    return r;
}

/* After a call that failed part way: learn the bytes from the device (or drop the buffer). */
static void fd_resync(fd *S, fd_buf *x) {
    if (fd_download(S, x->b, 0, x->size, x->bytes) != BUFFET_OK) {
        buffet_buf_unref(x->b);
        free(x->bytes);
        *x = S->live[--S->n];
    }
}

static void fd_create(fd *S) {
    static const uint64_t aligns[8] = {0, 1, 3, 64, 256, 4096, (uint64_t)1 << 40, 65536};
    buffet_gpu_buf_desc bd;
    buffet_buf *b = NULL;
    buffet_result r, want = BUFFET_OK;
    uint8_t k = fz_u8(&S->in);
    memset(&bd, 0, sizeof bd);
    bd.size = (k & 3) == 0 ? fz_u64(&S->in) : (k & 3) == 1 ? 0u : 1u + fz_u16(&S->in) % FD_MAX;
    bd.intent = (buffet_gpu_intent)((k >> 2) % 6);
    bd.align = aligns[(k >> 5) & 7];
    r = buffet_gpu_buf_create(S->d, &bd, &b);
    if (bd.size == 0 || (bd.align & (bd.align - 1)) || bd.intent < BUFFET_GPU_DEVICE_LOCAL || bd.intent > BUFFET_GPU_SHARED)
        want = BUFFET_ERR_INVALID;
    else if (bd.align > S->block_size) want = BUFFET_ERR_TOO_LARGE;
    if (want != BUFFET_OK) {
        FZ_CHECK(r == want && b == NULL);
        return;
    }
    if (r != BUFFET_OK) {
        FZ_CHECK(b == NULL);
        FZ_CHECK(r == BUFFET_ERR_NOMEM || r == BUFFET_ERR_BUDGET || r == BUFFET_ERR_TOO_LARGE);
                if (r == BUFFET_ERR_TOO_LARGE) FZ_CHECK(bd.size > FD_MAX);
        return;
    }
    FZ_CHECK(b && b->kind == BUFFET_BUF_GPU && b->size == bd.size);
    if (bd.size > FD_MAX || S->n == FD_LIVE) {   /* too large to model: released at once */
        buffet_buf_unref(b);
        return;
    }
    S->live[S->n].b = b;
    S->live[S->n].size = bd.size;
    S->live[S->n].bytes = (unsigned char *)calloc(1, (size_t)bd.size);
    FZ_CHECK(S->live[S->n].bytes != NULL);
    S->n++;
    fd_resync(S, &S->live[S->n - 1]);   /* fresh memory has no defined content */
}

static void fd_upload(fd *S) {
    fd_buf *x = &S->live[fz_u8(&S->in) % S->n];
    uint64_t off = fz_u8(&S->in) & 1 ? fz_u64(&S->in) : fz_u16(&S->in) % (x->size + 1);
    unsigned pieces = 1 + fz_u8(&S->in) % 4, i;
    buffet_chain c;
    unsigned char *all;
    size_t len = 0;
    buffet_result r;
    buffet_chain_init(&c, buffet_heap());
    all = (unsigned char *)malloc(4 * 4096);
    FZ_CHECK(all != NULL);
    for (i = 0; i < pieces; i++) {
        buffet_buf_desc hd;
        buffet_buf *h = NULL, *p = NULL;
        size_t n = fz_u16(&S->in) % 4096 + 1, j;
        uint8_t seed = fz_u8(&S->in);
        memset(&hd, 0, sizeof hd);
        hd.size = n;
        FZ_CHECK(buffet_buf_create(&h, &hd) == BUFFET_OK);
        for (j = 0; j < n; j++) ((unsigned char *)h->data)[j] = all[len + j] = (unsigned char)(seed + j * 13);
        if (seed & 1 && buffet_gpu_pin(S->d, h, &p) == BUFFET_OK) {
            FZ_CHECK(buffet_chain_append(&c, p, 0, n) == BUFFET_OK);
            buffet_buf_unref(p);
        } else {
            FZ_CHECK(buffet_chain_append(&c, h, 0, n) == BUFFET_OK);
        }
        buffet_buf_unref(h);
        len += n;
    }
    r = buffet_gpu_upload(S->d, x->b, off, &c, NULL);
    if (off > x->size || len > x->size - off) {
        FZ_CHECK(r == BUFFET_ERR_RANGE);
    } else if (r == BUFFET_OK) {
        memcpy(x->bytes + off, all, len);
    } else {
        /* the staging memory counts against the device's limit too */
        FZ_CHECK(r == BUFFET_ERR_NOMEM || r == BUFFET_ERR_BUDGET);
        fd_resync(S, x);
    }
    buffet_chain_deinit(&c);
    free(all);
}

static void fd_check_download(fd *S) {
    fd_buf *x = &S->live[fz_u8(&S->in) % S->n];
    uint64_t off = fz_u16(&S->in) % (x->size + 2), len = fz_u16(&S->in) % (x->size + 2);
    unsigned char *got = (unsigned char *)malloc((size_t)len + 1);
    buffet_result r;
    FZ_CHECK(got != NULL);
    r = fd_download(S, x->b, off, len, got);
    if (off > x->size || len > x->size - off) FZ_CHECK(r == BUFFET_ERR_RANGE);
    else if (r == BUFFET_OK) FZ_CHECK(memcmp(got, x->bytes + off, (size_t)len) == 0);
    else FZ_CHECK(r == BUFFET_ERR_NOMEM || r == BUFFET_ERR_BUDGET);   /* the readback memory */
    free(got);
}

static void fd_copy(fd *S) {
    fd_buf *x = &S->live[fz_u8(&S->in) % S->n], *y = &S->live[fz_u8(&S->in) % S->n];
    uint64_t xo = fz_u16(&S->in) % (x->size + 2), yo = fz_u16(&S->in) % (y->size + 2);
    uint64_t len = fz_u16(&S->in) % (FD_MAX + 2);
    buffet_result r = buffet_gpu_copy(S->d, x->b, xo, y->b, yo, len, NULL);
    if (xo > x->size || len > x->size - xo || yo > y->size || len > y->size - yo) {
        FZ_CHECK(r == BUFFET_ERR_RANGE);
    } else if (x == y && len && xo < yo + len && yo < xo + len) {
        FZ_CHECK(r == BUFFET_ERR_INVALID);
    } else if (r == BUFFET_OK) {
        memcpy(x->bytes + xo, y->bytes + yo, (size_t)len);
    } else {
        FZ_CHECK(r == BUFFET_ERR_NOMEM);
        fd_resync(S, x);
    }
}

static void fd_frame(fd *S) {
    uint8_t k = fz_u8(&S->in);
    buffet_gpu_native n;
    buffet_result r;
    switch (k % 3) {
    case 0:
        r = buffet_gpu_frame_begin(S->d);
        FZ_CHECK(S->in_frame ? r == BUFFET_ERR_STATE : r == BUFFET_OK);
        S->in_frame = true;
        break;
    case 1:
        r = buffet_gpu_frame_end(S->d, 0);
        FZ_CHECK(S->in_frame ? r == BUFFET_OK || r == BUFFET_ERR_NOMEM : r == BUFFET_ERR_STATE);
        S->in_frame = false;
        break;
    default: {
        uint64_t size = fz_size(&S->in, 100000);
        buffet_gpu_intent intent = (buffet_gpu_intent)(k / 3 % 6);
        r = buffet_gpu_frame_alloc(S->d, size, 64, intent, &n);
        if (size == 0 || intent < BUFFET_GPU_DEVICE_LOCAL || intent > BUFFET_GPU_SHARED) FZ_CHECK(r == BUFFET_ERR_INVALID);
        else if (!S->in_frame) FZ_CHECK(r == BUFFET_ERR_STATE);
        else if (r == BUFFET_OK) {
            FZ_CHECK(n.size == size && n.offset % 64 == 0);
            if (n.host) memset(n.host, k, (size_t)size);
        } else {
            FZ_CHECK(r == BUFFET_ERR_EXHAUSTED || r == BUFFET_ERR_NOMEM || r == BUFFET_ERR_TOO_LARGE ||
                     r == BUFFET_ERR_BUDGET || r == BUFFET_ERR_OVERFLOW);
        }
    }
    }
}

static void fd_misuse(fd *S) {
    buffet_chain c;
    buffet_gpu_native n;
    buffet_buf_desc hd;
    buffet_buf *h = NULL;
    buffet_chain_init(&c, buffet_heap());
    if (S->foreign) {
        FZ_CHECK(buffet_gpu_upload(S->d, S->foreign, 0, &c, NULL) == BUFFET_ERR_INVALID);
        FZ_CHECK(buffet_gpu_download(S->d, S->foreign, 0, 1, &c, NULL) == BUFFET_ERR_INVALID && c.len == 0);
        if (S->n) FZ_CHECK(buffet_gpu_copy(S->d, S->live[0].b, 0, S->foreign, 0, 1, NULL) == BUFFET_ERR_INVALID);
    }
    memset(&hd, 0, sizeof hd);
    hd.size = 64;
    FZ_CHECK(buffet_buf_create(&h, &hd) == BUFFET_OK);
    FZ_CHECK(buffet_gpu_buf_native(h, &n) == BUFFET_ERR_FOREIGN);
    FZ_CHECK(buffet_gpu_upload(S->d, h, 0, &c, NULL) == BUFFET_ERR_INVALID);
    buffet_buf_unref(h);
    buffet_chain_deinit(&c);
}

static void fd_stats(fd *S) {
    buffet_gpu_stats s = buffet_gpu_get_stats(S->d);
    char json[4096];
    size_t len = buffet_gpu_stats_json(S->d, json, sizeof json);
    FZ_CHECK(s.total.allocations >= S->n);   /* plus the readback buffers a failed download left: none */
    FZ_CHECK(s.total.allocations == S->n);
    FZ_CHECK(len > 0 && len < sizeof json && json[0] == '{' && json[len - 1] == '}');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fd *S = (fd *)calloc(1, sizeof *S);
    buffet_debug_desc dd;
    buffet_gpu_device_desc desc;
    uint8_t k;
    int steps = 0;
    FZ_CHECK(S != NULL);
    S->in.p = data;
    S->in.n = size;
    memset(&dd, 0, sizeof dd);
    FZ_CHECK(buffet_debug_create(&S->dbg, &dd) == BUFFET_OK);
    k = fz_u8(&S->in);
    /* the allocator fails at the n-th call (0: never), to see every failure handled */
    buffet_failing_init(&S->fail, buffet_debug_allocator(S->dbg), (k & 1) ? fz_u8(&S->in) + 1u : 0, (k & 0x40) != 0);
    memset(&desc, 0, sizeof desc);
    desc.backend = BUFFET_GPU_HOST;
    desc.allocator = buffet_failing_allocator(&S->fail);
    S->block_size = desc.block_size = (uint64_t)65536 << (k >> 1 & 3);
    desc.staging_size = (uint64_t)65536 << (k >> 3 & 1);
    desc.frame_size = 65536;
    desc.frames_in_flight = 1 + (k >> 4 & 3);
    desc.max_empty_blocks = (k >> 6 & 1) ? UINT32_MAX : 2;
    /* always a limit: an absurd size must be refused, not handed to malloc (libFuzzer's rss cap) */
    S->limit = desc.limit = (k & 0x80) ? (uint64_t)(fz_u8(&S->in) + 1) << 16 : (uint64_t)64 << 20;
    if (buffet_gpu_device_create(&S->d, &desc) != BUFFET_OK) goto done;
    {
        buffet_gpu_device_desc od;
        buffet_gpu_buf_desc bd;
        memset(&od, 0, sizeof od);
        od.backend = BUFFET_GPU_HOST;
        od.block_size = 65536;   /* small: this device only makes the foreign buffer */
        memset(&bd, 0, sizeof bd);
        bd.size = 256;
        bd.intent = BUFFET_GPU_DEVICE_LOCAL;
        if (buffet_gpu_device_create(&S->other, &od) == BUFFET_OK) buffet_gpu_buf_create(S->other, &bd, &S->foreign);
    }
    while (fz_more(&S->in) && steps++ < FD_STEPS) {
        uint8_t op = fz_u8(&S->in);
        switch (op % 8) {
        case 0: case 1: fd_create(S); break;
        case 2:
            if (S->n) {
                fd_buf *x = &S->live[fz_u8(&S->in) % S->n];
                buffet_buf_unref(x->b);
                free(x->bytes);
                *x = S->live[--S->n];
            }
            break;
        case 3: if (S->n) fd_upload(S); break;
        case 4: if (S->n) fd_check_download(S); break;
        case 5: if (S->n) fd_copy(S); break;
        case 6: fd_frame(S); break;
        default: fd_misuse(S); fd_stats(S); break;
        }
    }
    while (S->n) {
        fd_buf *x = &S->live[--S->n];
        buffet_buf_unref(x->b);
        free(x->bytes);
    }
    fd_stats(S);
    buffet_gpu_device_destroy(S->d);
done:
    buffet_buf_unref(S->foreign);
    buffet_gpu_device_destroy(S->other);
    FZ_CHECK(buffet_debug_get_stats(S->dbg).live_count == 0);
    buffet_failing_deinit(&S->fail);
    buffet_debug_destroy(S->dbg);
    free(S);
    return 0;
}
