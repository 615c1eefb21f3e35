"""Writers for hostile medical files, built at test time and small on disk: decompression bombs (deflated
DICOM, RLE DICOM, gzip NIfTI, PNG text and image chunks, TIFF strips), malformed headers, unsupported
datatypes, objects the anonymizer must survive (no SOP Class UID, 300-digit UIDs) and non-regular files.

A bomb's inflated size is reached by repeating one deflate segment: after a full flush a deflate block
refers to nothing before it, so `n` copies of the segment that compresses 1 MiB of zeros, then a final
empty block, inflate to `n` MiB. A 4 GiB bomb is about 4 MB and takes milliseconds to build.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from medical_files import ct_dataset, png_chunk, write_dicom  # tests/ is on sys.path (root conftest)
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import CTImageStorage, DeflatedExplicitVRLittleEndian, RLELossless

MiB = 1024 * 1024
ZERO_SEGMENT_BYTES = MiB


def _zero_segment() -> tuple[bytes, bytes]:
    """(the raw deflate bytes of 1 MiB of zeros ending in a full flush, a final empty block)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = compressor.compress(bytes(ZERO_SEGMENT_BYTES)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return segment, compressor.flush(zlib.Z_FINISH)


def raw_deflate(prefix: bytes, zero_mib: int) -> bytes:
    """A raw deflate stream (no zlib/gzip wrapper) of `prefix` followed by `zero_mib` MiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment, final = _zero_segment()
    return head + segment * zero_mib + final


def gzip_bytes(prefix: bytes, zero_mib: int) -> bytes:
    """A gzip member holding `prefix` then `zero_mib` MiB of zeros, with a correct CRC-32 and size."""
    crc = zlib.crc32(prefix)
    zeros = bytes(ZERO_SEGMENT_BYTES)
    for _ in range(zero_mib):
        crc = zlib.crc32(zeros, crc)
    size = (len(prefix) + zero_mib * ZERO_SEGMENT_BYTES) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + raw_deflate(prefix, zero_mib) + struct.pack("<II", crc & 0xFFFFFFFF, size)


def _meta_bytes(syntax: str, sop_class: str = CTImageStorage, instance: str = "1.2.3.4") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + buffer.getvalue()


def _dataset_bytes(ds: Dataset) -> bytes:
    """`ds` encoded explicit VR little endian, without file meta."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def deflated_dicom(path: Path, ds: Dataset, trailing_zero_mib: int = 0) -> Path:
    """`ds` stored as Deflated Explicit VR Little Endian; with `trailing_zero_mib`, a DataSetTrailingPadding
    (FFFC,FFFC) element of that many MiB of zeros follows the pixel data: a well-formed bomb."""
    body = _dataset_bytes(ds)
    if trailing_zero_mib:
        body += struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, trailing_zero_mib * ZERO_SEGMENT_BYTES)
    path.write_bytes(_meta_bytes(DeflatedExplicitVRLittleEndian) + raw_deflate(body, trailing_zero_mib))
    return path


def deflated_dicom_declaring(path: Path, rows: int, columns: int, frames: int, zero_mib: int) -> Path:
    """A deflated DICOM whose header declares `frames` x `rows` x `columns` 16-bit pixels and whose pixel
    data element holds `zero_mib` MiB of zeros: a bomb that the declared size does not stop."""
    ds = ct_dataset(np.zeros((2, 2)))
    del ds.PixelData
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    body = _dataset_bytes(ds) + struct.pack(
        "<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, zero_mib * ZERO_SEGMENT_BYTES
    )
    path.write_bytes(_meta_bytes(DeflatedExplicitVRLittleEndian) + raw_deflate(body, zero_mib))
    return path


