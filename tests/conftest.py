import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def one_torch_thread(request):
    """Tiny models gain nothing from threads, and on a busy machine threads spin-wait (a tiny
    training test went from 2.5 s to 28 s); tests on the real model keep every thread."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def float32_policy():
    """Every test computes in float32 whatever the CPU (`dtype: auto` picks bf16 only where the
    CPU has native bf16), so that no result depends on a CPU feature. Tests of the policy patch
    the device's answer themselves; tests that start subprocesses pass `--set dtype=float32`."""
    from whp import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "_native", lambda device_type: (False, "float32 for every test"))
        precision.resolve.cache_clear()
        yield
    precision.resolve.cache_clear()


@pytest.fixture(autouse=True, scope="session")
def private_metric_cache(tmp_path_factory):
    """The tests' metric cache is their own (never the user's WHP_CACHE/metrics)."""
    from whp.evaluate import suite

    folder = tmp_path_factory.mktemp("metric-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(suite, "machine_cache", lambda inputs: folder / inputs)
        yield


@pytest.fixture(autouse=True)
def private_reply_cache(tmp_path, monkeypatch):
    """Each test keeps the LLM replies it receives in its own folder (never WHP_CACHE/llm_replies)."""
    from whp import llm_client

    monkeypatch.setattr(llm_client, "reply_cache_dir", lambda: tmp_path / "llm-replies")
    return tmp_path / "llm-replies"
