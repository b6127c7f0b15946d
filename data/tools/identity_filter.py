"""Keeps the LUPerson-NL identities with 15 to 200 images (paper §3; bounds configurable).

    python data/tools/identity_filter.py --list_dir IN --out_dir OUT [--min_images 15] \
        [--max_images 200]

Reads the authors' list pair ``IN/fileList.txt`` (one image path per line) and
``IN/metaList.txt`` (a header line, then one integer person id per line) and writes the pair
restricted to the kept identities (same header, same order, ids unchanged: the ReID builder
re-packs them) plus ``filter_report.json`` to ``OUT``. Bounds are inclusive. Relative image
paths are rewritten relative to ``OUT`` so the new list still finds the images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def identity_mask(pids, min_images: int = 15, max_images: int = 200) -> np.ndarray:
  """Boolean mask over images: True where the image's identity has min..max images."""
  pids = np.asarray(pids)
  _, inverse, counts = np.unique(pids, return_inverse=True, return_counts=True)
  per_image = counts[inverse.reshape(-1)]
  return (per_image >= min_images) & (per_image <= max_images)


def filter_lists(list_dir: str, out_dir: str, min_images: int = 15,
                 max_images: int = 200) -> dict:
  """Filters ``list_dir``'s fileList/metaList into ``out_dir``; returns the report dict."""
  with open(os.path.join(list_dir, "fileList.txt")) as f:
    files = [ln.strip() for ln in f if ln.strip()]
  with open(os.path.join(list_dir, "metaList.txt")) as f:
    header, *meta = [ln.rstrip("\n") for ln in f if ln.strip()]
  if len(files) != len(meta):
    raise ValueError(f"{list_dir}: fileList.txt has {len(files)} lines, metaList.txt "
                     f"{len(meta)} after its header; they must be aligned")
  pids = np.array([int(m.split()[0]) for m in meta], np.int64)
  keep = identity_mask(pids, min_images, max_images)
  os.makedirs(out_dir, exist_ok=True)

  def moved(p):
    return p if os.path.isabs(p) else os.path.relpath(os.path.join(list_dir, p), out_dir)

  with open(os.path.join(out_dir, "fileList.txt"), "w") as f:
    f.write("".join(moved(p) + "\n" for p, k in zip(files, keep) if k))
  with open(os.path.join(out_dir, "metaList.txt"), "w") as f:
    f.write(header + "\n" + "".join(m + "\n" for m, k in zip(meta, keep) if k))
  report = {"min_images": min_images, "max_images": max_images,
            "identities_in": int(len(np.unique(pids))),
            "identities_kept": int(len(np.unique(pids[keep]))),
            "images_in": int(len(pids)), "images_kept": int(keep.sum())}
  with open(os.path.join(out_dir, "filter_report.json"), "w") as f:
    json.dump(report, f, indent=1)
  return report


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--list_dir", required=True)
  p.add_argument("--out_dir", required=True)
  p.add_argument("--min_images", type=int, default=15)
  p.add_argument("--max_images", type=int, default=200)
  a = p.parse_args(argv)
  print(json.dumps(filter_lists(a.list_dir, a.out_dir, a.min_images, a.max_images)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
