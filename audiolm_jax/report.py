"""The demo's report: spectrograms, training curves and an HTML page with audio players.

    write_report(out_dir, items, metrics, title="AudioLM demo", summary=[...], curves={...})

`items` is a list of dicts with `name`, `prompt` (float [S]), `continuation` (float [S], the
whole generated clip including the prompt part), optional `original` (the real audio the
prompt was cut from), `text` (a caption), `boundary_s` (where generated audio starts: the
prompt's last whole token frame; default the prompt's length) and `facts` (lines of measured
figures, e.g. the continuation's speaker similarity to the prompt). Each item gets
`NAME_prompt.wav`, `NAME_continuation.wav` (and `NAME_original.wav`) and `NAME.png`: log-mel
spectrograms (Hz on the axis, a dB colour bar) of the original above the continuation, on one
time axis, with the prompt boundary marked. `summary` is the page's short table of headline
figures, `(label, value)` rows; `curves` maps a part's name to its workdir, whose
`metrics.jsonl` losses are drawn in `training.png`. Every metric (config left out) follows in a
folded table. `report.html` embeds the files with relative paths, so the folder can be copied
anywhere and opened in a browser.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any, Sequence

import numpy as np

from audiolm_jax.config import flatten
from audiolm_jax.data.audio import write_wav
from audiolm_jax.errors import require_extra


def spectrogram_png(path: str, wav: np.ndarray, sample_rate: int, boundary_s: float | None,
                    title: str = "", original: np.ndarray | None = None) -> None:
  """Log-mel spectrograms of `original` (if given) above `wav`, on one time axis, with a
  vertical line at `boundary_s` (the prompt's end); Hz on the frequency axis, a dB colour bar."""
  require_extra("report", "the report's spectrograms")
  import librosa
  import librosa.display
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = ([("original recording", original)] if original is not None else []) + [
      ("prompt | generated continuation", wav)]
  fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels) + 0.4), dpi=90,
                           sharex=True, squeeze=False)
  image = None
  for ax, (label, clip) in zip(axes[:, 0], panels):
    mel = librosa.feature.melspectrogram(y=clip.astype(np.float32), sr=sample_rate, n_fft=1024,
                                         hop_length=160, n_mels=80)
    db = librosa.power_to_db(mel + 1e-10, ref=np.max)
    image = librosa.display.specshow(db, sr=sample_rate, hop_length=160, x_axis="s",
                                     y_axis="mel", fmax=sample_rate / 2, cmap="magma",
                                     vmin=-80, vmax=0, ax=ax)
    if boundary_s is not None:
      ax.axvline(boundary_s, color="cyan", linewidth=2)
    ax.set_title(label, fontsize=9, loc="left")
    ax.set_ylabel("Hz")
    ax.set_xlabel("")
  axes[-1, 0].set_xlabel("seconds")
  if boundary_s is not None:
    axes[-1, 0].text(boundary_s, 0.97, " prompt | continuation", color="cyan", va="top",
                     fontsize=9, transform=axes[-1, 0].get_xaxis_transform())
  fig.colorbar(image, ax=axes[:, 0].tolist(), format="%+.0f dB", pad=0.01)
  fig.suptitle(title, fontsize=10)
  fig.savefig(path)
  plt.close(fig)


def training_png(path: str, curves: dict[str, str]) -> bool:
  """One panel per part: train (and eval) loss against step, from each workdir's
  `metrics.jsonl`. Returns False (and writes nothing) when no part logged any."""
  require_extra("report", "the report's training curves")
  from audiolm_jax.train.metrics import read_jsonl  # pylint: disable=g-import-not-at-top
  runs = {}
  for name, workdir in curves.items():
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
      train = [(r["step"], r["loss"]) for r in read_jsonl(workdir, "train") if "loss" in r]
      evals = [(r["step"], r["loss"]) for r in read_jsonl(workdir, "eval") if "loss" in r]
      if train:
        runs[name] = (train, evals)
  if not runs:
    return False
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 2.8), dpi=90,
                           squeeze=False)
  for ax, (name, (train, evals)) in zip(axes[0], runs.items()):
    ax.plot(*zip(*train), label="train", color="tab:blue")
    if evals:
      ax.plot(*zip(*evals), "o-", label="eval", color="tab:orange", markersize=4)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("loss")
  axes[0, 0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return True


def write_report(out_dir: str, items: Sequence[dict], metrics: dict[str, Any], *,
                 sample_rate: int = 16000, title: str = "AudioLM demo",
                 summary: Sequence[tuple[str, Any]] = (),
                 curves: dict[str, str] | None = None) -> str:
  """Writes wavs, PNGs, `metrics.json` and `report.html` into `out_dir`; returns the HTML path."""
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  for item in items:
    name = item["name"]
    prompt_s = item["prompt"].size / sample_rate
    files = {"prompt": f"{name}_prompt.wav", "continuation": f"{name}_continuation.wav"}
    write_wav(os.path.join(out_dir, files["prompt"]), item["prompt"], sample_rate)
    write_wav(os.path.join(out_dir, files["continuation"]), item["continuation"], sample_rate)
    if item.get("original") is not None:
      files["original"] = f"{name}_original.wav"
      write_wav(os.path.join(out_dir, files["original"]), item["original"], sample_rate)
    png = f"{name}.png"
    boundary = item.get("boundary_s", prompt_s)
    spectrogram_png(os.path.join(out_dir, png), item["continuation"], sample_rate, boundary,
                    title=f"{name}: {prompt_s:.1f} s prompt, "
                    f"{item['continuation'].size / sample_rate:.1f} s in all",
                    original=item.get("original"))
    players = "".join(
        f'<div class="player"><span>{label}</span><audio controls preload="auto" '
        f'src="{html.escape(path)}"></audio></div>' for label, path in files.items())
    caption = html.escape(item.get("text", ""))
    facts = "".join(f"<li>{html.escape(line)}</li>" for line in item.get("facts", ()))
    facts = f'<ul class="facts">{facts}</ul>' if facts else ""
    rows.append(f'<section><h2>{html.escape(name)}</h2><p>{caption}</p>{facts}{players}'
                f'<img src="{html.escape(png)}" alt="spectrograms of {html.escape(name)}">'
                '</section>')
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2, default=float)
  def table(pairs) -> str:
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
                    for k, v in pairs)
    return f"<table>{cells}</table>"
  headline = f"<h2>Summary</h2>{table(summary)}" if summary else ""
  training = ""
  if curves and training_png(os.path.join(out_dir, "training.png"), curves):
    training = ('<h2>Training</h2><img src="training.png" alt="loss against step of each '
                'part">')
  everything = {k: v for k, v in metrics.items() if k != "config"}
  page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }}
section {{ border-top: 1px solid #ccc; padding: 1em 0; }}
.player {{ display: flex; align-items: center; gap: 1em; margin: .3em 0; }}
.player span {{ width: 8em; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; }} td {{ border: 1px solid #ddd; padding: .2em .6em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Each row: the prompt (real audio), the generated continuation (prompt + continuation, as one
clip), and where available the original recording. The spectrogram marks the prompt's end.</p>
{headline}
{''.join(rows)}
{training}
<details><summary>All metrics (<code>metrics.json</code> also holds the config)</summary>
{table(flatten(everything).items())}</details>
</body></html>
"""
  path = os.path.join(out_dir, "report.html")
  with open(path, "w") as f:
    f.write(page)
  return path


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)
