"""`audiolm-jax tokenize fit-kmeans | semantic` with the MFCC baseline on the tiny corpus, bad
input, and the semantic-token evidence experiment. (The w2v-BERT path of both commands is
tested in tests/semantic/test_task.py, on the run trained there.)"""

import json
import os

import numpy as np
import pytest

from audiolm_jax import cli
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16, write_wav
from audiolm_jax import pretrained
from audiolm_jax.frames import num_frames
from audiolm_jax.semantic.tokenizer import PAD_ID

from experiment_helpers import load_experiment

MODULE = "audiolm_jax.commands.tokenize"


@pytest.fixture(scope="module")
def main():
  """`audiolm-jax` in-process, with the tokenize group (also before cli.py lists it)."""
  with pytest.MonkeyPatch.context() as mp:
    if MODULE not in cli.COMMAND_MODULES:
      mp.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + (MODULE,))
    yield cli.main


@pytest.fixture(scope="module")
def wav_files(tmp_path_factory, tiny_data_dir):
  """Two test utterances of the tiny corpus as wav files, with their samples."""
  source = corpora.data_source("synthetic_speech", "test", tiny_data_dir)
  directory = tmp_path_factory.mktemp("wavs")
  paths, wavs = [], []
  for i in (0, 4):
    wav = from_int16(np.asarray(source[i]["audio"]))[:16000 + 100 * i]
    paths.append(str(directory / f"utt{i}.wav"))
    write_wav(paths[-1], wav)
    wavs.append(wav)
  return paths, wavs


@pytest.fixture(scope="module")
def mfcc_tokenizer(main, tmp_path_factory, tiny_data_dir):
  out = str(tmp_path_factory.mktemp("mfcc_tokenizer"))
  rc = main(["tokenize", "fit-kmeans", "--features", "mfcc", "--config", "w2v_bert.py:tiny",
             "--data_dir", tiny_data_dir, "--num_clusters", "4", "--steps", "2", "--out", out])
  assert rc == 0
  return out


@pytest.fixture(scope="module")
def experiment():
  """experiments/semantic_tokens.py as a module."""
  return load_experiment("semantic_tokens")


def read_npz(path):
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data}


def check_ids(ids_file, paths, wavs, tokenizer):
  out = read_npz(ids_file)
  assert list(out["paths"]) == paths and int(out["num_clusters"]) == tokenizer.num_clusters
  expected = [num_frames(len(w)) for w in wavs]
  np.testing.assert_array_equal(out["num_frames"], expected)
  assert out["ids"].shape == (2, max(expected)) and out["ids"].dtype == np.int32
  for row, (wav, n) in enumerate(zip(wavs, expected)):
    direct = np.asarray(tokenizer.tokenize(wav[None]))[0]  # Alone, unpadded.
    np.testing.assert_array_equal(out["ids"][row, :n], direct)
    assert np.all(out["ids"][row, n:] == PAD_ID)
    assert 0 <= direct.min() and direct.max() < tokenizer.num_clusters


def test_mfcc_baseline_needs_no_w2v_bert(main, mfcc_tokenizer, wav_files, tmp_path):
  with open(os.path.join(mfcc_tokenizer, pretrained.FIT_INFO_FILE)) as f:
    info = json.load(f)
  assert info["features"] == "mfcc" and info["w2v_bert"] is None and info["layer"] is None
  paths, wavs = wav_files
  ids_file = str(tmp_path / "ids.npz")
  assert main(["tokenize", "semantic", "--tokenizer", mfcc_tokenizer, *paths,
               "--out", ids_file]) == 0
  check_ids(ids_file, paths, wavs, pretrained.load_semantic_tokenizer(mfcc_tokenizer))


def test_bad_input_is_one_line_and_exit_1(main, mfcc_tokenizer, tmp_path, capsys):
  cases = [
      (["tokenize", "fit-kmeans", "--features", "w2v_bert", "--out", str(tmp_path)],
       "need --w2v_bert RUN"),
      (["tokenize", "fit-kmeans", "--w2v_bert", str(tmp_path), "--out", str(tmp_path)],
       "no checkpoint"),
      (["tokenize", "semantic", "--tokenizer", str(tmp_path), "x.wav", "--out", "o.npz"],
       "no semantic tokenizer"),
      (["tokenize", "semantic", "--tokenizer", mfcc_tokenizer, str(tmp_path / "missing.wav"),
        "--out", str(tmp_path / "o.npz")], "missing.wav"),
  ]
  for argv, message in cases:
    capsys.readouterr()
    assert main(argv) == 1, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("audiolm-jax: error:") and message in err[0]


