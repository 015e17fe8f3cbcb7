"""Stage 3 of AudioLM: the fine acoustic model, p(f | c of the chunk, f_<t).

A decoder-only Transformer over [coarse tokens of a chunk flattened, SEP, SoundStream levels
Q'+1..Q flattened frame by frame], on 3 s chunks; the loss covers the fine tokens only (paper
section 4.1).

    audiolm-jax train --config experiments/configs/fine_lm.py:cpu --workdir runs/fine_lm \
        --config.data.tokens_dir=DIR
    audiolm-jax train --config experiments/configs/fine_lm.py:paper --workdir runs/fine_lm \
        --config.data.tokens_dir=DIR --config.batch_size=512

Variants: `tiny` (tests, seconds), `cpu` (the demo: d=256, 4 layers, 4 heads), `paper` (12
layers, 16 heads, d=1024, FFN 4096, dropout 0.1, 3 s chunks, 12 levels x 1024 codes).
"""

import ml_collections

from audiolm_jax.train.defaults import base_config

VARIANTS = ("tiny", "cpu", "paper")


def get_config(arg=None):
  variant = arg or "cpu"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
  c = base_config()  # Trainer keys (mesh, optimizer, data, cadence) with their defaults.
  c.task = "fine_lm"  # The task the trainer runs (lm.stages.STAGES).

  # Token layout (lm.stages.FineStage); ids: Q x K acoustic (levels 1..Q), PAD, BOS, SEP, EOS.
  c.stage = ml_collections.ConfigDict()
  c.stage.acoustic_codebook_size = 1024  # K, codes per SoundStream RVQ level.
  c.stage.num_quantizers = 12  # Q, all RVQ levels (paper: 12).
  c.stage.num_coarse = 4  # Q', the conditioning levels; this stage models Q'+1..Q.
  c.stage.chunk_seconds = 3.0  # Chunk length, for training crops and generation (paper: 3 s).
  c.stage.acoustic_rate = 50  # Acoustic frames per second (paper: 50 Hz).
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
    c.stage.update(acoustic_codebook_size=256, num_quantizers=8, chunk_seconds=2.0)
    c.model.update(d_model=256, num_layers=4, num_heads=4, head_dim=64, mlp_dim=1024,
                   scan_layers=False, remat_policy="none")
    c.total_steps, c.batch_size, c.compute_dtype = 2000, 16, "float32"
    c.checkpoint_every, c.eval_every, c.log_every = 500, 250, 20
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=100)
  elif variant == "tiny":
    c.stage.update(acoustic_codebook_size=32, num_quantizers=4, num_coarse=2,
                   chunk_seconds=0.4)
    c.model.update(d_model=32, num_layers=2, num_heads=2, head_dim=16, mlp_dim=64,
                   dropout_rate=0.0, scan_layers=False, remat_policy="none")
    c.total_steps, c.batch_size, c.compute_dtype = 4, 8, "float32"
    c.checkpoint_every, c.eval_every, c.log_every, c.eval_steps = 2, 2, 1, 1
    c.data.update(num_threads=1, prefetch=2)
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=1)
  return c
