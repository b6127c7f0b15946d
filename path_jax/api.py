"""Public API: load a trained backbone and extract features in your own JAX code.

    from path_jax import api
    backbone = api.load_backbone("export_dir")            # or a .pth/.safetensors/.npz + variant
    tokens = backbone.features(images)                    # [B, H/16 * W/16, C]
    pooled = backbone.features(images, pooled=True)       # [B, C], mean of the patch tokens

Images are uint8 RGB ``[B, H, W, 3]`` of any size (normalisation happens inside the backbone;
sizes that are not multiples of the patch are zero-padded right/bottom, as in training). The
positional embedding is resized to each input's patch grid, so one backbone serves 224x224
classification crops, 256x128 ReID crops and 480x480 parsing inputs alike.

Sources :func:`load_backbone` reads:

* our export directory (``path_jax.checkpoint.export_backbone``): ``backbone.json`` (the
  architecture: ``variant``, ``width``, ``depth``, ``num_heads``, ``mlp_dim``, ``patch_size``,
  ``pos_grid``, ``cls_token``) next to an orbax ``backbone/`` checkpoint of the parameters;
* a PyTorch state dict in the MAE/timm layout (``.pth``/``.pt`` need torch, ``.safetensors`` and
  ``.npz`` do not), converted by :func:`path_jax.model.convert.import_backbone`; the released
  PATH checkpoints and MAE weights load this way.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from path_jax.model import vit

EXPORT_JSON = "backbone.json"
EXPORT_PARAMS = "backbone"
_ARCH_KEYS = ("width", "depth", "num_heads", "mlp_dim", "patch_size")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True, eq=False)
class Backbone:
  """A ViT backbone with its parameters.

  Attributes:
    module: the :class:`path_jax.model.vit.ViT` (looped blocks, inference only).
    params: its parameter tree (``module.apply({'params': params}, images)``).
  """
  module: vit.ViT
  params: Any

  def features(self, images: Any, *, use_cls: bool = False, pooled: bool = False) -> jax.Array:
    """Final (normed) tokens of ``images`` ``[B, H, W, 3]`` uint8 RGB, any ``H, W``.

    Returns ``[B, N, C]`` tokens, ``N = ceil(H/p) * ceil(W/p)`` patches (plus the cls token
    first when ``use_cls``), or with ``pooled=True`` ``[B, C]``: the cls token if ``use_cls``,
    else the mean of the patch tokens. Compiled once per input shape.
    """
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"Backbone.features expects images [B, H, W, 3] RGB, got shape "
                       f"{images.shape}; add a batch axis with images[None] for one image.")
    if use_cls and not self.module.cls_token:
      raise ValueError("use_cls=True but this backbone has no cls token; load it with "
                       "cls_token=True (only checkpoints trained with one have it), or pool the "
                       "patch tokens with pooled=True, use_cls=False.")
    tokens = _forward(self.module)(self.params, images, bool(use_cls))
    if not pooled:
      return tokens
    if use_cls:
      return tokens[:, 0]
    return jnp.mean(tokens.astype(jnp.float32), axis=1).astype(tokens.dtype)

  @property
  def width(self) -> int:
    """Feature width C."""
    return int(self.module.width)


@functools.lru_cache(maxsize=32)
def _forward(module: vit.ViT):
  """The jitted forward pass of ``module`` (tokens only), shared by every backbone with an equal
  module, so loading the same architecture twice compiles nothing new. jax.jit keeps one program
  per input shape and ``use_cls``; pooling is a cheap reduction outside it."""
  def run(params, images, use_cls):
    return module.apply({"params": params}, images, use_cls=use_cls)[0]
  return jax.jit(run, static_argnums=2)


def _module(arch: dict[str, Any], pos_grid: tuple[int, int], cls_token: bool,
            dtype: str) -> vit.ViT:
  if dtype not in _DTYPES:
    raise ValueError(f"load_backbone dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
  return vit.ViT(**{k: int(arch[k]) for k in _ARCH_KEYS}, pos_grid=tuple(int(g) for g in pos_grid),
                 cls_token=bool(cls_token), dtype=_DTYPES[dtype])


def _template(module: vit.ViT) -> Any:
  """Abstract (shape-only) parameters of ``module``; nothing is computed."""
  p = module.patch_size
  images = jax.ShapeDtypeStruct((1, p, p, 3), jnp.uint8)
  shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), images)
  return nn.unbox(shapes["params"])


def _check_tree(params: Any, template: Any, source: str) -> None:
  """Raises if ``params`` differs from ``template`` in keys or shapes, listing every difference."""
  got = {jax.tree_util.keystr(k): tuple(np.shape(v))
         for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  want = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_flatten_with_path(template)[0]}
  problems = [f"missing {k}" for k in sorted(set(want) - set(got))]
  problems += [f"unexpected {k}" for k in sorted(set(got) - set(want))]
  problems += [f"{k}: stored {got[k]}, expected {want[k]}" for k in sorted(set(got) & set(want))
               if got[k] != want[k]]
  if problems:
    raise ValueError(f"the parameters in {source} do not fit the architecture of its "
                     f"{EXPORT_JSON}:\n  " + "\n  ".join(problems[:20])
                     + (f"\n  ... {len(problems) - 20} more" if len(problems) > 20 else ""))


def read_export_json(path: str) -> dict[str, Any]:
  """The architecture dict of an export directory, with every key :func:`load_backbone` needs.

  A known ``variant`` fills the numeric keys the file does not set; the file's values win (a
  backbone with overridden sizes keeps its variant name).
  """
  file = os.path.join(path, EXPORT_JSON)
  with open(file) as f:
    meta = json.load(f)
  arch = vit.variant(meta["variant"]) if meta.get("variant") in vit.VARIANTS else {}
  arch.update({k: meta[k] for k in _ARCH_KEYS if meta.get(k) is not None})
  missing = [k for k in _ARCH_KEYS if k not in arch]
  if missing:
    raise KeyError(f"{file} lacks {missing} and names no known 'variant'; re-export the backbone: "
                   "python -m path_jax.main --config=<config> --config.mode=export "
                   "--workdir=<training workdir>.")
  arch["variant"] = meta.get("variant")
  arch["pos_grid"] = tuple(int(g) for g in meta.get("pos_grid", (14, 14)))
  arch["cls_token"] = bool(meta.get("cls_token", False))
  return arch


def _restore_orbax(path: str) -> Any:
  """Restores the orbax checkpoint at ``path`` onto the first local device, whatever the mesh
  it was saved from (the target is built from the checkpoint's own metadata)."""
  import orbax.checkpoint as ocp
  ckptr = ocp.StandardCheckpointer()
  meta = ckptr.metadata(path).item_metadata.tree
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device),
                        meta)
  return ckptr.restore(path, target)


