"""PyTorch interop for the backbone: MAE / timm / released-PATH key layout <-> our parameters.

PyTorch layout (REFERENCE.md §1.4-§1.5)::

  patch_embed.proj.{weight [C,3,p,p], bias}     pos_embed (1, gh*gw, C) or (1, 1+gh*gw, C)
  cls_token (1,1,C)                             blocks.N.{norm1,attn.qkv,attn.proj,norm2,
  norm.{weight,bias}                                      mlp.fc1,mlp.fc2}.{weight,bias}

A ``pos_embed`` with one extra row carries the cls token's position in row 0 (MAE, and the
released PATH ``with_cls_token`` export). Where the checkpoint's grid differs from ours, the grid
is resampled with the same bicubic resize as the forward pass (PyTorch's, A=-0.75).

Files: ``.pth``/``.pt`` need torch (``pip install -e .[torch]``); ``.safetensors`` and ``.npz``
load and save without it. A checkpoint dict that wraps the weights under ``'model'``,
``'state_dict'`` or ``'module'`` is unwrapped, and the authors' training prefixes
(``module.``, ``backbone_module.``, ``backbone.``) are stripped.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

import jax
import numpy as np

from path_jax.model.vit import bicubic_matrix

_PREFIXES = ("module.", "backbone_module.", "backbone.", "encoder.")
# torch suffix -> (our leaf name, transform kind)
_BLOCK_LEAVES = {
    "norm1.weight": ("norm1/scale", "id"), "norm1.bias": ("norm1/bias", "id"),
    "attn.qkv.weight": ("attn/qkv/kernel", "T"), "attn.qkv.bias": ("attn/qkv/bias", "id"),
    "attn.proj.weight": ("attn/proj/kernel", "T"), "attn.proj.bias": ("attn/proj/bias", "id"),
    "norm2.weight": ("norm2/scale", "id"), "norm2.bias": ("norm2/bias", "id"),
    "mlp.fc1.weight": ("mlp/fc1/kernel", "T"), "mlp.fc1.bias": ("mlp/fc1/bias", "id"),
    "mlp.fc2.weight": ("mlp/fc2/kernel", "T"), "mlp.fc2.bias": ("mlp/fc2/bias", "id"),
}


class ConversionError(ValueError):
  """A checkpoint does not fit the backbone; the message lists every offending key."""


# ----------------------------------------------------------------------------------------------
# Files.


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a PyTorch-layout state dict from ``.pth``/``.pt``, ``.safetensors`` or ``.npz``."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint file not found: {path}")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".safetensors":
    from safetensors.numpy import load_file
    sd: Any = load_file(path)
  elif ext == ".npz":
    with np.load(path, allow_pickle=False) as f:
      sd = {k: f[k] for k in f.files}
  elif ext in (".pth", ".pt", ".bin", ".tar"):
    try:
      import torch
    except ImportError as e:
      raise ImportError(f"reading {path} needs PyTorch: pip install -e '.[torch]' "
                        "(or convert it to .safetensors / .npz elsewhere)") from e
    sd = torch.load(path, map_location="cpu", weights_only=True)
  else:
    raise ValueError(f"unknown checkpoint extension {ext!r} for {path}; "
                     "use .pth/.pt, .safetensors or .npz")
  return unwrap(sd)


def unwrap(sd: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Unwraps ``{'model': ...}``-style containers, strips training prefixes, converts to numpy."""
  for key in ("model", "state_dict", "module"):
    if key in sd and isinstance(sd[key], Mapping):
      sd = sd[key]
  out = {}
  for k, v in sd.items():
    name = k
    changed = True
    while changed:
      changed = False
      for p in _PREFIXES:
        if name.startswith(p):
          name, changed = name[len(p):], True
    if hasattr(v, "detach"):
      v = v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
    out[name] = np.asarray(v)
  return out


def save_state_dict(sd: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
  """Writes a state dict as ``.pth`` (``{'model': sd}``, needs torch), ``.safetensors`` or ``.npz``."""
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  tmp = path + ".tmp"
  arrays = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in sd.items()}
  if ext == ".safetensors":
    from safetensors.numpy import save_file
    save_file(arrays, tmp)
  elif ext == ".npz":
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
  elif ext in (".pth", ".pt"):
    import torch
    torch.save({"model": {k: torch.from_numpy(v) for k, v in arrays.items()}}, tmp)
  else:
    raise ValueError(f"unknown checkpoint extension {ext!r} for {path}; "
                     "use .pth/.pt, .safetensors or .npz")
  os.replace(tmp, path)   # never leave a half-written file under the final name


# ----------------------------------------------------------------------------------------------
# Import.


