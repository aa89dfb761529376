"""Figures read run files: each plots exactly what the run holds, and marks NaN/Inf.

The expected data are computed here with plain loops over ``run.series`` /
``run.scalars``, separately from the figure code.
"""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, RunWriter, open_run
from graddoctor.theory import build_linear_chain
from graddoctor.views import load_view

from ..models import lstm, mlp

report = pytest.importorskip("graddoctor.report")
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.image import imread  # noqa: E402

CHAIN = {"n": 6, "w": 0.5, "b": 0.25, "x": 1.5}


def _train(model, x, y, loss_fn, path, steps, lr=0.05, **monitor_options):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with Monitor(model, optimizer, path=path, **monitor_options) as mon:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            mon.log(loss=loss)
    return path


def _deep_sigmoid():
    torch.manual_seed(7)
    layers = []
    for _ in range(8):
        linear = nn.Linear(16, 16)
        nn.init.normal_(
            linear.weight, std=1.0
        )  # saturating sigmoids: the gradient vanishes toward the input
        layers += [linear, nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 1))
    return model, torch.randn(32, 16), torch.randn(32, 1), nn.MSELoss()


def _diverging():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x = 30 * torch.randn(16, 4)
    return model, x, x.sum(dim=1, keepdim=True) ** 2, nn.MSELoss()


def _clipped(path, steps=8, threshold=1.0):
    """A diverging regression clipped by torch, the clip's scalars logged by hand."""
    model, x, y, loss_fn = _diverging()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    with Monitor(model, optimizer, path=path, activations_every=None) as mon:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            total = torch.nn.utils.clip_grad_norm_(model.parameters(), threshold)
            optimizer.step()
            mon.log(loss=loss, **{"clip/total_norm": total, "clip/threshold": threshold,
                                  "clip/fired": float(total > threshold)})
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    paths = {
        "mlp": _train(*mlp(), folder / "mlp.gdr", 6, activations_every=1),
        "sigmoid": _train(*_deep_sigmoid(), folder / "sigmoid.gdr", 5, activations_every=2),
        "lstm": _train(*lstm(), folder / "lstm.gdr", 4, activations_every=1),
        "diverging": _train(
            *_diverging(), folder / "diverging.gdr", 8, lr=0.5, activations_every=1
        ),
        "clipped": _clipped(folder / "clipped.gdr"),
    }
    chain = build_linear_chain(CHAIN["n"], CHAIN["w"], CHAIN["b"])
    x = torch.full((1, 1), CHAIN["x"], dtype=torch.float64)
    optimizer = torch.optim.SGD(chain.parameters(), lr=0.01)
    paths["chain"] = folder / "chain.gdr"
    config = {k: CHAIN[k] for k in ("w", "b", "x")}
    with Monitor(
        chain, optimizer, path=paths["chain"], activations_every=None, config=config
    ) as mon:
        for _ in range(3):
            optimizer.zero_grad()
            out = chain(x).sum()
            out.backward()
            optimizer.step()
            mon.log(loss=out)
    return paths


# -- naive references, written from run.series / run.scalars with plain loops -------------
def _module_order(run, modules):
    order = run.meta.get("execution_order") or []
    registration = {m["name"]: m["index"] for m in run.model_summary}
    return sorted(
        modules,
        key=lambda m: (order.index(m) if m in order else len(order), registration.get(m, 0)),
    )


def _naive_module_grad_norms(run):
    """{module: [norm per step]}, {module: [non-finite flag per step]}, steps."""
    steps, params, grad = run.series("grad_norm")
    _, _, counts = run.series("grad_nonfinite")
    owners = {}
    for j, param in enumerate(params):
        owners.setdefault(param.rpartition(".")[0], []).append(j)
    norms, flags = {}, {}
    for module in _module_order(run, list(owners)):
        norms[module], flags[module] = [], []
        for i in range(len(steps)):
            total, measured, bad = 0.0, False, False
            for j in owners[module]:
                if math.isnan(counts[i, j]):
                    continue
                measured = True
                total += grad[i, j] ** 2
                bad = bad or counts[i, j] > 0 or not math.isfinite(grad[i, j])
            value = (
                math.sqrt(total)
                if measured and not math.isnan(total)
                else (total if measured else math.nan)
            )
            norms[module].append(value)
            flags[module].append(bad or (measured and not math.isfinite(value)))
    return steps, norms, flags


