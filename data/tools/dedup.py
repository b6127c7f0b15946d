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

Hash file (the evaluation side, for ``data/build.py --exclude_hashes`` and ``data.prepare``):

    python data/tools/dedup.py --write_hashes=eval_hashes.txt --eval DIR_OR_LIST [...]
    python data/tools/dedup.py --write_hashes=eval_hashes.txt --data_dir=TFDS_DIR \
        --tfds reid/market1501:query,gallery [--tfds pose/coco ...]

(``--tfds NAME`` alone takes every split but ``train`` of a built dataset.) Format
(:data:`HASH_FILE_HEADER`): UTF-8 text, ``#`` lines are comments, then one image per line,
``<16 lower-case hex digits of the 64-bit dHash><TAB><image name>``, sorted by name; the name
is the image path, or ``<builder>/<config>/<split>/<filename>`` for dataset images. Builds
record the file's SHA-256 (:func:`file_digest`), so a changed hash file is a changed build.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
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


def dhash_bytes(data: bytes) -> int:
  """dHash of an encoded image (JPEG/PNG/... bytes)."""
  with Image.open(io.BytesIO(data)) as im:
    return dhash(im)


class HashIndex:
  """Evaluation hashes, searchable for any hash within ``threshold`` bits.

  Exact for any threshold: by the pigeonhole principle two hashes within ``t`` bits agree
  exactly on at least one of ``t + 1`` disjoint bit blocks, so only evaluation hashes sharing a
  block are compared.
  """

  def __init__(self, hashes: Mapping[str, int], threshold: int = 0):
    if threshold < 0:
      raise ValueError(f"threshold must be >= 0 bits, got {threshold}")
    self.threshold = threshold
    self.hashes = dict(hashes)
    bits = 8 * HASH_SIZE
    edges = np.linspace(0, bits, min(threshold + 1, bits) + 1).astype(int)
    self._blocks = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    self._index: dict[tuple[int, int], list[str]] = {}
    for path in sorted(self.hashes):
      for key in self._block_values(self.hashes[path]):
        self._index.setdefault(key, []).append(path)

  def _block_values(self, h: int):
    bits = 8 * HASH_SIZE
    return [(i, (h >> (bits - hi)) & ((1 << (hi - lo)) - 1))
            for i, (lo, hi) in enumerate(self._blocks)]

  def match(self, h: int) -> tuple[str, int] | None:
    """(closest evaluation image, distance) within the threshold (ties: smallest name)."""
    cands = {e for key in self._block_values(h) for e in self._index.get(key, ())}
    best = min(((hamming(h, self.hashes[e]), e) for e in cands), default=None)
    if best is not None and best[0] <= self.threshold:
      return best[1], best[0]
    return None


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
  -> the smallest path), sorted by pretraining path (search: :class:`HashIndex`).
  """
  index = HashIndex(eval_hashes, threshold)
  out = []
  for path in sorted(pretrain_hashes):
    h = pretrain_hashes[path]
    m = index.match(h)
    if m is not None:
      out.append({"pretrain": path, "eval": m[0], "distance": m[1], "hash": f"{h:016x}"})
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


HASH_FILE_HEADER = ("# path_jax dHash file v1: <16 hex digits of the 64-bit difference hash>"
                    "<TAB><image name>, one image per line (data/tools/dedup.py)")


def write_hash_file(path: str, hashes: Mapping[str, int], comment: str = "") -> None:
  """Writes ``{name: hash}`` in the hash-file format (atomically: a temporary file renamed)."""
  for name in hashes:
    if "\n" in name or "\t" in name:
      raise ValueError(f"image name {name!r} holds a tab or newline; the hash file cannot")
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(HASH_FILE_HEADER + "\n")
    for ln in comment.splitlines():
      f.write(f"# {ln}\n")
    for name in sorted(hashes):
      f.write(f"{hashes[name]:016x}\t{name}\n")
  os.replace(tmp, path)


def read_hash_file(path: str) -> dict[str, int]:
  """``{name: hash}`` of a hash file; errors name the file and the line."""
  out = {}
  with open(path, encoding="utf-8") as f:
    for i, ln in enumerate(f, 1):
      ln = ln.rstrip("\n")
      if not ln.strip() or ln.startswith("#"):
        continue
      h, sep, name = ln.partition("\t")
      try:
        if not sep or len(h) != 2 * HASH_SIZE:
          raise ValueError
        out[name] = int(h, 16)
      except ValueError:
        raise ValueError(f"{path}:{i}: expected '<16 hex digits><TAB><name>', got {ln[:80]!r}; "
                         "write hash files with data/tools/dedup.py --write_hashes") from None
  return out


def file_digest(path: str) -> str:
  """SHA-256 (hex) of a file's bytes: what a build records of its hash file."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def hashes_of_tfds(data_dir: str, name: str, splits: Sequence[str] | None = None
                   ) -> dict[str, int]:
  """dHashes of a built TFDS dataset's images (default: every split but 'train').

  Names are ``<name>/<split>/<filename or index>``. Imports tensorflow_datasets.
  """
  import tensorflow_datasets as tfds  # Only this mode needs it.
  builder = tfds.builder(name, data_dir=data_dir)
  splits = list(splits) if splits else [s for s in builder.info.splits if s != "train"]
  out = {}
  for split in splits:
    src = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    for i in range(len(src)):
      rec = src[i]
      fname = rec.get("filename", str(i))
      fname = fname.decode() if isinstance(fname, bytes) else str(fname)
      out[f"{name}/{split}/{fname}"] = dhash_bytes(rec["image"])
  return out


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
  p.add_argument("--eval", action="append", default=[], help="folder or list (repeatable)")
  p.add_argument("--pretrain", action="append", default=[],
                 help="folder or list (repeatable)")
  p.add_argument("--threshold", type=int, default=0, help="max Hamming distance (bits)")
  p.add_argument("--report", help="removed images, .json or .csv")
  p.add_argument("--kept", help="write the kept pretraining paths here, one per line")
  p.add_argument("--workers", type=int, default=1)
  p.add_argument("--write_hashes", metavar="FILE",
                 help="write the hash file of the --eval images and --tfds splits and exit")
  p.add_argument("--tfds", action="append", default=[], metavar="NAME[:SPLIT,...]",
                 help="a built dataset's evaluation splits (default: all but train)")
  p.add_argument("--data_dir", help="TFDS data_dir of --tfds datasets")
  a = p.parse_args(argv)
  if a.write_hashes:
    if not a.eval and not a.tfds:
      p.error("--write_hashes needs --eval folders/lists or --tfds datasets")
    if a.tfds and not a.data_dir:
      p.error("--tfds needs --data_dir")
    hashes, bad = hash_files(expand(a.eval), a.workers)
    for spec in a.tfds:
      name, _, splits = spec.partition(":")
      hashes.update(hashes_of_tfds(a.data_dir, name, splits.split(",") if splits else None))
    write_hash_file(a.write_hashes, hashes)
    print(f"{len(hashes)} hashes ({len(bad)} unreadable images left out): {a.write_hashes}")
    for b in bad:
      print(f"  unreadable: {b}", file=sys.stderr)
    return 0
  if not a.eval or not a.pretrain or not a.report:
    p.error("de-duplication needs --eval, --pretrain and --report (or use --write_hashes)")
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
