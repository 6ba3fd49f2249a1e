"""One core's multiply-add peak per number format, measured by a tight loop of one vector instruction.

    python benchmarks/cpu_peaks.py            # fp32 FMA, bf16 dot (AVX512-BF16), int8 dot (AVX-512 VNNI)

WHY: an embedding path's speed-up over fp32 is bounded by how much faster this CPU multiplies in its number
format. Zen4 double-pumps 512-bit work on 256-bit units and has no AMX, so int8 VNNI is 4x fp32 there and bf16
under 2x (measured: 234.6 / 109.6 / 58.5 GMAC/s); Sapphire Rapids' AMX tiles give 16x and more. bench_embed.py
divides each path's measured time by the time its matmuls would take at these peaks (its "ceiling" lines).

Each loop runs 12 independent accumulators (enough to hide the instruction's latency) of one zmm instruction,
JIT-compiled with llvmlite (numba's backend, already installed) for this CPU; a format the CPU lacks is skipped.
"""
from __future__ import annotations

import ctypes
import time

ACCUMULATORS = 12

# format -> (CPU flag needed, accumulator type, operand type, MACs per instruction, call of the instruction)
FORMATS = {
    "fp32": ("avx512f", "<16 x float>", "<16 x float>", 16, "call <16 x float> @llvm.fma.v16f32(<16 x float> %x, "
             "<16 x float> %y, <16 x float> {acc})"),
    "bf16": ("avx512_bf16", "<16 x float>", "<32 x bfloat>", 32, "call <16 x float> "
             "@llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> {acc}, <32 x bfloat> %x, <32 x bfloat> %y)"),
    "int8": ("avx512_vnni", "<16 x i32>", "<16 x i32>", 64, "call <16 x i32> "
             "@llvm.x86.avx512.vpdpbusd.512(<16 x i32> {acc}, <16 x i32> %x, <16 x i32> %y)"),
}
DECLARATIONS = {
    "fp32": "declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)",
    "bf16": "declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)",
    "int8": "declare <16 x i32> @llvm.x86.avx512.vpdpbusd.512(<16 x i32>, <16 x i32>, <16 x i32>)",
}


def _loop_ir(fmt: str) -> str:
    """LLVM IR of `i32 run_<fmt>(i64 n)`: n rounds of ACCUMULATORS independent instructions, reduced to one lane."""
    _, acc_t, op_t, _, call = FORMATS[fmt]
    phis = "\n".join(f"  %a{i} = phi {acc_t} [zeroinitializer, %entry], [%b{i}, %loop]" for i in range(ACCUMULATORS))
    ops = "\n".join(f"  %b{i} = " + call.format(acc=f"%a{i}") for i in range(ACCUMULATORS))
    lanes = "\n".join(f"  %v{i} = bitcast {acc_t} %b{i} to <16 x i32>\n  %e{i} = extractelement <16 x i32> %v{i}, i32 0"
                      for i in range(ACCUMULATORS))
    sums = "\n".join(f"  %s{i} = xor i32 %s{i - 1}, %e{i}" if i else "  %s0 = add i32 0, %e0"
                     for i in range(ACCUMULATORS))
    return f"""{DECLARATIONS[fmt]}
define i32 @run_{fmt}(i64 %n) {{
entry:
  %x = bitcast <16 x i32> <i32 1, i32 2, i32 3, i32 4, i32 5, i32 6, i32 7, i32 8, i32 1, i32 2, i32 3, i32 4, i32 5, i32 6, i32 7, i32 8> to {op_t}
  %y = bitcast <16 x i32> <i32 3, i32 1, i32 4, i32 1, i32 5, i32 9, i32 2, i32 6, i32 3, i32 1, i32 4, i32 1, i32 5, i32 9, i32 2, i32 6> to {op_t}
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%j, %loop]
{phis}
{ops}
  %j = add i64 %i, 1
  %more = icmp ult i64 %j, %n
  br i1 %more, label %loop, label %done
done:
{lanes}
{sums}
  ret i32 %s{ACCUMULATORS - 1}
}}
"""


def core_peaks(flags: set[str], seconds: float = 0.3) -> dict[str, float]:
    """GMAC per CPU-second of one core, per format the CPU has (best of 3 runs of ~`seconds` each)."""
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2)
    formats = [fmt for fmt, (flag, *_rest) in FORMATS.items() if flag in flags]
    if not formats:
        return {}
    module = llvm.parse_assembly("\n".join(_loop_ir(fmt) for fmt in formats))   # one module, one engine
    module.verify()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    peaks = {}
    for fmt in formats:
        run = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)(engine.get_function_address(f"run_{fmt}"))
        macs = FORMATS[fmt][3] * ACCUMULATORS
        n, t0 = 1000, time.perf_counter()
        run(n)
        while time.perf_counter() - t0 < 0.05:     # size the loop to ~`seconds`
            n *= 4
            t0 = time.perf_counter()
            run(n)
        n = max(1000, int(n * seconds / max(time.perf_counter() - t0, 1e-6)))
        best = 0.0
        for _ in range(3):                         # CPU time of this thread: robust to other processes
            t = time.thread_time()
            run(n)
            best = max(best, n * macs / (time.thread_time() - t) / 1e9)
        peaks[fmt] = best
    return peaks


if __name__ == "__main__":
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ragbit.indexing.embedding_backends import cpu_flags
    for fmt, gmacs in core_peaks(cpu_flags()).items():
        print(f"{fmt:5s} {gmacs:7.1f} GMAC/s one core")
