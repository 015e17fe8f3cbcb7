"""audiolm-jax: AudioLM (Borsos et al., 2022) in JAX/Flax."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(extra=None):
  """The pinned lines of requirements.txt: those marked `# extra: NAME` belong to that extra."""
  out = []
  with open(os.path.join(HERE, "requirements.txt")) as f:
    for line in f:
      spec, _, comment = line.partition("#")
      spec, comment = spec.strip(), comment.strip()
      if not spec or spec.startswith("pytest"):
        continue
      mark = comment[len("extra:"):].strip() if comment.startswith("extra:") else None
      if mark == extra:
        out.append(spec)
  return out


setup(
    name="audiolm-jax",
    version="0.1.0",
    description="AudioLM in JAX/Flax: SoundStream, w2v-BERT semantic tokens, three stage "
    "Transformers, sharded training and jitted sampling.",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(
        os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",  # the pinned jax, numpy, scipy and flax need it
    # The shipped configs travel with the package (`audiolm_jax.configs`), so an installed
    # `audiolm-jax train --config experiments/configs/codec.py:cpu` finds them anywhere.
    packages=find_packages(include=["audiolm_jax", "audiolm_jax.*"]) + ["audiolm_jax.configs"],
    package_dir={"audiolm_jax.configs": "experiments/configs"},
    install_requires=_requirements(),
    extras_require={"test": ["pytest"], "eval": _requirements("eval")},
    entry_points={"console_scripts": ["audiolm-jax=audiolm_jax.cli:main"]},
    license="Apache-2.0",
)
