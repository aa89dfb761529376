r"""The recorded statistics, declared once: name, group, and how shards combine.

Every statistic the probes measure is declared here and nowhere else (no torch import:
reading a recorded run needs the names only). The probes return their rows as a
:class:`~graddoctor.probes._stat_block.StatBlock` (a stacked ``[n_stats, n]`` tensor
whose rows are addressed by name), and every consumer reads this table instead of a row
position: the Monitor unscales the rows declared ``loss_scaled`` under a self-unscaling
AMP optimizer, the distributed reduction combines each row by its ``reduction``, and
the writer records each row under its name.

Reductions across the shards of a parameter (``monitor.distributed``), each element
held by :math:`c` ranks:

* ``"sum_of_squares"``: an L2 norm, :math:`\big(\frac{1}{c}\sum_r x_r^2\big)^{1/2}`;
* ``"max"``: a max-norm, :math:`\max_r x_r`;
* ``"sum"``: a count, :math:`\frac{1}{c}\sum_r x_r`;
* ``"ratio"``: recomputed from the global values of the two statistics in ``ratio_of``;
* ``"local"``: never reduced (module statistics, measured on the recording rank's batch).

Adding a statistic: its declaration here, its computation in the probe, its test.
"""

from __future__ import annotations

from dataclasses import dataclass

PARAMETERS = "parameters"
MODULES = "modules"
TIME = "time"
GROUPS = (PARAMETERS, MODULES, TIME)

SUM_OF_SQUARES = "sum_of_squares"
MAX = "max"
SUM = "sum"
RATIO = "ratio"
LOCAL = "local"
REDUCTIONS = (SUM_OF_SQUARES, MAX, SUM, RATIO, LOCAL)


@dataclass(frozen=True)
class Statistic:
    """One recorded statistic.

    Attributes:
        name: the stable name it is recorded under.
        group: ``"parameters"`` (one column per parameter), ``"modules"`` (per module) or
            ``"time"`` (per time step of a recurrent module, recorded as ``name:<module>``).
        reduction: how the values of a parameter's shards combine (see the module docstring).
        of_gradient: measured from ``.grad`` before the step (missing where a parameter has
            no gradient); else from the weights after the step, or from a module's output.
        loss_scaled: a gradient magnitude read from ``.grad``, still multiplied by the
            loss scale when a self-unscaling (fused) optimizer is stepped by GradScaler: the
            Monitor divides these rows by the scale. (``out_grad_norm`` and
            ``time_grad_norm`` are recorded as the scaled backward pass computed them.)
        ratio_of: ``(numerator, denominator)`` of a ``"ratio"`` statistic.
    """

    name: str
    group: str
    reduction: str
    of_gradient: bool = False
    loss_scaled: bool = False
    ratio_of: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.group not in GROUPS or self.reduction not in REDUCTIONS:
            raise ValueError(
                f"statistic {self.name!r}: unknown group {self.group!r} or reduction {self.reduction!r}"
            )
        if (self.reduction == RATIO) != (self.ratio_of is not None):
            raise ValueError(f"statistic {self.name!r}: ratio_of goes with reduction 'ratio' only")


STATISTICS: tuple[Statistic, ...] = (
    Statistic("grad_norm", PARAMETERS, SUM_OF_SQUARES, of_gradient=True, loss_scaled=True),
    Statistic("grad_max", PARAMETERS, MAX, of_gradient=True, loss_scaled=True),
    Statistic("grad_nonfinite", PARAMETERS, SUM, of_gradient=True),
    Statistic("weight_norm", PARAMETERS, SUM_OF_SQUARES),
    Statistic("update_norm", PARAMETERS, SUM_OF_SQUARES),
    Statistic("update_ratio", PARAMETERS, RATIO, ratio_of=("update_norm", "weight_norm")),
    Statistic("act_mean", MODULES, LOCAL),
    Statistic("act_std", MODULES, LOCAL),
    Statistic("act_saturated", MODULES, LOCAL),
    Statistic("act_dead", MODULES, LOCAL),
    Statistic("act_nonfinite", MODULES, LOCAL),
    Statistic("act_max", MODULES, LOCAL),
    Statistic("out_grad_norm", MODULES, LOCAL, of_gradient=True),
    Statistic("time_grad_norm", TIME, LOCAL, of_gradient=True),
)
BY_NAME = {stat.name: stat for stat in STATISTICS}


def stat_names(group: str, *, of_gradient: bool | None = None) -> tuple[str, ...]:
    """The names of a group's statistics in declaration order (optionally only those of the gradient or not)."""
    return tuple(
        s.name
        for s in STATISTICS
        if s.group == group and (of_gradient is None or s.of_gradient == of_gradient)
    )


GRAD_STATS = stat_names(PARAMETERS, of_gradient=True)
WEIGHT_STATS = stat_names(PARAMETERS, of_gradient=False)
PARAMETER_STATS = stat_names(PARAMETERS)
ACTIVATION_STATS = stat_names(MODULES)
LOSS_SCALED_STATS = tuple(s.name for s in STATISTICS if s.loss_scaled)
TIME_GRAD_NORM = BY_NAME["time_grad_norm"].name


def time_stat_name(module: str) -> str:
    """The recorded name of a recurrent module's per-time-step gradient norms."""
    return f"{TIME_GRAD_NORM}:{module}"


__all__ = [
    "ACTIVATION_STATS",
    "BY_NAME",
    "GRAD_STATS",
    "GROUPS",
    "LOSS_SCALED_STATS",
    "MODULES",
    "PARAMETERS",
    "PARAMETER_STATS",
    "REDUCTIONS",
    "STATISTICS",
    "Statistic",
    "TIME",
    "TIME_GRAD_NORM",
    "WEIGHT_STATS",
    "stat_names",
    "time_stat_name",
]
