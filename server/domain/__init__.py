"""The rules of the points engine: plain Python, no gRPC, no SQLAlchemy."""
