"""Tests for lm/stages.py: ids, flattening round trips, loss weights, logit masks, crops."""

import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import pretrained
from audiolm_jax.config import load_config
from audiolm_jax.errors import ConfigError, DataError
from audiolm_jax.lm import stages
from audiolm_jax.lm.stages import CoarseStage, FineStage, SemanticStage, Vocabulary
from audiolm_jax.tasks import stages as tasks

SEMANTIC = SemanticStage(codebook_size=8, crop_seconds=1.0)  # 25 frames
COARSE = CoarseStage(semantic_codebook_size=8, acoustic_codebook_size=5, num_coarse=3,
                     crop_seconds=0.4)  # 10 semantic, 20 acoustic frames
FINE = FineStage(acoustic_codebook_size=5, num_quantizers=5, num_coarse=2,
                 chunk_seconds=0.2)  # 10 frames
ACOUSTIC_ONLY = CoarseStage(semantic_codebook_size=8, acoustic_codebook_size=5, num_coarse=3,
                            crop_seconds=0.4, acoustic_only=True)  # 20 frames


def test_remove_consecutive_duplicates():
  np.testing.assert_array_equal(stages.remove_consecutive_duplicates([3, 3, 7, 7, 7, 3, 1, 1]),
                                [3, 7, 3, 1])
  assert stages.remove_consecutive_duplicates(np.array([], int)).size == 0


@pytest.mark.parametrize("sizes", [(1024,), (1024,) * 5, (7, 3, 3), (1,), (1024,) * 12])
def test_special_ids_never_collide_with_a_level(sizes):
  vocab = Vocabulary(sizes)
  specials = {vocab.pad_id, vocab.bos_id, vocab.sep_id, vocab.eos_id}
  assert len(specials) == 4 and max(specials) == vocab.size - 1
  covered = []
  for level in range(len(sizes)):
    start, stop = vocab.level_range(level)
    covered.extend(range(start, stop))
    assert not specials & set(range(start, stop))
    codes = np.arange(sizes[level])
    ids = vocab.encode(codes, level)
    np.testing.assert_array_equal(ids, np.arange(start, stop))
    np.testing.assert_array_equal(vocab.decode(ids, level), codes)
  assert sorted(covered) == list(range(vocab.num_codes))  # Levels tile the code ids exactly.
  with pytest.raises(DataError):
    vocab.encode([sizes[0]], 0)
  with pytest.raises(DataError):
    vocab.encode([-1], 0)


def test_paper_ids():
  """Stage 3 uses ids q*K + code for level q; stage 2 shifts them by K_s; specials on top."""
  fine, coarse = FineStage(), CoarseStage()
  assert fine.vocab.encode([7], 5)[0] == 5 * 1024 + 7
  assert coarse.vocab.encode([7], 1 + 2)[0] == 1024 + 2 * 1024 + 7
  assert (fine.vocab.pad_id, fine.vocab_size) == (12 * 1024, 12 * 1024 + 4)
  assert (coarse.vocab.eos_id, SemanticStage().vocab_size) == (5 * 1024 + 3, 1028)
  assert coarse.sequence_length == 2 + 250 + 500 * 4
  assert fine.sequence_length == 2 + 150 * 4 + 150 * 8


@pytest.mark.parametrize("frames", [0, 1, 2, 7, 10])
def test_semantic_layout_round_trip(frames):
  rng = np.random.default_rng(frames)
  ids = rng.integers(0, 8, frames * 2 + 1)[:frames * 2 + 1] if frames else np.array([], int)
  ids = ids[:SEMANTIC.max_frames]
  example = SEMANTIC.make_example(ids, reaches_end=True)
  dedup = stages.remove_consecutive_duplicates(ids)
  assert example.inputs.shape == (SEMANTIC.sequence_length,)
  np.testing.assert_array_equal(SEMANTIC.semantic_ids(example.inputs), dedup)
  # Targets are the inputs shifted; every token after BOS is learned, EOS included, then PAD.
  np.testing.assert_array_equal(example.targets[:-1], example.inputs[1:])
  assert example.weights.sum() == len(dedup) + 1
  assert example.targets[len(dedup)] == SEMANTIC.vocab.eos_id


