"""Tracing (server/tracing.py): a span per call, continuing the caller's trace, with the
store's work inside it, collected by the OpenTelemetry SDK's in-memory exporter. Skipped,
saying so, where the `tracing` extra is not installed (the dev extra installs it)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from server import app, tracing
from server.domain import commands
from server.domain.batch import Circumstances, CustomChange
from server.domain.book import Book
from server.domain.errors import StoreUnavailable
from server.domain.model import UserProfile
from server.services.pipeline.posting import Change
from server.services.pipeline.results import WriteResult
from server.services.tally import Tally
from server.services.use_cases import points_changes
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc
from tests.conftest import T0
from tests.e2e.conftest import keyed, new_key
from tests.e2e.test_api import award, create_system
from tests.integration.helpers import system
from tests.integration.test_writer import award_change, awarded

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")
pytest.importorskip("opentelemetry.instrumentation.grpc", reason="the tracing extra")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
AWARD = "/tally.v1.PointsService/Award"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
def traced(
    exported: InMemorySpanExporter, store: SqlStore
) -> Iterator[points_pb2_grpc.PointsServiceStub]:
    built = app.build(Settings(listen="127.0.0.1:0", threads=8), store)
    built.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            yield points_pb2_grpc.PointsServiceStub(keyed(channel, new_key(store)))
    finally:
        built.stop(grace_seconds=1)


def calls(exporter: InMemorySpanExporter, method: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == method]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id
    return [s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == parent_id]


def test_a_call_is_a_span_of_the_callers_trace_with_the_commit_inside(
    traced: points_pb2_grpc.PointsServiceStub, exported: InMemorySpanExporter
) -> None:
    create_system(traced)
    exported.clear()
    response = traced.Award(
        points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="alice"), amount=5),
        # W3C trace context, as an instrumented caller sends it
        metadata=(("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01"),),
    )
    assert response.balance.balance == 5
    (call,) = calls(exported, AWARD)
    assert call.kind == SpanKind.SERVER
    assert f"{call.context.trace_id:032x}" == TRACE_ID
    assert call.parent is not None
    assert f"{call.parent.span_id:016x}" == CALLER_SPAN
    assert attributes(call)["rpc.grpc.status_code"] == 0
    inside = children(exported, call)
    names = sorted(s.name for s in inside)
    assert "tally.group_commit" in names  # this call led its own commit
    (commit,) = (s for s in inside if s.name == "tally.group_commit")
    assert attributes(commit)["tally.changes"] == 1
    (work,) = children(exported, commit)
    assert work.name == "tally.unit_of_work"
    assert attributes(work)["tally.write"] is True


def test_a_stream_is_one_span_with_its_reads_inside(
    traced: points_pb2_grpc.PointsServiceStub, exported: InMemorySpanExporter
) -> None:
    create_system(traced)
    award(traced, "alice", 5)
    request = points_pb2.StreamHistoryRequest(system_key="xp", user_id="alice")
    assert [e.amount for m in traced.StreamHistory(request) for e in m.entries] == [5]
    (stream,) = calls(exported, "/tally.v1.PointsService/StreamHistory")
    assert stream.kind == SpanKind.SERVER
    assert "tally.unit_of_work" in {s.name for s in children(exported, stream)}


def test_a_failed_call_carries_its_status(
    traced: points_pb2_grpc.PointsServiceStub,
    exported: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller's fault (INVALID_ARGUMENT) is noted on the span; the server's
    (UNAVAILABLE) makes it an error."""
    create_system(traced)
    with pytest.raises(grpc.RpcError):
        award(traced, "alice", 0)

    def down(*args: Any) -> Any:
        raise StoreUnavailable()

    monkeypatch.setattr(points_changes, "award", down)
    with pytest.raises(grpc.RpcError):
        award(traced, "alice", 1)
    invalid, unavailable = calls(exported, AWARD)
    assert attributes(invalid)["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert invalid.status.status_code == StatusCode.UNSET
    assert attributes(unavailable)["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert unavailable.status.status_code == StatusCode.ERROR


@pytest.mark.parametrize(
    ("env", "asked"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_off_unless_the_otel_variables_ask(env: dict[str, str], asked: bool) -> None:
    assert tracing.asked_for(env) is asked


def test_asked_for_without_the_extra_it_warns_once_and_serves(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="server.tracing"):
        assert tracing.setup({"OTEL_TRACES_EXPORTER": "otlp"}) is False
    warnings = [r for r in caplog.records if r.name == "server.tracing"]
    assert len(warnings) == 1
    assert "pip install -e '.[tracing]' in Tally's checkout" in warnings[0].getMessage()
    assert tracing.provider() is None


def test_setup_from_the_environment_makes_a_provider() -> None:
    try:
        assert tracing.setup({"OTEL_TRACES_EXPORTER": "console"}) is True
        provider = tracing.provider()
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "tally-server"
    finally:
        tracing.shutdown()


def test_a_group_commit_links_the_calls_it_carries(
    exported: InMemorySpanExporter, tally: Tally
) -> None:
    """Calls queued behind a commit wait in a span of their own; the commit that carries
    them, led by one of them, links every other one's span."""
    system(tally)
    provider = tracing.provider()
    assert provider is not None
    tracer = provider.get_tracer("test")
    inside, release = threading.Event(), threading.Event()

    def slow(book: Book, given: Circumstances) -> WriteResult:
        inside.set()
        assert release.wait(10)
        return awarded(book, given, commands.Award("xp", UserProfile("u0"), 1))

    def call(name: str, change: Change) -> None:
        with tracer.start_as_current_span(name):
            tally.writer.post([change])

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(
            call, "call-0", CustomChange("xp", "u0", slow, T0, profile=UserProfile("u0"))
        )
        assert inside.wait(10)
        rest = [pool.submit(call, f"call-{i}", award_change(f"u{i}", 1)) for i in (1, 2)]
        deadline = time.monotonic() + 10
        while tally.writer.waiting() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for done in (first, *rest):
            done.result(10)
    spans = {s.name: s for s in exported.get_finished_spans() if s.name.startswith("call-")}
    (carried,) = (
        s
        for s in exported.get_finished_spans()
        if s.name == "tally.group_commit" and attributes(s)["tally.changes"] == 2
    )
    assert carried.parent is not None
    leader = next(n for n, s in spans.items() if s.context.span_id == carried.parent.span_id)
    other = ({"call-1", "call-2"} - {leader}).pop()
    assert [link.context.span_id for link in carried.links] == [spans[other].context.span_id]
    for name in ("call-1", "call-2"):
        assert "tally.commit_wait" in {s.name for s in children(exported, spans[name])}
