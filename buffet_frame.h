/* buffet_frame.h - v0.1.0 - frame arenas, scopes, object pools, tags, budgets, transfers and
   frame barriers for real-time loops. Part of the buffet family; needs buffet.h beside it.
   MIT licence (end of file).

   USAGE
     #define BUFFET_IMPLEMENTATION in exactly one .c/.cpp file before including the buffet headers.

   EXAMPLE
         buffet_frame_arena *fa;
         buffet_frame_create(&fa, &(buffet_frame_desc){ .frames_in_flight = 2 });
         for (;;) {
             buffet_frame_begin(fa);     // frees frame k-2's memory: its GPU fence has passed
             buffet_frame_push_tag(fa, "physics");
             particle *p = BUFFET_FRAME_NEW_ARRAY(fa, particle, n);   // a pointer bump
             buffet_frame_pop_tag(fa);
             buffet_frame_end(fa);       // this frame's memory lives until frame k+2 begins
         }
         buffet_frame_destroy(fa);

   WHAT IS HERE
     frame arena  buffet_frame_*: bump allocation in chunks, reset per frame, N frames in flight,
                  checkpoints, batches, growable arrays, tags, budgets, transfers to other threads.
                  Each allocation takes its size rounded up to 16 bytes (what budgets and
                  statistics count), so the bump pointer never needs aligning up to 16.
     scope        buffet_scope_*: explicit lifetime, an arena over any parent: bump allocation in
                  blocks, large allocations apart; at its end runs its deferred actions in reverse
                  order, then frees everything; nests.
     pool         buffet_pool_*: fixed-size objects, O(1) get/put through a cache (one per thread,
                  no thread registry) over a shared store; bulk operations; grows up to a maximum;
                  objects may be put back from any thread.
     budget       buffet_budget: soft limit (callback once per frame) and hard limit (allocation
                  fails, counted) per arena, per tag, and per thread (shared by a thread's arenas).
     barrier      buffet_frame_barrier: n threads finish a frame and wait for each other.

   LIFECYCLE
     object        made by                        ended by                  owner
     frame arena   buffet_frame_create            buffet_frame_destroy      one thread at a time
     frame         buffet_frame_begin             buffet_frame_end          the arena's thread
     transfer      buffet_frame_transfer_send     ..._transfer_release      sender, then receiver
     scope         buffet_scope_begin (caller's)  buffet_scope_end          one thread at a time
     pool          buffet_pool_create             buffet_pool_destroy       thread-safe
     pool cache    buffet_pool_cache_create       buffet_pool_cache_destroy its creating thread
     barrier       buffet_frame_barrier_init      ..._barrier_deinit        thread-safe
     "Owned" (Thread: owned) means one thread at a time uses it; handing it to another thread
     needs a happens-before (a mutex, a queue) between the two.

   LIFETIMES AND OWNERSHIP
     Frame k's memory lives until frame k+N begins (N = frames_in_flight): buffet_frame_begin of
     frame k+N releases it, so a renderer that waits on frame k's fence at the start of frame k+N
     still sees it. buffet_frame_allocator's blocks die that way (contract: no
     BUFFET_CONTRACT_UNTIL_FREED), but it pins: a buffer, chain, registry or debug allocator over
     it keeps its block's chunk alive (as a transfer does) until it lets go; users that keep many
     blocks (pools, packet pools, adapters, other arenas) refuse it with BUFFET_ERR_LIFETIME.
     A scope's blocks die at its end and cannot be pinned. A pool destroyed while objects or
     caches are still out is released when the last of them comes back (destroy never frees
     memory under a user). A pool cache's allocator face (buffet_pool_allocator) is thread-safe:
     calls from other threads than the cache's go to the shared store.

   CALLBACKS
     Loggers and budget callbacks run after the arena's state is consistent (at the end of the
     call that found the condition), never under a lock: any buffet function may be called from
     them, except destroying the object whose call is running them.

   CONFIGURATION
     BUFFET_FRAME_MAX_IN_FLIGHT   largest frames_in_flight (default 4)
     BUFFET_POOL_CACHE_MAX        largest pool cache (default 512 pointers)
     BUFFET_FRAME_COUNT           1: count frame allocations (stats and tags' `count`); 0: the
                                  counts stay 0, and buffet_frame_alloc is a bump pointer's
                                  compare, add and store (an increment in memory per allocation
                                  costs a third more time). Default: BUFFET_DEBUG >= 1.
     These are limits checked by the implementation or counts; no public struct's layout depends
     on a configuration macro, so translation units may define them differently (counts are
     then made only by the translation units that count).
     BUFFET_DEBUG >= 1            poisons freed frame memory (0xDD), turns pool checks on (every
                                  get and put on the checked path; double and foreign puts are
                                  refused in every build), and
                                  (with <valgrind/memcheck.h>) tells valgrind about every block.
                                  ASan builds are always told which bytes are live.

   THREAD SAFETY
     A frame arena, a scope and a pool cache belong to one thread at a time (owned). A pool is
     thread-safe: any thread may use it through its own cache or the *_shared calls. A transfer
     may be received and released by any thread. A barrier is thread-safe.

   ERRORS
     Pointer-returning calls return NULL, record why for buffet_alloc_error() (BUFFET_ERR_STATE
     outside a frame, BUFFET_ERR_BUDGET, BUFFET_ERR_EXHAUSTED, BUFFET_ERR_TOO_LARGE,
     BUFFET_ERR_NOMEM...) and say so through the arena's / pool's log callback; the rest return
     buffet_result. Misuse found at run time (allocation outside a frame, begin or end out of turn,
     a stale checkpoint, a resize or free of a transferred block, a scope begun twice, a transfer
     not received within transfer_warn_frames, a pool object put twice, a pointer put into a pool
     it is no object of) is refused, counted and logged, never fatal, in every build. The log line
     names the caller's file and line wherever the function takes a site (their macros pass
     BUFFET_SITE): all of these but an allocation outside a frame.
*/
#ifndef BUFFET_FRAME_H_INCLUDED
#define BUFFET_FRAME_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif

#if BUFFET_VERSION_NUMBER != 100
#error "buffet_frame.h is version 0.1.0 but buffet.h is another: take both from one release"
#endif
#include <pthread.h>

/* Limits the implementation checks; no struct's layout depends on them. */
#ifndef BUFFET_FRAME_MAX_IN_FLIGHT
#define BUFFET_FRAME_MAX_IN_FLIGHT 4
#endif
#ifndef BUFFET_POOL_CACHE_MAX
#define BUFFET_POOL_CACHE_MAX 512
#endif

BUFFET_EXTERN_C_BEGIN

/* ---------------------------------------------------------------------------------------------
   >>frame arenas
*/
typedef struct buffet_frame_transfer buffet_frame_transfer;

typedef struct buffet_frame_desc {
    buffet_allocator parent;        /* chunks come from here; zero: the heap. Must keep blocks until
                                       freed (BUFFET_ERR_LIFETIME otherwise); one that is not
                                       thread-safe works, but then transfers and pins are refused */
    size_t chunk_size;              /* bytes of the first chunks; 0: 64 KiB. A request over 3/4 of it gets a chunk of its own */
    size_t max_chunk_size;          /* a frame that needed k chunks makes later chunks k times larger, up
                                       to this, so a steady frame fits in one; 0: 64 * chunk_size (at
                                       most 1 GiB); chunk_size: chunks never grow */
    uint32_t frames_in_flight;      /* N: memory of frame k lives until frame k+N begins; 0: 1 */
    uint32_t max_tags;              /* distinct tags (tag 0 is "untagged"); 0: 64 */
    uint32_t tag_depth;             /* depth of the tag stack; 0: 32 */
    buffet_budget budget;           /* this arena's per-frame budget (copied); zero: none */
    buffet_budget *thread_budget;   /* shared with the thread's other arenas; NULL: none */
    uint32_t transfer_warn_frames;  /* log a transfer still not received after this many frames; 0: 8 */
    buffet_logger log;              /* misuse and failures; zero: silent */
} buffet_frame_desc;

/* A frame arena: the part the inline fast path reads. The rest is private to the implementation.
   Owned by one thread. */
typedef struct buffet_frame_arena {
    unsigned char *cur;             /* next free byte (a multiple of 16 apart from the chunk start) */
    unsigned char *lim;             /* the fast path may bump up to here (chunk end or budget room; as cur) */
    size_t count;                   /* allocations this frame, with BUFFET_FRAME_COUNT (bytes are
                                       derived from cur when asked) */
    void *chunk;                    /* the current chunk (valgrind's pool handle) */
} buffet_frame_arena;

#ifndef BUFFET_FRAME_COUNT
#define BUFFET_FRAME_COUNT (BUFFET_DEBUG >= 1)
#endif

/* A point to roll back to (buffet_frame_checkpoint). The fields are buffet's: they identify the
   arena, the frame and the checkpoint, so that a stale mark is refused. */
typedef struct buffet_frame_mark {
    void *chunk;
    unsigned char *cur;
    size_t count, consumed;
    uint64_t frame;
    const void *arena;             /* the arena it was taken in */
    uint64_t seq;                  /* checkpoints taken in that arena before it, plus one */
    uint64_t chunk_use;            /* which use of `chunk` (a chunk let go by a rollback may come
                                      back later in the frame: then it is another place) */
} buffet_frame_mark;

typedef struct buffet_frame_tag_stats {
    const char *name;
    size_t bytes, count;           /* this frame (bytes include alignment padding and each
                                      size's rounding up to 16; count: see BUFFET_FRAME_COUNT) */
    size_t peak_bytes;             /* most bytes in one frame */
    uint64_t total_bytes, total_count;
    uint64_t soft_hits, hard_failures;
} buffet_frame_tag_stats;

typedef struct buffet_frame_stats {
    uint64_t frame;
    size_t bytes, count;           /* this frame (as buffet_frame_tag_stats) */
    size_t peak_bytes;
    size_t chunks, chunk_bytes;    /* held from the parent (in use, in flight, spare, pinned) */
    size_t spare_chunks;
    uint64_t oversized, transfers_sent, transfers_unreceived, misuse, hard_failures, soft_hits;
    uint64_t failures;             /* allocations refused for any reason (budget, parent, size, state) */
    size_t tag_count;
} buffet_frame_stats;

/* Create an arena. Returns: BUFFET_OK and *out. Errors: BUFFET_ERR_INVALID (out NULL,
   frames_in_flight > BUFFET_FRAME_MAX_IN_FLIGHT, chunk_size < 1 KiB or > 1 GiB, max_chunk_size
   below chunk_size or over 1 GiB, max_tags or tag_depth above 65536), BUFFET_ERR_LIFETIME (a
   parent whose blocks die with a frame or scope), the parent's reason. Thread: safe. */
BUFFET_API buffet_result buffet_frame_create_at(buffet_frame_arena **out, const buffet_frame_desc *desc, buffet_site site);
#define buffet_frame_create(...) buffet_frame_create_at(__VA_ARGS__, BUFFET_SITE)
/* Free the arena and every chunk (NULL does nothing). Transfers, pins and blocks still held keep
   their chunks alive; the last release frees them. Thread: owned. */
BUFFET_API void buffet_frame_destroy(buffet_frame_arena *a);
/* Start frame k: frees the memory of frame k-N (N = frames_in_flight). Errors:
   BUFFET_ERR_INVALID (NULL), BUFFET_ERR_STATE (already in a frame; nothing changes).
   Misuse is logged with `site` (the macro passes the caller's line). Thread: owned. */
BUFFET_API buffet_result buffet_frame_begin_at(buffet_frame_arena *a, buffet_site site);
#define buffet_frame_begin(...) buffet_frame_begin_at(__VA_ARGS__, BUFFET_SITE)
/* End frame k. Its memory stays valid until frame k+N begins. Errors: BUFFET_ERR_INVALID,
   BUFFET_ERR_STATE (no frame begun). Thread: owned. */
BUFFET_API buffet_result buffet_frame_end_at(buffet_frame_arena *a, buffet_site site);
#define buffet_frame_end(...) buffet_frame_end_at(__VA_ARGS__, BUFFET_SITE)
/* Internal: the slow path of buffet_frame_alloc (new chunk, budgets, errors, counting). */
BUFFET_API void *buffet__frame_alloc_slow(buffet_frame_arena *a, size_t size, size_t align);

/* Internal: every frame allocation starts on a multiple of this and takes its size rounded up
   to it, so the bump pointer stays aligned: an alignment up to it costs nothing, and rounding the
   size is off the chain of dependent bumps (a fixed 16, never a configuration macro: the inline
   fast path and the implementation must agree in every translation unit). */
#define BUFFET__FRAME_GRAIN ((size_t)16)

/* Allocate size bytes aligned to align in the current frame: a pointer bump. Every allocation
   takes its size rounded up to 16 bytes (a multiple of 16 costs nothing more) and starts on a
   multiple of 16 at least. Returns: NULL for size 0, align not a power of two
   (BUFFET_ERR_INVALID), outside a frame (BUFFET_ERR_STATE), a hard budget (BUFFET_ERR_BUDGET) or
   the parent failing; buffet_alloc_error says which. Thread: owned. */
static inline void *buffet_frame_alloc(buffet_frame_arena *a, size_t size, size_t align) {
    unsigned char *p = a->cur;
    /* (size - 1) | (grain - 1) is the rounded size minus one, and wraps to SIZE_MAX for size 0,
       so one compare refuses "too big" and "nothing" alike. cur and lim are multiples of the
       grain, so a rounded size below lim - cur fits. For a constant align the first two tests
       fold away. */
    size_t last = (size - 1) | (BUFFET__FRAME_GRAIN - 1);
    if (__builtin_expect(!buffet_is_pow2(align), 0)) return buffet__frame_alloc_slow(a, size, align);
    if (align > BUFFET__FRAME_GRAIN) {
        uintptr_t q = ((uintptr_t)p + (align - 1)) & ~(uintptr_t)(align - 1);
        if (q < (uintptr_t)p || q > (uintptr_t)a->lim) return buffet__frame_alloc_slow(a, size, align);
        p = (unsigned char *)q;
    }
    if (__builtin_expect(last < (size_t)(a->lim - p), 1)) {
#if defined(__GNUC__)
        /* lim > cur only while cur is in a chunk: the caller's NULL check folds away. */
        if (!p) __builtin_unreachable();
#endif
        a->cur = p + last + 1;
        if (BUFFET_FRAME_COUNT) a->count++;
        BUFFET__ASAN_UNPOISON((void *)p, size);
#if BUFFET_TRACK_VALGRIND
        VALGRIND_MEMPOOL_ALLOC(a->chunk, (void *)p, size);
#endif
        return (void *)p;
    }
    return buffet__frame_alloc_slow(a, size, align);
}
/* count * size bytes; NULL on overflow (BUFFET_ERR_OVERFLOW). Thread: owned. */
static inline void *buffet_frame_alloc_array(buffet_frame_arena *a, size_t count, size_t size, size_t align) {
    size_t total;
    /* An overflow asks the slow path for SIZE_MAX bytes, which it refuses (and counts) as such. */
    return buffet_frame_alloc(a, buffet_mul(count, size, &total) ? total : SIZE_MAX, align);
}
#define BUFFET_FRAME_NEW(a, T) ((T *)buffet_frame_alloc((a), sizeof(T), BUFFET_ALIGNOF(T)))
#define BUFFET_FRAME_NEW_ARRAY(a, T, n) ((T *)buffet_frame_alloc_array((a), (n), sizeof(T), BUFFET_ALIGNOF(T)))

/* Allocate n objects of size bytes in one call, writing their addresses to out[0..n), each
   size rounded up to align apart. All or nothing. The last object is the newest allocation
   (resize, allocator free) unless the objects are under 16 bytes apart. Returns: n, or 0 (n
   0, size 0, overflow, budget, parent failure). Thread: owned. */
BUFFET_API size_t buffet_frame_alloc_batch(buffet_frame_arena *a, size_t n, size_t size, size_t align, void **out);
/* Grow or shrink the most recent allocation in place (false if it was not the most recent, or
   the chunk or a budget has no room). A block handed to another thread by
   buffet_frame_transfer_send is the receiver's: resizing it is refused (false), counted as
   misuse and logged with `site`. Thread: owned. */
BUFFET_API bool buffet_frame_resize_at(buffet_frame_arena *a, void *ptr, size_t old_size, size_t new_size, buffet_site site);
#define buffet_frame_resize(...) buffet_frame_resize_at(__VA_ARGS__, BUFFET_SITE)
/* A checkpoint of the current frame. Thread: owned. */
BUFFET_API buffet_frame_mark buffet_frame_checkpoint(buffet_frame_arena *a);
/* Free everything allocated since m. Errors: BUFFET_ERR_INVALID (NULL), BUFFET_ERR_STATE (a
   stale m: taken in another frame or another arena, or above a point the arena has since gone
   back below, by a rollback, a free, or a resize of a block under m; or memory allocated since
   m was handed to another thread by a transfer or pin): nothing changes, and the refusal is
   counted as misuse and logged with `site`. A mark stays good through any number of rollbacks
   to itself or to marks above it. Thread: owned. */
BUFFET_API buffet_result buffet_frame_rollback_at(buffet_frame_arena *a, buffet_frame_mark m, buffet_site site);
#define buffet_frame_rollback(...) buffet_frame_rollback_at(__VA_ARGS__, BUFFET_SITE)
/* The arena as an allocator: alloc bumps, resize changes the last allocation, free gives back
   the last allocation (others wait for their frame to be released); a transferred block is
   neither resized nor given back (refused as buffet_frame_resize says). Contract: blocks die
   with their frame; owned by one thread; resizes; pins (when the parent is thread-safe): a
   holder's pin keeps the block's chunk alive, like a transfer. Thread: owned. */
BUFFET_API buffet_allocator buffet_frame_allocator(buffet_frame_arena *a);

/* Attribute the following allocations to tag `name` (a string that outlives the arena; equal
   strings are one tag). Errors: BUFFET_ERR_INVALID, BUFFET_ERR_EXHAUSTED (too many tags or
   too deep). Thread: owned. */
BUFFET_API buffet_result buffet_frame_push_tag(buffet_frame_arena *a, const char *name);
/* Back to the previous tag. Errors: BUFFET_ERR_STATE (stack empty; logged with `site`).
   Thread: owned. */
BUFFET_API buffet_result buffet_frame_pop_tag_at(buffet_frame_arena *a, buffet_site site);
#define buffet_frame_pop_tag(...) buffet_frame_pop_tag_at(__VA_ARGS__, BUFFET_SITE)
/* Set a per-frame budget for tag name (created if new; limits, callback and name copied).
   Errors: BUFFET_ERR_INVALID, BUFFET_ERR_EXHAUSTED. Thread: owned. */
BUFFET_API buffet_result buffet_frame_set_tag_budget(buffet_frame_arena *a, const char *name, const buffet_budget *b);
/* Statistics of one tag (false when unknown). Thread: owned. */
BUFFET_API bool buffet_frame_get_tag_stats(buffet_frame_arena *a, const char *name, buffet_frame_tag_stats *out);
/* Statistics of the arena. Thread: owned. */
BUFFET_API buffet_frame_stats buffet_frame_get_stats(buffet_frame_arena *a);
/* The arena's own budget as it stands (counters included; zero for NULL). Thread: owned. */
BUFFET_API buffet_budget buffet_frame_get_budget(buffet_frame_arena *a);
/* The arena's statistics and every tag's as one JSON object into out[0..cap) (NUL-terminated
   when cap > 0). Returns: the full length (as snprintf). Thread: owned. */
BUFFET_API size_t buffet_frame_stats_json(buffet_frame_arena *a, char *out, size_t cap);

/* >>growable arrays that live in a frame */
typedef struct buffet_frame_vec {
    void *data;
    size_t len, cap, elem_size, align;
    buffet_frame_arena *arena;
} buffet_frame_vec;

/* An empty array of elem_size-byte elements in arena a (allocates nothing yet). */
BUFFET_API void buffet_frame_vec_init(buffet_frame_vec *v, buffet_frame_arena *a, size_t elem_size, size_t align);
/* Append one element (copied from elem). It grows in place while it is the arena's latest
   allocation, else moves (the old copy stays until the frame ends). Returns: the new element's
   address, or NULL (budget, parent failure, overflow). Thread: owned. */
BUFFET_API void *buffet_frame_vec_push(buffet_frame_vec *v, const void *elem);

