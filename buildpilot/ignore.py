"""`.dockerignore` and COPY sources exactly as BuildKit applies them to a build context.

Three questions, each answered the way the Go code that BuildKit runs answers it:

* Which ignore file applies: `ignore_file_for` (buildx + BuildKit's dockerui frontend).
* Whether the ignore file drops a context file: `IgnoreMatcher` (moby/patternmatcher, read
  with `ignorefile.ReadAll`, applied by fsutil's walker while the context is sent).
* Whether `COPY <src>` reads a context file: `source_reads` (tonistiigi/fsutil `copy`, which
  resolves wildcards with Go's `filepath.Match`).

The Dockerfile and the ignore file get no special treatment: BuildKit loads both through a
separate "dockerfile" local (no exclude patterns), so ignoring them never breaks the build,
while `COPY . .` no longer sees them. Only Linux semantics are modelled (`/` separator,
backslash escapes).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from buildpilot.errors import BuildpilotError

DOCKERIGNORE = ".dockerignore"

# Go's unicode.IsSpace, which strings.TrimSpace uses; Python's str.strip() also strips \x1c-\x1f.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
# patternmatcher's shouldEscape: regexp metacharacters that mean nothing to filepath.Match.
_REGEX_ONLY = frozenset(".+()|{}$")
# Go RE2 escapes with a meaning, outside and inside a class (regexp/syntax parse.go).
_RE2_CLASS_ESCAPES = {
    **{c: "\\" + c for c in "aftnrvdDwW"},
    "s": "\\t\\n\\f\\r ",
}
_RE2_ESCAPES = {
    **_RE2_CLASS_ESCAPES,
    **{c: "\\" + c for c in "bBA"},
    "z": "\\Z",
    "s": "[\\t\\n\\f\\r ]",
    "S": "[^\\t\\n\\f\\r ]",
}
# Go RE2 POSIX classes (regexp/syntax perl_groups.go), as Python class contents.
_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


class IgnorePatternError(BuildpilotError):
    """An ignore pattern BuildKit rejects, so every build using that context would fail."""


class _BadPatternError(ValueError):
    """Go's filepath.ErrBadPattern, or a regexp Go would refuse to compile."""


# --------------------------------------------------------------------------- which file


def ignore_file_for(context: Path, dockerfile: Path | None) -> Path | None:
    """The ignore file a build of `dockerfile` in `context` uses, or None.

    buildx (build/opt.go `loadInputs`) sends the Dockerfile's directory as the "dockerfile"
    local and its base name as `filename`; BuildKit's frontend (frontend/dockerui/config.go)
    reads `filename + ".dockerignore"` from that local next to the Dockerfile and, only when
    it is absent, `.dockerignore` at the root of the context. Named local contexts
    (`--build-context`, namedcontext.go) only ever read their own `.dockerignore`: pass
    `dockerfile=None` for them.
    """
    if dockerfile is not None:
        specific = dockerfile.with_name(dockerfile.name + DOCKERIGNORE)
        if specific.is_file():
            return specific
    default = context / DOCKERIGNORE
    return default if default.is_file() else None


# --------------------------------------------------------------------------- Go helpers


def go_clean(path: str) -> str:
    """Go's `filepath.Clean` on Linux: drop empty and `.` elements, resolve `..` lexically."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for element in path.split("/"):
        if element in {"", "."}:
            continue
        if element == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(element)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def _go_dir(path: str) -> str:
    """Go's `filepath.Dir`: everything before the last `/`, cleaned."""
    return go_clean(path[: path.rfind("/") + 1])


def _go_trim_space(text: str) -> str:
    return text.strip(_GO_SPACE)


# ------------------------------------------------------- filepath.Match, compiled once


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    """Go's scanChunk: leading stars, then everything up to the next star outside `[...]`."""
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif ch == "[":
            in_range = True
        elif ch == "]":
            in_range = False
        elif ch == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _get_esc(chunk: str, i: int) -> tuple[str, int]:
    """Go's getEsc: one possibly escaped class character; a class must go on after it."""
    if i >= len(chunk) or chunk[i] in "-]":
        raise _BadPatternError
    if chunk[i] == "\\":
        i += 1
        if i >= len(chunk):
            raise _BadPatternError
    char = chunk[i]
    if "\udc80" <= char <= "\udcff":  # an undecodable byte: utf8.RuneError
        raise _BadPatternError
    i += 1
    if i >= len(chunk):
        raise _BadPatternError
    return char, i


