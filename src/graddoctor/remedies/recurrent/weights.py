r"""The recurrent matrices of a model: finding them, penalising them, projecting them.

Source: Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
networks", sec. 3 (L1/L2 penalties on :math:`W_{hh}`; :math:`\rho(W_{hh}) < 1` keeps
gradients from exploding), as written up by Jefkine (2018); Saxe et al. (2014) and Henaff et al.
(2016) for orthogonal recurrent initialisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from graddoctor.problem import Penalty, Problem, StepFunction, train_step
from graddoctor.remedies.recurrent.model import require_recurrent_modules

# PyTorch stacks the gate blocks of weight_hh along dim 0 in this order.
_GATES = {nn.LSTM: "ifgo", nn.LSTMCell: "ifgo", nn.GRU: "rzn", nn.GRUCell: "rzn"}
PENALTY_KINDS = ("l1", "l2", "spectral")


def _gate_letters(module: nn.Module) -> str | None:
    for kind, letters in _GATES.items():
        if isinstance(module, kind):
            return letters
    return None


def _matrices(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    if isinstance(module, nn.RNNBase):
        suffixes = ("", "_reverse") if module.bidirectional else ("",)
        names = [
            f"weight_hh_l{layer}{suffix}"
            for layer in range(module.num_layers)
            for suffix in suffixes
        ]
        return [(name, getattr(module, name)) for name in names]
    return [("weight_hh", module.weight_hh)]  # RNN cells, Elman/leaky layers, any weight_hh owner


def recurrent_weights(model: nn.Module, per_gate: bool = True) -> list[tuple[str, torch.Tensor]]:
    r"""Every trainable recurrent matrix :math:`W_{hh}` of a model.

    Finds ``weight_hh_l{k}`` (and ``_reverse``) of ``nn.RNN/LSTM/GRU``, ``weight_hh`` of
    the RNN cells and of :class:`ElmanRNN` / ``LeakyRNN``. With ``per_gate`` the LSTM
    (``i, f, g, o``) and GRU (``r, z, n``) matrices are split into their gate blocks,
    named ``"<param>[<gate>]"``. An echo-state reservoir is a buffer, not trained, and is
    not listed.

    Args:
        model: the model (not changed).
        per_gate: split gated matrices into gate blocks (views sharing the storage).

    Returns:
        ``[(name, tensor), ...]``; the tensors are the parameters or views of them, so a
        penalty on them back-propagates into the parameters and in-place edits change them.
    """
    found = require_recurrent_modules(model, "recurrent_weights needs a recurrent layer")
    weights = []
    for module_name, module in found:
        gates = _gate_letters(module) if per_gate else None
        for parameter_name, weight in _matrices(module):
            name = f"{module_name}.{parameter_name}" if module_name else parameter_name
            if gates is None:
                weights.append((name, weight))
                continue
            for gate, block in zip(gates, weight.chunk(len(gates), dim=0)):
                weights.append((f"{name}[{gate}]", block))
    return weights


def _largest_singular_value(weight: torch.Tensor) -> torch.Tensor:
    matrix = weight.float() if weight.dtype in (torch.float16, torch.bfloat16) else weight
    return torch.linalg.matrix_norm(matrix, ord=2)


def recurrent_penalty(
    kind: str = "l2", strength: float = 1e-3, bound: float = 1.0, per_gate: bool = True
) -> Penalty:
    r"""A loss penalty on the recurrent matrices, for ``Problem.penalties``.

    .. math::
        \text{l1: } \lambda \sum_W \|W\|_1, \qquad
        \text{l2: } \lambda \sum_W \|W\|_F^2, \qquad
        \text{spectral: } \lambda \sum_W \operatorname{relu}(\sigma_{\max}(W) - \beta)^2

    The sums run over :func:`recurrent_weights` (gate blocks when ``per_gate``; this only
    matters for ``"spectral"``). Pascanu et al. (2013) use L1/L2 on :math:`W_{hh}` to keep
    :math:`\rho(W_{hh}) < 1`, a sufficient condition against exploding gradients.
    :math:`\sigma_{\max}` is ``torch.linalg.matrix_norm(W, ord=2)``, differentiable.

    Args:
        kind: ``"l1"``, ``"l2"`` or ``"spectral"``.
        strength: :math:`\lambda \ge 0`.
        bound: :math:`\beta > 0`, the largest singular value left unpenalised (spectral only).
        per_gate: penalise LSTM/GRU gate blocks separately (spectral only).

    Returns:
        ``penalty(model, inputs, outputs) -> scalar tensor`` (dtype/device of the weights).
    """
    if kind not in PENALTY_KINDS:
        raise ValueError(f"recurrent_penalty kind must be one of {PENALTY_KINDS}, got {kind!r}")
    strength, bound = float(strength), float(bound)
    if not strength >= 0 or strength == float("inf"):
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    if not bound > 0 or bound == float("inf"):
        raise ValueError(f"bound must be a finite number > 0, got {bound}")

    def penalty(model: nn.Module, inputs: Any = None, outputs: Any = None) -> torch.Tensor:
        weights = [weight for _, weight in recurrent_weights(model, per_gate=per_gate)]
        if kind == "l1":
            terms = [weight.abs().sum() for weight in weights]
        elif kind == "l2":
            terms = [weight.square().sum() for weight in weights]
        else:
            terms = [
                torch.relu(_largest_singular_value(weight) - bound).square().to(weight.dtype)
                for weight in weights
            ]
        return strength * torch.stack([term.to(terms[0].device) for term in terms]).sum()

    penalty.__name__ = f"recurrent_{kind}_penalty"
    return penalty


@torch.no_grad()
def constrain_spectral_norm_(
    model: nn.Module, bound: float = 1.0, per_gate: bool = True
) -> torch.Tensor:
    r"""Rescale every recurrent matrix in place so that its largest singular value is <= bound.

    .. math::
        W \leftarrow W \cdot \min\!\left(1, \frac{\beta}{\sigma_{\max}(W)}\right)

    A hard projection, to run *after* ``optimizer.step()`` (see :class:`SpectralConstraint`
    and :func:`spectral_constraint_step`); it is not a gradient transform. No host sync.
    Source: Pascanu et al. (2013) (:math:`\rho(W_{hh}) \le \|W_{hh}\|_2 < 1`).

    Args:
        model: the model to change.
        bound: :math:`\beta > 0`.
        per_gate: project LSTM/GRU gate blocks separately.

    Returns:
        the largest singular values before the projection, one per matrix (1-D tensor).
    """
    bound = float(bound)
    if not bound > 0 or bound == float("inf"):
        raise ValueError(f"bound must be a finite number > 0, got {bound}")
    weights = recurrent_weights(model, per_gate=per_gate)
    before = []
    for _, weight in weights:
        sigma = _largest_singular_value(weight)
        weight.mul_((bound / sigma).clamp(max=1.0).to(weight.dtype))
        before.append(sigma.to(device=weights[0][1].device, dtype=sigma.dtype))
    return torch.stack(before)


class SpectralConstraint:
    r"""Keep :math:`\sigma_{\max}(W_{hh}) \le \beta` after every optimizer step.

    Either call it after ``optimizer.step()`` (``constraint(model)``), or let it run as an
    optimizer step post-hook: ``handle = constraint.attach(model, optimizer)`` and
    ``handle.remove()`` when done. See :func:`constrain_spectral_norm_`.

    Args:
        bound: :math:`\beta > 0`.
        per_gate: project LSTM/GRU gate blocks separately.
    """

    def __init__(self, bound: float = 1.0, per_gate: bool = True) -> None:
        bound = float(bound)
        if not bound > 0 or bound == float("inf"):
            raise ValueError(f"bound must be a finite number > 0, got {bound}")
        self.bound = bound
        self.per_gate = per_gate

    def __repr__(self) -> str:
        return f"SpectralConstraint(bound={self.bound}, per_gate={self.per_gate})"

    def __call__(self, model: nn.Module) -> torch.Tensor:
        return constrain_spectral_norm_(model, self.bound, self.per_gate)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Project ``model`` after each ``optimizer.step()``; returns the hook's handle."""
        require_recurrent_modules(model, "SpectralConstraint needs a recurrent layer to constrain")

        def post_hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self(model)

        return optimizer.register_step_post_hook(post_hook)


