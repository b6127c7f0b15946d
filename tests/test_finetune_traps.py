"""Finetuning on one's own data without traps (issue 15): counts from the prepared data,
schedule durations that follow the run, the backbone's architecture from the weights."""
import glob
import json
import logging
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import humanbench, mini_suite, vitb  # noqa: E402
from path_jax import config_check, optim, train  # noqa: E402
from path_jax import export as export_lib  # noqa: E402

FINETUNE_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "finetune", "[!_]*.py")))


def finetune_config(name, *overrides):
  """``configs/finetune/<name>.py`` as ``python -m path_jax.main`` loads it: locked, with
  ``--config.key=value`` overrides parsed by ml_collections' config flags."""
  from absl import flags
  from ml_collections import config_flags
  fv = flags.FlagValues()
  argv = ["prog", f"--config={ROOT}/configs/finetune/{name}.py",
          *[f"--config.{o}" for o in overrides]]
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  fv(argv)
  return fv.config


# ------------------------------------------------------------------------------------------------
# 1. Counts from the prepared data's metadata.


def _prepared(data_dir, tfds_name, metadata):
  """A prepared dataset as the runs see it: <data_dir>/<builder>/<config>/<version>/ with
  dataset_info.json and the builder's metadata.json."""
  folder = os.path.join(str(data_dir), tfds_name, "1.0.0")
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "dataset_info.json"), "w") as f:
    json.dump({"splits": [{"name": "train"}, {"name": "test"}]}, f)
  with open(os.path.join(folder, "metadata.json"), "w") as f:
    json.dump(metadata, f)
  return os.path.join(folder, "metadata.json")


def test_finetune_configs_leave_counts_to_the_data():
  for path in FINETUNE_FILES:
    name = os.path.basename(path)[:-3]
    d = finetune_config(name).datasets[name]
    field = {"reid": "num_classes", "attributes": "num_attributes", "pose": "num_joints"}.get(
        d.task)
    if field:
      assert d[field] is None, (name, field)
  # A count can still be given on the command line (a placeholder, not a None literal).
  assert finetune_config("market1501", "datasets.market1501.num_classes=1000"
                         ).datasets.market1501.num_classes == 1000


def test_counts_are_filled_from_the_metadata(tmp_path):
  ratios = [0.1, 0.2, 0.3, 0.4, 0.5]
  _prepared(tmp_path, "reid/market1501", {"num_train_ids": 1000})
  _prepared(tmp_path, "attributes/peta_native", {"num_attributes": 5, "positive_ratio": ratios})
  _prepared(tmp_path, "pose/coco", {"num_joints": 14})
  got = {}
  for name in ("market1501", "peta", "coco"):
    cfg = finetune_config(name, f"data_dir={tmp_path}")
    assert train.fill_from_metadata(cfg) == []
    got[name] = cfg.datasets[name]
  assert got["market1501"].num_classes == 1000          # not the paper's 751
  assert got["peta"].num_attributes == 5 and list(got["peta"].positive_ratios) == ratios
  assert got["coco"].num_joints == 14


def test_a_count_that_disagrees_with_the_data_names_key_numbers_and_fix(tmp_path):
  where = _prepared(tmp_path, "reid/market1501", {"num_train_ids": 1000})
  cfg = finetune_config("market1501", f"data_dir={tmp_path}",
                        "datasets.market1501.num_classes=751")
  with pytest.raises(config_check.ConfigError) as e:
    train.fill_from_metadata(cfg)
  msg = str(e.value)
  assert "config.datasets.market1501.num_classes=751" in msg
  assert "1,000 training identities" in msg and where in msg
  assert "set it to 1000" in msg and "--config.datasets.market1501.num_classes=1000" in msg
  # Equal is fine.
  cfg = finetune_config("market1501", f"data_dir={tmp_path}",
                        "datasets.market1501.num_classes=1000")
  train.fill_from_metadata(cfg)
  assert cfg.datasets.market1501.num_classes == 1000


