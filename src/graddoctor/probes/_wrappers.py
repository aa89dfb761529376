"""Seeing through training wrappers: DDP, FSDP1, activation checkpointing, ``torch.compile``.

A wrapped model names its parameters and modules with the wrapper's prefixes
(``module.`` for DDP, ``_fsdp_wrapped_module.`` for FSDP1, ``_orig_mod.`` for
``torch.compile``) and FSDP2 renames module classes (``Linear`` -> ``FSDPLinear``).
graddoctor records the names and types of the plain model instead, so that a run
recorded under DDP or FSDP compares column by column with a single-process run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

# path components that wrappers insert between a module and its child
WRAPPER_COMPONENTS = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod")
# wrapper modules whose only job is to hold the real module (named by class, no import)
_WRAPPER_CLASSES = ("FullyShardedDataParallel", "CheckpointWrapper", "OffloadWrapper")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel / ``torch.compile`` wrappers (itself when unwrapped).

    Their ``module.`` / ``_orig_mod.`` prefixes are stripped this way, so the recorded names
    equal the single-process model's names. FSDP1 and checkpoint wrappers stay in place
    (they own the sharded parameters); ``clean_name`` removes their components instead.
    """
    seen = 0
    while seen < 8:  # wrappers nest a few levels at most
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
        seen += 1
    return model


def clean_name(name: str) -> str:
    """A parameter or module name without wrapper components: ``a._fsdp_wrapped_module.b`` -> ``a.b``."""
    if not any(c in name for c in WRAPPER_COMPONENTS):
        return name
    return ".".join(part for part in name.split(".") if part not in WRAPPER_COMPONENTS)


def is_wrapper(module: nn.Module) -> bool:
    """An FSDP1 / checkpoint wrapper: a module that only holds the real one."""
    cls = type(module)
    return cls.__name__ in _WRAPPER_CLASSES and cls.__module__.startswith("torch.distributed")


def module_type_name(module: nn.Module) -> str:
    """The class name of the user's module: FSDP2's ``FSDPLinear`` reads ``Linear``."""
    for cls in type(module).__mro__:
        if not cls.__module__.startswith("torch.distributed"):
            return cls.__name__
    return type(module).__name__


def named_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``model.named_modules()`` with clean names, wrapper modules left out."""
    for name, module in model.named_modules():
        if not is_wrapper(module):
            yield clean_name(name), module


def named_parameters(model: nn.Module, recurse: bool = True) -> Iterator[tuple[str, nn.Parameter]]:
    """``model.named_parameters()`` with clean names (tied parameters appear once)."""
    for name, param in model.named_parameters(recurse=recurse):
        yield clean_name(name), param


def flat_parameter_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Original shapes of FSDP1-flattened parameters by clean name (empty without FSDP1).

    FSDP1 with ``use_orig_params=True`` shows each parameter as a flat view of this
    rank's shard; its ``FlatParameter`` remembers the shapes the user's model had.
    """
    shapes: dict[str, list[int]] = {}
    for name, module in model.named_modules():
        handle = getattr(module, "_handle", None) if is_wrapper(module) else None
        flat = getattr(handle, "flat_param", None)
        fqns, sizes = getattr(flat, "_fqns", None), getattr(flat, "_shapes", None)
        if not fqns or not sizes:
            continue
        prefix = clean_name(name)
        for fqn, size in zip(fqns, sizes, strict=False):
            full = clean_name(f"{prefix}.{fqn}" if prefix else fqn)
            shapes[full] = list(torch.Size(size))
    return shapes
