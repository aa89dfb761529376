"""Step-time overhead of the Monitor under DDP (and FSDP2): 2 processes, gloo, CPU.

Each process trains two (or three) DDP copies of the same model on the same batches:
without graddoctor, with the Monitor (parameter statistics every step), and with
activation statistics every 10 steps too. The copies take turns step by step, in the
same order on every rank (their collectives must match), so drifts of the machine hit
them alike. Prints each rank's median step time per variant and the ratio to the
uninstrumented step. Under DDP rank 0 measures and writes; rank 1 only counts steps.

    python benchmarks/distributed.py [--steps 150] [--fsdp2]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from graddoctor import Monitor

WORLD = 2
VARIANTS = ("baseline", "monitor params", "monitor params+act/10")


def mlp_12x512():
    layers = [nn.Linear(256, 512), nn.ReLU()]
    for _ in range(11):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(512, 10)), (64, 256)


def transformer_4():
    layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, batch_first=True, norm_first=True)
    encoder = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
    return nn.Sequential(encoder, nn.Flatten(), nn.Linear(32 * 128, 10)), (16, 32, 128)


MODELS = {"MLP 12x512 b64/rank": mlp_12x512, "Transformer 4x128": transformer_4}


def _wrap(model: nn.Module, mode: str) -> nn.Module:
    if mode == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    # one FSDP unit per encoder layer and per top-level Linear (children before parents)
    units = [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    units += [m for m in model.children() if isinstance(m, nn.Linear)]
    for unit in units:
        fully_shard(unit)
    fully_shard(model)
    return model


class Variant:
    def __init__(self, name: str, model: nn.Module, mode: str, folder: Path, rank: int) -> None:
        self.name = name
        self.model = _wrap(copy.deepcopy(model), mode)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.monitor = None
        if name != "baseline":
            every = 10 if name.endswith("act/10") else None
            self.monitor = Monitor(self.model, self.optimizer, path=folder / f"{mode}-{id(self)}-{rank}.gdr",
                                   activations_every=every)
        self.times: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        if self.monitor is not None:
            self.monitor.log(loss=loss.detach())
        else:
            loss.item()
        self.times.append(time.perf_counter() - start)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def _measure(rank: int, mode: str, builder, steps: int, warmup: int, folder: Path) -> dict[str, float]:
    torch.manual_seed(0)
    model, shape = builder()
    variants = [Variant(name, model, mode, folder, rank) for name in VARIANTS]
    generator = torch.Generator().manual_seed(100 + rank)
    x, y = torch.randn(*shape, generator=generator), torch.randint(0, 10, (shape[0],), generator=generator)
    try:
        for i in range(warmup + steps):
            for variant in variants if i % 2 == 0 else variants[::-1]:
                variant.step(x, y)
    finally:
        for variant in variants:
            variant.close()
    return {v.name: statistics.median(v.times[warmup:]) for v in variants}


def _worker(rank: int, port: int, modes: tuple[str, ...], steps: int, warmup: int) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=300))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for mode in modes:
            for label, builder in MODELS.items():
                rows.append((mode, label, _measure(rank, mode, builder, steps, warmup, Path(folder))))
    gathered: list = [None] * WORLD
    dist.all_gather_object(gathered, rows)
    if rank == 0:
        _print(gathered, steps)
    dist.barrier()
    dist.destroy_process_group()


def _print(per_rank: list, steps: int) -> None:
    print(f"torch {torch.__version__}, gloo, {WORLD} processes x 1 thread, CPU; median of {steps} steps")
    header = f"{'setup':<8}{'model':<22}{'rank':>5}{'baseline ms':>13}" + "".join(f"{n:>24}" for n in VARIANTS[1:])
    print(header)
    print("-" * len(header))
    for index, (mode, label, _) in enumerate(per_rank[0]):
        for rank in range(WORLD):
            times = per_rank[rank][index][2]
            base = times["baseline"]
            cells = "".join(f"{times[n] / base:>23.3f}x" for n in VARIANTS[1:])
            print(f"{mode:<8}{label:<22}{rank:>5}{1000 * base:>13.2f}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--fsdp2", action="store_true", help="also measure FSDP2 (fully_shard)")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    modes = ("ddp", "fsdp2") if args.fsdp2 else ("ddp",)
    mp.start_processes(_worker, args=(port, modes, args.steps, args.warmup), nprocs=WORLD, start_method="spawn")


if __name__ == "__main__":
    main()