@pytest.mark.parametrize("frames", [1, 3, 11, 20])
def test_coarse_layout_round_trip_and_weights(frames):
  rng = np.random.default_rng(frames)
  semantic = rng.integers(0, 8, (frames + 1) // 2)
  codes = rng.integers(0, 5, (frames, 12))  # Extra levels beyond Q' are ignored.
  example = COARSE.make_example(semantic, codes)
  p = COARSE.prefix_length
  assert example.inputs.shape == (COARSE.sequence_length,)
  assert example.inputs[p - 1] == COARSE.vocab.sep_id
  np.testing.assert_array_equal(COARSE.coarse_codes(example.inputs[None], frames)[0],
                                codes[:, :3])
  # Frame by frame, c(1,1) c(1,2) c(1,3) c(2,1) ..., level q at ids K_s + q * K + code.
  expected = [8 + q * 5 + codes[t, q] for t in range(frames) for q in range(3)]
  np.testing.assert_array_equal(example.inputs[p:p + frames * 3], expected)
  # The conditioning is right-aligned: PAD .. BOS s SEP.
  dedup = stages.remove_consecutive_duplicates(semantic)
  assert example.inputs[p - 2 - len(dedup)] == COARSE.vocab.bos_id
  np.testing.assert_array_equal(example.inputs[p - 1 - len(dedup):p - 1], dedup)
  # Loss weights: zero on the conditioning, one on every coarse target, zero on padding.
  weights = example.weights
  assert not weights[:p - 1].any() and weights.sum() == frames * 3
  np.testing.assert_array_equal(example.targets[weights > 0], example.inputs[p:p + frames * 3])


@pytest.mark.parametrize("frames", [1, 4, 10])
def test_fine_layout_round_trip_and_weights(frames):
  codes = np.random.default_rng(frames).integers(0, 5, (frames, 5))
  example = FINE.make_example(None, codes)
  p = FINE.prefix_length
  np.testing.assert_array_equal(FINE.fine_codes(example.inputs[None], frames)[0], codes[:, 2:])
  coarse_part = example.inputs[p - 1 - frames * 2:p - 1]
  np.testing.assert_array_equal(coarse_part.reshape(frames, 2) - [0, 5], codes[:, :2])
  assert not example.weights[:p - 1].any() and example.weights.sum() == frames * 3
  np.testing.assert_array_equal(example.targets[example.weights > 0],
                                example.inputs[p:p + frames * 3])


def test_prompts_match_the_training_layout():
  rng = np.random.default_rng(0)
  semantic = [rng.integers(0, 8, 10), rng.integers(0, 8, 4)]
  codes = rng.integers(0, 5, (2, 3, 3))
  prompt = COARSE.make_prompt(semantic, codes)
  assert prompt.shape == (2, COARSE.prefix_length + 9)
  for row in range(2):
    full = COARSE.make_example(semantic[row],
                               np.concatenate([codes[row], rng.integers(0, 5, (17, 3))]))
    np.testing.assert_array_equal(prompt[row], full.inputs[:prompt.shape[1]])
  fine_prompt = FINE.make_prompt(rng.integers(0, 5, (2, 10, 2)))
  assert fine_prompt.shape == (2, FINE.prefix_length)
  assert (fine_prompt[:, -1] == FINE.vocab.sep_id).all()
  semantic_prompt = SEMANTIC.make_prompt([[1, 1, 2], [3, 4, 5, 6]])
  np.testing.assert_array_equal(semantic_prompt, [[8, 8, 9, 1, 2], [9, 3, 4, 5, 6]])  # PAD=8, BOS=9


@pytest.mark.parametrize("stage", [SEMANTIC, COARSE, FINE, ACOUSTIC_ONLY],
                         ids=["semantic", "coarse", "fine", "acoustic_only"])
def test_logit_masks_allow_exactly_the_level_of_each_position(stage):
  rng = np.random.default_rng(1)
  codes = rng.integers(0, 5, (stage.max_frames, 12))
  semantic = rng.integers(0, 8, getattr(stage, "max_semantic_frames", stage.max_frames))
  example = stage.make_example(semantic, codes, reaches_end=True)
  mask = stage.logit_mask()
  assert mask.shape == (stage.sequence_length, stage.vocab_size)
  # Every token of a full example is allowed at its position (trailing padding aside).
  allowed = mask[np.arange(stage.sequence_length), example.inputs]
  assert allowed[example.inputs != stage.pad_id].all()
  # Generated positions allow one level's range (plus EOS in stage 1), never PAD/BOS/SEP.
  first = getattr(stage, "prefix_length", 1)
  generated = mask[first:]
  assert not generated[:, [stage.pad_id, stage.vocab.bos_id, stage.vocab.sep_id]].any()
  expected = 8 + 1 if stage is SEMANTIC else 5
  np.testing.assert_array_equal(generated.sum(-1), expected)
  # Training targets: the target mask allows each weighted target.
  target_mask = stage.target_logit_mask()
  weighted = example.weights > 0
  assert target_mask[np.arange(stage.sequence_length), example.targets][weighted].all()


def test_loss_is_zero_on_the_conditioning_part():
  rng = np.random.default_rng(2)
  for stage in (COARSE, FINE):
    example = stage.make_example(rng.integers(0, 8, 5), rng.integers(0, 5, (10, 12)))
    logits = jnp.asarray(rng.normal(size=(1, stage.sequence_length, stage.vocab_size)))
    args = (jnp.asarray(example.targets)[None], jnp.asarray(example.weights)[None])
    loss, metrics = tasks.weighted_cross_entropy(logits, *args)
    # Anything at the conditioning positions (targets before the first generated token) is
    # ignored.
    p = stage.prefix_length
    scrambled = logits.at[:, :p - 1].set(rng.normal(size=(1, p - 1, stage.vocab_size)) * 100)
    np.testing.assert_allclose(tasks.weighted_cross_entropy(scrambled, *args)[0], loss,
                               rtol=1e-6)
    assert float(metrics["tokens"]) == example.weights.sum() > 0
    # A masked loss only normalises over the valid level: never larger.
    masked, _ = tasks.weighted_cross_entropy(logits, *args, jnp.asarray(
        stage.target_logit_mask()))
    assert float(masked) < float(loss)


def test_aligned_crop_keeps_the_2_to_1_alignment():
  semantic = np.arange(40)
  acoustic = np.repeat(np.arange(40), 2)[:79, None] * np.ones((1, 3), int)  # Frame 2t, 2t+1 <- t.
  for seed in range(5):
    crop = stages.aligned_crop(np.random.default_rng(seed), 0.4, semantic_ids=semantic,
                               acoustic_codes=acoustic)
    assert len(crop.semantic_ids) == 10 and len(crop.acoustic_codes) == 20
    np.testing.assert_array_equal(crop.acoustic_codes[::2, 0], crop.semantic_ids)
    assert crop.reaches_end == (crop.semantic_ids[-1] == 38)  # 79 acoustic frames: 39 aligned.
  short = stages.aligned_crop(np.random.default_rng(0), 10.0, semantic_ids=semantic[:5])
  assert len(short.semantic_ids) == 5 and short.reaches_end
  fine = FINE.crop(np.random.default_rng(0), None, acoustic)
  assert fine.semantic_ids is None and len(fine.acoustic_codes) == FINE.max_frames


@pytest.mark.parametrize("task", ["semantic_lm", "coarse_lm", "fine_lm"])
def test_stage_from_config(task):
  config = load_config(f"{task}:paper")
  stage = pretrained.stage_from_config(config)
  assert stage.temperature == {"semantic_lm": 0.6, "coarse_lm": 0.8, "fine_lm": 0.6}[task]
  model = pretrained.transformer_config(config)
  assert (model.vocab_size, model.pad_id, model.max_len) == (
      stage.vocab_size, stage.pad_id, stage.sequence_length)
  with config.unlocked():
    config.stage.bogus = 1
  with pytest.raises(ConfigError, match="bogus"):
    pretrained.stage_from_config(config)


def test_layout_errors():
  with pytest.raises(DataError, match="frames"):
    COARSE.make_example([1], np.zeros((21, 3), int))
  with pytest.raises(DataError, match="levels"):
    FINE.make_example(None, np.zeros((3, 4), int))
  with pytest.raises(ConfigError):
    FineStage(num_coarse=12)
  with pytest.raises(ConfigError):
    _ = CoarseStage(crop_seconds=0.5).max_semantic_frames  # 12.5 semantic frames


def test_acoustic_only_coarse_layout():
  """The acoustic-only ablation: `BOS c(1,1) .. c(T,Q')`, no semantic ids, no semantic range."""
  stage = ACOUSTIC_ONLY
  assert stage.vocab.level_sizes == (5, 5, 5) and stage.vocab_size == 15 + 4
  assert stage.prefix_length == 1 and stage.sequence_length == 1 + 20 * 3
  rng = np.random.default_rng(3)
  codes = rng.integers(0, 5, (12, 4))
  example = stage.make_example(None, codes)
  flat = [q * 5 + codes[t, q] for t in range(12) for q in range(3)]
  np.testing.assert_array_equal(example.inputs[:37], [stage.vocab.bos_id] + flat)
  assert (example.inputs[37:] == stage.pad_id).all()
  np.testing.assert_array_equal(example.targets[example.weights > 0], flat)  # BOS predicts c(1,1).
  np.testing.assert_array_equal(stage.coarse_codes(example.inputs[None], 12)[0], codes[:, :3])
  # Semantic ids change nothing; prompts match the training layout, with or without ids.
  np.testing.assert_array_equal(stage.make_example(rng.integers(0, 8, 6), codes).inputs,
                                example.inputs)
  prompt = stage.make_prompt(None, codes[None, :4])
  np.testing.assert_array_equal(prompt[0], example.inputs[:1 + 4 * 3])
  np.testing.assert_array_equal(stage.make_prompt([[1, 2]], codes[None, :4]), prompt)
  np.testing.assert_array_equal(stage.make_prompt([[1], [2]]), [[stage.vocab.bos_id]] * 2)
  with pytest.raises(ValueError, match="semantic ids"):
    COARSE.make_prompt(None, codes[None, :4])
  # Crops are on the acoustic grid alone.
  crop = stage.crop(np.random.default_rng(0), None, rng.integers(0, 5, (45, 4)))
  assert crop.semantic_ids is None and crop.acoustic_codes.shape == (20, 4)


def test_acoustic_only_from_config():
  config = load_config("coarse_lm:tiny", [("stage.acoustic_only", "true")])
  stage = pretrained.stage_from_config(config)
  assert stage.acoustic_only and stage.prefix_length == 1
  assert pretrained.transformer_config(config).vocab_size == 2 * 32 + 4
