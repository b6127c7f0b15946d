"""Crowd counting task (``'counting'``): the HumanBench unseen task, downstream only.

The paper follows DR.VIC for the head and loss (§4.3) without details, and the authors' code has
no counting at all (REFERENCE.md §3.6), so this package is our design: a light CSRNet-style
upsampling conv decoder on the final feature map regresses a density map at stride 4 (by
default), trained with pixel MSE against Gaussian-smoothed point annotations; the count is the
sum of the map. Metrics follow the counting literature: MAE and (root) MSE of the counts.

Batch fields the loss expects (one dataset's sub-batch):
  'image':   [B, H, W, 3] uint8 RGB.
  'density': [B, ceil(H/s), ceil(W/s)] float32 target density (s = cfg.output_stride), made by
             :func:`path_jax.tasks.counting.targets.make_targets`; it sums to the count.
  'count':   [B] float32 number of annotated heads inside the image.

Head outputs: 'density' (scaled by cfg.density_scale). Loss metrics: 'pixel_mse' (the loss),
'count_mae', 'count_mse' (batch means of |error| and error^2 of the counts; the dataset-level
"MSE" of counting papers is the square root of the mean of 'count_mse'). ``decode`` returns
'density' (heads per output cell) and 'count'.

Dataset config fields: see :func:`default_config`.
"""
from path_jax.tasks.base import register
from path_jax.tasks.counting import targets  # noqa: F401  (used by the data pipeline)
from path_jax.tasks.counting.config import default_config  # noqa: F401
from path_jax.tasks.counting.task import CountingTask

TASK = register(CountingTask())
