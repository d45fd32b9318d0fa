"""The real server on a free port, over each store, called through the generated stubs."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from server import app
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import points_pb2_grpc


@pytest.fixture
def server(store: SqlStore) -> Iterator[app.App]:
    built = app.build(Settings(listen="127.0.0.1:0", threads=8), store)
    built.start()
    yield built
    built.stop(grace_seconds=1)


@pytest.fixture
def channel(server: app.App) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture
def points(channel: grpc.Channel) -> points_pb2_grpc.PointsServiceStub:
    return points_pb2_grpc.PointsServiceStub(channel)
