/* buffet_packet.h - v0.1.0 - packet buffer pools for packet processing (switches, routers, load
   balancers, capture). Part of the buffet family; needs buffet.h beside it. MIT licence (end).

   USAGE
     #define BUFFET_IMPLEMENTATION in exactly one .c/.cpp file before including the buffet headers.

   EXAMPLE
         buffet_pkt_pool *pool;
         buffet_pkt_pool_create(&pool, &(buffet_pkt_pool_desc){ .name = "rx" });
         buffet_pkt_cache *cache;                        // one per thread, belongs to it
         buffet_pkt_cache_create(&cache, pool, 0);
         buffet_pkt *p = buffet_pkt_alloc(cache, 1500);  // from the 2048-byte class
         memcpy(buffet_pkt_append(p, 64), frame, 64);    // data grows into the tailroom
         struct eth *e = buffet_pkt_prepend(p, 14);      // and into the 128-byte headroom
         buffet_pkt *copy = buffet_pkt_clone(cache, p);  // shares the data, own metadata
         buffet_pkt_free(cache, p); buffet_pkt_free(cache, copy);
         buffet_pkt_cache_destroy(cache); buffet_pkt_pool_destroy(pool);

   MODEL (DPDK's mbuf and mempool, in a header)
     pool     size classes (default 64, 128, 256, 512, 1024, 2048, 9216 bytes of data room, each
              plus the headroom), buffers carved from large regions (2 MiB huge pages when some
              are reserved, transparent huge pages otherwise), placed on a NUMA node, created
              `initial` per class and grown up to `max`. Each class's shared store is a
              lock-free ring of batches: a free buffer's own free bytes list up to 31 others,
              so the store costs under a byte per buffer.
     cache    per-thread arrays of buffer pointers over the store, made by each thread (no
              thread registry): alloc and free are an array pop and push plus a header reset;
              refills and spills move whole batches. The same design as buffet_frame.h's pool
              caches (created by each thread, refilled from a shared store); it differs in holding
              one array per size class, inline at a constant stride (the fastest alloc-free
              chain), and in its store being lock-free batches, since packets cross threads at
              line rate where frame-pool objects mostly stay home.
     packet   a 64-byte header (buffet_pkt) followed by the user area and the data room; data
              between headroom and tailroom; segments linked by `next`; metadata fields.
     clone    a header of its own (own metadata) sharing another packet's data, counted in that
              packet's reference count. External buffers wrap caller memory the same way.

   LIFECYCLE
     object   made by                    ended by                    owner
     pool     buffet_pkt_pool_create     buffet_pkt_pool_destroy     thread-safe
     cache    buffet_pkt_cache_create    buffet_pkt_cache_destroy    its creating thread
     packet   buffet_pkt_alloc, _clone   buffet_pkt_free (= unref)   whoever holds a reference
     A pool destroyed while buffers or caches are still out (in chains, in flight, in caches) is
     unregistered from every registry at once and released when the last of them comes back:
     destroy never frees memory under a user. Every reference count is checked: a clone, a ref
     or a chain slice that would pass 65535 references is refused (BUFFET_ERR_OVERFLOW).

   CALLBACKS
     Loggers and watermark callbacks run outside the pool's lock: any buffet function may be
     called from them, except destroying the pool whose call is running them.

   CONFIGURATION
     BUFFET_DEBUG >= 1        per-buffer state, site and history (double free caught at the
                              second free, leak report at destroy naming who took each buffer,
                              cookies around every buffer, buffet_pkt_history_dump)
     A pool has at most BUFFET_PKT_MAX_CLASSES (12) size classes and a cache holds at most
     BUFFET_PKT_CACHE_MAX (512) pointers per class: constants, not configuration, so every
     translation unit agrees on the layout of the desc, stats and cache structs.

   THREAD SAFETY
     A pool is thread-safe. A cache belongs to the thread that created it. A packet belongs to
     whoever holds a reference; references and frees may come from any thread (through that
     thread's cache, or the *_shared calls that take no cache).

   ERRORS
     Allocation returns NULL, counts a failure, logs why and records it for buffet_alloc_error()
     (BUFFET_ERR_EXHAUSTED: class at max; BUFFET_ERR_TOO_LARGE: no class is big enough;
     BUFFET_ERR_NOMEM: the class is below its max but could not grow; BUFFET_ERR_STATE: the pool
     is being destroyed). Operations on packets return NULL or a buffet_result and change nothing
     when they fail.

   MISUSE
     Refused, counted in the statistics and logged with the call site, never corrupting the
     pool: a second free (the count of a free buffer is 0); a free of what is not one of a pool's
     headers: a stack or heap block (release builds follow a header's `pool` only once it is a
     live pool's address), a copy of a header or a pointer into a buffer (refused by where they
     sit), or a segment chained behind another (its chain's head frees it); debug builds find
     every buffer by its address, so even a header forged field by field is caught. A
     reference to or a clone of a free packet; a chain that would make a cycle or put a segment
     in two chains; a packet whose lengths do not add up (pkt_len, len, data_off or nb_segs
     written so); pools with classes below 8 bytes or on NUMA nodes that do not exist; bursts
     larger than the cache; more than BUFFET_PKT_MAX_POOLS pools at once. Raw buffers
     (buffet_pkt_alloc_bulk_raw) are checked by their addresses only, in release builds: see
     RAW BUFFERS below for what that catches and what only debug builds catch.
*/
#ifndef BUFFET_PACKET_H_INCLUDED
#define BUFFET_PACKET_H_INCLUDED

#ifdef BUFFET_H_PATH
#include BUFFET_H_PATH
#else
#include "buffet.h"
#endif

#if !defined(BUFFET_VERSION_NUMBER) || BUFFET_VERSION_NUMBER != 100
#error "buffet_packet.h is from buffet 0.1.0 but buffet.h is not: take every buffet header from one release"
#endif

#include <pthread.h>

/* Size classes a pool can have, and the most pointers a cache holds per class: constants, since
   public structs are sized by them (the inline fast paths index a cache's arrays at a constant
   stride, which keeps a pointer load off the alloc-free chain). */
#define BUFFET_PKT_MAX_CLASSES 12
#define BUFFET_PKT_CACHE_MAX 512
#define BUFFET_PKT_HISTORY 8
/* Pools live at once in a process (each takes a slot of a table that frees are checked against). */
#define BUFFET_PKT_MAX_POOLS 1024

BUFFET_EXTERN_C_BEGIN

typedef struct buffet_pkt_pool buffet_pkt_pool;
typedef struct buffet_pkt buffet_pkt;

enum {
    BUFFET_PKT_CLONE = 1u << 0,      /* header sharing another packet's data */
    BUFFET_PKT_EXTERNAL = 1u << 1    /* data in caller memory */
};
/* A raw buffer's nb_segs while it is lent (a count no packet reaches: a chain stops at 65534). */
#define BUFFET_PKT_RAW_LENT 0xFFFFu

/* A packet segment's header: one cache line. The data is buf[data_off .. data_off + len). */
struct buffet_pkt {
    unsigned char *buf;         /* data room: headroom, data, tailroom */
    buffet_pkt_pool *pool;
    uint32_t buf_len;           /* bytes in the data room */
    uint8_t cls;                /* size class (the clone class for clones and external) */
    uint8_t flags;              /* BUFFET_PKT_CLONE / BUFFET_PKT_EXTERNAL */
    uint16_t data_off;          /* first data byte */
    /* from here the fields are reset at every allocation */
    buffet_pkt *next;           /* next segment */
    uint64_t timestamp;
    uint32_t pkt_len;           /* bytes in all segments (kept in the first segment) */
    uint32_t len;               /* bytes in this segment */
    uint32_t hash;              /* RSS-style flow hash */
    uint16_t refcnt;            /* atomic; use buffet_pkt_ref / buffet_pkt_free */
    uint16_t nb_segs;           /* segments (kept in the first segment; 0 in a segment that
                                   buffet_pkt_chain linked behind another; BUFFET_PKT_RAW_LENT
                                   in a raw buffer: see RAW BUFFERS) */
    uint16_t in_port, out_port;
    uint16_t vlan_tci;
    uint16_t packet_type;
};

typedef void (*buffet_pkt_watermark_fn)(void *user, buffet_pkt_pool *pool, unsigned cls, size_t in_use,
                                        size_t max, bool high);
typedef void (*buffet_pkt_ext_free_fn)(void *opaque, void *mem);
/* Told of each region of buffers the pool maps (added) and unmaps (not added): the memory every
   packet of that region lives in, e.g. to register it with a GPU for DMA (buffet_gpu.h's
   buffet_gpu_region_hook has this shape). */
typedef void (*buffet_pkt_region_fn)(void *user, void *mem, size_t size, bool added);

#define BUFFET_PKT_NODE(n) ((n) + 1)   /* buffet_pkt_pool_desc.numa_node: node n */

typedef struct buffet_pkt_pool_desc {
    const char *name;               /* in statistics and logs; NULL: "pkt"; cut to 47 bytes at a
                                       UTF-8 character boundary */
    uint32_t class_sizes[BUFFET_PKT_MAX_CLASSES];   /* data room per class, ascending, 0 ends,
                                       each at least 8 and at most 65535 with the headroom;
                                       all 0: 64 128 256 512 1024 2048 9216 */
    uint32_t headroom;              /* bytes before the data of a new packet; 0: 128 */
    uint32_t user_size;             /* per-packet user area after the header; 0: none */
    size_t initial;                 /* buffers made per class at create; 0: 256 */
    size_t max;                     /* most buffers per class; 0: 16384 */
    size_t grow;                    /* buffers added per class when one runs dry; 0: initial */
    int numa_node;                  /* 0: the creating thread's node; BUFFET_PKT_NODE(n): node n,
                                       which must exist (/sys/devices/system/node) */
    bool no_huge_pages;             /* neither explicit nor transparent huge pages */
    uint32_t watermark_high, watermark_low;  /* percent of max in use; 0: 90 and 70 */
    buffet_pkt_watermark_fn on_watermark;    /* called when a class crosses them; may be NULL */
    void *watermark_user;
    buffet_pkt_region_fn on_region; /* each region mapped, before any of its buffers is handed out,
                                       and before it is unmapped (at destroy); runs under the
                                       pool's lock: it must not call the pool. May be NULL */
    void *region_user;
    buffet_allocator allocator;     /* bookkeeping (not the buffers); zero: the heap. Used from any
                                       thread for as long as the pool lives: must be thread-safe
                                       and keep blocks until freed */
    buffet_logger log;
} buffet_pkt_pool_desc;

/* A cache: per class, an array of buffer pointers. Belongs to the thread that created it. The
   counts of every class share a few cache lines, apart from the pointer arrays. */
typedef struct buffet_pkt_cache_class {
    void **objs;                        /* the class's pointer array (the cache's objs[k]) */
    uint32_t count;
    uint32_t room;                      /* what the inline free may fill: the cache's size, or 0
                                           when every call takes the careful path (checks) */
    uint64_t allocs, frees, misses;     /* counted here, merged into the pool's on refill/spill */
} buffet_pkt_cache_class;

typedef struct buffet_pkt_cache {
    buffet_pkt_pool *pool;
    uint32_t size;                  /* capacity per class */
    uint32_t nclasses;              /* data classes; the clone class comes after them */
    uint16_t headroom;
    bool checks;                    /* debug: every call takes the careful path */
    uint32_t hdr_size;              /* header + user area: where a buffer's data room starts */
    pthread_t owner;                /* the creating thread: the allocator face routes others to the pool */
    struct buffet_pkt_cache *next_in_pool;
    buffet_pkt_cache_class cls[BUFFET_PKT_MAX_CLASSES + 1];
    /* Per class, its largest region (as of the last refill), so that raw buffers given back are
       told to be that class's headers by their addresses alone: header i sits at lo + i * stride,
       i < n; stride = odd << shift, inv the inverse of odd modulo 2^64 (n 0: no region yet).
       Bursts of the class's other regions (a class on huge pages has its remainder in a second
       one; growth adds more) find theirs by address, out of line. Apart from cls[], which keeps the single
       alloc and free paths at a power-of-two stride. */
    uint64_t raw_lo[BUFFET_PKT_MAX_CLASSES + 1], raw_n[BUFFET_PKT_MAX_CLASSES + 1];
    uint64_t raw_inv[BUFFET_PKT_MAX_CLASSES + 1];
    unsigned char raw_shift[BUFFET_PKT_MAX_CLASSES + 1];
    uint8_t raw_hint;               /* the class of the latest raw burst given back */
    void *objs[BUFFET_PKT_MAX_CLASSES + 1][BUFFET_PKT_CACHE_MAX];
} buffet_pkt_cache;

typedef struct buffet_pkt_class_stats {
    bool clone;                     /* the clone class: headers only, no data room */
    uint32_t data_room;             /* 0 for the clone class */
    size_t stride;                  /* bytes each buffer takes in its region */
    size_t created, max, in_use;
    uint64_t allocs, frees, failures, cache_misses;
    double cache_hit_rate;          /* allocations served without touching the ring */
    double utilisation;             /* in_use / max */
} buffet_pkt_class_stats;

typedef struct buffet_pkt_stats {
    const char *name;
    int numa_node;
    unsigned nclasses;              /* data classes; stats[nclasses] is the clone class */
    size_t region_bytes;            /* memory mapped for buffers */
    bool huge_pages;                /* some regions use explicit 2 MiB pages */
    uint64_t double_frees, foreign_frees, corruptions;
    buffet_pkt_class_stats cls[BUFFET_PKT_MAX_CLASSES + 1];
} buffet_pkt_stats;

/* Create a pool. Errors: BUFFET_ERR_INVALID (class sizes not ascending, below 8 or above 65535
   with the headroom, headroom above 65535, initial > max, a NUMA node that does not exist; each
   logged with the call site), BUFFET_ERR_LIFETIME /
   BUFFET_ERR_THREAD (allocator), the allocator's reason, BUFFET_ERR_NOMEM (mmap). Thread: safe. */
BUFFET_API buffet_result buffet_pkt_pool_create_at(buffet_pkt_pool **out, const buffet_pkt_pool_desc *desc, buffet_site site);
#define buffet_pkt_pool_create(...) buffet_pkt_pool_create_at(__VA_ARGS__, BUFFET_SITE)
/* Destroy the pool: it leaves every registry now (waiting for calls into it to return) and no
   cache may attach any more. Its regions are released now when every buffer is back and every
   cache destroyed, else when the last of them comes back; buffers still out are reported
   (debug builds: each, with the site that took it). NULL does nothing. Thread: once, not
   concurrently with other calls on the pool (frees of its buffers excepted), not from the
   pool's own callbacks. */
BUFFET_API void buffet_pkt_pool_destroy(buffet_pkt_pool *p);
/* A cache of `size` pointers per class (0: 64; at most BUFFET_PKT_CACHE_MAX) for the calling
   thread. Errors: BUFFET_ERR_INVALID, BUFFET_ERR_STATE (the pool is being destroyed), the
   allocator's reason. Thread: safe. */
BUFFET_API buffet_result buffet_pkt_cache_create_at(buffet_pkt_cache **out, buffet_pkt_pool *p, uint32_t size, buffet_site site);
#define buffet_pkt_cache_create(...) buffet_pkt_cache_create_at(__VA_ARGS__, BUFFET_SITE)
/* Give every cached buffer back to the pool and free the cache. NULL does nothing. Thread: owned. */
BUFFET_API void buffet_pkt_cache_destroy(buffet_pkt_cache *c);
/* Give every cached buffer back and merge the counters into the pool's. Thread: owned. */
BUFFET_API void buffet_pkt_cache_flush(buffet_pkt_cache *c);

/* The class index for a packet of `size` data bytes (after the headroom), or -1 if none is big
   enough. Thread: safe. */
BUFFET_API int buffet_pkt_pool_class(const buffet_pkt_pool *p, size_t size);
/* The bytes of each packet's user area (buffet_pkt_user), as the pool was created with (0 for
   NULL). Thread: safe. */
BUFFET_API uint32_t buffet_pkt_pool_user_size(const buffet_pkt_pool *p);
/* Internal: the slow paths of the inline alloc and free (refill or spill a batch, growth, the
   clone class, segments, shared data, debug checks). */
BUFFET_API buffet_pkt *buffet__pkt_alloc_slow(buffet_pkt_cache *c, unsigned cls, buffet_site site);
BUFFET_API void buffet__pkt_free_slow(buffet_pkt_cache *c, buffet_pkt *p, buffet_site site);

static inline void buffet__pkt_reset(buffet_pkt *p, uint16_t headroom) {
    p->data_off = headroom;
    p->next = NULL;
    p->timestamp = 0;
    p->pkt_len = p->len = p->hash = 0;
    /* A plain store, merged with its neighbours: the buffer is the caller's alone now (it came
       through this thread's cache, or through the ring's release/acquire), so no other thread
       reads the count until a reference is handed over, which orders this store before it. */
    p->refcnt = p->nb_segs = 1;
    p->in_port = p->out_port = p->vlan_tci = p->packet_type = 0;
}

/* A packet from class cls (see buffet_pkt_pool_class), empty, headroom as configured.
   Returns: NULL when the class is at max (a failure is counted). Thread: owned (c). */
static inline buffet_pkt *buffet_pkt_alloc_class_at(buffet_pkt_cache *c, unsigned cls, buffet_site site) {
    buffet_pkt_cache_class *k;
    if (cls >= c->nclasses) return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "no such class");
    k = &c->cls[cls];
    /* count - 1 < room: something cached, and a cache without checks (room 0 with them). */
    if (__builtin_expect(k->count - 1u < k->room, 1)) {
        buffet_pkt *p = (buffet_pkt *)k->objs[--k->count];
        k->allocs++;
        BUFFET__UNPOISON(p->buf, p->buf_len);
        buffet__pkt_reset(p, c->headroom);
        return p;
    }
    return buffet__pkt_alloc_slow(c, cls, site);
}
/* Give a packet back: every segment loses one reference; a segment at 0 goes back to the
   cache (its data too, once no clone shares it). NULL does nothing. A second free, or a header
   that is not the pool's own (a copy of one, a pointer into a buffer), is refused, counted and
   logged with the site. Thread: owned (c). */
static inline void buffet_pkt_free_at(buffet_pkt_cache *c, buffet_pkt *p, buffet_site site) {
    /* The acquire load orders this reuse after other threads' earlier drops of their references
       (their release in the FETCH_SUB of buffet__pkt_seg_unref): a plain load on x86 and a
       load-acquire on aarch64, no locked instruction either way. A data buffer's header sits
       just before its data room, so a copy of the header (buf elsewhere) never gets cached; nor
       does a clone's or an external packet's header (its data is elsewhere: flags need no test);
       a segment linked behind another (nb_segs 0) is left to the slow path, which refuses it.
       Debug builds read p->next and p->buf here, never p->pool: the slow path finds p by its
       address before it follows anything in it. */
    if (__builtin_expect(p != NULL && p->next == NULL && p->buf == (unsigned char *)p + c->hdr_size &&
                         p->pool == c->pool && p->nb_segs == 1, 1)) {
        buffet_pkt_cache_class *kc = &c->cls[p->cls];
        uint32_t n = kc->count;
        /* The reference count is read last and written last: every cache field is in a register
           by then, so neither the acquire nor the store makes the compiler load one again. A
           cache with checks has no room here. */
        if (__builtin_expect(n < kc->room && BUFFET__LOAD(&p->refcnt, BUFFET__ACQUIRE) == 1, 1)) {
            kc->objs[n] = p;
            kc->count = n + 1;
            kc->frees++;
            BUFFET__POISON(p->buf, p->buf_len);
            /* A free buffer counts 0, so a second free is caught, not cached twice. Relaxed: the
               caller held the only reference, so no other thread may touch the count now; the
               buffer's next owner gets it through this thread's cache or the ring's release. */
            BUFFET__STORE(&p->refcnt, (uint16_t)0, BUFFET__RELAXED);
            return;
        }
    }
    buffet__pkt_free_slow(c, p, site);
}
/* A packet for `size` data bytes from the smallest class that fits (size 0: the smallest).
   Returns: NULL when no class is big enough or the class is exhausted (a failure is counted and
   logged). `site` is recorded in debug builds. Thread: owned (c). */
BUFFET_API buffet_pkt *buffet_pkt_alloc_at(buffet_pkt_cache *c, size_t size, buffet_site site);
/* The debug history records who allocated and freed: the site comes from the call. */
#define buffet_pkt_alloc(...) buffet_pkt_alloc_at(__VA_ARGS__, BUFFET_SITE)
#define buffet_pkt_alloc_class(...) buffet_pkt_alloc_class_at(__VA_ARGS__, BUFFET_SITE)
#define buffet_pkt_free(...) buffet_pkt_free_at(__VA_ARGS__, BUFFET_SITE)
/* Freeing is dropping a reference: the pair of buffet_pkt_ref. */
#define buffet_pkt_unref(...) buffet_pkt_free_at(__VA_ARGS__, BUFFET_SITE)

