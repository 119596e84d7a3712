"""Sweeps: one job per point of a grid (or random samples), validated together, ranked by a metric."""
