"""The use cases, one module per concern, each a thin use of the pipeline, the held state
and the ports: none imports another's helpers."""
