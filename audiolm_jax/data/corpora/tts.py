"""Synthetic speakers made from flite and espeak-ng, and the function that makes them speak.

A *speaker* is a fixed engine + voice + pitch + rate (+ formant variant for espeak-ng), so the
same speaker always sounds the same and different speakers differ in timbre, pitch, accent and
tempo. This gives a corpus where content (the sentence) and voice (the speaker) can be told
apart, which the semantic-token evaluations need.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile

import numpy as np

from audiolm_jax.data.audio import read_audio, resample
from audiolm_jax.errors import BadAudioError, MissingToolError

# flite voices that read arbitrary text (awb_time only reads clock times). kal is 8 kHz.
FLITE_VOICES = ("slt", "awb", "rms", "kal16", "kal")
# espeak-ng English accents (the mbrola voices need mbrola, which Debian installs separately).
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# espeak-ng voice variants: formant sets that change the timbre (male, female, others).
ESPEAK_VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7",
                   "klatt", "klatt2", "klatt3", "Andy", "Annie", "Denis", "Gene", "Lee")


@dataclasses.dataclass(frozen=True)
class Speaker:
  """One synthetic voice. `describe()` is stored with every clip."""
  engine: str        # "flite" or "espeak-ng"
  voice: str         # flite voice name, or espeak-ng "accent+variant"
  pitch: float       # flite: target mean F0 in Hz (0 = voice default); espeak-ng: 0..99
  rate: float        # flite: duration stretch (1 = default); espeak-ng: words per minute

  def describe(self) -> str:
    if self.engine == "flite":
      return f"flite voice={self.voice} f0={self.pitch:g} stretch={self.rate:g}"
    return f"espeak-ng voice={self.voice} pitch={self.pitch:g} wpm={self.rate:g}"


def make_speakers(num_flite: int, num_espeak: int) -> list[Speaker]:
  """A deterministic list of distinct speakers: flite voices first, then espeak-ng ones.

  espeak-ng speakers walk accents and variants with co-prime strides so that neighbours differ
  in both, and spread pitch and rate over their natural ranges.
  """
  if num_flite > len(FLITE_VOICES):
    raise ValueError(f"at most {len(FLITE_VOICES)} flite voices, asked for {num_flite}")
  if num_espeak > len(ESPEAK_ACCENTS) * len(ESPEAK_VARIANTS):
    raise ValueError(f"too many espeak-ng speakers: {num_espeak}")
  speakers = [Speaker("flite", v, 0.0, 1.0) for v in FLITE_VOICES[:num_flite]]
  seen = set()
  i = 0
  while len(speakers) < num_flite + num_espeak:
    accent = ESPEAK_ACCENTS[i % len(ESPEAK_ACCENTS)]
    variant = ESPEAK_VARIANTS[(i * 3) % len(ESPEAK_VARIANTS)]
    i += 1
    if (accent, variant) in seen:
      continue
    seen.add((accent, variant))
    k = len(speakers)
    pitch = 30 + (k * 17) % 41          # 30..70
    rate = 140 + (k * 13) % 51          # 140..190 words per minute
    speakers.append(Speaker("espeak-ng", f"{accent}+{variant}", float(pitch), float(rate)))
  return speakers


def check_tools(engines=("flite", "espeak-ng")) -> None:
  missing = [e for e in engines if shutil.which(e) is None]
  if missing:
    raise MissingToolError(f"{', '.join(missing)} not installed: run `make install` or "
                           f"apt-get install {' '.join(missing)}")


def synthesize(speaker: Speaker, text: str, sample_rate: int = 16000) -> np.ndarray:
  """Speaks `text` with `speaker`; float32 mono [S] at `sample_rate`, leading/trailing
  silence trimmed to 100 ms."""
  with tempfile.TemporaryDirectory(prefix="audiolm_tts_") as tmp:
    out = os.path.join(tmp, "out.wav")
    if speaker.engine == "flite":
      cmd = ["flite", "-voice", speaker.voice, "-o", out]
      if speaker.pitch:
        cmd += ["--setf", f"int_f0_target_mean={speaker.pitch:g}"]
      if speaker.rate != 1.0:
        cmd += ["--setf", f"duration_stretch={speaker.rate:g}"]
      cmd += ["-t", text]
    elif speaker.engine == "espeak-ng":
      cmd = ["espeak-ng", "-v", speaker.voice, "-p", f"{int(speaker.pitch)}",
             "-s", f"{int(speaker.rate)}", "-w", out, text]
    else:
      raise ValueError(f"unknown engine {speaker.engine!r}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not os.path.exists(out):
      raise BadAudioError(speaker.describe(), "unreadable",
                          f"{cmd[0]} failed: {proc.stderr.strip()[:200]}")
    data, rate = read_audio(out)
  wav = resample(data[:, 0], rate, sample_rate)
  return trim_silence(wav, sample_rate)


def trim_silence(wav: np.ndarray, sample_rate: int, keep_seconds: float = 0.1,
                 threshold: float = 1e-3) -> np.ndarray:
  """Cuts leading and trailing near-silence, keeping `keep_seconds` of it at each end."""
  loud = np.flatnonzero(np.abs(wav) > threshold)
  if loud.size == 0:
    return wav
  keep = int(keep_seconds * sample_rate)
  return wav[max(0, loud[0] - keep):min(wav.size, loud[-1] + 1 + keep)]
