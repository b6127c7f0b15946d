"""Detection task: exact JAX Hungarian matcher, box ops, losses, head, decode, overfitting.

Expected values come from independent NumPy / SciPy computations (scipy's linear_sum_assignment
for matching, loops over boxes for the geometry, a NumPy re-implementation of the criterion).
"""
import functools

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import linear_sum_assignment

from path_jax.tasks import HeadInputs, get
from path_jax.tasks.detection import boxes as box_ops
from path_jax.tasks.detection import bench, default_config
from path_jax.tasks.detection.head import pos2posemb2d
from path_jax.tasks.detection.losses import detection_loss, sigmoid_focal_loss
from path_jax.tasks.detection.matcher import hungarian

# ---------------------------------------------------------------------------------------------
# NumPy references.


def np_xyxy(b):
  b = np.asarray(b, np.float64)
  return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def np_box_stats(a, b):
  """Loop over pairs: (iou, giou, ioa) matrices of xyxy boxes a [N,4], b [M,4]."""
  out = np.zeros((3, len(a), len(b)))
  for i, (ax0, ay0, ax1, ay1) in enumerate(a):
    for j, (bx0, by0, bx1, by1) in enumerate(b):
      iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
      ih = max(0.0, min(ay1, by1) - max(ay0, by0))
      inter = iw * ih
      area_a = max(ax1 - ax0, 0) * max(ay1 - ay0, 0)
      area_b = max(bx1 - bx0, 0) * max(by1 - by0, 0)
      union = area_a + area_b - inter
      hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
      out[0, i, j] = inter / union
      out[1, i, j] = inter / union - (hull - union) / hull
      out[2, i, j] = inter / area_a
  return out


