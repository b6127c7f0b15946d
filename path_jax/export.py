"""Backbone export and import: our orbax format with a JSON of the architecture, or PyTorch files.

An export directory holds::

  backbone/               the backbone parameters (orbax StandardSave; looped or scanned layout,
                          as recorded in the JSON)
  backbone.safetensors    optional: the same weights in the MAE/timm key layout (REFERENCE §1.5),
                          for the PyTorch ecosystem (path_jax.model.convert.export_backbone)
  backbone.json           the architecture (what path_jax.model.vit.from_config needs), written
                          last: a directory without it is an unfinished export

``load_backbone`` reads such a directory, or a PyTorch ``.pth``/``.safetensors``/``.npz`` state
dict (MAE, timm, the authors' released PATH checkpoints) into a template's shapes.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from path_jax.model import convert
from path_jax.model import vit as vit_lib

FORMAT = "path_jax.backbone"
VERSION = 1
ARCH_KEYS = ("variant", "width", "depth", "num_heads", "mlp_dim", "patch_size", "pos_grid",
             "cls_token", "scan")
_TORCH_EXTS = (".pth", ".pt", ".bin", ".tar", ".safetensors", ".npz")


def arch_from_config(backbone_cfg: Mapping[str, Any]) -> dict[str, Any]:
  """The backbone config with the variant resolved into explicit numbers (``ARCH_KEYS``)."""
  v = backbone_cfg["variant"]
  kw = vit_lib.variant(v)
  for key in ("width", "depth", "num_heads", "mlp_dim", "patch_size"):
    if backbone_cfg.get(key) is not None:
      kw[key] = int(backbone_cfg[key])
  return dict(variant=v, **kw, pos_grid=[int(g) for g in backbone_cfg.get("pos_grid", (14, 14))],
              cls_token=bool(backbone_cfg.get("cls_token", False)),
              scan=bool(backbone_cfg.get("scan", False)))


def _unboxed_numpy_shapes(params: Any) -> dict[str, tuple[int, ...]]:
  import flax.linen as nn
  flat = jax.tree_util.tree_flatten_with_path(nn.unbox(params))[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def check_arch(params: Any, arch: Mapping[str, Any]) -> None:
  """Raises ValueError when ``arch`` does not describe ``params`` (width, depth, grid, ...)."""
  missing = [k for k in ARCH_KEYS if k not in arch]
  if missing:
    raise ValueError(f"backbone arch lacks {missing}; build it with "
                     "path_jax.export.arch_from_config(cfg.model.backbone)")
  have = _arch_from_shapes(params)
  wrong = {k: (arch[k], have[k]) for k in have
           if json.dumps(arch[k]) != json.dumps(have[k])}   # tuples and lists compare equal
  if wrong:
    raise ValueError(f"backbone arch does not match the parameters: {{key: (arch, params)}} = "
                     f"{wrong}")
  c = int(arch["width"])
  if c % int(arch["num_heads"]):
    raise ValueError(f"backbone arch: width {c} is not divisible by num_heads {arch['num_heads']}")


def _gather(params: Any) -> Any:
  """Host numpy copies of (possibly multi-host sharded) arrays."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    params = multihost_utils.process_allgather(params, tiled=True)
  return jax.tree.map(np.asarray, params)


