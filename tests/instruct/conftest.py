"""Fixtures for the instruction-data tests: caption records and the scripted wire server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .wire_server import WireServer

API_KEY = "sk-test-5f1e9c"

# Distinct findings so that replies built from them are not near duplicates of each other.
CAPTIONS = [
    "Axial contrast CT shows a 4 cm hypodense lesion in hepatic segment VII with peripheral nodular enhancement.",
    "Frontal chest radiograph with a large right pneumothorax and a visible visceral pleural line.",
    "Sagittal T2 MRI of the lumbar spine demonstrates an L4-L5 disc extrusion compressing the thecal sac.",
    "Non-contrast head CT reveals a crescentic hyperdense subdural hematoma over the left convexity.",
    "Coronal T1 post-gadolinium image depicts an enhancing vestibular schwannoma at the right cerebellopontine angle.",
    "Ultrasound of the gallbladder shows multiple mobile echogenic stones casting posterior acoustic shadows.",
    "H&E section at x200 displays sheets of clear cells within a delicate capillary network of renal origin.",
    "Mammogram craniocaudal view presents a spiculated mass in the upper outer quadrant of the left breast.",
    "Axial FLAIR sequence highlights periventricular ovoid white matter plaques perpendicular to the ventricles.",
    "Abdominal radiograph demonstrates dilated small bowel loops with air-fluid levels suggesting obstruction.",
    "Knee MRI proton density image exposes a vertical tear through the posterior horn of the medial meniscus.",
    "Fundus photograph exhibits flame hemorrhages and cotton wool spots scattered around the optic disc.",
]


def caption_records(count: int) -> list[dict[str, object]]:
    """`count` records tagged [r00], [r01], ... (the wire server's script refers to the tags)."""
    records = []
    for index in range(count):
        record: dict[str, object] = {
            "id": f"case-{index:02d}",
            "image": f"images/case-{index:02d}.png",
            "caption": f"[r{index:02d}] {CAPTIONS[index % len(CAPTIONS)]}",
        }
        if index % 3 == 1:
            record["mentions"] = [f"The finding is shown in Figure {index}."]
        if index % 3 == 2:
            record["context"] = f"Patient {index} presented to the emergency department."
        records.append(record)
    return records


@pytest.fixture
def write_records(tmp_path: Path) -> Callable[[int], Path]:
    """Write `count` caption records to a JSONL file and return its path."""

    def write(count: int) -> Path:
        path = tmp_path / "captions.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in caption_records(count)), encoding="utf-8")
        return path

    return write


@pytest.fixture
def api_keys(monkeypatch: pytest.MonkeyPatch) -> str:
    """Both providers' key variables set to the key the wire server accepts."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    return API_KEY


@pytest.fixture
def wire_server() -> Iterator[Callable[..., WireServer]]:
    """Factory: `wire_server(script={...}, retry_after="0.2", ...)` starts a server (stopped after the test)."""
    servers: list[WireServer] = []

    def start(**settings: object) -> WireServer:
        server = WireServer(api_key=API_KEY, **settings)  # type: ignore[arg-type]
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)
