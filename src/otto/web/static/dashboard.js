// Otto dashboard: keeps a server-rendered page live. The event stream (SSE, resumed
// from the last event id) says when something changed; the page then fetches its
// regions again (`?part=NAME`, one template block each), so whatever it shows comes
// from the state machine's stored state and nothing is missed across a reconnection.
import { AnsiUp } from "./vendor/ansi_up-6.0.6.js";

const body = document.body;
const FINISHED = new Set(["Success", "Unstable", "Aborted", "Failed", "Error", "NotRun", "Complete"]);

// -- live regions -------------------------------------------------------------------
let timer = null;
let busy = false;
let again = false;

function schedule(delay = 150) {
  if (timer === null) timer = setTimeout(() => { timer = null; refresh(); }, delay);
}

async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  try {
    for (const region of document.querySelectorAll("[data-live]")) await refreshRegion(region);
  } catch {
    // The server is away: the next (re)connection refreshes again.
  } finally {
    busy = false;
    if (again) { again = false; schedule(0); }
  }
}

async function refreshRegion(region) {
  const url = new URL(location.href);
  url.hash = "";
  url.searchParams.set("part", region.dataset.live);
  const append = region.dataset.mode === "append";
  if (append) url.searchParams.set("after", region.dataset.after || "0");
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  const template = document.createElement("template");
  template.innerHTML = (await response.text()).trim();
  if (append) {
    const known = Number(region.dataset.after || 0);
    const rows = [...template.content.querySelectorAll("[data-seq]")]
      .filter((row) => Number(row.dataset.seq) > known);
    if (rows.length) {
      region.append(...rows);
      region.dataset.after = rows[rows.length - 1].dataset.seq;
    }
    return;
  }
  const fresh = template.content.firstElementChild;
  if (!fresh) return;
  const focused = document.activeElement && document.activeElement.id;
  region.replaceWith(fresh);
  if (window.htmx) window.htmx.process(fresh);
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  markOpenStep();
}

// Durations of running things count up; auctions show bids as they arrive.
setInterval(() => {
  if (document.querySelector(".st-live")) schedule(0);
}, 5000);
setInterval(() => {
  if (document.querySelector("[data-poll]:not([data-poll='0'])")) schedule(0);
}, 1000);

// -- the event stream ---------------------------------------------------------------
const badge = document.getElementById("live");
let lastId = body.dataset.after || "0";
let opened = false;

function setLive(state) {
  badge.dataset.state = state;
  badge.textContent = state;
}

function connect() {
  const url = new URL(body.dataset.events, location.href);
  url.searchParams.set("after", lastId);
  const source = new EventSource(url);
  source.addEventListener("open", () => {
    setLive("live");
    if (opened) schedule(0); // back after a drop or a restart: catch up
    opened = true;
  });
  source.addEventListener("transition", (event) => {
    lastId = event.lastEventId;
    const transition = JSON.parse(event.data);
    if (body.dataset.watch === "all" || transition.entity === body.dataset.watch) schedule();
  });
  source.addEventListener("error", () => {
    setLive("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connect, 1000);
    }
  });
}

// -- actions (Abort, Retry) --------------------------------------------------------------
// They are JSON POSTs (a page elsewhere cannot send those). When the server has an API
// token, the first refused one asks for it once and exchanges it for a session cookie
// (`POST /login`; HttpOnly, so no script here or in an artifact can read it back); the
// session's CSRF token, from the page or the login's answer, goes along as a header.
function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = false;
  setTimeout(() => { box.hidden = true; }, 4000);
}

let csrf = (document.querySelector("meta[name='otto-csrf']") || {}).content || "";

async function refusal(response) {
  const problem = await response.json().catch(() => ({}));
  return `Refused: ${(problem.error && problem.error.message) || response.status}`;
}

// "" once logged in; else why not (null: the user gave no token).
async function login() {
  const given = prompt("This server needs its API token:");
  if (!given) return null;
  const response = await fetch("/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: given.trim() }),
  });
  if (!response.ok) return refusal(response);
  csrf = (await response.json()).csrf || "";
  return "";
}

async function post(url, retried = false) {
  const headers = { "Content-Type": "application/json" };
  if (csrf) headers["X-Otto-CSRF"] = csrf;
  const response = await fetch(url, { method: "POST", headers, body: "{}" });
  if (response.status === 401 && !retried) {
    const problem = await refusal(response);
    const failed = await login();
    if (failed === "") return post(url, true);
    notice(failed || problem);
    schedule(0);
    return;
  }
  notice(response.ok ? "Done." : await refusal(response));
  schedule(0);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-post]");
  if (button) {
    if (!button.dataset.confirm || confirm(button.dataset.confirm)) post(button.dataset.post);
    return;
  }
  const step = event.target.closest("a.step[data-key]");
  if (step) {
    event.preventDefault();
    const url = new URL(step.href);
    history.replaceState(null, "", url.pathname + url.search + "#log");
    openLog(step.dataset.key, step.dataset.title);
  }
});

