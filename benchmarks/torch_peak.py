"""The machine's fp32 matmul peak as torch measures it (run with the peer's Python).

    /tmp/audiolm-pytorch-venv/bin/python benchmarks/torch_peak.py --threads 2 > torch_peak.json

Same shape and rule as `benchmarks.timing.peak_matmul_gflops` (a 2048 square matmul, best of
5 after a warm-up), so the two frameworks' peaks on one machine can be set side by side: a
ratio between implementations means little if one framework reaches more of the machine.
Needs only torch and the standard library.
"""

import argparse
import json
import platform
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--n", type=int, default=2048)
  args = parser.parse_args()
  import torch
  torch.set_num_threads(args.threads)
  a = torch.ones(args.n, args.n)
  b = torch.ones(args.n, args.n)
  a @ b  # warm-up
  times = []
  for _ in range(5):
    t = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t)
  print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "peak_matmul_n": args.n,
                    "torch_peak_matmul_gflops": 2 * args.n ** 3 / min(times) / 1e9,
                    "python": platform.python_version()}))


if __name__ == "__main__":
  main()
