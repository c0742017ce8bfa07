"""Our Stable Diffusion SDS step against the PyTorch/diffusers guidance half, in one invocation on one device.

  python ../shared/tools/make_random_sd.py /tmp/sd_random fp16     # SD 2.1-base shapes, random weights
  XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/sd_vs_torch.py --model=/tmp/sd_random [--out=vs.json]

Times, on the same GPU and from the same diffusers-layout folder:
  ours           the whole step of configs/sd21_base.py (benchmarks/sd_step.py's machinery: the project's loader,
                 `train.Trainer`'s jitted step, bfloat16, deterministic as configured): render forward and
                 backward, bilinear resize to 512, VAE encoder forward and backward, UNet with CFG, Adam;
  torch_eager    the guidance half in PyTorch/diffusers as a torch user writes it (stable-dreamfusion,
                 threestudio): fp16, eager, SDPA attention (AttnProcessor2_0); a 64x64 render-sized input (a
                 leaf that needs its gradient) -> bilinear 512 -> VAE encoder mean forward -> UNet on the doubled
                 (unconditional + conditional) batch under no_grad -> CFG -> the SDS loss -> backward through the
                 encoder to the input;
  torch_compile  the same half under torch.compile (--compile_mode; inductor by default).
The torch half lacks the render and the optimiser update, which ours includes: the ratio flatters torch.
The earlier number in BENCHMARKS.md (56.6 ms on an H100, 65.9 ms on an H200, 3.5 GB) is this torch_eager.

Median over --steps steps after --warmup untimed ones; each step synchronised. Peak memory: JAX's
peak_bytes_in_use (meaningful with XLA_PYTHON_CLIENT_PREALLOCATE=false) and torch.cuda.max_memory_allocated of
each torch variant (reset between them). On a CPU (the test's tiny checkpoint) torch runs in float32.
Prints a table and the ratios; --out writes the JSON.
"""

