"use strict";
// The topics panel: a hub subscription (`/sse?topic=a&topic=b`) shared by every tab of this page.
//
// Browsers allow about 6 HTTP/1.1 connections per origin, so each tab opening its own stream
// stalls the seventh. Here one tab holds the EventSource, elected with the Web Locks API (the
// lock is named after the subscription's sorted topics), and relays every event, reset and
// connection state to the other tabs over a BroadcastChannel of the same name. When the holder
// closes, the browser grants the lock to the next waiting tab at once; it opens its own
// EventSource with `lastEventID=<the last id it saw>` in the query (a fresh EventSource cannot
// send the header), and every tab drops ids it has already shown, so none misses or repeats an
// event across the handover. After that, EventSource resumes by itself with `Last-Event-ID`.
// Without Web Locks or BroadcastChannel (or outside a secure context, where `navigator.locks`
// is missing) each tab opens its own EventSource.
(() => {
  const MAX_ROWS = 200; // feed entries kept (a reply bubble counts as one)
  const MAX_SEEN = 5000; // ids remembered for de-duplication
  const MAX_TOPICS = 32;
  // EventSource has no wildcard listener: these event types are shown, plus any `type=` named
  // in the page's address (`/?topic=alerts&type=alert`) or added with the types form (which
  // puts it in the address too).
  const BASE_TYPES = ["message", "token", "done", "reset"];
  // The server's marker before each private event (asked for with `markPrivate=1`); its data
  // is the private event's id. Never shown as an event.
  const PRIVATE_MARK = "private";
  const T = window.I18N;

  const $ = (id) => document.getElementById(id);
  const ui = {
    subForm: $("sub-form"),
    topics: $("topics"),
    unsubscribe: $("unsubscribe"),
    status: $("hub-status"),
    state: $("hub-state"),
    role: $("hub-role"),
    feed: $("feed"),
    empty: $("feed-empty"),
    pubForm: $("pub-form"),
    pubTopic: $("pub-topic"),
    pubType: $("pub-type"),
    pubData: $("pub-data"),
    pubPrivate: $("pub-private"),
    subToken: $("sub-token"),
    pubToken: $("pub-token"),
    pubHint: $("pub-hint"),
    demo: $("demo"),
    pubResult: $("pub-result"),
    typesList: $("types-list"),
    typeForm: $("type-form"),
    typeInput: $("type-input"),
  };

  const shareable =
    typeof BroadcastChannel === "function" &&
    typeof navigator.locks === "object" &&
    navigator.locks !== null &&
    typeof navigator.locks.request === "function";

  const address = new URLSearchParams(location.search);
  const types = new Set([...BASE_TYPES, ...address.getAll("type").filter(validType)]);

  function validType(t) {
    // "error" would reach EventSource's own error handler; "open" its open handler; the
    // private marker is the page's own business.
    return (
      t.length > 0 && t.length <= 64 && t !== "error" && t !== "open" && t !== PRIVATE_MARK &&
      !/[\u0000-\u001f\u007f]/.test(t)
    );
  }

  function renderTypes() {
    ui.typesList.replaceChildren(...[...types].map((t) => el("code", "type-name", t)));
    ui.typesList.dataset.types = [...types].join(" ");
  }

  /** Shows events of type `t` from now on, in this tab and (unless it came from there) the
   *  page's other tabs; the address keeps it for a reload. */
  function addType(t, fromChannel) {
    if (!validType(t) || types.has(t)) return false;
    types.add(t);
    renderTypes();
    if (current && current.source) current.listen(current.source, t);
    if (!fromChannel && current && current.channel) current.channel.postMessage({ t: "type", type: t });
    const q = new URLSearchParams(location.search);
    if (!q.getAll("type").includes(t)) q.append("type", t);
    history.replaceState(null, "", `?${q}`);
    return true;
  }

  /** Sorted, unique topic names from free text ("chat, news" or "chat news"). */
  function parseTopics(text) {
    const names = text
      .split(/[\s,]+/)
      .map((t) => t.trim())
      .filter((t) => t.length > 0 && new TextEncoder().encode(t).length <= 256);
    return [...new Set(names)].sort().slice(0, MAX_TOPICS);
  }

  function topicQuery(topics) {
    const q = new URLSearchParams();
    for (const t of topics) q.append("topic", t);
    return q;
  }

  // ---- What this tab has shown: ids seen (insertion order = arrival order), the last id. ----

  const seen = new Set();
  // Ids the server marked private (bounded like `seen`).
  const privateIds = new Set();
  let lastId = "";
  let bubble = null; // the open reply: { li, text, meta, count, first }
  // The events this tab showed last, in order (bounded in count and bytes), so that as the
  // holder it can give a tab coming back from the back/forward cache what it missed.
  const MAX_RECENT = 1000;
  const MAX_RECENT_BYTES = 4 << 20;
  const recent = [];
  let recentBytes = 0;

  function remember(ev) {
    recent.push(ev);
    recentBytes += ev.data.length;
    while (recent.length > MAX_RECENT || recentBytes > MAX_RECENT_BYTES) {
      recentBytes -= recent.shift().data.length;
    }
  }

  /** Shows an event unless its id was shown already; from this tab's stream or the holder's. */
  function deliver(ev) {
    if (ev.type === PRIVATE_MARK) {
      if (!privateIds.has(ev.data)) remember(ev);
      privateIds.add(ev.data);
      if (privateIds.size > MAX_SEEN) privateIds.delete(privateIds.values().next().value);
      return;
    }
    if (ev.id) {
      // A reset carries the newest id of that moment, which can also be an event's id.
      const key = ev.type === "reset" ? `reset ${ev.id}` : ev.id;
      if (seen.has(key)) return;
      seen.add(key);
      remember(ev);
      if (seen.size > MAX_SEEN) seen.delete(seen.values().next().value);
      lastId = ev.id;
    }
    render(ev);
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function idLabel(id) {
    return el("span", "ev-id", id ? `#${id}` : "–");
  }

  function append(li) {
    const stick = ui.feed.scrollHeight - ui.feed.scrollTop - ui.feed.clientHeight < 40;
    ui.feed.append(li);
    while (ui.feed.childElementCount > MAX_ROWS) {
      if (bubble && ui.feed.firstElementChild === bubble.li) bubble = null;
      ui.feed.firstElementChild.remove();
    }
    ui.empty.hidden = true;
    if (stick) ui.feed.scrollTop = ui.feed.scrollHeight;
  }

  /** The badge of a private event (only its subscriber's token let it through). */
  function privateBadge() {
    const b = el("span", "ev-private");
    T.set(b, "私有", "private");
    b.title = T.text("只有令牌允许的订阅者能收到", "only subscribers whose token may read it receive it");
    return b;
  }

  function render(ev) {
    if (ev.type === "token") return token(ev);
    if (ev.type === "done" && bubble) return finish(bubble, ev);
    if (ev.type === "reset") return reset(ev);
    const li = el("li", "ev");
    li.dataset.id = ev.id;
    li.dataset.type = ev.type;
    const type = el("span", "ev-type", ev.type);
    if (privateIds.has(ev.id)) {
      li.classList.add("private");
      li.dataset.private = "true";
      type.append(privateBadge());
    }
    li.append(idLabel(ev.id), type, el("span", "ev-data", ev.data));
    append(li);
  }

  function token(ev) {
    if (!bubble) {
      const li = el("li", "reply");
      li.dataset.type = "token";
      li.setAttribute("aria-busy", "true"); // read out once, when done
      const text = el("p", "bubble");
      const meta = el("p", "reply-meta");
      li.append(text, meta);
      bubble = { li, text, meta, count: 0, first: ev.id };
      append(li);
    }
    const span = el("span", "tok", ev.data);
    span.dataset.id = ev.id;
    span.title = `#${ev.id} token`;
    if (privateIds.has(ev.id)) {
      span.dataset.private = "true";
      span.title += " (private)";
      if (!bubble.li.dataset.private) {
        bubble.li.dataset.private = "true";
        bubble.li.classList.add("private");
        bubble.meta.before(privateBadge());
      }
    }
    const stick = ui.feed.scrollHeight - ui.feed.scrollTop - ui.feed.clientHeight < 40;
    bubble.text.append(span);
    bubble.count += 1;
    bubble.meta.textContent = `token × ${bubble.count} · #${bubble.first} → #${ev.id}`;
    if (stick) ui.feed.scrollTop = ui.feed.scrollHeight;
  }

  function finish(b, ev) {
    b.li.setAttribute("aria-busy", "false");
    b.li.classList.add("done");
    const end = el("span", "reply-done");
    end.dataset.id = ev.id;
    end.dataset.type = "done";
    end.textContent = ev.data ? ` · done #${ev.id}: ${ev.data}` : ` · done #${ev.id}`;
    b.meta.append(end);
    bubble = null;
  }

  function reset(ev) {
    let info = {};
    try {
      info = JSON.parse(ev.data);
    } catch (err) {
      console.warn("hub: reset data is not JSON", ev.data, err);
    }
    if (bubble) {
      // The reply's missing tokens will not come: close it as cut off.
      bubble.li.setAttribute("aria-busy", "false");
      bubble.li.classList.add("cut");
      bubble.meta.append(el("span", "reply-cut", ` · ${T.text("中断", "cut off")}`));
      bubble = null;
    }
    const li = el("li", "ev reset");
    li.dataset.type = "reset";
    li.dataset.resetId = ev.id;
    li.dataset.reason = info.reason || "";
    const why =
      info.reason === "gap"
        ? T.text("错过了一些事件（已不在服务器的历史中）", "Events were missed (no longer in the server's history).")
        : T.text("服务器不认识上次的事件 ID（可能已重启）", "The server does not know the last event id (it may have restarted).");
    const text = el("span", "ev-data");
    text.append(el("strong", "", `⚠ ${T.text("重置", "reset")}`), document.createTextNode(" " + why + " "));
    const reload = el("button", "btn btn-secondary btn-small", T.text("重新加载", "Reload"));
    reload.type = "button";
    reload.addEventListener("click", () => location.reload());
    text.append(reload);
    li.append(idLabel(ev.id), el("span", "ev-type", "reset"), text);
    append(li);
  }

  // ---- The subscription: this tab holds the stream, follows the holder, or goes it alone. ----

  // Each text a pair: Chinese, English (arranged by i18n.js).
  const STATE_TEXT = {
    waiting: ["等待共享连接…", "Waiting for the shared connection…"],
    connecting: ["连接中…", "Connecting…"],
    open: ["已连接", "Connected"],
    reconnecting: ["连接中断，正在重连（会从上次的事件继续）", "Connection lost, reconnecting (resumes after the last event)…"],
    failed: ["连接失败（服务器拒绝了这个订阅）", "Failed: the server refused this subscription"],
    // The server's 401 for the subscription (learnt with a HEAD of the same address).
    refused: ["订阅令牌被拒绝（401）：令牌无效或已过期", "The subscribe token was refused (401): invalid or expired"],
    closed: ["已退订", "Unsubscribed"],
  };
  const ROLE_TEXT = {
    holder: ["本标签页持有连接，并转发给本页的其他标签页", "This tab holds the connection and relays it to the page's other tabs"],
    follower: ["通过另一个标签页的连接接收", "Receiving through another tab's connection"],
    solo: ["本标签页独自连接（浏览器不支持共享）", "This tab has its own connection (no sharing in this browser)"],
  };
  function say(target, pair) {
    if (pair) T.set(target, pair[0], pair[1]);
    else target.replaceChildren();
  }

  class Subscription {
    constructor(topics) {
      this.topics = topics;
      this.name = `sse-hub?${topicQuery(topics)}`;
      this.role = "none";
      this.state = "waiting";
      this.source = null;
      this.channel = null;
      this.abort = null;
      this.release = null;
      this.stopped = false;
      // Back from the back/forward cache as a follower: what the holder relayed meanwhile
      // is asked for (`since`); live events wait in `queue` until that replay is shown.
      this.catchUp = null;
    }

    start() {
      if (!shareable) {
        this.role = "solo";
        this.open();
        return;
      }
      this.channel = new BroadcastChannel(this.name);
      this.channel.onmessage = (m) => this.onMessage(m.data);
      this.role = "follower";
      this.show("waiting");
      this.channel.postMessage({ t: "hello" }); // the holder answers with its state
      if (this.catchUp) this.askSince(10);
      this.abort = new AbortController();
      navigator.locks
        .request(this.name, { signal: this.abort.signal }, () => {
          if (this.stopped) return undefined;
          this.role = "holder";
          // Holding the stream, this tab resumes from its own last id: what was queued comes
          // again from the server, in order.
          this.catchUp = null;
          this.open();
          // Held until this tab unsubscribes or goes away.
          return new Promise((resolve) => {
            this.release = resolve;
          });
        })
        .catch((err) => {
          if (err.name !== "AbortError") console.warn("hub: lock request failed", err);
        });
    }

    /** Asks the holder for what it showed after this tab's last id; again each second while
     *  no answer comes (the holder may be changing hands), `tries` times, then gives up with
     *  the missed-events notice. */
    askSince(tries) {
      const c = this.catchUp;
      if (!c || this.stopped) return;
      if (tries === 0) {
        this.onMessage({ t: "replay", after: c.after, evs: null });
        return;
      }
      this.channel.postMessage({ t: "since", id: c.after });
      setTimeout(() => {
        if (this.catchUp === c) this.askSince(tries - 1);
      }, 1000);
    }

    open() {
      const q = topicQuery(this.topics);
      // Resume after what this tab has shown (the previous holder's last relayed event).
      if (lastId) q.set("lastEventID", lastId);
      // Ask the server to mark private events, so the feed can say which are.
      q.set("markPrivate", "1");
      ui.status.dataset.resumedFrom = lastId;
      const url = `/sse?${q}`;
      const es = new EventSource(url);
      this.source = es;
      this.show("connecting");
      es.onopen = () => {
        if (es !== this.source) return;
        ui.status.dataset.holderSince = String(Date.now());
        this.show("open");
      };
      es.onerror = () => {
        if (es !== this.source) return;
        if (es.readyState === EventSource.CONNECTING) {
          this.show("reconnecting");
        } else {
          console.warn("hub: the subscription was refused", this.topics);
          this.show("failed");
          // EventSource does not say why; the same request's HEAD does (a bad subscribe
          // token is a 401 before anything else).
          fetch(url, { method: "HEAD", credentials: "same-origin", cache: "no-store" })
            .then((r) => {
              if (es !== this.source || this.stopped) return;
              ui.status.dataset.refused = String(r.status);
              if (r.status === 401) this.show("refused");
            })
            .catch(() => {});
        }
      };
      for (const type of [...types, PRIVATE_MARK]) this.listen(es, type);
    }

    /** Shows (and relays) events of `type` from `es`. */
    listen(es, type) {
      es.addEventListener(type, (e) => {
        if (es !== this.source) return;
        const ev = { id: e.lastEventId, type: e.type, data: e.data };
        if (this.channel) this.channel.postMessage({ t: "event", ev });
        deliver(ev);
      });
    }

    onMessage(m) {
      if (this.stopped || !m) return;
      if (m.t === "event" && this.catchUp) {
        if (this.catchUp.queue.length < MAX_RECENT) this.catchUp.queue.push(m.ev);
      } else if (m.t === "event") deliver(m.ev);
      else if (m.t === "since" && this.role === "holder") {
        // Everything shown after that id, or null when it is no longer remembered.
        const i = recent.findIndex((ev) => ev.id === m.id && ev.type !== PRIVATE_MARK);
        this.channel.postMessage({ t: "replay", after: m.id, evs: i < 0 ? null : recent.slice(i + 1) });
      } else if (m.t === "replay" && this.catchUp && m.after === this.catchUp.after) {
        const queue = this.catchUp.queue;
        this.catchUp = null;
        // Too long away for the holder's memory: say events were missed, as the server does.
        if (m.evs === null) deliver({ id: "", type: "reset", data: JSON.stringify({ reason: "gap" }) });
        for (const ev of m.evs || []) deliver(ev);
        for (const ev of queue) deliver(ev);
      }
      else if (m.t === "type") addType(m.type, true);
      else if (m.t === "state" && this.role === "follower") this.show(m.state);
      else if (m.t === "hello" && this.role === "holder") this.channel.postMessage({ t: "state", state: this.state });
    }

    show(state) {
      this.state = state;
      if (this.role === "holder") this.channel.postMessage({ t: "state", state });
      ui.status.dataset.state = state;
      ui.status.dataset.role = this.role;
      say(ui.state, STATE_TEXT[state] || [state, state]);
      say(ui.role, ROLE_TEXT[this.role]);
      ui.unsubscribe.setAttribute("aria-disabled", "false");
    }

    /** Ends this subscription: closes its stream, gives up the lock and the channel. */
    stop() {
      this.releaseAll();
      ui.status.dataset.state = "closed";
      ui.status.dataset.role = "none";
      say(ui.state, STATE_TEXT.closed);
      say(ui.role, null);
      ui.unsubscribe.setAttribute("aria-disabled", "true");
    }

    /** Closes the stream and lets go of the lock (the next tab takes over) and the channel. */
    releaseAll() {
      this.stopped = true;
      if (this.source) this.source.close();
      if (this.abort) this.abort.abort();
      if (this.release) this.release();
      if (this.channel) this.channel.close();
    }
  }

  let current = null;

  // A subscriber token travels as the `mercureAuthorization` cookie (same-origin EventSource
  // sends cookies; the token stays out of addresses and logs). Every tab of the page shares
  // the cookie, as it shares the connection.
  const TOKEN_COOKIE = "mercureAuthorization";

  function applyToken() {
    const t = ui.subToken.value.trim();
    if (t && /^[A-Za-z0-9_.-]+$/.test(t)) {
      document.cookie = `${TOKEN_COOKIE}=${t}; path=/; SameSite=Strict`;
      return t;
    }
    document.cookie = `${TOKEN_COOKIE}=; path=/; max-age=0; SameSite=Strict`;
    return "";
  }

  function subscribe(topics) {
    const token = applyToken();
    if (current && current.name === `sse-hub?${topicQuery(topics)}` && current.token === token) return;
    if (current) current.stop();
    current = null;
    // Another subscription is another cursor: forget what the previous one showed.
    seen.clear();
    privateIds.clear();
    lastId = "";
    bubble = null;
    ui.topics.value = topics.join(" ");
    if (!ui.pubTopic.value || !topics.includes(ui.pubTopic.value)) ui.pubTopic.value = topics[0];
    const q = topicQuery(topics);
    for (const t of address.getAll("type")) q.append("type", t);
    history.replaceState(null, "", `?${q}`);
    current = new Subscription(topics);
    current.token = token;
    current.start();
  }

  ui.subForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const topics = parseTopics(ui.topics.value);
    if (topics.length === 0) {
      ui.topics.focus();
      return;
    }
    subscribe(topics);
  });

  ui.unsubscribe.addEventListener("click", () => {
    if (!current) return;
    current.stop();
    current = null;
    history.replaceState(null, "", location.pathname);
  });

  // ---- Publishing (POST /publish, with the publish token if one is given). ----

  /** A refused publish, with what the answer was about. */
  class PublishError extends Error {
    constructor(status, text) {
      super(text || `HTTP ${status}`);
      this.status = status;
    }
  }

  async function publish(topic, type, data) {
    const body = new URLSearchParams({ topic, data });
    if (type) body.set("type", type);
    if (ui.pubPrivate.checked) body.set("private", "on");
    const headers = {};
    // Only the publish token: a subscribe token pasted for a private topic is not a
    // publisher's (it would get 403).
    const token = ui.pubToken.value.trim();
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch("/publish", { method: "POST", body, headers });
    const text = (await res.text()).trim();
    if (!res.ok) throw new PublishError(res.status, text);
    return text;
  }

  function said(zh, en, ok, about) {
    T.set(ui.pubResult, zh, en);
    ui.pubResult.dataset.ok = String(ok);
    if (about) ui.pubResult.dataset.about = about;
    else delete ui.pubResult.dataset.about;
  }

  /** Says why a publish failed, naming the token a 401 or 403 is about. */
  function failed(err) {
    const why = err.message;
    if (err.status === 401 || err.status === 403) {
      const given = ui.pubToken.value.trim() !== "";
      if (!given) {
        return said(`发布需要发布令牌（订阅令牌不用于发布）：${why}`, `publishing needs a publish token (the subscribe token is not sent): ${why}`, false, "publish-token");
      }
      if (err.status === 401) {
        return said(`发布令牌被拒绝：${why}`, `the publish token was refused: ${why}`, false, "publish-token");
      }
      return said(`发布令牌不允许发布到这个主题：${why}`, `the publish token may not publish here: ${why}`, false, "publish-token");
    }
    said(`发布失败：${why}`, `not published: ${why}`, false, null);
  }

  // What the server requires to publish (GET /publish), said next to the form.
  const POLICY_TEXT = {
    tokenless: ["本机无需令牌即可发布", "from this machine no token is needed"],
    "none": ["只有服务器本机可以发布（未配置令牌）", "only the server's own machine may publish (no token is configured)"],
    "publish-token": ["发布需要发布令牌（--publish-token）", "publishing needs the publish token (--publish-token)"],
    "jwt": ["发布需要发布者 JWT（mercure.publish），本机也一样", "publishing needs a publisher JWT (mercure.publish), from this machine too"],
    "publish-token or jwt": ["发布需要发布令牌或发布者 JWT", "publishing needs the publish token or a publisher JWT"],
  };
  fetch("/publish", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((p) => {
      const key = p.tokenless ? "tokenless" : p.token;
      const text = POLICY_TEXT[key];
      if (!text) return;
      T.set(ui.pubHint, text[0], text[1]);
      ui.pubHint.dataset.token = p.token;
      ui.pubHint.dataset.tokenless = String(p.tokenless);
    })
    .catch((err) => console.warn("hub: no publish policy", err));

  ui.pubForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const topic = ui.pubTopic.value.trim();
    if (!topic) return;
    try {
      const id = await publish(topic, ui.pubType.value.trim(), ui.pubData.value);
      said(`已发布 #${id}`, `published #${id}`, true, null);
    } catch (err) {
      failed(err);
    }
  });

  ui.typeForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const t = ui.typeInput.value.trim();
    if (addType(t, false) || types.has(t)) ui.typeInput.value = "";
    else ui.typeInput.setAttribute("aria-invalid", "true");
  });
  ui.typeInput.addEventListener("input", () => ui.typeInput.removeAttribute("aria-invalid"));
  renderTypes();

  const SAMPLE = [
    "服务器推送事件", "（SSE）", "让服务器", "沿着一个", "普通的 HTTP 响应", "逐条推送数据。",
    " Server-Sent", " Events", " stream", " a reply", " token", " by", " token,", " over", " one", " plain",
    " HTTP", " response.",
  ];
  let demoRunning = false;
  ui.demo.addEventListener("click", async () => {
    const topic = ui.pubTopic.value.trim();
    if (!topic || demoRunning) return;
    demoRunning = true;
    ui.demo.setAttribute("aria-disabled", "true");
    try {
      for (const tok of SAMPLE) {
        await publish(topic, "token", tok);
        await new Promise((r) => setTimeout(r, 60));
      }
      const id = await publish(topic, "done", "");
      said(`已发布 ${SAMPLE.length + 1} 个事件，最后 #${id}`, `published ${SAMPLE.length + 1} events, last #${id}`, true, null);
    } catch (err) {
      failed(err);
    } finally {
      demoRunning = false;
      ui.demo.setAttribute("aria-disabled", "false");
    }
  });

  // ---- The back/forward cache: a page nobody sees holds no stream. ----
  // A page kept in the browser's back/forward cache would keep its EventSource, and with it
  // the server's count of subscribers, the shared connection's lock (the other tabs could not
  // take over) and the channel. On `pagehide` the subscription lets go of all three; on
  // `pageshow` from the cache it starts again, resuming after the last id this tab showed (as
  // the holder from the server; as a follower from the holder, which remembers what it showed
  // last), so the feed goes on with no gap and no repeat.
  window.addEventListener("pagehide", () => {
    if (!current || current.stopped) return;
    current.releaseAll();
    ui.status.dataset.state = "hidden";
  });
  window.addEventListener("pageshow", (e) => {
    ui.status.dataset.restored = String(e.persisted);
    if (!e.persisted || !current || !current.stopped || ui.status.dataset.state !== "hidden") return;
    const token = current.token;
    current = new Subscription(current.topics);
    current.token = token;
    if (lastId) current.catchUp = { after: lastId, queue: [] };
    current.start();
  });

  // ---- At load: subscribe to the topics named in the address. ----

  const initial = parseTopics(address.getAll("topic").join(" "));
  if (initial.length > 0) subscribe(initial);
})();
