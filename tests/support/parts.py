"""A run directory of untrained parts, written in the trainer's checkpoint layout (test fixture).

    make_run_dir(root)   # root/{codec,semantic_tokenizer,semantic_lm,coarse_lm,fine_lm}

Each part is a checkpoint of step 1 (`state/` written by orbax as the trainer does, with
`params`, `extra` and `step`; `config/metadata` the resolved config), with random weights of
the `tiny` presets; the semantic tokenizer uses MFCC features with random centroids. Loading
and generation code paths are exercised exactly as with trained parts.
"""

from __future__ import annotations

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from audiolm_jax import config as config_lib
from audiolm_jax.codec import soundstream
from audiolm_jax.lm.transformer import Transformer
from audiolm_jax.pretrained import transformer_config
from audiolm_jax.semantic import tokenizer as tok


def write_checkpoint(workdir: str, config, state: dict) -> str:
  step_dir = os.path.join(workdir, "checkpoints", "1")
  # The save is asynchronous: wait on (and close) the checkpointer that saves, so the
  # `state/` directory is complete when this returns.
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(step_dir, "state"), state)
    checkpointer.wait_until_finished()
  os.makedirs(os.path.join(step_dir, "config"), exist_ok=True)
  with open(os.path.join(step_dir, "config", "metadata"), "w") as f:
    f.write(config_lib.to_json(config))
  return step_dir


def make_run_dir(root: str, semantic_clusters: int = 32) -> str:
  rng = np.random.default_rng(0)
  codec_config = config_lib.load_config("codec:tiny")
  codec_cfg = soundstream.CodecConfig.from_dict(codec_config.model)
  variables = nn.unbox(soundstream.init(codec_cfg, jax.random.key(0)))
  variables = jax.tree.map(np.asarray, variables)
  variables["vq_stats"]["quantizer"]["initialized"] = np.array(True)
  write_checkpoint(os.path.join(root, "codec"), codec_config,
                   {"params": variables["params"], "extra": {"vq_stats": variables["vq_stats"]},
                    "step": np.int32(1)})
  extractor = tok.mfcc_extractor()
  tok.SemanticTokenizer(extractor, np.zeros(extractor.dim), np.ones(extractor.dim),
                        rng.normal(size=(semantic_clusters, extractor.dim))).save(
                            os.path.join(root, "semantic_tokenizer"))
  for i, name in enumerate(("semantic_lm", "coarse_lm", "fine_lm")):
    config = config_lib.load_config(f"{name}:tiny")
    model = Transformer(transformer_config(config))
    params = nn.unbox(model.init(jax.random.key(i), jnp.zeros((1, 1), jnp.int32))["params"])
    write_checkpoint(os.path.join(root, name), config,
                     {"params": jax.tree.map(np.asarray, params), "step": np.int32(1)})
  with open(os.path.join(root, "README.json"), "w") as f:
    json.dump({"what": "untrained tiny parts (tests/support/parts.py)"}, f)
  return root
