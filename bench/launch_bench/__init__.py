"""Benchmark harness for Launch: floors, peers and our platform, measured side by side."""
