"""De-identification: nothing the PS3.15 Basic profile removes survives, at any depth; UIDs
are remapped consistently per room secret; what viewing needs stays."""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from dicomanonymizer.simpledicomanonymizer import (  # type: ignore[import-untyped]
    anonymize_dataset,
    initialize_actions,
)
from pydicom.dataset import Dataset

from consultd.imaging import deid
from consultd.imaging.ingest import Ingested, IngestPolicy, ingest_file
from tests.imaging import dicomgen

SECRET = b"room-one"
OTHER = b"room-two"
UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")


def read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def walk(ds: Dataset) -> Iterator[tuple[int, object, str]]:
    """(tag, value, VR) of every element at every depth."""
    for elem in ds:
        yield elem.tag, elem.value, elem.VR
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return dicomgen.write_series(dicomgen.ct_series(5), tmp_path_factory.mktemp("series"))


def run(
    paths: list[Path], out: Path, secret: bytes, clean_descriptors: bool = False
) -> list[Ingested]:
    out.mkdir(exist_ok=True)
    policy = IngestPolicy(secret=secret, clean_descriptors=clean_descriptors)
    results = []
    for i, p in enumerate(paths):
        r = ingest_file(str(p), str(out / f"{i}.dcm"), policy)
        assert isinstance(r, Ingested), r
        results.append(r)
    return results


def test_the_action_table_comes_from_dicom_anonymizer() -> None:
    table = deid.profile_tags()
    assert len(table) > 600
    assert table[0x00100010] == deid.EMPTY  # Patient's Name: Z
    assert table[0x00100020] == deid.DUMMY  # Patient ID: Z/D
    assert table[0x00101000] == deid.REMOVE  # Other Patient IDs: X
    assert table[0x0020000D] == deid.UID  # Study Instance UID: U
    assert table[0x00081140] == deid.CLEAN  # Referenced Image Sequence: X/Z/U*
    for keyword in ("Rows", "PixelSpacing", "ImagePositionPatient", "RescaleSlope", "Modality"):
        assert pydicom.datadict.tag_for_keyword(keyword) not in table


def test_no_phi_survives_at_any_depth(series: list[Path], tmp_path: Path) -> None:
    result = run(series[1:2], tmp_path, SECRET)[0]
    out_path = tmp_path / "0.dcm"
    header = out_path.read_bytes()[: result.pixel_data_offset]
    as_json = json.dumps(result.dicom_json)
    for text in [*dicomgen.FAKE_PHI.values(), *dicomgen.NESTED_PHI, "DOE", "HOUSE^GREGORY"]:
        if len(text) >= 4:  # shorter ones ("F", "062Y") could occur by chance
            assert text.encode() not in header, text
            assert text not in as_json, text
    table, _masks = deid.action_table()
    out = read(out_path)
    for tag, value, vr in walk(out):
        assert not (tag >> 16) & 1, f"private tag {tag:08X} survived"
        action = table.get(tag)
        if action == deid.REMOVE:
            pytest.fail(f"{tag:08X} should have been removed")
        elif action == deid.EMPTY:
            assert value in ("", None, b"") or (vr == "SQ" and len(value) == 0), hex(tag)  # type: ignore[arg-type]
        elif action == deid.UID:
            values = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
            assert all(str(v).startswith("2.25.") for v in values), hex(tag)
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethod == deid.DEID_METHOD
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    # What a viewer needs is still there.
    for keyword in ("ImagePositionPatient", "PixelSpacing", "RescaleIntercept", "WindowCenter"):
        assert keyword in out
    assert out.Modality == "CT" and out.BodyPartExamined == "CHEST"


def test_at_least_what_dicom_anonymizer_removes_is_gone(series: list[Path], tmp_path: Path) -> None:
    """Cross-check against dicom-anonymizer's own run of the same table (it acts on the top
    level only): whatever it removes or empties is gone or empty here too."""
    run(series[2:3], tmp_path, SECRET)
    ours = read(tmp_path / "0.dcm")
    original = read(series[2])
    theirs = copy.deepcopy(original)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        anonymize_dataset(theirs, base_rules_gen=lambda: initialize_actions(deid.TABLE_VERSION))
    removed = emptied = 0
    for tag in original.keys():
        if tag not in theirs:
            removed += 1
            assert tag not in ours, f"{tag} kept"
        elif theirs[tag].is_empty and not original[tag].is_empty:
            emptied += 1
            assert tag not in ours or ours[tag].is_empty, f"{tag} not emptied"
    assert removed >= 5 and emptied >= 3


