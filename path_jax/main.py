"""``python -m path_jax.main --config=configs/vitb.py --workdir=DIR [--config.a.b=value ...]``.

The config (a Python file with ``get_config(arg)``, optionally ``--config=configs/x.py:arg``) is
locked: an override of a field that does not exist fails at once. ``config.mode`` chooses
pretraining, finetuning, evaluation or export (path_jax.train.run).

Exit codes: 0 done; 2 the command line or the config is wrong (nothing was written);
75 (EX_TEMPFAIL) preempted: a checkpoint was saved, run the same command again to resume
(launch/slurm.sbatch requeues on it); 1 any other failure.
"""
import os
import sys

# TensorFlow (tfds, clu) must not take accelerators from JAX, nor flood the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # TF only reads data here: no notice
# Data workers: one BLAS thread each, or NumPy target generation fights the training threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The configs package lives at the repository root, next to path_jax.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PREEMPTED = 0, 1, 2, 75

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py), optionally with ':arg'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and exports go.")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (file + argument + overrides): every field "
    "with its value, then exit without running.")

HELP = """\
path_jax: PATH pretraining, HumanBench finetuning, evaluation and export.

usage: python -m path_jax.main --config=FILE[:ARG] --workdir=DIR [--config.FIELD=VALUE ...]
       python -m path_jax.main --config=FILE[:ARG] --print_config   (list every field, then exit)

modes (--config.mode=...):
  pretrain   train the backbone + projectors + heads on the config's dataset mixture
  finetune   train from an exported backbone (--config.finetune.init_from=EXPORT_DIR or .pth),
             protocol --config.finetune.protocol=full|head|partial, then evaluate
  evaluate   evaluate the newest checkpoint of --workdir (or init_from's backbone)
  export     write the backbone of --workdir's newest checkpoint to WORKDIR/export

config files:
  configs/vitb.py                the paper's ViT-B/16 pretraining (args: scale=N, divisor=N,
                                 share=task|all|dataset, placement=slices)
  configs/vitl.py                ViT-L/16
  configs/finetune/<dataset>.py  the 19 HumanBench downstream datasets
  configs/demo.py[:finetune]     the tiny model on the synthetic humanbench_mini data

A run resumes from the newest complete checkpoint in --workdir. SIGTERM/SIGINT saves a
checkpoint and exits with code 75 (rerun to resume); a second signal exits at once.
Exit codes: 0 done, 2 bad command line or config (nothing written), 75 preempted, 1 failure.
Library INFO logs are hidden; --verbosity=1 shows them. Other flags: --helpfull.
"""


def _parse_flags(argv):
  """absl's parser with short, traceback-free errors (exit 2) and our own --help (exit 0)."""
  if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
    print(HELP)
    sys.exit(EXIT_OK)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:   # from the config file/override
    message = str(e.args[0]) if e.args else str(e)
    if message.startswith("'") and "\\n" in message:       # ml_collections' escaped KeyError
      message = message.strip("'").replace("\\n", " ").replace("\\'", "'")
  if "Traceback (most recent call last)" in message:   # a config file's get_config raised
    lines = [ln for ln in message.splitlines() if ln.strip()]
    message = f"{lines[0]} {lines[-1]}"
  sys.stderr.write(f"error: {message}\n(python -m path_jax.main --help shows the usage)\n")
  sys.exit(EXIT_USAGE)


def _table(results) -> str:
  """``{dataset: {metric: value}}`` -> aligned lines (scalars only)."""
  lines = []
  for name, metrics in results.items():
    for k, v in metrics.items():
      if isinstance(v, (int, float)):
        lines.append(f"  {name:<24s} {k:<24s} {v:.4f}")
  return "\n".join(lines)


def summary(cfg, workdir: str, result) -> str:
  """What a run leaves behind, in a few lines (printed at the end of main)."""
  if cfg.mode == "export":
    import json
    from path_jax import train
    try:
      with open(os.path.join(str(result), train.EXPORT_REPORT)) as f:
        return train.export_message(json.load(f), str(result))
    except OSError:
      return f"exported to {result}"
  out = []
  if cfg.mode in ("pretrain", "finetune"):
    total = int(cfg.train.num_steps)
    if result.get("preempted"):
      out.append(f"preempted at step {result['step']}/{total}: checkpoint saved in {workdir}; "
                 f"run the same command again to resume (exit code {EXIT_PREEMPTED})")
    else:
      out.append(f"{cfg.mode} finished: step {result['step']}/{total}, checkpoints in "
                 f"{workdir}/checkpoints")
    final = result.get("final_metrics") or {}
    losses = {k.split("/", 1)[1]: v for k, v in final.items() if k.startswith("loss/")}
    if losses:
      out.append(f"last logged losses (step {result.get('final_step', '?')}):")
      out += [f"  {n:<24s} {v:.4f}" for n, v in sorted(losses.items())]
  evals = result.get("eval") if cfg.mode != "evaluate" else result
  if evals:
    out.append("evaluation:")
    out.append(_table(evals))
    out.append(f"results: {cfg.evaluate.output or os.path.join(workdir, 'eval')}/results.json")
  return "\n".join(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    cfg = _CONFIG.value
    if cfg is not None:
      cfg.get("mode")   # a config file that failed to load raises here
  except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
    sys.stderr.write(f"error: {e}\n")
    return EXIT_USAGE
  if cfg is None:
    sys.stderr.write("error: --config is required, e.g. --config=configs/demo.py "
                     "(python -m path_jax.main --help)\n")
    return EXIT_USAGE
  if _PRINT_CONFIG.value:
    print(cfg)
    return EXIT_OK
  if not _WORKDIR.value:
    sys.stderr.write("error: --workdir is required: where checkpoints, metrics and exports go\n")
    return EXIT_USAGE
  from path_jax import logs
  logs.setup()
  import jax
  jax.config.parse_flags_with_absl()
  if jax.default_backend() != "cpu":
    # clu and tfds load TensorFlow: keep it off the accelerators JAX uses.
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
  from path_jax import config_check, train
  try:
    result = train.run(cfg, _WORKDIR.value)
  except config_check.ConfigError as e:
    sys.stderr.write(f"error: {e}\n")
    return EXIT_USAGE
  text = summary(cfg, _WORKDIR.value, result)
  if text and jax.process_index() == 0:
    print("\n" + text, flush=True)
  if isinstance(result, dict) and result.get("preempted"):
    return EXIT_PREEMPTED
  return EXIT_OK


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
