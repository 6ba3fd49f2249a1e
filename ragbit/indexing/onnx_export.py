"""The ONNX export cache: a sentence-transformers model exported once (with torch) to ONNX, fused, and for int8
paths quantized, written atomically into `cache_dir` and keyed by the model's identity and the backend.

See ragbit/indexing/embedding_backends.py for the backends and why; ragbit/indexing/sentence_encoders.py runs the
exports.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ragbit.indexing.embedding_backends import BackendError, int8_options

EXPORT_FORMAT = 1                 # bump when the export recipe changes: old cache entries are ignored
MANIFEST = "ragbit_export.json"


# ====================================================================================== cache keys
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-80:] or "model"


def source_fingerprint(model_dir: str | Path | None, model_id: str) -> str:
    """Short hash of what identifies the weights: config files' bytes and the weight files' sizes."""
    h = hashlib.sha256(f"{model_id}|{EXPORT_FORMAT}".encode())
    if model_dir is not None and Path(model_dir).is_dir():
        d = Path(model_dir)
        for name in sorted(os.listdir(d)):
            p = d / name
            if not p.is_file():
                continue
            if name.endswith(".json"):
                h.update(name.encode() + p.read_bytes())
            elif name.endswith((".safetensors", ".bin", ".onnx")):
                h.update(f"{name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


def export_dir_for(cache_dir: str | Path, model_id: str, backend: str, model_dir: str | Path | None) -> Path:
    """<cache_dir>/<model slug>-<backend>-<fingerprint>: one directory per (model, export, weights); "openvino"
    runs the fp32 "onnx" export, so the two share a directory."""
    export = "onnx" if backend == "openvino" else backend
    return Path(cache_dir) / f"{_slug(model_id)}-{export}-{source_fingerprint(model_dir, model_id)}"


def default_cache_dir() -> Path:
    """~/.cache/ragbit/onnx (XDG_CACHE_HOME respected)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ragbit" / "onnx"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ====================================================================================== export (torch, once)
def _load_sentence_transformer(source: str, device: str):
    """A SentenceTransformer without the weight-loading progress bars (they clutter ragbit's own)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    # A local directory needs no hub: say so per call rather than through HF_HUB_OFFLINE, which would
    # also switch off model downloads elsewhere in the process (the generator's `bonsai-*` short names).
    return SentenceTransformer(source, device=device, local_files_only=Path(source).is_dir())


def export_onnx(st_model, out_dir: Path, quantize: bool) -> None:
    """Write model.onnx + tokenizer.json + MANIFEST for a loaded SentenceTransformer into `out_dir`.

    The transformer is re-loaded with eager attention (the sdpa path traces a mask shortcut that is
    only valid for unpadded batches) and traced with a PADDED batch so the mask path is recorded.
    """
    import torch
    from transformers import AutoModel

    first, pooling = st_model[0], st_model[1] if len(st_model) > 1 else None
    pool_cfg = pooling.get_config_dict() if pooling is not None else {}
    mode = pool_cfg.get("pooling_mode", "mean")
    if mode not in ("mean", "cls", "max"):
        raise BackendError(f"pooling mode {mode!r} is not supported by the ONNX backend")
    hf = first.auto_model
    model = AutoModel.from_pretrained(hf.config._name_or_path or hf.name_or_path, attn_implementation="eager")
    model.eval()
    tok = st_model.tokenizer
    sample = tok(["def f(x):\n    return x + 1", "a"], return_tensors="pt", padding=True)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class _Body(torch.nn.Module):          # positional inputs -> last_hidden_state, for the tracer
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *args):
            return self.m(**dict(zip(names, args))).last_hidden_state

    raw = out_dir / "raw.onnx"
    with torch.no_grad(), _quiet():
        torch.onnx.export(_Body(model), tuple(sample[n] for n in names), str(raw), dynamo=False,
                          opset_version=17, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]})
    fused = out_dir / "fused.onnx"
    with _quiet():
        from onnxruntime.transformers.optimizer import optimize_model
        cfg = model.config
        opt = optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                             hidden_size=cfg.hidden_size, opt_level=1)
        opt.save_model_to_file(str(fused))
    raw.unlink()
    final = out_dir / "model.onnx"
    if quantize:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        with _quiet():   # fused ops (com.microsoft domain) defeat shape inference: weights are float32
            quantize_dynamic(str(fused), str(final), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Attention"], **int8_options(),
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        fused.unlink()
    else:
        fused.rename(final)
    backend_tok = tok.backend_tokenizer
    backend_tok.save(str(out_dir / "tokenizer.json"))
    manifest = {"format": EXPORT_FORMAT, "inputs": names, "pooling": mode,
                "normalize": any(type(m).__name__ == "Normalize" for m in st_model),
                "max_seq_length": int(st_model.max_seq_length),
                "dim": int(_embedding_dim(st_model)),
                "pad_id": int(tok.pad_token_id or 0), "int8": quantize, **({"int8_options": int8_options()} if quantize else {}),
                "sha256": _sha256(final)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _embedding_dim(st_model) -> int:
    get = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
    return get()


class _quiet:
    """Silence the exporter's tracer warnings and optimizer logging (they are about our fixed recipe)."""

    def __enter__(self):
        import logging
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.root.manager.disable
        logging.disable(logging.WARNING)

    def __exit__(self, *exc):
        import logging
        logging.disable(self._level)
        self._w.__exit__(*exc)


def valid_export(d: Path) -> dict | None:
    """The manifest of a complete, uncorrupted export in `d`, else None."""
    try:
        manifest = json.loads((d / MANIFEST).read_text())
        if manifest.get("format") != EXPORT_FORMAT or not (d / "tokenizer.json").is_file():
            return None
        if _sha256(d / "model.onnx") != manifest["sha256"]:
            return None
        return manifest
    except (OSError, ValueError, KeyError):
        return None


def ensure_export(source: str, model_id: str, backend: str, cache_dir: str | Path,
                  device: str = "cpu") -> Path:
    """Directory holding a valid export for (model, backend); exports it (atomically) when missing/corrupt."""
    from filelock import FileLock

    model_dir = source if Path(source).is_dir() else None
    target = export_dir_for(cache_dir, model_id, backend, model_dir)
    if valid_export(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if valid_export(target):             # another process finished it while we waited
            return target
        if target.exists():
            shutil.rmtree(target)             # corrupt or from an interrupted older run
        base = ensure_export(source, model_id, "onnx", cache_dir, device) if backend == "openvino-int8" else None
        st = None if base else _load_sentence_transformer(source, device)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        try:
            if base:
                _derive_int8_weights(base, tmp)
            else:
                export_onnx(st, tmp, quantize=backend == "onnx-int8")
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _derive_int8_weights(base: Path, out_dir: Path) -> None:
    """The "openvino-int8" export: the fp32 export in `base` with int8 weights (ragbit/indexing/int8_weights.py);
    made from the files alone, so no torch is loaded."""
    from ragbit.indexing.int8_weights import DYNAMIC_GROUP, quantize_weights_int8
    with _quiet():
        quantize_weights_int8(base / "model.onnx", out_dir / "model.onnx")
    shutil.copy(base / "tokenizer.json", out_dir / "tokenizer.json")
    manifest = {**json.loads((base / MANIFEST).read_text()), "int8_weights": True,
                "dynamic_quantization_group": DYNAMIC_GROUP, "sha256": _sha256(out_dir / "model.onnx")}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
