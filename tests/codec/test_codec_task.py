"""The `codec` task in the shared trainer (tiny preset, tiny corpus), loading a trained codec
(`pretrained.load_codec`), the acoustic tokenize path's frame rule, and the weighting of
invalid rows."""

import os
import shutil

import jax
import numpy as np
import pytest

import audiolm_jax.tasks  # noqa: F401  (registers the codec task)
from audiolm_jax import pretrained, tokenize
from audiolm_jax.config import load_config
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16
from audiolm_jax.errors import CheckpointError
from audiolm_jax.frames import num_frames
from audiolm_jax.train import checkpoint as ckpt_lib
from audiolm_jax.train.metrics import read_jsonl
from audiolm_jax.train.task import build_task
from audiolm_jax.train.trainer import train
from train_helpers import read_tb_audio

STEPS, WARMUP = 3, 2  # Discriminators frozen in updates 0 and 1, trained in update 2.


def tiny_config(data_dir, **overrides):
  # One device: the codec's steps compile in half the time of the 8-device mesh, and sharded
  # training is tested on its own (tests/train/test_sharding.py).
  pairs = {"data.data_dir": data_dir, "mesh.data": 1, "total_steps": STEPS,
           "disc_warmup_steps": WARMUP, "checkpoint_every": WARMUP, "eval_every": STEPS,
           "eval_steps": 1, "log_every": 1, "progress_bar": False,
           "peak_flops_per_device": 1e12, **overrides}
  return load_config("codec:tiny", [(k, str(v)) for k, v in pairs.items()])


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data_dir):
  """A codec trained for 3 steps by the trainer: `(workdir, TrainResult)`."""
  workdir = str(tmp_path_factory.mktemp("codec_run"))
  return workdir, train(tiny_config(tiny_data_dir), workdir)


def saved(workdir, step):
  step_dir = os.path.join(workdir, "checkpoints", str(step))
  return ckpt_lib.read_numpy(step_dir, ("params", "extra"))


