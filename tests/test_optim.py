"""path_jax.optim against independent NumPy computations written per parameter, PyTorch-style."""
import bisect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from path_jax import optim
from path_jax.optim import adafactor as adafactor_lib
from path_jax.optim.tree_paths import path_names

# ------------------------------------------------------------------ parameter trees


def _s(*shape):
  return jax.ShapeDtypeStruct(shape, jnp.float32)


def _block(c, lead=(), full=True):
  ln = lambda: {"scale": _s(*lead, c), "bias": _s(*lead, c)}
  dense = lambda i, o: {"kernel": _s(*lead, i, o), "bias": _s(*lead, o)}
  if not full:  # fewer leaves, same kinds: keeps the compiled test chains small
    return {"norm1": ln(), "attn": {"qkv": dense(c, 3 * c)}, "mlp": {"fc2": dense(4 * c, c)}}
  return {"norm1": ln(), "attn": {"qkv": dense(c, 3 * c), "proj": dense(c, c)}, "norm2": ln(),
          "mlp": {"fc1": dense(c, 4 * c), "fc2": dense(4 * c, c)}}


def model_shapes(c, depth, *, scanned, patch=16, grid=14, full=True):
  """Abstract PATH-style param tree: backbone (naming of the brief), a projector, a head."""
  backbone = {"patch_embed": {"kernel": _s(patch, patch, 3, c), "bias": _s(c)},
              "pos_embed": _s(grid, grid, c), "cls_token": _s(c), "cls_pos_embed": _s(c),
              "norm": {"scale": _s(c), "bias": _s(c)}}
  if scanned:
    backbone["blocks"] = _block(c, (depth,), full)
  else:
    backbone.update({f"block_{i}": _block(c, (), full) for i in range(depth)})
  projector = {"gate_alpha": _s(), "reduce": {"kernel": _s(c, 4), "bias": _s(4)},
               "ln": {"scale": _s(4), "bias": _s(4)}}
  head = {"deconv": {"kernel": _s(2, 2, c, 6), "bias": _s(6)},
          "query": {"embedding": _s(5, c)}}
  return {"backbone": backbone, "projector_pose": projector, "head_coco": head}


def random_like(shapes, rng):
  return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def leaves(tree):
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_names(kp): x for kp, x in flat}


def stack_blocks(looped, depth):
  """Scanned layout of a looped tree (block_i -> blocks with a leading depth axis)."""
  bb = dict(looped["backbone"])
  blocks = [bb.pop(f"block_{i}") for i in range(depth)]
  bb["blocks"] = jax.tree.map(lambda *xs: np.stack(xs), *blocks)
  return {**looped, "backbone": bb}


# ------------------------------------------------------------------ independent expectations


def expected_layer_id(path, depth):
  """Paper layer id of a looped backbone leaf, None outside the backbone."""
  if path[0] != "backbone":
    return None
  name = path[1]
  if name in ("patch_embed", "pos_embed", "cls_token", "cls_pos_embed"):
    return 0
  if name.startswith("block_"):
    return int(name[len("block_"):]) + 1
  assert name == "norm", path
  return depth + 1


def expected_multiplier(path, depth, decay=0.75):
  layer = expected_layer_id(path, depth)
  return 1.0 if layer is None else decay ** (depth + 1 - layer)


def expected_authors_multiplier(path, decay=0.75, num_layers=12):
  if path[0] != "backbone":
    return 1.0
  name = path[1]
  if name == "patch_embed":
    layer = 0
  elif name.startswith("block_"):
    layer = int(name[len("block_"):]) + 1
  else:  # pos_embed / cls (lpe_lr) and norm
    layer = num_layers - 1
  return decay ** (num_layers - layer - 1)


def expected_decays(path):
  return path[-1] == "kernel"


def step_lr(t, peak, init, warmup, boundaries, factors):
  if t < warmup:
    return init + t / warmup * (peak - init)
  return peak * math.prod(factors[:bisect.bisect_right(boundaries, t)])


