"""The three stage language models: Transformer, token layouts, sampler, generation.

* `transformer`: the decoder-only Transformer (`TransformerConfig`, `Transformer`, `init_cache`,
  `CachedLogits` / `FullPassLogits` callbacks for the sampler).
* `stages`: ids and sequences of stage 1 (semantic), 2 (coarse) and 3 (fine).
* `sampling`: `sample`, jitted autoregressive sampling with temperature, top-k, top-p, logit masks.
* `generate`: the stages' windows and chunks, given trained stages (`pretrained.TrainedStage`).

Training lives in `audiolm_jax.tasks.stages`, loading in `audiolm_jax.pretrained`.
"""

from audiolm_jax.lm.sampling import SampleOutput, sample
from audiolm_jax.lm.stages import CoarseStage, Example, FineStage, SemanticStage, Vocabulary
from audiolm_jax.lm.transformer import (CachedLogits, FullPassLogits, Transformer,
                                        TransformerConfig, init_cache)

__all__ = [
    "CachedLogits", "CoarseStage", "Example", "FineStage", "FullPassLogits", "SampleOutput",
    "SemanticStage", "Transformer", "TransformerConfig", "Vocabulary", "init_cache", "sample",
]