def test_every_disagreement_is_listed_at_once(tmp_path):
  _prepared(tmp_path, "attributes/peta_native", {"num_attributes": 5, "positive_ratio": [0.5] * 5})
  _prepared(tmp_path, "pose/coco", {"num_joints": 14})
  _prepared(tmp_path, "parsing/lip", {"num_classes": 12})
  problems = []
  for name, *overrides in (("peta", "datasets.peta.num_attributes=35"),
                           ("peta", "datasets.peta.positive_ratios=(0.5,0.5)"),
                           ("coco", "datasets.coco.num_joints=17"),
                           ("lip",)):      # the config's (paper's) 20 classes
    cfg = finetune_config(name, f"data_dir={tmp_path}", *overrides)
    with pytest.raises(config_check.ConfigError) as e:
      train.fill_from_metadata(cfg)
    problems += e.value.problems
  assert any("config.datasets.peta.num_attributes=35" in p and "5 attributes" in p
             for p in problems)
  assert any("config.datasets.peta.positive_ratios has 2 entries" in p and "5 attributes" in p
             for p in problems)
  assert any("config.datasets.coco.num_joints=17" in p and "14 joints" in p for p in problems)
  assert any("config.datasets.lip.num_classes=20" in p and "12 classes" in p for p in problems)


def test_placeholders_without_data_and_checks_only_with_metadata(tmp_path):
  """path_jax.compile's path: no prepared data -> shape-only placeholders, listed; a set value
  is not checked without metadata; with metadata a disagreement is refused all the same."""
  empty = tmp_path / "none"
  cfgs = {n: finetune_config(n, f"data_dir={empty}") for n in ("market1501", "peta", "coco")}
  filled = sum((train.fill_from_metadata(c, placeholders=True) for c in cfgs.values()), [])
  assert filled == ["config.datasets.market1501.num_classes",
                    "config.datasets.peta.num_attributes", "config.datasets.peta.positive_ratios",
                    "config.datasets.coco.num_joints"]
  assert cfgs["market1501"].datasets.market1501.num_classes == train.PLACEHOLDER_COUNTS[
      "num_classes"]
  cfg = finetune_config("market1501", f"data_dir={empty}", "datasets.market1501.num_classes=751")
  assert train.fill_from_metadata(cfg, placeholders=True) == []
  assert cfg.datasets.market1501.num_classes == 751
  with pytest.raises(FileNotFoundError, match="reid/market1501"):   # a real run needs the data
    train.fill_from_metadata(finetune_config("market1501", f"data_dir={empty}"))
  _prepared(tmp_path, "reid/market1501", {"num_train_ids": 1000})
  cfg = finetune_config("market1501", f"data_dir={tmp_path}", "datasets.market1501.num_classes=751")
  with pytest.raises(config_check.ConfigError, match="num_classes=751"):
    train.fill_from_metadata(cfg, placeholders=True)


@pytest.fixture(scope="module")
def tiny_reid(tmp_path_factory):
  d = tmp_path_factory.mktemp("mini") / "tfds"
  from data.humanbench_mini import build_all
  build_all.build_all(str(d), size="tiny", only=("mini_dukemtmc",))
  return str(d)


def test_the_program_refuses_a_count_that_disagrees(tiny_reid):
  """train.setup on real (tiny) prepared data: None is filled with the data's identity count,
  a wrong override stops the run before the model is built."""
  with open(glob.glob(os.path.join(tiny_reid, "reid", "dukemtmc", "*", "metadata.json"))[0]) as f:
    ids = json.load(f)["num_train_ids"]
  cfg = mini_suite.get_config("dataset=mini_dukemtmc")
  cfg.data_dir = tiny_reid
  cfg.datasets.mini_dukemtmc.batch_size = 8
  s = train.setup(cfg)
  assert cfg.datasets.mini_dukemtmc.num_classes == ids
  assert {d.name: d.cfg for d in s.model.datasets}["mini_dukemtmc"]["num_classes"] == ids
  cfg = mini_suite.get_config("dataset=mini_dukemtmc")
  cfg.data_dir = tiny_reid
  cfg.datasets.mini_dukemtmc.batch_size = 8
  cfg.datasets.mini_dukemtmc.num_classes = ids + 3
  with pytest.raises(config_check.ConfigError,
                     match=f"mini_dukemtmc.num_classes={ids + 3} but .* has {ids} training"):
    train.setup(cfg)


