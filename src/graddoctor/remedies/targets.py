r"""Standardise regression targets, a remedy for gradients exploding from the loss.

With a mean-squared error the gradient at the output is proportional to the residual
:math:`\hat{y} - y`: targets in the thousands give gradients in the thousands from the
first step, whatever the initialisation. Training on standardised targets

.. math:: z = \frac{y - \mu}{\sigma}

(per output column, :math:`\mu` and :math:`\sigma` over the whole training data) keeps
the residuals of order one; predictions are mapped back with :math:`\hat{y} = \sigma
\hat{z} + \mu`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from graddoctor.problem import Problem


@dataclass
class TargetScaler:
    """Per-column mean and standard deviation of regression targets.

    For targets of shape ``[N]`` the statistics are scalars; for ``[N, ..., k]`` they have
    shape ``[k]`` (one per output column, over all other dimensions).

    Attributes:
        mean: the column means.
        std: the column standard deviations (population, ``ddof=0``).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def _stats_like(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"expected a tensor of targets or predictions, got {type(y).__name__}")
        if self.mean.dim() == 1 and (y.dim() == 0 or y.shape[-1] != self.mean.shape[0]):
            raise ValueError(
                f"expected a last dimension of size {self.mean.shape[0]} (the number of target "
                f"columns), got shape {tuple(y.shape)}"
            )
        dtype = y.dtype if y.is_floating_point() else self.mean.dtype
        return self.mean.to(y.device, dtype), self.std.to(y.device, dtype)

    def transform(self, y: torch.Tensor) -> torch.Tensor:
        r"""Standardise targets: :math:`(y - \mu) / \sigma`. Returns a new tensor."""
        mean, std = self._stats_like(y)
        return (y - mean) / std

    def inverse(self, y_pred: torch.Tensor) -> torch.Tensor:
        r"""Map standardised predictions back: :math:`\sigma \hat{z} + \mu`."""
        mean, std = self._stats_like(y_pred)
        return y_pred * std + mean

    def standardize_problem(self, problem: Problem) -> Problem:
        """A new Problem training on standardised targets; see :func:`standardize_problem`."""
        if not isinstance(problem, Problem):
            raise TypeError(f"expected a graddoctor Problem, got {type(problem).__name__}")
        data = [(inputs, self.transform(targets)) for inputs, targets in _batches(problem.data)]
        earlier = problem.predict_transform
        if earlier is None:
            predict_transform = self.inverse
        else:

            def predict_transform(outputs: Any) -> Any:
                return earlier(self.inverse(outputs))

        copied = problem.copy()
        return copied.replace(
            data=data,
            predict_transform=predict_transform,
            notes={**copied.notes, "target_scaler": self},
        )


def _batches(data: Iterable[Any]) -> list[tuple[Any, torch.Tensor]]:
    batches = []
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError("each batch must be an (inputs, targets) pair")
        inputs, targets = batch
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be tensors, got {type(targets).__name__}")
        batches.append((inputs, targets))
    if not batches:
        raise ValueError("no batches: give at least one (inputs, targets) pair")
    return batches


def _columns(targets: torch.Tensor) -> torch.Tensor:
    """Targets as a ``[rows, columns]`` float64 matrix (one column for 1-D targets)."""
    if targets.dim() <= 1:
        return targets.reshape(-1, 1).to(torch.float64)
    return targets.reshape(-1, targets.shape[-1]).to(torch.float64)


def standardize_target(problem_or_data: Problem | Iterable[Any]) -> TargetScaler:
    r"""Measure the targets' per-column mean and standard deviation over all batches.

    .. math::
        \mu_j = \frac{1}{N} \sum_{n} y_{nj}, \qquad
        \sigma_j = \sqrt{\frac{1}{N} \sum_{n} (y_{nj} - \mu_j)^2}

    computed in float64 with two passes over the data.

    Args:
        problem_or_data: a :class:`~graddoctor.problem.Problem` or its data, a list of
            ``(inputs, targets)`` batches with floating-point targets.

    Returns:
        a :class:`TargetScaler` (its ``mean``/``std`` in the targets' dtype and device).
    """
    data = problem_or_data.data if isinstance(problem_or_data, Problem) else problem_or_data
    batches = _batches(data)
    first = batches[0][1]
    for _, targets in batches:
        if not targets.is_floating_point():
            raise TypeError(
                f"targets have dtype {targets.dtype}: standardize_target is for regression "
                "targets (floating point), not class labels"
            )
        if targets.dim() != first.dim() or (
            targets.dim() > 1 and targets.shape[-1] != first.shape[-1]
        ):
            raise ValueError(
                f"all batches need targets with the same number of columns: got {tuple(first.shape)} "
                f"and {tuple(targets.shape)}"
            )
    columns = [_columns(targets) for _, targets in batches]
    count = sum(c.shape[0] for c in columns)
    mean = sum(c.sum(0).to(columns[0].device) for c in columns) / count
    variance = sum(((c - mean.to(c.device)) ** 2).sum(0).to(mean.device) for c in columns) / count
    std = variance.sqrt()
    if not bool(torch.isfinite(mean).all()):
        raise ValueError("the targets contain NaN or Inf: clean the data before standardising")
    constant = [j for j in range(std.numel()) if not std[j] > 0]
    if constant:
        raise ValueError(
            f"target column(s) {constant} are constant (std 0): there is nothing to "
            "standardise; drop the column or leave the targets as they are"
        )
    if first.dim() <= 1:
        mean, std = mean[0], std[0]
    return TargetScaler(
        mean=mean.to(first.device, first.dtype), std=std.to(first.device, first.dtype)
    )


def standardize_problem(problem: Problem) -> Problem:
    """A new Problem whose targets are standardised, predictions mapped back.

    The new problem has a deep-copied model, data batches with standardised targets
    (inputs shared, not copied), ``predict_transform`` composed with
    :meth:`TargetScaler.inverse` (so outputs map to the original scale) and the scaler
    in ``notes["target_scaler"]``. The original problem and its tensors are unchanged.
    """
    return standardize_target(problem).standardize_problem(problem)


def _standardize_check(problem: Problem) -> str | None:
    try:
        standardize_target(problem)
    except (TypeError, ValueError) as error:
        return str(error)
    return None


def _standardize(problem: Problem, params: dict[str, Any]) -> Problem:
    # standardize_problem deep-copies once more; keep the working copy's model (and its hooks)
    return standardize_problem(problem).replace(model=problem.model)
