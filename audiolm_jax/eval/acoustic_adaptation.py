"""MAP adaptation of pocketsphinx's acoustic model to transcribed speech, in numpy on
pocketsphinx's own features and forced alignments.

    adapt_acoustic_model(train_clips, train_transcripts, "workdir/acoustic_model")
    PocketSphinxASR(acoustic_model="workdir/acoustic_model")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Callable, Sequence

import numpy as np

from audiolm_jax.data.corpora.text import normalize_transcript
from audiolm_jax.eval import sphinx_files
from audiolm_jax.eval.sphinx_files import bundled_model_paths, read_dictionary

_MIXW_FLOOR = 1e-7     # pocketsphinx's default `mixwfloor`.
_VAR_FLOOR = 1e-4      # pocketsphinx's default `varfloor`.
_MODEL_FILES = ("feat.params", "mdef", "means", "noisedict", "sendump", "transition_matrices",
                "variances")


def cepstra_to_features(cep: np.ndarray) -> np.ndarray:
  """Pocketsphinx's `1s_c_d_dd` features of one utterance, with batch CMN: [frames, 3, 13].

  As pocketsphinx does for a whole utterance: subtract the mean cepstrum (of frames with
  c0 >= 0), pad three copies of the first and last frames, then delta = c[t+2] - c[t-2] and
  delta-delta = (c[t+3] - c[t-1]) - (c[t+1] - c[t-3]). The three rows are the model's streams.
  """
  cep = cep - (cep[cep[:, 0] >= 0].mean(0) if (cep[:, 0] >= 0).any() else 0.0)
  t, w = len(cep), 3
  pad = np.concatenate([np.repeat(cep[:1], w, 0), cep, np.repeat(cep[-1:], w, 0)])
  at = lambda k: pad[w + k:w + k + t]  # noqa: E731
  return np.stack([cep, at(2) - at(-2), (at(3) - at(-1)) - (at(1) - at(-3))], 1)


class _Aligner:
  """Forced alignment with pocketsphinx: cepstra, phone per frame and senone per frame."""

  def __init__(self, hmm: str, sample_rate: int, dictionary: str | None):
    from pocketsphinx import Decoder  # pylint: disable=g-import-not-at-top
    self._logdir = tempfile.TemporaryDirectory(prefix="asr_align_")
    options = {"hmm": hmm, "samprate": sample_rate, "loglevel": "FATAL",
               "mfclogdir": self._logdir.name}
    if dictionary is not None:
      options["dict"] = dictionary
    self._decoder = Decoder(**options)

  def _run(self, pcm: bytes) -> None:
    self._decoder.start_utt()
    self._decoder.process_raw(pcm, full_utt=True)
    self._decoder.end_utt()

  def __call__(self, pcm: bytes, text: str):
    """(cepstra [T, 13], phone name per frame, senone per frame), or None if it failed."""
    for name in os.listdir(self._logdir.name):
      os.remove(os.path.join(self._logdir.name, name))
    try:
      self._decoder.set_align_text(text)
      self._run(pcm)
      hyp = self._decoder.hyp()
      # A partial path (the grammar's end not reached) is no alignment of the whole text.
      if hyp is None or hyp.hypstr != text:
        return None
      logged = os.listdir(self._logdir.name)
      cep = sphinx_files.read_mfc(os.path.join(self._logdir.name, logged[0]))
      self._decoder.set_alignment()
      self._run(pcm)
      alignment = self._decoder.get_alignment()
      # Flat iteration only: pocketsphinx 5.1 crashes iterating a word's phones.
      phones = [(p.name, p.start, p.duration) for p in alignment.phones()]
      states = [(int(s.name), s.start, s.duration) for s in alignment.states()]
    except RuntimeError:  # "Alignment failed": the acoustics do not fit the text.
      return None
    phone = np.full(len(cep), None, dtype=object)
    senone = np.full(len(cep), -1)
    for name, start, length in phones:
      phone[start:start + length] = name
    for sen, start, length in states:
      senone[start:start + length] = sen
    return cep, phone, senone


def adapt_acoustic_model(clips: Sequence[np.ndarray], transcripts: Sequence[str], out_dir: str,
                         *, iterations: int = 3, mean_tau: float = 5.0,
                         weight_tau: float = 10.0, sample_rate: int = 16000,
                         dictionary: str | None = None, base_model: str | None = None,
                         log: Callable[[str], None] | None = None) -> str:
  """MAP-adapts pocketsphinx's acoustic model to transcribed (training) speech.

  The bundled model is a PTM model: one codebook of Gaussians per base phone, shared by that
  phone's senones through per-senone mixture weights. Each iteration force-aligns every clip
  with the current model (pocketsphinx's own alignment, features from its own front end),
  computes each frame's Gaussian posteriors in its aligned senone, and re-estimates, from the
  base model as prior, codebook means mu = (tau_m mu0 + sum g x) / (tau_m + sum g) and mixture
  weights w = (tau_w w0 + sum g) / (tau_w + sum_k sum g). Variances, transitions and the front
  end stay as they are. Clips whose transcripts have words the dictionary lacks, and clips the
  current model cannot align to their whole transcript, are left out of that iteration (more
  align as the model adapts).

  Args:
    clips: waveforms (float in [-1, 1] or int16) at `sample_rate`; iterated once per
      iteration, so a lazy sequence saves memory.
    transcripts: one per clip (normalised here with `normalize_transcript`).
    out_dir: the adapted model's folder (a full pocketsphinx `hmm` folder), created.
    iterations: alignment + re-estimation rounds.
    mean_tau: MAP prior weight of the means (in frames).
    weight_tau: MAP prior weight of the mixture weights (0: keep the base weights).
    sample_rate: of `clips`.
    dictionary: pronunciations for the alignment; None for the bundled dictionary.
    base_model: the `hmm` folder to adapt; None for the bundled US English model.
    log: called with one line per iteration (e.g. `print`).

  Returns:
    out_dir.
  """
  if len(clips) != len(transcripts):
    raise ValueError(f"{len(clips)} clips but {len(transcripts)} transcripts")
  base = base_model or bundled_model_paths()["hmm"]
  means0 = sphinx_files.read_gaussians(os.path.join(base, "means"))
  var = np.maximum(sphinx_files.read_gaussians(os.path.join(base, "variances")), _VAR_FLOOR)
  n_cb, n_feat, n_den, _ = means0.shape
  header, log_w0 = sphinx_files.read_sendump(os.path.join(base, "sendump"), n_feat, n_den)
  log_w0 = log_w0 - np.log(np.exp(log_w0).sum(1, keepdims=True))
  codebook = {name: i for i, name in enumerate(sphinx_files.ci_phones(os.path.join(base, "mdef")))}
  if len(codebook) != n_cb:
    raise ValueError(f"{base}: {len(codebook)} base phones but {n_cb} codebooks (not PTM?)")
  known = read_dictionary(dictionary)
  texts = [normalize_transcript(t.decode() if isinstance(t, bytes) else t) for t in transcripts]
  usable = [i for i, t in enumerate(texts) if t and all(w in known for w in t.split())]
  log_const = -0.5 * np.log(2 * np.pi * var).sum(-1)  # [codebook, stream, density]
  os.makedirs(out_dir, exist_ok=True)
  for name in _MODEL_FILES:
    if name not in ("means", "sendump"):
      shutil.copyfile(os.path.join(base, name), os.path.join(out_dir, name))
  means, log_w, hmm = means0, log_w0, base
  report = {}
  for iteration in range(iterations):
    start = time.time()
    aligner = _Aligner(hmm, sample_rate, dictionary)
    occupancy = np.zeros((n_cb, n_feat, n_den))
    first = np.zeros_like(means0)
    senone_occupancy = np.zeros_like(log_w0)
    aligned = frames = 0
    log_likelihood = 0.0
    for i in usable:
      result = aligner(sphinx_files.pcm16(clips[i]), texts[i])
      if result is None:
        continue
      cep, phone, senone = result
      x = cepstra_to_features(cep)
      cb = np.array([codebook.get(p, -1) if p is not None else -1 for p in phone])
      ok = (cb >= 0) & (senone >= 0)
      aligned += 1
      frames += int(ok.sum())
      for c in np.unique(cb[ok]):
        sel = ok & (cb == c)
        xs, sen = x[sel], senone[sel]
        for f in range(n_feat):
          diff = xs[:, f, None, :] - means[c, f][None]
          ll = (log_const[c, f][None] - 0.5 * (diff ** 2 / var[c, f][None]).sum(-1)
                + log_w[f][:, sen].T)
          top = ll.max(1, keepdims=True)
          post = np.exp(ll - top)
          norm = post.sum(1, keepdims=True)
          post /= norm
          log_likelihood += float((top + np.log(norm)).sum())
          occupancy[c, f] += post.sum(0)
          first[c, f] += post.T @ xs[:, f]
          np.add.at(senone_occupancy[f].T, sen, post)
    del aligner
    if not aligned:
      raise ValueError("no clip could be aligned to its transcript")
    means = (mean_tau * means0 + first) / (mean_tau + occupancy[..., None])
    if weight_tau > 0:
      w = ((weight_tau * np.exp(log_w0) + senone_occupancy)
           / (weight_tau + senone_occupancy.sum(1, keepdims=True)))
      w = np.maximum(w, _MIXW_FLOOR)
      log_w = np.log(w / w.sum(1, keepdims=True))
    sphinx_files.write_gaussians(os.path.join(out_dir, "means"), means)
    sphinx_files.write_sendump(os.path.join(out_dir, "sendump"), header, log_w)
    hmm = out_dir
    report = {"iteration": iteration + 1, "clips": len(clips), "usable": len(usable),
              "aligned": aligned, "frames": frames,
              "log_likelihood_per_frame": log_likelihood / max(1, frames),
              "seconds": round(time.time() - start, 1)}
    if log is not None:
      log(json.dumps(report))
  with open(os.path.join(out_dir, "adaptation.json"), "w") as f:
    json.dump({"base_model": base, "iterations": iterations, "mean_tau": mean_tau,
               "weight_tau": weight_tau, "last": report}, f, indent=1)
  return out_dir
