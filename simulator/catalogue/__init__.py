"""The catalogue of models, GPU SKUs and node types, read from YAML data files.

The built-in ``models.yaml``, ``skus.yaml`` and ``nodes.yaml`` ship with the package and
are read once. ``load_catalogue(DIR)`` merges a user's own files of the same names over
them: a user entry adds a name or replaces the built-in entry of that name. Every entry
is checked when loaded; an unknown or missing field, a value of the wrong type, a
non-positive size or an inconsistent shape raises ``ConfigError`` naming the file, the
entry and the field (e.g. ``models.yaml: llama-2-70b.num_kv_heads``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from simulator.catalogue.specs import ModelSpec, NodeSpec, SkuSpec
from simulator.errors import ConfigError

__all__ = [
    "Catalogue",
    "ModelSpec",
    "NodeSpec",
    "SkuSpec",
    "default_node_for",
    "get_model",
    "get_node",
    "get_sku",
    "load_catalogue",
    "model_names",
    "node_names",
    "sku_names",
]

# kind -> (file name, record class)
_FILES: dict[str, tuple[str, type]] = {
    "model": ("models.yaml", ModelSpec),
    "sku": ("skus.yaml", SkuSpec),
    "node": ("nodes.yaml", NodeSpec),
}
# Python type of each annotation used in specs.py (annotations are strings there).
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
}
# Numeric fields where 0 is a meaningful sentinel (see specs.py); all others must be > 0.
_ZERO_OK = {"fp8_tflops", "head_dim"}
TOPOLOGIES = ("nvswitch", "pairwise_nvlink", "pcie")
NORMS = ("rmsnorm", "layernorm")
ACTIVATIONS = ("silu", "gelu", "gelu_new")
DTYPE_BYTES = (1, 2, 4)


def _allowed(names: Mapping[str, Any] | tuple[Any, ...]) -> str:
    return "allowed values are " + ", ".join(sorted(map(str, names)))


@dataclass(frozen=True)
class Catalogue:
    """Models, SKUs and node types by name (read-only mappings, in file order)."""

    models: Mapping[str, ModelSpec]
    skus: Mapping[str, SkuSpec]
    nodes: Mapping[str, NodeSpec]

    @staticmethod
    def _get(kind: str, table: Mapping[str, Any], name: str) -> Any:
        if name not in table:
            raise ConfigError(kind, name, _allowed(table))
        return table[name]

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``; ConfigError listing the known names otherwise."""
        return self._get("model", self.models, name)

    def sku(self, name: str) -> SkuSpec:
        """The GPU SKU called ``name``; ConfigError listing the known names otherwise."""
        return self._get("sku", self.skus, name)

    def node(self, name: str) -> NodeSpec:
        """The node type called ``name``; ConfigError listing the known names otherwise."""
        return self._get("node", self.nodes, name)

    def nodes_for(self, sku: str) -> list[str]:
        """Node types holding ``sku``, the default (first listed) first."""
        return [n for n, spec in self.nodes.items() if spec.sku == sku]

    def default_node_for(self, sku: str) -> str:
        """The first node type listed for ``sku``."""
        self.sku(sku)
        return self.nodes_for(sku)[0]


def _parse_entry(kind: str, source: str, name: Any, entry: Any) -> Any:
    """One YAML entry -> its spec record, with every field checked."""
    _, cls = _FILES[kind]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: entry name", name, "must be a non-empty string")
    where = f"{source}: {name}"
    if not isinstance(entry, dict):
        raise ConfigError(where, entry, "must be a mapping of field: value")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
    for key, value in entry.items():
        if key not in fields:
            raise ConfigError(
                f"{where}.{key}", value, "unknown field; allowed: " + ", ".join(fields)
            )
    for key, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if key not in entry and required:
            raise ConfigError(f"{where}.{key}", None, "missing required field")
    for key, value in entry.items():
        type_name = str(fields[key].type)
        types = _TYPES.get(type_name, (object,))
        if not isinstance(value, types) or (isinstance(value, bool) and type_name != "bool"):
            raise ConfigError(f"{where}.{key}", value, f"must be of type {type_name}")
        numeric = type_name in ("int", "float")
        bad = numeric and (
            not math.isfinite(value) or value < 0 or (value == 0 and key not in _ZERO_OK)
        )
        if bad:
            floor = ">= 0" if key in _ZERO_OK else "> 0"
            raise ConfigError(f"{where}.{key}", value, f"must be a finite number {floor}")
    spec = cls(name=name, **entry)
    _check_entry(where, spec)
    return spec


