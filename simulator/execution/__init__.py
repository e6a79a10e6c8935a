"""Batch-runtime models behind one interface (base.ExecutionModel)."""
