/* buffet_gpu.h - buffet 0.1.0 - GPU memory by intent and lifetime

   GPU memory asked for by intent (device-local, upload, readback, shared) and lifetime
   (persistent buffers, per-frame memory), from one of three backends behind one vocabulary:
   Vulkan (libvulkan loaded at run time: buffet's own instance and device, or the caller's),
   CUDA (the driver API from libcuda, loaded at run time) and a host backend that behaves as a
   device with separate memory, so every program runs everywhere. No SDK is needed to compile,
   no link flag to run.

   WHAT IS HERE
     devices  buffet_gpu_device_*: memory types chosen by intent with fallbacks
              (buffet_gpu_explain says which and why); large device blocks suballocated in O(1)
              by vblocks, dedicated memory for large buffers, empty blocks released past
              desc.max_empty_blocks; a limit, the heaps' budgets, statistics and JSON; a leak
              report with sites at destroy.
     buffers  buffet_gpu_buf_create: GPU buffers are buffet_bufs (kind BUFFET_BUF_GPU):
              refcounted, sliceable, in chains; native handles by buffet_gpu_buf_native
              (VkBuffer + offset, VkDeviceMemory, CUdeviceptr); buffet_gpu_register makes the
              device a registry provider for requests with device usage.
     transfers buffet_gpu_upload from a chain (host slices gathered into staging memory, one
              copy command per contiguous staging range; pinned slices read in place),
              buffet_gpu_download into a chain (readback buffers become its slices),
              buffet_gpu_copy; each waits, or returns a ticket (buffet_gpu_wait).
     frames   buffet_gpu_frame_begin/_end/_alloc: per-frame memory reclaimed when the GPU has
              finished the frame, frames_in_flight later; a buffet_budget can cover it together
              with the CPU frame arenas of buffet_frame.h.
     pinning  buffet_gpu_pin: a host buffer (heap, mmap, shm, packet pool region) registered with
              the device for DMA without a staging copy, unregistered when the pin goes.
     vblock   buffet_gpu_vblock_*: a TLSF allocator over the offsets [0, size) of memory the caller
              manages (VulkanMemoryAllocator's "virtual block"): O(1) alloc and free, alignment-aware,
              free ranges coalesced at once with their physical neighbours. Sizes are uint64_t (device
              heaps pass 4 GiB). No byte of the managed memory is touched (there may be none: offsets
              only); the bookkeeping lives in arrays indexed by 32-bit numbers, from desc.allocator.
              An allocation is named by a handle (block tag, slot, generation): a double free, a stale
              handle, another block's or a garbage one is refused and counted, never obeyed.
     ring     buffet_gpu_ring_*: linear allocation wrapping around [0, size), for per-frame upload
              memory: allocate from the head, take a mark at the end of a frame, release the mark when
              the frame's fence has passed, which frees everything allocated before it. Marks are
              checked: an old, repeated or another ring's mark is refused.

   USAGE
   It includes buffet.h itself; buffet headers may be included in any order. In
   exactly one translation unit, #define BUFFET_IMPLEMENTATION and include every
   buffet header you use there.

   EXAMPLE
         buffet_gpu_device *dev;
         buffet_gpu_device_desc dd = {0};            // AUTO: CUDA, else Vulkan, else host
         buffet_gpu_device_create(&dev, &dd);
         buffet_gpu_buf_desc bd = {0};
         bd.size = chain.len; bd.intent = BUFFET_GPU_DEVICE_LOCAL;
         buffet_buf *vertices;
         buffet_gpu_buf_create(dev, &bd, &vertices);
         buffet_gpu_upload(dev, vertices, 0, &chain, NULL);   // a chain of packets, say
         buffet_gpu_native n;
         buffet_gpu_buf_native(vertices, &n);        // n.buffer + n.offset for vkCmdBindVertexBuffers
         buffet_buf_unref(vertices);
         buffet_gpu_device_destroy(dev);

         buffet_gpu_vblock *vb;                      // the suballocator alone, over offsets
         buffet_gpu_vblock_desc d = {0};
         d.size = (uint64_t)1 << 30;                 // a 1 GiB VkDeviceMemory of the caller's
         buffet_gpu_vblock_create(&vb, &d);
         uint64_t off; buffet_gpu_valloc h;
         if (buffet_gpu_vblock_alloc(vb, 65536, 256, &off, &h) == BUFFET_OK)
             bind_buffer_at(memory, off);
         buffet_gpu_vblock_free(vb, h);
         buffet_gpu_vblock_destroy(vb);              // live allocations are logged as leaks

   CONFIGURATION
     Nothing needs defining: devices and vblocks take their limits in their descs.
     BUFFET_GPU_RING_MARKS (64, a constant: it sizes buffet_gpu_ring) is how many marks may be
     outstanding at once. BUFFET_GPU_CUDA_H: 1 uses <cuda.h>'s types, 0 buffet's own (default:
     <cuda.h> when __has_include finds it). Link flags: none (-ldl on glibc before 2.34).

   THREAD SAFETY
     A device is thread-safe: buffers are made, released (the last unref, on any thread),
     uploaded and downloaded from any thread, under one mutex per device; waits on tickets run
     outside it. Frames (begin, end, frame_alloc) are driven by one thread, which also owns the
     budget attached. Two buffet devices over one caller's Vulkan queue each lock their own
     submissions only: use them from one thread. A vblock and a ring are owned (external
     synchronisation), as VMA's virtual blocks are: one thread at a time calls them; handing one
     to another thread needs a happens-before (a mutex, a queue). Nothing in them blocks or
     allocates from the OS on the hot path.

   LIFECYCLE
     object   made by                         ended by                   owner
     device   buffet_gpu_device_create        buffet_gpu_device_destroy  shared (thread-safe)
     buffer   buffet_gpu_buf_create, _pin     the last buffet_buf_unref  refcounted, any thread
     vblock   buffet_gpu_vblock_create        buffet_gpu_vblock_destroy  one thread at a time
     ring     buffet_gpu_ring_init (caller's) buffet_gpu_ring_deinit     one thread at a time
     Destroying a device waits for its work, logs each buffer still referenced (BUFFET_ERR_LEAK,
     with the site that made it) and frees it: a buffer must not outlive its device.
     Destroying a vblock with live allocations logs each (the first 8, then a count) as
     BUFFET_ERR_LEAK and frees the bookkeeping: the offsets describe the caller's memory, which
     buffet never owned.

   ERRORS
     Every fallible call returns buffet_result and changes nothing when it fails; with a logger
     in the desc, each refusal says why (a full block is BUFFET_LOG_DEBUG: it is routine for a
     caller that then opens another block).

   VERSION         buffet 0.1.0; needs buffet.h from the same release.
*/
#ifndef BUFFET_GPU_H_INCLUDED
#define BUFFET_GPU_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif

/* One version for the whole family: this catches a copy taken from another release. */
#if !defined(BUFFET_VERSION_NUMBER) || BUFFET_VERSION_NUMBER != 100
#error "buffet_gpu.h is from buffet 0.1.0 but buffet.h is not: take every buffet header from one release"
#endif

/* Marks a ring holds at once: a constant, since it sizes buffet_gpu_ring (frames in flight are
   2 or 3; 64 leaves room for finer-grained marks, per submission). */
#define BUFFET_GPU_RING_MARKS 64

BUFFET_EXTERN_C_BEGIN

/* ---------------------------------------------------------------------------------------------
   >>suballocator: a TLSF block over offsets, and a ring for per-frame uploads
*/
typedef struct buffet_gpu_vblock buffet_gpu_vblock;
/* An allocation of a vblock. 0 is never one; a handle names its block, so another block's is
   refused. */
typedef uint64_t buffet_gpu_valloc;

typedef struct buffet_gpu_vblock_desc {
    uint64_t size;              /* offsets managed: [0, size). Required; at most 2^63, and a
                                   multiple of min_align */
    uint64_t min_align;         /* every offset and size is a multiple of it (a power of two):
                                   bufferImageGranularity, a non-coherent atom; 0: 1. Set it to
                                   the alignment most requests ask for (256 for Vulkan buffers):
                                   ranges then start aligned, and no gap ranges are made */
    uint32_t max_allocations;   /* live allocations at most (more: BUFFET_ERR_EXHAUSTED);
                                   0: 2^31 - 2, the most the 32-bit node numbers allow */
    buffet_allocator allocator; /* the bookkeeping (40 bytes per range, doubling); zero: the heap.
                                   Must live until destroy: a frame or scope is refused */
    buffet_logger log;          /* refusals and leaks; zero: silent */
    const char *name;           /* in log lines and JSON (copied, 31 bytes kept); NULL: "vblock" */
} buffet_gpu_vblock_desc;

typedef struct buffet_gpu_vblock_stats {
    uint64_t size;              /* offsets managed */
    uint64_t allocated_bytes;   /* held by live allocations (sizes rounded up to min_align) */
    uint64_t free_bytes;        /* size - allocated_bytes: alignment gaps are free ranges */
    uint64_t largest_free;      /* the largest free range */
    uint32_t allocations;       /* live */
    uint32_t free_ranges;       /* coalesced: no two are neighbours */
    double fragmentation;       /* 1 - largest_free / free_bytes; 0 when nothing or one range is free */
    uint64_t total_allocs, total_frees;   /* accepted since create (saturating) */
    uint64_t failed_allocs;     /* refused: no range fits, or limits */
    uint64_t double_frees;      /* frees of handles already freed (or reset) */
    uint64_t foreign_frees;     /* frees of another block's handle or garbage */
    uint32_t nodes;             /* bookkeeping slots made */
    uint32_t retired_nodes;     /* slots whose 16-bit generation ran out: never reused, so that an
                                   old handle cannot name a new allocation */
} buffet_gpu_vblock_stats;

/* Create a vblock managing the offsets [0, desc->size). Returns: BUFFET_OK.
   Errors: BUFFET_ERR_INVALID (out or desc NULL, size 0 or above 2^63 or not a multiple of
   min_align, min_align not a power of two), BUFFET_ERR_LIFETIME (bookkeeping whose blocks die
   with a frame or scope), BUFFET_ERR_NOMEM (bookkeeping failed); logged. Thread: safe (a new
   object). */
BUFFET_API buffet_result buffet_gpu_vblock_create(buffet_gpu_vblock **out, const buffet_gpu_vblock_desc *desc);
/* Free the bookkeeping. Live allocations are logged as leaks (BUFFET_ERR_LEAK: the first 8 by
   offset and size, then the count and bytes). NULL does nothing. Thread: owned. */
BUFFET_API void buffet_gpu_vblock_destroy(buffet_gpu_vblock *b);
/* Find size bytes at an offset aligned to align (a power of two; min_align is applied too),
   rounded up to min_align: *offset gets the offset, *handle what frees it. O(1): two-level
   bitmaps find a free range big enough at once (a TLSF "good fit"). Returns: BUFFET_OK.
   Errors: BUFFET_ERR_INVALID (b, offset or handle NULL, size 0, align not a power of two),
   BUFFET_ERR_OVERFLOW (size rounded up to min_align passes 2^64), BUFFET_ERR_TOO_LARGE (size
   above the block's size), BUFFET_ERR_EXHAUSTED (no free range fits, or max_allocations are
   live), BUFFET_ERR_NOMEM (the bookkeeping could not grow). On error *offset and *handle are
   untouched and nothing changes. Thread: owned. */
BUFFET_API buffet_result buffet_gpu_vblock_alloc(buffet_gpu_vblock *b, uint64_t size, uint64_t align,
                                                 uint64_t *offset, buffet_gpu_valloc *handle);
/* Free an allocation; its range merges with free neighbours at once. Returns: BUFFET_OK.
   Errors: BUFFET_ERR_INVALID (b NULL), BUFFET_ERR_DOUBLE_FREE (freed already, or before a
   reset), BUFFET_ERR_FOREIGN (another block's handle, or one never handed out); logged and
   counted, nothing freed. Thread: owned. */
BUFFET_API buffet_result buffet_gpu_vblock_free(buffet_gpu_vblock *b, buffet_gpu_valloc handle);
/* The offset and size (rounded up to min_align) of a live allocation; either pointer may be
   NULL. Returns: BUFFET_OK. Errors: as buffet_gpu_vblock_free (not logged, not counted).
   Thread: owned. */
BUFFET_API buffet_result buffet_gpu_vblock_get(const buffet_gpu_vblock *b, buffet_gpu_valloc handle,
                                               uint64_t *offset, uint64_t *size);
/* Free every allocation at once (O(ranges)); their handles become stale: freeing one is
   BUFFET_ERR_DOUBLE_FREE. The bookkeeping keeps its size. Thread: owned. */
BUFFET_API void buffet_gpu_vblock_reset(buffet_gpu_vblock *b);
/* The statistics (O(1), but for largest_free, which walks one free list). Zero for NULL.
   Thread: owned. */
BUFFET_API buffet_gpu_vblock_stats buffet_gpu_vblock_get_stats(const buffet_gpu_vblock *b);
/* The statistics as one JSON object into out[0..cap) (NUL-terminated when cap > 0).
   Returns: the full length (as snprintf). Thread: owned. */
BUFFET_API size_t buffet_gpu_vblock_stats_json(const buffet_gpu_vblock *b, char *out, size_t cap);
/* Check every invariant (ranges tile [0, size) in order, no two free neighbours, free lists and
   bitmaps agree, counters add up): O(ranges), for tests and debugging. Returns: BUFFET_OK.
   Errors: BUFFET_ERR_INVALID (b NULL), BUFFET_ERR_CORRUPT (logged: what is wrong).
   Thread: owned. */
BUFFET_API buffet_result buffet_gpu_vblock_check(const buffet_gpu_vblock *b);

/* A ring's position at the end of what was allocated so far; 0 is never one. */
typedef uint64_t buffet_gpu_ring_mark;

typedef struct buffet_gpu_ring_desc {
    uint64_t size;              /* offsets managed: [0, size); required, at most 2^63, a multiple
                                   of min_align */
    uint64_t min_align;         /* every offset and size is a multiple of it; 0: 1 */
    buffet_logger log;          /* refusals; zero: silent */
    const char *name;           /* in log lines and JSON (copied, 31 bytes kept); NULL: "ring" */
} buffet_gpu_ring_desc;

/* A ring, in the caller's memory. The fields are private: use the functions. Positions are
   counted in bytes since init (64 bits: 58 years at 10 GB/s), offsets are positions modulo
   size, so nothing is divided on the hot path. */
typedef struct buffet_gpu_ring {
    uint64_t size, min_align;
    uint64_t head, tail;        /* positions: [tail, head) is live */
    uint64_t head_off;          /* head's offset */
    uint64_t marks_taken, marks_released;
    uint64_t mark_pos[BUFFET_GPU_RING_MARKS];   /* position of mark n at [n % MARKS] */
    uint64_t allocs, failures, wraps, bad_marks, peak_used;
    uint32_t tag;
    buffet_logger log;
    char name[32];
} buffet_gpu_ring;

typedef struct buffet_gpu_ring_stats {
    uint64_t size;
    uint64_t used;              /* live: allocated and not yet released, with alignment padding and
                                   the end of the ring skipped at a wrap */
    uint64_t peak_used;
    uint64_t allocs, failures, wraps;
    uint64_t marks_outstanding;
    uint64_t bad_marks;         /* releases refused */
} buffet_gpu_ring_stats;

/* Make r manage the offsets [0, desc->size). Returns: BUFFET_OK. Errors: BUFFET_ERR_INVALID
   (NULLs, size 0 or above 2^63, min_align not a power of two, size not a multiple of
   it); logged.
   Thread: owned (r). */
BUFFET_API buffet_result buffet_gpu_ring_init(buffet_gpu_ring *r, const buffet_gpu_ring_desc *desc);
/* Forget everything; r refuses every call until initialised again. Thread: owned. */
BUFFET_API void buffet_gpu_ring_deinit(buffet_gpu_ring *r);
/* size bytes (rounded up to min_align) at an offset aligned to align (a power of two) from the
   head; when they do not fit before the end, the rest of the ring is skipped (live until the
   next release) and they start at offset 0. O(1). Returns: BUFFET_OK.
   Errors: BUFFET_ERR_INVALID (NULLs, size 0, align not a power of two, r not initialised),
   BUFFET_ERR_OVERFLOW (size rounded up passes 2^64, or the position counter would),
   BUFFET_ERR_TOO_LARGE (above the ring's size), BUFFET_ERR_EXHAUSTED (the live part leaves no
   room: release a mark first). Nothing changes on error. Thread: owned. */
BUFFET_API buffet_result buffet_gpu_ring_alloc(buffet_gpu_ring *r, uint64_t size, uint64_t align, uint64_t *offset);
/* Mark the head: releasing the mark frees everything allocated before it (call it at the end of
   a frame, release when that frame's fence has passed). Returns: BUFFET_OK.
   Errors: BUFFET_ERR_INVALID (NULLs), BUFFET_ERR_EXHAUSTED (BUFFET_GPU_RING_MARKS outstanding),
   BUFFET_ERR_OVERFLOW (2^48 marks taken). Thread: owned. */
BUFFET_API buffet_result buffet_gpu_ring_mark_take(buffet_gpu_ring *r, buffet_gpu_ring_mark *mark);
/* Free everything allocated before mark; marks older than it are released with it. Returns:
   BUFFET_OK. Errors: BUFFET_ERR_INVALID (r NULL), BUFFET_ERR_DOUBLE_FREE (mark released
   already, or older than one released: out of order, or from before a reset),
   BUFFET_ERR_FOREIGN (another ring's mark, or one never taken); logged and counted, nothing
   released. Thread: owned. */
BUFFET_API buffet_result buffet_gpu_ring_release(buffet_gpu_ring *r, buffet_gpu_ring_mark mark);
/* Free everything and drop every outstanding mark (they become stale). Thread: owned. */
BUFFET_API void buffet_gpu_ring_reset(buffet_gpu_ring *r);
/* Counters (see buffet_gpu_ring_stats); zero for NULL. Thread: owned. */
BUFFET_API buffet_gpu_ring_stats buffet_gpu_ring_get_stats(const buffet_gpu_ring *r);
/* The statistics as one JSON object into out[0..cap) (NUL-terminated when cap > 0).
   Returns: the full length (as snprintf). Thread: owned. */
BUFFET_API size_t buffet_gpu_ring_stats_json(const buffet_gpu_ring *r, char *out, size_t cap);

/* ---------------------------------------------------------------------------------------------
   >>devices: GPU memory by intent, from one of three backends
*/
typedef struct buffet_gpu_device buffet_gpu_device;

typedef enum buffet_gpu_backend {
    BUFFET_GPU_AUTO = 0,        /* CUDA when a GPU answers, else Vulkan, else host */
    BUFFET_GPU_HOST = 1,        /* host memory that behaves as a device's: explicit copies, tickets */
    BUFFET_GPU_VULKAN = 2,      /* libvulkan.so.1, loaded at run time */
    BUFFET_GPU_CUDA = 3         /* libcuda.so.1 (the driver API), loaded at run time */
} buffet_gpu_backend;

/* What memory is for; the memory type follows from it (buffet_gpu_explain says which and why). */
typedef enum buffet_gpu_intent {
    BUFFET_GPU_DEVICE_LOCAL = 1, /* the GPU reads and writes it fast; the host reaches it by copies */
    BUFFET_GPU_UPLOAD = 2,       /* the host writes it once (sequentially: write-combined), the GPU reads */
    BUFFET_GPU_READBACK = 3,     /* the GPU writes, the host reads it (cached) */
    BUFFET_GPU_SHARED = 4        /* both use it in place: managed memory, or host-visible device-local */
} buffet_gpu_intent;

/* Properties of a memory type (as Vulkan's; the other backends describe theirs the same way). */
enum {
    BUFFET_GPU_MEM_DEVICE_LOCAL = 1u << 0,
    BUFFET_GPU_MEM_HOST_VISIBLE = 1u << 1,
    BUFFET_GPU_MEM_HOST_COHERENT = 1u << 2,   /* writes need no flush, reads no invalidate */
    BUFFET_GPU_MEM_HOST_CACHED = 1u << 3,     /* fast host reads */
    BUFFET_GPU_MEM_MANAGED = 1u << 4          /* CUDA managed memory: migrates on use */
};

#define BUFFET_GPU_MAX_TYPES 32
#define BUFFET_GPU_MAX_HEAPS 16

/* A Vulkan device the caller already has: buffet makes no instance or device of its own and
   destroys none. Every handle is passed as a pointer-sized or 64-bit value, so that no Vulkan
   header is needed. */
typedef struct buffet_gpu_vulkan_desc {
    void (*(*get_instance_proc_addr)(void *instance, const char *name))(void);
                                /* vkGetInstanceProcAddr; NULL: buffet loads libvulkan and makes
                                   its own instance and device (the fields below are ignored) */
    void *instance;             /* VkInstance (Vulkan 1.1 or later) */
    void *physical_device;      /* VkPhysicalDevice */
    void *device;               /* VkDevice */
    uint32_t queue_family;      /* a family that can transfer (every graphics or compute one can) */
    uint32_t queue_index;       /* buffet submits its copies to this queue, under its own lock: the
                                   caller must not submit to it at the same time */
} buffet_gpu_vulkan_desc;

typedef struct buffet_gpu_device_desc {
    buffet_gpu_backend backend; /* AUTO: the first that opens */
    const char *library;        /* the driver library to load; NULL: libcuda.so.1 / libvulkan.so.1.
                                   Tests name a stand-in driver here */
    uint32_t device_index;      /* which GPU of the backend's list */
    bool validation;            /* Vulkan, own instance: enable VK_LAYER_KHRONOS_validation; its
                                   messages are logged and counted (buffet_gpu_stats.validation_messages) */
    buffet_gpu_vulkan_desc vulkan;
    uint64_t block_size;        /* device memory is taken in blocks of this size, suballocated;
                                   0: 64 MiB (less on a heap smaller than 1 GiB: heap / 8) */
    uint64_t dedicated_size;    /* buffers from this size up get memory of their own; 0: block_size / 2 */
    uint64_t staging_size;      /* host-visible memory for uploads and downloads; 0: 16 MiB */
    uint64_t frame_size;        /* per-frame upload memory (buffet_gpu_frame_alloc); 0: 8 MiB */
    uint32_t frames_in_flight;  /* frames whose memory may still be in use by the GPU; 0: 2 */
    uint32_t max_empty_blocks;  /* empty blocks kept per memory type for reuse, more are released;
                                   0: 1 (a buffer made and released in a loop must not cost a device
                                   allocation each time, as in VulkanMemoryAllocator); UINT32_MAX: none */
    uint64_t limit;             /* bytes of device memory buffet may take (blocks and dedicated);
                                   more: BUFFET_ERR_BUDGET. 0: the heaps' budgets only */
    buffet_budget *budget;      /* charged with the frame memory (buffet_gpu_frame_alloc) of each
                                   frame, taken back when the frame is reclaimed; may be the budget
                                   of the thread's frame arenas, so one limit covers CPU and GPU
                                   memory of a frame (its hard limit: BUFFET_ERR_BUDGET). NULL: none */
    buffet_allocator allocator; /* bookkeeping; zero: the heap. Must be thread-safe and live until
                                   destroy (buffers may be released from any thread) */
    buffet_logger log;          /* refusals, leaks, validation messages; zero: silent */
    const char *name;           /* in logs and JSON (copied); NULL: the backend's name */
} buffet_gpu_device_desc;

/* Everything needed to use an allocation with the native API. */
typedef struct buffet_gpu_native {
    uint64_t memory;            /* VkDeviceMemory; CUDA: the block's CUdeviceptr; host: its address */
    uint64_t buffer;            /* VkBuffer covering the whole block (usable as storage, uniform,
                                   vertex, index, indirect, transfer source and destination); else 0 */
    uint64_t offset;            /* of the allocation in memory (and in buffer) */
    uint64_t address;           /* CUDA: the CUdeviceptr of byte 0; host: its address; Vulkan: 0 */
    uint64_t size;              /* bytes */
    void *host;                 /* host address of byte 0 when host-visible; else NULL */
    uint32_t memory_type;       /* index into buffet_gpu_info.type_props */
    uint32_t coherent;          /* 0: writes need buffet_gpu_flush, reads buffet_gpu_invalidate */
} buffet_gpu_native;

typedef struct buffet_gpu_info {
    buffet_gpu_backend backend;
    const char *backend_name;   /* "host", "vulkan", "cuda" */
    char device_name[128];      /* as the driver names it */
    uint32_t type_count, heap_count;
    uint32_t type_props[BUFFET_GPU_MAX_TYPES];   /* BUFFET_GPU_MEM_* */
    uint32_t type_heap[BUFFET_GPU_MAX_TYPES];
    uint64_t heap_size[BUFFET_GPU_MAX_HEAPS];
    uint32_t heap_device_local[BUFFET_GPU_MAX_HEAPS];
    uint64_t align;             /* offsets of buffers are multiples of it */
    uint64_t atom;              /* flush and invalidate granularity (1 where memory is coherent) */
} buffet_gpu_info;

/* Per memory type, and the device's totals in buffet_gpu_stats. */
typedef struct buffet_gpu_type_stats {
    uint32_t blocks, dedicated;     /* device allocations held */
    uint64_t block_bytes;           /* bytes of those */
    uint32_t allocations;           /* live buffers */
    uint64_t allocated_bytes;       /* bytes they hold */
    uint32_t free_ranges;
    uint64_t largest_free;
    double fragmentation;           /* 1 - largest_free / free bytes, over the type's blocks */
} buffet_gpu_type_stats;

typedef struct buffet_gpu_stats {
    buffet_gpu_type_stats total;
    buffet_gpu_type_stats type[BUFFET_GPU_MAX_TYPES];
    uint64_t heap_usage[BUFFET_GPU_MAX_HEAPS];    /* the driver's count where it has one (Vulkan
                                                     VK_EXT_memory_budget, cuMemGetInfo), else buffet's */
    uint64_t heap_budget[BUFFET_GPU_MAX_HEAPS];   /* what the driver says may be used */
    uint64_t device_allocations;    /* device allocations made since create */
    uint64_t uploads, downloads, upload_bytes, download_bytes, copy_commands;
    uint64_t frame_bytes;           /* per-frame memory handed out in the current frame */
    uint64_t failures;              /* calls refused */
    uint64_t double_frees;          /* GPU buffers released twice (refused) */
    uint64_t foreign_frees;         /* buffet_gpu_unpin_memory of memory this device did not pin (refused) */
    uint64_t deferred_releases;     /* buffers released while transfers that use them were in flight:
                                       their memory is freed when those complete (counted in
                                       allocations until then) */
    uint64_t validation_messages;   /* Vulkan validation layer messages (warnings and errors) */
    uint64_t frame;                 /* frames begun */
} buffet_gpu_stats;

/* Open a device. Returns: BUFFET_OK and *out. Errors: BUFFET_ERR_INVALID (out NULL, a bad desc),
   BUFFET_ERR_NO_DEVICE (the backend asked for has no driver library or no device; AUTO ends
   with host, which always opens), BUFFET_ERR_UNSUPPORTED (a driver too old), BUFFET_ERR_NOMEM,
   BUFFET_ERR_DEVICE_LOST; logged with the driver's own result. Thread: safe. */
BUFFET_API buffet_result buffet_gpu_device_create(buffet_gpu_device **out, const buffet_gpu_device_desc *desc);
/* Wait for the device's work, log live buffers as leaks (BUFFET_ERR_LEAK with the site that
   made each, the first 8 then a count) and free them, release every device allocation, close
   the backend. NULL does nothing. Thread: not concurrently with any other use of d. */
BUFFET_API void buffet_gpu_device_destroy(buffet_gpu_device *d);
/* The backend, the device's name and its memory types and heaps. Zero for NULL. Thread: safe. */
BUFFET_API buffet_gpu_info buffet_gpu_get_info(const buffet_gpu_device *d);
/* The memory type chosen for an intent on this device, with fallbacks (an integrated GPU, no
   host-visible device memory, lavapipe), and every type's score, into out[0..cap) (NUL-terminated
   when cap > 0). Returns: the full length (as snprintf). Thread: safe. */
BUFFET_API size_t buffet_gpu_explain(const buffet_gpu_device *d, buffet_gpu_intent intent, char *out, size_t cap);

/* A persistent GPU buffer. */
typedef struct buffet_gpu_buf_desc {
    uint64_t size;              /* bytes; > 0 */
    uint64_t align;             /* of its offset, a power of two; 0: the device's (info.align) */
    buffet_gpu_intent intent;   /* required */
    const char *name;           /* in the leak report (not copied: a literal) */
} buffet_gpu_buf_desc;

/* Make a GPU buffer: a buffet_buf of kind BUFFET_BUF_GPU with refcount 1, sliceable and in
   chains like any other; data is its host address when host-visible, else NULL. Its memory is
   suballocated from a block (O(1)), or its own when large. The last unref returns it, from any
   thread (kept until buffet's transfers that use it have completed); a second release of a
   buffer whose record the device still holds for reuse is refused and counted (double_frees).
   Returns: BUFFET_OK. Errors: BUFFET_ERR_INVALID (NULL, size 0, unknown intent, align not
   a power of two), BUFFET_ERR_TOO_LARGE (larger than the device allocates at once),
   BUFFET_ERR_BUDGET (desc.limit or a heap's budget), BUFFET_ERR_NOMEM (the driver refused: out of
   device memory), BUFFET_ERR_DEVICE_LOST; *out NULL, nothing taken. Thread: safe. */
BUFFET_API buffet_result buffet_gpu_buf_create_at(buffet_gpu_device *d, const buffet_gpu_buf_desc *desc,
                                                  buffet_buf **out, buffet_site site);
#define buffet_gpu_buf_create(...) buffet_gpu_buf_create_at(__VA_ARGS__, BUFFET_SITE)
/* The native handles of a GPU buffer (or a pinned one). Returns: BUFFET_OK. Errors:
   BUFFET_ERR_INVALID (NULL), BUFFET_ERR_FOREIGN (not a buffet GPU buffer). Thread: safe. */
BUFFET_API buffet_result buffet_gpu_buf_native(const buffet_buf *b, buffet_gpu_native *out);
/* Make host writes to [off, off+len) of a host-visible buffer visible to the device (flush),
   or device writes visible to the host (invalidate); nothing to do on coherent memory. Ranges
   are widened to the device's atom. Errors: BUFFET_ERR_INVALID, BUFFET_ERR_FOREIGN,
   BUFFET_ERR_RANGE, BUFFET_ERR_UNSUPPORTED (not host-visible). Thread: safe. */
BUFFET_API buffet_result buffet_gpu_flush(buffet_buf *b, uint64_t off, uint64_t len);
BUFFET_API buffet_result buffet_gpu_invalidate(buffet_buf *b, uint64_t off, uint64_t len);

/* A transfer's ticket: wait on it or poll it. Tickets grow; 0 is always complete. */
typedef uint64_t buffet_gpu_ticket;

/* Copy the bytes of src (a chain of any buffers: heap, packets, mmap...) to dst at dst_off.
   Host-visible dst: written in place (and flushed). Otherwise the slices are gathered into
   staging memory and copied by the device, one copy command per contiguous staging range.
   With ticket NULL it waits; else *ticket completes when dst holds the bytes (src may be
   changed at once: it has been read). Returns: BUFFET_OK. Errors: BUFFET_ERR_INVALID (NULL,
   dst not this device's GPU buffer), BUFFET_ERR_RANGE (past dst's end), BUFFET_ERR_DEVICE_LOST;
   nothing copied or a prefix (a lost device). Thread: safe. */
BUFFET_API buffet_result buffet_gpu_upload(buffet_gpu_device *d, buffet_buf *dst, uint64_t dst_off,
                                           const buffet_chain *src, buffet_gpu_ticket *ticket);
/* Copy len bytes at src_off of GPU buffer src to the end of chain dst. The device copies them
   into readback buffers (host-visible GPU buffers of at most dedicated_size each) that become
   the chain's slices: the host reads them in place, no byte is copied twice. With ticket NULL
   it waits (and invalidates non-coherent memory); else the appended bytes are valid once
   *ticket completes (then buffet_gpu_invalidate them where not coherent). Errors: as
   buffet_gpu_upload, BUFFET_ERR_NOMEM / BUFFET_ERR_BUDGET for the readback memory. On error dst
   is unchanged. Thread: safe (dst: owned). */
BUFFET_API buffet_result buffet_gpu_download(buffet_gpu_device *d, buffet_buf *src, uint64_t src_off,
                                             uint64_t len, buffet_chain *dst, buffet_gpu_ticket *ticket);
/* Copy between two GPU buffers of d on the device. Errors: as buffet_gpu_upload (overlapping
   ranges of one buffer: BUFFET_ERR_INVALID). Thread: safe. */
BUFFET_API buffet_result buffet_gpu_copy(buffet_gpu_device *d, buffet_buf *dst, uint64_t dst_off,
                                         buffet_buf *src, uint64_t src_off, uint64_t len,
                                         buffet_gpu_ticket *ticket);
/* Wait until t has completed, at most timeout_ns (UINT64_MAX: no limit). Returns: BUFFET_OK.
   Errors: BUFFET_AGAIN (not yet, after the timeout), BUFFET_ERR_INVALID (a ticket not handed out
   yet), BUFFET_ERR_DEVICE_LOST. Thread: safe. */
BUFFET_API buffet_result buffet_gpu_wait(buffet_gpu_device *d, buffet_gpu_ticket t, uint64_t timeout_ns);

/* Wait (without limit) for every transfer submitted so far, and free the memory of buffers
   released while transfers were in flight. Errors: BUFFET_ERR_INVALID (NULL),
   BUFFET_ERR_DEVICE_LOST. Thread: safe. */
BUFFET_API buffet_result buffet_gpu_wait_idle(buffet_gpu_device *d);

/* Frames: per-frame memory is reclaimed when the GPU has finished the frame, frames_in_flight
   frames later. Begin waits (when it must) for frame k - frames_in_flight and reclaims its
   memory; end closes frame k: its memory is reclaimed after the device work submitted before
   it (and the caller's after_ticket) has completed. Errors: BUFFET_ERR_STATE (begin twice, end
   without begin), BUFFET_ERR_DEVICE_LOST. Thread: one thread drives the frames. */
BUFFET_API buffet_result buffet_gpu_frame_begin(buffet_gpu_device *d);
BUFFET_API buffet_result buffet_gpu_frame_end(buffet_gpu_device *d, buffet_gpu_ticket after_ticket);
/* size bytes of intent memory that live until the current frame is reclaimed: a bump in a ring,
   no free. Errors: BUFFET_ERR_INVALID, BUFFET_ERR_STATE (outside a frame), BUFFET_ERR_EXHAUSTED
   (the frame memory is full: raise desc.frame_size). Thread: the frames' thread. */
BUFFET_API buffet_result buffet_gpu_frame_alloc(buffet_gpu_device *d, uint64_t size, uint64_t align,
                                                buffet_gpu_intent intent, buffet_gpu_native *out);

/* Register host buffer host (any kind: heap, mmap, shm, a packet pool's region) with the device
   so the device reaches it directly (DMA, no staging copy): *out is a new buffer of kind
   BUFFET_BUF_GPU_PINNED over the same bytes, holding a reference on host; the memory is
   unregistered when the last reference to *out goes. Uploads from a chain of pinned slices
   skip the staging copy. Errors: BUFFET_ERR_INVALID (NULL, a GPU buffer), BUFFET_ERR_UNSUPPORTED
   (the backend cannot: Vulkan without VK_EXT_external_memory_host), the driver's (NOMEM).
   Thread: safe. */
