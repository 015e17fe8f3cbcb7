"""Meshes, the logical-axis rules and sharded steps: a 2x2x2 mesh computes what 1 device does."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from audiolm_jax.errors import ConfigError
from audiolm_jax.train import sharding
from train_helpers import run_steps, toy_config


def test_mesh_shape_fills_the_free_axis():
  assert sharding.mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 8) == {
      "data": 2, "fsdp": 2, "tensor": 2}
  assert sharding.mesh_shape({"data": 1, "fsdp": -1, "tensor": 1}, 8)["fsdp"] == 8
  assert sharding.mesh_shape({"data": 1}, 8) == {"data": 1, "fsdp": 1, "tensor": 1}
  for bad in ({"data": -1, "fsdp": -1}, {"data": 3, "fsdp": -1}, {"data": 16},
              {"pipeline": 2}, {"data": 0}):
    with pytest.raises(ConfigError):
      sharding.mesh_shape(bad, 8)


def test_make_mesh_axes_and_subset():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  assert mesh.axis_names == ("data", "fsdp", "tensor") and mesh.size == 8
  assert sharding.make_mesh({"data": 1}).size == 1


def test_logical_rules_and_divisibility_fallback():
  sizes = {"data": 2, "fsdp": 2, "tensor": 2}
  spec = sharding.logical_to_mesh_spec
  assert spec(("embed", "mlp"), (32, 64), sizes) == P("fsdp", "tensor")
  assert spec(("layers", "embed", "heads", "kv"), (2, 32, 4, 8), sizes) == P(
      None, "fsdp", "tensor")
  assert spec(("activation_batch", "activation_length"), (8, 16), sizes) == P(("data", "fsdp"))
  # 6 rows: ("data", "fsdp") needs 4 | 6, falls back to "data" alone; 3 heads: replicated.
  assert spec(("activation_batch",), (6,), sizes) == P("data")
  assert spec(("embed", "heads"), (32, 3), sizes) == P("fsdp")
  # Mesh axes of size 1 are dropped; no names means replicated.
  assert spec(("embed", "mlp"), (32, 64), {"data": 8, "fsdp": 1, "tensor": 1}) == P()
  assert spec(None, (4,), sizes) == P()
  # Every name of the three families has a rule.
  names = {n for n, _ in sharding.LOGICAL_AXIS_RULES}
  for family in (("embed", "mlp", "heads", "kv", "vocab", "layers", "relpos_buckets",
                  "conv_kernel", "conv_in", "conv_out", "codebook", "codebook_dim", "norm"),
                 ("activation_batch", "activation_length", "activation_embed", "activation_mlp",
                  "activation_heads", "activation_kv", "activation_vocab"),
                 ("cache_batch", "cache_length", "cache_heads", "cache_kv")):
    assert set(family) <= names


def test_shard_batch_places_rows_on_the_batch_axes():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  tokens = np.arange(8 * 3).reshape(8, 3)
  out = sharding.shard_batch({"tokens": tokens}, mesh)["tokens"]
  assert out.shape == (8, 3) and out.sharding.spec == P(("data", "fsdp"))
  np.testing.assert_array_equal(np.asarray(out), tokens)
  assert {s.data.shape for s in out.addressable_shards} == {(2, 3)}


def test_one_step_on_2x2x2_mesh_equals_one_device(tmp_path):
  """Acceptance: loss and parameters of data+FSDP+tensor parallel steps match 1 device."""
  one = toy_config(mesh__data=1)
  eight = toy_config(mesh__data=2, mesh__fsdp=2, mesh__tensor=2)
  state1, hist1 = run_steps(one, tmp_path / "one", 2)
  state8, hist8 = run_steps(eight, tmp_path / "eight", 2)
  spec = state8.params["layers"]["attention"]["query"].sharding.spec
  assert spec == P(None, "fsdp", "tensor"), spec  # really sharded three ways
  assert state8.params["token_embed"]["embedding"].sharding.mesh.size == 8
  for m1, m8 in zip(hist1, hist8):
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
    np.testing.assert_allclose(m8["grad_norm"], m1["grad_norm"], rtol=1e-4)
  assert hist1[1]["loss"] != hist1[0]["loss"]  # the first step changed the parameters
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                       rtol=1e-4, atol=1e-6),
               jax.device_get(state1.params), jax.device_get(state8.params))
