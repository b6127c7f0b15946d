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

* our export directory (``python -m path_jax.main ... --config.mode=export``, written by
  :func:`path_jax.export.export_backbone`): ``backbone.json`` (the architecture) next to an
  orbax ``backbone/`` checkpoint of the parameters, read by :func:`path_jax.export.load_backbone`
  onto the host whatever mesh it was saved from, looped or scanned;
* a PyTorch state dict in the MAE/timm layout (``.pth``/``.pt`` need torch, ``.safetensors`` and
  ``.npz`` do not), converted by :func:`path_jax.model.convert.import_backbone`; the released
  PATH checkpoints and MAE weights load this way.
"""
from __future__ import annotations

import dataclasses
import functools
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


def _is_export(path: str) -> bool:
  """Whether ``path`` names an export: the directory (or its ``backbone/``), or its JSON.

  Any directory counts: path_jax.export explains what a directory without the JSON lacks.
  """
  return os.path.isdir(path) or (os.path.basename(path) == EXPORT_JSON and os.path.isfile(path))


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
    path: an export directory (``backbone.json`` + orbax ``backbone/``; the JSON's path works
      too) or a ``.pth``/``.pt``/``.safetensors``/``.npz`` state dict in the MAE/timm layout.
    variant: ViT variant (``"B/16"``, ``"L/16"``, ...; see ``path_jax.model.vit.VARIANTS``).
      Required for checkpoint files; for an export, None or the variant its JSON records.
    cls_token: whether the backbone has a cls token. None: from ``backbone.json`` (a different
      value is an error), or for a file, whether the state dict has a ``cls_token`` entry.
    pos_grid: grid of the stored positional embedding. None: ``backbone.json``'s, or (14, 14)
      for a file (a checkpoint's grid is resampled to it); an explicit grid that differs from
      the stored one resamples it with the forward pass's bicubic resize.
    dtype: computation dtype, ``'float32'`` or ``'bfloat16'`` (parameters stay float32).
    strict: for checkpoint files, whether keys unknown to the backbone (heads, decoders) are an
      error; by default they are skipped with a warning. Missing keys are always an error.
  """
  path = os.fspath(path)
  if _is_export(path):
    from path_jax import export as export_lib   # imports orbax: only for exports
    # The export format has one owner (path_jax.export): params come back as host arrays in the
    # layout they were saved in (looped or scanned), with the recorded architecture.
    stored, arch = export_lib.load_backbone(path)
    for key, asked in (("variant", variant), ("cls_token", cls_token)):
      if asked is not None and asked != arch[key]:
        raise ValueError(f"load_backbone({key}={asked!r}) but the export {path} has "
                         f"{key}={arch[key]!r} in its {EXPORT_JSON}; leave {key}=None for "
                         "exports.")
    if "blocks" in stored:   # exported from a scanned model: our module loops
      stored = jax.tree.map(np.asarray, vit.scan_to_loop(stored, int(arch["depth"])))
    stored_grid = tuple(int(g) for g in arch["pos_grid"])
    _check_tree(stored, _template(_module(arch, stored_grid, arch["cls_token"], dtype)), path)
    grid = stored_grid if pos_grid is None else tuple(pos_grid)
    module = _module(arch, grid, arch["cls_token"], dtype)
    params = _resize_grid(dict(stored), grid)
  else:
    if variant is None:
      raise ValueError(f"load_backbone({path!r}) needs variant= (one of {list(vit.VARIANTS)}) "
                       "unless path is an export directory with backbone.json; a state-dict "
                       "file does not record the head count.")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"no backbone at {path}: expected an export directory (with "
                              f"{EXPORT_JSON}) or a .pth/.safetensors/.npz checkpoint file.")
    from path_jax.model import convert
    state_dict = convert.load_state_dict(path)
    has_cls = "cls_token" in state_dict if cls_token is None else bool(cls_token)
    module = _module(vit.variant(variant), (14, 14) if pos_grid is None else tuple(pos_grid),
                     has_cls, dtype)
    params = convert.import_backbone(state_dict, _template(module), strict=strict)
  # Host arrays -> uncommitted device arrays: every source gives the same kind of input to the
  # shared jitted forward, so a second load of the same architecture reuses its compilations.
  params = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), params)
  return Backbone(module=module, params=params)
