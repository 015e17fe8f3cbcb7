"""Backoff n-gram language models for pocketsphinx, in pure Python: pocketsphinx's bundled
general trigram queried word by word (`BundledLM`), ARPA models (`NGramLM`), interpolated
Kneser-Ney and Witten-Bell estimation, and the domain model of a corpus' training transcripts
mixed with the general one (`domain_ngram`, `build_domain_lm`).

    lm = domain_ngram(train_transcripts)        # NGramLM, mixed with the bundled trigram
    build_domain_lm(train_transcripts, "lm.arpa")

Training words that the dictionary cannot pronounce become `<unk>` (counted, never recognised)
and nothing is added to the dictionary.
"""

from __future__ import annotations

import collections
import math
import os
from typing import Callable, Iterable, Sequence

from audiolm_jax.data.corpora.text import normalize_transcript
from audiolm_jax.eval.sphinx_files import bundled_model_paths, read_dictionary

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# log10 probability ARPA files give <s>, which is a context but never predicted.
_BOS_LOGPROB = -99.0
# The domain model's defaults: weight of the bundled general model in the mixture, how many of
# its most frequent words join the vocabulary, and among how many of those its bigrams are
# listed. Chosen by perplexity on the `validation` transcripts of `synthetic_speech`, never
# `test` (experiments/asr_floor.py).
GENERAL_WEIGHT = 0.9
GENERAL_VOCABULARY = 60000
GENERAL_BIGRAM_VOCABULARY = 6000
# `for_corpus`: the language model ("general" or "domain") and decoder settings (pocketsphinx's


class BundledLM:
  """Pocketsphinx's binary general English trigram model, queried word by word.

  Its n-grams cannot be listed from Python (pocketsphinx 5.1's ARPA writer crashes on this
  file), but any probability can be asked for, which is what `interpolate` needs, and
  `listed_bigrams` recovers its bigrams among given words.

  Args:
    path: a model pocketsphinx reads (ARPA or DMP/bin); None for the bundled one.
  """

  def __init__(self, path: str | None = None):
    from pocketsphinx import Config, LogMath, NGramModel  # pylint: disable=g-import-not-at-top
    self.path = path or bundled_model_paths()["lm"]
    self._logmath = LogMath()
    self._model = NGramModel(Config(), self._logmath, self.path)
    self._zero = self._logmath.get_zero()
    self.order = 3

  def logprob(self, word: str, context: Sequence[str] = ()) -> float:
    """log10 P(word | context); -inf for a word the model does not know."""
    score = self._model.prob([word, *reversed(context[len(context) - self.order + 1:])])
    return -math.inf if score <= self._zero else self._logmath.log_to_log10(score)

  def listed_bigrams(self, words: Sequence[str]) -> dict[tuple[str], list[str]]:
    """The model's own bigrams among `words` (and after <s>), found by probing.

    An unlisted bigram scores bo(h) + log P(w), and no bigram predicts <s>, so
    bo(h) = log P(<s> | h) - log P(<s>); a bigram is listed where its score differs from that
    (by more than the integer rounding of pocketsphinx's log arithmetic). Costs len(words)^2
    queries (about a second per million).

    Args:
      words: the candidate histories and next words (</s> is added as a next word).

    Returns:
      For each history (a 1-tuple) with listed bigrams, its listed next words.
    """
    prob = self._model.prob
    words = [w for w in dict.fromkeys(words) if w not in (BOS, EOS, UNK)]
    nexts = [(w, prob([w])) for w in words + [EOS]]
    nexts = [(w, u) for w, u in nexts if u > self._zero]
    bos = prob([BOS])
    listed = {}
    for h in [BOS] + words:
      if prob([h]) <= self._zero and h != BOS:
        continue
      backoff = prob([BOS, h]) - bos
      found = [w for w, u in nexts if abs(prob([w, h]) - backoff - u) > 2]
      if found:
        listed[(h,)] = found
    return listed


# ------------------------------------------------------------------------------------------------
# Backoff n-gram models in pure Python.


