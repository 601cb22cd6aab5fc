"""`python -m polaris` is the `polaris` command."""

import sys

from polaris.cli.main import main

sys.exit(main())
