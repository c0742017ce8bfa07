"""The guidance wing: the frozen diffusion priors SDS queries.

`interface` (Guidance, Prior, the noise schedule) is what the rest of the package programs
against; `registry` builds a prior from `config.guidance`; the Flax ports of Stable Diffusion
(`unet`, `vae`, `clip_text`, `convert`, `stable_diffusion`) and the project's own small priors
(`text`, `shapes_prior`) implement it. Nothing here imports the NeRF or Shapes wings.
"""
