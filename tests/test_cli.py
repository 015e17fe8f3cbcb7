"""The `audiolm-jax` command: help everywhere, exit codes 0 / 1 (bad input) / 2 (bad usage)."""

import subprocess
import sys

from audiolm_jax import cli


def run(*args):
  return subprocess.run([sys.executable, "-m", "audiolm_jax", *args], capture_output=True,
                        text=True, timeout=120)


def _all_parsers(parser, prefix=()):
  yield prefix, parser
  for action in parser._actions:
    if hasattr(action, "choices") and isinstance(action.choices, dict):
      for name, sub in action.choices.items():
        yield from _all_parsers(sub, prefix + (name,))


def test_help_at_every_level():
  parser = cli.build_parser()
  paths = [p for p, _ in _all_parsers(parser)]
  assert ("data", "build") in paths and ("data", "check") in paths and ("data", "stats") in paths
  for path, sub in _all_parsers(parser):
    text = sub.format_help()
    assert sub.description or path == (), f"{' '.join(path)} has no description"
    assert "usage:" in text


def test_help_runs_and_lists_groups():
  proc = run("--help")
  assert proc.returncode == 0 and "data" in proc.stdout


def test_bad_usage_exits_2():
  assert run().returncode == 2
  assert run("nonsense").returncode == 2
  proc = run("data", "build")
  assert proc.returncode == 2 and "error" in proc.stderr
  proc = run("data", "stats", "synthetic_speech", "--config.x=1")
  assert proc.returncode == 2 and "takes no --config" in proc.stderr


def test_bad_input_exits_1_with_one_line(tmp_path):
  proc = run("data", "stats", "synthetic_speech", "--data_dir", str(tmp_path))
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "not built" in lines[0] and "Traceback" not in proc.stderr
  proc = run("data", "stats", "synthetic_speech", "--data_dir", str(tmp_path), "--debug")
  assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_data_build_and_stats_cli(tiny_data_dir):
  proc = run("data", "build", "synthetic_speech", "--size", "tiny", "--data_dir", tiny_data_dir)
  assert proc.returncode == 0 and "already built" in proc.stdout
  proc = run("data", "stats", "synthetic_piano", "--data_dir", tiny_data_dir, "--config_name",
             "tiny")
  assert proc.returncode == 0, proc.stderr
  assert "train" in proc.stdout and "h," in proc.stdout


def test_audio_folder_without_source_is_bad_input(tmp_path):
  proc = run("data", "build", "audio_folder", "--data_dir", str(tmp_path))
  assert proc.returncode == 1 and "--source" in proc.stderr
