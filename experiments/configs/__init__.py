"""The shipped configs (installed as `audiolm_jax.configs`): one file per model or experiment."""
