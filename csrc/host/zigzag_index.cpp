// Zigzag shard index of a packed batch for one rank (host op, C++).
//
// Every document [cu[d], cu[d+1]) splits into C = 2 * world_size chunks whose
// sizes differ by at most one (the first len % C chunks are one token longer);
// rank r owns chunks r and C-1-r of every document. For rank r this returns,
// in document-then-position order:
//   token_index [n_local] int64  indices into the packed global batch
//   doc_ids     [n_local] int64  document of each local token
//   positions   [n_local] int64  position of each token inside its document
//   cu_seqlens  [docs+1]  int64  local document boundaries (0, cumulative local lengths)
// Same result as longctx.kernels.torch_fallbacks.zigzag_shard_index; the caller
// (longctx.kernels.ops) validates the inputs.
// Narrow includes (not torch/extension.h): this file compiles in half the time.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <tuple>

namespace {

struct Chunk {
  int64_t begin;  // offset inside the document
  int64_t length;
};

Chunk chunk_of(int64_t doc_len, int64_t chunks, int64_t c) {
  const int64_t base = doc_len / chunks, extra = doc_len % chunks;
  return {c * base + std::min(c, extra), base + (c < extra ? 1 : 0)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> zigzag_shard_index(
    const at::Tensor& cu_seqlens, int64_t world_size, int64_t rank) {
  TORCH_CHECK(cu_seqlens.device().is_cpu() && cu_seqlens.scalar_type() == at::kLong && cu_seqlens.dim() == 1,
              "zigzag_shard_index: cu_seqlens must be a 1-D int64 CPU tensor");
  const auto cu_c = cu_seqlens.contiguous();
  const int64_t* cu = cu_c.data_ptr<int64_t>();
  const int64_t docs = cu_c.numel() - 1;
  const int64_t chunks = 2 * world_size;
  const int64_t own[2] = {rank, chunks - 1 - rank};

  auto local_cu = at::empty({docs + 1}, at::kLong);
  int64_t* lcu = local_cu.data_ptr<int64_t>();
  lcu[0] = 0;
  for (int64_t d = 0; d < docs; ++d) {
    const int64_t len = cu[d + 1] - cu[d];
    lcu[d + 1] = lcu[d] + chunk_of(len, chunks, own[0]).length + chunk_of(len, chunks, own[1]).length;
  }
  const int64_t n_local = lcu[docs];
  auto token_index = at::empty({n_local}, at::kLong);
  auto doc_ids = at::empty({n_local}, at::kLong);
  auto positions = at::empty({n_local}, at::kLong);
  int64_t* tok = token_index.data_ptr<int64_t>();
  int64_t* did = doc_ids.data_ptr<int64_t>();
  int64_t* pos = positions.data_ptr<int64_t>();
  at::parallel_for(0, docs, 256, [&](int64_t first, int64_t last) {
    for (int64_t d = first; d < last; ++d) {
      int64_t out = lcu[d];
      for (const int64_t c : own) {
        const Chunk chunk = chunk_of(cu[d + 1] - cu[d], chunks, c);
        for (int64_t p = chunk.begin; p < chunk.begin + chunk.length; ++p, ++out) {
          tok[out] = cu[d] + p;
          did[out] = d;
          pos[out] = p;
        }
      }
    }
  });
  return {token_index, doc_ids, positions, local_cu};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "longctx host ops (C++)";
  m.def("zigzag_shard_index", &zigzag_shard_index, "Zigzag shard index of one rank",
        pybind11::arg("cu_seqlens"), pybind11::arg("world_size"), pybind11::arg("rank"));
}
