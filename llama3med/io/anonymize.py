"""De-identified copies of a DICOM folder by the DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile (see docs/IMAGES.md, "Privacy").

The profile's attribute table (Table E.1-1: tag -> action) is not ours: it is the one the
`dicom-anonymizer` package (Kitware) generates from the standard, edition `ANNEX_E_EDITION`. Its actions
are applied to the file meta and to every nested dataset:
- X (remove), Z (empty), D (replace with a dummy value of the element's VR), U (replace a UID by its
  keyed pseudonym); where the table allows several, X when allowed, else Z, else D; X/Z/U* sequences
  (referenced and source images) are kept and their items cleaned by the same rules, so references
  between de-identified files still resolve;
- PatientID and PatientName: one keyed pseudonym, HMAC-SHA256 of the original PatientID under `key`.
Beyond the table, also removed or emptied everywhere: private elements, the file meta's private
information (0002,0100)/(0002,0102), elements the DICOM data dictionary does not know (their meaning is
unknown), every element of unknown VR (UN), binary values (OB, OD, OF, OL, OV, OW) outside the Image Pixel
groups 0028 and 7FE0, every free text (LT, ST, UT) and AE title; every person name (PN) and date, date-time
or time (DA, DT, TM) is emptied; and every UI value that is not a registered DICOM UID, nor a class or
transfer syntax UID, is pseudonymised as "2.25.<128-bit HMAC>" (the same UID gives the same pseudonym
everywhere) unless `keep_uids`. The preamble is zeroed; PatientIdentityRemoved = "YES", the
De-identification Method (Code Sequence 113100, and 113110 with `keep_uids`) and
LongitudinalTemporalInformationModified = "REMOVED" are set. Pixel data is never altered: files flagged
BurnedInAnnotation = "YES" are listed in the report.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydicom.config import disable_value_validation
from pydicom.datadict import dictionary_has_tag, repeater_has_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID, MediaStorageDirectoryStorage

from llama3med.io.dicom import is_dicom_header, looks_like_bare_dicom, read_dicom_dataset
from llama3med.io.files import atomic_write
from llama3med.io.image_safety import ImageLimits, ImageLoadError

ANNEX_E_EDITION = "dicomfields_2026c"  # dicom-anonymizer's table of the 2026c edition of PS3.15
DEIDENTIFICATION_METHOD = "llama3med anonymize: PS3.15 Annex E basic profile"  # LO: 64 characters at most
PSEUDONYM_PREFIX = "ANON-"
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")  # DICOM UIDs: digits and dots only, so safe as file names
MAX_UID_LENGTH = 64
REPLACED_KEYWORDS = ("PatientID", "PatientName")
EMPTIED_VRS = ("PN", "DA", "DT", "TM")
REMOVED_VRS = ("LT", "ST", "UT", "AE", "UN")
BINARY_VRS = ("OB", "OD", "OF", "OL", "OV", "OW")
PIXEL_GROUPS = (0x0028, 0x7FE0)  # Image Pixel description, LUTs and palettes; the pixel data itself
FILE_META_PRIVATE_TAGS = (0x00020100, 0x00020102)  # PrivateInformationCreatorUID, PrivateInformation
# dicom-anonymizer's categories -> the action applied (see the module docstring for the choice).
CATEGORY_ACTIONS = {
    "X_TAGS": "X", "X_Z_TAGS": "X", "X_D_TAGS": "X", "X_Z_D_TAGS": "X",
    "Z_TAGS": "Z", "Z_D_TAGS": "Z", "D_TAGS": "D", "U_TAGS": "U", "X_Z_U_STAR_TAGS": "U*",
}  # fmt: skip
DUMMY_TEXT = "ANONYMIZED"
DUMMY_VALUES = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000D", "IS": "0", "DS": "0"}
NUMERIC_VRS = ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT")
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_UIDS_CODE = ("113110", "Retain UIDs Option")


@dataclass(frozen=True)
class BasicProfile:
    """Table E.1-1 as actions: `actions` for single tags; `masked` rules (group, element, group mask,
    element mask, action) for the repeating groups (curve data 50xx, overlay data and comments 60xx)."""

    actions: dict[int, str]
    masked: tuple[tuple[int, int, int, int, str], ...]

    def action(self, tag: int) -> str | None:
        """The action for `tag`, or None when the table does not list it."""
        found = self.actions.get(tag)
        if found is not None:
            return found
        group, element = tag >> 16, tag & 0xFFFF
        for rule_group, rule_element, group_mask, element_mask, action in self.masked:
            if group & group_mask == rule_group and element & element_mask == rule_element:
                return action
        return None


@functools.cache
def basic_profile() -> BasicProfile:
    """The basic profile's table from dicom-anonymizer (imported here: only `anonymize` needs it)."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    tables = dicom_anonymization_database_selector(ANNEX_E_EDITION)
    actions: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in CATEGORY_ACTIONS.items():
        for entry in tables[category]:
            if len(entry) == 2:
                actions[entry[0] << 16 | entry[1]] = action
            else:
                masked.append((*entry, action))
    return BasicProfile(actions, tuple(masked))


