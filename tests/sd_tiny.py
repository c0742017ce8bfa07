"""Tiny Stable Diffusion pipelines in the diffusers folder layout, for tests of the loader and the SDS pipeline.

`build(layout, folder)` makes a random PyTorch pipeline (diffusers UNet2DConditionModel and AutoencoderKL,
transformers CLIPTextModel, an offline byte-level CLIPTokenizer, a DDIM scheduler with SD's scaled_linear
betas 0.00085..0.012) and saves it with `StableDiffusionPipeline.save_pretrained`, exactly the layout of a
Hub download. Two layouts:

  sd1: UNet attention_head_dim an int, 1x1-conv proj_in/proj_out; CLIP quick_gelu, 32 wide.
  sd2: use_linear_projection=True, attention_head_dim per block; CLIP gelu, 48 wide, LayerNorm eps 1e-6.

The sd1 tokenizer/ is transformers' save_pretrained output (tokenizer.json); the sd2 one holds the Hub's SD 2.x
files (vocab.json, merges.txt, tokenizer_config.json). Every parameter is perturbed (p += 0.05 randn), so no
tensor hides near zero and a wrongly converted one shows in the outputs. Sizes: VAE (32, 64) channels, so a
16x16 image encodes to 8x8x4 latents, and a (32, 64) UNet on those latents (one downsample).
`hub_cache` lays a folder out as a huggingface_hub cache.
"""

import dataclasses
import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np

IMAGE_SIZE = 16  # VAE input; the 2-level VAE downsamples by 2 ...
LATENT_SIZE = 8  # ... to 8x8 latents, which the 2-level UNet halves once.
MAX_LENGTH = 77  # Tokens per caption, as Stable Diffusion.
UNET_FACTOR = 2  # 2 ** (len(block_out_channels) - 1) of the tiny UNet.

_UNET_COMMON = dict(
  sample_size=LATENT_SIZE,
  in_channels=4,
  out_channels=4,
  block_out_channels=(32, 64),
  layers_per_block=1,
  norm_num_groups=8,
  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)
_TEXT_COMMON = dict(intermediate_size=40, num_hidden_layers=2, max_position_embeddings=MAX_LENGTH, projection_dim=16)
LAYOUTS = {
  "sd1": dict(
    unet=dict(_UNET_COMMON, attention_head_dim=4, cross_attention_dim=32),
    text=dict(_TEXT_COMMON, hidden_size=32, num_attention_heads=4, hidden_act="quick_gelu"),
  ),
  "sd2": dict(
    unet=dict(_UNET_COMMON, attention_head_dim=(2, 4), use_linear_projection=True, cross_attention_dim=48),
    text=dict(_TEXT_COMMON, hidden_size=48, num_attention_heads=6, hidden_act="gelu", layer_norm_eps=1e-6),
  ),
}
VAE = dict(
  in_channels=3,
  out_channels=3,
  latent_channels=4,
  block_out_channels=(32, 64),
  layers_per_block=1,
  norm_num_groups=8,
  down_block_types=("DownEncoderBlock2D",) * 2,
  up_block_types=("UpDecoderBlock2D",) * 2,
  sample_size=IMAGE_SIZE,
)
SCHEDULER = dict(
  beta_start=0.00085,
  beta_end=0.012,
  beta_schedule="scaled_linear",
  num_train_timesteps=1000,
  clip_sample=False,
  set_alpha_to_one=False,
  steps_offset=1,
)


@dataclasses.dataclass
class TinySD:
  """A saved tiny pipeline and its PyTorch components (eval mode, float32)."""

  layout: str
  folder: str
  unet: Any  # diffusers.UNet2DConditionModel
  vae: Any  # diffusers.AutoencoderKL
  text_encoder: Any  # transformers.CLIPTextModel
  tokenizer: Any  # transformers.CLIPTokenizer
  scheduler: Any  # diffusers.DDIMScheduler


def byte_level_vocab() -> dict[str, int]:
  """CLIP's byte-to-unicode alphabet, each symbol alone and word-final, plus the two specials.

  With no merges every character is one token, so any caption tokenizes without <unk>.
  """
  bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  cs, n = bs[:], 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  chars = [chr(c) for c in cs]
  tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
  return {t: i for i, t in enumerate(tokens)}


def make_tokenizer(directory: str):
  """A CLIPTokenizer from a vocab.json + merges.txt written into directory (no download)."""
  from transformers import CLIPTokenizer

  os.makedirs(directory, exist_ok=True)
  vocab, merges = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
  with open(vocab, "w") as f:
    json.dump(byte_level_vocab(), f)
  with open(merges, "w") as f:
    f.write("#version: 0.2\n")
  return CLIPTokenizer(vocab, merges, pad_token="<|endoftext|>", model_max_length=MAX_LENGTH)


