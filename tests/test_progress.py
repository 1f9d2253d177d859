"""buildpilot.progress against progress streams recorded from a real BuildKit (no engine needed)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from buildpilot.progress import ProgressTracker, is_cancellation, parse_timestamp
from buildpilot.rawjson import (
    DEFAULT_STAGE,
    RawJsonStream,
    classify_phase,
    parse_step_name,
    past_start,
)
from buildpilot.results import StepTiming, Timeline

DATA = Path(__file__).parent / "data" / "progress"
FIXTURES = sorted(p.name for p in DATA.glob("*.rawjson"))

MULTISTAGE_STEPS = [
    ("base", 1, 2, "COPY busybox /bin/busybox"),
    ("base", 2, 2, 'RUN ["/bin/busybox", "--install", "-s", "/bin"]'),
    ("builder", 1, 2, "RUN sleep 0.2 && echo built > /artifact"),
    ("builder", 2, 2, 'RUN sleep 0.2 && echo "compiling part 2" && date > /stamp'),
    ("stage-2", 1, 2, "COPY --from=builder /artifact /artifact"),
    ("stage-2", 2, 2, "RUN sleep 0.2 && cat /artifact"),
]
FAILED = '[broken 2/2] RUN echo "about to fail" && echo "fatal: widget not found" >&2 && exit 3'


@dataclass
class Replay:
    """A recorded stream fed through the decoder and the tracker, line by line."""

    events: list[dict[str, Any]]
    text: list[str]
    live: list[StepTiming]
    tracker: ProgressTracker
    timeline: Timeline


def replay_lines(lines: list[str]) -> Replay:
    stream = RawJsonStream()
    tracker = ProgressTracker()
    events: list[dict[str, Any]] = []
    live: list[StepTiming] = []
    for line in lines:
        for event in stream.feed(line):
            events.append(event)
            live.extend(tracker.feed(event))
    stream.close()
    return Replay(events, stream.text_lines, live, tracker, tracker.timeline())


@cache
def replay(name: str) -> Replay:
    with (DATA / name).open(encoding="utf-8") as handle:
        return replay_lines(list(handle))


def dockerfile_steps(timeline: Timeline) -> list[StepTiming]:
    return [s for s in timeline.steps if s.stage is not None]


def step(timeline: Timeline, name_start: str) -> StepTiming:
    (found,) = [s for s in timeline.steps if s.name.startswith(name_start)]
    return found


def kinds(timeline: Timeline) -> list[str]:
    return [p.kind for p in timeline.phases]


# --------------------------------------------------------------------------- recordings


def test_fixtures_are_recorded_and_small() -> None:
    assert len(FIXTURES) >= 8
    for name in FIXTURES:
        size = (DATA / name).stat().st_size
        assert 0 < size < 200_000, name
        assert (DATA / name).read_text().startswith("{\n"), "buildx 0.13 pretty form expected"


def test_cold_build_lists_every_dockerfile_step_in_execution_order() -> None:
    timeline = replay("multistage_cold.rawjson").timeline
    steps = dockerfile_steps(timeline)
    assert [(s.stage, s.index, s.total, s.instruction) for s in steps] == MULTISTAGE_STEPS
    assert steps[0].name == "[base 1/2] COPY busybox /bin/busybox"
    for s in steps:
        assert not s.cached
        assert s.error is None
        assert s.started is not None
        assert s.completed is not None
        assert s.completed >= s.started
    sleeping = [s for s in steps if "sleep 0.2" in s.name]
    assert len(sleeping) == 3
    for s in sleeping:
        assert 0.2 <= s.duration < 5
        assert s.started is not None
        assert s.completed is not None
        assert s.duration == pytest.approx((s.completed - s.started).total_seconds())
    assert timeline.failed_step is None
    assert timeline.log_tail == []
    assert not timeline.cache_export_failed


def test_internal_vertices_are_steps_without_stage_and_are_phases() -> None:
    timeline = replay("multistage_cold.rawjson").timeline
    internal = [s for s in timeline.steps if s.stage is None]
    assert [s.name for s in internal] == [p.name for p in timeline.phases]
    assert all(s.index is None and s.instruction is None for s in internal)
    assert kinds(timeline) == ["metadata", "metadata", "context", "export"]
    assert timeline.phases[-1].name == "exporting to image"
    assert timeline.phases[-1].duration > 0


def test_stages_are_summed_in_order() -> None:
    timeline = replay("multistage_cold.rawjson").timeline
    assert [(s.name, s.steps, s.cached) for s in timeline.stages] == [
        ("base", 2, 0),
        ("builder", 2, 0),
        ("stage-2", 2, 0),
    ]
    builder = timeline.stages[1]
    builder_steps = [s for s in timeline.steps if s.stage == "builder"]
    assert builder.started == min(s.started for s in builder_steps if s.started)
    assert builder.completed == max(s.completed for s in builder_steps if s.completed)
    assert builder.duration >= 0.4  # two sequential sleeps of 0.2 s


def test_cached_build_has_every_step_cached() -> None:
    cold = replay("multistage_cold.rawjson").timeline
    timeline = replay("multistage_cached.rawjson").timeline
    steps = dockerfile_steps(timeline)
    assert [s.name for s in steps] == [s.name for s in dockerfile_steps(cold)]
    assert all(s.cached for s in steps)
    assert all(s.duration < 0.2 for s in steps)
    assert [(s.steps, s.cached) for s in timeline.stages] == [(2, 2)] * 3
    assert timeline.failed_step is None


def test_failing_step_is_named_with_its_output() -> None:
    run = replay("failing_step.rawjson")
    timeline = run.timeline
    assert timeline.failed_step == FAILED
    assert "fatal: widget not found" in timeline.log_tail
    assert "about to fail" in timeline.log_tail
    assert "preparing widgets" not in timeline.log_tail  # the previous step's output
    assert step(timeline, "[broken 2/2]").error is not None
    assert "exit code: 3" in (step(timeline, "[broken 2/2]").error or "")
    assert any(line.startswith("ERROR: failed to solve:") for line in run.text)
    assert "Dockerfile:10" in run.text
    assert not timeline.cache_export_failed


def test_failing_build_does_not_blame_the_cancelled_step() -> None:
    timeline = replay("failing_step.rawjson").timeline
    slow = step(timeline, "[slow 1/1]")
    assert slow.error is not None
    assert is_cancellation(slow.error)
    assert not is_cancellation(step(timeline, "[broken 2/2]").error or "")
    # slow started before broken 2/2 did, so "first error" alone would blame it
    broken = step(timeline, "[broken 2/2]")
    assert timeline.steps.index(slow) < timeline.steps.index(broken)


def test_steps_never_started_have_no_times() -> None:
    timeline = replay("failing_step.rawjson").timeline
    never = [s for s in timeline.steps if s.stage == "stage-3"]
    assert len(never) == 2
    assert all(s.started is None and s.completed is None and s.duration == 0.0 for s in never)
    assert timeline.steps[-2:] == never  # listed after everything that ran
    (stage3,) = [s for s in timeline.stages if s.name == "stage-3"]
    assert stage3.started is None
    assert stage3.duration == 0.0


def test_log_tail_length_is_bounded() -> None:
    tracker = replay("failing_step.rawjson").tracker
    timeline = tracker.timeline(tail_lines=1)
    assert len(timeline.log_tail) == 1
    assert timeline.log_tail[0] in {"fatal: widget not found", "about to fail"}
    assert tracker.timeline(tail_lines=0).log_tail == []


@pytest.mark.parametrize("name", FIXTURES)
def test_cache_export_failed_only_for_the_dead_registry(name: str) -> None:
    timeline = replay(name).timeline
    assert timeline.cache_export_failed is (name == "cache_export_failed.rawjson")


def test_cache_export_phase_to_registry() -> None:
    timeline = replay("cache_export_to_registry.rawjson").timeline
    (phase,) = [p for p in timeline.phases if p.kind == "cache-export"]
    assert phase.name == "exporting cache to registry"
    assert phase.error is None
    assert phase.duration > 0
    assert kinds(timeline)[-2:] == ["export", "cache-export"]
    assert timeline.failed_step is None


def test_failed_cache_export_carries_the_error() -> None:
    run = replay("cache_export_failed.rawjson")
    timeline = run.timeline
    (phase,) = [p for p in timeline.phases if p.kind == "cache-export"]
    assert "localhost:5999" in (phase.error or "")
    assert "connection refused" in (phase.error or "")
    assert all(s.error is None for s in dockerfile_steps(timeline))
    assert timeline.failed_step == "exporting cache to registry"  # the only vertex in error
    assert run.text == []  # ignore-error=true: BuildKit prints nothing else


def test_cache_import_and_push_phases() -> None:
    timeline = replay("cache_import_and_push.rawjson").timeline
    by_kind = {p.kind: p.name for p in timeline.phases}
    assert by_kind["cache-import"] == (
        "importing cache manifest from localhost:5000/progress-test/cache:t"
    )
    pushes = [p for p in timeline.phases if p.name.startswith("pushing ")]
    assert [p.kind for p in pushes] == ["export"]
    assert all(s.cached for s in dockerfile_steps(timeline))


def test_from_step_of_a_local_image() -> None:
    timeline = replay("from_local_image.rawjson").timeline
    first = dockerfile_steps(timeline)[0]
    assert (first.stage, first.index, first.total) == (DEFAULT_STAGE, 1, 3)
    assert (first.instruction or "").startswith("FROM docker.io/progress-test/multistage:t@sha256:")
    # the FROM vertex is re-sent with three runs; its span covers them all
    assert first.started is not None
    assert first.completed is not None
    assert 0 < first.duration <= (first.completed - first.started).total_seconds() + 1e-6
    assert "[internal] load metadata for docker.io/progress-test/multistage:t" in [
        p.name for p in timeline.phases if p.kind == "metadata"
    ]


def test_single_stage_steps_get_the_default_stage() -> None:
    timeline = replay("single_stage_logs.rawjson").timeline
    steps = dockerfile_steps(timeline)
    assert [s.index for s in steps] == list(range(1, 11))
    assert {s.stage for s in steps} == {DEFAULT_STAGE}
    assert {s.total for s in steps} == {10}
    assert steps[0].name == "[ 1/10] COPY busybox /bin/busybox"
    assert steps[4].instruction == "WORKDIR /work"
    assert [(s.name, s.steps) for s in timeline.stages] == [(DEFAULT_STAGE, 10)]


def test_log_output_is_decoded_into_lines() -> None:
    run = replay("single_stage_logs.rawjson")
    digests = {v["name"]: v["digest"] for e in run.events for v in e.get("vertexes") or []}
    (hello,) = [d for n, d in digests.items() if n.startswith("[ 3/10] RUN sleep 0.2 && for i")]
    assert sorted(run.tracker.log_tail(hello, 10)) == [
        "hello line 1",
        "hello line 2",
        "hello line 3",
        "to stderr",
    ]
    assert len(run.tracker.log_tail(hello, 2)) == 2
    odd = digests["[ 4/10] RUN printf 'no newline at end\\r\\n\\xff\\xfe bad utf-8\\r\\nlast'"]
    assert run.tracker.log_tail(odd, 20) == ["no newline at end", "\ufffd\ufffd bad utf-8", "last"]
    assert run.tracker.log_tail("sha256:unknown", 5) == []


def test_warnings_are_decoded() -> None:
    assert replay("single_stage_logs.rawjson").tracker.warnings == [
        "Empty continuation line found in: RUN echo 10     > ten"
    ]
    assert replay("multistage_cold.rawjson").tracker.warnings == []


@pytest.mark.parametrize("name", FIXTURES)
def test_live_feed_reports_each_completed_dockerfile_step_once(name: str) -> None:
    run = replay(name)
    live = [s.name for s in run.live]
    assert len(live) == len(set(live))
    assert all(s.stage is not None and s.completed is not None for s in run.live)
    finished = [s.name for s in dockerfile_steps(run.timeline) if s.completed is not None]
    assert sorted(live) == sorted(finished)


def test_live_feed_follows_the_build() -> None:
    run = replay("multistage_cold.rawjson")
    assert [s.name for s in run.live] == [s.name for s in dockerfile_steps(run.timeline)]
    failing = replay("failing_step.rawjson")
    assert FAILED in [s.name for s in failing.live if s.error]


# --------------------------------------------------------------------------- decoder


def all_lines(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.mark.parametrize("name", FIXTURES)
def test_compact_form_decodes_to_the_same_events(name: str) -> None:
    pretty = replay(name)
    compact_lines = [json.dumps(e, separators=(",", ":")) + "\n" for e in pretty.events]
    compact_lines += [t + "\n" for t in pretty.text]
    compact = replay_lines(compact_lines)
    assert compact.events == pretty.events
    assert compact.text == pretty.text
    assert compact.timeline == pretty.timeline
    assert len(pretty.events) > 20


def test_pretty_form_is_not_parsed_line_by_line() -> None:
    stream = RawJsonStream()
    lines = all_lines("multistage_cold.rawjson")
    first_close = lines.index("}\n")
    assert [stream.feed(line) for line in lines[:first_close]] == [[]] * first_close
    (event,) = stream.feed(lines[first_close])
    assert event["vertexes"][0]["name"] == "[internal] load build definition from Dockerfile"
    assert stream.text_lines == []


def test_text_lines_mixed_in_are_collected_in_order() -> None:
    lines = all_lines("multistage_cold.rawjson")
    inside = lines.index("  ],\n") if "  ],\n" in lines else 3  # within a pretty event
    mixed = ["#0 building with default\n", *lines[:inside], "WARN: in the middle\n"]
    mixed += [*lines[inside:], "{not json\n", "\n", "ERROR: failed to solve: boom\n"]
    run = replay_lines(mixed)
    assert run.events == replay("multistage_cold.rawjson").events
    assert run.text == [
        "#0 building with default",
        "WARN: in the middle",
        "{not json",
        "",
        "ERROR: failed to solve: boom",
    ]


def test_crlf_and_missing_newlines_are_accepted() -> None:
    lines = [line.rstrip("\n") + "\r\n" for line in all_lines("multistage_cached.rawjson")]
    assert replay_lines(lines).events == replay("multistage_cached.rawjson").events
    no_newline = [line.rstrip("\n") for line in all_lines("multistage_cached.rawjson")]
    assert replay_lines(no_newline).events == replay("multistage_cached.rawjson").events


def test_several_lines_in_one_feed() -> None:
    stream = RawJsonStream()
    events = stream.feed('{"statuses": []}\nplain\n{\n  "logs": []\n}\n')
    assert events == [{"statuses": []}, {"logs": []}]
    assert stream.text_lines == ["plain"]


@pytest.mark.parametrize(
    "garbage",
    ["{", "}", "]", "[1, 2]", '"a string"', "null", "{'single': 'quotes'}", "\x00\ufffd", " {"],
)
def test_garbage_never_raises(garbage: str) -> None:
    stream = RawJsonStream()
    assert stream.feed(garbage) == []
    stream.close()
    assert stream.text_lines == [garbage]


def test_unfinished_pretty_event_becomes_text() -> None:
    stream = RawJsonStream()
    lines = all_lines("multistage_cold.rawjson")[:5]
    assert [stream.feed(line) for line in lines] == [[]] * 5
    assert stream.text_lines == []
    assert stream.close() == [line.rstrip("\n") for line in lines]
    assert stream.text_lines == [line.rstrip("\n") for line in lines]


def test_broken_pretty_event_becomes_text_and_decoding_resumes() -> None:
    stream = RawJsonStream()
    for line in ["{", '  "vertexes": [ oops', "}"]:
        assert stream.feed(line) == []
    assert stream.text_lines == ["{", '  "vertexes": [ oops', "}"]
    assert stream.feed('{"logs": []}') == [{"logs": []}]


# --------------------------------------------------------------------------- tracker


def at(seconds: float) -> str:
    whole, frac = divmod(seconds, 1)
    return f"2026-01-01T00:00:{int(whole):02d}.{round(frac * 1e9):09d}Z"


def vertex(digest: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"vertexes": [{"digest": digest, "name": name, **fields}]}


def test_step_still_running_uses_its_last_known_time() -> None:
    tracker = ProgressTracker()
    assert tracker.feed(vertex("sha256:a", "[2/3] RUN make", started=at(1))) == []
    data = base64.b64encode(b"compiling\n").decode()
    tracker.feed(
        {"logs": [{"vertex": "sha256:a", "stream": 1, "data": data, "timestamp": at(2.5)}]}
    )
    tracker.feed({"statuses": [{"id": "x", "vertex": "sha256:a", "timestamp": at(3)}]})
    (running,) = tracker.timeline().steps
    assert running.completed is None
    assert running.duration == pytest.approx(2.0)
    assert tracker.log_tail("sha256:a", 5) == ["compiling"]


def test_step_running_with_nothing_heard_has_zero_duration() -> None:
    tracker = ProgressTracker()
    tracker.feed(vertex("sha256:a", "[2/3] RUN make", started=at(1)))
    (running,) = tracker.timeline().steps
    assert running.duration == 0.0
    assert running.started is not None


def test_restarted_vertex_is_running_again_until_completed() -> None:
    tracker = ProgressTracker()
    tracker.feed(vertex("sha256:a", "[1/2] FROM x", started=at(0), completed=at(1)))
    tracker.feed(vertex("sha256:a", "[1/2] FROM x", started=at(5)))
    assert tracker.timeline().steps[0].completed is None
    done = tracker.feed(vertex("sha256:a", "[1/2] FROM x", started=at(5), completed=at(6)))
    assert done == []  # already reported when the first run completed
    (from_step,) = tracker.timeline().steps
    assert from_step.started == parse_timestamp(at(0))
    assert from_step.completed == parse_timestamp(at(6))
    assert from_step.duration == pytest.approx(2.0)  # time running, not the 6 s span


def test_announcement_without_times_keeps_what_is_known() -> None:
    tracker = ProgressTracker()
    tracker.feed(vertex("sha256:a", "[1/1] RUN x", started=at(0), completed=at(1), cached=True))
    tracker.feed(vertex("sha256:a", "[1/1] RUN x"))
    (s,) = tracker.timeline().steps
    assert s.cached
    assert s.duration == pytest.approx(1.0)


def test_late_resend_of_a_finished_run_keeps_it_finished() -> None:
    tracker = ProgressTracker()
    tracker.feed(vertex("sha256:a", "[1/1] RUN x", started=at(0), completed=at(1)))
    tracker.feed(vertex("sha256:a", "[1/1] RUN x", started=at(0)))
    (s,) = tracker.timeline().steps
    assert s.completed == parse_timestamp(at(1))


def test_only_cache_export_errors_mark_the_cache_export_failed() -> None:
    tracker = ProgressTracker()
    tracker.feed(
        vertex("sha256:e", "exporting to image", started=at(0), completed=at(1), error="x")
    )
    timeline = tracker.timeline()
    assert timeline.phases[0].error == "x"
    assert not timeline.cache_export_failed
    assert timeline.failed_step == "exporting to image"


def test_tracker_ignores_malformed_events() -> None:
    tracker = ProgressTracker()
    bad: list[Any] = [
        {},
        {"vertexes": "nope"},
        {"vertexes": [1, None, {"name": "no digest"}, {"digest": 5}]},
        {"vertexes": [{"digest": "sha256:b", "started": "yesterday", "error": 3}]},
        {"logs": [{"vertex": "sha256:b", "data": "!!!not base64!!!"}, {"data": "aGk="}]},
        {"statuses": [{"vertex": None, "timestamp": 7}], "warnings": [{"short": None}]},
    ]
    for event in bad:
        assert tracker.feed(event) == []
    (s,) = tracker.timeline().steps
    assert s.name == "sha256:b"
    assert s.started is None
    assert s.duration == 0.0
    assert tracker.log_tail("sha256:b", 3) == []
    assert ProgressTracker().timeline() == Timeline()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("[builder 2/4] RUN pip install x", ("builder", 2, 4, "RUN pip install x")),
        (
            "[stage-0 1/3] FROM docker.io/library/python:3.12",
            ("stage-0", 1, 3, "FROM docker.io/library/python:3.12"),
        ),
        ("[1/3] COPY a b", (DEFAULT_STAGE, 1, 3, "COPY a b")),
        ("[ 2/11] RUN x", (DEFAULT_STAGE, 2, 11, "RUN x")),
        ("[builder  2/10] RUN x", ("builder", 2, 10, "RUN x")),
        ("[linux/arm64 builder 2/4] RUN x", ("builder", 2, 4, "RUN x")),
        ("[linux/amd64/v2 1/4] COPY a b", (DEFAULT_STAGE, 1, 4, "COPY a b")),
        ("[app 3/3] RUN <<EOF\necho hi\nEOF", ("app", 3, 3, "RUN <<EOF\necho hi\nEOF")),
        ("[internal] load build context", (None, None, None, None)),
        ("[context base] load metadata for x", (None, None, None, None)),
        ("[auth] library/python:pull token for registry-1.docker.io", (None, None, None, None)),
        ("exporting to image", (None, None, None, None)),
        ("", (None, None, None, None)),
        ("[2/x] RUN y", (None, None, None, None)),
    ],
)
def test_parse_step_name(name: str, parsed: tuple[object, ...]) -> None:
    assert parse_step_name(name) == parsed


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("[internal] load build context", "context"),
        ("importing cache manifest from localhost:5000/x:y", "cache-import"),
        ("exporting to image", "export"),
        ("exporting to docker image format", "export"),
        ("exporting to oci image format", "export"),
        ("pushing localhost:5000/a:b with docker", "export"),
        ("exporting cache to registry", "cache-export"),
        ("exporting cache to client directory", "cache-export"),
        ("[internal] load metadata for docker.io/library/python:3.12", "metadata"),
        ("[context base] load metadata for localhost:5000/base:1", "metadata"),
        ("[internal] load build definition from Dockerfile", "metadata"),
        ("[internal] load .dockerignore", "metadata"),
        ("resolving provenance for metadata file", "other"),
        ("[auth] library/python:pull token for registry-1.docker.io", "other"),
    ],
)
def test_classify_phase(name: str, kind: str) -> None:
    assert classify_phase(name) == kind


WHEN = "2026-11-22T10:00:00Z"


@pytest.mark.parametrize(
    ("vertex", "past"),
    [
        ({"name": "[internal] load build definition from Dockerfile", "started": WHEN}, False),
        ({"name": "[internal] load build context", "started": WHEN}, False),
        ({"name": "importing cache manifest from localhost:5000/c:main", "started": WHEN}, False),
        ({"name": "[context base] localhost:5000/base:sha256-1", "started": WHEN}, False),
        ({"name": "[stage-0 2/3] COPY . .", "started": WHEN, "cached": True}, False),
        ({"name": "[stage-0 3/3] RUN make"}, False),  # announced, not begun
        ({"name": "[stage-0 3/3] RUN make", "started": WHEN}, True),
        ({"name": "[builder 1/2] COPY src src", "started": WHEN}, True),
        ({"name": "exporting to image", "started": WHEN}, True),  # nothing ran: all cached
        ({"name": "exporting cache to registry", "started": WHEN}, True),
    ],
)
def test_a_build_is_past_its_start_once_a_step_or_the_export_runs(
    vertex: dict[str, object], past: bool
) -> None:
    loaded = {"name": "[internal] load .dockerignore", "started": WHEN, "completed": WHEN}
    assert past_start({"vertexes": [loaded, vertex]}) is past
    assert not past_start({"statuses": [], "logs": []})


def test_parse_timestamp() -> None:
    stamp = parse_timestamp("2026-11-21T05:17:21.908665861Z")
    assert stamp is not None
    assert stamp.microsecond == 908665
    assert stamp.utcoffset() == timedelta(0)
    assert parse_timestamp("2026-11-21T05:17:21Z") is not None
    assert parse_timestamp("soon") is None
    assert parse_timestamp(None) is None


def test_vertices_of_a_concurrent_build_are_left_out() -> None:
    """A shared vertex of another build (`[1/4]`) beside this build's `[i/3]` steps."""
    tracker = ProgressTracker()
    t0, t1 = "2026-11-21T06:00:00Z", "2026-11-21T06:00:01Z"
    names = [
        "[1/3] COPY busybox /bin/busybox",
        "[2/3] RUN busybox --install",
        "[3/3] RUN echo a > /nonce",
        "[1/4] COPY busybox /bin/busybox",
        "[2/4] RUN busybox --install",
    ]
    tracker.feed(
        {
            "vertexes": [
                {
                    "digest": f"sha256:{i}",
                    "name": name,
                    "started": t0,
                    "completed": t1,
                    "cached": i < 3,
                }
                for i, name in enumerate(names)
            ]
        }
    )
    timeline = tracker.timeline()
    assert [s.name for s in timeline.steps if s.stage] == names[:3]
    assert [(s.name, s.steps, s.cached) for s in timeline.stages] == [("stage-0", 3, 3)]


