// Reads one event stream with Node's `eventsource` package and prints what it dispatches, one
// JSON line each. Usage: node sub.mjs URL. Prints {"open": true} on open, one line per `message`
// event, then {"end": true} at the first error (the server closed the stream) and exits.
import { EventSource } from "eventsource";

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const es = new EventSource(process.argv[2]);
es.onopen = () => out({ open: true });
es.onmessage = (e) => out({ event: e.type, data: e.data, id: e.lastEventId });
es.onerror = () => {
  es.close();
  out({ end: true });
  process.exit(0);
};
