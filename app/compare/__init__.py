"""Compare jobs side by side: spec diff, final metrics, curves and flipped predictions."""
