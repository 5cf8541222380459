// count-iters: 20000
// link: -ldl
// pkg-config-optional: vulkan
/* bench_gpu.c - buffet_gpu.h against the peers a GPU programmer would otherwise use, side by side
   in one process run. Sections (BUFFET_BENCH_ONLY=a... picks them; later sections add the
   backends):
     a) suballocator: buffet_gpu_vblock (TLSF over offsets) alone, no memory behind it:
        1. the alloc + free pair at a steady fill: a block of 256 MiB (min_align 256) holding
           SA_LIVE allocations of random sizes 256 B .. 1 MiB (log-uniform, aligned to 256: what
           buffers ask a Vulkan heap for); each pair frees a random live one and allocates a new
           random size in its place. The sizes, alignments and victims are drawn before any timing,
           into tables the timed loops only read (the same tables for every contestant), so that
           the timed loop is the allocator's calls plus three table reads and a store; that loop
           alone, with no allocator in it, is timed too ("the loop alone") and taken off the
           "net" column. Then the same with one size (64 KiB): random sizes make the class
           searches and merges coin tosses for the branch predictor, which is most of the
           difference between the two. Then random sizes with random alignments (one request in 8
           aligned to 4 KiB, one in 32 to 64 KiB, as images ask; the rest 256).
        2. waste after 10^6 random operations at a realistic fill (the live requested bytes held
           near 60% of the block, the same sequence for every contestant): bytes reserved beyond
           those requested (internal waste), fragmentation of the free space
           (1 - largest free / total free), and allocations refused while enough bytes were free;
           then the buddy's figures over buffet's, the pair time's among them, as ratios.
   Peers:
     - a power-of-two buddy allocator over offsets, written here (sizes rounded up to a power of
       two, orders 256 B .. the block, buddies merged on free, free lists per order found with a
       bitmap): what "size classes rounded up to powers of two" costs and wastes.
     - VulkanMemoryAllocator's virtual block (TLSF) and stand-alone TLSF libraries: none is
       packaged in Debian 12 (apt-cache search tlsf / vulkan-memory-allocator: nothing), so none
       runs here; the figure for VMA (about 18 ns a pair on a 3.4 GHz core) is printed
       as the goal's reference instead.
   Every number is the median of REPS repetitions after a warm-up; within a repetition the
   contestants alternate (order reversed every other repetition); clock_gettime(CLOCK_MONOTONIC).
   Ratios are peer / buffet: above 1 means buffet is faster.
   Environment: BUFFET_BENCH_ONLY=a picks sections; BUFFET_BENCH_ITERS=N runs each contestant once
   for N iterations (for valgrind --tool=callgrind).
   Build: gcc -std=c11 -O2 -pthread bench/bench_gpu.c -o bench_gpu (-DTARGET_NS=1e8: longer timed
   repetitions, for a noisy machine).
   Instructions per pair: BUFFET_BENCH_ONLY=a BUFFET_BENCH_ITERS=200000 valgrind --tool=callgrind
   --toggle-collect=run_pairs_buffet --dump-after=run_pairs_buffet ./bench_gpu: one dump per
   table (random sizes, 64 KiB, random alignments), each 200000 pairs plus the loop. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"   /* first: buffet.h defines _GNU_SOURCE for the headers below */

#define BENCH_NAME "bench_gpu"
#define REPS 11                  /* timed repetitions per contestant (odd: a true median) */
#ifndef TARGET_NS
#define TARGET_NS 10000000.0     /* each timed repetition runs about this long */
#endif
#define MAX_CONTESTANTS 4
#include "bench.h"

/* ---------------------------------------------------------------------------------------------
   a) suballocator */
#define SA_BLOCK ((uint64_t)256 << 20)
#ifndef SA_LIVE
#define SA_LIVE 1300               /* ~160 MiB live of 256: about 60% */
#endif
#define SA_TABLE 65536             /* random sizes and victims, cycled */
#define SA_ALIGN 256
#define SA_OPS 1000000
#define SA_FILL 0.60

static uint64_t sa_size[SA_TABLE];
static uint64_t sa_fixed[SA_TABLE];   /* every one 64 KiB: the branch predictor's best case */
static uint16_t sa_victim[SA_TABLE];
static uint64_t sa_align[SA_TABLE];   /* SA_ALIGN, or 4 KiB (1 in 8), or 64 KiB (1 in 32) */
static uint64_t sa_align_fixed[SA_TABLE];   /* every one SA_ALIGN */

