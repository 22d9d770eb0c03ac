"""`python -m robovlms_mobile.cli ...` runs the CLI."""

import sys

from robovlms_mobile.cli.commands import main

sys.exit(main())
