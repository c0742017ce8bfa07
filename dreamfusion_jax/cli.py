"""What the package's command lines share (main, and the Shapes prior's and judge's trainers): turning a bad
--config file, an unknown --config.FIELD or a bad flag into one 'error: ...' paragraph with exit status 2.
"""

import re
import sys

from absl import flags

from dreamfusion_jax.errors import UserError


def parse_flags(
  flag_values: flags.FlagValues, argv: list[str], *, fields_doc: str, example_config: str, example_override: str
) -> list[str]:
  """absl's parser over flag_values; raises UserError with one clear sentence and its fix.

  fields_doc: the file that lists every config field; example_config: a --config value to suggest;
  example_override: a --config.FIELD=VALUE to show.
  """
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
