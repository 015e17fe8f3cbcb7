"""The demo's report: prompt | continuation spectrograms and an HTML page with audio players.

    write_report(out_dir, items, metrics, title="AudioLM demo")

`items` is a list of dicts with `name`, `prompt` (float [S]), `continuation` (float [S], the
whole generated clip including the prompt part), optional `original` (the real audio the
prompt was cut from), `text` (a caption), `boundary_s` (where generated audio starts: the
prompt's last whole token frame; default the prompt's length) and `facts` (lines of measured
figures, e.g. the continuation's speaker similarity to the prompt). Each item gets
`NAME_prompt.wav`, `NAME_continuation.wav` (and `NAME_original.wav`) and `NAME.png`: a
log-mel spectrogram of the continuation with the prompt boundary marked. `report.html` embeds them with relative paths,
so the folder can be copied anywhere and opened in a browser.
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
                    title: str = "") -> None:
  """Log-mel spectrogram of `wav` with a vertical line at `boundary_s` (the prompt's end)."""
  require_extra("report", "the report's spectrograms")
  import librosa
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  mel = librosa.feature.melspectrogram(y=wav.astype(np.float32), sr=sample_rate, n_fft=1024,
                                       hop_length=160, n_mels=80)
  db = librosa.power_to_db(mel + 1e-10, ref=np.max)
  seconds = wav.size / sample_rate
  fig, ax = plt.subplots(figsize=(10, 2.6), dpi=90)
  ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, 80),
            vmin=-80, vmax=0)
  if boundary_s is not None:
    ax.axvline(boundary_s, color="cyan", linewidth=2)
    ax.text(boundary_s, 76, " prompt | continuation", color="cyan", va="top", fontsize=9)
  ax.set_xlabel("seconds")
  ax.set_ylabel("mel bin")
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_report(out_dir: str, items: Sequence[dict], metrics: dict[str, Any], *,
                 sample_rate: int = 16000, title: str = "AudioLM demo") -> str:
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
                    f"{item['continuation'].size / sample_rate:.1f} s in all")
    players = "".join(
        f'<div class="player"><span>{label}</span><audio controls preload="auto" '
        f'src="{html.escape(path)}"></audio></div>' for label, path in files.items())
    caption = html.escape(item.get("text", ""))
    facts = "".join(f"<li>{html.escape(line)}</li>" for line in item.get("facts", ()))
    facts = f'<ul class="facts">{facts}</ul>' if facts else ""
    rows.append(f'<section><h2>{html.escape(name)}</h2><p>{caption}</p>{facts}{players}'
                f'<img src="{html.escape(png)}" alt="spectrogram of {html.escape(name)}"></section>')
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2, default=float)
  metric_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
                        for k, v in flatten(metrics).items())
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
{''.join(rows)}
<h2>Metrics</h2><table>{metric_rows}</table>
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
