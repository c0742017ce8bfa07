"""Score Distillation Sampling (DreamFusion, eq. 3), written in JAX.

    z_t = alpha_t x + sigma_t eps,  eps_hat = eps(z_t;0,t) + w (eps(z_t;y,t) - eps(z_t;0,t))
    grad_x = w(t) (eps_hat - eps)                       (no gradient through the UNet)

The loss 0.5 * ||x - sg(x - r)||^2 with r = sg(w(t)(eps_hat - eps)) has gradient exactly r with
respect to x, so ordinary autodiff carries r back through the encoder (if any) and the renderer.
"""

from typing import Any

import jax
import jax.numpy as jnp

from dreamfusion_jax.guidance.interface import Guidance


def timestep_range(t_min: float, t_max: float, num_timesteps: int) -> tuple[int, int]:
  """Integer timesteps [lo, hi] (inclusive) for t ~ U(t_min, t_max) on a schedule of T steps."""
  lo = max(int(round(t_min * num_timesteps)), 0)
  hi = min(int(round(t_max * num_timesteps)), num_timesteps - 1)
  return lo, hi


def annealed_timestep_range(
  t_min: float, t_max: float, t_max_final: float, anneal_steps: int, num_timesteps: int, step
) -> tuple[int, jnp.ndarray]:
  """timestep_range at optimisation step `step` (may be traced) when t_max falls linearly to t_max_final
  over anneal_steps steps (anneal_steps 0: no anneal). Returns (lo int, hi int32 [])."""
  lo, hi = timestep_range(t_min, t_max, num_timesteps)
  if anneal_steps <= 0:
    return lo, jnp.int32(hi)
  hi_final = timestep_range(t_min, t_max_final, num_timesteps)[1]
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / anneal_steps, 0.0, 1.0)
  return lo, jnp.round(hi + frac * (hi_final - hi)).astype(jnp.int32)


def sds_residual(
  key: jax.Array,
  guidance: Guidance,
  params: Any,
  x0: jnp.ndarray,
  cond: jnp.ndarray,
  uncond: jnp.ndarray,
  *,
  scale: float,
  t_range: tuple[int, int],
  weighting: str = "sds",
):
  """The SDS update direction for clean model inputs x0 [B,h,w,c]; returns (residual, aux).

  cond, uncond: [B, L, D] caption and empty-caption embeddings; t ~ U{t_range[0], ..., t_range[1]}
  (the bounds may be traced). The residual carries no gradient.
  """
  k_t, k_eps = jax.random.split(key)
  batch = x0.shape[0]
  t = jax.random.randint(k_t, (batch,), t_range[0], t_range[1] + 1)
  eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
  abar = jnp.asarray(guidance.alphas_cumprod)[t][:, None, None, None]
  x_t = jax.lax.stop_gradient(jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps)
  # One UNet call on the doubled batch: [uncond; cond].
  eps_both = guidance.predict_noise(
    params, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), jnp.concatenate([uncond, cond])
  )
  eps_uncond, eps_cond = jnp.split(eps_both.astype(x0.dtype), 2)
  eps_hat = eps_uncond + scale * (eps_cond - eps_uncond)
  w = (1.0 - abar) if weighting == "sds" else jnp.ones_like(abar)
  residual = jax.lax.stop_gradient(w * (eps_hat - eps))
  return residual, {"t": t, "residual_norm": jnp.sqrt(jnp.sum(residual**2, axis=(1, 2, 3)))}


def sds_loss(
  key: jax.Array, guidance: Guidance, params: Any, images: jnp.ndarray, cond: jnp.ndarray, uncond: jnp.ndarray, **kwargs
):
  """SDS loss of rendered images [B,H,W,3] in [0,1]; d loss / d x0 == residual exactly.

  Returns (loss, aux). The loss value itself is not meaningful (it is 0.5 ||r||^2); log the
  residual norm instead.
  """
  return sds_loss_x0(key, guidance, params, guidance.encode(params, images), cond, uncond, **kwargs)


def sds_loss_x0(
  key: jax.Array, guidance: Guidance, params: Any, x0: jnp.ndarray, cond: jnp.ndarray, uncond: jnp.ndarray, **kwargs
):
  """SDS loss of the model's clean input x0 [B,h,w,c] (pixels in [-1,1] or latents)."""
  residual, aux = sds_residual(key, guidance, params, jax.lax.stop_gradient(x0), cond, uncond, **kwargs)
  target = jax.lax.stop_gradient(x0 - residual)
  return 0.5 * jnp.sum((x0 - target) ** 2), aux


def denoised(
  key: jax.Array,
  guidance: Guidance,
  params: Any,
  x0: jnp.ndarray,
  cond: jnp.ndarray,
  uncond: jnp.ndarray,
  *,
  scale: float,
  t: int,
):
  """What the prior pulls x0 towards at time t (a preview of the guidance): (x_t, x0_hat), both [B,h,w,c].

  x_t = alpha_t x0 + sigma_t eps and x0_hat = (x_t - sigma_t eps_hat) / alpha_t, with eps_hat the
  classifier-free-guided noise prediction, as in the SDS step (t is an integer timestep).
  """
  eps = jax.random.normal(key, x0.shape, x0.dtype)
  abar = jnp.asarray(guidance.alphas_cumprod)[t]
  alpha, sigma = jnp.sqrt(abar), jnp.sqrt(1.0 - abar)
  x_t = alpha * x0 + sigma * eps
  steps = jnp.full((2 * x0.shape[0],), t, jnp.int32)
  eps_uncond, eps_cond = jnp.split(
    guidance.predict_noise(params, jnp.concatenate([x_t, x_t]), steps, jnp.concatenate([uncond, cond])), 2
  )
  eps_hat = eps_uncond + scale * (eps_cond - eps_uncond)
  return x_t, (x_t - sigma * eps_hat) / alpha
