"""Triton kernels for document-masked causal attention over packed varlen buffers.

Imported lazily by :mod:`longctx.kernels.triton_attention` (Triton reads
``TRITON_INTERPRET`` when these functions are decorated, i.e. at import).

Layouts (all strides in elements, last dim contiguous):
  Q, dQ, Out, dOut `[Nq, Hq, D]`; K, V, dK, dV `[Nk, Hkv, D]`; Lse, Delta `[Nq, Hq]` fp32;
  QDoc, QPos `[Nq]` int32; KDoc, KPos `[Nk]` int32.
Query i sees key j iff ``QDoc[i] == KDoc[j] and KPos[j] <= QPos[i]``.
Scores are kept in base 2: ``s2 = (q . k) * softmax_scale * log2(e)``.

Partner ranges come from the host (:mod:`longctx.kernels.tile_ranges`) split in
two: a FULL part, where every query of the tile sees every key (one document,
keys at or before all queries), run without any mask in a plain loop the
compiler can pipeline; and a MASKED part, where each tile builds the mask and
is skipped when the mask is empty.
"""
import triton
import triton.language as tl

_LN2 = tl.constexpr(0.6931471805599453)
_LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _dot(a, b, DOT_PRECISION: tl.constexpr):
    """a @ b with fp32 accumulation. DOT_PRECISION "upcast" multiplies in fp32 IEEE: Triton's
    interpreter (3.9) mis-computes bf16 dots, so the CPU tests of bf16 inputs use it."""
    if DOT_PRECISION == "upcast":
        product = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        product = tl.dot(a, b, input_precision=DOT_PRECISION)
    return product


@triton.jit
def _load_rows(ptr, rows, row_ok, stride_t, head, stride_h, offs_d, HEAD_DIM: tl.constexpr):
    """Load a `[rows, BLOCK_D]` tile of one head (zeros outside the buffer)."""
    mask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    return tl.load(ptr + rows[:, None] * stride_t + head * stride_h + offs_d[None, :], mask=mask, other=0.0)


