"""One module per scenario of `make bench`; each `run` returns its figures and their same-run baseline."""
