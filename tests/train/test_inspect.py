"""`audiolm-jax inspect`: a checkpoint's step, config, parameters and fingerprint; memory plans."""

import json

import jax
import pytest
import toy_lm

from audiolm_jax import cli
from audiolm_jax.train import optim, plan, sharding
from audiolm_jax.train import state as state_lib
from audiolm_jax.train.task import build_task
from audiolm_jax.checkpoint_files import param_fingerprint
from audiolm_jax.train.trainer import train
from train_helpers import TOY, toy_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("inspect")
  result = train(toy_config(mesh__data=1, total_steps=2, checkpoint_every=1, eval_every=0),
                 str(workdir))
  return workdir, result


def test_inspect_checkpoint_json(trained, capsys):
  workdir, result = trained
  assert cli.main(["inspect", str(workdir), "--json"]) == 0
  info = json.loads(capsys.readouterr().out)
  assert info["step"] == 2 and info["task"] == "toy_lm" and info["path"].endswith("/2")
  assert info["fingerprint"] == param_fingerprint(result.state.params)
  expected = toy_lm.param_count(toy_config())
  assert info["param_count"] == expected == sum(info["params_by_module"].values())
  assert info["params_by_module"]["token_embed"] == 64 * 32
  assert info["shapes"]["layers/attention/query"] == [[2, 32, 4, 8], "float32"]
  assert info["config"]["total_steps"] == 2 and info["config"]["model"]["d_model"] == 32
  # An older step directory can be named directly and has another fingerprint.
  assert cli.main(["inspect", str(workdir / "checkpoints" / "1"), "--json"]) == 0
  older = json.loads(capsys.readouterr().out)
  assert older["step"] == 1 and older["fingerprint"] != info["fingerprint"]


def test_inspect_checkpoint_text(trained, capsys):
  workdir, result = trained
  assert cli.main(["inspect", str(workdir)]) == 0
  out = capsys.readouterr().out
  assert f"fingerprint {param_fingerprint(result.state.params)}" in out
  assert "step        2" in out and "layers/attention/query" in out and '"task": "toy_lm"' in out


def test_inspect_missing_checkpoint_is_one_line_error(tmp_path, capsys):
  assert cli.main(["inspect", str(tmp_path)]) == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith("audiolm-jax: error:") and "no checkpoint found" in err
  assert "\n" not in err


def test_plan_paper_on_4x4x8(capsys):
  """Acceptance: the paper-size stage on a 4x4x8 mesh, planned from shapes alone."""
  assert cli.main(["inspect", "--plan", "--config", f"{TOY}:paper", "--mesh", "4x4x8"]) == 0
  out = capsys.readouterr().out
  assert "data=4 x fsdp=4 x tensor=8 = 128 devices" in out and "per device" in out
  assert cli.main(["inspect", "--plan", "--config", f"{TOY}:paper", "--mesh", "4x4x8",
                   "--json"]) == 0
  info = json.loads(capsys.readouterr().out)
  count = toy_lm.param_count(toy_config("paper"))
  assert info["param_count"] == count and 0.15e9 < count < 0.45e9
  assert f"{count:,}" in out and "B)" in out
  assert info["param_bytes"] == 4 * count
  assert 2 * info["param_bytes"] <= info["optimizer_bytes"] < 2 * info["param_bytes"] + 1024
  # 4 x 8 = 32-way sharding of the matrices (the 4099-token vocabulary stays unsplit on tensor).
  per_param = info["per_device_by_field"]["params"]
  assert info["param_bytes"] / 32 <= per_param < info["param_bytes"] / 16
  assert info["per_device_bytes"] == sum(info["per_device_by_field"].values())
  assert info["batch_bytes_per_device"] == (256 * 1025 * 4 + 256 * 4) // 16


def test_plan_matches_sharding_rules_on_small_meshes():
  config = toy_config()
  whole = plan.plan_memory(config, {"data": 1, "fsdp": 1, "tensor": 1})
  total = whole.param_bytes + whole.optimizer_bytes + whole.extra_bytes + whole.ema_bytes
  assert whole.per_device_bytes == total + 4 + 8 + 4 + 4  # + step, rng, counters
  replicated = plan.plan_memory(config, {"data": 8, "fsdp": 1, "tensor": 1})
  assert replicated.per_device_bytes == whole.per_device_bytes  # data parallel: replicated
  sharded = plan.plan_memory(config, {"data": 1, "fsdp": 2, "tensor": 2})
  assert sharded.per_device_by_field["params"] < whole.per_device_by_field["params"] / 3
  # Against the real shardings jax gives the arrays on a 2x2x2 mesh of 8 fake devices.
  tx, _ = optim.make_optimizer(config.optimizer, config.total_steps)
  init_fn = state_lib.make_init_fn(build_task(config), tx, use_ema=False)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  state, _, _ = state_lib.sharded_init(init_fn, 0, mesh)
  device0 = jax.devices()[0]
  real = sum(s.data.nbytes for x in jax.tree.leaves(state.params)
             for s in x.addressable_shards if s.device == device0)
  planned = plan.plan_memory(config, {"data": 2, "fsdp": 2, "tensor": 2})
  assert planned.per_device_by_field["params"] == real


def test_parse_mesh():
  assert plan.parse_mesh("4x4x8") == {"data": 4, "fsdp": 4, "tensor": 8}
  assert plan.parse_mesh("8") == {"data": 8, "fsdp": 1, "tensor": 1}
  for bad in ("4x4x8x2", "a", "", "0x2"):
    with pytest.raises(Exception):
      plan.parse_mesh(bad)
