"""`audiolm-jax generate`: AudioLM continuation / unconditional generation, and decoding.

    audiolm-jax generate --run W --prompt in.wav --seconds 10 --out out.wav [--seed S]
                         [--temperature T] [--top_k K] [--top_p P]
        Continues a prompt (or, without --prompt, generates unconditionally) with the three
        stages of a run directory W (the demo's layout: W/codec, W/w2v_bert,
        W/semantic_tokenizer, W/semantic_lm, W/coarse_lm, W/fine_lm; flags name parts kept
        elsewhere). Writes the audio and OUT.npz with every token stream. The sampling flags
        take one value for every stage or per stage: --temperature semantic=0.6,coarse=0.8
        (a stage left out keeps its default). --acoustic soundstorm makes every acoustic level
        with the SoundStorm of W/soundstorm (or --soundstorm DIR) in place of stages 2 + 3;
        it draws with the coarse temperature.
    audiolm-jax generate decode --codec RUN codes.npz out.wav [--n_q N] [--index I]
        SoundStream decoding of a codes file (`audiolm-jax tokenize acoustic`); with several
        clips in the file, clip i goes to out-i.wav unless --index picks one.
"""

from __future__ import annotations

import argparse

# Limits of `generate`: an hour of audio takes about an hour of sampling at the cpu presets
# (past it a typo such as 1e9 would run for years), and clips are sampled as one batch.
MAX_SECONDS = 3600.0
MAX_SAMPLES = 256


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "generate", help="continue a prompt with AudioLM (or generate unconditionally); decode codes",
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--run", metavar="W", help="run directory holding the trained parts")
  parser.add_argument("--prompt", metavar="IN.wav", help="prompt audio (omit: unconditional)")
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="length of the result, prompt included (default 10)")
  parser.add_argument("--out", metavar="OUT.wav", help="where to write the audio")
  parser.add_argument("--seed", type=int, default=0, help="sampling seed")
  parser.add_argument("--num_samples", type=int, default=1,
                      help="unconditional clips to generate (OUT-i.wav)")
  parser.add_argument("--temperature", metavar="T", default=None,
                      help="sampling temperature, 0 = greedy (default: each stage's, "
                      "0.6 / 0.8 / 0.6); or STAGE=T,... per stage")
  parser.add_argument("--top_k", metavar="K", default="0",
                      help="keep the K most likely ids (0 = off); or STAGE=K,...")
  parser.add_argument("--top_p", metavar="P", default="1",
                      help="nucleus sampling mass in (0, 1] (1 = off); or STAGE=P,...")
  parser.add_argument("--acoustic", choices=("stages", "soundstorm"), default="stages",
                      help="what makes the acoustic tokens: the coarse + fine stages (default) "
                      "or a SoundStorm")
  for part in ("codec", "w2v_bert", "semantic_tokenizer", "semantic_lm", "coarse_lm", "fine_lm",
               "soundstorm"):
    parser.add_argument(f"--{part}", metavar="DIR", help=f"the {part} (default: W/{part})")
  parser.set_defaults(func=_continue)
  sub = parser.add_subparsers(dest="generate_command", metavar="SUBCOMMAND")
  sub.required = False
  _register_decode(sub)


def _continue(args) -> int:
  import jax
  import numpy as np
  from audiolm_jax.audiolm import PARTS, SOUNDSTORM_PART, AudioLM, sampling_per_stage
  from audiolm_jax.data.audio import load_audio, write_wav
  from audiolm_jax.errors import ConfigError
  from audiolm_jax.commands import checks
  from audiolm_jax.paths import resolve
  from audiolm_jax.progress import StageProgress
  if not args.out:
    raise ConfigError("generate: --out OUT.wav is required (or use `generate decode`)")
  checks.seconds(args.seconds, "--seconds", maximum=MAX_SECONDS)
  checks.count(args.num_samples, "--num_samples", maximum=MAX_SAMPLES)
  for path in _output_paths(args.out, 1 if args.prompt else args.num_samples):
    checks.output_file(path, "--out")
  sampling = sampling_per_stage(
      temperature=_per_stage(args.temperature, float, "--temperature"),
      top_k=_per_stage(args.top_k, int, "--top_k"), top_p=_per_stage(args.top_p, float, "--top_p"))
  parts = {p: getattr(args, p) for p in (*PARTS, SOUNDSTORM_PART) if getattr(args, p)}
  needed = set(PARTS)
  if args.acoustic == "soundstorm":
    needed = needed - {"coarse_lm", "fine_lm"} | {SOUNDSTORM_PART}
  if not args.run and not needed <= set(parts):
    raise ConfigError("generate: give --run W (a run directory) or every part's flag")
  lm = AudioLM.from_run_dir(args.run or ".", parts, acoustic=args.acoustic)
  prompt = None if args.prompt is None else load_audio(args.prompt, lm.sample_rate)
  if prompt is not None and len(prompt) >= args.seconds * lm.sample_rate:
    raise ConfigError(f"--seconds {args.seconds:g}: not longer than the "
                      f"{len(prompt) / lm.sample_rate:.2f} s prompt (the length is the "
                      "result's, prompt included)")
  stages = StageProgress(total=5 if args.acoustic == "stages" else 4, desc="generate")
  out = lm.generate(prompt, seconds=args.seconds, rng=jax.random.key(args.seed),
                    batch_size=args.num_samples, progress=stages.advance, sampling=sampling)
  stages.close()
  paths = _output_paths(args.out, out.audio.shape[0])
  for wav, path in zip(out.audio, paths):
    write_wav(path, wav, lm.sample_rate)
    kind = (f"{len(prompt) / lm.sample_rate:.1f} s prompt continued" if prompt is not None
            else "unconditional")
    print(f"{kind}: {len(wav) / lm.sample_rate:.2f} s -> {resolve(path)}")
  stem = args.out[:-4] if args.out.lower().endswith(".wav") else args.out
  tokens = {"coarse": out.coarse, "fine": out.fine,
            "prompt_samples": np.int64(out.prompt_samples),
            "continuation_start": np.int64(out.continuation_start)}
  if out.semantic is not None:
    tokens["semantic"] = out.semantic
    tokens["semantic_tokens"] = out.semantic_tokens
  with resolve(f"{stem}.npz").open("wb") as f:
    np.savez(f, **tokens)
  return 0


