"""The paper's Table 4 ablations, end to end: pretrain each variant, run the downstream suite on
each export under one protocol, write one table (variants x datasets, the paper's numbers beside).

  python -m path_jax.ablate --suite=mini --workdir=/tmp/ablate --data_dir=/tmp/humanbench_mini/tfds
  python -m path_jax.ablate --suite=humanbench --pretrain_config=configs/vitb.py:scale=8 \\
      --workdir=/ckpt/ablate --data_dir=/data/tfds [--seeds=0] [--variants=a,b,c,d]

Variants (paper Table 4; ``--variants``, default ``a,b,c,d``):

  a  one projector shared by all tasks and datasets ("A"), a positional embedding per dataset
  b  one projector per dataset ("S"), a positional embedding per dataset
  c  one projector per task ("T"), a positional embedding per dataset
  d  one projector per task, the shared positional embedding (PATH, the paper's default)
  noproj  (not in Table 4) the multi-task baseline: no projector, the shared embedding

Each (variant, seed) pretrains into ``WORKDIR/<variant>/seed<k>/pretrain`` (the pretraining
config's ``seed`` is k), exports the backbone (keyed positional embeddings are folded into the
shared layout: ``model.backbone.export_pos_from``) and runs the suite on that export into
``WORKDIR/<variant>/seed<k>/suite`` with the finetuning seed k too (``--set=seed=k``). A finished
pretraining resumes at its last step (only the export runs again) and a finished suite
(``results.json`` with every dataset ``ok``) is read back, so an interrupted ablation is resumed by
running the same command.

Pretraining: ``--suite=mini`` uses configs/mini_suite.py:pretrain_config (the demo model on four
humanbench_mini pretraining sets, ``--pretrain_steps``); ``--suite=humanbench`` loads
``--pretrain_config`` (default configs/vitb.py; the paper's ablation ran on a 1.28 M-image subset,
so a scaled run such as ``configs/vitb.py:scale=8`` with ``--pretrain_set=train.num_steps=N`` is the
usual choice). ``--pretrain_set=key=value`` overrides the pretraining config, ``--set`` the suite's.

Datasets: Table 4's seven (Caltech, PA-100K, PETA, MPII, LIP, Market-1501, MSMT17) on HumanBench;
on humanbench_mini the five downstream stand-ins of its five tasks (mini_caltech, mini_peta,
mini_mpii, mini_atr, mini_dukemtmc). ``--datasets`` picks others.

Written: ``WORKDIR/ablation.json`` (every run's values, per-variant mean and standard deviation
over the seeds, the paper's values, the average and the ranking of the variants per seed) and
``WORKDIR/ablation.md`` (the table). The average follows the paper: lower-is-better columns count
as 100 - value (Table 4's dagger for Caltech's MR^-2).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from path_jax import paper_results  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Variant:
  """One ablation row: projector sharing, positional embedding, projector on/off."""
  name: str
  title: str
  share: str = "task"
  pos_embed: str = "shared"
  projector: bool = True

  def describe(self) -> str:
    if not self.projector:
      return "no projector, shared pos. embedding"
    share = {"all": "A (all shared)", "dataset": "S (per dataset)", "task": "T (per task)"}
    pos = "shared pos. embedding" if self.pos_embed == "shared" else f"pos. embedding per {self.pos_embed}"
    return f"projector {share[self.share]}, {pos}"


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("a", "(a) A", share="all", pos_embed="dataset"),
    Variant("b", "(b) S", share="dataset", pos_embed="dataset"),
    Variant("c", "(c) T", share="task", pos_embed="dataset"),
    Variant("d", "(d) ✓ T", share="task", pos_embed="shared"),
    Variant("noproj", "no projector", projector=False),
)}
DEFAULT_VARIANTS = ("a", "b", "c", "d")
# Table 4's columns, by suite: the suite dataset and the Table 4 column it stands for.
SUITE_DATASETS = {
    "humanbench": {n: n for n in paper_results.TABLE4_DATASETS},
    "mini": {"mini_caltech": "caltech", "mini_peta": "peta", "mini_mpii": "mpii",
             "mini_atr": "lip", "mini_dukemtmc": "market1501"},
}


def apply_variant(cfg, variant: Variant, seed: int) -> None:
  """Sets the pretraining config ``cfg`` to ``variant`` (in place) with seed ``seed``."""
  with cfg.unlocked():
    cfg.seed = int(seed)
    cfg.model.projector.enabled = variant.projector
    cfg.model.projector.share = variant.share
    cfg.model.backbone.pos_embed = variant.pos_embed
    if variant.share != "task":   # explicit groups (human/clothes parsing) are task sharing
      for name in cfg.datasets:
        cfg.datasets[name].projector_group = ""


def pretrain_config(suite: str, config_path: str, steps: int | None, data_dir: str,
                    overrides: Sequence[str]):
  """The base pretraining config of the ablation (before :func:`apply_variant`)."""
  if suite == "mini":
    from configs import mini_suite
    from path_jax import suite as suite_lib
    cfg = mini_suite.pretrain_config(suite_lib.pretrain_steps_or_default(steps))
  else:
    cfg = load_config(config_path)
    if steps:
      cfg.train.num_steps = int(steps)
  if data_dir:
    cfg.data_dir = data_dir
  from path_jax import suite as suite_lib
  for item in overrides:
    key, _, value = item.partition("=")
    if not _:
      raise ValueError(f"--pretrain_set={item!r}: write key=value (e.g. train.num_steps=2000)")
    _set_path(cfg, key, suite_lib.parse_value(value), item)
  return cfg


def load_config(path_arg: str):
  """A config file ``path[:arg]`` as ``--config=`` takes it."""
  import importlib.util
  path, _, arg = path_arg.partition(":")
  if not os.path.exists(path):
    raise FileNotFoundError(f"--pretrain_config: no file {path}")
  spec = importlib.util.spec_from_file_location("ablate_pretrain_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None) if arg else module.get_config()


def _set_path(cfg, key: str, value: Any, item: str) -> None:
  parts = key.split(".")
  node = cfg
  for p in parts[:-1]:
    if p not in node:
      raise KeyError(f"--pretrain_set={item!r}: the pretraining config has no {p!r} in {key!r}")
    node = node[p]
  if parts[-1] not in node:
    raise KeyError(f"--pretrain_set={item!r}: the pretraining config has no field {key!r}")
  with node.unlocked() if hasattr(node, "unlocked") else _nullcontext():
    node[parts[-1]] = value


class _nullcontext:
  def __enter__(self):
    return self

  def __exit__(self, *a):
    return False


def run_variant(variant: Variant, seed: int, *, base_cfg, suite: str, workdir: str,
                datasets: Sequence[str], data_dir: str, protocol: str,
                overrides: Sequence[str]) -> dict[str, Any]:
  """Pretrains, exports and runs the suite for one (variant, seed); returns its record."""
  from path_jax import suite as suite_lib
  from path_jax import train
  root = os.path.join(workdir, variant.name, f"seed{seed}")
  results_path = os.path.join(root, "suite", "results.json")
  if os.path.exists(results_path):
    with open(results_path) as f:
      done = json.load(f)
    if all(done.get("datasets", {}).get(d, {}).get("status") == "ok" for d in datasets):
      logging.info("ablate: %s seed %d already done (%s)", variant.name, seed, results_path)
      return {"suite": done, "seconds": None, "reused": True}
  t0 = time.perf_counter()
  cfg = base_cfg.copy_and_resolve_references()
  apply_variant(cfg, variant, seed)
  pre_dir = os.path.join(root, "pretrain")
  logging.info("ablate: pretraining %s (%s), seed %d, into %s", variant.name, variant.describe(),
               seed, pre_dir)
  train.run(cfg, pre_dir)
  with cfg.unlocked():
    cfg.mode = "export"
  export = str(train.run(cfg, pre_dir))
  pretrain_s = time.perf_counter() - t0
  results = suite_lib.run_suite(
      backbone=export, protocol=protocol, workdir=os.path.join(root, "suite"), suite=suite,
      datasets=list(datasets), data_dir=data_dir,
      overrides=[f"seed={seed}", *overrides], chance=False)
  return {"suite": results, "seconds": time.perf_counter() - t0, "pretrain_seconds": pretrain_s,
          "export": export, "reused": False}


def score(value: float | None, lower_is_better: bool) -> float | None:
  """A value in the paper's averaging convention: higher is better (100 - value otherwise)."""
  if value is None or not math.isfinite(value):
    return None
  return 100.0 - value if lower_is_better else value


