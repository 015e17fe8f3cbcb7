"""`audiolm-jax tokenize`: fit tokenizers and turn audio into tokens.

    audiolm-jax tokenize fit-kmeans --w2v_bert RUN --out DIR [--layer L] [--num_clusters K]
        [--steps N] [--corpus C --data_dir D --config_name X]
        k-means on normalised features of w2v-BERT MLM layer L over the training split;
        settings default to the run's own config (its `tokenizer` and `data` groups).
    audiolm-jax tokenize fit-kmeans --features mfcc --out DIR [...]
        the GSLM-style baseline: k-means on MFCC + deltas (no w2v-BERT); settings default to
        --config (experiments/configs/w2v_bert.py:cpu).
    audiolm-jax tokenize semantic --tokenizer DIR [--w2v_bert RUN] in.wav [more.wav ...]
        --out ids.npz
        25 Hz semantic token ids of each file (npz, no pickle: `ids` [N, T] padded with -1,
        `num_frames` [N], `paths` [N]).
    audiolm-jax tokenize corpus --codec RUN --tokenizer DIR [--w2v_bert RUN] --corpus C
        [--config_name X] [--data_dir D] [--splits train,validation] [--chunk_size N]
        [--overwrite] [--coordinator_address H:P --num_processes N --process_id I] --out CACHE
        the token cache that the stage LMs train on (`--config.data.tokens_dir=CACHE`):
        every clip of the corpus splits through the codec and the semantic tokenizer, one
        chunk at a time (bounded memory); rerun the same command after a kill to resume; run
        it on every host (as `train`) to share the chunks among them.

`--config.tokenizer.KEY=VALUE` / `--config.data.KEY=VALUE` override any setting.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_CONFIG = "w2v_bert.py:cpu"


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "tokenize", help="fit the semantic tokenizer (k-means) and tokenize audio",
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="tokenize_command", metavar="SUBCOMMAND")
  sub.required = True
  _register_fit_kmeans(sub)
  _register_semantic(sub)
  _register_corpus(sub)
  from audiolm_jax.commands import tokenize_acoustic  # The codec's subcommand, kept apart.
  tokenize_acoustic.add_subcommand(sub)


# --------------------------------------------------------------------------- fit-kmeans


def _register_fit_kmeans(sub) -> None:
  p = sub.add_parser(
      "fit-kmeans", help="fit normalisation and k-means on w2v-BERT (or MFCC) features",
      description="Fit a semantic tokenizer: per-dimension mean/variance of the features over "
      "random crops of the training split, then mini-batch k-means. Writes "
      "semantic_tokenizer.npz/.json and fit_info.json (what it was fit on) to --out.")
  p.add_argument("--w2v_bert", default=None, metavar="RUN",
                 help="a trained w2v-BERT: its workdir, checkpoints/ or a step directory")
  p.add_argument("--features", default=None, choices=("w2v_bert", "mfcc"),
                 help="w2v_bert: layer features of --w2v_bert; mfcc: the GSLM-style baseline "
                 "(default: the config's tokenizer.features)")
  p.add_argument("--layer", type=int, default=None,
                 help="MLM-module block whose output is clustered (1-based; 0 = its input)")
  p.add_argument("--num_clusters", type=int, default=None, help="K, the vocabulary size")
  p.add_argument("--steps", type=int, default=None, help="mini-batch k-means steps")
  p.add_argument("--batch_size", type=int, default=None, help="crops per k-means step")
  p.add_argument("--corpus", default=None, help="corpus to fit on (default: the config's)")
  p.add_argument("--data_dir", default=None, help="where corpora live")
  p.add_argument("--config_name", default=None, help="which build of the corpus")
  p.add_argument("--config", default=None, metavar="FILE.py:VARIANT",
                 help="settings (tokenizer and data groups); default: the --w2v_bert run's "
                 f"config, else {DEFAULT_CONFIG}")
  p.add_argument("--seed", type=int, default=0, help="data order, crops and k-means seeding")
  p.add_argument("--out", required=True, metavar="DIR", help="where the tokenizer is written")
  p.set_defaults(func=_fit_kmeans)


def _fit_settings(args, model):
  """The config whose `tokenizer` and `data` groups drive the fit, flags applied."""
  from audiolm_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from audiolm_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  if args.config:
    cfg = config_lib.load_config(args.config, args.config_overrides)
  elif model is not None:
    cfg = config_lib.from_json(config_lib.to_json(model.run_config))
    config_lib.apply_overrides(cfg, args.config_overrides)
  else:
    cfg = config_lib.load_config(DEFAULT_CONFIG, args.config_overrides)
  if "tokenizer" not in cfg or "data" not in cfg:
    raise ConfigError("fit-kmeans: the config has no `tokenizer` or `data` group "
                      "(give --config experiments/configs/w2v_bert.py:VARIANT)")
  cfg.unlock()
  flags = {("tokenizer", "features"): args.features, ("tokenizer", "layer"): args.layer,
           ("tokenizer", "num_clusters"): args.num_clusters,
           ("tokenizer", "kmeans_steps"): args.steps,
           ("tokenizer", "batch_size"): args.batch_size, ("data", "corpus"): args.corpus,
           ("data", "data_dir"): args.data_dir, ("data", "config_name"): args.config_name}
  for (group, key), value in flags.items():
    if value is not None:
      cfg[group][key] = value
  return cfg


def _fit_kmeans(args) -> int:
  # pylint: disable=g-import-not-at-top
  from audiolm_jax import paths, pretrained
  from audiolm_jax.tasks import w2v_bert as w2v_bert_task
  # pylint: enable=g-import-not-at-top
  from audiolm_jax.commands import checks
  checks.output_dir(args.out, "--out")
  model = pretrained.load_w2v_bert(args.w2v_bert) if args.w2v_bert else None
  cfg = _fit_settings(args, model)
  tokenizer, info = w2v_bert_task.fit_and_save_tokenizer(
      cfg, model, args.out, seed=args.seed,
      announce=lambda msg: print(msg, flush=True))
  inertia = info["final_inertia"]
  print(f"tokenizer ({tokenizer.num_clusters} clusters"
        + (f", final inertia {inertia:.4g}" if inertia is not None else "")
        + f") written to {paths.resolve(args.out)}")
  return 0


# --------------------------------------------------------------------------- semantic


def _register_semantic(sub) -> None:
  p = sub.add_parser(
      "semantic", help="25 Hz semantic token ids of audio files",
      description="Tokenize audio files (any rate or channels: resampled to 16 kHz mono) with "
      "a fitted semantic tokenizer. Writes an npz (load with allow_pickle=False): ids int32 "
      "[N, T] padded with -1, num_frames int32 [N], paths str [N], num_clusters, "
      "samples_per_frame (formats.SemanticIds).")
  p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files")
  p.add_argument("--tokenizer", required=True, metavar="DIR", help="a fit-kmeans output")
  p.add_argument("--w2v_bert", default=None, metavar="RUN",
                 help="the w2v-BERT the tokenizer was fit on (default: the one it recorded)")
  p.add_argument("--batch_size", type=int, default=8, help="files tokenized together")
  p.add_argument("--out", required=True, metavar="IDS.npz", help="output file")
  p.set_defaults(func=_semantic)


def _semantic(args) -> int:
  # pylint: disable=g-import-not-at-top
  from audiolm_jax import pretrained, tokenize
  from audiolm_jax.data.audio import load_audio
  from audiolm_jax.formats import SemanticIds
  from audiolm_jax.frames import SAMPLE_RATE
  # pylint: enable=g-import-not-at-top
  from audiolm_jax.commands import checks
  checks.output_file(args.out, "--out")
  tokenizer = pretrained.load_semantic_tokenizer(args.tokenizer, args.w2v_bert)
  wavs = [load_audio(p, SAMPLE_RATE) for p in args.paths]
  ids = tokenize.semantic_tokens(tokenizer, wavs, args.batch_size)
  SemanticIds(ids=ids, paths=list(args.paths), num_clusters=tokenizer.num_clusters,
              samples_per_frame=tokenizer.samples_per_frame).save(args.out)
  for path, x in zip(args.paths, ids):
    print(f"{path}: {len(x)} frames")
  print(f"ids of {len(ids)} file(s) written to {args.out}")
  return 0


# --------------------------------------------------------------------------- corpus


def _register_corpus(sub) -> None:
  p = sub.add_parser(
      "corpus", help="the token cache of a corpus (what the stage LMs train on)",
      description="Tokenize corpus splits with a trained codec and semantic tokenizer and "
      "write them as a token cache (array_record, with token_cache.json: frame ratio and "
      "vocabularies, which the stage configs take from the cache). Unreadable records are "
      "skipped and counted. Each split is done in chunks of --chunk_size clips, one shard "
      "each: memory holds one chunk (about 64 kB per second of audio), and rerunning the "
      "same command after a kill resumes at the first unwritten chunk. With several "
      "processes (flags or JAX_* environment, as `train`), each tokenizes every N-th chunk "
      "and process 0 assembles the cache, which is the same as one process makes.")
  p.add_argument("--codec", required=True, metavar="RUN", help="a trained codec")
  p.add_argument("--tokenizer", required=True, metavar="DIR", help="a fit-kmeans output")
  p.add_argument("--w2v_bert", default=None, metavar="RUN",
                 help="the w2v-BERT run the tokenizer was fit on (default: recorded in it)")
  p.add_argument("--corpus", required=True, help="a built corpus, e.g. synthetic_speech or "
                 "audio_folder/NAME")
  p.add_argument("--config_name", default=None, help="which build of the corpus")
  p.add_argument("--data_dir", default=None,
                 help="where corpora live (default: $AUDIOLM_DATA_DIR or ./data)")
  p.add_argument("--splits", default="train,validation", help="comma-separated splits")
  p.add_argument("--batch_size", type=int, default=16, help="clips tokenized together")
  p.add_argument("--max_examples", type=int, default=None, metavar="N",
                 help="at most N clips per split")
  p.add_argument("--chunk_size", type=int, default=256, metavar="N",
                 help="clips per chunk (one shard each; the unit of resumption)")
  p.add_argument("--overwrite", action="store_true",
                 help="discard a half-built cache with other settings instead of refusing")
  p.add_argument("--coordinator_address", default=None, metavar="HOST:PORT",
                 help="multi-process: address of process 0's coordinator")
  p.add_argument("--num_processes", type=int, default=None, help="multi-process: how many")
  p.add_argument("--process_id", type=int, default=None, help="multi-process: this one's id")
  p.add_argument("--out", required=True, metavar="CACHE", help="the token cache directory")
  p.set_defaults(func=_corpus)


def _corpus(args) -> int:
  # jax.distributed must be initialised before anything touches a device.
  from audiolm_jax.train import distributed  # pylint: disable=g-import-not-at-top
  process = distributed.initialize(args.coordinator_address, args.num_processes,
                                   args.process_id)
  # pylint: disable=g-import-not-at-top
  from audiolm_jax import checkpoint_files, paths, pretrained
  from audiolm_jax.commands import checks
  from audiolm_jax.errors import ConfigError
  from audiolm_jax.tokenize import tokenize_corpus
  # pylint: enable=g-import-not-at-top
  checks.output_dir(args.out, "--out")
  checks.count(args.batch_size, "--batch_size", maximum=4096)
  checks.count(args.chunk_size, "--chunk_size", maximum=2**20)
  if args.max_examples is not None:
    checks.count(args.max_examples, "--max_examples", maximum=2**31 - 1)
  splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
  if not splits:
    raise ConfigError("--splits: name at least one split")
  codec = pretrained.load_codec(args.codec)
  tokenizer = pretrained.load_semantic_tokenizer(args.tokenizer, args.w2v_bert)
  # What the tokens are made of: a resumed build must use the same parts.
  settings = {"codec": checkpoint_files.find_step_dir(args.codec),
              "tokenizer": os.fspath(paths.resolve(args.tokenizer)),
              "semantic_vocab_size": tokenizer.num_clusters}
  barrier = None
  if process.count > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    barrier = multihost_utils.sync_global_devices
  summary = tokenize_corpus(args.out, corpus=args.corpus, splits=splits, codec=codec,
                            semantic_tokenizer=tokenizer, data_dir=args.data_dir,
                            config_name=args.config_name, batch_size=args.batch_size,
                            max_examples=args.max_examples, chunk_size=args.chunk_size,
                            process_index=process.index, process_count=process.count,
                            overwrite=args.overwrite, settings=settings, barrier=barrier)
  chunks = summary["chunks"]
  if process.index != 0:
    print(f"process {process.index}: {chunks['this_process']} chunk(s) tokenized "
          f"({chunks['resumed']} already done)")
    return 0
  for split, n in summary["splits"].items():
    print(f"  {split:<12} {n:>7} clips")
  print(f"token cache ({summary['skipped']} record(s) skipped; {chunks['total']} chunk(s), "
        f"{chunks['resumed']} resumed) written to {paths.resolve(args.out)}")
  return 0
