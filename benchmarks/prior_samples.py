"""What the Shapes prior itself draws: DDIM samples of each shape's captions in each view, named by the shipped judge.

  python benchmarks/prior_samples.py [--colours=red,blue] [--samples=4] [--scale=4] [--out=DIR]

SDS can only pull a NeRF towards what the prior believes a caption looks like. This samples every shape in
`--colours` x the four view suffixes x `--samples` seeds (DDIM, `--steps` steps, guidance `--scale`) and asks the
judge (dreamfusion_jax/assets/classifier/) which shape each sample is: the share named right, per shape and per
view, is a ceiling-like reading of the prior per shape. Writes DIR/prior_samples.md, .json and a grid per shape.
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dreamfusion_jax.guidance import shapes_prior  # noqa: E402
from dreamfusion_jax.guidance import text as text_lib  # noqa: E402
from dreamfusion_jax.shapes import judge as judge_lib  # noqa: E402
from dreamfusion_jax.shapes import world  # noqa: E402


def define_flags() -> None:
  flags.DEFINE_list("colours", ["red", "blue"], "Colours of the captions (of world.COLOUR_NAMES).")
  flags.DEFINE_integer("samples", 4, "Seeds per caption and view.")
  flags.DEFINE_integer("steps", 50, "DDIM steps.")
  flags.DEFINE_float("scale", 4.0, "Classifier-free guidance of the samples (the model card's 4).")
  flags.DEFINE_integer("batch", 88, "Samples per DDIM program.")
  flags.DEFINE_string("out", "/tmp/prior_samples", "Output folder.")


def named_shapes(judge: judge_lib.Classifier, images: np.ndarray) -> np.ndarray:
  """The judge's shape index [N] for images [N, S, S, 3] in [0, 1]."""
  return np.argmax(judge.logits(images)["shape"], axis=-1)


def sample_all(colours, samples, steps, scale, batch, seed=0):
  """DDIM samples of every (colour, shape, view, seed): (images [N, S, S, 3], rows [(colour, shape, view)])."""
  key = jax.random.PRNGKey(seed)
  unet, encoder, tokenizer, params, abar = shapes_prior.load_prior(shapes_prior.default_dir())
  size = shapes_prior.read_config(shapes_prior.default_dir())["image_size"]
  rows = [(c, s, v) for c in colours for s in world.SHAPES for v in range(len(text_lib.VIEW_SUFFIXES))]
  rows = [r for r in rows for _ in range(samples)]
  texts = [text_lib.view_prompt(world.caption(c, s), v) for c, s, v in rows]
  embed = jax.jit(lambda p, ids: encoder.apply({"params": p}, ids))
  context = np.asarray(embed(params["text"], tokenizer(texts)))
  empty = np.asarray(embed(params["text"], tokenizer([""])))
  unet_apply = lambda p, x, t, ctx: unet.apply({"params": p}, x, t, ctx)
  run = jax.jit(lambda k, ctx: shapes_prior.sample(k, unet_apply, params["unet"], ctx, empty, abar, steps, scale, size))
  out = []
  for i in range(0, len(rows), batch):  # Whole batches: one compile; the last is padded.
    ctx = context[i : i + batch]
    pad = batch - ctx.shape[0]
    ctx = np.concatenate([ctx, np.repeat(ctx[-1:], pad, 0)]) if pad else ctx
    out.append(np.asarray(run(jax.random.fold_in(key, i), jnp.asarray(ctx)))[: batch - pad])
  return np.concatenate(out), rows


def table(rows, named) -> dict:
  """{shape: {'all': share, view suffix: share}} of the samples named as their caption's shape."""
  result = {}
  for s in world.SHAPES:
    want = world.SHAPES.index(s)
    cells = {}
    for v, suffix in enumerate(text_lib.VIEW_SUFFIXES):
      hit = [named[i] == want for i, r in enumerate(rows) if r[1] == s and r[2] == v]
      cells[suffix] = float(np.mean(hit))
    hit = [named[i] == want for i, r in enumerate(rows) if r[1] == s]
    cells["all"] = float(np.mean(hit))
    confused = [world.SHAPES[named[i]] for i, r in enumerate(rows) if r[1] == s and named[i] != want]
    cells["named instead"] = {k: confused.count(k) for k in sorted(set(confused), key=confused.count, reverse=True)}
    result[s] = cells
  return result


def main(argv):
  del argv
  f = flags.FLAGS
  os.makedirs(f.out, exist_ok=True)
  t = time.perf_counter()
  images, rows = sample_all(f.colours, f.samples, f.steps, f.scale, f.batch)
  seconds = time.perf_counter() - t
  named = named_shapes(judge_lib.load_classifier(judge_lib.default_classifier_dir()), images)
  result = table(rows, named)
  suffixes = list(text_lib.VIEW_SUFFIXES)
  lines = [
    f"# The Shapes prior's own samples, named by the judge ({jax.devices()[0].device_kind}, "
    f"{time.strftime('%Y-%m-%d')})",
    "",
    f"Colours {', '.join(f.colours)} x {f.samples} seeds per view; DDIM {f.steps} steps, guidance {f.scale}; "
    f"{len(rows)} samples in {seconds:.0f} s. The share the judge names as the caption's shape:",
    "",
    "| shape | all | " + " | ".join(suffixes) + " | named instead |",
    "| --- | --- |" + " --- |" * len(suffixes) + " --- |",
  ]
  for s, cells in result.items():
    instead = ", ".join(f"{k} {n}" for k, n in cells["named instead"].items()) or "-"
    lines.append(f"| {s} | {cells['all']:.2f} | " + " | ".join(f"{cells[v]:.2f}" for v in suffixes) + f" | {instead} |")
  text = "\n".join(lines) + "\n"
  print(text)
  with open(os.path.join(f.out, "prior_samples.md"), "w") as fh:
    fh.write(text)
  with open(os.path.join(f.out, "prior_samples.json"), "w") as fh:
    json.dump(dict(colours=f.colours, samples=f.samples, steps=f.steps, scale=f.scale, shapes=result), fh, indent=1)
  per = len(f.colours) * len(suffixes) * f.samples
  for s in world.SHAPES:  # One grid per shape: rows are colour x view, columns the seeds.
    idx = [i for i, r in enumerate(rows) if r[1] == s][:per]
    grid = shapes_prior.image_grid(images[idx], ncols=f.samples)
    shapes_prior.write_png(os.path.join(f.out, f"samples_{s}.png"), grid)


if __name__ == "__main__":
  define_flags()
  app.run(main)
