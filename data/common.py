"""Shared pieces of the HumanBench TFDS builders: errors, bad-input accounting, image reading.

Every builder in ``data/<family>/builder.py`` subclasses :class:`HumanBenchBuilder`, which

* reads the source files from ``manual_dir`` (the dataset's own root folder, passed to
  ``data/build.py --manual_dir``), checking the expected layout first and naming every missing
  path together with the whole layout the config expects;
* stores images as the source's encoded bytes (JPEG or PNG; anything else, or non-RGB images,
  is re-encoded losslessly as RGB PNG) after decoding them once with PIL to catch corrupt files;
* counts skipped inputs (corrupt image, box outside the image, label out of range, ...) in a
  :class:`BuildReport` whose summary lands in the dataset's ``metadata.json`` under
  ``build_report``; with ``strict=True`` the first bad input is an error naming the file;
* applies the two pretraining de-duplications of the paper (§3) to the ``train`` split only
  (:data:`FILTERED_SPLITS`): records whose image's dHash is within ``exclude_threshold`` bits of
  an evaluation image (``exclude_hashes``, read from a hash file of data/tools/dedup.py) are
  dropped, and for video-derived configs (:func:`is_video`) one frame of every ``frame_every``
  consecutive frames of each video is kept. Both are counted in the report.

Video hook, for builder authors. A video-derived config is marked by a ``video=True`` field on
its builder config (or, for configs without that field, listed in :data:`VIDEO_CONFIGS`). The
base class must know each record's video and its frame's position in it; by default it reads
them from the record's ``filename``: video = the file's folder, frame = the file name, ordered
naturally (``frame_9`` before ``frame_10``). A builder whose file names do not say this puts
``VIDEO_KEY: <video id str>`` and ``FRAME_KEY: <frame number int or name str>`` into the
example dict it yields (both are removed before the record is written), or overrides
:meth:`HumanBenchBuilder.video_frame`. Several records of one frame (one per person) share the
frame's fate. Frames of a video are ranked in order and ranks ``0, N, 2N, ...`` are kept (as
``data/tools/frame_sampling.py``), so sparse annotations (every 4th frame) are sampled by rank,
not by frame number.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import logging
import os
import pickle
import tempfile
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from data.tools import dedup
from data.tools import frame_sampling

# How many skipped-input messages are kept verbatim in the report (the counts are complete).
_MAX_REPORTED_MESSAGES = 50

BUILD_COMMAND = "python data/build.py {name} --manual_dir=DIR --data_dir=DIR"

# Splits the pretraining de-duplication and frame sampling apply to; every other split is an
# evaluation split and is kept whole.
FILTERED_SPLITS = ("train",)
# 1 frame of every FRAME_EVERY consecutive frames of a video-derived set (paper §3).
FRAME_EVERY = 8
# Video-derived configs whose builder config has no ``video`` field ("<builder>/<config>").
# A config's own ``video`` attribute, when present, wins.
VIDEO_CONFIGS = frozenset({
    "pose/posetrack", "pose/penn_action", "pose/aist", "pose/3dpw", "pose/mpi_inf_3dhp",
    "pose/jrdb", "parsing/vip"})
# Optional fields of a yielded example naming its video and frame (removed before writing).
VIDEO_KEY = "_video_id"
FRAME_KEY = "_frame_index"


def find_folder(root: str, folders) -> str | None:
  """The first of ``folders`` that is a folder under ``root``, matched exactly, then ignoring
  case; None if there is none (or ``root`` is not a folder). How data.prepare and the merged
  builders (det_5set, reid_4sets_native, attr_5set_native, ...) find a publisher's folder."""
  try:
    entries = {e.lower(): e for e in os.listdir(root)}
  except (FileNotFoundError, NotADirectoryError):
    return None
  for name in folders:
    if os.path.isdir(os.path.join(root, name)):
      return name
    found = entries.get(name.lower())
    if found is not None and os.path.isdir(os.path.join(root, found)):
      return found
  return None


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
  # split -> records dropped as duplicates of evaluation images; the first ones, with the match.
  excluded: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  excluded_examples: list = dataclasses.field(default_factory=list)
  # split -> {'videos', 'frames', 'kept_frames', 'records', 'kept_records'}
  frames: dict = dataclasses.field(default_factory=dict)
  # split -> distinct images written (consecutive records of one file count once)
  images: dict = dataclasses.field(default_factory=dict)

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

  def exclude(self, split: str, name: str, match: str, distance: int) -> None:
    """One record dropped as a duplicate (dHash) of the evaluation image ``match``."""
    self.excluded[split] += 1
    if len(self.excluded_examples) < _MAX_REPORTED_MESSAGES:
      self.excluded_examples.append(
          {"split": split, "record": name, "eval": match, "distance": distance})

  def as_dict(self) -> dict[str, Any]:
    return {"strict": self.strict, "skipped": dict(sorted(self.skipped.items())),
            "dropped": dict(sorted(self.dropped.items())), "messages": list(self.messages),
            "excluded": dict(sorted(self.excluded.items())),
            "excluded_examples": list(self.excluded_examples),
            "frames": dict(sorted(self.frames.items())),
            "images": dict(sorted(self.images.items()))}


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

  def __init__(self, *, strict: bool = False, exclude_hashes: Mapping[str, int] | None = None,
               exclude_threshold: int = 0, frame_every: int = FRAME_EVERY, **kwargs):
    """``exclude_hashes``: {evaluation image name: 64-bit dHash} (``dedup.read_hash_file``);
    ``train`` records whose image is within ``exclude_threshold`` bits of one are dropped.
    ``frame_every``: keep 1 frame in N per video of a video-derived config (1: keep all)."""
    if frame_every < 1:
      raise ValueError(f"frame_every must be >= 1 (1 keeps every frame), got {frame_every}")
    if exclude_threshold < 0:
      raise ValueError(f"exclude_threshold must be >= 0 bits, got {exclude_threshold}")
    self.strict = strict
    self.report = BuildReport(strict=strict)
    self.frame_every = frame_every
    self._exclude = (dedup.HashIndex(exclude_hashes, exclude_threshold)
                     if exclude_hashes is not None else None)
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

  # ---- video hook and pretraining filters -----------------------------------------------------
  @property
  def is_video(self) -> bool:
    return is_video(self.name, self.builder_config)

  def video_frame(self, key: str, example: Mapping[str, Any]) -> tuple[str, Any]:
    """(video id, frame) of a record: ``VIDEO_KEY``/``FRAME_KEY`` if the example has them,
    else the folder and the name of its ``filename``. Frames are ordered naturally."""
    if VIDEO_KEY in example and FRAME_KEY in example:
      return str(example[VIDEO_KEY]), example[FRAME_KEY]
    name = example.get("filename")
    if isinstance(name, bytes):
      name = name.decode()
    if not name:
      raise BadInputError(
          f"{self.name}/{self.builder_config.name} is video-derived but record {key!r} has "
          f"neither a 'filename' nor {VIDEO_KEY!r}/{FRAME_KEY!r}: the builder must say each "
          "record's video and frame (data/common.py, 'Video hook').")
    return os.path.dirname(name), os.path.basename(name)

  def _sample_frames(self, split: str, gen: Iterator[tuple[str, dict]]):
    """Keeps the records of frames ranked 0, N, 2N, ... in each video (N = frame_every).

    The whole split is seen before the first record is kept (ranks need every frame of a
    video), so records are spilled to a temporary file next to the dataset being built rather
    than held in memory, then read back in their original order."""
    every = self.frame_every
    if every == 1:  # Keep everything; only count.
      videos: dict[str, set] = {}
      n = 0
      for key, example in gen:
        video, frame = self.video_frame(key, example)
        videos.setdefault(video, set()).add(str(frame))
        n += 1
        yield key, example
      total = sum(len(v) for v in videos.values())
      self.report.frames[split] = {"every": 1, "videos": len(videos), "frames": total,
                                   "kept_frames": total, "records": n, "kept_records": n}
      return
    spill_dir = os.fspath(self._data_dir_root)
    os.makedirs(spill_dir, exist_ok=True)
    with tempfile.TemporaryFile(dir=spill_dir, prefix=f"frames_{split}_") as f:
      index = []
      for key, example in gen:
        video, frame = self.video_frame(key, example)
        index.append((video, str(frame)))
        pickle.dump((key, example), f, protocol=pickle.HIGHEST_PROTOCOL)
      videos: dict[str, set] = {}
      for video, frame in index:
        videos.setdefault(video, set()).add(frame)
      kept = {(v, fr) for v, frames in videos.items()
              for fr in frame_sampling.sample_frames({v: sorted(frames)}, every)}
      n_frames = sum(len(v) for v in videos.values())
      self.report.frames[split] = {
          "every": every, "videos": len(videos), "frames": n_frames,
          "kept_frames": len(kept), "records": len(index),
          "kept_records": sum(vf in kept for vf in index)}
      f.seek(0)
      for vf in index:
        record = pickle.load(f)
        if vf in kept:
          yield record

  def _exclude_duplicates(self, split: str, gen: Iterator[tuple[str, dict]]):
    """Drops records whose image matches an evaluation image's dHash (``self._exclude``)."""
    cache: dict[bytes, Any] = {}  # Several records (persons) of one image: hash it once.
    for key, example in gen:
      data = example.get("image")
      digest = hashlib.md5(data if isinstance(data, bytes) else repr(key).encode()).digest()
      if digest not in cache:
        if len(cache) > 4096:
          cache.clear()
        cache[digest] = self._exclude.match(image_dhash(data))
      match = cache[digest]
      if match is not None:
        name = example.get("filename", key)
        name = name.decode() if isinstance(name, bytes) else str(name)
        self.report.exclude(split, name, *match)
        continue
      yield key, example

  def _tracked(self, split: str, gen: Iterator[tuple[str, dict]]):
    if split in FILTERED_SPLITS and self.is_video:
      gen = self._sample_frames(split, gen)
    gen = (_strip_hook_fields(k, ex) for k, ex in gen)
    if split in FILTERED_SPLITS and self._exclude is not None:
      gen = self._exclude_duplicates(split, gen)
    n = images = 0
    last = None
    for key, example in gen:
      n += 1
      name = example.get("filename", key)
      images += name != last
      last = name
      yield key, example
    self.report.images[split] = images
    if split in FILTERED_SPLITS and self._exclude is not None:
      self.report.excluded.setdefault(split, 0)
    self.info.metadata["build_report"] = self.report.as_dict()
    if n == 0:
      raise BadInputError(
          f"split {split!r} of {self.name}/{self.builder_config.name} has no examples left; "
          f"skipped inputs: {dict(self.report.skipped)}, dropped: {dict(self.report.dropped)}. "
          "Check the manual_dir layout (data/README.md) and the messages above.")


