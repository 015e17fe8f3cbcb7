"""Semantic tokenizer: the 25 Hz frame rule, statistics, MFCC baseline, fit, save and load."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import frames
from audiolm_jax.errors import BadAudioError, CheckpointError, ConfigError
from audiolm_jax.semantic import fitting, tokenizer, w2v_bert

def test_every_feature_path_honours_the_frame_rule(tiny_model_config, tiny_params):
  extractors = [w2v_bert.feature_extractor(tiny_model_config, tiny_params, mlm_layer=1),
                tokenizer.mfcc_extractor()]
  tok = tokenizer.SemanticTokenizer(extractors[0], jnp.zeros(16), jnp.ones(16),
                                    jnp.zeros((4, 16)))
  for s in (1, 321, 640, 16001):
    wav = jax.ShapeDtypeStruct((2, s), jnp.float32)
    mask = jax.ShapeDtypeStruct((2, s), jnp.bool_)
    t = frames.num_frames(s)
    for ex in extractors:
      feats, fmask = jax.eval_shape(ex.apply, ex.params, wav, mask)
      assert feats.shape == (2, t, ex.dim) and fmask.shape == (2, t), (ex.name, s)
    ids = jax.eval_shape(tok.tokenize, wav, mask)
    assert ids.shape == (2, t) and ids.dtype == jnp.int32


def test_feature_stats_match_numpy():
  rng = np.random.default_rng(0)
  stats = fitting.FeatureStats.create(3)
  update = jax.jit(fitting.FeatureStats.update)
  seen = []
  for i in range(3):
    x = (rng.standard_normal((2, 7, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 100.0]).astype(np.float32)
    mask = rng.random((2, 7)) > 0.3
    x[~mask] = 1e6  # padding must not count
    stats = update(stats, x, mask)
    seen.append(x[mask].astype(np.float64))
  seen = np.concatenate(seen)
  assert int(stats.count) == len(seen)
  np.testing.assert_allclose(stats.mean, seen.mean(0), rtol=1e-5)
  np.testing.assert_allclose(stats.variance, seen.var(0), rtol=1e-4)
  np.testing.assert_allclose(stats.std(eps=0.0), seen.std(0), rtol=1e-4)


def test_deltas_match_numpy_htk_formula():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 9, 3)).astype(np.float32)
  lengths = np.array([9, 5])
  ours = np.asarray(tokenizer.deltas(jnp.asarray(x), jnp.asarray(lengths)))
  for b, n in enumerate(lengths):
    padded = np.concatenate([x[b, :1]] * 2 + [x[b, :n]] + [x[b, n - 1:n]] * 2)  # edges repeated
    ref = sum(k * (padded[2 + k:2 + k + n] - padded[2 - k:2 - k + n]) for k in (1, 2)) / 10.0
    np.testing.assert_allclose(ours[b, :n], ref, rtol=1e-5, atol=1e-6)


def test_mfcc_features_do_not_depend_on_batch_padding(make_audio):
  long, short = make_audio(2, 3200, seed=5)
  s_short = 2000
  mfcc = tokenizer.mfcc_extractor()
  alone, _ = mfcc(short[None, :s_short])
  batch = np.stack([long, np.where(np.arange(3200) < s_short, short, 0.5)])
  mask = np.stack([np.ones(3200, bool), np.arange(3200) < s_short])
  feats, fmask = mfcc(batch, mask)
  t = frames.num_frames(s_short)
  assert feats.shape == (2, 5, 39) and fmask[1].sum() == t
  np.testing.assert_allclose(feats[1, :t], alone[0], rtol=1e-4, atol=1e-3)


def _batches(make_audio, n=3):
  def batches():
    for i in range(n):
      wav = make_audio(2, 3200, seed=10 + i)
      mask = np.ones_like(wav, bool)
      mask[1, 2000:] = False
      yield wav, mask
  return batches


def test_fit_tokenize_save_load(make_audio, tmp_path):
  batches = _batches(make_audio)
  seen = []
  tok, state = fitting.fit_semantic_tokenizer(
      tokenizer.mfcc_extractor(), batches, jax.random.key(0), num_clusters=6, num_steps=4,
      init_frames=12, on_step=lambda s, m: seen.append(float(m["inertia"])))
  assert int(state.step) == 4 and len(seen) == 4 and tok.num_clusters == 6
  wav, mask = next(iter(batches()))
  ids = np.asarray(tok.tokenize(wav, mask))
  assert ids.shape == (2, 5) and ids.dtype == np.int32
  assert ids[1].tolist()[4] == tokenizer.PAD_ID and (ids[1, :4] >= 0).all()
  assert ((ids[0] >= 0) & (ids[0] < 6)).all()

  tok.save(str(tmp_path))
  with np.load(tmp_path / tokenizer.ARRAYS_FILE, allow_pickle=False) as data:
    assert sorted(data.files) == ["centroids", "mean", "std"]
  meta = json.loads((tmp_path / tokenizer.META_FILE).read_text())
  assert meta["features"] == "mfcc/13x3/mels40" and meta["num_clusters"] == 6
  loaded = tokenizer.SemanticTokenizer.load(str(tmp_path), tokenizer.mfcc_extractor())
  np.testing.assert_array_equal(loaded.tokenize(wav, mask), ids)
  with pytest.raises(CheckpointError, match="fit on features"):
    tokenizer.SemanticTokenizer.load(str(tmp_path), tokenizer.mfcc_extractor(n_mfcc=20))
  with pytest.raises(CheckpointError, match="missing"):
    tokenizer.SemanticTokenizer.load(str(tmp_path / "nowhere"), tokenizer.mfcc_extractor())
  with pytest.raises(BadAudioError, match="bad shape"):
    tok.tokenize(wav[0])


def test_resumed_fit_equals_uninterrupted_fit(make_audio):
  batches = _batches(make_audio)
  ex = tokenizer.mfcc_extractor()
  stats = fitting.compute_feature_stats(ex, batches())
  common = dict(num_clusters=6, init_frames=12, stats=stats)
  full, full_state = fitting.fit_semantic_tokenizer(ex, batches, jax.random.key(0),
                                                      num_steps=5, **common)
  _, half = fitting.fit_semantic_tokenizer(ex, batches, jax.random.key(0), num_steps=2,
                                             **common)
  saved = jax.tree.map(np.asarray, half)
  resumed, state = fitting.fit_semantic_tokenizer(ex, batches, jax.random.key(0), num_steps=5,
                                                    kmeans_state=saved, **common)
  assert int(state.step) == 5
  np.testing.assert_allclose(resumed.centroids, full.centroids, rtol=1e-6)
  with pytest.raises(ConfigError, match="init_frames"):
    fitting.fit_semantic_tokenizer(ex, batches, jax.random.key(0), num_clusters=6,
                                     num_steps=1, init_frames=3)


def test_w2v_bert_tokenizer_end_to_end(tiny_config, tiny_model_config, tiny_params, make_audio,
                                       tmp_path):
  tc = tiny_config.tokenizer
  extractor = w2v_bert.feature_extractor(tiny_model_config, tiny_params, tc.layer)
  tok, _ = fitting.fit_semantic_tokenizer(extractor, _batches(make_audio, n=4),
                                            jax.random.key(1), num_clusters=tc.num_clusters,
                                            num_steps=tc.kmeans_steps,
                                            init_frames=16)
  wav, mask = next(iter(_batches(make_audio, n=1)()))
  ids = np.asarray(tok.tokenize(wav, mask))
  assert ids.shape == (2, 5) and ((ids[0] >= 0) & (ids[0] < tc.num_clusters)).all()
  assert ids[1, 4] == tokenizer.PAD_ID
  # The normalised features the centroids live among are standardised.
  feats, fmask = extractor(wav, mask)
  x = np.asarray(tokenizer.normalize(feats, tok.mean, tok.std))[np.asarray(fmask)]
  assert np.abs(x.mean(0)).max() < 1.0 and 0.2 < x.std(0).mean() < 2.0
  tok.save(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [tokenizer.META_FILE, tokenizer.ARRAYS_FILE]
  loaded = tokenizer.SemanticTokenizer.load(str(tmp_path), extractor)
  np.testing.assert_array_equal(loaded.tokenize(wav, mask), ids)
