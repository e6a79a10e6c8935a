"""Command line of the profile store.

    python -m simulator.profiles coverage --store DIR [--store DIR2 ...] --model M --sku S
        --tp N [--node NODE] [--dtype bf16]

``coverage`` prints which profile file covers each family for (model, SKU, TP), searching
the stores in order as ``execution.profiled.store`` does: the model's own file, a
shape-keyed attention table holding the model's per-GPU heads, or the node's collective
table; and, for each family left uncovered, what to profile and what the fallback prices
instead (:func:`simulator.profiles.store.cover`). A bad value is an error naming the flag
and the allowed values, and a profile file the engine would refuse (damaged, a missing
column, a bad row) an error naming the file (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from simulator.errors import ConfigError
from simulator.profiles.schema import DTYPES
from simulator.profiles.store import ProfileStore, cover, format_coverage


def _check_args(args: argparse.Namespace) -> str:
    """Validate the flags against the built-in catalogue; return the node to use."""
    from simulator.catalogue import (
        default_node_for,
        get_model,
        get_node,
        model_names,
        node_names,
        sku_names,
    )

    for root in args.store:
        if not Path(root).is_dir():
            raise ConfigError("--store", root, "no such directory (a profile store root)")
    if args.model not in model_names():
        raise ConfigError("--model", args.model, "allowed values are " + ", ".join(model_names()))
    if args.sku not in sku_names():
        raise ConfigError("--sku", args.sku, "allowed values are " + ", ".join(sku_names()))
    heads = get_model(args.model).num_heads
    if args.tp < 1 or heads % args.tp:
        divisors = [str(d) for d in range(1, heads + 1) if heads % d == 0]
        raise ConfigError("--tp", args.tp, f"must divide {args.model}'s {heads} attention "
                          "heads; allowed values are " + ", ".join(divisors))
    if args.dtype not in DTYPES:
        raise ConfigError("--dtype", args.dtype, "allowed values are " + ", ".join(DTYPES))
    if not args.node:
        return default_node_for(args.sku)
    nodes = [n for n in node_names() if get_node(n).sku == args.sku]
    if args.node not in nodes:
        raise ConfigError("--node", args.node,
                          f"allowed values for --sku {args.sku} are " + ", ".join(nodes))
    return args.node


def coverage_command(args: argparse.Namespace) -> str:
    """The ``coverage`` answer as text (ConfigError for a bad flag)."""
    node = _check_args(args)
    stores = [ProfileStore(root) for root in args.store]
    cov = cover(stores, args.model, args.sku, args.tp, args.dtype, node=node)
    title = (f"Profiles for {args.model} on {args.sku} at tp={args.tp} ({args.dtype}, node "
             f"{node}); stores searched in order: {', '.join(args.store)}")
    return format_coverage(cov, title=title)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 for a bad flag)."""
    parser = argparse.ArgumentParser(prog="python -m simulator.profiles",
                                     description="Profile store queries.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser(
        "coverage", help="which profiles cover (model, SKU, TP)",
        description="Which profile file covers each family for (model, SKU, TP), searching "
                    "the stores in order; for what is uncovered, what to profile and what "
                    "the fallback prices instead.")
    cmd.add_argument("--store", action="append", required=True, metavar="DIR",
                     help="profile store root; repeat to search several, in order")
    cmd.add_argument("--model", required=True, help="catalogue model (e.g. llama-2-70b)")
    cmd.add_argument("--sku", required=True, help="catalogue GPU SKU (e.g. h100-sxm)")
    cmd.add_argument("--tp", required=True, type=int, help="tensor-parallel degree")
    cmd.add_argument("--node", default="",
                     help="catalogue node type for collectives (default: the SKU's first)")
    cmd.add_argument("--dtype", default="bf16",
                     help="profile dtype (default bf16; a 16-bit lookup also finds fp16)")
    args = parser.parse_args(argv)
    try:
        text = coverage_command(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
