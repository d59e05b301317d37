"""Loopback fakes of partner platforms, for the demo, the integration tests and the benchmarks.

Each platform's sandbox builds on :mod:`partnersync.sandbox.framework` (serving on 127.0.0.1,
leaky buckets, fault knobs, JSONL request log) and adds only its protocol.
"""
