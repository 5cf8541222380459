// link: -ldl -lpthread
/* test_gpu_cuda_backend.c - the CUDA backend of buffet_gpu.h (buffet__gpu_cuda_ops), called
   directly, over the stand-in driver tests/gpu_fake_cuda.c: build it first with
       gcc -shared -fPIC -o build/libfakecuda.so tests/gpu_fake_cuda.c -lpthread
   (BUFFET_FAKE_CUDA names another path; without the library every test is skipped). The fake
   runs queued copies only when an event is queried or synchronised, so waiting is really done.
   Covered: open and caps, the entry points looked up through cuGetProcAddress_v2 at their ABI
   versions, alloc and free of every memory type, copies upload -> device -> readback (and from
   managed and pinned memory) checked byte by byte, polls that answer AGAIN, timed and unlimited
   waits, waiters on several threads while tickets are submitted, pin and unpin, an allocation
   that fails (NOMEM, nothing leaked), a device lost at each point of open and in use
   (DEVICE_LOST, nothing leaked), no device, a missing library, a library that is not a driver.
   The fake counts live allocations, registrations, streams and events: each test ends with none.
   C11 and C++17 (common subset). */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"
#include "bt.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

static void *tc_lib;
static const char *tc_path;
static long (*tc_control)(const char *, long);
static long (*tc_live)(void);
static const buffet__gpu_ops *tc_ops = &buffet__gpu_cuda_ops;

/* Load the fake once (the backend's dlopen of the same path shares it). False: skip. */
static bool tc_fake(void) {
    void *s;
    if (tc_lib) {
        tc_control("reset", 0);
        return true;
    }
    tc_path = getenv("BUFFET_FAKE_CUDA");
    if (!tc_path || !*tc_path) tc_path = "build/libfakecuda.so";
    if (access(tc_path, R_OK) != 0 || !(tc_lib = dlopen(tc_path, RTLD_NOW | RTLD_LOCAL))) return false;
    s = dlsym(tc_lib, "fakecuda_control");
    memcpy(&tc_control, &s, sizeof s);
    s = dlsym(tc_lib, "fakecuda_live");
    memcpy(&tc_live, &s, sizeof s);
    if (!tc_control || !tc_live) {
        dlclose(tc_lib);
        tc_lib = NULL;
        return false;
    }
    tc_control("reset", 0);
    return true;
}
static char tc_why[512];
#define TC_NEED_FAKE()                                                                                       \
    do {                                                                                                     \
        if (!tc_fake()) {                                                                                    \
            snprintf(tc_why, sizeof tc_why, "no stand-in driver at %s (build it: see the top of this file)", \
                     tc_path);                                                                               \
            BT_SKIP("cuda_fake", tc_why);                                                                     \
        }                                                                                                    \
    } while (0)

static buffet_gpu_device_desc tc_desc(void) {
    buffet_gpu_device_desc d;
    memset(&d, 0, sizeof d);
    d.backend = BUFFET_GPU_CUDA;
    d.library = tc_path;
    return d;
}

static void *tc_open(buffet__gpu_caps *caps, bt_log *l) {
    buffet_gpu_device_desc d = tc_desc();
    void *be = NULL;
    BT_CHECK(tc_ops->open(&be, &d, caps, bt_logger(l)) == BUFFET_OK && be != NULL);
    return be;
}

static void tc_close(void *be, bool lost) {
    BT_CHECK(tc_control("depth", 0) == 0);   /* every push of the context was popped */
    if (be) tc_ops->close(be);
    BT_CHECK(tc_live() == 0);
    if (!lost) BT_CHECK(tc_control("reclaimed", 0) == 0);   /* the backend freed everything itself */
}

static buffet__gpu_mem tc_mem(uint32_t type, uint64_t size) {
    buffet__gpu_mem m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.size = size;
    return m;
}

static unsigned char tc_byte(uint64_t i, unsigned seed) {
    return (unsigned char)(i * 131u + seed * 7u + (i >> 8));
}

/* ---------------------------------------------------------------------------------------------
   open, caps */