/* >>transfers: frame memory handed to another thread, kept alive until it lets go */
/* Hand [ptr, ptr+size) of the current frame to another thread: its chunk is kept past the
   frame until buffet_frame_transfer_release. Pass the handle by any queue. `site` names the
   sender in a leak report of the handle. Returns: the handle, or NULL (ptr not in this frame:
   BUFFET_ERR_FOREIGN; outside a frame: BUFFET_ERR_STATE; a parent that is not thread-safe:
   BUFFET_ERR_THREAD; no memory). Thread: owned (the sender's). */
BUFFET_API buffet_frame_transfer *buffet_frame_transfer_send_at(buffet_frame_arena *a, void *ptr, size_t size, buffet_site site);
#define buffet_frame_transfer_send(...) buffet_frame_transfer_send_at(__VA_ARGS__, BUFFET_SITE)
/* Take delivery: returns the memory (and its size in *size when not NULL). Thread: safe. */
BUFFET_API void *buffet_frame_transfer_receive(buffet_frame_transfer *t, size_t *size);
/* The receiver is done; the last release of a chunk's transfers gives it back to its arena.
   Thread: safe. */
BUFFET_API void buffet_frame_transfer_release(buffet_frame_transfer *t);

/* >>frame barriers */
typedef struct buffet_frame_barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t n, waiting;
    uint64_t generation;
} buffet_frame_barrier;

/* A barrier for n threads. Errors: BUFFET_ERR_INVALID (n 0). Thread: not concurrently. */
BUFFET_API buffet_result buffet_frame_barrier_init(buffet_frame_barrier *b, uint32_t n);
BUFFET_API void buffet_frame_barrier_deinit(buffet_frame_barrier *b);
/* Signal this thread's frame done and wait for the other n-1. Returns: true in exactly one
   thread per round (it may do the frame's serial work). Thread: safe. */
BUFFET_API bool buffet_frame_barrier_wait(buffet_frame_barrier *b);

/* ---------------------------------------------------------------------------------------------
   >>scopes
*/
typedef struct buffet_scope_entry buffet_scope_entry;   /* a deferred action */
typedef struct buffet__scope_block buffet__scope_block;
typedef struct buffet__scope_large buffet__scope_large;
typedef struct buffet_scope buffet_scope;

typedef struct buffet_scope_desc {
    buffet_allocator parent;       /* zero: the heap. Must keep blocks until freed: frame and scope
                                      allocators are refused (nest scopes with `outer` instead) */
    buffet_scope *outer;           /* the enclosing scope (ended first by its end); NULL: none */
    buffet_logger log;             /* zero: the outer scope's, else silent */
} buffet_scope_desc;

/* A scope is an arena: small allocations are pointer bumps in blocks it takes from the parent
   (4 KiB, doubling to 64 KiB); large ones (over 8 KiB, or aligned to more than 64) get a parent
   allocation each, kept apart; deferred actions are a list of their own. A scope over the heap
   hands its blocks at its end to its thread's spares (up to 256 KiB a thread, freed when the
   thread exits; not under valgrind, so that it sees every use after the end), which the
   thread's next scope takes before asking malloc: no malloc/free pair (nor the heap trimmed
   and faulted in again) per scope. The fields are buffet's. */
struct buffet_scope {
    buffet_allocator parent;
    unsigned char *cur, *lim;      /* the current block's free bytes (both multiples of 16) */
    buffet__scope_block *blocks;   /* newest first; blocks->data..cur is in use */
    buffet__scope_large *large;    /* large allocations, newest first */
    buffet_scope_entry *defers;    /* deferred actions, newest first */
    struct buffet_scope *outer;    /* enclosing scope, if begun inside one */
    struct buffet_scope *inner;    /* the scope begun inside this one and not yet ended */
    size_t count, bytes;           /* allocations held and their bytes (as asked) */
    size_t next_block;             /* bytes of the next block (0: the first, 4 KiB) */
    bool active;
    bool heap;                     /* the parent is the heap: blocks go through the thread's spares */
    uintptr_t live;                /* while active: the scope's own address, scrambled, so that
                                      memory that never held this scope does not read as active */
    buffet_logger log;
};

/* Begin scope s (caller memory: uninitialised, zeroed, or a scope that has ended). Errors:
   BUFFET_ERR_INVALID (s or desc NULL, s == outer), BUFFET_ERR_STATE (s is active: begun and not
   ended, and keeps its allocations and deferred actions; outer not active, or already has an
   active inner), BUFFET_ERR_LIFETIME (parent's blocks die with a frame or scope). The refusal
   is logged with `site`. Thread: owned. */
BUFFET_API buffet_result buffet_scope_begin_at(buffet_scope *s, const buffet_scope_desc *desc, buffet_site site);
#define buffet_scope_begin(...) buffet_scope_begin_at(__VA_ARGS__, BUFFET_SITE)
/* Internal: the `live` word of an active scope at s. Memory that held no active scope at s's
   address (stack garbage, zeroes, an ended scope) does not read as it. */
#define BUFFET__SCOPE_LIVE(s) ((uintptr_t)(s) ^ (uintptr_t)0x5C09E11FE5C09E11ull)
/* Internal: the slow path of buffet_scope_alloc_at (checks, refusals, new blocks, large). */
BUFFET_API void *buffet__scope_alloc_slow(buffet_scope *s, size_t size, size_t align, buffet_site site);

/* Allocate size bytes that live until the scope ends: a pointer bump in the scope's current
   block (sizes round up to 16), or for a large one a parent allocation of its own. NULL: size
   0, bad align (BUFFET_ERR_INVALID), inactive scope (BUFFET_ERR_STATE), a size no allocation
   can have (BUFFET_ERR_OVERFLOW), parent failed (its reason, logged). A scope that never
   began may be uninitialised memory: refused like an ended one (under valgrind, in builds
   without BUFFET_DEBUG, memcheck also reports the uninitialised read, which it is).
   Thread: owned. */
static inline void *buffet_scope_alloc_at(buffet_scope *s, size_t size, size_t align, buffet_site site) {
    /* The common case: an active scope, alignment up to the grain, room in the block (cur and
       lim are multiples of the grain; `last` is the rounded size minus one, SIZE_MAX for 0). An
       ended or zeroed scope has cur == lim; only the `live` word tells an active scope from
       memory that never held one. */
    size_t last = (size - 1) | (BUFFET__FRAME_GRAIN - 1);
    if (__builtin_expect(s != NULL && align - 1 < BUFFET__FRAME_GRAIN && (align & (align - 1)) == 0, 1)) {
#if BUFFET_TRACK_VALGRIND
        (void)VALGRIND_MAKE_MEM_DEFINED(&s->live, sizeof s->live);
#endif
        /* Relaxed: owned by one thread; atomic only so that the compiler assumes nothing of a
           value that may be uninitialised. */
        if (__builtin_expect(BUFFET__LOAD(&s->live, BUFFET__RELAXED) == BUFFET__SCOPE_LIVE(s) &&
                             last < (size_t)(s->lim - s->cur), 1)) {
            unsigned char *p = s->cur;
            s->cur = p + last + 1;
            s->count++;
            s->bytes += size;
            BUFFET__UNPOISON(p, size);
#if BUFFET_TRACK_VALGRIND
            VALGRIND_MEMPOOL_ALLOC(s->blocks, p, size);
#endif
            return p;
        }
    }
    return buffet__scope_alloc_slow(s, size, align, site);
}
#define buffet_scope_alloc(...) buffet_scope_alloc_at(__VA_ARGS__, BUFFET_SITE)
/* Run fn(arg) when the scope ends: last registered, first run, all of them before any of the
   scope's memory is released (an action may use any of it). Errors: BUFFET_ERR_INVALID,
   BUFFET_ERR_STATE, the parent's reason (fn is NOT run). Thread: owned. */
BUFFET_API buffet_result buffet_scope_defer_at(buffet_scope *s, void (*fn)(void *arg), void *arg, buffet_site site);
#define buffet_scope_defer(...) buffet_scope_defer_at(__VA_ARGS__, BUFFET_SITE)
/* End the scope: an inner scope still active is ended first, then the deferred actions run
   (newest first), then the large allocations and the blocks go back to the parent. Nothing
   is kept: the scope may be dropped or begun again. Errors: BUFFET_ERR_INVALID,
   BUFFET_ERR_STATE (not active; logged with `site`). Thread: owned. */
BUFFET_API buffet_result buffet_scope_end_at(buffet_scope *s, buffet_site site);
#define buffet_scope_end(...) buffet_scope_end_at(__VA_ARGS__, BUFFET_SITE)
/* The scope as an allocator: a free of the newest small allocation (nothing allocated or
   deferred since) gives its bytes back at once, a free of a large one releases it at once,
   the others wait for the end. Contract: blocks die with the scope; owned by one thread.
   Thread: owned. */
BUFFET_API buffet_allocator buffet_scope_allocator(buffet_scope *s);

/* ---------------------------------------------------------------------------------------------
   >>object pools
*/
typedef struct buffet_pool buffet_pool;

typedef struct buffet_pool_desc {
    size_t obj_size;              /* bytes per object; required */
    size_t obj_align;             /* 0: 16 (or the size's largest power of two below 16) */
    size_t initial;               /* objects made at create; 0: one slab */
    size_t max;                   /* objects at most; 0: no limit (at most 2^32, and at most
                                     2^48 bytes of objects, either way) */
    size_t slab_objs;             /* objects per growth step; 0: enough for 64 KiB (at least 8) */
    int checks;                   /* 1: every get and put also checks the pool's own bookkeeping
                                     (the slow path); -1: off; 0: on when BUFFET_DEBUG >= 1. A double
                                     put or a foreign pointer is refused whatever this says */
    buffet_allocator parent;      /* zero: the heap. Grows from any thread: must be thread-safe
                                     and keep blocks until freed */
    buffet_logger log;
} buffet_pool_desc;

/* Internal: where a slab's objects are, as the inline get and put read it. Each object has a
   state byte: 1 while it is out (handed to a user), 0 while it is in a cache or the store, so a
   put can refuse an object that is already back, and a pointer that is no object. */
typedef struct buffet__pool_span {
    unsigned char *objs;
    size_t bytes;                 /* objects * stride, below 2^32 */
    uint8_t *state;               /* one per object (atomic) */
} buffet__pool_span;

/* A cache of object pointers for one thread (the one that created it): get and put are an
   array pop and push, and a state byte in the slab of the latest object (the cache's hint).
   Create it with buffet_pool_cache_create; buffet_pool_cache_destroy gives its objects back. The
   fields are buffet's; the inline fast path reads them. */
typedef struct buffet_pool_cache {
    buffet_pool *pool;
    uint32_t count, cap;
    bool checks;
    size_t obj_size;              /* the pool's, for telling ASan/valgrind what is live */
    uint64_t magic;               /* ceil(2^64 / stride): divides by the stride (buffet__pool_div) */
    buffet__pool_span hint;       /* the slab of the latest object looked up (checks on: empty,
                                     so that every get and put takes the slow path) */
    uint64_t gets, puts;          /* counted here, added to the pool's statistics on flush */
    void **objs;                  /* cap pointers, allocated with the cache */
    pthread_t owner;              /* the creating thread: the allocator face routes others to the store */
    struct buffet_pool_cache *next;   /* in the pool's list */
} buffet_pool_cache;

typedef struct buffet_pool_stats {
    size_t obj_size, stride;      /* stride: bytes per object in a slab */
    size_t slabs, created, max;   /* objects made so far, and the limit */
    size_t in_store;              /* objects in the shared store */
    size_t in_use;                /* created - in_store - in caches (exact only when caches are flushed) */
    size_t caches;                /* caches attached */
    uint64_t gets, puts, failures, double_puts, foreign_puts;
} buffet_pool_stats;

/* Create a pool. Errors: BUFFET_ERR_INVALID (obj_size 0, bad align, initial > max, more than
   2^32 objects), BUFFET_ERR_OVERFLOW (obj_size rounded to its alignment, or initial, max or
   slab_objs times it, overflows or passes 2^48 bytes: refused before anything is allocated),
   BUFFET_ERR_LIFETIME / BUFFET_ERR_THREAD (parent), the parent's reason. Thread: safe. */
BUFFET_API buffet_result buffet_pool_create_at(buffet_pool **out, const buffet_pool_desc *desc, buffet_site site);
#define buffet_pool_create(...) buffet_pool_create_at(__VA_ARGS__, BUFFET_SITE)
/* Destroy the pool: no new cache may attach. Its memory is released now when every object is
   back and every cache destroyed, else when the last of them comes back (logged as a warning
   with the counts). NULL does nothing. Thread: once, not concurrently with its own use. */
BUFFET_API void buffet_pool_destroy(buffet_pool *p);
/* A cache of cap pointers (0: 64, at most BUFFET_POOL_CACHE_MAX) for the calling thread,
   attached to p, from p's parent allocator. Errors: BUFFET_ERR_INVALID, BUFFET_ERR_STATE (p is
   being destroyed), the parent's reason. Thread: safe. */
BUFFET_API buffet_result buffet_pool_cache_create_at(buffet_pool_cache **out, buffet_pool *p, uint32_t cap, buffet_site site);
#define buffet_pool_cache_create(...) buffet_pool_cache_create_at(__VA_ARGS__, BUFFET_SITE)
/* Give every cached object back, detach and free the cache. NULL does nothing. Thread: owned. */
BUFFET_API void buffet_pool_cache_destroy(buffet_pool_cache *c);
/* Give every cached object back to the shared store. Thread: owned (c). */
BUFFET_API void buffet_pool_cache_flush(buffet_pool_cache *c);
/* Internal: the slow paths of get and put (refill from / spill to the store, growth, lookups,
   refusals). */
BUFFET_API void *buffet__pool_get_slow(buffet_pool_cache *c);
BUFFET_API buffet_result buffet__pool_put_slow(buffet_pool_cache *c, void *obj, buffet_site site);

#ifdef __SIZEOF_INT128__
__extension__ typedef unsigned __int128 buffet__u128;
#endif
/* Internal: off / stride, and whether stride divides off, by one multiplication by magic =
   ceil(2^64 / stride): exact for off and stride below 2^32 (Lemire, Kaser and Kurz, "Faster
   remainder by direct computation", 2019), which the pool guarantees. */
static inline size_t buffet__pool_div(uint64_t magic, size_t off, bool *exact) {
#ifdef __SIZEOF_INT128__
    buffet__u128 m = (buffet__u128)magic * off;
    *exact = (uint64_t)m < magic;
    return (size_t)(m >> 64);
#else
    uint64_t n = (uint64_t)off;
    *exact = n * magic < magic;
    return (size_t)(((magic >> 32) * n + (((magic & 0xFFFFFFFFu) * n) >> 32)) >> 32);
#endif
}

/* One object (contents undefined), or NULL when the pool is at max and empty
   (BUFFET_ERR_EXHAUSTED). Thread: owned (c). */
static inline void *buffet_pool_get(buffet_pool_cache *c) {
    if (__builtin_expect(c->count != 0, 1)) {
        void *o = c->objs[c->count - 1];
        size_t off = (size_t)((uintptr_t)o - (uintptr_t)c->hint.objs);
        if (__builtin_expect(off < c->hint.bytes, 1)) {
            bool exact;
            uint8_t *st = &c->hint.state[buffet__pool_div(c->magic, off, &exact)];
            /* Relaxed: only this byte's own order matters (see buffet__pool_take_back). An
               object already out is a copy left by racing puts: the slow path drops it. */
            if (__builtin_expect(BUFFET__LOAD(st, BUFFET__RELAXED) == 0, 1)) {
                c->count--;
                c->gets++;
                BUFFET__STORE(st, (uint8_t)1, BUFFET__RELAXED);
                BUFFET__UNPOISON(o, c->obj_size);
                return o;
            }
        }
    }
    return buffet__pool_get_slow(c);
}
/* Give obj back (to this cache; it may come from any thread's get). Errors:
   BUFFET_ERR_DOUBLE_FREE (obj is already back in the pool), BUFFET_ERR_FOREIGN (no object of
   this pool: another pool's, an interior or misaligned pointer, anything else): refused,
   counted and logged with `site` (the macro passes the caller's line), obj never read or
   written; BUFFET_ERR_INVALID (NULL). A put after the object was handed out again reads as its
   new owner's: no allocator can tell them apart. Thread: owned (c). */
static inline buffet_result buffet_pool_put_at(buffet_pool_cache *c, void *obj, buffet_site site) {
    size_t off = (size_t)((uintptr_t)obj - (uintptr_t)c->hint.objs), i;
    bool exact;
    if (__builtin_expect(c->count < c->cap && off < c->hint.bytes, 1)) {
        i = buffet__pool_div(c->magic, off, &exact);
        /* Relaxed load and store: see buffet__pool_take_back. Any miss goes the slow way. */
        if (__builtin_expect(exact && BUFFET__LOAD(&c->hint.state[i], BUFFET__RELAXED) == 1, 1)) {
            BUFFET__STORE(&c->hint.state[i], (uint8_t)0, BUFFET__RELAXED);
            BUFFET__POISON(obj, c->obj_size);
            c->objs[c->count++] = obj;
            c->puts++;
            return BUFFET_OK;
        }
    }
    return buffet__pool_put_slow(c, obj, site);
}
#define buffet_pool_put(...) buffet_pool_put_at(__VA_ARGS__, BUFFET_SITE)
/* n objects into objs[0..n), all or nothing. Returns: n, or 0 (counted as a failure; n more
   than the pool could ever hand out fails at once, without growing). Thread: owned (c). */
BUFFET_API size_t buffet_pool_get_bulk(buffet_pool_cache *c, void **objs, size_t n);
/* Put n objects back. Errors: as buffet_pool_put (the bad ones are refused; the rest go back). */
BUFFET_API buffet_result buffet_pool_put_bulk_at(buffet_pool_cache *c, void *const *objs, size_t n, buffet_site site);
#define buffet_pool_put_bulk(...) buffet_pool_put_bulk_at(__VA_ARGS__, BUFFET_SITE)
/* Get and put without a cache, straight on the shared store (a lock each); put_shared refuses
   what buffet_pool_put refuses. Thread: safe. */
BUFFET_API void *buffet_pool_get_shared(buffet_pool *p);
BUFFET_API buffet_result buffet_pool_put_shared_at(buffet_pool *p, void *obj, buffet_site site);
#define buffet_pool_put_shared(...) buffet_pool_put_shared_at(__VA_ARGS__, BUFFET_SITE)
/* The cache as an allocator for requests of at most obj_size bytes and obj_align alignment
   (others: NULL, BUFFET_ERR_TOO_LARGE). On the cache's thread it gets and puts through the
   cache; on any other it goes to the shared store, so buffers and chains over it may be freed
   anywhere. Contract: blocks live until freed; thread-safe. Thread: safe. */
BUFFET_API buffet_allocator buffet_pool_allocator(buffet_pool_cache *c);
/* Statistics (see buffet_pool_stats). Thread: safe. */
BUFFET_API buffet_pool_stats buffet_pool_get_stats(buffet_pool *p);
/* As JSON into out[0..cap). Returns: the full length. Thread: safe. */
BUFFET_API size_t buffet_pool_stats_json(buffet_pool *p, char *out, size_t cap);

BUFFET_EXTERN_C_END
#endif /* BUFFET_FRAME_H_INCLUDED */
/* =============================================================================================
   IMPLEMENTATION
*/
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_FRAME_IMPL_INCLUDED)
#define BUFFET_FRAME_IMPL_INCLUDED

/* buffet_scope_begin reads memory that may be uninitialised (a scope about to begin) on purpose;
   with <valgrind/memcheck.h> at hand valgrind is told so, in every build (one client request per
   scope call). */
#if BUFFET_TRACK_VALGRIND
#  define BUFFET__FRAME_VG 1
#elif defined(__has_include)
#  if __has_include(<valgrind/memcheck.h>)
#    include <valgrind/memcheck.h>
#    define BUFFET__FRAME_VG 1
#  endif
#endif
#ifndef BUFFET__FRAME_VG
#  define BUFFET__FRAME_VG 0
#endif

/* >>chunks
   A chunk is one parent allocation: this header, then `size` usable bytes from `data` (64-byte
   aligned). `refs` is 1 for the arena plus one per transfer (or pin) not yet released: the chunk
   is reused only at 1, and whoever drops it to 0 (a receiver after the arena is gone) frees it. */