class TorchAdafactor:
  """REFERENCE.md §4.5 for one parameter in PyTorch layout, float64."""

  def __init__(self, shape, clip_threshold, beta1=0.9, decay_rate=-0.8, clip_beta2=0.999,
               eps=1e-30):
    self.t = 0
    self.factored = len(shape) >= 2
    self.cfg = clip_threshold, beta1, decay_rate, clip_beta2, eps
    if self.factored:
      self.row = np.zeros(shape[:-1])
      self.col = np.zeros(shape[:-2] + shape[-1:])
    else:
      self.v = np.zeros(shape)
    self.m = np.zeros(shape)

  def step(self, p, g, lr, weight_decay):
    clip_threshold, beta1, decay_rate, clip_beta2, eps = self.cfg
    self.t += 1
    beta2 = min(1.0 - self.t ** decay_rate, clip_beta2)
    u = g * g + eps
    if self.factored:
      self.row = beta2 * self.row + (1 - beta2) * u.mean(axis=-1)
      self.col = beta2 * self.col + (1 - beta2) * u.mean(axis=-2)
      r = 1.0 / np.sqrt(self.row / self.row.mean(axis=-1, keepdims=True))
      u = g * r[..., :, None] * (1.0 / np.sqrt(self.col))[..., None, :]
    else:
      self.v = beta2 * self.v + (1 - beta2) * u
      u = g / np.sqrt(self.v)
    rms = np.linalg.norm(u) / math.sqrt(max(u.size, 1))
    u = u / max(1.0, rms / clip_threshold)
    u = u * lr
    self.m = beta1 * self.m + (1 - beta1) * u
    p = p - weight_decay * lr * p
    return p - self.m


def to_torch(path, x):
  """Flax leaf (one layer) -> PyTorch layout: conv HWIO->OIHW, dense [in,out]->[out,in],
  pos_embed [h,w,c]->[1,h*w,c]."""
  if path[-1] == "pos_embed":
    return x.reshape(1, -1, x.shape[-1])
  if path[-1] == "kernel" and x.ndim == 4:
    return x.transpose(3, 2, 0, 1)
  if path[-1] == "kernel" and x.ndim == 2:
    return x.T
  return x


def from_torch(path, x, shape):
  if path[-1] == "pos_embed":
    return x.reshape(shape)
  if path[-1] == "kernel" and x.ndim == 4:
    return x.transpose(2, 3, 1, 0)
  if path[-1] == "kernel" and x.ndim == 2:
    return x.T
  return x


class ReferenceModel:
  """Per-parameter PyTorch-style Adafactor over a model tree; scanned leaves are split into
  their layers, each an independent parameter with its own layer multiplier."""

  def __init__(self, params, depth, clip_threshold, weight_decay):
    self.depth, self.weight_decay = depth, weight_decay
    self.opts = {}
    for path, x in leaves(params).items():
      for k, layer in enumerate(self._layers(path, x)):
        self.opts[path, k] = TorchAdafactor(to_torch(path, layer).shape, clip_threshold)

  @staticmethod
  def _layers(path, x):
    return list(x) if "blocks" in path else [x]

  def _multiplier(self, path, k):
    if "blocks" in path:
      path = ("backbone", f"block_{k}") + path[2:]
    return expected_multiplier(path, self.depth)

  def step(self, params, grads, lr):
    new = {}
    for path, p in params.items():
      p64, g64 = np.asarray(p, np.float64), np.asarray(grads[path], np.float64)
      out = []
      for k, (pl, gl) in enumerate(zip(self._layers(path, p64), self._layers(path, g64))):
        rate = lr * self._multiplier(path, k)
        wd = self.weight_decay if expected_decays(path) else 0.0
        res = self.opts[path, k].step(to_torch(path, pl), to_torch(path, gl), rate, wd)
        out.append(from_torch(path, res, pl.shape))
      new[path] = np.stack(out) if "blocks" in path else out[0]
    return new


def small_config(**overrides):
  cfg = optim.default_config()
  cfg.peak_lr = 0.1
  cfg.schedule.warmup_steps = 4
  cfg.schedule.init_lr = 1e-3
  cfg.schedule.total_steps = 10
  cfg.schedule.boundaries = (5, 7, 9)
  cfg.schedule.factors = (0.5, 0.2, 0.1)
  for key, value in overrides.items():
    cfg[key] = value
  return cfg


def tree_from_leaves(template, values):
  flat, treedef = jax.tree_util.tree_flatten_with_path(template)
  return treedef.unflatten([values[path_names(kp)] for kp, _ in flat])


