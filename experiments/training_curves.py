"""Training curves of a run: chosen metrics of `metrics.jsonl` against the step, train and eval.

    python experiments/training_curves.py --run runs/codec \
        --metrics loss/reconstruction,codebook/dead_fraction_q7 \
        --out experiments/results/codec_training.png

Each metric gets a panel: the train values (a running mean over `--smooth` logged points, the raw
values faint behind) and the eval values as markers. Every metric the run logged is listed
with `--list`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def read_metrics(run_dir: str) -> list[dict]:
  """The rows of `<run_dir>/metrics.jsonl` as one history (rows a restart redid are dropped)."""
  from audiolm_jax.train.metrics import read_jsonl  # pylint: disable=g-import-not-at-top
  if not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
    raise FileNotFoundError(f"{run_dir}/metrics.jsonl: no metrics (is {run_dir} a training "
                            "workdir?)")
  rows = {}
  for row in read_jsonl(run_dir, None):
    rows[(row.get("split", "train"), row["step"])] = row
  return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1]))]


def series(rows: list[dict], split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of `key` in the rows of `split`."""
  pts = [(r["step"], r[key]) for r in rows
         if r.get("split", "train") == split and isinstance(r.get(key), (int, float))]
  if not pts:
    return np.zeros(0), np.zeros(0)
  steps, values = zip(*pts)
  return np.asarray(steps), np.asarray(values, np.float64)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
  if window <= 1 or len(values) < window:
    return values
  kernel = np.ones(window) / window
  head = np.cumsum(values[:window - 1]) / np.arange(1, window)
  return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot(rows: list[dict], metrics: list[str], out: str, title: str, smooth: int) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = min(3, len(metrics))
  nrows = -(-len(metrics) // cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
  for ax, key in zip(axes.ravel(), metrics):
    steps, values = series(rows, "train", key)
    if len(steps):
      ax.plot(steps, values, color="C0", alpha=0.25, lw=0.8)
      ax.plot(steps, running_mean(values, smooth), color="C0", label="train")
    steps, values = series(rows, "eval", key)
    if len(steps):
      ax.plot(steps, values, "o-", color="C3", label="eval")
    ax.set(title=key, xlabel="step")
    ax.legend(fontsize=8)
  for ax in axes.ravel()[len(metrics):]:
    ax.axis("off")
  fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=90)
  plt.close(fig)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--run", required=True, help="a training workdir (with metrics.jsonl)")
  p.add_argument("--metrics", default="loss", help="comma-separated metric names")
  p.add_argument("--out", default=None, help="PNG to write (default: <run>/training_curves.png)")
  p.add_argument("--title", default=None)
  p.add_argument("--smooth", type=int, default=5, help="running mean over this many points")
  p.add_argument("--list", action="store_true", help="list the logged metrics and exit")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  try:
    rows = read_metrics(args.run)
  except (FileNotFoundError, json.JSONDecodeError, KeyError) as e:
    print(f"training_curves: error: {e}", file=sys.stderr)
    return 1
  logged = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float))}
                  - {"step", "time"})
  if args.list:
    print("\n".join(logged))
    return 0
  metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
  unknown = [m for m in metrics if m not in logged]
  if not metrics or unknown:
    print(f"training_curves: error: unknown metrics {unknown}; --list shows the logged ones",
          file=sys.stderr)
    return 1
  out = args.out or os.path.join(args.run, "training_curves.png")
  plot(rows, metrics, out, args.title or os.path.basename(os.path.normpath(args.run)),
       args.smooth)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