BUFFET_API buffet_result buffet_gpu_pin_at(buffet_gpu_device *d, buffet_buf *host, buffet_buf **out, buffet_site site);
#define buffet_gpu_pin(...) buffet_gpu_pin_at(__VA_ARGS__, BUFFET_SITE)
/* Register memory that is no buffet buffer, [mem, mem + size) (page-aligned by buffet), kept by
   the device until buffet_gpu_unpin_memory or destroy: any slice of any buffer inside it (every
   packet of a packet pool's region) is then uploaded by DMA, without a staging copy. Errors: as
   buffet_gpu_pin. Thread: safe. */
BUFFET_API buffet_result buffet_gpu_pin_memory(buffet_gpu_device *d, void *mem, size_t size);
/* Unregister what buffet_gpu_pin_memory registered at mem (once buffet's transfers reading it
   have completed). Errors: BUFFET_ERR_INVALID (NULL), BUFFET_ERR_NOT_FOUND. Thread: safe. */
BUFFET_API buffet_result buffet_gpu_unpin_memory(buffet_gpu_device *d, void *mem);
/* A buffet_pkt_region_fn for buffet_packet.h's pools (desc.on_region, with desc.region_user the
   device): each region the pool maps is registered with the device, and unregistered before it is
   unmapped, so that chains of its packets go to the GPU by DMA. A registration that fails is
   logged; those packets are then staged. */
BUFFET_API void buffet_gpu_region_hook(void *device, void *mem, size_t size, bool added);

/* Statistics (blocks, allocations, free ranges, largest free range, fragmentation, heaps'
   usage and budgets), as a struct and as one JSON object into out[0..cap) (NUL-terminated
   when cap > 0; returns the full length). Zero for NULL. Thread: safe. */
BUFFET_API buffet_gpu_stats buffet_gpu_get_stats(buffet_gpu_device *d);
BUFFET_API size_t buffet_gpu_stats_json(buffet_gpu_device *d, char *out, size_t cap);

/* Register d with registry r as provider "gpu": a request with device usage
   (BUFFET_USAGE_DEVICE_READ/WRITE) gets a GPU buffer (host-visible when it also asks for host
   access); the registry's host providers serve it when no device is registered. d must outlive
   the registration (buffet_registry_remove(r, "gpu") before destroying d). Thread: safe. */
BUFFET_API buffet_result buffet_gpu_register(buffet_gpu_device *d, buffet_registry *r);
/* The Vulkan objects a device uses (its own or the caller's), for the caller's own pipelines:
   instance, physical device, device, the queue family and index buffet submits to, and
   vkGetInstanceProcAddr. Errors: BUFFET_ERR_INVALID (NULL), BUFFET_ERR_UNSUPPORTED (not a Vulkan
   device). Thread: safe. */
BUFFET_API buffet_result buffet_gpu_vulkan_handles(const buffet_gpu_device *d, buffet_gpu_vulkan_desc *out);

BUFFET_EXTERN_C_END
#endif /* BUFFET_GPU_H_INCLUDED */

/* >>implementation */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_GPU_IMPL_INCLUDED)
#define BUFFET_GPU_IMPL_INCLUDED

/* >>bit scans: the bitmaps are searched with these; a loop where no builtin is known */
static inline unsigned buffet__gpu_ctz64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_ctzll(v);
#else
    unsigned n = 0;
    while (!(v & 1)) v >>= 1, n++;
    return n;
#endif
}
static inline unsigned buffet__gpu_ctz32(uint32_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_ctz(v);
#else
    return buffet__gpu_ctz64(v);
#endif
}
/* Index of the highest set bit (v != 0). */
static inline unsigned buffet__gpu_msb64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return 63u - (unsigned)__builtin_clzll(v);
#else
    unsigned n = 0;
    while (v >>= 1) n++;
    return n;
#endif
}

/* >>backend interface
   A backend is a table of functions over its own state (be). The device layer above it does
   all bookkeeping (blocks, suballocation, staging, tickets, frames, statistics) and calls these
   under the device's lock, except wait, which it calls without (a backend's wait must be safe
   beside its other calls). Each returns buffet_result and logs the driver's own code. */
typedef struct buffet__gpu_mem {
    uint64_t size;
    uint32_t type;              /* memory type index */
    uint32_t pinned;            /* made by pin, not mem_alloc */
    void *host;                 /* mapped (whole memory, persistently) when host-visible; else NULL */
    uint64_t memory;            /* VkDeviceMemory / CUdeviceptr / host address */
    uint64_t buffer;            /* VkBuffer over the whole memory; else 0 */
    uint64_t address;           /* CUdeviceptr / host address; Vulkan: 0 */
} buffet__gpu_mem;

typedef struct buffet__gpu_caps {
    char name[128];             /* the device's name */
    uint32_t type_count, heap_count;
    uint32_t type_props[BUFFET_GPU_MAX_TYPES];
    uint32_t type_heap[BUFFET_GPU_MAX_TYPES];
    uint64_t heap_size[BUFFET_GPU_MAX_HEAPS];
    uint32_t heap_device_local[BUFFET_GPU_MAX_HEAPS];
    uint64_t align;             /* offset alignment any buffer use needs (power of two) */
    uint64_t atom;              /* nonCoherentAtomSize; 1 when all memory is coherent */
    uint64_t max_alloc;         /* largest single allocation (maxMemoryAllocationSize) */
    uint32_t max_allocations;   /* maxMemoryAllocationCount; 0: no limit */
    uint32_t can_pin;           /* pin works */
} buffet__gpu_caps;

typedef struct buffet__gpu_ops {
    const char *name;
    /* Load the driver, open device desc->device_index, fill caps. NO_DEVICE when the library or
       device is missing. On error nothing is left open. */
    buffet_result (*open)(void **be, const buffet_gpu_device_desc *desc, buffet__gpu_caps *caps, buffet_logger log);
    /* Wait for the device to be idle and close everything (mem_free was called for all memory). */
    void (*close)(void *be);
    /* Allocate size bytes of memory type m->type (m->size and m->type set by the caller) and fill
       the rest of m: map it whole when host-visible; Vulkan: a VkBuffer over all of it, bound at 0.
       NOMEM when the driver is out of memory, DEVICE_LOST. */
    buffet_result (*mem_alloc)(void *be, buffet__gpu_mem *m);
    void (*mem_free)(void *be, buffet__gpu_mem *m);
    /* Flush (invalidate == 0) or invalidate host-visible non-coherent [off, off + size), already
       widened to caps.atom. */
    buffet_result (*flush)(void *be, const buffet__gpu_mem *m, uint64_t off, uint64_t size, int invalidate);
    /* Record a copy of size bytes into the batch being built; nothing runs until submit. */
    buffet_result (*copy)(void *be, const buffet__gpu_mem *src, uint64_t src_off,
                          const buffet__gpu_mem *dst, uint64_t dst_off, uint64_t size);
    /* Submit the recorded copies (perhaps none) as ticket t (tickets are submitted in increasing
       order); t completes when they and everything submitted before have completed. */
    buffet_result (*submit)(void *be, uint64_t t);
    /* OK once ticket t (submitted) has completed; AGAIN after timeout_ns (0: a poll);
       DEVICE_LOST. Called without the device lock, perhaps from several threads. */
    buffet_result (*wait)(void *be, uint64_t t, uint64_t timeout_ns);
    /* Register host memory [p, p + size) (page-aligned by the caller) and fill m (type is the
       caps' host-visible type to report, address is the device's view). UNSUPPORTED when the
       backend cannot. */
    buffet_result (*pin)(void *be, void *p, uint64_t size, buffet__gpu_mem *m);
    void (*unpin)(void *be, buffet__gpu_mem *m);
    /* The driver's view of heap h: bytes in use (by this process where it can tell) and the
       budget; both 0 when it has none. */
    void (*heap_budget)(void *be, uint32_t h, uint64_t *usage, uint64_t *budget);
    /* Vulkan only (NULL elsewhere): the objects in use, and the validation layer's messages
       (warnings and errors) so far. */
    void (*vulkan_handles)(void *be, buffet_gpu_vulkan_desc *out);
    uint64_t (*validation_messages)(void *be);
} buffet__gpu_ops;

/* Tags tell one block's or ring's handles from another's: a process-wide count, never 0, so a
   zero handle is never valid. Relaxed: it only has to differ, nothing is published through it. */
static uint32_t buffet__gpu_tag_count;
static uint32_t buffet__gpu_next_tag(void) {
    uint32_t t;
    do t = BUFFET__FETCH_ADD(&buffet__gpu_tag_count, 1u, BUFFET__RELAXED) & 0xFFFFu; while (t == 0);
    return t;
}

static void buffet__gpu_copy_name(char *dst, size_t cap, const char *name, const char *dflt) {
    snprintf(dst, cap, "%s", name ? name : dflt);
}

/* >>vblock
   TLSF (Masmano et al., 2004): free ranges sit in lists by size class, a first level per power of
   two and SL (32) linear steps within it; one bit per non-empty list at each level, so finding a
   list with ranges at least as big as a request is two bit scans. Ranges are nodes in one array
   (32-bit numbers, no allocation per range), linked in offset order to their physical
   neighbours, so that a freed range merges with free neighbours at once. */
#define BUFFET__VB_SL_LOG 5
#define BUFFET__VB_SL (1u << BUFFET__VB_SL_LOG)
#define BUFFET__VB_FL 60                     /* sizes up to 2^63: classes 0 (below SL) .. 59 */
/* Slot 0 is the nil node: "no node" is 0, and the list and link updates that would test for it
   write into slot 0 instead (harmless), so that random sizes, which make every such test a
   coin toss, cost no mispredicted branches there. Its state is never FREE or USED. */
#define BUFFET__VB_NONE 0u
#define BUFFET__VB_GEN_MAX 0xFFFFu           /* handles carry 16 bits of generation */
#define BUFFET__VB_MAX_NODES (UINT32_MAX - 1u)
#define BUFFET__VB_LEAKS_SHOWN 8

enum { BUFFET__VN_UNUSED, BUFFET__VN_FREE, BUFFET__VN_USED, BUFFET__VN_RETIRED, BUFFET__VN_NIL };

typedef struct buffet__vnode {
    uint64_t offset, size;
    uint32_t prev_phys, next_phys;   /* neighbours in offset order */
    uint32_t prev_free, next_free;   /* a free range's list; an unused slot's next unused */
    uint32_t gen;                    /* bumped when an allocation of this slot is released; a slot
                                        past BUFFET__VB_GEN_MAX never holds an allocation again */
    uint8_t state;
    uint8_t fl, sl;                  /* a free range's list, kept so that taking it out maps nothing */
    uint8_t unused_;
} buffet__vnode;

struct buffet_gpu_vblock {
    buffet__vnode *nodes;
    uint32_t cap, count;             /* slots allocated, slots ever used */
    uint32_t unused, n_unused;       /* list of unused slots */
    uint32_t first;                  /* the range at offset 0 */
    uint32_t tag;
    uint64_t size, min_align;
    uint32_t max_allocations;
    uint32_t allocations, free_ranges, retired;
    uint64_t allocated_bytes;
    uint64_t total_allocs, total_frees, failed_allocs, double_frees, foreign_frees;
    uint64_t fl_bitmap;
    uint32_t sl_bitmap[64];          /* 60 used; the rest stay 0, for a search that found none */
    uint32_t heads[BUFFET__VB_FL][BUFFET__VB_SL];
    buffet_allocator allocator;
    buffet_logger log;
    char name[32];
};

/* Counters that cannot wrap: they stop at their maximum. */
static inline void buffet__vb_count(uint64_t *c) { *c += *c != UINT64_MAX; }

/* Class 0 holds sizes below SL, one list each; class f >= 1 the sizes [2^(f+4), 2^(f+5)) in SL
   steps. One bit scan and no branch: with m the top bit of size | SL (SL_LOG below 2*SL), the
   SL bits under m are sl, and sizes below SL (m == SL_LOG, size >> 0 < SL) fall to class 0. */
static inline void buffet__vb_map(uint64_t size, unsigned *fl, unsigned *sl) {
    unsigned m = buffet__gpu_msb64(size | BUFFET__VB_SL);
    *fl = m - (BUFFET__VB_SL_LOG - 1) - (size < BUFFET__VB_SL);
    *sl = (unsigned)(size >> (m - BUFFET__VB_SL_LOG)) & (BUFFET__VB_SL - 1);
}

/* nodes is b->nodes, passed in: the stores through it would otherwise make the compiler load
   b->nodes again after each (they may alias b's own fields, as far as it knows). */
static inline void buffet__vb_list_insert(buffet_gpu_vblock *b, buffet__vnode *nodes, uint32_t i) {
    buffet__vnode *n = &nodes[i];
    unsigned fl, sl;
    uint32_t h;
    buffet__vb_map(n->size, &fl, &sl);
    h = b->heads[fl][sl];
    n->prev_free = BUFFET__VB_NONE;
    n->next_free = h;
    n->fl = (uint8_t)fl;
    n->sl = (uint8_t)sl;
    n->state = BUFFET__VN_FREE;
    nodes[h].prev_free = i;          /* the nil node's when the list was empty */
    b->heads[fl][sl] = i;
    b->sl_bitmap[fl] |= 1u << sl;
    b->fl_bitmap |= (uint64_t)1 << fl;
    b->free_ranges++;
}

static inline void buffet__vb_list_remove(buffet_gpu_vblock *b, buffet__vnode *nodes, uint32_t i) {
    buffet__vnode *n = &nodes[i];
    uint32_t prev = n->prev_free, next = n->next_free;
    unsigned fl = n->fl, sl = n->sl;
    uint32_t *head = &b->heads[fl][sl];
    uint32_t h = *head, empty, map;
    /* no branch on whether i heads its list (a coin toss with random sizes): the predecessor's
       link is written, the nil node's when there is none, and the head is replaced by a select */
    nodes[prev].next_free = next;
    h = h == i ? next : h;
    *head = h;
    nodes[next].prev_free = prev;    /* the nil node's when i was last */
    empty = h == BUFFET__VB_NONE;
    map = b->sl_bitmap[fl] & ~(empty << sl);   /* kept in a register: not read back */
    b->sl_bitmap[fl] = map;
    b->fl_bitmap &= ~((uint64_t)(map == 0) << fl);
    b->free_ranges--;
}

/* A slot no range uses any more: back to the unused list, or retired when its generations are
   spent (an old handle must never name a new allocation). */
static inline void buffet__vb_drop(buffet_gpu_vblock *b, uint32_t i) {
    buffet__vnode *n = &b->nodes[i];
    if (n->gen > BUFFET__VB_GEN_MAX) {
        n->state = BUFFET__VN_RETIRED;
        b->retired++;
        return;
    }
    n->state = BUFFET__VN_UNUSED;
    n->next_free = b->unused;
    b->unused = i;
    b->n_unused++;
}

static inline uint32_t buffet__vb_take_slot(buffet_gpu_vblock *b) {
    uint32_t i = b->unused;
    b->unused = b->nodes[i].next_free;
    b->n_unused--;
    return i;
}

/* Make sure 3 unused slots wait (an allocation uses at most 3: a replacement for a retired slot,
   the alignment gap, the tail), so that it never fails half done. */
__attribute__((noinline, cold)) static buffet_result buffet__vb_reserve(buffet_gpu_vblock *b) {
    buffet__vnode *nn;
    uint32_t newcap, i;
    size_t bytes;
    while (b->n_unused < 3 && b->count < b->cap) {
        i = b->count++;
        b->nodes[i].gen = 0;
        b->nodes[i].state = BUFFET__VN_UNUSED;
        b->nodes[i].next_free = b->unused;
        b->unused = i;
        b->n_unused++;
    }
    if (b->n_unused >= 3) return BUFFET_OK;
    if (b->cap >= BUFFET__VB_MAX_NODES) {
        BUFFET__LOG(&b->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "vblock '%s': the node table has 2^32 - 1 ranges: no more fit",
                    b->name);
        return BUFFET_ERR_OVERFLOW;
    }
    newcap = b->cap > BUFFET__VB_MAX_NODES / 2 ? BUFFET__VB_MAX_NODES : b->cap * 2;
    if (!buffet_mul(newcap, sizeof(buffet__vnode), &bytes)) return BUFFET_ERR_OVERFLOW;
    nn = (buffet__vnode *)buffet_alloc(b->allocator, bytes, BUFFET_ALIGNOF(buffet__vnode), BUFFET_SITE);
    if (!nn) {
        buffet_result r = buffet_alloc_error(NULL);
        if (r == BUFFET_OK) r = BUFFET_ERR_NOMEM;
        BUFFET__LOG(&b->log, BUFFET_LOG_ERROR, r, "vblock '%s': the node table could not grow to %u ranges", b->name, newcap);
        return r;
    }
    memcpy(nn, b->nodes, (size_t)b->count * sizeof(buffet__vnode));
    buffet_free(b->allocator, b->nodes, (size_t)b->cap * sizeof(buffet__vnode), BUFFET_ALIGNOF(buffet__vnode), BUFFET_SITE);
    b->nodes = nn;
    b->cap = newcap;
    return buffet__vb_reserve(b);
}

/* The whole range free in one node; every other slot unused (or retired when spent). The node
   is a slot with generations left where there is one, else a spent one (an allocation from it
   moves to a fresh slot), else a new slot: there is always some, since create keeps spares. */
static void buffet__vb_rebuild(buffet_gpu_vblock *b) {
    uint32_t i, whole = BUFFET__VB_NONE, spent = BUFFET__VB_NONE;
    memset(b->sl_bitmap, 0, sizeof b->sl_bitmap);
    memset(b->heads, 0, sizeof b->heads);
    b->fl_bitmap = 0;
    b->unused = BUFFET__VB_NONE;
    b->n_unused = 0;
    b->free_ranges = 0;
    b->allocations = 0;
    b->allocated_bytes = 0;
    for (i = b->count; i-- > 1;) {
        if (b->nodes[i].state == BUFFET__VN_RETIRED) continue;
        if (b->nodes[i].gen <= BUFFET__VB_GEN_MAX) { whole = i; break; }
        if (spent == BUFFET__VB_NONE) spent = i;
    }
    if (whole == BUFFET__VB_NONE) whole = spent;
    if (whole == BUFFET__VB_NONE) {
        BUFFET_ASSERT(b->count < b->cap);
        whole = b->count++;
        b->nodes[whole].gen = 0;
        b->nodes[whole].state = BUFFET__VN_UNUSED;
    }
    for (i = b->count; i-- > 1;) {
        buffet__vnode *n = &b->nodes[i];
        if (i == whole || n->state == BUFFET__VN_RETIRED) continue;
        if (n->gen > BUFFET__VB_GEN_MAX) { n->state = BUFFET__VN_RETIRED; b->retired++; continue; }
        n->state = BUFFET__VN_UNUSED;
        n->next_free = b->unused;
        b->unused = i;
        b->n_unused++;
    }
    b->nodes[whole].offset = 0;
    b->nodes[whole].size = b->size;
    b->nodes[whole].prev_phys = b->nodes[whole].next_phys = BUFFET__VB_NONE;
    b->first = whole;
    buffet__vb_list_insert(b, b->nodes, whole);
}

BUFFET_API buffet_result buffet_gpu_vblock_create(buffet_gpu_vblock **out, const buffet_gpu_vblock_desc *desc) {
    buffet_gpu_vblock *b;
    buffet_logger log;
    uint64_t min_align;
    buffet_result r;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    if (!desc) return BUFFET_ERR_INVALID;
    log = desc->log;
    min_align = desc->min_align ? desc->min_align : 1;
    if (desc->size == 0 || desc->size > ((uint64_t)1 << 63) || (min_align & (min_align - 1)) ||
        (desc->size & (min_align - 1))) {
        BUFFET__LOG(&log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "vblock: size %llu and min_align %llu: the size must be 1..2^63 and a multiple of min_align, a power of two",
                    (unsigned long long)desc->size, (unsigned long long)desc->min_align);
        return BUFFET_ERR_INVALID;
    }
    r = buffet_allocator_check(desc->allocator, BUFFET_NEED_UNTIL_FREED, "vblock", &log);
    if (r != BUFFET_OK) return r;
    b = (buffet_gpu_vblock *)buffet_alloc(desc->allocator, sizeof *b, BUFFET_ALIGNOF(buffet_gpu_vblock), BUFFET_SITE);
    if (!b) goto nomem;
    memset(b, 0, sizeof *b);
    b->allocator = desc->allocator;
    b->log = log;
    buffet__gpu_copy_name(b->name, sizeof b->name, desc->name, "vblock");
    b->size = desc->size;
    b->min_align = min_align;
    b->max_allocations = desc->max_allocations && desc->max_allocations < 0x7FFFFFFEu ? desc->max_allocations : 0x7FFFFFFEu;
    b->tag = buffet__gpu_next_tag();
    b->cap = 64;
    b->nodes = (buffet__vnode *)buffet_alloc(b->allocator, (size_t)b->cap * sizeof(buffet__vnode), BUFFET_ALIGNOF(buffet__vnode),
                                             BUFFET_SITE);
    if (!b->nodes) {
        buffet_free(desc->allocator, b, sizeof *b, BUFFET_ALIGNOF(buffet_gpu_vblock), BUFFET_SITE);
        goto nomem;
    }
    memset(&b->nodes[0], 0, sizeof b->nodes[0]);
    b->nodes[0].state = BUFFET__VN_NIL;
    b->count = 1;
    buffet__vb_rebuild(b);
    (void)buffet__vb_reserve(b);   /* within the first 64 slots: cannot fail */
    *out = b;
    return BUFFET_OK;
nomem:
    r = buffet_alloc_error(NULL);
    if (r == BUFFET_OK) r = BUFFET_ERR_NOMEM;
    BUFFET__LOG(&log, BUFFET_LOG_ERROR, r, "vblock: its bookkeeping could not be allocated");
    return r;
}

BUFFET_API void buffet_gpu_vblock_destroy(buffet_gpu_vblock *b) {
    buffet_allocator a;
    if (!b) return;
    if (b->allocations) {
        uint32_t i, shown = 0;
        for (i = b->first; i != BUFFET__VB_NONE; i = b->nodes[i].next_phys) {
            if (b->nodes[i].state != BUFFET__VN_USED) continue;
            if (shown++ >= BUFFET__VB_LEAKS_SHOWN) break;
            BUFFET__LOG(&b->log, BUFFET_LOG_WARN, BUFFET_ERR_LEAK, "vblock '%s': leak: %llu bytes at offset %llu still allocated at destroy",
                        b->name, (unsigned long long)b->nodes[i].size, (unsigned long long)b->nodes[i].offset);
        }
        BUFFET__LOG(&b->log, BUFFET_LOG_WARN, BUFFET_ERR_LEAK, "vblock '%s': destroyed with %u allocations (%llu bytes) live",
                    b->name, b->allocations, (unsigned long long)b->allocated_bytes);
    }
    a = b->allocator;
    buffet_free(a, b->nodes, (size_t)b->cap * sizeof(buffet__vnode), BUFFET_ALIGNOF(buffet__vnode), BUFFET_SITE);
    buffet_free(a, b, sizeof *b, BUFFET_ALIGNOF(buffet_gpu_vblock), BUFFET_SITE);
}

/* The head of the first list whose ranges are all >= a size of class (fl, sl) and its
   successors, or NONE. */
static inline uint32_t buffet__vb_find(const buffet_gpu_vblock *b, unsigned fl, unsigned sl) {
    /* both candidates at once, then a select: whether fl's own lists have one is a coin toss */
    uint32_t slmap = b->sl_bitmap[fl] & (~0u << sl);
    unsigned up = buffet__gpu_ctz64((b->fl_bitmap & (~(uint64_t)1 << fl)) | (uint64_t)1 << 63);   /* 63: none */
    uint32_t upmap = b->sl_bitmap[up];
    unsigned f = slmap ? fl : up;
    uint32_t m = slmap ? slmap : upmap;
    if (!m) return BUFFET__VB_NONE;
    return b->heads[f][buffet__gpu_ctz32(m)];
}

/* Good fit: the class above size's own, so that any range found is big enough. */
static inline uint32_t buffet__vb_find_fit(const buffet_gpu_vblock *b, uint64_t size) {
    unsigned fl, sl;
    /* round up to the next class boundary: one SL step less one (0 below 2 * SL, where a step is 1) */
    size += ((uint64_t)1 << (buffet__gpu_msb64(size | BUFFET__VB_SL) - BUFFET__VB_SL_LOG)) - 1;
    buffet__vb_map(size, &fl, &sl);
    return buffet__vb_find(b, fl, sl);
}

static inline bool buffet__vb_fits(const buffet__vnode *n, uint64_t size, uint64_t align) {
    uint64_t pad = (0 - n->offset) & (align - 1);
    return pad <= n->size && size <= n->size - pad;
}

__attribute__((noinline, cold)) static void buffet__vb_refuse(buffet_gpu_vblock *b, buffet_result r, buffet_log_level level, const char *why,
                              uint64_t size, uint64_t align) {
    buffet__vb_count(&b->failed_allocs);
    BUFFET__LOG(&b->log, level, r, "vblock '%s': alloc of %llu bytes aligned to %llu refused: %s", b->name,
                (unsigned long long)size, (unsigned long long)align, why);
}

BUFFET_API buffet_result buffet_gpu_vblock_alloc(buffet_gpu_vblock *b, uint64_t size, uint64_t align,
                                                 uint64_t *offset, buffet_gpu_valloc *handle) {
    uint64_t s, a, pad;
    uint32_t i = BUFFET__VB_NONE;
    buffet__vnode *n, *nodes;
    buffet_result r;
    if (!b || !offset || !handle) return BUFFET_ERR_INVALID;
    /* one test for the common case: 0 < size <= the block's size, align a power of two */
    if (size - 1 >= b->size || (align & (align - 1)) || !align) {
        if (size == 0 || align == 0 || (align & (align - 1))) {
            buffet__vb_refuse(b, BUFFET_ERR_INVALID, BUFFET_LOG_ERROR, "size 0 or an alignment that is no power of two", size, align);
            return BUFFET_ERR_INVALID;
        }
        if (size > UINT64_MAX - (b->min_align - 1)) {
            buffet__vb_refuse(b, BUFFET_ERR_OVERFLOW, BUFFET_LOG_ERROR, "the size rounded up to min_align passes 2^64", size, align);
            return BUFFET_ERR_OVERFLOW;
        }
        buffet__vb_refuse(b, BUFFET_ERR_TOO_LARGE, BUFFET_LOG_ERROR, "larger than the block", size, align);
        return BUFFET_ERR_TOO_LARGE;
    }
    /* size <= b->size, a multiple of min_align: rounding up cannot pass it */
    s = (size + b->min_align - 1) & ~(b->min_align - 1);
    a = align > b->min_align ? align : b->min_align;
    if (b->allocations >= b->max_allocations) {
        buffet__vb_refuse(b, BUFFET_ERR_EXHAUSTED, BUFFET_LOG_DEBUG, "max_allocations are live", size, align);
        return BUFFET_ERR_EXHAUSTED;
    }
    if (b->n_unused < 3 && (r = buffet__vb_reserve(b)) != BUFFET_OK) {
        buffet__vb_count(&b->failed_allocs);
        return r;
    }
    nodes = b->nodes;   /* after the reserve, which may move it */
    /* TLSF's good fit: the first list whose ranges are all big enough, its head taken when it is
       aligned well enough (always, when align <= min_align: every range starts at a multiple of
       min_align); else the good fit for s plus the worst padding, which always fits. O(1) either
       way. (Looking at the head of s's own list first, for an exact fit, was measured: no less
       waste or fragmentation, one more unpredictable branch.) */
    i = buffet__vb_find_fit(b, s);
    if (i != BUFFET__VB_NONE && a > b->min_align && !buffet__vb_fits(&nodes[i], s, a)) {
        i = BUFFET__VB_NONE;
        if (a - b->min_align <= b->size - s) {
            i = buffet__vb_find_fit(b, s + (a - b->min_align));
            if (i != BUFFET__VB_NONE && !buffet__vb_fits(&nodes[i], s, a)) i = BUFFET__VB_NONE;
        }
    }
    if (i == BUFFET__VB_NONE) {
        buffet__vb_refuse(b, BUFFET_ERR_EXHAUSTED, BUFFET_LOG_DEBUG, "no free range fits", size, align);
        return BUFFET_ERR_EXHAUSTED;
    }
    buffet__vb_list_remove(b, nodes, i);
    if (nodes[i].gen > BUFFET__VB_GEN_MAX) {
        /* this slot's generations are spent: the range moves to a fresh one */
        uint32_t j = buffet__vb_take_slot(b);
        buffet__vnode *o = &nodes[i], *m = &nodes[j];
        m->offset = o->offset;
        m->size = o->size;
        m->prev_phys = o->prev_phys;
        m->next_phys = o->next_phys;
        if (m->prev_phys != BUFFET__VB_NONE) nodes[m->prev_phys].next_phys = j;
        else b->first = j;
        if (m->next_phys != BUFFET__VB_NONE) nodes[m->next_phys].prev_phys = j;
        o->state = BUFFET__VN_RETIRED;
        b->retired++;
        i = j;
    }
    n = &nodes[i];
    pad = (0 - n->offset) & (a - 1);
    if (pad) {
        /* the gap becomes a free range of its own; its left neighbour is in use (free ranges are
           never neighbours), so there is nothing to merge it with */
        uint32_t g = buffet__vb_take_slot(b);
        buffet__vnode *gn = &nodes[g];
        gn->offset = n->offset;
        gn->size = pad;
        gn->prev_phys = n->prev_phys;
        gn->next_phys = i;
        if (gn->prev_phys != BUFFET__VB_NONE) nodes[gn->prev_phys].next_phys = g;
        else b->first = g;
        n->prev_phys = g;
        n->offset += pad;
        n->size -= pad;
        buffet__vb_list_insert(b, nodes, g);
    }
    if (n->size > s) {
        uint32_t t = buffet__vb_take_slot(b);
        buffet__vnode *tn = &nodes[t];
        tn->offset = n->offset + s;
        tn->size = n->size - s;
        n->size = s;
        tn->prev_phys = i;
        tn->next_phys = n->next_phys;
        nodes[tn->next_phys].prev_phys = t;
        n->next_phys = t;
        buffet__vb_list_insert(b, nodes, t);
    }
    n->state = BUFFET__VN_USED;
    b->allocations++;
    b->allocated_bytes += s;
    buffet__vb_count(&b->total_allocs);
    *offset = n->offset;
    *handle = (uint64_t)b->tag << 48 | (uint64_t)n->gen << 32 | i;
    return BUFFET_OK;
}

/* The slot a handle names when it is live, else why not. */
static buffet_result buffet__vb_lookup(const buffet_gpu_vblock *b, buffet_gpu_valloc h, uint32_t *out) {
    uint32_t i = (uint32_t)h, gen = (uint32_t)(h >> 32) & 0xFFFFu;
    const buffet__vnode *n;
    if ((uint32_t)(h >> 48) != b->tag || i >= b->count) return BUFFET_ERR_FOREIGN;
    n = &b->nodes[i];
    if (n->state == BUFFET__VN_USED && n->gen == gen) {
        *out = i;
        return BUFFET_OK;
    }
    /* generations only grow, so an older one was handed out and released since; a newer one, or
       the current one of a slot not in use, never was */
    return gen < n->gen ? BUFFET_ERR_DOUBLE_FREE : BUFFET_ERR_FOREIGN;
}

__attribute__((noinline, cold)) static buffet_result buffet__vb_refuse_free(buffet_gpu_vblock *b, buffet_result r, buffet_gpu_valloc handle) {
    buffet__vb_count(r == BUFFET_ERR_DOUBLE_FREE ? &b->double_frees : &b->foreign_frees);
    BUFFET__LOG(&b->log, BUFFET_LOG_ERROR, r, "vblock '%s': free of handle 0x%016llx refused: %s", b->name,
                (unsigned long long)handle,
                r == BUFFET_ERR_DOUBLE_FREE ? "freed already (or before a reset)" : "not an allocation of this block");
    return r;
}

