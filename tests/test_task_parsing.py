"""Parsing task: align_corners resize, CE with ignore, flip-back, head vs PyTorch, overfitting."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp

from path_jax import tasks
from path_jax.tasks.base import HeadInputs
from path_jax.tasks.parsing import (ParsingHead, cross_entropy_ignore, default_config,
                                    flip_back_logits, pixel_accuracy,
                                    resize_bilinear_align_corners)


def _np_ce_ignore(logits, labels, ignore=255):
  """Independent reference: per-pixel -log softmax, averaged over non-ignored pixels."""
  logits = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])
  labels = np.asarray(labels).reshape(-1).astype(np.int64)
  keep = labels != ignore
  lse = logsumexp(logits[keep], axis=-1)
  return float(np.mean(lse - logits[keep][np.arange(keep.sum()), labels[keep]]))


def _np_resize_ac(x, n):
  """Independent align_corners=True resize of [B, h, h, C] to [B, n, n, C] with np.interp."""
  h = x.shape[1]
  pos = np.linspace(0.0, h - 1.0, n)
  along_w = np.stack([np.apply_along_axis(lambda v: np.interp(pos, np.arange(h), v), 1, xb)
                      for xb in x])
  return np.stack([np.apply_along_axis(lambda v: np.interp(pos, np.arange(h), v), 1,
                                       xb.transpose(1, 0, 2)).transpose(1, 0, 2)
                   for xb in along_w])


@pytest.mark.torch
@pytest.mark.parametrize("src,dst", [((4, 5), (9, 13)), ((7, 6), (3, 2)), ((3, 4), (1, 7)),
                                     ((5, 5), (5, 5)), ((1, 3), (4, 3))])
def test_resize_matches_torch_align_corners(src, dst):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(2, *src, 3)).astype(np.float32)
  got = resize_bilinear_align_corners(jnp.asarray(x), dst)
  want = torch.nn.functional.interpolate(
      torch.from_numpy(x).permute(0, 3, 1, 2), size=dst, mode="bilinear", align_corners=True)
  np.testing.assert_allclose(np.asarray(got), want.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_cross_entropy_ignore_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32) * 3
  labels = rng.integers(0, 4, size=(2, 5, 6)).astype(np.uint8)
  labels[rng.random(labels.shape) < 0.3] = 255
  loss, n = cross_entropy_ignore(jnp.asarray(logits), jnp.asarray(labels))
  assert int(n) == int((labels != 255).sum())
  np.testing.assert_allclose(float(loss), _np_ce_ignore(logits, labels), rtol=1e-5)
  keep = labels != 255
  want_acc = np.mean(logits.argmax(-1)[keep] == labels[keep])
  np.testing.assert_allclose(float(pixel_accuracy(jnp.asarray(logits), jnp.asarray(labels))),
                             want_acc, rtol=1e-6)


def test_flip_back_swaps_pairs_and_width():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
  pairs = ((1, 4), (2, 3))
  # What the network would output on the mirrored image if it were perfectly flip-equivariant:
  # mirrored pixels, and left-part scores living in the right-part channels.
  flipped = logits[:, :, ::-1, :].copy()
  swapped = flipped.copy()
  for a, b in pairs:
    swapped[..., a], swapped[..., b] = flipped[..., b], flipped[..., a]
  np.testing.assert_array_equal(np.asarray(flip_back_logits(jnp.asarray(swapped), pairs)), logits)

  cfg = default_config()
  cfg.num_classes, cfg.flip_pairs, cfg.flip_test = 6, pairs, True
  task = tasks.get("parsing")
  out = task.decode({"logits": jnp.asarray(logits), "logits_flipped": jnp.asarray(swapped)},
                    {}, cfg)
  np.testing.assert_allclose(np.asarray(out["logits"]), logits, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(out["label"]), logits.argmax(-1))
  with pytest.raises(KeyError, match="logits_flipped"):
    task.decode({"logits": jnp.asarray(logits)}, {}, cfg)


def _tokens(b, grid, c, seed=0):
  x = jax.random.normal(jax.random.key(seed), (b, grid[0] * grid[1], c))
  return HeadInputs(tokens=x, grid=grid, image_hw=(4 * grid[0] * 4, 4 * grid[1] * 4))


@pytest.mark.torch
def test_head_matches_torch_decoder():
  """Same weights in an independent PyTorch version of ViT_SimpleUpSampling (LN variant)."""
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  inputs = _tokens(2, (3, 4), 8)
  head = ParsingHead(num_classes=5, features=6)
  # Random weights drawn in NumPy on the parameter shapes (skips compiling the initialisers).
  shapes = nn.unbox(jax.eval_shape(head.init, jax.random.key(1), inputs)["params"])
  rng = np.random.default_rng(10)
  params = jax.tree_util.tree_map(
      lambda p: (0.3 * rng.normal(size=p.shape)).astype(np.float32), shapes)
  got = jax.jit(head.apply)({"params": params}, inputs)["logits"]

  t = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731
  conv_w = lambda k: t(k).permute(3, 2, 0, 1)  # HWIO -> OIHW  # noqa: E731

  def ln_channels_first(x, p):
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], t(p["scale"]), t(p["bias"]),
                        eps=1e-6).permute(0, 3, 1, 2)

  x = t(inputs.feature_map()).permute(0, 3, 1, 2)
  for name in ("block_0", "block_1"):
    p = params[name]
    x = F.conv2d(x, conv_w(p["conv"]["kernel"]), t(p["conv"]["bias"]), padding=1)
    x = F.relu(ln_channels_first(x, p["norm"]))
  x = F.interpolate(x, size=(6, 8), mode="bilinear", align_corners=True)
  cls = params["classifier"]
  x = F.conv2d(x, conv_w(cls["kernel"]), t(cls["bias"]), padding=1)
  x = F.interpolate(x, size=inputs.image_hw, mode="bilinear", align_corners=True)
  assert got.shape == (2, *inputs.image_hw, 5)
  np.testing.assert_allclose(np.asarray(got), x.permute(0, 2, 3, 1).numpy(), atol=1e-4)


def test_registered_task_overfits_and_all_ignored_grads_are_finite():
  task = tasks.get("parsing")
  cfg = default_config()
  cfg.num_classes, cfg.head_features, cfg.flip_pairs = 4, 16, ((1, 2),)
  inputs = _tokens(2, (4, 4), 16, seed=3)
  # Labels the head can represent: argmax of a random class field on the token grid, smoothly
  # upsampled (4 -> 8 -> 64 with align_corners geometry), plus an ignored band.
  field = np.random.default_rng(4).normal(size=(2, 4, 4, 4))
  fine = _np_resize_ac(_np_resize_ac(field, 8), 64)
  labels = fine.argmax(-1).astype(np.uint8)
  labels[:, :, :5] = 255
  batch = {"image": jnp.zeros((2, 64, 64, 3), jnp.uint8), "label": jnp.asarray(labels)}
  head = task.make_head(cfg)
  params = nn.unbox(jax.jit(head.init)(jax.random.key(5), inputs)["params"])

  def loss_fn(p, batch):
    outputs = head.apply({"params": p}, inputs)
    loss, metrics = task.loss(outputs, batch, cfg)
    return loss, (metrics, outputs)

  opt = optax.adam(1e-2)

  @jax.jit
  def step(p, s, batch):
    """One Adam step; also returns the loss, metrics, outputs and gradients at ``p``."""
    (loss, (metrics, outputs)), g = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, loss, metrics, outputs, g

  s0 = opt.init(params)
  p, s, start, *_ = step(params, s0, batch)
  for _ in range(60):
    p, s, *_ = step(p, s, batch)
  _, _, final, metrics, outputs, _ = step(p, s, batch)
  assert float(final) < 0.15 * float(start), (float(start), float(final))
  assert float(metrics["pixel_acc"]) > 0.95
  out = jax.jit(lambda o: task.decode(o, batch, cfg))(outputs)
  keep = labels != 255
  np.testing.assert_allclose(np.mean(np.asarray(out["label"])[keep] == labels[keep]),
                             float(metrics["pixel_acc"]), rtol=1e-6)

  ignored = dict(batch, label=jnp.full_like(batch["label"], 255))
  _, _, loss, _, _, grads = step(params, s0, ignored)
  assert float(loss) == 0.0
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
