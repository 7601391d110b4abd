"""Process-group set-up from the environment torchrun / accelerate launch provide (WORLD_SIZE, RANK, LOCAL_RANK)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from reidkit.devices import torch_device


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(requested_device: str) -> Context:
    """One process: nothing to set up. Several: join the group (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch_device(requested_device, local_rank)  # the one rule of every command (reidkit.devices)
    if world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
    return Context(rank, world, local_rank, device)


def barrier(ctx: Context):
    if ctx.world > 1:
        import torch.distributed as dist

        dist.barrier()


def teardown(ctx: Context):
    if ctx.world > 1:
        leave_group()


def leave_group():
    """Leave the process group while the interpreter is whole: destroy it, then collect what still referred to it
    (a gloo group's threads must not outlive the interpreter's finalisation: pytorch/pytorch#179291, SIGABRT)."""
    import gc

    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()
