"""`longctx bench kernels`: local attention kernels, forward and backward TFLOP/s, on CUDA.

Workloads: `--sizes` total tokens (default 8K..128K), two layouts:
  dense   one causal document of all the tokens;
  packed  documents with long-tailed lengths (log-normal, median `--median-doc`, seeded)
          packed back to back, causal inside each document, nothing across.
Backends (each skipped with its reason when it cannot run):
  triton       longctx.kernels.triton_attention (this repo; fwd returns lse too)
  sdpa_flash   torch SDPA, flash backend      (dense only: SDPA has no document mask)
  sdpa_cudnn   torch SDPA, cuDNN backend      (dense only)
  sdpa_varlen  torch.nn.attention.varlen.varlen_attn (flash varlen; packed and dense)
  flex         torch.compile(flex_attention) with a document-causal BlockMask (mask built once, untimed)

FLOPs convention: causal, per document s_i: forward 4 * s_i^2 * D * Hq / 2 (QK^T and PV, half
the square), summed over documents (sum of s_i^2, never (sum s_i)^2); backward = 2.5 x forward.
Timing: CUDA events, mean over `--iters` after `--warmup`. Backward of the autograd backends
is (forward+backward) - forward; the triton backward is timed directly from (dout, out, lse).
Results: JSON under benchmarks/results/kernels/ naming the device, versions and command.
Without CUDA the suite prints that it needs a GPU and exits 0; `--cpu-smoke` instead runs
the triton kernels once on tiny shapes under Triton's interpreter.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "kernels"
BACKENDS = ("triton", "sdpa_flash", "sdpa_cudnn", "sdpa_varlen", "flex")
DENSE_ONLY = {"sdpa_flash", "sdpa_cudnn"}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Workload:
    """A packed batch: document lengths (tokens) and its layout name."""

    layout: str
    lengths: tuple[int, ...]

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def sum_sq(self) -> int:
        return sum(s * s for s in self.lengths)


def make_workload(layout: str, tokens: int, median_doc: int, seed: int) -> Workload:
    """dense: one document; packed: log-normal lengths (sigma 1.2) in [16, tokens], last one trimmed."""
    if layout == "dense":
        return Workload(layout, (tokens,))
    gen = torch.Generator().manual_seed(seed)
    lengths, left = [], tokens
    while left > 0:
        draw = math.exp(math.log(median_doc) + 1.2 * float(torch.randn((), generator=gen)))
        length = min(left, max(16, int(draw)))
        lengths.append(length)
        left -= length
    return Workload(layout, tuple(lengths))


def attention_flops(workload: Workload, heads: int, head_dim: int, direction: str) -> float:
    """Causal FLOPs (see the module docstring): 2 * sum(s_i^2) * D * Hq forward, 2.5x that backward."""
    forward = 2.0 * workload.sum_sq * head_dim * heads
    return forward if direction == "fwd" else 2.5 * forward


def cuda_ms(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Mean milliseconds per call of `fn` on the current CUDA stream."""
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


@dataclass
class Inputs:
    q: torch.Tensor  # [N, Hq, D]
    k: torch.Tensor  # [N, Hkv, D]
    v: torch.Tensor
    dout: torch.Tensor
    doc: torch.Tensor  # [N] int32
    pos: torch.Tensor  # [N] int32
    cu: torch.Tensor  # [docs+1] int32
    max_len: int
    scale: float


