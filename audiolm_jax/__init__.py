"""audiolm-jax: a JAX/Flax implementation of AudioLM (Borsos et al., 2022)."""

__version__ = "0.1.0"
