"""Data: loading medical images (DICOM, NIfTI, 16-bit and odd colour modes) safely, and de-identifying DICOM."""

# The environment variable naming the data root: the folder holding the data sets (vqa-rad/, slake/, pathvqa/,
# captions-sample/, LLaVA-Med's files). `eval` / `score` read the official benchmarks under it, the shipped
# training recipes their data (`data_root: $LLAMA3MED_DATA_ROOT`).
DATA_ROOT_ENV = "LLAMA3MED_DATA_ROOT"
