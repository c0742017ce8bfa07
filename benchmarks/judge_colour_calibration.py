"""Does the judge name a true object's colour by the nearest colour of the world? (CPU, ~2-4 min a judge)

  python benchmarks/judge_colour_calibration.py
  python benchmarks/judge_colour_calibration.py --classifier_dirs=dreamfusion_jax/assets/classifier,/tmp/judge/export

True shapes (--shapes) are rendered albedo-only through the benchmark's own view renderer
(`evaluate.make_view_renderer` at the default config, as colour R-Precision renders a result), with
a uniform albedo at distance d (--distances) from a named colour in a random direction, clipped to
[0, 1]. The expected answer is the named colour nearest to that albedo, found by brute force over
`world.COLOUR_TABLE` (numpy), independently of any judge. An SDS result's albedo is never exactly
its named colour: gray results of the default config sit ~0.1 from (0.5, 0.5, 0.5) (their colour
error), so a judge whose answer flips within that distance scores the albedo's exactness, not its
colour. Printed per judge: agreement per distance, per named colour (at every distance), and
the most common wrong answers; with --truth also the colour and geo R-Precision of every caption of the
world rendered true (its named colour, 8 views), as evaluate scores a run; and for each --brightness k,
what the judge calls each named colour scaled by k (SDS results are often darker than their colour:
is a half-bright blue still 'blue'?). Neither judge of 2026-11-29 passes both probes: the shipped one
calls a 0.55 grey 'white', one trained on albedos near the named colours only calls every colour at
half brightness 'gray' (BENCHMARKS.md).
"""

import collections
import functools
import os
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

flags.DEFINE_list("classifier_dirs", [], "Judge directories (default: the shipped one).")
flags.DEFINE_list("distances", ["0", "0.05", "0.1", "0.15"], "Distances of the albedo from its named colour.")
flags.DEFINE_list("shapes", ["sphere", "cube", "cone", "torus", "bird"], "True shapes to render.")
flags.DEFINE_integer("directions", 4, "Random directions per (colour, distance, shape).")
flags.DEFINE_integer("views", 2, "Views per albedo (random azimuths, the benchmark's elevation and backgrounds).")
flags.DEFINE_integer("seed", 0, "Seed of the directions and azimuths.")
flags.DEFINE_list("brightness", ["1", "0.75", "0.5"], "Factors on the named colours for the brightness probe.")
flags.DEFINE_bool("truth", True, "Also score every caption's true object (110 captions x 8 views).")
FLAGS = flags.FLAGS


def nearest_colour(albedo: np.ndarray) -> np.ndarray:
  """[N] index of the named colour nearest (Euclidean) to each albedo [N, 3]."""
  from dreamfusion_jax.shapes import world

  d = np.linalg.norm(np.asarray(albedo)[:, None, :] - world.COLOUR_TABLE[None], axis=-1)
  return d.argmin(-1)


