"""Ratios against audiolm-pytorch, from results measured on one machine in one sitting.

    python -m benchmarks.compare --ours OURS.json --peer PEER.json [--peer_peak TORCH.json]

`OURS.json` is a `benchmarks.run --suite reference` result, `PEER.json` the output of the
peer's driver (`bench_audiolm_pytorch.py`, kept outside this project) and `TORCH.json` the
output of `benchmarks/torch_peak.py` run with the peer's Python. `benchmarks/sitting.sh` runs
all three and this comparison back to back. Machines of one kind differ from session to
session by 2x or more, and not by the same factor for XLA and torch, so a ratio counts only
when both sides ran in the same sitting: the comparison refuses results whose CPU models differ
or that were made more than `--max_hours` apart.

Prints a markdown table and writes JSON (`--json`, and a copy under `benchmarks/results/`):
each figure's two values, the ratio (> 1: we are faster), the target and whether it is met,
beside the machine (CPU model, cores, both frameworks' measured matmul peaks).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import NamedTuple

from benchmarks.run import write_results

class Pair(NamedTuple):
  name: str
  ours: str  # key of our reference result
  peer: str  # key of the peer's `summary`
  unit: str
  higher_is_better: bool
  target: float  # the ratio the project aims for (issue 19)


PAIRS = (
    Pair("sampling semantic, batch 1, KV cache", "semantic_sample_tok_per_s",
         "semantic_sample_tok_per_s", "tok/s", True, 30.0),
    Pair("sampling coarse, batch 1, KV cache", "coarse_sample_tok_per_s",
         "coarse_sample_tok_per_s", "tok/s", True, 30.0),
    Pair("sampling fine, batch 1, KV cache", "fine_sample_tok_per_s", "fine_sample_tok_per_s",
         "tok/s", True, 30.0),
    Pair("sampling semantic, batch 1, no cache", "semantic_sample_nocache_tok_per_s",
         "semantic_sample_no_kv_cache_tok_per_s", "tok/s", True, 2.0),
    Pair("train step semantic, batch 8", "semantic_train_step_s", "semantic_train_step_s", "s",
         False, 2.0),
    Pair("train step coarse, batch 8", "coarse_train_step_s", "coarse_train_step_s", "s", False,
         2.0),
    Pair("train step fine, batch 8", "fine_train_step_s", "fine_train_step_s", "s", False, 2.0),
    Pair("codec encode, batch 8 x 1 s", "codec_encode_audio_s_per_s",
         "soundstream_encode_audio_s_per_s", "audio-s/s", True, 5.0),
    Pair("codec decode, batch 8 x 1 s", "codec_decode_audio_s_per_s",
         "soundstream_decode_audio_s_per_s", "audio-s/s", True, 5.0),
    Pair("codec round trip, batch 8 x 1 s", "codec_roundtrip_audio_s_per_s",
         "soundstream_roundtrip_audio_s_per_s", "audio-s/s", True, 5.0),
    Pair("codec training step, batch 8 x 1 s", "codec_train_step_s",
         "soundstream_train_generator_step_s", "s", False, 2.0),
)


def _load(path: str, what: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise SystemExit(f"benchmarks.compare: cannot read {what} {path}: {e}") from None


def compare(ours: dict, peer: dict, torch_peak: dict | None = None, *,
            max_hours: float = 6.0, peer_time: float | None = None) -> dict:
  """The comparison record (see the module docstring); raises SystemExit on a mismatch."""
  if "summary" not in peer:
    raise SystemExit("benchmarks.compare: the peer result has no 'summary' (is it the output "
                     "of bench_audiolm_pytorch.py?)")
  if ours.get("suite") not in ("reference", "all"):
    raise SystemExit("benchmarks.compare: our result is not a reference-suite run")
  summary = peer["summary"]
  ours_time = datetime.datetime.fromisoformat(ours["date"]).timestamp()
  if peer_time is not None and abs(peer_time - ours_time) > max_hours * 3600:
    raise SystemExit(f"benchmarks.compare: the two results were made "
                     f"{abs(peer_time - ours_time) / 3600:.1f} h apart (more than "
                     f"--max_hours={max_hours}): not one sitting")
  peer_cpu = (torch_peak or {}).get("cpu") or peer.get("library", {}).get("cpu")
  rows = []
  for pair in PAIRS:
    a, b = ours.get(pair.ours), summary.get(pair.peer)
    row = {"figure": pair.name, "unit": pair.unit, "ours": a, "peer": b, "target": pair.target,
           "ours_key": pair.ours, "peer_key": pair.peer}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
      row["ratio"] = a / b if pair.higher_is_better else b / a
      row["met"] = row["ratio"] >= pair.target
    rows.append(row)
  machine = dict(ours.get("machine", {}))
  machine["jax_peak_matmul_gflops"] = ours.get("peak_matmul_gflops")
  if torch_peak:
    machine["torch_peak_matmul_gflops"] = torch_peak.get("torch_peak_matmul_gflops")
    machine["torch_threads"] = torch_peak.get("threads")
  machine["peer_cpu_field"] = peer_cpu
  return {"date": ours["date"], "machine": machine,
          "peer": {"library": peer.get("library"), "config": peer.get("config"),
                   "total_wall_s": peer.get("total_wall_s")},
          "ours_wall_s": ours.get("wall_s"), "rows": rows,
          "met": sum(bool(r.get("met")) for r in rows),
          "short": [r["figure"] for r in rows if "ratio" in r and not r["met"]]}


def markdown(result: dict) -> str:
  m = result["machine"]
  peaks = f"JAX {m.get('jax_peak_matmul_gflops') or 0:.0f} GFLOP/s"
  if m.get("torch_peak_matmul_gflops"):
    peaks += f", torch {m['torch_peak_matmul_gflops']:.0f} GFLOP/s"
  lines = [f"Same sitting {result['date']}: {m.get('cpu')} x {m.get('cpu_count')} cores; fp32 "
           f"matmul peak {peaks}.", "",
           "| figure | audiolm-pytorch | audiolm-jax | ratio | target |", "|---|---|---|---|---|"]
  fmt = lambda v: "-" if not isinstance(v, (int, float)) else f"{v:.4g}"
  for r in result["rows"]:
    ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
    if "ratio" in r and not r["met"]:
      ratio = f"**{ratio}**"
    lines.append(f"| {r['figure']} ({r['unit']}) | {fmt(r['peer'])} | {fmt(r['ours'])} | "
                 f"{ratio} | {r['target']:g}x |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ours", required=True, help="benchmarks.run --suite reference JSON")
  parser.add_argument("--peer", required=True, help="bench_audiolm_pytorch.py output JSON")
  parser.add_argument("--peer_peak", help="benchmarks/torch_peak.py output JSON")
  parser.add_argument("--max_hours", type=float, default=6.0,
                      help="refuse results made further apart than this (file times)")
  parser.add_argument("--json", help="also write the comparison here")
  parser.add_argument("--no_save", action="store_true",
                      help="do not write a copy under benchmarks/results/")
  args = parser.parse_args(argv)
  ours, peer = _load(args.ours, "our result"), _load(args.peer, "the peer result")
  peak = _load(args.peer_peak, "the torch peak") if args.peer_peak else None
  result = compare(ours, peer, peak, max_hours=args.max_hours,
                   peer_time=os.path.getmtime(args.peer))
  result["peer_json"] = peer
  text = markdown(result)
  print(text)
  write_results(result, "compare", args.json, save=not args.no_save)
  return 0


if __name__ == "__main__":
  sys.exit(main())