def _per_stage(text: str | None, kind: type, flag: str):
  """"0.8" -> 0.8 for every stage; "semantic=0.6,coarse=0.8" -> {stage: value}."""
  from audiolm_jax.audiolm import STAGES
  from audiolm_jax.errors import ConfigError
  if text is None:
    return None
  try:
    if "=" not in text:
      return kind(text)
    out = {}
    for item in text.split(","):
      stage, _, value = item.partition("=")
      if stage.strip() not in STAGES:
        raise ConfigError(f"{flag}: stages are {', '.join(STAGES)}, got {stage.strip()!r}")
      out[stage.strip()] = kind(value)
    return out
  except ValueError:
    raise ConfigError(f"{flag}: expected a {kind.__name__} or STAGE={kind.__name__},... "
                      f"(stages: {', '.join(STAGES)}), got {text!r}") from None


# --------------------------------------------------------------------------- decode


def _register_decode(sub) -> None:
  p = sub.add_parser(
      "decode", help="decode acoustic codes to a wav with a trained codec",
      description="Decode a codes file written by `audiolm-jax tokenize acoustic` with the "
      "SoundStream decoder of a trained codec; each clip is cut to its original length. With "
      "several clips in the file, clip i is written to OUT-i.wav (OUT without .wav) unless "
      "--index picks one.")
  p.add_argument("codes", metavar="CODES.npz", help="a codes file")
  p.add_argument("out", metavar="OUT.wav", help="the wav to write")
  p.add_argument("--codec", required=True, metavar="RUN",
                 help="a trained codec: its workdir, checkpoints/ or a step directory")
  p.add_argument("--n_q", type=int, default=None, metavar="N",
                 help="decode only the first N levels (a lower bitrate; default: all stored)")
  p.add_argument("--index", type=int, default=None, metavar="I",
                 help="decode only clip I of the file")
  p.add_argument("--batch_size", type=int, default=8, metavar="B", help="clips decoded together")
  p.set_defaults(func=_decode)


def _output_paths(out: str, count: int) -> list[str]:
  """`out` for one clip, else `out-0.wav`, `out-1.wav`, ..."""
  if count == 1:
    return [out]
  stem = out[:-len(".wav")] if out.lower().endswith(".wav") else out
  return [f"{stem}-{i}.wav" for i in range(count)]


def _decode(args) -> int:
  # pylint: disable=g-import-not-at-top
  from audiolm_jax import paths, pretrained, tokenize
  from audiolm_jax.data.audio import write_wav
  from audiolm_jax.errors import ConfigError, DataError
  from audiolm_jax.formats import AcousticCodes
  # pylint: enable=g-import-not-at-top
  from audiolm_jax.commands import checks
  codes = AcousticCodes.load(args.codes)
  n_out = 1 if args.index is not None else len(codes.codes)
  for path in _output_paths(args.out, n_out):
    checks.output_file(path, "OUT.wav")
  codec = pretrained.load_codec(args.codec)
  stored = codes.num_levels
  made_by = (codes.codebook_size, codes.sample_rate, codes.frame_rate)
  if made_by != (codec.config.codebook_size, codec.sample_rate, codec.frame_rate):
    raise DataError(f"{args.codes}: codes of a codec with {made_by[0]} codes per level at "
                    f"{made_by[1]} Hz, {made_by[2]:g} frames/s; --codec has "
                    f"{codec.config.codebook_size} at {codec.sample_rate} Hz, "
                    f"{codec.frame_rate:g} frames/s")
  n_q = stored if args.n_q is None else args.n_q
  if not 1 <= n_q <= min(stored, codec.num_quantizers):
    raise ConfigError(f"--n_q={n_q}: the file holds {stored} levels and the codec has "
                      f"{codec.num_quantizers}")
  clips = range(len(codes.codes))
  if args.index is not None:
    if args.index not in clips:
      raise ConfigError(f"--index {args.index}: the file holds {len(clips)} clip(s)")
    clips = [args.index]
  wavs = tokenize.decode_clips(codec, [codes.codes[i][:, :n_q] for i in clips],
                                 args.batch_size)
  for i, wav, path in zip(clips, wavs, _output_paths(args.out, len(wavs))):
    wav = wav[:codes.num_samples[i]]
    write_wav(path, wav, codec.sample_rate)
    print(f"{codes.paths[i]}: {len(wav) / codec.sample_rate:.2f} s at "
          f"{codec.bitrate(n_q):.0f} bps -> {paths.resolve(path)}")
  return 0
