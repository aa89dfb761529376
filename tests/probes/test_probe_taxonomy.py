"""The activation probe and the model summary read the module taxonomy (graddoctor._modules)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from graddoctor import Monitor, model_summary, open_run
from graddoctor._module_types import module_families


def _module_stats(model: nn.Module, x: torch.Tensor, tmp_path) -> dict[str, dict[str, float]]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, optimizer, path=tmp_path / "r.gdr", activations_every=1) as mon:
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
        mon.log(loss=0.0)
    run = open_run(tmp_path / "r.gdr")
    out: dict[str, dict[str, float]] = {}
    for stat in ("act_saturated", "act_dead"):
        _, names, values = run.series(stat)
        for j, name in enumerate(names):
            out.setdefault(name, {})[stat] = float(values[0, j])
    return out


def test_relu6_is_a_rectifier_not_saturating(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU6(), nn.Linear(16, 1))
    x = torch.randn(64, 4) * 10
    stats = _module_stats(model, x, tmp_path)
    assert np.isnan(stats["1"]["act_saturated"])
    hidden = model[1](model[0](x)).detach()
    want = sum(1 for unit in hidden.T if bool((unit == 0).all())) / hidden.shape[1]
    assert stats["1"]["act_dead"] == want


def test_logsigmoid_saturates_near_zero(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.LogSigmoid(), nn.Linear(16, 1))
    x = torch.randn(64, 4) * 3
    stats = _module_stats(model, x, tmp_path)
    out = model[1](model[0](x)).detach().flatten().tolist()
    want = sum(1 for v in out if v >= -0.01) / len(out)  # derivative 1 - e^y below ~0.01
    assert 0 < want < 1
    assert abs(stats["1"]["act_saturated"] - want) < 1e-6
    assert np.isnan(stats["1"]["act_dead"])


def test_model_summary_records_families():
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU6(), nn.Flatten(), nn.Linear(8, 8), nn.LogSigmoid(),
    )  # fmt: skip
    summary = model_summary(model)
    modules = dict(model.named_modules())
    for row in summary["modules"]:
        assert row["families"] == module_families(modules[row["name"]])
    by_name = {row["name"]: row["families"] for row in summary["modules"]}
    assert by_name["2"] == ["rectifier", "non_saturating"] and by_name["5"] == ["saturating"]
    assert "weight_layer" in by_name["0"] and by_name["1"] == ["normalization"]
