"""``graddoctor.checkup`` against plain training of the same steps, on models of about 1M parameters.

    python benchmarks/checkup.py [--steps 30] [--repeats 3] [--threads N]

Plain training is ``train_step`` on a fresh copy of the model with the problem's optimizer;
the checkup is the whole call (copies, monitored training, zero-learning-rate control,
diagnosis). Each repeat runs plain training, the checkup and a checkup with activation
statistics at every step (``activations_every=1``) back to back, interleaved over the
models, after one warm-up of each: the table gives medians and their ratios, which hold
better than the seconds on a busy machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import graddoctor as gd


def mlp_1m():
    model = nn.Sequential(
        nn.Linear(128, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(128, 128, generator=g), torch.randint(0, 10, (128,), generator=g))
        for _ in range(8)
    ]
    return gd.Problem(model, data, nn.CrossEntropyLoss(), name="mlp-1M")


def cnn_1m():
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.BatchNorm2d(128),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3, padding=1),
        nn.BatchNorm2d(256),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(256, 10),
    )
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
        for _ in range(4)
    ]
    return gd.Problem(model, data, nn.CrossEntropyLoss(), name="cnn-0.4M")


def lstm_1m():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(32, 256, num_layers=2, batch_first=True)
            self.head = nn.Linear(256, 1)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(32, 50, 32, generator=g), torch.randn(32, 1, generator=g)) for _ in range(4)
    ]
    return gd.Problem(Model(), data, nn.MSELoss(), name="lstm-0.9M")


def plain_training(problem: gd.Problem, steps: int) -> float:
    """Seconds of ``steps`` training steps on a fresh copy of the problem's model."""
    model = copy.deepcopy(problem.model)
    optimizer = problem.make_optimizer(model)
    start = time.perf_counter()
    for _, batch in zip(range(steps), problem.batches()):
        gd.train_step(problem, model, optimizer, batch)
    return time.perf_counter() - start


def timed_checkup(problem: gd.Problem, steps: int, path: Path, **options) -> float:
    start = time.perf_counter()
    gd.checkup(problem, steps=steps, run_path=path, **options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    problems = [build() for build in (mlp_1m, cnn_1m, lstm_1m)]
    times: dict[str, dict[str, list[float]]] = {
        p.name: {"plain": [], "checkup": [], "every": []} for p in problems
    }
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats + 1):  # repeat 0 warms up (imports, kernels, allocator)
            for problem in problems:
                path = Path(folder) / f"{problem.name}.gdr"
                row = times[problem.name]
                measured = (
                    plain_training(problem, args.steps),
                    timed_checkup(problem, args.steps, path),
                    timed_checkup(problem, args.steps, path, activations_every=1),
                )
                if repeat:
                    for key, seconds in zip(("plain", "checkup", "every"), measured, strict=True):
                        row[key].append(seconds)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, "
        f"medians of {args.repeats} interleaved repeats"
    )
    print(
        f"{'model':<12}{'parameters':>12}{'plain s':>10}{'checkup s':>11}{'ratio':>8}"
        f"{'activations every step s':>26}{'ratio':>8}"
    )
    for problem in problems:
        row = {key: statistics.median(values) for key, values in times[problem.name].items()}
        params = sum(p.numel() for p in problem.model.parameters())
        print(
            f"{problem.name:<12}{params:>12,}{row['plain']:>10.2f}{row['checkup']:>11.2f}"
            f"{row['checkup'] / row['plain']:>8.2f}{row['every']:>26.2f}{row['every'] / row['plain']:>8.2f}"
        )


if __name__ == "__main__":
    main()
