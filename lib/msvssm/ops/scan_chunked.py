"""Placeholder; the chunked backend registers itself here (work in progress)."""
