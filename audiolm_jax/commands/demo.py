"""`audiolm-jax demo`: the main job on the built-in data, end to end (what `make demo` runs).

Builds the built-in speech corpus, trains the codec, pre-trains w2v-BERT, fits the semantic
tokenizer, tokenizes the corpus into a token cache, trains the three stage Transformers, and
continues held-out 3 s prompts to 10 s. Writes `RUN_DIR/report.html` (audio players and
spectrograms), the wavs, PNGs and `metrics.json`. Every part lands in its own subdirectory of
the run directory, and a re-run reuses finished parts (trainers resume from their checkpoints).
"""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger("audiolm_jax.demo")


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "demo", help="run the main job end to end on the built-in data",
      description="Build the built-in speech corpus, train every part (codec, w2v-BERT, "
      "k-means, the three stages) with short budgets, continue held-out prompts and write "
      "RUN_DIR/report.html. Budgets are in experiments/configs/demo.py (override with "
      "--config.codec_steps=... etc.); re-running reuses finished parts.")
  parser.add_argument("--config", default="demo.py:cpu",
                      help="demo config and variant (default: demo.py:cpu)")
  parser.add_argument("--run_dir", default="runs/demo", help="where every part and the report go")
  parser.add_argument("--data_dir", default=None,
                      help="where corpora live (default: $AUDIOLM_DATA_DIR or ./data)")
  parser.add_argument("--workers", type=int, default=None, help="processes for the corpus build")
  parser.set_defaults(func=_demo)


