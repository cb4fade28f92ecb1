"""Shared annotations on the images of a consult room.

``schema`` validates one annotation's JSON value (the readable spec is ``SCHEMA.md``);
``measure`` turns an annotation into lengths, angles, areas and ROI statistics computed from
the image (pixel spacing, rescaled pixel values). Both are pure. ``render`` draws them as a
PNG overlay and ``sr`` writes them as a DICOM Structured Report (TID 1500). This package
never imports ``consultd``.

The function ``measure.measure`` is not re-exported here: the name ``annotations.measure``
stays the module. Import it as ``from annotations.measure import measure``.
"""

from annotations.measure import IMAGER_PIXEL_SPACING as IMAGER_PIXEL_SPACING
from annotations.measure import PIXEL_SPACING as PIXEL_SPACING
from annotations.measure import UNCALIBRATED as UNCALIBRATED
from annotations.measure import Calibration as Calibration
from annotations.measure import EmptyRoiError as EmptyRoiError
from annotations.measure import ImageInfo as ImageInfo
from annotations.measure import RoiStats as RoiStats
from annotations.measure import angle_deg as angle_deg
from annotations.measure import ellipse_area as ellipse_area
from annotations.measure import length_mm as length_mm
from annotations.measure import polygon_area as polygon_area
from annotations.measure import polyline_length as polyline_length
from annotations.measure import rectangle_area as rectangle_area
from annotations.measure import roi_mask as roi_mask
from annotations.measure import roi_stats as roi_stats
from annotations.schema import MAX_COORDINATE as MAX_COORDINATE
from annotations.schema import MAX_POINTS as MAX_POINTS
from annotations.schema import MAX_SERIALIZED_BYTES as MAX_SERIALIZED_BYTES
from annotations.schema import MAX_TEXT_CHARS as MAX_TEXT_CHARS
from annotations.schema import Anchor as Anchor
from annotations.schema import Annotation as Annotation
from annotations.schema import AnnotationError as AnnotationError
from annotations.schema import Geometry as Geometry
from annotations.schema import Kind as Kind
from annotations.schema import Point as Point
from annotations.schema import Style as Style
from annotations.schema import in_drawing_order as in_drawing_order
from annotations.schema import validate_annotation as validate_annotation
