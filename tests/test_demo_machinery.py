"""The demo's use of the machine: idle cores measured, torch's threads chosen and restored,
report pages drawn by a worker process (or in place), its failures reported or redone."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.demo import _cores
from graddoctor.demo._cores import CorePlan, idle_cores, torch_threads
from graddoctor.demo._pages import PageWriter


def test_busy_cores_sees_a_busy_process():
    if _cores._busy_cores(0.05) is None:
        pytest.skip("no /proc/stat here")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the interpreter has started and spins
        busy = _cores._busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.5 <= busy <= (__import__("os").cpu_count() or 1) + 1e-9


@pytest.mark.parametrize(("busy", "expected"), [(0.0, 2), (0.4, 2), (0.6, 1), (1.7, 1), (4.5, 1)])
def test_idle_cores_is_the_cores_less_the_busy_ones_rounded(monkeypatch, busy, expected):
    monkeypatch.setattr(_cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(_cores, "_busy_cores", lambda window: busy)
    assert idle_cores() == expected


def test_idle_cores_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(_cores.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.setattr(_cores, "_busy_cores", lambda window: None)
    monkeypatch.setattr(_cores.os, "getloadavg", lambda: (2.6, 1.0, 1.0))
    assert idle_cores() == 1


@pytest.mark.parametrize(
    ("allowed", "idle", "torch_threads_set", "plan"),
    [
        (2, 1, 2, CorePlan(1, True)),  # busy 2 cores: one thread; the page process takes its share
        (2, 2, 2, CorePlan(1, True)),  # quiet 2 cores: one trains, one draws
        (8, 8, 4, CorePlan(3, True)),  # half the idle cores but one
        (8, 8, 2, CorePlan(2, True)),  # never above torch's setting
        (1, 1, 1, CorePlan(1, False)),  # one core: the pages in turn
    ],
)
def test_the_plan_follows_the_idle_cores(
    monkeypatch, one_thread, allowed, idle, torch_threads_set, plan
):
    monkeypatch.setattr(_cores, "allowed_cores", lambda: allowed)
    monkeypatch.setattr(_cores, "idle_cores", lambda: idle)
    torch.set_num_threads(torch_threads_set)
    assert CorePlan.for_idle_cores() == plan
    assert CorePlan.for_idle_cores(threads=5, background_pages=False) == CorePlan(5, False)


def test_torch_threads_are_restored(one_thread):
    with torch_threads(2) as threads:
        assert threads == torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(KeyError), torch_threads(3):
        raise KeyError("the demo failed")
    assert torch.get_num_threads() == 1


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pages") / "run.gdr"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with gd.Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        for _ in range(6):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.log(loss=loss)
    return path


@pytest.mark.parametrize("background", [True, False])
def test_pages_are_written_by_the_worker_or_in_place(run_file, tmp_path, background):
    with PageWriter(background) as pages:
        assert pages.in_background == background
        for name in ("a", "b"):
            pages.write(run_path=run_file, out=tmp_path / f"{name}.html", title=name)
    for name in ("a", "b"):
        page = (tmp_path / f"{name}.html").read_text()
        assert f"<title>{name}" in page and '<img alt="' in page


def test_a_page_that_fails_in_the_worker_is_raised_with_its_name(run_file, tmp_path):
    with pytest.raises(RuntimeError, match=r"missing\.html: .*"), PageWriter(True) as pages:
        pages.write(run_path=tmp_path / "no-such-run.gdr", out=tmp_path / "missing.html")
    assert not (tmp_path / "missing.html").exists()


def test_the_pages_of_a_dead_worker_are_drawn_in_place(run_file, tmp_path):
    with PageWriter(True) as pages:
        pages.write(run_path=run_file, out=tmp_path / "before.html", title="before")
        pages._worker.kill()  # drawn or not by then: either way the page is there at the end
        pages._worker.wait()
        pages.write(run_path=run_file, out=tmp_path / "after.html", title="after")
        assert not pages.in_background
    for name in ("before", "after"):
        assert f"<title>{name}" in (tmp_path / f"{name}.html").read_text()