def np_focal(x, t, alpha=0.25, gamma=2.0):
  x = np.asarray(x, np.float64)
  p = 1 / (1 + np.exp(-x))
  ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
  p_t = p * t + (1 - p) * (1 - t)
  return (alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma


def np_match(logits, pred, gt, cfg):
  """scipy matching of one image: (query indices, gt indices) with the DETR costs."""
  p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
  c_cls = (cfg.focal_alpha * (1 - p) ** 2 * -np.log(p + 1e-8)
           - (1 - cfg.focal_alpha) * p ** 2 * -np.log(1 - p + 1e-8))
  pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
  cost = (cfg.cost_class * c_cls[:, None] + cfg.cost_bbox * np.abs(pred[:, None] - gt[None]).sum(-1)
          - cfg.cost_giou * np_box_stats(np_xyxy(pred), np_xyxy(gt))[1])
  return linear_sum_assignment(cost)


def np_criterion(logits, pred, gt, gt_mask, ign, ign_mask, cfg):
  """The reference criterion with scipy matching; logits [L,B,Q], pred [L,B,Q,4]."""
  logits, pred = np.asarray(logits, np.float64), np.asarray(pred, np.float64)
  num_boxes = max(gt_mask.sum(), 1)
  total, last = 0.0, None
  for layer in range(logits.shape[0]):
    cls = l1 = gi = 0.0
    for b in range(logits.shape[1]):
      x, pb = logits[layer, b], pred[layer, b]
      g = np.asarray(gt[b], np.float64)[gt_mask[b]]
      target = np.zeros(len(x))
      if len(g):
        qi, gi_idx = np_match(x, pb, g, cfg)
        target[qi] = 1
        l1 += np.abs(pb[qi] - g[gi_idx]).sum()
        gi += (1 - np_box_stats(np_xyxy(pb[qi]), np_xyxy(g[gi_idx]))[1].diagonal()).sum()
      keep = np.ones(len(x), bool)
      ig = np.asarray(ign[b], np.float64)[ign_mask[b]]
      if len(ig):
        ioa = np_box_stats(np_xyxy(pb), np_xyxy(ig))[2].max(1)
        keep = (target == 1) | (ioa < cfg.ign_thr)
      cls += np_focal(x, target)[keep].sum()
    total += (cfg.weight_class * cls + cfg.weight_bbox * l1 + cfg.weight_giou * gi) / num_boxes
    last = (cls / num_boxes, l1 / num_boxes, gi / num_boxes)
  return total, last


def rand_boxes(rng, *shape, lo=0.1, hi=0.9):
  return np.concatenate([rng.uniform(lo, hi, shape + (2,)), rng.uniform(0.05, 0.4, shape + (2,))],
                        -1).astype(np.float32)


def tiny_cfg(**kw):
  c = default_config()
  c.update(hidden_dim=32, num_heads=2, ffn_dim=64, num_layers=2, num_anchors=8, num_patterns=2,
           num_queries=16, max_boxes=4, max_ignore=2, remat=False)
  c.update(**kw)
  return c


# ---------------------------------------------------------------------------------------------
# Matcher.

_batched_hungarian = jax.jit(jax.vmap(hungarian))


def _check_assignments(costs, valid, row_to_col, col_to_row, exact):
  for c, v, r2c, c2r in zip(costs, valid, np.asarray(row_to_col), np.asarray(col_to_row)):
    rows = np.nonzero(v)[0]
    assert (r2c[~v] == -1).all()
    cols = r2c[rows]
    assert (cols >= 0).all() and len(np.unique(cols)) == len(rows)
    # col_to_row is the inverse map.
    np.testing.assert_array_equal(np.nonzero(c2r >= 0)[0], np.sort(cols))
    np.testing.assert_array_equal(c2r[cols], rows)
    # scipy on the [Q, G] orientation the detection code reasons in.
    qi, gi = linear_sum_assignment(np.asarray(c, np.float64)[rows].T)
    optimum = np.asarray(c, np.float64)[rows][gi, qi].sum()
    got = np.asarray(c, np.float64)[rows, cols].sum()
    if exact:
      assert got == optimum
    else:
      assert abs(got - optimum) <= 1e-5 * max(1.0, abs(optimum)), (got, optimum)


@pytest.mark.parametrize("n,m,count,integer", [
    (12, 20, 120, False),    # rectangular, float
    (10, 10, 100, True),     # square, integer costs with many ties
    (30, 60, 60, True),      # rectangular, ties
    (100, 900, 24, False),   # the detection size
    (100, 900, 8, True),
])
def test_hungarian_is_optimal(n, m, count, integer):
  rng = np.random.default_rng(n * 1000 + m + integer)
  if integer:
    costs = rng.integers(0, 4, (count, n, m)).astype(np.float32)
  else:
    costs = (rng.normal(size=(count, n, m)) * 3).astype(np.float32)
  # Valid counts from 0 to n, padded rows scattered anywhere, holding garbage costs.
  valid = np.zeros((count, n), bool)
  for k in range(count):
    valid[k, rng.permutation(n)[:(k * (n + 1)) // count if k < count - 1 else n]] = True
  costs[~valid] = 1e9
  row_to_col, col_to_row = _batched_hungarian(jnp.asarray(costs), jnp.asarray(valid))
  _check_assignments(costs, valid, row_to_col, col_to_row, exact=integer)


def test_hungarian_vmaps_over_layers_and_batch():
  rng = np.random.default_rng(1)
  costs = rng.integers(0, 6, (3, 2, 5, 9)).astype(np.float32)
  valid = rng.random((3, 2, 5)) < 0.6
  fn = jax.jit(jax.vmap(jax.vmap(hungarian)))
  r2c, c2r = fn(jnp.asarray(costs), jnp.asarray(valid))
  _check_assignments(costs.reshape(6, 5, 9), valid.reshape(6, 5), np.asarray(r2c).reshape(6, 5),
                     np.asarray(c2r).reshape(6, 9), exact=True)


def test_hungarian_edge_shapes():
  r2c, c2r = jax.jit(hungarian)(jnp.zeros((0, 7)), jnp.zeros((0,), bool))
  assert r2c.shape == (0,) and (np.asarray(c2r) == -1).all()
  with pytest.raises(ValueError, match="max_boxes <= num_queries"):
    hungarian(jnp.zeros((5, 3)), jnp.ones((5,), bool))


# ---------------------------------------------------------------------------------------------
# Boxes and losses.


def test_box_ops_against_numpy():
  rng = np.random.default_rng(2)
  a, b = rand_boxes(rng, 7), rand_boxes(rng, 5)
  b[0] = a[0]                       # identical pair
  b[1] = [0.05, 0.05, 0.02, 0.02]   # disjoint from most
  ax, bx = np_xyxy(a), np_xyxy(b)
  want = np_box_stats(ax, bx)
  ja, jb = box_ops.cxcywh_to_xyxy(jnp.asarray(a)), box_ops.cxcywh_to_xyxy(jnp.asarray(b))
  np.testing.assert_allclose(ja, ax, atol=1e-6)
  np.testing.assert_allclose(box_ops.xyxy_to_cxcywh(ja), a, atol=1e-6)
  np.testing.assert_allclose(box_ops.pairwise_iou(ja, jb), want[0], atol=1e-5)
  np.testing.assert_allclose(box_ops.pairwise_giou(ja, jb), want[1], atol=1e-5)
  np.testing.assert_allclose(box_ops.pairwise_ioa(ja, jb), want[2], atol=1e-5)
  np.testing.assert_allclose(box_ops.giou(ja[:5], jb), np.diag(want[1][:5]), atol=1e-5)


def test_focal_loss_against_numpy():
  rng = np.random.default_rng(3)
  x = rng.normal(size=50) * 4
  t = (rng.random(50) < 0.3).astype(np.float32)
  np.testing.assert_allclose(sigmoid_focal_loss(jnp.asarray(x, jnp.float32), jnp.asarray(t)),
                             np_focal(x, t), rtol=1e-4, atol=1e-7)


def _loss_problem(seed, num_layers=2, batch=2, queries=12, max_boxes=4, max_ignore=2):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(num_layers, batch, queries)).astype(np.float32)
  pred = rand_boxes(rng, num_layers, batch, queries)
  gt = rand_boxes(rng, batch, max_boxes)
  gt_mask = np.array([[True, True, False, True], [False, True, False, False]])[:batch, :max_boxes]
  ign = np.zeros((batch, max_ignore, 4), np.float32)
  ign[:, 0] = [0.5, 0.5, 0.6, 0.6]
  ign_mask = np.zeros((batch, max_ignore), bool)
  ign_mask[:, 0] = True
  # Some predictions well inside the ignore region, so some are dropped from the focal loss.
  pred[:, :, :3] = [0.5, 0.5, 0.1, 0.1]
  outputs = {"logits": jnp.asarray(logits), "boxes": jnp.asarray(pred)}
  b = {"boxes": jnp.asarray(gt), "box_mask": jnp.asarray(gt_mask),
       "ignore_boxes": jnp.asarray(ign), "ignore_mask": jnp.asarray(ign_mask)}
  return outputs, b, (logits, pred, gt, gt_mask, ign, ign_mask)


def test_detection_loss_against_numpy_criterion():
  cfg = tiny_cfg()
  loss_fn = jax.jit(functools.partial(detection_loss, cfg=cfg))
  for seed in range(3):
    outputs, b, arrays = _loss_problem(seed)
    loss, metrics = loss_fn(outputs, b)
    want, (cls, l1, gi) = np_criterion(*arrays, cfg)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(metrics["focal"], cls, rtol=1e-5)
    np.testing.assert_allclose(metrics["l1"], l1, rtol=1e-5)
    np.testing.assert_allclose(metrics["giou"], gi, rtol=1e-5)
    assert metrics["num_boxes"] == arrays[3].sum()
  # The ignore rule matters here: without it the loss is larger.
  logits, pred, gt, gt_mask, ign, _ = arrays
  no_ign, _ = np_criterion(logits, pred, gt, gt_mask, ign, np.zeros_like(arrays[5]), cfg)
  assert no_ign > want + 1e-3
  # Deep supervision off = the last layer alone.
  last, _ = jax.jit(functools.partial(detection_loss, cfg=tiny_cfg(deep_supervision=False)))(
      outputs, b)
  want_last, _ = np_criterion(logits[-1:], pred[-1:], gt, gt_mask, ign, arrays[5], cfg)
  np.testing.assert_allclose(last, want_last, rtol=1e-5)


def test_loss_is_global_over_a_sharded_batch():
  """Batch sharded over the 8 devices: still the criterion of the whole batch (global num_boxes)."""
  cfg = tiny_cfg()
  rng = np.random.default_rng(6)
  n = jax.device_count()
  outputs = {"logits": jnp.asarray(rng.normal(size=(2, n, 12)), jnp.float32),
             "boxes": jnp.asarray(rand_boxes(rng, 2, n, 12))}
  b = {"boxes": jnp.asarray(rand_boxes(rng, n, 4)),
       "box_mask": jnp.asarray(rng.random((n, 4)) < 0.5),
       "ignore_boxes": jnp.asarray(rand_boxes(rng, n, 2)),
       "ignore_mask": jnp.asarray(rng.random((n, 2)) < 0.5)}
  loss_fn = jax.jit(functools.partial(detection_loss, cfg=cfg))
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  spec = lambda *axes: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*axes))
  outputs = {"logits": jax.device_put(outputs["logits"], spec(None, "data")),
             "boxes": jax.device_put(outputs["boxes"], spec(None, "data"))}
  b = jax.device_put(b, spec("data"))
  got, _ = loss_fn(outputs, b)
  assert len(got.sharding.device_set) == n and b["boxes"].sharding.spec[0] == "data"
  numpy_loss, _ = np_criterion(*(np.asarray(v) for v in (
      outputs["logits"], outputs["boxes"], b["boxes"], b["box_mask"], b["ignore_boxes"],
      b["ignore_mask"])), cfg)
  np.testing.assert_allclose(got, numpy_loss, rtol=1e-5)