BUFFET_API buffet_result buffet_gpu_vblock_free(buffet_gpu_vblock *b, buffet_gpu_valloc handle) {
    uint32_t i, p, q;
    buffet__vnode *n, *nodes;
    buffet_result r;
    if (!b) return BUFFET_ERR_INVALID;
    r = buffet__vb_lookup(b, handle, &i);
    if (r != BUFFET_OK) return buffet__vb_refuse_free(b, r, handle);
    nodes = b->nodes;
    n = &nodes[i];
    b->allocations--;
    b->allocated_bytes -= n->size;
    buffet__vb_count(&b->total_frees);
    n->gen++;
    p = n->prev_phys;
    if (nodes[p].state == BUFFET__VN_FREE) {   /* the nil node never is */
        /* the left neighbour absorbs this range */
        buffet__vnode *pn = &nodes[p];
        buffet__vb_list_remove(b, nodes, p);
        pn->size += n->size;
        pn->next_phys = n->next_phys;
        nodes[n->next_phys].prev_phys = p;
        buffet__vb_drop(b, i);
        i = p;
        n = pn;
    }
    q = n->next_phys;
    if (nodes[q].state == BUFFET__VN_FREE) {
        buffet__vnode *qn = &nodes[q];
        buffet__vb_list_remove(b, nodes, q);
        n->size += qn->size;
        n->next_phys = qn->next_phys;
        nodes[qn->next_phys].prev_phys = i;
        buffet__vb_drop(b, q);
    }
    buffet__vb_list_insert(b, nodes, i);
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_gpu_vblock_get(const buffet_gpu_vblock *b, buffet_gpu_valloc handle,
                                               uint64_t *offset, uint64_t *size) {
    uint32_t i;
    buffet_result r;
    if (!b) return BUFFET_ERR_INVALID;
    r = buffet__vb_lookup(b, handle, &i);
    if (r != BUFFET_OK) return r;
    if (offset) *offset = b->nodes[i].offset;
    if (size) *size = b->nodes[i].size;
    return BUFFET_OK;
}

BUFFET_API void buffet_gpu_vblock_reset(buffet_gpu_vblock *b) {
    uint32_t i;
    if (!b) return;
    for (i = 0; i < b->count; i++)
        if (b->nodes[i].state == BUFFET__VN_USED) b->nodes[i].gen++;   /* their handles go stale */
    buffet__vb_rebuild(b);
    (void)buffet__vb_reserve(b);   /* may fail to grow: the next alloc tries again */
}

BUFFET_API buffet_gpu_vblock_stats buffet_gpu_vblock_get_stats(const buffet_gpu_vblock *b) {
    buffet_gpu_vblock_stats s;
    memset(&s, 0, sizeof s);
    if (!b) return s;
    s.size = b->size;
    s.allocated_bytes = b->allocated_bytes;
    s.free_bytes = b->size - b->allocated_bytes;
    s.allocations = b->allocations;
    s.free_ranges = b->free_ranges;
    if (b->fl_bitmap) {
        /* the largest range is in the highest non-empty list, somewhere: that list is walked */
        unsigned fl = buffet__gpu_msb64(b->fl_bitmap);
        unsigned sl = buffet__gpu_msb64(b->sl_bitmap[fl]);
        uint32_t i;
        for (i = b->heads[fl][sl]; i != BUFFET__VB_NONE; i = b->nodes[i].next_free)
            if (b->nodes[i].size > s.largest_free) s.largest_free = b->nodes[i].size;
    }
    s.fragmentation = s.free_bytes ? 1.0 - (double)s.largest_free / (double)s.free_bytes : 0.0;
    s.total_allocs = b->total_allocs;
    s.total_frees = b->total_frees;
    s.failed_allocs = b->failed_allocs;
    s.double_frees = b->double_frees;
    s.foreign_frees = b->foreign_frees;
    s.nodes = b->count;
    s.retired_nodes = b->retired;
    return s;
}

BUFFET_API size_t buffet_gpu_vblock_stats_json(const buffet_gpu_vblock *b, char *out, size_t cap) {
    buffet_gpu_vblock_stats s = buffet_gpu_vblock_get_stats(b);
    size_t len = 0;
    if (!out) cap = 0;
    if (cap) out[0] = '\0';
    buffet__append(out, cap, &len, "{\"vblock\":\"");
    buffet__append_quoted(out, cap, &len, b ? b->name : "", false);
    buffet__append(out, cap, &len,
                   "\",\"size\":%llu,\"min_align\":%llu,\"allocations\":%u,\"allocated_bytes\":%llu,\"free_bytes\":%llu,"
                   "\"free_ranges\":%u,\"largest_free\":%llu,\"fragmentation\":%.6f,\"total_allocs\":%llu,\"total_frees\":%llu,"
                   "\"failed_allocs\":%llu,\"double_frees\":%llu,\"foreign_frees\":%llu,\"nodes\":%u,\"retired_nodes\":%u}",
                   (unsigned long long)s.size, (unsigned long long)(b ? b->min_align : 0), s.allocations,
                   (unsigned long long)s.allocated_bytes, (unsigned long long)s.free_bytes, s.free_ranges,
                   (unsigned long long)s.largest_free, s.fragmentation, (unsigned long long)s.total_allocs,
                   (unsigned long long)s.total_frees, (unsigned long long)s.failed_allocs, (unsigned long long)s.double_frees,
                   (unsigned long long)s.foreign_frees, s.nodes, s.retired_nodes);
    return len;
}

#define BUFFET__VB_BAD(...) do { BUFFET__LOG(&b->log, BUFFET_LOG_ERROR, BUFFET_ERR_CORRUPT, __VA_ARGS__); return BUFFET_ERR_CORRUPT; } while (0)

BUFFET_API buffet_result buffet_gpu_vblock_check(const buffet_gpu_vblock *b) {
    uint64_t at = 0, used_bytes = 0;
    uint32_t i, prev = BUFFET__VB_NONE, nused = 0, nfree = 0, listed = 0, unused = 0, retired = 0, steps = 0;
    unsigned fl, sl;
    if (!b) return BUFFET_ERR_INVALID;
    for (i = b->first; i != BUFFET__VB_NONE; i = b->nodes[i].next_phys) {
        const buffet__vnode *n = &b->nodes[i];
        if (i >= b->count || ++steps > b->count) BUFFET__VB_BAD("vblock '%s': the range list leaves the table or loops", b->name);
        if (n->prev_phys != prev) BUFFET__VB_BAD("vblock '%s': range %u's left link is wrong", b->name, i);
        if (n->offset != at || n->size == 0 || n->size > b->size - at)
            BUFFET__VB_BAD("vblock '%s': range %u is [%llu, +%llu), expected at %llu", b->name, i, (unsigned long long)n->offset,
                           (unsigned long long)n->size, (unsigned long long)at);
        if ((n->offset | n->size) & (b->min_align - 1)) BUFFET__VB_BAD("vblock '%s': range %u not a multiple of min_align", b->name, i);
        if (n->state == BUFFET__VN_USED) nused++, used_bytes += n->size;
        else if (n->state == BUFFET__VN_FREE) {
            nfree++;
            if (prev != BUFFET__VB_NONE && b->nodes[prev].state == BUFFET__VN_FREE)
                BUFFET__VB_BAD("vblock '%s': free ranges %u and %u are neighbours, not merged", b->name, prev, i);
        } else BUFFET__VB_BAD("vblock '%s': range %u is in the list but neither free nor used", b->name, i);
        at += n->size;
        prev = i;
    }
    if (at != b->size) BUFFET__VB_BAD("vblock '%s': the ranges cover %llu of %llu bytes", b->name, (unsigned long long)at, (unsigned long long)b->size);
    if (nused != b->allocations || used_bytes != b->allocated_bytes || nfree != b->free_ranges)
        BUFFET__VB_BAD("vblock '%s': counters disagree with the ranges", b->name);
    for (fl = 0; fl < BUFFET__VB_FL; fl++) {
        if (!!(b->fl_bitmap >> fl & 1) != !!b->sl_bitmap[fl]) BUFFET__VB_BAD("vblock '%s': first-level bit %u is wrong", b->name, fl);
        for (sl = 0; sl < BUFFET__VB_SL; sl++) {
            uint32_t h = b->heads[fl][sl], p2 = BUFFET__VB_NONE, k = 0;
            if (!!(b->sl_bitmap[fl] >> sl & 1) != (h != BUFFET__VB_NONE))
                BUFFET__VB_BAD("vblock '%s': second-level bit %u/%u is wrong", b->name, fl, sl);
            for (; h != BUFFET__VB_NONE; h = b->nodes[h].next_free) {
                unsigned f2, s2;
                if (h >= b->count || ++k > b->count) BUFFET__VB_BAD("vblock '%s': free list %u/%u loops", b->name, fl, sl);
                buffet__vb_map(b->nodes[h].size, &f2, &s2);
                if (b->nodes[h].state != BUFFET__VN_FREE || f2 != fl || s2 != sl || b->nodes[h].fl != fl || b->nodes[h].sl != sl ||
                    b->nodes[h].prev_free != p2)
                    BUFFET__VB_BAD("vblock '%s': range %u is in the wrong free list", b->name, h);
                p2 = h;
                listed++;
            }
        }
    }
    if (listed != nfree) BUFFET__VB_BAD("vblock '%s': %u free ranges listed of %u", b->name, listed, nfree);
    for (fl = BUFFET__VB_FL; fl < 64; fl++)
        if (b->sl_bitmap[fl]) BUFFET__VB_BAD("vblock '%s': second-level bitmap %u is past the classes", b->name, fl);
    for (i = b->unused, steps = 0; i != BUFFET__VB_NONE; i = b->nodes[i].next_free) {
        if (i >= b->count || ++steps > b->count || b->nodes[i].state != BUFFET__VN_UNUSED || b->nodes[i].gen > BUFFET__VB_GEN_MAX)
            BUFFET__VB_BAD("vblock '%s': the unused list is wrong at %u", b->name, i);
        unused++;
    }
    for (i = 0; i < b->count; i++) retired += b->nodes[i].state == BUFFET__VN_RETIRED;
    if (unused != b->n_unused || retired != b->retired || nused + nfree + unused + retired + 1 != b->count ||
        b->nodes[0].state != BUFFET__VN_NIL || b->nodes[0].gen != 0)
        BUFFET__VB_BAD("vblock '%s': slots do not add up", b->name);
    return BUFFET_OK;
}
#undef BUFFET__VB_BAD

/* >>ring */
#define BUFFET__RING_SEQ_MAX (((uint64_t)1 << 48) - 1)

BUFFET_API buffet_result buffet_gpu_ring_init(buffet_gpu_ring *r, const buffet_gpu_ring_desc *desc) {
    uint64_t min_align;
    if (!r) return BUFFET_ERR_INVALID;
    memset(r, 0, sizeof *r);
    if (!desc) return BUFFET_ERR_INVALID;
    min_align = desc->min_align ? desc->min_align : 1;
    if (desc->size == 0 || desc->size > ((uint64_t)1 << 63) || (min_align & (min_align - 1)) || (desc->size & (min_align - 1))) {
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "ring: size %llu and min_align %llu: the size must be 1..2^63 and a multiple of min_align, a power of two",
                    (unsigned long long)desc->size, (unsigned long long)desc->min_align);
        return BUFFET_ERR_INVALID;
    }
    r->size = desc->size;
    r->min_align = min_align;
    r->log = desc->log;
    r->tag = buffet__gpu_next_tag();
    buffet__gpu_copy_name(r->name, sizeof r->name, desc->name, "ring");
    return BUFFET_OK;
}

BUFFET_API void buffet_gpu_ring_deinit(buffet_gpu_ring *r) {
    if (r) memset(r, 0, sizeof *r);
}

static buffet_result buffet__ring_refuse(buffet_gpu_ring *r, buffet_result code, buffet_log_level level, const char *why,
                                         uint64_t size, uint64_t align) {
    if (r->failures != UINT64_MAX) r->failures++;
    BUFFET__LOG(&r->log, level, code, "ring '%s': alloc of %llu bytes aligned to %llu refused: %s", r->name,
                (unsigned long long)size, (unsigned long long)align, why);
    return code;
}

BUFFET_API buffet_result buffet_gpu_ring_alloc(buffet_gpu_ring *r, uint64_t size, uint64_t align, uint64_t *offset) {
    uint64_t s, a, pad, skip = 0, off, need, hoff;
    if (!r || !offset || !r->size) return BUFFET_ERR_INVALID;
    if (size == 0 || align == 0 || (align & (align - 1)))
        return buffet__ring_refuse(r, BUFFET_ERR_INVALID, BUFFET_LOG_ERROR, "size 0 or an alignment that is no power of two", size, align);
    if (size > UINT64_MAX - (r->min_align - 1))
        return buffet__ring_refuse(r, BUFFET_ERR_OVERFLOW, BUFFET_LOG_ERROR, "the size rounded up to min_align passes 2^64", size, align);
    s = (size + r->min_align - 1) & ~(r->min_align - 1);
    a = align > r->min_align ? align : r->min_align;
    if (s > r->size) return buffet__ring_refuse(r, BUFFET_ERR_TOO_LARGE, BUFFET_LOG_ERROR, "larger than the ring", size, align);
    /* an empty ring starts again at 0: nothing live is in the way, and nothing is skipped */
    hoff = r->head == r->tail ? 0 : r->head_off;
    pad = (0 - hoff) & (a - 1);
    if (pad > r->size - hoff || s > r->size - hoff - pad) {
        /* not before the end: skip it and start at 0, which every alignment allows */
        skip = r->size - hoff;
        pad = 0;
        off = 0;
    } else off = hoff + pad;
    need = skip + pad + s;   /* at most 2 * size <= 2^64 - 2 (init keeps size <= 2^63) */
    if (r->head > UINT64_MAX - need)
        return buffet__ring_refuse(r, BUFFET_ERR_OVERFLOW, BUFFET_LOG_ERROR, "the position counter would pass 2^64", size, align);
    if (r->head + need - r->tail > r->size)
        return buffet__ring_refuse(r, BUFFET_ERR_EXHAUSTED, BUFFET_LOG_DEBUG, "the live part leaves no room (release a mark)", size, align);
    r->head += need;
    r->head_off = off + s == r->size ? 0 : off + s;
    if (skip && r->wraps != UINT64_MAX) r->wraps++;
    if (r->allocs != UINT64_MAX) r->allocs++;
    if (r->head - r->tail > r->peak_used) r->peak_used = r->head - r->tail;
    *offset = off;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_gpu_ring_mark_take(buffet_gpu_ring *r, buffet_gpu_ring_mark *mark) {
    if (!r || !mark || !r->size) return BUFFET_ERR_INVALID;
    if (r->marks_taken - r->marks_released >= BUFFET_GPU_RING_MARKS) {
        BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, BUFFET_ERR_EXHAUSTED, "ring '%s': %d marks outstanding: release one first", r->name,
                    BUFFET_GPU_RING_MARKS);
        return BUFFET_ERR_EXHAUSTED;
    }
    if (r->marks_taken >= BUFFET__RING_SEQ_MAX) {
        BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "ring '%s': 2^48 marks taken: reset or init it again", r->name);
        return BUFFET_ERR_OVERFLOW;
    }
    r->marks_taken++;
    r->mark_pos[r->marks_taken % BUFFET_GPU_RING_MARKS] = r->head;
    *mark = (uint64_t)r->tag << 48 | r->marks_taken;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_gpu_ring_release(buffet_gpu_ring *r, buffet_gpu_ring_mark mark) {
    uint64_t seq = mark & BUFFET__RING_SEQ_MAX;
    buffet_result code;
    if (!r || !r->size) return BUFFET_ERR_INVALID;
    if ((uint32_t)(mark >> 48) != r->tag || seq == 0 || seq > r->marks_taken) code = BUFFET_ERR_FOREIGN;
    else if (seq <= r->marks_released) code = BUFFET_ERR_DOUBLE_FREE;
    else {
        /* marks are positions in order, so the tail only moves forward */
        r->tail = r->mark_pos[seq % BUFFET_GPU_RING_MARKS];
        r->marks_released = seq;
        return BUFFET_OK;
    }
    if (r->bad_marks != UINT64_MAX) r->bad_marks++;
    BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, code, "ring '%s': release of mark 0x%016llx refused: %s", r->name,
                (unsigned long long)mark,
                code == BUFFET_ERR_DOUBLE_FREE ? "released already, or older than a released one" : "not a mark of this ring");
    return code;
}

BUFFET_API void buffet_gpu_ring_reset(buffet_gpu_ring *r) {
    if (!r || !r->size) return;
    /* every mark taken so far becomes stale: released, with nothing left to release */
    r->marks_released = r->marks_taken;
    r->tail = r->head;
}

BUFFET_API buffet_gpu_ring_stats buffet_gpu_ring_get_stats(const buffet_gpu_ring *r) {
    buffet_gpu_ring_stats s;
    memset(&s, 0, sizeof s);
    if (!r) return s;
    s.size = r->size;
    s.used = r->head - r->tail;
    s.peak_used = r->peak_used;
    s.allocs = r->allocs;
    s.failures = r->failures;
    s.wraps = r->wraps;
    s.marks_outstanding = r->marks_taken - r->marks_released;
    s.bad_marks = r->bad_marks;
    return s;
}

BUFFET_API size_t buffet_gpu_ring_stats_json(const buffet_gpu_ring *r, char *out, size_t cap) {
    buffet_gpu_ring_stats s = buffet_gpu_ring_get_stats(r);
    size_t len = 0;
    if (!out) cap = 0;
    if (cap) out[0] = '\0';
    buffet__append(out, cap, &len, "{\"ring\":\"");
    buffet__append_quoted(out, cap, &len, r ? r->name : "", false);
    buffet__append(out, cap, &len,
                   "\",\"size\":%llu,\"used\":%llu,\"peak_used\":%llu,\"allocs\":%llu,\"failures\":%llu,\"wraps\":%llu,"
                   "\"marks_outstanding\":%llu,\"bad_marks\":%llu}",
                   (unsigned long long)s.size, (unsigned long long)s.used, (unsigned long long)s.peak_used,
                   (unsigned long long)s.allocs, (unsigned long long)s.failures, (unsigned long long)s.wraps,
                   (unsigned long long)s.marks_outstanding, (unsigned long long)s.bad_marks);
    return len;
}

/* >>host backend
   Memory from the device's allocator that behaves as a GPU's: the device-local type has no host
   address (data is reached by copies only, as on a discrete GPU), copies are recorded and run
   at submit, and tickets complete in order. Every program and test runs on it without a GPU. */
typedef struct buffet__gpu_hcopy { unsigned char *src, *dst; uint64_t size; } buffet__gpu_hcopy;
typedef struct buffet__gpu_host {
    buffet_allocator a;
    buffet_logger log;
    uint64_t submitted;             /* atomic: the last ticket whose copies have run */
    size_t count, cap;              /* recorded copies */
    buffet__gpu_hcopy *copies;
} buffet__gpu_host;

static buffet_result buffet__gpu_host_open(void **be, const buffet_gpu_device_desc *desc,
                                           buffet__gpu_caps *caps, buffet_logger log) {
    static const uint32_t props[3] = {
        BUFFET_GPU_MEM_DEVICE_LOCAL,
        BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT,
        BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT | BUFFET_GPU_MEM_HOST_CACHED};
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t ram = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : (uint64_t)1 << 32;
    buffet__gpu_host *h;
    uint32_t i;
    buffet_allocator a = desc->allocator;
    if (desc->device_index != 0) return BUFFET_ERR_NO_DEVICE;
    h = (buffet__gpu_host *)buffet_alloc(a, sizeof *h, 8, BUFFET_SITE);
    if (!h) return BUFFET_ERR_NOMEM;
    memset(h, 0, sizeof *h);
    h->a = a;
    h->log = log;
    snprintf(caps->name, sizeof caps->name, "buffet host device");
    caps->type_count = 3;
    caps->heap_count = 2;
    for (i = 0; i < 3; i++) {
        caps->type_props[i] = props[i];
        caps->type_heap[i] = i == 0 ? 0 : 1;
    }
    caps->heap_size[0] = caps->heap_size[1] = ram / 2;
    caps->heap_device_local[0] = 1;
    caps->align = 256;              /* as a GPU's storage buffers: what portable code must assume */
    caps->atom = 1;
    caps->max_alloc = ram / 2;
    caps->can_pin = 1;
    *be = h;
    return BUFFET_OK;
}

static void buffet__gpu_host_close(void *be) {
    buffet__gpu_host *h = (buffet__gpu_host *)be;
    if (h->copies) buffet_free_array(h->a, h->copies, h->cap, sizeof *h->copies, 8, BUFFET_SITE);
    buffet_free(h->a, h, sizeof *h, 8, BUFFET_SITE);
}

static buffet_result buffet__gpu_host_mem_alloc(void *be, buffet__gpu_mem *m) {
    buffet__gpu_host *h = (buffet__gpu_host *)be;
    void *p = NULL;
    buffet_result r;
    if (m->size > SIZE_MAX) return BUFFET_ERR_NOMEM;
    r = buffet_alloc_ex(h->a, (size_t)m->size, 4096, BUFFET_SITE, &p);
    if (r != BUFFET_OK || !p) return r != BUFFET_OK ? r : BUFFET_ERR_NOMEM;
    m->memory = m->address = (uint64_t)(uintptr_t)p;
    m->buffer = 0;
    m->host = m->type == 0 ? NULL : p;
    return BUFFET_OK;
}

static void buffet__gpu_host_mem_free(void *be, buffet__gpu_mem *m) {
    buffet__gpu_host *h = (buffet__gpu_host *)be;
    buffet_free(h->a, (void *)(uintptr_t)m->memory, (size_t)m->size, 4096, BUFFET_SITE);
}

static buffet_result buffet__gpu_host_flush(void *be, const buffet__gpu_mem *m, uint64_t off, uint64_t size,
                                            int invalidate) {
    (void)be, (void)m, (void)off, (void)size, (void)invalidate;
    return BUFFET_OK;               /* coherent */
}

static buffet_result buffet__gpu_host_copy(void *be, const buffet__gpu_mem *src, uint64_t src_off,
                                           const buffet__gpu_mem *dst, uint64_t dst_off, uint64_t size) {
    buffet__gpu_host *h = (buffet__gpu_host *)be;
    if (h->count == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        void *n = buffet_realloc(h->a, h->copies, h->cap * sizeof *h->copies, cap * sizeof *h->copies, 8, BUFFET_SITE);
        if (!n) return BUFFET_ERR_NOMEM;
        h->copies = (buffet__gpu_hcopy *)n;
        h->cap = cap;
    }
    h->copies[h->count].src = (unsigned char *)(uintptr_t)src->address + src_off;
    h->copies[h->count].dst = (unsigned char *)(uintptr_t)dst->address + dst_off;
    h->copies[h->count++].size = size;
    return BUFFET_OK;
}

static buffet_result buffet__gpu_host_submit(void *be, uint64_t t) {
    buffet__gpu_host *h = (buffet__gpu_host *)be;
    size_t i;
    for (i = 0; i < h->count; i++) memmove(h->copies[i].dst, h->copies[i].src, (size_t)h->copies[i].size);
    h->count = 0;
    BUFFET__STORE(&h->submitted, t, BUFFET__RELEASE);   /* the copies happen before a waiter's reads */
    return BUFFET_OK;
}

static buffet_result buffet__gpu_host_wait(void *be, uint64_t t, uint64_t timeout_ns) {
    buffet__gpu_host *h = (buffet__gpu_host *)be;
    (void)timeout_ns;
    return BUFFET__LOAD(&h->submitted, BUFFET__ACQUIRE) >= t ? BUFFET_OK : BUFFET_AGAIN;
}

static buffet_result buffet__gpu_host_pin(void *be, void *p, uint64_t size, buffet__gpu_mem *m) {
    (void)be;
    m->size = size;
    m->memory = m->address = (uint64_t)(uintptr_t)p;
    m->host = p;
    m->buffer = 0;
    return BUFFET_OK;
}

static void buffet__gpu_host_unpin(void *be, buffet__gpu_mem *m) { (void)be, (void)m; }

static void buffet__gpu_host_budget(void *be, uint32_t heap, uint64_t *usage, uint64_t *budget) {
    (void)be, (void)heap;
    *usage = *budget = 0;
}

static const buffet__gpu_ops buffet__gpu_host_ops = {
    "host", buffet__gpu_host_open, buffet__gpu_host_close, buffet__gpu_host_mem_alloc,
    buffet__gpu_host_mem_free, buffet__gpu_host_flush, buffet__gpu_host_copy, buffet__gpu_host_submit,
    buffet__gpu_host_wait, buffet__gpu_host_pin, buffet__gpu_host_unpin, buffet__gpu_host_budget, NULL, NULL};

/* >>vulkan backend */
/* libvulkan is opened at run time (dlopen), so nothing Vulkan is needed to compile: the few types,
   values and entry points used are declared here from the Vulkan specification, prefixed
   buffet__vk / BUFFET__VK_. Dispatchable handles are pointers, the others uint64_t.

   Completion uses one fence per submitted batch rather than a timeline semaphore: fences are core
   Vulkan 1.0, so a caller's device (user mode) works without any feature enabled, and both modes
   share one path. Tickets map to batches in submission order; a batch's fence signalling means every
   earlier submission on the queue has completed too (its signal operation's first scope includes all
   commands earlier in submission order), which gives the in-order ticket semantics. The backend's own
   mutex guards the batches, the command pool and the queue; wait drops it around vkWaitForFences,
   and a fence some thread waits on (waiters > 0) is never reset or reused. */
#include <dlfcn.h>

typedef int32_t buffet__vk_result;
typedef void (*buffet__vk_void_fn)(void);
typedef buffet__vk_void_fn (*buffet__vk_gipa_fn)(void *instance, const char *name);
typedef buffet__vk_void_fn (*buffet__vk_gdpa_fn)(void *device, const char *name);

enum {
    BUFFET__VK_SUCCESS = 0, BUFFET__VK_NOT_READY = 1, BUFFET__VK_TIMEOUT = 2, BUFFET__VK_INCOMPLETE = 5,
    BUFFET__VK_ERROR_OUT_OF_HOST_MEMORY = -1, BUFFET__VK_ERROR_OUT_OF_DEVICE_MEMORY = -2,
    BUFFET__VK_ERROR_DEVICE_LOST = -4, BUFFET__VK_ERROR_TOO_MANY_OBJECTS = -10
};
enum {  /* VkStructureType */
    BUFFET__VK_ST_APPLICATION_INFO = 0, BUFFET__VK_ST_INSTANCE_CREATE_INFO = 1,
    BUFFET__VK_ST_DEVICE_QUEUE_CREATE_INFO = 2, BUFFET__VK_ST_DEVICE_CREATE_INFO = 3,
    BUFFET__VK_ST_SUBMIT_INFO = 4, BUFFET__VK_ST_MEMORY_ALLOCATE_INFO = 5,
    BUFFET__VK_ST_MAPPED_MEMORY_RANGE = 6, BUFFET__VK_ST_FENCE_CREATE_INFO = 8,
    BUFFET__VK_ST_BUFFER_CREATE_INFO = 12, BUFFET__VK_ST_COMMAND_POOL_CREATE_INFO = 39,
    BUFFET__VK_ST_COMMAND_BUFFER_ALLOCATE_INFO = 40, BUFFET__VK_ST_COMMAND_BUFFER_BEGIN_INFO = 42,
    BUFFET__VK_ST_MEMORY_BARRIER = 46,
    BUFFET__VK_ST_PHYSICAL_DEVICE_PROPERTIES_2 = 1000059001,
    BUFFET__VK_ST_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2 = 1000059006,
    BUFFET__VK_ST_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT = 1000128004,
    BUFFET__VK_ST_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES = 1000168000,
    BUFFET__VK_ST_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT = 1000237000,
    BUFFET__VK_ST_EXTERNAL_MEMORY_BUFFER_CREATE_INFO = 1000072000,
    BUFFET__VK_ST_IMPORT_MEMORY_HOST_POINTER_INFO_EXT = 1000178000,
    BUFFET__VK_ST_MEMORY_HOST_POINTER_PROPERTIES_EXT = 1000178001,
    BUFFET__VK_ST_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT = 1000178002
};
#define BUFFET__VK_API_1_1 ((1u << 22) | (1u << 12))
#define BUFFET__VK_API_1_3 ((1u << 22) | (3u << 12))
#define BUFFET__VK_WHOLE_SIZE (~(uint64_t)0)
enum {
    BUFFET__VK_MEM_DEVICE_LOCAL = 0x1, BUFFET__VK_MEM_HOST_VISIBLE = 0x2, BUFFET__VK_MEM_HOST_COHERENT = 0x4,
    BUFFET__VK_MEM_HOST_CACHED = 0x8, BUFFET__VK_MEM_LAZILY_ALLOCATED = 0x10, BUFFET__VK_MEM_PROTECTED = 0x20,
    BUFFET__VK_MEM_DEVICE_COHERENT_AMD = 0x40, BUFFET__VK_MEM_DEVICE_UNCACHED_AMD = 0x80,
    BUFFET__VK_HEAP_DEVICE_LOCAL = 0x1,
    /* TRANSFER_SRC | TRANSFER_DST | UNIFORM | STORAGE | INDEX | VERTEX | INDIRECT */
    BUFFET__VK_BUFFER_USAGE_ALL = 0x1 | 0x2 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100,
    BUFFET__VK_QUEUE_GRAPHICS = 0x1, BUFFET__VK_QUEUE_COMPUTE = 0x2, BUFFET__VK_QUEUE_TRANSFER = 0x4,
    BUFFET__VK_POOL_RESET_COMMAND_BUFFER = 0x2, BUFFET__VK_CMD_ONE_TIME_SUBMIT = 0x1,
    BUFFET__VK_STAGE_TRANSFER = 0x1000, BUFFET__VK_STAGE_HOST = 0x4000,
    BUFFET__VK_ACCESS_TRANSFER_READ = 0x800, BUFFET__VK_ACCESS_TRANSFER_WRITE = 0x1000,
    BUFFET__VK_ACCESS_HOST_READ = 0x2000, BUFFET__VK_ACCESS_HOST_WRITE = 0x4000,
    BUFFET__VK_SEVERITY_WARNING = 0x100, BUFFET__VK_SEVERITY_ERROR = 0x1000,
    BUFFET__VK_MSG_GENERAL = 0x1, BUFFET__VK_MSG_VALIDATION = 0x2, BUFFET__VK_MSG_PERFORMANCE = 0x4,
    BUFFET__VK_HANDLE_HOST_ALLOCATION = 0x80
};

typedef struct buffet__vk_application_info {
    int32_t s_type; const void *next;
    const char *app_name; uint32_t app_version; const char *engine_name; uint32_t engine_version;
    uint32_t api_version;
} buffet__vk_application_info;
typedef struct buffet__vk_instance_create_info {
    int32_t s_type; const void *next; uint32_t flags;
    const buffet__vk_application_info *app;
    uint32_t layer_count; const char *const *layers;
    uint32_t extension_count; const char *const *extensions;
} buffet__vk_instance_create_info;
typedef struct buffet__vk_device_queue_create_info {
    int32_t s_type; const void *next; uint32_t flags;
    uint32_t family; uint32_t count; const float *priorities;
} buffet__vk_device_queue_create_info;
typedef struct buffet__vk_device_create_info {
    int32_t s_type; const void *next; uint32_t flags;
    uint32_t queue_info_count; const buffet__vk_device_queue_create_info *queue_infos;
    uint32_t layer_count; const char *const *layers;
    uint32_t extension_count; const char *const *extensions;
    const void *features;
} buffet__vk_device_create_info;
typedef struct buffet__vk_extension_properties {
    char name[256]; uint32_t spec_version;
} buffet__vk_extension_properties;
typedef struct buffet__vk_layer_properties {
    char name[256]; uint32_t spec_version; uint32_t impl_version; char description[256];
} buffet__vk_layer_properties;
typedef struct buffet__vk_queue_family_properties {
    uint32_t flags, count, timestamp_bits, granularity[3];
} buffet__vk_queue_family_properties;
/* VkPhysicalDeviceLimits, field for field: the ones used are named, runs of others are arrays. */
typedef struct buffet__vk_limits {
    uint32_t u0[9];                         /* maxImageDimension1D .. maxPushConstantsSize */
    uint32_t max_memory_allocation_count;
    uint32_t max_sampler_allocation_count;
    uint64_t buffer_image_granularity, sparse_address_space_size;
    uint32_t u1[51];                        /* maxBoundDescriptorSets .. maxDrawIndirectCount */
    float max_sampler_lod_bias, max_sampler_anisotropy;
    uint32_t max_viewports, max_viewport_dimensions[2];
    float viewport_bounds_range[2];
    uint32_t viewport_sub_pixel_bits;
    size_t min_memory_map_alignment;
    uint64_t min_texel_buffer_offset_alignment, min_uniform_buffer_offset_alignment;
    uint64_t min_storage_buffer_offset_alignment;
    uint32_t u3[36];                        /* minTexelOffset .. standardSampleLocations */
    uint64_t optimal_buffer_copy_offset_alignment, optimal_buffer_copy_row_pitch_alignment;
    uint64_t non_coherent_atom_size;
} buffet__vk_limits;
typedef struct buffet__vk_physical_device_properties {
    uint32_t api_version, driver_version, vendor_id, device_id, device_type;
    char device_name[256];
    uint8_t pipeline_cache_uuid[16];
    buffet__vk_limits limits;
    uint32_t sparse[5];
} buffet__vk_physical_device_properties;
typedef struct buffet__vk_physical_device_properties2 {
    int32_t s_type; void *next; buffet__vk_physical_device_properties properties;
} buffet__vk_physical_device_properties2;
typedef struct buffet__vk_maintenance3_properties {
    int32_t s_type; void *next; uint32_t max_per_set_descriptors; uint64_t max_memory_allocation_size;
} buffet__vk_maintenance3_properties;
typedef struct buffet__vk_memory_type { uint32_t flags, heap; } buffet__vk_memory_type;
typedef struct buffet__vk_memory_heap { uint64_t size; uint32_t flags; } buffet__vk_memory_heap;
typedef struct buffet__vk_memory_properties {
    uint32_t type_count; buffet__vk_memory_type types[32];
    uint32_t heap_count; buffet__vk_memory_heap heaps[16];
} buffet__vk_memory_properties;
typedef struct buffet__vk_memory_properties2 {
    int32_t s_type; void *next; buffet__vk_memory_properties props;
} buffet__vk_memory_properties2;
typedef struct buffet__vk_memory_budget_properties {
    int32_t s_type; void *next; uint64_t budget[16]; uint64_t usage[16];
} buffet__vk_memory_budget_properties;
typedef struct buffet__vk_memory_allocate_info {
    int32_t s_type; const void *next; uint64_t size; uint32_t type;
} buffet__vk_memory_allocate_info;
typedef struct buffet__vk_mapped_memory_range {
    int32_t s_type; const void *next; uint64_t memory, offset, size;
} buffet__vk_mapped_memory_range;
typedef struct buffet__vk_buffer_create_info {
    int32_t s_type; const void *next; uint32_t flags; uint64_t size; uint32_t usage;
    uint32_t sharing_mode; uint32_t family_count; const uint32_t *families;
} buffet__vk_buffer_create_info;
typedef struct buffet__vk_memory_requirements {
    uint64_t size, alignment; uint32_t type_bits;
} buffet__vk_memory_requirements;
typedef struct buffet__vk_command_pool_create_info {
    int32_t s_type; const void *next; uint32_t flags; uint32_t family;
} buffet__vk_command_pool_create_info;
typedef struct buffet__vk_command_buffer_allocate_info {
    int32_t s_type; const void *next; uint64_t pool; uint32_t level; uint32_t count;
} buffet__vk_command_buffer_allocate_info;
typedef struct buffet__vk_command_buffer_begin_info {
    int32_t s_type; const void *next; uint32_t flags; const void *inheritance;
} buffet__vk_command_buffer_begin_info;
typedef struct buffet__vk_fence_create_info {
    int32_t s_type; const void *next; uint32_t flags;
} buffet__vk_fence_create_info;
typedef struct buffet__vk_submit_info {
    int32_t s_type; const void *next;
    uint32_t wait_count; const uint64_t *wait_semaphores; const uint32_t *wait_stages;
    uint32_t cmd_count; void *const *cmds;
    uint32_t signal_count; const uint64_t *signal_semaphores;
} buffet__vk_submit_info;
typedef struct buffet__vk_buffer_copy { uint64_t src_offset, dst_offset, size; } buffet__vk_buffer_copy;
typedef struct buffet__vk_memory_barrier {
    int32_t s_type; const void *next; uint32_t src_access, dst_access;
} buffet__vk_memory_barrier;
/* VK_EXT_external_memory_host: host memory imported as device memory (pin). */
typedef struct buffet__vk_external_memory_buffer_create_info {
    int32_t s_type; const void *next; uint32_t handle_types;
} buffet__vk_external_memory_buffer_create_info;
typedef struct buffet__vk_import_host_pointer_info {
    int32_t s_type; const void *next; uint32_t handle_type; void *host;
} buffet__vk_import_host_pointer_info;
typedef struct buffet__vk_host_pointer_properties {
    int32_t s_type; void *next; uint32_t type_bits;
} buffet__vk_host_pointer_properties;
typedef struct buffet__vk_external_memory_host_properties {
    int32_t s_type; void *next; uint64_t min_imported_host_pointer_alignment;
} buffet__vk_external_memory_host_properties;
typedef struct buffet__vk_debug_callback_data {
    int32_t s_type; const void *next; uint32_t flags;
    const char *message_id_name; int32_t message_id; const char *message;
    /* queue labels, command buffer labels, objects follow: unused */
} buffet__vk_debug_callback_data;
typedef uint32_t (*buffet__vk_debug_callback)(uint32_t severity, uint32_t types,
                                              const buffet__vk_debug_callback_data *data, void *user);
typedef struct buffet__vk_debug_messenger_create_info {
    int32_t s_type; const void *next; uint32_t flags; uint32_t severities; uint32_t types;
    buffet__vk_debug_callback callback; void *user;
} buffet__vk_debug_messenger_create_info;

