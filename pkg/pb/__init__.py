"""Generated protobuf and gRPC modules of the wire contract (make proto)."""
