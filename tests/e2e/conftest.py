"""The real server on a free port, over each store, called through the generated stubs
with a real API key (admin unless a test makes another)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from server import app
from server.domain.access import Scope
from server.services.operations import api_keys
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import points_pb2_grpc


class WithMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
):
    """Adds fixed metadata (a key, a token) to every call on a channel."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = pairs

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self.pairs))

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)


def keyed(channel: grpc.Channel, key: str) -> grpc.Channel:
    """`channel`, sending `key` as x-api-key on every call."""
    return grpc.intercept_channel(channel, WithMetadata(("x-api-key", key)))


def new_key(store: SqlStore, scope: Scope = Scope.ADMIN, systems: tuple[str, ...] = ()) -> str:
    return api_keys.create_key(store, f"test {scope.value}", scope, systems, app.utc_now()).text


@pytest.fixture
def server(store: SqlStore) -> Iterator[app.App]:
    built = app.build(Settings(listen="127.0.0.1:0", threads=8), store)
    built.start()
    yield built
    built.stop(grace_seconds=1)


@pytest.fixture
def admin_key(store: SqlStore) -> str:
    return new_key(store)


@pytest.fixture
def bare_channel(server: app.App) -> Iterator[grpc.Channel]:
    """A channel that sends no key."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture
def channel(bare_channel: grpc.Channel, admin_key: str) -> grpc.Channel:
    return keyed(bare_channel, admin_key)


@pytest.fixture
def points(channel: grpc.Channel) -> points_pb2_grpc.PointsServiceStub:
    return points_pb2_grpc.PointsServiceStub(channel)
