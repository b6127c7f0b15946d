"""Detection builder (importing registers ``detection`` with TFDS)."""
from data.detection.builder import Detection  # noqa: F401
