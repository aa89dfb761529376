"""Thin adapters between graddoctor and the places people train.

Each lives in its own module and imports its framework only when that module is
imported, so ``import graddoctor`` never pulls in Lightning, Transformers, Keras or TensorBoard:

* ``graddoctor.integrations.lightning``: ``GradDoctorCallback`` for the Lightning ``Trainer``.
* ``graddoctor.integrations.transformers``: ``GradDoctorTrainerCallback`` for the
  Hugging Face ``Trainer``.
* ``graddoctor.integrations.keras``: ``GradDoctorKerasCallback`` for Keras 3's ``fit`` on
  the torch backend.
* ``graddoctor.integrations.tensorboard``: ``TensorBoardSink`` and ``tensorboard_from_run``,
  per-layer scalars (and sparse gradient histograms) through ``SummaryWriter``.
* ``graddoctor.integrations.zero_code``: ``graddoctor run train.py``, a Monitor on every
  optimizer of an unmodified script.

A missing framework raises ImportError with the ``pip install`` line that fixes it.
"""