def summarise(runs: Mapping[str, Mapping[int, Mapping[str, Any]]], columns: Mapping[str, str]
              ) -> dict[str, Any]:
  """Per-variant mean/std over seeds of each column's score and of the average; the ranking of
  the variants per seed and of the means; the paper's values beside."""
  out: dict[str, Any] = {"variants": {}, "columns": dict(columns)}
  per_seed_avg: dict[int, dict[str, float]] = {}
  for v, seeds in runs.items():
    cols: dict[str, Any] = {}
    avgs = []
    for d, stands in columns.items():
      vals = []
      for seed, rec in sorted(seeds.items()):
        r = rec["suite"]["datasets"].get(d, {})
        lower = bool(r.get("metric", {}).get("lower_is_better", False))
        s = score(r.get("value"), lower) if r.get("status") == "ok" else None
        vals.append(s)
      good = [x for x in vals if x is not None]
      cols[d] = {"stands_for": stands, "per_seed": vals,
                 "mean": float(np.mean(good)) if good else None,
                 "std": float(np.std(good, ddof=1)) if len(good) > 1 else None,
                 "paper": paper_results.TABLE4.get(v, {}).get(stands)}
    for seed, rec in sorted(seeds.items()):
      scores = []
      for d in columns:
        r = rec["suite"]["datasets"].get(d, {})
        lower = bool(r.get("metric", {}).get("lower_is_better", False))
        scores.append(score(r.get("value"), lower) if r.get("status") == "ok" else None)
      if all(s is not None for s in scores):
        avg = float(np.mean(scores))
        avgs.append(avg)
        per_seed_avg.setdefault(seed, {})[v] = avg
    out["variants"][v] = {
        "title": VARIANTS[v].title, "describe": VARIANTS[v].describe(), "columns": cols,
        "average": {"per_seed": avgs, "mean": float(np.mean(avgs)) if avgs else None,
                    "std": float(np.std(avgs, ddof=1)) if len(avgs) > 1 else None,
                    "paper": paper_results.TABLE4.get(v, {}).get("average")}}
  ranked = lambda d: sorted(d, key=lambda v: -d[v])   # noqa: E731
  out["ranking_per_seed"] = {str(s): ranked(a) for s, a in sorted(per_seed_avg.items())}
  means = {v: r["average"]["mean"] for v, r in out["variants"].items()
           if r["average"]["mean"] is not None}
  out["ranking_of_means"] = ranked(means)
  paper = {v: paper_results.TABLE4[v]["average"] for v in means if v in paper_results.TABLE4}
  out["paper_ranking"] = ranked(paper)
  ours = [v for v in out["ranking_of_means"] if v in paper]
  out["same_ordering_as_paper"] = ours == out["paper_ranking"] if len(ours) > 1 else None
  return out


