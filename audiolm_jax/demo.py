"""The main job on the built-in data, end to end (what `make demo` and `audiolm-jax demo` run).

    metrics = Demo(load_config("demo.py:cpu"), "runs/demo").run()

Builds the built-in speech corpus, trains the codec, pre-trains w2v-BERT, fits the semantic
tokenizer, tokenizes the corpus into a token cache, trains the three stage Transformers, and
continues held-out 3 s prompts to 10 s. Writes `RUN_DIR/report.html` (audio players,
spectrograms with the prompt boundary at its last whole token frame, and per prompt the
measured figures), the wavs, PNGs and `metrics.json`. Every part lands in its own
subdirectory of the run directory, and a re-run reuses finished parts (trainers resume from
their checkpoints).

Measured on the prompts (in `metrics.json` and the report):
- `codec_quality`: PESQ-WB, STOI and SI-SNR of the codec's resynthesis of each prompt's whole
  utterance (all levels), so the report says how good the acoustic tokens are;
- per continuation, the speaker similarity (cosine of Resemblyzer embeddings,
  `eval/speaker.py`) of the generated part to its own prompt and, with several prompts, to the
  other prompts;
- `prompt_audio_reproduced`: the generated clip's prompt part equals the codec's decoding of
  the prompt's codes (max |difference|): the prompt's tokens went through all three stages
  and the decoder to the right place, a check that fails when a hand-off is off by a frame.
  A decoder that looks ahead (Vocos: 0.57 s with the cpu preset's 8 blocks) makes the last
  `CodecConfig.decoder_lookahead` samples of the prompt part depend on the continuation, so
  they are left out.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import ml_collections
import numpy as np

from audiolm_jax import paths
from audiolm_jax.errors import require_extra
from audiolm_jax.progress import format_duration

log = logging.getLogger("audiolm_jax.demo")


def last_metrics(workdir: str) -> dict:
  """The last training and evaluation records of a run's `metrics.jsonl` (numbers only)."""
  from audiolm_jax.train.metrics import read_jsonl  # pylint: disable=g-import-not-at-top
  rows = read_jsonl(workdir, None)
  last = ([r for r in rows if r.get("split") == "train" and "loss" in r] or [{}])[-1]
  last_eval = ([r for r in rows if r.get("split") == "eval"] or [{}])[-1]
  keep = lambda row: {k: v for k, v in row.items()
                      if isinstance(v, (int, float)) and math.isfinite(v)}
  return {"last_train": keep(last), "last_eval": keep(last_eval)}