def is_video(builder_name: str, config) -> bool:
  """Whether ``<builder_name>/<config>`` is video-derived: the config's ``video`` field if it
  has one, else membership in :data:`VIDEO_CONFIGS`."""
  flag = getattr(config, "video", None)
  if flag is not None:
    return bool(flag)
  return f"{builder_name}/{config.name}" in VIDEO_CONFIGS


def _strip_hook_fields(key, example):
  if VIDEO_KEY in example or FRAME_KEY in example:
    example = {k: v for k, v in example.items() if k not in (VIDEO_KEY, FRAME_KEY)}
  return key, example


def image_dhash(data) -> int:
  """dHash (data/tools/dedup.py) of an example's ``image``: encoded bytes, a path or an array."""
  if isinstance(data, (bytes, bytearray)):
    with Image.open(io.BytesIO(data)) as im:
      return dedup.dhash(im)
  if isinstance(data, np.ndarray):
    return dedup.dhash(Image.fromarray(data.squeeze()))
  return dedup.dhash(os.fspath(data))


def split_hashes(builder: "HumanBenchBuilder", manual_dir: str,
                 splits: Sequence[str] | None = None) -> dict[str, int]:
  """dHashes of the images of ``builder``'s splits (default: all but :data:`FILTERED_SPLITS`),
  read from the raw files through the builder's own readers, nothing written to its data_dir.

  Returns ``{"<builder>/<config>/<split>/<filename or key>": hash}``: the evaluation side of
  the pretraining de-duplication, before anything is built (so the evaluation sets' own
  ``train`` splits can be de-duplicated too). Give ``builder`` a throwaway ``data_dir``: some
  readers write side files (pose ground-truth json) there.
  """
  root = os.path.abspath(manual_dir)
  builder.check_layout(root)
  prefix = f"{builder.name}/{builder.builder_config.name}"
  out: dict[str, int] = {}
  for split, gen in builder._splits(root).items():
    if (split in FILTERED_SPLITS) if splits is None else (split not in splits):
      continue
    seen: dict[bytes, int] = {}
    for key, example in gen:
      name = example.get("filename", key)
      name = name.decode() if isinstance(name, bytes) else str(name)
      data = example.get("image")
      digest = hashlib.md5(data).digest() if isinstance(data, bytes) else None
      if digest is None or digest not in seen:
        h = image_dhash(data)
        if digest is not None:
          seen[digest] = h
      else:
        h = seen[digest]
      out[f"{prefix}/{split}/{name}"] = h
  return out


def missing_message(name: str, config, root: str, missing: Sequence[str],
                    layout: Mapping[str, str]) -> str:
  lines = [f"{name}/{config.name}: missing under manual_dir {root}:"]
  lines += [f"  {p}" for p in missing]
  lines.append("Expected layout (relative to manual_dir):")
  lines += [f"  {p:<55} {d}" for p, d in layout.items()]
  lines.append("Then run: " + BUILD_COMMAND.format(name=f"{name}/{config.name}"))
  return "\n".join(lines)
