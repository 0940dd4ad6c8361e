// Publishes one event with Node's `https` module, trusting the test CA through its `ca` option.
// Usage: node pub.mjs BASE_URL CA_PEM TOPIC DATA. Prints {"status": N, "body": TEXT} or
// {"error": MESSAGE}.
import { readFileSync } from "node:fs";
import https from "node:https";

const [base, caFile, topic, data] = process.argv.slice(2);
const body = new URLSearchParams({ topic, data }).toString();
const req = https.request(
  new URL("/publish", base),
  {
    method: "POST",
    ca: readFileSync(caFile),
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "content-length": Buffer.byteLength(body),
    },
  },
  (res) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c) => (text += c));
    res.on("end", () => {
      process.stdout.write(JSON.stringify({ status: res.statusCode, body: text }) + "\n");
    });
  },
);
req.on("error", (e) => process.stdout.write(JSON.stringify({ error: e.message }) + "\n"));
req.end(body);
