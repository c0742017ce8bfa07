"""Validation before anything is compiled: every field's range, the fuzzer, config files and captions."""

import copy
import logging
import math
import os
import random
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from conftest import ROOT, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamfusion_jax import base_config, checks, cli, config_rules, memory
from dreamfusion_jax.errors import ConfigError, UserError
from dreamfusion_jax.guidance import stable_diffusion
from dreamfusion_jax.shapes import world

KEYS = sorted(config_rules.RULES)
NAN, INF = float("nan"), float("inf")


def with_value(config, key, value):
  """A copy of config with key set to value, built from a plain dict so that ml_collections' type checks on
  assignment (which the command line goes through) don't stop a wrong type before validate_config sees it."""
  d = copy.deepcopy(config.to_dict())
  target = d
  *parents, leaf = key.split(".")
  for p in parents:
    target = target[p]
  target[leaf] = value
  return ml_collections.ConfigDict(d)


def refusal(config) -> str | None:
  """The message validate_config or the memory check refuses config with, or None if both accept it."""
  try:
    checks.validate_config(config)
    memory.check(config)
  except ConfigError as e:
    return str(e)
  return None


def test_every_base_config_field_has_a_rule_its_default_meets():
  fields = set(checks.flatten(base_config.get_config().to_dict()))
  assert set(config_rules.RULES) == fields
  for key, value in checks.flatten(base_config.get_config().to_dict()).items():
    assert config_rules.problem(value, config_rules.RULES[key]) is None, (key, value)


def test_the_models_of_the_rules_are_the_registry_s():
  from dreamfusion_jax.guidance import registry

  assert set(config_rules.RULES["guidance.model"].choices) == set(registry.PRIORS)


@pytest.mark.parametrize(
  "key, value, says",
  [
    # Issue 18's list: each was a traceback (at start or after the last step) or accepted silently.
    (
      "export.image_size",
      0,
      "config.export.image_size (Turntable and contact-sheet render size) is 0, which is out "
      "of range: it must be an integer in [8, 4096]. Fix it with e.g. --config.export.image_size=128.",
    ),
    ("export.mesh_resolution", 0, "is 0, which is out of range: it must be an integer in [8, 1024]"),
    ("export.num_frames", -1, "is -1, which is out of range: it must be an integer in [0, 3600]"),
    (
      "export.fps",
      -1.0,
      "export.fps (Turntable frame rate; 0: num_frames / 4, a 4 s loop (30 fps at 120 frames)) is -1",
    ),
    ("export.fps", 300.0, "is 300.0, which is out of range: it must be a finite number in [0, 240]"),
    ("export.texture_size", 8, "is 8, which is out of range: it must be an integer in [16, 8192]"),
    ("export.max_faces", -5, "is -5, which is out of range: it must be an integer in [0, 100000000]"),
    ("field.num_levels", 0, "field.num_levels (L in Instant-NGP: hash-grid levels) is 0"),
    ("field.max_resolution", 0, "must be an integer in [1, 16384]"),
    ("field.log2_hashmap_size", 0, "is 0, which is out of range: it must be an integer in [8, 26] (Instant-NGP"),
    ("field.log2_hashmap_size", 40, "is 40, which is out of range"),
    ("guidance.num_train_timesteps", 0, "must be an integer in [2, 100000]"),
    ("optim.lr", -1.0, "optim.lr (Learning rate of the hash tables (threestudio: 1e-2)) is -1.0"),
    ("optim.net_lr", 0.0, "optim.net_lr (Learning rate of the MLPs and the background) is 0.0"),
    (
      "guidance.scale",
      -100.0,
      "guidance.scale (Classifier-free guidance weight w_cfg) is -100.0, which is out of range",
    ),
    ("guidance.scale", NAN, "is nan, which is not finite"),
    ("optim.b1", INF, "is inf, which is not finite"),
    (
      "num_steps",
      10**12,
      "num_steps (Optimisation steps per object (resuming with a larger value continues the "
      "run)) is 1000000000000, which is out of range: it must be an integer in [1, 10000000]",
    ),
    ("num_steps", 2.5, "is 2.5, which is not an integer"),
    ("num_steps", True, "is True, which is not an integer"),
    ("progress_bar", 1, "is 1, which is not a boolean: it must be true or false"),
    (
      "render.background",
      "black",
      "is 'black', which is not one of the choices: it must be one of 'learned', 'random'",
    ),
    (
      "camera.focal_range",
      (1.2, 0.8),
      "camera.focal_range (Focal length as a multiple of the image size) is (1.2, 0.8), which has MIN > MAX",
    ),
    ("camera.distance_range", (1.0,), "is (1.0,), which is not two numbers"),
    ("camera.elevation_range", (-10.0, NAN), "which is out of range"),
    (
      "guidance.model",
      "dalle",
      "guidance.model='dalle' is not a known model; choose one of random, shapes, stable_diffusion",
    ),
    ("field", 3, "config.field=3 replaces a section of fields"),
  ],
)
def test_a_bad_field_is_one_paragraph_naming_field_value_range_and_fix(key, value, says):
  message = refusal(with_value(tiny_config(), key, value))
  assert message is not None and says in message, message
  assert "\n" not in message


