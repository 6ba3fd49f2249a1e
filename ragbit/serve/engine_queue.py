"""One engine, many clients: a bounded FIFO in front of the single generation thread.

Why one thread: the engine holds one KV cache and runs one generation at a time (its numba kernels already
use every core); two generations at once would only thrash it. Why a bound: a client that waits behind
fifty others is better told at once (429 + Retry-After) than left hanging.

A job runs `fn(emit, check)` on the engine thread. `emit(text)` hands a piece to the waiting request (thread
safe, never blocks the engine); `check()` raises `Cancelled` once the request has gone, and the generation
loops call it for every piece, so a client that disconnects frees the engine within one token.
"""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable


class Cancelled(Exception):
    """The request that owns a job went away; raised inside the job to stop its generation."""


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the engine queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class EngineStats:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    pieces_after_cancel: int = 0     # pieces a cancelled job still produced after its cancel (should be <= 1)
    busy_s: float = 0.0              # engine-thread seconds spent on jobs (for Retry-After)


class Job:
    """A queued unit of engine work and the stream of its events: ("piece", str), ("done", result),
    ("error", exception)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self._cancel = threading.Event()
        self._cancel_time: float | None = None
        self.started = False
        self.pieces = 0
        self.pieces_after_cancel = 0

    # engine thread ------------------------------------------------------------------------------------
    def emit(self, piece: str) -> None:
        self.pieces += 1
        if self._cancel.is_set():
            self.pieces_after_cancel += 1
        self._loop.call_soon_threadsafe(self._events.put_nowait, ("piece", piece))

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def _finish(self, kind: str, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))

    # event loop -----------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """The client went away: the job stops at its next piece (or never starts)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def next_event(self) -> tuple[str, Any]:
        return await self._events.get()

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        while True:
            kind, value = await self._events.get()
            yield kind, value
            if kind != "piece":
                return


class EngineQueue:
    """Admission (in the event loop) + one worker thread. `max_waiting` jobs may wait behind the running one."""

    def __init__(self, max_waiting: int = 8) -> None:
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragbit-engine")
        self.pending = 0                   # running + waiting (changed only in the event loop)
        self.running = 0
        self.stats = EngineStats()

    @property
    def waiting(self) -> int:
        return self.pending - self.running

    def retry_after(self) -> int:
        """Seconds a rejected client should wait: the mean job time times the jobs ahead, at least 1."""
        done = self.stats.completed + self.stats.failed + self.stats.cancelled
        mean = self.stats.busy_s / done if done else 1.0
        return max(1, min(60, round(mean * self.pending)))

    def submit(self, fn: Callable[[Callable[[str], None], Callable[[], None]], Any]) -> Job:
        """Queue `fn(emit, check)`; raises QueueFull when `max_waiting` jobs already wait."""
        if self.pending >= 1 + self.max_waiting:
            self.stats.rejected += 1
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        job = Job(loop)
        self.pending += 1
        future = loop.run_in_executor(self._executor, self._run, job, fn)
        future.add_done_callback(lambda _f: self._left())
        return job

    def _left(self) -> None:
        self.pending -= 1

    def _run(self, job: Job, fn: Callable) -> None:
        if job.cancelled:                  # its client left while it waited
            self.stats.cancelled += 1
            job._finish("error", Cancelled())
            return
        job.started = True
        self._loop_call(job, +1)
        t0 = time.perf_counter()
        try:
            result = fn(job.emit, job.check)
        except Cancelled as e:
            self.stats.cancelled += 1
            self.stats.pieces_after_cancel = max(self.stats.pieces_after_cancel, job.pieces_after_cancel)
            job._finish("error", e)
        except BaseException as e:         # reported to the request, which answers with an error object
            self.stats.failed += 1
            job._finish("error", e)
        else:
            self.stats.completed += 1
            job._finish("done", result)
        finally:
            self.stats.busy_s += time.perf_counter() - t0
            self._loop_call(job, -1)

    def _loop_call(self, job: Job, delta: int) -> None:
        def change() -> None:
            self.running += delta
        job._loop.call_soon_threadsafe(change)

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"running": self.running, "waiting": self.waiting, "max_waiting": self.max_waiting,
                "completed": s.completed, "failed": s.failed, "cancelled": s.cancelled, "rejected": s.rejected,
                "pieces_after_cancel": s.pieces_after_cancel}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
