// pkg-config: vulkan
// link: -ldl
/* test_gpu_vulkan_compute.c - buffet_gpu.h's Vulkan device used next to the caller's own Vulkan
   work, as an engine would: (a) a chain of ~1,300 packet-sized host buffers (some pinned) uploaded
   into a device-local buffer, transformed by a compute shader (examples/shaders/transform.comp)
   recorded, submitted and fenced by the test on buffet's device and queue, downloaded into a chain
   and checked word by word; (b) 12 frames, 3 in flight: each frame's buffet_gpu_frame_alloc memory
   is written by the host and copied by the test's own command buffer (fenced per frame) into a
   device-local buffer, frame k's memory never overlapping that of the live frames k-1 and k-2;
   (c) user mode: a second device over the handles of the first (no instance or device of its
   own) uploads, computes, downloads, and the first still works after it is destroyed.
   Every Vulkan function comes from the vkGetInstanceProcAddr that buffet_gpu_vulkan_handles
   returns (no libvulkan symbol is linked). Validation is on; any message fails the test.

   The queue rule: buffet submits its copies to the queue of buffet_gpu_vulkan_handles under its
   own lock, which the caller cannot take, so the caller's vkQueueSubmit must never run at the
   same time as a buffet transfer (a Vulkan queue is externally synchronised). These tests drive
   everything from one thread, and before submitting compute work they call buffet_gpu_wait_idle,
   so that no buffet submission is in flight and the data it wrote is complete; barriers in the
   test's command buffers order the shader after buffet's copies and buffet's later copies after
   the shader. Needs a Vulkan driver (Mesa's lavapipe will do): without one each test SKIPs
   ("vulkan"); under valgrind they SKIP ("vulkan_valgrind"). C11 and C++17 (common subset). */
#define BUFFET_IMPLEMENTATION
#include "../buffet_gpu.h"
#include "bt.h"

#include <vulkan/vulkan.h>

#include "../examples/shaders/transform_spv.h"

#define TVC_MUL 2654435761u
#define TVC_FRAMES 12
#define TVC_IN_FLIGHT 3

/* The Vulkan functions the tests call, all through vkGetInstanceProcAddr / vkGetDeviceProcAddr. */
typedef struct tvc_vk {
    VkDevice dev;
    VkQueue queue;
    uint32_t family;
    PFN_vkGetDeviceQueue GetDeviceQueue;
    PFN_vkCreateDescriptorSetLayout CreateDescriptorSetLayout;
    PFN_vkDestroyDescriptorSetLayout DestroyDescriptorSetLayout;
    PFN_vkCreatePipelineLayout CreatePipelineLayout;
    PFN_vkDestroyPipelineLayout DestroyPipelineLayout;
    PFN_vkCreateShaderModule CreateShaderModule;
    PFN_vkDestroyShaderModule DestroyShaderModule;
    PFN_vkCreateComputePipelines CreateComputePipelines;
    PFN_vkDestroyPipeline DestroyPipeline;
    PFN_vkCreateDescriptorPool CreateDescriptorPool;
    PFN_vkDestroyDescriptorPool DestroyDescriptorPool;
    PFN_vkAllocateDescriptorSets AllocateDescriptorSets;
    PFN_vkUpdateDescriptorSets UpdateDescriptorSets;
    PFN_vkCreateCommandPool CreateCommandPool;
    PFN_vkDestroyCommandPool DestroyCommandPool;
    PFN_vkAllocateCommandBuffers AllocateCommandBuffers;
    PFN_vkResetCommandBuffer ResetCommandBuffer;
    PFN_vkBeginCommandBuffer BeginCommandBuffer;
    PFN_vkEndCommandBuffer EndCommandBuffer;
    PFN_vkCmdBindPipeline CmdBindPipeline;
    PFN_vkCmdBindDescriptorSets CmdBindDescriptorSets;
    PFN_vkCmdPushConstants CmdPushConstants;
    PFN_vkCmdDispatch CmdDispatch;
    PFN_vkCmdPipelineBarrier CmdPipelineBarrier;
    PFN_vkCmdCopyBuffer CmdCopyBuffer;
    PFN_vkCreateFence CreateFence;
    PFN_vkDestroyFence DestroyFence;
    PFN_vkWaitForFences WaitForFences;
    PFN_vkResetFences ResetFences;
    PFN_vkQueueSubmit QueueSubmit;
    PFN_vkFlushMappedMemoryRanges FlushMappedMemoryRanges;
} tvc_vk;

