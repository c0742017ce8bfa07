"""The default's train step on the CPU, profiled from a trace of the compiled step (benchmarks/step_profile.py):

B=2 python benchmarks/results/batch2_2026-12-07/cpu_step_profile.py   # two views per step (the default); B=1: one
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import sd_step  # noqa: E402

from configs import default  # noqa: E402
from dreamfusion_jax import train  # noqa: E402

config = default.get_config()
with config.unlocked():
  config.batch_size = int(os.environ.get("B", 2))
prior = train.build_prior(config)
trainer = train.Trainer(config, prior)
text = trainer.text_embeddings(np.stack([train.embed_prompts(prior, config)]))
compiled = trainer.compile_step_in_background(text).result()
state = trainer.init(np.asarray([0], np.int32))
for _ in range(3):
  state, _ = trainer.step(state, text)
jax.block_until_ready(state)
state, profile = sd_step.profile_steps(trainer, state, text, 5, compiled.as_text() or "", None)
print(sd_step.profile_text(profile))
