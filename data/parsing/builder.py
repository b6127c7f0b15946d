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


@dataclasses.dataclass
class ParsingConfig(tfds.core.BuilderConfig):
  """``splits``: (split, list file, image template, label template); templates take ``{id}``
  (one list entry); an empty label template means ``label_from_image``. ``label_from_image``: (old, new) replaced once in the image
  path to get the label path (H3.6M's rgb -> seg). ``label_list``: source ids kept, in output
  order (None: identity). ``source_classes``: number of valid source ids. ``flip_pairs`` in
  source ids."""
  splits: tuple = ()
  label_from_image: tuple = ()
  num_classes: int = 20
  label_list: tuple | None = None
  source_classes: int | None = None
  flip_pairs: tuple = ()
  # '' = PNG class maps listed by id files; 'deepfashion2' / 'coco' = polygons rendered here.
  # For polygon configs ``splits`` holds (split, annotation path, image folder, '').
  polygons: str = ""


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
    for split, lst, img, lbl in config.splits:
      out[lst] = f"{split} ids, one per line"
      out.setdefault(img, "images")
      out.setdefault(
          lbl or f"{img} with '{config.label_from_image[0]}' -> '{config.label_from_image[1]}'",
          f"PNG class maps (0..{(config.source_classes or config.num_classes) - 1}, 255 ignore)")
    return out

  def _required(self, root):
    if self.builder_config.polygons:
      return [p for _, annos, images, _ in self.builder_config.splits for p in (annos, images)]
    return [lst for _, lst, _, _ in self.builder_config.splits]

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
    reader = {"": self._examples, "deepfashion2": self._deepfashion2_examples,
              "coco": self._coco_examples}[self.builder_config.polygons]
    return {split: reader(root, lst, img, lbl)
            for split, lst, img, lbl in self.builder_config.splits}

  def _examples(self, root, lst, img_tpl, lbl_tpl):
    c = self.builder_config
    lut = type(self).lookup_table(c)
    for entry in sorted(set(common.read_lines(os.path.join(root, lst)))):
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
      if label.shape != (img.height, img.width):
        self.report.bad("label_size_mismatch", lbl_path,
                        f"label {label.shape} vs image {(img.height, img.width)} for {entry}")
        continue
      out = lut[np.clip(label, 0, lut.size - 1)]
      bad = (out < 0) | (label >= lut.size) | (label < 0)
      if bad.any():
        self.report.bad("label_out_of_range", lbl_path,
                        f"record {entry}: values {sorted(set(label[bad].tolist()))[:10]} outside "
                        f"0..{(c.source_classes or c.num_classes) - 1} and {IGNORE}")
        continue
      yield entry, {"image": img.data, "label": common.encode_png(out), "filename": entry}

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
