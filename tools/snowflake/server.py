"""Snowflake-protocol server for local dev and tests: fakesnow (Snowflake SQL on DuckDB),
adapted so the Node `snowflake-sdk` 3.x runs against it unchanged.

fakesnow's server speaks the protocol the Python connector expects. The Node SDK differs:
  * it reads results only as a JSON `rowset` (arrays of strings), never Arrow `rowsetBase64`;
  * it needs `returned`, a `masterToken` and token validities, or it drops the session;
  * it retries HTTP 5xx for minutes, so fakesnow's 500 on unsupported SQL looks like a hang;
  * it calls endpoints fakesnow lacks (telemetry, token renewal, result fetch by query id).
This file wraps fakesnow's handlers and fixes up their JSON; the SQL engine is untouched.

Run: <venv>/bin/python tools/snowflake/server.py --host 127.0.0.1 --port 8765 [--db-path DIR]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import itertools
import json
import logging
import os
import re
import secrets
import warnings
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import fakesnow.server as fs
import fakesnow.transforms as fs_transforms
import pyarrow as pa
import uvicorn
from fakesnow.instance import FakeSnow
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from sqlglot import Expr, exp
from starlette.routing import Route

log = logging.getLogger("snowflake-local")

# Login parameters per session token: Snowflake echoes session parameters in every query
# response, and the SDK reads some of them there (eg JS_TREAT_INTEGER_AS_BIGINT).
session_params: dict[str, list[dict[str, Any]]] = {}
# Recent results by query id, for GET /queries/<id>/result and query status (async use).
results: OrderedDict[str, dict[str, Any]] = OrderedDict()
MAX_CACHED_RESULTS = 500
session_ids = itertools.count(1)
# Snowflake's defaults, sent with every result like Snowflake does: the SDK formats TIME values
# and any value fetched as a string with them (TIME comes back as 'HH24:MI:SS', like Snowflake).
DEFAULT_PARAMETERS = [
    {"name": "TIMEZONE", "value": "Etc/UTC"},  # fakesnow runs DuckDB in UTC
    {"name": "DATE_OUTPUT_FORMAT", "value": "YYYY-MM-DD"},
    {"name": "TIME_OUTPUT_FORMAT", "value": "HH24:MI:SS"},
    {"name": "TIMESTAMP_OUTPUT_FORMAT", "value": "YYYY-MM-DD HH24:MI:SS.FF3 TZHTZM"},
    {"name": "TIMESTAMP_NTZ_OUTPUT_FORMAT", "value": "YYYY-MM-DD HH24:MI:SS.FF3"},
    {"name": "TIMESTAMP_LTZ_OUTPUT_FORMAT", "value": ""},
    {"name": "TIMESTAMP_TZ_OUTPUT_FORMAT", "value": ""},
    {"name": "BINARY_OUTPUT_FORMAT", "value": "HEX"},
]

# The Node SDK binds JS non-integers as REAL; fakesnow would pass them on as strings.
_from_binding = fs.from_binding
fs.from_binding = lambda b: float(b["value"]) if b["type"] == "REAL" and b["value"] is not None else _from_binding(b)


# fakesnow runs a MERGE as CREATE TEMPORARY TABLE merge_candidates + DML, and records every created
# table's comment (None here) in its _fs_global catalog: a second database, so inside BEGIN … COMMIT
# DuckDB refuses the MERGE ("a single transaction can only write to a single attached database").
# A temporary table without a comment has nothing to record.
_extract_comment_on_table = fs_transforms.extract_comment_on_table


def _extract_comment_on_table_keeping_temp_tables_local(expression: Expr) -> Expr:
    new = _extract_comment_on_table(expression)
    comment = new.args.get("table_comment")
    if comment and comment[1] is None and isinstance(new, exp.Create) and new.find(exp.TemporaryProperty):
        del new.args["table_comment"]
    return new


fs_transforms.extract_comment_on_table = _extract_comment_on_table_keeping_temp_tables_local

# Governance statements (src/stores/snowflake-governance/) have no meaning on DuckDB: fakesnow has no
# roles, grants, policies, tags, Time Travel, backups or ACCOUNT_USAGE (and cannot even parse some).
# Each kind is listed here and answered "Statement executed successfully." without running (fakesnow's
# own nop_regexes match only after its parser has failed on them); anything else still fails loudly.
GOVERNANCE_NO_OPS = [
    r"\s*(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(DATABASE\s+)?ROLE\b",
    r"\s*(GRANT|REVOKE)\s",
    r"\s*(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(MASKING\s+POLICY|ROW\s+ACCESS\s+POLICY|TAG|BACKUP\s+POLICY|BACKUP\s+SET)\b",
    r"\s*ALTER\s+(TABLE|VIEW)\s+\S+\s+MODIFY\s+COLUMN\s+\S+\s+(SET|UNSET)\s+(MASKING\s+POLICY|TAG)\b",
    r"\s*ALTER\s+(TABLE|VIEW)\s+\S+\s+(ADD|DROP)\s+ROW\s+ACCESS\s+POLICY\b",
    r"\s*ALTER\s+(TABLE|VIEW|SCHEMA|DATABASE)\s+\S+\s+(SET|UNSET)\s+(TAG|DATA_RETENTION_TIME_IN_DAYS)\b",
    r"\s*CREATE\s+(OR\s+REPLACE\s+)?SECURE\s+VIEW\s+[\s\S]*\bSNOWFLAKE\.ACCOUNT_USAGE\.",
]

async def json_body(request: Request) -> dict[str, Any]:
    body = await request.body()  # Starlette caches it, so fakesnow's handler can read it again
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body) if body else {}


def brief(text: str, limit: int = 200) -> str:
    """One log line per request, however the SQL is laid out."""
    return " ".join(text.split())[:limit]


def failure(code: str, message: str, status: int = 200, **data: Any) -> JSONResponse:
    # `data` must be an object: the SDK reads data.queryId even from failed responses.
    return JSONResponse(
        {"data": {"errorCode": code, **data}, "code": code, "message": message, "success": False},
        status_code=status,
    )


async def login(request: Request) -> Response:
    sent_data = (await json_body(request)).get("data", {})
    sent = sent_data.get("SESSION_PARAMETERS", {})
    try:
        response = await fs.login_request(request)  # auth is not checked: any user/password logs in
    except Exception as e:  # eg a bad database name: fail the login instead of a 500 the SDK retries
        log.exception("login failed")
        return failure("390100", f"login failed: {type(e).__name__}: {e}")
    body = json.loads(response.body)
    data = body["data"]
    token = data["token"]
    session_params[token] = [{"name": k, "value": v} for k, v in sent.items() if k != "FAKESNOW_DB_PATH"]
    data.update(
        # Without these the SDK's token info is "empty" and it treats the session as gone.
        masterToken=secrets.token_urlsafe(32),
        validityInSeconds=3600,
        masterValidityInSeconds=4 * 3600,
        sessionId=next(session_ids),
        idToken=None,
        mfaToken=None,
    )
    data["sessionInfo"].update(
        warehouseName=request.query_params.get("warehouse"),
        roleName=request.query_params.get("roleName") or "ACCOUNTADMIN",
    )
    # The Node SDK stages array binds whose count exceeds this threshold (PUT to a temporary stage,
    # unsupported here); fakesnow's 0 means "never" to the Python connector but "always" to Node.
    params = [p for p in data["parameters"] if p["name"] != "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD"]
    params.append({"name": "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD", "value": 2**31 - 1})
    data["parameters"] = params + DEFAULT_PARAMETERS + session_params[token]
    info = data["sessionInfo"]
    log.info("login user=%s database=%s schema=%s", sent_data.get("LOGIN_NAME"), info["databaseName"], info["schemaName"])
    return JSONResponse(body)


NO_OP_SQL = "SELECT 'Statement executed successfully.' AS \"status\""


def is_governance_no_op(sql: str) -> bool:
    return any(re.match(p, sql, re.IGNORECASE) for p in GOVERNANCE_NO_OPS)


async def query(request: Request) -> Response:
    body = await json_body(request)
    sql = str(body.get("sqlText", ""))
    if is_governance_no_op(sql):
        log.info("governance no-op (enforced only by a real Snowflake): %s", brief(sql))
        # fakesnow reads the cached body again: hand it the no-op statement instead
        raw = json.dumps({**body, "sqlText": NO_OP_SQL, "bindings": None}).encode()
        request._body = gzip.compress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw  # noqa: SLF001
    try:
        return await run_query(request, sql)
    except Exception as e:  # a bug here or in fakesnow: fail this statement, not the HTTP request
        log.exception("query crashed: %s", brief(sql))
        return failure("000603", f"local server failed: {type(e).__name__}: {e}", sqlState="XX000")


async def run_query(request: Request, sql: str) -> Response:
    response = await fs.query_request(request)
    body = json.loads(response.body)
    data = body.get("data") or {}
    if response.status_code == 401:
        return response  # unknown session token: the SDK maps 401 + 390104 to "log in again"
    if not body.get("success"):
        # fakesnow answers unsupported SQL with HTTP 500, which the SDK would retry for minutes;
        # Snowflake reports failed statements as HTTP 200 with success=false.
        log.info("query failed %s: %s: %s", body.get("code"), brief(sql), brief(str(body.get("message")), 300))
        code = str(body.get("code") or "000603")
        return failure(code, str(body.get("message")), sqlState=data.get("sqlState") or "42000")
    if "rowtype" not in data:
        return response  # PUT/GET stage responses carry no result set
    if "rowsetBase64" in data:
        data["rowset"] = to_json_rowset(data.pop("rowsetBase64"), data["rowtype"])
        data["queryResultFormat"] = "json"
    data["returned"] = len(data["rowset"])
    data["version"] = 1  # result version 1: TIMESTAMP_TZ values are "<epoch.fraction> <tz index>"
    data["parameters"] = DEFAULT_PARAMETERS + session_params.get(fs.to_token(request), [])
    log.info("query ok rows=%d: %s", data["returned"], brief(sql))
    if qid := data.get("queryId"):
        results[qid] = data
        while len(results) > MAX_CACHED_RESULTS:
            results.popitem(last=False)
    return JSONResponse(body)


def to_json_rowset(b64: str, rowtype: list[dict[str, Any]]) -> list[list[str | None]]:
    """Decode fakesnow's Arrow batch (already in Snowflake's Arrow layout) into JSON rowset strings."""
    if not b64:
        return []
    table = pa.ipc.open_stream(base64.b64decode(b64)).read_all()
    columns = [
        [to_json_value(v, col["type"], col.get("scale") or 0) for v in table.column(i).to_pylist()]
        for i, col in enumerate(rowtype)
    ]
    return [list(row) for row in zip(*columns)]


EPOCH_DAY = datetime.date(1970, 1, 1)


def to_json_value(v: Any, sf_type: str, scale: int) -> str | None:
    """One value in Snowflake's JSON result encoding (what the SDK's column converters parse)."""
    if v is None:
        return None
    if sf_type == "boolean":
        return "1" if v else "0"
    if sf_type == "date":  # days since the epoch
        return str((v - EPOCH_DAY).days)
    if sf_type == "time":  # Arrow: nanoseconds since midnight -> seconds with `scale` fraction digits
        return seconds(v, scale)
    if sf_type.startswith("timestamp"):  # Arrow struct {epoch, fraction[, timezone]}
        if v["epoch"] is None:  # fakesnow marks NULL timestamps inside the struct, not on it
            return None
        text = seconds(v["epoch"] * 1_000_000_000 + v["fraction"], scale)
        # TIMESTAMP_TZ appends the UTC offset in minutes + 1440
        return f"{text} {v['timezone']}" if sf_type == "timestamp_tz" else text
    if sf_type == "fixed":
        return format(v, "f") if isinstance(v, Decimal) else str(v)
    if sf_type == "real":
        if v != v:
            return "NaN"
        return {float("inf"): "Infinity", float("-inf"): "-Infinity"}.get(v, repr(float(v)))
    if sf_type == "binary":
        return bytes(v).hex().upper()
    return v if isinstance(v, str) else json.dumps(v)


def seconds(nanos: int, scale: int) -> str:
    """Epoch (or midnight) nanoseconds as seconds with `scale` fraction digits, eg 1700000000.123000000."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 1_000_000_000)
    digits = f"{frac:09d}"[:scale]
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


