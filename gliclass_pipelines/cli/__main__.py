"""``python -m gliclass_pipelines.cli``: the same as the ``gliclass-pipelines`` console script."""

import sys

from gliclass_pipelines.cli import main

sys.exit(main())
