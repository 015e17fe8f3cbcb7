"""Packaging: pyproject.toml's ranges and extras against the lock (requirements.txt), the
extras the code asks for, and a core that imports no extra."""

import os
import re
import subprocess
import sys
import textwrap
import tomllib

from packaging.requirements import Requirement

from audiolm_jax import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def canonical(name):
  return re.sub(r"[-_.]+", "-", name).lower()


def project():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]


def lock():
  """{name: (version, extra or None)} of requirements.txt."""
  out = {}
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    for line in f:
      spec, _, comment = line.partition("#")
      if not spec.strip():
        continue
      name, version = spec.strip().split("==")
      comment = comment.strip()
      out[canonical(name)] = (version, comment[len("extra:"):].strip()
                              if comment.startswith("extra:") else None)
  return out


def test_the_lock_pins_what_pyproject_allows_and_nothing_else():
  meta, pins = project(), lock()
  groups = {None: meta["dependencies"], **{
      extra: reqs for extra, reqs in meta["optional-dependencies"].items()
      # Accelerator builds of jax, and cloud storage clients (no bucket to test them
      # against here): not in the CPU lock.
      if extra not in ("cuda12", "tpu", "gcs")}}
  declared = {}
  for extra, reqs in groups.items():
    for text in reqs:
      req = Requirement(text)
      declared[canonical(req.name)] = (req, extra)
  assert sorted(declared) == sorted(pins)
  for name, (req, extra) in declared.items():
    version, locked_extra = pins[name]
    assert locked_extra == extra, (name, extra, locked_extra)
    assert req.specifier.contains(version), f"{name}=={version} is outside {req.specifier}"


def test_the_core_install_leaves_out_every_extra():
  core = {canonical(Requirement(r).name) for r in project()["dependencies"]}
  extras = project()["optional-dependencies"]
  for extra, modules in errors.EXTRAS.items():
    names = {canonical(Requirement(r).name) for r in extras[extra]}
    assert {canonical(m) for m in modules} <= names, extra
    assert not core & names, extra
  assert project()["requires-python"] == ">=3.11"


def test_a_missing_extra_is_one_line_naming_the_pip_command(monkeypatch):
  import importlib.util
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "matplotlib" else real(name, *a))
  try:
    errors.require_extra("report", "the report page")
  except errors.MissingExtraError as e:
    assert str(e) == ("the report page needs the [report] extra (matplotlib not installed): "
                      "pip install 'audiolm-jax[report]'")
  else:
    raise AssertionError("no error")
  errors.require_extra("eval", "x")  # installed here: no error


def test_the_core_imports_no_extra():
  """The command line, the pipeline, the trainer and every task import without the extras."""
  script = textwrap.dedent("""
      import sys
      import audiolm_jax.cli, audiolm_jax.audiolm, audiolm_jax.tasks, audiolm_jax.demo
      import audiolm_jax.train.trainer, audiolm_jax.tokenize, audiolm_jax.data.corpora
      import audiolm_jax.eval.quality, audiolm_jax.eval.speaker, audiolm_jax.eval.asr
      from audiolm_jax.errors import EXTRAS
      print(sorted(m for m in sys.modules if m.split(".")[0] in
                   {x for mods in EXTRAS.values() for x in mods}))
      """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "[]", proc.stdout
