"""Seeing the fleet, on the real register over TLS: heartbeats, ``GET /v1/fleet``, ``/metrics`` and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Any

import msgspec
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from cloud_sync import protocol as p
from cloud_sync.register import cli, db, export, fleet, metrics, retention
from cloud_sync.register.app import create_app
from tests.integration.test_register import INGEST_HEADERS, anonymous, batch, bearer, error_of, event
from tests.support.register import HubIdentity, RunningRegister


def heartbeat(version: str = "1.2.3", **lanes: tuple[int, int, int]) -> p.Heartbeat:
    return p.Heartbeat(
        version=version,
        uptime_s=3600.0,
        disk_free_bytes=2 * 1024**3,
        disk_total_bytes=32 * 1024**3,
        store_bytes=50 * 1024**2,
        written_bytes_per_day=300 * 1024**2,
        written_source="block",
        drivers={"mqtt": p.DriverStatus("running"), "ble": p.DriverStatus("restarting", restarts=3)},
        lanes={lane: p.LaneHealth(*v) for lane, v in lanes.items()},  # type: ignore[misc]
    )


def put_heartbeat(reg: RunningRegister, hub: HubIdentity, hb: p.Heartbeat | bytes) -> requests.Response:
    body = hb if isinstance(hb, bytes) else msgspec.json.encode(hb)
    return hub.session().put(
        f"{reg.url}/v1/heartbeat", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )


def ingest(reg: RunningRegister, hub: HubIdentity, lane: str, seqs: range, **kw: Any) -> None:
    resp = hub.session().post(f"{reg.url}/v1/ingest/{lane}", data=batch(hub, lane, seqs, **kw), headers=INGEST_HEADERS)
    assert resp.status_code == 200, resp.text


def test_heartbeat_keeps_the_latest_with_lag_and_the_fleet_is_an_audited_operator_read(
    register_any: RunningRegister,
) -> None:
    reg = register_any
    hub = reg.enroll()
    ingest(reg, hub, "readings", range(1, 6))
    ingest(reg, hub, "alarm", range(1, 3), body=event)
    # Readings: the hub holds up to 8, the register committed 5. Alarm: all in. Events: the hub's cursor says 4 was
    # acknowledged (dead-lettered, say) though the register keeps none: that is not lag.
    assert (
        put_heartbeat(reg, hub, heartbeat("1.0.0", readings=(8, 5, 3), alarm=(2, 2, 0), events=(6, 4, 2))).status_code
        == 204
    )
    assert (
        put_heartbeat(reg, hub, heartbeat("1.0.1", readings=(8, 5, 3), alarm=(2, 2, 0), events=(6, 4, 2))).status_code
        == 204
    )

    support = bearer(reg, reg.api_token("support"))
    resp = support.get(f"{reg.url}/v1/fleet")
    assert resp.status_code == 200, resp.text
    [row] = resp.json()
    assert row["hub_id"] == hub.hub_id and row["online"] is True
    assert row["version"] == "1.0.1"  # the latest heartbeat replaced the first
    assert row["lag"] == {"alarm": 0, "events": 2, "readings": 3, "clips": 0, "diagnostics": 0}
    assert row["drivers"] == {"mqtt": "running", "ble": "restarting"}
    assert row["disk_free_bytes"] == 2 * 1024**3 and row["written_bytes_per_day"] == 300 * 1024**2
    assert [a for a in reg.reg.audit_entries(None, limit=1000) if a["action"] == "fleet.read"]

    # Offline after the window: a tiny window makes the hub offline without waiting.
    assert support.get(f"{reg.url}/v1/fleet", params={"online_minutes": 1e-6}).json()[0]["online"] is False

    household_token = reg.api_token("household", hub.household_id)
    refused = bearer(reg, household_token).get(f"{reg.url}/v1/fleet")
    assert (refused.status_code, error_of(refused)) == (403, "role_forbidden")
    assert anonymous(reg).get(f"{reg.url}/v1/fleet").status_code == 401


def test_heartbeat_bad_input_is_refused_precisely(register: RunningRegister) -> None:
    hub = register.enroll()
    bad_json = put_heartbeat(register, hub, b"{not json")
    assert (bad_json.status_code, error_of(bad_json)) == (400, "bad_json")
    wrong = msgspec.json.encode({**msgspec.to_builtins(heartbeat()), "lanes": {"nolane": [1, 1, 0]}})
    invalid = put_heartbeat(register, hub, wrong)
    assert (invalid.status_code, error_of(invalid)) == (422, "invalid")
    assert "lanes" in invalid.json()["detail"]
    negative = msgspec.json.encode({**msgspec.to_builtins(heartbeat()), "disk_free_bytes": -1})
    assert put_heartbeat(register, hub, negative).status_code == 422
    huge = put_heartbeat(register, hub, b" " * (p.MAX_HEARTBEAT_BYTES + 1))
    assert (huge.status_code, error_of(huge)) == (413, "too_large")
    # A newer hub's extra field is ignored, not refused.
    newer = msgspec.json.encode({**msgspec.to_builtins(heartbeat()), "cpu_temp_c": 51.0})
    assert put_heartbeat(register, hub, newer).status_code == 204
    no_cert = anonymous(register).put(f"{register.url}/v1/heartbeat", data=msgspec.json.encode(heartbeat()))
    assert no_cert.status_code == 401
    assert register.reg.hubs(hub.household_id)  # and nothing else changed


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    for s in families[name].samples:
        if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {name}{suffix} {labels}")


def test_metrics_parse_aggregate_only_and_need_an_operator_token(register_any: RunningRegister) -> None:
    reg = register_any
    hubs = [reg.enroll(), reg.enroll()]
    ingest(reg, hubs[0], "readings", range(1, 11))
    ingest(reg, hubs[0], "readings", range(5, 13))  # 5..10 are duplicates
    ingest(reg, hubs[1], "alarm", range(1, 2), body=event)
    assert put_heartbeat(reg, hubs[0], heartbeat("1.0.0", readings=(20, 12, 8))).status_code == 204
    assert put_heartbeat(reg, hubs[1], heartbeat("1.1.0", alarm=(1, 1, 0))).status_code == 204
    household = hubs[0].household_id
    household_reader = bearer(reg, reg.api_token("household", household))
    assert household_reader.get(f"{reg.url}/v1/households/{household}/hubs").status_code == 200
    assert anonymous(reg).get(f"{reg.url}/no/such/{household}").status_code == 404
    assert anonymous(reg).request("BREW", f"{reg.url}/v1/health").status_code == 405

    refused = household_reader.get(f"{reg.url}/metrics")
    assert (refused.status_code, error_of(refused)) == (403, "role_forbidden")
    assert anonymous(reg).get(f"{reg.url}/metrics").status_code == 401
    resp = bearer(reg, reg.api_token("admin")).get(f"{reg.url}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for h in hubs:
        assert h.household_id not in text and h.hub_id not in text

    f = _families(text)
    assert _value(f, "kotihub_register_hubs") == 2
    assert _value(f, "kotihub_register_hubs_online") == 2
    assert _value(f, "kotihub_register_lane_lag_items", lane="readings", stat="max") == 8
    assert _value(f, "kotihub_register_lane_lag_items", lane="alarm", stat="sum") == 0
    assert _value(f, "kotihub_register_hubs_lagging", lane="readings") == 1
    assert _value(f, "kotihub_register_hubs_by_version", version="1.1.0") == 1
    assert _value(f, "kotihub_register_hubs_driver_down") == 2  # "restarting" is down
    assert _value(f, "kotihub_register_hubs_low_disk") == 2  # 2 of 32 GiB free
    assert _value(f, "kotihub_register_ingest_items", "_total", lane="readings", outcome="stored") == 12
    assert _value(f, "kotihub_register_ingest_items", "_total", lane="readings", outcome="duplicate") == 6
    assert _value(f, "kotihub_register_ingest_items", "_total", lane="alarm", outcome="stored") == 1
    assert _value(f, "kotihub_register_ingest_batches", "_total", lane="readings") == 2
    assert _value(f, "kotihub_register_requests", "_total", route="/v1/ingest/{lane}", method="POST", status="2xx") == 3
    assert _value(f, "kotihub_register_requests", "_total", route="/v1/heartbeat", method="PUT", status="2xx") == 2
    assert _value(f, "kotihub_register_requests", "_total", route="/metrics", method="GET", status="4xx") == 2
    assert _value(f, "kotihub_register_requests", "_total", route="unmatched", method="GET", status="4xx") == 1
    assert _value(f, "kotihub_register_requests", "_total", route="/v1/health", method="other", status="4xx") == 1
    hh = "/v1/households/{h}/hubs"
    assert _value(f, "kotihub_register_requests", "_total", route=hh, method="GET", status="2xx") == 1
    assert _value(f, "kotihub_register_request_duration_seconds", "_count", route="/v1/ingest/{lane}") == 3
    # Route labels come from a closed set, the app's route templates: no ids of any kind.
    app = create_app(reg.settings, registry=reg.reg)
    templates = _templates(app.routes)
    routes = {s.labels["route"] for fam in f.values() for s in fam.samples if "route" in s.labels}
    assert routes <= templates | {"unmatched"}, routes - templates


def _templates(routes: list[Any]) -> set[str]:
    """Every route's template, those of included routers too (newer FastAPI keeps a router as one entry)."""
    out: set[str] = set()
    for r in routes:
        inner = getattr(r, "original_router", None)
        out |= _templates(inner.routes) if inner is not None else {getattr(r, "path", "")}
    return out