def _naive_module_norm(run, stat):
    steps, params, values = run.series(stat)
    owners = {}
    for j, param in enumerate(params):
        owners.setdefault(param.rpartition(".")[0], []).append(j)
    out = {}
    for module in _module_order(run, list(owners)):
        out[module] = [
            math.sqrt(sum(values[i, j] ** 2 for j in owners[module])) for i in range(len(steps))
        ]
    return steps, out


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def _same(a, b, rtol=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, equal_nan=True)


# -- the registry --------------------------------------------------------------------------
KIND_RUN = {
    "gradient_flow": "mlp",
    "grad_vs_depth": "sigmoid",
    "weights": "mlp",
    "activations": "sigmoid",
    "saturation": "mlp",
    "time_gradients": "lstm",
    "clipping": "clipped",
    "loss": "diverging",
    "linear_theory": "chain",
}


def test_registry_has_the_stable_kinds():
    assert list(report.FIGURES) == list(KIND_RUN)
    assert all(callable(f) for f in report.FIGURES.values())
    assert all(report.FIGURES[kind].function() is getattr(report, kind) for kind in KIND_RUN)
    assert set(KIND_RUN) <= set(report.__all__)


@pytest.mark.parametrize("kind", list(KIND_RUN))
def test_every_kind_returns_axes_from_a_path_a_run_and_a_view(kind, runs):
    ax = report.FIGURES[kind](runs[KIND_RUN[kind]])
    assert isinstance(ax, Axes) and ax.get_title(loc="left")
    with open_run(runs[KIND_RUN[kind]]) as run:
        assert isinstance(report.FIGURES[kind](run), Axes)
        assert isinstance(report.FIGURES[kind](load_view(run), ax=None), Axes)


NEEDS_MET = {  # run -> the kinds whose needs it meets
    "mlp": {"gradient_flow", "grad_vs_depth", "weights", "activations", "saturation", "loss"},
    "lstm": {
        "gradient_flow",
        "grad_vs_depth",
        "weights",
        "activations",
        "saturation",
        "loss",
        "time_gradients",
    },
    "chain": {"gradient_flow", "grad_vs_depth", "weights", "loss", "linear_theory"},
    "clipped": {"gradient_flow", "grad_vs_depth", "weights", "loss", "clipping"},
}


def test_clipping_draws_the_norm_before_clipping_the_threshold_and_the_fired_steps(runs):
    ax = report.clipping(runs["clipped"])
    with open_run(runs["clipped"]) as run:
        steps, norms = run.scalars("clip/total_norm")
        _, fired = run.scalars("clip/fired")
    lines = {line.get_label(): line for line in ax.get_lines()}
    _same(lines["norm before clipping"].get_xdata(), steps)
    _same(lines["norm before clipping"].get_ydata(), norms)
    assert set(lines["threshold"].get_ydata()) == {1.0}
    hit = [s for s, f in zip(steps, fired) if f > 0]  # naive: the steps whose clip fired
    assert len(hit) >= 1
    _same(lines["clip fired"].get_xdata(), hit)
    assert f"fired on {len(hit)} of {len(steps)} steps" in ax.get_title(loc="left") + ax.get_title()


def test_clipping_says_when_nothing_was_clipped(runs):
    ax = report.clipping(runs["mlp"])
    assert "clip/total_norm" in " ".join(t.get_text() for t in ax.texts)


@pytest.mark.parametrize("which", list(NEEDS_MET))
def test_needs_say_which_figures_a_run_can_show(which, runs, tmp_path):
    from graddoctor.report.html import run_report

    with open_run(runs[which]) as run:
        view = load_view(run)
        assert {kind for kind, figure in report.FIGURES.items() if figure.needs(view)} == NEEDS_MET[
            which
        ]
    page = run_report(runs[which], tmp_path / "r.html").read_text()
    drawn = re.findall(r'<img alt="([a-z_]+)"', page)
    assert drawn == [kind for kind in report.FIGURES if kind in NEEDS_MET[which]]


