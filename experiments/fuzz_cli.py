"""Bad and odd inputs through every CLI entry point: one table of what each does.

    python experiments/fuzz_cli.py [--out experiments/results/fuzz_cli] [--only SUBSTRING]

Builds its fixtures in a temporary folder (the tiny built-in corpus, untrained tiny parts in
the trainer's checkpoint layout, a token cache, audio files broken in every way we know),
then runs each case as `python -m audiolm_jax ...` in a subprocess with a timeout. A case
expects either an error (exit 1 or 2, one `audiolm-jax: error:` line, no traceback, and,
where it matters, nothing written) or a correct handling (exit 0 and a check of the result).

Verdicts: `ok` (as expected), `traceback`, `hang` (the timeout), `wrong` (exit 0 where an
error was due, or a failed check of the result), `unclear` (an error, but not one line).
Writes `fuzz_cli.json` and `fuzz_cli.md` (the table) to --out; exits 1 unless every case is
`ok`.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "support"))  # `parts`: untrained tiny parts


@dataclasses.dataclass
class Case:
  name: str
  argv: list[str]
  expect: str                                  # "error" or "ok"
  match: str = ""                              # a substring the error line must hold
  check: Callable[[], str | None] | None = None  # after the run: None if right, else why not
  timeout: float = 300.0


@dataclasses.dataclass
class Outcome:
  case: str
  command: str
  exit_code: int | None
  first_line: str
  verdict: str
  seconds: float


# --------------------------------------------------------------------------- fixtures


def write(path, wav, rate=16000, subtype=None):
  import soundfile as sf
  os.makedirs(os.path.dirname(path), exist_ok=True)
  sf.write(path, wav, rate, subtype=subtype)
  return path


def tone(seconds, rate=16000, amp=0.3, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * rate)) / rate
  return (amp * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
          + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def make_audio(root: str) -> dict[str, str]:
  a = {}
  a["good"] = write(f"{root}/good.wav", tone(2.0))
  a["stereo48k"] = write(f"{root}/stereo48k.flac", np.stack([tone(2, 48000)] * 2, 1), 48000)
  a["loud_float"] = write(f"{root}/loud.wav", 3 * tone(2.0), subtype="FLOAT")
  a["empty"] = f"{root}/empty.wav"
  open(a["empty"], "wb").close()
  a["garbage"] = f"{root}/garbage.wav"
  with open(a["garbage"], "wb") as f:
    f.write(b"this is not audio" * 100)
  a["truncated"] = write(f"{root}/truncated.wav", tone(2.0))
  with open(a["truncated"], "r+b") as f:
    f.truncate(os.path.getsize(a["truncated"]) // 2)
  a["nan"] = write(f"{root}/nan.wav", np.where(np.arange(32000) % 100 == 0, np.nan,
                                               tone(2.0)).astype(np.float32), subtype="FLOAT")
  a["silent"] = write(f"{root}/silent.wav", np.zeros(32000, np.float32))
  a["dc"] = write(f"{root}/dc.wav", np.full(32000, 0.4, np.float32), subtype="FLOAT")
  a["short"] = write(f"{root}/short.wav", tone(0.1))
  a["odd_rate"] = write(f"{root}/odd_rate.wav", tone(2.0, 1000), 1000)
  a["missing"] = f"{root}/missing.wav"
  a["dir"] = f"{root}/adir.wav"
  os.makedirs(a["dir"])
  a["text_named_flac"] = f"{root}/notes.flac"
  with open(a["text_named_flac"], "w") as f:
    f.write("hello\n" * 50)
  return a


def build_fixtures(tmp: str) -> dict:
  from audiolm_jax.data import corpora
  from audiolm_jax.data.tokens import write_token_cache
  import parts
  fx = {"tmp": tmp}
  fx["data"] = os.path.join(tmp, "data")
  corpora.build("synthetic_speech", size="tiny", data_dir=fx["data"], workers=2)
  fx["run"] = os.path.join(tmp, "run")
  parts.make_run_dir(fx["run"])
  fx["audio"] = make_audio(os.path.join(tmp, "audio"))
  rng = np.random.default_rng(0)

  def utterances(n):
    for i in range(n):
      t = int(rng.integers(20, 36))
      yield {"semantic": rng.integers(0, 32, t), "acoustic": rng.integers(0, 32, (2 * t, 4))}

  fx["tokens"] = os.path.join(tmp, "tokens")
  write_token_cache(fx["tokens"], {"train": utterances(12), "validation": utterances(5)})
  fx["tokens_damaged"] = os.path.join(tmp, "tokens_damaged")
  shutil.copytree(fx["tokens"], fx["tokens_damaged"])
  build = glob.glob(os.path.join(fx["tokens_damaged"], "token_cache", "tokens", "*"))[0]
  with open(os.path.join(build, "features.json"), "w") as f:
    f.write("{not json")
  # A checkpoint with flipped bits, and codes files of every kind.
  fx["codec_flipped"] = os.path.join(tmp, "codec_flipped")
  shutil.copytree(os.path.join(fx["run"], "codec"), fx["codec_flipped"])
  files = [f for f in glob.glob(os.path.join(fx["codec_flipped"], "**", "*"), recursive=True)
           if os.path.isfile(f) and os.sep + "d" + os.sep in f]
  largest = max(files, key=os.path.getsize)
  data = bytearray(open(largest, "rb").read())
  for i in range(100, len(data), 997):
    data[i] ^= 0x10
  open(largest, "wb").write(bytes(data))
  fx["codes"] = os.path.join(tmp, "codes.npz")
  fx["pickled_npz"] = os.path.join(tmp, "pickled.npz")
  np.savez(fx["pickled_npz"], codes=np.array([{"a": 1}], dtype=object))
  fx["garbage_npz"] = os.path.join(tmp, "garbage.npz")
  with open(fx["garbage_npz"], "wb") as f:
    f.write(b"PK not really a zip")
  fx["file"] = os.path.join(tmp, "a_file")
  open(fx["file"], "w").close()
  fx["empty_dir"] = os.path.join(tmp, "empty_dir")
  os.makedirs(fx["empty_dir"])
  # A disk that fills during training: a 2 MiB tmpfs less 1.5 MB (root only; else skipped).
  fx["full_disk"] = os.path.join(tmp, "full_disk")
  os.makedirs(fx["full_disk"])
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", fx["full_disk"]],
                           capture_output=True).returncode == 0
  if mounted:
    with open(os.path.join(fx["full_disk"], "filler"), "wb") as f:
      f.write(b"\0" * 1_500_000)
  else:
    fx["full_disk"] = None
  return fx


# --------------------------------------------------------------------------- cases


def exists(path):
  return lambda: None if os.path.exists(path) else f"{path} was not written"


def absent(path):
  return lambda: None if not os.path.exists(path) else f"{path} was written"


def cases(fx: dict) -> list[Case]:
  a, t, run = fx["audio"], fx["tmp"], fx["run"]
  codec, tok = os.path.join(run, "codec"), os.path.join(run, "semantic_tokenizer")
  out = lambda name: os.path.join(t, "out", name)
  sem = ["train", "--config", "semantic_lm.py:tiny", f"--config.data.tokens_dir={fx['tokens']}",
         "--config.stage.codebook_size=32", "--config.progress_bar=false"]
  c: list[Case] = []
  # Audio files through `data check`, `tokenize acoustic` and `tokenize semantic`.
  bad_audio = {"empty": "empty", "garbage": "unreadable", "truncated": "truncated",
               "nan": "non-finite", "silent": "silent", "dc": "constant", "short": "too short",
               "odd_rate": "bad sample rate", "missing": "missing", "dir": "",
               "text_named_flac": "unreadable"}
  for kind, reason in bad_audio.items():
    c.append(Case(f"tokenize acoustic: {kind} audio",
                  ["tokenize", "acoustic", "--codec", codec, a[kind], "--out",
                   out(f"codes_{kind}.npz")], "error", reason,
                  absent(out(f"codes_{kind}.npz"))))
    c.append(Case(f"tokenize semantic: {kind} audio",
                  ["tokenize", "semantic", "--tokenizer", tok, a[kind], "--out",
                   out(f"ids_{kind}.npz")], "error", reason, absent(out(f"ids_{kind}.npz"))))
  c.append(Case("data check: a good file", ["data", "check", a["good"]], "ok"))
  for kind in ("good", "stereo48k", "loud_float"):
    c.append(Case(f"tokenize acoustic: {kind} audio", ["tokenize", "acoustic", "--codec", codec,
                                                       a[kind], "--out", out(f"c_{kind}.npz")],
                  "ok", check=exists(out(f"c_{kind}.npz"))))
  c.append(Case("tokenize acoustic: codes for decode", ["tokenize", "acoustic", "--codec", codec,
                                                        a["good"], "--out", fx["codes"]],
                "ok", check=exists(fx["codes"])))
  c.append(Case("tokenize acoustic: --n_q 0", ["tokenize", "acoustic", "--codec", codec,
                                               a["good"], "--n_q", "0", "--out", out("n.npz")],
                "error", "--n_q"))
  c.append(Case("tokenize acoustic: --out is a directory",
                ["tokenize", "acoustic", "--codec", codec, a["good"], "--out", fx["empty_dir"]],
                "error", "is a directory"))
  c.append(Case("tokenize acoustic: --out under a file",
                ["tokenize", "acoustic", "--codec", codec, a["good"], "--out",
                 os.path.join(fx["file"], "x.npz")], "error", "is a file"))
  c.append(Case("tokenize acoustic: --out under /proc (cannot be made)",
                ["tokenize", "acoustic", "--codec", codec, a["good"], "--out",
                 "/proc/audiolm/x.npz"], "error", "--out /proc/audiolm/x.npz: cannot make"))
  c.append(Case("tokenize acoustic: codec checkpoint with flipped bits",
                ["tokenize", "acoustic", "--codec", fx["codec_flipped"], a["good"], "--out",
                 out("flipped.npz")], "error", "", absent(out("flipped.npz"))))
  c.append(Case("tokenize acoustic: --codec missing", ["tokenize", "acoustic", "--codec",
                                                       os.path.join(t, "nope"), a["good"],
                                                       "--out", out("m.npz")],
                "error", "no checkpoint found"))
  c.append(Case("tokenize acoustic: --codec is a stage, not a codec",
                ["tokenize", "acoustic", "--codec", os.path.join(run, "fine_lm"), a["good"],
                 "--out", out("s.npz")], "error", "not a codec"))
  c.append(Case("tokenize semantic: --tokenizer missing",
                ["tokenize", "semantic", "--tokenizer", os.path.join(t, "nope"), a["good"],
                 "--out", out("i.npz")], "error", ""))
  c.append(Case("tokenize fit-kmeans: --out under /proc",
                ["tokenize", "fit-kmeans", "--features", "mfcc", "--config", "w2v_bert.py:tiny",
                 "--data_dir", fx["data"], "--out", "/proc/audiolm/tok"], "error",
                "--out /proc/audiolm/tok: cannot make"))
  c.append(Case("tokenize corpus: unbuilt corpus",
                ["tokenize", "corpus", "--codec", codec, "--tokenizer", tok, "--corpus",
                 "synthetic_piano", "--data_dir", fx["data"], "--out", out("cache")], "error", ""))
  c.append(Case("tokenize corpus: the tiny corpus",
                ["tokenize", "corpus", "--codec", codec, "--tokenizer", tok, "--corpus",
                 "synthetic_speech", "--data_dir", fx["data"], "--max_examples", "2", "--out",
                 out("cache")], "ok", check=exists(os.path.join(out("cache"),
                                                                "token_cache.json"))))
  # generate
  g = ["generate", "--run", run]
  for seconds in ("0", "-1", "nan", "inf", "1e9"):
    c.append(Case(f"generate --seconds {seconds}", g + ["--seconds", seconds, "--out",
                                                         out(f"g{seconds}.wav")],
                  "error", "--seconds", absent(out(f"g{seconds}.wav"))))
  c.append(Case("generate --seconds abc", g + ["--seconds", "abc", "--out", out("x.wav")],
                "error", "--seconds"))
  c.append(Case("generate --num_samples 0", g + ["--num_samples", "0", "--out", out("x.wav")],
                "error", "--num_samples"))
  c.append(Case("generate --out is a directory", g + ["--out", fx["empty_dir"]], "error",
                "is a directory"))
  c.append(Case("generate without --out", g, "error", "--out"))
  c.append(Case("generate --run missing", ["generate", "--run", os.path.join(t, "nope"),
                                           "--out", out("x.wav")], "error", ""))
  c.append(Case("generate --prompt garbage", g + ["--prompt", a["garbage"], "--seconds", "2",
                                                  "--out", out("p.wav")], "error", "unreadable",
                absent(out("p.wav"))))
  c.append(Case("generate --prompt longer than --seconds",
                g + ["--prompt", a["good"], "--seconds", "1", "--out", out("p.wav")], "error",
                "not longer than"))
  c.append(Case("generate: 2 s prompt continued to 2.5 s",
                g + ["--prompt", a["good"], "--seconds", "2.5", "--out", out("cont.wav")], "ok",
                check=exists(out("cont.wav"))))
  # generate decode
  d = ["generate", "decode", "--codec", codec]
  c.append(Case("decode: codes file", d + [fx["codes"], out("dec.wav")], "ok",
                check=exists(out("dec.wav"))))
  c.append(Case("decode: pickled object npz", d + [fx["pickled_npz"], out("pk.wav")], "error", "",
                absent(out("pk.wav"))))
  c.append(Case("decode: garbage npz", d + [fx["garbage_npz"], out("gz.wav")], "error", ""))
  c.append(Case("decode: missing codes file", d + [os.path.join(t, "nope.npz"), out("m.wav")],
                "error", ""))
  c.append(Case("decode: --n_q 99", d + [fx["codes"], out("q.wav"), "--n_q", "99"], "error",
                "--n_q"))
  c.append(Case("decode: --index 5 of 1", d + [fx["codes"], out("i.wav"), "--index", "5"],
                "error", "--index"))
  c.append(Case("decode: OUT.wav is a directory", d + [fx["codes"], fx["empty_dir"]], "error",
                "is a directory"))
  # train
  w = lambda name: os.path.join(t, "w", name)
  c.append(Case("train: unknown config file", ["train", "--config", "nope.py:tiny",
                                               "--workdir", w("a")], "error", "not found"))
  c.append(Case("train: unknown variant", ["train", "--config", "codec.py:huge", "--workdir",
                                           w("a")], "error", "unknown variant"))
  c.append(Case("train: unknown key", sem + ["--config.no_such_key=1", "--workdir", w("a")],
                "error", "no_such_key"))
  c.append(Case("train: wrongly typed value", sem + ["--config.total_steps=many", "--workdir",
                                                     w("a")], "error", "total_steps"))
  c.append(Case("train: NaN learning rate", sem + ["--config.optimizer.learning_rate=nan",
                                                   "--workdir", w("a")], "error", "finite"))
  c.append(Case("train: eval_every -1", sem + ["--config.eval_every=-1", "--workdir", w("a")],
                "error", "eval_every"))
  c.append(Case("train: batch_size 0", sem + ["--config.batch_size=0", "--workdir", w("a")],
                "error", "batch_size"))
  c.append(Case("train: missing eval split", sem + ["--config.data.eval_split=test",
                                                    "--config.total_steps=20", "--workdir",
                                                    w("split")], "error", "no split 'test'",
                absent(w("split") + "/config.json")))
  c.append(Case("train: tokens_dir missing", ["train", "--config", "semantic_lm.py:tiny",
                                              "--workdir", w("t")], "error", "tokens_dir"))
  c.append(Case("train: damaged token cache",
                ["train", "--config", "semantic_lm.py:tiny",
                 f"--config.data.tokens_dir={fx['tokens_damaged']}", "--workdir", w("d")],
                "error", "damaged"))
  c.append(Case("train: a file as workdir", sem + ["--workdir", fx["file"]], "error",
                "--workdir"))
  c.append(Case("train: --config.task imports nothing",
                sem + ["--config.task=antigravity:Task", "--workdir", w("m")], "error",
                "--task_module"))
  c.append(Case("train: unknown task", sem + ["--config.task=nope", "--workdir", w("m")],
                "error", "unknown task"))
  c.append(Case("train: 2 steps", sem + ["--config.total_steps=2", "--config.eval_every=2",
                                         "--workdir", w("ok")], "ok",
                check=exists(w("ok") + "/checkpoints/2")))
  c.append(Case("train: another task into that workdir",
                ["train", "--config", "fine_lm.py:tiny", f"--config.data.tokens_dir={fx['tokens']}",
                 "--config.progress_bar=false", "--workdir", w("ok")], "error", "holds a"))
  if fx["full_disk"]:
    c.append(Case("train: the disk fills up during checkpoints",
                  sem + ["--config.checkpoint_every=1", "--config.total_steps=40", "--workdir",
                         os.path.join(fx["full_disk"], "w")], "error",
                  "No space left on device"))
  # data, inspect
  c.append(Case("data build: unknown corpus", ["data", "build", "nope", "--data_dir",
                                               fx["data"]], "error", ""))
  c.append(Case("data build: bad --size", ["data", "build", "synthetic_speech", "--size",
                                           "huge", "--data_dir", fx["data"]], "error", ""))
  c.append(Case("data build: audio_folder without --source", ["data", "build", "audio_folder",
                                                              "--data_dir", fx["data"]],
                "error", ""))
  c.append(Case("data build: audio_folder of an empty folder",
                ["data", "build", "audio_folder", "--source", fx["empty_dir"], "--data_dir",
                 fx["data"]], "error", "no audio files"))
  c.append(Case("data build: audio_folder of bad files only",
                ["data", "build", "audio_folder", "--source", os.path.join(t, "audio_bad"),
                 "--data_dir", fx["data"]], "error", "no usable examples"))
  c.append(Case("data build: --data_dir is a file", ["data", "build", "synthetic_speech",
                                                     "--size", "tiny", "--data_dir",
                                                     fx["file"]], "error", "--data_dir"))
  c.append(Case("data stats: unbuilt corpus", ["data", "stats", "synthetic_piano", "--data_dir",
                                               fx["data"]], "error", ""))
  c.append(Case("inspect: missing checkpoint", ["inspect", os.path.join(t, "nope")], "error",
                "no checkpoint"))
  c.append(Case("inspect: bad --mesh", ["inspect", "--plan", "--config", "coarse_lm.py:paper",
                                        "--mesh", "4xq"], "error", "mesh"))
  c.append(Case("inspect: a codec checkpoint", ["inspect", codec], "ok"))
  c.append(Case("demo: bad --run_dir", ["demo", "--run_dir", fx["file"]], "error", "--run_dir"))
  c.append(Case("no command", [], "error", ""))
  return c


# --------------------------------------------------------------------------- running


def run_case(case: Case) -> Outcome:
  cmd = [sys.executable, "-m", "audiolm_jax", *case.argv]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  t0 = time.time()
  try:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=case.timeout, env=env,
                       cwd=os.path.dirname(REPO))
  except subprocess.TimeoutExpired:
    return Outcome(case.name, " ".join(case.argv), None, "", "hang", time.time() - t0)
  seconds = time.time() - t0
  err = [l for l in r.stderr.splitlines() if l.strip()]
  errors = [l for l in err if l.startswith("audiolm-jax") and ": error:" in l]
  first = errors[0] if errors else (err[-1] if err and r.returncode else
                                    (r.stdout.strip().splitlines() or [""])[-1])
  if "Traceback (most recent call last)" in r.stderr:
    verdict = "traceback"
  elif case.expect == "error":
    if r.returncode == 0:
      verdict = "wrong"
    elif len(errors) != 1 or case.match not in errors[0]:
      verdict = "unclear"
    else:
      verdict = "ok"
  else:
    verdict = "ok" if r.returncode == 0 else "wrong"
  if verdict == "ok" and case.check is not None:
    why = case.check()
    if why:
      verdict, first = "wrong", f"{first} [{why}]"
  return Outcome(case.name, " ".join(case.argv), r.returncode, first[:300], verdict, seconds)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", default=os.path.join(REPO, "experiments", "results", "fuzz_cli"))
  p.add_argument("--only", default="", help="run the cases whose name holds this")
  args = p.parse_args(argv)
  tmp = tempfile.mkdtemp(prefix="fuzz_cli_")
  try:
    print("building fixtures ...", flush=True)
    fx = build_fixtures(tmp)
    bad = os.path.join(tmp, "audio_bad")
    os.makedirs(bad)
    for kind in ("garbage", "empty", "silent"):
      shutil.copy(fx["audio"][kind], bad)
    outcomes = []
    for case in cases(fx):
      if args.only not in case.name:
        continue
      o = run_case(case)
      outcomes.append(o)
      print(f"{o.verdict:>9}  {o.exit_code!s:>4}  {o.case}: {o.first_line[:120]}", flush=True)
  finally:
    if os.path.ismount(os.path.join(tmp, "full_disk")):
      subprocess.run(["umount", os.path.join(tmp, "full_disk")], check=False)
    shutil.rmtree(tmp, ignore_errors=True)
  counts = {v: sum(o.verdict == v for o in outcomes)
            for v in ("ok", "traceback", "hang", "wrong", "unclear")}
  os.makedirs(args.out, exist_ok=True)
  tmp_prefix = tmp
  rows = [{**dataclasses.asdict(o), "command": o.command.replace(tmp_prefix, "$TMP"),
           "first_line": o.first_line.replace(tmp_prefix, "$TMP")} for o in outcomes]
  with open(os.path.join(args.out, "fuzz_cli.json"), "w") as f:
    json.dump({"counts": counts, "cases": rows}, f, indent=2)
  with open(os.path.join(args.out, "fuzz_cli.md"), "w") as f:
    f.write("# CLI fuzz: every case, its exit code, first line and verdict\n\n")
    f.write(f"`python experiments/fuzz_cli.py`: {len(rows)} cases; "
            + ", ".join(f"{k} {v}" for k, v in counts.items()) + "\n\n")
    f.write("| case | exit | first line | verdict |\n|---|---|---|---|\n")
    for r in rows:
      line = r["first_line"].replace("|", "\\|")
      f.write(f"| {r['case']} | {r['exit_code']} | `{line}` | {r['verdict']} |\n")
  print(json.dumps(counts))
  return 0 if counts["ok"] == len(outcomes) else 1


if __name__ == "__main__":
  sys.exit(main())
