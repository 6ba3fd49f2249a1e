"""Disk full (issue #20): the index directory on a small tmpfs that fills while a new generation is written.
Expected: one clear line, the previous generation intact and loadable, no partial generation left behind.
Needs permission to mount a tmpfs (root in a container, as CI runs); skipped otherwise."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.faults.test_crashes import (WORKTREE, check_readable, clean, config, driver, index_in_process,  # noqa: F401
                                       real_repo, snapshot)


def _bytes_under(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture
def small_disk(real_repo, tmp_path):
    """A tmpfs that holds one generation of `real_repo`'s index but not a second one beside it: sized from a
    reference index built on the normal disk (the repository is ragbit's own source, which grows)."""
    reference = tmp_path / "reference-index"
    index_in_process(real_repo, reference)
    size_k = int(_bytes_under(reference) * 1.5) // 1024 + 64
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()[:100]}")
    yield mnt
    # a process the test started may still hold a file there for a moment (EBUSY): detach it lazily then,
    # so no tmpfs is left mounted under pytest's temporary directories
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_the_previous_generation(real_repo, clean, small_disk, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(real_repo, repo)
    index_dir = small_disk / "index"
    p = driver("index", str(repo), "--index-dir", str(index_dir), "-q")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err                               # the first index fits
    before = snapshot(repo, index_dir)
    for f in sorted((repo / "ragbit").glob("*.py"))[:10]:       # a change that needs a whole new generation
        f.write_text(f.read_text() + "\n# edited\n")
    fails = 0
    for attempt in range(3):                                    # and it fails the same way every time
        p = driver("index", str(repo), "--index-dir", str(index_dir), "-q", "--rebuild")
        out, err = p.communicate(timeout=120)
        lines = [l for l in err.splitlines() if l.strip()]
        assert p.returncode == 1 and "Traceback" not in err, err
        assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], err
        fails += 1
        assert not [q for q in index_dir.iterdir() if q.name.startswith(".staging-") or q.name.endswith(".tmp")]
        assert snapshot(repo, index_dir)["chunks"] == before["chunks"]     # previous generation intact
        check_readable(repo, index_dir)
    assert fails == 3