# ------------------------------------------------------------------------------------------------
# 2. Durations that follow the run.

# The published recipes (REFERENCE.md §6, and each configs/finetune/ file's comment): schedule,
# peak and initial lr, warm-up steps, decay steps and factors, run length.
COCO = dict(kind="step", peak=5e-4, init=1e-7, warmup=1500, bounds=(35_250, 42_300),
            factors=(0.1, 0.1), steps=47_000)
PARSING = dict(kind="warmup_cosine", peak=5e-4, warmup=1500, warmup_factor=0.01)
REID = dict(PARSING, steps=30_000)
DETECTION = dict(kind="cosine", peak=5e-4, init=5e-7, warmup=500, eta_min=5e-7)
RECIPES = {
    "aic": COCO, "coco": COCO, "h36m_pose": COCO,
    "mpii": dict(COCO, warmup=1000, bounds=(5_250, 6_300), steps=7_000),
    "atr": dict(PARSING, steps=22_100), "cihp": dict(PARSING, steps=35_000),
    "lip": dict(PARSING, steps=35_000), "h36m_parsing": dict(PARSING, steps=40_000),
    "market1501": REID, "msmt17": REID, "cuhk03": REID, "sensereid": REID,
    "pa100k": dict(kind="step", peak=1e-3, init=1e-5, warmup=500, bounds=(31_640, 40_077),
                   factors=(0.1, 0.1), steps=42_187),
    "peta": dict(kind="step", peak=1e-3, init=1e-5, warmup=500, bounds=(10_687, 12_825),
                 factors=(0.1, 0.1), steps=14_250),
    "rapv2": dict(kind="step", peak=1e-3, init=1e-5, warmup=500, bounds=(27_867, 33_440),
                  factors=(0.1, 0.1), steps=37_156),
    "crowdhuman": dict(DETECTION, steps=46_875), "caltech": dict(DETECTION, steps=18_697),
    "shanghaitech_a": dict(DETECTION, steps=10_000),
    "shanghaitech_b": dict(DETECTION, steps=10_000),
}
# The paper's pretraining (§5.1) and the authors' B-yaml (REFERENCE.md §4.6).
PAPER = dict(kind="step", peak=5e-4, init=1e-7, warmup=1500, bounds=(40_000, 60_000, 76_000),
             factors=(0.5, 0.5, 0.5), steps=80_000)
AUTHORS = dict(PAPER, peak=1e-3, factors=(0.5, 0.2, 0.1))


def reference_lr(r, t):
  """The recipe's learning rate after ``t`` updates, from its definition (float64)."""
  w, T = r["warmup"], r["steps"]
  if r["kind"] == "step":
    if t < w:
      return r["init"] + t / w * (r["peak"] - r["init"])
    k = sum(1 for b in r["bounds"] if t >= b)
    return r["peak"] * math.prod(r["factors"][:k])
  if r["kind"] == "cosine":
    if t < w:
      return r["init"] + t / w * (r["peak"] - r["init"])
    x = min(t - w, T - w) / (T - w)
    return r["eta_min"] + (r["peak"] - r["eta_min"]) * (1 + math.cos(math.pi * x)) / 2
  warm = r["warmup_factor"] * (1 - t / w) + t / w if t < w else 1.0
  return r["peak"] * warm * (1 + math.cos(math.pi * min(t, T) / T)) / 2


