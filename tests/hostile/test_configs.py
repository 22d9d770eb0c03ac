"""Hostile configs (issue 11): each case through the real CLI in a subprocess with a timeout.

Every refusal is exit code 2 and exactly one stderr line naming the file and the key, with no
traceback; nothing hangs (FIFO, /dev/zero), nothing outside the run is deleted, written or run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds per CLI run (a hang fails the case, it does not stall the suite)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`robovlms-mobile ARGS` in a fresh interpreter (warnings as a user sees them)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "robovlms_mobile.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


def cli_slow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`robovlms-mobile ARGS` that trains (minutes on a shared CPU)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "robovlms_mobile.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


BATCH = r"""
import contextlib, io, json, sys, traceback
from robovlms_mobile.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            rc = "uncaught"
            traceback.print_exc()
    out.append({"returncode": rc, "stderr": err.getvalue()})
print(json.dumps(out))
"""


def cli_batch(argvs: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Many `robovlms-mobile ARGS` runs through the real CLI entry point in one fresh interpreter (no hang risk here)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-c", BATCH, json.dumps(argvs)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT * 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [subprocess.CompletedProcess(a, r["returncode"], "", r["stderr"]) for a, r in zip(argvs, json.loads(proc.stdout.splitlines()[-1]))]


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def base() -> dict:
    """The tiny CPU config, parents merged, as one self-contained file."""
    from robovlms_mobile.config import load_config

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        cfg = load_config("configs/tiny_cpu.json")
    finally:
        os.chdir(cwd)
    cfg.pop("parent")
    return cfg


def write(tmp_path: Path, cfg: dict | str | bytes, name: str = "hostile.json") -> Path:
    path = tmp_path / name
    if isinstance(cfg, dict):
        path.write_text(json.dumps(cfg))
    elif isinstance(cfg, str):
        path.write_text(cfg)
    else:
        path.write_bytes(cfg)
    return path


# ---- files ---------------------------------------------------------------------------------------------

def test_parent_cycle(tmp_path):
    write(tmp_path, {"parent": str(tmp_path / "b.json")}, "a.json")
    write(tmp_path, {"parent": str(tmp_path / "a.json")}, "b.json")
    assert_one_line_error(cli("train", "a.json", cwd=tmp_path), "key 'parent'", "makes a cycle", "expected a chain that ends")


def test_parent_is_itself(tmp_path):
    path = write(tmp_path, {"parent": "self.json"}, "self.json")
    assert_one_line_error(cli("config", "check", str(path), cwd=tmp_path), "self.json: key 'parent'", "cycle")


def test_parent_fifo_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    path = write(tmp_path, {"parent": str(tmp_path / "pipe.json")})
    assert_one_line_error(cli("train", str(path), cwd=tmp_path), "hostile.json: key 'parent'", "pipe.json", "not a regular file")


def test_config_itself_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    assert_one_line_error(cli("config", "check", str(tmp_path / "pipe.json"), cwd=tmp_path), "pipe.json", "not a regular file")


def test_parent_dev_zero(tmp_path):
    path = write(tmp_path, {"parent": "/dev/zero"})
    assert_one_line_error(cli("train", str(path), cwd=tmp_path), "key 'parent'", "/dev/zero", "not a regular file")


def test_config_is_a_folder(tmp_path):
    (tmp_path / "dir.json").mkdir()
    assert_one_line_error(cli("train", "dir.json", cwd=tmp_path), "dir.json", "not a regular file")


def test_config_too_large(tmp_path):
    path = write(tmp_path, '{"pad": "' + "x" * (2 << 20) + '"}')
    assert_one_line_error(cli("config", "check", str(path), cwd=tmp_path), "hostile.json", "bytes; expected a JSON file")


def test_missing_config(tmp_path):
    assert_one_line_error(cli("train", "nowhere.json", cwd=tmp_path), "nowhere.json", "does not exist")


NOT_CONFIGS = [
    ("not_json", "{not json", "invalid JSON"),
    ("empty", "", "invalid JSON"),
    ("top_level_list", "[1, 2]", "top level is a JSON list; expected an object"),
    ("5000_digit_integer", '{"a": ' + "9" * 5000 + "}", "invalid JSON"),
    ("deeply_nested", "[" * 100000 + "]" * 100000, "nested too deeply"),
    ("not_utf8", b"\xff\xfe{}", "not UTF-8 text"),
    # issue 21: nesting json accepts but the merge would recurse into, keys json would keep the last of
    ("nested_600_objects", '{"a": ' + '{"b": ' * 600 + "1" + "}" * 601, "nested more than 32 levels deep"),
    ("nested_600_lists", '{"a": ' + "[" * 600 + "]" * 600 + "}", "nested more than 32 levels deep"),
    ("duplicate_top_key", '{"batch_size": 4, "batch_size": 400}', "key 'batch_size' appears twice in one object"),
    ("duplicate_nested_key", '{"trainer": {"max_epochs": 1, "max_epochs": 1000}}', "key 'max_epochs' appears twice"),
    ("duplicate_1mb_key", '{"' + "k" * 500_000 + '": 1, "' + "k" * 500_000 + '": 2}', "(500000 characters) appears twice"),
]


@pytest.fixture(scope="module")
def not_config_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("not_configs")
    argvs = [["train", str(write(d, text, f"{name}.json"))] for name, text, _ in NOT_CONFIGS]
    return dict(zip([n for n, _, _ in NOT_CONFIGS], cli_batch(argvs, d)))


@pytest.mark.parametrize("name,needle", [(n, x) for n, _, x in NOT_CONFIGS], ids=[n for n, _, _ in NOT_CONFIGS])
def test_not_a_config(not_config_runs, name, needle):
    line = assert_one_line_error(not_config_runs[name], f"{name}.json", needle)
    assert len(line) < MAX_LINE, line[:2000]


def test_duplicate_key_in_a_parent_names_the_parent(base, tmp_path):
    parent = write(tmp_path, '{"seed": 1, "seed": 2}', "parent.json")
    child = write(tmp_path, {**base, "parent": str(parent)}, "child.json")
    assert_one_line_error(cli("train", str(child), cwd=tmp_path), "child.json: key 'parent'", "key 'seed' appears twice")


# ---- values ----------------------------------------------------------------------------------------------

def _set(cfg: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value
    return cfg


VALUES = [
    ("batch_size_string", "batch_size", "4", "'batch_size' = '4': expected a positive integer"),
    ("batch_size_bool", "batch_size", True, "'batch_size' = True: expected a positive integer"),
    ("batch_size_zero", "batch_size", 0, "'batch_size' = 0: expected a positive integer"),
    ("val_ratio_5", "train_dataset.val_ratio", 5, "'train_dataset.val_ratio' = 5: expected a finite number > 0 and < 1"),
    ("val_ratio_0", "val_dataset.val_ratio", 0, "'val_dataset.val_ratio' = 0: expected a finite number > 0"),
    ("lora_r_0", "train_setup.lora_r", 0, "'train_setup.lora_r' = 0: expected a positive integer"),
    ("num_workers_negative", "num_workers", -1, "'num_workers' = -1: expected an integer >= 0"),
    ("window_zero", "window_size", 0, "'window_size' = 0: expected a positive integer"),
    ("window_negative", "window_size", -5, "'window_size' = -5: expected a positive integer"),
    ("chunk_zero", "fwd_pred_next_n", 0, "'fwd_pred_next_n' = 0: expected a positive integer"),
    ("act_head_window_negative", "act_head.window_size", -1, "'act_head.window_size' = -1: expected a positive integer"),
    ("learning_rate_negative", "learning_rate", -1e-4, "'learning_rate' = -0.0001: expected a finite number > 0"),
    ("lora_dropout_1", "train_setup.lora_dropout", 1.0, "'train_setup.lora_dropout' = 1.0"),
    ("unknown_top_key", "learning_rte", 1e-3, "unknown key 'learning_rte' (did you mean 'learning_rate'?)"),
    ("unknown_dataset_key", "train_dataset.max_sped", 1.0, "unknown key 'train_dataset.max_sped'"),
    ("exp_name_escapes", "exp_name", "../../outside", "'exp_name' = '../../outside': expected a plain name"),
    ("tokenizer_extra_key", "tokenizer.subfolder", "x", "unknown key 'tokenizer.subfolder'"),
    ("tokenizer_type_not_a_class", "tokenizer.type", "os", "'tokenizer.type' = 'os': expected one of 'AutoProcessor'"),
    ("vlm_type_not_a_class", "vlm.type", "AutoModel", "'vlm.type' = 'AutoModel': expected one of 'AutoModelForVision2Seq'"),
    ("trainer_callbacks", "trainer.callbacks", [], "'trainer.callbacks' is set by the launcher"),
    ("trainer_unknown", "trainer.max_epoch", 3, "unknown key 'trainer.max_epoch' (did you mean 'max_epochs'?)"),
    ("precision_unknown", "trainer.precision", "8-bit", "'trainer.precision' = '8-bit': expected one of"),
    ("train_is_validation", "train_dataset.is_validation", True, "'train_dataset.is_validation' = true: would use the val split"),
    ("norm_min_over_max", "norm_min", 2.0, "'norm_min' = 2.0 and 'norm_max' = 1.0: expected norm_min < norm_max"),
    ("rgb_pad_too_large", "train_dataset.rgb_pad", 200, "'train_dataset.rgb_pad' = 200"),
    ("fwd_head_set", "fwd_head", {"type": "x"}, "'fwd_head' = {'type': 'x'}: expected null"),
    ("parent_not_a_string", "parent", 5, "key 'parent' = 5: expected a file name or null"),
    # issue 21: a value or key of a megabyte is echoed clipped, with its length
    ("exp_name_1mb", "exp_name", "x" * 1_000_000, "'exp_name' = 'xxxxxxxxxx"),
    ("precision_1mb", "trainer.precision", "y" * 1_000_000, "(1000000 characters): expected one of"),
    ("unknown_key_1mb", "z" * 1_000_000, 1, "unknown key 'zzzzzzzzzz"),
    ("parent_1mb", "parent", "p" * 1_000_000, "key 'parent': 'pppppppppp"),
]
MAX_LINE = 1000  # characters: no refusal echoes a value in full


NON_FINITE = ["Infinity", "-Infinity", "NaN"]


@pytest.fixture(scope="module")
def value_runs(base, tmp_path_factory):
    """Every bad-value case through `robovlms-mobile train` (one interpreter for all: none of them can hang)."""
    d = tmp_path_factory.mktemp("values")
    argvs = []
    for name, key, value, _ in VALUES:
        cfg = _set(json.loads(json.dumps(base)), key, value)
        if key == "norm_min":
            cfg["norm_max"] = 1.0
        argvs.append(["train", str(write(d, cfg, f"{name}.json"))])
    for literal in NON_FINITE:
        text = json.dumps(base).replace('"max_speed": 1.15', f'"max_speed": {literal}', 1)
        argvs.append(["train", str(write(d, text, f"max_speed_{literal}.json"))])
    names = [v[0] for v in VALUES] + [f"max_speed_{x}" for x in NON_FINITE]
    return dict(zip(names, cli_batch(argvs, d)))


@pytest.mark.parametrize("name,needle", [(v[0], v[3]) for v in VALUES], ids=[v[0] for v in VALUES])
def test_bad_value(value_runs, name, needle):
    line = assert_one_line_error(value_runs[name], f"{name}.json", needle)
    assert len(line) < MAX_LINE, line[:2000]


@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_max_speed(value_runs, literal):
    assert_one_line_error(value_runs[f"max_speed_{literal}"], "key 'train_dataset.max_speed'", "expected a finite number")


def test_bad_value_through_a_fresh_process(base, tmp_path):
    path = write(tmp_path, {**base, "batch_size": "4"})
    assert_one_line_error(cli("train", str(path), cwd=tmp_path), "hostile.json", "'batch_size' = '4': expected a positive integer")


def test_num_workers_zero_is_fixed_up_with_a_notice(base, tmp_path):
    path = write(tmp_path, {**base, "num_workers": 0})
    proc = cli("config", "check", str(path), cwd=tmp_path)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    assert "notice: 'num_workers' = 0 -> 1" in proc.stdout


# ---- paths never decide what is deleted, written or run ------------------------------------------------------

def test_tokenizer_path_at_a_plain_folder_is_refused_and_kept(base, tmp_path):
    folder = tmp_path / "my_documents"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    cfg = json.loads(json.dumps(base))
    cfg["tokenizer"]["pretrained_model_name_or_path"] = cfg["vlm"]["pretrained_model_name_or_path"] = str(folder)
    path = write(tmp_path, cfg)
    assert_one_line_error(cli("train", str(path), cwd=tmp_path), "'vlm.pretrained_model_name_or_path'", "no config.json")
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"] and (folder / "keep.txt").read_text() == "precious"


def test_model_url_is_never_run(base, tmp_path):
    marker = tmp_path / "PWNED"
    cfg = {**json.loads(json.dumps(base)), "model_url": f"https://x; touch {marker}", "model_path": str(tmp_path / "missing")}
    path = write(tmp_path, cfg)
    proc = cli("train", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / ".vlms").exists()


def test_gpu_accelerator_without_a_gpu(base, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    cfg = json.loads(json.dumps(base))
    cfg["trainer"]["accelerator"] = "gpu"
    path = write(tmp_path, cfg)
    assert_one_line_error(cli("train", str(path), cwd=tmp_path), "'trainer.accelerator' = 'gpu': no GPU is visible here")


def test_output_dir_at_an_existing_folder_is_written_into_not_emptied_in_process(tiny_config, tmp_path, capsys):
    """The fast version of the slow CLI test below: `cli.main(["train", ...])` in this process, the same parser and run."""
    from robovlms_mobile.cli import main

    folder = tmp_path / "my_folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep")
    (folder / "sub" / "data.bin").write_bytes(b"\0" * 10)
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    path = write(tmp_path, {**tiny_config, "output_root": str(folder)})
    assert main(["train", str(path), "--output-dir", str(folder), "--max-steps", "1", "--no-progress"]) == 0, capsys.readouterr().err[-2000:]
    after = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    assert set(before) <= after and (folder / "notes.txt").read_text() == "keep" and (folder / "last.ckpt").is_file()
    assert (folder / "sub" / "data.bin").read_bytes() == b"\0" * 10


@pytest.mark.slow
def test_output_dir_at_an_existing_folder_is_written_into_not_emptied(tiny_config, tmp_path):
    folder = tmp_path / "my_folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep")
    (folder / "sub" / "data.bin").write_bytes(b"\0" * 10)
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    cfg = {**tiny_config, "output_root": str(folder)}
    path = write(tmp_path, cfg)
    proc = cli_slow("train", str(path), "--output-dir", str(folder), "--max-steps", "1", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    assert set(before) <= after and (folder / "notes.txt").read_text() == "keep" and (folder / "last.ckpt").is_file()
