"""The Monitor and clip_norm_ under DDP, FSDP2 and FSDP1: 2 processes, gloo, CPU.

One spawn runs every case in turn (starting processes dominates the cost); each rank
saves what it saw, and the tests compare rank 0's run file with a single-process
reference trained on the same global batches in this process: per-layer gradient norms
(read before the loop's clip), weight and update norms, and the gradients after clipping
by the global norm.
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

from graddoctor import open_run
from graddoctor.probes.parameters import GRAD_STATS, WEIGHT_STATS

from .. import reference

pytestmark = pytest.mark.distributed

WORLD = 2
STEPS = 4
CLIP_STEPS = {1: "total", 3: "per_layer"}  # clipped before optimizer.step(), by global norms
MAX_NORM = 0.05
MEASURED_NORMS = (1.0, 2.0, float("inf"))  # total_norm orders checked at step 0
RTOL = 1e-5
DEADLINE_S = 150
CASES = ("ddp", "fsdp2", "fsdp1")


def _fsdp_available() -> dict[str, str | None]:
    """Why each FSDP flavour cannot run here (None when it can)."""
    reasons: dict[str, str | None] = {"ddp": None}
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
        from torch.distributed.tensor import DTensor  # noqa: F401

        reasons["fsdp2"] = None
    except ImportError as err:
        reasons["fsdp2"] = f"torch {torch.__version__} has no FSDP2 fully_shard: {err}"
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel  # noqa: F401

        reasons["fsdp1"] = None
    except ImportError as err:
        reasons["fsdp1"] = f"torch {torch.__version__} has no FSDP1: {err}"
    return reasons


def make_model() -> nn.Module:
    torch.manual_seed(0)
    # the last bias has one element: with 2 ranks one FSDP shard of it is empty
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1))


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 6, generator=g), torch.randn(8, 1, generator=g)) for _ in range(STEPS)]


def make_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


# -- the workers ---------------------------------------------------------------------
def _wrap(case: str, model: nn.Module) -> nn.Module:
    if case == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    if case == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        return model
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    return FullyShardedDataParallel(model, use_orig_params=True, device_id=torch.device("cpu"),
                                    auto_wrap_policy=ModuleWrapPolicy({nn.Linear}))


def _full_grads(case: str, wrapped: nn.Module) -> dict[str, torch.Tensor]:
    """Every gradient, whole (gathered here, in the test only)."""
    if case == "ddp":
        return {n: p.grad.clone() for n, p in wrapped.module.named_parameters()}
    if case == "fsdp2":
        return {n: p.grad.full_tensor().clone() for n, p in wrapped.named_parameters()}
    from torch.distributed.fsdp import FullyShardedDataParallel

    with FullyShardedDataParallel.summon_full_params(wrapped, with_grads=True):
        return {n.replace("_fsdp_wrapped_module.", ""): p.grad.clone() for n, p in wrapped.named_parameters()}


def _train(case: str, rank: int, out_dir: Path) -> dict:
    from graddoctor import Monitor
    from graddoctor.clip import clip_norm_, total_norm

    wrapped = _wrap(case, make_model())
    optimizer = make_optimizer(wrapped.parameters())
    path = out_dir / f"{case}-rank{rank}.gdr"
    calls: list[tuple[str, tuple[int, ...]]] = []
    original = dist.all_reduce

    counting = [True]  # off while the test itself clips or measures

    def counting_all_reduce(tensor, op=dist.ReduceOp.SUM, *args, **kwargs):
        if counting[0]:
            calls.append((str(op), tuple(tensor.shape)))
        return original(tensor, op, *args, **kwargs)

    clip_norms, clipped, measured, refused = [], {}, [], None
    group = {"process_group": dist.group.WORLD} if case == "fsdp1" else {}
    dist.all_reduce = counting_all_reduce
    try:
        with Monitor(wrapped, optimizer, path=path, activations_every=1) as mon:
            for step, (x, y) in enumerate(global_batches()):
                inputs, targets = x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]
                optimizer.zero_grad()
                loss = F.mse_loss(wrapped(inputs), targets)
                loss.backward()
                counting[0] = False
                if step == 0:
                    measured = [float(total_norm(wrapped.parameters(), p, **group)) for p in MEASURED_NORMS]
                    if case == "fsdp1":  # shards without their group: refused, not clipped locally
                        try:
                            clip_norm_(wrapped.parameters(), MAX_NORM)
                        except ValueError as err:
                            refused = str(err)
                if step in CLIP_STEPS:
                    per_layer = CLIP_STEPS[step] == "per_layer"
                    norms = clip_norm_(wrapped.parameters(), MAX_NORM, per_layer=per_layer, **group)
                    clip_norms.append(norms.reshape(-1).tolist())
                    clipped[step] = _full_grads(case, wrapped)
                counting[0] = True
                optimizer.step()
                mon.log(loss=loss)
            recording = mon.recording
    finally:
        dist.all_reduce = original
    return {"clip_norms": clip_norms, "clipped": clipped, "recording": recording, "all_reduce_calls": calls,
            "file_exists": path.exists(), "measured_norms": measured, "refused": refused}


def _worker(rank: int, port: int, out_dir: str, cases: tuple[str, ...]) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    results = {}
    for case in cases:
        try:
            results[case] = _train(case, rank, Path(out_dir))
        except Exception:  # reported by the parent's test of that case
            results[case] = traceback.format_exc()
    torch.save(results, Path(out_dir) / f"results-{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    # rank 0 hosts the TCP store: it leaves last, so no rank loses the store while tearing down
    done = Path(out_dir) / f"done-{rank}"
    done.touch()
    deadline = time.monotonic() + 30
    while rank == 0 and time.monotonic() < deadline and not all(
            (Path(out_dir) / f"done-{r}").exists() for r in range(WORLD)):
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> tuple[Path, list[dict]]:
    reasons = _fsdp_available()
    cases = tuple(c for c in CASES if reasons[c] is None)
    out_dir = tmp_path_factory.mktemp("distributed")
    context = mp.start_processes(_worker, args=(_free_port(), str(out_dir), cases), nprocs=WORLD,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    saved = [out_dir / f"results-{r}.pt" for r in range(WORLD)]
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail(f"the {WORLD} gloo workers did not finish within {DEADLINE_S} s (a hang?)")
    except mp.ProcessExitedException as err:
        if not all(path.exists() for path in saved):
            raise
        # every rank saved its results: a crash in gloo's teardown is not what is tested here
        warnings.warn(f"a gloo worker died after saving its results: {err}", stacklevel=1)
    return out_dir, [torch.load(path, weights_only=False) for path in saved]


# -- the single-process reference ----------------------------------------------------
@pytest.fixture(scope="module")
def single_process() -> dict:
    """Naive per-step statistics of the same training on the whole batch in one process."""
    model = make_model()
    optimizer = make_optimizer(model.parameters())
    named = list(model.named_parameters())
    leaves = {n: m for n, m in model.named_modules() if not any(True for _ in m.children())}
    grads, weights, clip_norms, clipped, acts, measured = {}, {}, [], {}, {}, []
    for step, (x, y) in enumerate(global_batches()):
        # rank 0's activations: its half of the batch through the same weights
        replica = copy.deepcopy(model)
        recorder = reference.NaiveActivationRecorder({n: dict(replica.named_modules())[n] for n in leaves})
        F.mse_loss(replica(x.chunk(WORLD)[0]), y.chunk(WORLD)[0]).backward()
        acts[step] = recorder.stats()
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        if step == 0:
            measured = [float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()], p))
                        for p in MEASURED_NORMS]
        grads[step] = reference.grad_stats(named)  # the Monitor reads them before the clip
        if CLIP_STEPS.get(step) == "total":
            clip_norms.append([float(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM))])
        elif CLIP_STEPS.get(step) == "per_layer":  # each tensor clipped to its own norm, one by one
            clip_norms.append([float(torch.nn.utils.clip_grad_norm_([p], MAX_NORM)) for p in model.parameters()])
        if step in CLIP_STEPS:
            clipped[step] = {n: p.grad.clone() for n, p in named}
        before = reference.weight_copies(named)
        optimizer.step()
        weights[step] = reference.weight_stats(named, before)
    return {"names": [n for n, _ in named], "grads": grads, "weights": weights, "clip_norms": clip_norms,
            "clipped": clipped, "acts": acts, "measured_norms": measured}


def _case(spawned, case: str) -> tuple[Path, dict, dict]:
    reason = _fsdp_available()[case]
    if reason is not None:
        pytest.skip(reason)
    out_dir, results = spawned
    for rank in range(WORLD):
        assert isinstance(results[rank][case], dict), f"rank {rank} failed:\n{results[rank][case]}"
    return out_dir, results[0][case], results[1][case]


def _close(measured: float, expected: float) -> bool:
    if np.isnan(expected):
        return bool(np.isnan(measured))
    return abs(measured - expected) <= RTOL * abs(expected) + 1e-8


# -- the tests -----------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_rank0_records_global_statistics(spawned, single_process, case):
    out_dir, rank0, _ = _case(spawned, case)
    run = open_run(out_dir / f"{case}-rank0.gdr")
    for stat in GRAD_STATS + WEIGHT_STATS:
        steps, names, values = run.series(stat)
        assert names == single_process["names"], (case, names)  # no "module." prefix
        assert list(steps) == list(range(STEPS))
        source = single_process["grads"] if stat in GRAD_STATS else single_process["weights"]
        for i, step in enumerate(steps):
            for j, name in enumerate(names):
                want = source[step][name][stat]
                assert _close(values[i, j], want), (case, stat, step, name, values[i, j], want)
    assert run.meta["distributed"]["mode"] == ("replicated" if case == "ddp" else "sharded")
    assert run.meta["distributed"]["world_size"] == WORLD
    types = {m["name"]: m["type"] for m in run.model_summary}
    shapes = {m["name"]: [p["shape"] for p in m["params"]] for m in run.model_summary}
    assert types["0"] == "Linear" and types["1"] == "Tanh" and shapes["0"] == [[10, 6], [10]], (types, shapes)


@pytest.mark.parametrize("case", CASES)
def test_rank0_activations_describe_its_own_batch(spawned, single_process, case):
    out_dir, _, _ = _case(spawned, case)
    run = open_run(out_dir / f"{case}-rank0.gdr")
    for stat in ("act_mean", "act_std", "out_grad_norm"):
        steps, names, values = run.series(stat)
        assert list(steps) == list(range(STEPS))
        for i, step in enumerate(steps):
            for j, name in enumerate(names):
                want = single_process["acts"][step][name][stat]
                assert abs(values[i, j] - want) <= 1e-5 * max(abs(want), 1e-2), (case, stat, step, name)


@pytest.mark.parametrize("case", CASES)
def test_clip_norm_by_global_norm_equals_single_process(spawned, single_process, case):
    _, rank0, rank1 = _case(spawned, case)
    for seen in (rank0, rank1):
        assert np.allclose(seen["measured_norms"], single_process["measured_norms"], rtol=RTOL, atol=0), case
        for got, want in zip(seen["clip_norms"], single_process["clip_norms"], strict=True):
            assert np.allclose(got, want, rtol=RTOL, atol=0), (case, got, want)
            assert max(want) > MAX_NORM  # the clipping acted
        for step in CLIP_STEPS:
            for name, want in single_process["clipped"][step].items():
                got = seen["clipped"][step][name]
                assert torch.allclose(got, want, rtol=RTOL, atol=1e-9), (case, step, name)


def test_clip_norm_refuses_fsdp1_shards_without_their_group(spawned):
    _, rank0, rank1 = _case(spawned, "fsdp1")
    for seen in (rank0, rank1):
        assert seen["refused"] and "process_group=" in seen["refused"]


@pytest.mark.parametrize("case", CASES)
def test_only_rank0_writes(spawned, case):
    out_dir, rank0, rank1 = _case(spawned, case)
    assert rank0["recording"] and rank0["file_exists"]
    assert not rank1["recording"] and not rank1["file_exists"]
    assert not (out_dir / f"{case}-rank1.gdr").exists()


@pytest.mark.parametrize("case", CASES)
def test_collectives_per_recorded_step(spawned, single_process, case):
    _, rank0, rank1 = _case(spawned, case)
    params = len(single_process["names"])
    for seen in (rank0, rank1):
        calls = seen["all_reduce_calls"]
        stats_sum = [c for c in calls if c[1] == (6, params)]
        stats_max = [c for c in calls if c[1] == (params,) and "MAX" in c[0].upper()]
        if case == "ddp":  # gradients are already averaged: no collective from graddoctor
            assert not stats_sum and not stats_max and not calls, calls
        else:  # one SUM of stacked squared norms and counts, one MAX, per recorded step
            assert len(stats_sum) == STEPS and len(stats_max) == STEPS, calls
            assert all("SUM" in c[0].upper() for c in stats_sum)