def probe_steps(r):
  w, T = r["warmup"], r["steps"]
  ts = {0, 1, w // 2, w - 1, w, w + 1, T // 2, T - 1, T}
  for b in r.get("bounds", ()):
    ts |= {b - 1, b, b + 1}
  return sorted(ts)


def assert_schedule_is(cfg, r, label):
  d = optim.durations(cfg.optimizer)
  assert (d.total_steps, d.warmup_steps) == (r["steps"], r["warmup"]), label
  assert d.boundaries == tuple(r.get("bounds", ())), label
  sched = optim.make_schedule(cfg.optimizer)
  for t in probe_steps(r):
    assert float(sched(t)) == pytest.approx(reference_lr(r, t), rel=2e-5,
                                            abs=1e-9 * r["peak"]), (label, t)


def test_recipes_at_their_default_length_are_the_published_schedules():
  assert set(RECIPES) == {d.name for d in humanbench.DOWNSTREAM}
  for name, r in RECIPES.items():
    assert_schedule_is(finetune_config(name), r, name)


def test_pretraining_keeps_the_paper_numbers():
  assert_schedule_is(vitb.get_config(), PAPER, "configs/vitb.py")
  assert_schedule_is(vitb.get_config("authors"), AUTHORS, "configs/vitb.py:authors")


def test_mini_configs_warm_up_for_a_tenth_of_their_steps():
  for s in mini_suite.MINI_SETS:
    d = optim.durations(mini_suite.get_config(f"dataset={s.name}").optimizer)
    assert (d.total_steps, d.warmup_steps) == (s.steps, round(s.steps / 10)), s.name
  d = optim.durations(mini_suite.pretrain_config().optimizer)
  assert (d.total_steps, d.warmup_steps) == (mini_suite.PRETRAIN_STEPS,
                                             round(mini_suite.PRETRAIN_STEPS / 10))


def test_setting_only_the_run_length_rescales_every_duration():
  """--config.train.num_steps=250 alone: the schedule spans 250 updates, warms up over the
  recipe's share of them, decays at the recipe's fractions, and reaches its peak (with the
  recipes' fixed 1,500 warm-up steps it peaked at 17 %)."""
  for path in FINETUNE_FILES:
    name = os.path.basename(path)[:-3]
    r = RECIPES[name]
    cfg = finetune_config(name, "train.num_steps=250")
    d = optim.durations(cfg.optimizer)
    assert d.total_steps == 250, name
    assert d.warmup_steps == round(r["warmup"] / r["steps"] * 250), name
    assert d.boundaries == tuple(round(b / r["steps"] * 250) for b in r.get("bounds", ())), name
    sched = optim.make_schedule(cfg.optimizer)
    lrs = np.asarray(jax.vmap(sched)(jnp.arange(250)))
    assert lrs.max() >= 0.95 * r["peak"], (name, lrs.max() / r["peak"])


def test_an_explicit_total_stops_early_inside_a_longer_schedule():
  cfg = finetune_config("coco", "optimizer.schedule.total_steps=4000", "train.num_steps=100")
  assert cfg.train.num_steps == 100
  assert optim.durations(cfg.optimizer).total_steps == 4000
  cfg = finetune_config("coco", "train.num_steps=100", "optimizer.schedule.total_steps=4000")
  assert optim.durations(cfg.optimizer).total_steps == 4000
  cfg = finetune_config("coco", "optimizer.schedule.warmup_steps=20", "train.num_steps=400")
  assert optim.durations(cfg.optimizer).warmup_steps == 20      # steps win over the fraction


def test_a_warm_up_as_long_as_the_run_is_refused():
  cfg = finetune_config("market1501", "optimizer.schedule.warmup_steps=1500",
                        "train.num_steps=250")
  with pytest.raises(ValueError) as e:
    optim.make_schedule(cfg.optimizer)
  msg = str(e.value)
  assert "config.optimizer.schedule.warmup_steps=1500" in msg
  assert "config.optimizer.schedule.total_steps=250" in msg and "below 250" in msg
  assert optim.schedule_problems(cfg.optimizer) == msg.split("\n  ")[1:]
  cfg = finetune_config("market1501", "optimizer.schedule.warmup_steps=250", "train.num_steps=250")
  assert optim.schedule_problems(cfg.optimizer)                  # equal is refused too
  cfg = finetune_config("market1501", "optimizer.schedule.warmup_fraction=1.0")
  assert "warmup_fraction=1" in " ".join(optim.schedule_problems(cfg.optimizer))
  # Explicit decay points at or past the end of the run never apply.
  cfg = finetune_config("coco", "optimizer.schedule.boundaries=(35250,42300)",
                        "train.num_steps=1000")
  problems = optim.schedule_problems(cfg.optimizer)
  assert len(problems) == 1 and "boundaries=(35250, 42300)" in problems[0]
  assert "boundary_fractions" in problems[0]
  # The optimiser itself refuses, before any step.
  with pytest.raises(ValueError, match="boundaries"):
    optim.make_optimizer(cfg.optimizer, {"w": jax.ShapeDtypeStruct((4, 4), jnp.float32)})


def test_an_optimiser_config_alone_takes_the_run_length_as_an_argument():
  o = optim.default_config()
  assert o.schedule.total_steps == 0
  with pytest.raises(ValueError, match="total_steps=0"):
    optim.durations(o)
  d = optim.durations(o, num_steps=8_000)
  assert d == optim.Durations(8_000, round(8_000 * 1_500 / 80_000), (4_000, 6_000, 7_600))


# ------------------------------------------------------------------------------------------------
# 3. The backbone's architecture from the weights.

TINY = dict(variant="mu/16", width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=16,
            pos_grid=(16, 8), cls_token=True, scan=False, drop_path_rate=0.0)


def _backbone_params(arch, seed=0):
  import flax.linen as nn
  import ml_collections
  from path_jax.model import vit as vit_lib
  b = ml_collections.ConfigDict(dict(arch))
  model = vit_lib.from_config(b)
  gh, gw = arch["pos_grid"]
  p = arch.get("patch_size") or vit_lib.variant(arch["variant"])["patch_size"]
  x = jnp.zeros((1, gh * p, gw * p, 3), jnp.float32)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(seed), x)["params"])
  return jax.tree.map(np.array, params), b


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
  params, b = _backbone_params(TINY)
  out = tmp_path_factory.mktemp("export") / "export"
  export_lib.export_backbone(out, params, export_lib.arch_from_config(b), torch_state_dict=True)
  return str(out), params