def _resample_grid(grid: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  gh, gw, _ = grid.shape
  if (gh, gw) == tuple(out_hw):
    return grid
  mh, mw = bicubic_matrix(gh, out_hw[0]), bicubic_matrix(gw, out_hw[1])
  return np.einsum("Hh,hwc,Ww->HWc", mh.astype(np.float64), grid.astype(np.float64),
                   mw.astype(np.float64)).astype(np.float32)


def _shape_tree(template: Any) -> dict[str, tuple[int, ...]]:
  """``{'a/b/c': shape}`` for a (possibly abstract, possibly boxed) backbone parameter tree."""
  return {k: tuple(leaf.shape) for k, leaf in _leaves(template).items()}


def _leaves(tree: Any) -> dict[str, Any]:
  import flax.linen as nn
  flat = jax.tree_util.tree_flatten_with_path(nn.unbox(tree))[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in flat}


def _set(tree: dict, path: str, value: np.ndarray) -> None:
  keys = path.split("/")
  for k in keys[:-1]:
    tree = tree.setdefault(k, {})
  tree[keys[-1]] = value


def import_backbone(state_dict: Mapping[str, np.ndarray], template: Any, *,
                    strict: bool = True) -> dict:
  """Converts a PyTorch-layout state dict into backbone params shaped like ``template``.

  Args:
    state_dict: ``{key: array}`` (see :func:`load_state_dict`).
    template: the backbone's parameter tree (real or ``jax.eval_shape`` structs, boxed or not),
      looped (``block_i``) or scanned (``blocks``); the result has the same layout.
    strict: with ``True`` (default) every unknown, missing or mis-shaped key is an error.
      ``False`` skips unknown keys (heads, decoders, MAE's decoder) with a warning, and fills
      backbone keys the checkpoint lacks (e.g. the cls position of a ``wo_cls_token`` export) from
      ``template`` (looped or scanned), which must then hold real arrays; mis-shaped keys are
      always an error.

  Returns the parameter tree (numpy arrays). ``cls_token`` and a ``pos_embed`` cls row are
  dropped silently when the target has no cls token (every MAE checkpoint carries them).
  """
  sd = unwrap(state_dict)
  shapes = _shape_tree(template)
  scanned = any(k.startswith("blocks/") for k in shapes)
  if scanned:
    depth = shapes["blocks/norm1/scale"][0]
    looped_shapes = {}
    for k, s in shapes.items():
      if k.startswith("blocks/"):
        for i in range(depth):
          looped_shapes[f"block_{i}/" + k[len("blocks/"):]] = s[1:]
      else:
        looped_shapes[k] = s
    shapes = looped_shapes
  has_cls = "cls_token" in shapes
  gh, gw, width = shapes["pos_embed"]

  out: dict = {}
  unknown, bad_shape = [], []
  used = set()

  def put(ours: str, value: np.ndarray, torch_key: str):
    if ours not in shapes:
      unknown.append(torch_key)
      return
    if tuple(value.shape) != shapes[ours]:
      bad_shape.append(f"{torch_key}: checkpoint {tuple(value.shape)} -> ours {ours} "
                       f"{shapes[ours]}")
      return
    _set(out, ours, value.astype(np.float32))
    used.add(ours)

  block_re = re.compile(r"^blocks\.(\d+)\.(.+)$")
  for key, value in sd.items():
    m = block_re.match(key)
    if m:
      leaf = _BLOCK_LEAVES.get(m.group(2))
      if leaf is None:
        unknown.append(key)
        continue
      name, kind = leaf
      put(f"block_{m.group(1)}/{name}", value.T if kind == "T" else value, key)
    elif key == "patch_embed.proj.weight":
      put("patch_embed/kernel", np.transpose(value, (2, 3, 1, 0)), key)
    elif key == "patch_embed.proj.bias":
      put("patch_embed/bias", value, key)
    elif key == "norm.weight":
      put("norm/scale", value, key)
    elif key == "norm.bias":
      put("norm/bias", value, key)
    elif key == "cls_token":
      if has_cls:
        put("cls_token", value.reshape(-1), key)
    elif key == "cls_token_pos_embed":   # the authors' separate cls position (REFERENCE §1.2)
      if has_cls:
        put("cls_pos_embed", value.reshape(-1), key)
    elif key == "pos_embed":
      pe = value.reshape(-1, value.shape[-1])
      n = pe.shape[0]
      side = int(round(np.sqrt(n)))
      if side * side == n:
        cls_row, grid = None, pe
      elif int(round(np.sqrt(n - 1))) ** 2 == n - 1:
        side = int(round(np.sqrt(n - 1)))
        cls_row, grid = pe[0], pe[1:]
      else:
        bad_shape.append(f"pos_embed: {value.shape} is neither a square grid nor cls + square grid")
        continue
      if pe.shape[1] != width:
        bad_shape.append(f"pos_embed: width {pe.shape[1]} but the backbone has width {width}")
        continue
      put("pos_embed", _resample_grid(grid.reshape(side, side, -1), (gh, gw)), key)
      if cls_row is not None and has_cls:
        put("cls_pos_embed", cls_row, key)
    else:
      unknown.append(key)

  missing = sorted(set(shapes) - used)
  problems = []
  if missing and not strict:
    flat_t = _leaves(template)
    kept = {k: _template_value(flat_t, k, scanned) for k in missing}
    if any(v is None for v in kept.values()):
      problems.append(f"missing from the checkpoint ({len(missing)}): {missing}; strict=False "
                      "fills them from the template, which needs real (initialised) arrays, "
                      "not shapes")
    else:
      for k, v in kept.items():
        _set(out, k, v.astype(np.float32))
      logging.warning("checkpoint lacks %d backbone keys, kept from initialisation: %s",
                      len(missing), missing)
    missing = []
  if unknown and not strict:
    logging.warning("skipped %d checkpoint keys unknown to the backbone: %s", len(unknown),
                    sorted(unknown)[:20])
  if missing:
    problems.append(f"missing from the checkpoint ({len(missing)}): {missing}")
  if bad_shape:
    problems.append(f"mis-shaped ({len(bad_shape)}): {bad_shape}")
  if unknown and strict:
    problems.append(f"unknown to the backbone ({len(unknown)}): {sorted(unknown)} "
                    "(pass strict=False to skip head/decoder keys)")
  if problems:
    raise ConversionError("cannot import the checkpoint into the backbone:\n  "
                          + "\n  ".join(problems))
  if scanned:
    from path_jax.model.vit import loop_to_scan
    out = jax.tree.map(np.asarray, loop_to_scan(out))
  return out


def _template_value(flat_template: Mapping[str, Any], key: str, scanned: bool):
  """The template's value of looped leaf ``key`` (``block_i/...`` is layer i of the scanned
  ``blocks/...`` stack), as numpy; None when the template holds shapes rather than arrays."""
  if scanned and key.startswith("block_"):
    head, rest = key.split("/", 1)
    leaf = flat_template.get("blocks/" + rest)
    layer = int(head[len("block_"):])
  else:
    leaf, layer = flat_template.get(key), None
  if leaf is None or not hasattr(leaf, "__array__"):
    return None
  value = np.asarray(leaf)
  return value if layer is None else value[layer]


# ----------------------------------------------------------------------------------------------
# Export.


def export_backbone(params: Any, *, cls_row: bool = True) -> dict[str, np.ndarray]:
  """Backbone params (looped or scanned) -> PyTorch/MAE-layout state dict (numpy float32).

  With a cls token and ``cls_row=True`` the position of the cls token becomes row 0 of
  ``pos_embed`` (``(1, 1+gh*gw, C)``, the MAE / released ``with_cls_token`` layout); otherwise
  ``pos_embed`` is ``(1, gh*gw, C)`` and the cls position is written as ``cls_token_pos_embed``.
  """
  import flax.linen as nn
  p = jax.tree.map(np.asarray, nn.unbox(params))
  if "blocks" in p:
    from path_jax.model.vit import scan_to_loop
    p = jax.tree.map(np.asarray, scan_to_loop(p, p["blocks"]["norm1"]["scale"].shape[0]))
  sd: dict[str, np.ndarray] = {}
  sd["patch_embed.proj.weight"] = np.transpose(p["patch_embed"]["kernel"], (3, 2, 0, 1))
  sd["patch_embed.proj.bias"] = p["patch_embed"]["bias"]
  gh, gw, c = p["pos_embed"].shape
  grid = p["pos_embed"].reshape(1, gh * gw, c)
  if "cls_token" in p:
    sd["cls_token"] = p["cls_token"].reshape(1, 1, c)
    if cls_row:
      grid = np.concatenate([p["cls_pos_embed"].reshape(1, 1, c), grid], axis=1)
    else:
      sd["cls_token_pos_embed"] = p["cls_pos_embed"].reshape(1, 1, c)
  sd["pos_embed"] = grid
  depth = len([k for k in p if k.startswith("block_")])
  for i in range(depth):
    blk = p[f"block_{i}"]
    for suffix, (ours, kind) in _BLOCK_LEAVES.items():
      node = blk
      for k in ours.split("/"):
        node = node[k]
      sd[f"blocks.{i}.{suffix}"] = node.T if kind == "T" else node
  sd["norm.weight"] = p["norm"]["scale"]
  sd["norm.bias"] = p["norm"]["bias"]
  return {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}
