"""The end-to-end demo (`make demo` / `audiolm-jax demo`): every part trained on the built-in
speech corpus, then held-out 3 s prompts continued to 10 s.

    audiolm-jax demo --config experiments/configs/demo.py:cpu --run_dir runs/demo
    audiolm-jax demo --config experiments/configs/demo.py:cpu --config.codec_steps=6000  # better

`cpu` fits in about 30 minutes on a 2-core machine: the budgets are short, so the audio is a
proof that every part works end to end, not a quality claim (the per-part `cpu` presets, trained
longer, are). `tiny` runs in a minute for tests. `paper` names the paper-size presets and
step counts (for accelerators). Re-running reuses every finished part.
"""

import ml_collections

VARIANTS = ("tiny", "cpu", "paper")


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.corpus = "synthetic_speech"  # Built-in corpus trained on and prompted from.
  c.corpus_size = "default"      # Its size: tiny | default.
  c.preset = "cpu"               # Variant of every part's own config (codec.py:cpu, ...).
  c.codec_steps = 1500           # Codec training steps: reconstruction only (the cpu preset's
                                 # warm-up), about 0.34 s each here, 9 min with its compile.
                                 # The cpu codec (Vocos decoder) reached eval mel distance 0.44
                                 # at step 1000 and 0.40 at 2000 (SEANet's decoder: 0.55 at
                                 # 2000); the committed codec results train 12000.
  c.w2v_bert_steps = 200         # w2v-BERT pre-training steps (about 0.7 s each here).
  c.kmeans_steps = 200           # Mini-batch k-means steps of the semantic tokenizer.
  c.semantic_lm_steps = 200      # Stage 1 training steps (about 0.5 s each here).
  c.coarse_lm_steps = 80         # Stage 2 training steps (about 2.5 s each here).
  c.fine_lm_steps = 50           # Stage 3 training steps (about 4 s each here).
  c.stage_batch_size = 8         # Sequences per stage training step (the presets' own: 16).
  c.token_splits = ("train", "validation")  # Corpus splits tokenized into the cache.
  c.max_token_examples = 1000    # Cap on examples tokenized per split (-1: all).
  c.num_prompts = 2              # Held-out prompts continued.
  c.prompt_split = "test"        # Split the prompts come from (sentences never trained on).
  c.prompt_seconds = 3.0         # Prompt length (paper: 3 s).
  c.total_seconds = 10.0         # Prompt + continuation (paper: 10 s).
  c.seed = 0                     # Everything random in the demo derives from it.
  if arg == "tiny":
    c.corpus_size = "tiny"
    c.preset = "tiny"
    c.update(codec_steps=4, w2v_bert_steps=4, kmeans_steps=5, semantic_lm_steps=4,
             coarse_lm_steps=4, fine_lm_steps=4, stage_batch_size=8, num_prompts=2,
             prompt_seconds=1.0, total_seconds=2.0)
  elif arg == "paper":
    c.preset = "paper"
    c.update(codec_steps=1_000_000, w2v_bert_steps=400_000, kmeans_steps=10_000,
             semantic_lm_steps=1_000_000, coarse_lm_steps=1_000_000, fine_lm_steps=1_000_000,
             stage_batch_size=256)
  elif arg not in (None, "cpu"):
    raise ValueError(f"unknown variant {arg!r}")
  return c
