"""Counting task: density targets against scipy, the count invariant, head, loss, overfitting."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import ndimage

from path_jax import tasks
from path_jax.tasks import counting
from path_jax.tasks.counting import targets

# Inits use "rbg" keys: compiling threefry for every parameter costs seconds on XLA:CPU.


@pytest.mark.parametrize("stride,sigma", [(1, 2.0), (1, 1.3), (4, 6.0), (8, 9.0)])
def test_density_map_is_gaussian_filter_of_point_image(stride, sigma):
  h, w = 40, 48
  rng = np.random.default_rng(stride)
  r = int(4.0 * sigma / stride + 0.5)
  cells = np.stack([rng.integers(r, w - r, size=5), rng.integers(r, h - r, size=5)], 1)
  cells[1] = cells[0]                                    # two heads on one cell
  points = (cells + 0.5) * stride                        # at cell centres, in input pixels
  got = targets.density_map(points, (h * stride, w * stride), stride, sigma)
  impulses = np.zeros((h, w))
  np.add.at(impulses, (cells[:, 1], cells[:, 0]), 1.0)
  expected = ndimage.gaussian_filter(impulses, sigma / stride, mode="constant", truncate=4.0)
  assert got.shape == (h, w) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, atol=1e-7)


def test_density_sums_to_heads_inside_even_at_the_border():
  rng = np.random.default_rng(0)
  height, width, stride = 61, 90, 4                   # not multiples of the stride
  points = np.concatenate([
      rng.uniform([0, 0], [width, height], size=(30, 2)),
      [[0.0, 0.0], [width - 1e-3, height - 1e-3], [0.2, 30.0], [89.9, 5.0]],   # border heads
      [[-1.0, 3.0], [width, 10.0], [5.0, height + 2.0]],                      # outside
  ])
  sigmas = rng.uniform(0.5, 20.0, size=len(points))
  density = targets.density_map(points, (height, width), stride, sigmas)
  assert density.shape == (16, 23)
  np.testing.assert_allclose(density.sum(), 34.0, rtol=1e-5)
  assert np.all(density >= 0)
  # A sigma far below one cell puts the whole head in its own cell instead of underflowing.
  tiny = targets.density_map(np.array([[13.0, 22.0]]), (height, width), stride, 1e-3)
  assert tiny[5, 3] == pytest.approx(1.0) and tiny.sum() == pytest.approx(1.0)
  assert targets.density_map(np.zeros((0, 2)), (height, width), stride, 4.0).sum() == 0.0


def test_adaptive_sigmas_and_make_targets():
  rng = np.random.default_rng(1)
  points = rng.uniform([0, 0], [64, 60], size=(12, 2))
  k, beta = 3, 0.3
  d = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
  expected = np.array([beta * np.sort(row)[1:k + 1].mean() for row in d])
  np.testing.assert_allclose(targets.adaptive_sigmas(points, k, beta, 9.0), expected, rtol=1e-10)
  np.testing.assert_allclose(targets.adaptive_sigmas(points[:1], k, beta, 9.0), [9.0])
  cfg = counting.default_config()
  cfg.adaptive_knn = 3
  points[0] = [70.0, 5.0]                                  # one head outside the 64x60 image
  out = targets.make_targets(points, (60, 64), cfg)
  assert out["density"].shape == (15, 16) and out["count"] == 11.0
  np.testing.assert_allclose(out["density"].sum(), 11.0, rtol=1e-5)


def _inputs(tokens, grid, image_hw):
  return tasks.HeadInputs(tokens=tokens, grid=grid, image_hw=image_hw)


def _cfg(**kw):
  cfg = counting.default_config()
  cfg.decoder_channels = (16, 8, 8)
  cfg.update(kw)
  return cfg


def test_head_shapes_and_stride_check():
  task = tasks.get("counting")
  assert not task.pretraining and not task.uses_cls_token
  head = task.make_head(_cfg())
  tokens = jnp.ones((2, 16, 12))
  variables = jax.jit(lambda t: head.init(
      jax.random.key(0, impl="rbg"), _inputs(t, (4, 4), (64, 64)), train=False))(tokens)
  assert set(variables["params"]) == {"conv_0", "conv_1", "conv_2", "out"}
  assert variables["params"]["conv_0"]["kernel"].names == (None, None, "embed", None)
  shape = lambda hw: jax.eval_shape(
      lambda v, t: head.apply(v, _inputs(t, (4, 4), hw), train=False), variables, tokens)
  assert shape((64, 64))["density"].shape == (2, 16, 16)
  assert shape((58, 61))["density"].shape == (2, 15, 16)          # padded input, cut back
  with pytest.raises(ValueError, match="output_stride 8 upsample a patch grid of stride 32"):
    jax.eval_shape(lambda t: task.make_head(_cfg(output_stride=8)).init(
        jax.random.key(0, impl="rbg"), _inputs(t, (4, 4), (64, 64)), train=False), tokens)


def test_loss_metrics_and_decode_match_numpy():
  task = tasks.get("counting")
  cfg = _cfg(density_scale=50.0)
  rng = np.random.default_rng(2)
  pred = rng.normal(size=(3, 5, 6)).astype(np.float32)
  target = rng.uniform(0, 0.1, size=(3, 5, 6)).astype(np.float32)
  count = np.array([1.0, 0.0, 2.5], np.float32)
  loss, metrics = task.loss({"density": jnp.asarray(pred)},
                            {"density": jnp.asarray(target), "count": jnp.asarray(count)}, cfg)
  np.testing.assert_allclose(loss, np.mean((pred - 50.0 * target) ** 2), rtol=1e-5)
  err = pred.sum((1, 2)) / 50.0 - count
  np.testing.assert_allclose(metrics["count_mae"], np.abs(err).mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["count_mse"], (err ** 2).mean(), rtol=1e-5)
  decoded = task.decode({"density": jnp.asarray(pred)}, {}, cfg)
  np.testing.assert_allclose(decoded["density"], pred / 50.0, rtol=1e-6)
  np.testing.assert_allclose(decoded["count"], pred.sum((1, 2)) / 50.0, rtol=1e-5)
  with pytest.raises(ValueError, match="output_stride"):
    task.loss({"density": jnp.asarray(pred)},
              {"density": jnp.asarray(target[:, :4]), "count": jnp.asarray(count)}, cfg)


class _Adapter(nn.Module):
  """A trainable stand-in for the backbone on fixed random tokens."""
  head: nn.Module

  @nn.compact
  def __call__(self, x):
    return self.head(_inputs(nn.Dense(x.shape[-1])(x), (4, 4), (64, 64)), train=True)


def _train(cfg, x, batch, steps):
  task = tasks.get("counting")
  model = _Adapter(task.make_head(cfg))
  params = nn.meta.unbox(model.init(jax.random.key(1, impl="rbg"), x))["params"]
  opt = optax.adam(1e-2)
  opt_state = opt.init(params)

  @jax.jit
  def step(p, o):
    (loss, metrics), g = jax.value_and_grad(
        lambda q: task.loss(model.apply({"params": q}, x), batch, cfg), has_aux=True)(p)
    updates, o = opt.update(g, o, p)
    return optax.apply_updates(p, updates), o, loss, metrics, g

  history = []
  for _ in range(steps):
    params, opt_state, loss, metrics, grads = step(params, opt_state)
    history.append(float(loss))
  return history, metrics, grads


def test_overfits_two_crowds():
  cfg = _cfg()
  rng = np.random.default_rng(3)
  images = [targets.make_targets(rng.uniform(0, 64, size=(n, 2)), (64, 64), cfg) for n in (7, 20)]
  batch = {"image": jnp.zeros((2, 64, 64, 3), jnp.uint8),
           "density": jnp.asarray(np.stack([t["density"] for t in images])),
           "count": jnp.asarray([t["count"] for t in images])}
  x = jnp.asarray(rng.normal(size=(2, 16, 12)), jnp.float32)
  history, metrics, _ = _train(cfg, x, batch, steps=150)
  assert history[-1] < 0.2 * history[0], (history[0], history[-1])
  assert float(metrics["count_mae"]) < 0.1 * 13.5      # counts within 10% of the mean count


def test_zero_count_gives_finite_gradients():
  cfg = _cfg()
  batch = {"density": jnp.zeros((2, 16, 16)), "count": jnp.zeros((2,))}
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 16, 12)), jnp.float32)
  history, _, grads = _train(cfg, x, batch, steps=1)
  assert np.isfinite(history[0])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
