"""Several processes (torchrun, one per GPU) training as one, with torch.distributed's collectives.

The recognition trainer and RL run the same code in every process; what differs is which rows of
each global batch a process computes:

- every process draws the same global batches (same seeds), computes its own contiguous slice of
  rows, and all-reduces the gradients before each optimiser step (mean over processes, or the sum
  where the loss is already normalised by the global count);
- where a loss couples the rows of a batch (batch-hard triplet mining, eq. 10's batch
  standardisation), the rows' outputs are all-gathered first, with autograd (torch.distributed.nn),
  so every process computes the loss of the whole global batch.

So N processes at global batch B compute what one process computes at B, up to float reduction
order — except for BatchNorm's batch statistics, which torch synchronises only on GPUs
(SyncBatchNorm); on CPU (gloo) each process normalises its own rows. Launch:
`torchrun --nproc_per_node=N -m rgsyn.downstream.run reference params.yaml` (or `downstream`),
`torchrun --nproc_per_node=N -m rgsyn.rl.loop params.yaml`; `compute.processes` makes the flows do it.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env() -> torch.device | None:
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPU; each
    process takes the GPU of its LOCAL_RANK. -> that device, or None when not launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return None
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def local_rows(n: int) -> slice:
    """This process's contiguous share of n global rows (n must divide evenly)."""
    rank, size = world()
    if n % size:
        raise ValueError(f"a global batch of {n} rows does not split over {size} processes; make it a multiple "
                         "(train.p for the trainer, rl.ids_per_step for RL)")
    k = n // size
    return slice(rank * k, (rank + 1) * k)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """All processes' rows of t, in rank order, with gradients flowing back to each process's own rows."""
    if world()[1] == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t))


def gather_values(t: torch.Tensor) -> torch.Tensor:
    """All processes' rows of t (no gradient), in rank order."""
    if world()[1] == 1:
        return t
    out = [torch.empty_like(t) for _ in range(world()[1])]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def sync_grads(params, op: str = "mean") -> None:
    """All-reduce the gradients of `params` across processes (mean or sum), as one flat buffer."""
    size = world()[1]
    if size == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:  # a process that had no rows this step still takes part, with zeros
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    if op == "mean":
        flat /= size
    i = 0
    for g in grads:
        g.copy_(flat[i:i + g.numel()].view_as(g))
        i += g.numel()


def sync_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across processes."""
    if world()[1] == 1:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= world()[1]


def launch(module: str, args: list[str], processes: int) -> None:
    """Run `python -m module args` as `processes` torchrun processes on this machine; raises when any fails."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", module, *args]
    subprocess.run(cmd, check=True)
