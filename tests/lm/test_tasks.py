"""Tests for lm/tasks.py: the three stages in the trainer, on a small fake token cache."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.config import load_config
from audiolm_jax.data.tokens import write_token_cache
from audiolm_jax.errors import ConfigError
from audiolm_jax.tasks import stages as tasks
from audiolm_jax.tasks.stages import weighted_cross_entropy
from audiolm_jax.train.task import build_task
from audiolm_jax.train.trainer import train

STAGES = ("semantic_lm", "coarse_lm", "fine_lm")
K, Q = 32, 4  # Codebook sizes and RVQ levels of the tiny presets.


def utterances(n, seed):
  """Random utterances of 6..35 semantic frames (the tiny crops: 25, 10 and 10 of them)."""
  rng = np.random.default_rng(seed)
  for i in range(n):
    t = int(rng.integers(6, 36))
    yield {"semantic": rng.integers(0, K, t), "acoustic": rng.integers(0, K, (2 * t, Q)),
           "speaker_id": i % 2, "sentence_id": i, "transcript": f"utterance {i}"}


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tokens"))
  write_token_cache(path, {"train": utterances(12, 0), "validation": utterances(5, 1)})
  return path


def stage_config(task, tokens_dir, *overrides):
  pairs = [("data.tokens_dir", tokens_dir), ("progress_bar", "false"),
           ("peak_flops_per_device", "1e12"), *overrides]
  return load_config(f"{task}:tiny", pairs)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize("task,devices", [("semantic_lm", 1), ("coarse_lm", 2), ("fine_lm", 1)])
def test_each_stage_trains_evaluates_and_checkpoints(task, devices, tokens_dir, tmp_path):
  config = stage_config(task, tokens_dir, ("total_steps", "2"), ("checkpoint_every", "2"),
                        ("eval_every", "2"), ("mesh.data", str(devices)))
  result = train(config, str(tmp_path))
  assert result.step == 2 and result.origin == "fresh"
  assert os.listdir(tmp_path / "checkpoints") == ["2"]
  for metrics in (result.last_metrics, result.eval_metrics):
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    assert 0 <= metrics["accuracy"] <= 1
    np.testing.assert_allclose(metrics["perplexity"], np.exp(metrics["loss"]), rtol=1e-5)
  assert result.last_metrics["tokens_per_s"] > 0 and result.last_metrics["mfu"] > 0
  # At random init the loss is near that of a uniform choice among the allowed ids (3.5), far
  # from a softmax over the whole vocabulary (4.6 and 4.9 for stages 2 and 3).
  assert result.last_metrics["loss"] < np.log(K + 1) + 1.0


@pytest.mark.parametrize("acoustic_only", [False, True])
def test_batches_have_the_layout_and_fixed_shapes(tokens_dir, acoustic_only):
  task = build_task(stage_config("coarse_lm", tokens_dir,
                                 ("stage.acoustic_only", str(acoustic_only))))
  stage, n = task.stage, task.stage.sequence_length
  spec = task.batch_spec(8)
  allowed = stage.logit_mask()
  for batch in take(task.make_iterator("train", 0, 1), 3):
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        k: (s.shape, s.dtype) for k, s in spec.items()}
    assert batch["valid"].all() and (batch["weights"].sum(1) > 0).all()
    inputs = batch["inputs"]
    # Every token is one the layout allows at its position (padding at the end aside).
    assert allowed[np.arange(n), inputs][inputs != stage.pad_id].all()
    separator = stage.vocab.bos_id if acoustic_only else stage.vocab.sep_id
    assert (inputs[:, stage.prefix_length - 1] == separator).all()
    np.testing.assert_array_equal(batch["targets"][:, :-1], inputs[:, 1:])
  assert task.units_per_example(spec) == n


def test_iterator_resumes_exactly_and_ignores_the_process_count(tokens_dir):
  task = build_task(stage_config("fine_lm", tokens_dir))
  iterator = task.make_iterator("train", 0, 1)
  take(iterator, 3)  # Past the first epoch (12 utterances, 8 a batch).
  state = iterator.get_state()
  expected = take(iterator, 3)
  resumed = task.make_iterator("train", 0, 1)
  resumed.set_state(state)
  halves = [task.make_iterator("train", p, 2) for p in range(2)]
  for half in halves:
    take(half, 3)
  for want, got, first, second in zip(expected, take(resumed, 3), take(halves[0], 3),
                                      take(halves[1], 3)):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
      np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), want[key])
  # Crops are random: two epochs of the 12 utterances do not repeat the same rows.
  rows = np.concatenate([b["inputs"] for b in take(task.make_iterator("train", 0, 1), 3)])
  assert len({r.tobytes() for r in rows[:12]} & {r.tobytes() for r in rows[12:24]}) < 6


def test_evaluation_is_one_padded_pass(tokens_dir):
  task = build_task(stage_config("semantic_lm", tokens_dir))
  halves = [list(task.make_iterator("validation", p, 2)) for p in range(2)]
  assert [len(h) for h in halves] == [1, 1]  # 5 utterances, global batches of 8.
  batch = {k: np.concatenate([halves[0][0][k], halves[1][0][k]]) for k in halves[0][0]}
  np.testing.assert_array_equal(batch["valid"], [1] * 5 + [0] * 3)
  assert (batch["inputs"][5:] == task.stage.pad_id).all() and not batch["weights"][5:].any()
  again = next(task.make_iterator("validation", 0, 1))
  for key in batch:  # The same crops every time.
    np.testing.assert_array_equal(again[key], batch[key])


def test_invalid_rows_contribute_nothing(tokens_dir, random_params):
  task = build_task(stage_config("semantic_lm", tokens_dir))
  batch = next(task.make_iterator("train", 0, 1))
  params = random_params(task.model, jnp.asarray(batch["inputs"]))

  def loss_and_weight(params, batch):
    out = task.loss(params, {}, batch, jax.random.key(0), train=True)
    return out.loss, out.weight

  value_and_grad = jax.jit(jax.value_and_grad(loss_and_weight, has_aux=True))
  (loss, weight), grads = value_and_grad(params, batch)

  @jax.jit
  def reference(params, batch):
    """Cross entropy of the weighted targets over the ids allowed at each, and over all ids."""
    logits = task.model.apply({"params": params}, batch["inputs"])
    args = (logits, batch["targets"], batch["weights"])
    return (weighted_cross_entropy(*args, task.stage.target_logit_mask())[0],
            weighted_cross_entropy(*args)[0])

  expected, unmasked = reference(params, batch)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert float(unmasked) > float(loss) + 1e-3
  # Rows 5..7 become invalid, with other content: only rows 0..4 count.
  changed = {k: v.copy() for k, v in batch.items()}
  changed["valid"][5:] = 0
  changed["inputs"][5:] = np.roll(batch["inputs"][5:], 3, axis=1)
  changed["targets"][5:] = batch["targets"][:3]
  (loss_5, weight_5), grads_5 = value_and_grad(params, changed)
  assert weight_5 == batch["weights"][:5].sum() < weight == batch["weights"].sum()
  changed["inputs"][5:] = task.stage.pad_id
  (loss_pad, _), grads_pad = value_and_grad(params, changed)
  np.testing.assert_allclose(loss_pad, loss_5, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(grads_5), jax.tree.leaves(grads_pad)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert abs(float(loss_5) - float(loss)) > 1e-4 and np.isfinite(float(loss))


def test_paper_presets_flops_parameters_and_loss_mask():
  for task_name in STAGES:
    task = build_task(load_config(f"{task_name}:paper", [("data.tokens_dir", "unused")]))
    boxed, extra = jax.eval_shape(task.init, jax.random.key(0))
    assert extra == {}
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    # Matmul weights: every kernel but the token embedding, the relative position table and
    # the norm scales (stacked over layers by the paper preset's scan).
    matmul = sum(int(np.prod(x.shape))
                 for path, x in jax.tree_util.tree_leaves_with_path(nn.unbox(boxed))
                 if not any(name in jax.tree_util.keystr(path)
                            for name in ("token_embed", "relpos", "norm")))
    cfg, n = task.model_config, task.stage.sequence_length
    attention = 12 * cfg.num_layers * n * n * cfg.num_heads * cfg.head_dim
    # Useful FLOPs: stages 2 and 3 score only their learned targets, each over one level.
    span = task.stage.level_span()
    output = cfg.d_model * (cfg.vocab_size * n if span is None else
                            span.frames * span.levels * span.width)
    assert (span is None) == (task_name == "semantic_lm")
    assert task.flops_per_example() == 6 * (matmul - cfg.d_model * cfg.vocab_size) * n + (
        6 * output + attention)
    # The loss's logit mask is kept as its few distinct rows.
    mask = task.stage.target_logit_mask()
    rows, index = tasks.distinct_rows(mask)
    assert len(rows) <= 11 and index.shape == (n,)
    np.testing.assert_array_equal(rows[index], mask)


def test_config_errors(tokens_dir, tmp_path):
  task = build_task(load_config("semantic_lm:tiny"))
  with pytest.raises(ConfigError, match="--config.data.tokens_dir"):
    task.make_iterator("train", 0, 1)
  # A cache whose codes do not fit the stage (K=32 codes, a codebook of 16 configured).
  small = build_task(stage_config("fine_lm", tokens_dir, ("stage.acoustic_codebook_size", "16")))
  with pytest.raises(ConfigError, match="does not fit config.stage"):
    small.make_iterator("train", 0, 1)
  with pytest.raises(ConfigError, match="config.task"):
    tasks.CoarseLMTask(load_config("fine_lm:tiny"))


def test_stage_sizes_come_from_the_token_cache(tmp_path):
  """A cache records its vocabularies; each stage takes them (and the fine stage all of its
  levels) instead of the preset's, unless `data.sizes_from_cache` is off."""
  from audiolm_jax.data.tokens import CacheInfo
  cache = str(tmp_path / "cache")
  write_token_cache(cache, {"train": utterances(3, 0)},
                    CacheInfo(semantic_vocab_size=48, acoustic_vocab_size=40, num_quantizers=6))
  # The preset says K = 32 everywhere, Q = 4; the cache wins.
  assert build_task(stage_config("semantic_lm", cache)).stage.codebook_size == 48
  coarse = build_task(stage_config("coarse_lm", cache)).stage
  assert (coarse.semantic_codebook_size, coarse.acoustic_codebook_size) == (48, 40)
  config = stage_config("fine_lm", cache)
  fine = build_task(config).stage
  assert (fine.acoustic_codebook_size, fine.num_quantizers) == (40, 6)
  assert (config.stage.acoustic_codebook_size, config.stage.num_quantizers) == (40, 6)  # saved
  kept = build_task(stage_config("coarse_lm", cache, ("data.sizes_from_cache", "false"))).stage
  assert (kept.semantic_codebook_size, kept.acoustic_codebook_size) == (K, K)
  # A cache without recorded sizes (0) leaves the config alone.
  assert tasks.sizes_from_cache(stage_config("coarse_lm", tokens_dir_without_sizes(tmp_path))) == {}


def tokens_dir_without_sizes(tmp_path):
  path = str(tmp_path / "no_sizes")
  write_token_cache(path, {"train": utterances(2, 1)})
  return path