def test_semantic_tokens_experiment_smoke(experiment, mfcc_tokenizer, tiny_data_dir,
                                         tmp_path):
  out_dir = str(tmp_path / "results")
  rc = experiment.main(["--tokenizer", f"MFCC={mfcc_tokenizer}", "--data_dir", tiny_data_dir,
                        "--max_utterances", "9", "--out_dir", out_dir])
  assert rc == 0
  with open(os.path.join(out_dir, "semantic_tokens.json")) as f:
    results = json.load(f)
  assert results["utterances"] == {"train": 9, "test": 9, "test_unseen_speakers": 3}
  r = results["tokenizers"]["MFCC"]
  assert r["vocab_size"] == 4
  inv = r["test"]["invariance"]
  assert 0 <= inv["same_sentence_other_speaker"] <= 1 and inv["same_sentence_other_speaker_pairs"]
  assert r["test"]["abx"]["triplets"] > 0 and 0 <= r["test"]["abx"]["accuracy"] <= 1
  assert r["test_unseen_speakers"]["abx"]["triplets"] > 0
  probe = r["speaker_probe"]
  assert 0 <= probe["accuracy"] <= 1 and probe["test_utterances"] > 0
  with open(os.path.join(out_dir, "semantic_tokens.md")) as f:
    table = f.read()
  assert "| MFCC |" in table and "ABX" in table
  assert experiment.main(["--data_dir", tiny_data_dir, "--out_dir", out_dir]) == 1  # Nothing.


def test_experiment_caps_test_utterances_at_whole_sentences(experiment, tiny_data_dir):
  args = experiment.parse_args(["--data_dir", tiny_data_dir, "--max_utterances", "7"])
  test = experiment.load_split(args, "test")  # 3 sentences x 3 readers: 7 -> 2 whole ones.
  assert len(test["wavs"]) == 6 and np.all(np.bincount(test["sentence_ids"])[
      np.unique(test["sentence_ids"])] == 3)
  unseen = experiment.load_split(args, "test_unseen_speakers", set(test["sentence_ids"]))
  assert set(unseen["sentence_ids"]) <= set(test["sentence_ids"]) and len(unseen["wavs"]) == 2
  train = experiment.load_split(args, "train")
  assert len(train["wavs"]) == 7 and len(set(map(len, train["wavs"]))) > 1


def test_tokenize_corpus_builds_the_cache_the_stages_train_on(main, tiny_data_dir, tmp_path,
                                                              capsys):
  import parts  # tests/support
  from audiolm_jax.data import tokens
  run_dir = str(tmp_path / "parts")
  parts.make_run_dir(run_dir)
  out = str(tmp_path / "cache")
  rc = main(["tokenize", "corpus", "--codec", os.path.join(run_dir, "codec"), "--tokenizer",
             os.path.join(run_dir, "semantic_tokenizer"), "--corpus", "synthetic_speech",
             "--data_dir", tiny_data_dir, "--max_examples", "3", "--out", out])
  assert rc == 0, capsys.readouterr().err
  assert f"written to {out}" in capsys.readouterr().out
  sources = tokens.token_sources(out)
  assert sorted(sources) == ["train", "validation"]
  assert len(sources["train"]) == 3 and len(sources["validation"]) == 3
  info = tokens.read_cache_info(out)
  assert (info.frame_ratio, info.semantic_vocab_size) == (2, 32)
  example = sources["train"][0]
  assert example["acoustic"].shape[0] == 2 * example["semantic"].shape[0]


def test_two_processes_build_the_cache_one_process_builds(tiny_data_dir, tmp_path):
  """Acceptance (issue 18.1): `tokenize corpus` on two local processes (jax.distributed), each
  tokenizing every other chunk, gives the same shards and records as one process."""
  import glob
  import parts  # tests/support
  from train_helpers import run_cli, run_processes
  run_dir = str(tmp_path / "parts")
  parts.make_run_dir(run_dir)

  def args(out):
    return ["tokenize", "corpus", "--codec", os.path.join(run_dir, "codec"), "--tokenizer",
            os.path.join(run_dir, "semantic_tokenizer"), "--corpus", "synthetic_speech",
            "--data_dir", tiny_data_dir, "--config_name", "tiny",
            "--splits", "train,test_unseen_speakers", "--chunk_size", "2", "--batch_size", "2",
            "--out", str(tmp_path / out)]

  outputs = run_processes(lambda i: args("multi"), timeout=300)
  import re
  total = int(re.search(r"; (\d+) chunk\(s\)", outputs[0][0]).group(1))
  assert total >= 4  # chunks of 2 clips; every other one on each process
  assert f"process 1: {total // 2} chunk(s) tokenized" in outputs[1][0]
  single = run_cli(args("single"), timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]

  # Same shards, each with the same records in the same order. (Not byte for byte: the
  # serialised tf.Example maps follow each process's hash seed.)
  from audiolm_jax.data import tokens
  multi, one = (tokens.token_sources(str(tmp_path / out)) for out in ("multi", "single"))
  assert sorted(multi) == sorted(one)
  files = {out: sorted(os.path.basename(f) for f in glob.glob(
      str(tmp_path / out / "token_cache" / "tokens" / "*" / "*.array_record-*")))
      for out in ("multi", "single")}
  assert len(files["single"]) == total and files["multi"] == files["single"]
  for split in one:
    assert len(multi[split]) == len(one[split]) > 0
    for i in range(len(one[split])):
      for key, value in one[split][i].items():
        np.testing.assert_array_equal(multi[split][i][key], value)
  with open(tmp_path / "multi" / "token_cache.json") as f, \
       open(tmp_path / "single" / "token_cache.json") as g:
    assert json.load(f) == json.load(g)
