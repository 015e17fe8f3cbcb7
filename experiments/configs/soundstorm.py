"""SoundStorm (Borsos et al., 2023): all RVQ levels from semantic tokens by one bidirectional
conformer with masked, level-by-level parallel decoding; replaces stages 2 + 3.

    audiolm-jax train --config experiments/configs/soundstorm.py:cpu --workdir runs/soundstorm \
        --config.data.tokens_dir=DIR
    audiolm-jax train --config experiments/configs/soundstorm.py:paper --workdir runs/soundstorm \
        --config.data.tokens_dir=DIR --config.batch_size=256
    audiolm-jax generate --run W --acoustic soundstorm --soundstorm runs/soundstorm \
        --prompt in.wav --seconds 10 --out out.wav

DIR is the stages' token cache (`audiolm-jax tokenize corpus ... --out DIR`). Variants: `tiny`
(tests, seconds), `cpu` (minutes on two cores: d=128, 2 layers, 2 s crops), `paper` (12
layers, 16 heads, d=1024, FFN 4096, conv kernel 5, 30 s crops, 12 levels x 1024 codes: about
0.3 B parameters; the paper quotes 350 M).
"""

import ml_collections

from audiolm_jax.train.defaults import base_config

VARIANTS = ("tiny", "cpu", "paper")


def get_config(arg=None):
  variant = arg or "cpu"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
  c = base_config()  # Trainer keys (mesh, optimizer, data, cadence) with their defaults.
  c.task = "soundstorm"  # The task the trainer runs (tasks/soundstorm.py).

  # What the tokens are (lm.soundstorm.SoundStormLayout); MASK is id K of every level.
  c.stage = ml_collections.ConfigDict()
  c.stage.semantic_codebook_size = 1024  # K_s, k-means clusters of the semantic tokenizer.
  c.stage.acoustic_codebook_size = 1024  # K, codes per SoundStream RVQ level.
  c.stage.num_quantizers = 12  # Q, RVQ levels modelled (all of the codec's).
  c.stage.crop_seconds = 30.0  # Training crop (paper: 30 s).
  c.stage.semantic_rate = 25  # Semantic frames per second (paper: 25 Hz).
  c.stage.acoustic_rate = 50  # Acoustic frames per second (paper: 50 Hz).

  # The conformer (layers.conformer.ConformerConfig fields, plus num_layers; config.compute_dtype
  # sets its dtype).
  c.model = ml_collections.ConfigDict()
  c.model.num_layers = 12  # Conformer blocks (paper: 12).
  c.model.dim = 1024  # D, model width (paper: 1024).
  c.model.num_heads = 16  # H, attention heads (paper: 16).
  c.model.mlp_dim = 4096  # F, hidden width of each feed-forward module.
  c.model.conv_kernel_size = 5  # W, depthwise convolution width.
  c.model.dropout_rate = 0.1  # Dropout on every residual branch and the input embedding.
  c.model.attention_dropout_rate = 0.1  # Dropout on the attention weights.
  c.model.relpos_num_buckets = 32  # T5 relative position buckets (both directions).
  c.model.relpos_max_distance = 128  # Distances beyond this share a bucket.

  # Sampling (lm.soundstorm_sampling.Schedule), read by generation, not by training.
  c.sampling = ml_collections.ConfigDict()
  c.sampling.first_level_iterations = 16  # MaskGIT iterations on level 1 (paper: 16).
  c.sampling.other_level_iterations = 1  # Iterations on each finer level (paper: 1).
  c.sampling.temperature = 0.8  # Draw temperature of the sampled levels (0 = greedy).
  c.sampling.choice_temperature = 1.0  # Confidence noise, annealed to 0 over a level.
  c.sampling.greedy_from_level = 1  # Levels from this one on (0-based) take the argmax.

  c.data.corpus = "speech"  # The corpus the token cache was made from (for the record).
  c.data.tokens_dir = None  # Token cache (data/tokens.py), required: --config.data.tokens_dir=DIR
  # Codebook sizes and Q of config.stage are taken from the cache's token_cache.json, so the
  # model always fits its tokens; False keeps the values set here.
  c.data.sizes_from_cache = True
  c.data.num_threads = 2  # Grain reader threads.
  c.data.prefetch = 8  # Grain prefetch buffer, in batches.
  c.total_steps = 1_000_000  # Optimizer steps (a long run).
  c.batch_size = 256  # Global batch, in crops.
  c.compute_dtype = "bfloat16"  # Activations in bfloat16, float32 parameters.
  c.checkpoint_every = 5000  # Steps between checkpoints.
  c.eval_every = 5000  # Steps between evaluations.
  c.log_every = 100  # Steps between metric logs.
  c.mesh.data = 1  # Data parallelism.
  c.mesh.fsdp = -1  # FSDP over all devices (parameters and optimizer state sharded).
  c.optimizer.learning_rate = 3e-4  # Peak learning rate (not given in the paper).
  c.optimizer.warmup_steps = 10_000  # Linear warm-up.

  if variant == "cpu":
    c.stage.update(semantic_codebook_size=64, acoustic_codebook_size=256, num_quantizers=8,
                   crop_seconds=2.0)
    c.model.update(num_layers=2, dim=128, num_heads=4, mlp_dim=512)
    c.sampling.first_level_iterations = 8
    c.total_steps, c.batch_size, c.compute_dtype = 2000, 16, "float32"
    c.checkpoint_every, c.eval_every, c.log_every = 500, 250, 20
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=100)
  elif variant == "tiny":
    c.stage.update(semantic_codebook_size=32, acoustic_codebook_size=32, num_quantizers=4,
                   crop_seconds=0.4)
    c.model.update(num_layers=1, dim=32, num_heads=2, mlp_dim=64, conv_kernel_size=3,
                   dropout_rate=0.0, attention_dropout_rate=0.0, relpos_num_buckets=8,
                   relpos_max_distance=16)
    c.sampling.first_level_iterations = 4
    c.total_steps, c.batch_size, c.compute_dtype = 4, 8, "float32"
    c.checkpoint_every, c.eval_every, c.log_every, c.eval_steps = 2, 2, 1, 1
    c.data.update(num_threads=1, prefetch=2)
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=1)
  return c
