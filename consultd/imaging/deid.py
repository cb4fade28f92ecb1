"""De-identification: the DICOM PS3.15 Basic Application Level Confidentiality Profile.

The action table is dicom-anonymizer's transcription of PS3.15 Table E.1-1 (its newest
database, ``dicomfields_2026c``), read once per process and compiled into one dict
``tag -> action`` plus the three repeating-group masks (curves, overlay data and comments).
dicom-anonymizer's own ``anonymize_dataset`` is not used: it re-builds the table for every
file, probes ~650 tags one by one plus three full walks for the masks (about 5 ms per CT
slice), acts at the top level only, and replaces UIDs with random ones.

Here the table is applied at every nesting level in one walk over the elements present, and
UIDs are replaced by ``2.25.<int>`` where the integer is HMAC-SHA256(room secret, UID): the
same original UID maps to the same new one in every file of a room (series stay linked,
references between instances stay valid, a re-upload gives the same UIDs and deduplicates)
and to unrelated ones in another room.

Choices where the profile offers them: Z/D, X/D and X/Z/D are D (a dummy value of the right
VR, as dicom-anonymizer does); X/Z is Z; X/Z/U* keeps the sequence and applies the table
inside it, so its referenced UIDs are remapped consistently. Private attributes are removed
everywhere, group lengths too (they would be wrong afterwards). What viewing needs (pixel
module, geometry, rescale, window, modality, body part, series/instance numbers) is not in
the table and stays. Series and Study Description are removed by the profile; with the
Clean Descriptors option (off by default) they are kept when a conservative check finds no
patient name part, identifier or long digit run in them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Final

from dicomanonymizer.dicomfields_selector import (  # type: ignore[import-untyped]
    dicom_anonymization_database_selector,
)
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

TABLE_VERSION: Final = "dicomfields_2026c"
DEID_METHOD: Final = "PS3.15 Basic Profile, dicom-anonymizer 2026c, HMAC UIDs"  # LO: <= 64

# Action codes after resolving the table's alternatives (see the module docstring).
REMOVE, EMPTY, DUMMY, UID, CLEAN = "X", "Z", "D", "U", "C"
_CATEGORY_ACTION: Final = {
    "D_TAGS": DUMMY,
    "Z_TAGS": EMPTY,
    "X_TAGS": REMOVE,
    "U_TAGS": UID,
    "Z_D_TAGS": DUMMY,
    "X_Z_TAGS": EMPTY,
    "X_D_TAGS": DUMMY,
    "X_Z_D_TAGS": DUMMY,
    "X_Z_U_STAR_TAGS": CLEAN,
}

# Viewing-relevant descriptors the Clean Descriptors option may keep: (0008,103E) Series
# Description and (0008,1030) Study Description.
_DESCRIPTORS: Final = frozenset({0x0008103E, 0x00081030})
_DIGIT_RUN = re.compile(r"\d{5,}")
_SAFE_TEXT = re.compile(r"[A-Za-z0-9 _+\-./:(),;*#&%=<>\[\]']*")

# Dummy values for D, by VR (dicom-anonymizer's choices, so output looks the same).
_DUMMY_TEXT: Final = {
    "AE": "ANONYMIZED",
    "CS": "ANONYMIZED",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "AS": "000Y",
    "DA": "00010101",
    "DT": "00010101010101.000000+0000",
    "TM": "000000.00",
    "UR": "http://anonymized.invalid",
    "DS": "0",
    "IS": "0",
}
_NUMERIC_VRS: Final = frozenset({"FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})

# Burned-in text is likely where the annotation flag is missing on these (PS3.15 E.3.1 notes
# ultrasound and secondary capture as the usual carriers).
_BURNED_IN_MODALITIES: Final = frozenset({"US", "IVUS", "SC", "OT", "XC", "ES", "GM", "DOC"})
_SC_AND_US_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame
    }
)


@functools.cache
def action_table() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """``(tag -> action, masks)`` compiled from dicom-anonymizer's Table E.1-1, once."""
    table = dicom_anonymization_database_selector(TABLE_VERSION)
    exact: dict[int, str] = {}
    masks: list[tuple[int, int, int, int, str]] = []
    for category, action in _CATEGORY_ACTION.items():
        for entry in table[category]:
            if len(entry) == 2:
                exact[entry[0] << 16 | entry[1]] = action
            else:
                group, elem, gmask, emask = entry
                masks.append((group & gmask, gmask, elem & emask, emask, action))
    return exact, tuple(masks)