// -- the live log -------------------------------------------------------------------
const TAIL = 256 * 1024; // bytes shown when a log opens
const CHUNK = 512 * 1024; // most bytes read at once
const KEEP = 1024 * 1024; // characters kept on the page: a 100 MB log never freezes the tab
let reading = 0; // which log is open: a newer one stops the older's reader

function openStepId() {
  return new URL(location.href).searchParams.get("step");
}

function markOpenStep() {
  const open = openStepId();
  for (const link of document.querySelectorAll("a.step")) {
    if (link.id === `step-${open}`) link.setAttribute("aria-current", "true");
    else link.removeAttribute("aria-current");
  }
}

function stepFinished() {
  const link = document.getElementById(`step-${openStepId()}`);
  return !link || FINISHED.has(link.dataset.state);
}

function size(bytes) {
  return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MB` : `${Math.ceil(bytes / 1024)} KB`;
}

async function openLog(key, title) {
  const mine = ++reading;
  const section = document.getElementById("log");
  const pre = document.getElementById("log-text");
  const info = document.getElementById("log-info");
  const raw = `/v1/objects/${key}`;
  section.hidden = false;
  section.dataset.key = key;
  document.getElementById("log-title").textContent = title;
  document.getElementById("log-raw").href = raw;
  pre.textContent = "";
  info.textContent = "";
  markOpenStep();
  const ansi = new AnsiUp();
  const decoder = new TextDecoder();
  let shown = 0;
  let offset = null; // null: start from the tail

  const write = (buffer) => {
    const text = decoder.decode(new Uint8Array(buffer), { stream: true });
    if (!text) return;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    const span = document.createElement("span");
    span.append(...coloured(ansi.ansi_to_html(text)));
    pre.append(span);
    shown += text.length;
    while (shown > KEEP && pre.firstChild) {
      shown -= pre.firstChild.textContent.length;
      pre.firstChild.remove();
      info.textContent = "the beginning is in the raw log";
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };

  while (mine === reading) {
    const finished = stepFinished(); // read before fetching: the last bytes come first
    let got = 0;
    try {
      if (offset !== null && (await logSize(raw)) <= offset) { // nothing new: ask no range
        if (finished) return;
        await pause(500);
        continue;
      }
      const range = offset === null ? `bytes=-${TAIL}` : `bytes=${offset}-${offset + CHUNK - 1}`;
      const response = await fetch(raw, { headers: { Range: range }, cache: "no-store" });
      if (mine !== reading) return;
      if (response.status === 206) {
        const [span, total] = response.headers.get("Content-Range").split(" ")[1].split("/");
        const start = Number(span.split("-")[0]);
        if (offset === null && start > 0) {
          info.textContent = `showing the last ${size(Number(total) - start)} of ${size(Number(total))}`;
        }
        const buffer = await response.arrayBuffer();
        got = buffer.byteLength;
        offset = start + got;
        write(buffer);
        if (Number(total) - offset > KEEP) { // far behind a fast writer: jump to the tail
          offset = null;
          info.textContent = "skipped ahead: the raw log has every byte";
        }
      } else if (offset === null) {
        offset = 0; // nothing written yet
      }
    } catch {
      // The server is away; try again.
    }
    if (finished && got === 0) return;
    await pause(got ? 100 : 500);
  }
}

// ansi_up's HTML, rebuilt element by element: the page's Content-Security-Policy refuses
// style attributes in parsed markup (even in an inert template), but not styles set through
// the CSSOM. So its `style` attributes are renamed before parsing (its text is escaped: a
// quote in a log is `&quot;`), and only spans and http(s) links come out.
function coloured(html) {
  const template = document.createElement("template");
  template.innerHTML = html.replace(/<span style="/g, '<span data-style="');
  return [...template.content.childNodes].map((node) => {
    if (node.nodeType !== Node.ELEMENT_NODE) return document.createTextNode(node.textContent);
    const link = node.tagName === "A" && /^https?:/i.test(node.getAttribute("href") || "");
    const made = document.createElement(link ? "a" : "span");
    if (link) made.href = node.getAttribute("href");
    if (node.getAttribute("class")) made.className = node.getAttribute("class");
    if (node.dataset.style) made.style.cssText = node.dataset.style;
    made.textContent = node.textContent;
    return made;
  });
}

async function logSize(raw) {
  const response = await fetch(raw, { method: "HEAD", cache: "no-store" });
  return response.ok ? Number(response.headers.get("Content-Length")) : 0;
}

function pause(ms) {
  return new Promise((done) => setTimeout(done, ms));
}

// -- start ----------------------------------------------------------------------------
const initial = document.getElementById("log");
if (initial && initial.dataset.key) {
  openLog(initial.dataset.key, document.getElementById("log-title").textContent);
}
connect();
