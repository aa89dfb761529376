"""Closures (LBFGS), wrapped optimizers, hand-written updates, two optimizers, gradient accumulation.

The training loops are minimal, faithful copies of pytorch/examples
(``time_sequence_prediction``: LBFGS with a closure; ``word_language_model``: clipping then
``p.data.add_(p.grad, alpha=-lr)``; ``regression``: ``param.data.add_(-0.1 * param.grad)``),
of DCGAN's two optimizers and of nanoGPT's gradient accumulation. Each script records
the truth by hand (plain loops over ``model.parameters()``) and the run must equal it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run
from graddoctor.integrations.zero_code import run_instrumented

from .. import reference
from .test_run_command import restored, write_script  # noqa: F401  (restored: a fixture)

RTOL = 1e-5

# plain-loop truth the scripts record: per-parameter L2 norms of the gradients / updates
TRUTH = """
    def norms(tensors):
        return [float(sum(float(v) ** 2 for v in t.detach().double().flatten()) ** 0.5) for t in tensors]
"""


def run_json(path):
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- LBFGS, closure
class Sequence(nn.Module):
    """time_sequence_prediction's model (two LSTMCells and a Linear), smaller."""

    def __init__(self, hidden: int = 6) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm1 = nn.LSTMCell(1, hidden)
        self.lstm2 = nn.LSTMCell(hidden, hidden)
        self.linear = nn.Linear(hidden, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), self.hidden, dtype=input.dtype)
        c_t = torch.zeros(input.size(0), self.hidden, dtype=input.dtype)
        h_t2 = torch.zeros(input.size(0), self.hidden, dtype=input.dtype)
        c_t2 = torch.zeros(input.size(0), self.hidden, dtype=input.dtype)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


def sine_data():
    generator = torch.Generator().manual_seed(2)
    shift = torch.randint(-8, 8, (5, 1), generator=generator)
    data = torch.sin((torch.arange(12).view(1, -1) + shift) / 4.0).double()
    return data[1:, :-1], data[1:, 1:]


def test_monitor_lbfgs_closure_measures_each_step_at_its_start(tmp_path):
    torch.manual_seed(0)
    seq = Sequence().double()
    criterion = nn.MSELoss()
    optimizer = torch.optim.LBFGS(seq.parameters(), lr=0.8, max_iter=4)
    inputs, target = sine_data()
    named = list(seq.named_parameters())
    grads, weights, losses = [], [], []
    with Monitor(seq, optimizer, path=tmp_path / "lbfgs.gdr", activations_every=1) as mon:
        for _ in range(3):
            calls: list[float] = []

            def closure(calls=calls):
                optimizer.zero_grad()
                out = seq(inputs)
                loss = criterion(out, target)
                loss.backward()
                if not calls:  # the step's gradient: at the weights it starts from
                    grads.append(reference.grad_stats(named))
                calls.append(loss.item())
                return loss

            before = reference.weight_copies(named)
            loss = optimizer.step(closure)
            weights.append(reference.weight_stats(named, before))
            assert len(calls) > 1  # LBFGS evaluated the closure several times
            losses.append(calls[0])
            mon.log(loss=loss)
    with open_run(tmp_path / "lbfgs.gdr") as run:
        for stat, truth in (("grad_norm", grads), ("grad_max", grads), ("update_norm", weights)):
            steps, names, values = run.series(stat)
            assert list(steps) == [0, 1, 2]
            expected = [[row[name][stat] for name in names] for row in truth]
            np.testing.assert_allclose(values, expected, rtol=RTOL, err_msg=stat)
        np.testing.assert_allclose(run.scalars("loss")[1], losses, rtol=1e-6)
        # activations of the first closure call only, in every step
        assert not np.isnan(run.series("act_std")[2]).any()


