"""Long and deep runs are drawn thinned: MAX_POINTS a line, MAX_COLUMNS by MAX_ROWS a heatmap, spikes kept."""

from __future__ import annotations

import numpy as np
import pytest

from graddoctor import RunWriter

report = pytest.importorskip("graddoctor.report")
from matplotlib.collections import QuadMesh  # noqa: E402

from graddoctor.report._figures_sampling import (  # noqa: E402
    MAX_COLUMNS,
    MAX_LINES,
    MAX_POINTS,
    MAX_ROWS,
    envelope,
)

STEPS, SPIKE, DIP, NAN_STEP = 20_000, 12_345, 7_777, 15_000


def test_envelope_keeps_every_bins_extremes():
    rng = np.random.default_rng(0)
    steps = np.arange(STEPS) * 2
    values = 1 + 0.01 * rng.random(STEPS)
    values[SPIKE], values[DIP], values[100:140] = 1e6, -5.0, np.nan
    x, y = envelope(steps, values)
    assert x.size <= MAX_POINTS and np.all(np.diff(x) > 0)
    assert y.max() == 1e6 and x[y.argmax()] == steps[SPIKE]
    assert y.min() == -5.0 and x[y.argmin()] == steps[DIP]
    assert np.isin(x, steps).all()  # points are recorded steps with their own values
    np.testing.assert_array_equal(y, values[np.searchsorted(steps, x)])
    short_x, short_y = envelope(steps[:MAX_POINTS], values[:MAX_POINTS])
    np.testing.assert_array_equal(short_x, steps[:MAX_POINTS])  # short series unchanged


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """20,000 steps of a two-layer model, as the Monitor's file lays them out."""
    path = tmp_path_factory.mktemp("long") / "long.gdr"
    modules = [
        {"index": 0, "name": "", "type": "Sequential", "depth": 0},
        {"index": 1, "name": "0", "type": "Linear", "depth": 1, "families": ["weight_layer"]},
        {"index": 2, "name": "1", "type": "Linear", "depth": 1, "families": ["weight_layer"]},
    ]
    params = ["0.weight", "0.bias", "1.weight"]
    writer = RunWriter(
        path, meta={"model": {"type": "Sequential", "modules": modules}}, commit_every=5000
    )
    writer.define_group("parameters", params)
    writer.define_stats("parameters", ["grad_norm", "grad_nonfinite", "weight_norm", "update_norm"])
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        grads = 0.1 + 0.01 * rng.random(3)
        if step == SPIKE:
            grads[2] = 1e4
        bad = np.zeros(3)
        if step == NAN_STEP:
            grads[0], bad[0] = np.nan, 1
        writer.add_stat(step, "grad_norm", grads)
        writer.add_stat(step, "grad_nonfinite", bad)
        writer.add_stat(step, "weight_norm", np.ones(3) * (1 + step / STEPS))
        writer.add_stat(step, "update_norm", np.full(3, 1e-3) * (100 if step == SPIKE else 1))
        writer.add_scalar(step, "loss", 1.0 + (50.0 if step == SPIKE else 0.0))
    writer.close()
    return path


def test_gradient_flow_of_a_long_run_keeps_the_spike_and_the_nan(long_run):
    ax = report.gradient_flow(long_run)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    image = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(2, -1)
    assert image.shape[1] <= MAX_COLUMNS
    assert np.nanmax(image[1]) == pytest.approx(np.log10(1e4), rel=1e-6)  # layer "1" spiked
    crosses = [c for c in ax.collections if c.get_label() == "non-finite (NaN/Inf)"]
    (x, row) = crosses[0].get_offsets()[0]
    assert abs(x - NAN_STEP) <= 2 * STEPS / MAX_COLUMNS and row == 0.5
    assert "non-finite gradients (x) from step 15000" in ax.get_title(loc="left")


