"""Contract (e): each patch in patches/ verified against the pinned transformers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import transformers

from helpers import last_json_line, run_python

CHECK_KOSMOS2 = r"""
import hashlib, importlib.util, json, sys
import torch, transformers
from transformers import AutoModelForVision2Seq
from transformers.models.kosmos2 import modeling_kosmos2 as stock
sys.path.insert(0, sys.argv[2])
from patches import kosmos2_inputs_embeds as patch

model = AutoModelForVision2Seq.from_pretrained(sys.argv[1]).eval()
embeds = torch.randn(2, 12, model.config.text_config.embed_dim)
mask = torch.ones(2, 12, dtype=torch.long)
pixels = torch.randn(2, 3, 224, 224)
ids = torch.randint(4, 100, (2, 80))
pos_mask = torch.zeros(2, 80, dtype=torch.bool); pos_mask[:, 1:65] = True
result = {}
try:
    model(inputs_embeds=embeds, attention_mask=mask)
    result["stock_rejects"] = False
except ValueError as exc:
    result["stock_rejects"] = "pixel_values" in str(exc)
with torch.no_grad():
    before = model(pixel_values=pixels, input_ids=ids, image_embeds_position_mask=pos_mask).logits
    result["first_apply"] = patch.apply(stock)
    result["second_apply"] = patch.apply(stock)
    out = model(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
    direct = model.text_model(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
    result["matches_text_model"] = torch.equal(out.hidden_states[-1], direct.hidden_states[-1])
    result["tuple_ok"] = torch.equal(model(inputs_embeds=embeds, attention_mask=mask, return_dict=False)[0], out.logits)
    after = model(pixel_values=pixels, input_ids=ids, image_embeds_position_mask=pos_mask).logits
    result["pixel_path_unchanged"] = torch.equal(before, after)

    # upstream main.py's copied file (tools/modeling_kosmos2.py), loaded beside the stock one
    name = "transformers.models.kosmos2.upstream_modeling_kosmos2"
    spec = importlib.util.spec_from_file_location(name, sys.argv[3] + "/tools/modeling_kosmos2.py")
    upstream = importlib.util.module_from_spec(spec); sys.modules[name] = upstream; spec.loader.exec_module(upstream)
    result["upstream_copy_detected"] = patch.upstream_copy_installed(upstream) and not patch.upstream_copy_installed(stock)
    up_model = upstream.Kosmos2ForConditionalGeneration(model.config).eval()
    up_model.load_state_dict(model.state_dict())
    plain = up_model(inputs_embeds=embeds, attention_mask=mask).logits
    result["apply_on_upstream_copy"] = patch.apply(upstream)
    result["harmless_on_upstream_copy"] = torch.equal(up_model(inputs_embeds=embeds, attention_mask=mask).logits, plain)
    result["same_as_upstream_copy"] = torch.allclose(plain, out.logits, atol=1e-6)
print(json.dumps(result))
"""


def _installed_modeling_hash() -> str:
    from transformers.models.kosmos2 import modeling_kosmos2

    return hashlib.sha256(open(modeling_kosmos2.__file__, "rb").read()).hexdigest()


def test_kosmos2_inputs_embeds_patch(tiny_model_dir, upstream_dir):
    from robovlms_mobile.patches import kosmos2_inputs_embeds

    assert transformers.__version__ in kosmos2_inputs_embeds.VERIFIED_TRANSFORMERS
    before = _installed_modeling_hash()
    repo = str(Path(__file__).resolve().parents[1])
    result = last_json_line(run_python(CHECK_KOSMOS2, str(tiny_model_dir), repo, str(upstream_dir),
                                       env={"ROBOVLMS_MOBILE_AUTOLOAD": "0"}).stdout)
    assert result == {
        "stock_rejects": True, "first_apply": True, "second_apply": False, "matches_text_model": True,
        "tuple_ok": True, "pixel_path_unchanged": True, "upstream_copy_detected": True,
        "apply_on_upstream_copy": True, "harmless_on_upstream_copy": True, "same_as_upstream_copy": True,
    }
    assert _installed_modeling_hash() == before, "the patch must never write into site-packages"


def test_patch_applied_when_kosmos2_is_imported():
    code = (
        "import robovlms\nfrom transformers.models.kosmos2 import modeling_kosmos2 as m\n"
        "from robovlms_mobile.patches import kosmos2_inputs_embeds as p\nprint(p.is_applied(m))"
    )
    assert run_python(code).stdout.strip().endswith("True")
