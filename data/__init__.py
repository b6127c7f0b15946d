"""Dataset builders (TFDS) for the HumanBench source formats and preparation tools."""