def grad_sequence(shapes, steps, seed):
  """Random grads whose scale changes per step, leaf and layer (so per-layer RMS clipping
  and the beta2 EMAs see different magnitudes); one leaf gets an all-zero grad at step 3."""
  rng = np.random.default_rng(seed)
  out = []
  for step in range(steps):
    grads = {}
    for path, s in leaves(shapes).items():
      g = rng.normal(size=s.shape)
      lead = (s.shape[0],) + (1,) * (len(s.shape) - 1) if "blocks" in path else ()
      g = g * 10.0 ** rng.uniform(-1, 1, size=lead or None)
      if step == 3 and path[-1] == "embedding":
        g = np.zeros_like(g)
      grads[path] = g.astype(np.float32)
    out.append(grads)
  return out


# ------------------------------------------------------------------ Adafactor


@pytest.mark.parametrize("scanned", [False, True])
def test_chain_matches_numpy_reference(scanned):
  depth, steps = 3, 10
  shapes = model_shapes(8, depth, scanned=scanned, patch=4, grid=3, full=False)
  cfg = small_config()
  params = random_like(shapes, np.random.default_rng(0))
  tx = optim.make_optimizer(cfg, shapes)
  state = tx.init(params)
  update = jax.jit(tx.update)
  reference = ReferenceModel(params, depth, cfg.clip_threshold, cfg.weight_decay)
  ref_params = leaves(params)
  for step, grads in enumerate(grad_sequence(shapes, steps, seed=1)):
    updates, state = update(tree_from_leaves(shapes, grads), state, params)
    params = optax.apply_updates(params, updates)
    lr = step_lr(step, 0.1, 1e-3, 4, (5, 7, 9), (0.5, 0.2, 0.1))
    new_ref = reference.step(ref_params, grads, lr)
    for path, got in leaves(updates).items():
      want = new_ref[path] - ref_params[path]
      err = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
      assert err < 1e-5, (step, path, err)
    ref_params = new_ref
  for path, got in leaves(params).items():
    np.testing.assert_allclose(got, ref_params[path], rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_scanned_stack_equals_looped_layers():
  depth, steps = 3, 6
  looped_shapes = model_shapes(8, depth, scanned=False, patch=4, grid=3, full=False)
  scanned_shapes = model_shapes(8, depth, scanned=True, patch=4, grid=3, full=False)
  looped = random_like(looped_shapes, np.random.default_rng(2))
  scanned = stack_blocks(looped, depth)
  cfg = small_config()
  tx_l, tx_s = optim.make_optimizer(cfg, looped), optim.make_optimizer(cfg, scanned)
  st_l, st_s = tx_l.init(looped), tx_s.init(scanned)
  # Treating the stack as one parameter (stacked=0: whole-stack RMS clipping, stacked biases
  # factored) must give different updates, or this test could not fail.
  blocks = {"blocks": scanned["backbone"]["blocks"]}
  tx_per_layer = adafactor_lib.adafactor(0.1, clip_threshold=cfg.clip_threshold,
                                         stacked=optim.stacked_axes(blocks))
  tx_whole = adafactor_lib.adafactor(0.1, clip_threshold=cfg.clip_threshold)
  st_p, st_w = tx_per_layer.init(blocks), tx_whole.init(blocks)
  up_l, up_s, up_p, up_w = (jax.jit(tx.update) for tx in (tx_l, tx_s, tx_per_layer, tx_whole))
  naive_differs = False
  for grads in grad_sequence(looped_shapes, steps, seed=3):
    g_l = tree_from_leaves(looped_shapes, grads)
    g_s = stack_blocks(g_l, depth)
    u_l, st_l = up_l(g_l, st_l, looped)
    u_s, st_s = up_s(g_s, st_s, scanned)
    want = leaves(stack_blocks(u_l, depth))
    for path, got in leaves(u_s).items():
      np.testing.assert_allclose(got, want[path], rtol=2e-6, atol=1e-9, err_msg=str(path))
    g_b = {"blocks": g_s["backbone"]["blocks"]}
    u_p, st_p = up_p(g_b, st_p, blocks)
    u_w, st_w = up_w(g_b, st_w, blocks)
    u_w = leaves(u_w)
    for path, got in leaves(u_p).items():
      naive_differs |= not np.allclose(got, u_w[path], rtol=1e-3)
  assert naive_differs


def test_factored_dims_rule():
  rule = optim.default_factored_dims
  assert rule(("backbone", "patch_embed", "kernel"), (16, 16, 3, 768), 0) == ((0,), (1,))
  assert rule(("backbone", "pos_embed"), (14, 14, 768), 0) == ((0, 1), (2,))
  assert rule(("backbone", "blocks", "attn", "qkv", "kernel"), (12, 768, 2304), 1) == ((1,), (2,))
  assert rule(("backbone", "blocks", "attn", "qkv", "bias"), (12, 2304), 1) is None
  assert rule(("backbone", "cls_token"), (768,), 0) is None


def test_factored_state_shapes_keep_param_ndim():
  params = {"w": jnp.zeros((4, 5, 6)), "conv": {"kernel": jnp.zeros((3, 3, 2, 7))},
            "b": jnp.zeros((6,))}
  state = optim.scale_by_factored_rms(stacked={"w": 1, "conv": {"kernel": 0}, "b": 0}).init(
      params)
  assert state.v_row["w"].shape == (4, 5, 1) and state.v_col["w"].shape == (4, 1, 6)
  assert state.v_row["conv"]["kernel"].shape == (3, 1, 2, 7)
  assert state.v_col["conv"]["kernel"].shape == (1, 3, 2, 7)
  assert state.v["b"].shape == (6,) and state.v_row["b"].shape == ()


# ------------------------------------------------------------------ layer decay


@pytest.mark.parametrize("scanned", [False, True])
@pytest.mark.parametrize("authors", [False, True])
def test_layer_decay_vit_b(scanned, authors):
  depth = 12
  shapes = model_shapes(768, depth, scanned=scanned)
  mult = optim.layer_decay_multipliers(shapes, 0.75, authors_num_layers=12 if authors else None)
  expect = expected_authors_multiplier if authors else (lambda p: expected_multiplier(p, depth))
  got = leaves(mult)
  assert set(got) == set(leaves(shapes))
  for path, value in got.items():
    if "blocks" in path:
      assert np.shape(value) == (depth,) + (1,) * (len(leaves(shapes)[path].shape) - 1)
      want = [expect(("backbone", f"block_{i}") + path[2:]) for i in range(depth)]
      np.testing.assert_allclose(np.ravel(value), want, rtol=1e-6, err_msg=str(path))
    else:
      assert value == pytest.approx(expect(path), rel=1e-12), path
  top_block = got[("backbone", "blocks", "attn", "qkv", "kernel")][-1].item() if scanned else (
      got[("backbone", "block_11", "attn", "qkv", "kernel")])
  assert top_block == pytest.approx(1 / 0.75 if authors else 0.75, rel=1e-6)


def test_layer_decay_coverage_and_pos_embed_multiplier():
  shapes = model_shapes(8, 2, scanned=False, patch=4, grid=3, full=False)
  mult = leaves(optim.layer_decay_multipliers(shapes, 0.5, pos_embed_multiplier=2.0))
  assert mult[("backbone", "pos_embed")] == pytest.approx(2.0 * 0.5 ** 3)
  assert mult[("backbone", "cls_pos_embed")] == pytest.approx(2.0 * 0.5 ** 3)
  assert mult[("backbone", "cls_token")] == pytest.approx(0.5 ** 3)
  assert len(optim.describe(optim.layer_decay_multipliers(shapes))) == len(leaves(shapes))
  shapes["backbone"]["mask_token"] = _s(8)
  with pytest.raises(ValueError, match="backbone/mask_token"):
    optim.layer_decay_multipliers(shapes)


# ------------------------------------------------------------------ schedules


def test_paper_step_schedule():
  # The optimiser config alone does not know the run: the paper's is 80k updates.
  sched = optim.make_schedule(optim.default_config(), num_steps=80_000)
  peak, init = 5e-4, 1e-7
  for t in (0, 750, 1499, 1500, 39_999, 40_000, 59_999, 60_000, 75_999, 76_000, 79_999):
    want = step_lr(t, peak, init, 1500, (40_000, 60_000, 76_000), (0.5, 0.5, 0.5))
    assert float(sched(t)) == pytest.approx(want, rel=1e-6), t
  assert float(sched(0)) == pytest.approx(1e-7, rel=1e-6)
  assert float(sched(1500)) == pytest.approx(5e-4, rel=1e-6)
  assert float(sched(76_000)) == pytest.approx(5e-4 / 8, rel=1e-6)


def test_authors_step_schedule():
  sched = optim.make_schedule(optim.authors_config(), num_steps=80_000)
  for t in (0, 1, 1499, 1500, 39_999, 40_000, 59_999, 60_000, 75_999, 76_000):
    want = step_lr(t, 1e-3, 1e-7, 1500, (40_000, 60_000, 76_000), (0.5, 0.2, 0.1))
    assert float(sched(t)) == pytest.approx(want, rel=1e-6), t
  assert float(sched(76_000)) == pytest.approx(1e-5, rel=1e-6)


def test_cosine_schedules():
  cfg = optim.default_config()
  cfg.peak_lr, cfg.schedule.total_steps, cfg.schedule.warmup_steps = 1e-3, 1000, 100
  cfg.schedule.name, cfg.schedule.eta_min = "cosine", 1e-5
  cosine = optim.make_schedule(cfg)
  cfg.schedule.name, cfg.schedule.warmup_factor = "warmup_cosine", 0.01
  warm_cos = optim.make_schedule(cfg)
  for t in (0, 50, 99, 100, 400, 999, 1000, 1200):
    if t < 100:
      want = 1e-7 + t / 100 * (1e-3 - 1e-7)
    else:
      want = 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * min(t - 100, 900) / 900)) / 2
    assert float(cosine(t)) == pytest.approx(want, rel=1e-5, abs=1e-12), t
    factor = 0.01 * (1 - t / 100) + t / 100 if t < 100 else 1.0
    want = 1e-3 * factor * 0.5 * (1 + math.cos(math.pi * min(t, 1000) / 1000))
    assert float(warm_cos(t)) == pytest.approx(want, rel=1e-5, abs=1e-12), t