/* 256 B .. 1 MiB, log-uniform (as many small as large buffers), in steps of 16 bytes. */
static uint64_t sa_random_size(void) {
    unsigned e = 8 + (unsigned)(rnd() % 12);   /* 2^8 .. 2^19, then up to twice that */
    uint64_t s = ((uint64_t)1 << e) + (rnd() % ((uint64_t)1 << e));
    return (s + 15) & ~(uint64_t)15;
}

/* ---- the buddy peer ---- */
#define BD_MIN_LOG 8               /* 256 B */
#define BD_MAX_ORDERS 40
#define BD_NONE UINT32_MAX
typedef struct buddy {
    uint64_t size;                 /* a power of two */
    unsigned orders;               /* order k holds blocks of 2^(BD_MIN_LOG + k) bytes */
    uint64_t nonempty;             /* bit k: list k has blocks */
    uint32_t head[BD_MAX_ORDERS];
    uint32_t *next, *prev;         /* per 256-byte unit: list links of the free block starting there */
    uint8_t *order;                /* per unit: order of the block starting there */
    uint8_t *is_free;              /* per unit: 1 when a free block starts there */
    uint64_t reserved;             /* bytes of blocks handed out */
} buddy;

static void bd_push(buddy *b, unsigned k, uint32_t u) {
    b->next[u] = b->head[k];
    b->prev[u] = BD_NONE;
    if (b->head[k] != BD_NONE) b->prev[b->head[k]] = u;
    b->head[k] = u;
    b->nonempty |= (uint64_t)1 << k;
    b->order[u] = (uint8_t)k;
    b->is_free[u] = 1;
}
static void bd_unlink(buddy *b, unsigned k, uint32_t u) {
    if (b->prev[u] != BD_NONE) b->next[b->prev[u]] = b->next[u];
    else b->head[k] = b->next[u];
    if (b->next[u] != BD_NONE) b->prev[b->next[u]] = b->prev[u];
    if (b->head[k] == BD_NONE) b->nonempty &= ~((uint64_t)1 << k);
    b->is_free[u] = 0;
}
static void bd_init(buddy *b, uint64_t size) {
    size_t units = (size_t)(size >> BD_MIN_LOG);
    memset(b, 0, sizeof *b);
    b->size = size;
    b->orders = (unsigned)(63 - __builtin_clzll(size)) - BD_MIN_LOG + 1;
    for (unsigned k = 0; k < BD_MAX_ORDERS; k++) b->head[k] = BD_NONE;
    b->next = (uint32_t *)malloc(units * sizeof(uint32_t));
    b->prev = (uint32_t *)malloc(units * sizeof(uint32_t));
    b->order = (uint8_t *)calloc(units, 1);
    b->is_free = (uint8_t *)calloc(units, 1);
    if (!b->next || !b->prev || !b->order || !b->is_free) die("buddy: out of memory");
    bd_push(b, b->orders - 1, 0);
}
static void bd_deinit(buddy *b) { free(b->next); free(b->prev); free(b->order); free(b->is_free); }
/* Returns the offset, or UINT64_MAX when no block is big enough. */
static inline uint64_t bd_alloc(buddy *b, uint64_t size) {
    unsigned want = size <= ((uint64_t)1 << BD_MIN_LOG) ? 0 : (unsigned)(64 - __builtin_clzll(size - 1)) - BD_MIN_LOG;
    uint64_t avail = want < 64 ? b->nonempty & (~(uint64_t)0 << want) : 0;
    if (!avail) return UINT64_MAX;
    unsigned k = (unsigned)__builtin_ctzll(avail);
    uint32_t u = b->head[k];
    bd_unlink(b, k, u);
    while (k > want) {   /* split: the upper half goes back */
        k--;
        bd_push(b, k, u + ((uint32_t)1 << k));
    }
    b->order[u] = (uint8_t)want;
    b->reserved += (uint64_t)1 << (want + BD_MIN_LOG);
    return (uint64_t)u << BD_MIN_LOG;
}
static inline void bd_free(buddy *b, uint64_t off) {
    uint32_t u = (uint32_t)(off >> BD_MIN_LOG);
    unsigned k = b->order[u];
    b->reserved -= (uint64_t)1 << (k + BD_MIN_LOG);
    while (k + 1 < b->orders) {
        uint32_t bu = u ^ ((uint32_t)1 << k);
        if (!b->is_free[bu] || b->order[bu] != k) break;
        bd_unlink(b, k, bu);
        u &= ~((uint32_t)1 << k);
        k++;
    }
    bd_push(b, k, u);
}
static uint64_t bd_largest_free(const buddy *b) {
    return b->nonempty ? (uint64_t)1 << (63 - __builtin_clzll(b->nonempty) + BD_MIN_LOG) : 0;
}

