r"""The lecture's own Keras MLP: batch norm and He init against an un-normalised sigmoid net.

Claim (the lecture "Vanishing/Exploding Gradients in Deep Neural Networks", section 3,
after Géron, "Hands-On Machine Learning", ch. 11; Ioffe & Szegedy 2015; He et al. 2015):
the Fashion-MNIST MLP ``Flatten(28x28) -> BN -> Dense(300, relu, he_normal) -> BN ->
Dense(100, relu, he_normal) -> BN -> Dense(10, softmax)`` keeps the per-layer gradients
within one order of magnitude, where the same layers with sigmoid activations, a badly
scaled :math:`\mathcal N(0, 0.01^2)` initialisation and no normalisation do not: each
layer multiplies the back-propagated gradient by about
:math:`\sigma'(0)\,\sigma_w \sqrt{n} = 0.25 \cdot 0.01 \cdot \sqrt{300} \approx 0.04`
(the sigmoid's derivative is at most 1/4), so it vanishes towards the input.

The data stand in for Fashion-MNIST without a download: ten 28 x 28 class templates in
[0, 1] plus noise, drawn from the seed. Models are Keras 3 on the torch backend; they are
trained through ``graddoctor.integrations.keras`` (this module, in the scenarios layer,
only builds them and reads their runs). Keras is imported when a model is built.
"""

from __future__ import annotations

import numpy as np

from graddoctor.store import open_run

NAME = "keras-lecture"
FRAMEWORK = "keras"
TITLE = "The lecture's Keras MLP: BN + He init keep gradients level; sigmoid + N(0, 0.01) vanish"
CLAIM = (
    "Batch normalisation after each layer with He initialisation keeps the per-layer gradients "
    "within one order of magnitude; the same MLP with sigmoid activations, N(0, 0.01^2) weights "
    "and no normalisation has gradients that vanish towards the input."
)
SOURCE = (
    'The lecture "Vanishing/Exploding Gradients in Deep Neural Networks" (Keras code, section 3); '
    "Ioffe & Szegedy, Batch Normalization, ICML 2015; He et al., Delving Deep into Rectifiers, 2015"
)
LABELS = ("lecture", "sigmoid")  # the lecture's model first, then the sick variant
EXPECTED_FINDINGS = {"lecture": [], "sigmoid": ["vanishing_gradients"]}
N_SAMPLES = 256
BATCH_SIZE = 64
EPOCHS = 2
LR = 0.01
CLIPNORM = 1.0
WEIGHT_STD = 0.01  # the variant's badly scaled N(0, 0.01^2) weights, every layer


def lecture_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generated 28 x 28 images of ten classes: ``x`` float32 in [0, 1] ``[N, 28, 28]``, ``y`` int64 ``[N]``."""
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 28, 28))
    y = rng.integers(0, 10, N_SAMPLES)
    x = 0.6 * templates[y] + 0.4 * rng.random((N_SAMPLES, 28, 28))
    return x.astype("float32"), y.astype("int64")


def build_model(label: str, seed: int = 0):
    """The lecture's BN MLP (``"lecture"``) or its sigmoid variant (``"sigmoid"``), compiled.

    Both use ``keras.optimizers.SGD(learning_rate=0.01, clipnorm=1.0)`` (the lecture's
    clipping) and sparse categorical cross-entropy. Needs ``KERAS_BACKEND=torch``.
    """
    import keras

    if label not in LABELS:
        raise KeyError(f"{NAME} has no configuration {label!r}; choose from {list(LABELS)}")
    keras.backend.clear_session()  # layer names restart at dense, dense_1...
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    head = {}
    if label == "lecture":
        body = [
            layers.Flatten(), layers.BatchNormalization(),
            layers.Dense(300, activation="relu", kernel_initializer="he_normal"), layers.BatchNormalization(),
            layers.Dense(100, activation="relu", kernel_initializer="he_normal"), layers.BatchNormalization(),
        ]  # fmt: skip
    else:
        bad = keras.initializers.RandomNormal(mean=0.0, stddev=WEIGHT_STD, seed=seed)
        body = [
            layers.Flatten(),
            layers.Dense(300, activation="sigmoid", kernel_initializer=bad),
            layers.Dense(100, activation="sigmoid", kernel_initializer=bad),
        ]
        head = {"kernel_initializer": bad}
    model = keras.Sequential(
        [keras.Input(shape=(28, 28)), *body, layers.Dense(10, activation="softmax", **head)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LR, clipnorm=CLIPNORM),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    return model


def kernel_gradient_norms(run_path) -> dict[str, float]:
    """Each Dense kernel's gradient norm, the median over the recorded steps, in layer order."""
    with open_run(run_path) as run:
        _, names, values = run.series("grad_norm")
    return {
        name: float(np.median(values[:, j]))
        for j, name in enumerate(names)
        if name.endswith(".kernel")
    }


def gradient_spread(run_path) -> float:
    """Decades between the largest and the smallest per-layer kernel gradient (``log10(max / min)``)."""
    norms = np.array(list(kernel_gradient_norms(run_path).values()))
    return float(np.log10(norms.max() / norms.min()))


def claim_holds(spreads: dict[str, float], found: dict[str, list[str]]) -> bool:
    """The lecture's model within one decade and healthy; the variant diagnosed with vanishing gradients."""
    level = spreads["lecture"] < 1.0 and found["lecture"] == []
    return level and set(EXPECTED_FINDINGS["sigmoid"]) <= set(found["sigmoid"])


__all__ = [
    "CLAIM", "EXPECTED_FINDINGS", "LABELS", "NAME", "SOURCE", "TITLE",
    "build_model", "claim_holds", "gradient_spread", "kernel_gradient_norms", "lecture_data",
]  # fmt: skip
