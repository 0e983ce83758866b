"""Measured figures: python -m benchmarks {decode,generate,probe} (ratios side by side in one run)."""