async def session(request: Request) -> Response:
    """Logout (POST /session?delete=true) and heartbeat."""
    if request.query_params.get("delete") == "true":
        try:
            token = fs.to_token(request)
        except fs.ServerError:
            token = ""
        session_params.pop(token, None)
        if conn := fs.sessions.pop(token, None):
            log.info("logout")
            try:
                conn.close()  # releases the DuckDB connection and any open transaction
            except Exception:  # already closed
                pass
        return JSONResponse({"data": None, "code": None, "message": None, "success": True})
    return await fs.session(request)


async def token_request(request: Request) -> Response:
    # Session tokens never expire here, so "renewal" hands back the same token.
    token = (await json_body(request)).get("oldSessionToken") or fs.to_token(request)
    return JSONResponse(
        {
            "data": {
                "sessionToken": token,
                "validityInSecondsST": 3600,
                "masterToken": secrets.token_urlsafe(32),
                "validityInSecondsMT": 4 * 3600,
            },
            "success": True,
        }
    )


async def query_result(request: Request) -> Response:
    qid = request.path_params["qid"]
    if data := results.get(qid):
        return JSONResponse({"data": data, "code": None, "message": None, "success": True})
    return failure("000709", f"Statement {qid} not found", queryId=qid, sqlState="02000")


async def query_status(request: Request) -> Response:
    # Every query runs synchronously, so a known query id has always succeeded.
    qid = request.path_params["qid"]
    queries = [{"id": qid, "status": "SUCCESS"}] if qid in results else []
    return JSONResponse({"data": {"queries": queries}, "success": True})


