"""Shared pieces of the HumanBench TFDS builders: errors, bad-input accounting, image reading.

Every builder in ``data/<family>/builder.py`` subclasses :class:`HumanBenchBuilder`, which

* reads the source files from ``manual_dir`` (the dataset's own root folder, passed to
  ``data/build.py --manual_dir``), checking the expected layout first and naming every missing
  path together with the whole layout the config expects;
* stores images as the source's encoded bytes (JPEG or PNG; anything else, or non-RGB images,
  is re-encoded losslessly as RGB PNG) after decoding them once with PIL to catch corrupt files;
* counts skipped inputs (corrupt image, box outside the image, label out of range, ...) in a
  :class:`BuildReport` whose summary lands in the dataset's ``metadata.json`` under
  ``build_report``; with ``strict=True`` the first bad input is an error naming the file.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import logging
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

# How many skipped-input messages are kept verbatim in the report (the counts are complete).
_MAX_REPORTED_MESSAGES = 50

BUILD_COMMAND = "python data/build.py {name} --manual_dir=DIR --data_dir=DIR"


class MissingInputError(FileNotFoundError):
  """A file or folder of the expected ``manual_dir`` layout does not exist."""


class BadInputError(ValueError):
  """A corrupt or inconsistent input under ``strict=True`` (or a split left empty)."""


@dataclasses.dataclass
class BuildReport:
  """Counts of inputs skipped (``skipped``) or dropped by protocol (``dropped``).

  ``skipped`` are problems with the data (corrupt image, annotation outside the image, label out
  of range): warnings, errors under ``strict``. ``dropped`` are records a protocol removes on
  purpose (Market-1501 junk ids, COCO crowd annotations) and are never errors.
  """
  strict: bool = False
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  messages: list = dataclasses.field(default_factory=list)

  def bad(self, reason: str, path: str | os.PathLike, detail: str = "") -> None:
    """Records one bad input; raises :class:`BadInputError` under ``strict``."""
    msg = f"{os.fspath(path)}: {reason}" + (f" ({detail})" if detail else "")
    if self.strict:
      raise BadInputError(
          f"{msg}. Fix or remove this input, or build without --strict to skip it with a "
          "warning.")
    self.skipped[reason] += 1
    logging.warning("skipping %s", msg)
    if len(self.messages) < _MAX_REPORTED_MESSAGES:
      self.messages.append(msg)

  def drop(self, reason: str, n: int = 1) -> None:
    self.dropped[reason] += n

  def as_dict(self) -> dict[str, Any]:
    return {"strict": self.strict, "skipped": dict(sorted(self.skipped.items())),
            "dropped": dict(sorted(self.dropped.items())), "messages": list(self.messages)}


@dataclasses.dataclass(frozen=True)
class LoadedImage:
  """Encoded image bytes ready for ``tfds.features.Image`` and its size in pixels."""
  data: bytes
  height: int
  width: int


def load_image(path: str | os.PathLike, report: BuildReport) -> LoadedImage | None:
  """Reads and fully decodes an image file; returns None (after ``report.bad``) if unusable.

  JPEG/PNG RGB files are kept byte for byte; other formats or modes (grayscale, CMYK, palette,
  alpha) are converted to RGB and re-encoded as PNG, so every stored image decodes to
  ``[H, W, 3]`` uint8.
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    report.bad("missing_image", path)
    return None
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()  # A full decode: catches truncated files that Image.verify lets through.
      if im.format in ("JPEG", "PNG") and im.mode == "RGB":
        return LoadedImage(data, im.height, im.width)
      buf = io.BytesIO()
      im.convert("RGB").save(buf, format="PNG")
      return LoadedImage(buf.getvalue(), im.height, im.width)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    report.bad("corrupt_image", path, str(e))
    return None


def load_label_map(path: str | os.PathLike, report: BuildReport) -> np.ndarray | None:
  """Reads a single-channel PNG class map as ``[H, W]`` int32; None (after report) if unusable."""
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode not in ("L", "P", "I", "I;16"):
        report.bad("label_not_single_channel", path, f"mode {im.mode}")
        return None
      return np.asarray(im).astype(np.int32)
  except FileNotFoundError:
    report.bad("missing_label", path)
    return None
  except (OSError, SyntaxError, ValueError) as e:
    report.bad("corrupt_label", path, str(e))
    return None


