"""Lightning, Hugging Face and TensorBoard adapters, each run with the real library.

The framework callbacks must record what a plain PyTorch loop with a manual Monitor
records on the same model, batches and optimizer (gradients read before clipping), and
what the naive reference computes in that loop.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Diagnosis, Monitor, open_run

from .. import reference

N_SAMPLES, BATCH, ACCUMULATE, LR = 32, 4, 2, 0.1
CLIP = 0.05  # far below the gradient norms: every step is clipped
STEPS = N_SAMPLES // BATCH // ACCUMULATE
STATS = ("grad_norm", "weight_norm", "update_norm")
# lightning 2.6 on torch 2.13 warns about its own use of torch's pytree LeafSpec
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


class LossNet(Net):
    """Returns ``{"loss", "logits"}`` as a Hugging Face model does when given labels."""

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N_SAMPLES, 4, generator=g)
    return x, 3.0 * x[:, :1] ** 2 + torch.randn(N_SAMPLES, 1, generator=g)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def plain_loop(model: nn.Module, loss_of, path) -> dict:
    """What Lightning and the HF Trainer do, written out: accumulate, read, clip, step.

    Records with a manual Monitor and with the naive reference; returns both.
    """
    x, y = make_data()
    optimizer = make_optimizer(model.parameters())
    named = list(model.named_parameters())
    naive = {stat: [] for stat in STATS}
    losses = []
    with Monitor(model, None, path, activations_every=1) as mon:
        for start in range(0, N_SAMPLES, BATCH * ACCUMULATE):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for offset in range(0, BATCH * ACCUMULATE, BATCH):
                rows = slice(start + offset, start + offset + BATCH)
                loss = loss_of(model, x[rows], y[rows]) / ACCUMULATE
                loss.backward()
                step_loss += loss.item()
            mon.before_step()
            grads = reference.grad_stats(named)
            before = reference.weight_copies(named)
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            optimizer.step()
            mon.after_step()
            weights = reference.weight_stats(named, before)
            naive["grad_norm"].append([grads[n]["grad_norm"] for n, _ in named])
            naive["weight_norm"].append([weights[n]["weight_norm"] for n, _ in named])
            naive["update_norm"].append([weights[n]["update_norm"] for n, _ in named])
            losses.append(step_loss)
            mon.log(loss=step_loss)
    return {"naive": {k: np.array(v) for k, v in naive.items()}, "losses": np.array(losses), "path": path}


def assert_same_run(recorded_path, expected: dict) -> None:
    with open_run(recorded_path) as got, open_run(expected["path"]) as want:
        for stat in STATS:
            steps, names, values = got.series(stat)
            want_steps, want_names, want_values = want.series(stat)
            assert names == want_names and steps.tolist() == list(range(STEPS)) == want_steps.tolist()
            np.testing.assert_allclose(values, want_values, rtol=1e-5, atol=1e-7, err_msg=stat)
            np.testing.assert_allclose(values, expected["naive"][stat], rtol=1e-5, atol=1e-7, err_msg=stat)
        for stat in ("act_mean", "act_std", "out_grad_norm"):
            np.testing.assert_allclose(got.series(stat)[2], want.series(stat)[2], rtol=1e-5, atol=1e-7)
        # the recorded gradients are the unclipped ones: their global norm is far above CLIP
        _, _, grad_norm = got.series("grad_norm")
        assert np.all(np.sqrt((grad_norm**2).sum(axis=1)) > 10 * CLIP)
        np.testing.assert_allclose(got.scalars("loss")[1], expected["losses"], rtol=1e-5)
        assert got.meta["config"]["gradients_read"] == "before_clipping"


# -- Lightning -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pl():
    return pytest.importorskip("lightning.pytorch")


def lightning_module(pl, fail_at_batch: int | None = None):
    class LitNet(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net().net

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            if batch_idx == fail_at_batch:
                raise FloatingPointError("loss diverged")
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def configure_optimizers(self):
            return make_optimizer(self.parameters())

    torch.manual_seed(0)
    return LitNet()


def lightning_fit(pl, module, callback, **options):
    x, y = make_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=False)
    trainer = pl.Trainer(max_epochs=1, callbacks=[callback], accumulate_grad_batches=ACCUMULATE,
                         gradient_clip_val=CLIP, enable_checkpointing=False, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         **options)
    trainer.fit(module, loader)
    return trainer


def test_lightning_callback_records_what_the_plain_monitor_records(pl, tmp_path, capsys):
    from graddoctor.integrations.lightning import GradDoctorCallback

    module = lightning_module(pl)
    twin = copy.deepcopy(module)
    expected = plain_loop(twin, lambda m, x, y: nn.functional.mse_loss(m(x), y), tmp_path / "plain.gdr")
    callback = GradDoctorCallback(tmp_path / "fit.gdr", activations_every=1, tensorboard=tmp_path / "tb")
    lightning_fit(pl, module, callback)
    assert callback.monitor is None and callback.run_path == tmp_path / "fit.gdr"
    assert_same_run(callback.run_path, expected)
    assert isinstance(callback.diagnosis, Diagnosis) and callback.diagnosis.steps == STEPS
    assert "graddoctor:" in capsys.readouterr().out
    assert not module._forward_hooks and all(not m._forward_hooks for m in module.modules())
    # a second fit gets its own run file; the live TensorBoard sink wrote the first one
    lightning_fit(pl, module, callback)
    assert callback.run_paths == [tmp_path / "fit.gdr", tmp_path / "fit-2.gdr"]
    events = read_events(tmp_path / "tb" / "fit")
    assert len(events.Scalars("grad_norm/net.0.weight")) == STEPS


def test_lightning_callback_closes_the_run_when_the_fit_raises(pl, tmp_path):
    from graddoctor.integrations.lightning import GradDoctorCallback

    callback = GradDoctorCallback(tmp_path / "crash.gdr", run_diagnosis=False)
    with pytest.raises(FloatingPointError, match="diverged"):
        lightning_fit(pl, lightning_module(pl, fail_at_batch=5), callback)
    assert callback.monitor is None
    with open_run(tmp_path / "crash.gdr") as run:
        assert run.steps("grad_norm").tolist() == [0, 1]  # batches 0-3 made two steps
        (event,) = run.events("exception")
        assert event["type"] == "FloatingPointError" and event["step"] == 2


def test_lightning_callback_rejects_bad_options(pl):
    from graddoctor.integrations.lightning import GradDoctorCallback

    with pytest.raises(ValueError, match="tensorboard"):
        GradDoctorCallback(histograms_every=10)
    with pytest.raises(ValueError, match="name"):
        GradDoctorCallback(name="")


# -- Hugging Face Trainer ------------------------------------------------------------
@pytest.fixture(scope="module")
def hf():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        pytest.importorskip("accelerate")
        yield pytest.importorskip("transformers")


def hf_arguments(hf, tmp_path, **options):
    settings = dict(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=BATCH,
                    gradient_accumulation_steps=ACCUMULATE, max_grad_norm=CLIP, num_train_epochs=1,
                    logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                    train_sampling_strategy="sequential", dataloader_num_workers=0)
    settings.update(options)
    return hf.TrainingArguments(**settings)


def hf_train(hf, model, args, callbacks, dataset=None):
    if dataset is None:
        x, y = make_data()
        dataset = [{"x": x[i], "labels": y[i]} for i in range(N_SAMPLES)]
    optimizer = make_optimizer(model.parameters())
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = hf.Trainer(model=model, args=args, train_dataset=dataset, optimizers=(optimizer, schedule),
                         callbacks=callbacks)
    trainer.train()
    return trainer


def test_transformers_callback_records_unclipped_gradients_like_the_plain_monitor(hf, tmp_path):
    from graddoctor.integrations.transformers import GradDoctorTrainerCallback

    torch.manual_seed(0)
    model = LossNet()
    untouched, twin = copy.deepcopy(model), copy.deepcopy(model)
    expected = plain_loop(twin, lambda m, x, y: m(x, labels=y)["loss"], tmp_path / "plain.gdr")
    callback = GradDoctorTrainerCallback(tmp_path / "train.gdr", activations_every=1)
    args = hf_arguments(hf, tmp_path)
    trainer = hf_train(hf, model, args, [callback])
    assert args.max_grad_norm == CLIP  # put back after every step
    assert_same_run(tmp_path / "train.gdr", expected)
    assert isinstance(callback.diagnosis, Diagnosis) and callback.diagnosis.steps == STEPS
    # the Trainer's own pre-clipping global norm is the root-sum-square of the recorded ones
    logged = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    with open_run(tmp_path / "train.gdr") as run:
        per_param = run.series("grad_norm")[2]
    np.testing.assert_allclose(np.sqrt((per_param**2).sum(axis=1)), logged, rtol=1e-5)
    # and training is exactly what it is without the callback (clipping included)
    hf_train(hf, untouched, hf_arguments(hf, tmp_path), [])
    for (name, got), (_, want) in zip(model.named_parameters(), untouched.named_parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
    for got, want in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_transformers_callback_on_a_tiny_gpt2_yields_a_diagnosis(hf, tmp_path, capsys):
    from graddoctor.integrations.transformers import GradDoctorTrainerCallback

    torch.manual_seed(0)
    config = hf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = hf.GPT2LMHeadModel(config)
    tokens = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(3))
    dataset = [{"input_ids": t, "labels": t} for t in tokens]
    callback = GradDoctorTrainerCallback(tmp_path / "gpt2.gdr", activations_every=2, verbose=True)
    hf_train(hf, model, hf_arguments(hf, tmp_path, max_grad_norm=1e-3), [callback], dataset)
    assert isinstance(callback.diagnosis, Diagnosis) and callback.diagnosis.steps == 2
    printed = capsys.readouterr().out
    assert f"graddoctor: {callback.diagnosis.summary}" in printed and "─" in printed  # line, then the panel
    with open_run(tmp_path / "gpt2.gdr") as run:
        names = run.names("parameters")
        assert "transformer.h.0.attn.c_attn.weight" in names
        assert "lm_head.weight" not in names  # tied to transformer.wte.weight: recorded once
        _, _, grad_norm = run.series("grad_norm")
        assert np.isfinite(grad_norm).all() and np.sqrt((grad_norm**2).sum(axis=1)).min() > 100 * 1e-3
        assert run.series("act_std")[0].tolist() == [0]


def test_transformers_callback_without_takeover_still_reads_before_the_trainers_clip(hf, tmp_path):
    from graddoctor.integrations.transformers import GradDoctorTrainerCallback
    from graddoctor.probes.clipping import CLIP_FIRED, CLIP_THRESHOLD

    torch.manual_seed(0)
    callback = GradDoctorTrainerCallback(tmp_path / "late.gdr", read_before_clipping=False, run_diagnosis=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="graddoctor")  # before: "...after the Trainer clipped them"
        trainer = hf_train(hf, LossNet(), hf_arguments(hf, tmp_path), [callback])
    logged = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    with open_run(tmp_path / "late.gdr") as run:
        assert run.meta["config"]["gradients_read"] == "before_clipping"
        total = np.sqrt((run.series("grad_norm")[2] ** 2).sum(axis=1))
        assert list(run.scalars(CLIP_THRESHOLD)[1]) == [CLIP] * STEPS
        assert list(run.scalars(CLIP_FIRED)[1]) == [1.0] * STEPS
    # the Trainer's clip, seen by the Monitor: the norms before it (before: all equal to CLIP)
    np.testing.assert_allclose(total, logged, rtol=1e-5)
    assert (total > 10 * CLIP).all()


# -- TensorBoard ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def event_accumulator():
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator

    return event_accumulator


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def recorded_run(path, steps: int = 6, commit_every: int = 25, hook=None):
    torch.manual_seed(0)
    model = Net()
    x, y = make_data()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    with Monitor(model, optimizer, path, activations_every=2, commit_every=commit_every) as mon:
        for step in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            if hook is not None:
                hook(model, step)
            optimizer.step()
            mon.log(loss=loss)
    return model


def test_tensorboard_export_equals_the_run(event_accumulator, tmp_path):
    from graddoctor.integrations.tensorboard import tensorboard_from_run

    recorded_run(tmp_path / "run.gdr")
    tensorboard_from_run(tmp_path / "run.gdr", tmp_path / "tb")
    events = read_events(tmp_path / "tb")
    with open_run(tmp_path / "run.gdr") as run:
        for stat in ("grad_norm", "weight_norm", "update_ratio", "act_std", "act_saturated", "out_grad_norm"):
            steps, names, values = run.series(stat)
            for column, name in enumerate(names):
                measured = ~np.isnan(values[:, column])
                tag = f"{stat}/{name}"
                if not measured.any():
                    assert tag not in events.Tags()["scalars"]
                    continue
                got = events.Scalars(tag)
                assert [e.step for e in got] == steps[measured].tolist()
                np.testing.assert_allclose([e.value for e in got], values[measured, column], rtol=1e-6)
        loss_steps, losses = run.scalars("loss")
    assert [e.step for e in events.Scalars("loss")] == loss_steps.tolist()
    np.testing.assert_allclose([e.value for e in events.Scalars("loss")], losses, rtol=1e-6)
    assert not any(tag.startswith(("grad_max/", "update_norm/")) for tag in events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("act_std/net.1")] == [0, 2, 4]  # activations_every=2


def test_tensorboard_follow_writes_each_step_once_while_the_run_grows(event_accumulator, tmp_path):
    from graddoctor.integrations.tensorboard import TensorBoardSink

    sink = TensorBoardSink(tmp_path / "tb", histograms_every=3)
    sink.follow(tmp_path / "live.gdr", poll_seconds=0.01)
    grads = {}

    def hook(model, step):
        sink.histograms(model, step)
        grads[step] = model.net[0].weight.grad.detach().clone()

    recorded_run(tmp_path / "live.gdr", steps=7, commit_every=1, hook=hook)
    sink.close()
    assert sink.follow_error is None
    events = read_events(tmp_path / "tb")
    assert [e.step for e in events.Scalars("grad_norm/net.2.weight")] == list(range(7))
    with open_run(tmp_path / "live.gdr") as run:
        np.testing.assert_allclose([e.value for e in events.Scalars("weight_norm/net.4.bias")],
                                   run.series("weight_norm", ["net.4.bias"])[2][:, 0], rtol=1e-6)
    histograms = events.Histograms("grad_hist/net.0.weight")
    assert [h.step for h in histograms] == [0, 3, 6]
    for h in histograms:
        g = grads[h.step].double().ravel().tolist()
        value = h.histogram_value
        assert value.num == len(g) and math.isclose(value.min, min(g)) and math.isclose(value.max, max(g))
        assert math.isclose(value.sum, sum(g), rel_tol=1e-5, abs_tol=1e-9)
        assert math.isclose(value.sum_squares, sum(v * v for v in g), rel_tol=1e-5)


def test_tensorboard_histogram_of_a_nonfinite_gradient_keeps_the_finite_entries(event_accumulator, tmp_path):
    from graddoctor.integrations.tensorboard import TensorBoardSink

    layer = nn.Linear(2, 2)
    layer.weight.grad = torch.tensor([[1.0, float("nan")], [float("inf"), -2.0]])
    with TensorBoardSink(tmp_path / "tb", histograms_every=1) as sink:
        assert sink.histograms(layer, 0)
    (h,) = read_events(tmp_path / "tb").Histograms("grad_hist/weight")
    assert (h.histogram_value.num, h.histogram_value.min, h.histogram_value.max) == (2, -2.0, 1.0)


def test_tensorboard_sink_rejects_bad_input(event_accumulator, tmp_path):
    from graddoctor.integrations.tensorboard import TensorBoardSink

    with pytest.raises(TypeError, match="sequence of statistic names"):
        TensorBoardSink(tmp_path / "a", parameter_stats="grad_norm")
    sink = TensorBoardSink(tmp_path / "b")
    with pytest.raises(ValueError, match="poll_seconds"):
        sink.follow(tmp_path / "x.gdr", poll_seconds=0)
    sink.close()
    with pytest.raises(RuntimeError, match="closed"):
        sink.export(tmp_path / "x.gdr")


# -- lazy imports --------------------------------------------------------------------
def test_integrations_import_their_framework_lazily_with_an_install_hint():
    code = (
        "import sys, graddoctor, graddoctor.integrations\n"
        "heavy = [m for m in ('lightning', 'pytorch_lightning', 'transformers', 'tensorboard',\n"
        "         'torch.utils.tensorboard') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    from graddoctor.integrations._lazy import first_available, require

    with pytest.raises(ImportError, match=r"^graddoctor.integrations.x needs nopkg: pip install nopkg$"):
        require("no_such_module_for_graddoctor", feature="graddoctor.integrations.x", package="nopkg")
    with pytest.raises(ImportError, match="pip install lightning"):
        first_available("no_such_a", "no_such_b", feature="f", package="lightning")
    assert require("json", feature="f").__name__ == "json"