def spectral_constraint_step(
    bound: float = 1.0, step_fn: StepFunction | None = None, per_gate: bool = True
) -> StepFunction:
    """A ``Problem.step_fn``: the usual step (or ``step_fn``), then :func:`constrain_spectral_norm_`.

    With a multi-step ``step_fn`` such as :func:`tbptt` the projection runs once, after the
    whole batch; use :meth:`SpectralConstraint.attach` to project after every update.

    Args:
        bound: :math:`\\beta > 0`.
        step_fn: the step to wrap; ``None``: :func:`graddoctor.problem.train_step`.
        per_gate: project LSTM/GRU gate blocks separately.

    Returns:
        ``step_fn(problem, model, optimizer, batch) -> loss``.
    """
    constraint = SpectralConstraint(bound, per_gate)
    inner: Callable[..., torch.Tensor] | None = step_fn

    def constrained_step(
        problem: Problem, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any
    ) -> torch.Tensor:
        if inner is None:
            loss = train_step(problem.replace(step_fn=None), model, optimizer, batch)
        else:
            loss = inner(problem, model, optimizer, batch)
        constraint(model)
        return loss

    return constrained_step


def _orthogonal(rows: int, columns: int, generator: torch.Generator | None) -> torch.Tensor:
    tall = torch.randn(
        max(rows, columns), min(rows, columns), generator=generator, dtype=torch.float64
    )
    q, r = torch.linalg.qr(tall)
    signs = torch.sign(torch.diagonal(r))
    q = q * torch.where(signs == 0, torch.ones_like(signs), signs)
    return q if rows >= columns else q.T


