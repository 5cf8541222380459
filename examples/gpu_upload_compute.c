// link: -ldl
/* gpu_upload_compute.c - upload -> compute -> download with buffet_gpu.h on whichever backend
   answers (CUDA, else Vulkan, else the host backend; BUFFET_GPU_BACKEND=host|vulkan|cuda picks
   one). A chain of packet-sized host buffers is uploaded into a device-local buffer; on Vulkan the
   compute shader of examples/shaders/transform.comp (out[i] = in[i] * 2654435761 + 1) runs on it,
   recorded and submitted on the device and queue buffet uses (buffet_gpu_vulkan_handles); on the
   host backend and CUDA (a .c file has no kernel compiler) the host applies the same transform to
   the readback memory. Every word is checked. Vulkan's header is used when it is installed, and
   no libvulkan symbol is linked: the functions come from buffet's vkGetInstanceProcAddr.
   Build: cc -std=c11 -O2 -pthread examples/gpu_upload_compute.c -ldl -o gpu_upload_compute */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"

#include <sys/uio.h>

#if defined(__has_include) && !defined(GPU_EXAMPLE_NO_VULKAN_HEADER)
#  if __has_include(<vulkan/vulkan.h>)
#    include <vulkan/vulkan.h>
#    include "shaders/transform_spv.h"
#    define HAVE_VULKAN_HEADER 1
#  endif
#endif

#define WORDS (1u << 20)            /* 4 MiB of uint32 */
#define MUL 2654435761u

static uint32_t input(uint32_t i) { return i * 0x9E3779B9u ^ 0xC0FFEEu; }

#ifdef HAVE_VULKAN_HEADER
/* A 64-bit buffet handle as a VkBuffer (a pointer on 64-bit hosts, a uint64_t on 32-bit ones). */
static VkBuffer vk_buffer(uint64_t h) { VkBuffer b; memcpy(&b, &h, sizeof b); return b; }

/* dst = transform(src) with the compute shader, on buffet's own device and queue. buffet submits
   its copies to that queue under its own lock: our vkQueueSubmit must not run beside one of its
   transfers, so we wait for buffet to be idle first and start no transfer until our fence passed. */
