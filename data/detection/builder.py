"""Pedestrian detection builder: CrowdHuman .odgt and COCO-format detection JSON.

Records: ``image`` (encoded RGB), ``boxes`` [N, 4] float32 xyxy pixels (clipped to the image),
``is_ignore`` [N] bool (ignore regions: matched predictions there are neither true nor false
positives), ``visible_boxes`` [N, 4] float32 xyxy pixels (the visible part, clipped like the
boxes), ``visible_ratio`` [N] float32 (visible fraction of the full box), ``image_id`` text,
``filename`` text. Images without boxes are kept.

CrowdHuman: full-body box ``fbox`` of every ``gtboxes`` entry, visible box ``vbox``; tag other
than 'person' (e.g. 'mask') or ``extra.ignore == 1`` -> ignore. COCO format: person must be
category 1; any other category, ``iscrowd`` or ``ignore`` -> ignore; a ``.png`` file name whose
file is missing is read as ``.jpg`` (CrowdHuman converted to COCO keeps .png names). The visible
part of a COCO-format box is its ``vis_bbox`` (xywh; the field of the Caltech/CityPersons COCO
conversions, e.g. Pedestron's) and its visible fraction ``vis_ratio`` when the annotation has it.
Degenerate boxes are dropped (counted); a box entirely outside its image is dropped with a
warning naming the file.

Metadata (``metadata.json``): ``max_persons_per_image`` and ``max_ignore_per_image``, the most
person boxes and ignore regions any image of any split holds as stored (after clipping), and
``box_counts`` per split (``images``, ``persons``, ``ignore``, ``mean_persons``,
``max_persons``, ``max_ignore``). Training sizes the static target slots by them
(``path_jax/tasks/detection/budget.py``): with these numbers no person has to be cut.

The visible fraction is, as in the Caltech toolkit (``bbGt``), area(visible box) / area(full box)
of the annotated (unclipped) boxes, the visible box first cut to the full box; it selects
Caltech's occlusion subsets (heavy: [0.2, 0.65]) at evaluation. A box without visibility
annotation gets NaN for both (the heavy-occlusion evaluation then stops and says so).
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
        "visible_boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32,
                                              doc="xyxy pixels, clipped; NaN if not annotated"),
        "visible_ratio": tfds.features.Tensor(shape=(None,), dtype=np.float32,
                                              doc="visible / full box area; NaN if not annotated"),
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
    return {"layout": self.builder_config.layout, "boxes": "xyxy pixels, clipped",
            "visible_ratio": "area(visible box within full box) / area(full box), unclipped; "
                             "NaN where the annotation has no visible box"}

  def _splits(self, root):
    c = self.builder_config
    out = {}
    for split, ann, img in c.splits:
      if split in c.optional_splits and not os.path.exists(os.path.join(root, ann)):
        continue
      read = self._odgt if c.layout == "odgt" else self._coco
      out[split] = self._counted(split, self._examples(root, img, read(os.path.join(root, ann))))
    return out

  def _counted(self, split, examples):
    """Passes ``examples`` through, then records the split's box counts in the metadata."""
    images = persons = ignore = max_persons = max_ignore = 0
    for key, example in examples:
      flags = np.asarray(example["is_ignore"], bool)
      n_ign = int(flags.sum())
      n_per = int(flags.size) - n_ign
      images, persons, ignore = images + 1, persons + n_per, ignore + n_ign
      max_persons, max_ignore = max(max_persons, n_per), max(max_ignore, n_ign)
      yield key, example
    counts = dict(self.info.metadata.get("box_counts", {}))
    counts[split] = {"images": images, "persons": persons, "ignore": ignore,
                     "mean_persons": round(persons / max(images, 1), 3),
                     "max_persons": max_persons, "max_ignore": max_ignore}
    self.info.metadata["box_counts"] = counts
    self.info.metadata["max_persons_per_image"] = max(c["max_persons"] for c in counts.values())
    self.info.metadata["max_ignore_per_image"] = max(c["max_ignore"] for c in counts.values())

  def _odgt(self, path):
    """-> sorted [(image_id, relative file, [(xywh, ignore, visible xywh | None, ratio | None),
    ...])]."""
    out = []
    for i, line in enumerate(common.read_lines(path)):
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        self.report.bad("unparsable_line", path, f"line {i + 1}: {e}")
        continue
      boxes = [(g["fbox"], g.get("tag") != "person" or g.get("extra", {}).get("ignore", 0) == 1,
                g.get("vbox"), None)
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
      by_image.setdefault(a["image_id"], []).append(
          (a["id"], a["bbox"], ign, a.get("vis_bbox"), a.get("vis_ratio")))
    return sorted((str(im["id"]), im["file_name"],
                   [rest for _, *rest in sorted(by_image.get(im["id"], []),
                                                key=lambda t: t[0])])
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
      xyxy, ignore, vis_xyxy, vis_ratio = [], [], [], []
      for j, (b, ign, vis_b, ratio) in enumerate(boxes):
        x, y, w, h = (float(v) for v in b)
        clipped = _clip_xywh(b, img.width, img.height)
        if clipped is not None:
          xyxy.append(clipped)
          ignore.append(ign)
          vbox, vratio = self._visible(b, vis_b, ratio, path, j)
          if vbox is None:
            vis_xyxy.append([np.nan] * 4)
          else:   # a visible part wholly outside the image is an empty box
            vis_xyxy.append(_clip_xywh(vbox, img.width, img.height) or [0.0] * 4)
          vis_ratio.append(vratio)
        elif w > 0 and h > 0:
          self.report.bad("box_outside_image", path,
                          f"box {j} {list(b)} in {img.width}x{img.height} image")
        else:
          self.report.drop("degenerate_box")
      yield image_id, {
          "image": img.data, "boxes": np.asarray(xyxy, np.float32).reshape(-1, 4),
          "is_ignore": np.asarray(ignore, np.bool_),
          "visible_boxes": np.asarray(vis_xyxy, np.float32).reshape(-1, 4),
          "visible_ratio": np.asarray(vis_ratio, np.float32).reshape(-1),
          "image_id": image_id, "filename": os.path.join(img_rel, file_rel)}

  def _visible(self, box, vis_box, ratio, path: str, j: int
               ) -> tuple[list[float] | None, float]:
    """(visible xywh or None, visible fraction or NaN) of one annotated box.

    The fraction is the annotation's own ``ratio`` when given, else area(visible box cut to the
    full box) / area(full box), both unclipped (Caltech's ``bbGt``: area(bbv) / area(bb)).
    A ``ratio`` outside [0, 1] is reported as bad input and read as unknown (NaN).
    """
    x, y, w, h = (float(v) for v in box)
    if ratio is not None:
      ratio = float(ratio)
      if not 0.0 <= ratio <= 1.0:
        self.report.bad("label_out_of_range", path,
                        f"box {j}: vis_ratio {ratio} is not a visible fraction in [0, 1]")
        ratio = float("nan")
    if vis_box is None:
      return None, float("nan") if ratio is None else ratio
    vx, vy, vw, vh = (float(v) for v in vis_box)
    if ratio is None:
      iw = max(0.0, min(x + w, vx + vw) - max(x, vx))
      ih = max(0.0, min(y + h, vy + vh) - max(y, vy))
      ratio = iw * ih / (w * h) if w > 0 and h > 0 else float("nan")
    return [vx, vy, vw, vh], ratio


def _clip_xywh(b, width: int, height: int) -> list[float] | None:
  """xywh -> xyxy clipped to a ``width`` x ``height`` image; None when nothing is left."""
  x, y, w, h = (float(v) for v in b)
  x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
  x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
  return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None