static void test_open_caps(void) {
    buffet__gpu_caps caps;
    bt_log l;
    void *be;
    TC_NEED_FAKE();
    be = tc_open(&caps, &l);
    if (!be) return;
    BT_CHECK(strcmp(caps.name, "Fake CUDA Device 0") == 0);
    BT_CHECK(caps.type_count == 4 && caps.heap_count == 2);
    BT_CHECK(caps.type_props[0] == BUFFET_GPU_MEM_DEVICE_LOCAL && caps.type_heap[0] == 0);
    BT_CHECK(caps.type_props[1] == (BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT) &&
             caps.type_heap[1] == 1);
    BT_CHECK(caps.type_props[2] ==
             (BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT | BUFFET_GPU_MEM_HOST_CACHED));
    BT_CHECK(caps.type_heap[2] == 1);
    BT_CHECK(caps.type_props[3] == (BUFFET_GPU_MEM_DEVICE_LOCAL | BUFFET_GPU_MEM_HOST_VISIBLE |
                                    BUFFET_GPU_MEM_HOST_COHERENT | BUFFET_GPU_MEM_MANAGED) &&
             caps.type_heap[3] == 0);
    BT_CHECK(caps.heap_size[0] == (uint64_t)1 << 30 && caps.heap_device_local[0] == 1);
    BT_CHECK(caps.heap_size[1] > 0 && caps.heap_device_local[1] == 0);
    BT_CHECK(caps.align == 256 && caps.atom == 1 && caps.can_pin == 1 && caps.max_alloc == (uint64_t)1 << 30);
    /* every entry point through cuGetProcAddress_v2, each at a version that has its ABI */
    BT_CHECK(tc_control("lookups_v2", 0) >= 20 && tc_control("lookups_v1", 0) == 0 &&
             tc_control("bad_lookups", 0) == 0);
    BT_CHECK(tc_live() == 2);   /* the context and the stream */
    BT_CHECK(strcmp(tc_ops->name, "cuda") == 0 && tc_ops->vulkan_handles == NULL &&
             tc_ops->validation_messages == NULL);
    tc_close(be, false);
    /* without managed memory: three types */
    tc_control("managed", 0);
    be = tc_open(&caps, &l);
    BT_CHECK(caps.type_count == 3);
    tc_close(be, false);
}

/* ---------------------------------------------------------------------------------------------
   memory */
static void test_alloc_every_type(void) {
    buffet__gpu_caps caps;
    buffet__gpu_mem m[4], bad;
    uint64_t usage = 1, budget = 1;
    bt_log l;
    uint32_t t;
    void *be;
    TC_NEED_FAKE();
    if (!(be = tc_open(&caps, &l))) return;
    for (t = 0; t < 4; t++) {
        m[t] = tc_mem(t, 1000 + t);
        BT_CHECK(tc_ops->mem_alloc(be, &m[t]) == BUFFET_OK);
        BT_CHECK(m[t].address != 0 && m[t].memory == m[t].address && m[t].buffer == 0 && m[t].pinned == 0);
        BT_CHECK(m[t].address % 256 == 0 || t == 3);
        BT_CHECK((m[t].host != NULL) == (t != 0));
        if (m[t].host) memset(m[t].host, 0xA5, (size_t)m[t].size);   /* host-visible: writable */
    }
    /* pinned host memory is reached by its device address (the fake's differ from the host's);
       managed memory's are one */
    BT_CHECK(m[1].address != (uint64_t)(uintptr_t)m[1].host &&
             m[2].address != (uint64_t)(uintptr_t)m[2].host);
    BT_CHECK(m[3].address == (uint64_t)(uintptr_t)m[3].host);
    BT_CHECK(tc_live() == 2 + 4);
    tc_ops->heap_budget(be, 0, &usage, &budget);
    BT_CHECK(usage == 1000 + 1003 && budget == (uint64_t)1 << 30);   /* device and managed */
    tc_ops->heap_budget(be, 1, &usage, &budget);
    BT_CHECK(usage == 0 && budget == 0);
    BT_CHECK(tc_ops->flush(be, &m[1], 0, 64, 0) == BUFFET_OK &&
             tc_ops->flush(be, &m[2], 0, 64, 1) == BUFFET_OK);
    bad = tc_mem(4, 64);
    BT_CHECK(tc_ops->mem_alloc(be, &bad) == BUFFET_ERR_INVALID);   /* no type 4 */
    bad = tc_mem(0, 0);
    BT_CHECK(tc_ops->mem_alloc(be, &bad) == BUFFET_ERR_INVALID);
    for (t = 0; t < 4; t++) tc_ops->mem_free(be, &m[t]);
    BT_CHECK(tc_live() == 2);
    BT_CHECK(l.count[-BUFFET_ERR_SYSTEM] == 0);
    tc_close(be, false);
}

