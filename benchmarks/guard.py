"""Step-time overhead of the Guard on healthy steps, measured interleaved in one process.

Three variants of each model train their own copy (same initial weights, same batch) and
take turns step by step: the bare loop, the loop under a ``Monitor``, and under a
``Monitor(guard=Guard())`` (its per-step verdict: one fused gradient norm and one
transfer; a snapshot every ``snapshot_every`` steps, here 50). Prints the median step time
of each and the ratios: guarded / monitored is the Guard's own cost.

    python benchmarks/guard.py [--steps 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from graddoctor import Guard, Monitor

try:  # run as a script (python benchmarks/guard.py) or as a module (python -m benchmarks.guard)
    from overhead import mlp_12x512, transformer_4
except ImportError:
    from benchmarks.overhead import mlp_12x512, transformer_4

MODELS = {"mlp 12x512": mlp_12x512, "transformer 4x256": transformer_4}
VARIANTS = ("bare", "monitor", "monitor+guard")


def _variant(name: str, model: nn.Module, folder: Path):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    if name == "bare":
        return model, optimizer, None
    guard = Guard(snapshot_every=50) if name == "monitor+guard" else None
    monitor = Monitor(
        model,
        optimizer,
        path=folder / f"{name}-{id(model)}.gdr",
        guard=guard,
        activations_every=None,
    )
    return model, optimizer, monitor


def measure(build, steps: int, folder: Path, device: str = "cpu") -> dict[str, float]:
    """Median step time of each variant, the variants taking turns every step."""
    base, x, y, loss_fn = build()
    base, x, y = base.to(device), x.to(device), y.to(device)
    runs = {name: _variant(name, copy.deepcopy(base), folder) for name in VARIANTS}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for step in range(steps + 10):
        for name, (model, optimizer, monitor) in runs.items():
            start = time.perf_counter()
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.log(loss=loss)
            if device == "cuda":
                torch.cuda.synchronize()
            if step >= 10:  # the first steps warm up allocators and caches
                times[name].append(time.perf_counter() - start)
    for _, _, monitor in runs.values():
        if monitor is not None:
            monitor.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    guard = runs["monitor+guard"][2].guard
    medians["interventions"] = len(guard.interventions)  # spikes of the repeated batch, if any
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, {args.threads} threads, {args.steps} steps")
    print(f"{'model':<20} {'bare ms':>8} {'monitor':>8} {'+guard':>8} {'mon/bare':>9} {'guard/mon':>10} {'acted':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for label, build in MODELS.items():
            torch.manual_seed(0)
            t = measure(build, args.steps, Path(folder), device)
            print(f"{label:<20} {t['bare'] * 1e3:8.2f} {t['monitor'] * 1e3:8.2f} {t['monitor+guard'] * 1e3:8.2f} "
                  f"{t['monitor'] / t['bare']:9.3f} {t['monitor+guard'] / t['monitor']:10.3f} "
                  f"{t['interventions']:6d}")  # fmt: skip


if __name__ == "__main__":
    main()
