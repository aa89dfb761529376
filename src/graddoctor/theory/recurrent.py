r"""The recurrent Jacobian bound and the spectra of recurrent weight matrices.

For :math:`h_i = f(W_{hx} x_i + W_{hh} h_{i-1} + b)` the Jacobian through time is a
product of :math:`t - k` factors :math:`\operatorname{diag}(f'(z_i)) W_{hh}`, so its norm
is at most :math:`(\gamma_W \gamma_h)^{t-k}` with :math:`\gamma_W = \|W_{hh}\|_2` and
:math:`\gamma_h = \sup |f'|`.

Source: Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
networks", ICML 2013; as written up by Jefkine, "Vanishing and exploding gradient
problems" (2018), eq. 10-12.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

_DERIVATIVE_BOUNDS = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "linear": 1.0}

# PyTorch stores the gate blocks of weight_hh stacked along dim 0 in this order.
_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")


def activation_derivative_bound(activation: str) -> float:
    r"""Return :math:`\gamma_h = \sup_z |f'(z)|` for a recurrent activation.

    .. math::
        \gamma_h = 1 \ (\tanh), \quad \tfrac14 \ (\sigma), \quad 1 \ (\mathrm{relu}),
        \quad 1 \ (\mathrm{linear})

    Source: Jefkine (2018) eq. 10-11, after Pascanu et al. (2013).

    Args:
        activation: one of ``"tanh"``, ``"sigmoid"``, ``"relu"``, ``"linear"``.

    Returns:
        the bound as a float.
    """
    if not isinstance(activation, str) or activation not in _DERIVATIVE_BOUNDS:
        raise ValueError(
            f"activation must be one of {sorted(_DERIVATIVE_BOUNDS)}, got {activation!r}"
        )
    return _DERIVATIVE_BOUNDS[activation]


def jacobian_bound(gamma_w: float, t_minus_k: Any, activation: str = "tanh") -> Any:
    r"""Upper bound on the norm of the recurrent Jacobian :math:`\partial h_t / \partial h_k`.

    .. math::
        \left\| \frac{\partial h_t}{\partial h_k} \right\|_2
        = \left\| \prod_{i=k+1}^{t} \operatorname{diag}(f'(z_i)) W_{hh} \right\|_2
        \le (\gamma_W \gamma_h)^{t-k}

    With :math:`\gamma_W \gamma_h < 1` gradients through time vanish at least
    geometrically; :math:`\gamma_W \gamma_h > 1` is necessary (not sufficient) for them to
    explode. Source: Pascanu, Mikolov & Bengio (2013); Jefkine (2018) eq. 10-12.

    Args:
        gamma_w: :math:`\gamma_W`, the largest singular value of :math:`W_{hh}` (>= 0),
            e.g. from :func:`largest_singular_value`.
        t_minus_k: the number of time steps :math:`t - k` (a non-negative int, or an
            array-like of them).
        activation: the recurrent non-linearity, see :func:`activation_derivative_bound`.

    Returns:
        a float for an int ``t_minus_k``, else a float64 numpy array of the same shape.
    """
    gamma_h = activation_derivative_bound(activation)
    if isinstance(gamma_w, bool) or not isinstance(gamma_w, numbers.Real):
        raise TypeError(f"gamma_w must be a real number, got {type(gamma_w).__name__}")
    if not np.isfinite(gamma_w) or gamma_w < 0:
        raise ValueError(f"gamma_w must be finite and >= 0 (a matrix norm), got {gamma_w}")
    steps = np.asarray(t_minus_k)
    if steps.dtype == bool or not np.issubdtype(steps.dtype, np.integer):
        raise TypeError(f"t_minus_k must be an int or ints (time steps), got {t_minus_k!r}")
    if np.any(steps < 0):
        raise ValueError(f"t_minus_k must be >= 0 (t is after k), got {t_minus_k!r}")
    with np.errstate(over="ignore"):
        bound = np.power(float(gamma_w) * gamma_h, steps.astype(np.float64))
    return float(bound) if steps.ndim == 0 else bound


def _as_matrix(name: str, matrix: Any) -> torch.Tensor:
    if not isinstance(matrix, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(matrix.shape)}")
    matrix = matrix.detach()
    if matrix.dtype in (torch.float16, torch.bfloat16):
        matrix = matrix.float()
    return matrix


def largest_singular_value(matrix: torch.Tensor) -> float:
    r"""Largest singular value :math:`\sigma_{\max}(W) = \|W\|_2` (the spectral norm).

    .. math::
        \|W\|_2 = \max_{\|v\| = 1} \|W v\| = \sqrt{\lambda_{\max}(W^\top W)}

    Computed with ``torch.linalg.matrix_norm(W, ord=2)``; :math:`\gamma_W` of
    Pascanu et al. (2013).

    Args:
        matrix: a 2-D tensor (half precision is upcast to float32).

    Returns:
        the spectral norm as a float.
    """
    matrix = _as_matrix("matrix", matrix)
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def spectral_radius(matrix: torch.Tensor) -> float:
    r"""Spectral radius :math:`\rho(W) = \max_j |\lambda_j(W)|` of a square matrix.

    .. math::
        \rho(W) = \max_j |\lambda_j(W)| \le \|W\|_2

    :math:`\rho(W_{hh}) < 1` is the echo-state / Pascanu et al. (2013) condition for a
    linear recurrence to forget its past.

    Args:
        matrix: a square 2-D tensor (half precision is upcast to float32).

    Returns:
        the spectral radius as a float.
    """
    matrix = _as_matrix("matrix", matrix)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square for eigenvalues, got shape {tuple(matrix.shape)}")
    return float(torch.linalg.eigvals(matrix).abs().max())


def _spectrum_entry(name: str, block: torch.Tensor, gate: str | None) -> dict[str, Any]:
    if block.ndim == 1:  # a diagonal recurrence (IndRNN style): diag(block)
        block = torch.diag(block.detach())
    square = block.shape[0] == block.shape[1]
    return {
        "name": name,
        "shape": tuple(block.shape),
        "largest_singular_value": largest_singular_value(block),
        "spectral_radius": spectral_radius(block) if square else None,
        "gate": gate,
    }


def _gate_names(module: nn.Module) -> tuple[str, ...] | None:
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return _LSTM_GATES
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return _GRU_GATES
    return None


def _recurrent_parameters(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    if isinstance(module, nn.RNNBase):
        suffixes = ("", "_reverse") if module.bidirectional else ("",)
        return [
            (f"weight_hh_l{layer}{suffix}", getattr(module, f"weight_hh_l{layer}{suffix}"))
            for layer in range(module.num_layers)
            for suffix in suffixes
        ]
    weight = module._parameters.get("weight_hh")
    return [] if weight is None else [("weight_hh", weight)]


def recurrent_spectra(model: nn.Module) -> list[dict[str, Any]]:
    r"""Spectral norm and spectral radius of every recurrent matrix in a model.

    .. math::
        \gamma_W = \|W_{hh}\|_2, \qquad \rho(W_{hh}) = \max_j |\lambda_j(W_{hh})|

    Finds ``weight_hh_l{k}`` / ``weight_hh_l{k}_reverse`` of ``nn.RNN``, ``nn.LSTM`` and
    ``nn.GRU``, and ``weight_hh`` of the cells and of any other module. LSTM matrices are
    split into their 4 gate blocks (``i, f, g, o``) and GRU matrices into 3 (``r, z, n``),
    in PyTorch's storage order. A 1-D ``weight_hh`` is read as the diagonal matrix
    :math:`\operatorname{diag}(w)`. The model is not changed.
    Source: Pascanu, Mikolov & Bengio (2013); Jefkine (2018) eq. 10-12.

    Args:
        model: any ``nn.Module``.

    Returns:
        a list of dicts, one per matrix (or gate block), with keys ``name`` (the
        parameter's name in ``model.named_parameters()``), ``shape`` (of the block),
        ``largest_singular_value`` (float), ``spectral_radius`` (float, ``None`` when the
        block is not square, e.g. LSTM with ``proj_size``) and ``gate`` (``None`` for
        non-gated matrices). Empty when the model has no recurrent matrix.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    entries = []
    for module_name, module in model.named_modules():
        gates = _gate_names(module)
        for parameter_name, weight in _recurrent_parameters(module):
            name = f"{module_name}.{parameter_name}" if module_name else parameter_name
            if weight.ndim not in (1, 2):
                raise ValueError(
                    f"{name} has shape {tuple(weight.shape)}; expected a 2-D recurrent matrix"
                )
            if gates is None or weight.ndim != 2:
                entries.append(_spectrum_entry(name, weight, None))
                continue
            for gate, block in zip(gates, weight.chunk(len(gates), dim=0)):
                entries.append(_spectrum_entry(name, block, gate))
    return entries
