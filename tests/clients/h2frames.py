"""HTTP/2 cases written from RFC 9113, spoken with Python's `h2` (a client state machine nobody
here wrote, which itself rejects what the RFC forbids: a response with connection-specific
fields, frames on streams in the wrong state, bad flow-control accounting).

Usage: python3 h2frames.py HOST PORT CASE [--tls CA_PEM] [KEY=VALUE ...]

Prints one JSON line per observation; the Rust test (tests/h2_clients.rs) drives the server
(publishes, signals) when a case prints {"ready": ...} and checks what the lines say. A case
never decides pass or fail by itself beyond what `h2` raises (printed as {"error": ...}).

Cases:
  settings   the server's first frame, its SETTINGS, the ACK of ours, a PING's ACK
  clock      GET /sse (optionally with last_event_id=N): headers and the DATA bytes of
             `events` events
  window     a stream window of `window` bytes (SETTINGS_INITIAL_WINDOW_SIZE): what arrives in
             `wait_ms` without WINDOW_UPDATE, then after one of `update` bytes
  connwindow a large stream window, the connection's 65,535 left as it is: GET /sse?topic=t,
             ready; what arrives of what the test publishes, then after a connection
             WINDOW_UPDATE
  reset      `streams` clock streams; RST_STREAM(CANCEL) on the second; what each gets after
  goaway     `streams` subscriptions (GET /sse?topic=t), ready; everything until the close,
             in order (the test stops the server)
  head       HEAD / and HEAD /healthz: each answer's headers, DATA bytes, whether it ended
  publish    POST /publish with its body in three DATA frames; the answer
  malformed  requests RFC 9113 8.1.1 and 8.2 call malformed, each on its own stream: how the
             server answered each (a status, or RST_STREAM's code), then a good request on the
             same connection (set=fields: the fields' cases only; set=length: content-length's)
"""
import base64
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings


def out(**obj):
    print(json.dumps(obj), flush=True)


