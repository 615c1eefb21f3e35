"""Zero-shot evaluation on VQA-RAD, SLAKE and PathVQA.

- `metrics`: the LLaVA-Med-compatible open recall / closed accuracy (quirks included) and stricter metrics.
- `benchmarks`: loaders for the shared JSONL layout, the original release files, Hugging Face parquet
  folders and a generic JSONL/CSV; split sizes checked against the official counts.
- `answerers`: any model behind one `answer(images, prompts)` call — our checkpoints, Hugging Face
  image-text-to-text models, OpenAI-compatible chat endpoints.
- `runner`: the protocol (fixed prompt templates, greedy, batched, resumable predictions JSONL).
- `scoring`: predictions JSONL -> per-benchmark figures and breakdowns, without any model.
- `report`: Markdown table beside published baselines, JSON with every figure and setting, PNG chart,
  training-data contamination check.
"""
