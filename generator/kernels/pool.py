"""Helper threads for decode's many short parallel products: work is claimed item by item, and the calling
thread never waits for a helper that has not started.

WHY not numba's prange: a decode step of Bonsai-1.7B runs ~115 matrix-vector products of 0.1-0.3 ms each, and
every prange region ends at a barrier that waits for ALL its threads. On 2 cores shared with other processes,
a sleeping OpenMP thread takes tens of microseconds (often a whole time slice) to get a core back, so the
caller sat at the barrier: on a Zen4 with one other busy process, 2-thread products ran SLOWER than 1-thread
ones (the output projection 87 us against 55), and decode reached 2 threads' memory bandwidth only per CPU second.

How this pool differs (one job at a time, jobs published by one caller thread):
- A job is `n_items` independent items (row ranges of a matrix) and a C function pointer computing one item
  into a private buffer. The caller and the helpers claim items from one counter (a compare-and-swap on
  `(job sequence << 32) | next item`), so whoever is running does the work; a helper that wakes late finds
  nothing left, and the caller finishes alone.
- An item's rows are copied to the output only by the one thread that wins the item's state word
  (compare-and-swap from "open" to "taken"). When the caller has claimed everything and a helper's item is
  still open after about twice an item's time (the helper lost its core mid-item), the caller takes the item
  and computes it itself. The late helper's copy is then discarded, so it can never write into a buffer the
  caller has moved on with.
- Idle helpers spin (with `pause`, yielding the core now and then) for SPIN_US after their last item, then
  sleep on a futex; publishing a job wakes sleepers with one syscall. Decode's gaps between products are tens
  of microseconds, so during a decode helpers rarely sleep; after it they do.

Linux x86-64 only (futex, `pause`); `available()` says whether it runs here, else callers keep their prange
kernels. Helpers are started on first use, follow numba.get_num_threads() of the caller, and are restarted
after a fork.
"""

from __future__ import annotations

import os
import platform
import sys
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

SPIN_US = 300          # idle helpers spin this long before sleeping (decode's gaps between products are shorter)
CYCLES_PER_US = 2000   # a cycle-counter rate low enough for any x86 (the spin budget only needs to be rough)
SLEEP_NS = 200_000_000  # a sleeping helper re-checks at least this often (a safety net, never needed to wake)
MAX_ITEMS = 4096       # items per job (Bonsai's LM head: 297 tiles)
MAX_ROWS = 4096        # floats of private output per worker and item

# ctl (int64) layout: control words on their own cache lines, then the job's parameters, per-worker words, items
SEQ, CLAIM, DONE, STOP, SLEEPERS = 0, 8, 16, 24, 32     # cache-line apart
N_WORKERS, FN, N_ITEMS = 40, 41, 42
STAT_JOBS, STAT_HELPER_ITEMS, STAT_TAKEN, STAT_WAIT = 43, 44, 45, 46   # counters for benchmarks (`stats`)
PARAMS = 48            # 16 job parameters: [0] = address of the float32 output, the rest are the kernel's
N_PARAMS = 16
BUSY = 64              # BUSY + w: the job sequence helper w is computing an item of (0 = none), 8 apart
MAX_HELPERS = 64
STATE = BUSY + 8 * MAX_HELPERS   # STATE + i: item i's word: the job's sequence while open, seq | TAKEN once taken
CTL_SIZE = STATE + MAX_ITEMS
TAKEN = 1 << 62

SYS_FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 128, 129   # x86-64 Linux


_THREADS: list[int] = []     # the count set_threads set last (empty: numba's own)


def set_threads(n: int) -> None:
    """Threads used by every kernel; 0 = all cores numba was started with."""
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS if n == 0 else int(n))
    _THREADS[:] = [numba.get_num_threads()]


def threads_now() -> int:
    """Threads the decode products use: set_threads' count (process-wide, so a model loaded on one thread and
    run on another keeps it), else numba's. numba.get_num_threads() takes a lock on every call (~4 us: ~0.5 ms
    per decode step of Bonsai-1.7B's 113 products)."""
    return _THREADS[0] if _THREADS else numba.get_num_threads()


def available() -> bool:
    """True where the pool runs: Linux on x86-64 (futex and `pause`)."""
    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")


# ---------------------------------------------------------------------------------------------------------------
# intrinsics: atomics on int64 arrays, pause, the cycle counter, futex, calls through a function pointer
# ---------------------------------------------------------------------------------------------------------------


