"""A DICOM with a patient name and id through `ask`, `predict`, `eval` and the HTTP server: the identifiers
appear in no output file, log line or HTTP response (each searched)."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from medical_files import PATIENT_ID, PATIENT_NAME, ct_dataset, no_pixel_dataset, write_dicom
from serve.serve_helpers import (
    free_port,
    stop_process,
    wait_for_http,
)  # tests/ is on sys.path (root conftest)
from typer.testing import CliRunner

from llama3med.cli.main import app

pytestmark = pytest.mark.timeout(300)

IDENTIFIERS = (PATIENT_NAME, PATIENT_ID, "Jane", "19700101")


def assert_no_identifiers(text: str | bytes, where: str) -> None:
    content = text.decode("latin-1") if isinstance(text, bytes) else text
    for identifier in IDENTIFIERS:
        assert identifier not in content, f"{identifier!r} found in {where}"


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CT slice and an image-less object, both carrying the patient's name, id and birth date."""
    folder = tmp_path_factory.mktemp("scans")
    hu = (np.arange(48 * 40).reshape(48, 40) % 1400) - 1000
    return {
        "good": write_dicom(folder / "scan.dcm", ct_dataset(hu)),
        "bad": write_dicom(folder / "report.dcm", no_pixel_dataset()),
    }


def run(arguments: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, arguments)
    return result.exit_code, result.output


def test_ask_predict_and_eval_outputs_and_logs(
    scans: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = ["--model", str(tiny_model_dir), "--max-new-tokens", "4"]
    with caplog.at_level(logging.DEBUG):
        code, output = run(["ask", str(scans["good"]), "What is shown?", *model, "--window", "lung"])
        assert code == 0, output
        assert_no_identifiers(output, "ask output")
        code, output = run(["ask", str(scans["bad"]), "What is shown?", *model])
        assert code == 1 and "no pixel data" in output
        assert_no_identifiers(output, "ask error")

        questions = tmp_path / "questions.jsonl"
        rows = [{"id": "q1", "image": scans["good"].name, "question": "Which organ?", "answer": "lung"}]
        questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
        absolute = tmp_path / "questions-absolute.jsonl"
        absolute.write_text(json.dumps({**rows[0], "image": str(scans["good"])}) + "\n")
        answers = tmp_path / "answers.jsonl"
        code, output = run(["predict", "--input", str(absolute), "--out", str(answers), *model])
        assert code == 0, output
        assert len(answers.read_text().splitlines()) == 1
        assert_no_identifiers(output + answers.read_text(), "predict output")

        (scans["good"].parent / questions.name).write_text(questions.read_text())
        report = tmp_path / "eval"
        code, output = run(
            ["eval", "--benchmarks", str(scans["good"].parent / questions.name), "--out", str(report), *model]
        )
        assert code == 0, output
        assert_no_identifiers(output, "eval output")
        written = [path for path in report.rglob("*") if path.is_file()]
        assert any(path.suffix == ".jsonl" for path in written)
        for path in written:
            assert_no_identifiers(path.read_bytes(), str(path))
    assert_no_identifiers(caplog.text, "log records")


@pytest.fixture(scope="module")
def server_with_log(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`llama3med serve` on a free local port, logging at debug level to a file."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama3med",
        "serve",
        "--model",
        str(tiny_model_dir),
        "--port",
        str(port),
    ]
    command += ["--model-name", "tiny", "--log-level", "debug"]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base_url}/health", process, log)
    yield base_url, log
    stop_process(process)


def test_server_responses_and_log(scans: dict[str, Path], server_with_log: tuple[str, Path]) -> None:
    import openai

    base_url, log = server_with_log
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)

    def ask(path: Path):
        url = "data:application/dicom;base64," + base64.b64encode(path.read_bytes()).decode()
        content = [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What is shown?"},
        ]
        return client.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": content}], max_tokens=4
        )

    answered = ask(scans["good"])
    assert answered.http_response.status_code == 200
    assert_no_identifiers(answered.http_response.text, "HTTP response")
    with pytest.raises(openai.BadRequestError) as refused:
        ask(scans["bad"])
    assert "no pixel data" in refused.value.response.text
    assert_no_identifiers(refused.value.response.text, "HTTP error response")
    logged = log.read_text()
    assert "POST /v1/chat/completions" in logged  # the access log saw both requests
    assert_no_identifiers(logged, "server log")
