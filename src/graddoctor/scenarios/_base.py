r"""The `Scenario` record and the small builders every scenario shares.

A scenario is a reproducible sick training problem taken from the literature (the
baseline), the literature's own healthy alternatives (the variants), the remedies worth
comparing against the baseline, and the diagnosis a correct doctor gives for each.
Everything is built from ``torch.Generator`` objects seeded from the scenario seed: the
global random number generator is neither read nor changed.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from graddoctor.diagnosis.findings import KINDS
from graddoctor.problem import Problem
from graddoctor.remedies import available as remedy_ids

_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

# (tensor, generator) -> None: fills a weight or bias in place
TensorInit = Callable[[torch.Tensor, torch.Generator], object]


@dataclass
class Scenario:
    """A reproducible vanishing / exploding gradient problem from the literature.

    Args:
        name: kebab-case id, e.g. ``"deep-relu-bn"``.
        title: one line for reports.
        claim: what the literature reports, in one or two sentences.
        source: the paper, book or lecture the claim comes from, named.
        baseline: the sick configuration.
        variants: the literature's own alternative configurations, by label.
        remedies: remedy ids (from ``graddoctor.remedies.available()``) to compare against
            the baseline.
        steps: training steps that show the effect.
        expected_findings: for ``"baseline"`` and each variant label, the diagnosis kinds
            (from ``graddoctor.diagnosis.findings.KINDS``) a correct doctor names; ``[]``
            means healthy.
        seed: the seed the scenario was built with.
        notes: free-form facts about the scenario (e.g. which variant a remedy targets).
    """

    name: str
    title: str
    claim: str
    source: str
    baseline: Problem
    variants: dict[str, Problem]
    remedies: list[str]
    steps: int
    expected_findings: dict[str, list[str]]
    seed: int = 0
    notes: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _KEBAB.match(self.name):
            raise ValueError(
                f"Scenario.name must be kebab-case like 'deep-relu-bn', got {self.name!r}"
            )
        if not isinstance(self.baseline, Problem):
            raise TypeError(
                f"Scenario.baseline must be a Problem, got {type(self.baseline).__name__}"
            )
        if "baseline" in self.variants:
            raise ValueError(
                "a Scenario variant cannot be called 'baseline': that label is the baseline's"
            )
        for label, problem in self.variants.items():
            if not isinstance(problem, Problem):
                raise TypeError(
                    f"Scenario variant {label!r} must be a Problem, got {type(problem).__name__}"
                )
        known = remedy_ids()
        unknown = [remedy for remedy in self.remedies if remedy not in known]
        if unknown:
            raise ValueError(f"unknown remedy ids {unknown}; choose from {known}")
        check_positive_int("Scenario.steps", self.steps)
        labels = {"baseline", *self.variants}
        if set(self.expected_findings) != labels:
            raise ValueError(
                f"Scenario.expected_findings must have exactly the keys {sorted(labels)}, "
                f"got {sorted(self.expected_findings)}"
            )
        for label, kinds in self.expected_findings.items():
            bad = [kind for kind in kinds if kind not in KINDS]
            if bad:
                raise ValueError(
                    f"unknown finding kinds {bad} for {label!r}; choose from {list(KINDS)}"
                )

    def problems(self) -> dict[str, Problem]:
        """The baseline and every variant, by label (``"baseline"`` first)."""
        return {"baseline": self.baseline, **self.variants}

    def problem(self, label: str) -> Problem:
        """The baseline (``"baseline"``) or the variant called ``label``."""
        problems = self.problems()
        if label not in problems:
            raise KeyError(
                f"scenario {self.name!r} has no configuration {label!r}; choose from {list(problems)}"
            )
        return problems[label]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is a non-negative int, else raise."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``: data, weights...) of a scenario seed."""
    return torch.Generator().manual_seed(1_000_003 * int(stream) + int(seed))


def sgd(lr: float, momentum: float = 0.0) -> Callable[..., torch.optim.Optimizer]:
    """An optimizer factory ``params -> torch.optim.SGD(params, lr, momentum)``."""
    return functools.partial(torch.optim.SGD, lr=lr, momentum=momentum)


def adam(lr: float) -> Callable[..., torch.optim.Optimizer]:
    """An optimizer factory ``params -> torch.optim.Adam(params, lr)`` (Kingma & Ba 2015)."""
    return functools.partial(torch.optim.Adam, lr=lr)


