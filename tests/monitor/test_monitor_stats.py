"""Every Monitor statistic against the naive reference in tests/reference.py."""

import numpy as np
import pytest
import torch

from graddoctor import Monitor, open_run
from graddoctor.probes.activations import ACTIVATION_STATS
from graddoctor.probes.parameters import GRAD_STATS, WEIGHT_STATS

from .. import reference
from ..models import FAMILIES

RTOL = 1e-5


def close(measured: float, expected: float, scale: float = 1.0) -> bool:
    if np.isnan(expected):
        return np.isnan(measured)
    return abs(measured - expected) <= RTOL * max(abs(expected), 1e-3 * scale) + 1e-7


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parameter_and_activation_stats_match_reference(family, tmp_path):
    model, x, y, loss_fn = FAMILIES[family]()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    leaves = reference.monitored_modules(model)
    expected_grads, expected_weights, expected_acts = {}, {}, {}
    path = tmp_path / "run.gdr"
    with Monitor(model, optimizer, path=path, activations_every=2) as mon:
        for step in range(4):
            naive = reference.NaiveActivationRecorder(leaves) if step % 2 == 0 else None
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            expected_grads[step] = reference.grad_stats(named)
            before = reference.weight_copies(named)
            optimizer.step()
            expected_weights[step] = reference.weight_stats(named, before)
            mon.log(loss=loss)
            if naive is not None:
                expected_acts[step] = naive.stats()
                naive.remove()
    run = open_run(path)
    for stat in GRAD_STATS + WEIGHT_STATS:
        steps, names, values = run.series(stat)
        assert list(steps) == [0, 1, 2, 3]
        assert names == [n for n, _ in named]
        source = expected_grads if stat in GRAD_STATS else expected_weights
        for i, step in enumerate(steps):
            for j, name in enumerate(names):
                want = source[step][name][stat]
                assert close(values[i, j], want), (family, stat, step, name, values[i, j], want)
    for stat in ACTIVATION_STATS:
        steps, names, values = run.series(stat)
        assert list(steps) == [0, 2]
        for i, step in enumerate(steps):
            for j, name in enumerate(names):
                want = expected_acts[step].get(name, {}).get(stat, np.nan)
                scale = expected_acts[step].get(name, {}).get("act_std", 1.0) if stat == "act_mean" else 1.0
                assert close(values[i, j], want, scale), (family, stat, step, name, values[i, j], want)
    losses = run.scalars("loss")[1]
    assert np.all(np.isfinite(losses)) and len(losses) == 4


def test_tied_weights_recorded_once(tmp_path):
    model, x, y, loss_fn = FAMILIES["tied"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, path=tmp_path / "t.gdr") as mon:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        mon.log(loss=0.0)
    names = open_run(tmp_path / "t.gdr").names("parameters")
    assert names.count("embed.weight") == 1 and "out.weight" not in names


def test_frozen_parameters_listed_not_measured(tmp_path):
    model, x, y, loss_fn = FAMILIES["frozen"]()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with Monitor(model, opt, path=tmp_path / "f.gdr"):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    run = open_run(tmp_path / "f.gdr")
    assert "0.weight" not in run.names("parameters")
    assert run.meta["frozen_parameters"] == ["0.weight", "0.bias"]


def test_parameter_without_gradient_this_step_is_nan(tmp_path):
    torch.manual_seed(0)
    used, unused = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    model = torch.nn.ModuleDict({"used": used, "unused": unused})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, path=tmp_path / "u.gdr", activations_every=None):
        opt.zero_grad()
        used(torch.randn(4, 3)).sum().backward()
        opt.step()
    steps, names, values = open_run(tmp_path / "u.gdr").series("grad_norm")
    row = dict(zip(names, values[0]))
    assert np.isfinite(row["used.weight"]) and np.isnan(row["unused.weight"])


