"""Stage Transformer benchmarks: training steps, cached vs. uncached sampling, scaling.

Reference shapes (issue 7, fixed so results compare across implementations): d=256, 4 layers,
4 heads of 64, FFN 1024, no dropout; 500 semantic ids; 12 levels x 1024 codes, 4 coarse; 2 s of
audio. Every figure runs the stage's real token layout (`lm.stages`) and its real loss
(`tasks.stages`): stage 1 over its whole vocabulary, stages 2 and 3 level-sliced (each target
over its level's 1024 ids; `sliced=False` times the masked full-vocabulary loss instead).
Sampling scores each position over its window of ids (`stage.vocab_windows`).

    stage      training sequence                      sampling
    semantic   BOS + 50 ids + EOS            = 52     25-id prompt + 250
    coarse     52 (BOS, 50 ids, SEP) + 400 coarse     52-token prompt + 400 coarse
    fine       402 (BOS, 400 coarse, SEP) + 800 fine  402-token prompt + 800 fine

MFU counts useful FLOPs only (`tasks.stages.stage_flops`, formula in the results as
`mfu_flops_formula`); XLA's own count of the compiled step is reported beside it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from audiolm_jax.lm.sampling import sample
from audiolm_jax.lm.stages import CoarseStage, FineStage, SemanticStage
from audiolm_jax.lm.transformer import CachedLogits, FullPassLogits, Transformer, TransformerConfig
from audiolm_jax.tasks.stages import level_sliced_loss, stage_flops, weighted_cross_entropy
from benchmarks.timing import peak_rss_mib, time_fn

SEMANTIC_IDS = 500
CODES, LEVELS, COARSE = 1024, 12, 4
SECONDS = 2.0
MFU_FORMULA = ("6 * (layer matmul params * N + d_model * scored ids) + 12 * layers * N^2 * "
               "heads * head_dim, per sequence of N tokens; scored ids = N * V for the semantic "
               "stage, F * Q * K (its learned targets, one level's K ids each) for coarse and fine")

LAYOUTS = {
    "semantic": SemanticStage(codebook_size=SEMANTIC_IDS, crop_seconds=SECONDS),
    "coarse": CoarseStage(semantic_codebook_size=SEMANTIC_IDS, acoustic_codebook_size=CODES,
                          num_coarse=COARSE, crop_seconds=SECONDS),
    "fine": FineStage(acoustic_codebook_size=CODES, num_quantizers=LEVELS, num_coarse=COARSE,
                      chunk_seconds=SECONDS),
}
SEMANTIC_PROMPT, SEMANTIC_GENERATE = 25, 250


def reference_config(stage: str, max_len: int = 2048) -> TransformerConfig:
  layout = LAYOUTS[stage]
  return TransformerConfig(vocab_size=layout.vocab_size, d_model=256, num_layers=4, num_heads=4,
                           head_dim=64, mlp_dim=1024, dropout_rate=0.0, max_len=max_len,
                           pad_id=layout.pad_id)


def layout_of(stage: str, seconds: float = SECONDS):
  """The stage's reference layout, with training crops of `seconds` (default 2 s)."""
  field = "chunk_seconds" if stage == "fine" else "crop_seconds"
  return dataclasses.replace(LAYOUTS[stage], **{field: seconds})


@functools.lru_cache(maxsize=None)
def init_params(config: TransformerConfig):
  model = Transformer(config)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 8), jnp.int32)))(
      jax.random.key(0, impl="rbg"))
  return nn.unbox(variables["params"])