def test_cli_fleet_table_and_json_are_audited(register: RunningRegister, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = register.enroll()
    silent = register.enroll()  # enrolled, never sent a heartbeat
    assert put_heartbeat(register, hub, heartbeat("2.0.0", readings=(3, 1, 2))).status_code == 204
    state = str(register.settings.state_dir)

    def run(*args: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["--state", state, "fleet", *args]) == 0
        return out.getvalue()

    rows = json.loads(run("--json"))
    assert {r["hub_id"] for r in rows} == {hub.hub_id, silent.hub_id}
    [mine] = [r for r in rows if r["hub_id"] == hub.hub_id]
    assert (mine["version"], mine["lag"]["readings"], mine["online"]) == ("2.0.0", 2, True)
    text = run()
    line = next(x for x in text.splitlines() if x.startswith(hub.hub_id))
    assert "online" in line and "2.0.0" in line and "0/0/2/0/0" in line and "ble:restarting" in line
    assert "2 hubs, 2 online, 0 offline" in text
    actors = [a["actor"] for a in register.reg.audit_entries(None, limit=1000) if a["action"] == "fleet.read"]
    assert len(actors) == 2 and all(a.startswith("cli:") for a in actors)
    with pytest.raises(SystemExit) as refused, contextlib.redirect_stderr(io.StringIO()):
        cli.main(["--state", state, "fleet", "--online-minutes", "0"])
    assert refused.value.code == 2


def test_a_households_hub_health_is_exported_and_erased_with_it(register: RunningRegister) -> None:
    hub = register.enroll()
    other = register.enroll()
    for h in (hub, other):
        assert put_heartbeat(register, h, heartbeat("3.0.0", readings=(1, 1, 0))).status_code == 204
    records = list(export.export_household(register.reg, hub.household_id, actor="test:export"))
    [health] = [r for r in records if r["type"] == "hub_health"]
    assert health["hub_id"] == hub.hub_id and health["version"] == "3.0.0"
    summary = retention.erase_household(register.reg, hub.household_id, actor="test:erase", close=True)
    assert summary["hub_health"] == 1
    rows = fleet.fleet(register.reg, actor="test:fleet")
    assert [r["hub_id"] for r in rows] == [other.hub_id]  # the other household's hub is untouched
    assert rows[0]["version"] == "3.0.0"


def test_versions_beyond_the_most_common_are_counted_as_other(register: RunningRegister) -> None:
    # The version is the hub's word: 25 hubs each claiming their own must not make 25 series.
    hubs = [register.enroll() for _ in range(3)]
    for i, h in enumerate(hubs):
        assert put_heartbeat(register, h, heartbeat("1.0.0" if i else "made-up")).status_code == 204
    now = time.time()
    with register.reg.engine.begin() as conn:
        for i in range(22):
            row = {"id": f"hub_x{i}", "household_id": hubs[0].household_id, "name": "", "cert_sha256": "0" * 64}
            conn.execute(insert(db.hubs).values(**row, enrolled_at=now, last_seen=now, revoked=False))
            conn.execute(
                insert(db.hub_health).values(
                    hub_id=f"hub_x{i}", household_id=hubs[0].household_id, received_at=now, version=f"9.{i}",
                    uptime_s=1.0, disk_free_bytes=1, disk_total_bytes=1, store_bytes=1, drivers_down=0, body={},
                )
            )  # fmt: skip
    text = metrics.RegisterMetrics(register.reg).exposition().decode()
    samples = _families(text)["kotihub_register_hubs_by_version"].samples
    assert len(samples) == metrics.MAX_VERSIONS + 1
    by_version = {s.labels["version"]: s.value for s in samples}
    assert by_version["1.0.0"] == 2  # the most common first
    assert by_version["other"] == 24 - metrics.MAX_VERSIONS  # 24 versions, one hub each beyond the first 20
    assert sum(by_version.values()) == 25


def test_the_alarm_path_each_hub_reports_is_in_the_fleet_view_and_metrics(register_any: RunningRegister) -> None:
    reg = register_any
    kept, failing, resting, older = (reg.enroll() for _ in range(4))
    paths = {
        kept: p.AlarmPathHealth(kept_open=True, pings=12, ping_ms=42.0),
        failing: p.AlarmPathHealth(kept_open=False, pings=3, ping_failures=2, failing=True, ping_ms=300.0),
        resting: p.AlarmPathHealth(pings=5, ping_ms=900.0, listener="resting"),
    }
    for hub, path in paths.items():
        hb = msgspec.structs.replace(heartbeat(), alarm_path=path)
        assert put_heartbeat(reg, hub, hb).status_code == 204
    assert put_heartbeat(reg, older, heartbeat()).status_code == 204  # a hub that does not report it

    rows = {r["hub_id"]: r for r in fleet.fleet(reg.reg, actor="test:fleet")}
    assert rows[kept.hub_id]["alarm_path"]["ping_ms"] == 42.0 and rows[older.hub_id]["alarm_path"] is None
    lines = {line.split()[0]: line for line in fleet.table(list(rows.values())).splitlines()}
    assert "42 ms kept" in lines[kept.hub_id]
    assert "FAILING" in lines[failing.hub_id]
    assert "main URL" in lines[resting.hub_id]

    f = _families(metrics.RegisterMetrics(reg.reg).exposition().decode())
    assert _value(f, "kotihub_register_hubs_alarm_path_failing") == 2  # the failed ping and the resting listener
    name = "kotihub_register_hub_alarm_ping_ms"
    assert _value(f, name, "_bucket", le="25.0") == 0
    assert _value(f, name, "_bucket", le="50.0") == 1
    assert _value(f, name, "_bucket", le="500.0") == 2
    assert _value(f, name, "_bucket", le="1000.0") == 3
    assert _value(f, name, "_bucket", le="+Inf") == 3  # the older hub is in none
    assert _value(f, name + "_gsum") == 1242.0  # the text format carries a gauge histogram's sum as a gauge

    # The hub's word, bounded like the rest of the heartbeat: a round trip of days or an unknown state is refused.
    bad = msgspec.to_builtins(heartbeat())
    for path in ({"ping_ms": 1e9}, {"listener": "elsewhere"}, {"pings": -1}):
        resp = put_heartbeat(reg, kept, msgspec.json.encode({**bad, "alarm_path": path}))
        assert resp.status_code == 422, (path, resp.text)
    after = {r["hub_id"]: r for r in fleet.fleet(reg.reg, actor="test:fleet")}
    assert after[kept.hub_id]["alarm_path"] == rows[kept.hub_id]["alarm_path"]  # nothing of them was kept
