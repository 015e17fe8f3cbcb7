"""The domain language model builder, acoustic adaptation and the recogniser built on them."""

import json
import os
import shutil

import numpy as np
import pytest

from audiolm_jax.eval import acoustic_adaptation, asr, ngram, sphinx_files

CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the dog", "the cat sat"]


def vocabulary(model):
  return [w for w in model.vocabulary if w != ngram.BOS]


def total(model, context):
  return sum(10.0 ** model.logprob(w, context) for w in vocabulary(model))


@pytest.mark.parametrize("estimator", [ngram.kneser_ney, ngram.witten_bell])
def test_every_context_sums_to_one(estimator):
  model = estimator([s.split() for s in CORPUS], 3, vocabulary=["zebra"])
  assert "zebra" in model.vocabulary and ngram.EOS in model.vocabulary
  contexts = [(), ("the",), ("<s>",), ("<s>", "the"), ("the", "cat"), ("sat", "on"),
              ("on", "the"), ("zebra",), ("cat", "zebra"), ("nowhere", "seen")]
  for context in contexts:
    assert total(model, context) == pytest.approx(1.0, abs=1e-9), context


def test_kneser_ney_matches_hand_computed_values():
  # <s> a b </s>, <s> a c </s>. Unigram continuation counts: a 1, b 1, c 1, </s> 2 (total 5);
  # n1 = 3, n2 = 1, so D1 = 3 / 5; 4 word types; uniform 1/4 over {a, b, c, </s>}.
  # Bigram counts: <s> a 2, a b 1, a c 1, b </s> 1, c </s> 1: D2 = 4 / 6.
  model = ngram.kneser_ney([["a", "b"], ["a", "c"]], order=2)
  p_a = (1 - 0.6) / 5 + 0.6 * 4 / 5 / 4
  p_eos = (2 - 0.6) / 5 + 0.6 * 4 / 5 / 4
  assert 10 ** model.logprob("a") == pytest.approx(p_a)
  assert 10 ** model.logprob(ngram.EOS) == pytest.approx(p_eos)
  d2 = 4 / 6
  p_b_a = (1 - d2) / 2 + d2 * 2 / 2 * p_a  # p(b) = p(a) = 0.2
  assert 10 ** model.logprob("b", ("a",)) == pytest.approx(p_b_a)
  # Unseen after a: the backoff weight times the unigram.
  assert 10 ** model.logprob("a", ("a",)) == pytest.approx(d2 * 2 / 2 * p_a)


def test_backoff_weights_are_what_is_left_over_what_the_lower_order_leaves():
  model = ngram.kneser_ney([s.split() for s in CORPUS], 3)
  for n in (1, 2):
    for context, (_, bow) in model.entries[n - 1].items():
      seen = [g[-1] for g in model.entries[n] if g[:-1] == context]
      if not seen:
        assert bow == 0.0
        continue
      left = 1 - sum(10 ** model.entries[n][context + (w,)][0] for w in seen)
      lower = 1 - sum(10 ** model.logprob(w, context[1:]) for w in seen)
      assert 10 ** bow == pytest.approx(left / lower), context


def test_arpa_round_trip_and_pocketsphinx_reads_the_same_probabilities(tmp_path):
  from pocketsphinx import Config, LogMath, NGramModel
  model = ngram.kneser_ney([s.split() for s in CORPUS], 3)
  path = model.write_arpa(str(tmp_path / "lm.arpa"))
  text = open(path).read()
  assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
  again = ngram.NGramLM.read_arpa(path)
  assert [len(t) for t in again.entries] == [len(t) for t in model.entries]
  logmath = LogMath()
  sphinx = NGramModel(Config(), logmath, path)
  for context in [(), ("the",), ("<s>", "the"), ("the", "cat"), ("log",), ("mat", "the")]:
    for w in vocabulary(model):
      ours = model.logprob(w, context)
      assert again.logprob(w, context) == pytest.approx(ours, abs=1e-5)
      theirs = logmath.log_to_log10(sphinx.prob([w, *reversed(context)]))
      assert theirs == pytest.approx(ours, abs=2e-3), (w, context)


