"""Placement 'slices': task groups on their own rows of the mesh (path_jax/parallel/PLACEMENT.md)."""
import re
import types

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

import step_setup as S
from path_jax import optim, step as step_lib, step_slices
from path_jax.input import global_batch
from path_jax.parallel import mesh as mesh_lib, placement as pl, rules as rules_lib
from path_jax.state import create_train_state


# ---- the assignment.


def test_assign_rows_follows_the_weights_and_gives_every_group_a_row():
  # The authors' GPU counts of the ViT-B run: 64 GPUs -> the same split on 64 rows.
  w = {"pose": 13, "parsing": 13, "attributes": 2, "reid": 4, "detection": 32}
  assert pl.assign_rows(w, 64) == w
  rows = pl.assign_rows(w, 8)
  assert sum(rows.values()) == 8 and min(rows.values()) == 1
  assert rows["detection"] == max(rows.values())
  # The largest weight per row is minimal: no move of one row lowers it.
  load = lambda r: max(w[g] / r[g] for g in w)   # noqa: E731
  for a in w:
    for b in w:
      if a != b and rows[a] > 1:
        moved = dict(rows, **{a: rows[a] - 1, b: rows[b] + 1})
        assert load(moved) >= load(rows) - 1e-12
  assert pl.assign_rows(w, 16, {"detection": 4})["detection"] == 4


def test_assign_rows_errors_name_the_fix():
  w = {"pose": 1.0, "reid": 1.0, "detection": 2.0}
  with pytest.raises(ValueError, match="at least one row.*3 groups.*2 rows"):
    pl.assign_rows(w, 2)
  with pytest.raises(ValueError, match="unknown groups \\['nope'\\]"):
    pl.assign_rows(w, 8, {"nope": 2})
  with pytest.raises(ValueError, match="at least one row"):
    pl.assign_rows(w, 8, {"pose": 0})
  with pytest.raises(ValueError, match="at least one row"):
    pl.assign_rows(w, 4, {"pose": 2, "reid": 2})   # nothing left for detection


def test_suggested_rows_on_several_slices_are_even_blocks():
  rows = pl.suggest_rows({"a": 3.0, "b": 5.0}, 8, slices=2)
  assert sum(rows.values()) == 8 and all(v % 4 == 0 for v in rows.values())
  assert pl.suggest_rows({"a": 3.0, "b": 5.0}, 8) == pl.assign_rows({"a": 3.0, "b": 5.0}, 8)


def _vitb(arg=""):
  from configs import vitb
  return vitb.get_config(arg)


def test_default_groups_and_proportions_are_the_authors():
  cfg = _vitb("placement=slices")
  groups = pl.task_groups(cfg.datasets)
  assert {g: len(v) for g, v in groups.items()} == {
      "attributes": 2, "detection": 2, "parsing": 7, "pose": 11, "reid": 3}
  weights, how = pl.group_weights(cfg, None, groups)
  assert how == "gpus"
  assert weights == {"attributes": 2, "detection": 32, "parsing": 13, "pose": 13, "reid": 4}
  cfg.placement.weights = "reid=8"
  weights, how = pl.group_weights(cfg, None, groups)
  assert weights["reid"] == 8 and how == "gpus+config"
  cfg.placement.weights = "nope=1"
  with pytest.raises(ValueError, match="unknown groups \\['nope'\\]"):
    pl.group_weights(cfg, None, groups)
  cfg.placement.weights = "reid"
  with pytest.raises(ValueError, match="group=value"):
    pl.group_weights(cfg, None, groups)
  # A dataset may join another group.
  with cfg.datasets.attr_5set.unlocked():
    cfg.datasets.attr_5set.placement_group = "reid"
  assert "attr_5set" in pl.task_groups(cfg.datasets)["reid"]


def test_flops_proportions_when_a_count_is_missing():
  cfg = S.config()
  for n in cfg.datasets:
    cfg.datasets[n].batch_size = 8
  cfg.placement = mlc.ConfigDict(dict(mode="slices", proportions="auto", weights="", rows="",
                                      round_batches=False))
  model = S.model(cfg)
  groups = pl.task_groups(cfg.datasets)
  weights, how = pl.group_weights(cfg, model, groups)
  assert how == "flops"
  flops = {n: pl.dataset_flops(model, cfg.datasets, n) for n in cfg.datasets}
  assert weights["pose"] == pytest.approx(flops["pose_a"] + flops["pose_b"])
  cfg.placement.proportions = "gpus"
  with pytest.raises(ValueError, match="no 'gpus' count"):
    pl.group_weights(cfg, model, groups)


