"""`ragbit generate` through typer's CliRunner, on the tiny reference model (untied: quickest to load)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import REFERENCE_DIR, read_jsonl
from generator.kernels import dispatch
from ragbit.cli import app
from tests.test_json_schema import validate

MODEL = str(REFERENCE_DIR / "tiny-untied-yarn-q1_0.gguf")
RUN = next(r for r in read_jsonl("greedy.jsonl")
           if r["model"] == "tiny-untied-yarn-q1_0.gguf" and r["prompt_name"] == "raw_capital")
N_SURE = 7   # steps before llama.cpp's first top-2 margin < 0.1 (see test_generate.py)


def invoke(*args: str):
    # A typer app with a single command runs it directly; with several, the name selects it.
    prefix = ["generate"] if len(app.registered_commands) > 1 or app.registered_callback else []
    return CliRunner().invoke(app, [*prefix, *args])


def test_json_output_greedy_matches_llama_cpp():
    assert all(m >= 0.1 for m in RUN["top2_margin"][:N_SURE])
    r = invoke(RUN["prompt"], "--raw", "--model", MODEL, "--max-tokens", str(N_SURE), "--temperature", "0", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["prompt_token_ids"] == RUN["prompt_ids"]
    assert out["token_ids"] == RUN["generated_ids"][:N_SURE]
    assert out["finish_reason"] == "length"
    validate(out)                                            # docs/json.md's ragbit.generate/1
    assert set(out["timings"]) == {"load_s", "prompt_tokens_per_s", "gen_tokens_per_s", "ttft_s"}
    int11 = dispatch.choose("q1_decode_int11")            # ragbit's default decode kernel, on this CPU's path
    assert out["kernels"]["decode"] == (f"{int11} (int11)" if int11 != "portable" else "portable (float)")
    assert out["kv_cache"] == "f16"                          # ragbit's default cache ([generator] kv_cache)
    assert out["kernels"]["attention_decode"] == dispatch.choose("attention_decode")
    assert out["text"] and out["timings"]["load_s"] > 0


def test_streams_text_then_timing_line_on_stderr():
    r = invoke("Hello", "--model", MODEL, "--max-tokens", "3", "--temperature", "0.8", "--seed", "3",
               "--no-think", "--verbose")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() != "" and "tok/s" not in r.stdout
    assert "KV cache" in r.stderr
    timing = r.stderr.strip().splitlines()[-1]
    assert timing.startswith("load ") and "prompt" in timing and "generation 3 tokens" in timing


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/model.gguf"], "model file not found"),
    (["--model", "llama-70b"], "unknown model"),
    (["--model", MODEL, "--n-ctx", "4"], "does not fit n_ctx=4"),
    (["--model", MODEL, "--temperature", "-1"], "temperature"),
    (["--model", MODEL, "--top-p", "0"], "top_p"),
])
def test_bad_input_is_one_error_line(args, message):
    r = invoke("hello there, how are you", *args)
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    r = invoke("hi", "--model", str(bad))
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and str(bad) in r.stderr


def test_offline_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    r = invoke("hi", "--model", "bonsai-1.7b")
    assert r.exit_code == 1
    assert r.stderr == ("error: bonsai-1.7b is not in the local Hugging Face cache and the hub is offline "
                        "(HF_HUB_OFFLINE); pass a local file with --model /path/to/Bonsai-1.7B.gguf\n")
