"""DICOM -> 8-bit pixels: frame selection, rescale (HU), VOI window, MONOCHROME1 inversion, colour.

Privacy: nothing here reads or reports patient-identifying attributes. Errors raised while parsing the
header name only the exception type; errors raised while decoding pixel data (which reads only the
Image Pixel module) keep pydicom's message, which describes sizes and encodings.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.pixels import pixel_array as decode_pixel_array
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from llama3med.io.image_safety import ImageLimits, ImageLoadError, MiB
from llama3med.io.intensity import (
    MINMAX,
    Window,
    apply_window,
    chosen_indices,
    minmax_window,
    montage_grid,
    tile_montage,
)

PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DICOM_MAGIC_OFFSET = 128
FILE_META_GROUP = 0x0002

# Bounded inflation of Deflated Explicit VR Little Endian datasets.
INFLATE_CHUNK = 1 * MiB  # compressed bytes read, and inflated bytes produced, per step
HEADER_PROBE_BYTES = 64 * 1024  # first look for the declared image size once this much is inflated...
HEADER_PROBE_LIMIT = 64 * MiB  # ...then at every doubling up to here (a header is never this large)
TRAILING_ELEMENTS_ALLOWANCE = 4 * MiB  # elements after the pixel data: padding, signatures
MAX_SEQUENCE_DEPTH = 32

# Element headers read while inflating (explicit VR little endian, PS3.5 section 7.1.2).
LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM_TAG, ITEM_DELIMITER_TAG, SEQUENCE_DELIMITER_TAG = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # FloatPixelData, DoubleFloatPixelData, PixelData
SAMPLES_TAG, FRAMES_TAG, ROWS_TAG, COLUMNS_TAG, BITS_ALLOCATED_TAG = (
    0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100,
)  # fmt: skip
PIXEL_ATTRIBUTE_TAGS = (SAMPLES_TAG, FRAMES_TAG, ROWS_TAG, COLUMNS_TAG, BITS_ALLOCATED_TAG)


def is_dicom_header(head: bytes) -> bool:
    """True when the first bytes of a file carry the DICOM Part 10 "DICM" marker at offset 128."""
    return head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


def read_dicom_pixels(
    file: str | os.PathLike | IO[bytes],
    label: str,
    *,
    window: Window | str | None,
    frame: int | None,
    montage: int | None,
    limits: ImageLimits,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One frame (default: the middle one) or a montage of frames -> ([H, W] or [H, W, 3] uint8, description)."""
    ds = read_dicom_dataset(file, label, limits)
    with _attribute_failures_reported(label):
        if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
            sop_class = ds.get("SOPClassUID")
            kind = f" (SOP class: {UID(sop_class).name})" if sop_class else ""
            raise ImageLoadError(label, f"no pixel data: this DICOM file holds no image{kind}")
        if not ds.get("Rows") or not ds.get("Columns"):
            raise ImageLoadError(label, "corrupt DICOM image: pixel data without Rows/Columns attributes")
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        limits.check_pixels(
            label, columns, rows
        )  # the encoded frames are bounded by max_bytes; one is decoded at a time
        _check_decoder(ds, label)
        indices = chosen_indices(frame, montage, frames, label, unit="frame", holder="the file")
        grid_rows, grid_columns = montage_grid(len(indices))
        limits.check_pixels(label, columns * grid_columns, rows * grid_rows)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        decoded = [_decode_frame(ds, index, label) for index in indices]
        info: dict[str, Any] = {
            "format": "DICOM",
            "modality": str(ds.get("Modality", "")),
            "transfer_syntax": ds.file_meta.TransferSyntaxUID.name,
            "photometric": photometric,
            "size": (columns, rows),
            "frames": frames,
            "frame": indices[0] if len(indices) == 1 else indices,
            "window": None,
        }
        if decoded[0].ndim == 3 or photometric == "PALETTE COLOR":  # colour: display values, no window
            tiles = [_colour_to_uint8(ds, pixels, photometric) for pixels in decoded]
            return (tiles[0] if len(tiles) == 1 else _tile_colour(tiles)), info
        values = [_modality_values(ds, pixels, index) for pixels, index in zip(decoded, indices)]
        used = _choose_window(ds, window, values, indices[0])
        if isinstance(used, int):  # the file's VOI LUT table, applied per frame, output depth `used` bits
            scale = Window((2**used - 1) / 2, 2**used - 1, "file VOI LUT")
            tiles = [apply_window(apply_voi(np.rint(v).astype(np.int64), ds), scale) for v in values]
            info["window"] = scale.label
        else:
            tiles = [apply_window(v, used) for v in values]
            info["window"] = used.describe()
        gray = tiles[0] if len(tiles) == 1 else tile_montage(tiles)
        if photometric == "MONOCHROME1":  # low values are white: invert after windowing
            gray = 255 - gray
        return gray, info


