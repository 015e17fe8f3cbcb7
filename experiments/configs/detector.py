"""The detector of generated speech (as in the AudioLM paper): a log-mel conv classifier.

It tells AudioLM continuations (class 1, "generated") from real speech passed through the same
codec (class 0, "real": the hard negative; the paper reached 98.6% accuracy). The two classes
are two corpus builds; `experiments/detector_data.py` writes their audio:

    python experiments/detector_data.py --run runs/demo --data_dir data --out runs/detector_data
    audiolm-jax data build audio_folder --source runs/detector_data/real --layout librispeech \
        --name detector_real
    audiolm-jax data build audio_folder --source runs/detector_data/generated \
        --layout librispeech --name detector_generated
    audiolm-jax train --config experiments/configs/detector.py:cpu --workdir runs/detector
    audiolm-jax detect --detector runs/detector clip.wav [more.wav ...]
    python experiments/detector_accuracy.py --detector runs/detector \
        --heldout runs/detector_data/heldout      # -> experiments/results/detector.json

Builds of other names: `--config.data.real=audio_folder/NAME` (and `data.generated`); each is
a `corpus[/build]:weight,...` list, so a class may mix several builds.

Variants: `tiny` (tests, seconds), `cpu` (this machine: minutes).
"""

import ml_collections

from audiolm_jax.train.defaults import base_config

VARIANTS = ("tiny", "cpu")


def get_config(arg=None):
  variant = arg or "cpu"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
  c = base_config()  # Trainer keys (mesh, optimizer, data, cadence) with their defaults.
  c.task = "detector"  # The task the trainer runs (tasks/detector.py).

  # The classifier (eval.detector.DetectorConfig; config.compute_dtype sets its dtype).
  c.model = ml_collections.ConfigDict()
  c.model.sample_rate = 16000  # Input sample rate (Hz).
  c.model.n_fft = 400  # STFT size and Hann window: 25 ms.
  c.model.hop = 160  # Mel hop: 10 ms.
  c.model.n_mels = 64  # Log-mel bands.
  c.model.channels = (32, 64, 128)  # Channels of each 3x3 stride-2 conv layer.
  c.model.kernel_size = 3  # Square conv kernel.

  # Data (tasks/detector.py): random crops of both classes, interleaved one by one.
  c.data.real = "audio_folder/detector_real"  # Class 0: codec resyntheses of real speech.
  c.data.generated = "audio_folder/detector_generated"  # Class 1: generated speech.
  c.data.corpus = "audio_folder"  # Unused: `real` and `generated` name the corpora.
  c.data.split = "train"  # Split trained on.
  c.data.eval_split = "validation"  # Split of the periodic evaluation (accuracy).
  c.data.data_dir = None  # Where corpora live (None: $AUDIOLM_DATA_DIR or ./data).
  c.data.crop_seconds = 2.0  # Random training crop; shorter clips are padded and masked.
  c.data.sample_rate = 16000  # Hz (= model.sample_rate).
  c.data.num_threads = 2  # Grain reader threads per process.
  c.data.prefetch = 64  # Grain prefetch buffer, in examples.

  c.total_steps = 3000  # Optimizer steps.
  c.batch_size = 32  # Global batch, in crops (half of each class).
  c.checkpoint_every = 500  # Steps between checkpoints.
  c.eval_every = 250  # Steps between evaluations.
  c.eval_steps = 20  # Evaluation batches (at most; the split may end first).
  c.log_every = 25  # Steps between metric logs.
  c.mesh.data = -1  # Data parallelism over every device (the model is small).
  c.mesh.fsdp = 1
  c.optimizer.learning_rate = 1e-3  # Peak learning rate.
  c.optimizer.warmup_steps = 100  # Linear warm-up.
  c.optimizer.b2 = 0.99  # Adam second-moment decay.
  c.optimizer.eps = 1e-8  # Adam epsilon.
  c.optimizer.weight_decay = 0.01  # Decoupled weight decay on kernels.

  if variant == "tiny":
    c.model.update(n_mels=16, channels=(4, 8))
    c.data.update(crop_seconds=0.5, num_threads=1, prefetch=8)
    c.total_steps, c.batch_size = 40, 16
    c.checkpoint_every, c.eval_every, c.eval_steps, c.log_every = 40, 40, 4, 10
    c.optimizer.update(learning_rate=1e-2, warmup_steps=1)
  return c