typedef struct buffet_frame_chunk buffet_frame_chunk;
struct buffet_frame_chunk {
    buffet_frame_chunk *next;
    unsigned char *data;
    size_t size;
    buffet_allocator parent;
    buffet_frame_transfer *transfers;   /* sent from this chunk; only the arena's thread links them */
    uint64_t use;                       /* the arena's count of chunks put to use, when it was */
    uint32_t refs;                      /* atomic */
    bool oversized;
};

/* A transfer is also a pin (buffet_frame_allocator's), so it starts with one. */
struct buffet_frame_transfer {
    buffet_pin pin;
    buffet_frame_transfer *next;
    buffet_frame_chunk *chunk;
    void *ptr;
    size_t size;
    uint64_t frame;
    uint32_t received;                  /* atomic */
    bool warned;
    bool pin_only;                      /* a pin (buffet_frame_allocator's): the holder is the owner */
};

typedef struct buffet__frame_tag {
    const char *name;
    buffet_budget budget;
    size_t count;                       /* allocations this frame */
    uint64_t total_bytes, total_count;
} buffet__frame_tag;

/* A soft limit passed, to be told once the arena is consistent again. */
typedef struct buffet__frame_soft { buffet_budget_fn fn; void *user; const char *name; size_t used, soft; } buffet__frame_soft;
#define BUFFET__FRAME_SOFT_MAX 4

/* A drop: the arena went back to position `pos` (bytes charged this frame) when `seq`
   checkpoints had been taken, which makes every mark taken until then above pos stale. */
typedef struct buffet__frame_drop { uint64_t seq; size_t pos; } buffet__frame_drop;
#define BUFFET__FRAME_DROPS 8

/* The arena: the public part (what the inline fast path reads) first. */
typedef struct buffet__frame {
    buffet_frame_arena pub;         /* cur, lim, count, chunk */
    unsigned char *chunk_end;       /* end of the current chunk */
    unsigned char *mark;            /* bytes since here are not yet charged to budgets and tags */
    size_t count_mark;              /* allocations before `mark` */
    buffet_frame_chunk **slots;     /* chunks used by each frame in flight */
    size_t thread_charge;           /* bytes this frame charged the thread budget */
    size_t consumed;                /* bytes charged this frame (with padding) */
    buffet_frame_chunk *free_chunks;
    size_t free_count, high_water;  /* spare chunks kept; chunks a recent frame needed */
    buffet_frame_chunk *pinned;     /* chunks kept alive by transfers */
    size_t chunk_size, block;       /* block: bytes of this allocation (struct and arrays) */
    size_t grown, max_chunk;        /* bytes of a new chunk now (chunk_size, grown); its limit */
    uint64_t frame;                 /* number of the current (or last) frame, from 1 */
    uint32_t in_flight;
    bool in_frame, parent_safe;     /* parent_safe: a chunk may be freed on another thread */
    buffet_allocator parent;
    buffet_budget budget;
    buffet_budget *thread_budget;
    size_t reserve;                 /* bytes reserved against each budget for [mark, lim) */
    uint32_t *tag_stack;
    uint32_t tag_depth, tag_count, max_tags, max_depth;
    buffet__frame_tag *tags;
    uint32_t transfer_warn_frames;
    uint64_t transfers_sent, transfers_unreceived_warnings;
    uint64_t misuse;                /* refused calls: allocation outside a frame, bad nesting... */
    uint64_t failures;              /* allocations refused, for any reason */
    uint64_t mark_seq;              /* checkpoints taken */
    uint64_t chunk_uses;            /* chunks put to use (buffet_frame_chunk.use) */
    unsigned ndrops;                /* drops this frame that can make a mark stale: seq and pos */
    buffet__frame_drop drops[BUFFET__FRAME_DROPS];   /* both rising (see buffet__frame_dropped) */
    uint64_t oversized;             /* requests that got a chunk of their own */
    size_t chunks_allocated;        /* chunks held from the parent now */
    size_t bytes_reserved;          /* their bytes */
    buffet_logger log;
    buffet__logq logq;              /* found mid-call, told at its end */
    unsigned nsoft;
    buffet__frame_soft soft[BUFFET__FRAME_SOFT_MAX];
} buffet__frame;

static buffet__frame *buffet__frame_of(buffet_frame_arena *fa) { return (buffet__frame *)fa; }
static buffet_frame_chunk *buffet__frame_chunk(const buffet__frame *a) { return (buffet_frame_chunk *)a->pub.chunk; }

#define BUFFET__FRAME_HDR ((size_t)64)
/* The chunk's header must fit before its data. */
typedef char buffet__frame_chunk_fits[sizeof(buffet_frame_chunk) <= BUFFET__FRAME_HDR ? 1 : -1];
#define BUFFET__FRAME_THREAD_RESERVE ((size_t)16 << 10)
#define BUFFET__FRAME_POISON 0xDD
#define BUFFET__FRAME_LOG(a, level, code, ...) BUFFET__LOGQ(&(a)->logq, &(a)->log, (level), (code), __VA_ARGS__)
/* The caller's line in a log line of misuse: " at file.c:12 in fn()" from a BUFFET_SITE. */
#define BUFFET__AT " at %s in %s()"
#define BUFFET__AT_ARGS(site) buffet__site_where(site), buffet__site_func(site)
/* Requests past this are refused before any arithmetic on them (nothing is that large). */
#define BUFFET__FRAME_MAX_ALLOC ((size_t)1 << 48)

/* Tell the logger and the budget callbacks what this call found. Called where the arena is
   consistent (the end of a public call); they may call back into the arena. */
static void buffet__frame_emit(buffet__frame *a) {
    buffet__frame_soft soft[BUFFET__FRAME_SOFT_MAX];
    buffet__logq q;
    unsigned i, n = a->nsoft;
    if (!a->logq.n && !n) return;
    q.n = a->logq.n;
    if (q.n) memcpy(&q, &a->logq, sizeof q);
    memcpy(soft, a->soft, n * sizeof soft[0]);
    a->logq.n = 0;
    a->nsoft = 0;
    buffet__logq_flush(&q, &a->log);
    for (i = 0; i < n; i++) soft[i].fn(soft[i].user, soft[i].name, soft[i].used, soft[i].soft);
}

/* Nobody may touch [p, p+n) until it is handed out again. */
static void buffet__frame_poison(void *p, size_t n) {
#if BUFFET_DEBUG >= 1
    BUFFET__UNPOISON(p, n);
    memset(p, BUFFET__FRAME_POISON, n);
#endif
    BUFFET__POISON(p, n);
}

static size_t buffet__chunk_block(const buffet_frame_chunk *c) { return BUFFET__FRAME_HDR + c->size; }

static void buffet__chunk_free(buffet_frame_chunk *c) {
    buffet_allocator parent = c->parent;
    size_t block = buffet__chunk_block(c);
    buffet_frame_transfer *t = c->transfers, *next;
    for (; t; t = next) {
        next = t->next;
        BUFFET_DELETE(parent, buffet_frame_transfer, t);
    }
#if BUFFET_TRACK_VALGRIND
    VALGRIND_DESTROY_MEMPOOL(c);
#endif
    BUFFET__UNPOISON(c->data, c->size);
    buffet_free(parent, c, block, BUFFET__FRAME_HDR, BUFFET_SITE);
}

static buffet_frame_chunk *buffet__chunk_new(buffet__frame *a, size_t size, bool oversized) {
    size_t block;
    buffet_frame_chunk *c;
    if (!buffet_add(size, BUFFET__FRAME_HDR, &block)) return (buffet_frame_chunk *)buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "chunk size overflows");
    c = (buffet_frame_chunk *)buffet_alloc(a->parent, block, BUFFET__FRAME_HDR, BUFFET_SITE);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->data = (unsigned char *)c + BUFFET__FRAME_HDR;
    c->size = size;
    c->parent = a->parent;
    c->refs = 1;
    c->oversized = oversized;
    a->chunks_allocated++;
    a->bytes_reserved += size;
    buffet__frame_poison(c->data, size);
#if BUFFET_TRACK_VALGRIND
    VALGRIND_CREATE_MEMPOOL(c, 0, 0);
#endif
    return c;
}

static void buffet__chunk_drop(buffet__frame *a, buffet_frame_chunk *c) {
    a->chunks_allocated--;
    a->bytes_reserved -= c->size;
    buffet__chunk_free(c);
}

/* Pop the first spare chunk (there is one). */
static buffet_frame_chunk *buffet__frame_take_spare(buffet__frame *a) {
    buffet_frame_chunk *c = a->free_chunks;
    a->free_chunks = c->next;
    a->free_count--;
    return c;
}

/* A chunk leaves use: pinned by transfers, kept spare, or given back. Its transfers are all
   released when refs is 1, so their handles go now. */
static void buffet__chunk_retire(buffet__frame *a, buffet_frame_chunk *c) {
    buffet_frame_transfer *t, *next;
    /* Acquire: pairs with the release half of buffet_frame_transfer_release's decrement, so every
       receiver's reads of the chunk happen before the arena writes over it or frees its handles. */
    if (BUFFET__LOAD(&c->refs, BUFFET__ACQUIRE) != 1) {
        c->next = a->pinned;
        a->pinned = c;
        return;
    }
    for (t = c->transfers; t; t = next) {
        next = t->next;
        BUFFET_DELETE(a->parent, buffet_frame_transfer, t);
    }
    c->transfers = NULL;
#if BUFFET_TRACK_VALGRIND
    VALGRIND_DESTROY_MEMPOOL(c);
    VALGRIND_CREATE_MEMPOOL(c, 0, 0);
#endif
    buffet__frame_poison(c->data, c->size);
    if (c->oversized || a->free_count >= a->high_water) {
        buffet__chunk_drop(a, c);
        return;
    }
    c->next = a->free_chunks;
    a->free_chunks = c;
    a->free_count++;
}

/* >>budgets: [mark, lim) is reserved against every budget that applies, so the fast path needs
   no accounting; the slow path charges what was used and reserves anew. */
static buffet_budget *buffet__frame_tag_budget(buffet__frame *a) {
    return &a->tags[a->tag_depth ? a->tag_stack[a->tag_depth - 1] : 0].budget;
}

static void buffet__budget_charge(buffet__frame *a, buffet_budget *b, size_t n) {
    b->used += n;
    if (b->used > b->peak) b->peak = b->used;
    if (b->soft && b->used > b->soft && !b->soft_fired) {
        const char *name = b->name ? b->name : "budget";
        b->soft_fired = true;
        b->soft_hits++;
        BUFFET__FRAME_LOG(a, BUFFET_LOG_WARN, BUFFET_ERR_BUDGET, "frame %llu: %s passed its soft limit: %zu of %zu bytes",
                          (unsigned long long)a->frame, name, b->used, b->soft);
        if (b->on_soft && a->nsoft < BUFFET__FRAME_SOFT_MAX) {
            buffet__frame_soft *e = &a->soft[a->nsoft++];
            e->fn = b->on_soft;
            e->user = b->user;
            e->name = name;
            e->used = b->used;
            e->soft = b->soft;
        }
    }
}

/* Bytes b lets one more reservation take (SIZE_MAX: no limit). The soft limit counts until it
   has fired, so the allocation that passes it reaches the slow path and the callback. */
static size_t buffet__budget_room(const buffet_budget *b) {
    size_t room = SIZE_MAX, held = b->used + b->reserved;
    if (b->hard) room = held < b->hard ? b->hard - held : 0;
    if (b->soft && !b->soft_fired) {
        size_t soft_room = held < b->soft ? b->soft - held : 0;
        if (soft_room < room) room = soft_room;
    }
    return room;
}

static bool buffet__budget_allows(const buffet_budget *b, size_t n) {
    return !b->hard || (b->used + b->reserved <= b->hard && n <= b->hard - b->used - b->reserved);
}

/* Charge [mark, cur) to the budgets and the current tag and return the reservation. */
static void buffet__frame_flush(buffet__frame *a) {
    size_t used = (size_t)(a->pub.cur - a->mark);
    buffet_budget *tb = buffet__frame_tag_budget(a);
    uint32_t tag = a->tag_depth ? a->tag_stack[a->tag_depth - 1] : 0;
    a->budget.reserved -= a->reserve;
    tb->reserved -= a->reserve;
    if (a->thread_budget) a->thread_budget->reserved -= a->reserve;
    a->reserve = 0;
    a->pub.lim = a->pub.cur;
    if (used) {
        buffet__budget_charge(a, &a->budget, used);
        buffet__budget_charge(a, tb, used);
        if (a->thread_budget) {
            buffet__budget_charge(a, a->thread_budget, used);
            a->thread_charge += used;
        }
        a->consumed += used;
        a->tags[tag].total_bytes += used;
    }
    a->tags[tag].count += a->pub.count - a->count_mark;
    a->tags[tag].total_count += a->pub.count - a->count_mark;
    a->mark = a->pub.cur;
    a->count_mark = a->pub.count;
}

/* Reserve what the budgets allow of the chunk's rest, and open the fast path that far: to a
   multiple of the grain, as the fast path needs (cur is one). */
static void buffet__frame_reserve(buffet__frame *a) {
    size_t room = (size_t)(a->chunk_end - a->pub.cur), r;
    buffet_budget *tb = buffet__frame_tag_budget(a);
    if ((r = buffet__budget_room(&a->budget)) < room) room = r;
    if ((r = buffet__budget_room(tb)) < room) room = r;
    if (a->thread_budget) {
        /* Shared with the thread's other arenas: hold back only a little at a time. */
        if ((r = buffet__budget_room(a->thread_budget)) < room) room = r;
        if (room > BUFFET__FRAME_THREAD_RESERVE) room = BUFFET__FRAME_THREAD_RESERVE;
    }
    room &= ~(BUFFET__FRAME_GRAIN - 1);
    if (a->thread_budget) a->thread_budget->reserved += room;
    a->budget.reserved += room;
    tb->reserved += room;
    a->reserve = room;
    a->pub.lim = a->pub.cur + room;
}

/* Flush, and reserve again when a chunk is in use: the state every public call leaves. */
static void buffet__frame_settle(buffet__frame *a) {
    if (!a->in_frame) return;
    buffet__frame_flush(a);
    if (a->pub.chunk) buffet__frame_reserve(a);
}

/* May n more bytes be charged? Counts and logs the budget that refuses. Called flushed. */
static bool buffet__frame_budgets_allow(buffet__frame *a, size_t n) {
    buffet_budget *list[3];
    size_t k = 0, i;
    list[k++] = &a->budget;
    list[k++] = buffet__frame_tag_budget(a);
    if (a->thread_budget) list[k++] = a->thread_budget;
    for (i = 0; i < k; i++) {
        if (!buffet__budget_allows(list[i], n)) {
            list[i]->hard_failures++;
            BUFFET__FRAME_LOG(a, BUFFET_LOG_ERROR, BUFFET_ERR_BUDGET,
                              "frame %llu: %zu bytes refused: %s would pass its hard limit (%zu of %zu bytes used)",
                              (unsigned long long)a->frame, n, list[i]->name ? list[i]->name : "budget",
                              list[i]->used, list[i]->hard);
            buffet_alloc_fail(BUFFET_ERR_BUDGET, "a hard budget refused it");
            return false;
        }
    }
    return true;
}

/* >>frame arena */
BUFFET_API buffet_result buffet_frame_create_at(buffet_frame_arena **out, const buffet_frame_desc *desc, buffet_site site) {
    buffet_frame_desc d;
    buffet__frame *a;
    size_t off_slots, off_stack, off_tags, block;
    buffet_result r;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    memset(&d, 0, sizeof d);
    if (desc) d = *desc;
    if (d.chunk_size == 0) d.chunk_size = (size_t)64 << 10;
    if (d.max_chunk_size == 0 && d.chunk_size <= ((size_t)1 << 30))
        d.max_chunk_size = d.chunk_size > ((size_t)1 << 24) ? (size_t)1 << 30 : d.chunk_size * 64;
    if (d.frames_in_flight == 0) d.frames_in_flight = 1;
    if (d.transfer_warn_frames == 0) d.transfer_warn_frames = 8;
    if (d.max_tags == 0) d.max_tags = 64;
    if (d.tag_depth == 0) d.tag_depth = 32;
    if (d.frames_in_flight > BUFFET_FRAME_MAX_IN_FLIGHT || d.chunk_size < 1024 || d.chunk_size > ((size_t)1 << 30) ||
        d.max_chunk_size < d.chunk_size || d.max_chunk_size > ((size_t)1 << 30) || d.max_tags > 65536 || d.tag_depth > 65536) {
        BUFFET__LOG(&d.log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "frame arena: frames_in_flight %u (at most %d), chunk_size %zu (1 KiB to 1 GiB), max_chunk_size %zu (chunk_size to 1 GiB), max_tags %u or tag_depth %u (at most 65536) out of range",
                    d.frames_in_flight, BUFFET_FRAME_MAX_IN_FLIGHT, d.chunk_size, d.max_chunk_size, d.max_tags, d.tag_depth);
        return BUFFET_ERR_INVALID;
    }
    if ((r = buffet__check(d.parent, BUFFET_NEED_UNTIL_FREED, false, "frame arena", &d.log)) != BUFFET_OK) return r;
    /* One block: the arena, then its slots, tag stack and tags (sizes are small: no overflow). */
    off_slots = (sizeof(buffet__frame) + 7) & ~(size_t)7;
    off_stack = off_slots + d.frames_in_flight * sizeof(buffet_frame_chunk *);
    off_tags = (off_stack + d.tag_depth * sizeof(uint32_t) + 15) & ~(size_t)15;
    block = off_tags + (size_t)d.max_tags * sizeof(buffet__frame_tag);
    a = (buffet__frame *)buffet_alloc(d.parent, block, 16, site);
    if (!a) {
        const char *why;
        r = buffet_alloc_error(&why);
        BUFFET__LOG(&d.log, BUFFET_LOG_ERROR, r, "frame arena: parent allocator failed: %s", why);
        return r;
    }
    memset(a, 0, block);
    a->slots = (buffet_frame_chunk **)((unsigned char *)a + off_slots);
    a->tag_stack = (uint32_t *)((unsigned char *)a + off_stack);
    a->tags = (buffet__frame_tag *)((unsigned char *)a + off_tags);
    a->block = block;
    a->max_tags = d.max_tags;
    a->max_depth = d.tag_depth;
    a->parent = d.parent;
    a->parent_safe = (buffet_allocator_contract(d.parent) & BUFFET_CONTRACT_THREAD_SAFE) != 0;
    a->chunk_size = a->grown = d.chunk_size;
    a->max_chunk = d.max_chunk_size;
    a->in_flight = d.frames_in_flight;
    a->budget = d.budget;
    a->budget.used = a->budget.reserved = 0;
    if (!a->budget.name) a->budget.name = "arena";
    a->thread_budget = d.thread_budget;
    a->transfer_warn_frames = d.transfer_warn_frames;
    a->log = d.log;
    a->high_water = 1;
    a->tags[0].name = "untagged";
    a->tags[0].budget.name = "untagged";
    a->tag_count = 1;
    *out = &a->pub;
    return BUFFET_OK;
}

static void buffet__frame_release_list(buffet__frame *a, buffet_frame_chunk **list) {
    buffet_frame_chunk *c = *list, *next;
    *list = NULL;
    for (; c; c = next) {
        next = c->next;
        buffet__chunk_retire(a, c);
    }
}

/* Reuse pinned chunks whose transfers are all released; warn of ones never received. */
static void buffet__frame_scan_pinned(buffet__frame *a) {
    buffet_frame_chunk **pp = &a->pinned, *c;
    while ((c = *pp) != NULL) {
        buffet_frame_transfer *t;
        if (BUFFET__LOAD(&c->refs, BUFFET__ACQUIRE) == 1) {   /* acquire: as in buffet__chunk_retire */
            *pp = c->next;
            buffet__chunk_retire(a, c);
            continue;
        }
        for (t = c->transfers; t; t = t->next) {
            /* Relaxed: the flag decides a warning only; nothing read after it depends on it. */
            if (!t->warned && !BUFFET__LOAD(&t->received, BUFFET__RELAXED) && a->frame - t->frame >= a->transfer_warn_frames) {
                t->warned = true;
                a->transfers_unreceived_warnings++;
                BUFFET__FRAME_LOG(a, BUFFET_LOG_WARN, BUFFET_ERR_STATE,
                                  "transfer of %zu bytes at %p sent in frame %llu not received after %llu frames; its chunk stays alive",
                                  t->size, t->ptr, (unsigned long long)t->frame, (unsigned long long)(a->frame - t->frame));
            }
        }
        pp = &c->next;
    }
}

