// transform.comp - a compute shader for buffet_gpu.h's tests: out[i] = in[i] * 2654435761u + 1 for
// i < n (Knuth's multiplicative hash, so every input maps to a different output). One invocation
// per element, 64 per work group; n comes as a push constant. Compiled by make_spv.sh into
// transform_spv.h (the SPIR-V words as a C array), which is committed.
#version 450

layout(local_size_x = 64) in;

layout(set = 0, binding = 0, std430) readonly buffer In { uint src[]; };
layout(set = 0, binding = 1, std430) writeonly buffer Out { uint dst[]; };

layout(push_constant) uniform Params { uint n; } params;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < params.n) dst[i] = src[i] * 2654435761u + 1u;
}
