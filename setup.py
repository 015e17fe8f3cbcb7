"""audiolm-jax: AudioLM (Borsos et al., 2022) in JAX/Flax.

The metadata, dependencies and extras are in pyproject.toml; this file only maps the shipped
configs into the package.
"""

from setuptools import find_packages, setup

setup(
    # The shipped configs travel with the package (`audiolm_jax.configs`), so an installed
    # `audiolm-jax train --config experiments/configs/codec.py:cpu` finds them anywhere.
    packages=find_packages(include=["audiolm_jax", "audiolm_jax.*"]) + ["audiolm_jax.configs"],
    package_dir={"audiolm_jax.configs": "experiments/configs"},
)
