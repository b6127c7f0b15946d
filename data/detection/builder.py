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

Native readers (``*_native``; the publishers' releases extracted as distributed, no converted
json), persons vs ignore regions as each dataset's own evaluation protocol has them:

* CityPersons (``gtBboxCityPersons/<split>/<city>/<name>_gtBboxCityPersons.json``: ``objects``
  {label, bbox xywh, bboxVis xywh}; images Cityscapes ``leftImg8bit/<split>/<city>/
  <name>_leftImg8bit.png``): 'pedestrian' -> person; 'rider', 'sitting person', 'person (other)',
  'person group' and 'ignore' (fake humans: posters, reflections) -> ignore regions, as the
  CityPersons benchmark (Zhang et al., CVPR 2017; its annotation README, classes 1 vs 0/2-5)
  scores pedestrians and ignores the rest. ``bboxVis`` is the visible box.
* WiderPerson (``Annotations/<id>.jpg.txt``: a count line, then ``class x1 y1 x2 y2``; lists
  ``train.txt``/``val.txt``; ``Images/<id>.jpg``): classes 1 pedestrians, 2 riders,
  3 partially-visible persons -> person; 4 ignore regions, 5 crowd -> ignore regions (the
  WiderPerson paper, Zhang et al., TMM 2019). No visible box.
* EuroCity Persons, day (``day/labels/<split>/<city>/<city>_<n>.json``: a 'frame' whose
  ``children`` have ``identity``, ``x0 y0 x1 y1`` and ``tags``; images
  ``day/img/<split>/<city>/<city>_<n>.png``): top-level 'pedestrian' -> person, except one
  tagged 'occluded>80' or 'depiction' -> ignore; 'rider', 'person-group-far-away',
  'rider+vehicle-group-far-away' -> ignore regions (the ECP toolkit's pedestrian evaluation:
  riders tolerated, groups "don't care", occlusion limit 80 %, depictions discarded); vehicles
  (bicycle, buggy, ..., and their groups, also the riders' children) are not boxes (dropped,
  counted ``non_person_object``). No visible box.

* WIDER Pedestrian 2019 (the pedestrian detection track of the WIDER Face & Person Challenge
  2019, wider-challenge.org/2019.html, data on competitions.codalab.org/competitions/20132;
  ``manual_dir`` = the folder holding ``Annotations/``, ``sur_train/``, ``ad_train/`` and
  ``val_data/``): ``Annotations/<split>_bbox.txt`` and ``<split>_ignore.txt``, one image a line,
  ``<image name> x y w h x y w h ...`` (any number of boxes, xywh pixels; no class label: the
  2019 release has one class, walking pedestrians and cyclists alike), and the image list
  ``<split>_list.txt``; train images under ``sur_train/`` (surveillance, ``sur*.jpg``) and
  ``ad_train/ad_01..ad_03/`` (driving, ``ad*.jpg``), val images under ``val_data/``. Boxes of
  ``_bbox.txt`` -> person, regions of ``_ignore.txt`` -> ignore regions; a person box more than
  half covered by ignore regions (the summed overlap over its area, the challenge scorer's rule
  for dropping ground truth) -> ignore as well (counted ``person_in_ignore_region``). Images of
  the list without boxes are kept. ``image_id`` = the image name without extension. Where this
  is documented: only by third-party loaders of the release (the file pattern
  ``Annotations/{split}_{list,bbox,ignore}.txt``, the four-number groups, the image folders; the
  one-class note); the 2018 release (``train_annotations.txt``, ``label x y w h`` groups, 1
  pedestrian / 2 cyclist, ignore regions in ``pedestrian_ignore_part_*.txt``) is a different
  format and is not read. Unconfirmed: the list file's exact content (taken as the image name
  first on each line) and whether every release unpacks with this folder nesting.

``det_5set`` reads the five sources of the authors' merged detection row side by side, each from
its publisher's folder under ``manual_dir`` (the preparation root): WiderPerson, ECP (day),
CityPersons and WIDER Pedestrian 2019 natively, COCO persons from
``person_keypoints_train2017.json`` (category 1 only; ``iscrowd`` -> ignore). A source may list
fallback layouts, read when its native files are absent: WIDER Pedestrian falls back to a
COCO-format json (``annotations/train.json`` + ``images/``). Train splits only; images without a
person box are dropped (``no_person_image``) as the authors' merged json has none; ``image_id``
is ``<source>/<id>``, ``filename`` relative to ``manual_dir``; ``metadata.json`` ``sources``
records each source's folder and the layout it was read with.

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
  """``splits``: (split, annotation file or folder, image folder) relative to manual_dir;
  ``sources`` (layout 'merged'): (name, folder names, ((layout, annotation, image folder), ...))
  per source, the folder found under manual_dir by name (exactly, then ignoring case), read
  with the first layout whose files are all there (else the first is reported missing)."""
  layout: str = "coco"
  splits: tuple = ()
  optional_splits: tuple = ()
  sources: tuple = ()


