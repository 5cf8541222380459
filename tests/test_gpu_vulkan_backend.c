/* test_gpu_vulkan_backend.c - the Vulkan backend of buffet_gpu.h, called through its ops table
   (buffet__gpu_vulkan_ops) without the device layer: open with the validation layer, the memory
   types and caps, memory of every usable type, writes through a mapping, copies host-visible ->
   device-local -> host-visible checked byte for byte, flush and invalidate, two copies in one batch
   (the second reads what the first wrote), polls, two threads waiting on tickets while a third
   submits (each completed ticket's data and every earlier one's are checked: in-order completion),
   host memory pinned (imported) and copied through, a wrong library name (NO_DEVICE, logged), user
   mode over a second backend's handles, and a deliberate misuse that the validation layer must
   report (so the zero counts elsewhere mean something). Every backend but that one ends with
   validation_messages == 0. Needs a Vulkan driver (Mesa's lavapipe will do): without one each test
   SKIPs ("vulkan"), and BUFFET_REQUIRE=vulkan turns that into a failure; under valgrind
   (BUFFET_TEST_MODE=valgrind) they SKIP too. C11 and C++17 (common subset). */
// link: -ldl
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"
#include "bt.h"

#include <pthread.h>

static const buffet__gpu_ops *const tv_ops = &buffet__gpu_vulkan_ops;

/* Opens a backend in own mode with validation; 0 (and a SKIP) when no Vulkan driver answers. */
static int tv_open(void **be, buffet__gpu_caps *caps, bt_log *log) {
    buffet_gpu_device_desc d;
    buffet_result r;
    if (bt_mode("valgrind")) {
        /* lavapipe's LLVM JIT takes minutes under memcheck, and glibc 2.36's ld.so reports an
           over-read (strncmp in is_dst) while loading the driver's dependencies: not ours to fix */
        bt_skip_("vulkan_valgrind", "not run under valgrind (lavapipe: slow, and an ld.so report at dlopen)");
        return 0;
    }
    memset(&d, 0, sizeof d);
    d.backend = BUFFET_GPU_VULKAN;
    d.validation = true;
    d.log = bt_logger(log);
    r = tv_ops->open(be, &d, caps, d.log);
    if (r == BUFFET_ERR_NO_DEVICE) {
        bt_skip_("vulkan", "no Vulkan driver (libvulkan.so.1 with a device; lavapipe: mesa-vulkan-drivers)");
        return 0;
    }
    BT_CHECK(r == BUFFET_OK && *be != NULL);
    return r == BUFFET_OK;
}

/* Did open run without the validation layer (logged as UNSUPPORTED)? Then zero counts prove nothing. */
static int tv_validating(const bt_log *log) { return bt_logged(log, BUFFET_ERR_UNSUPPORTED) == 0; }

/* The first type whose props have all of want and none of avoid; -1 when none. */
static int tv_type(const buffet__gpu_caps *c, uint32_t want, uint32_t avoid) {
    uint32_t i;
    for (i = 0; i < c->type_count; i++)
        if (c->type_props[i] && (c->type_props[i] & want) == want && !(c->type_props[i] & avoid))
            return (int)i;
    return -1;
}
/* A host-visible type (coherent if there is one); a device-local one (not host-visible if there is one). */
static int tv_host_type(const buffet__gpu_caps *c) {
    int t = tv_type(c, BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT, 0);
    return t >= 0 ? t : tv_type(c, BUFFET_GPU_MEM_HOST_VISIBLE, 0);
}
static int tv_device_type(const buffet__gpu_caps *c) {
    int t = tv_type(c, BUFFET_GPU_MEM_DEVICE_LOCAL, BUFFET_GPU_MEM_HOST_VISIBLE);
    return t >= 0 ? t : tv_type(c, BUFFET_GPU_MEM_DEVICE_LOCAL, 0);
}

static buffet_result tv_alloc(void *be, buffet__gpu_mem *m, int type, uint64_t size) {
    memset(m, 0, sizeof *m);
    m->type = (uint32_t)type;
    m->size = size;
    return tv_ops->mem_alloc(be, m);
}

