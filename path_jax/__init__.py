"""path_jax: PATH (Projector Assisted Hierarchical pretraining) and HumanBench in JAX/Flax."""

__version__ = "0.1.0"
