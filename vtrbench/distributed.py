"""Several processes (one per GPU) training one model: torchrun's environment, the feature gather, the batch slice.

How a multi-GPU step equals a single-process step on the same global batch (tests/test_ddp.py checks it):

1. the global batch of step s is a pure function of (seed, s) (``vtrbench/data/batches.py``); every rank builds it
   and keeps its own contiguous slice of whole hard-negative groups (:func:`shard_batch`);
2. each rank encodes its slice and all-gathers the contrastive features (:func:`all_gather_with_grad`), so every
   rank computes the same global-batch loss L;
3. backward of the gather sums the gradient w.r.t. the gathered tensor over ranks and keeps the local slice, so the
   local features get W * dL/dx_local; DDP then averages parameter gradients over the W ranks, which gives exactly
   dL/dtheta for the encoders, and for parameters used after the gather (the temperatures) every rank already has
   dL/dtheta, which the average keeps. No rescaling of the loss is needed.

(CLIP4Clip's ``AllGather`` returns only the local slice of the gradient without the sum, which with DDP's average
gives 1/W of the single-process encoder gradient: docs/references.md §2.)

Only rank 0 evaluates, logs and writes files; the others wait at :func:`barrier`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass
class Context:
    """Where this process sits: ``world_size`` processes, this one ``rank`` (``local_rank`` on its node)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009 (immutable default)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """(world_size, rank, local_rank) from torchrun's environment; (1, 0, 0) for a plain ``python`` process."""
    return int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))


def init_from_env(device: torch.device) -> Context:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU); a no-op for one process.

    On CUDA each process takes GPU ``LOCAL_RANK``. Raises RuntimeError when more processes than visible GPUs.
    """
    world_size, rank, local_rank = env_world()
    if world_size == 1:
        return Context(device=device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process {rank} wants GPU {local_rank} but only {torch.cuda.device_count()} are visible; "
                "launch at most one process per GPU (train.gpus / the job's gpu resource)"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(world_size=world_size, rank=rank, local_rank=local_rank, device=device)


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward = sum of the gradients of every rank, local slice kept (works on gloo too)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rank, ctx.size = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)  # [W * B, ...]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum over ranks: every rank's loss depends on this rank's features
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """[B, ...] on each of W ranks -> [W * B, ...] in rank order; gradients flow back to the local slice.

    Every rank must pass the same B (the trainer slices the global batch evenly).
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def set_world(module: nn.Module, world_size: int, rank: int) -> None:
    """Tell every loss module (anything with ``world_size`` and ``rank`` attributes, e.g. InfoNCE) where it runs."""
    for sub in module.modules():
        if hasattr(sub, "world_size") and hasattr(sub, "rank"):
            sub.world_size, sub.rank = world_size, rank


def shard_batch(batch: dict[str, Tensor], world_size: int, rank: int, unit: int = 1) -> dict[str, Tensor]:
    """Rank ``rank``'s contiguous slice of a global batch; slices hold whole units (hard-negative groups).

    Raises:
        ValueError: if the batch does not split into ``world_size`` equal slices of whole units.
    """
    if world_size == 1:
        return batch
    B = next(iter(batch.values())).shape[0]
    if B % (world_size * unit):
        raise ValueError(
            f"train.batch_size={B} must split into {world_size} processes x whole groups of {unit}: "
            f"use a multiple of {world_size * unit}"
        )
    per = B // world_size
    return {k: v[rank * per : (rank + 1) * per] for k, v in batch.items()}


class _Steps(torch.utils.data.Dataset):
    """Item i = this rank's slice of the global batch of step ``start + i``."""

    def __init__(self, make: Callable[[int], dict[str, Tensor]], start: int, stop: int):
        self.make, self.start, self.stop = make, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.make(self.start + i)


def step_batches(
    make: Callable[[int], dict[str, Tensor]], start: int, stop: int, workers: int, pin_memory: bool
) -> Iterator[dict[str, Tensor]]:
    """Batches of steps ``start..stop-1`` in order, built by ``workers`` background processes (0 = in this one).

    Workers keep the GPU fed (they prefetch the next steps while it computes); ``pin_memory`` lets the host-to-GPU
    copy run asynchronously. The batches are the same whatever ``workers`` is: each is a pure function of its step.
    """
    loader = torch.utils.data.DataLoader(
        _Steps(make, start, stop),
        batch_size=None,  # items are whole batches already
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
    return iter(loader)


class LossModule(nn.Module):
    """``forward(batch) = method.loss(batch)``: what DDP wraps, since DDP hooks only ``forward``."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.method.loss(batch)


def loss_fn(method: nn.Module, ctx: Context) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """``batch -> loss terms``: ``method.loss`` for one process; DDP-wrapped (gradients averaged) for several.

    Also points the method's loss modules at the process group (:func:`set_world`).
    """
    set_world(method, ctx.world_size, ctx.rank)
    if ctx.world_size == 1:
        return method.loss
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # find_unused_parameters: e.g. the temporal encoder is unused by mean pooling
    return nn.parallel.DistributedDataParallel(LossModule(method), device_ids=device_ids, find_unused_parameters=True)


def rank_batch(make: Callable[[int], dict[str, Tensor]], world_size: int, rank: int, unit: int, step: int):
    """This rank's slice of the global batch of ``step`` (picklable for DataLoader workers via functools.partial)."""
    return shard_batch(make(step), world_size, rank, unit)
