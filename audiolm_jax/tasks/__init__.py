"""The training tasks of every model, each registered where it is defined.

  codec.py     `codec`: SoundStream with its discriminators
  w2v_bert.py  `w2v_bert`: w2v-BERT pre-training (and fitting the semantic tokenizer)
  stages.py    `semantic_lm`, `coarse_lm`, `fine_lm`: the three stage LMs on a token cache
  soundstorm.py  `soundstorm`: parallel acoustic generation (in place of coarse + fine)
  detector.py  `detector`: tells generated audio from codec resyntheses of real audio

Importing this package registers them all with the trainer (`train.task.register`); the
trainer itself keeps no list of models. A fork adds a task by writing a module with an
`@register("name")` class and importing it: from its config file, its own script, or with
`audiolm-jax train --task_module package.module` (then `config.task` may also be
`"package.module:ClassName"`). A config value alone never imports code.
"""

# Importing registers the tasks.
from audiolm_jax.tasks import codec, detector, soundstorm, stages, w2v_bert  # noqa: F401
