"""SoundStorm in the trainer (one real step on a tiny token cache), its presets, its loader, and
the pipeline with stage 1 + an untrained tiny SoundStorm in place of stages 2 + 3."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parts  # tests/support
from audiolm_jax import AudioLM, pretrained
from audiolm_jax.config import config_variants, load_config
from audiolm_jax.data.tokens import CacheInfo, write_token_cache
from audiolm_jax.errors import ConfigError
from audiolm_jax.lm import soundstorm as ss
from audiolm_jax.tasks import soundstorm as soundstorm_task  # noqa: F401  (registers it)
from audiolm_jax.train.defaults import check_config
from audiolm_jax.train.task import build_task
from audiolm_jax.train.trainer import train

K, Q = 32, 4  # The tiny preset's codebook size and levels.


def utterances(n, seed, ratio):
  rng = np.random.default_rng(seed)
  for i in range(n):
    t = int(rng.integers(4, 16))
    yield {"semantic": rng.integers(0, K, t), "acoustic": rng.integers(0, K, (ratio * t, Q)),
           "speaker_id": i % 2, "sentence_id": i, "transcript": f"utterance {i}"}


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tokens"))
  ratio = ss.SoundStormLayout().frame_ratio
  info = CacheInfo(frame_ratio=ratio, semantic_vocab_size=K, acoustic_vocab_size=K,
                   num_quantizers=Q)
  write_token_cache(path, {"train": utterances(10, 0, ratio),
                           "validation": utterances(4, 1, ratio)}, info)
  return path


def tiny_config(tokens_dir, *overrides):
  return load_config("soundstorm:tiny", [("data.tokens_dir", tokens_dir),
                                         ("progress_bar", "false"),
                                         ("peak_flops_per_device", "1e12"), *overrides])


def test_batches_are_padded_aligned_crops(tokens_dir):
  task = build_task(tiny_config(tokens_dir))
  layout = task.layout
  batch = next(task.make_iterator("train", 0, 1))
  spec = task.batch_spec(8)
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      k: (s.shape, s.dtype) for k, s in spec.items()}
  assert batch["valid"].all()
  frames = batch["frames"].sum(1).astype(int)
  assert (frames % layout.frame_ratio == 0).all() and (frames > 0).all()
  for row, n in zip(batch["acoustic"], frames):
    assert not row[n:].any()


def test_one_real_train_step_and_evaluation(tokens_dir, tmp_path):
  config = tiny_config(tokens_dir, ("total_steps", "1"), ("checkpoint_every", "1"),
                       ("eval_every", "1"))
  result = train(config, str(tmp_path))
  assert result.step == 1 and os.listdir(tmp_path / "checkpoints") == ["1"]
  for metrics in (result.last_metrics, result.eval_metrics):
    assert np.isfinite(metrics["loss"]) and 0 < metrics["loss"] < np.log(K) + 2.0
    assert 0 <= metrics["accuracy"] <= 1
  # The checked loader reads the run back.
  storm = pretrained.load_soundstorm(str(tmp_path))
  assert storm.layout.num_quantizers == Q and len(storm.schedule()) == 4 + (Q - 1)


def test_a_cache_of_another_frame_ratio_is_refused(tokens_dir):
  task = build_task(tiny_config(tokens_dir, ("stage.semantic_rate", "50")))
  with pytest.raises(ConfigError, match="codec frames per semantic frame"):
    task.make_iterator("train", 0, 1)


def test_every_preset_loads_and_builds():
  assert config_variants("soundstorm") == ("tiny", "cpu", "paper")
  sizes = {}
  for variant in ("tiny", "cpu", "paper"):
    config = load_config(f"soundstorm:{variant}")
    check_config(config)
    model = ss.SoundStorm(ss.model_config(config))
    layout = model.config.layout
    shapes = jax.eval_shape(lambda m=model, l=layout: m.init(
        jax.random.key(0), jnp.zeros((1, l.max_semantic_frames), jnp.int32),
        jnp.zeros((1, l.max_frames, l.num_quantizers), jnp.int32)))
    sizes[variant] = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))
  assert 250e6 < sizes["paper"] < 400e6  # The paper: 350 M.
  assert sizes["cpu"] < 2e6 and sizes["tiny"] < 1e5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  root = parts.make_run_dir(str(tmp_path_factory.mktemp("run")))
  config = load_config("soundstorm:tiny")
  model = ss.SoundStorm(ss.model_config(config))
  params = nn.unbox(model.init(jax.random.key(3), jnp.zeros((1, 1), jnp.int32),
                               jnp.zeros((1, 2, Q), jnp.int32))["params"])
  parts.write_checkpoint(os.path.join(root, "soundstorm"), config,
                         {"params": jax.tree.map(np.asarray, params), "step": np.int32(1)})
  return root


def test_pipeline_with_soundstorm_continues_a_prompt(run_dir):
  lm = AudioLM.from_run_dir(run_dir, acoustic="soundstorm")
  assert lm.acoustic == "soundstorm" and lm.coarse_lm is None
  t = np.arange(16000) / 16000
  prompt = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # 1 s
  out = lm.generate_continuation(prompt, 16000, seconds=2.0, seed=0, return_tokens=True)
  assert abs(out.audio.shape[1] - 32000) < 640 and np.isfinite(out.audio).all()
  _, codes = lm.tokenize(prompt[None])
  assert out.coarse.shape == (1, lm.frame_ratio * out.semantic.shape[1], Q)
  assert out.fine.shape[-1] == 0
  np.testing.assert_array_equal(out.coarse[:, :codes.shape[1]], codes[..., :Q])
  with pytest.raises(ConfigError, match="top_k"):
    lm.generate_continuation(prompt, 16000, seconds=2.0, top_k=5)
  # The default is unchanged: the three stages.
  assert AudioLM.from_run_dir(run_dir).acoustic == "stages"


def test_generate_command_with_acoustic_soundstorm(run_dir, tmp_path):
  from audiolm_jax import cli  # pylint: disable=g-import-not-at-top
  from audiolm_jax.data.audio import load_audio  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out.wav")
  assert cli.main(["generate", "--run", run_dir, "--acoustic", "soundstorm", "--seconds", "1",
                   "--temperature", "0", "--out", out]) == 0
  assert abs(len(load_audio(out, 16000)) - 16000) < 640
  tokens = np.load(str(tmp_path / "out.npz"))
  assert tokens["coarse"].shape[-1] == Q and tokens["fine"].shape[-1] == 0
