"""Reference gRPC service, load generator and latency gate of the lowlatency.tuning collection."""
