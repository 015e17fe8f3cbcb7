"""`audiolm-jax tokenize acoustic`: SoundStream codes of audio files.

    audiolm-jax tokenize acoustic --codec RUN in.wav [more.wav ...] --out codes.npz [--n_q N]

Each file is read (any rate or channels: resampled to the codec's rate, mono), padded by the
frame rule shared with the semantic tokens (`tokenize.acoustic_tokens`: 2 acoustic frames per
25 Hz semantic frame) and encoded. The npz (load with allow_pickle=False) holds `codes` int32
[N, T, n_q] padded with -1, `num_frames` [N], `num_samples` [N], `paths` [N] and the codec's
`codebook_size`, `sample_rate` and `frame_rate`; `audiolm-jax generate decode` turns it back
into audio.

The `tokenize` group (`commands/tokenize.py`) adds this subcommand with `add_subcommand(sub)`.
"""

from __future__ import annotations


def add_subcommand(sub) -> None:
  """Adds `acoustic` to the subparsers `sub` of the `tokenize` group."""
  p = sub.add_parser(
      "acoustic", help="SoundStream codes of audio files (50 Hz, Q levels)",
      description="Encode audio files (any rate or channels: resampled to the codec's rate, "
      "mono) with a trained codec, padded by the frame rule shared with the semantic tokens (2 "
      "acoustic frames per 25 Hz semantic frame). Writes an npz (load with allow_pickle=False): "
      "codes int32 [N, T, n_q] padded with -1, num_frames [N], num_samples [N], paths [N], "
      "codebook_size, sample_rate, frame_rate. `audiolm-jax generate decode` plays it back.")
  p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files")
  p.add_argument("--codec", required=True, metavar="RUN",
                 help="a trained codec: its workdir, checkpoints/ or a step directory")
  p.add_argument("--n_q", type=int, default=None, metavar="N",
                 help="keep the first N quantizer levels (default: all of the codec's)")
  p.add_argument("--batch_size", type=int, default=8, metavar="B", help="files encoded together")
  p.add_argument("--out", required=True, metavar="CODES.npz", help="output file")
  p.set_defaults(func=_acoustic)


def _acoustic(args) -> int:
  # pylint: disable=g-import-not-at-top
  from audiolm_jax import pretrained, tokenize
  from audiolm_jax.data.audio import load_audio
  from audiolm_jax.errors import ConfigError
  from audiolm_jax.formats import AcousticCodes
  # pylint: enable=g-import-not-at-top
  from audiolm_jax.commands import checks
  checks.output_file(args.out, "--out")
  codec = pretrained.load_codec(args.codec)
  if args.n_q is not None and not 1 <= args.n_q <= codec.num_quantizers:
    raise ConfigError(f"--n_q={args.n_q}: the codec has 1 to {codec.num_quantizers} levels")
  wavs = [load_audio(p, codec.sample_rate) for p in args.paths]
  codes = tokenize.acoustic_tokens(codec, wavs, args.batch_size, n_q=args.n_q)
  result = AcousticCodes(
      codes=codes, num_samples=[len(w) for w in wavs], paths=list(args.paths),
      codebook_size=codec.config.codebook_size, sample_rate=codec.sample_rate,
      frame_rate=codec.frame_rate)
  result.save(args.out)
  for path, c in zip(args.paths, codes):
    print(f"{path}: {len(c)} frames x {c.shape[1]} levels")
  print(f"codes of {len(codes)} file(s) ({codec.bitrate(result.num_levels):.0f} bps) written "
        f"to {args.out}")
  return 0
