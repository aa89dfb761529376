"""The one remedy protocol: a shared suite over every registered id, then per-remedy checks.

Every remedy in ``available()`` runs through the same contract on a tiny MLP regression
problem (Tanh/Sigmoid activations) and/or a tiny ``SequenceModel`` tanh-RNN regression
problem: the original problem is untouched, the result trains a step to a finite loss
that moves the weights, dtype and device are kept (float32 and float64), ``notes``
records the remedy, and ``applicable`` refuses the wrong family with a reason.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch import nn

from graddoctor.problem import Problem, train_step
from graddoctor.remedies import REMEDY_IDS, Chain, Remedy, available, chain, get_remedy
from graddoctor.remedies.recurrent import EchoStateNetwork, ElmanRNN, LeakyRNN, SequenceModel

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]

EXPECTED_IDS = [
    "init_he", "init_glorot", "init_lecun", "init_orthogonal", "init_lsuv", "swap_activation",
    "batchnorm", "clip_value", "clip_norm", "clip_backward", "clip_adaptive", "clip_quantile",
    "lower_lr", "warmup", "standardize_target", "tbptt", "recurrent_penalty", "vanishing_regularizer",
    "leaky_units", "lstm", "gru", "echo_state",
]  # fmt: skip

# where each remedy applies among the two base problems (written out, not computed)
BOTH, MLP, RNN = ("mlp", "rnn"), ("mlp",), ("rnn",)
APPLIES_TO = {
    "init_he": BOTH, "init_glorot": BOTH, "init_lecun": BOTH, "init_orthogonal": BOTH,
    "init_lsuv": BOTH, "swap_activation": MLP, "batchnorm": MLP, "clip_value": BOTH,
    "clip_norm": BOTH, "clip_backward": BOTH, "clip_adaptive": BOTH, "clip_quantile": BOTH,
    "lower_lr": BOTH, "warmup": BOTH, "standardize_target": BOTH, "tbptt": RNN, "recurrent_penalty": RNN,
    "vanishing_regularizer": RNN, "leaky_units": RNN, "lstm": RNN, "gru": RNN, "echo_state": RNN,
}  # fmt: skip


# ------------------------------------------------------------------------- problems


def mlp_problem(dtype: torch.dtype = torch.float32, device: str = "cpu") -> Problem:
    """4-8-8-1 MLP with Tanh and Sigmoid, regression targets far from zero, two batches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 4, generator=g), 5 * torch.randn(16, 1, generator=g) + 3) for _ in range(2)]
    return Problem(
        model.to(device, dtype), [(x.to(device, dtype), y.to(device, dtype)) for x, y in data], nn.MSELoss(),
        lambda params: torch.optim.SGD(params, lr=0.05), name="mlp", notes={"origin": "test"},
    )  # fmt: skip


def rnn_problem(dtype: torch.dtype = torch.float32, device: str = "cpu") -> Problem:
    """SequenceModel(nn.RNN(3, 6, tanh), Linear head), sequences of 12 steps, two batches."""
    torch.manual_seed(0)
    model = SequenceModel(nn.RNN(3, 6, batch_first=True), 1)
    g = torch.Generator().manual_seed(2)
    data = [(torch.randn(8, 12, 3, generator=g), torch.randn(8, 1, generator=g)) for _ in range(2)]
    return Problem(
        model.to(device, dtype), [(x.to(device, dtype), y.to(device, dtype)) for x, y in data], nn.MSELoss(),
        lambda params: torch.optim.SGD(params, lr=0.05), name="rnn", notes={"origin": "test"},
    )  # fmt: skip


BUILDERS = {"mlp": mlp_problem, "rnn": rnn_problem}
CASES = [(remedy_id, kind) for remedy_id in EXPECTED_IDS for kind in APPLIES_TO[remedy_id]]