BUFFET_API void buffet_frame_destroy(buffet_frame_arena *fa) {
    buffet__frame *a = buffet__frame_of(fa);
    buffet_frame_chunk *c, *next;
    buffet__logq q;
    buffet_logger log;
    uint32_t i;
    if (!a) return;
    if (a->in_frame) buffet__frame_flush(a);
    a->high_water = 0;   /* nothing is kept spare any more */
    for (i = 0; i < a->in_flight; i++) buffet__frame_release_list(a, &a->slots[i]);
    for (c = a->free_chunks; c; c = next) {
        next = c->next;
        buffet__chunk_drop(a, c);
    }
    for (c = a->pinned; c; c = next) {
        next = c->next;
        /* The arena's reference goes; the receiver that releases last frees the chunk. Acq_rel:
           release so that the arena's writes to the chunk happen before that receiver frees it,
           acquire so that, when the arena is last, the receivers' reads happen before its free. */
        if (BUFFET__FETCH_SUB(&c->refs, 1, BUFFET__ACQ_REL) == 1) buffet__chunk_free(c);
    }
    if (a->thread_budget) a->thread_budget->used -= a->thread_charge;
    memcpy(&q, &a->logq, sizeof q);
    log = a->log;
    buffet_free(a->parent, a, a->block, 16, BUFFET_SITE);
    buffet__logq_flush(&q, &log);
}

BUFFET_API buffet_result buffet_frame_begin_at(buffet_frame_arena *fa, buffet_site site) {
    buffet__frame *a = buffet__frame_of(fa);
    uint32_t i;
    if (!a) return BUFFET_ERR_INVALID;
    if (a->in_frame) {
        a->misuse++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "frame_begin" BUFFET__AT " in frame %llu, which has not ended",
                    BUFFET__AT_ARGS(site), (unsigned long long)a->frame);
        return BUFFET_ERR_STATE;
    }
    a->frame++;
    /* Frame k's memory goes when frame k+N begins: this frame takes its slot. */
    buffet__frame_release_list(a, &a->slots[a->frame % a->in_flight]);
    while (a->free_count > a->high_water) buffet__chunk_drop(a, buffet__frame_take_spare(a));
    buffet__frame_scan_pinned(a);
    a->in_frame = true;
    a->pub.count = a->count_mark = 0;
    a->consumed = 0;
    a->ndrops = 0;   /* every mark of an earlier frame is refused by its frame number */
    a->budget.used = 0;
    a->budget.soft_fired = false;
    for (i = 0; i < a->tag_count; i++) {
        a->tags[i].budget.used = 0;
        a->tags[i].budget.soft_fired = false;
        a->tags[i].count = 0;
    }
    if (a->thread_budget) {
        buffet_budget *tb = a->thread_budget;
        tb->used -= a->thread_charge;
        if (tb->soft && tb->used <= tb->soft) tb->soft_fired = false;
        a->thread_charge = 0;
    }
    a->pub.chunk = NULL;
    a->pub.cur = a->pub.lim = a->chunk_end = a->mark = NULL;
    buffet__frame_emit(a);
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_frame_end_at(buffet_frame_arena *fa, buffet_site site) {
    buffet__frame *a = buffet__frame_of(fa);
    size_t used = 0;
    buffet_frame_chunk *c;
    if (!a) return BUFFET_ERR_INVALID;
    if (!a->in_frame) {
        a->misuse++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "frame_end" BUFFET__AT " without frame_begin (after frame %llu)",
                    BUFFET__AT_ARGS(site), (unsigned long long)a->frame);
        return BUFFET_ERR_STATE;
    }
    buffet__frame_flush(a);
    a->in_frame = false;
    a->pub.cur = a->pub.lim = a->chunk_end = a->mark = NULL;
    a->pub.chunk = NULL;
    for (c = a->slots[a->frame % a->in_flight]; c; c = c->next) used += !c->oversized;
    /* The frame's k chunks would have been one k times the size: later chunks are, since each
       step from a chunk to the next takes the slow path. */
    if (used > 1 && a->grown < a->max_chunk) a->grown = a->max_chunk / used > a->grown ? a->grown * used : a->max_chunk;
    /* Keep as many spare chunks as recent frames needed, forgetting a peak slowly. */
    if (used > a->high_water) a->high_water = used;
    else if (a->frame % 16 == 0 && a->high_water > used && a->high_water > 1) a->high_water--;
    buffet__frame_emit(a);
    return BUFFET_OK;
}

/* Start a new chunk able to hold size bytes (a multiple of the grain) at align. */
static bool buffet__frame_new_chunk(buffet__frame *a, size_t size, size_t align) {
    size_t need = size;
    buffet_frame_chunk *c;
    uint32_t slot = (uint32_t)(a->frame % a->in_flight);
    if (align > BUFFET__FRAME_HDR && !buffet_add(size, align, &need)) {
        buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "size plus alignment overflows");
        return false;
    }
    if (need > a->chunk_size / 2 && need > a->chunk_size - a->chunk_size / 4) {
        c = buffet__chunk_new(a, need, true);
        if (c) a->oversized++;
    } else if (a->free_chunks && a->free_chunks->size >= a->grown) {
        c = buffet__frame_take_spare(a);
    } else if ((c = buffet__chunk_new(a, a->grown, false)) != NULL) {
        /* The spares go: the first was smaller, and chunks of the new size replace them all. */
        while (a->free_chunks) buffet__chunk_drop(a, buffet__frame_take_spare(a));
    } else if (a->grown > a->chunk_size) {
        /* The parent has no block that large (a fixed buffer, say): chunks stop growing, and a
           spare or a chunk of the first size serves, so nothing that worked before growing fails. */
        a->grown = a->max_chunk = a->chunk_size;
        c = a->free_chunks ? buffet__frame_take_spare(a) : buffet__chunk_new(a, a->chunk_size, false);
    }
    if (!c) {
        const char *why;
        buffet_result r = buffet_alloc_error(&why);
        BUFFET__FRAME_LOG(a, BUFFET_LOG_ERROR, r, "frame %llu: a %zu-byte chunk failed: %s", (unsigned long long)a->frame,
                          need > a->grown ? need : a->grown, why);
        return false;
    }
    c->use = ++a->chunk_uses;
    c->next = a->slots[slot];
    a->slots[slot] = c;
    a->pub.chunk = c;
    a->pub.cur = a->mark = c->data;
    a->chunk_end = c->data + c->size;
    return true;
}

BUFFET_API void *buffet__frame_alloc_slow(buffet_frame_arena *fa, size_t size, size_t align) {
    buffet__frame *a = buffet__frame_of(fa);
    uintptr_t p;
    size_t need, rsize;
    buffet_result why;
    const char *text;
    if (!a) return buffet_alloc_fail(BUFFET_ERR_INVALID, "no frame arena");
    if (size == 0) return NULL;
    if (!buffet_is_pow2(align)) {
        a->failures++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "frame alloc: align %zu is not a power of two", align);
        return buffet_alloc_fail(BUFFET_ERR_INVALID, "the alignment is not a power of two");
    }
    if (!a->in_frame) {
        a->misuse++;
        a->failures++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "frame alloc of %zu bytes outside a frame (call buffet_frame_begin)", size);
        return buffet_alloc_fail(BUFFET_ERR_STATE, "no frame begun (call buffet_frame_begin)");
    }
    if (size > BUFFET__FRAME_MAX_ALLOC || align > BUFFET__FRAME_MAX_ALLOC) {
        /* Also what buffet_frame_alloc_array asks for when count * size overflows. */
        a->failures++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "frame alloc of %zu bytes (align %zu): larger than any chunk can be",
                    size, align);
        return buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "the size (or count * size) is larger than any chunk can be");
    }
    buffet__frame_flush(a);
    /* The block takes its size rounded up to the grain (below 2^48: no overflow), so cur stays on it. */
    rsize = (size + (BUFFET__FRAME_GRAIN - 1)) & ~(BUFFET__FRAME_GRAIN - 1);
    p = ((uintptr_t)a->pub.cur + (align - 1)) & ~(uintptr_t)(align - 1);
    if (!a->pub.chunk || p < (uintptr_t)a->pub.cur || p > (uintptr_t)a->chunk_end ||
        rsize > (uintptr_t)a->chunk_end - p) {
        if (!buffet__frame_budgets_allow(a, rsize)) goto refused;
        if (!buffet__frame_new_chunk(a, rsize, align)) goto refused;
        p = ((uintptr_t)a->pub.cur + (align - 1)) & ~(uintptr_t)(align - 1);
    }
    need = (size_t)(p - (uintptr_t)a->pub.cur) + rsize;
    if (!buffet__frame_budgets_allow(a, need)) goto refused;
    a->pub.cur += need;
    if (BUFFET_FRAME_COUNT) a->pub.count++;
    buffet__frame_flush(a);
    buffet__frame_reserve(a);
    BUFFET__ASAN_UNPOISON((void *)p, size);
#if BUFFET_TRACK_VALGRIND
    VALGRIND_MEMPOOL_ALLOC(a->pub.chunk, (void *)p, size);
#endif
    buffet__frame_emit(a);
    return (void *)p;
refused:
    a->failures++;
    if (a->pub.chunk) buffet__frame_reserve(a);
    why = buffet_alloc_error(&text);
    buffet__frame_emit(a);
    return buffet_alloc_fail(why, text);   /* what the callbacks did does not change why */
}

BUFFET_API size_t buffet_frame_alloc_batch(buffet_frame_arena *fa, size_t n, size_t size, size_t align, void **out) {
    size_t stride = 0, total, i;
    unsigned char *p, *q;
    if (!fa || !out || n == 0 || size == 0) return 0;
    /* One bump for all: each object starts on a multiple of align. A bad align or an overflow
       is the slow path's to refuse and count. Objects closer than the grain could each read as
       the newest allocation (buffet__frame_is_newest): such a batch takes one grain more, so
       none does, and all go with the frame. */
    if (!buffet_is_pow2(align) || !buffet_align_up(size, align, &stride) || !buffet_mul(stride, n, &total) ||
        (n > 1 && stride < BUFFET__FRAME_GRAIN && !buffet_add(total, BUFFET__FRAME_GRAIN, &total)))
        total = SIZE_MAX;
    p = (unsigned char *)buffet_frame_alloc(fa, total, align);
    if (!p) return 0;
    if (BUFFET_FRAME_COUNT) fa->count += n - 1;
    /* A running pointer, not p + i * stride: there GCC (-O3, or g++ -O2) warns of an overflow in
       a later iteration when it sees a constant huge size, which the failed alloc above rules out. */
    for (i = 0, q = p; i < n; i++, q += stride) out[i] = q;
#if BUFFET_TRACK_VALGRIND
    /* valgrind knows each object as a block of its own (a resize or free of the last one
       names its start), and the padding between them as no one's. */
    VALGRIND_MEMPOOL_FREE(fa->chunk, p);
    for (i = 0; i < n; i++) VALGRIND_MEMPOOL_ALLOC(fa->chunk, out[i], size);
#endif
    return n;
}

/* Give charged bytes back to the arena's and the thread's budgets (tags keep counting them). */
static void buffet__frame_uncharge(buffet__frame *a, size_t n) {
    a->budget.used -= n < a->budget.used ? n : a->budget.used;
    if (a->thread_budget) {
        size_t k = n < a->thread_charge ? n : a->thread_charge;
        a->thread_budget->used -= k;
        a->thread_charge -= k;
    }
    a->consumed -= n;
}

/* The arena went back to position pos (bytes charged this frame): every mark taken so far above
   pos is stale. Kept as a list rising in both seq and pos: a new drop makes every entry at or
   above its pos redundant (the new one refuses all they refuse), and one with the newest entry's
   seq adds nothing to a lower entry of the same seq. So a mark (seq s, pos q) is stale exactly
   when the first entry with seq >= s has pos < q. When the list is full its two oldest merge
   into one that refuses a little more: a mark older than BUFFET__FRAME_DROPS drops with marks
   in between may be refused (never accepted when stale). */
static void buffet__frame_dropped(buffet__frame *a, size_t pos) {
    buffet__frame_drop *d = a->drops;
    while (a->ndrops && d[a->ndrops - 1].pos >= pos) a->ndrops--;
    if (a->ndrops && d[a->ndrops - 1].seq == a->mark_seq) return;
    if (a->ndrops == BUFFET__FRAME_DROPS) {
        d[1].pos = d[0].pos;
        memmove(d, d + 1, (BUFFET__FRAME_DROPS - 1) * sizeof d[0]);
        a->ndrops--;
    }
    d[a->ndrops].seq = a->mark_seq;
    d[a->ndrops].pos = pos;
    a->ndrops++;
}

static bool buffet__frame_mark_stale(const buffet__frame *a, const buffet_frame_mark *m) {
    unsigned i;
    for (i = 0; i < a->ndrops; i++)
        if (a->drops[i].seq >= m->seq) return a->drops[i].pos < m->consumed;
    return false;
}

/* Was any of [lo, hi) of the current chunk handed to another thread by a transfer? (A pin's
   holder is its owner: it may resize and free.) */
static const buffet_frame_transfer *buffet__frame_transferred(const buffet__frame *a, const unsigned char *lo, const unsigned char *hi) {
    const buffet_frame_transfer *t;
    for (t = buffet__frame_chunk(a)->transfers; t; t = t->next)
        if (!t->pin_only && (const unsigned char *)t->ptr < hi && lo < (const unsigned char *)t->ptr + t->size) return t;
    return NULL;
}

/* Refuse a resize or free of a transferred block: counted and logged, nothing changes. */
static void buffet__frame_refuse_transferred(buffet__frame *a, const char *what, const void *ptr, const buffet_frame_transfer *t,
                                             buffet_site site) {
    a->misuse++;
    BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                "%s of %p" BUFFET__AT " refused: its bytes at %p (%zu) were handed to another thread by a transfer, which owns them now",
                what, ptr, BUFFET__AT_ARGS(site), t->ptr, t->size);
}

/* Give back the newest bytes from `to` on, rounded up to the grain, to cur: charges and budgets
   included (tags keep counting). Rounded, because a block need not start on the grain (a batch's
   last object, a pointer into the newest block), and cur must stay on it. */
static void buffet__frame_give_back(buffet__frame *a, unsigned char *to) {
    size_t n;
    to += (size_t)(0u - (uintptr_t)to) & (BUFFET__FRAME_GRAIN - 1);
    n = (size_t)(a->pub.cur - to);
    buffet__frame_flush(a);
    a->pub.cur = a->mark = to;
    buffet__frame_uncharge(a, n);
    buffet__frame_dropped(a, a->consumed);
    buffet__frame_poison(to, n);
    buffet__frame_reserve(a);
}

/* Is [p, p + size) the newest allocation, which ends at cur after rounding to the grain? */
static bool buffet__frame_is_newest(const buffet__frame *a, const buffet_frame_chunk *chunk,
                                    const unsigned char *p, size_t size) {
    return p >= chunk->data && p <= a->pub.cur && size <= (size_t)(a->pub.cur - p) &&
           (size_t)(a->pub.cur - p) - size < BUFFET__FRAME_GRAIN;
}

/* buffet_frame_resize; `report`: a transferred block is misuse (else: just not resized). The
   block occupies its size rounded up to the grain: a resize within that moves nothing. */
static bool buffet__frame_resize(buffet__frame *a, void *ptr, size_t old_size, size_t new_size, buffet_site site, bool report) {
    buffet_frame_chunk *chunk;
    const buffet_frame_transfer *t;
    unsigned char *p = (unsigned char *)ptr;
    size_t extra, at, held, want;
    bool ok = true;
    if (!a || !ptr || !a->in_frame || new_size == 0 || !(chunk = buffet__frame_chunk(a))) return false;
    if (!buffet__frame_is_newest(a, chunk, p, old_size)) return false;
    if ((t = buffet__frame_transferred(a, p, a->pub.cur)) != NULL) {
        if (report) buffet__frame_refuse_transferred(a, "resize", ptr, t, site);
        return false;
    }
    if (new_size == old_size) return true;
    if (new_size > BUFFET__FRAME_MAX_ALLOC) return false;   /* no chunk is that large; no overflow below */
    held = (size_t)(a->pub.cur - p);
    /* The block now ends on the grain after its last byte, wherever it starts (see give_back):
       want - held is then a multiple of the grain, and cur stays on it. */
    want = new_size + ((size_t)(0u - ((uintptr_t)p + new_size)) & (BUFFET__FRAME_GRAIN - 1));
    /* A mark above the block's start would now cut it (or point past its end): stale. */
    at = a->consumed + (size_t)(a->pub.cur - a->mark) - held;
    if (want < held) {
        buffet__frame_give_back(a, p + want);
    } else if (want > held) {
        extra = want - held;
        if (extra > (size_t)(a->pub.lim - a->pub.cur)) {
            buffet__frame_flush(a);
            ok = extra <= (size_t)(a->chunk_end - a->pub.cur) && buffet__frame_budgets_allow(a, extra);
            if (ok) {
                a->pub.cur += extra;
                buffet__frame_flush(a);
            }
            buffet__frame_reserve(a);
        } else {
            a->pub.cur += extra;
        }
    }
    if (ok) {
        /* Even a resize within the block's rounding changes a block under any mark above it. */
        buffet__frame_dropped(a, at);
#if BUFFET_TRACK_VALGRIND
        VALGRIND_MEMPOOL_CHANGE(chunk, p, p, new_size);
#endif
        if (new_size > old_size) BUFFET__UNPOISON(p + old_size, new_size - old_size);
        else BUFFET__ASAN_POISON(p + new_size, old_size - new_size);   /* its rounding stays out of bounds */
    }
    buffet__frame_emit(a);
    return ok;
}

BUFFET_API bool buffet_frame_resize_at(buffet_frame_arena *fa, void *ptr, size_t old_size, size_t new_size, buffet_site site) {
    return buffet__frame_resize(buffet__frame_of(fa), ptr, old_size, new_size, site, true);
}

BUFFET_API buffet_frame_mark buffet_frame_checkpoint(buffet_frame_arena *fa) {
    buffet__frame *a = buffet__frame_of(fa);
    buffet_frame_mark m;
    memset(&m, 0, sizeof m);
    if (!a) return m;
    buffet__frame_settle(a);
    m.chunk = a->pub.chunk;
    m.cur = a->pub.cur;
    m.count = a->pub.count;
    m.consumed = a->consumed;
    m.frame = a->in_frame ? a->frame : 0;
    m.arena = a;
    m.seq = ++a->mark_seq;
    m.chunk_use = a->pub.chunk ? buffet__frame_chunk(a)->use : 0;
    buffet__frame_emit(a);
    return m;
}

/* Refuse a rollback: counted and logged. */
static buffet_result buffet__frame_refuse(buffet__frame *a, const char *why, const void *ptr, buffet_site site) {
    a->misuse++;
    BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "rollback" BUFFET__AT " refused: %s (%p)", BUFFET__AT_ARGS(site), why, ptr);
    return BUFFET_ERR_STATE;
}

