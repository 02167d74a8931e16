"""What a hub sends up (mTLS): its lanes' batches, its device records, and the signed member list it reads back."""

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from cloud_sync import protocol as p
from cloud_sync.register import ingest, memberlog
from cloud_sync.register.auth import HubIdentity
from cloud_sync.register.errors import Invalid
from cloud_sync.register.lanegate import LaneGate
from cloud_sync.register.metrics import RegisterMetrics
from cloud_sync.register.registry import Registry
from cloud_sync.register.routes.common import Callers, decode_json, doc, json_response, lease, read_body


def router(reg: Registry, callers: Callers, fleet_metrics: RegisterMetrics, lanes: LaneGate) -> APIRouter:
    r = APIRouter()
    Hub = Annotated[HubIdentity, Depends(callers.hub)]
    HubCertificate = Annotated[HubIdentity, Depends(callers.hub_certificate)]

    ingest_doc = doc("IngestBatch", "IngestAck", media=p.MSGPACK_CONTENT_TYPE)
    # The readings lane's other body: a catch-up as columns (protocol.ReadingColumns), and the ack that says so.
    ingest_doc["requestBody"]["content"][p.READING_COLUMNS_CONTENT_TYPE] = {
        "schema": {"$ref": "#/components/schemas/ReadingColumns"}
    }
    ingest_doc["responses"]["200"]["headers"] = {
        p.READING_COLUMNS_HEADER: {
            "description": f"1: this register takes readings batches as {p.READING_COLUMNS_CONTENT_TYPE}",
            "schema": {"type": "string", "enum": ["1"]},
        }
    }

    @r.post("/v1/ingest/{lane}", openapi_extra=ingest_doc)
    async def ingest_lane(lane: str, request: Request, who: HubCertificate) -> Response:
        if lane not in p.LANES:
            raise Invalid(f"unknown lane {lane!r}; expected one of {', '.join(p.LANES)}", status=404, code="no_lane")
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding != p.ZSTD_ENCODING:
            raise Invalid("ingest bodies must be sent with 'Content-Encoding: zstd'", status=415, code="encoding")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        columns = ctype == p.READING_COLUMNS_CONTENT_TYPE
        if columns and lane != "readings":
            raise Invalid(f"only the readings lane takes {ctype}", status=415, code="content_type")
        if ctype != p.MSGPACK_CONTENT_TYPE and not columns:
            raise Invalid(
                f"ingest bodies must be {p.MSGPACK_CONTENT_TYPE} (or {p.READING_COLUMNS_CONTENT_TYPE} on the"
                " readings lane)",
                status=415,
                code="content_type",
            )
        body = await read_body(request, p.MAX_INGEST_COMPRESSED_BYTES)
        # The memory inflating may take is held before inflating: the size the frame declares (inflating stops
        # there), or twice the per-request limit for a frame that declares none (honest hubs always declare it).
        lease(request).take(p.inflate_cost(body))
        # Bulk lanes queue for their share of the database pool and threads; the alarm lane has its own of both, for
        # the hub's check in the database as well as the batch (on PostgreSQL in the batch's own transaction).
        engine = reg.urgent_engine if lane == "alarm" else reg.engine
        source = callers.source(request)

        def check(conn: Connection) -> None:
            callers.check_hub(source, who, conn=conn)

        def checked_ingest() -> p.IngestAck:
            return ingest.ingest_body(reg, who, lane, body, engine=engine, check=check, columns=columns)

        ack = await lanes.run(lane, checked_ingest)
        fleet_metrics.ingested(ack)
        resp = json_response(ack)
        resp.headers[p.READING_COLUMNS_HEADER] = "1"  # the hub may send its readings as columns from now on
        return resp

    @r.get(p.ALARM_PING_PATH, status_code=204)
    async def alarm_ping(who: HubCertificate) -> Response:
        """Keeps the hub's alarm connection open: the certificate is verified (issued by the register's CA), nothing
        is read or written, so a fleet's pings cost no database work. A revoked hub's ping is answered too; its
        alarms are refused as ever, in their own transaction. The register's transport answers a ping with a
        verified certificate before it reaches the app (``server._WithTLS``, for its cost), so this route documents
        the reply and refuses a caller without one (401)."""
        settings = callers.settings
        return Response(status_code=204, headers={"Keep-Alive": f"timeout={int(settings.alarm_keep_alive_s)}"})

    @r.post("/v1/devices", openapi_extra=doc("DeviceRecord", "DevicesAck", array=True))
    async def post_devices(request: Request, who: Hub) -> Response:
        records: list[p.DeviceRecord] = decode_json(
            await read_body(request, p.MAX_JSON_BODY_BYTES),
            Annotated[list[p.DeviceRecord], msgspec.Meta(max_length=p.MAX_DEVICES)],  # type: ignore[arg-type]
        )
        n = await run_in_threadpool(ingest.upsert_devices, reg, who, records)
        return json_response(p.DevicesAck(upserted=n))

    @r.get("/v1/member-log", openapi_extra=doc(resp="MemberLogEntry", resp_array=True))
    def hub_member_log(who: Hub, after: Annotated[int, Query(ge=0, le=2**31)] = 0) -> Response:
        """The household's signed member list versions after ``after`` (the hub verifies them itself)."""
        return json_response(memberlog.entries(reg, who.household_id, after=after, limit=memberlog.MAX_PAGE))

    return r