/* The byte at i of pattern seed: every position and seed differ. */
static uint8_t tv_byte(uint64_t i, unsigned seed) {
    return (uint8_t)((i * 131u + seed * 7u + (i >> 8)) & 0xFF);
}

static void test_vk_open_caps(void) {
    void *be = NULL;
    buffet__gpu_caps caps;
    bt_log log;
    uint32_t i, host = 0, device = 0;
    if (!tv_open(&be, &caps, &log)) return;
    printf("  device '%s': %u types, %u heaps, align %llu, atom %llu, max_alloc %llu, max_allocations %u\n",
           caps.name, caps.type_count, caps.heap_count, (unsigned long long)caps.align,
           (unsigned long long)caps.atom, (unsigned long long)caps.max_alloc, caps.max_allocations);
    for (i = 0; i < caps.type_count; i++) {
        uint32_t p = caps.type_props[i];
        printf("  type %u: heap %u,%s%s%s%s%s\n", i, caps.type_heap[i], p ? "" : " unusable for buffers",
               p & BUFFET_GPU_MEM_DEVICE_LOCAL ? " DEVICE_LOCAL" : "",
               p & BUFFET_GPU_MEM_HOST_VISIBLE ? " HOST_VISIBLE" : "",
               p & BUFFET_GPU_MEM_HOST_COHERENT ? " HOST_COHERENT" : "",
               p & BUFFET_GPU_MEM_HOST_CACHED ? " HOST_CACHED" : "");
        host += (p & BUFFET_GPU_MEM_HOST_VISIBLE) != 0;
        device += (p & BUFFET_GPU_MEM_DEVICE_LOCAL) != 0;
        BT_CHECK(caps.type_heap[i] < caps.heap_count);
    }
    for (i = 0; i < caps.heap_count; i++) {
        uint64_t usage = 0, budget = 0;
        tv_ops->heap_budget(be, i, &usage, &budget);
        printf("  heap %u: %llu bytes%s, usage %llu, budget %llu\n", i, (unsigned long long)caps.heap_size[i],
               caps.heap_device_local[i] ? " device-local" : "", (unsigned long long)usage,
               (unsigned long long)budget);
        BT_CHECK(caps.heap_size[i] > 0);
        BT_CHECK(budget <= caps.heap_size[i] || budget == 0);
    }
    BT_CHECK(caps.name[0] != '\0');
    BT_CHECK(caps.type_count > 0 && caps.type_count <= BUFFET_GPU_MAX_TYPES);
    BT_CHECK(caps.heap_count > 0 && caps.heap_count <= BUFFET_GPU_MAX_HEAPS);
    BT_CHECK(host > 0 && device > 0);
    BT_CHECK(caps.align >= 1 && (caps.align & (caps.align - 1)) == 0);
    BT_CHECK(caps.atom >= 1 && caps.max_alloc > 0);
    printf("  can_pin %u\n", caps.can_pin);
    {
        buffet_gpu_vulkan_desc h;
        tv_ops->vulkan_handles(be, &h);
        BT_CHECK(h.get_instance_proc_addr != NULL && h.instance && h.physical_device && h.device);
    }
    if (!tv_validating(&log)) printf("  note: no validation layer, the message counts prove nothing\n");
    BT_CHECK(tv_ops->validation_messages(be) == 0);
    tv_ops->close(be);
}