def rle_dicom_bomb(path: Path, rows: int = 64, columns: int = 64, encoded_mib: int = 4) -> Path:
    """An RLE Lossless DICOM (one 8-bit frame of `rows` x `columns`) whose one segment is `encoded_mib` MiB
    of replicate runs: each 2 bytes decode to 128, so it decodes to 64 times its size."""
    ds = ct_dataset(np.zeros((rows, columns)))
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.file_meta.TransferSyntaxUID = RLELossless
    segment = b"\x81\x00" * (encoded_mib * MiB // 2)  # header byte 0x81: repeat the next byte 128 times
    ds.PixelData = encapsulate([struct.pack("<16I", 1, 64, *([0] * 14)) + segment])  # RLE header: 1 segment
    ds["PixelData"].VR = "OB"
    write_dicom(path, ds)
    return path


def truncated_dicom(path: Path, cut: int = 400) -> Path:
    """A CT file cut `cut` bytes in: inside the header, before the pixel data."""
    buffer = io.BytesIO()
    ct_dataset(np.zeros((8, 8))).save_as(buffer, enforce_file_format=True)
    path.write_bytes(buffer.getvalue()[:cut])
    return path


def bare_dicom_bytes(ds: Dataset) -> bytes:
    """`ds` without preamble, "DICM" or file meta: an explicit VR little endian dataset as old archives hold."""
    return _dataset_bytes(ds)


def nifti_header(
    shape: tuple[int, ...],
    *,
    datatype: int = 4,
    bitpix: int = 16,
    vox_offset: float = 352.0,
    extension: bool = False,
    sizeof_hdr: int = 348,
) -> bytes:
    """A NIfTI-1 single-file header (348 bytes) and its 4-byte extension flag, little endian."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, sizeof_hdr)
    dims = [len(shape), *shape] + [1] * (7 - len(shape))
    struct.pack_into("<8h", header, 40, *dims)
    struct.pack_into("<hh", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, *([1.0] * 7))  # pixdim
    struct.pack_into("<f", header, 108, vox_offset)
    struct.pack_into("<ff", header, 112, 1.0, 0.0)  # scl_slope, scl_inter
    header[344:348] = b"n+1\x00"
    return bytes(header) + (b"\x01\x00\x00\x00" if extension else b"\x00\x00\x00\x00")


def nifti_extension_bomb(path: Path, extension_mib: int) -> Path:
    """A .nii.gz whose header extension (code 6, comment) is `extension_mib` MiB of zeros before 8x8x4 voxels."""
    extension_bytes = extension_mib * MiB
    header = nifti_header((8, 8, 4), vox_offset=352 + extension_bytes, extension=True)
    extension_head = struct.pack("<ii", extension_bytes, 6)
    # The zeros run past the extension into the voxel data: all of it one zero stream.
    path.write_bytes(gzip_bytes(header + extension_head, extension_mib))
    return path


def nifti_voxel_bomb(path: Path, shape: tuple[int, int, int], datatype: int = 16, bitpix: int = 32) -> Path:
    """A .nii.gz declaring `shape` voxels (float32 by default), all zeros: small on disk, large to inflate."""
    voxel_bytes = int(np.prod(shape)) * bitpix // 8
    zero_mib = -(-voxel_bytes // MiB)
    path.write_bytes(gzip_bytes(nifti_header(shape, datatype=datatype, bitpix=bitpix), zero_mib))
    return path


def nifti_rgb24(path: Path) -> Path:
    """A valid NIfTI-1 of datatype RGB24 (code 128): 4 x 4 x 2 voxels of 3 bytes."""
    path.write_bytes(nifti_header((4, 4, 2), datatype=128, bitpix=24) + bytes(range(96)))
    return path


def nifti_unknown_datatype(path: Path) -> Path:
    """A NIfTI-1 whose datatype code (999) is not in the standard."""
    path.write_bytes(nifti_header((4, 4, 2), datatype=999, bitpix=16) + bytes(64))
    return path


def nifti_corrupt_header(path: Path) -> Path:
    """A NIfTI-1 with the "n+1" magic whose dim[0] is 9 (at most 7 is valid)."""
    header = bytearray(nifti_header((4, 4, 2)))
    struct.pack_into("<h", header, 40, 9)
    path.write_bytes(bytes(header) + bytes(64))
    return path


def png_text_bomb(path: Path, text_mib: int = 64) -> Path:
    """A 4 x 4 PNG with a zTXt chunk that inflates to `text_mib` MiB (Pillow's cap per chunk is 1 MiB)."""
    image = io.BytesIO()
    Image.new("L", (4, 4), 7).save(image, format="PNG")
    data = image.getvalue()
    compressed = zlib.compress(bytes(text_mib * MiB), 9)
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + compressed)
    split = 8 + 25  # signature + IHDR: put the text chunk before the image data
    path.write_bytes(data[:split] + ztxt + data[split:])
    return path


def png_idat_bomb(path: Path, zero_mib: int = 1024) -> Path:
    """A PNG declaring 64 x 64 8-bit gray whose IDAT inflates to `zero_mib` MiB: the excess past the
    declared 64 x 65 bytes must never be inflated."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0))
    zlib_stream = b"\x78\xda" + raw_deflate(b"", zero_mib) + struct.pack(">I", 1)  # adler32 not checked first
    idat = png_chunk(b"IDAT", zlib_stream)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + idat + png_chunk(b"IEND", b""))
    return path


def tiff_strip_bomb(path: Path, zero_mib: int = 1024) -> Path:
    """A deflate-compressed 64 x 64 8-bit TIFF whose one strip inflates to `zero_mib` MiB."""
    Image.new("L", (64, 64), 0).save(path, format="TIFF", compression="tiff_adobe_deflate")
    data = bytearray(path.read_bytes())
    bomb = b"\x78\xda" + raw_deflate(b"", zero_mib) + struct.pack(">I", 1)
    # Append the bomb at the end and point the strip at it (offset and byte count tags are LONG).
    new_offset = len(data)
    data += bomb
    _patch_tiff_tag(data, 273, new_offset)
    _patch_tiff_tag(data, 279, len(bomb))
    path.write_bytes(bytes(data))
    return path


def _patch_tiff_tag(data: bytearray, tag: int, value: int) -> None:
    """Set a single-valued SHORT/LONG tag of the first IFD of a little-endian TIFF."""
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        entry_tag, kind = struct.unpack_from("<HH", data, entry)
        if entry_tag == tag:
            struct.pack_into("<HHII", data, entry, tag, 4, 1, value)  # LONG, one value
            return
    raise ValueError(f"tag {tag} not in the first IFD")


def dicom_without_sop_class(path: Path, instance_uid: str) -> Path:
    """A CT image with identifiers but no SOP Class UID in the dataset or the file meta."""
    ds = ct_dataset(np.arange(16, dtype=np.int16).reshape(4, 4), instance_uid=instance_uid)
    del ds.SOPClassUID
    del ds.file_meta.MediaStorageSOPClassUID
    ds.save_as(path, enforce_file_format=False)
    return path


def long_uid(digits: int = 300) -> str:
    """A UID of `digits` digits (valid characters, far past DICOM's 64-character limit)."""
    return "1.2." + "9" * (digits - 4)


def fifo(path: Path) -> Path:
    """A named pipe: opening it for reading blocks until a writer comes, which none ever will."""
    os.mkfifo(path)
    return path