def test_fields_that_must_agree():
  c = tiny_config()
  cases = [
    ({"field.base_resolution": 128, "field.max_resolution": 64}, "field.base_resolution=128 exceeds"),
    ({"seed": 2**31 - 1, "num_seeds": 2}, "beyond int32"),
    ({"field.num_levels": 64, "field.log2_hashmap_size": 26}, "than int32 indices reach"),
    ({"guidance.num_train_timesteps": 2, "guidance.t_min": 0.9, "guidance.t_max": 0.95}, "holds no whole timestep"),
    ({"guidance.beta_start": 0.02, "guidance.beta_end": 0.01}, "betas rise"),
    ({"guidance.text.width": 48}, "must equal guidance.text.width=48"),
    ({"guidance.unet.norm_num_groups": 5}, "multiples of norm_num_groups=5"),
    ({"render.image_size": 15}, "render.image_size=15 must be a multiple of 2"),
  ]
  for overrides, says in cases:
    config = c
    for key, value in overrides.items():
      config = with_value(config, key, value)
    message = refusal(config)
    assert message is not None and says in message, (overrides, message)
  # The same values are fine where the random prior's fields don't apply.
  assert refusal(with_value(with_value(c, "render.image_size", 15), "guidance.model", "shapes")) is None


def test_a_config_lacking_a_field_is_refused():
  d = tiny_config().to_dict()
  del d["export"]["fps"]
  with pytest.raises(ConfigError, match=r"lacks the field\(s\) export.fps"):
    checks.validate_config(ml_collections.ConfigDict(d))


# ----------------------------------------------------------------------------- the fuzzer

EDGE_VALUES = [0, 1, -1, 2, 0.0, 0.5, -0.5, 1e300, -1e300, 10**12, 2**63, NAN, INF, -INF, True, False, None, "", "abc"]
VALUES = st.one_of(
  st.sampled_from(EDGE_VALUES + [[], [1], (1.0, 2.0), (2.0, 1.0), (NAN, 1.0), ("a", "b"), {"x": 1}]),
  st.integers(-(10**13), 10**13),
  st.floats(allow_nan=True, allow_infinity=True),
  st.text(max_size=4),
)


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(KEYS), value=VALUES, model=st.sampled_from(["random", "shapes"]))
def test_fuzzed_fields_are_accepted_or_refused_in_one_paragraph(key, value, model):
  """Every field (every key of base_config) with wrong types, zero, negative, huge, NaN and inf values: the checks
  either accept the config or raise ConfigError with one paragraph naming the field; nothing else escapes."""
  config = with_value(with_value(tiny_config(), "guidance.model", model), key, value)
  try:
    message = refusal(config)
  except Exception as e:  # noqa: BLE001 -- anything but ConfigError is the defect this test looks for.
    pytest.fail(f"{key}={value!r} ({model}) raised {type(e).__name__}: {e}")
  if message is not None:
    assert "\n" not in message and message.strip() == message
    leaf = key.split(".")[-1]
    named = leaf in message or "caption" in message or "The prompt" in message or "train step needs" in message
    assert named, (key, value, message)


