"""The F16 conversion kernels (generator/kernels/half.py) against numpy's float16, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from generator.kernels.half import from_float32, to_float32, widen


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # numpy warns on the inf cases we test
def test_float32_to_f16_rounds_like_numpy_including_specials():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(-9, 6, 10_000),
        np.array([0.0, -0.0, np.inf, -np.inf, 65504.0, 65520.0, 1e6, 6e-8, 2.98e-8, 1e-10,
                  1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11], np.float32),   # overflow, subnormal, ties to even
    ]).astype(np.float32)
    bits = np.empty(x.size, np.uint16)
    from_float32(x, bits)
    assert np.array_equal(bits, x.astype(np.float16).view(np.uint16))
    back = np.empty(x.size, np.float32)
    to_float32(bits, back)
    assert np.array_equal(back, x.astype(np.float16).astype(np.float32))
    nan_bits = np.empty(1, np.uint16)
    from_float32(np.array([np.nan], np.float32), nan_bits)
    to_float32(nan_bits, back[:1])
    assert np.isnan(back[0])


def test_widen_reads_a_column_prefix_of_a_wider_array():
    rng = np.random.default_rng(1)
    src = rng.standard_normal((5, 37)).astype(np.float16)
    dst = np.empty((5, 20), np.float32)
    widen(src.view(np.uint16), dst)
    assert np.array_equal(dst, src[:, :20].astype(np.float32))
