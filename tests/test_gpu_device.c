/* test_gpu_device.c - buffet_gpu.h's devices, run on every backend present: host always, Vulkan
   where a driver answers (lavapipe in CI, with the validation layers on: any message fails the
   test), CUDA through the stand-in driver library the tests build (build/libfakecuda.so, or
   BUFFET_FAKE_CUDA). For each: memory types by intent and buffet_gpu_explain; buffers of every
   intent; 10,000 buffers of random sizes in few device allocations (the count printed), none
   overlapping another; uploads from a chain of mixed buffers (heap, mmap, pinned) larger than
   the staging memory, downloads into a chain, device copies, async tickets; frames with 3 in
   flight, checked against tickets; bad input (size 0, absurd sizes, unknown intent, bad
   alignment, another device's buffer, out of budget, a failing allocator under the host
   backend), the leak report at destroy, statistics and JSON, the registry provider, and two
   threads creating, uploading and releasing at once. C11 and C++17 (common subset). */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"
#include "../buffet_frame.h"
#include "../buffet_packet.h"
#include "bt.h"

#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

static buffet_gpu_backend tgd_backend;
static const char *tgd_library;
static bt_log tgd_log;

static uint64_t tgd_rng;
static uint64_t tgd_rand(void) {   /* splitmix64 */
    uint64_t z = (tgd_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static buffet_gpu_device_desc tgd_desc(void) {
    buffet_gpu_device_desc d;
    memset(&d, 0, sizeof d);
    d.backend = tgd_backend;
    d.library = tgd_library;
    d.validation = true;
    d.log = bt_logger(&tgd_log);
    d.name = "test";
    return d;
}

static buffet_gpu_device *tgd_open_desc(const buffet_gpu_device_desc *desc) {
    buffet_gpu_device *d = NULL;
    buffet_result r = buffet_gpu_device_create(&d, desc);
    BT_CHECK(r == BUFFET_OK && d != NULL);
    if (r != BUFFET_OK) fprintf(stderr, "  create: %s: %s\n", buffet_result_str(r), tgd_log.last_msg);
    return d;
}

static buffet_gpu_device *tgd_open(void) {
    buffet_gpu_device_desc desc = tgd_desc();
    return tgd_open_desc(&desc);
}

/* No validation message may have been seen; then destroy. */
static void tgd_close(buffet_gpu_device *d) {
    buffet_gpu_stats s = buffet_gpu_get_stats(d);
    BT_CHECK(s.validation_messages == 0);
    if (s.validation_messages) fprintf(stderr, "  validation: %s\n", tgd_log.all);
    buffet_gpu_device_destroy(d);
}

static buffet_buf *tgd_buf(buffet_gpu_device *d, uint64_t size, buffet_gpu_intent intent) {
    buffet_gpu_buf_desc bd;
    buffet_buf *b = NULL;
    memset(&bd, 0, sizeof bd);
    bd.size = size;
    bd.intent = intent;
    bd.name = "test";
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_OK && b != NULL);
    return b;
}

static void tgd_pattern(unsigned char *p, size_t n, uint32_t seed) {
    size_t i;
    for (i = 0; i < n; i++) p[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
}

/* ---------------------------------------------------------------------------------------------
   memory types, intents, buffers */
static void test_types_and_intents(void) {
    buffet_gpu_device *d = tgd_open();
    buffet_gpu_info in;
    char text[2048];
    int intent;
    if (!d) return;
    in = buffet_gpu_get_info(d);
    BT_CHECK(in.backend == tgd_backend && in.backend_name && in.device_name[0] && in.type_count > 0);
    BT_CHECK(in.align && !(in.align & (in.align - 1)));
    printf("  %s: \"%s\", %u memory types, %u heaps\n", in.backend_name, in.device_name, in.type_count,
           in.heap_count);
    for (intent = BUFFET_GPU_DEVICE_LOCAL; intent <= BUFFET_GPU_SHARED; intent++) {
        buffet_buf *b;
        buffet_gpu_native n;
        size_t len = buffet_gpu_explain(d, (buffet_gpu_intent)intent, text, sizeof text);
        BT_CHECK(len > 0 && len < sizeof text && strstr(text, "chosen") != NULL);
        printf("  %s\n", text);
        b = tgd_buf(d, 1000, (buffet_gpu_intent)intent);
        if (!b) continue;
        BT_CHECK(b->kind == BUFFET_BUF_GPU && b->size == 1000 && buffet_buf_refcount(b) == 1);
        BT_CHECK(buffet_gpu_buf_native(b, &n) == BUFFET_OK);
        BT_CHECK(n.size == 1000 && n.offset % in.align == 0 && n.memory != 0);
        BT_CHECK(n.memory_type < in.type_count && in.type_props[n.memory_type] != 0);
        /* host access exactly where the type is host-visible; every intent but device-local has it */
        BT_CHECK((b->data != NULL) == ((in.type_props[n.memory_type] & BUFFET_GPU_MEM_HOST_VISIBLE) != 0));
        if (intent != BUFFET_GPU_DEVICE_LOCAL) BT_CHECK(b->data != NULL);
        if (tgd_backend == BUFFET_GPU_VULKAN) BT_CHECK(n.buffer != 0);
        if (b->data) {
            memset(b->data, 0x5A, 1000);
            BT_CHECK(buffet_gpu_flush(b, 0, 1000) == BUFFET_OK);
            BT_CHECK(buffet_gpu_invalidate(b, 10, 20) == BUFFET_OK);
        } else {
            BT_CHECK(buffet_gpu_flush(b, 0, 1000) == BUFFET_ERR_UNSUPPORTED);
            BT_CHECK(buffet_buf_fill(b, 0, 1, 0) == BUFFET_ERR_INVALID);   /* not host memory */
        }
        BT_CHECK(buffet_gpu_flush(b, 999, 2) == BUFFET_ERR_RANGE);
        buffet_buf_unref(b);
    }
    BT_CHECK(buffet_gpu_explain(d, (buffet_gpu_intent)9, text, sizeof text) > 0 && strstr(text, "not one of"));
    tgd_close(d);
}

/* Memory types by intent on the shapes of real devices (pure logic: on the host suite only). */
static void test_type_fallbacks(void) {
    enum { DL = BUFFET_GPU_MEM_DEVICE_LOCAL, HV = BUFFET_GPU_MEM_HOST_VISIBLE, COH = BUFFET_GPU_MEM_HOST_COHERENT,
           CA = BUFFET_GPU_MEM_HOST_CACHED, MG = BUFFET_GPU_MEM_MANAGED };
    static const struct { const char *what; uint32_t n, props[4]; int want[5]; } shapes[] = {
        /* want[intent]: device-local, upload, readback, shared */
        {"discrete with a BAR", 4, {DL, HV | COH, HV | COH | CA, DL | HV | COH}, {0, 0, 1, 2, 3}},
        {"discrete without a BAR", 3, {DL, HV | COH, HV | COH | CA}, {0, 0, 1, 2, 1}},
        {"integrated", 2, {DL | HV | COH, DL | HV | COH | CA}, {0, 0, 0, 1, 0}},
        {"lavapipe (one type for all)", 1, {DL | HV | COH | CA}, {0, 0, 0, 0, 0}},
        {"CUDA", 4, {DL, HV | COH, HV | COH | CA, DL | HV | COH | MG}, {0, 0, 1, 2, 3}},
        {"a type no buffer may use", 2, {0, HV | COH}, {0, 1, 1, 1, 1}},
        {"nothing host-visible", 1, {DL}, {0, 0, -1, -1, -1}},
    };
    static buffet_gpu_device fake;   /* large: not on the stack */
    char text[1024];
    size_t k;
    int i;
    if (tgd_backend != BUFFET_GPU_HOST) BT_SKIP("none", "memory type choice is backend-independent: run once");
    for (k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        memset(&fake, 0, sizeof fake);
        fake.ops = &buffet__gpu_host_ops;
        fake.caps.type_count = shapes[k].n;
        for (i = 0; i < (int)shapes[k].n; i++) fake.caps.type_props[i] = shapes[k].props[i];
        buffet__gpu_choose_types(&fake);
        for (i = BUFFET_GPU_DEVICE_LOCAL; i <= BUFFET_GPU_SHARED; i++) {
            BT_CHECK(fake.type_for[i] == shapes[k].want[i]);
            if (fake.type_for[i] != shapes[k].want[i]) {
                buffet_gpu_explain(&fake, (buffet_gpu_intent)i, text, sizeof text);
                fprintf(stderr, "  %s: %s\n", shapes[k].what, text);
            }
        }
    }
    buffet_gpu_explain(&fake, BUFFET_GPU_UPLOAD, text, sizeof text);   /* the last shape: upload has none */
    BT_CHECK(strstr(text, "no memory type") != NULL);
}

/* A buffer released twice: the second release is refused and counted, nothing else changes. */
static void test_double_release(void) {
    buffet_gpu_device *d = tgd_open();
    buffet_buf *a, *b;
    if (!d) return;
    a = tgd_buf(d, 3000, BUFFET_GPU_DEVICE_LOCAL);
    b = tgd_buf(d, 3000, BUFFET_GPU_DEVICE_LOCAL);
    if (a && b) {
        buffet_buf_unref(a);
        buffet_buf_unref(a);             /* the record waits among the device's spares: refused */
        BT_CHECK(buffet_gpu_get_stats(d).double_frees == 1 && tgd_log.count[-BUFFET_ERR_DOUBLE_FREE] == 1);
        BT_CHECK(buffet_gpu_get_stats(d).total.allocations == 1);   /* b untouched */
        BT_CHECK(buffet_buf_refcount(b) == 1);
    }
    buffet_buf_unref(b);
    tgd_close(d);
}

/* 10,000 buffers of random sizes: few device allocations, no two overlapping in one memory. */
typedef struct tgd_span { uint64_t memory, off, size; } tgd_span;
static int tgd_span_cmp(const void *a, const void *b) {
    const tgd_span *x = (const tgd_span *)a, *y = (const tgd_span *)b;
    if (x->memory != y->memory) return x->memory < y->memory ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void test_ten_thousand_buffers(void) {
    enum { N = 10000 };
    buffet_gpu_device *d = tgd_open();
    buffet_buf **bufs;
    tgd_span *spans;
    buffet_gpu_stats s;
    size_t i, overlaps = 0;
    uint64_t bytes = 0;
    if (!d) return;
    bufs = (buffet_buf **)calloc(N, sizeof *bufs);
    spans = (tgd_span *)calloc(N, sizeof *spans);
    tgd_rng = 10000;
    for (i = 0; i < N && bufs && spans; i++) {
        uint64_t size = 1 + tgd_rand() % (64 * 1024);
        buffet_gpu_native n;
        bufs[i] = tgd_buf(d, size, (buffet_gpu_intent)(1 + tgd_rand() % 4));
        if (!bufs[i] || buffet_gpu_buf_native(bufs[i], &n) != BUFFET_OK) break;
        spans[i].memory = n.memory;
        spans[i].off = n.offset;
        spans[i].size = size;
        bytes += size;
    }
    BT_CHECK(i == N);
    s = buffet_gpu_get_stats(d);
    printf("  10000 buffers, %.1f MiB: %llu device allocations (%u blocks, %u dedicated)\n",
           (double)bytes / 1048576.0, (unsigned long long)s.device_allocations, s.total.blocks, s.total.dedicated);
    BT_CHECK(s.total.allocations == N);
    BT_CHECK(s.device_allocations <= 4 * 8);   /* 330 MiB in 64 MiB blocks over 4 intents: few */
    qsort(spans, i, sizeof *spans, tgd_span_cmp);
    for (size_t k = 1; k < i; k++)
        if (spans[k].memory == spans[k - 1].memory && spans[k - 1].off + spans[k - 1].size > spans[k].off) overlaps++;
    BT_CHECK(overlaps == 0);
    while (i--) buffet_buf_unref(bufs[i]);
    BT_CHECK(buffet_gpu_wait_idle(d) == BUFFET_OK);
    s = buffet_gpu_get_stats(d);
    /* one empty block kept per memory type (the default), the rest went back */
    BT_CHECK(s.total.allocations == 0 && s.total.blocks <= buffet_gpu_get_info(d).type_count);
    free(bufs);
    free(spans);
    tgd_close(d);
}

/* ---------------------------------------------------------------------------------------------
   transfers */

/* A chain of n bytes in pieces of every host kind, with the pattern of seed. */
static void tgd_chain(buffet_chain *c, buffet_gpu_device *d, size_t n, uint32_t seed, buffet_buf **pinned) {
    unsigned char *all = (unsigned char *)malloc(n);
    size_t at = 0;
    int k = 0;
    tgd_pattern(all, n, seed);
    BT_CHECK(buffet_chain_init(c, buffet_heap()) == BUFFET_OK);
    *pinned = NULL;
    while (at < n) {
        buffet_buf_desc bd;
        buffet_buf *b = NULL, *p = NULL;
        size_t piece = 1 + (size_t)(tgd_rand() % (3 * 1024 * 1024));
        if (piece > n - at) piece = n - at;
        memset(&bd, 0, sizeof bd);
        bd.kind = (k % 3 == 1) ? BUFFET_BUF_MMAP : BUFFET_BUF_HEAP;
        bd.size = piece + 7;
        BT_CHECK(buffet_buf_create(&b, &bd) == BUFFET_OK);
        if (!b) break;
        memcpy((unsigned char *)b->data + 7, all + at, piece);
        if (k % 3 == 2 && buffet_gpu_pin(d, b, &p) == BUFFET_OK) {   /* the device reads it in place */
            BT_CHECK(p->kind == BUFFET_BUF_GPU_PINNED && p->data == b->data);
            BT_CHECK(buffet_chain_append(c, p, 7, piece) == BUFFET_OK);
            if (!*pinned) *pinned = buffet_buf_ref(p);
            buffet_buf_unref(p);
        } else {
            BT_CHECK(buffet_chain_append(c, b, 7, piece) == BUFFET_OK);
        }
        buffet_buf_unref(b);
        at += piece;
        k++;
    }
    free(all);
}

static bool tgd_chain_matches(const buffet_chain *c, size_t n, uint32_t seed) {
    unsigned char *want = (unsigned char *)malloc(n), *got = (unsigned char *)malloc(n);
    bool ok = c->len == n && buffet_chain_copy_out(c, 0, got, n) == BUFFET_OK;
    tgd_pattern(want, n, seed);
    ok = ok && memcmp(want, got, n) == 0;
    free(want);
    free(got);
    return ok;
}

static void test_upload_download(void) {
    const size_t n = 40u << 20;      /* more than the staging memory (16 MiB): its reuse is exercised */
    buffet_gpu_device *d = tgd_open();
    buffet_chain src, back, back2;
    buffet_buf *dev, *dev2, *pinned;
    buffet_gpu_ticket t = 0, t2 = 0;
    buffet_gpu_stats s;
    if (!d) return;
    tgd_rng = 77;
    tgd_chain(&src, d, n, 1, &pinned);
    dev = tgd_buf(d, n, BUFFET_GPU_DEVICE_LOCAL);
    dev2 = tgd_buf(d, n, BUFFET_GPU_DEVICE_LOCAL);
    if (dev && dev2) {
        BT_CHECK(buffet_gpu_upload(d, dev, 0, &src, NULL) == BUFFET_OK);
        BT_CHECK(buffet_chain_init(&back, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_gpu_download(d, dev, 0, n, &back, NULL) == BUFFET_OK);
        BT_CHECK(tgd_chain_matches(&back, n, 1));
        buffet_chain_deinit(&back);
        /* async: device copy, then a download whose bytes are read once its ticket completes */
        BT_CHECK(buffet_gpu_copy(d, dev2, 0, dev, 0, n, &t) == BUFFET_OK && t != 0);
        BT_CHECK(buffet_chain_init(&back2, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_gpu_download(d, dev2, 0, n, &back2, &t2) == BUFFET_OK && t2 >= t);
        BT_CHECK(buffet_gpu_wait(d, t2, UINT64_MAX) == BUFFET_OK);
        BT_CHECK(buffet_gpu_wait(d, t, 0) == BUFFET_OK);   /* earlier tickets are complete too */
        BT_CHECK(tgd_chain_matches(&back2, n, 1));
        buffet_chain_deinit(&back2);
        /* partial: the middle of the buffer, at an odd offset */
        BT_CHECK(buffet_chain_init(&back, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_gpu_download(d, dev, 12345, 1000, &back, NULL) == BUFFET_OK && back.len == 1000);
        {
            unsigned char want[1000], got[1000], all[13345];
            tgd_pattern(all, sizeof all, 1);
            memcpy(want, all + 12345, 1000);
            BT_CHECK(buffet_chain_copy_out(&back, 0, got, 1000) == BUFFET_OK && memcmp(want, got, 1000) == 0);
        }
        buffet_chain_deinit(&back);
        /* range errors change nothing */
        BT_CHECK(buffet_gpu_upload(d, dev, 1, &src, NULL) == BUFFET_ERR_RANGE);
        BT_CHECK(buffet_gpu_download(d, dev, n, 1, &src, NULL) == BUFFET_ERR_RANGE);
        BT_CHECK(buffet_gpu_copy(d, dev, 0, dev, 10, 100, NULL) == BUFFET_ERR_INVALID);   /* overlap */
        BT_CHECK(buffet_gpu_wait(d, UINT64_MAX, 0) == BUFFET_ERR_INVALID);
    }
    s = buffet_gpu_get_stats(d);
    BT_CHECK(s.uploads == 1 && s.upload_bytes == n && s.downloads == 3 && s.copy_commands > 3);
    if (pinned) {
        buffet_gpu_native pn;
        BT_CHECK(buffet_gpu_buf_native(pinned, &pn) == BUFFET_OK && pn.host == pinned->data);
        buffet_buf_unref(pinned);
    }
    buffet_chain_deinit(&src);
    buffet_buf_unref(dev);
    buffet_buf_unref(dev2);
    tgd_close(d);
}

/* A host-visible destination is written in place; an upload intent buffer is read back by a copy. */
static void test_upload_host_visible(void) {
    buffet_gpu_device *d = tgd_open();
    buffet_buf *up, *h = NULL;
    buffet_chain c, back;
    buffet_buf_desc bd;
    if (!d) return;
    up = tgd_buf(d, 4096, BUFFET_GPU_UPLOAD);
    memset(&bd, 0, sizeof bd);
    bd.size = 4000;
    BT_CHECK(buffet_buf_create(&h, &bd) == BUFFET_OK);
    if (up && h) {
        tgd_pattern((unsigned char *)h->data, 4000, 9);
        BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_chain_append(&c, h, 0, 4000) == BUFFET_OK);
        BT_CHECK(buffet_gpu_upload(d, up, 96, &c, NULL) == BUFFET_OK);
        BT_CHECK(memcmp((unsigned char *)up->data + 96, h->data, 4000) == 0);
        BT_CHECK(buffet_chain_init(&back, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_gpu_download(d, up, 96, 4000, &back, NULL) == BUFFET_OK);
        BT_CHECK(tgd_chain_matches(&back, 4000, 9));
        buffet_chain_deinit(&back);
        buffet_chain_deinit(&c);
    }
    buffet_buf_unref(h);
    buffet_buf_unref(up);
    tgd_close(d);
}

/* A packet pool whose regions the device registers (buffet_gpu_region_hook): a chain of its
   packets goes up by DMA, one copy command per packet and no staging; the bytes arrive. */
static void test_packet_pool_pinned(void) {
    enum { NPKT = 300, LEN = 1000 };
    buffet_gpu_device *d = tgd_open();
    buffet_pkt_pool *pool = NULL;
    buffet_pkt_cache *cache = NULL;
    buffet_pkt_pool_desc pd;
    buffet_chain c, back;
    buffet_buf *dev;
    uint64_t before;
    int i;
    if (!d) return;
    memset(&pd, 0, sizeof pd);
    pd.on_region = buffet_gpu_region_hook;
    pd.region_user = d;
    pd.no_huge_pages = true;
    BT_CHECK(buffet_pkt_pool_create(&pool, &pd) == BUFFET_OK);
    BT_CHECK(pool && buffet_pkt_cache_create(&cache, pool, 64) == BUFFET_OK);
    BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
    for (i = 0; i < NPKT && cache; i++) {
        buffet_pkt *pk = buffet_pkt_alloc(cache, LEN);
        unsigned char *data = pk ? (unsigned char *)buffet_pkt_append(pk, LEN) : NULL;
        BT_CHECK(data != NULL);
        if (!data) break;
        tgd_pattern(data, LEN, (uint32_t)i);
        BT_CHECK(buffet_pkt_to_chain(pk, &c) == BUFFET_OK);
        buffet_pkt_free(cache, pk);           /* the chain holds it */
    }
    dev = tgd_buf(d, (uint64_t)NPKT * LEN, BUFFET_GPU_DEVICE_LOCAL);
    if (dev && c.len == (size_t)NPKT * LEN) {
        before = buffet_gpu_get_stats(d).copy_commands;
        BT_CHECK(buffet_gpu_upload(d, dev, 0, &c, NULL) == BUFFET_OK);
        /* in place where the memory is host-visible; else one DMA copy per packet, none staged */
        if (!dev->data) BT_CHECK(buffet_gpu_get_stats(d).copy_commands - before == NPKT);
        BT_CHECK(buffet_chain_init(&back, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_gpu_download(d, dev, 0, c.len, &back, NULL) == BUFFET_OK);
        for (i = 0; i < NPKT; i++) {
            unsigned char want[LEN], got[LEN];
            tgd_pattern(want, LEN, (uint32_t)i);
            BT_CHECK(buffet_chain_copy_out(&back, (size_t)i * LEN, got, LEN) == BUFFET_OK &&
                     memcmp(want, got, LEN) == 0);
        }
        buffet_chain_deinit(&back);
    }
    {   /* memory this device never pinned: refused, logged and counted as a foreign free */
        unsigned long long logged = tgd_log.count[-BUFFET_ERR_NOT_FOUND], foreign = buffet_gpu_get_stats(d).foreign_frees;
        BT_CHECK(buffet_gpu_unpin_memory(d, &c) == BUFFET_ERR_NOT_FOUND);
        BT_CHECK(buffet_gpu_get_stats(d).foreign_frees == foreign + 1 && tgd_log.count[-BUFFET_ERR_NOT_FOUND] == logged + 1);
    }
    buffet_buf_unref(dev);
    buffet_chain_deinit(&c);
    buffet_pkt_cache_destroy(cache);
    buffet_pkt_pool_destroy(pool);            /* its regions are unregistered first */
    tgd_log.count[-BUFFET_ERR_LEAK] = 0;
    tgd_close(d);
    BT_CHECK(tgd_log.count[-BUFFET_ERR_LEAK] == 0);
}

/* ---------------------------------------------------------------------------------------------
   frames: 3 in flight */
static void test_frames(void) {
    buffet_gpu_device_desc desc = tgd_desc();
    buffet_gpu_device *d;
    buffet_gpu_native n[8];
    uint64_t first_off = 0;
    int f;
    desc.frames_in_flight = 3;
    desc.frame_size = 1u << 20;
    d = tgd_open_desc(&desc);
    if (!d) return;
    BT_CHECK(buffet_gpu_frame_alloc(d, 64, 0, BUFFET_GPU_UPLOAD, &n[0]) == BUFFET_ERR_STATE);
    BT_CHECK(buffet_gpu_frame_end(d, 0) == BUFFET_ERR_STATE);
    for (f = 0; f < 8; f++) {
        buffet_gpu_ticket t;
        uint64_t want = (uint64_t)f * 300000;
        BT_CHECK(buffet_gpu_frame_begin(d) == BUFFET_OK);
        BT_CHECK(buffet_gpu_frame_begin(d) == BUFFET_ERR_STATE);
        /* 300,000 bytes a frame in a 1 MiB ring: three frames fit, the fourth reuses frame 0's */
        BT_CHECK(buffet_gpu_frame_alloc(d, 300000, 256, BUFFET_GPU_UPLOAD, &n[f]) == BUFFET_OK);
        BT_CHECK(n[f].host != NULL && n[f].size == 300000);
        if (f == 0) first_off = n[f].offset;
        if (f < 3) BT_CHECK(n[f].offset >= first_off + (want > 0 ? want : 0));
        if (f == 3) BT_CHECK(n[f].offset == first_off);    /* frame 0 was reclaimed at begin */
        memset(n[f].host, f, 300000);
        /* more than the ring holds with 3 frames live: refused, nothing lost */
        BT_CHECK(buffet_gpu_frame_alloc(d, 900000, 0, BUFFET_GPU_UPLOAD, &n[7]) == BUFFET_ERR_EXHAUSTED || f == 7);
        t = 0;
        {
            buffet_buf *a = tgd_buf(d, 4096, BUFFET_GPU_DEVICE_LOCAL), *b = tgd_buf(d, 4096, BUFFET_GPU_DEVICE_LOCAL);
            if (a && b) BT_CHECK(buffet_gpu_copy(d, b, 0, a, 0, 4096, &t) == BUFFET_OK);
            buffet_buf_unref(a);
            buffet_buf_unref(b);
        }
        BT_CHECK(buffet_gpu_frame_end(d, t + 1000) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_gpu_frame_end(d, t) == BUFFET_OK);
        /* frames k-1 and k-2 still hold their bytes */
        if (f >= 2) BT_CHECK(((unsigned char *)n[f - 2].host)[299999] == (unsigned char)(f - 2));
    }
    BT_CHECK(buffet_gpu_frame_alloc(d, 0, 0, BUFFET_GPU_UPLOAD, &n[0]) == BUFFET_ERR_INVALID);
    tgd_close(d);
}

/* One buffet_budget over a frame arena's CPU memory and the GPU device's frame memory. */
static void test_shared_budget(void) {
    buffet_gpu_device_desc desc = tgd_desc();
    buffet_gpu_device *d;
    buffet_frame_arena *a = NULL;
    buffet_frame_desc fd;
    buffet_budget b;
    buffet_gpu_native n;
    memset(&b, 0, sizeof b);
    b.name = "frame";
    b.hard = 1u << 20;
    b.soft = 512u << 10;
    memset(&fd, 0, sizeof fd);
    fd.thread_budget = &b;
    fd.chunk_size = 64u << 10;
    BT_CHECK(buffet_frame_create(&a, &fd) == BUFFET_OK);
    desc.budget = &b;
    desc.frames_in_flight = 1;
    d = tgd_open_desc(&desc);
    if (!d || !a) {
        buffet_frame_destroy(a);
        buffet_gpu_device_destroy(d);
        return;
    }
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK && buffet_gpu_frame_begin(d) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(a, 600u << 10, 16) != NULL);                              /* CPU: 600 KiB */
    BT_CHECK(buffet_gpu_frame_alloc(d, 500u << 10, 0, BUFFET_GPU_UPLOAD, &n) == BUFFET_ERR_BUDGET);  /* 1.1 MiB */
    BT_CHECK(b.hard_failures == 1);
    BT_CHECK(buffet_gpu_frame_alloc(d, 300u << 10, 0, BUFFET_GPU_UPLOAD, &n) == BUFFET_OK);
    BT_CHECK(b.used >= (900u << 10) && b.soft_hits == 1);
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK && buffet_gpu_frame_end(d, 0) == BUFFET_OK);
    /* the next frames: each side takes back what its reclaimed frame charged */
    BT_CHECK(buffet_frame_begin(a) == BUFFET_OK && buffet_gpu_frame_begin(d) == BUFFET_OK);
    BT_CHECK(b.used == 0);
    BT_CHECK(buffet_gpu_frame_alloc(d, 900u << 10, 0, BUFFET_GPU_UPLOAD, &n) == BUFFET_OK);
    BT_CHECK(buffet_frame_alloc(a, 200u << 10, 16) == NULL);                              /* CPU refused now */
    BT_CHECK(buffet_frame_end(a) == BUFFET_OK && buffet_gpu_frame_end(d, 0) == BUFFET_OK);
    buffet_frame_destroy(a);
    tgd_close(d);
}

/* ---------------------------------------------------------------------------------------------
   bad input */
static void test_bad_input(void) {
    buffet_gpu_device_desc desc = tgd_desc();
    buffet_gpu_device *d = tgd_open(), *other;
    buffet_gpu_buf_desc bd;
    buffet_buf *b = NULL, *o, *heap = NULL;
    buffet_buf_desc hd;
    buffet_chain c;
    buffet_gpu_native n;
    if (!d) return;
    BT_CHECK(buffet_gpu_device_create(NULL, &desc) == BUFFET_ERR_INVALID);
    BT_CHECK(buffet_gpu_device_create(&other, NULL) == BUFFET_ERR_INVALID && other == NULL);
    desc.backend = (buffet_gpu_backend)7;
    BT_CHECK(buffet_gpu_device_create(&other, &desc) == BUFFET_ERR_INVALID);
    desc = tgd_desc();
    desc.frames_in_flight = 1000;
    BT_CHECK(buffet_gpu_device_create(&other, &desc) == BUFFET_ERR_INVALID);
    memset(&bd, 0, sizeof bd);
    bd.intent = BUFFET_GPU_DEVICE_LOCAL;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_INVALID && b == NULL);       /* size 0 */
    bd.size = UINT64_MAX;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_TOO_LARGE && b == NULL);
    bd.size = (uint64_t)1 << 62;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) != BUFFET_OK && b == NULL);
    bd.size = 100;
    bd.align = 3;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_INVALID && b == NULL);
    bd.align = (uint64_t)1 << 40;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_TOO_LARGE && b == NULL);
    bd.align = 0;
    bd.intent = (buffet_gpu_intent)0;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_INVALID && b == NULL);
    bd.intent = (buffet_gpu_intent)99;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_INVALID && b == NULL);
    BT_CHECK(buffet_gpu_buf_create(NULL, &bd, &b) == BUFFET_ERR_INVALID);
    /* a host buffer is not a GPU buffer: native, flush, upload refuse it */
    memset(&hd, 0, sizeof hd);
    hd.size = 100;
    BT_CHECK(buffet_buf_create(&heap, &hd) == BUFFET_OK);
    BT_CHECK(buffet_gpu_buf_native(heap, &n) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_gpu_flush(heap, 0, 1) == BUFFET_ERR_FOREIGN);
    BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
    BT_CHECK(buffet_gpu_upload(d, heap, 0, &c, NULL) == BUFFET_ERR_INVALID);
    /* another device's buffer is refused by this one */
    other = tgd_open();
    o = other ? tgd_buf(other, 256, BUFFET_GPU_DEVICE_LOCAL) : NULL;
    if (o) {
        BT_CHECK(buffet_gpu_upload(d, o, 0, &c, NULL) == BUFFET_ERR_INVALID);
        BT_CHECK(buffet_gpu_download(d, o, 0, 1, &c, NULL) == BUFFET_ERR_INVALID && c.len == 0);
        BT_CHECK(buffet_gpu_pin(d, o, &b) == BUFFET_ERR_INVALID && b == NULL);   /* not host memory */
        buffet_buf_unref(o);
    }
    buffet_gpu_device_destroy(other);
    buffet_chain_deinit(&c);
    buffet_buf_unref(heap);
    BT_CHECK(buffet_gpu_get_stats(d).failures >= 7);
    tgd_close(d);
    buffet_gpu_device_destroy(NULL);
}