class NGramLM:
  """A backoff n-gram model: exactly what an ARPA file holds.

  `entries[n - 1]` maps each listed n-gram (a tuple of n words) to its log10 probability and
  log10 backoff weight. An unlisted n-gram backs off: log P(w | h) = bow(h) + log P(w | h[1:]),
  with bow(h) = 0 when h is not listed.

  Args:
    entries: one dict per order, unigrams first.
  """

  def __init__(self, entries: list[dict[tuple[str, ...], tuple[float, float]]]):
    if not entries or not entries[0]:
      raise ValueError("an n-gram model needs unigrams")
    self.entries = entries

  @property
  def order(self) -> int:
    return len(self.entries)

  @property
  def vocabulary(self) -> list[str]:
    """Every unigram, <s> included, sorted."""
    return sorted(w for (w,) in self.entries[0])

  def logprob(self, word: str, context: Sequence[str] = ()) -> float:
    """log10 P(word | context), backing off as an ARPA reader does.

    A word outside the vocabulary is scored as <unk> when the model has it, else -inf.
    """
    if (word,) not in self.entries[0]:
      if (UNK,) not in self.entries[0]:
        return -math.inf
      word = UNK
    context = tuple(context[len(context) - self.order + 1:]) if self.order > 1 else ()
    total = 0.0
    while True:
      hit = self.entries[len(context)].get(context + (word,))
      if hit is not None:
        return total + hit[0]
      bow = self.entries[len(context) - 1].get(context) if context else None
      total += bow[1] if bow is not None else 0.0
      context = context[1:]

  def write_arpa(self, path: str) -> str:
    """Writes the model as an ARPA file (sorted, so the same model gives the same bytes)."""
    with open(path, "w", encoding="utf-8") as f:
      f.write("\\data\\\n")
      for n, table in enumerate(self.entries, 1):
        f.write(f"ngram {n}={len(table)}\n")
      for n, table in enumerate(self.entries, 1):
        f.write(f"\n\\{n}-grams:\n")
        for gram in sorted(table):
          lp, bow = table[gram]
          line = f"{lp:.6f}\t{' '.join(gram)}"
          if n < self.order:
            line += f"\t{bow:.6f}"
          f.write(line + "\n")
      f.write("\n\\end\\\n")
    return path

  @classmethod
  def read_arpa(cls, path: str) -> "NGramLM":
    """Reads an ARPA file (as written by `write_arpa`, SRILM or KenLM)."""
    entries, n = [], 0
    with open(path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if not line or line.startswith("ngram ") or line == "\\data\\":
          continue
        if line == "\\end\\":
          break
        if line.startswith("\\") and line.endswith("-grams:"):
          n = int(line[1:line.index("-")])
          entries.extend({} for _ in range(n - len(entries)))
          continue
        if n:
          fields = line.split()
          bow = float(fields[n + 1]) if len(fields) > n + 1 else 0.0
          entries[n - 1][tuple(fields[1:n + 1])] = (float(fields[0]), bow)
    return cls(entries)


def _log10(p: float) -> float:
  return math.log10(p) if p > 0 else -math.inf


def _to_backoff(prob: Callable[[str, tuple[str, ...]], float], predicted: Sequence[str],
                listed: list[dict[tuple[str, ...], list[str]]]) -> NGramLM:
  """Turns a conditional distribution into a backoff model over the given n-grams.

  Listed n-grams keep `prob` exactly; every other word w after a listed context h gets
  bow(h) P(w | h[1:]), with bow(h) = (1 - sum_listed P(. | h)) / (1 - sum_listed P(. | h[1:])),
  so that each context's distribution sums to one over `predicted`.

  Args:
    prob: P(word | context) as a probability, for the listed n-grams and for every predicted
      word with the empty context (those must sum to one).
    predicted: the unigram vocabulary (<s> excluded: it is added as a context only).
    listed: for orders 2..N, a dict from each context (n - 1 words) to its listed next words.

  Returns:
    The model; its order is len(listed) + 1.
  """
  unigrams = {(w,): (_log10(prob(w, ())), 0.0) for w in predicted}
  unigrams[(BOS,)] = (_BOS_LOGPROB, 0.0)
  model = NGramLM([unigrams])
  for n, contexts in enumerate(listed, 2):
    table = {}
    model.entries.append(table)
    lower = model.entries[n - 2]
    for context in sorted(contexts):
      if context not in lower:
        raise ValueError(f"context {context} of an {n}-gram is not an {n - 1}-gram")
      seen = den = 0.0
      for w in contexts[context]:
        p = prob(w, context)
        table[context + (w,)] = (_log10(p), 0.0)
        seen += p
        den += 10.0 ** model.logprob(w, context[1:])
      num, rest = 1.0 - seen, 1.0 - den
      if num < -1e-9:
        raise ValueError(f"probabilities after {context} sum to {seen} > 1")
      # When the listed words take all the mass (tiny vocabularies) nothing is left to share.
      bow = math.log10(num / rest) if rest > 1e-12 and num > 1e-12 else 0.0
      lower[context] = (lower[context][0], bow)
  return model


def _ngram_counts(sents: list[tuple[str, ...]], order: int) -> list[collections.Counter]:
  """Counts of every n-gram, n = 1..order, of sentences with <s> and </s> (<s> is never
  counted as a unigram: it is a context, not a prediction)."""
  counts = [collections.Counter() for _ in range(order)]
  for s in sents:
    for n in range(1, order + 1):
      for i in range(1 if n == 1 else 0, len(s) - n + 1):
        counts[n - 1][s[i:i + n]] += 1
  return counts


def _context_stats(tables) -> tuple[list[collections.Counter], list[collections.Counter]]:
  """Per order and context: the total count of its n-grams and the number of distinct next
  words (the two sums every interpolated estimate divides by)."""
  totals = [collections.Counter() for _ in tables]
  types = [collections.Counter() for _ in tables]
  for n, table in enumerate(tables):
    for gram, c in table.items():
      totals[n][gram[:-1]] += c
      types[n][gram[:-1]] += 1
  return totals, types


def _prepare(sentences: Iterable[Sequence[str]]) -> list[tuple[str, ...]]:
  return [(BOS, *s, EOS) for s in sentences]


def kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3,
               vocabulary: Iterable[str] = ()) -> NGramLM:
  """Interpolated Kneser-Ney (one absolute discount per order), as an ARPA backoff model.

  The highest order uses counts; lower orders use continuation counts (the number of distinct
  words seen before an n-gram), except n-grams that start with <s>, which keep counts. Each
  order's discount is D = n1 / (n1 + 2 n2) from its counts of counts; unigrams are interpolated
  with the uniform distribution over the vocabulary.

  Args:
    sentences: token sequences (without <s> and </s>, which are added).
    order: the n of the n-grams.
    vocabulary: extra words to give (uniform, discounted) probability although never seen.

  Returns:
    The model. Predicted words are the seen ones, `vocabulary` and </s>.
  """
  counts = _ngram_counts(_prepare(sentences), order)
  # Continuation counts for orders below the top: distinct left neighbours.
  kn = [collections.Counter() for _ in range(order)]
  kn[order - 1] = counts[order - 1]
  for n in range(1, order):
    for gram in counts[n]:
      kn[n - 1][gram[1:]] += 1
    for gram, c in counts[n - 1].items():
      if gram[0] == BOS:
        kn[n - 1][gram] = c
  kn[0].pop((BOS,), None)
  discounts = []
  for table in kn:
    n1 = sum(1 for c in table.values() if c == 1)
    n2 = sum(1 for c in table.values() if c == 2)
    discounts.append(min(0.95, n1 / (n1 + 2 * n2)) if n1 and n2 else 0.5)
  predicted = sorted(({g[0] for g in kn[0]} | set(vocabulary) | {EOS}) - {BOS})
  totals, types = _context_stats(kn)
  uniform = 1.0 / len(predicted)
  cache = {}

  def prob(word, context):
    key = (word, context)
    if key in cache:
      return cache[key]
    n = len(context)
    total = totals[n].get(context, 0)
    if n == 0:
      lower = uniform
    else:
      lower = prob(word, context[1:])
    if total == 0:
      p = lower
    else:
      d = discounts[n]
      c = kn[n].get(context + (word,), 0)
      p = max(c - d, 0.0) / total + d * types[n][context] / total * lower
    cache[key] = p
    return p

  return _to_backoff(prob, predicted, _listing(kn[1:]))


