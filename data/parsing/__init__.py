"""Parsing builder (importing registers ``parsing`` with TFDS)."""
from data.parsing.builder import Parsing  # noqa: F401
