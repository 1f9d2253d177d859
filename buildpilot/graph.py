"""The image graph: dependency closure, parallel waves, descendants, and named cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from buildpilot.errors import CycleError, UnknownImageError

Graph = Mapping[str, Sequence[str]]  # image -> the images it depends on


def find_cycle(graph: Graph) -> list[str] | None:
    """A dependency loop as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep in graph and dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def closure(graph: Graph, selected: Iterable[str]) -> set[str]:
    """The selected images and every image they depend on, transitively."""
    result: set[str] = set()
    stack = list(selected)
    while stack:
        node = stack.pop()
        if node not in graph:
            raise UnknownImageError(
                f"unknown image '{node}'", hint="Known images: " + ", ".join(sorted(graph))
            )
        if node not in result:
            result.add(node)
            stack.extend(graph[node])
    return result


def waves(graph: Graph, nodes: Iterable[str]) -> list[list[str]]:
    """Topological layers of `nodes`: each wave depends only on earlier waves."""
    remaining = set(nodes)
    done: set[str] = set()
    result: list[list[str]] = []
    while remaining:
        ready = sorted(
            n for n in remaining if all(d in done or d not in remaining for d in graph[n])
        )
        if not ready:
            cycle = find_cycle(
                {n: [d for d in graph[n] if d in remaining] for n in sorted(remaining)}
            )
            raise CycleError(["dependency cycle: " + " -> ".join(cycle or sorted(remaining))])
        result.append(ready)
        done.update(ready)
        remaining.difference_update(ready)
    return result


def descendants(graph: Graph, node: str) -> set[str]:
    """Every image that depends on `node`, directly or not."""
    dependents: dict[str, set[str]] = {n: set() for n in graph}
    for child, deps in graph.items():
        for dep in deps:
            dependents.setdefault(dep, set()).add(child)
    result: set[str] = set()
    stack = [node]
    while stack:
        for child in dependents.get(stack.pop(), ()):
            if child not in result:
                result.add(child)
                stack.append(child)
    return result
