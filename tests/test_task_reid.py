"""ReID task: losses against brute-force NumPy, head structure, sharding, overfitting."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from path_jax import tasks
from path_jax.tasks import reid
from path_jax.tasks.reid import loss as reid_loss

# Jitted once per margin: eager dispatch compiles every small op separately on XLA:CPU.
_triplet = jax.jit(reid_loss.batch_hard_triplet, static_argnums=2)
_triplet_grad = jax.jit(jax.grad(reid_loss.batch_hard_triplet), static_argnums=2)

# Inits use "rbg" keys: compiling threefry for every parameter costs seconds on XLA:CPU.


def np_cross_entropy(logits, labels, eps):
  logits = logits.astype(np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
  k = logits.shape[1]
  target = np.full(logits.shape, eps / k)
  target[np.arange(len(labels)), labels] += 1.0 - eps
  return -(target * logp).sum(1)


def np_batch_hard(feat, labels, margin):
  feat = feat.astype(np.float64)
  losses = []
  for i in range(len(labels)):
    d_ap, d_an = 0.0, np.inf
    for j in range(len(labels)):
      d = max(np.sum((feat[i] - feat[j]) ** 2), 1e-12) ** 0.5
      if labels[j] == labels[i]:
        d_ap = max(d_ap, d)
      else:
        d_an = min(d_an, d)
    if np.isinf(d_an):
      continue
    x = d_an - d_ap
    losses.append(np.log1p(np.exp(-x)) if margin is None else max(0.0, margin - x))
  return float(np.mean(losses)) if losses else 0.0


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_matches_numpy(eps):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 11)).astype(np.float32) * 3
  labels = rng.integers(0, 11, size=6)
  got = jax.jit(reid_loss.cross_entropy, static_argnums=2)(
      jnp.asarray(logits), jnp.asarray(labels), eps)
  np.testing.assert_allclose(got, np_cross_entropy(logits, labels, eps), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("margin", [None, 0.3])
def test_batch_hard_triplet_matches_brute_force(margin):
  rng = np.random.default_rng(1)
  # 4 ids x 3 images, plus a singleton id (its d_ap is the self-distance 1e-6).
  labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4])
  feat = rng.normal(size=(13, 8)).astype(np.float32) * 0.5
  got = _triplet(jnp.asarray(feat), jnp.asarray(labels), margin)
  np.testing.assert_allclose(got, np_batch_hard(feat, labels, margin), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("margin", [None, 0.3])
def test_batch_hard_triplet_ties_and_duplicates(margin):
  rng = np.random.default_rng(2)
  labels = np.array([5, 5, 7, 7, 7, 9, 9, 9])
  feat = rng.normal(size=(8, 6)).astype(np.float32) * 0.3
  feat[1] = feat[0]          # duplicate positive: distance 0 (clamped)
  feat[5] = feat[2]          # a negative identical to an anchor: d_an = 0
  feat[7] = feat[6]          # anchor 5 sees its two positives at the same distance
  feat[4] = 2 * feat[3] - feat[2]  # d(3,2) == d(3,4): tied hardest positive
  got = _triplet(jnp.asarray(feat), jnp.asarray(labels), margin)
  np.testing.assert_allclose(got, np_batch_hard(feat, labels, margin), rtol=1e-4, atol=2e-4)
  grads = _triplet_grad(jnp.asarray(feat), jnp.asarray(labels), margin)
  assert np.all(np.isfinite(grads))


def test_triplet_without_negatives_is_zero_with_finite_gradient():
  feat = jnp.asarray(np.random.default_rng(3).normal(size=(4, 5)), jnp.float32)
  labels = jnp.zeros(4, jnp.int32)
  value, grads = _triplet(feat, labels, None), _triplet_grad(feat, labels, None)
  assert float(value) == 0.0
  assert np.all(np.isfinite(grads))


def _inputs(cls, c):
  b = cls.shape[0]
  return tasks.HeadInputs(tokens=jnp.zeros((b, 2, c)), grid=(1, 2), image_hw=(16, 32), cls=cls)


def _cfg(**kw):
  cfg = reid.default_config()
  cfg.num_classes = 7
  cfg.classes_multiple_of = 1
  cfg.update(kw)
  return cfg


def test_head_structure_init_and_batchnorm():
  task = tasks.get("reid")
  assert task.uses_cls_token and task.pretraining
  head = task.make_head(_cfg(num_classes=300, classes_multiple_of=128))
  rng = np.random.default_rng(4)
  x = rng.normal(size=(8, 64)).astype(np.float32) * 2 + 1
  variables = head.init(jax.random.key(0, impl="rbg"), _inputs(jnp.asarray(x), 64), train=False)
  params = variables["params"]
  assert set(params["bnneck"]) == {"scale"}            # bias frozen at 0: no parameter
  kernel = params["classifier"]["kernel"]
  assert isinstance(kernel, nn.LogicallyPartitioned) and kernel.names == ("embed", "classes")
  assert params["bnneck"]["scale"].names == ("embed",)
  assert set(params["classifier"]) == {"kernel"}
  assert kernel.value.shape == (64, 384)                     # 300 padded to a multiple of 128
  assert abs(float(jnp.std(kernel.value)) - 1e-3) < 1e-4    # N(0, 0.001) over 24,576 draws

  variables = nn.meta.unbox(variables)
  out, new_state = head.apply(variables, _inputs(jnp.asarray(x), 64), train=True,
                              mutable=["batch_stats"])
  mean, var = x.mean(0), x.var(0)
  np.testing.assert_allclose(out["feature_bn"], (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
  np.testing.assert_allclose(out["feature"], x)
  # flax momentum 0.9 == PyTorch momentum 0.1
  np.testing.assert_allclose(new_state["batch_stats"]["bnneck"]["mean"], 0.1 * mean, rtol=1e-5)
  assert out["logits"].shape == (8, 300)
  np.testing.assert_allclose(out["logits"], out["feature_bn"] @ np.asarray(kernel.value)[:, :300],
                             rtol=1e-5, atol=1e-7)


def test_missing_num_classes_names_the_field():
  with pytest.raises(KeyError, match="num_classes"):
    tasks.get("reid").make_head(reid.default_config())


def test_luperson_sized_head_initialises_abstractly_and_shards_classes():
  cfg = reid.default_config()
  cfg.num_classes = 151_595                    # = 5 x 30,319: padded so the mesh divides it
  head = tasks.get("reid").make_head(cfg)
  cls = jax.ShapeDtypeStruct((4, 768), jnp.float32)
  init = lambda c: head.init(jax.random.key(0, impl="rbg"), _inputs(c, 768), train=False)
  abstract = jax.eval_shape(init, cls)
  kernel = abstract["params"]["classifier"]["kernel"]
  assert kernel.value.shape == (768, 152_576) and kernel.names == ("embed", "classes")
  mesh = jax.make_mesh((1, 2, 4), ("data", "fsdp", "model"), axis_types=(AxisType.Auto,) * 3)
  rules = (("embed", "fsdp"), ("classes", "model"))
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
  assert shardings["params"]["classifier"]["kernel"].spec == P("fsdp", "model")
  # Compiling (not running) the sharded init proves the layout is valid, without 470 MB of memory.
  compiled = jax.jit(init, out_shardings=shardings).lower(cls).compile()
  kernel_out = compiled.output_shardings["params"]["classifier"]["kernel"].value
  assert kernel_out.shard_shape((768, 152_576)) == (384, 38_144)
  logits = jax.eval_shape(lambda v, c: head.apply(v, _inputs(c, 768), train=False),
                          nn.meta.unbox(abstract), cls)["logits"]
  assert logits.shape == (4, 151_595)


def test_cross_entropy_builds_nothing_bigger_than_the_logits():
  from jax.extend.core import jaxprs_in_params   # jax.core's copy is gone in jax 0.12
  b, k = 8, 1000
  logits = jax.ShapeDtypeStruct((b, k), jnp.float32)
  labels = jax.ShapeDtypeStruct((b,), jnp.int32)
  jaxpr = jax.make_jaxpr(lambda l, y: reid_loss.cross_entropy(l, y, 0.1).mean())(logits, labels)

  def sizes(jp):
    for eqn in jp.eqns:
      for v in eqn.outvars:
        yield int(np.prod(v.aval.shape))
      for sub in jaxprs_in_params(eqn.params):
        yield from sizes(sub)
  assert max(sizes(jaxpr.jaxpr)) <= b * k


def test_sharded_class_axis_gives_the_unsharded_loss():
  task = tasks.get("reid")
  cfg = _cfg(num_classes=64, label_smoothing=0.1)
  head = task.make_head(cfg)
  rng = np.random.default_rng(5)
  cls = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  batch = {"label": jnp.asarray(rng.integers(0, 64, 8), jnp.int32)}
  variables = nn.meta.unbox(head.init(jax.random.key(1, impl="rbg"), _inputs(cls, 16), train=False))

  def loss_fn(v, c, b):
    out, _ = head.apply(v, _inputs(c, 16), train=True, mutable=["batch_stats"])
    return task.loss(out, b, cfg)[0]
  expected = loss_fn(variables, cls, batch)
  mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
  shard = lambda spec: NamedSharding(mesh, spec)
  v_sh = jax.tree.map(lambda a: jax.device_put(a, shard(P())), variables)
  v_sh["params"]["classifier"]["kernel"] = jax.device_put(
      variables["params"]["classifier"]["kernel"], shard(P(None, "model")))
  got = jax.jit(loss_fn)(v_sh, jax.device_put(cls, shard(P("data"))),
                         jax.device_put(batch, shard(P("data"))))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


class _Adapter(nn.Module):
  """A trainable stand-in for the backbone on fixed random inputs."""
  head: nn.Module

  @nn.compact
  def __call__(self, x, *, train):
    cls = nn.Dense(x.shape[-1])(x)
    return self.head(_inputs(cls, x.shape[-1]), train=train)


def test_overfits_a_few_identities():
  task = tasks.get("reid")
  cfg = _cfg(num_classes=4)
  model = _Adapter(task.make_head(cfg))
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
  batch = {"image": jnp.zeros((8, 16, 8, 3), jnp.uint8),
           "label": jnp.asarray([0, 0, 1, 1, 2, 2, 3, 3], jnp.int32)}
  variables = nn.meta.unbox(model.init(jax.random.key(2, impl="rbg"), x, train=False))
  params, stats = variables["params"], variables["batch_stats"]
  opt = optax.adam(3e-2)
  opt_state = opt.init(params)

  def loss_fn(p, s):
    out, new = model.apply({"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"])
    loss, metrics = task.loss(out, batch, cfg)
    return loss, (new["batch_stats"], metrics)

  @jax.jit
  def step(p, s, o):
    (loss, (s, metrics)), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s)
    updates, o = opt.update(g, o, p)
    return optax.apply_updates(p, updates), s, o, loss, metrics

  start = None
  for _ in range(150):
    params, stats, opt_state, loss, metrics = step(params, stats, opt_state)
    start = float(loss) if start is None else start
  assert float(loss) < 0.2 * start, (start, float(loss))
  assert float(metrics["accuracy"]) == 1.0
  assert set(metrics) == {"ce", "triplet", "accuracy"}
  out = model.apply({"params": params, "batch_stats": stats}, x, train=False)
  feat = task.decode(out, batch, cfg)["feature"]
  np.testing.assert_allclose(np.linalg.norm(feat, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(
      feat, out["feature"] / np.linalg.norm(out["feature"], axis=1, keepdims=True), rtol=1e-6)