def fuzz_candidates():
  """(key, value) pairs of every field with EDGE_VALUES and each rule's bounds that the checks accept on the tiny
  config and that stay cheap (at most twice its memory; no longer run or bigger export): the pool the real runs
  below draw from."""
  base = tiny_config()
  cheap = 2 * memory.estimate(base).device
  out = []
  for key in KEYS:
    rule = config_rules.RULES[key]
    bounds = [b for b in (rule.lo, rule.hi) if b is not None and math.isfinite(b)]
    for value in EDGE_VALUES + bounds + [int(b) for b in bounds if float(b).is_integer()]:
      if key in ("num_steps", "log_every", "checkpoint_every", "export.enabled") or key.startswith("guidance.sd."):
        continue
      config = with_value(base, key, value)
      if refusal(config) is None and memory.estimate(config).device <= cheap:
        out.append((key, value))
  return out


def test_a_sample_of_accepted_fuzz_cases_trains(tmp_path):
  """Accepted must mean runnable: two accepted edge cases, drawn with a fixed seed, train 2 steps of the tiny
  config and checkpoint, or stop with a UserError (a divergence) and its message."""
  from dreamfusion_jax import train

  pool = fuzz_candidates()
  assert len(pool) > 50  # The pool holds many fields' edge values, not a handful.
  for i, (key, value) in enumerate(random.Random(0).sample(pool, 2)):
    config = with_value(tiny_config(**{"num_steps": 2}), key, value)
    workdir = str(tmp_path / f"run{i}")
    try:
      state = train.train_and_evaluate(config, workdir)
    except UserError as e:
      assert "\n" not in str(e), (key, value, str(e))
      continue
    assert int(np.asarray(state.step)[0]) == 2, (key, value)
    assert "2" in os.listdir(os.path.join(workdir, "checkpoints")), (key, value)


def run_main(*args, timeout=300):
  cmd = [sys.executable, "-m", "dreamfusion_jax.main", *args]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
  "flag, says",
  [
    ("--config.guidance.scale=nan", "guidance.scale (Classifier-free guidance weight w_cfg) is nan"),
    ("--config.field.log2_hashmap_size=40", "field.log2_hashmap_size (log2 T in Instant-NGP"),
    (
      "--config.export.fps=300",
      "export.fps (Turntable frame rate; 0: num_frames / 4, a 4 s loop (30 fps at 120 frames)) is 300",
    ),
    ("--config.num_steps=abc", "flag --config.num_steps=abc"),
  ],
)
def test_refused_fuzz_cases_exit_2_with_the_workdir_never_created(tmp_path, flag, says):
  workdir = tmp_path / "w"
  result = run_main(f"--config={os.path.join(ROOT, 'configs', 'smoke.py')}", f"--workdir={workdir}", flag)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr + result.stdout
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and says in errors[0], result.stderr[-2000:]
  assert not workdir.exists()


# ----------------------------------------------------------------------------- config files


@pytest.mark.parametrize(
  "source, says",
  [
    ("def get_config(:\n  pass\n", "has a syntax error at line 1: invalid syntax"),
    ("x = 1\n", "defines no get_config()"),
    ("import os\n\n\ndef get_config():\n  return os.nope\n", "get_config() raised AttributeError at line 5"),
    ("\nimport no_such_module_here\n", "raised ModuleNotFoundError at line 2 while loading"),
    ("def get_config():\n  return 3\n", "get_config() returned int, not a ConfigDict"),
  ],
)
def test_a_broken_config_file_is_one_paragraph_with_the_file_and_line(tmp_path, source, says):
  path = tmp_path / "cfg.py"
  path.write_text(source)
  with pytest.raises(UserError) as err:
    cli.check_config_file(str(path), "configs/default.py")
  assert f"The config file '{path}'" in str(err.value) and says in str(err.value), str(err.value)


