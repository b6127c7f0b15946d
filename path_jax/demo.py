"""The README demo, end to end on humanbench_mini (CPU, minutes).

  python -m path_jax.demo --workdir=/tmp/path_demo [--steps=300] [--finetune_steps=150]

1. builds humanbench_mini into ``$HUMANBENCH_MINI_DIR`` (default /tmp/humanbench_mini/tfds) unless
   it is already there;
2. pretrains the tiny PATH model of configs/demo.py on the five pretraining sets;
3. exports the backbone (orbax + backbone.json + backbone.safetensors);
4. evaluates the pretraining checkpoint on the pretraining sets' eval splits (``mode='evaluate'``)
   and draws their pictures (pose, parsing, detection, ReID, attributes) into
   ``WORKDIR/pretrain/eval/pictures/``;
5. finetunes it with the partial protocol on the held-out downstream sets (ReID on unseen
   identities and cameras, PETA-style attributes) and evaluates (pictures in
   ``WORKDIR/finetune/eval/pictures/``);
6. prints a results table with a chance baseline computed on the same evaluation data (random
   features / random scores through the same evaluators), and where the pictures are.

Every step is the same code path as ``python -m path_jax.main`` with the corresponding config.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from absl import app, flags, logging  # noqa: E402
from path_jax import readme  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/path_demo", "Where the demo writes everything.")
_STEPS = flags.DEFINE_integer("steps", 300, "Pretraining steps.")
_FT_STEPS = flags.DEFINE_integer("finetune_steps", 150, "Finetuning steps.")
_SIZE = flags.DEFINE_enum("size", "default", ["default", "tiny"], "humanbench_mini size.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of both runs (parameters, data order, dropout).")
_UPDATE_README = flags.DEFINE_bool(
    "update_readme", False, "Write this run's table and times into README.md (between the "
    "'demo:begin' and 'demo:end' markers), with the machine they ran on.")

README_BEGIN, README_END = readme.markers("demo")

# Metrics shown in the table: (task, metric key, higher is better).
SHOWN = {"reid": ("rank1", "mAP"), "attributes": ("mA", "f1"), "counting": ("MAE",),
         "parsing": ("mIoU",), "pose": ("EPE",), "detection": ("AP",)}


def chance_metrics(cfg, name: str) -> dict[str, float]:
  """The evaluator's result for random predictions on the same evaluation data (seeded)."""
  import numpy as np
  from path_jax import evaluate as eval_lib
  from path_jax.input import eval as eval_input, sources
  d = cfg.datasets[name]
  rng = np.random.default_rng(0)
  evaluator = eval_lib.make_evaluator(d.task, d)
  for part in str(d.eval_split).split("+"):
    source = sources.open_source(d.tfds_name, part, d.data_dir)
    for batch in eval_input.eval_iterator_for(d.task, d, source, 64):
      n = batch["mask"].shape[0]
      if d.task == "reid":
        batch["is_query"] = np.full(n, part == "query")
        preds = {"feature": rng.normal(size=(n, 16)).astype(np.float32)}
      elif d.task == "attributes":
        preds = {"probs": rng.random(batch["labels"].shape).astype(np.float32)}
      else:
        return {}
      evaluator.update(preds, batch)
  return {k: float(v) for k, v in evaluator.result().items() if np.ndim(v) == 0}


def table(results: dict, chance: dict, cfg) -> str:
  lines = ["| dataset | task | metric | PATH-mini (partial FT) | chance |",
           "|---|---|---|---|---|"]
  for name, metrics in results.items():
    task = cfg.datasets[name].task
    for key in SHOWN.get(task, ()):
      if key in metrics:
        c = chance.get(name, {}).get(key)
        lines.append(f"| {name} | {task} | {key} | {metrics[key]:.3f} | "
                     f"{'-' if c is None else f'{c:.3f}'} |")
  return "\n".join(lines)


