"""The one batched tokenize path: bucketing, padding and cutting back; the frame rule of the
acoustic tokens; and cache tokens equal to the tokens a prompt gets."""

import os

import numpy as np
import pytest

from audiolm_jax import tokenize
from audiolm_jax.errors import ConfigError, DataError


def test_run_by_length_batches_pads_and_cuts():
  shapes = []

  def valid_samples_per_frame(wav, mask):  # [B, S] -> [B, S / 640]
    shapes.append(wav.shape)
    b, s = wav.shape
    return (mask & (wav == 1)).reshape(b, s // 640, 640).sum(-1)

  lengths = [1, 640, 641, 5000, 20000, 7, 12345]
  wavs = [np.ones(n, np.float32) for n in lengths]
  out = tokenize.run_by_length(valid_samples_per_frame, wavs, 3, lambda s: -(-s // 640),
                               unit=640)
  for n, ids in zip(lengths, out):  # In order, cut to ceil(S / 640) frames, padding unseen.
    assert len(ids) == -(-n // 640) and ids.sum() == n
  frames = [s // 640 for _, s in shapes]
  assert all(b == 3 for b, _ in shapes)  # A short last batch gets empty rows, no new shape.
  assert all(f >= 16 and tokenize.bucket_length(f) == f for f in frames)
  two_per_frame = tokenize.run_by_length(
      lambda w, m: np.repeat(valid_samples_per_frame(w, m), 2, axis=1), wavs, 3,
      lambda s: 2 * -(-s // 640), unit=640)
  for ids, ids2 in zip(out, two_per_frame):
    np.testing.assert_array_equal(np.repeat(ids, 2), ids2)
  with pytest.raises(ConfigError):
    tokenize.run_by_length(valid_samples_per_frame, wavs, 0, len)


def test_buckets_pad_at_most_a_quarter_and_are_few():
  lengths = range(1, 5000)
  buckets = {tokenize.bucket_length(n, minimum=1) for n in lengths}
  assert all(n <= tokenize.bucket_length(n, 1) <= max(n * 1.25, n + 1) for n in lengths)
  assert len(buckets) <= 4 * 13 + 8   # four per octave
  assert tokenize.bucket_length(3) == 16  # the minimum


def test_bad_clips_are_one_line_errors():
  class Codec:  # Just enough of a codec for the checks that run before any encoding.
    class config:
      hop_length = 320
    sample_rate = 16000
    num_quantizers = 4
  with pytest.raises(DataError, match="clip 1"):
    tokenize.acoustic_tokens(Codec(), [np.zeros(100), np.zeros(0)])
  with pytest.raises(DataError, match="clip 0"):
    tokenize.acoustic_tokens(Codec(), [np.full(100, np.nan)])


class _FakeCodec:
  """50 Hz codes whose first level is the frame's mean |sample| bucket (so content shows)."""

  class config:  # pylint: disable=invalid-name
    hop_length = 320
    codebook_size = 16
  sample_rate = 16000
  num_quantizers = 3

  def encode(self, wav, n_q=None):
    frames = wav.shape[1] // 320
    x = np.abs(np.asarray(wav)[:, :frames * 320]).reshape(wav.shape[0], frames, 320).mean(-1)
    return np.stack([np.minimum((x * 50).astype(np.int32), 15)] * (n_q or 3), -1)


class _FakeTokenizer:
  samples_per_frame = 640
  num_clusters = 7

  def tokenize(self, wav, mask=None):
    frames = -(-wav.shape[1] // 640)
    return np.arange(frames)[None].repeat(wav.shape[0], 0) % 7


def test_tokenize_corpus_keeps_the_frame_ratio_and_metadata(tmp_path, tiny_data_dir):
  from audiolm_jax.data import corpora, tokens
  from audiolm_jax.frames import num_frames
  summary = tokenize.tokenize_corpus(str(tmp_path / "cache"), corpus="synthetic_speech",
                                     splits=("train", "validation"), codec=_FakeCodec(),
                                     semantic_tokenizer=_FakeTokenizer(),
                                     data_dir=tiny_data_dir, config_name="tiny", batch_size=4,
                                     progress=False)
  audio = corpora.data_source("synthetic_speech", "validation", tiny_data_dir, "tiny")
  assert summary["splits"]["validation"] == len(audio) and summary["skipped"] == 0
  cache = tokens.token_source(str(tmp_path / "cache"), "validation")
  lengths = sorted(num_frames(len(audio[i]["audio"])) for i in range(len(audio)))
  got = sorted(len(cache[i]["semantic"]) for i in range(len(cache)))
  assert got == lengths
  for i in range(len(cache)):
    ex = cache[i]
    assert ex["acoustic"].shape == (2 * len(ex["semantic"]), 3)
    assert ex["transcript"] and int(ex["speaker_id"]) >= 0
  info = tokens.read_cache_info(str(tmp_path / "cache"))
  assert (info.frame_ratio, info.semantic_vocab_size, info.acoustic_vocab_size,
          info.num_quantizers) == (2, 7, 16, 3)
  assert set(info.frames_per_token) == {"train", "validation"}


def test_cache_tokens_equal_the_tokens_of_each_clip_alone(tmp_path, tiny_data_dir):
  """The token cache batches clips of different lengths, padded; a prompt is tokenized alone.
  The semantic tokenizer's conformer must not see the padding (it would change the valid
  frames' features, and so ids), or training and generation would disagree."""
  import jax
  from audiolm_jax.config import load_config
  from audiolm_jax.data import corpora, tokens
  from audiolm_jax.data.audio import from_int16
  from audiolm_jax.semantic import w2v_bert
  from audiolm_jax.semantic.tokenizer import SemanticTokenizer
  cfg = w2v_bert.W2VBertConfig.from_config(load_config("w2v_bert:tiny").model)
  params = w2v_bert.init_params(cfg, jax.random.key(0))
  extractor = w2v_bert.feature_extractor(cfg, params, 1)
  centroids = np.random.default_rng(0).normal(size=(16, extractor.dim)).astype(np.float32)
  tokenizer = SemanticTokenizer(extractor, np.zeros(extractor.dim), np.ones(extractor.dim) * 0.1,
                                centroids)
  cache = str(tmp_path / "cache")
  tokenize.tokenize_corpus(cache, corpus="synthetic_speech", splits=("validation",),
                           codec=_FakeCodec(), semantic_tokenizer=tokenizer,
                           data_dir=tiny_data_dir, config_name="tiny", batch_size=4,
                           progress=False)
  audio = corpora.data_source("synthetic_speech", "validation", tiny_data_dir, "tiny")
  source = tokens.token_source(cache, "validation")
  cached = {int(source[i]["sentence_id"]) * 1000 + int(source[i]["speaker_id"]):
            source[i]["semantic"] for i in range(len(source))}
  assert len({len(v) for v in cached.values()}) > 1  # Clips of several lengths were batched.
  for i in range(len(audio)):
    record = audio[i]
    alone = np.asarray(tokenizer.tokenize(from_int16(record["audio"])[None]))[0]
    key = int(record["sentence_id"]) * 1000 + int(record["speaker_id"])
    np.testing.assert_array_equal(cached[key], alone)


class _IndexCodec(_FakeCodec):
  """50 Hz codes that number the clip's frames (mod 16), so an alignment can be read back."""

  def encode(self, wav, n_q=None):
    frames = wav.shape[1] // 320
    index = np.arange(frames)[None].repeat(wav.shape[0], 0) % 16
    return np.stack([index] * (n_q or 3), -1).astype(np.int32)


class _IndexTokenizer:
  """Ids that number each semantic frame by the first codec frame it covers (mod 16)."""
  num_clusters = 16

  def __init__(self, samples_per_frame):
    self.samples_per_frame = samples_per_frame

  def tokenize(self, wav, mask=None):
    frames = -(-wav.shape[1] // self.samples_per_frame)
    ratio = self.samples_per_frame // 320
    return (np.arange(frames)[None].repeat(wav.shape[0], 0) * ratio) % 16


@pytest.mark.parametrize("samples_per_frame", [640, 320])  # 25 Hz semantic (2:1) and 50 Hz (1:1)
def test_stage_crops_align_the_tokenizers_frame_ratio(tmp_path, tiny_data_dir, samples_per_frame):
  from audiolm_jax.data import tokens
  from audiolm_jax.lm.stages import CoarseStage
  from audiolm_jax.tasks import stages as stage_tasks
  ratio = samples_per_frame // 320
  cache = str(tmp_path / "cache")
  tokenize.tokenize_corpus(cache, corpus="synthetic_speech", splits=("train",),
                           codec=_IndexCodec(),
                           semantic_tokenizer=_IndexTokenizer(samples_per_frame),
                           data_dir=tiny_data_dir, config_name="tiny", batch_size=4,
                           progress=False)
  assert tokens.read_cache_info(cache).frame_ratio == ratio
  stage = CoarseStage(semantic_codebook_size=16, acoustic_codebook_size=16, num_coarse=2,
                      crop_seconds=0.4, semantic_rate=50 // ratio, acoustic_rate=50)
  assert stage.frames_per_semantic_frame == ratio
  source = tokens.token_source(cache, "train")
  rng = np.random.default_rng(0)
  for i in range(len(source)):
    record = source[i]
    assert len(record["acoustic"]) == ratio * len(record["semantic"])
    crop = stage.crop(rng, record["semantic"], record["acoustic"])
    # Semantic frame t of the crop covers its codec frames r t .. r t + r - 1, as in the clip.
    np.testing.assert_array_equal(crop.acoustic_codes[::ratio, 0], crop.semantic_ids)
    assert len(crop.acoustic_codes) == ratio * len(crop.semantic_ids)
  rows = stage_tasks.token_dataset(stage, cache, "train", seed=0, train=False)
  assert all(float(rows[i]["valid"]) == 1.0 for i in range(len(source)))
  # A layout of the other ratio is refused at start-up, not trained misaligned.
  other = CoarseStage(semantic_codebook_size=16, acoustic_codebook_size=16, num_coarse=2,
                      crop_seconds=0.4, semantic_rate=25 if ratio == 1 else 50, acoustic_rate=50)
  with pytest.raises(ConfigError, match="codec frames per semantic frame"):
    stage_tasks.token_dataset(other, cache, "train", seed=0, train=False)


def _cache_records(cache):
  from audiolm_jax.data import tokens
  return {split: [source[i] for i in range(len(source))]
          for split, source in sorted(tokens.token_sources(cache).items())}


def _assert_same_records(a, b):
  assert sorted(a) == sorted(b)
  for split in a:
    assert len(a[split]) == len(b[split]), split
    for x, y in zip(a[split], b[split]):
      assert sorted(x) == sorted(y)
      for key in x:
        np.testing.assert_array_equal(x[key], y[key])


def test_tokenize_corpus_streams_chunks_and_resumes_after_a_crash(tmp_path, tiny_data_dir,
                                                                  monkeypatch):
  """A kill between chunks loses only the chunk in progress: the rerun skips the written
  ones and gives the cache an uninterrupted run gives; the older cache stays readable until
  the new one is complete; other settings are refused unless `overwrite`."""
  from audiolm_jax.data import tokens
  kwargs = dict(corpus="synthetic_speech", splits=("train", "validation"),
                semantic_tokenizer=_FakeTokenizer(), data_dir=tiny_data_dir,
                config_name="tiny", batch_size=2, max_examples=5, chunk_size=2, progress=False)
  whole = str(tmp_path / "whole")
  summary = tokenize.tokenize_corpus(whole, codec=_FakeCodec(), **kwargs)
  assert summary["chunks"] == {"total": 6, "this_process": 6, "resumed": 0}  # 3 per split
  expected = _cache_records(whole)
  assert [len(v) for v in expected.values()] == [5, 5]

  cache = str(tmp_path / "cache")
  tokens.write_token_cache(cache, {"train": [{"semantic": np.zeros(2, int),
                                              "acoustic": np.zeros((4, 3), int)}]})
  calls = []
  real_acoustic = tokenize.acoustic_tokens

  def dies_on_the_fourth_chunk(*args, **kw):
    calls.append(1)
    if len(calls) == 4:
      raise KeyboardInterrupt  # as a kill would, between two chunks' writes
    return real_acoustic(*args, **kw)

  monkeypatch.setattr(tokenize, "acoustic_tokens", dies_on_the_fourth_chunk)
  with pytest.raises(KeyboardInterrupt):
    tokenize.tokenize_corpus(cache, codec=_FakeCodec(), **kwargs)
  assert len(tokens.token_source(cache, "train")) == 1  # The old cache, untouched.
  monkeypatch.setattr(tokenize, "acoustic_tokens", real_acoustic)
  with pytest.raises(DataError, match="other settings .*max_examples"):
    tokenize.tokenize_corpus(cache, codec=_FakeCodec(), **{**kwargs, "max_examples": 4})
  summary = tokenize.tokenize_corpus(cache, codec=_FakeCodec(), **kwargs)
  assert summary["chunks"]["resumed"] == 3 and summary["splits"] == {"train": 5,
                                                                      "validation": 5}
  _assert_same_records(_cache_records(cache), expected)
  assert tokens.read_cache_info(cache) == tokens.read_cache_info(whole)
  assert not os.path.exists(os.path.join(cache, tokens.PARTIAL))
  # A half-built cache with other settings is discarded with `overwrite`.
  monkeypatch.setattr(tokenize, "acoustic_tokens", dies_on_the_fourth_chunk)
  calls.clear()
  with pytest.raises(KeyboardInterrupt):
    tokenize.tokenize_corpus(cache, codec=_FakeCodec(), **kwargs)
  monkeypatch.setattr(tokenize, "acoustic_tokens", real_acoustic)
  summary = tokenize.tokenize_corpus(cache, codec=_FakeCodec(), overwrite=True,
                                     **{**kwargs, "max_examples": 3})
  assert summary["chunks"]["resumed"] == 0 and summary["splits"]["train"] == 3


def test_tokenize_corpus_skips_and_counts_unreadable_records(tmp_path, tiny_data_dir,
                                                             monkeypatch):
  from audiolm_jax.data import corpora
  real = corpora.data_source

  class Damaged:
    def __init__(self, source):
      self.source = source

    def __len__(self):
      return len(self.source)

    def __getitem__(self, i):
      if i == 1:
        raise OSError("bad record")
      record = dict(self.source[i])
      if i == 2:
        record["audio"] = np.zeros(0, np.int16)
      return record

  monkeypatch.setattr(corpora, "data_source", lambda *a, **k: Damaged(real(*a, **k)))
  summary = tokenize.tokenize_corpus(str(tmp_path / "c"), corpus="synthetic_speech",
                                     splits=("train",), codec=_FakeCodec(),
                                     semantic_tokenizer=_FakeTokenizer(),
                                     data_dir=tiny_data_dir, config_name="tiny",
                                     max_examples=4, chunk_size=2, progress=False)
  assert summary["skipped"] == 2 and summary["splits"] == {"train": 2}