static void test_budget(void) {
    buffet_gpu_device_desc desc = tgd_desc();
    buffet_gpu_device *d;
    buffet_buf *a, *b = NULL;
    buffet_gpu_buf_desc bd;
    desc.limit = 3u << 20;
    desc.block_size = 1u << 20;
    d = tgd_open_desc(&desc);
    if (!d) return;
    a = tgd_buf(d, 2u << 20, BUFFET_GPU_DEVICE_LOCAL);   /* dedicated: 2 MiB of the 3 */
    memset(&bd, 0, sizeof bd);
    bd.size = 2u << 20;
    bd.intent = BUFFET_GPU_DEVICE_LOCAL;
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_BUDGET && b == NULL);
    BT_CHECK(tgd_log.count[-BUFFET_ERR_BUDGET] >= 1);
    buffet_buf_unref(a);
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_OK && b != NULL);   /* room again */
    buffet_buf_unref(b);
    tgd_close(d);
}

/* The host backend's device memory comes from the desc's allocator: make it fail at every point. */
static void test_failing_allocator(void) {
    uint64_t at;
    if (tgd_backend != BUFFET_GPU_HOST) BT_SKIP("none", "the host backend takes its memory from the allocator");
    for (at = 1; at < 40; at++) {
        buffet_failing f;
        buffet_debug *dbg = NULL;
        buffet_debug_desc dd;
        buffet_gpu_device_desc desc = tgd_desc();
        buffet_gpu_device *d = NULL;
        buffet_chain c, back;
        buffet_buf *b = NULL, *h = NULL;
        buffet_gpu_buf_desc bd;
        buffet_buf_desc hd;
        buffet_result r;
        memset(&dd, 0, sizeof dd);
        BT_CHECK(buffet_debug_create(&dbg, &dd) == BUFFET_OK);
        buffet_failing_init(&f, buffet_debug_allocator(dbg), at, 1);
        desc.allocator = buffet_failing_allocator(&f);
        desc.staging_size = 1u << 16;
        r = buffet_gpu_device_create(&d, &desc);
        if (r == BUFFET_OK) {
            memset(&bd, 0, sizeof bd);
            bd.size = 100000;
            bd.intent = BUFFET_GPU_DEVICE_LOCAL;
            r = buffet_gpu_buf_create(d, &bd, &b);
            BT_CHECK(r == BUFFET_OK || (r == BUFFET_ERR_NOMEM && b == NULL));
            memset(&hd, 0, sizeof hd);
            hd.size = 100000;
            BT_CHECK(buffet_buf_create(&h, &hd) == BUFFET_OK);
            BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
            BT_CHECK(buffet_chain_init(&back, buffet_heap()) == BUFFET_OK);
            if (b && h) {
                memset(h->data, 7, 100000);
                BT_CHECK(buffet_chain_append(&c, h, 0, 100000) == BUFFET_OK);
                r = buffet_gpu_upload(d, b, 0, &c, NULL);
                BT_CHECK(r == BUFFET_OK || r == BUFFET_ERR_NOMEM);
                r = buffet_gpu_download(d, b, 0, 100000, &back, NULL);
                BT_CHECK(r == BUFFET_OK || (r == BUFFET_ERR_NOMEM && back.len == 0));
            }
            buffet_chain_deinit(&c);
            buffet_chain_deinit(&back);
            buffet_buf_unref(h);
            buffet_buf_unref(b);
            buffet_gpu_device_destroy(d);
        } else {
            BT_CHECK(r == BUFFET_ERR_NOMEM && d == NULL);
        }
        BT_CHECK(buffet_debug_get_stats(dbg).live_count == 0);
        buffet_failing_deinit(&f);
        buffet_debug_destroy(dbg);
    }
}

