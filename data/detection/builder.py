"""Pedestrian detection builder: CrowdHuman .odgt and COCO-format detection JSON.

Records: ``image`` (encoded RGB), ``boxes`` [N, 4] float32 xyxy pixels (clipped to the image),
``is_ignore`` [N] bool (ignore regions: matched predictions there are neither true nor false
positives), ``image_id`` text, ``filename`` text. Images without boxes are kept.

CrowdHuman: full-body box ``fbox`` of every ``gtboxes`` entry; tag other than 'person' (e.g.
'mask') or ``extra.ignore == 1`` -> ignore. COCO format: person must be category 1; any other
category, ``iscrowd`` or ``ignore`` -> ignore; a ``.png`` file name whose file is missing is
read as ``.jpg`` (CrowdHuman converted to COCO keeps .png names). Degenerate boxes are dropped
(counted); a box entirely outside its image is dropped with a warning naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from data import common


@dataclasses.dataclass
class DetectionConfig(tfds.core.BuilderConfig):
  """``splits``: (split, annotation file, image folder) relative to manual_dir."""
  layout: str = "coco"
  splits: tuple = ()
  optional_splits: tuple = ()


def _coco_cfg(name, desc, optional=("val",)):
  return DetectionConfig(
      name=name, layout="coco", description=desc, optional_splits=optional,
      splits=(("train", "annotations/train.json", "images"),
              ("val", "annotations/val.json", "images")))


class Detection(common.HumanBenchBuilder):
  """Pedestrian detection datasets."""
  BUILDER_CONFIGS = [
      DetectionConfig(name="crowdhuman", layout="odgt", description="CrowdHuman (full boxes).",
                      splits=(("train", "annotation_train.odgt", "Images"),
                              ("val", "annotation_val.odgt", "Images"))),
      _coco_cfg("caltech", "Caltech pedestrians in COCO format.", optional=()),
      _coco_cfg("citypersons", "CityPersons in COCO format."),
      _coco_cfg("widerperson", "WiderPerson in COCO format."),
      _coco_cfg("ecp", "EuroCity Persons in COCO format."),
      _coco_cfg("wider_pedestrian", "WIDER Pedestrian in COCO format."),
  ]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32, doc="xyxy pixels"),
        "is_ignore": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
        "image_id": tfds.features.Text(),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    out = {}
    for split, ann, img in config.splits:
      opt = " (optional)" if split in config.optional_splits else ""
      if config.layout == "odgt":
        out[ann] = f"{split}: one JSON per line (ID, gtboxes with tag/fbox/extra){opt}"
        out.setdefault(f"{img}/<ID>.jpg", "images")
      else:
        out[ann] = f"{split}: COCO detection json (person = category 1){opt}"
        out.setdefault(f"{img}/<file_name>", "images, named as in the json")
    return out

  def _required(self, root):
    c = self.builder_config
    return [p for split, ann, img in c.splits if split not in c.optional_splits
            for p in (ann, img)]

  def _static_metadata(self):
    return {"layout": self.builder_config.layout, "boxes": "xyxy pixels, clipped"}

  def _splits(self, root):
    c = self.builder_config
    out = {}
    for split, ann, img in c.splits:
      if split in c.optional_splits and not os.path.exists(os.path.join(root, ann)):
        continue
      read = self._odgt if c.layout == "odgt" else self._coco
      out[split] = self._examples(root, img, read(os.path.join(root, ann)))
    return out

  def _odgt(self, path):
    """-> sorted [(image_id, relative file, [(xywh, ignore), ...])]."""
    out = []
    for i, line in enumerate(common.read_lines(path)):
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        self.report.bad("unparsable_line", path, f"line {i + 1}: {e}")
        continue
      boxes = [(g["fbox"], g.get("tag") != "person" or g.get("extra", {}).get("ignore", 0) == 1)
               for g in rec.get("gtboxes", [])]
      out.append((str(rec["ID"]), f"{rec['ID']}.jpg", boxes))
    return sorted(out)

  def _coco(self, path):
    with open(path) as f:
      coco = json.load(f)
    by_image = {}
    for a in coco.get("annotations", []):
      ign = (a.get("category_id") != 1 or bool(a.get("iscrowd", 0))
             or bool(a.get("ignore", 0)))
      by_image.setdefault(a["image_id"], []).append((a["id"], a["bbox"], ign))
    return sorted((str(im["id"]), im["file_name"],
                   [(b, ign) for _, b, ign in sorted(by_image.get(im["id"], []))])
                  for im in coco["images"])

  def _examples(self, root, img_rel, records):
    for image_id, file_rel, boxes in records:
      path = os.path.join(root, img_rel, file_rel)
      if file_rel.lower().endswith(".png") and not os.path.exists(path):
        file_rel = file_rel[:-4] + ".jpg"
        path = os.path.join(root, img_rel, file_rel)
      img = common.load_image(path, self.report)
      if img is None:
        continue
      xyxy, ignore = [], []
      for j, (b, ign) in enumerate(boxes):
        x, y, w, h = (float(v) for v in b)
        x1, y1 = min(max(x, 0.0), img.width), min(max(y, 0.0), img.height)
        x2, y2 = min(max(x + w, 0.0), img.width), min(max(y + h, 0.0), img.height)
        if x2 > x1 and y2 > y1:
          xyxy.append([x1, y1, x2, y2])
          ignore.append(ign)
        elif w > 0 and h > 0:
          self.report.bad("box_outside_image", path,
                          f"box {j} {list(b)} in {img.width}x{img.height} image")
        else:
          self.report.drop("degenerate_box")
      yield image_id, {
          "image": img.data, "boxes": np.asarray(xyxy, np.float32).reshape(-1, 4),
          "is_ignore": np.asarray(ignore, np.bool_), "image_id": image_id,
          "filename": os.path.join(img_rel, file_rel)}