def encode_png(label: np.ndarray) -> bytes:
  """``[H, W]`` uint8 class map -> PNG bytes (``[H, W, 1]`` once decoded by tfds)."""
  buf = io.BytesIO()
  Image.fromarray(np.asarray(label, np.uint8), mode="L").save(buf, format="PNG")
  return buf.getvalue()


def read_lines(path: str | os.PathLike) -> list[str]:
  """Non-empty, stripped lines of a text file."""
  with open(path) as f:
    return [ln.strip() for ln in f if ln.strip()]


class HumanBenchBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the HumanBench builders: layout check, bad-input report, metadata.

  Subclasses define ``BUILDER_CONFIGS`` and implement ``_features()``,
  ``_layout(config) -> {relative path: description}``, ``_required(root) -> [relative paths]``
  and ``_splits(root) -> {split: iterator of (key, example)}``; they may add static metadata in
  ``_static_metadata()``.
  """
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Pass the dataset's own root folder as --manual_dir; data/README.md lists the layout "
      "each config expects.")

  def __init__(self, *, strict: bool = False, **kwargs):
    self.strict = strict
    self.report = BuildReport(strict=strict)
    super().__init__(**kwargs)

  # ---- to implement -------------------------------------------------------------------------
  def _features(self) -> tfds.features.FeaturesDict:
    raise NotImplementedError

  @classmethod
  def layout(cls, config) -> Mapping[str, str]:
    """Relative path (may contain ``*``) -> what it holds, for errors and the README."""
    raise NotImplementedError

  def _required(self, root: str) -> Sequence[str]:
    raise NotImplementedError

  def _splits(self, root: str) -> Mapping[str, Iterator[tuple[str, dict]]]:
    raise NotImplementedError

  def _static_metadata(self) -> dict[str, Any]:
    return {}

  # TFDS prints "Downloading and preparing dataset Unknown size ..." and "... downloaded and
  # prepared to <temporary folder>" on stdout for every build; these builds read local files
  # and data/build.py prints one line with the final folder and the split sizes instead.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  # ---- shared ---------------------------------------------------------------------------------
  def _info(self) -> tfds.core.DatasetInfo:
    meta = tfds.core.MetadataDict()
    meta.update(self._static_metadata())
    meta["build_report"] = self.report.as_dict()
    return tfds.core.DatasetInfo(
        builder=self, description=self.builder_config.description,
        features=self._features(), metadata=meta)

  def check_layout(self, root: str) -> None:
    """Raises :class:`MissingInputError` naming the missing paths and the expected layout."""
    missing = [p for p in self._required(root) if not os.path.exists(os.path.join(root, p))]
    if missing:
      raise MissingInputError(missing_message(self.name, self.builder_config, root, missing,
                                              type(self).layout(self.builder_config)))

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    self.check_layout(root)
    return {split: self._tracked(split, gen) for split, gen in self._splits(root).items()}

  def _generate_examples(self, *args, **kwargs):
    # Splits come from ``_splits`` through ``_tracked``; nothing calls this directly.
    raise NotImplementedError

  def _tracked(self, split: str, gen: Iterator[tuple[str, dict]]):
    n = 0
    for key, example in gen:
      n += 1
      yield key, example
    self.info.metadata["build_report"] = self.report.as_dict()
    if n == 0:
      raise BadInputError(
          f"split {split!r} of {self.name}/{self.builder_config.name} has no examples left; "
          f"skipped inputs: {dict(self.report.skipped)}, dropped: {dict(self.report.dropped)}. "
          "Check the manual_dir layout (data/README.md) and the messages above.")


def missing_message(name: str, config, root: str, missing: Sequence[str],
                    layout: Mapping[str, str]) -> str:
  lines = [f"{name}/{config.name}: missing under manual_dir {root}:"]
  lines += [f"  {p}" for p in missing]
  lines.append("Expected layout (relative to manual_dir):")
  lines += [f"  {p:<55} {d}" for p, d in layout.items()]
  lines.append("Then run: " + BUILD_COMMAND.format(name=f"{name}/{config.name}"))
  return "\n".join(lines)
