"""Stage 1 of AudioLM: the semantic language model, p(s_t | s_<t).

A decoder-only Transformer over deduplicated w2v-BERT k-means tokens (paper section 4.1).

    audiolm-jax train --config experiments/configs/semantic_lm.py:cpu --workdir runs/semantic_lm \
        --config.data.tokens_dir=DIR
    audiolm-jax train --config experiments/configs/semantic_lm.py:paper --workdir runs/semantic_lm \
        --config.data.tokens_dir=DIR --config.batch_size=512

Variants: `tiny` (tests, seconds), `cpu` (the demo: d=256, 4 layers, 4 heads), `paper` (12
layers, 16 heads, d=1024, FFN 4096, dropout 0.1, 30 s crops, K=1024 semantic tokens).
"""

import ml_collections

from audiolm_jax.train.defaults import base_config

VARIANTS = ("tiny", "cpu", "paper")


def get_config(arg=None):
  variant = arg or "cpu"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
  c = base_config()  # Trainer keys (mesh, optimizer, data, cadence) with their defaults.
  c.task = "semantic_lm"  # The task the trainer runs (lm.stages.STAGES).

  # Token layout (lm.stages.SemanticStage); the vocabulary is K_s ids + PAD, BOS, SEP, EOS.
  c.stage = ml_collections.ConfigDict()
  c.stage.codebook_size = 1024  # K_s, k-means clusters of the semantic tokenizer.
  c.stage.crop_seconds = 30.0  # Training crop (paper: 30 s).
  c.stage.semantic_rate = 25  # Semantic frames per second (paper: 25 Hz).
  c.stage.temperature = 0.6  # Default sampling temperature (paper: 0.6).

  # The Transformer (lm.transformer.TransformerConfig; the stage sets vocab_size, pad_id and
  # max_len, and config.compute_dtype sets its dtype).
  c.model = ml_collections.ConfigDict()
  c.model.d_model = 1024  # D, model width.
  c.model.num_layers = 12  # Decoder blocks.
  c.model.num_heads = 16  # H, attention heads.
  c.model.head_dim = 64  # Width of one head.
  c.model.mlp_dim = 4096  # F, hidden width of the gated-GELU MLP.
  c.model.dropout_rate = 0.1  # Dropout on embeddings, attention, residuals (paper: 0.1).
  c.model.relpos_num_buckets = 32  # T5 relative position buckets.
  c.model.relpos_max_distance = 128  # Distances beyond this share the last bucket.
  c.model.scan_layers = True  # nn.scan over layers: one layer is compiled.
  c.model.remat_policy = "dots_no_batch"  # nn.remat: "none", "full", "dots", "dots_no_batch".

  c.data.corpus = "speech"  # The corpus the token cache was made from (for the record).
  c.data.tokens_dir = None  # Token cache (data/tokens.py), required: --config.data.tokens_dir=DIR
  # Codebook sizes (and the fine stage's levels) of config.stage are taken from the cache's
  # token_cache.json, so a stage always fits its tokens; False keeps the values set here.
  c.data.sizes_from_cache = True
  c.data.num_threads = 2  # Grain reader threads.
  c.data.prefetch = 8  # Grain prefetch buffer, in batches.
  # Raw frames per deduplicated token, L. 0: read from the token cache's train split when
  # training starts, and saved with the run: generation lays generated tokens out in time and
  # sizes its windows by it (lm/generate.py).
  c.data.frames_per_token = 0.0
  c.total_steps = 1_000_000  # Optimizer steps (the paper gives none; a long run).
  c.batch_size = 256  # Global batch, in sequences.
  c.compute_dtype = "bfloat16"  # Activations in bfloat16, float32 parameters.
  c.checkpoint_every = 5000  # Steps between checkpoints.
  c.eval_every = 5000  # Steps between evaluations.
  c.log_every = 100  # Steps between metric logs.
  c.mesh.data = 1  # Data parallelism.
  c.mesh.fsdp = -1  # FSDP over all devices (parameters and optimizer state sharded).
  c.optimizer.learning_rate = 3e-4  # Peak learning rate (not given in the paper).
  c.optimizer.warmup_steps = 10_000  # Linear warm-up.

  if variant == "cpu":
    c.stage.update(codebook_size=64, crop_seconds=4.0)  # = w2v_bert.py:cpu tokenizer K
    c.model.update(d_model=256, num_layers=4, num_heads=4, head_dim=64, mlp_dim=1024,
                   scan_layers=False, remat_policy="none")
    c.total_steps, c.batch_size, c.compute_dtype = 2000, 16, "float32"
    c.checkpoint_every, c.eval_every, c.log_every = 500, 250, 20
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=100)
  elif variant == "tiny":
    c.stage.update(codebook_size=32, crop_seconds=1.0)
    c.model.update(d_model=32, num_layers=2, num_heads=2, head_dim=16, mlp_dim=64,
                   dropout_rate=0.0, scan_layers=False, remat_policy="none")
    c.total_steps, c.batch_size, c.compute_dtype = 4, 8, "float32"
    c.checkpoint_every, c.eval_every, c.log_every, c.eval_steps = 2, 2, 1, 1
    c.data.update(num_threads=1, prefetch=2)
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=1)
  return c
