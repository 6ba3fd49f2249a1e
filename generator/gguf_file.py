"""Open a GGUF model file: metadata as plain Python values, tensors as zero-copy byte views.

Built on `gguf.GGUFReader` (memory-mapped: a tensor's bytes are only read when a kernel touches them).
Two things are added on top of the reader:

* **Speed.** The stock reader builds two numpy memmap slices per string of a string array; a Qwen3
  tokenizer has ~300k strings (vocab + merges), which takes 20-30 s. `_FastReader` parses arrays in one
  pass over a plain byte view instead (well under a second), producing the same `ReaderField` layout.
* **Validation.** A corrupt or foreign file must end in ONE `GGUFError` line naming the file and the
  problem, never in an IndexError from deep inside the reader. Magic, version, every tensor's type,
  shape and byte range are checked here before the reader slices anything.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.constants import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType
from gguf.gguf_reader import ReaderTensor

from generator.errors import GeneratorError

# ---------------------------------------------------------------------------------------------------------------
# Supported tensor types (ggml type id -> name). Q1_0 is PrismML's 1-bit type used by Bonsai.
# ---------------------------------------------------------------------------------------------------------------

GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16, GGML_Q1_0, GGML_Q2_0 = 0, 1, 8, 30, 41, 42
SUPPORTED_TYPES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q8_0: "Q8_0", GGML_BF16: "BF16", GGML_Q1_0: "Q1_0",
                   GGML_Q2_0: "Q2_0"}
# (values per block, bytes per block); the gguf package (0.19) does not know Q2_0 (Ternary-Bonsai) yet
BLOCK_SIZES = {t: GGML_QUANT_SIZES[GGMLQuantizationType(t)] for t in SUPPORTED_TYPES if t != GGML_Q2_0}
BLOCK_SIZES[GGML_Q2_0] = (64, 18)
SUPPORTED_VERSIONS = (2, 3)

_HEADER = struct.Struct("<IIQQ")  # magic, version, tensor_count, kv_count


class GGUFError(GeneratorError, ValueError):
    """A GGUF file that cannot be used: the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class TensorRef:
    """One tensor of the file, not copied: `raw` is a uint8 view of its bytes in the memory map.

    `shape` is in GGUF order (ne0, ne1, ...): ne0 is the contiguous (input) dimension.
    """

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    raw: np.ndarray  # (n_bytes,) uint8

    @property
    def type_name(self) -> str:
        return SUPPORTED_TYPES.get(self.ggml_type, str(self.ggml_type))

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class _ReaderFailure(Exception):
    """Raised inside the reader subclass; GGUFFile turns it into a GGUFError with the file name."""


