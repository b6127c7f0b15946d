"""``make_optimizer(cfg, params)``: the whole optimiser chain from an ``optimizer`` config.

Chain for trainable leaves (REFERENCE.md §4.5): factored second moments -> per-layer RMS
clipping -> ``lr(count) * layer-decay multiplier`` -> momentum -> decoupled weight decay
(masked, same lr) -> negate.
Frozen parameters hold no optimiser state: fully frozen leaves go through ``optax.set_to_zero``
inside ``optax.multi_transform``; a partially frozen scanned stack (partial finetuning of
scanned blocks: only the last layers of each ``[depth, ...]`` leaf train) is cut to its open
layers before the chain (:func:`open_layers_only`), so the chain and its state see ``[open,
...]`` and the frozen layers' updates are zeros.

The learning rate for metrics: ``make_schedule(cfg)(step)``, see :mod:`schedules`.
"""
from __future__ import annotations

import difflib
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from path_jax.optim import adafactor as adafactor_lib
from path_jax.optim import grouping, layer_decay, masks, schedules, tree_paths

OPTIMIZERS = ("adafactor",)


def default_config() -> ml_collections.ConfigDict:
  """Paper settings (§5.1) for ViT-B pretraining.

  Fields:
    name: optimiser, one of ``OPTIMIZERS``.
    peak_lr: peak learning rate (after warm-up, before decay).
    weight_decay: decoupled decay, multiplied by each leaf's learning rate.
    clip_threshold: Adafactor RMS update clipping threshold (0.5 ViT-B, 1.0 ViT-L).
    beta1: momentum on the lr-scaled update.
    decay_rate: exponent of ``beta2 = 1 - t**decay_rate``.
    clip_beta2: cap on beta2.
    eps: added to the squared gradient.
    layer_decay: layer-wise lr decay rate; 1.0 disables it.
    authors_num_layers: 0 for the paper's layer ids; 12 reproduces the authors' rule.
    authors_lpe_lr: with ``authors_num_layers``, positional embeddings and cls at the top
      layer (authors' ``lpe_lr``).
    pos_embed_multiplier: extra lr factor for leaves named '*pos_embed*' in the backbone.
    stacked_names: names of scanned subtrees whose leaves carry a leading layer axis.
    freeze: 'none', 'backbone', 'partial' or 'pos_embed' (see :mod:`masks`).
    freeze_open_last: trainable last blocks for ``freeze='partial'``.
    weight_decay_rules: extra ``(regex, bool)`` rules tried before the default ones.
    group_leaves: run the chain once per group of same-shaped leaves (:mod:`grouping`).
    schedule: see :func:`schedules.schedule_config` (durations follow the run: the paper's
      1,500 warm-up updates of 80k as a fraction, decay at 50/75/95 % of it).
  """
  return ml_collections.ConfigDict(dict(
      name="adafactor",
      peak_lr=5e-4,
      weight_decay=0.05,
      clip_threshold=0.5,
      beta1=0.9,
      decay_rate=-0.8,
      clip_beta2=0.999,
      eps=1e-30,
      layer_decay=0.75,
      authors_num_layers=0,
      authors_lpe_lr=True,
      pos_embed_multiplier=1.0,
      stacked_names=("blocks",),
      freeze="none",
      freeze_open_last=2,
      weight_decay_rules=(),
      # Run the chain once per group of same-shaped leaves (path_jax.optim.grouping): same
      # numbers, ~13x fewer optimiser operations to compile for the PATH mixture. Used when
      # nothing is frozen (pretraining, full finetuning).
      group_leaves=True,
      schedule=schedules.schedule_config(),
  ))


def authors_config() -> ml_collections.ConfigDict:
  """The authors' B-yaml (REFERENCE.md §4.1/§4.4/§4.6): peak 1e-3, step schedule at
  40k/60k/76k of 80k with factors 0.5/0.2/0.1, ``num_layers`` 12 layer decay with ``lpe_lr``.
  The decay points are kept as fractions of the run (50/75/95 %), so a shorter run decays too."""
  cfg = default_config()
  cfg.peak_lr = 1e-3
  cfg.authors_num_layers = 12
  cfg.schedule.boundary_fractions = tuple(b / schedules.PAPER_STEPS
                                          for b in (40_000, 60_000, 76_000))
  cfg.schedule.factors = (0.5, 0.2, 0.1)
  return cfg


def _check_fields(cfg: ml_collections.ConfigDict) -> None:
  valid = set(default_config().keys())
  unknown = sorted(set(cfg.keys()) - valid)
  if unknown:
    hints = [f"'{k}' (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(k, valid, 1))
             else f"'{k}'" for k in unknown]
    raise ValueError(f"unknown optimizer field(s) {', '.join(hints)}; valid fields: "
                     f"{sorted(valid)}.")
  if cfg.name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer.name '{cfg.name}'; use one of {OPTIMIZERS}.")