import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined only when run as a script: the test imports this module)."""
  flags.DEFINE_string("model", None, "A diffusers-layout folder (e.g. from make_random_sd.py).")
  flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "Ours: guidance.sd.dtype.")
  flags.DEFINE_bool("deterministic", True, "Ours: gpu_deterministic.")
  flags.DEFINE_integer("steps", 50, "Timed steps of each variant.")
  flags.DEFINE_integer("warmup", 3, "Untimed steps of each variant before its timed ones (the first compiles).")
  flags.DEFINE_integer("image_size", 512, "The encoder's input size (renders are resized to it).")
  flags.DEFINE_integer("render_size", 64, "The render's size.")
  flags.DEFINE_float("scale", 100.0, "Classifier-free guidance weight (configs/sd21_base.py's).")
  flags.DEFINE_list("variants", ["ours", "torch_eager", "torch_compile"], "Which variants to time.")
  flags.DEFINE_string("compile_mode", "default", "torch.compile's mode (e.g. max-autotune-no-cudagraphs).")
  flags.DEFINE_string("compile_backend", "inductor", "torch.compile's backend (the CPU test uses eager).")
  flags.DEFINE_integer("batch", 1, "Renders per step (configs/sd21_base.py's batch_size).")
  flags.DEFINE_bool(
    "torch_subprocess",
    False,
    "Run the torch variants in a child process of this invocation (same device, one after the other): for an "
    "image whose torch and jax CUDA libraries cannot share a process.",
  )
  flags.DEFINE_string("out", None, "Also write the result as JSON here.")


VARIANTS = ("ours", "torch_eager", "torch_compile")


class TorchHalf:
  """The PyTorch/diffusers guidance half of an SDS step, from a diffusers-layout folder.

  `loss(rgb, t, noise, context)`: rgb [B, 3, r, r] in [0, 1] (requires grad), t [B] int timesteps, noise the
  latents' shape, context [2B, L, D] = [unconditional; conditional] embeddings. Returns the SDS loss
  0.5 * ||x0 - stop_grad(x0 - w(t) (eps_hat - noise))||^2 with x0 = scaling * VAE-encoder mean of the resized
  render and w(t) = 1 - abar_t, whose gradient is the SDS gradient (sds.sds_loss's).
  """

  def __init__(self, folder: str, device: str, dtype, image_size: int, scale: float):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    self.torch, self.device, self.dtype = torch, device, dtype
    self.image_size, self.scale = image_size, scale
    self.vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype).to(device).eval()
    self.unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype).to(device).eval()
    for module in (self.vae, self.unet):
      module.requires_grad_(False)
      module.set_attn_processor(AttnProcessor2_0())  # SDPA: PyTorch's fused attention.
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    self.alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    self.scaling = float(self.vae.config.scaling_factor)
    self.context_width = int(self.unet.config.cross_attention_dim)
    self.latent_channels = int(self.vae.config.latent_channels)
    self.latent_size = image_size // 2 ** (len(self.vae.config.block_out_channels) - 1)

  def loss(self, rgb, t, noise, context):
    torch, F = self.torch, self.torch.nn.functional
    x = F.interpolate(rgb * 2.0 - 1.0, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
    x0 = self.vae.encode(x.to(self.dtype)).latent_dist.mean.float() * self.scaling
    abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
      x_t = abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise
      eps = self.unet(torch.cat([x_t, x_t]).to(self.dtype), torch.cat([t, t]), encoder_hidden_states=context).sample
      eps_uncond, eps_cond = eps.float().chunk(2)
      residual = (1.0 - abar) * (eps_uncond + self.scale * (eps_cond - eps_uncond) - noise)
    target = (x0 - residual).detach()
    return 0.5 * ((x0 - target) ** 2).sum()

  def inputs(self, generator, batch: int, render_size: int):
    """Random inputs of one step: (rgb, t, noise, context); timing does not depend on their values."""
    torch = self.torch
    rgb = torch.rand(batch, 3, render_size, render_size, generator=generator).to(self.device).requires_grad_(True)
    t = torch.randint(20, 981, (batch,), generator=generator).to(self.device)
    shape = (batch, self.latent_channels, self.latent_size, self.latent_size)
    noise = torch.randn(shape, generator=generator).to(self.device)
    context = torch.randn(2 * batch, 77, self.context_width, generator=generator).to(self.device, self.dtype)
    return rgb, t, noise, context


def time_torch(half: TorchHalf, loss_fn, batch: int, render_size: int, steps: int, warmup: int) -> dict:
  """Median ms of loss_fn(...) + backward, synchronised per step, and the peak memory of these steps."""
  torch = half.torch
  cuda = half.device.startswith("cuda")
  generator = torch.Generator().manual_seed(0)

  def one():
    rgb, t, noise, context = half.inputs(generator, batch, render_size)
    start = time.perf_counter()
    loss_fn(rgb, t, noise, context).backward()
    if cuda:
      torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3, rgb.grad

  t0 = time.perf_counter()
  if cuda:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
  _, grad = one()
  first_s = time.perf_counter() - t0
  for _ in range(warmup - 1):
    one()
  times = [one()[0] for _ in range(steps)]
  peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
  return dict(
    ms=round(statistics.median(times), 2),
    ms_min=round(min(times), 2),
    first_s=round(first_s, 1),
    peak_gb=None if peak is None else round(peak, 3),
    finite=bool(torch.isfinite(grad).all()),
  )


def time_ours(config, steps: int) -> dict:
  import jax
  import numpy as np
  import sd_step

  _, trainer, state, text_emb, load_s = sd_step.build(config)
  timed = sd_step.time_steps(trainer, state, text_emb, steps)
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return dict(
    ms=round(float(np.median(timed["times_ms"])), 2),
    ms_min=round(min(timed["times_ms"]), 2),
    first_s=round(load_s + timed["compile_s"], 1),
    peak_gb=None if peak is None else round(peak / 2**30, 3),
    finite=bool(np.isfinite(np.asarray(timed["metrics"]["loss"])).all()),
  )


def compare(
  model: str,
  *,
  variants=VARIANTS,
  dtype: str = "bfloat16",
  deterministic: bool = True,
  steps: int = 50,
  warmup: int = 3,
  image_size: int = 512,
  render_size: int = 64,
  scale: float = 100.0,
  compile_mode: str = "default",
  compile_backend: str = "inductor",
  overrides: dict | None = None,
  batch: int = 1,
  torch_subprocess: bool = False,
) -> dict:
  """Times the variants; returns the result (as printed and written). overrides: ours' extra config fields;
  batch: renders per step (configs/sd21_base.py's batch_size, checked); torch_subprocess: time the torch variants
  in a child process (after ours, on the same device)."""
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    raise ValueError(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
  result = dict(
    date=time.strftime("%Y-%m-%d"),
    model=model,
    ours_dtype=dtype,
    deterministic=deterministic,
    render_size=render_size,
    image_size=image_size,
    batch=batch,
    steps=steps,
    compile_mode=compile_mode,
    compile_backend=compile_backend,
  )
  if "ours" in variants:  # Only then is jax imported (a torch-only child process leaves the device to torch).
    import jax
    import sd_step

    config = sd_step.sd_config(
      model,
      dtype=dtype,
      image_size=image_size,
      render_size=render_size,
      deterministic=deterministic,
      overrides=dict(overrides or {}, **{"guidance.scale": scale}),
    )
    if config.batch_size != batch:
      raise ValueError(f"the config's batch_size is {config.batch_size}; pass batch={config.batch_size}")
    result.update(device=jax.devices()[0].device_kind, jax=jax.__version__, ours=time_ours(config, steps))
  wanted = [name for name in ("torch_eager", "torch_compile") if name in variants]
  settings = (model, wanted, steps, warmup, image_size, render_size, scale, compile_mode, compile_backend, batch)
  if wanted:
    result.update(torch_in_child(*settings) if torch_subprocess else time_torch_variants(*settings))
  if "ours" in result:
    result["ratios"] = {
      f"{name}_over_ours": round(result[name]["ms"] / result["ours"]["ms"], 2)
      for name in ("torch_eager", "torch_compile")
      if name in result
    }
  return result


def time_torch_variants(
  model, wanted, steps, warmup, image_size, render_size, scale, compile_mode, compile_backend, batch
) -> dict:
  """{torch_device, torch, torch_dtype, and each wanted variant's timing}."""
  import torch

  device = "cuda" if torch.cuda.is_available() else "cpu"
  half = TorchHalf(model, device, torch.float16 if device == "cuda" else torch.float32, image_size, scale)
  out = dict(
    torch_device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
    torch=torch.__version__,
    torch_dtype=str(half.dtype).replace("torch.", ""),
  )
  if "torch_eager" in wanted:
    out["torch_eager"] = time_torch(half, half.loss, batch, render_size, steps, warmup)
  if "torch_compile" in wanted:
    mode = None if compile_mode == "default" else compile_mode
    compiled = torch.compile(half.loss, mode=mode, backend=compile_backend)
    out["torch_compile"] = time_torch(half, compiled, batch, render_size, steps, warmup)
  return out


def torch_in_child(
  model, wanted, steps, warmup, image_size, render_size, scale, compile_mode, compile_backend, batch
) -> dict:
  """time_torch_variants in a child process of this script, on the same device (ours' memory stays held
  meanwhile, as in one process)."""
  import subprocess
  import tempfile

  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "torch.json")
    subprocess.run(
      [
        sys.executable,
        os.path.abspath(__file__),
        f"--model={model}",
        f"--variants={','.join(wanted)}",
        f"--steps={steps}",
        f"--warmup={warmup}",
        f"--image_size={image_size}",
        f"--render_size={render_size}",
        f"--scale={scale}",
        f"--compile_mode={compile_mode}",
        f"--compile_backend={compile_backend}",
        f"--batch={batch}",
        f"--out={out}",
      ],
      check=True,
    )
    with open(out) as f:
      child = json.load(f)
  return {k: child[k] for k in ("torch_device", "torch", "torch_dtype", *wanted)}


def table(result: dict) -> str:
  rows = [
    "| variant | what | ms (median) | ms (min) | first call s | peak GB |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  what = dict(
    ours=f"whole step, {result['ours_dtype']}",
    torch_eager=f"guidance half, {result.get('torch_dtype')}, eager, SDPA",
    torch_compile=f"guidance half, {result.get('torch_dtype')}, torch.compile ({result['compile_mode']})",
  )
  for name in VARIANTS:
    if name in result:
      r = result[name]
      rows.append(f"| {name} | {what[name]} | {r['ms']} | {r['ms_min']} | {r['first_s']} | {r['peak_gb']} |")
  lines = "\n".join(rows)
  for name, ratio in result.get("ratios", {}).items():
    lines += f"\n{name}: {ratio}x"
  return lines


def main(argv):
  del argv
  result = compare(
    FLAGS.model,
    variants=FLAGS.variants,
    dtype=FLAGS.dtype,
    deterministic=FLAGS.deterministic,
    steps=FLAGS.steps,
    warmup=FLAGS.warmup,
    image_size=FLAGS.image_size,
    render_size=FLAGS.render_size,
    scale=FLAGS.scale,
    compile_mode=FLAGS.compile_mode,
    compile_backend=FLAGS.compile_backend,
    batch=FLAGS.batch,
    torch_subprocess=FLAGS.torch_subprocess,
  )
  logging.info("%s", result)
  print(table(result))
  print(json.dumps(result))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["model"])
  app.run(main)
