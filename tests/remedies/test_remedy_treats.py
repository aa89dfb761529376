"""What each remedy treats, from the registry alone; and remedy ids written nowhere else in src.

``remedies_for(situation)`` must give the diagnosis' recommendations of graddoctor 0.x
(the lists ``diagnosis/remedy_choice.py`` wrote out by hand), now declared by each
remedy in its family's entries (``Remedy.treats``); and each entry's code exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import graddoctor
from graddoctor.diagnosis.findings import KINDS
from graddoctor.remedies import REMEDY_IDS, SITUATIONS, get_remedy, remedies_for
from graddoctor.remedies._deferred import Deferred
from graddoctor.remedies._remedy import ACTIVATION_KINDS, Remedy
from graddoctor.remedies.registry import FAMILY_MODULES

# situation -> the ids in order, as graddoctor 0.x's remedy_choice.py listed them; the
# "matched" init (He / LeCun / Glorot by activation) is written as MATCHED
MATCHED = "<init for the activation>"
EXPECTED = {
    "nonfinite": ["lower_lr", "clip_norm", "clip_value"],
    "nonfinite_from_huge_loss": ["standardize_target", "clip_norm", "lower_lr"],
    "nonfinite_in_recurrent": ["clip_norm", "clip_backward", "lower_lr", "init_orthogonal"],
    "nonfinite_while_exploding": ["clip_norm", "lower_lr", "clip_value"],
    "exploding_gradients": ["clip_norm", "lower_lr", "clip_adaptive", "clip_quantile"],
    "exploding_gradients_in_recurrent": ["clip_norm", "lower_lr", "clip_adaptive", "clip_quantile", "clip_backward"],
    "exploding_gradients_from_huge_loss": ["standardize_target", "clip_norm", "lower_lr", "clip_value"],
    "exploding_gradients_over_depth": [MATCHED, "batchnorm", "init_lsuv", "clip_norm"],
    "exploding_gradients_over_time": [
        "clip_norm", "clip_backward", "init_orthogonal", "recurrent_penalty", "tbptt", "lstm", "gru",
    ],
    "vanishing_gradients": ["init_orthogonal", "init_lsuv", "batchnorm"],
    "vanishing_gradients_with_saturating": ["swap_activation", "batchnorm", "init_glorot", "init_lsuv"],
    "vanishing_gradients_with_rectifier": ["init_he", "batchnorm", "init_lsuv"],
    "vanishing_gradients_over_time": [
        "lstm", "gru", "init_orthogonal", "leaky_units", "vanishing_regularizer", "echo_state",
    ],
    "vanishing_activations": ["init_orthogonal", "init_lsuv", "batchnorm"],
    "vanishing_activations_with_rectifier_or_saturating": [MATCHED, "batchnorm", "init_lsuv"],
    "exploding_activations": ["init_orthogonal", "batchnorm", "init_lsuv", "lower_lr"],
    "exploding_activations_with_rectifier_or_saturating": [MATCHED, "batchnorm", "init_lsuv", "lower_lr"],
    "saturated_activations": ["swap_activation", "batchnorm", "init_glorot"],
    "amp_scale_collapse": ["lower_lr", "clip_norm"],
    "amp_scale_collapse_from_huge_loss": ["standardize_target", "lower_lr", "clip_norm"],
    "dead_units": ["swap_activation", "init_he", "lower_lr", "batchnorm"],
    "diverging_loss": ["lower_lr", "warmup", "clip_norm"],
    "exploding_gradients_under_clipping": ["lower_lr", "warmup"],
}  # fmt: skip
# graddoctor 0.x's _init_for: ReLU family -> He, SELU -> LeCun, anything else -> Glorot
MATCHED_INIT = {
    "rectifier": "init_he",
    "selu": "init_lecun",
    "saturating": "init_glorot",
    "none": "init_glorot",
}


def ids(remedies: list[Remedy]) -> list[str]:
    return [remedy.id for remedy in remedies]


def test_every_situation_is_a_finding_kind_refined_and_every_kind_is_treated():
    assert set(SITUATIONS) == set(EXPECTED)
    for situation in SITUATIONS:
        assert any(situation == kind or situation.startswith(f"{kind}_") for kind in KINDS), (
            situation
        )
    assert set(KINDS) <= set(SITUATIONS)


@pytest.mark.parametrize("situation", sorted(EXPECTED))
@pytest.mark.parametrize("activation", ACTIVATION_KINDS)
def test_remedies_for_gives_the_order_of_graddoctor_0x(situation, activation):
    wanted = [MATCHED_INIT[activation] if i == MATCHED else i for i in EXPECTED[situation]]
    assert ids(remedies_for(situation, activation)) == wanted


def test_alternatives_without_an_activation_are_all_kept_in_registry_order():
    assert ids(remedies_for("exploding_gradients_over_depth"))[:3] == [
        "init_he",
        "init_glorot",
        "init_lecun",
    ]
    # a remedy alone at its rank is kept whatever the activation (Glorot after a swap)
    assert "init_glorot" in ids(remedies_for("vanishing_gradients_with_saturating", "rectifier"))


def test_unknown_situation_raises_with_a_suggestion():
    with pytest.raises(KeyError, match="did you mean 'dead_units'"):
        remedies_for("dead_unit")


@pytest.mark.parametrize("remedy_id", REMEDY_IDS)
def test_every_entry_names_code_that_exists(remedy_id):
    """The entries are read without torch; the transform and check they name import and run."""
    remedy = get_remedy(remedy_id)
    assert isinstance(remedy.transform, Deferred) and isinstance(remedy.check, Deferred)
    for part in (remedy.transform, remedy.check):
        assert callable(part.function), part
    assert remedy.transform.function is remedy.transform.function  # imported once


def test_treats_ranks_are_validated():
    remedy = get_remedy("clip_norm")
    with pytest.raises(ValueError, match="ranks"):
        Remedy("x", "x (2000)", {}, remedy.transform, treats={"nonfinite": 0})
    with pytest.raises(ValueError, match="activations"):
        Remedy("x", "x (2000)", {}, remedy.transform, activations=("relu",))
    with pytest.raises(TypeError):
        remedy.treats["nonfinite"] = 1  # read-only


# ------------------------------------------------------------------ no copies of the ids

SRC = Path(graddoctor.__file__).parent
DECLARING = {Path(module.__file__).relative_to(SRC).as_posix() for module in FAMILY_MODULES}
# being rewritten to read the registry (scenarios: REMEDY_IDS; diagnosis: Remedy.treats)
TOLERATED = {"scenarios/_base.py", "diagnosis/remedy_choice.py"}
# the same word meaning something else than the remedy
OTHER_MEANINGS = {
    ("remedies/recurrent/swap.py", "lstm"): "the layer kinds swap_rnn_(to=...) accepts",
    ("remedies/recurrent/swap.py", "gru"): "the layer kinds swap_rnn_(to=...) accepts",
    ("scenarios/rnn_long_range.py", "lstm"): "a variant of the scenario and its core kind",
    ("scenarios/deep_relu_bn.py", "batchnorm"): "a variant of the scenario",
}


def _id_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Remedy ids written as string literals, except a scenario's ``remedies=`` and ``__all__``.

    A scenario names the remedies it compares (``Scenario`` checks them against the
    registry); ``__all__`` names functions (``tbptt``, ``recurrent_penalty``).
    """
    allowed = [keyword.value for call in ast.walk(tree) if isinstance(call, ast.Call)
               for keyword in call.keywords if keyword.arg == "remedies"]  # fmt: skip
    allowed += [assign.value for assign in ast.walk(tree) if isinstance(assign, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in assign.targets)]  # fmt: skip
    chosen = {id(node) for value in allowed for node in ast.walk(value)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in REMEDY_IDS and id(node) not in chosen
    ]


def test_remedy_ids_are_written_only_where_the_families_declare_them():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in DECLARING or name in TOLERATED:
            continue
        for line, literal in _id_literals(ast.parse(path.read_text(), name)):
            if (name, literal) not in OTHER_MEANINGS:
                found.append(f"{name}:{line}: {literal!r}")
    assert not found, (
        "remedy ids copied outside the registry (read them from graddoctor.remedies):\n"
        + "\n".join(found)
    )


def test_every_id_is_declared_in_a_family_module():
    declared = {}
    for name in DECLARING:
        for _, literal in _id_literals(ast.parse((SRC / name).read_text())):
            declared.setdefault(literal, set()).add(name)
    assert set(declared) == set(REMEDY_IDS)


def test_remedies_modules_stay_small():
    for path in (SRC / "remedies").rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, path
