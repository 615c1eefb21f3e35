"""The training manifest: which images a model was trained on, so that an evaluation can tell whether its
results are zero-shot (docs/EVALUATION.md, "Zero-shot label and contamination").

Training writes `MANIFEST_FILE` beside the saved model, one JSON object per distinct training image:
`{"source", "image", "image_sha256", "data_file"}`, where `image_sha256` is the hex sha256 of the image file's
bytes (null for a text-only example). Evaluation reads every file matching `MANIFEST_GLOB` in the model folder,
so a folder may also hold one manifest per training stage (`training_manifest.stage1.jsonl`).
"""

from __future__ import annotations

MANIFEST_FILE = "training_manifest.jsonl"
MANIFEST_GLOB = MANIFEST_FILE.replace(".jsonl", "*.jsonl")
