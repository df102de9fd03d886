"""torchrun awareness: one code path for one CPU, one GPU or many processes.

Every training command (classifiers, the 3D VAE and flow) starts here. Under torchrun
(WORLD_SIZE > 1 in the environment) the process group is initialised with NCCL on GPUs and gloo
on CPUs; otherwise everything below is a no-op and rank 0 of 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or
    ``mps``; ValueError saying what is missing otherwise, before any work starts."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name!r} is not a device this command can use "
                         "(auto, cpu, cuda, cuda:N or mps)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu "
                             "(or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA "
                             "GPU(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: Apple's MPS backend is not available here; use --device cpu")
    return device


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if there is one; return (DistInfo, this rank's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        torch_device = torch.device("cuda", local_rank if world > 1 else
                                    (torch_device.index if torch_device.index is not None
                                     else torch.cuda.current_device()))
        torch.cuda.set_device(torch_device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
    if world > 1:
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), torch_device
    return DistInfo(), torch_device


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` for one process)."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(info: DistInfo) -> None:
    """Wait until every process of the job gets here (nothing to wait for in one process)."""
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group at the end of a run."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
