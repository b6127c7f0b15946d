"""Task packages. Every subpackage of ``path_jax.tasks`` registers one task on import.

Adding a task means adding a folder here; :func:`import_all` finds it.
"""
import importlib
import pkgutil

from path_jax.tasks.base import HeadInputs, Task, get, names, register  # noqa: F401

_imported = False


def import_all() -> None:
  global _imported
  if _imported:
    return
  _imported = True
  for info in pkgutil.iter_modules(__path__):
    if info.ispkg:
      importlib.import_module(f"{__name__}.{info.name}")
