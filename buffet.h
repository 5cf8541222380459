/* buffet.h - v0.1.0 - the common allocator interface of the buffet family: allocators,
   refcounted buffers, slices, zero-copy chains and the buffer-kind registry. MIT licence (end of file).

   USAGE
     Copy buffet.h (and any sibling header) into your project. In exactly ONE .c or .cpp file:
         #define BUFFET_IMPLEMENTATION
         #include "buffet.h"          // and every other buffet_*.h you use
     Everywhere else include the headers normally. No build system, no link flags (glibc >= 2.34
     needs no -ldl or -pthread). With BUFFET_STATIC defined too, every function is static: a
     single-file program.

   EXAMPLE
         buffet_debug *dbg;
         buffet_debug_create(&dbg, NULL);                    // checks a heap-backed allocator
         buffet_allocator a = buffet_debug_allocator(dbg);
         int *v = BUFFET_NEW_ARRAY(a, int, 100);             // overflow-checked, site recorded
         buffet_chain c; buffet_chain_init(&c, a);
         buffet_buf *b; buffet_buf_create(&b, &(buffet_buf_desc){ .size = 4096 });
         buffet_chain_append(&c, b, 0, 4096); buffet_buf_unref(b);   // the chain holds a reference
         struct iovec iov[8]; size_t n = buffet_chain_iovec(&c, 0, SIZE_MAX, iov, 8);  // for writev
         buffet_chain_deinit(&c); BUFFET_DELETE_ARRAY(a, int, v, 100);
         buffet_debug_report_leaks(dbg, stderr); buffet_debug_destroy(dbg);

   CONCEPTS
     allocator  buffet_allocator {self, vtable}, passed by value: alloc / resize-in-place / remap
                (may move) / free, each with size and alignment (sized free, as in Zig), and a
                contract saying what it promises. A zero allocator is the heap. Implementations
                here: heap, debug (checks everything), fixed buffer, failing (for out-of-memory
                tests), and an adapter for C libraries whose free takes no size.
     buffer     buffet_buf: refcounted memory of some kind (heap, mmap, shared memory, wrapped).
     slice      buffet_slice: (buffer, offset, length) holding one reference.
     chain      buffet_chain: ordered slices; append, prepend, split, consume, find, copy out,
                export as struct iovec[], none of which copies payload bytes.
     registry   providers of buffer kinds; a request (usage flags, size) goes to the provider that
                scores highest; buffet_explain() says which and why.

   LIFECYCLE
     object           made by                         ended by                  owner
     debug allocator  buffet_debug_create             buffet_debug_destroy      thread-safe (as its parent)
     fixed allocator  buffet_fixed_init (caller's)    buffet_fixed_deinit       one thread
     failing          buffet_failing_init (caller's)  buffet_failing_deinit     thread-safe
     adapter          buffet_adapter_init (caller's)  buffet_adapter_deinit     one thread
     buffer           buffet_buf_create, _map_fd      buffet_buf_unref (last)   thread-safe counts
     chain            buffet_chain_init (caller's)    buffet_chain_deinit       one thread
     registry         buffet_registry_create          buffet_registry_destroy   thread-safe
     create/destroy: buffet allocates the object; init/deinit: the caller owns the struct. A
     logger is always set in the object's desc. "Owned" (Thread: owned) means one thread at a
     time uses it; handing it to another thread needs a happens-before (a mutex, a queue).

   CONTRACTS
     An allocator says what it promises (buffet_allocator_contract): BUFFET_CONTRACT_UNTIL_FREED
     (its blocks live until freed; else they die with the current frame or scope),
     BUFFET_CONTRACT_THREAD_SAFE, BUFFET_CONTRACT_RESIZE, BUFFET_CONTRACT_PIN (a block can be kept
     alive past its frame). Everything that stores an allocator checks the contract when it is
     created: the combination works for real, or is refused there with BUFFET_ERR_LIFETIME or
     BUFFET_ERR_THREAD and a log line. A buffer, a chain, a registry and a debug allocator over a
     frame allocator pin their blocks, which keeps the frame's chunk alive until they let go (a
     buffer still in a chain after its frame ended stays intact). Every cell below is run by
     tests/test_compose.c (rows: the allocator kinds; columns: what stores one):

                   buffer    chain     debug     registry   frame      pool      packet pool  scope     adapter
     heap          works     works     works     works      works      works     works        works     works
     null          NOMEM     NOMEM     NOMEM     NOMEM      NOMEM      NOMEM     NOMEM        NOMEM     NOMEM
     debug         works     works     works     works      works      works     works        works     works
     fixed         THREAD    works     works     works      works      THREAD    THREAD       works     works
     failing       works     works     works     works      works      works     works        works     works
     adapter       works     works     works     works      works      works     works        works     works
     frame         pinned    pinned    pinned    pinned     LIFETIME   LIFETIME  LIFETIME     LIFETIME  LIFETIME
     scope         LIFETIME  LIFETIME  LIFETIME  LIFETIME   LIFETIME   LIFETIME  LIFETIME     LIFETIME  LIFETIME
     pool cache    works     works     works     TOO_LARGE  TOO_LARGE  works     TOO_LARGE    works     works
     packet cache  works     works     works     works      TOO_LARGE  works     TOO_LARGE    works     works

     THREAD: the user frees from any thread (a buffer's last reference; a pool growing on any
     thread) but the allocator serves one owner. LIFETIME: the user keeps blocks past the frame
     or scope and cannot pin them. NOMEM: the null allocator refuses every allocation. TOO_LARGE:
     the object is larger than the pool's objects (512 bytes in the test) or packets' data rooms.
     A pool cache's and a packet cache's allocator faces are thread-safe: calls from threads
     other than the cache's go to the shared store.

   FAILURE REASONS
     Every allocator says why it returned NULL (buffet_alloc_fail); buffet_alloc_ex and every
     allocating function of every header pass that reason on (BUFFET_ERR_STATE: no frame begun;
     BUFFET_ERR_BUDGET; BUFFET_ERR_EXHAUSTED: a pool at its max or a full fixed buffer;
     BUFFET_ERR_TOO_LARGE; BUFFET_ERR_NOMEM), and buffet_alloc_error() tells it after a NULL.

   CALLBACKS
     Loggers, budget, watermark, release and provider callbacks run outside buffet's locks and on
     consistent state: any buffet function may be called from one, except destroying the object
     whose call is running it.

   CONFIGURATION (define before including)
     BUFFET_IMPLEMENTATION   emit the implementation in this translation unit
     BUFFET_STATIC           make every function static (single-file programs)
     BUFFET_API              linkage of public functions (default: extern)
     BUFFET_ASSERT(c)        invariant check (default: assert); never used to reject user input
     BUFFET_DEBUG            0 (default), 1 or 2: extra checks; 2 adds BUFFET_HEAVY_ASSERT
     BUFFET_HEAP_ALLOC(size, align) / BUFFET_HEAP_FREE(ptr, size, align)
                             replace the heap's system calls (define both or neither)
     BUFFET_DEFAULT_ALIGN    alignment of BUFFET_ALLOC and friends (default 16)
     BUFFET_REGISTRY_MAX     providers a registry holds (default 32)
     BUFFET_TRACK_ASAN / BUFFET_TRACK_VALGRIND   tell ASan / valgrind which bytes are live
                             (default: on when built with ASan / when BUFFET_DEBUG >= 1 and
                             <valgrind/memcheck.h> exists)

   THREAD SAFETY
     heap, debug and failing allocators, buffer refcounts and the registry are thread-safe. A fixed
     allocator, an adapter and a chain are owned by one thread at a time (thread-compatible).
     Every reference count is checked: a reference that would pass its limit is refused.

   ERRORS
     Fallible functions return buffet_result (BUFFET_OK == 0, errors negative; buffet_result_str()
     names each) or NULL where documented. Nothing aborts on bad input in any build: bad sizes,
     alignments and pointers are refused with an error code and, where the object has a log
     callback, a message saying why. With no callback set buffet prints nothing.

   DEBUGGING
     Wrap any allocator in buffet_debug: it records the site of every live allocation, detects
     double free, foreign pointers, size/alignment mismatch, overruns and underruns (guard bytes),
     writes after free (quarantine), and prints a leak report naming file:line:function.

   VERSIONS
     One version for the family; every sibling header checks it. Semantic versioning: 0.x may
     change the API between minor versions; see CHANGELOG.md.
*/
/* -std=c11 hides memfd_create, MAP_ANONYMOUS and friends; the implementation needs them. */
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_IMPL_INCLUDED) && defined(__linux__) && !defined(_GNU_SOURCE)
#  if defined(__GLIBC__)
#    error "buffet: define _GNU_SOURCE before the first #include, or include the buffet headers first in the file that defines BUFFET_IMPLEMENTATION"
#  else
#    define _GNU_SOURCE 1
#  endif
#endif

#ifndef BUFFET_H_INCLUDED
#define BUFFET_H_INCLUDED

#define BUFFET_VERSION_MAJOR 0
#define BUFFET_VERSION_MINOR 1
#define BUFFET_VERSION_PATCH 0
#define BUFFET_VERSION_NUMBER (BUFFET_VERSION_MAJOR * 10000 + BUFFET_VERSION_MINOR * 100 + BUFFET_VERSION_PATCH)
#define BUFFET_VERSION_STRING "0.1.0"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#ifndef __cplusplus
#include <stdbool.h>
#endif

#ifndef BUFFET_API
#  ifdef BUFFET_STATIC
#    define BUFFET_API static __attribute__((unused))
#  else
#    define BUFFET_API extern
#  endif
#endif

#ifndef BUFFET_ASSERT
#  include <assert.h>
#  define BUFFET_ASSERT(c) assert(c)
#endif
#ifndef BUFFET_DEBUG
#  define BUFFET_DEBUG 0
#endif
#if BUFFET_DEBUG >= 2
#  define BUFFET_HEAVY_ASSERT(c) BUFFET_ASSERT(c)
#else
#  define BUFFET_HEAVY_ASSERT(c) ((void)0)
#endif
#ifndef BUFFET_DEFAULT_ALIGN
#  define BUFFET_DEFAULT_ALIGN 16
#endif
#ifndef BUFFET_REGISTRY_MAX
#  define BUFFET_REGISTRY_MAX 32
#endif
#if defined(BUFFET_HEAP_ALLOC) != defined(BUFFET_HEAP_FREE)
#  error "buffet: define both BUFFET_HEAP_ALLOC and BUFFET_HEAP_FREE, or neither"
#endif

#ifdef __cplusplus
#  define BUFFET_EXTERN_C_BEGIN extern "C" {
#  define BUFFET_EXTERN_C_END }
#  define BUFFET_ALIGNOF(T) alignof(T)
#else
#  define BUFFET_EXTERN_C_BEGIN
#  define BUFFET_EXTERN_C_END
#  define BUFFET_ALIGNOF(T) _Alignof(T)
#endif

/* Tracking: tell ASan and valgrind which bytes are live. Every header uses this shim, inline fast
   paths included, so it sits outside the implementation. */
#ifndef BUFFET_TRACK_ASAN
#  if defined(__SANITIZE_ADDRESS__)
#    define BUFFET_TRACK_ASAN 1
#  elif defined(__has_feature)
#    if __has_feature(address_sanitizer)
#      define BUFFET_TRACK_ASAN 1
#    endif
#  endif
#endif
#ifndef BUFFET_TRACK_ASAN
#  define BUFFET_TRACK_ASAN 0
#endif
/* Client requests cost a few instructions each, so valgrind tracking is a debug-build feature. */
#if !defined(BUFFET_TRACK_VALGRIND) && BUFFET_DEBUG >= 1 && defined(__has_include)
#  if __has_include(<valgrind/memcheck.h>)
#    define BUFFET_TRACK_VALGRIND 1
#  endif
#endif
#ifndef BUFFET_TRACK_VALGRIND
#  define BUFFET_TRACK_VALGRIND 0
#endif
#if BUFFET_TRACK_ASAN
#  include <sanitizer/asan_interface.h>
#  define BUFFET__ASAN_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#  define BUFFET__ASAN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#  define BUFFET__ASAN_POISON(p, n) ((void)(p), (void)(n))
#  define BUFFET__ASAN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#if BUFFET_TRACK_VALGRIND
#  include <valgrind/memcheck.h>
#  define BUFFET__VG_NOACCESS(p, n) ((void)VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#  define BUFFET__VG_UNDEFINED(p, n) ((void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#  define BUFFET__VG_DEFINED(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#else
#  define BUFFET__VG_NOACCESS(p, n) ((void)(p), (void)(n))
#  define BUFFET__VG_UNDEFINED(p, n) ((void)(p), (void)(n))
#  define BUFFET__VG_DEFINED(p, n) ((void)(p), (void)(n))
#endif
/* Bytes nobody may touch until unpoisoned (both tools). */
#define BUFFET__POISON(p, n) (BUFFET__ASAN_POISON((p), (n)), BUFFET__VG_NOACCESS((p), (n)))
/* Bytes handed out again: addressable; valgrind treats them as holding garbage. */
#define BUFFET__UNPOISON(p, n) (BUFFET__ASAN_UNPOISON((p), (n)), BUFFET__VG_UNDEFINED((p), (n)))

/* C++17 has no <stdatomic.h>: every header's atomics go through the gcc/clang builtins. */
#define BUFFET__RELAXED __ATOMIC_RELAXED
#define BUFFET__ACQUIRE __ATOMIC_ACQUIRE
#define BUFFET__RELEASE __ATOMIC_RELEASE
#define BUFFET__ACQ_REL __ATOMIC_ACQ_REL
#define BUFFET__SEQ_CST __ATOMIC_SEQ_CST
#define BUFFET__LOAD(p, mo) __atomic_load_n((p), (mo))
#define BUFFET__STORE(p, v, mo) __atomic_store_n((p), (v), (mo))
#define BUFFET__FETCH_ADD(p, v, mo) __atomic_fetch_add((p), (v), (mo))
#define BUFFET__FETCH_SUB(p, v, mo) __atomic_fetch_sub((p), (v), (mo))
#define BUFFET__EXCHANGE(p, v, mo) __atomic_exchange_n((p), (v), (mo))
#define BUFFET__CAS(p, expected, desired, mo_ok, mo_fail) \
    __atomic_compare_exchange_n((p), (expected), (desired), false, (mo_ok), (mo_fail))
/* A spin-wait hint to the core (shared with the sibling headers); a no-op where none is known. */
static inline void buffet__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

BUFFET_EXTERN_C_BEGIN

/* ---------------------------------------------------------------------------------------------
   >>results and logging
*/
#define BUFFET_RESULT_LIST(X)                                                               \
    X(BUFFET_OK,               0,  "ok")                                                     \
    X(BUFFET_ERR_INVALID,     -1,  "invalid argument")                                       \
    X(BUFFET_ERR_NOMEM,       -2,  "out of memory")                                          \
    X(BUFFET_ERR_OVERFLOW,    -3,  "size computation overflows")                             \
    X(BUFFET_ERR_RANGE,       -4,  "offset or length out of range")                          \
    X(BUFFET_ERR_UNSUPPORTED, -5,  "not supported here")                                     \
    X(BUFFET_ERR_NO_DEVICE,   -6,  "no device")                                              \
    X(BUFFET_ERR_BUDGET,      -7,  "budget exceeded")                                        \
    X(BUFFET_ERR_EXHAUSTED,   -8,  "exhausted")                                              \
    X(BUFFET_ERR_NOT_FOUND,   -9,  "not found")                                              \
    X(BUFFET_ERR_DOUBLE_FREE, -10, "double free")                                            \
    X(BUFFET_ERR_FOREIGN,     -11, "pointer not from this allocator")                        \
    X(BUFFET_ERR_MISMATCH,    -12, "size or alignment differs from the allocation")          \
    X(BUFFET_ERR_CORRUPT,     -13, "memory corrupted (guard or poison bytes overwritten)")   \
    X(BUFFET_ERR_LEAK,        -14, "memory leaked")                                          \
    X(BUFFET_ERR_STATE,       -15, "called in the wrong state")                              \
    X(BUFFET_ERR_SYSTEM,      -16, "system call failed")                                     \
    X(BUFFET_AGAIN,           -17, "partial: call again")                                    \
    X(BUFFET_ERR_LIFETIME,    -18, "the allocator's memory does not live as long as this use needs") \
    X(BUFFET_ERR_THREAD,      -19, "the allocator serves one owner thread; this use frees from any")  \
    X(BUFFET_ERR_TOO_LARGE,   -20, "larger (or more aligned) than this allocator or pool serves") \
    X(BUFFET_ERR_UNSAFE,      -21, "another process could change it under us")                \
    X(BUFFET_ERR_CLOSED,      -22, "the peer closed the connection (or reset it)")           \
    X(BUFFET_ERR_TRUNCATED,   -23, "a datagram was larger than its buffer: it was cut")      \
    X(BUFFET_ERR_DEVICE_LOST, -24, "the device was lost (driver reset, GPU hang or removal)")

#define BUFFET__RESULT_ENUM(name, value, text) name = value,
/* Every fallible function's result. BUFFET_OK is 0; everything else is negative. */
typedef enum buffet_result { BUFFET_RESULT_LIST(BUFFET__RESULT_ENUM) } buffet_result;

/* The name and meaning of a result, e.g. "BUFFET_ERR_NOMEM: out of memory". Never NULL.
   Thread: safe. */
BUFFET_API const char *buffet_result_str(buffet_result r);

/* BUFFET_VERSION_NUMBER of the implementation linked in (to compare with the header's).
   Thread: safe. */
BUFFET_API uint32_t buffet_version(void);

typedef enum buffet_log_level {
    BUFFET_LOG_ERROR = 0, BUFFET_LOG_WARN = 1, BUFFET_LOG_INFO = 2, BUFFET_LOG_DEBUG = 3
} buffet_log_level;

/* A log callback: set per object, called on the thread that hit the condition; must be
   reentrant. `msg` is valid only during the call. `file`/`line` name buffet's source line. */
typedef void (*buffet_log_fn)(void *user, buffet_log_level level, buffet_result code,
                              const char *msg, const char *file, int line);
typedef struct buffet_logger { buffet_log_fn fn; void *user; } buffet_logger;

/* A ready-made callback that prints "buffet: <level>: <msg> (<code>)" to stderr.
   Thread: safe. */
BUFFET_API void buffet_log_stderr(void *user, buffet_log_level level, buffet_result code,
                                  const char *msg, const char *file, int line);
/* A callback that drops everything: for loggers that default to stderr when left zero. */
BUFFET_API void buffet_log_silent(void *user, buffet_log_level level, buffet_result code,
                                  const char *msg, const char *file, int line);

/* ---------------------------------------------------------------------------------------------
   >>sizes: overflow-checked arithmetic shared by every header
*/
/* True when a is a power of two (0 is not). */
static inline bool buffet_is_pow2(size_t a) { return a != 0 && (a & (a - 1)) == 0; }
/* *out = a * b; false (and *out untouched) on overflow. */
static inline bool buffet_mul(size_t a, size_t b, size_t *out) {
    size_t r; if (__builtin_mul_overflow(a, b, &r)) return false; *out = r; return true;
}
/* *out = a + b; false (and *out untouched) on overflow. */
static inline bool buffet_add(size_t a, size_t b, size_t *out) {
    size_t r; if (__builtin_add_overflow(a, b, &r)) return false; *out = r; return true;
}
/* *out = v rounded up to a multiple of align (a power of two); false on overflow. */
static inline bool buffet_align_up(size_t v, size_t align, size_t *out) {
    size_t r; if (__builtin_add_overflow(v, align - 1, &r)) return false; *out = r & ~(align - 1); return true;
}
/* True when [off, off+len) lies within [0, size), overflow-safe. */
static inline bool buffet_in_range(size_t off, size_t len, size_t size) {
    return off <= size && len <= size - off;
}

/* ---------------------------------------------------------------------------------------------
   >>allocator: the common interface
*/
/* Where an allocation or free was requested ("file.c:123" and the function), filled in by the
   BUFFET_* macros. Two pointers to static strings: it travels in two registers, so passing it
   costs nothing measurable. */
typedef struct buffet_site { const char *where; const char *func; } buffet_site;
static inline buffet_site buffet_site_make(const char *where, const char *func) {
    buffet_site s; s.where = where; s.func = func; return s;
}
#define BUFFET__STR2(x) #x
#define BUFFET__STR(x) BUFFET__STR2(x)
#define BUFFET_SITE buffet_site_make(__FILE__ ":" BUFFET__STR(__LINE__), __func__)
#define BUFFET_NO_SITE buffet_site_make(NULL, NULL)

/* What an allocator promises (buffet_allocator_vtable.contract). Whatever stores an allocator for
   later checks these when it is created, and refuses a combination that could not work with
   BUFFET_ERR_LIFETIME or BUFFET_ERR_THREAD and a log line saying why. */
enum {
    BUFFET_CONTRACT_UNTIL_FREED = 1u << 0,  /* a block lives until it is freed (or its owner resets or
                                               destroys the allocator); without it, blocks die when the
                                               current frame or scope ends */
    BUFFET_CONTRACT_THREAD_SAFE = 1u << 1,  /* alloc and free may be called from any thread at once;
                                               without it, one owner thread at a time */
    BUFFET_CONTRACT_RESIZE      = 1u << 2,  /* resize in place can succeed */
    BUFFET_CONTRACT_PIN         = 1u << 3   /* pin keeps a block alive past its lifetime; the pin is
                                               released on any thread, even after the allocator is gone */
};

/* What a use of an allocator needs (buffet_allocator_check). */
enum {
    BUFFET_NEED_UNTIL_FREED = BUFFET_CONTRACT_UNTIL_FREED,   /* blocks are kept until the holder frees them */
    BUFFET_NEED_THREAD_SAFE = BUFFET_CONTRACT_THREAD_SAFE    /* calls come from any thread */
};

