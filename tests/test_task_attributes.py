"""Attribute task: weighted masked BCE against NumPy, head math, missing labels, overfitting."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from path_jax import tasks
from path_jax.tasks import attributes
from path_jax.tasks.attributes import loss as attr_loss

# Inits use "rbg" keys: compiling threefry for every parameter costs seconds on XLA:CPU.


def np_weighted_bce(logits, labels, ratios):
  total = 0.0
  b, a = labels.shape
  for i in range(b):
    for j in range(a):
      if labels[i, j] == -1:
        continue
      x = float(logits[i, j])
      p = 1.0 / (1.0 + np.exp(-x))
      if labels[i, j] == 1:
        total += -np.log(p) * np.exp(1.0 - ratios[j])
      else:
        total += -np.log(1.0 - p) * np.exp(ratios[j])
  return total / b


def _random_case(seed, b=6, a=9):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(b, a)) * 2).astype(np.float32)
  labels = rng.integers(-1, 2, size=(b, a)).astype(np.int8)
  ratios = rng.uniform(0.02, 0.9, size=a)
  return logits, labels, ratios


def test_weighted_bce_matches_numpy():
  logits, labels, ratios = _random_case(0)
  got = attr_loss.weighted_bce(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(ratios))
  np.testing.assert_allclose(got, np_weighted_bce(logits, labels, ratios), rtol=1e-5)


def test_missing_labels_carry_no_value_and_no_gradient():
  logits, labels, ratios = _random_case(1)
  loss = lambda x: attr_loss.weighted_bce(x, jnp.asarray(labels), jnp.asarray(ratios))
  grads = np.asarray(jax.grad(loss)(jnp.asarray(logits)))
  assert np.all(grads[labels == -1] == 0.0) and np.all(grads[labels != -1] != 0.0)
  moved = np.where(labels == -1, logits + 50.0, logits)
  np.testing.assert_allclose(loss(jnp.asarray(moved)), loss(jnp.asarray(logits)), rtol=1e-6)
  # Large logits stay finite (stable form of BCE-with-logits).
  assert np.isfinite(float(loss(jnp.asarray(logits * 1e3))))


def test_label_accuracy_counts_annotated_labels_only():
  logits, labels, _ = _random_case(2)
  valid = labels != -1
  expected = np.sum(((logits > 0) == (labels == 1)) & valid) / np.sum(valid)
  np.testing.assert_allclose(attr_loss.label_accuracy(jnp.asarray(logits), jnp.asarray(labels)),
                             expected, rtol=1e-6)


def _cfg(a, ratios=None):
  cfg = attributes.default_config()
  cfg.num_attributes = a
  cfg.positive_ratios = list(ratios) if ratios is not None else [0.3] * a
  return cfg


def _inputs(tokens):
  return tasks.HeadInputs(tokens=tokens, grid=(2, 3), image_hw=(32, 48))


def test_head_matches_numpy_and_names_params():
  task = tasks.get("attributes")
  head = task.make_head(_cfg(5))
  rng = np.random.default_rng(3)
  tokens = rng.normal(size=(8, 6, 12)).astype(np.float32)
  variables = head.init(jax.random.key(0, impl="rbg"), _inputs(jnp.asarray(tokens)), train=False)
  p = variables["params"]
  assert p["fc"]["kernel"].names == ("embed", None) and p["fc"]["bias"].names == (None,)
  assert p["bn"]["scale"].names == (None,) and p["bn"]["bias"].names == (None,)
  bound = 1 / np.sqrt(12)
  assert np.all(np.abs(p["fc"]["kernel"].value) <= bound)
  variables = nn.meta.unbox(variables)
  out, state = head.apply(variables, _inputs(jnp.asarray(tokens)), train=True,
                          mutable=["batch_stats"])
  w, b = np.asarray(variables["params"]["fc"]["kernel"]), np.asarray(variables["params"]["fc"]["bias"])
  z = tokens.astype(np.float64).mean(1) @ w + b
  np.testing.assert_allclose(out["logits"], (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(state["batch_stats"]["bn"]["mean"], 0.1 * z.mean(0), rtol=1e-4,
                             atol=1e-7)
  decoded = task.decode(out, {}, _cfg(5))
  np.testing.assert_allclose(decoded["probs"], 1 / (1 + np.exp(-np.asarray(out["logits"]))),
                             rtol=1e-6)
  np.testing.assert_array_equal(decoded["pred"], np.asarray(out["logits"]) > 0)


def test_config_errors_name_the_field():
  task = tasks.get("attributes")
  with pytest.raises(KeyError, match="num_attributes"):
    task.make_head(attributes.default_config())
  outputs = {"logits": jnp.zeros((2, 4))}
  with pytest.raises(ValueError, match="positive_ratios has 3 entries"):
    task.loss(outputs, {"labels": jnp.zeros((2, 4), jnp.int32)}, _cfg(3))


class _Adapter(nn.Module):
  """A trainable stand-in for the backbone on fixed random tokens."""
  head: nn.Module

  @nn.compact
  def __call__(self, x, *, train):
    return self.head(_inputs(nn.Dense(x.shape[-1])(x)), train=train)


def _train(task, cfg, x, batch, steps, lr=3e-2):
  model = _Adapter(task.make_head(cfg))
  variables = nn.meta.unbox(model.init(jax.random.key(1, impl="rbg"), x, train=False))
  params, stats = variables["params"], variables["batch_stats"]
  opt = optax.adam(lr)
  opt_state = opt.init(params)

  def loss_fn(p, s):
    out, new = model.apply({"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"])
    loss, metrics = task.loss(out, batch, cfg)
    return loss, (new["batch_stats"], metrics)

  @jax.jit
  def step(p, s, o):
    (loss, (s, metrics)), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s)
    updates, o = opt.update(g, o, p)
    return optax.apply_updates(p, updates), s, o, loss, metrics, g

  history = []
  for _ in range(steps):
    params, stats, opt_state, loss, metrics, grads = step(params, stats, opt_state)
    history.append(float(loss))
  return history, metrics, grads


def test_overfits_a_few_examples():
  task = tasks.get("attributes")
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(8, 6, 12)), jnp.float32)
  labels = rng.integers(0, 2, size=(8, 5)).astype(np.int8)
  labels[:4, 3:] = -1                                   # a second dataset's columns
  cfg = _cfg(5, rng.uniform(0.1, 0.6, size=5))
  batch = {"image": jnp.zeros((8, 32, 48, 3), jnp.uint8), "labels": jnp.asarray(labels)}
  history, metrics, _ = _train(task, cfg, x, batch, steps=100)
  assert history[-1] < 0.2 * history[0], (history[0], history[-1])
  assert float(metrics["accuracy"]) == 1.0


def test_all_missing_labels_give_zero_loss_and_finite_gradients():
  task = tasks.get("attributes")
  x = jnp.asarray(np.random.default_rng(5).normal(size=(4, 6, 12)), jnp.float32)
  batch = {"labels": -jnp.ones((4, 5), jnp.int32)}
  history, metrics, grads = _train(task, _cfg(5), x, batch, steps=2)
  assert history == [0.0, 0.0]
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert float(metrics["accuracy"]) == 0.0


def test_reid_attribute_and_counting_heads_train_in_the_path_model():
  """The three task packages inside the real PATH model (tiny ViT, finetuning: no projectors)."""
  import ml_collections as mlc
  from path_jax.model import path
  from path_jax.tasks import counting, reid
  cfg = mlc.ConfigDict()
  cfg.model = mlc.ConfigDict({"backbone": {"variant": "mu/16", "cls_token": True},
                              "projector": {"enabled": False}})
  reid_cfg = reid.default_config()
  reid_cfg.update({"num_classes": 3, "classes_multiple_of": 8})
  attr_cfg = _cfg(4, [0.2, 0.5, 0.7, 0.1])
  count_cfg = counting.default_config()
  count_cfg.decoder_channels = (16, 8, 8)
  cfg.datasets = mlc.ConfigDict({"market": reid_cfg, "pa100k": attr_cfg, "shtech": count_cfg})
  for name, task in (("market", "reid"), ("pa100k", "attributes"), ("shtech", "counting")):
    cfg.datasets[name].task = task
  model = path.from_config(cfg)
  rng = np.random.default_rng(6)
  # attributes and counting share one backbone pass (same shape, no cls token)
  images = {"market": (4, 64, 32), "pa100k": (2, 64, 64), "shtech": (2, 64, 64)}
  images = {k: jnp.asarray(rng.integers(0, 256, s + (3,)), jnp.uint8) for k, s in images.items()}
  batches = {
      "market": {"label": jnp.asarray([0, 0, 2, 2], jnp.int32)},
      "pa100k": {"labels": jnp.asarray([[1, 0, -1, 1], [0, 1, -1, -1]], jnp.int8)},
      "shtech": {"density": jnp.asarray(np.stack([
          counting.targets.make_targets(rng.uniform(0, 64, (n, 2)), (64, 64), count_cfg)["density"]
          for n in (3, 0)])), "count": jnp.asarray([3.0, 0.0])},
  }
  variables = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0, impl="rbg"), images))
  assert set(variables["params"]) == {"backbone", "head_market", "head_pa100k", "head_shtech"}

  @jax.jit
  def losses_and_grads(params, stats):
    def total(p):
      outs, new = model.apply({"params": p, "batch_stats": stats}, images, train=True,
                              mutable=["batch_stats"])
      per = {n: tasks.get(cfg.datasets[n].task).loss(outs[n], batches[n], cfg.datasets[n])[0]
             for n in batches}
      return sum(per.values()), (per, new)
    return jax.value_and_grad(total, has_aux=True)(params)

  (_, (per, new)), grads = losses_and_grads(variables["params"], variables["batch_stats"])
  assert all(np.isfinite(float(v)) and float(v) > 0 for v in per.values()), per
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert set(new["batch_stats"]) == {"head_market", "head_pa100k"}
  # The backbone receives gradient from every task.
  assert float(jnp.abs(grads["backbone"]["patch_embed"]["kernel"]).sum()) > 0
