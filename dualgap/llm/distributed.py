"""Process-group helpers: the same code runs as one process, under ``torchrun`` or under
``accelerate launch`` (gloo on CPU, nccl on GPUs).

Work is split by *global* index (item ``j`` goes to rank ``j mod world_size``) and gathered back
in global order, so every rank ends with the same arrays as a single process would, and the
dual statistics (hence ``lam``) are identical on every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["init_distributed", "shutdown_distributed", "rank", "world_size", "is_main",
           "barrier", "gather_objects", "map_sharded", "device", "broadcast_object"]

T = TypeVar("T")


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init_distributed(cpu: bool | None = None) -> None:
    """Join the process group when launched by torchrun/accelerate (no-op for one process).

    Goes through accelerate's ``PartialState`` so that the trainer later shares the same group.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _dist() is not None:
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=(not torch.cuda.is_available()) if cpu is None else cpu)


def shutdown_distributed() -> None:
    """Wait for every rank, then leave the process group (call once, at the end of a command:
    a rank that exits while another is still in a collective makes gloo abort)."""
    d = _dist()
    if d:
        d.barrier()
        d.destroy_process_group()


def rank() -> int:
    d = _dist()
    return d.get_rank() if d else 0


def world_size() -> int:
    d = _dist()
    return d.get_world_size() if d else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    d = _dist()
    if d:
        d.barrier()


def device():
    """``cuda:<local_rank>`` when CUDA is available, else CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` for one process)."""
    d = _dist()
    if not d:
        return [obj]
    out: list[Any] = [None] * d.get_world_size()
    d.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    d = _dist()
    if not d:
        return obj
    box = [obj]
    d.broadcast_object_list(box, src=0)
    return box[0]


def map_sharded(fn: Callable[[int, T], Any], items: Sequence[T]) -> list[Any]:
    """``[fn(j, items[j]) for j in range(len(items))]`` with item ``j`` computed on rank
    ``j mod world_size`` and the results gathered to every rank in global order."""
    r, w = rank(), world_size()
    mine = {j: fn(j, items[j]) for j in range(r, len(items), w)}
    merged: dict[int, Any] = {}
    for part in gather_objects(mine):
        merged.update(part)
    return [merged[j] for j in range(len(items))]