/* The driver fails on request -- the stand-in CUDA driver, or for Vulkan a library in front of
   the real one (tests/gpu_fail_vulkan.c): an allocation the driver refuses, then a device lost
   in the middle of work. Each is a clean error; afterwards nothing of the driver's is live. */
static void test_driver_failures(void) {
    const char *env = getenv("BUFFET_FAIL_VULKAN");
    const char *path = tgd_backend == BUFFET_GPU_CUDA ? tgd_library : env && *env ? env : "build/libfailvulkan.so";
    bool cuda = tgd_backend == BUFFET_GPU_CUDA;
    void *lib;
    long (*control)(const char *, long) = NULL;
    long (*live)(void) = NULL;
    buffet_gpu_device_desc desc = tgd_desc();
    buffet_gpu_device *d = NULL;
    buffet_buf *a, *b = NULL, *h = NULL;
    buffet_gpu_buf_desc bd;
    buffet_buf_desc hd;
    buffet_chain c;
    void *sym;
    if (tgd_backend == BUFFET_GPU_HOST)
        BT_SKIP("none", "the host backend's failures come from its allocator (failing_allocator)");
    if (cuda && !tgd_library) BT_SKIP("none", "a real CUDA driver cannot be made to fail: the stand-in's job");
    lib = dlopen(path, RTLD_NOW);
    if (!lib) BT_SKIP(cuda ? "cuda_fake" : "vulkan_fail", "the failing driver library is not built (see the runner)");
    if ((sym = dlsym(lib, cuda ? "fakecuda_control" : "failvk_control")) != NULL) memcpy(&control, &sym, sizeof sym);
    if (cuda && (sym = dlsym(lib, "fakecuda_live")) != NULL) memcpy(&live, &sym, sizeof sym);
    BT_CHECK(control != NULL && (live != NULL || !cuda));
    if (!control) return;
    control("reset", 0);
    desc.library = path;
    BT_CHECK(buffet_gpu_device_create(&d, &desc) == BUFFET_OK && d != NULL);
    if (d) {
        a = tgd_buf(d, 1000, BUFFET_GPU_DEVICE_LOCAL);
        memset(&bd, 0, sizeof bd);
        bd.size = 80u << 20;                      /* dedicated: one driver allocation */
        bd.intent = BUFFET_GPU_DEVICE_LOCAL;
        control("fail_alloc", 1);
        BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_NOMEM && b == NULL);
        BT_CHECK(buffet_gpu_get_stats(d).total.allocations == 1);   /* nothing half made */
        BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_OK && b != NULL);
        memset(&hd, 0, sizeof hd);
        hd.size = 1000;
        BT_CHECK(buffet_buf_create(&h, &hd) == BUFFET_OK);
        BT_CHECK(buffet_chain_init(&c, buffet_heap()) == BUFFET_OK);
        if (h) BT_CHECK(buffet_chain_append(&c, h, 0, 1000) == BUFFET_OK);
        if (cuda) control("lost_after", 2);
        else control("lose", 1);
        if (a && b) BT_CHECK(buffet_gpu_copy(d, b, 0, a, 0, 1000, NULL) == BUFFET_ERR_DEVICE_LOST);
        if (a) BT_CHECK(buffet_gpu_upload(d, a, 0, &c, NULL) == BUFFET_ERR_DEVICE_LOST || a->data);
        bd.size = 100;
        buffet_buf_unref(b);
        b = NULL;
        BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_ERR_DEVICE_LOST && b == NULL);
        buffet_chain_deinit(&c);
        buffet_buf_unref(h);
        buffet_buf_unref(a);                    /* releasing after a loss is fine */
        buffet_gpu_device_destroy(d);
    }
    if (live) BT_CHECK(live() == 0);
    control("reset", 0);
    if (cuda) {
        control("lost_after", -1);
        control("no_device", 1);
        d = NULL;
        BT_CHECK(buffet_gpu_device_create(&d, &desc) == BUFFET_ERR_NO_DEVICE && d == NULL);
        desc.backend = BUFFET_GPU_AUTO;           /* AUTO moves on: Vulkan or host */
        BT_CHECK(buffet_gpu_device_create(&d, &desc) == BUFFET_OK && d != NULL);
        if (d) BT_CHECK(buffet_gpu_get_info(d).backend != BUFFET_GPU_CUDA);
        buffet_gpu_device_destroy(d);
        control("reset", 0);
        control("no_device", 0);
    }
    desc.backend = tgd_backend;
    desc.library = "/nonexistent/libdriver.so.1";
    d = NULL;
    BT_CHECK(buffet_gpu_device_create(&d, &desc) == BUFFET_ERR_NO_DEVICE && d == NULL);
    dlclose(lib);
}