/* ---------------------------------------------------------------------------------------------
   copies and tickets */
#define TC_CHUNKS 8
#define TC_CHUNK 512

static void test_copy_roundtrip(void) {
    buffet__gpu_caps caps;
    buffet__gpu_mem up, dev, down, man;
    const uint64_t n = TC_CHUNKS * TC_CHUNK;
    unsigned char *u, *d;
    bt_log l;
    long live;
    uint64_t i, t;
    int k, bad = 0;
    void *be;
    TC_NEED_FAKE();
    if (!(be = tc_open(&caps, &l))) return;
    up = tc_mem(1, n), dev = tc_mem(0, n + 256), down = tc_mem(2, n), man = tc_mem(3, n);
    BT_CHECK(tc_ops->mem_alloc(be, &up) == BUFFET_OK && tc_ops->mem_alloc(be, &dev) == BUFFET_OK);
    BT_CHECK(tc_ops->mem_alloc(be, &down) == BUFFET_OK && tc_ops->mem_alloc(be, &man) == BUFFET_OK);
    u = (unsigned char *)up.host, d = (unsigned char *)down.host;
    for (i = 0; i < n; i++) u[i] = tc_byte(i, 1);
    /* ticket 1: upload -> device at 256, in chunks; ticket 2: device -> readback */
    for (k = 0; k < TC_CHUNKS; k++)
        BT_CHECK(tc_ops->copy(be, &up, (uint64_t)k * TC_CHUNK, &dev, 256 + (uint64_t)k * TC_CHUNK,
                              TC_CHUNK) == BUFFET_OK);
    BT_CHECK(tc_ops->submit(be, 1) == BUFFET_OK);
    for (k = 0; k < TC_CHUNKS; k++)
        BT_CHECK(tc_ops->copy(be, &dev, 256 + (uint64_t)k * TC_CHUNK, &down, (uint64_t)k * TC_CHUNK,
                              TC_CHUNK) == BUFFET_OK);
    BT_CHECK(tc_ops->wait(be, 2, 0) == BUFFET_ERR_INVALID);   /* not submitted yet */
    BT_CHECK(tc_ops->submit(be, 2) == BUFFET_OK);
    BT_CHECK(tc_control("pending", 0) == 2 * TC_CHUNKS);       /* nothing ran yet */
    BT_CHECK(tc_ops->wait(be, 2, 0) == BUFFET_AGAIN);          /* a poll: one copy runs per look */
    BT_CHECK(tc_control("not_ready", 0) >= 1);
    BT_CHECK(tc_ops->wait(be, 0, 0) == BUFFET_OK);             /* ticket 0 is always complete */
    BT_CHECK(tc_ops->wait(be, 1, (uint64_t)60 * 1000000000u) == BUFFET_OK);   /* timed: polls and naps */
    BT_CHECK(tc_ops->wait(be, 2, UINT64_MAX) == BUFFET_OK);
    BT_CHECK(tc_control("pending", 0) == 0);
    for (i = 0; i < n; i++) bad += d[i] != tc_byte(i, 1);
    BT_CHECK(bad == 0);
    BT_CHECK(tc_ops->wait(be, 1, 0) == BUFFET_OK && tc_ops->wait(be, 2, 0) == BUFFET_OK);
    /* managed memory, written by the host, as a source */
    for (i = 0; i < n; i++) ((unsigned char *)man.host)[i] = tc_byte(i, 2);
    BT_CHECK(tc_ops->copy(be, &man, 0, &dev, 0, n) == BUFFET_OK);
    BT_CHECK(tc_ops->copy(be, &dev, 0, &down, 0, n) == BUFFET_OK);
    BT_CHECK(tc_ops->submit(be, 3) == BUFFET_OK);
    BT_CHECK(tc_ops->submit(be, 4) == BUFFET_OK);              /* nothing recorded: still a ticket */
    BT_CHECK(tc_ops->wait(be, 4, UINT64_MAX) == BUFFET_OK);    /* 4 done: 3 is too */
    for (i = 0, bad = 0; i < n; i++) bad += d[i] != tc_byte(i, 2);
    BT_CHECK(bad == 0);
    /* a range past an end is refused, nothing recorded */
    BT_CHECK(tc_ops->copy(be, &up, 1, &dev, 0, n) == BUFFET_ERR_RANGE);
    BT_CHECK(tc_ops->copy(be, &up, 0, &dev, n + 1, 256) == BUFFET_ERR_RANGE);
    BT_CHECK(tc_ops->submit(be, 5) == BUFFET_OK && tc_ops->wait(be, 5, UINT64_MAX) == BUFFET_OK);
    /* events are recycled: tickets waited for one at a time need no more */
    live = tc_live();
    for (t = 6; t < 100; t++) {
        BT_CHECK(tc_ops->copy(be, &up, 0, &dev, 0, 64) == BUFFET_OK && tc_ops->submit(be, t) == BUFFET_OK);
        BT_CHECK(tc_ops->wait(be, t, t % 2 ? UINT64_MAX : (uint64_t)60 * 1000000000u) == BUFFET_OK);
    }
    BT_CHECK(tc_live() == live);
    tc_ops->mem_free(be, &up), tc_ops->mem_free(be, &dev), tc_ops->mem_free(be, &down),
        tc_ops->mem_free(be, &man);
    BT_CHECK(l.count[-BUFFET_ERR_SYSTEM] == 0 && l.count[-BUFFET_ERR_INVALID] == 0);
    tc_close(be, false);
}

