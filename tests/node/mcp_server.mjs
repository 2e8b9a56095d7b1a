// A real MCP server for tests/mcp_sessions_ts.rs: the official TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in package.json) on its Streamable HTTP transport, stateful
// as the SDK's examples are: one StreamableHTTPServerTransport per session, each made on an
// initialize request with `sessionIdGenerator: () => randomUUID()` and kept in a map by its id.
//
//   node mcp_server.mjs [--port PORT] [--name NAME] [--requests-log FILE]
//
// --port 0 (the default): the kernel picks one. Prints `listening PORT` once the socket listens.
// --requests-log FILE: one JSON line per HTTP request, written before the SDK sees it:
//   {"method","path","session": <the mcp-session-id header or null>,"replica": NAME or null,
//    "remote_port": the peer's TCP port (a new one per connection)}
//
// Tools (the same answers as tests/python/mcp_server.py):
//   echo(text)        -> text
//   get_weather(city) -> "weather in CITY: sunny, 21 C"
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    name: { type: 'string' },
    'requests-log': { type: 'string' },
  },
});
const NAME = opts.name ?? null;
const REQUESTS_LOG = opts['requests-log'];

function logRequest(req) {
  if (!REQUESTS_LOG) return;
  const sid = req.headers['mcp-session-id'];
  const line = JSON.stringify({
    method: req.method,
    path: new URL(req.url, 'http://x').pathname,
    session: sid === undefined ? null : sid,
    replica: NAME,
    remote_port: req.socket.remotePort,
  });
  appendFileSync(REQUESTS_LOG, line + '\n');
}

function newServer() {
  const server = new McpServer({ name: 'tether-test-server-ts', version: '1' });
  server.registerTool(
    'echo',
    { description: 'Returns its text.', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  server.registerTool(
    'get_weather',
    { description: 'The weather in a city (always the same).', inputSchema: { city: z.string() } },
    async ({ city }) => ({ content: [{ type: 'text', text: `weather in ${city}: sunny, 21 C` }] }),
  );
  return server;
}

/** Session id -> its transport. */
const transports = new Map();

function jsonError(res, status, code, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  return text.length ? JSON.parse(text) : undefined;
}

async function handle(req, res) {
  logRequest(req);
  const path = new URL(req.url, 'http://x').pathname;
  if (path !== '/mcp') {
    res.writeHead(404).end();
    return;
  }
  const sid = req.headers['mcp-session-id'];
  let body;
  if (req.method === 'POST') {
    try {
      body = await readBody(req);
    } catch {
      jsonError(res, 400, -32700, 'Parse error');
      return;
    }
  }
  if (sid !== undefined) {
    const transport = transports.get(sid);
    if (!transport) {
      jsonError(res, 404, -32001, 'Session not found');
      return;
    }
    await transport.handleRequest(req, res, body);
    return;
  }
  if (req.method === 'POST' && isInitializeRequest(body)) {
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        transports.set(id, transport);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
    };
    await newServer().connect(transport);
    await transport.handleRequest(req, res, body);
    return;
  }
  jsonError(res, 400, -32000, 'Bad Request: No valid session ID provided');
}

const http = createServer((req, res) => {
  handle(req, res).catch((e) => {
    console.error('error handling request:', e);
    if (!res.headersSent) jsonError(res, 500, -32603, 'Internal server error');
    else res.end();
  });
});
http.listen(Number(opts.port), '127.0.0.1', () => {
  console.log(`listening ${http.address().port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
