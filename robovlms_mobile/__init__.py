"""robovlms-mobile: 2-DOF mobile-robot navigation on top of upstream RoboVLMs.

Importing this package checks that upstream `robovlms` is installed (and at the pinned
commit) but imports nothing heavy; the classes live in their own modules:
`robovlms_mobile.data.dataset`, `robovlms_mobile.model.policy_head`, `robovlms_mobile.trainer`.
"""

from robovlms_mobile.upstream import check_upstream

__version__ = "0.1.0"

check_upstream()
