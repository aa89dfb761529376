"""The Guard under DDP (gloo, 2 processes, CPU): one rank's NaN batch, the same skip on both ranks.

Step 2: rank 1's batch holds a NaN; DDP averages it into both ranks' gradients. Step 4: the
same under ``no_sync()``, so only rank 1's gradients are NaN: without the one all-reduce of
the step's verdict rank 0 would step and the replicas would part.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
import traceback
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

pytestmark = pytest.mark.distributed

WORLD, STEPS, NAN_STEPS, DEADLINE_S = 2, 6, {2: "synced", 4: "no_sync"}, 120


def _train(rank: int, out_dir: Path) -> dict:
    import graddoctor as gd

    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = gd.Guard(rollback=False)
    g = torch.Generator().manual_seed(10 + rank)
    calls, original = [], dist.all_reduce

    def counting_all_reduce(tensor, *args, **kwargs):
        calls.append(tuple(tensor.shape))
        return original(tensor, *args, **kwargs)

    dist.all_reduce = counting_all_reduce
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with gd.Monitor(model, optimizer, path=out_dir / "ddp.gdr", guard=guard) as mon:
                for step in range(STEPS):
                    x = torch.randn(8, 4, generator=g)
                    if rank == 1 and step in NAN_STEPS:
                        x[0, 0] = float("nan")
                    optimizer.zero_grad()
                    sync = (
                        model.no_sync()
                        if NAN_STEPS.get(step) == "no_sync"
                        else contextlib.nullcontext()
                    )
                    with sync:
                        loss = F.mse_loss(model(x), x[:, :1])
                        loss.backward()
                    optimizer.step()
                    mon.log(loss=loss)
    finally:
        dist.all_reduce = original
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"skipped": [e["step"] for e in guard.interventions if e["kind"] == "guard_skipped"],
            "weights": weights, "verdict_all_reduces": calls.count((5,))}  # fmt: skip


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60)
    )
    try:
        result = _train(rank, Path(out_dir))
    except Exception:
        result = traceback.format_exc()
    torch.save(result, Path(out_dir) / f"result-{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_both_ranks_skip_the_step_of_one_ranks_nan_batch(tmp_path):
    context = mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False,
                                 start_method="spawn")  # fmt: skip
    saved = [tmp_path / f"result-{r}.pt" for r in range(WORLD)]
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not context.join(timeout=2):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail(f"the gloo workers did not finish within {DEADLINE_S} s")
    except mp.ProcessExitedException:
        if not all(path.exists() for path in saved):
            raise
    results = [torch.load(path, weights_only=False) for path in saved]
    for result in results:
        assert isinstance(result, dict), result
    assert results[0]["skipped"] == results[1]["skipped"] == sorted(NAN_STEPS)
    assert torch.equal(results[0]["weights"], results[1]["weights"])
    assert torch.isfinite(results[0]["weights"]).all()
    assert [r["verdict_all_reduces"] for r in results] == [STEPS, STEPS]  # one per step, every rank