def test_sparse_gradients(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(30, 4, sparse=True), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = torch.tensor([[1, 2, 2], [5, 1, 0]])
    with Monitor(model, opt, path=tmp_path / "s.gdr", activations_every=1):
        opt.zero_grad()
        model(tokens).sum().backward()
        expected = reference.grad_stats(list(model.named_parameters()))
        opt.step()
    _, names, values = open_run(tmp_path / "s.gdr").series("grad_norm")
    assert close(values[0, 0], expected["0.weight"]["grad_norm"])


def test_without_optimizer_step_records_gradients(tmp_path):
    model, x, y, loss_fn = FAMILIES["mlp"]()
    with Monitor(model, path=tmp_path / "n.gdr") as mon:
        for _ in range(3):
            model.zero_grad()
            loss_fn(model(x), y).backward()
            expected = reference.grad_stats(list(model.named_parameters()))
            mon.step()
    steps, names, values = open_run(tmp_path / "n.gdr").series("grad_norm")
    assert list(steps) == [0, 1, 2]
    assert close(values[2, 0], expected[names[0]]["grad_norm"])
    assert np.all(np.isnan(open_run(tmp_path / "n.gdr").series("update_norm")[2]))


def test_grad_scaler_records_unscaled_gradients(tmp_path):
    model, x, y, loss_fn = FAMILIES["mlp"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    named = list(model.named_parameters())
    with Monitor(model, opt, path=tmp_path / "amp.gdr") as mon:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        torch.autograd.backward(loss, retain_graph=True)
        unscaled = reference.grad_stats(named)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaled = reference.grad_stats(named)
        scaler.step(opt)
        scaler.update()
        mon.log(loss=loss)
    _, names, values = open_run(tmp_path / "amp.gdr").series("grad_norm")
    for j, name in enumerate(names):
        assert close(values[0, j], unscaled[name]["grad_norm"])
        assert scaled[name]["grad_norm"] > 1000 * unscaled[name]["grad_norm"]


def test_time_gradients_of_recurrent_modules(tmp_path):
    model, x, y, loss_fn = FAMILIES["lstm"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, path=tmp_path / "r.gdr", activations_every=1):
        opt.zero_grad()
        xr = x.clone().requires_grad_(True)
        loss_fn(model(xr), y).backward()
        opt.step()
    expected = np.sqrt((reference.as_numpy(xr.grad) ** 2).sum(axis=(0, 2)))
    steps, names, values = open_run(tmp_path / "r.gdr").series("time_grad_norm:lstm")
    assert names == [str(t) for t in range(7)]
    np.testing.assert_allclose(values[0], expected, rtol=1e-5)


def test_dead_units_are_channels_for_conv_and_features_for_linear(tmp_path):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 4, 1)
    linear = torch.nn.Linear(5, 6)
    with torch.no_grad():
        conv.bias[:2] = -100.0  # channels 0 and 1 never fire
        linear.bias[:3] = -100.0  # features 0..2 never fire
    model = torch.nn.ModuleDict({"conv": conv, "crelu": torch.nn.ReLU(), "linear": linear, "lrelu": torch.nn.ReLU()})
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x_img, x_vec = torch.randn(3, 2, 5, 5), torch.randn(7, 5)
    with Monitor(model, opt, path=tmp_path / "d.gdr", activations_every=1) as mon:
        naive = reference.NaiveActivationRecorder({"crelu": model["crelu"], "lrelu": model["lrelu"]})
        opt.zero_grad()
        out = model["crelu"](model["conv"](x_img)).sum() + model["lrelu"](model["linear"](x_vec)).sum()
        out.backward()
        opt.step()
        mon.log(loss=out)
        expected = naive.stats()
    _, names, values = open_run(tmp_path / "d.gdr").series("act_dead")
    row = dict(zip(names, values[0]))
    assert row["crelu"] == pytest.approx(0.5) == expected["crelu"]["act_dead"]
    assert row["lrelu"] == pytest.approx(0.5) == expected["lrelu"]["act_dead"]


def test_nonfinite_gradients_counted(tmp_path):
    model, x, y, loss_fn = FAMILIES["mlp"]()
    with Monitor(model, path=tmp_path / "nan.gdr", activations_every=None) as mon:
        loss_fn(model(x), y).backward()
        mon.step()
        model[0].weight.grad[0, :3] = float("nan")
        model[0].weight.grad[1, 0] = float("inf")
        model[2].bias.grad[4] = float("-inf")
        expected = reference.grad_stats(list(model.named_parameters()))
        mon.step()
    run = open_run(tmp_path / "nan.gdr")
    _, names, counts = run.series("grad_nonfinite")
    assert counts[0].sum() == 0
    got = dict(zip(names, counts[1]))
    assert got == {n: expected[n]["grad_nonfinite"] for n in names}
    assert got["0.weight"] == 4 and got["2.bias"] == 1
    _, _, grad_max = run.series("grad_max")
    assert np.isnan(grad_max[1, 0]) and grad_max[1, 3] == np.inf


def test_manual_before_and_after_step_record_updates(tmp_path):
    model, x, y, loss_fn = FAMILIES["mlp"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    named = list(model.named_parameters())
    with Monitor(model, path=tmp_path / "m.gdr") as mon:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        mon.before_step()
        before = reference.weight_copies(named)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)  # clipping after the measurement
        opt.step()
        expected = reference.weight_stats(named, before)
        mon.after_step()
    run = open_run(tmp_path / "m.gdr")
    _, names, updates = run.series("update_norm")
    for j, name in enumerate(names):
        assert close(updates[0, j], expected[name]["update_norm"])
    assert run.series("grad_norm")[2][0].sum() > 1e-2  # the unclipped gradients were recorded