class Peer:
    """One client connection: the socket, the `h2` state machine, what arrived per stream."""

    def __init__(self, host, port, ca=None, settings=None):
        sock = socket.create_connection((host, port), timeout=10)
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            sock = ctx.wrap_socket(sock, server_hostname=host)
            out(alpn=sock.selected_alpn_protocol())
        self.sock = sock
        self.host = host
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.flush()
        self.first = None  # the server's first frame header: (type, flags, stream)
        self.raw = b""
        self.data = {}  # stream id -> bytes
        self.headers = {}  # stream id -> [(name, value)]
        self.ended = set()
        self.resets = {}  # stream id -> error code
        self.log = []  # ("data", sid, n) / ("end", sid) / ("goaway", ...) in arrival order
        self.goaway = None
        self.closed = False
        self.auto_ack = True

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, extra=(), method="GET", body=None, headers=None):
        """Sends a request; `headers` replaces the whole list (pseudo-fields included)."""
        sid = self.conn.get_next_available_stream_id()
        if headers is None:
            headers = [
                (":method", method),
                (":scheme", "https" if isinstance(self.sock, ssl.SSLSocket) else "http"),
                (":authority", self.host),
                (":path", path),
                *extra,
            ]
        chunks = body if isinstance(body, list) else [body] if body is not None else []
        self.conn.send_headers(sid, headers, end_stream=not chunks)
        for i, chunk in enumerate(chunks):
            self.conn.send_data(sid, chunk, end_stream=i == len(chunks) - 1)
        self.flush()
        self.data[sid] = b""
        return sid

    def answered(self, sid):
        """Whether the stream has its answer: ended, or reset."""
        return sid in self.ended or sid in self.resets

    def pump(self, timeout):
        """Reads once (up to `timeout` s) and handles what came; False once closed."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return True
        except ssl.SSLError as e:
            out(tls_error=str(e))
            chunk = b""
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            self.log.append(("closed",))
            return False
        if self.first is None:
            self.raw += chunk
            if len(self.raw) >= 9:
                h = self.raw
                self.first = (h[3], h[4], int.from_bytes(h[5:9], "big") & 0x7FFFFFFF)
        for ev in self.conn.receive_data(chunk):
            self.handle(ev)
        self.flush()
        return True

    def handle(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.headers[ev.stream_id] = [(k, v) for k, v in ev.headers]
        elif isinstance(ev, h2.events.DataReceived):
            self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
            self.log.append(("data", ev.stream_id, len(ev.data)))
            if self.auto_ack and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended.add(ev.stream_id)
            self.log.append(("end", ev.stream_id))
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = int(ev.error_code)
            self.log.append(("reset", ev.stream_id, int(ev.error_code)))
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = {
                "last_stream_id": ev.last_stream_id,
                "error_code": int(ev.error_code),
                "debug": (ev.additional_data or b"").decode("utf-8", "replace"),
            }
            self.log.append(("goaway", ev.last_stream_id, int(ev.error_code)))
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.log.append(("settings",))
            out(settings={str(int(k)): v.new_value for k, v in ev.changed_settings.items()})
        elif isinstance(ev, h2.events.SettingsAcknowledged):
            self.log.append(("settings_ack",))
            out(settings_ack=True)
        elif isinstance(ev, h2.events.PingAckReceived):
            self.log.append(("ping_ack",))
            out(ping_ack=base64.b64encode(ev.ping_data).decode())

    def until(self, done, timeout):
        """Pumps until `done()` or `timeout` s; whether `done()` held."""
        end = time.monotonic() + timeout
        while not done():
            left = end - time.monotonic()
            if left <= 0 or not self.pump(min(left, 0.2)):
                return done()
        return True

    def read_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and self.pump(end - time.monotonic()):
            pass


def events_in(data):
    return data.count(b"\n\n")


def text(b):
    return b.decode("utf-8", "replace")


def case_settings(p, args):
    p.until(lambda: ("settings_ack",) in p.log and ("settings",) in p.log, 5)
    t, flags, sid = p.first or (None, None, None)
    out(first_frame={"type": t, "flags": flags, "stream": sid})
    p.conn.ping(b"h2tping!")
    p.flush()
    p.until(lambda: ("ping_ack",) in p.log, 5)
    sid = p.request("/healthz")
    p.until(lambda: sid in p.ended, 5)
    out(status=dict(p.headers.get(sid, [])).get(":status"), body=text(p.data.get(sid, b"")))


def case_clock(p, args):
    n = int(args.get("events", "3"))
    extra = []
    if "last_event_id" in args:
        extra.append(("last-event-id", args["last_event_id"]))
    sid = p.request(args.get("path", "/sse"), extra)
    p.until(lambda: events_in(p.data[sid]) >= n, 10)
    out(stream=sid, headers=p.headers.get(sid), data=text(p.data[sid]))


def case_window(p, args):
    p.auto_ack = False
    sid = p.request(args.get("path", "/sse"))
    p.until(lambda: sid in p.headers, 5)
    out(headers=p.headers.get(sid))
    p.read_for(int(args.get("wait_ms", "600")) / 1000)
    out(before=len(p.data[sid]), goaway=p.goaway, reset=p.resets.get(sid))
    p.auto_ack = True
    p.conn.increment_flow_control_window(int(args.get("update", "4096")), stream_id=sid)
    p.flush()
    n = int(args.get("events", "2"))
    p.until(lambda: events_in(p.data[sid]) >= n, 10)
    out(after=len(p.data[sid]), data=text(p.data[sid]), goaway=p.goaway, reset=p.resets.get(sid))


def case_connwindow(p, args):
    p.auto_ack = False
    sid = p.request(args.get("path", "/sse?topic=t"))
    p.until(lambda: sid in p.headers, 5)
    out(ready=sid)
    # Read until nothing more comes for a while (or the connection window is spent).
    last, quiet_since = -1, time.monotonic()
    end = time.monotonic() + 10
    while time.monotonic() < end and not p.closed:
        p.pump(0.1)
        if len(p.data[sid]) != last:
            last, quiet_since = len(p.data[sid]), time.monotonic()
        elif len(p.data[sid]) > 0 and time.monotonic() - quiet_since > 0.8:
            break
    out(before=len(p.data[sid]))
    p.auto_ack = True
    p.conn.increment_flow_control_window(1 << 20)
    p.conn.increment_flow_control_window(1 << 20, stream_id=sid)
    p.flush()
    n = int(args.get("events", "3"))
    p.until(lambda: events_in(p.data[sid]) >= n, 10)
    out(after=len(p.data[sid]), events=events_in(p.data[sid]), goaway=p.goaway)


def case_reset(p, args):
    n = int(args.get("streams", "3"))
    sids = [p.request(args.get("path", "/sse")) for _ in range(n)]
    p.until(lambda: all(events_in(p.data[s]) >= 2 for s in sids), 10)
    victim = sids[1]
    p.conn.reset_stream(victim, h2.errors.ErrorCodes.CANCEL)
    p.flush()
    out(reset=victim, streams=sids)
    # Frames already on their way when the server read the reset may still come: count from
    # a moment later.
    p.read_for(0.3)
    at = {s: events_in(p.data[s]) for s in sids}
    p.read_for(float(args.get("watch_s", "1.2")))
    out(
        after={str(s): events_in(p.data[s]) - at[s] for s in sids},
        goaway=p.goaway,
        resets={str(k): v for k, v in p.resets.items()},
    )


def case_goaway(p, args):
    n = int(args.get("streams", "2"))
    sids = [p.request(args.get("path", "/sse?topic=t")) for _ in range(n)]
    p.until(lambda: all(s in p.headers for s in sids), 5)
    out(ready=sids)
    p.until(lambda: p.closed, 15)
    out(
        goaway=p.goaway,
        closed=p.closed,
        log=p.log,
        data={str(s): text(p.data[s]) for s in sids},
    )


def case_head(p, args):
    got = {}
    for path in ["/", "/healthz"]:
        sid = p.request(path, method="HEAD")
        p.until(lambda: p.answered(sid), 5)
        got[path] = {
            "headers": p.headers.get(sid),
            "data": len(p.data[sid]),
            "ended": sid in p.ended,
        }
    out(head=got)


def case_publish(p, args):
    body = b"topic=t&data=" + b"x" * 3000
    sid = p.request(
        "/publish",
        method="POST",
        extra=[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", str(len(body))),
        ],
        body=[body[:1000], body[1000:2000], body[2000:]],
    )
    p.until(lambda: p.answered(sid), 5)
    out(status=dict(p.headers.get(sid, [])).get(":status"), body=text(p.data[sid]))


def case_malformed(p, args):
    scheme = "https" if isinstance(p.sock, ssl.SSLSocket) else "http"

    def base(path="/healthz", method="GET"):
        return [(":method", method), (":scheme", scheme), (":authority", p.host), (":path", path)]

    form = [("content-type", "application/x-www-form-urlencoded")]
    cases = {
        # 8.2.1: field names are lowercase.
        "uppercase name": dict(headers=base() + [("X-Upper", "1")]),
        # 8.2.2: connection-specific fields.
        "connection field": dict(headers=base() + [("connection", "keep-alive")]),
        "te not trailers": dict(headers=base() + [("te", "gzip")]),
        # 8.3.1: :path, :method, :scheme are required, and pseudo-fields come first.
        "no :path": dict(headers=[(":method", "GET"), (":scheme", scheme), (":authority", p.host)]),
        "pseudo after regular": dict(headers=[(":method", "GET"), ("accept", "*/*"), (":scheme", scheme), (":path", "/healthz"), (":authority", p.host)]),
        "unknown pseudo": dict(headers=base() + [(":protocol-x", "1")]),
        "duplicate :path": dict(headers=base() + [(":path", "/")]),
        # 8.1.1: content-length must equal the DATA received.
        "content-length above data": dict(
            headers=base("/publish", "POST") + form + [("content-length", "40")],
            body=[b"topic=t&data=short"],
        ),
        "content-length below data": dict(
            headers=base("/publish", "POST") + form + [("content-length", "4")],
            body=[b"topic=t&data=longer-than-four"],
        ),
    }
    only = args.get("set")
    if only == "fields":
        cases = {k: v for k, v in cases.items() if not k.startswith("content-length")}
    elif only == "length":
        cases = {k: v for k, v in cases.items() if k.startswith("content-length")}
    # Send as written, not as h2 would correct it.
    p.conn.config.validate_outbound_headers = False
    p.conn.config.normalize_outbound_headers = False
    answers = {}
    for name, c in cases.items():
        sid = p.request(None, headers=c["headers"], body=c.get("body"))
        p.until(lambda: p.answered(sid) or p.goaway is not None or p.closed, 5)
        answers[name] = {
            "status": dict(p.headers.get(sid, [])).get(":status"),
            "reset": p.resets.get(sid),
        }
        if p.goaway is not None or p.closed:
            break
    out(malformed=answers, goaway=p.goaway)
    p.conn.config.validate_outbound_headers = True
    p.conn.config.normalize_outbound_headers = True
    sid = p.request("/healthz")
    p.until(lambda: p.answered(sid), 5)
    out(status=dict(p.headers.get(sid, [])).get(":status"), body=text(p.data[sid]))


CASES = {
    "head": case_head,
    "publish": case_publish,
    "malformed": case_malformed,
    "settings": case_settings,
    "clock": case_clock,
    "window": case_window,
    "connwindow": case_connwindow,
    "reset": case_reset,
    "goaway": case_goaway,
}


def main():
    host, port, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rest = sys.argv[4:]
    ca = None
    if rest[:1] == ["--tls"]:
        ca, rest = rest[1], rest[2:]
    args = dict(a.split("=", 1) for a in rest)
    settings = {}
    if "window" in args:
        settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = int(args["window"])
    try:
        p = Peer(host, port, ca, settings)
        CASES[case](p, args)
    except Exception as e:  # what h2 (or the socket) raised: the test prints it
        out(error=f"{type(e).__name__}: {e}")
    out(end=True)


if __name__ == "__main__":
    main()
