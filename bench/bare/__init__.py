"""A bench-only app: the cheapest useful DRF write, to measure the real message endpoint against."""
