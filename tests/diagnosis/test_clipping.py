"""Clipping that hides exploding gradients, from the clip's scalars or from norms pinned at its threshold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.probes.clipping import CLIP_FIRED, CLIP_THRESHOLD, CLIP_TOTAL_NORM, clip_fired


def test_clip_fired_on_floats_and_tensors():
    assert clip_fired(2.0, 1.0) == 1.0 and clip_fired(0.5, 1.0) == 0.0
    norms = torch.tensor([0.5, 1.0, 3.0])
    assert torch.equal(clip_fired(norms, 1.0), torch.tensor([0.0, 0.0, 1.0]))


def clipped_run(path, scale, threshold=1.0, steps=12):
    """A loop that clips with clip_grad_norm_ and logs what the clip saw (as a clip-aware
    recorder will); ``scale`` multiplies the loss, hence the gradient norm."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    norms = []
    with gd.Monitor(model, optimizer, path=path) as monitor:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = scale * nn.functional.mse_loss(model(x), y)
            loss.backward()
            total = nn.utils.clip_grad_norm_(model.parameters(), threshold)
            optimizer.step()
            norms.append(float(total))
            monitor.log(loss=loss, **{CLIP_THRESHOLD: threshold, CLIP_TOTAL_NORM: total,
                                      CLIP_FIRED: clip_fired(total, threshold)})  # fmt: skip
    return gd.diagnose(path), norms


def test_clipping_on_gradients_far_above_its_threshold_hides_an_explosion(tmp_path):
    diagnosis, norms = clipped_run(tmp_path / "run.gdr", scale=200.0)
    (finding,) = diagnosis.of_kind("exploding_gradients")
    assert finding.severity == "warning" and finding.message.startswith(
        "Clipping is hiding exploding gradients"
    )
    evidence = finding.evidence
    assert evidence["clip_fired_fraction"] == 1.0 and evidence["clip_threshold"] == 1.0
    assert evidence["grad_norm_before_clip_median"] == pytest.approx(
        sorted(norms)[len(norms) // 2], rel=0.1
    )
    assert evidence["factor_over_threshold"] >= 10
    assert finding.remedies == ["lower_lr", "warmup"]  # the clip is already on


def test_clipping_a_little_on_most_steps_is_only_information(tmp_path):
    _, norms = clipped_run(tmp_path / "unclipped.gdr", scale=1.0, threshold=1e9)
    diagnosis, _ = clipped_run(tmp_path / "run.gdr", scale=1.0, threshold=0.8 * min(norms))
    (finding,) = diagnosis.of_kind("exploding_gradients")
    assert finding.severity == "info" and "rescales most steps a little" in finding.message
    assert diagnosis.healthy


def test_norms_recorded_after_the_clip_are_recognised_as_pinned(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    data = [(torch.randn(16, 4), torch.randn(16, 1) * 10) for _ in range(2)]
    def clip_by_hand(m, opt):  # a clip the Monitor cannot see: its norms are read after it
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        for g in grads:
            g.mul_(torch.clamp(0.01 / (total + 1e-6), max=1.0))

    clip = (clip_by_hand,)
    problem = gd.Problem(model, data, nn.MSELoss(), grad_transforms=clip)
    diagnosis = gd.checkup(problem, steps=15, run_path=tmp_path / "pinned.gdr")
    (finding,) = diagnosis.of_kind("exploding_gradients")
    assert finding.severity == "info" and finding.evidence["measured"] == "after clipping"
    assert finding.evidence["pinned_grad_norm"] == pytest.approx(0.01, rel=1e-3)
    assert CLIP_TOTAL_NORM in finding.message
    assert diagnosis.healthy  # information, not a problem by itself