BUFFET_API buffet_result buffet_frame_rollback_at(buffet_frame_arena *fa, buffet_frame_mark m, buffet_site site) {
    buffet__frame *a = buffet__frame_of(fa);
    buffet_frame_chunk *c, *mc = (buffet_frame_chunk *)m.chunk;
    uint32_t slot;
    if (!a) return BUFFET_ERR_INVALID;
    if (m.arena != a) return buffet__frame_refuse(a, "the checkpoint is of another arena", m.cur, site);
    if (!a->in_frame || m.frame != a->frame || m.consumed > a->consumed + (size_t)(a->pub.cur - a->mark))
        return buffet__frame_refuse(a, "the checkpoint is of another frame", m.cur, site);
    if (buffet__frame_mark_stale(a, &m))
        return buffet__frame_refuse(a, "the arena has gone back below the checkpoint since it was taken (a rollback, free or shrink)",
                                    m.cur, site);
    slot = (uint32_t)(a->frame % a->in_flight);
    for (c = a->slots[slot]; c && c != mc; c = c->next) {}
    if (c != mc || (mc && (mc->use != m.chunk_use || m.cur < mc->data || m.cur > mc->data + mc->size ||
                           (mc == a->pub.chunk && m.cur > a->pub.cur))))
        return buffet__frame_refuse(a, "the checkpoint is no longer reachable", m.cur, site);
    for (c = a->slots[slot]; c; c = c->next) {
        buffet_frame_transfer *t;
        for (t = c->transfers; t; t = t->next)
            if (c != mc || (unsigned char *)t->ptr + t->size > m.cur)
                return buffet__frame_refuse(a, "memory allocated after the checkpoint was handed on by a transfer or pin", t->ptr, site);
        if (c == mc) break;
    }
    buffet__frame_flush(a);
    while (a->slots[slot] != mc) {
        c = a->slots[slot];
        a->slots[slot] = c->next;
        buffet__chunk_retire(a, c);
    }
    a->pub.chunk = mc;
    if (mc) {
        a->chunk_end = mc->data + mc->size;
        buffet__frame_poison(m.cur, (size_t)(a->chunk_end - m.cur));
#if BUFFET_TRACK_VALGRIND
        VALGRIND_MEMPOOL_TRIM(mc, mc->data, (size_t)(m.cur - mc->data));
#endif
    } else {
        a->chunk_end = NULL;
    }
    a->pub.cur = a->mark = m.cur;
    a->pub.count = a->count_mark = m.count;
    buffet__frame_uncharge(a, a->consumed - m.consumed);
    buffet__frame_dropped(a, a->consumed);
    if (mc) buffet__frame_reserve(a);
    else a->pub.lim = NULL;
    buffet__frame_emit(a);
    return BUFFET_OK;
}

static void *buffet__frame_vt_alloc(void *self, size_t size, size_t align, buffet_site site) {
    (void)site;
    return buffet_frame_alloc((buffet_frame_arena *)self, size, align);
}
static bool buffet__frame_vt_resize(void *self, void *ptr, size_t old_size, size_t new_size, size_t align) {
    (void)align;
    return buffet_frame_resize_at((buffet_frame_arena *)self, ptr, old_size, new_size, BUFFET_NO_SITE);
}
static void buffet__frame_vt_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    buffet__frame *a = buffet__frame_of((buffet_frame_arena *)self);
    buffet_frame_chunk *chunk = buffet__frame_chunk(a);
    const buffet_frame_transfer *t;
    unsigned char *p = (unsigned char *)ptr;
    (void)align;
    /* Only the latest allocation can go early; the rest goes with the frame. */
    if (a->in_frame && chunk && buffet__frame_is_newest(a, chunk, p, size)) {
        if ((t = buffet__frame_transferred(a, p, a->pub.cur)) != NULL) {
            buffet__frame_refuse_transferred(a, "free", ptr, t, site);
            return;
        }
        buffet__frame_give_back(a, p);
#if BUFFET_TRACK_VALGRIND
        VALGRIND_MEMPOOL_FREE(chunk, p);
#endif
        buffet__frame_emit(a);
    }
}
static uint32_t buffet__frame_vt_contract(const void *self) {
    const buffet__frame *a = (const buffet__frame *)self;
    return BUFFET_CONTRACT_RESIZE | (a->parent_safe ? (uint32_t)BUFFET_CONTRACT_PIN : 0u);
}
/* A pin is a transfer taken and received at once: the chunk lives until it is released. */
static buffet_pin *buffet__frame_vt_pin(void *self, void *ptr, size_t size) {
    buffet_frame_transfer *t = buffet_frame_transfer_send_at((buffet_frame_arena *)self, ptr, size, BUFFET_SITE);
    if (!t) return NULL;
    t->pin_only = true;
    buffet_frame_transfer_receive(t, NULL);
    return &t->pin;
}
static const buffet_allocator_vtable buffet__frame_vtable = {
    buffet__frame_vt_alloc, buffet__frame_vt_resize, buffet__frame_vt_free, NULL, buffet__frame_vt_contract,
    buffet__frame_vt_pin
};

BUFFET_API buffet_allocator buffet_frame_allocator(buffet_frame_arena *a) {
    return buffet_allocator_of(a, &buffet__frame_vtable);
}

/* >>tags */
static int buffet__frame_tag_find(buffet__frame *a, const char *name, bool create) {
    uint32_t i;
    for (i = 0; i < a->tag_count; i++)
        if (a->tags[i].name == name || strcmp(a->tags[i].name, name) == 0) return (int)i;
    if (!create || a->tag_count == a->max_tags) return -1;
    memset(&a->tags[i], 0, sizeof a->tags[i]);
    a->tags[i].name = name;
    a->tags[i].budget.name = name;
    a->tag_count++;
    return (int)i;
}

BUFFET_API buffet_result buffet_frame_push_tag(buffet_frame_arena *fa, const char *name) {
    buffet__frame *a = buffet__frame_of(fa);
    int t;
    if (!a || !name) return BUFFET_ERR_INVALID;
    t = a->tag_depth == a->max_depth ? -1 : buffet__frame_tag_find(a, name, true);   /* a full stack adds no tag */
    if (t < 0 || a->tag_depth == a->max_depth) {
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_EXHAUSTED, "push_tag '%s': %s", name,
                    t < 0 ? "too many tags (buffet_frame_desc.max_tags)" : "tag stack full (buffet_frame_desc.tag_depth)");
        return BUFFET_ERR_EXHAUSTED;
    }
    if (a->in_frame) buffet__frame_flush(a);
    a->tag_stack[a->tag_depth++] = (uint32_t)t;
    if (a->in_frame && a->pub.chunk) buffet__frame_reserve(a);
    buffet__frame_emit(a);
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_frame_pop_tag_at(buffet_frame_arena *fa, buffet_site site) {
    buffet__frame *a = buffet__frame_of(fa);
    if (!a) return BUFFET_ERR_INVALID;
    if (a->tag_depth == 0) {
        a->misuse++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "pop_tag" BUFFET__AT " with no tag pushed", BUFFET__AT_ARGS(site));
        return BUFFET_ERR_STATE;
    }
    if (a->in_frame) buffet__frame_flush(a);
    a->tag_depth--;
    if (a->in_frame && a->pub.chunk) buffet__frame_reserve(a);
    buffet__frame_emit(a);
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_frame_set_tag_budget(buffet_frame_arena *fa, const char *name, const buffet_budget *b) {
    buffet__frame *a = buffet__frame_of(fa);
    int t;
    buffet_budget *tb;
    if (!a || !name || !b) return BUFFET_ERR_INVALID;
    t = buffet__frame_tag_find(a, name, true);
    if (t < 0) return BUFFET_ERR_EXHAUSTED;
    if (a->in_frame) buffet__frame_flush(a);
    tb = &a->tags[t].budget;
    tb->soft = b->soft;
    tb->hard = b->hard;
    tb->on_soft = b->on_soft;
    tb->user = b->user;
    tb->name = b->name ? b->name : name;
    if (a->in_frame && a->pub.chunk) buffet__frame_reserve(a);
    buffet__frame_emit(a);
    return BUFFET_OK;
}

static void buffet__frame_tag_stats(const buffet__frame *a, int t, buffet_frame_tag_stats *out) {
    out->name = a->tags[t].name;
    out->bytes = a->tags[t].budget.used;
    out->count = a->tags[t].count;
    out->peak_bytes = a->tags[t].budget.peak;
    out->total_bytes = a->tags[t].total_bytes;
    out->total_count = a->tags[t].total_count;
    out->soft_hits = a->tags[t].budget.soft_hits;
    out->hard_failures = a->tags[t].budget.hard_failures;
}

BUFFET_API bool buffet_frame_get_tag_stats(buffet_frame_arena *fa, const char *name, buffet_frame_tag_stats *out) {
    buffet__frame *a = buffet__frame_of(fa);
    int t;
    if (!a || !name || !out) return false;
    t = buffet__frame_tag_find(a, name, false);
    if (t < 0) return false;
    buffet__frame_settle(a);
    buffet__frame_tag_stats(a, t, out);
    buffet__frame_emit(a);
    return true;
}

BUFFET_API buffet_frame_stats buffet_frame_get_stats(buffet_frame_arena *fa) {
    buffet__frame *a = buffet__frame_of(fa);
    buffet_frame_stats s;
    uint32_t i;
    memset(&s, 0, sizeof s);
    if (!a) return s;
    buffet__frame_settle(a);
    s.frame = a->frame;
    s.bytes = a->consumed;
    s.count = a->pub.count;
    s.peak_bytes = a->budget.peak;
    s.chunks = a->chunks_allocated;
    s.chunk_bytes = a->bytes_reserved;
    s.spare_chunks = a->free_count;
    s.oversized = a->oversized;
    s.transfers_sent = a->transfers_sent;
    s.transfers_unreceived = a->transfers_unreceived_warnings;
    s.misuse = a->misuse;
    s.failures = a->failures;
    s.tag_count = a->tag_count;
    s.hard_failures = a->budget.hard_failures;
    s.soft_hits = a->budget.soft_hits;
    for (i = 0; i < a->tag_count; i++) {
        s.hard_failures += a->tags[i].budget.hard_failures;
        s.soft_hits += a->tags[i].budget.soft_hits;
    }
    buffet__frame_emit(a);
    return s;
}

BUFFET_API buffet_budget buffet_frame_get_budget(buffet_frame_arena *fa) {
    buffet__frame *a = buffet__frame_of(fa);
    buffet_budget b;
    memset(&b, 0, sizeof b);
    if (!a) return b;
    buffet__frame_settle(a);
    b = a->budget;
    buffet__frame_emit(a);
    return b;
}

BUFFET_API size_t buffet_frame_stats_json(buffet_frame_arena *fa, char *out, size_t cap) {
    buffet__frame *a = buffet__frame_of(fa);
    buffet_frame_stats s = buffet_frame_get_stats(fa);
    size_t len = 0;
    uint32_t i;
    if (!out) cap = 0;
    if (cap) out[0] = '\0';
    buffet__append(out, cap, &len,
        "{\"frame\":%llu,\"bytes\":%zu,\"count\":%zu,\"peak_bytes\":%zu,\"chunks\":%zu,\"chunk_bytes\":%zu,"
        "\"spare_chunks\":%zu,\"oversized\":%llu,\"transfers_sent\":%llu,\"transfers_unreceived\":%llu,"
        "\"misuse\":%llu,\"failures\":%llu,\"soft_hits\":%llu,\"hard_failures\":%llu,\"tags\":[",
        (unsigned long long)s.frame, s.bytes, s.count, s.peak_bytes, s.chunks, s.chunk_bytes, s.spare_chunks,
        (unsigned long long)s.oversized, (unsigned long long)s.transfers_sent,
        (unsigned long long)s.transfers_unreceived, (unsigned long long)s.misuse, (unsigned long long)s.failures,
        (unsigned long long)s.soft_hits, (unsigned long long)s.hard_failures);
    for (i = 0; a && i < a->tag_count; i++) {
        buffet_frame_tag_stats t;
        buffet__frame_tag_stats(a, (int)i, &t);
        buffet__append(out, cap, &len, "%s{\"name\":\"", i ? "," : "");
        buffet__append_quoted(out, cap, &len, t.name, false);
        buffet__append(out, cap, &len,
            "\",\"bytes\":%zu,\"count\":%zu,\"peak_bytes\":%zu,\"total_bytes\":%llu,\"total_count\":%llu,"
            "\"soft_hits\":%llu,\"hard_failures\":%llu}",
            t.bytes, t.count, t.peak_bytes, (unsigned long long)t.total_bytes, (unsigned long long)t.total_count,
            (unsigned long long)t.soft_hits, (unsigned long long)t.hard_failures);
    }
    buffet__append(out, cap, &len, "]}");
    return len;
}

/* >>growable arrays */
BUFFET_API void buffet_frame_vec_init(buffet_frame_vec *v, buffet_frame_arena *a, size_t elem_size, size_t align) {
    if (!v) return;
    memset(v, 0, sizeof *v);
    v->arena = a;
    v->elem_size = elem_size;
    v->align = align ? align : BUFFET_DEFAULT_ALIGN;
}

BUFFET_API void *buffet_frame_vec_push(buffet_frame_vec *v, const void *elem) {
    unsigned char *slot;
    if (!v || !v->arena || v->elem_size == 0 || !elem) return NULL;
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8, old_bytes = v->cap * v->elem_size, bytes;
        void *p;
        if (!buffet_mul(cap, v->elem_size, &bytes)) return buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "the array's size overflows");
        /* Data handed on by a transfer stays the receiver's: the array then moves. */
        if (v->data && buffet__frame_resize(buffet__frame_of(v->arena), v->data, old_bytes, bytes, BUFFET_NO_SITE, false)) {
            v->cap = cap;
        } else {
            p = buffet_frame_alloc(v->arena, bytes, v->align);
            if (!p) return NULL;
            if (v->len) memcpy(p, v->data, v->len * v->elem_size);
            v->data = p;
            v->cap = cap;
        }
    }
    slot = (unsigned char *)v->data + v->len * v->elem_size;
    memcpy(slot, elem, v->elem_size);
    v->len++;
    return slot;
}

/* >>transfers */
static void buffet__frame_pin_release(buffet_pin *pin) {
    buffet_frame_transfer_release((buffet_frame_transfer *)pin);
}

BUFFET_API buffet_frame_transfer *buffet_frame_transfer_send_at(buffet_frame_arena *fa, void *ptr, size_t size, buffet_site site) {
    buffet__frame *a = buffet__frame_of(fa);
    buffet_frame_chunk *c;
    buffet_frame_transfer *t;
    unsigned char *p = (unsigned char *)ptr;
    if (!a || !ptr) return (buffet_frame_transfer *)buffet_alloc_fail(BUFFET_ERR_INVALID, "no arena or pointer");
    if (!a->in_frame) {
        a->misuse++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "transfer_send" BUFFET__AT " outside a frame", BUFFET__AT_ARGS(site));
        return (buffet_frame_transfer *)buffet_alloc_fail(BUFFET_ERR_STATE, "no frame begun");
    }
    if (!a->parent_safe) {
        /* The last release may free the chunk on the receiver's thread, into the parent. */
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_THREAD,
                    "transfer_send: the arena's parent allocator serves one thread, but a transfer may free its chunk on another");
        return (buffet_frame_transfer *)buffet_alloc_fail(BUFFET_ERR_THREAD, "the arena's parent is not thread-safe");
    }
    for (c = a->slots[a->frame % a->in_flight]; c; c = c->next)
        if (p >= c->data && p < c->data + c->size && size <= (size_t)(c->data + c->size - p)) break;
    if (!c || (c == a->pub.chunk && size > (size_t)(a->pub.cur - p))) {
        a->misuse++;
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN, "transfer_send of %p (%zu bytes)" BUFFET__AT ": not memory of this frame",
                    ptr, size, BUFFET__AT_ARGS(site));
        return (buffet_frame_transfer *)buffet_alloc_fail(BUFFET_ERR_FOREIGN, "not memory of this frame");
    }
    /* Relaxed: only this (the arena's) thread adds references and others only drop them, so a
       stale value can only be too high: the limit is never passed. */
    if (BUFFET__LOAD(&c->refs, BUFFET__RELAXED) == UINT32_MAX) {
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "transfer_send: the chunk holds %u transfers already", UINT32_MAX - 1);
        return (buffet_frame_transfer *)buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "too many transfers from one chunk");
    }
    t = (buffet_frame_transfer *)buffet_alloc(a->parent, sizeof *t, BUFFET_ALIGNOF(buffet_frame_transfer), site);
    if (!t) {
        const char *why;
        buffet_result r = buffet_alloc_error(&why);
        BUFFET__LOG(&a->log, BUFFET_LOG_ERROR, r, "transfer_send: parent allocator failed: %s", why);
        return (buffet_frame_transfer *)buffet_alloc_fail(r, why);
    }
    memset(t, 0, sizeof *t);
    t->pin.release = buffet__frame_pin_release;
    t->chunk = c;
    t->ptr = ptr;
    t->size = size;
    t->frame = a->frame;
    t->next = c->transfers;
    c->transfers = t;
    /* Relaxed: the arena holds a reference, so the chunk cannot go meanwhile; the handle (and this
       count) reach the receiver through the user's own hand-off, which orders them. */
    BUFFET__FETCH_ADD(&c->refs, 1, BUFFET__RELAXED);
    a->transfers_sent++;
    return t;
}

BUFFET_API void *buffet_frame_transfer_receive(buffet_frame_transfer *t, size_t *size) {
    if (!t) return NULL;
    BUFFET__STORE(&t->received, 1u, BUFFET__RELAXED);   /* relaxed: a flag for a warning only (buffet__frame_scan_pinned) */
    if (size) *size = t->size;
    return t->ptr;
}

BUFFET_API void buffet_frame_transfer_release(buffet_frame_transfer *t) {
    buffet_frame_chunk *c;
    if (!t) return;
    c = t->chunk;
    /* After this the arena may reuse the chunk and free t: touch neither unless we were last.
       Acq_rel: release so that our reads of the memory happen before the arena's reuse (its
       acquire load of refs) or another holder's free; acquire so that, when we are last, every
       other holder's accesses (the arena's included) happen before our free. */
    if (BUFFET__FETCH_SUB(&c->refs, 1, BUFFET__ACQ_REL) == 1) buffet__chunk_free(c);
}

/* >>barriers */
BUFFET_API buffet_result buffet_frame_barrier_init(buffet_frame_barrier *b, uint32_t n) {
    if (!b || n == 0) return BUFFET_ERR_INVALID;
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->n = n;
    return BUFFET_OK;
}

BUFFET_API void buffet_frame_barrier_deinit(buffet_frame_barrier *b) {
    if (!b || b->n == 0) return;
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    b->n = 0;
}

