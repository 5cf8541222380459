/* gpu_fake_cuda.c - a stand-in for libcuda.so.1, for testing buffet_gpu.h's CUDA backend without
   a GPU. Build: gcc -shared -fPIC -o build/libfakecuda.so tests/gpu_fake_cuda.c -lpthread

   It exports cuGetProcAddress and cuGetProcAddress_v2 (the only driver symbols), which hand out
   the entry points the backend uses, each at the CUDA version of its ABI (cuMemAlloc from 3020 on:
   _v2). A lookup of an unknown name, or of a known one at a version below that ABI's (which a real
   driver would answer with an older, other signature), fails with CUDA_ERROR_NOT_FOUND and is
   counted ("bad_lookups").

   The model, over host memory, honest where the backend could go wrong:
   - cuInit first (else CUDA_ERROR_NOT_INITIALIZED); calls that need a context fail with
     CUDA_ERROR_INVALID_CONTEXT unless the primary context was pushed on the calling thread.
   - Device memory lives at made-up addresses (0xC0DA...) that are not host addresses: copies
     translate them through the allocation table and refuse an address outside every allocation,
     or a range crossing an allocation's end (CUDA_ERROR_INVALID_VALUE). Host allocations and
     registrations get device addresses of their own (so a backend must ask
     cuMemHostGetDevicePointer); managed memory's address is its host address.
   - Streams queue copies; nothing runs at cuMemcpyAsync. cuEventQuery runs at most one queued
     copy per call and answers CUDA_ERROR_NOT_READY until the copies before the event's record
     have run; cuEventSynchronize and cuStreamSynchronize run them all. Freeing memory runs every
     queued copy first (cuMemFree synchronises). One mutex covers everything.
   - Every allocation, registration, stream and event is tracked: fakecuda_live() counts them
     (and primary-context references). Releasing the primary context's last reference reclaims
     what is left and counts it in "reclaimed" (a real driver frees a context's memory with it).

   Control, from the test (dlsym on the same handle):
     long fakecuda_live(void)                     live objects, see above
     long fakecuda_control(const char *what, long n)
       "reset"        forget the failure settings and counters (not the live objects); 0
       "no_device"    n != 0: cuInit answers CUDA_ERROR_NO_DEVICE
       "devices"      how many devices cuDeviceGetCount reports (default 1)
       "managed"      the CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY value (default 1)
       "fail_alloc"   the n-th allocation from now (cuMemAlloc, cuMemHostAlloc, cuMemAllocManaged,
                      cuMemHostRegister) fails with CUDA_ERROR_OUT_OF_MEMORY; 0: none
       "lost_after"   after n more calls, every call answers CUDA_ERROR_ILLEGAL_ADDRESS (sticky),
                      but for context push/pop/release and cuGetErrorName; -1: never
       queries (n ignored): "live", "reclaimed", "calls", "lookups_v1", "lookups_v2",
                      "bad_lookups", "not_ready" (NOT_READY answers), "copies_run", "pending" (copies
                      queued, not run), "depth" (the primary context's pushes on the calling thread)
     Unknown names return -1. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long fk_ptr;

#define FK_OK 0
#define FK_INVALID_VALUE 1
#define FK_OUT_OF_MEMORY 2
#define FK_NOT_INITIALIZED 3
#define FK_NO_DEVICE 100
#define FK_INVALID_DEVICE 101
#define FK_INVALID_CONTEXT 201
#define FK_INVALID_HANDLE 400
#define FK_NOT_FOUND 500
#define FK_NOT_READY 600
#define FK_ILLEGAL_ADDRESS 700
#define FK_ALREADY_REGISTERED 712
#define FK_NOT_REGISTERED 713
#define FK_TOTAL_MEM ((size_t)1 << 30)

enum { FK_DEV, FK_HOST, FK_MANAGED, FK_REG, FK_STREAM, FK_EVENT };

typedef struct fk_op { void *dst; const void *src; size_t n; } fk_op;

typedef struct fk_obj {
    int kind;
    fk_ptr dptr;               /* the device's address of byte 0 (memory) */
    void *host;                /* the bytes */
    size_t size;
    /* a stream: its queue; [ran, queued) wait */
    fk_op *ops;
    size_t cap, ran, queued;
    /* an event: the stream and the queue position it waits for */
    struct fk_obj *stream;
    size_t target;
    struct fk_obj *next;
} fk_obj;

