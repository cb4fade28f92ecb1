"""Shared imaging: DICOM and lab-image ingest, storage, rendering and DICOMweb for consult rooms."""
