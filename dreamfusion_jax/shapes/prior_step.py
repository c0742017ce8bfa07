"""The Shapes prior's train step: its state, the flat parameter layout, the optimiser, the models and the
pure jitted step, compiled once per (model config, step config, compute dtype) and cached per process.

The UNet and the text encoder are trained jointly from scratch with DDPM's epsilon-prediction MSE
(Min-SNR-5 weighted) on renders of the world (prior_data), the caption replaced by the empty one 10%
of the time so the model also learns the unconditional score (classifier-free guidance). AdamW with
warm-up, an EMA of the weights (exported), bfloat16 compute on GPU.
"""

import dataclasses
import functools
import json
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dreamfusion_jax.guidance import shapes_prior
from dreamfusion_jax.shapes import prior_data

LOSS_EMA_DECAY = 0.99  # Of the logged training loss: averages the t-dependence of single-step losses away.


@flax.struct.dataclass
class TrainState:
  """Everything that a resumed run needs (the data pool is rebuilt)."""

  step: jnp.ndarray  # [] int32, steps taken.
  params: jnp.ndarray  # float32 [P]: {'unet': ..., 'text': ...} flattened (see Layout).
  ema_params: jnp.ndarray  # float32 [P]: EMA of params (exported).
  opt_state: Any  # optax state.
  key: jnp.ndarray  # [4] uint32: data of the base 'rbg' PRNG key (see rng_key); step keys are folded from it.
  loss_ema: jnp.ndarray  # [] float32, EMA of the training epsilon MSE (not debiased).
  loss_ema_weight: jnp.ndarray  # [] float32, 1 - decay^n: divides loss_ema to debias it.


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """The training config fields the compiled train step depends on (hashable: compiled programs are cached on it)."""

  batch: int  # Images per step.
  lr: float  # Peak learning rate.
  warmup_steps: int  # Linear warm-up steps.
  weight_decay: float  # AdamW weight decay.
  grad_clip: float  # Global-norm clipping (0: off).
  ema_decay: float  # EMA decay.
  caption_dropout: float  # Empty-caption probability.
  snr_gamma: float  # Min-SNR-gamma loss weighting (0: off).
  textureless_caption: str  # 'white' or 'albedo' (configs/shapes_prior.py).

  @classmethod
  def of(cls, config: ml_collections.ConfigDict) -> "StepConfig":
    """The step's fields of a training config (configs/shapes_prior.py)."""
    return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})


def rng_key(seed: int) -> jax.Array:
  """A typed 'rbg' PRNG key. XLA:CPU compiles threefry bit generation very slowly (seconds per
  array shape; minutes for a UNet's init), and the prior needs no cross-backend reproducibility."""
  return jax.random.key(seed, impl="rbg")


def state_key(state: TrainState) -> jax.Array:
  return jax.random.wrap_key_data(state.key, impl="rbg")


def learning_rate(step_config: StepConfig) -> optax.Schedule:
  return optax.linear_schedule(0.0, step_config.lr, max(step_config.warmup_steps, 1))


class Layout:
  """Where each parameter lives in the flat float32 vector that the optimiser and the EMA see.

  One vector instead of ~200 leaves: the AdamW and EMA updates are a few fused kernels rather than
  hundreds (launch overhead on GPU; XLA:CPU compiled the per-leaf update 60x slower).
  """

  def __init__(self, abstract_params: Any):
    leaves, self.treedef = jax.tree.flatten(abstract_params)
    self.shapes = [tuple(x.shape) for x in leaves]
    self.sizes = [int(np.prod(shape)) for shape in self.shapes]
    self.offsets = np.cumsum([0] + self.sizes)[:-1].tolist()
    self.size = int(sum(self.sizes))

  def ravel(self, params: Any) -> jnp.ndarray:
    """Params pytree -> float32 [size]."""
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in self.treedef.flatten_up_to(params)])

  def unravel(self, flat: jnp.ndarray) -> Any:
    """float32 [size] -> params pytree (works on device arrays and numpy arrays)."""
    return self.treedef.unflatten(
      [flat[o : o + n].reshape(shape) for o, n, shape in zip(self.offsets, self.sizes, self.shapes)]
    )

  def counts(self) -> tuple[int, int]:
    """(UNet parameters, text-encoder parameters)."""
    tree = self.treedef.unflatten(self.sizes)
    return sum(jax.tree.leaves(tree["unet"])), sum(jax.tree.leaves(tree["text"]))

  def decay_mask(self) -> jnp.ndarray:
    """1 for matrices (kernels, embeddings), 0 for norms' scales and biases, which decay only hurts."""
    return jnp.concatenate(
      [jnp.full((n,), float(len(shape) >= 2), jnp.float32) for n, shape in zip(self.sizes, self.shapes)]
    )


