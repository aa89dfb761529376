"""`make demo`'s scenarios: every configuration diagnosed as the literature reports,
remedies compared, and one report page per scenario plus an index."""

import math
import re

import pytest
import torch

from graddoctor.demo import run_exploding_regression, run_scenarios
from graddoctor.scenarios import available


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_scenarios(out)


def test_every_scenario_diagnosed_as_reported(outcomes):
    _, results = outcomes
    assert [o.name for o in results] == available()
    assert all(math.isfinite(o.seconds) and o.seconds > 0 for o in results)
    for o in results:
        for label, kinds in o.expected.items():
            assert set(kinds) <= set(o.found[label]), (o.name, label, o.found[label])
            if not kinds:
                assert o.found[label] == [], (o.name, label, o.found[label])


def test_remedies_beat_the_sick_baseline(outcomes):
    _, results = outcomes
    best = {o.name: o.best_trial for o in results}
    assert best["exploding-regression"] != "baseline"
    assert best["deep-relu-bn"] == "batchnorm"
    assert best["sigmoid-saturation"] in ("batchnorm", "swap_activation")
    assert best["xavier-vs-he"] in ("init_he", "init_lsuv", "batchnorm")
    assert best["rnn-long-range"] == "lstm"


def test_pages_written(outcomes):
    out, results = outcomes
    index = (out / "index.html").read_text()
    for o in results:
        page = (out / o.page).read_text()
        assert f'href="{o.page}"' in index
        assert len(re.findall(r'<img alt="', page)) >= 5
        assert "Remedies compared" in page
    assert "linear_theory" in (out / "deep-linear.html").read_text()


def test_the_walkthrough_reports_the_live_findings_and_restores_the_threads(tmp_path):
    threads = torch.get_num_threads()
    result = run_exploding_regression(tmp_path / "walk.gdr", epochs=1, threads=threads + 1)
    assert torch.get_num_threads() == threads
    kinds = {line.split(" at step ")[0] for line in result.live}
    assert {"exploding_gradients", "nonfinite"} <= kinds
    assert result.first_nonfinite_step is not None
