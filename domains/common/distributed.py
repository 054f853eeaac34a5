"""Training in several processes with torch's own launcher, `torchrun`.

A domain's train stage with `train.processes` above 1 starts `torchrun --standalone
--nproc-per-node=N -m domains.common.distributed <domain> <root>` itself (`launch`), so `dvc repro`
and the flows run it unchanged. Each process runs the domain's train function; the shared trainer
sees it was launched by torchrun (the WORLD_SIZE, RANK, LOCAL_RANK variables torchrun sets) and trains
under DistributedDataParallel: NCCL between GPUs, gloo between CPU processes. Only rank 0 writes
models, metrics and checkpoints; the other ranks write into a scratch folder that is thrown away.

This module is light (torch is imported inside the functions): the stage runner imports it.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class RankFailed(Exception):
    """A training process died or raised: one line, naming the process and how it ended."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    """True in a process torchrun started with others: the trainer then runs under DDP."""
    return world_size() > 1


def torchrun_args(processes: int, domain: str, root: Path) -> list[str]:
    """torchrun's own arguments, as a user would type them after `torchrun`."""
    return [
        "--standalone",
        f"--nproc-per-node={processes}",
        "--max-restarts=0",
        "-m",
        "domains.common.distributed",
        domain,
        str(root),
    ]


def launch(processes: int, domain: str, root: Path, threads: int) -> None:
    """Run the domain's training in `processes` processes of `threads` CPU threads under torchrun;
    RankFailed if one fails.

    torchrun's own entry point, in this process: the same launcher a user types, but its failure
    comes back as an exception with each process's exit code instead of a page of traceback.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = torchrun_args(processes, domain, root)
    print("$ torchrun " + " ".join(args), file=sys.stderr, flush=True)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # set, so torchrun does not set 1 with a warning
    # The launcher logs each process it loses and stops; the failure is reported below, once.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(args))
    except ChildFailedError as err:
        raise RankFailed(failure_reason(err, processes, f"train@{domain}")) from None


def failure_reason(err: Any, processes: int, what: str) -> str:
    """One line from torchrun's ChildFailedError. A process killed by a signal is the cause when
    there is one: the others then fail only because a peer vanished mid-collective. torchrun stops
    the survivors with SIGTERM, so another signal, where there is one, names the process that died first."""
    killed = {r: f for r, f in err.failures.items() if f.exitcode < 0}
    not_by_torchrun = {r: f for r, f in killed.items() if f.signal_name() != "SIGTERM"}
    failed_rank, failure = min((not_by_torchrun or killed or err.failures).items(), key=lambda item: item[1].timestamp)
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        message = failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message
        detail = str(message).strip().splitlines()[-1:] if message and "pytorch.org/docs" not in str(message) else []
        how = f"exited with code {failure.exitcode}" + (f" ({detail[0]})" if detail else "")
    return f"{what}: training process {failed_rank} of {processes} {how}; no model written"


def device(preferred: torch.device) -> torch.device:
    """Under torchrun on CUDA, each process takes the GPU of its local rank."""
    import torch

    if preferred.type == "cuda" and active():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return preferred


def join(on: torch.device) -> None:
    """Join torchrun's process group once per process (NCCL on CUDA, gloo on CPU); left at exit."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    dist.init_process_group("nccl" if on.type == "cuda" else "gloo")
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def all_sum(values: list[float], on: torch.device) -> list[float]:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=on)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_rank0(value: float, on: torch.device) -> float:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=on)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def all_gather(obj: Any) -> list[Any]:
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def main(argv: list[str]) -> None:
    """One training process: `python -m domains.common.distributed <domain> <root>` (torchrun runs it)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    from domains.common.stages import train_in_process

    domain, root = argv
    record(train_in_process)(domain, Path(root))


if __name__ == "__main__":
    main(sys.argv[1:])