def test_paper_mixture_keeps_its_batches_within_one_device():
  """The paper's sub-batches (divisor 1) placed on 64..512 rows: each within one device's
  rounding of the authors' (shared placement rounds to multiples of the whole mesh)."""
  from configs import humanbench
  paper = {r.name: r.gpus * r.per_gpu_batch for r in humanbench.PRETRAIN_ROWS}
  for chips in (64, 128, 256, 512):
    cfg = _vitb("placement=slices")
    groups = pl.task_groups(cfg.datasets)
    weights, _ = pl.group_weights(cfg, None, groups)
    rows = pl.assign_rows(weights, chips)
    for g, names in groups.items():
      for n in names:
        assert cfg.datasets[n].batch_size == paper[n]
        b = pl.round_to(paper[n], rows[g])
        assert b % rows[g] == 0 and abs(b - paper[n]) < rows[g], (chips, n, b)


def test_batch_problems_name_the_key_and_the_value():
  cfg = S.config()
  for n in cfg.datasets:
    cfg.datasets[n].batch_size = 8
  cfg.datasets.pose_a.batch_size = 10
  cfg.placement = mlc.ConfigDict(dict(mode="slices", proportions="flops", weights="",
                                      rows="reid=2,attributes=1,pose=4,parsing=1",
                                      round_batches=False))
  mesh = mesh_lib.make_mesh((8, 1, 1))
  placement = pl.make(cfg, mesh, S.model(cfg))
  problems = pl.batch_problems(cfg, placement)
  assert len(problems) == 1
  assert "config.datasets.pose_a.batch_size=10" in problems[0] and "use 12" in problems[0]
  assert not pl.batch_problems(cfg, placement, apply_rounding=True)
  assert cfg.datasets.pose_a.batch_size == 12


def test_host_streams_read_only_the_hosts_own_groups(monkeypatch):
  """2 processes x 4 devices: pose on rows 0-2 (all on process 0), reid on rows 3-7 (row 3 on
  process 0, rows 4-7 on process 1): process 1 never opens pose; reid's batch splits 1:4."""
  from path_jax import train
  dev = lambda p: types.SimpleNamespace(process_index=p)   # noqa: E731
  grid = np.asarray([dev(0), dev(0), dev(0), dev(0), dev(1), dev(1), dev(1), dev(1)],
                    dtype=object).reshape(8, 1, 1)
  groups = (pl.Group("pose", ("pose_a", "pose_b"), (0, 1, 2), 1.0),
            pl.Group("reid", ("reid_a",), (3, 4, 5, 6, 7), 1.0))
  subs = {"pose": types.SimpleNamespace(devices=grid[0:3]),
          "reid": types.SimpleNamespace(devices=grid[3:8])}
  placement = pl.Placement(types.SimpleNamespace(shape={"data": 8, "fsdp": 1}), groups, subs)
  cfg = mlc.ConfigDict({"datasets": {"pose_a": {"batch_size": 6}, "pose_b": {"batch_size": 12},
                                     "reid_a": {"batch_size": 10}}})
  s = types.SimpleNamespace(placement=placement, cfg=cfg)
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  assert train.host_streams(s) == {"pose_a": (0, 1, 6), "pose_b": (0, 1, 12),
                                   "reid_a": (0, 2, 2)}
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert train.host_streams(s) == {"reid_a": (1, 2, 8)}
  # Datasets a host does not read are never opened.
  from path_jax.input import mixture
  assert mixture.inputs_from_config(cfg.datasets, streams={}) == []


# ---- the step.


def _setup(shape, rows):
  cfg = S.config()
  cfg.model.backbone.drop_path_rate = 0.0   # the same draws need the same pass order
  for n in cfg.datasets:
    cfg.datasets[n].batch_size = S.BATCH
  cfg.placement = mlc.ConfigDict(dict(mode="slices", proportions="auto", weights="", rows=rows,
                                      round_batches=False))
  mesh = mesh_lib.make_mesh(shape)
  model = S.model(cfg)
  state, info = create_train_state(model, S.make_tx(cfg), S.image_shapes(cfg), mesh)
  return cfg, mesh, model, state, info


