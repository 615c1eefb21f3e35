"""`anonymize_dicom_folder` and the `anonymize` / `inspect-image` commands: identifiers gone from every
output byte, pixels unchanged, UIDs pseudonymised consistently, reruns resume."""

from __future__ import annotations

import logging
import re
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import typer
from hostile_files import deflated_dicom, dicom_without_sop_class, fifo, long_uid, truncated_dicom
from medical_files import PATIENT_STRINGS, SERIES_UID, STUDY_UID, ct_dataset, write_dicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from llama3med.cli.image_commands import register
from llama3med.io.anonymize import anonymize_dicom_folder, basic_profile
from llama3med.io.images import load_image

pytestmark = pytest.mark.timeout(60)

HU = np.array([[-1000, -500, 0], [40, 400, 1200]])
FIRST_UID, SECOND_UID = "1.2.826.0.1.3680043.8.498.30001", "1.2.826.0.1.3680043.8.498.30002"
OTHER_IDENTIFIERS = ("St Mary Hospital", "ACC-999", "House", "19700101", "CT-STATION-7", "private note")
ORIGINAL_UIDS = (STUDY_UID, SERIES_UID, FIRST_UID, SECOND_UID)


def identified_ct(instance_uid: str, referenced_uid: str) -> Dataset:
    """A CT slice carrying identifiers at the top level, in a nested sequence and in a private element."""
    ds = ct_dataset(HU, instance_uid=instance_uid)
    ds.InstitutionName = "St Mary Hospital"
    ds.AccessionNumber = "ACC-999"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.StationName = "CT-STATION-7"
    ds.StudyDate = "19700101"
    ds.BurnedInAnnotation = "YES" if instance_uid == SECOND_UID else "NO"
    reference = Dataset()
    reference.ReferencedSOPClassUID = ds.SOPClassUID
    reference.ReferencedSOPInstanceUID = referenced_uid
    reference.OperatorsName = "Doe^Jane"  # a person name nested in a sequence item
    ds.ReferencedImageSequence = [reference]
    block = ds.private_block(0x0009, "HOSPITAL PRIVATE", create=True)
    block.add_new(0x01, "LO", "MRN-12345 private note")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PatientBirthDate = "MRN-12345"  # invalid: value validation would quote it in a warning
    return ds


@pytest.fixture
def source_folder(tmp_path: Path) -> Path:
    """A PACS-style export: the patient's name in the folder, two slices of one series, a stray text file."""
    folder = tmp_path / "export" / "Doe_Jane" / "CT"
    folder.mkdir(parents=True)
    write_dicom(folder / "slice1.dcm", identified_ct(FIRST_UID, SECOND_UID))
    write_dicom(folder / "slice2.dcm", identified_ct(SECOND_UID, FIRST_UID))
    (folder / "notes.txt").write_text("Doe^Jane MRN-12345")
    return tmp_path / "export"