@triton.jit
def _store_rows(ptr, value, rows, row_ok, stride_t, head, stride_h, offs_d, HEAD_DIM: tl.constexpr):
    mask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    tl.store(ptr + rows[:, None] * stride_t + head * stride_h + offs_d[None, :], value.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _visible_keys(KDoc, KPos, cols, col_ok, q_doc, q_pos):
    """Mask `[M, N]`: query row i sees key column j (keys outside `col_ok` are never seen)."""
    k_doc = tl.load(KDoc + cols, mask=col_ok, other=-2)
    k_pos = tl.load(KPos + cols, mask=col_ok, other=0)
    return (q_doc[:, None] == k_doc[None, :]) & (k_pos[None, :] <= q_pos[:, None])


@triton.jit
def _whole_tiles_end(start, full_end, BLOCK: tl.constexpr):
    """End of the whole BLOCK-sized tiles inside the fully visible range [start, full_end)."""
    return start + (full_end - start) // BLOCK * BLOCK


@triton.jit
def _query_tile(Nq, GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """(tile, head, kv_head, rows, row_ok, offs_d) of a (query tiles, Hq) program, heaviest (latest) tiles first."""
    tile = tl.num_programs(0) - 1 - tl.program_id(0)
    head = tl.program_id(1)
    rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    return tile, head, head // GROUP, rows, rows < Nq, tl.arange(0, BLOCK_D)


@triton.jit
def _fwd_tile(acc, m_i, l_i, q, k, v, visible, qk_scale_log2, MASKED: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """One online-softmax step over a key tile; returns the updated (acc, m_i, l_i)."""
    s2 = _dot(q, tl.trans(k), DOT_PRECISION) * qk_scale_log2
    if MASKED:
        s2 = tl.where(visible, s2, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s2, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.math.exp2(m_i - m_safe)
    p = tl.math.exp2(s2 - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, DOT_PRECISION)
    return acc, m_new, l_i


@triton.jit
def attention_fwd_kernel(
    Q, K, V, Out, Lse, QDoc, QPos, KDoc, KPos, KStart, KFullEnd, KEnd,
    qk_scale_log2, Nq,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Grid (query tiles, Hq). Writes Out `[Nq, Hq, D]` and Lse `[Nq, Hq]` (natural log, -inf if no key).

    Keys [KStart, KFullEnd) are fully visible to the tile, [KFullEnd, KEnd) partly.
    """
    tile, head, kv_head, rows, row_ok, offs_d = _query_tile(Nq, GROUP, BLOCK_M, BLOCK_D)
    q = _load_rows(Q, rows, row_ok, stride_qt, head, stride_qh, offs_d, HEAD_DIM)
    q_doc = tl.load(QDoc + rows, mask=row_ok, other=-1)
    q_pos = tl.load(QPos + rows, mask=row_ok, other=-1)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    k_start, k_end = tl.load(KStart + tile), tl.load(KEnd + tile)
    full_stop = _whole_tiles_end(k_start, tl.load(KFullEnd + tile), BLOCK_N)
    for col0 in range(k_start, full_stop, BLOCK_N):
        cols = col0 + tl.arange(0, BLOCK_N)
        k = _load_rows(K, cols, cols < k_end, stride_kt, kv_head, stride_kh, offs_d, HEAD_DIM)
        v = _load_rows(V, cols, cols < k_end, stride_vt, kv_head, stride_vh, offs_d, HEAD_DIM)
        acc, m_i, l_i = _fwd_tile(acc, m_i, l_i, q, k, v, None, qk_scale_log2, False, DOT_PRECISION)
    for col0 in range(full_stop, k_end, BLOCK_N):
        cols = col0 + tl.arange(0, BLOCK_N)
        col_ok = cols < k_end
        visible = _visible_keys(KDoc, KPos, cols, col_ok, q_doc, q_pos)
        if tl.max(visible.to(tl.int32)) > 0:
            k = _load_rows(K, cols, col_ok, stride_kt, kv_head, stride_kh, offs_d, HEAD_DIM)
            v = _load_rows(V, cols, col_ok, stride_vt, kv_head, stride_vh, offs_d, HEAD_DIM)
            acc, m_i, l_i = _fwd_tile(acc, m_i, l_i, q, k, v, visible, qk_scale_log2, True, DOT_PRECISION)

    seen = l_i > 0
    l_safe = tl.where(seen, l_i, 1.0)
    _store_rows(Out, acc / l_safe[:, None], rows, row_ok, stride_ot, head, stride_oh, offs_d, HEAD_DIM)
    lse = tl.where(seen, (m_i + tl.math.log2(l_safe)) * _LN2, float("-inf"))
    tl.store(Lse + rows * tl.num_programs(1) + head, lse, mask=row_ok)


@triton.jit
def attention_bwd_delta_kernel(
    Out, dOut, Delta, Nq, stride_ot, stride_oh, stride_dt, stride_dh,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Grid (row tiles, Hq). Delta[i, h] = sum_d dOut[i, h, d] * Out[i, h, d] in fp32."""
    head = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < Nq
    offs_d = tl.arange(0, BLOCK_D)
    o = _load_rows(Out, rows, row_ok, stride_ot, head, stride_oh, offs_d, HEAD_DIM).to(tl.float32)
    do = _load_rows(dOut, rows, row_ok, stride_dt, head, stride_dh, offs_d, HEAD_DIM).to(tl.float32)
    tl.store(Delta + rows * tl.num_programs(1) + head, tl.sum(o * do, 1), mask=row_ok)


@triton.jit
def _dkdv_tile(dk, dv, k, v, k_doc, k_pos, Q, dOut, Lse, Delta, QDoc, QPos, rows, row_ok, head, Hq,
               stride_qt, stride_qh, stride_dt, stride_dh, offs_d, qk_scale_log2,
               HEAD_DIM: tl.constexpr, MASKED: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Accumulate one query tile into (dk, dv) of a key tile, on transposed `[N, M]` scores.

    Rows outside `row_ok` load lse=+inf, so they add nothing."""
    lse2 = tl.load(Lse + rows * Hq + head, mask=row_ok, other=float("inf")) * _LOG2E
    if MASKED:
        q_doc = tl.load(QDoc + rows, mask=row_ok, other=-1)
        q_pos = tl.load(QPos + rows, mask=row_ok, other=-1)
        visible_t = (k_doc[:, None] == q_doc[None, :]) & (k_pos[:, None] <= q_pos[None, :])
        run = tl.max(visible_t.to(tl.int32)) > 0
    else:
        visible_t = None
        run = True
    if run:
        q = _load_rows(Q, rows, row_ok, stride_qt, head, stride_qh, offs_d, HEAD_DIM)
        do = _load_rows(dOut, rows, row_ok, stride_dt, head, stride_dh, offs_d, HEAD_DIM)
        delta = tl.load(Delta + rows * Hq + head, mask=row_ok, other=0.0)
        p_t = tl.math.exp2(_dot(k, tl.trans(q), DOT_PRECISION) * qk_scale_log2 - lse2[None, :])
        if MASKED:
            p_t = tl.where(visible_t, p_t, 0.0)
        dv += _dot(p_t.to(do.dtype), do, DOT_PRECISION)
        ds_t = p_t * (_dot(v, tl.trans(do), DOT_PRECISION) - delta[None, :])
        dk += _dot(ds_t.to(q.dtype), q, DOT_PRECISION)
    return dk, dv


@triton.jit
def attention_bwd_dkdv_kernel(
    Q, K, V, dOut, Lse, Delta, dK, dV, QDoc, QPos, KDoc, KPos, QStart, QFullStart, QEnd,
    softmax_scale, qk_scale_log2, Nk, Hq,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dt, stride_dh,
    stride_dkt, stride_dkh, stride_dvt, stride_dvh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Grid (key tiles, Hkv). Sums the GROUP query heads of a kv head into dK, dV `[Nk, Hkv, D]`.

    Queries [QStart, QFullStart) see the key tile partly, [QFullStart, QEnd) fully.
    """
    tile = tl.program_id(0)
    kv_head = tl.program_id(1)
    cols = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < Nk
    offs_d = tl.arange(0, BLOCK_D)
    k = _load_rows(K, cols, col_ok, stride_kt, kv_head, stride_kh, offs_d, HEAD_DIM)
    v = _load_rows(V, cols, col_ok, stride_vt, kv_head, stride_vh, offs_d, HEAD_DIM)
    k_doc = tl.load(KDoc + cols, mask=col_ok, other=-2)
    k_pos = tl.load(KPos + cols, mask=col_ok, other=0)

    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    q_start, q_full_start, q_end = tl.load(QStart + tile), tl.load(QFullStart + tile), tl.load(QEnd + tile)
    for g in range(GROUP):
        head = kv_head * GROUP + g
        for row0 in range(q_start, q_full_start, BLOCK_M):
            rows = row0 + tl.arange(0, BLOCK_M)
            dk, dv = _dkdv_tile(dk, dv, k, v, k_doc, k_pos, Q, dOut, Lse, Delta, QDoc, QPos, rows,
                                rows < q_full_start, head, Hq, stride_qt, stride_qh, stride_dt, stride_dh,
                                offs_d, qk_scale_log2, HEAD_DIM, True, DOT_PRECISION)
        for row0 in range(q_full_start, q_end, BLOCK_M):
            rows = row0 + tl.arange(0, BLOCK_M)
            dk, dv = _dkdv_tile(dk, dv, k, v, k_doc, k_pos, Q, dOut, Lse, Delta, QDoc, QPos, rows,
                                rows < q_end, head, Hq, stride_qt, stride_qh, stride_dt, stride_dh,
                                offs_d, qk_scale_log2, HEAD_DIM, False, DOT_PRECISION)
    _store_rows(dK, dk * softmax_scale, cols, col_ok, stride_dkt, kv_head, stride_dkh, offs_d, HEAD_DIM)
    _store_rows(dV, dv, cols, col_ok, stride_dvt, kv_head, stride_dvh, offs_d, HEAD_DIM)


@triton.jit
def _dq_tile(dq, q, do, lse2, delta, K, V, cols, col_ok, kv_head, stride_kt, stride_kh, stride_vt, stride_vh,
             offs_d, visible, qk_scale_log2, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
             DOT_PRECISION: tl.constexpr):
    """Accumulate one key tile into dq `[M, D]` of a query tile."""
    k = _load_rows(K, cols, col_ok, stride_kt, kv_head, stride_kh, offs_d, HEAD_DIM)
    v = _load_rows(V, cols, col_ok, stride_vt, kv_head, stride_vh, offs_d, HEAD_DIM)
    p = tl.math.exp2(_dot(q, tl.trans(k), DOT_PRECISION) * qk_scale_log2 - lse2[:, None])
    if MASKED:
        p = tl.where(visible, p, 0.0)
    ds = p * (_dot(do, tl.trans(v), DOT_PRECISION) - delta[:, None])
    return dq + _dot(ds.to(k.dtype), k, DOT_PRECISION)


@triton.jit
def attention_bwd_dq_kernel(
    Q, K, V, dOut, Lse, Delta, dQ, QDoc, QPos, KDoc, KPos, KStart, KFullEnd, KEnd,
    softmax_scale, qk_scale_log2, Nq,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dt, stride_dh,
    stride_dqt, stride_dqh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Grid (query tiles, Hq). Writes dQ `[Nq, Hq, D]`; key ranges as in the forward kernel."""
    tile, head, kv_head, rows, row_ok, offs_d = _query_tile(Nq, GROUP, BLOCK_M, BLOCK_D)
    q = _load_rows(Q, rows, row_ok, stride_qt, head, stride_qh, offs_d, HEAD_DIM)
    do = _load_rows(dOut, rows, row_ok, stride_dt, head, stride_dh, offs_d, HEAD_DIM)
    num_heads = tl.num_programs(1)
    lse2 = tl.load(Lse + rows * num_heads + head, mask=row_ok, other=float("inf")) * _LOG2E
    delta = tl.load(Delta + rows * num_heads + head, mask=row_ok, other=0.0)
    q_doc = tl.load(QDoc + rows, mask=row_ok, other=-1)
    q_pos = tl.load(QPos + rows, mask=row_ok, other=-1)

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    k_start, k_end = tl.load(KStart + tile), tl.load(KEnd + tile)
    full_stop = _whole_tiles_end(k_start, tl.load(KFullEnd + tile), BLOCK_N)
    for col0 in range(k_start, full_stop, BLOCK_N):
        cols = col0 + tl.arange(0, BLOCK_N)
        dq = _dq_tile(dq, q, do, lse2, delta, K, V, cols, cols < k_end, kv_head, stride_kt, stride_kh,
                      stride_vt, stride_vh, offs_d, None, qk_scale_log2, HEAD_DIM, False, DOT_PRECISION)
    for col0 in range(full_stop, k_end, BLOCK_N):
        cols = col0 + tl.arange(0, BLOCK_N)
        col_ok = cols < k_end
        visible = _visible_keys(KDoc, KPos, cols, col_ok, q_doc, q_pos)
        if tl.max(visible.to(tl.int32)) > 0:
            dq = _dq_tile(dq, q, do, lse2, delta, K, V, cols, col_ok, kv_head, stride_kt, stride_kh,
                          stride_vt, stride_vh, offs_d, visible, qk_scale_log2, HEAD_DIM, True, DOT_PRECISION)
    _store_rows(dQ, dq * softmax_scale, rows, row_ok, stride_dqt, head, stride_dqh, offs_d, HEAD_DIM)