/* Memory of every usable type, written (and read back) through the mapping where host-visible. */
static void test_vk_alloc_every_type(void) {
    void *be = NULL;
    buffet__gpu_caps caps;
    bt_log log;
    uint32_t i, j, sizes[2] = {1u << 20, 1000};
    if (!tv_open(&be, &caps, &log)) return;
    for (i = 0; i < caps.type_count; i++) {
        if (!caps.type_props[i]) {
            buffet__gpu_mem m;
            BT_CHECK(tv_alloc(be, &m, (int)i, 4096) == BUFFET_ERR_INVALID);
            continue;
        }
        for (j = 0; j < 2; j++) {
            buffet__gpu_mem m;
            uint64_t k;
            buffet_result r = tv_alloc(be, &m, (int)i, sizes[j]);
            BT_CHECK(r == BUFFET_OK);
            if (r != BUFFET_OK) continue;
            BT_CHECK(m.memory != 0 && m.buffer != 0 && m.address == 0);
            BT_CHECK((m.host != NULL) == ((caps.type_props[i] & BUFFET_GPU_MEM_HOST_VISIBLE) != 0));
            if (m.host) {
                uint8_t *p = (uint8_t *)m.host;
                int same = 1;
                for (k = 0; k < m.size; k++) p[k] = tv_byte(k, i);
                BT_CHECK(tv_ops->flush(be, &m, 0, m.size, 0) == BUFFET_OK);
                BT_CHECK(tv_ops->flush(be, &m, 0, m.size, 1) == BUFFET_OK);
                for (k = 0; k < m.size; k++) same &= p[k] == tv_byte(k, i);
                BT_CHECK(same);
                BT_CHECK(tv_ops->flush(be, &m, 0, m.size + 1, 0) == BUFFET_ERR_RANGE);
            }
            tv_ops->mem_free(be, &m);
            BT_CHECK(m.memory == 0 && m.buffer == 0 && m.host == NULL);
        }
    }
    BT_CHECK(tv_ops->validation_messages(be) == 0);
    tv_ops->close(be);
}

/* host -> device -> host in two tickets, then both copies in one batch; flush and invalidate of
   atom-widened ranges; polls; a ticket never submitted. */
static void test_vk_copy_roundtrip(void) {
    void *be = NULL;
    buffet__gpu_caps caps;
    bt_log log;
    buffet__gpu_mem src, dev, dst;
    int ht, dt, ok = 1;
    uint64_t n = 256 * 1024, k, off = 3 * 4096, atom_end;
    uint8_t *s, *d;
    buffet_result r;
    if (!tv_open(&be, &caps, &log)) return;
    ht = tv_host_type(&caps), dt = tv_device_type(&caps);
    BT_CHECK(ht >= 0 && dt >= 0);
    if (ht < 0 || dt < 0) { tv_ops->close(be); return; }
    BT_CHECK(tv_alloc(be, &src, ht, n) == BUFFET_OK);
    BT_CHECK(tv_alloc(be, &dev, dt, n + off) == BUFFET_OK);
    BT_CHECK(tv_alloc(be, &dst, ht, n) == BUFFET_OK);
    s = (uint8_t *)src.host, d = (uint8_t *)dst.host;
    for (k = 0; k < n; k++) s[k] = tv_byte(k, 1), d[k] = 0;
    BT_CHECK(tv_ops->flush(be, &src, 0, n, 0) == BUFFET_OK);
    BT_CHECK(tv_ops->flush(be, &dst, 0, n, 0) == BUFFET_OK);

    BT_CHECK(tv_ops->wait(be, 1, 0) == BUFFET_ERR_INVALID);          /* not submitted yet */
    BT_CHECK(tv_ops->copy(be, &src, 0, &dev, off, n) == BUFFET_OK);
    BT_CHECK(tv_ops->submit(be, 1) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(be, &dev, off, &dst, 0, n) == BUFFET_OK);
    BT_CHECK(tv_ops->submit(be, 2) == BUFFET_OK);
    r = tv_ops->wait(be, 2, 0);                                         /* a poll: either answer */
    BT_CHECK(r == BUFFET_OK || r == BUFFET_AGAIN);
    BT_CHECK(tv_ops->wait(be, 2, UINT64_MAX) == BUFFET_OK);
    BT_CHECK(tv_ops->wait(be, 1, 0) == BUFFET_OK);                    /* earlier tickets are complete too */
    BT_CHECK(tv_ops->flush(be, &dst, 0, n, 1) == BUFFET_OK);
    for (k = 0; k < n; k++) ok &= d[k] == tv_byte(k, 1);
    BT_CHECK(ok);

    /* Both copies in one batch, of a part whose end is widened to the atom as the device layer does. */
    for (k = 0; k < n; k++) s[k] = tv_byte(k, 2);
    atom_end = (4096 + 5000 + caps.atom - 1) / caps.atom * caps.atom;
    BT_CHECK(tv_ops->flush(be, &src, 4096, atom_end - 4096, 0) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(be, &src, 4096, &dev, 0, 5000) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(be, &dev, 0, &dst, 8192, 5000) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(be, &src, 0, &dst, 0, 0) == BUFFET_OK);    /* nothing */
    BT_CHECK(tv_ops->copy(be, &src, 1, &dst, 0, n) == BUFFET_ERR_RANGE);
    BT_CHECK(tv_ops->submit(be, 5) == BUFFET_OK);
    BT_CHECK(tv_ops->submit(be, 5) == BUFFET_ERR_INVALID);            /* tickets only increase */
    BT_CHECK(tv_ops->submit(be, 6) == BUFFET_OK);                     /* an empty batch */
    BT_CHECK(tv_ops->wait(be, 4, UINT64_MAX) == BUFFET_OK);           /* 3, 4 never used: 5 covers them */
    BT_CHECK(tv_ops->wait(be, 6, UINT64_MAX) == BUFFET_OK);
    BT_CHECK(tv_ops->wait(be, 7, UINT64_MAX) == BUFFET_ERR_INVALID);
    BT_CHECK(tv_ops->flush(be, &dst, 8192, atom_end - 4096, 1) == BUFFET_OK);
    ok = 1;
    for (k = 0; k < 5000; k++) ok &= d[8192 + k] == tv_byte(4096 + k, 2);
    for (k = 0; k < 8192; k++) ok &= d[k] == tv_byte(k, 1);           /* the rest untouched */
    BT_CHECK(ok);
    tv_ops->mem_free(be, &src);
    tv_ops->mem_free(be, &dev);
    tv_ops->mem_free(be, &dst);
    BT_CHECK(tv_ops->validation_messages(be) == 0);
    tv_ops->close(be);
}