/* Waiters on 4 threads, while the main thread submits tickets: each ticket t copies chunk t
   upload -> device -> readback; a waiter that sees t complete checks chunk t (and so every
   earlier ticket's, which in-order completion promises). */
#define TC_TICKETS 300
#define TC_TCHUNK 64
typedef struct tc_shared {
    void *be;
    const buffet__gpu_mem *down;
    uint64_t published;     /* tickets submitted: atomic */
    int bad, failed;        /* atomic */
    unsigned id;
} tc_shared;

typedef struct tc_arg { tc_shared *s; unsigned id; } tc_arg;

static void *tc_waiter(void *p) {
    tc_arg *a = (tc_arg *)p;
    tc_shared *s = a->s;
    uint64_t t;
    for (t = 1 + a->id; t <= TC_TICKETS; t += 1 + a->id % 3) {
        buffet_result r;
        uint64_t i, tt;
        while (BUFFET__LOAD(&s->published, BUFFET__ACQUIRE) < t) sched_yield();
        if (a->id == 0) r = tc_ops->wait(s->be, t, UINT64_MAX);
        else if (a->id == 1) {
            while ((r = tc_ops->wait(s->be, t, 0)) == BUFFET_AGAIN) sched_yield();
        } else r = tc_ops->wait(s->be, t, (uint64_t)60 * 1000000000u);
        if (r != BUFFET_OK) {
            BUFFET__FETCH_ADD(&s->failed, 1, BUFFET__RELAXED);
            continue;
        }
        /* ticket t and (in order) every earlier one: their chunks are in place */
        for (tt = t > 4 ? t - 4 : 1; tt <= t; tt++)
            for (i = 0; i < TC_TCHUNK; i++)
                if (((const unsigned char *)s->down->host)[(tt - 1) * TC_TCHUNK + i] !=
                    tc_byte((tt - 1) * TC_TCHUNK + i, 3))
                    BUFFET__FETCH_ADD(&s->bad, 1, BUFFET__RELAXED);
    }
    return NULL;
}