def _coco_cfg(name, desc, optional=("val",)):
  return DetectionConfig(
      name=name, layout="coco", description=desc, optional_splits=optional,
      splits=(("train", "annotations/train.json", "images"),
              ("val", "annotations/val.json", "images")))


# Which labels are persons and which are ignore regions (module docstring, with sources).
CITYPERSONS_PERSON = frozenset({"pedestrian"})
CITYPERSONS_IGNORE = frozenset({"rider", "sitting person", "person (other)", "person group",
                                "ignore"})
WIDERPERSON_PERSON = frozenset({1, 2, 3})
WIDERPERSON_IGNORE = frozenset({4, 5})
ECP_PERSON = frozenset({"pedestrian"})
ECP_IGNORE = frozenset({"rider", "person-group-far-away", "rider+vehicle-group-far-away"})
ECP_IGNORE_TAGS = frozenset({"occluded>80", "depiction"})

# WIDER Pedestrian 2019: the image folders of each split (module docstring; the "image folder"
# of its splits below names the split), the ignore cover above which a person box is ignored.
WIDER_PED_IMAGE_DIRS = {"train": ("sur_train", "ad_train"), "val": ("val_data",)}
WIDER_PED_IGNORE_COVER = 0.5

_NATIVE_SPLITS = {
    "citypersons": (("train", "gtBboxCityPersons/train", "leftImg8bit/train"),
                    ("val", "gtBboxCityPersons/val", "leftImg8bit/val")),
    "widerperson": (("train", "train.txt", "Images"), ("val", "val.txt", "Images")),
    "ecp": (("train", "day/labels/train", "day/img/train"),
            ("val", "day/labels/val", "day/img/val")),
    "wider_pedestrian": (("train", "Annotations/train_bbox.txt", "train"),
                         ("val", "Annotations/val_bbox.txt", "val")),
}
# The authors' det_5set row (B-yaml task 24, in its order): WiderPerson, COCO persons, ECP (day),
# CityPersons, WIDER Pedestrian (the 2019 challenge's, codalab competition 20132).
DET_5SET_SOURCES = (
    ("widerperson", ("WiderPerson", "widerperson"), (("widerperson", "train.txt", "Images"),)),
    ("coco", ("coco", "COCO"),
     (("coco", "annotations/person_keypoints_train2017.json", "train2017"),)),
    ("ecp", ("ECP", "EuroCityPersons"), (("ecp", "day/labels/train", "day/img/train"),)),
    ("citypersons", ("CityPersons", "citypersons"),
     (("citypersons", "gtBboxCityPersons/train", "leftImg8bit/train"),)),
    ("wider_pedestrian", ("WIDER_Pedestrian", "wider_pedestrian", "WIDER_Pedestrian_2019"),
     (("wider_pedestrian", "Annotations/train_bbox.txt", "train"),
      ("coco", "annotations/train.json", "images"))),    # fallback: a COCO-format conversion
)


