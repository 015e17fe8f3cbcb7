"""w2v-BERT pre-training and the semantic tokenizer fit on it (AudioLM section 3.2).

A conformer w2v-BERT learns from raw speech with a contrastive and a masked-prediction loss;
then features of one MLM-module layer are normalised and clustered with k-means into the 25 Hz
semantic tokens of AudioLM.

    audiolm-jax train --config experiments/configs/w2v_bert.py:cpu --workdir runs/w2v_bert
    audiolm-jax train --config experiments/configs/w2v_bert.py:paper --config.batch_size=2048

Variants: `tiny` (tests, seconds), `cpu` (the demo: d=144, 2+2 layers), `paper` (w2v-BERT XL:
24 conformer layers split 12 contrastive + 12 MLM, d=1024, about 0.6 B parameters; tokens from
MLM layer 7, K=1024).
"""

import ml_collections

from audiolm_jax.train.defaults import base_config

VARIANTS = ("tiny", "cpu", "paper")


def get_config(arg=None):
  variant = arg or "cpu"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
  c = base_config()  # Trainer keys (mesh, optimizer, data, cadence) with their defaults.
  c.task = "w2v_bert"  # The task the trainer runs.

  # The model (semantic.w2v_bert.W2VBertConfig; config.compute_dtype sets its dtype).
  c.model = ml_collections.ConfigDict()
  c.model.sample_rate = 16000  # Input sample rate (Hz).
  c.model.n_fft = 400  # STFT size and Hann window: 25 ms.
  c.model.hop = 160  # Mel hop: 10 ms; encoder frames are 4 hops = 40 ms (25 Hz).
  c.model.n_mels = 80  # Log-mel bands.
  c.model.encoder_channels = 128  # Channels of the two stride-2 conv2d of the feature encoder.
  c.model.dim = 1024  # D, conformer width.
  c.model.num_heads = 8  # Attention heads.
  c.model.mlp_dim = 4096  # Conformer feed-forward width.
  c.model.conv_kernel_size = 5  # Depthwise convolution width in each conformer block.
  c.model.num_contrastive_layers = 12  # Conformer blocks in the contrastive module.
  c.model.num_mlm_layers = 12  # Conformer blocks in the masked-prediction module.
  c.model.dropout_rate = 0.1  # Dropout on residual branches and encoder features.
  c.model.attention_dropout_rate = 0.1  # Dropout on attention weights.
  c.model.relpos_num_buckets = 32  # T5 relative position buckets.
  c.model.relpos_max_distance = 128  # Frames beyond which offsets share the last bucket.
  c.model.num_codebooks = 1  # G, quantizer groups (w2v-BERT: one codebook).
  c.model.codebook_size = 1024  # V, entries per group = MLM target vocabulary.
  c.model.codebook_dim = 1024  # Dim of a quantized vector.
  c.model.final_dim = 768  # Dim where context and quantized vectors are compared.

  # Pre-training losses (semantic.losses.W2VBertLossConfig).
  c.loss = ml_collections.ConfigDict()
  c.loss.mask_prob = 0.065  # Probability that a frame starts a masked span.
  c.loss.mask_length = 10  # Frames per masked span (~half of all frames end up masked).
  c.loss.num_negatives = 100  # Distractors per masked frame, from the same utterance.
  c.loss.contrastive_temperature = 0.1  # Cosine-similarity temperature kappa.
  c.loss.diversity_weight = 0.1  # alpha: codebook diversity loss inside L_c.
  c.loss.contrastive_weight = 1.0  # beta: weight of L_c in the total.
  c.loss.mlm_weight = 1.0  # gamma: weight of L_m in the total.
  c.loss.gumbel_start = 2.0  # Gumbel-softmax temperature at step 0.
  c.loss.gumbel_end = 0.5  # Its floor.
  c.loss.gumbel_decay = 0.999995  # Its per-step decay factor.

  # The semantic tokenizer fit after pre-training (semantic.fitting.fit_semantic_tokenizer).
  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.features = "w2v_bert"  # "w2v_bert" (layer features) or "mfcc" (GSLM baseline).
  c.tokenizer.layer = 7  # MLM-module block whose output is clustered (1-based; 0 = its input).
  c.tokenizer.num_clusters = 1024  # K, semantic vocabulary size.
  c.tokenizer.kmeans_steps = 20_000  # Mini-batch k-means steps (one batch of clips each).
  c.tokenizer.batch_size = 64  # Clips per k-means step (all their valid frames).
  c.tokenizer.init_frames = 100_000  # Frames for k-means++ seeding (>= num_clusters).
  c.tokenizer.stats_batches = 1000  # Batches for the normalisation statistics.
  c.tokenizer.reassign_ratio = 0.01  # Centroids below this share of the largest count move.

  # Data (data.pipeline.AudioDataConfig): random crops of speech, fixed shapes.
  c.data.corpus = "synthetic_speech"  # Built-in corpus, or audio_folder (a build of your own).
  c.data.split = "train"  # Split trained on (and the tokenizer's statistics and k-means).
  c.data.eval_split = "validation"  # Split of the periodic evaluation.
  c.data.data_dir = None  # Where corpora live (None: $AUDIOLM_DATA_DIR or ./data).
  c.data.config_name = None  # Which build of the corpus (None: "default", or the only one).
  c.data.crop_seconds = 15.0  # Random training crop per utterance (shorter ones are padded).
  c.data.sample_rate = 16000  # Hz (= model.sample_rate).
  c.data.num_threads = 4  # Grain reader threads per process.
  c.data.prefetch = 64  # Grain prefetch buffer, in examples.
  c.data.mixture = ""  # Several corpora, "corpus[/build]:weight,..." (replaces corpus).
  c.total_steps = 400_000  # Optimizer steps.
  c.batch_size = 512  # Global batch, in crops.
  c.compute_dtype = "bfloat16"  # Activations in bfloat16, float32 parameters.
  c.checkpoint_every = 5000  # Steps between checkpoints.
  c.eval_every = 5000  # Steps between evaluations.
  c.log_every = 100  # Steps between metric logs.
  c.mesh.data = 1  # Data parallelism.
  c.mesh.fsdp = -1  # FSDP over all devices (parameters and optimizer state sharded).
  c.optimizer.learning_rate = 2e-3  # Peak learning rate.
  c.optimizer.warmup_steps = 25_000  # Linear warm-up.
  c.optimizer.weight_decay = 0.01  # Decoupled weight decay on matrices.
  c.optimizer.grad_clip_norm = 5.0  # Global-norm clip.

  if variant == "cpu":
    c.model.update(encoder_channels=32, dim=144, num_heads=4, mlp_dim=576, conv_kernel_size=15,
                   num_contrastive_layers=2, num_mlm_layers=2, codebook_size=256,
                   codebook_dim=128, final_dim=128)
    c.loss.update(num_negatives=50)
    # Layer and K chosen by experiments/semantic_tokens.py on the cpu run (results in
    # experiments/results/semantic_tokens.md): MLM layer 2 (the last) beat layers 0 and 1 on
    # ABX, and K=64 beat 128/256/512 on ABX and on the speaker probe.
    c.tokenizer.update(layer=2, num_clusters=64, kmeans_steps=500, batch_size=16,
                       init_frames=20_000, stats_batches=100)
    c.data.update(crop_seconds=4.0, num_threads=2)
    c.total_steps, c.batch_size, c.compute_dtype = 3000, 16, "float32"
    c.checkpoint_every, c.eval_every, c.log_every = 500, 250, 20
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=200, grad_clip_norm=1.0)
  elif variant == "tiny":
    c.model.update(encoder_channels=4, dim=16, num_heads=2, mlp_dim=32, conv_kernel_size=3,
                   num_contrastive_layers=1, num_mlm_layers=1, dropout_rate=0.0,
                   attention_dropout_rate=0.0, relpos_num_buckets=8, relpos_max_distance=16,
                   num_codebooks=2, codebook_size=16, codebook_dim=8, final_dim=8)
    c.loss.update(mask_prob=0.2, mask_length=2, num_negatives=4)
    c.tokenizer.update(layer=1, num_clusters=8, kmeans_steps=4, batch_size=4, init_frames=64,
                       stats_batches=2)
    c.data.update(config_name="tiny", crop_seconds=0.64, num_threads=1, prefetch=8)
    c.total_steps, c.batch_size, c.compute_dtype = 4, 8, "float32"
    c.checkpoint_every, c.eval_every, c.log_every, c.eval_steps = 2, 2, 1, 1
    c.mesh.update(data=-1, fsdp=1)
    c.optimizer.update(learning_rate=3e-3, warmup_steps=1, grad_clip_norm=1.0)
  return c
