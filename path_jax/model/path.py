"""The PATH model: one backbone, projectors per share group, one head per dataset (paper §4.1).

Parameter tree (stable; optimiser rules, sharding rules and export rely on it)::

  backbone/...             the ViT (path_jax.model.vit), shared by every dataset
  projector_<group>/...    one per share group: the task name (share='task', default), 'all'
                           (share='all') or the dataset name (share='dataset'); a dataset config
                           may name its group explicitly with ``projector_group``
  head_<dataset>/...       one per dataset, built by the dataset's task (path_jax.tasks)

Applying the model to ``{dataset: images [B_d, H_d, W_d, 3]}`` returns ``{dataset: head outputs}``.
Datasets whose images share a shape (and cls use and stochastic-depth rate; and, with the
backbone's ``pos_embed='dataset'``, the dataset itself) go through the backbone in one pass: their images are concatenated (shard by shard under a mesh: no data moves between
devices), the backbone runs once, and the tokens are split again with static offsets. Without a projector config (downstream finetuning) the heads read the
backbone's final normed tokens, as the paper's evaluation does.

A projector group may mix cls-token tasks (ReID) with patch-only ones (``share='all'``, the paper's
Table 4 row a): the projector's parameters do not depend on the cls token, which only its
squeeze-and-excitation must skip, so the one projector is called with ``has_cls`` per run.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from path_jax import tasks as tasks_lib
from path_jax.model import projector as projector_lib
from path_jax.model import vit as vit_lib


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A dataset as the model sees it: its name, task, projector group and config subtree."""
  name: str
  task: str
  group: str
  cfg: ml_collections.FrozenConfigDict


def projector_group(name: str, cfg: Mapping[str, Any], share: str) -> str:
  """The projector share group of dataset ``name`` under ``share`` ('task', 'all', 'dataset')."""
  if cfg.get("projector_group"):
    return str(cfg["projector_group"])
  if share == "task":
    return str(cfg["task"])
  if share == "all":
    return "all"
  if share == "dataset":
    return name
  raise ValueError(f"projector.share must be 'task', 'all' or 'dataset', got {share!r}")


def platform_fields(platform: str, attention_impl: str | None) -> dict[str, Any]:
  """Head fields that depend on the platform the model is built for: the attention
  implementation (the backbone's, already resolved) and the pose heads' transposed-conv form."""
  return {"attention_impl": attention_impl,
          "deconv_impl": "phase" if platform == "cpu" else "dilated"}


def dataset_specs(datasets: Mapping[str, Mapping[str, Any]], share: str = "task",
                  resolved: Mapping[str, Any] | None = None) -> tuple[DatasetSpec, ...]:
  """Specs for a ``{name: dataset config}`` mapping (a ConfigDict of dataset subtrees).

  ``resolved``: values for dataset fields left unset (None) that depend on the target platform
  (:func:`platform_fields`); the given configs are not changed."""
  specs = []
  for name in datasets:
    cfg = datasets[name]
    if "task" not in cfg:
      raise KeyError(f"dataset {name!r} has no 'task' field; set config.datasets.{name}.task")
    fill = {k: v for k, v in (resolved or {}).items()
            if k in cfg and cfg[k] is None and v is not None}
    if fill:
      cfg = ml_collections.ConfigDict(dict(cfg.items()))   # a copy: the config stays as given
      for k, v in fill.items():
        cfg[k] = v
    frozen = ml_collections.FrozenConfigDict(cfg)
    specs.append(DatasetSpec(name, str(cfg["task"]), projector_group(name, cfg, share), frozen))
  return tuple(specs)