static bt_log tvc_log;

/* A 64-bit buffet handle as a Vulkan non-dispatchable handle (a pointer on 64-bit hosts, a
   uint64_t on 32-bit ones: the same 8 bytes either way). */
static VkBuffer tvc_buffer(uint64_t h) {
    VkBuffer b;
    memcpy(&b, &h, sizeof b < sizeof h ? sizeof b : sizeof h);
    return b;
}
static VkDeviceMemory tvc_memory(uint64_t h) {
    VkDeviceMemory m;
    memcpy(&m, &h, sizeof m < sizeof h ? sizeof m : sizeof h);
    return m;
}

/* Loads every function the tests use from the device buffet runs on; 0 when one is missing. */
static int tvc_load(tvc_vk *v, buffet_gpu_device *d) {
    buffet_gpu_vulkan_desc h;
    PFN_vkGetInstanceProcAddr gipa;
    PFN_vkGetDeviceProcAddr gdpa;
    memset(v, 0, sizeof *v);
    BT_CHECK(buffet_gpu_vulkan_handles(d, &h) == BUFFET_OK);
    if (!h.get_instance_proc_addr || !h.device) return 0;
    gipa = (PFN_vkGetInstanceProcAddr)h.get_instance_proc_addr;
    gdpa = (PFN_vkGetDeviceProcAddr)gipa((VkInstance)h.instance, "vkGetDeviceProcAddr");
    BT_CHECK(gdpa != NULL);
    if (!gdpa) return 0;
    v->dev = (VkDevice)h.device;
    v->family = h.queue_family;
#define TVC_FN(name) (v->name = (PFN_vk##name)gdpa(v->dev, "vk" #name)) != NULL
    if (!(TVC_FN(GetDeviceQueue) && TVC_FN(CreateDescriptorSetLayout) && TVC_FN(DestroyDescriptorSetLayout) &&
          TVC_FN(CreatePipelineLayout) && TVC_FN(DestroyPipelineLayout) && TVC_FN(CreateShaderModule) &&
          TVC_FN(DestroyShaderModule) && TVC_FN(CreateComputePipelines) && TVC_FN(DestroyPipeline) &&
          TVC_FN(CreateDescriptorPool) && TVC_FN(DestroyDescriptorPool) && TVC_FN(AllocateDescriptorSets) &&
          TVC_FN(UpdateDescriptorSets) && TVC_FN(CreateCommandPool) && TVC_FN(DestroyCommandPool) &&
          TVC_FN(AllocateCommandBuffers) && TVC_FN(ResetCommandBuffer) && TVC_FN(BeginCommandBuffer) &&
          TVC_FN(EndCommandBuffer) && TVC_FN(CmdBindPipeline) && TVC_FN(CmdBindDescriptorSets) &&
          TVC_FN(CmdPushConstants) && TVC_FN(CmdDispatch) && TVC_FN(CmdPipelineBarrier) &&
          TVC_FN(CmdCopyBuffer) && TVC_FN(CreateFence) && TVC_FN(DestroyFence) && TVC_FN(WaitForFences) &&
          TVC_FN(ResetFences) && TVC_FN(QueueSubmit) && TVC_FN(FlushMappedMemoryRanges))) {
        BT_CHECK(!"a Vulkan 1.0 device function is missing");
        return 0;
    }
#undef TVC_FN
    v->GetDeviceQueue(v->dev, h.queue_family, h.queue_index, &v->queue);
    return v->queue != NULL;
}

/* Opens a Vulkan device with validation (frames_in_flight and frame_size when not 0); NULL with a
   SKIP when no driver answers or under valgrind. */
static buffet_gpu_device *tvc_open(uint32_t frames_in_flight, uint64_t frame_size) {
    buffet_gpu_device_desc desc;
    buffet_gpu_device *d = NULL;
    buffet_result r;
    if (bt_mode("valgrind")) {
        /* lavapipe's LLVM JIT takes minutes under memcheck, and glibc's ld.so reports an over-read
           while loading the driver's dependencies: not ours to fix */
        bt_skip_("vulkan_valgrind", "not run under valgrind (lavapipe: slow, and an ld.so report at dlopen)");
        return NULL;
    }
    memset(&desc, 0, sizeof desc);
    desc.backend = BUFFET_GPU_VULKAN;
    desc.validation = true;
    desc.frames_in_flight = frames_in_flight;
    desc.frame_size = frame_size;
    desc.log = bt_logger(&tvc_log);
    desc.name = "compute";
    r = buffet_gpu_device_create(&d, &desc);
    if (r == BUFFET_ERR_NO_DEVICE) {
        bt_skip_("vulkan", "no Vulkan driver (libvulkan.so.1 with a device; lavapipe: mesa-vulkan-drivers)");
        return NULL;
    }
    BT_CHECK(r == BUFFET_OK && d != NULL);
    if (r != BUFFET_OK) fprintf(stderr, "  create: %s: %s\n", buffet_result_str(r), tvc_log.last_msg);
    return d;
}