def test_a_missing_config_file_and_a_variant(tmp_path):
  with pytest.raises(UserError, match=r"'no_such\.py' does not exist \(looked in"):
    cli.check_config_file("no_such.py", "configs/default.py")
  path = tmp_path / "cfg.py"
  path.write_text(
    "import ml_collections\n\n\ndef get_config(size):\n  return ml_collections.ConfigDict(dict(s=size))\n"
  )
  cli.check_config_file(f"{path}:big", "configs/default.py")  # The variant reaches get_config: no error.
  with pytest.raises(UserError, match=r"get_config\(\) raised TypeError"):
    cli.check_config_file(str(path), "configs/default.py")


def test_a_config_file_without_get_config_exits_2_with_no_traceback(tmp_path):
  path = tmp_path / "cfg.py"
  path.write_text("x = 1\n")
  result = run_main(f"--config={path}", f"--workdir={tmp_path / 'w'}")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert f"error: The config file '{path}' defines no get_config()" in result.stderr
  assert "no field 'module'" not in result.stderr and not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- captions


def test_one_parser_forgives_case_an_and_a_final_period():
  for text in ("an orange torus", "A red cube.", "  A RED CUBE  ", "a red cube, front view", "An Orange Torus."):
    colour, shape = world.parse_caption(text)
    assert world.caption(colour, shape) in ("a orange torus", "a red cube")
  for bad in ("a crimson dodecahedron", "a red cube next to a blue sphere", "red cube", "the red cube", "🐱🚀", ""):
    with pytest.raises(ValueError):
      world.parse_caption(bad)


def shapes_config(prompt, **overrides):
  return tiny_config(**{"guidance.model": "shapes", "prompt": prompt, **overrides})


def test_the_shapes_prior_refuses_captions_outside_its_world(caplog):
  for prompt in ("a crimson dodecahedron", "a red cube next to a blue sphere on a green chair"):
    with pytest.raises(ConfigError) as err:
      checks.validate_config(shapes_config(prompt))
    message = str(err.value)
    assert f"The caption '{prompt}' is not of the Shapes world" in message
    assert ", ".join(world.COLOUR_NAMES) in message and ", ".join(world.SHAPES) in message
    assert "--config.guidance.allow_unknown_words=true" in message
  with caplog.at_level(logging.WARNING):
    checks.validate_config(shapes_config("a crimson dodecahedron", **{"guidance.allow_unknown_words": True}))
  assert "training it anyway" in caplog.text
  for prompt in ("an orange torus", "A red cube."):
    checks.validate_config(shapes_config(prompt))
  assert checks.prior_prompt(shapes_config("An orange torus.")) == "a orange torus"
  assert checks.prior_prompt(tiny_config(prompt="An orange torus.")) == "An orange torus."  # Other priors: as given.


def test_the_shapes_prior_reads_the_canonical_caption():
  """'An orange torus.' trains as 'a orange torus', the words the prior saw (its textureless rows: 'a white torus')."""
  from dreamfusion_jax import train
  from dreamfusion_jax.guidance import interface, shapes_prior

  seen = []
  embed = lambda texts: seen.append(list(texts)) or np.zeros((len(texts), 2, 4), np.float32)
  prior = interface.Prior(None, {}, embed, textureless_prompt=shapes_prior.textureless_prompt)
  train.embed_prompts(prior, shapes_config("An orange torus."))
  assert seen[-1][1:3] == ["a orange torus, front view", "a orange torus, side view"]
  assert seen[-1][5] == "a white torus, front view"


