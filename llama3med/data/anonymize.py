"""De-identified copies of a DICOM folder: a documented subset of the DICOM PS3.15 Annex E Basic
Application Level Confidentiality Profile (see docs/IMAGES.md, "Privacy").

Rules, applied to the file meta and to every nested dataset:
- private elements removed (pydicom's `remove_private_tags`);
- PatientID and PatientName replaced by one pseudonym, HMAC-SHA256 of the original PatientID under `key`;
- every person name (VR PN), date, date-time and time (DA, DT, TM) emptied;
- every free text (LT, ST, UT), application entity title (AE) and element of unknown VR (UN) removed;
- the attributes in `REMOVED_KEYWORDS` removed and those in `EMPTIED_KEYWORDS` emptied;
- curve data (groups 50xx) and overlay data and comments (60xx,3000), (60xx,4000) removed;
- instance UIDs (every UI value that is not a registered DICOM UID and not a class or transfer syntax
  UID) replaced by "2.25.<128-bit HMAC>", the same for the same UID everywhere, unless `keep_uids`;
- the 128-byte preamble zeroed; PatientIdentityRemoved = "YES" and DeidentificationMethod set.
Pixel data is never altered: files flagged BurnedInAnnotation = "YES" are listed in the report.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.config import disable_value_validation
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, MediaStorageDirectoryStorage

from llama3med.data.dicom import is_dicom_header

DEIDENTIFICATION_METHOD = "llama3med anonymize: PS3.15 basic profile subset (docs/IMAGES.md)"
PSEUDONYM_PREFIX = "ANON-"
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")  # DICOM UIDs: digits and dots only, so safe as file names
EMPTIED_VRS = ("PN", "DA", "DT", "TM")
REMOVED_VRS = ("LT", "ST", "UT", "AE", "UN")
REPLACED_KEYWORDS = ("PatientID", "PatientName")
EMPTIED_KEYWORDS = ("AccessionNumber", "StudyID", "PatientSex")
REMOVED_KEYWORDS = (
    # patient
    "OtherPatientIDs", "OtherPatientIDsSequence", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation", "PatientAge", "PatientSize",
    "PatientWeight", "PatientBirthTime", "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "EthnicGroup",
    "Occupation", "AdditionalPatientHistory", "PatientComments", "PatientReligiousPreference", "CountryOfResidence",
    "RegionOfResidence", "PatientInsurancePlanCodeSequence", "InsurancePlanIdentification", "MedicalAlerts",
    "Allergies", "SpecialNeeds", "PatientState", "PregnancyStatus", "SmokingStatus", "ResponsibleOrganization",
    "ReferencedPatientSequence", "ReferencedPatientAliasSequence", "PatientInstitutionResidence",
    "ScheduledPatientInstitutionResidence", "CurrentPatientLocation",
    # institution, devices, staff
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "DeviceSerialNumber", "DeviceUID", "PlateID", "GantryID", "CassetteID", "DetectorID",
    "GeneratorID", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorIdentificationSequence", "RequestingService",
    "PersonAddress", "PersonTelephoneNumbers", "PersonTelecomInformation", "PersonIdentificationCodeSequence",
    "VerifyingOrganization", "DistributionAddress",
    # visit, order, procedure
    "AdmissionID", "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "ServiceEpisodeID",
    "ServiceEpisodeDescription", "RequestAttributesSequence", "RequestedProcedureID",
    "RequestedProcedureDescription", "ScheduledProcedureStepID", "ScheduledProcedureStepDescription",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "PerformedLocation", "ScheduledStudyLocation",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest", "ReasonForStudy",
    "StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments", "TopicKeywords",
    # copies of original values and signatures
    "OriginalAttributesSequence", "ModifiedAttributesSequence", "EncryptedAttributesSequence",
    "MACParametersSequence", "DigitalSignaturesSequence", "DataSetTrailingPadding",
)  # fmt: skip
REMOVED_TAGS = frozenset(tag_for_keyword(keyword) for keyword in REMOVED_KEYWORDS)
EMPTIED_TAGS = frozenset(tag_for_keyword(keyword) for keyword in EMPTIED_KEYWORDS)
REPLACED_TAGS = frozenset(tag_for_keyword(keyword) for keyword in REPLACED_KEYWORDS)


@dataclass
class AnonymizationReport:
    """What `anonymize_dicom_folder` did. Paths only: no header values."""

    written: list[Path] = field(default_factory=list)
    already_present: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (source file, reason)
    burned_in: list[Path] = field(default_factory=list)  # outputs whose pixels may show identifiers

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"{len(self.written)} written, {len(self.already_present)} already present, "
            f"{len(self.skipped)} skipped, {len(self.burned_in)} flagged for burned-in annotation"
        )


def anonymize_dicom_folder(
    src: str | os.PathLike, dst: str | os.PathLike, *, keep_uids: bool = False, key: bytes | None = None
) -> AnonymizationReport:
    """Write de-identified copies of every DICOM file under `src` to `dst/<study>/<series>/<instance>.dcm`.

    Output names come from the (pseudonymised) UIDs, never from source paths, which often hold names.
    `key` makes pseudonyms repeatable across runs (a rerun with the same key skips files already written);
    without it a random key is used, consistent within this run only. Symbolic links are not followed;
    files that are not DICOM Part 10 (no "DICM" marker), DICOMDIR indexes and unreadable files are skipped.
    """
    source_root, target_root = Path(src).resolve(), Path(dst).resolve()
    if not source_root.is_dir():
        raise ValueError(f"{src}: not a folder")
    if target_root == source_root or source_root in target_root.parents:
        raise ValueError(f"{dst}: the output folder must not be inside the source folder {src}")
    key = key if key is not None else secrets.token_bytes(32)
    report = AnonymizationReport()
    for path in _regular_files(source_root, report):
        _anonymize_file(path, target_root, key=key, keep_uids=keep_uids, report=report)
    return report


def _regular_files(root: Path, report: AnonymizationReport) -> list[Path]:
    found = []
    for folder, subfolders, names in os.walk(root):  # os.walk does not descend into linked folders
        subfolders.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink():
                report.skipped.append((path, "symbolic link not followed"))
            else:
                found.append(path)
    return found


def _anonymize_file(
    path: Path, target_root: Path, *, key: bytes, keep_uids: bool, report: AnonymizationReport
) -> None:
    try:
        with path.open("rb") as file:
            is_dicom = is_dicom_header(file.read(132))
    except OSError as error:
        report.skipped.append((path, f"unreadable file ({error.strerror or type(error).__name__})"))
        return
    if not is_dicom:
        report.skipped.append((path, "not a DICOM Part 10 file (no 'DICM' marker)"))
        return
    # Value validation would quote offending values (names, dates) in warnings: keep it off here.
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except Exception as error:  # a corrupt file is reported by type only: messages may quote values
            report.skipped.append((path, f"unreadable DICOM ({type(error).__name__})"))
            return
        if ds.get("SOPClassUID") == MediaStorageDirectoryStorage:  # DICOMDIR
            report.skipped.append((path, "DICOMDIR index not copied: its file references would be wrong"))
            return
        try:
            anonymize_dataset(ds, key=key, keep_uids=keep_uids)
            parts = [
                str(ds.get(keyword) or "")
                for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            ]
        except Exception as error:
            report.skipped.append((path, f"could not be de-identified ({type(error).__name__})"))
            return
        if not all(UID_PATTERN.fullmatch(part) for part in parts):  # kept UIDs become folder and file names
            report.skipped.append((path, "missing or malformed study, series or instance UID"))
            return
        target = target_root / parts[0] / parts[1] / f"{parts[2]}.dcm"
        if target.exists():
            report.already_present.append(target)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".dcm.partial")
        ds.save_as(partial, enforce_file_format=True)
        partial.replace(target)  # atomic: an interrupted run never leaves a half-written .dcm
    report.written.append(target)
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        report.burned_in.append(target)


def anonymize_dataset(ds: Dataset, *, key: bytes, keep_uids: bool = False) -> None:
    """De-identify `ds` (and its file meta) in place by the rules in this module's docstring."""
    original_id = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    pseudonym = PSEUDONYM_PREFIX + _keyed_hash(key, b"patient:" + original_id.encode()).hex()[:16]
    ds.remove_private_tags()

    def clean(dataset: Dataset, element: DataElement) -> None:
        tag = element.tag
        if tag in REPLACED_TAGS:
            element.value = pseudonym
        elif tag in REMOVED_TAGS or element.VR in REMOVED_VRS or _is_curve_or_overlay_text(tag):
            del dataset[tag]
        elif tag in EMPTIED_TAGS or element.VR in EMPTIED_VRS:
            element.value = ""
        elif element.VR == "UI" and not keep_uids and element.value:
            element.value = _pseudonymised_uids(element, key)

    ds.walk(clean)
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        file_meta.walk(clean)
    if getattr(ds, "preamble", None):
        ds.preamble = b"\x00" * 128  # a preamble may carry data (e.g. a TIFF header)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD


def _is_curve_or_overlay_text(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return 0x5000 <= group <= 0x501E or (0x6000 <= group <= 0x601E and element in (0x3000, 0x4000))


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
