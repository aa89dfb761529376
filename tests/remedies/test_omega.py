"""Pascanu's vanishing-gradient regulariser Omega against a brute-force Jacobian loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from graddoctor.problem import Problem, train_step
from graddoctor.remedies.recurrent import ElmanRNN, LeakyRNN, SequenceModel, recurrent_penalty
from graddoctor.remedies.recurrent.omega import omega_step, vanishing_gradient_regularizer

from ..conftest import randn

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")
TIGHT = {"rtol": 1e-10, "atol": 1e-12}
FUNCTIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


# ---------------------------------------------------------------- naive references


def naive_states(w_hh, w_ih, bias, x, f, leak=None):
    """h_0..h_T and a_1..a_T of one sequence x [T, I], by a plain loop on vectors."""
    h, states, pres = torch.zeros(w_hh.shape[0], dtype=F64), [], []
    states.append(h)
    for t in range(x.shape[0]):
        a = w_ih @ x[t] + w_hh @ h + bias
        h = f(a) if leak is None else leak * h + (1 - leak) * f(a)
        states.append(h)
        pres.append(a)
    return states, pres


def naive_error_signals(model, head, x, y):
    """dE/dh_t for E = mean((head(h_t) - y_t)^2), by the backward recursion over explicit Jacobians."""
    batch, steps, _ = x.shape
    f = FUNCTIONS[model.nonlinearity]
    leak = getattr(model, "leak", None)
    w_hh, w_ih, bias = model.weight_hh.detach(), model.weight_ih.detach(), model.bias.detach()
    w_out, b_out = head.weight.detach(), head.bias.detach()
    grads = torch.zeros(steps, batch, model.hidden_size, dtype=F64)
    count = batch * steps * y.shape[-1]
    for b in range(batch):
        states, _ = naive_states(w_hh, w_ih, bias, x[b], f, leak)
        carried = torch.zeros(model.hidden_size, dtype=F64)
        for t in range(steps, 0, -1):
            direct = 2.0 / count * (w_out @ states[t] + b_out - y[b, t - 1]) @ w_out
            if t < steps:
                def step(h, t=t, b=b):
                    value = f(w_ih @ x[b, t] + w_hh @ h + bias)
                    return value if leak is None else leak * h + (1 - leak) * value
                carried = grads[t, b] @ jacobian(step, states[t])
            grads[t - 1, b] = direct + carried
    return grads


def brute_omega(w_hh, w_ih, bias, x, grads, nonlinearity, leak=None, form="hidden", through=False):
    """Omega = mean_b sum_k (||g J_k|| / ||g|| - 1)^2, one sample and one step at a time."""
    f = FUNCTIONS[nonlinearity]
    batch, steps, _ = x.shape
    total = torch.zeros((), dtype=F64)
    for b in range(batch):
        states, pres = naive_states(w_hh, w_ih, bias, x[b], f, leak)
        for k in range(steps) if form == "hidden" else range(1, steps):
            g = grads[k, b]
            if form == "hidden":  # J = dh_{k+1}/dh_k, row vector g_{k+1} J
                def step(h, k=k, b=b):
                    value = f(w_ih @ x[b, k] + w_hh @ h + bias)
                    return value if leak is None else leak * h + (1 - leak) * value
                full = jacobian(step, states[k], create_graph=True)
                slope = jacobian(f, pres[k]).diagonal().detach()
                by_hand = (torch.diag(slope) @ w_hh) if leak is None else (
                    torch.diag(leak) + torch.diag((1 - leak) * slope) @ w_hh)
                torch.testing.assert_close(full.detach(), by_hand.detach(), **TIGHT)
                signal = g
            else:  # the paper's state x_k = a_k: J = da_{k+1}/da_k = W diag(f'(a_k))
                def step(a, k=k, b=b):
                    return w_ih @ x[b, k] + w_hh @ f(a) + bias
                full = jacobian(step, pres[k - 1], create_graph=True)
                slope = jacobian(f, pres[k - 1]).diagonal().detach()
                by_hand = w_hh @ torch.diag(slope)
                signal = (g @ jacobian(f, pres[k])).detach()  # dE/da_{k+1}
            jac = full if through else by_hand
            if float(signal.norm()) == 0.0:
                continue
            ratio = (signal @ jac).norm() / signal.norm()
            total = total + (ratio - 1) ** 2
    return total / batch


def leaves(model):
    return [p.detach().clone().requires_grad_() for p in (model.weight_hh, model.weight_ih, model.bias)]


# ---------------------------------------------------------------- the regulariser


def make(nonlinearity="tanh", leaky=False, seed=0):
    torch.manual_seed(seed)
    if leaky:
        core = LeakyRNN(2, 4, nonlinearity, leak_range=(0.1, 0.5), dtype=F64)
    else:
        core = ElmanRNN(2, 4, nonlinearity, dtype=F64)
    with torch.no_grad():
        core.weight_hh.mul_(2.0)
        core.weight_ih.mul_(2.0)
    return SequenceModel(core, 1, readout="all")


CASES = [("tanh", False, "hidden"), ("sigmoid", False, "hidden"), ("tanh", True, "hidden"),
         ("tanh", False, "preactivation"), ("sigmoid", False, "preactivation")]


@pytest.mark.parametrize("through", [False, True])
@pytest.mark.parametrize("nonlinearity,leaky,form", CASES)
def test_omega_value_and_gradient_match_brute_force(nonlinearity, leaky, form, through):
    model = make(nonlinearity, leaky)
    core = model.rnn
    x, y = randn(3, 5, 2, seed=1), randn(3, 5, 1, seed=2)
    grads = naive_error_signals(core, model.head, x, y)
    _, _, trace = core(x, return_trace=True)
    # the error signals are what autograd gives for the task loss
    loss = nn.MSELoss()(model.head(torch.stack(trace.hidden_states[1:], 1)), y)
    auto = torch.autograd.grad(loss, trace.hidden_states[1:], retain_graph=True)
    torch.testing.assert_close(torch.stack(auto), grads, **TIGHT)

    omega = vanishing_gradient_regularizer(trace, list(grads), form, differentiate_activations=through)
    w_hh, w_ih, bias = leaves(core)
    leak = core.leak if leaky else None
    expected = brute_omega(w_hh, w_ih, bias, x, grads, nonlinearity, leak, form, through)
    torch.testing.assert_close(omega, expected, **TIGHT)
    assert float(omega.detach()) > 1e-3 and omega.dtype == F64

    got = torch.autograd.grad(omega, [core.weight_hh, core.weight_ih, core.bias], allow_unused=True)
    want = torch.autograd.grad(expected, [w_hh, w_ih, bias], allow_unused=True)
    for name, g, w in zip(("weight_hh", "weight_ih", "bias"), got, want):
        g = torch.zeros_like(core.bias if name == "bias" else core.weight_hh if name == "weight_hh"
                             else core.weight_ih) if g is None else g
        w = torch.zeros_like(g) if w is None else w
        torch.testing.assert_close(g, w, **TIGHT, msg=name)
    if not through:  # the paper's immediate derivative: only the explicit W_hh
        assert torch.count_nonzero(got[1] if got[1] is not None else torch.zeros(1)) == 0
    else:
        assert torch.count_nonzero(got[1]) > 0


def test_omega_skips_steps_without_error_signal():
    model = make()
    x = randn(2, 4, 2, seed=3)
    _, _, trace = model.rnn(x, return_trace=True)
    grads = randn(4, 2, 4, seed=4)
    grads[1] = 0.0
    omega = vanishing_gradient_regularizer(trace, [grads[0], None, grads[2], grads[3]])
    w_hh, w_ih, bias = leaves(model.rnn)
    torch.testing.assert_close(omega, brute_omega(w_hh, w_ih, bias, x, grads, "tanh"), **TIGHT)
    with pytest.raises(ValueError, match="one gradient per time step"):
        vanishing_gradient_regularizer(trace, list(grads[:3]))
    with pytest.raises(ValueError, match="form"):
        vanishing_gradient_regularizer(trace, list(grads), form="output")
    _, _, leaky_trace = make(leaky=True).rnn(x, return_trace=True)
    with pytest.raises(ValueError, match="form='hidden'"):
        vanishing_gradient_regularizer(leaky_trace, list(grads), form="preactivation")


# ---------------------------------------------------------------- omega_step


def test_omega_step_updates_by_task_plus_omega_gradient():
    model = make(seed=5)
    core = model.rnn
    x, y = randn(3, 6, 2, seed=6), randn(3, 6, 1, seed=7)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # brute-force gradient of E + 0.7 Omega + 0.01 ||W_hh||^2
    twin = make(seed=5)
    task = nn.MSELoss()(twin(x), y)
    task_grads = dict(zip([n for n, _ in twin.named_parameters()], torch.autograd.grad(task, list(twin.parameters()))))
    grads = naive_error_signals(core, model.head, x, y)
    w_hh, w_ih, bias = leaves(core)
    omega_grad = torch.autograd.grad(brute_omega(w_hh, w_ih, bias, x, grads, "tanh"), w_hh)[0]
    expected = dict(task_grads)
    expected["rnn.weight_hh"] = task_grads["rnn.weight_hh"] + 0.7 * omega_grad + 0.02 * before["rnn.weight_hh"]

    problem = Problem(model, [(x, y)], nn.MSELoss(), optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
                      penalties=(recurrent_penalty("l2", strength=0.01),), step_fn=omega_step(0.7))
    loss = train_step(problem, model, problem.make_optimizer(), (x, y))
    for name, parameter in model.named_parameters():
        step = (before[name] - parameter.detach()) / 0.5
        torch.testing.assert_close(step, expected[name], **TIGHT, msg=name)
    assert loss.dtype == F64 and float(loss) > float(task.detach())


def test_omega_step_zero_strength_is_a_plain_step_and_errors():
    model, twin = make(seed=8), make(seed=8)
    x, y = randn(2, 5, 2, seed=9), randn(2, 5, 1, seed=10)
    opt = lambda p: torch.optim.SGD(p, lr=0.3)  # noqa: E731
    plain = Problem(twin, [(x, y)], nn.MSELoss(), optimizer=opt)
    train_step(plain, twin, plain.make_optimizer(), (x, y))
    regularised = plain.replace(model=model, step_fn=omega_step(0.0))
    train_step(regularised, model, regularised.make_optimizer(), (x, y))
    for got, want in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(got, want, **TIGHT)
    torch_rnn = SequenceModel(nn.RNN(2, 4, batch_first=True), 1, readout="all")
    bad = Problem(torch_rnn, [(x.float(), y.float())], nn.MSELoss(), step_fn=omega_step())
    with pytest.raises(ValueError, match="no nn.RNN/LSTM/GRU or graddoctor recurrent module found in SequenceModel"):
        train_step(bad, torch_rnn, bad.make_optimizer(), (x.float(), y.float()))
    with pytest.raises(ValueError, match="strength"):
        omega_step(-1.0)


def test_omega_training_pulls_the_ratios_towards_one():
    torch.manual_seed(11)
    core = ElmanRNN(2, 8, dtype=F64)
    with torch.no_grad():
        core.weight_hh.mul_(0.2)  # strongly contracting: gradients vanish
    model = SequenceModel(core, 1, readout="last")
    x, y = randn(8, 12, 2, seed=12), randn(8, 1, seed=13)

    def omega_now():
        _, _, trace = core(x, return_trace=True)
        loss = nn.MSELoss()(model.head(trace.hidden_states[-1]), y)
        grads = torch.autograd.grad(loss, trace.hidden_states[1:], allow_unused=True)
        return float(vanishing_gradient_regularizer(trace, list(grads)).detach())

    start, sigma_start = omega_now(), float(torch.linalg.svdvals(core.weight_hh.detach())[0])
    problem = Problem(model, [(x, y)], nn.MSELoss(), optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
                      step_fn=omega_step(1.0))
    optimizer = problem.make_optimizer()
    for _ in range(15):
        train_step(problem, model, optimizer, (x, y))
    assert omega_now() < 0.5 * start
    # norm preservation needs a larger W_hh: Omega undoes the contraction
    assert float(torch.linalg.svdvals(core.weight_hh.detach())[0]) > 2 * sigma_start