class Scale(nn.Module):
    """A model with a weight but no Linear/Conv/RNN layer and no activation module."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return (x * self.weight).sum(-1, keepdim=True)


def frozen_mlp() -> Problem:
    problem = mlp_problem()
    for p in problem.model.parameters():
        p.requires_grad_(False)
    return problem


def label_problem() -> Problem:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g))]
    return Problem(nn.Sequential(nn.Linear(4, 3)), data, nn.CrossEntropyLoss())


def bare_problem() -> Problem:
    return Problem(Scale(), [(torch.randn(4, 4), torch.randn(4, 1))], nn.MSELoss())


# remedy id -> (builder of a problem of the wrong family, a word the reason must contain)
WRONG = {
    **{i: (bare_problem, "Linear") for i in ("init_he", "init_glorot", "init_lecun", "init_orthogonal", "init_lsuv")},
    "swap_activation": (rnn_problem, "saturating"),
    "batchnorm": (rnn_problem, "activation"),
    **{i: (frozen_mlp, "trainable") for i in ("clip_value", "clip_norm", "clip_backward", "clip_adaptive",
                                               "clip_quantile", "lower_lr", "warmup")},
    "standardize_target": (label_problem, "floating"),
    **{i: (mlp_problem, "recurrent") for i in ("tbptt", "recurrent_penalty", "vanishing_regularizer",
                                                "leaky_units", "lstm", "gru", "echo_state")},
}  # fmt: skip


# ------------------------------------------------------------------------- snapshots


def snapshot(problem: Problem) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in problem.model.state_dict().items()},
        "structure": repr(problem.model),
        "data": [(x.clone(), y.clone()) for x, y in problem.data],
        "data_objects": [(x, y) for x, y in problem.data],
        "fields": [problem.model, problem.loss_fn, problem.optimizer, problem.step_fn, problem.predict_transform],
        "tuples": (problem.penalties, problem.grad_transforms, problem.name),
        "notes": copy.deepcopy(problem.notes),
        "training": [m.training for m in problem.model.modules()],
    }


def assert_unchanged(problem: Problem, before: dict) -> None:
    state = problem.model.state_dict()
    assert state.keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(state[key], value), key
    assert repr(problem.model) == before["structure"]
    assert len(problem.data) == len(before["data"])
    for (x, y), (x0, y0), (xo, yo) in zip(problem.data, before["data"], before["data_objects"]):
        assert x is xo and y is yo and torch.equal(x, x0) and torch.equal(y, y0)
    now = [problem.model, problem.loss_fn, problem.optimizer, problem.step_fn, problem.predict_transform]
    assert all(a is b for a, b in zip(now, before["fields"]))
    assert (problem.penalties, problem.grad_transforms, problem.name) == before["tuples"]
    assert problem.notes == before["notes"]
    assert [m.training for m in problem.model.modules()] == before["training"]
    for p in problem.model.parameters():
        assert not p._backward_hooks, "a remedy left a tensor hook on the original model"


# ------------------------------------------------------------------------- the shared suite


def test_registry_lists_exactly_the_documented_ids():
    assert available() == EXPECTED_IDS
    assert REMEDY_IDS == tuple(EXPECTED_IDS)
    assert set(APPLIES_TO) == set(EXPECTED_IDS) == set(WRONG)
    for remedy_id in available():
        remedy = get_remedy(remedy_id)
        assert isinstance(remedy, Remedy) and remedy.id == remedy_id
        assert "\n" not in remedy.description and re.search(r"(19|20)\d\d", remedy.description), remedy.description
        assert isinstance(remedy.params, dict)
        assert remedy.treats, f"{remedy_id} treats no finding: the diagnosis would never recommend it"


@pytest.mark.parametrize("remedy_id", EXPECTED_IDS)
def test_applicable_matches_the_table(remedy_id):
    remedy = get_remedy(remedy_id)
    for kind, build in BUILDERS.items():
        ok, reason = remedy.applicable(build())
        assert ok == (kind in APPLIES_TO[remedy_id]), (kind, reason)
        assert (reason == "") == ok


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize(("remedy_id", "kind"), CASES)
def test_shared_contract(remedy_id, kind, dtype, device):
    problem = BUILDERS[kind](dtype, device)
    before = snapshot(problem)
    remedy = get_remedy(remedy_id)
    result = remedy.apply(problem)

    # (a) the original is untouched, and the result owns a separate model
    assert_unchanged(problem, before)
    assert result is not problem and result.model is not problem.model
    original_storage = {p.data_ptr() for p in problem.model.parameters()}
    assert not original_storage & {p.data_ptr() for p in result.model.parameters()}

    # (c) dtype and device kept, for every parameter and floating buffer
    for tensor in [*result.model.parameters(), *result.model.buffers()]:
        if tensor.is_floating_point():
            assert tensor.dtype == dtype and tensor.device.type == device

    # (e) notes record the remedy with its parameters, after the existing notes
    assert result.notes["remedies"] == [{"id": remedy_id, "params": dict(remedy.params)}]
    assert result.notes["origin"] == "test" and "remedies" not in problem.notes

    # (b) one training step: finite loss, the parameters move
    optimizer = result.make_optimizer(result.model)
    start = [p.detach().clone() for p in result.model.parameters()]
    loss = train_step(result, result.model, optimizer, result.data[0])
    assert torch.isfinite(loss).all()
    assert any(not torch.equal(p, q) for p, q in zip(result.model.parameters(), start))
    assert_unchanged(problem, before)


@pytest.mark.parametrize("remedy_id", EXPECTED_IDS)
def test_wrong_family_is_not_applicable_with_a_reason(remedy_id):
    build, word = WRONG[remedy_id]
    problem = build()
    ok, reason = get_remedy(remedy_id).applicable(problem)
    assert not ok and word.lower() in reason.lower(), reason
    with pytest.raises(ValueError, match=re.escape(reason[:40])):
        get_remedy(remedy_id).apply(problem)


# ------------------------------------------------------------------------- ids, params, chain


def test_unknown_id_raises_key_error_with_a_suggestion():
    with pytest.raises(KeyError, match="did you mean 'clip_norm'") as error:
        get_remedy("clip_nrom")
    assert "echo_state" in str(error.value)  # the known ids are listed
    with pytest.raises(KeyError, match="known ids"):
        get_remedy("zzzz")
    with pytest.raises(KeyError):
        chain("init_he", "batchnrom")


def test_unknown_parameter_raises_type_error_naming_the_valid_ones():
    remedy = get_remedy("clip_norm")
    with pytest.raises(TypeError, match="max_norm.*nonfinite|max_norm.*norm_type") as error:
        remedy.apply(mlp_problem(), max_nrom=2.0)
    assert "max_nrom" in str(error.value)
    with pytest.raises(TypeError, match="valid parameters: none"):
        get_remedy("standardize_target").with_params(scale=2.0)


def test_with_params_changes_defaults_and_leaves_the_registry_alone():
    half = get_remedy("clip_value").with_params(value=0.5)
    assert half.params == {"value": 0.5} and half.id == "clip_value"
    assert get_remedy("clip_value").params == {"value": 1.0}
    problem = mlp_problem()
    result = half.apply(problem)
    assert result.notes["remedies"][-1] == {"id": "clip_value", "params": {"value": 0.5}}
    # the bound used is 0.5: compare with torch's own clip_grad_value_ on a twin
    x, y = problem.data[0]
    nn.MSELoss()(result.model(x), y).backward()
    twin = copy.deepcopy(problem.model)
    nn.MSELoss()(twin(x), y).backward()
    assert max(float(p.grad.abs().max()) for p in twin.parameters()) > 0.5
    result.grad_transforms[0](result.model, None)
    torch.nn.utils.clip_grad_value_(twin.parameters(), 0.5)
    for p, q in zip(result.model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)
    # overrides at apply time win over the defaults, for this call only
    assert half.apply(problem, value=2.0).notes["remedies"][-1]["params"] == {"value": 2.0}


def test_chain_applies_in_order_and_records_each_component():
    problem = mlp_problem()
    chained = chain("init_he", "init_lsuv")
    assert chained.id == "init_he+init_lsuv" and isinstance(chained, Chain)
    assert chain(["init_he", "init_lsuv"]) == chained  # a list works as well
    result = chained.apply(problem)
    assert [e["id"] for e in result.notes["remedies"]] == ["init_he", "init_lsuv"]
    # the same as applying one after the other, and not the same as the other order
    stepwise = get_remedy("init_lsuv").apply(get_remedy("init_he").apply(problem))
    reverse = chain("init_lsuv", "init_he").apply(problem)
    for (k, a), b in zip(result.model.state_dict().items(), stepwise.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(a, c) for a, c in zip(result.model.parameters(), reverse.model.parameters()))
    # gradient transforms run in chain order
    clipped = chain("clip_value", get_remedy("clip_norm")).apply(problem)
    assert [t.__name__ for t in clipped.grad_transforms] == ["clip_value", "clip_norm"]


def test_chain_overrides_per_component_and_rejects_bad_chains():
    chained = chain("lower_lr", "clip_value")
    result = chained.apply(mlp_problem(), clip_value={"value": 0.25})
    assert result.notes["remedies"] == [
        {"id": "lower_lr", "params": {"factor": 0.1}},
        {"id": "clip_value", "params": {"value": 0.25}},
    ]
    assert chained.with_params(lower_lr={"factor": 0.5}).params["lower_lr"] == {"factor": 0.5}
    with pytest.raises(TypeError, match="valid parameters: factor"):
        chained.apply(mlp_problem(), lower_lr={"factr": 0.5})
    with pytest.raises(TypeError, match="valid components: clip_value, lower_lr"):
        chained.apply(mlp_problem(), clip_norm={"max_norm": 1.0})
    with pytest.raises(ValueError, match="more than once"):
        chain("clip_value", chain("init_he", "clip_value"))
    ok, reason = chain("tbptt", "vanishing_regularizer").applicable(rnn_problem())
    assert not ok and "only one" in reason
    # a later component that no longer applies to what the earlier ones produced
    with pytest.raises(ValueError, match="'lstm' does not apply to the problem that 'vanishing_regularizer'"):
        chain("vanishing_regularizer", "lstm").apply(rnn_problem())


def test_step_replacing_remedies_refuse_a_problem_with_a_step_fn():
    tbptt_problem = get_remedy("tbptt").apply(rnn_problem())
    for remedy_id in ("vanishing_regularizer", "echo_state", "tbptt"):
        ok, reason = get_remedy(remedy_id).applicable(tbptt_problem)
        assert not ok and "tbptt_10" in reason and "'tbptt'" in reason, reason
    echo = get_remedy("echo_state").apply(rnn_problem())
    for remedy_id in ("clip_norm", "lower_lr"):
        ok, reason = get_remedy(remedy_id).applicable(echo)
        assert not ok and "closed form" in reason


def test_remedies_are_reproducible_and_leave_the_global_random_state_alone():
    problem = rnn_problem()
    state = torch.get_rng_state()
    for remedy_id in ("init_he", "init_orthogonal", "lstm", "leaky_units", "echo_state"):
        first, second = get_remedy(remedy_id).apply(problem), get_remedy(remedy_id).apply(problem)
        for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
            assert torch.equal(a, b), remedy_id
        other = get_remedy(remedy_id).apply(problem, seed=1)
        assert any(not torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                          other.model.state_dict().values()))  # fmt: skip
    assert torch.equal(torch.get_rng_state(), state)


def test_not_a_problem_is_a_type_error():
    with pytest.raises(TypeError, match="Problem"):
        get_remedy("init_he").apply(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="Problem"):
        get_remedy("init_he").applicable("model")


def test_bad_parameter_values_raise_before_training():
    problem = mlp_problem()
    for remedy_id, bad in [("clip_value", {"value": -1.0}), ("clip_norm", {"max_norm": 0.0}),
                           ("clip_norm", {"nonfinite": "ignore"}), ("clip_adaptive", {"clip_factor": -0.1}),
                           ("clip_quantile", {"quantile": 1.5}), ("lower_lr", {"factor": 10.0}),
                           ("init_he", {"seed": "zero"}), ("swap_activation", {"to": "tanh"})]:  # fmt: skip
        with pytest.raises(ValueError):
            get_remedy(remedy_id).apply(problem, **bad)
    with pytest.raises(ValueError):
        get_remedy("tbptt").apply(rnn_problem(), k=0)
    with pytest.raises(ValueError):
        get_remedy("echo_state").apply(rnn_problem(), spectral_radius=1.5)


# ------------------------------------------------------------------------- what each remedy does


def loss_grads(model: nn.Module, batch) -> list[torch.Tensor]:
    x, y = batch
    model.zero_grad(set_to_none=True)
    nn.MSELoss()(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_clip_backward_clamps_during_backward_on_every_copy_and_can_be_removed():
    problem = rnn_problem()
    batch = problem.data[0]
    free = loss_grads(copy.deepcopy(problem.model), batch)
    value = 0.5 * max(float(g.abs().max()) for g in free)  # some entries are clamped
    result = get_remedy("clip_backward").apply(problem, value=value)
    handle = result.notes["backward_clip"]
    assert len(handle) == len(list(result.model.parameters()))
    clamped = loss_grads(result.model, batch)
    for g, reference in zip(clamped, free):
        assert torch.allclose(g, reference.clamp(-value, value), rtol=1e-5, atol=1e-7)
    # a later remedy copies the model (deepcopy drops tensor hooks): they are put back
    later = get_remedy("init_he").apply(result)
    assert later.notes["backward_clip"] is not handle and len(later.notes["backward_clip"]) == len(handle)
    assert max(float(g.abs().max()) for g in loss_grads(later.model, batch)) <= value
    # ...including on modules a later remedy puts in (an LSTM has other parameters)
    gated = chain("clip_backward", "lstm").apply(problem, clip_backward={"value": 2.0**-10})
    assert isinstance(gated.model.rnn, nn.LSTM)
    assert len(gated.notes["backward_clip"]) == len(list(gated.model.parameters()))
    assert max(float(g.abs().max()) for g in loss_grads(gated.model, batch)) <= 2.0**-10
    # the earlier result still clamps, and remove() gives the free gradients back
    assert max(float(g.abs().max()) for g in loss_grads(result.model, batch)) <= value
    handle.remove()
    for g, reference in zip(loss_grads(result.model, batch), free):
        assert torch.allclose(g, reference, rtol=1e-5, atol=1e-7)
    # hooks removed on purpose stay removed on later copies
    for g, reference in zip(loss_grads(get_remedy("lower_lr").apply(result).model, batch), free):
        assert torch.allclose(g, reference, rtol=1e-5, atol=1e-7)


def naive_adaptive_clip(weight: torch.Tensor, grad: torch.Tensor, factor: float, eps: float) -> torch.Tensor:
    """AGC unit by unit (rows; vectors as one unit), a plain Python loop."""
    rows = [(weight, grad)] if weight.dim() <= 1 else list(zip(weight, grad))
    out = []
    for w, g in rows:
        w_norm = max(math.sqrt(sum(float(v) ** 2 for v in w.flatten())), eps)
        g_norm = math.sqrt(sum(float(v) ** 2 for v in g.flatten()))
        out.append(g * (factor * w_norm / g_norm) if g_norm / w_norm > factor else g)
    return out[0] if weight.dim() <= 1 else torch.stack(out)


def test_clip_transforms_match_references():
    problem = mlp_problem(torch.float64)
    batch = problem.data[0]
    free = loss_grads(copy.deepcopy(problem.model), batch)
    result = chain("clip_norm").apply(problem, clip_norm={"max_norm": 0.1})
    loss_grads(result.model, batch)
    result.grad_transforms[0](result.model, None)
    twin = copy.deepcopy(problem.model)
    for p, g in zip(twin.parameters(), free):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.1)
    for p, q in zip(result.model.parameters(), twin.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-12)

    adaptive = get_remedy("clip_adaptive").apply(problem)
    loss_grads(adaptive.model, batch)
    adaptive.grad_transforms[0](adaptive.model, None)
    for (name, p), g in zip(adaptive.model.named_parameters(), free):
        want = g if name.startswith("4.") else naive_adaptive_clip(p.detach(), g, 0.01, 1e-3)  # head left out
        assert torch.allclose(p.grad, want, rtol=1e-10)

    quantile = get_remedy("clip_quantile").apply(problem, quantile=0.5)
    clipper = quantile.notes["quantile_clipper"]
    norms = []
    for step_batch in quantile.take(3):
        grads = loss_grads(quantile.model, step_batch)
        norms.append(math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads)))
        quantile.grad_transforms[0](quantile.model, None)
    assert clipper.norms == pytest.approx(norms, rel=1e-10)
    # the third step is clipped to the median of the three norms seen
    after = math.sqrt(sum(float((p.grad ** 2).sum()) for p in quantile.model.parameters()))
    assert after == pytest.approx(min(norms[2], sorted(norms)[1]), rel=1e-5)
    # one clipper per applied problem
    assert get_remedy("clip_quantile").apply(problem).notes["quantile_clipper"] is not clipper


def test_lower_lr_scales_every_param_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))

    def two_groups(params):
        params = list(params)
        return torch.optim.Adam([{"params": params[:2], "lr": 0.3}, {"params": params[2:]}], lr=0.02)

    problem = Problem(model, [(torch.randn(4, 2), torch.randn(4, 1))], nn.MSELoss(), two_groups)
    lowered = get_remedy("lower_lr").apply(problem, factor=0.5).make_optimizer()
    assert [g["lr"] for g in lowered.param_groups] == [0.15, 0.01]
    assert [g["lr"] for g in problem.make_optimizer().param_groups] == [0.3, 0.02]
    default = Problem(model, problem.data, nn.MSELoss())  # no factory: SGD at lr 0.01
    assert get_remedy("lower_lr").apply(default).make_optimizer().param_groups[0]["lr"] == pytest.approx(1e-3)


def test_standardize_target_gives_unit_variance_targets_and_maps_predictions_back():
    problem = mlp_problem(torch.float64)
    result = get_remedy("standardize_target").apply(problem)
    ys = [float(v) for _, y in problem.data for v in y.flatten()]
    mean = sum(ys) / len(ys)
    std = math.sqrt(sum((v - mean) ** 2 for v in ys) / len(ys))
    zs = [float(v) for _, y in result.data for v in y.flatten()]
    assert sum(zs) / len(zs) == pytest.approx(0.0, abs=1e-12)
    assert sum(z * z for z in zs) / len(zs) == pytest.approx(1.0, rel=1e-12)
    assert result.predict_transform(torch.zeros(1, 1, dtype=torch.float64)).item() == pytest.approx(mean)
    assert result.predict_transform(torch.ones(1, 1, dtype=torch.float64)).item() == pytest.approx(mean + std)
    assert result.data[0][0] is problem.data[0][0]  # inputs shared, targets new


def test_vanishing_regularizer_swaps_nn_rnn_for_the_same_elman_function():
    problem = rnn_problem(torch.float64)
    result = get_remedy("vanishing_regularizer").apply(problem, strength=0.5)
    core = result.model.rnn
    assert type(core) is ElmanRNN and core.nonlinearity == "tanh"
    rnn = problem.model.rnn
    assert torch.equal(core.bias, rnn.bias_ih_l0 + rnn.bias_hh_l0)
    for x, _ in problem.data:  # identical outputs before any step
        assert torch.allclose(result.model(x), problem.model(x), rtol=1e-12, atol=1e-14)
    assert result.step_fn.__name__ == "omega_step"
    assert result.notes["step_fn_remedy"] == "vanishing_regularizer"
    relu = SequenceModel(nn.RNN(3, 4, nonlinearity="relu", batch_first=True, bias=False), 1).double()
    relu_problem = Problem(relu, problem.data, nn.MSELoss())
    swapped = get_remedy("vanishing_regularizer").apply(relu_problem).model
    assert swapped.rnn.nonlinearity == "relu" and not swapped.rnn.bias.any()
    assert torch.allclose(swapped(problem.data[0][0]), relu(problem.data[0][0]), rtol=1e-12, atol=1e-14)
    two_layers = Problem(SequenceModel(nn.RNN(3, 4, num_layers=2, batch_first=True), 1), problem.data, nn.MSELoss())
    ok, reason = get_remedy("vanishing_regularizer").applicable(two_layers)
    assert not ok and "single-layer" in reason


def test_leaky_units_keep_the_weights_and_draw_leaks_in_range():
    problem = rnn_problem()
    result = get_remedy("leaky_units").apply(problem, leak_range=(0.1, 0.3))
    core, rnn = result.model.rnn, problem.model.rnn
    assert type(core) is LeakyRNN
    assert torch.equal(core.weight_ih, rnn.weight_ih_l0) and torch.equal(core.weight_hh, rnn.weight_hh_l0)
    assert bool(((core.leak >= 0.1) & (core.leak <= 0.3)).all()) and core.leak.std() > 0
    ok, reason = get_remedy("leaky_units").applicable(result)
    assert not ok and "LeakyRNN already" in reason


@pytest.mark.parametrize(("remedy_id", "layer"), [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_gated_swaps_keep_sizes(remedy_id, layer):
    result = get_remedy(remedy_id).apply(rnn_problem())
    core = result.model.rnn
    assert type(core) is layer and (core.input_size, core.hidden_size, core.batch_first) == (3, 6, True)
    assert not get_remedy(remedy_id).applicable(result)[0]
    # the memory gate (LSTM forget gate, GRU update gate) starts at bias 3; None keeps PyTorch's
    assert core.bias_ih_l0[6:12].tolist() == [3.0] * 6 and core.bias_hh_l0[6:12].tolist() == [0.0] * 6
    plain = get_remedy(remedy_id).apply(rnn_problem(), forget_bias=None).model.rnn
    assert plain.bias_ih_l0[6:12].abs().max() <= 1 / math.sqrt(6)
    torch.testing.assert_close(plain.bias_ih_l0[:6], core.bias_ih_l0[:6])  # same seeded draw


def test_tbptt_step_and_override():
    assert get_remedy("tbptt").apply(rnn_problem()).step_fn.__name__ == "tbptt_10"
    assert get_remedy("tbptt").apply(rnn_problem(), k=3).step_fn.__name__ == "tbptt_3"


def test_recurrent_penalty_value_matches_singular_values():
    problem = rnn_problem(torch.float64)
    with torch.no_grad():
        problem.model.rnn.weight_hh_l0.mul_(4.0)  # push sigma_max above the bound 1
    result = get_remedy("recurrent_penalty").apply(problem, strength=0.3)
    (penalty,) = result.penalties
    sigma = float(torch.linalg.svdvals(result.model.rnn.weight_hh_l0.detach())[0])
    assert sigma > 1
    assert penalty(result.model, None, None).item() == pytest.approx(0.3 * (sigma - 1.0) ** 2, rel=1e-10)


def test_echo_state_fits_the_readout_on_every_batch_seen():
    problem = rnn_problem(torch.float64)
    result = get_remedy("echo_state").apply(problem)
    network = result.model
    assert isinstance(network, EchoStateNetwork)
    assert (network.input_size, network.reservoir_size, network.output_size) == (3, 6, 1)
    assert network.readout_mode == "last" and network.spectral_radius == 0.95
    optimizer = result.make_optimizer()  # the readout's parameters
    reference = copy.deepcopy(network)
    (x1, y1), (x2, y2) = problem.data
    with torch.no_grad():
        before = float(nn.MSELoss()(network(x1), y1))
    loss = train_step(result, network, optimizer, (x1, y1))
    assert float(loss) == pytest.approx(before, rel=1e-12)  # the loss before the fit
    train_step(result, network, optimizer, (x2, y2))
    reference.fit(torch.cat([x1, x2]), torch.cat([y1, y2]))
    assert torch.allclose(network.readout.weight, reference.readout.weight, rtol=1e-8, atol=1e-10)
    assert torch.allclose(network.readout.bias, reference.readout.bias, rtol=1e-8, atol=1e-10)
    bigger = get_remedy("echo_state").apply(problem, reservoir_size=20).model
    assert bigger.reservoir_size == 20


def test_echo_state_per_step_readout():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    model = SequenceModel(nn.GRU(2, 5, batch_first=True), 3, readout="all").double()
    data = [(torch.randn(4, 7, 2, generator=g, dtype=torch.float64),
             torch.randn(4, 7, 3, generator=g, dtype=torch.float64))]  # fmt: skip
    result = get_remedy("echo_state").apply(Problem(model, data, nn.MSELoss()))
    network = result.model
    assert network.readout_mode == "all" and network.output_size == 3
    train_step(result, network, result.make_optimizer(), data[0])
    reference = copy.deepcopy(network).fit(*data[0])
    assert torch.allclose(network.readout.weight, reference.readout.weight, rtol=1e-8, atol=1e-10)
