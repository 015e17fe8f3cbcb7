"""The whole pipeline end to end on the tiny presets: `audiolm-jax demo`, then `generate`.

The slowest test of the suite (about two minutes here): every part is trained for a few
steps, so it proves the wiring (corpus -> codec, w2v-BERT, k-means -> token cache -> three
stages -> continuation -> report), not quality.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf


def cli(*args, check=True):
  proc = subprocess.run([sys.executable, "-m", "audiolm_jax", *args], capture_output=True,
                        text=True, timeout=900)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def demo_run(tiny_data_dir, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("demo"))
  proc = cli("demo", "--config", "demo.py:tiny", "--run_dir", run_dir, "--data_dir",
             tiny_data_dir)
  LOGS["first run"] = proc.stdout + proc.stderr
  return run_dir


LOGS = {}


def test_the_demo_log_reads_well_in_a_file(demo_run):
  """Redirected output (a pipe here, as `make demo > log`): numbered steps, each part's
  training as short progress lines, no tqdm redraws piling up into one long line."""
  log = LOGS["first run"]
  for i, name in enumerate(("corpus", "codec", "w2v_bert", "semantic_tokenizer", "token_cache",
                            "stages", "continuations"), 1):
    assert f"[demo] step {i}/7: {name} ..." in log, name
  assert "train: step 4/4 (100%)" in log and "compiling the train step" in log
  bad = [line[:300] for line in log.split("\n") if len(line) > 300 or "\r" in line]
  assert not bad, bad


def test_demo_writes_the_report_with_measured_figures(demo_run):
  metrics = json.load(open(os.path.join(demo_run, "metrics.json")))
  generation = metrics["generation"]
  # The prompt part of each generated clip is the codec's decoding of the prompt's codes.
  assert generation["prompt_audio_reproduced"] is True and generation["prompts"] == 2
  assert generation["prompt_audio_max_error"] < 1e-3
  for key in ("speaker_similarity_to_prompt", "speaker_similarity_to_other_prompts"):
    assert len(generation[key]) == 2 and all(-1 <= x <= 1 for x in generation[key]), key
  quality = metrics["codec_quality"]
  assert quality["utterances"] == 2 and -0.5 <= quality["pesq"] <= 4.7
  assert 0 <= quality["stoi"] <= 1
  for part in ("codec", "w2v_bert", "semantic_lm", "coarse_lm", "fine_lm"):
    assert metrics[part]["last_train"]["step"] == 4, part
  html = open(os.path.join(demo_run, "report.html")).read()
  assert "speaker similarity to its prompt" in html and "PESQ" in html
  # The summary is written after the last step, so it has every timing; the curves of each part.
  assert "<h2>Summary</h2>" in html and "time: total" in html and "time: continuations" in html
  assert "training.png" in html and os.path.exists(os.path.join(demo_run, "training.png"))
  assert metrics["report"] == os.path.join(demo_run, "report.html")
  for name in ("prompt0_prompt.wav", "prompt0_continuation.wav", "prompt0_original.wav",
               "prompt0.png"):
    assert name in html and os.path.exists(os.path.join(demo_run, name))
  wav, rate = sf.read(os.path.join(demo_run, "prompt0_continuation.wav"))
  assert rate == 16000 and abs(len(wav) / rate - 2.0) < 0.05 and np.isfinite(wav).all()


def test_demo_rerun_reuses_finished_parts(demo_run, tiny_data_dir):
  proc = cli("demo", "--config", "demo.py:tiny", "--run_dir", demo_run, "--data_dir",
             tiny_data_dir)
  log = proc.stdout + proc.stderr
  assert "resume: checkpoint step 4" in log and "fresh initialisation" not in log


def test_generate_continuation_and_unconditional(demo_run, tmp_path):
  prompt = os.path.join(demo_run, "prompt0_prompt.wav")
  proc = cli("generate", "--run", demo_run, "--prompt", prompt, "--seconds", "2", "--out",
             str(tmp_path / "cont.wav"), "--temperature", "semantic=0.6,coarse=0.8,fine=0")
  # Written to a pipe, progress is one log line per stage, not a redrawn bar.
  assert "generate: 4/5 stage 3: fine acoustic tokens" in proc.stderr and "\r" not in proc.stderr
  wav, rate = sf.read(str(tmp_path / "cont.wav"))
  assert abs(len(wav) / rate - 2.0) < 0.05
  tokens = np.load(str(tmp_path / "cont.npz"), allow_pickle=False)
  assert tokens["coarse"].shape[1] == 2 * tokens["semantic"].shape[1]
  cli("generate", "--run", demo_run, "--seconds", "1", "--num_samples", "2", "--out",
      str(tmp_path / "free.wav"))
  assert os.path.exists(tmp_path / "free-0.wav") and os.path.exists(tmp_path / "free-1.wav")
  bad = cli("generate", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.wav"),
            check=False)
  assert bad.returncode == 1 and "no checkpoint" in bad.stderr
  bad = cli("generate", "--run", demo_run, "--out", str(tmp_path / "x.wav"), "--top_k",
            "coarse=many", check=False)
  assert bad.returncode != 0 and "--top_k" in bad.stderr and len(bad.stderr.splitlines()) == 1
  assert not os.path.exists(tmp_path / "x.wav")


def test_speech_continuation_experiment_on_the_demo_parts(demo_run, tiny_data_dir, tmp_path):
  """experiments/speech_continuation.py end to end on the tiny demo's parts: every system
  scored, the metrics that apply to each and none that do not, the files written."""
  from experiment_helpers import load_experiment
  speech = load_experiment("speech_continuation")
  out = tmp_path / "results"
  assert speech.main(["--config", "speech_continuation.py:tiny", f"--config.run_dir={demo_run}",
                      f"--config.data_dir={tiny_data_dir}", "--config.corpus_build=tiny",
                      f"--config.out_dir={out}"]) == 0
  report = json.load(open(out / "speech_continuation.json"))
  rows = {r["system"]: r for r in report["rows"]}
  assert {"original", "codec", "semantic_to_acoustic", "continuation"} <= set(rows)
  assert all(r["data"] == "synthetic" and r["n"] >= 1 for r in rows.values())
  assert rows["original"]["speaker_accuracy"] == report["speaker_metric"]["ceiling"][
      "synthetic/test"]
  for system in ("original", "codec", "semantic_to_acoustic"):
    assert 0 <= rows[system]["wer"] and len(rows[system]["wer_ci"]) == 2
  assert "wer" not in rows["continuation"]  # No reference transcript: undefined, not invented.
  assert 0 <= rows["continuation"]["speaker_accuracy"] <= 1
  assert (out / "speech_continuation.md").exists() and (out / "speech_continuation.png").exists()
  # A bad run folder is a one-line error and exit code 1.
  assert speech.main(["--config", "speech_continuation.py:tiny",
                      f"--config.run_dir={tmp_path / 'nothing'}",
                      f"--config.data_dir={tiny_data_dir}"]) == 1