/* An allocator's operations. Callers go through buffet_alloc/resize/realloc/free, which check the
   arguments, so implementations see only: size > 0, align a power of two, ptr non-NULL.
     alloc     returns memory of at least size bytes aligned to align, or NULL; say why with
               buffet_alloc_fail (a NULL without a reason reads as BUFFET_ERR_NOMEM).
     resize    grows or shrinks an allocation IN PLACE; false when it cannot (nothing changes).
               May be NULL (never resizes).
     free      releases ptr, which alloc returned with this size and align (or the size of the
               last successful resize or remap).
     remap     resizes, moving the block when it must (realloc(3)); NULL when it fails, with ptr
               untouched. May be NULL: buffet_realloc then resizes in place or copies.
     contract  BUFFET_CONTRACT_* of this allocator. May be NULL: BUFFET_CONTRACT_UNTIL_FREED only
               (blocks live until freed; one owner thread).
     pin       with BUFFET_CONTRACT_PIN: returns a pin that keeps [ptr, ptr+size) alive past its
               lifetime (NULL: refused), else NULL. A pinned block is released by releasing the
               pin (pin->release(pin), on any thread), never by free. */
typedef struct buffet_pin { void (*release)(struct buffet_pin *pin); } buffet_pin;
typedef struct buffet_allocator_vtable {
    void *(*alloc)(void *self, size_t size, size_t align, buffet_site site);
    bool  (*resize)(void *self, void *ptr, size_t old_size, size_t new_size, size_t align);
    void  (*free)(void *self, void *ptr, size_t size, size_t align, buffet_site site);
    void *(*remap)(void *self, void *ptr, size_t old_size, size_t new_size, size_t align, buffet_site site);
    uint32_t (*contract)(const void *self);
    buffet_pin *(*pin)(void *self, void *ptr, size_t size);
} buffet_allocator_vtable;

/* An allocator, passed by value. A zero allocator ({NULL, NULL}) is the heap. */
typedef struct buffet_allocator { void *self; const buffet_allocator_vtable *vtable; } buffet_allocator;

/* Record why an allocation is about to fail, for buffet_alloc_error and buffet_alloc_ex: allocator
   implementations call it before returning NULL (why: a static string). Returns: NULL.
   Thread: safe (the reason is the calling thread's). */
BUFFET_API void *buffet_alloc_fail(buffet_result code, const char *why);
/* Why the calling thread's latest failed allocation failed (any buffet allocator or allocating
   function): BUFFET_ERR_NOMEM, BUFFET_ERR_STATE (no frame begun, object being destroyed),
   BUFFET_ERR_BUDGET, BUFFET_ERR_EXHAUSTED (pool at max), BUFFET_ERR_TOO_LARGE, ...; *why (when not
   NULL) gets a short reason. Meaningful only right after a failure, as errno. Thread: safe. */
BUFFET_API buffet_result buffet_alloc_error(const char **why);

/* As buffet_alloc, with the reason for a NULL. Returns: BUFFET_OK (with *out NULL for size 0).
   Errors: BUFFET_ERR_INVALID (out NULL, align not a power of two), and the allocator's reason:
   BUFFET_ERR_NOMEM, BUFFET_ERR_STATE, BUFFET_ERR_BUDGET, BUFFET_ERR_EXHAUSTED, BUFFET_ERR_TOO_LARGE.
   Thread: as `a`. */
BUFFET_API buffet_result buffet_alloc_ex(buffet_allocator a, size_t size, size_t align,
                                         buffet_site site, void **out);
/* As buffet_free, with a result. Errors: BUFFET_ERR_INVALID (align not a power of two: nothing
   is freed, since the allocator could not find the block). Thread: as `a`. */
BUFFET_API buffet_result buffet_free_ex(buffet_allocator a, void *ptr, size_t size, size_t align, buffet_site site);

#define BUFFET__MALLOC_ALIGN BUFFET_ALIGNOF(max_align_t)

/* Allocate size bytes aligned to align (a power of two). Size 0 returns NULL and is not an
   error. Returns: the memory, or NULL (buffet_alloc_error says why). Thread: as `a`. */
static inline void *buffet_alloc(buffet_allocator a, size_t size, size_t align, buffet_site site) {
    void *p = NULL;
#ifndef BUFFET_HEAP_ALLOC
    /* The heap at malloc's own alignment is malloc itself: no call through a table. */
    if (!a.vtable && size && align - 1 < BUFFET__MALLOC_ALIGN && !(align & (align - 1))) {
        p = malloc(size);
        return p ? p : buffet_alloc_fail(BUFFET_ERR_NOMEM, "malloc failed");
    }
#endif
    buffet_alloc_ex(a, size, align, site, &p);
    return p;
}
/* Allocate count * size bytes. Returns: NULL also when count * size overflows
   (BUFFET_ERR_OVERFLOW). Thread: as `a`. */
BUFFET_API void *buffet_alloc_array(buffet_allocator a, size_t count, size_t size, size_t align,
                                    buffet_site site);
/* Resize in place from old_size to new_size. Returns: true when done (the allocation now has
   new_size), false when not possible or arguments are bad (nothing changed). Thread: as `a`. */
BUFFET_API bool buffet_resize(buffet_allocator a, void *ptr, size_t old_size, size_t new_size,
                              size_t align);
/* Resize, moving the block when it must: the allocator's remap (over the heap: realloc(3), which
   moves large blocks with mremap and gives shrunk memory back), else in place, else allocate,
   copy min(old, new) bytes and free. ptr NULL acts as alloc; new_size 0 frees and returns NULL.
   Returns: the memory, or NULL on failure with ptr still valid and unchanged (buffet_alloc_error
   says why). Thread: as `a`. */
BUFFET_API void *buffet_realloc(buffet_allocator a, void *ptr, size_t old_size, size_t new_size,
                                size_t align, buffet_site site);
/* Free ptr (size and align as allocated). NULL does nothing. Thread: as `a`. */
static inline void buffet_free(buffet_allocator a, void *ptr, size_t size, size_t align, buffet_site site) {
#ifndef BUFFET_HEAP_FREE
    if (!a.vtable) {
        free(ptr);
        return;
    }
#endif
    buffet_free_ex(a, ptr, size, align, site);
}
/* Free an array from buffet_alloc_array. Thread: as `a`. */
BUFFET_API void buffet_free_array(buffet_allocator a, void *ptr, size_t count, size_t size,
                                  size_t align, buffet_site site);

/* The BUFFET_CONTRACT_* flags of a (the heap's for a zero allocator). Thread: safe. */
BUFFET_API uint32_t buffet_allocator_contract(buffet_allocator a);
/* Does a serve a use that needs `need` (BUFFET_NEED_*)? `what` names the use in the log line
   ("chain", "pool"). Returns: BUFFET_OK. Errors: BUFFET_ERR_LIFETIME (blocks die with a frame or
   scope), BUFFET_ERR_THREAD (one owner thread only); both logged to log (may be NULL).
   Thread: safe. */
BUFFET_API buffet_result buffet_allocator_check(buffet_allocator a, uint32_t need, const char *what,
                                                const buffet_logger *log);

#define BUFFET_ALLOC(a, size) buffet_alloc((a), (size), BUFFET_DEFAULT_ALIGN, BUFFET_SITE)
#define BUFFET_ALLOC_ALIGNED(a, size, align) buffet_alloc((a), (size), (align), BUFFET_SITE)
#define BUFFET_REALLOC(a, p, old_size, new_size) \
    buffet_realloc((a), (p), (old_size), (new_size), BUFFET_DEFAULT_ALIGN, BUFFET_SITE)
#define BUFFET_FREE(a, p, size) buffet_free((a), (p), (size), BUFFET_DEFAULT_ALIGN, BUFFET_SITE)
#define BUFFET_FREE_ALIGNED(a, p, size, align) buffet_free((a), (p), (size), (align), BUFFET_SITE)
#define BUFFET_NEW(a, T) ((T *)buffet_alloc((a), sizeof(T), BUFFET_ALIGNOF(T), BUFFET_SITE))
#define BUFFET_NEW_ARRAY(a, T, n) \
    ((T *)buffet_alloc_array((a), (n), sizeof(T), BUFFET_ALIGNOF(T), BUFFET_SITE))
#define BUFFET_DELETE(a, T, p) buffet_free((a), (p), sizeof(T), BUFFET_ALIGNOF(T), BUFFET_SITE)
#define BUFFET_DELETE_ARRAY(a, T, p, n) \
    buffet_free_array((a), (p), (n), sizeof(T), BUFFET_ALIGNOF(T), BUFFET_SITE)

/* The heap, which is the zero allocator: malloc for align <= 16, posix_memalign above (any
   power of two, page size and beyond); remap is realloc(3). Contract: until freed, thread-safe,
   resizes. Thread: safe. */
BUFFET_API buffet_allocator buffet_heap(void);
/* An allocator that refuses everything: what buffet_*_allocator(NULL) returns, so a missing
   object fails loudly instead of silently becoming the heap. Thread: safe. */
BUFFET_API buffet_allocator buffet_null_allocator(void);
/* The allocator of `vtable` over self, or the null allocator when self is NULL. */
static inline buffet_allocator buffet_allocator_of(void *self, const buffet_allocator_vtable *vtable) {
    buffet_allocator a;
    a.self = self;
    a.vtable = self ? vtable : buffet_null_allocator().vtable;
    return a;
}

/* ---------------------------------------------------------------------------------------------
   >>debug allocator
*/
typedef struct buffet_debug buffet_debug;

typedef struct buffet_debug_desc {
    buffet_allocator parent;   /* where blocks come from; zero: the heap. A frame allocator's blocks
                                  are pinned, so they live until freed here (and leaks show) */
    buffet_allocator bookkeeping;   /* the table of live blocks and the quarantine; zero: the heap.
                                  Must live until destroy: a frame or scope is refused */
    size_t guard_size;         /* guard bytes before and after each block; 0: 16 */
    size_t quarantine_count;   /* freed blocks kept poisoned to catch double free and writes
                                  after free; 0: 64; SIZE_MAX: none */
    size_t quarantine_bytes;   /* ...up to this many bytes in all; 0: 1 MiB */
    buffet_logger log;         /* every error found is logged here; zero: buffet_log_stderr (a
                                  debug allocator is there to speak; buffet_log_silent quiets it) */
} buffet_debug_desc;

typedef struct buffet_debug_stats {
    size_t live_count, live_bytes;     /* allocations not yet freed */
    size_t peak_count, peak_bytes;     /* highest live_count / live_bytes seen */
    size_t total_count, total_bytes;   /* allocations ever made */
    size_t free_count;                 /* frees accepted */
    size_t failed_allocs;              /* parent returned NULL */
    size_t double_frees, foreign_frees, mismatched_frees, corruptions;   /* errors found */
} buffet_debug_stats;

/* Create a debug allocator over desc->parent (desc NULL: all defaults). Memory: each block
   costs two guards (2 x guard_size, the front one rounded up to the alignment) and a record of
   80 bytes in a table kept at most half full (160 to 320 bytes), and freed blocks wait in the
   quarantine; programs of small blocks need several times their usual memory (a Lua 5.4
   script of small tables: 5.4 times). Returns: BUFFET_OK.
   Errors: BUFFET_ERR_INVALID (out NULL, guard_size not a multiple of 8 or > 4096),
   BUFFET_ERR_LIFETIME (parent blocks die with a scope and cannot be pinned; bookkeeping that does
   not live until freed), BUFFET_ERR_NOMEM (bookkeeping failed). Thread: safe. */
BUFFET_API buffet_result buffet_debug_create_at(buffet_debug **out, const buffet_debug_desc *desc, buffet_site site);
#define buffet_debug_create(...) buffet_debug_create_at(__VA_ARGS__, BUFFET_SITE)
/* Release the quarantine and bookkeeping. Blocks still live are NOT freed (their owners may
   still use them); report them first. NULL does nothing. Thread: not concurrently with use. */
BUFFET_API void buffet_debug_destroy(buffet_debug *d);
/* The allocator interface of d. Every operation is checked and counted. Contract: the parent's
   thread safety and resizing; blocks live until freed (a frame parent's are pinned).
   Thread: as the parent. */
BUFFET_API buffet_allocator buffet_debug_allocator(buffet_debug *d);
/* Verify the guard bytes of every live block and the poison of every quarantined one.
   Returns: BUFFET_OK. Errors: BUFFET_ERR_CORRUPT (each damaged block is logged). Thread: safe. */
BUFFET_API buffet_result buffet_debug_check(buffet_debug *d);
/* Report the live allocations, one line per allocation site ("leak: B bytes in K blocks (the
   first at P), allocated at file:line in func()"), so a leaking loop gives one line, not one
   per block. out non-NULL: the lines and a summary go there, and only there; out NULL: the log
   callback hears each line as BUFFET_ERR_LEAK, after the allocator's lock is released.
   Returns: the number of live allocations. Thread: safe. */
BUFFET_API size_t buffet_debug_report_leaks(buffet_debug *d, FILE *out);
/* Counters (see buffet_debug_stats). Thread: safe. */
BUFFET_API buffet_debug_stats buffet_debug_get_stats(buffet_debug *d);
/* The last error found (BUFFET_OK if none), then cleared. Thread: safe. */
BUFFET_API buffet_result buffet_debug_last_error(buffet_debug *d);

/* ---------------------------------------------------------------------------------------------
   >>fixed-buffer allocator: bump allocation in caller memory
*/
typedef struct buffet_fixed_desc {
    void *mem;            /* the caller's memory; NULL only with cap 0 */
    size_t cap;           /* its size in bytes */
    buffet_logger log;    /* foreign frees; zero: silent */
} buffet_fixed_desc;

typedef struct buffet_fixed {
    unsigned char *base;
    size_t cap, used;
    size_t last_off;      /* offset of the last allocation (the one that may grow or be freed) */
    buffet_logger log;
} buffet_fixed;

/* Use desc->mem[0..cap) for allocations; nothing is freed back until reset (except the last
   allocation, which may also grow; any block may shrink in place). Errors: BUFFET_ERR_INVALID
   (f or desc NULL, mem NULL with cap > 0). Thread: owned. */
BUFFET_API buffet_result buffet_fixed_init(buffet_fixed *f, const buffet_fixed_desc *desc);
/* Forget the buffer; f allocates nothing until initialised again. Thread: owned. */
BUFFET_API void buffet_fixed_deinit(buffet_fixed *f);
/* The allocator interface of f: alloc returns NULL when the buffer is full
   (BUFFET_ERR_EXHAUSTED); free of a pointer outside the buffer is refused and logged
   (BUFFET_ERR_FOREIGN). Contract: blocks live until freed or reset; owned by one thread.
   Thread: owned. */
BUFFET_API buffet_allocator buffet_fixed_allocator(buffet_fixed *f);
/* Forget every allocation. A pointer from before the reset must not be freed after it: a bump
   allocator keeps no record to tell it from a new block at the same address, so the free may
   release that block (free of other stale pointers is harmless: ignored). Thread: owned. */
BUFFET_API void buffet_fixed_reset(buffet_fixed *f);

/* ---------------------------------------------------------------------------------------------
   >>failing allocator: out-of-memory on request, for tests of anything that takes an allocator
*/
typedef struct buffet_failing {
    buffet_allocator parent;   /* zero: the heap */
    uint64_t fail_at;          /* the Nth attempt (1-based) fails; 0: none fails */
    bool fail_after;           /* and so does every one after it */
    /* Set after init; the modes combine (an allocation fails when any says so): */
    uint64_t skip;             /* the first `skip` attempts pass, whatever every and per_million say */
    uint64_t every;            /* then every `every`-th attempt fails (1: all of them); 0: off */
    uint32_t per_million;      /* then each attempt fails with this chance in a million... */
    uint64_t seed;             /* ...drawn from (seed, attempt number): the same seed fails the same attempts */
    uint64_t allocs;           /* allocation attempts so far (atomic) */
    uint64_t failures;         /* attempts refused so far (atomic) */
} buffet_failing;

/* Fail the fail_at-th allocation through f (and every later one when fail_after) and pass
   everything else to parent; set skip, every, per_million and seed afterwards for the other
   modes. Resizes and frees always reach the parent. Thread: safe. */
BUFFET_API void buffet_failing_init(buffet_failing *f, buffet_allocator parent, uint64_t fail_at,
                                    bool fail_after);
/* Drop the parent; f refuses everything until initialised again. Thread: not concurrently. */
BUFFET_API void buffet_failing_deinit(buffet_failing *f);
/* The allocator interface of f. A refused allocation reads as BUFFET_ERR_NOMEM. Contract: the
   parent's. Thread: safe. */
BUFFET_API buffet_allocator buffet_failing_allocator(buffet_failing *f);

/* ---------------------------------------------------------------------------------------------
   >>adapter for malloc-shaped hooks (zlib, SQLite, cJSON, expat): frees without a size
*/
typedef struct buffet_adapter {
    buffet_allocator parent;   /* zero: the heap */
    size_t align;              /* of every block; 0: 16 */
    buffet_site site;          /* reported as every block's allocation site (the hooks get none);
                                  set it to BUFFET_SITE where you hook a library up */
    buffet_logger log;         /* a free or realloc of what is no live block of it (set after
                                  init; zero: silent) */
} buffet_adapter;

/* Serve malloc-shaped calls from parent; each block carries its size in a header of `align`
   bytes (at least 16) so free needs no size. The header is checked before it is trusted: a
   second free of a block (while its memory is still readable) or a pointer that is no block
   is refused and logged, never passed on with a made-up size. On error *ad refuses everything. The library frees whenever it likes, so parent must keep blocks
   until freed. Returns: BUFFET_OK. Errors: BUFFET_ERR_INVALID (align not a power of two, or
   larger than 4096), BUFFET_ERR_LIFETIME (a frame or scope allocator). Thread: as parent. */
BUFFET_API buffet_result buffet_adapter_init(buffet_adapter *ad, buffet_allocator parent, size_t align);
/* Drop the parent; the adapter refuses everything until initialised again. Thread: owned. */
BUFFET_API void buffet_adapter_deinit(buffet_adapter *ad);
/* The adapter as a buffet allocator (any alignment up to 4096): its blocks carry the same header, so memory allocated
   here may be released by buffet_adapter_free (a library's hook) and memory from
   buffet_adapter_malloc by this allocator's free. Contract: the parent's, without resizing.
   Thread: as parent. */
BUFFET_API buffet_allocator buffet_adapter_allocator(buffet_adapter *ad);
/* malloc. Size 0 returns NULL. */
BUFFET_API void *buffet_adapter_malloc(buffet_adapter *ad, size_t size);
/* calloc (zeroed). NULL on count * size overflow. */
BUFFET_API void *buffet_adapter_calloc(buffet_adapter *ad, size_t count, size_t size);
/* realloc: NULL ptr allocates, size 0 frees and returns NULL; NULL on failure with ptr kept. */
BUFFET_API void *buffet_adapter_realloc(buffet_adapter *ad, void *ptr, size_t size);
/* free. NULL does nothing. */
BUFFET_API void buffet_adapter_free(buffet_adapter *ad, void *ptr);
/* The size the block was allocated with (0 for NULL). */
BUFFET_API size_t buffet_adapter_size(const void *ptr);
/* zlib's zalloc / zfree exactly (opaque = the adapter): strm.zalloc = buffet_adapter_zalloc;
   strm.zfree = buffet_adapter_zfree; strm.opaque = &ad; */
BUFFET_API void *buffet_adapter_zalloc(void *opaque, unsigned items, unsigned size);
BUFFET_API void buffet_adapter_zfree(void *opaque, void *ptr);

/* ---------------------------------------------------------------------------------------------
   >>buffers
*/
typedef enum buffet_buf_kind {
    BUFFET_BUF_HEAP = 0,   /* from an allocator */
    BUFFET_BUF_MMAP = 1,   /* anonymous pages; transparent huge pages when large */
    BUFFET_BUF_SHM  = 2,   /* a memfd: shareable with other processes by its fd, sealed size */
    BUFFET_BUF_WRAP = 3,   /* caller memory with a release callback */
    BUFFET_BUF_GPU  = 4,   /* GPU memory of buffet_gpu.h: handle and user name the allocation,
                              data is NULL unless the memory is host-visible */
    BUFFET_BUF_GPU_PINNED = 5, /* a host buffer registered with a GPU (buffet_gpu_pin) */
    BUFFET_BUF_KIND_USER = 64   /* kinds of other headers and users start here */
} buffet_buf_kind;

enum {
    BUFFET_BUF_HUGETLB = 1u << 0,   /* MMAP/SHM: explicit 2 MiB huge pages (MAP_HUGETLB); fails
                                       with BUFFET_ERR_UNSUPPORTED when none are reserved */
    BUFFET_BUF_NO_THP  = 1u << 1,   /* MMAP: never ask for transparent huge pages */
    BUFFET_BUF_ZERO    = 1u << 2,   /* HEAP: zero the bytes (MMAP and SHM always are) */
    BUFFET_BUF_POPULATE = 1u << 3,  /* MMAP/SHM: fault every page in now (MAP_POPULATE) */
    BUFFET_BUF_UNSEALED = 1u << 4,  /* buffet_buf_map_fd: accept a file its sender can still shrink
                                       (a shrink under the mapping kills the reader with SIGBUS) */
    BUFFET_BUF_SECURE  = 1u << 5    /* MMAP/SHM: locked in RAM (mlock: never swapped) and kept out of
                                       core dumps; MMAP/SHM/WRAP: wiped (buffet_wipe) when the last
                                       reference goes. HEAP refuses it: mlock works on whole pages,
                                       which a heap block shares with others */
};

typedef struct buffet_buf buffet_buf;
/* Caller release callback of a WRAP buffer: called once, when the last reference goes. */
typedef void (*buffet_release_fn)(void *user, void *data, size_t size);

/* A refcounted buffer. Read the fields; change only data bytes. `data` is NULL for memory
   the host cannot address (device memory of other headers). */
