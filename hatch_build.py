"""Hatch build hook: ship the autoload `.pth` in editable installs too.

Regular wheels get it through `force-include`; hatchling's editable wheels ignore that table,
so the hook adds it explicitly. The `.pth` only imports the tiny `robovlms_mobile_autoload`.
"""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if version == "editable":
            build_data.setdefault("force_include_editable", {})[
                "robovlms_mobile_autoload.pth"
            ] = "robovlms_mobile_autoload.pth"
