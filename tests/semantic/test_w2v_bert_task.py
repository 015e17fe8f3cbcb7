"""The w2v_bert task: a real run of the shared trainer on the tiny corpus, valid-row weighting,
the Gumbel schedule's update count, loading the trained model for inference, and the
`audiolm-jax tokenize` commands on its features (on the run trained here, to compile once)."""

import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import cli
from audiolm_jax.config import load_config
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16, write_wav
from audiolm_jax.errors import CheckpointError
import audiolm_jax.tasks  # noqa: F401  (registers the w2v_bert task)
from audiolm_jax import pretrained
from audiolm_jax.semantic.tokenizer import PAD_ID
from audiolm_jax.train import metrics as metrics_lib
from audiolm_jax.checkpoint_files import param_fingerprint
from audiolm_jax.train.task import build_task
from audiolm_jax.train.trainer import train


def tiny_run_config(data_dir, **overrides):
  overrides = {"data.data_dir": data_dir, "progress_bar": "false", **overrides}
  return load_config("experiments/configs/w2v_bert.py:tiny",
                     [(k, str(v)) for k, v in overrides.items()])


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data_dir):
  """Two steps and an evaluation of the tiny preset. One device and "rbg" keys keep the CPU
  compile short; meshes of 8 devices are the trainer's tests' business."""
  workdir = str(tmp_path_factory.mktemp("w2v_bert_run"))
  config = tiny_run_config(tiny_data_dir, total_steps=2, checkpoint_every=2, eval_every=2,
                           batch_size=2, **{"mesh.data": 1})
  with jax.default_prng_impl("rbg"):
    return workdir, train(config, workdir)


def test_trains_logs_evaluates_and_checkpoints(run):
  workdir, result = run
  assert result.step == 2 and result.origin == "fresh"
  records = {r["step"]: r for r in metrics_lib.read_jsonl(workdir, "train")}
  assert sorted(records) == [1, 2]
  for r in records.values():
    assert math.isfinite(r["loss"]) and r["loss"] > 0
    assert 0 <= r["mlm_accuracy"] <= 1 and 0 <= r["contrastive_accuracy"] <= 1
    assert 1 <= r["code_perplexity"] <= 2 * 16 and 1 <= r["codebook_perplexity"] <= 2 * 16
    assert "loss" in r and "mlm_loss" in r and "infonce_loss" in r
  # Throughput in seconds of audio: 2 crops of 0.64 s per step.
  assert records[2]["audio_seconds_per_s"] == pytest.approx(records[2]["examples_per_s"] * 0.64)
  # The Gumbel temperature follows the count of applied updates: start, then start * decay.
  cfg = tiny_run_config("x").loss
  assert records[1]["gumbel_temperature"] == pytest.approx(cfg.gumbel_start)
  assert records[2]["gumbel_temperature"] == pytest.approx(cfg.gumbel_start * cfg.gumbel_decay)
  assert int(result.state.extra["updates"]) == 2
  evals = metrics_lib.read_jsonl(workdir, "eval")
  assert [r["step"] for r in evals] == [2] and math.isfinite(evals[0]["loss"])
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2", "state"))


def test_load_w2v_bert_reads_the_trained_parameters(run):
  workdir, result = run
  model = pretrained.load_w2v_bert(workdir)
  assert model.step == 2 and model.config.dtype == "float32"
  assert model.run_config.task == "w2v_bert" and model.run_config.tokenizer.layer == 1
  assert model.fingerprint == param_fingerprint(result.state.params)
  feats, mask = model.feature_extractor(layer=1)(np.zeros((1, 1000), np.float32))
  assert feats.shape == (1, 2, model.config.dim) and bool(jnp.all(jnp.isfinite(feats)))


def test_load_w2v_bert_refuses_other_checkpoints(run, tmp_path):
  workdir, _ = run
  with pytest.raises(CheckpointError, match="no checkpoint"):
    pretrained.load_w2v_bert(str(tmp_path))
  other = tmp_path / "other"
  shutil.copytree(os.path.join(workdir, "checkpoints", "2"), other / "checkpoints" / "2")
  meta = other / "checkpoints" / "2" / "config" / "metadata"
  config = json.loads(meta.read_text())
  meta.write_text(json.dumps({**config, "task": "codec"}))
  with pytest.raises(CheckpointError, match="codec"):
    pretrained.load_w2v_bert(str(other))
  meta.write_text(json.dumps({**config, "model": {**config["model"], "dim": 24}}))
  with pytest.raises(CheckpointError, match="does not match the model config"):
    pretrained.load_w2v_bert(str(other))


