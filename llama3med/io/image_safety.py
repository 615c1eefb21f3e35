"""The image loader's error type and size limits, shared by every format reader and the server."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


class ImageLoadError(ValueError):
    """An image that cannot be loaded: `source` is a safe label (the path, or "<bytes>"), `reason` says why.

    Messages never contain DICOM header values (patient identifiers): only the label and the reason.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class ImageLimits:
    """Upper bounds checked from headers before any pixel data is decoded.

    `max_pixels` bounds one decoded 2-D image (a frame, a slice, or a whole montage); `max_bytes` the
    encoded input; `max_voxels` the voxels a NIfTI header declares; `max_decompressed_bytes` the bytes any
    compressed container (a deflated DICOM dataset, a gzip NIfTI stream, counting re-reads) may inflate to,
    so a small file cannot expand to gigabytes in memory or in decompression time.
    """

    max_pixels: int = 64_000_000
    max_bytes: int = 512 * MiB
    max_voxels: int = 1 << 30
    max_decompressed_bytes: int = 512 * MiB

    def check_bytes(self, source: str, size: int) -> None:
        """Refuse an encoded input larger than `max_bytes`, or an empty one."""
        if size == 0:
            raise ImageLoadError(source, "empty file (0 bytes)")
        if size > self.max_bytes:
            raise ImageLoadError(source, f"{size} bytes exceeds the limit of {self.max_bytes} bytes")

    def check_pixels(self, source: str, width: int, height: int) -> None:
        """Refuse a 2-D image whose header declares more than `max_pixels` (decompression bombs)."""
        if width <= 0 or height <= 0:
            raise ImageLoadError(source, f"invalid image size {width} x {height}")
        if width * height > self.max_pixels:
            raise ImageLoadError(
                source,
                f"image size {width} x {height} = {width * height} pixels exceeds the limit of {self.max_pixels} pixels",
            )

    def check_voxels(self, source: str, shape: tuple[int, ...]) -> None:
        """Refuse a volume or multi-frame file whose header declares more than `max_voxels`."""
        voxels = 1
        for size in shape:
            voxels *= int(size)
        if voxels > self.max_voxels:
            dims = " x ".join(str(int(size)) for size in shape)
            raise ImageLoadError(
                source, f"volume size {dims} = {voxels} voxels exceeds the limit of {self.max_voxels} voxels"
            )

    def decompression_error(self, source: str, what: str) -> ImageLoadError:
        """The refusal of compressed data that inflates past `max_decompressed_bytes`."""
        return ImageLoadError(
            source,
            f"{what} inflates past the limit of {self.max_decompressed_bytes} decompressed bytes "
            "(a decompression bomb, or a file too large for this limit)",
        )
