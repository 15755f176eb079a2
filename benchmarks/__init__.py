"""hrdash benchmarks: measured and reported, never asserted. Run ``python benchmarks/run.py``."""
