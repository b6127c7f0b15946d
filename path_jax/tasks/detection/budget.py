"""The detection target budget: how many person boxes (``max_boxes``) and ignore regions
(``max_ignore``) one image's targets are padded to, and what happens to an image with more.

Static shapes need a fixed number of slots. The defaults, 500 and 500, keep every person of
CrowdHuman's training set: its most crowded images hold a few hundred annotated boxes (a
third-party count of the released ``.odgt`` files finds at most 391 boxes, persons and ``mask``
regions together, in any image of train + val; the paper gives no maximum, and CrowdDet, from
the CrowdHuman authors' group, pads to 500 boxes per image), and 500 stays below the decoder's
900 queries, which bound the number of matches. The exact
numbers of a prepared dataset are in its ``metadata.json`` (``data/detection/builder.py``
records ``max_persons_per_image`` and ``max_ignore_per_image`` over all splits, and per split
under ``box_counts``); :func:`fill_from_metadata` turns them into the budget.

Who decides, in order: a value set in the config (``config.datasets.<name>.max_boxes``) is kept;
an unset one (None) takes the prepared data's recorded maximum, else the default here. A set
value below the recorded maximum is reported at run start (warning), not overridden: small
budgets are a deliberate choice of scaled-down runs (humanbench_mini uses 8). The training
set-up (``path_jax.train.fill_from_metadata``) calls :func:`fill_from_metadata` for every
detection dataset when a run starts.

An image with more persons than ``max_boxes`` (possible only below the data's maximum) is not
silently cut: the persons beyond the budget become ignore regions (no loss, rather than being
taught as background) while ignore slots remain, beyond that they are dropped, and every such
image is counted and logged as a warning naming the field to raise (:class:`OverflowLog`). A
warning rather than an error because the transform runs in input workers, hours into a run, on
whichever crowded image comes first: the run-start check above is the place to stop a run.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, MutableMapping

DEFAULT_MAX_BOXES = 500
DEFAULT_MAX_IGNORE = 500

# config field -> (metadata key written by data/detection/builder.py, what it counts)
METADATA_KEYS = {"max_boxes": ("max_persons_per_image", "persons"),
                 "max_ignore": ("max_ignore_per_image", "ignore regions")}
DEFAULTS = {"max_boxes": DEFAULT_MAX_BOXES, "max_ignore": DEFAULT_MAX_IGNORE}

log = logging.getLogger(__name__)


def slots(cfg: Mapping[str, Any]) -> tuple[int, int]:
  """``(max_boxes, max_ignore)`` of a dataset config, the defaults standing in for unset (None)
  fields (a config not yet filled from its data)."""
  def get(field):
    value = cfg.get(field, None) if cfg is not None else None
    return DEFAULTS[field] if value is None else int(value)
  return get("max_boxes"), get("max_ignore")


def fill_from_metadata(d: MutableMapping[str, Any], meta: Mapping[str, Any], *, name: str,
                       where: str = "") -> list[str]:
  """Resolves dataset ``name``'s budget fields in place; returns warnings (also logged).

  ``d``: the dataset's config subtree; ``meta``: its prepared data's ``metadata.json`` ({} when
  absent); ``where``: that file, for the messages. Unset (None) fields take the recorded
  maximum (at least 1 box slot, at most ``num_queries`` box slots: a warning says when that
  cap binds), else :data:`DEFAULTS`; set fields are kept, with a warning when the recorded
  maximum exceeds them.
  """
  warnings = []
  place = f" ({where})" if where else ""
  for field, (key, what) in METADATA_KEYS.items():
    have = meta.get(key, None)
    value = d.get(field, None)
    if value is None:
      floor = 1 if field == "max_boxes" else 0
      d[field] = max(floor, int(have)) if have is not None else DEFAULTS[field]
      queries = d.get("num_queries", None)
      if field == "max_boxes" and queries is not None and d[field] > int(queries):
        # Each matched box takes its own query: more slots than queries cannot be supervised.
        warnings.append(
            f"the prepared data{place} has images with up to {d[field]} persons but "
            f"config.datasets.{name}.num_queries={queries}: max_boxes is capped at {queries}, "
            f"so the persons beyond it in such images are not supervised")
        d[field] = int(queries)
    elif have is not None and int(have) > int(value):
      warnings.append(
          f"config.datasets.{name}.{field}={value} but the prepared data{place} has images with "
          f"up to {int(have)} {what}: the {what} beyond {value} in such images are not "
          f"supervised (path_jax/tasks/detection/budget.py); set "
          f"--config.datasets.{name}.{field}={int(have)} to keep them all")
  for w in warnings:
    log.warning("%s", w)
  return warnings


class OverflowLog:
  """Counts images whose targets exceed the budget and logs them, loudly but boundedly.

  A warning goes out for the 1st, 2nd, 4th, 8th, ... such image (one process's counts), each
  with the running totals and the field to raise. ``counts`` holds the totals for tests and
  callers: ``images``, ``persons_to_ignore`` (persons moved to ignore slots), ``persons_dropped``
  and ``ignore_dropped`` (no slot at all), ``largest_persons`` / ``largest_ignore`` (the most
  seen in one image, before any move).
  """

  def __init__(self, max_boxes: int, max_ignore: int, dataset: str):
    self.max_boxes, self.max_ignore, self.dataset = max_boxes, max_ignore, dataset
    self.counts = dict(images=0, persons_to_ignore=0, persons_dropped=0, ignore_dropped=0,
                       largest_persons=0, largest_ignore=0)

  def record(self, persons: int, ignore: int) -> None:
    """One image with ``persons`` person boxes and ``ignore`` ignore regions (after placement)."""
    over = max(0, persons - self.max_boxes)
    if over == 0 and ignore <= self.max_ignore:
      return
    c = self.counts
    room = max(0, self.max_ignore - ignore)
    c["images"] += 1
    c["persons_to_ignore"] += min(over, room)
    c["persons_dropped"] += max(0, over - room)
    c["ignore_dropped"] += max(0, ignore - self.max_ignore)
    c["largest_persons"] = max(c["largest_persons"], persons)
    c["largest_ignore"] = max(c["largest_ignore"], ignore)
    if c["images"] & (c["images"] - 1) == 0:    # 1, 2, 4, 8, ...
      log.warning("%s", self.message())

  def message(self) -> str:
    c = self.counts
    raise_to = []
    if c["largest_persons"] > self.max_boxes:
      raise_to.append(f"config.datasets.<name>.max_boxes (now {self.max_boxes}) to at least "
                      f"{c['largest_persons']}")
    if c["largest_ignore"] > self.max_ignore:
      raise_to.append(f"config.datasets.<name>.max_ignore (now {self.max_ignore}) to at least "
                      f"{c['largest_ignore']}")
    return (f"detection targets over budget in {self.dataset}: {c['images']} image(s) so far "
            f"(up to {c['largest_persons']} persons and {c['largest_ignore']} ignore regions in "
            f"one image); {c['persons_to_ignore']} persons became ignore regions (no loss), "
            f"{c['persons_dropped']} persons and {c['ignore_dropped']} ignore regions were "
            f"dropped (taught as background). Raise {' and '.join(raise_to)}; the prepared "
            "data's metadata.json records the maxima (max_persons_per_image, "
            "max_ignore_per_image).")