@pytest.mark.parametrize("shape,rows", [
    ((8, 1, 1), "reid=2,attributes=1,pose=4,parsing=1"),   # groups of 1, 2 and 4 rows
    pytest.param((4, 2, 1), "", marks=pytest.mark.slow),  # fsdp inside each row
])
def test_slices_equal_shared(shape, rows):
  cfg, mesh, model, state, info = _setup(shape, rows)
  schedule = optim.make_schedule(cfg.optimizer)
  w = jnp.asarray(S.weights(cfg, model))
  b = S.batch(cfg)
  shared = step_lib.make_train_step(model, info.tx, mesh=mesh, state_shardings=info.shardings,
                                    schedule=schedule, rules=info.rules)
  ref_state, ref_m = shared(jax.tree.map(jnp.copy, state),
                            jax.device_put(b, rules_lib.batch_sharding(mesh)), w, S.rng())
  ref_state, ref_m = jax.device_get((ref_state, ref_m))

  placement = pl.make(cfg, mesh, model)
  assert len(placement.groups) == 4 and len({d.task for d in cfg.datasets.values()}) == 4
  if rows:
    assert {g.name: g.rows for g in placement.groups}["pose"] == 4
  sliced = step_slices.SlicedTrainStep(model, info.tx, placement=placement,
                                       state_shardings=info.shardings, schedule=schedule,
                                       rules=info.rules)

  def batches(seed):
    raw = S.batch(cfg, seed=seed)
    return {n: global_batch.to_global(raw[n], placement.submeshes[placement.group_of(n).name])
            for n in raw}

  new_state, m = sliced(state, batches(0), w, S.rng())
  got_state, got_m = jax.device_get((new_state, m))
  assert set(got_m) == set(ref_m)
  for k in ref_m:
    np.testing.assert_allclose(got_m[k], ref_m[k], rtol=1e-5, atol=1e-6, err_msg=k)
  for (path, a), c in zip(jax.tree_util.tree_leaves_with_path(ref_state.params),
                          jax.tree.leaves(got_state.params)):
    np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-5, err_msg=jax.tree_util.keystr(path))
  for (path, a), c in zip(jax.tree_util.tree_leaves_with_path(ref_state.opt_state),
                          jax.tree.leaves(got_state.opt_state)):
    np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  # The state keeps its shardings (parameters replicated over rows, fsdp inside a row).
  for a, sh in zip(jax.tree.leaves(new_state), jax.tree.leaves(info.shardings)):
    assert a.sharding.is_equivalent_to(sh, a.ndim)
  if shape != (8, 1, 1):
    return
  # New loss weights and new batches: no recompilation of any program.
  w2 = jnp.asarray(np.linspace(2.0, 0.1, len(model.datasets)), jnp.float32)
  state3, m3 = sliced(new_state, batches(1), w2, S.rng())
  assert float(m3["loss_weight/pose_b"]) == pytest.approx(float(w2[3]))
  assert all(f._cache_size() == 1 for f in sliced._group_fns.values())
  assert sliced._update._cache_size() == 1


def test_each_group_program_holds_only_its_own_datasets():
  """The work of a slice is its group's: the group's program computes the losses of its
  datasets only, and its FLOPs are its datasets' (cost analysis on the fake devices)."""
  cfg, mesh, model, state, info = _setup((8, 1, 1), "reid=2,attributes=1,pose=4,parsing=1")
  placement = pl.make(cfg, mesh, model)
  sliced = step_slices.SlicedTrainStep(model, info.tx, placement=placement,
                                       state_shardings=info.shardings, rules=info.rules)
  raw = S.batch(cfg)
  abstract = lambda x, m: jax.ShapeDtypeStruct(   # noqa: E731
      x.shape, x.dtype, sharding=rules_lib.batch_sharding(m))
  batches = {n: jax.tree.map(lambda x, n=n: abstract(
      x, placement.submeshes[placement.group_of(n).name]), raw[n]) for n in raw}
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  w = jax.device_put(jnp.ones((len(model.datasets),), jnp.float32), repl)
  lowered = sliced.lower(state, batches, w, jax.device_put(S.rng(), repl))
  assert set(lowered) == {g.name for g in placement.groups} | {"update"}
  flops = {}
  for g in placement.groups:
    compiled = lowered[g.name].compile()
    text = compiled.as_text()   # op metadata carries the named scopes
    for n in cfg.datasets:
      assert bool(re.search(rf"loss_{n}\b", text)) == (n in g.datasets), (g.name, n)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops[g.name] = float(cost["flops"])   # per device
  # Per device: pose (2 datasets x 8 images over 4 rows) does less than parsing's 8 images on 1.
  analytic = {g.name: sum(pl.dataset_flops(model, cfg.datasets, n) for n in g.datasets) / g.rows
              for g in placement.groups}
  order = sorted(flops, key=flops.get)
  assert order == sorted(analytic, key=analytic.get), (flops, analytic)


