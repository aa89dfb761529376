"""Reading a recorded run never imports torch: ``show``, ``diagnose`` and ``report`` read records only.

The run file is SQLite and numpy; the module taxonomy, the statistic declarations and the
remedy registry are read by name. Each command runs by the real entry point in a fresh
interpreter, which reports at exit which heavy modules it imported.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import graddoctor as gd
from tests.cli_probe import run_command


class _Recurrent(nn.Module):
    """A tanh RNN and a Linear head behind a Tanh MLP layer: every family the readers name."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(3, 8), nn.Tanh())
        self.rnn = nn.RNN(8, 8, batch_first=True)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.inp(x))
        return self.head(out[:, -1])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A short run with module, time and parameter statistics, a spike the Guard clips, findings."""
    folder = tmp_path_factory.mktemp("reading")
    torch.manual_seed(0)
    model = _Recurrent()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(16, 12, 3), torch.randn(16, 1) * 50
    guard = gd.Guard(spikes="clip", nonfinite="skip")
    with gd.Monitor(
        model, optimizer, path=folder / "run.gdr", activations_every=2, guard=guard
    ) as monitor:
        for step in range(24):
            optimizer.zero_grad()
            scale = 1e4 if step == 15 else 1.0  # one spike for the Guard
            loss = scale * nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.log(loss=loss)
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["show", "run.gdr"],
        ["show", "run.gdr", "--step", "0"],
        ["diagnose", "run.gdr"],
        ["diagnose", "run.gdr", "--json"],
        ["report", "run.gdr", "-o", "report.html"],
    ],
    ids=lambda args: "-".join(a for a in args if a != "run.gdr"),
)
def test_reading_a_run_does_not_import_torch(recorded, args):
    code, heavy, output = run_command(args, recorded)
    assert code in (0, 1, 3), output
    assert "Traceback" not in output, output
    assert "torch" not in heavy, (args, heavy)
    if args[0] != "report":
        assert heavy == [], (args, heavy)


def test_the_readers_import_without_torch():
    code = (
        "import sys\n"
        "import graddoctor.views, graddoctor.diagnosis, graddoctor.remedies, graddoctor.report\n"
        "from graddoctor.remedies import available, get_remedy, remedies_for\n"
        "assert available() and get_remedy('clip_norm').treats\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