class Demo:
  """The demo's steps; `run()` does them all (see the module docstring)."""

  def __init__(self, cfg: ml_collections.ConfigDict, run_dir: str, data_dir: str | None = None,
               workers: int = 1, say=print):
    from audiolm_jax.data.corpora.base import default_data_dir
    self.cfg = cfg
    # The corpus build, the wavs and the report page write local files only.
    self.run_dir = paths.require_local(run_dir, "the demo's run_dir")
    self.data_dir = paths.require_local(data_dir or default_data_dir(), "the demo's data_dir")
    self.workers = workers
    self.say = say
    self.metrics: dict[str, Any] = {"config": cfg.to_dict(), "seconds": {}}
    os.makedirs(self.run_dir, exist_ok=True)

  def part(self, name: str) -> str:
    return os.path.join(self.run_dir, name)

  def timed(self, name: str, fn, index: int = 0, count: int = 0):
    """Runs one step, announced as "[demo] step 2/7: codec ..." and timed into `metrics`."""
    t0 = time.time()
    label = f"step {index}/{count}: {name}" if count else name
    self.say(f"[demo] {label} ...")
    out = fn()
    self.metrics["seconds"][name] = round(time.time() - t0, 1)
    total = sum(v for k, v in self.metrics["seconds"].items() if not k.startswith("total"))
    self.say(f"[demo] {label}: {self.metrics['seconds'][name]:.0f} s "
             f"(demo so far {format_duration(total)})")
    return out

  def train(self, spec: str, workdir: str, steps: int, **overrides) -> dict:
    """Trains (or resumes, or finds finished) one part; returns its last metrics."""
    import audiolm_jax.tasks  # noqa: F401  pylint: disable=unused-import
    from audiolm_jax.config import load_config
    from audiolm_jax.train.trainer import train
    every = max(1, steps // 2)
    pairs = {"total_steps": steps, "checkpoint_every": every, "eval_every": every, **overrides}
    train(load_config(spec, [(k, str(v)) for k, v in pairs.items()]), workdir)
    return last_metrics(workdir)

  def data_overrides(self) -> dict[str, str]:
    return {"data.data_dir": self.data_dir, "data.config_name": self.cfg.corpus_size}

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

  def codec(self):
    self.metrics["codec"] = self.train(f"codec.py:{self.cfg.preset}", self.part("codec"),
                                       self.cfg.codec_steps, **self.data_overrides())

  def w2v_bert(self):
    self.metrics["w2v_bert"] = self.train(f"w2v_bert.py:{self.cfg.preset}",
                                          self.part("w2v_bert"), self.cfg.w2v_bert_steps,
                                          **self.data_overrides())

  def tokenizer(self):
    from audiolm_jax import pretrained
    from audiolm_jax.config import apply_overrides, from_json, to_json
    from audiolm_jax.tasks.w2v_bert import fit_and_save_tokenizer
    out = self.part("semantic_tokenizer")
    if not os.path.exists(os.path.join(out, "semantic_tokenizer.npz")):
      model = pretrained.load_w2v_bert(self.part("w2v_bert"))
      cfg = from_json(to_json(model.run_config))
      apply_overrides(cfg, [("tokenizer.kmeans_steps", str(self.cfg.kmeans_steps))]
                      + list(self.data_overrides().items()))
      fit_and_save_tokenizer(cfg, model, out, announce=self.say)
    with open(os.path.join(out, "semantic_tokenizer.json")) as f:
      self.metrics["semantic_tokenizer"] = {
          k: v for k, v in json.load(f).items() if isinstance(v, (int, float, str))}

  def token_cache(self):
    from audiolm_jax import pretrained
    from audiolm_jax.data import tokens
    from audiolm_jax.tokenize import tokenize_corpus
    cache = self.part("tokens")
    if not tokens.has_token_cache(cache):
      codec = pretrained.load_codec(self.part("codec"))
      tokenizer = pretrained.load_semantic_tokenizer(self.part("semantic_tokenizer"),
                                                     self.part("w2v_bert"))
      limit = self.cfg.max_token_examples
      summary = tokenize_corpus(
          cache, corpus=self.cfg.corpus, splits=tuple(self.cfg.token_splits), codec=codec,
          semantic_tokenizer=tokenizer, data_dir=self.data_dir, config_name=self.cfg.corpus_size,
          max_examples=None if limit < 0 else limit)
      self.metrics["token_cache"] = {k: v for k, v in summary.items() if k != "path"}
    info = tokens.read_cache_info(cache)
    self.metrics.setdefault("token_cache", {})["frames_per_token"] = info.frames_per_token

  def stages(self):
    """The three stages on the token cache. Their vocabularies come from the cache
    (`config.data.sizes_from_cache`, the presets' default), so a stage always matches the codec
    and tokenizer it will be used with."""
    common = {"data.tokens_dir": self.part("tokens"), "batch_size": self.cfg.stage_batch_size}
    p = self.cfg.preset
    for name in ("semantic_lm", "coarse_lm", "fine_lm"):
      self.metrics[name] = self.train(f"{name}.py:{p}", self.part(name),
                                      getattr(self.cfg, f"{name}_steps"), **common)

  def continuations(self):
    import jax
    from audiolm_jax import tokenize
    from audiolm_jax.audiolm import AudioLM
    from audiolm_jax.data import corpora
    from audiolm_jax.data.prompts import held_out_prompts
    from audiolm_jax.eval import quality, speaker
    c = self.cfg
    lm = AudioLM.from_run_dir(self.run_dir)
    rate = lm.sample_rate
    source = corpora.data_source(c.corpus, c.prompt_split, self.data_dir, c.corpus_size)
    prompts = held_out_prompts(source, c.num_prompts, c.prompt_seconds, rate)
    # The codec's resynthesis of each prompt's utterance: how good the acoustic tokens are.
    codes = tokenize.acoustic_tokens(lm.codec, [p.original for p in prompts],
                                     samples_per_frame=lm.samples_per_frame)
    resynth = [w[:len(p.original)] for w, p in zip(tokenize.decode_clips(lm.codec, codes),
                                                    prompts)]
    scores = [quality.quality_metrics(p.original, r, rate) for p, r in zip(prompts, resynth)]
    self.metrics["codec_quality"] = {
        key: float(np.nanmean([s[key] for s in scores])) for key in ("pesq", "stoi", "si_snr")}
    self.metrics["codec_quality"]["utterances"] = len(prompts)
    outs, t0 = [], time.time()
    for n, p in enumerate(prompts):
      outs.append(lm.generate(p.prompt, seconds=c.total_seconds,
                              rng=jax.random.key(c.seed + n),
                              progress=lambda msg: self.say(f"[demo]   {msg}")))
    seconds = (time.time() - t0) / max(1, len(prompts))
    # Speaker: the generated part against its own prompt and against the other prompts.
    encoder = speaker.SpeakerEncoder()
    prompt_e = encoder.embed_many([p.prompt for p in prompts])
    cont_e = encoder.embed_many([o.audio[0, o.continuation_start:] for o in outs])
    own = np.sum(prompt_e * cont_e, axis=1)
    cross = prompt_e @ cont_e.T
    others = [(cross[:, i].sum() - own[i]) / (len(prompts) - 1) if len(prompts) > 1
              else float("nan") for i in range(len(prompts))]
    # The prompt part of each generated clip is the codec's decoding of the prompt's codes,
    # up to the samples that a decoder which looks ahead (Vocos) takes from the continuation.
    checked = []  # max |difference| per prompt long enough to check
    for p, o in zip(prompts, outs):
      _, prompt_codes = lm.tokenize(p.prompt[None])
      reference = np.asarray(lm.codec.decode(prompt_codes[..., :lm.num_levels]))[0]
      end = o.continuation_start - lm.codec.config.decoder_lookahead
      if end > 0:
        checked.append(float(np.max(np.abs(o.audio[0, :end] - reference[:end]))))
    items = []
    for n, (p, o) in enumerate(zip(prompts, outs)):
      facts = [f"continuation's speaker similarity to its prompt: {own[n]:.3f}"
               + (f" (to the other prompts: {others[n]:.3f})" if len(prompts) > 1 else ""),
               f"codec resynthesis of the utterance: PESQ {scores[n]['pesq']:.2f}, "
               f"STOI {scores[n]['stoi']:.2f}, SI-SNR {scores[n]['si_snr']:.1f} dB"]
      items.append({"name": f"prompt{n}", "prompt": p.prompt, "continuation": o.audio[0],
                    "original": p.original, "boundary_s": o.continuation_start / rate,
                    "facts": facts,
                    "text": f"speaker {p.speaker}: “{p.transcript}” (the continuation is "
                            f"generated from the first {c.prompt_seconds:g} s)"})
    self.metrics["generation"] = {
        "prompts": len(items), "prompt_seconds": c.prompt_seconds,
        "total_seconds": c.total_seconds, "seconds_per_continuation": round(seconds, 1),
        "speaker_similarity_to_prompt": [round(float(x), 4) for x in own],
        "speaker_similarity_to_other_prompts": [round(float(x), 4) for x in others],
        # None when every prompt is shorter than the decoder's lookahead (nothing to compare).
        "prompt_audio_max_error": max(checked) if checked else None,
        "prompt_audio_reproduced": bool(checked) and max(checked) < 1e-3}
    self.items, self.sample_rate = items, rate

  def summary(self) -> list[tuple[str, Any]]:
    """The report's headline rows, once every timing is known."""
    m, seconds = self.metrics, self.metrics["seconds"]
    rows = [("corpus", f"{self.cfg.corpus}/{self.cfg.corpus_size}: "
                       f"{m['corpus']['hours']:.2f} h, {m['corpus']['speakers']} speakers")]
    for part in ("codec", "w2v_bert", "semantic_lm", "coarse_lm", "fine_lm"):
      last = m.get(part, {})
      train, evals = last.get("last_train", {}), last.get("last_eval", {})
      if train:
        loss = train.get("loss", float("nan"))
        rows.append((part, f"{int(train['step'])} steps, loss {loss:.4g}"
                           + (f" (eval {evals['loss']:.4g})" if "loss" in evals else "")))
    q = m["codec_quality"]
    rows.append(("codec on the prompts' utterances", f"PESQ {q['pesq']:.2f}, STOI "
                 f"{q['stoi']:.2f}, SI-SNR {q['si_snr']:.1f} dB ({q['utterances']} clips)"))
    g = m["generation"]
    rows.append(("continuation's speaker similarity", f"to its prompt "
                 f"{np.mean(g['speaker_similarity_to_prompt']):.3f}, to the other prompts "
                 f"{np.nanmean(g['speaker_similarity_to_other_prompts']):.3f} (mean of "
                 f"{g['prompts']}; resemblyzer cosine)"))
    rows.append(("seconds per continuation", f"{g['seconds_per_continuation']:.1f} s for "
                 f"{g['total_seconds']:g} s of audio"))
    rows += [(f"time: {k}", format_duration(v)) for k, v in seconds.items()
             if not k.startswith("total")]
    rows.append(("time: total", format_duration(seconds["total"])))
    return rows

  def run(self) -> dict[str, Any]:
    # Before 20 minutes of training, not after: the report's figures need these.
    require_extra("eval", "the demo (codec quality, speaker similarity)")
    require_extra("report", "the demo's report page")
    if self.cfg.corpus == "synthetic_piano":
      require_extra("piano", "the synthetic_piano corpus")
    t0 = time.time()
    steps = [("corpus", self.corpus), ("codec", self.codec), ("w2v_bert", self.w2v_bert),
             ("semantic_tokenizer", self.tokenizer), ("token_cache", self.token_cache),
             ("stages", self.stages), ("continuations", self.continuations)]
    for index, (name, fn) in enumerate(steps, 1):
      if name == "continuations":
        self.metrics["seconds"]["total_before_generation"] = round(time.time() - t0, 1)
      self.timed(name, fn, index, len(steps))
    self.metrics["seconds"]["total"] = round(time.time() - t0, 1)
    # Written last, so that its summary has every timing (the report takes seconds).
    from audiolm_jax.report import write_report  # pylint: disable=g-import-not-at-top
    self.metrics["report"] = os.path.join(self.run_dir, "report.html")
    write_report(self.run_dir, self.items, self.metrics, sample_rate=self.sample_rate,
                 title="audiolm-jax demo: speech continuation", summary=self.summary(),
                 curves={p: self.part(p) for p in ("codec", "w2v_bert", "semantic_lm",
                                                   "coarse_lm", "fine_lm")})
    with open(os.path.join(self.run_dir, "metrics.json"), "w") as f:
      json.dump(self.metrics, f, indent=2, default=float)
    return self.metrics
