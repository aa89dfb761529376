"""A run file holding only part of a family's statistics is diagnosed, shown and reported:
a missing statistic counts as not recorded, and the detectors that need it find nothing."""

from __future__ import annotations

import shutil
import sqlite3
from collections import OrderedDict

import pytest
import torch
from torch import nn

from graddoctor import Monitor, RunFileError, diagnose, open_run
from graddoctor.probes.activations import ACTIVATION_STATS
from graddoctor.probes.parameters import PARAMETER_STATS
from graddoctor.report.figures import FIGURES
from graddoctor.report.html import run_report
from graddoctor.views import RunView, layer_rows

FAMILIES = {"parameters": PARAMETER_STATS, "modules": ACTIVATION_STATS}
EVERY_STAT = PARAMETER_STATS + ACTIVATION_STATS


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A deep sigmoid MLP on large inputs: saturated units, vanishing gradients and activations."""
    torch.manual_seed(0)
    layers = OrderedDict()
    for i in range(5):
        layers[f"fc{i}"] = nn.Linear(16, 16)
        layers[f"act{i}"] = nn.Sigmoid()
    layers["out"] = nn.Linear(16, 1)
    model = nn.Sequential(layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    path = tmp_path_factory.mktemp("partial") / "full.gdr"
    with Monitor(model, opt, path=path, activations_every=1) as mon:
        for _ in range(8):
            opt.zero_grad()
            loss = model(torch.randn(32, 16) * 20).pow(2).mean()
            loss.backward()
            opt.step()
            mon.log(loss=loss)
    kinds = set(diagnose(path).kinds())
    assert kinds, "the full run must have findings for the comparison to mean something"
    return path, kinds


def _without(stats):
    return [
        f"DELETE FROM stats WHERE stat IN ({', '.join(repr(s) for s in stats)})",
        f"DELETE FROM stat_groups WHERE stat IN ({', '.join(repr(s) for s in stats)})",
    ]


CASES = {
    **{f"without {stat}": _without([stat]) for stat in EVERY_STAT},
    **{
        f"only {stat}": _without([s for s in FAMILIES[group] if s != stat])
        for group, stats in FAMILIES.items()
        for stat in stats
    },
    "no parameter statistics": _without(PARAMETER_STATS),
    "no activation statistics": _without(ACTIVATION_STATS),
    "act_std at every other step": ["DELETE FROM stats WHERE stat='act_std' AND step % 2 = 1"],
    "grad_nonfinite at every other step": [
        "DELETE FROM stats WHERE stat='grad_nonfinite' AND step % 2 = 0"
    ],
    "act_mean at one step only": ["DELETE FROM stats WHERE stat='act_mean' AND step > 0"],
    "declared but never recorded": [
        "DELETE FROM stats WHERE stat IN ('act_std', 'weight_norm', 'grad_nonfinite')"
    ],
    "act_std declared over the parameters": [
        "UPDATE stat_groups SET grp='parameters' WHERE stat='act_std'",
        "DELETE FROM stats WHERE stat='act_std'",
    ],
}


def _partial(full, tmp_path, statements):
    path = tmp_path / "partial.gdr"
    shutil.copy(full, path)
    conn = sqlite3.connect(path)
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_partial_statistics_are_not_recorded(full_run, tmp_path, case):
    full, full_kinds = full_run
    path = _partial(full, tmp_path, CASES[case])
    kinds = set(diagnose(path).kinds())
    # a missing statistic only ever takes findings away
    assert kinds <= full_kinds, (case, kinds, full_kinds)
    with open_run(path) as run:
        view = RunView(run)
        for family, stats in ((view.params, PARAMETER_STATS), (view.modules, ACTIVATION_STATS)):
            shape = (len(family.steps), len(family.names))
            # a family with any statistic holds every one of them (NaN where not recorded)
            assert not family.stats or all(family.stats[s].shape == shape for s in stats)
        step, rows = layer_rows(run)
        assert rows and step is not None


# drawing is slow: the figures on the cases that take most away, the report on one
DRAWN = ["only act_mean", "act_std at every other step", "no parameter statistics"]


@pytest.mark.parametrize("case", DRAWN)
def test_every_figure_whose_needs_hold_draws(full_run, tmp_path, case):
    path = _partial(full_run[0], tmp_path, CASES[case])
    with open_run(path) as run:
        view = RunView(run)
        drawn = [kind for kind, figure in FIGURES.items() if figure.needs(view)]
        for kind in drawn:
            FIGURES[kind](view)  # the report would leave a figure out that raised
    assert drawn


def test_the_report_of_a_partial_file(full_run, tmp_path):
    path = _partial(full_run[0], tmp_path, CASES["only act_mean"])
    run_report(path, tmp_path / "report.html")
    assert "<figure>" in (tmp_path / "report.html").read_text()


def test_only_act_mean_skips_the_detectors_that_need_the_rest(full_run, tmp_path):
    full, full_kinds = full_run
    path = _partial(full, tmp_path, CASES["only act_mean"])
    diagnosis = diagnose(path)  # raised KeyError('act_std') before
    assert set(diagnosis.kinds()) <= full_kinds
    for kind in ("saturated_activations", "vanishing_activations", "dead_units"):
        assert kind not in diagnosis.kinds()


def test_a_statistic_over_other_columns_is_not_the_familys(full_run, tmp_path):
    path = _partial(
        full_run[0], tmp_path, ["UPDATE stat_groups SET grp='parameters' WHERE stat='act_dead'"]
    )
    try:
        with open_run(path) as run:
            view = RunView(run)
            assert view.modules.names == run.names("modules")
            diagnose(view)
    except RunFileError:  # the blobs no longer fit the declared columns: also a fine answer
        pass
