"""Distributed data parallel under ``torchrun``: gloo on CPU, NCCL on CUDA; one process = one rank.

>>> env = setup("cpu")        # reads RANK / WORLD_SIZE / LOCAL_RANK; a plain run is rank 0 of 1
>>> env.is_main, env.world
(True, 1)
>>> teardown(env)
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pocketvqe.errors import PocketVQEError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    initialized: bool = False          # True when this module started the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    try:
        return int(v) if v not in (None, "") else default
    except ValueError:
        raise PocketVQEError(f"environment variable {name}={v!r} is not an integer: launch with torchrun") from None


def setup(device: str = "cpu", timeout_s: float = 1800.0) -> DistEnv:
    """Join the torchrun process group (if any) and pick this rank's device.

    device: ``cpu`` or ``cuda`` (each rank takes ``cuda:LOCAL_RANK``) or ``cuda:N`` (single process only).
    """
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PocketVQEError(f"--device {device}: no CUDA device is visible to this torch "
                                 f"({torch.__version__}); install a CUDA build of torch or use --device cpu")
        if world > 1:
            if local >= torch.cuda.device_count():
                raise PocketVQEError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices: "
                                     "use --nproc_per_node <= the number of GPUs")
            device = f"cuda:{local}"
        elif device == "cuda":
            device = "cuda:0"
        torch.cuda.set_device(torch.device(device))
    elif device != "cpu":
        raise PocketVQEError(f"--device {device!r}: use cpu or cuda")
    if world == 1:
        return DistEnv(0, 1, 0, device, False)
    if dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), local, device, False)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    kwargs = {"device_id": torch.device(device)} if backend == "nccl" else {}
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistEnv(rank, world, local, device, True)


def teardown(env: DistEnv) -> None:
    if env.initialized and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(env: DistEnv, x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce a tensor over ranks (sum / max / mean); identity in a single process."""
    if not env.distributed:
        return x
    y = x.detach().clone().to(env.device)
    dist.all_reduce(y, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    if op == "mean":
        y /= env.world
    return y.to(x.device)


def all_gather_objects(env: DistEnv, obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_buffers(env: DistEnv, module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, as DDP does before each
    forward; call it before evaluating or saving so every rank holds rank 0's model."""
    if env.distributed:
        for b in module.buffers():
            dist.broadcast(b.data, src=0)


def param_divergence(env: DistEnv, module: torch.nn.Module, buffers: bool = False) -> float:
    """Largest |p_rank - p_rank0| over all parameters (and buffers) and ranks (0.0 in a single process)."""
    if not env.distributed:
        return 0.0
    pool = list(module.parameters()) + (list(module.buffers()) if buffers else [])
    tensors = [t.detach().float().reshape(-1) for t in pool if t.dtype.is_floating_point]
    flat = torch.cat(tensors).to(env.device)
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())