struct buffet_buf {
    void *data;                 /* host address of byte 0, or NULL */
    size_t size;                /* bytes usable from data */
    uint32_t refcount;          /* atomic; use buffet_buf_ref / unref */
    uint32_t kind;              /* buffet_buf_kind or a user kind */
    uint32_t flags;             /* BUFFET_BUF_* it was created with */
    int fd;                     /* SHM: the memfd (the buffer closes it); else -1 */
    size_t map_size;            /* bytes mapped (MMAP/SHM; a multiple of the page size) */
    size_t align;               /* HEAP: alignment of data */
    uint64_t handle;            /* device handle of other headers' kinds; else 0 */
    void (*destroy)(buffet_buf *b);   /* frees everything when refcount reaches 0 */
    buffet_allocator allocator; /* where this header (and HEAP data) came from */
    buffet_pin *pin;            /* the allocator's pin on that block (frame allocators), or NULL */
    buffet_release_fn release;  /* WRAP: the caller's callback */
    void *user;                 /* WRAP: its argument; other kinds: free for the provider */
};

typedef struct buffet_buf_desc {
    uint32_t kind;              /* buffet_buf_kind; 0: HEAP */
    size_t size;                /* bytes; must be > 0 */
    size_t align;               /* HEAP: alignment of data; 0: 64 (a cache line) */
    uint32_t flags;             /* BUFFET_BUF_*; 0: none */
    buffet_allocator allocator; /* for the header and HEAP data; zero: the heap. The last reference
                                   may drop on any thread, long after: it must keep blocks until
                                   freed and be thread-safe, or pin (a frame allocator's block
                                   then keeps its chunk alive until the buffer goes) */
    const char *name;           /* SHM: name shown in /proc/PID/fd; NULL: "buffet"
                                   map_fd: size, when not 0, is the most it accepts from the sender */
    void *wrap_data;            /* WRAP: the caller's memory */
    buffet_release_fn release;  /* WRAP: called when the last reference goes; may be NULL */
    void *release_user;         /* WRAP: its first argument */
    buffet_logger log;          /* why a creation failed; zero: silent */
} buffet_buf_desc;

/* Create a buffer with refcount 1. Returns: BUFFET_OK and *out. Errors: BUFFET_ERR_INVALID
   (out or desc NULL, size 0, unknown kind, bad align, WRAP without wrap_data),
   BUFFET_ERR_LIFETIME / BUFFET_ERR_THREAD (an allocator that cannot hold the buffer: see
   desc.allocator), BUFFET_ERR_OVERFLOW (size too large to round up), the allocator's reason
   (BUFFET_ERR_NOMEM, BUFFET_ERR_STATE, BUFFET_ERR_BUDGET, ...), BUFFET_ERR_UNSUPPORTED (HUGETLB
   with no huge pages available), BUFFET_ERR_SYSTEM (mmap/memfd failed: errno kept).
   On error *out is NULL and nothing is leaked; a WRAP buffer's release is NOT called.
   Thread: safe. */
BUFFET_API buffet_result buffet_buf_create_at(buffet_buf **out, const buffet_buf_desc *desc, buffet_site site);
#define buffet_buf_create(...) buffet_buf_create_at(__VA_ARGS__, BUFFET_SITE)
/* Map a shared-memory buffer from a memfd received from another process (the fd is dup'ed;
   the caller keeps its own). The size is the file's. The sender must have sealed it against
   shrinking (F_SEAL_SHRINK, as BUFFET_BUF_SHM buffers are), or a shrink would kill this process
   with SIGBUS; desc->flags BUFFET_BUF_UNSEALED accepts it anyway. The size comes from another
   process, so desc->size (when not 0) bounds it. desc may be NULL (heap header, no log); its
   size, allocator, flags (UNSEALED, SECURE) and log are used. Returns: BUFFET_OK and *out (kind
   SHM). Errors: BUFFET_ERR_INVALID (out NULL, fd < 0, empty file, not a regular file or memfd),
   BUFFET_ERR_TOO_LARGE (larger than desc->size), BUFFET_ERR_UNSAFE (not sealed
   against shrinking: logged with the file's name and seals), BUFFET_ERR_LIFETIME /
   BUFFET_ERR_THREAD (allocator), BUFFET_ERR_SYSTEM, BUFFET_ERR_NOMEM. Thread: safe. */
BUFFET_API buffet_result buffet_buf_map_fd_at(buffet_buf **out, int fd, const buffet_buf_desc *desc, buffet_site site);
#define buffet_buf_map_fd(...) buffet_buf_map_fd_at(__VA_ARGS__, BUFFET_SITE)
/* Zero n bytes at p in a way the compiler may not drop as a dead store (memory about to be
   freed: keys, passwords). Thread: as the memory. */
BUFFET_API void buffet_wipe(void *p, size_t n);
/* Take a reference. Returns: b, or NULL when b is NULL or already holds BUFFET_BUF_REF_MAX
   references (the count is never allowed to wrap). Thread: safe. */
BUFFET_API buffet_buf *buffet_buf_ref(buffet_buf *b);
#define BUFFET_BUF_REF_MAX ((uint32_t)1 << 31)
/* Drop a reference; the last one destroys the buffer. Returns: the references left (0: gone).
   NULL gives 0. Thread: safe. */
BUFFET_API uint32_t buffet_buf_unref(buffet_buf *b);
/* The current reference count (a snapshot). Thread: safe. */
BUFFET_API uint32_t buffet_buf_refcount(const buffet_buf *b);
/* Set len bytes from off to value. Errors: BUFFET_ERR_INVALID (b NULL or not host memory),
   BUFFET_ERR_RANGE (off + len beyond size; nothing written). Thread: compatible. */
BUFFET_API buffet_result buffet_buf_fill(buffet_buf *b, size_t off, size_t len, uint8_t value);
/* Zero len bytes from off. Errors: as buffet_buf_fill. */
BUFFET_API buffet_result buffet_buf_clear(buffet_buf *b, size_t off, size_t len);
/* Copy len bytes from src into b at off. Errors: as buffet_buf_fill (src NULL with len > 0:
   BUFFET_ERR_INVALID). */
BUFFET_API buffet_result buffet_buf_write(buffet_buf *b, size_t off, const void *src, size_t len);
/* Copy len bytes of b from off into dst. Errors: as buffet_buf_write. */
BUFFET_API buffet_result buffet_buf_read(const buffet_buf *b, size_t off, void *dst, size_t len);
/* Copy len bytes between buffers (may be the same buffer; overlap is handled).
   Errors: as buffet_buf_fill, for either side. */
BUFFET_API buffet_result buffet_buf_copy(buffet_buf *dst, size_t dst_off, const buffet_buf *src,
                                         size_t src_off, size_t len);

/* ---------------------------------------------------------------------------------------------
   >>slices and chains
*/
/* A view of len bytes from off in buf, holding one reference to buf. */
typedef struct buffet_slice { buffet_buf *buf; size_t off, len; } buffet_slice;

/* Make a slice of b (takes a reference). Errors: BUFFET_ERR_INVALID (out or b NULL),
   BUFFET_ERR_RANGE (off + len beyond b->size), BUFFET_ERR_OVERFLOW (b has BUFFET_BUF_REF_MAX
   references). Thread: safe. */
BUFFET_API buffet_result buffet_slice_make(buffet_slice *out, buffet_buf *b, size_t off, size_t len);
/* Drop the slice's reference and zero it. Releasing a zeroed slice does nothing. */
BUFFET_API void buffet_slice_release(buffet_slice *s);
/* Host address of the slice's first byte (NULL for device memory). */
static inline void *buffet_slice_data(const buffet_slice *s) {
    return s->buf && s->buf->data ? (void *)((unsigned char *)s->buf->data + s->off) : NULL;
}

/* An ordered sequence of slices. The slice array lives in [head, head + count) of `slices`,
   so exports and indexing are plain array accesses. Thread: owned. */
typedef struct buffet_chain {
    buffet_slice *slices;
    size_t head, count, cap;   /* in slices */
    size_t len;                /* total bytes */
    buffet_allocator allocator;
    buffet_pin *pin;           /* the allocator's pin on the slice array (frame allocators) */
} buffet_chain;

/* An empty chain whose slice array comes from a (zero: the heap). Allocates nothing. The array
   lives as long as the chain, so `a` must keep blocks until freed; a frame allocator's array is
   pinned (its chunk stays alive until the chain lets go). The chain calls `a` only from the
   thread using the chain. Errors: BUFFET_ERR_INVALID (c NULL), BUFFET_ERR_LIFETIME (a scope,
   or a frame that cannot pin): c is then a chain that refuses to grow. Thread: owned. */
BUFFET_API buffet_result buffet_chain_init(buffet_chain *c, buffet_allocator a);
/* Release every slice and the array; the chain is empty and reusable. Thread: owned. */
BUFFET_API void buffet_chain_deinit(buffet_chain *c);
/* Append / prepend len bytes of b from off (takes a reference; len 0 adds nothing). `site`
   names the caller for a leak report of the slice array. Errors: BUFFET_ERR_INVALID (c or b
   NULL), BUFFET_ERR_RANGE, BUFFET_ERR_OVERFLOW (chain length would overflow, or b has
   BUFFET_BUF_REF_MAX references), the allocator's reason (BUFFET_ERR_NOMEM, ...): chain
   unchanged, no reference taken. Thread: owned. */
BUFFET_API buffet_result buffet_chain_append_at(buffet_chain *c, buffet_buf *b, size_t off, size_t len, buffet_site site);
BUFFET_API buffet_result buffet_chain_prepend_at(buffet_chain *c, buffet_buf *b, size_t off, size_t len, buffet_site site);
#define buffet_chain_append(...) buffet_chain_append_at(__VA_ARGS__, BUFFET_SITE)
#define buffet_chain_prepend(...) buffet_chain_prepend_at(__VA_ARGS__, BUFFET_SITE)
/* Move every slice of src to the end of c (no references change); src ends empty.
   Errors: BUFFET_ERR_INVALID (NULL, or src == c), BUFFET_ERR_OVERFLOW, the allocator's reason
   (both unchanged). Thread: owned (both). */
BUFFET_API buffet_result buffet_chain_concat_at(buffet_chain *c, buffet_chain *src, buffet_site site);
#define buffet_chain_concat(...) buffet_chain_concat_at(__VA_ARGS__, BUFFET_SITE)
/* Move bytes [at, len) of c to the end of tail (c keeps [0, at)). A slice straddling `at`
   becomes two slices of the same buffer (one more reference). Errors: BUFFET_ERR_INVALID,
   BUFFET_ERR_RANGE (at > len), BUFFET_ERR_OVERFLOW (reference count), the allocator's reason
   (both unchanged). Thread: owned (both). */
BUFFET_API buffet_result buffet_chain_split_at(buffet_chain *c, size_t at, buffet_chain *tail, buffet_site site);
#define buffet_chain_split(...) buffet_chain_split_at(__VA_ARGS__, BUFFET_SITE)
/* Drop n bytes from the front, releasing slices that empty. Errors: BUFFET_ERR_INVALID,
   BUFFET_ERR_RANGE (n > len; nothing dropped). */
BUFFET_API buffet_result buffet_chain_consume(buffet_chain *c, size_t n);
/* Drop n bytes from the end, releasing slices that empty. Errors: BUFFET_ERR_INVALID,
   BUFFET_ERR_RANGE (n > len; nothing dropped). */
BUFFET_API buffet_result buffet_chain_trim(buffet_chain *c, size_t n);
/* Copy len bytes from off into dst. Errors: BUFFET_ERR_INVALID (c NULL, dst NULL with len > 0,
   device memory in range), BUFFET_ERR_RANGE. */
BUFFET_API buffet_result buffet_chain_copy_out(const buffet_chain *c, size_t off, void *dst, size_t len);
/* Find the first occurrence of needle[0..n) at or after byte `from`, across slice boundaries.
   Returns: BUFFET_OK and *pos. Errors: BUFFET_ERR_NOT_FOUND, BUFFET_ERR_INVALID (NULL, n 0). */
BUFFET_API buffet_result buffet_chain_find(const buffet_chain *c, size_t from, const void *needle,
                                           size_t n, size_t *pos);
/* Describe up to max_len bytes from off as at most max_iov iovecs (for readv/writev/sendmsg).
   Returns: the number of iovecs written (0 when off >= len or on bad arguments). */
BUFFET_API size_t buffet_chain_iovec(const buffet_chain *c, size_t off, size_t max_len,
                                     struct iovec *iov, size_t max_iov);
/* Total bytes. */
static inline size_t buffet_chain_len(const buffet_chain *c) { return c->len; }
/* Number of slices. */
static inline size_t buffet_chain_count(const buffet_chain *c) { return c->count; }
/* The i-th slice (NULL when i >= count). The chain keeps the reference. */
static inline const buffet_slice *buffet_chain_at(const buffet_chain *c, size_t i) {
    return i < c->count ? &c->slices[c->head + i] : NULL;
}

/* ---------------------------------------------------------------------------------------------
   >>budgets
*/
/* Called once per frame when a budget's soft limit is first passed, after the allocation that
   passed it is complete. */
typedef void (*buffet_budget_fn)(void *user, const char *name, size_t used, size_t soft_limit);

/* Limits on bytes allocated per frame, shared by the headers that have frames. Zero-initialise,
   set the limits, attach it: per arena (buffet_frame_desc.budget), per tag
   (buffet_frame_set_tag_budget), per thread (point several arenas of one thread at the same
   buffet_budget with buffet_frame_desc.thread_budget), and to a GPU device's frame memory
   (buffet_gpu_device_desc.budget), so one budget covers CPU and GPU memory of a frame. Each
   user charges what it allocates in a frame and takes it back when that frame's memory is
   reclaimed. The counters are buffet's: read them, don't write them. Thread: owned by the thread
   that runs the frames of everything attached. */
typedef struct buffet_budget {
    const char *name;          /* shown in logs; NULL: "arena" for an arena's own, the tag's name
                                  for a tag's, "budget" for a thread budget */
    size_t soft;               /* bytes per frame before on_soft runs (once per frame); 0: none */
    size_t hard;               /* bytes per frame no allocation may pass; 0: none */
    buffet_budget_fn on_soft;  /* may be NULL */
    void *user;
    size_t used;               /* bytes charged this frame */
    size_t reserved;           /* bytes arenas hold in reserve against it (see implementation) */
    size_t peak;               /* most bytes in any frame */
    uint64_t soft_hits;        /* times on_soft ran */
    uint64_t hard_failures;    /* allocations refused */
    bool soft_fired;           /* this frame */
} buffet_budget;

/* ---------------------------------------------------------------------------------------------
   >>registry: pick a buffer kind from a request
*/
enum {
    BUFFET_USAGE_HOST_READ    = 1u << 0,
    BUFFET_USAGE_HOST_WRITE   = 1u << 1,
    BUFFET_USAGE_DEVICE_READ  = 1u << 2,
    BUFFET_USAGE_DEVICE_WRITE = 1u << 3,
    BUFFET_USAGE_SHARE_PROCESS = 1u << 4,   /* another process maps it */
    BUFFET_USAGE_NETWORK      = 1u << 5,    /* socket I/O source or target */
    BUFFET_USAGE_HUGE_PAGES   = 1u << 6,    /* explicit huge pages wanted */
    BUFFET_USAGE_SECURE       = 1u << 7     /* secrets: locked in RAM, out of core dumps, wiped
                                               on release (BUFFET_BUF_SECURE); a provider that
                                               cannot do all three must score it < 0 */
};

typedef enum buffet_lifetime {
    BUFFET_LIFETIME_ANY = 0, BUFFET_LIFETIME_FRAME = 1, BUFFET_LIFETIME_PERSISTENT = 2
} buffet_lifetime;

typedef struct buffet_request {
    uint32_t usage;             /* BUFFET_USAGE_*; 0: host read and write */
    size_t size;                /* bytes; must be > 0 */
    size_t align;               /* 0: the provider's default */
    buffet_lifetime lifetime;
    buffet_allocator allocator; /* for headers (and heap data); zero: the heap */
    buffet_site site;           /* who asked (for leak reports); set by buffet_registry_create_buf */
    buffet_logger log;          /* where the provider says why it failed; zero: the registry's */
} buffet_request;

typedef struct buffet_registry buffet_registry;

/* A provider of one buffer kind. score returns < 0 when it cannot serve the request, else
   higher is better (0..100), and writes a short reason to why[0..why_cap). score and create run
   outside the registry's lock, and removal waits until no call is running, so a provider may
   go away once buffet_registry_remove returns. detach (optional) is told when r lets the
   provider go (removed, or r destroyed), so a provider that registered itself can forget r. */
typedef struct buffet_provider {
    const char *name;
    int (*score)(void *self, const buffet_request *req, char *why, size_t why_cap);
    buffet_result (*create)(void *self, const buffet_request *req, buffet_buf **out);
    void *self;
    void (*detach)(void *self, buffet_registry *r);
} buffet_provider;

typedef struct buffet_registry_desc {
    buffet_allocator allocator;   /* for the registry itself; zero: the heap */
    buffet_logger log;            /* where refusals are explained; zero: silent */
} buffet_registry_desc;

/* A new registry holding the built-in providers "heap", "mmap" and "shm" (desc NULL: defaults).
   Errors: BUFFET_ERR_INVALID, BUFFET_ERR_LIFETIME (an allocator whose blocks die with a scope),
   the allocator's reason. Thread: safe. */
BUFFET_API buffet_result buffet_registry_create_at(buffet_registry **out, const buffet_registry_desc *desc,
                                                   buffet_site site);
#define buffet_registry_create(...) buffet_registry_create_at(__VA_ARGS__, BUFFET_SITE)
/* Free a registry (NULL does nothing); every provider with a detach hook hears of it (the
   pointer it gets then only identifies the registry: it is gone). The process-wide registry is
   never freed: destroying it does nothing. Thread: not concurrently with use. */
BUFFET_API void buffet_registry_destroy(buffet_registry *r);
/* The process-wide registry, created on first use with the built-ins (NULL only if that
   failed). Every buffet header registers its providers here. Thread: safe. */
BUFFET_API buffet_registry *buffet_registry_default(void);
/* Add a provider (copied; name must outlive the registry). Errors: BUFFET_ERR_INVALID (NULL,
   no name/score/create, name already present), BUFFET_ERR_EXHAUSTED (BUFFET_REGISTRY_MAX).
   Thread: safe. */
BUFFET_API buffet_result buffet_registry_add(buffet_registry *r, const buffet_provider *p);
/* Remove the provider named name, waiting for calls into it on other threads to return; its
   detach hook runs after. Errors: BUFFET_ERR_INVALID, BUFFET_ERR_NOT_FOUND, BUFFET_ERR_STATE
   (called from inside that provider's own score or create, or from inside a score callback of
   r, which holds every provider in use while scoring: it would wait for itself; a create
   callback holds only its own provider). Thread: safe. */
BUFFET_API buffet_result buffet_registry_remove(buffet_registry *r, const char *name);
/* Create a buffer from the highest-scoring provider (ties: the earlier registered).
   Errors: BUFFET_ERR_INVALID (NULL, size 0), BUFFET_ERR_UNSUPPORTED (no provider can serve),
   else the provider's error. Thread: safe. */
BUFFET_API buffet_result buffet_registry_create_buf_at(buffet_registry *r, const buffet_request *req,
                                                       buffet_buf **out, buffet_site site);
#define buffet_registry_create_buf(...) buffet_registry_create_buf_at(__VA_ARGS__, BUFFET_SITE)
/* Write which provider a request goes to and why, with every candidate's score, to
   out[0..cap) (always NUL-terminated when cap > 0). Returns: the length the full text has
   (as snprintf). Thread: safe. */
BUFFET_API size_t buffet_explain(buffet_registry *r, const buffet_request *req, char *out, size_t cap);

BUFFET_EXTERN_C_END
#endif /* BUFFET_H_INCLUDED */

/* =============================================================================================
   IMPLEMENTATION
*/
#if defined(BUFFET_IMPLEMENTATION) && !defined(BUFFET_IMPL_INCLUDED)
#define BUFFET_IMPL_INCLUDED

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUFFET__PAGE ((size_t)4096)
#define BUFFET__HUGE_PAGE ((size_t)2 << 20)

/* >>results */
BUFFET_API const char *buffet_result_str(buffet_result r) {
#define BUFFET__RESULT_CASE(name, value, text) case name: return #name ": " text;
    switch (r) {
        BUFFET_RESULT_LIST(BUFFET__RESULT_CASE)
    }
#undef BUFFET__RESULT_CASE
    return "BUFFET_ERR_?: unknown result";
}

BUFFET_API uint32_t buffet_version(void) { return BUFFET_VERSION_NUMBER; }

/* >>logging */
__attribute__((format(printf, 6, 7)))
static void buffet__log(const buffet_logger *lg, buffet_log_level level, buffet_result code,
                        const char *file, int line, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    if (!lg || !lg->fn) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg->fn(lg->user, level, code, msg, file, line);
}
#define BUFFET__LOG(lg, level, code, ...) buffet__log((lg), (level), (code), __FILE__, __LINE__, __VA_ARGS__)

/* snprintf that keeps counting past the end, so the caller learns the full length. Every
   header's text output (explain, JSON, Prometheus) is built with it. */
__attribute__((format(printf, 4, 5)))
static void buffet__append(char *out, size_t cap, size_t *len, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(*len < cap ? out + *len : NULL, *len < cap ? cap - *len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n;
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4), or 0 when it is not one: a stray
   continuation byte, a cut or overlong sequence, a surrogate or a code point past U+10FFFF. */
__attribute__((unused)) static size_t buffet__utf8_len(const unsigned char *s) {
    size_t n, i;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) n = 2, cp = s[0] & 0x1Fu;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) n = 3, cp = s[0] & 0x0Fu;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) n = 4, cp = s[0] & 0x07u;
    else return 0;
    for (i = 1; i < n; i++) {   /* stops at the terminating NUL, which is no continuation byte */
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* A caller's string inside double quotes: as a JSON string, or as a Prometheus label value
   (which knows only the escapes \\, \" and \n, so other control characters become spaces). Bytes
   that are not UTF-8 (a name cut inside a character, a Latin-1 name) become U+FFFD, so the
   output always parses. */
__attribute__((unused)) static void buffet__append_quoted(char *out, size_t cap, size_t *len, const char *s, bool prometheus) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t n = buffet__utf8_len(p);
        if (n == 0) { buffet__append(out, cap, len, "\xEF\xBF\xBD"); p++; continue; }
        if (n > 1) buffet__append(out, cap, len, "%.*s", (int)n, (const char *)p);
        else if (c == '"' || c == '\\') buffet__append(out, cap, len, "\\%c", c);
        else if (c == '\n') buffet__append(out, cap, len, "\\n");
        else if (c < 0x20 && prometheus) buffet__append(out, cap, len, " ");
        else if (c < 0x20) buffet__append(out, cap, len, "\\u%04x", (unsigned)c);
        else buffet__append(out, cap, len, "%c", c);
        p += n;
    }
}