/* The entry points, each a typed pointer named as in Vulkan without its vk prefix. */
#define BUFFET__VK_INSTANCE_FNS(X)                                                                         \
    X(DestroyInstance, void, (void *, const void *))                                                     \
    X(EnumeratePhysicalDevices, buffet__vk_result, (void *, uint32_t *, void **))                        \
    X(GetPhysicalDeviceProperties, void, (void *, buffet__vk_physical_device_properties *))              \
    X(GetPhysicalDeviceProperties2, void, (void *, buffet__vk_physical_device_properties2 *))            \
    X(GetPhysicalDeviceMemoryProperties, void, (void *, buffet__vk_memory_properties *))                 \
    X(GetPhysicalDeviceMemoryProperties2, void, (void *, buffet__vk_memory_properties2 *))               \
    X(GetPhysicalDeviceQueueFamilyProperties, void,                                                          \
      (void *, uint32_t *, buffet__vk_queue_family_properties *))                                            \
    X(EnumerateDeviceExtensionProperties, buffet__vk_result,                                             \
      (void *, const char *, uint32_t *, buffet__vk_extension_properties *))                             \
    X(CreateDevice, buffet__vk_result,                                                                       \
      (void *, const buffet__vk_device_create_info *, const void *, void **))                                \
    X(GetDeviceProcAddr, buffet__vk_void_fn, (void *, const char *))
#define BUFFET__VK_DEVICE_FNS(X)                                                                           \
    X(DestroyDevice, void, (void *, const void *))                                                       \
    X(GetDeviceQueue, void, (void *, uint32_t, uint32_t, void **))                                       \
    X(DeviceWaitIdle, buffet__vk_result, (void *))                                                       \
    X(QueueWaitIdle, buffet__vk_result, (void *))                                                        \
    X(QueueSubmit, buffet__vk_result, (void *, uint32_t, const buffet__vk_submit_info *, uint64_t))      \
    X(AllocateMemory, buffet__vk_result,                                                                     \
      (void *, const buffet__vk_memory_allocate_info *, const void *, uint64_t *))                           \
    X(FreeMemory, void, (void *, uint64_t, const void *))                                                \
    X(MapMemory, buffet__vk_result, (void *, uint64_t, uint64_t, uint64_t, uint32_t, void **))           \
    X(UnmapMemory, void, (void *, uint64_t))                                                             \
    X(FlushMappedMemoryRanges, buffet__vk_result,                                                            \
      (void *, uint32_t, const buffet__vk_mapped_memory_range *))                                            \
    X(InvalidateMappedMemoryRanges, buffet__vk_result,                                                       \
      (void *, uint32_t, const buffet__vk_mapped_memory_range *))                                            \
    X(CreateBuffer, buffet__vk_result,                                                                       \
      (void *, const buffet__vk_buffer_create_info *, const void *, uint64_t *))                             \
    X(DestroyBuffer, void, (void *, uint64_t, const void *))                                             \
    X(GetBufferMemoryRequirements, void, (void *, uint64_t, buffet__vk_memory_requirements *))           \
    X(BindBufferMemory, buffet__vk_result, (void *, uint64_t, uint64_t, uint64_t))                       \
    X(CreateCommandPool, buffet__vk_result,                                                                  \
      (void *, const buffet__vk_command_pool_create_info *, const void *, uint64_t *))                       \
    X(DestroyCommandPool, void, (void *, uint64_t, const void *))                                        \
    X(AllocateCommandBuffers, buffet__vk_result,                                                             \
      (void *, const buffet__vk_command_buffer_allocate_info *, void **))                                    \
    X(FreeCommandBuffers, void, (void *, uint64_t, uint32_t, void *const *))                              \
    X(BeginCommandBuffer, buffet__vk_result, (void *, const buffet__vk_command_buffer_begin_info *))     \
    X(EndCommandBuffer, buffet__vk_result, (void *))                                                     \
    X(CmdCopyBuffer, void, (void *, uint64_t, uint64_t, uint32_t, const buffet__vk_buffer_copy *))       \
    X(CmdPipelineBarrier, void,                                                                              \
      (void *, uint32_t, uint32_t, uint32_t, uint32_t, const buffet__vk_memory_barrier *,                    \
       uint32_t, const void *, uint32_t, const void *))                                                      \
    X(CreateFence, buffet__vk_result,                                                                        \
      (void *, const buffet__vk_fence_create_info *, const void *, uint64_t *))                              \
    X(DestroyFence, void, (void *, uint64_t, const void *))                                              \
    X(ResetFences, buffet__vk_result, (void *, uint32_t, const uint64_t *))                              \
    X(GetFenceStatus, buffet__vk_result, (void *, uint64_t))                                             \
    X(WaitForFences, buffet__vk_result, (void *, uint32_t, const uint64_t *, uint32_t, uint64_t))
#define BUFFET__VK_FIELD(name, ret, args) ret (*name) args;
/* BUFFET__LOG on a backend's logger, level and code without their prefixes. */
#define BUFFET__VK_LOG(be, level, code, ...) \
    BUFFET__LOG(&(be)->log, BUFFET_LOG_##level, BUFFET_ERR_##code, __VA_ARGS__)

/* One batch of copies: recorded into cmd, submitted with fence as a ticket. */
typedef struct buffet__vk_batch {
    void *cmd;
    uint64_t fence;
    uint64_t ticket;
    uint32_t state;             /* BUFFET__VK_FREE, _RECORDING, _IN_FLIGHT */
    uint32_t waiters;           /* threads in vkWaitForFences on fence: it may not be reset */
} buffet__vk_batch;
enum { BUFFET__VK_FREE = 0, BUFFET__VK_RECORDING = 1, BUFFET__VK_IN_FLIGHT = 2 };

typedef struct buffet__vk {
    buffet_logger log;
    void *lib;                  /* dlopen handle; NULL in user mode */
    int own;                    /* instance and device are ours */
    buffet__vk_gipa_fn gipa;
    void *instance, *physical, *device, *queue;
    uint32_t family, queue_index;
    uint64_t messenger;
    void (*destroy_messenger)(void *, uint64_t, const void *);
    uint64_t validation_count;  /* atomic: the callback runs on any thread */
    int has_budget, has_props2;
    int has_host_import;        /* VK_EXT_external_memory_host enabled (own mode only): pin works */
    uint64_t host_align;        /* minImportedHostPointerAlignment */
    buffet__vk_result (*get_host_pointer_props)(void *, uint32_t, const void *,
                                                buffet__vk_host_pointer_properties *);
    uint32_t buffer_type_bits;  /* memory types a buffer with every usage may live in */
    buffet__vk_memory_properties mem;
    struct { BUFFET__VK_INSTANCE_FNS(BUFFET__VK_FIELD) } fi;
    struct { BUFFET__VK_DEVICE_FNS(BUFFET__VK_FIELD) } fd;
    pthread_mutex_t mu;         /* guards everything below, the command pool and the queue */
    uint64_t pool;
    buffet__vk_batch *batches;
    uint32_t batch_count, batch_cap;
    int recording;              /* index of the batch being recorded, -1 when none */
    uint64_t last_submitted;
    uint64_t done;              /* highest ticket known complete (atomic: wait reads it unlocked) */
    int lost;
} buffet__vk;

/* A symbol's address as a function pointer: memcpy, because ISO C has no cast from void *. */
static buffet__vk_void_fn buffet__vk_sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    buffet__vk_void_fn f;
    memcpy(&f, &p, sizeof f);
    return f;
}

/* Maps a VkResult to buffet's code: the out-of-memory ones to NOMEM, a lost device to DEVICE_LOST,
   anything else unexpected to SYSTEM. */
static buffet_result buffet__vk_code(buffet__vk_result r) {
    if (r == BUFFET__VK_SUCCESS) return BUFFET_OK;
    if (r == BUFFET__VK_ERROR_OUT_OF_HOST_MEMORY || r == BUFFET__VK_ERROR_OUT_OF_DEVICE_MEMORY ||
        r == BUFFET__VK_ERROR_TOO_MANY_OBJECTS) return BUFFET_ERR_NOMEM;
    if (r == BUFFET__VK_ERROR_DEVICE_LOST) return BUFFET_ERR_DEVICE_LOST;
    return BUFFET_ERR_SYSTEM;
}

/* Logs a failed call with the driver's VkResult and returns buffet's code for it. */
static buffet_result buffet__vk_fail(const buffet_logger *log, const char *what, buffet__vk_result r) {
    buffet_result code = buffet__vk_code(r);
    BUFFET__LOG(log, BUFFET_LOG_ERROR, code, "vulkan: %s failed: VkResult %d", what, (int)r);
    return code;
}

/* The validation layer's messenger: each warning or error is logged and counted. It may run on any
   thread, during any call, so the count is atomic and the logger must be thread-safe (as documented
   for buffet_gpu_device_desc.log). Returns VK_FALSE: the call that triggered it goes on. */
static uint32_t buffet__vk_on_message(uint32_t severity, uint32_t types,
                                      const buffet__vk_debug_callback_data *data, void *user) {
    buffet__vk *be = (buffet__vk *)user;
    int error = (severity & BUFFET__VK_SEVERITY_ERROR) != 0;
    const char *id = data && data->message_id_name ? data->message_id_name : "-";
    (void)types;
    if (!(severity & (BUFFET__VK_SEVERITY_ERROR | BUFFET__VK_SEVERITY_WARNING))) return 0;
    BUFFET__FETCH_ADD(&be->validation_count, 1u, BUFFET__RELAXED);
    BUFFET__LOG(&be->log, error ? BUFFET_LOG_ERROR : BUFFET_LOG_WARN, BUFFET_ERR_INVALID,
                "vulkan validation %s: %s: %s", error ? "error" : "warning", id,
                data && data->message ? data->message : "");
    return 0;
}

/* Does one of the count extension properties name ext? */
static int buffet__vk_has_ext(const buffet__vk_extension_properties *props, uint32_t count, const char *ext) {
    uint32_t i;
    for (i = 0; i < count; i++)
        if (strcmp(props[i].name, ext) == 0) return 1;
    return 0;
}

static void buffet__vk_close(void *p);

/* Own mode: the instance (with the validation layer and its messenger when asked and present), the
   physical device desc->device_index, a device with one queue of the first family that can
   transfer, and VK_EXT_memory_budget and VK_EXT_external_memory_host (pin) when the device has
   them. Vulkan 1.1 at least (1.3 asked for when the loader has it). */