def _cell(c: Mapping[str, Any]) -> str:
  if c["mean"] is None:
    return "–"
  return f"{c['mean']:.1f}" + (f" ± {c['std']:.1f}" if c["std"] is not None else "")


def render_markdown(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
  variants = list(summary["variants"])
  lines = [f"Table 4 ablation on {meta['suite']} ({meta['protocol']} finetuning; seeds "
           f"{', '.join(map(str, meta['seeds']))}; mean ± standard deviation over the seeds; "
           "lower-is-better metrics as 100 - value, the paper's dagger). Paper values in "
           "brackets.", ""]
  lines.append("| dataset (stands for) | " + " | ".join(
      summary["variants"][v]["title"] for v in variants) + " |")
  lines.append("|---" * (len(variants) + 1) + "|")
  first = summary["variants"][variants[0]]["columns"]
  for d in first:
    stands = first[d]["stands_for"]
    row = [f"{d} ({stands})" if d != stands else d]
    for v in variants:
      c = summary["variants"][v]["columns"][d]
      row.append(_cell(c) + (f" [{c['paper']:.1f}]" if c["paper"] is not None else ""))
    lines.append("| " + " | ".join(row) + " |")
  row = ["**average**"]
  for v in variants:
    a = summary["variants"][v]["average"]
    row.append(_cell(a) + (f" [{a['paper']:.1f}]" if a["paper"] is not None else ""))
  lines.append("| " + " | ".join(row) + " |")
  lines.append("")
  for v in variants:
    lines.append(f"- {summary['variants'][v]['title']}: {summary['variants'][v]['describe']}")
  lines.append("")
  lines.append(f"Ranking of the mean averages: {' > '.join(summary['ranking_of_means'])}; "
               f"the paper's: {' > '.join(summary['paper_ranking'])} "
               f"({'same' if summary['same_ordering_as_paper'] else 'not the same'} ordering).")
  for seed, order in summary["ranking_per_seed"].items():
    lines.append(f"- seed {seed}: {' > '.join(order)}")
  return "\n".join(lines) + "\n"


def run_ablation(*, workdir: str, suite: str = "mini", variants: Sequence[str] = DEFAULT_VARIANTS,
                 seeds: Sequence[int] = (0,), datasets: Sequence[str] = (), data_dir: str = "",
                 protocol: str = "full", pretrain_config_path: str = "configs/vitb.py",
                 pretrain_steps: int | None = None, pretrain_overrides: Sequence[str] = (),
                 overrides: Sequence[str] = ()) -> dict[str, Any]:
  """Runs every (variant, seed); writes and returns WORKDIR/ablation.json's content."""
  from path_jax import suite as suite_lib
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f"--variants: unknown {unknown}; use some of {list(VARIANTS)}")
  if suite not in SUITE_DATASETS:
    raise ValueError(f"--suite={suite!r}; use one of {list(SUITE_DATASETS)}")
  if protocol not in ("full", "head", "partial"):
    raise ValueError(f"--protocol={protocol!r}: the ablation finetunes each export; use full, "
                     "head or partial")
  columns = dict(SUITE_DATASETS[suite])
  if datasets:
    names = [e.name for e in suite_lib.suite_entries(suite, protocol)]
    bad = [d for d in datasets if d not in names]
    if bad:
      raise ValueError(f"--datasets: {bad} not in the {suite} suite; valid: {names}")
    entries = {e.name: e.stands_for for e in suite_lib.suite_entries(suite, protocol)}
    columns = {d: columns.get(d, entries[d]) for d in datasets}
  base = pretrain_config(suite, pretrain_config_path, pretrain_steps, data_dir,
                         pretrain_overrides)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.perf_counter()
  runs: dict[str, dict[int, dict[str, Any]]] = {}
  meta = {"suite": suite, "protocol": protocol, "seeds": list(seeds), "variants": list(variants),
          "datasets": columns, "pretrain_steps": int(base.train.num_steps)}
  before = {}   # an earlier invocation's per-run times, for runs read back
  if os.path.exists(os.path.join(workdir, "ablation.json")):
    with open(os.path.join(workdir, "ablation.json")) as f:
      before = json.load(f).get("runs", {})
  for seed in seeds:
    for v in variants:
      rec = run_variant(VARIANTS[v], int(seed), base_cfg=base, suite=suite, workdir=workdir,
                        datasets=list(columns), data_dir=data_dir, protocol=protocol,
                        overrides=overrides)
      if rec.get("reused"):
        old = before.get(v, {}).get(str(seed), {})
        rec["seconds"], rec["pretrain_seconds"] = old.get("seconds"), old.get("pretrain_seconds")
      runs.setdefault(v, {})[int(seed)] = rec
      _write(workdir, meta, runs, columns, time.perf_counter() - t0)   # partial results too
  return _write(workdir, meta, runs, columns, time.perf_counter() - t0)


