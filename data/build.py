"""Builds a HumanBench TFDS dataset programmatically (ArrayRecord output).

    python data/build.py <builder>/<config> --manual_dir=DIR --data_dir=DIR [--overwrite] [--strict]

``manual_dir`` is the dataset's own root folder (layouts in data/README.md). The dataset is built
into a temporary folder under ``data_dir`` and moved to ``data_dir/<builder>/<config>/<version>``
only when the build succeeded, so a failed build never touches a previous good one. A
``build_report.json`` (skipped and dropped inputs) is written next to the dataset files. Read
the result with ``tfds.data_source('<builder>/<config>', data_dir=DIR)``; training does not
import the builders.

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

if __package__ in (None, ""):
  # Run as a script: make the repository root importable so that ``data.*`` resolves.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow_datasets as tfds  # noqa: E402

from data import common  # noqa: E402

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


def build(full_name: str, manual_dir: str, data_dir: str, *, overwrite: bool = False,
          strict: bool = False, source: str = "publisher") -> str:
  """Builds ``<builder>/<config>`` into ``data_dir``; returns the dataset's version folder.

  ``source`` is recorded in ``build_report.json``: ``'publisher'`` (the dataset's own files) or
  ``'humanbench_mini'`` (the synthetic sets, which reuse the real names); training refuses data
  of the other kind than its config's ``data_kind``. An existing build of the other kind is
  never kept silently: without ``overwrite`` the build fails and names it.

  Raises ``common.MissingInputError`` (naming the expected layout) when inputs are missing,
  ``common.BadInputError`` for bad inputs under ``strict``; in both cases nothing under
  ``data_dir/<builder>/<config>`` changes.
  """
  cls, config = parse_name(full_name)
  tfds.disable_progress_bar()
  probe = cls(config=config, data_dir=data_dir, file_format="array_record", strict=strict)
  final = os.fspath(probe.data_dir)  # data_dir/<builder>/<config>/<version>
  if source not in SOURCES:
    raise ValueError(f"build source {source!r}: use one of {SOURCES}")
  if os.path.isdir(final) and not overwrite and built_source(final) != source:
    raise ValueError(f"{full_name}: {final} already holds a {built_source(final)!r} build, not "
                     f"{source!r} data (humanbench_mini reuses the real datasets' names); pass "
                     f"--overwrite to replace it or build into another --data_dir")
  if os.path.isdir(final) and not overwrite:
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
    builder = cls(config=config, data_dir=tmp_root, file_format="array_record", strict=strict)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP))
    built = os.fspath(builder.data_dir)
    with open(os.path.join(built, "build_report.json"), "w") as f:
      json.dump({"dataset": full_name, "source": source, "manual_dir": manual_dir,
                 "splits": {k: v.num_examples for k, v in builder.info.splits.items()},
                 **builder.report.as_dict()}, f, indent=1)
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
        f"skipped {dict(report.skipped) or 0}, dropped {dict(report.dropped) or 0}")
  return final


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("name", help="<builder>/<config>, e.g. reid/market1501")
  p.add_argument("--manual_dir", required=True, help="the dataset's source root folder")
  p.add_argument("--data_dir", required=True, help="where TFDS datasets are written")
  p.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
  p.add_argument("--strict", action="store_true",
                 help="fail on the first corrupt/inconsistent input instead of skipping it")
  args = p.parse_args(argv)
  try:
    build(args.name, args.manual_dir, args.data_dir, overwrite=args.overwrite,
          strict=args.strict)
  except (common.MissingInputError, common.BadInputError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
