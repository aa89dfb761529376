"""The Monitor leaves the model exactly as it found it, and fails clearly on bad input."""

import copy
import pickle

import pytest
import torch

from graddoctor import Monitor, open_run

from ..models import FAMILIES


def hook_count(model: torch.nn.Module) -> int:
    total = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_state_dict_hooks"):
            total += len(getattr(m, attr, {}) or {})
    return total


def optimizer_hook_count(opt) -> int:
    return len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


def train(model, opt, x, y, loss_fn, steps, mon=None, fail_at=None):
    for step in range(steps):
        if step == fail_at:
            raise RuntimeError("boom")
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if mon is not None:
            mon.log(loss=loss)


@pytest.mark.parametrize("family", ["mlp", "lstm", "transformer", "cnn_bn"])
def test_model_unchanged_and_hooks_removed(family, tmp_path):
    model, x, y, loss_fn = FAMILIES[family]()
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    before = hook_count(model)
    with Monitor(model, opt, path=tmp_path / "r.gdr", activations_every=1) as mon:
        assert hook_count(model) > before
        train(model, opt, x, y, loss_fn, 3, mon)
    train(twin, twin_opt, x, y, loss_fn, 3)
    assert hook_count(model) == before and optimizer_hook_count(opt) == 0
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), name  # monitoring changed nothing the optimizer did
    pickle.dumps(model)
    assert list(open_run(tmp_path / "r.gdr").steps("grad_norm")) == [0, 1, 2]


def test_exception_inside_with_removes_hooks_and_keeps_records(tmp_path):
    model, x, y, loss_fn = FAMILIES["mlp"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(RuntimeError, match="boom"):
        with Monitor(model, opt, path=tmp_path / "e.gdr", commit_every=1000, commit_seconds=1e9) as mon:
            train(model, opt, x, y, loss_fn, 5, mon, fail_at=3)
    assert hook_count(model) == 0 and optimizer_hook_count(opt) == 0
    run = open_run(tmp_path / "e.gdr")
    assert list(run.steps("grad_norm")) == [0, 1, 2]
    assert run.events("exception")[0]["message"] == "boom"
    pickle.dumps(model)


def test_model_without_parameters_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no trainable parameters"):
        Monitor(torch.nn.Sequential(torch.nn.ReLU()), path=tmp_path / "x.gdr")
    assert not (tmp_path / "x.gdr").exists()


def test_unknown_module_pattern_names_it(tmp_path):
    model, *_ = FAMILIES["mlp"]()
    with pytest.raises(ValueError, match=r"no module of Sequential matches 'encoder\.\*'"):
        Monitor(model, path=tmp_path / "x.gdr", modules=["encoder.*"])


def test_module_patterns_select_modules(tmp_path):
    model, x, y, loss_fn = FAMILIES["mlp"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, opt, path=tmp_path / "g.gdr", modules=["1", "3"], activations_every=1) as mon:
        train(model, opt, x, y, loss_fn, 1, mon)
    assert open_run(tmp_path / "g.gdr").names("modules") == ["1", "3"]


def test_existing_run_file_is_not_overwritten(tmp_path):
    model, x, y, loss_fn = FAMILIES["mlp"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, opt, path=tmp_path / "k.gdr") as mon:
        train(model, opt, x, y, loss_fn, 2, mon)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        Monitor(model, opt, path=tmp_path / "k.gdr")
    assert list(open_run(tmp_path / "k.gdr").steps("grad_norm")) == [0, 1]


def test_wrong_argument_types(tmp_path):
    model, *_ = FAMILIES["mlp"]()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Monitor("model", path=tmp_path / "a.gdr")
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        Monitor(model, "sgd", path=tmp_path / "b.gdr")


def test_schedules_pick_steps(tmp_path):
    from graddoctor import every_n, log_spaced

    model, x, y, loss_fn = FAMILIES["mlp"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, opt, path=tmp_path / "s.gdr", every=every_n(3, start=1), activations_every=log_spaced(2, 2)) as mon:
        train(model, opt, x, y, loss_fn, 12, mon)
    run = open_run(tmp_path / "s.gdr")
    assert list(run.steps("grad_norm")) == [1, 4, 7, 10]
    expected = [s for s in range(12) if log_spaced(2, 2)(s)]
    assert list(run.steps("act_mean")) == expected == [0, 1, 4, 10]
    assert list(run.scalars("loss")[0]) == list(range(12))


def test_the_issue_usage_snippet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from graddoctor import Monitor, open_run  # noqa: F811 - the exact snippet

    model, x, y, loss_fn = FAMILIES["mlp"]()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    with Monitor(model, optimizer, path="runs/exp1.gdr") as mon:
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            mon.log(loss=loss)
    run = open_run("runs/exp1.gdr")
    steps, names, values = run.series("grad_norm")
    assert values.shape == (len(steps), len(names)) == (4, 6)
    assert names == [n for n, _ in model.named_parameters()]
