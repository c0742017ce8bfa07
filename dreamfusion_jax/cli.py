"""What the package's command lines share (main, and the Shapes prior's and judge's trainers): turning a bad
--config file, an unknown --config.FIELD or a bad flag into one 'error: ...' paragraph with exit status 2.
"""

import importlib.util
import os
import re
import sys
import traceback
from typing import Optional

from absl import flags

from dreamfusion_jax.errors import UserError


def parse_flags(
  flag_values: flags.FlagValues, argv: list[str], *, fields_doc: str, example_config: str, example_override: str
) -> list[str]:
  """absl's parser over flag_values; raises UserError with one clear sentence and its fix.

  fields_doc: the file that lists every config field; example_config: a --config value to suggest;
  example_override: a --config.FIELD=VALUE to show.
  """
  spec = _flag_value(argv, "config")
  if spec is not None and "config" in flag_values:
    check_config_file(spec, example_config)
  try:
    rest = flag_values(argv)
    flag_values["config"].value.keys()  # A config file that failed to load raises on first use: now.
    return rest
  except OSError as e:  # ml_collections could not read the config file.
    why = str(e).strip().splitlines()[-1].strip()
    raise UserError(
      f"The config file could not be loaded ({why}). Give --config=PATH[:VARIANT], e.g. "
      f"--config={example_config}, relative to the current directory."
    ) from None
  except (AttributeError, KeyError) as e:  # ml_collections raises these for an unknown field.
    text = str(e.args[0] if e.args else e)
    found = re.search(r"[A-Za-z_][A-Za-z0-9_]*", text)  # The message starts with the quoted name.
    name = found.group(0) if found else text
    hint = re.search(r'Did you mean "([^"]+)"', text)
    given = [a for a in argv if a.startswith("--config.") and name in a.split("=")[0].split(".")]
    shown = given[0].split("=")[0] if given else f"--config.{name}"
    suggestion = f" Did you mean '{hint.group(1)}'?" if hint else ""
    raise UserError(
      f"The config has no field '{name}' ({shown}).{suggestion} Check its spelling against {fields_doc}, which "
      f"lists every field with a comment; fields are set with --config.FIELD=VALUE, e.g. {example_override}."
    ) from None
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if "Traceback (most recent call last):" in lines:  # The config file's get_config raised: its last line says why.
      lines = [lines[0], lines[-1]]
    raise UserError(f"{' '.join(lines).rstrip('.')}. Run with --helpshort to see the flags.") from None


def fail(message: str) -> None:
  """Prints 'error: message' on stderr and exits with status 2 (a user's mistake: no traceback)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _flag_value(argv: list[str], name: str) -> Optional[str]:
  """The value of --name=VALUE or --name VALUE in argv (the last one wins, as in absl), or None."""
  value = None
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      break
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _where(error: BaseException, path: str) -> str:
  """'line N' of the deepest frame of error's traceback that lies in the file path ('' if none)."""
  lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == path]
  return f" at line {lines[-1]}" if lines else ""


def check_config_file(spec: str, example_config: str) -> None:
  """Loads a --config=PATH[:VARIANT] file as ml_collections will, and raises UserError with the file and line of
  what is wrong with it: missing, a syntax error, an error while it runs, no get_config(), a get_config() that
  raises or returns no ConfigDict."""
  import ml_collections

  path, *variant = spec.split(":", 1)  # ml_collections passes what follows the first ':' to get_config.
  shown = f"The config file '{path}'"
  usage = f"A config file defines get_config() returning an ml_collections.ConfigDict, e.g. {example_config}."
  if not path:
    raise UserError(f"--config is empty. Give --config=PATH[:VARIANT], e.g. --config={example_config}.")
  if not os.path.isfile(path):
    where = "is a directory" if os.path.isdir(path) else "does not exist"
    raise UserError(
      f"{shown} {where} (looked in '{os.getcwd()}'). Give --config=PATH[:VARIANT], e.g. --config={example_config}, "
      "relative to the current directory."
    )
  full = os.path.abspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      source = f.read()
    code = compile(source, full, "exec")
  except SyntaxError as e:
    raise UserError(f"{shown} has a syntax error at line {e.lineno}: {e.msg}. Fix it. {usage}") from None
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{shown} can't be read ({e}).") from None
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader("_checked_config", loader=None))
  module.__file__ = full
  try:
    exec(code, module.__dict__)  # noqa: S102 -- a config file is Python the user asked to run.
  except Exception as e:  # noqa: BLE001 -- any error of the user's file is reported, not raised.
    raise UserError(f"{shown} raised {type(e).__name__}{_where(e, full)} while loading: {e}.") from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise UserError(f"{shown} defines no get_config(). {usage}")
  try:
    config = get_config(*variant)
  except Exception as e:  # noqa: BLE001
    args = f"get_config({variant[0]!r})" if variant else "get_config()"
    raise UserError(f"{shown}: {args} raised {type(e).__name__}{_where(e, full)}: {e}.") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"{shown}: get_config() returned {type(config).__name__}, not a ConfigDict. {usage}")
