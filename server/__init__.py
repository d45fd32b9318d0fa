"""Tally: a points engine served over gRPC."""
