"""The one exception type for bad user input, and the path check every entry point shares.

A `UserError` is printed by `jaxgen.main` as a single line (what was wrong and what to do) and
turned into exit status 2, with no traceback; a `RunFailed` likewise, with exit status 1.
"""

import re


class UserError(Exception):
  """Bad input from the user: a config value, a path, a dataset, a workdir."""


class RunFailed(Exception):
  """A run that started well but cannot go on: it diverged, or a checkpoint could not be written.
  Printed as one line like a UserError, with exit status 1; the newest checkpoint is intact."""


_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def check_local(path, what='--workdir'):
  """Refuses a URL (gs://, s3://, ...): jaxgen reads and writes local (or mounted) paths only, and
  os.makedirs('gs://b/run') would quietly make a local folder named 'gs:'."""
  if _URL.match(path):
    raise UserError(f'{what} {path!r} is a URL, and jaxgen reads and writes local paths only: '
                    'mount the bucket (e.g. `gcsfuse BUCKET /mnt/BUCKET`) and give the mounted '
                    'folder')
