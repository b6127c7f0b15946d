"""Writing measured results into README.md blocks (``<!-- name:begin -->`` ... ``<!-- name:end -->``),
so the README's tables are the commands' own output (path_jax.demo, path_jax.ablate)."""
from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> str:
  """'N CPU cores (model)' of this host, for the README's measurements."""
  model = ""
  try:
    with open("/proc/cpuinfo") as f:
      model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{cores} CPU cores" + (f" ({model})" if model else "")


def markers(name: str) -> tuple[str, str]:
  return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_block(name: str, body: str, path: str | None = None) -> str:
  """Replaces the README block ``name`` (between its markers) by ``body``; returns the path."""
  path = path or os.path.join(ROOT, "README.md")
  begin, end = markers(name)
  with open(path) as f:
    text = f.read()
  if begin not in text or end not in text:
    raise ValueError(f"{path} has no {begin} ... {end} block to update")
  head, rest = text.split(begin, 1)
  tail = rest.split(end, 1)[1]
  with open(path, "w") as f:
    f.write(f"{head}{begin}\n{body}\n{end}{tail}")
  return path