/* n packets of class cls into pkts[0..n), all or nothing, each reset as buffet_pkt_alloc's.
   `site` is recorded for each in debug builds. Errors (0 returned, nothing taken, recorded for
   buffet_alloc_error): BUFFET_ERR_INVALID (no cache or array, n 0, no such class),
   BUFFET_ERR_TOO_LARGE (n above the cache's size: counted and logged), and the reasons of
   buffet_pkt_alloc. Returns: n or 0. Thread: owned (c). */
BUFFET_API size_t buffet_pkt_alloc_bulk_at(buffet_pkt_cache *c, unsigned cls, buffet_pkt **pkts, size_t n, buffet_site site);
#define buffet_pkt_alloc_bulk(...) buffet_pkt_alloc_bulk_at(__VA_ARGS__, BUFFET_SITE)
/* Free n packets, as buffet_pkt_free each, in order (a NULL entry does nothing; a packet refused
   is counted and logged, and the others are still freed). The burst is checked once, packet by
   packet, then its pointers moved: plain packets of one class (one segment, one reference, the
   cache's pool) take no other path. Thread: owned (c). */
BUFFET_API void buffet_pkt_free_bulk_at(buffet_pkt_cache *c, buffet_pkt *const *pkts, size_t n, buffet_site site);
#define buffet_pkt_free_bulk(...) buffet_pkt_free_bulk_at(__VA_ARGS__, BUFFET_SITE)

/* RAW BUFFERS: the bulk paths of rte_mempool_get_bulk / put_bulk, for code that fills headers
   itself (an RX path) or hands data rooms to a kernel ring, where a header reset per buffer is
   waste. A raw buffer is a free buffer lent out:
     fixed     buf, pool, buf_len, cls and flags (0) hold as for any packet of its class; the
               caller must not change them (the free paths find a buffer's place through them)
     refcnt    0: to buffet (buffet_pkt_free, ref, clone, ...) a raw buffer is a free one, and
               is refused as such (a double free, counted and logged)
     nb_segs   BUFFET_PKT_RAW_LENT: the mark of a lent buffer, set when it is taken and cleared
               when it comes back, so that a raw buffer given back twice (or a packet, or a free
               buffer) is refused in every build. The one header store of the raw calls.
     the rest  data_off, next, lengths and metadata: unspecified (what its last user left); the
               data room's bytes too (addressable; valgrind: undefined)
   To make it a packet the caller sets every field from data_off on as buffet_pkt_alloc leaves
   them: buffet_pkt_init_raw does exactly that (data_off the headroom, refcnt and nb_segs 1, next
   NULL, the rest 0), or the caller writes them itself (refcnt 1 and nb_segs 1 last, lengths that
   add up, data_off + len within buf_len); from then on it is a packet like any other, freed by
   buffet_pkt_free or buffet_pkt_free_bulk, never by buffet_pkt_free_bulk_raw. A caller that
   wrote a raw buffer's nb_segs has begun a packet: it finishes it (buffet_pkt_init_raw) and
   frees it as one; given back raw it is refused, and lost to the pool until destroy.
   Checks: each pointer of a raw burst given back must be a header's place in the first one's
   region (one multiply per buffer, before anything is read through it; the first one's region
   is found by its address too), then carry the lent mark, which is cleared as it goes back.
   Anything else goes the careful way, buffer by buffer, each found among every live pool's
   buffers by its address before it is read: NULL entries do nothing, another live pool's
   buffers go to that pool, and the rest (foreign memory, even unmapped; a copy of a header, a
   pointer into a buffer, a clone's header, a packet, a buffer given back twice, even within one
   burst) is refused, counted on c's pool (without c: on the buffer's pool, when it is one) and
   logged. Debug builds also track every buffer and record where it was taken. */
/* Internal: a raw buffer's refcnt and nb_segs as one 32-bit word, read and written in one
   instruction (a 16-bit store takes two on x86: an immediate that long stalls the decoder).
   refcnt is 0 in every raw buffer, so the word is the lent mark or 0, and the check covers both. */
typedef char buffet__pkt_raw_word_layout[offsetof(buffet_pkt, nb_segs) == offsetof(buffet_pkt, refcnt) + 2 ? 1 : -1];
static inline uint32_t buffet__pkt_raw_state(uint16_t nb_segs) {
    uint16_t f[2] = {0, nb_segs};   /* refcnt, nb_segs */
    uint32_t w;
    memcpy(&w, f, sizeof w);
    return w;
}
static inline uint32_t buffet__pkt_raw_word(const buffet_pkt *h) {
    uint32_t w;
    memcpy(&w, (const unsigned char *)h + offsetof(buffet_pkt, refcnt), sizeof w);
    return w;
}
static inline void buffet__pkt_raw_mark(buffet_pkt *h, uint16_t nb_segs) {
    uint32_t w = buffet__pkt_raw_state(nb_segs);
    memcpy((unsigned char *)h + offsetof(buffet_pkt, refcnt), &w, sizeof w);
}
/* Internal: the out-of-line paths of the raw bulk calls (refill, spill, checks, debug builds). */
BUFFET_API size_t buffet__pkt_alloc_bulk_raw_slow(buffet_pkt_cache *c, unsigned cls, buffet_pkt **pkts, size_t n,
                                                  buffet_site site);
BUFFET_API void buffet__pkt_free_bulk_raw_slow(buffet_pkt_cache *c, buffet_pkt *const *pkts, size_t n,
                                               buffet_site site);
/* n raw buffers of data class cls into pkts[0..n), all or nothing; of each header only the
   lent mark is written (see RAW BUFFERS). Errors: as buffet_pkt_alloc_bulk. Returns: n or 0.
   Thread: owned (c). */
static inline size_t buffet_pkt_alloc_bulk_raw_at(buffet_pkt_cache *c, unsigned cls, buffet_pkt **pkts, size_t n,
                                                  buffet_site site) {
    /* Inline when the cache holds the burst: a pointer copy, nothing read from the buffers. */
    if (__builtin_expect(c != NULL && pkts != NULL && cls < c->nclasses && n - 1 < c->cls[cls].count &&
                         !c->checks && !BUFFET_TRACK_ASAN && !BUFFET_TRACK_VALGRIND, 1)) {
        buffet_pkt_cache_class *k = &c->cls[cls];
        void *const *src = c->objs[cls] + (k->count -= (uint32_t)n), *const *end = src + n;
        buffet_pkt **dst = pkts;
        k->allocs += n;
        /* One loop that copies and marks: no memcpy call for a burst of a size known only now. */
        do {
            buffet_pkt *h = (buffet_pkt *)*src++;
            buffet__pkt_raw_mark(h, BUFFET_PKT_RAW_LENT);
            *dst++ = h;
        } while (src != end);
        return n;
    }
    return buffet__pkt_alloc_bulk_raw_slow(c, cls, pkts, n, site);
}
/* The header index of h in class k's region at c, exact or huge: (h - lo) / stride when stride
   divides it, else above any index (the distance times the inverse of stride's odd part, rotated
   by its power of two). NULL, foreign memory, another class or region, and a pointer into a
   buffer all come out at or above raw_n[k], without h being read. */
static inline uint64_t buffet__pkt_raw_index(const buffet_pkt_cache *c, unsigned k, const void *h) {
    uint64_t x = ((uint64_t)(uintptr_t)h - c->raw_lo[k]) * c->raw_inv[k];
    unsigned shift = c->raw_shift[k];
    return (x >> shift) | (x << ((64 - shift) & 63));
}
/* Internal: buffet__pkt_raw_class over every class (out of line: the hint usually answers). */
BUFFET_API unsigned buffet__pkt_raw_class_find(buffet_pkt_cache *c, const void *h);
/* The data class whose region at c holds header h (the last one found is tried first), or
   c->nclasses: nothing of h is read. */
static inline unsigned buffet__pkt_raw_class(buffet_pkt_cache *c, const void *h) {
    unsigned k = c->raw_hint;
    return buffet__pkt_raw_index(c, k, h) < c->raw_n[k] ? k : buffet__pkt_raw_class_find(c, h);
}
/* Take back the lent buffers of class k at the front of pkts[0..m): each at one of the `count`
   header places from lo on (checked before it is read), carrying the lent mark, which is
   cleared as it passes, so a buffer listed twice stops the walk the second time. Pointers go to
   dst. Returns: how many passed. */
static inline size_t buffet__pkt_raw_back(const buffet_pkt_cache *c, unsigned k, uint64_t lo, uint64_t count,
                                          buffet_pkt *const *pkts, size_t m, void **dst) {
    uint64_t inv = c->raw_inv[k];
    unsigned shift = c->raw_shift[k];
    buffet_pkt *const *p = pkts, *const *end = pkts + m;
    do {   /* buffet__pkt_raw_index with the class's fields in registers */
        buffet_pkt *h = *p;
        uint64_t x = ((uint64_t)(uintptr_t)h - lo) * inv;
        x = (x >> shift) | (x << ((64 - shift) & 63));
        if (__builtin_expect(x >= count || buffet__pkt_raw_word(h) != buffet__pkt_raw_state(BUFFET_PKT_RAW_LENT), 0))
            break;
        buffet__pkt_raw_mark(h, 0);
        *dst++ = h;
    } while (++p != end);
    return (size_t)(p - pkts);
}
/* Give n raw buffers back (any data classes, any live pools: another pool's go to that pool); a
   NULL entry does nothing, a refused one is counted and logged and the others still go back.
   Of each header only the lent mark is read and cleared. Thread: owned (c). */
static inline void buffet_pkt_free_bulk_raw_at(buffet_pkt_cache *c, buffet_pkt *const *pkts, size_t n,
                                               buffet_site site) {
    /* Inline when the cache has room and every pointer is a lent buffer of the first one's
       region. The rest (another region, class or pool, NULL, no lent mark, debug builds) goes
       the careful way, buffer by buffer. */
    if (__builtin_expect(c != NULL && pkts != NULL && n != 0 && !c->checks && !BUFFET_TRACK_ASAN &&
                         !BUFFET_TRACK_VALGRIND, 1)) {
        unsigned k = buffet__pkt_raw_class(c, pkts[0]);
        if (k < c->nclasses && n <= c->size - c->cls[k].count) {
            buffet_pkt_cache_class *kc = &c->cls[k];
            size_t i = buffet__pkt_raw_back(c, k, c->raw_lo[k], c->raw_n[k], pkts, n,
                                            kc->objs + kc->count);   /* past the count: free to write */
            if (i == n) {
                kc->count += (uint32_t)n;
                kc->frees += n;
                return;
            }
            while (i--) buffet__pkt_raw_mark(pkts[i], BUFFET_PKT_RAW_LENT);   /* the careful way judges them afresh */
        }
    }
    buffet__pkt_free_bulk_raw_slow(c, pkts, n, site);
}
#define buffet_pkt_alloc_bulk_raw(...) buffet_pkt_alloc_bulk_raw_at(__VA_ARGS__, BUFFET_SITE)
#define buffet_pkt_free_bulk_raw(...) buffet_pkt_free_bulk_raw_at(__VA_ARGS__, BUFFET_SITE)
/* The data room of a buffer of c's pool (p->buf), found without reading p's header: for posting
   raw buffers to a device or kernel ring without touching their headers' cache lines. */
static inline unsigned char *buffet_pkt_raw_buf(const buffet_pkt_cache *c, buffet_pkt *p) {
    return (unsigned char *)p + c->hdr_size;
}
/* Make raw buffer p (of c's pool) an empty packet, as buffet_pkt_alloc makes one. Thread: owned (p). */
static inline void buffet_pkt_init_raw(const buffet_pkt_cache *c, buffet_pkt *p) {
    buffet__pkt_reset(p, c->headroom);
}
/* Allocate / free without a cache (a ring operation each; the free refuses what buffet_pkt_free
   refuses). Thread: safe. */
BUFFET_API buffet_pkt *buffet_pkt_alloc_shared_at(buffet_pkt_pool *p, size_t size, buffet_site site);
BUFFET_API void buffet_pkt_free_shared_at(buffet_pkt *p, buffet_site site);
#define buffet_pkt_alloc_shared(...) buffet_pkt_alloc_shared_at(__VA_ARGS__, BUFFET_SITE)
#define buffet_pkt_free_shared(...) buffet_pkt_free_shared_at(__VA_ARGS__, BUFFET_SITE)

/* One more reference on every segment (for keeping a packet while also passing it on).
   Errors: BUFFET_ERR_INVALID (NULL), BUFFET_ERR_OVERFLOW (a segment has 65535 references),
   BUFFET_ERR_STATE (a segment is already free: logged with the site): nothing changes.
   Thread: safe. */
BUFFET_API buffet_result buffet_pkt_ref_at(buffet_pkt *p, buffet_site site);
#define buffet_pkt_ref(...) buffet_pkt_ref_at(__VA_ARGS__, BUFFET_SITE)
/* A new packet whose segments share p's data with headers and metadata of their own (for one
   packet to many ports). c must be a cache of the pool of every segment of p. Returns: NULL
   (clone class exhausted: BUFFET_ERR_EXHAUSTED; 65535 references to a segment's data:
   BUFFET_ERR_OVERFLOW; a segment of another pool than c's, lengths that do not add up, or a
   copy of a header: BUFFET_ERR_INVALID; a free packet: BUFFET_ERR_STATE), all logged.
   Thread: owned (c). */
BUFFET_API buffet_pkt *buffet_pkt_clone_at(buffet_pkt_cache *c, buffet_pkt *p, buffet_site site);
#define buffet_pkt_clone(...) buffet_pkt_clone_at(__VA_ARGS__, BUFFET_SITE)
/* A packet over caller memory mem[0..size): the last 32 bytes hold the shared reference count,
   so buf_len is a little less than size (1 to 65535 bytes must remain). free_fn(opaque, mem)
   runs when the last packet or clone referring to it is freed. The packet starts empty at
   offset 0: claim bytes already there with buffet_pkt_append. Returns: NULL (size out of range,
   clone class exhausted). Thread: owned (c). */
BUFFET_API buffet_pkt *buffet_pkt_attach_external_at(buffet_pkt_cache *c, void *mem, size_t size,
                                                     buffet_pkt_ext_free_fn free_fn, void *opaque, buffet_site site);
#define buffet_pkt_attach_external(...) buffet_pkt_attach_external_at(__VA_ARGS__, BUFFET_SITE)

/* Data of the first segment. */
static inline void *buffet_pkt_data(const buffet_pkt *p) { return p->buf + p->data_off; }
static inline size_t buffet_pkt_headroom(const buffet_pkt *p) { return p->data_off; }
/* 0 when the fields claim more than the room (a header the caller wrote into). */
static inline size_t buffet_pkt_tailroom(const buffet_pkt *p) {
    uint64_t used = (uint64_t)p->data_off + p->len;
    return used < p->buf_len ? (size_t)(p->buf_len - used) : 0;
}
/* The user area of this header (NULL when the pool has none). */
BUFFET_API void *buffet_pkt_user(const buffet_pkt *p);
/* Internal: the general forms of prepend and append (any segment count; shared data refused). */
BUFFET_API void *buffet__pkt_prepend_slow(buffet_pkt *p, size_t n);
BUFFET_API void *buffet__pkt_append_slow(buffet_pkt *p, size_t n);
/* Inline when p is one unshared segment of its own: then nothing else can see its bytes. */
static inline bool buffet__pkt_alone(const buffet_pkt *p) {
    /* Acquire: when the last clone was just freed on another thread, its drop (a release
       FETCH_SUB) happens before the writes into the data that follow here. */
    return p->next == NULL && p->flags == 0 && BUFFET__LOAD(&p->refcnt, BUFFET__ACQUIRE) == 1;
}
/* Grow the data at the front by n bytes (into the headroom). Returns: the new start, or NULL
   (n > headroom, or the data is shared with a clone: nothing changes). Thread: owned. */
static inline void *buffet_pkt_prepend(buffet_pkt *p, size_t n) {
    if (__builtin_expect(p != NULL && n <= p->data_off && p->data_off <= p->buf_len && buffet__pkt_alone(p), 1)) {
        p->data_off = (uint16_t)(p->data_off - n);   /* one segment: len <= 64 KiB, no overflow */
        p->len += (uint32_t)n;
        p->pkt_len = p->len;
        return p->buf + p->data_off;
    }
    return buffet__pkt_prepend_slow(p, n);
}
/* Grow the last segment by n bytes (into its tailroom). Returns: where the new bytes go, or
   NULL (n > tailroom or shared data: nothing changes). Thread: owned. */
static inline void *buffet_pkt_append(buffet_pkt *p, size_t n) {
    if (__builtin_expect(p != NULL && buffet__pkt_alone(p) && n <= buffet_pkt_tailroom(p), 1)) {
        unsigned char *tail = p->buf + p->data_off + p->len;
        p->len += (uint32_t)n;
        p->pkt_len = p->len;
        return tail;
    }
    return buffet__pkt_append_slow(p, n);
}
/* Packets whose lengths do not add up (a caller wrote pkt_len, len, data_off or nb_segs so that
   they disagree with the segments, or changed a segment behind a chain's back) are refused by
   every function below, and by clone and to_chain, with BUFFET_ERR_INVALID (or NULL), logged
   with the call site: never read or written beyond a data room. */
/* Drop n bytes from the front of the first segment. Returns: the new start, or NULL (n > len
   of the first segment, lengths that do not add up: nothing changes). */
BUFFET_API void *buffet_pkt_adj_at(buffet_pkt *p, size_t n, buffet_site site);
#define buffet_pkt_adj(...) buffet_pkt_adj_at(__VA_ARGS__, BUFFET_SITE)
/* Drop n bytes from the end of the last segment. Errors: BUFFET_ERR_INVALID, BUFFET_ERR_RANGE
   (n > that segment's len: nothing changes). */
BUFFET_API buffet_result buffet_pkt_trim_at(buffet_pkt *p, size_t n, buffet_site site);
#define buffet_pkt_trim(...) buffet_pkt_trim_at(__VA_ARGS__, BUFFET_SITE)
/* Append tail's segments to head's; tail becomes a segment of head (its nb_segs 0), no longer a
   packet of its own. Errors: BUFFET_ERR_INVALID (NULL, same packet, a segment already in
   a chain as head or tail, a cycle, lengths that do not add up; logged with the site),
   BUFFET_ERR_OVERFLOW (more than 65534 segments or 4 GiB): nothing changes. */
BUFFET_API buffet_result buffet_pkt_chain_at(buffet_pkt *head, buffet_pkt *tail, buffet_site site);
#define buffet_pkt_chain(...) buffet_pkt_chain_at(__VA_ARGS__, BUFFET_SITE)
/* Make *p one segment: copied into the first segment's tailroom when it fits, else into a new
   packet of a class that fits (metadata kept, *p replaced). Errors: BUFFET_ERR_INVALID,
   BUFFET_ERR_RANGE (no class is big enough), BUFFET_ERR_EXHAUSTED: *p unchanged. */
BUFFET_API buffet_result buffet_pkt_linearize_at(buffet_pkt_cache *c, buffet_pkt **p, buffet_site site);
#define buffet_pkt_linearize(...) buffet_pkt_linearize_at(__VA_ARGS__, BUFFET_SITE)
/* Bytes [off, off+len) of the packet: a pointer into it when they lie in one segment, else
   copied to tmp (len bytes) and tmp returned. NULL when out of range or when the lengths do
   not add up (logged). Thread: compatible. */
BUFFET_API const void *buffet_pkt_read_at(const buffet_pkt *p, size_t off, size_t len, void *tmp, buffet_site site);
#define buffet_pkt_read(...) buffet_pkt_read_at(__VA_ARGS__, BUFFET_SITE)
/* Append each segment's data to chain c as a slice of a buffer holding a reference on that
   segment (and so on the pool), so packets go into chains. `site` names the caller in leak
   reports of those buffers. Errors: BUFFET_ERR_INVALID, BUFFET_ERR_OVERFLOW (a segment has
   65535 references), the allocator's reason (chain unchanged). Thread: owned (c). */
BUFFET_API buffet_result buffet_pkt_to_chain_at(buffet_pkt *p, buffet_chain *c, buffet_site site);
#define buffet_pkt_to_chain(...) buffet_pkt_to_chain_at(__VA_ARGS__, BUFFET_SITE)

/* Statistics of the pool, merged from every cache's last refill. Thread: safe. */
BUFFET_API buffet_pkt_stats buffet_pkt_pool_get_stats(buffet_pkt_pool *p);
/* As JSON / as Prometheus text exposition into out[0..cap) (NUL-terminated when cap > 0).
   Returns: the full length (as snprintf). Thread: safe. */
