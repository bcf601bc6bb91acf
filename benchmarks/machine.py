"""What every benchmark prints first: the machine, torch's view of it, the dtype in force and the
matmul rate in that dtype (the floor of a stage is its model FLOPs ÷ that rate).

    python benchmarks/machine.py [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from whp import distributed, precision


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(dtype: torch.dtype, device: torch.device, rows: int = 512, inner: int = 576, cols: int = 1536) -> float:
    """TFLOP/s of (rows × inner) @ (inner × cols) in `dtype`, the best of 0.3 s of runs after a
    warm-up (defaults: a SmolLM2-135M projection; GPUs get 8192³). Unrounded."""
    if device.type == "cuda":
        rows = inner = cols = 8192
    a = torch.randn(rows, inner, device=device).to(dtype)
    b = torch.randn(inner, cols, device=device).to(dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.3 or runs < 2:
        a @ b
        runs += 1
    _sync(device)
    return 2 * rows * inner * cols * runs / (time.perf_counter() - started) / 1e12


def describe(dtype_setting: str = "auto") -> dict:
    """The machine and the dtype `dtype_setting` resolves to here, with its measured matmul rate."""
    device = distributed.device()
    dtype = precision.resolve_for(dtype_setting, device)
    facts = {
        "cpu": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": precision.native_bf16(device.type)[1],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "dtype_setting": dtype_setting,
        "dtype": precision.dtype_name(dtype),
        "matmul_tflops": matmul_tflops(dtype, device),
    }
    if dtype != torch.float32:
        facts["matmul_tflops_float32"] = matmul_tflops(torch.float32, device)
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="auto", choices=precision.SETTINGS)
    args = parser.parse_args()
    print(json.dumps(describe(args.dtype), indent=2))


if __name__ == "__main__":
    main()
