"""benchmarks/gpu_1b.py is prepared for a session with a GPU: its tiny size runs here, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_1b.py"


@pytest.mark.subprocess
def test_gpu_script_runs_its_tiny_size_on_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--repeat", "1", "--steps", "2", "--out", str(tmp_path),
                           "--dtype", "float32"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report["labels"]["tokens"] > 0 and report["labels"]["tokens_per_s"] > 0
    assert report["finetune"]["steps"] == 2 and report["finetune"]["tokens_per_s"] > 0
    assert 0 < report["labels"]["mfu_of_measured_matmul"] and 0 < report["finetune"]["mfu_of_measured_matmul"]
    assert (tmp_path / "run" / "labels").is_dir()
    assert report["machine"]["dtype"] == "float32" and report["machine"]["matmul_tflops"] > 0