def _native_cfg(layout, desc):
  return DetectionConfig(name=f"{layout}_native", layout=layout, description=desc,
                         optional_splits=("val",), splits=_NATIVE_SPLITS[layout])


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
      _native_cfg("citypersons", "CityPersons (gtBboxCityPersons json + Cityscapes images)."),
      _native_cfg("widerperson", "WiderPerson (Annotations/<id>.jpg.txt, train/val lists)."),
      _native_cfg("ecp", "EuroCity Persons, day (per-image json trees)."),
      DetectionConfig(name="wider_pedestrian_native", layout="wider_pedestrian",
                      optional_splits=("val",), splits=_NATIVE_SPLITS["wider_pedestrian"],
                      description="WIDER Pedestrian 2019 (Annotations/<split>_bbox.txt and "
                                  "_ignore.txt; sur_train/, ad_train/, val_data/)."),
      DetectionConfig(name="det_5set", layout="merged", splits=(("train", "", ""),),
                      sources=DET_5SET_SOURCES,
                      description="The authors' det_5set: five sources read side by side."),
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
    if config.layout == "merged":
      out = {}
      for name, folders, alternatives in config.sources:
        for k, (layout, ann, img) in enumerate(alternatives):
          tag = name if k == 0 else f"{name} (fallback when the files above are absent)"
          for rel, what in _source_layout(layout, "train", ann, img, "").items():
            out.setdefault(f"{folders[0]}/{rel}", f"{tag}: {what}")
      return out
    out = {}
    for split, ann, img in config.splits:
      opt = " (optional)" if split in config.optional_splits else ""
      out.update(_source_layout(config.layout, split, ann, img, opt))
    return out

  def _required(self, root):
    c = self.builder_config
    if c.layout == "merged":
      out = []
      for _, folders, alternatives in c.sources:
        folder = common.find_folder(root, folders) or folders[0]
        layout, ann, img = _pick_layout(os.path.join(root, folder), alternatives)
        out += [os.path.join(folder, p) for p in _source_required(layout, ann, img)]
      return out
    return [p for split, ann, img in c.splits if split not in c.optional_splits
            for p in _source_required(c.layout, ann, img)]

  def _static_metadata(self):
    return {"layout": self.builder_config.layout, "boxes": "xyxy pixels, clipped",
            "visible_ratio": "area(visible box within full box) / area(full box), unclipped; "
                             "NaN where the annotation has no visible box"}

  def _splits(self, root):
    c = self.builder_config
    if c.layout == "merged":
      return {"train": self._counted("train", self._merged(root))}
    out = {}
    for split, ann, img in c.splits:
      if split in c.optional_splits and not os.path.exists(os.path.join(root, ann)):
        continue
      out[split] = self._counted(split, self._examples(root, self._read(c.layout, root, ann,
                                                                         img)))
    return out

  def _read(self, layout, root, ann, img):
    """-> sorted [(image_id, image path relative to ``root``, [(xywh, ignore, visible xywh |
    None, visible fraction | None), ...])]."""
    if layout in ("odgt", "coco"):
      records = (self._odgt if layout == "odgt" else self._coco)(os.path.join(root, ann))
      return [(i, os.path.join(img, f), boxes) for i, f, boxes in records]
    return {"citypersons": self._citypersons, "widerperson": self._widerperson,
            "ecp": self._ecp, "wider_pedestrian": self._wider_pedestrian}[layout](root, ann, img)

  def _merged(self, root):
    """The sources' train records in turn, ids and files prefixed; images without a person
    box dropped."""
    used = []
    for name, folders, alternatives in self.builder_config.sources:
      folder = common.find_folder(root, folders) or folders[0]
      layout, ann, img = _pick_layout(os.path.join(root, folder), alternatives)
      used.append({"name": name, "folder": folder, "layout": layout, "annotation": ann})
      self.info.metadata["sources"] = list(used)
      records = [(f"{name}/{i}", os.path.join(folder, f), boxes)
                 for i, f, boxes in self._read(layout, os.path.join(root, folder), ann, img)]
      for key, example in self._examples(root, records):
        if np.all(example["is_ignore"]):
          self.report.drop("no_person_image")
          continue
        yield key, example

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

  def _citypersons(self, root, ann, img):
    out = []
    for rel in _walk(os.path.join(root, ann), "_gtBboxCityPersons.json"):
      path = os.path.join(root, ann, rel)
      rec = self._load_json(path)
      if rec is None:
        continue
      boxes = []
      for j, o in enumerate(rec.get("objects", [])):
        label = o.get("label")
        if label not in CITYPERSONS_PERSON | CITYPERSONS_IGNORE:
          self.report.bad("label_out_of_range", path, f"object {j}: unknown label {label!r}")
          continue
        boxes.append((o["bbox"], label in CITYPERSONS_IGNORE, o.get("bboxVis"), None))
      name = os.path.basename(rel)[:-len("_gtBboxCityPersons.json")]
      out.append((name, os.path.join(img, os.path.dirname(rel), name + "_leftImg8bit.png"),
                  boxes))
    return sorted(out)

  def _widerperson(self, root, ann, img):
    out = []
    for image_id in common.read_lines(os.path.join(root, ann)):
      path = os.path.join(root, "Annotations", image_id + ".jpg.txt")
      try:
        lines = common.read_lines(path)
      except FileNotFoundError:
        self.report.bad("missing_annotation", path, f"listed in {ann}")
        continue
      try:
        rows = [[int(float(v)) for v in ln.split()] for ln in lines[1:]]
        count = int(lines[0]) if lines else -1
      except ValueError as e:
        self.report.bad("unparsable_annotation", path, str(e))
        continue
      if count != len(rows) or any(len(r) != 5 for r in rows):
        self.report.bad("unparsable_annotation", path,
                        f"first line says {count} boxes, {len(rows)} lines follow; each line "
                        "must be 'class x1 y1 x2 y2'")
        continue
      boxes = []
      for j, (cls, x1, y1, x2, y2) in enumerate(rows):
        if cls not in WIDERPERSON_PERSON | WIDERPERSON_IGNORE:
          self.report.bad("label_out_of_range", path, f"box {j}: class {cls} not in 1..5")
          continue
        boxes.append(([x1, y1, x2 - x1, y2 - y1], cls in WIDERPERSON_IGNORE, None, None))
      out.append((image_id, os.path.join(img, image_id + ".jpg"), boxes))
    return sorted(out)

  def _ecp(self, root, ann, img):
    out = []
    for rel in _walk(os.path.join(root, ann), ".json"):
      path = os.path.join(root, ann, rel)
      rec = self._load_json(path)
      if rec is None:
        continue
      boxes = []
      for o in rec.get("children", []):
        identity = o.get("identity")
        if identity not in ECP_PERSON | ECP_IGNORE:
          self.report.drop("non_person_object")
          continue
        ign = identity in ECP_IGNORE or bool(ECP_IGNORE_TAGS & set(o.get("tags", [])))
        x0, y0, x1, y1 = (float(o[k]) for k in ("x0", "y0", "x1", "y1"))
        boxes.append(([x0, y0, x1 - x0, y1 - y0], ign, None, None))
      name = rel[:-len(".json")]
      out.append((os.path.basename(name), os.path.join(img, name + ".png"), boxes))
    return sorted(out)

  def _wider_pedestrian(self, root, ann, split):
    """WIDER Pedestrian 2019 (module docstring): ``ann`` = ``Annotations/<split>_bbox.txt``,
    its ``_ignore.txt`` and ``_list.txt`` siblings; ``split`` names the image folders."""
    ignore_rel, list_rel = _wider_ped_sibling(ann, "ignore"), _wider_ped_sibling(ann, "list")
    boxes = self._wider_ped_boxes(os.path.join(root, ann))
    ignores = (self._wider_ped_boxes(os.path.join(root, ignore_rel))
               if os.path.exists(os.path.join(root, ignore_rel)) else {})
    list_path = os.path.join(root, list_rel)
    if os.path.exists(list_path):
      names = list(dict.fromkeys(ln.split()[0] for ln in common.read_lines(list_path)))
      for n in sorted((set(boxes) | set(ignores)) - set(names)):
        self.report.bad("not_in_list", list_path,
                        f"{n} has boxes in {ann} or {ignore_rel} but is not listed")
    else:   # no list: the images the box files name
      names = sorted(set(boxes) | set(ignores))
    dirs = WIDER_PED_IMAGE_DIRS[split]
    where = {}   # image name -> path relative to root (sur_train/..., ad_train/ad_0k/...)
    for d in dirs:
      for rel in _walk(os.path.join(root, d), ""):
        if rel.lower().endswith((".jpg", ".jpeg", ".png")):
          where.setdefault(os.path.basename(rel), os.path.join(d, rel))
    out = []
    for name in names:
      if name not in where:
        self.report.bad("missing_image", os.path.join(root, dirs[0], name),
                        f"listed in {list_rel if os.path.exists(list_path) else ann}; not "
                        f"found under {', '.join(d + '/' for d in dirs)}")
        continue
      regions = ignores.get(name, [])
      persons = []
      for b in boxes.get(name, []):
        covered = _covered_fraction(b, regions) > WIDER_PED_IGNORE_COVER
        if covered:
          self.report.drop("person_in_ignore_region")
        persons.append((b, covered, None, None))
      out.append((os.path.splitext(name)[0], where[name],
                  persons + [(r, True, None, None) for r in regions]))
    return sorted(out)

  def _wider_ped_boxes(self, path):
    """``<image name> x y w h x y w h ...`` lines -> {image name: [[x, y, w, h], ...]}."""
    out = {}
    for i, line in enumerate(common.read_lines(path)):
      name, *values = line.split()
      try:
        nums = [float(v) for v in values]
      except ValueError as e:
        self.report.bad("unparsable_line", path, f"line {i + 1}: {e}")
        continue
      if len(nums) % 4:
        self.report.bad("unparsable_line", path,
                        f"line {i + 1}: {len(nums)} numbers after the image name, expected "
                        "groups of four (x y w h)")
        continue
      out.setdefault(name, []).extend(nums[j:j + 4] for j in range(0, len(nums), 4))
    return out

  def _load_json(self, path):
    try:
      with open(path) as f:
        return json.load(f)
    except json.JSONDecodeError as e:
      self.report.bad("unparsable_annotation", path, str(e))
      return None

  def _examples(self, root, records):
    """``records`` from :meth:`_read` -> (key, example); image paths relative to ``root``."""
    for image_id, file_rel, boxes in records:
      path = os.path.join(root, file_rel)
      if file_rel.lower().endswith(".png") and not os.path.exists(path):
        file_rel = file_rel[:-4] + ".jpg"
        path = os.path.join(root, file_rel)
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
          "image_id": image_id, "filename": file_rel}

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


