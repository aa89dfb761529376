"""Module statistics on every model shape, against the naive recorders in tests/reference.py.

Cell loops (one time value per call), the unit axis of ``act_dead`` taken from the
module's own output, modules called more than once per step (every statistic pooled
over the calls), and modules whose children run functionally (``nn.MultiheadAttention``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run
from graddoctor._module_types import module_families
from graddoctor._modules import WEIGHT_LAYER
from graddoctor.probes.activations import ACTIVATION_STATS, ActivationProbe, select_modules

from .. import reference

RTOL = 1e-5


def close(measured: float, expected: float, rtol: float = RTOL) -> bool:
    if np.isnan(expected):
        return bool(np.isnan(measured))
    return abs(measured - expected) <= rtol * max(abs(expected), 1e-3) + 1e-7


def record(model: nn.Module, x, tmp_path, modules="leaf", loss_fn=None):
    """One recorded step under a Monitor and the naive recorders; returns (run, acts, times)."""
    loss_fn = loss_fn or (lambda out: out.pow(2).sum())
    chosen = (
        reference.monitored_modules(model)
        if modules == "leaf"
        else dict(select_modules(model, modules))
    )
    recurrent = {
        n: m for n, m in chosen.items() if isinstance(m, (nn.RNNBase, nn.RNNCellBase, Elman))
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    path = tmp_path / "run.gdr"
    with Monitor(model, optimizer, path=path, activations_every=1, modules=modules) as mon:
        acts = reference.NaiveActivationRecorder(chosen, watch=model if modules == "leaf" else None)
        times = reference.NaiveTimeGradRecorder(recurrent)
        optimizer.zero_grad()
        loss = loss_fn(model(x))
        loss.backward()
        optimizer.step()
        mon.log(loss=loss)
        acts.remove()
        times.remove()
    assert_no_hooks(model)
    return open_run(path), acts.stats(), times.stats()


def assert_no_hooks(model: nn.Module) -> None:
    for module in model.modules():
        assert (
            not module._forward_hooks
            and not module._forward_pre_hooks
            and not module._backward_hooks
        )


def recorded(run, stat: str) -> dict[str, float]:
    _, names, values = run.series(stat)
    return dict(zip(names, values[0], strict=True))


def assert_module_stats(run, expected: dict[str, dict[str, float]], names) -> None:
    for stat in ACTIVATION_STATS:
        row = recorded(run, stat)
        for name in names:
            assert close(row[name], expected[name][stat]), (
                stat,
                name,
                row[name],
                expected[name][stat],
            )


# -- 1. time_grad_norm: one value per call of a cell, per time step of a sequence ---------
class CellLoop(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.cell = cell(3, 5)
        self.head = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 5)
        state = (h, h) if isinstance(self.cell, nn.LSTMCell) else h
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return self.head(state[0] if isinstance(state, tuple) else state)


@pytest.mark.parametrize("cell", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_cell_loop_records_one_time_value_per_call(cell, tmp_path):
    torch.manual_seed(0)
    run, _, times = record(CellLoop(cell), torch.randn(4, 6, 3), tmp_path)
    steps, names, values = run.series("time_grad_norm:cell")
    assert names == [str(t) for t in range(6)]  # 6 calls; not the batch of 4
    np.testing.assert_allclose(values[0], times["cell"], rtol=RTOL)
    assert values[0, 0] < values[0, -1]  # the first step's input is furthest from the loss


class Elman(nn.Module):
    """A sequence layer with a ``weight_hh`` taking ``[B, T, I]`` or an unbatched ``[T, I]``."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.batch_first = True
        self.weight_ih = nn.Parameter(torch.randn(hidden, inputs) / inputs**0.5)
        self.weight_hh = nn.Parameter(torch.randn(hidden, hidden) / hidden**0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.unsqueeze(0) if x.dim() == 2 else x
        h, outs = batch.new_zeros(batch.shape[0], self.weight_hh.shape[0]), []
        for t in range(batch.shape[1]):
            h = torch.tanh(batch[:, t] @ self.weight_ih.T + h @ self.weight_hh.T)
            outs.append(h)
        out = torch.stack(outs, dim=1)
        return (out[0], h[0]) if x.dim() == 2 else (out, h)


class TwoChunks(nn.Module):
    """One LSTM called on two chunks of the sequence, and one unbatched Elman layer."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.elman = Elman(3, 2)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, state = self.lstm(x[:, :3])
        second, _ = self.lstm(x[:, 3:], state)
        single, _ = self.elman(x[0])  # [T, I]: an unbatched sequence
        return self.head(torch.cat([first, second], dim=1)).sum() + single.sum()


def test_sequence_module_called_twice_concatenates_calls_in_order(tmp_path):
    torch.manual_seed(1)
    run, _, times = record(TwoChunks(), torch.randn(2, 7, 3), tmp_path)
    _, names, values = run.series("time_grad_norm:lstm")
    assert names == [str(t) for t in range(7)]
    np.testing.assert_allclose(values[0], times["lstm"], rtol=RTOL)
    _, names, values = run.series("time_grad_norm:elman")
    assert names == [str(t) for t in range(7)]
    np.testing.assert_allclose(values[0], times["elman"], rtol=RTOL)


def test_cell_fed_the_same_tensor_each_step_records_each_call(tmp_path):
    """A decoder cell fed one context tensor per step: each call gets its own gradient."""

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(3, 3)
            self.cell = nn.GRUCell(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            context, h = self.embed(x), torch.zeros(x.shape[0], 4)
            outs = []
            for _ in range(5):
                h = self.cell(context, h)
                outs.append(h)
            return outs[2]  # later calls get no gradient

    torch.manual_seed(2)
    run, _, times = record(Decoder(), torch.randn(3, 3), tmp_path)
    _, names, values = run.series("time_grad_norm:cell")
    assert len(names) == 5
    np.testing.assert_allclose(values[0], times["cell"], rtol=RTOL)
    assert np.isnan(values[0, 3:]).all() and np.isfinite(values[0, :3]).all()


# -- 2. the unit axis of act_dead comes from the module's own output ----------------------
class ConvLSTM(nn.Module):
    """Conv1d stem -> LSTM -> ReLU; 12 of the 16 LSTM features are always negative."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(3, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.relu = nn.ReLU()
        self.head = nn.Linear(16, 1)
        cell_gate = slice(32, 32 + 12)  # gates i, f, g, o: the cell input g of features 0..11
        with torch.no_grad():
            self.lstm.weight_ih_l0[cell_gate] = 0.0
            self.lstm.weight_hh_l0[cell_gate] = 0.0
            self.lstm.bias_ih_l0[cell_gate] = -100.0  # g = -1: c < 0, h = o tanh(c) < 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.stem(x).transpose(1, 2))
        return self.head(self.relu(h)).mean()


@pytest.mark.parametrize("modules", ["leaf", ["stem", "relu"]])
def test_dead_units_of_lstm_features_after_a_conv_stem(modules, tmp_path):
    torch.manual_seed(3)
    run, acts, _ = record(ConvLSTM(), torch.randn(4, 3, 10), tmp_path, modules=modules)
    assert recorded(run, "act_dead")["relu"] == pytest.approx(0.75) == acts["relu"]["act_dead"]


class Channels(nn.Module):
    """Dead channels seen through a transpose, a pool, unbatched, and a channels-last Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 16, 1)
        self.t_relu = nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.p_relu = nn.ReLU()
        self.u_relu = nn.ReLU()
        self.last = nn.Linear(3, 8)
        self.l_relu = nn.ReLU()
        with torch.no_grad():
            self.conv.bias[:12] = -100.0  # channels 0..11 never fire
            self.last.bias[:2] = -100.0  # features 0, 1 never fire

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        out = self.t_relu(y.transpose(1, 2)).sum()  # [N, L, C]: units last
        out = out + self.p_relu(self.pool(y)).sum()  # [N, C, L/2]: channels through the pool
        out = out + self.u_relu(self.conv(x[0])).sum()  # unbatched [C, L]: channels first
        image = x[:, :, :9].reshape(4, 3, 3, 3).permute(0, 2, 3, 1)  # [N, H, W, 3]
        return out + self.l_relu(self.last(image)).sum()  # [N, H, W, 8]: units last


def test_dead_units_follow_the_layout_of_each_output(tmp_path):
    torch.manual_seed(4)
    run, acts, _ = record(Channels(), torch.randn(4, 3, 10), tmp_path)
    dead = recorded(run, "act_dead")
    want = {"t_relu": 0.75, "p_relu": 0.75, "u_relu": 0.75, "l_relu": 0.25}
    for name, value in want.items():
        assert dead[name] == pytest.approx(value) == acts[name]["act_dead"], name


# -- 3. a module called more than once: every statistic pooled over the calls -------------
class Shared(nn.Module):
    def __init__(self, act: nn.Module, second: int = 8) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, second)
        self.act = act
        with torch.no_grad():
            self.a.bias[:3] = -100.0  # units 0..2 dead in the first call only
            self.b.bias[1:3] = -100.0  # units 1, 2 dead in the second call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.b(self.act(self.a(x) * 3)))


@pytest.mark.parametrize(
    "act, second", [(nn.Tanh(), 8), (nn.ReLU(), 8), (nn.ReLU(), 5), (nn.Hardtanh(-0.5, 0.5), 8)]
)
def test_module_called_twice_pools_every_statistic(act, second, tmp_path):
    torch.manual_seed(5)
    model = Shared(act, second)
    run, acts, _ = record(model, torch.randn(16, 4), tmp_path)
    assert_module_stats(run, acts, ["act", "a", "b"])
    if isinstance(act, nn.ReLU):  # units 1, 2 dead in both calls (of 8), or 3 + 2 of 13
        assert recorded(run, "act_dead")["act"] == pytest.approx(2 / 8 if second == 8 else 5 / 13)


def test_pooled_std_is_exact_for_calls_far_from_zero(tmp_path):
    """Two calls of one module around 1000 with a spread of 0.01: the pooled variance
    is combined from per-call moments (Chan et al. 1979), not from E[y^2] - E[y]^2."""

    class Offsets(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Linear(4, 4)
            self.same = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.scale(x) * 0.01
            return self.same(h + 1000.0).sum() + self.same(h + 1000.02).sum()

    torch.manual_seed(6)
    run, acts, _ = record(Offsets(), torch.randn(64, 4), tmp_path)
    assert close(recorded(run, "act_std")["same"], acts["same"]["act_std"])
    assert close(recorded(run, "act_mean")["same"], acts["same"]["act_mean"])


# -- 4. modules whose children run functionally record their own output ------------------
class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x)[0])


def test_multihead_attention_records_its_output(tmp_path):
    torch.manual_seed(7)
    model = Attention()
    run, acts, _ = record(model, torch.randn(2, 5, 8), tmp_path)
    assert "attn" in run.names("modules")
    assert_module_stats(run, acts, ["attn", "head"])
    assert WEIGHT_LAYER in module_families(model.attn)
    assert [n for n, _ in select_modules(model)] == ["attn", "attn.out_proj", "head"]


def test_transformer_layer_records_self_attention(tmp_path):
    torch.manual_seed(8)
    model = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    run, acts, _ = record(model, torch.randn(2, 5, 8), tmp_path)
    assert np.isfinite(recorded(run, "act_std")["self_attn"])
    assert_module_stats(run, acts, ["self_attn", "linear1", "norm2"])
    assert "" not in run.names("modules")  # the model itself is not a module column


# -- cost: no host sync per layer, nothing left behind -----------------------------------
def test_probe_never_syncs_with_the_host_during_the_step(monkeypatch):
    torch.manual_seed(9)
    model = nn.Sequential(CellLoop(nn.GRUCell), nn.ReLU())
    probe = ActivationProbe(select_modules(model))
    probe.install()
    x = torch.randn(4, 6, 3)

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync inside the step")

    with monkeypatch.context() as patch:
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
            patch.setattr(torch.Tensor, name, forbidden)
        out = model(x)
        model[1](out).sum().backward()
        probe.remove()
        block = probe.collect(torch.device("cpu"))
        times = probe.time_gradients()
    assert block.values.shape == (len(ACTIVATION_STATS), len(probe.names))
    assert times["0.cell"].shape == (6,)
    assert_no_hooks(model)