BUFFET_API bool buffet_frame_barrier_wait(buffet_frame_barrier *b) {
    uint64_t gen;
    bool last;
    if (!b || b->n == 0) return false;
    pthread_mutex_lock(&b->mu);
    gen = b->generation;
    last = ++b->waiting == b->n;
    if (last) {
        b->waiting = 0;
        b->generation++;
        pthread_cond_broadcast(&b->cv);
    } else {
        while (gen == b->generation) pthread_cond_wait(&b->cv, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return last;
}

/* >>scopes: an arena. Small allocations are bumps in blocks taken from the parent (each block's
   header, then its bytes); large ones are parent allocations of their own, each with a header,
   in a list of their own; deferred actions are entries in the blocks, in a list of their own.
   The end runs the actions, then gives the large allocations and the blocks back. */
struct buffet__scope_block {
    buffet__scope_block *prev;
    size_t size;                     /* bytes of the parent allocation, header included */
};
struct buffet__scope_large {
    buffet__scope_large *prev, *next;
    size_t size, align, offset;      /* offset: header to user bytes; the parent block is offset + size */
};
struct buffet_scope_entry {
    buffet_scope_entry *prev;
    void (*fn)(void *arg);
    void *arg;
};

#define BUFFET__SCOPE_HDR ((size_t)16)                 /* a block's header, rounded to the grain */
#define BUFFET__SCOPE_FIRST ((size_t)4 << 10)          /* the first block */
#define BUFFET__SCOPE_MAX_BLOCK ((size_t)64 << 10)     /* blocks double up to this */
#define BUFFET__SCOPE_LARGE ((size_t)8 << 10)          /* larger requests get a parent allocation */
#define BUFFET__SCOPE_MAX_ALIGN ((size_t)64)           /* more aligned requests too */
typedef char buffet__scope_hdr_fits[sizeof(buffet__scope_block) <= BUFFET__SCOPE_HDR ? 1 : -1];


/* Is s a scope begun and not ended? s may be uninitialised memory (a scope about to begin):
   an atomic load reads it without the compiler assuming anything of it, and valgrind is told
   that reading it is meant. */
static bool buffet__scope_live(const buffet_scope *s) {
    /* Relaxed: a scope is owned by one thread; the loads are atomic only so that the compiler
       assumes nothing of a value that may be uninitialised. */
#if BUFFET__FRAME_VG
    (void)VALGRIND_MAKE_MEM_DEFINED(&s->live, sizeof s->live);
    (void)VALGRIND_MAKE_MEM_DEFINED(&s->active, sizeof s->active);
#endif
    return BUFFET__LOAD(&s->live, BUFFET__RELAXED) == BUFFET__SCOPE_LIVE(s) && BUFFET__LOAD((const unsigned char *)&s->active, BUFFET__RELAXED) == 1;
}

/* Not active, and not garbage either (zeroed, or ended): its logger may be called. A scope
   that never began may be garbage, logger included: such a call is refused without a word. */
static bool buffet__scope_ended(const buffet_scope *s) {
    /* relaxed: as in buffet__scope_live */
    return s->live == 0 && BUFFET__LOAD((const unsigned char *)&s->active, BUFFET__RELAXED) == 0;
}

BUFFET_API buffet_result buffet_scope_begin_at(buffet_scope *s, const buffet_scope_desc *desc, buffet_site site) {
    buffet_scope *outer;
    buffet_logger log;
    buffet_result r;
    if (!s || !desc || s == desc->outer) return BUFFET_ERR_INVALID;
    outer = desc->outer;
    if (buffet__scope_live(s)) {
        /* Beginning it anew would drop its allocations and deferred actions. */
        BUFFET__LOG(&s->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                    "scope_begin" BUFFET__AT " of a scope that is active (%zu allocations held): end it first",
                    BUFFET__AT_ARGS(site), s->count);
        if (desc->log.fn && (desc->log.fn != s->log.fn || desc->log.user != s->log.user))
            BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                        "scope_begin" BUFFET__AT " of a scope that is active (%zu allocations held): end it first",
                        BUFFET__AT_ARGS(site), s->count);
        return BUFFET_ERR_STATE;
    }
    log = desc->log.fn || !outer ? desc->log : outer->log;
    if (outer && (!buffet__scope_live(outer) || outer->inner)) {
        BUFFET__LOG(&log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "scope_begin" BUFFET__AT ": the outer scope %s", BUFFET__AT_ARGS(site),
                    buffet__scope_live(outer) ? "already has an active inner scope" : "is not active");
        return BUFFET_ERR_STATE;
    }
    if ((r = buffet__check(desc->parent, BUFFET_NEED_UNTIL_FREED, false, "scope", &log)) != BUFFET_OK) return r;
    memset(s, 0, sizeof *s);
    s->parent = desc->parent;
    s->heap = desc->parent.vtable == NULL;
    s->active = true;
    s->live = BUFFET__SCOPE_LIVE(s);
    s->log = log;
    if (outer) {
        s->outer = outer;
        outer->inner = s;
    }
    return BUFFET_OK;
}

/* >>a thread's spare blocks of scopes over the heap. Each thread's list is its own (no lock);
   a pthread key's destructor frees it when the thread exits. */
#define BUFFET__SCOPE_SPARE_MAX ((size_t)256 << 10)
typedef struct buffet__scope_spares {
    buffet__scope_block *list;
    size_t bytes;
    bool registered;                   /* the key's destructor will free the list */
} buffet__scope_spares;
static __thread buffet__scope_spares buffet__scope_spare;
static pthread_key_t buffet__scope_spare_key;
static pthread_once_t buffet__scope_spare_once = PTHREAD_ONCE_INIT;
static bool buffet__scope_spare_key_ok;

static void buffet__scope_spares_release(void *arg) {
    buffet__scope_spares *sp = (buffet__scope_spares *)arg;
    buffet__scope_block *b;
    while ((b = sp->list) != NULL) {
        sp->list = b->prev;
        BUFFET__UNPOISON((unsigned char *)b + BUFFET__SCOPE_HDR, b->size - BUFFET__SCOPE_HDR);
        buffet_free(buffet_heap(), b, b->size, BUFFET__FRAME_GRAIN, BUFFET_SITE);
    }
    sp->bytes = 0;
}
static void buffet__scope_spare_key_init(void) {
    buffet__scope_spare_key_ok =
        pthread_key_create(&buffet__scope_spare_key, buffet__scope_spares_release) == 0;
}

/* Keep block b (of a scope over the heap) for this thread's next scope, if there is room and
   the thread's list will be freed at its exit. False: the caller frees it. */
static bool buffet__scope_spare_put(buffet__scope_block *b) {
    buffet__scope_spares *sp = &buffet__scope_spare;
#if BUFFET__FRAME_VG
    if (RUNNING_ON_VALGRIND) return false;
#endif
    if (sp->bytes + b->size > BUFFET__SCOPE_SPARE_MAX) return false;
    if (!sp->registered) {
        pthread_once(&buffet__scope_spare_once, buffet__scope_spare_key_init);
        if (!buffet__scope_spare_key_ok || pthread_setspecific(buffet__scope_spare_key, sp) != 0)
            return false;
        sp->registered = true;
    }
    BUFFET__POISON((unsigned char *)b + BUFFET__SCOPE_HDR, b->size - BUFFET__SCOPE_HDR);
    b->prev = sp->list;
    sp->list = b;
    sp->bytes += b->size;
    return true;
}

/* A spare block of at least `least` bytes, or NULL. */
static buffet__scope_block *buffet__scope_spare_take(size_t least) {
    buffet__scope_spares *sp = &buffet__scope_spare;
    buffet__scope_block **pp, *b;
    for (pp = &sp->list; (b = *pp) != NULL; pp = &b->prev)
        if (b->size >= least) {
            *pp = b->prev;
            sp->bytes -= b->size;
            return b;
        }
    return NULL;
}

/* Take a block able to hold `need` more bytes (a multiple of the grain, with any alignment
   padding): a spare of this thread (a scope over the heap), else from the parent: the next
   block size, or just enough when that is more, or when the parent refuses the full size (a
   parent with little room still serves small requests). False: the parent's reason, logged. */
static bool buffet__scope_new_block(buffet_scope *s, size_t need, buffet_site site) {
    size_t std = s->next_block ? s->next_block : BUFFET__SCOPE_FIRST, want = std;
    size_t least = BUFFET__SCOPE_HDR + need;
    buffet__scope_block *b = s->heap ? buffet__scope_spare_take(least) : NULL;
    if (b) {
        want = b->size;
    } else {
        if (want < least) want = least;
        b = (buffet__scope_block *)buffet_alloc(s->parent, want, BUFFET__FRAME_GRAIN, site);
        if (!b && want > least)
            b = (buffet__scope_block *)buffet_alloc(s->parent, want = least, BUFFET__FRAME_GRAIN, site);
        if (!b) {
            const char *why;
            buffet_result r = buffet_alloc_error(&why);
            BUFFET__LOG(&s->log, BUFFET_LOG_ERROR, r, "scope" BUFFET__AT ": a %zu-byte block failed: %s",
                        BUFFET__AT_ARGS(site), want, why);
            buffet_alloc_fail(r, why);
            return false;
        }
        b->size = want;
    }
    b->prev = s->blocks;
    s->blocks = b;
    s->cur = (unsigned char *)b + BUFFET__SCOPE_HDR;
    s->lim = (unsigned char *)b + (want & ~(BUFFET__FRAME_GRAIN - 1));
    /* Blocks double while they come at the standard size (a spare counts as what it is). */
    if (want >= std) {
        std = want > std ? want : std;
        s->next_block = std < BUFFET__SCOPE_MAX_BLOCK ? std * 2 : std;
        if (s->next_block > BUFFET__SCOPE_MAX_BLOCK) s->next_block = BUFFET__SCOPE_MAX_BLOCK;
    }
    BUFFET__POISON(s->cur, (size_t)(s->lim - s->cur));
#if BUFFET_TRACK_VALGRIND
    VALGRIND_CREATE_MEMPOOL(b, 0, 0);
#endif
    return true;
}

/* size bytes (at most BUFFET__SCOPE_LARGE) at align (at most BUFFET__SCOPE_MAX_ALIGN) from the
   blocks, a new one if the current one has no room. NULL: the parent's reason. */
static unsigned char *buffet__scope_bump(buffet_scope *s, size_t size, size_t align, buffet_site site) {
    size_t rsize = (size + (BUFFET__FRAME_GRAIN - 1)) & ~(BUFFET__FRAME_GRAIN - 1), pad;
    size_t slack = align > BUFFET__FRAME_GRAIN ? align - BUFFET__FRAME_GRAIN : 0;   /* padding at worst */
    unsigned char *p;
    for (;;) {
        pad = s->blocks ? (size_t)(-(uintptr_t)s->cur & (uintptr_t)(align - 1)) : 0;
        if (s->blocks && pad <= (size_t)(s->lim - s->cur) && rsize <= (size_t)(s->lim - s->cur) - pad) break;
        if (!buffet__scope_new_block(s, rsize + slack, site)) return NULL;
    }
    p = s->cur + pad;
    s->cur = p + rsize;
    BUFFET__UNPOISON(p, size);
#if BUFFET_TRACK_VALGRIND
    VALGRIND_MEMPOOL_ALLOC(s->blocks, p, size);
#endif
    return p;
}

/* A large allocation: a parent allocation of its own, its header just before the user bytes. */
static void *buffet__scope_large_alloc(buffet_scope *s, size_t size, size_t align, buffet_site site) {
    size_t off, total;
    buffet__scope_large *e;
    if (align < BUFFET_ALIGNOF(buffet__scope_large)) align = BUFFET_ALIGNOF(buffet__scope_large);
    off = (sizeof(buffet__scope_large) + align - 1) & ~(align - 1);
    if (!buffet_add(off, size, &total))
        return buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "size plus the scope's header overflows");
    e = (buffet__scope_large *)buffet_alloc(s->parent, total, align, site);
    if (!e) {
        const char *why;
        buffet_result r = buffet_alloc_error(&why);
        BUFFET__LOG(&s->log, BUFFET_LOG_ERROR, r, "scope_alloc of %zu bytes" BUFFET__AT ": parent allocator failed: %s",
                    size, BUFFET__AT_ARGS(site), why);
        return buffet_alloc_fail(r, why);
    }
    e->prev = s->large;
    e->next = NULL;
    if (s->large) s->large->next = e;
    e->size = size;
    e->align = align;
    e->offset = off;
    s->large = e;
    return (unsigned char *)e + off;
}

static void buffet__scope_large_free(buffet_scope *s, buffet__scope_large *e) {
    if (e->next) e->next->prev = e->prev;
    else s->large = e->prev;
    if (e->prev) e->prev->next = e->next;
    buffet_free(s->parent, e, e->offset + e->size, e->align, BUFFET_SITE);
}

BUFFET_API void *buffet__scope_alloc_slow(buffet_scope *s, size_t size, size_t align, buffet_site site) {
    void *p;
    if (!s || !buffet_is_pow2(align)) return buffet_alloc_fail(BUFFET_ERR_INVALID, "no scope, or the alignment is not a power of two");
    if (size == 0) return NULL;
    if (!buffet__scope_live(s)) {
        if (buffet__scope_ended(s))
            BUFFET__LOG(&s->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "scope_alloc of %zu bytes" BUFFET__AT " in a scope that is not active",
                        size, BUFFET__AT_ARGS(site));
        return buffet_alloc_fail(BUFFET_ERR_STATE, "the scope is not active");
    }
    if (size > BUFFET__FRAME_MAX_ALLOC || align > BUFFET__FRAME_MAX_ALLOC)   /* hostile sizes never reach the parent */
        return buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "the size is larger than any allocation can be");
    if (size > BUFFET__SCOPE_LARGE || align > BUFFET__SCOPE_MAX_ALIGN)
        p = buffet__scope_large_alloc(s, size, align, site);
    else p = buffet__scope_bump(s, size, align, site);
    if (!p) return NULL;
    s->count++;
    s->bytes += size;
    return p;
}

BUFFET_API buffet_result buffet_scope_defer_at(buffet_scope *s, void (*fn)(void *arg), void *arg, buffet_site site) {
    buffet_scope_entry *e;
    if (!s || !fn) return BUFFET_ERR_INVALID;
    if (!buffet__scope_live(s)) {
        if (buffet__scope_ended(s))
            BUFFET__LOG(&s->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "scope_defer" BUFFET__AT " in a scope that is not active",
                        BUFFET__AT_ARGS(site));
        return BUFFET_ERR_STATE;
    }
    e = (buffet_scope_entry *)buffet__scope_bump(s, sizeof *e, BUFFET_ALIGNOF(buffet_scope_entry), site);
    if (!e) return buffet_alloc_error(NULL);
    e->prev = s->defers;
    e->fn = fn;
    e->arg = arg;
    s->defers = e;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_scope_end_at(buffet_scope *s, buffet_site site) {
    buffet_scope_entry *e;
    buffet__scope_large *l;
    buffet__scope_block *b;
    if (!s) return BUFFET_ERR_INVALID;
    if (!buffet__scope_live(s)) {
        if (buffet__scope_ended(s))
            BUFFET__LOG(&s->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "scope_end" BUFFET__AT " of a scope that is not active",
                        BUFFET__AT_ARGS(site));
        return BUFFET_ERR_STATE;
    }
    if (s->inner) buffet_scope_end_at(s->inner, site);
    /* The actions may allocate and defer more in this scope (it is still active): taken from
       the list head each time, so those run too, and their memory goes below. */
    while ((e = s->defers) != NULL) {
        s->defers = e->prev;
        e->fn(e->arg);
    }
    while ((l = s->large) != NULL) buffet__scope_large_free(s, l);
    while ((b = s->blocks) != NULL) {
        s->blocks = b->prev;
#if BUFFET_TRACK_VALGRIND
        VALGRIND_DESTROY_MEMPOOL(b);
#endif
        if (s->heap && buffet__scope_spare_put(b)) continue;
        BUFFET__UNPOISON((unsigned char *)b + BUFFET__SCOPE_HDR, b->size - BUFFET__SCOPE_HDR);
        buffet_free(s->parent, b, b->size, BUFFET__FRAME_GRAIN, BUFFET_SITE);
    }
    s->cur = s->lim = NULL;
    s->count = s->bytes = 0;
    s->next_block = 0;
    if (s->outer) s->outer->inner = NULL;
    s->outer = NULL;
    s->active = false;
    s->live = 0;
    return BUFFET_OK;
}

static void *buffet__scope_vt_alloc(void *self, size_t size, size_t align, buffet_site site) {
    return buffet_scope_alloc_at((buffet_scope *)self, size, align, site);
}
static void buffet__scope_vt_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    buffet_scope *s = (buffet_scope *)self;
    unsigned char *p = (unsigned char *)ptr;
    buffet__scope_large *l;
    (void)align; (void)site;
    if (!p || !buffet__scope_live(s)) return;
    /* A large one goes at once (newest first: frees in reverse order find theirs at once). */
    for (l = s->large; l; l = l->prev)
        if ((unsigned char *)l + l->offset == p) {
            s->count--;
            s->bytes -= l->size;
            buffet__scope_large_free(s, l);
            return;
        }
    /* A small one only if it is the newest bytes of the current block. Each starts on the grain:
       a pointer off it (into a block) must not leave cur off it. */
    if (s->blocks && p >= (unsigned char *)s->blocks + BUFFET__SCOPE_HDR && p <= s->cur && size > 0 &&
        ((uintptr_t)p & (BUFFET__FRAME_GRAIN - 1)) == 0 &&
        size <= (size_t)(s->cur - p) && (size_t)(s->cur - p) - size < BUFFET__FRAME_GRAIN) {
#if BUFFET_TRACK_VALGRIND
        VALGRIND_MEMPOOL_FREE(s->blocks, p);
#endif
        BUFFET__POISON(p, (size_t)(s->cur - p));
        s->cur = p;
        s->count--;
        s->bytes -= size;
    }
}
static uint32_t buffet__scope_vt_contract(const void *self) {
    (void)self;
    return 0;   /* blocks die with the scope, on its owner's thread */
}
static const buffet_allocator_vtable buffet__scope_vtable = {
    buffet__scope_vt_alloc, NULL, buffet__scope_vt_free, NULL, buffet__scope_vt_contract, NULL
};

BUFFET_API buffet_allocator buffet_scope_allocator(buffet_scope *s) {
    return buffet_allocator_of(s, &buffet__scope_vtable);
}

/* >>object pools
   Objects live in slabs (one parent allocation each: header, a state byte per object, objects).
   Free objects are pointers: in the caches (arrays) and in the shared store, a lock-free ring
   (see >>store ring) that caches fill and drain half a cache at a time with one CAS each; the
   mutex serialises growth, the store's replacement by a larger ring, statistics and the end of
   a destroyed pool. Nothing is written into a free object, so a get or put never touches the
   object's cache line. A put finds its object's slab through the cache's hint (the slab of the
   latest object) or a hash table of slabs keyed by address, and claims the object back by
   exchanging its state byte: a pointer that is no object, or an object already back, is refused
   without being read or written. */
typedef struct buffet__slab {
    buffet__pool_span span;    /* first: what a cache's hint points to */
    struct buffet__slab *next;
    size_t n, block;           /* objects; bytes of the parent allocation */
} buffet__slab;

/* The slabs by address: an entry per slab for each 2^key_shift-byte block of addresses it
   touches (one or two: no slab is larger). Insert-only, linear probing, at most half full. A
   full table is copied into one twice its size and kept until the pool goes, since a lookup
   without the lock may still be reading it. */
typedef struct buffet__slab_tab {
    struct buffet__slab_tab *older;
    size_t mask, used, block;
    unsigned bits;
    buffet__slab **e;          /* atomic entries */
} buffet__slab_tab;

/* >>store ring: a bounded multi-producer multi-consumer ring of object pointers, moved in
   batches. A side claims [head, head+n) with one CAS on its head, copies, then publishes by
   moving its tail once every earlier claim on that side has published; the tails carry the
   slots' contents (release/acquire). Indices are 64-bit and never wrap in practice; the top bit
   of a head marks the ring closed (being replaced by a larger one, under the pool's mutex):
   whoever meets it goes the locked way. The capacity is a power of two at least the objects
   created, so a put of objects that were out always finds room (see buffet__pool_ring_put).
   Replaced rings are kept until the pool goes: a thread may still be reading one's head. The
   header and the slots are two parent allocations of natural alignment, the header placed on a
   line boundary inside its block (a pool behind another pool's cache serves small, modestly
   aligned blocks only: the old array store asked for no more). */
typedef struct buffet__pool_ring {
    size_t mask;               /* capacity - 1 */
    void **slots;              /* capacity pointers (a parent allocation of their own) */
    struct buffet__pool_ring *older;
    void *raw;                 /* the parent allocation holding this header */
    char pad0_[64 - sizeof(size_t) - 3 * sizeof(void *)];
    uint64_t prod_head, prod_tail;   /* atomic */
    char pad1_[64 - 2 * sizeof(uint64_t)];
    uint64_t cons_head, cons_tail;   /* atomic */
    char pad2_[64 - 2 * sizeof(uint64_t)];
} buffet__pool_ring;

#define BUFFET__POOL_RING_CLOSED ((uint64_t)1 << 63)
#define BUFFET__POOL_RING_BLOCK (sizeof(buffet__pool_ring) + 64)   /* room to align the header */

struct buffet_pool {
    pthread_mutex_t mu;
    buffet__pool_ring *ring;   /* the shared store (atomic pointer: replaced under mu) */
    size_t obj_size, align, stride, slab_objs, max, created, nslabs;
    unsigned key_shift;        /* 2^key_shift >= the bytes of any slab */
    uint64_t magic;            /* ceil(2^64 / stride), for buffet__pool_div */
    buffet__slab *slabs;       /* under mu */
    buffet__slab_tab *tab;     /* atomic: lookups read it without the lock */
    buffet_pool_cache *caches;
    size_t ncaches;
    bool checks, dying;        /* dying (atomic, written under mu): destroyed by its owner, released
                                  when everything is back */
    buffet_allocator parent;
    buffet_site site;          /* of the create: named by leak reports of slabs grown later */
    buffet_logger log;
    uint64_t gets, puts, failures, double_puts, foreign_puts;
};

#define BUFFET__POOL_MAX_OBJS ((size_t)1 << 32)
#define BUFFET__POOL_MAX_BYTES ((size_t)1 << 48)   /* of objects: more is no machine's memory */
#define BUFFET__POOL_MAX_STRIDE ((size_t)1 << 31)
#define BUFFET__POOL_MAX_SLAB (((size_t)1 << 32) - 1)   /* bytes of objects in one slab */