BUFFET_API void buffet_log_stderr(void *user, buffet_log_level level, buffet_result code,
                                  const char *msg, const char *file, int line) {
    static const char *const names[] = {"error", "warning", "info", "debug"};
    (void)user; (void)file; (void)line;
    fprintf(stderr, "buffet: %s: %s (%s)\n", (unsigned)level < 4 ? names[level] : "?", msg,
            buffet_result_str(code));
}

BUFFET_API void buffet_log_silent(void *user, buffet_log_level level, buffet_result code,
                                  const char *msg, const char *file, int line) {
    (void)user; (void)level; (void)code; (void)msg; (void)file; (void)line;
}

static const char *buffet__site_where(buffet_site s) { return s.where ? s.where : "?"; }
static const char *buffet__site_func(buffet_site s) { return s.func ? s.func : "?"; }

/* A logger that ends each line with the caller's site, for the refusals of a public _at
   function that are logged deep in helpers which know no site. It lives on that function's
   stack: never store it. */
typedef struct buffet__sited { buffet_logger inner; buffet_site site; } buffet__sited;
static void buffet__sited_fn(void *user, buffet_log_level level, buffet_result code, const char *msg,
                             const char *file, int line) {
    const buffet__sited *s = (const buffet__sited *)user;
    char m[512];
    snprintf(m, sizeof m, "%s (called at %s in %s())", msg, buffet__site_where(s->site), buffet__site_func(s->site));
    s->inner.fn(s->inner.user, level, code, m, file, line);
}
__attribute__((unused)) static buffet_logger buffet__sited_logger(buffet__sited *s, buffet_logger inner, buffet_site site) {
    buffet_logger lg;
    if (!inner.fn || !site.where) return inner;
    s->inner = inner;
    s->site = site;
    lg.fn = buffet__sited_fn;
    lg.user = s;
    return lg;
}

/* Log lines held back while a lock is held or the state is half-updated, and delivered once
   both are over, so a logger may call any buffet function (shared with the sibling headers). */
#define BUFFET__LOGQ_MAX 4
typedef struct buffet__logq {
    unsigned n;
    struct { buffet_log_level level; buffet_result code; const char *file; int line; char msg[256]; } e[BUFFET__LOGQ_MAX];
    unsigned dropped;          /* lines past the queue's room, told as one line; valid while n > 0 */
} buffet__logq;

__attribute__((format(printf, 7, 8), unused))
static void buffet__logq_add(buffet__logq *q, const buffet_logger *lg, buffet_log_level level, buffet_result code,
                             const char *file, int line, const char *fmt, ...) {
    va_list ap;
    if (!lg || !lg->fn) return;
    if (q->n == 0) q->dropped = 0;   /* a new batch: owners reset only n */
    if (q->n == BUFFET__LOGQ_MAX) {
        q->dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(q->e[q->n].msg, sizeof q->e[q->n].msg, fmt, ap);
    va_end(ap);
    q->e[q->n].level = level;
    q->e[q->n].code = code;
    q->e[q->n].file = file;
    q->e[q->n].line = line;
    q->n++;
}
#define BUFFET__LOGQ(q, lg, level, code, ...) buffet__logq_add((q), (lg), (level), (code), __FILE__, __LINE__, __VA_ARGS__)

__attribute__((unused)) static void buffet__logq_flush(buffet__logq *q, const buffet_logger *lg) {
    unsigned i, n = q->n;
    char more[64];
    q->n = 0;
    for (i = 0; i < n && lg && lg->fn; i++) lg->fn(lg->user, q->e[i].level, q->e[i].code, q->e[i].msg, q->e[i].file, q->e[i].line);
    if (n == BUFFET__LOGQ_MAX && q->dropped && lg && lg->fn) {   /* counted, so no report is lost unseen */
        snprintf(more, sizeof more, "... and %u more like these (see the statistics)", q->dropped);
        lg->fn(lg->user, q->e[n - 1].level, q->e[n - 1].code, more, q->e[n - 1].file, q->e[n - 1].line);
    }
}

/* Release mu, then tell the logger what was queued in *pending while it was held (shared with
   the sibling headers): the logger may call back into the object. */
__attribute__((unused)) static void buffet__unlock_and_log(pthread_mutex_t *mu, buffet__logq *pending, const buffet_logger *lg) {
    buffet__logq q;
    q.n = pending->n;
    if (q.n) memcpy(&q, pending, sizeof q);
    pending->n = 0;
    pthread_mutex_unlock(mu);
    buffet__logq_flush(&q, lg);
}

/* >>failure reasons: the calling thread's, as errno */
static __thread struct { buffet_result code; const char *why; } buffet__alloc_err;

BUFFET_API void *buffet_alloc_fail(buffet_result code, const char *why) {
    buffet__alloc_err.code = code;
    buffet__alloc_err.why = why;
    return NULL;
}

BUFFET_API buffet_result buffet_alloc_error(const char **why) {
    if (why) *why = buffet__alloc_err.why ? buffet__alloc_err.why : "no failure recorded";
    return buffet__alloc_err.code;
}

/* The reason of the failure just seen, NOMEM when the allocator gave none. */
static buffet_result buffet__alloc_reason(void) {
    if (buffet__alloc_err.code == BUFFET_OK) buffet_alloc_fail(BUFFET_ERR_NOMEM, "the allocator returned NULL");
    return buffet__alloc_err.code;
}

/* >>allocator dispatch */
static void *buffet__heap_alloc(void *self, size_t size, size_t align, buffet_site site) {
    void *p = NULL;
    (void)self; (void)site;
#ifdef BUFFET_HEAP_ALLOC
    p = BUFFET_HEAP_ALLOC(size, align);
#else
    if (align <= BUFFET__MALLOC_ALIGN) p = malloc(size);
    else if (posix_memalign(&p, align, size) != 0) p = NULL;
#endif
    return p ? p : buffet_alloc_fail(BUFFET_ERR_NOMEM, "the heap is out of memory");
}

static bool buffet__heap_resize(void *self, void *ptr, size_t old_size, size_t new_size, size_t align) {
    (void)self; (void)old_size; (void)align;
#ifdef BUFFET_HEAP_ALLOC
    (void)ptr; (void)new_size;
    return false;
#else
    /* The block stays where it is; only its usable size limits growth. */
    return malloc_usable_size(ptr) >= new_size;
#endif
}

static void buffet__heap_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)self; (void)size; (void)align; (void)site;
#ifdef BUFFET_HEAP_FREE
    BUFFET_HEAP_FREE(ptr, size, align);
#else
    free(ptr);
#endif
}

#ifndef BUFFET_HEAP_ALLOC
/* realloc(3): in place when it can, mremap for large (mmap'd) blocks, and a shrink gives the
   tail back. It keeps only malloc's own alignment, so larger ones move by copy. */
static void *buffet__heap_remap(void *self, void *ptr, size_t old_size, size_t new_size, size_t align, buffet_site site) {
    void *p;
    if (align <= BUFFET__MALLOC_ALIGN) {
        p = realloc(ptr, new_size);
        return p ? p : buffet_alloc_fail(BUFFET_ERR_NOMEM, "the heap is out of memory");
    }
    p = buffet__heap_alloc(self, new_size, align, site);
    if (!p) return NULL;
    memcpy(p, ptr, old_size < new_size ? old_size : new_size);
    free(ptr);
    return p;
}
#define BUFFET__HEAP_REMAP buffet__heap_remap
#else
#define BUFFET__HEAP_REMAP NULL
#endif

static uint32_t buffet__heap_contract(const void *self) {
    (void)self;
    return BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE | BUFFET_CONTRACT_RESIZE;
}

static const buffet_allocator_vtable buffet__heap_vtable = {
    buffet__heap_alloc, buffet__heap_resize, buffet__heap_free, BUFFET__HEAP_REMAP, buffet__heap_contract, NULL
};

BUFFET_API buffet_allocator buffet_heap(void) {
    buffet_allocator a;
    a.self = NULL;
    a.vtable = NULL;
    return a;
}

static void *buffet__null_alloc(void *self, size_t size, size_t align, buffet_site site) {
    (void)self; (void)size; (void)align; (void)site;
    return buffet_alloc_fail(BUFFET_ERR_NOMEM, "the null allocator refuses every allocation (an allocator of a NULL object?)");
}
static void buffet__null_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)self; (void)ptr; (void)size; (void)align; (void)site;
}
/* The contract of an allocator whose blocks live until freed, from any thread (shared with the
   sibling headers' pool faces; the null allocator's too: it holds nothing). */
static uint32_t buffet__contract_until_freed_safe(const void *self) {
    (void)self;
    return BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_THREAD_SAFE;
}
static const buffet_allocator_vtable buffet__null_vtable = {
    buffet__null_alloc, NULL, buffet__null_free, NULL, buffet__contract_until_freed_safe, NULL
};

BUFFET_API buffet_allocator buffet_null_allocator(void) {
    buffet_allocator a;
    a.self = NULL;
    a.vtable = &buffet__null_vtable;
    return a;
}

/* A zero allocator is the heap. */
static buffet_allocator buffet__resolve(buffet_allocator a) {
    if (!a.vtable) a.vtable = &buffet__heap_vtable;
    return a;
}

BUFFET_API uint32_t buffet_allocator_contract(buffet_allocator a) {
    a = buffet__resolve(a);
    return a.vtable->contract ? a.vtable->contract(a.self) : (uint32_t)BUFFET_CONTRACT_UNTIL_FREED;
}

/* Would the holder pin blocks of a (its blocks die otherwise, and it can pin them)? */
static bool buffet__pins(uint32_t contract) {
    return !(contract & BUFFET_CONTRACT_UNTIL_FREED) && (contract & BUFFET_CONTRACT_PIN);
}

/* The contract check every holder of an allocator makes when it is created (shared with the
   sibling headers). can_pin: the holder keeps a pin token per block (buffet__hold), which makes
   a pinning allocator's blocks live until freed and released from any thread. */
static buffet_result buffet__check(buffet_allocator a, uint32_t need, bool can_pin, const char *what,
                                   const buffet_logger *log) {
    uint32_t c = buffet_allocator_contract(a);
    bool pinned = can_pin && buffet__pins(c);
    if ((need & BUFFET_NEED_UNTIL_FREED) && !(c & BUFFET_CONTRACT_UNTIL_FREED) && !pinned) {
        BUFFET__LOG(log, BUFFET_LOG_ERROR, BUFFET_ERR_LIFETIME,
                    "%s: its allocator's blocks die when the current frame or scope ends, but %s keeps them until it frees them%s",
                    what, what, (c & BUFFET_CONTRACT_PIN) ? ", and it does not pin blocks" : ", and the allocator cannot pin them");
        return BUFFET_ERR_LIFETIME;
    }
    if ((need & BUFFET_NEED_THREAD_SAFE) && !(c & BUFFET_CONTRACT_THREAD_SAFE) && !pinned) {
        BUFFET__LOG(log, BUFFET_LOG_ERROR, BUFFET_ERR_THREAD,
                    "%s: its allocator serves one owner thread, but %s calls it from any thread; use a thread-safe one (the heap, a pool)",
                    what, what);
        return BUFFET_ERR_THREAD;
    }
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_allocator_check(buffet_allocator a, uint32_t need, const char *what,
                                                const buffet_logger *log) {
    return buffet__check(a, need, false, what ? what : "this use", log);
}

/* A block the holder keeps as long as it likes (shared with the sibling headers): allocated,
   and pinned when the allocator's blocks would die with their frame (*pin: the token, else NULL).
   Release it with buffet__unhold. */
__attribute__((unused)) static void *buffet__hold(buffet_allocator a, size_t size, size_t align, buffet_site site, buffet_pin **pin) {
    void *p = buffet_alloc(a, size, align, site);
    const char *why;
    buffet_result r;
    *pin = NULL;
    if (!p || !a.vtable || !buffet__pins(buffet_allocator_contract(a))) return p;
    buffet_alloc_fail(BUFFET_OK, NULL);   /* so a reason the pin gives (out of memory) is seen */
    *pin = a.vtable->pin(a.self, p, size);
    if (!*pin) {
        r = buffet_alloc_error(&why);
        buffet_free(a, p, size, align, site);
        if (r != BUFFET_OK) return buffet_alloc_fail(r, why);
        return buffet_alloc_fail(BUFFET_ERR_LIFETIME, "the frame allocator could not pin the block");
    }
    return p;
}

/* Release a block from buffet__hold: a pinned one by its pin alone (any thread may). */
__attribute__((unused)) static void buffet__unhold(buffet_allocator a, void *p, size_t size, size_t align, buffet_pin *pin,
                                                   buffet_site site) {
    if (pin) pin->release(pin);
    else buffet_free(a, p, size, align, site);
}

BUFFET_API buffet_result buffet_alloc_ex(buffet_allocator a, size_t size, size_t align,
                                         buffet_site site, void **out) {
    void *p;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    if (!buffet_is_pow2(align)) {
        buffet_alloc_fail(BUFFET_ERR_INVALID, "the alignment is not a power of two");
        return BUFFET_ERR_INVALID;
    }
    if (size == 0) return BUFFET_OK;
    a = buffet__resolve(a);
    buffet__alloc_err.code = BUFFET_OK;
    p = a.vtable->alloc(a.self, size, align, site);
    if (!p) return buffet__alloc_reason();
    *out = p;
    return BUFFET_OK;
}

BUFFET_API void *buffet_alloc_array(buffet_allocator a, size_t count, size_t size, size_t align,
                                    buffet_site site) {
    size_t total;
    if (!buffet_mul(count, size, &total)) return buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "count * size overflows");
    return buffet_alloc(a, total, align, site);
}

BUFFET_API bool buffet_resize(buffet_allocator a, void *ptr, size_t old_size, size_t new_size,
                              size_t align) {
    if (!ptr || old_size == 0 || new_size == 0 || !buffet_is_pow2(align)) return false;
    if (old_size == new_size) return true;
    a = buffet__resolve(a);
    return a.vtable->resize && a.vtable->resize(a.self, ptr, old_size, new_size, align);
}

/* buffet_realloc's general path, apart so that the heap's stays a few instructions. */
__attribute__((noinline)) static void *buffet__realloc_any(buffet_allocator a, void *ptr, size_t old_size, size_t new_size,
                                                           size_t align, buffet_site site) {
    void *p;
    if (!buffet_is_pow2(align)) return buffet_alloc_fail(BUFFET_ERR_INVALID, "the alignment is not a power of two");
    if (!ptr) return buffet_alloc(a, new_size, align, site);
    if (new_size == 0) {
        buffet_free(a, ptr, old_size, align, site);
        return NULL;
    }
    if (old_size == 0) return buffet_alloc_fail(BUFFET_ERR_INVALID, "realloc of a block with size 0");
    if (old_size == new_size) return ptr;
    a = buffet__resolve(a);
    if (a.vtable->remap) {
        buffet__alloc_err.code = BUFFET_OK;
        p = a.vtable->remap(a.self, ptr, old_size, new_size, align, site);
        if (!p) buffet__alloc_reason();
        return p;
    }
    if (buffet_resize(a, ptr, old_size, new_size, align)) return ptr;
    p = buffet_alloc(a, new_size, align, site);
    if (!p) return NULL;
    memcpy(p, ptr, old_size < new_size ? old_size : new_size);
    buffet_free(a, ptr, old_size, align, site);
    return p;
}

BUFFET_API void *buffet_realloc(buffet_allocator a, void *ptr, size_t old_size, size_t new_size,
                                size_t align, buffet_site site) {
#ifndef BUFFET_HEAP_ALLOC
    /* The heap at malloc's own alignment is realloc itself, as buffet_alloc is malloc. (Not
       inline: gcc would then warn of a realloc of any static block a caller passes with an
       allocator it cannot see is not the heap.) */
    if (!a.vtable && ptr && old_size && new_size && align - 1 < BUFFET__MALLOC_ALIGN && !(align & (align - 1))) {
        void *p = realloc(ptr, new_size);
        return p ? p : buffet_alloc_fail(BUFFET_ERR_NOMEM, "the heap is out of memory");
    }
#endif
    return buffet__realloc_any(a, ptr, old_size, new_size, align, site);
}

BUFFET_API buffet_result buffet_free_ex(buffet_allocator a, void *ptr, size_t size, size_t align, buffet_site site) {
    if (!buffet_is_pow2(align)) return BUFFET_ERR_INVALID;
    if (!ptr) return BUFFET_OK;
    a = buffet__resolve(a);
    a.vtable->free(a.self, ptr, size, align, site);
    return BUFFET_OK;
}

BUFFET_API void buffet_free_array(buffet_allocator a, void *ptr, size_t count, size_t size,
                                  size_t align, buffet_site site) {
    size_t total;
    if (!ptr || !buffet_mul(count, size, &total)) return;
    buffet_free(a, ptr, total, align, site);
}

/* >>debug allocator
   Blocks from the parent are [front guard | user bytes | back guard]; the front guard is
   rounded up to the alignment so the user bytes are aligned. The bookkeeping is a hash table
   keyed by user pointer, so a foreign pointer is recognised without touching its memory. Freed
   blocks wait, poisoned, in a FIFO quarantine: a second free finds them, and a write after free
   shows as changed poison when they leave. */
#define BUFFET__DBG_GUARD_BYTE 0xFB
#define BUFFET__DBG_FRESH_BYTE 0xCD
#define BUFFET__DBG_FREED_BYTE 0xDD
#define BUFFET__DBG_EMPTY ((uintptr_t)0)
#define BUFFET__DBG_TOMB ((uintptr_t)1)

typedef struct buffet__dbg_rec {
    uintptr_t key;             /* user pointer, or EMPTY / TOMB */
    size_t size, align;
    uint64_t seq;
    buffet_site site, free_site;
    buffet_pin *pin;           /* the parent's pin on the block (frame parents) */
    bool freed;                /* in quarantine */
} buffet__dbg_rec;

struct buffet_debug {
    buffet_allocator parent, bookkeeping;
    size_t guard, q_max_count, q_max_bytes;
    buffet_logger log;
    pthread_mutex_t mu;
    buffet__dbg_rec *tab;
    size_t tab_cap, tab_used;  /* used counts tombstones: they lengthen probes too */
    uintptr_t *q;              /* quarantine ring of user pointers */
    size_t q_head, q_len, q_bytes;
    uint64_t seq;
    buffet_debug_stats st;
    buffet_result last;
    buffet__logq pending;      /* found under the lock, logged after it */
};

static void buffet__dbg_unlock(buffet_debug *d) { buffet__unlock_and_log(&d->mu, &d->pending, &d->log); }

/* The front guard, rounded up to the alignment so the user bytes stay aligned. */
static size_t buffet__dbg_front(const buffet_debug *d, size_t align) {
    return (d->guard + align - 1) & ~(align - 1);
}
static size_t buffet__dbg_block_align(size_t align) {
    return align > BUFFET__MALLOC_ALIGN ? align : BUFFET__MALLOC_ALIGN;
}
static bool buffet__dbg_block_size(const buffet_debug *d, size_t size, size_t align, size_t *out) {
    size_t t;
    return buffet_add(buffet__dbg_front(d, align), size, &t) && buffet_add(t, d->guard, out);
}
static unsigned char *buffet__dbg_base(const buffet_debug *d, uintptr_t key, size_t align) {
    return (unsigned char *)key - buffet__dbg_front(d, align);
}

