"use strict";
// The seed's Vue component, in plain JavaScript: one EventSource on this page's own origin,
// a guard so repeated clicks never open a second stream, and a bounded list of `content`.

const MAX_ITEMS = 200;

const $ = (id) => document.getElementById(id);
const ui = {
  connect: $("connect"),
  close: $("close"),
  status: $("status"),
  state: $("state"),
  lastId: $("last-id"),
  count: $("count"),
  list: $("list"),
  empty: $("empty"),
};

let sse = null;
let received = 0;

// One of: idle, connecting, open, reconnecting, closed, failed. The text is a pair, Chinese
// (the seed's words) and English, arranged by i18n.js.
function show(state, zh, en) {
  ui.status.dataset.state = state;
  window.I18N.set(ui.state, zh, en);
  const live = state === "connecting" || state === "open" || state === "reconnecting";
  ui.connect.setAttribute("aria-disabled", String(live));
  ui.close.setAttribute("aria-disabled", String(!live));
}

function onEvent(e) {
  let content;
  try {
    content = JSON.parse(e.data).content;
  } catch (err) {
    console.warn("SSE: data is not JSON", e.data, err);
    return;
  }
  received += 1;
  ui.count.textContent = String(received);
  ui.lastId.textContent = e.lastEventId || "–";

  const li = document.createElement("li");
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = `#${e.lastEventId}`;
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = String(content);
  li.append(id, value);
  ui.list.prepend(li); // newest first: always in view
  while (ui.list.childElementCount > MAX_ITEMS) ui.list.lastElementChild.remove();
  ui.empty.hidden = true;
}

function connect() {
  // The seed's guard: nothing to do while a stream is connecting or open.
  if (sse && sse.readyState !== EventSource.CLOSED) return;
  const source = new EventSource("/sse"); // same origin, never a fixed address
  sse = source;
  show("connecting", `SSE 连接中,状态${source.readyState}`, "Connecting…");
  source.onopen = () => {
    show("open", `SSE 连接成功,状态${source.readyState}`, "Connected");
  };
  source.addEventListener("sseEvent", onEvent);
  source.onerror = () => {
    if (source !== sse) return;
    console.warn("SSE error, readyState", source.readyState);
    if (source.readyState === EventSource.CONNECTING) {
      show("reconnecting", `SSE 连接出错,正在重连,状态${source.readyState}`, "Error, reconnecting…");
    } else {
      show("failed", `SSE 连接失败,状态${source.readyState}`, "Error, closed");
    }
  };
}

function close() {
  if (!sse || sse.readyState === EventSource.CLOSED) return;
  sse.close();
  show("closed", `SSE 连接已关闭,状态${sse.readyState}`, "Closed");
}

ui.connect.addEventListener("click", connect);
ui.close.addEventListener("click", close);

// The back/forward cache: a page nobody sees holds no stream. A stream open when the page is
// hidden is closed (the server stops counting it) and opened again when the page comes back
// from the cache; the clock's new stream starts from its current time, as after Connect.
let reopen = false;
window.addEventListener("pagehide", () => {
  reopen = Boolean(sse && sse.readyState !== EventSource.CLOSED);
  if (reopen) sse.close();
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted && reopen) {
    reopen = false;
    connect();
  }
});