static buffet_result buffet__vk_open_own(buffet__vk *be, const buffet_gpu_device_desc *desc) {
    const char *libname = desc->library ? desc->library : "libvulkan.so.1";
    buffet__vk_result (*create_instance)(const buffet__vk_instance_create_info *, const void *, void **);
    buffet__vk_result (*enum_version)(uint32_t *);
    buffet__vk_result (*enum_layers)(uint32_t *, buffet__vk_layer_properties *);
    buffet__vk_result (*enum_inst_ext)(const char *, uint32_t *, buffet__vk_extension_properties *);
    buffet__vk_application_info app;
    buffet__vk_instance_create_info ici;
    buffet__vk_debug_messenger_create_info mci;
    buffet__vk_device_queue_create_info qci;
    buffet__vk_device_create_info dci;
    buffet__vk_extension_properties *exts = NULL;
    buffet__vk_queue_family_properties *fams = NULL;
    void **physicals = NULL;
    const char *layers[1], *inst_exts[1], *dev_exts[2];
    uint32_t version = BUFFET__VK_API_1_1 - (1u << 12), n = 0, i, ext_count = 0;
    int validation = 0;
    float priority = 1.0f;
    buffet__vk_result r;
    buffet_result code = BUFFET_ERR_NO_DEVICE;

    be->lib = dlopen(libname, RTLD_NOW | RTLD_LOCAL);
    if (!be->lib) {
        const char *why = dlerror();
        BUFFET__VK_LOG(be, INFO, NO_DEVICE, "vulkan: cannot load %s: %s", libname,
                       why ? why : "?");
        return BUFFET_ERR_NO_DEVICE;
    }
    be->gipa = (buffet__vk_gipa_fn)buffet__vk_sym(be->lib, "vkGetInstanceProcAddr");
    if (!be->gipa) {
        BUFFET__VK_LOG(be, INFO, NO_DEVICE, "vulkan: %s has no vkGetInstanceProcAddr", libname);
        return BUFFET_ERR_NO_DEVICE;
    }
    create_instance = (buffet__vk_result (*)(const buffet__vk_instance_create_info *, const void *, void **))
        be->gipa(NULL, "vkCreateInstance");
    enum_version = (buffet__vk_result (*)(uint32_t *))be->gipa(NULL, "vkEnumerateInstanceVersion");
    enum_layers = (buffet__vk_result (*)(uint32_t *, buffet__vk_layer_properties *))
        be->gipa(NULL, "vkEnumerateInstanceLayerProperties");
    enum_inst_ext = (buffet__vk_result (*)(const char *, uint32_t *, buffet__vk_extension_properties *))
        be->gipa(NULL, "vkEnumerateInstanceExtensionProperties");
    if (enum_version) enum_version(&version);
    if (!create_instance || version < BUFFET__VK_API_1_1) {
        BUFFET__LOG(&be->log, BUFFET_LOG_INFO, BUFFET_ERR_NO_DEVICE,
                    "vulkan: the loader offers Vulkan %u.%u; buffet needs 1.1", version >> 22,
                    (version >> 12) & 0x3FFu);
        return BUFFET_ERR_NO_DEVICE;
    }

    if (desc->validation) {
        buffet__vk_layer_properties *lp = NULL;
        int has_layer = 0, has_utils = 0;
        if (enum_layers && enum_layers(&n, NULL) == BUFFET__VK_SUCCESS && n &&
            (lp = (buffet__vk_layer_properties *)calloc(n, sizeof *lp)) != NULL &&
            enum_layers(&n, lp) >= 0)
            for (i = 0; i < n; i++) has_layer |= strcmp(lp[i].name, "VK_LAYER_KHRONOS_validation") == 0;
        free(lp);
        n = 0;
        if (enum_inst_ext && enum_inst_ext(NULL, &n, NULL) == BUFFET__VK_SUCCESS && n &&
            (exts = (buffet__vk_extension_properties *)calloc(n, sizeof *exts)) != NULL &&
            enum_inst_ext(NULL, &n, exts) >= 0)
            has_utils = buffet__vk_has_ext(exts, n, "VK_EXT_debug_utils");
        free(exts);
        exts = NULL;
        validation = has_layer && has_utils;
        if (!validation)
            BUFFET__LOG(&be->log, BUFFET_LOG_WARN, BUFFET_ERR_UNSUPPORTED,
                        "vulkan: validation asked for, but %s is missing: running without",
                        has_layer ? "VK_EXT_debug_utils" : "VK_LAYER_KHRONOS_validation");
    }

    memset(&app, 0, sizeof app);
    app.s_type = BUFFET__VK_ST_APPLICATION_INFO;
    app.app_name = desc->name ? desc->name : "buffet";
    app.engine_name = "buffet_gpu";
    app.api_version = version < BUFFET__VK_API_1_3 ? (version & ~0xFFFu) : BUFFET__VK_API_1_3;
    memset(&mci, 0, sizeof mci);
    mci.s_type = BUFFET__VK_ST_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    mci.severities = BUFFET__VK_SEVERITY_WARNING | BUFFET__VK_SEVERITY_ERROR;
    mci.types = BUFFET__VK_MSG_GENERAL | BUFFET__VK_MSG_VALIDATION | BUFFET__VK_MSG_PERFORMANCE;
    mci.callback = buffet__vk_on_message;
    mci.user = be;
    memset(&ici, 0, sizeof ici);
    ici.s_type = BUFFET__VK_ST_INSTANCE_CREATE_INFO;
    ici.app = &app;
    if (validation) {
        layers[0] = "VK_LAYER_KHRONOS_validation";
        inst_exts[0] = "VK_EXT_debug_utils";
        ici.layer_count = 1, ici.layers = layers;
        ici.extension_count = 1, ici.extensions = inst_exts;
        ici.next = &mci;        /* also hears vkCreateInstance and vkDestroyInstance */
    }
    r = create_instance(&ici, NULL, &be->instance);
    if (r != BUFFET__VK_SUCCESS) {
        be->instance = NULL;
        BUFFET__VK_LOG(be, INFO, NO_DEVICE, "vulkan: vkCreateInstance failed: VkResult %d", (int)r);
        return BUFFET_ERR_NO_DEVICE;
    }
#define BUFFET__VK_LOAD_I(name, ret, args) be->fi.name = (ret (*) args)be->gipa(be->instance, "vk" #name);
    BUFFET__VK_INSTANCE_FNS(BUFFET__VK_LOAD_I)
#undef BUFFET__VK_LOAD_I
    if (validation) {
        typedef buffet__vk_result (*create_fn)(void *, const buffet__vk_debug_messenger_create_info *,
                                               const void *, uint64_t *);
        create_fn create_messenger = (create_fn)be->gipa(be->instance, "vkCreateDebugUtilsMessengerEXT");
        be->destroy_messenger = (void (*)(void *, uint64_t, const void *))
            be->gipa(be->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (!create_messenger || !be->destroy_messenger ||
            (r = create_messenger(be->instance, &mci, NULL, &be->messenger)) != BUFFET__VK_SUCCESS) {
            be->messenger = 0;
            BUFFET__LOG(&be->log, BUFFET_LOG_WARN, BUFFET_ERR_UNSUPPORTED,
                        "vulkan: vkCreateDebugUtilsMessengerEXT failed: messages go unheard");
        }
    }
    if (!be->fi.EnumeratePhysicalDevices || !be->fi.CreateDevice || !be->fi.GetDeviceProcAddr) {
        BUFFET__VK_LOG(be, INFO, NO_DEVICE, "vulkan: the loader lacks core entry points");
        return BUFFET_ERR_NO_DEVICE;
    }

    n = 0;
    r = be->fi.EnumeratePhysicalDevices(be->instance, &n, NULL);
    if (r == BUFFET__VK_SUCCESS && desc->device_index < n &&
        (physicals = (void **)calloc(n, sizeof *physicals)) != NULL &&
        (r = be->fi.EnumeratePhysicalDevices(be->instance, &n, physicals)) >= 0 && desc->device_index < n)
        be->physical = physicals[desc->device_index];
    free(physicals);
    if (!be->physical) {
        BUFFET__VK_LOG(be, INFO, NO_DEVICE, "vulkan: no device %u (%u found, VkResult %d)",
                       desc->device_index, n, (int)r);
        return BUFFET_ERR_NO_DEVICE;
    }

    n = 0;
    be->fi.GetPhysicalDeviceQueueFamilyProperties(be->physical, &n, NULL);
    if (n && (fams = (buffet__vk_queue_family_properties *)calloc(n, sizeof *fams)) != NULL) {
        be->fi.GetPhysicalDeviceQueueFamilyProperties(be->physical, &n, fams);
        for (i = 0; i < n; i++)
            if (fams[i].count &&
                (fams[i].flags &
                 (BUFFET__VK_QUEUE_GRAPHICS | BUFFET__VK_QUEUE_COMPUTE | BUFFET__VK_QUEUE_TRANSFER)))
                break;
    }
    if (!fams) i = n;
    free(fams);
    if (i == n) {
        BUFFET__VK_LOG(be, INFO, NO_DEVICE, "vulkan: device %u has no queue that can transfer",
                       desc->device_index);
        return BUFFET_ERR_NO_DEVICE;
    }
    be->family = i, be->queue_index = 0;

    memset(&qci, 0, sizeof qci);
    qci.s_type = BUFFET__VK_ST_DEVICE_QUEUE_CREATE_INFO;
    qci.family = be->family, qci.count = 1, qci.priorities = &priority;
    memset(&dci, 0, sizeof dci);
    dci.s_type = BUFFET__VK_ST_DEVICE_CREATE_INFO;
    dci.queue_info_count = 1, dci.queue_infos = &qci;
    r = be->fi.EnumerateDeviceExtensionProperties(be->physical, NULL, &ext_count, NULL);
    if (r == BUFFET__VK_SUCCESS && ext_count &&
        (exts = (buffet__vk_extension_properties *)calloc(ext_count, sizeof *exts)) != NULL &&
        be->fi.EnumerateDeviceExtensionProperties(be->physical, NULL, &ext_count, exts) >= 0) {
        if (buffet__vk_has_ext(exts, ext_count, "VK_EXT_memory_budget"))
            dev_exts[dci.extension_count++] = "VK_EXT_memory_budget", be->has_budget = 1;
        if (buffet__vk_has_ext(exts, ext_count, "VK_EXT_external_memory_host"))
            dev_exts[dci.extension_count++] = "VK_EXT_external_memory_host", be->has_host_import = 1;
        dci.extensions = dev_exts;
    }
    free(exts);
    r = be->fi.CreateDevice(be->physical, &dci, NULL, &be->device);
    if (r != BUFFET__VK_SUCCESS) {
        be->device = NULL;
        be->has_budget = be->has_host_import = 0;
        code = buffet__vk_code(r) == BUFFET_ERR_NOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_NO_DEVICE;
        BUFFET__LOG(&be->log, BUFFET_LOG_ERROR, code, "vulkan: vkCreateDevice failed: VkResult %d", (int)r);
        return code;
    }
    return BUFFET_OK;
}

/* Both modes, once instance, physical device, device and family are known: the device entry points,
   the queue, the memory types a buffer with every usage can live in (a probe buffer), caps, the
   command pool. */
static buffet_result buffet__vk_open_common(buffet__vk *be, buffet__gpu_caps *caps) {
    buffet__vk_physical_device_properties2 p2;
    buffet__vk_maintenance3_properties m3;
    buffet__vk_external_memory_host_properties hp;
    buffet__vk_memory_properties2 mp2;
    buffet__vk_buffer_create_info bci;
    buffet__vk_memory_requirements req;
    buffet__vk_command_pool_create_info pci;
    buffet__vk_gdpa_fn gdpa = (buffet__vk_gdpa_fn)be->fi.GetDeviceProcAddr;
    uint64_t probe = 0, align;
    uint32_t i, max_heap = 0;
    buffet__vk_result r;

#define BUFFET__VK_LOAD_D(name, ret, args)                                                              \
    if ((be->fd.name = (ret (*) args)gdpa(be->device, "vk" #name)) == NULL) {                           \
        BUFFET__VK_LOG(be, ERROR, NO_DEVICE, "vulkan: no entry point vk%s", #name);                     \
        return BUFFET_ERR_NO_DEVICE;                                                                    \
    }
    BUFFET__VK_DEVICE_FNS(BUFFET__VK_LOAD_D)
#undef BUFFET__VK_LOAD_D
    be->fd.GetDeviceQueue(be->device, be->family, be->queue_index, &be->queue);

    memset(&p2, 0, sizeof p2);
    memset(&m3, 0, sizeof m3);
    p2.s_type = BUFFET__VK_ST_PHYSICAL_DEVICE_PROPERTIES_2;
    m3.s_type = BUFFET__VK_ST_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
    be->fi.GetPhysicalDeviceProperties(be->physical, &p2.properties);
    be->has_props2 = p2.properties.api_version >= BUFFET__VK_API_1_1 && be->fi.GetPhysicalDeviceProperties2 &&
                     be->fi.GetPhysicalDeviceMemoryProperties2;
    memset(&hp, 0, sizeof hp);
    hp.s_type = BUFFET__VK_ST_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT;
    if (be->has_props2) {
        p2.next = &m3;
        if (be->has_host_import) m3.next = &hp;
        be->fi.GetPhysicalDeviceProperties2(be->physical, &p2);
    }
    be->has_budget &= be->has_props2;
    if (be->has_host_import) {
        be->get_host_pointer_props = (buffet__vk_result (*)(void *, uint32_t, const void *,
                                                             buffet__vk_host_pointer_properties *))
            gdpa(be->device, "vkGetMemoryHostPointerPropertiesEXT");
        be->host_align = hp.min_imported_host_pointer_alignment;
        be->has_host_import = be->has_props2 && be->get_host_pointer_props && be->host_align &&
                              !(be->host_align & (be->host_align - 1));
    }
    memset(&mp2, 0, sizeof mp2);
    be->fi.GetPhysicalDeviceMemoryProperties(be->physical, &mp2.props);
    be->mem = mp2.props;
    if (be->mem.type_count > BUFFET_GPU_MAX_TYPES) be->mem.type_count = BUFFET_GPU_MAX_TYPES;
    if (be->mem.heap_count > BUFFET_GPU_MAX_HEAPS) be->mem.heap_count = BUFFET_GPU_MAX_HEAPS;

    memset(&bci, 0, sizeof bci);
    bci.s_type = BUFFET__VK_ST_BUFFER_CREATE_INFO;
    bci.size = 65536;
    bci.usage = BUFFET__VK_BUFFER_USAGE_ALL;
    r = be->fd.CreateBuffer(be->device, &bci, NULL, &probe);
    if (r != BUFFET__VK_SUCCESS) return buffet__vk_fail(&be->log, "vkCreateBuffer (the probe)", r);
    be->fd.GetBufferMemoryRequirements(be->device, probe, &req);
    be->fd.DestroyBuffer(be->device, probe, NULL);
    be->buffer_type_bits = req.type_bits;

    memset(caps, 0, sizeof *caps);
    snprintf(caps->name, sizeof caps->name, "%.127s", p2.properties.device_name);
    caps->type_count = be->mem.type_count;
    caps->heap_count = be->mem.heap_count;
    for (i = 0; i < be->mem.heap_count; i++) {
        caps->heap_size[i] = be->mem.heaps[i].size;
        caps->heap_device_local[i] = (be->mem.heaps[i].flags & BUFFET__VK_HEAP_DEVICE_LOCAL) != 0;
        if (be->mem.heaps[i].size > be->mem.heaps[max_heap].size) max_heap = i;
    }
    for (i = 0; i < be->mem.type_count; i++) {
        uint32_t f = be->mem.types[i].flags, props = 0;
        caps->type_heap[i] = be->mem.types[i].heap;
        /* Protected, lazily allocated and AMD device-coherent memory need what buffet never asks for. */
        if (!(req.type_bits >> i & 1) ||
            (f & (BUFFET__VK_MEM_LAZILY_ALLOCATED | BUFFET__VK_MEM_PROTECTED |
                  BUFFET__VK_MEM_DEVICE_COHERENT_AMD | BUFFET__VK_MEM_DEVICE_UNCACHED_AMD))) {
            be->buffer_type_bits &= ~(1u << i);
            continue;
        }
        if (f & BUFFET__VK_MEM_DEVICE_LOCAL) props |= BUFFET_GPU_MEM_DEVICE_LOCAL;
        if (f & BUFFET__VK_MEM_HOST_VISIBLE) props |= BUFFET_GPU_MEM_HOST_VISIBLE;
        if (f & BUFFET__VK_MEM_HOST_COHERENT) props |= BUFFET_GPU_MEM_HOST_COHERENT;
        if (f & BUFFET__VK_MEM_HOST_CACHED) props |= BUFFET_GPU_MEM_HOST_CACHED;
        caps->type_props[i] = props;
    }
    align = req.alignment ? req.alignment : 1;
    if (p2.properties.limits.min_storage_buffer_offset_alignment > align)
        align = p2.properties.limits.min_storage_buffer_offset_alignment;
    if (p2.properties.limits.min_uniform_buffer_offset_alignment > align)
        align = p2.properties.limits.min_uniform_buffer_offset_alignment;
    if (p2.properties.limits.min_texel_buffer_offset_alignment > align)
        align = p2.properties.limits.min_texel_buffer_offset_alignment;
    if (align & (align - 1)) align = (uint64_t)1 << (buffet__gpu_msb64(align) + 1);  /* the spec says it is */
    caps->align = align;
    caps->atom = p2.properties.limits.non_coherent_atom_size;
    if (caps->atom == 0) caps->atom = 1;
    caps->max_alloc = be->has_props2 && m3.max_memory_allocation_size ? m3.max_memory_allocation_size
                                                                        : be->mem.heaps[max_heap].size;
    caps->max_allocations = p2.properties.limits.max_memory_allocation_count;
    caps->can_pin = (uint32_t)be->has_host_import;

    memset(&pci, 0, sizeof pci);
    pci.s_type = BUFFET__VK_ST_COMMAND_POOL_CREATE_INFO;
    pci.flags = BUFFET__VK_POOL_RESET_COMMAND_BUFFER;
    pci.family = be->family;
    r = be->fd.CreateCommandPool(be->device, &pci, NULL, &be->pool);
    if (r != BUFFET__VK_SUCCESS) {
        be->pool = 0;
        return buffet__vk_fail(&be->log, "vkCreateCommandPool", r);
    }
    return BUFFET_OK;
}

/* Opens own mode, or user mode when desc->vulkan.get_instance_proc_addr is set (desc->library and
   desc->validation are then unused: the instance is the caller's; pin stays off, since buffet cannot
   tell whether the caller enabled VK_EXT_external_memory_host). On any failure everything made so
   far is destroyed (close handles a partial state). */
static buffet_result buffet__vk_open(void **out, const buffet_gpu_device_desc *desc, buffet__gpu_caps *caps,
                                     buffet_logger log) {
    buffet__vk *be;
    buffet_result code;
    *out = NULL;
    be = (buffet__vk *)calloc(1, sizeof *be);
    if (!be) {
        BUFFET__LOG(&log, BUFFET_LOG_ERROR, BUFFET_ERR_NOMEM, "vulkan: no memory for the backend's state");
        return BUFFET_ERR_NOMEM;
    }
    be->log = log;
    be->recording = -1;
    pthread_mutex_init(&be->mu, NULL);
    if (desc->vulkan.get_instance_proc_addr) {
        const buffet_gpu_vulkan_desc *u = &desc->vulkan;
        memcpy(&be->gipa, &u->get_instance_proc_addr, sizeof be->gipa);
        be->instance = u->instance, be->physical = u->physical_device, be->device = u->device;
        be->family = u->queue_family, be->queue_index = u->queue_index;
        code = BUFFET_OK;
        if (!be->instance || !be->physical || !be->device) {
            BUFFET__LOG(&log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                        "vulkan: desc.vulkan lacks instance, physical device or device");
            code = BUFFET_ERR_INVALID;
        }
        if (code == BUFFET_OK) {
#define BUFFET__VK_LOAD_I(name, ret, args) be->fi.name = (ret (*) args)be->gipa(be->instance, "vk" #name);
            BUFFET__VK_INSTANCE_FNS(BUFFET__VK_LOAD_I)
#undef BUFFET__VK_LOAD_I
            if (!be->fi.GetDeviceProcAddr || !be->fi.GetPhysicalDeviceProperties ||
                !be->fi.GetPhysicalDeviceMemoryProperties || !be->fi.EnumerateDeviceExtensionProperties) {
                BUFFET__LOG(&log, BUFFET_LOG_ERROR, BUFFET_ERR_NO_DEVICE,
                            "vulkan: the caller's instance lacks entry points");
                code = BUFFET_ERR_NO_DEVICE;
            }
        }
        if (code == BUFFET_OK) {
            /* The budget is a physical-device query: it needs the extension supported, not enabled. */
            uint32_t n = 0;
            buffet__vk_extension_properties *exts = NULL;
            buffet__vk_result r = be->fi.EnumerateDeviceExtensionProperties(be->physical, NULL, &n, NULL);
            if (r == BUFFET__VK_SUCCESS && n &&
                (exts = (buffet__vk_extension_properties *)calloc(n, sizeof *exts)) != NULL &&
                be->fi.EnumerateDeviceExtensionProperties(be->physical, NULL, &n, exts) >= 0)
                be->has_budget = buffet__vk_has_ext(exts, n, "VK_EXT_memory_budget");
            free(exts);
        }
    } else {
        be->own = 1;
        code = buffet__vk_open_own(be, desc);
    }
    if (code == BUFFET_OK) code = buffet__vk_open_common(be, caps);
    if (code != BUFFET_OK) {
        buffet__vk_close(be);
        return code;
    }
    *out = be;
    return BUFFET_OK;
}

/* Waits for the queue (own mode: the device) to be idle, then destroys what this backend made:
   fences, the command pool (with its command buffers), and in own mode the device, the messenger,
   the instance and the library handle. Also undoes a partial open. */
static void buffet__vk_close(void *p) {
    buffet__vk *be = (buffet__vk *)p;
    uint32_t i;
    if (!be) return;
    if (be->device && be->fd.DeviceWaitIdle) {
        buffet__vk_result r = be->own ? be->fd.DeviceWaitIdle(be->device)
                                      : be->queue ? be->fd.QueueWaitIdle(be->queue) : BUFFET__VK_SUCCESS;
        if (r != BUFFET__VK_SUCCESS) buffet__vk_fail(&be->log, "waiting for idle at close", r);
    }
    for (i = 0; i < be->batch_count; i++)
        if (be->batches[i].fence) be->fd.DestroyFence(be->device, be->batches[i].fence, NULL);
    free(be->batches);
    if (be->pool) be->fd.DestroyCommandPool(be->device, be->pool, NULL);
    if (be->own) {
        if (be->device && be->fd.DestroyDevice) be->fd.DestroyDevice(be->device, NULL);
        else if (be->device) {
            void (*destroy)(void *, const void *) = (void (*)(void *, const void *))
                ((buffet__vk_gdpa_fn)be->fi.GetDeviceProcAddr)(be->device, "vkDestroyDevice");
            if (destroy) destroy(be->device, NULL);
        }
        if (be->messenger) be->destroy_messenger(be->instance, be->messenger, NULL);
        if (be->instance && be->fi.DestroyInstance) be->fi.DestroyInstance(be->instance, NULL);
        if (be->lib) dlclose(be->lib);
    }
    pthread_mutex_destroy(&be->mu);
    free(be);
}

/* vkAllocateMemory of m->type, a VkBuffer with every usage bound at 0 over all of it (the memory is
   grown to the buffer's requirement when that is larger), and a persistent mapping when
   host-visible. On failure nothing is left. */
static buffet_result buffet__vk_mem_alloc(void *p, buffet__gpu_mem *m) {
    buffet__vk *be = (buffet__vk *)p;
    buffet__vk_buffer_create_info bci;
    buffet__vk_memory_requirements req;
    buffet__vk_memory_allocate_info mai;
    uint64_t buffer = 0, memory = 0;
    void *host = NULL;
    buffet__vk_result r;
    if (m->type >= be->mem.type_count || !(be->buffer_type_bits >> m->type & 1) || m->size == 0) {
        BUFFET__VK_LOG(be, ERROR, INVALID, "vulkan: memory type %u (size %llu) cannot hold "
                       "buffers", m->type, (unsigned long long)m->size);
        return BUFFET_ERR_INVALID;
    }
    memset(&bci, 0, sizeof bci);
    bci.s_type = BUFFET__VK_ST_BUFFER_CREATE_INFO;
    bci.size = m->size;
    bci.usage = BUFFET__VK_BUFFER_USAGE_ALL;
    r = be->fd.CreateBuffer(be->device, &bci, NULL, &buffer);
    if (r != BUFFET__VK_SUCCESS) return buffet__vk_fail(&be->log, "vkCreateBuffer", r);
    be->fd.GetBufferMemoryRequirements(be->device, buffer, &req);
    if (!(req.type_bits >> m->type & 1)) {
        be->fd.DestroyBuffer(be->device, buffer, NULL);
        BUFFET__VK_LOG(be, ERROR, UNSUPPORTED, "vulkan: a buffer of %llu bytes cannot live in "
                       "memory type %u", (unsigned long long)m->size, m->type);
        return BUFFET_ERR_UNSUPPORTED;
    }
    memset(&mai, 0, sizeof mai);
    mai.s_type = BUFFET__VK_ST_MEMORY_ALLOCATE_INFO;
    mai.size = req.size > m->size ? req.size : m->size;
    mai.type = m->type;
    r = be->fd.AllocateMemory(be->device, &mai, NULL, &memory);
    if (r != BUFFET__VK_SUCCESS) {
        be->fd.DestroyBuffer(be->device, buffer, NULL);
        /* Out of memory is routine for a caller that then tries another type: not an error line. */
        if (buffet__vk_code(r) == BUFFET_ERR_NOMEM) {
            BUFFET__VK_LOG(be, DEBUG, NOMEM, "vulkan: vkAllocateMemory of %llu bytes in type %u: "
                           "VkResult %d", (unsigned long long)mai.size, m->type, (int)r);
            return BUFFET_ERR_NOMEM;
        }
        return buffet__vk_fail(&be->log, "vkAllocateMemory", r);
    }
    r = be->fd.BindBufferMemory(be->device, buffer, memory, 0);
    if (r == BUFFET__VK_SUCCESS && (be->mem.types[m->type].flags & BUFFET__VK_MEM_HOST_VISIBLE))
        r = be->fd.MapMemory(be->device, memory, 0, BUFFET__VK_WHOLE_SIZE, 0, &host);
    if (r != BUFFET__VK_SUCCESS) {
        be->fd.DestroyBuffer(be->device, buffer, NULL);
        be->fd.FreeMemory(be->device, memory, NULL);
        return buffet__vk_fail(&be->log, "vkBindBufferMemory or vkMapMemory", r);
    }
    m->memory = memory, m->buffer = buffer, m->host = host, m->address = 0;
    return BUFFET_OK;
}

/* Undoes mem_alloc: the buffer first (it is bound to the memory), then the memory (which unmaps). */
static void buffet__vk_mem_free(void *p, buffet__gpu_mem *m) {
    buffet__vk *be = (buffet__vk *)p;
    if (m->buffer) be->fd.DestroyBuffer(be->device, m->buffer, NULL);
    if (m->host) be->fd.UnmapMemory(be->device, m->memory);
    if (m->memory) be->fd.FreeMemory(be->device, m->memory, NULL);
    m->buffer = 0, m->memory = 0, m->host = NULL;
}

/* vkFlushMappedMemoryRanges / vkInvalidateMappedMemoryRanges. A range reaching the end of the memory
   is sent as VK_WHOLE_SIZE: the end may not be a multiple of the atom, which the spec allows only so. */
static buffet_result buffet__vk_flush(void *p, const buffet__gpu_mem *m, uint64_t off, uint64_t size,
                                      int invalidate) {
    buffet__vk *be = (buffet__vk *)p;
    buffet__vk_mapped_memory_range range;
    buffet__vk_result r;
    if (!m->host || off > m->size || size > m->size - off) {
        BUFFET__VK_LOG(be, ERROR, RANGE, "vulkan: flush of [%llu, +%llu) outside mapped %llu bytes",
                       (unsigned long long)off, (unsigned long long)size, (unsigned long long)m->size);
        return BUFFET_ERR_RANGE;
    }
    if (size == 0) return BUFFET_OK;
    memset(&range, 0, sizeof range);
    range.s_type = BUFFET__VK_ST_MAPPED_MEMORY_RANGE;
    range.memory = m->memory;
    range.offset = off;
    range.size = off + size >= m->size ? BUFFET__VK_WHOLE_SIZE : size;
    r = invalidate ? be->fd.InvalidateMappedMemoryRanges(be->device, 1, &range)
                   : be->fd.FlushMappedMemoryRanges(be->device, 1, &range);
    if (r == BUFFET__VK_SUCCESS) return BUFFET_OK;
    return buffet__vk_fail(&be->log,
                           invalidate ? "vkInvalidateMappedMemoryRanges" : "vkFlushMappedMemoryRanges", r);
}

/* Under mu: returns batches whose ticket is known complete to the free list (their fence reset), and
   learns of completions by polling the fences nobody waits on. Fences some thread waits on stay. */
static buffet_result buffet__vk_reap(buffet__vk *be) {
    uint64_t done = BUFFET__LOAD(&be->done, BUFFET__RELAXED);
    uint32_t i;
    for (i = 0; i < be->batch_count; i++) {
        buffet__vk_batch *b = &be->batches[i];
        if (b->state != BUFFET__VK_IN_FLIGHT || b->ticket <= done) continue;
        if (b->waiters == 0 && b->ticket > done &&
            be->fd.GetFenceStatus(be->device, b->fence) == BUFFET__VK_SUCCESS)
            done = b->ticket;   /* a later ticket complete completes every earlier one */
    }
    if (done > BUFFET__LOAD(&be->done, BUFFET__RELAXED)) BUFFET__STORE(&be->done, done, BUFFET__RELEASE);
    for (i = 0; i < be->batch_count; i++) {
        buffet__vk_batch *b = &be->batches[i];
        if (b->state == BUFFET__VK_IN_FLIGHT && b->ticket <= done && b->waiters == 0) {
            buffet__vk_result r = be->fd.ResetFences(be->device, 1, &b->fence);
            if (r != BUFFET__VK_SUCCESS) return buffet__vk_fail(&be->log, "vkResetFences", r);
            b->state = BUFFET__VK_FREE;
        }
    }
    return BUFFET_OK;
}

/* Under mu: the batch being recorded, begun now when there is none (a free batch reused, else a new
   command buffer and fence). */
static buffet_result buffet__vk_begin(buffet__vk *be, buffet__vk_batch **out) {
    buffet__vk_command_buffer_begin_info bi;
    buffet__vk_batch *b = NULL;
    buffet__vk_result r;
    buffet_result code;
    uint32_t i;
    if (be->recording >= 0) {
        *out = &be->batches[be->recording];
        return BUFFET_OK;
    }
    code = buffet__vk_reap(be);
    if (code != BUFFET_OK) return code;
    for (i = 0; i < be->batch_count && !b; i++)
        if (be->batches[i].state == BUFFET__VK_FREE) b = &be->batches[i];
    if (!b) {
        buffet__vk_command_buffer_allocate_info ai;
        buffet__vk_fence_create_info fi;
        buffet__vk_batch nb;
        if (be->batch_count == be->batch_cap) {
            uint32_t cap = be->batch_cap ? be->batch_cap * 2 : 8;
            buffet__vk_batch *nbs = (buffet__vk_batch *)realloc(be->batches, cap * sizeof *nbs);
            if (!nbs) {
                BUFFET__VK_LOG(be, ERROR, NOMEM, "vulkan: no memory for %u batches", cap);
                return BUFFET_ERR_NOMEM;
            }
            be->batches = nbs, be->batch_cap = cap;
        }
        memset(&nb, 0, sizeof nb);
        memset(&ai, 0, sizeof ai);
        ai.s_type = BUFFET__VK_ST_COMMAND_BUFFER_ALLOCATE_INFO;
        ai.pool = be->pool, ai.level = 0, ai.count = 1;
        r = be->fd.AllocateCommandBuffers(be->device, &ai, &nb.cmd);
        if (r != BUFFET__VK_SUCCESS) return buffet__vk_fail(&be->log, "vkAllocateCommandBuffers", r);
        memset(&fi, 0, sizeof fi);
        fi.s_type = BUFFET__VK_ST_FENCE_CREATE_INFO;
        r = be->fd.CreateFence(be->device, &fi, NULL, &nb.fence);
        if (r != BUFFET__VK_SUCCESS) {
            be->fd.FreeCommandBuffers(be->device, be->pool, 1, &nb.cmd);
            return buffet__vk_fail(&be->log, "vkCreateFence", r);
        }
        be->batches[be->batch_count] = nb;
        b = &be->batches[be->batch_count++];
    }
    memset(&bi, 0, sizeof bi);
    bi.s_type = BUFFET__VK_ST_COMMAND_BUFFER_BEGIN_INFO;
    bi.flags = BUFFET__VK_CMD_ONE_TIME_SUBMIT;
    r = be->fd.BeginCommandBuffer(b->cmd, &bi);   /* resets it: the pool allows it */
    if (r != BUFFET__VK_SUCCESS) return buffet__vk_fail(&be->log, "vkBeginCommandBuffer", r);
    b->state = BUFFET__VK_RECORDING;
    be->recording = (int)(b - be->batches);
    *out = b;
    return BUFFET_OK;
}

/* Records one copy. A barrier before it orders it after every earlier transfer (this batch's and
   earlier submissions'): a copy may read what the one before wrote. */
static buffet_result buffet__vk_copy(void *p, const buffet__gpu_mem *src, uint64_t src_off,
                                     const buffet__gpu_mem *dst, uint64_t dst_off, uint64_t size) {
    buffet__vk *be = (buffet__vk *)p;
    buffet__vk_batch *b;
    buffet__vk_buffer_copy region;
    buffet__vk_memory_barrier mb;
    buffet_result code;
    if (!src->buffer || !dst->buffer || src_off > src->size || size > src->size - src_off ||
        dst_off > dst->size || size > dst->size - dst_off) {
        BUFFET__VK_LOG(be, ERROR, RANGE, "vulkan: copy of %llu bytes out of range",
                       (unsigned long long)size);
        return BUFFET_ERR_RANGE;
    }
    if (size == 0) return BUFFET_OK;
    pthread_mutex_lock(&be->mu);
    code = be->lost ? BUFFET_ERR_DEVICE_LOST : buffet__vk_begin(be, &b);
    if (code == BUFFET_OK) {
        memset(&mb, 0, sizeof mb);
        mb.s_type = BUFFET__VK_ST_MEMORY_BARRIER;
        mb.src_access = BUFFET__VK_ACCESS_TRANSFER_WRITE;
        mb.dst_access = BUFFET__VK_ACCESS_TRANSFER_READ | BUFFET__VK_ACCESS_TRANSFER_WRITE;
        be->fd.CmdPipelineBarrier(b->cmd, BUFFET__VK_STAGE_TRANSFER, BUFFET__VK_STAGE_TRANSFER, 0, 1, &mb,
                                  0, NULL, 0, NULL);
        region.src_offset = src_off, region.dst_offset = dst_off, region.size = size;
        be->fd.CmdCopyBuffer(b->cmd, src->buffer, dst->buffer, 1, &region);
    }
    pthread_mutex_unlock(&be->mu);
    return code;
}

/* Ends the batch (begun now if no copy began it) with a barrier that makes its writes visible to the
   host after the fence, and submits it with its fence as ticket t. */
static buffet_result buffet__vk_submit(void *p, uint64_t t) {
    buffet__vk *be = (buffet__vk *)p;
    buffet__vk_batch *b;
    buffet__vk_memory_barrier mb;
    buffet__vk_submit_info si;
    buffet__vk_result r;
    buffet_result code;
    pthread_mutex_lock(&be->mu);
    if (be->lost) {
        pthread_mutex_unlock(&be->mu);
        return BUFFET_ERR_DEVICE_LOST;
    }
    if (t <= be->last_submitted) {
        pthread_mutex_unlock(&be->mu);
        BUFFET__VK_LOG(be, ERROR, INVALID, "vulkan: ticket %llu submitted after %llu",
                       (unsigned long long)t, (unsigned long long)be->last_submitted);
        return BUFFET_ERR_INVALID;
    }
    code = buffet__vk_begin(be, &b);
    if (code != BUFFET_OK) {
        pthread_mutex_unlock(&be->mu);
        return code;
    }
    memset(&mb, 0, sizeof mb);
    mb.s_type = BUFFET__VK_ST_MEMORY_BARRIER;
    mb.src_access = BUFFET__VK_ACCESS_TRANSFER_WRITE;
    mb.dst_access = BUFFET__VK_ACCESS_HOST_READ | BUFFET__VK_ACCESS_HOST_WRITE;
    be->fd.CmdPipelineBarrier(b->cmd, BUFFET__VK_STAGE_TRANSFER, BUFFET__VK_STAGE_HOST, 0, 1, &mb,
                              0, NULL, 0, NULL);
    r = be->fd.EndCommandBuffer(b->cmd);
    if (r == BUFFET__VK_SUCCESS) {
        memset(&si, 0, sizeof si);
        si.s_type = BUFFET__VK_ST_SUBMIT_INFO;
        si.cmd_count = 1, si.cmds = &b->cmd;
        r = be->fd.QueueSubmit(be->queue, 1, &si, b->fence);
    }
    be->recording = -1;
    if (r != BUFFET__VK_SUCCESS) {
        b->state = BUFFET__VK_FREE;   /* the next begin resets the command buffer; the fence was not used */
        if (r == BUFFET__VK_ERROR_DEVICE_LOST) be->lost = 1;
        pthread_mutex_unlock(&be->mu);
        return buffet__vk_fail(&be->log, "vkQueueSubmit", r);
    }
    b->ticket = t;
    b->state = BUFFET__VK_IN_FLIGHT;
    be->last_submitted = t;
    pthread_mutex_unlock(&be->mu);
    return BUFFET_OK;
}

/* Waits on the fence of the first batch at or after ticket t, without the lock; the batch keeps its
   fence (waiters > 0) until every waiter has left. Safe from many threads and beside submit. */
static buffet_result buffet__vk_wait(void *p, uint64_t t, uint64_t timeout_ns) {
    buffet__vk *be = (buffet__vk *)p;
    buffet__vk_result r;
    uint64_t fence = 0, ticket = 0;
    uint32_t i, found = UINT32_MAX;
    if (BUFFET__LOAD(&be->done, BUFFET__ACQUIRE) >= t) return BUFFET_OK;
    pthread_mutex_lock(&be->mu);
    if (be->lost) {
        pthread_mutex_unlock(&be->mu);
        return BUFFET_ERR_DEVICE_LOST;
    }
    if (BUFFET__LOAD(&be->done, BUFFET__RELAXED) >= t) {
        pthread_mutex_unlock(&be->mu);
        return BUFFET_OK;
    }
    for (i = 0; i < be->batch_count; i++) {
        buffet__vk_batch *b = &be->batches[i];
        if (b->state == BUFFET__VK_IN_FLIGHT && b->ticket >= t && (found == UINT32_MAX || b->ticket < ticket))
            found = i, ticket = b->ticket;
    }
    if (found == UINT32_MAX) {
        pthread_mutex_unlock(&be->mu);
        BUFFET__VK_LOG(be, ERROR, INVALID, "vulkan: wait for ticket %llu, never submitted",
                       (unsigned long long)t);
        return BUFFET_ERR_INVALID;
    }
    be->batches[found].waiters++;
    fence = be->batches[found].fence;
    pthread_mutex_unlock(&be->mu);

    r = be->fd.WaitForFences(be->device, 1, &fence, 1u, timeout_ns);

    pthread_mutex_lock(&be->mu);
    be->batches[found].waiters--;       /* the array may have moved: the index holds */
    if (r == BUFFET__VK_SUCCESS && ticket > BUFFET__LOAD(&be->done, BUFFET__RELAXED))
        BUFFET__STORE(&be->done, ticket, BUFFET__RELEASE);
    if (r == BUFFET__VK_ERROR_DEVICE_LOST) be->lost = 1;
    pthread_mutex_unlock(&be->mu);
    if (r == BUFFET__VK_SUCCESS) return BUFFET_OK;
    if (r == BUFFET__VK_TIMEOUT) return BUFFET_AGAIN;
    return buffet__vk_fail(&be->log, "vkWaitForFences", r);
}

/* Imports host memory [host, host + size) as device memory (VK_EXT_external_memory_host) with a
   VkBuffer over it, as mem_alloc makes. host and size must be multiples of
   minImportedHostPointerAlignment. The type is m->type when the import allows it, else the first
   allowed host-visible one; the memory is not mapped (m->host is host itself). */
static buffet_result buffet__vk_pin(void *p, void *host, uint64_t size, buffet__gpu_mem *m) {
    buffet__vk *be = (buffet__vk *)p;
    buffet__vk_host_pointer_properties hpp;
    buffet__vk_external_memory_buffer_create_info ebi;
    buffet__vk_buffer_create_info bci;
    buffet__vk_import_host_pointer_info import;
    buffet__vk_memory_allocate_info mai;
    buffet__vk_memory_requirements req;
    uint64_t buffer = 0, memory = 0;
    uint32_t bits, type, i;
    buffet__vk_result r;
    if (!be->has_host_import) return BUFFET_ERR_UNSUPPORTED;
    if (!host || size == 0 || ((uintptr_t)host | size) & (be->host_align - 1)) {
        BUFFET__VK_LOG(be, ERROR, INVALID, "vulkan: pin of %p, %llu bytes: both must be multiples of %llu",
                       host, (unsigned long long)size, (unsigned long long)be->host_align);
        return BUFFET_ERR_INVALID;
    }
    memset(&hpp, 0, sizeof hpp);
    hpp.s_type = BUFFET__VK_ST_MEMORY_HOST_POINTER_PROPERTIES_EXT;
    r = be->get_host_pointer_props(be->device, BUFFET__VK_HANDLE_HOST_ALLOCATION, host, &hpp);
    if (r != BUFFET__VK_SUCCESS) return buffet__vk_fail(&be->log, "vkGetMemoryHostPointerPropertiesEXT", r);
    memset(&ebi, 0, sizeof ebi);
    ebi.s_type = BUFFET__VK_ST_EXTERNAL_MEMORY_BUFFER_CREATE_INFO;
    ebi.handle_types = BUFFET__VK_HANDLE_HOST_ALLOCATION;
    memset(&bci, 0, sizeof bci);
    bci.s_type = BUFFET__VK_ST_BUFFER_CREATE_INFO;
    bci.next = &ebi;
    bci.size = size;
    bci.usage = BUFFET__VK_BUFFER_USAGE_ALL;
    r = be->fd.CreateBuffer(be->device, &bci, NULL, &buffer);
    if (r != BUFFET__VK_SUCCESS) return buffet__vk_fail(&be->log, "vkCreateBuffer (pinned)", r);
    be->fd.GetBufferMemoryRequirements(be->device, buffer, &req);
    bits = hpp.type_bits & req.type_bits & be->buffer_type_bits;
    type = UINT32_MAX;
    if (m->type < be->mem.type_count && (bits >> m->type & 1)) type = m->type;
    for (i = 0; i < be->mem.type_count && type == UINT32_MAX; i++)
        if ((bits >> i & 1) && (be->mem.types[i].flags & BUFFET__VK_MEM_HOST_VISIBLE)) type = i;
    if (type == UINT32_MAX || req.size > size) {
        be->fd.DestroyBuffer(be->device, buffer, NULL);
        BUFFET__VK_LOG(be, ERROR, UNSUPPORTED,
                       "vulkan: no memory type can import %p (types 0x%x, buffer needs %llu)", host,
                       hpp.type_bits, (unsigned long long)req.size);
        return BUFFET_ERR_UNSUPPORTED;
    }
    memset(&import, 0, sizeof import);
    import.s_type = BUFFET__VK_ST_IMPORT_MEMORY_HOST_POINTER_INFO_EXT;
    import.handle_type = BUFFET__VK_HANDLE_HOST_ALLOCATION;
    import.host = host;
    memset(&mai, 0, sizeof mai);
    mai.s_type = BUFFET__VK_ST_MEMORY_ALLOCATE_INFO;
    mai.next = &import;
    mai.size = size;
    mai.type = type;
    r = be->fd.AllocateMemory(be->device, &mai, NULL, &memory);
    if (r == BUFFET__VK_SUCCESS) r = be->fd.BindBufferMemory(be->device, buffer, memory, 0);
    if (r != BUFFET__VK_SUCCESS) {
        be->fd.DestroyBuffer(be->device, buffer, NULL);
        if (memory) be->fd.FreeMemory(be->device, memory, NULL);
        return buffet__vk_fail(&be->log, "vkAllocateMemory (host import) or vkBindBufferMemory", r);
    }
    m->size = size, m->type = type, m->pinned = 1;
    m->host = host, m->memory = memory, m->buffer = buffer, m->address = 0;
    return BUFFET_OK;
}

/* Undoes pin: the buffer, then the imported memory; the host memory stays the caller's. */
static void buffet__vk_unpin(void *p, buffet__gpu_mem *m) {
    buffet__vk *be = (buffet__vk *)p;
    if (m->buffer) be->fd.DestroyBuffer(be->device, m->buffer, NULL);
    if (m->memory) be->fd.FreeMemory(be->device, m->memory, NULL);
    m->buffer = 0, m->memory = 0, m->host = NULL;
}

/* VK_EXT_memory_budget's view of heap h; 0s without the extension. */
static void buffet__vk_heap_budget(void *p, uint32_t h, uint64_t *usage, uint64_t *budget) {
    buffet__vk *be = (buffet__vk *)p;
    buffet__vk_memory_properties2 mp2;
    buffet__vk_memory_budget_properties mb;
    *usage = 0, *budget = 0;
    if (!be->has_budget || h >= be->mem.heap_count) return;
    memset(&mp2, 0, sizeof mp2);
    memset(&mb, 0, sizeof mb);
    mp2.s_type = BUFFET__VK_ST_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2;
    mp2.next = &mb;
    mb.s_type = BUFFET__VK_ST_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT;
    be->fi.GetPhysicalDeviceMemoryProperties2(be->physical, &mp2);
    *usage = mb.usage[h], *budget = mb.budget[h];
}

static void buffet__vk_handles(void *p, buffet_gpu_vulkan_desc *out) {
    buffet__vk *be = (buffet__vk *)p;
    memset(out, 0, sizeof *out);
    memcpy(&out->get_instance_proc_addr, &be->gipa, sizeof be->gipa);
    out->instance = be->instance, out->physical_device = be->physical, out->device = be->device;
    out->queue_family = be->family, out->queue_index = be->queue_index;
}

static uint64_t buffet__vk_validation_messages(void *p) {
    return BUFFET__LOAD(&((buffet__vk *)p)->validation_count, BUFFET__RELAXED);
}

static const buffet__gpu_ops buffet__gpu_vulkan_ops = {
    "vulkan", buffet__vk_open, buffet__vk_close, buffet__vk_mem_alloc, buffet__vk_mem_free, buffet__vk_flush,
    buffet__vk_copy, buffet__vk_submit, buffet__vk_wait, buffet__vk_pin, buffet__vk_unpin,
    buffet__vk_heap_budget, buffet__vk_handles, buffet__vk_validation_messages};
/* >>vulkan backend end */

/* >>cuda backend */
/* The driver API, loaded at run time: dlopen(desc->library or libcuda.so.1), and of its symbols
   only cuGetProcAddress (_v2 when there, the CUDA 12 form); every other entry point comes from
   it by its base name and the CUDA version that introduced the ABI used here (cudaTypedefs.h's
   PFN_cuMemAlloc_v3020 is cuMemAlloc_v2, so "cuMemAlloc" at 3020), so a newer driver never
   hands out a variant with another signature. With <cuda.h> at hand (or BUFFET_GPU_CUDA_H
   defined to 1; 0 keeps it out) its types are used; otherwise equivalents are declared here.
   One device: its primary context (made current around each call, so any thread may call),
   one non-blocking stream for every copy, and an event recorded after each ticket's copies.
   Memory types: 0 device (cuMemAlloc), 1 upload (pinned, write-combined), 2 readback (pinned,
   cached), 3 managed (when the device has it); every one is reached by a CUdeviceptr, so a copy
   is one cuMemcpyAsync (unified addressing is required). */
#include <dlfcn.h>
#include <time.h>

#if defined(BUFFET_GPU_CUDA_H)
#  if BUFFET_GPU_CUDA_H
#    define BUFFET__CU_HEADER 1
#  endif
#elif defined(__has_include)
#  if __has_include(<cuda.h>)
#    define BUFFET__CU_HEADER 1
#  endif
#endif

#ifdef BUFFET__CU_HEADER
#include <cuda.h>
typedef CUresult buffet__cu_res;
typedef CUdeviceptr buffet__cu_ptr;
typedef CUdevice buffet__cu_dev;
typedef CUcontext buffet__cu_ctx;
typedef CUstream buffet__cu_stream;
typedef CUevent buffet__cu_event;
typedef CUdevice_attribute buffet__cu_attr;
typedef CUdriverProcAddressQueryResult buffet__cu_query;
typedef cuuint64_t buffet__cu_u64;
#else
/* The ABI of the driver's types on the platforms it supports (64-bit: a CUdeviceptr is 64 bits,
   the enums are int). */
typedef int buffet__cu_res;
typedef unsigned long long buffet__cu_ptr;
typedef int buffet__cu_dev;
typedef struct buffet__cu_ctx_st *buffet__cu_ctx;
typedef struct buffet__cu_stream_st *buffet__cu_stream;
typedef struct buffet__cu_event_st *buffet__cu_event;
typedef int buffet__cu_attr;
typedef int buffet__cu_query;
typedef unsigned long long buffet__cu_u64;
#endif

/* Values from cuda.h, spelled here so that both cases use them alike. */
#define BUFFET__CU_SUCCESS 0
#define BUFFET__CU_ERR_INVALID_VALUE 1
#define BUFFET__CU_ERR_OUT_OF_MEMORY 2
#define BUFFET__CU_ERR_DEINITIALIZED 4
#define BUFFET__CU_ERR_STUB_LIBRARY 34
#define BUFFET__CU_ERR_NO_DEVICE 100
#define BUFFET__CU_ERR_INVALID_DEVICE 101
#define BUFFET__CU_ERR_INVALID_HANDLE 400
#define BUFFET__CU_ERR_NOT_READY 600
#define BUFFET__CU_ERR_NOT_PERMITTED 800
#define BUFFET__CU_ERR_NOT_SUPPORTED 801
#define BUFFET__CU_ERR_ALREADY_REGISTERED 712
#define BUFFET__CU_ERR_NOT_REGISTERED 713
#define BUFFET__CU_ATTR_CAN_MAP_HOST_MEMORY 19
#define BUFFET__CU_ATTR_UNIFIED_ADDRESSING 41
#define BUFFET__CU_ATTR_MANAGED_MEMORY 83
#define BUFFET__CU_HOSTALLOC_PORTABLE 0x01u
#define BUFFET__CU_HOSTALLOC_DEVICEMAP 0x02u
#define BUFFET__CU_HOSTALLOC_WRITECOMBINED 0x04u
#define BUFFET__CU_HOSTREGISTER_PORTABLE 0x01u
#define BUFFET__CU_HOSTREGISTER_DEVICEMAP 0x02u
#define BUFFET__CU_MEM_ATTACH_GLOBAL 0x1u
#define BUFFET__CU_STREAM_NON_BLOCKING 0x1u
#define BUFFET__CU_EVENT_BLOCKING_SYNC 0x1u
#define BUFFET__CU_EVENT_DISABLE_TIMING 0x2u
#define BUFFET__CU_PROC_LEGACY_STREAM 1u
#define BUFFET__CU_ALIGN 256u              /* cuMemAlloc's alignment, and more than any use needs */

enum { BUFFET__CU_TYPE_DEVICE, BUFFET__CU_TYPE_UPLOAD, BUFFET__CU_TYPE_READBACK, BUFFET__CU_TYPE_MANAGED };

typedef buffet__cu_res (*buffet__cu_getproc_v1)(const char *, void **, int, buffet__cu_u64);
typedef buffet__cu_res (*buffet__cu_getproc_v2)(const char *, void **, int, buffet__cu_u64,
                                                buffet__cu_query *);

/* The entry points used, as the ABI versions named in buffet__cu_syms. */
typedef struct buffet__cu_fns {
    buffet__cu_res (*GetErrorName)(buffet__cu_res, const char **);
    buffet__cu_res (*Init)(unsigned);
    buffet__cu_res (*DriverGetVersion)(int *);
    buffet__cu_res (*DeviceGetCount)(int *);
    buffet__cu_res (*DeviceGet)(buffet__cu_dev *, int);
    buffet__cu_res (*DeviceGetName)(char *, int, buffet__cu_dev);
    buffet__cu_res (*DeviceGetAttribute)(int *, buffet__cu_attr, buffet__cu_dev);
    buffet__cu_res (*DeviceTotalMem)(size_t *, buffet__cu_dev);
    buffet__cu_res (*DevicePrimaryCtxRetain)(buffet__cu_ctx *, buffet__cu_dev);
    buffet__cu_res (*DevicePrimaryCtxRelease)(buffet__cu_dev);
    buffet__cu_res (*CtxPushCurrent)(buffet__cu_ctx);
    buffet__cu_res (*CtxPopCurrent)(buffet__cu_ctx *);
    buffet__cu_res (*StreamCreate)(buffet__cu_stream *, unsigned);
    buffet__cu_res (*StreamDestroy)(buffet__cu_stream);
    buffet__cu_res (*StreamSynchronize)(buffet__cu_stream);
    buffet__cu_res (*EventCreate)(buffet__cu_event *, unsigned);
    buffet__cu_res (*EventDestroy)(buffet__cu_event);
    buffet__cu_res (*EventRecord)(buffet__cu_event, buffet__cu_stream);
    buffet__cu_res (*EventQuery)(buffet__cu_event);
    buffet__cu_res (*EventSynchronize)(buffet__cu_event);
    buffet__cu_res (*MemAlloc)(buffet__cu_ptr *, size_t);
    buffet__cu_res (*MemFree)(buffet__cu_ptr);
    buffet__cu_res (*MemHostAlloc)(void **, size_t, unsigned);
    buffet__cu_res (*MemFreeHost)(void *);
    buffet__cu_res (*MemHostGetDevicePointer)(buffet__cu_ptr *, void *, unsigned);
    buffet__cu_res (*MemAllocManaged)(buffet__cu_ptr *, size_t, unsigned);
    buffet__cu_res (*MemHostRegister)(void *, size_t, unsigned);
    buffet__cu_res (*MemHostUnregister)(void *);
    buffet__cu_res (*MemcpyAsync)(buffet__cu_ptr, buffet__cu_ptr, size_t, buffet__cu_stream);
    buffet__cu_res (*MemGetInfo)(size_t *, size_t *);
} buffet__cu_fns;

/* Base name, the CUDA version of the ABI wanted (cudaTypedefs.h's PFN_<name>_v<version>), and
   where it goes. cuGetErrorName first: the failures that follow are logged by name. */
static const struct buffet__cu_sym {
    const char *name;
    int version;
    size_t at;
} buffet__cu_syms[] = {
#define BUFFET__CU_SYM(fn, v) {"cu" #fn, v, offsetof(buffet__cu_fns, fn)}
    BUFFET__CU_SYM(GetErrorName, 6000),
    BUFFET__CU_SYM(Init, 2000),
    BUFFET__CU_SYM(DriverGetVersion, 2020),
    BUFFET__CU_SYM(DeviceGetCount, 2000),
    BUFFET__CU_SYM(DeviceGet, 2000),
    BUFFET__CU_SYM(DeviceGetName, 2000),
    BUFFET__CU_SYM(DeviceGetAttribute, 2000),
    BUFFET__CU_SYM(DeviceTotalMem, 3020),              /* _v2 */
    BUFFET__CU_SYM(DevicePrimaryCtxRetain, 7000),
    BUFFET__CU_SYM(DevicePrimaryCtxRelease, 11000),    /* _v2 */
    BUFFET__CU_SYM(CtxPushCurrent, 4000),              /* _v2 */
    BUFFET__CU_SYM(CtxPopCurrent, 4000),               /* _v2 */
    BUFFET__CU_SYM(StreamCreate, 2000),
    BUFFET__CU_SYM(StreamDestroy, 4000),               /* _v2 */
    BUFFET__CU_SYM(StreamSynchronize, 2000),
    BUFFET__CU_SYM(EventCreate, 2000),
    BUFFET__CU_SYM(EventDestroy, 4000),                /* _v2 */
    BUFFET__CU_SYM(EventRecord, 2000),
    BUFFET__CU_SYM(EventQuery, 2000),
    BUFFET__CU_SYM(EventSynchronize, 2000),
    BUFFET__CU_SYM(MemAlloc, 3020),                    /* _v2 */
    BUFFET__CU_SYM(MemFree, 3020),                     /* _v2 */
    BUFFET__CU_SYM(MemHostAlloc, 2020),
    BUFFET__CU_SYM(MemFreeHost, 2000),
    BUFFET__CU_SYM(MemHostGetDevicePointer, 3020),     /* _v2 */
    BUFFET__CU_SYM(MemAllocManaged, 6000),
    BUFFET__CU_SYM(MemHostRegister, 6050),             /* _v2 */
    BUFFET__CU_SYM(MemHostUnregister, 4000),
    BUFFET__CU_SYM(MemcpyAsync, 4000),
    BUFFET__CU_SYM(MemGetInfo, 3020)                   /* _v2 */
#undef BUFFET__CU_SYM
};

typedef struct buffet__cu_xfer { buffet__cu_ptr dst, src; size_t size; } buffet__cu_xfer;
typedef struct buffet__cu_flight { uint64_t ticket; uint32_t ev; } buffet__cu_flight;   /* ev: in evs */
/* An event and the waiters sleeping in cuEventSynchronize on it: it is not reused while they do. */
typedef struct buffet__cu_ev { buffet__cu_event ev; uint32_t users; } buffet__cu_ev;

typedef struct buffet__cu {
    void *lib;
    buffet__cu_fns f;
    buffet_allocator alloc;
    buffet_logger log;
    buffet__cu_dev dev;
    buffet__cu_ctx ctx;
    buffet__cu_stream stream;
    uint32_t type_count;
    int lost;                        /* a sticky error was seen: atomic, read by wait */
    /* copies recorded, issued at submit (under the device lock) */
    buffet__cu_xfer *batch;
    size_t nbatch, capbatch;
    /* tickets: under mu, since wait runs beside submit */
    pthread_mutex_t mu;
    buffet__cu_flight *flight;       /* a ring of submitted, not yet seen complete, in order */
    size_t fhead, fcount, fcap;
    buffet__cu_ev *evs;              /* every event made (indexes stay valid as it grows) */
    size_t nevents, capevs;
    uint32_t *pool;                  /* completed events (indexes), for reuse; room for all */
    size_t npool, cappool;
    uint64_t submitted, completed;
} buffet__cu;

/* Errors after which the context is unusable (the driver says so: "the process must be
   terminated and relaunched" or the context destroyed): ECC, NVLink, contained, illegal
   address, launch timeout, context destroyed, assert, the 714..719 family, external device. */
static int buffet__cu_sticky(int e) {
    return e == BUFFET__CU_ERR_DEINITIALIZED || e == 214 || e == 220 || e == 226 || e == 700 || e == 702 ||
           e == 709 || e == 710 || (e >= 714 && e <= 719) || e == 911;
}

/* The buffet code for a driver result. */
static buffet_result buffet__cu_code(int e) {
    if (e == BUFFET__CU_SUCCESS) return BUFFET_OK;
    if (e == BUFFET__CU_ERR_OUT_OF_MEMORY) return BUFFET_ERR_NOMEM;
    if (e == BUFFET__CU_ERR_NOT_READY) return BUFFET_AGAIN;
    if (buffet__cu_sticky(e)) return BUFFET_ERR_DEVICE_LOST;
    if (e == BUFFET__CU_ERR_NO_DEVICE || e == BUFFET__CU_ERR_INVALID_DEVICE ||
        e == BUFFET__CU_ERR_STUB_LIBRARY)
        return BUFFET_ERR_NO_DEVICE;
    if (e == BUFFET__CU_ERR_NOT_SUPPORTED || e == BUFFET__CU_ERR_NOT_PERMITTED) return BUFFET_ERR_UNSUPPORTED;
    if (e == BUFFET__CU_ERR_INVALID_VALUE || e == BUFFET__CU_ERR_INVALID_HANDLE ||
        e == BUFFET__CU_ERR_ALREADY_REGISTERED || e == BUFFET__CU_ERR_NOT_REGISTERED)
        return BUFFET_ERR_INVALID;
    return BUFFET_ERR_SYSTEM;
}

static const char *buffet__cu_name(const buffet__cu *be, int e) {
    const char *n = NULL;
    if (!be->f.GetErrorName || (int)be->f.GetErrorName((buffet__cu_res)e, &n) != BUFFET__CU_SUCCESS || !n)
        return "?";
    return n;
}

/* A failed call: log it with the driver's code and name, remember a sticky one (every later call
   is then DEVICE_LOST), and return the buffet code (code, when not 0, instead of the mapping). */
static buffet_result buffet__cu_fail(buffet__cu *be, int e, const char *what, buffet_result code) {
    buffet_result r = code != BUFFET_OK ? code : buffet__cu_code(e);
    if (r == BUFFET_ERR_DEVICE_LOST) BUFFET__STORE(&be->lost, 1, BUFFET__RELAXED);
    BUFFET__LOG(&be->log, r == BUFFET_ERR_NO_DEVICE ? BUFFET_LOG_WARN : BUFFET_LOG_ERROR, r,
                "cuda: %s failed: CUresult %d (%s)%s", what, e, buffet__cu_name(be, e),
                r == BUFFET_ERR_DEVICE_LOST ? ": the device is lost" : "");
    return r;
}

static buffet_result buffet__cu_lost(buffet__cu *be) {
    return BUFFET__LOAD(&be->lost, BUFFET__RELAXED) ? BUFFET_ERR_DEVICE_LOST : BUFFET_OK;
}

/* Make the primary context current on this thread for one op (the caller's own stays below it). */
static buffet_result buffet__cu_enter(buffet__cu *be) {
    int e;
    if (buffet__cu_lost(be)) return BUFFET_ERR_DEVICE_LOST;
    e = (int)be->f.CtxPushCurrent(be->ctx);
    return e ? buffet__cu_fail(be, e, "cuCtxPushCurrent", BUFFET_OK) : BUFFET_OK;
}
static void buffet__cu_leave(buffet__cu *be) {
    buffet__cu_ctx c;
    (void)be->f.CtxPopCurrent(&c);
}

/* An array of elem-sized items (count used, *cap made) with room for need (doubling): the array
   itself, or a larger copy (the old one freed, *cap updated). NULL: out of memory, arr untouched. */
static void *buffet__cu_grow(buffet__cu *be, void *arr, size_t *cap, size_t count, size_t need, size_t elem) {
    size_t ncap = *cap ? *cap : 16;
    void *p;
    if (need <= *cap) return arr;
    while (ncap < need) ncap *= 2;
    p = buffet_alloc(be->alloc, ncap * elem, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
    if (!p) return NULL;
    if (count) memcpy(p, arr, count * elem);
    if (arr) buffet_free(be->alloc, arr, *cap * elem, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
    *cap = ncap;
    return p;
}

static void buffet__cu_free_state(buffet__cu *be) {
    buffet_free(be->alloc, be->batch, be->capbatch * sizeof *be->batch, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
    buffet_free(be->alloc, be->flight, be->fcap * sizeof *be->flight, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
    buffet_free(be->alloc, be->pool, be->cappool * sizeof *be->pool, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
    buffet_free(be->alloc, be->evs, be->capevs * sizeof *be->evs, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
    if (be->lib) dlclose(be->lib);
    pthread_mutex_destroy(&be->mu);
    BUFFET_DELETE(be->alloc, buffet__cu, be);
}

/* Load the library and every entry point. NO_DEVICE: no library; UNSUPPORTED: a driver without
   cuGetProcAddress (before CUDA 11.3) or without an entry point. */
static buffet_result buffet__cu_load(buffet__cu *be, const char *lib) {
    void *sym;
    buffet__cu_getproc_v1 gp1 = NULL;
    buffet__cu_getproc_v2 gp2 = NULL;
    size_t i;
    be->lib = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!be->lib) {
        const char *why = dlerror();
        BUFFET__LOG(&be->log, BUFFET_LOG_WARN, BUFFET_ERR_NO_DEVICE, "cuda: cannot load %s: %s", lib,
                    why ? why : "?");
        return BUFFET_ERR_NO_DEVICE;
    }
    /* object to function pointer through memcpy: ISO C has no cast between them */
    if ((sym = dlsym(be->lib, "cuGetProcAddress_v2")) != NULL) memcpy(&gp2, &sym, sizeof sym);
    else if ((sym = dlsym(be->lib, "cuGetProcAddress")) != NULL) memcpy(&gp1, &sym, sizeof sym);
    else {
        BUFFET__LOG(&be->log, BUFFET_LOG_ERROR, BUFFET_ERR_UNSUPPORTED,
                    "cuda: %s has no cuGetProcAddress: a driver older than CUDA 11.3, or not the driver",
                    lib);
        return BUFFET_ERR_UNSUPPORTED;
    }
    for (i = 0; i < sizeof buffet__cu_syms / sizeof buffet__cu_syms[0]; i++) {
        const struct buffet__cu_sym *s = &buffet__cu_syms[i];
        buffet__cu_query q = (buffet__cu_query)0;
        void *p = NULL;
        int e = gp2 ? (int)gp2(s->name, &p, s->version, BUFFET__CU_PROC_LEGACY_STREAM, &q)
                    : (int)gp1(s->name, &p, s->version, BUFFET__CU_PROC_LEGACY_STREAM);
        if (e != BUFFET__CU_SUCCESS || !p) {
            BUFFET__LOG(
                &be->log, BUFFET_LOG_ERROR, BUFFET_ERR_UNSUPPORTED,
                "cuda: the driver in %s has no %s (ABI of CUDA %d.%d): CUresult %d (%s), query result %d",
                lib, s->name, s->version / 1000, s->version % 1000 / 10, e, buffet__cu_name(be, e), (int)q);
            return BUFFET_ERR_UNSUPPORTED;
        }
        memcpy((char *)&be->f + s->at, &p, sizeof p);
    }
    return BUFFET_OK;
}

/* Everything after the library: the device, its context, the stream and the caps. */
static buffet_result buffet__cu_start(buffet__cu *be, const buffet_gpu_device_desc *desc,
                                      buffet__gpu_caps *caps) {
    int e, count = 0, version = 0, uva = 0, map = 0, managed = 0;
    size_t total = 0;
    buffet_result r;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    /* every cuInit failure means no usable GPU here (no device, a stub library, the kernel module
       missing, a mismatched driver): NO_DEVICE, so that AUTO goes on to the next backend */
    if ((e = (int)be->f.Init(0)) != BUFFET__CU_SUCCESS)
        return buffet__cu_fail(be, e, "cuInit", BUFFET_ERR_NO_DEVICE);
    (void)be->f.DriverGetVersion(&version);
    if ((e = (int)be->f.DeviceGetCount(&count)) != BUFFET__CU_SUCCESS)
        return buffet__cu_fail(be, e, "cuDeviceGetCount", BUFFET_OK);
    if (desc->device_index >= (uint32_t)(count > 0 ? count : 0)) {
        BUFFET__LOG(&be->log, BUFFET_LOG_WARN, BUFFET_ERR_NO_DEVICE,
                    "cuda: no device %u: the driver (%d.%d) has %d", desc->device_index, version / 1000,
                    version % 1000 / 10, count);
        return BUFFET_ERR_NO_DEVICE;
    }
    if ((e = (int)be->f.DeviceGet(&be->dev, (int)desc->device_index)) != BUFFET__CU_SUCCESS)
        return buffet__cu_fail(be, e, "cuDeviceGet", BUFFET_ERR_NO_DEVICE);
    memset(caps, 0, sizeof *caps);
    if ((e = (int)be->f.DeviceGetName(caps->name, (int)sizeof caps->name, be->dev)) != BUFFET__CU_SUCCESS)
        return buffet__cu_fail(be, e, "cuDeviceGetName", BUFFET_OK);
    caps->name[sizeof caps->name - 1] = '\0';
    if ((e = (int)be->f.DeviceTotalMem(&total, be->dev)) != BUFFET__CU_SUCCESS)
        return buffet__cu_fail(be, e, "cuDeviceTotalMem", BUFFET_OK);
    if ((e = (int)be->f.DeviceGetAttribute(&uva, (buffet__cu_attr)BUFFET__CU_ATTR_UNIFIED_ADDRESSING,
                                           be->dev)) ||
        (e = (int)be->f.DeviceGetAttribute(&map, (buffet__cu_attr)BUFFET__CU_ATTR_CAN_MAP_HOST_MEMORY,
                                           be->dev)) ||
        (e = (int)be->f.DeviceGetAttribute(&managed, (buffet__cu_attr)BUFFET__CU_ATTR_MANAGED_MEMORY,
                                           be->dev)))
        return buffet__cu_fail(be, e, "cuDeviceGetAttribute", BUFFET_OK);
    if (!uva || !map) {
        BUFFET__LOG(&be->log, BUFFET_LOG_ERROR, BUFFET_ERR_UNSUPPORTED,
                    "cuda: device %u (%s) lacks unified addressing or mapped host memory (copies need both)",
                    desc->device_index, caps->name);
        return BUFFET_ERR_UNSUPPORTED;
    }
    if ((e = (int)be->f.DevicePrimaryCtxRetain(&be->ctx, be->dev)) != BUFFET__CU_SUCCESS) {
        be->ctx = NULL;
        return buffet__cu_fail(be, e, "cuDevicePrimaryCtxRetain", BUFFET_OK);
    }
    if ((r = buffet__cu_enter(be)) != BUFFET_OK) return r;
    e = (int)be->f.StreamCreate(&be->stream, BUFFET__CU_STREAM_NON_BLOCKING);
    buffet__cu_leave(be);
    if (e != BUFFET__CU_SUCCESS) {
        be->stream = NULL;
        return buffet__cu_fail(be, e, "cuStreamCreate", BUFFET_OK);
    }
    be->type_count = managed ? 4 : 3;
    caps->type_count = be->type_count;
    caps->heap_count = 2;
    caps->type_props[BUFFET__CU_TYPE_DEVICE] = BUFFET_GPU_MEM_DEVICE_LOCAL;
    caps->type_props[BUFFET__CU_TYPE_UPLOAD] = BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT;
    caps->type_props[BUFFET__CU_TYPE_READBACK] =
        BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT | BUFFET_GPU_MEM_HOST_CACHED;
    caps->type_heap[BUFFET__CU_TYPE_UPLOAD] = caps->type_heap[BUFFET__CU_TYPE_READBACK] = 1;
    if (managed)
        caps->type_props[BUFFET__CU_TYPE_MANAGED] = BUFFET_GPU_MEM_DEVICE_LOCAL |
                                                    BUFFET_GPU_MEM_HOST_VISIBLE |
                                                    BUFFET_GPU_MEM_HOST_COHERENT | BUFFET_GPU_MEM_MANAGED;
    caps->heap_size[0] = total;
    caps->heap_size[1] = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    caps->heap_device_local[0] = 1;
    caps->align = BUFFET__CU_ALIGN;
    caps->atom = 1;
    caps->max_alloc = total;
    caps->can_pin = 1;
    BUFFET__LOG(&be->log, BUFFET_LOG_INFO, BUFFET_OK, "cuda: device %u: %s, %llu MiB, driver %d.%d%s",
                desc->device_index, caps->name, (unsigned long long)(total >> 20), version / 1000,
                version % 1000 / 10, managed ? ", managed memory" : "");
    return BUFFET_OK;
}

static void buffet__cu_close(void *bev);

static buffet_result buffet__cu_open(void **out, const buffet_gpu_device_desc *desc, buffet__gpu_caps *caps,
                                     buffet_logger log) {
    buffet__cu *be;
    buffet_result r;
    *out = NULL;
    be = BUFFET_NEW(desc->allocator, buffet__cu);
    if (!be) {
        BUFFET__LOG(&log, BUFFET_LOG_ERROR, BUFFET_ERR_NOMEM, "cuda: no memory for the backend's state");
        return BUFFET_ERR_NOMEM;
    }
    memset(be, 0, sizeof *be);
    be->alloc = desc->allocator;
    be->log = log;
    pthread_mutex_init(&be->mu, NULL);
    r = buffet__cu_load(be, desc->library ? desc->library : "libcuda.so.1");
    if (r == BUFFET_OK) r = buffet__cu_start(be, desc, caps);
    if (r != BUFFET_OK) {
        if (be->ctx) buffet__cu_close(be);
        else buffet__cu_free_state(be);
        return r;
    }
    *out = be;
    return BUFFET_OK;
}

/* Wait for the stream, destroy the events and the stream, release the context. Also the undo of
   a failed open (be->ctx set). After a loss the calls fail; the context's release reclaims. */
static void buffet__cu_close(void *bev) {
    buffet__cu *be = (buffet__cu *)bev;
    size_t i;
    int e;
    if (!be) return;
    if ((int)be->f.CtxPushCurrent(be->ctx) == BUFFET__CU_SUCCESS) {
        if (be->stream && !BUFFET__LOAD(&be->lost, BUFFET__RELAXED) &&
            (e = (int)be->f.StreamSynchronize(be->stream)) != 0)
            (void)buffet__cu_fail(be, e, "cuStreamSynchronize (closing)", BUFFET_OK);
        for (i = 0; i < be->nevents; i++) (void)be->f.EventDestroy(be->evs[i].ev);
        if (be->stream) (void)be->f.StreamDestroy(be->stream);
        buffet__cu_leave(be);
    }
    if ((e = (int)be->f.DevicePrimaryCtxRelease(be->dev)) != BUFFET__CU_SUCCESS)
        (void)buffet__cu_fail(be, e, "cuDevicePrimaryCtxRelease", BUFFET_OK);
    buffet__cu_free_state(be);
}

static buffet_result buffet__cu_mem_alloc(void *bev, buffet__gpu_mem *m) {
    buffet__cu *be = (buffet__cu *)bev;
    buffet__cu_ptr d = 0;
    void *h = NULL;
    const char *what = "cuMemAlloc";
    char msg[96];
    int e;
    buffet_result r;
    if (m->type >= be->type_count || m->size == 0 || (uint64_t)(size_t)m->size != m->size)
        return BUFFET_ERR_INVALID;
    if ((r = buffet__cu_enter(be)) != BUFFET_OK) return r;
    switch (m->type) {
    case BUFFET__CU_TYPE_DEVICE:
        e = (int)be->f.MemAlloc(&d, (size_t)m->size);
        break;
    case BUFFET__CU_TYPE_MANAGED:
        what = "cuMemAllocManaged";
        e = (int)be->f.MemAllocManaged(&d, (size_t)m->size, BUFFET__CU_MEM_ATTACH_GLOBAL);
        h = (void *)(uintptr_t)d;
        break;
    default:
        what = "cuMemHostAlloc";
        e = (int)be->f.MemHostAlloc(
            &h, (size_t)m->size,
            BUFFET__CU_HOSTALLOC_PORTABLE | BUFFET__CU_HOSTALLOC_DEVICEMAP |
                (m->type == BUFFET__CU_TYPE_UPLOAD ? BUFFET__CU_HOSTALLOC_WRITECOMBINED : 0u));
        /* write-combined memory's device address may differ from its host address: ask */
        if (e == BUFFET__CU_SUCCESS &&
            (e = (int)be->f.MemHostGetDevicePointer(&d, h, 0)) != BUFFET__CU_SUCCESS) {
            what = "cuMemHostGetDevicePointer";
            (void)be->f.MemFreeHost(h);
        }
        break;
    }
    buffet__cu_leave(be);
    if (e != BUFFET__CU_SUCCESS) {
        snprintf(msg, sizeof msg, "%s of %llu bytes (memory type %u)", what, (unsigned long long)m->size,
                 m->type);
        return buffet__cu_fail(be, e, msg, BUFFET_OK);
    }
    m->pinned = 0;
    m->host = h;
    m->memory = m->address = (uint64_t)d;
    m->buffer = 0;
    return BUFFET_OK;
}

static void buffet__cu_mem_free(void *bev, buffet__gpu_mem *m) {
    buffet__cu *be = (buffet__cu *)bev;
    int e;
    if (!m->memory || buffet__cu_enter(be) != BUFFET_OK) return; /* lost: the context's release reclaims it */
    if (m->type == BUFFET__CU_TYPE_UPLOAD || m->type == BUFFET__CU_TYPE_READBACK)
        e = (int)be->f.MemFreeHost(m->host);
    else e = (int)be->f.MemFree((buffet__cu_ptr)m->memory);
    buffet__cu_leave(be);
    if (e != BUFFET__CU_SUCCESS) (void)buffet__cu_fail(be, e, "freeing device memory", BUFFET_OK);
    m->memory = m->address = 0;
    m->host = NULL;
}

/* Every memory type here is coherent (atom 1): nothing to flush or invalidate. */
static buffet_result buffet__cu_flush(void *bev, const buffet__gpu_mem *m, uint64_t off, uint64_t size,
                                      int invalidate) {
    (void)m, (void)off, (void)size, (void)invalidate;
    return buffet__cu_lost((buffet__cu *)bev);
}

static buffet_result buffet__cu_copy(void *bev, const buffet__gpu_mem *src, uint64_t src_off,
                                     const buffet__gpu_mem *dst, uint64_t dst_off, uint64_t size) {
    buffet__cu *be = (buffet__cu *)bev;
    buffet__cu_xfer *c;
    void *p;
    if (buffet__cu_lost(be)) return BUFFET_ERR_DEVICE_LOST;
    if (size == 0) return BUFFET_OK;
    if ((uint64_t)(size_t)size != size || src_off > src->size || size > src->size - src_off ||
        dst_off > dst->size || size > dst->size - dst_off)
        return BUFFET_ERR_RANGE;
    if (!(p = buffet__cu_grow(be, be->batch, &be->capbatch, be->nbatch, be->nbatch + 1, sizeof *be->batch))) {
        BUFFET__LOG(&be->log, BUFFET_LOG_ERROR, BUFFET_ERR_NOMEM, "cuda: no memory to record a copy");
        return BUFFET_ERR_NOMEM;
    }
    be->batch = (buffet__cu_xfer *)p;
    c = &be->batch[be->nbatch++];
    c->dst = (buffet__cu_ptr)(dst->address + dst_off);
    c->src = (buffet__cu_ptr)(src->address + src_off);
    c->size = (size_t)size;
    return BUFFET_OK;
}

/* Under mu: an event for a new ticket: from the pool (one no waiter sleeps on), else a new one.
   Returns its index, or -1 with *e the driver's error (0: out of memory). */
static long buffet__cu_take_event(buffet__cu *be, int *e) {
    size_t i;
    void *p;
    buffet__cu_event ev;
    *e = 0;
    for (i = be->npool; i-- > 0;)
        if (be->evs[be->pool[i]].users == 0) {
            uint32_t k = be->pool[i];
            be->pool[i] = be->pool[--be->npool];
            return (long)k;
        }
    if (be->nevents >= UINT32_MAX) return -1;
    if (!(p = buffet__cu_grow(be, be->evs, &be->capevs, be->nevents, be->nevents + 1, sizeof *be->evs)))
        return -1;
    be->evs = (buffet__cu_ev *)p;
    if (!(p = buffet__cu_grow(be, be->pool, &be->cappool, be->npool, be->nevents + 1, sizeof *be->pool)))
        return -1;
    be->pool = (uint32_t *)p;
    if ((*e = (int)be->f.EventCreate(&ev,
                                     BUFFET__CU_EVENT_DISABLE_TIMING | BUFFET__CU_EVENT_BLOCKING_SYNC)) != 0)
        return -1;
    be->evs[be->nevents].ev = ev;
    be->evs[be->nevents].users = 0;
    return (long)be->nevents++;
}

/* Issue the recorded copies on the stream, then record an event for t behind them. On an error
   the batch is dropped (copies before the failing one may still run) and t is not recorded. */
static buffet_result buffet__cu_submit(void *bev, uint64_t t) {
    buffet__cu *be = (buffet__cu *)bev;
    const char *what = "cuMemcpyAsync";
    buffet_result r;
    long k = -1;
    size_t i;
    int e = 0;
    if ((r = buffet__cu_enter(be)) != BUFFET_OK) {
        be->nbatch = 0;
        return r;
    }
    for (i = 0; i < be->nbatch && e == BUFFET__CU_SUCCESS; i++)
        e = (int)be->f.MemcpyAsync(be->batch[i].dst, be->batch[i].src, be->batch[i].size, be->stream);
    be->nbatch = 0;
    if (e != BUFFET__CU_SUCCESS) {
        buffet__cu_leave(be);
        return buffet__cu_fail(be, e, what, BUFFET_OK);
    }
    pthread_mutex_lock(&be->mu);
    what = "cuEventCreate";
    if ((k = buffet__cu_take_event(be, &e)) < 0 && e == 0) r = BUFFET_ERR_NOMEM;
    if (k >= 0 && be->fcount == be->fcap) {
        /* the ring is full: a larger one, in order from 0 */
        size_t ncap = be->fcap ? be->fcap * 2 : 16;
        buffet__cu_flight *nf = (buffet__cu_flight *)buffet_alloc(be->alloc, ncap * sizeof *nf,
                                                                  BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
        if (!nf) r = BUFFET_ERR_NOMEM;
        else {
            for (i = 0; i < be->fcount; i++) nf[i] = be->flight[(be->fhead + i) % be->fcap];
            if (be->flight)
                buffet_free(be->alloc, be->flight, be->fcap * sizeof *nf, BUFFET_DEFAULT_ALIGN, BUFFET_SITE);
            be->flight = nf, be->fcap = ncap, be->fhead = 0;
        }
    }
    if (k >= 0 && r == BUFFET_OK) {
        what = "cuEventRecord";
        if ((e = (int)be->f.EventRecord(be->evs[k].ev, be->stream)) == BUFFET__CU_SUCCESS) {
            buffet__cu_flight *f = &be->flight[(be->fhead + be->fcount++) % be->fcap];
            f->ticket = t;
            f->ev = (uint32_t)k;
            be->submitted = t;
            k = -1;
        }
    }
    if (k >= 0) be->pool[be->npool++] = (uint32_t)k;   /* unused: back (the pool has room for all) */
    pthread_mutex_unlock(&be->mu);
    buffet__cu_leave(be);
    if (r != BUFFET_OK) {
        BUFFET__LOG(&be->log, BUFFET_LOG_ERROR, r, "cuda: no memory to track ticket %llu",
                    (unsigned long long)t);
        return r;
    }
    return e != BUFFET__CU_SUCCESS ? buffet__cu_fail(be, e, what, BUFFET_OK) : BUFFET_OK;
}

/* Under mu: retire the oldest in-flight tickets that completed (the stream runs in order, so the
   first not ready ends the scan). Returns the driver's error when a query failed, else 0. */
static int buffet__cu_poll(buffet__cu *be) {
    while (be->fcount) {
        buffet__cu_flight *f = &be->flight[be->fhead];
        int e = f->ticket <= be->completed ? 0 : (int)be->f.EventQuery(be->evs[f->ev].ev);
        if (e == BUFFET__CU_ERR_NOT_READY) return 0;
        if (e != BUFFET__CU_SUCCESS) return e;
        if (f->ticket > be->completed) be->completed = f->ticket;
        be->pool[be->npool++] = f->ev;
        be->fhead = (be->fhead + 1) % be->fcap;
        be->fcount--;
    }
    return 0;
}

static uint64_t buffet__cu_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Poll the events in order; without a limit, sleep in cuEventSynchronize on the first event at
   or past t (counted in its users, so that no submit re-records it meanwhile); with one, poll
   with sleeps that grow from 10 us to 1 ms, never past the deadline. */
static buffet_result buffet__cu_wait(void *bev, uint64_t t, uint64_t timeout_ns) {
    buffet__cu *be = (buffet__cu *)bev;
    uint64_t start = 0, nap = 10000;
    buffet_result r;
    int e;
    if (t == 0) return BUFFET_OK;
    if ((r = buffet__cu_enter(be)) != BUFFET_OK) return r;
    pthread_mutex_lock(&be->mu);
    if (t > be->submitted) {
        pthread_mutex_unlock(&be->mu);
        buffet__cu_leave(be);
        return BUFFET_ERR_INVALID;
    }
    for (;;) {
        uint64_t now, left;
        struct timespec ts;
        if ((e = buffet__cu_poll(be)) != 0) break;
        if (be->completed >= t) break;
        if (timeout_ns == UINT64_MAX) {
            size_t i = 0;
            buffet__cu_flight f;
            buffet__cu_event ev;
            while (be->flight[(be->fhead + i) % be->fcap].ticket < t)
                i++; /* t was submitted: one is at or past it */
            f = be->flight[(be->fhead + i) % be->fcap];
            ev = be->evs[f.ev].ev;   /* the handle: evs may grow meanwhile */
            be->evs[f.ev].users++;
            pthread_mutex_unlock(&be->mu);
            e = (int)be->f.EventSynchronize(ev);
            pthread_mutex_lock(&be->mu);
            be->evs[f.ev].users--;
            if (e != BUFFET__CU_SUCCESS) break;
            if (f.ticket > be->completed) be->completed = f.ticket;
            continue;   /* the poll retires what this completed */
        }
        now = buffet__cu_now_ns();
        if (!start) start = now;
        if (now - start >= timeout_ns) {
            pthread_mutex_unlock(&be->mu);
            buffet__cu_leave(be);
            return BUFFET_AGAIN;
        }
        pthread_mutex_unlock(&be->mu);
        left = timeout_ns - (now - start);
        if (nap > left) nap = left;
        ts.tv_sec = (time_t)(nap / 1000000000u);
        ts.tv_nsec = (long)(nap % 1000000000u);
        nanosleep(&ts, NULL);
        if (nap < 1000000) nap *= 2;
        pthread_mutex_lock(&be->mu);
    }
    pthread_mutex_unlock(&be->mu);
    buffet__cu_leave(be);
    if (e != BUFFET__CU_SUCCESS)
        return buffet__cu_fail(be, e, "waiting for a ticket (cuEventQuery/Synchronize)", BUFFET_OK);
    return BUFFET_OK;
}

static buffet_result buffet__cu_pin(void *bev, void *p, uint64_t size, buffet__gpu_mem *m) {
    buffet__cu *be = (buffet__cu *)bev;
    buffet__cu_ptr d = 0;
    const char *what = "cuMemHostRegister";
    buffet_result r;
    int e;
    if (!p || size == 0 || (uint64_t)(size_t)size != size) return BUFFET_ERR_INVALID;
    if ((r = buffet__cu_enter(be)) != BUFFET_OK) return r;
    e = (int)be->f.MemHostRegister(p, (size_t)size,
                                   BUFFET__CU_HOSTREGISTER_PORTABLE | BUFFET__CU_HOSTREGISTER_DEVICEMAP);
    if (e == BUFFET__CU_SUCCESS && (e = (int)be->f.MemHostGetDevicePointer(&d, p, 0)) != BUFFET__CU_SUCCESS) {
        what = "cuMemHostGetDevicePointer";
        (void)be->f.MemHostUnregister(p);
    }
    buffet__cu_leave(be);
    if (e != BUFFET__CU_SUCCESS) return buffet__cu_fail(be, e, what, BUFFET_OK);
    m->size = size;
    m->type = BUFFET__CU_TYPE_READBACK;   /* pageable memory, cached and coherent, as that type */
    m->pinned = 1;
    m->host = p;
    m->memory = m->address = (uint64_t)d;
    m->buffer = 0;
    return BUFFET_OK;
}

static void buffet__cu_unpin(void *bev, buffet__gpu_mem *m) {
    buffet__cu *be = (buffet__cu *)bev;
    int e;
    if (!m->host || buffet__cu_enter(be) != BUFFET_OK) return;
    e = (int)be->f.MemHostUnregister(m->host);
    buffet__cu_leave(be);
    if (e != BUFFET__CU_SUCCESS) (void)buffet__cu_fail(be, e, "cuMemHostUnregister", BUFFET_OK);
    m->host = NULL;
    m->memory = m->address = 0;
}

/* Heap 0: cuMemGetInfo (device-wide: the driver does not tell this process's share); the budget
   is the total, so budget - usage is what is free. Heap 1 (host): none. */
static void buffet__cu_heap_budget(void *bev, uint32_t h, uint64_t *usage, uint64_t *budget) {
    buffet__cu *be = (buffet__cu *)bev;
    size_t fr = 0, total = 0;
    int e;
    *usage = *budget = 0;
    if (h != 0 || buffet__cu_enter(be) != BUFFET_OK) return;
    e = (int)be->f.MemGetInfo(&fr, &total);
    buffet__cu_leave(be);
    if (e != BUFFET__CU_SUCCESS) {
        (void)buffet__cu_fail(be, e, "cuMemGetInfo", BUFFET_OK);
        return;
    }
    *usage = total - fr;
    *budget = total;
}

static const buffet__gpu_ops buffet__gpu_cuda_ops = {"cuda",
                                                     buffet__cu_open,
                                                     buffet__cu_close,
                                                     buffet__cu_mem_alloc,
                                                     buffet__cu_mem_free,
                                                     buffet__cu_flush,
                                                     buffet__cu_copy,
                                                     buffet__cu_submit,
                                                     buffet__cu_wait,
                                                     buffet__cu_pin,
                                                     buffet__cu_unpin,
                                                     buffet__cu_heap_budget,
                                                     NULL,
                                                     NULL};
/* >>cuda backend end */

/* >>devices
   The bookkeeping every backend shares: memory types chosen by intent, blocks suballocated by
   vblocks (dedicated memory for large buffers), a staging ring for uploads, per-frame rings,
   tickets, statistics. One mutex guards it; the backends are called under it, but for waits. */
#define BUFFET__GPU_MAGIC 0x42475055u           /* "BGPU": a record of a live GPU buffer */
#define BUFFET__GPU_PINNED_MAGIC 0x4250494Eu    /* "BPIN" */
#define BUFFET__GPU_MAX_FRAMES 16
#define BUFFET__GPU_INTENTS 5                   /* intents are 1..4 */
#define BUFFET__GPU_SPARE 64                    /* buffer records a device keeps for reuse */

typedef struct buffet__gpu_block {
    buffet__gpu_mem mem;
    buffet_gpu_vblock *vb;                      /* NULL: dedicated to one buffer */
    struct buffet__gpu_block *next, *prev;      /* the type's blocks */
    uint32_t live;                              /* buffers in it */
    bool kept;                                  /* empty, kept for reuse (counted in empty[]) */
} buffet__gpu_block;

/* A GPU or pinned buffer: the buffet_buf first, so the buffer is the record. */
typedef struct buffet__gpu_rec {
    buffet_buf buf;
    uint32_t magic;
    buffet_gpu_device *dev;
    buffet__gpu_block *block;                   /* GPU: where it lives */
    buffet_gpu_valloc handle;                   /* GPU in a shared block: its vblock handle */
    buffet__gpu_mem pinned;                     /* PINNED: the registration */
    buffet_buf *host;                           /* PINNED: the host buffer, referenced */
    uint64_t offset;                            /* in block (GPU) or in the pinned range */
    buffet_site site;
    const char *name;
    struct buffet__gpu_rec *next, *prev;        /* live records (the leak report), or deferred ones */
    uint64_t after;                             /* deferred: its memory is freed once this completes */
    struct buffet__gpu_rec *pin_next, *pin_prev;   /* PINNED: the device's registrations, by which
                                                   any slice inside one is read directly */
    bool device_owned;                          /* PINNED by buffet_gpu_pin_memory: the device's */
} buffet__gpu_rec;

typedef struct buffet__gpu_frame {
    uint64_t ticket;                            /* the frame's memory is free once this completes */
    uint64_t charged;                           /* bytes charged to the budget */
    buffet_gpu_ring_mark marks[BUFFET__GPU_INTENTS];
} buffet__gpu_frame;

struct buffet_gpu_device {
    const buffet__gpu_ops *ops;
    void *be;
    buffet__gpu_caps caps;
    buffet_gpu_backend backend;
    buffet_allocator allocator;
    buffet_logger log;
    char name[32];
    pthread_mutex_t mu;
    uint64_t block_size, dedicated_size, staging_size, frame_size, limit;
    uint32_t frames_in_flight, max_empty;
    buffet_budget *budget;
    uint64_t frame_charge;                      /* charged to budget in the current frame */
    int type_for[BUFFET__GPU_INTENTS];          /* chosen memory type; -1: none serves */
    buffet__gpu_block *blocks[BUFFET_GPU_MAX_TYPES];
    uint32_t empty[BUFFET_GPU_MAX_TYPES];       /* empty shared blocks kept */
    uint64_t taken;                             /* bytes of device memory held */
    buffet__gpu_rec *live;
    buffet__gpu_rec *deferred, *deferred_tail;  /* released while transfers were in flight, oldest first */
    buffet__gpu_rec *pins;                      /* live registrations of host memory */
    buffet__gpu_rec *spare, *spare_tail;        /* records kept for reuse, oldest first: no allocator
                                                   call per buffer, and a released record is reused
                                                   last, so a second release of it is seen */
    uint32_t nspare;
    uint64_t submitted;                         /* the last ticket handed out (under mu) */
    uint64_t completed;                         /* atomic: every ticket up to it has completed */
    bool recorded;                              /* copies recorded since the last submit */
    bool lost;
    /* staging: uploads gather into it; each submitted range is released by its ticket */
    bool staging_ready;
    buffet__gpu_mem staging;
    buffet_gpu_ring staging_ring;
    struct { uint64_t ticket; buffet_gpu_ring_mark mark; } pending[BUFFET_GPU_RING_MARKS];
    uint32_t pending_head, pending_count;
    /* frames */
    bool frame_ready[BUFFET__GPU_INTENTS];
    buffet__gpu_mem frame_mem[BUFFET__GPU_INTENTS];
    buffet_gpu_ring frame_ring[BUFFET__GPU_INTENTS];
    buffet__gpu_frame frames[BUFFET__GPU_MAX_FRAMES];
    uint64_t frames_begun, frames_ended;
    bool in_frame;
    buffet_gpu_stats stats;                     /* the counters; the rest is computed on demand */
};

static void buffet__gpu_count(uint64_t *c) { *c += *c != UINT64_MAX; }

/* How well memory type props serves an intent: < 0 not at all; higher is better. Required:
   host access for every intent but device-local; then what each wants most. */
static int buffet__gpu_score(uint32_t props, buffet_gpu_intent intent) {
    bool dl = props & BUFFET_GPU_MEM_DEVICE_LOCAL, hv = props & BUFFET_GPU_MEM_HOST_VISIBLE;
    bool coh = props & BUFFET_GPU_MEM_HOST_COHERENT, cached = props & BUFFET_GPU_MEM_HOST_CACHED;
    if (!props) return -1;
    switch (intent) {
    case BUFFET_GPU_DEVICE_LOCAL: return (dl ? 16 : 1) + (hv ? 0 : 2);   /* keep the BAR for uploads */
    case BUFFET_GPU_UPLOAD: /* write-combined host memory; device-local only where all is */
        return hv ? 4 + (coh ? 4 : 0) + (cached ? 0 : 2) + (dl ? 0 : 1) : -1;
    case BUFFET_GPU_READBACK: return hv ? 4 + (cached ? 8 : 0) + (coh ? 2 : 0) + (dl ? 0 : 1) : -1;
    case BUFFET_GPU_SHARED:
        return hv ? 4 + (dl ? 8 : 0) + ((props & BUFFET_GPU_MEM_MANAGED) ? 4 : 0) + (coh ? 2 : 0) : -1;
    }
    return -1;
}

static const char *buffet__gpu_intent_name(buffet_gpu_intent i) {
    switch (i) {
    case BUFFET_GPU_DEVICE_LOCAL: return "device-local";
    case BUFFET_GPU_UPLOAD: return "upload";
    case BUFFET_GPU_READBACK: return "readback";
    case BUFFET_GPU_SHARED: return "shared";
    }
    return "unknown";
}

static bool buffet__gpu_intent_ok(buffet_gpu_intent i) {
    return i >= BUFFET_GPU_DEVICE_LOCAL && i <= BUFFET_GPU_SHARED;
}

static void buffet__gpu_choose_types(buffet_gpu_device *d) {
    int intent, best, score;
    uint32_t t;
    for (intent = 1; intent < BUFFET__GPU_INTENTS; intent++) {
        best = -1;
        score = -1;
        for (t = 0; t < d->caps.type_count; t++) {
            int s = buffet__gpu_score(d->caps.type_props[t], (buffet_gpu_intent)intent);
            if (s > score) score = s, best = (int)t;
        }
        d->type_for[intent] = best;
    }
}

static const buffet__gpu_ops *buffet__gpu_backend_ops(buffet_gpu_backend b) {
    switch (b) {
    case BUFFET_GPU_HOST: return &buffet__gpu_host_ops;
    case BUFFET_GPU_VULKAN: return &buffet__gpu_vulkan_ops;
    case BUFFET_GPU_CUDA: return &buffet__gpu_cuda_ops;
    case BUFFET_GPU_AUTO: break;
    }
    return NULL;
}

BUFFET_API buffet_result buffet_gpu_device_create(buffet_gpu_device **out, const buffet_gpu_device_desc *desc) {
    static const buffet_gpu_backend order[3] = {BUFFET_GPU_CUDA, BUFFET_GPU_VULKAN, BUFFET_GPU_HOST};
    buffet_gpu_device *d;
    buffet_result r = BUFFET_ERR_NO_DEVICE;
    void *p = NULL;
    int i;
    if (out) *out = NULL;
    if (!out || !desc) return BUFFET_ERR_INVALID;
    if ((int)desc->backend < BUFFET_GPU_AUTO || desc->backend > BUFFET_GPU_CUDA ||
        desc->frames_in_flight > BUFFET__GPU_MAX_FRAMES - 1 ||
        (desc->block_size && desc->block_size < 65536)) {
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "gpu device: bad desc (backend %d, frames_in_flight %u of at most %d, block_size %llu: "
                    "at least 64 KiB)", (int)desc->backend, desc->frames_in_flight, BUFFET__GPU_MAX_FRAMES - 1,
                    (unsigned long long)desc->block_size);
        return BUFFET_ERR_INVALID;
    }
    r = buffet_allocator_check(desc->allocator, BUFFET_NEED_UNTIL_FREED | BUFFET_NEED_THREAD_SAFE, "gpu device",
                               &desc->log);
    if (r != BUFFET_OK) return r;
    r = buffet_alloc_ex(desc->allocator, sizeof *d, 64, BUFFET_SITE, &p);
    if (r != BUFFET_OK) return r;
    d = (buffet_gpu_device *)p;
    memset(d, 0, sizeof *d);
    d->allocator = desc->allocator;
    d->log = desc->log;
    r = BUFFET_ERR_NO_DEVICE;
    for (i = 0; i < 3 && r != BUFFET_OK; i++) {
        buffet_gpu_backend b = desc->backend == BUFFET_GPU_AUTO ? order[i] : desc->backend;
        const buffet__gpu_ops *ops = buffet__gpu_backend_ops(b);
        if (!ops->open) {
            BUFFET__LOG(&desc->log, desc->backend == BUFFET_GPU_AUTO ? BUFFET_LOG_DEBUG : BUFFET_LOG_ERROR,
                        BUFFET_ERR_NO_DEVICE, "gpu device: the %s backend is not built in", ops->name);
            r = BUFFET_ERR_NO_DEVICE;
        } else {
            memset(&d->caps, 0, sizeof d->caps);
            r = ops->open(&d->be, desc, &d->caps, desc->log);
        }
        if (r == BUFFET_OK) d->ops = ops, d->backend = b;
        if (desc->backend != BUFFET_GPU_AUTO) break;
    }
    if (r != BUFFET_OK) {
        buffet_free(desc->allocator, d, sizeof *d, 64, BUFFET_SITE);
        return r;
    }
    buffet__gpu_copy_name(d->name, sizeof d->name, desc->name, d->ops->name);
    if (d->caps.type_count > BUFFET_GPU_MAX_TYPES) d->caps.type_count = BUFFET_GPU_MAX_TYPES;
    if (d->caps.align == 0 || (d->caps.align & (d->caps.align - 1))) d->caps.align = 256;
    if (d->caps.atom == 0 || (d->caps.atom & (d->caps.atom - 1))) d->caps.atom = 256;
    if (!d->caps.max_alloc) d->caps.max_alloc = UINT64_MAX;
    d->block_size = desc->block_size ? desc->block_size : (uint64_t)64 << 20;
    d->block_size = (d->block_size + d->caps.align - 1) & ~(d->caps.align - 1);
    if (d->block_size > d->caps.max_alloc) d->block_size = d->caps.max_alloc & ~(d->caps.align - 1);
    d->dedicated_size = desc->dedicated_size ? desc->dedicated_size : d->block_size / 2;
    if (d->dedicated_size > d->block_size) d->dedicated_size = d->block_size;
    d->staging_size = ((desc->staging_size ? desc->staging_size : (uint64_t)16 << 20) + 65535) & ~(uint64_t)65535;
    d->frame_size = ((desc->frame_size ? desc->frame_size : (uint64_t)8 << 20) + 65535) & ~(uint64_t)65535;
    d->frames_in_flight = desc->frames_in_flight ? desc->frames_in_flight : 2;
    d->max_empty = desc->max_empty_blocks == 0 ? 1 : desc->max_empty_blocks == UINT32_MAX ? 0 : desc->max_empty_blocks;
    d->limit = desc->limit;
    d->budget = desc->budget;
    buffet__gpu_choose_types(d);
    pthread_mutex_init(&d->mu, NULL);
    BUFFET__LOG(&d->log, BUFFET_LOG_INFO, BUFFET_OK, "gpu device %s: backend %s, device \"%s\", %u memory types",
                d->name, d->ops->name, d->caps.name, d->caps.type_count);
    *out = d;
    return BUFFET_OK;
}

/* A device allocation of size bytes of type t, within the limits. Under mu. */
static buffet_result buffet__gpu_mem_get(buffet_gpu_device *d, uint32_t t, uint64_t size, buffet__gpu_mem *m) {
    uint32_t heap = d->caps.type_heap[t];
    uint64_t usage = 0, budget = 0;
    buffet_result r;
    if (BUFFET__LOAD(&d->lost, BUFFET__RELAXED)) return BUFFET_ERR_DEVICE_LOST;
    if (size > d->caps.max_alloc) return BUFFET_ERR_TOO_LARGE;
    if (d->limit && (size > d->limit || d->taken > d->limit - size)) {
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, BUFFET_ERR_BUDGET, "gpu device %s: %llu more bytes would pass the "
                    "limit of %llu (%llu held)", d->name, (unsigned long long)size, (unsigned long long)d->limit,
                    (unsigned long long)d->taken);
        return BUFFET_ERR_BUDGET;
    }
    d->ops->heap_budget(d->be, heap, &usage, &budget);
    if (budget && (size > budget || usage > budget - size)) {
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, BUFFET_ERR_BUDGET, "gpu device %s: heap %u's budget is %llu bytes, "
                    "%llu in use: %llu more refused", d->name, heap, (unsigned long long)budget,
                    (unsigned long long)usage, (unsigned long long)size);
        return BUFFET_ERR_BUDGET;
    }
    memset(m, 0, sizeof *m);
    m->size = size;
    m->type = t;
    r = d->ops->mem_alloc(d->be, m);
    if (r == BUFFET_ERR_DEVICE_LOST) BUFFET__STORE(&d->lost, true, BUFFET__RELAXED);
    if (r != BUFFET_OK) {
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, r, "gpu device %s: %llu bytes of memory type %u refused by the driver",
                    d->name, (unsigned long long)size, t);
        return r;
    }
    d->taken += size;
    buffet__gpu_count(&d->stats.device_allocations);
    return BUFFET_OK;
}

static void buffet__gpu_mem_put(buffet_gpu_device *d, buffet__gpu_mem *m) {
    d->ops->mem_free(d->be, m);
    d->taken -= m->size;
}

static void buffet__gpu_block_unlink(buffet_gpu_device *d, buffet__gpu_block *b) {
    if (b->prev) b->prev->next = b->next;
    else d->blocks[b->mem.type] = b->next;
    if (b->next) b->next->prev = b->prev;
}

static void buffet__gpu_block_drop(buffet_gpu_device *d, buffet__gpu_block *b) {
    buffet__gpu_block_unlink(d, b);
    if (b->vb) buffet_gpu_vblock_destroy(b->vb);
    buffet__gpu_mem_put(d, &b->mem);
    buffet_free(d->allocator, b, sizeof *b, 8, BUFFET_SITE);
}

/* A block of type t (shared when vb, else dedicated), at the front of the type's list. */
static buffet_result buffet__gpu_block_new(buffet_gpu_device *d, uint32_t t, uint64_t size, bool shared,
                                           buffet__gpu_block **out) {
    buffet__gpu_block *b;
    buffet_result r;
    void *p = NULL;
    r = buffet_alloc_ex(d->allocator, sizeof *b, 8, BUFFET_SITE, &p);
    if (r != BUFFET_OK) return r;
    b = (buffet__gpu_block *)p;
    memset(b, 0, sizeof *b);
    r = buffet__gpu_mem_get(d, t, size, &b->mem);
    if (r == BUFFET_OK && shared) {
        buffet_gpu_vblock_desc vd;
        memset(&vd, 0, sizeof vd);
        vd.size = size;
        vd.min_align = d->caps.align;
        vd.allocator = d->allocator;
        vd.log = d->log;
        vd.name = d->name;
        r = buffet_gpu_vblock_create(&b->vb, &vd);
        if (r != BUFFET_OK) buffet__gpu_mem_put(d, &b->mem);
    }
    if (r != BUFFET_OK) {
        buffet_free(d->allocator, b, sizeof *b, 8, BUFFET_SITE);
        return r;
    }
    b->next = d->blocks[t];
    if (b->next) b->next->prev = b;
    d->blocks[t] = b;
    *out = b;
    return BUFFET_OK;
}

static void buffet__gpu_link(buffet_gpu_device *d, buffet__gpu_rec *rec) {
    rec->prev = NULL;
    rec->next = d->live;
    if (d->live) d->live->prev = rec;
    d->live = rec;
}

static void buffet__gpu_unlink(buffet_gpu_device *d, buffet__gpu_rec *rec) {
    if (rec->prev) rec->prev->next = rec->next;
    else d->live = rec->next;
    if (rec->next) rec->next->prev = rec->prev;
}

/* Give a GPU buffer's memory back. Under mu. An emptied shared block is kept for reuse up to
   max_empty per type; past that (or dedicated) its memory goes back to the driver. */
static void buffet__gpu_release_mem(buffet_gpu_device *d, buffet__gpu_rec *rec) {
    buffet__gpu_block *b = rec->block;
    uint32_t t = b->mem.type;
    if (!b->vb) {
        buffet__gpu_block_drop(d, b);
        return;
    }
    buffet_gpu_vblock_free(b->vb, rec->handle);
    if (--b->live == 0) {
        if (d->empty[t] >= d->max_empty) buffet__gpu_block_drop(d, b);
        else b->kept = true, d->empty[t]++;
    }
}

static buffet_result buffet__gpu_wait(buffet_gpu_device *d, uint64_t t, uint64_t timeout_ns);

/* Free a released record's memory (its range, or its registration) now. Under mu. */
static void buffet__gpu_rec_finish(buffet_gpu_device *d, buffet__gpu_rec *rec) {
    if (rec->buf.kind == BUFFET_BUF_GPU) buffet__gpu_release_mem(d, rec);
    else d->ops->unpin(d->be, &rec->pinned);
}

/* Has ticket t completed? A poll; a lost device runs nothing more, so its tickets count as done. */
static bool buffet__gpu_done(buffet_gpu_device *d, uint64_t t) {
    return buffet__gpu_wait(d, t, 0) != BUFFET_AGAIN;
}

/* Deferred records whose transfers have completed (all: every one, the device being idle) get
   their memory freed; they are returned as a list for buffet__gpu_free_recs, outside mu. */
static buffet__gpu_rec *buffet__gpu_reap(buffet_gpu_device *d, bool all) {
    buffet__gpu_rec *out = NULL, *rec;
    while ((rec = d->deferred) != NULL && (all || buffet__gpu_done(d, rec->after))) {
        d->deferred = rec->next;
        if (!d->deferred) d->deferred_tail = NULL;
        buffet__gpu_rec_finish(d, rec);
        rec->next = out;
        out = rec;
    }
    return out;
}

/* Queue a released record for reuse, at the back. Under mu. Returns: false when the spares are full. */
static bool buffet__gpu_spare_put(buffet_gpu_device *d, buffet__gpu_rec *rec) {
    if (d->nspare >= BUFFET__GPU_SPARE) return false;
    rec->next = NULL;
    if (d->spare_tail) d->spare_tail->next = rec;
    else d->spare = rec;
    d->spare_tail = rec;
    d->nspare++;
    return true;
}

/* A record back to the spares, or to the allocator when they are full. Outside mu. */
static void buffet__gpu_rec_free(buffet_gpu_device *d, buffet__gpu_rec *rec) {
    pthread_mutex_lock(&d->mu);
    if (buffet__gpu_spare_put(d, rec)) rec = NULL;
    pthread_mutex_unlock(&d->mu);
    if (rec) buffet_free(d->allocator, rec, sizeof *rec, 64, BUFFET_SITE);
}

static void buffet__gpu_free_recs(buffet_gpu_device *d, buffet__gpu_rec *list) {
    while (list) {
        buffet__gpu_rec *next = list->next;
        buffet_buf *host = list->host;
        buffet__gpu_rec_free(d, list);
        buffet_buf_unref(host);     /* a pinned buffer's host buffer: it may be the last reference */
        list = next;
    }
}

/* The last reference went (any thread). buffet's own transfers may still read or write the
   memory (an async upload, a copy whose ticket nobody waited for): then the memory is kept
   until the transfers submitted so far have completed, so that neither a new buffer in the
   same range nor the driver's freeing of a block can race with them. */
static void buffet__gpu_buf_destroy(buffet_buf *buf) {
    buffet__gpu_rec *rec = (buffet__gpu_rec *)buf, *done;
    buffet_gpu_device *d = rec->dev;
    buffet_buf *host = NULL;
    pthread_mutex_lock(&d->mu);
    if (rec->magic == 0) {
        /* released already: the record waits among the spares (or deferred), its magic cleared;
           buffet_buf_unref calls destroy again for a count still at 1. Refused, counted. */
        buffet__gpu_count(&d->stats.double_frees);
        pthread_mutex_unlock(&d->mu);
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE, "gpu device %s: a GPU buffer released "
                    "twice (refused; made at %s)", d->name, rec->site.where ? rec->site.where : "?");
        return;
    }
    rec->magic = 0;
    buffet__gpu_unlink(d, rec);
    rec->next = NULL;
    if (rec->buf.kind == BUFFET_BUF_GPU_PINNED) {   /* no new transfer reads it from here on */
        if (rec->pin_prev) rec->pin_prev->pin_next = rec->pin_next;
        else d->pins = rec->pin_next;
        if (rec->pin_next) rec->pin_next->pin_prev = rec->pin_prev;
    }
    if (d->submitted > BUFFET__LOAD(&d->completed, BUFFET__ACQUIRE) && !buffet__gpu_done(d, d->submitted)) {
        rec->after = d->submitted;
        if (d->deferred_tail) d->deferred_tail->next = rec;
        else d->deferred = rec;
        d->deferred_tail = rec;
        rec = NULL;
    } else {
        buffet__gpu_rec_finish(d, rec);
        host = rec->host;
        if (buffet__gpu_spare_put(d, rec)) rec = NULL;
    }
    done = buffet__gpu_reap(d, false);
    pthread_mutex_unlock(&d->mu);
    if (rec) buffet_free(d->allocator, rec, sizeof *rec, 64, BUFFET_SITE);
    buffet_buf_unref(host);
    buffet__gpu_free_recs(d, done);
}

/* A record for a new buffer: a spare one, else one from the device's allocator. Under mu, which
   is let go while the allocator runs (it may be slow, or take locks of its own), so that a
   create with spares waiting takes mu once. */
static buffet__gpu_rec *buffet__gpu_rec_new(buffet_gpu_device *d, uint32_t kind, buffet_site site,
                                            buffet_result *r) {
    void *p = NULL;
    buffet__gpu_rec *rec;
    *r = BUFFET_OK;
    if ((rec = d->spare) != NULL) {
        d->spare = rec->next;
        if (!d->spare) d->spare_tail = NULL;
        d->nspare--;
    } else {
        pthread_mutex_unlock(&d->mu);
        *r = buffet_alloc_ex(d->allocator, sizeof *rec, 64, site, &p);
        pthread_mutex_lock(&d->mu);
        if (*r != BUFFET_OK) return NULL;
        rec = (buffet__gpu_rec *)p;
    }
    memset(rec, 0, sizeof *rec);
    rec->buf.refcount = 1;
    rec->buf.kind = kind;
    rec->buf.fd = -1;
    rec->buf.destroy = buffet__gpu_buf_destroy;
    rec->buf.allocator = d->allocator;
    rec->buf.user = rec;
    rec->dev = d;
    rec->site = site;
    return rec;
}

BUFFET_API buffet_result buffet_gpu_buf_create_at(buffet_gpu_device *d, const buffet_gpu_buf_desc *desc,
                                                  buffet_buf **out, buffet_site site) {
    buffet__gpu_rec *rec, *done;
    buffet__gpu_block *b;
    buffet_result r;
    uint64_t align, size, off = 0;
    int type;
    if (out) *out = NULL;
    if (!d || !desc || !out) return BUFFET_ERR_INVALID;
    align = desc->align ? desc->align : d->caps.align;
    type = buffet__gpu_intent_ok(desc->intent) ? d->type_for[desc->intent] : -1;
    if (desc->size == 0 || (align & (align - 1)) || type < 0) {
        r = desc->size == 0 || (align & (align - 1)) || !buffet__gpu_intent_ok(desc->intent)
                ? BUFFET_ERR_INVALID : BUFFET_ERR_UNSUPPORTED;
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, r, "gpu device %s: buffer of %llu bytes, align %llu, intent %d "
                    "refused (size 0, align not a power of two, or no memory type serves the intent)", d->name,
                    (unsigned long long)desc->size, (unsigned long long)desc->align, (int)desc->intent);
        pthread_mutex_lock(&d->mu);
        buffet__gpu_count(&d->stats.failures);
        pthread_mutex_unlock(&d->mu);
        return r;
    }
    if (align < d->caps.align) align = d->caps.align;
    if (desc->size > d->caps.max_alloc || desc->size > SIZE_MAX || align > d->block_size) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_TOO_LARGE, "gpu device %s: %llu bytes (align %llu) is "
                    "more than the device allocates at once (%llu)", d->name, (unsigned long long)desc->size,
                    (unsigned long long)align, (unsigned long long)d->caps.max_alloc);
        pthread_mutex_lock(&d->mu);
        buffet__gpu_count(&d->stats.failures);
        pthread_mutex_unlock(&d->mu);
        return BUFFET_ERR_TOO_LARGE;
    }
    size = (desc->size + d->caps.align - 1) & ~(d->caps.align - 1);
    pthread_mutex_lock(&d->mu);
    rec = buffet__gpu_rec_new(d, BUFFET_BUF_GPU, site, &r);
    if (!rec) {
        pthread_mutex_unlock(&d->mu);
        return r;
    }
    done = buffet__gpu_reap(d, false);     /* memory released meanwhile is reused at once */
    r = BUFFET_ERR_EXHAUSTED;
    if (BUFFET__LOAD(&d->lost, BUFFET__RELAXED)) {   /* a lost device hands out nothing new */
        r = BUFFET_ERR_DEVICE_LOST;
    } else if (size >= d->dedicated_size) {
        r = buffet__gpu_block_new(d, (uint32_t)type, size, false, &b);
    } else {
        for (b = d->blocks[type]; b; b = b->next) {
            if (!b->vb) continue;
            r = buffet_gpu_vblock_alloc(b->vb, size, align, &off, &rec->handle);
            if (r == BUFFET_OK) break;
        }
        if (r != BUFFET_OK) {
            r = buffet__gpu_block_new(d, (uint32_t)type, d->block_size, true, &b);
            if (r == BUFFET_OK) r = buffet_gpu_vblock_alloc(b->vb, size, align, &off, &rec->handle);
        }
        if (r == BUFFET_OK && b->live++ == 0 && b->kept) b->kept = false, d->empty[type]--;
    }
    if (r != BUFFET_OK) {
        buffet__gpu_count(&d->stats.failures);
        pthread_mutex_unlock(&d->mu);
        buffet__gpu_free_recs(d, done);
        buffet__gpu_rec_free(d, rec);
        return r;
    }
    rec->block = b;
    rec->offset = off;
    rec->name = desc->name;
    rec->magic = BUFFET__GPU_MAGIC;
    rec->buf.size = (size_t)desc->size;
    rec->buf.align = (size_t)align;
    rec->buf.handle = (uint64_t)(uintptr_t)rec;
    rec->buf.data = b->mem.host ? (unsigned char *)b->mem.host + off : NULL;
    buffet__gpu_link(d, rec);
    pthread_mutex_unlock(&d->mu);
    buffet__gpu_free_recs(d, done);
    *out = &rec->buf;
    return BUFFET_OK;
}

/* The record of a buffer of d (or of any device when d is NULL), or NULL. */
static buffet__gpu_rec *buffet__gpu_rec_of(const buffet_buf *b, const buffet_gpu_device *d) {
    buffet__gpu_rec *rec;
    if (!b || (b->kind != BUFFET_BUF_GPU && b->kind != BUFFET_BUF_GPU_PINNED) || b->destroy != buffet__gpu_buf_destroy)
        return NULL;
    rec = (buffet__gpu_rec *)b->user;
    if (rec != (const void *)b) return NULL;
    if (rec->magic != (b->kind == BUFFET_BUF_GPU ? BUFFET__GPU_MAGIC : BUFFET__GPU_PINNED_MAGIC)) return NULL;
    return d && rec->dev != d ? NULL : rec;
}

/* The memory a buffer lives in, and its offset there. */
static const buffet__gpu_mem *buffet__gpu_mem_of(const buffet__gpu_rec *rec, uint64_t *off) {
    *off = rec->offset;
    return rec->buf.kind == BUFFET_BUF_GPU ? &rec->block->mem : &rec->pinned;
}

BUFFET_API buffet_result buffet_gpu_buf_native(const buffet_buf *b, buffet_gpu_native *out) {
    const buffet__gpu_rec *rec = buffet__gpu_rec_of(b, NULL);
    const buffet__gpu_mem *m;
    uint64_t off;
    if (!b || !out) return BUFFET_ERR_INVALID;
    if (!rec) return BUFFET_ERR_FOREIGN;
    m = buffet__gpu_mem_of(rec, &off);
    memset(out, 0, sizeof *out);
    out->memory = m->memory;
    out->buffer = m->buffer;
    out->offset = off;
    out->address = m->address ? m->address + off : 0;
    out->size = b->size;
    out->host = b->data;
    out->memory_type = m->type;
    out->coherent = (rec->dev->caps.type_props[m->type] & BUFFET_GPU_MEM_HOST_COHERENT) != 0 || m->pinned;
    return BUFFET_OK;
}

static buffet_result buffet__gpu_sync(buffet_buf *b, uint64_t off, uint64_t len, int invalidate) {
    buffet__gpu_rec *rec = buffet__gpu_rec_of(b, NULL);
    const buffet__gpu_mem *m;
    buffet_gpu_device *d;
    uint64_t base, lo, hi, atom;
    buffet_result r;
    if (!b) return BUFFET_ERR_INVALID;
    if (!rec) return BUFFET_ERR_FOREIGN;
    if (off > b->size || len > b->size - off) return BUFFET_ERR_RANGE;
    if (!b->data) return BUFFET_ERR_UNSUPPORTED;
    d = rec->dev;
    m = buffet__gpu_mem_of(rec, &base);
    if (m->pinned || (d->caps.type_props[m->type] & BUFFET_GPU_MEM_HOST_COHERENT) || len == 0) return BUFFET_OK;
    atom = d->caps.atom;
    lo = (base + off) & ~(atom - 1);
    hi = base + off + len;
    hi = hi > m->size - atom ? m->size : (hi + atom - 1) & ~(atom - 1);
    pthread_mutex_lock(&d->mu);
    r = d->ops->flush(d->be, m, lo, hi - lo, invalidate);
    pthread_mutex_unlock(&d->mu);
    return r;
}

BUFFET_API buffet_result buffet_gpu_flush(buffet_buf *b, uint64_t off, uint64_t len) {
    return buffet__gpu_sync(b, off, len, 0);
}

BUFFET_API buffet_result buffet_gpu_invalidate(buffet_buf *b, uint64_t off, uint64_t len) {
    return buffet__gpu_sync(b, off, len, 1);
}

/* Submit what was recorded as the next ticket. Under mu. */
static buffet_result buffet__gpu_submit(buffet_gpu_device *d, uint64_t *ticket) {
    buffet_result r;
    if (BUFFET__LOAD(&d->lost, BUFFET__RELAXED)) return BUFFET_ERR_DEVICE_LOST;
    r = d->ops->submit(d->be, d->submitted + 1);
    d->recorded = false;            /* submitted, or dropped by the backend with its failure */
    if (r != BUFFET_OK) {
        if (r == BUFFET_ERR_DEVICE_LOST) BUFFET__STORE(&d->lost, true, BUFFET__RELAXED);
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, r, "gpu device %s: submitting ticket %llu failed", d->name,
                    (unsigned long long)(d->submitted + 1));
        return r;
    }
    *ticket = ++d->submitted;
    return BUFFET_OK;
}

static buffet_result buffet__gpu_wait(buffet_gpu_device *d, uint64_t t, uint64_t timeout_ns) {
    uint64_t done = BUFFET__LOAD(&d->completed, BUFFET__ACQUIRE);
    buffet_result r;
    if (t <= done) return BUFFET_OK;
    r = d->ops->wait(d->be, t, timeout_ns);
    if (r == BUFFET_OK) {
        while (done < t && !BUFFET__CAS(&d->completed, &done, t, BUFFET__ACQ_REL, BUFFET__ACQUIRE)) {}
    } else if (r == BUFFET_ERR_DEVICE_LOST) {
        BUFFET__STORE(&d->lost, true, BUFFET__RELAXED);
    }
    return r;
}

BUFFET_API buffet_result buffet_gpu_wait(buffet_gpu_device *d, buffet_gpu_ticket t, uint64_t timeout_ns) {
    uint64_t submitted;
    if (!d) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&d->mu);
    submitted = d->submitted;
    pthread_mutex_unlock(&d->mu);
    if (t > submitted) return BUFFET_ERR_INVALID;
    return buffet__gpu_wait(d, t, timeout_ns);
}