/* ---- the pair workload ---- */
typedef struct sa_ctx {
    int kind;                      /* 0: buffet, 1: buddy, 2: the loop alone */
    buffet_gpu_vblock *vb;
    buddy bd;
    buffet_gpu_valloc h[SA_LIVE];  /* 0: the slot is empty (a refused allocation) */
    uint64_t off[SA_LIVE];
    const uint64_t *sizes;         /* sa_size or sa_fixed */
    const uint64_t *aligns;        /* sa_align or sa_align_fixed */
    size_t pos;                    /* where in the tables the next run starts */
    uint64_t refused;
} sa_ctx;

static bool sa_take(sa_ctx *x, unsigned slot, uint64_t size) {
    if (x->kind == 0) {
        uint64_t off;
        if (buffet_gpu_vblock_alloc(x->vb, size, SA_ALIGN, &off, &x->h[slot]) != BUFFET_OK) { x->h[slot] = 0; return false; }
        x->off[slot] = off;
    } else {
        uint64_t off = bd_alloc(&x->bd, size);
        if (off == UINT64_MAX) { x->h[slot] = 0; return false; }
        x->off[slot] = off;
        x->h[slot] = 1;
    }
    return true;
}

static void sa_setup(sa_ctx *x, int kind, const uint64_t *sizes, const uint64_t *aligns) {
    buffet_gpu_vblock_desc d;
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->sizes = sizes;
    x->aligns = aligns;
    if (kind == 0) {
        memset(&d, 0, sizeof d);
        d.size = SA_BLOCK;
        d.min_align = SA_ALIGN;   /* a heap whose buffers are all aligned so: what a Vulkan backend sets */
        d.name = "bench";
        if (buffet_gpu_vblock_create(&x->vb, &d) != BUFFET_OK) die("vblock create failed");
    } else if (kind == 1) bd_init(&x->bd, SA_BLOCK);
    if (kind == 2) return;
    for (unsigned i = 0; i < SA_LIVE; i++) sa_take(x, i, sizes[(i * 7919u) % SA_TABLE]);
}

static void sa_teardown(sa_ctx *x) {
    if (x->kind == 0) {
        buffet_gpu_vblock_reset(x->vb);
        buffet_gpu_vblock_destroy(x->vb);
    } else if (x->kind == 1) bd_deinit(&x->bd);
}

static uint64_t run_pairs_buffet(void *vctx, size_t iters) {
    sa_ctx *x = (sa_ctx *)vctx;
    size_t p = x->pos;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++, p = (p + 1) & (SA_TABLE - 1)) {
        unsigned v = sa_victim[p];
        uint64_t off;
        if (x->h[v]) buffet_gpu_vblock_free(x->vb, x->h[v]);
        if (buffet_gpu_vblock_alloc(x->vb, x->sizes[p], x->aligns[p], &off, &x->h[v]) != BUFFET_OK) {
            x->h[v] = 0;
            x->refused++;
        }
        escape(&x->h[v]);
    }
    x->pos = p;
    return now_ns() - t0;
}

static uint64_t run_pairs_buddy(void *vctx, size_t iters) {
    sa_ctx *x = (sa_ctx *)vctx;
    size_t p = x->pos;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++, p = (p + 1) & (SA_TABLE - 1)) {
        unsigned v = sa_victim[p];
        if (x->h[v]) bd_free(&x->bd, x->off[v]);
        x->off[v] = bd_alloc(&x->bd, x->sizes[p] > x->aligns[p] ? x->sizes[p] : x->aligns[p]);
        x->h[v] = x->off[v] != UINT64_MAX;
        x->refused += !x->h[v];
        escape(&x->off[v]);
    }
    x->pos = p;
    return now_ns() - t0;
}

/* The timed loop with no allocator in it: the same table reads and store, what the pair loops
   cost beyond their calls. */
static uint64_t run_pairs_none(void *vctx, size_t iters) {
    sa_ctx *x = (sa_ctx *)vctx;
    size_t p = x->pos;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++, p = (p + 1) & (SA_TABLE - 1)) {
        unsigned v = sa_victim[p];
        x->h[v] = (x->h[v] + x->sizes[p]) ^ x->aligns[p];
        escape(&x->h[v]);
    }
    x->pos = p;
    return now_ns() - t0;
}