static size_t buffet__slab_hash(uintptr_t key, unsigned bits) {
    return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* Enter slab s in table t (called locked, with room in t). */
static void buffet__slab_enter(buffet__slab_tab *t, buffet__slab *s, unsigned key_shift) {
    uintptr_t k = (uintptr_t)s->span.objs >> key_shift, last = ((uintptr_t)s->span.objs + s->span.bytes - 1) >> key_shift;
    for (; k <= last; k++) {
        size_t h = buffet__slab_hash(k, t->bits);
        /* Relaxed: entries are written only under the pool's lock, so this thread saw them all. */
        while (BUFFET__LOAD(&t->e[h], BUFFET__RELAXED)) h = (h + 1) & t->mask;
        /* Release: pairs with buffet__pool_find's acquire, which then sees the slab's fields. */
        BUFFET__STORE(&t->e[h], s, BUFFET__RELEASE);
    }
    /* Counted as the 2 entries reserved for it (a key page holds a whole slab, so it takes 1 or
       2), not as the ones it took: the table then grows at the same slab counts wherever the
       parent puts slabs, and a pool makes the same parent calls from run to run. */
    t->used += 2;
}

/* Room in the table for `need` more entries, copying it into a larger one if it must (called
   locked). False: the parent failed (its reason recorded), and nothing changed. */
static bool buffet__slab_reserve(buffet_pool *p, size_t need) {
    buffet__slab_tab *t = p->tab, *nt;
    buffet__slab *s;
    size_t cap = t ? t->mask + 1 : 16, used = t ? t->used : 0, block;
    unsigned bits = 4;
    if (t && (used + need) * 2 <= cap) return true;
    while (cap < (used + need) * 2) cap *= 2;
    while (((size_t)1 << bits) < cap) bits++;
    block = sizeof *nt + cap * sizeof(buffet__slab *);
    nt = (buffet__slab_tab *)buffet_alloc(p->parent, block, BUFFET_ALIGNOF(buffet__slab_tab), p->site);
    if (!nt) return false;
    memset(nt, 0, block);
    nt->e = (buffet__slab **)(nt + 1);
    nt->mask = cap - 1;
    nt->bits = bits;
    nt->block = block;
    for (s = p->slabs; s; s = s->next) buffet__slab_enter(nt, s, p->key_shift);
    nt->older = t;
    /* Release: pairs with buffet__pool_find's acquire, which then sees the whole table. */
    BUFFET__STORE(&p->tab, nt, BUFFET__RELEASE);
    return true;
}

/* The slab holding obj, or NULL; any thread, no lock. Slabs and tables are only ever added
   (each published whole) until the pool goes. */
static buffet__slab *buffet__pool_find(buffet_pool *p, const void *obj) {
    /* Acquire: pairs with the release that published the table (buffet__slab_reserve). */
    const buffet__slab_tab *t = BUFFET__LOAD(&p->tab, BUFFET__ACQUIRE);
    uintptr_t a = (uintptr_t)obj;
    size_t h = buffet__slab_hash(a >> p->key_shift, t->bits);
    for (;;) {
        /* Acquire: pairs with the release that entered the slab (buffet__slab_enter). */
        buffet__slab *s = BUFFET__LOAD(&t->e[h], BUFFET__ACQUIRE);
        if (!s) return NULL;
        if (a - (uintptr_t)s->span.objs < s->span.bytes) return s;
        h = (h + 1) & t->mask;
    }
}

/* The span holding obj (the cache's hint first, which then follows it unless checks keep it
   empty), or NULL. */
static const buffet__pool_span *buffet__pool_span_of(buffet_pool *p, buffet_pool_cache *c, const void *obj) {
    buffet__slab *s;
    if (c && (uintptr_t)obj - (uintptr_t)c->hint.objs < c->hint.bytes) return &c->hint;
    s = buffet__pool_find(p, obj);
    if (!s) return NULL;
    if (c && !c->checks) c->hint = s->span;
    return &s->span;
}

/* Wait until a side's tail reaches expect: every earlier claim on that side has published.
   Acquire: the earlier claimant's release store of the tail carries its slot writes (or reads),
   and this caller's own release store of the tail passes them on. */
static void buffet__pool_ring_wait(const uint64_t *tail, uint64_t expect) {
    unsigned spins = 0;
    while (BUFFET__LOAD(tail, BUFFET__ACQUIRE) != expect) {
        /* An earlier claimant was preempted between its claim and its publish: let it run. */
        if (++spins > 64) sched_yield();
        else buffet__cpu_relax();
    }
}

/* Objects in the ring (exact when nobody is between a claim and its publish: under the mutex
   with no cache attached, or with every cache idle). Acquire on cons_tail first: the producers'
   publishes that its consumers saw are then seen here too, so the difference is never negative. */
static size_t buffet__pool_ring_count(const buffet__pool_ring *r) {
    uint64_t ct = BUFFET__LOAD(&r->cons_tail, BUFFET__ACQUIRE);
    return (size_t)(BUFFET__LOAD(&r->prod_tail, BUFFET__ACQUIRE) - ct);
}

/* Put up to n pointers. Returns how many went in: n, or fewer only when the ring is full, which
   takes more pointers than objects (copies left by two puts of one object racing on two
   threads, checks off): the caller drops and counts the rest, as the old array store did. 0
   with *closed set: the ring is being replaced; go the locked way.
   Why room is exact: the claim is checked against cons_tail, loaded after the acquire of
   prod_head, which synchronises with every earlier producer's claim (acq_rel CAS); each of
   those producers held its objects only after the consumer that last took them had published
   cons_tail past their slots. So in a correct program the slots seen in use hold distinct
   objects, at most `created` of them, and no producer ever waits for room. */
static size_t buffet__pool_ring_put(buffet__pool_ring *r, void *const *src, size_t n, bool *closed) {
    /* Acquire (and acq_rel on the CAS below): see above. */
    uint64_t head = BUFFET__LOAD(&r->prod_head, BUFFET__ACQUIRE), tail;
    size_t k, i;
    *closed = false;
    for (;;) {
        if (head & BUFFET__POOL_RING_CLOSED) {
            *closed = true;
            return 0;
        }
        /* Acquire, pairing with the consumers' release of cons_tail: their reads of the slots
           below it happen before this producer's writes. */
        tail = BUFFET__LOAD(&r->cons_tail, BUFFET__ACQUIRE);
        if (tail > head) {   /* the head read is older than this tail: read it again */
            head = BUFFET__LOAD(&r->prod_head, BUFFET__ACQUIRE);
            continue;
        }
        k = r->mask + 1 - (size_t)(head - tail);
        if (k > n) k = n;
        if (k == 0) return 0;
        /* acq_rel: the claims form a chain through which each producer sees what the earlier
           ones saw (the room argument above); failure reloads head with acquire for the same. */
        if (BUFFET__CAS(&r->prod_head, &head, head + k, BUFFET__ACQ_REL, BUFFET__ACQUIRE)) break;
    }
    for (i = 0; i < k; i++) r->slots[(head + i) & r->mask] = src[i];
    buffet__pool_ring_wait(&r->prod_tail, head);
    /* Release, pairing with the consumers' acquire of prod_tail: the slots are written. */
    BUFFET__STORE(&r->prod_tail, head + k, BUFFET__RELEASE);
    return k;
}

/* Take up to n pointers into dst. Returns how many (0: empty, or *closed: being replaced). */
static size_t buffet__pool_ring_take(buffet__pool_ring *r, void **dst, size_t n, bool *closed) {
    /* Acquire here and acq_rel on the CAS: the consumer whose claim this head came from had
       seen prod_tail at least that far, so this thread's load of prod_tail below sees as much
       (the difference is never negative). */
    uint64_t head = BUFFET__LOAD(&r->cons_head, BUFFET__ACQUIRE), avail;
    size_t k, i;
    *closed = false;
    for (;;) {
        if (head & BUFFET__POOL_RING_CLOSED) {
            *closed = true;
            return 0;
        }
        /* Acquire, pairing with the producers' release of prod_tail: the slots below it are
           written before they are read. */
        avail = BUFFET__LOAD(&r->prod_tail, BUFFET__ACQUIRE) - head;
        /* More than the capacity would be a tail older than the head, which the acquires above
           rule out: a last line, read as empty (the caller then takes the locked way). */
        if (avail == 0 || avail > (uint64_t)r->mask + 1) return 0;
        k = avail < n ? (size_t)avail : n;
        if (BUFFET__CAS(&r->cons_head, &head, head + k, BUFFET__ACQ_REL, BUFFET__ACQUIRE)) break;
    }
    for (i = 0; i < k; i++) dst[i] = r->slots[(head + i) & r->mask];
    buffet__pool_ring_wait(&r->cons_tail, head);
    /* Release, pairing with the producers' acquire of cons_tail: these reads finish before a
       producer of the next lap overwrites the slots. */
    BUFFET__STORE(&r->cons_tail, head + k, BUFFET__RELEASE);
    return k;
}

/* Mark a side closed (no new claim succeeds) and wait for the claims already made to publish.
   Returns: the side's final index. acq_rel: the CAS joins the claim chain (see ring_put); the
   wait's acquire makes every published slot write or read visible to the caller. */
static uint64_t buffet__pool_ring_close(uint64_t *head, const uint64_t *tail) {
    uint64_t h = BUFFET__LOAD(head, BUFFET__ACQUIRE);
    while (!BUFFET__CAS(head, &h, h | BUFFET__POOL_RING_CLOSED, BUFFET__ACQ_REL, BUFFET__ACQUIRE)) {}
    buffet__pool_ring_wait(tail, h);
    return h;
}

/* Make the store hold at least need pointers: a new ring (the first, at create), or a larger
   one that takes over the old one's contents. Called locked (so no ring is closed but the one
   being replaced here). False: the parent failed (its reason recorded), nothing changed. */
static bool buffet__pool_ring_reserve(buffet_pool *p, size_t need) {
    buffet__pool_ring *r = p->ring, *nr;   /* written only under the lock: read plainly here */
    size_t cap = r ? r->mask + 1 : 16, n = 0, i;
    void *raw, **slots;
    if (r && cap >= need) return true;
    while (cap < need) cap *= 2;
    /* cap <= 2^32 (at most 2^32 objects): cap * sizeof(void *) does not overflow where it could be met */
    slots = (void **)buffet_alloc(p->parent, cap * sizeof(void *), BUFFET_ALIGNOF(void *), p->site);
    if (!slots) return false;
    raw = buffet_alloc(p->parent, BUFFET__POOL_RING_BLOCK, BUFFET_ALIGNOF(buffet__pool_ring), p->site);
    if (!raw) {
        buffet_free(p->parent, slots, cap * sizeof(void *), BUFFET_ALIGNOF(void *), p->site);
        return false;
    }
    nr = (buffet__pool_ring *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    memset(nr, 0, sizeof *nr);
    nr->mask = cap - 1;
    nr->slots = slots;
    nr->raw = raw;
    nr->older = r;
    if (r) {
        /* Producers first: consumers may go on draining while producers finish; then the
           consumers. After both, nobody is inside the old ring and its contents are stable. */
        uint64_t ph = buffet__pool_ring_close(&r->prod_head, &r->prod_tail);
        uint64_t ch = buffet__pool_ring_close(&r->cons_head, &r->cons_tail);
        n = (size_t)(ph - ch);
        for (i = 0; i < n; i++) nr->slots[i] = r->slots[(ch + i) & r->mask];
    }
    nr->prod_head = nr->prod_tail = n;
    /* Release, pairing with the acquire of p->ring in the lock-free paths: the new ring's
       fields and slots are seen before it is used. */
    BUFFET__STORE(&p->ring, nr, BUFFET__RELEASE);
    return true;
}

/* Add a slab of up to slab_objs objects: up to want of them into dst (*got says how many), the
   rest into the store. Called locked. */
static bool buffet__pool_grow(buffet_pool *p, void **dst, size_t want, size_t *got) {
    size_t n = p->slab_objs, hdr, objs_bytes, block, i, k;
    buffet__slab *s;
    uint8_t *state;
    bool closed;
    *got = 0;
    if (p->created >= p->max) {
        buffet_alloc_fail(BUFFET_ERR_EXHAUSTED, "the pool is at its max");
        return false;
    }
    if (n > p->max - p->created) n = p->max - p->created;
    if (!buffet__pool_ring_reserve(p, p->created + n)) return false;
    /* The sizes were bounded at create (n * stride <= 2^48): no overflow here. */
    hdr = (sizeof(buffet__slab) + n + p->align - 1) & ~(p->align - 1);
    objs_bytes = n * p->stride;
    block = hdr + objs_bytes;
    if (!buffet__slab_reserve(p, 2)) return false;
    s = (buffet__slab *)buffet_alloc(p->parent, block, p->align > 64 ? p->align : 64, p->site);
    if (!s) return false;
    state = (uint8_t *)(s + 1);
    memset(state, 0, n);
    s->span.objs = (unsigned char *)s + hdr;
    s->span.bytes = objs_bytes;
    s->span.state = state;
    s->n = n;
    s->block = block;
    BUFFET__POISON(s->span.objs, objs_bytes);
    s->next = p->slabs;
    p->slabs = s;
    buffet__slab_enter(p->tab, s, p->key_shift);
    p->created += n;
    p->nslabs++;
    /* The first objects to the caller, the rest into the store in address order, a batch at a
       time through a small array (the ring takes whole arrays). */
    k = want < n ? want : n;
    for (i = 0; i < k; i++) dst[i] = s->span.objs + i * p->stride;
    *got = k;
    while (i < n) {
        void *batch[64];
        size_t m = n - i < 64 ? n - i : 64, j, put;
        for (j = 0; j < m; j++) batch[j] = s->span.objs + (i + j) * p->stride;
        put = buffet__pool_ring_put(p->ring, batch, m, &closed);   /* open: only we replace it */
        /* Relaxed: a statistics counter (see buffet__pool_give). */
        if (put < m) BUFFET__FETCH_ADD(&p->double_puts, (uint64_t)(m - put), BUFFET__RELAXED);
        i += m;
    }
    return true;
}

static void buffet__pool_free(buffet_pool *p) {
    buffet__slab *s, *next;
    buffet__slab_tab *t, *older;
    for (s = p->slabs; s; s = next) {
        next = s->next;
        BUFFET__UNPOISON(s->span.objs, s->span.bytes);
        buffet_free(p->parent, s, s->block, p->align > 64 ? p->align : 64, BUFFET_SITE);
    }
    for (t = p->tab; t; t = older) {
        older = t->older;
        buffet_free(p->parent, t, t->block, BUFFET_ALIGNOF(buffet__slab_tab), BUFFET_SITE);
    }
    while (p->ring) {
        buffet__pool_ring *r = p->ring;
        p->ring = r->older;
        buffet_free(p->parent, r->slots, (r->mask + 1) * sizeof(void *), BUFFET_ALIGNOF(void *), BUFFET_SITE);
        buffet_free(p->parent, r->raw, BUFFET__POOL_RING_BLOCK, BUFFET_ALIGNOF(buffet__pool_ring),
                    BUFFET_SITE);
    }
    pthread_mutex_destroy(&p->mu);
    BUFFET_DELETE(p->parent, buffet_pool, p);
}

/* Is a destroyed pool now free of users? Called locked; true means: release it, unlocked. */
static bool buffet__pool_done(const buffet_pool *p) {
    /* No cache attached: every store operation left runs under the lock, so the count is exact. */
    return p->dying && !p->caches && buffet__pool_ring_count(p->ring) == p->created;
}

BUFFET_API buffet_result buffet_pool_create_at(buffet_pool **out, const buffet_pool_desc *desc, buffet_site site) {
    buffet_pool *p;
    size_t align, stride, slab_objs, max, bytes;
    buffet_result r;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    if (!desc || desc->obj_size == 0) return BUFFET_ERR_INVALID;
    align = desc->obj_align;
    if (align == 0) {
        align = 16;
        while (align > 1 && desc->obj_size % align) align /= 2;   /* a 12-byte object needs only 4 */
    }
    if (!buffet_is_pow2(align) || align > 4096 || (desc->max && desc->initial > desc->max) ||
        desc->max > BUFFET__POOL_MAX_OBJS || desc->initial > BUFFET__POOL_MAX_OBJS) {
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "pool: obj_align %zu must be a power of two up to 4096, initial %zu at most max %zu, both at most 2^32",
                    desc->obj_align, desc->initial, desc->max);
        return BUFFET_ERR_INVALID;
    }
    /* Strides (and slabs) stay below 2^32 bytes, so that buffet__pool_div is exact. */
    if (!buffet_align_up(desc->obj_size, align, &stride) || stride > BUFFET__POOL_MAX_STRIDE) {
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "pool: obj_size %zu is too large (at most 2^31 bytes)",
                    desc->obj_size);
        return BUFFET_ERR_OVERFLOW;
    }
    /* Large power-of-two strides put every object in the same few L1 sets: skew them by a line.
       A 1-byte stride becomes 2 (the division needs a stride of 2 or more). */
    if (stride >= 512 && buffet_is_pow2(stride)) stride += align > 64 ? align : 64;
    if (stride == 1) stride = 2;
    slab_objs = desc->slab_objs ? desc->slab_objs : ((size_t)64 << 10) / stride;
    if (slab_objs < 8) slab_objs = 8;
    if (slab_objs > (BUFFET__POOL_MAX_SLAB / stride)) slab_objs = BUFFET__POOL_MAX_SLAB / stride;
    /* Every size the pool will ask for, bounded now: nothing is tried that cannot be. */
    if (!buffet_mul(slab_objs, stride, &bytes) || bytes > BUFFET__POOL_MAX_BYTES ||
        !buffet_mul(desc->initial, stride, &bytes) || bytes > BUFFET__POOL_MAX_BYTES ||
        (desc->max && (!buffet_mul(desc->max, stride, &bytes) || bytes > BUFFET__POOL_MAX_BYTES))) {
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW,
                    "pool: %zu-byte objects (stride %zu) times initial %zu, max %zu or slab_objs %zu overflows or passes 2^48 bytes",
                    desc->obj_size, stride, desc->initial, desc->max, slab_objs);
        return BUFFET_ERR_OVERFLOW;
    }
    max = desc->max ? desc->max : BUFFET__POOL_MAX_OBJS;
    if (max > BUFFET__POOL_MAX_BYTES / stride) max = BUFFET__POOL_MAX_BYTES / stride;
    /* Slabs grow on whichever thread runs dry, and live until the pool goes. */
    r = buffet__check(desc->parent, BUFFET_NEED_UNTIL_FREED | BUFFET_NEED_THREAD_SAFE, false, "pool", &desc->log);
    if (r != BUFFET_OK) return r;
    p = (buffet_pool *)buffet_alloc(desc->parent, sizeof *p, BUFFET_ALIGNOF(buffet_pool), site);
    if (!p) goto fail;
    memset(p, 0, sizeof *p);
    p->obj_size = desc->obj_size;
    p->align = align;
    p->stride = stride;
    p->max = max;
    p->slab_objs = slab_objs;
    for (p->key_shift = 12; ((size_t)1 << p->key_shift) < slab_objs * stride; p->key_shift++) {}
    p->magic = UINT64_MAX / stride + 1;
    p->checks = desc->checks > 0 || (desc->checks == 0 && BUFFET_DEBUG >= 1);
    p->parent = desc->parent;
    p->site = site;
    p->log = desc->log;
    pthread_mutex_init(&p->mu, NULL);
    while (p->created < desc->initial || p->created == 0) {
        size_t want = desc->initial > p->created ? desc->initial - p->created : p->slab_objs, keep = p->slab_objs;
        size_t got;
        if (want < keep) p->slab_objs = want;
        if (!buffet__pool_grow(p, NULL, 0, &got)) {
            p->slab_objs = keep;
            buffet__pool_free(p);
            goto fail;
        }
        p->slab_objs = keep;
    }
    *out = p;
    return BUFFET_OK;
fail: {
        const char *why;
        r = buffet_alloc_error(&why);
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, r, "pool: parent allocator failed: %s", why);
        return r;
    }
}

BUFFET_API void buffet_pool_destroy(buffet_pool *p) {
    size_t out, created, caches;
    buffet_logger log;
    bool done;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    /* Relaxed: the lock-free refills read it only to stop handing out early; whatever they
       take goes to a cache, and a pool with a cache attached is not released. */
    BUFFET__STORE(&p->dying, true, BUFFET__RELAXED);
    done = buffet__pool_done(p);
    out = p->created - buffet__pool_ring_count(p->ring);
    created = p->created;
    caches = p->ncaches;
    log = p->log;   /* once unlocked, the last object coming back may free the pool */
    pthread_mutex_unlock(&p->mu);
    if (done) {
        buffet__pool_free(p);
        return;
    }
    BUFFET__LOG(&log, BUFFET_LOG_WARN, BUFFET_ERR_STATE,
                "pool destroyed with %zu of %zu objects not in the store and %zu caches attached: it is released when they come back",
                out, created, caches);
}