def test_loss_rejects_wrong_padding():
  outputs, b, _ = _loss_problem(0)
  with pytest.raises(ValueError, match="max_boxes=7"):
    detection_loss(outputs, b, tiny_cfg(max_boxes=7))


# ---------------------------------------------------------------------------------------------
# Head, training step, decode. One tiny head and one jitted step serve several tests, because
# compiling is what costs time here.

HEAD_CFG = tiny_cfg(max_boxes=3)
NUM_IMAGES = 2


@pytest.fixture(scope="module")
def head_setup():
  """(head, inputs, variables, jitted apply, jitted train step, optimizer, flat params)."""
  task = get("detection")
  head = task.make_head(HEAD_CFG)
  # The training step runs the rematerialised variant (the production default, same parameters).
  remat_head = task.make_head(tiny_cfg(max_boxes=3, remat=True))
  # Random patch features stand in for the backbone + projector.
  tokens = jax.random.normal(jax.random.key(0), (NUM_IMAGES, 16, 16))
  x = HeadInputs(tokens=tokens, grid=(4, 4), image_hw=(64, 64))
  # rbg keys compile much faster than threefry on CPU.
  variables = jax.jit(head.init)(jax.random.key(0, impl="unsafe_rbg"), x)
  # The step works on one flat parameter vector: Adam over one array compiles much faster.
  flat, unravel = jax.flatten_util.ravel_pytree(nn.meta.unbox(variables))
  opt = optax.adam(3e-3)

  @jax.jit
  def step(flat, opt_state, batch):
    def loss_fn(f):
      out = remat_head.apply(unravel(f), x)
      loss, metrics = task.loss(out, batch, HEAD_CFG)
      return loss, (metrics, out)
    (_, (metrics, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(flat)
    updates, opt_state = opt.update(grads, opt_state, flat)
    return optax.apply_updates(flat, updates), opt_state, metrics, out, grads

  return head, x, variables, jax.jit(head.apply), step, opt, flat


def _det_batch(gt, mask):
  return {"boxes": jnp.asarray(gt, jnp.float32), "box_mask": jnp.asarray(mask),
          "ignore_boxes": jnp.zeros((NUM_IMAGES, HEAD_CFG.max_ignore, 4)),
          "ignore_mask": jnp.zeros((NUM_IMAGES, HEAD_CFG.max_ignore), bool)}


def test_gradients_finite_without_ground_truth(head_setup):
  _, _, _, _, step, opt, params = head_setup
  # Zero (degenerate) padding boxes, no valid box, no ignore region.
  empty = _det_batch(np.zeros((NUM_IMAGES, HEAD_CFG.max_boxes, 4)),
                     np.zeros((NUM_IMAGES, HEAD_CFG.max_boxes), bool))
  _, _, metrics, _, grads = step(params, opt.init(params), empty)
  assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0 and metrics["num_boxes"] == 0
  assert np.isfinite(np.asarray(grads)).all() and np.abs(np.asarray(grads)).max() > 0


def test_head_overfits_synthetic_targets(head_setup):
  """Two images x two boxes: every matched box reaches IoU > 0.5 with its target."""
  _, _, _, _, step, opt, params = head_setup
  rng = np.random.default_rng(0)
  gt = rand_boxes(rng, NUM_IMAGES, HEAD_CFG.max_boxes, lo=0.25, hi=0.75)
  gt[..., 2:] = rng.uniform(0.15, 0.35, gt[..., 2:].shape)
  mask = np.zeros((NUM_IMAGES, HEAD_CFG.max_boxes), bool)
  mask[:, :2] = True
  batch = _det_batch(gt, mask)
  opt_state = opt.init(params)
  losses = []
  for _ in range(150):
    params, opt_state, metrics, out, _ = step(params, opt_state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0]
  logits, boxes = np.asarray(out["logits"][-1]), np.asarray(out["boxes"][-1])
  for b in range(NUM_IMAGES):
    qi, gi = np_match(logits[b], boxes[b], gt[b][mask[b]], HEAD_CFG)
    ious = np_box_stats(np_xyxy(boxes[b][qi]), np_xyxy(gt[b][mask[b]][gi]))[0].diagonal()
    assert (ious > 0.5).all(), ious


def test_head_outputs_and_anchor_pairing(head_setup):
  _, x, variables, apply, step, opt, flat = head_setup
  out = apply(variables, x)
  assert out["logits"].shape == (2, 2, 16) and out["boxes"].shape == (2, 2, 16, 4)
  assert ((out["boxes"] > 0) & (out["boxes"] < 1)).all()
  # Every parameter carries logical axis names of its rank.
  boxed = jax.tree.leaves(variables, is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned))
  assert all(isinstance(v, nn.LogicallyPartitioned) and len(v.names) == v.value.ndim
             for v in boxed)
  params = nn.meta.unbox(variables)["params"]
  anchors = np.asarray(params["anchors"])
  assert anchors.shape == (8, 2) and (anchors >= 0).all() and (anchors <= 1).all()
  # With a zero box MLP output the boxes sit on the anchors: query k uses anchor k % A.
  params["bbox_embed"]["fc2"] = jax.tree.map(jnp.zeros_like, params["bbox_embed"]["fc2"])
  boxes = np.asarray(apply({"params": params}, x)["boxes"])
  np.testing.assert_allclose(boxes[..., :2], np.broadcast_to(np.tile(anchors, (2, 1)),
                                                             boxes.shape[:-1] + (2,)), atol=1e-5)
  np.testing.assert_allclose(boxes[..., 2:], 0.5, atol=1e-6)
  # Remat (used by the step) changes memory, not values.
  empty = _det_batch(np.zeros((NUM_IMAGES, HEAD_CFG.max_boxes, 4)),
                     np.zeros((NUM_IMAGES, HEAD_CFG.max_boxes), bool))
  remat_out = step(flat, opt.init(flat), empty)[3]
  np.testing.assert_allclose(remat_out["boxes"], out["boxes"], atol=1e-6)
  np.testing.assert_allclose(remat_out["logits"], out["logits"], atol=1e-5)


def test_pos2posemb2d_against_numpy():
  pts = np.random.default_rng(4).random((5, 2)).astype(np.float32)
  f = 8
  dim_t = 10000.0 ** (2 * (np.arange(f) // 2) / f)

  def one(v):
    e = v[:, None] * 2 * np.pi / dim_t
    out = np.empty_like(e)
    out[:, 0::2], out[:, 1::2] = np.sin(e[:, 0::2]), np.cos(e[:, 1::2])
    return out

  want = np.concatenate([one(pts[:, 1]), one(pts[:, 0])], -1)
  np.testing.assert_allclose(pos2posemb2d(jnp.asarray(pts), f), want, atol=1e-5)


def test_decode_scales_to_pixels():
  rng = np.random.default_rng(5)
  outputs = {"logits": jnp.asarray(rng.normal(size=(2, 3, 6)), jnp.float32),
             "boxes": jnp.asarray(rand_boxes(rng, 2, 3, 6))}
  hw = np.array([[480, 640], [600, 800], [512, 512]])
  task = get("detection")
  pred = task.decode(outputs, {"image_hw": jnp.asarray(hw)}, tiny_cfg())
  want = np_xyxy(np.asarray(outputs["boxes"][-1])) * np.stack(
      [hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], -1)[:, None]
  np.testing.assert_allclose(pred["boxes"], want, rtol=1e-5)
  np.testing.assert_allclose(pred["scores"], 1 / (1 + np.exp(-np.asarray(outputs["logits"][-1]))),
                             rtol=1e-5)
  orig = task.decode(outputs, {"image_hw": jnp.asarray(hw), "orig_hw": jnp.asarray(hw * 2)},
                     tiny_cfg())
  np.testing.assert_allclose(orig["boxes"], 2 * want, rtol=1e-5)


def test_config_checks():
  task = get("detection")
  with pytest.raises(ValueError, match="set num_queries to 16"):
    task.make_head(tiny_cfg(num_queries=10))
  with pytest.raises(ValueError, match="max_boxes=20 exceeds"):
    task.make_head(tiny_cfg(max_boxes=20))
  c = default_config()
  assert c.num_queries == c.num_anchors * c.num_patterns == 900 and c.num_layers == 9


@pytest.mark.slow
def test_head_overfits_more_boxes():
  """Four images x five boxes, three decoder layers, wider head."""
  cfg = tiny_cfg(hidden_dim=64, num_heads=4, ffn_dim=128, num_layers=3, num_anchors=16,
                 num_queries=32, max_boxes=6)
  task = get("detection")
  head = task.make_head(cfg)
  n = 4
  x = HeadInputs(tokens=jax.random.normal(jax.random.key(1), (n, 16, 16)), grid=(4, 4),
                 image_hw=(64, 64))
  rng = np.random.default_rng(1)
  gt = rand_boxes(rng, n, cfg.max_boxes, lo=0.2, hi=0.8)
  mask = np.zeros((n, cfg.max_boxes), bool)
  mask[:, :5] = True
  batch = {"boxes": jnp.asarray(gt), "box_mask": jnp.asarray(mask),
           "ignore_boxes": jnp.zeros((n, cfg.max_ignore, 4)),
           "ignore_mask": jnp.zeros((n, cfg.max_ignore), bool)}
  params = nn.meta.unbox(jax.jit(head.init)(jax.random.key(1, impl="unsafe_rbg"), x))
  opt = optax.adam(2e-3)

  @jax.jit
  def step(params, opt_state):
    (loss, out), grads = jax.value_and_grad(
        lambda p: (lambda o: (task.loss(o, batch, cfg)[0], o))(head.apply(p, x)), has_aux=True)(
            params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, out

  opt_state = opt.init(params)
  losses = []
  for _ in range(500):
    params, opt_state, loss, out = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.3 * losses[0]
  logits, boxes = np.asarray(out["logits"][-1]), np.asarray(out["boxes"][-1])
  for b in range(n):
    qi, gi = np_match(logits[b], boxes[b], gt[b][mask[b]], cfg)
    ious = np_box_stats(np_xyxy(boxes[b][qi]), np_xyxy(gt[b][mask[b]][gi]))[0].diagonal()
    assert (ious > 0.5).all(), ious


def test_bench_runs(capsys):
  class Args:
    queries, boxes, batch, layers, ignore, iters = 16, 4, 2, 2, 2, 1
  result = bench.run(Args())
  assert result["detection_loss_grad_ms"] > 0 and result["boxes"] == 4
  assert "ms" in capsys.readouterr().out


def test_scanned_decoder_equals_looped():
  """scan_layers: the decoder layers as one scanned body (parameters stacked under 'layers')
  give the looped decoder's outputs and gradients."""
  from path_jax.tasks.detection.head import DetectionHead
  kw = dict(hidden_dim=32, num_heads=4, ffn_dim=64, num_layers=3, num_anchors=6, num_patterns=2,
            remat=True, attention_impl="xla")
  looped, scanned = DetectionHead(**kw), DetectionHead(**kw, scan=True)
  x = HeadInputs(tokens=jax.random.normal(jax.random.key(0), (2, 12, 48)), grid=(3, 4),
                 image_hw=(48, 64), cls=None)
  p_loop = nn.unbox(looped.init(jax.random.key(1), x)["params"])
  p_scan = {k: v for k, v in p_loop.items() if not k.startswith("layer_")}
  p_scan["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                  *[p_loop[f"layer_{i}"] for i in range(3)])
  want = jax.eval_shape(lambda: nn.unbox(scanned.init(jax.random.key(1), x)["params"]))
  assert jax.tree.structure(want) == jax.tree.structure(p_scan)
  out_l, out_s = looped.apply({"params": p_loop}, x), scanned.apply({"params": p_scan}, x)
  for k in ("logits", "boxes"):
    np.testing.assert_allclose(out_s[k], out_l[k], rtol=1e-5, atol=1e-6)
  loss = lambda m: lambda p: jnp.sum(m.apply({"params": p}, x)["boxes"] ** 2)   # noqa: E731
  g_l, g_s = jax.grad(loss(looped))(p_loop), jax.grad(loss(scanned))(p_scan)
  for i in range(3):
    for a, b in zip(jax.tree.leaves(g_l[f"layer_{i}"]),
                    jax.tree.leaves(jax.tree.map(lambda v: v[i], g_s["layers"]))):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(g_s["bbox_embed"]["fc2"]["kernel"],
                             g_l["bbox_embed"]["fc2"]["kernel"], rtol=1e-4, atol=1e-6)
