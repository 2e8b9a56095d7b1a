"""An MCP server for tether's tests: the official Python SDK (PyPI `mcp`) on its Streamable HTTP
transport, at /mcp on 127.0.0.1.

    python mcp_server.py --port 0 [--json-response] [--stateless] [--calls-log FILE]

Prints `listening PORT` (flushed) once the socket is bound and listening; with --port 0 that is the
port the kernel chose. Every tool call the server actually executes appends one line to the calls
log: {"args": {...}, "name": "...", "session": "<Mcp-Session-Id or null>"} (keys sorted), flushed
before the tool runs, so a test can prove that a denied call never reached the server.

Tools (all deterministic):
  echo(text)            -> text
  delete_user(id: int)  -> "deleted user ID"
  exec_sql(query)       -> "executed: QUERY"
  get_weather(city)     -> "weather in CITY: sunny, 21 C"
  leak_secret()         -> "the key is " + SECRET (a fixed fake API key)
  count(n: int)         -> "counted N", after n progress notifications (when the client sent a
                           progress token) and n log notifications "count I", 20 ms apart; on
                           an SSE answer each one is its own event before the result.
"""

import argparse
import asyncio
import json
import socket
import sys

import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings

# The fake secret leak_secret() returns: "sk-" and 24 alphanumerics (tests/common/mcp.rs has it too).
SECRET = "sk-TETHERtest0123456789abcd"

CALLS_LOG = None


def record(name: str, args: dict, ctx: Context) -> None:
    """Appends one line for an executed call to the calls log (when there is one)."""
    if CALLS_LOG is None:
        return
    headers = ctx.headers or {}
    line = json.dumps(
        {"name": name, "args": args, "session": headers.get("mcp-session-id")},
        sort_keys=True,
        separators=(",", ":"),
    )
    with open(CALLS_LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


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


def main() -> None:
    global CALLS_LOG
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0, help="0: the kernel picks one")
    p.add_argument("--json-response", action="store_true", help="answer POSTs with application/json")
    p.add_argument("--stateless", action="store_true", help="no sessions (no Mcp-Session-Id)")
    p.add_argument("--calls-log", help="append one JSON line per executed tools/call")
    a = p.parse_args()
    CALLS_LOG = a.calls_log

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
    )

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
