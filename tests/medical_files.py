"""Writers for the medical image files the data tests build: DICOM (CT, multi-frame, RGB, no pixels),
NIfTI volumes and hand-made PNG headers; a CT test array with its windowed values worked by hand."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "MRN-12345"
PATIENT_STRINGS = (PATIENT_NAME, PATIENT_ID, "Doe", "Jane")

STUDY_UID = "1.2.826.0.1.3680043.8.498.10001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.10002"
HU_OFFSET = 1024  # stored value = HU + 1024 with RescaleIntercept -1024


def dicom_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    sop_class: str = CTImageStorage,
    instance_uid: str = "1.2.826.0.1.3680043.8.498.20001",
    bits_stored: int = 16,
) -> Dataset:
    """A Part 10 dataset with patient identifiers and `pixels` ([R, C], [F, R, C] or [R, C, 3])."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.Modality = "CT" if sop_class == CTImageStorage else "OT"
    ds.set_pixel_data(pixels, photometric, bits_stored, generate_instance_uid=False)
    ds.SOPInstanceUID = instance_uid
    return ds


def ct_dataset(hu: np.ndarray, **kwargs: object) -> Dataset:
    """A CT dataset storing `hu` ([R, C] or [F, R, C] Hounsfield units) as HU + 1024 with a rescale."""
    ds = dicom_dataset((np.asarray(hu) + HU_OFFSET).astype(np.uint16), **kwargs)
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -HU_OFFSET
    return ds


def write_dicom(path: Path, ds: Dataset) -> Path:
    """Save `ds` as a DICOM Part 10 file (preamble, "DICM", file meta)."""
    ds.save_as(path, enforce_file_format=True)
    return path


def rgb_dataset(rgb: np.ndarray) -> Dataset:
    """A secondary-capture RGB dataset ([R, C, 3] uint8)."""
    return dicom_dataset(rgb, photometric="RGB", sop_class=SecondaryCaptureImageStorage, bits_stored=8)


def no_pixel_dataset() -> Dataset:
    """A dataset with identifiers and no pixel data."""
    ds = dicom_dataset(np.zeros((2, 2), dtype=np.uint16))
    del ds.PixelData
    return ds


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save `volume` as .nii or .nii.gz (by the suffix) with `affine` (identity = RAS+)."""
    nib.save(nib.Nifti1Image(volume, np.eye(4) if affine is None else affine), path)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 over type and data."""
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose valid IHDR declares `width` x `height` 8-bit grayscale but whose IDAT holds one row."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    data = png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + header + data + png_chunk(b"IEND", b"")


# Hounsfield units of the test CT and their 8-bit values, worked by hand from 255 * (HU - (C - W/2)) / W.
CT_HU = np.array([[-1024, -850, -160, 20], [80, 140, 400, 1500]])
ABDOMEN_EXPECTED = np.array([[0, 0, 0, 115], [153, 191, 255, 255]])  # C 40, W 400: 0.6375 per HU from -160
LUNG_EXPECTED = np.array([[55, 85, 202, 233], [243, 253, 255, 255]])  # C -600, W 1500: 0.17 per HU from -1350


def gray(image: Image.Image) -> np.ndarray:
    """The single channel of an RGB image whose three channels are equal."""
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return pixels[..., 0]
