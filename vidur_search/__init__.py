"""vidur_search: the Hydra app (single simulations now; the configuration search next)."""
