"""SDS against an independent computation of its residual, and the DDPM schedule against diffusers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax import sds
from dreamfusion_jax.guidance import interface as guidance_lib
from dreamfusion_jax.guidance.unet import UNet2DConditionModel

UNET = dict(
  in_channels=3,
  out_channels=3,
  block_out_channels=(8, 16),
  layers_per_block=1,
  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
  attention_head_dim=2,
  cross_attention_dim=8,
  norm_num_groups=4,
)


def _setup(batch=2, size=8):
  unet = UNet2DConditionModel.from_config(UNET)
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  params = {
    "unet": unet.init(k[0], jnp.zeros((1, size, size, 3)), jnp.zeros((1,), jnp.int32), jnp.zeros((1, 4, 8)))["params"]
  }
  g = guidance_lib.Guidance(unet, guidance_lib.alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000))
  x0 = jax.random.uniform(k[1], (batch, size, size, 3), minval=-1, maxval=1)
  cond = jax.random.normal(k[2], (batch, 4, 8))
  uncond = jax.random.normal(k[3], (batch, 4, 8))
  return g, params, x0, cond, uncond


@pytest.mark.parametrize("weighting", ["sds", "uniform"])
def test_sds_gradient_equals_residual(weighting):
  g, params, x0, cond, uncond = _setup()
  key, scale, t_range = jax.random.PRNGKey(7), 100.0, (20, 980)
  grad = jax.jit(
    jax.grad(
      lambda x: sds.sds_loss_x0(key, g, params, x, cond, uncond, scale=scale, t_range=t_range, weighting=weighting)[0]
    )
  )(x0)
  # Independent computation: the same draws of t and eps, the UNet called per branch, numpy arithmetic.
  k_t, k_eps = jax.random.split(key)
  t = np.asarray(jax.random.randint(k_t, (2,), 20, 981))
  eps = np.asarray(jax.random.normal(k_eps, x0.shape))
  abar = g.alphas_cumprod[t][:, None, None, None].astype(np.float64)
  x_t = np.sqrt(abar) * np.asarray(x0) + np.sqrt(1 - abar) * eps
  predict = jax.jit(g.predict_noise)
  e_u = np.asarray(predict(params, jnp.asarray(x_t, jnp.float32), jnp.asarray(t), uncond))
  e_c = np.asarray(predict(params, jnp.asarray(x_t, jnp.float32), jnp.asarray(t), cond))
  w = (1 - abar) if weighting == "sds" else 1.0
  expected = w * (e_u + scale * (e_c - e_u) - eps)
  np.testing.assert_allclose(np.asarray(grad), expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())
  assert np.abs(expected).max() > 1.0  # Guidance 100 makes a large, nontrivial residual.


def test_no_gradient_through_the_unet():
  g, params, x0, cond, uncond = _setup()
  grads = jax.jit(
    jax.grad(
      lambda p: sds.sds_loss_x0(jax.random.PRNGKey(1), g, p, x0, cond, uncond, scale=100.0, t_range=(20, 980))[0]
    )
  )(params)
  assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(grads))


def test_pixel_guidance_chains_through_the_image_map():
  g, params, x0, cond, uncond = _setup()
  images = (x0 + 1) / 2
  kw = dict(scale=10.0, t_range=(20, 980))
  gi = jax.grad(lambda im: sds.sds_loss(jax.random.PRNGKey(3), g, params, im, cond, uncond, **kw)[0])(images)
  gx = jax.grad(lambda x: sds.sds_loss_x0(jax.random.PRNGKey(3), g, params, x, cond, uncond, **kw)[0])(x0)
  np.testing.assert_allclose(np.asarray(gi), 2 * np.asarray(gx), rtol=1e-4, atol=1e-3)  # x0 = 2 image - 1.


def test_timesteps_stay_in_range():
  assert sds.timestep_range(0.02, 0.98, 1000) == (20, 980)
  g, params, x0, cond, uncond = _setup(batch=64, size=8)
  residual = jax.jit(
    lambda p, x, c, u: sds.sds_residual(jax.random.PRNGKey(0), g, p, x, c, u, scale=1.0, t_range=(20, 980))
  )
  _, aux = residual(params, x0, cond, uncond)
  t = np.asarray(aux["t"])
  assert t.min() >= 20 and t.max() <= 980 and len(np.unique(t)) > 40


def test_annealed_t_max_falls_linearly_and_bounds_the_sampled_timesteps():
  assert sds.annealed_timestep_range(0.2, 0.98, 0.5, 0, 1000, 700) == (200, 980)  # No anneal.
  his = [int(sds.annealed_timestep_range(0.2, 0.98, 0.5, 800, 1000, s)[1]) for s in (0, 200, 400, 800, 5000)]
  assert his == [980, 860, 740, 500, 500]  # 980 - (980 - 500) * min(step / 800, 1), rounded.
  g, params, x0, cond, uncond = _setup(batch=64, size=8)

  @jax.jit
  def timesteps(step):
    t_range = sds.annealed_timestep_range(0.2, 0.98, 0.5, 800, 1000, step)
    return sds.sds_residual(jax.random.PRNGKey(0), g, params, x0, cond, uncond, scale=1.0, t_range=t_range)[1]["t"]

  late = np.asarray(timesteps(jnp.int32(400)))  # The same program at every step (a traced bound).
  assert late.min() >= 200 and late.max() <= 740 and late.max() > 700
  early = np.asarray(timesteps(jnp.int32(0)))
  assert early.max() > 900


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_alphas_cumprod_match_diffusers(schedule):
  diffusers = pytest.importorskip("diffusers")
  ref = diffusers.DDPMScheduler(
    beta_start=0.00085, beta_end=0.012, beta_schedule=schedule, num_train_timesteps=1000
  ).alphas_cumprod.numpy()
  np.testing.assert_allclose(guidance_lib.alphas_cumprod(schedule, 0.00085, 0.012, 1000), ref, rtol=1e-5)


class _TinyEncoder(nn.Module):
  """A stand-in latent encoder: 512 -> 64 in Stable Diffusion; here 16 -> 4, 4 channels."""

  @nn.compact
  def __call__(self, x):
    return nn.Conv(4, (4, 4), strides=(4, 4))(nn.tanh(nn.Conv(8, (3, 3))(x)))


def test_latent_guidance_carries_the_residual_back_through_the_encoder():
  unet = UNet2DConditionModel.from_config(dict(UNET, in_channels=4, out_channels=4))
  enc = _TinyEncoder()
  k = jax.random.split(jax.random.PRNGKey(5), 4)
  params = {
    "unet": unet.init(k[0], jnp.zeros((1, 4, 4, 4)), jnp.zeros((1,), jnp.int32), jnp.zeros((1, 4, 8)))["params"],
    "encoder": enc.init(k[1], jnp.zeros((1, 16, 16, 3)))["params"],
  }
  g = guidance_lib.Guidance(
    unet,
    guidance_lib.alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000),
    encoder=enc,
    encoder_size=16,
    latent_scale=0.5,
  )
  images = jax.random.uniform(k[2], (1, 8, 8, 3))  # Rendered at 8x8, upsampled to 16 for the encoder.
  cond, uncond = jax.random.normal(k[3], (2, 1, 4, 8))
  kw = dict(scale=100.0, t_range=(20, 980))
  key = jax.random.PRNGKey(11)
  grad = jax.jit(jax.grad(lambda im: sds.sds_loss(key, g, params, im, cond, uncond, **kw)[0]))(images)
  # Independent: the residual at the encoded latents, pulled back by the encoder's own VJP.
  latents, pullback = jax.vjp(lambda im: g.encode(params, im), images)
  assert latents.shape == (1, 4, 4, 4)
  residual, _ = jax.jit(lambda z: sds.sds_residual(key, g, params, z, cond, uncond, **kw))(latents)
  (expected,) = pullback(residual)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-4, atol=1e-4 * np.abs(expected).max())
  assert np.abs(expected).max() > 0


class _ContextScaledUNet(nn.Module):
  """eps(x_t; y) = mean(y) * x_t: the conditional and unconditional predictions differ by a known factor."""

  @nn.compact
  def __call__(self, x, t, context):
    return x * jnp.mean(context, axis=(1, 2))[:, None, None, None]


def test_denoised_preview_matches_the_closed_form():
  abar = guidance_lib.alphas_cumprod("scaled_linear", 0.00085, 0.012, 1000)
  g = guidance_lib.Guidance(_ContextScaledUNet(), abar)
  x0 = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
  cond, uncond = np.full((2, 3, 5), 0.3, np.float32), np.full((2, 3, 5), 0.1, np.float32)
  key, t, w = jax.random.PRNGKey(4), 600, 7.5
  x_t, x0_hat = sds.denoised(
    key, g, {"unet": {}}, jnp.asarray(x0), jnp.asarray(cond), jnp.asarray(uncond), scale=w, t=t
  )
  eps = np.asarray(jax.random.normal(key, x0.shape))  # The noise `denoised` draws from the same key.
  a, s = np.sqrt(np.float64(abar[t])), np.sqrt(1 - np.float64(abar[t]))
  want_xt = a * x0 + s * eps
  eps_hat = (0.1 + w * (0.3 - 0.1)) * want_xt
  np.testing.assert_allclose(np.asarray(x_t), want_xt, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(x0_hat), (want_xt - s * eps_hat) / a, rtol=1e-4, atol=1e-4)
  # A pixel-space guidance decodes [-1, 1] to [0, 1].
  np.testing.assert_allclose(np.asarray(g.decode({}, jnp.asarray(x0))), (x0 + 1) / 2, atol=1e-6)
