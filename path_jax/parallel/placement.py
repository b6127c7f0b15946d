"""Where each dataset stream runs: 'shared' (every device, every dataset) or 'slices' (the
authors' per-task device groups). Design note: ``path_jax/parallel/PLACEMENT.md``.

Config (``config.placement``)::

  mode: 'shared' | 'slices'
  proportions: 'auto' | 'gpus' | 'flops'   how the mesh is divided among the task groups:
      'gpus' the authors' GPU counts (each dataset's ``gpus`` field, summed per group), 'flops'
      each group's share of the step's analytic FLOPs; 'auto' = 'gpus' when every dataset has
      one, else 'flops'
  weights: 'group=w,...'   explicit proportions (override ``proportions`` for the named groups)
  rows: 'group=n,...'      explicit data rows for the named groups (the rest share what is left)
  round_batches: bool      round every sub-batch to the nearest multiple of its group's batch
      shards (within one device's worth of the configured size) instead of failing

In 'slices' mode a *task group* is, by default, the datasets of one task (a dataset may name
another with ``config.datasets.<name>.placement_group``). The slices are the rows of the mesh's
``data`` axis (one row = ``fsdp x model`` devices): each group owns a contiguous block of rows
(on several TPU slices, the same even block in every slice: :func:`make`) and computes only its
own datasets' backbone passes, projectors, heads and losses there
(path_jax.step_slices.SlicedTrainStep).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping, Sequence

from jax.sharding import Mesh

MODES = ("shared", "slices")
PROPORTIONS = ("auto", "gpus", "flops")
IMBALANCE_WARN = 0.15


@dataclasses.dataclass(frozen=True)
class Group:
  """One task group: its datasets, its rows of the data axis (one contiguous block per TPU
  slice) and its weight."""
  name: str
  datasets: tuple[str, ...]
  row_ids: tuple[int, ...]
  weight: float

  @property
  def rows(self) -> int:
    return len(self.row_ids)


@dataclasses.dataclass
class Placement:
  """The groups of a 'slices' run over ``mesh`` and the sub-mesh of each."""
  mesh: Mesh
  groups: tuple[Group, ...]
  submeshes: dict[str, Mesh]

  def group_of(self, dataset: str) -> Group:
    for g in self.groups:
      if dataset in g.datasets:
        return g
    raise KeyError(f"dataset {dataset!r} is in no task group of this placement")

  def batch_shards(self, group: Group) -> int:
    """How many ways the group's sub-batches are split (its rows x the fsdp axis)."""
    return group.rows * int(self.mesh.shape.get("fsdp", 1))

  def host_share(self, group: Group, process: int) -> tuple[int, int]:
    """``(k, n)``: ``process`` feeds k of the group's n batch shards (k/n of each sub-batch)."""
    sub = self.submeshes[group.name].devices          # [rows, fsdp, model]
    shards = {(i, j) for (i, j, _), d in _indexed(sub) if d.process_index == process}
    return len(shards), sub.shape[0] * sub.shape[1]

  def processes(self, group: Group) -> list[int]:
    """The processes owning the group's devices, in order."""
    return sorted({d.process_index for d in self.submeshes[group.name].devices.flat})


def _indexed(devices):
  import numpy as np
  return [(idx, d) for idx, d in np.ndenumerate(devices)]


def _parse_pairs(text: str, key: str, kind=float) -> dict[str, Any]:
  out = {}
  for token in filter(None, (t.strip() for t in str(text or "").split(","))):
    name, sep, value = token.partition("=")
    if not sep:
      raise ValueError(f"config.placement.{key}={text!r}: write 'group=value,...' (e.g. "
                       f"'pose=13,detection=32')")
    try:
      out[name.strip()] = kind(value)
    except ValueError:
      raise ValueError(f"config.placement.{key}: {value!r} for group {name!r} is not a "
                       f"{kind.__name__}") from None
  return out


def task_groups(datasets_cfg: Mapping[str, Any], names: Sequence[str] | None = None
                ) -> dict[str, tuple[str, ...]]:
  """``{group: datasets}`` in order of first appearance: a dataset's ``placement_group`` or, by
  default, its task."""
  groups: dict[str, list[str]] = {}
  for name in (names if names is not None else list(datasets_cfg)):
    d = datasets_cfg[name]
    group = str(d.get("placement_group", "") or d["task"])
    groups.setdefault(group, []).append(name)
  return {g: tuple(v) for g, v in groups.items()}


def dataset_flops(model, datasets_cfg, name: str) -> float:
  from path_jax import metrics as metrics_lib
  return metrics_lib.flops_per_step(model, {name: datasets_cfg[name]})


