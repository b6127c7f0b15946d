"""Benchmark of the detection loss with Hungarian matching (loss + gradient w.r.t. head outputs).

``python -m path_jax.tasks.detection.bench [--queries 900 --boxes 500 --batch 2 --layers 9]``
times the jitted ``value_and_grad`` of :func:`detection_loss` on random head outputs and random
ground truths, after one warm-up call, and prints the median time per call in milliseconds, the
matcher's loop trips (the most over layers x images: the loop runs until the slowest problem is
done, and on an accelerator each trip is a few small kernels, so trips are what carries over
from this CPU) and XLA's temporary memory for the call.

Slots default to the task's budget (500 boxes, 500 ignore regions: every CrowdHuman image fits).
``--valid N`` makes only the first N box slots of each image real (default: all, the worst case;
CrowdHuman averages 23); ``--valid_ignore`` likewise for ignore regions (default 8).

With ``--backbone B/16`` it also times the backbone's forward+backward at ``--size`` (default
800x1333, the detection input) and batch ``--batch`` on the same machine, with remat and scanned
blocks (the only combination whose memory stays bounded on XLA:CPU), and reports the matcher's
share of the two together: the issue's target is under 10%.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from path_jax.tasks.detection import budget, default_config, losses, matcher
from path_jax.tasks.detection.losses import detection_loss

DEFAULTS = {"queries": 900, "boxes": budget.DEFAULT_MAX_BOXES, "batch": 2, "layers": 9,
            "ignore": budget.DEFAULT_MAX_IGNORE, "valid": -1, "valid_ignore": 8, "iters": 10,
            "seed": 0}


def _inputs(queries: int, boxes: int, batch: int, layers: int, ignore: int, seed: int,
            valid: int = -1, valid_ignore: int = -1):
  """Random head outputs and a batch whose first ``valid`` box slots (``valid_ignore`` ignore
  slots) per image are real; -1 = all."""
  rng = np.random.default_rng(seed)

  def rand_boxes(*shape):
    cxcy = rng.uniform(0.1, 0.9, shape + (2,))
    wh = rng.uniform(0.02, 0.3, shape + (2,))
    return jnp.asarray(np.concatenate([cxcy, wh], -1), jnp.float32)

  outputs = {"logits": jnp.asarray(rng.normal(size=(layers, batch, queries)), jnp.float32),
             "boxes": rand_boxes(layers, batch, queries)}
  def first(n, slots):
    return jnp.asarray(np.arange(slots)[None, :].repeat(batch, 0) < (slots if n < 0 else n))

  batch_ = {"boxes": rand_boxes(batch, boxes), "box_mask": first(valid, boxes),
            "ignore_boxes": rand_boxes(batch, ignore),
            "ignore_mask": first(valid_ignore, ignore)}
  return outputs, batch_


def _trips(outputs, batch, cfg) -> int:
  """The matcher's loop trips for these inputs (the most over layers x images)."""
  def one(logits, pred, gt, mask):
    cost = matcher.match_cost(logits, pred, losses._safe_boxes(gt, mask), cfg)
    return matcher._hungarian(cost.T, mask)[2]
  fn = jax.jit(jax.vmap(jax.vmap(one), in_axes=(0, 0, None, None)))
  return int(jnp.max(fn(outputs["logits"], outputs["boxes"], batch["boxes"],
                        batch["box_mask"])))


def run(args=None) -> dict:
  """Times loss + grad; ``args`` may carry any of ``DEFAULTS``'s names. Returns the numbers."""
  opts = {k: getattr(args, k, v) if args is not None else v for k, v in DEFAULTS.items()}
  cfg = default_config()
  cfg.max_boxes, cfg.max_ignore = opts["boxes"], opts["ignore"]
  outputs, batch = _inputs(opts["queries"], opts["boxes"], opts["batch"], opts["layers"],
                           opts["ignore"], opts["seed"], opts["valid"], opts["valid_ignore"])
  fn = jax.jit(jax.value_and_grad(lambda o: detection_loss(o, batch, cfg)[0]))
  t0 = time.perf_counter()
  compiled = fn.lower(outputs).compile()
  jax.block_until_ready(compiled(outputs))
  compile_s = time.perf_counter() - t0
  memory = compiled.memory_analysis()
  temp_mb = getattr(memory, "temp_size_in_bytes", 0) / 2**20 if memory is not None else 0.0
  fn = compiled
  times = []
  for _ in range(opts["iters"]):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(outputs))
    times.append(time.perf_counter() - t0)
  result = {
      "detection_loss_grad_ms": 1e3 * statistics.median(times),
      "detection_loss_grad_min_ms": 1e3 * min(times),
      "first_call_s": compile_s,
      "matcher_trips": _trips(outputs, batch, cfg),
      "temp_mb": temp_mb,
      "device": jax.devices()[0].device_kind,
      "valid_boxes": int(jnp.sum(batch["box_mask"][0])),
      **{k: opts[k] for k in ("queries", "boxes", "batch", "layers", "ignore")},
  }
  print(f"detection loss+grad (Hungarian matching), {opts['queries']} queries x {opts['boxes']} "
        f"box slots ({result['valid_boxes']} valid) x batch {opts['batch']} x {opts['layers']} "
        f"layers, {opts['ignore']} ignore slots, on {result['device']}: median "
        f"{result['detection_loss_grad_ms']:.2f} ms, min "
        f"{result['detection_loss_grad_min_ms']:.2f} ms (first call incl. compile "
        f"{compile_s:.2f} s); matcher loop {result['matcher_trips']} trips; XLA temporaries "
        f"{temp_mb:.0f} MiB")
  if getattr(args, "backbone", ""):
    result.update(_compare_backbone(args, opts["batch"], result["detection_loss_grad_ms"]))
  return result


def _compare_backbone(args, batch: int, loss_ms: float) -> dict:
  """Times the backbone step at the detection input size and returns the matcher's share."""
  import types

  from path_jax import bench as bench_lib   # lazy: path_jax.bench imports this module lazily
  margs = types.SimpleNamespace(variant=args.backbone, size=args.size, batch=batch,
                                dtype=args.dtype, cls=False, remat=True, scan=True,
                                attention=None, iters=args.backbone_iters, warmup=1,
                                fwd=False)
  res = bench_lib.bench_model(margs)
  step_ms = res["fwd_bwd_ms"]
  share = loss_ms / (loss_ms + step_ms)
  print(f"backbone {args.backbone} forward+backward at {args.size} batch {batch} "
        f"({args.dtype}, remat+scan): {step_ms:.0f} ms; matcher+loss share of the step: "
        f"{100 * share:.2f}% (target < 10%)")
  return {"backbone": args.backbone, "backbone_size": args.size,
          "backbone_fwd_bwd_ms": step_ms, "backbone_mfu_fwd_bwd": res["mfu_fwd_bwd"],
          "matcher_share_of_step": share}


def add_args(parser: argparse.ArgumentParser) -> None:
  for k, v in DEFAULTS.items():
    parser.add_argument(f"--{k}", type=int, default=v)
  parser.add_argument("--backbone", default="", help="also time this ViT variant (e.g. B/16)")
  parser.add_argument("--size", default="800x1333", help="HxW of the backbone comparison")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--backbone_iters", type=int, default=2)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_args(parser)
  return run(parser.parse_args(argv))


if __name__ == "__main__":
  main()
