"""Human/clothes parsing builder: image + PNG class map, listed by id files.

Records: ``image`` (encoded RGB), ``label`` ([H, W, 1] uint8 PNG class map after remapping:
0..num_classes-1, 255 = ignore), ``filename`` text (the list entry). The config's metadata
(``num_classes``, ``flip_pairs`` in output class ids, ``ignore_label``) is stored in the
dataset's metadata.json for the pipeline (horizontal flip swaps each pair).

Remapping: identity for all but H3.6M, whose source maps use 59 part ids of which the 25 in
``label_list`` are kept as 0..24 and the other ids become background 0 (as the authors' reader
does). Source values >= the source class count (other than 255) are out of range: the record is
skipped with a warning naming the file (an error under strict).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
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
    for split, lst, img, lbl in config.splits:
      out[lst] = f"{split} ids, one per line"
      out.setdefault(img, "images")
      out.setdefault(
          lbl or f"{img} with '{config.label_from_image[0]}' -> '{config.label_from_image[1]}'",
          f"PNG class maps (0..{(config.source_classes or config.num_classes) - 1}, 255 ignore)")
    return out

  def _required(self, root):
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
    return {split: self._examples(root, lst, img, lbl)
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
