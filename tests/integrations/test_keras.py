"""The Keras 3 callback (torch backend): the lecture's code as written, statistics against a
naive replay of Keras' own train step, the diagnosis, and a model left as it was."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("keras was imported on another backend before this module", allow_module_level=True)

from graddoctor import diagnose, open_run  # noqa: E402
from graddoctor.integrations._keras_backend import check_torch_backend  # noqa: E402
from graddoctor.integrations.keras import GradDoctorKerasCallback  # noqa: E402
from tests.reference import grad_stats, weight_copies, weight_stats  # noqa: E402


def lecture_model():
    """The lecture's code as written (section 3), with keras.Input for Flatten's input_shape."""
    keras.backend.clear_session()  # layer names from dense, as in a fresh session
    return keras.models.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28)).astype("float32"), rng.integers(0, 10, n)


def naive_replay(model, x, y, batch_size):
    """Keras' torch train step written out: forward, mean cross-entropy, backward, SGD(clipnorm=1.0).

    Returns, per batch: {keras weight path: {statistic: value}} from tests/reference.py.
    """
    optimizer = keras.optimizers.SGD(clipnorm=1.0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rows = []
    for start in range(0, len(x), batch_size):
        xb, yb = (
            torch.from_numpy(x[start : start + batch_size]),
            torch.from_numpy(y[start : start + batch_size]),
        )
        named = [(v.path, v.value) for v in model.trainable_weights]
        model.zero_grad()
        loss = loss_fn(yb, model(xb, training=True))
        loss.backward()
        grads = grad_stats(named)
        before = weight_copies(named)
        with torch.no_grad():
            optimizer.apply([p.grad for _, p in named], model.trainable_weights)
        weights = weight_stats(named, before)
        rows.append({name: {**grads[name], **weights[name]} for name, _ in named})
    return rows


def test_lecture_code_trains_under_the_callback_with_naive_statistics(tmp_path):
    keras.utils.set_random_seed(0)
    model = lecture_model()
    replica = keras.models.clone_model(model)
    replica.set_weights(model.get_weights())
    x, y = images(96)
    model.compile(
        optimizer=keras.optimizers.SGD(clipnorm=1.0), loss="sparse_categorical_crossentropy"
    )
    doctor = GradDoctorKerasCallback(
        tmp_path / "lecture.gdr", activations_every=1, run_diagnosis=False
    )
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[doctor])

    expected = naive_replay(replica, x, y, 32)
    prefix = f"{model.name}/"
    with open_run(doctor.run_path) as run:
        assert run.meta["config"]["framework"] == "keras" and run.meta["config"]["clipnorm"] == 1.0
        for stat in ("grad_norm", "grad_max", "weight_norm", "update_norm", "update_ratio"):
            steps, names, values = run.series(stat)
            assert steps.tolist() == [0, 1, 2]  # one row per batch
            for dense in ("dense", "dense_1", "dense_2"):  # a column per Dense kernel and bias
                assert f"{dense}.kernel" in names and f"{dense}.bias" in names
            for j, name in enumerate(names):
                keras_path = prefix + name.replace(".", "/")
                for step in range(3):
                    assert values[step, j] == pytest.approx(
                        expected[step][keras_path][stat], rel=2e-4, abs=1e-7
                    ), (stat, name, step)
        _, losses = run.scalars("loss")
        assert losses.shape == (3,) and np.all(np.isfinite(losses))
        _, modules, out_grad = run.series("out_grad_norm")
        assert modules[:2] == ["batch_normalization", "dense"] and np.all(out_grad > 0)


def test_clipping_is_after_the_measurement(tmp_path):
    """The recorded gradient is the unclipped one, the update the clipped one: ||update|| = lr * 1e-3 at most."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1, global_clipnorm=1e-3), loss="mse"
    )
    doctor = GradDoctorKerasCallback(tmp_path / "clip.gdr", run_diagnosis=False)
    x = np.full((8, 4), 10.0, dtype="float32")
    model.fit(
        x, np.zeros((8, 3), dtype="float32"), batch_size=8, epochs=2, verbose=0, callbacks=[doctor]
    )
    with open_run(doctor.run_path) as run:
        _, _, grads = run.series("grad_norm")
        _, _, updates = run.series("update_norm")
    assert np.sqrt((grads**2).sum(axis=1)).min() > 1.0
    assert np.sqrt((updates**2).sum(axis=1)) == pytest.approx(0.1 * 1e-3, rel=1e-3)


def test_sigmoid_mlp_is_vanishing_and_the_message_names_keras_settings(tmp_path):
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(32, activation="sigmoid") for _ in range(10)]
    model = keras.Sequential([keras.Input((20,)), *layers, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x, y = (
        rng.standard_normal((128, 20)).astype("float32"),
        rng.standard_normal((128, 1)).astype("float32"),
    )
    doctor = GradDoctorKerasCallback(tmp_path / "sigmoid.gdr", activations_every=1)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[doctor])
    assert doctor.diagnosis.kinds() == ["vanishing_gradients"]
    finding = doctor.diagnosis.findings[0]
    assert " In Keras: " in finding.message and "BatchNormalization()" in finding.message
    assert diagnose(doctor.run_path).kinds() == [
        "vanishing_gradients"
    ]  # the file alone says as much


def test_the_model_is_left_as_it_was_and_a_second_fit_writes_a_second_run(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    doctor = GradDoctorKerasCallback(tmp_path / "two.gdr", run_diagnosis=False)
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    for _ in range(2):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[doctor])
    assert [p.name for p in doctor.run_paths] == ["two.gdr", "two-2.gdr"]
    assert "apply" not in model.optimizer.__dict__ and "scale_loss" not in model.optimizer.__dict__
    assert all(not layer._forward_hooks for layer in model.layers)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # trains on without graddoctor
    with open_run(doctor.run_paths[1]) as run:
        types = {m["name"]: (m["type"], m["families"]) for m in run.model_summary}
    assert types["hidden"] == ("Dense", ["weight_layer", "saturating"])
    assert types["out"] == ("Dense", ["weight_layer"])


def test_another_backend_is_refused_naming_the_variable():
    fake = SimpleNamespace(
        __version__=keras.__version__, backend=SimpleNamespace(backend=lambda: "jax")
    )
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=torch.*keras is first imported"):
        check_torch_backend(fake, "graddoctor.integrations.keras")
    check_torch_backend(keras, "graddoctor.integrations.keras")  # this process: torch


def test_a_backend_keras_cannot_load_is_reported_with_the_variable():
    code = "import graddoctor.integrations.keras"  # jax is not installed: Keras cannot start
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert (
        "ImportError: graddoctor.integrations.keras: keras could not load its backend" in out.stderr
    )
    assert "KERAS_BACKEND=torch" in out.stderr