def _write(workdir, meta, runs, columns, seconds) -> dict[str, Any]:
  summary = summarise(runs, columns)
  doc = {**meta, "seconds": seconds, "summary": summary,
         "runs": {v: {str(s): {"seconds": r.get("seconds"), "pretrain_seconds":
                               r.get("pretrain_seconds"), "reused": r.get("reused"),
                               "datasets": {d: {k: r["suite"]["datasets"].get(d, {}).get(k)
                                                for k in ("status", "value", "reason")}
                                            for d in columns}}
                      for s, r in seeds.items()} for v, seeds in runs.items()}}
  tmp = os.path.join(workdir, "ablation.json.tmp")
  with open(tmp, "w") as f:
    json.dump(doc, f, indent=1)
  os.replace(tmp, os.path.join(workdir, "ablation.json"))
  with open(os.path.join(workdir, "ablation.md"), "w") as f:
    f.write(render_markdown(summary, meta))
  return doc


def main(argv):
  from absl import flags
  from path_jax import logs
  del argv
  FLAGS = flags.FLAGS
  logs.setup()
  doc = run_ablation(
      workdir=FLAGS.workdir, suite=FLAGS.suite,
      variants=[v for v in FLAGS.variants.split(",") if v],
      seeds=[int(s) for s in FLAGS.seeds.split(",") if s],
      datasets=[d for d in FLAGS.datasets.split(",") if d], data_dir=FLAGS.data_dir,
      protocol=FLAGS.protocol, pretrain_config_path=FLAGS.pretrain_config,
      pretrain_steps=FLAGS.pretrain_steps, pretrain_overrides=FLAGS.pretrain_set,
      overrides=FLAGS.set)
  with open(os.path.join(FLAGS.workdir, "ablation.md")) as f:
    table = f.read()
  print(table)
  print(f"({doc['seconds']:.0f} s; {os.path.join(FLAGS.workdir, 'ablation.json')})")
  if FLAGS.update_readme:
    from path_jax import readme
    times = [r["seconds"] for seeds in doc["runs"].values() for r in seeds.values()]
    timing = (f"{sum(t for t in times if t) / 60:.0f} min for {len(times)} pretraining + suite "
              f"runs (about {np.median([t for t in times if t]) / 60:.1f} min each)"
              if all(times) else f"{doc['seconds'] / 60:.0f} min")
    print("updated", readme.replace_block("ablate", (
        f"{table.rstrip()}\n\nMeasured on {readme.machine()}: {timing}; "
        f"{doc['pretrain_steps']} pretraining steps per run.")))