BUFFET_API size_t buffet_pkt_pool_stats_json(buffet_pkt_pool *p, char *out, size_t cap);
BUFFET_API size_t buffet_pkt_pool_stats_prometheus(buffet_pkt_pool *p, char *out, size_t cap);
/* Debug builds: the last BUFFET_PKT_HISTORY operations on p's buffer, one per line, to out.
   Returns: the lines written (0 in release builds). Thread: safe. */
BUFFET_API size_t buffet_pkt_history_dump(const buffet_pkt *p, FILE *out);
/* Buffers still out, with the site that took each (debug builds), to out and the log.
   Returns: how many are out. Thread: safe (a snapshot). */
BUFFET_API size_t buffet_pkt_pool_report_leaks(buffet_pkt_pool *p, FILE *out);
/* Register the pool as a provider of network buffers (usage BUFFET_USAGE_NETWORK, sizes up to
   the largest class, data aligned to the request's align or 64 bytes) in registry r under the
   pool's name. The pool leaves r when it is destroyed (and forgets r when r is destroyed).
   Errors: as buffet_registry_add; BUFFET_ERR_EXHAUSTED (in 8 registries already),
   BUFFET_ERR_STATE (the pool is being destroyed). */
BUFFET_API buffet_result buffet_pkt_pool_register(buffet_pkt_pool *p, buffet_registry *r);
/* The cache as an allocator of whole data rooms (headroom plus class size, 64-byte aligned): size
   classes for any bytes, not just packets. On the cache's thread it goes through the cache, on
   any other through the pool; free its blocks before destroying the cache. Contract: blocks live
   until freed; thread-safe. Larger blocks: NULL (BUFFET_ERR_TOO_LARGE, counted and logged), as
   for alignment above 64. Thread: safe. */
BUFFET_API buffet_allocator buffet_pkt_allocator(buffet_pkt_cache *c);

/* NUMA: nodes with memory on this machine (1 without NUMA), the calling thread's node, and the
   node holding the page at addr (-1 if unknown). Thread: safe. */
BUFFET_API int buffet_pkt_numa_nodes(void);
BUFFET_API int buffet_pkt_numa_current(void);
BUFFET_API int buffet_pkt_numa_node_of(const void *addr);

BUFFET_EXTERN_C_END
#endif /* BUFFET_PACKET_H_INCLUDED */

/* =============================================================================================
   IMPLEMENTATION
*/
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_PACKET_IMPL_INCLUDED)
#define BUFFET_PACKET_IMPL_INCLUDED

#include <dlfcn.h>
#include <sched.h>
#include <sys/syscall.h>


/* >>ring: a lock-free multi-producer multi-consumer ring of pointers, moved in bulk. A side
   claims [head, head+n) with a CAS, copies, then publishes by moving its tail once every
   earlier claim on that side has published. The tails carry the data (release/acquire). */
typedef struct buffet__ring {
    uint32_t mask;
    void **slots;
    char pad0_[64 - sizeof(uint32_t) - sizeof(void **)];
    uint32_t prod_head, prod_tail;
    char pad1_[56];
    uint32_t cons_head, cons_tail;
    char pad2_[56];
} buffet__ring;

static void buffet__ring_wait(const uint32_t *tail, uint32_t expect) {
    unsigned spins = 0;
    /* Acquire: the earlier claimant's release store of this tail carries its slot writes (or
       reads); the store this caller makes next passes them on to the other side. */
    while (BUFFET__LOAD(tail, BUFFET__ACQUIRE) != expect) {
        /* An earlier claimant was preempted between claim and publish: let it run. */
        if (++spins > 64) sched_yield();
        else buffet__cpu_relax();
    }
}

/* Put n pointers. The ring has a slot for every batch its class can make, so it never runs
   full: the wait for room below ends at once, but for a consumer of the previous lap still
   between reading its slots and publishing them. */
static void buffet__ring_put(buffet__ring *r, void *const *objs, uint32_t n) {
    /* Relaxed: only a first guess for the CAS, which reloads it on failure. */
    uint32_t head = BUFFET__LOAD(&r->prod_head, BUFFET__RELAXED), i;
    /* Relaxed CAS: claiming [head, head+n) orders nothing; the slots are published by the
       release store of prod_tail below, not by the claim. */
    while (!BUFFET__CAS(&r->prod_head, &head, head + n, BUFFET__RELAXED, BUFFET__RELAXED)) {}
    /* Acquire, pairing with the consumers' release of cons_tail: their reads of these slots on
       the previous lap happen before the writes below. Made whatever NDEBUG says (it was an
       assert, which left the slot reads and writes unordered in builds without asserts). */
    while (head + n - BUFFET__LOAD(&r->cons_tail, BUFFET__ACQUIRE) - 1 > r->mask) buffet__cpu_relax();
    for (i = 0; i < n; i++) r->slots[(head + i) & r->mask] = objs[i];
    buffet__ring_wait(&r->prod_tail, head);
    /* Release, pairing with the consumers' acquire of prod_tail: the slots (and the batch each
       slot's buffer lists in its own bytes, written before this call) are visible to them. */
    BUFFET__STORE(&r->prod_tail, head + n, BUFFET__RELEASE);
}

/* Take up to n pointers. Returns: how many. */
static uint32_t buffet__ring_take(buffet__ring *r, void **objs, uint32_t n) {
    /* Relaxed: a first guess for the CAS, as in buffet__ring_put. */
    uint32_t head = BUFFET__LOAD(&r->cons_head, BUFFET__RELAXED), avail, i;
    do {
        /* Acquire, pairing with the producers' release of prod_tail: what they wrote into the
           slots below it (and into the batches) is visible before those slots are read. */
        avail = BUFFET__LOAD(&r->prod_tail, BUFFET__ACQUIRE) - head;
        if (avail < n) n = avail;
        if (n == 0) return 0;
        /* Relaxed CAS: the claim orders nothing; the acquire above did. */
    } while (!BUFFET__CAS(&r->cons_head, &head, head + n, BUFFET__RELAXED, BUFFET__RELAXED));
    for (i = 0; i < n; i++) objs[i] = r->slots[(head + i) & r->mask];
    buffet__ring_wait(&r->cons_tail, head);
    /* Release, pairing with the producers' acquire of cons_tail: the reads above finish before
       a producer of the next lap may overwrite these slots. */
    BUFFET__STORE(&r->cons_tail, head + n, BUFFET__RELEASE);
    return n;
}


/* >>pool layout
   A region is one mapping of `count` elements of one class:
     [guard line (debug: cookie in its last 8 bytes)] [header 64] [user area] [data room]
     [tail cookie (debug)] ...padded to whole cache lines, plus one more line when the stride is
   a power of two, so equal offsets of neighbouring buffers do not share L1 sets. */
#define BUFFET__PKT_COOKIE 0xB0FFE7C0DEC0FFEEull
#define BUFFET__PKT_DEFAULT_CLASSES {64, 128, 256, 512, 1024, 2048, 9216}

enum { BUFFET__PKT_OP_ALLOC = 1, BUFFET__PKT_OP_FREE, BUFFET__PKT_OP_REF, BUFFET__PKT_OP_CLONE,
       BUFFET__PKT_OP_CACHE_IN, BUFFET__PKT_OP_CACHE_OUT, BUFFET__PKT_OP_ALLOC_RAW, BUFFET__PKT_OP_FREE_RAW };

typedef struct buffet__pkt_dbg {
    uint32_t out;                   /* atomic: 1 while allocated */
    uint32_t hist_pos;              /* atomic */
    buffet_site taken;
    struct { uint32_t op; buffet_site site; } hist[BUFFET_PKT_HISTORY];
} buffet__pkt_dbg;

typedef struct buffet__pkt_region {
    struct buffet__pkt_region *next;
    struct buffet__pkt_region *next_in_class;   /* the clone class's regions only */
    uintptr_t lo;                   /* the first header's address */
    size_t span;                    /* count * stride: lo + span is past the last element */
    size_t mask;                    /* stride - 1 when the stride is a power of two, else 0 */
    unsigned char *map, *first;     /* the mapping and its first element */
    size_t map_size, count;
    unsigned cls;
    bool huge;
    buffet__pkt_dbg *dbg;           /* debug: one per element */
} buffet__pkt_region;

#define BUFFET__PKT_BATCH_MAX 32

typedef struct buffet__pkt_class {
    buffet__ring ring;              /* full batches (see >>store) */
    size_t stored;                  /* atomic: buffers in the ring's batches and in `pending` */
    uint32_t batch;                 /* buffers per batch */
    uint32_t pending_count;         /* under the pool's lock */
    void *pending[BUFFET__PKT_BATCH_MAX];   /* a batch being gathered from odd-sized returns */
    uint32_t data_room, buf_len;    /* buf_len: headroom + data room (clone class: 0) */
    size_t stride, created, max, grow;
    uint64_t allocs, frees, failures, misses;   /* merged from caches; under the pool's lock */
    bool high;                      /* above the high watermark */
    uint64_t lo, n;                 /* the largest region's first header and header count (data
                                       classes; under the lock): what caches check raw buffers
                                       given back against (see buffet_pkt_cache) */
    uint64_t inv;                   /* stride = odd << shift: inv * odd == 1 modulo 2^64 */
    unsigned char shift;
} buffet__pkt_class;

/* External memory: this sits at the start of the caller's block, the data room after it. */
typedef struct buffet__pkt_ext {
    uint32_t refcnt;                /* atomic: packets referring to the memory */
    uint32_t size;
    buffet_pkt_ext_free_fn free_fn;
    void *opaque, *mem;
} buffet__pkt_ext;

struct buffet_pkt_pool {
    buffet__pkt_class cls[BUFFET_PKT_MAX_CLASSES + 1];   /* the last used one is the clone class */
    unsigned nclasses;
    uint32_t headroom, user_size, hdr_size;   /* hdr_size: header + user area, to the data room */
    size_t pre, post;               /* debug guard line before, cookie after */
    int node;
    bool no_huge, checks, huge_used;
    char name[48];
    pthread_mutex_t mu;             /* growth, regions, counters, cache list */
    buffet__pkt_region *regions;    /* atomic head: lookups walk it without the lock */
    size_t region_bytes;
    buffet_pkt_cache *caches;
    buffet__pkt_region *clone_regions;   /* atomic head: the clone class's regions (next_in_class),
                                            one load from a header's pool (see buffet__pkt_genuine) */
    uint32_t wm_high, wm_low;
    buffet_pkt_watermark_fn on_watermark;
    void *wm_user;
    buffet_pkt_region_fn on_region;
    void *region_user;
    uint64_t double_frees, foreign_frees, corruptions;   /* atomic */
    buffet_allocator allocator;
    buffet_site site;               /* of the create: named by leak reports of regions grown later */
    buffet_logger log;
    buffet_registry *registries[8]; /* where it is a provider (under the lock) */
    unsigned nregistries;
    bool dying;                     /* destroyed by its owner; released when everything is back */
    bool reporting;                 /* destroy is still telling the log about it: not released yet */
    buffet__logq pending;           /* found under the lock, logged after it */
};

static void buffet__pkt_unlock(buffet_pkt_pool *p) { buffet__unlock_and_log(&p->mu, &p->pending, &p->log); }

/* >>store: a class's free buffers, shared by every thread. The lock-free ring holds batches,
   each a free buffer whose own free bytes list the batch's other buffers, so the store costs
   under a byte of memory per buffer instead of a pointer. Caches move whole batches without a
   lock; odd counts (a cache's flush, a free without a cache) gather in `pending` under the
   pool's lock until they make a batch. */
#define BUFFET__PKT_CLONE_AREA (offsetof(buffet_pkt, refcnt) - offsetof(buffet_pkt, next))

/* Where a free buffer of class k keeps its batch: the data room, or for a header-only clone the
   header bytes that every allocation resets (refcnt, the double-free marker, stays intact). */
static unsigned char *buffet__pkt_batch_area(const buffet_pkt_pool *p, unsigned k, void *h) {
    return k < p->nclasses ? (unsigned char *)h + p->hdr_size : (unsigned char *)h + offsetof(buffet_pkt, next);
}

static void buffet__pkt_batch_push(buffet_pkt_pool *p, unsigned k, void *const *objs) {
    buffet__pkt_class *c = &p->cls[k];
    uint32_t others = c->batch - 1;
    size_t bytes = sizeof others + others * sizeof(void *);
    unsigned char *area = buffet__pkt_batch_area(p, k, objs[0]);
    bool data = k < p->nclasses;
    if (data) BUFFET__UNPOISON(area, bytes);
    memcpy(area, &others, sizeof others);
    memcpy(area + sizeof others, objs + 1, bytes - sizeof others);
    if (data) BUFFET__POISON(area, bytes);
    buffet__ring_put(&c->ring, objs, 1);
}

/* The batch headed by h into objs (h first). Returns: how many. */
static uint32_t buffet__pkt_batch_open(buffet_pkt_pool *p, unsigned k, void *h, void **objs) {
    uint32_t others;
    unsigned char *area = buffet__pkt_batch_area(p, k, h);
    bool data = k < p->nclasses;
    if (data) BUFFET__ASAN_UNPOISON(area, sizeof others), BUFFET__VG_DEFINED(area, sizeof others);
    memcpy(&others, area, sizeof others);
    if (data) BUFFET__ASAN_UNPOISON(area, sizeof others + others * sizeof(void *)),
              BUFFET__VG_DEFINED(area, sizeof others + others * sizeof(void *));
    objs[0] = h;
    memcpy(objs + 1, area + sizeof others, others * sizeof(void *));
    if (data) BUFFET__POISON(area, sizeof others + others * sizeof(void *));
    return others + 1;
}

/* Gather n buffers into pending, pushing each batch it completes. Called locked. */
static void buffet__pkt_store_pending(buffet_pkt_pool *p, unsigned k, void *const *objs, size_t n) {
    buffet__pkt_class *c = &p->cls[k];
    BUFFET__FETCH_ADD(&c->stored, n, BUFFET__RELAXED);   /* a count: see store_put */
    while (n--) {
        c->pending[c->pending_count++] = *objs++;
        if (c->pending_count == c->batch) {
            buffet__pkt_batch_push(p, k, c->pending);
            c->pending_count = 0;
        }
    }
}

/* Give n buffers to the store. `locked`: the caller holds the pool's lock. */
static void buffet__pkt_store_put(buffet_pkt_pool *p, unsigned k, void *const *objs, size_t n, bool locked) {
    buffet__pkt_class *c = &p->cls[k];
    /* Relaxed: `stored` is a count, not a publication (the ring's tails publish the buffers);
       the destroy check reads it under the lock, which every final put takes too. It counts
       only what a taker can get without waiting: whole batches here, and what reaches pending
       (counted there, under the lock). Counting a rest still on its way to pending let a taker
       spin on the lock its owner needed to hand it over (found by tests/model/pkt_store.pml). */
    BUFFET__FETCH_ADD(&c->stored, n - n % c->batch, BUFFET__RELAXED);
    for (; n >= c->batch; objs += c->batch, n -= c->batch) buffet__pkt_batch_push(p, k, objs);
    if (n == 0) return;
    if (!locked) pthread_mutex_lock(&p->mu);
    buffet__pkt_store_pending(p, k, objs, n);
    if (!locked) buffet__pkt_unlock(p);
}

/* Take up to want buffers (whole batches first; what a batch has beyond want goes back). */
static size_t buffet__pkt_store_take(buffet_pkt_pool *p, unsigned k, void **objs, size_t want) {
    buffet__pkt_class *c = &p->cls[k];
    void *one[BUFFET__PKT_BATCH_MAX];
    size_t got = 0;
    while (got < want) {
        void *h;
        uint32_t n, use;
        if (!buffet__ring_take(&c->ring, &h, 1)) break;
        n = buffet__pkt_batch_open(p, k, h, one);
        use = (uint32_t)(want - got < n ? want - got : n);
        memcpy(objs + got, one, use * sizeof(void *));
        got += use;
        BUFFET__FETCH_SUB(&c->stored, n, BUFFET__RELAXED);   /* the whole batch; its rest counts again in pending */
        if (use < n) {
            pthread_mutex_lock(&p->mu);
            buffet__pkt_store_pending(p, k, one + use, n - use);
            buffet__pkt_unlock(p);
        }
    }
    if (got < want) {
        size_t n;
        pthread_mutex_lock(&p->mu);
        n = c->pending_count < want - got ? c->pending_count : want - got;
        c->pending_count -= (uint32_t)n;
        memcpy(objs + got, c->pending + c->pending_count, n * sizeof(void *));
        buffet__pkt_unlock(p);
        got += n;
        BUFFET__FETCH_SUB(&c->stored, n, BUFFET__RELAXED);   /* a count: see store_put */
    }
    return got;
}

static size_t buffet__pkt_stored(const buffet_pkt_pool *p, unsigned k) {
    /* Acquire is more than a count needs (no data is published through `stored`: its updates
       are relaxed, so this pairs with nothing); it costs nothing on x86 and the readers that
       need an exact value (destroy, leak reports) hold the pool's lock, which orders them. */
    return BUFFET__LOAD(&p->cls[k].stored, BUFFET__ACQUIRE);
}

/* >>NUMA: raw system calls, with libnuma (loaded at run time) preferred for placement */
#define BUFFET__MPOL_BIND 2
#define BUFFET__MPOL_F_NODE 1
#define BUFFET__MPOL_F_ADDR 2

static struct {
    int (*available)(void);
    void (*tonode_memory)(void *, size_t, int);
    int (*max_node)(void);
} buffet__numa;
static pthread_once_t buffet__numa_once = PTHREAD_ONCE_INIT;

