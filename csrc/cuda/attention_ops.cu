// Fused CUDA attention ops: log-sum-exp merge of partial outputs, RoPE at packed positions.
// See attention_ops.cuh for shapes and semantics.
#include "attention_ops.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

namespace longctx {
namespace {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;

// One warp per row: every lane reads the row's two lse values, the lanes update the
// row's head_dim outputs, and lane 0 writes the merged lse after the warp has read it.
template <typename T>
__global__ void lse_merge_kernel(float* __restrict__ out, float* __restrict__ lse, const T* __restrict__ block_out,
                                 const float* __restrict__ block_lse, int64_t rows, int64_t head_dim) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const float a = lse[row], b = block_lse[row];
  const float hi = fmaxf(a, b);
  const bool empty = hi == -INFINITY;
  const float merged = empty ? -INFINITY : hi + log1pf(expf(-fabsf(a - b)));
  const float wa = empty ? 0.f : expf(a - merged);
  const float wb = empty ? 0.f : expf(b - merged);
  for (int64_t d = threadIdx.x; d < head_dim; d += kWarp) {
    const int64_t i = row * head_dim + d;
    out[i] = out[i] * wa + to_float(block_out[i]) * wb;
  }
  __syncwarp();
  if (threadIdx.x == 0) lse[row] = merged;
}

template <typename T>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ out, const int64_t* __restrict__ positions,
                            const float* __restrict__ inv_freq, int64_t tokens, int64_t heads, int64_t half,
                            float sign) {
  const int64_t total = tokens * heads * half;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k % half;
    const int64_t row = k / half;  // token * heads + head
    const int64_t token = row / heads;
    float s, c;
    sincosf(static_cast<float>(positions[token]) * inv_freq[i], &s, &c);
    s *= sign;
    const int64_t base = row * 2 * half;
    const float x1 = to_float(x[base + i]), x2 = to_float(x[base + i + half]);
    out[base + i] = from_float<T>(x1 * c - x2 * s);
    out[base + i + half] = from_float<T>(x2 * c + x1 * s);
  }
}

// The same rotation from precomputed fp32 tables cos/sin [tokens, half] (angles rounded once from fp64 on the
// host side, so positions of millions of tokens keep their precision); sign -1 rotates back (the gradient).
template <typename T>
__global__ void rope_tables_kernel(const T* __restrict__ x, T* __restrict__ out, const float* __restrict__ cos_table,
                                   const float* __restrict__ sin_table, int64_t tokens, int64_t heads, int64_t half,
                                   float sign) {
  const int64_t total = tokens * heads * half;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k % half;
    const int64_t row = k / half;  // token * heads + head
    const int64_t table = (row / heads) * half + i;
    const float c = cos_table[table], s = sign * sin_table[table];
    const int64_t base = row * 2 * half;
    const float x1 = to_float(x[base + i]), x2 = to_float(x[base + i + half]);
    out[base + i] = from_float<T>(x1 * c - x2 * s);
    out[base + i + half] = from_float<T>(x2 * c + x1 * s);
  }
}

template <typename T>
cudaError_t rope_tables_typed(const void* x, void* out, const float* cos_table, const float* sin_table,
                              int64_t tokens, int64_t heads, int64_t head_dim, float sign, cudaStream_t stream) {
  const int64_t half = head_dim / 2;
  const int64_t total = tokens * heads * half;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535);
  rope_tables_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(out), cos_table, sin_table, tokens, heads, half, sign);
  return cudaGetLastError();
}

template <typename T>
cudaError_t lse_merge_typed(float* out, float* lse, const void* block_out, const float* block_lse, int64_t rows,
                            int64_t head_dim, cudaStream_t stream) {
  const dim3 block(kWarp, kRowsPerBlock);
  const dim3 grid(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  lse_merge_kernel<T><<<grid, block, 0, stream>>>(out, lse, static_cast<const T*>(block_out), block_lse, rows,
                                                  head_dim);
  return cudaGetLastError();
}

template <typename T>
cudaError_t rope_typed(const void* x, void* out, const int64_t* positions, const float* inv_freq, int64_t tokens,
                       int64_t heads, int64_t head_dim, float sign, cudaStream_t stream) {
  const int64_t half = head_dim / 2;
  const int64_t total = tokens * heads * half;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535);
  rope_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(out), positions, inv_freq, tokens, heads, half, sign);
  return cudaGetLastError();
}

// Calls `launch(T{})` with T the C++ type of `type` (float, __half or __nv_bfloat16): one dtype switch
// for every launcher.
template <typename Launch>
cudaError_t with_element_type(ElementType type, Launch&& launch) {
  switch (type) {
    case ElementType::kFloat32: return launch(float{});
    case ElementType::kFloat16: return launch(__half{});
    case ElementType::kBFloat16: return launch(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t launch_lse_merge(float* out, float* lse, const void* block_out, const float* block_lse, int64_t rows,
                             int64_t head_dim, ElementType block_type, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return with_element_type(block_type, [&](auto element) {
    return lse_merge_typed<decltype(element)>(out, lse, block_out, block_lse, rows, head_dim, stream);
  });
}

cudaError_t launch_rope(const void* x, void* out, const int64_t* positions, const float* inv_freq, int64_t tokens,
                        int64_t heads, int64_t head_dim, float sign, ElementType type, cudaStream_t stream) {
  if (tokens == 0 || heads == 0) return cudaSuccess;
  return with_element_type(type, [&](auto element) {
    return rope_typed<decltype(element)>(x, out, positions, inv_freq, tokens, heads, head_dim, sign, stream);
  });
}

cudaError_t launch_rope_tables(const void* x, void* out, const float* cos_table, const float* sin_table,
                               int64_t tokens, int64_t heads, int64_t head_dim, float sign, ElementType type,
                               cudaStream_t stream) {
  if (tokens == 0 || heads == 0) return cudaSuccess;
  return with_element_type(type, [&](auto element) {
    return rope_tables_typed<decltype(element)>(x, out, cos_table, sin_table, tokens, heads, head_dim, sign, stream);
  });
}

}  // namespace longctx
