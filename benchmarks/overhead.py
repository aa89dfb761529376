"""Step-time overhead of the Monitor and of common alternatives, measured interleaved in one process.

For each model, every variant trains its own copy (same initial weights, same batch);
the variants take turns in blocks of ``--block`` steps (the order reversed every other
round), so drifts of the machine hit them alike, while each Monitor still sees its own
steps one after another (its budget takes the median time from one step to the next;
turns of a single step would show it the other variants' time as its own step time). Prints each variant's median step time as a ratio to the
uninstrumented step ("plain"). Variants:

* ``monitor``: ``Monitor(model, optimizer)`` with its defaults (overhead budget 3%);
* ``budget off``: ``Monitor(..., budget=None)``: weights and updates every step, module
  statistics every 10 steps;
* anchors: ``histograms`` (a 64-bin histogram of every gradient per step, with its
  min/max read on the host, as W&B's and TensorBoard's ``watch`` do); ``detect_anomaly``;
  ``.item() loop`` (one ``grad.norm().item()`` per parameter); ``fused norms`` (one
  ``_foreach_norm`` of the gradients and one host sync); ``grads+weights`` (the same for
  gradients and weights: the practical floor of per-parameter monitoring).

The Monitor measures its first 100 steps in full before its budget thins anything
(``graddoctor.monitor._budget``), so the warm-up steps (not timed) cover them.
Models: an MLP 12x512 (memory-bound), a CNN with 3 conv + BatchNorm, a Transformer
4x256, 2,000 Linear layers (4,000 parameter tensors: the cost per tensor), and on a
CUDA machine a ~100M-parameter Transformer in bf16 autocast.

    python benchmarks/overhead.py [--threads 1] [--steps 200] [--warmup 120] [--block 5] [--models mlp,cnn]
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

VARIANTS = (
    "plain",
    "monitor",
    "budget off",
    "histograms",
    "detect_anomaly",
    ".item() loop",
    "fused norms",
    "grads+weights",
)


def mlp_12x512(batch: int = 128):
    layers = [nn.Linear(256, 512), nn.ReLU()]
    for _ in range(11):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(512, 10))
    return model, torch.randn(batch, 256), torch.randint(0, 10, (batch,)), nn.CrossEntropyLoss()


def small_cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip
    return model, torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)), nn.CrossEntropyLoss()


class Encoder(nn.Module):
    def __init__(self, d_model: int = 256, layers: int = 4, heads: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def transformer_4():
    return Encoder(), torch.randn(32, 64, 256), torch.randint(0, 10, (32,)), nn.CrossEntropyLoss()


def linear_2000():
    """2,000 Linear(32, 32) in a chain (orthogonal weights: the signal neither dies nor explodes)."""
    layers = [nn.Linear(32, 32) for _ in range(2000)]
    for layer in layers:
        nn.init.orthogonal_(layer.weight)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers), torch.randn(16, 32), torch.randn(16, 32), nn.MSELoss()


def transformer_100m():
    """~100M parameters (d 768, 14 layers), trained under bf16 autocast on CUDA."""
    model = Encoder(768, 14, 12).cuda()
    x = torch.randn(16, 256, 768, device="cuda")
    return model, x, torch.randint(0, 10, (16,), device="cuda"), nn.CrossEntropyLoss()


MODELS = {
    "mlp": ("MLP 12x512 b128", mlp_12x512, 1),
    "cnn": ("CNN 3 conv+BN", small_cnn, 1),
    "transformer": ("Transformer 4x256", transformer_4, 1),
    "linear2000": ("2,000 Linear", linear_2000, 5),  # steps divided by 5: 0.4 s a step
    "gpu100m": ("Transformer 100M bf16", transformer_100m, 1),
}


class Variant:
    """One way of running the training step, with its own model copy."""

    def __init__(self, name: str, model: nn.Module, folder: Path) -> None:
        self.name = name
        self.model = copy.deepcopy(model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.cuda = next(self.model.parameters()).is_cuda
        self.monitor = None
        if name in ("monitor", "budget off"):
            budget = {} if name == "monitor" else {"budget": None}
            path = folder / f"{name.replace(' ', '_')}-{id(self)}.gdr"
            self.monitor = Monitor(self.model, self.optimizer, path=path, **budget)
        self.times: list[float] = []
        self.kept: list = []

    def step(self, x, y, loss_fn) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        if self.name == "detect_anomaly":
            with torch.autograd.detect_anomaly(check_nan=True):
                self._train(x, y, loss_fn)
        else:
            self._train(x, y, loss_fn)
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - start)

    def _train(self, x, y, loss_fn) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            loss = loss_fn(self.model(x), y)
        loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if self.name == ".item() loop":  # the common hand-written logger
            self.kept = [g.norm().item() for g in grads]
        elif self.name == "histograms":  # per-parameter histograms, as watch() loggers do
            self.kept = [_histogram(g) for g in grads]
        elif self.name in ("fused norms", "grads+weights"):
            norms = torch.stack(torch._foreach_norm(grads))
        self.optimizer.step()
        if self.name == "grads+weights":
            with torch.no_grad():
                weights = torch.stack(torch._foreach_norm(list(self.model.parameters())))
            norms = torch.cat([norms, weights])
        if self.name in ("fused norms", "grads+weights"):
            self.kept = norms.cpu()  # the one sync
        if self.monitor is not None:
            self.monitor.log(loss=loss.detach())
        else:
            loss.item()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def _histogram(grad: torch.Tensor) -> list[float]:
    values = grad.detach().float()
    low, high = values.min().item(), values.max().item()
    return torch.histc(values, 64, low, high).tolist()


def measure(builder, steps: int, warmup: int, folder: Path, block: int = 5) -> dict[str, float]:
    torch.manual_seed(0)
    model, x, y, loss_fn = builder()
    variants = [Variant(name, model, folder) for name in VARIANTS]
    try:
        for i in range(-(-(warmup + steps) // block)):
            for v in variants if i % 2 == 0 else variants[::-1]:
                for _ in range(block):
                    v.step(x, y, loss_fn)
    finally:
        for v in variants:
            v.close()
    return {v.name: statistics.median(v.times[warmup : warmup + steps]) for v in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=120, help="untimed steps first (>= 100)")
    parser.add_argument("--block", type=int, default=5, help="steps per turn of a variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS)
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; median step time per "
        f"variant over {args.steps} steps after {args.warmup} warm-up steps, as a ratio to plain "
        f"(turns of {args.block} steps)"
    )
    header = f"{'model':<24}{'plain ms':>10}" + "".join(f"{n:>15}" for n in VARIANTS[1:])
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for key in chosen:
            label, builder, divide = MODELS[key]
            if key == "gpu100m" and not torch.cuda.is_available():
                print(f"{label:<24}not measured: no CUDA GPU on this machine")
                continue
            steps = max(args.steps // divide, 10)
            times = measure(builder, steps, args.warmup, Path(folder), args.block)
            base = times["plain"]
            cells = "".join(f"{times[n] / base:>14.3f}x" for n in VARIANTS[1:])
            print(f"{label:<24}{1000 * base:>10.2f}{cells}", flush=True)


if __name__ == "__main__":
    main()