/* No validation message may have been heard (they are printed when there are); then destroy. */
static void tvc_close(buffet_gpu_device *d, const bt_log *log) {
    buffet_gpu_stats s = buffet_gpu_get_stats(d);
    BT_CHECK(s.validation_messages == 0);
    if (s.validation_messages)
        fprintf(stderr, "  validation (%llu):\n%s\n", (unsigned long long)s.validation_messages, log->all);
    buffet_gpu_device_destroy(d);
}

/* A GPU buffer of intent (checked); NULL when refused. */
static buffet_buf *tvc_gpu_buf(buffet_gpu_device *d, uint64_t size, buffet_gpu_intent intent) {
    buffet_gpu_buf_desc bd;
    buffet_buf *b = NULL;
    memset(&bd, 0, sizeof bd);
    bd.size = size;
    bd.intent = intent;
    bd.name = "compute test";
    BT_CHECK(buffet_gpu_buf_create(d, &bd, &b) == BUFFET_OK && b != NULL);
    return b;
}

/* The input word i of seed: every index and seed differ. */
static uint32_t tvc_word(uint32_t i, uint32_t seed) {
    return (i * 0x9E3779B9u) ^ (seed * 0x85EBCA6Bu) ^ (i >> 7);
}

/* A chain of the words [0, n) of seed, cut into packet-sized heap buffers of 100..1500 bytes
   (words split across packets), every 40th pinned where the device can. Returns the pinned count. */
static unsigned tvc_packets(buffet_chain *c, buffet_gpu_device *d, uint32_t n, uint32_t seed,
                            unsigned *packets) {
    uint32_t *all = (uint32_t *)malloc((size_t)n * 4), i, rng = seed * 7919u + 1;
    size_t at = 0, total = (size_t)n * 4;
    unsigned pinned = 0;
    for (i = 0; i < n; i++) all[i] = tvc_word(i, seed);
    BT_CHECK(buffet_chain_init(c, buffet_heap()) == BUFFET_OK);
    *packets = 0;
    while (at < total) {
        buffet_buf_desc bd;
        buffet_buf *b = NULL, *p = NULL;
        size_t piece;
        rng = rng * 1664525u + 1013904223u;
        piece = 100 + (rng >> 8) % 1401;
        if (piece > total - at) piece = total - at;
        memset(&bd, 0, sizeof bd);
        bd.size = piece + 14;                   /* a 14-byte "Ethernet header" before the payload */
        BT_CHECK(buffet_buf_create(&b, &bd) == BUFFET_OK);
        if (!b) break;
        memcpy((unsigned char *)b->data + 14, (unsigned char *)all + at, piece);
        if (*packets % 40 == 39 && buffet_gpu_pin(d, b, &p) == BUFFET_OK) {
            BT_CHECK(buffet_chain_append(c, p, 14, piece) == BUFFET_OK);
            buffet_buf_unref(p);
            pinned++;
        } else {
            BT_CHECK(buffet_chain_append(c, b, 14, piece) == BUFFET_OK);
        }
        buffet_buf_unref(b);
        at += piece;
        ++*packets;
    }
    free(all);
    return pinned;
}

/* Do the n words of c equal want(i, seed) * TVC_MUL + 1 (transformed) or want (not)? */
static int tvc_check(const buffet_chain *c, uint32_t n, uint32_t seed, int transformed) {
    uint32_t *got = (uint32_t *)malloc((size_t)n * 4), i, bad = 0;
    int ok = c->len == (size_t)n * 4 && buffet_chain_copy_out(c, 0, got, (size_t)n * 4) == BUFFET_OK;
    for (i = 0; ok && i < n; i++) {
        uint32_t want = transformed ? tvc_word(i, seed) * TVC_MUL + 1u : tvc_word(i, seed);
        if (got[i] != want && bad++ < 4) fprintf(stderr, "  word %u: %08x, want %08x\n", i, got[i], want);
    }
    free(got);
    return ok && bad == 0;
}

