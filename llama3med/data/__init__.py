"""Data: training conversations (readers, the dataset, label masking) and the synthetic fine-detail probe."""

# The environment variable naming the data root: the folder holding the data sets (vqa-rad/, slake/, pathvqa/,
# captions-sample/, LLaVA-Med's files). `eval` / `score` read the official benchmarks under it, the shipped
# training recipes their data (`data_root: $LLAMA3MED_DATA_ROOT`).
DATA_ROOT_ENV = "LLAMA3MED_DATA_ROOT"