async def ok(_: Request) -> Response:
    return JSONResponse({"data": None, "code": None, "message": None, "success": True})


async def unsupported(request: Request) -> Response:
    log.warning("unsupported endpoint %s %s", request.method, request.url.path)
    return failure("000404", f"fakesnow local server does not support {request.url.path}", status=404)


app = Starlette(
    routes=[
        Route("/session/v1/login-request", login, methods=["POST"]),
        Route("/session", session, methods=["POST"]),
        Route("/session/heartbeat", session, methods=["POST"]),
        Route("/session/token-request", token_request, methods=["POST"]),
        Route("/queries/v1/query-request", query, methods=["POST"]),
        Route("/queries/v1/abort-request", ok, methods=["POST"]),
        Route("/queries/{qid}/abort-request", ok, methods=["POST"]),
        Route("/queries/{qid}/result", query_result, methods=["GET"]),
        Route("/monitoring/queries/{qid}", query_status, methods=["GET"]),
        Route("/telemetry/send", ok, methods=["POST"]),
        Route("/fs_bucket/{path:path}", fs.bucket_upload, methods=["PUT"]),
        Route("/{path:path}", unsupported, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--db-path", help="directory for the DuckDB files (one per database); in-memory if unset")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per statement comes from this file; fakesnow's own log would repeat it (twice,
    # through uvicorn's handlers and the root logger), so keep only its warnings and tracebacks.
    fs.logger.handlers = []
    fs.logger.setLevel(logging.WARNING)
    # DuckDB's performance hint on every fakesnow result; nothing to act on here.
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    if args.db_path:
        os.makedirs(args.db_path, exist_ok=True)
        # Logins share this instance, so every session sees the same tables, kept on disk.
        fs.shared_fs = FakeSnow(db_path=args.db_path)
    log.info("listening on http://%s:%d (data: %s)", args.host, args.port, args.db_path or "in memory")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
