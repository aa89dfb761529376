"""The HTML report keeps every value from a file inert, and a hostile comparison.json is refused
with one line naming the file and the field."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import OrderedDict
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from graddoctor import Monitor
from graddoctor.cli import app
from graddoctor.experiment import Comparison
from graddoctor.report.html import comparison_section, run_report

# each would run script or break out of an attribute or a tag if written as it is
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "' onmouseover='alert(3)",
    "</td></tr></table><script>alert(4)</script>",
    "<!--",
    "javascript:alert(5)",
]
# names that can also be file names (no "/")
FILE_SAFE = ['"><img src=x onerror=alert(2)>', "' onmouseover='alert(3)", "<b>bold<b>"]
TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "main",
    "section", "div", "span", "code", "b", "details", "summary", "table", "tr", "th", "td",
    "figure", "img", "figcaption", "nav", "a", "small", "br",
}  # fmt: skip


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.comments.append(data)


def inert_page(page: str) -> str:
    """Parse ``page``; every tag and attribute is the report's own. Returns the visible text."""
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert not parser.comments, parser.comments
    for tag, attrs in parser.tags:
        assert tag in TAGS, (tag, attrs)
        for name, value in attrs:
            assert name in (
                "lang",
                "charset",
                "name",
                "content",
                "class",
                "alt",
                "src",
                "href",
                "colspan",
            )
            if name == "src":
                assert value.startswith("data:image/"), value[:80]
            if name == "href":
                assert not value.lower().lstrip().startswith("javascript:"), value
    return "".join(parser.text)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """A run whose file name, module names, model class and config are hostile."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("html")
    layers = OrderedDict()
    for i, name in enumerate(HOSTILE):
        layers[name] = nn.Linear(8, 8) if i % 2 == 0 else nn.Tanh()
    layers["out"] = nn.Linear(8, 1)
    model = type("<b onmouseover=alert(6)>Net", (nn.Sequential,), {})(layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = folder / f"{FILE_SAFE[0]}.gdr"
    config = {"note": HOSTILE[0], HOSTILE[1]: HOSTILE[3]}
    with Monitor(model, opt, path=path, activations_every=1, config=config) as mon:
        for _ in range(6):
            opt.zero_grad()
            loss = model(torch.randn(16, 8) * 10).pow(2).mean()
            loss.backward()
            opt.step()
            mon.log(loss=loss)
    return path


def _trial(name, run_paths, **changes):
    trial = {
        "name": name,
        "remedy": None if name == "baseline" else name,
        "final_loss": 0.5,
        "final_loss_spread": 0.0,
        "best_loss": 0.25,
        "steps_to_target": 3,
        "diverged": False,
        "diverged_at": None,
        "wall_time": 1.5,
        "healthy": False,
        "findings": [HOSTILE[0], HOSTILE[2]],
        "run_paths": [str(p) for p in run_paths],
        "losses": [[1.0, 0.5]],
        "error": None,
    }
    return trial | changes


def _comparison(run: Path, **changes) -> dict:
    data = {
        "schema": "graddoctor.comparison/1",
        "problem": HOSTILE[3],
        "steps": 6,
        "seeds": [0],
        "target_loss": 0.1,
        "ranking": [],
        "trials": [
            _trial("baseline", [run]),
            _trial(HOSTILE[0], [run]),
            _trial(HOSTILE[1], [run], diverged=True, diverged_at=2),
            _trial(HOSTILE[4], [], error=HOSTILE[3]),
        ],
    }
    return data | changes


def test_the_run_report_keeps_names_and_meta_of_any_shape_inert(hostile_run, tmp_path):
    # plus metadata of types graddoctor never writes (the file is only a file)
    path = tmp_path / "meta.gdr"
    shutil.copy(hostile_run, path)
    model = {"type": HOSTILE[1], "param_count": HOSTILE[0], "trainable_count": [HOSTILE[3]]}
    conn = sqlite3.connect(path)
    for key, value in {
        "model": model,
        "optimizer": HOSTILE[3],
        "start_time": HOSTILE[0],
        "torch_version": {"x": HOSTILE[1]},
    }.items():
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
    conn.commit()
    conn.close()
    page = run_report(path, tmp_path / "r.html").read_text()
    text = inert_page(page)
    assert f"{HOSTILE[1]} ({HOSTILE[0]} parameters" in text and HOSTILE[3] in text
    for name in HOSTILE:  # module names and config: shown as text, where they are shown
        assert name in text or name not in page


def test_the_comparison_report_keeps_every_value_inert(hostile_run, tmp_path):
    (tmp_path / "comparison.json").write_text(json.dumps(_comparison(hostile_run)))
    result = CliRunner().invoke(
        app, ["report", str(tmp_path / "comparison.json"), "-o", str(tmp_path / "c.html")]
    )
    assert result.exit_code == 0, result.output
    text = inert_page((tmp_path / "c.html").read_text())
    for name in (HOSTILE[0], HOSTILE[1], HOSTILE[3], HOSTILE[4]):
        assert name in text, name


def test_a_comparison_section_escapes_values_of_any_type():
    data = _comparison(Path("x.gdr"), steps=HOSTILE[0], seeds=[HOSTILE[1]], target_loss=HOSTILE[2])
    data["ranking"] = [t["name"] for t in data["trials"]]
    data["trials"] = [t | {"run_paths": []} for t in data["trials"]]
    data["trials"][1] |= {
        "final_loss": HOSTILE[3],
        "steps_to_target": HOSTILE[0],
        "wall_time": HOSTILE[1],
        "diverged": True,
        "diverged_at": HOSTILE[0],
    }
    text = inert_page(comparison_section(data))
    assert HOSTILE[0] in text and HOSTILE[1] in text


# a field of comparison.json, the value it is given, what the one line says
BAD_FIELDS = [
    ("steps", "<script>alert(1)</script>", "steps must be an integer"),
    ("steps", 10**30, "steps must be an integer between"),
    ("steps", True, "steps must be an integer"),
    ("seeds", "0", "seeds must be a list of integers"),
    ("target_loss", [], "target_loss must be a number"),
    ("problem", {"a": 1}, "problem must be a string"),
    ("trials", {}, "trials must be a non-empty list"),
    ("trials", [], "trials must be a non-empty list"),
    ("schema", "graddoctor.comparison/9", "is not a graddoctor comparison"),
]
BAD_TRIALS = [
    ({"final_loss": "0.5"}, "trials[0].final_loss must be a number"),
    ({"healthy": "yes"}, "trials[0].healthy must be true or false"),
    ({"diverged_at": 2**70}, "trials[0].diverged_at must be null or an integer between"),
    ({"run_paths": "a.gdr"}, "trials[0].run_paths must be a list of strings"),
    ({"findings": [1]}, "trials[0].findings must be a list of strings"),
    ({"losses": [["x"]]}, "trials[0].losses must be lists of numbers"),
    ({"name": None}, "trials[0].name must be a string"),
    ({"error": 3}, "trials[0].error must be a string or null"),
]


def _bad_files(run: Path) -> list[tuple[str, str]]:
    cases = []
    for field, value, expected in BAD_FIELDS:
        cases.append((json.dumps(_comparison(run, **{field: value})), expected))
    for changes, expected in BAD_TRIALS:
        data = _comparison(run)
        data["trials"][0] |= changes
        cases.append((json.dumps(data), expected))
    missing = _comparison(run)
    del missing["trials"][1]["best_loss"]
    cases.append((json.dumps(missing), "trials[1] lacks best_loss"))
    missing = _comparison(run)
    del missing["steps"]
    cases.append((json.dumps(missing), "lacks steps"))
    twice = _comparison(run)
    twice["trials"][1]["name"] = "baseline"
    cases.append((json.dumps(twice), "trial 'baseline' appears twice"))
    no_baseline = _comparison(run)
    no_baseline["trials"] = no_baseline["trials"][1:]
    cases.append((json.dumps(no_baseline), "no trial 'baseline'"))
    cases += [
        ("{", "is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "is not JSON"),
        ("[1, 2]", "is not a graddoctor comparison"),
        ('{"schema": "graddoctor.comparison/1"', "is not JSON"),
    ]
    return cases


def test_a_bad_comparison_json_is_refused_naming_the_field(hostile_run, tmp_path):
    for i, (text, expected) in enumerate(_bad_files(hostile_run)):
        path = tmp_path / f"bad{i}.json"
        path.write_text(text)
        if "baseline" not in expected:  # a comparison may lack a baseline; its report may not
            with pytest.raises(ValueError, match=str(path)) as caught:
                Comparison.load(path)
            assert expected in str(caught.value), (expected, str(caught.value))
        result = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "x.html")])
        output = result.output.strip()
        assert result.exit_code == 2, (expected, output, result.exception)
        assert len(output.splitlines()) == 1 and output.startswith("error: "), output
        assert expected in " ".join(output.split()) and str(path.name) in output, (expected, output)
    assert not (tmp_path / "x.html").exists()


def test_bytes_that_are_not_text(tmp_path):
    path = tmp_path / "comparison.json"
    path.write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(ValueError, match="comparison.json"):
        Comparison.load(path)
