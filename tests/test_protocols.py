"""Finetuning protocols through the training program, and the released-PATH checkpoint import.

Every run here is ``path_jax.train.run`` (what ``python -m path_jax.main`` calls) on the tiny
humanbench_mini data, and every check reads the orbax checkpoint the program wrote:

* protocol ``head`` leaves every backbone leaf bit-identical to the exported backbone it started
  from, and trains the heads; ``partial`` changes exactly the last N blocks (every leaf of them)
  and the final norm; ``full`` changes every leaf. Frozen leaves hold no optimiser state. Looped
  (``block_i``) and scanned (``blocks``, one stacked array per leaf) backbones.
* a fake released PATH checkpoint (``.pth`` written by torch in the authors' layouts,
  REFERENCE.md §1.5 and §8) initialises a finetuning run that trains and evaluates, and the
  backbone it starts from is the file's tensors after the documented conversion.

The exported backbone is a random ViT with every leaf perturbed, so that no leaf equals a fresh
initialisation: a frozen leaf equal to the export proves both the load and the freeze.
"""
import collections
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

DEPTH = 4        # the demo backbone's depth: partial N=1 and N=2 leave 3 and 2 blocks frozen
STEPS = 2


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory):
  d = tmp_path_factory.mktemp("mini") / "tfds"
  from data.humanbench_mini import build_all
  build_all.build_all(str(d), size="tiny")
  return str(d)


def _finetune_config(data_dir, *, protocol="partial", open_last=2, scan=False, init_from="",
                     width=32):
  """The demo finetune config, cut down: the ReID set alone (its head reads the cls token, so
  every backbone leaf gets a gradient), a narrow backbone of the demo's depth, a constant
  learning rate (no zero-lr warm-up step), one checkpoint at the end."""
  from configs import demo
  cfg = demo.get_config("finetune")
  cfg.data_dir = data_dir
  del cfg.datasets["mini_peta"]
  cfg.datasets.mini_dukemtmc.batch_size = 8       # P x K = 2 x 4 of the tiny data's identities
  cfg.datasets.mini_dukemtmc.eval_split = ""      # parameters are compared, not evaluated
  cfg.evaluate.pictures = 0
  assert cfg.model.backbone.depth == DEPTH
  cfg.model.backbone.update(width=width, num_heads=2, mlp_dim=2 * width, scan=scan)
  cfg.finetune.protocol = protocol
  cfg.finetune.open_last = open_last
  cfg.finetune.init_from = init_from
  cfg.train.num_steps = STEPS
  cfg.train.log_every = 1
  cfg.train.checkpoint_every = STEPS
  cfg.optimizer.schedule.name = "constant"
  return cfg


def _random_backbone(cfg, seed):
  """Random backbone params for ``cfg.model.backbone`` (numpy, unboxed), every leaf perturbed."""
  import flax.linen as nn
  from path_jax.model import vit as vit_lib
  model = vit_lib.from_config(cfg.model.backbone)
  x = jnp.zeros((1, 128, 64, 3), jnp.uint8)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(seed), x)["params"])
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [np.asarray(v + 0.05 * jax.random.normal(k, v.shape, v.dtype))
            for v, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, leaves)


@pytest.fixture(scope="module")
def exported(mini_data, tmp_path_factory):
  """A looped backbone export (orbax + backbone.json) of the demo architecture, and its params."""
  from path_jax import export as export_lib
  cfg = _finetune_config(mini_data)
  params = _random_backbone(cfg, seed=7)
  out = tmp_path_factory.mktemp("export") / "export"
  export_lib.export_backbone(out, params, export_lib.arch_from_config(cfg.model.backbone),
                             torch_state_dict=False)
  return str(out), params


def _restore(workdir, cfg):
  """The newest checkpoint of ``workdir`` (host arrays), restored as the program restores it."""
  from path_jax import checkpoint as ckpt_lib
  from path_jax import train
  from path_jax.state import abstract_train_state
  s = train.setup(cfg)
  abstract, _ = abstract_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules)
  with ckpt_lib.Checkpointer(workdir, save_every=1, keep=10) as c:
    state, _ = c.restore(abstract)
  return jax.device_get(state)


