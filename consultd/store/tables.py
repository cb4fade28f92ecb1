"""SQLAlchemy Core tables: the one description of the schema that queries use.

Migrations in ``migrations/versions`` create these; ``tests/store/test_migrations.py``
checks that the migrated schema and this metadata agree. Times are UNIX seconds (float),
chat timestamps milliseconds.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("specialty", sa.String(200), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("languages", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("lobby", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("host_user_id", sa.String(32), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_by", sa.String(32), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=True),
)

room_invites = sa.Table(
    "room_invites",
    metadata,
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id"), primary_key=True),
    #: Invitations are by e-mail, so a physician can be invited before registering.
    sa.Column("email", sa.String(320), primary_key=True, index=True),
    sa.Column("invited_by", sa.String(32), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

share_codes = sa.Table(
    "share_codes",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id"), nullable=False),
    #: The code's first group: names the code, is not secret.
    sa.Column("lookup", sa.String(5), nullable=False),
    #: HMAC-SHA256 of the secret groups under the server key; the code itself is never stored.
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("max_uses", sa.Integer, nullable=False),
    sa.Column("uses", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(32), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("room_id", "lookup", name="uq_share_codes_room_lookup"),
)

participants = sa.Table(
    "participants",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id"), nullable=False, index=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id"), nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("specialty", sa.String(200), nullable=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    #: SHA-256 of the participant token; NULL once revoked.
    sa.Column("token_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("code_id", sa.String(32), sa.ForeignKey("share_codes.id"), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

chat_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("author_id", sa.String(32), nullable=False),
    sa.Column("author_name", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("room_id", "client_id", name="uq_chat_messages_room_client"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    #: One hash chain per scope: a room id, or ``accounts``.
    sa.Column("scope", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(64), nullable=True),
    sa.Column("room_id", sa.String(32), nullable=True, index=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

annotation_updates = sa.Table(
    "annotation_updates",
    metadata,
    #: The append-only log of accepted Yjs updates per annotation document (one per image).
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id"), primary_key=True),
    sa.Column("doc_id", sa.String(128), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("author_id", sa.String(32), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

imaging_instances = sa.Table(
    "imaging_instances",
    metadata,
    #: One stored (de-identified unless the host kept identity) DICOM instance of a room.
    #: UIDs are the stored ones (remapped per room); the file is a blob named by its SHA-256.
    sa.Column("room_id", sa.String(32), sa.ForeignKey("rooms.id"), primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
    sa.Column("study_uid", sa.String(64), nullable=False),
    sa.Column("series_uid", sa.String(64), nullable=False),
    sa.Column("sop_class_uid", sa.String(64), nullable=False),
    sa.Column("transfer_syntax", sa.String(64), nullable=False),
    sa.Column("blob", sa.String(64), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("frames", sa.Integer, nullable=False),
    sa.Column("instance_number", sa.Integer, nullable=True),
    #: What rendering needs without opening the file (imaging/index.py ``PixelFacts``).
    sa.Column("pixel", sa.JSON, nullable=False),
    #: The instance's DICOM JSON model without bulk data, UTF-8 (the metadata answer).
    sa.Column("dicom_json", sa.LargeBinary, nullable=False),
    #: burned_in (text may be in the pixels), identity_kept (the host opted in).
    sa.Column("flags", sa.JSON, nullable=False),
    #: SHA-256 of the file as uploaded: the same file again is not ingested twice.
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("uploaded_by", sa.String(32), nullable=False),
    sa.Column("uploaded_at", sa.Float, nullable=False),
    sa.Index("ix_imaging_instances_series", "room_id", "series_uid"),
    sa.Index("ix_imaging_instances_source", "room_id", "source_sha256"),
)
