"use strict";
// The page's two languages, Chinese (the seed's) and English. Every text is written as a pair
// of elements, `<span lang="zh-CN">…</span><span lang="en">…</span>`; this script decides which
// leads and marks the other as secondary (`.alt`, muted), so each element keeps its own `lang`
// and the browser picks a font per script.
//
// The lead: `?lang=zh|en` if given; else the first of `navigator.languages` that is Chinese or
// English (Chinese stays the lead for a Chinese browser); else English. A machine with no
// font that can draw Chinese (checked once on a canvas) would show boxes, so there the Chinese
// texts are hidden (`html.no-cjk`) and English leads, unless `?lang=zh` asks for Chinese.
//
// Loaded first (deferred, before app.js and hub.js), it also offers `window.I18N` to them:
// `set(el, zh, en)` fills an element with a pair, `text(zh, en)` gives a plain string.
(() => {
  const params = new URLSearchParams(location.search);

  /** Whether some font draws Chinese: `中` rendered differs from a code point no font has. */
  function hasCjkFont() {
    try {
      const c = document.createElement("canvas");
      c.width = 48;
      c.height = 48;
      const g = c.getContext("2d", { willReadFrequently: true });
      if (!g) return true;
      const draw = (ch) => {
        g.clearRect(0, 0, 48, 48);
        g.font = "40px sans-serif";
        g.fillText(ch, 2, 40);
        return g.getImageData(0, 0, 48, 48).data.join(",");
      };
      // U+0378 is unassigned: every font draws its "missing glyph" box for it.
      return draw("\u4e2d") !== draw("\u0378");
    } catch (err) {
      console.warn("i18n: cannot check fonts", err);
      return true;
    }
  }

  /** "zh" or "en" from the address's `lang`, the browser's languages and the fonts. */
  function chooseLead(asked, languages, cjk) {
    const a = (asked || "").toLowerCase();
    if (a.startsWith("zh")) return "zh";
    if (a.startsWith("en")) return "en";
    for (const l of languages) {
      const x = String(l).toLowerCase();
      if (x.startsWith("zh")) return cjk ? "zh" : "en";
      if (x.startsWith("en")) return "en";
    }
    return "en";
  }

  const cjk = hasCjkFont();
  const languages = navigator.languages && navigator.languages.length > 0 ? navigator.languages : [navigator.language || "en"];
  const lead = chooseLead(params.get("lang"), languages, cjk);
  const root = document.documentElement;
  root.lang = lead === "zh" ? "zh-CN" : "en";
  root.dataset.lead = lead;
  root.classList.toggle("no-cjk", !cjk);
  // Chinese is shown where a font draws it, or where it was asked for.
  const showZh = cjk || lead === "zh";
  root.classList.toggle("hide-zh", !showZh);

  const isZh = (el) => el.lang.toLowerCase().startsWith("zh");

  /** Lead language first in every pair under `scope`, the other marked `.alt`. */
  function arrange(scope) {
    for (const el of scope.querySelectorAll("[lang]")) {
      if (el === root) continue;
      const zh = isZh(el);
      el.classList.toggle("alt", zh !== (lead === "zh"));
      // Pairs are written Chinese first; an English lead moves its English before it.
      const next = el.nextElementSibling;
      if (lead === "en" && zh && next && next.lang && !isZh(next) && next.previousSibling === el) {
        el.before(next);
      }
    }
    for (const el of scope.querySelectorAll("[data-label-en]")) {
      el.setAttribute("aria-label", lead === "zh" ? el.dataset.labelZh : el.dataset.labelEn);
    }
  }

  function span(lang, text) {
    const s = document.createElement("span");
    s.lang = lang;
    s.textContent = text;
    return s;
  }

  /** Fills `el` with the pair (lead first). */
  function set(el, zh, en) {
    const a = span("zh-CN", zh);
    const b = span("en", en);
    a.classList.toggle("alt", lead !== "zh");
    b.classList.toggle("alt", lead === "zh");
    el.replaceChildren(...(lead === "zh" ? [a, b] : [b, a]));
  }

  /** The pair as one string, lead first (the lead alone where Chinese is hidden). */
  function text(zh, en) {
    if (!showZh) return en;
    return lead === "zh" ? `${zh} · ${en}` : `${en} · ${zh}`;
  }

  function ready() {
    arrange(document.body);
    const t = document.querySelector("title");
    if (t && t.dataset.zh) document.title = text(t.dataset.zh, t.dataset.en);
    // The switch offers the other language (in its own script, when a font draws it).
    const sw = document.getElementById("lang-switch");
    if (sw) {
      const other = lead === "zh" ? "en" : "zh";
      const q = new URLSearchParams(location.search);
      q.set("lang", other);
      sw.href = `?${q}`;
      sw.replaceChildren(other === "en" ? span("en", "English") : showZh ? span("zh-CN", "中文") : span("en", "Chinese"));
      sw.hidden = false;
    }
  }

  window.I18N = { lead, cjk, showZh, set, text, arrange, chooseLead };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready, { once: true });
  else ready();
})();