static void buffet__numa_load(void) {
    void *h = dlopen("libnuma.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    *(void **)&buffet__numa.available = dlsym(h, "numa_available");
    *(void **)&buffet__numa.tonode_memory = dlsym(h, "numa_tonode_memory");
    *(void **)&buffet__numa.max_node = dlsym(h, "numa_max_node");
    if (!buffet__numa.available || !buffet__numa.tonode_memory || !buffet__numa.max_node ||
        buffet__numa.available() < 0) {
        memset(&buffet__numa, 0, sizeof buffet__numa);   /* keep the handle: dlclose buys nothing */
    }
}

BUFFET_API int buffet_pkt_numa_nodes(void) {
    int n = 0, i;
    char path[64];
    pthread_once(&buffet__numa_once, buffet__numa_load);
    if (buffet__numa.max_node) return buffet__numa.max_node() + 1;
    for (i = 0; i < 1024; i++) {
        snprintf(path, sizeof path, "/sys/devices/system/node/node%d", i);
        if (access(path, F_OK) != 0) break;
        n++;
    }
    return n ? n : 1;
}

BUFFET_API int buffet_pkt_numa_current(void) {
    unsigned cpu = 0, node = 0;
    return syscall(SYS_getcpu, &cpu, &node, NULL) == 0 ? (int)node : 0;
}

BUFFET_API int buffet_pkt_numa_node_of(const void *addr) {
    int node = -1;
    if (syscall(SYS_get_mempolicy, &node, NULL, 0UL, addr, BUFFET__MPOL_F_NODE | BUFFET__MPOL_F_ADDR) != 0) return -1;
    return node;
}

/* Bind [p, p+len) to node before its pages are touched. */
static void buffet__numa_place(buffet_pkt_pool *pool, void *p, size_t len) {
    unsigned long mask[16];
    pthread_once(&buffet__numa_once, buffet__numa_load);
    if (buffet__numa.tonode_memory) {
        buffet__numa.tonode_memory(p, len, pool->node);
        return;
    }
    if (pool->node < 0 || pool->node >= (int)(sizeof mask * 8)) return;
    memset(mask, 0, sizeof mask);
    mask[pool->node / 64] = 1ul << (pool->node % 64);
    if (syscall(SYS_mbind, p, len, BUFFET__MPOL_BIND, mask, sizeof mask * 8, 0) != 0)
        BUFFET__LOGQ(&pool->pending, &pool->log, BUFFET_LOG_INFO, BUFFET_ERR_SYSTEM, "pool %s: mbind to node %d failed: %s",
                    pool->name, pool->node, strerror(errno));
}

/* >>elements */
static buffet_pkt *buffet__pkt_elem(const buffet_pkt_pool *p, const buffet__pkt_region *r, size_t i) {
    return (buffet_pkt *)(r->first + i * p->cls[r->cls].stride + p->pre);
}

/* The region of header h among the regions from r on (linked by next, or by next_in_class),
   and its index there when index is not NULL; NULL when h is not at a header's place: an
   address compared, never read. Regions are only ever added, each complete before the release
   store that publishes it (see buffet__pkt_grow), so the lists are walked without the lock. */
static buffet__pkt_region *buffet__pkt_find_in(const buffet_pkt_pool *p, buffet__pkt_region *r, bool in_class,
                                               const void *h, size_t *index) {
    for (; r; r = in_class ? r->next_in_class : r->next) {
        /* h's offset from the first header (huge when h is below it) */
        size_t off = (size_t)((uintptr_t)h - r->lo);
        if (off >= r->span) continue;
        /* a clone header's stride is a power of two unless the user area makes it odd: no division */
        if (r->mask ? (off & r->mask) != 0 : off % p->cls[r->cls].stride != 0) return NULL;
        if (index) *index = off / p->cls[r->cls].stride;
        return r;
    }
    return NULL;
}

/* The region and index of header h, or NULL when h is not a buffer of this pool. */
static buffet__pkt_region *buffet__pkt_locate(const buffet_pkt_pool *p, const void *h, size_t *index) {
    /* Acquire, pairing with the release that published each region (see buffet__pkt_grow). */
    return buffet__pkt_find_in(p, BUFFET__LOAD(&((buffet_pkt_pool *)p)->regions, BUFFET__ACQUIRE), false, h, index);
}

/* >>validation: a pool's own headers told from anything else a caller may pass. */

/* Is h (whose `pool` field is p) one of p's headers, at its place: not a copy of one, nor a
   header-shaped thing inside a buffer? A data buffer's header sits just before its data room,
   which a copy's `buf` cannot; a clone's or an external packet's header is looked up among the
   clone class's regions (the newest inline, then a walk over that class's few others). */
static inline bool buffet__pkt_genuine(const buffet_pkt_pool *p, const buffet_pkt *h) {
    const buffet__pkt_region *r;
    size_t off;
    if (h->cls < p->nclasses) return h->buf == (const unsigned char *)h + p->hdr_size;
    if (h->cls != p->nclasses) return false;
    /* Acquire: as in buffet__pkt_locate. The newest region is tried here, the rest walked. */
    r = BUFFET__LOAD(&((buffet_pkt_pool *)p)->clone_regions, BUFFET__ACQUIRE);
    if (!r) return false;
    off = (size_t)((uintptr_t)h - r->lo);
    if (off < r->span && r->mask) return (off & r->mask) == 0;
    return buffet__pkt_find_in(p, (buffet__pkt_region *)r, true, h, NULL) != NULL;
}

/* Every live pool holds a slot here, so that the `pool` field of a header a caller passes is
   compared with live pools before it is followed: the garbage of a stack or heap block that is
   no packet never is. Slots change under the mutex and are read without it (a pool is made
   before its first header exists, and its slot is cleared before it is freed). Debug builds
   also walk them, locked, to find an address among every pool's buffers. */
static pthread_mutex_t buffet__pkt_pools_mu = PTHREAD_MUTEX_INITIALIZER;
static buffet_pkt_pool *buffet__pkt_pools[BUFFET_PKT_MAX_POOLS];   /* atomic each */
static size_t buffet__pkt_pools_used;                              /* atomic: slots [0, used) */

static bool buffet__pkt_pools_add(buffet_pkt_pool *p) {
    size_t i, n;
    pthread_mutex_lock(&buffet__pkt_pools_mu);
    n = buffet__pkt_pools_used;
    for (i = 0; i < n && buffet__pkt_pools[i]; i++) {}
    /* relaxed: see buffet__pkt_live */
    if (i < BUFFET_PKT_MAX_POOLS) BUFFET__STORE(&buffet__pkt_pools[i], p, BUFFET__RELAXED);
    /* Release: a reader that sees the new bound sees the slot's pool too. */
    if (i == n && i < BUFFET_PKT_MAX_POOLS) BUFFET__STORE(&buffet__pkt_pools_used, n + 1, BUFFET__RELEASE);
    pthread_mutex_unlock(&buffet__pkt_pools_mu);
    return i < BUFFET_PKT_MAX_POOLS;
}

static void buffet__pkt_pools_remove(buffet_pkt_pool *p) {
    size_t i;
    pthread_mutex_lock(&buffet__pkt_pools_mu);
    /* Relaxed: p is freed once every buffer is back, so no free may name it any more. */
    for (i = 0; i < buffet__pkt_pools_used; i++)
        if (buffet__pkt_pools[i] == p) BUFFET__STORE(&buffet__pkt_pools[i], (buffet_pkt_pool *)NULL, BUFFET__RELAXED);
    pthread_mutex_unlock(&buffet__pkt_pools_mu);
}

/* Is q (a pointer read from a header not trusted) a live pool? Compared, never followed.
   Relaxed slots: whoever holds a header of q got it after q's create returned, through some
   synchronisation of their own, which orders the slot's store before this load. */
static bool buffet__pkt_live(const buffet_pkt_pool *q) {
    size_t i, n = BUFFET__LOAD(&buffet__pkt_pools_used, BUFFET__ACQUIRE);   /* pairs with pools_add */
    for (i = 0; i < n; i++)
        if (BUFFET__LOAD(&buffet__pkt_pools[i], BUFFET__RELAXED) == q) return q != NULL;
    return false;
}

/* Debug: the pool holding a header at address h (its region and index), trying `first` before
   the others; NULL when none does. *h is not read. The lock keeps every pool walked alive. */
static buffet_pkt_pool *buffet__pkt_checked_find(const void *h, buffet_pkt_pool *first, buffet__pkt_region **r, size_t *i) {
    buffet_pkt_pool *q = NULL;
    size_t k;
    if (first && (*r = buffet__pkt_locate(first, h, i)) != NULL) return first;
    pthread_mutex_lock(&buffet__pkt_pools_mu);
    for (k = 0; k < buffet__pkt_pools_used && !q; k++)
        if (buffet__pkt_pools[k] && buffet__pkt_pools[k] != first && (*r = buffet__pkt_locate(buffet__pkt_pools[k], h, i)) != NULL)
            q = buffet__pkt_pools[k];
    pthread_mutex_unlock(&buffet__pkt_pools_mu);
    return q;
}

/* A header the caller passed to be freed, checked before anything is done with it: true for a
   pool's own header whose `pool` tells the truth; else refused, counted and logged with the site
   on c's pool (without c: on the pool the header names, when that is a pool). Debug builds find
   the address among every pool's buffers before reading the header, so anything foreign is
   caught whatever it holds; release builds follow `pool` only once it is c's pool or a live one
   (so a stack or heap block's garbage is refused) and then check the header's place
   (buffet__pkt_genuine), which refuses copies of headers and headers inside buffers: only a
   header forged field by field (`pool` and `buf` both written) passes them. */
__attribute__((noinline, cold)) static bool buffet__pkt_refuse_header(buffet_pkt_cache *c, const buffet_pkt *h, const char *what,
                                                                      buffet_site site) {
    buffet_pkt_pool *blame;
    if (BUFFET_DEBUG >= 1) {
        buffet__pkt_region *r = NULL;
        size_t i = 0;
        buffet_pkt_pool *found = buffet__pkt_checked_find(h, c ? c->pool : NULL, &r, &i);
        if (found && h->pool == found) return true;
        blame = c ? c->pool : found ? found : buffet__pkt_live(h->pool) ? h->pool : NULL;
    } else {
        blame = c ? c->pool : buffet__pkt_live(h->pool) ? h->pool : NULL;
    }
    if (blame) {
        /* Relaxed: a statistic; nothing is published through it. */
        BUFFET__FETCH_ADD(&blame->foreign_frees, 1, BUFFET__RELAXED);
        BUFFET__LOG(&blame->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN,
                    "pool %s: %s of %p at %s in %s(): not a buffer of this pool (a copy of a header, a pointer into "
                    "a buffer, another pool's): refused", blame->name, what, (const void *)h, buffet__site_where(site),
                    buffet__site_func(site));
    }
    return false;
}
static inline bool buffet__pkt_check_header(buffet_pkt_cache *c, const buffet_pkt *h, const char *what, buffet_site site) {
    /* release: inline, the refusal out of line; debug: the lookup by address, out of line too */
    if (BUFFET_DEBUG < 1 && __builtin_expect(h->pool != NULL && ((c && h->pool == c->pool) || buffet__pkt_live(h->pool)) &&
                                             buffet__pkt_genuine(h->pool, h), 1))
        return true;
    return buffet__pkt_refuse_header(c, h, what, site);
}

/* Do p's lengths add up: at most 65535 segments (so no cycle), each segment's data inside its
   data room, nb_segs their count and pkt_len the sum of their lens? */
static inline bool buffet__pkt_consistent(const buffet_pkt *p) {
    const buffet_pkt *s;
    uint64_t bytes = 0;
    uint32_t n = 0;
    if (!p->next) return p->nb_segs == 1 && p->pkt_len == p->len && (uint64_t)p->data_off + p->len <= p->buf_len;
    for (s = p; s; s = s->next) {
        if (++n > UINT16_MAX || (uint64_t)s->data_off + s->len > s->buf_len) return false;
        bytes += s->len;
    }
    return n == p->nb_segs && bytes == p->pkt_len;
}

/* Refuse packet p passed to `what`, whose lengths do not add up: logged with the site on the
   packet's pool. Returns: false. */
__attribute__((noinline, cold)) static bool buffet__pkt_refuse_lengths(const buffet_pkt *p, const char *what, buffet_site site) {
    if (p->pool)
        BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "pool %s: %s of %p at %s in %s(): its lengths do not add up (pkt_len %u, nb_segs %u, len %u of a "
                    "%u-byte room at %u; or a segment changed behind its chain's back): refused", p->pool->name, what,
                    (const void *)p, buffet__site_where(site), buffet__site_func(site), p->pkt_len, p->nb_segs, p->len,
                    p->buf_len, p->data_off);
    return false;
}

/* Refuse packet p passed to `what`: it is free. Returns: false. */
__attribute__((noinline, cold)) static bool buffet__pkt_refuse_free(const buffet_pkt *p, const char *what, buffet_site site) {
    if (p->pool)
        BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "pool %s: %s of %p at %s in %s(): it is free: refused",
                    p->pool->name, what, (const void *)p, buffet__site_where(site), buffet__site_func(site));
    return false;
}

/* A packet passed to `what`: false for NULL, for a free one (whose header the store may use:
   its links are not followed), and for one whose lengths do not add up (logged with the site,
   on the packet's pool). Relaxed: whether the count is 0 orders nothing. */
static inline bool buffet__pkt_usable(const buffet_pkt *p, const char *what, buffet_site site) {
    if (!p) return false;
    if (BUFFET__LOAD(&p->refcnt, BUFFET__RELAXED) == 0) return buffet__pkt_refuse_free(p, what, site);
    return buffet__pkt_consistent(p) || buffet__pkt_refuse_lengths(p, what, site);
}

static void buffet__pkt_note(buffet__pkt_dbg *d, uint32_t op, buffet_site site) {
    /* Relaxed: the counter only hands out slots; the history is a best-effort record whose
       readers take each field as a whole value, in no particular order. */
    uint32_t i = BUFFET__FETCH_ADD(&d->hist_pos, 1, BUFFET__RELAXED) % BUFFET_PKT_HISTORY;
    /* Threads sharing a packet (clones, refs) note at once and may meet in a slot as the history
       wraps: each field is stored whole, so readers see some writer's value, never a torn one. */
    BUFFET__STORE(&d->hist[i].op, op, BUFFET__RELAXED);
    BUFFET__STORE(&d->hist[i].site.where, site.where, BUFFET__RELAXED);
    BUFFET__STORE(&d->hist[i].site.func, site.func, BUFFET__RELAXED);
}

/* Debug: the bookkeeping of header h of pool p (NULL, counted and logged, when h is foreign).
   For headers buffet made or already checked (buffet__pkt_check_header checks the caller's). */
static buffet__pkt_dbg *buffet__pkt_dbg_of(buffet_pkt_pool *p, const buffet_pkt *h, const char *what, buffet_site site) {
    size_t i = 0;
    buffet__pkt_region *r = buffet__pkt_locate(p, h, &i);
    if (!r) {
        BUFFET__FETCH_ADD(&p->foreign_frees, 1, BUFFET__RELAXED);   /* a statistic */
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN, "pool %s: %s of %p at %s in %s(): not a buffer of this pool",
                    p->name, what, (const void *)h, site.where ? site.where : "?", site.func ? site.func : "?");
        return NULL;
    }
    return &r->dbg[i];
}

static bool buffet__pkt_cookies_ok(buffet_pkt_pool *p, const buffet_pkt *h) {
    uint64_t front, back;
    if (!p->checks) return true;
    memcpy(&front, (const unsigned char *)h - sizeof front, sizeof front);
    memcpy(&back, h->buf == (const unsigned char *)h + p->hdr_size ? h->buf + p->cls[h->cls].buf_len
                                                                    : (const unsigned char *)h + p->hdr_size, sizeof back);
    if (front == BUFFET__PKT_COOKIE && back == BUFFET__PKT_COOKIE) return true;
    BUFFET__FETCH_ADD(&p->corruptions, 1, BUFFET__RELAXED);   /* a statistic */
    BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_CORRUPT, "pool %s: buffer %p: %s cookie overwritten", p->name,
                (const void *)h, front != BUFFET__PKT_COOKIE ? "front" : "back");
    return false;
}

/* >>growth: map a region for one class and put its buffers in the ring. Called locked. */
/* Class k's ring slots (ring.mask + 1 of them), at create or, for the clone class, with its
   first region: no other thread touches them before buffers of the class exist, which come to
   it through the ring's release/acquire or a handover that orders this store first. */
static bool buffet__pkt_ring_slots(buffet_pkt_pool *p, unsigned k) {
    buffet__pkt_class *c = &p->cls[k];
    if (!c->ring.slots)
        c->ring.slots = (void **)buffet_alloc_array(p->allocator, (size_t)c->ring.mask + 1, sizeof(void *),
                                                    BUFFET_ALIGNOF(void *), p->site);
    return c->ring.slots != NULL;
}

static bool buffet__pkt_grow(buffet_pkt_pool *p, unsigned k) {
    buffet__pkt_class *c = &p->cls[k];
    size_t n = c->grow, bytes, map_size = 0, i;
    buffet__pkt_region *r;
    void *m = MAP_FAILED;
    bool huge = false;
    if (c->created >= c->max) {
        buffet_alloc_fail(BUFFET_ERR_EXHAUSTED, "the class is at its max");
        return false;
    }
    if (!buffet__pkt_ring_slots(p, k)) return false;
    if (n > c->max - c->created) n = c->max - c->created;
    if (!buffet_mul(n, c->stride, &bytes)) {
        buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "the region's size overflows");
        return false;
    }
    r = (buffet__pkt_region *)buffet_alloc(p->allocator, sizeof *r, BUFFET_ALIGNOF(buffet__pkt_region), p->site);
    if (!r) return false;
    memset(r, 0, sizeof *r);
    if (!p->no_huge && bytes >= BUFFET__HUGE_PAGE) {
        /* Whole huge pages only: the buffers that do not fit come in the next, ordinary region,
           rather than a part-empty 2 MiB page. */
        map_size = bytes - bytes % BUFFET__HUGE_PAGE;
        m = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
        huge = m != MAP_FAILED;
    }
    if (m == MAP_FAILED) {
        buffet_align_up(bytes, BUFFET__PAGE, &map_size);
        m = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED && !p->no_huge && map_size >= BUFFET__HUGE_PAGE) madvise(m, map_size, MADV_HUGEPAGE);
    }
    if (m == MAP_FAILED) {
        BUFFET__LOGQ(&p->pending, &p->log, BUFFET_LOG_ERROR, BUFFET_ERR_NOMEM, "pool %s: mapping %zu bytes for class %u failed: %s",
                    p->name, bytes, k, strerror(errno));
        BUFFET_DELETE(p->allocator, buffet__pkt_region, r);
        buffet_alloc_fail(BUFFET_ERR_NOMEM, "mmap of a region failed");
        return false;
    }
    n = map_size / c->stride < c->max - c->created ? map_size / c->stride : c->max - c->created;   /* fill the pages */
    if (p->checks) {
        r->dbg = (buffet__pkt_dbg *)buffet_alloc_array(p->allocator, n, sizeof(buffet__pkt_dbg), BUFFET_ALIGNOF(buffet__pkt_dbg), p->site);
        if (!r->dbg) {
            munmap(m, map_size);
            BUFFET_DELETE(p->allocator, buffet__pkt_region, r);
            return false;
        }
        memset(r->dbg, 0, n * sizeof *r->dbg);
    }
    buffet__numa_place(p, m, map_size);
    r->map = r->first = (unsigned char *)m;
    r->map_size = map_size;
    r->count = n;
    r->lo = (uintptr_t)m + p->pre;
    r->span = n * c->stride;
    r->mask = buffet_is_pow2(c->stride) ? c->stride - 1 : 0;
    r->cls = k;
    r->huge = huge;
    for (i = 0; i < n; i++) {
        buffet_pkt *h = buffet__pkt_elem(p, r, i);
        h->buf = (unsigned char *)h + p->hdr_size;
        h->pool = p;
        h->buf_len = c->buf_len;
        h->cls = (uint8_t)k;
        h->flags = 0;
        if (p->checks) {
            uint64_t cookie = BUFFET__PKT_COOKIE;
            memcpy((unsigned char *)h - sizeof cookie, &cookie, sizeof cookie);
            memcpy(h->buf + c->buf_len, &cookie, sizeof cookie);
        }
    }
    for (i = 0; k < p->nclasses && i < n; i++) BUFFET__POISON(buffet__pkt_elem(p, r, i)->buf, c->buf_len);
    if (k < p->nclasses && n > c->n) {   /* one mapping holds nothing but this class's buffers */
        c->lo = (uint64_t)r->lo;
        c->n = n;
    }
    for (i = 0; i < n; i += BUFFET__PKT_BATCH_MAX) {
        void *batch[BUFFET__PKT_BATCH_MAX];
        size_t j, b = n - i < BUFFET__PKT_BATCH_MAX ? n - i : BUFFET__PKT_BATCH_MAX;
        for (j = 0; j < b; j++) batch[j] = buffet__pkt_elem(p, r, i + j);
        buffet__pkt_store_put(p, k, batch, b, true);
    }
    r->next = p->regions;
    if (k == p->nclasses) r->next_in_class = p->clone_regions;
    /* Release, pairing with the acquire of lookups that walk the lists without the lock: the
       region (and its buffers' headers, written above) is complete before it can be found. */
    BUFFET__STORE(&p->regions, r, BUFFET__RELEASE);
    if (k == p->nclasses) BUFFET__STORE(&p->clone_regions, r, BUFFET__RELEASE);   /* release: as above */
    p->region_bytes += map_size;
    p->huge_used |= huge;
    c->created += n;
    /* before the caller hands out any of its buffers (it holds the lock until then) */
    if (p->on_region) p->on_region(p->region_user, r->map, r->map_size, true);
    return true;
}

/* >>pool */
/* The pool's memory: regions, rings, bookkeeping. */
static void buffet__pkt_pool_free(buffet_pkt_pool *p) {
    buffet__pkt_region *r, *next;
    unsigned k;
    for (r = p->regions; r; r = next) {
        next = r->next;
        if (p->on_region) p->on_region(p->region_user, r->map, r->map_size, false);
        BUFFET__ASAN_UNPOISON(r->map, r->map_size);
        munmap(r->map, r->map_size);
        BUFFET_DELETE_ARRAY(p->allocator, buffet__pkt_dbg, r->dbg, r->dbg ? r->count : 0);
        BUFFET_DELETE(p->allocator, buffet__pkt_region, r);
    }
    for (k = 0; k <= p->nclasses; k++)
        if (p->cls[k].ring.slots)
            BUFFET_DELETE_ARRAY(p->allocator, void *, p->cls[k].ring.slots, (size_t)p->cls[k].ring.mask + 1);
    buffet__pkt_pools_remove(p);
    pthread_mutex_destroy(&p->mu);
    BUFFET_DELETE(p->allocator, buffet_pkt_pool, p);
}

/* Buffers not back in the store (in caches, in chains, in flight). */
static size_t buffet__pkt_out(const buffet_pkt_pool *p) {
    size_t n = 0, k;
    for (k = 0; k <= p->nclasses; k++) n += p->cls[k].created - buffet__pkt_stored(p, k);
    return n;
}

/* Is a destroyed pool now free of users? Called locked; true means: release it, unlocked. */
static bool buffet__pkt_done(const buffet_pkt_pool *p) {
    return p->dying && !p->reporting && !p->caches && buffet__pkt_out(p) == 0;
}

