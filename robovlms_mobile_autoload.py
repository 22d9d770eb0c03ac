"""Start-up hook: activate `robovlms.plugins` entry points when upstream `robovlms` is imported.

Loaded from `robovlms_mobile_autoload.pth` at interpreter start-up, so it must stay tiny: it
imports nothing beyond `sys`/`os` and only appends one meta-path finder. The finder waits for
a watched module (at first only `robovlms`) to be imported, runs its loader unchanged, then
calls the callbacks registered for that name. `ROBOVLMS_MOBILE_AUTOLOAD=0` turns it off;
`robovlms_mobile.train.registry.register()` activates the plugin explicitly either way.
"""

import os
import sys

ENV_VAR = "ROBOVLMS_MOBILE_AUTOLOAD"
PLUGIN_GROUP = "robovlms.plugins"

_callbacks = {}  # module name -> list of callables(module)


class _PostImportFinder:
    """Meta-path finder that runs callbacks right after a watched module finishes executing."""

    _busy = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _callbacks or fullname in self._busy:
            return None
        import importlib.util

        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _CallbackLoader(spec.loader)
        return spec

    def invalidate_caches(self):
        pass


class _CallbackLoader:
    """Wraps a real loader; after `exec_module` it fires the callbacks for the module."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _fire(module.__name__, module)


def _fire(name, module):
    for callback in _callbacks.pop(name, []):
        callback(module)


def when_imported(name, callback):
    """Call `callback(module)` once `name` is imported (immediately if it already is)."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None and not _initialising(module):
        callback(module)
        return
    _callbacks.setdefault(name, []).append(callback)
    _install()


def _initialising(module):
    spec = module.__spec__
    return bool(getattr(spec, "_initializing", False))


def _install():
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())


def load_plugins(module=None):
    """Call every `robovlms.plugins` entry point (each registers its classes)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()()
        except Exception as exc:  # a broken plugin must not break `import robovlms`
            import warnings

            warnings.warn(f"robovlms plugin {ep.name!r} ({ep.value}) failed to load: {exc!r}")


def enabled():
    """False when the user turned autoloading off with ROBOVLMS_MOBILE_AUTOLOAD=0."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


if enabled():
    when_imported("robovlms", load_plugins)