# -- gradient_flow ------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mlp", "sigmoid", "diverging"])
def test_gradient_flow_heatmap_is_log10_of_grouped_norms(which, runs):
    ax = report.gradient_flow(runs[which])
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    with open_run(runs[which]) as run:
        steps, norms, _ = _naive_module_grad_norms(run)
        types = {m["name"]: m["type"] for m in run.model_summary}
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.log10(np.array(list(norms.values())))
    expected[~np.isfinite(expected)] = np.nan
    plotted = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(expected.shape)
    _same(plotted, expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{m} ({types[m]})" for m in norms]
    assert ax.yaxis_inverted() and "input at top" in ax.get_ylabel()


def test_gradient_flow_flags_the_nonfinite_steps(runs):
    ax = report.gradient_flow(runs["diverging"])
    with open_run(runs["diverging"]) as run:
        steps, norms, flags = _naive_module_grad_norms(run)
        loss_steps, losses = run.scalars("loss")
    marks = [
        c
        for c in ax.collections
        if isinstance(c, PathCollection) and c.get_label().startswith("non-finite")
    ]
    assert len(marks) == 1
    got = {(float(x), float(y)) for x, y in marks[0].get_offsets()}
    expected = {
        (float(steps[i]), row + 0.5)
        for row, m in enumerate(flags)
        for i, f in enumerate(flags[m])
        if f
    }
    assert got == expected and expected
    first_bad_loss = int(loss_steps[~np.isfinite(losses)][0])
    assert {int(x) for x, _ in got} >= {int(s) for s in steps if s > first_bad_loss}
    assert min(int(x) for x, _ in got) >= first_bad_loss - 1
    assert "non-finite" in ax.get_title(loc="left")


def test_gradient_flow_tells_nonfinite_from_unmeasured_and_zero(tmp_path):
    path = tmp_path / "synthetic.gdr"
    writer = RunWriter(path)
    modules = [
        {"index": 0, "name": "", "type": "Net"},
        {"index": 1, "name": "a", "type": "Linear"},
        {"index": 2, "name": "b", "type": "Linear"},
    ]
    writer.set_meta({"model": {"modules": modules}, "execution_order": ["b", "a"]})
    writer.define_group("parameters", ["a.weight", "a.bias", "b.weight"])
    writer.define_stats("parameters", ["grad_norm", "grad_nonfinite"])
    nan, inf = math.nan, math.inf
    rows = [  # (grad_norm of a.weight, a.bias, b.weight), (non-finite counts)
        ([3, 4, 0], [0, 0, 0]),  # a = 5, b = exactly zero
        ([inf, 1, 2], [0, 0, 0]),  # a's norm overflowed: non-finite although no entry is
        ([nan, nan, nan], [nan, nan, nan]),  # nothing measured
        ([nan, 1, 1], [nan, 0, 0]),  # a.weight had no gradient: a = its bias alone
        ([nan, 2, 5], [3, 0, 0]),  # a.weight holds NaN entries
    ]
    for step, (norms, counts) in enumerate(rows):
        writer.add_stat(step, "grad_norm", np.array(norms, dtype=float))
        writer.add_stat(step, "grad_nonfinite", np.array(counts, dtype=float))
    writer.close()
    ax = report.gradient_flow(path)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    expected = [
        [nan, math.log10(2), nan, 0.0, math.log10(5)],
        [math.log10(5), nan, nan, 0.0, nan],
    ]  # rows b, a
    _same(np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(2, 5), expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b (Linear)", "a (Linear)"]
    marks = {
        c.get_label(): {(float(x), float(y)) for x, y in c.get_offsets()}
        for c in ax.collections
        if isinstance(c, PathCollection)
    }
    assert marks == {
        "non-finite (NaN/Inf)": {(1.0, 1.5), (4.0, 1.5)},
        "zero gradient": {(0.0, 0.5)},
    }
    assert "no gradient recorded" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "from step 1" in ax.get_title(loc="left")


# -- grad_vs_depth ------------------------------------------------------------------------
def test_grad_vs_depth_lines_are_out_grad_norm_in_execution_order(runs):
    ax = report.grad_vs_depth(runs["sigmoid"])
    with open_run(runs["sigmoid"]) as run:
        recorded = run.steps("out_grad_norm")
        order = run.meta["execution_order"]
        expected_steps = [
            int(recorded[0]),
            int(recorded[(len(recorded) - 1) // 2]),
            int(recorded[-1]),
        ]
        lines = _lines(ax)
        for step in expected_steps:
            _, names, vector = run.at("out_grad_norm", step)
            want = [vector[names.index(m)] for m in order]
            _same(lines[f"step {step}"].get_ydata(), want)
            _same(lines[f"step {step}"].get_xdata(), range(len(order)))
        assert (
            want[0] < want[-1] / 100
        )  # saturating sigmoids: the gradient vanishes toward the input
    assert ax.get_yscale() == "log" and "vanishes" in ax.get_title(loc="left")
    one = report.grad_vs_depth(runs["sigmoid"], steps=[2])
    assert [line.get_label() for line in one.get_lines()] == ["step 2"]
    with pytest.raises(ValueError, match="step 3 was not recorded"):
        report.grad_vs_depth(runs["sigmoid"], steps=[3])


def test_grad_vs_depth_falls_back_to_parameter_norms(runs):
    ax = report.grad_vs_depth(runs["chain"], steps=[1])
    with open_run(runs["chain"]) as run:
        steps, norms, _ = _naive_module_grad_norms(run)
    row = list(steps).index(1)
    _same(_lines(ax)["step 1"].get_ydata(), [norms[m][row] for m in norms])
    assert "out_grad_norm not recorded" in ax.get_ylabel()


# -- weights -------------------------------------------------------------------------------
def test_weights_panels_hold_layer_norms_and_update_ratios(runs):
    first = report.weights(runs["mlp"])
    norm_ax, ratio_ax = first.figure.axes[:2]
    assert norm_ax is first
    with open_run(runs["mlp"]) as run:
        types = {m["name"]: m["type"] for m in run.model_summary}
        _, weight = _naive_module_norm(run, "weight_norm")
        _, update = _naive_module_norm(run, "update_norm")
    for module in weight:
        label = f"{module} ({types[module]})"
        _same(_lines(norm_ax)[label].get_ydata(), weight[module], rtol=1e-12)
        ratio = np.array(update[module]) / np.array(weight[module])
        _same(_lines(ratio_ax)[label].get_ydata(), ratio, rtol=1e-12)
    rule = _lines(ratio_ax)["1e-3 rule of thumb"]
    assert list(rule.get_ydata()) == [1e-3, 1e-3] and ratio_ax.get_yscale() == "log"
    single = report.weights(runs["mlp"], stat="update_ratio")
    assert len(single.figure.axes) == 1 and "1e-3 rule of thumb" in _lines(single)
    with pytest.raises(ValueError, match="pass stat="):
        report.weights(runs["mlp"], ax=single)
    with pytest.raises(ValueError, match="stat must be one of"):
        report.weights(runs["mlp"], stat="grad_norm")


def test_weights_mark_nonfinite_steps(runs):
    first = report.weights(runs["diverging"])
    with open_run(runs["diverging"]) as run:
        steps, weight = _naive_module_norm(run, "weight_norm")
    bad = [
        int(s) for i, s in enumerate(steps) if any(not math.isfinite(v[i]) for v in weight.values())
    ]
    assert bad
    _same(_lines(first)["non-finite weights"].get_xdata(), bad)


# -- activations and saturation ------------------------------------------------------------
def test_activations_draw_mean_and_std_band_of_activation_modules(runs):
    ax = report.activations(runs["mlp"])
    with open_run(runs["mlp"]) as run:
        steps, names, mean = run.series("act_mean")
        _, _, std = run.series("act_std")
    lines = _lines(ax)
    assert list(lines) == ["1 (Tanh)", "3 (ReLU)", "5 (Sigmoid)"]
    bands = ax.collections
    assert len(bands) == 3
    for (label, line), band in zip(lines.items(), bands, strict=True):
        j = names.index(label.split(" ")[0])
        _same(line.get_xdata(), steps)
        _same(line.get_ydata(), mean[:, j])
        ys = band.get_paths()[0].vertices[:, 1]
        for value in np.concatenate([mean[:, j] + std[:, j], mean[:, j] - std[:, j]]):
            assert np.min(np.abs(ys - value)) < 1e-9
    every = report.activations(runs["mlp"], modules="all")
    assert len(_lines(every)) == 6
    assert list(_lines(report.activations(runs["mlp"], modules=["0", "4"]))) == [
        "0 (Linear)",
        "4 (Linear)",
    ]
    with pytest.raises(ValueError, match="matches no recorded module"):
        report.activations(runs["mlp"], modules=["encoder.*"])


def test_activations_mark_nonfinite_steps(runs):
    ax = report.activations(runs["diverging"])
    with open_run(runs["diverging"]) as run:
        steps, names, counts = run.series("act_nonfinite")
    j = names.index("1")
    bad = [int(s) for s, c in zip(steps, counts[:, j], strict=True) if c > 0]
    assert bad
    _same(_lines(ax)["non-finite activations"].get_xdata(), bad)


def test_saturation_draws_only_measured_fractions(runs):
    ax = report.saturation(runs["sigmoid"])
    with open_run(runs["sigmoid"]) as run:
        steps, names, saturated = run.series("act_saturated")
    lines = _lines(ax)
    sigmoids = [n for n in names if int(n) % 2 == 1 and int(n) < 16]
    assert list(lines) == [f"{n} (Sigmoid) saturated" for n in sigmoids]
    for n in sigmoids:
        _same(lines[f"{n} (Sigmoid) saturated"].get_ydata(), saturated[:, names.index(n)])
    assert list(_lines(report.saturation(runs["mlp"]))) == [
        "1 (Tanh) saturated",
        "3 (ReLU) dead",
        "5 (Sigmoid) saturated",
    ]
    chain = report.saturation(runs["chain"])
    assert not chain.get_lines() and "no activation statistics" in chain.texts[0].get_text()


# -- time_gradients -----------------------------------------------------------------------
def test_time_gradients_plot_the_recorded_norms(runs):
    ax = report.time_gradients(runs["lstm"], steps=[0, 3])
    with open_run(runs["lstm"]) as run:
        steps, names, values = run.series("time_grad_norm:lstm")
    lines = _lines(ax)
    assert list(lines) == ["step 0", "step 3"]
    for step in (0, 3):
        _same(lines[f"step {step}"].get_xdata(), [int(n) for n in names])
        _same(lines[f"step {step}"].get_ydata(), values[list(steps).index(step)])
    assert ax.get_yscale() == "log" and "'lstm'" in ax.get_title(loc="left")
    with pytest.raises(ValueError, match="recurrent modules"):
        report.time_gradients(runs["lstm"], module="head")


def test_time_gradients_say_so_without_a_recurrent_module(runs):
    ax = report.time_gradients(runs["mlp"])
    assert not ax.get_lines() and "no recurrent module" in ax.texts[0].get_text()


# -- loss ----------------------------------------------------------------------------------
def test_loss_line_is_the_recorded_loss(runs):
    ax = report.loss(runs["mlp"])
    with open_run(runs["mlp"]) as run:
        steps, values = run.scalars("loss")
    _same(_lines(ax)["loss"].get_xdata(), steps)
    _same(_lines(ax)["loss"].get_ydata(), values)
    assert ax.get_yscale() == "linear"  # 0.096 .. 0.095: less than two decades


def test_loss_overlays_runs_and_marks_divergence(runs):
    ax = report.loss({"healthy": runs["mlp"], "too high lr": runs["diverging"]})
    with open_run(runs["diverging"]) as run:
        steps, values = run.scalars("loss")
    first_bad = next(int(s) for s, v in zip(steps, values, strict=True) if not math.isfinite(v))
    lines = _lines(ax)
    _same(lines["too high lr"].get_ydata(), values)
    mark = lines[f"too high lr diverged at step {first_bad}"]
    assert list(mark.get_xdata()) == [first_bad] and mark.get_marker() == "x"
    assert mark.get_color() == lines["too high lr"].get_color() != lines["healthy"].get_color()
    assert ax.get_yscale() == "log" and ax.get_xlim()[1] >= steps[-1]
    listed = report.loss([runs["mlp"], runs["diverging"]])
    assert {"mlp", "diverging"} <= set(_lines(listed))
    with pytest.raises(ValueError, match="no runs"):
        report.loss([])


def _naive_chain_weight_gradients(n, w, b, x):
    """|dL/dw_i| = |a_{i-1} w^(n-i)| for L = a_n, by walking the chain."""
    expected, a = [], x
    for i in range(1, n + 1):
        expected.append(abs(a * w ** (n - i)))
        a = w * a + b
    return expected


# -- linear_theory -------------------------------------------------------------------------
def test_linear_theory_matches_measured_chain_gradients(runs):
    ax = report.linear_theory(runs["chain"])
    n = CHAIN["n"]
    expected = _naive_chain_weight_gradients(n, CHAIN["w"], CHAIN["b"], CHAIN["x"])
    theory, measured = ax.get_lines()[:2]
    _same(theory.get_xdata(), range(1, n + 1))
    _same(theory.get_ydata(), expected, rtol=1e-12)
    with open_run(runs["chain"]) as run:
        _, names, vector = run.at("grad_norm", 0)
    _same(measured.get_ydata(), [vector[names.index(f"layer_{i}.weight")] for i in range(1, n + 1)])
    np.testing.assert_allclose(measured.get_ydata(), expected, rtol=1e-6)
    later = report.linear_theory(runs["chain"], step=2, w=0.9, b=0.0, x=1.0)
    _same(
        later.get_lines()[0].get_ydata(),
        _naive_chain_weight_gradients(n, 0.9, 0.0, 1.0),
        rtol=1e-12,
    )
    assert np.allclose(
        later.get_lines()[0].get_ydata(), 0.9 ** (n - 1)
    )  # x w^(i-1) w^(n-i), the same everywhere
    with pytest.raises(ValueError, match="needs w, b, x"):
        report.linear_theory(runs["mlp"])
    with pytest.raises(ValueError, match="build_linear_chain"):
        report.linear_theory(runs["mlp"], w=1.0, b=0.0, x=1.0)


# -- files and data URIs -------------------------------------------------------------------
def test_save_figure_writes_png_and_svg(runs, tmp_path):
    png = report.save_figure(runs["sigmoid"], "gradient_flow", tmp_path / "sub" / "flow.png")
    assert png == tmp_path / "sub" / "flow.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600 and float(pixels[..., :3].var()) > 1e-3
    svg = report.save_figure(runs["mlp"], "loss", tmp_path / "loss.svg")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    steps = report.save_figure(runs["sigmoid"], "grad_vs_depth", tmp_path / "depth.PNG", steps=[0])
    assert steps.read_bytes()[:4] == b"\x89PNG"


def test_save_figure_rejects_unknown_kind_and_suffix(runs, tmp_path):
    with pytest.raises(ValueError, match="gradient_flow, grad_vs_depth"):
        report.save_figure(runs["mlp"], "histogram", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\.png, \.svg"):
        report.save_figure(runs["mlp"], "loss", tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())


def test_figure_to_data_uri(runs):
    ax = report.loss(runs["mlp"])
    uri = report.figure_to_data_uri(ax)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    svg = report.figure_to_data_uri(ax.figure, format="svg")
    assert svg.startswith("data:image/svg+xml;base64,") and b"<svg" in base64.b64decode(
        svg.split(",", 1)[1]
    )
    with pytest.raises(ValueError, match="format"):
        report.figure_to_data_uri(ax, format="gif")
    with pytest.raises(TypeError):
        report.figure_to_data_uri("not a figure")


def test_bad_run_argument():
    with pytest.raises(TypeError, match="Run or the path"):
        report.gradient_flow(42)
    with pytest.raises(FileNotFoundError):
        report.loss("/nonexistent/run.gdr")


def test_matplotlib_stays_out_of_graddoctor_and_pyplot_out_of_the_report(runs, tmp_path):
    code = (
        "import sys, graddoctor\n"
        "print('matplotlib' in sys.modules)\n"
        "import graddoctor.report as report\n"
        f"report.save_figure({str(runs['mlp'])!r}, 'weights', {str(tmp_path / 'w.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


def test_run_report_opens_the_run_once(runs, tmp_path, monkeypatch):
    import importlib

    from graddoctor import store

    opened = []
    real = store.open_run

    def counting(path):
        opened.append(str(path))
        return real(path)

    readers = (
        "graddoctor.store",
        "graddoctor.report.html",
        "graddoctor.report._figures_common",
        "graddoctor.diagnosis.diagnose",
    )
    for name in readers:
        monkeypatch.setattr(importlib.import_module(name), "open_run", counting)
    importlib.import_module("graddoctor.report.html").run_report(runs["lstm"], tmp_path / "r.html")
    assert opened == [str(runs["lstm"])]


@pytest.mark.parametrize("kind", list(report.FIGURES))
def test_png_drawn_once_is_the_png_savefig_writes(runs, kind):
    """The report draws each PNG once (figures._png); the bytes are savefig's, the figure kept."""
    import io

    from graddoctor.report.figures import DPI, _png

    holding = {"linear_theory": "chain", "time_gradients": "lstm", "clipping": "clipped"}
    run = runs[holding.get(kind, "sigmoid")]
    figure = report.FIGURES[kind](run).figure
    canvas, dpi = figure.canvas, figure.dpi
    drawn = _png(figure)
    assert figure.canvas is canvas and figure.dpi == dpi
    expected = io.BytesIO()
    report.FIGURES[kind](run).figure.savefig(expected, format="png", dpi=DPI)
    assert drawn == expected.getvalue()


def test_png_under_non_default_savefig_settings_is_savefigs(runs):
    import io

    import matplotlib

    from graddoctor.report.figures import DPI, _png

    with matplotlib.rc_context({"savefig.transparent": True}):
        drawn = _png(report.FIGURES["loss"](runs["mlp"]).figure)
        expected = io.BytesIO()
        report.FIGURES["loss"](runs["mlp"]).figure.savefig(expected, format="png", dpi=DPI)
    assert drawn == expected.getvalue()
