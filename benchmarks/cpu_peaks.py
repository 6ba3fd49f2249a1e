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

# (format, CPU flag needed, accumulator type, multiplicand type, MACs per instruction, intrinsic, accumulator
# first?); the first row of a format whose flag the CPU has is the one timed (AVX-512 before AVX2)
VARIANTS = (
    ("fp32", "avx512f", "<16 x float>", "<16 x float>", 16, "llvm.fma.v16f32", False),
    ("fp32", "fma", "<8 x float>", "<8 x float>", 8, "llvm.fma.v8f32", False),
    ("bf16", "avx512_bf16", "<16 x float>", "<32 x bfloat>", 32, "llvm.x86.avx512bf16.dpbf16ps.512", True),
    ("int8", "avx512_vnni", "<16 x i32>", "<16 x i32>", 64, "llvm.x86.avx512.vpdpbusd.512", True),
)


def _loop_ir(fmt: str, acc_t: str, op_t: str, intrinsic: str, acc_first: bool) -> str:
    """LLVM IR of `i32 run_<fmt>(i64 n)`: n rounds of ACCUMULATORS independent instructions, reduced to one lane."""
    lanes = int(acc_t[1:].split()[0])
    ints = f"<{lanes} x i32>"
    declaration = f"declare {acc_t} @{intrinsic}({', '.join([acc_t, op_t, op_t] if acc_first else [op_t, op_t, acc_t])})"

    def call(acc: str) -> str:
        args = [f"{acc_t} {acc}", f"{op_t} %x", f"{op_t} %y"] if acc_first else [f"{op_t} %x", f"{op_t} %y", f"{acc_t} {acc}"]
        return f"call {acc_t} @{intrinsic}({', '.join(args)})"

    phis = "\n".join(f"  %a{i} = phi {acc_t} [zeroinitializer, %entry], [%b{i}, %loop]" for i in range(ACCUMULATORS))
    ops = "\n".join(f"  %b{i} = " + call(f"%a{i}") for i in range(ACCUMULATORS))
    lanes0 = "\n".join(f"  %v{i} = bitcast {acc_t} %b{i} to {ints}\n  %e{i} = extractelement {ints} %v{i}, i32 0"
                       for i in range(ACCUMULATORS))
    sums = "\n".join(f"  %s{i} = xor i32 %s{i - 1}, %e{i}" if i else "  %s0 = add i32 0, %e0"
                     for i in range(ACCUMULATORS))
    x = ", ".join(f"i32 {1 + i % 8}" for i in range(lanes))
    y = ", ".join(f"i32 {3 + i % 5}" for i in range(lanes))
    return f"""{declaration}
define i32 @run_{fmt}(i64 %n) {{
entry:
  %x = bitcast {ints} <{x}> to {op_t}
  %y = bitcast {ints} <{y}> to {op_t}
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%j, %loop]
{phis}
{ops}
  %j = add i64 %i, 1
  %more = icmp ult i64 %j, %n
  br i1 %more, label %loop, label %done
done:
{lanes0}
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
    chosen: dict[str, tuple] = {}
    for fmt, flag, acc_t, op_t, macs, intrinsic, acc_first in VARIANTS:
        if flag in flags and fmt not in chosen:
            chosen[fmt] = (macs, (fmt, acc_t, op_t, intrinsic, acc_first))
    if not chosen:
        return {}
    module = llvm.parse_assembly("\n".join(_loop_ir(*ir_args)       # one module, one engine
                                           for _, ir_args in chosen.values()))
    module.verify()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    peaks = {}
    for fmt, (macs_per_instruction, _) in chosen.items():
        run = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)(engine.get_function_address(f"run_{fmt}"))
        macs = macs_per_instruction * ACCUMULATORS
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