def output_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_identifiers_appear_in_no_output_byte_and_pixels_are_unchanged(
    source_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "deidentified"
    caplog.clear()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = anonymize_dicom_folder(source_folder, out, key=b"k" * 32)
    assert len(report.written) == 2 and report.already_present == []
    assert [(path.name, reason) for path, reason in report.skipped] == [
        ("notes.txt", "not a DICOM file (no 'DICM' marker, no dataset)")
    ]
    written = output_files(out)
    assert written == sorted(report.written)
    for path in written:
        content = path.read_bytes()
        assert "Doe_Jane" not in str(path.relative_to(out))
        for text in (*PATIENT_STRINGS, *OTHER_IDENTIFIERS, *ORIGINAL_UIDS):
            assert text.encode() not in content, f"{text!r} left in {path.name}"
    logged = caplog.text + "".join(str(w.message) for w in caught) + report.summary()
    for text in PATIENT_STRINGS:
        assert text not in logged
    originals = {FIRST_UID: pydicom.dcmread(source_folder / "Doe_Jane" / "CT" / "slice1.dcm")}
    originals[SECOND_UID] = pydicom.dcmread(source_folder / "Doe_Jane" / "CT" / "slice2.dcm")
    outputs = [pydicom.dcmread(path) for path in written]
    for ds in outputs:
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == ds.PatientID
        assert (
            str(ds.PatientID).startswith("ANON-")
            and ds.PatientBirthDate == ""
            and "InstitutionName" not in ds
        )
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == originals[FIRST_UID].SOPClassUID  # class UIDs are kept
        assert "OperatorsName" not in ds.ReferencedImageSequence[0]  # X in the profile, nested too
    # One series in, one series out: shared UIDs map to the same pseudonym, references follow.
    assert outputs[0].StudyInstanceUID == outputs[1].StudyInstanceUID != STUDY_UID
    assert outputs[0].SeriesInstanceUID == outputs[1].SeriesInstanceUID
    references = {ds.SOPInstanceUID: ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID for ds in outputs}
    first, second = references
    assert references == {first: second, second: first}  # each slice still points at the other one
    for ds in outputs:  # both slices hold the same pixels
        assert ds.PixelData == originals[FIRST_UID].PixelData == originals[SECOND_UID].PixelData
        np.testing.assert_array_equal(ds.pixel_array, originals[FIRST_UID].pixel_array)
    burned = pydicom.dcmread(report.burned_in[0])
    assert len(report.burned_in) == 1 and burned.BurnedInAnnotation == "YES"


def test_loader_sees_the_same_image_after_anonymization(source_folder: Path, tmp_path: Path) -> None:
    report = anonymize_dicom_folder(source_folder, tmp_path / "out")
    original = load_image(source_folder / "Doe_Jane" / "CT" / "slice1.dcm", window="abdomen")
    np.testing.assert_array_equal(
        np.asarray(load_image(report.written[0], window="abdomen")), np.asarray(original)
    )


def test_rerun_with_the_same_key_resumes_and_keep_uids(source_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = anonymize_dicom_folder(source_folder, out, key=b"secret")
    again = anonymize_dicom_folder(source_folder, out, key=b"secret")
    assert again.written == [] and sorted(again.already_present) == sorted(first.written)
    other_key = anonymize_dicom_folder(source_folder, tmp_path / "other", key=b"another")
    assert {p.name for p in other_key.written}.isdisjoint({p.name for p in first.written})
    kept = anonymize_dicom_folder(source_folder, tmp_path / "kept", keep_uids=True)
    assert sorted(p.name for p in kept.written) == [f"{FIRST_UID}.dcm", f"{SECOND_UID}.dcm"]
    ds = pydicom.dcmread(kept.written[0])
    assert ds.StudyInstanceUID == STUDY_UID and ds.PatientName != "Doe^Jane"


def test_output_inside_source_and_links_refused(source_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must not be inside the source folder"):
        anonymize_dicom_folder(source_folder, source_folder / "out")
    outside = tmp_path / "outside.dcm"
    write_dicom(outside, identified_ct(FIRST_UID, SECOND_UID))
    (source_folder / "link.dcm").symlink_to(outside)
    report = anonymize_dicom_folder(source_folder, tmp_path / "out")
    assert (source_folder / "link.dcm", "symbolic link not followed") in report.skipped


def test_kept_uids_never_escape_the_output_folder(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    ds = identified_ct(FIRST_UID, SECOND_UID)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "../../escaped"
        write_dicom(source / "hostile.dcm", ds)
    out = tmp_path / "out" / "deep"
    report = anonymize_dicom_folder(source, out, keep_uids=True)
    assert report.skipped == [] and len(report.written) == 1
    written = report.written[0]
    assert written.parent.parent.parent == out and re.fullmatch(r"x[0-9a-f]{40}\.dcm", written.name)
    assert sorted(path.name for path in tmp_path.rglob("*.dcm")) == sorted(["hostile.dcm", written.name])


def test_basic_profile_table_is_the_standards() -> None:
    """The table comes from dicom-anonymizer (generated from PS3.15 Table E.1-1), not from a hand-picked list:
    it lists hundreds of attributes, including those a hand-written subset missed."""
    profile = basic_profile()
    assert len(profile.actions) > 600 and len(profile.masked) == 3
    expected = {
        "ClinicalTrialSubjectID": "D", "ClinicalTrialSponsorName": "D", "ClinicalTrialSiteName": "Z",
        "PerformedStationName": "X", "ScheduledStationName": "X", "OrderCallbackPhoneNumber": "X",
        "HumanPerformerOrganization": "X", "RequestedProcedureLocation": "X", "GPSLatitude": "X",
        "GPSAreaInformation": "X", "PerformedStationGeographicLocationCodeSequence": "X",
        "InstitutionName": "X", "PatientBirthDate": "Z", "StudyInstanceUID": "U", "ReferencedImageSequence": "U*",
    }  # fmt: skip
    assert {keyword: profile.action(tag_for_keyword(keyword)) for keyword in expected} == expected
    assert profile.action(0x60023000) == "X" and profile.action(0x501E1234) == "X"  # overlays, curves
    assert (
        profile.action(tag_for_keyword("PixelData")) is None
        and profile.action(tag_for_keyword("Rows")) is None
    )


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_anonymize_command_with_key_file(source_folder: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "anon.key"
    result = CliRunner().invoke(
        cli(), ["anonymize", str(source_folder), str(tmp_path / "out"), "--key-file", str(key_file)]
    )
    assert result.exit_code == 0, result.output
    assert "2 written, 0 already present, 1 skipped, 1 flagged for burned-in annotation" in result.output
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(bytes.fromhex(key_file.read_text())) == 32
    again = CliRunner().invoke(
        cli(), ["anonymize", str(source_folder), str(tmp_path / "out"), "--key-file", str(key_file)]
    )
    assert "0 written, 2 already present" in again.output
    printed = [
        line for line in (result.output + again.output).splitlines() if not line.startswith("skipped ")
    ]
    assert printed and all(text not in line for line in printed for text in PATIENT_STRINGS)


def test_inspect_image_command_writes_png_and_prints_no_identifiers(
    source_folder: Path, tmp_path: Path
) -> None:
    source = source_folder / "Doe_Jane" / "CT" / "slice1.dcm"
    out = tmp_path / "slice.png"
    result = CliRunner().invoke(cli(), ["inspect-image", str(source), "--out", str(out), "--window", "lung"])
    assert result.exit_code == 0, result.output
    assert "format: DICOM" in result.output and "window: lung (centre -600, width 1500)" in result.output
    assert f"output: {out} (3 x 2, RGB)" in result.output
    np.testing.assert_array_equal(np.asarray(load_image(out)), np.asarray(load_image(source, window="lung")))
    printed = result.output.replace(str(source), "")
    for text in (*PATIENT_STRINGS, *OTHER_IDENTIFIERS):
        assert text not in printed
    bad = CliRunner().invoke(cli(), ["inspect-image", str(source), "--out", str(out), "--frame", "4"])
    assert bad.exit_code == 1 and "frame 4 out of range: the file has 1 frame(s), indices 0..0" in bad.output


# --- the basic profile in full, and a batch that never stops --------------------------------------------

PLANTED = (
    "PLANT-META", "PLANT-SUBJECT", "PLANT-SPONSOR", "PLANT-SITE", "PLANT-PSTATION", "PLANT-SSTATION",
    "PLANT-PHONE", "PLANT-ORG", "PLANT-LOCATION", "51.50072", "PLANT-GPS-AREA", "PLANT-CODE-MEANING",
    "PLANT-UNREGISTERED", "PLANT-NESTED-PERSON", "PLANT-PRIVATE", "PLANT-HPGL", "PLANT-UN",
    *PATIENT_STRINGS,
)  # fmt: skip


def planted_ct(instance_uid: str) -> Dataset:
    """A CT slice with an identifier planted in attributes a hand-written subset of the profile missed: file
    meta private information, clinical trial, stations, phone, organisation, location, GPS (DS and OB), a code
    meaning inside a sequence, an unregistered patient-group element, a person three sequences deep, a
    private element, an embedded document (OB) and a value stored with VR UN."""
    ds = ct_dataset(HU, instance_uid=instance_uid)
    ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.8.498.99"
    ds.file_meta.PrivateInformation = b"PLANT-META"
    ds.ClinicalTrialSubjectID = "PLANT-SUBJECT"
    ds.ClinicalTrialSponsorName = "PLANT-SPONSOR"
    ds.ClinicalTrialSiteName = "PLANT-SITE"
    ds.PerformedStationName = "PLANT-PSTATION"
    step = Dataset()
    step.ScheduledStationName = "PLANT-SSTATION"
    ds.ScheduledProcedureStepSequence = [step]
    ds.OrderCallbackPhoneNumber = "PLANT-PHONE"
    performer = Dataset()
    performer.HumanPerformerOrganization = "PLANT-ORG"
    ds.ActualHumanPerformersSequence = [performer]
    ds.RequestedProcedureLocation = "PLANT-LOCATION"
    ds.GPSLatitude = "51.50072"
    ds.add_new(tag_for_keyword("GPSAreaInformation"), "OB", b"PLANT-GPS-AREA")
    location = Dataset()
    location.CodeValue, location.CodingSchemeDesignator, location.CodeMeaning = (
        "L1",
        "99LOCAL",
        "PLANT-CODE-MEANING",
    )
    ds.PerformedStationGeographicLocationCodeSequence = [location]
    ds.add_new(0x00109999, "LO", "PLANT-UNREGISTERED")
    person, purpose, source = Dataset(), Dataset(), Dataset()
    person.PersonName = "PLANT-NESTED-PERSON"
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = (
        "121320",
        "DCM",
        "Uncompressed predecessor",
    )
    purpose.ContentSequence = [person]
    source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = ds.SOPClassUID, FIRST_UID
    source.PurposeOfReferenceCodeSequence = [purpose]
    ds.SourceImageSequence = [source]
    ds.private_block(0x0011, "SITE PRIVATE", create=True).add_new(0x01, "LO", "PLANT-PRIVATE")
    ds.add_new(tag_for_keyword("HPGLDocument"), "OB", b"PLANT-HPGL")
    ds.add_new(tag_for_keyword("AdmittingDiagnosesDescription"), "UN", b"PLANT-UN")
    return ds


def all_values(ds: Dataset) -> str:
    """Every element value of `ds`, its file meta and every nested item, as text."""
    texts: list[str] = []
    ds.walk(lambda _dataset, element: texts.append(str(element.value)))
    ds.file_meta.walk(lambda _dataset, element: texts.append(str(element.value)))
    return "\n".join(texts)


def assert_nothing_planted(path: Path) -> None:
    content, values = path.read_bytes(), all_values(pydicom.dcmread(path))
    for text in PLANTED:
        assert text.encode() not in content, f"{text!r} left in the bytes of {path.name}"
        assert text not in values, f"{text!r} left in a value of {path.name}"


def test_every_planted_identifier_is_gone_and_the_image_stays(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    original = write_dicom(source / "planted.dcm", planted_ct(SECOND_UID))
    report = anonymize_dicom_folder(source, tmp_path / "out", key=b"k" * 32)
    assert report.skipped == [] and len(report.written) == 1
    assert_nothing_planted(report.written[0])
    ds = pydicom.dcmread(report.written[0])
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED" and ds.ClinicalTrialSiteName == ""
    assert ds.ClinicalTrialSubjectID == "ANONYMIZED"  # D: a dummy value, not the original
    reference = ds.SourceImageSequence[0]  # X/Z/U*: kept, its UIDs pseudonymised, its items cleaned
    assert reference.ReferencedSOPInstanceUID.startswith("2.25.")
    assert reference.PurposeOfReferenceCodeSequence[0].ContentSequence == []
    np.testing.assert_array_equal(ds.pixel_array, pydicom.dcmread(original).pixel_array)


def test_batch_skips_every_bad_entry_with_a_reason_and_writes_every_valid_file(tmp_path: Path) -> None:
    """Valid files beside a FIFO, a socket, a link out of the tree, a file without SOP Class UID, one whose
    instance UID has 300 digits, a deflate bomb and a cut file: finishes in seconds, never opens the FIFO."""
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    write_dicom(source / "good.dcm", planted_ct(FIRST_UID))
    write_dicom(source / "sub" / "good.dcm", planted_ct(SECOND_UID))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that the UID is over 64 characters
        write_dicom(source / "long-uid.dcm", planted_ct(long_uid(300)))
    dicom_without_sop_class(source / "no-sop-class.dcm", "1.2.826.0.1.3680043.8.498.40001")
    fifo(source / "pipe.dcm")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(source / "sock.dcm"))
    outside = write_dicom(tmp_path / "outside.dcm", planted_ct("1.2.826.0.1.3680043.8.498.40002"))
    (source / "link.dcm").symlink_to(outside)
    deflated_dicom(source / "bomb.dcm", ct_dataset(HU), trailing_zero_mib=1024)
    truncated_dicom(source / "cut.dcm", cut=400)
    key_file = tmp_path / "anon.key"
    for option, out in (([], tmp_path / "out"), (["--keep-uids"], tmp_path / "kept")):
        start = time.perf_counter()
        result = CliRunner().invoke(
            cli(), ["anonymize", str(source), str(out), "--key-file", str(key_file), *option]
        )
        assert time.perf_counter() - start < 20 and result.exit_code == 0, result.output
        assert "3 written, 0 already present, 6 skipped" in result.output
        skipped = dict(
            line.split(": ", 1) for line in result.output.splitlines() if line.startswith("skipped ")
        )
        assert skipped == {
            f"skipped {source / 'bomb.dcm'}": skipped[f"skipped {source / 'bomb.dcm'}"],
            f"skipped {source / 'cut.dcm'}": "corrupt DICOM header: the data ends inside an element (at byte 400; a truncated file?)",
            f"skipped {source / 'link.dcm'}": "symbolic link not followed",
            f"skipped {source / 'no-sop-class.dcm'}": "no SOP Class UID in the dataset or its file meta: not a DICOM object that can be written",
            f"skipped {source / 'pipe.dcm'}": "not a regular file (a FIFO): not opened",
            f"skipped {source / 'sock.dcm'}": "not a regular file (a socket): not opened",
        }  # fmt: skip
        assert "bytes its header declares" in skipped[f"skipped {source / 'bomb.dcm'}"]
        written = output_files(out)
        assert len(written) == 3 and all(
            len(part) <= 64 for path in written for part in path.relative_to(out).parts
        )
        for path in written:
            assert_nothing_planted(path)
    kept_names = sorted(path.name for path in output_files(tmp_path / "kept"))
    assert f"{FIRST_UID}.dcm" in kept_names and any(
        re.fullmatch(r"x[0-9a-f]{40}\.dcm", n) for n in kept_names
    )
    listener.close()


def test_interrupted_run_resumes_and_leaves_no_partial_file(source_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = anonymize_dicom_folder(source_folder, out, key=b"resume")
    lost = first.written[0]
    lost.unlink()
    lost.with_name(lost.name + ".partial").write_bytes(b"half a file")  # killed mid-write
    again = anonymize_dicom_folder(source_folder, out, key=b"resume")
    assert again.written == [lost] and again.already_present == first.written[1:]
    assert sorted(output_files(out)) == sorted(first.written)
    assert pydicom.dcmread(lost).PatientIdentityRemoved == "YES"
