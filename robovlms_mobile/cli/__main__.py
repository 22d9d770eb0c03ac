"""`python -m robovlms_mobile.cli ...` runs the CLI."""

import sys

from robovlms_mobile.cli.main import main

sys.exit(main())
