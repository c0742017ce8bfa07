"""benchmarks/from_truth.py: the field's signed distance fitted to the Shapes world's exact one."""

import os
import sys

import jax
import numpy as np
from conftest import ROOT, tiny_config

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def test_the_fitted_field_is_the_true_cube_and_the_rest_of_the_state_is_untouched():
  import from_truth

  from dreamfusion_jax import train
  from dreamfusion_jax.nerf.field import Scene
  from dreamfusion_jax.shapes import world

  config = tiny_config(
    **{"field.density_activation": "volsdf", "field.num_levels": 6, "num_seeds": 2, "prompt": "a red cube"}
  )
  config.guidance.allow_unknown_words = True
  trainer = train.Trainer(config, train.build_prior(config))
  start = trainer.init()
  cube = world.SHAPES.index("cube")
  fitted = from_truth.fit_to_truth(trainer, start, cube, steps=600)

  rng = np.random.default_rng(0)
  x = np.concatenate([rng.uniform(-1, 1, (2000, 3)), rng.uniform(-0.4, 0.4, (2000, 3))]).astype(np.float32)
  truth = np.asarray(world.sdf(cube, x))
  for seed in range(2):
    params = jax.tree.map(lambda a: a[seed], fitted.params)
    s = np.asarray(trainer.scene.apply({"params": params}, x, method=Scene.sdf))
    assert np.sqrt(np.mean((s - truth) ** 2)) < 0.02  # The start sphere |x| - 0.2 is ~0.1 off the cube.
    assert np.mean(np.sign(s) == np.sign(truth)) > 0.97  # Inside is inside.
    before = jax.tree.map(lambda a: a[seed], start.params)
    s0 = np.asarray(trainer.scene.apply({"params": before}, x, method=Scene.sdf))
    assert np.sqrt(np.mean((s0 - truth) ** 2)) > 0.05
  jax.tree.map(np.testing.assert_array_equal, fitted.params["bg"], start.params["bg"])
  jax.tree.map(np.testing.assert_array_equal, fitted.opt_state, start.opt_state)
  np.testing.assert_array_equal(fitted.key, start.key)