def main(argv):
  del argv
  from configs import demo
  from path_jax import logs, train
  logs.setup()
  workdir = _WORKDIR.value
  t0 = time.perf_counter()

  data_dir = demo.common.demo_data_dir()
  if not os.path.exists(os.path.join(data_dir, "humanbench_mini.json")):
    from data.humanbench_mini import build_all
    logging.info("building humanbench_mini into %s", data_dir)
    build_all.build_all(data_dir, size=_SIZE.value)
  t_data = time.perf_counter()

  pre = demo.get_config("pretrain")
  pre.train.num_steps = _STEPS.value   # the schedule's length and warm-up follow it
  pre.seed = _SEED.value
  pre_dir = os.path.join(workdir, "pretrain")
  train.run(pre, pre_dir)
  t_pre = time.perf_counter()

  exp = demo.get_config("pretrain")
  exp.mode = "export"
  export_dir = train.run(exp, pre_dir)
  t_exp = time.perf_counter()

  # The pretraining tasks' pictures: the newest pretraining checkpoint on every pretraining set
  # with an eval split (all five of humanbench_mini's; ~20 s on 2 cores).
  ev = demo.get_config("pretrain")
  ev.mode = "evaluate"
  ev.evaluate.output = os.path.join(pre_dir, "eval")
  pre_eval = train.run(ev, pre_dir)
  t_pre_eval = time.perf_counter()

  ft = demo.get_config("finetune")
  ft.train.num_steps = _FT_STEPS.value
  ft.seed = _SEED.value
  ft.finetune.init_from = export_dir
  ft_dir = os.path.join(workdir, "finetune")
  result = train.run(ft, ft_dir)
  t_ft = time.perf_counter()

  chance = {n: chance_metrics(ft, n) for n in result.get("eval", {})}
  text = table(result.get("eval", {}), chance, ft)
  pictures = [os.path.join(d, "eval", "pictures") for d in (pre_dir, ft_dir)]
  summary = {"results": result.get("eval", {}), "chance": chance,
             "pretrain_eval": pre_eval, "pictures": pictures,
             "seconds": {"data": t_data - t0, "pretrain": t_pre - t_data,
                         "export": t_exp - t_pre, "pretrain_eval": t_pre_eval - t_exp,
                         "finetune_and_eval": t_ft - t_pre_eval,
                         "total": time.perf_counter() - t0}}
  with open(os.path.join(workdir, "demo_results.json"), "w") as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(workdir, "demo_results.md"), "w") as f:
    f.write(text + "\n")
  print("\n" + text)
  sec = summary["seconds"]
  print(f"\ntotal {sec['total']:.0f} s "
        f"(data {sec['data']:.0f}, pretrain {sec['pretrain']:.0f}, "
        f"pretrain eval {sec['pretrain_eval']:.0f}, "
        f"finetune+eval {sec['finetune_and_eval']:.0f}); everything is in {workdir}")
  if _UPDATE_README.value:
    print(f"updated {update_readme(text, sec, _SEED.value)}")
  print("pictures of predictions:")
  for folder, what in zip(pictures, ("pretraining tasks", "finetuned downstream tasks")):
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    print(f"  {folder}/ ({what}): {', '.join(names) if names else 'none'}")


def update_readme(text: str, sec: dict, seed: int, path: str | None = None) -> str:
  """Replaces the README's demo block (between the markers) by this run's table and times."""
  return readme.replace_block("demo", (
      f"{text}\n\nSeed {seed}, measured on {readme.machine()}: "
      f"{sec['total']:.0f} s in total (data build {sec['data']:.0f} s, pretraining "
      f"{sec['pretrain']:.0f} s, export {sec['export']:.0f} s, pretraining-set evaluation "
      f"{sec['pretrain_eval']:.0f} s, finetuning and evaluation "
      f"{sec['finetune_and_eval']:.0f} s)."), path)

if __name__ == "__main__":
  app.run(main)
