"""``python -m profiler model=<catalogue name> tp=<1,2,4,8> out=<dir> [key=value ...]``.

Times every operator of one TP-sharded decoder layer (CUDA events on a GPU; a tiny
stand-in model on the CPU) and writes Parquet profiles; see docs/profiler.md.
"""

from profiler.run import main

if __name__ == "__main__":
    raise SystemExit(main())
