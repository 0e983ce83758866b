"""torchrun + DistributedDataParallel, nothing home-made: NCCL on GPUs, gloo on CPU.

A plain ``python -m training.train`` is a world of one; ``torchrun --nproc_per_node N -m training.train`` sets
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and every process joins the group here. Rank 0 alone logs and writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import distributed as dist

__all__ = ["Context", "broadcast_object", "gather_objects", "setup", "teardown"]


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun, and pick this process's device.

    ``device='auto'`` is ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU. Under torchrun on the CPU each process
    keeps torchrun's ``OMP_NUM_THREADS`` (1 by default), so N processes share the cores instead of oversubscribing them.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        dev = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Context(rank, world_size, local_rank, dev)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(ctx: Context, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in a world of one)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: Context, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