/* The pool's name into dst[0..cap), cut at a UTF-8 character boundary when it is too long. */
static void buffet__pkt_set_name(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src), back;
    if (n >= cap) {
        n = cap - 1;
        /* src[n], the first byte left out, continues a character: leave out all of it */
        for (back = 0; back < 3 && n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80; back++) n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Does NUMA node n exist here? The kernel lists each under /sys/devices/system/node; without
   that folder (a kernel built without NUMA) there is node 0 only. */
static bool buffet__numa_exists(int n) {
    char path[64];
    if (n < 0) return false;
    if (access("/sys/devices/system/node", F_OK) != 0) return n == 0;
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d", n);
    return access(path, F_OK) == 0;
}

BUFFET_API buffet_result buffet_pkt_pool_create_at(buffet_pkt_pool **out, const buffet_pkt_pool_desc *desc, buffet_site site) {
    static const uint32_t defaults[] = BUFFET__PKT_DEFAULT_CLASSES;
    buffet_pkt_pool_desc d;
    buffet_pkt_pool *p;
    buffet_result r;
    const char *why;
    unsigned k, n = 0;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    memset(&d, 0, sizeof d);
    if (desc) d = *desc;
    if (d.class_sizes[0] == 0) memcpy(d.class_sizes, defaults, sizeof defaults);
    if (d.headroom == 0) d.headroom = 128;
    if (d.initial == 0) d.initial = 256;
    if (d.max == 0) d.max = 16384;
    if (d.grow == 0) d.grow = d.initial;
    if (d.watermark_high == 0) d.watermark_high = 90;
    if (d.watermark_low == 0) d.watermark_low = 70;
    while (n < BUFFET_PKT_MAX_CLASSES && d.class_sizes[n]) n++;
    for (k = 0; k < n; k++) {
        if ((k && d.class_sizes[k] <= d.class_sizes[k - 1]) || d.class_sizes[k] < 8 ||
            (uint64_t)d.class_sizes[k] + d.headroom > 65535) {
            BUFFET__LOG(&d.log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                        "packet pool at %s in %s(): class %u has %u bytes: class sizes must ascend, each at least 8 "
                        "bytes and at most 65535 with the headroom (%u)", buffet__site_where(site), buffet__site_func(site),
                        k, d.class_sizes[k], d.headroom);
            return BUFFET_ERR_INVALID;
        }
    }
    if (d.headroom > 65535 || d.initial > d.max || d.max > ((size_t)1 << 30) || d.user_size > 65536) {
        BUFFET__LOG(&d.log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "packet pool at %s in %s(): headroom %u (at most 65535), initial %zu, max %zu (initial <= max <= 2^30), "
                    "user_size %u, %u classes", buffet__site_where(site), buffet__site_func(site), d.headroom, d.initial,
                    d.max, d.user_size, n);
        return BUFFET_ERR_INVALID;
    }
    /* A node that is not there would only make every placement fail (mbind: EINVAL). */
    if (d.numa_node < 0 || (d.numa_node > 0 && !buffet__numa_exists(d.numa_node - 1))) {
        BUFFET__LOG(&d.log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "packet pool at %s in %s(): numa_node %d: %s", buffet__site_where(site), buffet__site_func(site),
                    d.numa_node, d.numa_node < 0 ? "0 (the caller's node) or BUFFET_PKT_NODE(n) only"
                                                 : "no such NUMA node on this machine");
        return BUFFET_ERR_INVALID;
    }
    /* Bookkeeping is allocated and freed from any thread, for as long as the pool lives. */
    r = buffet__check(d.allocator, BUFFET_NEED_UNTIL_FREED | BUFFET_NEED_THREAD_SAFE, false, "packet pool", &d.log);
    if (r != BUFFET_OK) return r;
    p = (buffet_pkt_pool *)buffet_alloc(d.allocator, sizeof *p, BUFFET_ALIGNOF(buffet_pkt_pool), site);
    if (!p) {
        r = buffet_alloc_error(&why);
        BUFFET__LOG(&d.log, BUFFET_LOG_ERROR, r, "packet pool: its allocator failed: %s", why);
        return r;
    }
    memset(p, 0, sizeof *p);
    buffet__pkt_set_name(p->name, sizeof p->name, d.name ? d.name : "pkt");
    p->nclasses = n;
    p->headroom = d.headroom;
    p->user_size = d.user_size;
    p->hdr_size = (uint32_t)(sizeof(buffet_pkt) + ((d.user_size + 63u) & ~63u));
    p->checks = BUFFET_DEBUG >= 1;
    p->pre = p->checks ? 64 : 0;
    p->post = p->checks ? 8 : 0;
    p->node = d.numa_node > 0 ? d.numa_node - 1 : buffet_pkt_numa_current();
    p->no_huge = d.no_huge_pages;
    p->wm_high = d.watermark_high;
    p->wm_low = d.watermark_low;
    p->on_watermark = d.on_watermark;
    p->wm_user = d.watermark_user;
    p->on_region = d.on_region;
    p->region_user = d.region_user;
    p->allocator = d.allocator;
    p->site = site;
    p->log = d.log;
    pthread_mutex_init(&p->mu, NULL);
    for (k = 0; k <= n; k++) {
        buffet__pkt_class *c = &p->cls[k];
        size_t cap = 1, raw;
        c->data_room = k < n ? d.class_sizes[k] : 0;
        c->buf_len = k < n ? d.headroom + d.class_sizes[k] : 0;
        raw = p->pre + p->hdr_size + c->buf_len + p->post;
        c->stride = (raw + 63) & ~(size_t)63;
        if (buffet_is_pow2(c->stride) && c->stride >= 256) c->stride += 64;
        {   /* stride = odd << shift, and odd's inverse (Newton: each step doubles the good bits) */
            uint64_t odd = c->stride;
            int i;
            for (c->shift = 0; (odd & 1) == 0; odd >>= 1) c->shift++;
            for (c->inv = odd, i = 0; i < 5; i++) c->inv *= 2 - odd * c->inv;
        }
        /* Clones are headers only; there can be as many as buffers of every class together, up
           to 2^30 (so the ring's slot count fits its 32-bit counters with room to spare). */
        c->max = k < n ? d.max : d.max * n < ((size_t)1 << 30) ? d.max * n : ((size_t)1 << 30);
        c->grow = k < n ? d.grow : d.grow;
        /* As many pointers as the free bytes of a buffer hold; the ring needs a slot per batch. */
        c->batch = k < n ? (uint32_t)((c->buf_len - sizeof(uint32_t)) / sizeof(void *) + 1)
                         : (uint32_t)((BUFFET__PKT_CLONE_AREA - sizeof(uint32_t)) / sizeof(void *) + 1);
        if (c->batch > BUFFET__PKT_BATCH_MAX) c->batch = BUFFET__PKT_BATCH_MAX;
        while (cap < c->max / c->batch + 1) cap <<= 1;   /* may fill completely: the counters run free */
        c->ring.mask = (uint32_t)(cap - 1);
        /* The clone class's ring (a slot per 3 headers, up to every buffer of every class) comes
           with its first region: a pool that never clones does not carry it. */
        if (k < n && !buffet__pkt_ring_slots(p, k)) goto fail;
    }
    for (k = 0; k < n; k++) {
        pthread_mutex_lock(&p->mu);
        while (p->cls[k].created < d.initial && buffet__pkt_grow(p, k)) {}
        buffet__pkt_unlock(p);
        if (p->cls[k].created < d.initial) goto fail;
    }
    if (!buffet__pkt_pools_add(p)) {
        buffet_alloc_fail(BUFFET_ERR_EXHAUSTED, "BUFFET_PKT_MAX_POOLS pools are live");
        goto fail;
    }
    *out = p;
    return BUFFET_OK;
fail:
    r = buffet_alloc_error(&why);
    BUFFET__LOG(&d.log, BUFFET_LOG_ERROR, r, "packet pool %s: not created: %s", p->name, why);
    buffet__pkt_pool_free(p);
    return r;
}

BUFFET_API size_t buffet_pkt_pool_report_leaks(buffet_pkt_pool *p, FILE *out) {
    size_t n, i;
    buffet__pkt_region *r;
    if (!p) return 0;
    pthread_mutex_lock(&p->mu);
    n = buffet__pkt_out(p);
    buffet__pkt_unlock(p);
    /* Regions are only ever added, each published whole: walked without the lock, so the
       logger may call into the pool. */
    /* Acquire: pairs with the release that published each region (buffet__pkt_grow). */
    for (r = BUFFET__LOAD(&p->regions, BUFFET__ACQUIRE); r && p->checks; r = r->next) {
        for (i = 0; i < r->count; i++) {
            buffet__pkt_dbg *d = &r->dbg[i];
            /* Acquire: pairs with the release stores of `out` (buffet__pkt_handout, buffet__pkt_put).
               The site is relaxed: a report racing an allocation may name its previous taker. */
            if (!BUFFET__LOAD(&d->out, BUFFET__ACQUIRE)) continue;
            const char *where = BUFFET__LOAD(&d->taken.where, BUFFET__RELAXED);
            const char *func = BUFFET__LOAD(&d->taken.func, BUFFET__RELAXED);
            if (out)
                fprintf(out, "buffet: pool %s: buffer %p (class %u) still out, taken at %s in %s()\n", p->name,
                        (void *)buffet__pkt_elem(p, r, i), r->cls, where ? where : "?", func ? func : "?");
            BUFFET__LOG(&p->log, BUFFET_LOG_WARN, BUFFET_ERR_LEAK, "pool %s: buffer %p still out, taken at %s in %s()",
                        p->name, (void *)buffet__pkt_elem(p, r, i), where ? where : "?", func ? func : "?");
        }
    }
    if (n && !p->checks)
        BUFFET__LOG(&p->log, BUFFET_LOG_WARN, BUFFET_ERR_LEAK, "pool %s: %zu buffer%s out (in caches or leaked)", p->name, n, n == 1 ? "" : "s");
    if (out) fprintf(out, "buffet: pool %s: %zu buffer%s out (in caches or leaked)\n", p->name, n, n == 1 ? "" : "s");
    return n;
}

/* A registry let the pool go (removed, or destroyed): forget it. */
static void buffet__pkt_detach(void *self, buffet_registry *r) {
    buffet_pkt_pool *p = (buffet_pkt_pool *)self;
    unsigned i;
    pthread_mutex_lock(&p->mu);
    for (i = 0; i < p->nregistries && p->registries[i] != r; i++) {}
    if (i < p->nregistries) p->registries[i] = p->registries[--p->nregistries];
    buffet__pkt_unlock(p);
}

BUFFET_API void buffet_pkt_pool_destroy(buffet_pkt_pool *p) {
    size_t out, caches = 0;
    buffet_pkt_cache *c;
    bool done;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    /* First: no cache or registration may start (they read it under the lock). Relaxed: the
       lock orders it for them; the lock-free readers (the allocation paths) take it as a hint
       only, and an allocation that misses it is served from a pool that still exists. */
    BUFFET__STORE(&p->dying, true, BUFFET__RELAXED);
    buffet__pkt_unlock(p);
    /* Leave every registry: no call into the pool can start after this. */
    for (;;) {
        buffet_registry *r;
        pthread_mutex_lock(&p->mu);
        r = p->nregistries ? p->registries[0] : NULL;
        buffet__pkt_unlock(p);
        if (!r) break;
        if (buffet__registry_remove_self(r, p) != BUFFET_OK) buffet__pkt_detach(p, r);
    }
    pthread_mutex_lock(&p->mu);
    done = buffet__pkt_done(p);
    out = buffet__pkt_out(p);
    for (c = p->caches; c; c = c->next_in_pool) caches++;
    /* The last buffer may come back while the report below runs (another thread, or the logger
       itself): the pool stays until the report is done. */
    p->reporting = !done;
    buffet__pkt_unlock(p);
    if (done) {
        buffet__pkt_pool_free(p);
        return;
    }
    BUFFET__LOG(&p->log, BUFFET_LOG_WARN, BUFFET_ERR_STATE,
                "pool %s destroyed with %zu buffers out and %zu caches attached: it is released when they come back",
                p->name, out, caches);
    if (p->checks && out) buffet_pkt_pool_report_leaks(p, NULL);
    pthread_mutex_lock(&p->mu);
    p->reporting = false;
    done = buffet__pkt_done(p);
    buffet__pkt_unlock(p);
    if (done) buffet__pkt_pool_free(p);
}

BUFFET_API uint32_t buffet_pkt_pool_user_size(const buffet_pkt_pool *p) { return p ? p->user_size : 0; }

BUFFET_API int buffet_pkt_pool_class(const buffet_pkt_pool *p, size_t size) {
    unsigned k;
    if (!p) return -1;
    for (k = 0; k < p->nclasses; k++)
        if (size <= p->cls[k].data_room) return (int)k;
    return -1;
}

/* >>caches */
/* Bring c's region ranges up to date (see buffet_pkt_free_bulk_raw). Called locked. */
static void buffet__pkt_sync_ranges(buffet_pkt_cache *c) {
    unsigned k;
    for (k = 0; k < c->nclasses; k++) {
        c->raw_lo[k] = c->pool->cls[k].lo;
        c->raw_n[k] = c->pool->cls[k].n;
        c->raw_inv[k] = c->pool->cls[k].inv;
        c->raw_shift[k] = c->pool->cls[k].shift;
    }
}

BUFFET_API buffet_result buffet_pkt_cache_create_at(buffet_pkt_cache **out, buffet_pkt_pool *p, uint32_t size, buffet_site site) {
    buffet_pkt_cache *c;
    bool dying;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    if (!p || size > BUFFET_PKT_CACHE_MAX) return BUFFET_ERR_INVALID;
    if (size == 0) size = 64;
    c = (buffet_pkt_cache *)buffet_alloc(p->allocator, sizeof *c, BUFFET_ALIGNOF(buffet_pkt_cache), site);
    if (!c) return buffet_alloc_error(NULL);
    memset(c, 0, offsetof(buffet_pkt_cache, objs));   /* the arrays are written before they are read */
    c->pool = p;
    c->size = size;
    c->nclasses = p->nclasses;
    c->headroom = (uint16_t)p->headroom;
    c->checks = p->checks;
    c->hdr_size = p->hdr_size;
    c->owner = pthread_self();
    {
        unsigned k;
        for (k = 0; k <= c->nclasses; k++) {
            c->cls[k].objs = c->objs[k];
            c->cls[k].room = c->checks ? 0 : size;
        }
    }
    pthread_mutex_lock(&p->mu);
    dying = p->dying;
    if (!dying) {
        c->next_in_pool = p->caches;
        p->caches = c;
        buffet__pkt_sync_ranges(c);
    }
    buffet__pkt_unlock(p);
    if (dying) {
        buffet_free(p->allocator, c, sizeof *c, BUFFET_ALIGNOF(buffet_pkt_cache), site);
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "cache_create: pool %s is being destroyed", p->name);
        return BUFFET_ERR_STATE;
    }
    *out = c;
    return BUFFET_OK;
}

/* Watermark crossings found while merging, reported after the lock is released. */
typedef struct buffet__pkt_events { unsigned n; struct { unsigned cls; size_t in_use, max; bool high; } e[2]; } buffet__pkt_events;

static void buffet__pkt_watermark(buffet_pkt_pool *p, unsigned k, buffet__pkt_events *ev) {
    buffet__pkt_class *c = &p->cls[k];
    size_t in_use = (size_t)(c->allocs - c->frees);
    bool cross_up = !c->high && in_use * 100 >= c->max * p->wm_high;
    bool cross_down = c->high && in_use * 100 <= c->max * p->wm_low;
    if ((cross_up || cross_down) && ev->n < 2) {
        c->high = cross_up;
        ev->e[ev->n].cls = k;
        ev->e[ev->n].in_use = in_use;
        ev->e[ev->n].max = c->max;
        ev->e[ev->n].high = cross_up;
        ev->n++;
    }
}

static void buffet__pkt_fire(buffet_pkt_pool *p, const buffet__pkt_events *ev) {
    unsigned i;
    for (i = 0; i < ev->n && p->on_watermark; i++)
        p->on_watermark(p->wm_user, p, ev->e[i].cls, ev->e[i].in_use, ev->e[i].max, ev->e[i].high);
}

/* Fold a cache class's counters into the pool's. Called locked. */
static void buffet__pkt_merge(buffet_pkt_pool *p, buffet_pkt_cache_class *kc, unsigned k, buffet__pkt_events *ev) {
    buffet__pkt_class *c = &p->cls[k];
    c->allocs += kc->allocs;
    c->frees += kc->frees;
    c->misses += kc->misses;
    kc->allocs = kc->frees = kc->misses = 0;
    buffet__pkt_watermark(p, k, ev);
}

BUFFET_API void buffet_pkt_cache_flush(buffet_pkt_cache *c) {
    buffet__pkt_events ev;
    unsigned k;
    if (!c) return;
    ev.n = 0;
    for (k = 0; k <= c->nclasses; k++) {
        buffet_pkt_cache_class *kc = &c->cls[k];
        if (kc->count) buffet__pkt_store_put(c->pool, k, c->objs[k], kc->count, false);
        kc->count = 0;
    }
    pthread_mutex_lock(&c->pool->mu);
    for (k = 0; k <= c->nclasses; k++) buffet__pkt_merge(c->pool, &c->cls[k], k, &ev);
    buffet__pkt_sync_ranges(c);
    buffet__pkt_unlock(c->pool);
    buffet__pkt_fire(c->pool, &ev);
}

BUFFET_API void buffet_pkt_cache_destroy(buffet_pkt_cache *c) {
    buffet_pkt_pool *p;
    buffet_pkt_cache **pp;
    bool done;
    if (!c) return;
    p = c->pool;
    buffet_pkt_cache_flush(c);
    pthread_mutex_lock(&p->mu);
    for (pp = &p->caches; *pp && *pp != c; pp = &(*pp)->next_in_pool) {}
    if (*pp) *pp = c->next_in_pool;
    done = buffet__pkt_done(p);
    buffet__pkt_unlock(p);
    buffet_free(p->allocator, c, sizeof *c, BUFFET_ALIGNOF(buffet_pkt_cache), BUFFET_SITE);
    if (done) buffet__pkt_pool_free(p);
}

/* >>alloc and free */
/* Take up to n buffers of class k from the ring, growing the class when it is dry. */
static uint32_t buffet__pkt_take(buffet_pkt_pool *p, unsigned k, void **objs, uint32_t n, uint32_t need) {
    uint32_t got = (uint32_t)buffet__pkt_store_take(p, k, objs, n);
    while (got < need) {
        uint32_t more;
        bool grew;
        pthread_mutex_lock(&p->mu);
        /* Another thread may have grown it meanwhile: only grow when the store is still short. */
        grew = buffet__pkt_stored(p, k) >= need - got || buffet__pkt_grow(p, k);
        buffet__pkt_unlock(p);
        more = (uint32_t)buffet__pkt_store_take(p, k, objs + got, n - got);
        got += more;
        if (!grew && more == 0) break;
    }
    return got;
}

/* An allocation the pool could not serve: counted, logged with its cause, which is recorded
   for buffet_alloc_error. Returns: NULL. */
static buffet_pkt *buffet__pkt_failed(buffet_pkt_pool *p, unsigned k, size_t size) {
    buffet_result why;
    const char *text;
    buffet_logger log;
    char name[sizeof p->name];
    uint32_t room;
    size_t max;
    pthread_mutex_lock(&p->mu);
    p->cls[k].failures++;
    /* below its max, the class could not grow: the region's bookkeeping or mapping failed */
    why = p->dying ? BUFFET_ERR_STATE : buffet_pkt_pool_class(p, size) < 0 ? BUFFET_ERR_TOO_LARGE
        : p->cls[k].created < p->cls[k].max ? BUFFET_ERR_NOMEM : BUFFET_ERR_EXHAUSTED;
    /* copied under the lock: a destroyed pool may go once it is released */
    memcpy(name, p->name, sizeof name);
    room = p->cls[k].data_room;
    max = p->cls[k].max;
    log = p->log;
    buffet__pkt_unlock(p);
    text = why == BUFFET_ERR_STATE ? "the pool is being destroyed"
         : why == BUFFET_ERR_TOO_LARGE ? "larger than the pool's largest class"
         : why == BUFFET_ERR_NOMEM ? "the class could not grow: out of memory" : "the class is at its max";
    BUFFET__LOG(&log, BUFFET_LOG_WARN, why, "pool %s: class %u (%u bytes, max %zu buffers) refused %zu bytes: %s",
                name, k, room, max, size, text);
    return (buffet_pkt *)buffet_alloc_fail(why, text);
}

/* A buffer leaves the pool's hands: its data room addressable, and the debug bookkeeping (taken
   by `site`, through `op`). The header is not touched. */
static void buffet__pkt_lend(buffet_pkt_pool *p, buffet_pkt *h, unsigned k, uint32_t op, buffet_site site) {
    if (k < p->nclasses) BUFFET__UNPOISON(h->buf, h->buf_len);
    if (p->checks) {
        buffet__pkt_dbg *d = buffet__pkt_dbg_of(p, h, "alloc", site);
        if (d) {
            /* Release: pairs with the acquire loads of `out` in report_leaks and the double-free
               check; the site after it is relaxed (see report_leaks) */
            BUFFET__STORE(&d->out, 1u, BUFFET__RELEASE);
            /* report_leaks may read it meanwhile, on another thread */
            BUFFET__STORE(&d->taken.where, site.where, BUFFET__RELAXED);
            BUFFET__STORE(&d->taken.func, site.func, BUFFET__RELAXED);
            buffet__pkt_note(d, BUFFET__PKT_OP_CACHE_OUT, site);
            buffet__pkt_note(d, op, site);
        }
    }
}

