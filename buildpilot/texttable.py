"""Tables and paragraphs as plain text, laid out exactly as rich lays them out.

Where output takes no escape codes (a pipe, a file, a CI log) rich's layout is all that
shows, and laying out a table of 200 rows through rich costs more than planning them. These
functions give rich's characters for the one table shape buildpilot prints that way (rich's
default heavy-headed box, a left-justified title, columns that fold, one space of padding
each side of a cell) and for a paragraph printed as a `Text`. Each step names the rich code
it follows (rich 13 to 15). They decline, returning None, text whose cell widths rich would
measure with its Unicode tables (anything but printable ASCII and `…`) and consoles
narrower than MIN_WIDTH: the caller then renders with rich.

Pure, and free of rich, so that the warm `plan` path can print without importing it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Sequence

ELLIPSIS = "…"
MIN_WIDTH = 20
NOT_APPLICABLE = "-"  # a cell with nothing to show
PLAIN_WIDTH = 120  # width of a table printed to a file or CI log, where no width is known
# Box HEAVY_HEAD (rich/box.py): top, header row, header separator, body rows, bottom.
_TOP = ("┏", "━", "┳", "┓")
_HEAD = ("┃", "┃", "┃")
_HEAD_RULE = ("┡", "━", "╇", "┩")
_ROW = ("│", "│", "│")
_BOTTOM = ("└", "─", "┴", "┘")
_SAFE = re.compile(r"[ -~\n…]*")  # one cell each for rich; `\n` splits lines
_WORD = re.compile(r"\s*\S+\s*")  # rich/_wrap.py, re_word
_TRAILING_SPACE = re.compile(r"\s+$")
_WHITESPACE = re.compile(r"\s+")
_PADDING = 1  # cells of padding left and right of every cell


def truncate(text: str, width: int) -> str:
    """Collapse whitespace to single spaces and cut `text` to `width` characters with `…`."""
    flat = _WHITESPACE.sub(" ", text).strip()
    if len(flat) <= width:
        return flat
    return flat[: max(width - 1, 0)] + ELLIPSIS


def format_duration(seconds: float) -> str:
    """Format seconds for people: `12.3s` under a minute, `2m05s` under an hour, else `1h02m`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def short_digest(digest: str | None) -> str:
    """The first 12 hex digits of a digest such as `sha256:0123…`; `-` when there is none."""
    if not digest:
        return NOT_APPLICABLE
    return digest.rpartition(":")[2][:12]


def table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    right: Collection[int] = (),
    caption: str = "",
) -> str | None:
    """`rich.table.Table(title=title, title_justify="left")` with one `overflow="fold"`
    column per header, printed by a console `width` cells wide that takes no escape codes;
    every line ends with a newline. None when rich must lay it out itself.

    `right` lists the columns justified right, and `caption` is centred under the table;
    with either, a table that does not fit `width` unfolded is left to rich."""
    columns = [[header, *(row[index] for row in rows)] for index, header in enumerate(headers)]
    texts = [title, caption, *(cell for column in columns for cell in column)]
    if width < MIN_WIDTH or not columns or not all(_SAFE.fullmatch(text) for text in texts):
        return None
    extra = 2 + len(columns) - 1  # the edges and the dividers (Table._extra_width)
    widths = _column_widths(columns, width - extra)
    if min(widths) < 2 * _PADDING + 1:
        return None
    if (right or caption) and any(
        len(cell) > cell_width - 2 * _PADDING or "\n" in cell
        for column, cell_width in zip(columns, widths, strict=True)
        for cell in column
    ):
        return None
    table_width = sum(widths) + extra
    if len(caption) > table_width:
        return None
    lines = _wrap(title, table_width, pad=True) if title else []
    lines.append(_rule(_TOP, widths))
    laid_out: dict[tuple[str, int], list[str]] = {}  # most cells of a plan say the same
    for index in range(len(rows) + 1):
        cells = []
        for number, (column, cell_width) in enumerate(zip(columns, widths, strict=True)):
            if number in right:  # fits on one line: see above
                cells.append([f" {column[index].rjust(cell_width - 2 * _PADDING)} "])
                continue
            key = (column[index], cell_width)
            if key not in laid_out:
                laid_out[key] = _cell(*key)
            cells.append(list(laid_out[key]))
        height = max(len(cell) for cell in cells)
        for cell, cell_width in zip(cells, widths, strict=True):
            blank = [" " * cell_width] * (height - len(cell))
            cell[:] = blank + cell if index == 0 else cell + blank  # header: bottom-aligned
        start, end, divider = _HEAD if index == 0 else _ROW
        lines.extend(start + divider.join(parts) + end for parts in zip(*cells, strict=True))
        if index == 0:
            lines.append(_rule(_HEAD_RULE, widths))
    lines.append(_rule(_BOTTOM, widths))
    if caption:  # Text.align("center"): the odd space goes right
        left = (table_width - len(caption)) // 2
        lines.append(" " * left + caption.ljust(table_width - left))
    return "".join(line[:width] + "\n" for line in lines)


def paragraph(text: str, *, width: int) -> str | None:
    """`rich.text.Text(text)` printed by a console `width` cells wide: wrapped at spaces,
    long words folded, lines not padded; ends with a newline. None when rich must do it."""
    if width < MIN_WIDTH or not _SAFE.fullmatch(text):
        return None
    return "".join(line[:width] + "\n" for line in _wrap(text, width, pad=False))


# --- layout: rich/table.py, Table._calculate_column_widths and its helpers ------------------


