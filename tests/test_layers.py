"""No module imports one of a higher layer (the layers are stated in graddoctor's docstring)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "graddoctor"

# top-level module or package of graddoctor -> its layer (low to high)
LAYERS = {
    "_version": 0, "_lazy": 0, "_paths": 0, "_modules": 0, "_module_types": 0, "_foreach": 0,
    "_exact_norms": 0, "_render_text": 0, "_numbers": 0,
    "_windows": 0, "_findings": 0, "_signals": 0,
    "probes": 1, "problem": 1,
    "store": 2,
    "monitor": 3,
    "views": 4, "_views_groups": 4, "_views_norms": 4, "_views_rows": 4,
    "theory": 5, "remedies": 5, "clip": 5, "init": 5,
    "diagnosis": 6, "_render_diagnosis": 6,
    "checkup": 7, "experiment": 7, "_render_comparison": 7, "_comparison_file": 7,
    "scenarios": 8,
    "report": 9,
    "integrations": 10, "demo": 10,
    "cli": 11,
}  # fmt: skip


def _top(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported(path: Path) -> set[str]:
    """graddoctor's top-level modules imported by a file (relative or absolute, lazy too)."""
    package = path.relative_to(SRC).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = (
                    list(package[: len(package) - node.level + 1])
                    if node.level > 1
                    else list(package)
                )
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [alias.name for alias in node.names]
            elif node.module and node.module.split(".")[0] == "graddoctor":
                rest = node.module.split(".")[1:]
                names = [rest[0]] if rest else [alias.name for alias in node.names]
            else:
                continue
            found.update(names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "graddoctor" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_top_level_module_has_a_layer():
    tops = {_top(p) for p in SRC.rglob("*.py") if _top(p) != "__init__"}
    assert tops - set(LAYERS) == set()


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        top = _top(path)
        if top == "__init__":  # the public API re-exports every layer
            continue
        for name in _imported(path):
            if name in LAYERS and LAYERS[name] > LAYERS[top]:
                upward.append(
                    f"{path.relative_to(SRC)} ({top}, layer {LAYERS[top]}) imports {name} (layer {LAYERS[name]})"
                )
    assert upward == []
