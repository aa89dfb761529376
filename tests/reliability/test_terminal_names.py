"""Untrusted names stay inert in the terminal: no escape sequence gets through, no markup is read."""

from __future__ import annotations

import io
from collections import OrderedDict

import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

from graddoctor import Monitor
from graddoctor._render_text import inert
from graddoctor.cli import app
from graddoctor.diagnosis import Diagnosis, Finding
from graddoctor.experiment import Comparison, TrialResult

HOSTILE = [
    "enc[/oops]",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;pwned\x07title",
    "[bold]bold[/bold]",
    "line\nbreak",
    "\x1b]8;;http://evil/x\x1b\\link\x1b]8;;\x1b\\",
    "bidi\u202eevil",
    "\x9b2Jc1",
]


def _terminal(renderable) -> str:
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=200, color_system="truecolor").print(renderable)
    return buffer.getvalue()


def _no_escapes_but_rich_colours(text: str) -> None:
    for sequence in ("\x1b]", "\x1b[2J", "\x9b", "\u202e", "\x07"):
        assert sequence not in text, repr(text)


@pytest.fixture
def hostile_run(tmp_path):
    torch.manual_seed(0)
    layers = OrderedDict()
    for i, name in enumerate(HOSTILE):
        layers[name] = nn.Linear(8, 8) if i % 2 == 0 else nn.Sigmoid()
    layers["out"] = nn.Linear(8, 1)
    model = nn.Sequential(layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "hostile.gdr"
    with Monitor(model, opt, path=path, activations_every=1) as mon:
        for _ in range(6):
            opt.zero_grad()
            loss = model(torch.randn(16, 8) * 30).pow(2).mean()
            loss.backward()
            opt.step()
            mon.log(loss=loss)
    return path


@pytest.mark.parametrize("command", ["show", "diagnose"])
def test_show_and_diagnose_print_hostile_names_inert(hostile_run, command):
    result = CliRunner().invoke(app, [command, str(hostile_run)])
    assert result.exit_code in (0, 1), (result.output, result.exception)
    assert (
        "\x1b" not in result.output and "\x07" not in result.output and "\x9b" not in result.output
    )
    if command == "show":
        assert "enc[/oops]" in result.output and "[bold]bold" in result.output


def test_a_diagnosis_with_markup_and_escapes_renders_literally():
    finding = Finding(
        kind="vanishing_gradients",
        severity="warning",
        layers=HOSTILE,
        first_step=0,
        evidence={
            "ratio": 1e-9,
            "per_layer": {name: 1.0 for name in HOSTILE},
            "module": "enc[/oops]",
        },
        message="gradients vanish below enc[/oops] and \x1b]0;pwned\x07",
        remedies=["[red]x[/red]"],
        source={"module": "\x1b[2Jenc[/oops]", "direction": "backward", "step": 3},
    )
    text = _terminal(Diagnosis([finding], run_path="runs/[/x].gdr"))
    _no_escapes_but_rich_colours(text)
    assert "enc[/oops]" in text and "[red]x[/red]" in text and "runs/[/x].gdr" in text


def test_a_comparison_with_hostile_names_renders_literally():
    trial = TrialResult(
        name="[/oops]\x1b]0;t\x07",
        remedy=None,
        final_loss=0.5,
        final_loss_spread=0.0,
        best_loss=0.4,
        steps_to_target=None,
        diverged=False,
        diverged_at=None,
        wall_time=1.0,
        healthy=False,
        findings=["[bold]x"],
        run_paths=[],
    )
    failed = TrialResult(
        name="b",
        remedy="b",
        final_loss=float("nan"),
        final_loss_spread=0.0,
        best_loss=float("nan"),
        steps_to_target=None,
        diverged=False,
        diverged_at=None,
        wall_time=0.0,
        healthy=False,
        findings=[],
        run_paths=[],
        error="ValueError: [/boom] \x1b[2J",
    )
    text = _terminal(Comparison("problem [/p]", 3, [0], 0.1, [trial, failed]))
    _no_escapes_but_rich_colours(text)
    assert "[/oops]" in text and "[/boom]" in text and "problem [/p]" in text


def test_inert_removes_sequences_whole():
    assert inert("a\x1b[31mb\x1b]0;title\x07c\x1b]8;;http://e\x1b\\d") == "abcd"
    assert inert("x\ny\tz") == "x y z" and inert("x\ny", newlines=True) == "x\ny"
    assert inert("r\u202eq\x00") == "r?q?"