static void test_concurrent_waiters(void) {
    buffet__gpu_caps caps;
    buffet__gpu_mem up, dev, down;
    const uint64_t n = (uint64_t)TC_TICKETS * TC_TCHUNK;
    pthread_t th[4];
    tc_arg args[4];
    tc_shared s;
    bt_log l;
    uint64_t i, t;
    unsigned k;
    void *be;
    TC_NEED_FAKE();
    if (!(be = tc_open(&caps, &l))) return;
    up = tc_mem(1, n), dev = tc_mem(0, n), down = tc_mem(2, n);
    BT_CHECK(tc_ops->mem_alloc(be, &up) == BUFFET_OK && tc_ops->mem_alloc(be, &dev) == BUFFET_OK &&
             tc_ops->mem_alloc(be, &down) == BUFFET_OK);
    for (i = 0; i < n; i++) ((unsigned char *)up.host)[i] = tc_byte(i, 3);
    memset(&s, 0, sizeof s);
    s.be = be;
    s.down = &down;
    for (k = 0; k < 4; k++) {
        args[k].s = &s, args[k].id = k;
        BT_CHECK(pthread_create(&th[k], NULL, tc_waiter, &args[k]) == 0);
    }
    for (t = 1; t <= TC_TICKETS; t++) {
        uint64_t off = (t - 1) * TC_TCHUNK;
        BT_CHECK(tc_ops->copy(be, &up, off, &dev, off, TC_TCHUNK) == BUFFET_OK);
        BT_CHECK(tc_ops->copy(be, &dev, off, &down, off, TC_TCHUNK) == BUFFET_OK);
        BT_CHECK(tc_ops->submit(be, t) == BUFFET_OK);
        BUFFET__STORE(&s.published, t, BUFFET__RELEASE);
        if (t % 7 == 0) sched_yield();
    }
    for (k = 0; k < 4; k++) pthread_join(th[k], NULL);
    BT_CHECK(s.failed == 0 && s.bad == 0);
    BT_CHECK(tc_ops->wait(be, TC_TICKETS, UINT64_MAX) == BUFFET_OK);
    for (i = 0, k = 0; i < n; i++) k += ((unsigned char *)down.host)[i] != tc_byte(i, 3);
    BT_CHECK(k == 0);
    tc_ops->mem_free(be, &up), tc_ops->mem_free(be, &dev), tc_ops->mem_free(be, &down);
    tc_close(be, false);
}

/* ---------------------------------------------------------------------------------------------
   pin */