@dataclass
class AnonymizationReport:
    """What `anonymize_dicom_folder` did. Paths only: no header values."""

    written: list[Path] = field(default_factory=list)
    already_present: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (source entry, reason)
    burned_in: list[Path] = field(default_factory=list)  # outputs whose pixels may show identifiers

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"{len(self.written)} written, {len(self.already_present)} already present, "
            f"{len(self.skipped)} skipped, {len(self.burned_in)} flagged for burned-in annotation"
        )


def anonymize_dicom_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    keep_uids: bool = False,
    key: bytes | None = None,
    limits: ImageLimits | None = None,
) -> AnonymizationReport:
    """Write de-identified copies of every DICOM file under `src` to `dst/<study>/<series>/<instance>.dcm`.

    A batch job that never stops on one entry: links (not followed), FIFOs, devices, sockets, unreadable,
    non-DICOM, corrupt or unwritable files and DICOMDIR indexes are skipped with a reason, and FIFOs are
    never opened. Output names come from the (pseudonymised) UIDs, never from source paths, which often
    hold names; a UID that is not a valid one (over 64 characters, or not digits and dots) is named by its
    SHA-256 instead. `key` makes pseudonyms repeatable across runs, so a rerun with the same key resumes:
    files already written are skipped. Without it a random key is used, consistent within this run only.
    Each output is written to a temporary name, synced, then renamed: never half-written. `limits` bounds
    the inflation of deflated datasets (default `ImageLimits()`).
    """
    source_root, target_root = Path(src).resolve(), Path(dst).resolve()
    if not source_root.is_dir():
        raise ValueError(f"{src}: not a folder")
    if target_root == source_root or source_root in target_root.parents:
        raise ValueError(f"{dst}: the output folder must not be inside the source folder {src}")
    key = key if key is not None else secrets.token_bytes(32)
    limits = limits or ImageLimits()
    report = AnonymizationReport()
    profile = basic_profile()
    for path in _candidate_files(source_root, report):
        _anonymize_file(
            path, target_root, profile, key=key, keep_uids=keep_uids, limits=limits, report=report
        )
    return report


def _candidate_files(root: Path, report: AnonymizationReport) -> list[Path]:
    """Every entry under `root`, sorted; links, unreadable folders and non-regular files go to the report."""

    def unreadable(error: OSError) -> None:
        report.skipped.append(
            (Path(error.filename), f"unreadable folder ({error.strerror or type(error).__name__})")
        )

    found = []
    for folder, subfolders, names in os.walk(root, onerror=unreadable):  # links to folders: not descended
        for name in sorted(subfolders):
            if (Path(folder) / name).is_symlink():
                report.skipped.append((Path(folder) / name, "symbolic link not followed"))
        subfolders.sort()
        for name in sorted(names):
            path = Path(folder) / name
            reason = _not_a_regular_file(path)
            if reason:
                report.skipped.append((path, reason))
            else:
                found.append(path)
    return found