# --------------------------------------------------------------------------- early export


def first_export(name: str) -> tuple[str | None, Timeline]:
    """The digest the tracker reports once the image is exported, and the timeline then."""
    tracker = ProgressTracker()
    for event in replay(name).events:
        tracker.feed(event)
        if tracker.exported_digest is not None:
            return tracker.exported_digest, tracker.timeline()
    return None, tracker.timeline()


def test_exported_digest_is_known_before_the_cache_export_ends() -> None:
    digest, then = first_export("cache_export_to_registry.rawjson")
    assert digest == "sha256:1f780146054e1efe7ee2f0880f6ca7c3d5c3f7e7a465fb91c1560b7a61016b51"
    export = [s for s in then.steps if s.name == "exporting cache to registry"]
    assert all(s.completed is None for s in export)  # not yet finished, or not yet begun


@pytest.mark.parametrize("name", ["cache_import_and_push.rawjson", "multistage_cold.rawjson"])
def test_exported_digest_is_the_manifest_buildkit_wrote(name: str) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    digest, _ = first_export(name)
    assert digest is not None
    assert f"exporting manifest {digest}" in text


def test_no_exported_digest_for_a_failed_build() -> None:
    assert first_export("failing_step.rawjson")[0] is None


def export_events(*ids: str, completed: bool = True) -> list[dict[str, object]]:
    vertex = {
        "digest": "sha256:exp",
        "name": "exporting to image",
        "started": "2026-01-01T00:00:00Z",
    }
    if completed:
        vertex["completed"] = "2026-01-01T00:00:01Z"
    statuses = [{"id": i, "vertex": "sha256:exp", "completed": "2026-01-01T00:00:01Z"} for i in ids]
    return [
        {"vertexes": [{k: v for k, v in vertex.items() if k != "completed"}]},
        {"statuses": statuses},
        {"vertexes": [vertex]},
    ]


@pytest.mark.parametrize(
    ("ids", "completed", "expected"),
    [
        ([f"exporting manifest sha256:{'a' * 64}"], True, f"sha256:{'a' * 64}"),
        ([f"exporting manifest sha256:{'a' * 64}"], False, None),  # still exporting
        (  # two platforms: the list is the image
            [
                f"exporting manifest sha256:{'a' * 64}",
                f"exporting manifest sha256:{'b' * 64}",
                f"exporting manifest list sha256:{'c' * 64}",
            ],
            True,
            f"sha256:{'c' * 64}",
        ),
        (  # two manifests and no list: ambiguous, wait for the metadata file
            [f"exporting manifest sha256:{'a' * 64}", f"exporting manifest sha256:{'b' * 64}"],
            True,
            None,
        ),
        (["writing image sha256:" + "d" * 64], True, None),  # classic store: config digest
    ],
)
def test_exported_digest_rules(ids: list[str], completed: bool, expected: str | None) -> None:
    tracker = ProgressTracker()
    for event in export_events(*ids, completed=completed):
        tracker.feed(event)
    assert tracker.exported_digest == expected
