"""VectorCache: lookups by content hash, model isolation, crash safety, compaction."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from indexes.vector_cache import VectorCache

ROOT = Path(__file__).resolve().parents[1]
DIM = 8


def _vector_for(key: str) -> np.ndarray:
    """A distinct, reproducible vector per key, so a row stored under the wrong key is detectable."""
    n = int(key[1:])
    return (np.arange(DIM, dtype=np.float32) + n * DIM) / 7.0


def _vectors(keys):
    return np.stack([_vector_for(k) for k in keys])


def test_put_get_and_reopen(tmp_path):
    cache = VectorCache(tmp_path, "model-a", DIM)
    assert len(cache) == 0 and "k1" not in cache
    cache.put(["k1", "k2"], _vectors(["k1", "k2"]))
    cache.put(["k2", "k3"], _vectors(["k2", "k3"]))             # k2 again: skipped, no growth
    again = VectorCache(tmp_path, "model-a", DIM)
    vectors, found = again.get(["k3", "nope", "k1"])
    assert found == [True, False, True]
    assert vectors.dtype == np.float32 and vectors.shape == (3, DIM)
    np.testing.assert_array_equal(vectors[0], _vector_for("k3"))
    np.testing.assert_array_equal(vectors[1], np.zeros(DIM))
    np.testing.assert_array_equal(vectors[2], _vector_for("k1"))
    assert len(again) == 3 and "k2" in again
    assert again.get([]) [0].shape == (0, DIM)
    assert again.has(["k3", "nope", "k1"]).tolist() == found and again.has([]).shape == (0,)


def test_other_model_or_dimension_sees_nothing(tmp_path):
    VectorCache(tmp_path, "model-a", DIM).put(["k1"], _vectors(["k1"]))
    assert VectorCache(tmp_path, "model-b", DIM).get(["k1"])[1] == [False]
    assert VectorCache(tmp_path, "model-a", DIM * 2).get(["k1"])[1] == [False]
    assert VectorCache(tmp_path, "model-a", DIM).get(["k1"])[1] == [True]


def test_put_rejects_mismatched_shapes(tmp_path):
    cache = VectorCache(tmp_path, "m", DIM)
    with pytest.raises(ValueError):
        cache.put(["k1", "k2"], _vectors(["k1"]))
    with pytest.raises(ValueError):
        cache.put(["k1"], np.ones((1, DIM + 1)))
    assert len(VectorCache(tmp_path, "m", DIM)) == 0


def test_compact_keeps_only_requested_keys(tmp_path):
    cache = VectorCache(tmp_path, "m", DIM)
    for start in range(0, 30, 10):
        keys = [f"k{i}" for i in range(start, start + 10)]
        cache.put(keys, _vectors(keys))
    keep = {f"k{i}" for i in range(5, 25)} | {"k999"}          # k999 was never cached
    cache.compact(keep)
    assert len([p for p in cache.directory.iterdir() if p.suffix == ".npy"]) == 1
    reopened = VectorCache(tmp_path, "m", DIM)
    assert len(reopened) == 20
    keys = sorted(keep - {"k999"})
    vectors, found = reopened.get(keys + ["k0", "k29"])
    assert found == [True] * 20 + [False, False]
    np.testing.assert_array_equal(vectors[:20], _vectors(keys))
    reopened.compact(set())
    assert len(VectorCache(tmp_path, "m", DIM)) == 0


def test_damaged_shards_are_ignored_not_misread(tmp_path):
    cache = VectorCache(tmp_path, "m", DIM)
    cache.put(["k1", "k2"], _vectors(["k1", "k2"]))
    cache.put(["k3"], _vectors(["k3"]))
    shards = sorted(p for p in cache.directory.iterdir() if p.suffix == ".npy")
    shards[0].write_bytes(shards[0].read_bytes()[:-DIM])          # truncated vectors
    (cache.directory / "123-orphan.npy").write_bytes(b"junk")     # vectors whose keys never landed
    vectors, found = VectorCache(tmp_path, "m", DIM).get(["k1", "k2", "k3"])
    assert found == [False, False, True]
    np.testing.assert_array_equal(vectors[2], _vector_for("k3"))


PUTTER = """
    import numpy as np
    from pathlib import Path
    from indexes.vector_cache import VectorCache
    cache = VectorCache(Path({root!r}), "m", {dim})
    print("started", flush=True)
    i = 0
    while True:
        keys = [f"k{{n}}" for n in range(i, i + 50)]
        rows = np.stack([(np.arange({dim}, dtype=np.float32) + n * {dim}) / 7.0 for n in range(i, i + 50)])
        cache.put(keys, rows)
        i += 50
"""


def test_killed_writer_never_yields_a_wrong_vector(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    total = 0
    for delay in (0.1, 0.23, 0.37):
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PUTTER.format(root=str(tmp_path), dim=DIM))],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert child.stdout.readline().strip() == "started", child.stderr.read()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()
        cache = VectorCache(tmp_path, "m", DIM)
        # the writers store k0, k1, ... in order from k0 each time: every stored key is one of the first len()
        keys = [f"k{i}" for i in range(len(cache) + 50)]
        vectors, found = cache.get(keys)
        hits = [k for k, f in zip(keys, found) if f]
        assert len(hits) == len(cache)
        np.testing.assert_array_equal(vectors[np.array(found)], _vectors(hits))
        total = max(total, len(hits))
    assert total > 0                                            # the children did store vectors
    cache = VectorCache(tmp_path, "m", DIM)
    cache.put(["k99999"], _vectors(["k99999"]))                 # the next run can write
    cache.compact({f"k{i}" for i in range(100)} | {"k99999"})   # and clean the killed runs' debris
    assert not any(p.name.endswith(".tmp") for p in cache.directory.iterdir())
    assert VectorCache(tmp_path, "m", DIM).get(["k99999"])[1] == [True]


def test_a_few_keys_are_found_without_loading_every_shard(tmp_path):
    """A one-file re-index asks for a few keys: only the shards holding them are read, the answers are the
    full key map's, keys put afterwards are found, and many lookups fall back to loading everything."""
    from indexes import vector_cache
    writer = VectorCache(tmp_path, "model-a", DIM)
    for s in range(6):
        keys = [f"k{s * 10 + i}" for i in range(10)]
        writer.put(keys, _vectors(keys))
    VectorCache(tmp_path, "model-b", DIM).put(["k999"], _vectors(["k999"]))    # another model's space
    cache = VectorCache(tmp_path, "model-a", DIM)
    asked = ["k3", "k42", "k999", "nope"]
    assert cache.has(asked).tolist() == [True, True, False, False]
    got, found = cache.get(["k42", "k3", "nope"])
    assert found == [True, True, False] and np.array_equal(got[:2], _vectors(["k42", "k3"]))
    assert not cache._complete and len(cache._shards) == 2                      # two shards read of six
    cache.put(["new1", "k3"], np.ones((2, DIM), np.float32))
    assert cache.has(["new1"]).tolist() == [True] and len(os.listdir(cache.directory)) == 2 * 7 + 1
    assert np.array_equal(VectorCache(tmp_path, "model-a", DIM).get(["k3"])[0], _vectors(["k3"]))  # not replaced
    for _ in range(vector_cache.MAX_SCANS + 1):
        cache.has(["absent-again", f"k{_}"])
    assert cache._complete and len(cache) == 61
