"""Conduit's load benchmark (`make bench`), run by bench/run.py, which documents it."""