def profile_tags() -> dict[int, str]:
    """Every exact tag of the profile with its resolved action (for tests and audits)."""
    return dict(action_table()[0])


def remap_uid(secret: bytes, uid: str) -> str:
    """``2.25.<int>`` from HMAC-SHA256(secret, uid): a UUID-derived UID (PS3.5 B.2), version
    8 (custom) bits set, at most 44 characters."""
    digest = hmac.new(secret, b"uid:" + uid.encode("ascii", "replace"), hashlib.sha256).digest()
    value = int.from_bytes(digest[:16], "big")
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return f"2.25.{value}"


def _vr(raw: RawDataElement | DataElement, tag: int) -> str:
    vr = raw.VR
    if vr is None or vr == "UN":
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    if " or " in vr:  # e.g. 'US or SS': the first alternative is fine for a replacement value
        vr = vr.split(" or ")[0]
    return vr


class _Deid:
    __slots__ = ("cache", "clean_descriptors", "masks", "phi_words", "secret", "table")

    def __init__(self, secret: bytes, clean_descriptors: bool, phi_words: set[str]) -> None:
        self.table, self.masks = action_table()
        self.secret = secret
        self.clean_descriptors = clean_descriptors
        self.phi_words = phi_words
        self.cache: dict[str, str] = {}

    def uid(self, value: str) -> str:
        new = self.cache.get(value)
        if new is None:
            new = self.cache[value] = remap_uid(self.secret, value)
        return new

    def action(self, tag: int) -> str | None:
        action = self.table.get(tag)
        if action is None and (tag >> 24) in (0x50, 0x60):  # repeating groups 50xx / 60xx
            group, elem = tag >> 16, tag & 0xFFFF
            for g, gm, e, em, act in self.masks:
                if group & gm == g and elem & em == e:
                    return act
        return action

    def walk(self, ds: Dataset) -> None:
        for tag in list(ds.keys()):
            if tag >> 16 & 1 or not tag & 0xFFFF:  # private (creators too) and group lengths
                del ds[tag]
                continue
            try:
                self.element(ds, tag)
            except Exception:  # a value pydicom cannot convert: dropping it is always safe
                del ds[tag]

    def element(self, ds: Dataset, tag: int) -> None:
        action = self.action(tag)
        if action is None:  # kept; a kept sequence is cleaned inside
            raw = ds.get_item(tag)
            if raw is not None and _vr(raw, tag) == "SQ":
                self.walk_sequence(ds[tag].value)
        elif action == REMOVE:
            if not (tag in _DESCRIPTORS and self.clean_descriptors and self.descriptor_ok(ds, tag)):
                del ds[tag]
        elif action == UID:
            self.remap(ds, tag)
        elif action == CLEAN:
            self.clean(ds, tag)
        else:
            self.replace(ds, tag, action)

    def walk_sequence(self, seq: Iterable[Dataset]) -> None:
        for item in seq:
            self.walk(item)

    def remap(self, ds: Dataset, tag: int) -> None:
        elem = ds[tag]
        value = elem.value
        if isinstance(value, MultiValue | list):
            elem.value = [self.uid(str(v)) for v in value if v]
        elif value:
            elem.value = self.uid(str(value))

    def clean(self, ds: Dataset, tag: int) -> None:
        """X/Z/U*: keep a reference sequence, cleaned by the table (its UIDs remapped)."""
        raw = ds.get_item(tag)
        if raw is None:
            return
        if _vr(raw, tag) == "SQ":
            self.walk_sequence(ds[tag].value)
        elif _vr(raw, tag) == "UI":
            self.remap(ds, tag)
        else:
            self.replace(ds, tag, EMPTY)

    def replace(self, ds: Dataset, tag: int, action: str) -> None:
        raw = ds.get_item(tag)
        if raw is None:
            return
        vr = _vr(raw, tag)
        if vr == "SQ":
            if action == EMPTY:
                ds[tag] = DataElement(tag, "SQ", Sequence())
            else:  # D on a sequence: every leaf replaced, UIDs remapped (dicom-anonymizer's D)
                for item in ds[tag].value:
                    self.dummy_all(item)
            return
        if vr == "UI":
            if action == EMPTY:
                ds[tag] = DataElement(tag, vr, "")
            else:
                self.remap(ds, tag)
            return
        ds[tag] = DataElement(tag, vr, self.dummy(vr) if action == DUMMY else _empty(vr))

    def dummy_all(self, ds: Dataset) -> None:
        for tag in list(ds.keys()):
            if tag >> 16 & 1 or not tag & 0xFFFF:
                del ds[tag]
            else:
                self.replace(ds, tag, DUMMY)

    @staticmethod
    def dummy(vr: str) -> object:
        text = _DUMMY_TEXT.get(vr)
        if text is not None:
            return text
        if vr in _NUMERIC_VRS:
            return 0
        return b"\0\0"  # OB/OW/UN/OF...: an even-length binary dummy

    def descriptor_ok(self, ds: Dataset, tag: int) -> bool:
        try:
            text = str(ds[tag].value)
        except Exception:
            return False
        if len(text) > 64 or not _SAFE_TEXT.fullmatch(text) or _DIGIT_RUN.search(text):
            return False
        words = set(re.split(r"[^A-Za-z0-9]+", text.upper()))
        return not (words & self.phi_words)


