"""Benchmarks: forward, edit, stream, browser and GPU timings; the in-memory random editor (see core.py)."""
