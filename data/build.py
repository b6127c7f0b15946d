"""Builds a HumanBench TFDS dataset programmatically (ArrayRecord output).

    python data/build.py <builder>/<config> --manual_dir=DIR --data_dir=DIR [--overwrite] [--strict]
        [--exclude_hashes=FILE [--exclude_threshold=0]] [--frame_every=8]

``manual_dir`` is the dataset's own root folder (layouts in data/README.md). The dataset is built
into a temporary folder under ``data_dir`` and moved to ``data_dir/<builder>/<config>/<version>``
only when the build succeeded, so a failed build never touches a previous good one. A
``build_report.json`` (skipped and dropped inputs) is written next to the dataset files. Read
the result with ``tfds.data_source('<builder>/<config>', data_dir=DIR)``; training does not
import the builders.

Pretraining filters of the ``train`` split (paper §3; data/common.py): ``--exclude_hashes``
drops records whose image's dHash is within ``--exclude_threshold`` bits of an evaluation image
of the hash file (written by ``data/tools/dedup.py --write_hashes``); ``--frame_every=N`` keeps
1 frame in N per video of a video-derived config (ignored by the others; 1 keeps all). The
options (and the hash file's SHA-256) are recorded in ``build_report.json``; an existing build
made with other options is an error unless ``--overwrite``.

(``tfds build`` of tensorflow-datasets 4.9.10 needs apache_beam at import, hence this command.)
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import shutil
import sys
import uuid
from typing import Mapping

if __package__ in (None, ""):
  # Run as a script: make the repository root importable so that ``data.*`` resolves.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow_datasets as tfds  # noqa: E402

from data import common  # noqa: E402
from data.tools import dedup  # noqa: E402

# builder name -> "module:class"
BUILDERS = {
    "reid": "data.reid.builder:Reid",
    "pose": "data.pose.builder:Pose",
    "parsing": "data.parsing.builder:Parsing",
    "attributes": "data.attributes.builder:Attributes",
    "detection": "data.detection.builder:Detection",
    "counting": "data.counting.builder:Counting",
}


def builder_class(name: str):
  """The builder class registered under ``name`` (e.g. 'reid')."""
  if name not in BUILDERS:
    near = difflib.get_close_matches(name, BUILDERS, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown builder {name!r}; valid: {sorted(BUILDERS)}.{hint}")
  module, cls = BUILDERS[name].split(":")
  return getattr(importlib.import_module(module), cls)


def parse_name(full: str):
  """'reid/market1501' -> (builder class, config name), checking both."""
  if "/" not in full:
    raise ValueError(f"expected <builder>/<config>, got {full!r}; builders: {sorted(BUILDERS)}")
  name, config = full.split("/", 1)
  cls = builder_class(name)
  configs = [c.name for c in cls.BUILDER_CONFIGS]
  if config not in configs:
    near = difflib.get_close_matches(config, configs, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown config {config!r} of builder {name!r}; valid: {configs}.{hint}")
  return cls, config


SOURCES = ("publisher", "humanbench_mini")


def built_source(folder: str) -> str:
  """The ``source`` recorded in a built dataset's build_report.json ('publisher' when absent)."""
  try:
    with open(os.path.join(folder, "build_report.json")) as f:
      return json.load(f).get("source") or "publisher"
  except (OSError, ValueError):
    return "publisher"


class OptionsMismatchError(ValueError):
  """An existing build was made with other filter options than the ones asked for."""


# The options that change a build's content (build_report.json "options").
_COMPARED = ("exclude_hashes_sha256", "exclude_threshold", "frame_every")


def build_options(full_name: str, *, exclude_hashes: str | None = None,
                  exclude_threshold: int = 0,
                  frame_every: int = common.FRAME_EVERY) -> dict:
  """The options a build of ``full_name`` records; ``None`` where an option does not apply
  (no hash file: no threshold; not a video-derived config: no frame sampling)."""
  cls, config = parse_name(full_name)
  cfg = next(c for c in cls.BUILDER_CONFIGS if c.name == config)
  video = common.is_video(cls.name, cfg)
  return {"exclude_hashes": os.path.abspath(exclude_hashes) if exclude_hashes else None,
          "exclude_hashes_sha256": dedup.file_digest(exclude_hashes) if exclude_hashes else None,
          "exclude_threshold": exclude_threshold if exclude_hashes else None,
          "frame_every": frame_every if video else None, "video": video}


def built_report(folder: str) -> dict | None:
  """A built dataset's build_report.json, or None if there is none."""
  try:
    with open(os.path.join(folder, "build_report.json")) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def options_differences(report: dict | None, options: Mapping) -> list[str]:
  """'<option>: built with X, asked for Y' for each option of ``report`` that differs.

  A build from before the options were recorded counts as built without them (no exclusion,
  every frame kept)."""
  recorded = (report or {}).get("options")
  if recorded is None:
    recorded = {"exclude_hashes_sha256": None, "exclude_threshold": None,
                "frame_every": 1 if options.get("video") else None}
  return [f"{k}: built with {recorded.get(k)!r}, asked for {options.get(k)!r}"
          for k in _COMPARED if recorded.get(k) != options.get(k)]