/* ---- the waste workload: one seeded sequence, replayed on each allocator ---- */
typedef struct sa_waste {
    uint64_t requested, reserved, largest_free, refused, refused_with_room, ops;
    double fragmentation;
} sa_waste;

static sa_waste sa_replay(int kind) {
    static uint64_t live_off[1 << 16], live_size[1 << 16];
    static buffet_gpu_valloc live_h[1 << 16];
    sa_waste w;
    buffet_gpu_vblock *vb = NULL;
    buddy bd;
    buffet_gpu_vblock_desc d;
    unsigned n = 0;
    uint64_t saved = rng;
    memset(&w, 0, sizeof w);
    rng = 0x5eed5eed5eedull;   /* the same sequence for each */
    if (kind == 0) {
        memset(&d, 0, sizeof d);
        d.size = SA_BLOCK;
        d.min_align = SA_ALIGN;   /* a heap whose buffers are all aligned so: what a Vulkan backend sets */
        if (buffet_gpu_vblock_create(&vb, &d) != BUFFET_OK) die("vblock create failed");
    } else bd_init(&bd, SA_BLOCK);
    for (unsigned i = 0; i < SA_OPS; i++) {
        /* allocate while the requested bytes are below the fill, else free; a little noise */
        bool grow = (double)w.requested < SA_FILL * (double)SA_BLOCK ? rnd() % 8 != 0 : rnd() % 8 == 0;
        if ((grow && n < (1u << 16)) || n == 0) {
            uint64_t size = sa_random_size(), off = 0;
            bool ok;
            if (kind == 0) ok = buffet_gpu_vblock_alloc(vb, size, SA_ALIGN, &off, &live_h[n]) == BUFFET_OK;
            else ok = (off = bd_alloc(&bd, size)) != UINT64_MAX;
            if (!ok) {
                uint64_t reserved = kind == 0 ? buffet_gpu_vblock_get_stats(vb).allocated_bytes : bd.reserved;
                w.refused++;
                w.refused_with_room += SA_BLOCK - reserved >= size;
                continue;
            }
            live_off[n] = off;
            live_size[n++] = size;
            w.requested += size;
        } else {
            unsigned k = (unsigned)(rnd() % n);
            if (kind == 0) buffet_gpu_vblock_free(vb, live_h[k]);
            else bd_free(&bd, live_off[k]);
            w.requested -= live_size[k];
            live_off[k] = live_off[--n];
            live_size[k] = live_size[n];
            live_h[k] = live_h[n];
        }
    }
    w.ops = SA_OPS;
    if (kind == 0) {
        buffet_gpu_vblock_stats st = buffet_gpu_vblock_get_stats(vb);
        w.reserved = st.allocated_bytes;
        w.largest_free = st.largest_free;
        w.fragmentation = st.fragmentation;
        buffet_gpu_vblock_destroy(vb);   /* live ones would be logged: there is no logger */
    } else {
        w.reserved = bd.reserved;
        w.largest_free = bd_largest_free(&bd);
        w.fragmentation = bd.size - bd.reserved ? 1.0 - (double)w.largest_free / (double)(bd.size - bd.reserved) : 0.0;
        bd_deinit(&bd);
    }
    rng = saved;
    return w;
}

static double goal_pair_ns = -1, goal_pair_net = -1;
static double goal_waste_buffet = -1, goal_waste_buddy = -1;

