"""Issue 4's proof that a remedy turns a diagnosis into a healthy one.

Glorot & Bengio (2010): a deep sigmoid network with the standard init loses the
back-propagated signal towards the input. Replacing the sigmoids (ReLU with He init) or
normalising the pre-activations (batch norm) restores it.
"""

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

import graddoctor as gd


def sigmoid20() -> gd.Problem:
    torch.manual_seed(0)
    layers = OrderedDict()
    width = 20
    for i in range(20):
        linear = nn.Linear(width, 64)
        bound = 1 / math.sqrt(width)
        nn.init.uniform_(linear.weight, -bound, bound)
        nn.init.zeros_(linear.bias)
        layers[f"fc{i + 1}"] = linear
        layers[f"sig{i + 1}"] = nn.Sigmoid()
        width = 64
    layers["out"] = nn.Linear(64, 4)
    g = torch.Generator().manual_seed(0)
    centers = 2 * torch.randn(4, 20, generator=g)
    data = []
    for _ in range(4):
        y = torch.randint(0, 4, (64,), generator=g)
        data.append((centers[y] + torch.randn(64, 20, generator=g), y))
    return gd.Problem(nn.Sequential(layers), data, nn.CrossEntropyLoss(), name="sigmoid-20")


def test_sigmoid20_is_diagnosed_vanishing(tmp_path):
    diagnosis = gd.checkup(sigmoid20(), steps=10, run_path=tmp_path / "base.gdr")
    assert "vanishing_gradients" in diagnosis.kinds()
    finding = diagnosis.of_kind("vanishing_gradients")[0]
    assert finding.evidence["axis"] == "depth" and finding.evidence["ratio_first_to_last"] < 1e-6
    assert finding.remedies[0] == "swap_activation" and "batchnorm" in finding.remedies


@pytest.mark.parametrize("remedy", ["swap_activation", "batchnorm"])
def test_remedy_makes_it_healthy(remedy, tmp_path):
    problem = sigmoid20()
    treated = gd.get_remedy(remedy).apply(problem)
    diagnosis = gd.checkup(treated, steps=10, run_path=tmp_path / f"{remedy}.gdr")
    assert diagnosis.healthy, diagnosis.to_json()
    # and the original problem is still the sick one
    assert "vanishing_gradients" in gd.checkup(problem, steps=3, run_path=tmp_path / "again.gdr").kinds()