static void test_leak_report(void) {
    buffet_gpu_device *d = tgd_open();
    buffet_buf *b;
    if (!d) return;
    b = tgd_buf(d, 12345, BUFFET_GPU_READBACK);
    (void)b;                          /* never released: reported and freed at destroy */
    tgd_log.count[-BUFFET_ERR_LEAK] = 0;
    buffet_gpu_device_destroy(d);
    BT_CHECK(tgd_log.count[-BUFFET_ERR_LEAK] == 1);
    BT_CHECK(strstr(tgd_log.last_msg, "12345 bytes") != NULL && strstr(tgd_log.last_msg, "test_gpu_device.c") != NULL);
}

static void test_stats_json(void) {
    buffet_gpu_device *d = tgd_open();
    buffet_buf *b;
    char json[8192];
    size_t len;
    if (!d) return;
    b = tgd_buf(d, 5000, BUFFET_GPU_DEVICE_LOCAL);
    len = buffet_gpu_stats_json(d, json, sizeof json);
    BT_CHECK(len > 0 && len < sizeof json && json[0] == '{' && json[len - 1] == '}');
    BT_CHECK(strstr(json, "\"allocations\":1,") && strstr(json, "\"types\":[") && strstr(json, "\"heaps\":[") &&
             strstr(json, "\"fragmentation\":") && strstr(json, "\"largest_free\":"));
    BT_CHECK(strstr(json, "\"double_frees\":0,") && strstr(json, "\"foreign_frees\":0,") &&
             strstr(json, "\"deferred_releases\":0,"));
    BT_CHECK(buffet_gpu_stats_json(d, json, 10) == len && strlen(json) == 9);
    BT_CHECK(buffet_gpu_stats_json(NULL, json, sizeof json) == 2);
    buffet_buf_unref(b);
    tgd_close(d);
}

