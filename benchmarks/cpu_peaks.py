"""One core's multiply-add peak per number format, measured by a tight loop of one vector instruction.

    python benchmarks/cpu_peaks.py            # fp32 FMA, bf16 dot (AVX512-BF16), int8 dot (AVX-512 VNNI), AMX tiles

WHY: an embedding path's speed-up over fp32 is bounded by how much faster this CPU multiplies in its number
format. Zen4 double-pumps 512-bit work on 256-bit units and has no AMX, so int8 VNNI is 4x fp32 there and bf16
under 2x (measured: 234.6 / 109.6 / 58.5 GMAC/s). On Sapphire/Emerald Rapids (2 KVM cores, 2026-05) the zmm
rows are fp32 119.5, bf16 58.0 (vdpbf16ps issues on one port: slower than fp32 FMA), int8 459.2, and the AMX
tiles 1800 (bf16) and 3550 (int8) GMAC/s: 15x and 30x fp32. bench_embed.py divides each path's measured time by
the time its matmuls would take at these peaks (its "ceiling" lines).

Each zmm loop runs 12 independent accumulators (enough to hide the instruction's latency) of one instruction;
the AMX loops run the 2x2 tile block of a matmul kernel (4 accumulator tiles of 16 x 64 bytes, 4 source tiles:
tdpbf16ps / tdpbssd, 16x16x32 or 16x16x64 MACs each). All are JIT-compiled with llvmlite (numba's backend,
already installed) for this CPU; a format the CPU lacks is skipped. Linux lends AMX tile state to a process
only after it asks (arch_prctl ARCH_REQ_XCOMP_PERM); where that fails the AMX rows are skipped.
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


# AMX: (format, CPU flag, tile instruction, MACs per instruction on full 16-row x 64-byte tiles)
AMX_VARIANTS = (("amx_bf16", "amx_bf16", "llvm.x86.tdpbf16ps", 16 * 16 * 32),
                ("amx_int8", "amx_int8", "llvm.x86.tdpbssd", 16 * 16 * 64))
AMX_BLOCK = ((0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7))      # (accumulator, A tile, B tile) per instruction


def _amx_ir(variants) -> str:
    """LLVM IR of `void tiles_on(ptr cfg)` (load the tile configuration, zero 8 tiles), `void tiles_off()` and,
    per variant, `i32 run_<fmt>(i64 n)`: n rounds of the 4 tile multiply-adds of AMX_BLOCK."""
    zero = "".join(f"  call void @llvm.x86.tilezero(i8 {t})\n" for t in range(8))
    parts = ["declare void @llvm.x86.ldtilecfg(ptr)", "declare void @llvm.x86.tilerelease()",
             "declare void @llvm.x86.tilezero(i8 immarg)",
             f"define void @tiles_on(ptr %cfg) {{\n  call void @llvm.x86.ldtilecfg(ptr %cfg)\n{zero}  ret void\n}}",
             "define void @tiles_off() {\n  call void @llvm.x86.tilerelease()\n  ret void\n}"]
    for fmt, _, intrinsic, _ in variants:
        ops = "\n".join(f"  call void @{intrinsic}(i8 {c}, i8 {a}, i8 {b})" for c, a, b in AMX_BLOCK)
        parts.append(f"""declare void @{intrinsic}(i8 immarg, i8 immarg, i8 immarg)
define i32 @run_{fmt}(i64 %n) {{
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%j, %loop]
{ops}
  %j = add i64 %i, 1
  %more = icmp ult i64 %j, %n
  br i1 %more, label %loop, label %done
done:
  ret i32 0
}}""")
    return "\n".join(parts)


def _amx_allowed() -> bool:
    """Ask Linux for the AMX tile state (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); False elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(158, 0x1023, 18) == 0      # SYS_arch_prctl on x86-64
    except (OSError, AttributeError):
        return False


def _engine(ir: str):
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2)
    module = llvm.parse_assembly(ir)           # one module, one engine
    module.verify()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    return engine


def _gmacs(run, macs: int, seconds: float) -> float:
    """Best of 3 runs of ~`seconds` each, in GMAC per CPU-second of this thread (robust to other processes)."""
    n, t0 = 1000, time.perf_counter()
    run(n)
    while time.perf_counter() - t0 < 0.05:     # size the loop to ~`seconds`
        n *= 4
        t0 = time.perf_counter()
        run(n)
    n = max(1000, int(n * seconds / max(time.perf_counter() - t0, 1e-6)))
    best = 0.0
    for _ in range(3):
        t = time.thread_time()
        run(n)
        best = max(best, n * macs / (time.thread_time() - t) / 1e9)
    return best


def core_peaks(flags: set[str], seconds: float = 0.3) -> dict[str, float]:
    """GMAC per CPU-second of one core, per format the CPU has (fp32, bf16, int8 on zmm registers; amx_bf16,
    amx_int8 on AMX tiles where the CPU and the kernel allow them)."""
    chosen: dict[str, tuple] = {}
    for fmt, flag, acc_t, op_t, macs, intrinsic, acc_first in VARIANTS:
        if flag in flags and fmt not in chosen:
            chosen[fmt] = (macs, (fmt, acc_t, op_t, intrinsic, acc_first))
    peaks = {}
    if chosen:
        engine = _engine("\n".join(_loop_ir(*ir_args) for _, ir_args in chosen.values()))
        for fmt, (macs_per_instruction, _) in chosen.items():
            run = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)(engine.get_function_address(f"run_{fmt}"))
            peaks[fmt] = _gmacs(run, macs_per_instruction * ACCUMULATORS, seconds)
    amx = [v for v in AMX_VARIANTS if v[1] in flags]
    if amx and "amx_tile" in flags and _amx_allowed():
        engine = _engine(_amx_ir(amx))
        config = (ctypes.c_uint8 * 64)()           # palette 1; tiles 0-7: 16 rows of 64 bytes
        config[0] = 1
        for t in range(8):
            config[16 + 2 * t], config[48 + t] = 64, 16
        ctypes.CFUNCTYPE(None, ctypes.c_void_p)(engine.get_function_address("tiles_on"))(ctypes.addressof(config))
        try:
            for fmt, _, _, macs in amx:
                run = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)(engine.get_function_address(f"run_{fmt}"))
                peaks[fmt] = _gmacs(run, macs * len(AMX_BLOCK), seconds)
        finally:
            ctypes.CFUNCTYPE(None)(engine.get_function_address("tiles_off"))()
    return peaks


def format_peaks(peaks: dict[str, float]) -> dict[str, float]:
    """The fastest unit per number format: AMX tiles count for bf16 / int8 where they beat the zmm dot products."""
    best = {fmt: g for fmt, g in peaks.items() if not fmt.startswith("amx_")}
    for fmt in ("bf16", "int8"):
        best[fmt] = max(best.get(fmt, 0.0), peaks.get(f"amx_{fmt}", 0.0)) or best.get(fmt, 0.0)
    return {fmt: g for fmt, g in best.items() if g}


if __name__ == "__main__":
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ragbit.indexing.embedding_backends import cpu_flags
    for fmt, gmacs in core_peaks(cpu_flags()).items():
        print(f"{fmt:5s} {gmacs:7.1f} GMAC/s one core")