def _source_layout(layout, split, ann, img, opt):
  """{relative path: what it holds} of one split of one source."""
  if layout == "odgt":
    return {ann: f"{split}: one JSON per line (ID, gtboxes with tag/fbox/extra){opt}",
            f"{img}/<ID>.jpg": "images"}
  if layout == "coco":
    return {ann: f"{split}: COCO detection json (person = category 1){opt}",
            f"{img}/<file_name>": "images, named as in the json"}
  if layout == "citypersons":
    return {f"{ann}/<city>/<name>_gtBboxCityPersons.json":
            f"{split}: objects {{label, bbox, bboxVis}}{opt}",
            f"{img}/<city>/<name>_leftImg8bit.png": f"{split}: Cityscapes images{opt}"}
  if layout == "widerperson":
    return {ann: f"{split}: image ids, one a line{opt}",
            "Annotations/<id>.jpg.txt": "box count, then 'class x1 y1 x2 y2' lines",
            f"{img}/<id>.jpg": "images"}
  if layout == "ecp":
    return {f"{ann}/<city>/<city>_<n>.json": f"{split}: frame json, children with identity, "
                                             f"x0 y0 x1 y1, tags{opt}",
            f"{img}/<city>/<city>_<n>.png": f"{split}: images{opt}"}
  if layout == "wider_pedestrian":
    out = {ann: f"{split}: '<image name> x y w h x y w h ...' per line, persons (walkers and "
                f"cyclists, one class){opt}",
           _wider_ped_sibling(ann, "ignore"): f"{split}: same format, ignore regions{opt}",
           _wider_ped_sibling(ann, "list"): f"{split}: image names, one a line (optional: "
                                            f"else the images the box files name){opt}"}
    for d in WIDER_PED_IMAGE_DIRS[img]:
      out[f"{d}/**/<image name>"] = f"{split}: images{opt}" + (
          " (ad_01/, ad_02/, ad_03/)" if d == "ad_train" else "")
    return out
  raise ValueError(f"unknown detection layout {layout!r}")


