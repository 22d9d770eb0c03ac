"""Lazy activation: a tiny start-up hook, registration on `import robovlms`, an off switch."""

from __future__ import annotations

import textwrap

from helpers import last_json_line, run_python

HEAVY = ("torch", "transformers", "lightning", "robovlms", "robovlms_mobile", "importlib.metadata", "h5py")


def test_startup_imports_only_the_hook():
    code = "import sys, json; print(json.dumps(sorted(m for m in sys.modules if 'robovlms' in m or m.split('.')[0] in %r)))" % (HEAVY,)
    assert last_json_line(run_python(code).stdout) == ["robovlms_mobile_autoload"]


def test_import_robovlms_registers_lazily():
    code = textwrap.dedent("""
        import json, sys
        import robovlms
        after_robovlms = sorted(m for m in sys.modules if m.startswith("robovlms_mobile.") and m != "robovlms_mobile.upstream")
        import robovlms.data, robovlms.model.policy_head, robovlms.train.base_trainer as bt
        from robovlms_mobile.data.dataset import MobileVLAH5Dataset
        from robovlms_mobile.model.policy_head import MobileVLALSTMDecoder
        print(json.dumps({
            "after_robovlms": after_robovlms,
            "dataset": robovlms.data.MobileVLAH5Dataset is MobileVLAH5Dataset,
            "head": robovlms.model.policy_head.MobileVLALSTMDecoder is MobileVLALSTMDecoder,
            "trainer": robovlms.train.MobileVLATrainer.__name__,
            "dispatch": hasattr(bt.BaseTrainer, "_robovlms_mobile_original_from_checkpoint"),
        }))
    """)
    result = last_json_line(run_python(code).stdout)
    assert result["after_robovlms"] == ["robovlms_mobile.train", "robovlms_mobile.train.registry"], \
        "activation must not import the heavy modules"
    assert result["dataset"] and result["head"] and result["dispatch"] and result["trainer"] == "MobileVLATrainer"


def test_importing_plugin_modules_first_has_no_cycle():
    code = "from robovlms_mobile.model.policy_head import MobileVLALSTMDecoder\nimport robovlms.model.policy_head as h\nprint(h.MobileVLALSTMDecoder is MobileVLALSTMDecoder)"
    assert run_python(code).stdout.strip().endswith("True")


def test_env_var_turns_autoload_off_and_register_turns_it_on():
    code = textwrap.dedent("""
        import json, sys
        import robovlms.data, robovlms.train.base_trainer as bt
        before = [hasattr(robovlms.data, "MobileVLAH5Dataset"), hasattr(bt.BaseTrainer, "_robovlms_mobile_original_from_checkpoint")]
        from robovlms_mobile.train.registry import register
        register()
        after = [hasattr(robovlms.data, "MobileVLAH5Dataset"), hasattr(bt.BaseTrainer, "_robovlms_mobile_original_from_checkpoint")]
        print(json.dumps({"before": before, "after": after}))
    """)
    result = last_json_line(run_python(code, env={"ROBOVLMS_MOBILE_AUTOLOAD": "0"}).stdout)
    assert result == {"before": [False, False], "after": [True, True]}


def test_broken_plugin_does_not_break_upstream(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[robovlms.plugins]\nbroken = broken_plugin:register\n")
    (tmp_path / "broken_plugin.py").write_text("def register():\n    raise RuntimeError('boom')\n")
    code = "import warnings, json\nwith warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n    import robovlms.data\nprint(json.dumps({'ours': hasattr(robovlms.data, 'MobileVLAH5Dataset'), 'warned': [str(x.message) for x in w if 'broken' in str(x.message)]}))"
    result = last_json_line(run_python(code, env={"PYTHONPATH": str(tmp_path)}).stdout)
    assert result["ours"] and "boom" in result["warned"][0]