static void test_pin_unpin(void) {
    buffet__gpu_caps caps;
    buffet__gpu_mem pin, pin2, dev, down;
    unsigned char *p;
    bt_log l;
    long live;
    int i, bad = 0;
    void *be;
    TC_NEED_FAKE();
    if (!(be = tc_open(&caps, &l))) return;
    p = (unsigned char *)aligned_alloc(4096, 8192);
    BT_CHECK(p != NULL);
    if (!p) return;
    for (i = 0; i < 8192; i++) p[i] = tc_byte((uint64_t)i, 4);
    memset(&pin, 0, sizeof pin);
    BT_CHECK(tc_ops->pin(be, p, 8192, &pin) == BUFFET_OK);
    BT_CHECK(pin.pinned == 1 && pin.host == p && pin.size == 8192 && pin.address != 0 &&
             pin.memory == pin.address);
    BT_CHECK(pin.type < caps.type_count && (caps.type_props[pin.type] & BUFFET_GPU_MEM_HOST_VISIBLE));
    memset(&pin2, 0, sizeof pin2);
    BT_CHECK(tc_ops->pin(be, p + 4096, 4096, &pin2) == BUFFET_ERR_INVALID);   /* registered already */
    BT_CHECK(strstr(l.all, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED") != NULL);
    dev = tc_mem(0, 8192), down = tc_mem(2, 8192);
    BT_CHECK(tc_ops->mem_alloc(be, &dev) == BUFFET_OK && tc_ops->mem_alloc(be, &down) == BUFFET_OK);
    BT_CHECK(tc_ops->copy(be, &pin, 0, &dev, 0, 8192) == BUFFET_OK &&
             tc_ops->copy(be, &dev, 0, &down, 0, 8192) == BUFFET_OK);
    BT_CHECK(tc_ops->submit(be, 1) == BUFFET_OK && tc_ops->wait(be, 1, UINT64_MAX) == BUFFET_OK);
    for (i = 0; i < 8192; i++) bad += ((unsigned char *)down.host)[i] != p[i];
    BT_CHECK(bad == 0);
    live = tc_live();
    tc_ops->unpin(be, &pin);
    BT_CHECK(tc_live() == live - 1);   /* the registration is gone */
    tc_ops->mem_free(be, &dev), tc_ops->mem_free(be, &down);
    free(p);
    tc_close(be, false);
}

/* ---------------------------------------------------------------------------------------------
   failures */
static void test_nomem(void) {
    buffet__gpu_caps caps;
    buffet__gpu_mem m, ok;
    bt_log l;
    uint32_t t;
    void *be, *p;
    TC_NEED_FAKE();
    if (!(be = tc_open(&caps, &l))) return;
    for (t = 0; t < 4; t++) {
        tc_control("fail_alloc", 1);
        m = tc_mem(t, 4096);
        BT_CHECK(tc_ops->mem_alloc(be, &m) == BUFFET_ERR_NOMEM);
        BT_CHECK(m.memory == 0 && m.host == NULL);
        BT_CHECK(tc_live() == 2);
        ok = tc_mem(t, 4096);   /* the device goes on */
        BT_CHECK(tc_ops->mem_alloc(be, &ok) == BUFFET_OK);
        tc_ops->mem_free(be, &ok);
    }
    BT_CHECK(bt_logged(&l, BUFFET_ERR_NOMEM) == 4 && strstr(l.all, "CUDA_ERROR_OUT_OF_MEMORY") != NULL);
    p = aligned_alloc(4096, 4096);
    tc_control("fail_alloc", 1);
    memset(&m, 0, sizeof m);
    BT_CHECK(tc_ops->pin(be, p, 4096, &m) == BUFFET_ERR_NOMEM);
    BT_CHECK(tc_live() == 2);
    free(p);
    tc_close(be, false);
}

static void test_lost(void) {
    buffet__gpu_caps caps;
    buffet__gpu_mem up, dev;
    bt_log l;
    void *be;
    uint64_t usage = 1, budget = 1;
    TC_NEED_FAKE();
    /* lost while copies are in flight: the wait sees it */
    if (!(be = tc_open(&caps, &l))) return;
    up = tc_mem(1, 4096), dev = tc_mem(0, 4096);
    BT_CHECK(tc_ops->mem_alloc(be, &up) == BUFFET_OK && tc_ops->mem_alloc(be, &dev) == BUFFET_OK);
    BT_CHECK(tc_ops->copy(be, &up, 0, &dev, 0, 4096) == BUFFET_OK && tc_ops->submit(be, 1) == BUFFET_OK);
    tc_control("lost_after", 0);
    BT_CHECK(tc_ops->wait(be, 1, UINT64_MAX) == BUFFET_ERR_DEVICE_LOST);
    BT_CHECK(strstr(l.all, "CUDA_ERROR_ILLEGAL_ADDRESS") != NULL);
    /* sticky: every later call, without asking the driver */
    BT_CHECK(tc_ops->wait(be, 1, 0) == BUFFET_ERR_DEVICE_LOST);
    BT_CHECK(tc_ops->copy(be, &up, 0, &dev, 0, 16) == BUFFET_ERR_DEVICE_LOST);
    BT_CHECK(tc_ops->submit(be, 2) == BUFFET_ERR_DEVICE_LOST);
    BT_CHECK(tc_ops->mem_alloc(be, &dev) == BUFFET_ERR_DEVICE_LOST);
    tc_ops->heap_budget(be, 0, &usage, &budget);
    BT_CHECK(usage == 0 && budget == 0);
    tc_ops->mem_free(be, &up), tc_ops->mem_free(be, &dev);
    tc_close(be, true);   /* the context's release reclaims what the lost device could not free */
    /* lost at each call of open and of a short session: an error, never a crash or a leak */
    {
        long n;
        int opened = 0, refused = 0;
        for (n = 0; n < 60; n++) {
            buffet_gpu_device_desc d = tc_desc();
            buffet_result r;
            void *b = NULL;
            tc_control("reset", 0);
            tc_control("lost_after", n);
            r = tc_ops->open(&b, &d, &caps, bt_logger(&l));
            if (r == BUFFET_OK) {
                buffet__gpu_mem m = tc_mem(0, 4096), h = tc_mem(1, 4096);
                buffet_result r1 = tc_ops->mem_alloc(b, &m), r2 = tc_ops->mem_alloc(b, &h), r3 = BUFFET_OK;
                opened++;
                if (r1 == BUFFET_OK && r2 == BUFFET_OK) {
                    r3 = tc_ops->copy(b, &h, 0, &m, 0, 4096);
                    if (r3 == BUFFET_OK) r3 = tc_ops->submit(b, 1);
                    if (r3 == BUFFET_OK) r3 = tc_ops->wait(b, 1, UINT64_MAX);
                }
                BT_CHECK((r1 == BUFFET_OK || r1 == BUFFET_ERR_DEVICE_LOST) &&
                         (r2 == BUFFET_OK || r2 == BUFFET_ERR_DEVICE_LOST));
                BT_CHECK(r3 == BUFFET_OK || r3 == BUFFET_ERR_DEVICE_LOST);
                if (r1 == BUFFET_OK) tc_ops->mem_free(b, &m);
                if (r2 == BUFFET_OK) tc_ops->mem_free(b, &h);
                tc_ops->close(b);
            } else {
                refused++;
                BT_CHECK(b == NULL);
                BT_CHECK(r == BUFFET_ERR_DEVICE_LOST || r == BUFFET_ERR_NO_DEVICE);
            }
            BT_CHECK(tc_live() == 0);
        }
        BT_CHECK(opened > 0 && refused > 0);
    }
}

static void test_no_device(void) {
    buffet__gpu_caps caps;
    buffet_gpu_device_desc d;
    bt_log l;
    void *be = NULL;
    TC_NEED_FAKE();
    d = tc_desc();
    tc_control("no_device", 1);
    BT_CHECK(tc_ops->open(&be, &d, &caps, bt_logger(&l)) == BUFFET_ERR_NO_DEVICE && be == NULL);
    BT_CHECK(strstr(l.all, "CUDA_ERROR_NO_DEVICE") != NULL && strstr(l.all, "cuInit") != NULL);
    BT_CHECK(tc_live() == 0);
    tc_control("reset", 0);
    d.device_index = 1;   /* the fake has one */
    BT_CHECK(tc_ops->open(&be, &d, &caps, bt_logger(&l)) == BUFFET_ERR_NO_DEVICE && be == NULL);
    tc_control("devices", 0);
    d.device_index = 0;
    BT_CHECK(tc_ops->open(&be, &d, &caps, bt_logger(&l)) == BUFFET_ERR_NO_DEVICE && be == NULL);
    BT_CHECK(tc_live() == 0);
}

static void test_missing_library(void) {
    buffet__gpu_caps caps;
    buffet_gpu_device_desc d;
    bt_log l;
    void *be = NULL;
    memset(&d, 0, sizeof d);
    d.backend = BUFFET_GPU_CUDA;
    d.library = "/nonexistent/libcuda-that-is-not-there.so.1";
    BT_CHECK(tc_ops->open(&be, &d, &caps, bt_logger(&l)) == BUFFET_ERR_NO_DEVICE && be == NULL);
    BT_CHECK(bt_logged(&l, BUFFET_ERR_NO_DEVICE) == 1 && strstr(l.all, "libcuda-that-is-not-there") != NULL);
    /* a library that is no driver: no cuGetProcAddress */
    d.library = "libc.so.6";
    BT_CHECK(tc_ops->open(&be, &d, &caps, bt_logger(&l)) == BUFFET_ERR_UNSUPPORTED && be == NULL);
    BT_CHECK(strstr(l.all, "cuGetProcAddress") != NULL);
}

int main(void) {
    BT_RUN(test_open_caps);
    BT_RUN(test_alloc_every_type);
    BT_RUN(test_copy_roundtrip);
    BT_RUN(test_concurrent_waiters);
    BT_RUN(test_pin_unpin);
    BT_RUN(test_nomem);
    BT_RUN(test_lost);
    BT_RUN(test_no_device);
    BT_RUN(test_missing_library);
    if (tc_lib) dlclose(tc_lib);
    return bt_finish("test_gpu_cuda_backend");
}
