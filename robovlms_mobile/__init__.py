"""robovlms-mobile: 2-DOF mobile-robot navigation on top of upstream RoboVLMs.

Importing this package checks that upstream `robovlms` is installed (and at the pinned
commit) but imports nothing heavy; the classes live in their own modules:
`robovlms_mobile.data.dataset`, `robovlms_mobile.model.policy_head`, `robovlms_mobile.train.trainer`.
"""

import warnings

from robovlms_mobile.upstream import check_upstream

# upstream robovlms imports `timm.models.layers`, which timm deprecates with a FutureWarning at every
# start; users cannot act on it, and it would stand above every one-line error
warnings.filterwarnings("ignore", message="Importing from timm.models.layers is deprecated", category=FutureWarning)

__version__ = "0.1.0"

check_upstream()
