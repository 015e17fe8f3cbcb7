"""README, "Train on your own data at paper scale": every `audiolm-jax` line of its first
command block runs, in order, at `tiny` size, on a small folder in the LibriSpeech layout.

The commands are read from the README itself, so the documentation cannot drift from what
works. What the test changes, and only that: the three shell variables point into tmp_path;
`:paper` presets of `train` lines become `:tiny`, with a few steps and no evaluation (the
codec's steps reconstruction-only: its adversarial step is tested in tests/codec/); the
continuation is 2 s instead of 10. `inspect --plan` runs on the paper preset as written.
"""

import os
import re
import shlex

import numpy as np

from audiolm_jax import cli
from audiolm_jax.data.audio import write_wav

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Train on your own data at paper scale"
FAST = ["--config.total_steps=2", "--config.checkpoint_every=2", "--config.eval_every=0",
        "--config.progress_bar=false", "--config.peak_flops_per_device=1e12"]  # no matmul probe


def readme_commands() -> tuple[dict[str, str], list[str]]:
  """The section's first bash block: its variables and its command lines (continuations
  joined, comments dropped)."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  assert SECTION in text, f"README.md has no section {SECTION!r}"
  section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
  block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
  joined = re.sub(r"\\\n\s*", " ", block)
  variables, commands = {}, []
  for line in joined.splitlines():
    line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
    if not line:
      continue
    assignment = re.fullmatch(r"([A-Z_]+)=(\S+)", line)
    if assignment:
      variables[assignment.group(1)] = assignment.group(2)
    else:
      commands.append(line)
  return variables, commands


def librispeech_folder(root: str, speakers: int = 4, per_speaker: int = 3) -> None:
  """SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTTERANCE.wav, 2 s each: a voice-like harmonic tone per
  speaker, gliding, with a little noise."""
  rng = np.random.default_rng(0)
  t = np.arange(32000) / 16000
  for s in range(speakers):
    speaker, chapter = 100 + s, 2000 + s
    folder = os.path.join(root, str(speaker), str(chapter))
    os.makedirs(folder)
    for u in range(per_speaker):
      f0 = 110 + 40 * s + 20 * np.sin(2 * np.pi * (0.5 + u) * t)
      phase = 2 * np.pi * np.cumsum(f0) / 16000
      wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
      wav = (wav + 0.01 * rng.normal(size=t.shape)).astype(np.float32)
      write_wav(os.path.join(folder, f"{speaker}-{chapter}-{u:04d}.wav"), wav, 16000)


def test_the_readme_names_every_step():
  variables, commands = readme_commands()
  assert set(variables) == {"SOURCE", "DATA", "RUNS"}
  verbs = [" ".join(shlex.split(c)[:3]) for c in commands]
  for step in ("audiolm-jax data build", "audiolm-jax tokenize fit-kmeans",
               "audiolm-jax tokenize corpus", "audiolm-jax generate --run",
               "audiolm-jax inspect --plan"):
    assert step in verbs, step
  configs = [c for c in commands if c.startswith("audiolm-jax train")]
  for part in ("codec", "w2v_bert", "semantic_lm", "coarse_lm", "fine_lm"):
    assert any(f"experiments/configs/{part}.py:paper" in c for c in configs), part


def test_every_readme_command_runs_at_tiny_size(tmp_path, monkeypatch, capsys):
  variables, commands = readme_commands()
  paths = {"SOURCE": str(tmp_path / "source"), "DATA": str(tmp_path / "data"),
           "RUNS": str(tmp_path / "runs")}
  assert set(paths) == set(variables)
  librispeech_folder(paths["SOURCE"])
  monkeypatch.chdir(tmp_path)  # prompt.wav and continuation.wav, as a user would have them
  write_wav("prompt.wav", np.sin(2 * np.pi * 150 * np.arange(16000) / 16000) * 0.3, 16000)
  monkeypatch.setenv("AUDIOLM_DATA_DIR", paths["DATA"])
  for command in commands:
    for name, value in paths.items():
      command = command.replace(f"${name}", value)
    argv = shlex.split(command)
    assert argv[0] == "audiolm-jax", command
    argv = [os.path.join(REPO, a) if a.startswith("experiments/configs/") else a
            for a in argv[1:]]
    if argv[0] == "train":
      argv = [a.replace(":paper", ":tiny") for a in argv] + FAST
      if any("codec.py" in a for a in argv):  # The adversarial step: tests/codec.
        argv.append("--config.disc_warmup_steps=2")
    if argv[0] == "generate":
      argv = [("2" if prev == "--seconds" else a) for prev, a in zip([""] + argv, argv)]
    capsys.readouterr()
    rc = cli.main(argv)
    out = capsys.readouterr()
    assert rc == 0, f"{command}\n{out.err[-3000:]}"
  assert os.path.getsize(tmp_path / "continuation.wav") > 0
  # The stages took their vocabularies from the cache, not the preset.
  from audiolm_jax.data.tokens import read_cache_info
  from audiolm_jax import config as config_lib
  from audiolm_jax.checkpoint_files import find_step_dir
  info = read_cache_info(os.path.join(paths["RUNS"], "tokens"))
  with open(os.path.join(find_step_dir(os.path.join(paths["RUNS"], "coarse_lm")), "config",
                         "metadata")) as f:
    coarse = config_lib.from_json(f.read())
  assert coarse.stage.semantic_codebook_size == info.semantic_vocab_size
  assert coarse.stage.acoustic_codebook_size == info.acoustic_vocab_size
  assert "per device" in out.out  # the last command, inspect --plan
