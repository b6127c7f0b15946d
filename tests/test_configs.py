"""Experiment configs: load through config_flags as path_jax.main does, schema, registry, model.

Tiny work only: configs are parsed, models are built abstractly (jax.eval_shape), never run.
"""
from __future__ import annotations

import ast
import glob
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from configs import common, humanbench
from path_jax import tasks as tasks_lib
from path_jax.model import path as path_lib
from path_jax.model import vit
from path_jax.tasks.parsing.decode import flip_permutation as parsing_flip_permutation
from path_jax.tasks.pose.decode import flip_permutation as pose_flip_permutation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE_FILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(
    os.path.join(ROOT, "configs", "finetune", "*.py")) if not p.endswith("__init__.py"))
PRETRAIN_FILES = ["configs/vitb.py", "configs/vitl.py"]
COMMON_FIELDS = {"task", "tfds_name", "split", "eval_split", "data_dir", "batch_size", "weight",
                 "sample_weight", "drop_path_rate", "projector_group", "gpus",
                 "placement_group"}
DOWNSTREAM_FIELDS = {"eval_metric", "eval_tfds_name", "eval_protocol", "eval_data_dir"}
EVAL_METRICS = {"reid": {"map_cmc", "top1"}, "pose": {"coco_ap", "pckh", "epe"},
                "parsing": {"miou", "pacc"}, "attributes": {"ma"},
                "detection": {"ap_mr", "mr_heavy"}, "counting": {"mae_mse"}}


def load(path: str, *overrides: str):
  """The config as ``python -m path_jax.main --config=PATH OVERRIDES`` parses it."""
  argv = ["prog", f"--config={path}", *overrides]
  fv = flags.FlagValues()
  # sys_argv: config_flags finds the override flags in it (main.py's is sys.argv itself).
  config_flags.DEFINE_config_file("config", flag_values=fv, lock_config=True, sys_argv=argv)
  cwd = os.getcwd()
  os.chdir(ROOT)    # config paths are relative to the repository root, as in the README
  try:
    fv(argv)
  finally:
    os.chdir(cwd)
  return fv.config


def builder_configs(builder: str) -> set[str]:
  """Names in ``data/<builder>/builder.py``'s BUILDER_CONFIGS, read without importing TFDS."""
  with open(os.path.join(ROOT, "data", builder, "builder.py")) as f:
    text = f.read()
  body = text[text.index("BUILDER_CONFIGS"):]
  return set(re.findall(r'name="(\w+)"', body)) | set(
      re.findall(r'_(?:uniform|ids_cfg|coco_cfg)\("(\w+)"', body))


def test_config_files_are_the_expected_ones():
  assert len(FINETUNE_FILES) == 19
  assert {os.path.basename(p)[:-3] for p in FINETUNE_FILES} == {
      d.name for d in humanbench.DOWNSTREAM}


@pytest.mark.parametrize("path", PRETRAIN_FILES + FINETUNE_FILES)
def test_loads_locked_with_overrides(path):
  cfg = load(path, "--config.train.num_steps=10")
  assert cfg.is_locked
  assert cfg.train.num_steps == 10
  assert cfg.optimizer.schedule.total_steps == 10      # the schedule follows the run length
  with pytest.raises(AttributeError, match="peak_lr"):
    cfg.optimizer.peak_lrr = 1.0
  assert cfg.mode in common.MODES and cfg.finetune.protocol in common.PROTOCOLS
  for name in cfg.datasets:
    ds = cfg.datasets[name]
    task = tasks_lib.get(ds.task)   # raises for an unknown task
    assert task.name == ds.task
    expected = set(common.task_defaults(ds.task).keys()) | COMMON_FIELDS
    extra = set(ds.keys()) - expected
    assert extra <= DOWNSTREAM_FIELDS, (name, extra)
    assert expected <= set(ds.keys()), (name, expected - set(ds.keys()))
    assert ds.batch_size % 8 == 0 and ds.batch_size > 0, (name, ds.batch_size)
    builder, config_name = ds.tfds_name.split("/")
    assert config_name in builder_configs(builder), ds.tfds_name
    for tfds_name in filter(None, [ds.get("eval_tfds_name", "")]):
      b, n = tfds_name.split("/")
      assert n in builder_configs(b), tfds_name


