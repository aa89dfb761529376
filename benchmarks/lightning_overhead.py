"""Step-time overhead of GradDoctorCallback inside Lightning, interleaved short fits.

Variants, each a fresh ``Trainer.fit`` of its own copy of the same model on the same
batches:

* ``baseline``: the fit without any callback or logger;
* ``graddoctor``: ``GradDoctorCallback()`` (per-parameter gradient, weight and update
  norms every step, activations every 10 steps, run file, diagnosis at the end);
* ``graddoctor+tb live``: the same, with the run followed live into TensorBoard;
* ``tb histograms/step``: a ``TensorBoardLogger`` and the usual callback that calls
  ``logger.experiment.add_histogram`` for every parameter's gradient at every step.

The variants take turns fit by fit (order reversed every round), so drifts of the machine
hit them alike. A step's time is the period between two ``on_train_batch_start`` calls
(data, forward, backward, optimizer, every callback); the first steps of each fit are
left out. Prints the median step time of the baseline and each variant's ratio to it.

    python benchmarks/lightning_overhead.py [--rounds 5] [--steps 30] [--threads 0]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the
# real ``lightning`` package: leave the folder out before importing it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from graddoctor.integrations.lightning import GradDoctorCallback  # noqa: E402

sys.path.append(str(_HERE))  # after lightning is imported: the sibling benchmark's models
import overhead  # noqa: E402
from overhead import Encoder  # noqa: E402

VARIANTS = ["baseline", "graddoctor", "graddoctor+tb live", "tb histograms/step"]


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


def mlp_12x512():
    model, x, *_ = overhead.mlp_12x512()  # the same model as benchmarks/overhead.py
    return model, tuple(x.shape)


def transformer_4x256():
    return Encoder(), (32, 64, 256)


class StepClock(pl.Callback):
    """Times the period between consecutive training batches."""

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.times: list[float] = []
        self._last: float | None = None
        self._seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None and self._seen > self.skip:
            self.times.append(now - self._last)
        self._last = now
        self._seen += 1


class GradientHistograms(pl.Callback):
    """What people write to watch gradients in TensorBoard: every parameter, every step."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        for name, param in pl_module.named_parameters():
            if param.grad is not None:
                trainer.logger.experiment.add_histogram(f"grad/{name}", param.grad, trainer.global_step)


def fit(variant: str, module: pl.LightningModule, loader, steps: int, skip: int, folder: Path) -> list[float]:
    clock = StepClock(skip)
    callbacks: list[pl.Callback] = []
    logger: object = False
    if variant == "graddoctor":
        callbacks.append(GradDoctorCallback(dirpath=folder / "runs", run_diagnosis=False))
    elif variant == "graddoctor+tb live":
        callbacks.append(GradDoctorCallback(dirpath=folder / "runs", tensorboard=folder / "tb", run_diagnosis=False))
    elif variant == "tb histograms/step":
        logger = pl.loggers.TensorBoardLogger(str(folder / "tb_hist"))
        callbacks.append(GradientHistograms())
    trainer = pl.Trainer(max_steps=steps, callbacks=[*callbacks, clock], logger=logger, accelerator="cpu", devices=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    return clock.times


def measure(builder, rounds: int, steps: int, skip: int, folder: Path) -> dict[str, float]:
    torch.manual_seed(0)
    net, shape = builder()
    x = torch.randn(*shape)
    y = torch.randint(0, 10, (shape[0],))
    loader = torch.utils.data.DataLoader([(x, y)] * steps, batch_size=None)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            times[name] += fit(name, Classifier(copy.deepcopy(net)), loader, steps, skip, folder)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="fits per variant (interleaved)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per fit")
    parser.add_argument("--skip", type=int, default=5, help="first steps of each fit left out")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    models = {"MLP 12x512 b128": mlp_12x512, "Transformer 4x256": transformer_4x256}
    print(f"lightning {pl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} fits x {args.steps - args.skip - 1} timed steps per variant (median)")
    header = f"{'model':<20}{'baseline ms':>12}" + "".join(f"{name:>21}" for name in VARIANTS[1:])
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for label, builder in models.items():
            times = measure(builder, args.rounds, args.steps, args.skip, Path(folder))
            base = times["baseline"]
            cells = "".join(f"{times[name] / base:>20.3f}x" for name in VARIANTS[1:])
            print(f"{label:<20}{1000 * base:>12.2f}{cells}", flush=True)


if __name__ == "__main__":
    main()
