// Otto dashboard: keeps a server-rendered page live. The event stream (SSE, resumed
// from the last event id) says when something changed; the page then fetches its
// regions again (`?part=NAME`, one template block each), so whatever it shows comes
// from the state machine's stored state and nothing is missed across a reconnection.
import { AnsiUp } from "./vendor/ansi_up-6.0.6.js";

const body = document.body;
const FINISHED = new Set(["Success", "Unstable", "Aborted", "Failed", "Error", "NotRun", "Skipped", "Complete"]);

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
      const count = document.getElementById("timeline-count");
      if (count) count.textContent = String(Number(count.textContent) + rows.length);
    }
    return;
  }
  const fresh = template.content.firstElementChild;
  if (!fresh) return;
  const focused = document.activeElement && document.activeElement.id;
  const typed = [...region.querySelectorAll("input[id]")].map((input) => [input.id, input.value]);
  region.replaceWith(fresh);
  for (const [id, value] of typed) {
    const input = document.getElementById(id);
    if (input) input.value = value; // what someone is typing outlives the refresh
  }
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
  // This page fell behind the server's stream and was dropped: resume where it says
  // (the event's id), and re-fetch what may have changed meanwhile.
  source.addEventListener("resync", (event) => {
    source.close();
    lastId = event.lastEventId || lastId;
    schedule(0);
    connect();
  });
  source.addEventListener("error", () => {
    setLive("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connect, 1000);
    }
  });
}

// -- actions (Abort, Retry, Run) ---------------------------------------------------------
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

// The answer's JSON when the server took it (null otherwise: the notice says why).
async function post(url, body = "{}", retried = false) {
  const headers = { "Content-Type": "application/json" };
  if (csrf) headers["X-Otto-CSRF"] = csrf;
  const response = await fetch(url, { method: "POST", headers, body });
  if (response.status === 401 && !retried) {
    const problem = await refusal(response);
    const failed = await login();
    if (failed === "") return post(url, body, true);
    notice(failed || problem);
    schedule(0);
    return null;
  }
  notice(response.ok ? "Done." : await refusal(response));
  schedule(0);
  return response.ok ? response.json().catch(() => ({})) : null;
}

// The project page's Run form: a manual run at the ref given, then its page.
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-post]");
  if (!form) return;
  event.preventDefault();
  const fields = {}; // `params.NAME` inputs go into `params`: an input's parameters
  for (const [name, value] of new FormData(form)) {
    if (!value.trim()) continue;
    if (name.startsWith("params.")) (fields.params ??= {})[name.slice(7)] = value;
    else fields[name] = value;
  }
  const answer = await post(form.dataset.post, JSON.stringify({ ...fields, by: "dashboard" }));
  if (answer && answer.uuid) location.assign(`/pipelines/${answer.uuid}`);
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-post]");
  if (button) {
    if (!button.dataset.confirm || confirm(button.dataset.confirm)) post(button.dataset.post);
    return;
  }
  const step = event.target.closest("a.step[data-key], a[href^='?step=']");
  if (step) {
    event.preventDefault();
    const url = new URL(step.href);
    history.replaceState(null, "", url.pathname + url.search + "#log");
    showLog(url.searchParams.get("step"));
    return;
  }
  const line = event.target.closest("#log-text a.ln");
  if (line) { // a link to the line that works for whoever opens it: the step is named
    event.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set("step", openStepId());
    history.replaceState(null, "", url.pathname + url.search + line.getAttribute("href"));
    for (const old of document.querySelectorAll("#log-text .linked")) old.classList.remove("linked");
    line.parentElement.classList.add("linked");
  }
});

// -- the live log -------------------------------------------------------------------
// The server renders a window of a log (`?step=ID&part=log`, its last lines or those
// around `&line=N`) as numbered plain text; the script reads the same bytes raw (from
// `data-start`, numbering from `data-first`) to colour them, then follows the log's growth.
const CHUNK = 512 * 1024; // most bytes read at once
const KEEP = 1024 * 1024; // characters kept on the page: a 100 MB log never freezes the tab
let reading = 0; // which log is open: a newer one stops the older's reader

