"""Where tensors run: the device, and the process group when launched with `torchrun` (DDP).

Launch with `torchrun --nproc_per_node=N run.py ...` (or as N tasks of one SLURM job): every rank runs the same
deterministic pruning, training is data-parallel (each rank takes a slice of every global batch, gradients
averaged by DDP), and only rank 0 writes files and logs.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.modes import channels_last


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: this rank's GPU when CUDA is present, else the CPU; or an explicit torch device string."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidArgument(f"device={name!r} is not a torch device (use auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device={name!r} but CUDA is not available here: use device=auto or device=cpu")
    return device


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def model_input(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """`x` on the model's device, channels-last when it is an image batch."""
    return channels_last(x.to(model_device(model), non_blocking=True))


def slurm_task_env(env: dict[str, str]) -> dict[str, str]:
    """torchrun's variables for the tasks of one SLURM job (e.g. submitit with tasks_per_node=4), when torchrun
    did not set them: RANK/LOCAL_RANK/WORLD_SIZE from SLURM's, a rendezvous on this node and a port from the job
    id. Single-node jobs only: across nodes set MASTER_ADDR yourself (the first host of the allocation)."""
    if "WORLD_SIZE" in env or int(env.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in env:
        return {}
    return {
        "RANK": env["SLURM_PROCID"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", env["SLURM_PROCID"]),
        "WORLD_SIZE": env["SLURM_NTASKS"],
        "MASTER_ADDR": env.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": env.get("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)),
    }


def init_distributed() -> int:
    """Join the process group when started by torchrun or as one of several SLURM tasks (WORLD_SIZE > 1);
    returns the world size. Call before `resolve_device` (it reads LOCAL_RANK)."""
    os.environ.update(slurm_task_env(dict(os.environ)))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return world


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shard(t: torch.Tensor, r: int, world: int) -> torch.Tensor:
    """Rank r's part of a global batch: rows r, r + world, ... (every row on exactly one rank)."""
    return t[r::world]


def default_threads(threads: int | None, parallel_jobs: int | None, cores: int) -> int:
    """Torch CPU threads for one job: `threads` when set; else the job's share of the cores when a launcher runs
    `parallel_jobs` at once (joblib's -1 = one job per core), so parallel jobs do not oversubscribe; else every core."""
    if threads is not None:
        return threads
    if parallel_jobs is None or parallel_jobs == 1:
        return cores
    jobs = cores if parallel_jobs < 0 else parallel_jobs
    return max(1, cores // jobs)