def test_config_errors_name_the_key():
  from path_jax import train
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = mesh_lib.make_mesh((8, 1, 1))
  bad = {"backbone": {"w": NamedSharding(mesh, P("data", None))}}
  with pytest.raises(ValueError, match=r"\['backbone'\]\['w'\].*remove 'data'"):
    pl.check_params(bad)
  from configs import demo
  cfg = demo.get_config("pretrain")
  cfg.placement.mode = "slice"
  with pytest.raises(ValueError, match="config.placement.mode='slice'"):
    train.check_config(cfg, mesh, check_data=False)
  cfg.placement.mode = "slices"
  cfg.datasets.mini_coco.batch_size = 0
  with pytest.raises(ValueError, match="config.datasets.mini_coco.batch_size=0"):
    train.check_config(cfg, mesh, check_data=False)
  cfg.placement.proportions = "gpu"
  with pytest.raises(ValueError, match="config.placement.proportions='gpu'"):
    pl.group_weights(cfg, None, pl.task_groups(cfg.datasets))


@pytest.mark.slow
def test_spmd_alternative_matches_shared_on_mean_losses():
  """Alternative (a) (path_jax.parallel.spmd_alternative, measured in PLACEMENT.md): one SPMD
  program with a switch per row gives 'shared''s numbers where every loss is a plain mean over
  the sub-batch (pose; parsing, whose images all have the same number of labelled pixels)."""
  from path_jax.parallel import spmd_alternative
  cfg, mesh, model, state, info = _setup((8, 1, 1), "parsing=2,pose=6")
  for n in ("reid_a", "attr_a"):
    del cfg.datasets[n]
  cfg.datasets.pose_a.batch_size = cfg.datasets.pose_b.batch_size = 24
  model = S.model(cfg)
  state, info = create_train_state(model, S.make_tx(cfg), S.image_shapes(cfg), mesh)
  placement = pl.make(cfg, mesh, model)
  w = jnp.asarray(S.weights(cfg, model))
  raw = S.batch(cfg)
  raw.update({n: S.batch(cfg, batch=24)[n] for n in ("pose_a", "pose_b")})
  shared = step_lib.make_train_step(model, info.tx, mesh=mesh, state_shardings=info.shardings,
                                    rules=info.rules)
  ref_state, ref_m = jax.device_get(shared(jax.tree.map(jnp.copy, state), jax.device_put(
      raw, rules_lib.batch_sharding(mesh)), w, S.rng()))
  sliced = step_slices.SlicedTrainStep(model, info.tx, placement=placement,
                                       state_shardings=info.shardings, rules=info.rules)
  sliced._build(state, None, w, S.rng())
  step = jax.jit(spmd_alternative.make_step(model, info.tx, placement,
                                            metric_keys=sliced.metric_keys))
  with jax.set_mesh(mesh):
    got_state, got_m = jax.device_get(step(state, jax.device_put(
        spmd_alternative.row_batches(raw, placement), rules_lib.batch_sharding(mesh)), w,
        S.rng()))
  for k in ("loss", "loss/pose_a", "loss/pose_b", "loss/parse_a", "grad_norm"):
    np.testing.assert_allclose(got_m[k], ref_m[k], rtol=1e-5, err_msg=k)
  for a, c in zip(jax.tree.leaves(ref_state.params), jax.tree.leaves(got_state.params)):
    np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-5)
