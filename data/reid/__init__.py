"""ReID builder (importing registers ``reid`` with TFDS)."""
from data.reid.builder import Reid  # noqa: F401
