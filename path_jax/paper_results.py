"""The paper's Table 3 (PATH with a ViT-B backbone): what the downstream suite prints beside ours.

Transcribed from Table 3 of the paper (seed/000_00f2c93ceda1e9d6.txt, "Experimental results of
our PATH and recent state-of-the-art methods ..."), the ViT-B rows "PATH (w/o FT)", "PATH (FT)",
"PATH (Head FT)" and "PATH (Partial FT)". ``None`` is the table's '-' (not reported).

Which number each column is (Table 3's caption and §5.3 text): human parsing mIoU, except ATR
pixel accuracy (pACC); ReID mAP for Market-1501 / MSMT17 / CUHK03, top-1 for SenseReID (the text:
"+4.4% Top1 accuracy ... on SenseReID"); pose AP for COCO and AIC, PCKh@0.5 for MPII, EPE (lower
is better) for Human3.6M; attributes mA; detection AP for CrowdHuman and the heavy-occlusion
log-average miss rate MR^-2 (lower is better) for Caltech; counting MSE (the root mean squared
count error of the counting literature, lower is better; the unseen-task paragraph compares
"MSE(↓)") for ShanghaiTech A and B. Percentages are as printed (x100 of our fractions).
"""
from __future__ import annotations

import dataclasses

# Table 3's two halves, left to right (HumanBench dataset names of configs/humanbench.py).
TOP_HALF = ("h36m_parsing", "lip", "cihp", "atr", "market1501", "msmt17", "cuhk03", "sensereid",
            "crowdhuman", "caltech")
BOTTOM_HALF = ("coco", "h36m_pose", "aic", "mpii", "pa100k", "rapv2", "peta", "shanghaitech_a",
               "shanghaitech_b")
# Task groups of each half, as Table 3's header rows.
GROUPS = (("Human Parsing", ("h36m_parsing", "lip", "cihp", "atr")),
          ("Person ReID", ("market1501", "msmt17", "cuhk03", "sensereid")),
          ("Pedestrian Detection", ("crowdhuman", "caltech")),
          ("Pose Estimation", ("coco", "h36m_pose", "aic", "mpii")),
          ("Pedestrian Attribute Recognition", ("pa100k", "rapv2", "peta")),
          ("Counting (unseen task)", ("shanghaitech_a", "shanghaitech_b")))

TITLES = {"h36m_parsing": "Human3.6M", "lip": "LIP", "cihp": "CIHP", "atr": "ATR",
          "market1501": "Market1501", "msmt17": "MSMT", "cuhk03": "CUHK03",
          "sensereid": "SenseReID", "crowdhuman": "CrowdHuman", "caltech": "Caltech",
          "coco": "COCO", "h36m_pose": "Human3.6M", "aic": "AIC", "mpii": "MPII",
          "pa100k": "PA-100K", "rapv2": "RAPv2", "peta": "PETA", "shanghaitech_a": "ShTech PartA",
          "shanghaitech_b": "ShTech PartB"}


@dataclasses.dataclass(frozen=True)
class Metric:
  """How the paper's number of one column is read from our evaluator's result.

  key: the evaluator's result key; label: the name Table 3 uses; lower_is_better: the table's
  (↓); scale: factor from our value to the paper's unit (100 for fractions printed as %).
  """
  key: str
  label: str
  lower_is_better: bool = False
  scale: float = 100.0


# By ``eval_metric`` of the downstream registry (configs/humanbench.py DOWNSTREAM).
METRICS = {
    "map_cmc": Metric("mAP", "mAP"),
    "top1": Metric("rank1", "top-1"),
    "coco_ap": Metric("AP", "AP"),
    "epe": Metric("EPE", "EPE", lower_is_better=True, scale=1.0),
    "pckh": Metric("PCKh", "PCKh@0.5"),
    "miou": Metric("mIoU", "mIoU"),
    "pacc": Metric("pixel_acc", "pACC"),
    "ma": Metric("mA", "mA"),
    "ap_mr": Metric("AP", "AP"),
    "mr_heavy": Metric("MR", "MR^-2 heavy", lower_is_better=True),
    "mr_all": Metric("MR", "MR^-2 all", lower_is_better=True),
    "mae_mse": Metric("mse", "MSE", lower_is_better=True, scale=1.0),
}