def build(full_name: str, manual_dir: str, data_dir: str, *, overwrite: bool = False,
          strict: bool = False, source: str = "publisher", exclude_hashes: str | None = None,
          exclude_threshold: int = 0, frame_every: int = common.FRAME_EVERY) -> str:
  """Builds ``<builder>/<config>`` into ``data_dir``; returns the dataset's version folder.

  ``source`` is recorded in ``build_report.json``: ``'publisher'`` (the dataset's own files) or
  ``'humanbench_mini'`` (the synthetic sets, which reuse the real names); training refuses data
  of the other kind than its config's ``data_kind``. An existing build of the other kind is
  never kept silently: without ``overwrite`` the build fails and names it.

  Raises ``common.MissingInputError`` (naming the expected layout) when inputs are missing,
  ``common.BadInputError`` for bad inputs under ``strict``; in both cases nothing under
  ``data_dir/<builder>/<config>`` changes.

  ``exclude_hashes`` (a hash file of data/tools/dedup.py), ``exclude_threshold`` (bits) and
  ``frame_every`` filter the ``train`` split (module docstring). An existing build made with
  other options raises :class:`OptionsMismatchError` unless ``overwrite``.
  """
  cls, config = parse_name(full_name)
  tfds.disable_progress_bar()
  if exclude_hashes and not os.path.isfile(exclude_hashes):
    raise common.MissingInputError(
        f"--exclude_hashes {exclude_hashes}: no such file; write it with "
        "python data/tools/dedup.py --write_hashes=FILE --eval DIR (or --tfds NAME --data_dir "
        "DIR)")
  options = build_options(full_name, exclude_hashes=exclude_hashes,
                          exclude_threshold=exclude_threshold, frame_every=frame_every)
  hashes = dedup.read_hash_file(exclude_hashes) if exclude_hashes else None
  kwargs = dict(file_format="array_record", strict=strict, exclude_hashes=hashes,
                exclude_threshold=exclude_threshold, frame_every=frame_every)
  probe = cls(config=config, data_dir=data_dir, **kwargs)
  final = os.fspath(probe.data_dir)  # data_dir/<builder>/<config>/<version>
  if source not in SOURCES:
    raise ValueError(f"build source {source!r}: use one of {SOURCES}")
  if os.path.isdir(final) and not overwrite and built_source(final) != source:
    raise ValueError(f"{full_name}: {final} already holds a {built_source(final)!r} build, not "
                     f"{source!r} data (humanbench_mini reuses the real datasets' names); pass "
                     f"--overwrite to replace it or build into another --data_dir")
  if os.path.isdir(final) and not overwrite:
    diffs = options_differences(built_report(final), options)
    if diffs:
      raise OptionsMismatchError(
          f"{full_name}: {final} was built with other options ({'; '.join(diffs)}); pass "
          "--overwrite to rebuild it with these, or build into another --data_dir")
    print(f"{full_name}: already built at {final}; pass --overwrite to rebuild.")
    return final
  manual_dir = os.path.abspath(manual_dir)
  if not os.path.isdir(manual_dir):
    raise common.MissingInputError(common.missing_message(
        cls.name, probe.builder_config, manual_dir, ["(the folder itself)"],
        cls.layout(probe.builder_config)))
  probe.check_layout(manual_dir)  # Fail fast, before TFDS creates anything.

  tmp_root = os.path.join(data_dir, ".incomplete", f"{cls.name}_{config}_{uuid.uuid4().hex[:8]}")
  try:
    builder = cls(config=config, data_dir=tmp_root, **kwargs)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP))
    built = os.fspath(builder.data_dir)
    with open(os.path.join(built, "build_report.json"), "w") as f:
      json.dump({"dataset": full_name, "source": source, "manual_dir": manual_dir,
                 "splits": {k: v.num_examples for k, v in builder.info.splits.items()},
                 "options": options, **builder.report.as_dict()}, f, indent=1)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    backup = None
    if os.path.exists(final):
      backup = f"{final}.old_{uuid.uuid4().hex[:8]}"
      os.rename(final, backup)
    os.rename(built, final)
    if backup:
      shutil.rmtree(backup)
  finally:
    shutil.rmtree(tmp_root, ignore_errors=True)
    try:
      os.rmdir(os.path.join(data_dir, ".incomplete"))
    except OSError:
      pass  # Another build is using it, or it is already gone.
  report = builder.report
  print(f"{full_name}: built {final} "
        f"({', '.join(f'{k}={v.num_examples}' for k, v in builder.info.splits.items())}); "
        f"skipped {dict(report.skipped) or 0}, dropped {dict(report.dropped) or 0}"
        + (f", excluded {dict(report.excluded) or 0}" if hashes is not None else "")
        + "".join(f", {s}: kept {v['kept_frames']} of {v['frames']} frames"
                  for s, v in report.frames.items()))
  return final


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("name", help="<builder>/<config>, e.g. reid/market1501")
  p.add_argument("--manual_dir", required=True, help="the dataset's source root folder")
  p.add_argument("--data_dir", required=True, help="where TFDS datasets are written")
  p.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
  p.add_argument("--strict", action="store_true",
                 help="fail on the first corrupt/inconsistent input instead of skipping it")
  p.add_argument("--exclude_hashes", metavar="FILE",
                 help="hash file of the evaluation images (data/tools/dedup.py "
                      "--write_hashes): train records matching one are dropped")
  p.add_argument("--exclude_threshold", type=int, default=0,
                 help="max dHash Hamming distance (bits) counted as a duplicate; 0 = the paper")
  p.add_argument("--frame_every", type=int, default=common.FRAME_EVERY,
                 help="video-derived configs: keep 1 train frame in N per video (1: all)")
  args = p.parse_args(argv)
  try:
    build(args.name, args.manual_dir, args.data_dir, overwrite=args.overwrite,
          strict=args.strict, exclude_hashes=args.exclude_hashes,
          exclude_threshold=args.exclude_threshold, frame_every=args.frame_every)
  except (common.MissingInputError, common.BadInputError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
