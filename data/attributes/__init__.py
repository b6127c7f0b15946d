"""Attribute builder (importing registers ``attributes`` with TFDS)."""
from data.attributes.builder import Attributes  # noqa: F401
