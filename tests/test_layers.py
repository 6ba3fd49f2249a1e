"""numba layer kernels against plain numpy formulas (the model-level tests cover them end to end; this pins
the parallel attention path, which the tiny reference models are too small to trigger with 2 threads)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from generator import kv_cache, layers
from generator.kernels import attention as attention_simd
from generator.kernels import decode_attention, softmax
from generator.kernels import pool


def _tiles(k_t):
    """Keys (n_kv, hd, n_ctx), position-minor, in the cache's tiled layout (n_kv, n_ctx / TILE, hd, TILE)."""
    n_kv, hd, n_ctx = k_t.shape
    return np.ascontiguousarray(k_t.reshape(n_kv, hd, n_ctx // layers.TILE, layers.TILE).transpose(0, 2, 1, 3))


def _numpy_attention(q, k_cache, v_cache, pos0, n_heads, scale):
    """Causal GQA attention written directly from the definition (float64)."""
    T = q.shape[0]
    n_kv, hd, _ = k_cache.shape
    out = np.zeros((T, n_heads * hd))
    for t in range(T):
        n = pos0 + t + 1
        for h in range(n_heads):
            kvh = h // (n_heads // n_kv)
            s = (k_cache[kvh, :, :n].T.astype(np.float64) @ q[t, h * hd:(h + 1) * hd]) * scale
            w = np.exp(s - s.max())
            out[t, h * hd:(h + 1) * hd] = (w / w.sum()) @ v_cache[kvh, :n].astype(np.float64)
    return out


def _decode_kernel(path, parallel):
    if path == "portable":
        return layers._attention_parallel if parallel else layers._attention_serial
    return lambda *args: decode_attention.run(path, parallel, *args)


_SHAPES = [(8, 2, 64, np.float32), (16, 8, 128, np.float16), (32, 8, 128, np.float16), (6, 2, 64, np.float32)]


@pytest.mark.parametrize("T,pos0,parallel,n_heads,n_kv,hd,dtype", [
    (T, pos0, parallel, *shape) for shape in _SHAPES for parallel in (False, True)
    for T, pos0 in [(1, 0), (1, 300), (5, 0), (7, 120), (3, 445)]
    if not (parallel and T > 1 and shape in _SHAPES[::2])])   # numba's threads (T > 1): query groups of 2 and 3
def test_attention_matches_definition(T, pos0, parallel, n_heads, n_kv, hd, dtype, float_attention_path):
    """Each decode path (the dispatcher's, per CPU) against the definition: F16 (uint16 bits) and float32
    caches, query groups of 4 (Bonsai-8B), 2 (1.7B) and 3 (run one head at a time), positions that end
    inside a tile and inside a step of tiles; one thread, the decode pool (one query) and numba's threads
    (several queries: each shape there is a slow compile on a fresh clone, so two of the four)."""
    if not attention_simd.fits(hd, float_attention_path):
        pytest.skip(f"the {float_attention_path} kernels do not take head size {hd}")
    rng = np.random.default_rng(T * 1000 + pos0)
    n_ctx = 512
    q = rng.standard_normal((T, n_heads * hd), dtype=np.float32)
    k_cache = rng.standard_normal((n_kv, hd, n_ctx), dtype=np.float32).astype(dtype)
    v_cache = rng.standard_normal((n_kv, n_ctx, hd), dtype=np.float32).astype(dtype)
    scores = np.zeros((n_heads, n_ctx), np.float32)
    out = np.full((T, n_heads * hd), np.nan, np.float32)
    scale = np.float32(hd ** -0.5)
    run = _decode_kernel(float_attention_path, parallel)
    old = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    ks, vs = np.ones((n_kv, 1, n_ctx), np.float32), np.ones((n_kv, n_ctx, 1), np.float32)
    bits = (lambda a: a.view(np.uint16)) if dtype == np.float16 else (lambda a: a)
    try:
        run(q, bits(_tiles(k_cache)), bits(v_cache), ks, vs, pos0, n_heads, scale, scores, out)
    finally:
        numba.set_num_threads(old)
    ref = _numpy_attention(q, k_cache.astype(np.float32), v_cache.astype(np.float32), pos0, n_heads, scale)
    assert np.abs(out - ref).max() <= 1e-5


def test_attention_takes_the_dispatched_path(attention_path):
    """`attention` runs the path RAGBIT_KERNEL caps it to (the widest this CPU has otherwise), and a head size
    the vector kernels do not take falls back to the portable loops."""
    assert layers.decode_path(128) == attention_path
    assert layers.decode_path(40) == "portable"


def _prefill_tolerance(path, q, k_cache, v_cache, pos0, n_heads, scale, exact=True):
    """The error bound of a prefill path. sgemm: float32 rounding, 1e-5. amx: every operand is split into two bf16
    parts (x = hi + lo within 2^-18 |x|) and the products sum hi.hi + lo.hi + hi.lo (the dropped lo.lo <= 2^-18
    |x y|), so a score is off by <= 3 2^-18 sum_i |q_i k_i| scale, which moves the output by at most twice that
    times max |v|, and the weighted sum of values adds <= 3 2^-18 max |v| (F16 caches: keys/values exact).
    Not `exact` (amx): q is rounded to bf16 (2^-9 relative) in the scores, and the weighted sum is one bf16
    product of the rounded weights and values (<= 2^-8 max |v|)."""
    if path != "amx":
        return 1e-5
    T, n_kv, hd = q.shape[0], k_cache.shape[0], k_cache.shape[1]
    n = pos0 + T
    qa = np.abs(q.astype(np.float64)).reshape(T, n_kv, n_heads // n_kv, hd)
    worst = max((qa[:, h] @ np.abs(k_cache[h, :, :n].astype(np.float64))).max() for h in range(n_kv)) * scale
    score_eps, sum_eps = (3 * 2.0 ** -18, 3 * 2.0 ** -18) if exact else (2.0 ** -9 + 2.0 ** -18, 2.0 ** -8)
    return np.abs(v_cache[:, :n]).max() * (2 * score_eps * worst + sum_eps) + 2e-6


@pytest.mark.parametrize("T,pos0,n_heads,n_kv,hd,dtype", [
    (16, 0, 8, 2, 64, np.float32), (40, 30, 8, 2, 64, np.float32), (300, 200, 8, 2, 64, np.float32),
    (128, 0, 16, 8, 128, np.float16), (72, 128, 16, 8, 128, np.float16),    # Bonsai-1.7B: a prompt's 2nd chunk
    (37, 5, 6, 2, 64, np.float16), (20, 411, 32, 8, 128, np.float16)])      # query groups of 3 and 4 (8B)
@pytest.mark.parametrize("threads", [1, 2])
def test_prefill_attention_matches_definition(T, pos0, n_heads, n_kv, hd, dtype, threads, prefill_attention_path):
    """Each prefill path (the dispatcher's, per CPU: AMX tiles, float32 sgemm) against the float64 definition,
    serial and over the threads: F16 and float32 caches, positions that end inside a 32-position block, query
    row counts that are not whole tiles, a chunk after an earlier one (pos0 > 0)."""
    rng = np.random.default_rng(T + pos0)
    n_ctx = 512
    q = rng.standard_normal((T, n_heads * hd), dtype=np.float32)
    k_cache = rng.standard_normal((n_kv, hd, n_ctx), dtype=np.float32).astype(dtype)
    v_cache = rng.standard_normal((n_kv, n_ctx, hd), dtype=np.float32).astype(dtype)
    out = np.full((T, n_heads * hd), np.nan, np.float32)
    scale = np.float32(hd ** -0.5)
    assert T >= layers.BLAS_MIN_QUERIES
    assert layers.prefill_path(hd) == prefill_attention_path
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    ks, vs = np.ones((n_kv, 1, n_ctx), np.float32), np.ones((n_kv, n_ctx, 1), np.float32)
    bits = (lambda a: a.view(np.uint16)) if dtype == np.float16 else (lambda a: a)
    try:
        layers.attention(q, bits(_tiles(k_cache)), bits(v_cache), ks, vs, pos0, n_heads, scale,
                         np.zeros((n_heads, n_ctx), np.float32), out)
    finally:
        numba.set_num_threads(old)
    k32, v32 = k_cache.astype(np.float32), v_cache.astype(np.float32)
    ref = _numpy_attention(q, k32, v32, pos0, n_heads, scale)
    assert np.abs(out - ref).max() <= _prefill_tolerance(prefill_attention_path, q, k32, v32, pos0, n_heads, scale)


@pytest.mark.parametrize("T,pos0,n_heads,n_kv,hd,dtype", [
    (128, 0, 16, 8, 128, np.float16), (72, 128, 16, 8, 128, np.float16), (300, 200, 16, 8, 128, np.float32),
    (20, 411, 32, 8, 128, np.float16), (37, 5, 6, 2, 64, np.float16)])     # query groups of 4 (8B) and 3
def test_prefill_attention_outside_the_exact_mode(T, pos0, n_heads, n_kv, hd, dtype, prefill_attention_path):
    """exact=False (the engine's int11 mode): on AMX the scores round q to bf16 (keys stay exact) and the weighted
    sum of values is one bf16 product, so the output stays within that looser bound (_prefill_tolerance), and
    does move from the exact mode's; sgemm ignores the flag (float32 either way)."""
    rng = np.random.default_rng(T)
    n_ctx = 512
    q = rng.standard_normal((T, n_heads * hd), dtype=np.float32)
    k_cache = rng.standard_normal((n_kv, hd, n_ctx), dtype=np.float32).astype(dtype)
    v_cache = rng.standard_normal((n_kv, n_ctx, hd), dtype=np.float32).astype(dtype)
    scale = np.float32(hd ** -0.5)
    ks, vs = np.ones((n_kv, 1, n_ctx), np.float32), np.ones((n_kv, n_ctx, 1), np.float32)
    bits = (lambda a: a.view(np.uint16)) if dtype == np.float16 else (lambda a: a)
    outs = {}
    for exact in (True, False):
        outs[exact] = np.full((T, n_heads * hd), np.nan, np.float32)
        layers.attention(q, bits(_tiles(k_cache)), bits(v_cache), ks, vs, pos0, n_heads, scale,
                         np.zeros((n_heads, n_ctx), np.float32), outs[exact], exact=exact)
    k32, v32 = k_cache.astype(np.float32), v_cache.astype(np.float32)
    ref = _numpy_attention(q, k32, v32, pos0, n_heads, scale)
    bound = _prefill_tolerance(prefill_attention_path, q, k32, v32, pos0, n_heads, scale, exact=False)
    if prefill_attention_path == "amx":
        assert np.abs(outs[False] - outs[True]).max() > 0          # really the cheaper products
        assert np.abs(outs[True] - ref).max() <= _prefill_tolerance("amx", q, k32, v32, pos0, n_heads, scale)
    else:
        assert np.array_equal(outs[False], outs[True])
    assert np.abs(outs[False] - ref).max() <= bound


def test_prefill_attention_causal_edge(prefill_attention_path):
    """The causal mask at its edge, over two chunks as a prompt runs them (128 + 50 tokens): every cached key
    equals every query, so each query's own position and the first position after it would both get the top
    score, and each value row holds its position. Each query's output is then its own position minus ~0.16 (the
    e^-2k tail of earlier positions); one position too many would add ~0.9. Stale garbage (NaN) past the filled
    positions must not leak either. (A head size the tile kernels do not take runs on sgemm.)"""
    assert layers.prefill_path(64) == prefill_attention_path and layers.prefill_path(40) == "portable"
    n_heads, n_kv, hd, n_ctx, scale = 4, 2, 64, 256, np.float32(0.125)
    vec = np.zeros(hd, np.float32)
    vec[0] = 40.0
    pos = np.arange(n_ctx, dtype=np.float32)
    k_cache = np.zeros((n_kv, hd, n_ctx), np.float32)
    k_cache[:, 0, :] = 40.0 * (1 + pos / 100)         # each later position scores 2 more: weights e^-2 per step back
    v_cache = np.repeat(pos[None, :, None], n_kv, 0).repeat(hd, 2)
    k_cache[:, :, 178:] = np.nan                     # never-filled positions: must stay unread
    v_cache[:, 178:] = np.nan
    ks, vs = np.ones((n_kv, 1, n_ctx), np.float32), np.ones((n_kv, n_ctx, 1), np.float32)
    tiles = _tiles(k_cache)
    for pos0, T in ((0, 128), (128, 50)):
        q = np.tile(vec, (T, n_heads))
        out = np.full((T, n_heads * hd), np.nan, np.float32)
        layers.attention(q, tiles, v_cache, ks, vs, pos0, n_heads, scale, np.zeros((n_heads, n_ctx), np.float32),
                         out)
        last = pos0 + np.arange(T, dtype=np.float32)[:, None]      # the last position each query may see
        assert np.all(np.isfinite(out))
        assert np.all(out <= last + 1e-3) and np.all(out >= last - 0.5), prefill_attention_path


def _unpack_q4(packed):
    """(..., m) uint8 of the 4-bit cache (half.Q4_PACKING) -> (..., 2m) int: each 16 bytes hold 32 values, value
    j < 16 in the low nibble of byte j, 16 + j in its high nibble, two's complement."""
    g = packed.reshape(*packed.shape[:-1], -1, 16).astype(np.int16)
    both = np.concatenate([g & 15, g >> 4], axis=-1)
    return ((both ^ 8) - 8).reshape(*packed.shape[:-1], -1)


def _query_as_rounded(q, scale, path, kind):
    """(query, scale) the definition is computed with for `path` over a `kind` cache: on avx512vnni the q8 / q4
    q.k takes the query in int8 per 32 dimensions (attention.quantize_query: scale max|x| / 127, half to even),
    as llama.cpp rounds it (Q8_0) for its quantized caches; elsewhere the float32 query."""
    if path != "avx512vnni" or kind not in ("q8", "q4"):
        return q, scale
    qs = q.astype(np.float32) * np.float32(scale)
    blocks = qs.reshape(q.shape[0], -1, kv_cache.Q8_BLOCK)
    top = np.abs(blocks).max(axis=2, keepdims=True)
    inv = np.float32(127) / np.where(top > 0, top, np.float32(1))
    rounded = np.rint(blocks * np.where(top > 0, inv, np.float32(0)))
    assert np.abs(rounded).max() <= 127
    return (rounded * (top / np.float32(127))).reshape(q.shape).astype(np.float64), 1.0


def _block_scaled_cache(kind, n, n_kv, hd, n_ctx, rng):
    """n positions of random keys / values (uneven magnitudes across rows and an outlier dimension, like trained
    keys) stored by store_kv_blocks in a `kind` cache: (stored, (tiles, v_cache, k_scale, v_scale)), and the
    values it holds read back with numpy: (k_all, v_all, k_q, v_q, k_deq, v_deq), keys position-minor."""
    nb = hd // kv_cache.Q8_BLOCK
    k_all = rng.standard_normal((n, n_kv * hd), dtype=np.float32) * rng.uniform(0.1, 3, (n, 1)).astype(np.float32)
    k_all[:, 5] *= 20
    v_all = rng.standard_normal((n, n_kv * hd), dtype=np.float32)
    per, dtype = (2, np.uint8) if kind == "q4" else (1, np.int8)
    tiles = np.zeros((n_kv, n_ctx // layers.TILE, hd, layers.TILE // per), dtype)
    v_cache = np.zeros((n_kv, n_ctx, hd // per), dtype)
    k_scale, v_scale = np.zeros((n_kv, nb, n_ctx), np.float32), np.zeros((n_kv, n_ctx, nb), np.float32)
    kv_cache.store_kv_blocks(k_all, v_all, tiles, v_cache, k_scale, v_scale, 0)
    if kind == "q4":     # a key tile's elements run dimension by dimension through its bytes
        k_q = _unpack_q4(tiles.reshape(n_kv, -1, hd * 8)).reshape(n_kv, -1, hd, layers.TILE)
        v_q = _unpack_q4(v_cache)
    else:
        k_q, v_q = tiles, v_cache
    k_q = k_q.transpose(0, 2, 1, 3).reshape(n_kv, hd, n_ctx)                    # back to position-minor
    k_deq = (k_q * np.repeat(k_scale, kv_cache.Q8_BLOCK, axis=1)).astype(np.float32)   # (n_kv, hd, n_ctx)
    v_deq = (v_q * np.repeat(v_scale, kv_cache.Q8_BLOCK, axis=2)).astype(np.float32)   # (n_kv, n_ctx, hd)
    return (tiles, v_cache, k_scale, v_scale), (k_all, v_all, k_q, v_q, k_deq, v_deq)


@pytest.mark.parametrize("kind", ["q8", "q4"])
@pytest.mark.parametrize("T,pos0", [(1, 0), (7, 445)])
def test_block_scaled_cache_and_decode_attention(kind, T, pos0, attention_path):
    """store_kv_blocks keeps each 32-value block of a key / value row with its own scale: int8 times max|x|/127
    (error <= scale / 2, the block's largest value exact), or 4-bit with the scale of least squared error among
    candidates that include llama.cpp's q4_0 rule (so no block's squared error above that rule's).
    Each decode path over that cache gives the definition's attention over the dequantized values (on avx512vnni,
    with the query rounded to int8 as that path's q.k takes it: _query_as_rounded)."""
    rng = np.random.default_rng(T + pos0)
    n_heads, n_kv, hd, n_ctx = 8, 2, 64, 512
    nb, n, B = hd // kv_cache.Q8_BLOCK, pos0 + T, kv_cache.Q8_BLOCK
    stored, (k_all, v_all, k_q, v_q, k_deq, v_deq) = _block_scaled_cache(kind, n, n_kv, hd, n_ctx, rng)
    k_scale, v_scale = stored[2], stored[3]
    k_back = k_deq[:, :, :n].transpose(2, 0, 1).reshape(n, n_kv * hd)
    v_back = v_deq[:, :n].transpose(1, 0, 2).reshape(n, n_kv * hd)
    k_step = np.abs(np.repeat(k_scale[:, :, :n].transpose(2, 0, 1).reshape(n, n_kv * nb), B, axis=1))
    v_step = np.abs(np.repeat(v_scale[:, :n].transpose(1, 0, 2).reshape(n, n_kv * nb), B, axis=1))
    k_blocks = k_q[:, :, :n].reshape(n_kv, nb, B, n)
    if kind == "q8":
        assert np.all(np.abs(k_back - k_all) <= k_step * 0.5 * (1 + 1e-5))
        assert np.all(np.abs(v_back - v_all) <= v_step * 0.5 * (1 + 1e-5))
        assert np.all(np.abs(k_blocks).max(axis=2) == 127)
    else:
        for back, orig in ((k_back, k_all), (v_back, v_all)):
            blocks = orig.reshape(-1, B).astype(np.float64)
            m = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=1)[:, None], axis=1)    # largest magnitude
            naive = np.clip(np.round(blocks / (m / -8)), -8, 7) * (m / -8)                    # llama.cpp's q4_0
            sse = ((back.reshape(-1, B) - blocks) ** 2).sum(axis=1)
            assert np.all(sse <= ((naive - blocks) ** 2).sum(axis=1) * (1 + 1e-4) + 1e-12)
        assert k_q.min() >= -8 and k_q.max() <= 7
        assert np.all(k_q[:, :, n:] == 0) and np.all(v_q[:, n:] == 0)     # no write past the positions given

    q = rng.standard_normal((T, n_heads * hd), dtype=np.float32)
    out = np.full((T, n_heads * hd), np.nan, np.float32)
    scale = np.float32(hd ** -0.5)
    layers.attention(q, *stored, pos0, n_heads, scale, np.zeros((n_heads, n_ctx), np.float32), out)
    q_ref, scale_ref = _query_as_rounded(q, scale, attention_path, kind)
    ref = _numpy_attention(q_ref, k_deq, v_deq, pos0, n_heads, scale_ref)
    assert np.abs(out - ref).max() <= 1e-5


@pytest.mark.parametrize("kind,n_heads,span", [("f16", 16, 64), ("q8", 32, 256), ("q4", 16, 64)])
def test_decode_attention_on_the_pool_in_spans(kind, n_heads, span, pool_attention_path, monkeypatch):
    """A decode step over the threads runs on the decode pool (kernels/pool.py) in items of one KV head's query
    group over a span of positions, merged by their softmax maxima: with spans much shorter than the context
    (11 and 3 per head here, the last one partial) it is still the definition's attention, equal to the one-thread
    kernel's, on F16, q8 and q4 caches and query groups of 2 and 4 (Bonsai-1.7B, 8B)."""
    if not pool.available():
        pytest.skip("the decode pool runs on Linux x86-64 only")
    rng = np.random.default_rng(n_heads + span)
    n_kv, hd, n_ctx, pos0 = 8, 128, 768, 700
    if kind == "f16":
        k_t = rng.standard_normal((n_kv, hd, n_ctx), dtype=np.float32).astype(np.float16)
        v = rng.standard_normal((n_kv, n_ctx, hd), dtype=np.float32).astype(np.float16)
        stored = (_tiles(k_t).view(np.uint16), v.view(np.uint16), np.ones((n_kv, 1, n_ctx), np.float32),
                  np.ones((n_kv, n_ctx, 1), np.float32))
        k_deq, v_deq = k_t.astype(np.float32), v.astype(np.float32)
    else:
        stored, (*_, k_deq, v_deq) = _block_scaled_cache(kind, pos0 + 1, n_kv, hd, n_ctx, rng)
    q = rng.standard_normal((1, n_heads * hd), dtype=np.float32)
    scale = np.float32(hd ** -0.5)
    outs = {}
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    monkeypatch.setattr(pool, "_THREADS", [2])      # what set_threads leaves: an earlier model may have set 1
    try:
        for parallel in (True, False):
            jobs = pool.get_pool(2).stats()["jobs"]
            outs[parallel] = np.full((1, n_heads * hd), np.nan, np.float32)
            decode_attention.run(pool_attention_path, parallel, q, *stored, pos0, n_heads, scale,
                                 np.zeros((n_heads, n_ctx), np.float32), outs[parallel], span)
            assert pool.get_pool(2).stats()["jobs"] - jobs == int(parallel)
    finally:
        numba.set_num_threads(old)
    assert decode_attention.span_positions(n_heads // n_kv, hd, pos0 + 1, span) == span
    q_ref, scale_ref = _query_as_rounded(q, scale, pool_attention_path, kind)
    ref = _numpy_attention(q_ref, k_deq, v_deq, pos0, n_heads, scale_ref)
    assert np.abs(outs[True] - ref).max() <= 1e-5
    assert np.abs(outs[True] - outs[False]).max() <= 1e-5


@pytest.mark.parametrize("kind", ["q8", "q4"])
@pytest.mark.parametrize("T,pos0,n_heads,n_kv,hd", [(40, 30, 8, 2, 64), (72, 128, 16, 8, 128)])   # groups of 4, 2
def test_block_scaled_cache_prefill_attention(kind, T, pos0, n_heads, n_kv, hd, prefill_attention_path):
    """Each prefill path (AMX tiles, float32 sgemm) over a q8 / q4 cache: the definition's attention over the
    dequantized values, within the path's bound (_prefill_tolerance)."""
    rng = np.random.default_rng(T + pos0)
    n_ctx = 512
    stored, (*_, k_deq, v_deq) = _block_scaled_cache(kind, pos0 + T, n_kv, hd, n_ctx, rng)
    q = rng.standard_normal((T, n_heads * hd), dtype=np.float32)
    out = np.full((T, n_heads * hd), np.nan, np.float32)
    scale = np.float32(hd ** -0.5)
    assert layers.prefill_path(hd) == prefill_attention_path
    layers.attention(q, *stored, pos0, n_heads, scale, np.zeros((n_heads, n_ctx), np.float32), out)
    ref = _numpy_attention(q, k_deq, v_deq, pos0, n_heads, scale)
    # the outlier keys make scores of ~50: float32's rounding of them (~2^-24 sum_i |q_i k_i| per score, a few
    # times over for the sums' order) moves the output past the unit-scale 1e-5
    n = pos0 + T
    qa = np.abs(q.astype(np.float64)).reshape(T, n_kv, n_heads // n_kv, hd)
    worst = max((qa[:, h] @ np.abs(k_deq[h, :, :n].astype(np.float64))).max() for h in range(n_kv)) * scale
    float32_sums = 2 * 16 * 2.0 ** -24 * worst * np.abs(v_deq[:, :n]).max()
    bound = _prefill_tolerance(prefill_attention_path, q, k_deq, v_deq, pos0, n_heads, scale) + float32_sums
    assert np.abs(out - ref).max() <= bound


@pytest.mark.parametrize("hd", [64, 128])
def test_rotate_heads_is_the_orthonormal_hadamard_per_head(hd):
    """rotate_heads multiplies each head by H_hd / sqrt(hd) (Sylvester's construction, built here by Kronecker
    products): twice is the identity, an outlier dimension is spread over its head, and a prompt's rows (split over
    the threads) get the bits the rows get one at a time."""
    rng = np.random.default_rng(hd)
    h = np.array([[1.0]])
    while h.shape[0] < hd:
        h = np.kron(np.array([[1.0, 1.0], [1.0, -1.0]]), h)
    x = rng.standard_normal((40, 3 * hd), dtype=np.float32)
    x[:, 7] *= 30                                                             # an outlier dimension
    y = x.copy()
    kv_cache.rotate_heads(y, hd)
    ref = (x.astype(np.float64).reshape(40, 3, hd) @ (h / np.sqrt(hd))).reshape(40, 3 * hd)
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(x).max()
    assert np.abs(y[:, :hd]).max() < 0.5 * np.abs(x[:, :hd]).max()            # the outlier spread over the head
    one_by_one = x.copy()
    for t in range(x.shape[0]):                                               # decode's path: one row at a time
        kv_cache.rotate_heads(one_by_one[t:t + 1], hd)
    assert np.array_equal(one_by_one, y)
    kv_cache.rotate_heads(y, hd)
    assert np.abs(y - x).max() <= 1e-5 * np.abs(x).max()


def test_rmsnorm_and_head_norm_rope():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 256), dtype=np.float32)
    w = rng.uniform(0.6, 1.4, 256).astype(np.float32)
    out = np.empty_like(x)
    layers.rmsnorm(x, w, 1e-6, out)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + 1e-6) * w
    assert np.abs(out - ref).max() <= 1e-5

    # head norm then NEOX rotation: element j pairs with j + hd/2, angle p * base^(-2j/hd)
    n_heads, hd, pos0 = 2, 64, 5
    cos, sin = layers.rope_tables(16, hd, 1e6)
    y = x[:, :n_heads * hd].copy()
    layers.head_norm_rope(y, n_heads, hd, w[:hd], 1e-6, cos, sin, pos0)
    xh = x[:, :n_heads * hd].reshape(3, n_heads, hd).astype(np.float64)
    xh = xh / np.sqrt((xh ** 2).mean(axis=2, keepdims=True) + 1e-6) * w[:hd]
    theta = (pos0 + np.arange(3))[:, None, None] * 1e6 ** (-2.0 * np.arange(hd // 2) / hd)
    a, b = xh[..., :hd // 2], xh[..., hd // 2:]
    ref = np.concatenate([a * np.cos(theta) - b * np.sin(theta), a * np.sin(theta) + b * np.cos(theta)], axis=2)
    assert np.abs(y - ref.reshape(3, -1)).max() <= 1e-5


def test_swiglu():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((2, 100), dtype=np.float32) * 4
    u = rng.standard_normal((2, 100), dtype=np.float32)
    ref = g / (1 + np.exp(-g.astype(np.float64))) * u
    out = np.full_like(g, np.nan)
    layers.swiglu(np.concatenate([g, u], axis=1), out)
    assert np.abs(out - ref).max() <= 1e-5


def test_row_kernels_give_the_serial_kernels_bits():
    """A prompt chunk runs the `*_rows` kernels (tokens or KV heads over the threads), decode the serial ones:
    the same per-row code, so a token's values must not depend on which ran it (the prefix-reuse tests compare
    logits bit for bit across the two)."""
    rng = np.random.default_rng(3)
    T, n_heads, n_kv, hd = 37, 4, 2, 64
    x = rng.standard_normal((T, 512), dtype=np.float32) * 3
    y = rng.standard_normal((T, 512), dtype=np.float32)
    w = rng.uniform(0.6, 1.4, 512).astype(np.float32)
    a, b = np.empty_like(x), np.empty_like(x)
    layers.rmsnorm(x, w, 1e-6, a)
    layers.rmsnorm_rows(x, w, 1e-6, b)
    np.testing.assert_array_equal(a, b)
    x1, x2 = x.copy(), x.copy()
    x1 += y
    layers.rmsnorm(x1, w, 1e-6, a)
    layers.add_rmsnorm_rows(x2, y, w, 1e-6, b)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(a, b)

    qkv = rng.standard_normal((T, (n_heads + 2 * n_kv) * hd), dtype=np.float32)
    cos, sin = layers.rope_tables(64, hd, 1e6)
    outs = []
    for fn in (layers.split_qkv_norm_rope, layers.split_qkv_norm_rope_rows):
        q, k, v = (np.full((T, n * hd), np.nan, np.float32) for n in (n_heads, n_kv, n_kv))
        fn(qkv, q, k, v, n_heads, n_kv, hd, w[:hd], w[hd:2 * hd], 1e-6, cos, sin, 9)
        outs.append((q, k, v))
    for p, r in zip(*outs):
        np.testing.assert_array_equal(p, r)

    caches = []
    for fn in (kv_cache.store_kv, kv_cache.store_kv_rows):
        kc, vc = np.zeros((n_kv, 64 // 16, hd, 16), np.uint16), np.zeros((n_kv, 64, hd), np.uint16)
        fn(outs[0][1], outs[0][2], kc, vc, 9)
        caches.append((kc, vc))
    for p, r in zip(*caches):
        np.testing.assert_array_equal(p, r)
    assert caches[0][1][:, 9:9 + T].any() and not caches[0][1][:, :9].any()

    gu = rng.standard_normal((T, 2 * 300), dtype=np.float32) * 4
    a, b = np.full((T, 300), np.nan, np.float32), np.full((T, 300), np.nan, np.float32)
    layers.swiglu(gu, a)
    layers.swiglu_rows(gu, b)
    np.testing.assert_array_equal(a, b)


def test_exp_f32_against_numpy():
    """The vectorisable float32 exp of softmax and SwiGLU: within 4e-7 relative of float64 exp over the range it
    serves, clamped (finite, no overflow) outside [-87, 88]."""
    x = np.concatenate([np.linspace(-87, 88, 200001, dtype=np.float32), np.float32([-1e4, -88.5, 0.0, 1e4])])
    from numba import njit

    @njit
    def run(xs, out):
        for i in range(xs.size):
            out[i] = softmax.exp_f32(xs[i])

    out = np.empty_like(x)
    run(x, out)
    inside = np.abs(x) <= 87
    ref = np.exp(x[inside].astype(np.float64))
    assert np.max(np.abs(out[inside] - ref) / ref) <= 4e-7
    assert np.all(np.isfinite(out)) and out[-4] < 1e-37 and out[-2] == 1.0 and out[-1] > 1e38