/* A buffer is handed out as a packet: lent, then a fresh header. */
static void buffet__pkt_handout(buffet_pkt_pool *p, buffet_pkt *h, unsigned k, buffet_site site) {
    buffet__pkt_lend(p, h, k, BUFFET__PKT_OP_ALLOC, site);
    buffet__pkt_reset(h, k < p->nclasses ? (uint16_t)p->headroom : 0);
}

BUFFET_API buffet_pkt *buffet__pkt_alloc_slow(buffet_pkt_cache *c, unsigned k, buffet_site site) {
    buffet_pkt_cache_class *kc;
    buffet_pkt_pool *p;
    buffet_pkt *h;
    if (!c || k > c->nclasses) return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "no cache, or no such class");
    p = c->pool;
    kc = &c->cls[k];
    if (kc->count == 0) {
        buffet__pkt_events ev;
        uint32_t want = c->size / 2 ? c->size / 2 : 1, b = p->cls[k].batch;
        if (want >= b) want -= want % b;   /* whole batches: no surplus to hand back under the lock */
        /* relaxed: a hint (see buffet_pkt_pool_destroy) */
        kc->count = BUFFET__LOAD(&p->dying, BUFFET__RELAXED) ? 0 : buffet__pkt_take(p, k, c->objs[k], want, 1);
        kc->misses++;
        ev.n = 0;
        pthread_mutex_lock(&p->mu);
        buffet__pkt_merge(p, kc, k, &ev);
        buffet__pkt_sync_ranges(c);
        buffet__pkt_unlock(p);
        buffet__pkt_fire(p, &ev);
        if (kc->count == 0) return buffet__pkt_failed(p, k, p->cls[k].data_room);
    }
    h = (buffet_pkt *)c->objs[k][--kc->count];
    kc->allocs++;
    buffet__pkt_handout(p, h, k, site);
    return h;
}

BUFFET_API buffet_pkt *buffet_pkt_alloc_at(buffet_pkt_cache *c, size_t size, buffet_site site) {
    int k;
    if (!c) return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "no cache");
    k = buffet_pkt_pool_class(c->pool, size);
    if (k < 0) return buffet__pkt_failed(c->pool, c->nclasses ? c->nclasses - 1 : 0, size);
    return buffet_pkt_alloc_class_at(c, (unsigned)k, site);
}

/* Make room in c's class k: half the cache goes to the store, rounded to whole batches when it
   holds any, so no lock is needed. */
static void buffet__pkt_spill(buffet_pkt_cache *c, unsigned k) {
    buffet_pkt_cache_class *kc = &c->cls[k];
    uint32_t half = c->size / 2 ? c->size / 2 : 1, b = c->pool->cls[k].batch;
    if (half >= b) half -= half % b;
    if (half > kc->count) half = kc->count;
    buffet__pkt_store_put(c->pool, k, c->objs[k] + kc->count - half, half, false);
    kc->count -= half;
}

/* Return buffer h (header of class h->cls, refcount 0) to cache c, or to its ring. */
static void buffet__pkt_put(buffet_pkt_cache *c, buffet_pkt *h, buffet_site site) {
    buffet_pkt_pool *p = h->pool;
    unsigned k = h->cls;
    bool done;
    h->next = NULL;
    h->flags = 0;
    /* Relaxed: the caller dropped the last reference (ordered by seg_unref's acquire); the next
       owner gets the buffer through this thread's cache or the ring's release and acquire. */
    BUFFET__STORE(&h->refcnt, (uint16_t)0, BUFFET__RELAXED);
    if (p->checks) {
        buffet__pkt_dbg *d = buffet__pkt_dbg_of(p, h, "free", site);
        if (d) {
            buffet__pkt_note(d, BUFFET__PKT_OP_CACHE_IN, site);
            BUFFET__STORE(&d->out, 0u, BUFFET__RELEASE);   /* release: as in buffet__pkt_handout */
        }
    }
    if (k < p->nclasses) BUFFET__POISON(h->buf, h->buf_len);   /* headers stay readable: buffet checks them */
    if (c && c->pool == p) {
        buffet_pkt_cache_class *kc = &c->cls[k];
        if (kc->count == c->size) buffet__pkt_spill(c, k);
        c->objs[k][kc->count++] = h;
        kc->frees++;
        return;
    }
    pthread_mutex_lock(&p->mu);
    buffet__pkt_store_put(p, k, (void *const *)&h, 1, true);
    p->cls[k].frees++;
    done = buffet__pkt_done(p);
    buffet__pkt_unlock(p);
    if (done) buffet__pkt_pool_free(p);   /* the last buffer of a destroyed pool came back */
}

static buffet__pkt_ext *buffet__pkt_ext_of(const buffet_pkt *h) {
    return (buffet__pkt_ext *)(h->buf + h->buf_len);
}

/* Drop one reference of segment h; at zero, release what it shares and return it. Returns:
   false when h was refused (already free, or not the pool's: counted and logged). */
static bool buffet__pkt_seg_unref(buffet_pkt_cache *c, buffet_pkt *h, buffet_site site) {
    buffet_pkt_pool *p = h->pool;
    if (p->checks) {
        buffet__pkt_dbg *d = buffet__pkt_dbg_of(p, h, "free", site);
        if (!d) return false;
        /* acquire: pairs with the release stores of `out`; the site relaxed, as in report_leaks */
        if (!BUFFET__LOAD(&d->out, BUFFET__ACQUIRE)) {
            const char *where = BUFFET__LOAD(&d->taken.where, BUFFET__RELAXED);
            const char *func = BUFFET__LOAD(&d->taken.func, BUFFET__RELAXED);
            BUFFET__FETCH_ADD(&p->double_frees, 1, BUFFET__RELAXED);   /* a statistic */
            BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE,
                        "pool %s: double free of buffer %p at %s in %s(); it was taken at %s in %s()", p->name,
                        (void *)h, site.where ? site.where : "?", site.func ? site.func : "?",
                        where ? where : "?", func ? func : "?");
            return false;
        }
        buffet__pkt_note(d, BUFFET__PKT_OP_FREE, site);
        buffet__pkt_cookies_ok(p, h);
    }
    /* Acquire: as below (a 0 here is a free buffer: nothing of it is touched). */
    if (BUFFET__LOAD(&h->refcnt, BUFFET__ACQUIRE) == 0) {
        BUFFET__FETCH_ADD(&p->double_frees, 1, BUFFET__RELAXED);   /* a statistic */
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE, "pool %s: free of buffer %p at %s in %s(): it is already free",
                    p->name, (void *)h, site.where ? site.where : "?", site.func ? site.func : "?");
        return false;
    }
    /* At 1 the caller holds the only reference: a plain check suffices (no atomic RMW). The
       acquire load (and the acquire half of the FETCH_SUB) pairs with the release half of the
       other holders' FETCH_SUB: what they did with the buffer happens before its reuse here.
       The release half makes this holder's own uses visible to whoever drops the last one. */
    if (BUFFET__LOAD(&h->refcnt, BUFFET__ACQUIRE) != 1 && BUFFET__FETCH_SUB(&h->refcnt, 1, BUFFET__ACQ_REL) != 1) return true;
    if (h->flags & BUFFET_PKT_EXTERNAL) {
        buffet__pkt_ext *e = buffet__pkt_ext_of(h);
        /* Acquire and release, for the caller's memory as for a segment's count above. */
        if (BUFFET__FETCH_SUB(&e->refcnt, 1, BUFFET__ACQ_REL) == 1 && e->free_fn) e->free_fn(e->opaque, e->mem);
    } else if (h->flags & BUFFET_PKT_CLONE) {
        buffet__pkt_seg_unref(c, (buffet_pkt *)(h->buf - p->hdr_size), site);
    }
    buffet__pkt_put(c, h, site);
    return true;
}

/* Free segment p and the segments behind it. A caller's p (not one of buffet's own frees of a
   chain's tail) must not be a segment that buffet_pkt_chain linked behind another: freeing it
   alone would leave the head linking a buffer handed out again, so it is refused. */
static void buffet__pkt_free_segs(buffet_pkt_cache *c, buffet_pkt *p, buffet_site site, bool callers) {
    uint32_t n = 0;
    while (p) {
        buffet_pkt *next;
        /* Nothing a refused segment links to is touched either (a free clone header's `next`
           holds the store's pointers), nor is a cycle followed forever (the 65536th segment can
           only be one seen before). */
        if (!buffet__pkt_check_header(c, p, "free", site) || ++n > UINT16_MAX) return;
        /* relaxed: 0 or not only (a free segment is told as a double free below) */
        if (callers && n == 1 && p->nb_segs == 0 && BUFFET__LOAD(&p->refcnt, BUFFET__RELAXED) != 0) {
            BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                        "pool %s: free of %p at %s in %s(): a segment chained behind another (free the chain's head): refused",
                        p->pool->name, (void *)p, buffet__site_where(site), buffet__site_func(site));
            return;
        }
        next = p->next;   /* read first: the segment may be reused below */
        if (!buffet__pkt_seg_unref(c, p, site)) return;
        p = next;
    }
}

BUFFET_API void buffet__pkt_free_slow(buffet_pkt_cache *c, buffet_pkt *p, buffet_site site) { buffet__pkt_free_segs(c, p, site, true); }

/* Move n buffers of data class k from cache c (topped up first when short) to pkts, counted as
   allocations. Returns: n, or 0 with nothing taken (counted, logged where the pool is at fault,
   and recorded for buffet_alloc_error). */
static size_t buffet__pkt_take_burst(buffet_pkt_cache *c, unsigned k, buffet_pkt **pkts, size_t n,
                                     buffet_site site) {
    buffet_pkt_cache_class *kc;
    if (!c || !pkts || n == 0 || k >= c->nclasses) {
        buffet_alloc_fail(BUFFET_ERR_INVALID, "no cache or array, n 0, or no such class");
        return 0;
    }
    kc = &c->cls[k];
    if (n > kc->count) {
        /* Top the cache up so the whole burst comes from it, or give up with nothing taken. */
        uint32_t want, room = c->size - kc->count, ask;
        buffet__pkt_events ev;
        if (n > c->size) {
            /* A burst larger than the cache never fits in it: say so (not "at its max"), and count it. */
            pthread_mutex_lock(&c->pool->mu);
            c->pool->cls[k].failures++;
            buffet__pkt_unlock(c->pool);
            BUFFET__LOG(&c->pool->log, BUFFET_LOG_WARN, BUFFET_ERR_TOO_LARGE,
                        "pool %s: class %u refused a burst of %zu at %s in %s(): larger than the cache (%u)", c->pool->name,
                        k, n, buffet__site_where(site), buffet__site_func(site), c->size);
            buffet_alloc_fail(BUFFET_ERR_TOO_LARGE, "a burst larger than the cache");
            return 0;
        }
        want = (uint32_t)(n - kc->count);
        ask = room > want + c->size / 2 ? want + c->size / 2 : room;
        /* relaxed: a hint (see buffet_pkt_pool_destroy) */
        kc->count += BUFFET__LOAD(&c->pool->dying, BUFFET__RELAXED) ? 0 : buffet__pkt_take(c->pool, k, c->objs[k] + kc->count, ask, want);
        kc->misses++;
        ev.n = 0;
        pthread_mutex_lock(&c->pool->mu);
        buffet__pkt_merge(c->pool, kc, k, &ev);
        buffet__pkt_sync_ranges(c);
        buffet__pkt_unlock(c->pool);
        buffet__pkt_fire(c->pool, &ev);
        if (n > kc->count) {
            buffet__pkt_failed(c->pool, k, c->pool->cls[k].data_room);
            return 0;
        }
    }
    kc->count -= (uint32_t)n;
    memcpy(pkts, c->objs[k] + kc->count, n * sizeof *pkts);
    kc->allocs += n;
    return n;
}

BUFFET_API size_t buffet_pkt_alloc_bulk_at(buffet_pkt_cache *c, unsigned k, buffet_pkt **pkts, size_t n, buffet_site site) {
    size_t i;
    buffet_pkt fresh;
    if (!buffet__pkt_take_burst(c, k, pkts, n, site)) return 0;
    if (c->checks) {
        for (i = 0; i < n; i++) buffet__pkt_handout(c->pool, pkts[i], k, site);
        return n;
    }
    /* Every header of the burst gets the same bytes from buf_len on: the fixed fields of its
       class (as they are) and a fresh packet's (as buffet__pkt_reset writes them), as three
       16-byte stores where the compiler has vectors, else as whole words. */
    memset(&fresh, 0, sizeof fresh);
    fresh.buf_len = c->pool->cls[k].buf_len;
    fresh.cls = (uint8_t)k;
    buffet__pkt_reset(&fresh, c->headroom);
    for (i = 0; i < n; i++) BUFFET__UNPOISON(pkts[i]->buf, pkts[i]->buf_len);
#if defined(__GNUC__) && (defined(__SSE2__) || defined(__ARM_NEON))
    if (sizeof fresh - offsetof(buffet_pkt, buf_len) == 48) {   /* 64-bit targets */
        typedef uint64_t buffet__v2 __attribute__((vector_size(16)));
        buffet__v2 a, b, d;
        memcpy(&a, (unsigned char *)&fresh + offsetof(buffet_pkt, buf_len), 16);
        memcpy(&b, (unsigned char *)&fresh + offsetof(buffet_pkt, buf_len) + 16, 16);
        memcpy(&d, (unsigned char *)&fresh + offsetof(buffet_pkt, buf_len) + 32, 16);
#if defined(__SSE2__)
        /* opaque values: kept in registers, not rebuilt as constants inside the loop */
        __asm__("" : "+x"(a), "+x"(b), "+x"(d));
#endif
        for (i = 0; i < n; i++) {
            unsigned char *h = (unsigned char *)pkts[i] + offsetof(buffet_pkt, buf_len);
            memcpy(h, &a, 16);
            memcpy(h + 16, &b, 16);
            memcpy(h + 32, &d, 16);
        }
    } else   /* an else, not a return: a constant condition must leave no code unreachable (nvcc) */
#endif
    {
        for (i = 0; i < n; i++)
            memcpy((unsigned char *)pkts[i] + offsetof(buffet_pkt, buf_len),
                   (unsigned char *)&fresh + offsetof(buffet_pkt, buf_len), sizeof fresh - offsetof(buffet_pkt, buf_len));
    }
    return n;
}

BUFFET_API size_t buffet__pkt_alloc_bulk_raw_slow(buffet_pkt_cache *c, unsigned k, buffet_pkt **pkts, size_t n,
                                                  buffet_site site) {
    size_t i;
    /* take_burst refuses a NULL array, but said here too, or GCC's -Warray-bounds (C++ -O2) sees
       the loops below run over a NULL the caller passed. */
    if (!pkts) return buffet__pkt_take_burst(c, k, pkts, n, site);
    if (!buffet__pkt_take_burst(c, k, pkts, n, site)) return 0;
    if (c->checks) {
        for (i = 0; i < n; i++) buffet__pkt_lend(c->pool, pkts[i], k, BUFFET__PKT_OP_ALLOC_RAW, site);
    } else if (BUFFET_TRACK_ASAN || BUFFET_TRACK_VALGRIND) {
        for (i = 0; i < n; i++) BUFFET__UNPOISON(pkts[i]->buf, pkts[i]->buf_len);
    }
    for (i = 0; i < n; i++) buffet__pkt_raw_mark(pkts[i], BUFFET_PKT_RAW_LENT);
    return n;
}

/* Where in c a burst of n buffers of one class, headed by `first`, would go: the class (0 and
   no room when first is no data buffer of c's pool: the caller takes the careful path), after
   making room when the class cannot take the whole burst. Returns: how many fit, up to n. */
static size_t buffet__pkt_burst_room(buffet_pkt_cache *c, const buffet_pkt *first, size_t n, unsigned *k) {
    buffet_pkt_cache_class *kc;
    /* first->pool compared, never followed; cls read only once the header is the pool's own */
    if (!first || first->pool != c->pool || first->buf != (const unsigned char *)first + c->hdr_size ||
        first->cls >= c->nclasses)
        return 0;
    *k = first->cls;
    kc = &c->cls[*k];
    if (n > c->size - kc->count && kc->count > c->size / 2) buffet__pkt_spill(c, *k);
    return n < c->size - kc->count ? n : c->size - kc->count;
}

/* The release fast path of buffet_pkt_free_bulk: packets are checked as buffet_pkt_free's inline
   path checks one, and moved while they pass. The cache's fields are locals, as the header stores
   may alias them. Returns: how many were freed; the caller frees the rest one by one. */
static size_t buffet__pkt_free_burst(buffet_pkt_cache *c, buffet_pkt *const *pkts, size_t n) {
    buffet_pkt_pool *pool = c->pool;
    size_t hdr = c->hdr_size, m, i;
    unsigned k = 0;
    void **slot;
    m = buffet__pkt_burst_room(c, pkts[0], n, &k);
    slot = c->objs[k] + c->cls[k].count;
    for (i = 0; i < m; i++) {
        buffet_pkt *p = pkts[i];
        /* Acquire on the count, as in buffet_pkt_free_at. A packet listed twice is caught: its
           first free set the count 0, so the second stops here and goes the careful way. */
        if (!p || p->next != NULL || p->buf != (unsigned char *)p + hdr || p->pool != pool || p->cls != k ||
            BUFFET__LOAD(&p->refcnt, BUFFET__ACQUIRE) != 1 || p->nb_segs != 1)
            break;
        /* Relaxed: as in buffet_pkt_free_at (the caller held the only reference). */
        BUFFET__STORE(&p->refcnt, (uint16_t)0, BUFFET__RELAXED);
        BUFFET__POISON(p->buf, p->buf_len);
        slot[i] = p;
    }
    c->cls[k].count += (uint32_t)i;
    c->cls[k].frees += i;
    return i;
}

BUFFET_API void buffet_pkt_free_bulk_at(buffet_pkt_cache *c, buffet_pkt *const *pkts, size_t n, buffet_site site) {
    size_t i = 0;
    if (!pkts) return;
    if (!c) {   /* each to its pool, as buffet_pkt_free_shared */
        for (; i < n; i++) buffet__pkt_free_slow(NULL, pkts[i], site);
        return;
    }
    while (i < n) {
        size_t done = c->checks ? 0 : buffet__pkt_free_burst(c, pkts + i, n - i);
        i += done;
        /* the one that stopped the burst (refused, another class or pool, a clone, a chain) */
        if (!done && i < n) buffet_pkt_free_at(c, pkts[i++], site);
    }
}

/* Give back raw buffer h, with every check (see RAW BUFFERS). c may be NULL or another pool's.
   h is found among the pools' buffers by its address before anything is read through it (a
   raw burst may hold any pointer, even one to nothing mapped); one that is no header at its
   place is refused on c's pool (counted and logged), or unnoticed without c. */
