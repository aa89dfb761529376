"""The model's structure as recorded with a run: modules, types, families, depths and parameter shapes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._module_types import module_families
from ._wrappers import flat_parameter_shapes, module_type_name, named_modules, unwrap_model


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Each module's name, type, families, depth and parameters (shapes, counts), in model order.

    ``families`` is the module's taxonomy (``graddoctor._modules.module_families``), so a
    reader of the run never guesses from type names.

    Wrappers are looked through: a DDP, FSDP or compiled model is summarised as the plain
    model (names without ``module.``, FSDP2's ``FSDPLinear`` as ``Linear``, global shapes).
    """
    model = unwrap_model(model)
    flat_shapes = flat_parameter_shapes(model)
    modules = []
    total = trainable = 0
    seen: set[int] = set()  # tied parameters count once
    for index, (name, module) in enumerate(named_modules(model)):
        params = []
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{name}.{p_name}" if name else p_name
            shape = flat_shapes.get(full, list(p.shape))
            numel = int(torch.Size(shape).numel())
            params.append(
                {"name": p_name, "shape": shape, "numel": numel, "trainable": p.requires_grad}
            )
            if id(p) not in seen:
                seen.add(id(p))
                total += numel
                trainable += numel if p.requires_grad else 0
        modules.append(
            {
                "index": index,
                "name": name,
                "type": module_type_name(module),
                "families": module_families(module),
                "depth": 0 if name == "" else name.count(".") + 1,
                "leaf": not any(True for _ in module.children()),
                "params": params,
                "param_count": sum(p["numel"] for p in params),
            }
        )
    return {
        "type": module_type_name(model),
        "modules": modules,
        "param_count": total,
        "trainable_count": trainable,
    }
