"""audiolm-jax: a JAX/Flax implementation of AudioLM (Borsos et al., 2022).

    from audiolm_jax import AudioLM
    lm = AudioLM.from_run_dir("runs/demo")
    audio = lm.generate_continuation(prompt, prompt_sample_rate=44100, seconds=10.0)

The names below are imported on first use, so `import audiolm_jax` stays cheap (no JAX).
"""

__version__ = "0.1.0"

_API = {"AudioLM": "audiolm", "Generation": "audiolm", "Sampling": "audiolm",
        "sampling_per_stage": "audiolm"}
__all__ = sorted(_API)


def __getattr__(name: str):
  if name in _API:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(f"audiolm_jax.{_API[name]}"), name)
  raise AttributeError(f"module 'audiolm_jax' has no attribute {name!r}")