@contextmanager
def _attribute_failures_reported(label: str) -> Iterator[None]:
    """Malformed attribute values fail on access, in many ways: any failure but an `ImageLoadError` becomes one,
    naming only the exception type (a message may quote values)."""
    try:
        yield
    except ImageLoadError:
        raise
    except Exception as error:
        raise ImageLoadError(
            label, f"corrupt or unsupported DICOM image attributes ({type(error).__name__})"
        ) from None


def read_dicom_dataset(file: str | os.PathLike | IO[bytes], label: str, limits: ImageLimits) -> Dataset:
    """Parse a DICOM file (Part 10, or a bare dataset without the preamble) without trusting its sizes.

    A deflated dataset is inflated in bounded steps (`_inflate_dataset`) instead of pydicom's one-shot
    `zlib.decompress`; a file that ends inside an element is a corrupt header, not an object without
    pixels. Raises `ImageLoadError` naming only exception types: pydicom's messages may quote values.
    """
    if isinstance(file, str | os.PathLike):
        with open(file, "rb") as handle:
            return read_dicom_dataset(handle, label, limits)
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    try:
        preamble = read_preamble(file, force=True)
        meta = read_dataset(file, is_implicit_VR=False, is_little_endian=True, stop_when=_past_file_meta)
        syntax = meta.get("TransferSyntaxUID")
    except Exception:  # not parseable as file meta: pydicom's own reader decides below
        preamble, meta, syntax = None, Dataset(), None
    if syntax == DeflatedExplicitVRLittleEndian:
        return _read_deflated(file, preamble, meta, label, limits)
    file.seek(0)
    try:
        ds = pydicom.dcmread(file)
    except InvalidDicomError:
        ds = _read_without_preamble(file, label)
    except Exception as error:  # a hostile header can fail anywhere in the parser
        raise ImageLoadError(label, f"corrupt DICOM header ({type(error).__name__})") from None
    else:
        if len(ds.file_meta) == 0:  # "DICM" followed by garbage still parses, as one meaningless element
            raise ImageLoadError(
                label, "corrupt DICOM header: no file meta information after the 'DICM' marker"
            )
    data_start = _end_of(meta) or (DICOM_MAGIC_OFFSET + 4 if preamble else 0)
    _check_complete(ds, data_start, size, label)
    if "TransferSyntaxUID" not in ds.file_meta:
        # Files without a meta header: pydicom worked out the encoding while reading.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return ds


def _past_file_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag >> 16 != FILE_META_GROUP


def _end_of(dataset: Dataset) -> int | None:
    """The file offset just past the last element `dataset` read, when its length is defined."""
    tags = list(dataset.keys())
    if not tags:
        return None
    element = dataset.get_item(tags[-1])  # still the raw element: its offset and length as read
    length, start = getattr(element, "length", None), getattr(element, "value_tell", None)
    if length is None or start is None or length == UNDEFINED_LENGTH:
        return None
    return int(start) + int(length)


def _check_complete(ds: Dataset, data_start: int, size: int, label: str) -> None:
    """A dataset without pixel data whose elements stop short of the end of the data was cut inside an
    element: pydicom keeps the elements before the cut silently, which would read as "no pixel data"."""
    if any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        return
    end = _end_of(ds) if len(ds) else data_start
    if end is not None and end != size:
        raise ImageLoadError(
            label,
            f"corrupt DICOM header: the data ends inside an element (at byte {size}; a truncated file?)",
        )