def _resize_grid(params: dict, pos_grid: tuple[int, int]) -> dict:
  """``params`` with ``pos_embed`` resampled (bicubic, as the forward pass) to ``pos_grid``."""
  pos = params["pos_embed"]
  if tuple(pos.shape[:2]) == tuple(pos_grid):
    return params
  return dict(params, pos_embed=vit.resize_pos_embed(jnp.asarray(pos), tuple(pos_grid)))


def load_backbone(path: str | os.PathLike, *, variant: str | None = None,
                  cls_token: bool | None = None, pos_grid: tuple[int, int] | None = None,
                  dtype: str = "float32", strict: bool = False) -> Backbone:
  """Loads a backbone from an export directory or a PyTorch-layout checkpoint file.

  Args:
    path: an export directory (``backbone.json`` + orbax ``backbone/``) or a ``.pth``/``.pt``/
      ``.safetensors``/``.npz`` state dict in the MAE/timm layout.
    variant: ViT variant (``"B/16"``, ``"L/16"``, ...; see ``path_jax.model.vit.VARIANTS``).
      Required for checkpoint files; for an export directory it must match ``backbone.json``.
    cls_token: whether the backbone has a cls token. None: from ``backbone.json``, or for a
      file, whether the state dict has a ``cls_token`` entry.
    pos_grid: grid of the stored positional embedding. None: ``backbone.json``'s, or (14, 14)
      for a file (a checkpoint's grid is resampled to it); an explicit grid that differs from
      the stored one resamples it with the forward pass's bicubic resize.
    dtype: computation dtype, ``'float32'`` or ``'bfloat16'`` (parameters stay float32).
    strict: for checkpoint files, whether keys unknown to the backbone (heads, decoders) are an
      error; by default they are skipped with a warning. Missing keys are always an error.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    if not os.path.exists(os.path.join(path, EXPORT_JSON)):
      raise FileNotFoundError(
          f"{path} is a directory without {EXPORT_JSON}; pass an export directory written by "
          "path_jax.checkpoint.export_backbone, or a .pth/.safetensors/.npz checkpoint file.")
    arch = read_export_json(path)
    if variant is not None and arch["variant"] is not None and variant != arch["variant"]:
      raise ValueError(f"load_backbone(variant={variant!r}) but {path}/{EXPORT_JSON} says "
                       f"{arch['variant']!r}; leave variant=None for export directories.")
    if cls_token is not None and bool(cls_token) != arch["cls_token"]:
      raise ValueError(f"load_backbone(cls_token={cls_token}) but {path}/{EXPORT_JSON} has "
                       f"cls_token={arch['cls_token']}; leave cls_token=None for export "
                       "directories.")
    params_dir = os.path.join(os.path.abspath(path), EXPORT_PARAMS)
    if not os.path.isdir(params_dir):
      raise FileNotFoundError(f"{params_dir} (the orbax checkpoint of the parameters) is missing; "
                              "the export is incomplete, re-run the export.")
    # Host copies: the layout fixes below are then NumPy slicing, with nothing to compile.
    stored = jax.tree.map(np.asarray, _restore_orbax(params_dir))
    if isinstance(stored, dict) and set(stored) == {"params"}:
      stored = stored["params"]
    if "blocks" in stored:   # exported from a scanned model: our module loops
      stored = vit.scan_to_loop(stored, int(arch["depth"]))
    stored_module = _module(arch, arch["pos_grid"], arch["cls_token"], dtype)
    _check_tree(stored, _template(stored_module), params_dir)
    grid = arch["pos_grid"] if pos_grid is None else tuple(pos_grid)
    module = _module(arch, grid, arch["cls_token"], dtype)
    params = _resize_grid(dict(stored), grid)
  elif os.path.isfile(path):
    if variant is None:
      raise ValueError(f"load_backbone({path!r}) needs variant= for a checkpoint file (one of "
                       f"{list(vit.VARIANTS)}); only export directories record their architecture.")
    from path_jax.model import convert
    state_dict = convert.load_state_dict(path)
    has_cls = "cls_token" in state_dict if cls_token is None else bool(cls_token)
    module = _module(vit.variant(variant), (14, 14) if pos_grid is None else tuple(pos_grid),
                     has_cls, dtype)
    params = convert.import_backbone(state_dict, _template(module), strict=strict)
  else:
    raise FileNotFoundError(f"no backbone at {path}: expected an export directory (with "
                            f"{EXPORT_JSON}) or a .pth/.safetensors/.npz checkpoint file.")
  # Host arrays -> uncommitted device arrays: every source gives the same kind of input to the
  # shared jitted forward, so a second load of the same architecture reuses its compilations.
  params = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), params)
  return Backbone(module=module, params=params)
