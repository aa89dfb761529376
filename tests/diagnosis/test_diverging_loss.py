"""``diverging_loss``: a loss rising well above its start or its minimum, or updates as large as the weights.

Synthetic loss series are logged on a tiny model trained at learning rate 0 (so the
update ratio stays 0 and only the loss speaks); real ones come from a tiny GPT-2.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.diagnosis import thresholds as T

from ..diagnosis_problems import PROBLEMS

# the losses graddoctor recorded for nanoGPT's train.py at --learning_rate=1.0 (2 layers,
# 32 wide, the tiny Shakespeare characters): 4.19 -> 7.9 -> back to 4.1
NANOGPT_LR1 = [
    4.1887, 4.6737, 5.5152, 5.5086, 4.6392, 6.5414, 7.8935, 6.2233, 7.4053, 7.1939, 6.1698,
    5.3801, 6.4906, 5.8171, 5.9282, 4.9391, 5.3509, 5.0218, 4.5725, 4.6288, 4.3815, 4.6025,
    4.422, 4.5089, 4.2167, 4.2456, 4.3693, 4.2672, 4.1326, 4.2353, 4.1611, 4.2065, 4.1914,
    4.1627, 4.1539, 4.0987, 4.1354, 4.1256, 4.1648, 4.1606, 4.1362,
]  # fmt: skip
# the healthy run of the same script at its own learning rate
NANOGPT_HEALTHY = [
    4.1887, 4.1787, 4.1665, 4.1558, 4.1377, 4.1141, 4.1034, 4.0629, 4.0608, 4.0345, 4.0026,
    3.9747, 3.9793, 3.9384, 3.9393, 3.9194, 3.8958, 3.8859, 3.8631, 3.8444, 3.848, 3.8285,
    3.8094, 3.7904, 3.7898, 3.7981, 3.7623, 3.7637, 3.7836, 3.7825, 3.7583, 3.7416, 3.7368,
    3.7351, 3.7407, 3.7351, 3.7195, 3.7152, 3.7215, 3.721, 3.7407,
]  # fmt: skip


def logged(path, losses, lr=0.0, loss_of=None):
    """A run of ``len(losses)`` steps of a Linear(4, 1) with SGD at ``lr``, logging ``losses``."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    x = torch.randn(8, 4)
    with gd.Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        for value in losses:
            optimizer.zero_grad()
            (loss_of(model) if loss_of else model(x).pow(2).mean()).backward()
            optimizer.step()
            monitor.log(loss=value)
    return gd.diagnose(path)


def diverging(diagnosis):
    found = diagnosis.of_kind("diverging_loss")
    return found[0] if found else None


def noisy_decay(steps=60, seed=0, noise=0.3):
    g = np.random.default_rng(seed)
    return [
        2.0 * math.exp(-t / 20) * (1 + noise * g.standard_normal()) + 0.05 for t in range(steps)
    ]


@pytest.mark.parametrize(
    "name, losses",
    [
        ("noisy decay", noisy_decay()),
        ("noisier decay", noisy_decay(seed=1, noise=0.45)),
        # four batches cycled, the first one the easiest: the others sit 1.3x above it
        ("cycled batches, easy first", [0.261, 0.342, 0.319, 0.338] * 10),
        # the early "catapult" of SGD: three steps far up, then training goes on
        ("transient spike", [2.2, 4.8, 14.9, 6.8, 1.3, 1.17, 1.17, 0.84, 0.76, 0.66] + [0.5 * 0.97**t for t in range(30)]),
        ("plateau with noise", [2.30 + 0.08 * math.sin(3 * t) for t in range(50)]),
        ("nanoGPT at its own lr", NANOGPT_HEALTHY),
    ],
)  # fmt: skip
def test_no_false_alarm_on_noisy_healthy_losses(name, losses, tmp_path):
    assert diverging(logged(tmp_path / "run.gdr", losses)) is None, name