BUFFET_API buffet_result buffet_gpu_wait_idle(buffet_gpu_device *d) {
    buffet__gpu_rec *done;
    buffet_result r;
    uint64_t t;
    if (!d) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&d->mu);
    t = d->submitted;
    pthread_mutex_unlock(&d->mu);
    r = buffet__gpu_wait(d, t, UINT64_MAX);
    pthread_mutex_lock(&d->mu);
    done = buffet__gpu_reap(d, false);
    pthread_mutex_unlock(&d->mu);
    buffet__gpu_free_recs(d, done);
    return r;
}

/* Staging ranges whose tickets have completed go back to the ring; with block, the oldest is
   waited for when none has. Under mu. */
static buffet_result buffet__gpu_retire(buffet_gpu_device *d, bool block) {
    buffet_result r = BUFFET_OK;
    while (d->pending_count) {
        uint32_t i = d->pending_head;
        r = buffet__gpu_wait(d, d->pending[i].ticket, block ? UINT64_MAX : 0);
        if (r == BUFFET_AGAIN) return BUFFET_OK;
        if (r != BUFFET_OK) return r;
        buffet_gpu_ring_release(&d->staging_ring, d->pending[i].mark);
        d->pending_head = (i + 1) % BUFFET_GPU_RING_MARKS;
        d->pending_count--;
        block = false;
    }
    return r;
}

