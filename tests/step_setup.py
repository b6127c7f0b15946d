"""A small multi-task PATH set-up shared by the step tests: 4 tasks, 5 datasets, 3 input shapes."""
import functools

import jax
import ml_collections as mlc
import numpy as np

from path_jax import optim
from path_jax.model import path as path_lib
from path_jax.tasks import attributes, parsing, pose, reid

BATCH = 8


def config(scan: bool = False, projector: str = "paper") -> mlc.ConfigDict:
  cfg = mlc.ConfigDict()
  cfg.model = mlc.ConfigDict({
      "backbone": {"variant": "mu/16", "cls_token": True, "scan": scan},
      "projector": {"kind": projector, "share": "task"}})
  ds = {}
  r = reid.default_config()
  r.update(task="reid", num_classes=6, classes_multiple_of=8, image_size=(64, 32))
  ds["reid_a"] = r
  a = attributes.default_config()
  a.update(task="attributes", num_attributes=5, positive_ratios=(0.1, 0.3, 0.5, 0.7, 0.2),
           image_size=(64, 48))
  ds["attr_a"] = a
  for name, k in (("pose_a", 5), ("pose_b", 4)):
    p = pose.default_config()
    p.update(task="pose", num_joints=k, flip_pairs=((1, 2),), image_size=(64, 48),
             deconv_features=(16, 16))
    ds[name] = p
  s = parsing.default_config()
  s.update(task="parsing", num_classes=4, flip_pairs=((1, 2),), image_size=(32, 32),
           head_features=16)
  ds["parse_a"] = s
  cfg.datasets = mlc.ConfigDict(ds)
  cfg.optimizer = optim.default_config()
  cfg.optimizer.peak_lr = 1e-3
  cfg.optimizer.schedule.warmup_steps = 2
  cfg.optimizer.schedule.total_steps = 100
  return cfg


def image_shapes(cfg) -> dict:
  return {n: tuple(cfg.datasets[n].image_size) for n in cfg.datasets}


def batch(cfg, seed: int = 0, batch: int = BATCH) -> dict:
  """Random but well-formed sub-batches for every dataset."""
  rng = np.random.default_rng(seed)
  out = {}
  for name in cfg.datasets:
    d = cfg.datasets[name]
    h, w = d.image_size
    b = {"image": rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)}
    if d.task == "reid":
      b["label"] = np.repeat(np.arange(batch // 2) % d.num_classes, 2).astype(np.int32)
    elif d.task == "attributes":
      b["labels"] = rng.integers(-1, 2, (batch, d.num_attributes)).astype(np.int32)
    elif d.task == "pose":
      k = d.num_joints
      b["target"] = rng.random((batch, h // 4, w // 4, k)).astype(np.float32)
      b["target_weight"] = (rng.random((batch, k)) > 0.2).astype(np.float32)
    elif d.task == "parsing":
      lab = rng.integers(0, d.num_classes, (batch, h, w)).astype(np.uint8)
      lab[:, :2] = 255
      b["label"] = lab
    out[name] = b
  return out


def make_tx(cfg):
  return functools.partial(optim.make_optimizer, cfg.optimizer)


def model(cfg):
  return path_lib.from_config(cfg)


def weights(cfg, model_) -> np.ndarray:
  return np.linspace(0.5, 1.5, len(model_.datasets)).astype(np.float32)


def rng():
  return jax.random.key(42)