/* Two threads wait on tickets while a third submits: each ticket t copies region t of src to dst;
   once wait(t) answers OK, regions 1..t must all be there (in-order completion). */
#define TV_TICKETS 300
#define TV_REGION 4096
typedef struct tv_shared {
    void *be;
    buffet__gpu_mem src, dst;
    uint64_t submitted;          /* atomic: the highest ticket submitted */
    int failures;                /* atomic */
    int thread;                  /* for the waiters' staggering */
} tv_shared;

static void *tv_submitter(void *arg) {
    tv_shared *sh = (tv_shared *)arg;
    uint64_t t;
    for (t = 1; t <= TV_TICKETS; t++) {
        buffet_result a = tv_ops->copy(sh->be, &sh->src, t * TV_REGION, &sh->dst, t * TV_REGION, TV_REGION);
        buffet_result b = tv_ops->submit(sh->be, t);
        if (a != BUFFET_OK || b != BUFFET_OK) BUFFET__FETCH_ADD(&sh->failures, 1, BUFFET__RELAXED);
        BUFFET__STORE(&sh->submitted, t, BUFFET__RELEASE);
    }
    return NULL;
}

static void *tv_waiter(void *arg) {
    tv_shared *sh = (tv_shared *)arg;
    int me = BUFFET__FETCH_ADD(&sh->thread, 1, BUFFET__RELAXED);
    uint64_t t, k, checked = 0;
    const uint8_t *d = (const uint8_t *)sh->dst.host;
    for (t = 1 + (uint64_t)me; t <= TV_TICKETS; t += 1 + (uint64_t)me) {
        buffet_result r;
        while (BUFFET__LOAD(&sh->submitted, BUFFET__ACQUIRE) < t) buffet__cpu_relax();
        do r = tv_ops->wait(sh->be, t, me ? 1000000u : UINT64_MAX); while (r == BUFFET_AGAIN);
        if (r != BUFFET_OK || tv_ops->wait(sh->be, t - 1 ? t - 1 : 1, 0) != BUFFET_OK) {
            BUFFET__FETCH_ADD(&sh->failures, 1, BUFFET__RELAXED);
            continue;
        }
        for (; checked < t; checked++)  /* memory is coherent here: no invalidate needed */
            for (k = 0; k < TV_REGION; k++)
                if (d[(checked + 1) * TV_REGION + k] != tv_byte((checked + 1) * TV_REGION + k, 3)) {
                    BUFFET__FETCH_ADD(&sh->failures, 1, BUFFET__RELAXED);
                    break;
                }
    }
    return NULL;
}

