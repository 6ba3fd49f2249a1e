"""Shared pytest fixtures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCE_DIR = Path(__file__).parent / "fixtures" / "reference"


def read_jsonl(name: str) -> list[dict]:
    with open(REFERENCE_DIR / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _kernel_path_fixture(*ops: str, leave_out: tuple[str, ...] = ()):
    """A fixture running its test once per path the dispatcher implements for any of `ops`, with RAGBIT_KERNEL
    set to it (so each operation runs its best path up to that one); a path this CPU cannot run is skipped,
    naming the missing features (or the OS's refusal: AMX needs a per-process grant). `leave_out`: paths that do
    not run what the test covers (or run another path's kernels for it)."""
    from generator.kernels import dispatch

    @pytest.fixture(params=[p for p in dispatch.PATHS if any(p in dispatch.IMPLEMENTED[op] for op in ops)
                            and p not in leave_out])
    def fixture(request, monkeypatch):
        path = request.param
        why = dispatch.missing(path)
        if why:
            pytest.skip(f"{why}: cannot run the {path} path")
        monkeypatch.setenv(dispatch.ENV, path)
        return path

    return fixture


# every path of the integer mode ("int11"): table matvec (q1_0_simd.py), bf16 tile matmul (q1_0_amx.py) and int8
# matmul (q1_0_vnni.py)
int11_path = _kernel_path_fixture("q1_decode_int11", "q1_prefill_int11")
# every path of decode attention: LLVM vector kernels (kernels/attention.py) and the portable loops (layers.py)
attention_path = _kernel_path_fixture("attention_decode")
# the same over F16 / float32 caches only: avx512vnni runs avx512bw's kernels there (its own q.k is for q8 / q4)
float_attention_path = _kernel_path_fixture("attention_decode", leave_out=("avx512vnni",))
# the paths whose decode step runs on the decode pool (kernels/pool.py): the vector kernels, not the portable loops
pool_attention_path = _kernel_path_fixture("attention_decode", leave_out=("portable",))
# every path of prefill attention: AMX split-bf16 tiles (kernels/attention_amx.py) and float32 sgemm (layers.py)
prefill_attention_path = _kernel_path_fixture("attention_prefill")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def tied_metadata() -> dict:
    """GGUF metadata of the tiny tied reference model (real Qwen3 tokenizer, 151,936 entries)."""
    from generator.gguf_file import GGUFFile

    return GGUFFile(REFERENCE_DIR / "tiny-tied-q1_0.gguf").metadata


@pytest.fixture(scope="session")
def bonsai_tokenizer(tied_metadata):
    from generator.tokenizer import BonsaiTokenizer

    return BonsaiTokenizer.from_metadata(tied_metadata)


@pytest.fixture(autouse=True)
def _no_background_search_server(request, monkeypatch):
    """CLI searches in tests must not leave detached search servers behind; tests/test_search_server.py
    opts back in with @pytest.mark.search_server and cleans up after itself."""
    if request.node.get_closest_marker("search_server") is None:
        import ragbit.search.client
        monkeypatch.setattr(ragbit.search.client, "spawn_server", lambda cfg: None)


@pytest.fixture(autouse=True)
def _sigint_reaches_children():
    """Every test starts with SIGINT handled by Python at the OS level. Why: a library loaded in-process by an
    earlier test can set SIGINT to SIG_IGN behind Python's back (Python's own table still says
    default_int_handler), and an ignored SIGINT is inherited by every `ragbit` the tests spawn, so their Ctrl-C
    tests saw exit code 0. Re-installing the handler resets the OS-level disposition."""
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True, scope="module")
def _collect_unreachable_indexes():
    """Each test module ends by collecting garbage. Why: a loaded chunk table memory-maps its segment files, and
    Python's mmap holds a descriptor of each file until the map is freed; searchers and pipelines that sit in
    reference cycles free theirs only when the cycle collector runs. The fault modules open hundreds of indexes,
    and without this about 1,400 descriptors were open when the pexpect tests started, past select()'s limit
    of 1024 ("filedescriptor out of range in select()")."""
    yield
    import gc
    gc.collect()