def test_invalid_rows_carry_no_weight_and_no_influence(tiny_data_dir, tiny_params, make_audio,
                                                      make_key):
  task = build_task(tiny_run_config(tiny_data_dir))
  params, extra = tiny_params, {"updates": jnp.zeros((), jnp.int32)}
  assert jax.tree.structure(params) == jax.tree.structure(
      jax.eval_shape(task.init, make_key(0))[0])
  s = task.crop_samples
  audio = make_audio(3, s, seed=3)
  mask = np.ones((3, s), bool)
  mask[1, s // 2:] = False
  loss = jax.jit(lambda batch: task.loss(params, extra, batch, make_key(1), train=True))

  def batch(third_row, valid):
    a = audio.copy()
    a[2] = third_row
    return {"audio": a, "mask": mask, "valid": np.array([True, True, valid])}

  garbage = make_audio(2, s, seed=9) * 50
  out_a, out_b = loss(batch(garbage[0], False)), loss(batch(garbage[1], False))
  assert float(out_a.weight) == 2.0
  assert float(out_a.loss) == float(out_b.loss) and math.isfinite(float(out_a.loss))
  for k in out_a.metrics:
    assert float(out_a.metrics[k]) == float(out_b.metrics[k]), k
  out_c = loss(batch(garbage[0], True))
  assert float(out_c.weight) == 3.0 and float(out_c.loss) != float(out_a.loss)
  assert "loss" not in out_a.metrics  # The trainer's own name.


def test_iterator_yields_the_batch_spec_and_resumes(tiny_data_dir):
  task = build_task(tiny_run_config(tiny_data_dir))
  spec = task.batch_spec(8)
  it = task.make_iterator("train", process_index=1, process_count=2)
  first = next(it)
  assert set(first) == set(spec)
  for k, v in first.items():
    assert v.shape == (4,) + spec[k].shape[1:] and v.dtype == spec[k].dtype, k
  state = it.get_state()
  expected = next(it)
  it = task.make_iterator("train", process_index=1, process_count=2)
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["audio"], expected["audio"])
  assert task.units_per_example(spec) == pytest.approx(0.64)


@pytest.fixture
def main(monkeypatch):
  """`audiolm-jax` in-process, with the tokenize group (also before cli.py lists it)."""
  module = "audiolm_jax.commands.tokenize"
  if module not in cli.COMMAND_MODULES:
    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + (module,))
  return cli.main


def test_tokenize_cli_fits_and_applies_a_w2v_bert_tokenizer(run, main, tiny_data_dir, tmp_path):
  workdir, _ = run
  out = str(tmp_path / "tokenizer")
  assert main(["tokenize", "fit-kmeans", "--w2v_bert", workdir, "--num_clusters", "4",
               "--steps", "2", "--out", out]) == 0
  with open(os.path.join(out, pretrained.FIT_INFO_FILE)) as f:
    info = json.load(f)
  # Settings and data come from the run's own config (tiny: layer 1); flags win.
  assert info["features"] == "w2v_bert" and info["layer"] == 1
  assert info["tokenizer"]["num_clusters"] == 4 and info["tokenizer"]["kmeans_steps"] == 2
  assert info["data"]["data_dir"] == tiny_data_dir and info["stats_frames"] > 0
  model = pretrained.load_w2v_bert(workdir)
  assert info["w2v_bert"]["fingerprint"] == model.fingerprint and info["w2v_bert"]["step"] == 2

  source = corpora.data_source("synthetic_speech", "test", tiny_data_dir)
  wavs = [from_int16(np.asarray(source[i]["audio"]))[:n] for i, n in ((0, 16000), (1, 9000))]
  paths = [str(tmp_path / f"{i}.wav") for i in range(2)]
  for path, wav in zip(paths, wavs):
    write_wav(path, wav)
  ids_file = str(tmp_path / "ids.npz")
  assert main(["tokenize", "semantic", "--tokenizer", out, *paths, "--out", ids_file]) == 0
  with np.load(ids_file, allow_pickle=False) as data:
    ids, frames = data["ids"], data["num_frames"]
    assert list(data["paths"]) == paths and int(data["num_clusters"]) == 4
  np.testing.assert_array_equal(frames, [25, 15])  # ceil(S / 640)
  tokenizer = pretrained.load_semantic_tokenizer(out)
  for row, (wav, n) in enumerate(zip(wavs, frames)):
    np.testing.assert_array_equal(ids[row, :n], np.asarray(tokenizer.tokenize(wav[None]))[0])
    assert np.all(ids[row, n:] == PAD_ID) and ids[row, :n].min() >= 0

  # The tokenizer refuses a w2v-BERT whose parameters are not the ones it was fit on.
  info["w2v_bert"]["fingerprint"] = "0" * 64
  with open(os.path.join(out, pretrained.FIT_INFO_FILE), "w") as f:
    json.dump(info, f)
  with pytest.raises(CheckpointError, match="other parameters"):
    pretrained.load_semantic_tokenizer(out)
  # Without fit_info.json (saved by the API) the layer comes from the features' name, and the
  # w2v-BERT must be given.
  os.remove(os.path.join(out, pretrained.FIT_INFO_FILE))
  with pytest.raises(CheckpointError, match="--w2v_bert"):
    pretrained.load_semantic_tokenizer(out)
  again = pretrained.load_semantic_tokenizer(out, w2v_bert=model)
  assert again.extractor.name == "w2v_bert/mlm_layer_1"
  np.testing.assert_array_equal(again.tokenize(wavs[1][None]), tokenizer.tokenize(wavs[1][None]))