def test_schedule_config_errors():
  cfg = optim.default_config()
  cfg.schedule.name = "linear"
  with pytest.raises(ValueError, match="schedule.name 'linear'"):
    optim.make_schedule(cfg)


# ------------------------------------------------------------------ masks and freezing


def test_weight_decay_mask_leaf_by_leaf():
  for scanned in (False, True):
    shapes = model_shapes(768, 12, scanned=scanned)
    mask = leaves(optim.weight_decay_mask(shapes))
    assert set(mask) == set(leaves(shapes))
    for path, value in mask.items():
      assert value is expected_decays(path), path
  shapes["head_coco"]["odd"] = {"weight": _s(3)}
  with pytest.raises(ValueError, match="head_coco/odd/weight"):
    optim.weight_decay_mask(shapes)


def _two_steps(cfg, shapes, seed=4):
  params = random_like(shapes, np.random.default_rng(seed))
  tx = optim.make_optimizer(cfg, shapes)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for grads in grad_sequence(shapes, 2, seed=seed + 1):
    updates, state = update(tree_from_leaves(shapes, grads), state, params)
  return leaves(updates), state


def _state_paths(state):
  flat, _ = jax.tree_util.tree_flatten_with_path(state)
  return {path_names(kp) for kp, _ in flat}


@pytest.mark.parametrize("freeze", ["backbone", "partial", "pos_embed"])
def test_frozen_leaves_zero_update_and_no_state(freeze):
  depth = 3
  shapes = model_shapes(8, depth, scanned=False, patch=4, grid=3, full=False)
  updates, state = _two_steps(small_config(freeze=freeze), shapes)
  state_paths = _state_paths(state)

  def trains(path):
    if path[0] != "backbone":
      return True
    if freeze == "backbone":
      return False
    if freeze == "pos_embed":
      return path[1] != "pos_embed"
    return path[1] in ("norm", f"block_{depth - 2}", f"block_{depth - 1}")

  for path, u in updates.items():
    held = any(sp[-len(path):] == path for sp in state_paths)
    if trains(path):
      assert np.all(np.asarray(u) != 0), path
      assert held, path
    else:
      assert np.all(np.asarray(u) == 0), path
      assert not held, path