def test_mistyped_override_names_the_nearest_key():
  with pytest.raises(AttributeError, match='Did you mean "peak_lr"'):
    load("configs/vitb.py", "--config.optimizer.peak_lrr=1")
  with pytest.raises(KeyError, match='Did you mean "pose_coco"'):
    load("configs/vitb.py", "--config.datasets.pose_cocoo.batch_size=8")
  with pytest.raises(flags.IllegalFlagValueError, match="unknown config argument 'scalee'"):
    load("configs/vitb.py:scalee=8")


def test_pretrain_registry_rows():
  cfg = load("configs/vitb.py")
  d = cfg.datasets
  assert len(d) == 25
  counts = {}
  for name in d:
    counts[d[name].task] = counts.get(d[name].task, 0) + 1
  assert counts == {"pose": 11, "parsing": 7, "attributes": 2, "reid": 3, "detection": 2}
  groups = {path_lib.projector_group(n, d[n], cfg.model.projector.share) for n in d}
  assert groups == set(humanbench.PROJECTOR_GROUPS)
  assert d.parsing_modanet.projector_group == "clothes_parsing"
  assert d.parsing_lip.projector_group == "human_parsing"
  assert cfg.train.loss_weights == "authors"
  # Merged rows are builder configs of their own (read from the publishers' folders side by
  # side), prepared into the root data_dir like the single-source rows.
  moved = load("configs/vitb.py", "--config.data_dir=/data/tfds")
  assert moved.datasets.reid_4sets.tfds_name == "reid/reid_4sets_native"
  assert moved.datasets.attr_5set.tfds_name == "attributes/attr_5set_native"
  for n in ("reid_4sets", "attr_5set", "pose_coco"):
    assert moved.datasets[n].data_dir == ""
  shared = {}
  for n in d:
    key = (d[n].tfds_name, d[n].data_dir)
    assert key not in shared, f"{n} and {shared.get(key)} would read the same prepared dataset"
    shared[key] = n


def test_loss_weights_are_the_authors():
  d = load("configs/vitb.py").datasets
  names = list(d)
  weights = np.array([d[n].weight for n in names])
  np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-9)
  per_image = weights / np.array([d[n].sample_weight * d[n].batch_size for n in names])
  np.testing.assert_allclose(per_image, per_image[0], rtol=1e-9)
  # B-yaml loss_weight column (REFERENCE.md §4.2) for rows whose batch is kept exactly.
  authors = {"pose_coco": 3_584_000, "pose_aic": 2_688_000, "pose_posetrack": 1_344_000,
             "pose_mhp": 384_000, "pose_halpe": 128_000, "parsing_cihp": 960,
             "parsing_vip": 320, "attr_rap2_pa100k": 12.8, "reid_4sets": 560,
             "reid_last_prcc_dgmarket": 9.6, "reid_luperson": 384, "det_crowdhuman": 320}
  for n, lw in authors.items():
    np.testing.assert_allclose(d[n].weight / d.pose_coco.weight, lw / 3_584_000, rtol=1e-9)


def test_scale_and_divisor():
  full = load("configs/vitb.py").datasets
  small = load("configs/vitb.py:scale=8,divisor=16").datasets
  for n in full:
    b = small[n].batch_size
    assert b % 16 == 0 and b >= 16
    row = next(r for r in humanbench.PRETRAIN_ROWS if r.name == n)
    assert abs(b - max(16, row.gpus * row.per_gpu_batch / 8)) <= 8, (n, b)
  assert humanbench.scaled_batch(448, 8, 8) == 56
  assert humanbench.scaled_batch(36, 1, 8) == 40       # half-up
  with pytest.raises(ValueError, match="scale"):
    humanbench.scaled_batch(8, 0, 8)