_INIT_PARAMS = {}


def _initial_params(cfg):
  """The parameters a fresh run with ``cfg`` initialises (before any backbone load); cached
  per layout, since the protocol does not change the initialisation."""
  key = bool(cfg.model.backbone.scan)
  if key not in _INIT_PARAMS:
    from path_jax import train
    from path_jax.state import create_train_state
    s = train.setup(cfg)
    init, _ = create_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules,
                                 seed=cfg.seed)
    _INIT_PARAMS[key] = jax.device_get(init.params)
  return _INIT_PARAMS[key]


def _flat(tree):
  """``{'a/b/c': leaf}`` over the dict keys of a tree's paths."""
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _layer_open(path, protocol, open_last, depth=DEPTH):
  """The trainable layers of backbone leaf ``path`` (relative to the backbone): a bool per
  stacked layer for scanned ``blocks/`` leaves, else one bool."""
  name = path.split("/")[0]
  if protocol == "full":
    return True
  if protocol == "head":
    return False
  if name == "norm":
    return True
  if name.startswith("block_"):
    return int(name[len("block_"):]) >= depth - open_last
  if name == "blocks":
    return np.arange(depth) >= depth - open_last
  return False


def _check_backbone(final, start, protocol, open_last):
  """Leaf by leaf (and layer by layer for stacked leaves): trainable ones all changed, frozen
  ones bit-identical. Returns the number of changed and unchanged (leaf, layer) pairs."""
  changed, same = [], []
  final, start = _flat(final), _flat(start)
  assert sorted(final) == sorted(start)
  for path, a in final.items():
    b = start[path]
    assert a.shape == b.shape and a.dtype == b.dtype, path
    want = _layer_open(path, protocol, open_last)
    if np.ndim(want):                       # stacked layers: judge each slice
      pieces = [(f"{path}[{i}]", a[i], b[i], bool(w)) for i, w in enumerate(want)]
    else:
      pieces = [(path, a, b, bool(want))]
    for name, x, y, open_ in pieces:
      if open_:
        assert not np.array_equal(x, y), f"{protocol}: trainable {name} did not change"
        changed.append(name)
      else:
        assert np.array_equal(x, y), (f"{protocol}: frozen {name} changed by up to "
                                      f"{np.max(np.abs(x - y))}")
        same.append(name)
  return changed, same


def _opt_state_params(opt_state, top_keys):
  """Parameter paths (``backbone/block_3/attn/qkv/kernel``) of every optimiser-state array
  stored per parameter (moments, factored statistics). A state path such as
  ``.inner_states['train'].inner_state[3].ema['backbone']['block_3']...`` names its parameter
  from the first dict key that is a top-level parameter key on."""
  out = set()
  for path, _ in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
    keys = [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]
    for i, k in enumerate(keys):
      if k in top_keys:
        out.add("/".join(keys[i:]))
        break
  return out


def _check_opt_state(state, protocol, open_last):
  """Optimiser state: none for a fully frozen leaf, some for every leaf that trains (heads and
  open backbone leaves); a partially open scanned stack holds state for its open layers only."""
  with_state = _opt_state_params(state.opt_state, set(state.params))
  if protocol == "partial":
    for path, x in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]:
      keys = [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]
      if "blocks" in keys and np.ndim(x):
        assert np.shape(x)[0] == open_last, (keys, np.shape(x))
  others = {p for p in _flat(state.params) if not p.startswith("backbone/")}
  assert {p for p in with_state if not p.startswith("backbone/")} == others
  with_state = {p.split("/", 1)[1] for p in with_state if p.startswith("backbone/")}
  for path in _flat(state.params["backbone"]):
    open_ = bool(np.any(_layer_open(path, protocol, open_last)))
    assert (path in with_state) == open_, (f"{protocol} N={open_last}: {path} "
                                           f"{'lacks' if open_ else 'holds'} optimiser state")