def group_weights(cfg, model, groups: Mapping[str, Sequence[str]]) -> tuple[dict[str, float],
                                                                            str]:
  """Each group's share of the mesh, and where it came from ('gpus', 'flops', 'config')."""
  p = cfg.placement
  how = str(p.get("proportions", "auto"))
  if how not in PROPORTIONS:
    raise ValueError(f"config.placement.proportions={how!r}; use one of {PROPORTIONS}")
  gpus = {n: float(cfg.datasets[n].get("gpus", 0) or 0) for ds in groups.values() for n in ds}
  if how == "auto":
    how = "gpus" if all(v > 0 for v in gpus.values()) else "flops"
  if how == "gpus":
    missing = [n for n, v in gpus.items() if v <= 0]
    if missing:
      raise ValueError(f"config.placement.proportions='gpus' but datasets {missing} have no "
                       f"'gpus' count; set config.datasets.<name>.gpus or use 'flops'")
    weights = {g: sum(gpus[n] for n in ds) for g, ds in groups.items()}
  else:
    weights = {g: sum(dataset_flops(model, cfg.datasets, n) for n in ds)
               for g, ds in groups.items()}
  given = _parse_pairs(p.get("weights", ""), "weights")
  unknown = sorted(set(given) - set(groups))
  if unknown:
    raise ValueError(f"config.placement.weights names unknown groups {unknown}; the groups are "
                     f"{list(groups)}")
  if given:
    weights.update(given)
    how += "+config"
  bad = [g for g, w in weights.items() if not w > 0]
  if bad:
    raise ValueError(f"task groups {bad} have no positive weight; set config.placement.weights")
  return weights, how


def assign_rows(weights: Mapping[str, float], num_rows: int,
                fixed: Mapping[str, int] | None = None) -> dict[str, int]:
  """Integer rows per group, at least one each, minimising the largest weight per row (the
  slowest slice): one row each, then every further row to the group with the most weight per
  row. ``fixed`` rows are taken as given."""
  fixed = dict(fixed or {})
  unknown = sorted(set(fixed) - set(weights))
  if unknown:
    raise ValueError(f"config.placement.rows names unknown groups {unknown}; the groups are "
                     f"{list(weights)}")
  if any(v < 1 for v in fixed.values()):
    raise ValueError(f"config.placement.rows {fixed}: every group needs at least one row")
  free = [g for g in weights if g not in fixed]
  left = num_rows - sum(fixed.values())
  if left < len(free) or (not free and left):
    raise ValueError(
        f"placement 'slices' needs at least one row of the mesh's data axis per task group: "
        f"{len(weights)} groups {list(weights)} but the data axis has {num_rows} rows"
        + (f" ({sum(fixed.values())} of them fixed by config.placement.rows)" if fixed else "")
        + "; use more devices, a larger data axis (config.mesh.shape), fewer groups "
          "(config.datasets.<name>.placement_group) or placement.mode='shared'")
  rows = {g: 1 for g in free}
  for _ in range(left - len(free)):
    g = max(free, key=lambda k: (weights[k] / rows[k], -list(weights).index(k)))
    rows[g] += 1
  rows.update(fixed)
  return {g: rows[g] for g in weights}