static size_t buffet__dbg_hash(uintptr_t key, size_t cap) {
    return (size_t)(((uint64_t)key >> 4) * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
}

static buffet__dbg_rec *buffet__dbg_find(buffet_debug *d, uintptr_t key) {
    size_t i = buffet__dbg_hash(key, d->tab_cap);
    for (;;) {
        buffet__dbg_rec *r = &d->tab[i];
        if (r->key == key) return r;
        if (r->key == BUFFET__DBG_EMPTY) return NULL;
        i = (i + 1) & (d->tab_cap - 1);
    }
}

/* Room for one more record: rehash when live + tombstones would pass half the table. */
static bool buffet__dbg_reserve(buffet_debug *d) {
    size_t live = 0, cap, i;
    buffet__dbg_rec *nt;
    if ((d->tab_used + 1) * 2 <= d->tab_cap) return true;
    for (i = 0; i < d->tab_cap; i++) live += d->tab[i].key > BUFFET__DBG_TOMB;
    cap = (live + 1) * 4 <= d->tab_cap ? d->tab_cap : d->tab_cap * 2;
    nt = (buffet__dbg_rec *)buffet_alloc_array(d->bookkeeping, cap, sizeof *nt, BUFFET_ALIGNOF(buffet__dbg_rec), BUFFET_SITE);
    if (!nt) return false;
    memset(nt, 0, cap * sizeof *nt);
    for (i = 0; i < d->tab_cap; i++) {
        if (d->tab[i].key > BUFFET__DBG_TOMB) {
            size_t j = buffet__dbg_hash(d->tab[i].key, cap);
            while (nt[j].key != BUFFET__DBG_EMPTY) j = (j + 1) & (cap - 1);
            nt[j] = d->tab[i];
        }
    }
    buffet_free_array(d->bookkeeping, d->tab, d->tab_cap, sizeof *nt, BUFFET_ALIGNOF(buffet__dbg_rec), BUFFET_SITE);
    d->tab = nt;
    d->tab_cap = cap;
    d->tab_used = live;
    return true;
}

static void buffet__dbg_error(buffet_debug *d, buffet_result code, size_t *counter) {
    d->last = code;
    if (counter) (*counter)++;
}

/* Is every byte of p[0..n) equal to b? memcmp against itself shifted by one runs at memcmp's
   speed, so checking big blocks stays cheap; the byte loop runs only to name a damaged byte. */
static bool buffet__all_bytes(const unsigned char *p, size_t n, unsigned char b) {
    return n == 0 || (p[0] == b && memcmp(p, p + 1, n - 1) == 0);
}

/* Guards intact? Logs which side was damaged. */
static bool buffet__dbg_check_guards(buffet_debug *d, const buffet__dbg_rec *r) {
    unsigned char *user = (unsigned char *)r->key;
    unsigned char *base = buffet__dbg_base(d, r->key, r->align);
    size_t front = buffet__dbg_front(d, r->align), i;
    bool ok = true;
    if (buffet__all_bytes(base, front, BUFFET__DBG_GUARD_BYTE) &&
        buffet__all_bytes(user + r->size, d->guard, BUFFET__DBG_GUARD_BYTE))
        return true;
    for (i = 0; i < front; i++) {
        if (base[i] != BUFFET__DBG_GUARD_BYTE) {
            BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_ERROR, BUFFET_ERR_CORRUPT,
                        "underrun: %zu-byte block at %p, allocated at %s in %s(), was written %zu bytes before its start",
                        r->size, (const void *)user, buffet__site_where(r->site),
                        buffet__site_func(r->site), front - i);
            ok = false;
            break;
        }
    }
    for (i = 0; i < d->guard; i++) {
        if (user[r->size + i] != BUFFET__DBG_GUARD_BYTE) {
            BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_ERROR, BUFFET_ERR_CORRUPT,
                        "overrun: %zu-byte block at %p, allocated at %s in %s(), was written %zu bytes past its end",
                        r->size, (const void *)user, buffet__site_where(r->site),
                        buffet__site_func(r->site), i + 1);
            ok = false;
            break;
        }
    }
    if (!ok) {
        /* Reported once: restored, so a later check, resize or free does not count it again. */
        buffet__dbg_error(d, BUFFET_ERR_CORRUPT, &d->st.corruptions);
        memset(base, BUFFET__DBG_GUARD_BYTE, front);
        memset(user + r->size, BUFFET__DBG_GUARD_BYTE, d->guard);
    }
    return ok;
}

static bool buffet__dbg_check_poison(buffet_debug *d, const buffet__dbg_rec *r) {
    unsigned char *user = (unsigned char *)r->key;
    size_t i;
    bool ok = true;
    BUFFET__ASAN_UNPOISON(user, r->size);
    BUFFET__VG_DEFINED(user, r->size);
    for (i = buffet__all_bytes(user, r->size, BUFFET__DBG_FREED_BYTE) ? r->size : 0; i < r->size; i++) {
        if (user[i] != BUFFET__DBG_FREED_BYTE) {
            BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_ERROR, BUFFET_ERR_CORRUPT,
                        "write after free: byte %zu of the %zu-byte block at %p (allocated at %s in %s(), freed at %s in %s())",
                        i, r->size, (void *)user, buffet__site_where(r->site),
                        buffet__site_func(r->site), buffet__site_where(r->free_site),
                        buffet__site_func(r->free_site));
            buffet__dbg_error(d, BUFFET_ERR_CORRUPT, &d->st.corruptions);
            ok = false;
            break;
        }
    }
    /* Reported once: the poison is restored, so a later check or the eviction stays quiet. */
    if (!ok) memset(user, BUFFET__DBG_FREED_BYTE, r->size);
    BUFFET__POISON(user, r->size);
    return ok;
}

/* Give a block back to the parent and forget its record. */
static void buffet__dbg_release(buffet_debug *d, buffet__dbg_rec *r) {
    size_t block = 0;
    unsigned char *base = buffet__dbg_base(d, r->key, r->align);
    buffet__dbg_block_size(d, r->size, r->align, &block);
    BUFFET__UNPOISON(base, block);
    buffet__unhold(d->parent, base, block, buffet__dbg_block_align(r->align), r->pin, r->free_site);
    r->key = BUFFET__DBG_TOMB;
}

static void buffet__dbg_evict_one(buffet_debug *d) {
    uintptr_t key = d->q[d->q_head];
    buffet__dbg_rec *r = buffet__dbg_find(d, key);
    d->q_head = (d->q_head + 1) % d->q_max_count;
    d->q_len--;
    BUFFET_ASSERT(r && r->freed);
    d->q_bytes -= r->size;
    buffet__dbg_check_poison(d, r);
    buffet__dbg_check_guards(d, r);
    buffet__dbg_release(d, r);
}

static void *buffet__dbg_alloc(void *self, size_t size, size_t align, buffet_site site) {
    buffet_debug *d = (buffet_debug *)self;
    size_t block, i;
    unsigned char *base, *user;
    buffet__dbg_rec *r;
    buffet_pin *pin = NULL;
    buffet_result why;
    const char *text;
    if (!buffet__dbg_block_size(d, size, align, &block)) {
        pthread_mutex_lock(&d->mu);
        d->st.failed_allocs++;
        BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_WARN, BUFFET_ERR_OVERFLOW, "allocation of %zu bytes at %s: size overflows",
                    size, buffet__site_where(site));
        buffet__dbg_unlock(d);
        return buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "size plus guard bytes overflows");
    }
    pthread_mutex_lock(&d->mu);
    if (!buffet__dbg_reserve(d)) goto fail;
    base = (unsigned char *)buffet__hold(d->parent, block, buffet__dbg_block_align(align), site, &pin);
    if (!base) goto fail;
    user = base + buffet__dbg_front(d, align);
    memset(base, BUFFET__DBG_GUARD_BYTE, (size_t)(user - base));
    memset(user, BUFFET__DBG_FRESH_BYTE, size);
    memset(user + size, BUFFET__DBG_GUARD_BYTE, d->guard);
    i = buffet__dbg_hash((uintptr_t)user, d->tab_cap);
    while (d->tab[i].key > BUFFET__DBG_TOMB) i = (i + 1) & (d->tab_cap - 1);
    r = &d->tab[i];
    if (r->key == BUFFET__DBG_EMPTY) d->tab_used++;
    r->key = (uintptr_t)user;
    r->size = size;
    r->align = align;
    r->seq = ++d->seq;
    r->site = site;
    r->free_site = BUFFET_NO_SITE;
    r->pin = pin;
    r->freed = false;
    d->st.live_count++;
    d->st.live_bytes += size;
    d->st.total_count++;
    d->st.total_bytes += size;
    if (d->st.live_count > d->st.peak_count) d->st.peak_count = d->st.live_count;
    if (d->st.live_bytes > d->st.peak_bytes) d->st.peak_bytes = d->st.live_bytes;
    buffet__dbg_unlock(d);
    return user;
fail:
    why = buffet_alloc_error(&text);
    d->st.failed_allocs++;
    BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_WARN, why, "allocation of %zu bytes at %s in %s() failed: %s (%s)",
                size, buffet__site_where(site), buffet__site_func(site), text, buffet_result_str(why));
    buffet__dbg_unlock(d);
    return buffet_alloc_fail(why, text);   /* the logger may have failed allocations of its own */
}

/* The live record of ptr, or NULL after logging why not. Called locked. */
static buffet__dbg_rec *buffet__dbg_live(buffet_debug *d, void *ptr, const char *what, buffet_site site) {
    buffet__dbg_rec *r = buffet__dbg_find(d, (uintptr_t)ptr);
    if (!r) {
        buffet__dbg_error(d, BUFFET_ERR_FOREIGN, &d->st.foreign_frees);
        BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN,
                    "%s of %p at %s in %s(): not allocated by this debug allocator (or freed long ago)",
                    what, ptr, buffet__site_where(site), buffet__site_func(site));
        return NULL;
    }
    if (r->freed) {
        buffet__dbg_error(d, BUFFET_ERR_DOUBLE_FREE, &d->st.double_frees);
        BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_ERROR, BUFFET_ERR_DOUBLE_FREE,
                    "%s of %p at %s in %s(): already freed at %s in %s() (%zu bytes allocated at %s in %s())",
                    what, ptr, buffet__site_where(site), buffet__site_func(site),
                    buffet__site_where(r->free_site), buffet__site_func(r->free_site),
                    r->size, buffet__site_where(r->site), buffet__site_func(r->site));
        return NULL;
    }
    return r;
}

static void buffet__dbg_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    buffet_debug *d = (buffet_debug *)self;
    buffet__dbg_rec *r;
    pthread_mutex_lock(&d->mu);
    r = buffet__dbg_live(d, ptr, "free", site);
    if (!r) goto out;
    if (r->size != size || r->align != align) {
        /* The record knows the truth, so the block is still released correctly. */
        buffet__dbg_error(d, BUFFET_ERR_MISMATCH, &d->st.mismatched_frees);
        BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_ERROR, BUFFET_ERR_MISMATCH,
                    "free of %p at %s in %s() with size %zu align %zu; allocated at %s in %s() with size %zu align %zu",
                    ptr, buffet__site_where(site), buffet__site_func(site), size, align,
                    buffet__site_where(r->site), buffet__site_func(r->site), r->size, r->align);
    }
    buffet__dbg_check_guards(d, r);
    d->st.live_count--;
    d->st.live_bytes -= r->size;
    d->st.free_count++;
    r->free_site = site;
    if (d->q_max_count == 0 || r->size > d->q_max_bytes) {
        buffet__dbg_release(d, r);
        goto out;
    }
    while (d->q_len == d->q_max_count || d->q_bytes + r->size > d->q_max_bytes) buffet__dbg_evict_one(d);
    memset(ptr, BUFFET__DBG_FREED_BYTE, r->size);
    BUFFET__POISON(ptr, r->size);
    r->freed = true;
    d->q[(d->q_head + d->q_len) % d->q_max_count] = r->key;
    d->q_len++;
    d->q_bytes += r->size;
out:
    buffet__dbg_unlock(d);
}

static bool buffet__dbg_resize(void *self, void *ptr, size_t old_size, size_t new_size, size_t align) {
    buffet_debug *d = (buffet_debug *)self;
    buffet__dbg_rec *r;
    size_t old_block = 0, new_block = 0;
    bool ok = false;
    pthread_mutex_lock(&d->mu);
    r = buffet__dbg_live(d, ptr, "resize", BUFFET_NO_SITE);
    if (!r) goto out;
    if (r->size != old_size || r->align != align) {
        buffet__dbg_error(d, BUFFET_ERR_MISMATCH, &d->st.mismatched_frees);
        BUFFET__LOGQ(&d->pending, &d->log, BUFFET_LOG_ERROR, BUFFET_ERR_MISMATCH,
                    "resize of %p from size %zu align %zu; allocated at %s in %s() with size %zu align %zu",
                    ptr, old_size, align, buffet__site_where(r->site),
                    buffet__site_func(r->site), r->size, r->align);
        goto out;
    }
    if (!buffet__dbg_check_guards(d, r)) goto out;
    if (!buffet__dbg_block_size(d, new_size, align, &new_block)) goto out;
    buffet__dbg_block_size(d, old_size, align, &old_block);
    if (!buffet_resize(d->parent, buffet__dbg_base(d, r->key, align), old_block, new_block,
                       buffet__dbg_block_align(align)))
        goto out;
    if (new_size > old_size) memset((unsigned char *)ptr + old_size, BUFFET__DBG_FRESH_BYTE, new_size - old_size);
    memset((unsigned char *)ptr + new_size, BUFFET__DBG_GUARD_BYTE, d->guard);
    d->st.live_bytes = d->st.live_bytes - old_size + new_size;
    if (d->st.live_bytes > d->st.peak_bytes) d->st.peak_bytes = d->st.live_bytes;
    r->size = new_size;
    ok = true;
out:
    buffet__dbg_unlock(d);
    return ok;
}

/* The parent's thread safety and resizing; blocks live until freed (a frame parent's pinned),
   and the bookkeeping must be thread-safe too for the whole to be. */
static uint32_t buffet__dbg_contract(const void *self) {
    const buffet_debug *d = (const buffet_debug *)self;
    uint32_t c = buffet_allocator_contract(d->parent);
    uint32_t safe = c & buffet_allocator_contract(d->bookkeeping) & BUFFET_CONTRACT_THREAD_SAFE;
    return BUFFET_CONTRACT_UNTIL_FREED | safe | (c & BUFFET_CONTRACT_RESIZE);
}

static const buffet_allocator_vtable buffet__dbg_vtable = {
    buffet__dbg_alloc, buffet__dbg_resize, buffet__dbg_free, NULL, buffet__dbg_contract, NULL
};

BUFFET_API buffet_result buffet_debug_create_at(buffet_debug **out, const buffet_debug_desc *desc, buffet_site site) {
    buffet_debug_desc dd;
    buffet_debug *d;
    buffet_result r;
    buffet__sited sited;
    buffet_logger refusals;
    size_t q_cap;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    memset(&dd, 0, sizeof dd);
    if (desc) dd = *desc;
    if (!dd.log.fn) dd.log.fn = buffet_log_stderr;
    refusals = buffet__sited_logger(&sited, dd.log, site);
    if (dd.guard_size == 0) dd.guard_size = 16;
    if (dd.guard_size % 8 != 0 || dd.guard_size > 4096) {
        BUFFET__LOG(&refusals, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "debug allocator: guard_size %zu must be a multiple of 8 and at most 4096", dd.guard_size);
        return BUFFET_ERR_INVALID;
    }
    if (dd.quarantine_count == 0) dd.quarantine_count = 64;
    if (dd.quarantine_count == SIZE_MAX) dd.quarantine_count = 0;
    if (dd.quarantine_bytes == 0) dd.quarantine_bytes = (size_t)1 << 20;
    if ((r = buffet__check(dd.parent, BUFFET_NEED_UNTIL_FREED, true, "debug allocator (parent)", &refusals)) != BUFFET_OK ||
        (r = buffet__check(dd.bookkeeping, BUFFET_NEED_UNTIL_FREED, false, "debug allocator (bookkeeping)", &refusals)) != BUFFET_OK)
        return r;
    d = (buffet_debug *)buffet_alloc(dd.bookkeeping, sizeof *d, BUFFET_ALIGNOF(buffet_debug), site);
    if (!d) goto nomem;
    memset(d, 0, sizeof *d);
    d->parent = dd.parent;
    d->bookkeeping = dd.bookkeeping;
    d->guard = dd.guard_size;
    d->q_max_count = dd.quarantine_count;
    d->q_max_bytes = dd.quarantine_bytes;
    d->log = dd.log;
    d->tab_cap = 64;
    d->tab = (buffet__dbg_rec *)buffet_alloc_array(dd.bookkeeping, d->tab_cap, sizeof(buffet__dbg_rec),
                                                   BUFFET_ALIGNOF(buffet__dbg_rec), site);
    q_cap = d->q_max_count;
    /* not after a failed table: a later success would clear the reason read below */
    d->q = d->tab && q_cap ? (uintptr_t *)buffet_alloc_array(dd.bookkeeping, q_cap, sizeof(uintptr_t), BUFFET_ALIGNOF(uintptr_t), site) : NULL;
    if (!d->tab || (q_cap && !d->q)) {
        r = buffet_alloc_error(NULL);
        BUFFET_DELETE_ARRAY(dd.bookkeeping, uintptr_t, d->q, q_cap);
        BUFFET_DELETE_ARRAY(dd.bookkeeping, buffet__dbg_rec, d->tab, d->tab_cap);
        BUFFET_DELETE(dd.bookkeeping, buffet_debug, d);
        goto fail;
    }
    memset(d->tab, 0, d->tab_cap * sizeof *d->tab);
    pthread_mutex_init(&d->mu, NULL);
    *out = d;
    return BUFFET_OK;
nomem:
    r = buffet_alloc_error(NULL);
fail:
    BUFFET__LOG(&refusals, BUFFET_LOG_ERROR, r, "debug allocator: its bookkeeping allocator failed");
    return r;
}

BUFFET_API void buffet_debug_destroy(buffet_debug *d) {
    buffet_allocator bk;
    buffet__logq q;
    if (!d) return;
    bk = d->bookkeeping;
    while (d->q_len) buffet__dbg_evict_one(d);
    memcpy(&q, &d->pending, sizeof q);
    pthread_mutex_destroy(&d->mu);
    BUFFET_DELETE_ARRAY(bk, uintptr_t, d->q, d->q_max_count);
    BUFFET_DELETE_ARRAY(bk, buffet__dbg_rec, d->tab, d->tab_cap);
    {
        buffet_logger log = d->log;
        BUFFET_DELETE(bk, buffet_debug, d);
        buffet__logq_flush(&q, &log);   /* damage found in the quarantine's last blocks */
    }
}

BUFFET_API buffet_allocator buffet_debug_allocator(buffet_debug *d) {
    return buffet_allocator_of(d, &buffet__dbg_vtable);
}

BUFFET_API buffet_result buffet_debug_check(buffet_debug *d) {
    size_t i;
    bool ok = true;
    if (!d) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&d->mu);
    for (i = 0; i < d->tab_cap; i++) {
        const buffet__dbg_rec *r = &d->tab[i];
        if (r->key <= BUFFET__DBG_TOMB) continue;
        if (!buffet__dbg_check_guards(d, r)) ok = false;
        if (r->freed && !buffet__dbg_check_poison(d, r)) ok = false;
    }
    buffet__dbg_unlock(d);
    return ok ? BUFFET_OK : BUFFET_ERR_CORRUPT;
}

/* Sites compare by text: two translation units may spell one file:line in two string literals. */
static int buffet__dbg_site_text_cmp(const buffet__dbg_rec *a, const buffet__dbg_rec *b) {
    int c = strcmp(buffet__site_where(a->site), buffet__site_where(b->site));
    return c ? c : strcmp(buffet__site_func(a->site), buffet__site_func(b->site));
}
/* By site, then in allocation order, so each site's line names its oldest block. */
static int buffet__dbg_site_cmp(const void *x, const void *y) {
    const buffet__dbg_rec *a = (const buffet__dbg_rec *)x, *b = (const buffet__dbg_rec *)y;
    int c = buffet__dbg_site_text_cmp(a, b);
    return c ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

BUFFET_API size_t buffet_debug_report_leaks(buffet_debug *d, FILE *out) {
    size_t i, j, n = 0, bytes = 0, k = 0, sites = 0;
    buffet__dbg_rec *leaks;
    if (!d) return 0;
    pthread_mutex_lock(&d->mu);
    for (i = 0; i < d->tab_cap; i++) n += d->tab[i].key > BUFFET__DBG_TOMB && !d->tab[i].freed;
    /* A copy of the records, grouped by site after the lock is released, when the logger may run. */
    leaks = n ? (buffet__dbg_rec *)malloc(n * sizeof *leaks) : NULL;
    for (i = 0; i < d->tab_cap; i++) {
        const buffet__dbg_rec *r = &d->tab[i];
        if (r->key <= BUFFET__DBG_TOMB || r->freed) continue;
        bytes += r->size;
        if (leaks) leaks[k++] = *r;
    }
    buffet__dbg_unlock(d);
    if (leaks) qsort(leaks, k, sizeof *leaks, buffet__dbg_site_cmp);
    for (i = 0; i < k; i = j) {
        size_t count = 0, site_bytes = 0;
        char line[512];
        for (j = i; j < k && buffet__dbg_site_text_cmp(&leaks[i], &leaks[j]) == 0; j++) {
            count++;
            site_bytes += leaks[j].size;
        }
        sites++;
        snprintf(line, sizeof line, "leak: %zu bytes in %zu block%s (the first at %p), allocated at %s in %s()",
                 site_bytes, count, count == 1 ? "" : "s", (void *)leaks[i].key,
                 buffet__site_where(leaks[i].site), buffet__site_func(leaks[i].site));
        if (out) fprintf(out, "buffet: %s\n", line);
        else BUFFET__LOG(&d->log, BUFFET_LOG_WARN, BUFFET_ERR_LEAK, "%s", line);
    }
    if (n && !leaks) {   /* no memory to group them: the totals still tell */
        if (out) fprintf(out, "buffet: leak: %zu blocks, %zu bytes (no memory to list them)\n", n, bytes);
        else BUFFET__LOG(&d->log, BUFFET_LOG_WARN, BUFFET_ERR_LEAK, "leak: %zu blocks, %zu bytes (no memory to list them)", n, bytes);
    }
    free(leaks);
    if (out) {
        if (n) fprintf(out, "buffet: %zu leak%s, %zu bytes in all, from %zu site%s\n", n, n == 1 ? "" : "s", bytes,
                       sites, sites == 1 ? "" : "s");
        else fprintf(out, "buffet: no leaks\n");
    }
    return n;
}

BUFFET_API buffet_debug_stats buffet_debug_get_stats(buffet_debug *d) {
    buffet_debug_stats s;
    memset(&s, 0, sizeof s);
    if (!d) return s;
    pthread_mutex_lock(&d->mu);
    s = d->st;
    buffet__dbg_unlock(d);
    return s;
}

BUFFET_API buffet_result buffet_debug_last_error(buffet_debug *d) {
    buffet_result r;
    if (!d) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&d->mu);
    r = d->last;
    d->last = BUFFET_OK;
    buffet__dbg_unlock(d);
    return r;
}

/* >>fixed-buffer allocator */
#define BUFFET__FIXED_NONE SIZE_MAX

BUFFET_API buffet_result buffet_fixed_init(buffet_fixed *f, const buffet_fixed_desc *desc) {
    if (!f) return BUFFET_ERR_INVALID;
    memset(f, 0, sizeof *f);
    f->last_off = BUFFET__FIXED_NONE;
    if (!desc || (!desc->mem && desc->cap)) return BUFFET_ERR_INVALID;
    f->base = (unsigned char *)desc->mem;
    f->cap = desc->cap;
    f->log = desc->log;
    return BUFFET_OK;
}

