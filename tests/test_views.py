"""The read-side view of a run: order, families, per-module norms and layer rows.

Runs are written by hand with ``RunWriter`` so every expected number is known; the
references are plain loops over the written values, separate from the view's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from graddoctor import RunWriter, diagnose, open_run
from graddoctor.views import RunView, layer_rows, load_view

nan, inf = math.nan, math.inf
PARAMS = ["a.weight", "a.bias", "b.weight", "c.weight"]
# step -> per-parameter values of each statistic (a: 2 params, b and c: 1)
GRAD = {0: [3.0, 4.0, 1.0, nan], 1: [6.0, 8.0, inf, 2.0], 2: [nan, nan, nan, nan]}
COUNTS = {0: [0, 0, 0, nan], 1: [0, 0, 5, 0], 2: [nan, nan, nan, nan]}
WEIGHT = {0: [1.0, 2.0, 2.0, 3.0], 1: [2.0, 2.0, 1.0, 3.0], 2: [2.0, 2.0, 1.0, 3.0]}
UPDATE = {0: [0.1, 0.2, 0.0, 0.3], 1: [0.3, 0.4, 0.1, 0.0], 2: [0.0, 0.0, 0.0, 0.0]}
MAX = {0: [2.0, 3.0, 1.0, nan], 1: [5.0, 7.0, inf, 1.0], 2: [nan, nan, nan, nan]}
ACT_STEPS = (0, 2)  # activations are recorded less often


def _write(path, *, families: bool):
    modules = [
        {"index": 0, "name": "", "type": "Net"},
        {"index": 1, "name": "a", "type": "Linear"},
        {"index": 2, "name": "act", "type": "Tanh"},
        {"index": 3, "name": "b", "type": "Linear"},
        {"index": 4, "name": "c", "type": "Linear"},  # never ran
        {"index": 5, "name": "relu", "type": "ReLU"},
    ]
    if families:  # a record's families win over the type name
        for m in modules:
            m["families"] = {"a": ["weight_layer"], "act": ["rectifier", "non_saturating"]}.get(
                m["name"], []
            )
    writer = RunWriter(path)
    writer.set_meta(
        {"model": {"type": "Net", "modules": modules}, "execution_order": ["b", "act", "a", "relu"]}
    )
    writer.define_group("parameters", PARAMS)
    writer.define_stats(
        "parameters", ["grad_norm", "grad_max", "grad_nonfinite", "weight_norm", "update_norm"]
    )
    writer.define_group("modules", ["a", "act", "b", "relu"])
    writer.define_stats(
        "modules", ["act_mean", "act_std", "act_saturated", "act_dead", "act_nonfinite"]
    )
    for step in range(3):
        for stat, values in (
            ("grad_norm", GRAD),
            ("grad_max", MAX),
            ("grad_nonfinite", COUNTS),
            ("weight_norm", WEIGHT),
            ("update_norm", UPDATE),
        ):
            writer.add_stat(step, stat, np.array(values[step], dtype=float))
        if step in ACT_STEPS:
            for stat in ("act_mean", "act_std", "act_saturated", "act_dead", "act_nonfinite"):
                writer.add_stat(
                    step, stat, np.array([10 * step + i for i in range(4)], dtype=float)
                )
        writer.add_scalar(step, "loss", 1.0 / (step + 1))
        writer.mark_step(step)
    writer.close()
    return path


@pytest.fixture
def run(tmp_path):
    with open_run(_write(tmp_path / "run.gdr", families=False)) as opened:
        yield opened


def _quadrature(values):
    """Naive sqrt(sum v^2) over the given values; NaN when there are none."""
    return math.sqrt(sum(v * v for v in values)) if values else nan


def test_order_puts_modules_that_never_ran_last_in_registration_order(run):
    view = RunView(run)
    assert view.order == ["b", "act", "a", "relu", "", "c"]
    assert view.ordered(["c", "a", "unknown", "b"]) == ["b", "a", "c", "unknown"]


def test_families_fall_back_to_the_type_name(run):
    view = RunView(run)
    assert view.modules_in("weight_layer") == ["b", "a", "c"]
    assert view.modules_in("saturating") == ["act"] and view.modules_in("rectifier") == ["relu"]
    assert view.has_family("non_saturating") and not view.has_family("recurrent")


def test_recorded_families_win(tmp_path):
    with open_run(_write(tmp_path / "fam.gdr", families=True)) as opened:
        view = RunView(opened)
        assert view.modules_in("weight_layer") == ["a"]
        assert view.modules_in("rectifier") == ["act"] and not view.has_family("saturating")


def test_module_norms_are_quadrature_sums(run):
    view = RunView(run)
    steps, modules, norms = view.module_norms("weight_norm")
    assert list(steps) == [0, 1, 2] and modules == ["b", "a", "c"]
    columns = {"a": [0, 1], "b": [2], "c": [3]}
    for i, step in enumerate(steps):
        for j, module in enumerate(modules):
            expected = _quadrature([WEIGHT[step][c] for c in columns[module]])
            assert norms[i, j] == pytest.approx(expected)


def test_gradient_norms_tell_unmeasured_from_nonfinite(run):
    view = RunView(run)
    steps, modules, norms, nonfinite = view.module_gradient_norms()
    assert modules == ["b", "a", "c"]
    np.testing.assert_allclose(norms[0], [1.0, 5.0, nan])  # c had no gradient at step 0
    assert list(nonfinite[1]) == [True, False, False]  # b's count says non-finite
    assert np.isnan(norms[2]).all() and not nonfinite[2].any()  # nothing measured
    total = view.total_grad_norm()
    assert (
        total[0] == pytest.approx(math.sqrt(9 + 16 + 1)) and total[1] == inf and np.isnan(total[2])
    )
    assert view.layer_grad_norm(0) == {"a": pytest.approx(5.0), "b": pytest.approx(1.0)}


def test_layer_rows_match_a_naive_loop(run):
    step, rows = layer_rows(run, 1)
    assert step == 1 and [r.name for r in rows] == ["b", "act", "a", "relu", "c"]
    by_name = {r.name: r for r in rows}
    a = by_name["a"]
    assert a.params == ["a.weight", "a.bias"] and a.type == "Linear"
    assert a.grad_norm == pytest.approx(_quadrature([6.0, 8.0]))
    assert a.weight_norm == pytest.approx(_quadrature([2.0, 2.0]))
    assert a.update_ratio == pytest.approx(_quadrature([0.3, 0.4]) / _quadrature([2.0, 2.0]))
    assert a.grad_max == 7.0 and a.grad_nonfinite == 0.0
    assert by_name["b"].grad_nonfinite == 5.0 and by_name["b"].grad_norm == inf
    # activations: the last activation step at or before step 1 is step 0
    assert a.act_mean == 0.0 and by_name["act"].act_mean == 1.0 and by_name["relu"].act_dead == 3.0
    assert math.isnan(by_name["act"].grad_norm)  # no parameters
    with pytest.raises(KeyError, match="step 7"):
        layer_rows(run, 7)


def test_layer_rows_from_a_path_or_a_view_agree(run):
    from_path = layer_rows(run.path)
    from_view = layer_rows(load_view(run))
    assert from_path[0] == from_view[0] == 2
    np.testing.assert_array_equal(
        [r.act_mean for r in from_path[1]], [r.act_mean for r in from_view[1]]
    )


def test_without_steps_leaves_out_rows(run):
    view = RunView(run)
    fewer = view.without_steps(np.array([1]))
    assert list(fewer.params.steps) == [0, 2] and list(view.params.steps) == [0, 1, 2]
    assert fewer.params.stats["grad_norm"].shape == (2, 4) and list(fewer.modules.steps) == [0, 2]


def test_diagnose_reads_a_view_as_it_reads_the_path(run):
    assert diagnose(load_view(run)).to_dict() == diagnose(run.path).to_dict()


def test_a_layer_row_has_one_attribute_per_declared_statistic():
    """The row's columns come from probes.statistics (act_max was once missing here)."""
    import dataclasses

    from graddoctor.probes.statistics import ACTIVATION_STATS, PARAMETER_STATS
    from graddoctor.views import LayerRow

    names = [f.name for f in dataclasses.fields(LayerRow)]
    assert names == ["name", "type", "params", *PARAMETER_STATS, *ACTIVATION_STATS]
    row = LayerRow("m", "Linear")
    assert math.isnan(row.act_max) and row.params == [] and LayerRow("n", "ReLU").params == []