/* A ring over fresh memory of type t. */
static buffet_result buffet__gpu_ring_new(buffet_gpu_device *d, int t, uint64_t size, buffet__gpu_mem *m,
                                          buffet_gpu_ring *ring, const char *what) {
    buffet_gpu_ring_desc rd;
    buffet_result r;
    if (t < 0) return BUFFET_ERR_UNSUPPORTED;
    r = buffet__gpu_mem_get(d, (uint32_t)t, size, m);
    if (r != BUFFET_OK) return r;
    memset(&rd, 0, sizeof rd);
    rd.size = size;
    rd.min_align = d->caps.align;
    rd.log = d->log;
    rd.name = what;
    r = buffet_gpu_ring_init(ring, &rd);
    if (r != BUFFET_OK) buffet__gpu_mem_put(d, m);
    return r;
}

/* len bytes of staging memory, waiting for old transfers to finish when it is full. Under mu. */
static buffet_result buffet__gpu_staging(buffet_gpu_device *d, uint64_t len, uint64_t *off) {
    buffet_result r;
    if (!d->staging_ready) {
        r = buffet__gpu_ring_new(d, d->type_for[BUFFET_GPU_UPLOAD], d->staging_size, &d->staging,
                                 &d->staging_ring, "staging");
        if (r != BUFFET_OK) return r;
        d->staging_ready = true;
    }
    r = buffet__gpu_retire(d, false);
    while (r == BUFFET_OK) {
        r = buffet_gpu_ring_alloc(&d->staging_ring, len, d->caps.align, off);
        if (r != BUFFET_ERR_EXHAUSTED || d->pending_count == 0) break;
        r = buffet__gpu_retire(d, true);
    }
    return r;
}

/* After the copies out of staging were recorded: submit them and hold their range until done. */
static buffet_result buffet__gpu_submit_staged(buffet_gpu_device *d, uint64_t *ticket) {
    buffet_gpu_ring_mark mark;
    buffet_result r = buffet__gpu_submit(d, ticket);
    if (r != BUFFET_OK) return r;
    if (d->pending_count == BUFFET_GPU_RING_MARKS && (r = buffet__gpu_retire(d, true)) != BUFFET_OK) return r;
    if (buffet_gpu_ring_mark_take(&d->staging_ring, &mark) == BUFFET_OK) {
        uint32_t i = (d->pending_head + d->pending_count) % BUFFET_GPU_RING_MARKS;
        d->pending[i].ticket = *ticket;
        d->pending[i].mark = mark;
        d->pending_count++;
    }
    return BUFFET_OK;
}

static buffet_result buffet__gpu_record(buffet_gpu_device *d, const buffet__gpu_mem *src, uint64_t so,
                                        const buffet__gpu_mem *dst, uint64_t dof, uint64_t len) {
    buffet_result r = d->ops->copy(d->be, src, so, dst, dof, len);
    if (r == BUFFET_OK) d->recorded = true, buffet__gpu_count(&d->stats.copy_commands);
    return r;
}

/* Checks shared by the transfers: d and b valid, b a GPU buffer of d, [off, off + len) inside. */
static buffet_result buffet__gpu_check_range(buffet_gpu_device *d, buffet_buf *b, uint64_t off, uint64_t len,
                                             buffet__gpu_rec **rec, const char *what) {
    buffet_result r = BUFFET_OK;
    *rec = buffet__gpu_rec_of(b, d);
    if (!*rec || (*rec)->buf.kind != BUFFET_BUF_GPU) r = BUFFET_ERR_INVALID;
    else if (off > b->size || len > b->size - off) r = BUFFET_ERR_RANGE;
    else if (BUFFET__LOAD(&d->lost, BUFFET__RELAXED)) r = BUFFET_ERR_DEVICE_LOST;
    if (r != BUFFET_OK) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, r, "gpu device %s: %s of %llu bytes at %llu refused (%s)", d->name,
                    what, (unsigned long long)len, (unsigned long long)off,
                    r == BUFFET_ERR_INVALID ? "not a GPU buffer of this device" :
                    r == BUFFET_ERR_RANGE ? "past the buffer's end" : "the device was lost");
        pthread_mutex_lock(&d->mu);
        buffet__gpu_count(&d->stats.failures);
        pthread_mutex_unlock(&d->mu);
    }
    return r;
}

/* Wait for ticket t when the caller gave no place to put it. */
static buffet_result buffet__gpu_finish(buffet_gpu_device *d, buffet_result r, uint64_t t, buffet_gpu_ticket *ticket) {
    if (r != BUFFET_OK) return r;
    if (ticket) {
        *ticket = t;
        return BUFFET_OK;
    }
    return buffet__gpu_wait(d, t, UINT64_MAX);
}

/* Where the device can read slice s directly: a GPU or pinned buffer of d, or host memory inside
   one of d's registrations (a pinned packet pool region holds every packet of it). NULL: it must
   be staged. Under mu. */
static const buffet__gpu_mem *buffet__gpu_direct(buffet_gpu_device *d, const buffet_slice *s, uint64_t *off) {
    const buffet__gpu_rec *rec = buffet__gpu_rec_of(s->buf, d), *pin;
    uintptr_t p, base;
    if (rec) {
        const buffet__gpu_mem *m = buffet__gpu_mem_of(rec, off);
        *off += s->off;
        return m;
    }
    if (!s->buf->data || !d->pins) return NULL;
    p = (uintptr_t)s->buf->data + s->off;
    for (pin = d->pins; pin; pin = pin->pin_next) {
        base = (uintptr_t)pin->buf.data - (uintptr_t)pin->offset;   /* the registration's start */
        if (p >= base && s->len <= pin->pinned.size && p - base <= pin->pinned.size - s->len) {
            *off = (uint64_t)(p - base);
            return &pin->pinned;
        }
    }
    return NULL;
}