function openStepId() {
  const log = document.getElementById("log");
  return (log && log.dataset.step) || new URL(location.href).searchParams.get("step");
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

function linkedLine() {
  const found = /^#L(\d+)$/.exec(location.hash);
  return found ? Number(found[1]) : 0;
}

async function showLog(step, line = 0) {
  const mine = ++reading;
  const url = new URL(location.pathname, location.href);
  url.searchParams.set("step", step);
  url.searchParams.set("part", "log");
  if (line) url.searchParams.set("line", String(line));
  let fresh;
  try {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    const template = document.createElement("template");
    template.innerHTML = (await response.text()).trim();
    fresh = template.content.firstElementChild;
  } catch {
    notice("The log could not be read; try again.");
    return;
  }
  if (mine !== reading || !fresh) return;
  document.getElementById("log").replaceWith(fresh);
  follow(fresh, mine);
}

// Lines as the server numbers them: `<span class="line" id="L42"><a class="ln">` (the
// number is drawn by CSS) and the line's coloured text. Only "\n" ends a line.
class LineWriter {
  constructor(pre, first) {
    this.pre = pre;
    this.next = first;
    this.open = null;
    this.ansi = new AnsiUp();
    this.decoder = new TextDecoder();
    this.shown = 0;
  }

  write(buffer) {
    const text = this.decoder.decode(new Uint8Array(buffer), { stream: true });
    const parts = text.split("\n");
    parts.forEach((part, index) => {
      if (part) this.line().append(...coloured(this.ansi.ansi_to_html(part)));
      if (index < parts.length - 1) {
        this.line().append("\n");
        this.open = null;
      }
    });
    this.shown += text.length;
    let trimmed = false;
    while (this.shown > KEEP && this.pre.firstChild && this.pre.firstChild !== this.open) {
      this.shown -= this.pre.firstChild.textContent.length;
      this.pre.firstChild.remove();
      trimmed = true;
    }
    return trimmed;
  }

  line() {
    if (!this.open) {
      const number = this.next++;
      const line = document.createElement("span");
      line.className = "line";
      line.id = `L${number}`;
      const link = document.createElement("a");
      link.className = "ln";
      link.href = `#L${number}`;
      link.dataset.n = String(number);
      link.setAttribute("aria-label", `line ${number}`);
      line.append(link);
      this.pre.append(line);
      this.open = line;
    }
    return this.open;
  }
}

function scrollLog(pre) {
  const target = document.getElementById(`L${linkedLine()}`);
  if (target && pre.contains(target)) {
    target.scrollIntoView({ block: "center" });
    target.classList.add("linked");
  } else {
    pre.scrollTop = pre.scrollHeight;
  }
}

async function follow(section, mine) {
  markOpenStep();
  if (!section.dataset.key) return;
  const pre = section.querySelector("#log-text");
  const info = section.querySelector("#log-info");
  const raw = `/v1/objects/${section.dataset.key}`;
  const end = section.dataset.atEnd === "yes" ? Infinity : Number(section.dataset.end);
  const lines = new LineWriter(pre, Number(section.dataset.first || 1));
  let offset = Number(section.dataset.start || 0);
  let first = true; // the server's text stays until its coloured copy replaces it
  scrollLog(pre);

  while (mine === reading) {
    const finished = end !== Infinity || stepFinished(); // before reading: last bytes first
    let got = 0;
    try {
      const size = await logSize(raw);
      const stop = Math.min(size, end, offset + CHUNK);
      if (stop > offset) {
        const range = `bytes=${offset}-${stop - 1}`;
        const response = await fetch(raw, { headers: { Range: range }, cache: "no-store" });
        if (mine !== reading) return;
        if (response.status === 206) {
          const buffer = await response.arrayBuffer();
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
          if (first) pre.textContent = "";
          got = buffer.byteLength;
          offset += got;
          if (lines.write(buffer)) info.textContent = "the beginning is in the raw log";
          if (first) scrollLog(pre);
          else if (atBottom) pre.scrollTop = pre.scrollHeight;
          first = false;
          if (end === Infinity && size - offset > KEEP) { // far behind a fast writer
            showLog(section.dataset.step); // its tail again; the raw log has every byte
            return;
          }
        }
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
  const line = linkedLine();
  if (line && !document.getElementById(`L${line}`)) showLog(initial.dataset.step, line);
  else follow(initial, ++reading);
}
connect();