static void section_a(void) {
    static sa_ctx x[3];
    static const char *what[3] = {
        NULL, "   the same with every size 64 KiB (no branch left to mispredict: the best case):\n",
        "   random sizes, random alignments (1 in 8 aligned to 4 KiB, 1 in 32 to 64 KiB, else 256):\n" };
    static const char *table[3] = {"a) suballocator pair, random sizes", "a) suballocator pair, every size 64 KiB",
                                   "a) suballocator pair, random sizes and alignments"};
    contestant c[3];
    double r[3], pair_ratio = 0;
    sa_waste w[2];
    printf("\na) suballocator over offsets: alloc + free pair, sizes 256 B .. 1 MiB (log-uniform), aligned to %d,\n"
           "   a %llu MiB block holding %d allocations (about 60%% full); ns per pair (net: less the loop\n"
           "   alone)\n",
           SA_ALIGN, (unsigned long long)(SA_BLOCK >> 20), SA_LIVE);
    printf("   %-36s %9s %9s %12s\n", "contestant", "ns/pair", "net", "peer/buffet");
    for (int k = 0; k < 3; k++) {
        const uint64_t *sizes = k == 1 ? sa_fixed : sa_size, *aligns = k == 2 ? sa_align : sa_align_fixed;
        for (int i = 0; i < 3; i++) sa_setup(&x[i], i, sizes, aligns);
        c[0] = (contestant){ "buffet_gpu_vblock (TLSF)", run_pairs_buffet, &x[0], 1.0 };
        c[1] = (contestant){ "power-of-two buddy (in this file)", run_pairs_buddy, &x[1], 1.0 };
        c[2] = (contestant){ "the loop alone (no allocator)", run_pairs_none, &x[2], 1.0 };
        bench_table = table[k];
        measure(c, 3, r, TARGET_NS, 4096);
        if (k) printf("%s", what[k]);
        for (int i = 0; i < 2; i++)
            printf("   %-36s %9.2f %9.2f %11.2fx\n", c[i].name, r[i], r[i] - r[2],
                   (r[i] - r[2]) / (r[0] - r[2]));
        printf("   %-36s %9.2f\n", c[2].name, r[2]);
        if (!k) {
            printf("   %-36s %9s %9s %12s   (not packaged in Debian 12: the issue's figure at 3.4 GHz)\n",
                   "VMA virtual block (TLSF)", "~18", "", "-");
            goal_pair_ns = r[0];
            goal_pair_net = r[0] - r[2];
            pair_ratio = (r[1] - r[2]) / (r[0] - r[2]);
        }
        printf("   (allocations refused as full during the timed runs: buffet %llu, buddy %llu)\n",
               (unsigned long long)x[0].refused, (unsigned long long)x[1].refused);
        for (int i = 0; i < 3; i++) sa_teardown(&x[i]);
    }
    print_spread();

    printf("\n   after %d random operations (alloc while under %.0f%% of the block requested, else free; the same\n"
           "   sequence for both), the %llu MiB block holds:\n", SA_OPS, SA_FILL * 100, (unsigned long long)(SA_BLOCK >> 20));
    printf("   %-36s %10s %10s %8s %10s %8s %9s\n", "contestant", "requested", "reserved", "waste", "largest", "frag", "refused");
    for (int k = 0; k < 2; k++) {
        double waste;
        w[k] = sa_replay(k);
        waste = w[k].requested ? (double)(w[k].reserved - w[k].requested) / (double)w[k].requested : 0;
        printf("   %-36s %8.1f M %8.1f M %7.1f%% %8.1f M %8.4f %4llu (%llu with room)\n",
               k ? "power-of-two buddy" : "buffet_gpu_vblock (TLSF)", (double)w[k].requested / 1048576.0,
               (double)w[k].reserved / 1048576.0, waste * 100, (double)w[k].largest_free / 1048576.0,
               w[k].fragmentation, (unsigned long long)w[k].refused,
               (unsigned long long)w[k].refused_with_room);
        if (k) goal_waste_buddy = waste; else goal_waste_buffet = waste;
    }
    printf("   (waste: reserved beyond requested, over requested; frag: 1 - largest free / total free;\n"
           "    refused: allocations no free range could take, 'with room': while enough bytes were free in all)\n");
    printf("   buddy / buffet: pair time (net) %.2fx, waste %.0fx, fragmentation %.2fx, largest free range"
           " %.2fx\n",
           fixed_iters ? 0.0 : pair_ratio, goal_waste_buffet > 0 ? goal_waste_buddy / goal_waste_buffet : 0.0,
           w[0].fragmentation > 0 ? w[1].fragmentation / w[0].fragmentation : 0.0,
           w[0].largest_free ? (double)w[1].largest_free / (double)w[0].largest_free : 0.0);
}

/* ---------------------------------------------------------------------------------------------
   b) buffers through a device vs one device allocation per buffer (Vulkan, lavapipe here) */
#define BC_SIZES 4096
static uint64_t bc_size[BC_SIZES];            /* 256 B .. 64 KiB, log-uniform: typical buffers */
static double goal_create_ratio = -1, goal_upload_ratio = -1;

typedef struct bc_ctx { buffet_gpu_device *d; buffet_gpu_intent intent; } bc_ctx;

static uint64_t run_create_buffet(void *vctx, size_t iters) {
    bc_ctx *x = (bc_ctx *)vctx;
    buffet_gpu_buf_desc bd;
    uint64_t t0 = now_ns();
    memset(&bd, 0, sizeof bd);
    bd.intent = x->intent;
    for (size_t i = 0; i < iters; i++) {
        buffet_buf *b = NULL;
        bd.size = bc_size[i % BC_SIZES];
        if (buffet_gpu_buf_create(x->d, &bd, &b) != BUFFET_OK) die("buffet_gpu_buf_create failed");
        escape(b);
        buffet_buf_unref(b);
    }
    return now_ns() - t0;
}

