// btstore's page: the jobs table, a job's page with its charts, and the comparison view. It
// reads only btstore's JSON API; charts are drawn with the Chart.js the server itself serves.
"use strict";

const state = { token: localStorage.getItem("btstore.token") || "", me: null, streams: [], view: 0 };
window.btCharts = {};  // the Chart instances on screen, by name (the browser tests read them)

const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
const fmt = (x, digits = 4) => (x === null || x === undefined ? "-" : Number(x).toFixed(digits));

function showMessage(text) {
  const box = $("#message");
  box.textContent = text;
  box.hidden = !text;
  if (text) setTimeout(() => { box.hidden = true; }, 6000);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (options.body) headers["Content-Type"] = "application/json";
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const doc = await res.json().catch(() => null);
  if (!res.ok) {
    const err = (doc && doc.error) || { code: "Internal", message: res.statusText };
    throw Object.assign(new Error(err.code + ": " + err.message), { status: res.status, error: err });
  }
  return doc;
}

// Follow a job's Server-Sent Events with fetch (EventSource cannot send the token header).
function follow(jobId, onJob) {
  const controller = new AbortController();
  state.streams.push(controller);
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  fetch(`/api/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal: controller.signal })
    .then(async (res) => {
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
          if (block.startsWith("event: job") && data) onJob(JSON.parse(data));
        }
      }
    })
    .catch(() => {});
}

function stopStreams() {
  for (const c of state.streams) c.abort();
  state.streams = [];
  for (const chart of Object.values(window.btCharts)) chart.destroy();
  window.btCharts = {};
}

async function whoami() {
  try {
    state.me = await api("/api/v1/whoami");
    $("#whoami").textContent = `${state.me.user} (${state.me.role})`;
  } catch (e) {
    state.me = null;
    $("#whoami").textContent = e.status === 401 ? "not signed in" : e.message;
  }
}

function mayMove(job) {
  const me = state.me;
  return !!me && (me.role === "admin" || (me.role === "submitter" && me.user === job.created_by));
}

function progressBar(job) {
  const pct = job.status === "completed" ? 100 : job.progress_pct || 0;
  return el("span", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0,
                      "aria-valuemax": 100, "aria-label": `progress of ${job.job_id}` },
            el("span", { style: `width:${pct}%` }));
}

// --- Jobs table -------------------------------------------------------------------------------

const FILTERS = [
  ["user", "User", "text"], ["alpha", "Alpha", "text"], ["status", "Status", "status"],
  ["created_from", "Created from", "date"], ["created_to", "Created to", "date"],
  ["from", "Backtest from", "date"], ["to", "Backtest to", "date"], ["limit", "Per page", "number"],
];
const METRICS = ["mean_ic", "icir", "hit_rate", "coverage"];
const MAX_FOLLOWED = 4;

async function renderJobs(params, view) {
  const main = $("#main");
  const form = el("form", { class: "filters", "aria-label": "filters" });
  for (const [name, label, type] of FILTERS) {
    let input;
    if (type === "status") {
      input = el("select", { name, id: "f-" + name },
                 ["", "pending", "running", "completed", "failed", "cancelled"].map(
                   (s) => el("option", { value: s, selected: params.get(name) === s }, s || "any")));
    } else {
      input = el("input", { name, id: "f-" + name, type, value: params.get(name) || "",
                            min: type === "number" ? 1 : null });
    }
    form.append(el("label", { for: "f-" + name }, label, input));
  }
  form.append(el("button", { type: "submit", id: "apply" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = "#/?" + q.toString();
  });
  const compare = el("button", { type: "button", class: "secondary", id: "compare", disabled: true,
                                 onclick: () => {
                                   const ids = [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
                                   location.hash = "#/compare?ids=" + ids.map(encodeURIComponent).join(",");
                                 } }, "Compare selected");
  main.replaceChildren(el("h1", {}, "Jobs"), form, el("div", { class: "actions" }, compare));

  const query = new URLSearchParams(params);
  let page;
  try {
    page = await api("/api/v1/jobs?" + query.toString());
    if (view !== state.view) return;
  } catch (e) {
    main.append(el("p", { role: "alert" }, e.message));
    return;
  }
  const jobs = page.jobs;
  const sort = { key: null, dir: -1 };
  const tbody = el("tbody");
  const headers = [["", null], ["Job", null], ["Status", null], ["Progress", null], ["Alpha", null],
                   ["User", null, "wide"], ["Backtest", null, "wide"], ["Created", null, "wide"],
                   ...METRICS.map((m) => [m, m])];
  const head = el("tr", {}, headers.map(([label, key, cls]) => {
    if (!key) return el("th", { scope: "col", class: cls || null }, label);
    const th = el("th", { scope: "col", tabindex: 0, "data-sort": key, "aria-sort": "none" }, label);
    const activate = () => {
      sort.dir = sort.key === key ? -sort.dir : -1;
      sort.key = key;
      for (const h of head.querySelectorAll("th[data-sort]")) h.setAttribute("aria-sort", "none");
      th.setAttribute("aria-sort", sort.dir < 0 ? "descending" : "ascending");
      jobs.sort((a, b) => ((a[key] ?? -Infinity) - (b[key] ?? -Infinity)) * sort.dir);
      fill();
    };
    th.addEventListener("click", activate);
    th.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); activate(); } });
    return th;
  }));
  const rows = new Map();
  function row(job) {
    const pick = el("input", { type: "checkbox", class: "pick", value: job.job_id,
                               "aria-label": "select " + job.job_id, disabled: job.status !== "completed",
                               onchange: () => { compare.disabled = !document.querySelector("input.pick:checked"); } });
    return el("tr", { "data-job": job.job_id },
      el("td", {}, pick),
      el("td", {}, el("a", { href: "#/job/" + encodeURIComponent(job.job_id) }, job.job_id)),
      el("td", { class: "status status-" + job.status }, job.status),
      el("td", {}, progressBar(job)),
      el("td", {}, job.alpha_name),
      el("td", { class: "wide" }, job.created_by),
      el("td", { class: "wide" }, `${job.start_date} .. ${job.end_date}`),
      el("td", { class: "wide" }, job.created_at.replace("T", " ").slice(0, 19)),
      METRICS.map((m) => el("td", { class: "num" }, fmt(job[m]))));
  }
  function fill() {
    tbody.replaceChildren(...jobs.map((j) => { const r = row(j); rows.set(j.job_id, r); return r; }));
  }
  fill();
  const table = el("table", { id: "jobs" }, el("caption", { class: "visually-hidden" }, `${jobs.length} jobs`),
                   el("thead", {}, head), tbody);
  const pager = el("div", { class: "pager" });
  const stack = (params.get("prev") || "").split("|").filter(Boolean);
  if (params.get("after")) {
    pager.append(el("button", { type: "button", class: "secondary", onclick: () => {
      const q = new URLSearchParams(params);
      const prev = stack.pop();
      if (prev && prev !== "-") q.set("after", prev); else q.delete("after");
      if (stack.length) q.set("prev", stack.join("|")); else q.delete("prev");
      location.hash = "#/?" + q.toString();
    } }, "Previous page"));
  }
  if (page.next) {
    pager.append(el("button", { type: "button", id: "next", onclick: () => {
      const q = new URLSearchParams(params);
      q.set("prev", [...stack, params.get("after") || "-"].join("|"));
      q.set("after", page.next);
      location.hash = "#/?" + q.toString();
    } }, "Next page"));
  }
  main.append(el("div", { class: "table-wrap" }, table), pager);
  // Live status and progress for the jobs still moving.
  // Each stream holds a server thread while open: follow the first few moving jobs only.
  const moving = jobs.filter((j) => j.status === "pending" || j.status === "running");
  for (const job of moving.slice(0, MAX_FOLLOWED)) {
    follow(job.job_id, (update) => {
      Object.assign(job, update);
      const old = rows.get(job.job_id);
      if (old) { const fresh = row(job); old.replaceWith(fresh); rows.set(job.job_id, fresh); }
    });
  }
}

// --- One job ----------------------------------------------------------------------------------

function lineChart(canvas, labels, datasets, yTitle) {
  return new Chart(canvas, {
    type: "line",
    data: { labels, datasets: datasets.map((d) => Object.assign({ pointRadius: 0, borderWidth: 1.5, spanGaps: true }, d)) },
    options: { animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
               scales: { x: { ticks: { maxTicksLimit: 8 } }, y: { title: { display: !!yTitle, text: yTitle } } } },
  });
}

function card(title, ...body) { return el("section", { class: "card" }, el("h2", {}, title), ...body); }

async function renderJob(jobId, view) {
  const main = $("#main");
  let job;
  try {
    job = await api("/api/v1/jobs/" + encodeURIComponent(jobId));
    if (view !== state.view) return;
  } catch (e) {
    main.replaceChildren(el("h1", {}, jobId), el("p", { role: "alert" }, e.message));
    return;
  }
  const status = el("span", { id: "job-status", class: "status-" + job.status }, job.status);
  const bar = el("span", { id: "job-progress" }, progressBar(job));
  const actions = el("div", { class: "actions" });
  const move = (verb, body) => async () => {
    try {
      await api(`/api/v1/jobs/${encodeURIComponent(jobId)}/${verb}`, { method: "POST", body: body ? JSON.stringify(body) : undefined });
      route();
    } catch (e) { showMessage(e.message); }
  };
  if (mayMove(job)) {
    if (job.status === "pending" || job.status === "running") actions.append(el("button", { type: "button", id: "cancel", onclick: move("cancel") }, "Cancel"));
    if (job.status === "failed" || job.status === "cancelled") actions.append(el("button", { type: "button", id: "resume", onclick: move("resume") }, "Resume"));
    actions.append(el("button", { type: "button", class: "secondary", id: "pin", onclick: move("pin", { pinned: !job.pinned }) }, job.pinned ? "Unpin" : "Pin"));
  }
  const metrics = el("dl", {}, ["mean_ic", "icir", "hit_rate", "coverage", "long_short_spread", "average_turnover", "decay_half_life"]
    .map((m) => [el("dt", {}, m), el("dd", { id: "m-" + m }, fmt(job[m]))]));
  const repro = el("dl", {}, [["snapshot_id", job.snapshot_id ?? "-"], ["dataset_version_ids", JSON.stringify(job.dataset_version_ids)],
    ["config_hash", job.summary?.config_hash ?? "-"], ["engine", job.engine], ["result_path", job.result_path ?? "-"]]
    .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const facts = el("dl", {}, [["alpha", job.alpha_name], ["user", job.created_by], ["backtest", `${job.start_date} .. ${job.end_date}`],
    ["weight_method", job.weight_method], ["created_at", job.created_at], ["completed_at", job.completed_at ?? "-"],
    ["attempt", job.attempt], ["pinned", job.pinned ? "yes" : "no"], ["error", job.error_message ?? "-"]]
    .map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  // Charts first: they are what people come for; they fill in once the series arrive.
  const chartsBox = el("div", { class: "grid", id: "charts" });
  main.replaceChildren(el("h1", {}, job.job_id, " ", status, " ", bar), actions, chartsBox,
    el("div", { class: "grid" }, card("Metrics", metrics), card("Job", facts), card("Reproducibility", repro),
       card("Config", el("pre", {}, JSON.stringify(job.config_json, null, 2)))));
  if (job.status === "pending" || job.status === "running") {
    follow(job.job_id, (update) => {
      status.textContent = update.status;
      status.className = "status-" + update.status;
      bar.replaceChildren(progressBar(Object.assign({}, job, update)));
      if (update.status !== job.status && !["pending", "running"].includes(update.status)) route();
    });
  }
  if (job.status !== "completed") return;
  let series;
  try {
    series = await api(`/api/v1/jobs/${encodeURIComponent(jobId)}/charts`);
    if (view !== state.view) return;
  } catch (e) {
    chartsBox.append(el("p", { role: "alert" }, e.message));
    return;
  }
  const canvases = { ic: el("canvas", { id: "chart-ic", "aria-label": "daily IC and rank IC" }),
                     cumulative: el("canvas", { id: "chart-cumulative", "aria-label": "cumulative IC" }),
                     coverage: el("canvas", { id: "chart-coverage", "aria-label": "weights coverage" }) };
  chartsBox.append(
    card("Daily IC and rank IC", el("div", { class: "chart" }, canvases.ic)),
    card("Cumulative IC", el("div", { class: "chart" }, canvases.cumulative)),
    card("Weights coverage (names held)", el("div", { class: "chart" }, canvases.coverage)));
  window.btCharts.ic = lineChart(canvases.ic, series.dates, [
    { label: "IC", data: series.ic, borderColor: "#1f5fbf" },
    { label: "rank IC", data: series.rank_ic, borderColor: "#f28e2b" }]);
  window.btCharts.cumulative = lineChart(canvases.cumulative, series.dates,
    [{ label: "cumulative IC", data: series.cumulative_ic, borderColor: "#217a3c" }]);
  window.btCharts.coverage = lineChart(canvases.coverage, series.weights_dates || [],
    [{ label: "names with a weight", data: series.weights_names || [], borderColor: "#7b4fb0" }]);
}

// --- Compare ----------------------------------------------------------------------------------

const PALETTE = ["#1f5fbf", "#f28e2b", "#217a3c", "#b3261e", "#7b4fb0", "#8c564b", "#e377c2", "#17becf"];

async function renderCompare(params, view) {
  const main = $("#main");
  const input = el("input", { id: "compare-ids", name: "ids", value: params.get("ids") || "", size: 60,
                              placeholder: "job ids, comma separated (empty: the newest completed)" });
  const form = el("form", { class: "actions", "aria-label": "jobs to compare" }, el("label", { for: "compare-ids" }, "Jobs "), input,
                  el("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); location.hash = "#/compare?ids=" + encodeURIComponent(input.value); });
  const canvas = el("canvas", { id: "chart-compare", "aria-label": "cumulative IC of the compared jobs" });
  main.replaceChildren(el("h1", {}, "Compare cumulative IC"), form, el("section", { class: "card" }, el("div", { class: "chart" }, canvas)));
  let doc;
  try {
    doc = await api("/api/v1/compare/ic?" + new URLSearchParams(params.get("ids") ? { ids: params.get("ids") } : { limit: 8 }).toString());
    if (view !== state.view) return;
  } catch (e) {
    main.append(el("p", { role: "alert" }, e.message));
    return;
  }
  // One date axis: the union of every job's dates, each series aligned onto it.
  const labels = [...new Set(doc.series.flatMap((s) => s.dates))].sort();
  const datasets = doc.series.map((s, i) => {
    const at = new Map(s.dates.map((d, k) => [d, s.cumulative_ic[k]]));
    return { label: `${s.job_id} (${s.alpha_name})`, data: labels.map((d) => at.get(d) ?? null), borderColor: PALETTE[i % PALETTE.length] };
  });
  window.btCharts.compare = lineChart(canvas, labels, datasets, "cumulative IC");
}

// --- Routing ----------------------------------------------------------------------------------

// Each route() starts a new view; a render whose answer arrives after a newer view started
// drops it instead of drawing into the newer one.
async function route() {
  const view = ++state.view;
  stopStreams();
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  if (path.startsWith("/job/")) await renderJob(decodeURIComponent(path.slice(5)), view);
  else if (path === "/compare") await renderCompare(params, view);
  else await renderJobs(params, view);
  if (view === state.view) document.body.dataset.ready = location.hash || "#/";
}

$("#auth").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  localStorage.setItem("btstore.token", state.token);
  await whoami();
  route();
});
$("#token").value = state.token;
window.addEventListener("hashchange", route);
whoami().then(route);