def test_interpolation_normalises_and_adds_the_general_vocabulary():
  domain = ngram.kneser_ney([s.split() for s in CORPUS], 3)
  general = ngram.kneser_ney([s.split() for s in ["the zebra ran", "a dog ran fast"]], 3)
  mixed = ngram.interpolate(domain, general, 0.3, general.vocabulary)
  assert {"zebra", "fast"} <= set(mixed.vocabulary)
  for context in [(), ("the",), ("<s>", "the"), ("ran",), ("the", "zebra")]:
    assert total(mixed, context) == pytest.approx(1.0, abs=1e-9)
  with_bigrams = ngram.interpolate(domain, general, 0.3, general.vocabulary,
                                 {("zebra",): ["ran"], ("the",): ["zebra"]})
  assert ("zebra", "ran") in with_bigrams.entries[1] and ("zebra", "ran") not in mixed.entries[1]
  for context in [(), ("zebra",), ("the",), ("the", "zebra")]:
    assert total(with_bigrams, context) == pytest.approx(1.0, abs=1e-9)
  assert 10 ** with_bigrams.logprob("ran", ("zebra",)) == pytest.approx(
      0.3 * 10 ** general.logprob("ran", ("zebra",)))
  # A listed n-gram keeps the exact mixture of the two models.
  expected = 0.7 * 10 ** domain.logprob("cat", ("the",)) + 0.3 * 10 ** general.logprob(
      "cat", ("the",))
  assert 10 ** mixed.logprob("cat", ("the",)) == pytest.approx(expected)


def test_domain_model_normalises_text_and_maps_unpronounceable_words_to_unk():
  model = ngram.domain_ngram(["The Cat sat!", "the cat sat", b"A zqxwv cat."], general_weight=0.0,
                           dictionary={"the", "cat", "sat", "a"})
  words = set(model.vocabulary)
  assert {"the", "cat", "sat", "a", ngram.UNK} <= words and "zqxwv" not in words
  assert total(model, ("the", "cat")) == pytest.approx(1.0, abs=1e-9)
  # Repeated transcripts (a sentence read by several speakers) count once.
  once = ngram.domain_ngram(["the cat sat", "a cat"], general_weight=0.0)
  thrice = ngram.domain_ngram(["the cat sat", "The cat sat.", "a cat", "the cat sat"],
                            general_weight=0.0)
  assert once.entries == thrice.entries


def test_domain_lm_with_the_bundled_general_model_loads_in_pocketsphinx(tmp_path):
  path = ngram.build_domain_lm(CORPUS, str(tmp_path / "domain.arpa"), general_vocabulary=500,
                             general_bigram_vocabulary=200)
  model = ngram.NGramLM.read_arpa(path)
  assert len(model.entries[0]) > 500 and "the" in model.vocabulary
  assert total(model, ("the",)) == pytest.approx(1.0, abs=1e-6)
  recognizer = asr.PocketSphinxASR(language_model=path)
  assert recognizer.options["lm"] == path
  assert isinstance(recognizer.transcribe(np.zeros(8000, np.float32)), str)


def test_character_error_rate():
  assert asr.character_error_rate(["abc"], ["abd"]) == pytest.approx(1 / 3)
  assert asr.character_error_rate(["The Cat."], ["the cat"]) == 0.0
  assert asr.character_error_rate(["ab", "cd"], ["ab", ""]) == pytest.approx(0.5)
  with pytest.raises(ValueError):
    asr.character_error_rate(["a"], [])


def flite(text):
  from audiolm_jax.data.corpora import tts
  if shutil.which("flite") is None:
    pytest.skip("flite is not installed")
  return tts.synthesize(tts.Speaker("flite", "slt", 0.0, 1.0), text)


DOMAIN_SENTENCE = "the barber shaves the sultan on the moon"
DOMAIN_TEXTS = [DOMAIN_SENTENCE, "the sultan rides a camel to the moon",
                "the barber sings to the sultan", "a camel shaves on the moon"]


def test_domain_lm_recognises_in_domain_speech_better_than_the_general_model(tmp_path):
  wav = flite(DOMAIN_SENTENCE)
  general = asr.PocketSphinxASR().transcribe(wav)
  path = ngram.build_domain_lm(DOMAIN_TEXTS, str(tmp_path / "domain.arpa"),
                             general_vocabulary=2000, general_bigram_vocabulary=200)
  domain = asr.PocketSphinxASR(language_model=path).transcribe(wav)
  wer_general = asr.word_error_rate([DOMAIN_SENTENCE], [general])
  wer_domain = asr.word_error_rate([DOMAIN_SENTENCE], [domain])
  assert wer_domain < wer_general, (general, domain)
  assert wer_domain <= 0.25, domain


