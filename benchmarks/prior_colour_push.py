"""Which way does classifier-free guidance push the BRIGHTNESS of a true object's albedo? (CPU, ~1 min a prior)

  python benchmarks/prior_colour_push.py
  python benchmarks/prior_colour_push.py --prior_dirs=dreamfusion_jax/assets/shapes_prior,/tmp/prior/export \
      --scales=100,30 --brightness=1,0.5,0.2 --t_range=0.2:0.7

Albedo-only renders of true objects (every colour, random shapes, views and backgrounds; the cameras
the FIRST prior's config.json records, so every prior sees the same renders and draws) have their object's colour scaled by k (--brightness; 1 = the true
colour), are noised to t ~ U(--t_range), and the prior's one-step estimate with guidance weight w,

    x0_hat = (x_t - sigma_t eps_hat) / alpha_t,   eps_hat = eps_uncond + w (eps_cond - eps_uncond),

is compared with the render: the mean of x0_hat - x over the object's pixels (image in [-1, 1]) is
the step SDS takes on the render in x0 units (SDS descends along -(eps_hat - eps) = alpha_t /
sigma_t (x0_hat - x)). Negative: the guidance darkens the object; a prior whose step is negative at
k < 1 too has a dark attractor, which is how white and gray results go dark (BENCHMARKS.md, centred
cameras). Printed per prior, weight and k: the mean and its standard error over the draws, the same
for the conditional (w = 1) and unconditional (w = 0) estimates, the mean per colour, and for every
prior after the first its difference from the first with the paired standard error (the renders'
own spread, +-0.2 at 96 renders, cancels in the pairs).
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dreamfusion_jax.guidance import shapes_prior  # noqa: E402
from dreamfusion_jax.shapes import prior_card, world

flags.DEFINE_list("prior_dirs", [], "Shapes prior directories (default: the shipped one).")
flags.DEFINE_list("scales", ["100"], "Classifier-free guidance weights.")
flags.DEFINE_list("brightness", ["1", "0.5", "0.2"], "Factors k on the object's colour (1 = the true colour).")
flags.DEFINE_string("t_range", "0.2:0.7", "MIN:MAX diffusion time (fractions of the schedule).")
flags.DEFINE_integer("batch", 96, "Renders per batch.")
flags.DEFINE_integer("repeats", 3, "(t, noise) draws per render.")
flags.DEFINE_integer("seed", 0, "Seed of the renders and draws.")
FLAGS = flags.FLAGS


def object_steps(unet_apply, params, abar, x, obj_mask, ctx, unc, scales, t, eps):
  """{w: [B] mean over the object's pixels of x0_hat(w) - x} for one (t, noise) draw, plus w = 1 and 0."""
  a = jnp.asarray(abar)[t][:, None, None, None]
  x_t = jnp.sqrt(a) * x + jnp.sqrt(1.0 - a) * eps
  e_c = unet_apply(params, x_t, t, ctx)
  e_u = unet_apply(params, x_t, t, unc)
  out = {}
  for w in (*scales, 1.0, 0.0):
    e_hat = e_u + w * (e_c - e_u)
    step = (x_t - jnp.sqrt(1.0 - a) * e_hat) / jnp.sqrt(a) - x
    out[w] = (step * obj_mask).sum(axis=(1, 2, 3)) / (3.0 * obj_mask.sum(axis=(1, 2, 3)))
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    scales = [float(v) for v in FLAGS.scales]
    factors = [float(v) for v in FLAGS.brightness]
    t_lo, t_hi = (float(v) for v in FLAGS.t_range.split(":"))
  except ValueError:
    raise app.UsageError("--scales and --brightness take numbers, --t_range MIN:MAX (e.g. 0.2:0.7).")
  if not 0.0 <= t_lo < t_hi <= 1.0:
    raise app.UsageError(f"--t_range={FLAGS.t_range}: need 0 <= MIN < MAX <= 1.")
  dirs = FLAGS.prior_dirs or [shapes_prior.default_dir()]
  for d in dirs:
    if shapes_prior.missing_files(d):
      raise app.UsageError(f"'{d}' is not a Shapes prior (missing {', '.join(shapes_prior.missing_files(d))}).")
  # The first prior's recorded cameras (DreamFusion's for a prior saved before they were recorded).
  cams = prior_card.last_cameras({"chunks": [{"camera": shapes_prior.read_config(dirs[0]).get("camera")}]})
  key = jax.random.PRNGKey(FLAGS.seed)
  b = jax.device_get(world.sample_batch(key, FLAGS.batch, 64, False, (1.0, 0.0, 0.0), cams))
  captions = world.captions_for(b)
  opacity = b["opacity"][..., None]
  mask = jnp.asarray(opacity > 0.5, jnp.float32)
  background = (1.0 - opacity) * b["background"][:, None, None]
  first = {}
  for d in dirs:
    unet, encoder, tokenizer, params, abar = shapes_prior.load_prior(d)
    embed = jax.jit(lambda p, ids: encoder.apply({"params": p}, ids))
    ctx = embed(params["text"], tokenizer(captions))
    unc = embed(params["text"], tokenizer([""] * FLAGS.batch))
    unet_apply = jax.jit(lambda p, x, t, c: unet.apply({"params": p}, x, t, c))
    num_t = len(abar)
    for k in factors:
      x = jnp.asarray((k * (b["images"] - background) + background) * 2.0 - 1.0)
      steps = {}
      for r in range(FLAGS.repeats):
        k_t, k_eps = jax.random.split(jax.random.fold_in(key, r + 1))
        t = jax.random.randint(k_t, (FLAGS.batch,), int(t_lo * num_t), max(int(t_hi * num_t), int(t_lo * num_t) + 1))
        eps = jax.random.normal(k_eps, x.shape)
        for w, v in object_steps(unet_apply, params["unet"], abar, x, mask, ctx, unc, scales, t, eps).items():
          steps.setdefault(w, []).append(np.asarray(v))
      per_render = {w: np.mean(v, axis=0) for w, v in steps.items()}  # [B]: the draws' mean per render.
      first.setdefault(k, per_render)
      for w in scales:
        v = per_render[w]
        diff = v - first[k][w]
        paired = (
          ""
          if d == dirs[0]
          else f"; minus the first prior: {diff.mean():+.3f} +- {diff.std() / np.sqrt(len(diff)):.3f}"
        )
        colours = " ".join(
          f"{name} {v[b['colour'] == c].mean():+.3f}"
          for c, name in enumerate(world.COLOUR_NAMES)
          if (b["colour"] == c).any()
        )
        print(
          f"{d}: w {w:g}, brightness x{k:g}: step {v.mean():+.3f} +- {v.std() / np.sqrt(len(v)):.3f} "
          f"(conditional {per_render[1.0].mean():+.3f}, unconditional {per_render[0.0].mean():+.3f}){paired}; "
          f"{colours}",
          flush=True,
        )


if __name__ == "__main__":
  app.run(main)