def _class_regex(ranges: list[tuple[str, str]], negated: bool) -> str:
    """A Go class as a Python one; Go's classes, unlike `?` and `*`, may match `/`."""
    valid = [(lo, hi) for lo, hi in ranges if lo <= hi]  # Go accepts z-a: it matches nothing
    if not valid:
        return "(?s:.)" if negated else "(?!)"
    body = "".join(
        re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in valid
    )
    return f"[{'^' if negated else ''}{body}]"


def _chunk_regex(chunk: str) -> str:
    """Go's matchChunk grammar as a fixed-width regex; raises where Go returns ErrBadPattern."""
    out: list[str] = []
    i = 0
    while i < len(chunk):
        ch = chunk[i]
        if ch == "[":
            i += 1
            negated = i < len(chunk) and chunk[i] == "^"
            if negated:
                i += 1
            ranges: list[tuple[str, str]] = []
            while not (ranges and i < len(chunk) and chunk[i] == "]"):
                lo, i = _get_esc(chunk, i)
                hi = lo
                if chunk[i] == "-":
                    hi, i = _get_esc(chunk, i + 1)
                ranges.append((lo, hi))
            i += 1
            out.append(_class_regex(ranges, negated))
            continue
        if ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i >= len(chunk):
                raise _BadPatternError
            out.append(re.escape(chunk[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _glob_regex(pattern: str) -> str:
    """Go's `filepath.Match(pattern, name)` as a regex over `name`.

    Go matches each star-led chunk at its leftmost position and never reconsiders it, so
    every chunk but the last is an atomic group around a lazy `[^/]*?`: the same answers,
    including where a class lets a chunk match `/`. Any malformed part raises, as Go 1.16+
    validates the whole pattern (`filepath.Match(p, ".")` is how patternmatcher checks it).
    """
    parts: list[str] = []
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            parts.append("[^/]*")  # a trailing star matches the rest unless it holds a `/`
            break
        body = _chunk_regex(chunk)
        last = not pattern
        if star:
            parts.append(f"[^/]*?{body}" if last else f"(?>[^/]*?{body})")
        else:
            parts.append(body)
    return "".join(parts) + r"\Z"


def _validate_glob(pattern: str) -> None:
    _glob_regex(pattern)


# ------------------------------------------------------------ patternmatcher, compiled


def _double_star(pattern: str, pos: int, kind: str) -> tuple[str, str, int]:
    """The regexp piece, match type and next position after a `**` ending before `pos`."""
    if pattern.startswith("/", pos):  # `**/` is eaten as `**`
        pos += 1
    if pos < len(pattern):
        return "(.*/)?", "regexp", pos  # any number of directories, even none
    if kind == "exact":  # `**` at the end accepts everything below
        return "", "prefix", pos
    return ".*", "regexp", pos


def _patternmatcher_regex(pattern: str) -> tuple[str, str]:
    """patternmatcher's `Pattern.compile`: the match type and the Go regexp it builds."""
    regex = ["^"]
    kind = "exact"
    pos = 0
    step = 0
    while pos < len(pattern):
        ch = pattern[pos]
        pos += 1
        piece = ch
        if pattern.startswith("**", pos - 1):
            piece, kind, pos = _double_star(pattern, pos + 1, kind)
            if step == 0:
                kind = "suffix"
        elif ch in "*?":
            piece, kind = ("[^/]*" if ch == "*" else "[^/]"), "regexp"
        elif ch in _REGEX_ONLY:
            piece = "\\" + ch
        elif ch == "\\" and pos < len(pattern):
            piece, kind = "\\" + pattern[pos], "regexp"
            pos += 1
        elif ch in "[]":
            kind = "regexp"
        regex.append(piece)
        step += 1
    return kind, "".join(regex) + "$"


def _go_escape(go: str, i: int, *, in_class: bool) -> str:
    """`\\c` of Go RE2 in Python syntax (compiled with re.ASCII, like RE2's Perl classes).

    patternmatcher copies a pattern's `\\c` into its regexp as is, so `\\.` is a dot but
    `\\d` a digit and `\\b` a word boundary. Escapes Go refuses, and the few with no
    Python equivalent (octal, `\\x`, `\\p`, `\\Q`), raise.
    """
    if i + 1 >= len(go):
        raise _BadPatternError
    char = go[i + 1]
    if char.isascii() and not char.isalnum():
        return "\\" + char
    table = _RE2_CLASS_ESCAPES if in_class else _RE2_ESCAPES
    if char in table:
        return table[char]
    raise _BadPatternError(f"the escape \\{char} is not supported by buildpilot here")


def _go_regex_to_python(go: str) -> str:
    """Translate the Go RE2 regexp patternmatcher builds into Python `re` syntax."""
    out: list[str] = []
    i = 0
    in_class = False
    first = False
    while i < len(go):
        ch = go[i]
        if ch == "\\":
            out.append(_go_escape(go, i, in_class=in_class))
            i += 2
            first = False
            continue
        if not in_class:
            if ch == "[":
                in_class, first = True, True
                out.append("[")
                if go.startswith("^", i + 1):
                    out.append("^")
                    i += 1
            elif ch == "$":
                out.append(r"\Z")  # Go's `$` is end of text; Python's also allows a final \n
            else:
                out.append(ch)
            i += 1
            continue
        if ch == "]" and not first:
            in_class = False
            out.append("]")
            i += 1
            continue
        first = False
        if go.startswith("[:", i):
            end = go.find(":]", i + 2)
            if end >= 0:
                name = go[i + 2 : end]
                if name not in _POSIX:
                    raise _BadPatternError(f"unsupported character class [:{name}:]")
                out.append(_POSIX[name])
                i = end + 2
                continue
        out.append("\\" + ch if ch in "[]&|~" else ch)  # literal in both, quiet in Python
        i += 1
    return "".join(out)


def _compile_ignore_pattern(pattern: str) -> Callable[[str], bool]:
    """One cleaned pattern (no `!`) as a predicate over `/`-separated relative paths."""
    kind, go = _patternmatcher_regex(pattern)
    if kind == "exact":
        return lambda path: path == pattern
    if kind == "prefix":
        head = pattern[:-2]
        return lambda path: path.startswith(head)
    if kind == "suffix":
        tail = pattern[2:]
        bare = tail[1:] if tail.startswith("/") else None  # `**/foo` also matches `foo`
        return lambda path: path.endswith(tail) or path == bare
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            compiled = re.compile(_go_regex_to_python(go), re.ASCII)
    except re.error as exc:
        raise _BadPatternError(str(exc)) from exc
    return lambda path: compiled.match(path) is not None


# --------------------------------------------------------------------------- the file


def read_ignore_text(text: str) -> list[str]:
    """The patterns of an ignore file, as moby/patternmatcher `ignorefile.ReadAll` returns them.

    A UTF-8 BOM is dropped; a line starting with `#` is a comment (only in column one);
    lines are trimmed and empty ones dropped; after an optional `!` the path is cleaned
    (`filepath.Clean`, so `./a/` is `a`) and one leading `/` removed.
    """
    patterns: list[str] = []
    for number, raw in enumerate(text.split("\n")):
        line = raw.removesuffix("\r")
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = _go_trim_space(line)
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = _go_trim_space(line[1:])
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


@dataclass(frozen=True)
class IgnoreMatcher:
    """The exclude patterns of one build context (moby/patternmatcher `PatternMatcher`).

    `IgnoreMatcher(patterns)` is `patternmatcher.New`: it trims, cleans and validates each
    pattern (raising IgnorePatternError where BuildKit would fail the build) and compiles
    it once. `patterns` then holds them as patternmatcher keeps them, `!` in front of
    re-inclusions. Build one from an ignore file with `from_file` or `from_text`.
    """

    patterns: tuple[str, ...] = ()
    _exclusion: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    _matchers: tuple[Callable[[str], bool], ...] = field(init=False, repr=False, compare=False)
    _parents: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cleaned: list[str] = []
        exclusion: list[bool] = []
        matchers: list[Callable[[str], bool]] = []
        for raw in self.patterns:
            pattern = _go_trim_space(raw)
            if not pattern:
                continue
            pattern = go_clean(pattern)
            negated = pattern.startswith("!")
            if negated:
                if len(pattern) == 1:
                    raise IgnorePatternError('illegal exclusion pattern: "!"')
                pattern = pattern[1:]
            try:
                _validate_glob(pattern)
                matchers.append(_compile_ignore_pattern(pattern))
            except _BadPatternError as exc:
                detail = f": {exc}" if str(exc) else ""
                raise IgnorePatternError(f"invalid ignore pattern {raw!r}{detail}") from exc
            cleaned.append("!" + pattern if negated else pattern)
            exclusion.append(negated)
        object.__setattr__(self, "patterns", tuple(cleaned))
        object.__setattr__(self, "_exclusion", tuple(exclusion))
        object.__setattr__(self, "_matchers", tuple(matchers))

    @classmethod
    def from_text(cls, text: str) -> IgnoreMatcher:
        """The matcher for the content of an ignore file (one per text: images built from
        one context share its ignore file)."""
        return _matcher_of(text)

    @classmethod
    def from_file(cls, path: Path | None) -> IgnoreMatcher:
        """The matcher for an ignore file; None or a missing file ignores nothing."""
        if path is None or not path.is_file():
            return cls()
        return cls.from_text(path.read_bytes().decode("utf-8", "surrogateescape"))

    def ignored(self, relpath: str) -> bool:
        """Whether BuildKit leaves `relpath` (`/`-separated, relative to the context) out.

        This is `MatchesOrParentMatches` (fsutil's walker uses the equivalent
        `MatchesUsingParentResults`): a pattern hits when it matches the path or one of its
        parent directories, and the last pattern that hits decides (`!` re-includes).
        """
        if not self._matchers:
            return False
        mask = self._mask(relpath)
        parent = _go_dir(relpath)
        if parent != ".":
            mask |= self._parent_mask(parent)
        return bool(mask) and not self._exclusion[mask.bit_length() - 1]

    def _mask(self, path: str) -> int:
        """Bit i set when pattern i matches `path` itself."""
        mask = 0
        for index, matches in enumerate(self._matchers):
            if matches(path):
                mask |= 1 << index
        return mask

    def _parent_mask(self, directory: str) -> int:
        """Bit i set when pattern i matches `directory` or a directory above it (cached)."""
        cached = self._parents.get(directory)
        if cached is None:
            head, sep, _ = directory.rpartition("/")
            cached = self._mask(directory)
            if sep:
                cached |= self._parent_mask(head)
            self._parents[directory] = cached
        return cached


# --------------------------------------------------------------------------- COPY sources


def _contains_wildcards(part: str) -> bool:
    """fsutil copy's containsWildcards: an unescaped `*`, `?` or `[`."""
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 1
        elif part[i] in "*?[":
            return True
        i += 1
    return False


@dataclass(frozen=True)
class _CopySource:
    """A COPY source split as fsutil's splitWildcards does: literal base, then a glob."""

    base: str  # literal directory ("" for the context root) or, without glob, the whole path
    glob: re.Pattern[str] | None  # None: no wildcard, `base` itself is copied
    depth: int | None  # components a glob match has, when fixed (no class can match `/`)
    malformed: bool = False


@lru_cache(maxsize=4096)
def _copy_source(pattern: str) -> _CopySource:
    cleaned = go_clean("/" + pattern).lstrip("/")
    parts = cleaned.split("/") if cleaned else []
    split = next((i for i, part in enumerate(parts) if _contains_wildcards(part)), None)
    if split is None:
        return _CopySource("/".join(parts), None, None)
    glob = go_clean("/".join(parts[split:]))
    try:
        compiled = re.compile(_glob_regex(glob))
    except _BadPatternError:
        # resolveWildcards ignores Match's error: a malformed glob copies nothing
        return _CopySource("", None, None, malformed=True)
    depth = None if "[" in glob else glob.count("/") + 1
    return _CopySource("/".join(parts[:split]), compiled, depth)


def source_root(pattern: str) -> str | None:
    """The path every file that `COPY <pattern>` reads lies in or is, relative to the
    context ("" for all of it): `source_reads(pattern, p)` holds for no `p` outside it.
    None when the pattern reads nothing."""
    source = _copy_source(pattern)
    return None if source.malformed else source.base


def source_reads(pattern: str, relpath: str) -> bool:
    """Whether `COPY <pattern> ...` (or ADD) from a context reads the file `relpath`.

    `pattern` is the source as written, relative to the context (`.` is all of it).
    Without wildcards it names a file or a directory copied whole. With them, BuildKit
    (fsutil copy `ResolveWildcards`) keeps the path up to the first component holding an
    unescaped `*`, `?` or `[` literal, walks below it and copies every entry whose path
    matches the rest under Go's `filepath.Match`, a matching directory whole. So `*` never
    crosses `/` and `**` is just `*`: plain COPY has no recursive glob (only
    `COPY --parents` takes `**`, which this does not model).
    """
    source = _copy_source(pattern)
    if source.malformed:
        return False
    if source.glob is None:
        return not source.base or relpath == source.base or relpath.startswith(source.base + "/")
    rest = relpath
    if source.base:
        if not relpath.startswith(source.base + "/"):
            return False
        rest = relpath[len(source.base) + 1 :]
    components = rest.split("/")
    if source.depth is not None:
        if source.depth > len(components):
            return False
        return source.glob.match("/".join(components[: source.depth])) is not None
    return any(
        source.glob.match("/".join(components[:end])) is not None
        for end in range(1, len(components) + 1)
    )


def files_read(patterns: Sequence[str], files: Iterable[str], ignore: IgnoreMatcher) -> set[str]:
    """The context files some COPY source in `patterns` reads and the ignore file keeps."""
    return {
        rel
        for rel in files
        if any(source_reads(pattern, rel) for pattern in patterns) and not ignore.ignored(rel)
    }


@lru_cache(maxsize=256)
def _matcher_of(text: str) -> IgnoreMatcher:
    return IgnoreMatcher(tuple(read_ignore_text(text)))