def _not_a_regular_file(path: Path) -> str | None:
    """Why `path` is not read (without opening it: opening a FIFO blocks), or None for a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as error:
        return f"unreadable entry ({error.strerror or type(error).__name__})"
    if stat.S_ISLNK(mode):
        return "symbolic link not followed"
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kind = next(
        (name for test, name in kinds.items() if test(mode)), "a socket" if stat.S_ISSOCK(mode) else ""
    )
    return f"not a regular file ({kind or 'unknown kind'}): not opened"


def _open_regular(path: Path) -> IO[bytes]:
    """Open `path` for reading without blocking or following a link, and check it is still a regular file
    (it may have been replaced since it was listed)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(0, "no longer a regular file")
    return os.fdopen(descriptor, "rb")


def _anonymize_file(
    path: Path,
    target_root: Path,
    profile: BasicProfile,
    *,
    key: bytes,
    keep_uids: bool,
    limits: ImageLimits,
    report: AnonymizationReport,
) -> None:
    # Value validation would quote offending values (names, dates) in warnings: keep it off here.
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with _open_regular(path) as file:
                head = file.read(132)
                if not (is_dicom_header(head) or looks_like_bare_dicom(head)):
                    report.skipped.append((path, "not a DICOM file (no 'DICM' marker, no dataset)"))
                    return
                ds = read_dicom_dataset(file, str(path), limits)
        except OSError as error:
            report.skipped.append((path, f"unreadable file ({error.strerror or type(error).__name__})"))
            return
        except ImageLoadError as error:  # its reasons name sizes and exception types, never values
            report.skipped.append((path, error.reason))
            return
        except Exception as error:  # a corrupt file is reported by type only: messages may quote values
            report.skipped.append((path, f"unreadable DICOM ({type(error).__name__})"))
            return
        reason = _unwritable_reason(ds)
        if reason:
            report.skipped.append((path, reason))
            return
        try:
            anonymize_dataset(ds, key=key, keep_uids=keep_uids, profile=profile)
            names = [
                str(ds.get(k) or "") for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            ]
        except Exception as error:
            report.skipped.append((path, f"could not be de-identified ({type(error).__name__})"))
            return
        if not all(names):
            report.skipped.append((path, "missing study, series or instance UID: no name to write it under"))
            return
        target = target_root / _name_for(names[0]) / _name_for(names[1]) / f"{_name_for(names[2])}.dcm"
        if target.exists():
            report.already_present.append(target)
            return
        try:
            _write_atomically(ds, target)
        except Exception as error:
            report.skipped.append((path, f"could not be written ({type(error).__name__})"))
            return
    report.written.append(target)
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        report.burned_in.append(target)