LBFGS_SCRIPT = (
    TRUTH
    + """
    class Sequence(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm1 = nn.LSTMCell(1, 6)
            self.lstm2 = nn.LSTMCell(6, 6)
            self.linear = nn.Linear(6, 1)

        def forward(self, input):
            outputs = []
            h_t = c_t = h_t2 = c_t2 = torch.zeros(input.size(0), 6, dtype=torch.double)
            for input_t in input.split(1, dim=1):
                h_t, c_t = self.lstm1(input_t, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                outputs += [self.linear(h_t2)]
            return torch.cat(outputs, dim=1)

    torch.manual_seed(0)
    data = torch.sin((torch.arange(12).view(1, -1) + torch.arange(5).view(-1, 1)) / 4.0).double()
    input, target = data[1:, :-1], data[1:, 1:]
    seq = Sequence().double()
    criterion = nn.MSELoss()
    optimizer = torch.optim.LBFGS(seq.parameters(), lr=0.8, max_iter=4)
    record = {"grad_norms": [], "update_norms": [], "losses": []}
    for i in range(3):
        calls = []
        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            loss.backward()
            if not calls:
                record["grad_norms"].append(norms(p.grad for p in seq.parameters()))
            calls.append(1)
            return loss
        before = [p.detach().clone() for p in seq.parameters()]
        record["losses"].append(optimizer.step(closure).item())
        record["update_norms"].append(norms(p - b for p, b in zip(seq.parameters(), before)))
        with torch.no_grad():
            pred = seq(input)
    json.dump(record, open(sys.argv[1], "w"))
"""
)


@pytest.mark.usefixtures("restored")
def test_graddoctor_run_lbfgs_finds_the_model_and_measures_step_zero(tmp_path):
    script = write_script(tmp_path, LBFGS_SCRIPT)
    result = run_instrumented(
        script, [str(tmp_path / "truth.json")], tmp_path / "runs", activations_every=1
    )
    assert result.exit_code == 0, result.traceback
    truth = run_json(tmp_path / "truth.json")
    (path,) = result.run_paths
    with open_run(path) as run:
        assert (
            run.meta["config"]["model_found"] == "root module"
            and run.meta["model"]["type"] == "Sequence"
        )
        assert run.names("parameters")[0] == "lstm1.weight_ih"
        np.testing.assert_allclose(run.series("grad_norm")[2], truth["grad_norms"], rtol=RTOL)
        np.testing.assert_allclose(run.series("update_norm")[2], truth["update_norms"], rtol=RTOL)
        np.testing.assert_allclose(run.scalars("loss")[1], truth["losses"], rtol=1e-6)


# ----------------------------------------------------------------------------- wrapped optimizers
class Lookahead(torch.optim.Optimizer):
    """A wrapper that is an Optimizer and steps the one it wraps (as timm's Lookahead)."""

    def __init__(self, base: torch.optim.Optimizer) -> None:
        self.base = base
        super().__init__(base.param_groups, base.defaults)
        self.param_groups = base.param_groups

    @torch.no_grad()
    def step(self, closure=None):
        return self.base.step(closure)