def _slot(context, builder, arrty, arr, idx):
    return builder.gep(context.make_array(arrty)(context, builder, arr).data, [idx])


def _is_i64_array(a) -> bool:
    return isinstance(a, types.Array) and a.dtype == types.int64


@intrinsic
def atomic_load(typingctx, arr, idx):
    if not _is_i64_array(arr):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot(context, builder, sig.args[0], *args), "seq_cst", 8)

    return types.int64(arr, types.intp), codegen


@intrinsic
def atomic_store(typingctx, arr, idx, val):
    if not _is_i64_array(arr):
        return None

    def codegen(context, builder, sig, args):
        builder.store_atomic(args[2], _slot(context, builder, sig.args[0], args[0], args[1]), "seq_cst", 8)
        return context.get_dummy_value()

    return types.void(arr, types.intp, types.int64), codegen


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """arr[idx] += val atomically; returns the old value."""
    if not _is_i64_array(arr):
        return None

    def codegen(context, builder, sig, args):
        return builder.atomic_rmw("add", _slot(context, builder, sig.args[0], args[0], args[1]), args[2], "seq_cst")

    return types.int64(arr, types.intp, types.int64), codegen


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """If arr[idx] == expected: arr[idx] = new. Returns the old value (== expected on success)."""
    if not _is_i64_array(arr):
        return None

    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1])
        return builder.extract_value(builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst"), 0)

    return types.int64(arr, types.intp, types.int64, types.int64), codegen


def _declare(module, name, ret, params, var_arg=False):
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(ret, params, var_arg=var_arg), name)


