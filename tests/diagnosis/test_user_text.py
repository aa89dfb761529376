"""What users read: ideas and publications named (never "seed 00N"), counts pluralised,
numbers that keep their exponent in a narrow table."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor._numbers import format_number
from graddoctor.diagnosis._common import plural
from graddoctor.scenarios import available, get_scenario

SEED_WORDS = re.compile(r"\bseed\s*0\d\d\b|graddoctor seed|\bseed's\b", re.IGNORECASE)


@pytest.mark.parametrize("name", available())
def test_scenarios_name_their_sources(name):
    scenario = get_scenario(name)
    for text in (scenario.title, scenario.claim, scenario.source):
        assert not SEED_WORDS.search(text), text


def test_diagnosis_messages_name_no_seed(tmp_path):
    for name in ("exploding-regression", "deep-linear"):
        diagnosis = gd.checkup(
            get_scenario(name).baseline, steps=12, run_path=tmp_path / f"{name}.gdr"
        )
        assert diagnosis.findings
        for finding in diagnosis.findings:
            assert not SEED_WORDS.search(finding.message), finding.message
        assert not SEED_WORDS.search(diagnosis.to_json())


def test_counts_are_pluralised():
    assert (
        plural(1, "step") == "1 step"
        and plural(2, "step") == "2 steps"
        and plural(0, "layer") == "0 layers"
    )


def test_one_step_of_growth_reads_in_the_singular(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(4, 3)
    with gd.Monitor(model, optimizer, path=tmp_path / "run.gdr") as monitor:
        for scale in (1.0, 1e5, 1e5, 1e5, 1e5, 1e5):
            optimizer.zero_grad()
            loss = scale * model(x).pow(2).mean()
            loss.backward()
            optimizer.step()
            monitor.log(loss=1.0)
    (finding,) = gd.diagnose(tmp_path / "run.gdr").of_kind("exploding_gradients")
    assert "within 1 step." in finding.message


@pytest.mark.parametrize(
    "value, text",
    [(0.000141, "1.41e-4"), (6.96e-07, "6.96e-7"), (-3.04e-08, "-3.04e-8"), (0.0286, "0.0286"),
     (12345.0, "1.23e4"), (0.5, "0.5"), (0.0, "0"), (float("nan"), "nan"), (float("-inf"), "-inf"), (7, "7")],
)  # fmt: skip
def test_numbers_keep_three_digits_and_their_exponent_in_few_characters(value, text):
    assert format_number(value) == text
    if value == value and value not in (0.0, float("-inf")) and not isinstance(value, int):
        assert float(text) == pytest.approx(float(f"{value:.3g}"))
        assert len(text) <= len(f"{value:.3g}")


def test_the_layer_table_shows_exponents_when_not_a_terminal(tmp_path):
    from rich.console import Console

    from graddoctor.cli._console import layer_table
    from graddoctor.views import layer_rows

    torch.manual_seed(0)
    layers = []
    for _ in range(5):
        linear = nn.Linear(32, 32)
        nn.init.normal_(linear.weight, std=0.01)
        layers += [linear, nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(32, 1))
    data = [(torch.randn(16, 32), torch.randn(16, 1))]
    gd.checkup(model, data, nn.MSELoss(), steps=2, run_path=tmp_path / "run.gdr")
    step, rows = layer_rows(tmp_path / "run.gdr", 0)
    console = Console(width=130, file=None, force_terminal=False, record=True)
    console.print(layer_table(rows, step))
    text = console.export_text()
    assert re.search(r"\d\.\d+e-\d", text) and "e-…" not in text