static void test_registry(void) {
    buffet_gpu_device *d = tgd_open();
    buffet_registry *r = NULL;
    buffet_request req;
    buffet_buf *b = NULL;
    char why[1024];
    if (!d) return;
    BT_CHECK(buffet_registry_create(&r, NULL) == BUFFET_OK);
    memset(&req, 0, sizeof req);
    req.usage = BUFFET_USAGE_DEVICE_READ | BUFFET_USAGE_HOST_WRITE;
    req.size = 1000;
    /* no device registered: the built-in host providers do not serve device usage */
    BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_ERR_UNSUPPORTED && b == NULL);
    /* registered: a GPU buffer (in host memory under the host backend, which AUTO falls back to) */
    BT_CHECK(buffet_gpu_register(d, r) == BUFFET_OK);
    BT_CHECK(buffet_gpu_register(d, r) == BUFFET_ERR_INVALID);   /* the name is taken */
    BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_OK && b && b->kind == BUFFET_BUF_GPU && b->data);
    buffet_buf_unref(b);
    BT_CHECK(buffet_explain(r, &req, why, sizeof why) > 0 && strstr(why, "gpu"));
    req.usage = BUFFET_USAGE_HOST_READ;   /* no device usage: not the GPU's */
    BT_CHECK(buffet_registry_create_buf(r, &req, &b) == BUFFET_OK && b && b->kind != BUFFET_BUF_GPU);
    buffet_buf_unref(b);
    BT_CHECK(buffet_registry_remove(r, "gpu") == BUFFET_OK);
    buffet_registry_destroy(r);
    tgd_close(d);
}

