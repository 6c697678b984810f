// ITR search page: plain DOM, no framework, no network beyond this server. Every text from the
// index goes through textContent, never innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { q: "", target: "images", mode: "dense", k: 24, image: null, similar: null };
let maxUpload = Infinity;
let inflight = null;
let timer = null;

function fail(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function request(url, init) {
  if (inflight) inflight.abort();
  inflight = new AbortController();
  const res = await fetch(url, { ...(init || {}), signal: inflight.signal });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `${res.status} ${res.statusText}`;
    throw new Error(detail);
  }
  return body;
}

function params() {
  return `k=${state.k}&target=${encodeURIComponent(state.target)}&mode=${encodeURIComponent(state.mode)}`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function card(hit) {
  const c = el("article", "card" + (hit.thumbnail ? "" : " textonly"));
  c.dataset.id = hit.item_id;
  c.title = "More like this";
  const thumb = el("div", "thumb");
  if (hit.thumbnail) {
    const img = el("img");
    img.loading = "lazy";
    img.alt = hit.caption || hit.text || hit.item_id;
    img.src = hit.thumbnail + "?size=256";
    img.onerror = () => { c.classList.add("textonly"); };
    thumb.appendChild(img);
  }
  c.appendChild(thumb);
  const body = el("div", "body");
  if (hit.kind === "text") body.appendChild(el("div", "text caption", hit.text));
  else if (hit.caption) body.appendChild(el("div", "caption", hit.caption));
  const meta = el("div", "meta");
  meta.appendChild(el("span", "id", hit.item_id));
  meta.appendChild(el("span", "score", hit.score.toFixed(3)));
  body.appendChild(meta);
  if (hit.terms) {
    const terms = Object.entries(hit.terms).slice(0, 4).map(([t, w]) => `${t} ${w.toFixed(2)}`).join(" · ");
    if (terms) body.appendChild(el("div", "terms", terms));
  }
  c.appendChild(body);
  c.addEventListener("click", () => similar(hit.item_id));
  return c;
}

function show(res, label) {
  const grid = $("results");
  grid.replaceChildren(...res.results.map(card));
  if (!res.results.length) grid.appendChild(el("div", "empty", res.note || "No results."));
  let line = `${res.results.length} result(s) for ${label} · ${res.mode} · ${res.took_ms} ms`;
  if (res.note && res.results.length) line += ` · ${res.note}`;
  $("status").textContent = line;
  fail("");
}

async function run() {
  try {
    if (state.image) {
      const form = new FormData();
      form.append("image", state.image, state.image.name || "image");
      show(await request(`/api/search/image?${params()}`, { method: "POST", body: form }), `image ${state.image.name || ""}`);
    } else if (state.similar) {
      show(await request(`/api/items/${encodeURIComponent(state.similar).replace(/%2F/g, "/")}/similar?${params()}`),
           `items like ${state.similar}`);
    } else if (state.q.trim()) {
      show(await request(`/api/search?q=${encodeURIComponent(state.q)}&${params()}&explain=${state.mode !== "dense"}`),
           `“${state.q}”`);
    } else {
      $("results").replaceChildren();
      $("status").textContent = "";
      fail("");
    }
  } catch (e) {
    if (e.name !== "AbortError") fail(e.message);
  }
  const url = new URL(location.href);
  url.search = state.q && !state.image && !state.similar ? `?q=${encodeURIComponent(state.q)}` : "";
  history.replaceState(null, "", url);
}

function queryImage(file) {
  if (file.size > maxUpload) {
    fail(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; this server accepts images up to ` +
         `${(maxUpload / 1048576).toFixed(1)} MB`);
    return;
  }
  state.image = file;
  state.similar = null;
  const box = $("query-image");
  box.querySelector("img").src = URL.createObjectURL(file);
  box.querySelector("span").textContent = `searching with ${file.name || "an image"}`;
  box.hidden = false;
  run();
}

function similar(id) {
  state.similar = id;
  state.image = null;
  const box = $("query-image");
  box.querySelector("img").src = `/api/items/${encodeURIComponent(id).replace(/%2F/g, "/")}/thumbnail?size=64`;
  box.querySelector("span").textContent = `more like ${id}`;
  box.hidden = false;
  window.scrollTo(0, 0);
  run();
}

function clearQueryImage() {
  state.image = null;
  state.similar = null;
  $("query-image").hidden = true;
  $("file").value = "";
  run();
}

async function init() {
  try {
    const info = await (await fetch("/api/info")).json();
    const mode = $("mode");
    mode.replaceChildren(...info.modes.map((m) => { const o = el("option", null, m); o.value = m; return o; }));
    state.mode = info.modes.includes("hybrid") ? "hybrid" : info.modes[0];
    mode.value = state.mode;
    maxUpload = info.limits.max_upload_bytes;
    const c = info.counts;
    $("info").textContent = `${c.images} images · ${c.texts} captions · model ${info.model}` +
      (info.sparse_model ? ` · sparse ${info.sparse_model}` : "") + (info.read_only ? " · read-only" : "");
  } catch (e) {
    fail(`cannot reach the ITR server: ${e.message}`);
  }
  const q = new URLSearchParams(location.search).get("q");
  if (q) { $("q").value = q; state.q = q; run(); }
}

$("search-form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); run(); });
$("q").addEventListener("input", (e) => {
  state.q = e.target.value;
  state.image = null;
  state.similar = null;
  $("query-image").hidden = true;
  clearTimeout(timer);
  timer = setTimeout(run, 150);
});
for (const [id, key] of [["target", "target"], ["mode", "mode"], ["k", "k"]]) {
  $(id).addEventListener("change", (e) => { state[key] = e.target.value; run(); });
}
$("file").addEventListener("change", (e) => { if (e.target.files[0]) queryImage(e.target.files[0]); });
$("clear-image").addEventListener("click", clearQueryImage);

let depth = 0;
window.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; $("drop").hidden = false; });
window.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; $("drop").hidden = true; } });
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => {
  e.preventDefault();
  depth = 0;
  $("drop").hidden = true;
  const file = [...(e.dataTransfer.files || [])].find((f) => f.type.startsWith("image/"));
  if (file) queryImage(file); else fail("drop an image file (JPEG, PNG, WebP, GIF, BMP or TIFF)");
});

init();
