// A real MCP client for tests/mcp_sessions_ts.rs: the official TypeScript SDK's Client on its
// StreamableHTTPClientTransport.
//
//   node mcp_client.mjs --url URL [--calls N] [--terminate] [--timeout SECS]
//
// Initializes, then runs N steps (default 4), alternating tools/list (even steps) and
// echo(text: "step I") (odd steps), printing one JSON line per step:
//   {"step":I,"op":"tools/list","tools":[names]}   or   {"step":I,"op":"echo","text":"..."}
// With --terminate it then ends the session with the SDK's terminateSession() (an HTTP DELETE).
// The last line is
//   {"done":true,"session_id": <transport.sessionId>,"received_session_ids":[...],
//    "requests":[{"method","status","sent_session_id"}...],"protocol_version": ...}
// where received_session_ids is every mcp-session-id response header value seen, in order, and
// requests every HTTP request the transport made, both recorded by the custom fetch below.
//
// Fresh connections: the custom fetch adds `Connection: close` to every request (Node's fetch,
// undici, then closes the socket after the response instead of pooling it), so each request,
// and so each step, goes on its own TCP connection.
// Any error: a line {"error": "..."} and exit status 1. --timeout (default 20 s): exit status 2.
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    calls: { type: 'string', default: '4' },
    terminate: { type: 'boolean', default: false },
    timeout: { type: 'string', default: '20' },
  },
});
if (!opts.url) {
  console.error('--url is required');
  process.exit(64);
}
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

setTimeout(() => {
  out({ error: `timeout after ${opts.timeout} s` });
  process.exit(2);
}, Number(opts.timeout) * 1000).unref();

const receivedSessionIds = [];
const requests = [];

async function recordingFetch(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('connection', 'close');
  const res = await fetch(input, { ...init, headers, keepalive: false });
  requests.push({
    method: init.method ?? 'GET',
    status: res.status,
    sent_session_id: headers.get('mcp-session-id'),
  });
  const sid = res.headers.get('mcp-session-id');
  if (sid !== null) receivedSessionIds.push(sid);
  return res;
}

async function main() {
  const transport = new StreamableHTTPClientTransport(new URL(opts.url), { fetch: recordingFetch });
  const client = new Client({ name: 'tether-test-client-ts', version: '1' });
  await client.connect(transport);
  const n = Number(opts.calls);
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      const r = await client.listTools();
      out({ step: i, op: 'tools/list', tools: r.tools.map((t) => t.name) });
    } else {
      const r = await client.callTool({ name: 'echo', arguments: { text: `step ${i}` } });
      out({ step: i, op: 'echo', text: r.content?.[0]?.text ?? null, is_error: r.isError ?? false });
    }
  }
  const sessionId = transport.sessionId ?? null;
  if (opts.terminate) await transport.terminateSession();
  await client.close();
  out({
    done: true,
    session_id: sessionId,
    received_session_ids: receivedSessionIds,
    requests,
    protocol_version: transport.protocolVersion ?? null,
  });
}

main().then(
  () => process.exit(0),
  (e) => {
    out({ error: String(e?.stack ?? e), received_session_ids: receivedSessionIds, requests });
    process.exit(1);
  },
);
