"""Sampler: greedy semantics, each filter's effect, seeded reproducibility, penalty."""
from __future__ import annotations

import numpy as np
import pytest

from generator.sampling import Sampler, SamplingError, SamplingParams

N_VOCAB = 151936


def random_logits(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, N_VOCAB).astype(np.float32)


def test_greedy_takes_first_maximum():
    logits = np.zeros(10, np.float32)
    logits[[3, 7]] = 2.0
    assert Sampler(SamplingParams(temperature=0)).sample(logits) == 3
    big = random_logits()
    assert Sampler().sample(big) == int(np.argmax(big))


def test_top_k_one_is_greedy_even_when_hot():
    logits = random_logits(1)
    s = Sampler(SamplingParams(temperature=5.0, top_k=1, top_p=1.0, min_p=0.0))
    assert {s.sample(logits) for _ in range(20)} == {int(np.argmax(logits))}


def test_filters_keep_exactly_what_they_should():
    # probabilities 0.5, 0.25, 0.125, 0.0625, ... (logits in steps of ln 2)
    logits = (-np.arange(12) * np.log(2.0)).astype(np.float32)[::-1].copy()   # id 11 most likely
    base = dict(temperature=1.0, seed=0)
    ids, p = Sampler(SamplingParams(**base, top_k=3, top_p=1.0, min_p=0.0)).distribution(logits)
    assert ids.tolist() == [11, 10, 9]
    np.testing.assert_allclose(p, [4 / 7, 2 / 7, 1 / 7], rtol=1e-6)
    # top-p 0.7: 0.5 is not enough, 0.5 + 0.25 >= 0.7 -> two tokens
    ids, _ = Sampler(SamplingParams(**base, top_k=0, top_p=0.7, min_p=0.0)).distribution(logits)
    assert ids.tolist() == [11, 10]
    # min-p 0.2: keeps p >= 0.1 -> 0.5, 0.25, 0.125
    ids, _ = Sampler(SamplingParams(**base, top_k=0, top_p=1.0, min_p=0.2)).distribution(logits)
    assert ids.tolist() == [11, 10, 9]
    # temperature 2 flattens: ratios become sqrt(2)
    _, p = Sampler(SamplingParams(temperature=2.0, top_k=2, top_p=1.0, min_p=0.0)).distribution(logits)
    np.testing.assert_allclose(p[0] / p[1], np.sqrt(2.0), rtol=1e-6)


def test_draws_follow_the_distribution():
    logits = np.array([0.0, np.log(3.0)], np.float32)   # p = 0.25, 0.75
    s = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=123))
    draws = np.array([s.sample(logits) for _ in range(4000)])
    # binomial sd = sqrt(.75*.25/4000) = 0.0068; 0.03 is > 4 sd
    assert abs(draws.mean() - 0.75) < 0.03


def test_seeded_runs_reproduce_and_seeds_differ():
    logits = random_logits(2)
    params = SamplingParams(temperature=1.5, top_k=200, top_p=1.0, min_p=0.0, seed=7)
    s1, s2 = Sampler(params), Sampler(params)
    seq1 = [s1.sample(logits) for _ in range(50)]
    seq2 = [s2.sample(logits) for _ in range(50)]
    assert seq1 == seq2
    s3 = Sampler(SamplingParams(temperature=1.5, top_k=200, top_p=1.0, min_p=0.0, seed=8))
    assert [s3.sample(logits) for _ in range(50)] != seq1
    assert len(set(seq1)) > 5   # really random, not stuck on the maximum


def test_repetition_penalty():
    logits = np.array([2.0, 1.9, -1.0, -1.05], np.float32)
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=1.2, repeat_last_n=2))
    assert s.sample(logits, history=[0]) == 1          # 2.0 / 1.2 < 1.9
    assert s.sample(logits, history=[0, 3, 3]) == 0    # token 0 fell out of the last 2
    pen = s.penalized(logits, [2])
    assert pen[2] == pytest.approx(-1.2) and logits[2] == -1.0   # negative logits are multiplied, input untouched
    assert Sampler(SamplingParams(repeat_penalty=1.0)).penalized(logits, [0]) is logits


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(min_p=-0.1),
                                 dict(repeat_penalty=0), dict(repeat_last_n=-2)])
def test_bad_parameters_are_rejected(bad):
    with pytest.raises(SamplingError):
        SamplingParams(**bad)