static void test_vk_threads(void) {
    tv_shared sh;
    buffet__gpu_caps caps;
    bt_log log;
    pthread_t w1, w2, s;
    uint64_t k, size = (TV_TICKETS + 1) * (uint64_t)TV_REGION;
    int ht;
    memset(&sh, 0, sizeof sh);
    if (!tv_open(&sh.be, &caps, &log)) return;
    ht = tv_type(&caps, BUFFET_GPU_MEM_HOST_VISIBLE | BUFFET_GPU_MEM_HOST_COHERENT, 0);
    if (ht < 0) {
        tv_ops->close(sh.be);
        BT_SKIP("vulkan", "no host-coherent memory type for the threaded test");
    }
    BT_CHECK(tv_alloc(sh.be, &sh.src, ht, size) == BUFFET_OK);
    BT_CHECK(tv_alloc(sh.be, &sh.dst, ht, size) == BUFFET_OK);
    for (k = 0; k < size; k++) ((uint8_t *)sh.src.host)[k] = tv_byte(k, 3), ((uint8_t *)sh.dst.host)[k] = 0;
    BT_CHECK(pthread_create(&w1, NULL, tv_waiter, &sh) == 0);
    BT_CHECK(pthread_create(&w2, NULL, tv_waiter, &sh) == 0);
    BT_CHECK(pthread_create(&s, NULL, tv_submitter, &sh) == 0);
    pthread_join(s, NULL);
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);
    BT_CHECK(sh.failures == 0);
    BT_CHECK(tv_ops->wait(sh.be, TV_TICKETS, UINT64_MAX) == BUFFET_OK);
    tv_ops->mem_free(sh.be, &sh.src);
    tv_ops->mem_free(sh.be, &sh.dst);
    BT_CHECK(tv_ops->validation_messages(sh.be) == 0);
    tv_ops->close(sh.be);
}

static void test_vk_no_library(void) {
    buffet_gpu_device_desc d;
    buffet__gpu_caps caps;
    bt_log log;
    void *be = (void *)&d;
    memset(&d, 0, sizeof d);
    d.backend = BUFFET_GPU_VULKAN;
    d.library = "libvulkan-not-here.so.9";
    d.validation = true;
    d.log = bt_logger(&log);
    BT_CHECK(tv_ops->open(&be, &d, &caps, d.log) == BUFFET_ERR_NO_DEVICE);
    BT_CHECK(be == NULL);
    BT_CHECK(bt_logged(&log, BUFFET_ERR_NO_DEVICE) == 1);
    BT_CHECK(strstr(log.last_msg, "libvulkan-not-here.so.9") != NULL);
    d.library = "libc.so.6";                                           /* loads, but is no loader */
    BT_CHECK(tv_ops->open(&be, &d, &caps, d.log) == BUFFET_ERR_NO_DEVICE);
    BT_CHECK(bt_logged(&log, BUFFET_ERR_NO_DEVICE) == 2);
    d.library = NULL;
    d.device_index = 1000;                                             /* no such device */
    BT_CHECK(tv_ops->open(&be, &d, &caps, d.log) == BUFFET_ERR_NO_DEVICE);
    BT_CHECK(bt_logged(&log, BUFFET_ERR_NO_DEVICE) == 3);
}

/* A second backend over the first's instance and device: it works, makes no instance or device of its
   own and closing it leaves the first working. Its validation messages reach the first's messenger. */
