"""Issue 11 item 2: the Monitor reads the gradients before the loop's own clipping.

A loop that clips between ``backward()`` and ``optimizer.step()`` (nanoGPT:
``torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)``) used to be recorded
after the clip: every norm read as the threshold. The truth here is the gradient the
test reads itself, in float64, just before it calls the clip.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run
from graddoctor.clip import clip_grad_norm_ as graddoctor_clip_grad_norm_
from graddoctor.clip import clip_grad_value_ as graddoctor_clip_grad_value_
from graddoctor.probes.clipping import CLIP_FIRED, CLIP_THRESHOLD, CLIP_TOTAL_NORM
from graddoctor.probes.parameters import ParameterProbe

RTOL = 1e-5
TORCH_CLIPS = ("clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_")


def naive_norms(model: nn.Module) -> list[float]:
    return [
        math.sqrt(sum(v * v for v in p.grad.double().flatten().tolist()))
        for p in model.parameters()
    ]


def naive_max(model: nn.Module) -> list[float]:
    return [max(abs(v) for v in p.grad.double().flatten().tolist()) for p in model.parameters()]


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


def clipped_loop(model, optimizer, clip, scales, monitor=None):
    """A nanoGPT-style step per scale (the loss times ``scale``); returns the float64
    per-parameter norms and maxima before each clip, and what each clip returned."""
    x, y = torch.randn(32, 6, generator=torch.Generator().manual_seed(1)), torch.zeros(32, 1)
    before, maxima, returned = [], [], []
    for scale in scales:
        optimizer.zero_grad()
        loss = scale * nn.functional.mse_loss(model(x) + 1.0, y)
        loss.backward()
        before.append(naive_norms(model))
        maxima.append(naive_max(model))
        returned.append(clip(model))
        optimizer.step()
        if monitor is not None:
            monitor.log(loss=loss.detach())
    return np.array(before), np.array(maxima), returned


def scalars(run, name):
    steps, values = run.scalars(name)
    return list(steps), list(values)


@pytest.mark.parametrize(
    "clip",
    [
        lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0),
        lambda m: torch.nn.utils.clip_grad.clip_grad_norm_(m.parameters(), max_norm=1.0),
        lambda m: graddoctor_clip_grad_norm_(m.parameters(), 1.0),  # imported before the Monitor
    ],
    ids=["torch.nn.utils", "torch.nn.utils.clip_grad", "graddoctor.clip"],
)
def test_norm_clipping_records_the_gradients_before_it(tmp_path, clip):
    # before: grad_norm summed to exactly 1.0 on every clipped step
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scales = [300.0, 0.01, 300.0, 50.0]
    path = tmp_path / "norm.gdr"
    with Monitor(model, optimizer, path=path) as monitor:
        before, _, returned = clipped_loop(model, optimizer, clip, scales, monitor)
    totals = np.sqrt((before**2).sum(axis=1))
    assert totals[0] > 10 and totals[1] < 1  # clipped hard, then not at all
    with open_run(path) as run:
        recorded = run.series("grad_norm")[2]
        np.testing.assert_allclose(recorded, before, rtol=RTOL)
        assert scalars(run, CLIP_THRESHOLD) == ([0, 1, 2, 3], [1.0] * 4)
        assert scalars(run, CLIP_FIRED) == ([0, 1, 2, 3], [1.0, 0.0, 1.0, 1.0])
        steps, total_norm = scalars(run, CLIP_TOTAL_NORM)
        assert steps == [0, 1, 2, 3]
        np.testing.assert_allclose(total_norm, totals, rtol=RTOL)
        np.testing.assert_allclose(total_norm, [float(r) for r in returned], rtol=1e-6)
        # the update is the clipped one: SGD moves by lr * clipped gradient
        update = np.sqrt((run.series("update_norm")[2] ** 2).sum(axis=1))
        expected = 1e-3 * np.minimum(totals, 1.0)
        np.testing.assert_allclose(update, expected, rtol=1e-3)


@pytest.mark.parametrize(
    "clip",
    [
        lambda m: torch.nn.utils.clip_grad_value_(m.parameters(), 0.05),
        lambda m: graddoctor_clip_grad_value_(m.parameters(), clip_value=0.05),
    ],
    ids=["torch", "graddoctor"],
)
def test_value_clipping_records_the_gradients_before_it(tmp_path, clip):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    path = tmp_path / "value.gdr"
    with Monitor(model, optimizer, path=path) as monitor:
        before, maxima, _ = clipped_loop(model, optimizer, clip, [300.0, 0.001], monitor)
    with open_run(path) as run:
        np.testing.assert_allclose(run.series("grad_norm")[2], before, rtol=RTOL)
        np.testing.assert_allclose(run.series("grad_max")[2], maxima, rtol=RTOL)
        assert scalars(run, CLIP_THRESHOLD)[1] == [0.05, 0.05]
        assert scalars(run, CLIP_FIRED)[1] == [1.0, 0.0]
        np.testing.assert_allclose(
            scalars(run, CLIP_TOTAL_NORM)[1], np.sqrt((before**2).sum(axis=1)), rtol=RTOL
        )


def test_training_is_unchanged_and_gradients_are_measured_once_per_step(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = ParameterProbe.measure_grads

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ParameterProbe, "measure_grads", counted)
    model, twin = mlp(), mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)

    def clip(m):
        return torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)

    with Monitor(model, optimizer, path=tmp_path / "once.gdr") as monitor:
        _, _, returned = clipped_loop(model, optimizer, clip, [5.0] * 5, monitor)
    _, _, twin_returned = clipped_loop(twin, twin_optimizer, clip, [5.0] * 5)
    assert calls["n"] == 5  # at the clip; the optimizer's pre-hook did not measure again
    assert [float(r) for r in returned] == [float(r) for r in twin_returned]
    for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_clip_functions_are_restored_when_the_last_monitor_closes(tmp_path):
    import torch.nn.utils.clip_grad as clip_grad

    originals = {name: getattr(torch.nn.utils, name) for name in TORCH_CLIPS}
    module_originals = {
        name: getattr(clip_grad, name) for name in ("clip_grad_norm_", "clip_grad_value_")
    }
    first, second = mlp(0), mlp(1)
    a = Monitor(first, torch.optim.SGD(first.parameters(), lr=0.1), path=tmp_path / "a.gdr")
    b = Monitor(second, torch.optim.SGD(second.parameters(), lr=0.1), path=tmp_path / "b.gdr")
    assert torch.nn.utils.clip_grad_norm_ is not originals["clip_grad_norm_"]
    assert torch.nn.utils.clip_grad_norm_ is clip_grad.clip_grad_norm_  # one wrapper, both names
    a.close()  # closed out of order: still wrapped for b
    assert torch.nn.utils.clip_grad_value_ is not originals["clip_grad_value_"]
    b.close()
    assert {name: getattr(torch.nn.utils, name) for name in TORCH_CLIPS} == originals
    assert {name: getattr(clip_grad, name) for name in module_originals} == module_originals


def test_each_monitor_sees_only_the_clips_of_its_own_parameters(tmp_path):
    generator, critic = mlp(0), mlp(1)
    opt_g = torch.optim.SGD(generator.parameters(), lr=1e-3)
    opt_c = torch.optim.SGD(critic.parameters(), lr=1e-3)
    x = torch.randn(8, 6)
    with (
        Monitor(generator, opt_g, path=tmp_path / "g.gdr") as mon_g,
        Monitor(critic, opt_c, path=tmp_path / "c.gdr") as mon_c,
    ):
        for _ in range(3):
            for model, opt, mon in ((generator, opt_g, mon_g), (critic, opt_c, mon_c)):
                opt.zero_grad()
                (100 * model(x).pow(2).mean()).backward()
                if model is critic:
                    before = naive_norms(critic)
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), 0.1)
                opt.step()
                mon.log(loss=0.0)
    with open_run(tmp_path / "g.gdr") as run:
        assert CLIP_FIRED not in run.scalar_names()
    with open_run(tmp_path / "c.gdr") as run:
        assert scalars(run, CLIP_FIRED)[1] == [1.0, 1.0, 1.0]
        np.testing.assert_allclose(run.series("grad_norm")[2][-1], before, rtol=RTOL)


def test_manual_steps_read_before_the_clip_whichever_comes_first(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(8, 6)
    expected = []
    with Monitor(model, path=tmp_path / "manual.gdr") as monitor:
        for framework_first in (True, False):
            optimizer.zero_grad()
            (100 * model(x).pow(2).mean()).backward()
            expected.append(naive_norms(model))
            if framework_first:  # a callback measuring before the framework clips (Lightning)
                monitor.before_step()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                optimizer.step()
                monitor.after_step()
            else:  # a loop that clips, then calls step()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                monitor.step()
                optimizer.step()
    with open_run(tmp_path / "manual.gdr") as run:
        np.testing.assert_allclose(run.series("grad_norm")[2], expected, rtol=RTOL)
        assert scalars(run, CLIP_FIRED) == ([0, 1], [1.0, 1.0])


def test_under_grad_scaler_the_unscaled_gradients_before_the_clip(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    x = torch.randn(8, 6)
    expected = []
    with Monitor(model, optimizer, path=tmp_path / "amp.gdr", scaler=scaler) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            scaler.scale(100 * model(x).pow(2).mean()).backward()
            scaler.unscale_(optimizer)  # nanoGPT: unscale, then clip
            expected.append(naive_norms(model))
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            scaler.step(optimizer)
            scaler.update()
            monitor.log(loss=0.0)
    with open_run(tmp_path / "amp.gdr") as run:
        np.testing.assert_allclose(run.series("grad_norm")[2], expected, rtol=RTOL)
        assert scalars(run, CLIP_FIRED)[1] == [1.0, 1.0, 1.0]


def test_torch_behaviour_is_kept(tmp_path):
    model = mlp()
    with Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), path=tmp_path / "t.gdr"):
        with pytest.warns(UserWarning, match="empty generator"):
            torch.nn.utils.clip_grad_norm_((p for p in []), 1.0)
        with pytest.raises(RuntimeError, match="non-finite"):
            model[0].weight.grad = torch.full_like(model[0].weight, float("nan"))
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, error_if_nonfinite=True)
        total = torch.nn.utils.clip_grad_norm_(model[0].weight, 1.0)  # one tensor
        assert torch.isnan(total)


def test_a_failing_measurement_at_the_clip_still_clips(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("probe bug")

    monkeypatch.setattr(ParameterProbe, "measure_grads", broken)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Monitor(model, optimizer, path=tmp_path / "broken.gdr") as monitor:
            clipped_loop(model, optimizer, lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0),
                         [300.0, 300.0], monitor)  # fmt: skip
            assert math.sqrt(sum(n * n for n in naive_norms(model))) == pytest.approx(1.0, rel=1e-4)
    assert len([w for w in caught if "grad_norm" in str(w.message)]) == 1
    with open_run(tmp_path / "broken.gdr") as run:
        assert scalars(run, CLIP_FIRED)[1] == [1.0, 1.0]


def test_monitors_opened_and_closed_in_threads_restore_the_clip_functions(tmp_path):
    originals = {name: getattr(torch.nn.utils, name) for name in TORCH_CLIPS}
    errors = []

    def worker(index):
        try:
            for round_ in range(5):
                model = mlp(index)
                path = tmp_path / f"t{index}-{round_}.gdr"
                with Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), path=path):
                    model(torch.randn(2, 6)).sum().backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {name: getattr(torch.nn.utils, name) for name in TORCH_CLIPS} == originals


def test_the_clip_adds_no_host_read_to_the_step(tmp_path, monkeypatch):
    from ..probes.test_float_range import count_host_reads

    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(8, 6)
    options = {"commit_every": 1000, "commit_seconds": 1e9, "activations_every": None}
    with Monitor(model, optimizer, path=tmp_path / "sync.gdr", **options) as monitor:
        for step in range(3):
            if step == 1:  # after the first step's one-time set-up
                reads = count_host_reads(monkeypatch)
            optimizer.zero_grad()
            loss = 100 * model(x).pow(2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.01)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()
            monitor.log(loss=loss.detach())
        monkeypatch.undo()
    assert reads == ["__bool__", "__bool__"]  # the gradients' range check, once per step
    with open_run(tmp_path / "sync.gdr") as run:
        assert scalars(run, CLIP_FIRED)[1] == [1.0, 1.0, 1.0]  # both clips fired
        assert scalars(run, CLIP_THRESHOLD)[1] == [0.01, 0.01, 0.01]  # the smaller one


def test_a_monitor_dropped_without_close_releases_the_clip_functions(tmp_path):
    import gc

    original = torch.nn.utils.clip_grad_norm_
    model = mlp()
    monitor = Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), path=tmp_path / "d.gdr")
    assert torch.nn.utils.clip_grad_norm_ is not original
    monitor.writer.close()
    del monitor
    gc.collect()
    model(torch.randn(2, 6)).sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # finds no live Monitor: restores
    assert torch.nn.utils.clip_grad_norm_ is original