/* Two threads make, fill, upload and release buffers of one device at once (TSan's test). */
typedef struct tgd_thread { buffet_gpu_device *d; uint32_t seed; int ok; } tgd_thread;
static void *tgd_worker(void *arg) {
    tgd_thread *w = (tgd_thread *)arg;
    int i;
    w->ok = 1;
    for (i = 0; i < 200; i++) {
        buffet_gpu_buf_desc bd;
        buffet_buf *dev = NULL, *h = NULL;
        buffet_buf_desc hd;
        buffet_chain c, back;
        size_t n = 1 + (size_t)((w->seed * 7919u + (unsigned)i * 104729u) % 200000u);
        memset(&bd, 0, sizeof bd);
        bd.size = n;
        bd.intent = BUFFET_GPU_DEVICE_LOCAL;
        memset(&hd, 0, sizeof hd);
        hd.size = n;
        if (buffet_gpu_buf_create(w->d, &bd, &dev) != BUFFET_OK || buffet_buf_create(&h, &hd) != BUFFET_OK) {
            w->ok = 0;
            break;
        }
        tgd_pattern((unsigned char *)h->data, n, w->seed + (uint32_t)i);
        buffet_chain_init(&c, buffet_heap());
        buffet_chain_init(&back, buffet_heap());
        if (buffet_chain_append(&c, h, 0, n) != BUFFET_OK) w->ok = 0;
        {
            buffet_gpu_ticket t = 0;
            if (buffet_gpu_upload(w->d, dev, 0, &c, &t) != BUFFET_OK) w->ok = 0;
            if (buffet_gpu_wait(w->d, t, UINT64_MAX) != BUFFET_OK) w->ok = 0;
        }
        if (buffet_gpu_download(w->d, dev, 0, n, &back, NULL) != BUFFET_OK ||
            !tgd_chain_matches(&back, n, w->seed + (uint32_t)i))
            w->ok = 0;
        buffet_chain_deinit(&c);
        buffet_chain_deinit(&back);
        buffet_buf_unref(h);
        buffet_buf_unref(dev);
    }
    return NULL;
}

