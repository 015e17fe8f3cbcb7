"""`audiolm-jax train`: trains any task (codec, w2v-BERT, the three stages) by config.

    audiolm-jax train --config experiments/configs/codec.py:cpu --workdir runs/codec \
        [--config.total_steps=500 ...] [--init_from OTHER_WORKDIR_OR_CHECKPOINT]

Rerunning the same command continues from the latest checkpoint in the workdir. For several
processes add `--coordinator_address HOST:PORT --num_processes N --process_id I` (or set
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; SLURM, MPI and Cloud TPU are
detected).
"""

from __future__ import annotations

import argparse
import importlib


def register(subparsers) -> None:
  p = subparsers.add_parser(
      "train", help="train a model (codec, semantic tokenizer, stage LMs) from a config",
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, metavar="FILE.py:VARIANT",
                 help="config file and variant, e.g. experiments/configs/codec.py:tiny")
  p.add_argument("--workdir", required=True,
                 help="checkpoints, metrics and logs go here (a folder, or gs://bucket/path "
                 "with the gcs extra)")
  p.add_argument("--init_from", default=None, metavar="CKPT",
                 help="start from the parameters of this workdir or checkpoint directory "
                 "(only when the workdir has no checkpoint yet)")
  p.add_argument("--task_module", action="append", default=[], metavar="MODULE",
                 help="import MODULE first (a task of your own registers there; its code "
                 "runs); repeatable")
  p.add_argument("--coordinator_address", default=None, metavar="HOST:PORT",
                 help="multi-process: address of process 0's coordinator")
  p.add_argument("--num_processes", type=int, default=None, help="multi-process: how many")
  p.add_argument("--process_id", type=int, default=None, help="multi-process: this one's id")
  p.set_defaults(func=_run)


def _run(args) -> int:
  # jax.distributed must be initialised before anything touches a device.
  from audiolm_jax.train import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)

  # pylint: disable=g-import-not-at-top
  import audiolm_jax.tasks  # noqa: F401  (registers the package's tasks)
  from audiolm_jax.config import load_config
  from audiolm_jax.train.trainer import train
  from audiolm_jax.commands import checks
  from audiolm_jax.errors import ConfigError
  # pylint: enable=g-import-not-at-top
  checks.output_dir(args.workdir, "--workdir")
  for module in args.task_module:
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise ConfigError(f"--task_module {module}: {e}") from e
  config = load_config(args.config, args.config_overrides)
  result = train(config, args.workdir, init_from=args.init_from)
  if result.last_metrics:
    print(f"step {result.step}: loss {result.last_metrics['loss']:.4f}"
          + (" (preempted, checkpoint saved)" if result.preempted else ""))
  return 0
