"""Several processes, one run: ``torchrun --nproc_per_node=N -m msvssm.cli train ...``.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with WORLD_SIZE > 1 each process joins
the group, trains on its share of every global batch (``batch_size / WORLD_SIZE`` samples;
:class:`msvssm.train.data.BatchIterator` uses a DistributedSampler), gradients are
averaged by ``DistributedDataParallel``, every validation sample is scored exactly once
(each rank scores its own slice and the predictions are gathered), and only rank 0 writes.
Without torchrun everything here is a no-op.

The group's backend on GPUs is ``cpu:gloo,cuda:nccl``, not plain ``nccl``: NCCL moves CUDA
tensors only, and the small collectives here (epoch statistics, gathered predictions,
barriers) are CPU tensors and Python objects; with plain ``nccl`` the first of them fails
("No backend type associated with device type cpu"). DDP's gradient all-reduce still goes
over NCCL. On CPUs it is ``gloo``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
import torch.nn as nn


@dataclass
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around ``model`` when distributed (the optimiser keeps the unwrapped parameters)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if "nccl" in self.backend else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def mean_dict(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar statistics over ranks (equal shares per rank)."""
        if not self.active:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)  # a CPU tensor: gloo carries it
        torch_dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t)}

    def close(self) -> None:
        if self.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def init_distributed(cfg=None) -> DistContext:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (cfg is None or cfg.device in ("auto", "cuda"))
    backend = process_group_backend(use_cuda)
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process LOCAL_RANK={local_rank} has no GPU of its own: this machine shows "
                               f"{torch.cuda.device_count()} (start torchrun with --nproc_per_node <= that)")
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)
    return DistContext(rank, local_rank, world, backend)


def process_group_backend(use_cuda: bool, gpu_backend: str = "nccl") -> str:
    """The backend string of the process group: CPU collectives over gloo, CUDA ones over ``gpu_backend``."""
    return f"cpu:gloo,cuda:{gpu_backend}" if use_cuda else "gloo"


def all_gather_predictions(logits: torch.Tensor, labels: torch.Tensor, dist: DistContext):
    """Concatenate every rank's (logits, labels), so each sample counts exactly once."""
    gathered: list = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, (logits.cpu(), labels.cpu()))
    return torch.cat([g[0] for g in gathered]), torch.cat([g[1] for g in gathered])