class Forwarding:
    """A wrapper that is not initialised as an Optimizer (as accelerate's AcceleratedOptimizer)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self, closure=None):
        return self.optimizer.step(closure)


@pytest.mark.parametrize("wrap", [Lookahead, Forwarding])
def test_monitor_follows_a_wrapped_optimizer(tmp_path, wrap):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = wrap(torch.optim.SGD(model.parameters(), lr=0.1))
    named = list(model.named_parameters())
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    grads, weights = [], []
    with Monitor(model, optimizer, path=tmp_path / "w.gdr") as mon:
        for _ in range(3):
            optimizer.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            grads.append(reference.grad_stats(named))
            before = reference.weight_copies(named)
            optimizer.step()
            weights.append(reference.weight_stats(named, before))
            mon.log(loss=loss)
    with open_run(tmp_path / "w.gdr") as run:
        for stat, truth in (("grad_norm", grads), ("update_norm", weights)):
            steps, names, values = run.series(stat)
            assert list(steps) == [0, 1, 2]
            np.testing.assert_allclose(
                values, [[row[n][stat] for n in names] for row in truth], rtol=RTOL
            )


WRAPPED_SCRIPT = """
    class Lookahead(torch.optim.Optimizer):
        def __init__(self, base):
            self.base = base
            super().__init__(base.param_groups, base.defaults)
            self.param_groups = base.param_groups

        @torch.no_grad()
        def step(self, closure=None):
            return self.base.step(closure)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = Lookahead(torch.optim.Adam(model.parameters(), lr=0.01))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for step in range(3):
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()
"""


@pytest.mark.usefixtures("restored")
def test_graddoctor_run_wrapped_optimizer_gives_one_run(tmp_path):
    result = run_instrumented(write_script(tmp_path, WRAPPED_SCRIPT), [], tmp_path / "runs")
    assert result.exit_code == 0, result.traceback
    (path,) = result.run_paths
    with open_run(path) as run:
        assert (
            run.meta["config"]["optimizer"] == "Lookahead"
            and run.meta["model"]["type"] == "Sequential"
        )
        assert list(run.steps("grad_norm")) == [0, 1, 2]


# ----------------------------------------------------------------------------- updates by hand
WORD_LANGUAGE_MODEL_SCRIPT = (
    TRUTH
    + """
    import torch.nn.functional as F

    class RNNModel(nn.Module):
        def __init__(self, ntoken, ninp, nhid, nlayers):
            super().__init__()
            self.drop = nn.Dropout(0.2)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=0.2)
            self.decoder = nn.Linear(nhid, ntoken)
            self.nhid, self.nlayers = nhid, nlayers

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            decoded = self.decoder(output).view(-1, self.decoder.out_features)
            return F.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))

    def repackage_hidden(h):
        if isinstance(h, torch.Tensor):
            return h.detach()
        return tuple(repackage_hidden(v) for v in h)

    torch.manual_seed(0)
    ntokens, bptt, batch_size, lr, clip = 30, 5, 4, 20.0, 0.25
    train_data = torch.randint(0, ntokens, (41, batch_size))
    model = RNNModel(ntokens, 8, 8, 2)
    criterion = nn.NLLLoss()
    record = {"grad_norms": [], "update_norms": [], "losses": []}

    def get_batch(source, i):
        seq_len = min(bptt, len(source) - 1 - i)
        return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)

    def evaluate(data_source):
        model.eval()
        hidden = model.init_hidden(batch_size)
        with torch.no_grad():
            for i in range(0, data_source.size(0) - 1, bptt):
                data, targets = get_batch(data_source, i)
                output, hidden = model(data, hidden)
                hidden = repackage_hidden(hidden)

    def train():
        model.train()
        hidden = model.init_hidden(batch_size)
        for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
            data, targets = get_batch(train_data, i)
            model.zero_grad()
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            record["grad_norms"].append(norms(p.grad for p in model.parameters()))
            before = [p.detach().clone() for p in model.parameters()]
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            record["update_norms"].append(norms(p - b for p, b in zip(model.parameters(), before)))
            record["losses"].append(loss.item())

    for epoch in range(2):
        train()
        evaluate(train_data)
    json.dump(record, open(sys.argv[1], "w"))
"""
)

REGRESSION_SCRIPT = (
    TRUTH
    + """
    import torch.nn.functional as F
    from itertools import count

    POLY_DEGREE = 4
    torch.manual_seed(0)
    W_target = torch.randn(POLY_DEGREE, 1) * 5
    b_target = torch.randn(1) * 5

    def make_features(x):
        x = x.unsqueeze(1)
        return torch.cat([x ** i for i in range(1, POLY_DEGREE + 1)], 1)

    def f(x):
        return x.mm(W_target) + b_target.item()

    def get_batch(batch_size=32):
        random = torch.randn(batch_size)
        x = make_features(random)
        return x, f(x)

    fc = torch.nn.Linear(W_target.size(0), 1)
    record = {"grad_norms": [], "update_norms": [], "losses": []}
    for batch_idx in count(1):
        batch_x, batch_y = get_batch()
        fc.zero_grad()
        output = F.smooth_l1_loss(fc(batch_x), batch_y)
        loss = output.item()
        output.backward()
        record["grad_norms"].append(norms(p.grad for p in fc.parameters()))
        before = [p.detach().clone() for p in fc.parameters()]
        for param in fc.parameters():
            param.data.add_(-0.1 * param.grad)
        record["update_norms"].append(norms(p - b for p, b in zip(fc.parameters(), before)))
        record["losses"].append(loss)
        if loss < 1e-3 or batch_idx == 12:
            break
    json.dump(record, open(sys.argv[1], "w"))
