"""Which way does SDS with the Shapes prior push the size of the TRUE object? (CPU, a few minutes)

  python benchmarks/prior_size_push.py --caption="a red sphere" --cameras=1.45:0.75,1.25:1.025,1.05:1.3
  python benchmarks/prior_size_push.py --caption="a blue cube" --scales=100,30,7.5 --prior_dir=DIR
  python benchmarks/prior_size_push.py --sizes=1,1.15,1.3 --t_ranges=0.2:0.5,0.5:0.98

The true shape of the caption, scaled by s about the origin, is rendered (albedo only, 64x64, the
training camera distribution re-placed at each asked distance and focal, so the apparent size is
fixed), and the SDS residual r of the prior (configs/default.py's t range [0.2, 0.98] and weighting)
is projected on d image / d s (central difference, s = s0 (1 +- 0.03); s0 = 1 is the true size,
--sizes asks for others: where d/ds crosses zero is the size SDS settles at):

    d/ds = - sum_pixels r * d image / d s      (image in [-1, 1], 64x64x3)

Plain gradient descent on the image moves s by -lr * that projection's negative, so d/ds > 0 means
that the prior pushes the true object to GROW, < 0 to shrink. Printed: the mean over
--batches x 32 random draws (camera, background, t, noise) and its standard error.
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from dreamfusion_jax import sds, train
from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import cameras, render
from dreamfusion_jax.shapes import world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("caption", "a red sphere", "A Shapes caption 'a {colour} {shape}'.")
flags.DEFINE_string(
  "cameras", "1.25:1.0", "Comma-separated DISTANCE:FOCAL pairs (focal as a multiple of the image size)."
)
flags.DEFINE_string("scales", "100", "Comma-separated classifier-free guidance weights.")
flags.DEFINE_string("prior_dir", "", "A Shapes prior directory; '' = the shipped one.")
flags.DEFINE_integer("batches", 8, "Batches of 32 draws per setting.")
flags.DEFINE_string(
  "t_ranges",
  "",
  "Comma-separated MIN:MAX diffusion-time ranges (fractions of the schedule); "
  "'' = configs/default.py's guidance.t_min:t_max.",
)
flags.DEFINE_string("sizes", "1", "Comma-separated object scales s0 at which d/ds is taken (1 = the true size).")
FLAGS = flags.FLAGS

SIZE, BATCH, DELTA = 64, 32, 0.03
RENDER_CFG = render.RenderConfig(bound=1.0, num_coarse=48, num_fine=24)
ALBEDO = dict(ambient=1.0, diffuse=0.0, textureless=0.0)


def default_config():
  spec = importlib.util.spec_from_file_location("default", os.path.join(ROOT, "configs", "default.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def make_push(prior, shape_index: int, t_range: tuple[int, int], scale: float, s0: float = 1.0):
  """A jitted (key, rgb, distance, focal, conds [4,L,D], uncond [L,D]) -> d/ds [BATCH] (see the docstring)."""
  density = world.density_fn(shape_index)  # A Python int: only that shape's SDF, as the world renders it.

  def image(rgb, cam, bg, s):
    field = lambda x: (density(x / s), jnp.broadcast_to(rgb, x.shape))
    return render.render_image(
      None,
      field,
      lambda d: jnp.broadcast_to(bg, d.shape),
      cam,
      dict(ALBEDO, light_pos=cam["light_pos"]),
      RENDER_CFG,
      SIZE,
      SIZE,
    )["rgb"]

  @jax.jit
  def push(key, rgb, distance, focal, conds, uncond):
    k_cam, k_bg, k_sds = jax.random.split(key, 3)
    cams = jax.vmap(lambda k: cameras.sample_camera(k, cameras.CameraConfig(), SIZE))(jax.random.split(k_cam, BATCH))
    # The same directions, jitter and look-at noise, re-placed at the asked distance and focal.
    cams = dict(
      cams, origin=cams["origin"] * (distance / cams["distance"])[:, None], focal=jnp.full((BATCH,), focal * SIZE)
    )
    bgs = jax.random.uniform(k_bg, (BATCH, 3))
    cond = conds[text_lib.view_index(cams["elevation"], cams["azimuth"])]
    render_all = lambda s: jax.vmap(lambda cam, bg: image(rgb, cam, bg, s))(cams, bgs) * 2.0 - 1.0
    x0, x_plus, x_minus = render_all(s0), render_all(s0 * (1.0 + DELTA)), render_all(s0 * (1.0 - DELTA))
    r, _ = sds.sds_residual(
      k_sds, prior.guidance, prior.params, x0, cond, jnp.broadcast_to(uncond, cond.shape), scale=scale, t_range=t_range
    )
    return -jnp.sum(r * (x_plus - x_minus) / (2.0 * DELTA * s0), axis=(1, 2, 3))

  return push


def main(argv):
  del argv
  config = default_config()
  config.guidance.path = FLAGS.prior_dir
  prior = train.build_prior(config)
  colour, name = world.parse_caption(FLAGS.caption)
  rgb = jnp.asarray(world.COLOURS[colour])
  emb = prior.embed([text_lib.view_prompt(FLAGS.caption, v) for v in range(len(text_lib.VIEW_SUFFIXES))] + [""])
  conds, uncond = jnp.asarray(emb[:-1]), jnp.asarray(emb[-1])
  t_fractions = (
    [tuple(float(v) for v in r.split(":")) for r in FLAGS.t_ranges.split(",")]
    if FLAGS.t_ranges
    else [(config.guidance.t_min, config.guidance.t_max)]
  )
  settings = [
    (scale, t, s0)
    for scale in (float(v) for v in FLAGS.scales.split(","))
    for t in t_fractions
    for s0 in (float(v) for v in FLAGS.sizes.split(","))
  ]
  for scale, (t_min, t_max), s0 in settings:
    t_range = sds.timestep_range(t_min, t_max, config.guidance.num_train_timesteps)
    push = make_push(prior, world.SHAPES.index(name), t_range, scale, s0)
    for pair in FLAGS.cameras.split(","):
      distance, focal = (float(v) for v in pair.split(":"))
      values = np.concatenate(
        [np.asarray(push(jax.random.PRNGKey(i), rgb, distance, focal, conds, uncond)) for i in range(FLAGS.batches)]
      )
      print(
        f"{FLAGS.caption}: cfg {scale:g}, t {t_min:g}-{t_max:g}, size {s0:g}, distance {distance:g}, focal "
        f"{focal:g} (zoom {focal / distance:.2f}): d/ds {values.mean():+.1f} +- "
        f"{values.std() / np.sqrt(len(values)):.1f}",
        flush=True,
      )


if __name__ == "__main__":
  app.run(main)