def _define_flags():
  from absl import flags
  flags.DEFINE_string("workdir", None, "Where every run and the table go.")
  flags.DEFINE_enum("suite", "mini", list(SUITE_DATASETS), "Which data: humanbench_mini or "
                    "HumanBench.")
  flags.DEFINE_string("variants", ",".join(DEFAULT_VARIANTS),
                      f"Comma-separated variants of {list(VARIANTS)}.")
  flags.DEFINE_string("seeds", "0", "Comma-separated seeds (pretraining and finetuning).")
  flags.DEFINE_string("datasets", "", "Comma-separated suite datasets (default Table 4's "
                      "columns, or their mini stand-ins).")
  flags.DEFINE_string("data_dir", "", "TFDS data dir ('' = the configs' data_dir).")
  flags.DEFINE_enum("protocol", "full", ["full", "head", "partial"], "Finetuning protocol "
                    "(Table 4: full).")
  flags.DEFINE_string("pretrain_config", "configs/vitb.py", "--suite=humanbench: the pretraining "
                      "config (path[:arg]), e.g. configs/vitb.py:scale=8.")
  flags.DEFINE_integer("pretrain_steps", None, "Pretraining steps (mini default: "
                       "configs/mini_suite.py PRETRAIN_STEPS; HumanBench: the config's).")
  flags.DEFINE_multi_string("pretrain_set", [], "key=value override of the pretraining config.")
  flags.DEFINE_multi_string("set", [], "key=value override of every suite dataset's config "
                            "(as python -m path_jax.suite --set).")
  flags.DEFINE_bool("update_readme", False, "Write the table into README.md (between the "
                    "'ablate:begin' and 'ablate:end' markers), with the machine and time.")
  flags.mark_flag_as_required("workdir")


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