def _decoupled_weight_decay(rate: float, mask_fn) -> optax.GradientTransformation:
  """updates + rate * mask * params: AdamW's decay with an element-wise mask over the flat vector."""

  def update(updates, state, params):
    return updates + rate * mask_fn() * params, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(step_config: StepConfig, layout: Layout) -> optax.GradientTransformation:
  """AdamW (optax.adamw's chain: adam, decoupled decay, learning rate) on the flat vector, clipped first."""
  parts = [optax.clip_by_global_norm(step_config.grad_clip)] if step_config.grad_clip > 0 else []
  parts += [
    optax.scale_by_adam(b1=0.9, b2=0.99, eps=1e-8),
    _decoupled_weight_decay(step_config.weight_decay, layout.decay_mask),
    optax.scale_by_learning_rate(learning_rate(step_config)),
  ]
  return optax.chain(*parts)


class Models:
  """The modules, tokenizer, schedule and caption table of one model config (all static in jit)."""

  def __init__(self, cfg: dict, dtype):
    self.cfg = cfg
    self.unet, self.text_encoder, self.tokenizer = shapes_prior.build_models(cfg, dtype)
    self.alphas_cumprod = shapes_prior.schedule(cfg)
    self.captions = prior_data.caption_table(self.tokenizer)  # [shapes, colours, views, L]
    self.empty = self.tokenizer([""])[0]  # [L]: <bos> <eos> <pad>...

  def embed(self, text_params: Any, ids: jnp.ndarray) -> jnp.ndarray:
    return self.text_encoder.apply({"params": text_params}, ids)

  def eps(self, params: Any, x_t: jnp.ndarray, t: jnp.ndarray, ids: jnp.ndarray) -> jnp.ndarray:
    """Predicted noise, float32 [B,S,S,3], for token ids [B,L]."""
    context = self.embed(params["text"], ids)
    return self.unet.apply({"params": params["unet"]}, x_t, t, context).astype(jnp.float32)

  # Jitted once per Models (Models are cached with the train step, see `programs`).
  @functools.cached_property
  def jit_loss(self):
    """jit of diffusion_loss(params, images, ids, t, eps) -> [B]."""
    return jax.jit(lambda params, images, ids, t, eps: diffusion_loss(params, self, images, ids, t, eps))

  @functools.cached_property
  def jit_embed(self):
    return jax.jit(self.embed)

  @functools.lru_cache(maxsize=4)
  def jit_sample(self, num_steps: int, guidance_scale: float, image_size: int):
    """jit of shapes_prior.sample(key, unet_params, context, uncond_context) with these settings."""
    unet_apply = lambda p, x, t, c: self.unet.apply({"params": p}, x, t, c)
    return jax.jit(
      lambda key, p, c, u: shapes_prior.sample(
        key, unet_apply, p, c, u, self.alphas_cumprod, num_steps, guidance_scale, image_size
      )
    )


def diffusion_loss(
  params: Any, models: Models, images: jnp.ndarray, ids: jnp.ndarray, t: jnp.ndarray, eps: jnp.ndarray
) -> jnp.ndarray:
  """Per-example epsilon MSE [B] of clean images [B,S,S,3] in [0,1] at timesteps t [B] with noise eps."""
  abar = jnp.asarray(models.alphas_cumprod)[t][:, None, None, None]
  x_t = jnp.sqrt(abar) * (images * 2.0 - 1.0) + jnp.sqrt(1.0 - abar) * eps
  return jnp.mean((models.eps(params, x_t, t, ids) - eps) ** 2, axis=(1, 2, 3))


def init_state(seed: int, cfg: dict, layout: Layout, tx: optax.GradientTransformation) -> TrainState:
  key = rng_key(seed)
  params = layout.ravel(shapes_prior.init_params(jax.random.fold_in(key, 0), cfg))
  # The EMA starts as a copy: params and EMA are donated to the step as separate buffers.
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    ema_params=jnp.copy(params),
    opt_state=tx.init(params),
    key=jax.random.key_data(key),
    loss_ema=jnp.zeros((), jnp.float32),
    loss_ema_weight=jnp.zeros((), jnp.float32),
  )


