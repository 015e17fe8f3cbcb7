"""Built-in and folder corpora: build, locate, read and summarise.

    build("synthetic_speech", size="tiny", data_dir="data")      # -> build summary dict
    source = data_source("synthetic_speech", "train", data_dir="data")  # random access
    stats("synthetic_speech", data_dir="data")                    # hours, speakers, lengths
"""

from __future__ import annotations

import json
import os

import numpy as np
from etils import epath

from audiolm_jax import paths
from audiolm_jax.errors import DataError

CORPORA = ("synthetic_speech", "synthetic_piano", "audio_folder")
SIZES = ("tiny", "default")


def make_builder(name: str, *, size: str = "default", data_dir: str | None = None,
                 source_dir: str | None = None, layout: str = "generic", workers: int = 2,
                 build_name: str | None = None):
  """The TFDS builder for a corpus (nothing is built until `prepare`); `build_name` names an
  audio_folder build (default: from the layout and the folder)."""
  from audiolm_jax.data.corpora import base
  data_dir = data_dir or base.default_data_dir()
  if name == "synthetic_speech":
    from audiolm_jax.data.corpora.speech import CONFIGS, SyntheticSpeech as cls
  elif name == "synthetic_piano":
    from audiolm_jax.data.corpora.piano import CONFIGS, SyntheticPiano as cls
  elif name == "audio_folder":
    from audiolm_jax.data.corpora.folder import AudioFolder, folder_config
    if not source_dir:
      raise DataError("audio_folder needs --source DIR (the folder holding your audio)")
    return AudioFolder(data_dir=data_dir, config=folder_config(source_dir, layout, build_name),
                       workers=workers)
  else:
    raise DataError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
  if size not in CONFIGS:
    raise DataError(f"{name}: unknown size {size!r}; known: {', '.join(CONFIGS)}")
  return cls(data_dir=data_dir, config=size, workers=workers)


def build(name: str, *, size: str = "default", data_dir: str | None = None,
          source_dir: str | None = None, layout: str = "generic", workers: int = 2,
          force: bool = False, build_name: str | None = None) -> dict:
  """Builds a corpus (reusing a finished build unless `force`) and returns its summary."""
  from audiolm_jax.data.corpora import base
  builder = make_builder(name, size=size, data_dir=data_dir, source_dir=source_dir,
                         layout=layout, workers=workers, build_name=build_name)
  return base.prepare(builder, force=force)


def corpus_dir(name: str, data_dir: str | None = None, config: str | None = None) -> str:
  """The directory of a finished build: DATA_DIR/NAME/CONFIG/VERSION (newest version).

  `config` defaults to "default" when built, else the only config there is.
  """
  from audiolm_jax.data.corpora import base
  data_dir = data_dir or base.default_data_dir()
  root = paths.resolve(data_dir) / name
  configs = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if (
      root.is_dir()) else []
  finished = [c for c in configs if _versions(root / c)]
  if not finished:
    raise DataError(f"corpus {name!r} is not built under {data_dir}: run "
                    f"`audiolm-jax data build {name} --data_dir {data_dir}`")
  if config is None:
    config = "default" if "default" in finished else finished[0] if len(finished) == 1 else None
    if config is None:
      raise DataError(f"{name}: several builds under {root} ({', '.join(finished)}); "
                      "choose one with --config_name")
  if config not in finished:
    raise DataError(f"{name}: no finished build {config!r} under {root} "
                    f"(found: {', '.join(finished) or 'none'})")
  return _versions(root / config)[-1]


def _versions(path: epath.Path) -> list[str]:
  """The finished builds (`VERSION/dataset_info.json`) in a config's directory, oldest first."""
  found = [d for d in path.glob("*.*.*") if (d / "dataset_info.json").exists()]
  found.sort(key=lambda d: tuple(int(x) for x in d.name.split(".") if x.isdigit()))
  return [os.fspath(d) for d in found]


def data_sources(name: str, data_dir: str | None = None, config: str | None = None) -> dict:
  """{split: random-access source} for a finished build (array_record, no TensorFlow)."""
  import tensorflow_datasets as tfds
  path = corpus_dir(name, data_dir, config)
  return dict(tfds.builder_from_directory(path).as_data_source())


def data_source(name: str, split: str, data_dir: str | None = None, config: str | None = None):
  sources = data_sources(name, data_dir, config)
  if split not in sources:
    raise DataError(f"{name}: no split {split!r}; splits: {', '.join(sorted(sources))}")
  return sources[split]


def stats(name: str, data_dir: str | None = None, config: str | None = None,
          sample_rate: int = 16000) -> dict:
  """Hours, distinct speakers (or pieces) and clip-length distribution, per split."""
  path = corpus_dir(name, data_dir, config)
  out = {"corpus": name, "path": path, "splits": {}}
  every_group = set()
  for split, source in data_sources(name, data_dir, config).items():
    lengths, groups = [], set()
    for i in range(len(source)):
      ex = source[i]
      lengths.append(len(ex["audio"]) / sample_rate)
      for key in ("speaker_id", "speaker", "piece_id"):
        if key in ex:
          value = ex[key]
          groups.add(value.decode() if isinstance(value, bytes) else int(value))
          break
    every_group |= groups
    lengths = np.asarray(lengths)
    q = np.percentile(lengths, [0, 10, 50, 90, 100]) if lengths.size else np.zeros(5)
    out["splits"][split] = {
        "examples": int(lengths.size),
        "hours": round(float(lengths.sum()) / 3600, 3),
        "speakers_or_pieces": len(groups),
        "seconds_min_p10_median_p90_max": [round(float(v), 2) for v in q],
    }
  summary = paths.resolve(path) / "build_summary.json"
  if summary.exists():
    s = json.loads(summary.read_text())
    out["skipped_at_build"] = s.get("skipped", 0)
    out["build_seconds"] = s.get("build_seconds")
  out["total_hours"] = round(sum(s["hours"] for s in out["splits"].values()), 3)
  out["speakers_or_pieces"] = len(every_group)
  return out
