"""Generates humanbench_mini and builds every dataset with data/build.py into one TFDS data_dir.

    python -m data.humanbench_mini.build_all --data_dir=DIR [--sources=DIR] [--seed=0]
        [--size=default|tiny] [--only=mini_market,...]

Sources go to ``--sources`` (default: DATA_DIR/humanbench_mini_sources) and are regenerated
each run (deterministic, a few seconds); every builder config of every dataset is then built
with ``strict=True`` (generated data must contain no bad input) and ``overwrite=True``.
Afterwards read any of them with ``tfds.data_source('<builder>/<config>', data_dir=DIR)``;
the list is in DIR/humanbench_mini.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):  # run as a script: make `data.*` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.humanbench_mini import generate  # noqa: E402


def build_all(data_dir: str, sources: str | None = None, seed: int = 0, size: str = "default",
              only: tuple[str, ...] | None = None, verbose: bool = False) -> dict[str, Any]:
  """Generates the sources, builds them; returns and writes DATA_DIR/humanbench_mini.json:
  {"seed", "size", "sources", "datasets": {tfds name: {"mini": dataset, "task", "role",
  "splits": {split: examples}}}}."""
  # TensorFlow (via tfds) is imported only here: generating sources does not need it.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from data import build as tfds_build

  sources = sources or os.path.join(data_dir, "humanbench_mini_sources")
  t0 = time.perf_counter()
  manifest = generate.generate(sources, seed, size, only, verbose=verbose)
  if verbose:
    print(f"generated {sources} in {time.perf_counter() - t0:.1f} s")
  index = {"seed": seed, "size": size, "sources": os.path.abspath(sources), "datasets": {}}
  for name, entry in manifest["datasets"].items():
    manual_dir = os.path.join(sources, entry["path"])
    for full in entry["builds"]:
      t1 = time.perf_counter()
      final = tfds_build.build(full, manual_dir, data_dir, overwrite=True, strict=True,
                               source="humanbench_mini")
      with open(os.path.join(final, "build_report.json")) as f:
        splits = json.load(f)["splits"]
      index["datasets"][full] = {"mini": name, "task": entry["task"], "role": entry["role"],
                                 "splits": splits}
      if verbose:
        print(f"built {full:<26s} from {name:<18s} {time.perf_counter() - t1:5.1f} s {splits}")
  with open(os.path.join(data_dir, "humanbench_mini.json"), "w") as f:
    json.dump(index, f, indent=1, sort_keys=True)
  if verbose:
    print(f"humanbench_mini ({size}) ready in {data_dir} after {time.perf_counter() - t0:.1f} s")
  return index


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir to build into")
  parser.add_argument("--sources", default=None,
                      help="where the source trees go (default DATA_DIR/humanbench_mini_sources)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--size", choices=generate.SIZES, default="default")
  parser.add_argument("--only", default="", help="comma-separated dataset names (default: all)")
  args = parser.parse_args(argv)
  only = tuple(s for s in args.only.split(",") if s) or None
  build_all(args.data_dir, args.sources, args.seed, args.size, only, verbose=True)


if __name__ == "__main__":
  main()