#if defined(__has_include)
#if __has_include(<vulkan/vulkan.h>)
#include <vulkan/vulkan.h>
#define BG_VULKAN 1
#endif
#endif

#ifdef BG_VULKAN
/* The same buffer made the direct way: VkBuffer, its own VkDeviceMemory, bound; then destroyed. */
typedef struct vk_ctx {
    VkDevice dev;
    uint32_t type;
    PFN_vkCreateBuffer create_buffer;
    PFN_vkDestroyBuffer destroy_buffer;
    PFN_vkGetBufferMemoryRequirements reqs;
    PFN_vkAllocateMemory alloc;
    PFN_vkFreeMemory free_mem;
    PFN_vkBindBufferMemory bind;
} vk_ctx;

static uint64_t run_create_vulkan(void *vctx, size_t iters) {
    vk_ctx *x = (vk_ctx *)vctx;
    VkBufferCreateInfo bi;
    VkMemoryAllocateInfo ai;
    uint64_t t0 = now_ns();
    memset(&bi, 0, sizeof bi);
    bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    memset(&ai, 0, sizeof ai);
    ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    for (size_t i = 0; i < iters; i++) {
        VkBuffer buf;
        VkDeviceMemory mem;
        VkMemoryRequirements mr;
        bi.size = bc_size[i % BC_SIZES];
        if (x->create_buffer(x->dev, &bi, NULL, &buf) != VK_SUCCESS) die("vkCreateBuffer failed");
        x->reqs(x->dev, buf, &mr);
        ai.allocationSize = mr.size;
        ai.memoryTypeIndex = x->type;
        if (x->alloc(x->dev, &ai, NULL, &mem) != VK_SUCCESS) die("vkAllocateMemory failed");
        if (x->bind(x->dev, buf, mem, 0) != VK_SUCCESS) die("vkBindBufferMemory failed");
        x->destroy_buffer(x->dev, buf, NULL);
        x->free_mem(x->dev, mem, NULL);
    }
    return now_ns() - t0;
}

/* The device's own functions, through the vkGetInstanceProcAddr buffet uses. */
static bool vk_ctx_init(vk_ctx *x, buffet_gpu_device *d) {
    buffet_gpu_vulkan_desc h;
    PFN_vkGetDeviceProcAddr gdpa;
    buffet_gpu_native n;
    buffet_buf *probe = NULL;
    buffet_gpu_buf_desc bd;
    if (buffet_gpu_vulkan_handles(d, &h) != BUFFET_OK || !h.get_instance_proc_addr) return false;
    gdpa = (PFN_vkGetDeviceProcAddr)h.get_instance_proc_addr(h.instance, "vkGetDeviceProcAddr");
    if (!gdpa) return false;
    x->dev = (VkDevice)h.device;
    x->create_buffer = (PFN_vkCreateBuffer)gdpa(x->dev, "vkCreateBuffer");
    x->destroy_buffer = (PFN_vkDestroyBuffer)gdpa(x->dev, "vkDestroyBuffer");
    x->reqs = (PFN_vkGetBufferMemoryRequirements)gdpa(x->dev, "vkGetBufferMemoryRequirements");
    x->alloc = (PFN_vkAllocateMemory)gdpa(x->dev, "vkAllocateMemory");
    x->free_mem = (PFN_vkFreeMemory)gdpa(x->dev, "vkFreeMemory");
    x->bind = (PFN_vkBindBufferMemory)gdpa(x->dev, "vkBindBufferMemory");
    memset(&bd, 0, sizeof bd);
    bd.size = 256;
    bd.intent = BUFFET_GPU_DEVICE_LOCAL;
    if (buffet_gpu_buf_create(d, &bd, &probe) != BUFFET_OK || buffet_gpu_buf_native(probe, &n) != BUFFET_OK) return false;
    x->type = n.memory_type;   /* the type buffet chose for device-local: the same for both */
    buffet_buf_unref(probe);
    return x->create_buffer && x->destroy_buffer && x->reqs && x->alloc && x->free_mem && x->bind;
}
#endif

static buffet_gpu_device *bg_open(buffet_gpu_backend b) {
    buffet_gpu_device_desc dd;
    buffet_gpu_device *d = NULL;
    memset(&dd, 0, sizeof dd);
    dd.backend = b;
    return buffet_gpu_device_create(&d, &dd) == BUFFET_OK ? d : NULL;
}

