"""Plain-text tables and paragraphs: character for character what rich prints."""

from __future__ import annotations

import io
import random

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from buildpilot import texttable

ALPHABET = "abcdefghij-_./:[]()…"


def rich_print(*renderables: Table | Text, width: int) -> str:
    out = io.StringIO()  # no terminal: rich lays out, and writes no escape codes
    Console(file=out, width=width, no_color=True, highlight=False, emoji=False, markup=False).print(
        *renderables
    )
    return out.getvalue()


def rich_table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(Text(row[0], style="bold"), *row[1:])
    return table


def random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 12)):
        length = rng.choice([1, 2, 3, 5, 8, 13, 30, 70, 150])
        parts.append("".join(rng.choice(ALPHABET) for _ in range(length)))
        parts.append(rng.choice([" ", " ", "  ", "\n", " -> ", ": "]))
    return (" " if rng.random() < 0.2 else "") + "".join(parts)


@pytest.fixture(autouse=True)
def no_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("seed", range(4))
def test_random_tables_match_rich(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs, no secret
    for _ in range(150):
        headers = rng.sample(["image", "action", "first misses", "why", "a long header"], 4)
        headers = headers[: rng.randint(1, 4)]
        rows = [[random_text(rng) for _ in headers] for _ in range(rng.randint(0, 6))]
        title = rng.choice(["", "plan since HEAD~1", f"plan since {random_text(rng).strip()}"])
        title = title.replace("\n", " ")
        width = rng.randint(texttable.MIN_WIDTH, 220)
        mine = texttable.table(title, headers, rows, width=width)
        if mine is not None:
            assert mine == rich_print(rich_table(title, headers, rows), width=width)


@pytest.mark.parametrize("seed", range(4))
def test_random_paragraphs_match_rich(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs, no secret
    for _ in range(300):
        text = random_text(rng).replace("\n", " ")
        width = rng.randint(texttable.MIN_WIDTH, 220)
        assert texttable.paragraph(text, width=width) == rich_print(Text(text), width=width)


def test_a_plan_table_exactly() -> None:
    rows = [
        ["base", "reuse", "-", "unchanged since HEAD~1; a base of api"],
        ["api", "build", "stage-0: line 4 COPY src /app", "src/main.py -> Dockerfile:4 …"],
    ]
    text = texttable.table(
        "plan since HEAD~1", ["image", "action", "first misses", "why"], rows, width=60
    )
    assert text == (
        "plan since HEAD~1                                           \n"
        "┏━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┓\n"
        "┃ image ┃ action ┃ first misses       ┃ why                ┃\n"
        "┡━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━┩\n"
        "│ base  │ reuse  │ -                  │ unchanged since    │\n"
        "│       │        │                    │ HEAD~1; a base of  │\n"
        "│       │        │                    │ api                │\n"
        "│ api   │ build  │ stage-0: line 4    │ src/main.py ->     │\n"
        "│       │        │ COPY src /app      │ Dockerfile:4 …     │\n"
        "└───────┴────────┴────────────────────┴────────────────────┘\n"
    )


@pytest.mark.parametrize(
    ("cell", "width"),
    [
        ("wide 漢字", 80),
        ("tab\there", 80),
        ("escape \x1b[1m", 80),
        ("fine", texttable.MIN_WIDTH - 1),
    ],
)
def test_declines_what_rich_measures_itself(cell: str, width: int) -> None:
    assert texttable.table("t", ["a"], [[cell]], width=width) is None
    assert texttable.paragraph(cell, width=width) is None


def test_truncate_collapses_and_cuts() -> None:
    assert texttable.truncate("RUN  pip\n install   x", 40) == "RUN pip install x"
    assert texttable.truncate("abcdef", 4) == "abc…"


@pytest.mark.parametrize("seed", range(20))
def test_right_justified_columns_and_a_caption_match_rich(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs, no secret
    headers = ["image", "status", "duration", "cached", "digest"]
    rows = [
        [
            rng.choice(["base", "stt", "gateway-x"]),
            "skipped",
            "-",
            "-",
            f"{rng.getrandbits(48):012x}",
        ]
        for _ in range(rng.randint(1, 6))
    ]
    caption = f"{len(rows)} skipped" + " x" * rng.randint(0, 3)
    table = Table(
        title="run 20261121T105443Z-fb9a: 4 images in 0.0s", caption=caption, title_justify="left"
    )
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index in (2, 3) else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    ours = texttable.table(
        table.title or "", headers, rows, width=120, right=(2, 3), caption=caption
    )
    assert ours == rich_print(table, width=120)