static void buffet__pkt_put_raw(buffet_pkt_cache *c, buffet_pkt *h, buffet_site site) {
    buffet__pkt_region *r = NULL;
    buffet_pkt_pool *p;
    size_t at = 0;
    uint16_t refs;
    if (!h) return;
    p = buffet__pkt_checked_find(h, c ? c->pool : NULL, &r, &at);
    if (!p || h->pool != p || !buffet__pkt_genuine(p, h)) {   /* read only once h is known to be a header's place */
        if (c) {
            BUFFET__FETCH_ADD(&c->pool->foreign_frees, 1, BUFFET__RELAXED);   /* a statistic */
            BUFFET__LOG(&c->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN,
                        "pool %s: free_bulk_raw of %p at %s in %s(): not a buffer of a live pool at its place (a "
                        "copy of a header, a pointer into a buffer, foreign memory): refused", c->pool->name,
                        (void *)h, buffet__site_where(site), buffet__site_func(site));
        }
        return;
    }
    if (h->cls >= p->nclasses) {
        /* Relaxed: a statistic. */
        BUFFET__FETCH_ADD(&p->foreign_frees, 1, BUFFET__RELAXED);
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN,
                    "pool %s: free_bulk_raw of %p at %s in %s(): a clone's or an external packet's header, "
                    "not a raw buffer: refused", p->name, (void *)h, buffet__site_where(site),
                    buffet__site_func(site));
        return;
    }
    if (p->checks) {
        buffet__pkt_dbg *d = buffet__pkt_dbg_of(p, h, "free_bulk_raw", site);
        if (!d) return;
        /* acquire: pairs with the release stores of `out` (see buffet__pkt_seg_unref) */
        if (!BUFFET__LOAD(&d->out, BUFFET__ACQUIRE)) {
            const char *where = BUFFET__LOAD(&d->taken.where, BUFFET__RELAXED);
            const char *func = BUFFET__LOAD(&d->taken.func, BUFFET__RELAXED);
            BUFFET__FETCH_ADD(&p->double_frees, 1, BUFFET__RELAXED);   /* a statistic */
            BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE,
                        "pool %s: double free of raw buffer %p at %s in %s(); it was taken at %s in %s()", p->name,
                        (void *)h, buffet__site_where(site), buffet__site_func(site), where ? where : "?", func ? func : "?");
            return;
        }
    }
    /* Relaxed: 0 or not only; whoever passed h owns it, however it came to this thread. */
    refs = BUFFET__LOAD(&h->refcnt, BUFFET__RELAXED);
    if (refs != 0) {
        BUFFET__FETCH_ADD(&p->foreign_frees, 1, BUFFET__RELAXED);   /* a statistic: not a raw buffer */
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                    "pool %s: free_bulk_raw of %p at %s in %s(): a packet (%u references), not a raw buffer (free "
                    "packets with buffet_pkt_free): refused", p->name, (void *)h, buffet__site_where(site),
                    buffet__site_func(site), (unsigned)refs);
        return;
    }
    if (h->nb_segs != BUFFET_PKT_RAW_LENT) {   /* free already: in a cache, the store, or a burst */
        BUFFET__FETCH_ADD(&p->double_frees, 1, BUFFET__RELAXED);   /* a statistic */
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE,
                    "pool %s: free_bulk_raw of %p at %s in %s(): not a lent raw buffer (given back twice, or begun "
                    "as a packet: nb_segs %u): refused", p->name, (void *)h, buffet__site_where(site),
                    buffet__site_func(site), (unsigned)h->nb_segs);
        return;
    }
    h->nb_segs = 0;
    if (p->checks) {
        buffet__pkt_note(buffet__pkt_dbg_of(p, h, "free_bulk_raw", site), BUFFET__PKT_OP_FREE_RAW, site);
        buffet__pkt_cookies_ok(p, h);
    }
    buffet__pkt_put(c, h, site);
}

BUFFET_API unsigned buffet__pkt_raw_class_find(buffet_pkt_cache *c, const void *h) {
    unsigned k;
    for (k = 0; k < c->nclasses && buffet__pkt_raw_index(c, k, h) >= c->raw_n[k]; k++) {}
    if (k < c->nclasses) c->raw_hint = (uint8_t)k;
    return k;
}

/* The release path of buffet_pkt_free_bulk_raw when the inline one declined: the lent buffers
   of the first one's region (any region of c's pool, found by address) at the front of the
   burst go back, making room first, checked as the inline path checks them. Returns: how many
   went back; the caller gives back the rest one by one. */
static size_t buffet__pkt_put_raw_burst(buffet_pkt_cache *c, buffet_pkt *const *pkts, size_t n) {
    unsigned k = buffet__pkt_raw_class(c, pkts[0]);
    uint64_t lo, count;
    buffet_pkt_cache_class *kc;
    void **slot;
    size_t i, got;
    if (k < c->nclasses) {
        lo = c->raw_lo[k];
        count = c->raw_n[k];
    } else {   /* another region: growth, or the part of a class that huge pages did not hold */
        const buffet__pkt_region *r = buffet__pkt_locate(c->pool, pkts[0], NULL);
        if (!r || r->cls >= c->nclasses) return 0;
        k = r->cls;
        lo = (uint64_t)r->lo;
        count = r->count;
    }
    kc = &c->cls[k];
    if (n > c->size - kc->count && kc->count > c->size / 2) buffet__pkt_spill(c, k);
    slot = kc->objs + kc->count;
    got = buffet__pkt_raw_back(c, k, lo, count, pkts, n < c->size - kc->count ? n : c->size - kc->count, slot);
    for (i = 0; i < got; i++) BUFFET__POISON(((buffet_pkt *)slot[i])->buf, ((buffet_pkt *)slot[i])->buf_len);
    kc->count += (uint32_t)got;
    kc->frees += got;
    return got;
}

BUFFET_API void buffet__pkt_free_bulk_raw_slow(buffet_pkt_cache *c, buffet_pkt *const *pkts, size_t n, buffet_site site) {
    size_t i = 0;
    if (!pkts) return;
    while (i < n) {
        size_t done = !c || c->checks ? 0 : buffet__pkt_put_raw_burst(c, pkts + i, n - i);
        i += done;
        if (!done && i < n) buffet__pkt_put_raw(c, pkts[i++], site);
    }
}

BUFFET_API buffet_pkt *buffet_pkt_alloc_shared_at(buffet_pkt_pool *p, size_t size, buffet_site site) {
    int k = buffet_pkt_pool_class(p, size);
    void *h = NULL;
    if (!p) return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "no pool");
    /* dying, relaxed: a hint (see buffet_pkt_pool_destroy) */
    if (k < 0 || BUFFET__LOAD(&p->dying, BUFFET__RELAXED) || buffet__pkt_take(p, (unsigned)k, &h, 1, 1) == 0)
        return buffet__pkt_failed(p, k < 0 ? (p->nclasses ? p->nclasses - 1 : 0) : (unsigned)k, size);
    pthread_mutex_lock(&p->mu);
    p->cls[k].allocs++;
    buffet__pkt_unlock(p);
    buffet__pkt_handout(p, (buffet_pkt *)h, (unsigned)k, site);
    return (buffet_pkt *)h;
}

BUFFET_API void buffet_pkt_free_shared_at(buffet_pkt *p, buffet_site site) { buffet__pkt_free_slow(NULL, p, site); }

/* >>references, clones, external memory */
/* One more reference, made from one the caller holds. Returns: BUFFET_OK; BUFFET_ERR_OVERFLOW
   (the count is at its type's end) or BUFFET_ERR_STATE (it is 0: a free buffer, which a new
   reference must not bring back): nothing changes then. At 1 the caller holds the only one, so
   nobody can race: a plain store saves the locked instruction (DPDK does the same). All
   relaxed: a new reference publishes nothing (the caller's own reference keeps the buffer
   alive; ordering comes from the drops, acquire-release in buffet__pkt_seg_unref). */
static buffet_result buffet__pkt_count_up16(uint16_t *count) {
    uint16_t old = BUFFET__LOAD(count, BUFFET__RELAXED);
    if (old == 1) {
        BUFFET__STORE(count, (uint16_t)2, BUFFET__RELAXED);
        return BUFFET_OK;
    }
    do {
        if (old == 0) return BUFFET_ERR_STATE;
        if (old == UINT16_MAX) return BUFFET_ERR_OVERFLOW;
    } while (!BUFFET__CAS(count, &old, (uint16_t)(old + 1), BUFFET__RELAXED, BUFFET__RELAXED));   /* relaxed: above */
    return BUFFET_OK;
}
static buffet_result buffet__pkt_count_up(uint32_t *count) {
    uint32_t old = BUFFET__LOAD(count, BUFFET__RELAXED);   /* relaxed: as in buffet__pkt_count_up16 */
    if (old == 1) {
        BUFFET__STORE(count, 2u, BUFFET__RELAXED);
        return BUFFET_OK;
    }
    do {
        if (old == 0) return BUFFET_ERR_STATE;
        if (old == UINT32_MAX) return BUFFET_ERR_OVERFLOW;
    } while (!BUFFET__CAS(count, &old, old + 1, BUFFET__RELAXED, BUFFET__RELAXED));   /* relaxed: above */
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_pkt_ref_at(buffet_pkt *p, buffet_site site) {
    buffet_pkt *s, *t;
    buffet_result r;
    if (!p) return BUFFET_ERR_INVALID;
    if (!buffet__pkt_usable(p, "ref", site))
        return BUFFET__LOAD(&p->refcnt, BUFFET__RELAXED) == 0 ? BUFFET_ERR_STATE : BUFFET_ERR_INVALID;   /* relaxed: as in usable */
    for (s = p; s; s = s->next) {
        if ((r = buffet__pkt_count_up16(&s->refcnt)) != BUFFET_OK) {
            /* Give back what this call took: the caller's own references keep every count above
               0 (relaxed: taking and giving back a reference of one's own publishes nothing). */
            for (t = p; t != s; t = t->next) BUFFET__FETCH_SUB(&t->refcnt, (uint16_t)1, BUFFET__RELAXED);
            if (r == BUFFET_ERR_STATE)
                BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                            "pool %s: ref of %p at %s in %s(): a segment is already free: refused", p->pool->name,
                            (void *)p, buffet__site_where(site), buffet__site_func(site));
            return r;
        }
        if (s->pool->checks) {
            buffet__pkt_dbg *d = buffet__pkt_dbg_of(s->pool, s, "ref", site);
            if (d) buffet__pkt_note(d, BUFFET__PKT_OP_REF, site);
        }
    }
    return BUFFET_OK;
}

/* The header that owns the data h shows (itself unless h is a clone of a direct packet). */
static buffet_pkt *buffet__pkt_owner(buffet_pkt *h) {
    return (h->flags & BUFFET_PKT_CLONE) ? (buffet_pkt *)(h->buf - h->pool->hdr_size) : h;
}

/* The per-packet metadata and user area, from src's header to dst's. Pools may differ (a
   linearize through another pool's cache): as much of the user area as both have. */
static void buffet__pkt_copy_meta(buffet_pkt *dst, const buffet_pkt *src) {
    uint32_t user = src->pool->user_size;
    if (dst->pool != src->pool && dst->pool->user_size < user) user = dst->pool->user_size;
    dst->timestamp = src->timestamp;
    dst->hash = src->hash;
    dst->in_port = src->in_port;
    dst->out_port = src->out_port;
    dst->vlan_tci = src->vlan_tci;
    dst->packet_type = src->packet_type;
    if (user) memcpy(buffet_pkt_user(dst), buffet_pkt_user(src), user);
}

BUFFET_API buffet_pkt *buffet_pkt_clone_at(buffet_pkt_cache *c, buffet_pkt *p, buffet_site site) {
    buffet_pkt *head = NULL, **link = &head, *s;
    if (!c || !p) return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "no cache or packet");
    if (p->pool != c->pool) {
        /* A clone finds the data's owner through its own pool's layout, so it must share it. */
        BUFFET__LOG(&c->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "clone of %p from pool %s through a cache of pool %s: clone through the packet's own pool",
                    (void *)p, p->pool->name, c->pool->name);
        return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "a cache of another pool");
    }
    if (!buffet__pkt_usable(p, "clone", site))   /* relaxed below: as in usable */
        return BUFFET__LOAD(&p->refcnt, BUFFET__RELAXED) == 0 ? (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_STATE, "a free packet")
                                                             : (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "lengths that do not add up");
    for (s = p; s; s = s->next) {
        buffet_pkt *n;
        buffet_result counted;
        /* A segment of another pool (chained in) would be found by its clone through this
           pool's layout, the wrong one; a copy of a data buffer's header would hand out a clone
           whose free drops a reference the original never had; a free segment (count 0,
           relaxed: only 0 or not is asked) has nothing left to share. */
        if (__builtin_expect(s->pool != c->pool || (s->cls < c->pool->nclasses && !buffet__pkt_genuine(c->pool, s)) ||
                             BUFFET__LOAD(&s->refcnt, BUFFET__RELAXED) == 0, 0)) {
            const char *bad = s->pool != c->pool ? "of another pool"
                            : BUFFET__LOAD(&s->refcnt, BUFFET__RELAXED) == 0 ? "free" : "not a buffer of the pool (a copy of a header?)";
            buffet_result code = BUFFET__LOAD(&s->refcnt, BUFFET__RELAXED) == 0 && s->pool == c->pool ? BUFFET_ERR_STATE : BUFFET_ERR_INVALID;
            buffet__pkt_free_segs(c, head, site, false);
            BUFFET__LOG(&c->pool->log, BUFFET_LOG_ERROR, code, "pool %s: clone of %p at %s in %s(): segment %p is %s: refused",
                        c->pool->name, (void *)p, buffet__site_where(site), buffet__site_func(site), (void *)s, bad);
            return (buffet_pkt *)buffet_alloc_fail(code, "a segment of another pool, a copy of a header, or a free packet");
        }
        n = buffet__pkt_alloc_slow(c, c->nclasses, site);
        if (!n) {
            buffet_result why = buffet_alloc_error(NULL);
            buffet__pkt_free_segs(c, head, site, false);
            return (buffet_pkt *)buffet_alloc_fail(why, "the clone class is exhausted");
        }
        n->buf = s->buf;
        n->buf_len = s->buf_len;
        n->data_off = s->data_off;
        n->len = s->len;
        n->pkt_len = s->pkt_len;
        n->nb_segs = s->nb_segs;
        buffet__pkt_copy_meta(n, s);
        counted = (s->flags & BUFFET_PKT_EXTERNAL) ? buffet__pkt_count_up(&buffet__pkt_ext_of(s)->refcnt)
                                                    : buffet__pkt_count_up16(&buffet__pkt_owner(s)->refcnt);
        if (counted != BUFFET_OK) {
            /* n shares nothing yet: it goes back as a bare header, the clones made so far as clones. */
            buffet__pkt_put(c, n, site);
            buffet__pkt_free_segs(c, head, site, false);
            if (counted == BUFFET_ERR_OVERFLOW)
                BUFFET__LOG(&c->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW,
                            "clone of %p: its data already has %u references", (void *)p, (unsigned)UINT16_MAX);
            else
                BUFFET__LOG(&c->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                            "pool %s: clone of %p at %s in %s(): the data it shares is already free: refused",
                            c->pool->name, (void *)p, buffet__site_where(site), buffet__site_func(site));
            return (buffet_pkt *)buffet_alloc_fail(counted, counted == BUFFET_ERR_OVERFLOW ? "the data has 65535 references"
                                                                                            : "the data is already free");
        }
        n->flags = (s->flags & BUFFET_PKT_EXTERNAL) ? BUFFET_PKT_EXTERNAL : BUFFET_PKT_CLONE;
        if (c->checks) {
            buffet__pkt_dbg *d = buffet__pkt_dbg_of(s->pool, buffet__pkt_owner(s), "clone", site);
            if (d) buffet__pkt_note(d, BUFFET__PKT_OP_CLONE, site);
        }
        *link = n;
        link = &n->next;
    }
    return head;
}

BUFFET_API buffet_pkt *buffet_pkt_attach_external_at(buffet_pkt_cache *c, void *mem, size_t size,
                                                     buffet_pkt_ext_free_fn free_fn, void *opaque, buffet_site site) {
    uintptr_t start;
    size_t skip;
    buffet__pkt_ext *e;
    buffet_pkt *h;
    if (!c || !mem) return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "no cache or memory");
    start = size >= sizeof *e ? (((uintptr_t)mem + size - sizeof *e) & ~(uintptr_t)7) : 0;
    skip = size >= sizeof *e ? (uintptr_t)mem + size - start : size + 1;
    /* data_off is 16 bits, so a data room stays within 64 KiB, as a packet class does. */
    if (size < sizeof *e || start <= (uintptr_t)mem || size - skip > 65535) {
        BUFFET__LOG(&c->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "attach_external: %zu bytes: the data room before the %zu-byte shared count must be 1 to 65535 bytes",
                    size, sizeof *e);
        return (buffet_pkt *)buffet_alloc_fail(BUFFET_ERR_INVALID, "external memory out of range");
    }
    h = buffet__pkt_alloc_slow(c, c->nclasses, site);
    if (!h) return NULL;
    e = (buffet__pkt_ext *)start;
    e->refcnt = 1;
    e->size = (uint32_t)(size - skip);
    e->free_fn = free_fn;
    e->opaque = opaque;
    e->mem = mem;
    h->buf = (unsigned char *)mem;
    h->buf_len = e->size;
    h->data_off = 0;
    h->flags = BUFFET_PKT_EXTERNAL;
    return h;
}

/* >>data */
BUFFET_API void *buffet_pkt_user(const buffet_pkt *p) {
    return p && p->pool->user_size ? (void *)((unsigned char *)p + sizeof *p) : NULL;
}

/* Is the data room shared with another header (so bytes outside this one's view are theirs)? */
static bool buffet__pkt_shared(const buffet_pkt *s) {
    /* Acquire, as in buffet__pkt_alone: a count seen at 1 orders the last other holder's drop
       (its release) before this holder's writes into the data. */
    if (s->flags & BUFFET_PKT_EXTERNAL)   /* the memory shared with a clone, or this header with another holder */
        return BUFFET__LOAD(&buffet__pkt_ext_of(s)->refcnt, BUFFET__ACQUIRE) != 1 ||
               BUFFET__LOAD(&s->refcnt, BUFFET__ACQUIRE) != 1;
    return s->flags != 0 || BUFFET__LOAD(&s->refcnt, BUFFET__ACQUIRE) != 1;
}

static buffet_pkt *buffet__pkt_last(buffet_pkt *p) {
    while (p->next) p = p->next;
    return p;
}

BUFFET_API void *buffet__pkt_prepend_slow(buffet_pkt *p, size_t n) {
    if (!buffet__pkt_usable(p, "prepend", BUFFET_NO_SITE) || n > p->data_off || buffet__pkt_shared(p) ||
        p->pkt_len + (uint64_t)n > UINT32_MAX)
        return NULL;
    p->data_off = (uint16_t)(p->data_off - n);
    p->len += (uint32_t)n;
    p->pkt_len += (uint32_t)n;
    return p->buf + p->data_off;
}

BUFFET_API void *buffet__pkt_append_slow(buffet_pkt *p, size_t n) {
    buffet_pkt *last;
    void *tail;
    if (!buffet__pkt_usable(p, "append", BUFFET_NO_SITE)) return NULL;
    last = buffet__pkt_last(p);
    if (n > buffet_pkt_tailroom(last) || buffet__pkt_shared(last) || p->pkt_len + (uint64_t)n > UINT32_MAX) return NULL;
    tail = last->buf + last->data_off + last->len;
    last->len += (uint32_t)n;
    p->pkt_len += (uint32_t)n;
    return tail;
}

BUFFET_API void *buffet_pkt_adj_at(buffet_pkt *p, size_t n, buffet_site site) {
    if (!buffet__pkt_usable(p, "adj", site) || n > p->len) return NULL;
    p->data_off = (uint16_t)(p->data_off + n);
    p->len -= (uint32_t)n;
    p->pkt_len -= (uint32_t)n;
    return p->buf + p->data_off;
}

BUFFET_API buffet_result buffet_pkt_trim_at(buffet_pkt *p, size_t n, buffet_site site) {
    buffet_pkt *last;
    if (!buffet__pkt_usable(p, "trim", site)) return BUFFET_ERR_INVALID;
    last = buffet__pkt_last(p);
    if (n > last->len) return BUFFET_ERR_RANGE;
    last->len -= (uint32_t)n;
    p->pkt_len -= (uint32_t)n;
    return BUFFET_OK;
}

/* Is s one of the segments of packet p? (p well formed: the walk ends.) */
static bool buffet__pkt_has_segment(const buffet_pkt *p, const buffet_pkt *s) {
    for (; p; p = p->next)
        if (p == s) return true;
    return false;
}

BUFFET_API buffet_result buffet_pkt_chain_at(buffet_pkt *head, buffet_pkt *tail, buffet_site site) {
    const char *why = NULL;
    if (!head || !tail) return BUFFET_ERR_INVALID;
    if (head != tail && ((uint32_t)head->nb_segs + tail->nb_segs >= BUFFET_PKT_RAW_LENT ||
                         (uint64_t)head->pkt_len + tail->pkt_len > UINT32_MAX))
        return BUFFET_ERR_OVERFLOW;
    if (!buffet__pkt_usable(head, "chain", site) || !buffet__pkt_usable(tail, "chain", site)) return BUFFET_ERR_INVALID;
    /* A segment has one place in one chain: a second would make a cycle, or a chain whose first
       segment no longer counts what follows it. A segment linked behind another counts 0. */
    if (head == tail) why = "a packet cannot follow itself";
    else if (head->nb_segs == 0) why = "the head is a segment inside another chain";
    else if (tail->nb_segs == 0) why = "the tail is already a segment of a chain";
    else if (buffet__pkt_has_segment(head, tail) || buffet__pkt_has_segment(tail, head)) why = "it would make a cycle";
    else if (!buffet__pkt_genuine(head->pool, head) || !buffet__pkt_genuine(tail->pool, tail))
        why = "not a buffer of its pool (a copy of a header?)";
    if (why) {
        BUFFET__LOG(&head->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "pool %s: chain of %p behind %p at %s in %s(): %s: refused",
                    head->pool->name, (void *)tail, (void *)head, buffet__site_where(site), buffet__site_func(site), why);
        return BUFFET_ERR_INVALID;
    }
    buffet__pkt_last(head)->next = tail;
    head->nb_segs = (uint16_t)(head->nb_segs + tail->nb_segs);
    head->pkt_len += tail->pkt_len;
    tail->nb_segs = 0;
    return BUFFET_OK;
}