@pytest.mark.slow
@pytest.mark.parametrize("scan,protocol,open_last", [
    (False, "head", 2), (False, "partial", 2), (False, "full", 2), (True, "partial", 1)])
def test_protocol_trains_exactly_the_open_leaves(mini_data, exported, tmp_path, scan, protocol,
                                                 open_last):
  """train.run finetuning from the export under each protocol; the final checkpoint's backbone
  against the export leaf by leaf (slice by slice for scanned stacks), heads against their
  initialisation, and the optimiser state of frozen leaves."""
  from path_jax import train
  export_dir, start = exported
  cfg = _finetune_config(mini_data, protocol=protocol, open_last=open_last, scan=scan,
                         init_from=export_dir)
  result = train.run(cfg, str(tmp_path / "ft"))
  assert result["step"] == STEPS and not result["preempted"]
  cfg = _finetune_config(mini_data, protocol=protocol, open_last=open_last, scan=scan,
                         init_from=export_dir)
  state = _restore(str(tmp_path / "ft"), cfg)
  assert int(state.step) == STEPS
  if scan:
    from path_jax.model import vit as vit_lib
    start = jax.tree.map(np.asarray, vit_lib.loop_to_scan(start))
    assert "blocks" in state.params["backbone"]
  changed, same = _check_backbone(state.params["backbone"], start, protocol, open_last)
  # The heads always train.
  heads = {k: v for k, v in _flat(state.params).items() if not k.startswith("backbone/")}
  heads0 = {k: v for k, v in _flat(_initial_params(cfg)).items()
            if not k.startswith("backbone/")}
  assert heads and sorted(heads) == sorted(heads0)
  assert all(not np.array_equal(heads[k], heads0[k]) for k in heads), [
      k for k in heads if np.array_equal(heads[k], heads0[k])]
  _check_opt_state(state, protocol, open_last)
  print(f"{protocol} N={open_last} scan={scan}: {len(changed)} changed, {len(same)} identical")


def test_partial_open_last_beyond_the_depth_names_the_field(tmp_path):
  from configs import demo
  from path_jax import train
  from path_jax.parallel import mesh as mesh_lib
  cfg = demo.get_config("finetune")
  cfg.data_dir = str(tmp_path / "nothing")
  cfg.finetune.open_last = DEPTH + 1
  train.apply_protocol(cfg)
  with pytest.raises(ValueError, match=r"config.finetune.open_last=5.*0\.\.4"):
    train.check_config(cfg, mesh_lib.from_config(cfg.mesh))
  cfg.finetune.open_last = DEPTH        # every block open: allowed
  with pytest.raises(ValueError, match="nothing"):      # the missing data comes next
    train.check_config(cfg, mesh_lib.from_config(cfg.mesh))


# ------------------------------------------------------------------------------------------------
# The authors' PyTorch checkpoints (REFERENCE.md §1.5, §8), faked with random values.