BUFFET_API void buffet_fixed_deinit(buffet_fixed *f) {
    if (!f) return;
    memset(f, 0, sizeof *f);
    f->last_off = BUFFET__FIXED_NONE;
}

static void *buffet__fixed_alloc(void *self, size_t size, size_t align, buffet_site site) {
    buffet_fixed *f = (buffet_fixed *)self;
    uintptr_t start = (uintptr_t)f->base + f->used, aligned;
    size_t off;
    (void)site;
    if (!buffet_align_up(start, align, &aligned) || (off = (size_t)(aligned - (uintptr_t)f->base)) > f->cap ||
        size > f->cap - off)
        return buffet_alloc_fail(BUFFET_ERR_EXHAUSTED, "the fixed buffer is full");
    f->last_off = off;
    f->used = off + size;
    return f->base + off;
}

/* Only the last allocation may change size, since nothing lies after it. */
static bool buffet__fixed_is_last(const buffet_fixed *f, const void *ptr, size_t size) {
    return f->last_off != BUFFET__FIXED_NONE && (const unsigned char *)ptr == f->base + f->last_off &&
           f->last_off + size == f->used;
}

/* The last block grows and shrinks; any other may shrink, its tail waiting for the reset. */
static bool buffet__fixed_resize(void *self, void *ptr, size_t old_size, size_t new_size, size_t align) {
    buffet_fixed *f = (buffet_fixed *)self;
    const unsigned char *p = (const unsigned char *)ptr;
    (void)align;
    if (buffet__fixed_is_last(f, ptr, old_size)) {
        if (new_size > f->cap - f->last_off) return false;
        f->used = f->last_off + new_size;
        return true;
    }
    return new_size < old_size && p >= f->base && p < f->base + f->used && old_size <= (size_t)(f->base + f->used - p);
}

static void buffet__fixed_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    buffet_fixed *f = (buffet_fixed *)self;
    (void)align;
    /* by integers: f->base may be NULL (no memory), where base + cap is undefined */
    if (!f->base || (uintptr_t)ptr - (uintptr_t)f->base >= f->cap) {
        BUFFET__LOG(&f->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN,
                    "fixed allocator: free of %p at %s: not in this buffer", ptr, buffet__site_where(site));
        return;
    }
    if (buffet__fixed_is_last(f, ptr, size)) {
        f->used = f->last_off;
        f->last_off = BUFFET__FIXED_NONE;
    }
}

static uint32_t buffet__fixed_contract(const void *self) {
    (void)self;
    return BUFFET_CONTRACT_UNTIL_FREED | BUFFET_CONTRACT_RESIZE;
}

static const buffet_allocator_vtable buffet__fixed_vtable = {
    buffet__fixed_alloc, buffet__fixed_resize, buffet__fixed_free, NULL, buffet__fixed_contract, NULL
};

BUFFET_API buffet_allocator buffet_fixed_allocator(buffet_fixed *f) {
    return buffet_allocator_of(f, &buffet__fixed_vtable);
}

BUFFET_API void buffet_fixed_reset(buffet_fixed *f) {
    if (!f) return;
    f->used = 0;
    f->last_off = BUFFET__FIXED_NONE;
}

/* The n-th output of splitmix64 seeded with seed: a draw that needs no state but n, so threads
   share only a counter. Shared with the siblings (buffet_net.h's fault layer). */
static uint64_t buffet__draw(uint64_t seed, uint64_t n) {
    uint64_t h = seed + n * 0x9E3779B97F4A7C15ull;
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

/* >>failing allocator */
/* Does attempt n (1-based) fail? Stateless in n, so threads need to share only the counter. */
static bool buffet__failing_says_no(const buffet_failing *f, uint64_t n) {
    if (f->fail_at && (n == f->fail_at || (f->fail_after && n > f->fail_at))) return true;
    if (n <= f->skip) return false;
    if (f->every && (n - f->skip) % f->every == 0) return true;
    return f->per_million && buffet__draw(f->seed, n) % 1000000u < f->per_million;
}

static bool buffet__failing_attempt(buffet_failing *f) {
    /* relaxed: the counter only numbers the attempts; nothing is published through it */
    if (!buffet__failing_says_no(f, BUFFET__FETCH_ADD(&f->allocs, 1, BUFFET__RELAXED) + 1)) return true;
    BUFFET__FETCH_ADD(&f->failures, 1, BUFFET__RELAXED);   /* a counter read after the fact: relaxed */
    return false;
}

static void *buffet__failing_alloc(void *self, size_t size, size_t align, buffet_site site) {
    buffet_failing *f = (buffet_failing *)self;
    if (!buffet__failing_attempt(f)) return buffet_alloc_fail(BUFFET_ERR_NOMEM, "the failing allocator refused it, as asked");
    return buffet_alloc(f->parent, size, align, site);
}

/* Resizes pass through untouched: a refused in-place growth is no failure a caller sees
   (buffet_realloc moves the block instead), and injecting one would only hide the move's. */
static bool buffet__failing_resize(void *self, void *ptr, size_t old_size, size_t new_size, size_t align) {
    return buffet_resize(((buffet_failing *)self)->parent, ptr, old_size, new_size, align);
}

static void buffet__failing_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    buffet_failing *f = (buffet_failing *)self;
    buffet_free(f->parent, ptr, size, align, site);
}

static uint32_t buffet__failing_contract(const void *self) {
    return buffet_allocator_contract(((const buffet_failing *)self)->parent);
}

/* Pins go to the parent, which made the blocks. */
static buffet_pin *buffet__failing_pin(void *self, void *ptr, size_t size) {
    buffet_allocator p = buffet__resolve(((buffet_failing *)self)->parent);
    return p.vtable->pin ? p.vtable->pin(p.self, ptr, size) : NULL;
}

static const buffet_allocator_vtable buffet__failing_vtable = {
    buffet__failing_alloc, buffet__failing_resize, buffet__failing_free, NULL, buffet__failing_contract, buffet__failing_pin
};

BUFFET_API void buffet_failing_init(buffet_failing *f, buffet_allocator parent, uint64_t fail_at,
                                    bool fail_after) {
    if (!f) return;
    memset(f, 0, sizeof *f);
    f->parent = parent;
    f->fail_at = fail_at;
    f->fail_after = fail_after;
}

BUFFET_API void buffet_failing_deinit(buffet_failing *f) {
    if (!f) return;
    memset(f, 0, sizeof *f);
    f->parent = buffet_null_allocator();
}

BUFFET_API buffet_allocator buffet_failing_allocator(buffet_failing *f) {
    return buffet_allocator_of(f, &buffet__failing_vtable);
}

/* >>adapter: a block is [header | user bytes]; the header is as wide as the block's alignment
   (at least two words), its last word the size and the word before it the header's width, so a
   free needs neither. */
BUFFET_API buffet_result buffet_adapter_init(buffet_adapter *ad, buffet_allocator parent, size_t align) {
    buffet_result r;
    if (!ad) return BUFFET_ERR_INVALID;
    memset(ad, 0, sizeof *ad);
    ad->parent = buffet_null_allocator();   /* what a failed init leaves: refuses everything */
    ad->align = 16;
    if (align == 0) align = 16;
    if (!buffet_is_pow2(align) || align > 4096) return BUFFET_ERR_INVALID;
    if ((r = buffet__check(parent, BUFFET_NEED_UNTIL_FREED, false, "adapter", NULL)) != BUFFET_OK) return r;
    ad->parent = parent;
    ad->align = align;
    ad->site = buffet_site_make("buffet_adapter", "a library's allocation hook");
    return BUFFET_OK;
}

BUFFET_API void buffet_adapter_deinit(buffet_adapter *ad) {
    if (!ad) return;
    ad->parent = buffet_null_allocator();
}

static size_t *buffet__adapter_slots(const void *ptr) { return (size_t *)ptr - 2; }   /* [width | tag, size] */
static size_t buffet__adapter_width(size_t align) { return align < 2 * sizeof(size_t) ? 2 * sizeof(size_t) : align; }
/* The header's first word is the width (16..4096) with a tag of the block's own address above
   it, so a stray pointer or a freed (tag wiped) block fails the check instead of lending its
   bytes as a size. */
static size_t buffet__adapter_tag(const void *ptr) {
    return (size_t)(((uint64_t)(uintptr_t)ptr * 0x9E3779B97F4A7C15ull) >> 32) << 16;
}
/* The width of ptr's header, or 0 (logged) when ptr is no live block of the adapter. */
static size_t buffet__adapter_check(buffet_adapter *ad, const void *ptr, const char *what) {
    size_t w = buffet__adapter_slots(ptr)[0];
    if ((w & ~(size_t)0xFFFF) == buffet__adapter_tag(ptr) && (w &= 0xFFFF) >= 16 && w <= 4096 && buffet_is_pow2(w))
        return w;
    BUFFET__LOG(&ad->log, BUFFET_LOG_ERROR, BUFFET_ERR_FOREIGN,
                "adapter: %s of %p at %s: not a live block of this adapter (freed already, or never its own)",
                what, ptr, buffet__site_where(ad->site));
    return 0;
}

static void *buffet__adapter_alloc(buffet_adapter *ad, size_t size, size_t align, buffet_site site) {
    size_t total, width = buffet__adapter_width(align);
    unsigned char *p;
    if (!ad || size == 0) return NULL;
    if (!buffet_add(size, width, &total)) return buffet_alloc_fail(BUFFET_ERR_OVERFLOW, "size plus the adapter's header overflows");
    p = (unsigned char *)buffet_alloc(ad->parent, total, width, site);
    if (!p) return NULL;
    p += width;
    buffet__adapter_slots(p)[0] = width | buffet__adapter_tag(p);
    buffet__adapter_slots(p)[1] = size;
    return p;
}

BUFFET_API void *buffet_adapter_malloc(buffet_adapter *ad, size_t size) {
    return ad ? buffet__adapter_alloc(ad, size, ad->align, ad->site) : NULL;
}

BUFFET_API void *buffet_adapter_calloc(buffet_adapter *ad, size_t count, size_t size) {
    size_t total;
    void *p;
    if (!buffet_mul(count, size, &total)) return NULL;
    p = buffet_adapter_malloc(ad, total);
    if (p) memset(p, 0, total);
    return p;
}

BUFFET_API void *buffet_adapter_realloc(buffet_adapter *ad, void *ptr, size_t size) {
    size_t old, width, total;
    unsigned char *p;
    if (!ad) return NULL;
    if (!ptr) return buffet_adapter_malloc(ad, size);
    if (size == 0) {
        buffet_adapter_free(ad, ptr);
        return NULL;
    }
    if ((width = buffet__adapter_check(ad, ptr, "realloc")) == 0) return buffet_alloc_fail(BUFFET_ERR_FOREIGN, "not a block of this adapter");
    old = buffet__adapter_slots(ptr)[1];
    if (!buffet_add(size, width, &total)) return NULL;
    p = (unsigned char *)buffet_realloc(ad->parent, (unsigned char *)ptr - width, old + width, total, width, ad->site);
    if (!p) return NULL;
    p += width;
    buffet__adapter_slots(p)[0] = width | buffet__adapter_tag(p);   /* it may have moved */
    buffet__adapter_slots(p)[1] = size;
    return p;
}

BUFFET_API void buffet_adapter_free(buffet_adapter *ad, void *ptr) {
    size_t width;
    if (!ad || !ptr || (width = buffet__adapter_check(ad, ptr, "free")) == 0) return;
    buffet__adapter_slots(ptr)[0] = 0;   /* a second free of it fails the check */
    buffet_free(ad->parent, (unsigned char *)ptr - width, buffet__adapter_slots(ptr)[1] + width, width, ad->site);
}

BUFFET_API size_t buffet_adapter_size(const void *ptr) { return ptr ? buffet__adapter_slots(ptr)[1] : 0; }

/* The sized face: the same blocks, so either face may free what the other allocated. */
static void *buffet__adapter_vt_alloc(void *self, size_t size, size_t align, buffet_site site) {
    buffet_adapter *ad = (buffet_adapter *)self;
    if (align > 4096) return buffet_alloc_fail(BUFFET_ERR_INVALID, "the adapter aligns to 4096 bytes at most");
    return buffet__adapter_alloc(ad, size, align > ad->align ? align : ad->align, site);
}
static void buffet__adapter_vt_free(void *self, void *ptr, size_t size, size_t align, buffet_site site) {
    (void)size; (void)align; (void)site;
    buffet_adapter_free((buffet_adapter *)self, ptr);
}
static uint32_t buffet__adapter_contract(const void *self) {
    return buffet_allocator_contract(((const buffet_adapter *)self)->parent) & ~(uint32_t)BUFFET_CONTRACT_RESIZE;
}
static const buffet_allocator_vtable buffet__adapter_vtable = {
    buffet__adapter_vt_alloc, NULL, buffet__adapter_vt_free, NULL, buffet__adapter_contract, NULL
};

BUFFET_API buffet_allocator buffet_adapter_allocator(buffet_adapter *ad) {
    return buffet_allocator_of(ad, &buffet__adapter_vtable);
}

BUFFET_API void *buffet_adapter_zalloc(void *opaque, unsigned items, unsigned size) {
    return buffet_adapter_malloc((buffet_adapter *)opaque, (size_t)items * size);
}

BUFFET_API void buffet_adapter_zfree(void *opaque, void *ptr) { buffet_adapter_free((buffet_adapter *)opaque, ptr); }

/* >>buffers */
BUFFET_API void buffet_wipe(void *p, size_t n) {
    if (!p || !n) return;
    memset(p, 0, n);
    /* The asm claims to read the memory behind p, so the stores before it are not dead. */
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* A secure mapping stays in RAM and out of core dumps: secrets must reach neither swap nor a
   crash report. */
static buffet_result buffet__buf_secure(const buffet_buf_desc *d, void *p, size_t len) {
    int e;
    if (!(d->flags & BUFFET_BUF_SECURE)) return BUFFET_OK;
    madvise(p, len, MADV_DONTDUMP);
    if (mlock(p, len) == 0) return BUFFET_OK;
    e = errno;
    BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, e == EPERM || e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM,
                "buffer: cannot lock %zu secure bytes in memory: %s (the limit is RLIMIT_MEMLOCK, ulimit -l)",
                len, strerror(e));
    errno = e;
    return e == EPERM || e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM;
}

static void buffet__buf_free_header(buffet_buf *b) {
    buffet__unhold(b->allocator, b, sizeof *b, BUFFET_ALIGNOF(buffet_buf), b->pin, BUFFET_SITE);
}

static void buffet__buf_destroy_heap(buffet_buf *b) {
    size_t off = (size_t)((unsigned char *)b->data - (unsigned char *)b);
    buffet__unhold(b->allocator, b, off + b->size, b->align, b->pin, BUFFET_SITE);
}

/* The end of a buffer mapped from another process's fd: its bytes are the sender's to wipe,
   and the sender may still be using them. munmap drops any mlock with the pages. */
static void buffet__buf_destroy_mapped(buffet_buf *b) {
    munmap(b->data, b->map_size);
    if (b->fd >= 0) close(b->fd);
    buffet__buf_free_header(b);
}

static void buffet__buf_destroy_map(buffet_buf *b) {
    if (b->flags & BUFFET_BUF_SECURE) buffet_wipe(b->data, b->size);
    buffet__buf_destroy_mapped(b);
}

static void buffet__buf_destroy_wrap(buffet_buf *b) {
    if (b->flags & BUFFET_BUF_SECURE) buffet_wipe(b->data, b->size);
    if (b->release) b->release(b->user, b->data, b->size);
    buffet__buf_free_header(b);
}

/* Why an allocation for a buffer failed, logged with the allocator's own reason. */
static buffet_result buffet__buf_alloc_failed(const buffet_logger *log, const char *what, size_t bytes) {
    const char *why;
    buffet_result r = buffet_alloc_error(&why);
    BUFFET__LOG(log, BUFFET_LOG_ERROR, r, "buffer: allocating %zu bytes for %s failed: %s", bytes, what, why);
    buffet_alloc_fail(r, why);   /* the logger may have allocated meanwhile */
    return r;
}

/* A zeroed header with one reference, held from a (pinned when a is a frame allocator). */
static buffet_buf *buffet__buf_header(buffet_allocator a, size_t block, size_t align, uint32_t kind, size_t size,
                                      uint32_t flags, void (*destroy)(buffet_buf *), buffet_site site) {
    buffet_pin *pin;
    buffet_buf *b = (buffet_buf *)buffet__hold(a, block, align, site, &pin);
    if (!b) return NULL;
    memset(b, 0, sizeof *b);
    b->refcount = 1;
    b->kind = kind;
    b->size = size;
    b->flags = flags;
    b->fd = -1;
    b->destroy = destroy;
    b->allocator = a;
    b->pin = pin;
    return b;
}

static buffet_result buffet__buf_heap(buffet_buf **out, const buffet_buf_desc *d, buffet_site site) {
    size_t align = d->align ? d->align : 64, off, total;
    buffet_buf *b;
    if (!buffet_is_pow2(align)) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "buffer: align %zu is not a power of two", align);
        return BUFFET_ERR_INVALID;
    }
    if (d->flags & BUFFET_BUF_SECURE) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID,
                    "buffer: a HEAP buffer cannot be SECURE (mlock locks whole pages shared with other blocks): use MMAP");
        return BUFFET_ERR_INVALID;
    }
    if (align < BUFFET_ALIGNOF(buffet_buf)) align = BUFFET_ALIGNOF(buffet_buf);
    if (!buffet_align_up(sizeof(buffet_buf), align, &off) || !buffet_add(off, d->size, &total)) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "buffer: size %zu overflows", d->size);
        return BUFFET_ERR_OVERFLOW;
    }
    /* One block holds the header and the data: one allocation, one failure point. */
    b = buffet__buf_header(d->allocator, total, align, BUFFET_BUF_HEAP, d->size, d->flags, buffet__buf_destroy_heap, site);
    if (!b) return buffet__buf_alloc_failed(&d->log, "its header and data", total);
    b->align = align;
    b->data = (unsigned char *)b + off;
    if (d->flags & BUFFET_BUF_ZERO) memset(b->data, 0, d->size);
    *out = b;
    return BUFFET_OK;
}

/* mmap that maps huge-page failures to a clean error. */
static buffet_result buffet__mmap(const buffet_buf_desc *d, size_t len, int mflags, int fd, void **out) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, mflags, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        if ((d->flags & BUFFET_BUF_HUGETLB) && (e == ENOMEM || e == EINVAL)) {
            BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_UNSUPPORTED,
                        "buffer: no 2 MiB huge pages available for %zu bytes (reserve some in /proc/sys/vm/nr_hugepages)", len);
            return BUFFET_ERR_UNSUPPORTED;
        }
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM,
                    "buffer: mmap of %zu bytes failed: %s", len, strerror(e));
        errno = e;
        return e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM;
    }
    *out = p;
    return BUFFET_OK;
}

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

static buffet_result buffet__buf_mmap(buffet_buf *b, const buffet_buf_desc *d) {
    size_t unit = (d->flags & BUFFET_BUF_HUGETLB) ? BUFFET__HUGE_PAGE : BUFFET__PAGE, len, reserve;
    int mflags = MAP_PRIVATE | MAP_ANONYMOUS | ((d->flags & BUFFET_BUF_POPULATE) ? MAP_POPULATE : 0);
    bool thp = !(d->flags & (BUFFET_BUF_HUGETLB | BUFFET_BUF_NO_THP)) && d->size >= BUFFET__HUGE_PAGE;
    unsigned char *raw, *p;
    void *m = NULL;
    buffet_result r;
    if (!buffet_align_up(d->size, unit, &len) || !buffet_add(len, thp ? BUFFET__HUGE_PAGE : 0, &reserve)) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "buffer: %zu bytes overflow when rounded up to pages", d->size);
        return BUFFET_ERR_OVERFLOW;
    }
    if (d->flags & BUFFET_BUF_HUGETLB) mflags |= MAP_HUGETLB | MAP_HUGE_2MB;
    r = buffet__mmap(d, thp ? reserve : len, thp ? (mflags & ~MAP_POPULATE) : mflags, -1, &m);
    if (r != BUFFET_OK) return r;
    p = raw = (unsigned char *)m;
    if (thp) {
        /* Transparent huge pages need 2 MiB-aligned ranges: trim the reservation to one. */
        p = (unsigned char *)(((uintptr_t)raw + BUFFET__HUGE_PAGE - 1) & ~(uintptr_t)(BUFFET__HUGE_PAGE - 1));
        if (p > raw) munmap(raw, (size_t)(p - raw));
        if (raw + reserve > p + len) munmap(p + len, (size_t)(raw + reserve - (p + len)));
        madvise(p, len, MADV_HUGEPAGE);
        if (d->flags & BUFFET_BUF_POPULATE) madvise(p, len, MADV_POPULATE_WRITE);
    }
    if ((r = buffet__buf_secure(d, p, len)) != BUFFET_OK) {
        munmap(p, len);
        return r;
    }
    b->data = p;
    b->map_size = len;
    return BUFFET_OK;
}

