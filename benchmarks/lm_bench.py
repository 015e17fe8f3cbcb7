"""Stage Transformer benchmarks: training steps, cached vs. uncached sampling, scaling.

Reference shapes (issue 7, fixed so results compare across implementations): d=256, 4 layers,
4 heads of 64, FFN 1024, no dropout; 500 semantic ids; 12 levels x 1024 codes, 4 coarse.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from audiolm_jax.lm.sampling import sample
from audiolm_jax.lm.transformer import CachedLogits, FullPassLogits, Transformer, TransformerConfig
from benchmarks.timing import peak_rss_mib, time_fn

SPECIALS = 4
SEMANTIC_IDS = 500
CODES, LEVELS, COARSE = 1024, 12, 4

# (vocab, training tokens = conditioning + generated, sampling prompt, sampled tokens)
STAGES = {
    "semantic": dict(vocab=SEMANTIC_IDS + SPECIALS, train_tokens=50, prompt=25, generate=250),
    "coarse": dict(vocab=SEMANTIC_IDS + COARSE * CODES + SPECIALS, train_tokens=50 + 400,
                   prompt=50, generate=400),
    "fine": dict(vocab=LEVELS * CODES + SPECIALS, train_tokens=400 + 800, prompt=400,
                 generate=800),
}


def reference_config(vocab: int, max_len: int = 2048) -> TransformerConfig:
  return TransformerConfig(vocab_size=vocab, d_model=256, num_layers=4, num_heads=4, head_dim=64,
                           mlp_dim=1024, dropout_rate=0.0, max_len=max_len, pad_id=vocab - 4)


@functools.lru_cache(maxsize=None)
def init_params(config: TransformerConfig):
  model = Transformer(config)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 8), jnp.int32)))(
      jax.random.key(0, impl="rbg"))
  return nn.unbox(variables["params"])


def _train_step_fn(config: TransformerConfig):
  model = Transformer(config)
  optimizer = optax.adam(1e-4)

  def loss_fn(params, tokens):
    logits = model.apply({"params": params}, tokens[:, :-1], deterministic=True)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
    return nll.mean()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, tokens):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step, optimizer


def train_step(stage: str, batch: int = 8, tokens: int | None = None, peak_gflops: float = 0.0,
               runs: int = 5) -> dict:
  """Forward + backward + Adam update on `batch` sequences of the stage's reference length."""
  spec = STAGES[stage]
  length = tokens or spec["train_tokens"]
  config = reference_config(spec["vocab"])
  step, optimizer = _train_step_fn(config)
  params = init_params(config)
  params = jax.tree.map(jnp.copy, params)
  opt_state = optimizer.init(params)
  data = jax.random.randint(jax.random.key(1), (batch, length + 1), 0, spec["vocab"] - SPECIALS)
  compiled = step.lower(params, opt_state, data).compile()
  flops = float((compiled.cost_analysis() or {}).get("flops", 0.0))
  state = {"params": params, "opt": opt_state}

  def run():
    state["params"], state["opt"], loss = step(state["params"], state["opt"], data)
    return loss

  t = time_fn(run, runs=runs)
  out = {"step_s": t.median, "timing": t.as_dict(), "tokens_per_s": batch * length / t.median,
         "xla_flops_per_step": flops, "rss_mib": peak_rss_mib()}
  if peak_gflops and flops:
    out["mfu"] = flops / t.median / (peak_gflops * 1e9)
  return out


def sampling(stage: str, batch: int = 1, cache: bool = True, generate: int | None = None,
             prompt: int | None = None, buffer: int | None = None, runs: int = 3) -> dict:
  """Tokens per second of `sample` (jit + while_loop), with or without the KV cache.

  `buffer` fixes the decoding buffer length (the cache size); by default prompt + generate.
  """
  spec = STAGES[stage]
  prompt = prompt or spec["prompt"]
  generate = generate or spec["generate"]
  length = prompt + generate
  buffer = max(buffer or length, length)
  config = reference_config(spec["vocab"], max_len=buffer)
  model = Transformer(config)
  params = init_params(reference_config(spec["vocab"]))
  callback = CachedLogits(model) if cache else FullPassLogits(model)
  state0 = callback.init_state(batch, buffer)
  prompt_ids = jax.random.randint(jax.random.key(2), (batch, prompt), 0,
                                  spec["vocab"] - SPECIALS)

  def run():
    return sample(callback, params, state0, prompt_ids, jax.random.key(3), max_length=length,
                  temperature=1.0).tokens

  t = time_fn(run, runs=runs)
  return {"tok_per_s": batch * generate / t.median, "s_per_token": t.median / generate,
          "timing": t.as_dict(), "rss_mib": peak_rss_mib()}


def reference(peak_gflops: float, log: Callable[[str], None] = print) -> dict:
  out = {}
  for stage in STAGES:
    r = train_step(stage, peak_gflops=peak_gflops)
    out[f"{stage}_train_step_s"] = r["step_s"]
    out[f"{stage}_train_tok_per_s"] = r["tokens_per_s"]
    out[f"{stage}_train_mfu"] = r.get("mfu")
    out[f"{stage}_train_detail"] = r
    log(f"{stage} train step {r['step_s']:.3f} s, MFU {r.get('mfu', 0):.1%}")
  for stage in STAGES:
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
  buffer = max(lengths) + STAGES["semantic"]["prompt"]
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
  for length in (128, 256, 512, 1024, 2048):
    r = train_step("coarse", batch=4, tokens=length, runs=3)
    out["train_vs_length"].append({"tokens": length, "step_s": r["step_s"],
                                   "tokens_per_s": r["tokens_per_s"], "rss_mib": r["rss_mib"]})
    log(f"train length {length}: {r['step_s']:.3f} s")
  return out
