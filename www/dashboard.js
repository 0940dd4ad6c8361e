"use strict";
// The dashboard: the server's own figures, pushed once a second by `GET /metrics/stream`
// (`event: figures`, JSON data; on connect the last 5 minutes come first, oldest first), drawn
// as inline SVG charts by this file. Counters are cumulative, so rates come from consecutive
// samples; a counter that goes down (a restarted server) or a gap in time breaks the line.
(() => {
  const WINDOW_MS = 5 * 60 * 1000; // samples kept, and the widest view
  const MIN_SPAN_MS = 30 * 1000; // a fresh server's few samples are drawn over at least this
  const MAX_GAP_MS = 5000; // samples further apart than this are not joined
  const W = 600; // the charts' drawing coordinates (the SVG stretches to its box)
  const H = 160;
  const MIB = 1024 * 1024;

  // What each chart shows. A series is a gauge (`get`) or the per-second rate of a counter
  // (`rate`, times `scale`).
  const CHARTS = [
    {
      key: "streams", zh: "打开的流", en: "Streams open",
      series: [
        { zh: "流", en: "streams", get: (s) => s.streams_open },
        { zh: "订阅者", en: "hub subscribers", get: (s) => s.hub_subscribers },
        { zh: "连接", en: "connections", get: (s) => s.connections_open },
      ],
    },
    {
      key: "frames", zh: "帧与投递", en: "Frames and deliveries", unit: "/s",
      series: [
        { zh: "帧", en: "frames", rate: "frames_total" },
        { zh: "投递", en: "deliveries", rate: "deliveries_total" },
      ],
    },
    { key: "publishes", zh: "发布", en: "Publishes", unit: "/s", series: [{ zh: "发布", en: "publishes", rate: "publishes_total" }] },
    {
      key: "resets", zh: "重置与超时", en: "Resets and timeouts", unit: "/s", totals: true,
      series: [
        { zh: "重置", en: "resets", rate: "resets_total" },
        { zh: "超时", en: "timeouts", rate: "timeouts_total" },
      ],
    },
    { key: "rss", zh: "内存", en: "Resident memory (RSS)", unit: " MiB", series: [{ zh: "RSS", en: "MiB", get: (s) => s.rss_bytes / MIB }] },
    { key: "cpu", zh: "处理器", en: "CPU, % of one core", unit: " %", series: [{ zh: "CPU", en: "%", rate: "cpu_seconds", scale: 100 }] },
  ];

  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const ui = { status: $("dash-status"), state: $("dash-state"), time: $("dash-time"), charts: $("charts") };
  // The page's two languages (i18n.js): `T.set(el, zh, en)`, `T.text(zh, en)`.
  const T = window.I18N;

  let samples = []; // oldest first, each the parsed JSON object
  let dirty = false;

  // ---- the DOM of each chart, built once ----

  function node(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svgNode(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  const charts = CHARTS.map((c) => {
    const fig = node("figure", "chart");
    fig.dataset.key = c.key;
    const cap = node("figcaption");
    const title = node("span", "chart-title");
    T.set(title, c.zh, c.en);
    const legend = node("ul", "legend");
    const values = c.series.map((s, i) => {
      const li = node("li");
      li.dataset.series = String(i);
      li.append(node("span", "swatch"));
      const label = node("span", "legend-label");
      if (c.series.length > 1) T.set(label, s.zh, s.en);
      const value = node("span", "legend-value", "–");
      li.append(label, value);
      legend.append(li);
      return value;
    });
    const total = c.totals ? node("span", "chart-total", "") : null;
    cap.append(title, legend);
    if (total) cap.append(total);

    const plot = node("div", "plot");
    const svg = svgNode("svg", {
      viewBox: `0 0 ${W} ${H}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": T.text(c.zh, c.en),
    });
    for (const y of [0, H / 2, H]) {
      svg.append(svgNode("line", { x1: 0, x2: W, y1: y, y2: y, class: y === H ? "axis" : "grid" }));
    }
    const area = svgNode("path", { class: "area", d: "" });
    svg.append(area);
    const lines = c.series.map((_, i) => {
      const p = svgNode("path", { class: `line s${i}`, d: "" });
      svg.append(p);
      return p;
    });
    const yMax = node("span", "y-max", "");
    const yZero = node("span", "y-zero", "0");
    const xAxis = node("div", "x-axis");
    const xFrom = node("span", "", "");
    const now = node("span");
    T.set(now, "现在", "now");
    xAxis.append(xFrom, now);
    plot.append(svg, yMax, yZero);
    fig.append(cap, plot, xAxis);
    ui.charts.append(fig);
    return { c, fig, svg, area, lines, values, total, yMax, xFrom };
  });

  // ---- data ----

  /** The value of series `s` at sample `i`, or null where it cannot be known. */
  function valueAt(s, i) {
    const cur = samples[i];
    if (s.get) {
      const v = s.get(cur);
      return Number.isFinite(v) ? v : null;
    }
    if (i === 0) return null;
    const prev = samples[i - 1];
    const dt = (cur.t - prev.t) / 1000;
    const d = cur[s.rate] - prev[s.rate];
    if (!(dt > 0) || dt * 1000 > MAX_GAP_MS || !Number.isFinite(d) || d < 0) return null;
    return (d / dt) * (s.scale || 1);
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  const fmt = (v) => {
    if (v === null || v === undefined) return "–";
    const digits = Math.abs(v) >= 100 || Number.isInteger(v) ? 0 : Math.abs(v) >= 10 ? 1 : 2;
    return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  };

  function draw() {
    dirty = false;
    if (samples.length === 0) return;
    const now = samples[samples.length - 1].t;
    // The last 5 minutes, or what there is of them (at least 30 s) on a server just started.
    const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, now - samples[0].t));
    const from = now - span;
    const x = (t) => (((t - from) / span) * W).toFixed(1);
    const secs = Math.round(span / 1000);
    const fromLabel =
      secs < 120 ? `−${secs} ${T.text("秒", "s")}` : `−${Math.round(secs / 60)} ${T.text("分钟", "min")}`;
    for (const ch of charts) {
      const series = ch.c.series.map((s) => samples.map((_, i) => valueAt(s, i)));
      let max = 0;
      for (const vs of series) for (const v of vs) if (v !== null && v > max) max = v;
      const top = niceCeil(max);
      const y = (v) => (H - (v / top) * H).toFixed(1);
      ch.yMax.textContent = fmt(top) + (ch.c.unit || "");
      ch.xFrom.textContent = fromLabel;
      series.forEach((vs, k) => {
        let d = "";
        let pen = false;
        let areaD = "";
        let runStart = null;
        let lastX = null;
        vs.forEach((v, i) => {
          if (v === null) {
            if (k === 0 && runStart !== null) areaD += `L${lastX} ${H}L${runStart} ${H}Z`;
            pen = false;
            runStart = null;
            return;
          }
          const px = x(samples[i].t);
          d += `${pen ? "L" : "M"}${px} ${y(v)}`;
          if (k === 0) {
            areaD += `${pen ? "L" : `M${px} ${H}L`}${px} ${y(v)}`;
            if (runStart === null) runStart = px;
          }
          pen = true;
          lastX = px;
        });
        if (k === 0 && runStart !== null) areaD += `L${lastX} ${H}L${runStart} ${H}Z`;
        ch.lines[k].setAttribute("d", d);
        if (k === 0) ch.area.setAttribute("d", areaD);
        const latest = vs[vs.length - 1];
        ch.values[k].textContent = fmt(latest) + (latest === null ? "" : ch.c.unit || "");
      });
      if (ch.total) {
        const last = samples[samples.length - 1];
        ch.total.textContent = `${T.text("累计", "total")}: ${ch.c.series.map((s) => `${s.en} ${fmt(last[s.rate])}`).join(", ")}`;
      }
      const latest = series.map((vs) => vs[vs.length - 1]);
      ch.fig.dataset.latest = JSON.stringify(latest);
      ch.svg.setAttribute("aria-label", `${T.text(ch.c.zh, ch.c.en)}: ${latest.map(fmt).join(", ")}${ch.c.unit || ""}`);
    }
    ui.charts.dataset.samples = String(samples.length);
  }

  function schedule() {
    if (dirty) return;
    dirty = true;
    // Drawn once per frame however many samples arrived (the 5-minute backlog comes at once);
    // not at all while the tab is hidden.
    if (!document.hidden) requestAnimationFrame(draw);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && dirty) requestAnimationFrame(draw);
  });

  function onFigures(e) {
    let s;
    try {
      s = JSON.parse(e.data);
    } catch (err) {
      console.warn("dashboard: figures are not JSON", e.data, err);
      return;
    }
    if (typeof s !== "object" || s === null || !Number.isFinite(s.t)) return;
    const last = samples[samples.length - 1];
    if (last && s.t <= last.t) return; // sent again after a reconnect
    samples.push(s);
    let cut = 0;
    while (cut < samples.length && samples[cut].t < s.t - WINDOW_MS) cut += 1;
    if (cut > 0) samples = samples.slice(cut);
    const at = new Date(s.t).toLocaleTimeString("zh-CN", { hour12: false });
    show("open", "实时", "Live");
    ui.time.textContent = `${T.text("最新数据", "last sample")} ${at}`; // outside the live region: not read out each second
    schedule();
  }

  function show(state, zh, en) {
    ui.status.dataset.state = state;
    if (ui.state.dataset.shown !== en) {
      ui.state.dataset.shown = en;
      T.set(ui.state, zh, en);
    }
  }

  const source = new EventSource("/metrics/stream");
  show("connecting", "连接中…", "Connecting…");
  source.addEventListener("figures", onFigures);
  source.onerror = () => {
    if (source.readyState === EventSource.CONNECTING) {
      show("reconnecting", "连接中断，正在重连…", "Connection lost, reconnecting…");
    } else {
      console.warn("dashboard: /metrics/stream refused");
      show("failed", "无法连接 /metrics/stream", "Cannot connect to /metrics/stream");
    }
  };
})();
