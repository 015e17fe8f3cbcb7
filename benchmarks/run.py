"""Runs the benchmarks, prints a table and writes JSON.

    python -m benchmarks.run --suite reference --json /tmp/ref.json
    python -m benchmarks.run --suite scaling          # curves + PNG plots
    python -m benchmarks.run --suite all

Every figure is a median over timed runs after compilation and warm-up (min, max and the
compile time are in the JSON). Each run is also appended under `benchmarks/results/` as
`<suite>-<date>-<device>.json` with the machine description and the jax version.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def reference_suite(peak: float) -> dict:
  from benchmarks import codec_bench, e2e_bench, lm_bench
  out = {}
  out.update(lm_bench.reference(peak, log=log))
  log("codec throughput (paper preset, batch 8 x 1 s)")
  out.update(codec_bench.throughput("paper"))
  out.update(codec_bench.stream_latency("paper"))
  log("codec training step (paper preset, batch 8 x 1 s)")
  out.update(codec_bench.train_step("paper"))
  log("end to end: cpu presets, 3 s prompt continued to 10 s")
  out.update(e2e_bench.continuation())
  return out


def scaling_suite(out_dir: str) -> dict:
  from benchmarks import codec_bench, lm_bench, plots
  out = lm_bench.scaling(log=log)
  out["codec_vs_seconds"] = codec_bench.scaling(log=log)
  out["plots"] = plots.write_scaling_plots(out, out_dir)
  return out


SUMMARY_KEYS = (
    "peak_matmul_gflops",
    "semantic_train_step_s", "coarse_train_step_s", "fine_train_step_s",
    "semantic_train_tok_per_s", "coarse_train_tok_per_s", "fine_train_tok_per_s",
    "semantic_train_mfu", "coarse_train_mfu", "fine_train_mfu",
    "coarse_train_full_vocab_step_s", "fine_train_full_vocab_step_s",
    "semantic_sample_tok_per_s", "coarse_sample_tok_per_s", "fine_sample_tok_per_s",
    "semantic_sample_b8_tok_per_s", "coarse_sample_b8_tok_per_s", "fine_sample_b8_tok_per_s",
    "semantic_sample_nocache_tok_per_s", "coarse_sample_nocache_tok_per_s",
    "fine_sample_nocache_tok_per_s",
    "codec_encode_audio_s_per_s", "codec_decode_audio_s_per_s", "codec_roundtrip_audio_s_per_s",
    "codec_train_step_s", "codec_stream_frame_latency_ms", "e2e_continuation_10s_wall_s",
)


def print_table(results: dict) -> None:
  for key in SUMMARY_KEYS:
    if key in results:
      value = results[key]
      text = f"{value:.4g}" if isinstance(value, (int, float)) and value is not None else str(value)
      print(f"{key:<40} {text}")
  if "sampling" in results:
    print(f"{'generated':>10} {'cached ms/tok':>14} {'uncached ms/tok':>16}")
    for row in results["sampling"]:
      nocache = row.get("nocache_s_per_token")
      print(f"{row['generated']:>10} {1000 * row['cached_s_per_token']:>14.3f} "
            f"{'' if nocache is None else f'{1000 * nocache:.3f}':>16}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="audiolm-jax benchmarks")
  parser.add_argument("--suite", choices=("reference", "scaling", "all"), default="reference")
  parser.add_argument("--json", help="also write the results to this file")
  parser.add_argument("--no_save", action="store_true",
                      help="do not append the run under benchmarks/results/")
  args = parser.parse_args(argv)

  from benchmarks.timing import machine, peak_matmul_gflops
  started = time.time()
  results = {"suite": args.suite, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "machine": machine()}
  results.update(peak_matmul_gflops())
  log(f"peak matmul: {results['peak_matmul_gflops']:.1f} GFLOP/s")
  if args.suite in ("reference", "all"):
    results.update(reference_suite(results["peak_matmul_gflops"]))
  if args.suite in ("scaling", "all"):
    results.update(scaling_suite(RESULTS_DIR))
  results["wall_s"] = time.time() - started
  print_table(results)
  write_results(results, args.suite, args.json, save=not args.no_save)
  return 0


def write_results(results: dict, kind: str, path: str | None, *, save: bool) -> None:
  """Writes `results` as JSON to `path` (if given) and, with `save`, a copy named
  `<kind>-<date>-<device>.json` under `benchmarks/results/`."""
  text = json.dumps(results, indent=2, default=float)
  if path:
    with open(path, "w") as f:
      f.write(text)
  if save:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    device = results["machine"].get("device", "cpu").replace(" ", "_")
    stamp = results["date"][:19].replace(":", "")
    with open(os.path.join(RESULTS_DIR, f"{kind}-{stamp}-{device}.json"), "w") as f:
      f.write(text)


if __name__ == "__main__":
  sys.exit(main())
