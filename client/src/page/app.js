// The chat page: GET /events (Server-Sent Events) into the list, the form
// into POST /sendMessage. Author and text only ever reach the DOM as text
// (textContent), never as HTML. At most MAX_MESSAGES stay in the DOM.
"use strict";

const MAX_MESSAGES = 1000;
const AUTHOR_KEY = "messenger.author";
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 8000;
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

const log = document.getElementById("log");
const list = document.getElementById("messages");
const state = document.getElementById("state");
const form = document.getElementById("send");
const author = document.getElementById("author");
const text = document.getElementById("text");
const sendError = document.getElementById("send-error");
const traceUi = document.querySelector('meta[name="messenger-trace-ui"]').content;

// The id of the last event received: where a reconnect resumes.
let lastId = "";
let source = null;
let retryMs = RETRY_MIN_MS;
let retryTimer = 0;

function setState(kind, label) {
  state.dataset.state = kind;
  state.textContent = label;
}

function element(tag, className, content) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (content !== undefined) e.textContent = content;
  return e;
}

function append(item) {
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  list.append(item);
  while (list.childElementCount > MAX_MESSAGES) list.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}

function showMessage(id, m) {
  const item = element("li", "message");
  item.dataset.id = id;
  const meta = element("div", "meta");
  meta.append(element("span", "author", m.author));
  const time = element("time", "", localTime(m.sendTime));
  time.dateTime = m.sendTime;
  time.title = m.sendTime;
  meta.append(time);
  const trace = traceUi && TRACEPARENT.exec(m.traceparent || "");
  if (trace) {
    const a = element("a", "trace", "trace");
    a.href = traceUi + trace[1];
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    meta.append(a);
  }
  item.append(meta, element("p", "text", m.text));
  append(item);
}

function localTime(sendTime) {
  // Date parses milliseconds; sendTime has nanoseconds.
  const d = new Date(String(sendTime).replace(/(\.\d{3})\d*/, "$1"));
  return isNaN(d) ? String(sendTime) : d.toLocaleTimeString();
}

function showGap(missed) {
  const n = typeof missed === "number" ? ` (${missed} missed)` : "";
  append(element("li", "gap", `messages were lost here${n}`));
  setState("gap", "live — messages were lost here");
}

function connect() {
  retryTimer = 0;
  const url = lastId ? `/events?since=${encodeURIComponent(lastId)}` : "/events";
  const es = new EventSource(url);
  source = es;
  es.addEventListener("ready", (e) => {
    if (e.lastEventId) lastId = e.lastEventId;
    retryMs = RETRY_MIN_MS;
    setState("live", "live");
  });
  es.addEventListener("gap", (e) => {
    if (e.lastEventId) lastId = e.lastEventId;
    const missed = JSON.parse(e.data).missed;
    // 0: our position was ahead of the server's head; nothing was lost.
    if (missed !== 0) showGap(missed);
  });
  es.onmessage = (e) => {
    if (e.lastEventId) lastId = e.lastEventId;
    showMessage(e.lastEventId, JSON.parse(e.data));
  };
  es.onerror = () => {
    setState("reconnecting", "reconnecting…");
    // The browser retries a dropped stream by itself (with Last-Event-ID);
    // a refused one (503 while the server is away) is ours to retry.
    if (es.readyState === EventSource.CLOSED && source === es && !retryTimer) {
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  };
}

author.value = localStorage.getItem(AUTHOR_KEY) || "";
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  localStorage.setItem(AUTHOR_KEY, author.value);
  sendError.textContent = "";
  try {
    const r = await fetch("/sendMessage", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ author: author.value, text: text.value }),
    });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || `HTTP ${r.status}`);
    text.value = "";
  } catch (err) {
    sendError.textContent = `not sent: ${err.message}`;
  }
  text.focus();
});
(author.value ? text : author).focus();
connect();
