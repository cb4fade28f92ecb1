"""Lab-result images and clinical photos become DICOM Secondary Capture instances.

A cleaned photo (``photos.ingest_photo``: decoded under a pixel budget, metadata dropped,
faces pixelated) is wrapped in an uncompressed Secondary Capture instance, so the viewer,
DICOMweb, annotations and measurements treat it like any other image. Its UIDs derive from
the room's secret: one study for the room's photos, one series per uploader, and the
instance from the cleaned pixels' hash (the same photo twice is one instance).
Runs in a worker process (``sandbox.WorkerPool``).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from consultd.imaging.deid import remap_uid
from consultd.imaging.ingest import (
    PIXEL_DATA_URI,
    ZERO_PREAMBLE,
    Ingested,
    IngestPolicy,
    Refused,
    ingest_file,
)
from consultd.imaging.limits import ImagingLimits
from consultd.imaging.photos import PhotoPolicy, PhotoRefused, ingest_photo
from consultd.imaging.pixels import read_frame
from consultd.imaging.render import RenderParams, render_pixels
from consultd.imaging.textregions import find_text_regions

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's root: no organisation of ours


def text_regions(path: str) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of likely burned-in text on the first frame of a stored image,
    rendered with its own window (worker process)."""
    decoded = read_frame(path, 0)
    shown = render_pixels(decoded.pixels, decoded.info, RenderParams())
    grey = cv2.cvtColor(shown, cv2.COLOR_RGB2GRAY) if shown.ndim == 3 else shown
    return [(b.x, b.y, b.w, b.h) for b in find_text_regions(grey, max_regions=32)]


def ingest_photo_file(
    src: str,
    dst: str,
    secret: bytes,
    uploader: str,
    limits: ImagingLimits,
    blur_faces: bool = True,
) -> Ingested | Refused:
    """Clean the photo at ``src`` and store it at ``dst`` as a Secondary Capture instance;
    ``blur_faces`` False is the host's override (a photo whose face is the finding)."""
    cleaned = dst + ".photo"
    try:
        policy = PhotoPolicy(
            blur_faces=blur_faces, max_bytes=min(limits.max_file_bytes, PhotoPolicy().max_bytes)
        )
        result = ingest_photo(src, cleaned, policy)
        if isinstance(result, PhotoRefused):
            return Refused(str(result.code), result.reason)
        image = cv2.imread(cleaned, cv2.IMREAD_COLOR)
        if image is None:
            return Refused("malformed", "the cleaned image could not be read back")
    finally:
        Path(cleaned).unlink(missing_ok=True)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    grey = bool(
        np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    )
    pixels = np.ascontiguousarray(rgb[..., 0]) if grey else rgb
    digest = hashlib.sha256(pixels.tobytes()).hexdigest()
    text = bool(result.text_regions)
    ds = _dataset(
        pixels,
        grey,
        study=remap_uid(secret, "consultd:photos"),
        series=remap_uid(secret, "consultd:photos:" + uploader),
        sop=remap_uid(secret, "consultd:photo:" + digest),
        burned_in=text,
    )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    data = ZERO_PREAMBLE + data[128:]
    with open(dst, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    del ds.PixelData  # the JSON model carries a BulkDataURI instead
    json_model = ds.to_json_dict()
    json_model["7FE00010"] = {"vr": "OB", "BulkDataURI": PIXEL_DATA_URI}
    pixel_bytes = pixels.nbytes + (pixels.nbytes & 1)
    offset = len(data) - pixel_bytes
    rows, cols = int(pixels.shape[0]), int(pixels.shape[1])
    warnings = ("text_in_image",) if text else ()
    return Ingested(
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        sop_instance_uid=ds.SOPInstanceUID,
        sop_class_uid=SecondaryCaptureImageStorage,
        transfer_syntax=ExplicitVRLittleEndian,
        modality="OT",
        rows=rows,
        columns=cols,
        frames=1,
        samples_per_pixel=1 if grey else 3,
        bits_allocated=8,
        bits_stored=8,
        pixel_representation=0,
        photometric="MONOCHROME2" if grey else "RGB",
        instance_number=None,
        series_number=None,
        image_position=None,
        image_orientation=None,
        pixel_spacing=None,
        imager_pixel_spacing=None,
        slice_thickness=None,
        rescale_slope=None,
        rescale_intercept=None,
        window_center=(),
        window_width=(),
        lossy=result.source_format == "jpeg",
        burned_in=text,
        deidentified=True,
        dicom_json=json_model,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        pixel_data_offset=offset,
        frame_spans=(((offset, pixels.nbytes),),),
        warnings=warnings + (("faces_blurred",) if result.faces_blurred else ()),
    )


def _dataset(
    pixels: np.ndarray, grey: bool, *, study: str, series: str, sop: str, burned_in: bool
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.StudyDescription = "Lab images and photos"
    ds.SeriesDescription = "Shared photos"
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "consultd photo ingest: metadata dropped, faces pixelated"
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1 if grey else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if grey else "RGB"
    if not grey:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def mask_regions(
    src: str, dst: str, regions: list[tuple[int, int, int, int]], limits: ImagingLimits
) -> Ingested | Refused:
    """Black out ``regions`` (x, y, w, h) in every frame of the stored instance ``src``
    (burned-in names and dates), and store the result at ``dst``, uncompressed, with the
    same UIDs; then inspect it like any upload (``ingest_file``, identity kept: it was
    de-identified already). Worker process."""
    ds = pydicom.dcmread(src)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    pixels = ds.pixel_array.copy()
    frames = pixels if int(ds.get("NumberOfFrames", 1) or 1) > 1 else pixels[None]
    for x, y, w, h in regions:
        frames[:, y : y + h, x : x + w] = (
            0 if ds.PhotometricInterpretation != "MONOCHROME1" else frames.max()
        )
    ds.PixelData = pixels.tobytes()
    ds.BurnedInAnnotation = "NO"
    method = str(ds.get("DeidentificationMethod", "") or "")
    ds.DeidentificationMethod = (method + "; " if method else "") + "burned-in text masked"
    ds.preamble = ZERO_PREAMBLE
    masked = dst + ".masked"
    try:
        ds.save_as(masked, enforce_file_format=True)
        return ingest_file(masked, dst, IngestPolicy(secret=b"", keep_identity=True, limits=limits))
    finally:
        Path(masked).unlink(missing_ok=True)
