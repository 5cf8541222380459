/* gpu_fail_vulkan.c - a Vulkan library that sits in front of the real one (libvulkan.so.1, and so
   Mesa's lavapipe) and fails on request, for testing buffet_gpu.h's Vulkan backend against a
   driver that runs out of memory or loses its device. Build:
       gcc -shared -fPIC -o build/libfailvulkan.so tests/gpu_fail_vulkan.c -ldl
   and name it as buffet_gpu_device_desc.library. It exports vkGetInstanceProcAddr only; every
   function passes through to the real driver but these, which it wraps:
     vkAllocateMemory   fails with VK_ERROR_OUT_OF_DEVICE_MEMORY when told to
     vkQueueSubmit, vkWaitForFences, vkGetFenceStatus, vkAllocateMemory
                        answer VK_ERROR_DEVICE_LOST once the device is "lost" (sticky, as a real
                        loss is)
   Control, from the test (dlsym on the same handle):
     long failvk_control(const char *what, long n)
       "reset"       forget every setting; 0
       "fail_alloc"  the n-th vkAllocateMemory from now fails; 0: none
       "lose"        n != 0: the device is lost from now on
       "allocs"      (query) vkAllocateMemory calls that reached the real driver
     Unknown names return -1. */
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

typedef void (*fv_fn)(void);
typedef int32_t fv_result;
#define FV_ERROR_OUT_OF_DEVICE_MEMORY (-2)
#define FV_ERROR_DEVICE_LOST (-4)

static void *fv_lib;
static fv_fn (*fv_gipa)(void *instance, const char *name);
static fv_fn (*fv_gdpa)(void *device, const char *name);
static fv_result (*fv_alloc)(void *device, const void *info, const void *cb, uint64_t *memory);
static fv_result (*fv_submit)(void *queue, uint32_t n, const void *submits, uint64_t fence);
static fv_result (*fv_wait)(void *device, uint32_t n, const uint64_t *fences, uint32_t all, uint64_t timeout);
static fv_result (*fv_status)(void *device, uint64_t fence);
static long fv_fail_at, fv_lost, fv_allocs;

/* A function pointer from a data pointer: memcpy, since ISO C has no cast between them. */
static fv_fn fv_from(void *p) {
    fv_fn f;
    memcpy(&f, &p, sizeof f);
    return f;
}

static fv_result fv_alloc_wrap(void *device, const void *info, const void *cb, uint64_t *memory) {
    if (__atomic_load_n(&fv_lost, __ATOMIC_RELAXED)) return FV_ERROR_DEVICE_LOST;
    if (fv_fail_at > 0 && --fv_fail_at == 0) return FV_ERROR_OUT_OF_DEVICE_MEMORY;
    fv_allocs++;
    return fv_alloc(device, info, cb, memory);
}

static fv_result fv_submit_wrap(void *queue, uint32_t n, const void *submits, uint64_t fence) {
    if (__atomic_load_n(&fv_lost, __ATOMIC_RELAXED)) return FV_ERROR_DEVICE_LOST;
    return fv_submit(queue, n, submits, fence);
}

static fv_result fv_wait_wrap(void *device, uint32_t n, const uint64_t *fences, uint32_t all, uint64_t timeout) {
    if (__atomic_load_n(&fv_lost, __ATOMIC_RELAXED)) return FV_ERROR_DEVICE_LOST;
    return fv_wait(device, n, fences, all, timeout);
}

static fv_result fv_status_wrap(void *device, uint64_t fence) {
    if (__atomic_load_n(&fv_lost, __ATOMIC_RELAXED)) return FV_ERROR_DEVICE_LOST;
    return fv_status(device, fence);
}

static fv_fn fv_gdpa_wrap(void *device, const char *name);

/* The wrapper for name, with the real function taken from real (the driver's answer), or NULL. */
static fv_fn fv_wrap(const char *name, fv_fn real) {
    if (!real) return NULL;
    if (strcmp(name, "vkAllocateMemory") == 0) {
        memcpy(&fv_alloc, &real, sizeof real);
        return (fv_fn)fv_alloc_wrap;
    }
    if (strcmp(name, "vkQueueSubmit") == 0) {
        memcpy(&fv_submit, &real, sizeof real);
        return (fv_fn)fv_submit_wrap;
    }
    if (strcmp(name, "vkWaitForFences") == 0) {
        memcpy(&fv_wait, &real, sizeof real);
        return (fv_fn)fv_wait_wrap;
    }
    if (strcmp(name, "vkGetFenceStatus") == 0) {
        memcpy(&fv_status, &real, sizeof real);
        return (fv_fn)fv_status_wrap;
    }
    if (strcmp(name, "vkGetDeviceProcAddr") == 0) {
        memcpy(&fv_gdpa, &real, sizeof real);
        return (fv_fn)fv_gdpa_wrap;
    }
    return real;
}

static fv_fn fv_gdpa_wrap(void *device, const char *name) { return fv_wrap(name, fv_gdpa(device, name)); }

fv_fn vkGetInstanceProcAddr(void *instance, const char *name);
fv_fn vkGetInstanceProcAddr(void *instance, const char *name) {
    if (!fv_lib) {
        fv_lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!fv_lib) return NULL;
        fv_fn f = fv_from(dlsym(fv_lib, "vkGetInstanceProcAddr"));
        if (!f) return NULL;
        memcpy(&fv_gipa, &f, sizeof f);
    }
    if (strcmp(name, "vkGetInstanceProcAddr") == 0) return (fv_fn)vkGetInstanceProcAddr;
    return fv_wrap(name, fv_gipa(instance, name));
}

long failvk_control(const char *what, long n);
long failvk_control(const char *what, long n) {
    if (strcmp(what, "reset") == 0) {
        fv_fail_at = 0;
        __atomic_store_n(&fv_lost, 0, __ATOMIC_RELAXED);
        fv_allocs = 0;
        return 0;
    }
    if (strcmp(what, "fail_alloc") == 0) return fv_fail_at = n, 0;
    if (strcmp(what, "lose") == 0) return __atomic_store_n(&fv_lost, n != 0, __ATOMIC_RELAXED), 0;
    if (strcmp(what, "allocs") == 0) return fv_allocs;
    return -1;
}