def training_batch(layout, batch: int, seed: int = 1) -> dict[str, np.ndarray]:
  """`batch` full-length training rows of `layout`, random tokens."""
  rng = np.random.default_rng(seed)
  frames = layout.max_frames
  # Distinct neighbours, so that deduplication keeps every semantic id.
  semantic = lambda n: np.cumsum(rng.integers(1, SEMANTIC_IDS, n)) % SEMANTIC_IDS
  rows = []
  for _ in range(batch):
    if isinstance(layout, SemanticStage):
      rows.append(layout.make_example(semantic(frames), reaches_end=True))
    else:
      rows.append(layout.make_example(semantic(frames // 2),
                                      rng.integers(0, CODES, (frames, LEVELS))))
  return {k: np.stack([getattr(r, k) for r in rows]) for k in ("inputs", "targets", "weights")}


def _train_step_fn(layout, config: TransformerConfig, sliced: bool):
  model = Transformer(config)
  optimizer = optax.adam(1e-4)
  span = layout.level_span() if sliced else None
  mask = layout.target_logit_mask()

  def loss_fn(params, batch):
    if span is not None:
      return level_sliced_loss(model, params, batch["inputs"], batch["targets"],
                               batch["weights"], span)[0]
    logits = model.apply({"params": params}, batch["inputs"], deterministic=True)
    return weighted_cross_entropy(logits, batch["targets"], batch["weights"], mask)[0]

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step, optimizer


def train_step(stage: str, batch: int = 8, peak_gflops: float = 0.0, runs: int = 5,
               sliced: bool = True, seconds: float = SECONDS) -> dict:
  """Forward + backward + Adam update on `batch` training rows of the stage's layout, crops of
  `seconds` (2 s in the reference suite; other lengths for the scaling suite)."""
  layout = layout_of(stage, seconds)
  config = reference_config(stage, max_len=layout.sequence_length)
  step, optimizer = _train_step_fn(layout, config, sliced)
  params = jax.tree.map(jnp.copy, init_params(config))
  opt_state = optimizer.init(params)
  data = {k: jnp.asarray(v) for k, v in training_batch(layout, batch).items()}
  compiled = step.lower(params, opt_state, data).compile()
  xla_flops = float((compiled.cost_analysis() or {}).get("flops", 0.0))
  flops = batch * stage_flops(config, layout)
  state = {"params": params, "opt": opt_state}

  def run():
    state["params"], state["opt"], loss = step(state["params"], state["opt"], data)
    return loss

  t = time_fn(run, runs=runs)
  length = layout.sequence_length
  out = {"step_s": t.median, "timing": t.as_dict(), "tokens": length, "sliced": sliced,
         "tokens_per_s": batch * length / t.median, "useful_flops_per_step": flops,
         "xla_flops_per_step": xla_flops, "rss_mib": peak_rss_mib()}
  if peak_gflops:
    out["mfu"] = flops / t.median / (peak_gflops * 1e9)
    out["xla_flops_utilisation"] = xla_flops / t.median / (peak_gflops * 1e9)
  return out


def sampling(stage: str, batch: int = 1, cache: bool = True, generate: int | None = None,
             buffer: int | None = None, runs: int = 3, sliced: bool = True) -> dict:
  """Tokens per second of `sample` (jit + while_loop), with or without the KV cache.

  The prompt is the stage's conditioning (coarse: 50 semantic ids; fine: 400 coarse codes;
  semantic: 25 ids), then `generate` tokens (default: the rest of a 2 s sequence; semantic 250).
  `buffer` fixes the decoding buffer length (the cache size); by default the run's length.
  """
  layout, rng = LAYOUTS[stage], np.random.default_rng(2)
  if stage == "semantic":
    prompt_ids = layout.make_prompt(rng.integers(0, SEMANTIC_IDS, (batch, SEMANTIC_PROMPT)))
    generate = generate or SEMANTIC_GENERATE
  elif stage == "coarse":
    prompt_ids = layout.make_prompt(rng.integers(0, SEMANTIC_IDS, (batch, layout.max_frames // 2)))
    generate = generate or layout.max_frames * COARSE
  else:
    prompt_ids = layout.make_prompt(rng.integers(0, CODES, (batch, layout.max_frames, COARSE)))
    generate = generate or layout.max_frames * (LEVELS - COARSE)
  length = prompt_ids.shape[1] + generate
  buffer = max(buffer or length, length)
  model = Transformer(reference_config(stage, max_len=buffer))
  params = init_params(reference_config(stage))
  callback = CachedLogits(model) if cache else FullPassLogits(model)
  state0 = callback.init_state(batch, buffer)
  mask = jnp.asarray(layout.logit_mask(length))
  if stage == "semantic":
    mask = mask.at[:, layout.eos_id].set(False)  # Every run generates all its tokens.
  windows = {}
  if sliced:
    windows = dict(vocab_starts=jnp.asarray(np.maximum(layout.vocab_windows(length), 0)),
                   vocab_width=layout.vocab_width)
  prompt_ids = jnp.asarray(prompt_ids)

  def run():
    return sample(callback, params, state0, prompt_ids, jax.random.key(3), max_length=length,
                  temperature=1.0, logit_mask=mask, pad_id=layout.pad_id, **windows).tokens

  t = time_fn(run, runs=runs)
  return {"tok_per_s": batch * generate / t.median, "s_per_token": t.median / generate,
          "prompt": int(prompt_ids.shape[1]), "generated": generate, "buffer": buffer,
          "sliced": sliced, "timing": t.as_dict(), "rss_mib": peak_rss_mib()}


def reference(peak_gflops: float, log: Callable[[str], None] = print) -> dict:
  out = {"mfu_flops_formula": MFU_FORMULA}
  for stage in ("semantic", "coarse", "fine"):
    r = train_step(stage, peak_gflops=peak_gflops)
    out[f"{stage}_train_step_s"] = r["step_s"]
    out[f"{stage}_train_tok_per_s"] = r["tokens_per_s"]
    out[f"{stage}_train_mfu"] = r.get("mfu")
    out[f"{stage}_train_detail"] = r
    log(f"{stage} train step {r['step_s']:.3f} s, MFU {r.get('mfu', 0):.1%}")
    if stage != "semantic":  # What level slicing saves: the masked full-vocabulary loss.
      r = train_step(stage, peak_gflops=peak_gflops, sliced=False, runs=3)
      out[f"{stage}_train_full_vocab_step_s"] = r["step_s"]
      out[f"{stage}_train_full_vocab_detail"] = r
      log(f"{stage} train step, full vocabulary {r['step_s']:.3f} s")
  for stage in ("semantic", "coarse", "fine"):
    for key, kwargs in ((f"{stage}_sample_tok_per_s", dict(batch=1)),
                        (f"{stage}_sample_b8_tok_per_s", dict(batch=8)),
                        (f"{stage}_sample_nocache_tok_per_s", dict(batch=1, cache=False))):
      r = sampling(stage, runs=2 if not kwargs.get("cache", True) else 3, **kwargs)
      out[key] = r["tok_per_s"]
      out[key.replace("tok_per_s", "detail")] = r
      log(f"{key} {r['tok_per_s']:.1f}")
  return out


def scaling(log: Callable[[str], None] = print, lengths=(128, 256, 512, 1024, 2048, 4096),
            nocache_max: int = 1024) -> dict:
  """Per-token sampling time vs. generated length: cached with one buffer for every length,
  cached with the buffer sized to each length, and uncached up to `nocache_max`; training step
  time vs. batch and vs. sequence length."""
  out = {"sampling": [], "train_vs_batch": [], "train_vs_length": []}
  buffer = max(lengths) + 1 + SEMANTIC_PROMPT  # BOS and the prompt.
  for n in lengths:
    row = {"generated": n}
    r = sampling("semantic", generate=n, buffer=buffer, runs=2)
    row["cached_s_per_token"] = r["s_per_token"]
    row["cached_rss_mib"] = r["rss_mib"]
    # The cache sized to this generation (prompt + n): a step attends over fewer slots when
    # fewer tokens are wanted, so this curve shows the attention's share of a step.
    r = sampling("semantic", generate=n, runs=2)
    row["cached_sized_s_per_token"] = r["s_per_token"]
    if n <= nocache_max:
      r = sampling("semantic", generate=n, cache=False, runs=1)
      row["nocache_s_per_token"] = r["s_per_token"]
    out["sampling"].append(row)
    log(f"sampling {n}: {row}")
  for batch in (1, 2, 4, 8, 16, 32):
    r = train_step("coarse", batch=batch, runs=3)
    out["train_vs_batch"].append({"batch": batch, "step_s": r["step_s"],
                                  "tokens_per_s": r["tokens_per_s"], "rss_mib": r["rss_mib"]})
    log(f"train batch {batch}: {r['step_s']:.3f} s")
  for seconds in (0.4, 1.0, 2.0, 4.0, 8.0):  # 92 .. 1802 positions
    r = train_step("coarse", batch=4, seconds=seconds, runs=3)
    out["train_vs_length"].append({"tokens": r["tokens"], "step_s": r["step_s"],
                                   "tokens_per_s": r["tokens_per_s"], "rss_mib": r["rss_mib"]})
    log(f"train length {r['tokens']}: {r['step_s']:.3f} s")
  return out
