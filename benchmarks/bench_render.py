"""Times one rendered training view: forward, and forward+backward w.r.t. the scene params.

Renders a random camera (`cameras.sample_camera`) of the default `field.Scene` with the
given `render.RenderConfig` sample counts, shaded (ambient 0.1, diffuse 0.9) so the normals
(one jax.vjp of the density per fine sample) are part of both passes. The backward pass
differentiates loss = mean(rgb) + mean(orientation) w.r.t. all scene params, which goes
through the normals, i.e. a second-order derivative of the field. Each function is jitted,
warmed up, then the median of --repeats calls with block_until_ready. Prints one JSON line.

    python benchmarks/bench_render.py                                # 64x64, default samples
    python benchmarks/bench_render.py --size 128 --num_fine 64 --batch 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from timing import median_ms  # noqa: E402  (benchmarks/timing.py)

from dreamfusion_jax.nerf import cameras, render  # noqa: E402
from dreamfusion_jax.nerf.field import Scene  # noqa: E402


def main() -> None:
  defaults = render.RenderConfig()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=64, help="Image height and width in pixels.")
  parser.add_argument("--num_coarse", type=int, default=defaults.num_coarse, help="Coarse samples per ray.")
  parser.add_argument("--num_fine", type=int, default=defaults.num_fine, help="Fine intervals per ray.")
  parser.add_argument("--batch", type=int, default=1, help="Cameras rendered per call (vmapped).")
  parser.add_argument("--warmup", type=int, default=3, help="Untimed calls (the first compiles).")
  parser.add_argument("--repeats", type=int, default=30, help="Timed calls; the median is reported.")
  args = parser.parse_args()

  cfg = render.RenderConfig(num_coarse=args.num_coarse, num_fine=args.num_fine)
  cam_cfg = cameras.CameraConfig()
  scene = Scene()
  params = scene.init(jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1, 3)))["params"]

  def render_views(p, key):
    field_fn = lambda x: scene.apply({"params": p}, x, method=Scene.field)
    background_fn = lambda d: scene.apply({"params": p}, d, method=Scene.background)
    keys = jax.random.split(key, (args.batch, 2))

    def one(k):
      cam = cameras.sample_camera(k[0], cam_cfg, args.size)
      shading = dict(ambient=0.1, diffuse=0.9, textureless=0.0, light_pos=cam["light_pos"])
      return render.render_image(k[1], field_fn, background_fn, cam, shading, cfg, args.size, args.size)

    return jax.vmap(one)(keys)

  def loss_fn(p, key):
    out = render_views(p, key)
    return jnp.mean(out["rgb"]) + jnp.mean(out["orientation"])

  forward = jax.jit(lambda p, k: render_views(p, k)["rgb"])
  forward_backward = jax.jit(jax.value_and_grad(loss_fn))

  key = jax.random.key(1)
  fwd_ms = median_ms(forward, params, key, warmup=args.warmup, repeats=args.repeats)
  fwd_bwd_ms = median_ms(forward_backward, params, key, warmup=args.warmup, repeats=args.repeats)
  device = jax.devices()[0]
  print(
    json.dumps(
      dict(
        benchmark="render",
        device=getattr(device, "device_kind", str(device)),
        platform=device.platform,
        jax=jax.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        size=args.size,
        batch=args.batch,
        num_coarse=cfg.num_coarse,
        num_fine=cfg.num_fine,
        samples_per_ray=cfg.num_coarse + cfg.num_fine,
        repeats=args.repeats,
        forward_ms=round(fwd_ms, 3),
        forward_backward_ms=round(fwd_bwd_ms, 3),
      )
    )
  )


if __name__ == "__main__":
  main()