static pthread_mutex_t fk_mu = PTHREAD_MUTEX_INITIALIZER;
static fk_obj *fk_objs;
static long fk_nobjs, fk_ctx_refs, fk_reclaimed, fk_calls, fk_lost_at = -1, fk_alloc_count, fk_fail_alloc_at;
static long fk_no_device, fk_devices = 1, fk_managed = 1, fk_lookups_v1, fk_lookups_v2, fk_bad_lookups;
static long fk_not_ready, fk_copies_run;
static int fk_initialized, fk_lost;
static fk_ptr fk_next_addr = 0xC0DA000000000000ull;
static char fk_ctx_token;      /* the primary context's handle is its address */
static _Thread_local int fk_depth;   /* pushes of the primary context on this thread */

/* Lock, count the call and turn lost when its time has come. Returns the sticky error or 0. */
static CUresult fk_enter(void) {
    pthread_mutex_lock(&fk_mu);
    fk_calls++;
    if (fk_lost_at >= 0 && fk_calls > fk_lost_at) fk_lost = 1;
    if (fk_lost) return FK_ILLEGAL_ADDRESS;
    if (!fk_initialized) return FK_NOT_INITIALIZED;
    return FK_OK;
}
#define FK_ENTER()                                                                                           \
    do {                                                                                                     \
        CUresult e_ = fk_enter();                                                                            \
        if (e_) {                                                                                            \
            pthread_mutex_unlock(&fk_mu);                                                                    \
            return e_;                                                                                       \
        }                                                                                                    \
    } while (0)
#define FK_ENTER_CTX()                                                                                       \
    do {                                                                                                     \
        FK_ENTER();                                                                                          \
        if (!fk_depth) {                                                                                     \
            pthread_mutex_unlock(&fk_mu);                                                                    \
            return FK_INVALID_CONTEXT;                                                                       \
        }                                                                                                    \
    } while (0)
#define FK_RETURN(r) do { pthread_mutex_unlock(&fk_mu); return (r); } while (0)

static fk_obj *fk_new(int kind) {
    fk_obj *o = (fk_obj *)calloc(1, sizeof *o);
    if (!o) return NULL;
    o->kind = kind;
    o->next = fk_objs;
    fk_objs = o;
    fk_nobjs++;
    return o;
}

static void fk_drop(fk_obj *o) {
    fk_obj **pp;
    for (pp = &fk_objs; *pp != o; pp = &(*pp)->next) {}
    *pp = o->next;
    if (o->kind == FK_DEV || o->kind == FK_HOST || o->kind == FK_MANAGED) free(o->host);
    free(o->ops);
    free(o);
    fk_nobjs--;
}

static fk_obj *fk_find(int kind, fk_ptr dptr, const void *host) {
    fk_obj *o;
    for (o = fk_objs; o; o = o->next)
        if (o->kind == kind && (host ? o->host == host : o->dptr == dptr)) return o;
    return NULL;
}

static int fk_valid(const fk_obj *h, int kind) {
    const fk_obj *o;
    for (o = fk_objs; o; o = o->next)
        if (o == h && o->kind == kind) return 1;
    return 0;
}

/* The host bytes behind device addresses [a, a + n): all within one allocation, else NULL. */
static void *fk_xlate(fk_ptr a, size_t n) {
    fk_obj *o;
    for (o = fk_objs; o; o = o->next) {
        if (o->kind > FK_REG) continue;
        if (a >= o->dptr && a - o->dptr <= o->size && n <= o->size - (a - o->dptr))
            return (char *)o->host + (a - o->dptr);
    }
    return NULL;
}

