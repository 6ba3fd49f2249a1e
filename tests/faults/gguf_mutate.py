"""Editing GGUF files in place for fault tests: one metadata value, one tensor's type, or seeded random damage.

The `gguf` package's reader maps the file; opened with mode "r+", writing into a field's parts writes the file.
"""
from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

import numpy as np
from generator.gguf_file import _FastReader as GGUFReader   # the gguf package parses the 151k-token vocab in ~12 s


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def set_metadata(path: Path, key: str, value: float | int) -> None:
    """Overwrite a scalar metadata value (same type, so the file layout is unchanged)."""
    reader = GGUFReader(path, "r+")
    field = reader.fields[key]
    part = field.parts[field.data[0]]
    part[0] = np.asarray(value).astype(part.dtype)
    part.flush() if hasattr(part, "flush") else None
    del reader


def set_tensor_type(path: Path, name: str, ggml_type: int) -> None:
    reader = GGUFReader(path, "r+")
    [t] = [t for t in reader.tensors if t.name == name]
    t.field.parts[4][0] = ggml_type
    del reader


def mutate(data: bytes, rng: random.Random, header_end: int) -> tuple[bytes, str]:
    """One random corruption of a GGUF image: (new bytes, what was done). Most edits land in the header
    (metadata and tensor table, bytes [0, header_end)), where a parser can be fooled; some in the data."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "flips", "truncate", "u64", "u64", "u32", "type", "zero"])
    in_header = rng.random() < 0.85
    pos = rng.randrange(0, header_end if in_header else len(b))
    if kind == "flip":
        b[pos] ^= 1 << rng.randrange(8)
        what = f"bit flip at {pos}"
    elif kind == "flips":
        for _ in range(rng.randrange(2, 32)):
            b[rng.randrange(0, header_end)] ^= 1 << rng.randrange(8)
        what = "bit flips in header"
    elif kind == "truncate":
        cut = rng.randrange(0, len(b))
        del b[cut:]
        what = f"truncate to {cut}"
    elif kind in ("u64", "u32"):
        value = rng.choice([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1,
                            rng.randrange(2**64)])
        fmt = "<Q" if kind == "u64" else "<I"
        pos = min(pos, len(b) - struct.calcsize(fmt))
        b[pos:pos + struct.calcsize(fmt)] = struct.pack(fmt, value % (2**64 if kind == "u64" else 2**32))
        what = f"{kind} {value} at {pos}"
    elif kind == "type":
        b[pos] = rng.choice([0, 1, 2, 8, 12, 13, 14, 30, 41, 99, 255])
        what = f"type byte {b[pos]} at {pos}"
    else:
        n = rng.randrange(1, 64)
        b[pos:pos + n] = bytes(len(b[pos:pos + n]))
        what = f"zero {n} bytes at {pos}"
    return bytes(b), what


def header_end(path: Path) -> int:
    """Offset where tensor data starts (end of metadata + tensor table)."""
    return int(GGUFReader(path, "r").data_offset)