class _FastReader(GGUFReader):
    """GGUFReader with a fast path for arrays and bounds checks before tensors are sliced."""

    def _plain(self) -> np.ndarray:
        plain = self.__dict__.get("_plain_bytes")
        if plain is None:
            plain = self.__dict__["_plain_bytes"] = self.data.view(np.ndarray)
        return plain

    def _need(self, offs: int, n: int, what: str) -> None:
        if offs < 0 or n < 0 or offs + n > len(self.data):
            raise _ReaderFailure(f"truncated or corrupt file: {what} at byte {offs} runs past the end "
                                 f"({len(self.data)} bytes)")

    def _get(self, offset, dtype, count=1, override_order=None):
        self._need(int(offset), int(count) * np.dtype(dtype).itemsize, "metadata")
        return super()._get(offset, dtype, count, override_order)

    def _get_field_parts(self, orig_offs: int, raw_type: int):
        try:
            gtype = GGUFValueType(int(raw_type))
        except ValueError:
            raise _ReaderFailure(f"unknown metadata value type {int(raw_type)} at byte {orig_offs}") from None
        if gtype != GGUFValueType.ARRAY or self.byte_order != "I":
            return super()._get_field_parts(orig_offs, raw_type)
        # One array: item type, length, then the items. Scalars: one view. Strings: one pass over the bytes.
        raw_itype = self._get(orig_offs, np.uint32)
        alen = self._get(orig_offs + 4, np.uint64)
        offs = orig_offs + 12
        try:
            itype = GGUFValueType(int(raw_itype[0]))
        except ValueError:
            raise _ReaderFailure(f"unknown metadata array item type {int(raw_itype[0])}") from None
        n = int(alen[0])
        parts: list[np.ndarray] = [raw_itype, alen]
        nptype = self.gguf_scalar_to_np.get(itype)
        if nptype is not None:
            parts.append(self._get(offs, nptype, n))
            return int(offs + parts[-1].nbytes - orig_offs), parts, ([2] if n else []), [gtype, itype]
        if itype != GGUFValueType.STRING:
            raise _ReaderFailure(f"unsupported metadata array of {itype.name}")
        # Strings: decoded here in one pass; the field keeps the raw region as its single part and the
        # decoded list goes to `decoded_strings` (ReaderField.contents() is not used for these fields).
        plain, size = self._plain(), len(self.data)
        mv = memoryview(plain)
        unpack = struct.Struct("<Q").unpack_from
        strings = []
        try:
            for _ in range(n):
                (slen,) = unpack(mv, offs)
                end = offs + 8 + slen
                if end > size:
                    raise struct.error
                strings.append(str(mv[offs + 8:end], "utf-8"))
                offs = end
        except struct.error:
            raise _ReaderFailure(f"truncated or corrupt file: string array at byte {orig_offs} runs past the end "
                                 f"({size} bytes)") from None
        except UnicodeDecodeError:
            raise _ReaderFailure(f"string array at byte {orig_offs} is not valid UTF-8") from None
        self.__dict__.setdefault("decoded_strings", {})[orig_offs] = strings
        parts.append(plain[orig_offs + 12:offs])
        return offs - orig_offs, parts, [], [gtype, itype]

    def _build_tensors(self, start_offs: int, fields) -> None:
        size = len(self.data)
        spans, plan = [], []
        for field in fields:
            name = str(bytes(field.parts[1]), encoding="utf-8", errors="replace")
            dims, raw_dtype, offset_tensor = field.parts[3], int(field.parts[4][0]), int(field.parts[5][0])
            if raw_dtype not in SUPPORTED_TYPES:
                raise _ReaderFailure(f"tensor {name!r} has unknown/unsupported type {raw_dtype} "
                                     f"(supported: {', '.join(SUPPORTED_TYPES.values())})")
            block, type_size = BLOCK_SIZES[raw_dtype]
            shape = [int(d) for d in dims]
            if not shape or any(d <= 0 or d > 1 << 40 for d in shape):
                raise _ReaderFailure(f"tensor {name!r} has invalid shape {shape}")
            n_elems = int(np.prod(shape, dtype=object))
            if shape[0] % block:
                raise _ReaderFailure(f"tensor {name!r}: row length {shape[0]} is not a multiple of {block}")
            n_bytes = n_elems // block * type_size
            begin = start_offs + offset_tensor
            if begin + n_bytes > size:
                raise _ReaderFailure(f"tensor {name!r} data (bytes {begin}..{begin + n_bytes}) runs past the end "
                                     f"of the file ({size} bytes): truncated or corrupt")
            spans.append((begin, begin + n_bytes, name))
            plan.append((name, shape, raw_dtype, begin, n_bytes, field))
        # a tensor whose declared type/shape needs more bytes than its slot (e.g. a Q1_0 type byte changed to
        # F32) would read its neighbours' weights as its own: the data regions must not overlap
        spans.sort()
        for (b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
            if e0 > b1:
                raise _ReaderFailure(f"tensor {n0!r} (bytes {b0}..{e0}) overlaps tensor {n1!r} (from byte {b1}): "
                                     "its type or shape does not match its data")
        # every tensor as its raw bytes (the stock builder maps the type through an enum that lacks Q2_0)
        if len({p[0] for p in plan}) != len(plan):
            raise _ReaderFailure("two tensors share one name")
        self.tensors = [ReaderTensor(name=name, tensor_type=raw_dtype, shape=np.array(shape, np.uint64),
                                     n_elements=int(np.prod(shape, dtype=object)), n_bytes=n_bytes, data_offset=begin,
                                     data=self._get(begin, np.uint8, n_bytes), field=field)
                        for name, shape, raw_dtype, begin, n_bytes, field in plan]


# ---------------------------------------------------------------------------------------------------------------
# GGUFFile
# ---------------------------------------------------------------------------------------------------------------


class GGUFFile:
    """A validated, memory-mapped GGUF file.

    `metadata` holds plain Python values (str, int, float, bool, lists of those); `tensor(name)` returns a
    `TensorRef` whose `raw` bytes stay in the memory map.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._check_header()
        try:
            self._reader = _FastReader(self.path, "r")
        except _ReaderFailure as exc:
            raise self.error(str(exc)) from None
        except (ValueError, KeyError, IndexError, OverflowError, TypeError, UnicodeDecodeError, OSError) as exc:
            raise self.error(f"corrupt GGUF file ({type(exc).__name__}: {exc})") from None
        try:
            decoded = self._reader.__dict__.get("decoded_strings", {})
            self.metadata: dict[str, Any] = {k: _field_value(f, decoded) for k, f in self._reader.fields.items()}
        except (UnicodeDecodeError, ValueError, IndexError) as exc:
            raise self.error(f"corrupt metadata ({type(exc).__name__}: {exc})") from None
        self._tensors = {
            t.name: TensorRef(t.name, int(t.tensor_type), tuple(int(d) for d in t.shape),
                              t.data.reshape(-1).view(np.uint8))
            for t in self._reader.tensors
        }

    # --- errors ---------------------------------------------------------------------------------------------

    def error(self, problem: str) -> GGUFError:
        """A GGUFError for this file (also used by the model loader for shape/metadata problems)."""
        return GGUFError(f"{self.path}: {problem}")

    def _check_header(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(_HEADER.size)
        except FileNotFoundError:
            raise self.error("file not found") from None
        except IsADirectoryError:
            raise self.error("is a directory, not a GGUF file") from None
        except OSError as exc:
            raise self.error(f"cannot read file ({exc.strerror or exc})") from None
        if len(head) < 4 or struct.unpack_from("<I", head)[0] != GGUF_MAGIC:
            raise self.error("not a GGUF file (wrong magic bytes)")
        if len(head) < _HEADER.size:
            raise self.error(f"truncated file: {len(head)} bytes, shorter than the GGUF header")
        _magic, version, _n_tensors, _n_kv = _HEADER.unpack(head)
        if version not in SUPPORTED_VERSIONS:
            raise self.error(f"unsupported GGUF version {version} (supported: "
                             f"{', '.join(map(str, SUPPORTED_VERSIONS))})")

    def value_types(self, key: str) -> list[GGUFValueType]:
        """GGUF value type(s) of a metadata key: [type] or [ARRAY, item type] (to copy keys faithfully)."""
        return list(self._reader.fields[key].types)

    # --- tensors --------------------------------------------------------------------------------------------

    @property
    def tensor_names(self) -> list[str]:
        return list(self._tensors)

    def has_tensor(self, name: str) -> bool:
        return name in self._tensors

    def tensor(self, name: str) -> TensorRef:
        return self.require(name)

    def require(self, name: str, shape: tuple[int, ...] | None = None) -> TensorRef:
        """The tensor `name`; GGUFError if it is missing or (when `shape` is given) has another shape."""
        ref = self._tensors.get(name)
        if ref is None:
            raise self.error(f"missing tensor {name!r}")
        if shape is not None and tuple(ref.shape) != tuple(shape):
            raise self.error(f"tensor {name!r} has shape {list(ref.shape)}, expected {list(shape)} for this model")
        return ref

    def release(self, ref: TensorRef) -> None:
        """Drop a tensor's pages from this process's resident memory (the OS page cache keeps them).

        WHY: the loader repacks Q1_0 matrices into private arrays; without this, every mapped page it read
        stays counted in the process (peak RSS = file + repacked copy). The map is read-only, so this is
        always safe: a later read of `ref.raw` faults the pages back in from the page cache.
        """
        data = self._reader.data
        mm = getattr(data, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise") or ref.raw.size == 0:
            return
        base = data.ctypes.data - int(getattr(data, "offset", 0))
        start = ref.raw.ctypes.data - base
        page = mmap.PAGESIZE
        lo = start // page * page
        hi = min(len(mm), -(-(start + ref.raw.size) // page) * page)
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            pass  # only a memory-footprint optimisation

    def forget_vocabulary(self) -> None:
        """Drop the tokenizer's vocabulary arrays (tokens, merges, token types) from `metadata` and the reader.

        WHY: once the tokenizer is built (it keeps its own compact copy), these ~300,000 Python strings of a
        Qwen3 vocabulary are ~40 MB that nothing reads again (~15 MB of it goes back to the OS: pymalloc keeps
        arenas that other objects still share)."""
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                    "tokenizer.ggml.scores"):
            self.metadata.pop(key, None)
            self._reader.fields.pop(key, None)
        self._reader.__dict__.pop("decoded_strings", None)

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, {len(self._tensors)} tensors, {len(self.metadata)} keys)"


def _field_value(field, decoded: dict[int, list[str]]) -> Any:
    """A ReaderField as a plain Python value (strings decoded, numpy scalars converted).

    `decoded` holds string arrays already decoded by _FastReader, keyed by the value's file offset.
    """
    types = field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        if len(types) > 1 and types[-1] == GGUFValueType.STRING:
            value_offs = field.offset + int(field.parts[0].nbytes + field.parts[1].nbytes) + 4
            if value_offs in decoded:
                return list(decoded[value_offs])
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        values = [v for i in field.data for v in field.parts[i].tolist()]
        if types[-1] == GGUFValueType.BOOL:
            values = [bool(v) for v in values]
        return values
    if types[0] == GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8")
    value = field.parts[-1].tolist()[0]
    if types[0] == GGUFValueType.BOOL:
        return bool(value)
    if types[0] in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(value)
    return value