static void test_vk_user_mode(void) {
    void *own = NULL, *user = NULL;
    buffet__gpu_caps caps, ucaps;
    buffet_gpu_device_desc d;
    buffet_gpu_vulkan_desc h, uh;
    buffet__gpu_mem a, b;
    bt_log log, ulog;
    uint64_t k;
    int ht, ok = 1;
    if (!tv_open(&own, &caps, &log)) return;
    tv_ops->vulkan_handles(own, &h);
    memset(&d, 0, sizeof d);
    d.backend = BUFFET_GPU_VULKAN;
    d.vulkan = h;
    d.library = "libvulkan-not-here.so.9";                             /* unused in user mode */
    d.log = bt_logger(&ulog);
    BT_CHECK(tv_ops->open(&user, &d, &ucaps, d.log) == BUFFET_OK);
    if (!user) { tv_ops->close(own); return; }
    tv_ops->vulkan_handles(user, &uh);
    BT_CHECK(uh.instance == h.instance && uh.device == h.device && uh.physical_device == h.physical_device);
    BT_CHECK(uh.queue_family == h.queue_family && uh.get_instance_proc_addr == h.get_instance_proc_addr);
    BT_CHECK(ucaps.type_count == caps.type_count && ucaps.align == caps.align);
    BT_CHECK(strcmp(ucaps.name, caps.name) == 0);
    BT_CHECK(memcmp(ucaps.type_props, caps.type_props, sizeof caps.type_props) == 0);
    ht = tv_host_type(&ucaps);
    BT_CHECK(tv_alloc(user, &a, ht, 65536) == BUFFET_OK);
    BT_CHECK(tv_alloc(user, &b, ht, 65536) == BUFFET_OK);
    for (k = 0; k < 65536; k++) ((uint8_t *)a.host)[k] = tv_byte(k, 4), ((uint8_t *)b.host)[k] = 0;
    BT_CHECK(tv_ops->flush(user, &a, 0, 65536, 0) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(user, &a, 0, &b, 0, 65536) == BUFFET_OK);
    BT_CHECK(tv_ops->submit(user, 1) == BUFFET_OK);
    BT_CHECK(tv_ops->wait(user, 1, UINT64_MAX) == BUFFET_OK);
    BT_CHECK(tv_ops->flush(user, &b, 0, 65536, 1) == BUFFET_OK);
    for (k = 0; k < 65536; k++) ok &= ((uint8_t *)b.host)[k] == tv_byte(k, 4);
    BT_CHECK(ok);
    tv_ops->mem_free(user, &a);
    BT_CHECK(tv_ops->validation_messages(user) == 0);
    tv_ops->close(user);
    BT_CHECK(ulog.total == 0);
    /* The first still works, and memory the second made is the device's: the first may free it. */
    BT_CHECK(tv_alloc(own, &a, ht, 4096) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(own, &b, 0, &a, 0, 4096) == BUFFET_OK);
    BT_CHECK(tv_ops->submit(own, 1) == BUFFET_OK);
    BT_CHECK(tv_ops->wait(own, 1, UINT64_MAX) == BUFFET_OK);
    tv_ops->mem_free(own, &a);
    tv_ops->mem_free(own, &b);
    BT_CHECK(tv_ops->validation_messages(own) == 0);
    tv_ops->close(own);
}

/* Host memory imported (VK_EXT_external_memory_host): pinned -> device-local -> pinned, checked;
   misaligned pointers and sizes refused. */
