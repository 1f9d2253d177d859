"""Rendering of size reports: rich tables, JSON and GitHub markdown; decides nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from buildpilot.results import ImageResult
from buildpilot.size import (
    Entry,
    ImageSize,
    LayerSize,
    format_delta,
    format_size,
    grew_most,
)

INSTRUCTION_WIDTH = 50
INSIDE_SHOWN = 3  # directories and packages shown per layer in the table
NONE = "-"


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def headline(size: ImageSize) -> str:
    """`stt: 248.2 MB (90.7 MB compressed), budget 300 MB, +3.1 MB since 1a2b3c4d5e6f`."""
    parts = [f"{size.image}: {format_size(size.size)}"]
    if size.compressed is not None:
        parts[0] += f" ({format_size(size.compressed)} compressed)"
    if size.budget is not None:
        verdict = "OVER" if size.over_budget else "within"
        parts.append(f"budget {format_size(size.budget)} ({verdict})")
    if size.baseline_size is not None:
        parts.append(f"{format_delta(size.size - size.baseline_size)} since {_since(size)}")
    return ", ".join(parts)


def _since(size: ImageSize) -> str:
    base = size.baseline or "the last measurement"
    return base.split(":", 1)[1][:12] if base.startswith("sha256:") else base


def size_view(size: ImageSize) -> list[RenderableType]:
    """One image: the headline, then a row per layer with where it came from and what is
    heaviest inside it."""
    style = "bold red" if size.over_budget else ""
    parts: list[RenderableType] = [Rule(Text(headline(size), style=style), align="left")]
    compared = size.baseline_size is not None
    table = Table(title=f"layers of {size.ref}", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("Dockerfile", no_wrap=True)
    table.add_column("instruction")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("compressed", justify="right", no_wrap=True)
    if compared:
        table.add_column("change", justify="right", no_wrap=True)
    table.add_column("largest inside")
    for layer in size.layers:
        row = [
            str(layer.index + 1),
            size.location(layer) or NONE,
            _clip(layer.instruction or layer.created_by or NONE, INSTRUCTION_WIDTH),
            format_size(layer.size),
            NONE if layer.compressed is None else format_size(layer.compressed),
        ]
        if compared:
            row.append(_change(size, layer))
        row.append(_inside(layer))
        table.add_row(*row)
    parts.append(table)
    grown = grew_most(size) if compared else []
    if grown:
        lines = [f"grew most since {_since(size)}:"]
        lines += [
            f"  {g.location or 'base image'} {_clip(g.instruction, 60)} {format_delta(g.delta)}"
            for g in grown
        ]
        parts.append(Text("\n".join(lines)))
    return parts


def _change(size: ImageSize, layer: LayerSize) -> str:
    if layer.index >= len(size.growth):
        return NONE
    delta = size.growth[layer.index].delta
    return "new" if size.growth[layer.index].before == 0 and delta else format_delta(delta)


def _inside(layer: LayerSize) -> str:
    if layer.unread:
        return layer.unread
    lines = [_entries(layer.directories)]
    if layer.packages:
        lines.append("python: " + _entries(layer.packages))
    return "\n".join(line for line in lines if line) or NONE


def _entries(entries: Sequence[Entry]) -> str:
    return ", ".join(f"{e.name} {format_size(e.size)}" for e in entries[:INSIDE_SHOWN])


def sizes_view(sizes: Sequence[ImageSize]) -> list[RenderableType]:
    """`buildpilot size`: every image in turn."""
    parts: list[RenderableType] = []
    for size in sizes:
        parts.extend(size_view(size))
    return parts


def size_data(size: ImageSize) -> dict[str, Any]:
    """A size report as data, with `over_budget` and each layer's `location` added."""
    data: dict[str, Any] = size.model_dump(mode="json")
    data["over_budget"] = size.over_budget
    for layer, record in zip(size.layers, data["layers"], strict=True):
        record["location"] = size.location(layer)
    return data


def sizes_json(sizes: Sequence[ImageSize]) -> str:
    """`buildpilot size --json`."""
    return json.dumps([size_data(size) for size in sizes], indent=2, ensure_ascii=False)


def github_sizes(images: Sequence[ImageResult]) -> list[str]:
    """Markdown lines for the GitHub step summary: one row per measured image (none when no
    image was measured)."""
    measured = [image.size for image in images if image.size is not None]
    if not measured:
        return []
    lines = [
        "",
        "### Image sizes",
        "",
        "| image | size | compressed | budget | change | grew most |",
        "|---|---:|---:|---|---:|---|",
    ]
    for size in measured:
        budget = NONE
        if size.budget is not None:
            mark = "❌ over" if size.over_budget else "within"
            budget = f"{format_size(size.budget)} ({mark})"
        change = (
            NONE if size.baseline_size is None else format_delta(size.size - size.baseline_size)
        )
        grown = "<br>".join(
            f"`{g.location or 'base image'}` {format_delta(g.delta)}" for g in grew_most(size)
        )
        cells = [
            f"`{size.image}`",
            format_size(size.size),
            NONE if size.compressed is None else format_size(size.compressed),
            budget,
            change,
            grown or NONE,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
