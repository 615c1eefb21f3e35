"""Biomedical instruction-data generation (the paper's first contribution).

Turns image–caption records (caption, optional in-text mentions and case context) into LLaVA-format
training conversations by asking text-only LLMs — Claude through the Anthropic Messages API, Llama-3-70B
or any model behind an OpenAI-compatible server — what a person looking at the image would ask and
answer. The LLM never sees the image.

Modules, one concern each:

- `records`: read and validate the input caption JSONL.
- `prompting` + `prompts/*.yaml`: editable prompt files per kind (conversation, detailed description,
  short closed QA, short open QA) with few-shot examples; builds the chat request for one record.
- `generators`: generator specs (`anthropic:MODEL`, `openai:MODEL@URL`, YAML file) and the weighted,
  seeded choice of a generator per record.
- `backends`: the official `anthropic` and `openai` SDKs behind one `complete()` call; errors mapped to
  retryable or fatal.
- `retry`: asyncio retries with exponential backoff, jitter and retry-after.
- `batches`: Anthropic Message Batches for bulk jobs, resumable by batch id.
- `store`: append-only JSONL outputs keyed by (record id, generator, kind); crash-safe resume.
- `validate` + `dedup`: parse, reject with a reason (empty, malformed, source leak, too long,
  truncated, exact and near duplicates).
- `pricing` + `prices.yaml`: token prices users can edit; cost estimates from usage fields.
- `generate`: the job (bounded concurrency, progress bar, usage and cost per generator).
- `stats`: the report over an output folder.
"""