def test_partial_freeze_scanned_zeroes_frozen_layers():
  depth = 3
  shapes = model_shapes(8, depth, scanned=True, patch=4, grid=3, full=False)
  updates, state = _two_steps(small_config(freeze="partial", freeze_open_last=1), shapes)
  # The state holds the open layer only: every array state leaf under 'blocks' has one layer.
  flat, _ = jax.tree_util.tree_flatten_with_path(state)
  block_state = [(path_names(kp), x) for kp, x in flat if "blocks" in path_names(kp)]
  assert block_state and all(np.ndim(x) == 0 or np.shape(x)[0] == 1 for _, x in block_state), [
      (p, np.shape(x)) for p, x in block_state]
  for path, u in updates.items():
    u = np.asarray(u)
    if "blocks" in path:
      assert np.all(u[:depth - 1] == 0) and np.all(u[depth - 1] != 0), path
    elif path[0] == "backbone":
      assert np.all(u == 0) == (path[1] != "norm"), path
    else:
      assert np.all(u != 0), path


def test_make_optimizer_rejects_unknown_field():
  cfg = optim.default_config()
  cfg.unlock()
  cfg.layer_decy = 0.8
  with pytest.raises(ValueError, match="did you mean 'layer_decay'"):
    optim.make_optimizer(cfg, model_shapes(8, 2, scanned=False, patch=4, grid=3, full=False))