/* The transform shader's pipeline and everything it needs, made on one device. */
typedef struct tvc_compute {
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkShaderModule shader;
    VkPipeline pipeline;
    VkDescriptorPool pool;
    VkDescriptorSet set;
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
} tvc_compute;

/* Makes c's objects on v's device (each checked); 0 when one is missing (tvc_compute_free still
   frees what was made). */
static int tvc_compute_make(const tvc_vk *v, tvc_compute *c) {
    VkDescriptorSetLayoutBinding bind[2];
    VkDescriptorSetLayoutCreateInfo dli;
    VkPushConstantRange push;
    VkPipelineLayoutCreateInfo pli;
    VkShaderModuleCreateInfo smi;
    VkComputePipelineCreateInfo cpi;
    VkDescriptorPoolSize ps;
    VkDescriptorPoolCreateInfo dpi;
    VkDescriptorSetAllocateInfo dsa;
    VkCommandPoolCreateInfo cpci;
    VkCommandBufferAllocateInfo cba;
    VkFenceCreateInfo fci;
    int i;
    memset(c, 0, sizeof *c);
    memset(bind, 0, sizeof bind);
    for (i = 0; i < 2; i++) {
        bind[i].binding = (uint32_t)i;
        bind[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        bind[i].descriptorCount = 1;
        bind[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    memset(&dli, 0, sizeof dli);
    dli.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    dli.bindingCount = 2;
    dli.pBindings = bind;
    BT_CHECK(v->CreateDescriptorSetLayout(v->dev, &dli, NULL, &c->dsl) == VK_SUCCESS);
    memset(&push, 0, sizeof push);
    push.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    push.size = sizeof(uint32_t);
    memset(&pli, 0, sizeof pli);
    pli.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    pli.setLayoutCount = 1;
    pli.pSetLayouts = &c->dsl;
    pli.pushConstantRangeCount = 1;
    pli.pPushConstantRanges = &push;
    BT_CHECK(v->CreatePipelineLayout(v->dev, &pli, NULL, &c->layout) == VK_SUCCESS);
    memset(&smi, 0, sizeof smi);
    smi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    smi.codeSize = sizeof buffet_test_transform_spv;
    smi.pCode = buffet_test_transform_spv;
    BT_CHECK(v->CreateShaderModule(v->dev, &smi, NULL, &c->shader) == VK_SUCCESS);
    memset(&cpi, 0, sizeof cpi);
    cpi.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    cpi.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    cpi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cpi.stage.module = c->shader;
    cpi.stage.pName = "main";
    cpi.layout = c->layout;
    BT_CHECK(v->CreateComputePipelines(v->dev, VK_NULL_HANDLE, 1, &cpi, NULL, &c->pipeline) == VK_SUCCESS);
    ps.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    ps.descriptorCount = 2;
    memset(&dpi, 0, sizeof dpi);
    dpi.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    dpi.maxSets = 1;
    dpi.poolSizeCount = 1;
    dpi.pPoolSizes = &ps;
    BT_CHECK(v->CreateDescriptorPool(v->dev, &dpi, NULL, &c->pool) == VK_SUCCESS);
    memset(&dsa, 0, sizeof dsa);
    dsa.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    dsa.descriptorPool = c->pool;
    dsa.descriptorSetCount = 1;
    dsa.pSetLayouts = &c->dsl;
    BT_CHECK(c->pool && v->AllocateDescriptorSets(v->dev, &dsa, &c->set) == VK_SUCCESS);
    memset(&cpci, 0, sizeof cpci);
    cpci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    cpci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    cpci.queueFamilyIndex = v->family;
    BT_CHECK(v->CreateCommandPool(v->dev, &cpci, NULL, &c->cmd_pool) == VK_SUCCESS);
    memset(&cba, 0, sizeof cba);
    cba.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    cba.commandPool = c->cmd_pool;
    cba.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    cba.commandBufferCount = 1;
    BT_CHECK(c->cmd_pool && v->AllocateCommandBuffers(v->dev, &cba, &c->cmd) == VK_SUCCESS);
    memset(&fci, 0, sizeof fci);
    fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    BT_CHECK(v->CreateFence(v->dev, &fci, NULL, &c->fence) == VK_SUCCESS);
    return c->dsl && c->layout && c->shader && c->pipeline && c->set && c->cmd && c->fence;
}

/* Destroys what tvc_compute_make made; the device must be done with it (the fence waited on). */
static void tvc_compute_free(const tvc_vk *v, tvc_compute *c) {
    /* the command buffer and the set go with their pools */
    if (c->fence) v->DestroyFence(v->dev, c->fence, NULL);
    if (c->cmd_pool) v->DestroyCommandPool(v->dev, c->cmd_pool, NULL);
    if (c->pool) v->DestroyDescriptorPool(v->dev, c->pool, NULL);
    if (c->pipeline) v->DestroyPipeline(v->dev, c->pipeline, NULL);
    if (c->shader) v->DestroyShaderModule(v->dev, c->shader, NULL);
    if (c->layout) v->DestroyPipelineLayout(v->dev, c->layout, NULL);
    if (c->dsl) v->DestroyDescriptorSetLayout(v->dev, c->dsl, NULL);
    memset(c, 0, sizeof *c);
}

/* A global memory barrier in cmd: the writes of src_stage made visible to the reads of dst_stage. */
static void tvc_barrier(const tvc_vk *v, VkCommandBuffer cmd, VkPipelineStageFlags src_stage,
                        VkAccessFlags src, VkPipelineStageFlags dst_stage, VkAccessFlags dst) {
    VkMemoryBarrier mb;
    memset(&mb, 0, sizeof mb);
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = src;
    mb.dstAccessMask = dst;
    v->CmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* Submits cmd alone with fence. */
static VkResult tvc_submit(const tvc_vk *v, VkCommandBuffer cmd, VkFence fence) {
    VkSubmitInfo si;
    memset(&si, 0, sizeof si);
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd;
    return v->QueueSubmit(v->queue, 1, &si, fence);
}

/* dst = transform(src) over n words on the device of d, recorded, submitted and waited on here.
   buffet's uploads into src are complete (wait_idle) before the submit, and no buffet transfer
   runs until the fence has passed: the queue is buffet's too. */
static int tvc_transform(buffet_gpu_device *d, const tvc_vk *v, tvc_compute *c, buffet_buf *src,
                         buffet_buf *dst, uint32_t n) {
    buffet_gpu_native ns, nd;
    VkDescriptorBufferInfo bi[2];
    VkWriteDescriptorSet w[2];
    VkCommandBufferBeginInfo cbi;
    int i, ok;
    BT_CHECK(buffet_gpu_buf_native(src, &ns) == BUFFET_OK && buffet_gpu_buf_native(dst, &nd) == BUFFET_OK);
    BT_CHECK(ns.buffer != 0 && nd.buffer != 0 && ns.size >= (uint64_t)n * 4 && nd.size >= (uint64_t)n * 4);
    bi[0].buffer = tvc_buffer(ns.buffer), bi[0].offset = ns.offset, bi[0].range = (VkDeviceSize)n * 4;
    bi[1].buffer = tvc_buffer(nd.buffer), bi[1].offset = nd.offset, bi[1].range = (VkDeviceSize)n * 4;
    memset(w, 0, sizeof w);
    for (i = 0; i < 2; i++) {
        w[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        w[i].dstSet = c->set;
        w[i].dstBinding = (uint32_t)i;
        w[i].descriptorCount = 1;
        w[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        w[i].pBufferInfo = &bi[i];
    }
    v->UpdateDescriptorSets(v->dev, 2, w, 0, NULL);
    BT_CHECK(v->ResetCommandBuffer(c->cmd, 0) == VK_SUCCESS);
    memset(&cbi, 0, sizeof cbi);
    cbi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    cbi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    BT_CHECK(v->BeginCommandBuffer(c->cmd, &cbi) == VK_SUCCESS);
    /* buffet's upload copies (earlier in submission order) before the shader's reads */
    tvc_barrier(v, c->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
    v->CmdBindPipeline(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->pipeline);
    v->CmdBindDescriptorSets(c->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->layout, 0, 1, &c->set, 0, NULL);
    v->CmdPushConstants(c->cmd, c->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof n, &n);
    v->CmdDispatch(c->cmd, (n + 63) / 64, 1, 1);
    /* the shader's writes before buffet's download copies (later in submission order) */
    tvc_barrier(v, c->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
    BT_CHECK(v->EndCommandBuffer(c->cmd) == VK_SUCCESS);
    BT_CHECK(buffet_gpu_wait_idle(d) == BUFFET_OK);     /* no buffet submission in flight */
    ok = tvc_submit(v, c->cmd, c->fence) == VK_SUCCESS;
    BT_CHECK(ok);
    if (ok) {
        BT_CHECK(v->WaitForFences(v->dev, 1, &c->fence, VK_TRUE, UINT64_MAX) == VK_SUCCESS);
        BT_CHECK(v->ResetFences(v->dev, 1, &c->fence) == VK_SUCCESS);
    }
    return ok;
}

/* Upload a chain of packets, transform on the device, download, check; on device d (whose
   handles give the Vulkan functions). */
static void tvc_packets_through_shader(buffet_gpu_device *d, uint32_t n, uint32_t seed) {
    tvc_vk v;
    tvc_compute c;
    buffet_chain in, out;
    buffet_buf *src, *dst;
    unsigned packets = 0, pinned;
    memset(&c, 0, sizeof c);
    if (!tvc_load(&v, d)) return;
    pinned = tvc_packets(&in, d, n, seed, &packets);
    printf("  %u words in %u packets (%u pinned), %zu bytes\n", n, packets, pinned, in.len);
    BT_CHECK(packets > 300 && in.len == (size_t)n * 4);
    src = tvc_gpu_buf(d, (uint64_t)n * 4, BUFFET_GPU_DEVICE_LOCAL);
    dst = tvc_gpu_buf(d, (uint64_t)n * 4, BUFFET_GPU_DEVICE_LOCAL);
    BT_CHECK(buffet_chain_init(&out, buffet_heap()) == BUFFET_OK);
    if (src && dst && tvc_compute_make(&v, &c)) {
        BT_CHECK(buffet_gpu_upload(d, src, 0, &in, NULL) == BUFFET_OK);
        if (tvc_transform(d, &v, &c, src, dst, n)) {
            BT_CHECK(buffet_gpu_download(d, dst, 0, (uint64_t)n * 4, &out, NULL) == BUFFET_OK);
            BT_CHECK(tvc_check(&out, n, seed, 1));
            buffet_chain_deinit(&out);
            BT_CHECK(buffet_chain_init(&out, buffet_heap()) == BUFFET_OK);
            BT_CHECK(buffet_gpu_download(d, src, 0, (uint64_t)n * 4, &out, NULL) == BUFFET_OK);
            BT_CHECK(tvc_check(&out, n, seed, 0));   /* the input is untouched */
        }
    }
    tvc_compute_free(&v, &c);
    buffet_chain_deinit(&out);
    buffet_chain_deinit(&in);
    if (src) buffet_buf_unref(src);
    if (dst) buffet_buf_unref(dst);
}

/* (a) a chain of packets -> device-local buffer -> compute shader -> chain, checked word by word */
static void test_compute_on_packets(void) {
    buffet_gpu_device *d = tvc_open(0, 0);
    if (!d) return;
    tvc_packets_through_shader(d, 256u * 1024u, 1);      /* 1 MiB */
    tvc_close(d, &tvc_log);
}

/* The word i of frame f's pattern. */
static uint32_t tvc_frame_word(uint32_t i, uint32_t f) { return tvc_word(i, 1000 + f); }

/* (b) 12 frames with 3 in flight: each writes its frame memory, the test's command buffer copies it
   into the frame's slot of a device-local buffer; frame k waits on the test's fence of frame k-3
   before buffet_gpu_frame_begin, as an engine would. */
static void test_frames_in_flight(void) {
    const uint32_t words = 300000 / 4;                  /* 300,000 bytes a frame in a 1 MiB ring */
    const uint64_t bytes = (uint64_t)words * 4;
    buffet_gpu_device *d = tvc_open(TVC_IN_FLIGHT, 1u << 20);
    buffet_gpu_native live[TVC_FRAMES];
    VkCommandBuffer cmd[TVC_IN_FLIGHT];
    VkFence fence[TVC_IN_FLIGHT];
    VkCommandPool pool = VK_NULL_HANDLE;
    VkCommandPoolCreateInfo cpci;
    VkCommandBufferAllocateInfo cba;
    VkFenceCreateInfo fci;
    buffet_gpu_native nd;
    buffet_buf *dst;
    buffet_chain out;
    tvc_vk v;
    uint32_t k, j, i;
    int ok = 1;
    if (!d) return;
    memset(fence, 0, sizeof fence);
    memset(live, 0, sizeof live);
    if (!tvc_load(&v, d)) {
        tvc_close(d, &tvc_log);
        return;
    }
    dst = tvc_gpu_buf(d, bytes * TVC_FRAMES, BUFFET_GPU_DEVICE_LOCAL);
    BT_CHECK(dst && buffet_gpu_buf_native(dst, &nd) == BUFFET_OK);
    memset(&cpci, 0, sizeof cpci);
    cpci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    cpci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    cpci.queueFamilyIndex = v.family;
    BT_CHECK(v.CreateCommandPool(v.dev, &cpci, NULL, &pool) == VK_SUCCESS);
    memset(&cba, 0, sizeof cba);
    cba.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    cba.commandPool = pool;
    cba.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    cba.commandBufferCount = TVC_IN_FLIGHT;
    BT_CHECK(pool && v.AllocateCommandBuffers(v.dev, &cba, cmd) == VK_SUCCESS);
    memset(&fci, 0, sizeof fci);
    fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    for (j = 0; j < TVC_IN_FLIGHT; j++) BT_CHECK(v.CreateFence(v.dev, &fci, NULL, &fence[j]) == VK_SUCCESS);
    for (k = 0; dst && pool && fence[TVC_IN_FLIGHT - 1] && ok && k < TVC_FRAMES; k++) {
        uint32_t slot = k % TVC_IN_FLIGHT, *p;
        VkCommandBufferBeginInfo cbi;
        VkBufferCopy region;
        if (k >= TVC_IN_FLIGHT) {   /* frame k-3's command buffer and fence become free */
            BT_CHECK(v.WaitForFences(v.dev, 1, &fence[slot], VK_TRUE, UINT64_MAX) == VK_SUCCESS);
            BT_CHECK(v.ResetFences(v.dev, 1, &fence[slot]) == VK_SUCCESS);
        }
        BT_CHECK(buffet_gpu_frame_begin(d) == BUFFET_OK);
        ok = buffet_gpu_frame_alloc(d, bytes, 256, BUFFET_GPU_UPLOAD, &live[k]) == BUFFET_OK && live[k].host;
        BT_CHECK(ok);
        if (!ok) break;
        /* frame k's memory is none of the live frames k-1 and k-2's */
        for (j = 1; j < TVC_IN_FLIGHT && j <= k; j++) {
            const buffet_gpu_native *o = &live[k - j];
            BT_CHECK(o->memory != live[k].memory || live[k].offset + bytes <= o->offset ||
                     o->offset + bytes <= live[k].offset);
        }
        p = (uint32_t *)live[k].host;
        for (i = 0; i < words; i++) p[i] = tvc_frame_word(i, k);
        if (!live[k].coherent) {
            VkMappedMemoryRange r;
            memset(&r, 0, sizeof r);
            r.sType = VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE;
            r.memory = tvc_memory(live[k].memory);
            r.offset = live[k].offset & ~(VkDeviceSize)(buffet_gpu_get_info(d).atom - 1);
            r.size = VK_WHOLE_SIZE;
            BT_CHECK(v.FlushMappedMemoryRanges(v.dev, 1, &r) == VK_SUCCESS);
        }
        /* the live frames' bytes are still theirs (frame k-1's copy may still be running) */
        for (j = 1; j < TVC_IN_FLIGHT && j <= k; j++) {
            const uint32_t *q = (const uint32_t *)live[k - j].host;
            BT_CHECK(q[0] == tvc_frame_word(0, k - j) && q[words - 1] == tvc_frame_word(words - 1, k - j));
        }
        BT_CHECK(v.ResetCommandBuffer(cmd[slot], 0) == VK_SUCCESS);
        memset(&cbi, 0, sizeof cbi);
        cbi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
        cbi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
        BT_CHECK(v.BeginCommandBuffer(cmd[slot], &cbi) == VK_SUCCESS);
        region.srcOffset = live[k].offset;
        region.dstOffset = nd.offset + (VkDeviceSize)k * bytes;
        region.size = bytes;
        v.CmdCopyBuffer(cmd[slot], tvc_buffer(live[k].buffer), tvc_buffer(nd.buffer), 1, &region);
        BT_CHECK(v.EndCommandBuffer(cmd[slot]) == VK_SUCCESS);
        /* one thread: no buffet submission runs beside this one (frame_end's comes after it) */
        ok = tvc_submit(&v, cmd[slot], fence[slot]) == VK_SUCCESS;
        BT_CHECK(ok);
        /* buffet's frame ticket is submitted after the copy on the same queue, so it completes
           after it too: frame k's memory is not reclaimed while the copy may read it */
        BT_CHECK(buffet_gpu_frame_end(d, 0) == BUFFET_OK);
    }
    BT_CHECK(k == TVC_FRAMES);
    BT_CHECK(live[TVC_IN_FLIGHT].offset == live[0].offset);   /* frame 0's memory came back for frame 3 */
    for (j = 0; j < TVC_IN_FLIGHT; j++)
        if (fence[j] && k > j)
            BT_CHECK(v.WaitForFences(v.dev, 1, &fence[j], VK_TRUE, UINT64_MAX) == VK_SUCCESS);
    if (dst) {
        /* buffet's download copy begins with a transfer-write -> transfer-read barrier: it reads
           what the test's copies (earlier in submission order) wrote */
        BT_CHECK(buffet_chain_init(&out, buffet_heap()) == BUFFET_OK);
        BT_CHECK(buffet_gpu_download(d, dst, 0, bytes * TVC_FRAMES, &out, NULL) == BUFFET_OK);
        if (out.len == bytes * TVC_FRAMES) {
            uint32_t *got = (uint32_t *)malloc((size_t)bytes * TVC_FRAMES), bad = 0;
            BT_CHECK(buffet_chain_copy_out(&out, 0, got, (size_t)bytes * TVC_FRAMES) == BUFFET_OK);
            for (k = 0; k < TVC_FRAMES; k++)
                for (i = 0; i < words; i++) bad += got[k * words + i] != tvc_frame_word(i, k);
            BT_CHECK(bad == 0);
            free(got);
        } else {
            BT_CHECK(out.len == bytes * TVC_FRAMES);
        }
        buffet_chain_deinit(&out);
        buffet_buf_unref(dst);
    }
    for (j = 0; j < TVC_IN_FLIGHT; j++)
        if (fence[j]) v.DestroyFence(v.dev, fence[j], NULL);
    if (pool) v.DestroyCommandPool(v.dev, pool, NULL);
    tvc_close(d, &tvc_log);
}

/* (c) a device over another's Vulkan objects: buffet makes no instance or device for it. */
static void test_user_device(void) {
    buffet_gpu_device *a = tvc_open(0, 0), *b = NULL;
    buffet_gpu_device_desc desc;
    buffet_gpu_info ia, ib;
    buffet_gpu_stats sb;
    bt_log log_b;
    if (!a) return;
    ia = buffet_gpu_get_info(a);
    memset(&desc, 0, sizeof desc);
    desc.backend = BUFFET_GPU_VULKAN;
    desc.validation = true;                 /* ignored in user mode: a's instance has the layer */
    BT_CHECK(buffet_gpu_vulkan_handles(a, &desc.vulkan) == BUFFET_OK);
    desc.log = bt_logger(&log_b);
    desc.name = "user";
    BT_CHECK(buffet_gpu_device_create(&b, &desc) == BUFFET_OK && b != NULL);
    if (b) {
        buffet_gpu_vulkan_desc ha, hb;
        ib = buffet_gpu_get_info(b);
        BT_CHECK(ib.backend == BUFFET_GPU_VULKAN && strcmp(ia.device_name, ib.device_name) == 0);
        BT_CHECK(buffet_gpu_vulkan_handles(a, &ha) == BUFFET_OK);
        BT_CHECK(buffet_gpu_vulkan_handles(b, &hb) == BUFFET_OK);
        BT_CHECK(hb.instance == ha.instance && hb.device == ha.device && hb.queue_family == ha.queue_family &&
                 hb.queue_index == ha.queue_index);
        /* a and b share the queue: one thread, so no two submissions run at once */
        tvc_packets_through_shader(b, 64u * 1024u, 2);
        sb = buffet_gpu_get_stats(b);
        BT_CHECK(sb.uploads >= 1 && sb.downloads >= 2);
        tvc_close(b, &log_b);
    }
    /* a's instance and device live on: a still works */
    tvc_packets_through_shader(a, 64u * 1024u, 3);
    tvc_close(a, &tvc_log);
}

int main(void) {
    bt_keep_vulkan_driver();
    BT_RUN(test_compute_on_packets);
    BT_RUN(test_frames_in_flight);
    BT_RUN(test_user_device);
    return bt_finish("test_gpu_vulkan_compute.c");
}
