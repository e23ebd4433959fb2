"""The one exception type for bad user input, and the path check every entry point shares.

A `UserError` is printed by `jaxgen.main` as a single line (what was wrong and what to do) and
turned into a non-zero exit status, with no traceback.
"""

import re


class UserError(Exception):
  """Bad input from the user: a config value, a path, a dataset, a workdir."""


_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def check_local(path, what='--workdir'):
  """Refuses a URL (gs://, s3://, ...): jaxgen reads and writes local (or mounted) paths only, and
  os.makedirs('gs://b/run') would quietly make a local folder named 'gs:'."""
  if _URL.match(path):
    raise UserError(f'{what} {path!r} is a URL, and jaxgen reads and writes local paths only: '
                    'mount the bucket (e.g. `gcsfuse BUCKET /mnt/BUCKET`) and give the mounted '
                    'folder')
