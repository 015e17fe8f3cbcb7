"""SoundStream quality against bitrate on held-out speech (SoundStream Fig. 5, AudioLM Sec. 5).

    python experiments/codec_bitrate.py --codec runs/codec --data_dir data [--max_utterances 100]

Every utterance of the `test` split of `synthetic_speech` (sentences never read in training) is
encoded once with all Q levels and decoded from the first n levels for each target bitrate.
n is the level count whose bitrate `codec.bitrate(n) = frame_rate * n * log2(K)` is nearest the
target (ties: fewer), clamped to [1, Q]; both n and the bitrate it gives are reported. With the
paper's codec (50 Hz, K = 1024: 500 bps per level) 1.5 / 3 / 6 kbps are 3 / 6 / 12 levels.

Metrics (`audiolm_jax/eval`), averaged over utterances: PESQ-WB, STOI, mel distance and SI-SNR
of the decoded audio against the original, and the corpus word error rate of pocketsphinx
against the transcripts. The original audio is the reference line: its WER is the recogniser's
own floor; its PESQ, STOI and mel distance against itself are the ceilings (SI-SNR is unbounded
there and not reported).

`--levels 2,4,8` adds level counts of its own (the cpu preset has 8 x 256 codes, 400 bps per
level, so its top rate is 3.2 kbps). The report also gives each level's **codebook usage** on
the held-out split (all Q levels, no dropout): the fraction of codes never chosen (dead) and the
perplexity of the code distribution.

Writes `codec_bitrate.json` and `codec_bitrate.png` (each metric against kbps, the original as
a horizontal line) to `--out_dir` (default experiments/results).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from audiolm_jax.codec.soundstream import Codec, CodecConfig
from audiolm_jax.codec.task import decode_clips, load_codec
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16
from audiolm_jax.errors import AudioLMError, ConfigError, DataError
from audiolm_jax.eval.asr import PocketSphinxASR, word_error_rate
from audiolm_jax.eval.quality import quality_metrics
from audiolm_jax.semantic.task import tokenize_waveforms
from audiolm_jax.train.checkpoint import find_step_dir

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
QUALITY = ("pesq", "stoi", "mel_distance", "si_snr")
# (key, axis label, higher is better) of every plotted metric.
PLOTTED = (("pesq", "PESQ-WB", True), ("stoi", "STOI", True),
           ("mel_distance", "mel distance", False), ("si_snr", "SI-SNR (dB)", True),
           ("wer", "WER (pocketsphinx)", False))


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--codec", required=True, metavar="RUN", help="a trained codec workdir")
  p.add_argument("--kbps", default="1.5,3,6", help="target bitrates, comma-separated")
  p.add_argument("--corpus", default="synthetic_speech", help="a speech corpus with transcripts")
  p.add_argument("--split", default="test", help="the held-out split")
  p.add_argument("--data_dir", default=None, help="where corpora live")
  p.add_argument("--config_name", default=None, help="which build of the corpus (e.g. tiny)")
  p.add_argument("--max_utterances", type=int, default=0,
                 help="the first N utterances of the split (0 = all)")
  p.add_argument("--levels", default="",
                 help="level counts to evaluate besides the --kbps targets, comma-separated")
  p.add_argument("--batch_size", type=int, default=8, help="utterances encoded together")
  p.add_argument("--out_dir", default=RESULTS_DIR)
  return p.parse_args(argv)


def levels_for_bitrate(config: CodecConfig, bits_per_second: float) -> tuple[int, bool]:
  """`(n, clamped)`: the level count whose bitrate is nearest `bits_per_second` (ties: fewer),
  clamped to [1, Q]; `clamped` when the codec cannot come nearer the target."""
  nearest = math.ceil(bits_per_second / config.rvq.bits_per_second(1) - 0.5)
  n = max(1, min(config.num_quantizers, nearest))
  return n, n != nearest


def load_utterances(args) -> tuple[list[np.ndarray], list[str]]:
  """The first `max_utterances` waveforms of the split and their transcripts."""
  source = corpora.data_source(args.corpus, args.split, args.data_dir, args.config_name)
  n = len(source) if args.max_utterances <= 0 else min(args.max_utterances, len(source))
  wavs, transcripts = [], []
  for i in range(n):
    record = source[i]
    if "transcript" not in record:
      raise DataError(f"{args.corpus}/{args.split}: no transcripts (the WER needs them)")
    pcm = np.asarray(record["audio"])
    wavs.append(from_int16(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32))
    text = record["transcript"]
    transcripts.append(text.decode() if isinstance(text, bytes) else str(text))
  if not wavs:
    raise DataError(f"{args.corpus}/{args.split}: no utterances")
  return wavs, transcripts


def score(refs: list[np.ndarray], ests: list[np.ndarray], transcripts: list[str],
          asr: PocketSphinxASR, sample_rate: int) -> dict:
  """Mean quality metrics of `ests` against `refs`, and the WER of `ests` (floats, NaN-aware)."""
  per_clip = [quality_metrics(r, e, sample_rate) for r, e in zip(refs, ests)]
  out = {}
  for key in QUALITY:
    values = np.array([m[key] for m in per_clip], np.float64)
    out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
  out["pesq_undefined"] = int(np.sum(~np.isfinite([m["pesq"] for m in per_clip])))
  hypotheses = [asr.transcribe(e) for e in ests]
  out["wer"] = word_error_rate(transcripts, hypotheses)
  return out


def codebook_usage(codes: list[np.ndarray], codebook_size: int) -> list[dict]:
  """Per level: fraction of the K codes never used in `codes` ([T_i, Q] each) and the
  perplexity (exp entropy) of the code distribution."""
  stacked = np.concatenate(codes, axis=0)                                         # [T, Q]
  rows = []
  for q in range(stacked.shape[1]):
    counts = np.bincount(stacked[:, q], minlength=codebook_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    rows.append({"level": q, "dead_fraction": float(np.mean(counts == 0)),
                 "perplexity": float(np.exp(-np.sum(p * np.log(p))))})
  return rows


def evaluate(codec: Codec, wavs: list[np.ndarray], transcripts: list[str], targets_kbps,
             batch_size: int, extra_levels=()) -> dict:
  """Metrics at each target bitrate (and extra level count) and on the original audio."""
  hop = codec.config.hop_length
  asr = PocketSphinxASR(codec.sample_rate)
  codes = tokenize_waveforms(lambda wav, mask: codec.encode(wav), wavs, batch_size,
                             frames_of=lambda s: -(-s // hop))                   # [T_i, Q]
  targets = []
  for kbps in targets_kbps:
    n_q, clamped = levels_for_bitrate(codec.config, 1000 * kbps)
    targets.append({"target_kbps": kbps, "n_q": n_q, "bps": codec.bitrate(n_q),
                    "clamped": clamped})
  usage = codebook_usage(codes, codec.config.codebook_size)
  print("held-out dead codes per level: " + ", ".join(
      f"{u['dead_fraction']:.1%}" for u in usage))
  results = []
  for n_q in sorted({t["n_q"] for t in targets} | set(extra_levels)):
    start = time.time()
    decoded = decode_clips(codec, [c[:, :n_q] for c in codes], batch_size)
    decoded = [d[:len(w)] for d, w in zip(decoded, wavs)]
    row = {"n_q": n_q, "bps": codec.bitrate(n_q),
           **score(wavs, decoded, transcripts, asr, codec.sample_rate)}
    results.append(row)
    print(f"n_q={n_q:2d} ({row['bps'] / 1000:.2f} kbps): " + ", ".join(
        f"{k}={row[k]:.3f}" for k in (*QUALITY, "wer")) + f"  [{time.time() - start:.1f} s]")
  original = score(wavs, wavs, transcripts, asr, codec.sample_rate)
  original["si_snr"] = None  # Unbounded for identical signals.
  print("original: " + ", ".join(f"{k}={original[k]:.3f}" for k in ("pesq", "stoi", "wer")))
  return {"targets": targets, "results": results, "original": original,
          "codebook_usage": usage}


def _json_safe(x):
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def write_plot(report: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = report["results"]
  kbps = [r["bps"] / 1000 for r in rows]
  fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
  axes = axes.ravel()
  for ax, (key, label, higher) in zip(axes, PLOTTED):
    ax.plot(kbps, [r[key] if r[key] is not None else np.nan for r in rows], "o-",
            label="SoundStream")
    for x, r in zip(kbps, rows):
      if r[key] is not None:
        ax.annotate(f"{r['n_q']}q", (x, r[key]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    reference = report["original"].get(key)
    if reference is not None:
      ax.axhline(reference, color="C3", linestyle="--", label="original")
    ax.set(xlabel="kbps", title=f"{label} ({'higher' if higher else 'lower'} is better)")
    ax.legend(fontsize=8)
  table = axes[len(PLOTTED)]  # The last panel: which levels each target bitrate became.
  table.axis("off")
  lines = ["target    levels   bitrate"] + [
      f"{t['target_kbps']:>4g} kbps  {t['n_q']:>4d}   {t['bps'] / 1000:>5.2f} kbps"
      + ("  (clamped)" if t["clamped"] else "") for t in report["targets"]]
  table.text(0.0, 1.0, "\n".join(lines), family="monospace", va="top", fontsize=10)
  codec = report["codec"]
  fig.suptitle(f"SoundStream ({codec['num_quantizers']} x {codec['codebook_size']} codes, "
               f"{codec['frame_rate']:g} Hz, step {codec['step']}) on "
               f"{report['data']['corpus']}/{report['data']['split']}, "
               f"{report['data']['utterances']} utterances")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    try:
      targets_kbps = [float(x) for x in args.kbps.split(",") if x.strip()]
    except ValueError:
      raise ConfigError(f"--kbps {args.kbps!r}: expected numbers like 1.5,3,6") from None
    if not targets_kbps or min(targets_kbps) <= 0:
      raise ConfigError(f"--kbps {args.kbps!r}: give positive bitrates")
    try:
      extra_levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
      raise ConfigError(f"--levels {args.levels!r}: expected integers like 2,4,8") from None
    step_dir = find_step_dir(args.codec)
    codec = load_codec(step_dir)
    if codec.sample_rate != 16000:
      raise ConfigError(f"the codec runs at {codec.sample_rate} Hz; PESQ-WB and the corpora "
                        "are 16 kHz")
    bad = [n for n in extra_levels if not 1 <= n <= codec.num_quantizers]
    if bad:
      raise ConfigError(f"--levels {bad}: this codec has 1 to {codec.num_quantizers} levels")
    wavs, transcripts = load_utterances(args)
    print(f"{len(wavs)} utterances ({sum(map(len, wavs)) / 16000:.1f} s) of "
          f"{args.corpus}/{args.split}; {codec.bitrate(1):g} bps per level, "
          f"{codec.num_quantizers} levels")
    report = {
        "codec": {"checkpoint": step_dir, "step": int(os.path.basename(step_dir)),
                  "sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
                  "num_quantizers": codec.num_quantizers,
                  "codebook_size": codec.config.codebook_size,
                  "bps_per_level": codec.bitrate(1)},
        "data": {"corpus": args.corpus, "split": args.split, "config_name": args.config_name,
                 "utterances": len(wavs), "seconds": sum(map(len, wavs)) / 16000},
        **evaluate(codec, wavs, transcripts, targets_kbps, args.batch_size, extra_levels),
    }
  except AudioLMError as e:
    print(f"codec_bitrate: error: {e}", file=sys.stderr)
    return 1
  report = _json_safe(report)
  os.makedirs(args.out_dir, exist_ok=True)
  json_path = os.path.join(args.out_dir, "codec_bitrate.json")
  with open(json_path, "w") as f:
    json.dump(report, f, indent=2)
  png_path = os.path.join(args.out_dir, "codec_bitrate.png")
  write_plot(report, png_path)
  print(f"wrote {json_path} and {png_path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
