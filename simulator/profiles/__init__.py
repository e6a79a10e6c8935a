"""Operator profiles: the Parquet file format (schema) and a directory of them (store).

See docs/profiles.md for the tables, units, metadata and file layout.
"""

from simulator.profiles.schema import (
    COLLECTIVE_OPS,
    CPU_OPS,
    DTYPES,
    FAMILIES,
    FAMILY_COLUMNS,
    LAYER_OPS,
    METADATA_KEY,
    MODEL_FAMILIES,
    MODEL_SHAPE_KEYS,
    SOURCES,
    STAT_COLUMNS,
    ProfileMeta,
    kv_heads_per_gpu,
    model_shape_of,
    per_gpu_heads,
    read_meta,
    read_profile,
    validate_frame,
    write_profile,
)
from simulator.profiles.store import ProfileStore

__all__ = [
    "COLLECTIVE_OPS",
    "CPU_OPS",
    "DTYPES",
    "FAMILIES",
    "FAMILY_COLUMNS",
    "LAYER_OPS",
    "METADATA_KEY",
    "MODEL_FAMILIES",
    "MODEL_SHAPE_KEYS",
    "SOURCES",
    "STAT_COLUMNS",
    "ProfileMeta",
    "ProfileStore",
    "kv_heads_per_gpu",
    "model_shape_of",
    "per_gpu_heads",
    "read_meta",
    "read_profile",
    "validate_frame",
    "write_profile",
]
