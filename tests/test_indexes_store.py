"""IndexStore: atomic generations, crash safety, the writer lock, format checks."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from indexes.store import (FORMAT_VERSION, IndexDirForeignError, IndexFormatError, IndexLockedError, IndexMissingError,
                           IndexStore)

ROOT = Path(__file__).resolve().parents[1]


def _spawn(code: str) -> subprocess.Popen:
    """A Python child importing this worktree's packages; its stdout is a pipe for handshakes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    line = proc.stdout.readline()
    assert line.strip() == word, f"child said {line!r}; stderr: {proc.stderr.read()}"


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def _commit(store: IndexStore, text: str, **manifest) -> Path:
    with store.write_generation({"text": text, **manifest}) as staging:
        (staging / "payload.txt").write_text(text)
    return store.current()


def _check_consistent(store: IndexStore) -> str:
    """The committed generation's payload agrees with its manifest: no half-written generation is visible."""
    path, manifest = store.require()
    assert (path / "payload.txt").read_text() == manifest["text"]
    return manifest["text"]


def test_empty_store_creates_nothing(tmp_path):
    store = IndexStore(tmp_path / "idx")
    assert store.manifest() is None and store.current() is None
    assert not (tmp_path / "idx").exists()
    with pytest.raises(IndexMissingError, match="no index"):
        store.require()


def test_commit_and_replace_generations(tmp_path):
    store = IndexStore(tmp_path / "idx")
    first = _commit(store, "one", chunks=3)
    manifest = store.manifest()
    assert manifest["chunks"] == 3 and manifest["format_version"] == FORMAT_VERSION
    second = _commit(store, "two")
    assert second != first and not first.exists()             # older generation removed after the switch
    assert _check_consistent(store) == "two"
    assert store.manifest()["generation"] == manifest["generation"] + 1
    assert {p.name for p in store.root.iterdir()} == {"CURRENT", "lock", ".gitignore", second.name}


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_exception_inside_write_keeps_previous_generation(tmp_path, error):
    store = IndexStore(tmp_path / "idx")
    old = _commit(store, "old")
    with pytest.raises(type(error)):
        with store.write_generation({"text": "new"}) as staging:
            (staging / "payload.txt").write_text("new")
            raise error
    assert store.current() == old and _check_consistent(store) == "old"
    assert {p.name for p in store.root.iterdir()} == {"CURRENT", "lock", ".gitignore", old.name}
    assert _commit(store, "after") and _check_consistent(store) == "after"


WRITER_MID = """
    import sys, time
    from pathlib import Path
    from indexes.store import IndexStore
    store = IndexStore(Path(sys.argv[1]) if len(sys.argv) > 1 else Path({root!r}))
    with store.write_generation({{"text": "new"}}) as staging:
        (staging / "payload.txt").write_text("half")
        print("writing", flush=True)
        time.sleep(60)
"""


def test_sigkill_mid_write_leaves_old_generation_and_next_write_succeeds(tmp_path):
    store = IndexStore(tmp_path / "idx")
    old = _commit(store, "old")
    child = _spawn(WRITER_MID.format(root=str(store.root)))
    _wait_for(child, "writing")
    _kill(child)
    assert any(p.name.startswith(".staging-") for p in store.root.iterdir())   # debris of the killed run
    assert store.current() == old and _check_consistent(store) == "old"
    _commit(store, "next")                                      # the lock died with the child
    assert _check_consistent(store) == "next"
    assert not any(p.name.startswith(".staging-") for p in store.root.iterdir())


WRITER_LOOP = """
    from pathlib import Path
    from indexes.store import IndexStore
    store = IndexStore(Path({root!r}))
    i = 0
    print("started", flush=True)
    while True:
        i += 1
        with store.write_generation({{"text": f"v{{i}}-" + "x" * (i % 5000)}}) as staging:
            (staging / "payload.txt").write_text(f"v{{i}}-" + "x" * (i % 5000))
"""


def test_sigkill_at_random_moments_never_exposes_a_partial_generation(tmp_path):
    store = IndexStore(tmp_path / "idx")
    _commit(store, "seed")
    seen = set()
    for delay in (0.05, 0.13, 0.21, 0.34, 0.4):
        child = _spawn(WRITER_LOOP.format(root=str(store.root)))
        _wait_for(child, "started")
        time.sleep(delay)
        _kill(child)
        seen.add(_check_consistent(store))
    assert len(seen) > 1                                        # the children did commit generations
    _commit(store, "final")
    assert _check_consistent(store) == "final"
    assert len([p for p in store.root.iterdir() if p.name.startswith(("gen-", ".staging-"))]) == 1


HOLDER = """
    import time
    from pathlib import Path
    from indexes.store import IndexStore
    with IndexStore(Path({root!r})).lock():
        print("locked", flush=True)
        time.sleep({hold})
"""