def make_optimizer(cfg: ml_collections.ConfigDict, params, num_steps: int | None = None
                   ) -> optax.GradientTransformation:
  """Builds the optimiser for ``params`` (arrays or ``jax.ShapeDtypeStruct``s; only paths
  and shapes are read), with fields from :func:`default_config`; ``num_steps``: the run's length,
  used when ``schedule.total_steps`` is 0 (:func:`schedules.make_schedule`)."""
  _check_fields(cfg)
  schedule = schedules.make_schedule(cfg, num_steps)
  stacked_names = tuple(cfg.stacked_names)
  stacked = tree_paths.stacked_axes(params, stacked_names)
  if cfg.layer_decay == 1.0 and cfg.pos_embed_multiplier == 1.0:
    multipliers = 1.0
  else:
    multipliers = layer_decay.layer_decay_multipliers(
        params, cfg.layer_decay, stacked_names=stacked_names,
        authors_num_layers=cfg.authors_num_layers or None,
        authors_lpe_lr=cfg.authors_lpe_lr, pos_embed_multiplier=cfg.pos_embed_multiplier)
  wd_mask = masks.weight_decay_mask(
      params, tuple(tuple(r) for r in cfg.weight_decay_rules) + masks.DEFAULT_WEIGHT_DECAY_RULES)
  trainable = masks.trainable_mask(params, cfg.freeze, open_last=cfg.freeze_open_last,
                                   stacked_names=stacked_names)

  # Partially frozen stacks: the chain sees only their open (last) layers. The stacked-axis and
  # weight-decay specs depend on paths only; per-layer lr multipliers are cut like the leaves.
  starts = tree_paths.map_with_paths(lambda path, v: _first_open_layer(v), trainable)
  if any(int(v) > 0 for _, v in tree_paths.leaves_with_paths(starts)) and not isinstance(
      multipliers, float):
    multipliers = tree_paths.map_with_paths(
        lambda path, m, k: m[k:] if k and np.ndim(m) else m, multipliers, starts)

  values = [v for _, v in tree_paths.leaves_with_paths(trainable)]
  frozen = any(masks.is_partially_frozen(v) or masks.is_fully_frozen(v) for v in values)
  chain = dict(weight_decay=cfg.weight_decay, beta1=cfg.beta1, decay_rate=cfg.decay_rate,
               clip_beta2=cfg.clip_beta2, clip_threshold=cfg.clip_threshold, eps=cfg.eps)
  if cfg.group_leaves and not frozen:
    return _grouped_adafactor(schedule, params, multipliers, wd_mask, stacked, chain)
  tx = adafactor_lib.adafactor(schedule, multipliers=multipliers, weight_decay_mask=wd_mask,
                               stacked=stacked, **chain)
  if any(masks.is_partially_frozen(v) for v in values):
    tx = open_layers_only(tx, starts)
  if not any(masks.is_fully_frozen(v) for v in values):
    return tx
  labels = tree_paths.map_with_paths(
      lambda path, v: "freeze" if masks.is_fully_frozen(v) else "train", trainable)
  return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


def _grouped_adafactor(schedule, params, multipliers, wd_mask, stacked, chain
                       ) -> optax.GradientTransformation:
  """:func:`adafactor_lib.adafactor` run once per group of leaves it treats alike."""
  stacked_of = tree_paths.leaf_fn(stacked, "stacked axes")
  mask_of = tree_paths.leaf_fn(wd_mask, "weight-decay mask")
  factored = adafactor_lib.default_factored_dims

  def signature(path, leaf):
    dims = factored(path, tuple(leaf.shape), int(stacked_of(path, leaf)))
    return dims, bool(mask_of(path, leaf))

  def make_inner(stacked, multipliers, path_of):
    def dims(path, shape, n_stacked):   # the member's dims, shifted past the group axis
      member_path, member_shape = path_of(path)
      d = factored(member_path, member_shape, n_stacked - 1)
      return None if d is None else tuple(tuple(a + 1 for a in axes) for axes in d)

    return adafactor_lib.adafactor(
        schedule, multipliers=multipliers, stacked=stacked, factored_dims=dims,
        weight_decay_mask=lambda path, leaf: bool(mask_of(path_of(path)[0], None)), **chain)

  return grouping.grouped(make_inner, params, stacked=stacked, multipliers=multipliers,
                          signature=signature)


def _first_open_layer(value) -> int:
  """For a partially frozen stacked leaf's mask ``[depth, 1, ...]``: the first trainable layer
  (the open layers must be the last ones); 0 for every other leaf."""
  if not masks.is_partially_frozen(value):
    return 0
  open_layers = np.asarray(value).reshape(np.shape(value)[0], -1)[:, 0]
  first = int(np.argmax(open_layers))
  if not open_layers[first:].all():
    raise ValueError("a partially frozen stack must train a contiguous run of its last layers")
  return first


class OpenLayersState(NamedTuple):
  inner: Any


def open_layers_only(inner: optax.GradientTransformation, starts
                     ) -> optax.GradientTransformation:
  """Runs ``inner`` on ``leaf[start:]`` of each leaf whose ``starts`` entry is > 0 (a scanned
  stack whose first ``start`` layers are frozen) and pads its updates back with zeros; other
  leaves pass whole. ``inner`` must be built for the cut shapes; its state holds nothing for the
  frozen layers."""
  start_of = tree_paths.leaf_fn(starts, "open-layer starts")

  def cut(tree):
    if tree is None:
      return None
    return tree_paths.map_with_paths(
        lambda path, x: x[start_of(path, x):] if start_of(path, x) else x, tree)

  def init_fn(params):
    return OpenLayersState(inner.init(cut(params)))

  def update_fn(updates, state, params=None):
    full = updates
    new, inner_state = inner.update(cut(updates), state.inner, cut(params))

    def pad(path, u, like):
      k = start_of(path, like)
      if not k:
        return u
      return jnp.concatenate([jnp.zeros((k,) + u.shape[1:], u.dtype), u], axis=0)

    return tree_paths.map_with_paths(pad, new, full), OpenLayersState(inner_state)

  return optax.GradientTransformation(init_fn, update_fn)
