"""Backbone, projector, PATH composition and PyTorch interop."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from path_jax.model import convert, path, projector, vit
from path_jax.tasks import base

SIZES = [(224, 224), (256, 128), (256, 192), (480, 480)]


@pytest.mark.parametrize("name", list(vit.VARIANTS))
def test_variant_shapes_every_size(name):
  kw = vit.variant(name)
  model = vit.ViT(**kw, cls_token=True)
  p = kw["patch_size"]
  for h, w in SIZES:
    x = jax.ShapeDtypeStruct((2, h, w, 3), jnp.uint8)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert variables["params"]["pos_embed"].value.shape == (14, 14, kw["width"])
    for use_cls in (False, True):
      tokens, out = jax.eval_shape(lambda v, x: model.apply(v, x, use_cls=use_cls), variables, x)
      gh, gw = -(-h // p), -(-w // p)
      assert tokens.shape == (2, gh * gw + use_cls, kw["width"])
      assert out["features"].shape == (kw["depth"] + 1, 2, gh * gw + use_cls, kw["width"])


def test_bicubic_matrix_matches_torch():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  grid = rng.normal(size=(14, 14, 5)).astype(np.float32)
  for out in [(16, 8), (16, 12), (30, 30), (14, 14), (7, 9)]:
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(grid).permute(2, 0, 1)[None], size=out, mode="bicubic",
        align_corners=False)[0].permute(1, 2, 0).numpy()
    ours = np.asarray(vit.resize_pos_embed(jnp.asarray(grid), out))
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_resize_identity_at_224_and_gradients_reach_grid():
  model = vit.ViT(**vit.variant("mu/16"))
  x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3)), jnp.uint8)
  variables = model.init(jax.random.key(0), x)
  pos = nn.unbox(variables["params"]["pos_embed"])
  assert vit.resize_pos_embed(pos, (14, 14)) is pos
  np.testing.assert_array_equal(vit.bicubic_matrix(14, 14), np.eye(14, dtype=np.float32))

  def loss(params, x):
    tokens, _ = model.apply({"params": params}, x)
    return jnp.sum(tokens ** 2)

  for shape in [(2, 224, 224, 3), (2, 256, 128, 3)]:
    xs = jnp.asarray(np.random.default_rng(1).integers(0, 255, shape), jnp.uint8)
    g = jax.grad(loss)(nn.unbox(variables["params"]), xs)
    assert g["pos_embed"].shape == (14, 14, 64)
    assert float(jnp.abs(g["pos_embed"]).sum()) > 0
    assert np.isfinite(np.asarray(g["pos_embed"])).all()


def test_sincos_init_matches_mae_formula():
  emb = vit.sincos_2d(14, 14, 64)
  # MAE: first half encodes h, second half w; each half [sin, cos] over omega = 1/10000^(i/(d/4)).
  d4 = 16
  omega = 1.0 / 10000 ** (np.arange(d4) / d4)
  i, j = 3, 11
  expect = np.concatenate([np.sin(i * omega), np.cos(i * omega), np.sin(j * omega),
                           np.cos(j * omega)])
  np.testing.assert_allclose(emb[i, j], expect, atol=1e-6)


def test_padding_to_patch_multiple_is_zero_in_normalised_space():
  model = vit.ViT(**vit.variant("mu/16"))
  x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (1, 40, 37, 3)), jnp.uint8)
  variables = model.init(jax.random.key(0), x)
  tokens, out = model.apply(variables, x)
  assert out["grid"] == (3, 3)
  # The padded image equals the original plus pixels whose normalised value is 0, i.e. the mean.
  mean = np.asarray(vit.IMAGENET_MEAN, np.float32)
  padded = np.broadcast_to(mean, (1, 48, 48, 3)).copy()
  padded[:, :40, :37] = np.asarray(x, np.float32)
  tokens2, _ = model.apply(variables, jnp.asarray(padded))
  np.testing.assert_allclose(np.asarray(tokens), np.asarray(tokens2), atol=1e-4)


def _random_params(model, x, seed=0, **kw):
  variables = model.init(jax.random.key(seed), x, **kw)
  leaves, tree = jax.tree.flatten(nn.unbox(variables["params"]))
  rng = np.random.default_rng(seed)
  leaves = [jnp.asarray(rng.normal(0, 0.05, l.shape), jnp.float32) for l in leaves]
  return jax.tree.unflatten(tree, leaves)


def test_scan_and_loop_layouts_agree_and_convert():
  kw = dict(vit.variant("mu/16"), cls_token=True)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 64, 48, 3)), jnp.uint8)
  loop = vit.ViT(**kw)
  scanned = vit.ViT(**kw, scan=True, remat=True)
  params = _random_params(loop, x)
  sparams = vit.loop_to_scan(params)
  ref, out_ref = loop.apply({"params": params}, x, use_cls=True)
  got, out_got = scanned.apply({"params": sparams}, x, use_cls=True)
  np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5)
  np.testing.assert_allclose(np.asarray(out_got["features"]), np.asarray(out_ref["features"]),
                             atol=1e-5)
  back = vit.scan_to_loop(sparams, 2)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               back, params)
  # Abstract scanned init matches the converted layout.
  abstract = jax.eval_shape(scanned.init, jax.random.key(0), x)
  jax.tree.map(lambda a, b: None if a.shape == b.shape else pytest.fail(f"{a.shape} {b.shape}"),
               nn.unbox(abstract["params"]), sparams)


def test_drop_path_train_mode_is_stochastic_and_eval_deterministic():
  model = vit.ViT(**vit.variant("mu/16"), drop_path_rate=0.5)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)), jnp.uint8)
  v = model.init(jax.random.key(0), x)
  a, _ = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
  b, _ = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
  c, _ = model.apply(v, x)
  d, _ = model.apply(v, x, train=True, drop_path_rate=0.0, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(np.asarray(a), np.asarray(b))
  np.testing.assert_allclose(np.asarray(c), np.asarray(d), atol=1e-6)


def test_bfloat16_compute_keeps_float32_params():
  model = vit.ViT(**vit.variant("mu/16"), dtype=jnp.bfloat16)
  x = jnp.zeros((1, 32, 32, 3), jnp.uint8)
  v = model.init(jax.random.key(0), x)
  assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(nn.unbox(v["params"])))
  tokens, _ = model.apply(v, x)
  assert tokens.dtype == jnp.bfloat16


def test_logical_axis_names_on_every_parameter():
  model = vit.ViT(**vit.variant("mu/16"), cls_token=True, scan=True)
  v = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.uint8))
  boxed = jax.tree.leaves(v["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert boxed and all(isinstance(b, nn.Partitioned) for b in boxed)
  for b in boxed:
    assert len(b.names) == len(b.value.shape)
  qkv = v["params"]["blocks"]["attn"]["qkv"]["kernel"]
  assert qkv.names == ("layers", "embed", "qkv")


# ------------------------------------------------------------------------------------------------
# Projector.


def test_gate_weights_match_recurrence():
  rng = np.random.default_rng(0)
  alpha = rng.normal(size=5).astype(np.float32)
  z = rng.normal(size=(6, 3)).astype(np.float64)
  mu = 1 / (1 + np.exp(-alpha / 0.1))
  p = z[0]
  for l in range(1, 6):
    p = mu[l - 1] * z[l] + (1 - mu[l - 1]) * p
  w = np.asarray(projector.gate_weights(jnp.asarray(alpha), 0.1), np.float64)
  np.testing.assert_allclose(w @ z, p, rtol=1e-5)
  # alpha = 0 -> mu = 0.5 for every gate.
  w0 = np.asarray(projector.gate_weights(jnp.zeros(3), 0.1))
  np.testing.assert_allclose(w0, [0.125, 0.125, 0.25, 0.5])


@pytest.mark.parametrize("kind", ["paper", "ladder"])
def test_projector_shapes_and_initial_gates(kind):
  feats = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2, 9, 64)), jnp.float32)
  cfg = mlc.ConfigDict({"kind": kind})
  proj = projector.make_projector(cfg, 64, has_cls=True, dtype=jnp.float32, name=None)
  v = proj.init(jax.random.key(0), feats)
  out = proj.apply(v, feats)
  assert out.shape == (2, 9, 64)
  alpha = nn.unbox(v["params"]["gate_alpha"])
  assert np.all(np.asarray(alpha) == 0)
  t = 0.1 if kind == "paper" else 1.0
  np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(alpha / t)), 0.5)
  # Per-layer parameters are stacked along a leading axis (one set per selected layer).
  if kind == "paper":
    assert nn.unbox(v["params"]["layers"]["reduce"]["kernel"]).shape == (2, 64, 8)
  else:
    assert nn.unbox(v["params"]["reduce"]["kernel"]).shape == (2, 64, 8)


def test_ladder_projector_matches_sequential_reference():
  """The scanned ladder equals the loop written out by hand (REFERENCE.md §2.2)."""
  rng = np.random.default_rng(0)
  feats = jnp.asarray(rng.normal(size=(4, 2, 5, 64)), jnp.float32)
  proj = projector.LadderProjector(dim=8, layers="authors")
  v = proj.init(jax.random.key(0), feats)
  params = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.1, a.shape), jnp.float32),
                        nn.unbox(v["params"]))
  out = proj.apply({"params": params}, feats)
  red = params["reduce"]
  r = [feats[i] @ red["kernel"][i] + red["bias"][i] for i in range(3)]
  mu = jax.nn.sigmoid(params["gate_alpha"])
  f = r[0]
  blk = vit.Block(2, 32, ln_eps=1e-5, qkv_bias=False, axis=projector.PROJ_AXIS)
  for i in range(1, 3):
    f = mu[i - 1] * f + (1 - mu[i - 1]) * r[i]
    bp = jax.tree.map(lambda a, i=i: a[i - 1], params["steps"]["block"])
    f, _ = blk.apply({"params": bp}, f)
  ref = f @ params["out"]["kernel"] + params["out"]["bias"]
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)


class _LinearTask(base.Task):
  name = "linear_test"

  def make_head(self, cfg):
    return _LinearHead(cfg.num_classes)

  def loss(self, outputs, batch, cfg):
    return jnp.mean(outputs["logits"] ** 2), {}

  def decode(self, outputs, batch, cfg):
    return {"label": jnp.argmax(outputs["logits"], -1)}


class _LinearClsTask(_LinearTask):
  name = "linear_cls_test"
  uses_cls_token = True


class _LinearHead(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, inputs, train=False):
    feat = inputs.cls if inputs.cls is not None else inputs.feature_map().mean((1, 2))
    return {"logits": nn.Dense(self.num_classes)(feat)}


base.register(_LinearTask())
base.register(_LinearClsTask())


def _path_config(share, kind="paper"):
  cfg = mlc.ConfigDict()
  cfg.model = mlc.ConfigDict({"backbone": {"variant": "mu/16", "cls_token": True},
                              "projector": {"kind": kind, "share": share}})
  cfg.datasets = mlc.ConfigDict({
      "a": {"task": "linear_test", "num_classes": 3},
      "b": {"task": "linear_test", "num_classes": 4},
      "c": {"task": "linear_cls_test", "num_classes": 5},
      "d": {"task": "linear_cls_test", "num_classes": 2},
  })
  return cfg


IMAGES = {"a": (2, 64, 48), "b": (3, 64, 48), "c": (2, 64, 32), "d": (1, 32, 32)}


@pytest.mark.parametrize("share,expected", [("task", 2), ("all", 1), ("dataset", 4)])
def test_path_share_types(share, expected):
  cfg = _path_config(share)
  model = path.from_config(cfg)
  imgs = {k: jnp.zeros(IMAGES[k] + (3,), jnp.uint8) for k in cfg.datasets}
  v = jax.eval_shape(model.init, jax.random.key(0), imgs)
  names = sorted(v["params"])
  assert sum(n.startswith("projector_") for n in names) == expected
  assert sorted(n for n in names if n.startswith("head_")) == [f"head_{k}" for k in
                                                                sorted(cfg.datasets)]
  out = jax.eval_shape(model.apply, v, imgs)
  for k in cfg.datasets:
    assert out[k]["logits"].shape == (IMAGES[k][0], cfg.datasets[k].num_classes)


def test_share_all_one_projector_serves_cls_and_patch_tasks():
  """Table 4 row a: one projector for a mix of cls-token (c, d) and patch-only (a, b) tasks.
  The projector's squeeze-and-excitation skips the cls token of the cls tasks only: the same
  parameters applied to the same features with and without the cls flag differ exactly there."""
  cfg = _path_config("all")
  model = path.from_config(cfg)
  rng = np.random.default_rng(1)
  imgs = {k: jnp.asarray(rng.integers(0, 255, IMAGES[k] + (3,)), jnp.uint8) for k in IMAGES}
  v = model.init(jax.random.key(0), imgs)
  assert [n for n in v["params"] if n.startswith("projector_")] == ["projector_all"]
  out = model.apply(v, imgs)
  grads = jax.grad(lambda p: sum(jnp.sum(o["logits"] ** 2) for o in model.apply(
      {"params": p}, imgs).values()))(v["params"])
  # Both kinds of task train the one projector: gradients from the cls tasks alone and from the
  # patch tasks alone both reach it.
  for subset in (("a", "b"), ("c", "d")):
    g = jax.grad(lambda p: sum(jnp.sum(model.apply({"params": p}, {k: imgs[k] for k in subset})[
        k]["logits"] ** 2) for k in subset))(v["params"])
    assert float(optax_norm(g["projector_all"])) > 0
  assert float(optax_norm(grads["projector_all"])) > 0
  for k in IMAGES:
    assert np.all(np.isfinite(np.asarray(out[k]["logits"])))
  proj = projector.make_projector(cfg.model.projector, 64, False, jnp.float32, name=None)
  feats = jnp.asarray(rng.normal(size=(3, 2, 5, 64)), jnp.float32)
  pv = proj.init(jax.random.key(1), feats)
  with_cls = proj.apply(pv, feats, has_cls=True)
  without = proj.apply(pv, feats, has_cls=False)
  assert not np.allclose(np.asarray(with_cls), np.asarray(without))
  # With the flag, the patch tokens' SE scale is computed without token 0, so every row moves;
  # the parameters are one set either way (no new parameter appears with the flag).
  assert jax.tree.structure(proj.init(jax.random.key(1), feats, has_cls=True)) == \
      jax.tree.structure(pv)


def optax_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize("mode", ["dataset", "size"])
def test_unshared_positional_embeddings(mode):
  """Table 4 row c: one positional embedding per dataset / per input grid, each at its input's
  grid; gradients of one dataset reach only its own; the export folds them into the standard
  shared layout (the chosen one resized to pos_grid) that finetuning loads."""
  cfg = _path_config("task")
  cfg.model.backbone.pos_embed = mode
  model = path.from_config(cfg)
  rng = np.random.default_rng(2)
  imgs = {k: jnp.asarray(rng.integers(0, 255, IMAGES[k] + (3,)), jnp.uint8) for k in IMAGES}
  v = nn.unbox(model.init(jax.random.key(0), imgs))
  bb = v["params"]["backbone"]
  assert "pos_embed" not in bb
  grids = {k: (IMAGES[k][1] // 16, IMAGES[k][2] // 16) for k in IMAGES}
  if mode == "dataset":
    want = {f"pos_embed_{k}": g for k, g in grids.items()}
  else:
    want = {f"pos_embed_{g[0]}x{g[1]}": g for g in grids.values()}
  assert {n: bb[n].shape[:2] for n in vit.keyed_pos_names(bb)} == want
  g = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, {"a": imgs["a"]})["a"]["logits"] ** 2)
               )(v["params"])["backbone"]
  own = "pos_embed_a" if mode == "dataset" else "pos_embed_4x3"
  for n in vit.keyed_pos_names(bb):
    moved = float(jnp.abs(g[n]).sum()) > 0
    assert moved == (n == own or (mode == "size" and bb[n].shape[:2] == bb[own].shape[:2])), n
  # Export: one embedding, the chosen one resized to the shared grid.
  bcfg = cfg.model.backbone
  bcfg.pos_grid = (14, 14)
  exported = path.backbone_params(v["params"], bcfg, list(cfg.datasets))
  assert "pos_embed" in exported and not vit.keyed_pos_names(exported)
  source = "a" if mode == "dataset" else "4x3"    # the first dataset / the grid nearest 14x14
  np.testing.assert_allclose(
      np.asarray(exported["pos_embed"]),
      np.asarray(vit.resize_pos_embed(bb[f"pos_embed_{source}"], (14, 14))), atol=1e-6)
  bcfg.export_pos_from = "c" if mode == "dataset" else "2x2"
  np.testing.assert_allclose(
      np.asarray(path.backbone_params(v["params"], bcfg, list(cfg.datasets))["pos_embed"]),
      np.asarray(vit.resize_pos_embed(bb[f"pos_embed_{bcfg.export_pos_from}"], (14, 14))),
      atol=1e-6)
  # Loading a shared-layout file spreads its embedding over the keyed ones.
  spread = vit.from_shared_pos(exported, bb)
  for n in vit.keyed_pos_names(bb):
    np.testing.assert_allclose(np.asarray(spread[n]), np.asarray(vit.resize_pos_embed(
        jnp.asarray(exported["pos_embed"]), bb[n].shape[:2])), atol=1e-6)
  if mode == "size":   # an evaluation size never trained: the nearest grid's embedding, resized
    out = model.apply(v, {"a": jnp.zeros((1, 80, 48, 3), jnp.uint8)})
    assert out["a"]["logits"].shape == (1, 3)
  else:
    with pytest.raises(ValueError, match="pos_embed"):
      vit.from_config(mlc.ConfigDict({"variant": "mu/16", "pos_embed": "per_task"}))


def test_path_shared_backbone_pass_equals_separate_passes():
  cfg = _path_config("task")
  model = path.from_config(cfg)
  rng = np.random.default_rng(0)
  imgs = {k: jnp.asarray(rng.integers(0, 255, IMAGES[k] + (3,)), jnp.uint8) for k in IMAGES}
  v = model.init(jax.random.key(0), imgs)
  together = model.apply(v, imgs)
  for k in IMAGES:   # each dataset alone: no concatenation with the others
    alone = model.apply(v, {k: imgs[k]})
    np.testing.assert_allclose(np.asarray(alone[k]["logits"]),
                               np.asarray(together[k]["logits"]), atol=1e-5)
  bb = path.backbone_params(v["params"])
  assert "pos_embed" in bb and not any(n.startswith(("head_", "projector_")) for n in bb)


def test_path_without_projector_reads_backbone_tokens():
  cfg = _path_config("task")
  cfg.model.projector.enabled = False
  model = path.from_config(cfg)
  imgs = {"a": jnp.zeros((2, 64, 48, 3), jnp.uint8)}
  v = model.init(jax.random.key(0), imgs)
  assert not any(n.startswith("projector_") for n in v["params"])


# ------------------------------------------------------------------------------------------------
# PyTorch interop.


def _export_roundtrip(cls_token, scan):
  model = vit.ViT(**vit.variant("mu/16"), cls_token=cls_token, scan=scan)
  x = jnp.zeros((1, 32, 32, 3), jnp.uint8)
  params = _random_params(model, x, use_cls=cls_token)
  sd = convert.export_backbone(params)
  template = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  back = convert.import_backbone(sd, template)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               back, jax.tree.map(np.asarray, params))
  return sd


@pytest.mark.parametrize("cls_token", [False, True])
@pytest.mark.parametrize("scan", [False, True])
def test_export_import_roundtrip_exact(cls_token, scan):
  sd = _export_roundtrip(cls_token, scan)
  assert sd["pos_embed"].shape == (1, 196 + cls_token, 64)
  assert sd["blocks.1.attn.qkv.weight"].shape == (192, 64)
  assert sd["patch_embed.proj.weight"].shape == (64, 3, 16, 16)


@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
def test_state_dict_files_without_torch(tmp_path, ext):
  model = vit.ViT(**vit.variant("mu/16"), cls_token=True)
  x = jnp.zeros((1, 32, 32, 3), jnp.uint8)
  params = _random_params(model, x)
  sd = convert.export_backbone(params)
  f = tmp_path / f"w{ext}"
  convert.save_state_dict(sd, f)
  loaded = convert.load_state_dict(f)
  assert sorted(loaded) == sorted(sd)
  back = convert.import_backbone(loaded, params)
  np.testing.assert_array_equal(back["block_1"]["mlp"]["fc2"]["kernel"],
                                np.asarray(params["block_1"]["mlp"]["fc2"]["kernel"]))


def test_import_errors_list_keys():
  model = vit.ViT(**vit.variant("mu/16"))
  x = jnp.zeros((1, 32, 32, 3), jnp.uint8)
  params = _random_params(model, x)
  sd = convert.export_backbone(params)
  template = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  bad = dict(sd)
  del bad["blocks.0.norm1.weight"]
  bad["head.weight"] = np.zeros((10, 64), np.float32)
  bad["blocks.1.mlp.fc1.weight"] = np.zeros((3, 3), np.float32)
  with pytest.raises(convert.ConversionError) as e:
    convert.import_backbone(bad, template)
  msg = str(e.value)
  assert "block_0/norm1/scale" in msg and "head.weight" in msg and "blocks.1.mlp.fc1.weight" in msg
  # strict=False skips the unknown head but still refuses a mis-shaped tensor.
  del bad["blocks.1.mlp.fc1.weight"]
  bad["blocks.1.mlp.fc1.weight"] = sd["blocks.1.mlp.fc1.weight"]
  bad["blocks.0.norm1.weight"] = sd["blocks.0.norm1.weight"]
  out = convert.import_backbone(bad, template, strict=False)
  assert "head" not in out
  # MAE-style extras: a cls token and cls row are dropped for a model without a cls token, and
  # a wrapped, prefixed training checkpoint is unwrapped.
  wrapped = {"model": {"module.backbone_module." + k: v for k, v in sd.items()}}
  wrapped["model"]["module.backbone_module.cls_token"] = np.zeros((1, 1, 64), np.float32)
  pe = wrapped["model"]["module.backbone_module.pos_embed"]
  wrapped["model"]["module.backbone_module.pos_embed"] = np.concatenate(
      [np.zeros((1, 1, 64), np.float32), pe], 1)
  out = convert.import_backbone(wrapped, template)
  np.testing.assert_array_equal(out["pos_embed"], np.asarray(params["pos_embed"]))


def test_import_resamples_a_different_grid():
  torch = pytest.importorskip("torch")
  small = vit.ViT(**vit.variant("mu/16"))
  x = jnp.zeros((1, 32, 32, 3), jnp.uint8)
  params = _random_params(small, x)
  sd = convert.export_backbone(params)
  big = vit.ViT(**vit.variant("mu/16"), pos_grid=(30, 30))
  template = jax.eval_shape(big.init, jax.random.key(0), x)["params"]
  out = convert.import_backbone(sd, template)
  ref = torch.nn.functional.interpolate(
      torch.from_numpy(sd["pos_embed"].reshape(14, 14, 64)).permute(2, 0, 1)[None], size=(30, 30),
      mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
  np.testing.assert_allclose(out["pos_embed"], ref, atol=1e-5)


# An independent PyTorch ViT (timm/MAE style, BB's get_abs_pos + normalisation + round padding).
def _torch_reference(sd, images, depth, heads, use_cls):
  import torch
  import torch.nn.functional as F
  t = {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}
  x = torch.from_numpy(np.asarray(images, np.float32)).permute(0, 3, 1, 2)
  mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
  std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
  x = (x - mean) / std
  ph, pw = (-x.shape[2]) % 16, (-x.shape[3]) % 16
  x = F.pad(x, (0, pw, 0, ph))
  x = F.conv2d(x, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=16)
  b, c, hp, wp = x.shape
  x = x.flatten(2).transpose(1, 2)
  pe = t["pos_embed"]
  has_cls_row = pe.shape[1] == 197
  grid = pe[:, 1:] if has_cls_row else pe
  grid = grid.reshape(1, 14, 14, c).permute(0, 3, 1, 2)
  grid = F.interpolate(grid, size=(hp, wp), mode="bicubic", align_corners=False)
  x = x + grid.permute(0, 2, 3, 1).reshape(1, hp * wp, c)
  if use_cls:
    cls = t["cls_token"] + pe[:, :1]
    x = torch.cat([cls.expand(b, -1, -1), x], dim=1)
  for i in range(depth):
    p = f"blocks.{i}."
    y = F.layer_norm(x, (c,), t[p + "norm1.weight"], t[p + "norm1.bias"], eps=1e-6)
    qkv = F.linear(y, t[p + "attn.qkv.weight"], t[p + "attn.qkv.bias"])
    qkv = qkv.reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)) * (c // heads) ** -0.5
    y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, c)
    x = x + F.linear(y, t[p + "attn.proj.weight"], t[p + "attn.proj.bias"])
    y = F.layer_norm(x, (c,), t[p + "norm2.weight"], t[p + "norm2.bias"], eps=1e-6)
    y = F.linear(F.gelu(F.linear(y, t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"])),
                 t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"])
    x = x + y
  return F.layer_norm(x, (c,), t["norm.weight"], t["norm.bias"], eps=1e-6).numpy()


@pytest.mark.parametrize("use_cls", [False, True])
def test_parity_with_pytorch_reference(use_cls):
  """Random PyTorch-layout weights imported into our ViT give the same tokens (<1e-4)."""
  pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  depth, width, heads = 2, 64, 2
  sd = {"patch_embed.proj.weight": rng.normal(0, 0.02, (width, 3, 16, 16)),
        "patch_embed.proj.bias": rng.normal(0, 0.02, (width,)),
        "pos_embed": rng.normal(0, 0.5, (1, 196 + use_cls, width)),
        "norm.weight": 1 + rng.normal(0, 0.1, (width,)), "norm.bias": rng.normal(0, 0.1, (width,))}
  if use_cls:
    sd["cls_token"] = rng.normal(0, 0.5, (1, 1, width))
  for i in range(depth):
    p = f"blocks.{i}."
    for name, shape in [("norm1", (width,)), ("norm2", (width,))]:
      sd[p + name + ".weight"] = 1 + rng.normal(0, 0.1, shape)
      sd[p + name + ".bias"] = rng.normal(0, 0.1, shape)
    for name, (o, i_) in {"attn.qkv": (3 * width, width), "attn.proj": (width, width),
                          "mlp.fc1": (4 * width, width), "mlp.fc2": (width, 4 * width)}.items():
      sd[p + name + ".weight"] = rng.normal(0, 0.08, (o, i_))
      sd[p + name + ".bias"] = rng.normal(0, 0.05, (o,))
  sd = {k: np.asarray(v, np.float32) for k, v in sd.items()}
  model = vit.ViT(width=width, depth=depth, num_heads=heads, mlp_dim=4 * width,
                  cls_token=use_cls)
  for h, w in [(224, 224), (256, 128)]:
    images = rng.integers(0, 256, (2, h, w, 3)).astype(np.uint8)
    template = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(images))["params"]
    params = convert.import_backbone(sd, template)
    ours, _ = model.apply({"params": params}, jnp.asarray(images), use_cls=use_cls)
    ref = _torch_reference(sd, images, depth, heads, use_cls)
    assert np.max(np.abs(np.asarray(ours) - ref)) < 1e-4, (h, w)


def test_pth_roundtrip(tmp_path):
  pytest.importorskip("torch")
  model = vit.ViT(**vit.variant("mu/16"), cls_token=True)
  x = jnp.zeros((1, 32, 32, 3), jnp.uint8)
  params = _random_params(model, x)
  f = tmp_path / "w.pth"
  convert.save_state_dict(convert.export_backbone(params), f)
  back = convert.import_backbone(convert.load_state_dict(f), params)
  np.testing.assert_array_equal(back["cls_pos_embed"], np.asarray(params["cls_pos_embed"]))


def test_vit_b16_flops_match_the_paper_count():
  """ViT-B/16 at 224x224 is 35.2 GFLOPs forward in the usual count (17.6 GMACs), +-2%."""
  from path_jax.model import flops
  kw = vit.variant("B/16")
  for cls in (False, True):
    f = flops.vit_forward_flops(kw["width"], kw["depth"], kw["mlp_dim"], kw["patch_size"], 224,
                                224, cls_token=cls)
    assert abs(f / 35.2e9 - 1) < 0.02
  # The count follows the token count: 256x128 has 128 tokens instead of 196.
  small = flops.vit_forward_flops(768, 12, 3072, 16, 256, 128)
  assert 0.6 < small / f < 0.7


def test_projector_over_one_layer_has_no_empty_gate():
  feats = jnp.ones((2, 2, 5, 64), jnp.float32)      # a one-block backbone: embeddings + 1 block
  proj = projector.GatedProjector(dim=8)
  v = proj.init(jax.random.key(0), feats)
  assert "gate_alpha" not in v["params"]
  assert all(np.size(l) > 0 for l in jax.tree.leaves(nn.unbox(v["params"])))
  assert proj.apply(v, feats).shape == (2, 5, 64)


def test_gelu_matches_torch_exact_gelu():
  torch = pytest.importorskip("torch")
  x = np.linspace(-12, 12, 20001).astype(np.float32)
  ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(np.asarray(vit.gelu(jnp.asarray(x))), ref, atol=2e-6)
  xt = torch.from_numpy(x).requires_grad_()
  torch.nn.functional.gelu(xt).sum().backward()
  g = jax.grad(lambda v: jnp.sum(vit.gelu(v)))(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(g), xt.grad.numpy(), atol=1e-6)


@pytest.mark.parametrize("scan", [False, True])
def test_remat_policies_same_gradients_and_recompute_what_they_say(scan):
  kw = dict(vit.variant("mu/16"), cls_token=True, drop_path_rate=0.2)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 64, 48, 3)), jnp.uint8)
  base = vit.ViT(**kw, scan=scan)
  params = _random_params(base, x, use_cls=True)

  def grads(model):
    def loss(p):
      tokens, _ = model.apply({"params": p}, x, train=True, use_cls=True,
                              rngs={"dropout": jax.random.key(3)})
      return jnp.sum(jnp.sin(tokens))
    return jax.jit(jax.grad(loss))(params), str(jax.make_jaxpr(jax.grad(loss))(params))

  ref, ref_jaxpr = grads(base)
  dots = {}
  for name in vit.REMAT_POLICIES:
    g, jaxpr = grads(vit.ViT(**kw, scan=scan, remat=True, remat_policy=name))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                         rtol=1e-5, atol=1e-6), g, ref)
    dots[name] = jaxpr.count("dot_general")
  # Recomputed matmuls: full > save_projections (attention core) > save_matmuls (none).
  assert dots["save_matmuls"] == ref_jaxpr.count("dot_general")
  assert dots["full"] > dots["save_projections"] > dots["save_matmuls"]
  with pytest.raises(ValueError, match="remat_policy"):
    vit.ViT(**kw, remat=True, remat_policy="offload").init(jax.random.key(0), x)


def test_projector_runs_equal_per_dataset_calls():
  """Datasets of one backbone pass and one projector group go through their projector in one
  call (one projector instance in the program instead of one per dataset); the outputs equal
  each dataset run on its own (its own pass and projector call, as before)."""
  import step_setup as S
  cfg = S.config()
  model = S.model(cfg)
  batch = S.batch(cfg, batch=4)
  images = {n: jnp.asarray(b["image"]) for n, b in batch.items()}
  variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, images)
  together = jax.jit(lambda v, x: model.apply(v, x))(variables, images)
  for name in ("pose_a", "pose_b"):   # the two pose sets share a pass and the pose projector
    alone = jax.jit(lambda v, x: model.apply(v, x))(variables, {name: images[name]})
    for a, b in zip(jax.tree.leaves(alone[name]), jax.tree.leaves(together[name])):
      np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)


def test_join_and_take_move_no_data_between_devices():
  """Sub-batches are joined shard by shard for a shared backbone pass and taken apart again:
  the round trip is exact and the partitioned program has no collectives."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  from path_jax.parallel import mesh as mesh_lib
  mesh = mesh_lib.make_mesh((4, 2, 1))
  a = jnp.arange(16 * 3, dtype=jnp.float32).reshape(16, 3)
  b = -jnp.arange(24 * 3, dtype=jnp.float32).reshape(24, 3)

  def f(a, b):
    shards = path._batch_shards([a.shape[0], b.shape[0]])
    joined = path._join([a, b], shards)
    return shards, joined, path._take(joined, 0, 16, shards), path._take(joined, 16, 24, shards)

  sharding = NamedSharding(mesh, P(("data", "fsdp")))
  with jax.set_mesh(mesh):
    shards = f(a, b)[0]
    fn = jax.jit(lambda a, b: f(a, b)[1:], in_shardings=(sharding, sharding))
    joined, a2, b2 = fn(a, b)
    text = fn.lower(a, b).compile().as_text()
  assert shards == 8
  np.testing.assert_array_equal(a2, a)
  np.testing.assert_array_equal(b2, b)
  # Device i's shard of the joined batch is shard i of a followed by shard i of b.
  np.testing.assert_array_equal(joined[:5], jnp.concatenate([a[:2], b[:3]]))
  for op in ("collective-permute", "all-gather", "all-to-all", "all-reduce"):
    assert op not in text, op
  assert path._batch_shards([16, 24]) == 1   # no mesh in context: plain concatenation


