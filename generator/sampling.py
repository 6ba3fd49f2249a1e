"""Choosing the next token from a logit vector: greedy, or filtered and seeded random sampling.

WHY this shape: a 151,936-entry logit vector is sampled once per generated token, so the work must
stay far below the model's own cost. Only top-k needs the whole vector (`np.argpartition`, linear
time); everything after it (top-p, min-p, temperature, the draw) works on the k survivors.

Order of the filters, as llama.cpp's default sampler chain: repetition penalty -> top-k -> top-p ->
min-p -> temperature -> draw. Top-p and min-p therefore see the untempered distribution.
Greedy (temperature 0) takes the first maximum, as llama.cpp's argmax does; the repetition penalty,
if set, applies before it too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from generator.errors import GeneratorError


class SamplingError(GeneratorError, ValueError):
    """A sampling parameter out of range."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0     # 0 = greedy
    top_k: int = 40              # keep the k most likely tokens; <= 0 keeps all
    top_p: float = 0.95          # keep the smallest set with this much probability; 1 = off
    min_p: float = 0.05          # drop tokens below min_p * p(most likely); 0 = off
    repeat_penalty: float = 1.0  # >1 discourages tokens seen in the last repeat_last_n; 1 = off
    repeat_last_n: int = 64      # how far back the penalty looks; 0 = off, -1 = whole history
    seed: int = 0                # same seed + same logits -> same tokens; < 0 = fresh entropy

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise SamplingError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise SamplingError(f"min_p must be in [0, 1], got {self.min_p}")
        if not self.repeat_penalty > 0:
            raise SamplingError(f"repeat_penalty must be > 0, got {self.repeat_penalty}")
        if self.repeat_last_n < -1:
            raise SamplingError(f"repeat_last_n must be >= -1, got {self.repeat_last_n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    """Stateful only through its random generator: one Sampler per generation gives reproducible runs."""

    def __init__(self, params: SamplingParams | None = None):
        self.params = params or SamplingParams()
        seed = self.params.seed
        self._rng = np.random.default_rng(None if seed < 0 else seed)

    # -----------------------------------------------------------------------------------------------
    def penalized(self, logits: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """Logits with the repetition penalty applied to recently seen tokens (CTRL-style: positive
        logits divided, negative ones multiplied). Returns `logits` itself when nothing changes."""
        p = self.params
        if p.repeat_penalty == 1.0 or p.repeat_last_n == 0 or not len(history):
            return logits
        recent = history if p.repeat_last_n < 0 else history[-p.repeat_last_n:]
        ids = np.unique(np.asarray(recent, dtype=np.int64))
        out = logits.copy()                                   # never touch the model's buffer
        vals = out[ids]
        out[ids] = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)
        return out

    def distribution(self, logits: np.ndarray, history: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, probabilities) left after penalty, top-k, top-p, min-p and temperature; ids are
        sorted by decreasing probability (ties: lower id first). Greedy gives one id with p = 1."""
        p = self.params
        x = self.penalized(np.asarray(logits), history)
        if p.greedy:
            return np.array([int(np.argmax(x))]), np.ones(1)
        n = x.shape[0]
        # top-k: linear-time partition, then sort only the k survivors
        if 0 < p.top_k < n:
            ids = np.argpartition(x, n - p.top_k)[n - p.top_k:]
        else:
            ids = np.arange(n)
        vals = x[ids].astype(np.float64)
        order = np.lexsort((ids, -vals))
        ids, vals = ids[order], vals[order]
        # top-p on the untempered distribution: smallest prefix reaching top_p
        probs = np.exp(vals - vals[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            ids, vals, probs = ids[:keep], vals[:keep], probs[:keep]
        # min-p relative to the most likely token
        if p.min_p > 0.0:
            keep = int(np.count_nonzero(probs >= p.min_p * probs[0]))
            ids, vals = ids[:max(keep, 1)], vals[:max(keep, 1)]
        # temperature, then the final distribution
        probs = np.exp((vals - vals[0]) / p.temperature)
        return ids, probs / probs.sum()

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """Next token id. `history` = the tokens so far (prompt + generated), for the penalty."""
        ids, probs = self.distribution(logits, history)
        if ids.size == 1:
            return int(ids[0])
        r = self._rng.random()
        return int(ids[min(int(np.searchsorted(np.cumsum(probs), r, side="right")), ids.size - 1)])
