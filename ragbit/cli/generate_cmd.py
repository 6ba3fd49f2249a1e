"""`ragbit generate`: run a Bonsai model on one prompt, streaming the answer.

Mostly a way to try a model and measure its speed: text goes to stdout as it is produced, one timing
line to stderr at the end; `--json` prints one machine-readable object instead.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import guarded, load_config

LARGE_KV_CACHE_BYTES = 1 << 30   # announce KV caches of 1 GiB or more even without --verbose


@app.command("generate", epilog=examples('ragbit generate "Write a haiku about caches" --model ~/models/Bonsai-1.7B.gguf',
                                          'echo "2+2=" | ragbit generate - --raw --max-tokens 4 --model bonsai-1.7b'))
def generate(
    prompt: str = typer.Argument(..., help="The prompt ('-' reads it from stdin)."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="bonsai-1.7b|4b|8b, ternary-bonsai-1.7b|4b|8b, or a path to a .gguf file."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", "-n", help="Most tokens to generate."),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t", help="0 = greedy."),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    min_p: Optional[float] = typer.Option(None, "--min-p"),
    repeat_penalty: Optional[float] = typer.Option(None, "--repeat-penalty"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    chat: bool = typer.Option(True, "--chat/--raw",
                              help="Wrap the prompt in the model's chat template, or send it as is."),
    think: bool = typer.Option(False, "--think/--no-think", help="Let the model reason in a <think> block first."),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="Stop before this text (repeatable)."),
    n_ctx: Optional[int] = typer.Option(None, "--n-ctx", help="Context size (KV cache positions)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="0 = all cores."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of streaming text."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Report model file and KV cache size."),
) -> None:
    """Generate text from a prompt with a 1-bit Bonsai model."""
    def go():
        # Heavy imports (numba kernels) only when the command runs.
        from generator.hub import resolve_model
        from generator.model import kv_cache_bytes_for_file
        from generator.sampling import SamplingParams
        from ragbit.pipeline.model_loader import engine_settings, load_generator, sampling_settings

        cfg = load_config(None, {"generator": {
            "model": model, "max_tokens": max_tokens, "temperature": temperature, "top_k": top_k,
            "top_p": top_p, "min_p": min_p, "repeat_penalty": repeat_penalty, "seed": seed,
            "n_ctx": n_ctx, "threads": threads}})
        sampling = SamplingParams(**sampling_settings(cfg))
        text = sys.stdin.read() if prompt == "-" else prompt

        path = resolve_model(cfg.generator.model, on_download=lambda msg: typer.echo(msg, err=True))
        kv_bytes = kv_cache_bytes_for_file(path, cfg.generator.n_ctx, cfg.generator.kv_cache)
        if verbose or kv_bytes >= LARGE_KV_CACHE_BYTES:
            typer.echo(f"model {path}; KV cache {kv_bytes / 2**20:.0f} MiB for n_ctx={cfg.generator.n_ctx}", err=True)
        gen = load_generator(str(path), **engine_settings(cfg))

        def show(piece: str) -> None:
            sys.stdout.write(piece)
            sys.stdout.flush()

        return gen.generate(text, chat=chat, max_tokens=cfg.generator.max_tokens, sampling=sampling,
                            stop=stop or None, thinking=think, on_piece=None if json_out else show)

    result = guarded(go)
    t = result.timings
    if json_out:
        from ragbit.json_forms import generate_document

        typer.echo(json.dumps(generate_document(result), ensure_ascii=False))
    else:
        if not result.text.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()
        typer.echo(f"load {t.load_s:.2f} s | prompt {len(result.prompt_token_ids)} tokens, "
                   f"{t.prompt_tokens_per_s:.1f} tok/s | generation {len(result.token_ids)} tokens, "
                   f"{t.gen_tokens_per_s:.1f} tok/s | finish: {result.finish_reason}", err=True)
