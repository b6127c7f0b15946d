"""Optimisation: Adafactor as the authors run it, layer-wise lr decay, schedules, masks.

Entry point: ``make_optimizer(cfg, params)`` with ``cfg`` from ``default_config()`` (paper) or
``authors_config()``; ``make_schedule(cfg)(step)`` gives the learning rate for metrics,
``durations(cfg)`` the schedule's resolved lengths and ``schedule_problems(cfg)`` what is wrong
with them (a warm-up as long as the run, decay points past its end).
"""
from path_jax.optim.adafactor import (  # noqa: F401
    FactoredRmsState, add_decoupled_weight_decay, clip_by_block_rms,
    default_factored_dims, scale_by_factored_rms, scale_by_lr)
from path_jax.optim.layer_decay import (  # noqa: F401
    backbone_depth, describe, layer_decay_multipliers)
from path_jax.optim.masks import (  # noqa: F401
    DEFAULT_WEIGHT_DECAY_RULES, FREEZE_MODES, trainable_mask, weight_decay_mask)
from path_jax.optim.optimizer import authors_config, default_config, make_optimizer  # noqa: F401
from path_jax.optim.schedules import (  # noqa: F401
    Durations, cosine_schedule, durations, make_schedule, paper_boundaries, schedule_config,
    step_schedule, warmup_cosine_schedule)
from path_jax.optim.schedules import problems as schedule_problems  # noqa: F401
from path_jax.optim.tree_paths import path_names, stacked_axes  # noqa: F401