def witten_bell(sentences: Iterable[Sequence[str]], order: int = 3,
                vocabulary: Iterable[str] = ()) -> NGramLM:
  """Interpolated Witten-Bell smoothing, as an ARPA backoff model.

  P(w | h) = (c(h w) + T(h) P(w | h[1:])) / (c(h) + T(h)), with T(h) the number of distinct
  words seen after h; unigrams are interpolated with the uniform distribution.

  Args:
    sentences: token sequences (without <s> and </s>, which are added).
    order: the n of the n-grams.
    vocabulary: extra words to give probability although never seen.

  Returns:
    The model. Predicted words are the seen ones, `vocabulary` and </s>.
  """
  counts = _ngram_counts(_prepare(sentences), order)
  predicted = sorted(({g[0] for g in counts[0]} | set(vocabulary) | {EOS}) - {BOS})
  totals, types = _context_stats(counts)
  uniform = 1.0 / len(predicted)
  cache = {}

  def prob(word, context):
    key = (word, context)
    if key not in cache:
      n = len(context)
      lower = uniform if n == 0 else prob(word, context[1:])
      total, t = totals[n].get(context, 0), types[n].get(context, 0)
      c = counts[n].get(context + (word,), 0)
      cache[key] = (c + t * lower) / (total + t) if total else lower
    return cache[key]

  return _to_backoff(prob, predicted, _listing(counts[1:]))