def probe_albedos(distances, directions: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(albedo [N, 3], named colour [N], distance [N]): every colour x distance x direction, clipped."""
  from dreamfusion_jax.shapes import world

  rng = np.random.default_rng(seed)
  rows = []
  for c, rgb in enumerate(world.COLOUR_TABLE):
    for d in distances:
      u = rng.normal(size=(directions, 3))
      u /= np.linalg.norm(u, axis=-1, keepdims=True)
      for v in np.clip(rgb + d * u, 0.0, 1.0):
        rows.append((v, c, d))
  return (
    np.array([r[0] for r in rows], np.float32),
    np.array([r[1] for r in rows]),
    np.array([r[2] for r in rows], np.float32),
  )


@functools.lru_cache(maxsize=None)
def true_object_renderer(shape_name: str, size: int):
  """evaluate's view renderer at the default config for the true shape, with the albedo [3] as its params:
  (albedo, elevation, azimuth, background) -> dict(colour, textureless). Cached: one compile per shape."""
  import jax.numpy as jnp

  from configs import default
  from dreamfusion_jax.nerf.field import Scene
  from dreamfusion_jax.shapes import evaluate, world

  i = world.SHAPES.index(shape_name)
  truth = lambda rgb: lambda x: (world.density_fn(i)(x), jnp.broadcast_to(rgb, x.shape))
  return evaluate.make_view_renderer(Scene(), default.get_config(), size, field_of=truth)


def colour_views(shape_name: str, size: int, rgb, azimuths, backgrounds) -> np.ndarray:
  """[len(azimuths), size, size, 3] albedo-only renders of the true shape of albedo rgb."""
  import jax.numpy as jnp

  from dreamfusion_jax.shapes import evaluate

  render_view = true_object_renderer(shape_name, size)
  return np.stack(
    [
      np.asarray(
        render_view(
          jnp.asarray(rgb, jnp.float32), jnp.float32(evaluate.VIEW_ELEVATION), jnp.float32(a), jnp.asarray(bg)
        )["colour"]
      )
      for a, bg in zip(azimuths, backgrounds)
    ]
  )


def judge_answers(judge, albedos: np.ndarray, shape_names, views: int, seed: int) -> dict:
  """{shape: [N, views] colour index the judge gives to albedo-only renders of the true shape}."""
  from dreamfusion_jax.shapes import evaluate

  rng = np.random.default_rng(seed + 1)
  bgs = evaluate.view_backgrounds(8)
  out = {}
  for name in shape_names:
    answers = np.zeros((len(albedos), views), np.int64)
    for n, rgb in enumerate(albedos):
      azimuths = [float(rng.uniform(0.0, 360.0)) for _ in range(views)]
      images = colour_views(name, judge.image_size, rgb, azimuths, [bgs[(n + k) % 8] for k in range(views)])
      answers[n] = judge.logits(images)["colour"].argmax(-1)
    out[name] = answers
  return out


def truth_views(size: int) -> dict:
  """{(colour index, shape index): evaluate.render_views of the true object at its named colour}."""
  import jax.numpy as jnp

  from dreamfusion_jax.shapes import evaluate, world

  return {
    (c, s): evaluate.render_views(true_object_renderer(name, size), jnp.asarray(rgb))
    for s, name in enumerate(world.SHAPES)
    for c, rgb in enumerate(world.COLOUR_TABLE)
  }


def brightness_probe(judge, factors, shape_names, views: int = 4) -> dict:
  """{(k, colour name): Counter of the judge's answers} for true shapes of albedo k * named colour."""
  from dreamfusion_jax.shapes import evaluate, world

  bgs = evaluate.view_backgrounds(8)
  out = collections.defaultdict(collections.Counter)
  for name in shape_names:
    for c, rgb in enumerate(world.COLOUR_TABLE):
      for k in factors:
        images = colour_views(name, judge.image_size, rgb * k, [45.0 * v for v in range(views)], bgs[:views])
        for a in judge.logits(images)["colour"].argmax(-1):
          out[(k, world.COLOUR_NAMES[c])][world.COLOUR_NAMES[a]] += 1
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  from dreamfusion_jax.shapes import judge as judge_lib
  from dreamfusion_jax.shapes import world

  dirs = FLAGS.classifier_dirs or [judge_lib.default_classifier_dir()]
  distances = [float(d) for d in FLAGS.distances]
  albedos, named, dist = probe_albedos(distances, FLAGS.directions, FLAGS.seed)
  expected = nearest_colour(albedos)
  views = truth_views(64) if FLAGS.truth else {}
  print(
    f"{len(albedos)} albedos ({len(world.COLOUR_NAMES)} colours x {len(distances)} distances x "
    f"{FLAGS.directions} directions) x {len(FLAGS.shapes)} shapes x {FLAGS.views} views; "
    f"{int((expected != named).sum())} albedos lie nearer another colour than their own."
  )
  for directory in dirs:
    judge = judge_lib.load_classifier(directory)
    answers = judge_answers(judge, albedos, FLAGS.shapes, FLAGS.views, FLAGS.seed)
    hit = np.stack([a == expected[:, None] for a in answers.values()])  # [shapes, N, views]
    print(f"\njudge {directory}: agreement with the nearest colour {hit.mean():.3f}")
    print("  per distance: " + ", ".join(f"{d:g}: {hit[:, dist == d].mean():.3f}" for d in distances))
    print(
      "  per colour:   " + ", ".join(f"{c}: {hit[:, named == i].mean():.2f}" for i, c in enumerate(world.COLOUR_NAMES))
    )
    wrong = collections.Counter()
    for a in answers.values():
      for n, v in zip(*np.nonzero(a != expected[:, None])):
        wrong[(world.COLOUR_NAMES[expected[n]], world.COLOUR_NAMES[a[n, v]])] += 1
    print("  wrong answers (nearest -> judged): " + ", ".join(f"{e} -> {g} x{k}" for (e, g), k in wrong.most_common(8)))
    factors = [float(k) for k in FLAGS.brightness]
    if factors:
      said = brightness_probe(judge, factors, FLAGS.shapes[:3])
      for k in factors:
        print(
          f"  brightness x{k:g}: "
          + " | ".join(
            f"{c}: " + ",".join(f"{a}{n}" for a, n in said[(k, c)].most_common(2)) for c in world.COLOUR_NAMES
          )
        )
    if views:
      from dreamfusion_jax.shapes import evaluate

      scores = [evaluate.r_precision(judge, v["colour"], v["textureless"], c, s) for (c, s), v in views.items()]
      print(
        f"  true objects, {len(views)} captions x {len(next(iter(views.values()))['colour'])} views: colour "
        f"R-Precision {np.mean([x['color_r_precision'] for x in scores]):.3f}, geo R-Precision "
        f"{np.mean([x['geo_r_precision'] for x in scores]):.3f}"
      )


if __name__ == "__main__":
  app.run(main)
