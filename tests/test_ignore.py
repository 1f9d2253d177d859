"""`.dockerignore` and COPY source matching, checked against the Go code BuildKit runs.

The tables marked "moby/patternmatcher" are copied from patternmatcher_test.go
(github.com/moby/patternmatcher, TestMatches, TestMatch, TestCompile) and
ignorefile/ignorefile_test.go (TestReadAll); their expectations are the Go results.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from buildpilot.ignore import (
    IgnoreMatcher,
    IgnorePatternError,
    _glob_regex,
    _patternmatcher_regex,
    files_read,
    go_clean,
    ignore_file_for,
    read_ignore_text,
    source_reads,
    source_root,
)

# moby/patternmatcher patternmatcher_test.go, TestMatches (checked with MatchesOrParentMatches:
# "exact" and "inexact" both mean matched). (pattern, path, ignored)
PATTERNMATCHER_MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        True,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
]

# moby/patternmatcher patternmatcher_test.go, TestMatches multiPatternTests.
PATTERNMATCHER_MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (
        ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        False,
    ),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
]

# moby/patternmatcher patternmatcher_test.go, matchTests ("stolen from go's filepath Match
# tests"), the ones without an error. (pattern, path, ignored)
PATTERNMATCHER_FILEPATH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", True),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-\u03b6]*", "\u03b1", True),
    ("*[a-\u03b6]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("*x", "xxx", True),
]

# moby/patternmatcher: the matchTests with ErrBadPattern, TestMatchesWithMalformedPatterns and
# TestSingleExclamationError; ignorefile turns " ! " into "!" too. BuildKit fails the build.
PATTERNMATCHER_BAD = [
    "[]a]",
    "[-]",
    "[x-]",
    "[-x]",
    "\\",
    "[a-b-c]",
    "[",
    "[^",
    "[^bc",
    "a[",
    "!",
    " ! ",
]

# moby/patternmatcher patternmatcher_test.go, compileTests (slash variant).
PATTERNMATCHER_COMPILE = [
    ("*", "regexp", "^[^/]*$"),
    ("file*", "regexp", "^file[^/]*$"),
    ("*file", "regexp", "^[^/]*file$"),
    ("a*/b", "regexp", "^a[^/]*/b$"),
    ("**", "suffix", None),
    ("**/**", "regexp", "^(.*/)?.*$"),
    ("dir/**", "prefix", None),
    ("**/dir", "suffix", None),
    ("**/dir2/*", "regexp", "^(.*/)?dir2/[^/]*$"),
    ("**/dir2/**", "regexp", "^(.*/)?dir2/.*$"),
    ("**file", "suffix", None),
    ("**/file*txt", "regexp", "^(.*/)?file[^/]*txt$"),
    ("**/**/*.txt", "regexp", "^(.*/)?(.*/)?[^/]*\\.txt$"),
    ("a[b-d]e", "regexp", "^a[b-d]e$"),
    (".*", "regexp", "^\\.[^/]*$"),
    ("abc.def", "exact", None),
    ("abc?def", "regexp", "^abc[^/]def$"),
    ("**/foo/bar", "suffix", None),
    ("a(b)c/def", "exact", None),
    ("a.|)$(}+{bc", "exact", None),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "exact", None),
]


def matcher(*patterns: str) -> IgnoreMatcher:
    return IgnoreMatcher.from_text("\n".join(patterns))


@pytest.mark.parametrize(("pattern", "path", "expected"), PATTERNMATCHER_MATCHES)
def test_patternmatcher_matches_table(pattern: str, path: str, expected: bool) -> None:
    assert matcher(pattern).ignored(path) is expected


@pytest.mark.parametrize(("patterns", "path", "expected"), PATTERNMATCHER_MULTI)
def test_patternmatcher_multi_pattern_table(patterns: list[str], path: str, expected: bool) -> None:
    assert matcher(*patterns).ignored(path) is expected


@pytest.mark.parametrize(("pattern", "path", "expected"), PATTERNMATCHER_FILEPATH)
def test_patternmatcher_filepath_table(pattern: str, path: str, expected: bool) -> None:
    assert matcher(pattern).ignored(path) is expected


@pytest.mark.parametrize("pattern", PATTERNMATCHER_BAD)
def test_patterns_buildkit_rejects_raise(pattern: str) -> None:
    with pytest.raises(IgnorePatternError):
        IgnoreMatcher((pattern,))


@pytest.mark.parametrize(("pattern", "kind", "regex"), PATTERNMATCHER_COMPILE)
def test_patternmatcher_compile_table(pattern: str, kind: str, regex: str | None) -> None:
    got_kind, got_regex = _patternmatcher_regex(pattern)
    assert got_kind == kind
    if regex is not None:
        assert got_regex == regex


def test_read_all_like_ignorefile() -> None:
    # ignorefile/ignorefile_test.go TestReadAll
    content = (
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    )
    assert read_ignore_text(content) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
        "!",
        "!",
    ]


def test_reading_cleans_trims_and_keeps_only_column_one_comments() -> None:
    text = "\ufeff./build/\r\n  node_modules  \n\t# not a comment\n#comment\n!./keep//me/.\n/\n"
    assert read_ignore_text(text) == ["build", "node_modules", "# not a comment", "!keep/me", "/"]
    assert matcher(" # x").ignored("# x")
    assert not matcher("#x").ignored("#x")


def test_patterns_attribute_shows_cleaned_patterns() -> None:
    ignore = matcher("/docs/", "", "!docs/README.md", "**/*.pyc")
    assert ignore.patterns == ("docs", "!docs/README.md", "**/*.pyc")
    assert IgnoreMatcher().patterns == ()


def test_later_pattern_wins_and_exclamation_reincludes() -> None:
    ignore = matcher("*.md", "!README.md", "docs", "!docs/keep.md")
    assert ignore.ignored("CHANGES.md")
    assert not ignore.ignored("README.md")
    assert ignore.ignored("docs/guide.md")
    assert not ignore.ignored("docs/keep.md")
    assert ignore.ignored("docs/sub/keep.md")  # `!docs/keep.md` names one path only
    # order matters: a re-inclusion before the exclusion is overridden
    assert matcher("!README.md", "*.md").ignored("README.md")
    # re-included directory, then excluded again inside it
    ignore = matcher("**", "!src", "src/**/*.pyc")
    assert not ignore.ignored("src/app/main.py")
    assert ignore.ignored("src/app/main.pyc")
    assert ignore.ignored("README.md")


def test_double_star_prefix_matches_at_any_depth_including_zero() -> None:
    ignore = matcher("**/__pycache__")
    assert ignore.ignored("__pycache__/x.pyc")
    assert ignore.ignored("a/b/__pycache__/x.pyc")
    assert not ignore.ignored("a/not__pycache__/x.pyc")
    ignore = matcher("**/*.log")
    assert ignore.ignored("x.log")
    assert ignore.ignored("a/b/x.log")
    assert not ignore.ignored("a/b/x.log.gz")
    # `**foo` is a plain suffix test in patternmatcher: it matches `barfoo` too
    assert matcher("**.txt").ignored("a/b/notes.txt")
    assert matcher("**foo").ignored("dir/barfoo")


def test_trailing_double_star_matches_contents_but_not_the_directory() -> None:
    ignore = matcher("build/**")
    assert ignore.ignored("build/x")
    assert ignore.ignored("build/a/b/c")
    assert not ignore.ignored("build")
    assert not ignore.ignored("buildx/y")


def test_directory_pattern_matches_everything_beneath() -> None:
    ignore = matcher("node_modules", "services/*/tmp")
    assert ignore.ignored("node_modules/a/b/c.js")
    assert not ignore.ignored("web/node_modules/a.js")  # no implicit `**/`
    assert ignore.ignored("services/stt/tmp/cache/x")
    assert not ignore.ignored("services/stt/src/tmp")
    assert matcher("*").ignored("a/b/c")  # `*` matches the top directory `a`
    assert not matcher("*/c").ignored("a/b/c")


def test_leading_slash_and_dot_slash_are_removed() -> None:
    for pattern in ("/secrets", "./secrets", "secrets/", "./secrets/./", "/./secrets"):
        ignore = matcher(pattern)
        assert ignore.ignored("secrets/key.pem"), pattern
        assert not ignore.ignored("app/secrets/key.pem"), pattern
    assert matcher("!/x", "*").ignored("x")
    assert not matcher("*", "! /x").ignored("x")


def test_star_question_mark_and_classes_stay_in_one_component() -> None:
    assert not matcher("a?b").ignored("a/b")
    assert matcher("file[0-9].txt").ignored("file7.txt")
    assert not matcher("file[0-9].txt").ignored("filex.txt")
    assert matcher("[!a]").ignored("!")  # `!` inside a class is a character, not negation
    assert not matcher("[!a]").ignored("b")
    assert matcher("v\\[1\\]").ignored("v[1]")


def test_regexp_escapes_have_their_go_meaning() -> None:
    # patternmatcher hands `\d` etc. to Go's regexp unchanged
    assert matcher("log\\d").ignored("log7")
    assert not matcher("log\\d").ignored("logd")
    assert matcher("[[:digit:]]x").ignored("5x")
    with pytest.raises(IgnorePatternError):
        IgnoreMatcher(("a\\x41",))
    with pytest.raises(IgnorePatternError):
        IgnoreMatcher(("[[:nope:]]",))


def test_dollar_is_end_of_text_not_before_a_newline() -> None:
    assert not matcher("*.txt").ignored("a.txt\n")


def test_empty_and_missing_ignore_files_ignore_nothing(tmp_path: Path) -> None:
    assert not IgnoreMatcher.from_file(None).ignored("anything")
    assert not IgnoreMatcher.from_file(tmp_path / "missing").ignored("anything")
    (tmp_path / ".dockerignore").write_text("# only a comment\n\n", encoding="utf-8")
    assert IgnoreMatcher.from_file(tmp_path / ".dockerignore").patterns == ()


def test_from_file_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".dockerignore"
    path.write_bytes(b"\xef\xbb\xbf*.pyc\r\n!keep.pyc\r\n")
    ignore = IgnoreMatcher.from_file(path)
    assert ignore.patterns == ("*.pyc", "!keep.pyc")
    assert ignore.ignored("x.pyc")
    assert not ignore.ignored("keep.pyc")


def test_ignore_file_for_prefers_the_dockerfile_specific_one(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    service = context / "services" / "stt"
    service.mkdir(parents=True)
    dockerfile = service / "Dockerfile"
    dockerfile.write_text("FROM scratch\n", encoding="utf-8")
    assert ignore_file_for(context, dockerfile) is None
    (context / ".dockerignore").write_text("*\n", encoding="utf-8")
    assert ignore_file_for(context, dockerfile) == context / ".dockerignore"
    (service / "Dockerfile.dockerignore").write_text("x\n", encoding="utf-8")
    assert ignore_file_for(context, dockerfile) == service / "Dockerfile.dockerignore"
    # only next to the Dockerfile, named after it; named contexts read only their own
    other = service / "Dockerfile.prod"
    assert ignore_file_for(context, other) == context / ".dockerignore"
    assert ignore_file_for(context, None) == context / ".dockerignore"
    (context / "Dockerfile.dockerignore").write_text("y\n", encoding="utf-8")
    assert ignore_file_for(context, dockerfile) == service / "Dockerfile.dockerignore"


def test_go_clean() -> None:
    cases = {
        "": ".",
        ".": ".",
        "./a/": "a",
        "a//b/./c/..": "a/b",
        "../a/../..": "../..",
        "/../a": "/a",
        "//x": "/x",
        "/": "/",
    }
    for path, cleaned in cases.items():
        assert go_clean(path) == cleaned, path


def test_ignored_is_fast_enough_for_a_large_monorepo() -> None:
    ignore = matcher(
        "**/node_modules", "**/*.pyc", ".git", "dist/**", "!dist/keep", "docs/*.md", "*.tmp"
    )
    files = [
        f"pkg{i % 50}/sub{i % 7}/mod{i}/file{i}.{('py', 'pyc', 'md')[i % 3]}" for i in range(50_000)
    ]
    start = time.perf_counter()
    hits = sum(ignore.ignored(f) for f in files)
    assert time.perf_counter() - start < 5
    assert hits == len([f for f in files if f.endswith(".pyc")])


# --------------------------------------------------------------------------- COPY


COPY_CASES = [
    # COPY . .
    (".", "a.txt", True),
    (".", "deep/dir/file", True),
    # a file, exactly
    ("requirements.txt", "requirements.txt", True),
    ("requirements.txt", "requirements.txt.bak", False),
    ("requirements.txt", "sub/requirements.txt", False),
    # a directory, whole (`COPY src/ /app`)
    ("src/", "src/main.py", True),
    ("src", "src/pkg/mod.py", True),
    ("src", "src", True),
    ("src", "srcx/main.py", False),
    ("src", "other/src/main.py", False),
    ("./src/./pkg", "src/pkg/a.py", True),
    # COPY *.txt
    ("*.txt", "a.txt", True),
    ("*.txt", ".hidden.txt", True),
    ("*.txt", "dir/a.txt", False),
    ("*.txt", "a.txt.gz", False),
    # COPY services/*/requirements.txt
    ("services/*/requirements.txt", "services/stt/requirements.txt", True),
    ("services/*/requirements.txt", "services/requirements.txt", False),
    ("services/*/requirements.txt", "services/a/b/requirements.txt", False),
    ("services/*/requirements.txt", "other/stt/requirements.txt", False),
    # a wildcard that names directories copies them whole
    ("services/*", "services/stt/src/main.py", True),
    ("packages/*/src", "packages/core/src/x/y.py", True),
    ("packages/*/src", "packages/core/tests/test.py", False),
    # `**` is not recursive in plain COPY: it is `*`, one component
    ("**/*.py", "a/b.py", True),
    ("**/*.py", "b.py", False),
    ("**/*.py", "a/b/c.py", False),
    ("**", "anything/at/all", True),
    # paths with spaces (`COPY ["a b.txt", "/x"]`)
    ("a b.txt", "a b.txt", True),
    ("a b.txt", "a", False),
    ("my dir/*.txt", "my dir/x y.txt", True),
    # classes and `?`
    ("[ab].txt", "a.txt", True),
    ("[ab].txt", "c.txt", False),
    ("[^ab].txt", "c.txt", True),
    ("file?.txt", "file1.txt", True),
    ("file?.txt", "file10.txt", False),
    ("v[0-9]/*", "v1/x", True),
    # escapes: inside a wildcard component they are literal; a component without a
    # wildcard is used as written (backslash included) by fsutil
    ("\\*x*", "*xy", True),
    ("\\*x*", "axy", False),
    # a malformed wildcard copies nothing (fsutil ignores filepath.Match's error)
    ("[", "[", False),
    ("a[", "a[", False),
]


@pytest.mark.parametrize(("source", "path", "expected"), COPY_CASES)
def test_source_reads(source: str, path: str, expected: bool) -> None:
    assert source_reads(source, path) is expected


@pytest.mark.parametrize(("source", "path", "expected"), COPY_CASES)
def test_what_a_source_reads_lies_under_its_root(source: str, path: str, expected: bool) -> None:
    root = source_root(source)
    if expected:
        assert root is not None
        assert root in ("", path) or path.startswith(root + "/")
    if root is None:
        assert not expected


def test_double_star_in_copy_is_a_single_component_star() -> None:
    # fsutil resolves wildcards with filepath.Match, where `**` is two `*`: `**/*.py` is
    # `*/*.py`, files exactly one directory down, plus everything in a directory it names
    assert source_reads("**/*.py", "a/b.py")
    assert not source_reads("**/*.py", "b.py")
    assert not source_reads("**/*.py", "a/b/c.py")
    assert not source_reads("**/*.py", "a/b/c.txt")
    assert source_reads("**/*.py", "a/pkg.py/c.txt")  # `a/pkg.py` is a matching directory


def test_classes_may_match_a_slash_as_in_go() -> None:
    # Go's filepath.Match lets a class match `/`; fsutil then walks and matches full paths
    assert source_reads("a[/]b", "a/b")
    assert source_reads("x[^q]y", "x/y")


def test_files_read_applies_the_ignore_file() -> None:
    files = [
        "Dockerfile",
        ".dockerignore",
        "requirements.txt",
        "src/app.py",
        "src/app.pyc",
        "src/__pycache__/app.cpython-311.pyc",
        "docs/index.md",
        "services/stt/requirements.txt",
    ]
    ignore = matcher("**/*.pyc", "**/__pycache__", "Dockerfile", ".dockerignore")
    assert files_read(["."], files, ignore) == {
        "requirements.txt",
        "src/app.py",
        "docs/index.md",
        "services/stt/requirements.txt",
    }
    assert files_read(["requirements.txt", "src/"], files, ignore) == {
        "requirements.txt",
        "src/app.py",
    }
    assert files_read(["services/*/requirements.txt"], files, IgnoreMatcher()) == {
        "services/stt/requirements.txt"
    }
    assert files_read([], files, ignore) == set()


# ------------------------------------------- filepath.Match oracle: a line-by-line port


class GoBadPatternError(ValueError):
    """filepath.ErrBadPattern."""


def _go_get_esc(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise GoBadPatternError
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise GoBadPatternError
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise GoBadPatternError
    return r, rest


def _go_match_class(chunk: str, r: str) -> tuple[str, bool]:
    """The `[...]` case of matchChunk, after the `[`: the rest of the chunk and a match."""
    negated = chunk.startswith("^")
    if negated:
        chunk = chunk[1:]
    match = False
    nrange = 0
    while True:
        if chunk.startswith("]") and nrange > 0:
            return chunk[1:], match != negated
        lo, chunk = _go_get_esc(chunk)
        hi = lo
        if chunk[0] == "-":
            hi, chunk = _go_get_esc(chunk[1:])
        if r and lo <= r <= hi:
            match = True
        nrange += 1


def _go_match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk, matched = _go_match_class(chunk[1:], r)
            failed = failed or not matched
        elif c == "?":
            if not failed:
                failed = s[0] == "/"
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise GoBadPatternError
            if not failed:
                failed = chunk[0] != s[0]
                s = s[1:]
            chunk = chunk[1:]
    return ("", False) if failed else (s, True)


def _go_scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern, star = pattern[1:], True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _go_match(pattern: str, name: str) -> bool:
    """Go 1.22 path/filepath.Match, ported statement by statement."""
    while pattern:
        star, chunk, pattern = _go_scan_chunk(pattern)
        if star and not chunk:
            return "/" not in name
        t, ok = _go_match_chunk(chunk, name)
        if ok and (not t or pattern):
            name = t
            continue
        found = False
        if star:
            i = 0
            while i < len(name) and name[i] != "/":
                t, ok = _go_match_chunk(chunk, name[i + 1 :])
                if ok:
                    if not pattern and t:
                        i += 1
                        continue
                    name, found = t, True
                    break
                i += 1
        if found:
            continue
        while pattern:
            _, chunk, pattern = _go_scan_chunk(pattern)
            _go_match_chunk(chunk, "")
        return False
    return not name


def test_compiled_glob_agrees_with_a_port_of_go_filepath_match() -> None:
    rng = random.Random(20240611)  # noqa: S311 - reproducible, not secret
    alphabet = "ab/*?[]^-\\"
    names = ["".join(rng.choice("ab/-^]") for _ in range(rng.randrange(6))) for _ in range(60)]
    checked = 0
    for _ in range(3000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 8)))
        try:
            compiled = re.compile(_glob_regex(pattern))
        except ValueError:
            with pytest.raises(GoBadPatternError):  # Go reports it whatever the name
                _go_match(pattern, "")
            continue
        for name in names:
            assert (compiled.match(name) is not None) == _go_match(pattern, name), (
                pattern,
                name,
            )
            checked += 1
    assert checked > 10_000
