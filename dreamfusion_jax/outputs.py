"""What a run writes: metrics (JSONL + TensorBoard), validation renders, and per-seed exports."""

import dataclasses
import functools
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dreamfusion_jax import compilation_cache, export, sds
from dreamfusion_jax.guidance import text as text_lib
from dreamfusion_jax.nerf import views
from dreamfusion_jax.nerf.field import Scene
from dreamfusion_jax.shapes import world

# Validation views: (elevation, azimuth) of the front, side, back and overhead suffixes.
VALIDATION_VIEWS = ((15.0, 0.0), (15.0, 90.0), (15.0, 180.0), (75.0, 0.0))


def view_renderer(
  scene: Scene, config: ml_collections.ConfigDict, size: int, field_of: Optional[Callable] = None, rcfg=None
):
  """A jitted (params, elevation, azimuth) -> dict(rgb, textureless, normals, opacity) for one seed.

  Renders are deterministic (no sampling noise): the same params give the same images. field_of(params)
  -> field_fn replaces the scene's field, on a white background (the true object of a Shapes caption);
  rcfg replaces the run's render settings.
  """
  rcfg = rcfg or views.make_render_config(config)
  # Rays per sequential chunk from render.view_chunk_samples: the views' memory is bounded, whatever the samples.
  rays = max(256, config.render.view_chunk_samples // (rcfg.num_coarse + rcfg.num_fine))
  rcfg = dataclasses.replace(rcfg, chunk_size=min(rcfg.chunk_size, rays))
  focal = size * 1.0  # A 53 degree field of view.

  @functools.partial(jax.jit, compiler_options=compilation_cache.compiler_options(config))
  def render_view(params, elevation, azimuth):
    if field_of is None:
      field_fn, learned = views.field_fns(scene, params)
      background = views.display_background(config, learned)
    else:
      field_fn, background = field_of(params), views.white
    out = views.orbit_view(
      field_fn,
      {"albedo": background, "textureless": views.white},
      rcfg,
      elevation,
      azimuth,
      distance=config.export.distance,
      focal=focal,
      size=size,
    )
    colour = out["albedo"]
    return dict(
      rgb=colour["rgb"], textureless=out["textureless"]["rgb"], normals=colour["normals"], opacity=colour["opacity"]
    )

  return render_view


def truth_renderer(scene: Scene, config: ml_collections.ConfigDict, size: int):
  """view_renderer of the true object when the prompt is a Shapes-world caption ('a red cube'), else None.

  Its params argument is unused (pass None); validation sheets and views.png show it above the result.
  """
  try:
    colour, shape = world.parse_caption(config.prompt)
  except ValueError:
    return None
  field_fn = world.true_field(world.SHAPES.index(shape), world.COLOURS[colour])
  # With the world's own samples: the run's few samples per ray alias on a surface this sharp.
  return view_renderer(scene, config, size, field_of=lambda _: field_fn, rcfg=world.RENDER_CONFIG)


def validation_sheet(render_view, params_per_seed: list[Any], truth_view=None) -> np.ndarray:
  """Colour and textureless renders of the four validation views, uint8 [H', W', 3]: one row per seed, below
  a row of the true object when truth_view (truth_renderer) is given."""
  rows = [] if truth_view is None else [_validation_row(truth_view, None)]
  rows += [_validation_row(render_view, params) for params in params_per_seed]
  return (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)


def _validation_row(render_view, params) -> np.ndarray:
  tiles = []
  for elevation, azimuth in VALIDATION_VIEWS:
    out = render_view(params, jnp.float32(elevation), jnp.float32(azimuth))
    tiles += [np.asarray(out["rgb"]), np.asarray(out["textureless"])]
  return np.concatenate(tiles, axis=1)


class Precompiled:
  """A jitted function and, once `compile(*args)` has run, its program compiled ahead of time for arguments like
  those (same shapes, dtypes and placement), which every later call runs; before that, calls go to the jit."""

  def __init__(self, fn: Callable):
    self.fn, self.compiled = fn, None

  def compile(self, *args) -> None:
    self.compiled = self.fn.lower(*args).compile()

  def __call__(self, *args):
    return (self.fn if self.compiled is None else self.compiled)(*args)


def compile_in_background(render_view, preview, params: Any, text_emb: np.ndarray, prior_params: Any, truth_view=None):
  """Compiles render_view (validation and export), preview and truth_view (each a Precompiled, or None) on a
  worker thread; returns its future.

  Each compiles for the arguments validation passes, from their shapes: one seed's initial params (host arrays),
  text_emb [9, L, D] (host), the view's angles and the preview's key. XLA compiles outside Python's lock, so
  these compiles (the default job's on an H200: 4 s and 11-18 s) run beside the train step's instead of after
  it. Nothing runs or is put on the device from this thread: on a GPU, a program run from it while the steps ran
  broke the step's CUDA graph, which shares the device's stream (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; the
  peacock path under 6 GiB on an H100, 2026-12-07). The caller waits on the future (`.result()`, which
  re-raises the worker's error) before it validates or exports.
  """

  def compile_all():
    angle = jax.ShapeDtypeStruct((), jnp.float32)  # Shapes only: this thread puts nothing on the device.
    render_view.compile(params, angle, angle)
    if preview is not None:
      preview.compile(params, text_emb, prior_params, jax.eval_shape(jax.random.PRNGKey, 0))
    if truth_view is not None:
      truth_view.compile(None, angle, angle)

  return compilation_cache.in_background(compile_all, "compile_renderers")


PREVIEW_TILE = 192  # Pixels per side of each tile of the guidance preview, at least.
PREVIEW_HEADER = 40  # Pixels of the preview's label strip.


def guidance_previewer(scene: Scene, config: ml_collections.ConfigDict, guidance):
  """A jitted (params, text_emb [9,L,D], prior_params, key) -> [size, 4 * size, 3] preview of one seed (3 tiles
  without the sample), size = render.image_size.

  Left to right: the front view as the prior sees it (albedo, at render.image_size, resized like a
  training render), that view noised to time guidance.preview_t, the prior's one-step denoised
  estimate at that time with classifier-free guidance (sds.denoised) at guidance.scale, decoded to pixels, and
  the prior's own DDIM sample of the front view's caption (guidance.preview_sample_steps steps at the moderate
  guidance.preview_sample_scale), which shows what the caption means to the prior.
  """
  from dreamfusion_jax.guidance import shapes_prior  # The DDIM sampler (tested against diffusers').

  size = config.render.image_size
  rcfg = views.make_render_config(config)
  elevation, azimuth = VALIDATION_VIEWS[0]
  g = config.guidance
  t = min(int(round(g.preview_t * g.num_train_timesteps)), g.num_train_timesteps - 1)

  @functools.partial(jax.jit, compiler_options=compilation_cache.compiler_options(config))
  def preview(params, text_emb, prior_params, key):
    view = text_lib.view_index(elevation, azimuth)
    field_fn, learned = views.field_fns(scene, params)
    rgb = views.orbit_view(
      field_fn,
      {"albedo": views.display_background(config, learned)},
      rcfg,
      jnp.float32(elevation),
      jnp.float32(azimuth),
      distance=config.export.distance,
      focal=size * 1.0,
      size=size,
    )["albedo"]["rgb"][None]
    x0 = guidance.encode(prior_params, rgb)
    cond, uncond = text_emb[1 + view][None], text_emb[0][None]
    x_t, x0_hat = sds.denoised(key, guidance, prior_params, x0, cond, uncond, scale=g.scale, t=t)
    tiles = [guidance.decode(prior_params, x) for x in (x0, x_t, x0_hat)]
    if g.preview_sample_steps > 0:
      latents = shapes_prior.sample(
        jax.random.fold_in(key, 1),
        guidance.predict_noise,
        prior_params,
        cond,
        uncond,
        guidance.alphas_cumprod,
        num_steps=g.preview_sample_steps,
        guidance_scale=g.preview_sample_scale,
        clip_x0=guidance.encoder is None,  # Pixels lie in [-1, 1]; latents don't.
        initial_noise=jax.random.normal(jax.random.fold_in(key, 2), x0.shape, jnp.float32),
        raw=True,
      )
      tiles.append(guidance.decode(prior_params, latents))
    tiles = [jax.image.resize(x[0], (size, size, 3), "bilinear") for x in tiles]
    return jnp.concatenate(tiles, axis=1)

  return preview


def preview_labels(config: ml_collections.ConfigDict) -> list[str]:
  """The column labels of the guidance preview (guidance_previewer's tiles)."""
  g = config.guidance
  labels = ["render (front view)", f"noised, t = {g.preview_t:g}", f"1-step denoised, w = {g.scale:g}"]
  if g.preview_sample_steps > 0:
    labels.append(f"prior's sample, w = {g.preview_sample_scale:g}")
  return labels


def guidance_preview_sheet(
  preview, params_per_seed: list[Any], text_emb: np.ndarray, prior_params: Any, step: int, labels: list[str]
) -> np.ndarray:
  """One row per seed (see guidance_previewer), each tile scaled to at least PREVIEW_TILE pixels (nearest: the
  renders' pixels stay visible), under a strip with the column labels and the step; text_emb [9,L,D], every
  seed's. uint8 [PREVIEW_HEADER + S * tile, len(labels) * tile, 3]."""
  rows = [np.asarray(preview(p, text_emb, prior_params, jax.random.PRNGKey(step))) for p in params_per_seed]
  sheet = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)
  size = sheet.shape[0] // len(rows)
  zoom = -(-PREVIEW_TILE // size)  # Ceiling division.
  sheet = np.repeat(np.repeat(sheet, zoom, axis=0), zoom, axis=1)
  tile = size * zoom
  header = label_strip(sheet.shape[1], [(i * tile + 6, text) for i, text in enumerate(labels)], f"step {step}")
  return np.concatenate([header, sheet], axis=0)


def label_strip(width: int, labels: list[tuple[int, str]], note: str = "") -> np.ndarray:
  """uint8 [PREVIEW_HEADER, width, 3]: white, with each (x, text) label written at x and `note` on a second
  line (Pillow's own font)."""
  from PIL import Image, ImageDraw, ImageFont

  image = Image.new("RGB", (width, PREVIEW_HEADER), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  try:
    font = ImageFont.load_default(size=13)
  except (TypeError, OSError):  # Pillow without FreeType: its small bitmap font.
    font = ImageFont.load_default()
  for x, text in labels:
    draw.text((x, 3), text, fill=(0, 0, 0), font=font)
  if note:
    draw.text((6, 21), note, fill=(90, 90, 90), font=font)
  return np.asarray(image, np.uint8)


def write_validation(workdir: str, step: int, sheet: np.ndarray, kind: str = "") -> None:
  """validation/step_N.png (the renders), or step_N_KIND.png."""
  os.makedirs(os.path.join(workdir, "validation"), exist_ok=True)
  name = f"step_{step:06d}{'_' + kind if kind else ''}.png"
  export.write_png(os.path.join(workdir, "validation", name), sheet)


# export.num_frames = 0: a 4 s turntable at 30 fps on a GPU or TPU. On a 2-core CPU a 128 px frame of the default
# job costs ~1.4 CPU-seconds, so only views.png's 8 views (45 degrees apart) keep its whole export near 15 s
# (BENCHMARKS.md, 'Export'); --config.export.num_frames=120 makes a smooth one there too, at ~1 s a frame.
AUTO_FRAMES = {"cpu": 8}
AUTO_FRAMES_ACCELERATOR = 120
TURNTABLE_SECONDS = 4.0  # The loop's length when export.fps is 0.


def turntable_timing(config: ml_collections.ConfigDict, platform: Optional[str] = None) -> tuple[int, float]:
  """(frames, fps) of the turntable: export.num_frames and export.fps, where 0 picks by platform (jax's default
  backend unless given: 'cpu', 'gpu', 'tpu'): AUTO_FRAMES frames, and num_frames / TURNTABLE_SECONDS fps."""
  platform = platform or jax.default_backend()
  frames = config.export.num_frames or AUTO_FRAMES.get(platform, AUTO_FRAMES_ACCELERATOR)
  return frames, float(config.export.fps or frames / TURNTABLE_SECONDS)


def export_seed(
  directory: str,
  scene: Scene,
  params: Any,
  config: ml_collections.ConfigDict,
  render_view,
  truth_view=None,
  parts: tuple[str, ...] = tuple(export.PARTS),
) -> dict[str, str]:
  """Writes the parts (export.PARTS) of one seed's export: turntable.mp4 and views.png (the true object above
  the result when truth_view, a truth_renderer, is given), and the mesh files."""
  # params are an argument, not a closure: a closure would bake the hash tables into the program.
  field = jax.jit(lambda p, x: scene.apply({"params": p}, x, method=Scene.field))
  values, level = views.surface_values(scene, config)
  values = jax.jit(values)
  level_fn = lambda x: values(params, x)
  albedo_fn = lambda x: field(params, x)[1]
  view_fn = lambda el, az: {k: np.asarray(v) for k, v in render_view(params, jnp.float32(el), jnp.float32(az)).items()}
  truth_fn = (
    None
    if truth_view is None
    else (lambda el, az: {k: np.asarray(v) for k, v in truth_view(None, jnp.float32(el), jnp.float32(az)).items()})
  )
  e = config.export
  num_frames, fps = turntable_timing(config)
  return export.export_fields(
    directory,
    level_fn,
    albedo_fn,
    view_fn,
    bound=config.field.bound,
    mesh_resolution=e.mesh_resolution,
    mesh_threshold=level,
    num_frames=num_frames,
    fps=fps,
    elevation=e.elevation,
    truth_view_fn=truth_fn,
    texture_size=e.texture_size,
    max_faces=e.max_faces,
    parts=parts,
  )
