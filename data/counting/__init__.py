"""Counting builder (importing registers ``counting`` with TFDS)."""
from data.counting.builder import Counting  # noqa: F401
