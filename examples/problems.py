"""Problems for ``graddoctor checkup examples/problems.py:NAME`` (or ``examples.problems:NAME``)."""

from collections import OrderedDict

import torch
from torch import nn

from graddoctor import Problem


def _data(seed: int = 0, batches: int = 4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        x = torch.randn(64, 20, generator=g)
        out.append((x, (x[:, :5].sum(1) > 0).long()))
    return out


def deep_sigmoid() -> Problem:
    """A 10-layer sigmoid MLP: gradients vanish towards the input (Glorot & Bengio 2010)."""
    torch.manual_seed(0)
    layers = OrderedDict()
    width = 20
    for i in range(10):
        layers[f"fc{i + 1}"] = nn.Linear(width, 64)
        layers[f"sig{i + 1}"] = nn.Sigmoid()
        width = 64
    layers["out"] = nn.Linear(64, 2)
    return Problem(nn.Sequential(layers), _data(), nn.CrossEntropyLoss(), name="deep-sigmoid")


def healthy_relu() -> Problem:
    """A 4-layer ReLU MLP with He init: trains."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return Problem(model, _data(), nn.CrossEntropyLoss(), name="healthy-relu")
