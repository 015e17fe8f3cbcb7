"""w2v-BERT losses: masking, negatives, numpy references, and a tiny pre-training run."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiolm_jax.semantic import losses, w2v_bert


def test_span_mask_stays_in_valid_frames_and_masks_whole_spans():
  valid = jnp.arange(200)[None] < jnp.array([[200], [120], [1], [0]])  # [4, 200]
  span_mask = jax.jit(losses.span_mask, static_argnums=(2, 3))
  mask = np.asarray(span_mask(jax.random.key(0), valid, 0.065, 10))
  assert mask.shape == (4, 200) and mask.dtype == bool
  assert not (mask & ~np.asarray(valid)).any()
  assert mask[2].tolist() == [True] + [False] * 199  # a one-frame clip still gets its span
  assert not mask[3].any()  # an empty clip gets none
  # Runs of masked frames are at least mask_length long unless cut by the clip's end.
  for row, n in zip(mask[:2], (200, 120)):
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row[:n].astype(int), [0]])))
    starts, ends = edges[::2], edges[1::2]
    assert np.all((ends - starts >= 10) | (ends == n))
  # About 1 - (1 - p)^M of the frames end up masked.
  big = np.asarray(span_mask(jax.random.key(1), jnp.ones((64, 500), bool), 0.065, 10))
  assert abs(big.mean() - (1 - 0.935**10)) < 0.03


def test_negatives_are_other_masked_frames_of_the_same_utterance():
  mask = np.zeros((3, 12), bool)
  mask[0, [1, 2, 5, 9]] = True
  mask[1, [4]] = True  # one masked frame: no distractor possible
  ids, valid = losses.sample_negatives(jax.random.key(0), jnp.asarray(mask), 50)
  ids, valid = np.asarray(ids), np.asarray(valid)
  assert ids.shape == valid.shape == (3, 12, 50)
  assert not valid[1].any() and not valid[2].any()
  assert (valid[0] == mask[0][:, None]).all()
  for t in np.flatnonzero(mask[0]):
    drawn = set(ids[0, t].tolist())
    assert drawn == set(np.flatnonzero(mask[0]).tolist()) - {t}  # all others, never itself


def _contrastive_reference(context, targets, mask, neg_ids, neg_valid, temperature):
  """Straight numpy InfoNCE, loop by loop."""
  cos = lambda a, b: a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  losses_, correct = [], []
  for b, t in zip(*np.nonzero(mask)):
    logits = [cos(context[b, t], targets[b, t])]
    for n, ok in zip(neg_ids[b, t], neg_valid[b, t]):
      if ok and not np.array_equal(targets[b, n], targets[b, t]):
        logits.append(cos(context[b, t], targets[b, n]))
    logits = np.array(logits) / temperature
    logz = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
    losses_.append(logz - logits[0])
    correct.append(np.argmax(logits) == 0)
  return np.mean(losses_), np.mean(correct)


def test_contrastive_loss_equals_numpy_reference():
  rng = np.random.default_rng(0)
  context = rng.standard_normal((2, 6, 5)).astype(np.float32)
  targets = rng.standard_normal((2, 6, 5)).astype(np.float32)
  targets[0, 4] = targets[0, 1]  # a repeated codebook entry: not a distractor of frame 1
  mask = np.array([[0, 1, 1, 0, 1, 1], [1, 0, 0, 1, 1, 0]], bool)
  neg_ids = rng.integers(0, 6, (2, 6, 3))
  neg_ids[0, 1] = [2, 4, 5]
  neg_valid = rng.random((2, 6, 3)) > 0.2
  neg_valid[0, 1] = True
  loss, acc = losses.contrastive_loss(context, targets, mask, neg_ids, neg_valid, 0.1)
  ref_loss, ref_acc = _contrastive_reference(context, targets, mask, neg_ids, neg_valid, 0.1)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(acc, ref_acc)


def test_diversity_loss():
  np.testing.assert_allclose(losses.diversity_loss(jnp.full((2, 8), 1 / 8)), 0.0, atol=1e-6)
  collapsed = jax.nn.one_hot(jnp.array([3, 5]), 8)
  np.testing.assert_allclose(losses.diversity_loss(collapsed), (16 - 2) / 16, rtol=1e-6)


def test_masked_prediction_loss_only_counts_masked_frames():
  rng = np.random.default_rng(1)
  logits = rng.standard_normal((2, 5, 2, 7)).astype(np.float32)
  ids = rng.integers(0, 7, (2, 5, 2))
  mask = np.array([[1, 0, 1, 0, 0], [0, 0, 1, 1, 1]], bool)
  loss, acc = losses.masked_prediction_loss(logits, ids, mask)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, ids[..., None], -1)[..., 0]
  np.testing.assert_allclose(loss, nll[mask].mean(), rtol=1e-5)
  np.testing.assert_allclose(acc, (logits.argmax(-1) == ids)[mask].mean())
  junk = logits.copy()
  junk[~mask] = 1e3 * rng.standard_normal(junk[~mask].shape)
  np.testing.assert_allclose(losses.masked_prediction_loss(junk, ids, mask)[0], loss, rtol=1e-6)
  junk[mask] += 5.0 * rng.standard_normal(junk[mask].shape)
  assert abs(float(losses.masked_prediction_loss(junk, ids, mask)[0]) - float(loss)) > 1e-2


def test_gumbel_temperature_schedule(tiny_loss_config):
  cfg = tiny_loss_config
  assert float(losses.gumbel_temperature(0, cfg)) == cfg.gumbel_start
  assert float(losses.gumbel_temperature(10**9, cfg)) == cfg.gumbel_end


def test_tiny_pretraining_lowers_both_losses(tiny_model_config, tiny_loss_config, tiny_params,
                                             make_audio, make_key):
  # A fixed batch with fixed masks, distractors and Gumbel noise (one key, one temperature):
  # the objective is a fixed function of the parameters, which plain Adam must lower.
  model = w2v_bert.W2VBert(tiny_model_config)
  wav = make_audio(4, 10240)  # 16 frames each
  wav_mask = np.ones_like(wav, bool)
  wav_mask[3, 7000:] = False  # one clip ends in padding
  params = nn.unbox(tiny_params)
  opt = optax.adam(1e-3)
  opt_state = opt.init(params)
  key = make_key(7)

  def loss_fn(params):
    return losses.pretraining_loss(model, params, wav, wav_mask, key, tiny_loss_config, step=0)

  @jax.jit
  def train_step(params, opt_state):
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params)  # metrics before the update
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, metrics

  history = []
  for _ in range(31):
    params, opt_state, metrics = train_step(params, opt_state)
    history.append(jax.tree.map(float, metrics))
    assert np.isfinite(history[-1]["loss"]), len(history)
  before, after = history[0], history[-1]  # the objective at step 0 and after 30 updates
  for name in ("contrastive_loss", "mlm_loss", "loss"):
    assert after[name] < 0.8 * before[name], (name, before, after)
  for name in ("codebook_perplexity", "code_perplexity", "contrastive_accuracy", "mlm_accuracy",
               "diversity_loss", "infonce_loss"):
    assert np.isfinite(after[name]), name
  assert 0.0 < after["mask_fraction"] < 1.0
  assert after["gumbel_temperature"] == tiny_loss_config.gumbel_start