def test_lock_held_by_another_process(tmp_path):
    store = IndexStore(tmp_path / "idx")
    child = _spawn(HOLDER.format(root=str(store.root), hold=60))
    try:
        _wait_for(child, "locked")
        with pytest.raises(IndexLockedError, match="another ragbit index run holds the lock"):
            with store.lock():
                pass
        with pytest.raises(IndexLockedError):
            with store.write_generation({"text": "x"}):
                pass
        assert store.current() is None
    finally:
        _kill(child)
    with store.lock():                                          # released by the kernel with the process
        pass


def test_lock_timeout_waits_for_the_holder(tmp_path):
    store = IndexStore(tmp_path / "idx")
    child = _spawn(HOLDER.format(root=str(store.root), hold=0.5))
    _wait_for(child, "locked")
    with store.lock(timeout=20):
        pass
    child.wait(timeout=10)
    child.stdout.close()
    child.stderr.close()


def test_lock_is_reentrant_for_the_same_store(tmp_path):
    store = IndexStore(tmp_path / "idx")
    with store.lock():
        _commit(store, "inside")
        with pytest.raises(IndexLockedError):                   # a second store object is another writer
            with IndexStore(store.root).lock():
                pass
    assert _check_consistent(store) == "inside"


@pytest.mark.parametrize("found, says", [
    (FORMAT_VERSION + 1, rf"was written by a newer ragbit \(format {FORMAT_VERSION + 1}, this one reads up to "
                         rf"{FORMAT_VERSION}\): upgrade ragbit, or run ragbit index --rebuild"),
    (0, rf"has format 0, this ragbit reads {FORMAT_VERSION}: run ragbit index --rebuild"),
    ("x", rf"has format x, this ragbit reads {FORMAT_VERSION}: run ragbit index --rebuild")])
def test_format_version_mismatch(tmp_path, found, says):
    store = IndexStore(tmp_path / "idx")
    path = _commit(store, "old")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = found
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=says):
        store.manifest()
    _commit(store, "rebuilt")                                   # a rebuild replaces it
    assert store.manifest()["format_version"] == FORMAT_VERSION


def test_corrupt_pointer_or_manifest(tmp_path):
    store = IndexStore(tmp_path / "idx")
    path = _commit(store, "x")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="corrupt"):
        store.manifest()
    (store.root / "CURRENT").write_text("../../etc\n")
    with pytest.raises(IndexFormatError, match="corrupt"):
        store.current()
    (store.root / "CURRENT").write_text("gen-999999\n")
    with pytest.raises(IndexFormatError, match="missing"):
        store.current()
    _commit(store, "rebuilt")                                   # a rebuild repairs a broken pointer
    assert _check_consistent(store) == "rebuilt"
    (store.root / "CURRENT").write_text("garbage")
    _commit(store, "again")
    assert _check_consistent(store) == "again"


def test_read_retries_when_a_writer_replaces_the_generation_mid_load(tmp_path):
    store = IndexStore(tmp_path / "idx")
    _commit(store, "old")
    writer = IndexStore(store.root)
    calls = []

    def loader(path, manifest):
        calls.append(manifest["text"])
        if len(calls) == 1:
            _commit(writer, "new")                  # switch + delete `path` between resolve and open
        return (path / "payload.txt").read_text()

    assert store.read(loader) == "new"
    assert calls == ["old", "new"]


def test_a_generation_comes_with_its_own_manifest_when_a_writer_commits_meanwhile(tmp_path, monkeypatch):
    """A writer that commits between a reader's resolving of CURRENT and its reading of the manifest must not pair
    the new generation with the old manifest (the fault suite's concurrent readers saw such a pair as an index
    with its files missing)."""
    store = IndexStore(tmp_path / "idx")
    _commit(store, "old")
    real_manifest = IndexStore._manifest_of

    def commit_after_reading(self, path):
        manifest = real_manifest(self, path)
        if manifest["text"] == "old":
            _commit(IndexStore(store.root), "new")    # switch CURRENT (and delete the old generation) now
        return manifest

    monkeypatch.setattr(IndexStore, "_manifest_of", commit_after_reading)
    path, manifest = store.require()
    assert manifest["text"] == "old" and path.name == f"gen-{manifest['generation']:06d}"
    monkeypatch.undo()
    assert store.read(lambda p, m: ((p / "payload.txt").read_text(), m["text"])) == ("new", "new")


def test_read_does_not_retry_a_broken_generation(tmp_path):
    store = IndexStore(tmp_path / "idx")
    _commit(store, "x")
    calls = []

    def loader(path, manifest):
        calls.append(1)
        return (path / "absent.bin").read_bytes()

    with pytest.raises(FileNotFoundError):
        store.read(loader)
    assert len(calls) == 1
    with pytest.raises(IndexMissingError):
        IndexStore(tmp_path / "none").read(loader)


