"""Naive reference implementations, written separately from the library.

Plain Python/numpy loops over parameters and module outputs; no graddoctor code is
imported here, so a bug in the library cannot hide in its own reference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BOUNDS = {
    nn.Sigmoid: (0.0, 1.0),
    nn.Tanh: (-1.0, 1.0),
    nn.Softsign: (-1.0, 1.0),
    nn.Hardsigmoid: (0.0, 1.0),
    nn.LogSigmoid: (-np.inf, 0.0),
}


def as_numpy(t: torch.Tensor) -> np.ndarray:
    if t.is_sparse:
        t = t.to_dense()
    return t.detach().cpu().double().numpy()


def grad_stats(named_params) -> dict[str, dict[str, float]]:
    """grad_norm, grad_max, grad_nonfinite per parameter (NaN without a gradient)."""
    out = {}
    for name, p in named_params:
        if p.grad is None:
            out[name] = {"grad_norm": np.nan, "grad_max": np.nan, "grad_nonfinite": np.nan}
            continue
        g = as_numpy(p.grad).ravel()
        total = 0.0
        biggest = 0.0
        bad = 0
        for value in g:
            total += value * value
            biggest = max(biggest, abs(value))
            bad += 0 if np.isfinite(value) else 1
        out[name] = {"grad_norm": float(np.sqrt(total)), "grad_max": biggest, "grad_nonfinite": float(bad)}
    return out


def weight_copies(named_params) -> dict[str, np.ndarray]:
    return {name: as_numpy(p).copy() for name, p in named_params}


def weight_stats(named_params, before: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for name, p in named_params:
        w = as_numpy(p)
        old = before[name]
        update = float(np.sqrt(((w - old) ** 2).sum()))
        new_norm = float(np.sqrt((w**2).sum()))
        out[name] = {
            "weight_norm": new_norm,
            "update_norm": update,
            "update_ratio": update / new_norm if new_norm > 0 else np.nan,
        }
    return out


def first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    for item in output:
        found = first_tensor(item) if isinstance(item, (tuple, list, dict, torch.Tensor)) else None
        if found is not None and found.is_floating_point():
            return found
    return None


def output_stats(module: nn.Module, y: np.ndarray, conv_like: bool) -> dict[str, float]:
    """act_mean, act_std, act_saturated, act_dead, act_nonfinite of one output array."""
    flat = y.ravel()
    stats = {"act_mean": float(flat.mean()), "act_std": float(flat.std()), "act_nonfinite": float((~np.isfinite(flat)).sum())}
    bounds = None
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):  # ReLU6 rectifies
        bounds = (module.min_val, module.max_val)
    for kind, b in BOUNDS.items():
        if isinstance(module, kind):
            bounds = b
    if bounds is None:
        stats["act_saturated"] = np.nan
    elif bounds[0] == -np.inf:  # LogSigmoid: saturated where its derivative 1 - e^y < ~0.01
        stats["act_saturated"] = sum(1 for v in flat if v >= bounds[1] - 0.01) / flat.size
    else:
        lo, hi = bounds
        margin = 0.01 * (hi - lo)
        count = sum(1 for v in flat if v <= lo + margin or v >= hi - margin)
        stats["act_saturated"] = count / flat.size
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        unit_axis = 1 if conv_like else y.ndim - 1
        moved = np.moveaxis(y, unit_axis, 0).reshape(y.shape[unit_axis], -1)
        dead = sum(1 for unit in moved if np.all(unit == 0))
        stats["act_dead"] = dead / moved.shape[0]
    else:
        stats["act_dead"] = np.nan
    return stats


class NaiveActivationRecorder:
    """Forward hooks that keep numpy copies of outputs and their gradients."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.outputs: dict[str, np.ndarray] = {}
        self.grads: dict[str, list[np.ndarray]] = {}
        self.conv_like: dict[str, bool] = {}
        self.handles = []
        self._last_conv = False
        for name, module in modules.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args, output):
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.BatchNorm2d)):
                self._last_conv = True
            elif isinstance(module, nn.Linear):
                self._last_conv = False
            y = first_tensor(output)
            if y is None:
                return
            self.outputs[name] = as_numpy(y).copy()
            self.conv_like[name] = y.dim() >= 4 or (y.dim() == 3 and self._last_conv)
            if y.requires_grad:
                y.register_hook(lambda g: self.grads.setdefault(name, []).append(as_numpy(g).copy()))

        return hook

    def stats(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, module in self.modules.items():
            if name not in self.outputs:
                continue
            s = output_stats(module, self.outputs[name], self.conv_like[name])
            grads = self.grads.get(name)
            s["out_grad_norm"] = float(np.sqrt(sum((g**2).sum() for g in grads))) if grads else np.nan
            out[name] = s
        return out

    def clear(self) -> None:
        self.outputs.clear()
        self.grads.clear()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
