"""The one precision policy: the dtype every stage computes in.

A `dtype` setting is `auto` (the default everywhere), `bfloat16` or `float32`. `auto` resolves
to bf16 only where the device computes it natively fast:
- a CUDA GPU that supports bf16 (Ampere and later);
- an x86 CPU with AVX512-BF16 or AMX (torch's own CPU feature report, else /proc/cpuinfo);
- any other device (an ARM CPU, Apple's MPS): a tiny timed probe, bf16 when its matmul is at
  least as fast as fp32's;
and to fp32 everywhere else. On a CPU without native bf16 torch emulates it, about 86× slower
than fp32 (a 2-core AVX2 EPYC: 1.2 against 103 GFLOP/s), so an explicit `bfloat16` there is
honoured with a warning. The decision is made once per process and device type, logged once;
stages record the resolved name (`dtype_name`) in run.json, label fingerprints and metric files.
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from pathlib import Path

import torch

from whp.errors import WhpError, warn

log = logging.getLogger("whp")

SETTINGS = ("auto", "bfloat16", "float32")
HELP = ("compute dtype: auto (bfloat16 where the device computes it natively fast: CUDA with bf16, "
        "a CPU with AVX512-BF16 or AMX; float32 elsewhere), bfloat16 or float32")


def check_setting(value: str) -> None:
    """For config __post_init__: a ValueError naming the choices (float16 included: unsupported)."""
    if value not in SETTINGS:
        raise ValueError(f"dtype must be one of {', '.join(SETTINGS)}, got {value!r}")


def _x86_cpu_flags() -> set[str] | None:
    """The bf16-related CPU flags, from torch's report, else /proc/cpuinfo; None if unreadable."""
    try:
        return {flag for flag, present in (("avx512_bf16", torch.cpu._is_avx512_bf16_supported()),
                                           ("amx_tile", torch.cpu._is_amx_tile_supported())) if present}
    except AttributeError:  # a torch without the private report
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split()) & {"avx512_bf16", "amx_tile"}
    except OSError:
        pass
    return None


def _probe_seconds(dtype: torch.dtype, device: torch.device) -> float:
    """Best of three (128 × 256) @ (256 × 512) matmuls, after one warm-up."""
    a = torch.randn(128, 256, device=device).to(dtype)
    b = torch.randn(256, 512, device=device).to(dtype)
    best = float("inf")
    for attempt in range(4):
        if device.type == "mps":
            torch.mps.synchronize()
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "mps":
            torch.mps.synchronize()
        if attempt:
            best = min(best, time.perf_counter() - started)
    return best


def native_bf16(device_type: str) -> tuple[bool, str]:
    """Whether devices of this type compute bf16 natively fast, and why (for the log)."""
    if device_type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, f"CUDA GPU {'with' if native else 'without'} bf16 support"
    if device_type == "cpu" and platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        flags = _x86_cpu_flags()
        if flags is None:
            return False, "CPU features unreadable (fallback)"
        return bool(flags), f"x86 CPU {'with ' + ' and '.join(sorted(flags)) if flags else 'without AVX512-BF16 or AMX'}"
    try:
        device = torch.device(device_type)
        bf16, fp32 = _probe_seconds(torch.bfloat16, device), _probe_seconds(torch.float32, device)
    except (RuntimeError, TypeError) as exc:
        return False, f"{device_type} bf16 probe failed ({exc.__class__.__name__}; fallback)"
    return bf16 <= fp32, f"{device_type} probe: a bf16 matmul takes {bf16 / fp32:.2f}× the fp32 time"


@functools.lru_cache(maxsize=None)
def _native(device_type: str) -> tuple[bool, str]:
    return native_bf16(device_type)


@functools.lru_cache(maxsize=None)
def resolve(setting: str, device_type: str = "cpu") -> torch.dtype:
    """The dtype for `setting` on devices of `device_type`; logged (or warned about) once."""
    if setting not in SETTINGS:
        raise WhpError(f"unknown dtype {setting!r} (choose {', '.join(SETTINGS)})")
    if setting == "float32":
        log.info("precision: float32 (asked for)")
        return torch.float32
    native, why = _native(device_type)
    if setting == "bfloat16":
        if not native:
            warn(f"dtype bfloat16 asked for on a device without native bf16 ({why}): torch emulates it, "
                 "up to ~86× slower than float32 here; dtype=auto picks float32")
        else:
            log.info("precision: bfloat16 (asked for; %s)", why)
        return torch.bfloat16
    dtype = torch.bfloat16 if native else torch.float32
    log.info("precision: auto -> %s (%s)", dtype_name(dtype), why)
    return dtype


def resolve_for(setting: str, device: torch.device | str) -> torch.dtype:
    return resolve(setting, torch.device(device).type)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
