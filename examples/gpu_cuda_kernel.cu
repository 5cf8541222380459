/* gpu_cuda_kernel.cu - a CUDA kernel working on a buffet GPU buffer. buffet opens the device
   through the driver API (its own primary context: the same one the runtime API uses, so the
   buffer's address is valid in the kernel), makes a device-local buffer, uploads a chain of host
   bytes into it; the kernel runs on the buffer in place (its address from buffet_gpu_buf_native);
   buffet downloads the result into a chain, which is checked. Without a CUDA device it says so and
   exits 0.
   Build: nvcc -std=c++17 -O2 examples/gpu_cuda_kernel.cu -o gpu_cuda_kernel -ldl */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"

#include <cuda_runtime.h>

#define N (1u << 20)

/* x[i] = x[i] * a + i: every element changes, so a missed upload or download shows. */
__global__ void scale_add(float *x, unsigned n, float a) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] * a + (float)i;
}

static int fail(const char *what, buffet_result r) {
    fprintf(stderr, "gpu_cuda_kernel: %s failed: %s\n", what, buffet_result_str(r));
    return 1;
}

int main(void) {
    buffet_gpu_device_desc dd;
    memset(&dd, 0, sizeof dd);
    dd.backend = BUFFET_GPU_CUDA;
    dd.device_index = 0;
    buffet_gpu_device *dev = NULL;
    buffet_result r = buffet_gpu_device_create(&dev, &dd);
    if (r == BUFFET_ERR_NO_DEVICE) {
        printf("gpu_cuda_kernel: no CUDA device here (no driver or no GPU): nothing to do\n");
        return 0;
    }
    if (r != BUFFET_OK) return fail("buffet_gpu_device_create", r);
    buffet_gpu_info info = buffet_gpu_get_info(dev);
    printf("gpu_cuda_kernel: %s (%s)\n", info.device_name, info.backend_name);

    /* the device buffer, and its address for the kernel */
    buffet_gpu_buf_desc bd;
    memset(&bd, 0, sizeof bd);
    bd.size = (uint64_t)N * sizeof(float);
    bd.intent = BUFFET_GPU_DEVICE_LOCAL;
    bd.name = "kernel data";
    buffet_buf *gpu = NULL;
    if ((r = buffet_gpu_buf_create(dev, &bd, &gpu)) != BUFFET_OK) return fail("buffet_gpu_buf_create", r);
    buffet_gpu_native nat;
    if ((r = buffet_gpu_buf_native(gpu, &nat)) != BUFFET_OK) return fail("buffet_gpu_buf_native", r);

    /* the input: a chain of two host buffers (any chain will do), uploaded in one call */
    buffet_chain in;
    buffet_chain_init(&in, buffet_heap());
    for (unsigned part = 0; part < 2; part++) {
        buffet_buf_desc hd;
        memset(&hd, 0, sizeof hd);
        hd.size = N / 2 * sizeof(float);
        buffet_buf *h = NULL;
        if ((r = buffet_buf_create(&h, &hd)) != BUFFET_OK) return fail("buffet_buf_create", r);
        float *f = (float *)h->data;
        for (unsigned i = 0; i < N / 2; i++) f[i] = (float)((part * (N / 2) + i) % 1000);
        r = buffet_chain_append(&in, h, 0, hd.size);
        buffet_buf_unref(h);   /* the chain holds it */
        if (r != BUFFET_OK) return fail("buffet_chain_append", r);
    }
    if ((r = buffet_gpu_upload(dev, gpu, 0, &in, NULL)) != BUFFET_OK) return fail("buffet_gpu_upload", r);
    buffet_chain_deinit(&in);

    /* the kernel, on the buffer in place; buffet's copies run on a stream of their own, so the
       kernel is waited for before the download */
    cudaSetDevice((int)dd.device_index);
    scale_add<<<(N + 255) / 256, 256>>>((float *)(uintptr_t)nat.address, N, 2.0f);
    cudaError_t ce = cudaDeviceSynchronize();
    if (ce == cudaSuccess) ce = cudaGetLastError();
    if (ce != cudaSuccess) {
        fprintf(stderr, "gpu_cuda_kernel: the kernel failed: %s\n", cudaGetErrorString(ce));
        return 1;
    }

    /* the result, into a chain (of readback buffers), checked */
    buffet_chain out;
    buffet_chain_init(&out, buffet_heap());
    if ((r = buffet_gpu_download(dev, gpu, 0, bd.size, &out, NULL)) != BUFFET_OK)
        return fail("buffet_gpu_download", r);
    float *res = (float *)malloc(bd.size);
    if (!res) return fail("malloc", BUFFET_ERR_NOMEM);
    if ((r = buffet_chain_copy_out(&out, 0, res, bd.size)) != BUFFET_OK)
        return fail("buffet_chain_copy_out", r);
    unsigned bad = 0;
    for (unsigned i = 0; i < N; i++) bad += res[i] != (float)(i % 1000) * 2.0f + (float)i;
    free(res);
    buffet_chain_deinit(&out);
    buffet_buf_unref(gpu);
    buffet_gpu_device_destroy(dev);
    if (bad) {
        fprintf(stderr, "gpu_cuda_kernel: %u of %u values wrong\n", bad, N);
        return 1;
    }
    printf("gpu_cuda_kernel: %u values through upload, kernel and download: all right\n", N);
    return 0;
}
