"""Decode attention's entry point: the kernels of attention.py on this thread, on numba's threads, or on the
decode pool (pool.py), in items of one KV head over a span of positions.

WHY a module of its own: attention.py holds the vector kernels; this one decides where they run and holds what
running them on the pool needs (the item kernels, their job parameters, the merge of a head's spans).
"""

from __future__ import annotations

import numpy as np
from numba import cfunc, njit

from . import pool
from .attention import CTX_ROUND, _pv_at, _qk_at, attention_parallel, attention_serial, group_chunk
from .attention_int8 import int_query, is_q4, quantize_query, query_floats
from .cache_ir import STEP_TILES, TILE, shape_token
from .softmax import exp_f32, exp_shifted, row_max


_TOKENS = {(step, g, i): shape_token(step, g, i) for step in set(STEP_TILES.values()) for g in (4, 2, 1)
           for i in (False, True)}


def run(path: str, parallel: bool, q, keys, values, k_scale, v_scale, pos0, n_heads, scale, scores, out,
        span: int | None = None) -> None:
    """Decode attention on `path` ("avx512bw": 4 key tiles per q.k step and 4 vectors per value pass; "avx2": 2
    and 2; "avx512vnni": avx512bw's, with the int8 q.k for q8 / q4 keys), over the threads or on this one (see
    layers.attention). The float shapes are plain LLVM vector IR (no instruction the CPU may lack). One query (a
    decode step) over the threads runs on the decode pool, in spans of at most `span` positions (default: the
    most an item's buffer holds; tests pass less); items address keys and values per KV head alike."""
    token = _TOKENS[STEP_TILES[path], group_chunk(n_heads // keys.shape[0]),
                    path == "avx512vnni" and keys.dtype in (np.uint8, np.int8)]
    n_threads = pool.threads_now()
    if parallel and q.shape[0] == 1 and n_threads > 1 and pool.available() and keys.strides[0] == values.strides[0]:
        n_kv, hd = keys.shape[0], keys.shape[2]
        span = span_positions(n_heads // n_kv, hd, pos0 + 1, span)
        buf = _merge_buffer(n_heads * hd + n_kv * -(-(pos0 + 1) // span) * (n_heads // n_kv) * (hd + 2))
        pool.get_pool(n_threads).run(attention_pool, span_item(keys.dtype, token), q, keys, values, k_scale,
                                     v_scale, pos0, n_heads, scale, buf, out, span, n_threads, token)
        return
    kernel = attention_parallel if parallel else attention_serial
    kernel(q, keys, values, k_scale, v_scale, pos0, n_heads, scale, scores, out, token)


# ---------------------------------------------------------------------------------------------------------------
# decode attention on the decode pool: items of (KV head, span of positions), merged by their maxima
# ---------------------------------------------------------------------------------------------------------------
# WHY: a decode step runs its matrix products on the pool's threads (pool.py), which spin between jobs, while
# numba's OpenMP threads sleep (PASSIVE waits, kernels/__init__), so every layer's prange attention paid a thread
# wake-up and a barrier: inside Bonsai-1.7B's decode after 1,500 positions attention took 4.3-4.5 ms per token
# against 3.5 ms run alone (4-bit cache, Emerald Rapids). On the pool the same kernels run as items.
#
# An item is one KV head's query group over one span of positions (flash-decoding): its q.k scores, their maximum
# m and sum l of exp(score - m), and the unnormalised weighted values, all in the thread's private buffer
# (pool.MAX_ROWS floats: a late helper's copy must never touch shared memory, pool.py says why). The caller
# merges a head's spans: out = sum_c e^(m_c - M) o_c / sum_c e^(m_c - M) l_c, M = max_c m_c.
#
# Job parameters (pool.PARAMS order): the spans' results, the scaled query, keys, values, key scales, value scales
# (addresses); positions, head size, scale blocks per row, cache rows (n_ctx), span, spans per head, query heads
# per KV head, bytes per KV head of the cache, KV heads.
_P_PARTS, _P_Q, _P_K, _P_V, _P_KS, _P_VS, _P_NPOS, _P_HD, _P_NB, _P_NCTX, _P_SPAN, _P_NSPANS, _P_GROUP, \
    _P_HEAD_BYTES, _P_NKV = range(15)


@njit(inline="always")
def _scores_at(group, hd):
    """First float of an item's score rows in its buffer: after the span's result (group rows of hd weighted
    values, then group maxima and group sums), rounded up to whole vectors."""
    return -(-(group * (hd + 2)) // TILE) * TILE


def span_positions(group: int, hd: int, n_pos: int, most: int | None = None) -> int:
    """Positions per item: the fewest spans whose score rows fit an item's buffer (and are at most `most`),
    split evenly, in whole CTX_ROUND steps (the q.k kernels compute whole steps of tiles)."""
    fit = (pool.MAX_ROWS - _scores_at.py_func(group, hd)) // group // CTX_ROUND * CTX_ROUND
    most = fit if most is None else max(CTX_ROUND, min(fit, most // CTX_ROUND * CTX_ROUND))
    n_spans = -(-n_pos // most)
    return -(-(-(-n_pos // n_spans)) // CTX_ROUND) * CTX_ROUND


@njit(inline="always")
def _attend_span(job_addr, i, acc_addr, token, elem):
    """Item i = (KV head i // spans, span i % spans) into the buffer at acc_addr (layout: `_scores_at`). Returns
    (first float of its part << 16) | floats of a part (0 for an item past the job: see pool.ITEM_SIG)."""
    job = pool.carray_i64(job_addr, pool.N_PARAMS)
    n_pos, hd, nb, n_ctx = job[_P_NPOS], job[_P_HD], job[_P_NB], job[_P_NCTX]
    span, n_spans, group, head_bytes = job[_P_SPAN], job[_P_NSPANS], job[_P_GROUP], job[_P_HEAD_BYTES]
    kvh, p0 = i // n_spans, (i % n_spans) * span
    if kvh >= job[_P_NKV]:
        return 0
    n = min(span, n_pos - p0)
    g, step = token.ndim, token.itemsize
    bs = hd // nb
    offset = kvh * head_bytes + p0 * (head_bytes // n_ctx)     # p0 is whole tiles: keys and values alike
    at = _scores_at(group, hd)
    w = acc_addr + 4 * at                                      # score rows, span floats apart
    per = query_floats(hd, nb) if int_query(token, elem) else hd     # float32 slots of one head's query
    q = job[_P_Q] + 4 * kvh * group * per
    ks = job[_P_KS] + 4 * (kvh * nb * n_ctx + p0)
    vs = job[_P_VS] + 4 * (kvh * n_ctx + p0) * nb
    n_steps = -(-n // (TILE * step))
    for j0 in range(0, group, g):
        _qk_at(token, elem, job[_P_K] + offset, q + 4 * j0 * per, ks, w + 4 * j0 * span, n_steps, hd, bs, n_ctx,
               span)
    acc = pool.carray_f32(acc_addr, at + group * span)
    for j in range(group):
        row = acc[at + j * span:at + (j + 1) * span]
        m = row_max(row, n)
        acc[group * hd + j] = m
        acc[group * hd + group + j] = exp_shifted(row, n, m)
    for j0 in range(0, group, g):
        _pv_at(token, elem, job[_P_V] + offset, w + 4 * j0 * span, vs, acc_addr + 4 * j0 * hd, n, hd, bs, nb, span)
    part = group * (hd + 2)
    return ((i * part) << 16) | part


_MERGE: list = [np.zeros(0, np.float32)]


def _merge_buffer(n: int) -> np.ndarray:
    """At least n floats for the scaled query and the spans' results (one per process: decode steps run one at a
    time; a buffer replaced while a late helper still reads it stays referenced by pool.Pool.run)."""
    if _MERGE[0].size < n:
        _MERGE[0] = np.zeros(2 * n, np.float32)
    return _MERGE[0]


_SPAN_ITEMS: dict = {}


def span_item(dtype, token) -> int:
    """Address of the pool item kernel for a cache of `dtype` and a shape token, compiled (or loaded from numba's
    cache: the closure's arrays are part of its key) on first use only."""
    key = (np.dtype(dtype).str, token.ndim, token.dtype.str)
    if key not in _SPAN_ITEMS:
        elem = np.empty(0, dtype)

        def item(job, i, acc):
            return _attend_span(job, i, acc, token, elem)

        _SPAN_ITEMS[key] = cfunc(pool.ITEM_SIG, cache=True)(item)
    return _SPAN_ITEMS[key].address


@njit(cache=True)
def attention_pool(ctl, scratch, fn, q, keys, values, k_scale, v_scale, pos0, n_heads, scale, buf, out, span,
                   n_workers, token):
    """One query's attention over the pool (pool.run_job): the scaled query and the spans' results in buf
    (`_merge_buffer`), then each head's spans merged into out. Returns the items taken over."""
    n_kv, hd = keys.shape[0], keys.shape[2]
    group = n_heads // n_kv
    nb, n_ctx = k_scale.shape[1], k_scale.shape[2]
    n_pos = pos0 + 1
    n_spans = -(-n_pos // span)
    part = group * (hd + 2)
    qs, parts = buf[:n_heads * hd], buf[n_heads * hd:]
    if int_query(token, keys):
        quantize_query(q[0], scale, n_heads, hd, nb, is_q4(keys), qs)
    else:
        for i in range(n_heads * hd):
            qs[i] = q[0, i] * scale
    p = pool.PARAMS
    ctl[p + _P_PARTS], ctl[p + _P_Q], ctl[p + _P_K] = pool.address(parts), pool.address(qs), pool.address(keys)
    ctl[p + _P_V], ctl[p + _P_KS], ctl[p + _P_VS] = pool.address(values), pool.address(k_scale), \
        pool.address(v_scale)
    ctl[p + _P_NPOS], ctl[p + _P_HD], ctl[p + _P_NB], ctl[p + _P_NCTX] = n_pos, hd, nb, n_ctx
    ctl[p + _P_SPAN], ctl[p + _P_NSPANS], ctl[p + _P_GROUP] = span, n_spans, group
    ctl[p + _P_HEAD_BYTES], ctl[p + _P_NKV] = keys.strides[0], n_kv
    taken = pool.run_job(ctl, scratch, fn, n_kv * n_spans, n_workers)
    for kvh in range(n_kv):
        for j in range(group):
            o = out[0, (kvh * group + j) * hd:(kvh * group + j + 1) * hd]
            first = kvh * n_spans * part
            top = parts[first + group * hd + j]
            for c in range(1, n_spans):
                top = max(top, parts[first + c * part + group * hd + j])
            den = np.float32(0.0)
            o[:] = 0.0
            for c in range(n_spans):
                base = first + c * part
                f = exp_f32(parts[base + group * hd + j] - top)
                den += f * parts[base + group * hd + group + j]
                for d in range(hd):
                    o[d] += f * parts[base + j * hd + d]
            inv = np.float32(1.0) / den
            for d in range(hd):
                o[d] *= inv
    return taken