def test_lines_of_a_long_run_are_thinned_with_their_spike(long_run):
    loss_ax = report.loss(long_run)
    (line,) = [line for line in loss_ax.get_lines() if line.get_label() == "loss"]
    assert len(line.get_xdata()) <= MAX_POINTS and line.get_ydata().max() == 51.0
    ratio_ax = report.weights(long_run).figure.axes[1]
    for line in ratio_ax.get_lines()[:2]:  # one per layer
        assert len(line.get_xdata()) <= MAX_POINTS
    assert max(line.get_ydata().max() for line in ratio_ax.get_lines()[:2]) > 0.05


def _linear_chain(layers: int) -> list[dict]:
    """The recorded module list of a Sequential of ``layers`` Linear layers."""
    return [{"index": 0, "name": "", "type": "Sequential", "depth": 0}] + [
        {"index": i + 1, "name": str(i), "type": "Linear", "depth": 1, "families": ["weight_layer"]}
        for i in range(layers)
    ]


def test_a_wide_run_draws_layers_evenly_spaced_and_paints_zero_cells(tmp_path):
    """300 layers, gradients exactly zero in the deeper half: lines thinned, zeros one shape."""
    layers = 300
    modules = _linear_chain(layers)
    path = tmp_path / "wide.gdr"
    writer = RunWriter(path, meta={"model": {"type": "Sequential", "modules": modules}})
    writer.define_group("parameters", [f"{i}.weight" for i in range(layers)])
    writer.define_stats("parameters", ["grad_norm", "grad_nonfinite", "weight_norm", "update_norm"])
    grads = np.where(np.arange(layers) < layers // 2, 1e-3, 0.0)
    for step in range(20):
        writer.add_stat(step, "grad_norm", grads)
        writer.add_stat(step, "grad_nonfinite", np.zeros(layers))
        writer.add_stat(step, "weight_norm", np.linspace(1, 2, layers))
        writer.add_stat(step, "update_norm", np.full(layers, 1e-3))
    writer.close()
    first = report.weights(path)
    assert len(first.get_lines()) <= MAX_LINES
    assert f"{len(first.get_lines())} of 300 layers drawn" in first.get_title(loc="left")
    flow = report.gradient_flow(path)
    meshes = [c for c in flow.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 2  # the map, and the zero cells painted over it
    zero = ~np.ma.getmaskarray(meshes[1].get_array()).reshape(layers, 20)
    assert zero[layers // 2 :].all() and not zero[: layers // 2].any()
    assert not [
        c
        for c in flow.collections
        if c.get_label() == "zero gradient" and not isinstance(c, QuadMesh)
    ]


def test_a_deep_run_groups_the_heatmap_rows_and_keeps_a_layers_spike(tmp_path):
    """More layers than MAX_ROWS: each row a group of consecutive layers, its largest norm."""
    layers, spiked, broken = 4 * MAX_ROWS + 3, 1_234, 777
    modules = _linear_chain(layers)
    path = tmp_path / "deep.gdr"
    writer = RunWriter(path, meta={"model": {"type": "Sequential", "modules": modules}})
    writer.define_group("parameters", [f"{i}.weight" for i in range(layers)])
    writer.define_stats("parameters", ["grad_norm", "grad_nonfinite"])
    for step in range(3):
        grads, bad = np.full(layers, 1e-3), np.zeros(layers)
        grads[spiked] = 1e2
        if step == 2:
            grads[broken], bad[broken] = np.inf, 1
        writer.add_stat(step, "grad_norm", grads)
        writer.add_stat(step, "grad_nonfinite", bad)
    writer.close()
    ax = report.gradient_flow(path)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    image = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(-1, 3)
    assert image.shape[0] <= MAX_ROWS
    assert np.nanmax(image) == pytest.approx(2.0)  # the spiked layer's group keeps it
    assert np.nanmin(image) == pytest.approx(-3.0)
    assert ax.get_ylim() == (layers, 0)  # the axis still counts layers
    (crosses,) = [c for c in ax.collections if c.get_label() == "non-finite (NaN/Inf)"]
    (x, row) = crosses.get_offsets()[0]
    assert x == 2 and abs(row - (broken + 0.5)) <= layers / MAX_ROWS
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "0 (Linear)" and len(labels) <= 41
