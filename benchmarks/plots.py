"""PNG plots of the scaling curves, written next to the JSON."""

from __future__ import annotations

import os


def write_scaling_plots(results: dict, out_dir: str) -> list[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker
  os.makedirs(out_dir, exist_ok=True)
  paths = []

  def plain_ticks(ax, values):
    """Log x axis with a tick at each measured value, written as a plain number."""
    ax.set_xscale("log")
    ax.set_xticks(values)
    ax.set_xticklabels([f"{v:g}" for v in values])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())

  def save(fig, name):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)

  rows = results["sampling"]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot([r["generated"] for r in rows], [1000 * r["cached_s_per_token"] for r in rows], "o-",
          label=f"KV cache, one {rows[-1]['generated']}-token buffer (filled part read)")
  ax.plot([r["generated"] for r in rows], [1000 * r["cached_sized_s_per_token"] for r in rows],
          "^-", label="KV cache sized to each length")
  nocache = [r for r in rows if "nocache_s_per_token" in r]
  ax.plot([r["generated"] for r in nocache], [1000 * r["nocache_s_per_token"] for r in nocache],
          "s-", label="no cache (full prefix each step)")
  ax.set(yscale="log", xlabel="generated tokens", ylabel="ms per token",
         title="Sampling cost per token (semantic stage, batch 1)")
  plain_ticks(ax, [r["generated"] for r in rows])
  ax.legend()
  save(fig, "scaling_sampling.png")

  for key, x, title in (("train_vs_batch", "batch", "Training step vs. batch (coarse, 452 tok)"),
                        ("train_vs_length", "tokens", "Training step vs. length (coarse, b=4)")):
    rows = results[key]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r[x] for r in rows], [r["step_s"] for r in rows], "o-", label="step s")
    ax2 = ax.twinx()
    ax2.plot([r[x] for r in rows], [r["tokens_per_s"] for r in rows], "s--", color="C1",
             label="tokens/s")
    ax.set(xlabel=x, ylabel="seconds per step", title=title)
    plain_ticks(ax, [r[x] for r in rows])
    ax2.set_ylabel("tokens / s")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center left")
    save(fig, f"scaling_{key}.png")

  rows = results["codec_vs_seconds"]
  fig, ax = plt.subplots(figsize=(6, 4))
  for key, label in (("encode_audio_s_per_s", "encode"), ("decode_audio_s_per_s", "decode"),
                     ("roundtrip_audio_s_per_s", "round trip")):
    ax.plot([r["seconds"] for r in rows], [r[key] for r in rows], "o-", label=label)
  ax.set(xlabel="clip seconds (batch 8)", ylabel="audio seconds per second",
         title="Codec throughput vs. clip length (paper preset)")
  ax.legend()
  save(fig, "scaling_codec.png")
  return paths
