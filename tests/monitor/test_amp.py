"""Mixed precision: bf16 autocast and half-precision weights, GradScaler's skipped steps
(recorded as ``amp_skipped``, not diagnosed as exploding or non-finite while transient)
and a collapsing loss scale (``amp_scale_collapse``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from graddoctor import Monitor, diagnose, open_run
from graddoctor.diagnosis.amp import ScalerHistory
from graddoctor.diagnosis.thresholds import COLLAPSE_HALVINGS, SKIPPED_WINDOW
from graddoctor.probes.parameters import GRAD_STATS, WEIGHT_STATS

from .. import reference

RTOL = 1e-5


def _close(measured: float, expected: float, rtol: float = RTOL) -> bool:
    if np.isnan(expected):
        return bool(np.isnan(measured))
    if np.isinf(expected):
        return measured == expected
    return abs(measured - expected) <= rtol * abs(expected) + 1e-9


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 1))


def _data(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 6, generator=g), torch.randn(16, 1, generator=g)) for _ in range(steps)]


def _check_against(run, expected_grads: dict, expected_weights: dict, names: list[str], rtol: float = RTOL) -> None:
    for stat in GRAD_STATS + WEIGHT_STATS:
        steps, recorded_names, values = run.series(stat)
        assert recorded_names == names
        source = expected_grads if stat in GRAD_STATS else expected_weights
        assert list(steps) == sorted(source)
        for i, step in enumerate(steps):
            for j, name in enumerate(names):
                want = source[step][name][stat]
                assert _close(values[i, j], want, rtol), (stat, step, name, values[i, j], want)


# -- bf16 ------------------------------------------------------------------------------
def test_bf16_autocast_statistics_equal_reference(tmp_path):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    named = list(model.named_parameters())
    grads, weights = {}, {}
    with Monitor(model, optimizer, path=tmp_path / "bf16.gdr") as mon:
        for step, (x, y) in enumerate(_data(4)):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            assert out.dtype == torch.bfloat16  # autocast really ran the layers in bf16
            loss = F.mse_loss(out.float(), y)
            loss.backward()
            grads[step] = reference.grad_stats(named)
            before = reference.weight_copies(named)
            optimizer.step()
            weights[step] = reference.weight_stats(named, before)
            mon.log(loss=loss)
    run = open_run(tmp_path / "bf16.gdr")
    assert np.all(np.isfinite(run.series("grad_norm")[2]))
    _check_against(run, grads, weights, [n for n, _ in named])
    assert diagnose(run).kinds() == []


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_are_measured_in_float32(dtype, tmp_path):
    """Norms of bf16/fp16 tensors accumulate in float32: no bf16 rounding, no fp16 overflow."""
    model = _model().to(dtype)
    with torch.no_grad():
        model[0].weight.fill_(300.0)  # norm 300 * sqrt(72) = 2546: squares overflow fp16 (65504)
        model[0].weight[0, 0] = 301.0
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    named = list(model.named_parameters())
    x, y = _data(1)[0]
    with Monitor(model, optimizer, path=tmp_path / "half.gdr", activations_every=None):
        optimizer.zero_grad()
        F.mse_loss(model(x.to(dtype)).float(), y).backward()
        grads = {0: reference.grad_stats(named)}
        before = reference.weight_copies(named)
        optimizer.step()
        weights = {0: reference.weight_stats(named, before)}
    run = open_run(tmp_path / "half.gdr")
    assert np.isfinite(run.at("weight_norm")[2]).all()
    # update_norm is a difference of two half-precision weights, rounded once in their dtype
    weights_no_update = {0: {n: {**v, "update_norm": np.nan, "update_ratio": np.nan} for n, v in weights[0].items()}}
    for stat in ("grad_norm", "grad_max", "weight_norm"):
        _, names, values = run.series(stat)
        source = grads if stat in GRAD_STATS else weights_no_update
        for j, name in enumerate(names):
            assert _close(values[0, j], source[0][name][stat]), (dtype, stat, name)


# -- GradScaler ------------------------------------------------------------------------
def _scaled_training(tmp_path, steps: int, inf_steps: set[int], *, name: str = "amp.gdr", **scaler_kwargs):
    """A GradScaler loop with ``inf`` put into one gradient at ``inf_steps`` by a tensor hook;
    returns the run and the naive expectations (on the unscaled gradients)."""
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", **scaler_kwargs)
    named = list(model.named_parameters())
    current = {"step": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        if current["step"] in inf_steps:
            grad = grad.clone()
            grad[0, 0] = float("inf")
        return grad

    model[2].weight.register_hook(poison)
    grads, weights, scales, stepped = {}, {}, {}, {}
    with Monitor(model, optimizer, path=tmp_path / name, scaler=scaler) as mon:
        for step, (x, y) in enumerate(_data(steps)):
            current["step"] = step
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.mse_loss(model(x).float(), y)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # the gradients the Monitor must see
            grads[step] = reference.grad_stats(named)
            before = reference.weight_copies(named)
            scales[step] = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            weights[step] = reference.weight_stats(named, before)
            stepped[step] = any(not np.array_equal(before[n], reference.as_numpy(p)) for n, p in named)
            mon.log(loss=loss)
    assert "step" not in scaler.__dict__  # the scaler is as it was
    pickle.dumps(scaler.state_dict())
    return open_run(tmp_path / name), grads, weights, scales, stepped, [n for n, _ in named]


def test_skipped_step_is_recorded_with_unscaled_gradients(tmp_path):
    run, grads, weights, scales, stepped, names = _scaled_training(tmp_path, 6, {3}, init_scale=2.0**10)
    assert [stepped[s] for s in range(6)] == [True, True, True, False, True, True]  # the scaler skipped step 3
    steps, skipped = run.scalars("amp_skipped")
    assert list(steps) == list(range(6)) and list(skipped) == [0, 0, 0, 1, 0, 0]
    scale_steps, recorded_scales = run.scalars("amp_scale")
    assert list(scale_steps) == list(range(6))
    assert list(recorded_scales) == [scales[s] for s in range(6)]
    assert recorded_scales[4] == recorded_scales[3] / 2  # the backoff after the skip
    _check_against(run, grads, weights, names)  # step 3 included: inf where it was, update 0
    _, _, nonfinite = run.series("grad_nonfinite")
    assert nonfinite[3, names.index("2.weight")] == 1
    assert list(run.scalars("loss")[0]) == list(range(6))


def test_transient_skip_is_not_exploding_or_nonfinite(tmp_path):
    run, *_ = _scaled_training(tmp_path, 8, {2, 5}, init_scale=2.0**10)
    diagnosis = diagnose(run)
    assert not set(diagnosis.kinds("info")) & {"exploding_gradients", "nonfinite", "amp_scale_collapse"}, (
        diagnosis.to_json())


def test_scale_collapse_is_its_own_finding(tmp_path):
    steps = 16
    run, *_ = _scaled_training(tmp_path, steps, set(range(2, steps)), init_scale=2.0**16)
    _, scales = run.scalars("amp_scale")
    assert np.log2(scales[0] / scales[-1]) > COLLAPSE_HALVINGS  # the naive criterion holds
    diagnosis = diagnose(run)
    found = diagnosis.of_kind("amp_scale_collapse")
    assert len(found) == 1, diagnosis.to_json()
    finding = found[0]
    assert finding.severity in ("warning", "critical")
    assert finding.evidence["skipped_steps"] == steps - 2
    assert finding.evidence["halvings"] == pytest.approx(np.log2(scales[0] / scales[-1]), rel=1e-3)
    assert finding.layers == ["2"]  # the layer whose gradient overflowed
    assert finding.remedies[:2] == ["lower_lr", "clip_norm"]
    assert "bfloat16" in finding.evidence["advice"]
    # the scale used at step 2 + k is 2^(16 - k): below 2^16 / 2^10 from k = 11 on
    assert finding.first_step == 2 + int(COLLAPSE_HALVINGS) + 1


def test_mostly_skipped_recent_steps_are_a_collapse_without_scale_drop(tmp_path):
    """Two skips then one clean step, growth x4 after each clean step: the scale holds, 2/3 skipped."""
    steps = SKIPPED_WINDOW + 4
    inf_steps = {s for s in range(steps) if s % 3 != 2}
    run, *_ = _scaled_training(tmp_path, steps, inf_steps, init_scale=2.0**10, growth_factor=4.0,
                               growth_interval=1)
    _, scales = run.scalars("amp_scale")
    assert np.log2(scales[0] / scales.min()) <= 2
    finding = diagnose(run).of_kind("amp_scale_collapse")
    assert finding and finding[0].evidence["skipped_fraction_recent"] == pytest.approx(
        np.mean([s in inf_steps for s in range(steps - SKIPPED_WINDOW, steps)]), abs=1e-3)


def test_scaler_history_criteria_against_direct_arithmetic():
    steps = np.arange(30)
    ok = ScalerHistory(steps, np.zeros(30), steps, np.full(30, 2.0**16))
    assert not ok.collapsed() and ok.halvings() == 0
    fell = ScalerHistory(steps, np.zeros(30), steps, 2.0 ** (16 - np.minimum(steps, 11)))
    assert fell.halvings() == 11 and fell.collapsed()
    skipped = np.array([1.0 if s % 4 else 0.0 for s in steps])  # 3 of 4 skipped
    busy = ScalerHistory(steps, skipped, steps, np.full(30, 8.0))
    assert busy.recent_skipped_fraction() == pytest.approx(np.mean(skipped[-SKIPPED_WINDOW:]))
    assert busy.collapsed()
    short = ScalerHistory(steps[:5], np.ones(5), steps[:5], np.full(5, 8.0))
    assert short.recent_skipped_fraction() is None and not short.collapsed()  # calibration, not collapse


def test_fused_optimizer_reports_found_inf_and_unscaled_norms(tmp_path):
    """Fused Adam unscales inside its own step: the scaler always calls it and passes found_inf."""
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    named = list(model.named_parameters())
    expected = {}
    with Monitor(model, optimizer, path=tmp_path / "fused.gdr", scaler=scaler):
        for step, (x, y) in enumerate(_data(4)):
            optimizer.zero_grad()
            scaler.scale(F.mse_loss(model(x), y)).backward()
            if step == 2:
                model[0].weight.grad[1, 1] = float("inf")
            scale = scaler.get_scale()
            expected[step] = {n: s["grad_norm"] / scale for n, s in reference.grad_stats(named).items()}
            scaler.step(optimizer)
            scaler.update()
    run = open_run(tmp_path / "fused.gdr")
    assert list(run.scalars("amp_skipped")[1]) == [0, 0, 1, 0]
    _, names, values = run.series("grad_norm")
    for step in range(4):
        for j, name in enumerate(names):
            assert _close(values[step, j], expected[step][name]), (step, name)
    assert np.all(run.series("update_norm")[2][2] == 0)  # the fused step skipped itself


def test_manual_mode_with_scaler(tmp_path):
    """A framework callback: before_step()/after_step() around scaler.step()."""
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    with Monitor(model, path=tmp_path / "manual.gdr", scaler=scaler) as mon:
        for step, (x, y) in enumerate(_data(3)):
            optimizer.zero_grad()
            scaler.scale(F.mse_loss(model(x), y)).backward()
            if step == 1:
                model[0].bias.grad[0] = float("nan")
            scaler.unscale_(optimizer)
            mon.before_step()
            scaler.step(optimizer)
            scaler.update()
            mon.after_step()
    run = open_run(tmp_path / "manual.gdr")
    assert list(run.scalars("amp_skipped")[1]) == [0, 1, 0]
    assert list(run.scalars("amp_scale")[1]) == [256.0, 256.0, 128.0]
    assert np.all(run.series("update_norm")[2][1] == 0)


def test_disabled_scaler_records_no_amp_scalars(tmp_path):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with Monitor(model, optimizer, path=tmp_path / "off.gdr", scaler=scaler):
        x, y = _data(1)[0]
        scaler.scale(F.mse_loss(model(x), y)).backward()
        scaler.step(optimizer)
        scaler.update()
    run = open_run(tmp_path / "off.gdr")
    assert "amp_skipped" not in run.scalar_names() and list(run.steps()) == [0]


def test_bad_scaler_and_distributed_mode(tmp_path):
    model = _model()
    with pytest.raises(TypeError, match="GradScaler"):
        Monitor(model, path=tmp_path / "a.gdr", scaler=object())
    with pytest.raises(ValueError, match="distributed must be one of"):
        Monitor(model, path=tmp_path / "b.gdr", distributed="everywhere")
    with pytest.raises(ValueError, match="init_process_group"):
        Monitor(model, path=tmp_path / "c.gdr", distributed="sharded")
