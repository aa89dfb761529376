"""The path the signal takes through a model: what the depth detectors compare.

A plain stack (an MLP, a VGG-style CNN) passes its signal through every weight layer in
turn: its depth profile is its weight layers in execution order. A residual network
carries the signal along a residual stream that each block reads from and adds back to;
its profile is one layer per block, the block's exit (the last weight layer it runs,
whose output joins the stream). Comparing every weight in order would compare a block's
inner layers with its exits, which say nothing about depth.

Attention query and key projections are never compared: the softmax of near-uniform
scores at initialisation passes them a small gradient in every Transformer (Vaswani et
al. 2017 scale the scores by :math:`1/\\sqrt{d_k}` for this reason), while the value
path and the residual stream carry the signal.

Blocks are found by name: a module inside a numbered container belongs to the block
named by its prefix up to the first number (``encoder.layer.0.attention.self.value`` is in
``encoder.layer.0``, ``h.1.mlp.c_fc`` in ``h.1``, ``blocks.2.attn`` in ``blocks.2``); a
layer without a number in its name (``fc3``) is a block of its own.

The forward signal is compared like with like: a weight layer fed by a saturating
activation has a bounded input (a tanh unit outputs at most 1 however saturated it is),
and one fed by a normalisation layer an input of fixed scale, so neither can show a
signal shrinking or growing with depth. Only weight layers fed by an unbounded,
unnormalised signal are compared with each other, and saturating activations with
activations of the same type.
"""

from __future__ import annotations

from collections import Counter

from .._modules import NORMALIZATION, SATURATING, WEIGHT_LAYER
from ..views import RunView

# the last name of a query or key projection, as common implementations spell it
# (Hugging Face BERT/RoBERTa, OPT/LLaMA, T5, DistilBERT, diffusers, Meta's LLaMA)
QUERY_KEY_NAMES = frozenset(
    {"query", "key", "q_proj", "k_proj", "q", "k", "to_q", "to_k", "wq", "wk", "q_lin", "k_lin"}
)


def is_query_or_key(name: str) -> bool:
    """Whether a module is an attention query or key projection (by its last name)."""
    return name.rpartition(".")[2] in QUERY_KEY_NAMES


def block_of(name: str) -> str:
    """The block a module belongs to: its name up to the first numbered part, else itself."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return name


def signal_path(layers: list[str]) -> list[str]:
    """One weight layer per stage of the signal path, in execution order.

    Args:
        layers: weight layers in execution order.

    Returns:
        the exit layer of each block (consecutive layers of one block count once), query
        and key projections left out.
    """
    path: list[str] = []
    blocks: list[str] = []
    for layer in layers:
        if is_query_or_key(layer):
            continue
        block = block_of(layer)
        if blocks and blocks[-1] == block and block != layer:
            path[-1] = layer  # later in the same block: nearer its exit
        else:
            blocks.append(block)
            path.append(layer)
    return path


def is_grouped(layers: list[str], path: list[str]) -> bool:
    """Whether the path stands for blocks rather than for every weight layer."""
    return len(path) < len(layers)


def input_is_bounded(view: RunView, layer: str) -> bool:
    """Whether a saturating activation or a normalisation layer runs between the previous
    weight layer and ``layer`` (in execution order): the layer's input scale is then bounded
    or fixed, not the signal's."""
    index = view.position(layer)
    if index is None:
        return False
    for earlier in range(index - 1, -1, -1):  # back to the previous weight layer
        families = view.families.get(view.order[earlier], ())
        if SATURATING in families or NORMALIZATION in families:
            return True
        if WEIGHT_LAYER in families:
            return False
    return False


def forward_paths(view: RunView, layers: list[str]) -> list[list[str]]:
    """The comparable forward profiles: unbounded weight-layer inputs, and each saturating type.

    Returns:
        the signal path's weight layers whose input is neither bounded nor normalised (the
        output layer left out), then the saturating activations of the most common saturating
        type; each in execution order.
    """
    path = signal_path(layers)
    if len(path) > 3:
        path = path[:-1]  # the output layer's scale is the task's, not the signal's
    unbounded = [layer for layer in path if not input_is_bounded(view, layer)]
    saturating = view.modules_in(SATURATING, view.modules.names)
    by_type = Counter(view.types.get(name, "") for name in saturating)
    paths = [unbounded]
    if by_type:
        common = by_type.most_common(1)[0][0]
        paths.append([name for name in saturating if view.types.get(name, "") == common])
    return paths
