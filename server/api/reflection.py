"""Server reflection that also resolves a method's symbol (`tally.v1.PointsService.Deduct`).

grpcurl's `describe SERVICE.METHOD` asks for the file containing the method's full name,
and protobuf's descriptor pool knows services and messages by name but not methods, so
the stock servicer answered NOT_FOUND. A method is answered with its service's file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

SERVICE_NAME = reflection.SERVICE_NAME


class MethodAwareReflection(reflection.ReflectionServicer):  # type: ignore[misc]
    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        return super()._file_containing_symbol(request, self._symbol(fully_qualified_name))

    def _symbol(self, name: str) -> str:
        """`name`, or for a method the service it belongs to."""
        try:
            self._pool.FindFileContainingSymbol(name)
            return name
        except KeyError:
            service, _, method = name.rpartition(".")
            try:
                found = method in self._pool.FindServiceByName(service).methods_by_name
            except KeyError:
                return name
            return service if found else name


def enable(service_names: Iterable[str], server: grpc.Server) -> None:
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        MethodAwareReflection(tuple(service_names)), server
    )