@intrinsic
def cpu_pause(typingctx):
    def codegen(context, builder, sig, args):
        builder.call(_declare(builder.module, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def cycles(typingctx):
    def codegen(context, builder, sig, args):
        return builder.call(_declare(builder.module, "llvm.readcyclecounter", ir.IntType(64), []), [])

    return types.int64(), codegen


@intrinsic
def _syscall4(typingctx, nr, a, b, c, d):
    """libc syscall(nr, a, b, c, d) with integer arguments (addresses as integers)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fn = _declare(builder.module, "syscall", i64, [i64], var_arg=True)
        return builder.call(fn, list(args))

    return types.int64(types.int64, types.int64, types.int64, types.int64, types.int64), codegen


@intrinsic
def _sched_yield(typingctx):
    def codegen(context, builder, sig, args):
        builder.call(_declare(builder.module, "sched_yield", ir.IntType(32), []), [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def address(typingctx, arr):
    """The data address of an array, as an int64."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(arr), codegen


@intrinsic
def _call_item(typingctx, fn, job, i, acc):
    """int64 fn(int64 job, int64 i, int64 acc) called through its address (an item kernel, see `item_kernel`)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64, i64, i64])
        return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), list(args[1:]))

    return types.int64(types.int64, types.int64, types.int64, types.int64), codegen


ITEM_SIG = types.int64(types.int64, types.int64, types.int64)
"""An item kernel: int64 f(job, i, acc): job = address of the job's N_PARAMS int64 parameters, i = the item,
acc = address of MAX_ROWS private float32s. It computes item i's output rows into acc and returns
(first output row << 16) | number of rows (0 rows: nothing to copy)."""


# ---------------------------------------------------------------------------------------------------------------
# the work loop shared by the caller and the helpers
# ---------------------------------------------------------------------------------------------------------------


@njit(inline="always")
def _claim(ctl, seq, n_items):
    """The next unclaimed item of job `seq`, or -1 when none is left (or the job is no longer current)."""
    while True:
        word = atomic_load(ctl, CLAIM)
        if word >> 32 != seq:
            return -1
        i = word & 0xFFFFFFFF
        if i >= n_items:
            return -1
        if atomic_cas(ctl, CLAIM, word, word + 1) == word:
            return i


@njit(inline="always")
def _commit(ctl, out_addr, seq, i, acc, rows):
    """Copy item i's rows from acc to the output if this thread wins the item's state word, and count it done.
    Returns True if this thread wrote it (False: another thread took it; this copy is discarded)."""
    if atomic_cas(ctl, STATE + i, seq, seq | TAKEN) != seq:
        return False
    r0, n = rows >> 16, rows & 0xFFFF
    out = carray_f32(out_addr + 4 * r0, n)
    for r in range(n):
        out[r] = acc[r]
    atomic_add(ctl, DONE, 1)     # only the caller resets DONE, and only once every item of this job is taken
    return True


def _carray_of(dtype):
    arrty = types.Array(dtype, 1, "C")

    @intrinsic
    def carray(typingctx, addr, n):
        def codegen(context, builder, sig, args):
            ary = context.make_array(arrty)(context, builder)
            itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(dtype)))
            context.populate_array(ary, data=builder.inttoptr(args[0], context.get_data_type(dtype).as_pointer()),
                                   shape=cgutils.pack_array(builder, [args[1]]),
                                   strides=cgutils.pack_array(builder, [itemsize]),
                                   itemsize=itemsize, meminfo=None)
            return ary._getvalue()

        return arrty(types.int64, types.intp), codegen

    carray.__doc__ = f"A {dtype} array of n elements at an address (a view: no ownership)."
    return carray


carray_f32 = _carray_of(types.float32)
carray_i64 = _carray_of(types.int64)


@njit(nogil=True, cache=True)
def helper_loop(ctl, scratch, w):
    """Helper w's life: wait for a job (spin, then futex), do items of it while any is left, repeat until STOP."""
    seen = atomic_load(ctl, SEQ)
    acc = scratch[w + 1]
    acc_addr = address(acc)
    params = np.empty(N_PARAMS, np.int64)
    job = address(params)
    spin = SPIN_US * CYCLES_PER_US
    while True:
        t0 = cycles()
        k = 0
        while True:
            seq = atomic_load(ctl, SEQ)
            if seq != seen or atomic_load(ctl, STOP) != 0:
                break
            k += 1
            if k % 64 == 0:
                if cycles() - t0 > spin:
                    atomic_add(ctl, SLEEPERS, 1)
                    if atomic_load(ctl, SEQ) == seen and atomic_load(ctl, STOP) == 0:
                        _futex_wait(ctl, seen)
                    atomic_add(ctl, SLEEPERS, -1)
                    t0 = cycles()
                else:
                    _sched_yield()       # let a runnable thread of this core (the caller?) have it
            cpu_pause()
        if atomic_load(ctl, STOP) != 0:
            return
        seen = seq
        if w + 1 >= atomic_load(ctl, N_WORKERS):
            continue
        n_items = atomic_load(ctl, N_ITEMS)
        while True:
            i = _claim(ctl, seq, n_items)
            if i < 0:
                break
            atomic_store(ctl, BUSY + 8 * w, seq)
            # a private copy of the job, valid only if item i is still open once copied: the caller rewrites
            # the parameters only after every item of the job is done (so never while item i is open)
            for j in range(N_PARAMS):     # element copy: a slice copy compiles numba's shape-error path
                params[j] = ctl[PARAMS + j]
            fn = ctl[FN]
            if atomic_load(ctl, STATE + i) == seq:
                rows = _call_item(fn, job, i, acc_addr)
                if _commit(ctl, params[0], seq, i, acc, rows):
                    atomic_add(ctl, STAT_HELPER_ITEMS, 1)
            atomic_store(ctl, BUSY + 8 * w, 0)


_TIMESPEC = np.array([0, SLEEP_NS], np.int64)   # struct timespec {0 s, SLEEP_NS ns}: the futex wait's limit


@njit(inline="always")
def _futex_wait(ctl, seen):
    _syscall4(SYS_FUTEX, address(ctl) + 8 * SEQ, FUTEX_WAIT_PRIVATE, seen & 0xFFFFFFFF, address(_TIMESPEC))


@njit(inline="always")
def run_job(ctl, scratch, fn, n_items, n_workers):
    """Publish the job whose parameters are in ctl[PARAMS:], do items of it on this thread, take over items
    a helper holds too long, return when every item is in the output. Returns the number of items taken over."""
    seq = ctl[SEQ] + 1
    for i in range(n_items):
        ctl[STATE + i] = seq
    ctl[FN], ctl[N_ITEMS], ctl[N_WORKERS] = fn, n_items, n_workers
    atomic_store(ctl, DONE, 0)
    atomic_store(ctl, CLAIM, seq << 32)
    atomic_store(ctl, SEQ, seq)
    if atomic_load(ctl, SLEEPERS) > 0:
        _syscall4(SYS_FUTEX, address(ctl) + 8 * SEQ, FUTEX_WAKE_PRIVATE, 1 << 30, 0)
    acc = scratch[0]
    acc_addr = address(acc)
    out = ctl[PARAMS]
    job = address(ctl) + 8 * PARAMS
    mine, t_mine = 0, 0
    while True:
        i = _claim(ctl, seq, n_items)
        if i < 0:
            break
        t = cycles()
        rows = _call_item(fn, job, i, acc_addr)
        _commit(ctl, out, seq, i, acc, rows)
        t_mine += cycles() - t
        mine += 1
    # wait for the helpers' items; after ~2 items' time, compute the ones still open here
    patience = 2 * (t_mine // mine if mine else 20 * CYCLES_PER_US)
    t0 = t_wait = cycles()
    taken = 0
    while atomic_load(ctl, DONE) < n_items:
        if cycles() - t0 > patience:
            for i in range(n_items):
                if atomic_load(ctl, STATE + i) == seq:
                    rows = _call_item(fn, job, i, acc_addr)
                    if _commit(ctl, out, seq, i, acc, rows):
                        taken += 1
            t0 = cycles()
        cpu_pause()
    ctl[STAT_JOBS] += 1
    ctl[STAT_TAKEN] += taken
    ctl[STAT_WAIT] += cycles() - t_wait
    return taken


# ---------------------------------------------------------------------------------------------------------------
# the pool object (Python side)
# ---------------------------------------------------------------------------------------------------------------


class Pool:
    """Shared state + helper threads. `ctl` and `scratch` are what kernels pass to `run_job`."""

    def __init__(self):
        self.ctl = np.zeros(CTL_SIZE, np.int64)
        self.scratch = np.zeros((MAX_HELPERS + 1, MAX_ROWS), np.float32)
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.held: list[tuple[int, tuple]] = []      # (job sequence, its arguments): see run()

    def ensure(self, n_workers: int) -> None:
        """At least n_workers - 1 helper threads running."""
        want = min(n_workers - 1, MAX_HELPERS)
        if len(self.threads) >= want:
            return
        with self.lock:
            while len(self.threads) < want:
                t = threading.Thread(target=helper_loop, args=(self.ctl, self.scratch, len(self.threads)),
                                     name=f"ragbit-decode-{len(self.threads)}", daemon=True)
                t.start()
                self.threads.append(t)

    def run(self, kernel, *args) -> None:
        """kernel(ctl, scratch, *args) publishes and runs one job (it returns the number of items it took over
        from a late helper). The arrays of a job with items taken over stay referenced here until no helper
        computes an item of it any more: the late helper still reads them, and must not find them freed."""
        taken = kernel(self.ctl, self.scratch, *args)
        if self.held:
            busy = set(self.ctl[BUSY:BUSY + 8 * len(self.threads):8].tolist())
            self.held = [h for h in self.held if h[0] in busy]
        if taken:
            self.held.append((int(self.ctl[SEQ]), args))

    def stats(self) -> dict:
        """Counters since the pool started: jobs run, items the helpers wrote, items the caller took over from a
        late helper, and the caller's cycles spent waiting for helpers' items."""
        c = self.ctl
        return {"jobs": int(c[STAT_JOBS]), "helper_items": int(c[STAT_HELPER_ITEMS]), "taken_over": int(c[STAT_TAKEN]),
                "wait_cycles": int(c[STAT_WAIT])}

    def stop(self) -> None:
        """Stop and join the helpers (at exit; a pool is not reused after this)."""
        self.ctl[STOP] = 1
        self.ctl[SEQ] += 1
        _wake(self.ctl)
        for t in self.threads:
            t.join(timeout=1.0)
        self.threads.clear()


@njit(cache=True)
def _wake(ctl):
    _syscall4(SYS_FUTEX, address(ctl) + 8 * SEQ, FUTEX_WAKE_PRIVATE, 1 << 30, 0)


_POOL: list[Pool] = []


def get_pool(n_workers: int) -> Pool:
    """The process's pool with at least n_workers - 1 helpers (a new one in a forked child)."""
    if not _POOL or _POOL[0].pid != os.getpid():
        _POOL[:] = [Pool()]
    pool = _POOL[0]
    pool.ensure(n_workers)
    return pool


def _stop_at_exit() -> None:
    if _POOL and _POOL[0].pid == os.getpid():
        _POOL[0].stop()


import atexit  # noqa: E402  (registered after the definitions it calls)

atexit.register(_stop_at_exit)
