"""The benchmark harness (`make bench`, see bench/README.md) and the bench-only Django app it serves."""
