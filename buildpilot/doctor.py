"""`buildpilot doctor`: static checks of each image's Dockerfile and build context.

Every rule (BP001 ...) is a small pure function over `ImageFacts`, what doctor read of one
image: its Dockerfile (the text, for comments, and BuildKit's model of it), its config
entry, and the local build contexts it copies from (the files their ignore file keeps and
the large or volatile folders it does not). `gather` is the only part that reads files;
`evaluate` applies the rules, `doctor.disable` from the config and the inline
`# buildpilot: ignore BP003` comments. RUN commands are read with a small tokenizer that
finds package-manager calls, `rm` and the files a step writes: enough for these rules,
not a shell.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import shlex
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from buildpilot.config import IMAGE_CONTEXT_PREFIX, Project
from buildpilot.dockerfile import (
    DockerfileError,
    DockerfileModel,
    Instruction,
    Source,
    Stage,
    parse_dockerfile,
)
from buildpilot.doctor_options import Severity
from buildpilot.errors import ConfigError, UnknownImageError
from buildpilot.ignore import IgnoreMatcher, ignore_file_for, source_reads


@dataclass(frozen=True)
class Finding:
    """One problem: where, which rule, how bad, what it costs and how to fix it.

    `file` is the Dockerfile relative to the config's directory; `line`..`end_line` are the
    instruction's lines (or the parser directive's).
    """

    image: str
    file: str
    line: int
    end_line: int
    rule: str
    severity: Severity
    title: str
    message: str
    why: str
    fix: str


@dataclass(frozen=True)
class Hit:
    """What a rule found at one instruction; `severity` and `fix` override the rule's."""

    line: int
    end_line: int
    message: str
    severity: Severity | None = None
    fix: str | None = None


@dataclass(frozen=True)
class ContextFacts:
    """A local build context as a build sees it.

    `files` are the files its ignore file keeps (large or volatile folders not entered),
    `volatile` the large or volatile entries (`.git`, `node_modules`, `*.log`, ...) that
    exist and that the ignore file keeps, `manifests` the text of the dependency files
    (requirements, constraints, lock files) among `files`.
    """

    path: str
    ignore_file: str | None
    files: frozenset[str] = frozenset()
    volatile: tuple[str, ...] = ()
    manifests: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ImageFacts:
    """Everything the rules look at for one image; built by `gather`, never read from disk.

    `needed` are the stages the target builds, `chain` the target stage and the stages it
    is built FROM (what the shipped image is made of), base first. `contexts` maps "" (the
    build context) and the names of local named contexts to what is in them.
    """

    name: str
    dockerfile: str
    text: str
    model: DockerfileModel
    needed: tuple[Stage, ...]
    chain: tuple[Stage, ...]
    gpu: bool | None
    release: bool
    contexts: Mapping[str, ContextFacts] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Rule:
    """A check: its id, default severity, what it is about, what it costs, how to fix it."""

    id: str
    severity: Severity
    title: str
    why: str
    fix: str
    check: Callable[[ImageFacts], Iterable[Hit]]


@dataclass(frozen=True)
class ImageReport:
    """The findings of one image, the severity that fails it and how many were silenced."""

    image: str
    dockerfile: str
    threshold: Severity
    findings: tuple[Finding, ...]
    suppressed: int = 0


@dataclass(frozen=True)
class DoctorReport:
    """The result of `buildpilot doctor`: one report per image checked, in config order."""

    images: tuple[ImageReport, ...]
    release: bool = False

    def findings(self) -> list[Finding]:
        """Every finding of every image."""
        return [finding for image in self.images for finding in image.findings]

    def failing(self) -> list[Finding]:
        """The findings at or above their image's threshold."""
        return [
            finding
            for image in self.images
            for finding in image.findings
            if finding.severity.at_least(image.threshold)
        ]


# --- the public entry points ------------------------------------------------------------


def check_image(project: Project, name: str, *, release: bool = False) -> list[Finding]:
    """The findings for image `name`, after the config's `disable` and inline ignores."""
    return list(_check(project, name, release=release, severity=None).findings)


def run_doctor(
    project: Project,
    names: Sequence[str] = (),
    *,
    release: bool = False,
    severity: Severity | None = None,
) -> DoctorReport:
    """Check `names` (default: every image). `severity` overrides each image's threshold."""
    known = project.config.images
    for name in names:
        if name not in known:
            raise UnknownImageError(
                f"unknown image '{name}'", hint="Known images: " + ", ".join(sorted(known))
            )
    selected = list(dict.fromkeys(names)) or list(known)
    return DoctorReport(
        images=tuple(
            _check(project, name, release=release, severity=severity) for name in selected
        ),
        release=release,
    )


def exit_code(report: DoctorReport) -> int:
    """1 when a finding is at or above its image's threshold, else 0."""
    return 1 if report.failing() else 0


def _check(project: Project, name: str, *, release: bool, severity: Severity | None) -> ImageReport:
    settings = project.image(name).doctor
    unknown = sorted(set(settings.disable) - RULE_IDS)
    if unknown:
        raise ConfigError(
            [
                f"{project.path}: images.{name}.doctor.disable: unknown rule "
                f"{', '.join(unknown)}; known: {', '.join(sorted(RULE_IDS))}"
            ]
        )
    facts = gather(project, name, release=release)
    findings, suppressed = evaluate(facts, disabled=settings.disable)
    return ImageReport(
        image=name,
        dockerfile=facts.dockerfile,
        threshold=severity if severity is not None else Severity(settings.severity),
        findings=tuple(findings),
        suppressed=suppressed,
    )


# --- reading an image: the only I/O -------------------------------------------------------

# Large or volatile entries a broad COPY should not send; `.git` and `data` count only at
# the top of a context (a nested `data/` is often package data), the others anywhere.
VOLATILE_DIRS = frozenset(
    {"node_modules", "__pycache__", ".venv", "venv", "logs", ".mypy_cache", ".pytest_cache"}
)
TOP_LEVEL_VOLATILE = frozenset({".git", "data"})
_MANIFEST = re.compile(
    r"^(?:.*requirements.*\.txt|constraints.*\.txt|.*\.lock|pylock(?:\..*)?\.toml)$"
)
_MANIFEST_MAX_BYTES = 4 * 1024 * 1024


def gather(project: Project, name: str, *, release: bool = False) -> ImageFacts:
    """Read what the rules need of image `name`: its Dockerfile and the contexts it copies."""
    image = project.image(name)
    path = project.dockerfile(name)
    shown = _shown(path, project.root)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DockerfileError(shown, None, f"cannot read: {exc}") from None
    model = parse_dockerfile(
        text, path=shown, build_args=image.args, named_contexts=tuple(image.contexts)
    )
    needed = tuple(model.needed_stages(image.target))
    contexts: dict[str, ContextFacts] = {}
    for key in _contexts_read(needed):
        directory = _local_directory(project, name, key)
        if directory is not None and directory.is_dir():
            own = path if key == "" else None  # named contexts read only their .dockerignore
            contexts[key] = _context_facts(directory, own, project.root)
    return ImageFacts(
        name=name,
        dockerfile=shown,
        text=text,
        model=model,
        needed=needed,
        chain=tuple(_chain(model, image.target)),
        gpu=image.gpu,
        release=release,
        contexts=contexts,
    )


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _contexts_read(stages: Iterable[Stage]) -> list[str]:
    """ "" for the build context and the named contexts that some step reads."""
    keys: dict[str, None] = {}
    for stage in stages:
        for instruction in stage.instructions:
            for source in instruction.sources:
                if source.kind == "context":
                    keys[""] = None
                elif source.kind == "named" and source.ref is not None:
                    keys[source.ref] = None
    return list(keys)


