"""One module per task (worker/recipes/base.py describes the seam)."""
