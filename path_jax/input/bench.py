"""Training-transform throughput per task: images/s on one CPU core, synthetic in-memory records.

    python -m path_jax.bench data [--tasks reid,pose,...] [--seconds 2] [--pipeline]

Records have the sizes of the real sources (Market-1501 crops 128x64, COCO 480x640 images, LIP
~300x200, PA-100k ~ 220x90, CrowdHuman 800x1067, ShanghaiTech-A 768x1024) and go through each
task's train transform at its real input size in this process (one core); the numbers bound how
many worker processes a host needs to feed its devices. ``--pipeline`` also times the whole
in-process grain pipeline (sampling, transform, batching) of each task.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np

TASKS = ("reid", "pose", "parsing", "attributes", "detection", "counting")


def _image(rng, h, w):
  # Smooth content (a gradient plus noise) rather than pure noise; resampling cost is the same.
  y, x = np.mgrid[0:h, 0:w]
  base = (x[..., None] * np.array([1, 2, 3]) + y[..., None]) % 256
  return (base + rng.integers(0, 32, (h, w, 3))).astype(np.uint8)


def synthetic_records(task: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
  """``n`` records in the TFDS schema of ``task`` (data/README.md), realistic sizes."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    if task == "reid":
      out.append({"image": _image(rng, 128, 64), "person_id": i % max(1, n // 4), "camera_id": 1})
    elif task == "pose":
      kps = np.zeros((17, 3), np.float32)
      kps[:, 0] = rng.uniform(250, 390, 17)
      kps[:, 1] = rng.uniform(100, 380, 17)
      kps[:, 2] = 2
      out.append({"image": _image(rng, 480, 640), "bbox": np.array([240, 90, 160, 300], np.float32),
                  "keypoints": kps})
    elif task == "parsing":
      out.append({"image": _image(rng, 300, 200),
                  "label": rng.integers(0, 20, (300, 200, 1), dtype=np.uint8)})
    elif task == "attributes":
      out.append({"image": _image(rng, 220, 90), "labels": rng.integers(-1, 2, 26).astype(np.int8)})
    elif task == "detection":
      x1 = rng.uniform(0, 900, 30)
      y1 = rng.uniform(0, 600, 30)
      boxes = np.stack([x1, y1, x1 + rng.uniform(20, 160, 30), y1 + rng.uniform(40, 190, 30)], 1)
      out.append({"image": _image(rng, 800, 1067), "boxes": boxes.astype(np.float32),
                  "is_ignore": rng.random(30) < 0.1})
    elif task == "counting":
      out.append({"image": _image(rng, 768, 1024),
                  "points": rng.uniform([0, 0], [1024, 768], (300, 2)).astype(np.float32)})
    else:
      raise ValueError(f"unknown task {task!r}; choose from {TASKS}.")
  return out


def _time(fn: Callable[[int], Any], seconds: float) -> tuple[int, float]:
  fn(0)                                     # warm-up (imports, first allocation)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds or count < 3:
    fn(count)
    count += 1
  return count, time.perf_counter() - start


def add_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
  parser.add_argument("--seconds", type=float, default=2.0, help="timing window per task")
  parser.add_argument("--records", type=int, default=16, help="synthetic records per task")
  parser.add_argument("--pipeline", action="store_true",
                      help="also time the in-process grain pipeline with batching")
  parser.add_argument("--batch", type=int, default=8, help="batch size for --pipeline")


def run(args: argparse.Namespace) -> dict[str, Any]:
  import importlib
  results: dict[str, Any] = {"unit": "images/s on one CPU core (train transform)"}
  for task in [t for t in args.tasks.split(",") if t]:
    module = importlib.import_module(f"path_jax.tasks.{task}.transforms")
    records = synthetic_records(task, args.records)
    transform = module.train_transform({})
    rngs = np.random.default_rng(0)
    n, dt = _time(lambda i: transform(records[i % len(records)], rngs), args.seconds)
    entry = {"images_per_s": round(n / dt, 1), "ms_per_image": round(1e3 * dt / n, 2),
             "input_size": list(module.DEFAULTS["image_size"])}
    if args.pipeline:
      from path_jax.input import mixture
      sampler = "identity" if getattr(module, "TRAIN_SAMPLER", None) else "shuffle"
      ds = mixture.DatasetInput(task, task, records, {}, args.batch, sampler=sampler,
                                labels=(np.array([r["person_id"] for r in records])
                                        if sampler == "identity" else None))
      it = mixture.make_train_iterator([ds], seed=0, shard_index=0, shard_count=1)
      n, dt = _time(lambda i: next(it), args.seconds)
      entry["pipeline_images_per_s"] = round(n * args.batch / dt, 1)
    results[task] = entry
  return results


if __name__ == "__main__":
  p = argparse.ArgumentParser(description=__doc__)
  add_args(p)
  import json
  print(json.dumps(run(p.parse_args()), indent=2))