def test_init_from_a_shared_layout_file_spreads_over_keyed_embeddings(tmp_path):
  """model.init_from (MAE, an export) into a backbone with pos_embed='dataset': every keyed
  embedding is the file's one resized to its grid; the other weights are the file's."""
  import flax
  from path_jax import export as export_lib
  from path_jax import train
  cfg = _path_config("task")
  model_shared = path.from_config(cfg)
  rng = np.random.default_rng(3)
  imgs = {k: jnp.asarray(rng.integers(0, 255, IMAGES[k] + (3,)), jnp.uint8) for k in IMAGES}
  source = nn.unbox(model_shared.init(jax.random.key(5), imgs))["params"]["backbone"]
  arch = export_lib.arch_from_config(cfg.model.backbone)
  export_lib.export_backbone(str(tmp_path / "export"), source, arch, torch_state_dict=False)

  cfg.model.backbone.pos_embed = "dataset"
  keyed = nn.unbox(path.from_config(cfg).init(jax.random.key(0), imgs))["params"]

  @flax.struct.dataclass
  class State:
    params: dict

  loaded = train.load_backbone_into(State(params=keyed), str(tmp_path / "export"),
                                    pos_grid=(14, 14)).params["backbone"]
  for k in IMAGES:
    np.testing.assert_allclose(
        np.asarray(loaded[f"pos_embed_{k}"]),
        np.asarray(vit.resize_pos_embed(source["pos_embed"], keyed["backbone"][
            f"pos_embed_{k}"].shape[:2])), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(loaded["patch_embed"]["kernel"]),
                                np.asarray(source["patch_embed"]["kernel"]))
  assert "pos_embed" not in loaded
