"""The ground floor: reading medical images safely (DICOM, NIfTI, 16-bit and odd colour modes), de-identifying
DICOM, JSONL files and atomic file writes. Imports nothing else from llama3med."""
