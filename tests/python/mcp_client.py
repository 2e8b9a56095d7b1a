"""An MCP client for tether's tests: the official Python SDK's (PyPI `mcp`) Streamable HTTP client.

    python mcp_client.py --url URL --steps JSON [--mode legacy|auto|2026-07-28] [--timeout 20]
                         [--new-connections] [--http2-ca CA.pem]

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
       (every HTTP exchange the SDK made, in the order the answers' heads arrived; each also has
        "last_event_id": the Last-Event-ID it sent, or null, and "http_version": "HTTP/1.1" or
        "HTTP/2")

  {"op":"call_tool_and_die","name":"slow_count","args":{...},"die_after_progress":1}
      -> {"op":"died","name":"...","progress":[1.0],"token":"...","session_id":"..."}
         calls the tool asking for resumption tokens (the SDK's
         ClientMessageMetadata(on_resumption_token_update=...)); once die_after_progress progress
         notifications arrived and a resumption token is known (the id of the last event that
         arrived), prints that line and kills its own process with SIGKILL: no goodbye on any
         connection, no DELETE, no end line (a phone that lost its network). progress: the
         progress values seen; token: the last resumption token; session_id: the Mcp-Session-Id
         the client was using.

Resuming, in a new process: --resume-session ID [--protocol-version 2025-11-25] skips the
initialize handshake (the session exists already) and sends `Mcp-Session-Id: ID` and
`MCP-Protocol-Version` on every request (as defaults of its HTTP client: the SDK's transport only
learns a session id from an answer to a POST), with the lowlevel ClientSession. Its steps:
  {"op":"resume_tool","name":"slow_count","token":"...","timeout_ms":5000}
      -> {"op":"resume_tool","name":"...","text":"...","isError":false,"progress":[2.0,...],
          "progress_tokens":[2,...],"tokens":["...",...]}
         the SDK's resumption of an interrupted request: send_request with
         ClientMessageMetadata(resumption_token=token), which the transport turns into a GET with
         Last-Event-ID: token (no POST) and whose answer it maps onto this request. progress: every
         progress notification that arrived meanwhile (whatever its token: the dead process's
         request id is not this one's); tokens: the resumption tokens the resumed stream gave.
         timeout_ms (optional): the SDK's read timeout for this request (else --timeout).
      -> {"op":"resume_tool","name":"...","error":{...},"progress":[...],...} when it failed.
  The end line then has "session_id": ID.

--new-connections: no keep-alive (every HTTP exchange on a connection of its own), so a proxy
cannot route a session by its connection.

--http2-ca CA.pem: HTTP/2 over TLS only (the URL is https://...), trusting the certificates CA.pem
signed. The client offers only "h2" in ALPN (no HTTP/1.1 to fall back to), so a server that does
not choose it fails the handshake; and every answer is checked to have come over HTTP/2: one that
did not ends the process at once with status 3 and a line on stderr, whatever step it was in (an
exception would be a mere step error). The SDK's requests then share one connection, as streams
(tests/mcp_h2.rs checks it in tether's access log).

Exit status 0 when every step ran (even when some returned errors); 1 when connecting or
initializing failed or the whole script ran past --timeout; 2 for bad arguments; 3 when an answer
came over another protocol than --http2-ca asked for. Errors go to stderr.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import traceback

import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import ClientMessageMetadata


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


def call_tool_request(step: dict) -> types.CallToolRequest:
    return types.CallToolRequest(
        params=types.CallToolRequestParams(name=step["name"], arguments=step.get("args") or {})
    )


def result_text(r: types.CallToolResult) -> str:
    return "\n".join(c.text for c in r.content if getattr(c, "type", None) == "text")


async def run(
    url: str,
    steps: list,
    mode: str,
    step_timeout: float,
    new_connections: bool = False,
    resume_session: str | None = None,
    protocol_version: str = "2025-11-25",
    http2_ca: str | None = None,
) -> None:
    http_log: list = []
    logs: list = []
    # Every progress notification that arrived, as (progressToken, progress), whichever request
    # it names (a resumed stream's name the dead process's request id).
    progress_seen: list = []

    async def on_response(response: httpx2.Response) -> None:
        req = response.request
        if http2_ca is not None and response.http_version != "HTTP/2":
            # Not an exception: the SDK would turn it into one failed step and go on.
            print(
                f"mcp_client: --http2-ca: {req.method} {req.url} was answered over {response.http_version}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(3)
        http_log.append(
            {
                "method": req.method,
                "status": response.status_code,
                "content_type": response.headers.get("content-type"),
                "session_sent": req.headers.get("mcp-session-id"),
                "session_received": response.headers.get("mcp-session-id"),
                "last_event_id": req.headers.get("last-event-id"),
                "http_version": response.http_version,
            }
        )

    async def on_log(params) -> None:
        logs.append(params.data)

    async def on_message(message) -> None:
        if isinstance(message, types.ProgressNotification):
            progress_seen.append((message.params.progress_token, message.params.progress))

    extra = {"limits": httpx2.Limits(max_keepalive_connections=0)} if new_connections else {}
    if resume_session is not None:
        extra["headers"] = {"mcp-session-id": resume_session, "mcp-protocol-version": protocol_version}
    if http2_ca is not None:
        # h2 only: no HTTP/1.1 in ALPN to fall back to.
        extra.update(http1=False, http2=True, verify=ssl.create_default_context(cafile=http2_ca))
    http = httpx2.AsyncClient(
        timeout=httpx2.Timeout(step_timeout, read=step_timeout),
        event_hooks={"response": [on_response]},
        **extra,
    )
    if resume_session is not None:
        async with http:
            await resume(url, http, steps, step_timeout, on_message, progress_seen)
        out({"op": "end", "protocol_version": protocol_version, "session_id": resume_session, "http": http_log})
        return
    async with http:
        transport = streamable_http_client(url, http_client=http)
        # cache=None: every list_tools reaches the server (the SDK caches listings by default).
        async with Client(
            transport,
            mode=mode,
            cache=None,
            logging_callback=on_log,
            message_handler=on_message,
            read_timeout_seconds=step_timeout,
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
                elif op == "call_tool_and_die":
                    await call_tool_and_die(client, step, http_log)
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


async def call_tool_and_die(client: Client, step: dict, http_log: list) -> None:
    """Calls the tool with a resumption-token callback; SIGKILLs this process once enough progress
    arrived and a token is known (see the module doc). Returns only if the call ended first."""
    name = step["name"]
    want = step.get("die_after_progress", 1)
    progress: list = []
    token: list = []

    def maybe_die() -> None:
        # Both callbacks check: the SDK calls the token callback after handing the event's
        # message on, so the progress callback for the same event may run before or after it.
        if len(progress) >= want and token:
            sessions = [h["session_received"] for h in http_log if h["session_received"]]
            out(
                {
                    "op": "died",
                    "name": name,
                    "progress": list(progress),
                    "token": token[-1],
                    "session_id": sessions[0] if sessions else None,
                }
            )
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    async def on_progress(p: float, total, message) -> None:
        progress.append(p)
        maybe_die()

    async def on_token(t: str) -> None:
        token.append(t)
        maybe_die()

    try:
        r = await client.session.send_request(
            call_tool_request(step),
            types.CallToolResult,
            metadata=ClientMessageMetadata(on_resumption_token_update=on_token),
            progress_callback=on_progress,
        )
        out({"op": "call_tool_and_die", "name": name, "text": result_text(r), "progress": progress, "tokens": token})
    except Exception as e:  # noqa: BLE001 - every failure is a step result
        out({"op": "call_tool_and_die", "name": name, "error": error_of(e), "progress": progress, "tokens": token})


async def resume(url: str, http, steps: list, step_timeout: float, on_message, progress_seen: list) -> None:
    """The steps of a --resume-session run: a lowlevel ClientSession on the existing session, no
    handshake, no DELETE at the end (the transport never learned the session id itself)."""
    async with streamable_http_client(url, http_client=http, terminate_on_close=False) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=step_timeout, message_handler=on_message) as session:
            for step in steps:
                op = step.get("op")
                if op == "resume_tool":
                    name = step["name"]
                    tokens: list = []
                    progress_seen.clear()

                    async def on_token(t: str) -> None:
                        tokens.append(t)

                    def seen() -> dict:
                        return {
                            "progress": [p for _, p in progress_seen],
                            "progress_tokens": [t for t, _ in progress_seen],
                            "tokens": list(tokens),
                        }

                    try:
                        r = await session.send_request(
                            call_tool_request(step),
                            types.CallToolResult,
                            request_read_timeout_seconds=step["timeout_ms"] / 1000 if "timeout_ms" in step else None,
                            metadata=ClientMessageMetadata(resumption_token=step["token"], on_resumption_token_update=on_token),
                        )
                        # Let notifications already handed to the session reach the handler.
                        await asyncio.sleep(0.05)
                        out({"op": op, "name": name, "text": result_text(r), "isError": bool(r.is_error), **seen()})
                    except Exception as e:  # noqa: BLE001 - every failure is a step result
                        out({"op": op, "name": name, "error": error_of(e), **seen()})
                elif op == "sleep":
                    await asyncio.sleep(step.get("ms", 0) / 1000)
                    out({"op": op})
                else:
                    out({"op": op, "error": {"code": None, "message": f"unknown op {op!r}", "type": "Usage"}})


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--steps", required=True, help="a JSON array of steps")
    p.add_argument("--mode", default="legacy", help="legacy (initialize), auto, or 2026-07-28")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds for the whole script")
    p.add_argument("--new-connections", action="store_true", help="no keep-alive: a connection per exchange")
    p.add_argument("--resume-session", help="resume in this existing session: no handshake (resume_tool steps)")
    p.add_argument("--protocol-version", default="2025-11-25", help="with --resume-session: the session's version")
    p.add_argument("--http2-ca", metavar="CA.pem", help="HTTP/2 over TLS only, trusting this CA (an https URL)")
    a = p.parse_args()
    try:
        steps = json.loads(a.steps)
        assert isinstance(steps, list)
    except Exception:  # noqa: BLE001
        print("--steps must be a JSON array", file=sys.stderr)
        return 2
    if a.http2_ca is not None and not a.url.startswith("https://"):
        print("--http2-ca needs an https:// --url (HTTP/2 is offered over TLS only)", file=sys.stderr)
        return 2
    if a.http2_ca is not None:
        try:
            import h2  # noqa: F401 - httpx2 speaks HTTP/2 through it
        except ImportError:
            print("--http2-ca: the h2 package is missing: run `bash scripts/mcp-venv.sh`", file=sys.stderr)
            return 1

    async def bounded() -> None:
        await asyncio.wait_for(
            run(
                a.url,
                steps,
                a.mode,
                a.timeout,
                a.new_connections,
                a.resume_session,
                a.protocol_version,
                a.http2_ca,
            ),
            a.timeout,
        )

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