def _read_deflated(
    file: IO[bytes], preamble: bytes | None, meta: Dataset, label: str, limits: ImageLimits
) -> Dataset:
    """A Deflated Explicit VR Little Endian file: the file meta as stored, the dataset inflated with a cap."""
    inflated = _inflate_dataset(file, label, limits)
    try:
        dataset = read_dataset(inflated, is_implicit_VR=False, is_little_endian=True)
    except Exception as error:
        raise ImageLoadError(label, f"corrupt DICOM header ({type(error).__name__})") from None
    _check_complete(dataset, 0, inflated.getbuffer().nbytes, label)
    inflated.close()  # the values were copied out: free the inflated copy now
    ds = FileDataset(
        label, dataset, preamble, FileMetaDataset(meta), is_implicit_VR=False, is_little_endian=True
    )
    ds.set_original_encoding(False, True, dataset.get("SpecificCharacterSet"))
    return ds


def _inflate_dataset(file: IO[bytes], label: str, limits: ImageLimits) -> io.BytesIO:
    """Inflate the raw-deflate stream from `file`'s position, `INFLATE_CHUNK` output bytes at a time.

    Refused once the output passes `limits.max_decompressed_bytes`, or, as soon as the inflated header
    reaches the pixel data element, the size that header declares (`_declared_dataset_end`).
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    output = io.BytesIO()
    cap, declared, probe_at = limits.max_decompressed_bytes, None, HEADER_PROBE_BYTES
    while not inflater.eof:
        compressed = inflater.unconsumed_tail or file.read(INFLATE_CHUNK)
        try:
            piece = inflater.decompress(compressed, INFLATE_CHUNK) if compressed else inflater.flush()
        except zlib.error as error:
            raise ImageLoadError(label, f"corrupt deflated DICOM dataset (zlib: {error})") from None
        if not compressed and not inflater.eof:
            raise ImageLoadError(label, "corrupt deflated DICOM dataset: the compressed stream ends early")
        output.write(piece)
        if output.tell() > cap:
            if declared is not None and declared <= limits.max_decompressed_bytes:
                raise ImageLoadError(
                    label,
                    f"the deflated DICOM dataset inflates past the {declared} bytes its header declares "
                    "(header, Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames of pixel data, "
                    "trailing elements): a decompression bomb",
                )
            raise limits.decompression_error(label, "the deflated DICOM dataset")
        if probe_at is not None and output.tell() >= probe_at:
            declared = _declared_dataset_end(output.getbuffer())
            if declared is not None:
                cap, probe_at = min(cap, declared), None
            else:
                probe_at = probe_at * 2 if probe_at < HEADER_PROBE_LIMIT else None
    output.seek(0)
    return output


def _declared_dataset_end(data: memoryview) -> int | None:
    """The size an explicit VR little endian dataset declares: where its pixel data element starts, plus
    the pixel bytes its Image Pixel attributes declare, plus `TRAILING_ELEMENTS_ALLOWANCE`.

    None while `data` does not yet reach the pixel data element, or when the header cannot be followed
    (then only `max_decompressed_bytes` applies). Only element headers are read, never pydicom's parser.
    """
    try:
        found = _walk_elements(data, 0, depth=0)
    except (struct.error, IndexError, ValueError):
        return None
    if not isinstance(found, tuple):
        return None
    pixel_position, values = found
    try:
        rows, columns = values[ROWS_TAG], values[COLUMNS_TAG]
        samples, bits = values.get(SAMPLES_TAG, 1), values.get(BITS_ALLOCATED_TAG, 16)
        frames = values.get(FRAMES_TAG, 1)
    except KeyError:
        return None
    pixel_bytes = (rows * columns * samples * frames * bits + 7) // 8
    return pixel_position + 12 + pixel_bytes + 1 + TRAILING_ELEMENTS_ALLOWANCE


def _walk_elements(
    data: memoryview, position: int, *, depth: int, item_end: bool = False
) -> tuple[int, dict[int, int]] | int | None:
    """Walk explicit VR little endian elements from `position`.

    At the top level: (offset of the pixel data element, the Image Pixel values read) once it is reached.
    Inside an undefined-length item (`item_end`): the offset just past the item delimiter. None when
    `data` ends first or the encoding cannot be followed.
    """
    if depth > MAX_SEQUENCE_DEPTH:
        return None
    values: dict[int, int] = {}
    while position + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, position)
        tag = group << 16 | element
        if item_end and tag == ITEM_DELIMITER_TAG:
            return position + 8
        if depth == 0 and tag in PIXEL_DATA_TAGS:
            return position, values
        vr = bytes(data[position + 4 : position + 6])
        if vr in LONG_LENGTH_VRS:
            if position + 12 > len(data):
                return None
            (length,) = struct.unpack_from("<I", data, position + 8)
            start = position + 12
        elif vr.isalpha() and vr.isupper():
            (length,) = struct.unpack_from("<H", data, position + 6)
            start = position + 8
        else:
            return None  # not explicit VR: cannot be followed
        if length == UNDEFINED_LENGTH:
            if vr != b"SQ":
                return None  # an undefined-length UN holds implicit VR items
            end = _skip_sequence_items(data, start, depth + 1)
            if end is None:
                return None
            position = end
            continue
        if start + length > len(data):
            return None
        if depth == 0 and tag in PIXEL_ATTRIBUTE_TAGS:
            raw = bytes(data[start : start + length])
            values[tag] = (
                int(raw.decode("ascii").strip("\x00 ") or 0)
                if tag == FRAMES_TAG
                else struct.unpack("<H", raw[:2])[0]
            )
        position = start + length
    return None


def _skip_sequence_items(data: memoryview, position: int, depth: int) -> int | None:
    """The offset just past the delimiter of an undefined-length sequence whose items start at `position`."""
    while position + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, position)
        tag = group << 16 | element
        position += 8
        if tag == SEQUENCE_DELIMITER_TAG:
            return position
        if tag != ITEM_TAG:
            return None
        if length != UNDEFINED_LENGTH:
            position += length
            continue
        end = _walk_elements(data, position, depth=depth, item_end=True)
        if not isinstance(end, int):
            return None
        position = end
    return None


def _read_without_preamble(file: IO[bytes], label: str) -> Dataset:
    """Old files lack the 128-byte preamble and "DICM": accept them if they parse to an object or an image."""
    file.seek(0)
    try:
        ds = pydicom.dcmread(file, force=True)
        if "SOPClassUID" in ds or any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
            return ds
    except Exception:  # whatever the parser makes of it, the answer is the same
        pass
    raise ImageLoadError(
        label, "not a DICOM file: no 'DICM' marker at byte 128 and no readable DICOM dataset"
    )


def looks_like_bare_dicom(head: bytes) -> bool:
    """True when `head` may start a DICOM dataset stored without the preamble: its first element, read
    little endian, is in an even group from the file meta (0002) to Image Pixel (0028), where every
    dataset starts. No other supported format starts so: PNG, JPEG, TIFF, BMP, GIF, WebP, gzip, NIfTI-1
    and NIfTI-2 headers read as groups 5089, D8FF, 4949/4D4D, 4D42, 4947, 4952, 8B1F, 015C and 021C.
    """
    if len(head) < 8:
        return False
    group, element = struct.unpack_from("<HH", head)
    return group % 2 == 0 and FILE_META_GROUP <= group <= 0x0028 and element < 0x1000


def _check_decoder(ds: Dataset, label: str) -> None:
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageLoadError(
            label, f"transfer syntax {syntax} ({syntax.name}) is not supported by pydicom"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise ImageLoadError(
            label,
            f"no installed decoder for transfer syntax {syntax} ({syntax.name}); pydicom's plugins need: {missing}",
        )


def _decode_frame(ds: Dataset, index: int, label: str) -> np.ndarray:
    if ds.file_meta.TransferSyntaxUID == RLELossless:
        _check_rle_frame(ds, index, label)
    try:
        return decode_pixel_array(ds, index=index)  # [rows, columns] or [rows, columns, samples]; YBR -> RGB
    except Exception as error:  # decoders raise many types on truncated/corrupt data
        message = " ".join(line.strip() for line in str(error).splitlines())[:400]
        syntax = ds.file_meta.TransferSyntaxUID
        raise ImageLoadError(
            label,
            f"pixel data could not be decoded (transfer syntax {syntax.name}; {type(error).__name__}: {message})",
        ) from None


def _check_rle_frame(ds: Dataset, index: int, label: str) -> None:
    """Refuse an RLE frame whose segments decode to more than Rows x Columns bytes each, before decoding:
    a replicate run turns 2 bytes into 128, and pydicom's decoder grows its output without a bound."""
    try:
        frame = get_frame(ds.PixelData, index, number_of_frames=int(ds.get("NumberOfFrames") or 1))
        count, *offsets = struct.unpack_from("<16I", frame)
    except Exception:  # a malformed encapsulation: the decoder reports it
        return
    expected = int(ds.Rows) * int(ds.Columns)
    ends = [*offsets[1:count], len(frame)]
    for segment, (start, end) in enumerate(zip(offsets[:count], ends)):
        if _rle_decoded_length(memoryview(frame)[start:end], expected + 1) > expected + 1:  # + 1: padding
            raise ImageLoadError(
                label,
                f"RLE segment {segment} of frame {index} decodes to more than the {expected} bytes "
                "Rows x Columns declare: a decompression bomb",
            )


