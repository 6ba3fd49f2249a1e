"""`python -m tests.faults.driver ARGS`: the real `ragbit` CLI in a process of its own, with the fake embedder
(hashed bag of words: deterministic, no model to load) so crash tests spend their time in ragbit, not in
MiniLM. `RAGBIT_FAULTS_EMBED_DELAY` (seconds per embed call) widens the embedding phase so kills land in it;
`RAGBIT_FAULTS_EMBED_CALLS` names a file that gets a line per finished embed call."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import ragbit.indexing.embeddings
from tests.retrieval_fixtures import FakeEmbedder

_delay = float(os.environ.get("RAGBIT_FAULTS_EMBED_DELAY", "0"))
_calls = os.environ.get("RAGBIT_FAULTS_EMBED_CALLS")       # a line per finished embed call, for tests to wait on
ragbit.indexing.embeddings.Embedder = lambda cfg=None: FakeEmbedder(delay_per_call=_delay,
                                                                    calls_file=Path(_calls) if _calls else None)

if __name__ == "__main__":
    from ragbit.cli import main
    main(sys.argv[1:], prog_name="ragbit")