def train_step(
  state: TrainState,
  pool: dict,
  fresh: dict,
  *,
  models: Models,
  layout: Layout,
  tx: optax.GradientTransformation,
  step_config: StepConfig,
):
  """One step: put `fresh` renders in the pool, draw a batch, update params and EMA. Pure (jitted).

  Returns (state, pool, metrics); metrics hold scalars.
  """
  key = jax.random.fold_in(state_key(state), state.step)
  k_idx, k_drop, k_t, k_eps = jax.random.split(key, 4)
  fresh = prior_data.pool_entry(fresh, step_config.textureless_caption)
  n = fresh["images"].shape[0]
  pool_size = pool["images"].shape[0]
  start = (state.step * n) % pool_size  # The oldest renders: a ring buffer (pool_size % n == 0).
  pool = {k: jax.lax.dynamic_update_slice_in_dim(pool[k], fresh[k], start, axis=0) for k in pool}

  b = step_config.batch
  idx = jax.random.randint(k_idx, (b,), 0, pool_size)
  images = pool["images"][idx].astype(jnp.float32) / 255.0
  ids = jnp.asarray(models.captions)[pool["shape"][idx], pool["colour"][idx], pool["view"][idx]]
  drop = jax.random.uniform(k_drop, (b,)) < step_config.caption_dropout
  ids = jnp.where(drop[:, None], jnp.asarray(models.empty)[None], ids)
  t = jax.random.randint(k_t, (b,), 0, len(models.alphas_cumprod))
  eps = jax.random.normal(k_eps, images.shape, jnp.float32)

  # Min-SNR-gamma: timesteps cleaner than SNR = gamma weigh less, so capacity goes to the noisy
  # ones (what SDS queries) and training converges faster (Hang et al. 2023).
  abar = jnp.asarray(models.alphas_cumprod)[t]
  snr = abar / (1.0 - abar)
  weight = jnp.minimum(snr, step_config.snr_gamma) / snr if step_config.snr_gamma > 0 else jnp.ones_like(snr)

  def loss_fn(flat):
    mse = diffusion_loss(layout.unravel(flat), models, images, ids, t, eps)
    return jnp.mean(weight * mse), jnp.mean(mse)

  (loss, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = state.params + updates
  step = state.step.astype(jnp.float32)
  decay = jnp.minimum(step_config.ema_decay, (1.0 + step) / (10.0 + step))
  ema = state.ema_params + (1.0 - decay) * (params - state.ema_params)
  # The logged and reported loss is the plain epsilon MSE, comparable with the validation loss.
  loss_ema = LOSS_EMA_DECAY * state.loss_ema + (1.0 - LOSS_EMA_DECAY) * mse
  ema_weight = LOSS_EMA_DECAY * state.loss_ema_weight + (1.0 - LOSS_EMA_DECAY)
  new = state.replace(
    step=state.step + 1,
    params=params,
    ema_params=ema,
    opt_state=opt_state,
    loss_ema=loss_ema,
    loss_ema_weight=ema_weight,
  )
  metrics = dict(
    loss=mse,
    weighted_loss=loss,
    loss_ema=loss_ema / ema_weight,
    grad_norm=jnp.sqrt(jnp.sum(grads**2)),
    lr=learning_rate(step_config)(state.step),
  )
  return new, pool, metrics


class Programs:
  """The compiled functions of one (model config, step config, compute dtype)."""

  def __init__(self, cfg: dict, step_config: StepConfig, dtype):
    self.models = Models(cfg, dtype)
    # Validation and samples run as the prior is used: float32 compute.
    self.eval_models = self.models if jnp.dtype(dtype) == jnp.float32 else Models(cfg, jnp.float32)
    self.layout = Layout(jax.eval_shape(lambda: shapes_prior.init_params(rng_key(0), cfg)))
    self.tx = make_optimizer(step_config, self.layout)
    self.init = jax.jit(functools.partial(init_state, cfg=cfg, layout=self.layout, tx=self.tx), static_argnums=0)
    self.step = jax.jit(
      functools.partial(train_step, models=self.models, layout=self.layout, tx=self.tx, step_config=step_config),
      donate_argnums=(0, 1),
    )


@functools.lru_cache(maxsize=4)
def _programs(cfg_json: str, step_config: StepConfig, dtype_name: str) -> Programs:
  return Programs(json.loads(cfg_json), step_config, jnp.dtype(dtype_name))


def programs(cfg: dict, config: ml_collections.ConfigDict, dtype) -> Programs:
  """Programs of a model config, a training config and a compute dtype, cached per process, so a second
  run in one process (a resume, a notebook) compiles nothing."""
  return _programs(json.dumps(cfg, sort_keys=True), StepConfig.of(config), jnp.dtype(dtype).name)
