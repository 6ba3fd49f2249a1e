"""int8 weights for the "openvino-int8" path: every matmul weight of an ONNX export stored as int8 per output column.

WHY: on a CPU with VNNI, OpenVINO multiplies int8 weights by activations it quantizes itself per token, in groups
of `DYNAMIC_GROUP` input channels (its CPU plugin's dynamic quantization of fully connected layers with
compressed weights). Scales per token and per group follow the activations' outlier channels, which per-tensor
schemes do not: measured on 150 Django chunks (Zen4), cosine to fp32 min 0.9985 here, against 0.9872 for ONNX
Runtime's dynamic int8 (one activation scale per batch) and 0.98 for static QDQ calibrated on code chunks.
Everything that is not a weight matmul (LayerNorm, softmax, GELU, attention scores) runs in bf16/fp32.

The file is the fp32 export with each weight initializer W (k x n) of a MatMul, or of a fused com.microsoft
Attention's QKV projection, replaced by DequantizeLinear(int8 W/s, s, 0, axis=1) with s = max|W[:, j]| / 127:
symmetric, one scale per output column. OpenVINO folds that pattern into its compressed-weight kernels; any
ONNX runtime can still run the file (it dequantizes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DYNAMIC_GROUP = 128      # input channels per activation scale (64: cos min .9986, 24.0 ms; 128: .9985, 22.7 ms;
                         # 384 = a whole row: .9969, 21.8 ms per chunk; Zen4, 150 Django chunks, one thread).
                         # 384 re-measured (256 chunks, 3 interleaved runs): 16.2 vs 17.0 ms (-4.5%), but on the
                         # docstring set hybrid context@1500 .787 -> .772 and @3000 .866 -> .850: not kept.
                         # 256, 768, 1536 are slower than 128 (19.5, 21.8, 21.9 ms).
WEIGHT_OPS = ("MatMul", "Attention")


def quantize_weights_int8(src: Path, dst: Path) -> int:
    """Write `src` with int8 weights to `dst`; returns how many weight matrices were quantized."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    done: dict[str, str] = {}                       # weight name -> its dequantized tensor's name
    nodes = []
    for node in graph.node:
        name = node.input[1] if node.op_type in WEIGHT_OPS and len(node.input) > 1 else ""
        if name in weights and name not in done and len(weights[name].dims) == 2:
            w = numpy_helper.to_array(weights[name]).astype(np.float32)                 # (k, n)
            scale = (np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0).astype(np.float32)  # (n,)
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                      numpy_helper.from_array(scale, f"{name}_scale"),
                                      numpy_helper.from_array(np.zeros(w.shape[1], np.int8), f"{name}_zero")])
            done[name] = f"{name}_dequantized"
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                                          [done[name]], axis=1, name=f"{name}_DequantizeLinear"))
        if name in done:
            node.input[1] = done[name]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [init for init in graph.initializer if init.name not in done]          # the fp32 originals go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(dst))
    return len(done)