def _perturb(model, scale: float = 0.05):
  import torch

  with torch.no_grad():
    for p in model.parameters():
      p.add_(scale * torch.randn_like(p))
  return model.eval()


def build(layout: str, folder: str, *, seed: int = 0, prediction_type: str = "epsilon") -> TinySD:
  """Builds the tiny `layout` ('sd1' or 'sd2') pipeline with random weights and saves it to folder."""
  import torch
  from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
  from transformers import CLIPTextConfig, CLIPTextModel

  spec = LAYOUTS[layout]
  torch.manual_seed(seed)
  unet = _perturb(UNet2DConditionModel(**spec["unet"]))
  vae = _perturb(AutoencoderKL(**VAE))
  vocab = byte_level_vocab()
  bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
  text_config = CLIPTextConfig(
    vocab_size=len(vocab), bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, **spec["text"]
  )
  text_config._attn_implementation = "eager"
  text_encoder = _perturb(CLIPTextModel(text_config))
  source = folder + "_tokenizer_source"
  tokenizer = make_tokenizer(source)
  scheduler = DDIMScheduler(prediction_type=prediction_type, **SCHEDULER)
  pipe = StableDiffusionPipeline(
    vae=vae,
    text_encoder=text_encoder,
    tokenizer=tokenizer,
    unet=unet,
    scheduler=scheduler,
    safety_checker=None,
    feature_extractor=None,
    requires_safety_checker=False,
  )
  pipe.save_pretrained(folder, safe_serialization=True)
  if layout == "sd2":  # The Hub's SD 2.x tokenizer/: vocab.json, merges.txt and tokenizer_config.json only.
    tok_dir = os.path.join(folder, "tokenizer")
    shutil.rmtree(tok_dir)
    shutil.copytree(source, tok_dir)
    with open(os.path.join(tok_dir, "tokenizer_config.json"), "w") as f:
      json.dump(
        dict(
          tokenizer_class="CLIPTokenizer",
          model_max_length=MAX_LENGTH,
          bos_token="<|startoftext|>",
          eos_token="<|endoftext|>",
          pad_token="<|endoftext|>",
          unk_token="<|endoftext|>",
        ),
        f,
      )
  shutil.rmtree(source)
  return TinySD(layout, folder, unet, vae, text_encoder, tokenizer, scheduler)


def copy(tiny_folder: str, folder: str) -> str:
  """A copy of a pipeline folder (to damage without touching the original)."""
  shutil.copytree(tiny_folder, folder)
  return folder


def hub_cache(folder: str, hub_dir: str, repo_id: str, *, revision: str = "main") -> str:
  """Lays folder out as huggingface_hub's cache of repo_id under hub_dir (HF_HOME/hub); returns the snapshot.

  hub_dir/models--owner--name/blobs/<sha256 of the file>, snapshots/<commit>/<path> -> a relative symlink to
  the blob (a copy where symlinks are not supported), and refs/<revision> holding the 40-hex commit hash.
  """
  repo = os.path.join(hub_dir, "models--" + repo_id.replace("/", "--"))
  files = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
  commit = hashlib.sha1("\n".join(files).encode() + repo_id.encode()).hexdigest()
  snapshot = os.path.join(repo, "snapshots", commit)
  os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
  for rel in files:
    src = os.path.join(folder, rel)
    with open(src, "rb") as f:
      blob = os.path.join(repo, "blobs", hashlib.sha256(f.read()).hexdigest())
    if not os.path.exists(blob):
      shutil.copyfile(src, blob)
    dst = os.path.join(snapshot, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
      os.symlink(os.path.relpath(blob, os.path.dirname(dst)), dst)
    except OSError:
      shutil.copyfile(blob, dst)
  os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
  with open(os.path.join(repo, "refs", revision), "w") as f:
    f.write(commit)
  return snapshot


def nchw(x: np.ndarray):
  """NHWC numpy -> NCHW torch tensor."""
  import torch

  return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def nhwc(t) -> np.ndarray:
  """NCHW torch tensor -> NHWC numpy."""
  return t.detach().numpy().transpose(0, 2, 3, 1)


def torch_unet(tiny: TinySD, x_t: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
  """The PyTorch UNet's prediction, NHWC in and out."""
  import torch

  with torch.no_grad():
    out = tiny.unet(
      nchw(x_t),
      torch.from_numpy(np.asarray(t, np.int64)),
      encoder_hidden_states=torch.from_numpy(np.asarray(context, np.float32)),
    ).sample
  return nhwc(out)


def torch_embed(tiny: TinySD, texts: list[str]) -> np.ndarray:
  """last_hidden_state of captions tokenized as diffusers' StableDiffusionPipeline does."""
  import torch

  ids = tiny.tokenizer(
    list(texts), padding="max_length", max_length=tiny.tokenizer.model_max_length, truncation=True
  ).input_ids
  with torch.no_grad():
    return tiny.text_encoder(torch.tensor(ids)).last_hidden_state.numpy()