def test_uids_are_consistent_within_a_room_and_differ_across_rooms(
    series: list[Path], tmp_path: Path
) -> None:
    first = run(series, tmp_path / "a", SECRET)
    again = run(series, tmp_path / "b", SECRET)
    other = run(series, tmp_path / "c", OTHER)
    originals = [read(p) for p in series]

    assert len({r.study_uid for r in first}) == 1 and len({r.series_uid for r in first}) == 1
    assert len({r.sop_instance_uid for r in first}) == len(series)
    for r, o in zip(first, originals, strict=True):
        assert r.sop_instance_uid == deid.remap_uid(SECRET, o.SOPInstanceUID)
        assert r.study_uid != o.StudyInstanceUID
        for uid in (r.study_uid, r.series_uid, r.sop_instance_uid):
            assert len(uid) <= 64 and UID_RE.fullmatch(uid)
    # Same secret: same UIDs and byte-identical files (a re-upload deduplicates).
    assert [(r.sop_instance_uid, r.sha256) for r in first] == [
        (r.sop_instance_uid, r.sha256) for r in again
    ]
    # Another room: nothing in common.
    assert not {r.sop_instance_uid for r in first} & {r.sop_instance_uid for r in other}
    assert first[0].study_uid != other[0].study_uid
    # References between instances follow the remapping; the frame of reference is shared.
    stored = [read(tmp_path / "a" / f"{i}.dcm") for i in range(len(series))]
    for i in range(1, len(series)):
        ref = stored[i].ReferencedImageSequence[0].ReferencedSOPInstanceUID
        assert ref == stored[i - 1].SOPInstanceUID
    assert len({s.FrameOfReferenceUID for s in stored}) == 1


def test_clean_descriptors_option(series: list[Path], tmp_path: Path) -> None:
    strict = read_one(series[0], tmp_path / "s", clean_descriptors=False)
    assert "SeriesDescription" not in strict and "StudyDescription" not in strict
    clean = read_one(series[0], tmp_path / "c", clean_descriptors=True)
    assert clean.SeriesDescription == dicomgen.FAKE_PHI["SeriesDescription"]
    assert "StudyDescription" not in clean  # "CT CHEST DOE JANE" names the patient
    assert clean.DeidentificationMethodCodeSequence[1].CodeValue == "113105"


def read_one(path: Path, out: Path, clean_descriptors: bool) -> Dataset:
    run([path], out, SECRET, clean_descriptors)
    return read(out / "0.dcm")


@pytest.mark.parametrize(
    ("modality", "flag", "sop_class", "expected"),
    [
        ("CT", "NO", "1.2.840.10008.5.1.4.1.1.2", False),
        ("CT", None, "1.2.840.10008.5.1.4.1.1.2", False),
        ("CT", "YES", "1.2.840.10008.5.1.4.1.1.2", True),
        ("US", None, "1.2.840.10008.5.1.4.1.1.6.1", True),
        ("US", "NO", "1.2.840.10008.5.1.4.1.1.6.1", False),
        ("OT", None, "1.2.840.10008.5.1.4.1.1.7", True),
        ("MR", None, "1.2.840.10008.5.1.4.1.1.7.4", True),  # secondary capture class
    ],
)
def test_burned_in_flag(modality: str, flag: str | None, sop_class: str, expected: bool) -> None:
    ds = Dataset()
    ds.Modality = modality
    ds.SOPClassUID = sop_class
    if flag is not None:
        ds.BurnedInAnnotation = flag
    assert deid.burned_in_annotation(ds) is expected


def test_deidentify_in_memory_and_secret_required() -> None:
    ds = dicomgen.ct_slice(0)
    with pytest.raises(ValueError):
        deid.deidentify(ds, b"")
    deid.deidentify(ds, SECRET)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert dicomgen.FAKE_PHI["PatientName"].encode() not in buf.getvalue()
    assert "RequestAttributesSequence" not in ds
    assert ds.ProcedureCodeSequence[0].PersonName == "ANONYMIZED"  # D inside a kept sequence
