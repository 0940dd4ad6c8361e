// Many event streams on ONE HTTP/2 session with Node's own `http2` module, and a publish on the
// same session. Usage: node h2node.mjs BASE_URL STREAMS [CA_PEM]
// (http:// is h2c with prior knowledge; https:// trusts CA_PEM and must agree on ALPN h2).
// Opens STREAMS `GET /sse?topic=t`, prints {"ready": STREAMS, "statuses": [...], "alpn": ...}
// once every response head is in; waits until each stream has an event the test publishes
// (over HTTP/1.1), then POSTs `topic=t&data=from-node` on the same session and prints
// {"published": STATUS, "id": ID}; once each stream has that too, prints {"datas": [[...], ...]}
// (every stream's event data, in order) and {"end": true}. Errors: {"error": MESSAGE}.
import { readFileSync } from "node:fs";
import http2 from "node:http2";

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const [base, n, caFile] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
const fail = (e) => {
  out({ error: String(e && e.message ? e.message : e) });
  process.exit(0);
};
setTimeout(() => fail("timeout"), 30_000).unref();

const session = http2.connect(base, caFile ? { ca: readFileSync(caFile) } : {});
session.on("error", fail);
const datas = Array.from({ length: n }, () => []);
const statuses = [];
let published = false;

const check = () => {
  if (!published && datas.every((d) => d.length >= 1)) {
    published = true;
    publish();
  }
  if (datas.every((d) => d.includes("from-node"))) {
    out({ datas });
    session.close();
    out({ end: true });
    process.exit(0);
  }
};

for (let i = 0; i < n; i++) {
  const req = session.request({ ":path": "/sse?topic=t" });
  let buf = "";
  req.setEncoding("utf8");
  req.on("response", (h) => {
    statuses.push(h[":status"]);
    if (statuses.length === n) {
      out({ ready: n, statuses, alpn: session.alpnProtocol ?? null });
    }
  });
  req.on("data", (chunk) => {
    buf += chunk;
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, at);
      buf = buf.slice(at + 2);
      const data = frame
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""));
      if (data.length) datas[i].push(data.join("\n"));
    }
    check();
  });
  req.on("error", fail);
  req.end();
}

function publish() {
  const body = "topic=t&data=from-node";
  const req = session.request({
    ":method": "POST",
    ":path": "/publish",
    "content-type": "application/x-www-form-urlencoded",
    "content-length": Buffer.byteLength(body),
  });
  let status;
  let text = "";
  req.setEncoding("utf8");
  req.on("response", (h) => (status = h[":status"]));
  req.on("data", (c) => (text += c));
  req.on("end", () => out({ published: status, id: text.trim() }));
  req.on("error", fail);
  req.end(body);
}
