"""``per_tensor`` (Keras' clipnorm) and its former name ``per_layer``; the clip_norm remedy offers both modes."""

import pytest
import torch

from graddoctor import clip, get_remedy
from graddoctor.problem import Problem
from tests.reference import grad_stats


def model_with_grads(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    model(torch.randn(16, 8)).pow(2).sum().mul(50).backward()
    return model


def test_per_layer_is_an_alias_of_per_tensor():
    a, b, c = model_with_grads(), model_with_grads(), model_with_grads()
    norms_a = clip.clip_grad_norm_(a.parameters(), 0.5, per_tensor=True)
    norms_b = clip.clip_grad_norm_(b.parameters(), 0.5, per_layer=True)
    norms_c = clip.clip_norm_(c.parameters(), 0.5, per_tensor=True)
    torch.testing.assert_close(norms_a, norms_b)
    torch.testing.assert_close(norms_a, norms_c)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad)
    with pytest.raises(ValueError, match="former name"):
        clip.clip_grad_norm_(a.parameters(), 0.5, per_tensor=True, per_layer=False)


def test_per_tensor_clips_each_weight_and_bias_alone():
    model = model_with_grads()
    before = grad_stats(model.named_parameters())
    clip.clip_grad_norm_(model.parameters(), 0.5, per_tensor=True)
    after = grad_stats(model.named_parameters())
    for name in before:
        assert after[name]["grad_norm"] == pytest.approx(
            min(before[name]["grad_norm"], 0.5), rel=1e-5
        )


@pytest.mark.parametrize("per_tensor", [False, True])
def test_clip_norm_remedy_offers_both(per_tensor):
    remedy = get_remedy("clip_norm")
    assert remedy.params["per_tensor"] is False
    model, reference = model_with_grads(), model_with_grads()
    problem = Problem(
        model=model,
        data=[(torch.randn(4, 8), torch.randn(4, 2))],
        loss_fn=torch.nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
    )
    treated = remedy.transform(problem, {**remedy.params, "per_tensor": per_tensor})
    treated.grad_transforms[-1](model, None)  # the grad transform a trainer calls after backward
    clip.clip_grad_norm_(reference.parameters(), 1.0, per_tensor=per_tensor)
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad)


def test_framework_settings_are_declared_on_the_entries_and_read_generically():
    from graddoctor.remedies import available
    from graddoctor.remedies.frameworks import framework_note

    keras_settings = {
        r: get_remedy(r).settings["keras"] for r in available() if "keras" in get_remedy(r).settings
    }
    assert "clipnorm" in keras_settings["clip_norm"] and "he_normal" in keras_settings["init_he"]
    assert "BatchNormalization()" in keras_settings["batchnorm"]
    note = framework_note(["init_lsuv", "clip_norm", "init_he"], "keras")
    assert (
        note
        == f" In Keras: {keras_settings['clip_norm']} (clip_norm); {keras_settings['init_he']} (init_he)."
    )
    assert (
        framework_note(["clip_norm"], None) == "" and framework_note(["init_lsuv"], "keras") == ""
    )
