"""Data: loading medical images (DICOM, NIfTI, 16-bit and odd colour modes) safely, and de-identifying DICOM."""
