"""Optional tracing with OpenTelemetry: a span per call, the store's work inside it.

Off unless the standard OTEL_* variables ask for traces (OTEL_TRACES_EXPORTER other than
"none", or OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set; never
with OTEL_SDK_DISABLED=true), and only with the `tracing` extra installed
(`pip install -e '.[tracing]'` in Tally's checkout); asked for without it, the server
logs one warning and serves untraced. Exporters: "otlp" (gRPC, or HTTP with
OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; the exporter reads its own
OTEL_EXPORTER_OTLP_* settings) and "console".
Sampling (OTEL_TRACES_SAMPLER), batching (OTEL_BSP_*) and the resource
(OTEL_SERVICE_NAME, default "tally-server"; OTEL_RESOURCE_ATTRIBUTES) follow the SDK.

Calls are traced by opentelemetry-instrumentation-grpc (api/call_tracing.py). The
services open child spans with `span()`: a unit of work (`tally.unit_of_work`), a group
commit (`tally.group_commit`, in the call that leads it). Off, `span()` costs a function
call and the call spans do not exist.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from importlib import metadata
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanContext, Tracer
    from opentelemetry.util.types import AttributeValue

# The span of a call, as current() gives it (None when tracing is off).
Caller = Optional["SpanContext"]

log = logging.getLogger(__name__)

_NO_SPAN: AbstractContextManager[None] = nullcontext()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def asked_for(env: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(env: Mapping[str, str] | None = None) -> bool:
    """Trace this process's calls when the environment asks for it (in each serving
    process: the SDK's exporting thread does not survive a fork). True when on."""
    env = os.environ if env is None else env
    if not asked_for(env):
        return False
    try:
        provider = _provider_from(env)
    except ImportError as error:
        log.warning(
            "OTEL_* variables ask for traces but OpenTelemetry is not installed (%s); "
            "serving without traces. Install it with: pip install -e '.[tracing]' in "
            "Tally's checkout",
            error.name or error,
        )
        return False
    enable(provider)
    log.info("tracing on: %s", env.get("OTEL_TRACES_EXPORTER") or "otlp")
    return True


def _provider_from(env: Mapping[str, str]) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create({SERVICE_VERSION: metadata.version("tally")})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "tally-server"}))
    provider = TracerProvider(resource=resource)
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for name in names:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
            )
            if protocol.startswith("http"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter as HttpExporter,
                )

                exporter = HttpExporter()
            else:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcExporter,
                )

                exporter = GrpcExporter()
        else:
            if name and name != "none":
                log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def enable(provider: TracerProvider) -> None:
    """Trace with `provider` (setup() makes one from the environment; tests pass their
    own, with an in-memory exporter)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("tally", metadata.version("tally"))


def provider() -> TracerProvider | None:
    """The provider calls are traced with; None when tracing is off."""
    return _provider


def shutdown() -> None:
    """Export what is left and turn tracing off."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def current() -> Caller:
    """The current span's context, for a span elsewhere to link to (None when off)."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    return trace.get_current_span().get_span_context()


def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    links: Sequence[Caller] = (),
) -> AbstractContextManager[object]:
    """A child span of the current one around a block of work, linked to the spans
    `links` names (nothing when off)."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    if links:
        from opentelemetry import trace

        own = trace.get_current_span().get_span_context()
        linked = [trace.Link(c) for c in links if c is not None and c.is_valid and c != own]
        return tracer.start_as_current_span(
            name, attributes=attributes, links=linked, set_status_on_exception=False
        )
    # A domain error raised through a unit of work (USER_NOT_FOUND) is no failure of the
    # work: the exception is noted, and the call's span carries the status.
    return tracer.start_as_current_span(name, attributes=attributes, set_status_on_exception=False)
