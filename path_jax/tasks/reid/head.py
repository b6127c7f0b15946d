"""ReID head: BNNeck on the cls feature, then a bias-free identity classifier (REFERENCE §3.4)."""
from __future__ import annotations

import flax.linen as nn
import jax

from path_jax.tasks.base import HeadInputs


class ReIDHead(nn.Module):
  """BNNeck + classifier (TransReID / PATH ``reid_cls_vit_B``).

  Outputs (dict):
    'feature':    [B, C] the cls feature before the BNNeck (triplet loss, retrieval feature).
    'feature_bn': [B, C] after the BNNeck.
    'logits':     [B, num_classes] identity scores.

  Parameters: 'bnneck' {scale [C]}, 'classifier' {kernel [C, K_pad]}, K_pad = num_classes rounded
  up to ``classes_multiple_of``; columns from num_classes on are padding (see config.py).
  """
  num_classes: int
  classes_multiple_of: int = 1
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  classifier_init_std: float = 1e-3

  @nn.compact
  def __call__(self, inputs: HeadInputs, *, train: bool) -> dict[str, jax.Array]:
    if inputs.cls is None:
      raise ValueError("the ReID head needs HeadInputs.cls, the [B, C] cls feature; run the "
                       "backbone with its cls token for this dataset (Task.uses_cls_token).")
    feature = inputs.cls
    # BNNeck with the bias frozen at zero (PyTorch: bias.requires_grad_(False), init 0): there is
    # simply no bias parameter. Statistics: PATH uses SyncBatchNorm over the task's GPUs. Under
    # jax.jit with the batch sharded over the mesh, a plain BatchNorm (no axis_name) already
    # reduces over the *global* batch, so it is the SyncBatchNorm equivalent.
    feature_bn = nn.BatchNorm(
        use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
        use_bias=False, use_scale=True,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        name="bnneck")(feature)
    # The class axis can be huge (LUPerson-NL: 151,595 ids): its logical name lets the mesh rules
    # shard it over the model/fsdp axes.
    padded = -(-self.num_classes // self.classes_multiple_of) * self.classes_multiple_of
    logits = nn.Dense(
        padded, use_bias=False,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(self.classifier_init_std), ("embed", "classes")),
        name="classifier")(feature_bn)
    # Inside jit XLA handles the now uneven class sharding of the sliced logits itself.
    logits = logits[:, :self.num_classes]
    return {"feature": feature, "feature_bn": feature_bn, "logits": logits}
