"""Peer implementations of the live page, for side-by-side measurements against hrdash."""
