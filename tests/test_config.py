"""Configs: every file and variant loads; overrides are typed; unknown keys are rejected."""

import glob
import os

import ml_collections
import pytest

from audiolm_jax import config as config_lib
from audiolm_jax.errors import ConfigError

CONFIG_DIR = config_lib.config_dirs()[0]
CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
                      if not p.endswith("__init__.py"))
TRAINING_KEYS = ("total_steps", "batch_size", "seed", "checkpoint_every", "eval_every", "mesh",
                 "optimizer", "data")


def test_there_are_configs():
  assert CONFIG_FILES, f"no config files under {CONFIG_DIR}"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_every_config_and_variant_loads(path):
  variants = config_lib.config_variants(path)
  assert variants, f"{path} declares no VARIANTS"
  for variant in variants:
    cfg = config_lib.load_config(f"{path}:{variant}")
    assert isinstance(cfg, ml_collections.ConfigDict)
    if "task" in cfg:  # A training config: the keys every tool relies on.
      for key in TRAINING_KEYS:
        assert key in cfg, f"{path}:{variant} lacks {key}"
      assert set(cfg.mesh.keys()) >= {"data", "fsdp", "tensor"}
    # JSON round trip (how configs are stored with checkpoints).
    text = config_lib.to_json(cfg)
    assert config_lib.to_json(config_lib.from_json(text)) == text


@pytest.fixture
def cfg_file(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text(
      "import ml_collections\n"
      "VARIANTS = ('tiny', 'paper')\n"
      "def get_config(arg=None):\n"
      "  c = ml_collections.ConfigDict()\n"
      "  c.steps = 10 if arg == 'tiny' else 1000\n"
      "  c.lr = 1e-3\n"
      "  c.name = 'x'\n"
      "  c.flag = False\n"
      "  c.shape = (2, 3)\n"
      "  c.maybe = None\n"
      "  c.sub = ml_collections.ConfigDict({'depth': 2})\n"
      "  return c\n")
  return str(path)


def test_variants_and_overrides(cfg_file):
  assert config_lib.load_config(f"{cfg_file}:tiny").steps == 10
  cfg = config_lib.load_config(
      f"{cfg_file}:paper",
      [("steps", "5"), ("lr", "3e-4"), ("name", "y"), ("flag", "true"), ("shape", "(4, 5)"),
       ("sub.depth", "7"), ("maybe", "1.5")])
  assert (cfg.steps, cfg.lr, cfg.name, cfg.flag, cfg.shape, cfg.sub.depth, cfg.maybe) == \
      (5, 3e-4, "y", True, (4, 5), 7, 1.5)
  with pytest.raises(AttributeError):
    cfg.new_key = 1  # Locked.


@pytest.mark.parametrize("overrides,match", [
    ([("stepz", "5")], "stepz"),
    ([("sub.width", "5")], "sub.width"),
    ([("nope.depth", "5")], "nope"),
    ([("steps", "many")], "steps: expected an integer"),
    ([("lr", "fast")], "lr: expected a number"),
    ([("flag", "maybe")], "flag: expected a boolean"),
    ([("sub", "3")], "group of settings"),
])
def test_bad_overrides_name_the_key(cfg_file, overrides, match):
  with pytest.raises(ConfigError, match=match):
    config_lib.load_config(f"{cfg_file}:tiny", overrides)


def test_bad_specs(cfg_file, tmp_path):
  with pytest.raises(ConfigError, match="unknown variant 'huge'"):
    config_lib.load_config(f"{cfg_file}:huge")
  with pytest.raises(ConfigError, match="choose a variant"):
    config_lib.load_config(cfg_file)
  with pytest.raises(ConfigError, match="not found"):
    config_lib.load_config(str(tmp_path / "missing.py:tiny"))
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(arg):\n  return 1 / 0\n")
  with pytest.raises(ConfigError, match="ZeroDivisionError"):
    config_lib.load_config(str(broken))
  noget = tmp_path / "noget.py"
  noget.write_text("x = 1\n")
  with pytest.raises(ConfigError, match="get_config"):
    config_lib.load_config(str(noget))


def test_split_override_args():
  overrides, rest = config_lib.split_override_args(
      ["train", "--config", "a.py:tiny", "--config.lr=0.1", "--config.steps", "3", "--x"])
  assert overrides == [("lr", "0.1"), ("steps", "3")]
  assert rest == ["train", "--config", "a.py:tiny", "--x"]
  with pytest.raises(ConfigError):
    config_lib.split_override_args(["--config.lr"])