static void section_b(void) {
    bc_ctx bx;
    buffet_gpu_device *d = bg_open(BUFFET_GPU_VULKAN), *h = bg_open(BUFFET_GPU_HOST);
    contestant c[3];
    double r[3];
    int n = 0;
    printf("\nb) buffer create + destroy, sizes 256 B .. 64 KiB (log-uniform), device-local; ns per pair\n");
    if (!d) printf("   no Vulkan device here: only the host backend is measured\n");
    else printf("   Vulkan device: %s\n", buffet_gpu_get_info(d).device_name);
    printf("   %-52s %10s %12s\n", "contestant", "ns/pair", "peer/buffet");
    bx.intent = BUFFET_GPU_DEVICE_LOCAL;
    bx.d = d ? d : h;
    c[n++] = (contestant){ d ? "buffet_gpu_buf_create + unref (Vulkan)" : "buffet_gpu_buf_create + unref (host)",
                           run_create_buffet, &bx, 1.0 };
#ifdef BG_VULKAN
    vk_ctx vx;
    if (d && vk_ctx_init(&vx, d))
        c[n++] = (contestant){ "vkCreateBuffer + vkAllocateMemory + bind + destroy", run_create_vulkan, &vx, 1.0 };
#else
    if (d) printf("   (no <vulkan/vulkan.h> at build time: the per-buffer Vulkan path is not measured)\n");
#endif
    bench_table = "b) buffer create + destroy";
    measure(c, n, r, TARGET_NS, 256);
    for (int i = 0; i < n; i++) printf("   %-52s %10.1f %11.1fx\n", c[i].name, r[i], r[i] / r[0]);
    if (n > 1) goal_create_ratio = r[1] / r[0];
    print_spread();
    buffet_gpu_device_destroy(d);
    buffet_gpu_device_destroy(h);
}

/* ---------------------------------------------------------------------------------------------
   c) upload of a 64 MiB chain vs memcpy of the same bytes */
#define UP_BYTES ((size_t)64 << 20)
#define UP_PIECE ((size_t)64 << 10)
typedef struct up_ctx { buffet_gpu_device *d; buffet_chain chain; buffet_buf *dst; unsigned char *flat; } up_ctx;

static uint64_t run_upload(void *vctx, size_t iters) {
    up_ctx *x = (up_ctx *)vctx;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++)
        if (buffet_gpu_upload(x->d, x->dst, 0, &x->chain, NULL) != BUFFET_OK) die("buffet_gpu_upload failed");
    return now_ns() - t0;
}

static uint64_t run_memcpy(void *vctx, size_t iters) {
    up_ctx *x = (up_ctx *)vctx;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        size_t at = 0;
        for (size_t k = 0; k < x->chain.count; k++) {     /* the same pieces, gathered */
            const buffet_slice *sl = &x->chain.slices[x->chain.head + k];
            memcpy(x->flat + at, (const unsigned char *)sl->buf->data + sl->off, sl->len);
            at += sl->len;
        }
        escape(x->flat);
    }
    return now_ns() - t0;
}

static bool up_setup(up_ctx *x, buffet_gpu_device *d) {
    buffet_gpu_buf_desc bd;
    memset(x, 0, sizeof *x);
    x->d = d;
    buffet_chain_init(&x->chain, buffet_heap());
    for (size_t at = 0; at < UP_BYTES; at += UP_PIECE) {
        buffet_buf *b = NULL;
        buffet_buf_desc hd;
        memset(&hd, 0, sizeof hd);
        hd.size = UP_PIECE;
        if (buffet_buf_create(&b, &hd) != BUFFET_OK) return false;
        memset(b->data, (int)(at >> 16), UP_PIECE);
        buffet_chain_append(&x->chain, b, 0, UP_PIECE);
        buffet_buf_unref(b);
    }
    memset(&bd, 0, sizeof bd);
    bd.size = UP_BYTES;
    bd.intent = BUFFET_GPU_DEVICE_LOCAL;
    x->flat = (unsigned char *)malloc(UP_BYTES);
    if (!x->flat || buffet_gpu_buf_create(d, &bd, &x->dst) != BUFFET_OK) return false;
    memset(x->flat, 1, UP_BYTES);
    return true;
}

static void up_teardown(up_ctx *x) {
    buffet_chain_deinit(&x->chain);
    buffet_buf_unref(x->dst);
    free(x->flat);
}