static int vulkan_transform(buffet_gpu_device *d, buffet_buf *src, buffet_buf *dst, uint32_t n) {
    buffet_gpu_vulkan_desc h;
    buffet_gpu_native ns, nd;
    buffet_gpu_vulkan_handles(d, &h);
    buffet_gpu_buf_native(src, &ns);
    buffet_gpu_buf_native(dst, &nd);
    VkDevice dev = (VkDevice)h.device;
    PFN_vkGetInstanceProcAddr gipa = (PFN_vkGetInstanceProcAddr)h.get_instance_proc_addr;
    PFN_vkGetDeviceProcAddr gdpa;
    gdpa = (PFN_vkGetDeviceProcAddr)gipa((VkInstance)h.instance, "vkGetDeviceProcAddr");
#define VK(name) PFN_vk##name name = (PFN_vk##name)gdpa(dev, "vk" #name)
    VK(GetDeviceQueue); VK(CreateDescriptorSetLayout); VK(DestroyDescriptorSetLayout);
    VK(CreatePipelineLayout); VK(DestroyPipelineLayout); VK(CreateShaderModule); VK(DestroyShaderModule);
    VK(CreateComputePipelines); VK(DestroyPipeline); VK(CreateDescriptorPool); VK(DestroyDescriptorPool);
    VK(AllocateDescriptorSets); VK(UpdateDescriptorSets); VK(CreateCommandPool); VK(DestroyCommandPool);
    VK(AllocateCommandBuffers); VK(BeginCommandBuffer); VK(EndCommandBuffer); VK(CmdBindPipeline);
    VK(CmdBindDescriptorSets); VK(CmdPushConstants); VK(CmdDispatch); VK(CmdPipelineBarrier);
    VK(CreateFence); VK(DestroyFence); VK(WaitForFences); VK(QueueSubmit);
#undef VK
    VkQueue queue;
    GetDeviceQueue(dev, h.queue_family, h.queue_index, &queue);

    /* the pipeline: two storage buffers and a push constant n */
    const VkDescriptorType storage = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    const VkShaderStageFlags compute = VK_SHADER_STAGE_COMPUTE_BIT;
    VkDescriptorSetLayoutBinding bind[2] = {{0, storage, 1, compute, NULL}, {1, storage, 1, compute, NULL}};
    VkDescriptorSetLayoutCreateInfo dli = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, NULL, 0, 2,
                                           bind};
    VkDescriptorSetLayout dsl;
    CreateDescriptorSetLayout(dev, &dli, NULL, &dsl);
    VkPushConstantRange push = {VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof n};
    VkPipelineLayoutCreateInfo pli = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 1, &dsl, 1,
                                      &push};
    VkPipelineLayout layout;
    CreatePipelineLayout(dev, &pli, NULL, &layout);
    VkShaderModuleCreateInfo smi = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0,
                                    sizeof buffet_test_transform_spv, buffet_test_transform_spv};
    VkShaderModule shader;
    CreateShaderModule(dev, &smi, NULL, &shader);
    VkComputePipelineCreateInfo cpi = {VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, NULL, 0,
        {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0, VK_SHADER_STAGE_COMPUTE_BIT, shader,
         "main", NULL}, layout, VK_NULL_HANDLE, 0};
    VkPipeline pipeline;
    VkResult r = CreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpi, NULL, &pipeline);

    /* the descriptor set: the buffers are ranges of buffet's VkBuffers */
    VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 2};
    VkDescriptorPoolCreateInfo dpi = {VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, NULL, 0, 1, 1, &ps};
    VkDescriptorPool pool;
    CreateDescriptorPool(dev, &dpi, NULL, &pool);
    VkDescriptorSetAllocateInfo dsa = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, NULL, pool, 1, &dsl};
    VkDescriptorSet set;
    AllocateDescriptorSets(dev, &dsa, &set);
    VkDescriptorBufferInfo bi[2] = {{vk_buffer(ns.buffer), ns.offset, (VkDeviceSize)n * 4},
                                    {vk_buffer(nd.buffer), nd.offset, (VkDeviceSize)n * 4}};
    const VkStructureType write = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    VkWriteDescriptorSet w[2] = {{write, NULL, set, 0, 0, 1, storage, NULL, &bi[0], NULL},
                                 {write, NULL, set, 1, 0, 1, storage, NULL, &bi[1], NULL}};
    UpdateDescriptorSets(dev, 2, w, 0, NULL);

    /* record: buffet's upload copies -> the shader -> buffet's download copies */
    VkCommandPoolCreateInfo cpci = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL, 0, h.queue_family};
    VkCommandPool cmd_pool;
    CreateCommandPool(dev, &cpci, NULL, &cmd_pool);
    VkCommandBufferAllocateInfo cba = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, cmd_pool,
                                       VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    VkCommandBuffer cmd;
    AllocateCommandBuffers(dev, &cba, &cmd);
    VkCommandBufferBeginInfo cbi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                    VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
    BeginCommandBuffer(cmd, &cbi);
    VkMemoryBarrier before = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, VK_ACCESS_TRANSFER_WRITE_BIT,
                              VK_ACCESS_SHADER_READ_BIT};
    VkMemoryBarrier after = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, VK_ACCESS_SHADER_WRITE_BIT,
                             VK_ACCESS_TRANSFER_READ_BIT};
    CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0,
                       1, &before, 0, NULL, 0, NULL);
    CmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
    CmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
    CmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof n, &n);
    CmdDispatch(cmd, (n + 63) / 64, 1, 1);
    CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                       1, &after, 0, NULL, 0, NULL);
    EndCommandBuffer(cmd);

    /* submit when buffet has nothing in flight on the queue, and wait */
    VkFenceCreateInfo fci = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, NULL, 0};
    VkFence fence;
    CreateFence(dev, &fci, NULL, &fence);
    VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO, NULL, 0, NULL, NULL, 1, &cmd, 0, NULL};
    buffet_gpu_wait_idle(d);
    if (r == VK_SUCCESS) r = QueueSubmit(queue, 1, &si, fence);
    if (r == VK_SUCCESS) r = WaitForFences(dev, 1, &fence, VK_TRUE, UINT64_MAX);

    DestroyFence(dev, fence, NULL);
    DestroyCommandPool(dev, cmd_pool, NULL);        /* and its command buffer */
    DestroyDescriptorPool(dev, pool, NULL);         /* and its set */
    DestroyPipeline(dev, pipeline, NULL);
    DestroyShaderModule(dev, shader, NULL);
    DestroyPipelineLayout(dev, layout, NULL);
    DestroyDescriptorSetLayout(dev, dsl, NULL);
    return r == VK_SUCCESS;
}
#endif

