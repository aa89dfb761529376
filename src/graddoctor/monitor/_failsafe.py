"""The Monitor never raises into the training loop: a failed measurement is skipped, said once.

Everything the Monitor runs inside ``optimizer.step()``, a module hook or a clip call goes
through a :class:`Failsafe`. When a measurement raises (a tensor a probe cannot handle, a
bug), the statistics it would have given read NaN for that step (or are not recorded),
the first failure of each statistic is warned about once, at the user's line, and
recorded as a ``measurement_failed`` event; training continues.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

MEASUREMENT_FAILED = "measurement_failed"  # the event kind
_INTERNAL = ("graddoctor", "torch")


def warn_at_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn at the user's line: the first caller outside graddoctor and torch."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _INTERNAL:
        frame, level = frame.f_back, level + 1
    try:
        warnings.warn(message, category, stacklevel=level if frame is not None else 2)
    except Exception:  # warnings turned into errors: the warning must still never raise
        print(message, file=sys.stderr)


class Failsafe:
    """Runs measurements; a failure is warned about once per statistic and never raised.

    Args:
        record: called with ``(statistics, error text)`` at the first failure of each
            statistic (the Monitor writes a ``measurement_failed`` event); it must not raise.
    """

    def __init__(self, record: Callable[[list[str], str], None] | None = None) -> None:
        self._record = record
        self._reported: set[str] = set()

    def run(self, statistics: Sequence[str], measure: Callable[..., Any], *args: Any) -> Any:
        """``measure(*args)``, or None after reporting its failure.

        Args:
            statistics: the names of what ``measure`` gives (said in the warning).
            measure: the measurement.
        """
        try:
            return measure(*args)
        except Exception as err:
            self.failed(statistics, err)
            return None

    def failed(
        self,
        statistics: Sequence[str],
        err: BaseException,
        action: str = "measure",
        consequence: str = "it reads NaN where it cannot be measured",
    ) -> None:
        """Report that ``action`` of ``statistics`` raised ``err`` (once per statistic).

        Args:
            statistics: what could not be measured (or written).
            err: the exception.
            action, consequence: the warning's words: "could not {action} {statistics}
                ({err}); {consequence}, and training continues".
        """
        names = [name for name in statistics if name not in self._reported]
        if not names:
            return
        self._reported.update(names)
        error = f"{type(err).__name__}: {err}"
        warn_at_user(
            f"graddoctor: could not {action} {', '.join(names)} ({error}); {consequence}, "
            "and training continues",
            RuntimeWarning,
        )
        if self._record is not None:
            try:
                self._record(names, error)
            except Exception:  # noqa: S110 - reporting a failure must not fail the step
                pass


__all__ = ["MEASUREMENT_FAILED", "Failsafe", "warn_at_user"]
