// Launchers of the fused CUDA attention ops (plain CUDA: no torch headers, so
// `nvcc -c attention_ops.cu` compiles anywhere the CUDA toolkit is installed).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace longctx {

enum class ElementType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// In-place log-sum-exp merge of one partial attention block into an fp32 accumulator:
//   new_lse = log(exp(lse) + exp(block_lse)),
//   out     = out * exp(lse - new_lse) + block_out * exp(block_lse - new_lse),
// with rows whose lse are both -inf left at out (weights 0) and lse -inf.
// out [rows, head_dim] fp32, lse [rows] fp32, block_out [rows, head_dim] (block_type),
// block_lse [rows] fp32; rows = tokens * heads; all contiguous.
cudaError_t launch_lse_merge(float* out, float* lse, const void* block_out, const float* block_lse,
                             int64_t rows, int64_t head_dim, ElementType block_type, cudaStream_t stream);

// Rotary embedding (rotate-half convention) at per-token positions:
//   theta_i = float(pos[t]) * inv_freq[i],  i < head_dim / 2,
//   out[.., i] = x_i cos - x_{i+half} sin * sign,  out[.., i+half] = x_{i+half} cos + x_i sin * sign.
// x, out [tokens, heads, head_dim] (type), positions [tokens] int64, inv_freq [head_dim/2] fp32;
// sign = +1 rotates, -1 rotates back (the gradient). Computed in fp32.
cudaError_t launch_rope(const void* x, void* out, const int64_t* positions, const float* inv_freq,
                        int64_t tokens, int64_t heads, int64_t head_dim, float sign, ElementType type,
                        cudaStream_t stream);

cudaError_t launch_rope_tables(const void* x, void* out, const float* cos_table, const float* sin_table,
                               int64_t tokens, int64_t heads, int64_t head_dim, float sign, ElementType type,
                               cudaStream_t stream);

}  // namespace longctx
