"""Embedders for the Ray tests, in a module Ray's worker processes can import (pytest imports test files under
names the workers cannot)."""
from __future__ import annotations

import os
from pathlib import Path

from tests.retrieval_fixtures import FakeEmbedder


class PidRecordingEmbedder(FakeEmbedder):
    """The fake embedder, slowed down, writing its worker's pid where the test can find (and kill) it."""

    def __init__(self, pid_dir: str, delay: float):
        super().__init__(delay_per_call=delay)
        Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
