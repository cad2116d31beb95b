//! Simulated RTSP cameras for demos, tests and benchmarks
