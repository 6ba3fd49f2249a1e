"""The run-time dispatcher (generator/kernels/dispatch.py): which path each operation runs for a given CPU and
RAGBIT_KERNEL setting. CPU features are passed in or patched, so these run on any host."""

from __future__ import annotations

import pytest

from generator.kernels import KernelFormatError, dispatch

ZEN1 = frozenset({"sse2", "ssse3", "avx", "avx2", "fma", "f16c"})
ZEN4 = ZEN1 | {"avx512f", "avx512bw", "avx512vl", "avx512vnni"}
SAPPHIRE_RAPIDS = ZEN4 | {"avxvnni", "avx512bf16", "amx-tile", "amx-int8", "amx-bf16"}
ALDER_LAKE = ZEN1 | {"avxvnni"}          # Intel client cores since 2021: AVX-VNNI, no AVX-512


@pytest.fixture
def cpu(monkeypatch):
    """Pretend the host has the given features."""
    def set_features(features, refused=None):
        monkeypatch.setattr(dispatch, "host_features", lambda: frozenset(features))
        monkeypatch.setattr(dispatch, "os_refuses", lambda path: refused if path == "amx" else None)
    monkeypatch.delenv(dispatch.ENV, raising=False)
    return set_features


def test_widest_supported_path_wins(cpu):
    cpu(SAPPHIRE_RAPIDS)
    assert dispatch.host_paths() == dispatch.PATHS
    assert dispatch.choose("q1_prefill_int11") == dispatch.choose("q2_prefill_int11") == "amx"
    assert dispatch.choose("q1_decode_int11") == "avx512bw"                  # no AMX decode: the widest below
    assert dispatch.choose("attention_prefill") == "amx"
    cpu(ZEN4)
    assert dispatch.host_paths() == ("avx512vnni", "avx512bw", "avx2", "ssse3", "portable")
    assert dispatch.choose("q1_prefill_int11") == "avx512vnni"
    assert dispatch.choose("q1_decode_int11") == "avx512bw"
    assert dispatch.choose("attention_prefill") == "portable"
    cpu(ALDER_LAKE)
    assert dispatch.host_paths() == ("avxvnni", "avx2", "ssse3", "portable")
    assert dispatch.choose("q1_prefill_int11") == dispatch.choose("q2_prefill_int11") == "avxvnni"
    assert dispatch.choose("q1_decode_int11") == dispatch.choose("attention_decode") == "avx2"
    cpu(ZEN1)
    assert dispatch.host_paths() == ("avx2", "ssse3", "portable")
    assert dispatch.choose("q1_decode_int11") == "avx2"
    assert dispatch.choose("q1_prefill_int11") == "portable"
    cpu({"sse2", "ssse3"})
    assert dispatch.choose("q1_decode_int11") == "ssse3"
    cpu(set())                                            # unknown CPU: nothing hand-written
    assert dispatch.host_paths() == ("portable",)
    assert dispatch.choose("q1_decode_int11") == "portable"
    assert dispatch.choose("q1_decode_float") == "portable"


def test_environment_caps_the_path(cpu, monkeypatch):
    cpu(SAPPHIRE_RAPIDS)
    for forced, want, prefill in [("amx", "avx512bw", "amx"), ("avx512vnni", "avx512bw", "avx512vnni"),
                                  ("avx512bw", "avx512bw", "avxvnni"), ("avxvnni", "avx2", "avxvnni"),
                                  ("avx2", "avx2", "portable"), ("ssse3", "ssse3", "portable"),
                                  ("portable", "portable", "portable")]:
        monkeypatch.setenv(dispatch.ENV, forced)
        assert dispatch.choose("q1_decode_int11") == want, forced
        assert dispatch.report()["q1_decode_int11"] == want
        assert dispatch.report()["q1_prefill_int11"] == prefill, forced


def test_amx_refused_by_the_os_falls_back_to_vnni(cpu, monkeypatch):
    """The CPU has AMX but the kernel does not grant the tile state (arch_prctl refused): the prefill runs on
    VNNI, and forcing AMX is one clear error naming the refusal."""
    cpu(SAPPHIRE_RAPIDS, refused="the OS refused AMX tile permission (test)")
    assert "amx" not in dispatch.host_paths()
    assert dispatch.choose("q1_prefill_int11") == "avx512vnni"
    assert dispatch.choose("attention_prefill") == "portable"          # prefill attention: float32 sgemm
    assert dispatch.missing("amx") == "the OS refused AMX tile permission (test)"
    assert dispatch.missing("amx", SAPPHIRE_RAPIDS) is None         # another machine's features: no OS check
    monkeypatch.setenv(dispatch.ENV, "amx")
    with pytest.raises(KernelFormatError, match="RAGBIT_KERNEL=amx: the OS refused AMX tile permission"):
        dispatch.choose("q1_prefill_int11")


def test_bad_or_unsupported_forced_path_is_a_clear_error(cpu, monkeypatch):
    cpu(ZEN1)
    monkeypatch.setenv(dispatch.ENV, "avx512bw")
    with pytest.raises(KernelFormatError, match="lacks avx512f, avx512bw"):
        dispatch.choose("q1_decode_int11")
    monkeypatch.setenv(dispatch.ENV, "neon")
    with pytest.raises(KernelFormatError, match="not a kernel path"):
        dispatch.choose("q1_decode_int11")
    with pytest.raises(KernelFormatError, match="unknown kernel operation"):
        dispatch.choose("q9_decode")


def test_the_host_answer_is_consistent():
    """On the real host: every path listed is runnable, portable always is, and each choice is one of them."""
    paths = dispatch.host_paths()
    assert paths[-1] == "portable" and all(dispatch.supported(p) for p in paths)
    for op, path in dispatch.report().items():
        assert path in paths and (path in dispatch.IMPLEMENTED[op] or path == "portable")
