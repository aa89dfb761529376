"""Step-time overhead of the Monitor, measured interleaved in one process.

For each model, every variant trains its own copy (same initial weights, same batch);
the variants take turns step by step, so drifts of the machine hit them alike. Prints
the median step time of each variant and its ratio to the uninstrumented step.

    python benchmarks/overhead.py [--steps 200] [--threads 2]
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

from graddoctor import Monitor

BATCH = {"mlp": 128}


def mlp_12x512():
    layers = [nn.Linear(256, 512), nn.ReLU()]
    for _ in range(11):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(512, 10))
    batch = BATCH["mlp"]
    return model, torch.randn(batch, 256), torch.randint(0, 10, (batch,)), nn.CrossEntropyLoss()


def small_cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10),
    )
    return model, torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)), nn.CrossEntropyLoss()


class Encoder(nn.Module):
    def __init__(self, d_model: int = 256, layers: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def transformer_4():
    return Encoder(), torch.randn(32, 64, 256), torch.randint(0, 10, (32,)), nn.CrossEntropyLoss()


class Variant:
    """One way of running the training step, with its own model copy."""

    def __init__(self, name: str, model: nn.Module, folder: Path) -> None:
        self.name = name
        self.model = copy.deepcopy(model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.monitor = None
        if name.startswith("monitor"):
            act = 10 if name == "monitor params+act/10" else None
            self.monitor = Monitor(self.model, self.optimizer, path=folder / f"{id(self)}.gdr", activations_every=act)
        self.times: list[float] = []

    def step(self, x, y, loss_fn) -> None:
        start = time.perf_counter()
        if self.name == "detect_anomaly":
            with torch.autograd.detect_anomaly(check_nan=True):
                self._train(x, y, loss_fn)
        else:
            self._train(x, y, loss_fn)
        self.times.append(time.perf_counter() - start)

    def _train(self, x, y, loss_fn) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(self.model(x), y)
        loss.backward()
        if self.name == "norm().item() loop":
            # the common hand-written logger: one .item() per parameter, before the step
            self.item_norms = [p.grad.norm().item() for p in self.model.parameters() if p.grad is not None]
        self.optimizer.step()
        if self.monitor is not None:
            self.monitor.log(loss=loss.detach())
        else:
            loss.item()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


VARIANTS = ["baseline", "monitor params", "monitor params+act/10", "norm().item() loop", "detect_anomaly"]


def measure(builder, steps: int, warmup: int, folder: Path) -> dict[str, float]:
    torch.manual_seed(0)
    model, x, y, loss_fn = builder()
    variants = [Variant(name, model, folder) for name in VARIANTS]
    try:
        for i in range(warmup + steps):
            order = variants if i % 2 == 0 else variants[::-1]
            for v in order:
                v.step(x, y, loss_fn)
    finally:
        for v in variants:
            v.close()
    return {v.name: statistics.median(v.times[warmup:]) for v in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--mlp-batch", type=int, default=128, help="batch size of the MLP")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    BATCH["mlp"] = args.mlp_batch
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {f"MLP 12x512 b{args.mlp_batch}": mlp_12x512, "CNN (3 conv+BN)": small_cnn, "Transformer 4x256": transformer_4}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps per variant (median)")
    header = f"{'model':<20}{'baseline ms':>12}" + "".join(f"{name:>24}" for name in VARIANTS[1:])
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for label, builder in models.items():
            times = measure(builder, args.steps, args.warmup, Path(folder))
            base = times["baseline"]
            cells = "".join(f"{times[name] / base:>23.3f}x" for name in VARIANTS[1:])
            print(f"{label:<20}{1000 * base:>12.2f}{cells}")


if __name__ == "__main__":
    main()
