"""Long inputs in bounded memory: windowed semantic and acoustic tokenization up to an hour.

    python -m benchmarks.long_inputs [--w2v_bert RUN --tokenizer DIR] [--codec RUN]
        [--minutes 1,5,20,60] [--json OUT.json]

For each length, one subprocess tokenizes a clip of that length (speech-like synthetic audio)
and reports its peak resident memory (`ru_maxrss`) and tokens per second, so memory that
grows with the length shows as a slope. Without trained parts the `cpu` presets are used at
random initialisation (same shapes and cost; agreement figures then describe an untrained
model, whose attention is diffuse: the worst case). Agreement with whole-clip tokenization is
measured on 2-minute clips: the share of equal ids, and the features' relative error by
distance to the nearest window seam. Also: a 20-minute 48 kHz stereo file read and resampled
to 16 kHz (streamed), and its acoustic codes.

Results go to `benchmarks/results/long_inputs-<date>-<device>.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
  """Voiced harmonics with gliding pitch, gaps and noise, made in 10 s pieces (no large
  temporaries)."""
  rng = np.random.default_rng(seed)
  n = int(seconds * rate)
  out = np.empty(n, np.float32)
  phase = 0.0
  for a in range(0, n, 10 * rate):
    t = np.arange(a, min(n, a + 10 * rate)) / rate
    f0 = 140 * (1 + 0.3 * np.sin(2 * np.pi * 0.37 * t)) * (1 + 0.1 * np.sin(2 * np.pi * 2.1 * t))
    ph = phase + 2 * np.pi * np.cumsum(f0) / rate
    phase = float(ph[-1])
    voiced = sum(np.sin(k * ph) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * 2.7 * t) + 0.5 * np.sin(2 * np.pi * 0.23 * t) > -0.3)
    out[a:a + len(t)] = 0.25 * voiced * gate + 0.02 * rng.standard_normal(len(t))
  return out


def load_parts(w2v_bert: str | None, tokenizer_dir: str | None, codec_run: str | None):
  """(semantic tokenizer, codec, what they are): trained parts where given, else the cpu
  presets at random initialisation."""
  import jax
  from audiolm_jax import pretrained
  from audiolm_jax.codec import soundstream
  from audiolm_jax.config import load_config
  from audiolm_jax.semantic import tokenizer as tok
  from audiolm_jax.semantic import w2v_bert as w2v
  what = {}
  if tokenizer_dir:
    semantic = pretrained.load_semantic_tokenizer(tokenizer_dir, w2v_bert)
    what["semantic"] = f"trained: {tokenizer_dir} ({w2v_bert or 'its w2v-BERT'})"
  else:
    config = load_config("w2v_bert.py:cpu")
    mc = w2v.W2VBertConfig.from_config(config.model, config.compute_dtype)
    params = jax.jit(w2v.init_params, static_argnums=0)(mc, jax.random.key(0))
    layer = int(config.tokenizer.layer)
    extractor = w2v.feature_extractor(mc, params, layer)
    rng = np.random.default_rng(0)
    k = int(config.tokenizer.num_clusters)
    semantic = tok.SemanticTokenizer(extractor, np.zeros(mc.dim), np.ones(mc.dim),
                                     rng.normal(size=(k, mc.dim)))
    what["semantic"] = f"w2v_bert.py:cpu at random init, layer {layer}, {k} random centroids"
  if codec_run:
    codec = pretrained.load_codec(codec_run)
    what["codec"] = f"trained: {codec_run}"
  else:
    import flax.linen as nn
    config = load_config("codec.py:cpu")
    cfg = soundstream.CodecConfig.from_dict(config.model)
    variables = jax.tree.map(np.asarray, nn.unbox(soundstream.init(cfg, jax.random.key(0))))
    variables["vq_stats"]["quantizer"]["initialized"] = np.array(True)
    codec = soundstream.Codec(cfg, variables)
    what["codec"] = "codec.py:cpu at random init"
  return semantic, codec, what


def child(args) -> None:
  """One measurement in this (fresh) process; prints one JSON line."""
  import resource
  import time
  from audiolm_jax import tokenize
  from audiolm_jax.data.audio import load_audio
  if args.child in ("semantic", "acoustic"):
    semantic, codec, _ = load_parts(args.w2v_bert, args.tokenizer, args.codec)
  out: dict = {}
  if args.child == "baseline":  # The imports alone (jax, the package): subtract from the rest.
    pass
  elif args.child == "semantic":
    wav = speech_like(args.seconds)
    t = time.perf_counter()
    ids = tokenize.semantic_tokens(semantic, [wav], batch_size=4,
                                   chunk_seconds=tokenize.SEMANTIC_CHUNK_SECONDS
                                   if args.windowed else 0)[0]
    dt = time.perf_counter() - t
    out = {"seconds": args.seconds, "tokens": int(len(ids)), "wall_s": round(dt, 2),
           "tokens_per_s": round(len(ids) / dt, 1), "audio_s_per_s": round(args.seconds / dt, 1)}
  elif args.child == "acoustic":
    wav = speech_like(args.seconds)
    t = time.perf_counter()
    codes = tokenize.acoustic_tokens(codec, [wav], batch_size=4)[0]
    dt = time.perf_counter() - t
    out = {"seconds": args.seconds, "frames": int(len(codes)), "wall_s": round(dt, 2),
           "audio_s_per_s": round(args.seconds / dt, 1)}
  elif args.child == "resample":
    t = time.perf_counter()
    wav = load_audio(args.path, 16000)
    out = {"seconds": round(len(wav) / 16000, 1), "wall_s": round(time.perf_counter() - t, 2)}
  out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  print(json.dumps(out), flush=True)


def run_child(kind: str, args, **extra) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.long_inputs", "--child", kind]
  for flag in ("w2v_bert", "tokenizer", "codec"):
    if getattr(args, flag):
      cmd += [f"--{flag}", getattr(args, flag)]
  for k, v in extra.items():
    cmd += [f"--{k}", str(v)]
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
  if result.returncode:
    raise RuntimeError(f"{kind} {extra}: {result.stderr.strip().splitlines()[-1:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def agreement(args, minutes: float = 2.0) -> dict:
  """Windowed vs whole-clip semantic tokens and features on clips of `minutes`: synthetic
  speech-like audio, and real speech (utterances of --audio_dir joined) when given.

  Two floors come with it: the share of ids that change when only masked padding is added
  after the clip (so not the windows' doing), and the features' error in the normalised
  space that k-means sees (raw-feature error hides dimensions of small variance, which the
  normalisation magnifies)."""
  import glob
  from audiolm_jax import tokenize
  from audiolm_jax.data.audio import load_audio
  semantic, _, _ = load_parts(args.w2v_bert, args.tokenizer, args.codec)
  spf = semantic.samples_per_frame
  mean, std = np.asarray(semantic.mean), np.asarray(semantic.std)
  clips = [(f"synthetic {seed}", speech_like(60 * minutes, seed=seed)) for seed in range(2)]
  if args.audio_dir:
    files = sorted(glob.glob(os.path.join(args.audio_dir, "**", "*.flac"), recursive=True)
                   + glob.glob(os.path.join(args.audio_dir, "**", "*.wav"), recursive=True))
    joined, n = [], 0
    for f in files:
      joined.append(load_audio(f))
      n += len(joined[-1])
      if n >= 2 * 16000 * 60 * minutes:
        break
    real = np.concatenate(joined)
    half = int(16000 * 60 * minutes)
    clips += [(f"real speech {i}", real[i * half:(i + 1) * half]) for i in range(2)
              if len(real) >= (i + 1) * half]
  rows = []
  for name, wav in clips:
    whole_f = tokenize.semantic_features(semantic.extractor, [wav], chunk_seconds=0)[0]
    win_f = tokenize.semantic_features(semantic.extractor, [wav])[0]
    whole = tokenize.semantic_tokens(semantic, [wav], chunk_seconds=0)[0]
    win = tokenize.semantic_tokens(semantic, [wav])[0]
    padded = tokenize.semantic_tokens(
        semantic, [np.concatenate([wav, np.zeros(16000 * 7, np.float32)])],
        chunk_seconds=0)[0][:len(whole)]
    zw, zc = (whole_f - mean) / std, (win_f - mean) / std
    err = np.linalg.norm(zc - zw, axis=1) / np.maximum(np.linalg.norm(zw, axis=1), 1e-9)
    raw = np.linalg.norm(win_f - whole_f, axis=1) / np.maximum(
        np.linalg.norm(whole_f, axis=1), 1e-9)
    chunk = int(round(tokenize.SEMANTIC_CHUNK_SECONDS * 16000 / spf))
    seams = np.arange(chunk, len(whole), chunk)
    dist = np.min(np.abs(np.arange(len(whole))[:, None] - seams[None, :]), axis=1)
    bands = {}
    for a, b in ((0, 5), (5, 25), (25, 125), (125, 10**9)):
      sel = (dist >= a) & (dist < b)
      if np.any(sel):
        bands[f"{a}-{b if b < 10**9 else 'end'}"] = {
            "normalised_feature_rel_error": float(err[sel].mean()),
            "equal_ids": float(np.mean(win[sel] == whole[sel]))}
    rows.append({"clip": name, "equal_ids": float(np.mean(win == whole)),
                 "equal_ids_padding_only": float(np.mean(padded == whole)),
                 "normalised_feature_rel_error_mean": float(err.mean()),
                 "raw_feature_rel_error_mean": float(raw.mean()),
                 "by_frames_from_seam": bands})
  return {"clip_minutes": minutes, "rows": rows}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--w2v_bert", default=None)
  p.add_argument("--tokenizer", default=None)
  p.add_argument("--codec", default=None)
  p.add_argument("--minutes", default="1,5,20,60")
  p.add_argument("--audio_dir", default=None,
                 help="real speech for the agreement figures (e.g. LibriSpeech flac files)")
  p.add_argument("--only_agreement", action="store_true",
                 help="measure the agreement only and update it in --json")
  p.add_argument("--json", default=None)
  p.add_argument("--note", default="", help="said in the JSON (e.g. what else ran)")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)
  p.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
  p.add_argument("--path", default=None, help=argparse.SUPPRESS)
  p.add_argument("--windowed", type=int, default=1, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    child(args)
    return 0
  import jax
  from audiolm_jax import tokenize
  _, _, what = load_parts(args.w2v_bert, args.tokenizer, args.codec)
  if args.only_agreement:
    with open(args.json) as f:
      result = json.load(f)
    result["agreement"] = agreement(args)
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
    print(json.dumps(result["agreement"], indent=2))
    return 0
  minutes = [float(m) for m in args.minutes.split(",")]
  result = {"what": what, "note": args.note, "jax": jax.__version__,
            "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
            "windows": {"semantic_chunk_s": tokenize.SEMANTIC_CHUNK_SECONDS,
                        "semantic_context_s": tokenize.SEMANTIC_CONTEXT_SECONDS,
                        "acoustic_chunk_s": tokenize.ACOUSTIC_CHUNK_SECONDS,
                        "acoustic_context_s": tokenize.ACOUSTIC_CONTEXT_SECONDS}}
  def by_length(title, kind, lengths, **extra):
    print(f"{title}, by length:", file=sys.stderr)
    rows = []
    for m in lengths:
      rows.append(run_child(kind, args, seconds=60 * m, **extra))
      print(f"  {m:g} min: {rows[-1]}", file=sys.stderr)
    return rows

  result["semantic"] = by_length("semantic tokenization", "semantic", minutes)
  result["semantic_whole_clip"] = by_length(
      "semantic tokenization of the whole clip at once (before windows)", "semantic",
      (1, 2, 5), windowed=0)
  result["acoustic"] = by_length("acoustic tokenization", "acoustic", minutes)
  import soundfile as sf
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "long48k.flac")
    with sf.SoundFile(path, "w", 48000, 2) as f:
      for a in range(0, 20 * 60, 60):
        x = speech_like(60, 48000, seed=a)
        f.write(np.stack([x, 0.5 * x], axis=1))
    result["resample_20min_48k_stereo_flac"] = run_child("resample", args, path=path)
  result["baseline_rss_mb"] = run_child("baseline", args)["peak_rss_mb"]
  print(f"  resample: {result['resample_20min_48k_stereo_flac']}", file=sys.stderr)
  print("agreement with whole-clip tokens (2-minute clips):", file=sys.stderr)
  result["agreement"] = agreement(args)
  stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
  os.makedirs(RESULTS_DIR, exist_ok=True)
  path = args.json or os.path.join(RESULTS_DIR, f"long_inputs-{stamp}-{jax.default_backend()}.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
