"""The audit trail of annotation edits: one event per change, not per update of it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from annotations.document import Applied
from consultd.annotate import service
from consultd.annotate.service import RoomAnnotations

from .test_outbox import Recorder

HOST = SimpleNamespace(id="p-host")
GUEST = SimpleNamespace(id="p-guest")


def _changes(comp: RoomAnnotations, p: SimpleNamespace, **ids: tuple[str, ...]) -> list[dict]:
    events = comp.audit("img", p, Applied(**ids, changed=True))  # type: ignore[arg-type]
    return [e.detail for e in events]


async def test_a_stroke_is_audited_once_and_each_add_delete_and_new_edit_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "AUDIT_BURST_S", 0.05)
    comp = RoomAnnotations(Recorder(), "r1")  # type: ignore[arg-type]
    added = _changes(comp, HOST, added=("s1",))
    assert added == [{"added": ["s1"], "updated": [], "deleted": []}]
    for _ in range(5):  # the stroke's next points: the same change
        assert _changes(comp, HOST, updated=("s1",)) == []
    # Another participant's edit, and the host's edit of another annotation, are changes.
    assert len(_changes(comp, GUEST, updated=("s1",))) == 1
    assert _changes(comp, HOST, updated=("s1", "s2"))[0]["updated"] == ["s1", "s2"]
    assert _changes(comp, HOST, updated=("s2",)) == []
    # A pause longer than the burst: a new change.
    await asyncio.sleep(0.08)
    assert len(_changes(comp, HOST, updated=("s1",))) == 1
    # A delete is always audited, and ends the burst.
    assert _changes(comp, HOST, deleted=("s1",))[0]["deleted"] == ["s1"]
    assert _changes(comp, HOST, added=("s1",))[0]["added"] == ["s1"]
    # Nothing visible changed (a lost last-writer-wins race): nothing to audit.
    assert comp.audit("img", HOST, Applied(changed=True)) == ()  # type: ignore[arg-type]


async def test_a_long_drag_is_audited_again_and_a_reconnect_starts_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "AUDIT_BURST_MAX_S", 0.05)
    comp = RoomAnnotations(Recorder(), "r1")  # type: ignore[arg-type]
    assert len(_changes(comp, HOST, updated=("s1",))) == 1
    assert _changes(comp, HOST, updated=("s1",)) == []
    await asyncio.sleep(0.08)
    assert len(_changes(comp, HOST, updated=("s1",))) == 1
    await comp.participant_disconnected(HOST.id)
    assert len(_changes(comp, HOST, updated=("s1",))) == 1
    await comp.close()
