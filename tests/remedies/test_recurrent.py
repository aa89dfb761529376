"""Recurrent remedies: Elman and leaky layers, SequenceModel, TBPTT, recurrent weights, swaps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graddoctor.problem import Problem, train_step
from graddoctor.remedies.recurrent import (
    ElmanRNN,
    LeakyRNN,
    SequenceModel,
    SpectralConstraint,
    constrain_spectral_norm_,
    find_recurrent_modules,
    orthogonal_recurrent_init_,
    recurrent_penalty,
    recurrent_weights,
    set_forget_bias_,
    spectral_constraint_step,
    swap_rnn_,
    tbptt,
)

from ..conftest import generator, randn

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- naive references


def naive_recurrence(x, w_ih, w_hh, bias, f, h0=None, leak=None):
    """h_t = a h_{t-1} + (1 - a) f(W_ih x_t + W_hh h_{t-1} + b), one sample and unit at a time."""
    batch, steps, _ = x.shape
    hidden = w_hh.shape[0]
    w_ih, w_hh, bias = w_ih.detach(), w_hh.detach(), bias.detach()
    outputs = torch.zeros(batch, steps, hidden, dtype=x.dtype)
    for b in range(batch):
        h = [0.0] * hidden if h0 is None else [float(v) for v in h0[b]]
        for t in range(steps):
            new = []
            for i in range(hidden):
                a = float(bias[i])
                a += sum(float(w_ih[i, j]) * float(x[b, t, j]) for j in range(x.shape[2]))
                a += sum(float(w_hh[i, j]) * h[j] for j in range(hidden))
                value = f(a)
                if leak is not None:
                    value = float(leak[i]) * h[i] + (1 - float(leak[i])) * value
                new.append(value)
            h = new
            outputs[b, t] = torch.tensor(h, dtype=x.dtype)
    return outputs


SCALAR_F = {
    "tanh": math.tanh,
    "relu": lambda a: max(a, 0.0),
    "sigmoid": lambda a: 1.0 / (1.0 + math.exp(-a)),
}


# ---------------------------------------------------------------- ElmanRNN and LeakyRNN


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_elman_equals_torch_rnn(nonlinearity, batch_first):
    torch.manual_seed(0)
    reference = nn.RNN(3, 5, nonlinearity=nonlinearity, batch_first=batch_first, dtype=F64)
    elman = ElmanRNN(3, 5, nonlinearity, batch_first=batch_first, dtype=F64)
    with torch.no_grad():
        elman.weight_ih.copy_(reference.weight_ih_l0)
        elman.weight_hh.copy_(reference.weight_hh_l0)
        elman.bias.copy_(reference.bias_ih_l0 + reference.bias_hh_l0)
    x = randn(4, 6, 3) if batch_first else randn(6, 4, 3)
    h0 = randn(1, 4, 5, seed=1)
    expected, expected_last = reference(x, h0)
    outputs, last = elman(x, h0)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(last, expected_last)
    outputs.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(elman.weight_hh.grad, reference.weight_hh_l0.grad)
    # unbatched [T, I] and a [B, H] initial state
    torch.testing.assert_close(elman(x[:, 0] if not batch_first else x[0])[0],
                               reference(x[:, 0] if not batch_first else x[0])[0])
    torch.testing.assert_close(elman(x, h0[0])[0], expected.detach())


def test_elman_sigmoid_matches_naive_loop_and_trace():
    model = ElmanRNN(2, 3, "sigmoid", generator=generator(1), dtype=F64)
    x = randn(2, 4, 2, seed=2)
    outputs, last, trace = model(x, return_trace=True)
    expected = naive_recurrence(x, model.weight_ih, model.weight_hh, model.bias, SCALAR_F["sigmoid"])
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(last[0], expected[:, -1])
    assert len(trace.hidden_states) == 5 and len(trace.preactivations) == 4
    torch.testing.assert_close(torch.sigmoid(trace.preactivations[2]), trace.hidden_states[3])
    assert trace.leak is None and trace.module is model


def test_elman_bad_input():
    model = ElmanRNN(3, 4)
    with pytest.raises(ValueError, match="input_size 3"):
        model(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(2, 5, 3), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="nonlinearity"):
        ElmanRNN(3, 4, "gelu")
    with pytest.raises(ValueError, match="hidden_size"):
        ElmanRNN(3, 0)


def test_leaky_matches_naive_loop():
    model = LeakyRNN(2, 4, leak_range=(0.3, 0.7), generator=generator(3), dtype=F64)
    assert "leak" in dict(model.named_buffers()) and "leak" not in dict(model.named_parameters())
    assert bool(((model.leak >= 0.3) & (model.leak <= 0.7)).all()) and model.leak.dtype == F64
    x, h0 = randn(3, 5, 2, seed=4), randn(3, 4, seed=5)
    outputs, last = model(x, h0)
    expected = naive_recurrence(x, model.weight_ih, model.weight_hh, model.bias, math.tanh, h0, model.leak)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(last[0], expected[:, -1])
    same = LeakyRNN(2, 4, leak_range=(0.3, 0.7), generator=generator(3), dtype=F64)
    torch.testing.assert_close(same.leak, model.leak)
    zero_leak = LeakyRNN(2, 4, leak_range=(0.0, 0.0), dtype=F64)
    plain = naive_recurrence(x, zero_leak.weight_ih, zero_leak.weight_hh, zero_leak.bias, math.tanh)
    torch.testing.assert_close(zero_leak(x)[0], plain)
    for bad in [(0.5, 0.2), (0.1, 1.0), (-0.1, 0.2), "ab"]:
        with pytest.raises(ValueError, match="leak_range"):
            LeakyRNN(2, 4, leak_range=bad)


# ---------------------------------------------------------------- SequenceModel


def test_sequence_model_readouts():
    rnn = nn.GRU(3, 4, batch_first=True, dtype=F64)
    last = SequenceModel(rnn, 2)
    x = randn(5, 6, 3)
    prediction, hidden = last(x, return_hidden=True)
    outputs, expected_hidden = rnn(x)
    torch.testing.assert_close(prediction, last.head(outputs[:, -1]))
    torch.testing.assert_close(hidden, expected_hidden)
    assert last.head.weight.dtype == F64
    every = SequenceModel(rnn, last.head, readout="all")
    torch.testing.assert_close(every(x), last.head(outputs))
    time_major = SequenceModel(nn.RNN(3, 4, dtype=F64), 2)
    seq = randn(6, 5, 3)
    torch.testing.assert_close(time_major(seq), time_major.head(time_major.rnn(seq)[0][-1]))
    with pytest.raises(ValueError, match="readout"):
        SequenceModel(rnn, 2, readout="first")
    with pytest.raises(TypeError, match="head"):
        SequenceModel(rnn, "linear")


# ---------------------------------------------------------------- TBPTT


def manual_tbptt(model, x, y, k, lr, per_step):
    """Brute force: run each chunk from a detached hidden state, backward, SGD update."""
    hidden, length = None, x.shape[1]
    bounds = [(s, min(s + k, length)) for s in range(0, length, k)]
    if not per_step:
        edges = sorted({0, *range(length, 0, -k)})
        bounds = list(zip(edges[:-1], edges[1:]))
    for start, stop in bounds:
        hidden = None if hidden is None else tuple(h.detach() for h in hidden) if isinstance(
            hidden, tuple) else hidden.detach()
        outputs, hidden = model(x[:, start:stop], hidden, return_hidden=True)
        if not per_step and stop != length:
            continue
        target = y[:, start:stop] if per_step else y
        loss = (outputs - target).square().mean()
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= lr * parameter.grad


CORES = {
    "rnn": lambda: nn.RNN(2, 4, batch_first=True, dtype=F64),
    "lstm": lambda: nn.LSTM(2, 4, batch_first=True, dtype=F64),
    "gru": lambda: nn.GRU(2, 4, batch_first=True, dtype=F64),
    "elman": lambda: ElmanRNN(2, 4, dtype=F64),
    "leaky": lambda: LeakyRNN(2, 4, dtype=F64),
}


@pytest.mark.parametrize("core", sorted(CORES))
@pytest.mark.parametrize("readout", ["all", "last"])
def test_tbptt_equals_chunks_on_detached_hidden(core, readout):
    torch.manual_seed(0)
    model = SequenceModel(CORES[core](), 1, readout=readout)
    twin = SequenceModel(CORES[core](), 1, readout=readout)
    twin.load_state_dict(model.state_dict())
    x = randn(3, 10, 2, seed=1)
    y = randn(3, 10, 1, seed=2) if readout == "all" else randn(3, 1, seed=2)
    problem = Problem(model, [(x, y)], nn.MSELoss(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                      step_fn=tbptt(4))
    train_step(problem, model, problem.make_optimizer(), (x, y))
    manual_tbptt(twin, x, y, 4, 0.1, per_step=readout == "all")
    for (name, got), (_, expected) in zip(model.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(got, expected, msg=name)
        assert got.dtype == F64


def test_tbptt_gradient_stops_at_chunk_boundary():
    torch.manual_seed(0)
    model = SequenceModel(ElmanRNN(2, 3, dtype=F64), 1, readout="all")
    x = randn(2, 9, 2, seed=3).requires_grad_()
    y = randn(2, 9, 1, seed=4)
    snapshots = []

    def record(model, optimizer):
        snapshots.append(x.grad.clone())

    problem = Problem(model, [(x, y)], nn.MSELoss(), optimizer=lambda p: torch.optim.SGD(p, lr=0.0),
                      grad_transforms=(record,), step_fn=tbptt(3))
    loss = train_step(problem, model, problem.make_optimizer(), (x, y))
    assert len(snapshots) == 3
    for chunk in range(3):
        later = snapshots[chunk][:, 3 * (chunk + 1):]
        assert torch.count_nonzero(later) == 0  # not reached yet
        if chunk:  # earlier chunks' input gradients are untouched by this chunk
            torch.testing.assert_close(snapshots[chunk][:, : 3 * chunk], snapshots[chunk - 1][:, : 3 * chunk])
        assert torch.count_nonzero(snapshots[chunk][:, 3 * chunk: 3 * chunk + 3]) > 0
    # with lr = 0 the chunk losses average to the full-sequence loss
    torch.testing.assert_close(loss, nn.MSELoss()(model(x), y).detach())
    # and the full-BPTT input gradient is different: truncation matters
    x.grad = None
    nn.MSELoss()(model(x), y).backward()
    assert not torch.allclose(x.grad, snapshots[-1])


def test_tbptt_raw_lstm_protocol_and_errors():
    lstm = nn.LSTM(2, 3, batch_first=True, dtype=F64)
    x, y = randn(2, 7, 2), randn(2, 7, 3, seed=1)
    problem = Problem(lstm, [(x, y)], lambda out, target: (out - target).square().mean(), step_fn=tbptt(3))
    loss = train_step(problem, lstm, problem.make_optimizer(), (x, y))
    assert loss.dim() == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="k >= 1"):
        tbptt(0)
    mlp = nn.Linear(2, 1)
    bad = Problem(mlp, [(x.float(), y.float())], nn.MSELoss(), step_fn=tbptt(3))
    with pytest.raises(ValueError, match="no nn.RNN/LSTM/GRU or graddoctor recurrent module found in Linear"):
        train_step(bad, mlp, bad.make_optimizer(), (x.float(), y.float()))


# ---------------------------------------------------------------- recurrent weights


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64)
        self.cells = nn.ModuleList([nn.GRUCell(3, 2, dtype=F64), ElmanRNN(3, 5, dtype=F64)])
        self.head = nn.Linear(4, 1, dtype=F64)


def test_recurrent_weights_names_and_views():
    model = Nested()
    weights = dict(recurrent_weights(model))
    expected = [f"encoder.weight_hh_l{layer}{suffix}[{gate}]" for layer in (0, 1) for suffix in ("", "_reverse")
                for gate in "ifgo"]
    expected += [f"cells.0.weight_hh[{gate}]" for gate in "rzn"] + ["cells.1.weight_hh"]
    assert list(weights) == expected
    forget = weights["encoder.weight_hh_l1_reverse[f]"]
    torch.testing.assert_close(forget, model.encoder.weight_hh_l1_reverse[4:8])
    assert forget.data_ptr() == model.encoder.weight_hh_l1_reverse[4:8].data_ptr()
    whole = dict(recurrent_weights(model, per_gate=False))
    assert whole["encoder.weight_hh_l0"] is model.encoder.weight_hh_l0
    with pytest.raises(ValueError, match="found in Sequential"):
        recurrent_weights(nn.Sequential(nn.Linear(2, 2)))


def test_recurrent_penalties_match_naive():
    model = Nested()
    with torch.no_grad():
        model.encoder.weight_hh_l0.mul_(4.0)
        model.cells[1].weight_hh.mul_(0.01)
    blocks = []
    for name, parameter in model.named_parameters():
        if "weight_hh" not in name:
            continue
        gates = 4 if name.startswith("encoder") else 3 if name.startswith("cells.0") else 1
        rows = parameter.shape[0] // gates
        blocks += [parameter.detach()[g * rows:(g + 1) * rows] for g in range(gates)]
    l1 = sum(float(b.abs().sum()) for b in blocks)
    l2 = sum(float((b * b).sum()) for b in blocks)
    spectral = sum(max(float(torch.linalg.svdvals(b)[0]) - 0.5, 0.0) ** 2 for b in blocks)
    assert any(float(torch.linalg.svdvals(b)[0]) < 0.5 for b in blocks)
    assert any(float(torch.linalg.svdvals(b)[0]) > 0.5 for b in blocks)
    for kind, expected in (("l1", l1), ("l2", l2), ("spectral", spectral)):
        value = recurrent_penalty(kind, strength=0.3, bound=0.5)(model, None, None)
        assert value.dtype == F64
        assert math.isclose(float(value.detach()), 0.3 * expected, rel_tol=1e-12)


def test_spectral_penalty_gradient_is_the_top_singular_pair():
    model = ElmanRNN(3, 4, generator=generator(5), dtype=F64)
    with torch.no_grad():
        model.weight_hh.mul_(4.0)
    recurrent_penalty("spectral", strength=2.0, bound=1.0)(model, None, None).backward()
    u, s, vh = torch.linalg.svd(model.weight_hh.detach())
    expected = 2.0 * 2.0 * (s[0] - 1.0) * torch.outer(u[:, 0], vh[0])
    torch.testing.assert_close(model.weight_hh.grad, expected)
    with pytest.raises(ValueError, match="kind"):
        recurrent_penalty("l3")
    with pytest.raises(ValueError, match="strength"):
        recurrent_penalty("l2", strength=-1)
    with pytest.raises(ValueError, match="no nn.RNN"):
        recurrent_penalty("l2")(nn.Linear(2, 2), None, None)


def test_constrain_spectral_norm_projects_each_block():
    model = Nested()
    with torch.no_grad():
        model.encoder.weight_hh_l0.mul_(10.0)
        model.cells[1].weight_hh.mul_(0.01)
    small_before = model.cells[1].weight_hh.detach().clone()
    input_before = model.encoder.weight_ih_l0.detach().clone()
    names = [name for name, _ in recurrent_weights(model)]
    naive_before = torch.stack([torch.linalg.svdvals(w.detach())[0] for _, w in recurrent_weights(model)])
    before = constrain_spectral_norm_(model, bound=0.9)
    torch.testing.assert_close(before, naive_before)
    for name, weight in recurrent_weights(model):
        assert float(torch.linalg.svdvals(weight.detach())[0]) <= 0.9 * (1 + 1e-12), name
    torch.testing.assert_close(model.cells[1].weight_hh.detach(), small_before)  # already inside
    torch.testing.assert_close(model.encoder.weight_ih_l0.detach(), input_before)
    big = float(torch.linalg.svdvals(dict(recurrent_weights(model))[names[0]].detach())[0])
    assert math.isclose(big, 0.9, rel_tol=1e-10)
    assert model.encoder.weight_hh_l0.dtype == F64
    with pytest.raises(ValueError, match="bound"):
        constrain_spectral_norm_(model, bound=0.0)


def test_spectral_constraint_hook_and_step():
    torch.manual_seed(0)
    model = SequenceModel(nn.RNN(2, 6, batch_first=True, dtype=F64), 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    x, y = randn(4, 5, 2), 100 * randn(4, 1, seed=1)
    handle = SpectralConstraint(0.5).attach(model, optimizer)
    for _ in range(3):
        optimizer.zero_grad()
        nn.MSELoss()(model(x), y).backward()
        optimizer.step()
        assert float(torch.linalg.svdvals(model.rnn.weight_hh_l0.detach())[0]) <= 0.5 + 1e-12
    handle.remove()
    assert not optimizer._optimizer_step_post_hooks
    problem = Problem(model, [(x, y)], nn.MSELoss(), optimizer=lambda p: torch.optim.SGD(p, lr=5.0),
                      step_fn=spectral_constraint_step(0.25))
    train_step(problem, model, problem.make_optimizer(), (x, y))
    assert float(torch.linalg.svdvals(model.rnn.weight_hh_l0.detach())[0]) <= 0.25 + 1e-12
    chained = problem.replace(step_fn=spectral_constraint_step(0.1, step_fn=tbptt(2)))
    train_step(chained, model, chained.make_optimizer(), (x, y))
    assert float(torch.linalg.svdvals(model.rnn.weight_hh_l0.detach())[0]) <= 0.1 + 1e-12


# ---------------------------------------------------------------- orthogonal init


def test_orthogonal_recurrent_init():
    model = nn.Sequential(nn.LSTM(3, 4, proj_size=2, dtype=F64), ElmanRNN(3, 5, dtype=F64))
    input_before = model[0].weight_ih_l0.detach().clone()
    names = orthogonal_recurrent_init_(model, gain=1.5, generator=generator(7))
    assert names == [f"0.weight_hh_l0[{g}]" for g in "ifgo"] + ["1.weight_hh"]
    for name, weight in recurrent_weights(model):
        w = weight.detach()
        assert w.dtype == F64
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        torch.testing.assert_close(gram, 2.25 * torch.eye(gram.shape[0], dtype=F64), msg=name)
    square = model[1].weight_hh.detach() / 1.5
    torch.testing.assert_close(torch.linalg.eigvals(square).abs(), torch.ones(5, dtype=F64))
    blocks = model[0].weight_hh_l0.detach().chunk(4)
    assert not torch.allclose(blocks[0], blocks[1])
    torch.testing.assert_close(model[0].weight_ih_l0.detach(), input_before)
    again = nn.Sequential(nn.LSTM(3, 4, proj_size=2, dtype=F64), ElmanRNN(3, 5, dtype=F64))
    orthogonal_recurrent_init_(again, gain=1.5, generator=generator(7))
    torch.testing.assert_close(again[1].weight_hh, model[1].weight_hh)


# ---------------------------------------------------------------- swap_rnn_


def test_swap_rnn_to_lstm_keeps_sequence_model_working():
    torch.manual_seed(0)
    rnn = nn.RNN(3, 4, num_layers=2, batch_first=True, bidirectional=True, dropout=0.25, dtype=F64)
    model = SequenceModel(rnn, 2)
    x = randn(5, 6, 3)
    shape = model(x).shape
    assert swap_rnn_(model, "lstm") == ["rnn"]
    lstm = model.rnn
    assert isinstance(lstm, nn.LSTM)
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.batch_first, lstm.bidirectional,
            lstm.dropout) == (3, 4, 2, True, True, 0.25)
    assert lstm.weight_hh_l0.dtype == F64
    prediction, (h, c) = model(x, return_hidden=True)
    assert prediction.shape == shape and h.shape == c.shape == (4, 5, 4)
    prediction.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert swap_rnn_(model, "lstm") == []  # nothing plain left


def test_swap_rnn_nested_graddoctor_cores_to_gru():
    model = nn.Sequential(nn.ModuleList([ElmanRNN(2, 3, batch_first=False, dtype=F64)]),
                          SequenceModel(LeakyRNN(2, 3, dtype=F64), 1), nn.LSTM(2, 3))
    assert swap_rnn_(model, to="gru") == ["0.0", "1.rnn"]
    assert isinstance(model[0][0], nn.GRU) and not model[0][0].batch_first
    assert isinstance(model[1].rnn, nn.GRU) and model[1].rnn.weight_hh_l0.dtype == F64
    assert isinstance(model[2], nn.LSTM)
    assert model[1](randn(2, 4, 2)).shape == (2, 1)
    assert [name for name, _ in find_recurrent_modules(model)] == ["0.0", "1.rnn", "2"]
    with pytest.raises(ValueError, match="found in Linear"):
        swap_rnn_(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="cannot replace the model itself"):
        swap_rnn_(nn.RNN(2, 3))
    with pytest.raises(ValueError, match="to must be"):
        swap_rnn_(model, to="transformer")


def naive_memory_gate_biases(layer: nn.RNNBase) -> list[tuple[float, float]]:
    """(b_ih, b_hh) of the memory gate, unit by unit: rows H..2H of every layer and direction
    (LSTM gates i, f, g, o: f; GRU gates r, z, n: z)."""
    found = []
    for index in range(layer.num_layers):
        for suffix in ("", "_reverse")[: 1 + layer.bidirectional]:
            b_ih = getattr(layer, f"bias_ih_l{index}{suffix}").tolist()
            b_hh = getattr(layer, f"bias_hh_l{index}{suffix}").tolist()
            for unit in range(layer.hidden_size, 2 * layer.hidden_size):
                found.append((b_ih[unit], b_hh[unit]))
    return found


@pytest.mark.parametrize("to", ["lstm", "gru"])
def test_swap_rnn_forget_bias_sets_the_memory_gate_only(to):
    torch.manual_seed(0)
    model = SequenceModel(nn.RNN(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=F64), 2)
    assert swap_rnn_(model, to, forget_bias=3.0) == ["rnn"]
    layer = model.rnn
    assert naive_memory_gate_biases(layer) == [(3.0, 0.0)] * (2 * 2 * 4)
    torch.manual_seed(0)
    untouched = SequenceModel(nn.RNN(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=F64), 2)
    swap_rnn_(untouched, to)  # the same draw, PyTorch's init kept
    for (name, after), before in zip(layer.named_parameters(), untouched.rnn.parameters(), strict=True):
        changed = [row for row in range(len(after)) if after[row].ne(before[row]).any()]
        assert changed == (list(range(4, 8)) if name.startswith("bias_") else []), name
    assert layer.bias_ih_l0.dtype == F64
    set_forget_bias_(layer, -1.5)  # in place on a gated layer
    assert naive_memory_gate_biases(layer) == [(-1.5, 0.0)] * (2 * 2 * 4)
    no_bias = nn.LSTM(2, 3, bias=False)
    set_forget_bias_(no_bias, 3.0)  # nothing to set
    assert [name for name, _ in no_bias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    for bad in (math.nan, math.inf, "3", True):
        with pytest.raises(ValueError, match="forget_bias must be a finite number"):
            swap_rnn_(SequenceModel(nn.RNN(2, 3), 1), to, forget_bias=bad)


@pytest.mark.parametrize("remedy", [
    lambda m: recurrent_weights(m),
    lambda m: recurrent_penalty("spectral")(m, None, None),
    lambda m: constrain_spectral_norm_(m),
    lambda m: orthogonal_recurrent_init_(m),
    lambda m: SpectralConstraint().attach(m, torch.optim.SGD(m.parameters(), lr=0.1)),
    lambda m: swap_rnn_(m),
])
def test_remedies_reject_models_without_recurrent_layers(remedy):
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    with pytest.raises(ValueError, match=r"no nn.RNN/LSTM/GRU or graddoctor recurrent module found in Sequential: "):
        remedy(model)