def differs(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_trainer_trains_codec_with_warmup_then_discriminators(run):
  workdir, result = run
  assert result.step == STEPS and result.origin == "fresh"
  records = read_jsonl(workdir)
  assert [r["step"] for r in records] == [1, 2, 3]
  on = [r["step"] > WARMUP for r in records]
  w = load_config("codec:tiny").loss  # The logged terms are unweighted.
  for r, adversarial in zip(records, on):
    for key in ("loss", "loss/reconstruction", "loss/waveform", "loss/commitment", "grad_norm",
                "codebook/perplexity_q0", "codebook/dead_fraction_q3"):
      assert np.isfinite(r[key]), (r["step"], key)
    assert r["nonfinite"] == 0.0 and r["audio_seconds_per_s"] > 0
    assert 1.0 <= r["codebook/perplexity_q0"] <= 32.0          # K = 32 codes per level
    assert r["discriminator/active"] == float(adversarial)
    expected = (w["reconstruction_weight"] * r["loss/reconstruction"]
                + w["waveform_weight"] * r["loss/waveform"]
                + w["commitment_weight"] * r["loss/commitment"])
    if adversarial:  # The GAN terms join the loss after the warm-up.
      gan = (w["adversarial_weight"] * r["loss/adversarial"]
             + w["feature_weight"] * r["loss/feature_matching"])
      assert gan > 0 and np.isfinite(r["loss/discriminator"])
      expected += gan
      terms = ("reconstruction", "waveform", "adversarial", "feature_matching")
    else:  # The warm-up's compiled step has no discriminator work at all.
      assert "loss/adversarial" not in r and "loss/discriminator" not in r
      terms = ("reconstruction", "waveform")
    np.testing.assert_allclose(r["loss"], expected, rtol=1e-5)
    for term in terms:
      assert r[f"grad_at_output/{term}"] > 0, term
  evals = read_jsonl(workdir, "eval")
  assert len(evals) == 1 and np.isfinite(evals[0]["loss"]) and evals[0]["loss/adversarial"] > 0
  for key in ("quality/si_snr", "quality/si_snr_q1", "quality/mel_distance",
              "quality/mel_distance_q1"):
    assert np.isfinite(evals[0][key]), key
  assert evals[0]["quality/mel_distance"] > 0
  crop = int(load_config("codec:tiny").data.crop_seconds * 16000)
  assert read_tb_audio(os.path.join(workdir, "tb")) == {  # Clips to listen to, at each eval.
      f"eval_audio/{name}": [(STEPS, 16000, crop)]
      for name in ("original", "decoded", "decoded_q1")}

  warm, last = saved(workdir, WARMUP), saved(workdir, STEPS)  # The checkpoints written.
  for state, step in ((warm, WARMUP), (last, STEPS)):
    assert int(state["extra"]["updates"]) == step
    assert bool(state["extra"]["vq_stats"]["quantizer"]["initialized"])  # k-means ran
  # Frozen during the warm-up: the discriminators' optimizer never moved (count, moments 0).
  assert not any(np.any(x) for x in jax.tree.leaves(warm["extra"]["disc_opt_state"]))
  assert any(np.any(x) for x in jax.tree.leaves(last["extra"]["disc_opt_state"]))
  assert differs(warm["extra"]["discriminator"], last["extra"]["discriminator"])
  assert differs(warm["params"], last["params"])
  assert differs(warm["extra"]["vq_stats"], last["extra"]["vq_stats"])


def test_load_codec_reads_the_latest_generator_and_codebooks(run):
  workdir, _ = run
  codec = pretrained.load_codec(workdir)
  latest = saved(workdir, STEPS)
  assert not differs(codec.variables["params"], latest["params"])
  assert not differs(codec.variables["vq_stats"], latest["extra"]["vq_stats"])
  assert codec.num_quantizers == 4 and codec.frame_rate == 50.0
  # Any step directory works too, and gives that step.
  older = pretrained.load_codec(os.path.join(workdir, "checkpoints", str(WARMUP)))
  assert differs(older.variables["params"], codec.variables["params"])


def test_tokenize_for_lm_gives_two_frames_per_semantic_frame(run, tiny_data_dir):
  codec = pretrained.load_codec(run[0])
  wav = from_int16(np.asarray(corpora.data_source(
      "synthetic_speech", "test", tiny_data_dir, "tiny")[0]["audio"]))
  # S mod 640 in (0, 320] is where the unpadded clip would have one frame too few.
  for samples in (6400, 6400 + 320):
    clip = wav[None, :samples]
    codes = np.asarray(tokenize.tokenize_for_lm(codec, clip))
    assert codes.shape == (1, 2 * num_frames(samples), 4) and codes.dtype == np.int32
    direct = np.asarray(codec.encode(clip))  # [1, ceil(S / 320), Q]: the same leading frames
    np.testing.assert_array_equal(codes[:, :direct.shape[1]], direct)


def test_load_codec_reports_bad_workdirs(run, tmp_path):
  workdir, _ = run
  with pytest.raises(CheckpointError, match="no checkpoint found"):
    pretrained.load_codec(str(tmp_path / "missing"))

  other_task = str(tmp_path / "other" / "3")
  shutil.copytree(os.path.join(workdir, "checkpoints", "3"), other_task)
  config_file = os.path.join(other_task, "config", "metadata")
  with open(config_file) as f:
    text = f.read()
  with open(config_file, "w") as f:
    f.write(text.replace('"task": "codec"', '"task": "w2v_bert"'))
  with pytest.raises(CheckpointError, match="not a codec"):
    pretrained.load_codec(other_task)

  resized = str(tmp_path / "resized" / "3")
  shutil.copytree(os.path.join(workdir, "checkpoints", "3"), resized)
  with open(os.path.join(resized, "config", "metadata"), "w") as f:
    f.write(text.replace('"dim": 16', '"dim": 8'))
  with pytest.raises(CheckpointError, match="does not match the model config"):
    pretrained.load_codec(resized)

  corrupt = str(tmp_path / "corrupt" / "3")
  shutil.copytree(os.path.join(workdir, "checkpoints", "3"), corrupt)
  for dirpath, _, names in os.walk(os.path.join(corrupt, "state")):
    for name in names:
      if not name.startswith("_"):  # Array data, not the metadata files.
        with open(os.path.join(dirpath, name), "wb") as f:
          f.write(b"garbage")
  with pytest.raises(CheckpointError):
    pretrained.load_codec(corrupt)

  # Flipped bits (every 997th byte of every array file, so the generator's arrays are hit,
  # not only the optimizer's or the discriminators', which load_codec does not read) fail
  # the checksums saved with the checkpoint, or its decompression.
  flipped = str(tmp_path / "flipped" / "3")
  shutil.copytree(os.path.join(workdir, "checkpoints", "3"), flipped)
  pretrained.load_codec(flipped)
  files = [os.path.join(d, n) for d, _, names in os.walk(os.path.join(flipped, "state"))
           for n in names if os.sep + "d" in d and not n.startswith("_")]
  assert files
  for path in files:
    data = bytearray(open(path, "rb").read())
    for i in range(500, len(data), 997):
      data[i] ^= 0x01
    open(path, "wb").write(bytes(data))
  with pytest.raises(CheckpointError, match="checksums|unreadable|NaN"):
    pretrained.load_codec(flipped)


def test_invalid_rows_get_no_weight(run, tiny_data_dir):
  """A row with valid=False changes no loss term, whatever its audio (even NaN)."""
  workdir, _ = run
  task = build_task(tiny_config(tiny_data_dir))
  state = saved(workdir, STEPS)  # Past the warm-up: the adversarial terms are on.
  wav = from_int16(np.asarray(corpora.data_source(
      "synthetic_speech", "validation", tiny_data_dir, "tiny")[0]["audio"]))
  clip = wav[:task.crop_samples]
  junk = np.full_like(clip, np.nan)
  evaluate = jax.jit(lambda batch: task.loss(state["params"], state["extra"], batch,
                                             jax.random.key(0), train=False))
  one = evaluate({"audio": np.stack([clip, junk, junk]), "valid": np.array([True, False, False])})
  two = evaluate({"audio": np.stack([clip, clip, 0.3 * clip]),
                  "valid": np.array([True, True, False])})
  assert float(one.weight) == 1.0 and float(two.weight) == 2.0
  for key in ("loss/reconstruction", "loss/waveform", "loss/adversarial",
              "loss/feature_matching"):
    assert np.isfinite(float(one.metrics[key])) and float(one.metrics[key]) > 0
    np.testing.assert_allclose(one.metrics[key], two.metrics[key], rtol=1e-5, err_msg=key)
  assert np.isfinite(float(one.loss))


def test_a_run_stopped_in_the_warmup_resumes_into_the_adversarial_phase(tmp_path, tiny_data_dir):
  """A run that ends inside the warm-up never compiles the discriminators; the same workdir
  with more steps continues from its checkpoint into the adversarial phase."""
  workdir = str(tmp_path / "two_phase")
  first = train(tiny_config(tiny_data_dir, total_steps=2, disc_warmup_steps=2,
                            checkpoint_every=2, eval_every=0), workdir)
  assert first.step == 2
  records = read_jsonl(workdir)
  assert all("loss/adversarial" not in r and r["discriminator/active"] == 0.0 for r in records)
  assert all("grad_at_output/adversarial" not in r for r in records)
  fresh = saved(workdir, 2)
  second = train(tiny_config(tiny_data_dir, total_steps=3, disc_warmup_steps=2,
                             checkpoint_every=2, eval_every=0), workdir)
  assert second.origin == "checkpoint" and second.step == 3
  last = read_jsonl(workdir)[-1]
  assert last["step"] == 3 and last["discriminator/active"] == 1.0 and last["loss/adversarial"] > 0
  assert differs(fresh["extra"]["discriminator"], saved(workdir, 3)["extra"]["discriminator"])
