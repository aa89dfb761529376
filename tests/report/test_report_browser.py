"""The HTML report in a real headless Chromium: no console errors, every image loads,
names from the model are escaped; a screenshot is saved for a person to look at."""

import json
import re
import shutil
import subprocess
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import graddoctor as gd

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.src) || 'error')), true);
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const bad = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute('data-probe', JSON.stringify({images: images.length, bad: bad, errors: window.__errors}));
});
</script>"""
EVIL = "<script>alert(1)</script>"


def evil_run(path: Path) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([("fc1", nn.Linear(6, 16)), (EVIL, nn.Sigmoid()), ("fc2", nn.Linear(16, 16)),
                                       ("act", nn.ReLU()), ("out", nn.Linear(16, 1))]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 6), torch.randn(32, 1)
    with gd.Monitor(model, opt, path=path, activations_every=2, config={"note": EVIL}) as mon:
        for _ in range(12):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            mon.log(loss=loss)
    return path


def test_names_are_escaped(tmp_path):
    from graddoctor.report.html import run_report

    html = run_report(evil_run(tmp_path / "evil.gdr"), tmp_path / "r.html").read_text()
    assert EVIL not in html and "&lt;script&gt;" in html
    assert "<script" not in html.lower()  # the report itself runs no script at all
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it on Debian-like systems)")
def test_report_renders_in_chromium(tmp_path):
    from graddoctor.report.html import comparison_report

    run_path = evil_run(tmp_path / "evil.gdr")
    problem = gd.Problem(_small_model(), [(torch.randn(32, 6), torch.randn(32, 1))],
                         nn.MSELoss(), name=EVIL)
    gd.compare(problem, ["clip_norm", "init_he"], steps=15, out_dir=tmp_path / "cmp")
    report = comparison_report(tmp_path / "cmp" / "comparison.json", tmp_path / "report.html")
    html = report.read_text()
    probe_copy = tmp_path / "probed.html"
    probe_copy.write_text(html.replace("<head>", "<head>" + PROBE, 1))
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=15000", "--dump-dom", probe_copy.as_uri()],
                         capture_output=True, text=True, timeout=120)
    match = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert match, f"the page did not finish loading: {dom.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["images"] >= 8 and probe["bad"] == 0 and probe["errors"] == []
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console_errors == []
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000
    keep = Path(__file__).resolve().parents[2] / "runs" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copy(shot, keep)
    assert run_path.exists()


def _small_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