def test_nanogpt_at_lr_1_is_diverging(tmp_path):
    finding = diverging(logged(tmp_path / "run.gdr", NANOGPT_LR1))
    assert finding is not None and finding.severity == "warning"
    evidence = finding.evidence
    assert evidence["test"] == "above_start"
    assert evidence["loss_start"] == pytest.approx(NANOGPT_LR1[0], rel=1e-3)
    low, high = evidence["window"]
    window = sorted(NANOGPT_LR1[low : high + 1])
    # 8 of the 10 losses of the window above 1.25x the first one (naive count)
    assert high - low + 1 == T.LOSS_WINDOW
    assert sum(v > T.DIVERGING_LOSS_FACTOR * NANOGPT_LR1[0] for v in window) >= 8
    assert evidence["loss_window_median"] == pytest.approx(np.median(window), rel=1e-3)
    assert set(evidence["loss_trajectory"]) >= {"0", "40"}
    assert finding.remedies[:3] == ["lower_lr", "warmup", "clip_norm"]
    assert "learning rate" in finding.message


def test_rise_above_the_minimum_after_progress(tmp_path):
    losses = [4.0 * 0.9**t for t in range(15)] + [3.0 + 0.05 * (t % 3) for t in range(15)]
    finding = diverging(logged(tmp_path / "run.gdr", losses))
    assert finding is not None and finding.evidence["test"] == "above_minimum"
    # the reference: the lowest 5-step median before the window (naive)
    start = finding.first_step
    lowest = min(statistics.median(losses[i - 4 : i + 1]) for i in range(4, start))
    assert finding.evidence["loss_reference"] == pytest.approx(lowest, rel=1e-3)
    assert start >= 11 and lowest < 1.5


def test_ten_times_the_start_is_critical_and_nan_after_it_is_both(tmp_path):
    # the run: 16 steps of a loss rising 3.8 -> 1089, then NaN
    losses = [3.8 * 1.43**t for t in range(16)] + [float("nan")] * 3
    diagnosis = logged(tmp_path / "run.gdr", losses)
    finding = diverging(diagnosis)
    assert finding is not None and finding.severity == "critical"
    assert "nonfinite" in diagnosis.kinds()


def test_too_few_losses_are_not_judged_and_say_so(tmp_path):
    diagnosis = logged(tmp_path / "run.gdr", [1.0, 5.0, 9.0, 20.0, 40.0, 80.0])
    assert diverging(diagnosis) is None
    assert any("diverging loss was not checked" in limit for limit in diagnosis.limits)


def test_updates_as_large_as_the_weights_for_twenty_steps(tmp_path):
    # gradient descent on sum(w^2) at lr 0.75: w <- -0.5 w, each update 1.5x the weights
    # before it (3x those after it); the logged loss stays flat: only the update ratio speaks
    def quadratic(model):
        return sum(p.pow(2).sum() for p in model.parameters())

    finding = diverging(logged(tmp_path / "run.gdr", [1.0] * 30, lr=0.75, loss_of=quadratic))
    assert finding is not None and finding.evidence["test"] == "update_ratio"
    assert finding.evidence["update_ratio_max"] == pytest.approx(3.0, rel=1e-3)
    assert finding.evidence["steps_above"] == T.DIVERGING_UPDATE_STEPS


def test_update_ratio_matches_a_naive_loop(tmp_path):
    """The ratio in the evidence is ||w_{t+1} - w_t|| / ||w_{t+1}|| over every parameter together."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=3.0)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    naive = []
    with gd.Monitor(model, optimizer, path=tmp_path / "run.gdr") as monitor:
        for _ in range(12):
            before = [p.detach().clone() for p in model.parameters()]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.log(loss=loss)
            change = sum(
                float((p.detach() - b).pow(2).sum()) for p, b in zip(model.parameters(), before)
            )
            size = sum(float(p.detach().pow(2).sum()) for p in model.parameters())
            naive.append(math.sqrt(change / size))
    view = gd.views.load_view(gd.open_run(tmp_path / "run.gdr"))
    np.testing.assert_allclose(view.total_update_ratio(), naive, rtol=1e-4)


def test_gpt2_at_lr_1_is_diverging_and_healthy_gpt2_is_not(tmp_path):
    sick = gd.checkup(PROBLEMS["gpt2-tiny-lr-too-high"](), run_path=tmp_path / "sick.gdr")
    finding = diverging(sick)
    assert finding is not None and finding.severity == "critical"
    assert finding.evidence["update_ratio_max"] > 0.5 and finding.evidence["lr"] == 1.0
    assert sick.remedies()[0] == "lower_lr"
    healthy = gd.checkup(PROBLEMS["gpt2-tiny"](), run_path=tmp_path / "healthy.gdr")
    assert healthy.healthy and healthy.status == "healthy"
