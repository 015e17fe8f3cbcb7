"""English sentences available offline, from the fortune databases (Debian's `fortunes`).

The built-in speech corpus needs many distinct, readable sentences without typing them into the
repository. The fortune cookie files installed by Debian's `fortunes` package hold about ten
thousand quotations; we keep plain sentences of 6..20 words made of letters and light
punctuation, so transcripts need no normalisation for word error rate.
"""

from __future__ import annotations

import os
import re

from audiolm_jax.errors import MissingToolError

FORTUNE_DIR = "/usr/share/games/fortunes"
# Files with general, quotable English; the rest (ascii art, code, crude jokes) are left out.
FORTUNE_FILES = (
    "fortunes", "literature", "wisdom", "people", "science", "platitudes", "humorists", "love",
    "education", "food", "kids", "pets", "sports", "songs-poems", "miscellaneous", "riddles",
    "tao", "goedel", "paradoxum", "law", "medicine", "magic", "pratchett", "news", "work",
    "zippy", "cookie", "startrek",
)
_SENTENCE = re.compile(r"[A-Z][A-Za-z ,;'\-]*[a-z][.!?]")


def _clean(entry: str) -> str:
  lines = [l.strip() for l in entry.splitlines()]
  # Attributions ("-- Mark Twain") and indented verse credits are not part of the sentence.
  return " ".join(l for l in lines if l and not l.startswith("--"))


def fortune_sentences(fortune_dir: str = FORTUNE_DIR, min_words: int = 6,
                      max_words: int = 20) -> list[str]:
  """All usable sentences, deduplicated and sorted (so the list is the same on every machine)."""
  if not os.path.isdir(fortune_dir):
    raise MissingToolError(f"{fortune_dir} not found: install Debian's 'fortunes' package "
                           "(apt-get install fortunes), or run `make install`")
  sentences = set()
  for name in FORTUNE_FILES:
    path = os.path.join(fortune_dir, name)
    if not os.path.isfile(path):
      continue
    with open(path, encoding="utf-8", errors="replace") as f:
      text = f.read()
    for entry in re.split(r"\n%\n", text):
      for s in re.split(r"(?<=[.!?])\s+", _clean(entry)):
        s = re.sub(r"\s+", " ", s.strip())
        if _SENTENCE.fullmatch(s) and min_words <= len(s.split()) <= max_words:
          sentences.add(s)
  if not sentences:
    raise MissingToolError(f"no usable sentences under {fortune_dir}: reinstall 'fortunes'")
  return sorted(sentences)


def normalize_transcript(text: str) -> str:
  """Lower case, letters, apostrophes and single spaces: the form word error rate compares."""
  text = re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " "))
  return re.sub(r"\s+", " ", text).strip()
