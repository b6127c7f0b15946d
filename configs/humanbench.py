"""HumanBench dataset registry: the 25 pretraining rows and the 19 downstream datasets.

:func:`pretrain_datasets` gives one subtree per row of the authors' pretraining mix (REFERENCE.md
§4.2, the B-yaml "exp3 setting"): 11 pose, 5 human parsing, 2 clothes parsing, 2 attribute,
3 ReID and 2 detection datasets. :func:`downstream_datasets` gives the 19 evaluation datasets of
paper Tab. 2 (12 in-dataset, 5 out-of-dataset, 2 unseen-task). Both are built with
:func:`configs.common.dataset`, so each subtree holds the task's defaults plus what is set here.

Where the numbers come from. REFERENCE.md: batch per GPU x GPUs (§4.2, §4.3), per-sample weights
and drop-path rates (§4.2), projector groups (§2.4), classes / joints (§3), finetuning batches
(§6). The authors' B-yaml itself (``PATH/experiments/L2_full_setting_joint_v100_32g/v100_32g_
vitbase_..._SharePosEmbed.yaml`` in github.com/OpenGVLab/HumanBench): the per-dataset pose flip
pairs and upper-body joints, the parsing flip settings, which sources each merged row holds, and
the attribute positive ratios of the merged attribute rows.

Merged rows. The authors read several sources into one dataset for ``attr_rap2_pa100k``,
``attr_5set``, ``reid_4sets``, ``reid_last_prcc_dgmarket`` and ``det_5set``. Here each is one
builder config that reads its sources side by side, each from its publisher's folder under one raw
root (``python data/build.py <config> --manual_dir=RAW_ROOT --data_dir=...``; ``data.prepare``
does this when every source is found), into the root ``data_dir`` like the single-source rows:

* ``reid_4sets``: ``reid/reid_4sets_native``, the train sets of Market-1501, DukeMTMC-reID,
  CUHK03-NP (labelled) and MSMT17, ids offset in that order (751 + 702 + 767 + 1041 = 3261).
* ``reid_last_prcc_dgmarket``: ``reid/last_prcc_dgmarket_native``, DG-Market, PRCC (train) and
  LaST (train), in that order.
* ``attr_rap2_pa100k``: ``attributes/rap2_pa100k_native``, RAPv2's 54 columns then PA-100k's 26,
  -1 in the other dataset's columns (the authors' MultiAttrDataset).
* ``attr_5set``: ``attributes/attr_5set_native``, columns HARDHC (WIDER Attribute) 14, UAV-Human
  43, Parse27k 44, DukeMTMC 23, Market-1501 30 (154).
* ``det_5set``: ``detection/det_5set``, WiderPerson, COCO persons, ECP (day), CityPersons and
  WIDER Pedestrian 2019, images without persons removed.

The single-source generic configs (``reid/lists``, ``attributes/generic``) still read the
authors' converted lists and pickles; a row pointed at one of them sets ``own_data_dir`` so that
two rows sharing that config get their own ``data_dir`` (``<config data_dir>/<row name>``).

Attribute positive ratios default to ``None``: the training loop reads them from the prepared
dataset's ``metadata.json`` (``positive_ratio``, computed by the builder over the train split,
in the dataset's own column order). ``authors_ratios=True`` sets the authors' vectors instead,
which are only right for a merged pickle with the authors' column order above.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict

from configs import common

# ---------------------------------------------------------------------------------------------
# Keypoint layouts (B-yaml data_cfg; COCO's are the pose task's defaults).
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_UPPER_BODY = tuple(range(11))
AIC_FLIP_PAIRS = ((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11))
AIC_UPPER_BODY = (0, 1, 2, 3, 4, 5, 12, 13)
POSETRACK_FLIP_PAIRS = ((3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14))
POSETRACK_UPPER_BODY = tuple(range(9))
# JRDB2022 and MPI-INF-3DHP share one 17-joint layout in the B-yaml; 3DPW adds two pairs.
JRDB_FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13))
# JRDB-Pose read natively (data/pose/builder.py JRDB_TO_HUMANBENCH) puts its two eyes in slots 15 and
# 16 of that layout (3DHP's spine and head there are centre joints), so JRDB flips them too.
JRDB2022_FLIP_PAIRS = JRDB_FLIP_PAIRS + ((15, 16),)
JRDB_UPPER_BODY = (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 14, 15, 16)
TDPW_FLIP_PAIRS = JRDB_FLIP_PAIRS + ((14, 15), (16, 17))
TDPW_UPPER_BODY = JRDB_UPPER_BODY + (17,)
# MPII's 16-joint order (the B-yaml's MHP rows use it too).
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_UPPER_BODY = tuple(range(7, 16))
PENN_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12))
PENN_UPPER_BODY = tuple(range(9))
HALPE_FLIP_PAIRS = COCO_FLIP_PAIRS
HALPE_UPPER_BODY = tuple(range(11))
AIST_FLIP_PAIRS = COCO_FLIP_PAIRS
AIST_UPPER_BODY = tuple(range(13))
H36M_POSE_FLIP_PAIRS = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))
H36M_POSE_UPPER_BODY = tuple(range(7, 17))

# Parsing label sets (REFERENCE.md §3.2, §7.2).
LIP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))
ATR_FLIP_PAIRS = ((9, 10), (12, 13), (14, 15))
H36M_LABEL_LIST = (0, 1, 2, 3, 6, 7, 8, 17, 18, 19, 25, 26, 27, 32, 33, 34, 38, 39, 43, 44, 46,
                   49, 50, 56, 58)
# Left/right part pairs of H3.6M in source ids, as the parsing builder lists them.
H36M_SOURCE_FLIP_PAIRS = ((1, 6), (2, 7), (3, 8), (17, 25), (18, 26), (19, 27), (33, 38),
                          (34, 39), (49, 56), (50, 58))


def remap_pairs(pairs, label_list) -> tuple[tuple[int, int], ...]:
  """Flip pairs in source ids -> output ids (position in ``label_list``)."""
  index = {src: i for i, src in enumerate(label_list)}
  return tuple((index[a], index[b]) for a, b in pairs)


H36M_PARSING_FLIP_PAIRS = remap_pairs(H36M_SOURCE_FLIP_PAIRS, H36M_LABEL_LIST)

# The authors' positive ratios of the merged attribute rows (B-yaml tasks 18/19,
# CEL_Sigmoid sample_weight), per source in column order.
AUTHORS_POSITIVE_RATIOS: dict[str, tuple[tuple[str, tuple[float, ...]], ...]] = {
    "attr_rap2_pa100k": (
        ("rapv2", (
            0.00575482, 0.19323551, 0.93186936, 0.01533638, 0.0663203,
            0.21637255, 0.07765333, 0.04739267, 0.23145872, 0.11599429,
            0.28473868, 0.03042256, 0.04175559, 0.09656624, 0.02725814,
            0.57574732, 0.02970137, 0.02045833, 0.02796462, 0.26612013,
            0.11776048, 0.26311761, 0.20243439, 0.0844973, 0.01432083,
            0.22655756, 0.08448258, 0.0213267, 0.0690726, 0.02636033,
            0.03813491, 0.0274642, 0.01036163, 0.02444696, 0.296631,
            0.00887509, 0.4031026, 0.54734115, 0.03529429, 0.31651531,
            0.13645261, 0.77788735, 0.07419455, 0.93875749, 0.05350073,
            0.03379303, 0.02666941, 0.04840822, 0.02328422, 0.01050881,
            0.01789736, 0.0254478, 0.13287609, 0.01022916)),
        ("pa100k", (
            0.04354444, 0.17997778, 0.5834, 0.4166, 0.04947778, 0.15104444,
            0.10775556, 0.04191111, 0.00472222, 0.01688889, 0.03241111,
            0.71171111, 0.17344444, 0.11484444, 0.006,
            0.185, 0.19273333, 0.1601, 0.00952222, 0.01345556,
            0.92437778, 0.06216667, 0.46044444, 0.35266667, 0.29462222,
            0.35271111)),
    ),
    "attr_5set": (
        ("hardhc", (
            0.56694664, 0.22444946, 0.0502188, 0.22603755, 0.21919113,
            0.46474449, 0.06994636, 0.15422078, 0.08162761, 0.36204828,
            0.10057877, 0.0329616, 0.26824534, 0.05424195)),
        ("uav_human", (
            0.86300439, 0.12964222, 0.014645, 0.08694309, 0.1215473,
            0.64722239, 0.13779892, 0.15837607, 0.12914787, 0.13860224,
            0.43607489, 0.04529444, 0.27090156, 0.07260706, 0.04702466,
            0.04782797, 0.11827226, 0.33034666, 0.01594266, 0.01952666,
            0.02280171, 0.00945437, 0.0, 0.20367052, 0.77130322,
            0.02502626, 0.0, 0.00154483, 0.59976519, 0.16826299,
            0.02273991, 0.0155101, 0.08342087, 0.0164988, 0.00593215,
            0.07439906, 0.0119261, 0.0, 0.0, 0.58054749,
            0.37316938, 0.04152506, 0.00475808)),
        ("parse27k", (
            0.00662252, 0.39000073, 0.46161124, 0.07161051, 0.07015501,
            0.00109162, 0.23855615, 0.09344298, 0.03846154, 0.07692308,
            0.34269704, 0.07692308, 0.03846154, 0.09344298, 0.10581472,
            0.42369551, 0.47048978, 0.06920894, 0.07845135, 0.85233971,
            0.39549523, 0.1432574, 0.46124736, 0.39549523, 0.1432574,
            0.46124736, 0.40830362, 0.12226184, 0.46943454, 0.40830362,
            0.12226184, 0.46943454, 0.04250055, 0.00123717, 0.95626228,
            0.24532421, 0.02772724, 0.72694855, 0.04512044, 0.02416127,
            0.93071829, 0.26526454, 0.00720472, 0.72753075)),
        ("dukemtmc", (
            0.5616242, 0.16894363, 0.23578972, 0.43217389, 0.33191938,
            0.0451394, 0.09624667, 0.00254512, 0.01690899, 0.07351608,
            0.39920428, 0.05300881, 0.22713044, 0.13152737, 0.14138607,
            0.61217564, 0.08951818, 0.01927859, 0.11180996, 0.02685545,
            0.00836673, 0.05189714, 0.06827955)),
        ("market1501", (
            0.27643785, 0.24134199, 0.11951144, 0.38265306, 0.14486704,
            0.10745207, 0.15978664, 0.0169295, 0.0423624, 0.00224181,
            0.08433828, 0.01607916, 0.13226654, 0.06068336, 0.08804886,
            0.11131725, 0.03849722, 0.12128942, 0.30248918, 0.04955164,
            0.85459184, 0.61897032, 0.95029375, 0.32189239, 0.02264997,
            0.41573902, 0.01646568, 0.78084416, 0.18831169, 0.01437848)),
    ),
}


def authors_positive_ratios(name: str) -> tuple[float, ...]:
  """The concatenated positive-ratio vector of merged attribute row ``name``."""
  return tuple(r for _, block in AUTHORS_POSITIVE_RATIOS[name] for r in block)


# ---------------------------------------------------------------------------------------------
# Pretraining rows (REFERENCE.md §4.2).

PROJECTOR_GROUPS = ("pose", "human_parsing", "clothes_parsing", "attributes", "reid",
                    "detection")


@dataclasses.dataclass(frozen=True)
class Row:
  """One pretraining dataset as the authors ran it.

  ``gpus`` x ``per_gpu_batch`` is the authors' images per step (one dataset per GPU group);
  ``sample_weight`` the per-image weight sw = loss_weight / (bs x GPUs); ``group`` the projector
  share group of REFERENCE.md §2.4; ``own_data_dir``: a merged source built into
  ``<data_dir>/<name>`` (its builder config is shared with another row). ``eval_split`` (and
  ``eval_tfds_name`` where the row is evaluated on another prepared dataset, read from the
  config's root ``data_dir``): what task metrics during pretraining (``train.metrics_every``)
  and the suite's w/o-FT protocol evaluate the row's head on.
  """
  name: str
  task: str
  tfds_name: str
  gpus: int
  per_gpu_batch: int
  sample_weight: float
  drop_path_rate: float
  group: str
  eval_split: str = ""
  own_data_dir: bool = False
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  eval_tfds_name: str = ""
  eval_metric: str = ""   # pose: the evaluator ('coco_ap' | 'pckh' | 'epe'; '' = 'epe')


def _pose(name, tfds_name, gpus, bs, sw, k, pairs, upper, shift=True, eval_split="",
          eval_metric=""):
  # mmpose's TopDownRandomShiftBboxCenter runs for every pose set but COCO/AIC/Penn/MHP (§7.1).
  # eval_metric: the evaluator of the pretraining metrics (train.metrics_every) and of the
  # suite's w/o-FT protocol: the paper's Tab. 3 metric (COCO/AIC keypoint AP, H36M EPE).
  fields = dict(num_joints=k, flip_pairs=pairs, upper_body_ids=upper,
                shift_center_prob=0.3 if shift else 0.0)
  return Row(name, "pose", tfds_name, gpus, bs, sw, 0.3, "pose", eval_split, fields=fields,
             eval_metric=eval_metric)


def _parsing(name, tfds_name, gpus, bs, sw, classes, pairs, group, eval_split=""):
  # DeepFashion2 / ModaNet have no left/right classes: the authors turn flipping off.
  fields = dict(num_classes=classes, flip_pairs=pairs, flip_prob=0.5 if pairs else 0.0)
  return Row(name, "parsing", tfds_name, gpus, bs, sw, 0.3, group, eval_split, fields=fields)


PRETRAIN_ROWS: tuple[Row, ...] = (
    _pose("pose_coco", "pose/coco", 2, 224, 8000, 17, COCO_FLIP_PAIRS, COCO_UPPER_BODY,
          shift=False, eval_split="val", eval_metric="coco_ap"),
    _pose("pose_aic", "pose/aic_native", 2, 224, 6000, 14, AIC_FLIP_PAIRS, AIC_UPPER_BODY,
          shift=False, eval_split="val", eval_metric="coco_ap"),
    _pose("pose_posetrack", "pose/posetrack_native", 1, 224, 6000, 15, POSETRACK_FLIP_PAIRS,
          POSETRACK_UPPER_BODY),
    _pose("pose_jrdb2022", "pose/jrdb_native", 1, 224, 4000, 17, JRDB2022_FLIP_PAIRS,
          JRDB_UPPER_BODY),
    _pose("pose_mhp", "pose/mhp_native", 1, 96, 4000, 16, MPII_FLIP_PAIRS, MPII_UPPER_BODY,
          shift=False),
    _pose("pose_penn_action", "pose/penn_action_native", 1, 128, 4000, 13, PENN_FLIP_PAIRS,
          PENN_UPPER_BODY, shift=False),
    _pose("pose_3dpw", "pose/3dpw_native", 1, 128, 4000, 18, TDPW_FLIP_PAIRS, TDPW_UPPER_BODY),
    _pose("pose_halpe", "pose/halpe_native", 1, 64, 2000, 20, HALPE_FLIP_PAIRS, HALPE_UPPER_BODY),
    _pose("pose_3dhp", "pose/mpi_inf_3dhp_native", 1, 128, 2000, 17, JRDB_FLIP_PAIRS,
          JRDB_UPPER_BODY),
    _pose("pose_h36m", "pose/h36m_native", 1, 128, 2000, 17, H36M_POSE_FLIP_PAIRS,
          H36M_POSE_UPPER_BODY, eval_split="val", eval_metric="epe"),
    _pose("pose_aist", "pose/aist_native", 1, 128, 2000, 17, AIST_FLIP_PAIRS, AIST_UPPER_BODY),
    _parsing("parsing_h36m", "parsing/h36m_native", 3, 26, 20, 25, H36M_PARSING_FLIP_PAIRS,
             "human_parsing", eval_split="val"),
    _parsing("parsing_lip", "parsing/lip", 2, 18, 20, 20, LIP_FLIP_PAIRS, "human_parsing",
             eval_split="val"),
    _parsing("parsing_cihp", "parsing/cihp", 2, 24, 20, 20, LIP_FLIP_PAIRS, "human_parsing",
             eval_split="val"),
    _parsing("parsing_vip", "parsing/vip_native", 1, 16, 20, 20, LIP_FLIP_PAIRS, "human_parsing"),
    _parsing("parsing_paperdoll", "parsing/paperdoll_native", 2, 24, 15, 20, LIP_FLIP_PAIRS,
             "human_parsing"),
    _parsing("parsing_deepfashion2", "parsing/deepfashion2_native", 2, 32, 15, 14, (),
             "clothes_parsing"),
    _parsing("parsing_modanet", "parsing/modanet_native", 1, 32, 15, 14, (), "clothes_parsing"),
    # Evaluated on its own test split (RAPv2's and PA-100K's test images, -1 in the other set's
    # columns; mA over all 80). The suite's w/o FT scores RAPv2 / PA-100K on their own test
    # splits with columns 0-53 / 54-79 of this head (PRETRAINED_HEADS).
    Row("attr_rap2_pa100k", "attributes", "attributes/rap2_pa100k_native", 1, 128, 0.1, 0.1,
        "attributes", eval_split="test", fields=dict(num_attributes=80)),
    Row("attr_5set", "attributes", "attributes/attr_5set_native", 1, 116, 0.1, 0.1, "attributes",
        fields=dict(num_attributes=154)),
    # The merged lists have no query/gallery: Market-1501's stands for the row during
    # pretraining; the suite's w/o FT evaluates this head on Market-1501, MSMT17 and CUHK03.
    Row("reid_4sets", "reid", "reid/reid_4sets_native", 1, 112, 5, 0.0, "reid",
        eval_split="query+gallery", fields=dict(num_classes=3261),
        eval_tfds_name="reid/market1501"),
    Row("reid_last_prcc_dgmarket", "reid", "reid/last_prcc_dgmarket_native", 1, 96, 0.1, 0.0,
        "reid", fields=dict(num_classes=5901)),
    Row("reid_luperson", "reid", "reid/luperson_nl", 2, 192, 1, 0.0, "reid",
        fields=dict(num_classes=151595)),
    Row("det_crowdhuman", "detection", "detection/crowdhuman", 16, 2, 10, 0.0, "detection",
        eval_split="val"),
    Row("det_5set", "detection", "detection/det_5set", 16, 2, 10, 0.0, "detection"),
)

# ViT-L (REFERENCE.md §4.3, L-yaml): every non-detection row on 1 GPU, detection 8 + 8 GPUs;
# (GPUs, per-GPU batch) where they differ from the B-yaml's.
VIT_L_LAYOUT: dict[str, tuple[int, int]] = {
    "pose_coco": (1, 448), "pose_aic": (1, 448), "parsing_h36m": (1, 64), "parsing_lip": (1, 36),
    "parsing_cihp": (1, 48), "parsing_paperdoll": (1, 48), "parsing_deepfashion2": (1, 64),
    "reid_luperson": (1, 384), "det_crowdhuman": (8, 4), "det_5set": (8, 4),
}


def scaled_batch(images: float, scale: float, divisor: int) -> int:
  """``images / scale`` rounded half-up to a multiple of ``divisor`` (at least ``divisor``)."""
  if scale <= 0 or divisor <= 0:
    raise ValueError(f"batch scale ({scale}) and divisor ({divisor}) must be positive.")
  return max(divisor, int(math.floor(images / scale / divisor + 0.5)) * divisor)


def _default_data_dir():
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _own_dir(data_dir, name):
  """``<data_dir>/<name>``; with a FieldReference it follows later changes of the root field."""
  base = _default_data_dir() if data_dir is None else data_dir
  if isinstance(base, config_dict.FieldReference):
    return base + f"/{name}"
  return os.path.join(base, name)


def pretrain_datasets(scale: float = 1.0, divisor: int = 8, *,
                      layout: Mapping[str, tuple[int, int]] | None = None,
                      data_dir: str | config_dict.FieldReference | None = None,
                      authors_ratios: bool = False) -> ml_collections.ConfigDict:
  """One subtree per pretraining row, for one SPMD step over all of them.

  Args:
    scale: divides every global sub-batch (authors' GPUs x per-GPU batch) for smaller machines.
    divisor: sub-batches are rounded to multiples of it (the batch shards of the mesh).
    layout: ``{row: (GPUs, per-GPU batch)}`` replacing the B-yaml's (``VIT_L_LAYOUT``).
    data_dir: the config's data dir (pass ``config.get_ref('data_dir')``); merged rows are read
      from ``<data_dir>/<row>``. None: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
    authors_ratios: set the authors' attribute positive ratios (``AUTHORS_POSITIVE_RATIOS``).

  Loss weights: ``weight`` is the authors' lambda_d = sw_d x batch_d, normalised
  (``path_jax.step.authors_loss_weights``), from the rounded batches, so every image of dataset
  d still weighs sw_d; ``sample_weight`` carries sw_d for ``train.loss_weights='authors'``.
  """
  from path_jax.step import authors_loss_weights

  layout = dict(layout or {})
  unknown = sorted(set(layout) - {r.name for r in PRETRAIN_ROWS})
  if unknown:
    raise KeyError(f"layout names unknown pretraining rows {unknown}; rows are "
                   f"{[r.name for r in PRETRAIN_ROWS]}.")
  batches = {}
  for row in PRETRAIN_ROWS:
    gpus, per_gpu = layout.get(row.name, (row.gpus, row.per_gpu_batch))
    batches[row.name] = scaled_batch(gpus * per_gpu, scale, divisor)
  weights = authors_loss_weights({r.name: r.sample_weight for r in PRETRAIN_ROWS}, batches)

  out = ml_collections.ConfigDict()
  for row in PRETRAIN_ROWS:
    fields = dict(row.fields)
    if authors_ratios and row.name in AUTHORS_POSITIVE_RATIOS:
      fields["positive_ratios"] = authors_positive_ratios(row.name)
    # Parsing groups split human from clothes parsing (§2.4); other tasks share by task name.
    group = row.group if row.group != row.task else ""
    out[row.name] = common.dataset(
        row.task, row.tfds_name, batch_size=batches[row.name], weight=weights[row.name],
        sample_weight=row.sample_weight, drop_path_rate=row.drop_path_rate,
        projector_group=group, eval_split=row.eval_split, gpus=layout.get(
            row.name, (row.gpus, 0))[0],
        data_dir=_own_dir(data_dir, row.name) if row.own_data_dir else "", **fields)
    if row.eval_metric:
      out[row.name].eval_metric = row.eval_metric
    if row.eval_tfds_name:   # another prepared dataset, in the root data_dir
      out[row.name].eval_tfds_name = row.eval_tfds_name
      out[row.name].eval_data_dir = _default_data_dir() if data_dir is None else data_dir
  return out


# ---------------------------------------------------------------------------------------------
# Downstream datasets (paper Tab. 2). ``eval_metric`` names the paper's Tab. 3 metric; for pose
# it picks the evaluator ('coco_ap' | 'pckh' | 'epe'). Detection subtrees also carry
# ``eval_protocol`` ('crowdhuman' | 'caltech_heavy', the detection evaluator's protocol).
# ``eval_tfds_name`` is set only where evaluation reads another prepared dataset than training.

@dataclasses.dataclass(frozen=True)
class Downstream:
  name: str
  task: str
  tfds_name: str
  batch_size: int          # global images per update (REFERENCE.md §6 where it says)
  eval_split: str
  eval_metric: str
  split: str = "train"
  eval_tfds_name: str = ""
  eval_protocol: str = ""  # detection only
  own_data_dir: bool = False
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _ds(name, task, tfds_name, batch, eval_split, metric, **kw):
  fields = kw.pop("fields", {})
  return Downstream(name, task, tfds_name, batch, eval_split, metric, fields=fields, **kw)


# ReID finetuning: 64 images per step as 16 identities x 4 (§6.3); queries and gallery together.
_REID_EVAL = "query+gallery"
# Parsing finetuning: 4 per GPU in the yamls; the GPU count is not recorded, 8 assumed.
_PARSING_BATCH = 32

DOWNSTREAM: tuple[Downstream, ...] = (
    _ds("market1501", "reid", "reid/market1501", 64, _REID_EVAL, "map_cmc",
        fields=dict(num_classes=751)),
    _ds("msmt17", "reid", "reid/msmt17", 64, _REID_EVAL, "map_cmc",
        fields=dict(num_classes=1041)),
    _ds("cuhk03", "reid", "reid/cuhk03_np_labeled", 64, _REID_EVAL, "map_cmc",
        fields=dict(num_classes=767)),
    # SenseReID has no training split: train on the authors' finetuning set (the four sets of
    # reid_4sets plus MARS, 3886 ids, §6.3; reid/sensereid_train_native reads the five
    # publishers' folders side by side), evaluate on SenseReID's probe/gallery (top-1).
    _ds("sensereid", "reid", "reid/sensereid_train_native", 64, _REID_EVAL, "top1",
        eval_tfds_name="reid/sensereid", fields=dict(num_classes=3886)),
    _ds("coco", "pose", "pose/coco", 160, "val", "coco_ap",
        fields=dict(num_joints=17, flip_pairs=COCO_FLIP_PAIRS, upper_body_ids=COCO_UPPER_BODY)),
    _ds("h36m_pose", "pose", "pose/h36m_native", 160, "val", "epe",
        fields=dict(num_joints=17, flip_pairs=H36M_POSE_FLIP_PAIRS,
                    upper_body_ids=H36M_POSE_UPPER_BODY, shift_center_prob=0.3)),
    _ds("aic", "pose", "pose/aic_native", 160, "val", "coco_ap",
        fields=dict(num_joints=14, flip_pairs=AIC_FLIP_PAIRS, upper_body_ids=AIC_UPPER_BODY)),
    _ds("mpii", "pose", "pose/mpii", 160, "val", "pckh",
        fields=dict(num_joints=16, flip_pairs=MPII_FLIP_PAIRS, upper_body_ids=MPII_UPPER_BODY)),
    _ds("h36m_parsing", "parsing", "parsing/h36m_native", _PARSING_BATCH, "val", "miou",
        fields=dict(num_classes=25, flip_pairs=H36M_PARSING_FLIP_PAIRS)),
    _ds("lip", "parsing", "parsing/lip", _PARSING_BATCH, "val", "miou",
        fields=dict(num_classes=20, flip_pairs=LIP_FLIP_PAIRS)),
    _ds("cihp", "parsing", "parsing/cihp", _PARSING_BATCH, "val", "miou",
        fields=dict(num_classes=20, flip_pairs=LIP_FLIP_PAIRS)),
    _ds("atr", "parsing", "parsing/atr", _PARSING_BATCH, "val", "pacc",
        fields=dict(num_classes=18, flip_pairs=ATR_FLIP_PAIRS)),
    # Attributes: 64 images per step ("b64"; e.g. PA-100k 42187 x 64 / 90000 = 30 epochs, §6.2).
    _ds("pa100k", "attributes", "attributes/pa100k_native", 64, "test", "ma",
        fields=dict(num_attributes=26)),
    _ds("rapv2", "attributes", "attributes/rapv2_native", 64, "test", "ma",
        fields=dict(num_attributes=54)),
    _ds("peta", "attributes", "attributes/peta_native", 64, "test", "ma",
        fields=dict(num_attributes=35)),
    # Detection: 32 images per update (CrowdHuman 46875 x 32 / 15000 = 100 epochs, §6.2).
    _ds("crowdhuman", "detection", "detection/crowdhuman", 32, "val", "ap_mr",
        eval_protocol="crowdhuman"),
    # Caltech: log-average miss rate on the heavy-occlusion subset (paper Tab. 3).
    _ds("caltech", "detection", "detection/caltech", 32, "val", "mr_heavy",
        eval_protocol="caltech_heavy"),
    # Counting is not in the authors' code (§3.6): batch and kernels are our choice; MCNN's
    # geometry-adaptive kernels (k = 3 neighbours, beta 0.3) for the dense part A.
    _ds("shanghaitech_a", "counting", "counting/shanghaitech_a", 16, "test", "mae_mse",
        fields=dict(adaptive_knn=3)),
    _ds("shanghaitech_b", "counting", "counting/shanghaitech_b", 16, "test", "mae_mse"),
)


def downstream_dataset(name: str, data_dir: str | config_dict.FieldReference | None = None
                       ) -> ml_collections.ConfigDict:
  """The subtree of downstream dataset ``name`` (one of ``DOWNSTREAM``).

  Adds ``eval_metric``, ``eval_tfds_name`` ('' = ``tfds_name``) and for detection
  ``eval_protocol`` to the common fields.
  ``data_dir`` as in :func:`pretrain_datasets` (for datasets built from merged lists).
  """
  found = [d for d in DOWNSTREAM if d.name == name]
  if not found:
    raise KeyError(f"unknown downstream dataset {name!r}; known: {[d.name for d in DOWNSTREAM]}")
  d = found[0]
  cfg = common.dataset(d.task, d.tfds_name, batch_size=d.batch_size, split=d.split,
                       eval_split=d.eval_split,
                       data_dir=_own_dir(data_dir, d.name) if d.own_data_dir else "", **d.fields)
  cfg.eval_metric = d.eval_metric
  cfg.eval_tfds_name = d.eval_tfds_name
  if d.task == "detection":
    cfg.eval_protocol = d.eval_protocol
  return cfg


def downstream_datasets(data_dir: str | config_dict.FieldReference | None = None
                        ) -> ml_collections.ConfigDict:
  """One subtree per downstream dataset (paper Tab. 2), see :func:`downstream_dataset`."""
  out = ml_collections.ConfigDict()
  for d in DOWNSTREAM:
    out[d.name] = downstream_dataset(d.name, data_dir)
  return out


# ---------------------------------------------------------------------------------------------
# The paper's "PATH (w/o FT)" row (Tab. 3): the pretraining heads evaluated directly, on the
# in-dataset evaluations. Which pretraining row's head stands for each downstream set
# (python -m path_jax.suite --protocol=none). Sets not listed (ATR, SenseReID, Caltech, MPII,
# PETA and counting) have no pretraining head: Tab. 3 has '-' there.


@dataclasses.dataclass(frozen=True)
class PretrainedHead:
  """A downstream set's pretraining head: ``row`` (a ``PRETRAIN_ROWS`` name); ``columns``
  ``(start, stop)`` of a merged attribute row's output that are this set's attributes."""
  row: str
  columns: tuple[int, int] | None = None


PRETRAINED_HEADS: dict[str, PretrainedHead] = {
    "h36m_parsing": PretrainedHead("parsing_h36m"),
    "lip": PretrainedHead("parsing_lip"),
    "cihp": PretrainedHead("parsing_cihp"),
    # reid_4sets merges the four training sets: one head for the three ReID columns.
    "market1501": PretrainedHead("reid_4sets"),
    "msmt17": PretrainedHead("reid_4sets"),
    "cuhk03": PretrainedHead("reid_4sets"),
    "crowdhuman": PretrainedHead("det_crowdhuman"),
    "coco": PretrainedHead("pose_coco"),
    "h36m_pose": PretrainedHead("pose_h36m"),
    "aic": PretrainedHead("pose_aic"),
    # attr_rap2_pa100k: RAPv2's 54 columns, then PA-100K's 26 (the authors' MultiAttrDataset);
    # Tab. 3 reports no w/o-FT attribute numbers.
    "rapv2": PretrainedHead("attr_rap2_pa100k", (0, 54)),
    "pa100k": PretrainedHead("attr_rap2_pa100k", (54, 80)),
}


# ---------------------------------------------------------------------------------------------
def parse_arg(arg: str | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
  """``'scale=8,authors'`` -> dict over ``defaults``; bare names set booleans to True.

  Values take the type of their default. Unknown names fail, naming the valid ones.
  """
  out = dict(defaults)
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    key, sep, value = token.partition("=")
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}; valid: {sorted(defaults)} "
                       f"(e.g. --config=configs/vitb.py:scale=8,authors).")
    kind = type(defaults[key])
    if kind is bool:
      if sep and value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key!r} is a flag; write {key!r} or {key}=false.")
      out[key] = (not sep) or value.lower() in ("true", "1")
    elif not sep:
      raise ValueError(f"config argument {key!r} needs a value: {key}=<{kind.__name__}>.")
    else:
      out[key] = kind(value)
  return out
