r"""Keras 3: ``GradDoctorKerasCallback`` records a run per ``model.fit`` and diagnoses it.

Keras 3 runs on PyTorch (``KERAS_BACKEND=torch``): its layers are ``torch.nn.Module``\ s
and its weights torch parameters, so graddoctor's Monitor measures them directly.

Where the gradients are read. The torch backend's ``train_step`` runs the backward, then
``optimizer.apply(grads, trainable_variables)``; ``apply`` unscales a
``loss_scale_factor`` and ``_backend_apply_gradients`` then clips
(``BaseOptimizer._clip_gradients``: ``clipnorm``, ``global_clipnorm`` or ``clipvalue``) and
updates. For the duration of ``fit`` the callback wraps the optimizer's ``apply`` (its
instance attribute, removed at the end): it measures the gradients the optimizer received
and snapshots the weights, calls Keras' own ``apply``, then measures weights and updates.
So the gradients are read before Keras' clipping, and the updates are the clipped ones.
The batch loss is the one the train step hands to ``optimizer.scale_loss``.

Names: each Keras layer with weights or an activation is recorded as one module named by
its Keras path relative to the model (``dense``, ``dense_1``...), its weights as
``dense.kernel``, ``dense.bias`` (see ``graddoctor.integrations._keras_mirror``). A Dense
layer's activation statistics are of its output, after its activation.

Usage::

    import os
    os.environ["KERAS_BACKEND"] = "torch"          # before keras is first imported
    import keras
    from graddoctor.integrations.keras import GradDoctorKerasCallback

    doctor = GradDoctorKerasCallback(dirpath="runs")
    model.compile(optimizer=keras.optimizers.SGD(clipnorm=1.0), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, callbacks=[doctor])
    doctor.diagnosis            # graddoctor.Diagnosis of the fit; doctor.run_path its run file

The run file is an ordinary graddoctor run (``graddoctor show / diagnose / report``); its
config says ``framework: keras``, so the diagnosis names the Keras setting behind each
remedy (``kernel_initializer="he_normal"``, ``clipnorm``, ``BatchNormalization()``).
Keras calls no callback event when ``fit`` raises: call ``close()`` in a ``finally`` to
keep the last steps (the next ``fit`` closes a run left open).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from ..monitor.schedules import Schedule
from ._keras_backend import check_torch_backend, import_keras
from ._keras_mirror import forward_through, mirror_model, torch_tensor
from ._runs import RunPerFit

FEATURE = "graddoctor.integrations.keras"
keras = import_keras(FEATURE)

_CLIP_OPTIONS = ("clipnorm", "global_clipnorm", "clipvalue")


class GradDoctorKerasCallback(RunPerFit, keras.callbacks.Callback):
    """Records per-layer gradient, weight, update and activation statistics of each ``fit``.

    Args:
        path: the run file of the fit (a second fit with the same callback writes
            ``<stem>-2.gdr``, then ``-3``...). Default: ``<dirpath>/<name>-<time>.gdr``.
        dirpath: folder of the run files when ``path`` is not given.
        name: file name prefix when ``path`` is not given.
        every: schedule of parameter statistics, in batches (int n or ``step -> bool``).
        activations_every: schedule of layer output statistics (None: never).
        modules: ``"leaf"`` (every recorded Keras layer) or glob patterns of their names.
        track_updates: measure the optimizer's update (keeps one copy of the weights).
        tensorboard: a TensorBoard log folder: the run is followed live into
            ``<tensorboard>/<run file stem>``.
        histograms_every: schedule of gradient histograms written to ``tensorboard``.
        overwrite: replace an existing run file.
        run_diagnosis: diagnose the run at the end of the fit (``self.diagnosis``) and
            print a one-line summary.
        verbose: also print the full diagnosis as a rich panel.

    Attributes:
        monitor: the Monitor of the fit in progress (None outside a fit).
        run_path: the run file of the last fit; ``run_paths`` all of them.
        diagnosis: the Diagnosis of the last fit (None before, or if it failed).
    """

    FEATURE = FEATURE

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        dirpath: str | os.PathLike = "runs",
        name: str = "keras",
        every: int | Schedule = 1,
        activations_every: int | Schedule | None = 10,
        modules: str | list[str] = "leaf",
        track_updates: bool = True,
        tensorboard: str | os.PathLike | None = None,
        histograms_every: int | Schedule | None = None,
        overwrite: bool = False,
        run_diagnosis: bool = True,
        verbose: bool = False,
    ) -> None:
        keras.callbacks.Callback.__init__(self)
        self._init_runs(
            path,
            dirpath,
            name,
            every,
            activations_every,
            modules,
            track_updates,
            tensorboard,
            histograms_every,
            overwrite,
            run_diagnosis,
            verbose,
        )
        self._root: torch.nn.Module | None = None
        self._handles: list[Any] = []
        self._wrapped: list[tuple[Any, str]] = []  # (optimizer, method) wrapped for the fit
        self._in_batch = False
        self._loss: torch.Tensor | None = None

    # -- fit -------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        self.close()  # a fit that raised: Keras called no end event for it
        check_torch_backend(keras, FEATURE)
        model = self.model
        if not isinstance(model, torch.nn.Module) or not model.built:
            raise RuntimeError(
                f"{FEATURE} needs a built Keras model on the torch backend (add keras.Input)"
            )
        if getattr(model, "jit_compile", False) is True:
            warnings.warn(
                "graddoctor cannot hook a torch.compile'd Keras train step: use "
                "model.compile(..., jit_compile=False)",
                RuntimeWarning,
                stacklevel=2,
            )
        # a LossScaleOptimizer hands its inner optimizer's apply the unscaled gradients
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        root, pairs = mirror_model(model)
        missing = _unrecorded(model, root)
        if missing:
            warnings.warn(
                f"graddoctor records no column for {missing}: no Keras layer owns them",
                RuntimeWarning,
                stacklevel=2,
            )
        config = {
            "integration": "keras",
            "framework": "keras",
            "keras_version": keras.__version__,
            "gradients_read": "before_clipping",
            "optimizer": type(optimizer).__name__,
            **{option: _number(getattr(optimizer, option, None)) for option in _CLIP_OPTIONS},
            "gradient_accumulation_steps": getattr(optimizer, "gradient_accumulation_steps", None),
        }
        self._open_run(root, self._next_path(), config)
        self._root = root
        for layer, mirror in pairs:
            self._handles.append(
                layer.register_forward_hook(forward_through(mirror, self._recording))
            )
        self._wrap(optimizer, model.optimizer)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._in_batch = self.monitor is not None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._in_batch = False

    def on_train_end(self, logs: dict | None = None) -> None:
        path = self.monitor.path if self.monitor is not None else None
        self.close()
        if path is not None:
            self._report(path, True)

    # -- the optimizer's apply, wrapped for the fit ----------------------------------
    def _recording(self) -> bool:
        return self._in_batch

    def _wrap(self, optimizer: Any, outer: Any) -> None:
        """Wrap ``optimizer.apply`` and the ``scale_loss`` the train step calls (``outer``'s)."""
        apply, scale_loss = optimizer.apply, outer.scale_loss

        def measured_apply(grads: Any, trainable_variables: Any = None) -> Any:
            if not self._in_batch or self.monitor is None:
                return apply(grads, trainable_variables)
            self._measure(optimizer, grads, trainable_variables)
            result = apply(grads, trainable_variables)
            if self._stepping:
                self._after_step()
                self._log_step(optimizer)
            return result

        def loss_seen(loss: Any) -> Any:
            if self._in_batch and isinstance(loss, torch.Tensor) and loss.numel() == 1:
                self._loss = loss.detach().reshape(())
            return scale_loss(loss)

        optimizer.apply, outer.scale_loss = measured_apply, loss_seen
        self._wrapped = [(optimizer, "apply"), (outer, "scale_loss")]

    def _measure(self, optimizer: Any, grads: Any, variables: Any) -> None:
        """Gradients as ``apply`` received them (unscaled), then the weight snapshot."""
        variables = (
            list(variables) if variables is not None else list(optimizer._trainable_variables)
        )
        scale = getattr(optimizer, "loss_scale_factor", None)
        pointed = []  # parameters whose .grad is set to the received gradient for the measurement
        with torch.no_grad():
            for grad, variable in zip(grads, variables, strict=False):
                param = torch_tensor(variable)
                if grad is None or not isinstance(param, torch.nn.Parameter):
                    continue
                seen = grad / scale if scale else grad
                if param.grad is not seen:
                    pointed.append((param, param.grad))
                    param.grad = seen
        try:
            self._before_step(self._root)
        finally:
            for param, grad in pointed:
                param.grad = grad

    def _log_step(self, optimizer: Any) -> None:
        scalars: dict[str, Any] = {}
        if self._loss is not None:
            scalars["loss"], self._loss = self._loss, None
        rate = getattr(optimizer, "learning_rate", None)
        rate = getattr(rate, "value", rate)
        if isinstance(rate, torch.Tensor) and rate.numel() == 1:
            scalars["lr/0"] = rate.detach().reshape(()).clone()
        elif isinstance(rate, (int, float)):
            scalars["lr/0"] = float(rate)
        self.monitor.log(**scalars)

    # -- end -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the run of the fit in progress: unwrap the optimizer, remove every hook.

        Keras calls ``on_train_end`` only when ``fit`` returns; after an exception, call
        this (e.g. in a ``finally``) to commit the last steps.
        """
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for owner, attribute in self._wrapped:  # the class's methods show through again
            owner.__dict__.pop(attribute, None)
        self._wrapped = []
        self._root, self._in_batch, self._loss = None, False, None
        self._close_run()


def _unrecorded(model: Any, root: torch.nn.Module) -> list[str]:
    """Trainable Keras weights that no recorded layer holds."""
    held = {id(p) for p in root.parameters()}
    return [v.path for v in model.trainable_weights if id(torch_tensor(v)) not in held]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


__all__ = ["GradDoctorKerasCallback"]