@pytest.mark.parametrize("model", ["random", "shapes"])
def test_a_caption_without_words_is_refused_even_for_experiments(model):
  config = tiny_config(**{"guidance.model": model, "prompt": "🐱🚀", "guidance.allow_unknown_words": True})
  with pytest.raises(ConfigError, match=r"holds no word of letters or digits.*view suffix"):
    checks.validate_config(config)
  checks.validate_config(tiny_config(**{"guidance.model": "stable_diffusion", "prompt": "🐱🚀"}))  # CLIP reads it.


def test_word_tokenizer_reports_what_it_cuts():
  from dreamfusion_jax.guidance import text as text_lib

  tok = text_lib.WordTokenizer(["a", "red", "cube"], max_length=6)  # <bos>, 4 words, <eos>.
  assert tok.cut("a red cube, front view") == ("a red cube front", "view")
  assert tok.cut("a red cube, side") is None
  ids = tok(["a red cube, front view"])[0]  # What is kept is what __call__ encodes.
  assert [tok.vocab[i] for i in ids] == ["<bos>", "a", "red", "cube", "<unk>", "<eos>"]


def test_clip_tokenizer_reports_what_it_cuts(tmp_path):
  import sd_tiny

  from dreamfusion_jax.guidance import clip_text

  tok = sd_tiny.make_tokenizer(str(tmp_path / "tok"))
  short = "a red cube"
  assert clip_text.cut(tok, short) is None
  kept, dropped = clip_text.cut(tok, short, max_length=6)
  # The byte-level tiny vocabulary has no merges: a token per character, '</w>' ending each word.
  assert (kept, dropped) == ("a red", "cube")
  ids = clip_text.tokenize(tok, short, max_length=6)[0]
  assert tok.decode(ids[1:-1]).strip() == kept


def test_a_cut_caption_is_a_warning_naming_what_was_dropped(caplog):
  from dreamfusion_jax import train
  from dreamfusion_jax.guidance import interface
  from dreamfusion_jax.guidance import text as text_lib

  tok = text_lib.WordTokenizer("a red cube next to blue sphere on green chair".split(), max_length=12)
  prior = interface.Prior(None, {}, lambda texts: np.zeros((len(texts), 12, 4), np.float32), cut=tok.cut, max_tokens=12)
  config = tiny_config(prompt="a red cube next to a blue sphere on a green chair")
  with caplog.at_level(logging.WARNING):
    train.embed_prompts(prior, config)
  assert (
    "The caption 'a red cube next to a blue sphere on a green chair, front view' was cut to 12 tokens by the "
    "prior's tokenizer: dropped 'green chair front view' (4 of the run's 4 captions are cut" in caplog.text
  )
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    train.embed_prompts(prior, tiny_config(prompt="a red cube"))
  assert "was cut" not in caplog.text


@pytest.mark.parametrize("module,package", [m[:2] for m in checks.MESH_PACKAGES])
def test_a_missing_mesh_package_is_reported_before_training(monkeypatch, module, package):
  monkeypatch.setitem(sys.modules, module, None)  # Its import raises ImportError.
  config = tiny_config(**{"export.enabled": True})
  with pytest.raises(ConfigError, match=f"pip install {package}.*export.enabled=false"):
    checks.check_mesh_packages(config)
  checks.check_mesh_packages(tiny_config())  # Exports off: not needed.


def test_sd_attention_auto_is_cudnn_only_on_a_gpu_in_bfloat16():
  pick = stable_diffusion.attention_implementation
  assert pick("auto", "bfloat16", "gpu") == "cudnn"
  assert pick("auto", "float32", "gpu") is None and pick("auto", "bfloat16", "cpu") is None
  assert pick("auto", "bfloat16", "tpu") is None and pick("xla", "bfloat16", "gpu") is None
  assert pick("cudnn", "bfloat16", "gpu") == "cudnn"
  with pytest.raises(ConfigError, match="'float32'.*attention=auto"):
    pick("cudnn", "float32", "gpu")
  with pytest.raises(ConfigError, match="'cpu'"):
    pick("cudnn", "bfloat16")  # This machine's backend.