def _umask() -> int:
  """The process umask, read without changing it where Linux shows it (/proc/self/status);
  elsewhere set and restored at once."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except OSError:
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _ordinary_mode(path: str) -> None:
  """Gives ``path`` the mode a plain ``open(path, 'w')`` would (0666 less the umask).

  safetensors creates its file 0600, which left ``backbone.safetensors`` unreadable to the
  group and others while the JSON and the orbax files beside it follow the umask (0644).
  """
  os.chmod(path, 0o666 & ~_umask())


def export_backbone(out_dir: str | os.PathLike, backbone_params: Any, arch: Mapping[str, Any], *,
                    torch_state_dict: bool, cls_row: bool = True) -> dict[str, str]:
  """Writes ``out_dir/backbone/`` (orbax), optionally ``backbone.safetensors``, then
  ``backbone.json``; returns ``{'backbone', 'json'[, 'safetensors']}`` paths.

  Args:
    backbone_params: ``state.params['backbone']`` (sharded or not, boxed or not).
    arch: :func:`arch_from_config` of the backbone config (checked against the shapes).
    torch_state_dict: also write the MAE/timm-layout ``backbone.safetensors``.
    cls_row: with a cls token, put its position in row 0 of ``pos_embed`` (MAE layout);
      otherwise write it as ``cls_token_pos_embed`` (see convert.export_backbone).

  Every process must call it (orbax writes sharded arrays collectively); process 0 writes the
  JSON and the safetensors. An existing export in ``out_dir`` is replaced: its JSON goes first,
  so a crash in between never leaves a directory that looks complete.
  """
  import flax.linen as nn
  params = nn.unbox(backbone_params)
  check_arch(params, arch)
  out = epath.Path(out_dir)
  json_path, ckpt_path = out / "backbone.json", out / "backbone"
  if jax.process_index() == 0:
    out.mkdir(parents=True, exist_ok=True)
    if json_path.exists():
      json_path.unlink()
  paths = {"backbone": os.fspath(ckpt_path), "json": os.fspath(json_path)}
  with ocp.StandardCheckpointer() as ckptr:    # writes to a tmp dir, renames when finished
    ckptr.save(ckpt_path, params, force=True)
    ckptr.wait_until_finished()
  host = None
  if torch_state_dict:
    host = _gather(params)
    paths["safetensors"] = os.fspath(out / "backbone.safetensors")
    if jax.process_index() == 0:
      convert.save_state_dict(convert.export_backbone(host, cls_row=cls_row),
                              paths["safetensors"])
      _ordinary_mode(paths["safetensors"])
  if jax.process_index() == 0:
    doc = {"format": FORMAT, "version": VERSION,
           "arch": {k: (list(v) if isinstance(v, tuple) else v) for k, v in arch.items()},
           "files": {"orbax": "backbone",
                     "safetensors": "backbone.safetensors" if torch_state_dict else None},
           "safetensors_cls_row": bool(cls_row)}
    tmp = out / "backbone.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.rename(json_path)
  return paths


def _export_dir(path: epath.Path) -> epath.Path | None:
  """The export directory ``path`` names (itself, its backbone.json, or its backbone/)."""
  if path.name == "backbone.json" and path.exists():
    return path.parent
  if path.is_dir() and (path / "backbone.json").exists():
    return path
  if path.is_dir() and path.name == "backbone" and (path.parent / "backbone.json").exists():
    return path.parent
  return None


def _place_like(params: Any, template: Any) -> Any:
  """Puts numpy ``params`` on the template's shardings where the template leaves carry one."""
  import flax.linen as nn
  template = nn.unbox(template)

  def place(x, t):
    sh = getattr(t, "sharding", None)
    return jax.device_put(x, sh) if sh is not None else x
  return jax.tree.map(place, params, template)


