"""The one exception type for bad user input.

A `UserError` is printed by `jaxgen.main` as a single line (what was wrong and what to do) and
turned into a non-zero exit status, with no traceback.
"""


class UserError(Exception):
  """Bad input from the user: a config value, a path, a dataset, a workdir."""
