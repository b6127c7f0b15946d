"""Person ReID task (``'reid'``): BNNeck head, identity cross-entropy + batch-hard triplet.

Follows TransReID as PATH does (paper §4.3; REFERENCE.md §3.4, §6.4, §7.4).

Batch fields the loss expects (one dataset's sub-batch):
  'image': [B, H, W, 3] uint8 RGB (256x128 person crops in PATH).
  'label': [B] int32 identity index in [0, num_classes). Batches should hold several images of
           each identity (P x K sampling, PATH: K=4) so that the triplet term has positives.

Head outputs: 'feature' [B, C] (pre-BNNeck cls feature), 'feature_bn' [B, C], 'logits'
[B, num_classes]. Loss metrics: 'ce', 'triplet', 'accuracy'. ``decode`` returns 'feature': the
L2-normalised pre-BNNeck feature used for retrieval.

Dataset config fields: see :func:`default_config`.
"""
from path_jax.tasks.base import register
from path_jax.tasks.reid.config import default_config  # noqa: F401
from path_jax.tasks.reid.task import ReIDTask

TASK = register(ReIDTask())