def test_flip_pairs_and_attribute_ratios():
  # H3.6M parsing pairs: the builder's source pairs through its label list (read as literals).
  tree = ast.parse(open(os.path.join(ROOT, "data", "parsing", "builder.py")).read())
  consts = {t.id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
            and t.id in ("_H36M_LABELS", "_H36M_SOURCE_PAIRS")}
  index = {s: i for i, s in enumerate(consts["_H36M_LABELS"])}
  assert humanbench.H36M_PARSING_FLIP_PAIRS == tuple(
      (index[a], index[b]) for a, b in consts["_H36M_SOURCE_PAIRS"])
  cfg = load("configs/vitb.py:authors")
  for n in cfg.datasets:
    ds = cfg.datasets[n]
    if ds.task == "pose":
      pose_flip_permutation(ds.num_joints, ds.flip_pairs)     # raises on a bad pair
      assert max(ds.upper_body_ids) < ds.num_joints
    if ds.task == "parsing":
      parsing_flip_permutation(ds.num_classes, ds.flip_pairs)
  # Authors' ratio vectors: blocks per source as the B-yaml comment says (14+43+44+23+30).
  blocks = {k: [len(b) for _, b in v] for k, v in humanbench.AUTHORS_POSITIVE_RATIOS.items()}
  assert blocks == {"attr_rap2_pa100k": [54, 26], "attr_5set": [14, 43, 44, 23, 30]}
  for name in blocks:
    ratios = np.array(cfg.datasets[name].positive_ratios)
    assert ratios.shape == (cfg.datasets[name].num_attributes,)
    assert ((ratios >= 0) & (ratios <= 1)).all()
  assert load("configs/vitb.py").datasets.attr_5set.positive_ratios is None


def _abstract_params(cfg, names=None, batch=1):
  """Parameter shapes of the PATH model of ``cfg`` (datasets ``names``), by eval_shape."""
  if names is not None:
    cfg = cfg.copy_and_resolve_references()
    with cfg.unlocked():
      for n in list(cfg.datasets):
        if n not in names:
          del cfg.datasets[n]
  model = path_lib.from_config(cfg)
  images = {n: jax.ShapeDtypeStruct((batch, *cfg.datasets[n].image_size, 3), jnp.uint8)
            for n in cfg.datasets}
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0, impl="rbg"), x), images)
  return nn.unbox(variables["params"])


def test_vitb_model_builds():
  cfg = load("configs/vitb.py")
  params = _abstract_params(cfg)
  heads = {k for k in params if k.startswith("head_")}
  assert heads == {f"head_{n}" for n in cfg.datasets}
  projectors = {k for k in params if k.startswith("projector_")}
  assert projectors == {f"projector_{g}" for g in humanbench.PROJECTOR_GROUPS}
  assert set(params) == heads | projectors | {"backbone"}
  pos = params["backbone"]["pos_embed"].shape     # one shared 14x14 grid (224 / 16)
  assert pos[-1] == 768 and int(np.prod(pos[:-1])) == 14 * 14


def _kernel_shapes(tree):
  return [leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
          if "kernel" in jax.tree_util.keystr(path)]


def test_vitl_widths_are_consistent():
  cfg = load("configs/vitl.py")
  assert cfg.optimizer.clip_threshold == 1.0 and cfg.optimizer.pos_embed_multiplier == 2.0
  assert cfg.datasets.pose_coco.batch_size == 448 and cfg.datasets.det_crowdhuman.batch_size == 32
  # One dataset per projector group keeps the abstract build small.
  names = ["pose_coco", "parsing_lip", "parsing_modanet", "attr_5set", "reid_luperson",
           "det_crowdhuman"]
  params = _abstract_params(cfg, names)
  backbone = params["backbone"]
  blocks = [k for k in backbone if k.startswith("block_")]
  assert len(blocks) == 24 or backbone["blocks"]["attn"]["qkv"]["kernel"].shape[0] == 24
  assert backbone["pos_embed"].shape[-1] == 1024
  everything = _kernel_shapes(params)
  assert not any(768 in s for s in everything), "a ViT-B width survived in the ViT-L model"
  for group in humanbench.PROJECTOR_GROUPS:
    shapes = _kernel_shapes(params[f"projector_{group}"])
    assert any(s[-2:] == (1024, 128) for s in shapes) and any(
        s[-2:] == (128, 1024) for s in shapes), group
  for n in names:
    first = _kernel_shapes(params[f"head_{n}"])
    assert any(1024 in s for s in first), n


