"""A training problem: model, data, loss and optimizer factory, plus one training step.

`Problem` is what diagnosis, remedies and experiments pass around. A remedy turns one
`Problem` into another without touching the original (new model copy, wrapped optimizer
factory, extra loss penalties, gradient transforms, or a different step function).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# (model, inputs, outputs) -> scalar tensor added to the loss (recurrent penalties, Omega...)
Penalty = Callable[[nn.Module, Any, Any], torch.Tensor]
# (model, optimizer) -> None, run after backward and before optimizer.step (clipping...)
GradTransform = Callable[[nn.Module, torch.optim.Optimizer], None]
# (problem, model, optimizer, batch) -> loss tensor: a whole training step (TBPTT...)
StepFunction = Callable[["Problem", nn.Module, torch.optim.Optimizer, Any], torch.Tensor]

DEFAULT_LR = 0.01


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Plain SGD at lr 0.01, the default of `checkup` and `compare`."""
    return torch.optim.SGD(params, lr=DEFAULT_LR)


class ReplayedIterator:
    """A one-shot iterator made re-iterable: each batch is drawn when first needed, then kept.

    Every pass replays the batches drawn so far and then draws on, so an endless
    generator costs nothing up front, a finite one can be cycled, and the trials of
    ``compare`` (copies of one Problem) see the same batches. What is kept is what has
    been drawn: give a list or a re-iterable (a DataLoader) to keep nothing.
    """

    def __init__(self, source: Iterator[Any]) -> None:
        self._source = source
        self._drawn: list[Any] = []
        self._exhausted = False

    def __iter__(self) -> Iterator[Any]:
        index = 0
        while True:
            if index == len(self._drawn):
                if self._exhausted:
                    return
                try:
                    self._drawn.append(next(self._source))
                except StopIteration:
                    self._exhausted = True
                    return
            yield self._drawn[index]
            index += 1


@dataclass
class Problem:
    """Everything needed to train a model for a few steps, reproducibly.

    Args:
        model: the network.
        data: a list, re-iterable or iterator of ``(inputs, targets)`` batches; cycled.
            An iterator (e.g. a generator, possibly endless) is drawn lazily and its
            batches kept for replay (:class:`ReplayedIterator`).
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``.
        optimizer: a factory ``params -> Optimizer``; default SGD with lr 0.01.
        name: a label used in reports.
        penalties: extra loss terms ``(model, inputs, outputs) -> scalar``.
        grad_transforms: callables ``(model, optimizer)`` run between backward and step.
        step_fn: replaces the whole training step (forward, backward, step).
        predict_transform: maps model outputs to the targets' original scale
            (set by ``standardize_target``).
    """

    model: nn.Module
    data: Sequence[Any] | Iterable[Any]
    loss_fn: Callable[[Any, Any], torch.Tensor]
    optimizer: OptimizerFactory | None = None
    name: str = "problem"
    penalties: tuple[Penalty, ...] = field(default_factory=tuple)
    grad_transforms: tuple[GradTransform, ...] = field(default_factory=tuple)
    step_fn: StepFunction | None = None
    predict_transform: Callable[[Any], Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise TypeError(
                f"Problem.model must be a torch.nn.Module, got {type(self.model).__name__}"
            )
        if not callable(self.loss_fn):
            raise TypeError(
                "Problem.loss_fn must be callable: loss_fn(outputs, targets) -> scalar tensor"
            )
        if isinstance(self.data, Iterator):
            # drawn lazily (it may be endless), kept so that it can be cycled and replayed
            self.data = ReplayedIterator(self.data)

    def make_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Build the optimizer for ``model`` (default: this problem's model)."""
        model = self.model if model is None else model
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                "the model has no trainable parameters: nothing to optimise or diagnose "
                "(check requires_grad, or pass the model that owns the weights)"
            )
        factory = self.optimizer or default_optimizer
        return factory(params)

    def batches(self) -> Iterator[Any]:
        """Cycle over the data batches forever, in a fixed order, drawing each when it is needed.

        Raises:
            ValueError: the data holds no batch, or yields none when iterated again (an
                iterable that is not re-iterable: give a list, a DataLoader or an iterator).
        """
        for passes in itertools.count():
            drawn = False
            for batch in self.data:
                drawn = True
                yield batch
            if not drawn and passes == 0:
                raise ValueError("Problem.data is empty: give at least one (inputs, targets) batch")
            if not drawn:
                raise ValueError(
                    f"Problem.data ({type(self.data).__name__}) yielded no batch when iterated "
                    "again, so it cannot be cycled: give a list, a DataLoader or an iterator"
                )

    def take(self, n: int) -> list[Any]:
        """The first ``n`` batches of the cycle, as a list (for a few batches; training
        loops iterate :meth:`batches` instead)."""
        return list(itertools.islice(self.batches(), n))

    def copy(self) -> Problem:
        """A copy with a deep-copied model; data and callables are shared."""
        return replace(self, model=copy.deepcopy(self.model), notes=dict(self.notes))

    def replace(self, **changes: Any) -> Problem:
        """A shallow copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)


def compute_loss(problem: Problem, model: nn.Module, batch: Any) -> torch.Tensor:
    """Forward pass, loss and penalties for one batch; checks the loss is a scalar."""
    inputs, targets = batch
    outputs = model(inputs)
    loss = problem.loss_fn(outputs, targets)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"the loss must be a scalar tensor, got {shape}: reduce it (e.g. .mean()) "
            "before calling backward"
        )
    for penalty in problem.penalties:
        loss = loss + penalty(model, inputs, outputs)
    return loss


def train_step(
    problem: Problem, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any
) -> torch.Tensor:
    """One training step of ``problem``: zero_grad, loss, backward, transforms, step.

    Returns:
        the (detached) loss tensor of the step.
    """
    if problem.step_fn is not None:
        return problem.step_fn(problem, model, optimizer, batch).detach()
    optimizer.zero_grad(set_to_none=True)
    loss = compute_loss(problem, model, batch)
    backward_and_step(problem, model, optimizer, loss)
    return loss.detach()


def backward_and_step(
    problem: Problem,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    step: Callable[[], Any] | None = None,
) -> None:
    """``loss.backward()``, the problem's gradient transforms (clipping...), then the step.

    The one place every trainer (``train_step``, TBPTT, the Omega step, the learning-rate
    guard) runs the second half of a training step.

    Args:
        step: what takes the step (default ``optimizer.step``).
    """
    loss.backward()
    for transform in problem.grad_transforms:
        transform(model, optimizer)
    (optimizer.step if step is None else step)()