int main(void) {
    const char *env = getenv("BUFFET_GPU_BACKEND");
    buffet_gpu_device_desc dd;
    memset(&dd, 0, sizeof dd);
    dd.backend = !env ? BUFFET_GPU_AUTO : !strcmp(env, "host") ? BUFFET_GPU_HOST
               : !strcmp(env, "vulkan") ? BUFFET_GPU_VULKAN
               : !strcmp(env, "cuda") ? BUFFET_GPU_CUDA : BUFFET_GPU_AUTO;
    buffet_gpu_device *d;
    buffet_result res = buffet_gpu_device_create(&d, &dd);
    if (res != BUFFET_OK) {
        fprintf(stderr, "gpu_upload_compute: no device: %s\n", buffet_result_str(res));
        return 1;
    }
    buffet_gpu_info info = buffet_gpu_get_info(d);
    printf("backend %s, device \"%s\"\n", info.backend_name, info.device_name);

    /* 1. the input: a chain of packet-sized host buffers (600..1499 bytes), as a network stack
          hands them over */
    buffet_chain in, out;
    buffet_chain_init(&in, buffet_heap());
    buffet_chain_init(&out, buffet_heap());
    uint32_t *words = (uint32_t *)malloc((size_t)WORDS * 4);
    for (uint32_t i = 0; i < WORDS; i++) words[i] = input(i);
    for (size_t at = 0, piece; at < (size_t)WORDS * 4; at += piece) {
        piece = 600 + at % 900 < (size_t)WORDS * 4 - at ? 600 + at % 900 : (size_t)WORDS * 4 - at;
        buffet_buf *b;
        buffet_buf_desc bd;
        memset(&bd, 0, sizeof bd);
        bd.size = piece;
        if (buffet_buf_create(&b, &bd) != BUFFET_OK) return 1;
        memcpy(b->data, (unsigned char *)words + at, piece);
        buffet_chain_append(&in, b, 0, piece);      /* the chain holds its own reference */
        buffet_buf_unref(b);
    }
    printf("upload: %zu bytes in %zu packets\n", in.len, in.count);

    /* 2. upload into device-local memory (gathered through staging memory, copied by the device) */
    buffet_gpu_buf_desc bd;
    memset(&bd, 0, sizeof bd);
    bd.size = (uint64_t)WORDS * 4;
    bd.intent = BUFFET_GPU_DEVICE_LOCAL;
    buffet_buf *src = NULL, *dst = NULL;
    if (buffet_gpu_buf_create(d, &bd, &src) != BUFFET_OK || buffet_gpu_buf_create(d, &bd, &dst) != BUFFET_OK
        || buffet_gpu_upload(d, src, 0, &in, NULL) != BUFFET_OK)
        return 1;

    /* 3. compute and download: the shader on Vulkan, else the host over the readback memory */
    int on_gpu = 0;
#ifdef HAVE_VULKAN_HEADER
    if (info.backend == BUFFET_GPU_VULKAN) {
        if (!vulkan_transform(d, src, dst, WORDS)) return 1;
        on_gpu = 1;
        printf("compute: the transform shader ran on the device\n");
    }
#endif
    if (buffet_gpu_download(d, on_gpu ? dst : src, 0, (uint64_t)WORDS * 4, &out, NULL) != BUFFET_OK) return 1;
    if (!on_gpu) {
        struct iovec iov[16];
        size_t n = buffet_chain_iovec(&out, 0, out.len, iov, 16);
        for (size_t s = 0; s < n; s++) {            /* readback buffers: whole words each */
            uint32_t *p = (uint32_t *)iov[s].iov_base;
            for (size_t i = 0; i < iov[s].iov_len / 4; i++) p[i] = p[i] * MUL + 1u;
        }
        printf("compute: the HOST did the compute step (no shader on the %s backend), "
               "in %zu readback slice(s)\n", info.backend_name, n);
    }

    /* 4. check every word */
    size_t bad = out.len == (size_t)WORDS * 4 ? 0 : 1;
    if (!bad) buffet_chain_copy_out(&out, 0, words, out.len);
    for (uint32_t i = 0; !bad && i < WORDS; i++) bad += words[i] != input(i) * MUL + 1u;
    buffet_gpu_stats st = buffet_gpu_get_stats(d);
    printf("download: %zu bytes; %s; %llu device allocations, %llu copy commands\n", out.len,
           bad ? "WRONG" : "every word right", (unsigned long long)st.device_allocations,
           (unsigned long long)st.copy_commands);

    free(words);
    buffet_chain_deinit(&out);
    buffet_chain_deinit(&in);
    buffet_buf_unref(src);
    buffet_buf_unref(dst);
    buffet_gpu_device_destroy(d);
    return bad ? 1 : 0;
}
