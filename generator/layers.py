"""Numba hot loops of the Qwen3 forward pass that are not matrix products: RMSNorm, q/k head norm + RoPE,
causal GQA attention over the KV cache, SwiGLU. Plus the RoPE tables (plain numpy, built once per model).

Every kernel works on 2-D row batches `(T, ...)`: prefill passes T prompt tokens, decode passes T = 1
(a `(1, n)` view of its preallocated buffers), so both paths share one tested implementation.
Reductions (sum of squares, softmax denominators) accumulate in float64, as ggml does; everything stored
is float32. The KV cache's writers (store, quantize per block, rotate) are in `generator/kv_cache.py`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange

from generator.kernels import attention as attention_simd
from generator.kernels import attention_amx, decode_attention, dispatch
from generator.kernels.attention import TILE
from generator.kernels.softmax import exp_f32, exp_shifted, row_max
from generator.kernels.half import cache_value, half_to_float, tile_value

PARALLEL_ROWS = 16   # from this many tokens on (a prompt chunk) the `*_rows` kernels split the tokens over the
# threads; decode's one token stays on the serial ones (a parallel region costs ~10 us to open and close)

# ---------------------------------------------------------------------------------------------------------------
# RMSNorm
# ---------------------------------------------------------------------------------------------------------------


@njit(inline="always")
def _rmsnorm_row(x, w, eps, out, t):
    n = x.shape[1]
    ss = 0.0
    for i in range(n):
        v = np.float64(x[t, i])
        ss += v * v
    scale = np.float32(1.0 / math.sqrt(ss / n + eps))
    for i in range(n):
        out[t, i] = (x[t, i] * scale) * w[i]


@njit(cache=True, fastmath=False)
def rmsnorm(x, w, eps, out):
    """out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w.   x, out: (T, n) float32; w: (n,) float32."""
    for t in range(x.shape[0]):
        _rmsnorm_row(x, w, eps, out, t)


@njit(cache=True, fastmath=False, parallel=True)
def add_rmsnorm_rows(x, y, w, eps, out):
    """x += y, then out = rmsnorm(x) * w (`rmsnorm`), tokens over the threads: a prompt chunk's residual add and
    norm, which ran on one thread beside the matrix products on two (the same float32 operations, so the
    same bits as numpy's add and `rmsnorm`)."""
    for t in prange(x.shape[0]):
        for i in range(x.shape[1]):
            x[t, i] += y[t, i]
        _rmsnorm_row(x, w, eps, out, t)


@njit(cache=True, fastmath=False, parallel=True)
def rmsnorm_rows(x, w, eps, out):
    """`rmsnorm` with the tokens over the threads (prefill; decode's one row stays on `rmsnorm`)."""
    for t in prange(x.shape[0]):
        _rmsnorm_row(x, w, eps, out, t)


# ---------------------------------------------------------------------------------------------------------------
# Per-head RMSNorm followed by NEOX RoPE (Qwen3 normalises q and k per head BEFORE rotating them)
# ---------------------------------------------------------------------------------------------------------------


@njit(inline="always")
def _head_norm_rope_row(x, t, n_heads, head_dim, w, eps, cos_tab, sin_tab, p):
    half = head_dim // 2
    for h in range(n_heads):
        base = h * head_dim
        ss = 0.0
        for i in range(head_dim):
            v = np.float64(x[t, base + i])
            ss += v * v
        scale = np.float32(1.0 / math.sqrt(ss / head_dim + eps))
        for i in range(head_dim):
            x[t, base + i] = (x[t, base + i] * scale) * w[i]
        for j in range(half):
            c = cos_tab[p, j]
            s = sin_tab[p, j]
            a = x[t, base + j]
            b = x[t, base + j + half]
            x[t, base + j] = a * c - b * s
            x[t, base + j + half] = a * s + b * c


@njit(cache=True, fastmath=False)
def head_norm_rope(x, n_heads, head_dim, w, eps, cos_tab, sin_tab, pos0):
    """In place on x: (T, n_heads*head_dim) float32, token t at position pos0 + t.

    w: (head_dim,) gains; cos_tab, sin_tab: (n_ctx, head_dim/2) float32 (YaRN mscale already folded in).
    NEOX pairing: element j rotates with element j + head_dim/2.
    """
    for t in range(x.shape[0]):
        _head_norm_rope_row(x, t, n_heads, head_dim, w, eps, cos_tab, sin_tab, pos0 + t)


@njit(inline="always")
def _split_qkv_row(qkv, q, k, v, t, n_heads, n_kv, head_dim, q_norm, k_norm, eps, cos_tab, sin_tab, pos0):
    qd, kd = q.shape[1], k.shape[1]
    # element loops, not slice assignment: numba compiles a shape-mismatch error path (with its string
    # formatting) for each `q[t] = qkv[t, :qd]`, ~2 s of a fresh install's compile (generator/warmup.py)
    for i in range(qd):
        q[t, i] = qkv[t, i]
    for i in range(kd):
        k[t, i] = qkv[t, qd + i]
        v[t, i] = qkv[t, qd + kd + i]
    _head_norm_rope_row(q, t, n_heads, head_dim, q_norm, eps, cos_tab, sin_tab, pos0 + t)
    _head_norm_rope_row(k, t, n_kv, head_dim, k_norm, eps, cos_tab, sin_tab, pos0 + t)


@njit(cache=True, fastmath=False)
def split_qkv_norm_rope(qkv, q, k, v, n_heads, n_kv, head_dim, q_norm, k_norm, eps, cos_tab, sin_tab, pos0):
    """q, k, v <- the three parts of the stacked W_qkv product (T, q_dim + 2 kv_dim); then `head_norm_rope` on
    q and k. One call for what were three numpy copies and two kernel calls (~10 us per decode layer)."""
    for t in range(qkv.shape[0]):
        _split_qkv_row(qkv, q, k, v, t, n_heads, n_kv, head_dim, q_norm, k_norm, eps, cos_tab, sin_tab, pos0)


@njit(cache=True, fastmath=False, parallel=True)
def split_qkv_norm_rope_rows(qkv, q, k, v, n_heads, n_kv, head_dim, q_norm, k_norm, eps, cos_tab, sin_tab, pos0):
    """`split_qkv_norm_rope` with the tokens over the threads (prefill)."""
    for t in prange(qkv.shape[0]):
        _split_qkv_row(qkv, q, k, v, t, n_heads, n_kv, head_dim, q_norm, k_norm, eps, cos_tab, sin_tab, pos0)


def rope_tables(n_ctx: int, head_dim: int, base: float, yarn_factor: float = 1.0,
                yarn_orig_ctx: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables (n_ctx, head_dim/2) float32 for NEOX RoPE, with YaRN when yarn_factor > 1.

    YaRN as llama.cpp applies it (beta_fast 32, beta_slow 1, ext_factor 1): pair j keeps its frequency
    below the `low` correction dim, is divided by `factor` above `high`, linear ramp in between; cos and sin
    are scaled by mscale = 1 + 0.1 ln(factor) (so attention scores grow by mscale^2).
    """
    d = head_dim
    j = np.arange(d // 2, dtype=np.float64)
    inv_freq = base ** (-2.0 * j / d)  # (d/2,)
    mscale = 1.0
    if yarn_factor > 1.0:
        def corr(n_rot: float) -> float:
            return d * math.log(yarn_orig_ctx / (2 * math.pi * n_rot)) / (2 * math.log(base))
        low = max(0.0, math.floor(corr(32.0)))
        high = min(d - 1.0, math.ceil(corr(1.0)))
        ramp = 1.0 - np.clip((j - low) / max(0.001, high - low), 0.0, 1.0)  # 1 = keep (extrapolate)
        inv_freq = inv_freq / yarn_factor * (1.0 - ramp) + inv_freq * ramp
        mscale = 1.0 + 0.1 * math.log(yarn_factor)
    theta = np.arange(n_ctx, dtype=np.float64)[:, None] * inv_freq[None, :]  # (n_ctx, d/2)
    return ((np.cos(theta) * mscale).astype(np.float32), (np.sin(theta) * mscale).astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# Causal grouped-query attention over the KV cache
# ---------------------------------------------------------------------------------------------------------------


# Reassociation lets LLVM vectorise the dot products and the weighted sum (only the summation order changes);
# no nnan/ninf flags: the running max starts at -inf.
_ATTN_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=_ATTN_FASTMATH)
def _attend_group(q, k_cache, v_cache, k_scale, v_scale, pos0, kvh, group, scale, scores, out):
    """The `group` query heads that share KV head kvh, for all T queries (see `attention`): the portable path.

    Each cached key/value row is read once for the whole group (GQA: 2-4 query heads per KV head).
    scores[h] is the scratch row of query head h. k_scale (n_kv, nb, n_ctx), v_scale (n_kv, n_ctx, nb): the
    scale of each block of hd / nb values of each cached key / value row (ones, nb = 1, for float32 / F16
    caches: adding a block's partial sum to 0 and multiplying by 1 are exact, so those caches give the same
    bits as a loop without scales).
    """
    T = q.shape[0]
    hd = k_cache.shape[2]
    tiles = k_cache[kvh]                # (n_ctx / TILE, hd, TILE): dimension i of TILE positions contiguous
    values = v_cache[kvh]               # (n_ctx, hd)
    ks, vs = k_scale[kvh], v_scale[kvh]
    nb = ks.shape[0]
    bs = hd // nb
    part = np.empty((group, tiles.shape[0] * TILE), np.float32)   # one block's partial q.k per head
    h0 = kvh * group
    for t in range(T):
        n_pos = pos0 + t + 1
        n_tiles = -(-n_pos // TILE)
        # scores[h, p] = scale * q_h . k_p, accumulated one key dimension of one tile at a time
        for h in range(h0, h0 + group):
            scores[h, :n_pos] = 0.0
        for b in range(nb):
            part[:, :n_tiles * TILE] = 0.0
            for tile in range(n_tiles):
                kt = tiles[tile]
                for i in range(b * bs, (b + 1) * bs):
                    for h in range(h0, h0 + group):
                        qi = q[t, h * hd + i] * scale
                        prow = part[h - h0, tile * TILE:(tile + 1) * TILE]
                        for j in range(TILE):
                            prow[j] += qi * tile_value(kt, i, j)
            sb = ks[b]
            for h in range(h0, h0 + group):
                srow, prow = scores[h], part[h - h0]
                for p in range(n_pos):
                    srow[p] += prow[p] * sb[p]
        # softmax per head (float32 values, float64 denominator), normalised in place
        for h in range(h0, h0 + group):
            srow = scores[h]
            smax = -np.inf
            for p in range(n_pos):
                smax = max(smax, srow[p])
            den = 0.0
            for p in range(n_pos):
                e = np.float32(math.exp(srow[p] - smax))
                srow[p] = e
                den += e
            inv = np.float32(1.0 / den)
            for p in range(n_pos):
                srow[p] *= inv
            out[t, h * hd:(h + 1) * hd] = 0.0
        # out_h = sum_p softmax_h,p * v_p   (v rows read once, in position order)
        for p in range(n_pos):
            vr = values[p]
            for h in range(h0, h0 + group):
                for b in range(nb):
                    wgt = scores[h, p] * vs[p, b]
                    ov = out[t, h * hd + b * bs:h * hd + (b + 1) * bs]
                    for i in range(bs):
                        ov[i] += wgt * cache_value(vr, b * bs + i)


@njit(cache=True, parallel=True)
def _attention_parallel(q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, scores, out):
    n_kv = k_cache.shape[0]
    for kvh in prange(n_kv):
        _attend_group(q, k_cache, v_cache, k_scale, v_scale, pos0, kvh, n_heads // n_kv, scale, scores, out)


@njit(cache=True)
def _attention_serial(q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, scores, out):
    n_kv = k_cache.shape[0]
    for kvh in range(n_kv):
        _attend_group(q, k_cache, v_cache, k_scale, v_scale, pos0, kvh, n_heads // n_kv, scale, scores, out)


PARALLEL_MIN_WORK = 1 << 19  # multiply-adds below which waking threads costs more than it saves: decode attention
# of 16 heads x 128 broke even at ~150 positions (2 threads, Emerald Rapids; 1 << 22 kept ~1,000 positions serial,
# 1.5x slower there)
BLAS_MIN_QUERIES = 16        # from this many queries on (prefill), attention runs as matrix products


@njit(cache=True, nogil=True)
def _widen_head(tiles, values, k_scale, v_scale, n_pos, keys_t, values32):
    """One KV head's first n_pos keys as a float32 (hd, n_pos) matrix and values as (n_pos, hd), times their
    block scales (ones for float32 / F16 caches): the operands sgemm needs. keys_t must hold whole tiles."""
    hd = tiles.shape[1]
    nb = k_scale.shape[0]
    bs = hd // nb
    for tile in range(-(-n_pos // TILE)):
        kt = tiles[tile]
        for i in range(hd):
            s = k_scale[i // bs]
            for j in range(TILE):
                keys_t[i, tile * TILE + j] = tile_value(kt, i, j) * s[tile * TILE + j]
    for p in range(n_pos):
        vr, dst = values[p], values32[p]
        for i in range(hd):
            dst[i] = cache_value(vr, i) * v_scale[p, i // bs]


@njit(cache=True, nogil=True)
def _widen_head_f16(tiles, values, n_pos, keys_t, values32):
    """_widen_head for the F16 cache (its scales are ones): row by row over contiguous views, which LLVM turns into
    vcvtph2ps; the general loop, with its scale per element, stayed scalar (3.3x the time, Zen4)."""
    hd = tiles.shape[1]
    for tile in range(-(-n_pos // TILE)):
        kt = tiles[tile]
        base = tile * TILE
        for i in range(hd):
            src, dst = kt[i], keys_t[i]
            for j in range(TILE):
                dst[base + j] = half_to_float(src[j])
    for p in range(n_pos):
        src, dst = values[p], values32[p]
        for i in range(hd):
            dst[i] = half_to_float(src[i])


BLAS_ROW_BLOCK = 256   # query rows (tokens x group) per block of _attend_head_blas


def _attend_head_blas(qg, tiles, values, k_scale, v_scale, pos0, group, out):
    """One KV head: out (T*group, hd) = softmax(qg @ keys[:n_pos].T + causal mask) @ values[:n_pos].

    The cache is widened to float32 first (tiles to a plain (hd, n_pos) matrix, int8 times its block scales;
    under 1% of the products' cost): sgemm needs float32. The query rows go in blocks of BLAS_ROW_BLOCK, each
    over the keys up to its last token only. WHY: a block's scores (256 x 1,500 float32: 1.5 MB) stay in L2
    through the softmax and second product, where the whole chunk's (1,024 x 1,500: 6 MB) streamed from
    memory five times; and a block skips the keys after its last token, which the whole chunk computed and
    then masked (a quarter of the products a 1,500-token prefill in chunks of 512 computed). The mask, max, exp
    and sum are one pass per row (_causal_softmax_rows), not numpy's five."""
    n_pos, hd = pos0 + qg.shape[0] // group, tiles.shape[1]
    keys_t = np.empty((hd, -(-n_pos // TILE) * TILE), np.float32)
    values32 = np.empty((n_pos, hd), np.float32)
    if tiles.dtype == np.uint16:
        _widen_head_f16(tiles, values, n_pos, keys_t, values32)
    else:
        _widen_head(tiles, values, k_scale, v_scale, n_pos, keys_t, values32)
    rows = max(group, BLAS_ROW_BLOCK // group * group)      # whole tokens per block
    sums = np.empty(rows, np.float32)
    for r0 in range(0, qg.shape[0], rows):
        r1 = min(r0 + rows, qg.shape[0])
        n = pos0 + (r1 - 1) // group + 1                    # keys up to the block's last token
        s = qg[r0:r1] @ keys_t[:, :-(-n // TILE) * TILE]    # (rows, n rounded up to whole tiles: row_max's reads)
        _causal_softmax_rows(s, n, pos0 + r0 // group + 1, group, sums)
        np.matmul(s[:, :n], values32[:n], out=out[r0:r1])   # (rows, hd)
        out[r0:r1] /= sums[:r1 - r0, None]


@njit(cache=True, nogil=True)
def _causal_softmax_rows(s, n, first_keys, group, sums):
    """Row r of s (query head r % group of token r // group of the block) <- exp(score - row max) over its
    first_keys + r // group keys (at most n), zeros after them (the causal mask); sums[r] = the row's sum.
    s has its columns to a multiple of 16 (row_max reads whole vectors)."""
    for r in range(s.shape[0]):
        k = min(n, first_keys + r // group)
        row = s[r]
        sums[r] = exp_shifted(row, k, row_max(row, k))
        for p in range(k, n):
            row[p] = 0.0


_POOL: list = [None, 0]   # [ThreadPoolExecutor, its size]: python threads for KV heads (numpy releases the GIL)
_BLAS: list = []          # threadpoolctl controllers of numpy's BLAS, found on first use (if installed)


@contextmanager
def _single_threaded_blas():
    """numpy's OpenBLAS at 1 thread while our own threads split the heads: two levels of threads on
    2 shared cores measured 2-3x slower than one (BLAS threads spin while they wait)."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.extend(c for c in ThreadpoolController().lib_controllers if c.user_api == "blas")
        except Exception:  # optional: without threadpoolctl BLAS keeps its own thread count
            pass
        _BLAS.append(None)
    libs = [c for c in _BLAS if c is not None]
    old = [c.get_num_threads() for c in libs]
    for c in libs:
        c.set_num_threads(1)
    try:
        yield
    finally:
        for c, n in zip(libs, old):
            c.set_num_threads(n)


def _attention_blas(q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, out):
    """Prefill attention as two matrix products per KV head (BLAS sgemm), KV heads split over the threads.

    WHY: for a long prompt attention is O(T * n_pos * hd); the per-query numba loop re-reads its score rows
    once per key dimension and took ~30% of a 1,500-token prefill; sgemm does the same products ~2.5x
    faster per CPU second. The group's query heads are stacked as rows (T*group, hd), so each key/value row
    serves them all; the causal mask only touches the last T columns. Softmax in float32, max-subtracted.
    """
    T, hd = q.shape[0], k_cache.shape[2]
    n_kv = k_cache.shape[0]
    group = n_heads // n_kv
    q_heads = q.reshape(T, n_kv, group * hd)
    dst = out if out.flags.c_contiguous else np.empty(out.shape, np.float32)   # reshaped below: must be a view
    out_heads = dst.reshape(T, n_kv, group * hd)

    def head(h):
        """KV head h, on its own thread: its queries gathered and its output scattered there too (done for all
        heads at once before and after the threads, the two copies kept one core idle for ~15% of the time)."""
        # (T, group * hd) -> (T*group, hd): row t*group + j is query head h*group + j of token t
        qg = (q_heads[:, h] * scale).reshape(T * group, hd)
        res = np.empty((T * group, hd), np.float32)
        _attend_head_blas(qg, k_cache[h], v_cache[h], k_scale[h], v_scale[h], pos0, group, res)
        out_heads[:, h] = res.reshape(T, group * hd)

    n_threads = min(numba.get_num_threads(), n_kv)
    with _single_threaded_blas():
        if n_threads <= 1:
            for h in range(n_kv):
                head(h)
        else:
            if _POOL[1] != n_threads:
                if _POOL[0] is not None:
                    _POOL[0].shutdown()
                _POOL[:] = [ThreadPoolExecutor(n_threads, thread_name_prefix="attn"), n_threads]
            list(_POOL[0].map(head, range(n_kv)))
    if dst is not out:
        out[...] = dst


def attention(q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, scores, out, path=None, prefill=None,
              exact=True):
    """Causal attention for T queries at positions pos0..pos0+T-1 over cached keys/values 0..pos0+T-1.

    q:       (T, n_heads*hd) float32 (normed + rotated)
    k_cache: (n_kv, n_ctx / TILE, hd, TILE) float32, uint16 F16 bits or int8 - one layer, keys in tiles of TILE
             positions: dimension i of TILE consecutive positions is contiguous (kernels/attention.py says why);
             or uint8 (n_kv, n_ctx / TILE, hd, TILE / 2): 4-bit values, two per byte (half.Q4_PACKING)
    v_cache: (n_kv, n_ctx, hd) same dtype (uint8: (n_kv, n_ctx, hd / 2)) - one layer, value rows contiguous in
             position order
    k_scale: (n_kv, nb, n_ctx), v_scale: (n_kv, n_ctx, nb) float32 scales of the hd / nb-value blocks of
             each cached key / value row (int8 and 4-bit: see store_kv_blocks; ones with nb = 1 for the others)
    scores:  (n_heads, n_ctx) float32 scratch
    out:     (T, n_heads*hd) float32
    n_ctx is a multiple of attention_simd.CTX_ROUND (the vector kernels compute whole steps of tiles).
    Query head h reads KV head h // (n_heads / n_kv). T >= BLAS_MIN_QUERIES (prefill) runs as matrix products,
    on the path `prefill` (default `prefill_path(hd)`): AMX tiles (kernels/attention_amx.py) or float32 sgemm;
    otherwise the dispatcher's decode kernel (`path`, default `decode_path(hd)`: a model passes the paths it chose
    at load, asking the dispatcher per call cost ~10 us), with KV heads in parallel when there is enough work.
    exact=False lets the AMX prefill round q to bf16 in the scores (keys kept exact) and compute the weighted sum
    of values in plain bf16: the integer mode's precision (attention_amx.py gives the bounds).
    """
    T, hd = q.shape[0], k_cache.shape[2]
    if T >= BLAS_MIN_QUERIES:
        if (prefill_path(hd) if prefill is None else prefill) == "amx":
            return attention_amx.run(q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, out, exact)
        return _attention_blas(q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, out)
    parallel = T * n_heads * (pos0 + T) * hd * 2 >= PARALLEL_MIN_WORK
    path = decode_path(hd) if path is None else path
    if path == "portable":
        run = _attention_parallel if parallel else _attention_serial
        run(q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, scores, out)
    else:
        decode_attention.run(path, parallel, q, k_cache, v_cache, k_scale, v_scale, pos0, n_heads, scale, scores,
                             out)


def decode_path(hd: int) -> str:
    """The path decode attention runs for head size hd: the dispatcher's choice for "attention_decode" (so
    RAGBIT_KERNEL caps it), "portable" where the vector kernels do not take hd."""
    path = dispatch.choose("attention_decode")
    return path if attention_simd.fits(hd, path) else "portable"


def prefill_path(hd: int) -> str:
    """The path prefill attention runs for head size hd: the dispatcher's choice for "attention_prefill" (amx
    where the CPU has the tiles and Linux grants them, capped by RAGBIT_KERNEL), "portable" (sgemm) where the
    tile kernels do not take hd."""
    path = dispatch.choose("attention_prefill")
    return path if path != "amx" or attention_amx.fits(hd) else "portable"


# ---------------------------------------------------------------------------------------------------------------
# SwiGLU
# ---------------------------------------------------------------------------------------------------------------


@njit(inline="always")
def _swiglu_row(gate_up, out, t):
    n = out.shape[1]
    g_row, u_row, o_row = gate_up[t, :n], gate_up[t, n:], out[t]
    for i in range(n):
        g = g_row[i]
        o_row[i] = g / (np.float32(1.0) + exp_f32(-g)) * u_row[i]


@njit(cache=True, fastmath=True, error_model="numpy")
def swiglu(gate_up, out):
    """out = silu(gate) * up.   gate_up: (T, 2 n_ff) float32, gate then up (the stacked W_gate_up product);
    out: (T, n_ff) float32. Vectorised (2.5-3x faster; it was ~4% of a prefill): exp_f32, not libm's scalar
    expf, and numpy's error model (Python's raises on a zero divisor, a branch that stops vectorisation)."""
    for t in range(out.shape[0]):
        _swiglu_row(gate_up, out, t)


@njit(cache=True, fastmath=True, error_model="numpy", parallel=True)
def swiglu_rows(gate_up, out):
    """`swiglu` with the tokens over the threads (prefill)."""
    for t in prange(out.shape[0]):
        _swiglu_row(gate_up, out, t)
