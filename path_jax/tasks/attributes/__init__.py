"""Pedestrian attribute recognition task (``'attributes'``), PATH ``pedattr_cls_vit_A``.

Pooled patch tokens -> Linear -> BatchNorm1d -> logits, trained with a BCE-with-logits weighted
by each attribute's positive ratio, labels of -1 masked (REFERENCE.md §3.3, §6.4, §7.3).

Batch fields the loss expects (one dataset's sub-batch):
  'image':  [B, H, W, 3] uint8 RGB (256x192 in PATH).
  'labels': [B, A] int8/int32 in {-1, 0, 1}; -1 = not annotated (columns of the other datasets
            of a merged attribute set), masked out of the loss.

Head outputs: 'logits' [B, A]. Loss metrics: 'bce' (the loss), 'accuracy' (over annotated
labels, threshold 0). ``decode`` returns 'probs' (sigmoid) and 'pred' (probs > 0.5).

Dataset config fields: see :func:`default_config`.
"""
from path_jax.tasks.attributes.config import default_config  # noqa: F401
from path_jax.tasks.attributes.task import AttributeTask
from path_jax.tasks.base import register

TASK = register(AttributeTask())