def _released_tensors(width, depth, grid, seed, *, cls_row):
  """The MAE-keyed backbone tensors of a PATH checkpoint, in the authors' order and shapes:
  ``cls_token (1,1,C)``, ``pos_embed (1,[1+]gh*gw,C)``, ``patch_embed.proj.weight (C,3,16,16)``,
  ``blocks.i.*`` (torch Linear ``[out, in]``), ``norm.*``; float32 as the authors trained."""
  rng = np.random.default_rng(seed)
  t = collections.OrderedDict()

  def r(*shape):
    return rng.normal(0.0, 0.5, shape).astype(np.float32)

  t["cls_token"] = r(1, 1, width)
  t["pos_embed"] = r(1, (1 if cls_row else 0) + grid[0] * grid[1], width)
  t["patch_embed.proj.weight"] = r(width, 3, 16, 16)
  t["patch_embed.proj.bias"] = r(width)
  mlp = 4 * width                       # the demo's mlp_dim, as ViT-B's 3072 = 4 x 768
  for i in range(depth):
    p = f"blocks.{i}."
    for name, shape in (("norm1.weight", (width,)), ("norm1.bias", (width,)),
                        ("attn.qkv.weight", (3 * width, width)), ("attn.qkv.bias", (3 * width,)),
                        ("attn.proj.weight", (width, width)), ("attn.proj.bias", (width,)),
                        ("norm2.weight", (width,)), ("norm2.bias", (width,)),
                        ("mlp.fc1.weight", (mlp, width)), ("mlp.fc1.bias", (mlp,)),
                        ("mlp.fc2.weight", (width, mlp)), ("mlp.fc2.bias", (width,))):
      t[p + name] = r(*shape)
  t["norm.weight"] = r(width)
  t["norm.bias"] = r(width)
  return t


def _write_released(path, width, depth, grid, seed):
  """The released ``with_cls_token`` file (ckpt_trans_with_cls_token.py): ``{'model': sd}``
  with MAE key names, ``pos_embed = cat(cls_token_pos_embed, pos_embed)`` of 1+gh*gw rows,
  projectors and heads dropped. Returns the numpy tensors."""
  import torch
  t = _released_tensors(width, depth, grid, seed, cls_row=True)
  torch.save({"model": collections.OrderedDict((k, torch.from_numpy(v)) for k, v in t.items())},
             path)
  return t


