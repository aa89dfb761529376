r"""Gradient clipping by norm, under ``torch.nn.utils``'s names (re-exported by ``graddoctor.clip``).

Measuring is split from acting: :func:`get_total_norm` measures,
:func:`clip_grads_with_norm_` scales, :func:`clip_grad_norm_` does both. Gradients are
grouped by (device, dtype) and handled by the ``torch._foreach_*`` kernels where
available, by a plain loop elsewhere. The default path never reads a tensor on the host:
the clip coefficient is clamped with ``torch.clamp`` instead of ``if norm > max_norm``.
Sharded gradients (FSDP) are measured and clipped by their global norm (see
:mod:`graddoctor.remedies.clip._sharded`).

``clip_norm_`` and ``total_norm`` are the names of graddoctor 0.x, kept for one release.
"""

from __future__ import annotations

import torch

from graddoctor._foreach import group_by_device_and_dtype
from graddoctor.monitor.clip_watch import watched_clip  # an open Monitor reads before the clip
from graddoctor.remedies.clip._gather import (
    Tensors,
    as_tensor_list,
    check_eps,
    check_norm_type,
    check_positive,
    grads_of,
    is_parameter,
)
from graddoctor.remedies.clip._norms import (
    DEFAULT_EPS,
    NONFINITE_POLICIES,
    clip_coefficient,
    combine,
    group_norms,
    raise_nonfinite,
    scale_,
    scale_each_,
)
from graddoctor.remedies.clip._sharded import clip_sharded_, from_powers, global_powers, sharding


@torch.no_grad()
def get_total_norm(
    tensors: Tensors,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    process_group=None,
) -> torch.Tensor:
    r"""The norm of ``tensors`` seen as one vector, as ``torch.nn.utils.get_total_norm``.

    .. math::
        \|g\|_p = \Big(\sum_i \|g_i\|_p^p\Big)^{1/p}, \qquad
        \|g\|_\infty = \max_i \|g_i\|_\infty

    Args:
        tensors: the tensors themselves (usually gradients: ``[p.grad for p in ...]``);
            a tensor or any iterable, generators included.
        norm_type: :math:`p`, a positive number or ``"inf"`` (anything ``float()`` reads, as torch;
            ``p <= 0`` is not a norm and raises ``ValueError``).
        error_if_nonfinite: raise ``RuntimeError`` when the norm is nan or inf (one host sync).
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
        process_group: the tensors are shards over this group (FSDP1); DTensors (FSDP2)
            are detected without it. A collective: every rank calls, with as many tensors.

    Returns:
        a 0-dim tensor on the first tensor's device (``tensor(0.)`` for no tensors); for
        shards the global norm, the same on every rank. Half-precision tensors are
        accumulated in float32 and give a float32 norm (torch: an fp16 norm, inf above 65504).
    """
    norm_type = check_norm_type(norm_type)
    tensors = as_tensor_list(tensors, "tensors")
    found = sharding(tensors, process_group)
    if found is not None:
        norm = from_powers(global_powers(tensors, norm_type, found)[0], norm_type, total=True)
    elif not tensors:
        return torch.tensor(0.0)
    else:
        groups = group_by_device_and_dtype(tensors, foreach)
        norm = combine(group_norms(groups, norm_type), tensors[0].device, norm_type)
    if error_if_nonfinite and not bool(torch.isfinite(norm)):
        raise_nonfinite(norm_type, per_layer=False)
    return norm


def total_norm(
    params_or_grads: Tensors,
    norm_type: float = 2.0,
    foreach: bool | None = None,
    process_group=None,
) -> torch.Tensor:
    """The norm of the parameters' gradients (kept for one release: use :func:`get_total_norm`).

    Parameters (leaves that require grad) stand for their ``.grad`` (those without one are
    skipped); other tensors are gradients themselves. Equal to
    ``get_total_norm([p.grad for p in params if p.grad is not None], ...)``; FSDP1 shards
    passed as parameters without their ``process_group`` raise ``ValueError``.
    """
    norm_type = check_norm_type(norm_type)
    tensors = as_tensor_list(params_or_grads, "params_or_grads")
    grads = [t.grad if is_parameter(t) else t for t in tensors]
    found = sharding(grads, process_group, [t for t in tensors if is_parameter(t)])
    if found is not None:
        with torch.no_grad():
            return from_powers(global_powers(grads, norm_type, found)[0], norm_type, total=True)
    return get_total_norm([g for g in grads if g is not None], norm_type, foreach=foreach)


