"""Imaging: the index of each room's stored DICOM instances.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 04:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imaging_instances",
        sa.Column("room_id", sa.String(length=32), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax", sa.String(length=64), nullable=False),
        sa.Column("blob", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("pixel", sa.JSON(), nullable=False),
        sa.Column("dicom_json", sa.LargeBinary(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.String(length=32), nullable=False),
        sa.Column("uploaded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"]),
        sa.PrimaryKeyConstraint("room_id", "sop_instance_uid"),
    )
    op.create_index("ix_imaging_instances_series", "imaging_instances", ["room_id", "series_uid"])
    op.create_index(
        "ix_imaging_instances_source", "imaging_instances", ["room_id", "source_sha256"]
    )


def downgrade() -> None:
    op.drop_index("ix_imaging_instances_source", table_name="imaging_instances")
    op.drop_index("ix_imaging_instances_series", table_name="imaging_instances")
    op.drop_table("imaging_instances")
