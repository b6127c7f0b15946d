"""Removes pretraining images that duplicate evaluation images (paper §3: difference hash).

    python data/tools/dedup.py --eval DIR_OR_LIST [--eval ...] --pretrain DIR_OR_LIST [...] \
        --report removed.json --kept kept.txt [--threshold 0] [--workers 1]

Each ``--eval``/``--pretrain`` is a folder (every image under it, recursively) or a text file
with one image path per line. Every image gets a 64-bit difference hash (dHash: grayscale,
resized to 9x8, bit = pixel brighter than its right neighbour, row-major, first bit most
significant); a pretraining image is removed when the Hamming distance between its hash and any
evaluation image's hash is <= ``threshold`` (0: identical hashes, as the paper does). The
report (``.json`` or ``.csv``) lists every removed image with the evaluation image it matched
and the distance; unreadable images are listed separately and kept out of both sets' matching.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from multiprocessing import Pool
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

HASH_SIZE = 8  # 8 rows x 8 comparisons = 64 bits
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def dhash(image: Image.Image | str | os.PathLike) -> int:
  """64-bit difference hash of an image (a PIL image or a path) as a Python int."""
  if not isinstance(image, Image.Image):
    with Image.open(image) as im:
      return dhash(im.convert("L"))
  small = image.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS)
  a = np.asarray(small, np.int16)
  bits = (a[:, :-1] > a[:, 1:]).reshape(-1)
  return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
  return (a ^ b).bit_count()


def _safe_hash(path: str) -> tuple[str, int | None]:
  try:
    return path, dhash(path)
  except (OSError, SyntaxError, ValueError):
    return path, None


def hash_files(paths: Sequence[str], workers: int = 1) -> tuple[dict[str, int], list[str]]:
  """-> ({path: hash}, [unreadable paths])."""
  if workers > 1:
    with Pool(workers) as pool:
      results = pool.map(_safe_hash, paths, chunksize=256)
  else:
    results = [_safe_hash(p) for p in paths]
  hashes = {p: h for p, h in results if h is not None}
  return hashes, [p for p, h in results if h is None]


def find_matches(eval_hashes: Mapping[str, int], pretrain_hashes: Mapping[str, int],
                 threshold: int = 0) -> list[dict]:
  """Pretraining images within ``threshold`` bits of an evaluation image.

  Returns ``[{'pretrain', 'eval', 'distance', 'hash'}]`` (the closest evaluation image; ties
  -> the smallest path), sorted by pretraining path. Exact for any threshold: by the pigeonhole
  principle two hashes within ``t`` bits agree exactly on at least one of ``t + 1`` disjoint
  bit blocks, so only evaluation hashes sharing a block are compared.
  """
  bits = 8 * HASH_SIZE
  n_blocks = min(threshold + 1, bits)
  edges = np.linspace(0, bits, n_blocks + 1).astype(int)
  blocks = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]

  def block_values(h):
    return [(i, (h >> (bits - hi)) & ((1 << (hi - lo)) - 1)) for i, (lo, hi) in enumerate(blocks)]

  index: dict[tuple[int, int], list[str]] = {}
  for path in sorted(eval_hashes):
    for key in block_values(eval_hashes[path]):
      index.setdefault(key, []).append(path)
  out = []
  for path in sorted(pretrain_hashes):
    h = pretrain_hashes[path]
    cands = {e for key in block_values(h) for e in index.get(key, ())}
    best = min(((hamming(h, eval_hashes[e]), e) for e in cands), default=None)
    if best is not None and best[0] <= threshold:
      out.append({"pretrain": path, "eval": best[1], "distance": best[0], "hash": f"{h:016x}"})
  return out


@dataclasses.dataclass
class DedupResult:
  kept: list
  removed: list      # find_matches records
  unreadable: list


def deduplicate(eval_paths: Sequence[str], pretrain_paths: Sequence[str], threshold: int = 0,
                workers: int = 1) -> DedupResult:
  """Hashes both sets and drops pretraining images matching an evaluation image."""
  eval_hashes, bad_eval = hash_files(list(eval_paths), workers)
  pre_hashes, bad_pre = hash_files(list(pretrain_paths), workers)
  removed = find_matches(eval_hashes, pre_hashes, threshold)
  gone = {r["pretrain"] for r in removed}
  kept = [p for p in pretrain_paths if p in pre_hashes and p not in gone]
  return DedupResult(kept, removed, sorted(bad_eval + bad_pre))


def write_report(result: DedupResult, path: str, threshold: int) -> None:
  """JSON (summary + removed + unreadable) or CSV (one removed image per row)."""
  if path.endswith(".csv"):
    with open(path, "w", newline="") as f:
      w = csv.DictWriter(f, fieldnames=["pretrain", "eval", "distance", "hash"])
      w.writeheader()
      w.writerows(result.removed)
    return
  with open(path, "w") as f:
    json.dump({"threshold": threshold, "num_kept": len(result.kept),
               "num_removed": len(result.removed), "removed": result.removed,
               "unreadable": result.unreadable,
               "reason": "dHash Hamming distance to an evaluation image <= threshold"},
              f, indent=1)


def expand(sources: Iterable[str]) -> list[str]:
  """Folders -> their images (recursive, sorted); text files -> their lines."""
  out = []
  for s in sources:
    if os.path.isdir(s):
      for d, _, files in sorted(os.walk(s)):
        out += [os.path.join(d, f) for f in sorted(files) if f.lower().endswith(_IMAGE_EXT)]
    elif os.path.isfile(s):
      with open(s) as f:
        out += [ln.strip() for ln in f if ln.strip()]
    else:
      raise FileNotFoundError(f"{s}: neither an image folder nor a list file")
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--eval", action="append", required=True, help="folder or list (repeatable)")
  p.add_argument("--pretrain", action="append", required=True,
                 help="folder or list (repeatable)")
  p.add_argument("--threshold", type=int, default=0, help="max Hamming distance (bits)")
  p.add_argument("--report", required=True, help="removed images, .json or .csv")
  p.add_argument("--kept", help="write the kept pretraining paths here, one per line")
  p.add_argument("--workers", type=int, default=1)
  a = p.parse_args(argv)
  result = deduplicate(expand(a.eval), expand(a.pretrain), a.threshold, a.workers)
  write_report(result, a.report, a.threshold)
  if a.kept:
    with open(a.kept, "w") as f:
      f.write("".join(k + "\n" for k in result.kept))
  print(f"kept {len(result.kept)}, removed {len(result.removed)}, "
        f"unreadable {len(result.unreadable)}; report: {a.report}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
