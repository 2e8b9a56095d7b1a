"""An MCP server for tether's tests: the official Python SDK (PyPI `mcp`) on its Streamable HTTP
transport, at /mcp on 127.0.0.1.

    python mcp_server.py --port 0 [--json-response] [--stateless] [--calls-log FILE]
                         [--name NAME] [--requests-log FILE] [--cancel-log FILE]
                         [--event-store | --event-store-file FILE] [--retry-ms MS] [--slow-count]

Prints `listening PORT` (flushed) once the socket is bound and listening; with --port 0 that is the
port the kernel chose. Every tool call the server actually executes appends one line to the calls
log: {"args": {...}, "name": "...", "session": "<Mcp-Session-Id or null>"} (keys sorted), flushed
before the tool runs, so a test can prove that a denied call never reached the server. With
--name NAME each line also has "replica": NAME.

--requests-log FILE: one JSON line per HTTP request the server receives (written and flushed before
the SDK sees the request, so also for requests it then refuses with 404):
  {"method","path","session","last_event_id","protocol_version","replica","mono_ms","wall_ms"}
session, last_event_id and protocol_version are the Mcp-Session-Id, Last-Event-ID and
MCP-Protocol-Version headers as received (null when absent); mono_ms/wall_ms are CLOCK_MONOTONIC and
CLOCK_REALTIME in milliseconds (floats).

--cancel-log FILE: one JSON line per
  {"event":"disconnect",...}  the ASGI server (uvicorn) told the app that the client connection of a
                              request went away (`http.disconnect` from `receive`) before the
                              response was complete: the observable for "the upstream connection
                              was closed mid-call"; it is there in every mode. Fields: method, path,
                              session, replica, mono_ms, wall_ms.
  {"event":"cancelled",...}   a slow_count call was cancelled (its task got the cancellation
                              exception) after `sent` progress notifications. The SDK cancels a
                              tool on disconnect only on the 2026-07-28 wire; on the 2025 wire a
                              disconnection is not a cancellation and the tool runs on.
  {"event":"finished",...}    a slow_count call ran to its end after `sent` progress notifications
                              and is about to return its result (whether or not anyone still
                              listens): the observable for "the tool kept running".

--event-store: resumability with an in-memory event store (the SDK's wheel ships only the abstract
EventStore; its in-memory example lives in the SDK repository, so MemoryEventStore below is written
here). SSE streams then begin with a priming event (id, empty data) and a GET with Last-Event-ID
replays the stream after that id. --event-store-file FILE: the same, also appended to FILE (one
JSON line per event) and loaded from it at start, so the events outlive a restart. The sessions do
not: they live in the SDK's process memory, so after a restart every old Mcp-Session-Id answers 404
and no replay can reach the stored events. --retry-ms MS: the `retry:` the priming event carries
(the SDK client waits that long before it reconnects; its default without one is 1000 ms).

Tools (all deterministic):
  echo(text)            -> text
  delete_user(id: int)  -> "deleted user ID"
  exec_sql(query)       -> "executed: QUERY"
  get_weather(city)     -> "weather in CITY: sunny, 21 C"
  leak_secret()         -> "the key is " + SECRET (a fixed fake API key)
  count(n: int)         -> "counted N", after n progress notifications (when the client sent a
                           progress token) and n log notifications "count I", 20 ms apart; on
                           an SSE answer each one is its own event before the result.
  slow_count(n: int, ms: int, close_after: int = 0)     (only with --slow-count: the default
                           tools/list stays the six tools above, which tests compare exactly)
                        -> "counted N", after n progress notifications "step I", ms apart (no log
                           notifications). close_after K > 0: after the K-th notification the
                           server closes the call's SSE stream (the SDK's close_sse_stream, a no-op
                           without an event store) and goes on, so the client must resume with
                           GET + Last-Event-ID to see the rest. Cancellation goes to --cancel-log.
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
import uuid

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter

# The fake secret leak_secret() returns: "sk-" and 24 alphanumerics (tests/common/mcp.rs has it too).
SECRET = "sk-TETHERtest0123456789abcd"

CALLS_LOG = None
REQUESTS_LOG = None
CANCEL_LOG = None
NAME = None
_LOG_LOCK = threading.Lock()


def now_ms() -> dict:
    """Both clocks in milliseconds: CLOCK_MONOTONIC (what a Rust `Instant` reads on Linux, so a test
    can compare it with its own reading) and CLOCK_REALTIME."""
    return {
        "mono_ms": time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e6,
        "wall_ms": time.clock_gettime_ns(time.CLOCK_REALTIME) / 1e6,
    }


def append(path: str | None, obj: dict) -> None:
    """Appends one sorted-key JSON line to `path` and flushes it (nothing when path is None)."""
    if path is None:
        return
    line = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    with _LOG_LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


def record(name: str, args: dict, ctx: Context) -> None:
    """Appends one line for an executed call to the calls log (when there is one)."""
    headers = ctx.headers or {}
    entry = {"name": name, "args": args, "session": headers.get("mcp-session-id")}
    if NAME is not None:
        entry["replica"] = NAME
    append(CALLS_LOG, entry)


class MemoryEventStore(EventStore):
    """Every event of every stream, in order, in memory; with `path`, also appended to that file as
    JSON lines and loaded from it at start. Event ids are unique across processes (a random
    per-process prefix and a counter), so ids from before a restart never collide with new ones."""

    def __init__(self, path: str | None = None) -> None:
        self.events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []
        self.path = path
        self.prefix = uuid.uuid4().hex[:8]
        self.n = 0
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    e = json.loads(line)
                    msg = e["message"]
                    parsed = None if msg is None else jsonrpc_message_adapter.validate_python(msg)
                    self.events.append((e["id"], e["stream"], parsed))

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        self.n += 1
        event_id = f"{self.prefix}-{self.n}"
        self.events.append((event_id, stream_id, message))
        if self.path:
            dumped = None if message is None else message.model_dump(mode="json", by_alias=True, exclude_none=True)
            append(self.path, {"id": event_id, "stream": stream_id, "message": dumped})
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        index = next((i for i, e in enumerate(self.events) if e[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, sid, message in self.events[index + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def logged(app):
    """The ASGI app wrapped so that every HTTP request is written to the requests log and a client
    disconnection before the response completed is written to the cancel log."""

    async def wrapper(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        about = {
            "method": scope["method"],
            "path": scope["path"],
            "session": headers.get("mcp-session-id"),
            "replica": NAME,
        }
        append(
            REQUESTS_LOG,
            {
                **about,
                "last_event_id": headers.get("last-event-id"),
                "protocol_version": headers.get("mcp-protocol-version"),
                **now_ms(),
            },
        )
        complete = False
        noted = False

        async def watched_send(message):
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        async def watched_receive():
            nonlocal noted
            message = await receive()
            if message["type"] == "http.disconnect" and not complete and not noted:
                noted = True
                append(CANCEL_LOG, {"event": "disconnect", **about, **now_ms()})
            return message

        await app(scope, watched_receive, watched_send)

    return wrapper


mcp = MCPServer("tether-test-server", version="1")


@mcp.tool()
async def echo(text: str, ctx: Context) -> str:
    """Returns its text."""
    record("echo", {"text": text}, ctx)
    return text


@mcp.tool()
async def delete_user(id: int, ctx: Context) -> str:
    """Deletes a user (pretends to): what a deny rule should stop."""
    record("delete_user", {"id": id}, ctx)
    return f"deleted user {id}"


@mcp.tool()
async def exec_sql(query: str, ctx: Context) -> str:
    """Runs SQL (pretends to): what a deny or hide rule should stop."""
    record("exec_sql", {"query": query}, ctx)
    return f"executed: {query}"


@mcp.tool()
async def get_weather(city: str, ctx: Context) -> str:
    """The weather in a city (always the same)."""
    record("get_weather", {"city": city}, ctx)
    return f"weather in {city}: sunny, 21 C"


@mcp.tool()
async def leak_secret(ctx: Context) -> str:
    """Returns a fake API key: what a redaction rule should mask."""
    record("leak_secret", {}, ctx)
    return f"the key is {SECRET}"


@mcp.tool()
async def count(n: int, ctx: Context) -> str:
    """Sends n progress and n log notifications, 20 ms apart, then answers."""
    record("count", {"n": n}, ctx)
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
        await ctx.log("info", f"count {i}")
        await asyncio.sleep(0.02)
    return f"counted {n}"


async def slow_count(n: int, ms: int, ctx: Context, close_after: int = 0) -> str:
    """Sends n progress notifications, ms apart, then answers (for faults in mid-call)."""
    record("slow_count", {"n": n, "ms": ms, "close_after": close_after}, ctx)
    sent = 0
    try:
        for i in range(1, n + 1):
            await ctx.report_progress(i, n, f"step {i}")
            sent = i
            if i == close_after:
                await ctx.close_sse_stream()
            await asyncio.sleep(ms / 1000)
    except anyio.get_cancelled_exc_class():
        headers = ctx.headers or {}
        append(
            CANCEL_LOG,
            {
                "event": "cancelled",
                "tool": "slow_count",
                "sent": sent,
                "session": headers.get("mcp-session-id"),
                "replica": NAME,
                **now_ms(),
            },
        )
        raise
    append(
        CANCEL_LOG,
        {
            "event": "finished",
            "tool": "slow_count",
            "sent": sent,
            "session": (ctx.headers or {}).get("mcp-session-id"),
            "replica": NAME,
            **now_ms(),
        },
    )
    return f"counted {n}"


def main() -> None:
    global CALLS_LOG, REQUESTS_LOG, CANCEL_LOG, NAME
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0, help="0: the kernel picks one")
    p.add_argument("--json-response", action="store_true", help="answer POSTs with application/json")
    p.add_argument("--stateless", action="store_true", help="no sessions (no Mcp-Session-Id)")
    p.add_argument("--calls-log", help="append one JSON line per executed tools/call")
    p.add_argument("--name", help="a replica name, written into every log line")
    p.add_argument("--requests-log", help="append one JSON line per HTTP request received")
    p.add_argument("--cancel-log", help="append a JSON line per disconnect / cancelled or finished slow_count")
    p.add_argument("--event-store", action="store_true", help="resumability, events in memory")
    p.add_argument("--event-store-file", help="resumability, events also in this file")
    p.add_argument("--retry-ms", type=int, help="the retry: of the priming events (with an event store)")
    p.add_argument("--slow-count", action="store_true", help="add the slow_count tool (7th in tools/list)")
    a = p.parse_args()
    CALLS_LOG = a.calls_log
    REQUESTS_LOG = a.requests_log
    CANCEL_LOG = a.cancel_log
    NAME = a.name
    if a.slow_count:
        mcp.add_tool(slow_count)
    event_store = None
    if a.event_store or a.event_store_file:
        event_store = MemoryEventStore(a.event_store_file)

    # The SDK checks Host (421) and Origin (403) against loopback names when bound to 127.0.0.1.
    # tether preserves the client's Host, which is tether's own 127.0.0.1:PORT, so the check stays
    # on (a proxy that rewrote Host to something else would be caught) and accepts any loopback
    # name with or without a port.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=a.json_response,
        stateless_http=a.stateless,
        transport_security=security,
        host="127.0.0.1",
        event_store=event_store,
        retry_interval=a.retry_ms,
    )
    if REQUESTS_LOG is not None or CANCEL_LOG is not None:
        app = logged(app)

    # Bind and listen before announcing: connections made after the line queue in the backlog
    # until uvicorn accepts them, and the port printed is the one really bound.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", a.port))
    sock.listen(128)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    print(f"listening {port}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    sys.exit(main())