BUFFET_API buffet_result buffet_gpu_upload(buffet_gpu_device *d, buffet_buf *dst, uint64_t dst_off,
                                           const buffet_chain *src, buffet_gpu_ticket *ticket) {
    buffet__gpu_rec *rec;
    const buffet__gpu_mem *dm;
    buffet_result r = BUFFET_OK;
    uint64_t base, t = 0, chunk_max;
    size_t i = 0, in = 0;           /* the slice, and the bytes of it already sent */
    if (ticket) *ticket = 0;
    if (!d || !src) return BUFFET_ERR_INVALID;
    r = buffet__gpu_check_range(d, dst, dst_off, src->len, &rec, "upload");
    if (r != BUFFET_OK) return r;
    dm = buffet__gpu_mem_of(rec, &base);
    base += dst_off;
    if (dst->data) {                /* host-visible: in place */
        unsigned char *p = (unsigned char *)dst->data + dst_off;
        for (i = 0; i < src->count; i++) {
            const buffet_slice *s = &src->slices[src->head + i];
            if (!s->buf->data) return BUFFET_ERR_INVALID;
        }
        for (i = 0; i < src->count; i++) {
            const buffet_slice *s = &src->slices[src->head + i];
            memcpy(p, (const unsigned char *)s->buf->data + s->off, s->len);
            p += s->len;
        }
        r = buffet_gpu_flush(dst, dst_off, src->len);
        pthread_mutex_lock(&d->mu);
        buffet__gpu_count(&d->stats.uploads);
        d->stats.upload_bytes += src->len;
        pthread_mutex_unlock(&d->mu);
        return r;
    }
    for (i = 0; i < src->count; i++) {
        const buffet_slice *s = &src->slices[src->head + i];
        if (!s->buf->data && !buffet__gpu_rec_of(s->buf, d)) return BUFFET_ERR_INVALID;
    }
    pthread_mutex_lock(&d->mu);
    chunk_max = d->staging_size / 4;
    i = 0;
    while (r == BUFFET_OK && i < src->count) {
        const buffet_slice *s = &src->slices[src->head + i];
        uint64_t so;
        const buffet__gpu_mem *sm = buffet__gpu_direct(d, s, &so);
        if (sm) {                   /* pinned (or GPU) memory: the device reads it directly */
            r = buffet__gpu_record(d, sm, so + in, dm, base, s->len - in);
            base += s->len - in;
            in = 0;
            i++;
            continue;
        }
        {   /* gather host slices into one staging range, up to chunk_max */
            uint64_t want = 0, off, at;
            size_t j = i, jin = in;
            while (j < src->count && want < chunk_max) {
                const buffet_slice *sj = &src->slices[src->head + j];
                uint64_t take, ignored;
                if (buffet__gpu_direct(d, sj, &ignored)) break;
                take = sj->len - jin;
                if (take > chunk_max - want) take = chunk_max - want;
                want += take;
                jin += take;
                if (jin == sj->len) j++, jin = 0;
            }
            r = buffet__gpu_staging(d, want, &off);
            if (r != BUFFET_OK) break;
            for (at = 0; at < want;) {
                const buffet_slice *si = &src->slices[src->head + i];
                uint64_t take = si->len - in;
                if (take > want - at) take = want - at;
                memcpy((unsigned char *)d->staging.host + off + at, (const unsigned char *)si->buf->data + si->off + in,
                       (size_t)take);
                at += take;
                in += take;
                if (in == si->len) i++, in = 0;
            }
            if (!(d->caps.type_props[d->staging.type] & BUFFET_GPU_MEM_HOST_COHERENT)) {
                uint64_t lo = off & ~(d->caps.atom - 1), hi = (off + want + d->caps.atom - 1) & ~(d->caps.atom - 1);
                r = d->ops->flush(d->be, &d->staging, lo, (hi > d->staging.size ? d->staging.size : hi) - lo, 0);
            }
            if (r == BUFFET_OK) r = buffet__gpu_record(d, &d->staging, off, dm, base, want);
            base += want;
            if (r == BUFFET_OK) r = buffet__gpu_submit_staged(d, &t);
        }
    }
    if (r == BUFFET_OK && d->recorded) r = buffet__gpu_submit(d, &t);
    if (r == BUFFET_OK) {
        buffet__gpu_count(&d->stats.uploads);
        d->stats.upload_bytes += src->len;
    } else {
        buffet__gpu_count(&d->stats.failures);
        /* Copies recorded before the failure go now: left in the batch, they would run with some
           later submission, after the caller may have freed their (pinned) sources. Submitted,
           the sources' release waits for them (buffet__gpu_buf_destroy). dst holds a prefix. */
        if (d->recorded && buffet__gpu_submit(d, &t) == BUFFET_OK) buffet__gpu_wait(d, t, UINT64_MAX);
    }
    pthread_mutex_unlock(&d->mu);
    return buffet__gpu_finish(d, r, t, ticket);
}

BUFFET_API buffet_result buffet_gpu_copy(buffet_gpu_device *d, buffet_buf *dst, uint64_t dst_off,
                                         buffet_buf *src, uint64_t src_off, uint64_t len,
                                         buffet_gpu_ticket *ticket) {
    buffet__gpu_rec *drec, *srec;
    const buffet__gpu_mem *dm, *sm;
    uint64_t db, sb, t = 0;
    buffet_result r;
    if (ticket) *ticket = 0;
    if (!d) return BUFFET_ERR_INVALID;
    if ((r = buffet__gpu_check_range(d, dst, dst_off, len, &drec, "copy")) != BUFFET_OK) return r;
    if ((r = buffet__gpu_check_range(d, src, src_off, len, &srec, "copy")) != BUFFET_OK) return r;
    if (drec == srec && len && dst_off < src_off + len && src_off < dst_off + len) return BUFFET_ERR_INVALID;
    dm = buffet__gpu_mem_of(drec, &db);
    sm = buffet__gpu_mem_of(srec, &sb);
    pthread_mutex_lock(&d->mu);
    r = len ? buffet__gpu_record(d, sm, sb + src_off, dm, db + dst_off, len) : BUFFET_OK;
    if (r == BUFFET_OK) r = buffet__gpu_submit(d, &t);
    if (r != BUFFET_OK) buffet__gpu_count(&d->stats.failures);
    pthread_mutex_unlock(&d->mu);
    return buffet__gpu_finish(d, r, t, ticket);
}

BUFFET_API buffet_result buffet_gpu_download(buffet_gpu_device *d, buffet_buf *src, uint64_t src_off,
                                             uint64_t len, buffet_chain *dst, buffet_gpu_ticket *ticket) {
    buffet__gpu_rec *srec;
    buffet_chain tmp;
    buffet_result r;
    uint64_t done = 0, t = 0;
    if (ticket) *ticket = 0;
    if (!d || !dst) return BUFFET_ERR_INVALID;
    if ((r = buffet__gpu_check_range(d, src, src_off, len, &srec, "download")) != BUFFET_OK) return r;
    r = buffet_chain_init(&tmp, dst->allocator);
    /* Readback buffers of at most dedicated_size each are the chain's buffers: the device writes
       them, the host reads them in place, and no byte is copied twice. */
    while (r == BUFFET_OK && done < len) {
        buffet_gpu_buf_desc bd;
        buffet_buf *b = NULL;
        uint64_t n = len - done < d->dedicated_size ? len - done : d->dedicated_size;
        memset(&bd, 0, sizeof bd);
        bd.size = n;
        bd.intent = BUFFET_GPU_READBACK;
        bd.name = "download";
        r = buffet_gpu_buf_create(d, &bd, &b);
        if (r == BUFFET_OK) r = buffet_gpu_copy(d, b, 0, src, src_off + done, n, &t);
        if (r == BUFFET_OK) r = buffet_chain_append(&tmp, b, 0, (size_t)n);
        buffet_buf_unref(b);
        done += n;
    }
    if (r == BUFFET_OK && !ticket) {
        size_t i;
        r = buffet__gpu_wait(d, t, UINT64_MAX);
        for (i = 0; r == BUFFET_OK && i < tmp.count; i++) r = buffet_gpu_invalidate(tmp.slices[tmp.head + i].buf, 0, tmp.slices[tmp.head + i].len);
    }
    if (r == BUFFET_OK) r = buffet_chain_concat(dst, &tmp);
    buffet_chain_deinit(&tmp);
    pthread_mutex_lock(&d->mu);
    if (r == BUFFET_OK) {
        buffet__gpu_count(&d->stats.downloads);
        d->stats.download_bytes += len;
    } else {
        buffet__gpu_count(&d->stats.failures);
    }
    pthread_mutex_unlock(&d->mu);
    if (r == BUFFET_OK && ticket) *ticket = t;
    return r;
}

BUFFET_API buffet_result buffet_gpu_frame_begin(buffet_gpu_device *d) {
    buffet_result r = BUFFET_OK;
    if (!d) return BUFFET_ERR_INVALID;
    if (BUFFET__LOAD(&d->in_frame, BUFFET__RELAXED)) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "gpu device %s: frame begun twice", d->name);
        return BUFFET_ERR_STATE;
    }
    /* Frame k may reuse what frame k - frames_in_flight used once the GPU is done with it. */
    if (d->frames_ended >= d->frames_in_flight) {
        buffet__gpu_frame *f = &d->frames[(d->frames_ended - d->frames_in_flight) % BUFFET__GPU_MAX_FRAMES];
        int i;
        r = buffet__gpu_wait(d, f->ticket, UINT64_MAX);
        if (r != BUFFET_OK) return r;
        pthread_mutex_lock(&d->mu);
        for (i = 1; i < BUFFET__GPU_INTENTS; i++)
            if (d->frame_ready[i] && f->marks[i]) buffet_gpu_ring_release(&d->frame_ring[i], f->marks[i]);
        if (d->budget) d->budget->used -= (size_t)f->charged;
        memset(f, 0, sizeof *f);
        pthread_mutex_unlock(&d->mu);
    }
    pthread_mutex_lock(&d->mu);     /* the statistics are read from any thread */
    BUFFET__STORE(&d->in_frame, true, BUFFET__RELAXED);
    d->frames_begun++;
    d->stats.frame = d->frames_begun;
    d->stats.frame_bytes = 0;
    pthread_mutex_unlock(&d->mu);
    return r;
}

BUFFET_API buffet_result buffet_gpu_frame_end(buffet_gpu_device *d, buffet_gpu_ticket after_ticket) {
    buffet__gpu_frame *f;
    buffet_result r;
    uint64_t t = 0;
    int i;
    if (!d) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&d->mu);
    if (!d->in_frame || after_ticket > d->submitted) {
        r = d->in_frame ? BUFFET_ERR_INVALID : BUFFET_ERR_STATE;
        pthread_mutex_unlock(&d->mu);
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, r, "gpu device %s: frame end %s", d->name,
                    r == BUFFET_ERR_STATE ? "without a begin" : "after a ticket not handed out");
        return r;
    }
    r = buffet__gpu_submit(d, &t);  /* completes after everything submitted in the frame */
    f = &d->frames[d->frames_ended % BUFFET__GPU_MAX_FRAMES];
    memset(f, 0, sizeof *f);
    f->ticket = r == BUFFET_OK ? (t > after_ticket ? t : after_ticket) : 0;
    f->charged = d->frame_charge;
    d->frame_charge = 0;
    for (i = 1; i < BUFFET__GPU_INTENTS; i++)
        if (d->frame_ready[i]) buffet_gpu_ring_mark_take(&d->frame_ring[i], &f->marks[i]);
    d->frames_ended++;
    BUFFET__STORE(&d->in_frame, false, BUFFET__RELAXED);
    pthread_mutex_unlock(&d->mu);
    return r;
}

/* Charge n bytes of frame memory to the budget, as the frame arenas charge theirs: refused past the
   hard limit (counting what arenas hold in reserve), on_soft once a frame past the soft limit.
   The frames' thread owns the budget, so no lock. */
static bool buffet__gpu_budget_charge(buffet_gpu_device *d, uint64_t n) {
    buffet_budget *b = d->budget;
    const char *name = b->name ? b->name : "budget";
    if (n > SIZE_MAX || (b->hard && (b->used + b->reserved > b->hard || n > b->hard - b->used - b->reserved))) {
        b->hard_failures++;
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, BUFFET_ERR_BUDGET, "gpu device %s: %llu bytes of frame memory would pass "
                    "budget %s's hard limit of %zu (%zu used)", d->name, (unsigned long long)n, name, b->hard, b->used);
        return false;
    }
    b->used += (size_t)n;
    d->frame_charge += n;
    if (b->used > b->peak) b->peak = b->used;
    if (b->soft && b->used > b->soft && !b->soft_fired) {
        b->soft_fired = true;
        b->soft_hits++;
        if (b->on_soft) b->on_soft(b->user, name, b->used, b->soft);
    }
    return true;
}

BUFFET_API buffet_result buffet_gpu_frame_alloc(buffet_gpu_device *d, uint64_t size, uint64_t align,
                                                buffet_gpu_intent intent, buffet_gpu_native *out) {
    buffet_result r;
    uint64_t off = 0;
    buffet__gpu_mem *m;
    if (!d || !out || size == 0 || (align & (align - 1)) || !buffet__gpu_intent_ok(intent)) {
        if (d) BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "gpu device %s: frame allocation of %llu "
                           "bytes, align %llu, intent %d refused", d->name, (unsigned long long)size,
                           (unsigned long long)align, (int)intent);
        return BUFFET_ERR_INVALID;
    }
    if (!BUFFET__LOAD(&d->in_frame, BUFFET__RELAXED)) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "gpu device %s: frame allocation outside a frame",
                    d->name);
        return BUFFET_ERR_STATE;
    }
    if (d->budget && !buffet__gpu_budget_charge(d, size)) return BUFFET_ERR_BUDGET;
    pthread_mutex_lock(&d->mu);
    r = BUFFET__LOAD(&d->lost, BUFFET__RELAXED) ? BUFFET_ERR_DEVICE_LOST : BUFFET_OK;
    if (r == BUFFET_OK && !d->frame_ready[intent]) {
        r = buffet__gpu_ring_new(d, d->type_for[intent], d->frame_size, &d->frame_mem[intent], &d->frame_ring[intent],
                                 buffet__gpu_intent_name(intent));
        d->frame_ready[intent] = r == BUFFET_OK;
    }
    if (r == BUFFET_OK) r = buffet_gpu_ring_alloc(&d->frame_ring[intent], size, align ? align : d->caps.align, &off);
    if (r == BUFFET_OK) {
        m = &d->frame_mem[intent];
        memset(out, 0, sizeof *out);
        out->memory = m->memory;
        out->buffer = m->buffer;
        out->offset = off;
        out->address = m->address ? m->address + off : 0;
        out->size = size;
        out->host = m->host ? (unsigned char *)m->host + off : NULL;
        out->memory_type = m->type;
        out->coherent = (d->caps.type_props[m->type] & BUFFET_GPU_MEM_HOST_COHERENT) != 0;
        d->stats.frame_bytes += size;
    } else {
        if (d->budget) d->budget->used -= (size_t)size, d->frame_charge -= size;
        buffet__gpu_count(&d->stats.failures);
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, r, "gpu device %s: frame allocation of %llu bytes (%s) refused",
                    d->name, (unsigned long long)size, buffet__gpu_intent_name(intent));
    }
    pthread_mutex_unlock(&d->mu);
    return r;
}

BUFFET_API buffet_result buffet_gpu_pin_at(buffet_gpu_device *d, buffet_buf *host, buffet_buf **out, buffet_site site) {
    buffet__gpu_rec *rec;
    buffet_result r;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo, hi;
    if (out) *out = NULL;
    if (!d || !host || !out || !host->data || host->kind == BUFFET_BUF_GPU || host->kind == BUFFET_BUF_GPU_PINNED) {
        if (d) BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "gpu device %s: pin refused (NULL, or "
                           "not host memory)", d->name);
        return BUFFET_ERR_INVALID;
    }
    if (!d->caps.can_pin) {
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, BUFFET_ERR_UNSUPPORTED, "gpu device %s: the %s backend cannot register "
                    "host memory", d->name, d->ops->name);
        return BUFFET_ERR_UNSUPPORTED;
    }
    if (!buffet_buf_ref(host)) return BUFFET_ERR_OVERFLOW;
    lo = (uintptr_t)host->data & ~(page - 1);
    hi = ((uintptr_t)host->data + host->size + page - 1) & ~(page - 1);
    pthread_mutex_lock(&d->mu);
    rec = buffet__gpu_rec_new(d, BUFFET_BUF_GPU_PINNED, site, &r);
    if (!rec) {
        pthread_mutex_unlock(&d->mu);
        buffet_buf_unref(host);
        return r;
    }
    r = BUFFET__LOAD(&d->lost, BUFFET__RELAXED) ? BUFFET_ERR_DEVICE_LOST : d->ops->pin(d->be, (void *)lo, (uint64_t)(hi - lo), &rec->pinned);
    if (r == BUFFET_OK) {
        rec->pinned.pinned = 1;
        rec->host = host;
        rec->offset = (uint64_t)((uintptr_t)host->data - lo);
        rec->magic = BUFFET__GPU_PINNED_MAGIC;
        rec->name = "pinned";
        rec->buf.data = host->data;
        rec->buf.size = host->size;
        rec->buf.handle = (uint64_t)(uintptr_t)rec;
        buffet__gpu_link(d, rec);
        rec->pin_prev = NULL;
        rec->pin_next = d->pins;
        if (d->pins) d->pins->pin_prev = rec;
        d->pins = rec;
    } else {
        buffet__gpu_count(&d->stats.failures);
    }
    pthread_mutex_unlock(&d->mu);
    if (r != BUFFET_OK) {
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, r, "gpu device %s: registering %zu bytes failed", d->name, host->size);
        buffet__gpu_rec_free(d, rec);
        buffet_buf_unref(host);
        return r;
    }
    *out = &rec->buf;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_gpu_pin_memory(buffet_gpu_device *d, void *mem, size_t size) {
    buffet_buf_desc wd;
    buffet_buf *wrap = NULL, *pinned = NULL;
    buffet_result r;
    if (!d || !mem || !size) return BUFFET_ERR_INVALID;
    memset(&wd, 0, sizeof wd);
    wd.kind = BUFFET_BUF_WRAP;
    wd.size = size;
    wd.wrap_data = mem;
    wd.allocator = d->allocator;
    wd.log = d->log;
    if ((r = buffet_buf_create(&wrap, &wd)) != BUFFET_OK) return r;
    r = buffet_gpu_pin(d, wrap, &pinned);
    buffet_buf_unref(wrap);         /* the pinned buffer holds it */
    if (r == BUFFET_OK) {
        pthread_mutex_lock(&d->mu);
        ((buffet__gpu_rec *)pinned)->device_owned = true;
        pthread_mutex_unlock(&d->mu);
    }
    return r;
}

BUFFET_API buffet_result buffet_gpu_unpin_memory(buffet_gpu_device *d, void *mem) {
    buffet__gpu_rec *pin;
    if (!d || !mem) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&d->mu);
    for (pin = d->pins; pin && !(pin->device_owned && pin->buf.data == mem); pin = pin->pin_next) {}
    if (pin) pin->device_owned = false;
    else buffet__gpu_count(&d->stats.foreign_frees);
    pthread_mutex_unlock(&d->mu);
    if (!pin) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_NOT_FOUND, "gpu device %s: unpinning %p refused: this "
                    "device has no pinning made by buffet_gpu_pin_memory at that address", d->name, mem);
        return BUFFET_ERR_NOT_FOUND;
    }
    buffet_buf_unref(&pin->buf);
    return BUFFET_OK;
}

BUFFET_API void buffet_gpu_region_hook(void *device, void *mem, size_t size, bool added) {
    buffet_gpu_device *d = (buffet_gpu_device *)device;
    buffet_result r = added ? buffet_gpu_pin_memory(d, mem, size) : buffet_gpu_unpin_memory(d, mem);
    if (r != BUFFET_OK && d)
        BUFFET__LOG(&d->log, BUFFET_LOG_WARN, r, "gpu device %s: %s a region of %zu bytes failed", d->name,
                    added ? "registering" : "unregistering", size);
}

/* Fold vblock statistics of a block into a type's. */
static void buffet__gpu_add_block(buffet_gpu_type_stats *s, const buffet__gpu_block *b, uint64_t *free_bytes) {
    if (!b->vb) {
        s->dedicated++;
        s->allocations++;
        s->allocated_bytes += b->mem.size;
    } else {
        buffet_gpu_vblock_stats v = buffet_gpu_vblock_get_stats(b->vb);
        s->blocks++;
        s->allocations += v.allocations;
        s->allocated_bytes += v.allocated_bytes;
        s->free_ranges += v.free_ranges;
        if (v.largest_free > s->largest_free) s->largest_free = v.largest_free;
        *free_bytes += v.free_bytes;
    }
    s->block_bytes += b->mem.size;
}

static double buffet__gpu_frag(const buffet_gpu_type_stats *s, uint64_t free_bytes) {
    return free_bytes ? 1.0 - (double)s->largest_free / (double)free_bytes : 0.0;
}

BUFFET_API buffet_gpu_stats buffet_gpu_get_stats(buffet_gpu_device *d) {
    buffet_gpu_stats s;
    buffet__gpu_rec *done, *rec;
    uint64_t total_free = 0;
    uint32_t t, h;
    memset(&s, 0, sizeof s);
    if (!d) return s;
    pthread_mutex_lock(&d->mu);
    done = buffet__gpu_reap(d, false);
    s = d->stats;
    memset(&s.total, 0, sizeof s.total);
    memset(s.type, 0, sizeof s.type);
    for (t = 0; t < d->caps.type_count; t++) {
        const buffet__gpu_block *b;
        uint64_t free_bytes = 0;
        for (b = d->blocks[t]; b; b = b->next) buffet__gpu_add_block(&s.type[t], b, &free_bytes);
        s.type[t].fragmentation = buffet__gpu_frag(&s.type[t], free_bytes);
        s.total.blocks += s.type[t].blocks;
        s.total.dedicated += s.type[t].dedicated;
        s.total.block_bytes += s.type[t].block_bytes;
        s.total.allocations += s.type[t].allocations;
        s.total.allocated_bytes += s.type[t].allocated_bytes;
        s.total.free_ranges += s.type[t].free_ranges;
        if (s.type[t].largest_free > s.total.largest_free) s.total.largest_free = s.type[t].largest_free;
        total_free += free_bytes;
    }
    s.total.fragmentation = buffet__gpu_frag(&s.total, total_free);
    for (h = 0; h < d->caps.heap_count && h < BUFFET_GPU_MAX_HEAPS; h++)
        d->ops->heap_budget(d->be, h, &s.heap_usage[h], &s.heap_budget[h]);
    if (d->ops->validation_messages) s.validation_messages = d->ops->validation_messages(d->be);
    for (rec = d->deferred; rec; rec = rec->next) s.deferred_releases++;
    pthread_mutex_unlock(&d->mu);
    buffet__gpu_free_recs(d, done);
    if (!s.heap_usage[0] && !s.heap_budget[0]) {
        /* no driver figures: buffet's own count per heap */
        for (t = 0; t < d->caps.type_count; t++) s.heap_usage[d->caps.type_heap[t] % BUFFET_GPU_MAX_HEAPS] += s.type[t].block_bytes;
    }
    return s;
}

static void buffet__gpu_type_json(char *out, size_t cap, size_t *len, const buffet_gpu_type_stats *s) {
    buffet__append(out, cap, len, "\"blocks\":%u,\"dedicated\":%u,\"block_bytes\":%llu,\"allocations\":%u,"
                    "\"allocated_bytes\":%llu,\"free_ranges\":%u,\"largest_free\":%llu,\"fragmentation\":%.4f",
                    s->blocks, s->dedicated, (unsigned long long)s->block_bytes, s->allocations,
                    (unsigned long long)s->allocated_bytes, s->free_ranges, (unsigned long long)s->largest_free,
                    s->fragmentation);
}

BUFFET_API size_t buffet_gpu_stats_json(buffet_gpu_device *d, char *out, size_t cap) {
    buffet_gpu_stats s = buffet_gpu_get_stats(d);
    size_t len = 0;
    uint32_t t, h;
    if (cap) out[0] = 0;
    if (!d) {
        buffet__append(out, cap, &len, "{}");
        return len;
    }
    buffet__append(out, cap, &len, "{\"name\":\"%s\",\"backend\":\"%s\",\"device\":\"", d->name, d->ops->name);
    for (t = 0; d->caps.name[t]; t++) {     /* driver text: escape what JSON must */
        unsigned char c = (unsigned char)d->caps.name[t];
        if (c < 0x20 || c == '"' || c == '\\') buffet__append(out, cap, &len, "\\u%04x", c);
        else buffet__append(out, cap, &len, "%c", c);
    }
    buffet__append(out, cap, &len, "\",");
    buffet__gpu_type_json(out, cap, &len, &s.total);
    buffet__append(out, cap, &len, ",\"device_allocations\":%llu,\"uploads\":%llu,\"upload_bytes\":%llu,"
                    "\"downloads\":%llu,\"download_bytes\":%llu,\"copy_commands\":%llu,\"frame\":%llu,"
                    "\"frame_bytes\":%llu,\"failures\":%llu,\"double_frees\":%llu,\"foreign_frees\":%llu,"
                    "\"deferred_releases\":%llu,\"validation_messages\":%llu,\"types\":[",
                    (unsigned long long)s.device_allocations, (unsigned long long)s.uploads,
                    (unsigned long long)s.upload_bytes, (unsigned long long)s.downloads,
                    (unsigned long long)s.download_bytes, (unsigned long long)s.copy_commands,
                    (unsigned long long)s.frame, (unsigned long long)s.frame_bytes,
                    (unsigned long long)s.failures, (unsigned long long)s.double_frees,
                    (unsigned long long)s.foreign_frees, (unsigned long long)s.deferred_releases,
                    (unsigned long long)s.validation_messages);
    for (t = 0; t < d->caps.type_count; t++) {
        buffet__append(out, cap, &len, "%s{\"props\":%u,\"heap\":%u,", t ? "," : "", d->caps.type_props[t],
                        d->caps.type_heap[t]);
        buffet__gpu_type_json(out, cap, &len, &s.type[t]);
        buffet__append(out, cap, &len, "}");
    }
    buffet__append(out, cap, &len, "],\"heaps\":[");
    for (h = 0; h < d->caps.heap_count && h < BUFFET_GPU_MAX_HEAPS; h++)
        buffet__append(out, cap, &len, "%s{\"size\":%llu,\"usage\":%llu,\"budget\":%llu}", h ? "," : "",
                        (unsigned long long)d->caps.heap_size[h], (unsigned long long)s.heap_usage[h],
                        (unsigned long long)s.heap_budget[h]);
    buffet__append(out, cap, &len, "]}");
    return len;
}

BUFFET_API buffet_gpu_info buffet_gpu_get_info(const buffet_gpu_device *d) {
    buffet_gpu_info in;
    uint32_t i;
    memset(&in, 0, sizeof in);
    if (!d) return in;
    in.backend = d->backend;
    in.backend_name = d->ops->name;
    memcpy(in.device_name, d->caps.name, sizeof in.device_name);
    in.device_name[sizeof in.device_name - 1] = 0;
    in.type_count = d->caps.type_count;
    in.heap_count = d->caps.heap_count;
    for (i = 0; i < BUFFET_GPU_MAX_TYPES; i++) in.type_props[i] = d->caps.type_props[i], in.type_heap[i] = d->caps.type_heap[i];
    for (i = 0; i < BUFFET_GPU_MAX_HEAPS; i++)
        in.heap_size[i] = d->caps.heap_size[i], in.heap_device_local[i] = d->caps.heap_device_local[i];
    in.align = d->caps.align;
    in.atom = d->caps.atom;
    return in;
}

BUFFET_API size_t buffet_gpu_explain(const buffet_gpu_device *d, buffet_gpu_intent intent, char *out, size_t cap) {
    static const char *const bits[5] = {"device-local", "host-visible", "host-coherent", "host-cached", "managed"};
    size_t len = 0;
    uint32_t t, k;
    if (cap) out[0] = 0;
    if (!d) {
        buffet__append(out, cap, &len, "no device");
        return len;
    }
    if (!buffet__gpu_intent_ok(intent)) {
        buffet__append(out, cap, &len, "intent %d is not one of device-local, upload, readback, shared", (int)intent);
        return len;
    }
    if (d->type_for[intent] < 0) buffet__append(out, cap, &len, "%s: no memory type of %s serves it;",
                                                 buffet__gpu_intent_name(intent), d->caps.name);
    else buffet__append(out, cap, &len, "%s -> memory type %d of \"%s\" (%s backend);", buffet__gpu_intent_name(intent),
                         d->type_for[intent], d->caps.name, d->ops->name);
    for (t = 0; t < d->caps.type_count; t++) {
        int s = buffet__gpu_score(d->caps.type_props[t], intent);
        buffet__append(out, cap, &len, " type %u (heap %u:", t, d->caps.type_heap[t]);
        for (k = 0; k < 5; k++) if (d->caps.type_props[t] & (1u << k)) buffet__append(out, cap, &len, " %s", bits[k]);
        if (!d->caps.type_props[t]) buffet__append(out, cap, &len, " unusable for buffers");
        if (s < 0) buffet__append(out, cap, &len, ") no: %s;", d->caps.type_props[t] ? "not host-visible" : "unusable");
        else buffet__append(out, cap, &len, ") score %d%s;", s, (int)t == d->type_for[intent] ? " chosen" : "");
    }
    return len;
}

BUFFET_API void buffet_gpu_device_destroy(buffet_gpu_device *d) {
    uint64_t leaks = 0, leaked_bytes = 0;
    uint32_t t;
    int i;
    if (!d) return;
    if (d->submitted) buffet__gpu_wait(d, d->submitted, UINT64_MAX);
    buffet__gpu_free_recs(d, buffet__gpu_reap(d, true));
    for (;;) {                      /* the device's own registrations go first: they are no leak */
        buffet__gpu_rec *pin;
        for (pin = d->pins; pin && !pin->device_owned; pin = pin->pin_next) {}
        if (!pin) break;
        buffet_gpu_unpin_memory(d, pin->buf.data);
    }
    while (d->live) {
        buffet__gpu_rec *rec = d->live;
        leaks++;
        leaked_bytes += rec->buf.size;
        if (leaks <= 8)
            BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_LEAK, "gpu device %s: %s buffer \"%s\" of %zu bytes made "
                        "at %s (%s) still has %u references at destroy", d->name,
                        rec->buf.kind == BUFFET_BUF_GPU ? "GPU" : "pinned", rec->name ? rec->name : "",
                        rec->buf.size, rec->site.where ? rec->site.where : "?", rec->site.func ? rec->site.func : "?",
                        rec->buf.refcount);
        /* freed as by its last unref: later unrefs would be use after free, as with any buffer */
        rec->buf.refcount = 1;
        buffet_buf_unref(&rec->buf);
    }
    if (leaks > 8)
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_LEAK, "gpu device %s: %llu buffers (%llu bytes) leaked in all",
                    d->name, (unsigned long long)leaks, (unsigned long long)leaked_bytes);
    if (d->staging_ready) buffet__gpu_mem_put(d, &d->staging);
    for (i = 1; i < BUFFET__GPU_INTENTS; i++)
        if (d->frame_ready[i]) buffet__gpu_mem_put(d, &d->frame_mem[i]);
    for (t = 0; t < BUFFET_GPU_MAX_TYPES; t++)
        while (d->blocks[t]) buffet__gpu_block_drop(d, d->blocks[t]);
    while (d->spare) {
        buffet__gpu_rec *rec = d->spare;
        d->spare = rec->next;
        buffet_free(d->allocator, rec, sizeof *rec, 64, BUFFET_SITE);
    }
    d->ops->close(d->be);
    pthread_mutex_destroy(&d->mu);
    buffet_free(d->allocator, d, sizeof *d, 64, BUFFET_SITE);
}

BUFFET_API buffet_result buffet_gpu_vulkan_handles(const buffet_gpu_device *d, buffet_gpu_vulkan_desc *out) {
    if (!d || !out) return BUFFET_ERR_INVALID;
    if (!d->ops->vulkan_handles) return BUFFET_ERR_UNSUPPORTED;
    d->ops->vulkan_handles(d->be, out);
    return BUFFET_OK;
}

/* >>registry provider: a request with device usage gets a GPU buffer */
static buffet_gpu_intent buffet__gpu_intent_for(uint32_t usage) {
    bool hr = usage & BUFFET_USAGE_HOST_READ, hw = usage & BUFFET_USAGE_HOST_WRITE;
    return hr && hw ? BUFFET_GPU_SHARED : hw ? BUFFET_GPU_UPLOAD : hr ? BUFFET_GPU_READBACK : BUFFET_GPU_DEVICE_LOCAL;
}

static int buffet__gpu_provider_score(void *self, const buffet_request *req, char *why, size_t cap) {
    buffet_gpu_device *d = (buffet_gpu_device *)self;
    const uint32_t unsupported = BUFFET_USAGE_SHARE_PROCESS | BUFFET_USAGE_NETWORK | BUFFET_USAGE_HUGE_PAGES |
                                 BUFFET_USAGE_SECURE;
    if (!(req->usage & (BUFFET_USAGE_DEVICE_READ | BUFFET_USAGE_DEVICE_WRITE))) {
        snprintf(why, cap, "no device usage asked");
        return -1;
    }
    if (req->usage & unsupported) {
        snprintf(why, cap, "GPU memory cannot be shared with processes, used by sockets, huge-paged or locked");
        return -1;
    }
    if (req->lifetime == BUFFET_LIFETIME_FRAME) {
        snprintf(why, cap, "GPU frame memory is not a refcounted buffer: use buffet_gpu_frame_alloc");
        return -1;
    }
    if (d->type_for[buffet__gpu_intent_for(req->usage)] < 0) {
        snprintf(why, cap, "no memory type of %s serves intent %s", d->caps.name,
                 buffet__gpu_intent_name(buffet__gpu_intent_for(req->usage)));
        return -1;
    }
    snprintf(why, cap, "%s memory of %s (%s backend)", buffet__gpu_intent_name(buffet__gpu_intent_for(req->usage)),
             d->caps.name, d->ops->name);
    return 90;
}

static buffet_result buffet__gpu_provider_create(void *self, const buffet_request *req, buffet_buf **out) {
    buffet_gpu_buf_desc bd;
    memset(&bd, 0, sizeof bd);
    bd.size = req->size;
    bd.align = req->align;
    bd.intent = buffet__gpu_intent_for(req->usage);
    bd.name = "registry";
    return buffet_gpu_buf_create_at((buffet_gpu_device *)self, &bd, out, req->site);
}

BUFFET_API buffet_result buffet_gpu_register(buffet_gpu_device *d, buffet_registry *r) {
    buffet_provider p;
    if (!d || !r) return BUFFET_ERR_INVALID;
    memset(&p, 0, sizeof p);
    p.name = "gpu";
    p.score = buffet__gpu_provider_score;
    p.create = buffet__gpu_provider_create;
    p.self = d;
    return buffet_registry_add(r, &p);
}


#endif /* BUFFET_IMPLEMENTATION */

/* buffet_gpu.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE. */
