"""The Shapes prior's training (dreamfusion_jax.shapes.train_prior): the shipped prior's settings.

  python -m dreamfusion_jax.shapes.train_prior --config=configs/shapes_prior.py --workdir=/tmp/prior \
      --config.time_limit_min=7 --config.export_on_stop=true

A run checkpoints, stops at --config.time_limit_min and resumes when started again with the same
--workdir; at --config.steps it exports DIR/export/. `--config=configs/shapes_prior.py:tiny` is the
variant of the tests: a tiny model at 16x16 that trains in seconds on a CPU.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The prior's training config; variant '' (the shipped prior) or 'tiny' (CPU tests)."""
  c = ml_collections.ConfigDict()
  # --- What is trained: a resumed run must keep these. ---
  c.model = "default"  # Model config: 'default' (the shipped prior, prior_config.default_config) or 'tiny' (tests).
  c.image_size = 64  # Training resolution in pixels.
  c.seed = 0  # Seed of the initial weights and of the data stream.

  # --- The optimisation (dreamfusion_jax.shapes.prior_step). ---
  c.steps = 60_000  # Total optimisation steps (a resumed run continues up to this).
  c.batch = 128  # Images per step.
  c.lr = 3e-4  # Peak AdamW learning rate (after linear warm-up, constant).
  c.warmup_steps = 1000  # Linear learning-rate warm-up from 0, in steps.
  c.weight_decay = 0.01  # AdamW decoupled weight decay (kernels and embeddings only).
  c.grad_clip = 1.0  # Global gradient-norm clipping (0 disables it).
  c.ema_decay = 0.9995  # Decay of the exported EMA of the weights (warmed up as min(d, (1+n)/(10+n))).
  c.caption_dropout = 0.1  # Probability of replacing a caption by the empty one (classifier-free guidance).
  c.snr_gamma = 5.0  # Min-SNR loss weighting min(SNR, gamma) / SNR (Hang et al. 2023); 0: plain epsilon MSE.
  c.compute_dtype = "auto"  # UNet compute dtype: 'auto' (bfloat16 on GPU/TPU, float32 on CPU), 'float32', 'bfloat16'.

  # --- The data (dreamfusion_jax.shapes.prior_data): renders of the Shapes world made on the fly. ---
  c.pool_size = 8192  # Images in the on-device training pool (a multiple of fresh_per_step).
  c.fresh_per_step = 16  # New renders put into the pool every step.
  # The world's cameras (cameras.CameraConfig), DreamFusion's; they may change on resume (a fine-tune). A
  # DreamFusion run guided by the prior should sample the same (the export's config.json records them).
  c.distance_range = (1.0, 1.5)  # Camera distance from the origin, (MIN, MAX), uniform.
  c.focal_range = (0.7, 1.35)  # Focal length as a multiple of the image size, (MIN, MAX), uniform.
  c.look_at_std = 0.2  # Std of the camera's look-at point around the origin.
  c.position_jitter = 0.1  # Half-width of the uniform jitter of the camera position.
  # A textureless render IS an image of a white object: 'white' captions it so; 'albedo' names the colour of
  # its albedo, which the render does not show (the shipped prior's first 23,000 steps). May change on resume.
  c.textureless_caption = "white"

  # --- The run: time limit, logging, checkpoints. ---
  c.time_limit_min = 0.0  # Stop, checkpoint and exit after this many minutes of wall time (0: no limit).
  c.checkpoint_every_min = 3.0  # Minutes of wall time between checkpoints.
  c.log_every = 100  # Steps between metrics.jsonl records (each one waits for the device).
  c.progress_bar = True  # Show a tqdm progress bar.

  # --- The export (dreamfusion_jax.shapes.prior_card): DIR/export/ at the last step. ---
  c.export_only = False  # Export the latest checkpoint without training.
  c.export_on_stop = False  # Also export when time_limit_min stops the run before steps.
  c.val_examples = 192  # Validation renders per set (held-out pairs, training pairs).
  c.sample_steps = 50  # DDIM steps of the preview samples.
  c.guidance_scale = 4.0  # Classifier-free guidance scale of the preview samples.

  if variant == "tiny":
    c.model = "tiny"  # ~48k parameters: what costs on CPU is compiling.
    c.image_size = 16  # 16x16 renders.
    c.steps = 5  # A few steps.
    c.batch = 4  # Four images per step.
    c.lr = 3e-3  # Fast enough to move in a few steps.
    c.warmup_steps = 1  # No warm-up to speak of.
    c.pool_size = 8  # Two steps' renders.
    c.fresh_per_step = 4  # Four new renders per step.
    c.log_every = 1  # A record every step.
    c.val_examples = 4  # Four validation renders per set.
    c.sample_steps = 2  # Two DDIM steps.
    c.compute_dtype = "float32"  # The same on every backend.
    c.progress_bar = False  # No bar in test logs.
  elif variant:
    raise ValueError(f"configs/shapes_prior.py has no variant {variant!r}; use '' or 'tiny'.")
  return c
