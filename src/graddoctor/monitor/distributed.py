r"""Distributed training (``torch.distributed``): who records, and global norms from shards.

The Monitor detects the layout of the parameters when it is created:

* ``"replicated"``: DDP (or FSDP1 ``NO_SHARD``, or any plain model once
  ``torch.distributed`` is initialised). Every rank holds the same, already averaged
  gradients and the same weights, so rank 0 measures and records; the other ranks create
  no run file, write nothing and run no collective, so they never wait on rank 0.
* ``"sharded"``: FSDP2 (``fully_shard``, DTensor parameters) or FSDP1 (``FULL_SHARD``,
  ``SHARD_GRAD_OP``, ``HYBRID_SHARD`` with ``use_orig_params=True``). Each rank measures
  the shards it holds, and per recorded step the global statistics come from one
  all-reduce (SUM) of a stacked vector of squared local norms and counts (float64: the
  squares of float32 norms leave float32's range) and one all-reduce (MAX) of the local
  max-norms, each statistic combined as its declaration
  in ``probes.statistics`` says; parameters are never gathered. Every rank must
  create the Monitor with the same schedule; rank 0 writes.

The global norm of a parameter split into shards :math:`s_r` held by ranks :math:`r`,
each element held by :math:`c` ranks (:math:`c = 1` when sharded, the replica count
under HSDP), is

.. math::
    \|g\|_2 = \Big(\frac{1}{c}\sum_r \|g_{s_r}\|_2^2\Big)^{1/2}, \qquad
    \|g\|_\infty = \max_r \|g_{s_r}\|_\infty .
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..probes._stat_block import StatBlock, ratio
from ..probes._wrappers import is_wrapper
from ..probes.statistics import BY_NAME, MAX, RATIO, SUM, SUM_OF_SQUARES

DISTRIBUTED_MODES = ("auto", "replicated", "sharded", "off")


@dataclass
class Layout:
    """How the monitored parameters are laid out over processes.

    Attributes:
        mode: ``"single"`` (one process, or ``distributed="off"``), ``"replicated"`` or
            ``"sharded"``.
        rank, world_size: this process in the default process group.
        copies: per parameter, how many ranks hold each of its elements (sharded only).
    """

    mode: str
    rank: int = 0
    world_size: int = 1
    copies: list[float] | None = None
    _copies_tensor: torch.Tensor | None = field(default=None, repr=False)

    @property
    def recording(self) -> bool:
        """Whether this process writes the run file (rank 0, or every process when single)."""
        return self.mode == "single" or self.rank == 0

    @property
    def measuring(self) -> bool:
        """Whether this process measures parameters (every rank when sharded)."""
        return self.mode == "sharded" or self.recording

    def to_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"mode": self.mode, "world_size": self.world_size}
        if self.mode != "single" or self.world_size > 1:
            meta["backend"] = str(dist.get_backend())
            meta["recorded_by_rank"] = self.rank if self.mode == "single" else 0
        return meta


def detect_layout(
    model: nn.Module, params: list[nn.Parameter], names: list[str], mode: str = "auto"
) -> Layout:
    """The layout of ``params`` (see the module docstring).

    Args:
        model: the model as passed to the Monitor (DDP, FSDP1 or plain).
        params: the monitored parameters, in column order.
        names: their names (to point at FSDP1's flat parameters in errors).
        mode: ``"auto"`` detects; ``"replicated"`` / ``"sharded"`` insist (and check);
            ``"off"`` lets every process record its own run (give each a path).

    Raises:
        ValueError: an unknown mode, a mode that contradicts the parameters, or a layout
            graddoctor cannot reduce (FSDP1 without ``use_orig_params``, a DTensor with
            a ``Partial`` placement or on a mesh smaller than the world).
    """
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"distributed must be one of {DISTRIBUTED_MODES}, got {mode!r}")
    if not (dist.is_available() and dist.is_initialized()):
        if mode in ("replicated", "sharded"):
            raise ValueError(
                f"distributed={mode!r} needs torch.distributed initialised "
                "(call torch.distributed.init_process_group first), or use 'auto'"
            )
        return Layout("single")
    rank, world = dist.get_rank(), dist.get_world_size()
    if mode == "off" or world == 1:
        return Layout("single", rank, world)
    flat = [n for n in names if n.endswith("_flat_param") or ".flat_param" in n]
    if flat:
        raise ValueError(
            f"parameter {flat[0]!r} is an FSDP1 FlatParameter: wrap the model with "
            "FullyShardedDataParallel(..., use_orig_params=True) so graddoctor sees each layer"
        )
    copies = _copies(model, params, world)
    sharded = any(c < world for c in copies)
    if mode == "replicated" and sharded:
        raise ValueError(
            "distributed='replicated' but some parameters are sharded (FSDP): use 'auto' or 'sharded'"
        )
    if mode == "sharded" and not sharded:
        raise ValueError(
            "distributed='sharded' but no parameter is sharded (no DTensor, no FSDP1 shard)"
        )
    if not sharded:
        return Layout("replicated", rank, world)
    return Layout("sharded", rank, world, copies)


def _copies(model: nn.Module, params: list[nn.Parameter], world: int) -> list[float]:
    """Per parameter, the number of ranks holding each element (``world`` = fully replicated)."""
    fsdp1 = _fsdp1_copies(model, world)
    out = []
    for param in params:
        if hasattr(param, "placements") and hasattr(param, "device_mesh"):
            out.append(float(_dtensor_copies(param, world)))
        else:
            out.append(float(fsdp1.get(id(param), world)))
    return out


def _dtensor_copies(param: Any, world: int) -> int:
    mesh = param.device_mesh
    if mesh.size() != world:
        raise ValueError(
            f"a DTensor parameter lives on a device mesh of {mesh.size()} ranks, not all {world}: "
            "graddoctor reduces over the whole default process group"
        )
    copies = 1
    for dim, placement in enumerate(param.placements):
        if placement.is_partial():
            raise ValueError(
                "a DTensor parameter has a Partial placement: its local values are not its shards"
            )
        if placement.is_replicate():
            copies *= mesh.size(dim)
    return copies


def _fsdp1_copies(model: nn.Module, world: int) -> dict[int, int]:
    """FSDP1: id(original parameter) -> ranks holding each element, from each wrapper's strategy."""
    out: dict[int, int] = {}
    for module in model.modules():
        if not is_wrapper(module) or type(module).__name__ != "FullyShardedDataParallel":
            continue
        flat = getattr(getattr(module, "_handle", None), "flat_param", None)
        originals = getattr(flat, "_params", None) or []
        strategy = getattr(getattr(module, "sharding_strategy", None), "name", "FULL_SHARD")
        group = getattr(module, "process_group", None)
        group_size = group.size() if group is not None else world
        copies = world if strategy == "NO_SHARD" else max(world // max(group_size, 1), 1)
        for param in originals:
            out[id(param)] = copies
    return out


def reduce_parameter_stats(block: StatBlock, grad_present: list[bool], layout: Layout) -> StatBlock:
    r"""Global parameter statistics from this rank's local ones (a collective on every rank).

    Each row is combined by its declared reduction (``probes.statistics``):
    ``"sum_of_squares"`` rows are squared and summed, ``"sum"`` rows summed (both divided
    by each element's number of copies), ``"max"`` rows maxed, ``"ratio"`` rows recomputed
    from the global values of the two statistics they divide. A statistic of the
    gradient adds nothing on a rank without that parameter's gradient (an FSDP1 rank that
    holds none of it); it is NaN only when no rank has a gradient, and a max is NaN when
    any rank's is. One all-reduce (SUM) and one (MAX) per call, whatever the statistics.

    Args:
        block: the local ``"parameters"`` statistics, ``[n_stats, P]``.
        grad_present: per parameter, whether this rank had a gradient.
        layout: a ``"sharded"`` layout (any other is returned unchanged).

    Returns:
        the global statistics, same rows and dtype, identical on every rank.
    """
    if layout.mode != "sharded":
        return block
    device = block.values.device
    # squares of float32 norms overflow above ~1.8e19 and underflow below ~1e-19: float64
    # (gloo and NCCL reduce it; MPS has none)
    wide = torch.float32 if device.type == "mps" else torch.float64
    if layout._copies_tensor is None or layout._copies_tensor.device != device:
        layout._copies_tensor = torch.tensor(layout.copies, dtype=wide, device=device)
    share = 1.0 / layout._copies_tensor
    has = torch.tensor(grad_present, dtype=torch.bool, device=device)
    everywhere = torch.ones_like(has)
    stats = [BY_NAME[name] for name in block.names]
    summed: dict[str, torch.Tensor] = {"has_grad": has.to(wide)}
    maxed: dict[str, torch.Tensor] = {}
    for stat in stats:
        local, present = block[stat.name].to(wide), has if stat.of_gradient else everywhere
        zero = torch.zeros_like(local)
        if stat.reduction == SUM_OF_SQUARES:
            summed[stat.name] = torch.where(present, local.square(), zero) * share
        elif stat.reduction == SUM:
            summed[stat.name] = torch.where(present, local, zero) * share
        elif stat.reduction == MAX:
            is_nan = present & torch.isnan(local)
            summed[f"{stat.name}:nan"] = is_nan.to(wide)
            maxed[stat.name] = torch.where(present & ~is_nan, local, torch.full_like(local, -1.0))
        elif stat.reduction != RATIO:
            raise ValueError(
                f"statistic {stat.name!r} ({stat.reduction}) has no reduction over shards"
            )
    total = StatBlock.from_rows(summed)
    largest = StatBlock.from_rows(maxed) if maxed else None
    pending = [dist.all_reduce(total.values, op=dist.ReduceOp.SUM, async_op=True)]
    if largest is not None:
        flat = largest.values.view(-1)  # one vector of every max row (a view: reduced in place)
        pending.append(dist.all_reduce(flat, op=dist.ReduceOp.MAX, async_op=True))
    for work in pending:
        work.wait()
    anywhere = total["has_grad"] > 0
    out: dict[str, torch.Tensor] = {}
    for stat in (s for s in stats if s.reduction != RATIO):
        if stat.reduction == SUM_OF_SQUARES:
            value = total[stat.name].sqrt()
        elif stat.reduction == SUM:
            value = total[stat.name].round()
        else:
            value = torch.where(total[f"{stat.name}:nan"] == 0, largest[stat.name], math.nan)
        out[stat.name] = torch.where(anywhere, value, math.nan) if stat.of_gradient else value
    for stat in (s for s in stats if s.reduction == RATIO):
        numerator, denominator = stat.ratio_of
        out[stat.name] = ratio(out[numerator], out[denominator])
    values = torch.stack([out[name] for name in block.names]).to(block.values.dtype)
    return StatBlock(block.names, values)  # a float32 norm's square root fits float32 again


class NullWriter:
    """The run writer of a rank that records nothing: no file, every call does nothing."""

    closed = False
    degraded = False

    def __init__(self, path: Any) -> None:
        self.path = path
        self.lock = threading.RLock()

    def commit_due(self) -> bool:
        return False

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        return None

    set_meta = define_group = define_stats = add_stat = add_scalar = add_event = mark_step = (
        commit
    ) = set_collector = discard = _ignore

    def close(self) -> None:
        self.closed = True


__all__ = ["DISTRIBUTED_MODES", "Layout", "NullWriter", "detect_layout", "reduce_parameter_stats"]
