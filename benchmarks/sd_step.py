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
encoder) forward+backward and the UNet with CFG forward; their shares of the step time (--noparts
leaves them out: they compile programs of their own, which a memory cap may not hold).

Memory, to tell the program's own needs from the compiler's: `peak_gb_compiled` is the peak after
loading (the text encoder runs once) and compiling the step, before running it (on a GPU, XLA's
autotuner runs candidate kernels with their workspaces on the device while it compiles), `peak_gb`
the peak after the timed steps, and
`step_memory` what the compiled step allocates (memory_analysis: temporaries, arguments, outputs),
its largest library-call workspaces (a cuDNN convolution's or cuBLAS GEMM's u8[N] scratch, sized
by the algorithm the autotuner chose) and its largest arrays, each with the JAX op it came from
(benchmarks/hlo_memory.py). With XLA_PYTHON_CLIENT_MEM_FRACTION (preallocation on) the device's
memory is capped as a smaller card's would be: benchmarks/sd_memory_cap.py.

--profile=N runs N more steps of the same compiled step under jax.profiler.trace and reads the trace it writes
(benchmarks/step_profile.py, no tensorboard): the device time per step by kernel, by category (convolution, GEMM,
attention, fusion, ...) and by the JAX op each kernel came from, the device-busy time against the wall time
(JSON key `profile`, and a table on stdout). --compare_deterministic builds and measures the step a second time
with gpu_deterministic flipped (a compile option of the step's jit, so both live in one process) and reports
`compare`, `determinism_cost_ms` and, with --profile, `determinism_cost` (on - off, per category and model part).

--abstract compiles the step from the folder's config.json files alone (the weights as shapes, jax.eval_shape)
and reports step_memory without running it: the full-size step's own buffers on a machine that could not hold
or load the weights, such as a CPU (`JAX_PLATFORMS=cpu python benchmarks/sd_step.py --abstract --model=...`).
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
  flags.DEFINE_enum("attention", "auto", ["auto", "xla", "cudnn"], "guidance.sd.attention.")
  flags.DEFINE_multi_string(
    "set",
    [],
    "More config overrides, KEY=VALUE with VALUE a Python literal (else a string), e.g. the paper's density field "
    "instead of the configs' signed-distance surface: --set=field.density_activation=exp.",
  )
  flags.DEFINE_integer("steps", 50, "Timed steps (after 3 untimed ones).")
  flags.DEFINE_integer("image_size", 512, "guidance.sd.image_size (renders are resized to it before the VAE).")
  flags.DEFINE_integer("render_size", 64, "render.image_size.")
  flags.DEFINE_bool("deterministic", True, "gpu_deterministic (XLA's nondeterministic kernels left out).")
  flags.DEFINE_bool("abstract", False, "Only compile the step, with the weights as shapes; report its memory.")
  flags.DEFINE_bool("parts", True, "Also time the step's parts, each jitted alone (after the peak is read).")
  flags.DEFINE_string("out", None, "Also write the result as JSON here.")
  flags.DEFINE_integer(
    "profile",
    0,
    "After the timing, run this many more steps of the same compiled step under jax.profiler and "
    "report where the device time goes (JSON key `profile`, and a table); 0: no profile.",
  )
  flags.DEFINE_string("profile_dir", None, "Keep the profiler's trace here (default: a temporary folder, removed).")
  flags.DEFINE_bool(
    "compare_deterministic",
    False,
    "Also build, time (and with --profile, profile) the step with the opposite "
    "--deterministic, in this process (a compile of its own), and report the difference (JSON key `compare`).",
  )


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


def abstract_prior(config):
  """config's Stable Diffusion prior with its weights as shapes only: the modules built from the folder's config.json
  files, the weights' shapes from their init (stable_diffusion.param_shapes: nothing read, nothing held), pending
  forever (the step is lowered against the shapes, never run). Returns (prior, the text embeddings' width)."""
  import concurrent.futures

  from dreamfusion_jax.guidance import interface, stable_diffusion

  sd = config.guidance.sd
  m = stable_diffusion.modules(
    stable_diffusion.resolve_model(sd.model),
    dtype=sd.dtype,
    remat=sd.remat,
    attention_implementation=stable_diffusion.attention_implementation(sd.attention, sd.dtype),
  )
  no_weights = concurrent.futures.Future()
  no_weights.set_exception(RuntimeError("--abstract reads no weights; nothing may run the step"))
  params = interface.PendingParams(stable_diffusion.param_shapes(m, decoder=False), no_weights)
  prior = interface.Prior(stable_diffusion.make_guidance(m, sd.image_size), params, lambda texts: None)
  return prior, m.unet.cross_attention_dim


def abstract_main(config) -> dict:
  """--abstract: the compiled step's memory, nothing run."""
  import hlo_memory
  import jax
  import numpy as np

  from dreamfusion_jax import train

  prior, width = abstract_prior(config)
  trainer = train.Trainer(config, prior)
  text_emb = trainer.text_embeddings(np.zeros((9, 77, width), np.float32))
  t0 = time.perf_counter()
  compiled = trainer.compile_step_in_background(text_emb).result()
  return dict(
    device=jax.devices()[0].device_kind,
    jax=jax.__version__,
    date=time.strftime("%Y-%m-%d"),
    dtype=FLAGS.dtype,
    remat=FLAGS.remat,
    abstract=True,
    render_size=config.render.image_size,
    encoder_size=config.guidance.sd.image_size,
    compile_s=round(time.perf_counter() - t0, 1),
    step_memory=hlo_memory.summary(compiled),
  )


def sd_config(
  model: str,
  *,
  dtype: str = "bfloat16",
  remat: bool = False,
  attention: str = "auto",
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

  Returns dict(compile_s, times_ms, state, metrics, peak_compiled: the device's peak bytes after compiling, before
  the first step; step_memory: hlo_memory.summary of the compiled step)."""
  import hlo_memory
  import jax

  t0 = time.perf_counter()
  compiled = trainer.compile_step_in_background(text_emb).result()
  peak_compiled = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
  step_memory = hlo_memory.summary(compiled)
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
  return dict(
    compile_s=compile_s,
    times_ms=times,
    state=state,
    metrics=metrics,
    peak_compiled=peak_compiled,
    step_memory=step_memory,
    hlo_text=compiled.as_text() or "",
  )


def profile_steps(trainer, state, text_emb, steps: int, hlo_text: str, directory: str | None):
  """Runs `steps` more steps of trainer's compiled step (synchronised each) inside jax.profiler.trace and reads
  the trace it writes (benchmarks/step_profile.py): the device's time per kernel, category and JAX op, against
  the wall time of those steps. The trace stays in `directory` if given, else in a temporary folder that is
  removed. Python's own tracer is off: its events are host-side and would only make the trace larger.

  Returns (state, profile: step_profile.summarise's dict, or {error} when the profiler or the parse failed)."""
  import shutil
  import tempfile

  import jax
  import step_profile

  folder = directory or tempfile.mkdtemp(prefix="sd_step_trace_")
  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0
  wall_ms, profile = 0.0, None
  try:
    with jax.profiler.trace(folder, create_perfetto_trace=True, profiler_options=options):
      for _ in range(steps):
        t0 = time.perf_counter()
        state, _ = trainer.step(state, text_emb)
        jax.block_until_ready(state)
        wall_ms += (time.perf_counter() - t0) * 1e3
    trace = step_profile.load_trace(step_profile.find_trace(folder))
    profile = step_profile.summarise(trace, hlo_text, steps, wall_ms)
  except Exception as e:  # A GPU call is rare: a profiler or parser failure must not lose the timings.
    logging.exception("The profile failed")
    profile = dict(error=repr(e))
  finally:
    if directory is None:
      shutil.rmtree(folder, ignore_errors=True)
  return state, profile


def profile_text(profile: dict) -> str:
  """step_profile.table of a profile, or the error that stopped it."""
  import step_profile

  return f"profile failed: {profile['error']}" if "error" in profile else step_profile.table(profile)


def measure(trainer, state, text_emb, profile_dir: str | None) -> dict:
  """One variant's numbers: time_steps (FLAGS.steps), then with --profile the profiled steps. Returns
  time_steps's dict with step_ms, step_ms_min and (with --profile) profile added; state is the last one."""
  import numpy as np

  timed = time_steps(trainer, state, text_emb, FLAGS.steps)
  timed["step_ms"] = round(float(np.median(timed["times_ms"])), 2)
  timed["step_ms_min"] = round(min(timed["times_ms"]), 2)
  if FLAGS.profile > 0:
    timed["state"], profile = profile_steps(
      trainer, timed["state"], text_emb, FLAGS.profile, timed["hlo_text"], profile_dir
    )
    if "busy_ms" in profile:  # The profiler may slow the launches (on a GPU XLA may run a command buffer's
      # kernels one by one while tracing): the gap is also given against the unprofiled median.
      profile["idle_ms_unprofiled"] = round(timed["step_ms"] - profile["busy_ms"], 3)
    timed["profile"] = profile
  return timed


def parse_sets(items: list[str]) -> dict:
  """--set's KEY=VALUE items -> {KEY: VALUE}, each VALUE a Python literal where it reads as one, else a string."""
  import ast

  out = {}
  for item in items:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise SystemExit(f"--set={item!r}: write KEY=VALUE, e.g. --set=sdf.eikonal=1000.0")
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text
  return out


def flags_config(deterministic: bool):
  """sd_config of the command line's flags, with gpu_deterministic as given."""
  return sd_config(
    FLAGS.model,
    dtype=FLAGS.dtype,
    remat=FLAGS.remat,
    attention=FLAGS.attention,
    image_size=FLAGS.image_size,
    render_size=FLAGS.render_size,
    deterministic=deterministic,
    overrides=parse_sets(FLAGS.set),
  )


def compare_deterministic(config, prior, trainer, text_emb) -> dict:
  """The step built and measured with config.gpu_deterministic flipped: a Trainer of its own (the option is
  per compile: compilation_cache.compiler_options, passed to the step's jax.jit, so one process holds both),
  on the weights the first trainer already placed. Returns {deterministic, compile_s, step_ms, step_ms_min,
  profile (with --profile)}."""
  import dataclasses

  from dreamfusion_jax import train

  other = flags_config(deterministic=not FLAGS.deterministic)
  flipped = train.Trainer(other, dataclasses.replace(prior, params=trainer.prior_params))
  directory = FLAGS.profile_dir and os.path.join(FLAGS.profile_dir, f"deterministic_{not FLAGS.deterministic}")
  timed = measure(flipped, flipped.init(), text_emb, directory)
  out = dict(deterministic=not FLAGS.deterministic, compile_s=round(timed["compile_s"], 1))
  out.update({k: timed[k] for k in ("step_ms", "step_ms_min", "profile") if k in timed})
  return out


def main(argv):
  del argv
  import jax
  import numpy as np

  from dreamfusion_jax.guidance import stable_diffusion

  config = flags_config(deterministic=FLAGS.deterministic)
  if FLAGS.abstract:
    result = abstract_main(config)
    print(json.dumps(result))
    if FLAGS.out:
      with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=2)
    return
  import step_profile

  device = jax.devices()[0]
  prior, trainer, state, text_emb, load_s = build(config)
  directory = FLAGS.profile_dir and os.path.join(FLAGS.profile_dir, f"deterministic_{FLAGS.deterministic}")
  timed = measure(trainer, state, text_emb, directory)
  state, metrics, times, compile_s = timed["state"], timed["metrics"], timed["times_ms"], timed["compile_s"]
  step_ms = float(np.median(times))
  finite = bool(np.isfinite(np.asarray(metrics["loss"])).all())
  stats = device.memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")

  parts = part_timings(config, prior, trainer, state, text_emb) if FLAGS.parts else None
  size = config.render.image_size
  gb = lambda b: None if b is None else round(b / 2**30, 3)  # noqa: E731

  result = dict(
    device=device.device_kind,
    jax=jax.__version__,
    date=time.strftime("%Y-%m-%d"),
    dtype=FLAGS.dtype,
    remat=FLAGS.remat,
    attention=FLAGS.attention,  # The flag, and what it ran as ('auto' is cuDNN on a GPU in bfloat16).
    attention_used=stable_diffusion.attention_implementation(FLAGS.attention, FLAGS.dtype) or "xla",
    overrides=FLAGS.set,
    deterministic=FLAGS.deterministic,
    render_size=size,
    encoder_size=config.guidance.sd.image_size,
    samples_per_ray=config.render.num_coarse + config.render.num_fine,
    load_s=round(load_s, 1),
    compile_s=round(compile_s, 1),
    step_ms=round(step_ms, 2),
    step_ms_min=round(min(times), 2),
    peak_gb=gb(peak),
    peak_gb_compiled=gb(timed["peak_compiled"]),
    bytes_limit_gb=gb(stats.get("bytes_limit")),
    finite=finite,
    step_memory=timed["step_memory"],
    preallocate=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
    mem_fraction=os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
    xla_flags=os.environ.get("XLA_FLAGS", ""),
  )
  if parts:
    names = ("render_fwd_bwd", "encoder_fwd_bwd", "unet_cfg_fwd")
    result["parts_ms"] = {k: round(v, 2) for k, v in zip(names, parts)}
    result["parts_share"] = {k: round(v / step_ms, 3) for k, v in zip(("render", "encoder", "unet"), parts)}
  if "profile" in timed:
    result["profile"] = timed["profile"]
    print(profile_text(timed["profile"]))
  if FLAGS.compare_deterministic:
    del state, timed  # The first variant's state and program text; its weights stay for the second.
    try:
      compare = compare_deterministic(config, prior, trainer, text_emb)
    except Exception as e:  # Out of memory, say: the first variant's numbers still come back.
      logging.exception("The second variant failed")
      compare = dict(deterministic=not FLAGS.deterministic, error=repr(e))
    result["compare"] = compare
    det, nondet = (result, compare) if FLAGS.deterministic else (compare, result)
    if "step_ms" in compare:
      result["determinism_cost_ms"] = round(det["step_ms"] - nondet["step_ms"], 2)
    if "profile" in compare:
      print(profile_text(compare["profile"]))
      if "error" not in det["profile"] and "error" not in nondet["profile"]:
        diff = step_profile.difference(det["profile"], nondet["profile"])
        result["determinism_cost"] = diff
        print(step_profile.diff_table(diff, "gpu_deterministic on - off"))
  logging.info("%s", result)
  print(json.dumps(result))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["model"])
  app.run(main)
