"""Pose builder (importing registers ``pose`` with TFDS)."""
from data.pose.builder import Pose  # noqa: F401