BUFFET_API const void *buffet_pkt_read_at(const buffet_pkt *p, size_t off, size_t len, void *tmp, buffet_site site) {
    unsigned char *d = (unsigned char *)tmp;
    if (!buffet__pkt_usable(p, "read", site) || !buffet_in_range(off, len, p->pkt_len)) return NULL;
    if (len == 0) return p->buf + p->data_off;
    while (off >= p->len) {   /* in range of lengths that add up, so a segment holding byte `off` exists */
        off -= p->len;
        p = p->next;
    }
    if (len <= p->len - off) return p->buf + p->data_off + off;
    if (!tmp) return NULL;
    for (; len; p = p->next, off = 0) {
        size_t k = p->len - off < len ? p->len - off : len;
        memcpy(d, p->buf + p->data_off + off, k);
        d += k;
        len -= k;
    }
    return tmp;
}

BUFFET_API buffet_result buffet_pkt_linearize_at(buffet_pkt_cache *c, buffet_pkt **pp, buffet_site site) {
    buffet_pkt *p, *n, *s;
    unsigned char *dst;
    int k;
    if (!c || !pp || !*pp) return BUFFET_ERR_INVALID;
    p = *pp;
    if (!buffet__pkt_usable(p, "linearize", site)) return BUFFET_ERR_INVALID;
    if (!p->next) return BUFFET_OK;
    if (!buffet__pkt_genuine(p->pool, p)) {
        /* a copy's segments are the original's: freeing them here would free them under it */
        BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "pool %s: linearize of %p at %s in %s(): not a buffer of its pool (a copy of a header?): refused",
                    p->pool->name, (void *)p, buffet__site_where(site), buffet__site_func(site));
        return BUFFET_ERR_INVALID;
    }
    if ((size_t)p->pkt_len - p->len <= buffet_pkt_tailroom(p) && !buffet__pkt_shared(p)) {
        dst = p->buf + p->data_off + p->len;
        for (s = p->next; s; s = s->next) {
            memcpy(dst, s->buf + s->data_off, s->len);
            dst += s->len;
        }
        buffet__pkt_free_segs(c, p->next, site, false);
        p->next = NULL;
        p->len = p->pkt_len;
        p->nb_segs = 1;
        return BUFFET_OK;
    }
    k = buffet_pkt_pool_class(c->pool, p->pkt_len);
    if (k < 0) return BUFFET_ERR_RANGE;
    n = buffet_pkt_alloc_class_at(c, (unsigned)k, site);
    if (!n) return buffet_alloc_error(NULL);
    dst = (unsigned char *)buffet_pkt_append(n, p->pkt_len);
    for (s = p; s; s = s->next) {
        memcpy(dst, s->buf + s->data_off, s->len);
        dst += s->len;
    }
    buffet__pkt_copy_meta(n, p);
    buffet__pkt_free_segs(c, p, site, false);
    *pp = n;
    return BUFFET_OK;
}

/* A chain slice's buffer holds one reference on one segment; its release drops exactly that. */
static void buffet__pkt_slice_release(void *user, void *data, size_t size) {
    buffet_pkt *seg = (buffet_pkt *)user;
    (void)data; (void)size;
    buffet__pkt_seg_unref(NULL, seg, BUFFET_NO_SITE);
}

BUFFET_API buffet_result buffet_pkt_to_chain_at(buffet_pkt *p, buffet_chain *c, buffet_site site) {
    buffet_chain add;
    buffet_pkt *s;
    buffet_result r = BUFFET_OK;
    if (!p || !c) return BUFFET_ERR_INVALID;
    if (!buffet__pkt_usable(p, "to_chain", site))
        return BUFFET__LOAD(&p->refcnt, BUFFET__RELAXED) == 0 ? BUFFET_ERR_STATE : BUFFET_ERR_INVALID;   /* relaxed: as in usable */
    for (s = p; s; s = s->next) {
        /* A slice holds a reference on the segment's own header, freed with it: a copy of a
           header would be put in the pool when the slice goes. */
        if (!buffet__pkt_genuine(s->pool, s)) {
            BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                        "pool %s: to_chain of %p at %s in %s(): segment %p is not a buffer of its pool (a copy of a "
                        "header?): refused", p->pool->name, (void *)p, buffet__site_where(site), buffet__site_func(site),
                        (void *)s);
            return BUFFET_ERR_INVALID;
        }
    }
    /* c's allocator passed its check when c was made; add only borrows it. */
    memset(&add, 0, sizeof add);
    add.allocator = c->allocator;
    for (s = p; s && r == BUFFET_OK; s = s->next) {
        buffet_buf_desc d;
        buffet_buf *b;
        if (s->len == 0) continue;
        memset(&d, 0, sizeof d);
        d.kind = BUFFET_BUF_WRAP;
        d.size = s->len;
        d.wrap_data = s->buf + s->data_off;
        d.release = buffet__pkt_slice_release;
        d.release_user = s;
        d.allocator = p->pool->allocator;
        r = buffet_buf_create_at(&b, &d, site);
        if (r != BUFFET_OK) break;
        r = buffet__pkt_count_up16(&s->refcnt);
        if (r != BUFFET_OK) {
            b->release = NULL;   /* it holds no reference to drop */
            buffet_buf_unref(b);
            if (r == BUFFET_ERR_OVERFLOW)
                BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW,
                            "to_chain of %p: a segment already has %u references", (void *)p, (unsigned)UINT16_MAX);
            else
                BUFFET__LOG(&p->pool->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE,
                            "pool %s: to_chain of %p at %s in %s(): a segment is already free: refused", p->pool->name,
                            (void *)p, buffet__site_where(site), buffet__site_func(site));
            break;
        }
        r = buffet_chain_append_at(&add, b, 0, s->len, site);
        buffet_buf_unref(b);
    }
    if (r == BUFFET_OK) r = buffet_chain_concat_at(c, &add, site);
    buffet_chain_deinit(&add);   /* on failure this drops every reference taken above */
    return r;
}

/* >>statistics */
BUFFET_API buffet_pkt_stats buffet_pkt_pool_get_stats(buffet_pkt_pool *p) {
    buffet_pkt_stats s;
    unsigned k;
    memset(&s, 0, sizeof s);
    if (!p) return s;
    pthread_mutex_lock(&p->mu);
    s.name = p->name;
    s.numa_node = p->node;
    s.nclasses = p->nclasses;
    s.region_bytes = p->region_bytes;
    s.huge_pages = p->huge_used;
    for (k = 0; k <= p->nclasses; k++) {
        const buffet__pkt_class *c = &p->cls[k];
        buffet_pkt_class_stats *o = &s.cls[k];
        o->clone = k == p->nclasses;
        o->data_room = c->data_room;
        o->stride = c->stride;
        o->created = c->created;
        o->max = c->max;
        o->in_use = c->allocs >= c->frees ? (size_t)(c->allocs - c->frees) : 0;
        o->allocs = c->allocs;
        o->frees = c->frees;
        o->failures = c->failures;
        o->cache_misses = c->misses;
        o->cache_hit_rate = c->allocs ? 1.0 - (double)c->misses / (double)c->allocs : 0.0;
        if (o->cache_hit_rate < 0) o->cache_hit_rate = 0;
        o->utilisation = c->max ? (double)o->in_use / (double)c->max : 0.0;
    }
    buffet__pkt_unlock(p);
    /* relaxed: statistics, read as they are (nothing is published through them) */
    s.double_frees = BUFFET__LOAD(&p->double_frees, BUFFET__RELAXED);
    s.foreign_frees = BUFFET__LOAD(&p->foreign_frees, BUFFET__RELAXED);
    s.corruptions = BUFFET__LOAD(&p->corruptions, BUFFET__RELAXED);
    return s;
}

static void buffet__pkt_class_name(const buffet_pkt_stats *s, unsigned k, char *name, size_t cap) {
    if (k < s->nclasses) snprintf(name, cap, "%u", s->cls[k].data_room);
    else snprintf(name, cap, "clone");
}

BUFFET_API size_t buffet_pkt_pool_stats_json(buffet_pkt_pool *p, char *out, size_t cap) {
    buffet_pkt_stats s = buffet_pkt_pool_get_stats(p);
    size_t len = 0;
    unsigned k;
    if (!out) cap = 0;
    if (cap) out[0] = '\0';
    buffet__append(out, cap, &len, "{\"pool\":\"");
    buffet__append_quoted(out, cap, &len, s.name ? s.name : "", false);
    buffet__append(out, cap, &len, "\",\"numa_node\":%d,\"region_bytes\":%zu,\"huge_pages\":%s,\"double_frees\":%llu,"
                       "\"foreign_frees\":%llu,\"corruptions\":%llu,\"classes\":[", s.numa_node, s.region_bytes,
                       s.huge_pages ? "true" : "false", (unsigned long long)s.double_frees,
                       (unsigned long long)s.foreign_frees, (unsigned long long)s.corruptions);
    for (k = 0; p && k <= s.nclasses; k++) {
        const buffet_pkt_class_stats *c = &s.cls[k];
        char name[16];
        buffet__pkt_class_name(&s, k, name, sizeof name);
        buffet__append(out, cap, &len,
            "%s{\"class\":\"%s\",\"data_room\":%u,\"stride\":%zu,\"created\":%zu,\"max\":%zu,\"in_use\":%zu,"
            "\"allocs\":%llu,\"frees\":%llu,\"failures\":%llu,\"cache_misses\":%llu,\"cache_hit_rate\":%.4f,"
            "\"utilisation\":%.4f}", k ? "," : "", name, c->data_room, c->stride, c->created, c->max, c->in_use,
            (unsigned long long)c->allocs, (unsigned long long)c->frees, (unsigned long long)c->failures,
            (unsigned long long)c->cache_misses, c->cache_hit_rate, c->utilisation);
    }
    buffet__append(out, cap, &len, "]}");
    return len;
}

BUFFET_API size_t buffet_pkt_pool_stats_prometheus(buffet_pkt_pool *p, char *out, size_t cap) {
    static const struct { const char *name, *type, *help; } metrics[] = {
        {"buffet_pkt_allocs_total", "counter", "Packet buffers handed out."},
        {"buffet_pkt_frees_total", "counter", "Packet buffers given back."},
        {"buffet_pkt_alloc_failures_total", "counter", "Allocations refused because the class was at its maximum."},
        {"buffet_pkt_cache_misses_total", "counter", "Allocations that had to refill a cache from the shared ring."},
        {"buffet_pkt_buffers_in_use", "gauge", "Buffers handed out and not given back."},
        {"buffet_pkt_buffers_created", "gauge", "Buffers the pool has made."},
        {"buffet_pkt_buffers_max", "gauge", "Most buffers the class may make."},
        {"buffet_pkt_cache_hit_ratio", "gauge", "Share of allocations served from a cache."},
        {"buffet_pkt_utilisation_ratio", "gauge", "Buffers in use over the class maximum."},
    };
    buffet_pkt_stats s = buffet_pkt_pool_get_stats(p);
    size_t len = 0, m;
    unsigned k;
    if (!out) cap = 0;
    if (cap) out[0] = '\0';
    for (m = 0; p && m < sizeof metrics / sizeof metrics[0]; m++) {
        buffet__append(out, cap, &len, "# HELP %s %s\n# TYPE %s %s\n", metrics[m].name, metrics[m].help,
                           metrics[m].name, metrics[m].type);
        for (k = 0; k <= s.nclasses; k++) {
            const buffet_pkt_class_stats *c = &s.cls[k];
            char name[16];
            buffet__pkt_class_name(&s, k, name, sizeof name);
            buffet__append(out, cap, &len, "%s{pool=\"", metrics[m].name);
            buffet__append_quoted(out, cap, &len, s.name, true);
            buffet__append(out, cap, &len, "\",class=\"%s\"} ", name);
            switch (m) {
            case 0: buffet__append(out, cap, &len, "%llu\n", (unsigned long long)c->allocs); break;
            case 1: buffet__append(out, cap, &len, "%llu\n", (unsigned long long)c->frees); break;
            case 2: buffet__append(out, cap, &len, "%llu\n", (unsigned long long)c->failures); break;
            case 3: buffet__append(out, cap, &len, "%llu\n", (unsigned long long)c->cache_misses); break;
            case 4: buffet__append(out, cap, &len, "%zu\n", c->in_use); break;
            case 5: buffet__append(out, cap, &len, "%zu\n", c->created); break;
            case 6: buffet__append(out, cap, &len, "%zu\n", c->max); break;
            case 7: buffet__append(out, cap, &len, "%.6f\n", c->cache_hit_rate); break;
            default: buffet__append(out, cap, &len, "%.6f\n", c->utilisation); break;
            }
        }
    }
    return len;
}

BUFFET_API size_t buffet_pkt_history_dump(const buffet_pkt *p, FILE *out) {
    static const char *const ops[] = {"?", "alloc", "free", "ref", "clone", "into cache", "out of cache", "alloc raw",
                                      "free raw"};
    buffet__pkt_dbg *d;
    uint32_t pos, i, n = 0;
    buffet__pkt_region *r = NULL;
    size_t at = 0;
    if (!p || !out || BUFFET_DEBUG < 1) return 0;
    /* found by its address first: a foreign p's `pool` is not followed */
    if (buffet__pkt_checked_find(p, NULL, &r, &at) != p->pool || !r) return 0;
    d = &r->dbg[at];
    /* relaxed: the history is best effort (see buffet__pkt_note); a dump racing a note may show
       an entry older or newer than its neighbours */
    pos = BUFFET__LOAD(&d->hist_pos, BUFFET__RELAXED);
    for (i = pos > BUFFET_PKT_HISTORY ? pos - BUFFET_PKT_HISTORY : 0; i < pos; i++, n++) {
        uint32_t op = BUFFET__LOAD(&d->hist[i % BUFFET_PKT_HISTORY].op, BUFFET__RELAXED);
        buffet_site s = buffet_site_make(BUFFET__LOAD(&d->hist[i % BUFFET_PKT_HISTORY].site.where, BUFFET__RELAXED),
                                         BUFFET__LOAD(&d->hist[i % BUFFET_PKT_HISTORY].site.func, BUFFET__RELAXED));
        fprintf(out, "buffet: %p #%u %s at %s in %s()\n", (const void *)p, i, op < sizeof ops / sizeof *ops ? ops[op] : "?",
                s.where ? s.where : "?", s.func ? s.func : "?");
    }
    return n;
}

/* >>registry provider: a buffet_buf over a packet's data, for network I/O */
/* Where a request's data starts in a data room (64-byte aligned): the headroom rounded up to
   the request's alignment (0: 64), so the promise holds whatever the headroom. */
static size_t buffet__pkt_req_off(const buffet_pkt_pool *p, const buffet_request *q) {
    size_t a = q->align ? q->align : 64;
    return (p->headroom + a - 1) & ~(a - 1);
}

static int buffet__pkt_score(void *self, const buffet_request *q, char *why, size_t cap) {
    buffet_pkt_pool *p = (buffet_pkt_pool *)self;
    size_t extra;
    if (q->usage & (BUFFET_USAGE_DEVICE_READ | BUFFET_USAGE_DEVICE_WRITE | BUFFET_USAGE_SHARE_PROCESS))
        return buffet__why(why, cap, -1, "host memory of this process only");
    if (q->usage & BUFFET_USAGE_SECURE) return buffet__why(why, cap, -1, "pool memory is neither locked nor wiped");
    if (q->align > 64) return buffet__why(why, cap, -1, "packet data is aligned to 64 bytes at most");
    extra = buffet__pkt_req_off(p, q) - p->headroom;
    if (q->size > SIZE_MAX - extra || buffet_pkt_pool_class(p, q->size + extra) < 0)
        return buffet__why(why, cap, -1, "larger than the largest packet class");
    if (q->usage & BUFFET_USAGE_NETWORK) return buffet__why(why, cap, 95, "network buffer from a packet pool: headroom, refcounted, no syscall");
    return buffet__why(why, cap, 5, "packet pools are for network buffers");
}

static void buffet__pkt_buf_release(void *user, void *data, size_t size) {
    (void)data; (void)size;
    buffet_pkt_free_shared_at((buffet_pkt *)user, BUFFET_NO_SITE);
}

static buffet_result buffet__pkt_create(void *self, const buffet_request *q, buffet_buf **out) {
    buffet_pkt_pool *p = (buffet_pkt_pool *)self;
    size_t off = buffet__pkt_req_off(p, q);
    buffet_pkt *pkt = buffet_pkt_alloc_shared_at(p, q->size + (off - p->headroom), q->site);
    buffet_buf_desc d;
    buffet_result r;
    if (!pkt) return buffet_alloc_error(NULL);
    pkt->data_off = (uint16_t)off;
    memset(&d, 0, sizeof d);
    d.kind = BUFFET_BUF_WRAP;
    d.size = q->size;
    d.wrap_data = buffet_pkt_append(pkt, q->size);
    d.release = buffet__pkt_buf_release;
    d.release_user = pkt;
    d.allocator = q->allocator;
    r = buffet_buf_create_at(out, &d, q->site);
    if (r != BUFFET_OK) buffet_pkt_free_shared_at(pkt, q->site);
    return r;
}

BUFFET_API buffet_result buffet_pkt_pool_register(buffet_pkt_pool *p, buffet_registry *r) {
    buffet_provider prov;
    buffet_result res;
    bool full;
    if (!p || !r) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&p->mu);
    full = p->nregistries == sizeof p->registries / sizeof p->registries[0];
    res = p->dying ? BUFFET_ERR_STATE : full ? BUFFET_ERR_EXHAUSTED : BUFFET_OK;
    if (res == BUFFET_OK) p->registries[p->nregistries++] = r;   /* reserved: a concurrent register cannot overrun */
    buffet__pkt_unlock(p);
    if (res != BUFFET_OK) {
        BUFFET__LOG(&p->log, BUFFET_LOG_ERROR, res, "pool %s: register: %s", p->name,
                    res == BUFFET_ERR_STATE ? "the pool is being destroyed" : "already in 8 registries");
        return res;
    }
    memset(&prov, 0, sizeof prov);
    prov.name = p->name;
    prov.score = buffet__pkt_score;
    prov.create = buffet__pkt_create;
    prov.self = p;
    prov.detach = buffet__pkt_detach;
    res = buffet_registry_add(r, &prov);
    if (res != BUFFET_OK) buffet__pkt_detach(p, r);   /* give the reservation back */
    return res;
}

/* >>the allocator face: a packet's whole data room as a block */
static void *buffet__pkt_vt_alloc(void *self, size_t size, size_t align, buffet_site site) {
    buffet_pkt_cache *c = (buffet_pkt_cache *)self;
    buffet_pkt_pool *p = c->pool;
    buffet_pkt *h;
    unsigned k;
    if (align > 64) return buffet_alloc_fail(BUFFET_ERR_TOO_LARGE, "a data room is aligned to 64 bytes at most");
    for (k = 0; k < p->nclasses && p->cls[k].buf_len < size; k++) {}
    if (k == p->nclasses) return buffet__pkt_failed(p, p->nclasses ? p->nclasses - 1 : 0, size);
    if (pthread_equal(c->owner, pthread_self())) {
        h = buffet_pkt_alloc_class_at(c, k, site);
    } else {
        void *one = NULL;
        /* dying, relaxed: a hint (see buffet_pkt_pool_destroy) */
        if (BUFFET__LOAD(&p->dying, BUFFET__RELAXED) || buffet__pkt_take(p, k, &one, 1, 1) == 0)
            return buffet__pkt_failed(p, k, p->cls[k].data_room);   /* the class's own size: not "too large" */
        pthread_mutex_lock(&p->mu);
        p->cls[k].allocs++;
        buffet__pkt_unlock(p);
        h = (buffet_pkt *)one;
        buffet__pkt_handout(p, h, k, site);
    }
    return h ? h->buf : NULL;
}
static void buffet__pkt_vt_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    buffet_pkt_cache *c = (buffet_pkt_cache *)self;
    buffet_pkt *h = (buffet_pkt *)((unsigned char *)ptr - c->pool->hdr_size);
    (void)size; (void)align;
    buffet__pkt_free_slow(pthread_equal(c->owner, pthread_self()) ? c : NULL, h, site);
}
static const buffet_allocator_vtable buffet__pkt_vtable = {
    buffet__pkt_vt_alloc, NULL, buffet__pkt_vt_free, NULL, buffet__contract_until_freed_safe, NULL
};

BUFFET_API buffet_allocator buffet_pkt_allocator(buffet_pkt_cache *c) {
    return buffet_allocator_of(c, &buffet__pkt_vtable);
}

#endif /* BUFFET_IMPLEMENTATION && !BUFFET_PACKET_IMPL_INCLUDED */

/* buffet_packet.h - Copyright (c) 2026 the buffet authors - MIT licence, see LICENSE or the end of buffet.h. */