def _write_training_checkpoint(path, width, depth, grid, seed):
  """An authors' training checkpoint of the ReID task (``ckpt_task20_iter_newest.pth.tar``):
  ``{'step', 'state_dict', 'optimizer'}``, keys under ``module.backbone_module.`` (share-pos
  layout: ``pos_embed`` of gh*gw rows and a separate ``cls_token_pos_embed``), plus the
  projector (``module.neck_module.``) and head (``module.decoder_module.``, with BatchNorm
  buffers) that an import must skip. Returns the backbone's numpy tensors."""
  import torch
  t = _released_tensors(width, depth, grid, seed, cls_row=False)
  t["cls_token_pos_embed"] = np.random.default_rng(seed + 1).normal(
      0.0, 0.5, (1, 1, width)).astype(np.float32)
  sd = collections.OrderedDict(
      ("module.backbone_module." + k, torch.from_numpy(v)) for k, v in t.items())
  red = width // 8
  for i in range(depth + 1):
    sd[f"module.neck_module.reduction_layers.{i}.weight"] = torch.randn(red, width)
    sd[f"module.neck_module.reduction_layers.{i}.bias"] = torch.zeros(red)
  for i in range(depth):
    sd[f"module.neck_module.side_gate_params.{i}"] = torch.zeros(1)
  sd["module.neck_module.last_proj.weight"] = torch.randn(width, red)
  sd["module.decoder_module.feat_bn.weight"] = torch.ones(width)
  sd["module.decoder_module.feat_bn.bias"] = torch.zeros(width)
  sd["module.decoder_module.feat_bn.running_mean"] = torch.zeros(width)
  sd["module.decoder_module.feat_bn.running_var"] = torch.ones(width)
  sd["module.decoder_module.feat_bn.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
  sd["module.decoder_module.classifier.weight"] = torch.randn(3261, width) * 1e-3
  optimizer = {"state": {0: {"exp_avg_sq_row": torch.ones(3 * width)}},
               "param_groups": [{"lr": 1e-3, "weight_decay": 0.05, "params": [0]}]}
  torch.save({"step": 80000, "state_dict": sd, "optimizer": optimizer}, path)
  return t


def _converted(t, width):
  """Our backbone leaves from the authors' tensors, by hand (independent of convert.py):
  ``[out, in]`` Linear weights transposed, the conv weight to ``[kh, kw, 3, C]``, the
  ``pos_embed`` cls row (or ``cls_token_pos_embed``) as ``cls_pos_embed``, the grid as
  ``[gh, gw, C]`` (same grid: no resampling)."""
  pe = t["pos_embed"][0]
  side = int(round(np.sqrt(pe.shape[0])))
  if "cls_token_pos_embed" in t:
    cls_pos, grid = t["cls_token_pos_embed"].reshape(width), pe
  elif side * side == pe.shape[0]:       # wo_cls_token: no cls position in the file
    cls_pos, grid = None, pe
  else:
    cls_pos, grid = pe[0], pe[1:]
  side = int(round(np.sqrt(grid.shape[0])))
  out = {"cls_token": t["cls_token"].reshape(width), "cls_pos_embed": cls_pos,
         "pos_embed": grid.reshape(side, side, width),
         "patch_embed/kernel": t["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
         "patch_embed/bias": t["patch_embed.proj.bias"],
         "norm/scale": t["norm.weight"], "norm/bias": t["norm.bias"]}
  i = 0
  while f"blocks.{i}.norm1.weight" in t:
    p, q = f"blocks.{i}.", f"block_{i}/"
    out[q + "norm1/scale"], out[q + "norm1/bias"] = t[p + "norm1.weight"], t[p + "norm1.bias"]
    out[q + "norm2/scale"], out[q + "norm2/bias"] = t[p + "norm2.weight"], t[p + "norm2.bias"]
    for mod in ("attn/qkv", "attn/proj", "mlp/fc1", "mlp/fc2"):
      tk = p + mod.replace("/", ".")
      out[q + mod + "/kernel"] = t[tk + ".weight"].T
      out[q + mod + "/bias"] = t[tk + ".bias"]
    i += 1
  return out


def _run_main(args):
  """``python -m path_jax.main ARGS``, the command line itself (8 fake CPU devices, as here)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  r = subprocess.run([sys.executable, "-m", "path_jax.main", *args], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-5000:]
  return r


def test_training_checkpoint_loads_into_the_finetune_state(mini_data, tmp_path):
  """An authors' training checkpoint (prefixed keys, projector, head, optimizer) loads into the
  demo finetune state through the program's loader: every backbone leaf is the converted tensor,
  on the state's sharding; the other entries are skipped, or refused with strict=True."""
  pytest.importorskip("torch")
  from configs import demo
  from path_jax import train
  from path_jax.model import convert
  from path_jax.state import create_train_state
  f = tmp_path / "ckpt_task20_iter_newest.pth.tar"
  t = _write_training_checkpoint(f, demo.BACKBONE["width"], demo.BACKBONE["depth"], (14, 14),
                                 seed=5)
  want = _converted(t, demo.BACKBONE["width"])
  cfg = demo.get_config("finetune")
  cfg.data_dir = mini_data
  s = train.setup(cfg)
  state, _ = create_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules, seed=0)
  before = _flat(state.params["backbone"])
  loaded = train.load_backbone_into(state, str(f), strict=cfg.finetune.strict)
  got = _flat(loaded.params["backbone"])
  assert sorted(got) == sorted(want)
  for k, v in want.items():
    np.testing.assert_array_equal(np.asarray(got[k]), v, err_msg=k)
    assert got[k].sharding == before[k].sharding, k
  with pytest.raises(convert.ConversionError) as e:
    train.load_backbone_into(state, str(f), strict=True)
  assert "neck_module.last_proj.weight" in str(e.value)
  assert "decoder_module.feat_bn.num_batches_tracked" in str(e.value)


@pytest.mark.slow
def test_finetune_from_the_released_checkpoint(mini_data, tmp_path):
  """``python -m path_jax.main --config=configs/demo.py:finetune`` (partial: the last 2 of 4
  blocks and the final norm open) from the released-layout ``.pth``: the frozen leaves of the
  final checkpoint are the file's tensors after the documented conversion, the open ones
  trained, and the evaluation wrote its metrics."""
  pytest.importorskip("torch")
  from configs import demo
  width, depth = demo.BACKBONE["width"], demo.BACKBONE["depth"]
  f = tmp_path / "v100_32g_vitbase_size224_SharePosEmbed.pth"
  t = _write_released(f, width, depth, (14, 14), seed=3)
  want = _converted(t, width)
  workdir = tmp_path / "ft"
  overrides = {"data_dir": mini_data, "finetune.init_from": str(f), "train.num_steps": 2,
               "optimizer.schedule.total_steps": 2, "optimizer.schedule.warmup_steps": 1,
               "train.log_every": 1, "datasets.mini_dukemtmc.batch_size": 8,
               "datasets.mini_peta.batch_size": 8, "evaluate.pictures": 0}
  _run_main([f"--config={ROOT}/configs/demo.py:finetune", f"--workdir={workdir}"]
            + [f"--config.{k}={v}" for k, v in overrides.items()])
  with open(workdir / "eval" / "results.json") as fh:
    results = json.load(fh)
  assert set(results) == {"mini_dukemtmc", "mini_peta"}
  assert 0.0 <= results["mini_dukemtmc"]["rank1"] <= 1.0
  assert 0.0 <= results["mini_peta"]["mA"] <= 1.0
  # The program's final checkpoint, restored under the same config.
  cfg = demo.get_config("finetune")
  for k, v in overrides.items():
    *parents, leaf = k.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    node[leaf] = v
  state = _restore(str(workdir), cfg)
  assert int(state.step) == 2
  got = _flat(state.params["backbone"])
  assert sorted(got) == sorted(want)
  assert cfg.finetune.protocol == "partial" and cfg.finetune.open_last == 2
  _check_opt_state(state, "partial", 2)
  for k, v in want.items():
    frozen = not _layer_open(k, "partial", 2)
    if frozen:     # untouched since the load: exactly the converted tensor
      np.testing.assert_array_equal(got[k], v, err_msg=k)
    else:          # loaded, then trained a little (Adafactor steps are lr-sized)
      assert not np.array_equal(got[k], v), k
      np.testing.assert_allclose(got[k], v, atol=0.05, err_msg=k)


@pytest.mark.parametrize("scan", [False, True])
def test_released_file_without_cls_row_keeps_the_initial_cls_position(mini_data, tmp_path, scan):
  """The released ``wo_cls_token`` file (what the authors' evaluation configs load): ``pos_embed``
  of gh*gw rows and MAE's ``cls_token``, no cls position. Loaded into the demo finetune state
  (ReID: a cls token), the cls position keeps its initialisation, as in the authors' code
  (REFERENCE.md §1.4), and every other leaf is the file's; looped or scanned blocks."""
  torch = pytest.importorskip("torch")
  from configs import demo
  from path_jax import train
  from path_jax.model import vit as vit_lib
  from path_jax.state import create_train_state
  width = demo.BACKBONE["width"]
  t = _released_tensors(width, demo.BACKBONE["depth"], (14, 14), seed=11, cls_row=False)
  f = tmp_path / "wo_cls_token.pth"
  torch.save({"model": collections.OrderedDict((k, torch.from_numpy(v)) for k, v in t.items())},
             f)
  cfg = demo.get_config("finetune")
  cfg.data_dir = mini_data
  cfg.model.backbone.scan = scan
  s = train.setup(cfg)
  state, _ = create_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules, seed=0)
  init_cls_pos = np.asarray(state.params["backbone"]["cls_pos_embed"])
  loaded = jax.device_get(train.load_backbone_into(state, str(f), strict=False).params["backbone"])
  if scan:
    loaded = vit_lib.scan_to_loop(loaded, demo.BACKBONE["depth"])
  got = _flat(loaded)
  want = _converted(t, width)
  want["cls_pos_embed"] = init_cls_pos       # not in the file: kept from initialisation
  assert sorted(got) == sorted(want)
  for k, v in want.items():
    np.testing.assert_array_equal(np.asarray(got[k]), v, err_msg=k)
