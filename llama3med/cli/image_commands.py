"""`llama3med inspect-image` and `llama3med anonymize`: see how a medical image is loaded; de-identify DICOM."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from llama3med.cli.common import fail
from llama3med.io.image_safety import ImageLimits

KEY_BYTES = 32
DEFAULT_LIMITS = ImageLimits()


def inspect_image(
    path: Annotated[
        Path, typer.Argument(help="Image file: DICOM, NIfTI (.nii/.nii.gz), PNG, JPEG, TIFF, BMP or WebP.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the loaded RGB image as PNG (default: <file name>.inspect.png in the current folder).",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="Intensity window: lung, mediastinum, bone, brain, abdomen, minmax, or CENTER,WIDTH."
        ),
    ] = None,
    frame: Annotated[
        int | None, typer.Option(min=0, help="DICOM frame, 4-D NIfTI volume, or page of a multi-page image.")
    ] = None,
    slice_index: Annotated[
        int | None, typer.Option("--slice", min=0, help="NIfTI slice index (default: the middle one).")
    ] = None,
    slice_axis: Annotated[
        int, typer.Option(min=-3, max=2, help="NIfTI spatial axis to slice along (-1: the third).")
    ] = -1,
    montage: Annotated[
        int | None,
        typer.Option(min=1, help="Tile this many evenly spaced NIfTI slices or DICOM frames into one image."),
    ] = None,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images (or montages) with more pixels.")
    ] = DEFAULT_LIMITS.max_pixels,
    max_bytes: Annotated[
        int, typer.Option(min=1, help="Refuse files larger than this many bytes.")
    ] = DEFAULT_LIMITS.max_bytes,
) -> None:
    """Load an image exactly as training, evaluation and serving do, write the result as PNG, and say what was done.

    Prints the format, sizes, frame or slice and the window used; never a patient identifier.
    """
    from llama3med.io.images import IMAGE_INFO_KEY, ImageLoadError, load_image

    defaults = ImageLimits()
    limits = ImageLimits(
        max_pixels=max_pixels or defaults.max_pixels,
        max_bytes=max_bytes or defaults.max_bytes,
        max_voxels=defaults.max_voxels,
    )
    try:
        image = load_image(
            path,
            window=window,
            frame=frame,
            slice_index=slice_index,
            slice_axis=slice_axis,
            montage=montage,
            limits=limits,
        )
    except ImageLoadError as error:
        raise fail(str(error)) from None
    target = out if out is not None else Path(_output_name(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="PNG")
    for key, value in image.info[IMAGE_INFO_KEY].items():
        if value is not None and value != "":
            typer.echo(f"{key}: {value}")
    typer.echo(f"output: {target} ({image.width} x {image.height}, {image.mode})")


def _output_name(path: Path) -> str:
    """`<name without suffix>.inspect.png`: never the source's own name, even when run in its folder."""
    stem = path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem
    return f"{stem}.inspect.png"


def anonymize(
    src: Annotated[
        Path,
        typer.Argument(
            help="Folder of DICOM files (searched recursively; links and non-regular files skipped)."
        ),
    ],
    dst: Annotated[Path, typer.Argument(help="Output folder: <study UID>/<series UID>/<instance UID>.dcm.")],
    keep_uids: Annotated[
        bool,
        typer.Option(
            help="Keep every original UID (study, series, instance, frame of reference, and the references between "
            "files) instead of keyed pseudonyms (PS3.15 Retain UIDs Option); everything else is still removed."
        ),
    ] = False,
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="Secret key for pseudonyms, created if missing: the same key gives the same pseudonyms and lets a rerun "
            "skip files already written. Keep it away from the shared data.",
            show_default="a fresh random key",
        ),
    ] = None,
) -> None:
    """Write de-identified copies of a DICOM folder (PS3.15 Annex E basic profile; see docs/IMAGES.md).

    Never stops on one file: links, FIFOs, devices, unreadable, corrupt and non-DICOM entries are skipped and
    listed with the reason; a rerun with the same --key-file resumes.
    """
    from llama3med.io.anonymize import anonymize_dicom_folder

    key = _load_or_create_key(key_file) if key_file is not None else None
    try:
        report = anonymize_dicom_folder(src, dst, keep_uids=keep_uids, key=key)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    for path, reason in report.skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    for path in report.burned_in:
        typer.echo(
            f"warning: {path} is flagged BurnedInAnnotation=YES: its pixels may show identifiers", err=True
        )
    typer.echo(report.summary())


def _load_or_create_key(path: Path) -> bytes:
    """The key in `path` (hex text), or a new random one written there readable by the owner only."""
    if path.exists():
        try:
            return bytes.fromhex(path.read_text().strip())
        except ValueError:
            raise typer.BadParameter(
                f"{path}: not a hex key written by `llama3med anonymize`", param_hint="--key-file"
            ) from None
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


def register(app: typer.Typer) -> None:
    """Add `inspect-image` and `anonymize` to the CLI."""
    app.command("inspect-image")(inspect_image)
    app.command("anonymize")(anonymize)
