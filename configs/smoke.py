"""Smoke test: the whole pipeline (train, checkpoint, resume, export) with a tiny random prior.

Runs on a 2-core CPU in CI (its time: BENCHMARKS.md, 'CPU smoke run'). The prior is a small *random*
UNet, so the object it makes is meaningless: this config checks plumbing, not quality.

  python -m dreamfusion_jax.main --config=configs/smoke.py --workdir=/tmp/smoke --config.num_seeds=2
"""

from dreamfusion_jax import base_config


def get_config():
  """Returns the smoke config (base with everything shrunk)."""
  c = base_config.get_config()
  c.prompt = "a red cube"  # Any caption; the random prior ignores its meaning.
  c.num_steps = 40  # A few dozen steps: enough to exercise checkpoints, shading and logging.
  c.field.num_levels = 8  # Fewer hash levels.
  c.field.log2_hashmap_size = 12  # Small tables.
  c.field.max_resolution = 128  # Coarser finest level.
  c.field.mlp_width = 32  # Narrow MLP.
  c.field.mlp_num_hidden = 1  # One hidden layer.
  c.render.image_size = 32  # 32x32 renders.
  c.render.num_coarse = 16  # Few samples per ray.
  c.render.num_fine = 16  # Few importance samples.
  c.shading.albedo_warmup_steps = 10  # Reach the shaded phase within the run.
  c.reg.orientation_anneal_steps = 30  # Anneal within the run.
  c.log_every = 10  # Log often.
  c.checkpoint_every = 20  # Checkpoint twice in the run.
  c.val_every = 20  # Validate twice.
  c.export.mesh_resolution = 48  # Coarse marching cubes.
  c.export.mesh_threshold = 5.0  # The blob at init reaches exp(5); a lower level finds it.
  c.export.num_frames = 12  # Short turntable.
  c.export.image_size = 48  # Small turntable frames.
  c.export.texture_size = 256  # Small texture.
  return c
