"""whp's two LLM paths against a real OpenAI-compatible server: `transformers serve` on 127.0.0.1,
serving the demo model (SmolLM2-135M-Instruct) from its local folder on the CPU. The LLM judge of
`whp eval` grades a few completions, and `whp anchors` drafts entries from a short text in LLM
mode, end to end (`make test-slow`; needs the serving extra: pip install -e ".[serve]").

A 135M model is a poor judge and a poorer drafter: what is tested is that the protocol, the
parsing, the merging and the skipping of bad answers work against a real server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from whp.cli import main
from whp.evaluate.suite import demo_corpus_files, demo_file
from whp.models import demo_model_path

pytestmark = pytest.mark.slow

pytest.importorskip("fastapi", reason="transformers serve needs the serving extra: pip install 'transformers[serving]'")
pytest.importorskip("uvicorn", reason="transformers serve needs the serving extra: pip install 'transformers[serving]'")

ANSWERED = '"POST /v1/chat/completions HTTP/1.1" 200 OK'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, limit: float = 300) -> None:
    """Until GET {url}/models answers; fails with the server's log if it exits or never answers."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"transformers serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"transformers serve did not answer within {limit:g} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, model id, log file) of `transformers serve` pinned to the demo model's folder."""
    model = str(demo_model_path())
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", model,
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_until_serving(url, process, log)
        yield url, model, log
    finally:
        stop(process)


def answered(log: Path) -> int:
    return log.read_text().count(ANSWERED)


def test_llm_judge_grades_completions_served_by_transformers_serve(server, tmp_path):
    url, model, log = server
    prompts = tmp_path / "three.jsonl"
    prompts.write_text("".join(Path(demo_file("completion_heldout.jsonl")).read_text().splitlines(keepends=True)[:3]))
    before = answered(log)
    code = main(["-q", "eval", "--model", model, "--out", str(tmp_path / "eval"), "--prompts", str(prompts),
                 "--metrics", "familiarity_completion", "--judge", "llm", "--llm-url", url, "--llm-model", model,
                 "--set", "dtype=float32", "--set", "max_new_tokens=8", "--set", "llm_workers=2", "--set", "llm_max_tokens=32"])
    assert code == 0
    (record_file,) = (tmp_path / "eval").glob("*/familiarity_completion.json")
    record = json.loads(record_file.read_text())
    assert record["n"] == 3 and all(p["grade"] in (0, 1, 2, 3) for p in record["prompts"])
    assert 0 <= record["value"] <= 5
    assert answered(log) - before >= 3, "every grade came from the server"


def test_anchors_llm_mode_drafts_from_transformers_serve(server, tmp_path, caplog):
    url, model, log = server
    caplog.set_level("INFO", logger="whp")
    words = Path(demo_corpus_files()[0]).read_text().split()[:400]
    target = tmp_path / "target.txt"
    target.write_text(" ".join(words))
    out = tmp_path / "anchors.yaml"
    before = answered(log)
    code = main(["anchors", "--model", model, "--target", str(target), "--out", str(out), "--dtype", "float32",
                 "--llm-url", url, "--llm-model", model, "--set", "reinforce_tokens=0", "--set", "min_count=2",
                 "--set", "llm.passages=2", "--set", "llm.passage_words=80", "--set", "llm.max_tokens=48",
                 "--set", "llm.workers=1", "--set", "llm.max_retries=0"])
    assert code == 0
    entries = yaml.safe_load(out.read_text())
    assert entries and all(e["alternatives"] for e in entries.values())
    assert answered(log) - before >= 2, "both passages reached the server and were answered"
    (summary,) = [r.getMessage() for r in caplog.records if "passages answered" in r.getMessage()]
    passages_answered = int(summary.split()[2])
    skipped = [r.getMessage() for r in caplog.records if "passages failed and were skipped" in r.getMessage()]
    assert passages_answered == 2 or skipped, "a passage without a usable answer is skipped with a warning"
    drafted = [k for k, e in entries.items() if "llm" in e["provenance"]]
    assert passages_answered or not drafted
