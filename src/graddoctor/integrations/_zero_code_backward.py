r"""``backward()`` as the training step, for loops that update the weights by hand.

Scripts such as pytorch/examples' ``word_language_model`` (``p.data.add_(p.grad,
alpha=-lr)``) and ``regression`` step no optimizer. While no optimizer has stepped,
``graddoctor run`` records each ``backward()`` whose gradients reach a root module's
parameters as one step of a Monitor without optimizer, on the smallest root owning
them all (else a container of those roots):

* the gradients (and a copy of the weights) are measured when ``backward()`` returns,
  before any clipping or update the script applies;
* the step closes, measuring the weights and the update, when the model's next forward
  with gradients enabled starts (after the script's update), at the next ``backward()``,
  or at the end of the script;
* its loss is the tensor that ``backward()`` received.

The first optimizer step ends this: the run is closed and its file deleted, since that
script's steps are its optimizer's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class BackwardSteps:
    """The Monitor of a loop without optimizer, each ``backward()`` one step.

    Args:
        create: ``parameters -> watched`` (an object with ``monitor`` and ``model``, or None
            when it cannot be monitored) for the parameters the first backward reached.
        check: ``(watched, loss)``: log the loss and check for NaN/Inf once the gradients
            of a step are measured.
    """

    def __init__(
        self, create: Callable[[list[torch.Tensor]], Any], check: Callable[[Any, Any], None]
    ) -> None:
        self.create, self.check = create, check
        self.watched: Any = None
        self.open = False
        self.ended = False  # an optimizer stepped, or nothing could be monitored

    def after_backward(self, roots: list[nn.Module], loss: torch.Tensor | None) -> None:
        """Measure the gradients ``backward()`` just produced as the next step."""
        if self.ended:
            return
        if self.watched is None:
            seen: dict[int, torch.Tensor] = {}
            for root in roots:
                for param in root.parameters():
                    if param.grad is not None:
                        seen.setdefault(id(param), param)
            if not seen:
                return
            self.watched = self.create(list(seen.values()))
            if self.watched is None:
                self.ended = True
                return
        self.close_step()
        self.watched.monitor.before_step()
        self.open = True
        self.check(self.watched, loss)

    def on_forward(self, module: nn.Module) -> None:
        """A root module starts its forward: the update of the open step is done if it is ours."""
        if self.open and torch.is_grad_enabled():
            model = self.watched.model
            if module is model or any(module is child for child in model.children()):
                self.close_step()

    def close_step(self) -> None:
        """Measure the weights and the update of the open step, and record it."""
        if self.open:
            self.open = False
            self.watched.monitor.after_step()

    def end(self) -> Any:
        """An optimizer steps: stop, and return the watched run to discard (or None)."""
        watched, self.watched, self.open, self.ended = self.watched, None, False, True
        return watched


__all__ = ["BackwardSteps"]
