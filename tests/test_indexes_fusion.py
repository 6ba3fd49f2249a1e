"""Reciprocal rank fusion and the per-key cap."""
import pytest

from indexes.fusion import cap_per_key, reciprocal_rank_fusion


def test_rrf_scores_follow_the_formula():
    fused = dict(reciprocal_rank_fusion([[7, 3, 5], [3, 9]], k=60))
    assert fused[3] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[7] == pytest.approx(1 / 61)
    assert fused[9] == pytest.approx(1 / 62)
    assert fused[5] == pytest.approx(1 / 63)


def test_rrf_order_best_first_and_deterministic_ties():
    fused = reciprocal_rank_fusion([[1, 2], [2, 1], [4]], k=10)
    assert [d for d, _ in fused][0:2] == [1, 2]        # 1 and 2 tie on score; 1 wins by id
    assert fused[0][1] == pytest.approx(1 / 11 + 1 / 12)
    assert [d for d, _ in fused] == [1, 2, 4]
    # a tie between documents seen at different best ranks goes to the better rank
    tie = reciprocal_rank_fusion([[9], [8, 3]], k=0, weights=[1.0, 2.0])
    assert [d for d, _ in tie] == [8, 9, 3]            # 9 (1/1, best rank 1) ties 3 (2/2, best rank 2)
    assert tie[1][1] == tie[2][1]


def test_rrf_weights_and_duplicates():
    fused = dict(reciprocal_rank_fusion([[1, 2], [2, 2, 3]], k=1, weights=[2.0, 0.5]))
    assert fused[1] == pytest.approx(2 / 2)
    assert fused[2] == pytest.approx(2 / 3 + 0.5 / 2)   # the repeat of 2 in the second list is ignored
    assert fused[3] == pytest.approx(0.5 / 4)           # rank counts positions, duplicates included


def test_rrf_edge_cases():
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1]], weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1]], k=-1)


def test_cap_per_key_keeps_order_and_caps_each_key():
    hits = [(0, 0.9), (1, 0.8), (2, 0.7), (3, 0.6), (4, 0.5)]
    file_of = {0: "a.py", 1: "a.py", 2: "b.py", 3: "a.py", 4: "b.py"}
    assert cap_per_key(hits, file_of.__getitem__, 1) == [(0, 0.9), (2, 0.7)]
    assert cap_per_key(hits, file_of.__getitem__, 2) == [(0, 0.9), (1, 0.8), (2, 0.7), (4, 0.5)]
    assert cap_per_key(hits, file_of.__getitem__, 0) == hits
    assert cap_per_key(hits, file_of.__getitem__, -3) == hits
