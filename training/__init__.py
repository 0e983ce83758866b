"""GPU side: data, models, train / distil / qat / evaluate (python -m training.X). Depends on sdk, never the reverse."""
