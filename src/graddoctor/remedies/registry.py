r"""Every graddoctor remedy behind one protocol, by a stable id.

>>> from graddoctor.remedies import get_remedy, chain
>>> fixed = chain("init_he", "clip_value").apply(problem)      # problem is left as it was
>>> fixed.notes["remedies"]
[{'id': 'init_he', 'params': {...}}, {'id': 'clip_value', 'params': {'value': 1.0}}]

``apply`` works on ``problem.copy()`` and returns a new ``Problem``; ``applicable`` says
why a remedy does not fit a problem. The defaults, one remedy per line:

=======================  ====================================================================
id                       what it does, defaults
=======================  ====================================================================
init_he                  ``init_model_(scheme="he")``: He normal on every Linear/ConvNd (RNNs:
                         orthogonal ``W_hh``), ``distribution="auto"``, ``seed=0``
init_glorot              the same with Glorot (uniform)
init_lecun               the same with LeCun (normal)
init_orthogonal          the same with orthogonal matrices (``seed=0``)
init_lsuv                ``lsuv_`` on the first batch's inputs, ``tol=0.1, max_iter=10, seed=0``
swap_activation          ``swap_activations_(to="relu")`` + He re-init of the feeding layers
batchnorm                ``insert_batchnorm_(where="before", kind="batch")``
clip_value               grad transform ``clip_value_(value=1.0)``
clip_norm                grad transform ``clip_norm_(max_norm=1.0, norm_type=2.0,
                         nonfinite="skip")``: a non-finite step is skipped, not applied
clip_backward            ``clip_during_backward(value=1.0)`` hooks on the new model; the
                         handle is ``notes["backward_clip"]`` (``.remove()``)
clip_adaptive            grad transform ``adaptive_clip_(clip_factor=0.01, eps=1e-3)``, all layers
clip_quantile            grad transform ``QuantileClipper(quantile=0.9, history=1000,
                         nonfinite="skip")``, one per applied problem (``notes["quantile_clipper"]``)
lower_lr                 the optimizer factory's lrs times ``factor=0.1``
standardize_target       ``standardize_problem``: targets to zero mean and unit variance
tbptt                    ``step_fn = tbptt(k=10)``
recurrent_penalty        ``recurrent_penalty(kind="spectral", strength=1e-2, bound=1.0)``
vanishing_regularizer    one-layer ``nn.RNN`` -> ``ElmanRNN`` (same weights and function),
                         ``step_fn = omega_step(strength=1.0)``
leaky_units              one-layer ``nn.RNN`` / ``ElmanRNN`` -> ``LeakyRNN`` with the same
                         weights, ``leak_range=(0.02, 0.2), seed=0``
lstm, gru                ``swap_rnn_(to=...)``, freshly initialised gated layers, ``seed=0``
echo_state               ``EchoStateNetwork(reservoir_size=None (the core's hidden size),
                         spectral_radius=0.95, ridge=1e-6, seed=0)`` and a ridge-fit step_fn
=======================  ====================================================================

``requires`` names what a problem needs, as a stable token: ``any`` (trainable weights),
``weights`` (a Linear, ConvNd or RNN layer), ``linear_or_conv``, ``saturating_activation``,
``layer_then_activation`` (an activation module fed by a Linear/ConvNd), ``regression``
(floating-point targets), ``sequence_model`` (a ``SequenceModel``), ``recurrent`` (a
recurrent matrix), ``elman_rnn`` (a one-layer ``nn.RNN`` or ``ElmanRNN``), ``plain_rnn``
(an ungated recurrent layer); ``applicable`` gives the full reason.

``seed`` makes random remedies reproducible without touching the global random state;
``seed=None`` draws from the global stream instead.
"""

from __future__ import annotations

import difflib

from graddoctor.remedies import _registry_model as ff
from graddoctor.remedies import _registry_recurrent as rnn
from graddoctor.remedies._registry_common import trainable_reason
from graddoctor.remedies._registry_protocol import FAMILIES, Remedy
from graddoctor.remedies._registry_protocol import chain as _chain_remedies

__all__ = ["FAMILIES", "REMEDY_IDS", "Remedy", "available", "chain", "get_remedy"]


def _init(scheme: str, description: str, distribution: bool = True) -> Remedy:
    params = {"distribution": "auto", "seed": 0} if distribution else {"seed": 0}
    return Remedy(
        f"init_{scheme}", description, "init", params, "weights",
        ff.init_transform(scheme), ff.init_check,
    )  # fmt: skip


def _clip(remedy_id: str, description: str, params: dict, transform) -> Remedy:
    return Remedy(remedy_id, description, "clip", params, "any", transform, trainable_reason)