def _local_directory(project: Project, name: str, key: str) -> Path | None:
    """The directory behind a context name; None for images and remote contexts."""
    if key == "":
        return project.context_dir(name)
    contexts = project.image(name).contexts
    value = contexts.get(key) or contexts.get(key.lower(), "")
    if not value or value.startswith(IMAGE_CONTEXT_PREFIX) or "://" in value:
        return None
    return (project.root / value).resolve()


def _is_volatile(rel: str, name: str, *, is_dir: bool) -> bool:
    if is_dir and name in VOLATILE_DIRS:
        return True
    if "/" not in rel and name in TOP_LEVEL_VOLATILE and (is_dir or name == ".git"):
        return True
    return not is_dir and name.endswith(".log")


def _context_facts(directory: Path, dockerfile: Path | None, root: Path) -> ContextFacts:
    ignore_path = ignore_file_for(directory, dockerfile)
    matcher = IgnoreMatcher.from_file(ignore_path)
    # Without `!` patterns nothing below an ignored directory comes back: skip it whole.
    prune = not any(pattern.startswith("!") for pattern in matcher.patterns)
    files: set[str] = set()
    volatile: list[str] = []
    manifests: dict[str, str] = {}
    for current, dirnames, filenames in os.walk(directory):
        base = Path(current).relative_to(directory).as_posix()
        prefix = "" if base == "." else base + "/"
        kept: list[str] = []
        for entry in sorted(dirnames):
            rel = prefix + entry
            if _is_volatile(rel, entry, is_dir=True):
                if not matcher.ignored(rel):
                    volatile.append(rel)
            elif not (prune and matcher.ignored(rel)):
                kept.append(entry)
        dirnames[:] = kept
        for entry in sorted(filenames):
            rel = prefix + entry
            if matcher.ignored(rel):
                continue
            if _is_volatile(rel, entry, is_dir=False):
                volatile.append(rel)
                continue
            files.add(rel)
            full = Path(current) / entry
            if _MANIFEST.match(entry) and _small_file(full):
                manifests[rel] = full.read_text(encoding="utf-8", errors="replace")
    return ContextFacts(
        path=_shown(directory, root),
        ignore_file=None if ignore_path is None else _shown(ignore_path, root),
        files=frozenset(files),
        volatile=tuple(sorted(volatile)),
        manifests=manifests,
    )


def _small_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size <= _MANIFEST_MAX_BYTES


def _chain(model: DockerfileModel, target: str | None) -> list[Stage]:
    """The target stage and the stages it is built FROM, base first."""
    stage: Stage | None = model.target_stage(target)
    chain: list[Stage] = []
    while stage is not None and not stage.overridden:
        chain.insert(0, stage)
        stage = None if stage.base_stage is None else model.stages[stage.base_stage]
    return chain


# --- applying the rules -----------------------------------------------------------------

_IGNORE_COMMENT = re.compile(r"#\s*buildpilot:\s*ignore\b([^#\n]*)", re.IGNORECASE)
_RULE_ID = re.compile(r"\bBP[0-9]{3}\b", re.IGNORECASE)
ALL_RULES = "*"


def evaluate(facts: ImageFacts, *, disabled: Collection[str] = ()) -> tuple[list[Finding], int]:
    """Apply every rule not `disabled`; drop what inline comments ignore.

    Returns the findings, by line, and how many an inline comment silenced.
    """
    ignores = inline_ignores(facts.text)
    lines = facts.text.splitlines()
    findings: list[Finding] = []
    suppressed = 0
    for rule in RULES:
        if rule.id in disabled:
            continue
        for hit in rule.check(facts):
            if _silenced(ignores, lines, rule.id, hit):
                suppressed += 1
                continue
            findings.append(
                Finding(
                    image=facts.name,
                    file=facts.dockerfile,
                    line=hit.line,
                    end_line=hit.end_line,
                    rule=rule.id,
                    severity=hit.severity or rule.severity,
                    title=rule.title,
                    message=hit.message,
                    why=rule.why,
                    fix=hit.fix or rule.fix,
                )
            )
    findings.sort(key=lambda f: (f.line, f.rule))
    return findings, suppressed