static void test_threads(void) {
    buffet_gpu_device_desc desc = tgd_desc();
    buffet_gpu_device *d;
    pthread_t th[2];
    tgd_thread w[2];
    int i;
    desc.staging_size = 1u << 20;   /* small: the threads contend for it */
    d = tgd_open_desc(&desc);
    if (!d) return;
    for (i = 0; i < 2; i++) {
        w[i].d = d;
        w[i].seed = (uint32_t)i + 1;
        BT_CHECK(pthread_create(&th[i], NULL, tgd_worker, &w[i]) == 0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        BT_CHECK(w[i].ok);
    }
    BT_CHECK(buffet_gpu_wait_idle(d) == BUFFET_OK);
    BT_CHECK(buffet_gpu_get_stats(d).total.allocations == 0);
    tgd_close(d);
}

#define TGD_TEST(fn) {&#fn[5], fn}      /* the name without "test_" */
static void tgd_suite(const char *name) {
    static const struct { const char *name; void (*fn)(void); } tests[] = {
        TGD_TEST(test_types_and_intents), TGD_TEST(test_type_fallbacks), TGD_TEST(test_double_release),
        TGD_TEST(test_ten_thousand_buffers), TGD_TEST(test_upload_download), TGD_TEST(test_upload_host_visible),
        TGD_TEST(test_packet_pool_pinned), TGD_TEST(test_frames), TGD_TEST(test_shared_budget),
        TGD_TEST(test_bad_input), TGD_TEST(test_budget), TGD_TEST(test_failing_allocator),
        TGD_TEST(test_driver_failures), TGD_TEST(test_leak_report), TGD_TEST(test_stats_json),
        TGD_TEST(test_registry), TGD_TEST(test_threads)};
    const char *only = getenv("BUFFET_TEST_ONLY");   /* one test by name, for debugging */
    char full[64];
    size_t i;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only && *only && strcmp(only, tests[i].name) != 0) continue;
        snprintf(full, sizeof full, "%s/%s", name, tests[i].name);
        bt_run(full, tests[i].fn);
    }
}

