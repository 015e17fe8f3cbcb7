"""`audiolm-jax inspect`: what is in a checkpoint, or what a config will need in memory.

    audiolm-jax inspect WORKDIR_OR_CHECKPOINT [--json]
        step, config, parameter count per top-level module, shapes and a fingerprint
        (SHA-256 of all parameter bytes) of the latest checkpoint.
    audiolm-jax inspect --plan --config experiments/configs/X.py:paper --mesh 4x4x8 [--json]
        parameter, optimizer-state and per-device bytes on a (data x fsdp x tensor) mesh,
        from shapes alone (nothing is allocated; no accelerator needed).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
  p = subparsers.add_parser(
      "inspect", help="show a checkpoint (step, config, params, fingerprint) or plan memory",
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("path", nargs="?", help="a workdir, its checkpoints/ dir or a step dir")
  p.add_argument("--json", action="store_true", help="emit one JSON object")
  p.add_argument("--plan", action="store_true", help="plan memory for --config on --mesh")
  p.add_argument("--config", default=None, metavar="FILE.py:VARIANT", help="with --plan")
  p.add_argument("--mesh", default=None, metavar="DxFxT",
                 help="with --plan: mesh sizes data x fsdp x tensor, e.g. 4x4x8 "
                 "(default: the config's mesh on this machine's devices)")
  p.set_defaults(func=_run)


def _human(n: float) -> str:
  """Bytes with binary prefixes: 1536 -> "1.5 KiB"."""
  for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
    if abs(n) < 1024 or prefix == "Ti":
      return f"{n:.1f} {prefix}B" if prefix else f"{int(n)} B"
    n /= 1024
  return f"{n} B"


def _count(n: int) -> str:
  return f"{n:,} ({n / 1e9:.3f} B)" if n >= 1e8 else f"{n:,} ({n / 1e6:.2f} M)"


def _run(args) -> int:
  from audiolm_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  if args.plan:
    if not args.config:
      raise ConfigError("inspect --plan needs --config FILE.py:VARIANT")
    return _plan(args)
  if not args.path:
    raise ConfigError("inspect: give a workdir or checkpoint directory (or --plan --config)")
  if args.config or args.mesh:
    raise ConfigError("inspect: --config and --mesh go with --plan")
  return _checkpoint(args)


def _plan(args) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  from audiolm_jax.config import load_config  # pylint: disable=g-import-not-at-top
  import audiolm_jax.tasks  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from audiolm_jax.train import plan, sharding  # pylint: disable=g-import-not-at-top
  config = load_config(args.config, args.config_overrides)
  mesh = (plan.parse_mesh(args.mesh) if args.mesh
          else sharding.mesh_shape(config.mesh, jax.device_count()))
  result = plan.plan_memory(config, mesh)
  if args.json:
    print(json.dumps({"config": args.config, **result.to_dict()}, indent=2))
    return 0
  n_dev = 1
  for v in result.mesh.values():
    n_dev *= v
  out = [f"config      {args.config} (task {config.task})",
         f"mesh        {' x '.join(f'{k}={v}' for k, v in result.mesh.items())} "
         f"= {n_dev} devices",
         f"parameters  {_count(result.param_count)}"]
  out += [f"  {k:<24}{v:>16,}" for k, v in result.params_by_module.items()]
  out += [f"params      {_human(result.param_bytes)} in all",
          f"optimizer   {_human(result.optimizer_bytes)} in all",
          f"ema         {_human(result.ema_bytes)} in all",
          f"extra       {_human(result.extra_bytes)} in all",
          f"per device  {_human(result.per_device_bytes)} of train state "
          f"({result.per_device_bytes:,} bytes)"]
  out += [f"  {k:<24}{_human(v):>16}" for k, v in result.per_device_by_field.items()]
  out.append(f"batch       {_human(result.batch_bytes_per_device)} per device "
             "(activations not included)")
  print("\n".join(out))
  return 0


def _checkpoint(args) -> int:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from audiolm_jax import checkpoint_files as checkpoint  # pylint: disable=g-import-not-at-top
  from audiolm_jax.train import plan  # pylint: disable=g-import-not-at-top
  from audiolm_jax.train.checkpoint import read_numpy  # pylint: disable=g-import-not-at-top
  step_dir = checkpoint.find_step_dir(args.path)
  state = read_numpy(step_dir, ("params", "step"))
  params = state["params"]
  config = checkpoint.read_config(step_dir) or {}
  by_module = plan.count_by_module(params)
  shapes = {path: [list(np.shape(v)), str(np.asarray(v).dtype)]
            for path, v in sorted(checkpoint.tree_paths(params).items())}
  info = {"path": step_dir, "step": int(state["step"]), "task": config.get("task"),
          "fingerprint": checkpoint.param_fingerprint(params),
          "param_count": sum(by_module.values()), "params_by_module": by_module,
          "shapes": shapes, "config": config}
  if args.json:
    print(json.dumps(info, indent=2))
    return 0
  out = [f"checkpoint  {step_dir}", f"step        {info['step']}", f"task        {info['task']}",
         f"fingerprint {info['fingerprint']}", f"parameters  {_count(info['param_count'])}"]
  out += [f"  {k:<24}{v:>16,}" for k, v in by_module.items()]
  out.append("shapes")
  out += [f"  {k:<40}{str(tuple(s)):<24}{d}" for k, (s, d) in shapes.items()]
  out.append("config")
  out += ["  " + line for line in json.dumps(config, indent=2, sort_keys=True).splitlines()]
  sys.stdout.write("\n".join(out) + "\n")
  return 0