def _check_entry(where: str, spec: Any) -> None:
    """Checks within one entry (shapes, enumerations)."""
    if isinstance(spec, ModelSpec):
        if spec.num_heads % spec.num_kv_heads:
            raise ConfigError(
                f"{where}.num_kv_heads",
                spec.num_kv_heads,
                f"must divide num_heads={spec.num_heads}",
            )
        if not spec.head_dim and spec.hidden_size % spec.num_heads:
            raise ConfigError(
                f"{where}.head_dim",
                spec.head_dim,
                f"must be set when num_heads={spec.num_heads} does not divide "
                f"hidden_size={spec.hidden_size}",
            )
        if spec.experts_top_k > spec.num_experts:
            raise ConfigError(
                f"{where}.experts_top_k",
                spec.experts_top_k,
                f"must be <= num_experts={spec.num_experts}",
            )
        for key, value, allowed in (
            ("norm", spec.norm, NORMS),
            ("activation", spec.activation, ACTIVATIONS),
            ("dtype_bytes", spec.dtype_bytes, DTYPE_BYTES),
        ):
            if value not in allowed:
                raise ConfigError(f"{where}.{key}", value, _allowed(allowed))
    elif isinstance(spec, NodeSpec):
        if spec.topology not in TOPOLOGIES:
            raise ConfigError(f"{where}.topology", spec.topology, _allowed(TOPOLOGIES))
        if spec.topology == "pairwise_nvlink" and spec.gpus_per_node % 2:
            raise ConfigError(
                f"{where}.gpus_per_node", spec.gpus_per_node, "must be even for pairwise_nvlink"
            )


def _parse(kind: str, source: str, text: str) -> dict[str, Any]:
    """A whole YAML file -> {name: spec}."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(source, "", f"is not valid YAML: {err}") from err
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(source, type(raw).__name__, "must be a mapping of name: fields")
    return {name: _parse_entry(kind, source, name, entry) for name, entry in raw.items()}


def _build(tables: dict[str, dict[str, Any]], node_file: str, sku_file: str) -> Catalogue:
    """Cross-entry checks, then a read-only Catalogue."""
    for n in tables["node"].values():
        if n.sku not in tables["sku"]:
            raise ConfigError(f"{node_file}: {n.name}.sku", n.sku, _allowed(tables["sku"]))
    held = {n.sku for n in tables["node"].values()}
    for s in tables["sku"]:
        if s not in held:
            raise ConfigError(
                f"{sku_file}: {s}", s, "has no node type; add one to nodes.yaml with sku: " + s
            )
    return Catalogue(*(MappingProxyType(tables[k]) for k in ("model", "sku", "node")))


@cache
def _builtin() -> Catalogue:
    pkg = resources.files("simulator.catalogue")
    tables = {
        kind: _parse(kind, fname, pkg.joinpath(fname).read_text(encoding="utf-8"))
        for kind, (fname, _) in _FILES.items()
    }
    return _build(tables, "nodes.yaml", "skus.yaml")


@cache
def _user(root: str, stamp: tuple[tuple[str, int, int], ...]) -> Catalogue:
    """The built-in catalogue merged with the files of ``root`` (cached per file stamp)."""
    base = _builtin()
    tables: dict[str, dict[str, Any]] = {
        "model": dict(base.models),
        "sku": dict(base.skus),
        "node": dict(base.nodes),
    }
    for kind, (fname, _) in _FILES.items():
        f = Path(root) / fname
        if f.is_file():
            tables[kind].update(_parse(kind, str(f), f.read_text(encoding="utf-8")))
    return _build(tables, str(Path(root) / "nodes.yaml"), str(Path(root) / "skus.yaml"))


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The built-in catalogue, with the YAML files in directory ``path`` merged over it.

    ``path`` may hold any of ``models.yaml``, ``skus.yaml`` and ``nodes.yaml``; entries
    there add names or replace built-in entries whole. Results are cached until a file
    in ``path`` changes.
    """
    if path is None or str(path) == "":
        return _builtin()
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(
            "catalogue",
            str(path),
            "must be a directory holding models.yaml, skus.yaml and/or nodes.yaml",
        )
    stamp = []
    for fname, _ in _FILES.values():
        f = root / fname
        if f.is_file():
            st = f.stat()
            stamp.append((fname, st.st_mtime_ns, st.st_size))
    return _user(str(root), tuple(stamp))


def get_model(name: str) -> ModelSpec:
    """Built-in model ``name``."""
    return _builtin().model(name)


def get_sku(name: str) -> SkuSpec:
    """Built-in GPU SKU ``name``."""
    return _builtin().sku(name)


def get_node(name: str) -> NodeSpec:
    """Built-in node type ``name``."""
    return _builtin().node(name)


def default_node_for(sku_name: str) -> str:
    """The first built-in node type listed for ``sku_name``."""
    return _builtin().default_node_for(sku_name)


def model_names() -> list[str]:
    """Built-in model names, in file order."""
    return list(_builtin().models)


def sku_names() -> list[str]:
    """Built-in SKU names, in file order."""
    return list(_builtin().skus)


def node_names() -> list[str]:
    """Built-in node type names, in file order."""
    return list(_builtin().nodes)