static void section_c(void) {
    static const buffet_gpu_backend which[2] = {BUFFET_GPU_VULKAN, BUFFET_GPU_HOST};
    size_t keep_iters = fixed_iters;
    if (fixed_iters) fixed_iters = 1;   /* an iteration moves 64 MiB: one is enough to count */
    printf("\nc) upload of a 64 MiB chain (1024 pieces of 64 KiB) into a device-local buffer vs memcpy of the\n"
           "   same pieces into one buffer; GB/s (higher is better)\n");
    printf("   %-52s %10s %14s\n", "contestant", "GB/s", "buffet/memcpy");
    for (int k = 0; k < 2; k++) {
        buffet_gpu_device *d = bg_open(which[k]);
        up_ctx x;
        contestant c[2];
        double r[2];
        char name[96];
        if (!d) {
            printf("   (no %s device here)\n", k ? "host" : "Vulkan");
            continue;
        }
        if (!up_setup(&x, d)) die("upload setup failed");
        snprintf(name, sizeof name, "buffet_gpu_upload, %s (%s)", buffet_gpu_get_info(d).backend_name,
                 x.dst->data ? "memory host-visible: written in place" : "staging + copy command");
        c[0] = (contestant){ name, run_upload, &x, 1.0 };
        c[1] = (contestant){ "memcpy of the same pieces", run_memcpy, &x, 1.0 };
        bench_table = k ? "c) 64 MiB chain upload, host" : "c) 64 MiB chain upload, Vulkan";
        measure(c, 2, r, 100000000.0, 1);
        for (int i = 0; i < 2; i++)
            printf("   %-52s %10.2f %13.2fx\n", c[i].name, (double)UP_BYTES / r[i], r[1] / r[i]);
        if (k == 0) goal_upload_ratio = r[1] / r[0];
        up_teardown(&x);
        buffet_gpu_device_destroy(d);
    }
    fixed_iters = keep_iters;
    print_spread();
}

static void print_goals(void) {
    printf("\ngoals (the issue's):\n");
    if (goal_pair_ns >= 0)
        printf("   suballocator pair under 15 ns (VMA ~18 ns at 3.4 GHz): %.2f ns (net of the loop %.2f)"
               " -- %s\n",
               goal_pair_ns, goal_pair_net,
               fixed_iters ? "not measured (BUFFET_BENCH_ITERS)" : goal_pair_net < 15 ? "met" : "NOT met");
    if (goal_waste_buffet >= 0)
        printf("   less waste than a power-of-two allocator: %.1f%% vs %.1f%% -- %s\n", goal_waste_buffet * 100,
               goal_waste_buddy * 100, goal_waste_buffet < goal_waste_buddy ? "met" : "NOT met");
    if (goal_create_ratio >= 0)
        printf("   buffer create + destroy at least 50x faster than a device allocation per buffer: %.1fx -- %s\n",
               goal_create_ratio, fixed_iters ? "not measured" : goal_create_ratio >= 50 ? "met" : "NOT met");
    if (goal_upload_ratio >= 0)
        printf("   upload of a 64 MiB chain at least 0.8x memcpy's bandwidth (Vulkan): %.2fx -- %s\n",
               goal_upload_ratio, fixed_iters ? "not measured" : goal_upload_ratio >= 0.8 ? "met" : "NOT met");
}

int main(void) {
    const char *only = getenv("BUFFET_BENCH_ONLY");
    uint64_t start = now_ns();
    bench_read_iters();
    for (size_t i = 0; i < SA_TABLE; i++) {
        sa_size[i] = sa_random_size();
        sa_victim[i] = (uint16_t)(rnd() % SA_LIVE);
        sa_fixed[i] = 65536;
        sa_align_fixed[i] = SA_ALIGN;
    }
    for (size_t i = 0; i < SA_TABLE; i++) {   /* after the sizes and victims: those stay as they were */
        unsigned r = (unsigned)(rnd() % 32);
        sa_align[i] = r == 0 ? 65536 : r <= 4 ? 4096 : SA_ALIGN;
    }
    bench_print_machine("");
    bench_print_load();
    bench_print_iters();
    for (size_t i = 0; i < BC_SIZES; i++) bc_size[i] = (uint64_t)256 << (rnd() % 9) | (rnd() & 255);
    if (!only || strchr(only, 'a')) section_a();
    if (!only || strchr(only, 'b')) section_b();
    if (!only || strchr(only, 'c')) section_c();
    print_goals();
    printf("\n(total run %.1f s)\n", (double)(now_ns() - start) / 1e9);
    return 0;
}