static int fk_run_one(fk_obj *s) {
    fk_op *op;
    if (s->ran == s->queued) return 0;
    op = &s->ops[s->ran++];
    memmove(op->dst, op->src, op->n);
    fk_copies_run++;
    return 1;
}

static void fk_run_all(void) {
    fk_obj *o;
    for (o = fk_objs; o; o = o->next)
        if (o->kind == FK_STREAM) while (fk_run_one(o)) {}
}

/* A new allocation's fate: OUT_OF_MEMORY when it is the one asked to fail. */
static CUresult fk_alloc_check(void) {
    fk_alloc_count++;
    return fk_fail_alloc_at && fk_alloc_count == fk_fail_alloc_at ? FK_OUT_OF_MEMORY : FK_OK;
}

static fk_ptr fk_addr(size_t size) {
    fk_ptr a = fk_next_addr;
    fk_next_addr += ((fk_ptr)size + 4095u) & ~(fk_ptr)4095u;
    fk_next_addr += 4096u;   /* a gap: a copy past the end cannot land in the next one */
    return a;
}

/* ---------------------------------------------------------------------------------------------
   entry points */
static CUresult fk_GetErrorName(CUresult e, const char **s) {
    static const struct { int e; const char *s;
    } names[] = {{FK_OK, "CUDA_SUCCESS"},
                 {FK_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE"},
                 {FK_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY"},
                 {FK_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED"},
                 {FK_NO_DEVICE, "CUDA_ERROR_NO_DEVICE"},
                 {FK_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE"},
                 {FK_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT"},
                 {FK_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE"},
                 {FK_NOT_FOUND, "CUDA_ERROR_NOT_FOUND"},
                 {FK_NOT_READY, "CUDA_ERROR_NOT_READY"},
                 {FK_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS"},
                 {FK_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED"},
                 {FK_NOT_REGISTERED, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED"}};
    size_t i;
    if (!s) return FK_INVALID_VALUE;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].e == e) { *s = names[i].s; return FK_OK; }
    *s = NULL;
    return FK_INVALID_VALUE;
}

static CUresult fk_Init(unsigned flags) {
    pthread_mutex_lock(&fk_mu);
    fk_calls++;
    if (flags != 0) FK_RETURN(FK_INVALID_VALUE);
    if (fk_no_device) FK_RETURN(FK_NO_DEVICE);
    fk_initialized = 1;
    FK_RETURN(FK_OK);
}

static CUresult fk_DriverGetVersion(int *v) {
    if (!v) return FK_INVALID_VALUE;
    *v = 12080;
    return FK_OK;
}

static CUresult fk_DeviceGetCount(int *n) {
    FK_ENTER();
    *n = (int)fk_devices;
    FK_RETURN(FK_OK);
}

static CUresult fk_DeviceGet(int *d, int ordinal) {
    FK_ENTER();
    if (ordinal < 0 || ordinal >= fk_devices) FK_RETURN(FK_INVALID_DEVICE);
    *d = ordinal;
    FK_RETURN(FK_OK);
}

static CUresult fk_DeviceGetName(char *name, int len, int d) {
    FK_ENTER();
    if (d < 0 || d >= fk_devices) FK_RETURN(FK_INVALID_DEVICE);
    if (!name || len <= 0) FK_RETURN(FK_INVALID_VALUE);
    snprintf(name, (size_t)len, "Fake CUDA Device %d", d);
    FK_RETURN(FK_OK);
}

static CUresult fk_DeviceGetAttribute(int *v, int attr, int d) {
    FK_ENTER();
    if (d < 0 || d >= fk_devices) FK_RETURN(FK_INVALID_DEVICE);
    *v = attr == 19 || attr == 41 ? 1 : attr == 83 ? (int)fk_managed : 0;
    FK_RETURN(FK_OK);
}

static CUresult fk_DeviceTotalMem(size_t *bytes, int d) {
    FK_ENTER();
    if (d < 0 || d >= fk_devices) FK_RETURN(FK_INVALID_DEVICE);
    *bytes = FK_TOTAL_MEM;
    FK_RETURN(FK_OK);
}

static CUresult fk_DevicePrimaryCtxRetain(void **ctx, int d) {
    FK_ENTER();
    if (d < 0 || d >= fk_devices) FK_RETURN(FK_INVALID_DEVICE);
    fk_ctx_refs++;
    *ctx = &fk_ctx_token;
    FK_RETURN(FK_OK);
}

/* Works when lost (it is how a process recovers); the last reference reclaims everything. */
static CUresult fk_DevicePrimaryCtxRelease(int d) {
    pthread_mutex_lock(&fk_mu);
    if (d < 0 || d >= fk_devices || fk_ctx_refs == 0) FK_RETURN(FK_INVALID_CONTEXT);
    if (--fk_ctx_refs == 0) {
        while (fk_objs) {
            fk_reclaimed++;
            fk_drop(fk_objs);
        }
        fk_lost = 0;
    }
    FK_RETURN(FK_OK);
}

static CUresult fk_CtxPushCurrent(void *ctx) {
    pthread_mutex_lock(&fk_mu);
    if (ctx != &fk_ctx_token || fk_ctx_refs == 0) FK_RETURN(FK_INVALID_CONTEXT);
    fk_depth++;
    FK_RETURN(FK_OK);
}

static CUresult fk_CtxPopCurrent(void **ctx) {
    if (fk_depth == 0) return FK_INVALID_CONTEXT;
    fk_depth--;
    if (ctx) *ctx = &fk_ctx_token;
    return FK_OK;
}

static CUresult fk_StreamCreate(fk_obj **s, unsigned flags) {
    FK_ENTER_CTX();
    if (flags > 1) FK_RETURN(FK_INVALID_VALUE);
    if (!(*s = fk_new(FK_STREAM))) FK_RETURN(FK_OUT_OF_MEMORY);
    FK_RETURN(FK_OK);
}

static CUresult fk_StreamDestroy(fk_obj *s) {
    FK_ENTER_CTX();
    if (!fk_valid(s, FK_STREAM)) FK_RETURN(FK_INVALID_HANDLE);
    while (fk_run_one(s)) {}
    fk_drop(s);
    FK_RETURN(FK_OK);
}

static CUresult fk_StreamSynchronize(fk_obj *s) {
    FK_ENTER();
    if (!fk_valid(s, FK_STREAM)) FK_RETURN(FK_INVALID_HANDLE);
    while (fk_run_one(s)) {}
    FK_RETURN(FK_OK);
}

static CUresult fk_EventCreate(fk_obj **ev, unsigned flags) {
    FK_ENTER_CTX();
    if (flags > 7) FK_RETURN(FK_INVALID_VALUE);
    if (!(*ev = fk_new(FK_EVENT))) FK_RETURN(FK_OUT_OF_MEMORY);
    FK_RETURN(FK_OK);
}

static CUresult fk_EventDestroy(fk_obj *ev) {
    FK_ENTER();
    if (!fk_valid(ev, FK_EVENT)) FK_RETURN(FK_INVALID_HANDLE);
    fk_drop(ev);
    FK_RETURN(FK_OK);
}

static CUresult fk_EventRecord(fk_obj *ev, fk_obj *s) {
    FK_ENTER();
    if (!fk_valid(ev, FK_EVENT) || !fk_valid(s, FK_STREAM)) FK_RETURN(FK_INVALID_HANDLE);
    ev->stream = s;
    ev->target = s->queued;
    FK_RETURN(FK_OK);
}

static CUresult fk_EventQuery(fk_obj *ev) {
    FK_ENTER();
    if (!fk_valid(ev, FK_EVENT)) FK_RETURN(FK_INVALID_HANDLE);
    if (!ev->stream || ev->stream->ran >= ev->target) FK_RETURN(FK_OK);
    fk_run_one(ev->stream);   /* the "device" moves on a step per look */
    if (ev->stream->ran >= ev->target) FK_RETURN(FK_OK);
    fk_not_ready++;
    FK_RETURN(FK_NOT_READY);
}

static CUresult fk_EventSynchronize(fk_obj *ev) {
    FK_ENTER();
    if (!fk_valid(ev, FK_EVENT)) FK_RETURN(FK_INVALID_HANDLE);
    while (ev->stream && ev->stream->ran < ev->target) fk_run_one(ev->stream);
    FK_RETURN(FK_OK);
}

static CUresult fk_alloc_mem(int kind, fk_ptr *d, void **h, size_t size) {
    CUresult e;
    fk_obj *o;
    void *p;
    if (size == 0) return FK_INVALID_VALUE;
    if ((e = fk_alloc_check()) != FK_OK) return e;
    if (size > FK_TOTAL_MEM || !(p = calloc(1, size))) return FK_OUT_OF_MEMORY;
    if (!(o = fk_new(kind))) {
        free(p);
        return FK_OUT_OF_MEMORY;
    }
    o->host = p;
    o->size = size;
    o->dptr = kind == FK_MANAGED ? (fk_ptr)(uintptr_t)p : fk_addr(size);
    if (d) *d = o->dptr;
    if (h) *h = p;
    return FK_OK;
}

static CUresult fk_MemAlloc(fk_ptr *d, size_t size) {
    FK_ENTER_CTX();
    if (!d) FK_RETURN(FK_INVALID_VALUE);
    FK_RETURN(fk_alloc_mem(FK_DEV, d, NULL, size));
}

static CUresult fk_MemAllocManaged(fk_ptr *d, size_t size, unsigned flags) {
    FK_ENTER_CTX();
    if (!d || (flags != 1 && flags != 2)) FK_RETURN(FK_INVALID_VALUE);
    FK_RETURN(fk_alloc_mem(FK_MANAGED, d, NULL, size));
}

static CUresult fk_MemHostAlloc(void **p, size_t size, unsigned flags) {
    FK_ENTER_CTX();
    if (!p || flags > 7) FK_RETURN(FK_INVALID_VALUE);
    FK_RETURN(fk_alloc_mem(FK_HOST, NULL, p, size));
}

static CUresult fk_MemFree(fk_ptr d) {
    fk_obj *o;
    FK_ENTER_CTX();
    if (!(o = fk_find(FK_DEV, d, NULL)) && !(o = fk_find(FK_MANAGED, d, NULL))) FK_RETURN(FK_INVALID_VALUE);
    fk_run_all();
    fk_drop(o);
    FK_RETURN(FK_OK);
}

static CUresult fk_MemFreeHost(void *p) {
    fk_obj *o;
    FK_ENTER_CTX();
    if (!p || !(o = fk_find(FK_HOST, 0, p))) FK_RETURN(FK_INVALID_VALUE);
    fk_run_all();
    fk_drop(o);
    FK_RETURN(FK_OK);
}

static CUresult fk_MemHostGetDevicePointer(fk_ptr *d, void *p, unsigned flags) {
    fk_obj *o;
    FK_ENTER_CTX();
    if (!d || !p || flags != 0) FK_RETURN(FK_INVALID_VALUE);
    for (o = fk_objs; o; o = o->next)
        if ((o->kind == FK_HOST || o->kind == FK_REG) && (char *)p >= (char *)o->host &&
            (char *)p < (char *)o->host + o->size) {
            *d = o->dptr + (fk_ptr)((char *)p - (char *)o->host);
            FK_RETURN(FK_OK);
        }
    FK_RETURN(FK_INVALID_VALUE);
}

static CUresult fk_MemHostRegister(void *p, size_t size, unsigned flags) {
    fk_obj *o;
    CUresult e;
    FK_ENTER_CTX();
    if (!p || size == 0 || flags > 15) FK_RETURN(FK_INVALID_VALUE);
    for (o = fk_objs; o; o = o->next)
        if (o->kind == FK_REG && (char *)p < (char *)o->host + o->size && (char *)o->host < (char *)p + size)
            FK_RETURN(FK_ALREADY_REGISTERED);
    if ((e = fk_alloc_check()) != FK_OK) FK_RETURN(e);
    if (!(o = fk_new(FK_REG))) FK_RETURN(FK_OUT_OF_MEMORY);
    o->host = p;
    o->size = size;
    o->dptr = fk_addr(size);
    FK_RETURN(FK_OK);
}

static CUresult fk_MemHostUnregister(void *p) {
    fk_obj *o;
    FK_ENTER_CTX();
    if (!p || !(o = fk_find(FK_REG, 0, p))) FK_RETURN(FK_NOT_REGISTERED);
    fk_run_all();
    fk_drop(o);
    FK_RETURN(FK_OK);
}

static CUresult fk_MemcpyAsync(fk_ptr dst, fk_ptr src, size_t n, fk_obj *s) {
    void *d, *sp;
    FK_ENTER_CTX();
    if (!fk_valid(s, FK_STREAM)) FK_RETURN(FK_INVALID_HANDLE);
    if (n == 0) FK_RETURN(FK_OK);
    if (!(d = fk_xlate(dst, n)) || !(sp = fk_xlate(src, n))) FK_RETURN(FK_INVALID_VALUE);
    if (s->queued == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        fk_op *ops = (fk_op *)realloc(s->ops, ncap * sizeof *ops);
        if (!ops) FK_RETURN(FK_OUT_OF_MEMORY);
        s->ops = ops;
        s->cap = ncap;
    }
    s->ops[s->queued].dst = d;
    s->ops[s->queued].src = sp;
    s->ops[s->queued].n = n;
    s->queued++;
    FK_RETURN(FK_OK);
}

static CUresult fk_MemGetInfo(size_t *fr, size_t *total) {
    const fk_obj *o;
    size_t used = 0;
    FK_ENTER_CTX();
    for (o = fk_objs; o; o = o->next)
        if (o->kind == FK_DEV || o->kind == FK_MANAGED) used += o->size;
    *total = FK_TOTAL_MEM;
    *fr = used < FK_TOTAL_MEM ? FK_TOTAL_MEM - used : 0;
    FK_RETURN(FK_OK);
}

/* ---------------------------------------------------------------------------------------------
   lookup */
typedef void (*fk_fn)(void);
#define FK_FN(name, version) {"cu" #name, version, (fk_fn)fk_##name}
static const struct { const char *name; int version; fk_fn fn;
} fk_table[] = {FK_FN(GetErrorName, 6000),
                FK_FN(Init, 2000),
                FK_FN(DriverGetVersion, 2020),
                FK_FN(DeviceGetCount, 2000),
                FK_FN(DeviceGet, 2000),
                FK_FN(DeviceGetName, 2000),
                FK_FN(DeviceGetAttribute, 2000),
                FK_FN(DeviceTotalMem, 3020),
                FK_FN(DevicePrimaryCtxRetain, 7000),
                FK_FN(DevicePrimaryCtxRelease, 11000),
                FK_FN(CtxPushCurrent, 4000),
                FK_FN(CtxPopCurrent, 4000),
                FK_FN(StreamCreate, 2000),
                FK_FN(StreamDestroy, 4000),
                FK_FN(StreamSynchronize, 2000),
                FK_FN(EventCreate, 2000),
                FK_FN(EventDestroy, 4000),
                FK_FN(EventRecord, 2000),
                FK_FN(EventQuery, 2000),
                FK_FN(EventSynchronize, 2000),
                FK_FN(MemAlloc, 3020),
                FK_FN(MemFree, 3020),
                FK_FN(MemHostAlloc, 2020),
                FK_FN(MemFreeHost, 2000),
                FK_FN(MemHostGetDevicePointer, 3020),
                FK_FN(MemAllocManaged, 6000),
                FK_FN(MemHostRegister, 6050),
                FK_FN(MemHostUnregister, 4000),
                FK_FN(MemcpyAsync, 4000),
                FK_FN(MemGetInfo, 3020)};

static CUresult fk_lookup(const char *symbol, void **pfn, int version, int *status) {
    size_t i;
    int st = 1;
    if (!symbol || !pfn) return FK_INVALID_VALUE;
    *pfn = NULL;
    for (i = 0; i < sizeof fk_table / sizeof fk_table[0]; i++) {
        if (strcmp(fk_table[i].name, symbol) != 0) continue;
        if (version >= fk_table[i].version) {
            memcpy(pfn, &fk_table[i].fn, sizeof *pfn);
            if (status) *status = 0;
            return FK_OK;
        }
        st = 2;
        break;
    }
    pthread_mutex_lock(&fk_mu);
    fk_bad_lookups++;
    pthread_mutex_unlock(&fk_mu);
    if (status) *status = st;
    return FK_NOT_FOUND;
}

CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags);
CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags) {
    (void)flags;
    pthread_mutex_lock(&fk_mu);
    fk_lookups_v1++;
    pthread_mutex_unlock(&fk_mu);
    return fk_lookup(symbol, pfn, version, NULL);
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags,
                             int *status);
CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags,
                             int *status) {
    (void)flags;
    pthread_mutex_lock(&fk_mu);
    fk_lookups_v2++;
    pthread_mutex_unlock(&fk_mu);
    return fk_lookup(symbol, pfn, version, status);
}

long fakecuda_live(void);
long fakecuda_live(void) {
    long n;
    pthread_mutex_lock(&fk_mu);
    n = fk_nobjs + fk_ctx_refs;
    pthread_mutex_unlock(&fk_mu);
    return n;
}

long fakecuda_control(const char *what, long n);
long fakecuda_control(const char *what, long n) {
    long r = 0;
    const fk_obj *o;
    pthread_mutex_lock(&fk_mu);
    if (!strcmp(what, "reset")) {
        fk_no_device = 0, fk_devices = 1, fk_managed = 1, fk_fail_alloc_at = 0, fk_lost_at = -1, fk_lost = 0;
        fk_reclaimed = fk_calls = fk_alloc_count = fk_lookups_v1 = fk_lookups_v2 = fk_bad_lookups = 0;
        fk_not_ready = fk_copies_run = 0;
    } else if (!strcmp(what, "no_device")) fk_no_device = n;
    else if (!strcmp(what, "devices")) fk_devices = n;
    else if (!strcmp(what, "managed")) fk_managed = n;
    else if (!strcmp(what, "fail_alloc")) fk_fail_alloc_at = n > 0 ? fk_alloc_count + n : 0;
    else if (!strcmp(what, "lost_after")) fk_lost_at = n >= 0 ? fk_calls + n : -1;
    else if (!strcmp(what, "live")) r = fk_nobjs + fk_ctx_refs;
    else if (!strcmp(what, "reclaimed")) r = fk_reclaimed;
    else if (!strcmp(what, "calls")) r = fk_calls;
    else if (!strcmp(what, "depth")) r = fk_depth;
    else if (!strcmp(what, "lookups_v1")) r = fk_lookups_v1;
    else if (!strcmp(what, "lookups_v2")) r = fk_lookups_v2;
    else if (!strcmp(what, "bad_lookups")) r = fk_bad_lookups;
    else if (!strcmp(what, "not_ready")) r = fk_not_ready;
    else if (!strcmp(what, "copies_run")) r = fk_copies_run;
    else if (!strcmp(what, "pending")) {
        for (o = fk_objs; o; o = o->next)
            if (o->kind == FK_STREAM) r += (long)(o->queued - o->ran);
    } else r = -1;
    pthread_mutex_unlock(&fk_mu);
    return r;
}