class _Demo:
  def __init__(self, cfg, run_dir: str, data_dir: str | None, workers: int):
    from audiolm_jax.data.corpora.base import default_data_dir
    self.cfg = cfg
    self.run_dir = os.path.abspath(run_dir)
    self.data_dir = os.path.abspath(data_dir or default_data_dir())
    self.workers = workers
    self.metrics: dict = {"config": cfg.to_dict(), "seconds": {}}
    os.makedirs(self.run_dir, exist_ok=True)

  def part(self, name: str) -> str:
    return os.path.join(self.run_dir, name)

  def timed(self, name: str, fn):
    t0 = time.time()
    print(f"[demo] {name} ...", flush=True)
    out = fn()
    self.metrics["seconds"][name] = round(time.time() - t0, 1)
    print(f"[demo] {name}: {self.metrics['seconds'][name]:.0f} s", flush=True)
    return out

  def cli(self, *args: str) -> None:
    from audiolm_jax import cli
    from audiolm_jax.errors import AudioLMError
    rc = cli.main(list(args))
    if rc:
      raise AudioLMError(f"demo step failed (exit {rc}): audiolm-jax {' '.join(args)}")

  def train(self, config: str, workdir: str, steps: int, *overrides: str) -> dict:
    """Trains (or resumes, or finds finished) one part; returns its last metrics line."""
    every = max(1, steps // 2)
    self.cli("train", "--config", config, "--workdir", workdir,
             f"--config.total_steps={steps}", f"--config.checkpoint_every={every}",
             f"--config.eval_every={every}", *overrides)
    return _last_metrics(workdir)

  # ---------------------------------------------------------------------------- the steps

  def corpus(self):
    from audiolm_jax.data import corpora
    c = self.cfg
    summary = corpora.build(c.corpus, size=c.corpus_size, data_dir=self.data_dir,
                            workers=self.workers)
    stats = corpora.stats(c.corpus, self.data_dir, c.corpus_size)
    self.metrics["corpus"] = {"hours": stats["total_hours"],
                              "speakers": stats["speakers_or_pieces"],
                              "skipped_at_build": summary["skipped"]}

  def data_overrides(self) -> tuple[str, ...]:
    return (f"--config.data.data_dir={self.data_dir}",
            f"--config.data.config_name={self.cfg.corpus_size}")

  def codec(self):
    self.metrics["codec"] = self.train(f"codec.py:{self.cfg.preset}", self.part("codec"),
                                       self.cfg.codec_steps, *self.data_overrides())

  def w2v_bert(self):
    self.metrics["w2v_bert"] = self.train(f"w2v_bert.py:{self.cfg.preset}", self.part("w2v_bert"),
                                          self.cfg.w2v_bert_steps, *self.data_overrides())

  def tokenizer(self):
    out = self.part("semantic_tokenizer")
    if not os.path.exists(os.path.join(out, "semantic_tokenizer.npz")):
      self.cli("tokenize", "fit-kmeans", "--w2v_bert", self.part("w2v_bert"), "--out", out,
               "--steps", str(self.cfg.kmeans_steps), "--config",
               f"w2v_bert.py:{self.cfg.preset}", *self.data_overrides())
    with open(os.path.join(out, "semantic_tokenizer.json")) as f:
      self.metrics["semantic_tokenizer"] = {
          k: v for k, v in json.load(f).items() if isinstance(v, (int, float, str))}

  def token_cache(self):
    from audiolm_jax.codec.task import load_codec
    from audiolm_jax.data import tokens
    from audiolm_jax.semantic.task import load_semantic_tokenizer
    cache = self.part("tokens")
    if not tokens.has_token_cache(cache):
      codec = load_codec(self.part("codec"))
      tokenizer = load_semantic_tokenizer(self.part("semantic_tokenizer"), self.part("w2v_bert"))
      limit = self.cfg.max_token_examples
      summary = tokens.tokenize_corpus(
          cache, corpus=self.cfg.corpus, splits=tuple(self.cfg.token_splits), codec=codec,
          semantic_tokenizer=tokenizer, data_dir=self.data_dir, config_name=self.cfg.corpus_size,
          max_examples=None if limit < 0 else limit)
      self.metrics["token_cache"] = {k: v for k, v in summary.items() if k != "path"}

  def stages(self):
    """The three stages on the token cache, their vocabularies read from the trained parts
    (so a stage always matches the codec and tokenizer it will be used with)."""
    from audiolm_jax.codec.task import load_codec
    from audiolm_jax.semantic.task import load_semantic_tokenizer
    codec = load_codec(self.part("codec"))
    tokenizer = load_semantic_tokenizer(self.part("semantic_tokenizer"), self.part("w2v_bert"))
    k_semantic, k_acoustic = tokenizer.num_clusters, codec.config.codebook_size
    common = (f"--config.data.tokens_dir={self.part('tokens')}",
              f"--config.batch_size={self.cfg.stage_batch_size}")
    p = self.cfg.preset
    self.metrics["semantic_lm"] = self.train(
        f"semantic_lm.py:{p}", self.part("semantic_lm"), self.cfg.semantic_lm_steps, *common,
        f"--config.stage.codebook_size={k_semantic}")
    self.metrics["coarse_lm"] = self.train(
        f"coarse_lm.py:{p}", self.part("coarse_lm"), self.cfg.coarse_lm_steps, *common,
        f"--config.stage.semantic_codebook_size={k_semantic}",
        f"--config.stage.acoustic_codebook_size={k_acoustic}")
    self.metrics["fine_lm"] = self.train(
        f"fine_lm.py:{p}", self.part("fine_lm"), self.cfg.fine_lm_steps, *common,
        f"--config.stage.acoustic_codebook_size={k_acoustic}",
        f"--config.stage.num_quantizers={codec.num_quantizers}")

  def continuations(self):
    import jax
    import numpy as np
    from audiolm_jax.audiolm import AudioLM
    from audiolm_jax.data import corpora
    from audiolm_jax.data.audio import from_int16
    from audiolm_jax.report import write_report
    c = self.cfg
    lm = AudioLM.from_run_dir(self.run_dir)
    rate = lm.sample_rate
    source = corpora.data_source(c.corpus, c.prompt_split, self.data_dir, c.corpus_size)
    prompt_len = int(c.prompt_seconds * rate)
    # Held-out utterances long enough to cut a prompt from, one per speaker where possible.
    chosen, speakers = [], set()
    for i in range(len(source)):
      ex = source[i]
      if len(ex["audio"]) >= prompt_len + rate // 4 and int(ex.get("speaker_id", -1)) not in speakers:
        chosen.append(ex)
        speakers.add(int(ex.get("speaker_id", -1)))
      if len(chosen) == c.num_prompts:
        break
    items, checks = [], []
    t0 = time.time()
    for n, ex in enumerate(chosen):
      original = from_int16(ex["audio"])
      prompt = original[:prompt_len]
      out = lm.generate(prompt, seconds=c.total_seconds, rng=jax.random.key(c.seed + n),
                        progress=lambda msg: print(f"[demo]   {msg}", flush=True))
      semantic, codes = lm.tokenize(prompt[None])
      t50 = codes.shape[1]
      checks.append(bool(np.array_equal(out.coarse[0, :t50], codes[0, :t50, :out.coarse.shape[2]])
                         and (semantic is None or np.array_equal(out.semantic[0, :semantic.shape[1]],
                                                                 semantic[0]))))
      text = ex["transcript"].decode() if "transcript" in ex else ""
      items.append({"name": f"prompt{n}", "prompt": prompt, "continuation": out.audio[0],
                    "original": original,
                    "text": f"speaker {int(ex.get('speaker_id', -1))}: “{text}” (the continuation "
                            f"is generated from the first {c.prompt_seconds:g} s)"})
    self.metrics["generation"] = {
        "prompts": len(items), "prompt_seconds": c.prompt_seconds,
        "total_seconds": c.total_seconds,
        "seconds_per_continuation": round((time.time() - t0) / max(1, len(items)), 1),
        "prompt_tokens_kept_as_prefix": all(checks)}
    self.metrics["report"] = write_report(self.run_dir, items, self.metrics, sample_rate=rate,
                                          title="audiolm-jax demo: speech continuation")


def _last_metrics(workdir: str) -> dict:
  path = os.path.join(workdir, "metrics.jsonl")
  last, last_eval = {}, {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        if row.get("split") == "eval":
          last_eval = row
        elif "loss" in row:
          last = row
  keep = lambda row: {k: v for k, v in row.items() if isinstance(v, (int, float))}
  return {"last_train": keep(last), "last_eval": keep(last_eval)}


def _demo(args) -> int:
  from audiolm_jax.config import load_config
  cfg = load_config(args.config, args.config_overrides)
  demo = _Demo(cfg, args.run_dir, args.data_dir, args.workers or os.cpu_count() or 1)
  t0 = time.time()
  demo.timed("corpus", demo.corpus)
  demo.timed("codec", demo.codec)
  demo.timed("w2v_bert", demo.w2v_bert)
  demo.timed("semantic_tokenizer", demo.tokenizer)
  demo.timed("token_cache", demo.token_cache)
  demo.timed("stages", demo.stages)
  demo.metrics["seconds"]["total_before_generation"] = round(time.time() - t0, 1)
  demo.timed("continuations", demo.continuations)
  demo.metrics["seconds"]["total"] = round(time.time() - t0, 1)
  with open(os.path.join(demo.run_dir, "metrics.json"), "w") as f:
    json.dump(demo.metrics, f, indent=2, default=float)
  print(f"[demo] done in {demo.metrics['seconds']['total'] / 60:.1f} min: "
        f"{demo.metrics['report']}")
  return 0
