"""One full Stable Diffusion SDS step: time, peak device memory, and where the time goes.

  python ../shared/tools/make_random_sd.py /tmp/sd_random fp16     # SD 2.1-base shapes, random weights
  XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/sd_step.py --model=/tmp/sd_random \
      --dtype=bfloat16 [--remat] [--attention=cudnn] [--out=result.json]

The checkpoint is loaded through the project's real loader (`stable_diffusion.build_prior`, so the
full-size conversion is exercised) with configs/sd21_base.py's settings: a 64x64 render (128 + 32
samples per ray), bilinear upsampling to 512, the VAE encoder forward and backward, the UNet on
the doubled (unconditional + conditional) batch, the NeRF update. The step is `train.Trainer`'s
jitted step (state donated). Timing does not depend on the weights' values.

Reported: load time, compile time (first step), median ms per step over --steps steps, the
device's peak bytes in use (jax memory_stats, meaningful with XLA_PYTHON_CLIENT_PREALLOCATE=false),
and separately jitted parts of the step: the render forward+backward, the encoder (resize + VAE
encoder) forward+backward and the UNet with CFG forward; their shares of the step time.
"""

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined only when run as a script: sd_vs_torch.py imports this module)."""
  flags.DEFINE_string("model", None, "A diffusers-layout folder or Hub repo id (e.g. from make_random_sd.py).")
  flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "guidance.sd.dtype.")
  flags.DEFINE_bool("remat", False, "guidance.sd.remat.")
  flags.DEFINE_enum("attention", "xla", ["xla", "cudnn"], "guidance.sd.attention.")
  flags.DEFINE_integer("steps", 50, "Timed steps (after 3 untimed ones).")
  flags.DEFINE_integer("image_size", 512, "guidance.sd.image_size (renders are resized to it before the VAE).")
  flags.DEFINE_integer("render_size", 64, "render.image_size.")
  flags.DEFINE_bool("deterministic", True, "gpu_deterministic (XLA's nondeterministic kernels left out).")
  flags.DEFINE_string("out", None, "Also write the result as JSON here.")


def part_timings(config, prior, trainer, state, text_emb) -> tuple[float, float, float]:
  """Median ms of the step's parts, each jitted on its own (one seed; the step's own shapes): the render
  forward+backward, the encoder forward+backward and the UNet with CFG."""
  import jax
  import jax.numpy as jnp
  from timing import median_ms

  from dreamfusion_jax.nerf import cameras, render, views

  g = prior.guidance
  pp = trainer.prior_params
  params = jax.tree.map(lambda x: x[0], state.params)
  size = config.render.image_size
  cam = cameras.sample_camera(jax.random.PRNGKey(1), cameras.from_config(config.camera), size)
  shading = views.fixed_shading("shaded", cam["light_pos"])
  rcfg = views.make_render_config(config)

  def render_loss(p):
    field_fn, background_fn = views.field_fns(trainer.scene, p)
    out = render.render_image(jax.random.PRNGKey(2), field_fn, background_fn, cam, shading, rcfg, size, size)
    return jnp.sum(out["rgb"])

  render_ms = median_ms(jax.jit(jax.grad(render_loss)), params, warmup=2, repeats=20)
  images = jax.random.uniform(jax.random.PRNGKey(3), (config.batch_size, size, size, 3))
  encode = jax.jit(jax.grad(lambda x, p: jnp.sum(g.encode(p, x))))
  encoder_ms = median_ms(encode, images, pp, warmup=2, repeats=20)
  latents = jax.block_until_ready(jax.jit(g.encode)(pp, images))
  x_t = jnp.concatenate([latents, latents])
  t = jnp.full((x_t.shape[0],), 500, jnp.int32)
  ctx = jnp.asarray(text_emb[0, :2])
  unet_ms = median_ms(jax.jit(g.predict_noise), pp, x_t, t, ctx, warmup=2, repeats=20)

  return render_ms, encoder_ms, unet_ms


def sd_config(
  model: str,
  *,
  dtype: str = "bfloat16",
  remat: bool = False,
  attention: str = "xla",
  image_size: int = 512,
  render_size: int = 64,
  deterministic: bool = True,
  overrides: dict | None = None,
):
  """configs/sd21_base.py with the benchmark's settings (and dotted `overrides`, e.g. {'field.mlp_width': 16})."""
  from configs import sd21_base

  config = sd21_base.get_config()
  with config.unlocked():
    config.guidance.sd.model = model
    config.guidance.sd.dtype = dtype
    config.guidance.sd.remat = remat
    config.guidance.sd.attention = attention
    config.guidance.sd.image_size = image_size
    config.render.image_size = render_size
    config.gpu_deterministic = deterministic
    for key, value in (overrides or {}).items():
      *parents, leaf = key.split(".")
      target = config
      for name in parents:
        target = target[name]
      target[leaf] = value
  return config


