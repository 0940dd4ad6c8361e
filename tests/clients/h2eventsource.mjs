// Node's `eventsource` package over HTTPS and HTTP/2: its `fetch` is undici's with an Agent that
// offers ALPN h2 and trusts CA_PEM. Usage: node h2eventsource.mjs URL CA_PEM. Prints what
// sub.mjs prints ({"open"}, one line per event, {"end"} at the first error).
import { readFileSync } from "node:fs";
import { EventSource } from "eventsource";
import { Agent, fetch } from "undici";

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const dispatcher = new Agent({ allowH2: true, connect: { ca: readFileSync(process.argv[3]) } });
const es = new EventSource(process.argv[2], {
  fetch: (url, init) => fetch(url, { ...init, dispatcher }),
});
es.onopen = () => out({ open: true });
es.onmessage = (e) => out({ event: e.type, data: e.data, id: e.lastEventId });
es.onerror = (e) => {
  es.close();
  out({ end: true, error: String(e.message ?? e.type) });
  process.exit(0);
};
