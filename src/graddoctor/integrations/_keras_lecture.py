"""The ``keras-lecture`` scenario trained with Keras through the callback, for the demo and tests.

``graddoctor.scenarios.keras_lecture`` builds the lecture's models and reads their runs;
training them needs ``graddoctor.integrations.keras``, a higher layer, so it happens here.
Keras is imported only when :func:`run_keras_lecture` runs.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..scenarios import keras_lecture as lecture


@dataclass
class KerasLectureOutcome:
    """What the ``keras-lecture`` scenario found.

    Attributes:
        run_paths: label -> its run file.
        found: label -> the finding kinds of its diagnosis.
        spreads: label -> decades between the largest and smallest per-layer kernel gradient.
        page: the HTML report page of the sick variant (None when not written).
    """

    run_paths: dict[str, Path]
    found: dict[str, list[str]]
    spreads: dict[str, float]
    page: Path | None = None

    @property
    def as_expected(self) -> bool:
        """The lecture's claim holds (see ``scenarios.keras_lecture.claim_holds``)."""
        return lecture.claim_holds(self.spreads, self.found)


def run_keras_lecture(
    out_dir: str | os.PathLike, seed: int = 0, *, report: bool = False
) -> KerasLectureOutcome:
    """Train both configurations with ``model.fit`` under ``GradDoctorKerasCallback``.

    Args:
        out_dir: the run files go to ``<out_dir>/runs/keras-lecture/<label>.gdr``.
        seed: the data and weights seed.
        report: also write ``<out_dir>/keras-lecture.html`` (the variant's report).

    Returns:
        the outcome. Needs Keras 3 with ``KERAS_BACKEND=torch`` (set here when Keras is
        not imported yet).
    """
    os.environ.setdefault("KERAS_BACKEND", "torch")
    from .keras import GradDoctorKerasCallback

    folder = Path(out_dir) / "runs" / lecture.NAME
    x, y = lecture.lecture_data(seed)
    paths, found, spreads, diagnoses = {}, {}, {}, {}
    for label in lecture.LABELS:
        model = lecture.build_model(label, seed)
        doctor = GradDoctorKerasCallback(
            folder / f"{label}.gdr", overwrite=True, activations_every=2, run_diagnosis=False
        )
        model.fit(
            x,
            y,
            batch_size=lecture.BATCH_SIZE,
            epochs=lecture.EPOCHS,
            shuffle=False,
            verbose=0,
            callbacks=[doctor],
        )
        from ..diagnosis import diagnose

        diagnoses[label] = diagnose(doctor.run_path)
        paths[label], found[label] = doctor.run_path, diagnoses[label].kinds()
        spreads[label] = lecture.gradient_spread(doctor.run_path)
    outcome = KerasLectureOutcome(paths, found, spreads)
    if report:
        from ..report.html import run_report

        outcome.page = Path(out_dir) / f"{lecture.NAME}.html"
        intro = f"{lecture.TITLE}. {lecture.CLAIM} Source: {lecture.SOURCE}. " + "; ".join(
            f"{label}: {', '.join(kinds) or 'healthy'}, gradients spread {spreads[label]:.1f} decades"
            for label, kinds in found.items()
        )
        run_report(
            paths["sigmoid"],
            outcome.page,
            title=f"{lecture.NAME}: {lecture.TITLE}",
            diagnosis=diagnoses["sigmoid"],
            intro=intro,
        )
    return outcome


def demo_line(out_dir: str | os.PathLike) -> str:
    """One line for ``graddoctor demo``: the scenario's result, or why it was skipped."""
    if importlib.util.find_spec("keras") is None:
        return f"{lecture.NAME}: skipped (Keras is not installed: pip install 'graddoctor[keras]')"
    try:
        outcome = run_keras_lecture(out_dir, report=True)
    except (ImportError, RuntimeError) as err:  # e.g. Keras already imported on another backend
        return f"{lecture.NAME}: skipped ({err})"
    found = "; ".join(
        f"{label}: {', '.join(k) or 'healthy'} ({outcome.spreads[label]:.1f} decades)"
        for label, k in outcome.found.items()
    )
    verdict = "as the lecture reports" if outcome.as_expected else "differs from the lecture"
    return f"{lecture.NAME} (Keras): {found}; {verdict}; report {outcome.page}"


__all__ = ["KerasLectureOutcome", "demo_line", "run_keras_lecture"]
