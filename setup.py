"""audiolm-jax: AudioLM (Borsos et al., 2022) in JAX/Flax."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements():
  with open(os.path.join(HERE, "requirements.txt")) as f:
    return [l.strip() for l in f if l.strip() and not l.startswith("#") and not l.startswith("pytest")]


setup(
    name="audiolm-jax",
    version="0.1.0",
    description="AudioLM in JAX/Flax: SoundStream, w2v-BERT semantic tokens, three stage "
    "Transformers, sharded training and jitted sampling.",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(
        os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["audiolm_jax", "audiolm_jax.*"]),
    install_requires=_requirements(),
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["audiolm-jax=audiolm_jax.cli:main"]},
    license="Apache-2.0",
)
