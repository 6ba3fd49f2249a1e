"""The decode pool (generator/kernels/pool.py): the int11 product over the pool gives the same bits as the
one-thread kernel on every instruction-set path, and a helper that stalls inside an item neither delays the
caller for long nor writes its late copy into the output."""

from __future__ import annotations

import time

import numba
import numpy as np
import pytest
from numba import cfunc, njit

from generator.kernels import GGML_Q1_0, GGML_Q2_0, matrix, pool, prepare_matrix, quantize

pytestmark = pytest.mark.skipif(not pool.available(), reason="the decode pool needs Linux on x86-64 (futex, pause)")


def _matrix(ggml_type, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    if ggml_type == GGML_Q2_0:
        blocks = np.zeros((n_out, n_in // 64, 18), np.uint8)
        blocks[:, :, :2] = (rng.uniform(0.5, 1.5, (n_out, n_in // 64)) / 8).astype(np.float16).view(np.uint8).reshape(
            n_out, n_in // 64, 2)
        blocks[:, :, 2:] = rng.integers(0, 256, (n_out, n_in // 64, 16), dtype=np.uint8)
        raw = blocks.reshape(-1)
    else:
        raw = quantize(GGML_Q1_0, rng.standard_normal((n_out, n_in)).astype(np.float32))
    return prepare_matrix(ggml_type, raw, n_in, n_out, q1_decode="int11"), rng


@pytest.mark.parametrize("ggml_type", [GGML_Q1_0, GGML_Q2_0], ids=["Q1_0", "Q2_0"])
@pytest.mark.parametrize("shape", [(384, 67), (256, 1100), (1024, 2048)])
def test_pool_product_equals_the_one_thread_kernel(shape, ggml_type, int11_path, monkeypatch):
    """Row ranges of the tiles computed by whichever thread claims them: the same integer sums and the same
    float order per row as the one-thread kernel, so the same bits (partial last tile and chunk included)."""
    monkeypatch.setattr(matrix, "SERIAL_BELOW_BYTES", 0)      # every size through the pool
    n_in, n_out = shape
    m, rng = _matrix(ggml_type, n_in, n_out, seed=n_out)
    assert m.kernel_paths["decode"].startswith(m.path)
    p = pool.get_pool(2)
    jobs = p.stats()["jobs"]
    for _ in range(3):
        x = rng.standard_normal(n_in).astype(np.float32)
        tab, s = m.FORMAT.int_tables.tables_for(x)
        want = np.empty(n_out, np.float32)
        m._int11_1t(m.bits_t, m.scales, tab, s, want)
        got = m.matvec(x)          # numba's thread count is 2 in the test run (NUMBA_NUM_THREADS) or more
        assert np.array_equal(got, want)
    if numba.get_num_threads() > 1:
        assert p.stats()["jobs"] >= jobs + 3


# a test item kernel: item i writes rows [4i, 4i + 4) = i + 1; on a helper thread (acc is not the caller's
# buffer, whose address is parameter 1) it first stalls for parameter 2 microseconds, on the caller for parameter 3
def _stalling_item(job, i, acc):
    params = pool.carray_i64(job, pool.N_PARAMS)
    wait_us = params[2] if acc != params[1] else params[3]
    t0 = pool.cycles()
    while pool.cycles() - t0 < wait_us * pool.CYCLES_PER_US:
        pool.cpu_pause()
    out = pool.carray_f32(acc, 4)
    out[:] = i + 1
    return ((4 * i) << 16) | 4


@njit
def _run(ctl, scratch, fn, out, stall_us, n_items, n_workers, caller_us=0):
    ctl[pool.PARAMS], ctl[pool.PARAMS + 1], ctl[pool.PARAMS + 2] = pool.address(out), pool.address(scratch[0]), \
        stall_us
    ctl[pool.PARAMS + 3] = caller_us
    return pool.run_job(ctl, scratch, fn, n_items, n_workers)


def test_a_stalled_helper_is_taken_over_and_its_late_copy_discarded():
    fn = cfunc(pool.ITEM_SIG)(_stalling_item).address
    p = pool.get_pool(2)
    n_items = 64
    want = np.repeat(np.arange(1, n_items + 1, dtype=np.float32), 4)
    stall_us = 200_000                                     # 0.2 s inside any item a helper claims
    taken = 0
    for _ in range(200):                                   # until a helper has claimed an item (it usually has)
        out = np.zeros(4 * n_items, np.float32)
        # the caller's items take 0.1 ms each, so a helper has ~6 ms to wake and claim one: on a loaded machine
        # instant items were all done before the helper got a core (the test failed at load 4)
        taken = _run(p.ctl, p.scratch, fn, out, stall_us, n_items, 2, 100)
        assert np.array_equal(out, want)
        if taken:
            break
    assert taken >= 1, "no helper ever claimed an item"
    out[:] = -1.0                              # the caller owns the output again: the late helper must not write
    time.sleep(0.4)
    assert np.all(out == -1.0)
    # the pool still works after the take-over
    out = np.zeros(4 * n_items, np.float32)
    _run(p.ctl, p.scratch, fn, out, 0, n_items, 2)
    assert np.array_equal(out, want)


def test_one_worker_runs_every_item_on_the_caller():
    fn = cfunc(pool.ITEM_SIG)(_stalling_item).address
    p = pool.get_pool(2)
    before = p.stats()["helper_items"]
    out = np.zeros(4 * 10, np.float32)
    assert _run(p.ctl, p.scratch, fn, out, 1_000_000, 10, 1) == 0     # a helper would stall 1 s: none may join
    assert np.array_equal(out, np.repeat(np.arange(1, 11, dtype=np.float32), 4))
    assert p.stats()["helper_items"] == before