def load_backbone(path: str | os.PathLike, template_params: Any = None, *,
                  strict: bool = True) -> tuple[Any, dict[str, Any]]:
  """Loads backbone params from an export directory or a PyTorch-layout file.

  Args:
    path: our export directory (or its ``backbone.json`` / ``backbone/``), or a ``.pth``/``.pt``/
      ``.safetensors``/``.npz`` state dict.
    template_params: the target backbone's params (real, or ``jax.eval_shape`` structs, with
      shardings or not). Required for PyTorch files; for our format it is optional and, when
      given, the result takes its layout (looped/scanned), is checked against its shapes and
      placed on its shardings.
    strict: passed to path_jax.model.convert.import_backbone for PyTorch files.

  Returns ``(params, arch)``: numpy arrays (or arrays on the template's shardings) and the
  architecture. For PyTorch files ``arch`` holds what the template's shapes tell (width, depth,
  mlp_dim, patch_size, pos_grid, cls_token, scan); the head count is not in the weights.
  """
  p = epath.Path(path)
  if not p.exists():
    raise FileNotFoundError(f"backbone checkpoint not found: {p}; expected an export directory "
                            "(with backbone.json, written by path_jax.export.export_backbone) or "
                            "a .pth/.safetensors/.npz file")
  export_dir = _export_dir(p)
  if export_dir is not None:
    return _load_export(export_dir, template_params)
  if p.is_file() and os.path.splitext(p.name)[1].lower() in _TORCH_EXTS:
    if template_params is None:
      raise ValueError(f"loading the PyTorch-layout file {p} needs template_params (the target "
                       "backbone's params or their jax.eval_shape), to know the shapes to fill")
    params = convert.import_backbone(convert.load_state_dict(os.fspath(p)), template_params,
                                     strict=strict)
    return _place_like(params, template_params), _arch_from_shapes(params)
  if p.is_dir():
    raise ValueError(f"{p} is a directory without backbone.json: not a (finished) backbone "
                     "export. Expected the output directory of path_jax.export.export_backbone; "
                     "an export interrupted before writing backbone.json is incomplete.")
  raise ValueError(f"cannot load {p}: expected an export directory with backbone.json or a "
                   f"state-dict file with one of the extensions {list(_TORCH_EXTS)}")


def _arch_from_shapes(params: Any) -> dict[str, Any]:
  s = _unboxed_numpy_shapes(params)
  scanned = "blocks/norm1/scale" in s
  prefix = "blocks/" if scanned else "block_0/"
  return dict(width=int(s["pos_embed"][-1]), pos_grid=[int(g) for g in s["pos_embed"][:2]],
              patch_size=int(s["patch_embed/kernel"][0]),
              depth=int(s["blocks/norm1/scale"][0] if scanned
                        else len({k.split("/")[0] for k in s if k.startswith("block_")})),
              mlp_dim=int(s[prefix + "mlp/fc1/kernel"][-1]), cls_token="cls_token" in s,
              scan=scanned)


def _load_export(export_dir: epath.Path, template: Any) -> tuple[Any, dict[str, Any]]:
  doc_path = export_dir / "backbone.json"
  try:
    doc = json.loads(doc_path.read_text())
  except ValueError as e:
    raise ValueError(f"{doc_path} is not valid JSON ({e}); re-run the export") from e
  if doc.get("format") != FORMAT or "arch" not in doc:
    raise ValueError(f"{doc_path} is not a {FORMAT} description (format={doc.get('format')!r}); "
                     "expected the file written by path_jax.export.export_backbone")
  arch = doc["arch"]
  ckpt = export_dir / doc["files"]["orbax"]
  if not ckpt.exists():
    raise FileNotFoundError(f"{doc_path} names {ckpt}, which does not exist; the export is "
                            "incomplete, re-run it")
  with ocp.StandardCheckpointer() as ckptr:
    saved = ckptr.metadata(ckpt).item_metadata.tree
    # Numpy targets read to the host: the saved shardings need not exist on this machine.
    params = ckptr.restore(ckpt, jax.tree.map(lambda m: np.empty(m.shape, m.dtype), saved))
  params = jax.tree.map(np.asarray, params)
  if template is not None:
    want_scan = "blocks/norm1/scale" in _unboxed_numpy_shapes(template)
    if want_scan and not arch["scan"]:
      params = jax.tree.map(np.asarray, vit_lib.loop_to_scan(params))
    elif arch["scan"] and not want_scan:
      params = jax.tree.map(np.asarray, vit_lib.scan_to_loop(params, int(arch["depth"])))
    got, want = _unboxed_numpy_shapes(params), _unboxed_numpy_shapes(template)
    if got != want:
      diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
      raise ValueError(f"backbone export {export_dir} does not fit the template: "
                       f"{[(k, got.get(k), want.get(k)) for k in diff[:8]]} (export, template)")
    params = _place_like(params, template)
  return params, arch
