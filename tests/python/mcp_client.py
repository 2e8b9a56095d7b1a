"""An MCP client for tether's tests: the official Python SDK's (PyPI `mcp`) Streamable HTTP client.

    python mcp_client.py --url URL --steps JSON [--mode legacy|auto|2026-07-28] [--timeout 20]
                         [--new-connections]

Connects (mode legacy, the default: the initialize handshake, with a session when the server
assigns one), runs the steps in order and prints one JSON line per step, then one `end` line:

  {"op":"list_tools"}
      -> {"op":"list_tools","tools":["count","delete_user",...]}       (in the server's order)
  {"op":"call_tool","name":"echo","args":{"text":"hi"}}
      -> {"op":"call_tool","name":"echo","text":"hi","isError":false,
          "progress":[1.0,...],"logs":["count 1",...]}
         text: the text contents joined with "\n"; progress: the progress values the server sent
         for this call; logs: the data of the log notifications that arrived during it.
      -> {"op":"call_tool","name":"...","error":{"code":-32600,"message":"...","type":"MCPError"}}
         when the call fails: code is the JSON-RPC error code for an MCP error, null otherwise
         (timeouts, transport errors); one failed step does not stop the script. When progress
         notifications arrived before the failure, the line also has "progress":[...].
  {"op":"sleep","ms":100}
      -> {"op":"sleep"}
  end: {"op":"end","protocol_version":"2025-11-25","session_id":"..." or null,
        "http":[{"method":"POST","status":200,"content_type":"text/event-stream",
                 "session_sent":null,"session_received":"..."}, ...]}
       (every HTTP exchange the SDK made, in the order the answers' heads arrived)

--new-connections: no keep-alive (every HTTP exchange on a connection of its own), so a proxy
cannot route a session by its connection.

Exit status 0 when every step ran (even when some returned errors); 1 when connecting or
initializing failed or the whole script ran past --timeout; 2 for bad arguments. Errors go to
stderr.
"""

import argparse
import asyncio
import json
import sys
import traceback

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client


def out(obj) -> None:
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def error_of(exc: BaseException) -> dict:
    if isinstance(exc, MCPError):
        return {"code": exc.code, "message": exc.message, "type": "MCPError"}
    # An exception group from a task group: report the first leaf.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
        if isinstance(exc, MCPError):
            return {"code": exc.code, "message": exc.message, "type": "MCPError"}
    return {"code": None, "message": str(exc) or repr(exc), "type": type(exc).__name__}


async def run(url: str, steps: list, mode: str, step_timeout: float, new_connections: bool = False) -> None:
    http_log: list = []
    logs: list = []

    async def on_response(response: httpx2.Response) -> None:
        req = response.request
        http_log.append(
            {
                "method": req.method,
                "status": response.status_code,
                "content_type": response.headers.get("content-type"),
                "session_sent": req.headers.get("mcp-session-id"),
                "session_received": response.headers.get("mcp-session-id"),
            }
        )

    async def on_log(params) -> None:
        logs.append(params.data)

    extra = {"limits": httpx2.Limits(max_keepalive_connections=0)} if new_connections else {}
    http = httpx2.AsyncClient(
        timeout=httpx2.Timeout(step_timeout, read=step_timeout),
        event_hooks={"response": [on_response]},
        **extra,
    )
    async with http:
        transport = streamable_http_client(url, http_client=http)
        # cache=None: every list_tools reaches the server (the SDK caches listings by default).
        async with Client(
            transport, mode=mode, cache=None, logging_callback=on_log, read_timeout_seconds=step_timeout
        ) as client:
            for step in steps:
                op = step.get("op")
                if op == "list_tools":
                    try:
                        r = await client.list_tools()
                        out({"op": op, "tools": [t.name for t in r.tools]})
                    except Exception as e:  # noqa: BLE001 - every failure is a step result
                        out({"op": op, "error": error_of(e)})
                elif op == "call_tool":
                    name = step["name"]
                    progress: list = []
                    logs.clear()

                    async def on_progress(p: float, total, message) -> None:
                        progress.append(p)

                    try:
                        r = await client.call_tool(name, step.get("args") or {}, progress_callback=on_progress)
                        text = "\n".join(c.text for c in r.content if getattr(c, "type", None) == "text")
                        out(
                            {
                                "op": op,
                                "name": name,
                                "text": text,
                                "isError": bool(r.is_error),
                                "progress": progress,
                                "logs": list(logs),
                            }
                        )
                    except Exception as e:  # noqa: BLE001 - every failure is a step result
                        failed = {"op": op, "name": name, "error": error_of(e)}
                        if progress:
                            failed["progress"] = progress
                        out(failed)
                elif op == "sleep":
                    await asyncio.sleep(step.get("ms", 0) / 1000)
                    out({"op": op})
                else:
                    out({"op": op, "error": {"code": None, "message": f"unknown op {op!r}", "type": "Usage"}})
            version = client.protocol_version
        # The session is closed (and its DELETE sent) here; report after it.
        sessions = [h["session_received"] for h in http_log if h["session_received"]]
        out(
            {
                "op": "end",
                "protocol_version": version,
                "session_id": sessions[0] if sessions else None,
                "http": http_log,
            }
        )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--steps", required=True, help="a JSON array of steps")
    p.add_argument("--mode", default="legacy", help="legacy (initialize), auto, or 2026-07-28")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds for the whole script")
    p.add_argument("--new-connections", action="store_true", help="no keep-alive: a connection per exchange")
    a = p.parse_args()
    try:
        steps = json.loads(a.steps)
        assert isinstance(steps, list)
    except Exception:  # noqa: BLE001
        print("--steps must be a JSON array", file=sys.stderr)
        return 2

    async def bounded() -> None:
        await asyncio.wait_for(run(a.url, steps, a.mode, a.timeout, a.new_connections), a.timeout)

    try:
        asyncio.run(bounded())
    except TimeoutError:
        print(f"mcp_client: the script ran past --timeout {a.timeout} s", file=sys.stderr)
        return 1
    except BaseException as e:  # noqa: BLE001
        traceback.print_exc()
        err = error_of(e)
        print(f"mcp_client: failed before the script ended: {err['type']}: {err['message']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