"""
)


@pytest.mark.parametrize(
    "body, model_type, first",
    [
        (WORD_LANGUAGE_MODEL_SCRIPT, "RNNModel", "encoder.weight"),
        (REGRESSION_SCRIPT, "Linear", "weight"),
    ],
    ids=["word_language_model", "regression"],
)
@pytest.mark.usefixtures("restored")
def test_graddoctor_run_records_updates_by_hand_with_backward_as_the_step(
    tmp_path,
    body,
    model_type,
    first,
):
    result = run_instrumented(
        write_script(tmp_path, body),
        [str(tmp_path / "truth.json")],
        tmp_path / "runs",
        activations_every=2,
    )
    assert result.exit_code == 0, result.traceback
    truth = run_json(tmp_path / "truth.json")
    (path,) = result.run_paths
    assert path.name.endswith("-backward.gdr")
    with open_run(path) as run:
        assert (
            run.meta["config"]["step"] == "backward()" and run.meta["model"]["type"] == model_type
        )
        assert run.names("parameters")[0] == first
        steps, _, grad_norm = run.series("grad_norm")
        assert list(steps) == list(range(len(truth["losses"])))
        np.testing.assert_allclose(grad_norm, truth["grad_norms"], rtol=RTOL)  # before clipping
        np.testing.assert_allclose(
            run.series("update_norm")[2], truth["update_norms"], rtol=RTOL, atol=1e-12
        )
        np.testing.assert_allclose(run.scalars("loss")[1], truth["losses"], rtol=1e-6)
        act_steps, _, act_std = run.series("act_std")
        assert list(act_steps) == [s for s in steps if s > 0 and s % 2 == 0]
        assert np.isfinite(act_std[:, 0]).all()  # the first module ran in every recorded step


@pytest.mark.usefixtures("restored")
def test_backward_run_is_dropped_when_an_optimizer_steps(tmp_path):
    script = write_script(
        tmp_path,
        """
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            optimizer.zero_grad()
            for micro in range(2):
                (model(torch.randn(4, 3)) ** 2).mean().backward()
            optimizer.step()
    """,
    )
    result = run_instrumented(script, [], tmp_path / "runs")
    assert [p.name.rsplit("-", 1)[1] for p in result.run_paths] == ["opt0.gdr"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [result.run_paths[0].name]


# ----------------------------------------------------------------------------- two optimizers
class GAN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))
        self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))

    def forward(self, z):
        return self.discriminator(self.generator(z))


def test_monitor_records_its_optimizers_parameters_only(tmp_path):
    torch.manual_seed(0)
    gan = GAN()
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=0.01)
    opt_d = torch.optim.SGD(gan.discriminator.parameters(), lr=0.1)
    g_named = [(f"generator.{n}", p) for n, p in gan.generator.named_parameters()]
    d_named = [(f"discriminator.{n}", p) for n, p in gan.discriminator.named_parameters()]
    truth = {"g": [], "d": []}
    with (
        Monitor(gan, opt_g, path=tmp_path / "g.gdr") as mon_g,
        Monitor(gan, opt_d, path=tmp_path / "d.gdr") as mon_d,
    ):
        for _ in range(3):
            z, real = torch.randn(8, 3), torch.randn(8, 4)
            opt_d.zero_grad()
            d_loss = (gan.discriminator(real) - 1).pow(2).mean() + gan.discriminator(
                gan.generator(z).detach()
            ).pow(2).mean()
            d_loss.backward()
            truth["d"].append(reference.grad_stats(d_named))
            opt_d.step()
            mon_d.log(loss=d_loss)
            opt_g.zero_grad()
            g_loss = (gan(z) - 1).pow(2).mean()
            g_loss.backward()
            truth["g"].append(reference.grad_stats(g_named))
            opt_g.step()
            mon_g.log(loss=g_loss)
    for key, named in (("g", g_named), ("d", d_named)):
        with open_run(tmp_path / f"{key}.gdr") as run:
            assert run.names("parameters") == [n for n, _ in named]
            other = "discriminator" if key == "g" else "generator"
            assert all(n.startswith(other) for n in run.meta["unmonitored_parameters"])
            _, names, values = run.series("grad_norm")
            np.testing.assert_allclose(
                values, [[row[n]["grad_norm"] for n in names] for row in truth[key]], rtol=RTOL
            )


DCGAN_SCRIPT = (
    TRUTH
    + """
    class GAN(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))
            self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1), nn.Sigmoid())

        def forward(self, x, generate=False):
            return self.generator(x) if generate else self.discriminator(x)

    torch.manual_seed(0)
    net = GAN()  # one module, two optimizers: each run records its own parameters
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(net.discriminator.parameters(), lr=0.01, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(net.generator.parameters(), lr=0.01, betas=(0.5, 0.999))
    record = {"d_losses": [], "g_losses": [], "d_grads": [], "g_grads": []}
    for i in range(3):
        real = torch.randn(8, 4) + 2
        net.zero_grad()
        label = torch.full((8, 1), 1.0)
        errD_real = criterion(net(real), label)
        errD_real.backward()
        fake = net(torch.randn(8, 3), generate=True)
        label.fill_(0.0)
        errD_fake = criterion(net(fake.detach()), label)
        errD_fake.backward()
        errD = errD_real + errD_fake
        record["d_grads"].append(norms(p.grad for p in net.discriminator.parameters()))
        optimizerD.step()
        net.generator.zero_grad()
        label.fill_(1.0)
        errG = criterion(net(fake), label)
        errG.backward()
        record["g_grads"].append(norms(p.grad for p in net.generator.parameters()))
        optimizerG.step()
        record["d_losses"].append(errD.item()); record["g_losses"].append(errG.item())
    json.dump(record, open(sys.argv[1], "w"))
"""
)


@pytest.mark.usefixtures("restored")
def test_graddoctor_run_gan_two_optimizers_own_parameters_and_losses(tmp_path):
    result = run_instrumented(
        write_script(tmp_path, DCGAN_SCRIPT), [str(tmp_path / "truth.json")], tmp_path / "runs"
    )
    assert result.exit_code == 0, result.traceback
    truth = run_json(tmp_path / "truth.json")
    d_path, g_path = result.run_paths
    for path, part, key in ((d_path, "discriminator", "d"), (g_path, "generator", "g")):
        with open_run(path) as run:
            names = run.names("parameters")
            assert names and all(n.startswith(part + ".") for n in names)
            np.testing.assert_allclose(run.series("grad_norm")[2], truth[f"{key}_grads"], rtol=RTOL)
            # the discriminator's loss is errD_real + errD_fake: both backpropagated before its step
            np.testing.assert_allclose(run.scalars("loss")[1], truth[f"{key}_losses"], rtol=1e-6)


# ----------------------------------------------------------------------------- accumulation
ACCUMULATION_SCRIPT = """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    gradient_accumulation_steps = 4
    step_losses = []
    for iter_num in range(3):
        micro_losses = []
        for micro_step in range(gradient_accumulation_steps):
            X, Y = torch.randn(8, 4), torch.randn(8, 1)
            loss = ((model(X) - Y) ** 2).mean()
            micro_losses.append(loss.item())
            loss = loss / gradient_accumulation_steps
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_losses.append(sum(micro_losses) / len(micro_losses))
    json.dump(step_losses, open(sys.argv[1], "w"))
"""


@pytest.mark.usefixtures("restored")
def test_graddoctor_run_accumulated_step_loss_is_the_mean_of_micro_batches(tmp_path):
    result = run_instrumented(
        write_script(tmp_path, ACCUMULATION_SCRIPT),
        [str(tmp_path / "truth.json")],
        tmp_path / "runs",
    )
    assert result.exit_code == 0, result.traceback
    with open_run(result.run_paths[0]) as run:
        np.testing.assert_allclose(
            run.scalars("loss")[1], run_json(tmp_path / "truth.json"), rtol=1e-6
        )