def split_batches(
    inputs: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive ``(inputs, targets)`` mini-batches, in order (the data is already random)."""
    return [
        (inputs[i : i + batch_size], targets[i : i + batch_size])
        for i in range(0, len(inputs), batch_size)
    ]


def gaussian_mixture(
    seed: int, n_samples: int, n_features: int, n_classes: int, stream: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A classification task: each class a unit Gaussian around a centre drawn from :math:`\mathcal N(0, I)`.

    .. math:: c_k \sim \mathcal N(0, I_d), \qquad y \sim U\{0..K-1\}, \qquad x \sim \mathcal N(c_y, I_d)

    Returns:
        float32 inputs ``[n_samples, n_features]`` and int64 labels ``[n_samples]``.
    """
    gen = generator(seed, stream)
    centres = torch.randn(n_classes, n_features, generator=gen)
    labels = torch.randint(0, n_classes, (n_samples,), generator=gen)
    return centres[labels] + torch.randn(n_samples, n_features, generator=gen), labels


def uniform_fan_in_(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""The "standard" weight init of Glorot & Bengio (2010): :math:`U[-1/\sqrt{n}, 1/\sqrt{n}]`, :math:`n` the fan-in."""
    return uniform_bound_(tensor, generator, 1.0 / math.sqrt(tensor.shape[1]))


def uniform_bound_(tensor: torch.Tensor, generator: torch.Generator, bound: float) -> torch.Tensor:
    """Fill ``tensor`` with :math:`U[-\\text{bound}, \\text{bound}]` in place."""
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def zeros_(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill ``tensor`` with zeros (the generator is not used)."""
    with torch.no_grad():
        return tensor.zero_()


def linear(
    in_features: int,
    out_features: int,
    weight_init: TensorInit,
    bias_init: TensorInit | None,
    generator: torch.Generator,
) -> nn.Linear:
    """An ``nn.Linear`` initialised from ``generator`` only (no global random state used).

    ``bias_init=None`` gives PyTorch's default bias :math:`U[-1/\\sqrt{n}, 1/\\sqrt{n}]`.
    """
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features)
    weight_init(layer.weight, generator)
    if bias_init is None:
        uniform_bound_(layer.bias, generator, 1.0 / math.sqrt(in_features))
    else:
        bias_init(layer.bias, generator)
    return layer


def mlp(
    widths: Sequence[int],
    activation: Callable[[], nn.Module],
    weight_init: TensorInit,
    generator: torch.Generator,
    bias_init: TensorInit | None = None,
    batchnorm: bool = False,
    output_init: TensorInit | None = None,
) -> nn.Sequential:
    """A fully connected network named like Godoy's: ``h1, a1, ..., hL, aL, o``.

    Args:
        widths: ``[inputs, hidden_1, ..., hidden_L, outputs]``.
        activation: a factory for the activation module after each hidden layer.
        weight_init: ``(weight, generator) -> None``, applied to every Linear weight.
        generator: the only source of randomness.
        bias_init: ``(bias, generator) -> None``; ``None`` is PyTorch's default.
        batchnorm: insert ``bn{i}`` = ``BatchNorm1d`` between ``h{i}`` and ``a{i}``.
        output_init: the weight init of the output layer ``o``; default ``weight_init``.

    Returns:
        the ``nn.Sequential``.
    """
    if len(widths) < 3:
        raise ValueError(
            f"widths must hold inputs, at least one hidden width and outputs, got {list(widths)}"
        )
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    hidden = len(widths) - 2
    for index in range(1, hidden + 1):
        layers[f"h{index}"] = linear(
            widths[index - 1], widths[index], weight_init, bias_init, generator
        )
        if batchnorm:
            layers[f"bn{index}"] = nn.BatchNorm1d(widths[index])
        layers[f"a{index}"] = activation()
    layers["o"] = linear(widths[-2], widths[-1], output_init or weight_init, bias_init, generator)
    return nn.Sequential(layers)


def hidden_outputs(
    model: nn.Sequential, inputs: torch.Tensor, prefix: str = "a"
) -> list[tuple[str, torch.Tensor]]:
    """Run ``model`` child by child; return the outputs of the children named ``prefix*``.

    The outputs are the tensors of the autograd graph, so gradients can be taken with
    respect to them.
    """
    found, value = [], inputs
    for name, child in model.named_children():
        value = child(value)
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            found.append((name, value))
    return found