static buffet_result buffet__buf_shm(buffet_buf *b, const buffet_buf_desc *d) {
    bool huge = (d->flags & BUFFET_BUF_HUGETLB) != 0;
    size_t file_size = d->size, len;
    unsigned mfd = MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0u);
    int fd, e;
    void *m = NULL;
    buffet_result r;
    if ((huge && !buffet_align_up(d->size, BUFFET__HUGE_PAGE, &file_size)) ||
        !buffet_align_up(file_size, BUFFET__PAGE, &len) || file_size > (size_t)INT64_MAX) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_OVERFLOW, "buffer: %zu bytes of shared memory overflow when rounded up to pages", d->size);
        return BUFFET_ERR_OVERFLOW;
    }
    fd = memfd_create(d->name ? d->name : "buffet", mfd);
    if (fd < 0) {
        e = errno;
        r = huge && (e == EINVAL || e == ENOENT) ? BUFFET_ERR_UNSUPPORTED : BUFFET_ERR_SYSTEM;
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, r, "buffer: memfd_create failed: %s", strerror(e));
        errno = e;
        return r;
    }
    /* Owner-only, whatever the umask: the fd is passed on purpose, never found by path. Sealed
       so a process that maps it can trust its size (nobody can shrink it under them), and the
       seals themselves are final. */
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)file_size) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        e = errno;
        close(fd);
        r = e == ENOMEM || e == ENOSPC ? (huge ? BUFFET_ERR_UNSUPPORTED : BUFFET_ERR_NOMEM) : BUFFET_ERR_SYSTEM;
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, r, "buffer: sizing shared memory to %zu bytes failed: %s", file_size, strerror(e));
        errno = e;
        return r;
    }
    r = buffet__mmap(d, len, MAP_SHARED | ((d->flags & BUFFET_BUF_POPULATE) ? MAP_POPULATE : 0), fd, &m);
    if (r == BUFFET_OK && (r = buffet__buf_secure(d, m, len)) != BUFFET_OK) munmap(m, len);
    if (r != BUFFET_OK) {
        close(fd);
        return r;
    }
    b->data = m;
    b->map_size = len;
    b->size = file_size;
    b->fd = fd;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_buf_create_at(buffet_buf **out, const buffet_buf_desc *user_desc, buffet_site site) {
    buffet_buf_desc dd;
    const buffet_buf_desc *desc = &dd;
    buffet__sited sited;
    buffet_buf *b;
    buffet_result r;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    if (!user_desc) return BUFFET_ERR_INVALID;
    dd = *user_desc;
    dd.log = buffet__sited_logger(&sited, user_desc->log, site);
    if (desc->size == 0) {
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "buffer: size 0");
        return BUFFET_ERR_INVALID;
    }
    /* The last reference may go on any thread, long after this frame or scope. */
    r = buffet__check(desc->allocator, BUFFET_NEED_UNTIL_FREED | BUFFET_NEED_THREAD_SAFE, true, "buffer", &desc->log);
    if (r != BUFFET_OK) return r;
    switch (desc->kind) {
    case BUFFET_BUF_HEAP:
        return buffet__buf_heap(out, desc, site);
    case BUFFET_BUF_MMAP:
    case BUFFET_BUF_SHM:
        b = buffet__buf_header(desc->allocator, sizeof *b, BUFFET_ALIGNOF(buffet_buf), desc->kind, desc->size,
                               desc->flags, buffet__buf_destroy_map, site);
        if (!b) return buffet__buf_alloc_failed(&desc->log, "its header", sizeof *b);
        r = desc->kind == BUFFET_BUF_MMAP ? buffet__buf_mmap(b, desc) : buffet__buf_shm(b, desc);
        if (r != BUFFET_OK) {
            buffet__buf_free_header(b);
            return r;
        }
        *out = b;
        return BUFFET_OK;
    case BUFFET_BUF_WRAP:
        if (!desc->wrap_data) {
            BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "buffer: WRAP needs wrap_data");
            return BUFFET_ERR_INVALID;
        }
        b = buffet__buf_header(desc->allocator, sizeof *b, BUFFET_ALIGNOF(buffet_buf), BUFFET_BUF_WRAP, desc->size,
                               desc->flags, buffet__buf_destroy_wrap, site);
        if (!b) return buffet__buf_alloc_failed(&desc->log, "its header", sizeof *b);
        b->data = desc->wrap_data;
        b->release = desc->release;
        b->user = desc->release_user;
        *out = b;
        return BUFFET_OK;
    default:
        BUFFET__LOG(&desc->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "buffer: unknown kind %u", desc->kind);
        return BUFFET_ERR_INVALID;
    }
}

#ifndef F_SEAL_SHRINK
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif

/* fd's name as the kernel shows it ("/memfd:camera (deleted)"): who made it, for log lines. */
static void buffet__fd_name(int fd, char *name, size_t cap) {
    char path[40];
    ssize_t n;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    n = readlink(path, name, cap - 1);
    name[n > 0 ? (size_t)n : 0] = '\0';
    if (n <= 0) snprintf(name, cap, "fd %d", fd);
}

BUFFET_API buffet_result buffet_buf_map_fd_at(buffet_buf **out, int fd, const buffet_buf_desc *desc, buffet_site site) {
    static const buffet_buf_desc none = {0, 0, 0, 0, {NULL, NULL}, NULL, NULL, NULL, NULL, {NULL, NULL}};
    buffet_buf_desc dd = desc ? *desc : none;
    const buffet_buf_desc *d = &dd;
    buffet__sited sited;
    char name[96];
    struct stat st;
    buffet_buf *b;
    buffet_result r;
    void *m;
    int own, seals;
    size_t len = 0;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    dd.log = buffet__sited_logger(&sited, dd.log, site);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = fd < 0 ? EBADF : errno;
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, fd < 0 ? BUFFET_ERR_INVALID : BUFFET_ERR_SYSTEM,
                    "map_fd: fd %d: %s", fd, fd < 0 ? "no file descriptor" : strerror(e));
        errno = e;
        return fd < 0 ? BUFFET_ERR_INVALID : BUFFET_ERR_SYSTEM;
    }
    /* The size is the sender's word: bounded before anything is mapped. */
    if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_INVALID, "map_fd: fd %d is %s, not shared memory", fd,
                    S_ISREG(st.st_mode) ? "an empty file" : "not a regular file or memfd");
        return BUFFET_ERR_INVALID;
    }
    if ((uint64_t)st.st_size > SIZE_MAX - BUFFET__PAGE || (d->size && (uint64_t)st.st_size > d->size)) {
        buffet__fd_name(fd, name, sizeof name);
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_TOO_LARGE, "map_fd: %s holds %lld bytes, more than the %zu accepted",
                    name, (long long)st.st_size, d->size ? d->size : SIZE_MAX - BUFFET__PAGE);
        return BUFFET_ERR_TOO_LARGE;
    }
    /* Seals are only ever added, so one that is set now stays set for the mapping's life. */
    seals = fcntl(fd, F_GET_SEALS);
    if ((seals < 0 || !(seals & F_SEAL_SHRINK)) && !(d->flags & BUFFET_BUF_UNSEALED)) {
        buffet__fd_name(fd, name, sizeof name);
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, BUFFET_ERR_UNSAFE,
                    "map_fd: %s (%lld bytes, seals 0x%x) is not sealed against shrinking: its sender could cut it under "
                    "the mapping (SIGBUS); the sender must add F_SEAL_SHRINK, or pass BUFFET_BUF_UNSEALED",
                    name, (long long)st.st_size, seals < 0 ? 0u : (unsigned)seals);
        return BUFFET_ERR_UNSAFE;
    }
    r = buffet__check(d->allocator, BUFFET_NEED_UNTIL_FREED | BUFFET_NEED_THREAD_SAFE, true, "buffer", &d->log);
    if (r != BUFFET_OK) return r;
    buffet_align_up((size_t)st.st_size, BUFFET__PAGE, &len);
    b = buffet__buf_header(d->allocator, sizeof *b, BUFFET_ALIGNOF(buffet_buf), BUFFET_BUF_SHM, (size_t)st.st_size,
                           d->flags & (BUFFET_BUF_UNSEALED | BUFFET_BUF_SECURE), buffet__buf_destroy_mapped, site);
    if (!b) return buffet__buf_alloc_failed(&d->log, "its header", sizeof *b);
    own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        buffet__buf_free_header(b);
        return BUFFET_ERR_SYSTEM;
    }
    m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        close(own);
        buffet__buf_free_header(b);
        BUFFET__LOG(&d->log, BUFFET_LOG_ERROR, e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM,
                    "map_fd: mmap of %zu bytes failed: %s", len, strerror(e));
        errno = e;
        return e == ENOMEM ? BUFFET_ERR_NOMEM : BUFFET_ERR_SYSTEM;
    }
    if ((r = buffet__buf_secure(d, m, len)) != BUFFET_OK) {
        munmap(m, len);
        close(own);
        buffet__buf_free_header(b);
        return r;
    }
    b->data = m;
    b->map_size = len;
    b->fd = own;
    *out = b;
    return BUFFET_OK;
}

BUFFET_API buffet_buf *buffet_buf_ref(buffet_buf *b) {
    /* A new reference is made from one already held, so it needs no ordering. The count stops
       far below its type's end, so even many threads racing past the limit cannot wrap it. */
    if (!b) return NULL;
    if (BUFFET__FETCH_ADD(&b->refcount, 1, BUFFET__RELAXED) >= BUFFET_BUF_REF_MAX) {
        BUFFET__FETCH_SUB(&b->refcount, 1, BUFFET__RELAXED);   /* undoes our own add: orders nothing */
        return NULL;
    }
    return b;
}

BUFFET_API uint32_t buffet_buf_unref(buffet_buf *b) {
    uint32_t left;
    if (!b) return 0;
    /* At 1 the caller holds the only reference: nobody else can race, so skip the atomic RMW.
       The acquire load still orders the destroy after every other thread's earlier release. */
    if (BUFFET__LOAD(&b->refcount, BUFFET__ACQUIRE) == 1) {
        b->destroy(b);
        return 0;
    }
    /* Release: this holder's writes to the bytes happen before the last holder's destroy.
       Acquire: the thread that reaches 0 sees every other holder's writes before it frees. */
    left = BUFFET__FETCH_SUB(&b->refcount, 1, BUFFET__ACQ_REL) - 1;
    if (left == 0) b->destroy(b);
    return left;
}

BUFFET_API uint32_t buffet_buf_refcount(const buffet_buf *b) {
    /* A snapshot for the caller's information; nothing is read on the strength of it. */
    return b ? BUFFET__LOAD(&b->refcount, BUFFET__RELAXED) : 0;
}

static buffet_result buffet__buf_span(const buffet_buf *b, size_t off, size_t len) {
    if (!b || !b->data) return BUFFET_ERR_INVALID;
    return buffet_in_range(off, len, b->size) ? BUFFET_OK : BUFFET_ERR_RANGE;
}

BUFFET_API buffet_result buffet_buf_fill(buffet_buf *b, size_t off, size_t len, uint8_t value) {
    buffet_result r = buffet__buf_span(b, off, len);
    if (r == BUFFET_OK && len) memset((unsigned char *)b->data + off, value, len);
    return r;
}

BUFFET_API buffet_result buffet_buf_clear(buffet_buf *b, size_t off, size_t len) {
    return buffet_buf_fill(b, off, len, 0);
}

BUFFET_API buffet_result buffet_buf_write(buffet_buf *b, size_t off, const void *src, size_t len) {
    buffet_result r = buffet__buf_span(b, off, len);
    if (r == BUFFET_OK && len && !src) r = BUFFET_ERR_INVALID;
    if (r == BUFFET_OK && len) memcpy((unsigned char *)b->data + off, src, len);
    return r;
}

BUFFET_API buffet_result buffet_buf_read(const buffet_buf *b, size_t off, void *dst, size_t len) {
    buffet_result r = buffet__buf_span(b, off, len);
    if (r == BUFFET_OK && len && !dst) r = BUFFET_ERR_INVALID;
    if (r == BUFFET_OK && len) memcpy(dst, (const unsigned char *)b->data + off, len);
    return r;
}

BUFFET_API buffet_result buffet_buf_copy(buffet_buf *dst, size_t dst_off, const buffet_buf *src,
                                         size_t src_off, size_t len) {
    buffet_result r = buffet__buf_span(dst, dst_off, len);
    if (r == BUFFET_OK) r = buffet__buf_span(src, src_off, len);
    if (r == BUFFET_OK && len)
        memmove((unsigned char *)dst->data + dst_off, (const unsigned char *)src->data + src_off, len);
    return r;
}

/* >>slices */
BUFFET_API buffet_result buffet_slice_make(buffet_slice *out, buffet_buf *b, size_t off, size_t len) {
    if (!out || !b) return BUFFET_ERR_INVALID;
    if (!buffet_in_range(off, len, b->size)) return BUFFET_ERR_RANGE;
    if (!buffet_buf_ref(b)) return BUFFET_ERR_OVERFLOW;
    out->buf = b;
    out->off = off;
    out->len = len;
    return BUFFET_OK;
}

BUFFET_API void buffet_slice_release(buffet_slice *s) {
    if (!s) return;
    buffet_buf_unref(s->buf);
    memset(s, 0, sizeof *s);
}

/* >>chains */
BUFFET_API buffet_result buffet_chain_init(buffet_chain *c, buffet_allocator a) {
    buffet_result r;
    if (!c) return BUFFET_ERR_INVALID;
    memset(c, 0, sizeof *c);
    r = buffet__check(a, BUFFET_NEED_UNTIL_FREED, true, "chain", NULL);
    c->allocator = r == BUFFET_OK ? a : buffet_null_allocator();
    return r;
}

static void buffet__chain_free_array(buffet_chain *c) {
    if (c->slices)
        buffet__unhold(c->allocator, c->slices, c->cap * sizeof(buffet_slice), BUFFET_ALIGNOF(buffet_slice), c->pin, BUFFET_SITE);
}

BUFFET_API void buffet_chain_deinit(buffet_chain *c) {
    size_t i;
    if (!c) return;
    for (i = 0; i < c->count; i++) buffet_buf_unref(c->slices[c->head + i].buf);
    buffet__chain_free_array(c);
    c->slices = NULL;
    c->pin = NULL;
    c->head = c->count = c->cap = c->len = 0;
}

/* Make room for `front` slices before head and `back` after the last, moving or growing the
   array. Growth leaves spare room on the side that asked, so alternating prepends and appends
   stay amortised O(1). Fails only by allocation, leaving the chain as it was. */
static buffet_result buffet__chain_room(buffet_chain *c, size_t front, size_t back, buffet_site site) {
    size_t need, cap = c->cap, head, bytes;
    buffet_slice *arr = c->slices;
    buffet_pin *pin = c->pin;
    if (c->head >= front && cap - c->head - c->count >= back) return BUFFET_OK;
    if (!buffet_add(c->count, front, &need) || !buffet_add(need, back, &need)) return BUFFET_ERR_OVERFLOW;
    if (!arr || need > cap - cap / 4) {
        size_t grown = cap * 2 > need + need / 2 ? cap * 2 : need + need / 2;
        if (grown < 8) grown = 8;
        if (!buffet_mul(grown, sizeof(buffet_slice), &bytes)) return BUFFET_ERR_OVERFLOW;
        arr = (buffet_slice *)buffet__hold(c->allocator, bytes, BUFFET_ALIGNOF(buffet_slice), site, &pin);
        if (!arr) return buffet_alloc_error(NULL);
        cap = grown;
    }
    head = front ? front + (cap - need) / 2 : 0;
    if (c->count) memmove(arr + head, c->slices + c->head, c->count * sizeof *arr);
    if (arr != c->slices) {
        buffet__chain_free_array(c);
        c->slices = arr;
        c->cap = cap;
        c->pin = pin;
    }
    c->head = head;
    return BUFFET_OK;
}

