"""Allow ``python -m reprobook``, the same as the ``reprobook`` command."""

import sys

from .cli import main

sys.exit(main())
