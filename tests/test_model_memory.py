"""The KV cache costs memory only where positions are written (generator.kv_cache._pages_on_use).

numpy advises huge pages for large arrays, which had made a whole Bonsai-8B value cache (151 MB) resident at
the first token. These tests read the process's resident set from /proc (Linux only) and skip where the
kernel backs every anonymous map with huge pages anyway (transparent_hugepage = always).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.kv_cache import _pages_on_use

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/statm").exists() or (THP.exists() and "[always]" in THP.read_text()),
    reason="needs Linux /proc and transparent huge pages not forced to 'always'")

MB = 1 << 20


def _resident() -> int:
    import os
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_cache_pages_become_resident_only_where_written():
    before = _resident()
    cache = _pages_on_use((8, 2048, 2048), np.uint16)           # 64 MB: 8 heads x 2048 positions x 2048
    assert cache.shape == (8, 2048, 2048) and cache.dtype == np.uint16 and cache.flags.writeable
    assert not cache.any()                                       # zeroed (reading maps the shared zero page)
    assert _resident() - before < 8 * MB
    cache[:, :16] = 7                                            # 16 positions of each head: 8 x 64 KB
    grown = _resident() - before
    assert grown < 8 * MB, f"writing 1 MB of positions made {grown / MB:.0f} MB resident"
    cache[:] = 1
    assert _resident() - before > 56 * MB                        # the whole cache once it is all written
