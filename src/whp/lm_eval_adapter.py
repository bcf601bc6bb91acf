"""The one module that talks to lm-evaluation-harness (`lm_eval`), whose API moves between releases.

General-ability benchmarks (DESIGN §2.6) run on an in-memory model through lm-eval's `HFLM`
wrapper and `simple_evaluate`. Two kinds of task name are accepted:

- local tasks, named `whp_<benchmark>` (`whp_arc_easy`, `whp_hellaswag`, ...): YAML templates
  shipped in `whp/data/tasks/` that read jsonl files from a data folder the user points to
  (`data_dir`, or the environment variable WHP_EVAL_DATA). The templates mirror lm-eval's own
  task definitions (prompt, choices, acc / acc_norm); at run time a copy with the data file's
  absolute path is written to a temporary folder and handed to `TaskManager(include_path=...)`.
- any other name (`arc_easy`, `hellaswag`, ...) passes through to lm-eval unchanged, which
  fetches its data set from the hub (for users who are online).

`write_task_dir` is public so that the `lm_eval` command line can run the very same local tasks
(`--include_path`), e.g. to check that both give the same scores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from whp import distributed
from whp.errors import WhpError

TASKS_DIR = Path(__file__).parent / "data" / "tasks"
LOCAL_PREFIX = "whp_"
DATA_ENV = "WHP_EVAL_DATA"
LM_EVAL_PIN = "lm_eval==0.4.13"


def local_task_names() -> list[str]:
    """Names of the local tasks shipped with whp (one YAML template each)."""
    return sorted(path.stem for path in TASKS_DIR.glob(f"{LOCAL_PREFIX}*.yaml"))


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The folder of benchmark jsonl files: `data_dir`, else $WHP_EVAL_DATA, else an error."""
    data_dir = data_dir or os.environ.get(DATA_ENV)
    if not data_dir:
        raise WhpError(
            f"local benchmark tasks need their data: pass data_dir or set {DATA_ENV} to a folder "
            "holding arc_easy.jsonl, arc_challenge.jsonl, boolq.jsonl, hellaswag_1000.jsonl, "
            "openbook_qa.jsonl, piqa.jsonl, winogrande.jsonl"
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise WhpError("benchmark data folder does not exist", path)
    return path.resolve()


# ---- task YAML: read a template, fill in the data file, write it back ------------------------


class _Function(str):
    """The argument of lm-eval's `!function` tag, kept verbatim through a YAML round trip."""


class _TaskLoader(yaml.SafeLoader):
    pass


class _TaskDumper(yaml.SafeDumper):
    pass


_TaskLoader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))
_TaskDumper.add_representer(_Function, lambda dumper, data: dumper.represent_scalar("!function", data))


def _template_file(task: str) -> Path:
    path = TASKS_DIR / f"{task}.yaml"
    if not path.is_file():
        known = ", ".join(local_task_names())
        raise WhpError(f"no task file for local task {task!r} (known: {known})", path)
    return path


def resolved_task_config(task: str, data_dir: Path) -> dict[str, Any]:
    """The template of a local task with its data file replaced by an absolute path that exists."""
    config = yaml.load(_template_file(task).read_text(), Loader=_TaskLoader)
    data_files = config["dataset_kwargs"]["data_files"]
    data_file = Path(data_dir) / data_files["test"]
    if not data_file.is_file():
        raise WhpError(f"benchmark data file for task {task} does not exist", data_file)
    data_files["test"] = str(data_file)
    return config