/* Does the backend open here? When it does not, its suite is one skip that says why. */
static int tgd_present(const char *feature, const char *why_absent) {
    buffet_gpu_device_desc desc = tgd_desc();
    buffet_gpu_device *d = NULL;
    buffet_result r = buffet_gpu_device_create(&d, &desc);
    buffet_gpu_device_destroy(d);
    if (r == BUFFET_OK) return 1;
    bt_cur = feature;
    bt_cur_failed = bt_cur_skipped = 0;
    {
        char why[600];
        snprintf(why, sizeof why, "%s (%s: %s)", why_absent, buffet_result_str(r), tgd_log.last_msg);
        bt_skip_(feature, why);
    }
    if (bt_cur_failed) bt_failed++;
    else bt_skipped++;
    return 0;
}

int main(void) {
    const char *fake = getenv("BUFFET_FAKE_CUDA"), *real = getenv("BUFFET_GPU_REAL_CUDA");
    bt_keep_vulkan_driver();
    tgd_backend = BUFFET_GPU_HOST;
    tgd_suite("host");
    tgd_backend = BUFFET_GPU_VULKAN;
    if (bt_mode("valgrind")) {
        /* lavapipe under memcheck takes minutes, and glibc's loader reports its own errors there;
           the plain, ASan and TSan builds run the Vulkan suite */
        bt_cur = "vulkan";
        bt_cur_failed = bt_cur_skipped = 0;
        bt_skip_("vulkan_valgrind", "lavapipe is not run under valgrind (minutes; glibc's dlopen errors)");
        if (bt_cur_failed) bt_failed++;
        else bt_skipped++;
    } else if (tgd_present("vulkan", "no Vulkan driver answers")) {
        /* the suite counts validation messages: without the layer there would be none to count */
        if (strstr(tgd_log.all, "validation asked for")) {
            bt_cur = "vulkan_validation";
            bt_cur_failed = bt_cur_skipped = 0;
            bt_skip_("vulkan_validation", "the Khronos validation layer is not installed: Vulkan runs unchecked");
            if (bt_cur_failed) bt_failed++;
            else bt_skipped++;
        }
        tgd_suite("vulkan");
    }
    tgd_backend = BUFFET_GPU_CUDA;
    if (real && strcmp(real, "1") == 0) {       /* make test-cuda: the real driver and GPU */
        tgd_library = NULL;
        if (tgd_present("cuda", "no CUDA driver or no GPU answers")) tgd_suite("cuda");
    } else {
        tgd_library = fake && *fake ? fake : "build/libfakecuda.so";
        if (tgd_present("cuda_fake", "the stand-in CUDA driver library is not built")) tgd_suite("cuda_fake");
    }
    return bt_finish("test_gpu_device.c");
}
