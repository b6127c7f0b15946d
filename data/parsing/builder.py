"""Human/clothes parsing builder: image + PNG class map, listed by id files.

Records: ``image`` (encoded RGB), ``label`` ([H, W, 1] uint8 PNG class map after remapping:
0..num_classes-1, 255 = ignore), ``filename`` text (the list entry). The config's metadata
(``num_classes``, ``flip_pairs`` in output class ids, ``ignore_label``) is stored in the
dataset's metadata.json for the pipeline (horizontal flip swaps each pair).

Native readers (``deepfashion2_native``, ``modanet_native``) read the publishers' polygon
annotations instead of PNG maps and render them to class maps here (:func:`render_polygons`):
DeepFashion2's per-image ``annos/NNNNNN.json`` (items ``item1``, ``item2``, ... with
``category_id`` 1..13 and ``segmentation`` polygons; layout documented in the README of
github.com/switchablenorms/DeepFashion2, "Data Organization") and ModaNet's COCO-style
``modanet2018_instances_train.json`` (github.com/eBay/modanet README, "Data format"; 13
categories). Class value = ``category_id`` (1..13), 0 = background, as the 14-class rows expect.

Native readers of the publishers' PNG/.mat releases (archives extracted as distributed):

* ``vip_native``: VIP (sysu-hcp.net/lip, "2.3 Video Multi-Person Human Parsing") as its
  ``VIP_Fine`` archive extracts: ``VIP_Fine/Images/<video>/<frame>.jpg``,
  ``VIP_Fine/Annotations/Category_ids/<video>/<frame>.png`` (20 part classes, the values used
  as they are, flip pairs as LIP's) listed by ``VIP_Fine/lists/{train,val}_id.txt`` (ids
  ``videos1/000000000001``). Video-derived (``video=True``): each record names its video and
  frame number (``common.VIDEO_KEY`` / ``FRAME_KEY``), so 1 of every ``frame_every`` annotated
  frames of a video is kept in ``train``.
* ``paperdoll_native``: PaperDoll's publisher (github.com/kyamagu/paperdoll) releases photos
  (``photos.lmdb``, key = photo id) and tags, no pixel labels; the 20-class LIP-style maps of
  the paper's 1,035,825 PaperDoll images exist only in the HumanBench authors' folder
  (``images/<id>.jpg``, ``TrainVal_parsing_annotations/<id>.png``), read here as distributed:
  one record per label map found (no id list), the image of the same id from ``images/``
  (the photos extracted from ``photos.lmdb``, as for ``modanet_native``).
* ``h36m_native``: Human3.6M (vision.imar.ro/human3.6m) per subject: the body-part label maps
  ``S<k>/MySegmentsMat/PartLabels/<Action>.<camera>.mat`` (MATLAB v7.3 = HDF5; cell ``Feat``,
  one [H, W] map of part ids per video frame; read as HCMoCo's preprocessing does,
  github.com/hongfz16/HCMoCo ``HRNet-Semantic-Segmentation/data/human3.6m/mp_parsedata.py``,
  which wrote the authors' ``flist_2hz`` lists) and the frames of each video
  ``S<k>/Videos/<Action>.<camera>.mp4`` extracted by ``data/tools/extract_frames.py`` to
  ``S<k>/Videos/<Action>.<camera>/%06d.jpg`` (1-based: 0-based frame i, whose label is MATLAB
  cell ``Feat{i+1}``, is ``{i+1:06d}.jpg``).
  ``frame_step=25`` keeps frames 0, 25, 50, ... of every video in both splits: 2 Hz of the
  50 fps videos, exactly the frames of the authors' ``flist_2hz_{train,eval}.txt`` (62,668
  train frames of S1, S5-S8 = the paper's H3.6M-par count, 22,144 eval frames of S9, S11). As
  those lists were not thinned further, the config is not marked video-derived: the build-wide
  ``--frame_every`` does not apply to it. Labels past the last frame of a video are dropped
  (``frames_past_video_end``; HCMoCo stops at the shorter of video and labels), a needed frame
  missing below the last one is ``frame_not_extracted`` (``extract_frames --every``).

Remapping: identity for all but H3.6M, whose source maps use 59 part ids of which the 25 in
``label_list`` are kept as 0..24 and the other ids become background 0 (as the authors' reader
does). Source values >= the source class count (other than 255) are out of range: the record is
skipped with a warning naming the file (an error under strict).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
from pycocotools import mask as mask_utils
import tensorflow_datasets as tfds

from data import common

_LIP_PAIRS = ((14, 15), (16, 17), (18, 19))
_H36M_LABELS = (0, 1, 2, 3, 6, 7, 8, 17, 18, 19, 25, 26, 27, 32, 33, 34, 38, 39, 43, 44, 46, 49,
                50, 56, 58)
# Left/right part pairs of H3.6M in source ids (hips, knees, feet, shoulders, elbows, hands,
# thighs, calves, arms, forearms); mapped through the label list below.
_H36M_SOURCE_PAIRS = ((1, 6), (2, 7), (3, 8), (17, 25), (18, 26), (19, 27), (33, 38), (34, 39),
                      (49, 56), (50, 58))
IGNORE = 255
# Human3.6M subjects of the authors' lists (HCMoCo flist_2hz_train / flist_2hz_eval).
_H36M_TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
_H36M_VAL_SUBJECTS = ("S9", "S11")
# Per-video body-part label maps of the Human3.6M release (the folder HCMoCo's preprocessing
# reads) and the frames data/tools/extract_frames.py writes next to each video, 1-based.
_H36M_PARTS = "{subject}/MySegmentsMat/PartLabels/{video}.mat"
_H36M_FRAMES = "{subject}/Videos/{video}/{frame:06d}.jpg"
# The MATLAB cell of per-frame label maps in a PartLabels file.
_H36M_FIELD = "Feat"
_FRAME_FILE = re.compile(r"(\d{6})\.jpg")
# A Git LFS pointer left in place of a file (ModaNet's jsons are stored with Git LFS).
_LFS_POINTER = "version https://git-lfs.github.com/spec/"


def render_polygons(items, height: int, width: int) -> np.ndarray:
  """Renders polygon annotations to a ``[height, width]`` uint8 class map (0 = background).

  ``items``: ``[(class value 1..255, segmentation)]`` in annotation order; a segmentation is a
  list of polygons, each a flat ``[x1, y1, x2, y2, ...]`` in pixels, or a COCO RLE dict.
  Rasterised with pycocotools, the COCO API both publishers' toolkits build on: pixel (row r,
  column c) covers ``[c, c+1) x [r, r+1)``, so the square with corners (0, 0) and (2, 2) covers
  4 pixels; polygons outside the image are clipped. Polygons with fewer than 3 points cover
  nothing and are ignored. Overlaps: items are painted from the one covering most pixels down
  to the one covering fewest (equal sizes in annotation order), so where items overlap the
  smaller one wins; a belt, bag or scarf drawn over a garment stays visible. Raises
  ``ValueError`` for a polygon with an odd or non-numeric coordinate list, or an RLE of another
  size.
  """
  masks, areas = [], []
  for _, segm in items:
    if isinstance(segm, dict):
      size = list(segm.get("size", []))
      if size != [height, width]:
        raise ValueError(f"RLE size {size} for an image of {[height, width]}")
      rle = (mask_utils.frPyObjects(segm, height, width)
             if isinstance(segm.get("counts"), list) else segm)
      mask = mask_utils.decode(rle)
    else:
      polys = []
      for poly in segm:
        if (not isinstance(poly, (list, tuple)) or len(poly) % 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and np.isfinite(v) for v in poly)):
          raise ValueError(f"polygon is not a flat list of x, y pairs: {str(poly)[:80]}")
        if len(poly) >= 6:
          polys.append([float(v) for v in poly])
      if not polys:
        mask = np.zeros((height, width), np.uint8)
      else:
        # A list whose first entry has 4 numbers would be read as boxes: polys has >= 6.
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))
    masks.append(mask.astype(bool))
    areas.append(int(masks[-1].sum()))
  label = np.zeros((height, width), np.uint8)
  for i in sorted(range(len(items)), key=lambda i: (-areas[i], i)):
    label[masks[i]] = items[i][0]
  return label


def _scan_ids(root: str, tpl: str) -> list[str]:
  """Ids of the files matching ``tpl`` (``<folder>/{id}<suffix>``) under ``root``, sorted; an
  id keeps its subfolders ('a/b' for ``<folder>/a/b<suffix>``)."""
  folder, suffix = tpl.split("{id}")
  base = os.path.join(root, folder)
  ids = []
  for dirpath, _, names in os.walk(base):
    rel = os.path.relpath(dirpath, base)
    for name in names:
      if name.endswith(suffix) and not name.startswith("."):
        stem = name[:len(name) - len(suffix)]
        ids.append(stem if rel == "." else f"{rel.replace(os.sep, '/')}/{stem}")
  return sorted(ids)


class _PartLabels:
  """The per-frame label maps of one Human3.6M ``PartLabels/<Action>.<camera>.mat``.

  The files are MATLAB v7.3 (HDF5): variable ``Feat`` is a cell with one entry per video frame,
  stored as an array of object references (shape (frames, 1) as h5py reads it), each to a
  numeric [W, H] dataset (MATLAB's column-major [H, W]); HCMoCo's mp_parsedata.py reads
  ``f[f['Feat'][i][0]]`` transposed for frame i. Values are part ids (0 background; the 25
  kept ids are named in HCMoCo's lib/datasets/human36m.py). Unconfirmed: the numeric type
  (any integer or integral float type is accepted) and whether every frame of a video has a
  cell (labels past the video's last frame are dropped by the reader). Raises ``ValueError``
  for a file that is not HDF5 or has no 1-D reference array ``Feat``.
  """

  def __init__(self, path: str):
    try:
      import h5py  # Installed with tensorflow; only the .mat reader needs it.
    except ImportError as e:
      raise ImportError("reading Human3.6M's MATLAB v7.3 PartLabels files needs h5py: "
                        "pip install h5py") from e
    if not h5py.is_hdf5(path):
      raise ValueError("not a MATLAB v7.3 (HDF5) file")
    self._file = h5py.File(path, "r")
    try:
      feat = self._file.get(_H36M_FIELD)
      if (not isinstance(feat, h5py.Dataset) or h5py.check_dtype(ref=feat.dtype) is None
          or feat.ndim != 2 or 1 not in feat.shape):
        raise ValueError(f"no cell array '{_H36M_FIELD}' of one map per frame (variables: "
                         f"{sorted(k for k in self._file if not k.startswith('#'))})")
      self._refs = feat[()].reshape(-1)
    except Exception:
      self._file.close()
      raise

  def __len__(self) -> int:
    return len(self._refs)

  def frame(self, index: int) -> np.ndarray:
    """[H, W] int64 part ids of 0-based frame ``index``."""
    data = np.asarray(self._file[self._refs[index]][()]).T
    if data.ndim != 2 or data.dtype.kind not in "uif":
      raise ValueError(f"not a 2-D numeric map (shape {data.shape}, dtype {data.dtype})")
    if data.dtype.kind == "f":
      if not np.all(np.isfinite(data) & (data == np.round(data))):
        raise ValueError("non-integer part ids")
    return data.astype(np.int64)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._file.close()


@dataclasses.dataclass
class ParsingConfig(tfds.core.BuilderConfig):
  """``splits``: (split, list file, image template, label template); templates take ``{id}``
  (one list entry); an empty list file means one entry per label file found under the label
  template's folder; an empty label template means ``label_from_image``.
  ``label_from_image``: (old, new) replaced once in the image path to get the label path
  (H3.6M's rgb -> seg). ``label_list``: source ids kept, in output order (None: identity).
  ``source_classes``: number of valid source ids. ``flip_pairs`` in source ids."""
  splits: tuple = ()
  label_from_image: tuple = ()
  num_classes: int = 20
  label_list: tuple | None = None
  source_classes: int | None = None
  flip_pairs: tuple = ()
  # '' = PNG class maps listed by id files; 'deepfashion2' / 'coco' = polygons rendered here.
  # For polygon configs ``splits`` holds (split, annotation path, image folder, '').
  polygons: str = ""
  # 'h36m_mat': Human3.6M PartLabels .mat + extracted frames; ``splits`` then holds (split,
  # subjects, frame template, label template) with {subject}, {video}, {frame} fields.
  source_format: str = ""
  # Keep source frames 0, N, 2N, ... of every video, in every split (h36m_mat).
  frame_step: int = 1
  # Video-derived (data/common.py 'Video hook'); None: as listed in common.VIDEO_CONFIGS.
  video: bool | None = None
  # Splits built only when their list file exists.
  optional_splits: tuple = ()
  # Folders that must exist besides the list files (checked before building).
  required_dirs: tuple = ()
  # What the image folder holds, for layout() (default "images").
  image_note: str = ""


def _ids_cfg(name, n, pairs, img_dir, lbl_dir, splits=("train", "val"), list_tpl="{split}_id.txt",
             desc=""):
  return ParsingConfig(
      name=name, num_classes=n, flip_pairs=pairs, description=desc or name,
      splits=tuple((s, list_tpl.format(split=s), img_dir.format(split=s) + "/{id}.jpg",
                    lbl_dir.format(split=s) + "/{id}.png") for s in splits))


class Parsing(common.HumanBenchBuilder):
  """Human and clothes parsing datasets."""
  BUILDER_CONFIGS = [
      _ids_cfg("lip", 20, _LIP_PAIRS, "data/{split}_images",
               "TrainVal_parsing_annotations/{split}_segmentations",
               list_tpl="data/{split}_id.txt", desc="LIP (Look Into Person)."),
      ParsingConfig(
          name="cihp", num_classes=20, flip_pairs=_LIP_PAIRS, description="CIHP.",
          splits=tuple((s, f"instance-level_human_parsing/{d}/{s}_id.txt",
                        f"instance-level_human_parsing/{d}/Images/{{id}}.jpg",
                        f"instance-level_human_parsing/{d}/Category_ids/{{id}}.png")
                       for s, d in (("train", "Training"), ("val", "Validation")))),
      _ids_cfg("atr", 18, ((9, 10), (12, 13), (14, 15)), "humanparsing/JPEGImages",
               "humanparsing/SegmentationClassAug", desc="ATR."),
      _ids_cfg("vip", 20, _LIP_PAIRS, "Images", "Annotations/Category_ids", splits=("train",),
               desc="VIP (video instance parsing); ids like videos1/000000000001."),
      _ids_cfg("paperdoll", 20, _LIP_PAIRS, "images", "TrainVal_parsing_annotations",
               splits=("train",), desc="PaperDoll."),
      _ids_cfg("deepfashion2", 14, (), "train/image", "train/seg", splits=("train",),
               desc="DeepFashion2 clothes parsing."),
      _ids_cfg("modanet", 14, (), "images", "seg", splits=("train",), desc="ModaNet."),
      ParsingConfig(
          name="deepfashion2_native", num_classes=14, polygons="deepfashion2",
          splits=(("train", "train/annos", "train/image", ""),),
          description="DeepFashion2 as published (train.zip extracted): per-image json "
                      "polygons rendered to 14-class maps (13 categories + background)."),
      ParsingConfig(
          name="modanet_native", num_classes=14, polygons="coco",
          splits=(("train", "annotations/modanet2018_instances_train.json", "images", ""),),
          description="ModaNet as published (eBay/modanet annotations + PaperDoll photos): "
                      "COCO polygons rendered to 14-class maps (13 categories + background)."),
      ParsingConfig(
          name="h36m_parsing", num_classes=25, label_list=_H36M_LABELS, source_classes=59,
          flip_pairs=_H36M_SOURCE_PAIRS, label_from_image=("rgb", "seg"),
          splits=(("train", "flist_2hz_train.txt", "{id}", ""),
                  ("val", "flist_2hz_eval.txt", "{id}", "")),
          description="Human3.6M parsing (HCMoCo preprocessing), 25 of 59 part labels."),
      # ---- publishers' own PNG / .mat releases (module docstring) -----------------------------
      ParsingConfig(
          name="vip_native", num_classes=20, flip_pairs=_LIP_PAIRS, video=True,
          optional_splits=("val",),
          required_dirs=("VIP_Fine/Images", "VIP_Fine/Annotations/Category_ids"),
          image_note="annotated frames, ids <video>/<frame number> (videos1/000000000001)",
          splits=tuple((s, f"VIP_Fine/lists/{s}_id.txt", "VIP_Fine/Images/{id}.jpg",
                        "VIP_Fine/Annotations/Category_ids/{id}.png") for s in ("train", "val")),
          description="VIP as published (VIP_Fine extracted): Category_ids PNG maps (20 "
                      "classes) of the annotated video frames; 1 in frame_every kept in train."),
      ParsingConfig(
          name="paperdoll_native", num_classes=20, flip_pairs=_LIP_PAIRS,
          required_dirs=("images", "TrainVal_parsing_annotations"),
          image_note="PaperDoll photos (photos.lmdb extracted; key = photo id), named by id",
          splits=(("train", "", "images/{id}.jpg", "TrainVal_parsing_annotations/{id}.png"),),
          description="PaperDoll: the HumanBench authors' 20-class maps (one record per map "
                      "found) over the PaperDoll photos (photos.lmdb extracted)."),
      ParsingConfig(
          name="h36m_native", num_classes=25, label_list=_H36M_LABELS, source_classes=59,
          flip_pairs=_H36M_SOURCE_PAIRS, source_format="h36m_mat", frame_step=25, video=False,
          splits=(("train", _H36M_TRAIN_SUBJECTS, _H36M_FRAMES, _H36M_PARTS),
                  ("val", _H36M_VAL_SUBJECTS, _H36M_FRAMES, _H36M_PARTS)),
          description="Human3.6M parsing from the release: PartLabels .mat body-part maps + "
                      "extracted video frames at 2 Hz (frames 0, 25, ... of 50 fps), 25 of "
                      "59 part labels."),
  ]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    out = {}
    if config.polygons == "deepfashion2":
      for _, annos, images, _ in config.splits:
        out[f"{annos}/{{id}}.json"] = (
            f"per-image items item1, item2, ... (category_id 1.."
            f"{config.num_classes - 1}, segmentation polygons [x1, y1, x2, y2, ...])")
        out[f"{images}/{{id}}.jpg"] = "images"
      return out
    if config.polygons == "coco":
      for _, annos, images, _ in config.splits:
        out[annos] = (f"COCO instances json (images, annotations with category_id "
                      f"1..{config.num_classes - 1} and polygon segmentation)")
        out[f"{images}/{{file_name}}"] = (
            "images named by the json's file_name (PaperDoll photos.lmdb, extracted)")
      return out
    if config.source_format == "h36m_mat":
      subjects = ",".join(s[1:] for _, subj, _, _ in config.splits for s in subj)
      for _, _, frames, parts in config.splits[:1]:
        out[parts.format(subject=f"S{{{subjects}}}", video="<Action>.<camera>")] = (
            f"per-video body-part maps: MATLAB v7.3 (HDF5) cell '{_H36M_FIELD}', one [H, W] map "
            f"of part ids 0..{config.source_classes - 1} per video frame")
        out[frames.replace("{frame:06d}", "<frame:06d>").format(
            subject="S<k>", video="<Action>.<camera>")] = (
            "frames of S<k>/Videos/<Action>.<camera>.mp4, 1-based: python -m "
            "data.tools.extract_frames --videos '<manual_dir>/S*/Videos/*.mp4' (--every "
            f"{config.frame_step} writes only the frames read)")
      return out
    for split, lst, img, lbl in config.splits:
      opt = " (optional)" if split in config.optional_splits else ""
      if lst:
        out[lst] = f"{split} ids, one per line{opt}"
      out.setdefault(img, config.image_note or "images")
      maps = f"PNG class maps (0..{(config.source_classes or config.num_classes) - 1}, 255 ignore)"
      out.setdefault(
          lbl or f"{img} with '{config.label_from_image[0]}' -> '{config.label_from_image[1]}'",
          maps if lst else f"{maps}; one {split} record per file")
    return out

  def _required(self, root):
    c = self.builder_config
    if c.source_format == "h36m_mat":
      return list(dict.fromkeys(os.path.dirname(parts.format(subject=s, video="_"))
                                for _, subjects, _, parts in c.splits for s in subjects))
    if c.polygons:
      return [p for _, annos, images, _ in c.splits for p in (annos, images)]
    return [lst for split, lst, _, _ in c.splits
            if lst and split not in c.optional_splits] + list(c.required_dirs)

  @classmethod
  def flip_pairs_out(cls, config) -> list[list[int]]:
    """Flip pairs in output class ids."""
    if config.label_list is None:
      return [list(p) for p in config.flip_pairs]
    index = {src: i for i, src in enumerate(config.label_list)}
    return [[index[a], index[b]] for a, b in config.flip_pairs]

  @classmethod
  def lookup_table(cls, config) -> np.ndarray:
    """Source value -> output id; -1 marks values out of range. Shape [65536] int32."""
    lut = np.full((65536,), -1, np.int32)
    if config.label_list is None:
      lut[:config.num_classes] = np.arange(config.num_classes)
    else:
      lut[:config.source_classes] = 0  # Unlisted source parts -> background.
      lut[list(config.label_list)] = np.arange(len(config.label_list))
    lut[IGNORE] = IGNORE
    return lut

  def _static_metadata(self):
    c = self.builder_config
    return {"num_classes": c.num_classes, "ignore_label": IGNORE,
            "flip_pairs": type(self).flip_pairs_out(c),
            "label_list": list(c.label_list) if c.label_list else None}

  def _splits(self, root):
    c = self.builder_config
    if c.source_format == "h36m_mat":
      return {split: self._h36m_examples(root, split, subjects, frames, parts)
              for split, subjects, frames, parts in c.splits}
    reader = {"": self._examples, "deepfashion2": self._deepfashion2_examples,
              "coco": self._coco_examples}[c.polygons]
    return {split: reader(root, lst, img, lbl) for split, lst, img, lbl in c.splits
            if split not in c.optional_splits or os.path.exists(os.path.join(root, lst))}

  def _remap(self, lut, label, size, lbl_path, entry):
    """Source class map -> output uint8 map through ``lut``; None after reporting a map of
    another size than its image (``size`` = (height, width)) or with values out of range."""
    c = self.builder_config
    if label.shape != tuple(size):
      self.report.bad("label_size_mismatch", lbl_path,
                      f"label {label.shape} vs image {tuple(size)} for {entry}")
      return None
    out = lut[np.clip(label, 0, lut.size - 1)]
    bad = (out < 0) | (label >= lut.size) | (label < 0)
    if bad.any():
      self.report.bad("label_out_of_range", lbl_path,
                      f"record {entry}: values {sorted(set(label[bad].tolist()))[:10]} outside "
                      f"0..{(c.source_classes or c.num_classes) - 1} and {IGNORE}")
      return None
    return out.astype(np.uint8)

  def _examples(self, root, lst, img_tpl, lbl_tpl):
    c = self.builder_config
    lut = type(self).lookup_table(c)
    entries = (sorted(set(common.read_lines(os.path.join(root, lst)))) if lst
               else _scan_ids(root, lbl_tpl))
    for entry in entries:
      img_rel = img_tpl.format(id=entry)
      if lbl_tpl:
        lbl_rel = lbl_tpl.format(id=entry)
      else:
        old, new = c.label_from_image
        lbl_rel = img_rel.replace(old, new, 1)
      img = common.load_image(os.path.join(root, img_rel), self.report)
      if img is None:
        continue
      lbl_path = os.path.join(root, lbl_rel)
      label = common.load_label_map(lbl_path, self.report)
      if label is None:
        continue
      out = self._remap(lut, label, (img.height, img.width), lbl_path, entry)
      if out is None:
        continue
      example = {"image": img.data, "label": common.encode_png(out), "filename": entry}
      if c.video:
        # VIP ids are <video>/<frame number>: annotated frames ranked by number per video.
        video, _, frame = entry.rpartition("/")
        example[common.VIDEO_KEY] = video
        example[common.FRAME_KEY] = int(frame) if frame.isdigit() else frame
      yield entry, example

  # ---- Human3.6M release: PartLabels .mat + extracted frames -----------------------------------
  def check_layout(self, root):
    super().check_layout(root)
    c = self.builder_config
    if c.source_format == "h36m_mat":
      for split, subjects, frames, parts in c.splits:
        self._h36m_videos(root, split, subjects, frames, parts)

  def _frames_present(self, folder) -> frozenset:
    """1-based numbers of the ``NNNNNN.jpg`` frames in ``folder`` (empty if none), listed once
    per builder (the layout check and the reader both need them)."""
    cache = self.__dict__.setdefault("_frames_cache", {})
    if folder not in cache:
      try:
        names = os.listdir(folder)
      except FileNotFoundError:
        names = []
      cache[folder] = frozenset(int(m.group(1)) for m in map(_FRAME_FILE.fullmatch, names) if m)
    return cache[folder]

  def _h36m_videos(self, root, split, subjects, frames_tpl, parts_tpl):
    """[(subject, '<Action>.<camera>')] of the PartLabels files of ``split``, in subject and
    file-name order; raises ``MissingInputError`` (with the extraction command) when a video
    has no extracted frame."""
    videos = []
    for subject in subjects:
      parts_dir = os.path.join(root, os.path.dirname(parts_tpl.format(subject=subject, video="_")))
      # Names starting with '_' are skipped, as HCMoCo's preprocessing skips such videos.
      videos += [(subject, n[:-len(".mat")]) for n in sorted(os.listdir(parts_dir))
                 if n.endswith(".mat") and not n.startswith("_")]
    folders = [os.path.dirname(frames_tpl.format(subject=s, video=v, frame=1)) for s, v in videos]
    missing = [f for f in folders if not self._frames_present(os.path.join(root, f))]
    if missing:
      raise common.MissingInputError(
          f"{self.name}/{self.builder_config.name}: split {split!r}: no extracted frames for "
          f"{len(missing)} of {len(videos)} videos under {root}:\n"
          + "".join(f"  {m}/<frame:06d>.jpg\n" for m in missing[:10])
          + (f"  ... and {len(missing) - 10} more\n" if len(missing) > 10 else "")
          + "Extract the frames of the videos (1-based, next to each .mp4) with:\n"
          f"  python -m data.tools.extract_frames --videos '{root}/S*/Videos/*.mp4'\n"
          f"(add --every {self.builder_config.frame_step} to write only the frames this "
          "config reads), then build again.")
    return videos

  def _h36m_examples(self, root, split, subjects, frames_tpl, parts_tpl):
    """Records of the videos of ``split``: frames 0, frame_step, ... of each; the label of
    0-based frame i is ``Feat{i+1}`` (MATLAB's 1-based cell index), its image ``{i+1:06d}.jpg``."""
    c = self.builder_config
    lut = type(self).lookup_table(c)
    for subject, video in self._h36m_videos(root, split, subjects, frames_tpl, parts_tpl):
      parts_path = os.path.join(root, parts_tpl.format(subject=subject, video=video))
      present = self._frames_present(os.path.join(root, os.path.dirname(
          frames_tpl.format(subject=subject, video=video, frame=1))))
      last = max(present)
      try:
        parts = _PartLabels(parts_path)
      except (OSError, ValueError) as e:
        self.report.bad("corrupt_annotation", parts_path, str(e))
        continue
      with parts:
        wanted = range(0, len(parts), c.frame_step)
        for k, index in enumerate(wanted):
          number = index + 1  # 1-based frame file
          if number > last:
            self.report.drop("frames_past_video_end", len(wanted) - k)
            break
          if number not in present:
            self.report.drop("frame_not_extracted")
            continue
          img_rel = frames_tpl.format(subject=subject, video=video, frame=number)
          img = common.load_image(os.path.join(root, img_rel), self.report)
          if img is None:
            continue
          cell = f"{_H36M_FIELD}{{{index + 1}}}"
          try:
            label = parts.frame(index)
          except (OSError, ValueError, KeyError) as e:
            self.report.bad("corrupt_annotation", parts_path, f"{cell}: {e}")
            continue
          out = self._remap(lut, label, (img.height, img.width), parts_path, f"{img_rel} ({cell})")
          if out is None:
            continue
          yield img_rel, {"image": img.data, "label": common.encode_png(out), "filename": img_rel,
                          common.VIDEO_KEY: f"{subject}/{video}", common.FRAME_KEY: index}

  # ---- native polygon readers -----------------------------------------------------------------
  def _polygon_record(self, entry, img_path, anno_path, items, size=None):
    """Record of one image from ``items`` [(category_id, segmentation)]; None after reporting
    a bad input. ``size``: (height, width) the annotation states, checked against the image."""
    c = self.builder_config
    bad = [cat for cat, _ in items
           if isinstance(cat, bool) or not isinstance(cat, int) or not 1 <= cat < c.num_classes]
    if bad:
      self.report.bad("label_out_of_range", anno_path,
                      f"record {entry}: category_id {bad[:10]} outside 1..{c.num_classes - 1}")
      return None
    img = common.load_image(img_path, self.report)
    if img is None:
      return None
    if size is not None and None not in size and tuple(size) != (img.height, img.width):
      self.report.bad("label_size_mismatch", img_path,
                      f"annotation says (height, width) {tuple(size)}, image is "
                      f"{(img.height, img.width)}")
      return None
    try:
      label = render_polygons(items, img.height, img.width)
    except (ValueError, TypeError) as e:
      self.report.bad("bad_polygon", anno_path, f"record {entry}: {e}")
      return None
    return {"image": img.data, "label": common.encode_png(label), "filename": entry}

  def _deepfashion2_examples(self, root, annos_rel, images_rel, _):
    """DeepFashion2: ``annos/<id>.json`` per image, ``image/<id>.jpg``; items ``item<k>`` taken
    in k order (item10 after item9). Files without items are counted as dropped."""
    annos_dir = os.path.join(root, annos_rel)
    for name in sorted(f for f in os.listdir(annos_dir) if f.endswith(".json")):
      entry = name[:-len(".json")]
      anno_path = os.path.join(annos_dir, name)
      try:
        with open(anno_path) as f:
          anno = json.load(f)
      except (OSError, ValueError) as e:
        self.report.bad("corrupt_annotation", anno_path, str(e))
        continue
      keys = sorted((k for k in anno if re.fullmatch(r"item\d+", k)), key=lambda k: int(k[4:]))
      if not keys:
        self.report.drop("no_items")
        continue
      if not all(isinstance(anno[k], dict) for k in keys):
        self.report.bad("corrupt_annotation", anno_path, "an item is not an object")
        continue
      items = [(anno[k].get("category_id"), anno[k].get("segmentation") or []) for k in keys]
      record = self._polygon_record(entry, os.path.join(root, images_rel, entry + ".jpg"),
                                    anno_path, items)
      if record is not None:
        yield entry, record

  def _coco_examples(self, root, json_rel, images_rel, _):
    """COCO instances json (ModaNet): one record per image with at least one annotation, in
    ``file_name`` order; an image without annotations is unlabelled, not background, and is
    counted as dropped (``no_annotations``). Annotations keep the json's order."""
    path = os.path.join(root, json_rel)
    with open(path, "rb") as f:
      raw = f.read()
    if raw.startswith(_LFS_POINTER.encode()):
      raise common.BadInputError(
          f"{path} is a Git LFS pointer, not the annotation file: install git-lfs and run "
          "`git lfs pull` in the cloned repository (or download the file itself).")
    try:
      data = json.loads(raw)
      images, anns = data["images"], data.get("annotations", [])
    except (ValueError, KeyError, TypeError) as e:
      raise common.BadInputError(f"{path} is not a COCO instances json ({e!r}); download it "
                                 "again.") from e
    by_image = {}
    for a in anns:
      by_image.setdefault(a.get("image_id"), []).append(a)
    for im in sorted(images, key=lambda im: im["file_name"]):
      group = by_image.get(im["id"])
      if not group:
        self.report.drop("no_annotations")
        continue
      entry = os.path.splitext(im["file_name"])[0]
      items = [(a.get("category_id"), a.get("segmentation") or []) for a in group]
      record = self._polygon_record(
          entry, os.path.join(root, images_rel, im["file_name"]), path, items,
          (im.get("height"), im.get("width")))
      if record is not None:
        yield entry, record
