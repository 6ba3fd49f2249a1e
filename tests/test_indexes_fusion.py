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


def test_a_tie_goes_to_the_earlier_ranking_not_to_the_lower_position():
    # issue #21 item 13: the exact identifier match (BM25 1st, dense 50th) against a look-alike (dense 1st,
    # BM25 50th): equal fused scores. Positions chosen so the look-alike has the lower position.
    exact, lookalike = 2999, 7
    filler = [d for d in range(100, 200)]
    lexical = [exact] + filler[:48] + [lookalike]
    dense = [lookalike] + filler[48:96] + [exact]
    fused = reciprocal_rank_fusion([lexical, dense], k=60)
    assert fused[0][1] == fused[1][1]
    assert [d for d, _ in fused[:2]] == [exact, lookalike]
    # and the order of the lists is what decides, not the ids
    assert [d for d, _ in reciprocal_rank_fusion([dense, lexical], k=60)[:2]] == [lookalike, exact]


def test_scores_equal_but_for_the_last_bit_are_a_tie():
    # doc 1 at ranks (3, 6, 2), doc 2 at ranks (2, 3, 6): both 1/2 + 1/3 + 1/6, summed in another order
    # (1.0 against 0.9999999999999999); the tie goes to doc 2, better in the first list
    lists = [[10, 2, 1, 11, 12, 13], [14, 15, 2, 16, 17, 1], [18, 1, 19, 20, 21, 2]]
    fused = dict(reciprocal_rank_fusion(lists, k=0))
    assert fused[1] != fused[2] and fused[1] == pytest.approx(fused[2])
    order = [d for d, _ in reciprocal_rank_fusion(lists, k=0)]
    assert order.index(2) == order.index(1) - 1


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


def test_cap_per_key_with_a_tail_of_new_keys():
    hits = [(0, 0.9), (1, 0.8), (2, 0.7), (3, 0.6), (4, 0.5), (5, 0.4), (6, 0.3)]
    file_of = {0: "a.py", 1: "a.py", 2: "a.py", 3: "b.py", 4: "a.py", 5: "c.py", 6: "b.py"}
    # the first 2 kept by score, then only files not yet listed (b, c), then what was passed over, in order
    assert cap_per_key(hits, file_of.__getitem__, 0, new_keys_after=2) == [
        (0, 0.9), (1, 0.8), (3, 0.6), (5, 0.4), (2, 0.7), (4, 0.5), (6, 0.3)]
    # the cap still holds, in the head and in what follows the tail
    assert cap_per_key(hits, file_of.__getitem__, 2, new_keys_after=2) == [
        (0, 0.9), (1, 0.8), (3, 0.6), (5, 0.4), (6, 0.3)]
    assert cap_per_key(hits, file_of.__getitem__, 0, new_keys_after=None) == hits
    assert cap_per_key(hits, file_of.__getitem__, 0, new_keys_after=0) == [
        (0, 0.9), (3, 0.6), (5, 0.4), (1, 0.8), (2, 0.7), (4, 0.5), (6, 0.3)]   # one per file first
