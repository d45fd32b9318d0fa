"""The gRPC edge: servicers that translate protobuf <-> domain, and the error mapping."""
