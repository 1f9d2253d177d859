"""Read YAML into plain data while remembering the line of every key, for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlSource:
    """Parsed YAML data plus the 1-based line of every mapping key and sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest parent that has one."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None


class YamlError(Exception):
    """The text is not valid YAML, or repeats a key; carries the line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


# libyaml composes the same nodes about seven times faster; its errors are worded
# differently, so a text it refuses is parsed again by PyYAML for the message.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def load_yaml(text: str, path: Path) -> YamlSource:
    """Parse `text` (read from `path`); raise YamlError on a syntax error or a duplicate key."""
    node = None
    if _FAST_LOADER is not None:
        try:
            node = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            node = _compose(text)
    else:
        node = _compose(text)
    lines: dict[Loc, int] = {}
    loader = yaml.SafeLoader("")
    data = _construct(node, (), lines, loader) if node is not None else None
    return YamlSource(path=path, data=data, lines=lines)


def _compose(text: str) -> yaml.Node | None:
    """PyYAML's own parse, whose errors say where and what."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        if exc.context and exc.problem:  # "while scanning a quoted scalar (line 3): found …"
            start = exc.context_mark
            where = f" (line {start.line + 1})" if start and start.line + 1 != line else ""
            problem = f"{exc.context}{where}: {exc.problem}"
        if "\t" in text and "found character '\\t'" in str(exc):
            problem = "tabs are not allowed for indentation in YAML; use spaces"
        raise YamlError(problem, line) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), None) from None


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int], loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, loader)
            if key in result:
                raise YamlError(
                    f"duplicate key '{key}' (first at line {lines[(*loc, key)]})",
                    key_node.start_mark.line + 1,
                )
            lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, (*loc, key), lines, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            items.append(_construct(item, (*loc, index), lines, loader))
        return items
    return _scalar(node, loader)


def _scalar(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise YamlError("a key must be a plain value", node.start_mark.line + 1)
    return loader.construct_object(node, deep=True)