def inline_ignores(text: str) -> dict[int, frozenset[str]]:
    """Line -> rule ids a `# buildpilot: ignore BP001 BP003` comment names (`*` for all)."""
    found: dict[int, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _IGNORE_COMMENT.search(line)
        if match is not None:
            ids = frozenset(rule.upper() for rule in _RULE_ID.findall(match[1]))
            found[number] = ids or frozenset({ALL_RULES})
    return found


def _silenced(
    ignores: Mapping[int, frozenset[str]], lines: Sequence[str], rule: str, hit: Hit
) -> bool:
    """An ignore comment on the instruction's lines, or in the comment lines just above it.

    A finding on a comment line (a parser directive) also looks just below it, since
    nothing may come before a directive.
    """
    if not ignores:
        return False

    def is_comment(number: int) -> bool:
        return 1 <= number <= len(lines) and lines[number - 1].lstrip().startswith("#")

    candidates = list(range(hit.line, hit.end_line + 1))
    above = hit.line - 1
    while is_comment(above):
        candidates.append(above)
        above -= 1
    if is_comment(hit.line):
        below = hit.end_line + 1
        while is_comment(below):
            candidates.append(below)
            below += 1
    return any(
        rule in ignores.get(number, ()) or ALL_RULES in ignores.get(number, ())
        for number in candidates
    )


# --- reading RUN commands -----------------------------------------------------------------

_SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh"})
_PREFIX_WORDS = frozenset(
    {"if", "then", "else", "elif", "do", "while", "until", "time", "exec", "nohup", "sudo", "env"}
)
_SKIP_COMMANDS = frozenset({"fi", "done", "esac", "for", "case", "in", "function", "{", "}"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATOR_CHARS = frozenset("();<>|&")
_HEREDOC_MARK = re.compile(r"^<<-?\s*['\"]?[A-Za-z0-9_]+['\"]?$")
_PIP = re.compile(r"^pip(?:3(?:\.[0-9]+)?)?$")
_PYTHON = re.compile(r"^python(?:3(?:\.[0-9]+)?)?$")
_SUB_TOOLS = frozenset({"pip", "uv", "poetry", "npm", "yarn", "pnpm", "apt-get", "apk"})
_TWO_WORD_SUBS = {
    "uv": frozenset({"pip", "tool", "cache"}),
    "pip": frozenset({"cache"}),
    "npm": frozenset({"cache"}),
    "yarn": frozenset({"cache"}),
    "apk": frozenset({"cache"}),
}
# Options that take a value, before or after the subcommand.
_VALUE_OPTIONS = frozenset(
    {
        *("-o", "-c", "-t", "-X", "-p", "-r", "-e", "-i", "-f", "-w", "-C"),
        *("--repository", "--root", "--virtual", "--cache-dir", "--directory", "--project"),
        *("--prefix", "--cwd", "--cache-folder", "--cache", "--config-file", "--python"),
        *("--requirement", "--constraint", "--editable", "--index-url", "--extra-index-url"),
        *("--find-links", "--target", "--platform", "--python-version", "--implementation"),
        *("--abi", "--src", "--upgrade-strategy", "--progress-bar", "--trusted-host"),
        *("--cert", "--client-cert", "--proxy", "--timeout", "--retries", "--log"),
        *("--report", "--config-settings", "--global-option", "--no-binary", "--only-binary"),
        *("--exists-action", "--root-user-action", "--index", "--default-index"),
        *("--torch-backend", "--extra", "--group", "--package", "--registry", "--workspace"),
        *("--omit", "--include", "--target-release", "--arch", "--output", "-O", "-P"),
        *("--with", "--only", "--without"),
    }
)
_TOOL_VALUE_OPTIONS = {
    "curl": frozenset(
        {
            *("-o", "--output", "-H", "--header", "-d", "--data", "-u", "--user", "-X"),
            *("-A", "-e", "-m", "-w", "-x", "--proxy", "-T", "--retry", "--cacert"),
            *("--connect-timeout", "--max-time"),
        }
    ),
    "wget": frozenset(
        {
            *("-O", "--output-document", "-P", "--directory-prefix", "-o", "--output-file"),
            *("-t", "--tries", "-T", "--timeout", "-U", "--header"),
        }
    ),
    "git": frozenset({"-b", "--branch", "--depth", "-c", "-C", "--config", "--filter", "-o"}),
    "cp": frozenset({"-t", "--target-directory", "-S", "--suffix"}),
    "mv": frozenset({"-t", "--target-directory", "-S", "--suffix"}),
    "ln": frozenset({"-t", "--target-directory", "-S", "--suffix"}),
    "mkdir": frozenset({"-m", "--mode"}),
    "touch": frozenset({"-d", "--date", "-t", "-r", "--reference"}),
}


@dataclass(frozen=True)
class _Tool:
    """One simple command: the program, its subcommand ("" when none), the other words."""

    name: str
    sub: str
    args: tuple[str, ...]
    writes: tuple[str, ...]  # targets of > and >>
    text: str

    def has(self, *flags: str) -> bool:
        """Whether one of `flags` is given (bare or as `--flag=value`)."""
        return any(
            word == flag or word.startswith(flag + "=") for word in self.args for flag in flags
        )

    def values(self, *options: str) -> list[str]:
        """The values of `options` (`--opt value` or `--opt=value`)."""
        found: list[str] = []
        for index, word in enumerate(self.args):
            for option in options:
                if word == option and index + 1 < len(self.args):
                    found.append(self.args[index + 1])
                elif word.startswith(option + "=") and option.startswith("--"):
                    found.append(word[len(option) + 1 :])
        return found

    @property
    def value_options(self) -> frozenset[str]:
        """The options of this program that take a value."""
        if self.name in _SUB_TOOLS:
            return _VALUE_OPTIONS
        return _TOOL_VALUE_OPTIONS.get(self.name, frozenset())

    def positionals(self) -> list[str]:
        """The words that are neither options nor option values."""
        out: list[str] = []
        skip = False
        for word in self.args:
            if skip:
                skip = False
            elif word.startswith("-") and len(word) > 1:
                skip = "=" not in word and word in self.value_options
            else:
                out.append(word)
        return out


@dataclass(frozen=True)
class _Run:
    """A RUN step's commands and the state they run in."""

    tools: tuple[_Tool, ...]
    env: Mapping[str, str] = field(hash=False)
    workdir: str | None
    kept_out: tuple[str, ...]  # targets of cache and tmpfs mounts: never in the layer


@lru_cache(maxsize=1024)
def _run(instruction: Instruction) -> _Run:
    """The RUN's commands, from the canonical key dockerfile.py built for it."""
    key: dict[str, Any] = json.loads(instruction.key)
    words = [str(word) for word in key["command"]]
    heredocs = [str(content) for _, content in key["heredocs"]]
    scripts: list[str] = []
    commands: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    if key["json"]:
        name = posixpath.basename(words[0]) if words else ""
        if name in _SHELLS and len(words) >= 3 and words[1].startswith("-") and "c" in words[1]:
            scripts.append(words[2])
        else:
            commands.append((tuple(words), ()))
    else:
        line = " ".join(words)
        scripts.append(line)
        rest = [word for word in line.split() if not _HEREDOC_MARK.match(word)]
        if heredocs and (not rest or posixpath.basename(rest[0]) in _SHELLS):
            scripts.extend(heredocs)
    for script in scripts:
        commands.extend(_simple_commands(script))
    env = {str(k): str(v) for k, v in key["env"]}
    kept_out = tuple(
        str(mount["target"])
        for mount in key["mounts"]
        if str(mount.get("type", "")).lower() in {"cache", "tmpfs"} and mount.get("target")
    )
    tools = tuple(tool for cmd, writes in commands if (tool := _tool(cmd, writes)) is not None)
    return _Run(tools=tools, env=env, workdir=key["workdir"], kept_out=kept_out)


def _simple_commands(script: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Split a shell script into simple commands: (words, files written with > or >>)."""
    out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for line in script.replace("\\\n", " ").split("\n"):
        tokens = _tokens(_strip_comment(line))
        words: list[str] = []
        writes: list[str] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            is_operator = set(token) <= _OPERATOR_CHARS
            if is_operator and set(token) & {"<", ">"}:
                target = tokens[index + 1] if index + 1 < len(tokens) else ""
                if _writes_file(token, target):
                    writes.append(target)
                index += 2
                continue
            if (
                token.isdigit()
                and index + 1 < len(tokens)
                and set(tokens[index + 1]) <= {">", "<", "&"}
            ):
                index += 1
                continue
            if is_operator:
                out.append((tuple(words), tuple(writes)))
                words, writes = [], []
            else:
                words.append(token)
            index += 1
        out.append((tuple(words), tuple(writes)))
    return [(words, writes) for words, writes in out if words or writes]


def _writes_file(operator: str, target: str) -> bool:
    """`> file` and `>> file` write a file; `2>&1`, `> /dev/null` and `< file` do not."""
    if ">" not in operator or operator.endswith("&"):
        return False
    return bool(target) and not target.startswith(("/dev/", "&"))


def _strip_comment(line: str) -> str:
    """Cut a `#` comment: at the start of a word, outside quotes."""
    quote = ""
    previous = " "
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in {"'", '"'}:
            quote = char
        elif char == "#" and previous.isspace():
            return line[:index]
        previous = char
    return line


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: words are still words
        return line.split()


def _tool(words: Sequence[str], writes: Sequence[str]) -> _Tool | None:
    rest = list(words)
    while rest and (rest[0] in _PREFIX_WORDS or _ASSIGNMENT.match(rest[0])):
        rest.pop(0)
    if not rest or rest[0] in _SKIP_COMMANDS:
        return _Tool("", "", (), tuple(writes), "") if writes else None
    text = " ".join(rest)
    name = posixpath.basename(rest[0])
    args = rest[1:]
    if _PYTHON.match(name) and len(args) >= 2 and args[0] == "-m":
        name, args = args[1], args[2:]
    if _PIP.match(name):
        name = "pip"
    elif name in {"apt", "aptitude"}:
        name = "apt-get"
    sub = ""
    if name in _SUB_TOOLS:
        sub, args = _subcommand(name, args)
    return _Tool(name, sub, tuple(args), tuple(writes), text)


def _subcommand(name: str, args: list[str]) -> tuple[str, list[str]]:
    """The subcommand words ("install", "pip install") and the remaining words."""
    two_words = _TWO_WORD_SUBS.get(name, frozenset())
    parts: list[str] = []
    rest = list(args)
    index = 0
    while index < len(rest):
        word = rest[index]
        if word.startswith("-"):
            index += 2 if word in _VALUE_OPTIONS and "=" not in word else 1
            continue
        parts.append(rest.pop(index))
        if len(parts) == 2 or parts[0] not in two_words:
            break
    return " ".join(parts), rest


# --- package installs ---------------------------------------------------------------------

_INSTALL_SUBS = {
    "pip": frozenset({"install"}),
    "uv": frozenset({"pip install", "pip sync", "sync", "add", "tool install"}),
    "poetry": frozenset({"install", "add"}),
    "npm": frozenset({"install", "i", "ci", "add"}),
    "yarn": frozenset({"", "install", "add"}),
    "pnpm": frozenset({"install", "i", "add", "fetch"}),
    "apt-get": frozenset({"install"}),
    "apk": frozenset({"add"}),
}
_FAMILY = {
    "pip": "python",
    "uv": "python",
    "poetry": "python",
    "npm": "node",
    "yarn": "node",
    "pnpm": "node",
    "apt-get": "system",
    "apk": "system",
}


@dataclass(frozen=True)
class _Install:
    """A package-manager install: what it installs and whether it reads a manifest."""

    tool: _Tool
    family: str
    packages: tuple[str, ...]  # named packages (not local paths, not manifests)
    reads_manifest: bool  # requirements, lock or project files: the dependencies
    project_only: bool  # --no-deps and the like: installs the code alone


def _install(tool: _Tool) -> _Install | None:
    if tool.sub not in _INSTALL_SUBS.get(tool.name, frozenset()):
        return None
    family = _FAMILY[tool.name]
    positionals = tool.positionals()
    if tool.name == "pip" or tool.sub == "pip install":
        local = [p for p in positionals if _is_local(p)] + tool.values("-e", "--editable")
        requirements = tool.values("-r", "--requirement")
        return _Install(
            tool,
            family,
            tuple(p for p in positionals if not _is_local(p)),
            reads_manifest=bool(local or requirements),
            project_only=tool.has("--no-deps"),
        )
    if tool.sub in {"add", "tool install"} or (tool.sub in {"install", "i"} and positionals):
        named = tuple(p for p in positionals if not _is_local(p))
        return _Install(tool, family, named, reads_manifest=not named, project_only=False)
    return _Install(tool, family, (), reads_manifest=True, project_only=tool.has("--only-root"))


def _is_local(spec: str) -> bool:
    return spec.startswith((".", "/", "file:")) or spec.endswith((".whl", ".tar.gz", ".zip"))


def _installs(run: _Run) -> list[_Install]:
    return [install for tool in run.tools if (install := _install(tool)) is not None]


def _package_name(spec: str) -> str:
    """`gcc=4:12.2`, `torch==2.3.0+cpu`, `libpq-dev:amd64` -> the bare package name."""
    return re.split(r"[=<>!~\[;:@ ]", spec, maxsplit=1)[0].lower()


# --- caches a package manager leaves in a layer ----------------------------------------------


@dataclass(frozen=True)
class _CachePolicy:
    """Where a package manager keeps its cache and what keeps it out of the layer."""

    label: str
    dirs: tuple[str, ...]  # as root
    home_suffix: str | None  # `.cache/pip`: a mount on any ~/.cache or ~/.cache/pip
    dir_env: tuple[str, ...] = ()
    dir_options: tuple[str, ...] = ()
    no_cache_flags: tuple[str, ...] = ()
    no_cache_env: tuple[str, ...] = ()
    cleanups: tuple[str, ...] = ()  # "tool sub" of commands that empty it
    fix: str = ""


_POLICIES = {
    "pip": _CachePolicy(
        "pip's download and wheel cache",
        ("/root/.cache/pip",),
        ".cache/pip",
        dir_env=("PIP_CACHE_DIR",),
        dir_options=("--cache-dir",),
        no_cache_flags=("--no-cache-dir",),
        no_cache_env=("PIP_NO_CACHE_DIR",),
        cleanups=("pip cache purge",),
        fix="RUN --mount=type=cache,target=/root/.cache/pip pip install ... (kept between "
        "builds, never in the image), or pip install --no-cache-dir.",
    ),
    "uv": _CachePolicy(
        "uv's cache",
        ("/root/.cache/uv",),
        ".cache/uv",
        dir_env=("UV_CACHE_DIR",),
        dir_options=("--cache-dir",),
        no_cache_flags=("--no-cache", "-n"),
        no_cache_env=("UV_NO_CACHE",),
        cleanups=("uv cache clean",),
        fix="RUN --mount=type=cache,target=/root/.cache/uv uv ... (kept between builds, never "
        "in the image), or uv --no-cache / UV_NO_CACHE=1.",
    ),
    "poetry": _CachePolicy(
        "poetry's cache",
        ("/root/.cache/pypoetry",),
        ".cache/pypoetry",
        dir_env=("POETRY_CACHE_DIR",),
        no_cache_flags=("--no-cache",),
        fix="RUN --mount=type=cache,target=/root/.cache/pypoetry poetry install ..., or "
        "poetry install --no-cache.",
    ),
    "npm": _CachePolicy(
        "npm's cache",
        ("/root/.npm",),
        ".npm",
        dir_env=("npm_config_cache", "NPM_CONFIG_CACHE"),
        dir_options=("--cache",),
        cleanups=("npm cache clean",),
        fix="RUN --mount=type=cache,target=/root/.npm npm ci ..., or end the same RUN with "
        "&& npm cache clean --force.",
    ),
    "yarn": _CachePolicy(
        "yarn's cache",
        ("/usr/local/share/.cache/yarn", "/root/.cache/yarn"),
        ".cache/yarn",
        dir_env=("YARN_CACHE_FOLDER",),
        dir_options=("--cache-folder",),
        cleanups=("yarn cache clean",),
        fix="RUN --mount=type=cache,target=/usr/local/share/.cache/yarn yarn install ..., or "
        "end the same RUN with && yarn cache clean.",
    ),
    "apt-get": _CachePolicy(
        "the apt package lists (/var/lib/apt/lists)",
        ("/var/lib/apt/lists",),
        None,
        fix="End the RUN with && rm -rf /var/lib/apt/lists/*, or mount caches: "
        "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked "
        "--mount=type=cache,target=/var/lib/apt,sharing=locked apt-get update && ...",
    ),
    "apk": _CachePolicy(
        "apk's cache (/var/cache/apk)",
        ("/var/cache/apk",),
        None,
        no_cache_flags=("--no-cache",),
        cleanups=("apk cache clean",),
        fix="apk add --no-cache ..., or RUN --mount=type=cache,target=/var/cache/apk apk add ...",
    ),
}
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _covers(target: str, directory: str, home_suffix: str | None) -> bool:
    """Whether a mount at, or an `rm` of, `target` covers the cache `directory`."""
    target = target.removesuffix("/*").rstrip("/")
    if not target:
        return False
    if directory == target or directory.startswith(target + "/"):
        return True
    if home_suffix is None or not target.startswith(("/", "~", "$HOME")):
        return False
    parts = home_suffix.split("/")
    return any(target.endswith("/" + "/".join(parts[:k])) for k in range(1, len(parts) + 1))


def _cache_manager(tool: _Tool, run: _Run) -> str | None:
    """The manager whose cache this command fills, if BP003 looks at it."""
    if tool.name == "apt-get":
        # Only the RUN that runs `apt-get update` writes the lists; an update alone is BP005.
        installs = any(t.name == "apt-get" and t.sub == "install" for t in run.tools)
        return "apt-get" if tool.sub == "update" and installs else None
    if tool.name in _POLICIES and _install(tool) is not None:
        return tool.name
    return None


def _leaves_cache(tool: _Tool, run: _Run) -> str | None:
    """The manager when this command leaves its cache in the layer, else None."""
    manager = _cache_manager(tool, run)
    if manager is None:
        return None
    policy = _POLICIES[manager]
    disabled = tool.has(*policy.no_cache_flags) or any(
        run.env.get(name, "").lower() not in _FALSE for name in policy.no_cache_env
    )
    return None if disabled or _cache_kept_out(tool, run, policy) else manager


def _cache_kept_out(tool: _Tool, run: _Run, policy: _CachePolicy) -> bool:
    """A cache or tmpfs mount over the cache, or a cleanup of it in the same RUN."""
    dirs = [
        *policy.dirs,
        *(run.env[name] for name in policy.dir_env if run.env.get(name)),
        *tool.values(*policy.dir_options),
    ]
    if any(_covers(t, d, policy.home_suffix) for t in run.kept_out for d in dirs):
        return True
    return any(
        f"{other.name} {other.sub}".strip() in policy.cleanups
        or (
            other.name == "rm"
            and any(_covers(t, d, policy.home_suffix) for t in other.positionals() for d in dirs)
        )
        for other in run.tools
    )


# --- paths a step writes and removes ----------------------------------------------------------

_ENV_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _resolve(path: str, workdir: str | None, env: Mapping[str, str]) -> str | None:
    """An absolute, normalized path; None when a variable or `~` leaves it unknown."""
    unknown = False

    def value(match: re.Match[str]) -> str:
        nonlocal unknown
        name = match[1] or match[2]
        if name not in env:
            unknown = True
        return env.get(name, "")

    expanded = _ENV_REF.sub(value, path)
    if unknown or not expanded or expanded.startswith("~") or expanded == "-":
        return None
    if not expanded.startswith("/"):
        expanded = f"{workdir or '$WORKDIR'}/{expanded}"
    return posixpath.normpath(expanded)


def _url_name(url: str) -> str | None:
    name = posixpath.basename(url.split("?", 1)[0].rstrip("/"))
    return name or None


def _run_writes(run: _Run) -> list[str]:
    """Paths a RUN creates, as far as its commands say."""
    raw: list[str] = []
    for tool in run.tools:
        raw.extend(tool.writes)
        positionals = tool.positionals()
        if tool.name in {"mkdir", "touch"}:
            raw.extend(positionals)
        elif tool.name in {"cp", "mv", "ln"} and len(positionals) >= 2:
            raw.append(positionals[-1])
        elif tool.name == "curl":
            raw.extend(_short_option_values(tool, "o", "--output"))
            if tool.has("-O", "--remote-name"):
                raw.extend(n for p in positionals if (n := _url_name(p)))
        elif tool.name == "wget":
            outputs = _short_option_values(tool, "O", "--output-document")
            raw.extend(outputs)
            if not outputs:
                raw.extend(n for p in positionals if (n := _url_name(p)))
        elif tool.name == "git" and positionals[:1] == ["clone"] and len(positionals) >= 2:
            target = positionals[2] if len(positionals) >= 3 else _url_name(positionals[1])
            if target:
                raw.append(target.removesuffix(".git"))
        manager = _leaves_cache(tool, run)
        if manager is not None:
            raw.append(_POLICIES[manager].dirs[0])
        elif (tool.name, tool.sub) == ("apt-get", "update") and not _cache_kept_out(
            tool, run, _POLICIES["apt-get"]
        ):
            raw.append(_POLICIES["apt-get"].dirs[0])
    return [p for path in raw if (p := _resolve(path, run.workdir, run.env)) is not None]


def _short_option_values(tool: _Tool, letter: str, long: str) -> list[str]:
    """Values of `-o file`, `-fsSLo file` (a short option last in a group) and `--output`."""
    found = tool.values(long)
    for index, word in enumerate(tool.args[:-1]):
        if re.fullmatch(rf"-[A-Za-z]*{letter}", word):
            found.append(tool.args[index + 1])
    return found


def _run_removes(run: _Run) -> list[tuple[str, str]]:
    """(path, the command that removes it) for `rm` and cache cleanups."""
    found: list[tuple[str, str]] = []
    for tool in run.tools:
        if tool.name == "rm":
            for word in tool.positionals():
                path = _resolve(word, run.workdir, run.env)
                if path is not None and path not in {"/", "/*"}:
                    found.append((path, tool.text))
        for policy in _POLICIES.values():
            if f"{tool.name} {tool.sub}".strip() in policy.cleanups:
                found.extend((directory, tool.text) for directory in policy.dirs)
    return found


def _overlaps(removed: str, created: str) -> bool:
    """Whether removing `removed` (maybe a glob) deletes something of `created`."""
    base = removed.removesuffix("/*")
    if created in {removed, base} or created.startswith(base + "/"):
        return True
    if removed.startswith(created + "/"):
        return True
    return any(c in removed for c in "*?[") and fnmatch.fnmatchcase(created, removed)


def _copy_writes(instruction: Instruction, facts: ImageFacts) -> list[str]:
    """Paths a COPY or ADD creates: the files it copies where the context is known."""
    key: dict[str, Any] = json.loads(instruction.key)
    workdir = key["workdir"]
    dest = str(key["dest"])
    dest_path = _resolve(dest, workdir, {})
    if dest_path is None:
        return []
    words = [str(word) for word in key["sources"]] + [str(h[0]) for h in key["heredocs"]]
    into_dir = dest.endswith("/") or dest in {".", ".."} or len(words) > 1
    created: list[str] = []
    for source in instruction.sources:
        if source.kind == "heredoc":
            continue
        context = _context_of(source, facts)
        for path in source.paths or (".",):  # an image source: what it copies lands at dest
            if context is not None:
                created.extend(_copied_files(path, context, dest_path, into_dir=into_dir))
            elif into_dir and path not in {".", "*"}:
                created.append(posixpath.join(dest_path, posixpath.basename(path)))
            elif dest_path != "/":
                created.append(dest_path)
    if key["heredocs"]:
        created.extend(
            posixpath.join(dest_path, str(h[0])) if into_dir else dest_path for h in key["heredocs"]
        )
    return created


def _copied_files(path: str, context: ContextFacts, dest: str, *, into_dir: bool) -> list[str]:
    """Where COPY <path> <dest> puts each context file it reads (globs: under `dest`)."""
    entries = sorted(context.files | set(context.volatile))
    if path in {".", "*"}:
        return [posixpath.join(dest, rel) for rel in entries]
    if path in entries:
        return [posixpath.join(dest, posixpath.basename(path)) if into_dir else dest]
    under = [rel for rel in entries if rel.startswith(path + "/")]
    if under:
        return [posixpath.join(dest, rel[len(path) + 1 :]) for rel in under]
    return [
        posixpath.join(dest, posixpath.basename(rel)) for rel in entries if source_reads(path, rel)
    ]


def _context_of(source: Source, facts: ImageFacts) -> ContextFacts | None:
    if source.kind == "context":
        return facts.contexts.get("")
    if source.kind == "named" and source.ref is not None:
        return facts.contexts.get(source.ref)
    return None


# --- small helpers shared by the rules ----------------------------------------------------


def _snippet(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _broad_context(instruction: Instruction, facts: ImageFacts) -> ContextFacts | None:
    """The local context a COPY/ADD copies whole (`COPY . .`, `ADD . /app`, `COPY * ./`)."""
    if instruction.cmd not in {"COPY", "ADD"}:
        return None
    for source in instruction.sources:
        if {".", "*"} & set(source.paths):
            context = _context_of(source, facts)
            if context is not None:
                return context
    return None


def _listing(items: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(f"`{item}`" for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _runs(stages: Iterable[Stage]) -> Iterator[tuple[Instruction, _Run]]:
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.cmd == "RUN":
                yield instruction, _run(instruction)


def _hit(instruction: Instruction, message: str, **extra: Any) -> Hit:
    return Hit(instruction.line, instruction.end_line, message, **extra)


# --- the rules ----------------------------------------------------------------------------


def bp001_install_after_broad_copy(facts: ImageFacts) -> Iterator[Hit]:
    """BP001: a dependency install after a COPY of the whole context, in the same stage.

    A stage built FROM another inherits its state. A Python or Node install that only adds
    the project on top of dependencies installed before the broad COPY (`pip install
    --no-deps .`, `uv sync` after `uv sync --no-install-project`) is fine; an install of
    named packages or of system packages after it is not.
    """
    states: dict[int, tuple[tuple[int, str] | None, frozenset[str]]] = {}
    for stage in facts.needed:
        broad, before = states.get(
            stage.base_stage if stage.base_stage is not None else -1, (None, frozenset())
        )
        for instruction in stage.instructions:
            if broad is None and _broad_context(instruction, facts) is not None:
                broad = (instruction.line, _snippet(instruction.original, 40))
                continue
            if instruction.cmd != "RUN":
                continue
            for install in _installs(_run(instruction)):
                if broad is None:
                    if install.reads_manifest:
                        before |= {install.family}
                    continue
                fine = (
                    install.family != "system"
                    and not install.packages
                    and (install.project_only or install.family in before)
                )
                if not fine:
                    yield _hit(
                        instruction,
                        f"`{_snippet(install.tool.text)}` runs after `{broad[1]}` (line "
                        f"{broad[0]}): a change to any file of the context runs it again",
                    )
                    break
        states[stage.index] = (broad, before)


def _volatile_pattern(rel: str) -> str:
    """The ignore pattern that leaves out a volatile entry (and its kind elsewhere)."""
    name = posixpath.basename(rel)
    if name.endswith(".log"):
        return "**/*.log"
    if name in TOP_LEVEL_VOLATILE and "/" not in rel:
        return name
    return f"**/{name}"


def bp002_broad_copy_unignored(facts: ImageFacts) -> Iterator[Hit]:
    """BP002: a broad COPY of a context without an ignore file, or one that misses large or
    volatile folders present in it (checked on the real files with BuildKit's matcher)."""
    for stage in facts.needed:
        for instruction in stage.instructions:
            context = _broad_context(instruction, facts)
            if context is None:
                continue
            missing = list(context.volatile)
            patterns = sorted(dict.fromkeys(_volatile_pattern(rel) for rel in missing))
            snippet = _snippet(instruction.original, 40)
            where = context.ignore_file or f"{context.path}/.dockerignore"
            fix = f"Add to {where}: " + ", ".join(patterns) if patterns else None
            if context.ignore_file is None:
                present = f"; it holds {_listing(missing)}" if missing else ""
                yield _hit(
                    instruction,
                    f"`{snippet}` sends and copies all of context `{context.path}`, which "
                    f"has no .dockerignore{present}",
                    severity=Severity.WARNING if missing else Severity.INFO,
                    fix=fix
                    or f"Create {where} listing what the image does not need (at least .git, "
                    "**/__pycache__, **/node_modules, .venv, **/*.log).",
                )
            elif missing:
                yield _hit(
                    instruction,
                    f"`{snippet}` sends and copies {_listing(missing)} from context "
                    f"`{context.path}`: {context.ignore_file} does not leave them out",
                    fix=fix,
                )


def bp003_install_keeps_cache(facts: ImageFacts) -> Iterator[Hit]:
    """BP003: an install that leaves the package manager's cache in the layer: no cache
    mount over it, no --no-cache flag and no cleanup in the same RUN."""
    for instruction, run in _runs(facts.needed):
        seen: set[str] = set()
        for tool in run.tools:
            manager = _leaves_cache(tool, run)
            if manager is None or manager in seen:
                continue
            seen.add(manager)
            policy = _POLICIES[manager]
            yield _hit(
                instruction,
                f"`{_snippet(tool.text)}` keeps {policy.label} in the layer, not in a cache mount",
                fix=policy.fix,
            )


def bp004_removed_in_later_layer(facts: ImageFacts) -> Iterator[Hit]:
    """BP004: an `rm` (or cache cleanup) of what an earlier step of the image wrote.

    Only the stages the shipped image is made of (the target and the stages it is built
    FROM) count: a builder stage's size does not ship.
    """
    created: dict[str, tuple[int, str]] = {}
    for stage in facts.chain:
        for instruction in stage.instructions:
            if instruction.cmd == "RUN":
                run = _run(instruction)
                reported = False
                for path, command in _run_removes(run):
                    origin = next(
                        (
                            (where, what)
                            for made, (where, what) in created.items()
                            if _overlaps(path, made)
                        ),
                        None,
                    )
                    if origin is None or reported:
                        continue
                    reported = True
                    yield _hit(
                        instruction,
                        f"`{_snippet(command)}` deletes what line {origin[0]} "
                        f"(`{origin[1]}`) wrote in an earlier layer: the image still "
                        "carries it",
                    )
                made_here = _run_writes(run)
            elif instruction.cmd in {"COPY", "ADD"}:
                made_here = _copy_writes(instruction, facts)
            else:
                continue
            label = _snippet(instruction.original, 40)
            for path in made_here:
                created.setdefault(path, (instruction.line, label))


def bp005_apt_update_alone(facts: ImageFacts) -> Iterator[Hit]:
    """BP005: `apt-get update` (or `apk update`) in a RUN that installs nothing."""
    for instruction, run in _runs(facts.needed):
        for manager, installs in (
            ("apt-get", {"install", "upgrade", "dist-upgrade"}),
            ("apk", {"add", "upgrade"}),
        ):
            updates = [t for t in run.tools if t.name == manager and t.sub == "update"]
            if updates and not any(t.name == manager and t.sub in installs for t in run.tools):
                yield _hit(
                    instruction,
                    f"`{_snippet(updates[0].text)}` runs alone: its layer is cached, so later "
                    "installs use the index of the day it was built",
                    fix=f"Update and install in the same RUN: {manager} update && "
                    f"{manager} {'install -y' if manager == 'apt-get' else 'add'} ...",
                )


def _split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` -> (name, tag, digest)."""
    name, _, digest = ref.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _image_refs(facts: ImageFacts) -> Iterator[tuple[Stage, Instruction | None, str]]:
    """Images a build pulls: FROM <image> and COPY --from / RUN --mount from= <image>."""
    for stage in facts.needed:
        if stage.base_kind == "image":
            yield stage, None, stage.base
        for instruction in stage.instructions:
            for source in instruction.sources:
                if source.kind == "image" and source.ref and source.ref != "scratch":
                    yield stage, instruction, source.ref


def bp006_unpinned_image(facts: ImageFacts) -> Iterator[Hit]:
    """BP006: a base image with no tag or `latest` (error), or, with --release, not pinned
    by digest (warning). Stages built FROM a stage, a named context or scratch are skipped."""
    seen: set[tuple[int, str]] = set()
    for stage, instruction, ref in _image_refs(facts):
        line, end = (
            (stage.line, stage.line)
            if instruction is None
            else (
                instruction.line,
                instruction.end_line,
            )
        )
        if (line, ref) in seen or "$" in ref:
            continue
        seen.add((line, ref))
        name, tag, digest = _split_ref(ref)
        if digest is None and (not tag or tag == "latest"):
            yield Hit(
                line,
                end,
                f"`{ref}` "
                + ("is :latest" if tag else "has no tag, so it is :latest")
                + ": it moves when the image is re-pushed, and every move rebuilds every "
                "step after it",
                severity=Severity.ERROR,
                fix=f"Pin a version tag, e.g. {name}:<version>, and by digest for releases.",
            )
        elif digest is None and facts.release:
            yield Hit(
                line,
                end,
                f"`{ref}` is pinned by tag only: a re-pushed tag changes a release build",
                severity=Severity.WARNING,
                fix=f"Pin by digest: {ref}@sha256:... (docker buildx imagetools inspect {ref}).",
            )


_NVIDIA = re.compile(r"(?im)^(?![ \t]*#).*?\b(nvidia-[a-z0-9][a-z0-9_.-]*)")
_TORCH_LINE = re.compile(
    r"(?im)^[ \t]*(torch|torchvision|torchaudio)(?=[ \t]*(?:[=<>!~;\[@]|$))([^\n#]*)"
)
_CPU_INDEX = "download.pytorch.org/whl/cpu"
_TORCH = frozenset({"torch", "torchvision", "torchaudio"})
_INDEX_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "--index",
    "--default-index",
    "-f",
    "--find-links",
)
_INDEX_ENV = (
    *("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"),
    *("UV_INDEX", "UV_DEFAULT_INDEX", "PIP_FIND_LINKS"),
)


def _cpu_index(tool: _Tool, run: _Run) -> bool:
    """Whether this install reads PyTorch's CPU index (options, env, `--torch-backend cpu`)."""
    if any(_CPU_INDEX in value for value in tool.values(*_INDEX_OPTIONS)):
        return True
    if any(_CPU_INDEX in run.env.get(name, "") for name in _INDEX_ENV):
        return True
    backend = [*tool.values("--torch-backend"), run.env.get("UV_TORCH_BACKEND", "")]
    return "cpu" in backend


def bp007_cuda_in_cpu_image(facts: ImageFacts) -> Iterator[Hit]:
    """BP007: CUDA wheels in an image whose config says `gpu: false`: `nvidia-*` packages in
    a dependency file the build copies or mounts, or torch installed without the CPU index."""
    if facts.gpu is not False:
        return
    python_installs = [
        (instruction, run, install)
        for instruction, run in _runs(facts.needed)
        for install in _installs(run)
        if install.family == "python"
    ]
    cpu_anywhere = any(_cpu_index(install.tool, run) for _, run, install in python_installs)
    for instruction, run, install in python_installs:
        torch = [p for p in install.packages if _package_name(p) in _TORCH and "+cpu" not in p]
        if torch and not _cpu_index(install.tool, run):
            yield _hit(
                instruction,
                f"`{_snippet(install.tool.text)}` installs {torch[0]} from PyPI: on Linux that "
                "is the CUDA build, with gigabytes of nvidia-* wheels",
            )
    for instruction, rel, text in _manifests_read(facts):
        nvidia = sorted(dict.fromkeys(m.lower() for m in _NVIDIA.findall(text)))
        if nvidia:
            yield _hit(
                instruction,
                f"{rel} lists {_listing(nvidia, 3)}: CUDA libraries in a `gpu: false` image",
            )
            continue
        torch_lines = [m for m in _TORCH_LINE.finditer(text) if "+cpu" not in m[2]]
        if torch_lines and _CPU_INDEX not in text and not cpu_anywhere and rel.endswith(".txt"):
            yield _hit(
                instruction,
                f"{rel} lists {torch_lines[0][1]} without PyTorch's CPU index: pip installs "
                "the CUDA build, with gigabytes of nvidia-* wheels",
            )


def _manifests_read(facts: ImageFacts) -> Iterator[tuple[Instruction, str, str]]:
    """(the step, path, text) of each dependency file a COPY, ADD or bind mount reads."""
    seen: set[tuple[str, str]] = set()
    for stage in facts.needed:
        for instruction in stage.instructions:
            for source in instruction.sources:
                context = _context_of(source, facts)
                if context is None:
                    continue
                for rel, text in sorted(context.manifests.items()):
                    if (context.path, rel) in seen:
                        continue
                    if any(source_reads(path, rel) for path in source.paths):
                        seen.add((context.path, rel))
                        yield instruction, posixpath.join(context.path, rel), text


_BUILD_ONLY = frozenset(
    {
        *("gcc", "g++", "make", "cmake", "build-essential", "build-base", "clang"),
        *("autoconf", "automake", "libtool", "pkg-config", "linux-headers"),
    }
)
_BUILD_ONLY_PATTERN = re.compile(r"^(?:gcc|g\+\+|clang)-[0-9.]+$|-dev$|-devel$")


def _build_only(package: str) -> bool:
    name = _package_name(package)
    return name in _BUILD_ONLY or bool(_BUILD_ONLY_PATTERN.search(name))


def _removed_packages(run: _Run) -> set[str]:
    """Packages (and apk virtual names) the same RUN removes again."""
    removed: set[str] = set()
    for tool in run.tools:
        if (tool.name, tool.sub) in {("apt-get", "purge"), ("apt-get", "remove"), ("apk", "del")}:
            removed.update(_package_name(p) for p in tool.positionals())
    return removed


def bp008_build_tools_in_final_stage(facts: ImageFacts) -> Iterator[Hit]:
    """BP008: compilers, make, cmake or `-dev` headers installed in the stages the shipped
    image is made of, and not removed again in the same RUN."""
    for instruction, run in _runs(facts.chain):
        removed = _removed_packages(run)
        found: list[str] = []
        for install in _installs(run):
            if install.family != "system":
                continue
            virtual = install.tool.values("-t", "--virtual")
            if install.tool.name == "apk" and any(v.lower() in removed for v in virtual):
                continue
            found.extend(
                _package_name(p)
                for p in install.packages
                if _build_only(p) and _package_name(p) not in removed
            )
        if found:
            yield _hit(
                instruction,
                f"{_listing(sorted(dict.fromkeys(found)))} installed in the final image: "
                "build tools the running service never uses",
            )


_SYNTAX_LINE = re.compile(r"^\s*#\s*syntax\s*=", re.IGNORECASE)


def bp009_syntax_directive(facts: ImageFacts) -> Iterator[Hit]:
    """BP009: a `# syntax=` directive: BuildKit fetches that frontend image before it can
    even read the Dockerfile (warning; info when pinned by digest, fetched only once)."""
    syntax = facts.model.syntax
    if not syntax:
        return
    line = next(
        (n for n, text in enumerate(facts.text.splitlines(), 1) if _SYNTAX_LINE.match(text)), 1
    )
    pinned = "@sha256:" in syntax
    yield Hit(
        line,
        line,
        f"`# syntax={syntax}` makes every build fetch the frontend image "
        + ("(pinned: once per builder)" if pinned else "and resolve its tag in the registry"),
        severity=Severity.INFO if pinned else Severity.WARNING,
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "BP001",
        Severity.WARNING,
        "dependency install after a broad COPY",
        "Every code change invalidates the COPY, so the install after it runs again: "
        "dependencies are downloaded and installed on every build.",
        "Copy only the dependency files first (requirements*.txt, pyproject.toml with the "
        "lock file, package.json with package-lock.json), install, then COPY the rest; or "
        "bind-mount them: RUN --mount=type=bind,source=requirements.txt,target=/tmp/r.txt "
        "pip install -r /tmp/r.txt.",
        bp001_install_after_broad_copy,
    ),
    Rule(
        "BP002",
        Severity.WARNING,
        "broad COPY without a fitting ignore file",
        "Everything the COPY reads is sent to BuildKit and hashed on every build; volatile "
        "files (.git, caches, logs) change the COPY's cache key and rebuild everything after "
        "it, and large ones bloat the image.",
        "Leave them out in the context's .dockerignore (or <Dockerfile>.dockerignore).",
        bp002_broad_copy_unignored,
    ),
    Rule(
        "BP003",
        Severity.WARNING,
        "package install keeps its cache in the layer",
        "The download cache is shipped in the image, yet every rebuild of the step starts "
        "from an empty cache and downloads everything again.",
        "Mount a cache over it (RUN --mount=type=cache,target=<cache dir>) or disable and "
        "clean it in the same RUN.",
        bp003_install_keeps_cache,
    ),
    Rule(
        "BP004",
        Severity.WARNING,
        "files removed in a later layer",
        "A layer cannot shrink an earlier one: the deleted files are still downloaded and "
        "stored with the image.",
        "Delete in the same RUN that creates the files; for a copied file, read it through "
        "RUN --mount=type=bind,source=... or a builder stage instead of COPY, or leave it out "
        "with the ignore file.",
        bp004_removed_in_later_layer,
    ),
    Rule(
        "BP005",
        Severity.WARNING,
        "package index update alone in its RUN",
        "The update's layer is cached for good: later installs read a stale index and fail "
        "or install old versions once the mirror moves on.",
        "Run the update and the install in one RUN.",
        bp005_apt_update_alone,
    ),
    Rule(
        "BP006",
        Severity.ERROR,
        "unpinned base image",
        "A moving tag makes builds unreproducible and invalidates the cache of every step "
        "after the FROM whenever the image is re-pushed.",
        "Pin a version tag, and for release builds pin by digest.",
        bp006_unpinned_image,
    ),
    Rule(
        "BP007",
        Severity.ERROR,
        "CUDA wheels in a CPU-only image",
        "CUDA builds of torch pull nvidia-* wheels of several gigabytes: minutes of download "
        "and export, and an image many times larger than a CPU build.",
        "Install torch from the CPU index (--index-url https://download.pytorch.org/whl/cpu "
        "or a +cpu version) and keep nvidia-* out of the requirements.",
        bp007_cuda_in_cpu_image,
    ),
    Rule(
        "BP008",
        Severity.WARNING,
        "build tools in the final stage",
        "Compilers and headers add tens to hundreds of megabytes to every pull and push of "
        "the image, and the service never uses them.",
        "Build in a builder stage (FROM ... AS builder) and COPY --from=builder only the "
        "results, or purge the packages in the same RUN.",
        bp008_build_tools_in_final_stage,
    ),
    Rule(
        "BP009",
        Severity.WARNING,
        "syntax directive fetches a frontend",
        "The frontend image is pulled from a registry before the build starts: slower, "
        "and the build fails where no registry is reachable.",
        "Remove the line: BuildKit's built-in frontend supports RUN --mount, heredocs and "
        "COPY --link; keep it only for a newer feature, pinned by digest.",
        bp009_syntax_directive,
    ),
)
RULE_IDS = frozenset(rule.id for rule in RULES)