def test_architecture_is_taken_from_the_export(tiny_export, caplog):
  out, _ = tiny_export
  cfg = finetune_config("market1501", f"finetune.init_from={out}")
  assert cfg.model.backbone.variant == "B/16"
  with caplog.at_level(logging.INFO):
    arch = train.adopt_backbone_arch(cfg)
  want = export_lib.arch_from_config(TINY)
  assert arch == want
  assert export_lib.arch_from_config(cfg.model.backbone) == want
  assert "backbone architecture from" in caplog.text and "width 32" in caplog.text
  # An explicit value equal to the export's is no contradiction; evaluation adopts too.
  cfg = finetune_config("market1501", f"finetune.init_from={out}", "model.backbone.depth=2",
                        "mode=evaluate")
  assert train.adopt_backbone_arch(cfg) == want
  # Pretraining and exports do not load a backbone: nothing is adopted.
  cfg = finetune_config("market1501", f"finetune.init_from={out}", "mode=export")
  assert train.adopt_backbone_arch(cfg) is None and cfg.model.backbone.width is None


def test_a_config_that_contradicts_the_export_names_both(tiny_export):
  out, _ = tiny_export
  cfg = finetune_config("market1501", f"finetune.init_from={out}", "model.backbone.depth=3",
                        "model.backbone.pos_grid=(12,6)")
  with pytest.raises(config_check.ConfigError) as e:
    train.adopt_backbone_arch(cfg)
  msg = str(e.value)
  assert "config.model.backbone.depth=3" in msg and "has depth 2" in msg
  assert "config.model.backbone.pos_grid=[12, 6]" in msg and "pos_grid [16, 8]" in msg
  assert os.path.join(out, "backbone.json") in msg
  cfg = finetune_config("market1501", f"finetune.init_from={out}", "model.backbone.variant=L/16")
  with pytest.raises(config_check.ConfigError,
                     match=r"variant='L/16' \(its width 1024\) but .* has width 32"):
    train.adopt_backbone_arch(cfg)


