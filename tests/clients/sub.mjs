// Reads one event stream with Node's `eventsource` package and prints what it dispatches, one
// JSON line each. Usage: node sub.mjs URL. Prints {"open": true} on open, one line per `message`
// event, then {"end": true} at the first error (the server closed the stream) and exits.
// With SSE_RECONNECT=1 it stays and lets the package reconnect (sending Last-Event-ID), printing
// {"error": MESSAGE} for each error instead. Over HTTPS the test CA is trusted through
// NODE_EXTRA_CA_CERTS (Node's fetch, which the package uses, reads it).
import { EventSource } from "eventsource";

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const reconnect = process.env.SSE_RECONNECT === "1";
const es = new EventSource(process.argv[2]);
es.onopen = () => out({ open: true });
es.onmessage = (e) => out({ event: e.type, data: e.data, id: e.lastEventId });
es.onerror = (e) => {
  if (reconnect) {
    out({ error: String(e.message ?? e.type) });
    return;
  }
  es.close();
  out({ end: true, error: String(e.message ?? e.type) });
  process.exit(0);
};