class PATHModel(nn.Module):
  """Backbone + projectors + heads. See the module docstring for the parameter tree."""
  backbone: vit_lib.ViT
  datasets: tuple[DatasetSpec, ...]
  projector: ml_collections.FrozenConfigDict | None = None

  def _group_key(self, spec: DatasetSpec, images: jax.Array):
    task = tasks_lib.get(spec.task)
    rate = spec.cfg.get("drop_path_rate", None)
    pos_key = spec.name if self.backbone.pos_embed == "dataset" else None
    return (tuple(images.shape[1:3]), bool(task.uses_cls_token),
            None if rate is None else float(rate), pos_key)

  def _projector(self, projectors: dict, spec: DatasetSpec) -> nn.Module:
    """The projector of ``spec``'s group, made on first use (one module, hence one set of
    parameters, per group, whatever mix of cls-token and patch-only tasks calls it)."""
    if spec.group not in projectors:
      projectors[spec.group] = projector_lib.make_projector(
          self.projector, self.backbone.width, False, self.backbone.dtype,
          name=f"projector_{spec.group}", attention_impl=self.backbone.attention_impl)
    return projectors[spec.group]

  @nn.compact
  def __call__(self, images: Mapping[str, jax.Array], *, train: bool = False
               ) -> dict[str, dict[str, jax.Array]]:
    specs = {s.name: s for s in self.datasets}
    unknown = [n for n in images if n not in specs]
    if unknown:
      raise KeyError(f"images for unknown datasets {unknown}; the model knows {sorted(specs)}")
    names = [s.name for s in self.datasets if s.name in images]

    # One backbone pass per (input shape, cls use, drop-path rate) group.
    groups: dict[Any, list[str]] = {}
    for n in names:
      groups.setdefault(self._group_key(specs[n], images[n]), []).append(n)
    backbone_out: dict[str, tuple[jax.Array, dict]] = {}
    projectors: dict[str, nn.Module] = {}
    shards = _batch_shards([images[n].shape[0] for n in names])
    for (hw, use_cls, rate, pos_key), members in groups.items():
      x = _join([images[n] for n in members], shards)
      tokens, out = self.backbone(x, train=train, use_cls=use_cls, drop_path_rate=rate,
                                  pos_key=pos_key)
      # Consecutive members of one projector group go through their projector in one call (it
      # works image by image, so this is the same as one call per dataset; the program holds one
      # projector instance per run instead of one per dataset: 11 pose sets -> 1).
      runs: list[list[str]] = []
      for n in members:
        if runs and specs[runs[-1][0]].group == specs[n].group:
          runs[-1].append(n)
        else:
          runs.append([n])
      start = 0
      for run in runs:
        size = sum(images[n].shape[0] for n in run)
        run_tokens = _take(tokens, start, size, shards)
        if self.projector is not None:
          run_tokens = self._projector(projectors, specs[run[0]])(
              _take(out["features"], start, size, shards, axis=1), has_cls=use_cls)
        offset = 0
        for n in run:
          b = images[n].shape[0]
          backbone_out[n] = (_take(run_tokens, offset, b, shards), out)
          offset += b
        start += size

    results = {}
    for n in names:
      spec = specs[n]
      task = tasks_lib.get(spec.task)
      tokens, out = backbone_out[n]
      cls = tokens[:, 0] if task.uses_cls_token else None
      patches = tokens[:, 1:] if task.uses_cls_token else tokens
      inputs = tasks_lib.HeadInputs(tokens=patches, grid=out["grid"], image_hw=out["image_hw"],
                                    cls=cls)
      head = task.make_head(spec.cfg)
      results[n] = head.clone(parent=self, name=f"head_{n}")(inputs, train=train)
    return results


def _batch_shards(sizes) -> int:
  """How many ways the batch axes of the mesh in context split every sub-batch (1 without a
  mesh, or when a sub-batch does not divide)."""
  from path_jax.parallel.mesh import BATCH_AXES
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return 1
  shards = 1
  for axis in BATCH_AXES:
    shards *= mesh.shape.get(axis, 1)
  return shards if all(b % shards == 0 for b in sizes) else 1


