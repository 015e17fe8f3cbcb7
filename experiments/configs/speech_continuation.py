"""The speech experiments of AudioLM (Tables II and III) on trained parts.

  python experiments/speech_continuation.py --config experiments/configs/speech_continuation.py:cpu \
      --config.run_dir=runs/speech --config.data_dir=data

`run_dir` holds the parts in the demo's layout (codec, w2v_bert, semantic_tokenizer,
semantic_lm, coarse_lm, fine_lm) and the acoustic-only ablation's coarse LM in
`coarse_lm_acoustic_only` (trained with `--config.stage.acoustic_only=true`). Variants: `tiny`
(tests), `cpu` (this machine: a few dozen prompts), `paper` (the paper's prompt counts).
"""

import ml_collections

VARIANTS = ("tiny", "cpu", "paper")


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.run_dir = "runs/speech"            # The trained parts (see the docstring).
  c.acoustic_only_coarse = ""          # Its coarse LM ("" = RUN_DIR/coarse_lm_acoustic_only).
  c.data_dir = ""                      # Where corpora live ("" = $AUDIOLM_DATA_DIR or ./data).
  c.out_dir = ""                       # Results ("" = experiments/results).
  c.corpus = "synthetic_speech"        # The built-in corpus: prompts from `prompt_splits`.
  c.corpus_build = ""                  # Its build ("" = default).
  c.prompt_splits = ("test", "test_unseen_speakers")  # Held-out sentences; unseen voices.
  c.enrol_per_speaker = 3              # Each speaker's first utterances in a split: centroids
                                       # (never prompted); the rest are prompt candidates.
  c.librispeech_build = "librispeech_excerpts"  # audio_folder build of the real excerpts
                                       # ("" = skip); its `test` split (8 unseen speakers)
  c.librispeech_enrol = 5              # Enrolment utterances per LibriSpeech speaker.
  c.num_prompts = 24                   # Prompts per split (one utterance each).
  c.prompt_seconds = 3.0               # Prompt length (paper: 3 s).
  c.total_seconds = 10.0               # Prompt + continuation (paper: 10 s).
  c.min_prompt_audio = 3.25            # Utterances shorter than this are not prompted.
  c.semantic_to_acoustic = 24          # Utterances for stages 2 + 3 from true semantic tokens.
  c.examples = 2                       # Example wavs written per system and data set.
  c.asr_workdir = ""                   # The domain recogniser's files ("" = OUT_DIR/asr).
  c.seed = 0
  if arg == "tiny":
    c.update(num_prompts=2, semantic_to_acoustic=2, prompt_seconds=1.0, total_seconds=2.0,
             min_prompt_audio=1.1, examples=1, librispeech_build="", enrol_per_speaker=1)
    c.prompt_splits = ("test",)
  elif arg == "paper":
    c.update(num_prompts=200, semantic_to_acoustic=200)
  elif arg not in (None, "cpu"):
    raise ValueError(f"unknown variant {arg!r}")
  return c