static void test_vk_pin(void) {
    void *be = NULL;
    buffet__gpu_caps caps;
    buffet__gpu_mem a, b, dev, bad;
    bt_log log;
    size_t n = 64 * 1024, k;
    uint8_t *ha, *hb;
    int ok = 1;
    if (!tv_open(&be, &caps, &log)) return;
    if (!caps.can_pin) {
        buffet__gpu_mem m;
        memset(&m, 0, sizeof m);
        BT_CHECK(tv_ops->pin(be, &caps, 4096, &m) == BUFFET_ERR_UNSUPPORTED);
        tv_ops->close(be);
        BT_SKIP("vulkan_pin", "the device has no VK_EXT_external_memory_host");
    }
    ha = (uint8_t *)aligned_alloc(65536, n);
    hb = (uint8_t *)aligned_alloc(65536, n);
    BT_CHECK(ha && hb);
    if (!ha || !hb) { free(ha); free(hb); tv_ops->close(be); return; }
    for (k = 0; k < n; k++) ha[k] = tv_byte(k, 5), hb[k] = 0;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&bad, 0, sizeof bad);
    a.type = b.type = UINT32_MAX;                                      /* any type the import allows */
    BT_CHECK(tv_ops->pin(be, ha, n, &a) == BUFFET_OK);
    BT_CHECK(tv_ops->pin(be, hb, n, &b) == BUFFET_OK);
    BT_CHECK(a.pinned && a.host == ha && a.buffer && a.memory && a.size == n && a.type < caps.type_count);
    BT_CHECK(a.type < caps.type_count && (caps.type_props[a.type] & BUFFET_GPU_MEM_HOST_VISIBLE));
    BT_CHECK(tv_ops->pin(be, ha + 1, 4096, &bad) == BUFFET_ERR_INVALID);
    BT_CHECK(tv_ops->pin(be, ha, 1000, &bad) == BUFFET_ERR_INVALID);
    BT_CHECK(tv_alloc(be, &dev, tv_device_type(&caps), n) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(be, &a, 0, &dev, 0, n) == BUFFET_OK);
    BT_CHECK(tv_ops->copy(be, &dev, 0, &b, 0, n) == BUFFET_OK);
    BT_CHECK(tv_ops->submit(be, 1) == BUFFET_OK);
    BT_CHECK(tv_ops->wait(be, 1, UINT64_MAX) == BUFFET_OK);
    for (k = 0; k < n; k++) ok &= hb[k] == tv_byte(k, 5);
    BT_CHECK(ok);
    tv_ops->unpin(be, &a);
    tv_ops->unpin(be, &b);
    BT_CHECK(a.memory == 0 && a.buffer == 0);
    tv_ops->mem_free(be, &dev);
    BT_CHECK(tv_ops->validation_messages(be) == 0);
    tv_ops->close(be);
    free(ha);
    free(hb);
}

/* The layer must hear a misuse: overlapping source and destination in one vkCmdCopyBuffer (recorded,
   never submitted). */
static void test_vk_validation_counts(void) {
    void *be = NULL;
    buffet__gpu_caps caps;
    buffet__gpu_mem m;
    bt_log log;
    if (!tv_open(&be, &caps, &log)) return;
    if (!tv_validating(&log)) {
        tv_ops->close(be);
        BT_SKIP("vulkan_validation", "no VK_LAYER_KHRONOS_validation (package vulkan-validationlayers)");
    }
    BT_CHECK(tv_alloc(be, &m, tv_host_type(&caps), 65536) == BUFFET_OK);
    BT_CHECK(tv_ops->validation_messages(be) == 0);
    BT_CHECK(tv_ops->copy(be, &m, 0, &m, 16, 1024) == BUFFET_OK);
    BT_CHECK(tv_ops->validation_messages(be) >= 1);
    BT_CHECK(bt_logged(&log, BUFFET_ERR_INVALID) >= 1 && strstr(log.all, "vulkan validation") != NULL);
    /* Never submitted (the driver would run an overlapping memcpy): close frees the batch being recorded. */
    tv_ops->mem_free(be, &m);
    tv_ops->close(be);
}

int main(void) {
    bt_keep_vulkan_driver();
    BT_RUN(test_vk_open_caps);
    BT_RUN(test_vk_alloc_every_type);
    BT_RUN(test_vk_copy_roundtrip);
    BT_RUN(test_vk_threads);
    BT_RUN(test_vk_no_library);
    BT_RUN(test_vk_user_mode);
    BT_RUN(test_vk_pin);
    BT_RUN(test_vk_validation_counts);
    return bt_finish("test_gpu_vulkan_backend.c");
}