def write_task_dir(tasks: list[str], data_dir: str | Path | None, out_dir: str | Path) -> Path:
    """Write resolved local task YAMLs (and their helper modules) into `out_dir`; return it.

    The folder is what lm-eval's `TaskManager(include_path=...)` or `lm_eval --include_path`
    expects. `data_dir=None` falls back to $WHP_EVAL_DATA.
    """
    data_dir = resolve_data_dir(data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        config = resolved_task_config(task, data_dir)
        text = yaml.dump(config, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True)
        (out_dir / f"{task}.yaml").write_text(text)
    for module in TASKS_DIR.glob("*.py"):
        shutil.copyfile(module, out_dir / module.name)
    return out_dir


# ---- running lm-eval ------------------------------------------------------------------------


def _lm_eval():
    """Import lm-eval lazily: it is slow to import and only evaluation needs it."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise WhpError(f"benchmarks need lm-evaluation-harness: pip install {LM_EVAL_PIN}") from exc
    return lm_eval, HFLM, TaskManager


@contextlib.contextmanager
def _task_manager(tasks: list[str], data_dir: str | Path | None) -> Iterator[Any]:
    """A TaskManager that knows every requested task (local ones resolved into a temporary
    folder that lives as long as the context), or a WhpError naming the unknown ones."""
    _, _, TaskManager = _lm_eval()
    local = [task for task in tasks if task.startswith(LOCAL_PREFIX)]
    with tempfile.TemporaryDirectory(prefix="whp-tasks-") as tmp:
        include_path = str(write_task_dir(local, data_dir, tmp)) if local else None
        # Scanning lm-eval's own task tree takes seconds: only when a standard task is asked for.
        manager = TaskManager(include_path=include_path, include_defaults=len(local) < len(tasks))
        unknown = sorted(set(tasks) - set(manager.all_tasks))
        if unknown:
            raise WhpError(f"unknown lm-eval task(s): {', '.join(unknown)}")
        yield manager


def scored_pairs(task: str, data_dir: str | Path | None = None, limit: int = 1) -> list[tuple[str, str]]:
    """The (context, continuation) pairs lm-eval scores for the first `limit` items of `task`,
    in order: to see a prompt exactly as the model will (e.g. to check a task definition)."""
    with _task_manager([task], data_dir) as manager:
        loaded = manager.load([task])["tasks"][task]
        loaded.set_config(key="num_fewshot", value=0)
        loaded.build_all_requests(limit=limit)
        return [tuple(instance.arguments) for instance in loaded.instances]


def _scores(results: dict, task: str) -> dict[str, float | int | None]:
    """{"acc", "acc_norm" (None where the task has no such metric), "n"} from lm-eval's output."""
    row = results["results"][task]
    if "acc,none" not in row:
        raise WhpError(f"task {task} reports no accuracy: only multiple-choice tasks are supported")
    acc_norm = row.get("acc_norm,none")
    return {
        "acc": float(row["acc,none"]),
        "acc_norm": None if acc_norm is None else float(acc_norm),
        "n": int(results["n-samples"][task]["effective"]),
    }


def run_benchmarks(
    model,
    tokenizer,
    tasks: list[str],
    data_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
) -> dict[str, dict[str, float | int | None]]:
    """Zero-shot multiple-choice accuracy of an in-memory causal LM on each task.

    `tasks` mixes local names (`whp_arc_easy`, ... over jsonl files in `data_dir` or
    $WHP_EVAL_DATA) and standard lm-eval names (fetched from the hub). `limit` takes the first
    `limit` items of each task. Returns {task: {"acc", "acc_norm", "n"}}; `acc_norm` is None for
    tasks scored by accuracy alone (BoolQ, WinoGrande). The model's train/eval mode is restored.
    """
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise WhpError("no benchmark tasks given")
    lm_eval, HFLM, _ = _lm_eval()
    was_training = model.training
    with _task_manager(tasks, data_dir) as manager:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        _split_between_processes(lm)
        try:
            results = lm_eval.simple_evaluate(
                model=lm, tasks=tasks, task_manager=manager, limit=limit, bootstrap_iters=0, log_samples=False
            )
        finally:
            model.train(was_training)  # HFLM switched it to eval mode
    results = distributed.from_main(results)  # lm-eval returns them on rank 0 only
    return {task: _scores(results, task) for task in tasks}


def _split_between_processes(lm) -> None:
    """lm-eval's own data parallelism, which HFLM switches off for an in-memory model: each
    process scores every world_size-th document and rank 0 gathers them (lm_eval 0.4.13's
    `_rank`, `_world_size` and `accelerator` attributes)."""
    if distributed.world_size() > 1:
        lm._rank, lm._world_size = distributed.rank(), distributed.world_size()
        lm.accelerator = distributed.accelerator(1)