@torch.no_grad()
def orthogonal_recurrent_init_(
    model: nn.Module,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    per_gate: bool = True,
) -> list[str]:
    r"""Set every recurrent matrix (each gate block) to a random orthogonal matrix times ``gain``.

    .. math::
        A \sim \mathcal{N}(0, 1), \quad A = QR, \quad
        W \leftarrow g\, Q \operatorname{diag}(\operatorname{sign}(\operatorname{diag} R))

    The sign correction makes :math:`Q` Haar-distributed. All eigenvalues of an orthogonal
    matrix have modulus 1, so the Jacobian products through time neither shrink nor grow
    from :math:`W_{hh}` alone (Jefkine 2018, "Orthogonal initialization"). Non-square blocks
    (LSTM ``proj_size``) get orthonormal rows or columns. Source: Saxe, McClelland &
    Ganguli (2014); Henaff, Szlam & LeCun (2016).

    Args:
        model: the model to change (input weights and biases are left alone).
        gain: the scale :math:`g`.
        generator: a CPU ``torch.Generator`` for reproducible samples.
        per_gate: an independent orthogonal block per LSTM/GRU gate (else one for the stack).

    Returns:
        the names of the matrices (or gate blocks) set.
    """
    gain = float(gain)
    if gain != gain or gain == float("inf"):
        raise ValueError(f"gain must be a finite number, got {gain}")
    names = []
    for name, weight in recurrent_weights(model, per_gate=per_gate):
        sample = _orthogonal(weight.shape[0], weight.shape[1], generator)
        weight.copy_((gain * sample).to(dtype=weight.dtype, device=weight.device))
        names.append(name)
    return names