@pytest.mark.parametrize("path", FINETUNE_FILES)
def test_finetune_config(path):
  name = os.path.basename(path)[:-3]
  cfg = load(path, "--config.finetune.protocol=partial", "--config.model.backbone.variant=mu/16")
  assert cfg.mode == "finetune" and cfg.finetune.protocol == "partial"
  assert list(cfg.datasets) == [name]
  ds = cfg.datasets[name]
  assert not cfg.model.projector.enabled
  assert ds.eval_split and ds.eval_metric in EVAL_METRICS[ds.task]
  if ds.task == "detection":
    assert ds.eval_protocol in ("crowdhuman", "caltech_heavy")
  assert cfg.optimizer.name == "adafactor"
  assert 0 < cfg.optimizer.peak_lr <= 1e-3
  from path_jax import train
  train.fill_from_metadata(cfg, placeholders=True)   # counts come from the data
  params = _abstract_params(cfg)
  assert set(params) == {"backbone", f"head_{name}"}
  assert load(path).finetune.protocol == "full"


def test_finetune_protocol_argument():
  full = load("configs/finetune/pa100k.py")
  head = load("configs/finetune/pa100k.py:protocol=head")
  assert head.finetune.protocol == "head"
  assert head.optimizer.peak_lr > full.optimizer.peak_lr and head.optimizer.weight_decay == 0
  partial = load("configs/finetune/crowdhuman.py:protocol=partial")
  assert partial.finetune.open_last == 8 and partial.optimizer.weight_decay == 0
  with pytest.raises(flags.IllegalFlagValueError, match="protocol"):
    load("configs/finetune/pa100k.py:protocol=linear")


def test_parse_arg():
  defaults = dict(scale=1.0, authors=False, share="task")
  assert humanbench.parse_arg("scale=4,authors", defaults) == dict(
      scale=4.0, authors=True, share="task")
  assert humanbench.parse_arg(None, defaults) == defaults
  with pytest.raises(ValueError, match="valid"):
    humanbench.parse_arg("scael=2", defaults)
  with pytest.raises(ValueError, match="needs a value"):
    humanbench.parse_arg("scale", defaults)


@pytest.mark.parametrize("arg", ["share=all", "share=dataset", "pos=dataset", "noproj"])
def test_vitb_table4_variants_build_on_the_full_mixture(arg):
  """Every Table 4 variant initialises on the whole HumanBench mix (ReID's cls token with pose,
  parsing, attributes, detection): one projector for all (a), one per dataset (b), one
  positional embedding per dataset (c), and the multi-task baseline without projector."""
  cfg = load(f"configs/vitb.py:{arg}")
  params = _abstract_params(cfg)
  projectors = sorted(k for k in params if k.startswith("projector_"))
  bb = params["backbone"]
  if arg == "share=all":
    assert projectors == ["projector_all"]
  elif arg == "share=dataset":
    assert projectors == sorted(f"projector_{n}" for n in cfg.datasets)
  elif arg == "noproj":
    assert projectors == []
  if arg == "pos=dataset":
    assert "pos_embed" not in bb
    assert vit.keyed_pos_names(bb) == sorted(f"pos_embed_{n}" for n in cfg.datasets)
    for n in cfg.datasets:   # each at its dataset's own patch grid
      assert bb[f"pos_embed_{n}"].shape[:2] == tuple(s // 16 for s in cfg.datasets[n].image_size)
  else:
    assert bb["pos_embed"].shape[:2] == (14, 14)