@watched_clip("with_norm")
@torch.no_grad()
def clip_grads_with_norm_(
    parameters: Tensors,
    max_norm: float,
    total_norm: torch.Tensor,
    foreach: bool | None = None,
    *,
    eps: float = DEFAULT_EPS,
) -> None:
    r"""Scale the gradients by :math:`\min(\text{max\_norm} / (\text{total\_norm} + \epsilon), 1)` in place.

    The acting twin of :func:`get_total_norm`, as ``torch.nn.utils.clip_grads_with_norm_``:
    ``total_norm`` is measured beforehand (or comes from elsewhere, e.g. an all-reduce).
    The coefficient is clamped on the device, no sync.

    Args:
        parameters: parameters whose ``.grad`` is scaled; a tensor or any iterable.
        max_norm: the largest norm allowed.
        total_norm: the (0-dim) norm the gradients currently have.
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
        eps: added to the norm to avoid dividing by zero.
    """
    max_norm = check_positive("max_norm", max_norm)
    grads = grads_of(as_tensor_list(parameters))
    if grads:
        scale_(
            group_by_device_and_dtype(grads, foreach), clip_coefficient(max_norm, total_norm, eps)
        )


@watched_clip("norm")
@torch.no_grad()
def clip_grad_norm_(
    parameters: Tensors,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    nonfinite: str | None = None,
    per_tensor: bool = False,
    eps: float = DEFAULT_EPS,
    process_group=None,
    per_layer: bool | None = None,
) -> torch.Tensor:
    r"""Rescale the gradients so that their norm is at most ``max_norm``; return the norm.

    .. math::
        g \leftarrow g \cdot \min\Big(\frac{\text{max\_norm}}{\|g\|_p + \epsilon}, 1\Big)

    Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
    networks". Same signature and result as ``torch.nn.utils.clip_grad_norm_``, plus
    keyword-only options. With ``per_tensor=True`` each gradient tensor (a layer's weight
    and its bias separately) is clipped to its own norm.

    Keras: the default (the total norm) is the optimizer's ``global_clipnorm``, and
    ``per_tensor=True`` its ``clipnorm`` ("the gradient of each weight is individually
    clipped"): Keras scales by :math:`c / \max(\|g\|, c)`, graddoctor by
    :math:`\min(c / (\|g\| + \epsilon), 1)`, the same up to :math:`\epsilon`.

    ``nonfinite`` decides what happens when a norm is nan or inf (``None``: ``"raise"``
    if ``error_if_nonfinite`` else ``"propagate"``, as torch):

    - ``"raise"``: ``RuntimeError`` before any gradient changes (one host sync per call).
    - ``"skip"``: every gradient is set to ``None``, so the next ``optimizer.step()``
      leaves all parameters alone (no momentum or weight-decay move either, unlike zeroed
      gradients); the non-finite norm is returned. One host sync per call.
    - ``"zero"``: nan and :math:`\pm\infty` entries are replaced by 0, then the cleaned
      gradients are clipped and their norm returned. No sync.
    - ``"propagate"``: no check: non-finite norms turn the gradients into nan/0. No sync.

    Args:
        parameters: parameters whose ``.grad`` is clipped (those without one are skipped);
            a tensor or any iterable, generators included.
        max_norm: the largest norm allowed.
        norm_type: :math:`p`, a positive number or ``"inf"`` (anything ``float()`` reads, as torch;
            ``p <= 0`` is not a norm and raises ``ValueError``).
        error_if_nonfinite: torch's switch between ``"raise"`` and ``"propagate"``.
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
        nonfinite: ``"raise"``, ``"skip"``, ``"zero"`` or ``"propagate"``; overrides
            ``error_if_nonfinite``.
        per_tensor: clip each tensor to its own norm instead of the total norm.
        eps: :math:`\epsilon`, added to the norm to avoid dividing by zero.
        process_group: the gradients are shards over this group (FSDP1 with
            ``use_orig_params=True``: its process group, ``dist.group.WORLD`` by default);
            DTensor gradients (FSDP2) are detected without it. The norm is then the
            global one (one all-reduce; every rank must call), equal to the
            single-process result.
        per_layer: the former name of ``per_tensor`` (an alias).

    Returns:
        the total norm before clipping (0-dim), or with ``per_tensor`` the vector of
        per-tensor norms in parameter order; ``tensor(0.)`` when no parameter has a gradient.
        Half-precision gradients are measured in float32 (a float32 norm), so finite fp16
        entries whose fp16 norm would overflow are clipped, not called non-finite.
    """
    max_norm = check_positive("max_norm", max_norm)
    norm_type = check_norm_type(norm_type)
    eps = check_eps(eps)
    per_tensor = per_tensor_option(per_tensor, per_layer)
    if nonfinite is None:
        nonfinite = "raise" if error_if_nonfinite else "propagate"
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    params = as_tensor_list(parameters)
    found = sharding([p.grad for p in params], process_group, params)
    if found is not None:  # a collective: before any early return
        return clip_sharded_(params, max_norm, norm_type, nonfinite, per_tensor, eps, found)
    grads = grads_of(params)
    if not grads:
        return torch.zeros(0) if per_tensor else torch.tensor(0.0)
    if nonfinite == "zero":
        for grad in grads:
            torch.nan_to_num_(grad, nan=0.0, posinf=0.0, neginf=0.0)
    groups = group_by_device_and_dtype(grads, foreach)
    norms = group_norms(groups, norm_type)
    first_device = grads[0].device
    if per_tensor:
        by_index = {
            i: n
            for group, group_norms_ in zip(groups, norms)
            for i, n in zip(group.indices, group_norms_)
        }
        norm = torch.stack([by_index[i].to(first_device) for i in range(len(grads))])
    else:
        norm = combine(norms, first_device, norm_type)
    if nonfinite in ("raise", "skip") and not bool(torch.isfinite(norm).all()):  # host sync
        if nonfinite == "raise":
            raise_nonfinite(norm_type, per_tensor)
        for param in params:
            param.grad = None
        return norm
    if per_tensor:
        scale_each_(groups, norms, max_norm, eps)
    else:
        scale_(groups, clip_coefficient(max_norm, norm, eps))
    return norm