def test_architecture_from_a_state_dict_by_its_shapes(tmp_path):
  """A generated MAE-layout state dict (.safetensors, .npz, .pth): sizes and grid from its
  shapes; a standard variant's sizes give its head count, other sizes need num_heads."""
  from path_jax.model import convert
  std = dict(variant="mu/16", pos_grid=(4, 4), cls_token=True, scan=False, drop_path_rate=0.0)
  params, _ = _backbone_params(std)
  files = [tmp_path / "mu16.safetensors", tmp_path / "mu16.npz"]
  try:
    import torch  # noqa: F401
    files.append(tmp_path / "mu16.pth")
  except ImportError:
    pass
  for f in files:
    convert.save_state_dict(convert.export_backbone(params), f)
    cfg = finetune_config("market1501", f"finetune.init_from={f}")
    arch = train.adopt_backbone_arch(cfg)
    assert arch == export_lib.arch_from_config(std), f
  # The head count of a state dict is a guess from its sizes: an explicit one is kept.
  cfg = finetune_config("market1501", f"finetune.init_from={files[0]}",
                        "model.backbone.num_heads=4")
  assert train.adopt_backbone_arch(cfg) == dict(export_lib.arch_from_config(std), num_heads=4)
  odd = dict(variant="mu/16", width=48, depth=3, num_heads=4, mlp_dim=96, pos_grid=(4, 4),
             cls_token=True, scan=False, drop_path_rate=0.0)
  params, _ = _backbone_params(odd)
  f = tmp_path / "odd.safetensors"
  convert.save_state_dict(convert.export_backbone(params), f)
  with pytest.raises(config_check.ConfigError, match="num_heads: a state dict stores no head"):
    train.adopt_backbone_arch(finetune_config("market1501", f"finetune.init_from={f}"))
  cfg = finetune_config("market1501", f"finetune.init_from={f}", "model.backbone.num_heads=4")
  arch = train.adopt_backbone_arch(cfg)
  assert {k: arch[k] for k in ("width", "depth", "num_heads", "mlp_dim", "pos_grid")} == dict(
      width=48, depth=3, num_heads=4, mlp_dim=96, pos_grid=[4, 4])
  # An explicit grid is kept (the loader resamples the file's); an explicit width is refused.
  cfg = finetune_config("market1501", f"finetune.init_from={f}", "model.backbone.num_heads=4",
                        "model.backbone.pos_grid=(16,8)")
  assert train.adopt_backbone_arch(cfg)["pos_grid"] == [16, 8]
  cfg = finetune_config("market1501", f"finetune.init_from={f}", "model.backbone.num_heads=4",
                        "model.backbone.width=64")
  with pytest.raises(config_check.ConfigError, match="width=64 but .* has width 48"):
    train.adopt_backbone_arch(cfg)


def test_the_program_builds_and_loads_the_export_architecture(tiny_export, tmp_path):
  """python -m path_jax.main --config=configs/finetune/market1501.py
  --config.finetune.init_from=EXPORT: train.setup builds the export's architecture (no data
  here: shape-only counts, as path_jax.compile does) and the export loads into its state."""
  from path_jax.state import create_train_state
  out, params = tiny_export
  cfg = finetune_config("market1501", f"finetune.init_from={out}",
                        f"data_dir={tmp_path / 'none'}")
  s = train.setup(cfg, check_data=False)
  assert s.model.backbone.width == 32 and s.model.backbone.depth == 2
  state, _ = create_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules, seed=0)
  state = train.load_backbone_into(state, out)
  got = jax.tree.map(np.asarray, state.params["backbone"])
  jax.tree.map(np.testing.assert_array_equal, got, params)