def build(config):
  """(prior, trainer, state, text_emb, seconds): the run's prior, train.Trainer and initial state, loaded through
  the project's loader, with the weights on the device."""
  import jax

  from dreamfusion_jax import train

  t0 = time.perf_counter()
  prior = train.build_prior(config)
  trainer = train.Trainer(config, prior)
  state = trainer.init()
  text_emb = trainer.text_embeddings(train.embed_prompts(prior, config))
  prior.release()
  jax.block_until_ready((state, trainer.prior_params))
  return prior, trainer, state, text_emb, time.perf_counter() - t0


def time_steps(trainer, state, text_emb, steps: int) -> dict:
  """Runs trainer.step: the first (compiling) timed alone, 2 untimed, then `steps` timed (ms, synchronised each).

  Returns dict(compile_s, times_ms, state, metrics)."""
  import jax

  t0 = time.perf_counter()
  state, metrics = trainer.step(state, text_emb)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t0
  for _ in range(2):
    state, metrics = trainer.step(state, text_emb)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = trainer.step(state, text_emb)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - t0) * 1e3)
  return dict(compile_s=compile_s, times_ms=times, state=state, metrics=metrics)


def main(argv):
  del argv
  import jax
  import numpy as np

  config = sd_config(
    FLAGS.model,
    dtype=FLAGS.dtype,
    remat=FLAGS.remat,
    attention=FLAGS.attention,
    image_size=FLAGS.image_size,
    render_size=FLAGS.render_size,
    deterministic=FLAGS.deterministic,
  )
  device = jax.devices()[0]
  prior, trainer, state, text_emb, load_s = build(config)
  timed = time_steps(trainer, state, text_emb, FLAGS.steps)
  state, metrics, times, compile_s = timed["state"], timed["metrics"], timed["times_ms"], timed["compile_s"]
  step_ms = float(np.median(times))
  finite = bool(np.isfinite(np.asarray(metrics["loss"])).all())
  stats = device.memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")

  render_ms, encoder_ms, unet_ms = part_timings(config, prior, trainer, state, text_emb)
  size = config.render.image_size

  result = dict(
    device=device.device_kind,
    jax=jax.__version__,
    date=time.strftime("%Y-%m-%d"),
    dtype=FLAGS.dtype,
    remat=FLAGS.remat,
    attention=FLAGS.attention,
    deterministic=FLAGS.deterministic,
    render_size=size,
    encoder_size=config.guidance.sd.image_size,
    samples_per_ray=config.render.num_coarse + config.render.num_fine,
    load_s=round(load_s, 1),
    compile_s=round(compile_s, 1),
    step_ms=round(step_ms, 2),
    step_ms_min=round(min(times), 2),
    peak_gb=None if peak is None else round(peak / 2**30, 3),
    finite=finite,
    parts_ms=dict(
      render_fwd_bwd=round(render_ms, 2), encoder_fwd_bwd=round(encoder_ms, 2), unet_cfg_fwd=round(unet_ms, 2)
    ),
    parts_share={k: round(v / step_ms, 3) for k, v in dict(render=render_ms, encoder=encoder_ms, unet=unet_ms).items()},
    preallocate=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
  )
  logging.info("%s", result)
  print(json.dumps(result))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["model"])
  app.run(main)
