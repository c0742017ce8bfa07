"""Captions: the view-dependent prompts, and the small word-level text encoder of the project's own priors.

Stable Diffusion's CLIP encoders live in `clip_text`; the word encoder here serves priors whose
vocabulary is a closed, small set of words (the smoke test's random prior, the embedded Shapes prior).
"""

import re
from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

# View-dependent prompts (DreamFusion section 3.2): the suffix appended to a caption per camera.
VIEW_SUFFIXES = ("front view", "side view", "back view", "overhead view")

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
_SPECIAL = (PAD, BOS, EOS, UNK)


class WordTokenizer:
  """Lower-cases, splits on anything that is not a letter or digit, maps words to ids.

  Words outside the vocabulary map to <unk>; `unknown_words` lists them so callers can warn.
  """

  def __init__(self, vocabulary: Sequence[str], max_length: int):
    words = [w.lower() for w in vocabulary if w.lower() not in _SPECIAL]
    self.vocab = list(_SPECIAL) + sorted(set(words))
    self.ids = {w: i for i, w in enumerate(self.vocab)}
    self.max_length = max_length

  @staticmethod
  def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())

  def unknown_words(self, text: str) -> list[str]:
    return [w for w in self.words(text) if w not in self.ids]

  def cut(self, text: str) -> Optional[tuple[str, str]]:
    """None if text fits max_length tokens; else (the words kept, the words dropped), as __call__ truncates."""
    words = self.words(text)
    room = self.max_length - 2  # <bos> and <eos>.
    return None if len(words) <= room else (" ".join(words[:room]), " ".join(words[room:]))

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    """Returns int32 ids [len(texts), max_length]: <bos> words <eos> <pad>..., truncated to fit."""
    out = np.full((len(texts), self.max_length), self.ids[PAD], np.int32)
    for row, text in enumerate(texts):
      ids = [self.ids[BOS]] + [self.ids.get(w, self.ids[UNK]) for w in self.words(text)]
      ids = ids[: self.max_length - 1] + [self.ids[EOS]]
      out[row, : len(ids)] = ids
    return out


class TextEncoder(nn.Module):
  """Token + position embeddings and pre-LayerNorm transformer layers; returns all hidden states."""

  vocab_size: int  # Number of token ids.
  max_length: int  # Tokens per caption.
  width: int = 64  # Hidden size (the UNet's cross_attention_dim).
  num_layers: int = 2  # Transformer layers.
  num_heads: int = 4  # Attention heads per layer.

  @nn.compact
  def __call__(self, ids: jnp.ndarray) -> jnp.ndarray:
    """ids: [B, L] int32 -> hidden states [B, L, width]."""
    x = nn.Embed(self.vocab_size, self.width, name="token_embedding")(ids)
    pos = self.param("position_embedding", nn.initializers.normal(0.02), (self.max_length, self.width))
    x = x + pos[None, : ids.shape[1]]
    # Padding tokens are not attended to; every caption has at least <bos> and <eos>.
    mask = nn.make_attention_mask(ids != 0, ids != 0)
    for i in range(self.num_layers):
      h = nn.LayerNorm(name=f"layers_{i}_norm1")(x)
      x = x + nn.MultiHeadDotProductAttention(self.num_heads, name=f"layers_{i}_attn")(h, h, mask=mask)
      h = nn.LayerNorm(name=f"layers_{i}_norm2")(x)
      h = nn.Dense(4 * self.width, name=f"layers_{i}_fc1")(h)
      x = x + nn.Dense(self.width, name=f"layers_{i}_fc2")(nn.gelu(h))
    return nn.LayerNorm(name="final_norm")(x)


def view_index(elevation, azimuth, overhead_threshold=60.0, front_half_width=45.0):
  """View-dependent prompt index: 0 front, 1 side, 2 back, 3 overhead (int32, shape [...]).

  Overhead iff elevation > overhead_threshold (strict). Otherwise the azimuth is wrapped to
  [-180, 180): |az| <= front_half_width is front and |az| >= 180 - front_half_width is back
  (both boundaries inclusive, so 45 is front and 135 is back), side elsewhere.
  """
  elevation = jnp.asarray(elevation, jnp.float32)
  azimuth = jnp.asarray(azimuth, jnp.float32)
  az = jnp.abs(jnp.mod(azimuth + 180.0, 360.0) - 180.0)
  idx = jnp.where(az <= front_half_width, 0, jnp.where(az >= 180.0 - front_half_width, 2, 1))
  return jnp.where(elevation > overhead_threshold, 3, idx).astype(jnp.int32)


def view_prompt(prompt: str, index: int) -> str:
  """Caption with its view suffix, e.g. 'a corgi, side view'. `index` is a Python int."""
  return f"{prompt}, {VIEW_SUFFIXES[int(index)]}"