def _unwritable_reason(ds: Dataset) -> str | None:
    """Why `ds` cannot become a DICOM Part 10 file, after taking the SOP class and instance UIDs from the
    file meta where the dataset lacks them; None when it can."""
    if ds.get("SOPClassUID") == MediaStorageDirectoryStorage:
        return "DICOMDIR index not copied: its file references would be wrong"
    meta = getattr(ds, "file_meta", None) or Dataset()
    for own, stored in (
        ("SOPClassUID", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    ):
        if not ds.get(own) and meta.get(stored):
            setattr(ds, own, meta.get(stored))
    if not ds.get("SOPClassUID"):
        return "no SOP Class UID in the dataset or its file meta: not a DICOM object that can be written"
    return None


def _name_for(uid: str) -> str:
    """A path component for `uid`: the UID itself when valid, else "x" + 160 bits of its SHA-256 in hex."""
    if len(uid) <= MAX_UID_LENGTH and UID_PATTERN.fullmatch(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode()).hexdigest()[:40]


def _write_atomically(ds: Dataset, target: Path) -> None:
    """Write `ds` to `<target>.partial`, sync it, then rename it into place; a rerun overwrites the `.partial`
    file a killed run left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(
        target,
        lambda handle: ds.save_as(handle, enforce_file_format=True),
        sync=True,
        temporary=target.with_name(target.name + ".partial"),
    )


def anonymize_dataset(
    ds: Dataset, *, key: bytes, keep_uids: bool = False, profile: BasicProfile | None = None
) -> None:
    """De-identify `ds` (and its file meta) in place by the rules in this module's docstring."""
    profile = profile or basic_profile()
    original_id = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    pseudonym = PSEUDONYM_PREFIX + _keyed_hash(key, b"patient:" + original_id.encode()).hex()[:16]
    ds.remove_private_tags()  # every nested dataset too
    replaced = {int(ds[keyword].tag) for keyword in REPLACED_KEYWORDS if keyword in ds}

    def clean(dataset: Dataset, element: DataElement) -> None:
        tag, vr = int(element.tag), element.VR
        action = profile.action(tag)
        if tag in replaced and dataset is ds:
            element.value = pseudonym
        elif action == "X" or tag in FILE_META_PRIVATE_TAGS or (action is None and not _is_registered(tag)):
            del dataset[tag]
        elif action == "Z":
            element.value = Sequence() if vr == "SQ" else b"" if vr in BINARY_VRS else ""
        elif action == "D":
            _replace_with_dummy(element, key, keep_uids)
        elif action == "U" or (vr == "UI" and action is None):
            if not keep_uids and element.value:
                element.value = _pseudonymised_uids(element, key)
        elif action == "U*":
            pass  # the sequence stays; `walk` cleans its items next
        elif vr in REMOVED_VRS or (vr in BINARY_VRS and tag >> 16 not in PIXEL_GROUPS):
            del dataset[tag]
        elif vr in EMPTIED_VRS:
            element.value = ""

    ds.walk(clean)
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        file_meta.walk(clean)
    if getattr(ds, "preamble", None):
        ds.preamble = b"\x00" * 128  # a preamble may carry data (e.g. a TIFF header)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    ds.DeidentificationMethodCodeSequence = [
        _code(*code) for code in (BASIC_PROFILE_CODE, *([RETAIN_UIDS_CODE] if keep_uids else []))
    ]
    ds.LongitudinalTemporalInformationModified = "REMOVED"


def _is_registered(tag: int) -> bool:
    """In the DICOM data dictionary (repeating groups included); private tags are already gone."""
    return dictionary_has_tag(tag) or repeater_has_tag(tag)


def _replace_with_dummy(element: DataElement, key: bytes, keep_uids: bool) -> None:
    """The basic profile's D: a non-empty value of the element's VR that says nothing (a sequence: empty)."""
    vr = element.VR
    if vr == "SQ":
        element.value = Sequence()
    elif vr == "UI":
        if not keep_uids and element.value:
            element.value = _pseudonymised_uids(element, key)
    elif vr in BINARY_VRS or vr == "UN":
        element.value = b""
    elif vr in NUMERIC_VRS:
        element.value = 0
    else:
        element.value = DUMMY_VALUES.get(vr, DUMMY_TEXT)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _pseudonymised_uids(element: DataElement, key: bytes) -> str | list[str]:
    keyword = element.keyword or ""
    if keyword.endswith(("ClassUID", "SyntaxUID")):
        return element.value
    values = element.value if isinstance(element.value, MultiValue | list) else [element.value]
    mapped = [uid if UID(str(uid)).name != str(uid) else pseudonym_uid(str(uid), key) for uid in values]
    return mapped if len(mapped) > 1 else mapped[0]


def pseudonym_uid(uid: str, key: bytes) -> str:
    """The replacement for an instance UID: "2.25." + a 128-bit keyed hash (a valid UUID-derived UID)."""
    return "2.25." + str(int.from_bytes(_keyed_hash(key, b"uid:" + uid.encode())[:16], "big"))


def _keyed_hash(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()
