"""The statistics are declared once (probes.statistics) and every row is addressed by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from graddoctor import Monitor, open_run
from graddoctor.monitor._pending import PendingWriter
from graddoctor.monitor.amp import unscale_
from graddoctor.monitor.distributed import Layout, reduce_parameter_stats
from graddoctor.probes._stat_block import StatBlock
from graddoctor.probes.parameters import ParameterProbe
from graddoctor.probes.statistics import (
    ACTIVATION_STATS,
    BY_NAME,
    GRAD_STATS,
    LOSS_SCALED_STATS,
    MODULES,
    PARAMETER_STATS,
    PARAMETERS,
    REDUCTIONS,
    STATISTICS,
    TIME,
    Statistic,
    time_stat_name,
)

from .. import reference
from ..models import FAMILIES


def test_declaration_is_consistent():
    names = [s.name for s in STATISTICS]
    assert len(names) == len(set(names))
    assert PARAMETER_STATS == tuple(s.name for s in STATISTICS if s.group == PARAMETERS)
    assert ACTIVATION_STATS == tuple(s.name for s in STATISTICS if s.group == MODULES)
    for stat in STATISTICS:
        assert stat.reduction in REDUCTIONS
        if stat.group == PARAMETERS:  # every parameter statistic combines over shards
            assert stat.reduction != "local", stat
        if stat.ratio_of is not None:
            assert all(BY_NAME[part].group == stat.group for part in stat.ratio_of)
    with pytest.raises(ValueError, match="ratio_of"):
        Statistic("x", PARAMETERS, "sum", ratio_of=("a", "b"))


def test_recorded_statistics_are_the_declared_ones(tmp_path):
    model, x, y, loss_fn = FAMILIES["lstm"]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, optimizer, path=tmp_path / "r.gdr", activations_every=1) as mon:
        for _ in range(2):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            mon.log(loss=loss)
    recorded = set(open_run(tmp_path / "r.gdr").stat_names())
    time_stats = {s.name for s in STATISTICS if s.group == TIME}
    declared = {s.name for s in STATISTICS if s.group != TIME}
    assert recorded == declared | {time_stat_name("lstm")}
    assert {name.split(":")[0] for name in recorded} == declared | time_stats


def test_probe_rows_are_named():
    model, x, y, loss_fn = FAMILIES["mlp"]()
    loss_fn(model(x), y).backward()
    named = list(model.named_parameters())
    block = ParameterProbe([p for _, p in named]).measure_grads()
    assert block.names == GRAD_STATS
    want = reference.grad_stats(named)
    for stat in GRAD_STATS:
        expected = [want[name][stat] for name, _ in named]
        np.testing.assert_allclose(block[stat].cpu().numpy(), expected, rtol=1e-5, atol=1e-7)


def test_amp_unscales_exactly_the_declared_rows():
    assert set(LOSS_SCALED_STATS) == {"grad_norm", "grad_max"}
    block = StatBlock.filled(PARAMETER_STATS, 3, 8.0, torch.device("cpu"))
    unscale_(block, torch.tensor(4.0))
    changed = {
        name for name, row in block.rows().items() if not torch.equal(row, torch.full((3,), 8.0))
    }
    assert changed == set(LOSS_SCALED_STATS)
    assert all(torch.equal(block[name], torch.full((3,), 2.0)) for name in LOSS_SCALED_STATS)


class _Capture:
    """A run writer that remembers what it was given."""

    def __init__(self) -> None:
        self.stats: dict[str, np.ndarray] = {}

    def add_stat(self, step, name, row):
        self.stats[name] = np.array(row)

    def commit(self):
        pass


def test_flush_writes_each_row_under_its_name(tmp_path):
    pending = PendingWriter(tmp_path / "unused.gdr", recording=False)
    pending.writer = capture = _Capture()
    names = list(reversed(PARAMETER_STATS))  # any order: rows travel with their names
    values = torch.arange(len(names) * 2, dtype=torch.float32).reshape(len(names), 2)
    pending.recording = True
    pending.add_step(0, StatBlock(names, values), None, {}, [])
    pending.flush()
    for i, name in enumerate(names):
        np.testing.assert_array_equal(capture.stats[name], values[i].numpy())


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_sharded_reduction_follows_the_declared_rules(one_process_group):
    torch.manual_seed(0)
    local = {name: torch.rand(4) + 0.5 for name in PARAMETER_STATS}
    local["grad_nonfinite"] = torch.tensor([0.0, 2.0, 0.0, 1.0])
    layout = Layout("sharded", 0, 1, copies=[1.0] * 4)
    present = [True, True, False, True]
    forward = reduce_parameter_stats(StatBlock.from_rows(local), present, layout)
    backward = reduce_parameter_stats(
        StatBlock.from_rows(dict(reversed(local.items()))), present, layout
    )
    for name in PARAMETER_STATS:  # the order of the rows does not matter, only their names
        torch.testing.assert_close(forward[name], backward[name], equal_nan=True)
    for name in GRAD_STATS:  # a gradient statistic without a gradient anywhere is NaN
        assert torch.isnan(forward[name][2])
        torch.testing.assert_close(forward[name][[0, 1, 3]], local[name][[0, 1, 3]])
    for name in ("weight_norm", "update_norm"):
        torch.testing.assert_close(forward[name], local[name])
    torch.testing.assert_close(forward["update_ratio"], local["update_norm"] / local["weight_norm"])
