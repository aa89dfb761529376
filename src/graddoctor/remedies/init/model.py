r"""Initialise a whole model, picking each layer's scheme from the activation after it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from graddoctor._module_types import (
    ACTIVATION_TYPES,
    NON_SATURATING_TYPES,
    RECURRENT_TYPES,
    SATURATING_TYPES,
    WEIGHT_LAYER_TYPES,
)
from graddoctor.remedies.init.orthogonal import orthogonal_
from graddoctor.remedies.init.schemes import (
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    lecun_normal_,
    lecun_uniform_,
)

SCHEMES = ("auto", "he", "glorot", "lecun", "orthogonal")
MODEL_DISTRIBUTIONS = ("auto", "normal", "uniform")

# the paper's own distribution for each family when distribution="auto"
_PAPER_DISTRIBUTION = {"glorot": "uniform", "he": "normal", "lecun": "normal"}
_FILLERS = {
    ("glorot", "normal"): glorot_normal_,
    ("glorot", "uniform"): glorot_uniform_,
    ("lecun", "normal"): lecun_normal_,
    ("lecun", "uniform"): lecun_uniform_,
}

# the weight layers a variance-scaling scheme fills (Linear, every ConvNd): the taxonomy's
# weight layers less the recurrent ones (orthogonal per gate, below) and Bilinear (two
# inputs, no single fan-in)
INIT_LAYER_TYPES: tuple[type[nn.Module], ...] = tuple(
    t for t in WEIGHT_LAYER_TYPES if not issubclass(t, RECURRENT_TYPES) and t is not nn.Bilinear
)
# the activation a layer feeds picks its scheme: LeCun for SELU (checked first), He for
# the non-saturating ones (ReLU6 subclasses Hardtanh, so they are matched before the
# saturating ones), Glorot for the rest, output layers' softmaxes included
_LECUN_ACTIVATIONS = (nn.SELU,)
_HE_ACTIVATIONS = NON_SATURATING_TYPES
_GLOROT_ACTIVATIONS = (*SATURATING_TYPES, nn.Softmax, nn.LogSoftmax, nn.Softmin)
_ACTIVATIONS = (*ACTIVATION_TYPES, *_GLOROT_ACTIVATIONS)


@dataclass(frozen=True)
class InitChoice:
    """What ``init_model_`` did to one weight tensor.

    Attributes:
        layer: the module's qualified name (``""`` for the root module).
        parameter: the parameter's name inside the module (``"weight"``, ``"weight_hh_l0"``).
        scheme: the filler used, e.g. ``"he_normal"``, ``"glorot_uniform"``, ``"orthogonal"``.
        activation: class name of the activation the scheme was chosen for, ``None`` if no
            activation module follows the layer, the RNN class name for recurrent weights.
        negative_slope: the leaky slope used in the He gain (0 otherwise).
        gain: the multiplier of the unit-variance scheme: :math:`\\sqrt{2 / (1 + a^2)}` for He,
            1 for Glorot, LeCun and orthogonal.
    """

    layer: str
    parameter: str
    scheme: str
    activation: str | None
    negative_slope: float
    gain: float


def _negative_slope(activation: nn.Module | None) -> float:
    if isinstance(activation, nn.LeakyReLU):
        return float(activation.negative_slope)
    if isinstance(activation, nn.PReLU):
        if hasattr(activation, "init"):
            return float(activation.init)
        return float(activation.weight.detach().mean())
    if isinstance(activation, nn.RReLU):
        return (activation.lower + activation.upper) / 2.0
    return 0.0


def _family_for(activation: nn.Module | None) -> str:
    if isinstance(activation, _LECUN_ACTIVATIONS):
        return "lecun"
    if isinstance(activation, _HE_ACTIVATIONS):
        return "he"
    return "glorot"


def _following_activations(model: nn.Module) -> dict[str, nn.Module | None]:
    # leaves in registration order; for each weight layer the first activation leaf
    # before the next weight layer or recurrent layer (norms, dropout, pooling skipped)
    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    following: dict[str, nn.Module | None] = {}
    for index, (name, module) in enumerate(leaves):
        if not isinstance(module, INIT_LAYER_TYPES):
            continue
        following[name] = None
        for _, later in leaves[index + 1 :]:
            if isinstance(later, (*INIT_LAYER_TYPES, nn.RNNBase)):
                break
            if isinstance(later, _ACTIVATIONS):
                following[name] = later
                break
    return following


def _check_materialised(name: str, weight: torch.Tensor) -> None:
    if isinstance(weight, UninitializedParameter):
        raise ValueError(
            f"layer {name!r} is a lazy module whose weight is not materialised yet: "
            "run one forward pass before init_model_"
        )


def _init_weight_layer(
    name: str,
    module: nn.Module,
    activation: nn.Module | None,
    scheme: str,
    distribution: str,
    generator: torch.Generator | None,
) -> InitChoice:
    weight = module.weight
    _check_materialised(name, weight)
    family = _family_for(activation) if scheme == "auto" else scheme
    slope = _negative_slope(activation) if family == "he" else 0.0
    gain = (2.0 / (1.0 + slope**2)) ** 0.5 if family == "he" else 1.0
    if family == "orthogonal":
        orthogonal_(weight, generator=generator)
        filled = "orthogonal"
    else:
        chosen = _PAPER_DISTRIBUTION[family] if distribution == "auto" else distribution
        if family == "he":
            filler = he_normal_ if chosen == "normal" else he_uniform_
            filler(weight, negative_slope=slope, generator=generator)
        else:
            _FILLERS[(family, chosen)](weight, generator=generator)
        filled = f"{family}_{chosen}"
    if getattr(module, "bias", None) is not None:
        with torch.no_grad():
            module.bias.zero_()
    activation_name = None if activation is None else type(activation).__name__
    return InitChoice(name, "weight", filled, activation_name, slope, gain)


def _init_recurrent_layer(
    name: str, module: nn.RNNBase, generator: torch.Generator | None
) -> list[InitChoice]:
    choices = []
    kind = type(module).__name__
    for parameter_name, parameter in module.named_parameters(recurse=False):
        _check_materialised(name, parameter)
        if parameter_name.startswith("bias"):
            with torch.no_grad():
                parameter.zero_()
        elif parameter_name.startswith("weight_hh"):
            # gates are stacked along dim 0 (LSTM: i, f, g, o; GRU: r, z, n): one orthogonal
            # matrix per gate; chunk() returns views, so the fill writes through
            gates = parameter.shape[0] // module.hidden_size
            for block in parameter.chunk(gates, dim=0):
                orthogonal_(block, generator=generator)
            choices.append(InitChoice(name, parameter_name, "orthogonal", kind, 0.0, 1.0))
        else:
            # weight_ih_* and LSTM's weight_hr_* projection: Glorot uniform on the stacked matrix
            glorot_uniform_(parameter, generator=generator)
            choices.append(InitChoice(name, parameter_name, "glorot_uniform", kind, 0.0, 1.0))
    return choices


def init_model_(
    model: nn.Module,
    scheme: str = "auto",
    generator: torch.Generator | None = None,
    distribution: str = "auto",
) -> list[InitChoice]:
    r"""Initialise every Linear, ConvNd and RNN/LSTM/GRU layer of ``model`` in place.

    With ``scheme="auto"`` each Linear/ConvNd weight gets the scheme matching the activation
    module that follows it in registration order (the next activation leaf before the next
    weight layer; norms, dropout and pooling in between are skipped):

    - none, Tanh, Sigmoid, Softmax, Softsign, Hardtanh...: Glorot (uniform),
      :math:`\sigma^2 = 1 / \text{fan\_avg}` (Glorot & Bengio 2010);
    - ReLU, ReLU6, LeakyReLU, PReLU, ELU, GELU, SiLU...: He (normal),
      :math:`\sigma^2 = 2 / ((1 + a^2)\,\text{fan\_in})` with the LeakyReLU slope or the
      PReLU initial slope as :math:`a` (He et al. 2015);
    - SELU: LeCun (normal), :math:`\sigma^2 = 1 / \text{fan\_in}` (Klambauer et al. 2017).

    Activations applied functionally inside ``forward`` (``F.relu``) are invisible here and
    count as "none". An explicit ``scheme`` applies that family to every Linear/ConvNd (He
    still uses the slope of the following LeakyReLU; orthogonal uses gain 1). Recurrent
    layers always get Glorot uniform for ``weight_ih_*`` (and ``weight_hr_*``) and one
    orthogonal matrix per gate block for ``weight_hh_*`` (Saxe et al. 2014). Biases of every
    layer initialised are zeroed. Norm layers, embeddings and other modules are left alone.
    Everything happens in place, on the parameters' device and dtype.

    Args:
        model: any module; nested Sequential, ModuleList and custom modules are walked.
        scheme: ``"auto"``, ``"he"``, ``"glorot"``, ``"lecun"`` or ``"orthogonal"``.
        generator: optional ``torch.Generator`` on the model's device.
        distribution: ``"auto"`` (each paper's own: Glorot uniform, He normal, LeCun normal),
            ``"normal"`` or ``"uniform"``.

    Returns:
        one ``InitChoice`` per initialised weight tensor, in registration order.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"init_model_ expects a torch.nn.Module, got {type(model).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if distribution not in MODEL_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {MODEL_DISTRIBUTIONS}, got {distribution!r}")
    following = _following_activations(model)
    choices: list[InitChoice] = []
    for name, module in model.named_modules():
        if isinstance(module, INIT_LAYER_TYPES):
            choices.append(
                _init_weight_layer(
                    name, module, following.get(name), scheme, distribution, generator
                )
            )
        elif isinstance(module, nn.RNNBase):
            choices.extend(_init_recurrent_layer(name, module, generator))
    return choices