def make_inputs(workload: Workload, heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> Inputs:
    n = workload.tokens
    lengths = torch.tensor(workload.lengths, device="cuda")
    doc = torch.repeat_interleave(torch.arange(len(workload.lengths), device="cuda", dtype=torch.int32), lengths)
    cu = torch.cat([torch.zeros(1, device="cuda", dtype=torch.int32), torch.cumsum(lengths, 0).to(torch.int32)])
    pos = (torch.arange(n, device="cuda", dtype=torch.int32) - cu[doc.long()]).to(torch.int32)
    gen = torch.Generator(device="cuda").manual_seed(0)

    def rand(h):
        return torch.randn(n, h, head_dim, device="cuda", dtype=dtype, generator=gen)

    return Inputs(rand(heads), rand(kv_heads), rand(kv_heads), rand(heads), doc, pos, cu,
                  max(workload.lengths), head_dim ** -0.5)


def _triton_case(x: Inputs):
    from longctx.kernels import triton_attention

    idx = (x.doc, x.pos, x.doc, x.pos)
    out, lse = triton_attention.forward(x.q, x.k, x.v, *idx, x.scale)
    return (
        lambda: triton_attention.forward(x.q, x.k, x.v, *idx, x.scale),
        lambda: triton_attention.backward(x.dout, x.q, x.k, x.v, out, lse, *idx, x.scale),
        out,
    )


def _autograd_case(attend: Callable[..., torch.Tensor], tensors: tuple[torch.Tensor, ...], dout: torch.Tensor,
                   to_tokens: Callable[[torch.Tensor], torch.Tensor]):
    """(fwd, fwd+bwd, out `[N, Hq, D]`) for a differentiable `attend(q, k, v)` on pre-laid-out tensors."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]

    def forward():
        with torch.no_grad():
            return attend(*tensors)

    def forward_backward():
        torch.autograd.backward(attend(*leaves), dout)

    return forward, forward_backward, to_tokens(forward())


def _heads_first_case(attend: Callable[..., torch.Tensor], x: Inputs):
    """Run `attend` on contiguous `[1, H, N, D]` copies made once, outside the timed calls."""
    def heads_first(t):
        return t.transpose(0, 1).unsqueeze(0).contiguous()

    tensors = tuple(heads_first(t) for t in (x.q, x.k, x.v))
    return _autograd_case(attend, tensors, heads_first(x.dout), lambda out: out[0].transpose(0, 1))


def _sdpa_case(backend_name: str, x: Inputs):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION}[backend_name]
    gqa = x.q.shape[1] != x.k.shape[1]

    def attend(q, k, v):
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=x.scale,
                                                                    enable_gqa=gqa)

    return _heads_first_case(attend, x)


def _varlen_case(x: Inputs):
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    options = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    if x.q.shape[1] != x.k.shape[1]:
        options["enable_gqa"] = True

    def attend(q, k, v):
        return varlen_attn(q, k, v, x.cu, x.cu, x.max_len, x.max_len, scale=x.scale, **options)

    return _autograd_case(attend, (x.q, x.k, x.v), x.dout, lambda out: out)


def _flex_case(x: Inputs):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    doc = x.doc

    def document_causal(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (kv_idx <= q_idx)

    n = x.q.shape[0]
    block_mask = create_block_mask(document_causal, None, None, n, n, device="cuda", _compile=True)
    compiled = torch.compile(flex_attention, dynamic=False)
    gqa = x.q.shape[1] != x.k.shape[1]

    def attend(q, k, v):
        return compiled(q, k, v, block_mask=block_mask, scale=x.scale, enable_gqa=gqa)

    return _heads_first_case(attend, x)


def run_backend(name: str, x: Inputs):
    """(fwd, second, out): `second` is the backward for triton, forward+backward for the others."""
    if name == "triton":
        return _triton_case(x)
    if name in DENSE_ONLY:
        return _sdpa_case(name, x)
    if name == "sdpa_varlen":
        return _varlen_case(x)
    return _flex_case(x)


def benchmark(args: argparse.Namespace) -> list[dict]:
    rows = []
    for layout in args.layouts:
        for tokens in args.sizes:
            workload = make_workload(layout, tokens, args.median_doc, args.seed)
            x = make_inputs(workload, args.heads, args.kv_heads, args.head_dim, DTYPES[args.dtype])
            reference_out = None
            for name in args.backends:
                row = dict(layout=layout, tokens=tokens, documents=len(workload.lengths),
                           sum_sq=workload.sum_sq, backend=name)
                if name in DENSE_ONLY and layout != "dense":
                    continue
                try:
                    fwd, second, out = run_backend(name, x)
                    fwd_ms = cuda_ms(fwd, args.warmup, args.iters)
                    second_ms = cuda_ms(second, args.warmup, args.iters)
                    bwd_ms = second_ms if name == "triton" else second_ms - fwd_ms
                    row.update(fwd_ms=fwd_ms, bwd_ms=bwd_ms,
                               fwd_tflops=attention_flops(workload, args.heads, args.head_dim, "fwd") / fwd_ms / 1e9,
                               bwd_tflops=attention_flops(workload, args.heads, args.head_dim, "bwd") / bwd_ms / 1e9)
                    if reference_out is None:
                        reference_out, row["max_abs_diff_vs_first"] = out, 0.0
                    else:
                        row["max_abs_diff_vs_first"] = float((out.float() - reference_out.float()).abs().max())
                except Exception as exc:  # one backend failing (OOM, unsupported) must not end the suite
                    row["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                finally:
                    torch.cuda.empty_cache()
                rows.append(row)
                print(_format_row(row), flush=True)
            del x
    return rows


def _format_row(row: dict) -> str:
    head = f"{row['layout']:>6} {row['tokens']:>7} tok {row['documents']:>5} docs  {row['backend']:<11}"
    if "error" in row:
        return f"{head} skipped: {row['error']}"
    return (f"{head} fwd {row['fwd_ms']:8.3f} ms {row['fwd_tflops']:6.1f} TFLOP/s   "
            f"bwd {row['bwd_ms']:8.3f} ms {row['bwd_tflops']:6.1f} TFLOP/s   diff {row['max_abs_diff_vs_first']:.2e}")


def _versions() -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version()}
    try:
        import triton

        versions["triton"] = triton.__version__
    except ImportError:
        versions["triton"] = None
    return versions


def write_results(args: argparse.Namespace, argv: list[str], rows: list[dict]) -> Path:
    device = torch.cuda.get_device_name()
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"kernels_{slug}_{time.strftime('%Y%m%dT%H%M%S')}.json"
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = {
        "suite": "kernels",
        "device": device,
        "machine": {"hostname": socket.gethostname(), "platform": platform.platform(),
                    "gpu_capability": list(torch.cuda.get_device_capability())},
        "versions": _versions(),
        "command": "longctx bench kernels " + " ".join(argv),
        "config": config,
        "flops_convention": "causal: fwd = 2 * sum_i(s_i^2) * head_dim * q_heads; bwd = 2.5 * fwd",
        "results": rows,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def cpu_smoke() -> int:
    """Run the triton kernels once on tiny packed documents under Triton's interpreter."""
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        print("kernels bench --cpu-smoke: triton was imported without TRITON_INTERPRET=1; run it in a fresh process")
        return 1
    os.environ["TRITON_INTERPRET"] = "1"
    from longctx.kernels import triton_attention

    lengths = [7, 20, 5]
    doc = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))
    pos = torch.cat([torch.arange(n) for n in lengths])
    q, k, v = torch.randn(32, 4, 32), torch.randn(32, 2, 32), torch.randn(32, 2, 32)
    start = time.perf_counter()
    out, lse = triton_attention.forward(q, k, v, doc, pos, doc, pos, 32 ** -0.5)
    dq, dk, dv = triton_attention.backward(torch.randn_like(out), q, k, v, out, lse, doc, pos, doc, pos, 32 ** -0.5)
    finite = all(bool(t.isfinite().all()) for t in (out, lse, dq, dk, dv))
    print(f"kernels bench --cpu-smoke: triton fwd+bwd on {len(doc)} tokens under the interpreter "
          f"in {time.perf_counter() - start:.1f} s, outputs finite: {finite}")
    return 0 if finite else 1


