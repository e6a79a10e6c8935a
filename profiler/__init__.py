"""GPU operator profiler (measures per-operator times with PyTorch; writes Parquet profiles)."""
