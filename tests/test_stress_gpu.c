/* test_stress_gpu.c - buffet_gpu.h's devices under load, on the host backend (every machine):
   threads make and release buffers of random sizes and intents on one device, each holding a
   window of live buffers; every host-visible buffer is filled with a pattern naming its owner
   and checked before it goes, device-local ones get the pattern by an upload and are checked by
   a download, so a range handed out twice, a block released under a live buffer or a copy into
   the wrong place shows as a wrong byte. Frames run on the main thread meanwhile, with their own
   pattern checks. At the end the statistics must show nothing live and the debug allocator no
   leak. Operations: bt_stress_ops() / 1000 per thread (10^4 in the plain gcc build);
   BUFFET_STRESS_SEED repeats a run. C11 and C++17 (common subset). */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"
#include "bt.h"

#include <pthread.h>
#include <time.h>

#define SG_THREADS 3
#define SG_WINDOW 64

static uint64_t sg_seed;

static uint64_t sg_rand(uint64_t *s) {   /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned char sg_byte(uint64_t tag, size_t i) { return (unsigned char)((tag * 31 + i * 7) >> 3); }

typedef struct sg_live { buffet_buf *b; uint64_t tag; } sg_live;
typedef struct sg_thread {
    buffet_gpu_device *d;
    uint64_t rng, ops, bad, failures;
} sg_thread;

/* Give b the pattern of tag: in place when host-visible, else by an upload of a chain. */
static bool sg_fill(buffet_gpu_device *d, buffet_buf *b, uint64_t tag) {
    size_t i, n = b->size;
    if (b->data) {
        for (i = 0; i < n; i++) ((unsigned char *)b->data)[i] = sg_byte(tag, i);
        return buffet_gpu_flush(b, 0, n) == BUFFET_OK;
    } else {
        buffet_buf *h = NULL;
        buffet_buf_desc hd;
        buffet_chain c;
        bool ok;
        memset(&hd, 0, sizeof hd);
        hd.size = n;
        if (buffet_buf_create(&h, &hd) != BUFFET_OK) return false;
        for (i = 0; i < n; i++) ((unsigned char *)h->data)[i] = sg_byte(tag, i);
        buffet_chain_init(&c, buffet_heap());
        ok = buffet_chain_append(&c, h, 0, n) == BUFFET_OK && buffet_gpu_upload(d, b, 0, &c, NULL) == BUFFET_OK;
        buffet_chain_deinit(&c);
        buffet_buf_unref(h);
        return ok;
    }
}

static bool sg_check(buffet_gpu_device *d, buffet_buf *b, uint64_t tag) {
    size_t i, n = b->size;
    bool ok = true;
    if (b->data) {
        for (i = 0; i < n && ok; i++) ok = ((unsigned char *)b->data)[i] == sg_byte(tag, i);
        return ok;
    } else {
        buffet_chain c;
        unsigned char *got = (unsigned char *)malloc(n);
        buffet_chain_init(&c, buffet_heap());
        ok = got && buffet_gpu_download(d, b, 0, n, &c, NULL) == BUFFET_OK &&
             buffet_chain_copy_out(&c, 0, got, n) == BUFFET_OK;
        for (i = 0; i < n && ok; i++) ok = got[i] == sg_byte(tag, i);
        buffet_chain_deinit(&c);
        free(got);
        return ok;
    }
}

static void *sg_worker(void *arg) {
    sg_thread *t = (sg_thread *)arg;
    sg_live live[SG_WINDOW];
    uint64_t i;
    int k;
    memset(live, 0, sizeof live);
    for (i = 0; i < t->ops; i++) {
        unsigned slot = (unsigned)(sg_rand(&t->rng) % SG_WINDOW);
        sg_live *l = &live[slot];
        if (l->b) {
            if (!sg_check(t->d, l->b, l->tag)) t->bad++;
            buffet_buf_unref(l->b);
            l->b = NULL;
        } else {
            buffet_gpu_buf_desc bd;
            uint64_t r = sg_rand(&t->rng);
            memset(&bd, 0, sizeof bd);
            /* mostly small, some past the dedicated size of a 1 MiB block */
            bd.size = (r & 15) == 0 ? 1 + (r >> 8) % (1u << 20) : 1 + (r >> 8) % 8192;
            bd.intent = (buffet_gpu_intent)(1 + (r >> 40) % 4);
            bd.align = (uint64_t)1 << ((r >> 50) % 13);
            if (buffet_gpu_buf_create(t->d, &bd, &l->b) != BUFFET_OK) {
                t->failures++;
                continue;
            }
            l->tag = sg_rand(&t->rng);
            if (!sg_fill(t->d, l->b, l->tag)) t->bad++;
        }
    }
    for (k = 0; k < SG_WINDOW; k++) {
        if (!live[k].b) continue;
        if (!sg_check(t->d, live[k].b, live[k].tag)) t->bad++;
        buffet_buf_unref(live[k].b);
    }
    return NULL;
}

static void test_threads_and_frames(void) {
    buffet_debug *dbg = NULL;
    buffet_debug_desc dd;
    buffet_gpu_device_desc desc;
    buffet_gpu_device *d = NULL;
    pthread_t th[SG_THREADS];
    sg_thread w[SG_THREADS];
    uint64_t ops = bt_stress_ops() / 1000, frames = 0, frame_bad = 0;
    buffet_gpu_stats s;
    int i;
    memset(&dd, 0, sizeof dd);
    BT_CHECK(buffet_debug_create(&dbg, &dd) == BUFFET_OK);
    memset(&desc, 0, sizeof desc);
    desc.backend = BUFFET_GPU_HOST;
    desc.block_size = 1u << 20;           /* small blocks: many made, filled and given back */
    desc.staging_size = 256u << 10;       /* small staging: the threads wait for each other's copies */
    desc.frame_size = 256u << 10;
    desc.frames_in_flight = 3;
    desc.max_empty_blocks = 1;
    desc.allocator = buffet_debug_allocator(dbg);
    BT_CHECK(buffet_gpu_device_create(&d, &desc) == BUFFET_OK);
    if (!d) return;
    printf("  %d threads x %llu operations, seed %llu\n", SG_THREADS, (unsigned long long)ops,
           (unsigned long long)sg_seed);
    for (i = 0; i < SG_THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].d = d;
        w[i].rng = sg_seed + (uint64_t)i * 1000003u;
        w[i].ops = ops;
        BT_CHECK(pthread_create(&th[i], NULL, sg_worker, &w[i]) == 0);
    }
    /* frames meanwhile: each frame's memory holds its pattern until it is reclaimed 3 frames on */
    {
        buffet_gpu_native n[4];
        uint64_t f;
        memset(n, 0, sizeof n);
        for (f = 0; f < ops / 10; f++) {
            size_t size = 1 + (size_t)(f * 7919 % 60000), j;
            if (buffet_gpu_frame_begin(d) != BUFFET_OK) { frame_bad++; break; }
            if (buffet_gpu_frame_alloc(d, size, 64, BUFFET_GPU_UPLOAD, &n[f % 4]) != BUFFET_OK) { frame_bad++; break; }
            memset(n[f % 4].host, (int)(f & 0xFF), size);
            if (f >= 2) {
                const buffet_gpu_native *o = &n[(f - 2) % 4];
                for (j = 0; j < o->size; j++)
                    if (((unsigned char *)o->host)[j] != (unsigned char)((f - 2) & 0xFF)) { frame_bad++; break; }
            }
            if (buffet_gpu_frame_end(d, 0) != BUFFET_OK) { frame_bad++; break; }
            frames++;
        }
    }
    for (i = 0; i < SG_THREADS; i++) {
        pthread_join(th[i], NULL);
        BT_CHECK(w[i].bad == 0);
        BT_CHECK(w[i].failures == 0);
        if (w[i].bad || w[i].failures)
            fprintf(stderr, "  thread %d: %llu wrong buffers, %llu refused\n", i, (unsigned long long)w[i].bad,
                    (unsigned long long)w[i].failures);
    }
    BT_CHECK(frame_bad == 0);
    BT_CHECK(buffet_gpu_wait_idle(d) == BUFFET_OK);
    s = buffet_gpu_get_stats(d);
    printf("  %llu frames; %llu device allocations, %llu uploads, %llu downloads, %llu copy commands\n",
           (unsigned long long)frames, (unsigned long long)s.device_allocations, (unsigned long long)s.uploads,
           (unsigned long long)s.downloads, (unsigned long long)s.copy_commands);
    BT_CHECK(s.total.allocations == 0 && s.total.dedicated == 0 && s.total.blocks <= 4);
    buffet_gpu_device_destroy(d);
    BT_CHECK(buffet_debug_get_stats(dbg).live_count == 0 && buffet_debug_get_stats(dbg).double_frees == 0);
    BT_CHECK(buffet_debug_check(dbg) == BUFFET_OK);
    buffet_debug_destroy(dbg);
}

int main(void) {
    const char *s = getenv("BUFFET_STRESS_SEED");
    sg_seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    BT_RUN(test_threads_and_frames);
    return bt_finish("test_stress_gpu.c");
}