_REMEDIES: tuple[Remedy, ...] = (
    _init("he", "He normal initialisation for rectifiers (He et al. 2015, 'Delving Deep into Rectifiers')"),
    _init("glorot", "Glorot uniform initialisation (Glorot & Bengio 2010, 'Understanding the difficulty...')"),
    _init("lecun", "LeCun normal initialisation (LeCun et al. 1998, 'Efficient BackProp')"),
    _init("orthogonal", "Orthogonal initialisation (Saxe, McClelland & Ganguli 2014)", distribution=False),
    Remedy(
        "init_lsuv", "Layer-sequential unit-variance initialisation (Mishkin & Matas 2016, 'All you need is a good init')",
        "init", {"tol": 0.1, "max_iter": 10, "seed": 0}, "linear_or_conv",
        ff.lsuv_transform, ff.lsuv_check,
    ),
    Remedy(
        "swap_activation", "Replace saturating activations by ReLU and re-initialise (Nair & Hinton 2010; He et al. 2015)",
        "activation", {"to": "relu", "seed": 0}, "saturating_activation",
        ff.swap_activation_transform, ff.swap_activation_check,
    ),
    Remedy(
        "batchnorm", "Batch normalisation before each activation (Ioffe & Szegedy 2015)",
        "normalization", {"where": "before", "kind": "batch"}, "layer_then_activation",
        ff.batchnorm_transform, ff.batchnorm_check,
    ),
    _clip("clip_value", "Clip every gradient entry to [-value, value] (Mikolov 2012)", {"value": 1.0}, ff.clip_value_transform),
    _clip(
        "clip_norm", "Rescale the gradients to a maximum total norm (Pascanu, Mikolov & Bengio 2013)",
        {"max_norm": 1.0, "norm_type": 2.0, "nonfinite": "skip"}, ff.clip_norm_transform,
    ),
    _clip(
        "clip_backward", "Clamp gradients during backpropagation with tensor hooks (Mikolov 2012)",
        {"value": 1.0}, ff.clip_backward_transform,
    ),
    _clip(
        "clip_adaptive", "Unit-wise adaptive gradient clipping (Brock, De, Smith & Simonyan 2021, NFNets)",
        {"clip_factor": 0.01, "eps": 1e-3}, ff.clip_adaptive_transform,
    ),
    _clip(
        "clip_quantile", "Clip to a percentile of past gradient norms (Seetharaman et al. 2020, AutoClip)",
        {"quantile": 0.9, "history": 1000, "nonfinite": "skip"}, ff.clip_quantile_transform,
    ),
    Remedy(
        "lower_lr", "Scale the learning rate down: gradient descent diverges beyond 2/L (LeCun et al. 1998)",
        "lr", {"factor": 0.1}, "any", ff.lower_lr_transform, trainable_reason,
    ),
    Remedy(
        "standardize_target", "Standardise regression targets to zero mean, unit variance (LeCun et al. 1998)",
        "target", {}, "regression", ff.standardize_transform, ff.standardize_check,
    ),
    Remedy(
        "tbptt", "Truncated backpropagation through time (Williams & Peng 1990)",
        "recurrent", {"k": 10}, "sequence_model", rnn.tbptt_transform, rnn.tbptt_check, replaces_step=True,
    ),
    Remedy(
        "recurrent_penalty", "Penalise recurrent spectral norms above a bound (Pascanu, Mikolov & Bengio 2013)",
        "recurrent", {"kind": "spectral", "strength": 1e-2, "bound": 1.0}, "recurrent",
        rnn.recurrent_penalty_transform, rnn.recurrent_penalty_check,
    ),
    Remedy(
        "vanishing_regularizer", "Omega regulariser keeping error-signal norms through time (Pascanu et al. 2013)",
        "recurrent", {"strength": 1.0}, "elman_rnn", rnn.vanishing_transform, rnn.vanishing_check, replaces_step=True,
    ),
    Remedy(
        "leaky_units", "Leaky-integration units with fixed leaks (Bengio, Boulanger-Lewandowski & Pascanu 2012)",
        "recurrent", {"leak_range": (0.02, 0.2), "seed": 0}, "elman_rnn", rnn.leaky_transform, rnn.leaky_check,
    ),
    Remedy(
        "lstm", "Replace plain RNN layers by LSTMs (Hochreiter & Schmidhuber 1997)",
        "recurrent", {"seed": 0}, "plain_rnn", rnn.gated_transform("lstm"), rnn.gated_check,
    ),
    Remedy(
        "gru", "Replace plain RNN layers by GRUs (Cho et al. 2014)",
        "recurrent", {"seed": 0}, "plain_rnn", rnn.gated_transform("gru"), rnn.gated_check,
    ),
    Remedy(
        "echo_state", "Echo-state network: fixed reservoir, ridge-regression readout (Jaeger 2001)",
        "recurrent", {"reservoir_size": None, "spectral_radius": 0.95, "ridge": 1e-6, "seed": 0}, "sequence_model",
        rnn.echo_state_transform, rnn.echo_state_check, replaces_step=True,
    ),
)  # fmt: skip

_BY_ID: dict[str, Remedy] = {remedy.id: remedy for remedy in _REMEDIES}

REMEDY_IDS: tuple[str, ...] = tuple(_BY_ID)


def available() -> list[str]:
    """The ids of every registered remedy, in registry order (init, activation, ..., recurrent)."""
    return list(REMEDY_IDS)


def get_remedy(remedy_id: str) -> Remedy:
    """The registered :class:`Remedy` with this id.

    Raises:
        KeyError: for an unknown id; the message suggests the closest ids and lists all.
    """
    if isinstance(remedy_id, Remedy):
        return remedy_id
    if not isinstance(remedy_id, str):
        raise TypeError(f"a remedy id is a string such as 'clip_norm', got {type(remedy_id).__name__}")
    if remedy_id in _BY_ID:
        return _BY_ID[remedy_id]
    close = difflib.get_close_matches(remedy_id, REMEDY_IDS, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise KeyError(f"unknown remedy id {remedy_id!r}: {hint}known ids: {', '.join(REMEDY_IDS)}")


def chain(*remedies_or_ids: Remedy | str) -> Remedy:
    """One remedy applying the given remedies (or ids) in order; its id is ``"a+b"``.

    Example: ``chain("init_he", get_remedy("clip_value").with_params(value=0.5))``.
    See :func:`graddoctor.remedies._registry_protocol.chain` for overrides and notes.
    """
    return _chain_remedies(*(get_remedy(item) for item in remedies_or_ids))
