"""Every preset of the three stage configs loads, passes the trainer's checks and builds."""

import jax
import jax.numpy as jnp
import pytest

from audiolm_jax import pretrained
from audiolm_jax.config import config_variants, load_config

from audiolm_jax.lm.transformer import Transformer
from audiolm_jax.train.defaults import check_config


@pytest.mark.parametrize("task", ["semantic_lm", "coarse_lm", "fine_lm"])
def test_every_preset_loads_and_builds(task):
  assert config_variants(task) == ("tiny", "cpu", "paper")
  for variant in ("tiny", "cpu", "paper"):
    config = load_config(f"{task}:{variant}")
    check_config(config)
    assert config.task == task
    stage = pretrained.stage_from_config(config)
    model_config = pretrained.transformer_config(config)
    assert model_config.vocab_size == stage.vocab_size
    assert model_config.dtype == config.compute_dtype
    # The model traces on a full training sequence (shapes only: nothing is allocated).
    tokens = jax.ShapeDtypeStruct((1, stage.sequence_length), jnp.int32)
    logits = jax.eval_shape(lambda t, m=Transformer(model_config): m.init_with_output(
        jax.random.key(0), t)[0], tokens)
    assert logits.shape == (1, stage.sequence_length, stage.vocab_size)


def test_cpu_preset_is_the_reference_size():
  config = load_config("coarse_lm:cpu")
  model = pretrained.transformer_config(config)
  assert (model.d_model, model.num_layers, model.num_heads, model.head_dim, model.mlp_dim) == (
      256, 4, 4, 64, 1024)


def test_overrides_reach_the_layout_and_model():
  config = load_config("fine_lm:tiny", [("stage.num_quantizers", "6"), ("model.num_layers", "3")])
  stage = pretrained.stage_from_config(config)
  assert stage.num_fine == 4 and pretrained.transformer_config(config).num_layers == 3
