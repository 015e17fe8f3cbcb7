"""SoundStream quality against bitrate on held-out speech (SoundStream Fig. 5, AudioLM Sec. 5).

    python experiments/codec_bitrate.py --codec runs/codec_cpu --data_dir data \
        [--test_set synthetic_test=synthetic_speech:test] \
        [--test_set librispeech_test_other=audio_folder/librispeech_excerpts:test]

Every utterance of each test set is encoded once with all Q levels and decoded from the first
n levels, for every n = 1..Q (or those of `--levels`). Per level count: PESQ-WB, STOI, SI-SNR
and the mel distance (`eval/quality.py`) of the decoded audio against the original, each as a
mean over utterances with a 95% bootstrap interval, and each level's codebook usage on the
held-out audio (the share of codes never chosen, the perplexity of the code distribution).
The original audio is the ceiling (PESQ 4.64, STOI 1, mel distance 0; SI-SNR unbounded).
`--wer` adds the corpus word error rate of pocketsphinx on sets with transcripts.
`--diagnose` adds `pesq_true_magnitude` and `pesq_true_phase` to each row: PESQ of the decoded
audio with the original's STFT magnitudes, or its phases, put back (`eval.quality.stft_swaps`),
which tells whether the codec's spectra or its phase hold its PESQ down. A large lift from the
true magnitudes and none from the true phases means the spectra are wrong. It also adds an
`unquantized` entry per set: the same metrics of the decoder run on the encoder's unquantised
output (`Codec.reconstruct_unquantized`), the codec at an unlimited bitrate. If that is no
better than Q levels, the encoder and decoder limit the codec, not its bitrate.

Test sets default to the synthetic corpus's `test` split (sentences never read in training)
and, when that build exists, the real LibriSpeech `test-other` excerpts (8 speakers never
trained on; build them with `audiolm-jax data build audio_folder --source
../shared/data/librispeech_excerpts --layout librispeech --name librispeech_excerpts`).

Writes to `--out_dir` (default experiments/results): `codec_bitrate.json`
(`{"test_sets": {NAME: {"rows": [{n_q, kbps, pesq, stoi, si_snr, mel_distance, n, *_ci}]}}}`),
`codec_bitrate.png` (each metric against kbps, both sets), and with `--examples N` the
original and the codec at 1, Q/2 and Q levels of the first N utterances of each set as wavs
under `codec_examples/`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from audiolm_jax.checkpoint_files import find_step_dir
from audiolm_jax.data import corpora
from audiolm_jax.data.audio import from_int16, write_wav
from audiolm_jax.errors import AudioLMError, ConfigError, DataError, require_extra
from audiolm_jax.eval.quality import pesq_diagnosis, quality_metrics
from audiolm_jax.eval.speaker import bootstrap_ci
from audiolm_jax.pretrained import load_codec
from audiolm_jax.tokenize import decode_clips, run_by_length

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
QUALITY = ("pesq", "stoi", "si_snr", "mel_distance")
DIAGNOSIS = ("pesq_true_magnitude", "pesq_true_phase")
# (key, axis label, higher is better) of every plotted metric.
PLOTTED = (("pesq", "PESQ-WB", True), ("stoi", "STOI", True), ("si_snr", "SI-SNR (dB)", True),
           ("mel_distance", "mel distance", False))
DEFAULT_SETS = ("synthetic_test=synthetic_speech:test",
                "librispeech_test_other=audio_folder/librispeech_excerpts:test")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--codec", required=True, metavar="RUN", help="a trained codec workdir")
  p.add_argument("--test_set", action="append", default=[], metavar="NAME=CORPUS[/BUILD]:SPLIT",
                 help="a held-out set (repeatable); default: the synthetic test split and the "
                 "LibriSpeech test-other excerpts when built")
  p.add_argument("--data_dir", default=None, help="where corpora live")
  p.add_argument("--max_utterances", type=int, default=0,
                 help="the first N utterances of each set (0 = all)")
  p.add_argument("--levels", default="", help="level counts, comma-separated (default: 1..Q)")
  p.add_argument("--wer", action="store_true", help="also pocketsphinx's WER (slow)")
  p.add_argument("--diagnose", action="store_true",
                 help="also PESQ with the true STFT magnitudes / the true phases put back "
                      "(eval.quality.stft_swaps): which of the two limits the codec")
  p.add_argument("--examples", type=int, default=0,
                 help="write the first N utterances of each set at 1, Q/2 and Q levels")
  p.add_argument("--batch_size", type=int, default=8, help="utterances encoded together")
  p.add_argument("--out_dir", default=RESULTS_DIR)
  return p.parse_args(argv)


def parse_test_set(spec: str) -> tuple[str, str, str | None, str]:
  """`NAME=CORPUS[/BUILD]:SPLIT` -> (name, corpus, build, split)."""
  name, sep, rest = spec.partition("=")
  source, colon, split = rest.partition(":")
  corpus, _, build = source.partition("/")
  if not (sep and colon and name and corpus and split):
    raise ConfigError(f"--test_set {spec!r}: expected NAME=CORPUS[/BUILD]:SPLIT")
  return name, corpus, build or None, split


def load_set(corpus: str, build: str | None, split: str, data_dir: str | None,
             limit: int) -> tuple[list[np.ndarray], list[str]]:
  """Waveforms and transcripts ("" when none) of a split."""
  source = corpora.data_source(corpus, split, data_dir, build)
  n = len(source) if limit <= 0 else min(limit, len(source))
  wavs, texts = [], []
  for i in range(n):
    record = source[i]
    pcm = np.asarray(record["audio"])
    wavs.append(from_int16(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32))
    text = record.get("transcript", b"")
    texts.append(text.decode() if isinstance(text, bytes) else str(text))
  if not wavs:
    raise DataError(f"{corpus}/{split}: no utterances")
  return wavs, texts


def codebook_usage(codes: list[np.ndarray], codebook_size: int) -> list[dict]:
  """Per level: fraction of the K codes never used in `codes` ([T_i, Q] each) and the
  perplexity (exp entropy) of the code distribution."""
  stacked = np.concatenate(codes, axis=0)                                         # [T, Q]
  rows = []
  for q in range(stacked.shape[1]):
    counts = np.bincount(stacked[:, q], minlength=codebook_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    rows.append({"level": q + 1, "dead_fraction": float(np.mean(counts == 0)),
                 "perplexity": float(np.exp(-np.sum(p * np.log(p))))})
  return rows


def _summary(per_clip: list[dict], keys) -> dict:
  """Mean, 95% bootstrap interval and count of undefined values of each key over clips."""
  row = {}
  for key in keys:
    values = np.array([m[key] for m in per_clip], np.float64)
    finite = values[np.isfinite(values)]
    row[key] = float(finite.mean()) if finite.size else float("nan")
    row[f"{key}_ci"] = list(bootstrap_ci(finite))
    row[f"{key}_undefined"] = int(values.size - finite.size)
  return row


def _scores(wavs, decoded, rate: int, diagnose: bool) -> list[dict]:
  """Per clip: the quality metrics (and the diagnosis) of decoded against the original."""
  per_clip = [quality_metrics(w, d, rate) for w, d in zip(wavs, decoded)]
  if diagnose:
    for m, w, d in zip(per_clip, wavs, decoded):
      m.update(pesq_diagnosis(w, d, rate))
  return per_clip


def unquantized_row(codec, wavs, batch_size: int) -> dict:
  """The quality of the encoder and decoder with no quantiser: the bitrate's ceiling."""
  hop, rate = codec.config.hop_length, codec.sample_rate
  decoded = run_by_length(lambda wav, mask: codec.reconstruct_unquantized(wav), wavs,
                          batch_size, lambda s: s, unit=hop)
  return {"n": len(wavs), **_summary(_scores(wavs, decoded, rate, True), QUALITY + DIAGNOSIS)}


