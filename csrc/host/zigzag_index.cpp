// Zigzag shard index of a packed batch for one rank (host op, C++).
//
// Every document [cu[d], cu[d+1]) of length s splits into C = 2 * world_size chunks
// of s / C tokens; its s % C leftover tokens go one each to consecutive chunks in
// rank round-robin order (chunks 0..P-1, then C-1 down to P), continuing where the
// previous document's leftovers stopped (the layout of longctx.attention.ZigzagSharding).
// Rank r owns chunks r and C-1-r of every document. For rank r this returns, in
// document-then-position order:
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
#include <vector>

namespace {

struct Chunk {
  int64_t begin;  // offset inside the document
  int64_t length;
};

// The chunk of a document of `doc_len` tokens whose leftovers start at round-robin slot `first_slot`.
Chunk chunk_of(int64_t doc_len, int64_t world_size, int64_t first_slot, int64_t c) {
  const int64_t chunks = 2 * world_size, base = doc_len / chunks, extra = doc_len % chunks;
  Chunk chunk{0, 0};
  for (int64_t i = 0; i <= c; ++i) {
    const int64_t slot = i < world_size ? i : 3 * world_size - 1 - i;
    const int64_t size = base + (((slot - first_slot) % chunks + chunks) % chunks < extra ? 1 : 0);
    chunk = {i == 0 ? 0 : chunk.begin + chunk.length, size};
  }
  return chunk;
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

  std::vector<int64_t> first_slot(docs);
  std::vector<Chunk> owned(2 * docs);
  auto local_cu = at::empty({docs + 1}, at::kLong);
  int64_t* lcu = local_cu.data_ptr<int64_t>();
  lcu[0] = 0;
  int64_t handed_out = 0;  // leftover tokens of the documents so far, mod C
  for (int64_t d = 0; d < docs; ++d) {
    const int64_t len = cu[d + 1] - cu[d];
    first_slot[d] = handed_out;
    handed_out = (handed_out + len % chunks) % chunks;
    owned[2 * d] = chunk_of(len, world_size, first_slot[d], own[0]);
    owned[2 * d + 1] = chunk_of(len, world_size, first_slot[d], own[1]);
    lcu[d + 1] = lcu[d] + owned[2 * d].length + owned[2 * d + 1].length;
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
      for (int64_t half = 0; half < 2; ++half) {
        const Chunk chunk = owned[2 * d + half];
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