static buffet_result buffet__chain_check_add(const buffet_chain *c, const buffet_buf *b, size_t off, size_t len) {
    size_t total;
    if (!c || !b) return BUFFET_ERR_INVALID;
    if (!buffet_in_range(off, len, b->size)) return BUFFET_ERR_RANGE;
    if (!buffet_add(c->len, len, &total)) return BUFFET_ERR_OVERFLOW;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_chain_append_at(buffet_chain *c, buffet_buf *b, size_t off, size_t len, buffet_site site) {
    buffet_result r = buffet__chain_check_add(c, b, off, len);
    buffet_slice *last;
    if (r != BUFFET_OK || len == 0) return r;
    last = c->count ? &c->slices[c->head + c->count - 1] : NULL;
    if (last && last->buf == b && last->off + last->len == off) {
        last->len += len;   /* contiguous with the last slice: extend it, one reference still */
    } else {
        if ((r = buffet__chain_room(c, 0, 1, site)) != BUFFET_OK) return r;
        if (!buffet_buf_ref(b)) return BUFFET_ERR_OVERFLOW;
        last = &c->slices[c->head + c->count++];
        last->buf = b;
        last->off = off;
        last->len = len;
    }
    c->len += len;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_chain_prepend_at(buffet_chain *c, buffet_buf *b, size_t off, size_t len, buffet_site site) {
    buffet_result r = buffet__chain_check_add(c, b, off, len);
    buffet_slice *first;
    if (r != BUFFET_OK || len == 0) return r;
    first = c->count ? &c->slices[c->head] : NULL;
    if (first && first->buf == b && off + len == first->off) {
        first->off = off;
        first->len += len;
    } else {
        if ((r = buffet__chain_room(c, 1, 0, site)) != BUFFET_OK) return r;
        if (!buffet_buf_ref(b)) return BUFFET_ERR_OVERFLOW;
        first = &c->slices[--c->head];
        c->count++;
        first->buf = b;
        first->off = off;
        first->len = len;
    }
    c->len += len;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_chain_concat_at(buffet_chain *c, buffet_chain *src, buffet_site site) {
    size_t total;
    buffet_result r;
    if (!c || !src || c == src) return BUFFET_ERR_INVALID;
    if (!buffet_add(c->len, src->len, &total)) return BUFFET_ERR_OVERFLOW;
    if (src->count == 0) return BUFFET_OK;
    if ((r = buffet__chain_room(c, 0, src->count, site)) != BUFFET_OK) return r;
    memcpy(c->slices + c->head + c->count, src->slices + src->head, src->count * sizeof(buffet_slice));
    c->count += src->count;
    c->len = total;
    src->head = src->count = src->len = 0;
    return BUFFET_OK;
}

/* The slice holding byte off (< len) and off's position in it. Walks from the nearer end. */
static size_t buffet__chain_locate(const buffet_chain *c, size_t off, size_t *inner) {
    size_t i, pos;
    if (off < c->len / 2) {
        for (i = 0, pos = 0; pos + c->slices[c->head + i].len <= off; i++) pos += c->slices[c->head + i].len;
    } else {
        for (i = c->count - 1, pos = c->len - c->slices[c->head + i].len; pos > off; )
            pos -= c->slices[c->head + --i].len;
    }
    *inner = off - pos;
    return i;
}

BUFFET_API buffet_result buffet_chain_split_at(buffet_chain *c, size_t at, buffet_chain *tail, buffet_site site) {
    size_t i, inner, moved, total;
    buffet_result r;
    buffet_slice *s;
    if (!c || !tail || c == tail) return BUFFET_ERR_INVALID;
    if (at > c->len) return BUFFET_ERR_RANGE;
    if (at == c->len) return BUFFET_OK;
    if (!buffet_add(tail->len, c->len - at, &total)) return BUFFET_ERR_OVERFLOW;
    i = buffet__chain_locate(c, at, &inner);
    moved = c->count - i;
    if ((r = buffet__chain_room(tail, 0, moved, site)) != BUFFET_OK) return r;
    /* The straddling slice stays in c as its first `inner` bytes, and tail gets the rest. */
    if (inner && !buffet_buf_ref(c->slices[c->head + i].buf)) return BUFFET_ERR_OVERFLOW;
    s = tail->slices + tail->head + tail->count;
    memcpy(s, c->slices + c->head + i, moved * sizeof *s);
    tail->count += moved;
    tail->len = total;
    if (inner) {
        s->off += inner;
        s->len -= inner;
        c->slices[c->head + i].len = inner;
        c->count = i + 1;
    } else {
        c->count = i;
    }
    c->len = at;
    if (c->count == 0) c->head = 0;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_chain_consume(buffet_chain *c, size_t n) {
    if (!c) return BUFFET_ERR_INVALID;
    if (n > c->len) return BUFFET_ERR_RANGE;
    c->len -= n;
    while (n) {
        buffet_slice *s = &c->slices[c->head];
        if (s->len > n) {
            s->off += n;
            s->len -= n;
            break;
        }
        n -= s->len;
        buffet_buf_unref(s->buf);
        c->head++;
        c->count--;
    }
    if (c->count == 0) c->head = 0;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_chain_trim(buffet_chain *c, size_t n) {
    if (!c) return BUFFET_ERR_INVALID;
    if (n > c->len) return BUFFET_ERR_RANGE;
    c->len -= n;
    while (n) {
        buffet_slice *s = &c->slices[c->head + c->count - 1];
        if (s->len > n) {
            s->len -= n;
            break;
        }
        n -= s->len;
        buffet_buf_unref(s->buf);
        c->count--;
    }
    if (c->count == 0) c->head = 0;
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_chain_copy_out(const buffet_chain *c, size_t off, void *dst, size_t len) {
    size_t i, inner;
    unsigned char *d = (unsigned char *)dst;
    if (!c || (!dst && len)) return BUFFET_ERR_INVALID;
    if (!buffet_in_range(off, len, c->len)) return BUFFET_ERR_RANGE;
    if (len == 0) return BUFFET_OK;
    for (i = buffet__chain_locate(c, off, &inner); len; i++, inner = 0) {
        const buffet_slice *s = &c->slices[c->head + i];
        size_t n = s->len - inner < len ? s->len - inner : len;
        if (!s->buf->data) return BUFFET_ERR_INVALID;
        memcpy(d, (const unsigned char *)s->buf->data + s->off + inner, n);
        d += n;
        len -= n;
    }
    return BUFFET_OK;
}

/* Does needle match the chain's bytes starting at slice i, byte inner? */
static bool buffet__chain_match(const buffet_chain *c, size_t i, size_t inner, const unsigned char *needle, size_t n) {
    for (; n && i < c->count; i++, inner = 0) {
        const buffet_slice *s = &c->slices[c->head + i];
        size_t k = s->len - inner < n ? s->len - inner : n;
        if (memcmp((const unsigned char *)s->buf->data + s->off + inner, needle, k) != 0) return false;
        needle += k;
        n -= k;
    }
    return n == 0;
}

BUFFET_API buffet_result buffet_chain_find(const buffet_chain *c, size_t from, const void *needle,
                                           size_t n, size_t *pos) {
    const unsigned char *nd = (const unsigned char *)needle;
    size_t i, inner, base, last;
    if (!c || !needle || n == 0 || !pos) return BUFFET_ERR_INVALID;
    if (from >= c->len || n > c->len - from) return BUFFET_ERR_NOT_FOUND;
    last = c->len - n;   /* the last position a match can start at */
    i = buffet__chain_locate(c, from, &inner);
    base = from - inner;
    for (; i < c->count && base + inner <= last; i++, base += c->slices[c->head + i - 1].len, inner = 0) {
        const buffet_slice *s = &c->slices[c->head + i];
        const unsigned char *data = (const unsigned char *)s->buf->data;
        if (!data) return BUFFET_ERR_INVALID;
        data += s->off;
        while (inner < s->len && base + inner <= last) {
            const unsigned char *hit = (const unsigned char *)memchr(data + inner, nd[0], s->len - inner);
            if (!hit) break;
            inner = (size_t)(hit - data);
            if (base + inner > last) break;
            if (buffet__chain_match(c, i, inner, nd, n)) {
                *pos = base + inner;
                return BUFFET_OK;
            }
            inner++;
        }
    }
    return BUFFET_ERR_NOT_FOUND;
}

BUFFET_API size_t buffet_chain_iovec(const buffet_chain *c, size_t off, size_t max_len,
                                     struct iovec *iov, size_t max_iov) {
    size_t i, inner, n = 0;
    if (!c || !iov || max_iov == 0 || off >= c->len || max_len == 0) return 0;
    for (i = buffet__chain_locate(c, off, &inner); i < c->count && n < max_iov && max_len; i++, inner = 0) {
        const buffet_slice *s = &c->slices[c->head + i];
        size_t k = s->len - inner < max_len ? s->len - inner : max_len;
        if (!s->buf->data) break;
        iov[n].iov_base = (unsigned char *)s->buf->data + s->off + inner;
        iov[n].iov_len = k;
        n++;
        max_len -= k;
    }
    return n;
}

/* >>registry
   Providers sit in fixed slots (so a slot's index stays valid while its provider is called) and
   are ordered by the sequence of registration. score and create run outside the lock; `busy`
   counts the calls in flight, and removal waits for it to drop to 0. */
typedef struct buffet__reg_slot {
    buffet_provider p;
    uint64_t seq;              /* registration order: ties go to the lower */
    uint32_t busy;             /* calls in flight (under the lock) */
    bool used, removing;
} buffet__reg_slot;

struct buffet_registry {
    buffet_allocator allocator;
    buffet_pin *pin;
    buffet_logger log;
    pthread_mutex_t mu;
    pthread_cond_t idle;       /* a busy count dropped to 0 */
    uint64_t seq;
    buffet__reg_slot slots[BUFFET_REGISTRY_MAX];
};

/* The providers this thread is calling now, so removing one from inside its own call is refused
   instead of waiting for itself. */
#define BUFFET__REG_DEPTH 8
struct buffet__reg_view;
static __thread struct { const buffet_registry *r; size_t slot; const struct buffet__reg_view *v; } buffet__reg_calls[BUFFET__REG_DEPTH];
static bool buffet__reg_view_has(const struct buffet__reg_view *v, size_t slot);
static __thread unsigned buffet__reg_ncalls;

#define BUFFET__DEVICE_USAGE (BUFFET_USAGE_DEVICE_READ | BUFFET_USAGE_DEVICE_WRITE)
#define BUFFET__LARGE ((size_t)256 << 10)

/* A provider's reason into why[0..cap) (shared with the sibling headers' providers). */
static int buffet__why(char *why, size_t cap, int score, const char *text) {
    if (cap) snprintf(why, cap, "%s", text);
    return score;
}

static int buffet__heap_score(void *self, const buffet_request *q, char *why, size_t cap) {
    (void)self;
    if (q->usage & BUFFET__DEVICE_USAGE) return buffet__why(why, cap, -1, "host memory only");
    if (q->usage & BUFFET_USAGE_SHARE_PROCESS) return buffet__why(why, cap, -1, "cannot be shared with another process");
    if (q->usage & BUFFET_USAGE_HUGE_PAGES) return buffet__why(why, cap, -1, "cannot ask for huge pages");
    if (q->usage & BUFFET_USAGE_SECURE) return buffet__why(why, cap, -1, "cannot lock pages it shares with other blocks");
    if (q->size < BUFFET__LARGE) return buffet__why(why, cap, 80, "small host memory: malloc is cheapest");
    return buffet__why(why, cap, 40, "large: whole pages from mmap suit it better");
}

static int buffet__mmap_score(void *self, const buffet_request *q, char *why, size_t cap) {
    (void)self;
    if (q->usage & BUFFET__DEVICE_USAGE) return buffet__why(why, cap, -1, "host memory only");
    if (q->usage & BUFFET_USAGE_SHARE_PROCESS) return buffet__why(why, cap, -1, "private mapping, not shareable");
    if (q->align > BUFFET__PAGE) return buffet__why(why, cap, -1, "aligns to pages only");
    if (q->usage & BUFFET_USAGE_HUGE_PAGES) return buffet__why(why, cap, 90, "explicit 2 MiB huge pages (MAP_HUGETLB)");
    if (q->usage & BUFFET_USAGE_SECURE) return buffet__why(why, cap, 90, "its own pages: locked, kept out of dumps, wiped");
    if (q->size >= BUFFET__LARGE) return buffet__why(why, cap, 70, "large: whole pages, transparent huge pages from 2 MiB");
    return buffet__why(why, cap, 20, "small: a whole page would waste memory");
}

static int buffet__shm_score(void *self, const buffet_request *q, char *why, size_t cap) {
    (void)self;
    if (q->usage & BUFFET__DEVICE_USAGE) return buffet__why(why, cap, -1, "host memory only");
    if (q->align > BUFFET__PAGE) return buffet__why(why, cap, -1, "aligns to pages only");
    if (q->usage & BUFFET_USAGE_SHARE_PROCESS) return buffet__why(why, cap, 100, "another process can map it from its fd");
    return buffet__why(why, cap, 10, "could serve, but costs a file descriptor and is never needed unshared");
}

static buffet_result buffet__provider_create(const buffet_request *q, uint32_t kind, buffet_buf **out) {
    buffet_buf_desc d;
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.size = q->size;
    d.align = q->align;
    d.allocator = q->allocator;
    d.log = q->log;
    if (kind != BUFFET_BUF_HEAP && (q->usage & BUFFET_USAGE_HUGE_PAGES)) d.flags |= BUFFET_BUF_HUGETLB;
    if (q->usage & BUFFET_USAGE_SECURE) d.flags |= BUFFET_BUF_SECURE;
    return buffet_buf_create_at(out, &d, q->site);
}
static buffet_result buffet__heap_create(void *self, const buffet_request *q, buffet_buf **out) {
    (void)self;
    return buffet__provider_create(q, BUFFET_BUF_HEAP, out);
}
static buffet_result buffet__mmap_create(void *self, const buffet_request *q, buffet_buf **out) {
    (void)self;
    return buffet__provider_create(q, BUFFET_BUF_MMAP, out);
}
static buffet_result buffet__shm_create(void *self, const buffet_request *q, buffet_buf **out) {
    (void)self;
    return buffet__provider_create(q, BUFFET_BUF_SHM, out);
}

BUFFET_API buffet_result buffet_registry_create_at(buffet_registry **out, const buffet_registry_desc *desc,
                                                   buffet_site site) {
    static const buffet_provider builtins[3] = {
        {"heap", buffet__heap_score, buffet__heap_create, NULL, NULL},
        {"mmap", buffet__mmap_score, buffet__mmap_create, NULL, NULL},
        {"shm", buffet__shm_score, buffet__shm_create, NULL, NULL},
    };
    buffet_registry_desc d;
    buffet_registry *r;
    buffet_pin *pin;
    buffet_result res;
    buffet__sited sited;
    buffet_logger refusals;
    size_t i;
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    memset(&d, 0, sizeof d);
    if (desc) d = *desc;
    refusals = buffet__sited_logger(&sited, d.log, site);
    if ((res = buffet__check(d.allocator, BUFFET_NEED_UNTIL_FREED, true, "registry", &refusals)) != BUFFET_OK) return res;
    r = (buffet_registry *)buffet__hold(d.allocator, sizeof *r, BUFFET_ALIGNOF(buffet_registry), site, &pin);
    if (!r) {
        const char *why;
        res = buffet_alloc_error(&why);
        BUFFET__LOG(&refusals, BUFFET_LOG_ERROR, res, "registry: allocation failed: %s", why);
        return res;
    }
    memset(r, 0, sizeof *r);
    r->allocator = d.allocator;
    r->pin = pin;
    r->log = d.log;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->idle, NULL);
    for (i = 0; i < 3; i++) {
        r->slots[i].p = builtins[i];
        r->slots[i].seq = ++r->seq;
        r->slots[i].used = true;
    }
    *out = r;
    return BUFFET_OK;
}

static buffet_registry *buffet__default_registry;
static pthread_once_t buffet__default_registry_once = PTHREAD_ONCE_INIT;
static void buffet__default_registry_init(void) {
    buffet_registry_create_at(&buffet__default_registry, NULL, BUFFET_SITE);
}

BUFFET_API buffet_registry *buffet_registry_default(void) {
    pthread_once(&buffet__default_registry_once, buffet__default_registry_init);
    return buffet__default_registry;
}

BUFFET_API void buffet_registry_destroy(buffet_registry *r) {
    buffet_provider gone[BUFFET_REGISTRY_MAX];
    size_t i, n = 0;
    if (!r) return;
    if (r == buffet__default_registry) {
        BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "registry: the process-wide registry is never destroyed");
        return;
    }
    for (i = 0; i < BUFFET_REGISTRY_MAX; i++)
        if (r->slots[i].used && r->slots[i].p.detach) gone[n++] = r->slots[i].p;
    pthread_cond_destroy(&r->idle);
    pthread_mutex_destroy(&r->mu);
    buffet__unhold(r->allocator, r, sizeof *r, BUFFET_ALIGNOF(buffet_registry), r->pin, BUFFET_SITE);
    for (i = 0; i < n; i++) gone[i].detach(gone[i].self, r);
}

static size_t buffet__registry_find(const buffet_registry *r, const char *name) {
    size_t i;
    for (i = 0; i < BUFFET_REGISTRY_MAX; i++)
        if (r->slots[i].used && !r->slots[i].removing && strcmp(r->slots[i].p.name, name) == 0) return i;
    return SIZE_MAX;
}

BUFFET_API buffet_result buffet_registry_add(buffet_registry *r, const buffet_provider *p) {
    buffet_result res = BUFFET_OK;
    size_t i;
    if (!r || !p || !p->name || !p->score || !p->create) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&r->mu);
    for (i = 0; i < BUFFET_REGISTRY_MAX && r->slots[i].used; i++) {}
    if (buffet__registry_find(r, p->name) != SIZE_MAX) res = BUFFET_ERR_INVALID;
    else if (i == BUFFET_REGISTRY_MAX) res = BUFFET_ERR_EXHAUSTED;
    else {
        memset(&r->slots[i], 0, sizeof r->slots[i]);
        r->slots[i].p = *p;
        r->slots[i].seq = ++r->seq;
        r->slots[i].used = true;
    }
    pthread_mutex_unlock(&r->mu);
    if (res == BUFFET_ERR_INVALID)
        BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, res, "registry: a provider named '%s' exists", p->name);
    else if (res == BUFFET_ERR_EXHAUSTED)
        BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, res, "registry: full (BUFFET_REGISTRY_MAX %d)", BUFFET_REGISTRY_MAX);
    return res;
}

/* Remove slot i (found under the lock, which is held): wait until no call is in it, free it,
   and tell the provider after the lock is released. */
static buffet_result buffet__registry_drop(buffet_registry *r, size_t i) {
    buffet_provider p;
    unsigned k;
    if (buffet__reg_ncalls > BUFFET__REG_DEPTH) {
        /* too deep in nested registry calls to tell whether this thread holds slot i: refuse
           rather than risk waiting for itself */
        pthread_mutex_unlock(&r->mu);
        BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "registry: remove from %u nested registry calls", buffet__reg_ncalls);
        return BUFFET_ERR_STATE;
    }
    for (k = 0; k < buffet__reg_ncalls; k++) {
        /* this thread's own call holds slot i busy: waiting would wait for itself */
        if (buffet__reg_calls[k].r == r && buffet__reg_view_has(buffet__reg_calls[k].v, i)) {
            const char *name = r->slots[i].p.name;
            bool own = buffet__reg_calls[k].slot == i;
            pthread_mutex_unlock(&r->mu);
            BUFFET__LOG(&r->log, BUFFET_LOG_ERROR, BUFFET_ERR_STATE, "registry: '%s' removed from inside %s", name,
                        own ? "its own call" : "a call into the same registry, which holds it in use");
            return BUFFET_ERR_STATE;
        }
    }
    r->slots[i].removing = true;
    while (r->slots[i].busy) pthread_cond_wait(&r->idle, &r->mu);
    p = r->slots[i].p;
    r->slots[i].used = r->slots[i].removing = false;
    pthread_mutex_unlock(&r->mu);
    if (p.detach) p.detach(p.self, r);
    return BUFFET_OK;
}

BUFFET_API buffet_result buffet_registry_remove(buffet_registry *r, const char *name) {
    size_t i;
    if (!r || !name) return BUFFET_ERR_INVALID;
    pthread_mutex_lock(&r->mu);
    i = buffet__registry_find(r, name);
    if (i == SIZE_MAX) {
        pthread_mutex_unlock(&r->mu);
        return BUFFET_ERR_NOT_FOUND;
    }
    return buffet__registry_drop(r, i);
}

/* Remove the provider whose self is `self` (shared with the sibling headers: a pool leaving). */
__attribute__((unused)) static buffet_result buffet__registry_remove_self(buffet_registry *r, const void *self) {
    size_t i;
    pthread_mutex_lock(&r->mu);
    for (i = 0; i < BUFFET_REGISTRY_MAX; i++)
        if (r->slots[i].used && !r->slots[i].removing && r->slots[i].p.self == self) return buffet__registry_drop(r, i);
    pthread_mutex_unlock(&r->mu);
    return BUFFET_ERR_NOT_FOUND;
}

/* Zero usage means ordinary host memory. */
static buffet_request buffet__request_norm(const buffet_request *req) {
    buffet_request q = *req;
    if (q.usage == 0) q.usage = BUFFET_USAGE_HOST_READ | BUFFET_USAGE_HOST_WRITE;
    return q;
}

/* The providers a call may use, each marked busy, in registration order. */
typedef struct buffet__reg_view {
    size_t n, slot[BUFFET_REGISTRY_MAX];
    buffet_provider p[BUFFET_REGISTRY_MAX];
} buffet__reg_view;

static bool buffet__reg_view_has(const struct buffet__reg_view *v, size_t slot) {
    size_t i;
    for (i = 0; i < v->n; i++)
        if (v->slot[i] == slot) return true;
    return false;
}

static void buffet__registry_enter(buffet_registry *r, buffet__reg_view *v) {
    size_t i, j;
    uint64_t seq[BUFFET_REGISTRY_MAX];
    v->n = 0;
    pthread_mutex_lock(&r->mu);
    for (i = 0; i < BUFFET_REGISTRY_MAX; i++) {
        if (!r->slots[i].used || r->slots[i].removing) continue;
        r->slots[i].busy++;
        /* insertion by sequence keeps "ties go to the earlier registered" */
        for (j = v->n; j > 0 && seq[j - 1] > r->slots[i].seq; j--) {
            seq[j] = seq[j - 1];
            v->slot[j] = v->slot[j - 1];
            v->p[j] = v->p[j - 1];
        }
        seq[j] = r->slots[i].seq;
        v->slot[j] = i;
        v->p[j] = r->slots[i].p;
        v->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Unmark the view's providers but entry `keep` (SIZE_MAX: all of them); the view then holds
   only the kept one, so a create call keeps nothing else in use. */
static void buffet__registry_leave(buffet_registry *r, buffet__reg_view *v, size_t keep) {
    size_t i;
    bool wake = false;
    pthread_mutex_lock(&r->mu);
    for (i = 0; i < v->n; i++)
        if (i != keep) wake |= --r->slots[v->slot[i]].busy == 0 && r->slots[v->slot[i]].removing;
    if (wake) pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->mu);
    if (keep == SIZE_MAX) return;
    v->slot[0] = v->slot[keep];
    v->p[0] = v->p[keep];
    v->n = 1;
}

/* Call into view entry i: this thread is inside it until buffet__registry_return. */
static void buffet__registry_call(const buffet_registry *r, const buffet__reg_view *v, size_t i) {
    if (buffet__reg_ncalls < BUFFET__REG_DEPTH) {
        buffet__reg_calls[buffet__reg_ncalls].r = r;
        buffet__reg_calls[buffet__reg_ncalls].slot = v->slot[i];
        buffet__reg_calls[buffet__reg_ncalls].v = v;
    }
    buffet__reg_ncalls++;
}
static void buffet__registry_return(void) { buffet__reg_ncalls--; }

/* Every entry's score (outside the lock) into scores[], and its reason into why[] when given.
   Returns: the best index (SIZE_MAX: none). */
static size_t buffet__registry_pick(const buffet_registry *r, const buffet__reg_view *v, const buffet_request *q,
                                    int *scores, char (*why)[160]) {
    size_t i, best = SIZE_MAX;
    for (i = 0; i < v->n; i++) {
        buffet__registry_call(r, v, i);
        scores[i] = v->p[i].score(v->p[i].self, q, why ? why[i] : NULL, why ? sizeof why[i] : 0);
        buffet__registry_return();
        if (scores[i] >= 0 && (best == SIZE_MAX || scores[i] > scores[best])) best = i;
    }
    return best;
}

BUFFET_API buffet_result buffet_registry_create_buf_at(buffet_registry *r, const buffet_request *req,
                                                       buffet_buf **out, buffet_site site) {
    buffet__reg_view v;
    buffet_request q;
    buffet_result res;
    int scores[BUFFET_REGISTRY_MAX];
    size_t best;
    char name[64];
    if (!out) return BUFFET_ERR_INVALID;
    *out = NULL;
    if (!r || !req || req->size == 0) return BUFFET_ERR_INVALID;
    q = buffet__request_norm(req);
    q.site = site;
    if (!q.log.fn) q.log = r->log;
    buffet__registry_enter(r, &v);
    best = buffet__registry_pick(r, &v, &q, scores, NULL);
    buffet__registry_leave(r, &v, best);
    if (best == SIZE_MAX) {
        res = BUFFET_ERR_UNSUPPORTED;
    } else {
        buffet__registry_call(r, &v, 0);
        res = v.p[0].create(v.p[0].self, &q, out);
        buffet__registry_return();
        if (res == BUFFET_OK && !*out) res = BUFFET_ERR_STATE;   /* a provider's lie: logged below */
        if (res != BUFFET_OK && *out) {                          /* an error that left a buffer */
            buffet_buf_unref(*out);
            *out = NULL;
        }
        /* logged after leaving, so the logger may remove this provider; hence the copied name */
        snprintf(name, sizeof name, "%s", v.p[0].name);
        buffet__registry_leave(r, &v, SIZE_MAX);
        if (res != BUFFET_OK)
            BUFFET__LOG(&q.log, BUFFET_LOG_WARN, res, "registry: provider \"%s\" failed to create %zu bytes at %s in %s()",
                        name, q.size, buffet__site_where(site), buffet__site_func(site));
    }
    if (best == SIZE_MAX)
        BUFFET__LOG(&q.log, BUFFET_LOG_ERROR, BUFFET_ERR_UNSUPPORTED,
                    "registry: no provider serves usage 0x%x (%zu bytes) at %s in %s(); buffet_explain() says why", q.usage,
                    q.size, buffet__site_where(site), buffet__site_func(site));
    return res;
}

BUFFET_API size_t buffet_explain(buffet_registry *r, const buffet_request *req, char *out, size_t cap) {
    static const char *const usage_names[] = {"host-read", "host-write", "device-read", "device-write",
                                              "share-process", "network", "huge-pages"};
    buffet__reg_view v;
    buffet_request q;
    size_t len = 0, i, best;
    int scores[BUFFET_REGISTRY_MAX];
    char (*why)[160];
    if (!out) cap = 0;
    if (cap) out[0] = '\0';
    if (!r || !req) {
        buffet__append(out, cap, &len, "no registry or request");
        return len;
    }
    q = buffet__request_norm(req);
    buffet__append(out, cap, &len, "request: %zu bytes, usage", q.size);
    for (i = 0; i < sizeof usage_names / sizeof usage_names[0]; i++)
        if (q.usage & (1u << i)) buffet__append(out, cap, &len, " %s", usage_names[i]);
    why = (char (*)[160])malloc(BUFFET_REGISTRY_MAX * sizeof *why);
    if (!why) {
        buffet__append(out, cap, &len, "; out of memory for the explanation");
        return len;
    }
    buffet__registry_enter(r, &v);
    best = buffet__registry_pick(r, &v, &q, scores, why);
    buffet__registry_leave(r, &v, SIZE_MAX);
    if (q.size == 0)
        buffet__append(out, cap, &len, "; refused: size 0");
    else if (best == SIZE_MAX)
        buffet__append(out, cap, &len, "; no provider can serve it");
    else
        buffet__append(out, cap, &len, "; chose '%s' (score %d)", v.p[best].name, scores[best]);
    buffet__append(out, cap, &len, "; candidates:");
    for (i = 0; i < v.n; i++) {
        const char *sep = i + 1 < v.n ? "," : "";
        if (scores[i] >= 0) buffet__append(out, cap, &len, " %s %d (%s)%s", v.p[i].name, scores[i], why[i], sep);
        else buffet__append(out, cap, &len, " %s cannot (%s)%s", v.p[i].name, why[i], sep);
    }
    free(why);
    return len;
}

#endif /* BUFFET_IMPLEMENTATION && !BUFFET_IMPL_INCLUDED */

/*
MIT License

Copyright (c) 2026 the buffet authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/