BUFFET_API buffet_result buffet_pool_cache_create_at(buffet_pool_cache **out, buffet_pool *p, uint32_t cap, buffet_site site) {
    buffet_pool_cache *c;
    size_t block;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    if (!p || cap > BUFFET_POOL_CACHE_MAX) return BUFFET_ERR_INVALID;
    if (cap == 0) cap = 64;
    block = sizeof *c + (size_t)cap * sizeof(void *);
    c = (buffet_pool_cache *)buffet_alloc(p->parent, block, BUFFET_ALIGNOF(buffet_pool_cache), site);
    if (!c) return buffet_alloc_error(NULL);
    memset(c, 0, sizeof *c);
    c->pool = p;
    c->cap = cap;
    c->checks = p->checks;
    c->obj_size = p->obj_size;
    c->magic = p->magic;
    c->objs = (void **)(c + 1);
    c->owner = pthread_self();
    pthread_mutex_lock(&p->mu);
    if (p->dying) {
        pthread_mutex_unlock(&p->mu);
        buffet_free(p->parent, c, block, BUFFET_ALIGNOF(buffet_pool_cache), site);
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "pool_cache_create: the pool is being destroyed");
        return BUFFET_ERR_STATE;
    }
    if (!c->checks) c->hint = p->slabs->span;   /* a pool always has a slab */
    c->next = p->caches;
    p->caches = c;
    p->ncaches++;
    pthread_mutex_unlock(&p->mu);
    *out = c;
    return BUFFET_OK;
}

/* The cache's counts into the pool's statistics. Called locked. */
static void buffet__pool_merge_counts(buffet_pool_cache *c) {
    c->pool->gets += c->gets;
    c->pool->puts += c->puts;
    c->gets = c->puts = 0;
}

/* Move up to n pointers from the store to dst (growing the pool if it must). all: n or nothing,
   and n more than the pool could ever hand out fails at once instead of growing towards it. A
   destroyed pool hands out nothing more. Called locked: the ring is open (only a locked
   thread closes one, and it opens the new one before unlocking). */
static size_t buffet__pool_take(buffet_pool *p, void **dst, size_t n, bool all) {
    size_t k, got;
    bool closed;
    if (p->dying) {
        buffet_alloc_fail(BUFFET_ERR_STATE, "the pool is being destroyed");
        return 0;
    }
    if (all && n > buffet__pool_ring_count(p->ring) + (p->max - p->created)) {
        buffet_alloc_fail(BUFFET_ERR_EXHAUSTED, "more objects than the pool can ever hold");
        return 0;
    }
    k = buffet__pool_ring_take(p->ring, dst, n, &closed);
    while (k < n && buffet__pool_grow(p, dst + k, n - k, &got)) {
        k += got;
        /* lock-free puts may have refilled the store meanwhile */
        if (k < n) k += buffet__pool_ring_take(p->ring, dst + k, n - k, &closed);
    }
    return k;   /* all and k < n: the caller gives them back */
}

/* The ring holds a slot for every object created, and a put claims its object back before it
   goes into a cache, so giving back always fits. Were a copy left by two racing puts (checks
   off) ever to fill it, the surplus is dropped (and counted) rather than waited on. Called
   locked (the ring is open), or through buffet__pool_spill. */
static size_t buffet__pool_give(buffet_pool *p, void *const *src, size_t n) {
    bool closed;
    size_t k = buffet__pool_ring_put(p->ring, src, n, &closed);
    /* Relaxed: a statistics counter; nothing is ordered by it. */
    if (k < n) BUFFET__FETCH_ADD(&p->double_puts, (uint64_t)(n - k), BUFFET__RELAXED);
    return k;
}

/* A cache's refill of up to n objects without the lock: 0 when the store is empty or being
   replaced (the caller then takes the locked way), or the pool is destroyed. Relaxed loads of
   dying (see buffet_pool_destroy); acquire of the ring: pairs with the release that
   published it (buffet__pool_ring_reserve). */
static size_t buffet__pool_refill(buffet_pool *p, void **dst, size_t n) {
    bool closed;
    if (BUFFET__LOAD(&p->dying, BUFFET__RELAXED)) return 0;
    return buffet__pool_ring_take(BUFFET__LOAD(&p->ring, BUFFET__ACQUIRE), dst, n, &closed);
}

/* A cache's spill of n objects without the lock; while the ring is being replaced, locked
   (the lock is held until the new ring is published). The statistics stay in the cache
   until its next locked visit (flush, destroy, growth). */
static void buffet__pool_spill(buffet_pool_cache *c, void *const *src, size_t n) {
    buffet_pool *p = c->pool;
    bool closed;
    /* Acquire: see buffet__pool_refill. */
    size_t k = buffet__pool_ring_put(BUFFET__LOAD(&p->ring, BUFFET__ACQUIRE), src, n, &closed);
    if (closed) {
        pthread_mutex_lock(&p->mu);
        buffet__pool_give(p, src, n);
        buffet__pool_merge_counts(c);
        pthread_mutex_unlock(&p->mu);
    } else if (k < n) {
        BUFFET__FETCH_ADD(&p->double_puts, (uint64_t)(n - k), BUFFET__RELAXED);   /* see give */
    }
}

BUFFET_API void buffet_pool_cache_flush(buffet_pool_cache *c) {
    if (!c || !c->pool) return;
    pthread_mutex_lock(&c->pool->mu);
    buffet__pool_give(c->pool, c->objs, c->count);
    buffet__pool_merge_counts(c);
    pthread_mutex_unlock(&c->pool->mu);
    c->count = 0;
}

BUFFET_API void buffet_pool_cache_destroy(buffet_pool_cache *c) {
    buffet_pool *p;
    buffet_pool_cache **pp;
    buffet_allocator parent;
    bool done;
    if (!c || !c->pool) return;
    p = c->pool;
    pthread_mutex_lock(&p->mu);
    buffet__pool_give(p, c->objs, c->count);
    buffet__pool_merge_counts(c);
    for (pp = &p->caches; *pp && *pp != c; pp = &(*pp)->next) {}
    if (*pp) {
        *pp = c->next;
        p->ncaches--;
    }
    done = buffet__pool_done(p);
    parent = p->parent;   /* unless done, a destroyed pool may go on another thread once unlocked */
    pthread_mutex_unlock(&p->mu);
    buffet_free(parent, c, sizeof *c + (size_t)c->cap * sizeof(void *), BUFFET_ALIGNOF(buffet_pool_cache), BUFFET_SITE);
    if (done) buffet__pool_free(p);
}

/* Claim obj back for the pool (c: the putting cache, or NULL): it must be the start of one of
   the pool's objects, and out. Refused otherwise: counted and logged, obj never touched.
   Memory orders of the state bytes, here and in the inline get and put: relaxed. A byte is
   only ever compared with 0 and 1, so its own modification order is all that matters, and the
   object's bytes travel between threads by the store's mutex or by the user's own hand-off
   (which orders a put after the get it follows), never by this byte. The slow paths exchange
   it (of two puts of one object, exactly one reads 1); the inline put loads and then stores it,
   which refuses every double put but two at the very same instant on two threads (the
   caller's own data race): those are caught when the second copy would be handed out, unless
   two gets race as well. With checks on, every put takes this exchange. */
static buffet_result buffet__pool_take_back(buffet_pool *p, buffet_pool_cache *c, void *obj, buffet_site site) {
    const buffet__pool_span *sp = buffet__pool_span_of(p, c, obj);
    bool exact = false;
    size_t i = sp ? buffet__pool_div(p->magic, (size_t)((uintptr_t)obj - (uintptr_t)sp->objs), &exact) : 0;
    if (!sp || !exact) {
        /* Relaxed: a statistics counter. */
        BUFFET__FETCH_ADD(&p->foreign_puts, 1, BUFFET__RELAXED);
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN, "pool put of %p" BUFFET__AT ": %s", obj, BUFFET__AT_ARGS(site),
                    sp ? "inside one of the pool's objects, not at its start" : "not an object of this pool");
        return BUFFET_ERR_FOREIGN;
    }
    if (BUFFET__EXCHANGE(&sp->state[i], (uint8_t)0, BUFFET__RELAXED) != 1) {   /* relaxed: see above */
        BUFFET__FETCH_ADD(&p->double_puts, 1, BUFFET__RELAXED);   /* relaxed: a statistics counter */
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE, "pool put of %p" BUFFET__AT ": already put back", obj,
                    BUFFET__AT_ARGS(site));
        return BUFFET_ERR_DOUBLE_FREE;
    }
    return BUFFET_OK;
}

/* obj leaves the pool for a user: marked out (relaxed: see buffet__pool_take_back; with checks
   off a load and a store, as the inline get). False: it was out already, a copy left by two
   puts racing on two threads, now dropped (counted and logged) instead of handed out twice. */
static bool buffet__pool_handed_out(buffet_pool *p, buffet_pool_cache *c, void *obj) {
    const buffet__pool_span *sp = buffet__pool_span_of(p, c, obj);
    uint8_t *st;
    bool exact, twice;
    BUFFET_ASSERT(sp != NULL);   /* only the pool's own objects are in it */
    st = &sp->state[buffet__pool_div(p->magic, (size_t)((uintptr_t)obj - (uintptr_t)sp->objs), &exact)];
    if (p->checks) {
        twice = BUFFET__EXCHANGE(st, (uint8_t)1, BUFFET__RELAXED) != 0;
    } else {
        twice = BUFFET__LOAD(st, BUFFET__RELAXED) != 0;
        if (!twice) BUFFET__STORE(st, (uint8_t)1, BUFFET__RELAXED);
    }
    if (twice) {
        BUFFET__FETCH_ADD(&p->double_puts, 1, BUFFET__RELAXED);   /* relaxed: a statistics counter */
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE,
                    "pool object %p was in the pool twice (two threads put it back at once): one copy dropped", obj);
        return false;
    }
    BUFFET__UNPOISON(obj, p->obj_size);
    return true;
}

/* An allocation the pool cannot serve: counted, logged, and the reason recorded. The failed
   growth just recorded why: the pool at its max, or the parent's reason (kept, not hidden). */
static void *buffet__pool_exhausted(buffet_pool *p) {
    const char *why;
    buffet_result r = buffet_alloc_error(&why);
    if (r != BUFFET_ERR_EXHAUSTED) {
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, r, "pool of %zu-byte objects cannot hand out more: %s", p->obj_size, why);
        return buffet_alloc_fail(r, why);
    }
    BUFFET__LOG(&p->log, BUFFET_LOG_WARN, BUFFET_ERR_EXHAUSTED, "pool of %zu-byte objects exhausted (max %zu): %s",
                p->obj_size, p->max, why);
    return buffet_alloc_fail(BUFFET_ERR_EXHAUSTED, why);
}

BUFFET_API void *buffet__pool_get_slow(buffet_pool_cache *c) {
    buffet_pool *p;
    void *o;
    if (!c || !c->pool) return buffet_alloc_fail(BUFFET_ERR_INVALID, "no pool cache");
    p = c->pool;
    do {
        if (c->count == 0) {
            uint32_t want = c->cap / 2 ? c->cap / 2 : 1;
            c->count = (uint32_t)buffet__pool_refill(p, c->objs, want);
            if (c->count == 0) {   /* empty (growth), being replaced, or destroyed: locked */
                pthread_mutex_lock(&p->mu);
                c->count = (uint32_t)buffet__pool_take(p, c->objs, want, false);
                buffet__pool_merge_counts(c);
                if (c->count == 0) p->failures++;
                pthread_mutex_unlock(&p->mu);
                if (c->count == 0) return buffet__pool_exhausted(p);
            }
        }
        o = c->objs[--c->count];
    } while (!buffet__pool_handed_out(p, c, o));
    c->gets++;
    return o;
}

BUFFET_API buffet_result buffet__pool_put_slow(buffet_pool_cache *c, void *obj, buffet_site site) {
    buffet_pool *p;
    buffet_result r;
    if (!c || !c->pool || !obj) return BUFFET_ERR_INVALID;
    p = c->pool;
    if ((r = buffet__pool_take_back(p, c, obj, site)) != BUFFET_OK) return r;
    BUFFET__POISON(obj, p->obj_size);
    if (c->count == c->cap) {
        uint32_t half = c->cap / 2 ? c->cap / 2 : 1;
        buffet__pool_spill(c, c->objs + c->count - half, half);
        c->count -= half;
    }
    c->objs[c->count++] = obj;
    c->puts++;
    return BUFFET_OK;
}

BUFFET_API size_t buffet_pool_get_bulk(buffet_pool_cache *c, void **objs, size_t n) {
    buffet_pool *p;
    size_t have, i;
    if (!c || !c->pool || !objs || n == 0) return 0;
    p = c->pool;
    /* Take the cache's share, then the rest straight from the store, all or nothing. */
    have = c->count < n ? c->count : n;
    c->count -= (uint32_t)have;
    memcpy(objs, c->objs + c->count, have * sizeof(void *));
    if (have < n) {
        pthread_mutex_lock(&p->mu);
        have += buffet__pool_take(p, objs + have, n - have, true);
        if (have < n) {
            buffet__pool_give(p, objs, have);
            p->failures++;
        }
        buffet__pool_merge_counts(c);
        pthread_mutex_unlock(&p->mu);
        if (have < n) {
            buffet__pool_exhausted(p);
            return 0;
        }
    }
    /* Each marked out: through the cache's hint as the inline get does, else the slow way. A
       copy left by racing puts is dropped; the others go back to the store, and the call fails
       (all or nothing). */
    for (i = 0; i < n; i++) {
        size_t off = (size_t)((uintptr_t)objs[i] - (uintptr_t)c->hint.objs);
        if (off < c->hint.bytes) {
            bool exact;
            uint8_t *st = &c->hint.state[buffet__pool_div(c->magic, off, &exact)];
            if (BUFFET__LOAD(st, BUFFET__RELAXED) == 0) {   /* relaxed: see buffet__pool_take_back */
                BUFFET__STORE(st, (uint8_t)1, BUFFET__RELAXED);
                BUFFET__UNPOISON(objs[i], p->obj_size);
                continue;
            }
        }
        if (!buffet__pool_handed_out(p, c, objs[i])) {
            size_t j;
            for (j = 0; j < i; j++) {
                BUFFET__POISON(objs[j], p->obj_size);
                buffet__pool_take_back(p, c, objs[j], BUFFET_NO_SITE);
            }
            pthread_mutex_lock(&p->mu);
            buffet__pool_give(p, objs, i);
            buffet__pool_give(p, objs + i + 1, n - i - 1);
            p->failures++;
            pthread_mutex_unlock(&p->mu);
            return 0;
        }
    }
    c->gets += n;
    return n;
}

BUFFET_API buffet_result buffet_pool_put_bulk_at(buffet_pool_cache *c, void *const *objs, size_t n, buffet_site site) {
    buffet_result r = BUFFET_OK;
    size_t i;
    if (!c || !c->pool || (!objs && n)) return BUFFET_ERR_INVALID;
    for (i = 0; i < n; i++) {
        buffet_result one = buffet_pool_put_at(c, objs[i], site);
        if (one != BUFFET_OK) r = one;
    }
    return r;
}

BUFFET_API void *buffet_pool_get_shared(buffet_pool *p) {
    void *o = NULL;
    size_t k;
    if (!p) return buffet_alloc_fail(BUFFET_ERR_INVALID, "no pool");
    pthread_mutex_lock(&p->mu);
    k = buffet__pool_take(p, &o, 1, true);
    if (k) p->gets++;
    else p->failures++;
    pthread_mutex_unlock(&p->mu);
    if (!k) return buffet__pool_exhausted(p);
    if (!buffet__pool_handed_out(p, NULL, o)) return buffet_pool_get_shared(p);   /* a dropped copy: again */
    return o;
}

BUFFET_API buffet_result buffet_pool_put_shared_at(buffet_pool *p, void *obj, buffet_site site) {
    buffet_result r;
    bool done;
    if (!p || !obj) return BUFFET_ERR_INVALID;
    if ((r = buffet__pool_take_back(p, NULL, obj, site)) != BUFFET_OK) return r;
    BUFFET__POISON(obj, p->obj_size);
    pthread_mutex_lock(&p->mu);
    buffet__pool_give(p, &obj, 1);
    p->puts++;
    done = buffet__pool_done(p);
    pthread_mutex_unlock(&p->mu);
    if (done) buffet__pool_free(p);
    return BUFFET_OK;
}

/* The allocator face: the cache on its own thread, the shared store on any other. */
static void *buffet__pool_vt_alloc(void *self, size_t size, size_t align, buffet_site site) {
    buffet_pool_cache *c = (buffet_pool_cache *)self;
    (void)site;
    if (size > c->pool->obj_size || align > c->pool->align)
        return buffet_alloc_fail(BUFFET_ERR_TOO_LARGE, "larger or more aligned than the pool's objects");
    return pthread_equal(c->owner, pthread_self()) ? buffet_pool_get(c) : buffet_pool_get_shared(c->pool);
}
static void buffet__pool_vt_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    buffet_pool_cache *c = (buffet_pool_cache *)self;
    (void)size; (void)align;
    if (pthread_equal(c->owner, pthread_self())) buffet_pool_put_at(c, ptr, site);
    else buffet_pool_put_shared_at(c->pool, ptr, site);
}
static const buffet_allocator_vtable buffet__pool_vtable = {
    buffet__pool_vt_alloc, NULL, buffet__pool_vt_free, NULL, buffet__contract_until_freed_safe, NULL
};

BUFFET_API buffet_allocator buffet_pool_allocator(buffet_pool_cache *c) {
    return buffet_allocator_of(c && c->pool ? c : NULL, &buffet__pool_vtable);
}

BUFFET_API buffet_pool_stats buffet_pool_get_stats(buffet_pool *p) {
    buffet_pool_stats s;
    memset(&s, 0, sizeof s);
    if (!p) return s;
    pthread_mutex_lock(&p->mu);
    s.obj_size = p->obj_size;
    s.stride = p->stride;
    s.slabs = p->nslabs;
    s.created = p->created;
    s.max = p->max;
    s.in_store = buffet__pool_ring_count(p->ring);
    if (s.in_store > p->created) s.in_store = p->created;   /* a racing put's copy (checks off) */
    s.in_use = p->created - s.in_store;
    s.caches = p->ncaches;
    s.gets = p->gets;
    s.puts = p->puts;
    s.failures = p->failures;
    pthread_mutex_unlock(&p->mu);
    /* Relaxed: statistics counters, bumped without the lock; nothing is ordered by them. */
    s.double_puts = BUFFET__LOAD(&p->double_puts, BUFFET__RELAXED);
    s.foreign_puts = BUFFET__LOAD(&p->foreign_puts, BUFFET__RELAXED);
    return s;
}

BUFFET_API size_t buffet_pool_stats_json(buffet_pool *p, char *out, size_t cap) {
    buffet_pool_stats s = buffet_pool_get_stats(p);
    size_t len = 0;
    if (!out) cap = 0;
    if (cap) out[0] = '\0';
    buffet__append(out, cap, &len,
        "{\"obj_size\":%zu,\"stride\":%zu,\"slabs\":%zu,\"created\":%zu,\"max\":%zu,\"in_store\":%zu,\"in_use\":%zu,"
        "\"caches\":%zu,\"gets\":%llu,\"puts\":%llu,\"failures\":%llu,\"double_puts\":%llu,\"foreign_puts\":%llu}",
        s.obj_size, s.stride, s.slabs, s.created, s.max, s.in_store, s.in_use, s.caches, (unsigned long long)s.gets,
        (unsigned long long)s.puts, (unsigned long long)s.failures, (unsigned long long)s.double_puts,
        (unsigned long long)s.foreign_puts);
    return len;
}

#endif /* BUFFET_IMPLEMENTATION && !BUFFET_FRAME_IMPL_INCLUDED */

/*
MIT License. Copyright (c) 2026 the buffet authors. The full text is in LICENSE and at the end
of buffet.h.
*/
