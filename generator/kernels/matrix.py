"""QuantMatrix: one weight matrix kept in its packed form, with decode (matvec) and prefill (matmul) paths.

`prepare_matrix` is the "quantization as its own step" of gpt-fast: any repacking into a faster layout
happens there, once, at load time. A QuantMatrix never holds a dequantized copy of its weights: Q1_0
multiplies straight from sign bits via lookup tables (q1_0.py); the rarer types (Q8_0, F16, BF16) decode
rows inside their numba kernels and, for matmul, dequantize ~1 MB row tiles for BLAS.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from . import dense, dispatch, pool, q1_0, q1_0_amx, q1_0_simd, q1_0_vnni, q2_0
from .formats import (
    BF16_TO_F32,
    F16_TO_F32,
    GGML_BF16,
    GGML_F16,
    GGML_F32,
    GGML_Q1_0,
    GGML_Q2_0,
    GGML_Q8_0,
    KernelFormatError,
    TYPE_NAMES,
    check_raw,
    dequantize,
    split_blocks,
)

TILE_BYTES = 1 << 20  # float32 bytes of one dequantized row tile in the BLAS prefill path (fits L2 + L3)
# int11 decode of a matrix smaller than this runs on the calling thread alone: waking the second thread costs
# ~10 us (measured on Zen4, 2 threads, PASSIVE waits), more than the half of the work it takes over below
# ~0.5 MB (the one-thread kernel streams ~23 GB/s from cache). Measured per shape (1 thread / 2 threads):
# 0.1-0.2x for the tiny test models' matrices, 0.44-0.6x at 0.15-0.3 MB; figures in the #18 closing note.
SERIAL_BELOW_BYTES = 512 * 1024


def _as_f32(a: np.ndarray, ndim: int, n_in: int, name: str) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim != ndim or a.shape[-1] != n_in:
        raise KernelFormatError(f"{name}: expected {ndim}-D float32 input with last dim {n_in}, got {a.shape}")
    return a


def _check_out(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise KernelFormatError(f"out must be a C-contiguous float32 array of shape {shape}, got {out.dtype} {out.shape}")
    return out



# A batch of at most this many rows goes through the matvec kernel row by row, a larger one through the matmul
# kernel. The two round differently in the integer mode (int11 tables vs int8 activations), so the prompt is
# always cut so that every prompt token takes the matmul path (see Qwen3Model.prefill and the prefix reuse in
# generate.py): the same prompt then gives the same logits however much of it was cached.
MATVEC_MAX_ROWS = 2

class QuantMatrix:
    """W (n_out, n_in) in packed form. Subclasses fill `_matvec_into` and `_dequant_rows_into`."""

    def __init__(self, ggml_type: int, n_in: int, n_out: int, nbytes: int):
        self.ggml_type, self.n_in, self.n_out, self.nbytes = ggml_type, n_in, n_out, nbytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}({TYPE_NAMES[self.ggml_type]}, n_in={self.n_in}, n_out={self.n_out})"

    @property
    def kernel_paths(self) -> dict[str, str]:
        """{"decode": path, "prefill": path}: the instruction-set path (dispatch.PATHS) each product runs on.
        Types without hand-written SIMD kernels are "portable" (numba loops, BLAS for prefill)."""
        return {"decode": "portable", "prefill": "portable"}

    # --- decode: one token
    def matvec(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x float32 (n_in,) -> W @ x, float32 (n_out,)."""
        x = _as_f32(x, 1, self.n_in, "matvec")
        out = _check_out(out, (self.n_out,))
        self._matvec_into(x, out)
        return out

    # --- prefill: a batch of tokens
    def matmul(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x float32 (n_tok, n_in) -> x @ W.T, float32 (n_tok, n_out)."""
        x = _as_f32(x, 2, self.n_in, "matmul")
        out = _check_out(out, (x.shape[0], self.n_out))
        self._matmul_into(x, out)
        return out

    def _matmul_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Default prefill: dequantize TILE_BYTES row tiles and let BLAS multiply them."""
        rows = max(8, TILE_BYTES // (4 * self.n_in))
        tile = np.empty((min(rows, self.n_out), self.n_in), dtype=np.float32)
        for r0 in range(0, self.n_out, rows):
            r1 = min(r0 + rows, self.n_out)
            t = tile[: r1 - r0]
            self._dequant_rows_into(r0, r1, t)
            out[:, r0:r1] = x @ t.T

    # --- one dequantized row (embedding lookup)
    def row(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        if not 0 <= i < self.n_out:
            raise IndexError(f"row {i} out of range for {self.n_out} rows")
        if out is None:
            out = np.empty(self.n_in, dtype=np.float32)
        self._dequant_rows_into(i, i + 1, out.reshape(1, self.n_in))
        return out

    def _matvec_into(self, x: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def _dequant_rows_into(self, r0: int, r1: int, out: np.ndarray) -> None:
        raise NotImplementedError


class F32Matrix(QuantMatrix):
    """Zero-copy float32 view; numpy/BLAS does the work."""

    def __init__(self, raw, n_in, n_out):
        super().__init__(GGML_F32, n_in, n_out, raw.size)
        self.w = raw.view(np.float32).reshape(n_out, n_in)  # (n_out, n_in)

    def _matvec_into(self, x, out):
        np.dot(self.w, x, out=out)

    def _matmul_into(self, x, out):
        np.dot(x, self.w.T, out=out)

    def _dequant_rows_into(self, r0, r1, out):
        out[...] = self.w[r0:r1]


class Table16Matrix(QuantMatrix):
    """F16 or BF16: 16-bit codes (zero-copy) decoded by an exact 65536-entry table."""

    def __init__(self, ggml_type, raw, n_in, n_out):
        super().__init__(ggml_type, n_in, n_out, raw.size)
        self.codes = raw.view(np.uint16).reshape(n_out, n_in)  # (n_out, n_in)
        self.table = F16_TO_F32 if ggml_type == GGML_F16 else BF16_TO_F32  # (65536,)

    def _matvec_into(self, x, out):
        dense.table16_matvec(self.codes, self.table, x, out)

    def _dequant_rows_into(self, r0, r1, out):
        dense.table16_dequant_rows(self.codes, self.table, r0, r1, out)


class Q8Matrix(QuantMatrix):
    """Q8_0 repacked into int8 values (n_out, n_in) + float32 scales (n_out, n_in/32): 36/34 of raw."""

    def __init__(self, raw, n_in, n_out):
        super().__init__(GGML_Q8_0, n_in, n_out, raw.size)
        scales, payload = split_blocks(GGML_Q8_0, raw, n_in, n_out)
        self.scales = np.ascontiguousarray(scales)  # (n_out, n_in // 32) float32
        self.qs = np.ascontiguousarray(payload).view(np.int8).reshape(n_out, n_in)  # (n_out, n_in)

    def _matvec_into(self, x, out):
        dense.q8_matvec(self.qs, self.scales, x, out)

    def _dequant_rows_into(self, r0, r1, out):
        dense.q8_dequant_rows(self.qs, self.scales, r0, r1, out)


class _TableCache(threading.local):
    """Per-thread decode tables of the last input of each size. q/k/v (and gate/up) multiply the same x, so the
    tables are built once for them; reuse is decided by comparing contents (x buffers are reused in place by
    callers, so identity would be wrong). One slot per input size: a decode step alternates n_embd and n_ff inputs,
    and one slot for both re-allocated the tables twice per layer. `make(n_in)` allocates a tuple of table
    arrays, `build(x, *tables)` fills them."""

    def __init__(self, make, build):
        self.make, self.build = make, build
        self.slots: dict[int, tuple[np.ndarray, tuple]] = {}     # n_in -> (the input the tables hold, tables)

    def tables_for(self, x: np.ndarray) -> tuple:
        slot = self.slots.get(x.size)
        if slot is None:                                     # first input of this size
            slot = self.slots[x.size] = (x.copy(), self.make(x.size))
            self.build(x, *slot[1])
        elif not _keep_if_changed(slot[0].view(np.uint32), x.view(np.uint32)):
            self.build(x, *slot[1])
        return slot[1]


@numba.njit(cache=True)
def _keep_if_changed(held, x):
    """True if held == x bit for bit; else copy x into held and return False (one pass that stops at the first
    difference: np.array_equal plus a copy cost ~1 us more per matvec)."""
    for i in range(x.size):
        if held[i] != x[i]:
            for j in range(i, x.size):   # element copy: a slice copy compiles numba's shape-error path (~2 s)
                held[j] = x[j]
            return False
    return True


class _BitFormat:
    """What differs between Q1_0 and Q2_0 for Q1Matrix: both are an fp16 scale + 16 payload bytes per block, so
    they share the repacked layout and every kernel, and differ in block size and in the activation tables
    (q2_0.py explains why that is enough)."""

    def __init__(self, ggml_type, qk, build_lut8, build_tables, matmul_vnni, matmul_avxvnni, matmul_amx, dequant_rows):
        self.ggml_type, self.qk, self.name = ggml_type, qk, TYPE_NAMES[ggml_type].lower()[:2]   # "q1" / "q2"
        self.wbits = 128 // qk                               # bits per weight: 16 payload bytes per block
        n_lut = 4096 // qk                                   # floats of decode table per input: 16 bytes x 256 / qk
        self.luts = _TableCache(lambda n_in: (np.empty(n_in * n_lut, dtype=np.float32),), build_lut8)
        self.int_tables = _TableCache(  # (n_blocks, 16, 4, 16) uint8 tables, (n_blocks,) float32 scales
            lambda n_in: (np.empty((n_in // qk, 16, 4, 16), np.uint8), np.empty(n_in // qk, np.float32)),
            build_tables,
        )
        self.matmul_vnni, self.matmul_avxvnni, self.matmul_amx = matmul_vnni, matmul_avxvnni, matmul_amx
        self.dequant_rows = dequant_rows


Q1_FORMAT = _BitFormat(GGML_Q1_0, q1_0.QK, q1_0.build_lut8, q1_0_simd.build_tables, q1_0_vnni.matmul_vnni,
                       q1_0_vnni.matmul_avxvnni, q1_0_amx.matmul_amx, q1_0.dequant_rows)
Q2_FORMAT = _BitFormat(GGML_Q2_0, q2_0.QK, q2_0.build_lut8, q2_0.build_tables, q1_0_vnni.matmul_vnni_q2,
                       q1_0_vnni.matmul_avxvnni_q2, q1_0_amx.matmul_amx_q2, q2_0.dequant_rows)
Q1_DECODE_MODES = ("float", "int11")


class Q1Matrix(QuantMatrix):
    """Q1_0 repacked into sign bits + float32 scales (see q1_0.py for the layout and its memory cost).

    decode "float" (default): float32 tables, float32-exact up to summation order (q1_0.matvec_lut8).
    decode "int11": 11-bit integer tables + pshufb (q1_0_simd.py), ~2x faster, error bounded by
    16 * sum_b |d_b| * s_b (see there), on the widest path the dispatcher finds (`self.path`: "avx512bw",
    "avx2" or "ssse3"); falls back to "float" where neither runs (`self.decode` says which one runs). The two keep
    the bits in different layouts, so the mode is fixed at load. Q2Matrix is the same class for Q2_0."""

    FORMAT = Q1_FORMAT

    def __init__(self, raw, n_in, n_out, decode: str = "float"):
        fmt = self.FORMAT
        super().__init__(fmt.ggml_type, n_in, n_out, raw.size)
        if decode not in Q1_DECODE_MODES:
            raise KernelFormatError(f"unknown {TYPE_NAMES[fmt.ggml_type]} decode mode {decode!r}; "
                                    f"expected one of {Q1_DECODE_MODES}")
        self.path = dispatch.choose(f"{fmt.name}_decode_{decode}")
        if decode == "int11" and self.path not in q1_0_simd.MATVEC:
            decode, self.path = "float", dispatch.choose(f"{fmt.name}_decode_float")
        self.decode = decode
        # prefill: in the integer mode bf16 on AMX tiles or int8 activations on VNNI, else the float32 tables
        self.prefill_path = dispatch.choose(f"{fmt.name}_prefill_int11") if decode == "int11" else "portable"
        if self.prefill_path == "portable":
            self.prefill_path = dispatch.choose(f"{fmt.name}_prefill_float")
        tile_rows = q1_0.tile_rows_for(n_out, numba.get_num_threads())  # threads at load time
        bits, self.scales = q1_0.repack(raw, n_in, n_out, tile_rows, byte_major=self.decode == "int11",
                                        ggml_type=fmt.ggml_type)
        if self.decode == "float":
            self.bits = bits  # (n_tiles, n_blocks, tile_rows, 16)
            # (n_tiles, n_blocks, TILE_ROWS, 2), same memory; byte k of a word is byte k of the block's
            # sign bytes on little-endian hosts (x86, arm64)
            self.words = self.bits.view(np.uint64)
        else:
            self.bits_t = bits  # (n_tiles, n_blocks, 16, tile_rows)
            self.bits = self.bits_t.transpose(0, 1, 3, 2)  # the same bytes seen in repack's order
            self._int11 = q1_0_simd.MATVEC[self.path]
            # decode over the pool's threads (pool.py) in items of whole tiles, where the pool runs
            self.item_rows = tile_rows
            self.pooled = pool.available() and self.bits_t.shape[0] <= pool.MAX_ITEMS and tile_rows <= pool.MAX_ROWS
            self._int11_1t = q1_0_simd.MATVEC_1T[self.path]
            self.amx_panel = q1_0_amx.panel_rows(tile_rows, n_in)      # rows per expanded bf16 panel (L2)

    @property
    def kernel_paths(self) -> dict[str, str]:
        return {"decode": f"{self.path} ({self.decode})", "prefill": self.prefill_path}

    def _matvec_into(self, x, out):
        if self.decode == "float":
            q1_0.matvec_lut8(self.words, self.scales, *self.FORMAT.luts.tables_for(x), out)
        else:
            tab, s = self.FORMAT.int_tables.tables_for(x)
            n_threads = pool.threads_now()
            if self.nbytes < SERIAL_BELOW_BYTES or n_threads == 1:
                self._int11_1t(self.bits_t, self.scales, tab, s, out)
            elif self.pooled:
                pool.get_pool(n_threads).run(q1_0_simd.matvec_pool, q1_0_simd.item_kernel(self.path), self.bits_t,
                                             self.scales, tab, s, out, self.item_rows, n_threads)
            else:
                self._int11(self.bits_t, self.scales, tab, s, out)

    def _matmul_into(self, x, out):
        fmt = self.FORMAT
        if x.shape[0] <= MATVEC_MAX_ROWS:  # tables over tokens only pay off from a few tokens on
            for t in range(x.shape[0]):
                self._matvec_into(x[t], out[t])
        elif self.prefill_path == "amx":
            T, tile_rows = x.shape[0], self.bits_t.shape[3]
            t_pad = -(-T // q1_0_amx.TOKENS) * q1_0_amx.TOKENS
            xt = np.empty((t_pad // q1_0_amx.TILE, self.n_in // q1_0_amx.KSTEP, q1_0_amx.TILE, q1_0_amx.KSTEP), np.uint16)
            xt[T // q1_0_amx.TILE:] = 0                                   # padding tokens: zero activations
            q1_0_amx.to_bf16_tiles(x, xt)
            n_cols = self.bits_t.shape[0] * tile_rows                     # rows padding the last tile included
            direct = t_pad == T and n_cols == self.n_out
            dst = out if direct else np.empty((t_pad, n_cols), np.float32)
            fmt.matmul_amx(self.bits_t, self.scales, xt, dst, q1_0_amx.TILE_CFG, self.amx_panel, pool.threads_now())
            if not direct:
                out[:] = dst[:T, :self.n_out]
        elif self.prefill_path in ("avx512vnni", "avxvnni"):
            T, nt, subs = x.shape[0], q1_0_vnni.NT, self.n_in // q1_0_vnni.QS
            t_pad = -(-T // nt) * nt                                      # zero rows pad the last token tile
            xq = np.empty((t_pad, self.n_in), np.int8)
            sx = np.empty((t_pad, subs), np.float32)                      # activation scale per token and 32 inputs
            qx = np.empty((t_pad, subs), np.int32)                        # sum of those 32 int8 activations
            xq[T:], sx[T:], qx[T:] = 0, 0, 0                              # padding tokens: zero activations
            q1_0_vnni.quantize_rows(np.ascontiguousarray(x), xq[:T], sx[:T], qx[:T])   # its kernel reads whole rows
            kernel = fmt.matmul_vnni if self.prefill_path == "avx512vnni" else fmt.matmul_avxvnni
            kernel(self.bits_t, self.scales, xq, sx, qx, out)
        else:
            kernel = q1_0.matmul_lut4_t16 if x.shape[0] <= 32 else q1_0.matmul_lut4_t64
            kernel(self.bits, self.scales, x, out, numba.get_num_threads(), fmt.wbits)

    def _dequant_rows_into(self, r0, r1, out):
        self.FORMAT.dequant_rows(self.bits, self.scales, r0, r1, out)


class Q2Matrix(Q1Matrix):
    """Q2_0 (Ternary-Bonsai): Q1Matrix with Q2_0's block size and tables; the same kernels and decode modes."""

    FORMAT = Q2_FORMAT


class PackedRows(QuantMatrix):
    """A matrix that is only ever read one row at a time (an untied token embedding), left zero-copy in the
    file's memory map and decoded row by row with the exact `dequantize`. It has no matvec/matmul.

    WHY: Bonsai-8B's `token_embd` (151,936 x 4,096 Q1_0, 87.5 MB) is never multiplied: its own `output.weight`
    is the LM head. Repacked like a matrix, it was 87.5 MB of private memory and put the 8B engine 26 MB over
    its peak-RSS budget (file + KV cache + 300 MB). Here only the pages of the rows a prompt uses become
    resident, and they are clean file pages the OS can drop. (A tied embedding is the LM head as well and
    must stay a full QuantMatrix.)"""

    def __init__(self, ggml_type: int, raw: np.ndarray, n_in: int, n_out: int):
        raw = check_raw(ggml_type, raw, n_in, n_out)
        super().__init__(ggml_type, n_in, n_out, raw.size)
        self.raw = raw                                   # (n_out * row_bytes,) uint8, zero-copy
        self.row_bytes = raw.size // n_out

    def _dequant_rows_into(self, r0, r1, out):
        rb = self.row_bytes
        out[...] = dequantize(self.ggml_type, self.raw[r0 * rb:r1 * rb], self.n_in, r1 - r0)


def prepare_matrix(ggml_type: int, raw: np.ndarray, n_in: int, n_out: int, q1_decode: str = "float") -> QuantMatrix:
    """Wrap a tensor's raw GGUF bytes (e.g. a np.memmap slice) as a QuantMatrix, repacking once if useful.
    q1_decode picks the Q1_0 decode kernel (Q1_DECODE_MODES, see Q1Matrix); other types ignore it."""
    raw = check_raw(ggml_type, raw, n_in, n_out)
    if ggml_type in (GGML_F32, GGML_F16, GGML_BF16) and raw.ctypes.data % 4:
        raw = raw.copy()  # unaligned views make numba compile a separate (slow) specialization
    if ggml_type == GGML_F32:
        return F32Matrix(raw, n_in, n_out)
    if ggml_type in (GGML_F16, GGML_BF16):
        return Table16Matrix(ggml_type, raw, n_in, n_out)
    if ggml_type == GGML_Q8_0:
        return Q8Matrix(raw, n_in, n_out)
    if ggml_type == GGML_Q2_0:
        return Q2Matrix(raw, n_in, n_out, q1_decode)
    return Q1Matrix(raw, n_in, n_out, q1_decode)


class StackedMatrix(QuantMatrix):
    """Several matrices with the same input, their outputs side by side: the fallback of `prepare_stacked`
    when the parts have different types (each part keeps its own kernels)."""

    def __init__(self, parts: list[QuantMatrix]):
        super().__init__(parts[0].ggml_type, parts[0].n_in, sum(p.n_out for p in parts), sum(p.nbytes for p in parts))
        self.parts = parts
        self.offsets = np.cumsum([0] + [p.n_out for p in parts])       # (n_parts + 1,) first row of each part

    @property
    def kernel_paths(self) -> dict[str, str]:
        return merge_kernel_paths(self.parts)

    def _matvec_into(self, x, out):
        for p, r0, r1 in zip(self.parts, self.offsets[:-1], self.offsets[1:]):
            p._matvec_into(x, out[r0:r1])

    def _matmul_into(self, x, out):
        for p, r0, r1 in zip(self.parts, self.offsets[:-1], self.offsets[1:]):
            out[:, r0:r1] = p.matmul(x)

    def _dequant_rows_into(self, r0, r1, out):
        for i in range(r0, r1):
            k = int(np.searchsorted(self.offsets, i, side="right")) - 1
            self.parts[k]._dequant_rows_into(i - self.offsets[k], i - self.offsets[k] + 1, out[i - r0:i - r0 + 1])


def merge_kernel_paths(matrices) -> dict[str, str]:
    """The kernel paths of several matrices as one dict: each operation's paths, distinct ones joined by " + "."""
    merged: dict[str, list[str]] = {}
    for m in matrices:
        for op, path in m.kernel_paths.items():
            if path not in merged.setdefault(op, []):
                merged[op].append(path)
    return {op: " + ".join(paths) for op, paths in merged.items()}


def prepare_stacked(parts: list[tuple[int, np.ndarray, int]], n_in: int, q1_decode: str = "float") -> QuantMatrix:
    """One matrix for several that multiply the same input (q/k/v; gate/up): parts = [(ggml_type, raw, n_out)].

    WHY: each product pays per call for its activation tables, its thread wake-up and its Python call;
    stacked, q/k/v pay once. Measured on Bonsai-1.7B shapes (2 threads): the five q/k/v/gate/up matvecs
    19% faster with int11 tables, 256-token prefill 5-7% faster. GGUF stores rows contiguously, so rows of
    same-typed parts stack by concatenating their bytes; mixed types fall back to a StackedMatrix."""
    types = {t for t, _, _ in parts}
    if len(types) == 1:
        raw = np.concatenate([check_raw(t, r, n_in, n) for t, r, n in parts])
        return prepare_matrix(parts[0][0], raw, n_in, sum(n for _, _, n in parts), q1_decode)
    return StackedMatrix([prepare_matrix(t, r, n_in, n, q1_decode) for t, r, n in parts])