def evaluate_set(codec, wavs, texts, levels, batch_size, wer: bool,
                 examples: int = 0, example_dir: str | None = None, name: str = "",
                 diagnose: bool = False) -> dict:
  """Rows of quality per level count, codebook usage and (optionally) WER."""
  hop, rate = codec.config.hop_length, codec.sample_rate
  codes = run_by_length(lambda wav, mask: codec.encode(wav), wavs, batch_size,
                        lambda s: -(-s // hop), unit=hop)                        # [T_i, Q]
  asr = None
  if wer:
    from audiolm_jax.eval.asr import PocketSphinxASR  # pylint: disable=g-import-not-at-top
    asr = PocketSphinxASR(rate)
  rows = []
  saved = {1, max(1, codec.num_quantizers // 2), codec.num_quantizers}
  keys = QUALITY + (DIAGNOSIS if diagnose else ())
  for n_q in levels:
    start = time.time()
    decoded = [d[:len(w)] for d, w in zip(decode_clips(codec, [c[:, :n_q] for c in codes],
                                                       batch_size), wavs)]
    row = {"n_q": n_q, "kbps": codec.bitrate(n_q) / 1000, "n": len(wavs),
           **_summary(_scores(wavs, decoded, rate, diagnose), keys)}
    if asr is not None and any(texts):
      from audiolm_jax.eval.asr import word_error_rate  # pylint: disable=g-import-not-at-top
      row["wer"] = word_error_rate(texts, [asr.transcribe(d) for d in decoded])
    rows.append(row)
    print(f"  {name} n_q={n_q:2d} ({row['kbps']:.2f} kbps): " + ", ".join(
        f"{k}={row[k]:.3f}" for k in keys) + f"  [{time.time() - start:.0f} s]", flush=True)
    if example_dir and n_q in saved:
      for i in range(min(examples, len(wavs))):
        write_wav(os.path.join(example_dir, f"{name}_{i}_q{n_q}.wav"), decoded[i], rate)
  if example_dir:
    for i in range(min(examples, len(wavs))):
      write_wav(os.path.join(example_dir, f"{name}_{i}_original.wav"), wavs[i], rate)
  usage = codebook_usage(codes, codec.config.codebook_size)
  result = {"rows": rows, "codebook_usage": usage, "utterances": len(wavs),
            "seconds": float(sum(map(len, wavs)) / rate)}
  if diagnose:
    result["unquantized"] = unquantized_row(codec, wavs, batch_size)
    print(f"  {name} unquantized: " + ", ".join(
        f"{k}={result['unquantized'][k]:.3f}" for k in keys), flush=True)
  return result


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
  fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.8))
  for ax, (key, label, higher) in zip(axes, PLOTTED):
    for i, (name, result) in enumerate(report["test_sets"].items()):
      rows = result["rows"]
      kbps = [r["kbps"] for r in rows]
      mean = np.array([np.nan if r[key] is None else r[key] for r in rows])
      lo = np.array([np.nan if r[f"{key}_ci"][0] is None else r[f"{key}_ci"][0] for r in rows])
      hi = np.array([np.nan if r[f"{key}_ci"][1] is None else r[f"{key}_ci"][1] for r in rows])
      ax.plot(kbps, mean, "o-", color=f"C{i}", label=name)
      ax.fill_between(kbps, lo, hi, color=f"C{i}", alpha=0.2)
    ax.set(xlabel="kbps", title=f"{label} ({'higher' if higher else 'lower'} is better)")
    ax.legend(fontsize=7)
  codec = report["codec"]
  fig.suptitle(f"SoundStream {codec['num_quantizers']} x {codec['codebook_size']} codes, "
               f"{codec['frame_rate']:g} Hz, step {codec['step']} (95% bootstrap intervals)",
               fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    require_extra("eval", "codec_bitrate.py (PESQ, STOI)")
    require_extra("report", "codec_bitrate.py (its plot)")
    step_dir = find_step_dir(args.codec)
    codec = load_codec(step_dir)
    if codec.sample_rate != 16000:
      raise ConfigError(f"the codec runs at {codec.sample_rate} Hz; PESQ-WB needs 16 kHz")
    try:
      levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
      raise ConfigError(f"--levels {args.levels!r}: expected integers like 1,2,4") from None
    levels = sorted(set(levels)) or list(range(1, codec.num_quantizers + 1))
    bad = [n for n in levels if not 1 <= n <= codec.num_quantizers]
    if bad:
      raise ConfigError(f"--levels {bad}: this codec has 1 to {codec.num_quantizers} levels")
    specs = [(parse_test_set(s), True) for s in args.test_set] or [
        (parse_test_set(s), False) for s in DEFAULT_SETS]
    example_dir = os.path.join(args.out_dir, "codec_examples") if args.examples else None
    if example_dir:
      os.makedirs(example_dir, exist_ok=True)
    report = {"codec": {"checkpoint": step_dir, "step": int(os.path.basename(step_dir)),
                        "sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
                        "num_quantizers": codec.num_quantizers,
                        "codebook_size": codec.config.codebook_size,
                        "bps_per_level": codec.bitrate(1)},
              "test_sets": {}}
    for (name, corpus, build, split), explicit in specs:
      try:
        wavs, texts = load_set(corpus, build, split, args.data_dir, args.max_utterances)
      except DataError as e:
        if explicit:
          raise
        print(f"{name}: skipped ({e})")
        continue
      print(f"{name}: {len(wavs)} utterances ({sum(map(len, wavs)) / 16000:.0f} s) of "
            f"{corpus}{'/' + build if build else ''}/{split}", flush=True)
      result = evaluate_set(codec, wavs, texts, levels, args.batch_size, args.wer,
                            args.examples, example_dir, name, args.diagnose)
      result["source"] = {"corpus": corpus, "build": build, "split": split}
      report["test_sets"][name] = result
    if not report["test_sets"]:
      raise DataError("no test set could be read (build the corpora first)")
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
