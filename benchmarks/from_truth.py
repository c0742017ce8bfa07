"""Does the method keep a TRUE object? Train a config from its caption's exact shape instead of a sphere. (CPU,
about 6 minutes for the default.)

  python benchmarks/from_truth.py --config=configs/default.py --workdir=/tmp/truth --config.prompt="a red cube"
  python -m dreamfusion_jax.evaluate --workdir=/tmp/truth

The field's signed distance (a 'volsdf' config) is first fitted to the Shapes world's exact signed distance of the
caption's shape (Adam, --fit_steps steps of the squared error at points uniform in the field's cube and near the
object), then the run trains from that start as the main job would, with every other part of the state as the
config's own initialisation. With --config.num_steps=1 the evaluation scores the fitted start itself. A method
whose loss has the true object as a fixed point keeps it; one that rounds a cube's edges from this start rounds
them by its loss, not by the road from the sphere (BENCHMARKS.md, 'Surface quality').
"""

import time

import jax
import jax.numpy as jnp
import optax
from absl import app, flags
from ml_collections import config_flags

from dreamfusion_jax import train
from dreamfusion_jax.nerf.field import Scene
from dreamfusion_jax.shapes import world

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined only when run as a script: tests import this module beside others)."""
  config_flags.DEFINE_config_file("config", None, "A Shapes config with field.density_activation='volsdf'.")
  flags.DEFINE_string("workdir", None, "The run's directory (must not hold a run).")
  flags.DEFINE_integer("fit_steps", 3000, "Adam steps of the fit to the true signed distance.")
  flags.mark_flags_as_required(["config", "workdir"])


def fit_to_truth(trainer: train.Trainer, state: train.TrainState, shape_index: int, steps: int) -> train.TrainState:
  """state with every seed's field fitted to world.sdf(shape_index) (its background and optimiser untouched)."""
  scene, bound = trainer.scene, trainer.config.field.bound
  tx = optax.adam(3e-3)

  def loss_fn(params, key):
    k_far, k_near = jax.random.split(key)
    far = jax.random.uniform(k_far, (4096, 3), minval=-bound, maxval=bound)
    near = jax.random.uniform(k_near, (8192, 3), minval=-0.7, maxval=0.7)  # The objects lie within 0.65.
    x = jnp.concatenate([far, near])
    s = jax.vmap(lambda p: scene.apply({"params": p}, x, method=Scene.sdf))(params)  # [seeds, points]
    return jnp.mean((s - world.sdf(shape_index, x)[None]) ** 2)

  @jax.jit
  def step(params, opt, key):
    loss, grad = jax.value_and_grad(loss_fn)(params, key)
    updates, opt = tx.update(grad, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  params, opt, key = state.params, tx.init(state.params), jax.random.PRNGKey(0)
  start = time.perf_counter()
  for _ in range(steps):
    key, k = jax.random.split(key)
    params, opt, loss = step(params, opt, k)
  rms = float(loss) ** 0.5
  print(
    f"Fitted the signed distance to the true {world.SHAPES[shape_index]}: RMS error {rms:.5f} "
    f"({time.perf_counter() - start:.0f} s).",
    flush=True,
  )
  return state.replace(params=params)


def main(argv):
  del argv
  config = FLAGS.config
  if config.field.density_activation != "volsdf":
    raise app.UsageError("from_truth fits a signed distance: the config needs field.density_activation='volsdf'.")
  shape_index = world.SHAPES.index(world.parse_caption(config.prompt)[1])
  own_init = train.Trainer.init

  def init(self, seeds=None):
    return fit_to_truth(self, own_init(self, seeds), shape_index, FLAGS.fit_steps)

  train.Trainer.init = init  # The run's only change: its initial state (a resumed run restores its own).
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  app.run(main)