def _rle_decoded_length(segment: memoryview, limit: int) -> int:
    """The decoded length of one RLE segment (PS3.5 annex G.3.1), counting stopped once past `limit`."""
    position, decoded = 0, 0
    while position < len(segment) and decoded <= limit:
        header = segment[position]
        if header < 128:  # a literal run of header + 1 bytes
            decoded += header + 1
            position += header + 2
        elif header > 128:  # one byte repeated 257 - header times
            decoded += 257 - header
            position += 2
        else:  # 128: no operation
            position += 1
    return decoded


def _functional_group_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The first item of `sequence` for frame `index` in an enhanced multi-frame file (per-frame, then shared)."""
    for groups, position in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(groups)
        if items and position < len(items) and items[position].get(sequence):
            return items[position].get(sequence)[0]
    return None


def _modality_values(ds: Dataset, pixels: np.ndarray, index: int) -> np.ndarray:
    """Stored values -> modality values (Hounsfield units for CT) via rescale slope/intercept or LUT."""
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    item = _functional_group_item(ds, index, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item:
        return pixels.astype(np.float64) * float(item.RescaleSlope) + float(item.get("RescaleIntercept", 0.0))
    return pixels.astype(np.float64)


def _choose_window(
    ds: Dataset, window: Window | str | None, values: list[np.ndarray], index: int
) -> Window | int:
    """Explicit window > the file's window > the file's VOI LUT (returned as its bit depth) > min-max."""
    if isinstance(window, Window):
        return window
    if window != MINMAX:
        source = ds if "WindowCenter" in ds else _functional_group_item(ds, index, "FrameVOILUTSequence")
        if source is not None and "WindowCenter" in source and "WindowWidth" in source:
            center, width = _first_value(source.WindowCenter), _first_value(source.WindowWidth)
            if width > 0:
                return Window(center, width, "file")
        if ds.get("VOILUTSequence"):
            return int(ds.VOILUTSequence[0].LUTDescriptor[2])
    return minmax_window(np.concatenate([v.ravel() for v in values]))


def _first_value(value: Any) -> float:
    """Window centre/width may be multi-valued (several windows): the first is the default one."""
    return float(value[0]) if isinstance(value, list | tuple | MultiValue) else float(value)


def _colour_to_uint8(ds: Dataset, pixels: np.ndarray, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)  # [H, W, 3] uint8 or uint16 by the LUT's depth
        bits = 16 if pixels.dtype == np.uint16 else 8
    else:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    pixels = pixels[..., :3]
    if bits == 8 and pixels.dtype == np.uint8:
        return pixels
    return np.rint(np.clip(pixels.astype(np.float64) / (2**bits - 1), 0.0, 1.0) * 255.0).astype(np.uint8)


def _tile_colour(tiles: list[np.ndarray]) -> np.ndarray:
    return np.stack([tile_montage([tile[..., c] for tile in tiles]) for c in range(3)], axis=-1)