def _column_widths(columns: Sequence[Sequence[str]], max_width: int) -> list[int]:
    """Each column's width, padding included, borders not."""
    widths = [_measure_column(column, max_width)[1] or 1 for column in columns]
    if sum(widths) > max_width:
        widths = _collapse(widths, max_width)
        if sum(widths) > max_width:
            excess = sum(widths) - max_width
            widths = _ratio_reduce(excess, [1] * len(widths), widths, widths)
        widths = [
            _measure_column(column, width)[1] or 0
            for column, width in zip(columns, widths, strict=True)
        ]
    return widths


def _collapse(widths: list[int], max_width: int) -> list[int]:
    """Table._collapse_widths, every column wrappable: shave the widest columns first."""
    excess = sum(widths) - max_width
    while sum(widths) and excess > 0:
        widest = max(widths)
        second = max((width for width in widths if width != widest), default=0)
        if widest == second:
            break
        ratios = [1 if width == widest else 0 for width in widths]
        limit = [min(excess, widest - second)] * len(widths)
        widths = _ratio_reduce(excess, ratios, limit, widths)
        excess = sum(widths) - max_width
    return widths


def _ratio_reduce(
    total: int, ratios: list[int], maximums: list[int], values: list[int]
) -> list[int]:
    """rich/_ratio.py, ratio_reduce."""
    ratios = [ratio if maximum else 0 for ratio, maximum in zip(ratios, maximums, strict=True)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return values[:]
    remaining = total
    result = []
    for ratio, maximum, value in zip(ratios, maximums, values, strict=True):
        if ratio and total_ratio > 0:
            distributed = min(maximum, round(ratio * remaining / total_ratio))
            result.append(value - distributed)
            remaining -= distributed
            total_ratio -= ratio
        else:
            result.append(value)
    return result


def _measure_column(cells: Sequence[str], max_width: int) -> tuple[int, int]:
    """Table._measure_column: the widest minimum and maximum of the padded cells."""
    if max_width < 1:
        return 0, 0
    measures = [_measure_padded(cell, max_width) for cell in set(cells)]
    low = max((m[0] for m in measures), default=1)
    high = max((m[1] for m in measures), default=max_width)
    return min(low, max_width), min(high, max_width)


def _measure_padded(text: str, max_width: int) -> tuple[int, int]:
    """Measurement.get of Padding(text, (0, 1)) (rich/padding.py, __rich_measure__)."""
    if max_width < 1:
        return 0, 0
    extra = 2 * _PADDING
    if max_width - extra < 1:
        low, high = max_width, max_width
    else:
        low, high = _measure_text(text, max_width)
        low, high = min(low + extra, max_width), min(high + extra, max_width)
    return _clamped(low, high, max_width)


def _measure_text(text: str, max_width: int) -> tuple[int, int]:
    """Measurement.get of a Text: the longest word, the longest line."""
    if max_width < 1:
        return 0, 0
    high = max((len(line) for line in text.splitlines()), default=0)
    low = max((len(word) for word in text.split()), default=high)
    return _clamped(low, high, max_width)


def _clamped(low: int, high: int, max_width: int) -> tuple[int, int]:
    """`.normalize().with_maximum(max_width)`, (0, 0) when nothing fits, normalized again."""
    low, high = _normalize(low, high)
    low, high = min(low, max_width), min(high, max_width)
    if high < 1:
        return 0, 0
    return _normalize(low, high)


def _normalize(low: int, high: int) -> tuple[int, int]:
    low = min(max(0, low), high)
    return max(0, low), max(0, low, high)


# --- rendering: rich/text.py Text.wrap, rich/_wrap.py divide_line --------------------------


def _cell(text: str, width: int) -> list[str]:
    """The lines of one padded cell, each `width` wide."""
    space = " " * _PADDING
    return [space + line + space for line in _wrap(text, width - 2 * _PADDING, pad=True)]


def _wrap(text: str, width: int, *, pad: bool) -> list[str]:
    """Text.wrap with overflow "fold": justify "left" (`pad`) or "default"."""
    lines = []
    for line in text.split("\n"):
        offsets = _divide_line(line, width)
        bounds = [0, *offsets, len(line)]
        for start, end in itertools.pairwise(bounds):
            piece = _rstrip_end(line[start:end], width)
            lines.append(piece.ljust(width)[:width] if pad else piece[:width])
    return lines


def _rstrip_end(text: str, width: int) -> str:
    """Text.rstrip_end: drop trailing whitespace beyond `width`."""
    if len(text) <= width:
        return text
    match = _TRAILING_SPACE.search(text)
    if match is None:
        return text
    return text[: len(text) - min(len(match.group(0)), len(text) - width)]


def _divide_line(text: str, width: int) -> list[int]:
    """The offsets to break `text` at so that each line fits `width` (fold=True)."""
    breaks: list[int] = []
    offset = 0
    position = 0
    while (match := _WORD.match(text, position)) is not None:
        start, position = match.span()
        word = match.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            chunks = [word[index : index + width] for index in range(0, len(word), width)]
            for number, chunk in enumerate(chunks):
                if start:
                    breaks.append(start)
                if number == len(chunks) - 1:
                    offset = len(chunk)
                else:
                    start += len(chunk)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    return breaks


def _rule(box: tuple[str, str, str, str], widths: Sequence[int]) -> str:
    left, horizontal, cross, right = box
    return left + cross.join(horizontal * width for width in widths) + right
