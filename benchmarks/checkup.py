"""Wall time of ``graddoctor.checkup`` (30 steps) on models of about 1M parameters.

    python benchmarks/checkup.py [--steps 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import graddoctor as gd


def mlp_1m():
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512),
                          nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(128, 128, generator=g), torch.randint(0, 10, (128,), generator=g)) for _ in range(8)]
    return gd.Problem(model, data, nn.CrossEntropyLoss(), name="mlp-1M")


def cnn_1m():
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(256, 10),
    )
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(4)]
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
    data = [(torch.randn(32, 50, 32, generator=g), torch.randn(32, 1, generator=g)) for _ in range(4)]
    return gd.Problem(Model(), data, nn.MSELoss(), name="lstm-0.9M")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, checkup with {args.steps} steps")
    print(f"{'model':<12}{'parameters':>12}{'checkup s':>12}{'plain training s':>18}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for build in (mlp_1m, cnn_1m, lstm_1m):
            problem = build()
            params = sum(p.numel() for p in problem.model.parameters())
            start = time.perf_counter()
            gd.checkup(problem, steps=args.steps, run_path=Path(folder) / f"{problem.name}.gdr")
            checkup_s = time.perf_counter() - start
            model = build().model
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            start = time.perf_counter()
            for _, batch in zip(range(args.steps), problem.batches()):
                gd.train_step(problem, model, opt, batch)
            plain_s = time.perf_counter() - start
            print(f"{problem.name:<12}{params:>12,}{checkup_s:>12.2f}{plain_s:>18.2f}{checkup_s / plain_s:>8.2f}")


if __name__ == "__main__":
    main()
