"""PATH ViT-B/16 pretraining on the HumanBench mix (paper §5.1; REFERENCE.md §4).

  python -m path_jax.main --config=configs/vitb.py --workdir=DIR
  python -m path_jax.main --config=configs/vitb.py:scale=8 --workdir=DIR   # 1/8 of the batch

Paper settings: 80k steps; Adafactor, peak lr 5e-4 after a linear warm-up from 1e-7 over 1,500
steps, x0.5 at 50/75/95 % of the steps, weight decay 0.05, layer-wise lr decay 0.75, update
clipping 0.5; one 14x14 positional embedding shared by every dataset (224 / 16) and resized to
each input; cls token for ReID; one projector per task, with human and clothes parsing apart
(REFERENCE.md §2.4), one head per dataset; the 25 datasets of :mod:`configs.humanbench` with the
authors' per-image loss weights (``train.loss_weights='authors'``).

Arguments (comma-separated, e.g. ``configs/vitb.py:scale=8,authors``):
  scale=S      divide every dataset's global sub-batch by S (default 1: the authors' 64-GPU
               batch, 3,376 images per step after rounding to multiples of 8).
  divisor=N    round sub-batches to multiples of N (default 8; use the mesh's batch shards).
  authors      the released code instead of the paper: its optimizer
               (``path_jax.optim.authors_config()``: peak 1e-3, steps at 40k/60k/76k with
               x0.5/x0.2/x0.1, num_layers-12 layer decay), its ladder projector (T = 1, layers
               'authors'), its attribute positive ratios, seed 2022 and kept step 75k.
  share=S      projector sharing 'task' (default), 'all' or 'dataset' (paper Tab. 4 ablation);
               other than 'task' drops the human/clothes parsing split.
  pos=P        positional embedding 'shared' (default, the paper's), 'dataset' or 'size' (one
               per dataset / per input grid: Tab. 4 row c; model.backbone.pos_embed).
  noproj       no projector (the multi-task baseline: heads read the backbone's tokens).
  placement=P  'shared' (default: every dataset on every device) or 'slices' (each task group on
               its own rows of the mesh, sized by the authors' GPU counts; sub-batches are the
               authors' exact ones (divisor 1 unless given), rounded at start-up to the nearest
               multiple of their group's devices: path_jax/parallel/PLACEMENT.md).
``optimizer.schedule.total_steps`` follows ``train.num_steps`` (one FieldReference: setting
either sets both), so ``--config.train.num_steps=N`` rescales the decay steps.

The authors start from MAE weights (REFERENCE.md §1.4): download ``mae_pretrain_vit_base.pth`` (the MAE
release, github.com/facebookresearch/mae) and pass ``--config.model.init_from=/path/mae_pretrain_vit_base.pth``;
its positional embedding is resampled to the shared grid and its decoder is skipped. Without
it pretraining starts from random weights. A resumed run never re-applies it.
"""
from __future__ import annotations

import ml_collections

from configs import common, humanbench

ARG_DEFAULTS = dict(scale=1.0, divisor=8, authors=False, share="task", placement="shared",
                    pos="shared", noproj=False)


def build(arg: str | None, *, variant: str, layout=None) -> ml_collections.ConfigDict:
  """The pretraining config for backbone ``variant`` and batch ``layout`` (see module doc)."""
  from path_jax import optim

  args = humanbench.parse_arg(arg, ARG_DEFAULTS)
  if args["placement"] not in ("shared", "slices"):
    raise ValueError(f"placement={args['placement']!r}; use placement=shared or "
                     f"placement=slices.")
  if args["placement"] == "slices" and "divisor=" not in (arg or ""):
    args["divisor"] = 1   # the groups' rounding replaces the global one
  if args["share"] not in ("task", "all", "dataset"):
    raise ValueError(f"share={args['share']!r}; use share=task, share=all or share=dataset.")
  if args["pos"] not in ("shared", "dataset", "size"):
    raise ValueError(f"pos={args['pos']!r}; use pos=shared, pos=dataset or pos=size.")
  c = common.base_config()
  c.mode = "pretrain"
  c.model.backbone.variant = variant
  c.model.backbone.pos_grid = (14, 14)
  c.model.backbone.cls_token = True
  c.model.backbone.pos_embed = args["pos"]
  c.model.projector.enabled = not args["noproj"]
  c.model.projector.share = args["share"]
  # Pod-scale program (path_jax.compile measures it): scanned blocks with remat keep one block's
  # activations per pass and a 12x smaller program; 'save_matmuls' recomputes only norms and
  # GELU, the fewest extra FLOPs of the policies that fit (README "Compiling for a TPU pod").
  c.model.backbone.scan = True
  c.model.backbone.remat = True
  c.model.backbone.remat_policy = "save_matmuls"

  c.optimizer = optim.authors_config() if args["authors"] else optim.default_config()
  c.optimizer.schedule.total_steps = c.train.get_ref("num_steps")
  c.train.num_steps = 80_000
  c.train.loss_weights = "authors"
  if args["placement"] == "slices":
    c.placement.mode = "slices"
    c.placement.round_batches = True

  c.datasets = humanbench.pretrain_datasets(
      args["scale"], args["divisor"], layout=layout, data_dir=c.get_ref("data_dir"),
      authors_ratios=args["authors"])
  if args["share"] != "task":
    for name in c.datasets:
      c.datasets[name].projector_group = ""
  for name in c.datasets:   # detection decoders as one scanned layer body (same numbers)
    if c.datasets[name].task == "detection":
      c.datasets[name].scan_layers = True

  if args["authors"]:
    c.seed = 2022
    c.train.milestones = (75_000,)
    c.model.projector.kind = "ladder"
    c.model.projector.temperature = 1.0
    c.model.projector.layers = "authors"
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return build(arg, variant="B/16")