# Table 3's row names for the finetuning protocols.
PROTOCOL_ROWS = {"full": "PATH (FT)", "head": "PATH (Head FT)", "partial": "PATH (Partial FT)",
                 "none": "PATH (w/o FT)"}


def _row(top: tuple, bottom: tuple) -> dict[str, float | None]:
  assert len(top) == len(TOP_HALF) and len(bottom) == len(BOTTOM_HALF)
  return dict(zip(TOP_HALF + BOTTOM_HALF, top + bottom))


_ = None
# Table 3, ViT-B rows, in the column order of TOP_HALF and BOTTOM_HALF.
PATH_B: dict[str, dict[str, float | None]] = {
    "full": _row((65.0, 61.4, 66.8, 97.5, 89.5, 69.1, 82.6, 47.7, 90.6, 30.1),
                 (76.3, 6.2, 35.0, 93.3, 85.0, 81.2, 88.0, 91.7, 10.8)),
    "head": _row((64.1, 59.9, 63.3, 97.1, _, _, _, _, 90.0, 31.1),
                 (75.2, 6.1, 31.6, 92.7, 77.4, 72.4, 79.0, _, _)),
    "partial": _row((63.7, 60.0, 63.1, 97.2, 88.7, 66.1, 79.5, 48.2, 90.9, 28.3),
                    (76.0, 6.1, 33.3, 93.0, 86.9, 83.1, 89.8, _, 14.0)),
    # "PATH (w/o FT)": the pretraining heads evaluated directly (python -m path_jax.suite
    # --protocol=none); '-' wherever the set has no pretraining head or Table 3 gives none.
    "none": _row((63.9, 56.3, 63.9, _, 88.6, 66.3, 77.2, _, 89.1, _),
                 (75.0, 6.9, 31.1, _, _, _, _, _, _)),
}


def paper_value(dataset: str, protocol: str) -> float | None:
  """PATH-B's Table 3 number for HumanBench ``dataset`` under ``protocol`` (None: '-')."""
  if protocol not in PATH_B:
    raise KeyError(f"no Table 3 row for protocol {protocol!r}; rows: {sorted(PATH_B)}")
  if dataset not in PATH_B[protocol]:
    raise KeyError(f"{dataset!r} is not a Table 3 column; columns: {TOP_HALF + BOTTOM_HALF}")
  return PATH_B[protocol][dataset]


# Table 4 (ablations, ViT-B pretrained on a ~1.28 M-image subset of HumanBench, full finetuning):
# variant -> dataset -> value. (a) all-shared projector, (b) one per dataset ("specific"),
# (c) task-shared, all three with unshared positional embeddings; (d) task-shared with the
# shared positional embedding (PATH). Caltech is reported as 100 - heavy-occlusion MR^-2 (the
# paper's dagger), so every column is higher-is-better and the average is their plain mean.
TABLE4_DATASETS = ("caltech", "pa100k", "peta", "mpii", "lip", "market1501", "msmt17")
TABLE4: dict[str, dict[str, float]] = {
    v: dict(zip(TABLE4_DATASETS + ("average",), values)) for v, values in {
        "a": (60.6, 84.4, 87.6, 92.0, 59.7, 86.2, 65.8, 76.6),
        "b": (57.5, 84.6, 87.2, 92.4, 59.7, 86.5, 66.0, 76.3),
        "c": (60.2, 84.6, 87.9, 92.5, 60.5, 87.1, 66.1, 76.9),
        "d": (60.9, 84.4, 87.5, 92.4, 61.0, 87.6, 66.8, 77.2),
    }.items()}
