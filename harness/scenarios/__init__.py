"""LoadGen-style inference scenarios: single-stream, offline and server (Poisson arrivals,
a batching scheduler, the max request rate meeting p99 latency targets). docs/scenarios.md."""
