"""One process or several: the one module that talks to accelerate (its API moves between releases).

Every command runs the same code in every process. Launched by `accelerate launch` or
`torchrun` (several processes: NCCL on GPUs, gloo on CPUs), the processes split the work
(label shards, training micro-batches, evaluation batches) and process 0, the main one, writes
every file; launched plainly, there is one process and nothing changes. The run folder must be
on a file system every process sees.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@functools.lru_cache(maxsize=None)
def _state():
    from accelerate import PartialState

    # accelerate only starts gloo on a CPU machine when told it is on CPU
    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    return _state().num_processes


def rank() -> int:
    return _state().process_index


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    """This process's device: its own GPU (cuda:LOCAL_RANK), else the CPU."""
    return torch.device(_state().device)


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


def share(items: Sequence[T]) -> list[T]:
    """This process's share of `items`: every world_size-th one, from its rank on."""
    return list(items[rank() :: world_size()])


def gather(obj: Any) -> list[Any]:
    """`obj` of every process, in rank order, on every process (picklable objects)."""
    if world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def merged(part: dict) -> dict:
    """The union of every process's dict (keys are disjoint by construction)."""
    whole: dict = {}
    for piece in gather(part):
        whole.update(piece)
    return whole


def from_main(obj: T) -> T:
    """The main process's `obj`, in every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on the main process only and hand its result (or its exception) to every process."""
    if world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # re-raised in every process below
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


# ---- training ------------------------------------------------------------------------------------


def accelerator(micro_batches_per_step: int):
    """An `accelerate.Accelerator` for one training run: DDP over several processes, or FSDP /
    DeepSpeed ZeRO-3 as the user's `accelerate config` says. Mixed precision comes from that
    config too (default none); whp's own bf16 autocast (the precision policy, whp.precision) applies on top."""
    from accelerate import Accelerator

    _state()
    return Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=micro_batches_per_step)


def is_sharded(acc) -> bool:
    """Whether the model's weights are split over the processes (FSDP, DeepSpeed)."""
    from accelerate.utils import DistributedType

    return acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def full_state_dict(acc, prepared: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Every weight of a sharded model gathered on the main process, on the CPU (None elsewhere).
    Every process must call it. DeepSpeed ZeRO-3 needs `zero3_save_16bit_model: true`."""
    state = acc.get_state_dict(prepared)
    if not acc.is_main_process:
        return None
    return {name: tensor.cpu() for name, tensor in state.items()}


def unsharded_loading():
    """A context in which `from_pretrained` builds a plain, whole model after a DeepSpeed ZeRO-3
    run (whose zero.Init would otherwise partition it); a no-op otherwise."""
    import contextlib

    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    state = AcceleratorState()  # set up by the training run
    if state.distributed_type != DistributedType.DEEPSPEED:
        return contextlib.nullcontext()
    return state.deepspeed_plugin.zero3_init_context_manager(enable=False)
