"""FAISS dense index: exactness of flat, recall of approximate kinds, persistence."""
from pathlib import Path

import numpy as np
import pytest

from indexes.dense import DenseIndex, DenseIndexError, LayeredDense


def _unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def _uniform(rng, n, dim):
    return _unit(rng.standard_normal((n, dim)))


def _clustered(rng, n, dim, centers):
    """Gaussian mixture on the sphere: closer to real embeddings than uniform noise, where IVF is hopeless."""
    return _unit(centers[rng.integers(0, len(centers), n)] + 0.5 * rng.standard_normal((n, dim)))


def _recall_at_10(index, xb, xq):
    truth = np.argsort(-(xq @ xb.T), axis=1)[:, :10]
    found = [len({d for d, _ in index.search(q, 10)} & set(t)) for q, t in zip(xq, truth)]
    return sum(found) / truth.size


def test_flat_matches_brute_force():
    rng = np.random.default_rng(1)
    xb, xq = _uniform(rng, 2000, 48), _uniform(rng, 20, 48)
    index = DenseIndex.build(xb, kind="flat")
    assert (index.kind, index.dim, len(index)) == ("flat", 48, 2000)
    sims = xq @ xb.T
    for q, row in zip(xq, sims):
        hits = index.search(q, 15)
        expected = np.argsort(-row)[:15]
        assert [d for d, _ in hits] == expected.tolist()
        np.testing.assert_allclose([s for _, s in hits], row[expected], atol=1e-5)


def test_auto_picks_flat_for_small_corpora():
    rng = np.random.default_rng(2)
    assert DenseIndex.build(_uniform(rng, 50, 8)).kind == "flat"


def test_hnsw_recall_on_uniform_random_data():
    rng = np.random.default_rng(3)
    xb, xq = _uniform(rng, 3000, 32), _uniform(rng, 50, 32)
    index = DenseIndex.build(xb, kind="hnsw")
    assert index.kind == "hnsw"
    assert _recall_at_10(index, xb, xq) >= 0.9


def test_ivf_recall_on_clustered_random_data():
    rng = np.random.default_rng(4)
    centers = rng.standard_normal((40, 32))
    xb, xq = _clustered(rng, 3000, 32, centers), _clustered(rng, 50, 32, centers)
    index = DenseIndex.build(xb, kind="ivf")
    assert index.kind == "ivf"
    assert _recall_at_10(index, xb, xq) >= 0.9


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(kind, tmp_path):
    rng = np.random.default_rng(5)
    xb, xq = _uniform(rng, 500, 16), _uniform(rng, 5, 16)
    index = DenseIndex.build(xb, kind=kind)
    index.save(tmp_path / "dense.faiss")
    loaded = DenseIndex.load(tmp_path / "dense.faiss")
    assert (loaded.kind, loaded.dim, len(loaded)) == (kind, 16, 500)
    for q in xq:
        assert loaded.search(q, 7) == index.search(q, 7)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_memory_mapped_load_searches_alike_from_the_file(kind, tmp_path):
    """mmap=True (what the searcher uses): the same answers, with the vectors mapped from the file, not read."""
    rng = np.random.default_rng(7)
    xb, xq = _uniform(rng, 2000, 64), _uniform(rng, 5, 64)
    index = DenseIndex.build(xb, kind=kind)
    path = tmp_path / f"{kind}.faiss"
    index.save(path)
    mapped = DenseIndex.load(path, mmap=True)
    assert str(path) in Path("/proc/self/maps").read_text()
    for q in xq:
        assert mapped.search(q, 7) == index.search(q, 7)


def test_empty_index_and_k_larger_than_corpus(tmp_path):
    empty = DenseIndex.build(np.zeros((0, 8), dtype=np.float32), kind="ivf")
    assert len(empty) == 0 and empty.search(np.ones(8, dtype=np.float32), 5) == []
    empty.save(tmp_path / "e.faiss")
    assert DenseIndex.load(tmp_path / "e.faiss").search(np.ones(8), 5) == []
    rng = np.random.default_rng(6)
    xb = _uniform(rng, 3, 8)
    assert sorted(d for d, _ in DenseIndex.build(xb).search(xb[0], 50)) == [0, 1, 2]


def test_bad_input_raises_domain_error(tmp_path):
    with pytest.raises(DenseIndexError):
        DenseIndex.build(np.ones(8), kind="flat")
    with pytest.raises(DenseIndexError):
        DenseIndex.build(np.ones((2, 8)), kind="annoy")
    index = DenseIndex.build(np.ones((2, 8)), kind="flat")
    with pytest.raises(DenseIndexError, match="dimension"):
        index.search(np.ones(4), 1)
    (tmp_path / "junk.faiss").write_bytes(b"not an index")
    with pytest.raises(DenseIndexError):
        DenseIndex.load(tmp_path / "junk.faiss")
    with pytest.raises(DenseIndexError):
        DenseIndex.load(tmp_path / "missing.faiss")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_layered_index_searches_base_plus_delta_minus_removed(kind):
    """LayeredDense = base ids and delta rows (ids first_id + j), never a removed id; over a flat base it is
    exact: the same top k as brute force over the live vectors."""
    rng = np.random.default_rng(8)
    x = _uniform(rng, 3000, 16)
    live = np.ones(3000, dtype=bool)
    live[rng.choice(2500, 200, replace=False)] = False                       # removed from the base
    live[2600:2650] = False                                                  # removed from the delta
    layered = LayeredDense(DenseIndex.build(x[:2500], kind=kind), x[2500:], 2500, live)
    assert len(layered) == int(live.sum())
    for q in _uniform(rng, 20, 16):
        got = layered.search(q, 10)
        assert len(got) == 10 and all(live[i] for i, _ in got)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        if kind == "flat":
            exact = np.flatnonzero(live)[np.argsort(-(x[live] @ q), kind="stable")[:10]]
            assert [i for i, _ in got] == exact.tolist()
    with pytest.raises(DenseIndexError):
        LayeredDense(DenseIndex.build(x[:2500]), x[2500:], 2500, live[:10])


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_a_build_in_batches_answers_as_a_build_of_all_vectors(kind):
    """build_in_batches reads `rows(positions)` a batch at a time (never the whole matrix) and gives the index
    and the recall figure that build + recall_at give on the whole matrix (IVF trains on the same rows here:
    the corpus is under FAISS' sample size)."""
    from indexes.dense import DenseIndex
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((3000, 16)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    asked = []

    def rows(pos):
        asked.append(len(pos))
        return xb[pos]
    batched, recall = DenseIndex.build_in_batches(rows, len(xb), 16, kind=kind, batch=700)
    whole = DenseIndex.build(xb, kind=kind)
    assert max(asked) <= 700 or (kind == "ivf" and max(asked[1:]) <= 700)      # IVF's training sample first
    queries = xb[:40] + 0.05 * rng.standard_normal((40, 16)).astype(np.float32)
    if kind != "hnsw":                                   # HNSW's graph depends on insertion batches
        assert [batched.search(q, 5) for q in queries] == [whole.search(q, 5) for q in queries]
    assert len(batched) == len(whole) == 3000
    assert recall == pytest.approx(whole.recall_at(xb, k=10), abs=0.05 if kind == "hnsw" else 1e-9)
