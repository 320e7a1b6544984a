"""The `engine` command as a user meets it: answers, JSON output, and one clear line for bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.engine.tiny_gguf import tiny_reference_model, write_tiny_gguf

pytest.importorskip("transformers")


@pytest.fixture
def tiny_gguf(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(tiny_reference_model(), path, "Q8_0")
    return path


def run_engine(*args: str, env_cache: Path | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_cache is not None:
        env["ENGINE_CACHE"] = str(env_cache)
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env)


def test_generate_answers_a_simple_question_with_the_embedded_model(default_model_path, capsys):
    assert main(["generate", "What is the capital of France?", "--max-new-tokens", "16", "--device", "cpu"]) == 0
    assert "Paris" in capsys.readouterr().out


def test_generate_json_reports_counts(default_model_path, capsys):
    assert main(["generate", "Say hello.", "--json", "--max-new-tokens", "8", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"text", "prompt_tokens", "new_tokens", "seconds"}
    assert 1 <= result["new_tokens"] <= 8 and result["prompt_tokens"] > 5 and result["text"].strip()


def _with_tensor_type(source: Path, target: Path, tensor: str, type_id: int) -> Path:
    data = bytearray(source.read_bytes())
    name = tensor.encode()
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    dims = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at + 4 + 8 * dims, type_id)
    target.write_bytes(data)
    return target


def bad_models(tmp_path: Path, tiny: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny.read_bytes()[: tiny.stat().st_size // 2])
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just some text, not a model at all\n" * 3)
    bert = tmp_path / "bert.gguf"
    write_tiny_gguf(tiny_reference_model(), bert, architecture="bert")
    unknown_pre = tmp_path / "pre.gguf"
    write_tiny_gguf(tiny_reference_model(), unknown_pre, pre_tokenizer="made-up-bpe")
    return {
        "missing": (tmp_path / "absent.gguf", "model not found"),
        "truncated": (truncated, "truncated or damaged"),
        "not a gguf": (not_gguf, "not a GGUF file"),
        "not llama": (bert, "not a Llama-family model"),
        "unknown quantisation": (_with_tensor_type(tiny, tmp_path / "q99.gguf", "blk.0.attn_q.weight", 99),
                                 "unknown quantisation type 99"),
        "unknown pre-tokenizer": (unknown_pre, "pre-tokenizer 'made-up-bpe'"),
    }


@pytest.mark.parametrize("case", ["missing", "truncated", "not a gguf", "not llama", "unknown quantisation",
                                  "unknown pre-tokenizer"])
def test_bad_model_file_gives_one_line_and_exit_2(tmp_path, tiny_gguf, case):
    path, expected = bad_models(tmp_path, tiny_gguf)[case]
    result = run_engine("generate", "hello", "--model", str(path), env_cache=tmp_path / "cache")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and path.name in lines[0]


def test_empty_prompt_is_refused(tiny_gguf):
    result = run_engine("generate", "   ", "--model", str(tiny_gguf))
    assert result.returncode == 2 and "prompt is empty" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("option, expected", [(["--auth", "alice:s3cret"], "a password on the command line"),
                                              (["--auth"], "ENGINE_CHAT_AUTH"),
                                              (["--auth-file", "{shared}"], "readable by other users"),
                                              (["--auth-file", "{private}"], "USER:PASS"),
                                              (["--max-upload-mb", "0"], "--max-upload-mb")])
def test_chat_refuses_bad_options_before_serving_anything(tmp_path, monkeypatch, option, expected):
    monkeypatch.delenv("ENGINE_CHAT_AUTH", raising=False)
    shared, private = tmp_path / "shared-login", tmp_path / "private-login"
    shared.write_text("alice:s3cret\n")
    shared.chmod(0o644)
    private.write_text("alice-without-a-password\n")
    private.chmod(0o600)
    option = [part.format(shared=shared, private=private) for part in option]
    result = run_engine("chat", "--store", str(tmp_path / "store"), *option)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == "" and not (tmp_path / "store").exists()


def test_unknown_device_is_refused(tiny_gguf):
    result = run_engine("generate", "hi", "--model", str(tiny_gguf), "--device", "tpu")
    assert result.returncode == 2 and "device" in result.stderr and "Traceback" not in result.stderr


def test_selftest_passkey_reports_each_trial_and_whether_the_needle_was_read(default_model_path, capsys):
    assert main(["selftest", "passkey", "--lengths", "1k", "--trials", "2", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    [row] = report["lengths"]
    assert row["length"] == 1024 and row["trials"] == 2
    assert [trial["depth"] for trial in report["trials"]] == [0.25, 0.75]
    for trial in report["trials"]:
        assert trial["needle_read"] is True  # four 64-token blocks of a 1k haystack, the full-text path finds it
        assert trial["baseline_passed"] is not None  # 1k fits the model's own context: the baseline runs
    assert row["retrieved"] == 1.0
    assert row["accuracy"] == sum(trial["passed"] for trial in report["trials"]) / 2


def test_selftest_refuses_a_length_it_cannot_build(capsys):
    assert main(["selftest", "passkey", "--lengths", "12q", "--device", "cpu"]) == 2
    assert "--lengths" in capsys.readouterr().err
