"""OpenVINO batch shapes on ragbit's real chunks: each batch under every variant in turn (paired), CPU per chunk.

    python benchmarks/ov_shapes.py --chunk-package /tmp/ragbit-bench/src/django-5.1.15 --chunks 768 --reps 2 \
        --variants '{"dynamic": {}, "pad16": {"step": 16}, "pad16+4static": {"step": 16, "static_at": [208, 224, 240, 256]}, "static16": {"step": 16, "static_at": "all"}}'

WHY paired: on a shared 2-core machine whole-run A/B figures moved +-20% between identical runs; running every
variant on the same batch back to back puts them under the same load, so their ratio holds (two identical
variants agree within 0.1-1%). Each variant: batches of --batch texts sorted by token count (as the encoder cuts
them), the length rounded up to a multiple of `step`; lengths in `static_at` ("all": every length) run on a
static-shape copy of the model compiled for that (batch, length); one thread, bf16 where the CPU has it, extra
compile options in `config`. Prints CPU-ms per chunk (inference only: compiling is counted apart), the
share of the first variant's CPU, the tokens run beyond the chunks' own, and the cosine to the first variant.

    python benchmarks/ov_shapes.py --chunk-package /tmp/ragbit-bench/src/django-5.1.15 --chunks 2048 --encoders \
        --threads 2 [--anchor]

    python benchmarks/ov_shapes.py --chunk-package /tmp/ragbit-bench/src/django-5.1.15 --chunks 512 --profile \
        [--threads 2] [--static] [--model-file F.xml]

--profile: where one inference's time goes (OpenVINO's PERF_COUNT per op, bf16): --profile-batches batches of
--batch chunks spread over the chunks' token counts (sorted as the encoder cuts them, padded to 16 tokens; --static: each on a static-shape copy, as the encoder's most used
shapes run), each op's real time summed by kind (FullyConnected, the attention snippet, LayerNorm/GELU/Add,
reorders/converts, Split/Transpose) and by op type, and the CPU time over wall x threads (the idle share).
--model-file profiles another model file (e.g. a transformed copy saved with ov.save_model) on the same chunks.

--encoders compares ragbit's whole "openvino" encoder with the AMX shape rules (padding to 16, static copies)
and without them ("~dynamic" in bench_embed.py) the same way: the chunks sorted by tokens, in groups of --group,
each group encoded by both in turn (alternating who goes first), after one warm-up pass over every chunk (which
makes the static copies, as the first minutes of a large index do). --anchor adds sentence-transformers defaults
(fp32 torch, --threads threads) to the pairs, for a ratio that the load moves less than whole-run figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embed import ragbit_chunks  # noqa: E402
from ragbit.indexing.embedding_backends import BF16_FLAGS, cpu_flags  # noqa: E402
from ragbit.indexing.embeddings import resolve_model  # noqa: E402
from ragbit.indexing.onnx_export import default_cache_dir, ensure_export, valid_export  # noqa: E402


class Variant:
    def __init__(self, core, path: Path, spec: dict, base_config: dict, n: int, dim: int):
        self.step = int(spec.get("step", 1))
        self.static_at = spec.get("static_at", [])
        self.config = {**base_config, **spec.get("config", {})}
        self.core, self.path = core, path
        self.requests: dict = {}
        self.cpu = self.compile = 0.0
        self.tokens = 0
        self.out = np.zeros((n, dim), np.float32)

    def request(self, batch: int, length: int):
        static = self.static_at == "all" or length in self.static_at
        key = (batch, length) if static else None
        if key not in self.requests:
            import openvino as ov
            c = time.process_time()
            model = self.core.read_model(str(self.path))
            if key:
                model.reshape({p.get_any_name(): ov.PartialShape(list(key)) for p in model.inputs})
            self.requests[key] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self.compile += time.process_time() - c
        return self.requests[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk-package", required=True, help="a package name or a directory")
    ap.add_argument("--chunks", type=int, default=768)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--variants", default='{"dynamic": {}, "pad16": {"step": 16}}')
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--encoders", action="store_true", help="ragbit's encoder with and without the AMX shape rules")
    ap.add_argument("--threads", type=int, default=1, help="--encoders: threads (openvino streams) per encoder")
    ap.add_argument("--group", type=int, default=64, help="--encoders: chunks per paired group")
    ap.add_argument("--anchor", action="store_true", help="--encoders: sentence-transformers defaults too")
    ap.add_argument("--profile", action="store_true", help="PERF_COUNT shares by op kind (see the docstring)")
    ap.add_argument("--profile-batches", type=int, default=8)
    ap.add_argument("--static", action="store_true", help="--profile: static-shape copies")
    ap.add_argument("--model-file", help="--profile: this model file instead of ragbit's export")
    args = ap.parse_args()
    if args.encoders:
        return compare_encoders(args)
    import openvino as ov
    from tokenizers import Tokenizer

    source, model_id, _ = resolve_model(args.model)
    export = ensure_export(source, model_id, "openvino", default_cache_dir())
    texts = ragbit_chunks(args.chunk_package, args.chunks)
    tok = Tokenizer.from_file(str(export / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(int(valid_export(export)["max_seq_length"]))
    encs = tok.encode_batch(texts)
    lens = np.array([len(e.ids) for e in encs])
    order = np.argsort(-lens, kind="stable")
    core = ov.Core()
    base = {"INFERENCE_NUM_THREADS": args.threads if args.profile else 1, "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False,
            "INFERENCE_PRECISION_HINT": "bf16" if BF16_FLAGS & cpu_flags() else "f32"}

    def feeds(idx, length):
        return padded_feeds([encs[i].ids for i in idx], length)

    if args.profile:
        starts = np.linspace(0, len(order) - args.batch, args.profile_batches).astype(int) // args.batch * args.batch
        batches = [order[s:s + args.batch] for s in starts]       # spread over the chunks' token counts
        return profile(core, Path(args.model_file or export / "model.onnx"), base, args.static,
                       [feeds(idx, -(-int(lens[idx].max()) // 16) * 16) for idx in batches])
    variants = {name: Variant(core, export / "model.onnx", spec, base, len(texts), 384)
                for name, spec in json.loads(args.variants).items()}
    print(f"{len(texts)} chunks of {args.chunk_package}, tokens mean {lens.mean():.1f}, median {np.median(lens):.0f}; "
          f"one thread, {base['INFERENCE_PRECISION_HINT']}")

    for rep in range(args.reps):
        for s in range(0, len(order), args.batch):
            idx = order[s:s + args.batch]
            longest = int(lens[idx].max())
            for v in variants.values():
                length = -(-longest // v.step) * v.step
                f, request = feeds(idx, length), v.request(len(idx), length)
                if rep == 0:
                    request.infer(f)               # first use of a shape: not timed
                c = time.process_time()
                request.infer(f)
                v.cpu += time.process_time() - c
                v.tokens += f["input_ids"].size
                hidden, m = request.get_output_tensor(0).data, f["attention_mask"][..., None]
                v.out[idx] = (hidden * m).sum(1) / m.sum(1)
    first = next(iter(variants.values()))
    for name, v in variants.items():
        cos = np.sum(v.out * first.out, axis=1) / np.linalg.norm(v.out, axis=1) / np.linalg.norm(first.out, axis=1)
        print(f"{name:16} {1000 * v.cpu / len(texts) / args.reps:6.2f} CPU-ms/chunk ({v.cpu / first.cpu:.3f} of the "
              f"first), tokens run +{v.tokens / args.reps / lens.sum() - 1:.1%}, {len(v.requests)} compiled "
              f"({v.compile:.1f} CPU-s), cosine to the first min {cos.min():.5f}", flush=True)


def padded_feeds(token_ids: list, length: int) -> dict[str, np.ndarray]:
    """Model inputs (batch, length) for these texts' token ids, padded with zeros (masked out)."""
    ids = np.zeros((len(token_ids), length), np.int64)
    mask = np.zeros_like(ids)
    for row, t in enumerate(token_ids):
        ids[row, :len(t)] = t
        mask[row, :len(t)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def op_kind(node_type: str, node_name: str) -> str:
    """The part of the encoder an executed op belongs to (names as OpenVINO's CPU plugin gives them)."""
    if node_type == "FullyConnected":
        return "FullyConnected (weight matmuls, fused bias/Add/GELU)"
    if node_type == "Subgraph" and node_name.startswith("MatMul_"):     # the MHA snippet: QK^T, softmax, PV
        return "attention (MHA snippet)"
    if node_type in ("Subgraph", "MVN", "Add", "MulAdd", "Multiply", "Eltwise"):
        return "LayerNorm / GELU / Add (f32)"
    if node_type in ("Reorder", "Convert"):
        return "reorders / converts"
    if node_type in ("Split", "Transpose", "Reshape"):
        return "Split / Transpose / Reshape"
    return "other"


def profile(core, path: Path, base: dict, static: bool, batches: list[dict], reps: int = 3) -> None:
    """See the module docstring (--profile)."""
    from collections import Counter, defaultdict

    import openvino as ov
    requests = {}
    for f in batches:
        shape = f["input_ids"].shape
        if (shape if static else None) not in requests:
            model = core.read_model(str(path))
            if static:
                model.reshape({p.get_any_name(): ov.PartialShape(list(shape)) for p in model.inputs})
            requests[shape if static else None] = core.compile_model(model, "CPU", {**base, "PERF_COUNT": True}) \
                .create_infer_request()
    names = {key: [p.get_any_name() for p in r.model_inputs] for key, r in requests.items()}
    kinds, types, execs = Counter(), Counter(), defaultdict(set)
    cpu = wall = 0.0
    for rep in range(reps + 1):
        for f in batches:
            key = f["input_ids"].shape if static else None
            request = requests[key]
            inputs = {n: f[n] for n in names[key]}
            c, w = time.process_time(), time.perf_counter()
            request.infer(inputs)
            if rep == 0:                       # first use of each shape: not counted
                continue
            cpu += time.process_time() - c
            wall += time.perf_counter() - w
            for p in request.profiling_info:
                if p.status == p.Status.EXECUTED:
                    t = p.real_time.total_seconds()
                    kinds[op_kind(p.node_type, p.node_name)] += t
                    types[p.node_type] += t
                    execs[p.node_type].add(p.exec_type)
    n = reps * len(batches)
    tokens = sum(f["input_ids"].size for f in batches)
    total = sum(kinds.values())
    threads = base["INFERENCE_NUM_THREADS"]
    print(f"{path.name}, {'static' if static else 'dynamic'} shapes, {threads} thread(s), "
          f"{base['INFERENCE_PRECISION_HINT']}: {len(batches)} batches of {tokens // len(batches)} tokens on average; per batch "
          f"{1000 * cpu / n:.2f} CPU-ms, {1000 * wall / n:.2f} ms wall ({cpu / wall / threads:.1%} of wall x threads "
          f"busy), ops' summed real time {total / wall:.1%} of wall")
    for kind, t in kinds.most_common():
        print(f"  {kind:55} {1000 * t / n:8.2f} ms {t / total:6.1%}")
    for name, t in types.most_common(10):
        print(f"    {name:18} {1000 * t / n:8.2f} ms {t / total:6.1%}  {', '.join(sorted(execs[name]))}")


def compare_encoders(args) -> None:
    """See the module docstring (--encoders)."""
    from ragbit.indexing.sentence_encoders import load_sentence_model
    source, model_id, _ = resolve_model(args.model)
    texts = ragbit_chunks(args.chunk_package, args.chunks)
    plain = load_sentence_model(source, "openvino", model_id=model_id, threads=args.threads)
    plain.token_step, plain.max_static = 1, 0
    models = {"openvino~dynamic": plain,
              "openvino": load_sentence_model(source, "openvino", model_id=model_id, threads=args.threads)}
    if args.anchor:
        import torch
        from sentence_transformers import SentenceTransformer
        torch.set_num_threads(args.threads)
        models = {"anchor": SentenceTransformer(source, device="cpu"), **models}
    for name, m in models.items():
        c = time.process_time()
        m.encode(texts, normalize_embeddings=True)
        print(f"warm-up {name}: {1000 * (time.process_time() - c) / len(texts):.2f} CPU-ms/chunk", flush=True)
    print(f"static copies: {sorted(models['openvino'].static)}")
    lens = np.array([len(e.ids) for e in plain._tokenizer.encode_batch(texts)])
    order = np.argsort(-lens, kind="stable")
    cpu = dict.fromkeys(models, 0.0)
    wall = dict.fromkeys(models, 0.0)
    names = list(models)
    for g, s in enumerate(range(0, len(texts), args.group)):
        group = [texts[i] for i in order[s:s + args.group]]
        vecs = {}
        for name in names[g % len(names):] + names[:g % len(names)]:      # who goes first rotates
            c, w = time.process_time(), time.perf_counter()
            vecs[name] = np.asarray(models[name].encode(group, normalize_embeddings=True), dtype=np.float32)
            cpu[name] += time.process_time() - c
            wall[name] += time.perf_counter() - w
        assert np.sum(vecs["openvino"] * vecs["openvino~dynamic"], axis=1).min() >= 0.9999
    first = names[0]
    for name in names:
        print(f"{name:16} {1000 * cpu[name] / len(texts):6.2f} CPU-ms/chunk ({cpu[first] / cpu[name]:.3f}x {first}), "
              f"wall {len(texts) / wall[name]:6.1f} chunks/s, {cpu[name] / wall[name]:.2f} cores", flush=True)


if __name__ == "__main__":
    main()