def _join(arrays, shards: int) -> jax.Array:
  """Concatenates sub-batches along axis 0 *shard by shard*: the result's shard ``i`` holds
  shard ``i`` of every input, so joining and splitting (:func:`_take`) move no data between
  devices. (A plain concatenation of batch-sharded arrays whose sizes are not multiples of the
  total would re-distribute them: hundreds of collective-permutes in the PATH step.)"""
  if len(arrays) == 1:
    return arrays[0]
  if shards == 1:
    return jnp.concatenate(arrays, axis=0)
  parts = [a.reshape((shards, a.shape[0] // shards) + a.shape[1:]) for a in arrays]
  joined = jnp.concatenate(parts, axis=1)
  return joined.reshape((-1,) + joined.shape[2:])


def _take(x: jax.Array, start: int, size: int, shards: int, axis: int = 0) -> jax.Array:
  """Sub-batch ``[start, start + size)`` (in :func:`_join`'s order) of ``x`` along ``axis``."""
  if start == 0 and size == x.shape[axis]:
    return x
  if shards == 1:
    return jax.lax.slice_in_dim(x, start, start + size, axis=axis)
  shape = x.shape
  split = shape[:axis] + (shards, shape[axis] // shards) + shape[axis + 1:]
  part = jax.lax.slice_in_dim(x.reshape(split), start // shards, (start + size) // shards,
                              axis=axis + 1)
  return part.reshape(shape[:axis] + (size,) + shape[axis + 1:])


def from_config(cfg, platform: str | None = None) -> PATHModel:
  """Builds the PATH model from a full config (``model.backbone``, ``model.projector``,
  ``datasets``) for ``platform`` ('cpu' / 'tpu' / 'gpu'; default ``jax.default_backend()``): the
  attention implementation of the backbone, projectors and heads is resolved for it."""
  backbone = vit_lib.from_config(cfg.model.backbone, platform=platform)
  share = cfg.model.projector.get("share", "task") if cfg.model.get("projector") else "task"
  specs = dataset_specs(cfg.datasets, share, resolved=platform_fields(
      platform or jax.default_backend(), backbone.attention_impl))
  proj = cfg.model.get("projector")
  use_proj = proj is not None and proj.get("enabled", True)
  return PATHModel(backbone=backbone, datasets=specs,
                   projector=ml_collections.FrozenConfigDict(proj) if use_proj else None)


def backbone_params(params: Mapping[str, Any], backbone_cfg=None, dataset_names=()) -> Any:
  """The backbone alone (projectors and heads dropped), for export.

  A backbone with keyed positional embeddings (``pos_embed='dataset'``/``'size'``) is folded
  into the standard layout (:func:`path_jax.model.vit.to_shared_pos`): the embedding of
  ``backbone_cfg.export_pos_from`` (a dataset name, or a grid ``'<gh>x<gw>'`` in 'size' mode;
  default :func:`export_pos_source`) resized to ``pos_grid``."""
  if "backbone" not in params:
    raise KeyError(f"no 'backbone' in the parameter tree (top-level keys: {sorted(params)})")
  bb = params["backbone"]
  if not vit_lib.keyed_pos_names(bb):
    return bb
  if backbone_cfg is None:
    raise ValueError("this backbone has keyed positional embeddings "
                     f"{vit_lib.keyed_pos_names(bb)}; pass backbone_cfg to fold them for export")
  source = export_pos_source(bb, backbone_cfg, dataset_names)
  return vit_lib.to_shared_pos(dict(bb), tuple(backbone_cfg.get("pos_grid", (14, 14))), source)


def export_pos_source(bb: Mapping[str, Any], backbone_cfg, dataset_names=()) -> str:
  """Which keyed positional embedding an export keeps: ``export_pos_from`` when set, else in
  'dataset' mode the mixture's first dataset (the authors exported task 0's, COCO pose, for
  their cls-free file), in 'size' mode the grid nearest ``pos_grid`` (the grid the shared
  embedding lives on)."""
  chosen = str(backbone_cfg.get("export_pos_from", "") or "")
  keys = [n[len(vit_lib.POS_PREFIX):] for n in vit_lib.keyed_pos_names(bb)]
  if chosen:
    return chosen
  mode = backbone_cfg.get("pos_embed", "shared")
  if mode == "dataset":
    for n in dataset_names:
      if n in keys:
        return n
    return keys[0]
  gh, gw = tuple(backbone_cfg.get("pos_grid", (14, 14)))
  return min(keys, key=lambda k: (abs(int(k.split("x")[0]) - gh) + abs(int(k.split("x")[1]) - gw), k))