def _empty(vr: str) -> object:
    if vr in _NUMERIC_VRS:
        return None
    if vr in {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}:
        return b""
    return ""


def _phi_words(ds: Dataset) -> set[str]:
    """Words from the patient's names and identifiers, for the Clean Descriptors check."""
    words: set[str] = set()
    for keyword in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthName"):
        try:
            value = ds.get(keyword)
        except Exception:
            continue
        if value:
            text = " ".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value)
            words.update(w for w in re.split(r"[^A-Za-z0-9]+", text.upper()) if len(w) >= 2)
    return words


def deidentify(ds: Dataset, secret: bytes, *, clean_descriptors: bool = False) -> None:
    """Apply the Basic profile to ``ds`` in place (the file meta is the caller's business) and
    record it (Patient Identity Removed, De-identification Method and its code sequence)."""
    if not secret:
        raise ValueError("a room secret is required for UID remapping")
    words = _phi_words(ds) if clean_descriptors else set()
    _Deid(secret, clean_descriptors, words).walk(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEID_METHOD
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if clean_descriptors:
        codes.append(("113105", "Clean Descriptors Option"))
    seq = Sequence()
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = seq


def burned_in_annotation(ds: Dataset) -> bool:
    """True when the pixels may carry burned-in text: Burned In Annotation is YES, or it is
    absent on an ultrasound / secondary-capture-like image (warn the host)."""
    flag = _text(ds, "BurnedInAnnotation").upper()
    if flag == "YES":
        return True
    if flag == "NO":
        return False
    modality = _text(ds, "Modality").upper()
    sop_class = _text(ds, "SOPClassUID")
    return modality in _BURNED_IN_MODALITIES or sop_class in _SC_AND_US_CLASSES


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:
        return ""
    return str(value).strip() if value is not None else ""


__all__ = [
    "DEID_METHOD",
    "TABLE_VERSION",
    "action_table",
    "burned_in_annotation",
    "deidentify",
    "profile_tags",
    "remap_uid",
]