def make(cfg, mesh: Mesh, model) -> Placement:
  """The placement of ``cfg`` over ``mesh`` (mode 'slices')."""
  names = [s.name for s in model.datasets]
  groups = task_groups(cfg.datasets, names)
  weights, _ = group_weights(cfg, model, groups)
  num_rows = int(mesh.shape["data"])
  slices = data_slices(mesh)
  if num_rows % slices:
    raise ValueError(f"placement 'slices': the data axis ({num_rows} rows) does not split evenly "
                     f"over the {slices} TPU slices; make config.mesh.shape's data axis a "
                     f"multiple of {slices}")
  per_slice = num_rows // slices
  fixed = _parse_pairs(cfg.placement.get("rows", ""), "rows", int)
  ids = None
  if slices > 1:
    # Every group gets the same even block of rows in every slice. libtpu compiles a program on
    # a multi-slice topology only when it has devices in every slice ("Slice is empty"
    # otherwise), the same number in each ("Slices have different partition counts"), and an
    # even number per slice (its multi-slice all-reduce "does not implement" odd groups > 1).
    if per_slice % 2 or any(v % (slices * 2) for v in fixed.values()):
      raise ValueError(
          f"placement 'slices' on {slices} TPU slices gives every task group the same even "
          f"number of rows in each slice: the data axis per slice ({per_slice}) and every "
          f"config.placement.rows entry {fixed or ''} must be multiples of 2 per slice "
          f"({2 * slices} in all)")
    rows = {g: 2 * r for g, r in assign_rows(
        weights, per_slice // 2, {g: v // (slices * 2) for g, v in fixed.items()}).items()}
    ids, start = {}, 0
    for g in groups:
      ids[g] = tuple(s * per_slice + r for s in range(slices)
                     for r in range(start, start + rows[g]))
      start += rows[g]
  if ids is None:
    rows = assign_rows(weights, num_rows, fixed)
    ids, start = {}, 0
    for g in groups:
      ids[g] = tuple(range(start, start + rows[g]))
      start += rows[g]
  out, submeshes = [], {}
  for g, ds in groups.items():
    out.append(Group(g, ds, tuple(sorted(ids[g])), float(weights[g])))
    submeshes[g] = Mesh(mesh.devices[list(out[-1].row_ids)], mesh.axis_names,
                        axis_types=mesh.axis_types)
  return Placement(mesh, tuple(out), submeshes)


def suggest_rows(weights: Mapping[str, float], num_rows: int, slices: int = 1) -> dict[str, int]:
  """Rows per group that :func:`make` accepts as ``config.placement.rows`` on ``slices`` TPU
  slices (on several, multiples of 2 per slice: the same even block in every slice)."""
  if slices == 1:
    return assign_rows(weights, num_rows)
  unit = 2 * slices
  return {g: unit * r for g, r in assign_rows(weights, num_rows // unit).items()}


def data_slices(mesh: Mesh) -> int:
  """How many TPU slices the data axis crosses (1 on one slice, GPUs and CPUs): the rows of each
  slice are a contiguous block of the data axis (path_jax.parallel.mesh.device_grid)."""
  ids = [getattr(d, "slice_index", None) for d in mesh.devices[:, 0, 0]]
  if None in ids:
    return 1
  return len(set(ids))


def round_to(batch: int, unit: int) -> int:
  """``batch`` rounded to the nearest multiple of ``unit`` (halves up), at least ``unit``."""
  return max(unit, int(math.floor(batch / unit + 0.5)) * unit)


def batch_problems(cfg, placement: Placement, *, apply_rounding: bool = False) -> list[str]:
  """Sub-batches that do not divide over their group's batch shards; with ``apply_rounding``
  they are rounded instead (nearest multiple) and logged. (Each host then feeds its devices'
  shards: hosts may feed different numbers of rows of one group.)"""
  problems = []
  for g in placement.groups:
    unit = placement.batch_shards(g)
    for n in g.datasets:
      d = cfg.datasets[n]
      b = int(d.batch_size)
      if b > 0 and b % unit == 0:
        continue
      if apply_rounding and b > 0:
        new = round_to(b, unit)
        logging.info("placement: config.datasets.%s.batch_size %d -> %d (a multiple of the %d "
                     "batch shards of group %r)", n, b, new, unit, g.name)
        with d.unlocked():
          d.batch_size = new
        continue
      problems.append(f"config.datasets.{n}.batch_size={b} is not a multiple of {unit}, the "
                      f"batch shards of its task group {g.name!r} ({g.rows} rows); "
                      f"use {round_to(max(b, 1), unit)} or config.placement.round_batches=True")
  return problems


def balance(cfg, model, placement: Placement) -> dict[str, Any]:
  """FLOPs per chip of every group's slices and the step-time bound they imply (the slowest)."""
  per_group = {}
  devices_per_row = placement.mesh.devices[0].size
  for g in placement.groups:
    flops = sum(dataset_flops(model, cfg.datasets, n) for n in g.datasets)
    per_group[g.name] = {"rows": g.rows, "devices": g.rows * devices_per_row,
                         "datasets": len(g.datasets), "tflops": flops / 1e12,
                         "tflops_per_device": flops / (g.rows * devices_per_row) / 1e12}
  loads = [v["tflops_per_device"] for v in per_group.values()]
  mean = sum(v["tflops"] for v in per_group.values()) / placement.mesh.size
  slowest = max(per_group, key=lambda k: per_group[k]["tflops_per_device"])
  return {"groups": per_group, "slowest": slowest, "max_tflops_per_device": max(loads),
          "mean_tflops_per_device": mean,
          "imbalance": max(loads) / mean - 1.0 if mean > 0 else 0.0}


def log_balance(report: Mapping[str, Any], peak_flops: float | None = None) -> None:
  for name, v in report["groups"].items():
    logging.info("placement: group %-16s %3d rows (%d devices), %2d datasets, %.2f TFLOP/step, "
                 "%.3f TFLOP per device", name, v["rows"], v["devices"], v["datasets"],
                 v["tflops"], v["tflops_per_device"])
  bound = ""
  if peak_flops:
    bound = f" (>= {1e3 * report['max_tflops_per_device'] * 1e12 / peak_flops:.0f} ms per step " \
            f"at peak)"
  logging.info("placement: the slowest slice is %r at %.3f TFLOP per device%s; mean %.3f",
               report["slowest"], report["max_tflops_per_device"], bound,
               report["mean_tflops_per_device"])
  if report["imbalance"] > IMBALANCE_WARN:
    logging.warning("placement: the slowest slice (%r) has %.0f %% more work per device than the "
                    "mean; the step waits for it. Rebalance with config.placement.weights or "
                    ".rows", report["slowest"], 100 * report["imbalance"])


def check_params(param_shardings) -> None:
  """'slices' replicates parameters over the data axis (every slice holds what it computes)."""
  import jax
  for path, sh in jax.tree_util.tree_leaves_with_path(param_shardings):
    for s in sh.spec:
      axes = (s,) if isinstance(s, str) else tuple(s or ())
      if "data" in axes:
        raise ValueError(f"placement 'slices' needs parameters replicated over the data axis, "
                         f"but {jax.tree_util.keystr(path)} is sharded over it "
                         f"({sh.spec}); remove 'data' from config.mesh.rules (fsdp shards "
                         f"within a slice)")


# ----------------------------------------------------------------------------------------------
# The placement table of a config at several mesh sizes (no devices needed).


def plan(cfg, num_rows: int, model=None) -> dict[str, Any]:
  """Rows and rounded sub-batches of every group of ``cfg`` on ``num_rows`` rows, next to what
  'shared' placement needs (every sub-batch a multiple of all ``num_rows`` rows)."""
  groups = task_groups(cfg.datasets)
  weights, how = group_weights(cfg, model, groups)
  rows = assign_rows(weights, num_rows, _parse_pairs(cfg.placement.get("rows", ""), "rows", int))
  out = {"rows": num_rows, "proportions": how, "groups": {}}   # (one slice)
  for g, names in groups.items():
    out["groups"][g] = {
        "rows": rows[g], "weight": weights[g],
        "batch": {n: {"config": int(cfg.datasets[n].batch_size),
                      "slices": round_to(int(cfg.datasets[n].batch_size), rows[g]),
                      "shared": round_to(int(cfg.datasets[n].batch_size), num_rows)}
                  for n in names}}
  return out


def format_table(plans: Sequence[Mapping[str, Any]]) -> str:
  """Markdown: one row per dataset, per mesh size the 'slices' group rows and sub-batch and the
  'shared' sub-batch."""
  head = "| group | dataset | config |" + "".join(
      f" {p['rows']}: rows / slices / shared |" for p in plans)
  lines = [head, "|" + "---|" * (3 + len(plans))]
  for g, entry in plans[0]["groups"].items():
    for n, b in entry["batch"].items():
      cells = "".join(f" {p['groups'][g]['rows']} / {p['groups'][g]['batch'][n]['slices']} / "
                      f"{p['groups'][g]['batch'][n]['shared']} |" for p in plans)
      lines.append(f"| {g} | {n} | {b['config']} |{cells}")
  totals = "".join(
      f" {sum(v['slices'] for e in p['groups'].values() for v in e['batch'].values())} / "
      f"{sum(v['shared'] for e in p['groups'].values() for v in e['batch'].values())} |"
      for p in plans)
  config_total = sum(b["config"] for e in plans[0]["groups"].values() for b in e["batch"].values())
  lines.append(f"| all | images per step (slices / shared) | {config_total} |{totals}")
  return "\n".join(lines)


def main(argv=None) -> int:
  """``python -m path_jax.parallel.placement --config=configs/vitb.py:placement=slices
  --rows=64,128,256,512``: the placement table (markdown)."""
  import sys
  from absl import app, flags
  from ml_collections import config_flags
  config = config_flags.DEFINE_config_file("config", None, "config file", lock_config=False)
  rows = flags.DEFINE_list("rows", ["64", "128", "256", "512"], "data-axis rows (chips when "
                           "fsdp = model = 1)")
  flags.mark_flags_as_required(["config"])

  def _main(args):
    del args
    cfg = config.value
    model = None
    if str(cfg.placement.get("proportions", "auto")) != "gpus":
      from path_jax.model import path as path_lib
      model = path_lib.from_config(cfg, platform="cpu")
    try:
      plans = [plan(cfg, int(r), model) for r in rows.value]
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(f"proportions: {plans[0]['proportions']}; cells: group rows / sub-batch in 'slices' / "
          f"sub-batch in 'shared' (a multiple of every row)")
    print(format_table(plans))
    return 0

  try:
    app.run(_main, argv=argv)
  except SystemExit as e:
    return int(e.code or 0)
  return 0


if __name__ == "__main__":
  import sys as _sys
  _sys.exit(main())