def _listing(tables: Sequence[Iterable[tuple[str, ...]]]) -> list[dict[tuple[str, ...], list]]:
  listed = []
  for table in tables:
    contexts = collections.defaultdict(list)
    for gram in table:
      contexts[gram[:-1]].append(gram[-1])
    listed.append({h: sorted(ws) for h, ws in contexts.items()})
  return listed


def interpolate(domain: NGramLM, general, general_weight: float,
                general_words: Iterable[str] = (),
                general_bigrams: dict[tuple[str], Sequence[str]] | None = None) -> NGramLM:
  """Linear mixture (1 - g) P_domain + g P_general, as a backoff model.

  Listed are the domain model's n-grams, `general_words` as unigrams and `general_bigrams`
  (the general model is only queried, never enumerated). The general model's unigrams are
  renormalised over the mixture's vocabulary; its higher orders are used as they are, and the
  backoff weights make every context sum to one. What is not listed backs off, so the general
  model's n-grams count only where listed.

  Args:
    domain: the in-domain model.
    general: anything with `logprob(word, context)` (an `NGramLM` or a `BundledLM`).
    general_weight: g, in [0, 1].
    general_words: words the general model adds to the vocabulary.
    general_bigrams: more bigrams to list, history (1-tuple) -> next words (e.g. from
      `BundledLM.listed_bigrams`); their words must be in the vocabulary.

  Returns:
    The mixture, of the domain model's order.
  """
  if not 0.0 <= general_weight <= 1.0:
    raise ValueError(f"general_weight must be in [0, 1], got {general_weight}")
  predicted = sorted(({w for (w,) in domain.entries[0]} | set(general_words)) - {BOS})
  # An NGramLM would score words it lacks as its <unk>; they have no general probability.
  lacks = ((lambda w: (w,) not in general.entries[0]) if isinstance(general, NGramLM) else
           (lambda w: False))

  def general_prob(word, context=()):
    return 0.0 if lacks(word) else 10.0 ** general.logprob(word, context)

  norm = sum(general_prob(w) for w in predicted)
  g = general_weight if norm > 0 else 0.0

  def prob(word, context):
    p_gen = general_prob(word, context) if g else 0.0
    if not context:
      p_gen /= norm
    # A word the domain model lacks has no domain probability (rather than that of <unk>).
    p_dom = 10.0 ** domain.logprob(word, context) if (word,) in domain.entries[0] else 0.0
    return (1.0 - g) * p_dom + g * p_gen

  listed = _listing(domain.entries[1:])
  if general_bigrams and listed:
    vocab = set(predicted) | {BOS}
    for h, nexts in general_bigrams.items():
      if h[0] in vocab:
        listed[0][h] = sorted(set(listed[0].get(h, ())) | {w for w in nexts if w in vocab})
  return _to_backoff(prob, predicted, listed)


