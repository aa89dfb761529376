"""Side-by-side trials of remedies on one problem: ``compare`` -> ``Comparison``.

"Experiment! Find out what works and see what fails" (MachineCurve 2019). Every trial starts from
the same initial weights (a copy of the problem's model, before the remedy transforms
it) and sees the same batches in the same order; each is recorded to its own run file
(activation statistics on the checkup's sampled schedule, ``checkup.activation_schedule``)
and diagnosed afterwards.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._comparison_file import SCHEMA, read_comparison
from ._findings import GradDoctorWarning
from .checkup import activation_schedule
from .diagnosis import diagnose
from .diagnosis.findings import _jsonable
from .monitor import Monitor
from .problem import Problem, train_step
from .remedies import Remedy, chain, get_remedy

BASELINE = "baseline"
# progress(trial_name, step, steps) after each step
Progress = Callable[[str, int, int], None]
RemedySpec = str | Remedy | Sequence[str | Remedy]


@dataclass
class TrialResult:
    """One trial (the baseline or a remedy) over one or several seeds."""

    name: str
    remedy: str | None
    final_loss: float
    final_loss_spread: float
    best_loss: float
    steps_to_target: int | None
    diverged: bool
    diverged_at: int | None
    wall_time: float
    healthy: bool
    findings: list[str]
    run_paths: list[str]
    losses: list[list[float]] = field(default_factory=list)
    error: str | None = None

    @property
    def score(self) -> tuple:
        """Sort key: trials that ran and did not diverge first, then by final loss."""
        final = self.final_loss if math.isfinite(self.final_loss) else math.inf
        return (self.error is not None, self.diverged, final, self.best_loss)


@dataclass
class Comparison:
    """Ranked trials of a problem, serialisable to JSON."""

    problem: str
    steps: int
    seeds: list[int]
    target_loss: float
    trials: list[TrialResult]

    def ranked(self) -> list[TrialResult]:
        return sorted(self.trials, key=lambda t: t.score)

    @property
    def best(self) -> TrialResult:
        return self.ranked()[0]

    def trial(self, name: str) -> TrialResult:
        for t in self.trials:
            if t.name == name:
                return t
        raise KeyError(f"no trial {name!r}; trials: {[t.name for t in self.trials]}")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({
            "schema": SCHEMA,
            "problem": self.problem,
            "steps": self.steps,
            "seeds": self.seeds,
            "target_loss": self.target_loss,
            "ranking": [t.name for t in self.ranked()],
            "trials": [asdict(t) for t in self.trials],
        })

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON next to the trials' run files (what ``graddoctor report`` reads)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Comparison:
        """Read a saved comparison back, every field checked.

        Raises:
            OSError: the file cannot be read.
            ValueError: not a comparison, or a field missing or of the wrong type or
                range; the message names the file and the field.
        """
        data = read_comparison(path)
        trials = [TrialResult(**t) for t in data["trials"]]
        return cls(data["problem"], data["steps"], data["seeds"], data["target_loss"], trials)

    def __rich__(self):
        from ._render_comparison import render_comparison

        return render_comparison(self)


def _seeded(remedy: Remedy, seed: int) -> Remedy:
    """The remedy with its random parts (inits, new layers) drawn from ``seed``."""
    if remedy.components:
        return chain(*[_seeded(c, seed) for c in remedy.components])
    return remedy.with_params(seed=seed) if "seed" in remedy.params else remedy


def _as_remedy(spec: RemedySpec) -> Remedy:
    if isinstance(spec, Remedy):
        return spec
    if isinstance(spec, str):
        return get_remedy(spec)
    return chain(*spec)


def _original_scale_loss(base: Problem, trial: Problem, model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """The base problem's loss of the trial's predictions mapped back to the original targets
    (for remedies such as standardize_target that train on transformed targets)."""
    inputs, targets = batch
    with torch.no_grad():
        return base.loss_fn(trial.predict_transform(model(inputs)), targets)


def _train(base: Problem, problem: Problem, steps: int, run_path: Path, name: str,
           progress: Progress | None) -> tuple[list[float], float]:
    model = problem.model
    optimizer = problem.make_optimizer(model)
    losses: list[float] = []
    start = time.perf_counter()
    rescaled = problem.predict_transform is not None
    monitor = Monitor(model, optimizer, path=run_path, activations_every=activation_schedule(steps), overwrite=True,
                      config={"trial": name, "problem": problem.name})
    with warnings.catch_warnings(), monitor:  # closing it commits the last steps: still quiet
        warnings.simplefilter("ignore", GradDoctorWarning)  # a trial may diverge: its diagnosis says so
        for step, batch, base_batch in zip(range(steps), problem.batches(), base.batches()):
            loss = train_step(problem, model, optimizer, batch)
            if rescaled:
                monitor.log(objective=loss)
                loss = _original_scale_loss(base, problem, model, base_batch)
            monitor.log(loss=loss)
            value = float(loss)
            losses.append(value)
            if progress is not None:
                progress(name, step + 1, steps)
            if not math.isfinite(value):
                break
    return losses, time.perf_counter() - start


def compare(
    problem: Problem | Callable[[int], Problem],
    remedies: Sequence[RemedySpec] = (),
    *,
    steps: int = 100,
    seeds: Sequence[int] | int = (0,),
    target_loss: float | None = None,
    out_dir: str | os.PathLike = "runs/compare",
    progress: Progress | None = None,
) -> Comparison:
    """Run the baseline and each remedy side by side and rank them.

    Args:
        problem: a ``Problem``, or a function ``seed -> Problem`` (fresh weights per seed).
        remedies: remedy ids, ``Remedy`` objects, or lists of them (chained in order).
        steps: training steps per trial.
        seeds: seeds (or their number); each seeds torch before the remedy and training.
        target_loss: the loss that counts as "reached" (default: 10% of the baseline's first loss).
        out_dir: where the run files (``<trial>-seed<k>.gdr``) and ``comparison.json`` go.
        progress: called as ``progress(trial, step, steps)`` after every step.

    Returns:
        the ``Comparison``; it is also saved as ``out_dir/comparison.json``.
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds or steps < 1:
        raise ValueError("compare needs at least one seed and steps >= 1")
    specs = [(BASELINE, None)] + [(_as_remedy(r).id, _as_remedy(r)) for r in remedies]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"each remedy may appear once: {names}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_trial: dict[str, dict[str, list]] = {n: {"losses": [], "paths": [], "times": [], "errors": []} for n in names}
    for seed in seeds:
        base = problem(seed) if callable(problem) and not isinstance(problem, Problem) else problem
        for name, remedy in specs:
            record = per_trial[name]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                trial = base.copy()
                if remedy is not None:
                    ok, reason = remedy.applicable(trial)
                    if not ok:
                        record["errors"].append(reason)
                        continue
                    trial = _seeded(remedy, seed).apply(trial)
                path = out / f"{name.replace('+', '_')}-seed{seed}.gdr"
                try:
                    losses, seconds = _train(base, trial, steps, path, name, progress)
                except (RuntimeError, ValueError) as err:
                    record["errors"].append(f"{type(err).__name__}: {err}")
                    continue
            record["losses"].append(losses)
            record["paths"].append(str(path))
            record["times"].append(seconds)
    baseline_first = next((ls[0] for ls in per_trial[BASELINE]["losses"] if ls), math.nan)
    target = target_loss if target_loss is not None else 0.1 * baseline_first
    trials = [_summarise(name, remedy, per_trial[name], target) for name, remedy in specs]
    comparison = Comparison(base.name, steps, seeds, target, trials)
    comparison.save(out / "comparison.json")
    return comparison


def _summarise(name: str, remedy: Remedy | None, record: dict, target: float) -> TrialResult:
    runs = record["losses"]
    if not runs:
        return TrialResult(name, remedy.id if remedy else None, math.nan, math.nan, math.nan, None, False, None,
                           0.0, False, [], [], [], error="; ".join(dict.fromkeys(record["errors"])) or "did not run")
    finals, bests, reached, diverged_at = [], [], [], []
    for losses in runs:
        values = np.asarray(losses, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            diverged_at.append(int(np.argmax(~finite)))
        tail = values[-max(1, len(values) // 10):]
        finals.append(float(np.mean(tail)) if np.all(np.isfinite(tail)) else math.inf)
        bests.append(float(np.min(values[finite])) if finite.any() else math.inf)
        hit = np.nonzero(finite & (values <= target))[0]
        reached.append(int(hit[0]) if hit.size else None)
    diagnoses = [diagnose(p) for p in record["paths"]]
    kinds = sorted({k for d in diagnoses for k in d.kinds()})
    reached_all = [r for r in reached if r is not None]
    return TrialResult(
        name=name,
        remedy=remedy.id if remedy else None,
        final_loss=float(np.mean(finals)),
        final_loss_spread=float(np.std(finals)) if all(math.isfinite(f) for f in finals) else math.nan,
        best_loss=float(np.min(bests)),
        steps_to_target=int(np.mean(reached_all)) if len(reached_all) == len(reached) else None,
        diverged=bool(diverged_at),
        diverged_at=min(diverged_at) if diverged_at else None,
        wall_time=float(np.sum(record["times"])),
        healthy=all(d.healthy for d in diagnoses),
        findings=kinds,
        run_paths=record["paths"],
        losses=[[float(v) for v in ls] for ls in runs],
        error="; ".join(dict.fromkeys(record["errors"])) or None,
    )