def _csv(cast):
    return lambda text: [cast(item) for item in text.split(",") if item]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="longctx bench kernels", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=_csv(int), default=[8192, 16384, 32768, 65536, 131072],
                        help="total tokens per workload, comma separated")
    parser.add_argument("--layouts", type=_csv(str), default=["dense", "packed"])
    parser.add_argument("--backends", type=_csv(str), default=list(BACKENDS))
    parser.add_argument("--heads", type=int, default=16, help="query heads")
    parser.add_argument("--kv-heads", type=int, default=16, help="key/value heads (GQA when fewer)")
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--median-doc", type=int, default=1024, help="median document length of 'packed' (tokens)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON result")
    parser.add_argument("--cpu-smoke", action="store_true", help="without CUDA: run the kernels once, interpreted")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.backends) - set(BACKENDS)) + sorted(set(args.layouts) - {"dense", "packed"})
    if unknown:
        parser.error(f"unknown backend/layout {unknown}; backends: {BACKENDS}, layouts: dense, packed")
    if args.heads % args.kv_heads:
        parser.error(f"--heads {args.heads} must be a multiple of --kv-heads {args.kv_heads}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.cpu_smoke:
        return cpu_smoke()
    if not torch.cuda.is_available():
        print("longctx bench kernels: this suite needs a CUDA GPU (none found); "
              "`--cpu-smoke` runs the kernels once under Triton's interpreter instead")
        return 0
    rows = benchmark(args)
    print(f"wrote {write_results(args, argv, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
