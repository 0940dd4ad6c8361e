"use strict";
let sse = null;
const list = document.getElementById("list");
const state = document.getElementById("state");
document.getElementById("connect").addEventListener("click", () => {
  if (sse && sse.readyState !== EventSource.CLOSED) return;
  sse = new EventSource("/sse");
  sse.onopen = () => { state.textContent = `SSE 连接成功,状态${sse.readyState}`; };
  sse.addEventListener("sseEvent", (e) => {
    const li = document.createElement("li");
    li.textContent = JSON.parse(e.data).content;
    list.appendChild(li);
  });
});
document.getElementById("close").addEventListener("click", () => { if (sse) sse.close(); });