def test_model_files_round_trip():
  root = sphinx_files.bundled_model_paths()["hmm"]
  means = sphinx_files.read_gaussians(os.path.join(root, "means"))
  assert means.shape == (42, 3, 128, 13)
  header, log_w = sphinx_files.read_sendump(os.path.join(root, "sendump"), 3, 128)
  assert log_w.shape[:2] == (3, 128)
  assert np.exp(log_w).sum(1).mean() == pytest.approx(1.0, abs=0.01)  # Weights, per senone.
  assert sphinx_files.ci_phones(os.path.join(root, "mdef"))[:3] == ["+NSN+", "+SPN+", "AA"]


def test_model_writers_reproduce_the_bundled_files(tmp_path):
  root = sphinx_files.bundled_model_paths()["hmm"]
  header, log_w = sphinx_files.read_sendump(os.path.join(root, "sendump"), 3, 128)
  sphinx_files.write_sendump(str(tmp_path / "sendump"), header, log_w)
  assert (tmp_path / "sendump").read_bytes() == open(os.path.join(root, "sendump"), "rb").read()
  means = sphinx_files.read_gaussians(os.path.join(root, "means"))
  sphinx_files.write_gaussians(str(tmp_path / "means"), means)
  assert np.array_equal(sphinx_files.read_gaussians(str(tmp_path / "means")), means)


def test_features_are_cmn_plus_deltas():
  cep = np.arange(10 * 13, dtype=np.float64).reshape(10, 13) ** 1.5 / 50
  x = acoustic_adaptation.cepstra_to_features(cep)
  assert x.shape == (10, 3, 13)
  c = cep - cep.mean(0)
  np.testing.assert_allclose(x[:, 0], c)
  np.testing.assert_allclose(x[5, 1], c[7] - c[3])
  np.testing.assert_allclose(x[5, 2], (c[8] - c[4]) - (c[6] - c[2]))
  np.testing.assert_allclose(x[0, 1], c[2] - c[0])  # Padded with copies of the first frame.


def test_acoustic_adaptation_writes_a_model_pocketsphinx_uses(tmp_path):
  texts = ["the cat sat on the mat", "a dog ran to the park"]
  clips = [flite(t) for t in texts]
  out = acoustic_adaptation.adapt_acoustic_model(clips, texts, str(tmp_path / "am"), iterations=1,
                                 log=lambda line: None)
  report = json.load(open(os.path.join(out, "adaptation.json")))
  assert report["last"]["aligned"] == 2 and report["last"]["frames"] > 100
  root = sphinx_files.bundled_model_paths()["hmm"]
  before = sphinx_files.read_gaussians(os.path.join(root, "means"))
  after = sphinx_files.read_gaussians(os.path.join(out, "means"))
  assert not np.allclose(before, after) and np.isfinite(after).all()
  recognizer = asr.PocketSphinxASR(acoustic_model=out)
  assert asr.word_error_rate(texts[:1], [recognizer.transcribe(clips[0])]) <= 0.34


def test_for_corpus_builds_and_reuses_its_models(tmp_path):
  texts = ["the cat sat on the mat", "a dog ran to the park"]
  clips = [flite(t) for t in texts]
  workdir = str(tmp_path / "work")
  options = {"adapt_options": {"iterations": 1}, "language_model": "domain",
             "lm_options": {"general_vocabulary": 500, "general_bigram_vocabulary": 200}}
  recognizer = asr.PocketSphinxASR.for_corpus(texts, workdir, train_clips=clips, **options)
  assert recognizer.options["lm"] == os.path.join(workdir, "domain_lm.arpa")
  assert recognizer.options["hmm"] == os.path.join(workdir, "acoustic_model")
  assert recognizer.options["lw"] == asr.CORPUS_DECODER_OPTIONS["lw"]
  stamp = os.path.getmtime(os.path.join(workdir, "acoustic_model", "means"))
  general = asr.PocketSphinxASR.for_corpus(texts, workdir, train_clips=clips,
                                           adapt_options={"iterations": 1}, lw=4.0)
  assert os.path.getmtime(os.path.join(workdir, "acoustic_model", "means")) == stamp
  assert "lm" not in general.options and general.options["lw"] == 4.0
  with pytest.raises(ValueError):
    asr.PocketSphinxASR.for_corpus(texts, workdir, language_model="oracle")
  with pytest.raises(ValueError):
    acoustic_adaptation.adapt_acoustic_model(clips, texts[:1], str(tmp_path / "bad"))