def test_a_hard_linked_file_keeps_its_recorded_checksum_without_being_read(tmp_path, monkeypatch):
    """A generation that hard-links a big file from the previous one records the same checksum without reading
    it again; a copied or rewritten file is read."""
    from indexes import store as store_module
    from indexes.store import file_checksum, verify_generation
    store = IndexStore(tmp_path / "idx")
    with store.write_generation({"n": 1}) as staging:
        (Path(staging) / "big.bin").write_bytes(os.urandom(300_000))
        (Path(staging) / "small.txt").write_text("one")
    first = Path(store.current())
    read = []
    real = store_module.file_checksum
    monkeypatch.setattr(store_module, "file_checksum", lambda p: read.append(Path(p).name) or real(p))
    with store.write_generation({"n": 2}) as staging:
        os.link(first / "big.bin", Path(staging) / "big.bin")
        (Path(staging) / "small.txt").write_text("two")
    second = Path(store.current())
    assert read == ["small.txt"]
    recorded = store.manifest()["checksums"]
    assert recorded["big.bin"] == file_checksum(second / "big.bin")
    assert recorded["small.txt"] == file_checksum(second / "small.txt")
    assert verify_generation(second, store.manifest()) == []


def test_the_writer_skips_files_it_verified_and_that_did_not_change_since(tmp_path, monkeypatch):
    """verify_generation(remember=True) reads a file again only when its stat moved (or it was written within
    the margin before it was verified); a byte changed through the file system is always found."""
    from indexes import store as store_module
    from indexes.store import verify_generation
    store = IndexStore(tmp_path / "idx")
    with store.write_generation({"n": 1}) as staging:
        (staging / "big.bin").write_bytes(b"x" * 5000)
        (staging / "small.txt").write_text("hello")
    gen, manifest = store.require()
    old = time.time() - 60
    for name in ("big.bin", "small.txt"):
        os.utime(gen / name, (old, old))                          # settled long before the first check
    read = []
    real = store_module.file_checksum
    monkeypatch.setattr(store_module, "file_checksum", lambda p: read.append(p.name) or real(p))
    assert verify_generation(gen, manifest, remember=True) == [] and sorted(read) == ["big.bin", "small.txt"]
    read.clear()
    assert verify_generation(gen, manifest, remember=True) == [] and read == []      # nothing read again
    assert verify_generation(gen, manifest) == [] and len(read) == 2                  # readers always read
    read.clear()
    data = bytearray((gen / "big.bin").read_bytes())
    data[10] ^= 1
    (gen / "big.bin").write_bytes(bytes(data))
    assert verify_generation(gen, manifest, remember=True) == ["big.bin fails its checksum"] and read == ["big.bin"]


def _snapshot(root: Path) -> dict:
    """Every entry below root with its mode and (for files) contents: what must not change."""
    return {str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
            for p in [root, *sorted(root.rglob("*"))]}


def test_a_directory_of_other_files_is_never_written(tmp_path):
    """The root can come from the repository (a `.ragbit` link, `[index] dir`): a directory that holds other files
    and no index is refused before anything is made private, created or replaced in it."""
    foreign = tmp_path / "someone-elses"
    (foreign / "gen-000001").mkdir(parents=True)
    (foreign / "gen-000001" / "keep.txt").write_text("mine")
    (foreign / "notes.txt").write_text("precious")
    (foreign / ".gitignore").write_text("*.pyc\n")
    foreign.chmod(0o755)
    before = _snapshot(foreign)
    link = tmp_path / "repo" / ".ragbit"
    link.parent.mkdir()
    link.symlink_to(foreign)
    for root in (foreign, link):
        with pytest.raises(IndexDirForeignError, match="is not a ragbit index"):
            with IndexStore(root).write_generation({"text": "x"}) as staging:
                (staging / "payload.txt").write_text("x")
    assert _snapshot(foreign) == before
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(IndexDirForeignError, match="is a file"):
        with IndexStore(tmp_path / "a-file").lock():
            pass


@pytest.mark.parametrize("leftover", [[], ["lock"], ["lock", ".staging-abc"]])
def test_an_empty_directory_or_an_index_never_committed_is_written(tmp_path, leftover):
    """An empty directory (a `.ragbit` link to a new disk) is claimed; so is what a crash before the first commit
    left (the lock, a staging directory); a committed index stays writable (its CURRENT, its .gitignore)."""
    root = tmp_path / "idx"
    root.mkdir()
    for name in leftover:
        (root / name).mkdir() if name.startswith(".staging") else (root / name).touch()
    store = IndexStore(root)
    assert _commit(store, "one").name.startswith("gen-")
    assert _commit(IndexStore(root), "two").name.startswith("gen-")        # its own files do not count as foreign
    (root / "CURRENT").unlink()                                          # a .gitignore written by ragbit: still ours
    assert _commit(IndexStore(root), "three").name.startswith("gen-")
