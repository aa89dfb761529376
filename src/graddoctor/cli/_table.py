"""A table of one-line cells drawn like rich's default table, in time linear in its cells.

``rich.table.Table`` measures and wraps every cell, about 2 ms a row: 4 s for the 2,000
layers of a deep model. Here every cell is one line (:class:`rich.text.Text`, no
wrapping), the widths are computed once, and a row is a handful of segments. When the
table is wider than the console, the columns named in ``shrink_first`` give up their width
first (down to ``NAME_WIDTH``), then the right-most ones (down to ``MIN_WIDTH``); a cut
cell ends with ``…``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text

MIN_WIDTH = 4
NAME_WIDTH = 16  # a shrinking column keeps this much before the others give up theirs
# rich's HEAVY_HEAD box: heavy header, light body
TOP, HEAD_SEP, BOTTOM = ("┏", "━", "┳", "┓"), ("┡", "━", "╇", "┩"), ("└", "─", "┴", "┘")
HEAD_BAR, BODY_BAR = "┃", "│"


class LineTable:
    """A titled table of one-line cells; print it with a rich console.

    Args:
        headers: the column headers.
        right: the headers of the right-justified columns (the others are left-justified).
        title: a line above the table.
        shrink_first: the headers of the columns that give up width first.
    """

    def __init__(
        self,
        headers: Iterable[str],
        right: Iterable[str] = (),
        title: Text | str = "",
        shrink_first: Iterable[str] = (),
    ) -> None:
        self.headers = [Text(h, style="bold") for h in headers]
        right = set(right)
        self.right = [h.plain in right for h in self.headers]
        self.title = title.copy() if isinstance(title, Text) else Text(title)
        self.title.stylize("table.title")  # italic, as rich's tables
        self.shrink_first = [i for i, h in enumerate(self.headers) if h.plain in shrink_first]
        self.rows: list[list[Text | str]] = []

    def add_row(self, *cells: Text | str) -> None:
        """One row, a cell per column: a ``Text``, or a ``str`` of printable characters (a number)."""
        self.rows.append(list(cells))

    def _natural(self) -> list[int]:
        widths = [h.cell_len for h in self.headers]
        for row in self.rows:
            widths = [max(w, _width(c)) for w, c in zip(widths, row, strict=True)]
        return widths

    def _fit(self, available: int) -> list[int]:
        """Natural widths cut to ``available``: long names, then the right-most columns, then names."""
        widths = self._natural()
        excess = sum(widths) + 3 * len(widths) + 1 - available
        floors = [(i, max(self.headers[i].cell_len, NAME_WIDTH)) for i in self.shrink_first]
        floors += [(i, MIN_WIDTH) for i in reversed(range(len(widths)))]
        floors += [(i, MIN_WIDTH) for i in self.shrink_first]
        for i, floor in floors:
            cut = min(max(excess, 0), max(widths[i] - floor, 0))
            widths[i], excess = widths[i] - cut, excess - cut
        return widths

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        total = sum(self._natural()) + 3 * len(self.headers) + 1
        return Measurement(min(total, options.max_width), min(total, options.max_width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        widths = self._fit(options.max_width)
        if self.title.plain:
            yield from self._line(
                console, [self.title], [sum(widths) + 3 * len(widths) + 1], "", [False]
            )
        yield Segment(_rule(TOP, widths) + "\n")
        yield from self._line(console, self.headers, widths, HEAD_BAR, self.right)
        yield Segment(_rule(HEAD_SEP, widths) + "\n")
        for row in self.rows:
            yield from self._line(console, row, widths, BODY_BAR, self.right)
        yield Segment(_rule(BOTTOM, widths) + "\n")

    @staticmethod
    def _line(
        console: Console, cells: list[Text | str], widths: list[int], bar: str, right: list[bool]
    ) -> Iterator[Segment]:
        """One row's segments, unstyled text merged (few segments a row keep printing fast)."""
        plain: list[str] = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            if bar:
                plain.append(f"{bar} " if i == 0 else f" {bar} ")
            if _width(cell) > width:
                cell = Text(cell) if isinstance(cell, str) else cell.copy()
                cell.truncate(width, overflow="ellipsis")
            pad = " " * (width - _width(cell))
            if right[i]:
                plain.append(pad)
            if isinstance(cell, str):
                plain.append(cell)
            elif not cell.spans and not cell.style:
                plain.append(cell.plain)
            else:
                yield Segment("".join(plain))
                plain = []
                if cell.spans:
                    yield from cell.render(console, end="")
                else:
                    yield Segment(cell.plain, console.get_style(cell.style))
            if not right[i] and bar:
                plain.append(pad)
        plain.append(f" {bar}\n" if bar else "\n")
        yield Segment("".join(plain))


def _width(cell: Text | str) -> int:
    return cell_len(cell) if isinstance(cell, str) else cell.cell_len


def _rule(parts: tuple[str, str, str, str], widths: list[int]) -> str:
    left, line, cross, end = parts
    return left + cross.join(line * (w + 2) for w in widths) + end


__all__ = ["LineTable"]
