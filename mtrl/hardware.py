"""What the hardware runs fast: the choice behind ``sac.precision=auto``.

bfloat16 matmuls pay off only where the hardware has them: on a CPU with AVX512-BF16 or
AMX they ran ~3x faster than float32 here (docs/PERFORMANCE.md), on an AVX2-only CPU
~14x slower, since PyTorch then emulates them. So the CPU's own flags decide, never the
mere presence of AVX512.
"""

from __future__ import annotations

from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_is_fast(device: torch.device, flags: set[str] | None = None) -> tuple[bool, str]:
    """Whether bfloat16 matmuls run fast on ``device``, and why, in a few words."""
    if device.type == "cuda":
        fast = torch.cuda.is_bf16_supported()
        return fast, f"CUDA device {'supports' if fast else 'lacks'} bfloat16"
    if device.type != "cpu":
        return False, f"{device.type} not measured"
    found = sorted(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))
    if found:
        return True, f"CPU has {'/'.join(f.upper() for f in found)}"
    return False, f"CPU lacks AVX512-BF16 and AMX (torch capability {torch.backends.cpu.get_cpu_capability()})"


def resolve_precision(precision: str, device: torch.device, flags: set[str] | None = None) -> tuple[str, str]:
    """``sac.precision`` as the update will run it: ``auto`` becomes bfloat16 where it is fast,
    float32 elsewhere; returns (precision, why)."""
    if precision != "auto":
        return precision, "set in the config"
    fast, why = bf16_is_fast(device, flags)
    return ("bfloat16" if fast else "float32"), why
