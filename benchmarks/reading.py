"""Wall time of reading big runs: ``report``, ``show`` and ``diagnose`` on a long and a wide run.

    python benchmarks/reading.py [--steps 20000] [--layers 2000] [--repeat 3] [--keep DIR]

Two runs are built in a temporary folder (or ``--keep DIR``, reused when already there):

* long: an MLP of 6 Linear + Tanh layers, 20,000 steps;
* wide: 2,000 Linear layers (4,000 parameter tensors), 200 steps.

Each starts as a real recording: the Monitor on the real model with a real optimizer for
a few hundred steps (long) or a few steps (wide). Recording 20,000 steps that way would
take minutes, so the run is then stretched to its length by ``RunWriter``: the same
metadata, column groups and statistics, and the Monitor's schedule (parameters every
step, activations every 10), each step's rows those of a recorded step in turn. The file
is what the Monitor writes for a run that long. Each command runs in a fresh interpreter
(``python -m graddoctor.cli``, import included, as a user types it); the table gives the
median wall time of ``--repeat`` runs (and its range) and the median CPU time (user +
system) of the command's process: on a busy machine the wall time grows with the load,
the CPU time much less, and on an idle one they agree.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import graddoctor as gd

ACTIVATIONS_EVERY = 10  # the Monitor's default


def _record(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, path: Path, steps: int, **kw
) -> None:
    """A real recording: the Monitor on ``model`` trained with SGD on one batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with gd.Monitor(model, optimizer, path=path, **kw) as monitor:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.log(loss=loss)


def _stretch(template: Path, path: Path, steps: int) -> None:
    """``path``: the recording ``template`` continued to ``steps`` steps on the Monitor's schedule."""
    with gd.open_run(template) as run:
        meta = {k: v for k, v in run.meta.items() if k not in ("format", "schema_version")}
        groups = {stat: run.group_of(stat) for stat in run.stat_names()}
        names = {group: run.names(group) for group in set(groups.values())}
        series = {stat: run.series(stat) for stat in groups}
        scalars = {name: run.scalars(name) for name in run.scalar_names()}
        events = run.events()
    writer = gd.RunWriter(path, meta=meta, commit_every=500)
    for group, columns in names.items():
        writer.define_group(group, columns)
        writer.define_stats(group, [stat for stat, g in groups.items() if g == group])
    every_step = {s: v for s, v in series.items() if v[0].size > 1 and np.all(np.diff(v[0]) == 1)}
    sparse = {s: v for s, v in series.items() if s not in every_step and v[0].size}
    for step in range(steps):
        for stat, (recorded, _, values) in every_step.items():
            writer.add_stat(step, stat, values[step % recorded.size])
        if step % ACTIVATIONS_EVERY == 0:
            for stat, (recorded, _, values) in sparse.items():
                writer.add_stat(step, stat, values[(step // ACTIVATIONS_EVERY) % recorded.size])
        for name, (recorded, values) in scalars.items():
            writer.add_scalar(step, name, float(values[step % recorded.size]))
    for event in events:
        step, kind = event.pop("step"), event.pop("kind")
        writer.add_event(step, kind, event)
    writer.close()


def build(folder: Path, steps: int, layers: int) -> dict[str, Path]:
    """The long and the wide run in ``folder`` (kept when already built)."""
    torch.manual_seed(0)
    runs = {"long": folder / f"long-{steps}.gdr", "wide": folder / f"wide-{layers}.gdr"}
    if not runs["long"].exists():
        model = nn.Sequential(
            *[m for _ in range(6) for m in (nn.Linear(32, 32), nn.Tanh())], nn.Linear(32, 1)
        )
        template = folder / "long-template.gdr"
        _record(model, torch.randn(64, 32), torch.randn(64, 1), template, 300)
        _stretch(template, runs["long"], steps)
    if not runs["wide"].exists():
        model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(layers)])
        template = folder / "wide-template.gdr"
        _record(model, torch.randn(16, 8), torch.randn(16, 8), template, 4, activations_every=2)
        _stretch(template, runs["wide"], 200)
    return runs


def _time(args: list[str], folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of ``graddoctor ARGS`` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "graddoctor.cli", *args], cwd=folder, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode not in (0, 1, 3):
        raise SystemExit(f"graddoctor {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--layers", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--keep", type=Path, default=None, help="folder to build (or reuse) the runs in"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        runs = build(folder, args.steps, args.layers)
        print(f"runs built in {time.perf_counter() - start:.1f} s in {folder}")
        commands = {
            "long": [
                ["report", "{run}", "-o", "long.html"],
                ["show", "{run}"],
                ["diagnose", "{run}"],
            ],
            "wide": [
                ["report", "{run}", "-o", "wide.html"],
                ["show", "{run}"],
                ["diagnose", "{run}"],
            ],
        }
        timings: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.repeat):  # interleaved, so a burst of load touches every row
            for run, lines in commands.items():
                for line in lines:
                    argv = [str(runs[run]) if a == "{run}" else a for a in line]
                    timings.setdefault((run, line[0]), []).append(_time(argv, folder))
        with gd.open_run(runs["long"]) as long_run, gd.open_run(runs["wide"]) as wide_run:
            shape = {
                "long": f"{long_run.steps().size} steps, {len(long_run.names('parameters'))} tensors",
                "wide": f"{wide_run.steps().size} steps, {len(wide_run.names('parameters'))} tensors",
            }
        size = {run: os.path.getsize(path) / 2**20 for run, path in runs.items()}
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        print(f"{'run':<42}{'command':<10}{'wall s':>8}{'min':>7}{'max':>7}{'cpu s':>8}")
        for (run, command), measured in timings.items():
            label = f"{run} ({shape[run]}, {size[run]:.0f} MiB)"
            wall = [w for w, _ in measured]
            cpu = statistics.median(c for _, c in measured)
            print(
                f"{label:<42}{command:<10}{statistics.median(wall):>8.2f}"
                f"{min(wall):>7.2f}{max(wall):>7.2f}{cpu:>8.2f}"
            )


if __name__ == "__main__":
    main()
