"""The keys every training config has, with their defaults; each config starts from these.

    from audiolm_jax.train.defaults import base_config

    def get_config(arg=None):
      config = base_config()
      config.task = "semantic_lm"
      config.model = ...        # the task's hyperparameters
      config.data.corpus = ...  # and the task's data keys
      return config

Tools (`audiolm-jax train`, `inspect`, benchmarks) rely on these keys; `check_config` says
which one is missing or wrong.
"""

from __future__ import annotations

import ml_collections

from audiolm_jax.errors import ConfigError
from audiolm_jax.train.sharding import MESH_AXES


def base_config() -> ml_collections.ConfigDict:
  """Trainer settings with defaults; the task adds `task`, `model` and its `data` keys."""
  c = ml_collections.ConfigDict()
  c.task = ""                   # registered task name (train/task.py), e.g. "toy_lm"
  c.seed = 0                    # seeds parameters, dropout and data order
  c.total_steps = 1000          # optimizer steps to train for
  c.batch_size = 32             # global batch (all processes together), in examples
  c.compute_dtype = "float32"   # "bfloat16" = mixed precision (fp32 master params)

  c.checkpoint_every = 1000     # save every N steps (and always at the end), asynchronously
  c.keep_checkpoints = 3        # keep the last K checkpoints
  c.eval_every = 1000           # evaluate on data.eval_split every N steps (0 = never)
  c.eval_steps = 10             # batches per evaluation
  c.log_every = 50              # write train metrics every N steps
  c.max_nonfinite_steps = 20    # stop after this many consecutive non-finite steps
  c.peak_flops_per_device = 0.0  # for FLOPs utilisation; 0 = known table, else measured
  c.profile_steps = ""          # "a:b" writes a jax.profiler trace of steps a..b-1 to tb/
  c.progress_bar = True         # process 0: a tqdm bar on a terminal, else log lines
  c.progress_every_s = 60.0     # off a terminal: one progress line (rate, ETA) every N seconds

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1              # data-parallel size (-1 = all remaining devices)
  c.mesh.fsdp = 1               # fully-sharded data-parallel size
  c.mesh.tensor = 1             # tensor-parallel size

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 3e-4  # peak learning rate
  c.optimizer.schedule = "cosine"   # "cosine", "linear" or "constant" after warmup
  c.optimizer.warmup_steps = 100    # linear warmup from 0
  c.optimizer.min_lr_ratio = 0.1    # final lr / peak lr (cosine, linear)
  c.optimizer.b1 = 0.9              # Adam first-moment decay
  c.optimizer.b2 = 0.98             # Adam second-moment decay
  c.optimizer.eps = 1e-9            # Adam epsilon
  c.optimizer.weight_decay = 0.01   # decoupled, on parameters with >= 2 dims
  c.optimizer.grad_clip_norm = 1.0  # global-norm clip (0 = off)
  c.optimizer.grad_accum_steps = 1  # micro-batches per step
  c.optimizer.ema_decay = 0.0       # parameter EMA (0 = off); evaluation uses the EMA

  c.data = ml_collections.ConfigDict()
  c.data.corpus = ""            # dataset name (task-specific)
  c.data.split = "train"        # training split
  c.data.eval_split = "validation"  # evaluation split
  return c


REQUIRED = {"task": str, "total_steps": int, "batch_size": int, "seed": int,
            "checkpoint_every": int, "eval_every": int, "mesh": ml_collections.ConfigDict,
            "optimizer": ml_collections.ConfigDict, "data": ml_collections.ConfigDict}


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` naming the first missing or invalid trainer key."""
  reference = base_config()
  for key, kind in REQUIRED.items():
    if key not in config:
      raise ConfigError(f"config: missing key {key!r} (start from train.defaults.base_config())")
    if not isinstance(config[key], kind):
      raise ConfigError(f"config.{key}: expected {kind.__name__}, got {config[key]!r}")
  for group in ("optimizer", "data"):
    missing = sorted(set(reference[group]) - set(config[group]))
    if missing:
      raise ConfigError(f"config.{group}: missing keys {missing}")
  missing = sorted(k for k in reference if k not in config)
  if missing:
    raise ConfigError(f"config: missing keys {missing}")
  if set(config.mesh) - set(MESH_AXES):
    raise ConfigError(f"config.mesh: axes are {MESH_AXES}, got {sorted(config.mesh)}")
  for key in ("total_steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every",
              "max_nonfinite_steps"):
    if config[key] <= 0:
      raise ConfigError(f"config.{key} must be positive, got {config[key]}")
  for key in ("eval_every", "eval_steps"):
    if config[key] < 0:
      raise ConfigError(f"config.{key} must be >= 0 (0 = never), got {config[key]}")
  if not config.progress_every_s > 0:
    raise ConfigError(f"config.progress_every_s must be positive, got {config.progress_every_s}")
  if config.eval_every and not config.eval_steps:
    raise ConfigError("config.eval_steps must be positive when eval_every > 0")
  if config.batch_size % config.optimizer.grad_accum_steps:
    raise ConfigError(f"batch_size={config.batch_size} is not divisible by "
                      f"optimizer.grad_accum_steps={config.optimizer.grad_accum_steps}")
  if config.compute_dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"config.compute_dtype: {config.compute_dtype!r} is not float32 or "
                      "bfloat16")
