"""The layer table of ``graddoctor show``: every layer one line, within the console's width."""

from rich.console import Console
from rich.text import Text

from graddoctor.cli._table import LineTable


def _render(table, width):
    console = Console(width=width, record=True, file=open("/dev/null", "w"), force_terminal=False)
    console.print(table)
    return console.export_text()


def test_every_row_is_one_line_and_numbers_align_right():
    table = LineTable(["layer", "type", "grad norm"], right=["grad norm"], title="step 3")
    for i in range(2_000):
        table.add_row(Text(f"blocks.{i}.linear"), Text("Linear"), f"{1.5 ** (i % 30):.3g}")
    lines = _render(table, 130).splitlines()
    assert lines[0] == "step 3" and len(lines) == 2_000 + 5
    assert lines[4] == "│ blocks.0.linear    │ Linear │         1 │"
    assert lines[-2].startswith("│ blocks.1999.linear │") and lines[-1].startswith("└")


def test_a_narrow_console_cuts_names_first_then_the_right_columns():
    table = LineTable(
        ["layer", "type", "grad norm", "dL/d out"],
        right=["grad norm", "dL/d out"],
        shrink_first=["layer"],
    )
    table.add_row(Text("encoder.layers.11.self_attn.out_proj"), Text("Linear"), "0.0123", "4.5e-7")
    text = _render(table, 50)
    assert all(len(line) <= 50 for line in text.splitlines())
    assert "│ encoder.layers.… │" in text and "0.0123" in text and "4.5e-7" in text
    tiny = _render(table, 36)
    assert all(len(line) <= 36 for line in tiny.splitlines()) and "│ 0.0… │" in tiny


def test_markup_in_a_cell_is_shown_as_written():
    table = LineTable(["layer"])
    table.add_row(Text("[bold]x[/bold]"))
    assert "[bold]x[/bold]" in _render(table, 40)