def test_boxed_params_match_unboxed():
  """Params boxed by nn.with_logical_partitioning (nn.Partitioned) give the same updates."""
  import flax.linen as nn
  shapes = model_shapes(8, 3, scanned=True, patch=4, grid=3, full=False)
  box = lambda tree: jax.tree.map(
      lambda x: nn.Partitioned(jnp.asarray(x), names=(None,) * np.ndim(x)), tree)
  params = random_like(shapes, np.random.default_rng(6))
  grads = random_like(shapes, np.random.default_rng(7))
  cfg = small_config(freeze="partial")
  tx_b, tx_u = optim.make_optimizer(cfg, box(params)), optim.make_optimizer(cfg, params)
  u_b, _ = jax.jit(tx_b.update)(box(grads), tx_b.init(box(params)), box(params))
  u_u, _ = jax.jit(tx_u.update)(grads, tx_u.init(params), params)
  u_u = leaves(u_u)
  for path, got in leaves(nn.meta.unbox(u_b)).items():
    np.testing.assert_array_equal(got, u_u[path], err_msg=str(path))


@pytest.mark.parametrize("scanned", [False, True])
def test_grouped_leaves_equal_per_leaf_chain(scanned):
  """optimizer.group_leaves runs the chain once per group of same-shaped leaves: same updates
  and the same (per-leaf) state layout as the per-leaf chain, with fewer groups than leaves."""
  from path_jax.optim import grouping
  depth = 3
  shapes = model_shapes(8, depth, scanned=scanned, patch=4, grid=3)
  params = random_like(shapes, np.random.default_rng(4))
  cfg_leaf, cfg_group = small_config(), small_config()
  cfg_leaf.group_leaves, cfg_group.group_leaves = False, True
  tx_l, tx_g = optim.make_optimizer(cfg_leaf, shapes), optim.make_optimizer(cfg_group, shapes)
  st_l, st_g = tx_l.init(params), tx_g.init(params)
  assert jax.tree.structure(st_l) == jax.tree.structure(st_g)
  for a, b in zip(jax.tree.leaves(st_l), jax.tree.leaves(st_g)):
    assert a.shape == b.shape
  up_l, up_g = jax.jit(tx_l.update), jax.jit(tx_g.update)
  p_l = p_g = params
  for grads in grad_sequence(shapes, 4, seed=5):
    g = tree_from_leaves(shapes, grads)
    u_l, st_l = up_l(g, st_l, p_l)
    u_g, st_g = up_g(g, st_g, p_g)
    for path, got in leaves(u_g).items():
      np.testing.assert_allclose(got, leaves(u_l)[path], rtol=1e-6, atol=1e-9, err_msg=str(path))
    p_l, p_g = optax.apply_updates(p_l, u_l), optax.apply_updates(p_g, u_g)
  for a, b in zip(jax.tree.leaves(st_l), jax.tree.leaves(st_g)):
    # Reductions run in another order: float32 rounding, relative to each state's scale.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(np.max(np.abs(b))) + 1e-12)
  # The point of it: fewer chains than leaves (looped blocks share shapes).
  plan = grouping._Plan(shapes, lambda path, leaf: None)
  assert len(plan.groups) < len(jax.tree.leaves(shapes))
  if not scanned:
    assert len(plan.groups) <= len(jax.tree.leaves(shapes)) // 2


def test_grouped_global_norm_equals_optax():
  from path_jax.optim import grouping
  shapes = model_shapes(8, 3, scanned=False, patch=4, grid=3)
  tree = random_like(shapes, np.random.default_rng(6))
  np.testing.assert_allclose(grouping.global_norm(tree), optax.global_norm(tree), rtol=1e-6)
  tree["head_coco"]["deconv"]["bias"][2] = np.inf   # a non-finite leaf still shows
  assert not np.isfinite(grouping.global_norm(tree))
