"""w2v-BERT: presets, shapes, frames, padding, masking and axis names."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import frames
from audiolm_jax.config import load_config
from audiolm_jax.errors import ConfigError
from audiolm_jax.semantic import losses, w2v_bert
from audiolm_jax.train import plan, sharding
from audiolm_jax.train.defaults import check_config
from jax.sharding import PartitionSpec


@pytest.mark.parametrize("variant", ["tiny", "cpu", "paper"])
def test_presets_load(variant):
  cfg = load_config(f"experiments/configs/w2v_bert.py:{variant}")
  check_config(cfg)
  assert cfg.task == "w2v_bert"
  model = w2v_bert.W2VBertConfig.from_config(cfg.model, cfg.compute_dtype)
  losses.W2VBertLossConfig.from_config(cfg.loss)
  assert 0 <= cfg.tokenizer.layer <= model.num_mlm_layers
  assert cfg.tokenizer.init_frames >= cfg.tokenizer.num_clusters
  assert model.samples_per_frame == frames.SAMPLES_PER_FRAME


def test_paper_preset_is_w2v_bert_xl():
  cfg = load_config("experiments/configs/w2v_bert.py:paper")
  model = w2v_bert.W2VBertConfig.from_config(cfg.model)
  assert (model.num_contrastive_layers, model.num_mlm_layers, model.dim) == (12, 12, 1024)
  abstract = jax.eval_shape(lambda: w2v_bert.init_params(model, jax.random.key(0)))
  assert 0.55e9 < sum(plan.count_by_module(abstract).values()) < 0.65e9
  assert cfg.tokenizer.layer == 7 and cfg.tokenizer.num_clusters == 1024
  # The axis names map onto a (data, fsdp, tensor) mesh: FSDP on "embed", tensor on "mlp".
  specs = sharding.mesh_specs(abstract, {"data": 1, "fsdp": 4, "tensor": 2})
  ffn = specs["mlm"]["block_0"]["ffn_start"]["wi"]["kernel"]
  assert ffn == PartitionSpec("fsdp", "tensor")
  attention = specs["contrastive"]["block_3"]["attention"]["query"]
  assert attention == PartitionSpec("fsdp", "tensor")


def test_unknown_model_key_is_a_config_error(tiny_config):
  with pytest.raises(ConfigError, match="unknown keys"):
    w2v_bert.W2VBertConfig.from_config({**tiny_config.model.to_dict(), "dimm": 3})


def test_pretraining_outputs_and_axis_names(tiny_model_config, tiny_params):
  cfg = tiny_model_config
  boxed = jax.tree.leaves(tiny_params, is_leaf=lambda v: isinstance(v, nn.Partitioned))
  assert len(boxed) == len(jax.tree.leaves(tiny_params))  # every parameter is named
  assert all(len(p.names) == p.value.ndim for p in boxed)
  model = w2v_bert.W2VBert(cfg)
  s = 3000  # not a whole number of frames: padded to 5 frames of 640
  t = frames.num_frames(s)
  wav = jax.random.normal(jax.random.key(1), (2, s))
  masked = jnp.zeros((2, t), bool).at[:, 1:3].set(True)
  apply = jax.jit(model.apply)
  out = apply({"params": tiny_params}, wav, None, masked)
  g, v = cfg.num_codebooks, cfg.codebook_size
  assert out.context.shape == out.targets.shape == (2, t, cfg.final_dim)
  assert out.mlm_logits.shape == (2, t, g, v)
  assert out.quantizer.ids.shape == (2, t, g) and out.quantizer.ids.dtype == jnp.int32
  assert out.quantizer.avg_probs.shape == (g, v)
  np.testing.assert_allclose(out.quantizer.avg_probs.sum(-1), 1.0, rtol=1e-5)
  assert 1.0 <= float(out.quantizer.code_perplexity) <= g * v
  assert bool(out.frame_mask.all())
  # Masking changes what the contrastive module sees, never the quantized targets.
  plain = apply({"params": tiny_params}, wav, None, jnp.zeros_like(masked))
  np.testing.assert_array_equal(out.quantizer.ids, plain.quantizer.ids)
  assert np.abs(out.context - plain.context).max() > 1e-3


def test_front_end_gives_4t_mel_frames_and_t_frames(tiny_model_config):
  front_end = lambda wav: w2v_bert.log_mel_frames(wav, None, tiny_model_config)
  for s in (1, 160, 639, 640, 641, 2000, 16000):
    t = frames.num_frames(s)
    logmel, (m100, m50, m25) = jax.eval_shape(front_end, jax.ShapeDtypeStruct((1, s), jnp.float32))
    assert logmel.shape == (1, 4 * t, 80), s
    assert (m100.shape, m50.shape, m25.shape) == ((1, 4 * t), (1, 2 * t), (1, t))
  _, (m100, _, m25) = jax.jit(front_end)(jnp.ones((1, 2000)))
  assert bool(m25.all()) and int(m100.sum()) == 13  # 10 ms frames holding a real sample


def test_features_do_not_depend_on_batch_padding(tiny_model_config, tiny_params, make_audio):
  extractor = w2v_bert.feature_extractor(tiny_model_config, tiny_params, mlm_layer=1)
  long, short = make_audio(2, 3200, seed=3)
  s_short = 2000  # 4 frames, the last one partly padded
  alone, _ = extractor(short[None, :s_short])
  batch = np.stack([long, np.where(np.arange(3200) < s_short, short, 7.0)])  # junk padding
  mask = np.stack([np.ones(3200, bool), np.arange(3200) < s_short])
  feats, fmask = extractor(batch, mask)
  t = frames.num_frames(s_short)
  assert feats.shape == (2, 5, tiny_model_config.dim)
  assert fmask[1].tolist() == [True] * t + [False] * (5 - t)
  np.testing.assert_allclose(feats[1, :t], alone[0], atol=1e-4)
  with pytest.raises(ConfigError, match="outside"):
    w2v_bert.feature_extractor(tiny_model_config, tiny_params, mlm_layer=5)
