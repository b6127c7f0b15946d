"""A console that shows progress and little else.

The libraries under the program log a great deal at INFO: orbax prints multi-kilobyte option
dumps on every save, TFDS announces "Downloading and preparing dataset Unknown size" for local
builds, clu's LoggingWriter repeats every scalar. :func:`setup` keeps INFO lines of this project
(path_jax, configs, data) and WARNING and above from everyone; ``verbose=True`` (``-v 1`` /
``--verbosity=1`` on any entry point) brings the libraries' INFO lines back.
"""
from __future__ import annotations

import logging
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OURS = tuple(os.path.join(_ROOT, d) + os.sep for d in ("path_jax", "configs", "data"))
# Library warnings that are advice about optional speed-ups, not about this run.
_NOISE = ("OpenCV is not installed",)


class _Quiet(logging.Filter):
  """Drops library records below WARNING (and known irrelevant warnings)."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      msg = record.getMessage() if record.args else str(record.msg)
      return not any(n in msg for n in _NOISE)
    return record.pathname.startswith(_OURS) or record.pathname == "<stdin>"


_FILTER = _Quiet()


def setup(verbose: bool | None = None) -> None:
  """Installs the filter on every handler of the root logger (absl's included); idempotent.

  ``verbose=None``: verbose when absl's ``--verbosity`` is 1 or more (``-v 1``)."""
  if verbose is None:
    try:
      from absl import flags
      verbose = flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1
    except (ImportError, AttributeError):
      verbose = False
  handlers = list(logging.getLogger().handlers)
  try:
    from absl import logging as absl_logging
    handlers.append(absl_logging.get_absl_handler())
  except ImportError:
    pass
  for h in handlers:
    if verbose:
      h.removeFilter(_FILTER)
    elif _FILTER not in h.filters:
      h.addFilter(_FILTER)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