def most_frequent(model, count: int, allowed: Iterable[str]) -> list[str]:
  """The `count` words of `allowed` that `model` gives the highest unigram probability.

  Args:
    model: anything with `logprob(word, context)`; words it scores -inf are left out.
    count: how many words.
    allowed: the candidates (e.g. the words a dictionary can pronounce).

  Returns:
    The words, most probable first (ties alphabetically).
  """
  if isinstance(model, NGramLM):  # Its logprob would score unknown words as <unk>.
    allowed = [w for w in allowed if (w,) in model.entries[0]]
  scored = []
  for w in allowed:
    if w not in (BOS, EOS, UNK):
      lp = model.logprob(w)
      if lp > -math.inf:
        scored.append((-lp, w))
  scored.sort()
  return [w for _, w in scored[:count]]


def domain_ngram(transcripts: Iterable[str], *, order: int = 3, method: str = "kneser_ney",
                 general_weight: float = GENERAL_WEIGHT,
                 general_vocabulary: int = GENERAL_VOCABULARY,
                 general_bigram_vocabulary: int = GENERAL_BIGRAM_VOCABULARY,
                 dictionary: str | set[str] | None = None, general_lm=None,
                 unique: bool = True) -> NGramLM:
  """The domain model of `build_domain_lm`, in memory.

  Args:
    transcripts: training transcripts (raw text; normalised with `normalize_transcript`).
    order: n-gram order.
    method: "kneser_ney" or "witten_bell".
    general_weight: weight of pocketsphinx's bundled general model in the mixture (0: the
      domain model alone, whose vocabulary is then the training words only).
    general_vocabulary: how many of the general model's most frequent words (that the
      dictionary can pronounce) join the vocabulary.
    general_bigram_vocabulary: the general model's bigrams among this many of its most
      frequent words are listed in the mixture (their number squared queries; 0: none).
    dictionary: the decoder's dictionary (path or word set); None for pocketsphinx's bundled
      one. Words it cannot pronounce become <unk>.
    general_lm: the general model (anything with `logprob`); None for the bundled one.
    unique: count each distinct normalised transcript once (the corpus reads each sentence
      several times; repeats would only distort the discounts).

  Returns:
    The model.
  """
  if isinstance(dictionary, (set, frozenset)):
    known = set(dictionary)
  else:
    known = read_dictionary(dictionary)
  texts = [normalize_transcript(t.decode() if isinstance(t, bytes) else t) for t in transcripts]
  if unique:
    texts = list(dict.fromkeys(texts))
  sentences = [[w if w in known else UNK for w in t.split()] for t in texts if t]
  if not sentences:
    raise ValueError("no transcripts to build a language model from")
  estimators = {"kneser_ney": kneser_ney, "witten_bell": witten_bell}
  if method not in estimators:
    raise ValueError(f"method must be one of {sorted(estimators)}, got {method!r}")
  domain = estimators[method](sentences, order)
  if general_weight <= 0:
    return domain
  general = general_lm if general_lm is not None else BundledLM()
  words = most_frequent(general, max(general_vocabulary, general_bigram_vocabulary), known)
  bigrams = None
  if general_bigram_vocabulary > 0:
    frequent = words[:general_bigram_vocabulary]
    if hasattr(general, "listed_bigrams"):
      bigrams = general.listed_bigrams(frequent)
    elif isinstance(general, NGramLM) and general.order > 1:
      keep = set(frequent) | {BOS, EOS}
      bigrams = collections.defaultdict(list)
      for h, w in general.entries[1]:
        if h in keep and w in keep:
          bigrams[(h,)].append(w)
  return interpolate(domain, general, general_weight, words, bigrams)


def build_domain_lm(transcripts: Iterable[str], out_path: str, **kwargs) -> str:
  """Builds the domain language model from training transcripts and writes it as ARPA.

  Never give it evaluation (validation or test) transcripts: the recogniser would then know
  the sentences it is scored on.

  Args:
    transcripts: training transcripts (str or bytes, raw: they are normalised here).
    out_path: where the ARPA file goes (its folder is created).
    **kwargs: options of `domain_ngram` (order, method, general_weight, ...).

  Returns:
    out_path.
  """
  model = domain_ngram(transcripts, **kwargs)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  return model.write_arpa(out_path)
