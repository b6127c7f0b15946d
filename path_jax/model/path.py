"""The PATH model: one backbone, projectors per share group, one head per dataset (paper §4.1).

Parameter tree (stable; optimiser rules, sharding rules and export rely on it)::

  backbone/...             the ViT (path_jax.model.vit), shared by every dataset
  projector_<group>/...    one per share group: the task name (share='task', default), 'all'
                           (share='all') or the dataset name (share='dataset'); a dataset config
                           may name its group explicitly with ``projector_group``
  head_<dataset>/...       one per dataset, built by the dataset's task (path_jax.tasks)

Applying the model to ``{dataset: images [B_d, H_d, W_d, 3]}`` returns ``{dataset: head outputs}``.
Datasets whose images share a shape (and cls use and stochastic-depth rate) go through the backbone
in one pass: their images are concatenated, the backbone runs once, and the tokens are split again
with static offsets. Without a projector config (downstream finetuning) the heads read the
backbone's final normed tokens, as the paper's evaluation does.
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


def dataset_specs(datasets: Mapping[str, Mapping[str, Any]], share: str = "task"
                  ) -> tuple[DatasetSpec, ...]:
  """Specs for a ``{name: dataset config}`` mapping (a ConfigDict of dataset subtrees)."""
  specs = []
  for name in datasets:
    cfg = datasets[name]
    if "task" not in cfg:
      raise KeyError(f"dataset {name!r} has no 'task' field; set config.datasets.{name}.task")
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
    return (tuple(images.shape[1:3]), bool(task.uses_cls_token),
            None if rate is None else float(rate))

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
    backbone_out: dict[str, tuple[jax.Array, jax.Array, dict]] = {}
    for (hw, use_cls, rate), members in groups.items():
      x = jnp.concatenate([images[n] for n in members], axis=0) if len(members) > 1 else images[
          members[0]]
      tokens, out = self.backbone(x, train=train, use_cls=use_cls, drop_path_rate=rate)
      start = 0
      for n in members:
        b = images[n].shape[0]
        backbone_out[n] = (tokens[start:start + b], out["features"][:, start:start + b], out)
        start += b

    projectors: dict[str, tuple[bool, nn.Module]] = {}
    results = {}
    for n in names:
      spec = specs[n]
      task = tasks_lib.get(spec.task)
      tokens, features, out = backbone_out[n]
      if self.projector is not None:
        if spec.group not in projectors:
          projectors[spec.group] = (task.uses_cls_token, projector_lib.make_projector(
              self.projector, self.backbone.width, task.uses_cls_token, self.backbone.dtype,
              name=f"projector_{spec.group}"))
        elif projectors[spec.group][0] != task.uses_cls_token:
          # The SE squeeze must know whether token 0 is a cls token.
          raise ValueError(f"projector group {spec.group!r} mixes cls-token and patch-only tasks; "
                           f"give dataset {n!r} its own projector_group")
        tokens = projectors[spec.group][1](features)
      cls = tokens[:, 0] if task.uses_cls_token else None
      patches = tokens[:, 1:] if task.uses_cls_token else tokens
      inputs = tasks_lib.HeadInputs(tokens=patches, grid=out["grid"], image_hw=out["image_hw"],
                                    cls=cls)
      head = task.make_head(spec.cfg)
      results[n] = head.clone(parent=self, name=f"head_{n}")(inputs, train=train)
    return results


def from_config(cfg) -> PATHModel:
  """Builds the PATH model from a full config (``model.backbone``, ``model.projector``, ``datasets``)."""
  backbone = vit_lib.from_config(cfg.model.backbone)
  share = cfg.model.projector.get("share", "task") if cfg.model.get("projector") else "task"
  specs = dataset_specs(cfg.datasets, share)
  proj = cfg.model.get("projector")
  use_proj = proj is not None and proj.get("enabled", True)
  return PATHModel(backbone=backbone, datasets=specs,
                   projector=ml_collections.FrozenConfigDict(proj) if use_proj else None)


def backbone_params(params: Mapping[str, Any]) -> Any:
  """The backbone alone (projectors and heads dropped), for export."""
  if "backbone" not in params:
    raise KeyError(f"no 'backbone' in the parameter tree (top-level keys: {sorted(params)})")
  return params["backbone"]
