"""The house: no import cycles, no upward imports between the package's layers, inference
without the trainer, and no file past 600 lines."""

import ast
import os
import subprocess
import sys
import textwrap


PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "audiolm_jax")

# Layers, lowest first: a module may import from its own layer and the ones below only.
LAYERS = [
    {"errors", "frames", "paths", "checkpoint_files", "progress"},
    {"layers", "quantization"},
    {"codec", "semantic", "lm"},
    {"formats", "data", "eval"},
    {"pretrained", "tokenize"},
    {"audiolm"},
    {"config", "train"},
    {"tasks"},
    {"report", "demo"},
    {"commands", "cli", "__main__", "__init__"},
]


def _layer(module: str) -> int:
  top = module.split(".")[1] if "." in module else "__init__"
  for i, names in enumerate(LAYERS):
    if top in names:
      return i
  raise AssertionError(f"{module}: its top-level name {top!r} is in no layer of "
                       "tests/test_house.py")


def _modules():
  for dirpath, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
        yield rel.removesuffix(".__init__"), path


def _imports(path: str, module: str) -> set[str]:
  """audiolm_jax modules imported by a file (at any depth: function-level imports count)."""
  tree = ast.parse(open(path).read())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("audiolm_jax"):
      for alias in node.names:  # `from audiolm_jax import tokenize` names a module
        full = f"{node.module}.{alias.name}"
        out.add(full if os.path.exists(os.path.join(os.path.dirname(PACKAGE),
                                                    *full.split(".")) + ".py")
                or os.path.isdir(os.path.join(os.path.dirname(PACKAGE), *full.split(".")))
                else node.module)
    elif isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("audiolm_jax")}
  out.discard(module)
  return out


GRAPH = {m: _imports(p, m) for m, p in _modules()}


def test_no_import_cycles():
  state: dict[str, int] = {}
  path: list[str] = []

  def visit(m):
    state[m] = 1
    path.append(m)
    for n in sorted(GRAPH.get(m, ())):
      if n not in GRAPH:
        continue
      if state.get(n) == 1:
        raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
      if n not in state:
        visit(n)
    path.pop()
    state[m] = 2

  for m in sorted(GRAPH):
    if m not in state:
      visit(m)


def test_no_upward_imports_between_layers():
  upward = sorted(f"{m} -> {n}" for m, deps in GRAPH.items() for n in deps
                  if n in GRAPH and m != "audiolm_jax" and _layer(n) > _layer(m))
  assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_file_over_600_lines():
  root = os.path.dirname(PACKAGE)
  long = []
  for folder in ("audiolm_jax", "experiments", "benchmarks", "tests"):
    for dirpath, _, names in os.walk(os.path.join(root, folder)):
      for name in names:
        if name.endswith(".py"):
          path = os.path.join(dirpath, name)
          n = sum(1 for _ in open(path))
          if n > 600:
            long.append(f"{os.path.relpath(path, root)}: {n} lines")
  assert not long, long


def test_generation_imports_no_trainer_optimizer_or_data_loader(tmp_path):
  """Load a run directory's parts and generate, in a fresh process; then look at sys.modules."""
  import parts  # tests/support
  run = parts.make_run_dir(str(tmp_path / "run"))
  script = textwrap.dedent(f"""
      import sys
      import jax, numpy as np
      from audiolm_jax.audiolm import AudioLM
      lm = AudioLM.from_run_dir({run!r})
      t = np.arange(16000) / 16000
      prompt = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
      out = lm.generate(prompt, seconds=2.0, rng=jax.random.key(0))
      assert out.audio.shape[1] >= 32000, out.audio.shape
      bad = sorted(m for m in sys.modules if m.split(".")[0] in ("optax", "grain")
                   or m.startswith(("audiolm_jax.train", "audiolm_jax.tasks",
                                    "audiolm_jax.data.pipeline"))
                   or m == "orbax.checkpoint.checkpoint_manager")
      print("IMPORTED:", bad)
      """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=600, env=env, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "IMPORTED: []" in proc.stdout, proc.stdout
