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
        out[name] = {
            "grad_norm": float(np.sqrt(total)),
            "grad_max": biggest,
            "grad_nonfinite": float(bad),
        }
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


# modules whose output's units are the channels: convolutions and channel norms
CHANNEL_LAYERS = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d,
    nn.InstanceNorm3d, nn.GroupNorm, nn.LocalResponseNorm,
)  # fmt: skip
INSTANCE_NORM_UNBATCHED_DIMS = {nn.InstanceNorm1d: 2, nn.InstanceNorm2d: 3, nn.InstanceNorm3d: 4}
# modules whose output's units are the last dimension
FEATURE_LAYERS = (
    nn.Linear, nn.Bilinear, nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell,
    nn.LayerNorm, nn.MultiheadAttention, *([nn.RMSNorm] if hasattr(nn, "RMSNorm") else []),
)  # fmt: skip
# parameter-free modules that keep the unit axis although they may change other dims
KEEP_AXIS = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.MaxPool1d, nn.MaxPool2d,
    nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)  # fmt: skip


def unit_axis(module: nn.Module, x, y: torch.Tensor, axis_of_input: int | None) -> int:
    """The axis of ``y`` whose entries are the units (what can die) of ``module``'s output.

    A convolution or channel norm: its channel axis; a dense, recurrent, attention or
    layer norm: the last axis; a module that keeps its input's axis (same shape, or a
    pool/dropout) whose input was a watched output of this forward: that output's axis;
    else channels (1) for 4+ dims and the last axis otherwise.
    """
    if isinstance(module, CHANNEL_LAYERS):
        if isinstance(
            module,
            (
                nn.Conv1d,
                nn.Conv2d,
                nn.Conv3d,
                nn.ConvTranspose1d,
                nn.ConvTranspose2d,
                nn.ConvTranspose3d,
            ),
        ):
            return y.dim() - len(module.kernel_size) - 1
        for kind, unbatched in INSTANCE_NORM_UNBATCHED_DIMS.items():
            if isinstance(module, kind) and y.dim() == unbatched:
                return 0
        return 1
    if isinstance(module, FEATURE_LAYERS) or isinstance(
        getattr(module, "weight_hh", None), nn.Parameter
    ):
        return y.dim() - 1
    keeps = isinstance(module, KEEP_AXIS) or (isinstance(x, torch.Tensor) and x.shape == y.shape)
    if axis_of_input is not None and keeps:
        return axis_of_input
    return 1 if y.dim() >= 4 else y.dim() - 1


def is_rectifier(module: nn.Module) -> bool:
    return isinstance(module, (nn.ReLU, nn.ReLU6)) or (
        isinstance(module, nn.Threshold) and module.value == 0
    )


def output_stats(module: nn.Module, calls: list[tuple[np.ndarray, int]]) -> dict[str, float]:
    """act_mean, act_std, act_saturated, act_dead, act_nonfinite, act_max of one module's outputs.

    ``calls`` holds each call's output and unit axis. Every statistic pools all calls:
    mean, std and saturated fraction over the union of the elements, non-finite counts
    summed, a unit dead when it is 0 in every call (per-call dead units over all units
    when the calls differ in unit count).
    """
    flat = np.concatenate([y.ravel() for y, _ in calls])
    stats = {
        "act_mean": float(flat.mean()),
        "act_std": float(flat.std()),
        "act_nonfinite": float((~np.isfinite(flat)).sum()),
        "act_max": float(max(abs(v) for v in flat)) if not np.isnan(flat).any() else np.nan,
    }
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
    if is_rectifier(module):
        per_call = [np.moveaxis(y, axis, 0).reshape(y.shape[axis], -1) for y, axis in calls]
        if len({units.shape[0] for units in per_call}) == 1:  # the same units: dead in every call
            joined = np.concatenate(per_call, axis=1)
            dead = sum(1 for unit in joined if np.all(unit == 0))
            stats["act_dead"] = dead / joined.shape[0]
        else:
            dead = sum(sum(1 for unit in units if np.all(unit == 0)) for units in per_call)
            stats["act_dead"] = dead / sum(units.shape[0] for units in per_call)
    else:
        stats["act_dead"] = np.nan
    return stats