def _source_required(layout, ann, img):
  if layout == "wider_pedestrian":
    return [ann, _wider_ped_sibling(ann, "ignore"), *WIDER_PED_IMAGE_DIRS[img]]
  return [ann, img] + (["Annotations"] if layout == "widerperson" else [])


def _pick_layout(folder: str, alternatives):
  """The first (layout, annotation, image folder) of ``alternatives`` whose files all exist
  under ``folder``; the first one (reported missing) if none does."""
  for alt in alternatives:
    if all(os.path.exists(os.path.join(folder, p)) for p in _source_required(*alt)):
      return alt
  return alternatives[0]


def _wider_ped_sibling(ann: str, kind: str) -> str:
  """``Annotations/train_bbox.txt`` -> ``Annotations/train_<kind>.txt``."""
  if not ann.endswith("_bbox.txt"):
    raise ValueError(f"WIDER Pedestrian annotation {ann!r}: expected <split>_bbox.txt")
  return ann[:-len("bbox.txt")] + f"{kind}.txt"


def _covered_fraction(box, regions) -> float:
  """Summed overlap of xywh ``box`` with the xywh ``regions`` over its area (0 if empty)."""
  x, y, w, h = (float(v) for v in box)
  if w <= 0 or h <= 0:
    return 0.0
  inter = 0.0
  for rx, ry, rw, rh in regions:
    iw = min(x + w, rx + rw) - max(x, rx)
    ih = min(y + h, ry + rh) - max(y, ry)
    if iw > 0 and ih > 0:
      inter += iw * ih
  return inter / (w * h)


def _walk(folder: str, suffix: str) -> list[str]:
  """Files under ``folder`` ending in ``suffix``, relative to it, sorted."""
  out = []
  for dirpath, _, files in os.walk(folder):
    out += [os.path.relpath(os.path.join(dirpath, f), folder) for f in files
            if f.endswith(suffix)]
  return sorted(out)
