"""The backbone folder, loaded without running its code and without upstream's tokenizer fallback.

Upstream's `build_vlm` passes `trust_remote_code=True`, and its `build_tokenizer`, when the first
load fails, re-reads with every key of the config's `tokenizer` section and then `shutil.rmtree`s
the tokenizer path before writing a tokenizer there. So whenever the plugin builds a model (training
and every loader), `upstream_builders_guarded()` swaps upstream's `build_vlm` for `build_vlm` here:
the folder must be local, hold `config.json` and no `auto_map` (custom code), and is read with
`local_files_only=True, trust_remote_code=False`; a failure is one line and nothing is written.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CODE_BEARING_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
                      "image_processor_config.json", "generation_config.json")
TOKENIZER_TYPES = ("AutoProcessor", "AutoTokenizer")
VLM_TYPES = ("AutoModelForVision2Seq",)
MAX_JSON_BYTES = 16 * 2**20  # a model folder's JSON files are a few KB; refuse to parse anything huge

_swap_lock = threading.RLock()


class BaseModelError(FileNotFoundError):
    """The frozen backbone folder is missing or unusable (one line naming it)."""


def check_model_folder(path: str | Path | None, *, origin: str = "--base-model-dir") -> Path:
    """A local folder with config.json and no `auto_map` in its JSON files; else BaseModelError."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise BaseModelError(f"base model folder {path!r} ({origin}) is not a path: pass the Kosmos-2 folder the "
                             f"checkpoint was trained on (--base-model-dir)")
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise BaseModelError(f"base model folder {str(folder)!r} ({origin}) has no config.json: pass the Kosmos-2 "
                             f"folder the checkpoint was trained on (--base-model-dir)")
    for name in CODE_BEARING_FILES:
        file = folder / name
        if not file.is_file():
            continue
        if file.stat().st_size > MAX_JSON_BYTES:
            raise BaseModelError(f"{file}: {file.stat().st_size} bytes; expected a small JSON file")
        try:
            meta = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BaseModelError(f"{file}: unreadable ({str(exc).splitlines()[0]})") from None
        if isinstance(meta, dict) and "auto_map" in meta:
            raise BaseModelError(f"{file}: has 'auto_map' (custom model code); refusing to run code from a model folder")
    return folder


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def build_processor(tokenizer_config: dict[str, Any]) -> Any:
    """The processor/tokenizer from the local folder `tokenizer_config` names, no remote code, nothing written."""
    import transformers
    from robovlms.utils.model_utils import update_tokenizer

    kind = tokenizer_config.get("type")
    if kind not in TOKENIZER_TYPES:
        raise BaseModelError(f"tokenizer.type {kind!r}: expected one of {list(TOKENIZER_TYPES)}")
    folder = check_model_folder(tokenizer_config.get("pretrained_model_name_or_path"), origin="tokenizer folder")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # Kosmos-2's processor logs "Special tokens have been added" on every load
    try:
        processor = getattr(transformers, kind).from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - any failure is reported in one line; nothing falls back
        raise BaseModelError(f"base model folder {str(folder)!r}: processor does not load ({_one_line(exc)})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    if kind == "AutoProcessor":
        processor.tokenizer = update_tokenizer(processor.tokenizer, tokenizer_config)
        return processor
    return update_tokenizer(processor, tokenizer_config)


def build_vlm(vlm_config: dict[str, Any], tokenizer_config: dict[str, Any], precision: str = "bf16") -> tuple[Any, Any]:
    """(processor, model) as upstream's `build_vlm` returns them, read from checked local folders only."""
    import transformers

    kind = vlm_config.get("type", "AutoModelForVision2Seq")
    if kind not in VLM_TYPES:
        raise BaseModelError(f"vlm.type {kind!r}: expected one of {list(VLM_TYPES)}")
    folder = check_model_folder(vlm_config.get("pretrained_model_name_or_path"), origin="vlm folder")
    processor = build_processor(tokenizer_config)
    try:
        model = getattr(transformers, kind).from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise BaseModelError(f"base model folder {str(folder)!r}: model does not load ({_one_line(exc)})") from None
    return processor, model


@contextmanager
def upstream_builders_guarded() -> Iterator[None]:
    """While the block runs, upstream's backbones build through `build_vlm` above (not upstream's)."""
    from robovlms.model.backbone import base_backbone

    with _swap_lock:
        original = base_backbone.build_vlm
        base_backbone.build_vlm = build_vlm
        try:
            yield
        finally:
            base_backbone.build_vlm = original


def point_config_at(configs: dict[str, Any], base_model_dir: str | Path) -> dict[str, Any]:
    """A copy of `configs` whose four backbone paths (model, config, vlm, tokenizer) name `base_model_dir`."""
    out = copy.deepcopy(configs)
    path = str(Path(base_model_dir).resolve())
    out["model_path"] = path
    out["model_config"] = str(Path(path) / "config.json")
    out["vlm"]["pretrained_model_name_or_path"] = path
    out["tokenizer"]["pretrained_model_name_or_path"] = path
    return out