def monitored_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The default selection: leaf modules, and modules other than the model itself that
    hold parameters of their own (``nn.MultiheadAttention`` runs its children functionally)."""
    out = {}
    for name, module in model.named_modules():
        leaf = len(list(module.children())) == 0
        own = any(p is not None for p in module._parameters.values())
        if leaf or (own and module is not model):
            out[name] = module
    return out


class NaiveActivationRecorder:
    """Forward hooks that keep numpy copies of every call's output and gradient.

    Args:
        modules: the modules to record, by name.
        watch: a model whose every module's outputs are followed for their unit axis
            (default: only ``modules``).
    """

    def __init__(self, modules: dict[str, nn.Module], watch: nn.Module | None = None) -> None:
        self.modules = modules
        self.outputs: dict[str, list[tuple[np.ndarray, int]]] = {}
        self.grads: dict[str, list[np.ndarray]] = {}
        self.produced: dict[int, tuple[torch.Tensor, int]] = {}  # id -> (output, unit axis)
        self.handles = []
        names = {id(m): n for n, m in modules.items()}
        watched = list(modules.values()) if watch is None else list(watch.modules())
        for module in {id(m): m for m in watched}.values():
            self.handles.append(module.register_forward_hook(self._hook(names.get(id(module)))))

    def _hook(self, name):
        def hook(module, args, output):
            y = first_tensor(output)
            if y is None:
                return
            x = first_tensor(args) if args else None
            known = self.produced.get(id(x)) if x is not None else None
            axis_in = known[1] if known is not None and known[0] is x else None
            axis = unit_axis(module, x, y, axis_in)
            self.produced[id(y)] = (y, axis)
            if name is None:
                return
            self.outputs.setdefault(name, []).append((as_numpy(y).copy(), axis))
            if y.requires_grad:
                y.register_hook(
                    lambda g: self.grads.setdefault(name, []).append(as_numpy(g).copy())
                )

        return hook

    def stats(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, module in self.modules.items():
            if name not in self.outputs:
                continue
            s = output_stats(module, self.outputs[name])
            grads = self.grads.get(name)
            s["out_grad_norm"] = (
                float(np.sqrt(sum((g**2).sum() for g in grads))) if grads else np.nan
            )
            out[name] = s
        return out

    def clear(self) -> None:
        self.outputs.clear()
        self.grads.clear()
        self.produced.clear()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def is_sequence_call(module: nn.Module, x: torch.Tensor) -> bool:
    """A call that runs a whole sequence (vs one time step of a cell)."""
    if isinstance(module, (nn.RNNCell, nn.LSTMCell, nn.GRUCell)):
        return False
    if hasattr(module, "batch_first"):  # nn.RNN/LSTM/GRU and graddoctor's layers: [T, I] unbatched
        return True
    return x.dim() == 3


class NaiveTimeGradRecorder:
    """dLoss/d(input) of every call of recurrent modules, kept by ``retain_grad`` on a copy.

    ``stats()`` gives, per module, one value per time step of each sequence call (the L2
    norm over batch and features of dLoss/dx_t) and one value per call of a cell (the L2
    norm of dLoss/d(its input)), concatenated in call order; NaN for a call that got no
    gradient.
    """

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.calls: dict[str, list[tuple[torch.Tensor, int | None]]] = {}
        self.handles = [m.register_forward_pre_hook(self._pre_hook(n)) for n, m in modules.items()]

    def _pre_hook(self, name):
        def pre_hook(module, args):
            x = args[0]
            copy = x.clone() if x.requires_grad else x.detach().clone().requires_grad_(True)
            copy.retain_grad()
            time_axis = None
            if is_sequence_call(module, x):
                time_axis = 1 if x.dim() == 3 and getattr(module, "batch_first", False) else 0
            self.calls.setdefault(name, []).append((copy, time_axis))
            return (copy, *args[1:])

        return pre_hook

    def stats(self) -> dict[str, np.ndarray]:
        out = {}
        for name, calls in self.calls.items():
            values = []
            for copy, time_axis in calls:
                steps = 1 if time_axis is None else copy.shape[time_axis]
                if copy.grad is None:
                    values += [np.nan] * steps
                    continue
                g = as_numpy(copy.grad)
                if time_axis is None:
                    values.append(float(np.sqrt(sum(v * v for v in g.ravel()))))
                    continue
                for t in range(steps):
                    slab = np.take(g, t, axis=time_axis)
                    values.append(float(np.sqrt(sum(v * v for v in slab.ravel()))))
            out[name] = np.array(values)
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def running_median(values, window: int) -> list[float]:
    """The median of the last ``window`` values at each index, one slice at a time."""
    out = []
    for i in range(len(values)):
        chunk = sorted(values[max(0, i - window + 1) : i + 1])
        if any(v != v for v in chunk):  # NaN
            out.append(float("nan"))
            continue
        middle = len(chunk) // 2
        out.append(chunk[middle] if len(chunk) % 2 else (chunk[middle - 1] + chunk[middle]) / 2)
    return out
