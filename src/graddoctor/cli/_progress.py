"""Rich progress bars of the command line: over training steps, and over trials of a comparison."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn


def training_progress(console: Console) -> Progress:
    """A transient bar over training steps showing the last loss (the ``loss`` field)."""
    return Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        console=console,
        transient=True,
    )


class TrialProgress:
    """A rich progress bar over trials x seeds x steps, as a ``progress`` callback.

    Args:
        console: where to draw.
        trials: number of trials (baseline included).
        seeds: seeds per trial.
        steps: steps per seed.
    """

    def __init__(self, console: Console, trials: int, seeds: int, steps: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        )
        self.total = trials * seeds * steps
        self.steps = steps

    def __enter__(self):
        self.progress.start()
        self.task = self.progress.add_task("trials", total=self.total)
        self.done = 0
        return self.advance

    def advance(self, name: str, step: int, steps: int) -> None:
        """Advance by one step of trial ``name`` (the signature ``compare`` calls)."""
        self.progress.update(self.task, description=name, advance=1)

    def __exit__(self, *exc) -> None:
        self.progress.stop()
