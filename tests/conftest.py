"""Test-wide settings and the fixtures and helpers shared by several test modules.

The tests mirror the package (``tests/probes/`` tests ``graddoctor.probes``...); the naive
references live in ``tests/reference.py``, the small models in ``tests/models.py``, the
labelled diagnosis problems in ``tests/diagnosis_problems.py``. Test modules import them
relatively (``from .. import reference``) and import the helpers below with
``from ..conftest import generator``.

"Seed 000" ... "seed 004" in test names and comments are the project's five source
documents, each reproduced by some test:

- seed 000: the lecture "Vanishing/Exploding Gradients in Deep Neural Networks" (Glorot and
  He initialisation, Keras ``VarianceScaling``, value vs norm clipping);
- seed 001: Jefkine (2018), "Vanishing and exploding gradient problems", a write-up of
  Pascanu, Mikolov & Bengio (2013) on recurrent networks;
- seed 002: MachineCurve (2019), "Vanishing and exploding gradients" (initialisers,
  "experiment!");
- seed 003: the lecture slides "Vanishing and Exploding Gradients - A Simple Example" (the
  deep linear scalar chain; "train with 0 learning rate and compare");
- seed 004: Torres, Amaral, Medeiros & Medeiros, "Vanishing and Exploding Gradients" (slides
  after Godoy's "Deep Learning with PyTorch Step-by-Step": the exploding regression with
  unscaled targets, the 5 x 100 ReLU MLP with and without batch norm, clipping hooks).
"""

import pytest
import torch

# The models under test are small: one thread avoids OpenMP contention on the 2-core
# CI machine (and between test processes), which made tiny ops 10-60x slower.
torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """Small matmuls in a time loop: extra intra-op threads only contend on a shared machine.

    Pins one intra-op thread for the test and restores the previous count after it; a
    module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generator(seed: int = 0) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed``: each call site draws its own stream."""
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal samples of ``shape`` from ``generator(seed)``, float64 by default."""
    return torch.randn(*shape, generator=generator(seed), dtype=dtype)
