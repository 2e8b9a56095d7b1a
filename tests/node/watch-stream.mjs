// A real EventSource (the `eventsource` npm package, WHATWG semantics) reads a stream through
// tether and reports what it saw: every message id, every error event, and whether it ever had to
// reconnect. Usage: node watch-stream.mjs URL EXPECTED_LAST_ID TIMEOUT_MS
import { EventSource } from "eventsource";

const [url, lastArg, timeoutArg] = process.argv.slice(2);
const last = Number(lastArg);
const report = { ids: [], errors: 0, opens: 0 };
const es = new EventSource(url);
const done = (code) => {
  es.close();
  console.log(JSON.stringify(report));
  process.exit(code);
};
es.onopen = () => { report.opens += 1; };
es.onerror = () => { report.errors += 1; };
es.onmessage = (ev) => {
  report.ids.push(Number(ev.lastEventId));
  if (Number(ev.lastEventId) >= last) done(0);
};
setTimeout(() => done(1), Number(timeoutArg));
