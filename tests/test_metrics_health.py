from __future__ import annotations

from tests.utils import ServerProcess, closing, connect, http, register


async def test_healthz_metrics_and_security_headers(server: ServerProcess) -> None:
    dr = await register(server.url)
    room = await dr.create_room(lobby=False)
    host = await connect(server.url, room["id"], (await dr.join(room["id"]))["token"])
    async with closing(host):
        await host.wait("joined")
        await host.call("chat", {"id": "m", "text": "x"})
        async with http(server.url) as s:
            async with s.get("/healthz") as r:
                assert r.status == 200 and await r.json() == {"status": "ok"}
            async with s.get("/metrics") as r:
                text = await r.text()
            assert "consultd_connected_clients 1.0" in text
            assert "consultd_rooms_loaded 1.0" in text
            assert 'consultd_events_total{event="chat"} 1.0' in text
            assert 'consultd_event_latency_seconds_bucket{event="chat",le="0.1"} 1.0' in text
            assert "consultd_events_per_second" in text
            async with s.get("/api/me") as r:
                assert r.status == 401
                assert r.headers["Cache-Control"] == "no-store"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
            async with s.post("/api/rooms", data="x", headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 415 and (await r.json())["error"]["code"]
            async with s.post(
                "/api/rooms", data="{not json", headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status in (400, 401)
            # CSRF: a state-changing request from another origin is refused, even signed in.
            async with dr.session.post(
                "/api/rooms", json={"title": "x"}, headers={"Origin": "https://evil.example"}
            ) as r:
                assert r.status == 403
            async with dr.session.post(
                "/api/rooms", data="{bad", headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
            async with dr.session.post("/api/rooms", json={"title": "x" * 100_000}) as r:
                assert r.status == 413


def test_event_histogram_counts_each_value_in_its_le_bucket() -> None:
    from prometheus_client import generate_latest

    from consultd.metrics import Metrics

    m = Metrics()
    for seconds in (0.0005, 0.0006, 0.1, 3.0):  # a value on a bound counts in that bucket
        m.observe("y", seconds)
    text = generate_latest(m.registry).decode()
    for le, n in (("0.0005", 1), ("0.001", 2), ("0.05", 2), ("0.1", 3), ("2.5", 3), ("+Inf", 4)):
        assert f'consultd_event_latency_seconds_bucket{{event="y",le="{le}"}} {n}.0' in text
    assert 'consultd_event_latency_seconds_count{event="y"} 4.0' in text
    assert 'consultd_events_total{event="y"} 4.0' in text