def clip_norm_(
    params: Tensors,
    max_norm: float,
    norm_type: float = 2.0,
    nonfinite: str = "raise",
    per_layer: bool | None = None,
    eps: float = DEFAULT_EPS,
    foreach: bool | None = None,
    process_group=None,
    *,
    per_tensor: bool = False,
) -> torch.Tensor:
    """:func:`clip_grad_norm_` with ``nonfinite="raise"`` by default (kept for one release).

    The name and argument order of graddoctor 0.x; ``clip_grad_norm_(params, max_norm,
    nonfinite=...)`` does the same. ``per_tensor=True`` (alias ``per_layer``) is Keras'
    ``clipnorm``, the default Keras' ``global_clipnorm``.
    """
    return clip_grad_norm_(
        params, max_norm, norm_type, foreach=foreach, nonfinite=nonfinite,
        per_tensor=per_tensor_option(per_tensor, per_layer), eps=eps, process_group=process_group,
    )  # fmt: skip


def per_tensor_option(per_tensor: bool, per_layer: bool | None) -> bool:
    """``per_tensor``, or its alias ``per_layer`` when that is given (they must agree if both are)."""
    if per_layer is None:
        return bool(per_tensor)
    if per_tensor and not per_layer:
        raise ValueError(
            "per_tensor=True and per_layer=False disagree: per_layer is per_tensor's former name"
        )
    return bool(per_layer)
