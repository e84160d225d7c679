// torch bindings of the fused CUDA attention ops (launchers in attention_ops.cu).
// The Python wrappers in longctx.kernels.ops validate shapes and dtypes first; the
// checks here only guard against misuse of the raw module.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "attention_ops.cuh"

namespace {

longctx::ElementType element_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return longctx::ElementType::kFloat32;
    case torch::kFloat16: return longctx::ElementType::kFloat16;
    case torch::kBFloat16: return longctx::ElementType::kBFloat16;
    default: TORCH_CHECK(false, "longctx cuda ops: unsupported dtype ", t.scalar_type(), "; use fp32, fp16 or bf16");
  }
}

void check_cuda_contiguous(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.is_contiguous(), "longctx cuda ops: ", name, " must be a contiguous CUDA tensor");
}

void lse_merge_(torch::Tensor out, torch::Tensor lse, const torch::Tensor& block_out, const torch::Tensor& block_lse) {
  check_cuda_contiguous(out, "out");
  check_cuda_contiguous(lse, "lse");
  check_cuda_contiguous(block_out, "block_out");
  check_cuda_contiguous(block_lse, "block_lse");
  TORCH_CHECK(out.scalar_type() == torch::kFloat32 && lse.scalar_type() == torch::kFloat32 &&
                  block_lse.scalar_type() == torch::kFloat32,
              "lse_merge_: out, lse and block_lse must be fp32");
  const c10::cuda::CUDAGuard guard(out.device());
  const int64_t head_dim = out.size(-1);
  const auto err = longctx::launch_lse_merge(out.data_ptr<float>(), lse.data_ptr<float>(), block_out.data_ptr(),
                                             block_lse.data_ptr<float>(), lse.numel(), head_dim,
                                             element_type(block_out), c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "lse_merge_: CUDA launch failed: ", cudaGetErrorString(err));
}

torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& positions, const torch::Tensor& inv_freq, double sign) {
  check_cuda_contiguous(x, "x");
  check_cuda_contiguous(positions, "positions");
  check_cuda_contiguous(inv_freq, "inv_freq");
  TORCH_CHECK(x.dim() == 3 && positions.scalar_type() == torch::kInt64 && inv_freq.scalar_type() == torch::kFloat32,
              "rope: x [tokens, heads, head_dim], positions int64, inv_freq fp32");
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = torch::empty_like(x);
  const auto err = longctx::launch_rope(x.data_ptr(), out.data_ptr(), positions.data_ptr<int64_t>(),
                                        inv_freq.data_ptr<float>(), x.size(0), x.size(1), x.size(2),
                                        static_cast<float>(sign), element_type(x), c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "rope: CUDA launch failed: ", cudaGetErrorString(err));
  return out;
}

torch::Tensor rope_tables(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double sign) {
  check_cuda_contiguous(x, "x");
  check_cuda_contiguous(cos, "cos");
  check_cuda_contiguous(sin, "sin");
  TORCH_CHECK(x.dim() == 3 && x.size(2) % 2 == 0 && cos.scalar_type() == torch::kFloat32 &&
                  sin.scalar_type() == torch::kFloat32 && cos.sizes() == sin.sizes() && cos.dim() == 2 &&
                  cos.size(0) == x.size(0) && cos.size(1) == x.size(2) / 2,
              "rope_tables: x [tokens, heads, head_dim], cos/sin fp32 [tokens, head_dim / 2]");
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = torch::empty_like(x);
  const auto err = longctx::launch_rope_tables(x.data_ptr(), out.data_ptr(), cos.data_ptr<float>(),
                                               sin.data_ptr<float>(), x.size(0), x.size(1), x.size(2),
                                               static_cast<float>(sign), element_type(x),
                                               c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "rope_tables: CUDA launch failed: ", cudaGetErrorString(err));
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "longctx fused CUDA attention ops";
  m.def("lse_merge_", &lse_merge_, "In-place log-sum-exp merge of a partial attention block (fp32 accumulator)");
  m.def("rope", &rope, "Rotary embedding at per-token positions (sign -1: inverse rotation)");
  m.def("rope_tables", &rope_tables, "Rotary embedding from fp32 cos/sin tables (sign -1: inverse rotation)");
}
