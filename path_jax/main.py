"""``python -m path_jax.main --config=configs/vitb.py --workdir=DIR [--config.a.b=value ...]``.

The config (a Python file with ``get_config(arg)``, optionally ``--config=configs/x.py:arg``) is
locked: an override of a field that does not exist fails at once. ``config.mode`` chooses
pretraining, finetuning, evaluation or export (path_jax.train.run).
"""
import os
import sys

# TensorFlow (tfds, clu) must not take accelerators from JAX, nor flood the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Data workers: one BLAS thread each, or NumPy target generation fights the training threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The configs package lives at the repository root, next to path_jax.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py), optionally with ':arg'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and exports go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax
  jax.config.parse_flags_with_absl()
  if jax.default_backend() != "cpu":
    # clu and tfds load TensorFlow: keep it off the accelerators JAX uses.
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
  from path_jax import train
  result = train.run(_CONFIG.value, _WORKDIR.value)
  logging.info("done: %s", result if not isinstance(result, dict) else
               {k: v for k, v in result.items() if k != "config"})


if __name__ == "__main__":
  app.run(main)
