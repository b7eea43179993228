// Conveyor charts: request rate, error rate and latency per release, and instance count against
// load, as SVG, with deploy markers.
// Reads GET /api/v1/apps/{app}/metrics?env=&window= ; without that endpoint it still draws the
// deploy and rollback markers from the audit log (GET /api/v1/events), with no series.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 240, ML = 56, MR = 14, MT = 46, MB = 26;
  const COLORS = ["#1d6fd6", "#e07b00", "#6b4fbb", "#138a72", "#c2185b", "#5d6878"];
  const MARKER_KINDS = { deployed: "deployed", rollback: "rolled back to", rolled_back: "auto rollback", deploy_failed: "deploy failed" };
  const KINDS = {
    rate: { title: "Request rate", unit: "req/s", fmt: (v) => v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2),
            value: (p, res) => p.requests / res },
    errors: { title: "Error rate", unit: "%", fmt: (v) => v.toFixed(v >= 10 ? 0 : 1),
              value: (p) => p.requests > 0 ? 100 * p.errors / p.requests : null },
    p50: { title: "Latency p50", unit: "ms", fmt: (v) => v >= 100 ? v.toFixed(0) : v.toFixed(1), value: (p) => p.p50 == null ? null : p.p50 * 1000 },
    p99: { title: "Latency p99", unit: "ms", fmt: (v) => v >= 100 ? v.toFixed(0) : v.toFixed(1), value: (p) => p.p99 == null ? null : p.p99 * 1000 },
  };

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 4, 8, 10]) if (m * p >= v) return m * p;  // quarters stay round numbers
    return 10 * p;
  }
  function timeLabel(t, span) {
    const d = new Date(t * 1000);
    const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (span <= 86400) return hm;
    return d.toLocaleDateString([], { month: "short", day: "numeric" }) + (span <= 3 * 86400 ? " " + hm : "");
  }

  // Merge points into at most ~maxPts buckets: sums for counts; p50 weighted by requests; p99 the max.
  function downsample(points, res, lo, hi, maxPts) {
    const step = Math.max(res, Math.ceil((hi - lo) / maxPts / res) * res);
    const out = new Map();
    for (const p of points) {
      const k = Math.floor(p.t / step) * step;
      let b = out.get(k);
      if (!b) { b = { t: k, requests: 0, errors: 0, p50w: 0, p50n: 0, p99: null }; out.set(k, b); }
      b.requests += p.requests; b.errors += p.errors;
      if (p.p50 != null) { const w = Math.max(1, p.requests); b.p50w += p.p50 * w; b.p50n += w; }
      if (p.p99 != null) b.p99 = b.p99 == null ? p.p99 : Math.max(b.p99, p.p99);
    }
    return { step, points: [...out.values()].sort((a, b) => a.t - b.t).map((b) => ({ t: b.t, requests: b.requests, errors: b.errors, p50: b.p50n ? b.p50w / b.p50n : null, p99: b.p99 })) };
  }

  // deploy and rollback markers, labels staggered on three rows so neighbours do not overlap
  function drawMarkers(svg, data, lo, hi, x) {
    let lastX = -1e9, row = 0;
    for (const m of (data.markers || []).filter((m) => m.t >= lo && m.t <= hi).sort((a, b) => a.t - b.t)) {
      const mx = x(m.t);
      row = mx - lastX < 90 ? (row + 1) % 3 : 0;
      lastX = mx;
      const g = el("g", { class: "marker-group" });
      const line = el("line", { class: "marker " + m.kind, x1: mx, x2: mx, y1: MT - 4 - row * 13 + 4, y2: H - MB, "data-release": m.release });
      line.appendChild(el("title", {}, (MARKER_KINDS[m.kind] || m.kind) + " r" + m.release + " by " + (m.actor || "?") + " at " + new Date(m.t * 1000).toLocaleString() + (m.message ? ": " + m.message : "")));
      g.appendChild(line);
      const icon = { deployed: "▲ ", deploy_failed: "✕ " }[m.kind] || "↶ ";
      const label = icon + "r" + m.release + " · " + (m.actor || "?");
      g.appendChild(el("text", { class: "marker-label", x: mx + 3, y: MT - 8 - row * 13, "text-anchor": mx > W - 90 ? "end" : "start" }, label));
      svg.appendChild(g);
    }
  }

  // The environment's load (requests/s over every release) in the chart's steps.
  function loadOf(data, lo, hi) {
    const res = data.step || data.resolution || 1;
    const merged = [];
    for (const r in data.series || {}) merged.push(...data.series[r]);
    const ds = downsample(merged, res, lo, hi, 320);
    return { step: ds.step, pts: ds.points.filter((p) => p.t >= lo - ds.step && p.t <= hi).map((p) => ({ t: p.t, v: p.requests / ds.step })) };
  }

  // A step function (each value holds until the next) from {t, v} changes, up to hi.
  function stepPath(pts, x, y, lo, hi) {
    let d = "";
    pts.forEach((p, i) => {
      const t0 = Math.max(lo, p.t), t1 = i + 1 < pts.length ? Math.min(hi, pts[i + 1].t) : hi;
      if (t1 < lo || t0 > hi) return;
      d += (d ? "L" : "M") + x(t0).toFixed(1) + " " + y(p.v).toFixed(1) + " L" + x(t1).toFixed(1) + " " + y(p.v).toFixed(1) + " ";
    });
    return d.trim();
  }

  // Instance count against load: ready instances per process type (solid steps) and the count in
  // force (dashed: the autoscaler's or `conveyor scale`'s) on the left axis; requests/s (grey) on
  // the right; the deploy markers as on the other charts.
  function drawCapacity(data, lo, hi) {
    const procs = Object.keys(data.instances || {}).sort((a, b) => (a !== "web") - (b !== "web") || a.localeCompare(b));
    const counts = procs.map((name, i) => ({ name, color: COLORS[i % COLORS.length], rows: data.instances[name] }));
    const load = loadOf(data, lo, hi);
    const maxN = niceMax(Math.max(1, ...counts.flatMap((c) => c.rows.flatMap((r) => [r.ready, r.count]))));
    const maxL = niceMax(Math.max(0, ...load.pts.map((p) => p.v)));
    const x = (t) => ML + (W - ML - MR - 30) * (t - lo) / (hi - lo);
    const yN = (v) => H - MB - (H - MT - MB) * v / maxN;
    const yL = (v) => H - MB - (H - MT - MB) * v / maxL;
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.kind = "capacity";
    const h = document.createElement("h3");
    h.textContent = "Instances and load (ready instances, req/s)";
    box.appendChild(h);
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", tabindex: "0",
      "aria-label": "Ready instances per process type against requests per second, " + (data.markers || []).length + " deploy markers" });
    for (let i = 0; i <= 4; i++) {
      const yy = yN(maxN * i / 4);
      svg.appendChild(el("line", { class: "grid-line", x1: ML, x2: W - MR - 30, y1: yy, y2: yy }));
      svg.appendChild(el("text", { class: "axis", x: ML - 6, y: yy + 4, "text-anchor": "end" }, String(+(maxN * i / 4).toPrecision(3)) + (i === 4 ? " inst." : "")));
      svg.appendChild(el("text", { class: "axis load-axis", x: W - MR - 26, y: yy + 4, "text-anchor": "start" }, String(+(maxL * i / 4).toPrecision(3)) + (i === 4 ? " req/s" : "")));
    }
    const span = hi - lo;
    for (let i = 0; i <= 4; i++) {
      const t = lo + span * i / 4;
      svg.appendChild(el("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, timeLabel(t, span)));
    }
    drawMarkers(svg, data, lo, hi, x);
    if (load.pts.length) {
      const d = load.pts.map((p, i) => (i && p.t - load.pts[i - 1].t <= 2.5 * load.step ? "L" : "M") + x(p.t).toFixed(1) + " " + yL(p.v).toFixed(1)).join(" ");
      svg.appendChild(el("path", { class: "series load", d, stroke: "#8a94a3" }));
      load.pts.forEach((p, i) => {  // a point with no neighbour would be invisible as a line: draw it as a dot
        const near = (j) => j >= 0 && j < load.pts.length && Math.abs(load.pts[j].t - p.t) <= 2.5 * load.step;
        if (!near(i - 1) && !near(i + 1)) svg.appendChild(el("circle", { class: "load-dot", cx: x(p.t), cy: yL(p.v), r: 2.5, fill: "#8a94a3" }));
      });
    }
    for (const c of counts) {
      const ready = stepPath(c.rows.map((r) => ({ t: r.t, v: r.ready })), x, yN, lo, hi);
      const count = stepPath(c.rows.map((r) => ({ t: r.t, v: r.count })), x, yN, lo, hi);
      if (count) svg.appendChild(el("path", { class: "series count", d: count, stroke: c.color, "stroke-dasharray": "4 3", "data-process": c.name }));
      if (ready) svg.appendChild(el("path", { class: "series instances", d: ready, stroke: c.color, "data-process": c.name }));
    }
    if (!counts.length) {
      svg.appendChild(el("text", { class: "empty", x: (ML + W - MR) / 2, y: (MT + H - MB) / 2, "text-anchor": "middle" }, "no instance counts in this window"));
    }
    const hover = el("line", { class: "hover-line", y1: MT, y2: H - MB, visibility: "hidden" });
    svg.appendChild(hover);
    svg.appendChild(el("rect", { x: ML, y: MT, width: W - ML - MR - 30, height: H - MT - MB, fill: "transparent" }));
    box.appendChild(svg);
    const tip = document.createElement("div");
    tip.className = "tip"; tip.hidden = true;
    box.appendChild(tip);
    function showAt(t) {
      const rows = [];
      for (const c of counts) {
        const at = c.rows.filter((r) => r.t <= t).pop();
        if (at) rows.push(c.name + ": " + at.ready + " ready (count " + at.count + ")");
      }
      let best = null;
      for (const p of load.pts) if (!best || Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      if (best && Math.abs(best.t - t) <= Math.max(2 * load.step, span / 100)) rows.push("load: " + KINDS.rate.fmt(best.v) + " req/s");
      hover.setAttribute("x1", x(t)); hover.setAttribute("x2", x(t)); hover.setAttribute("visibility", "visible");
      tip.textContent = "";
      const head = document.createElement("strong");
      head.textContent = new Date(t * 1000).toLocaleString();
      tip.appendChild(head);
      for (const r of rows.length ? rows : ["no data"]) { tip.appendChild(document.createElement("br")); tip.appendChild(document.createTextNode(r)); }
      tip.hidden = false;
      tip.style.left = Math.min(Math.max(0, (x(t) / W) * svg.clientWidth + 12), svg.clientWidth - 180) + "px";
      tip.style.top = "2.2rem";
    }
    svg.addEventListener("mousemove", (ev) => {
      const r = svg.getBoundingClientRect();
      const vx = (ev.clientX - r.left) * W / r.width;
      if (vx >= ML && vx <= W - MR - 30) showAt(lo + (vx - ML) / (W - ML - MR - 30) * span);
    });
    svg.addEventListener("mouseleave", () => { tip.hidden = true; hover.setAttribute("visibility", "hidden"); });
    svg.addEventListener("focus", () => showAt(hi));
    svg.addEventListener("blur", () => { tip.hidden = true; hover.setAttribute("visibility", "hidden"); });
    const legend = document.createElement("div");
    legend.className = "legend";
    for (const c of counts) {
      const item = document.createElement("span");
      const sw = document.createElement("i"); sw.style.background = c.color;
      item.appendChild(sw); item.appendChild(document.createTextNode(c.name + " ready (dashed: count)"));
      legend.appendChild(item);
    }
    const ld = document.createElement("span");
    const lsw = document.createElement("i"); lsw.style.background = "#8a94a3";
    ld.appendChild(lsw); ld.appendChild(document.createTextNode("requests/s (right axis)"));
    legend.appendChild(ld);
    const mk = document.createElement("span");
    mk.textContent = "┆ green: deploy · red: rollback or failure";
    legend.appendChild(mk);
    box.appendChild(legend);
    return box;
  }

  function draw(container, kind, data, lo, hi, onlyReleases) {
    if (kind === "capacity") return drawCapacity(data, lo, hi);
    const spec = KINDS[kind];
    const releases = Object.keys(data.series || {}).filter((r) => !onlyReleases || onlyReleases.includes(r)).sort((a, b) => b - a);
    const series = releases.map((r, i) => {
      const ds = downsample(data.series[r], data.step || data.resolution || 1, lo, hi, 320);
      const pts = ds.points.map((p) => ({ t: p.t, v: spec.value(p, ds.step) })).filter((p) => p.v != null && p.t >= lo - ds.step && p.t <= hi);
      return { release: r, color: COLORS[i % COLORS.length], pts, step: ds.step };
    });
    const maxV = niceMax(Math.max(0, ...series.flatMap((s) => s.pts.map((p) => p.v))));
    const x = (t) => ML + (W - ML - MR) * (t - lo) / (hi - lo);
    const y = (v) => H - MB - (H - MT - MB) * v / maxV;

    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.kind = kind;
    const h = document.createElement("h3");
    h.textContent = spec.title + " (" + spec.unit + ")";
    box.appendChild(h);
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", tabindex: "0",
      "aria-label": spec.title + " per release, " + (data.markers || []).length + " deploy markers" });
    for (let i = 0; i <= 4; i++) {
      const v = maxV * i / 4, yy = y(v);
      svg.appendChild(el("line", { class: "grid-line", x1: ML, x2: W - MR, y1: yy, y2: yy }));
      svg.appendChild(el("text", { class: "axis", x: ML - 6, y: yy + 4, "text-anchor": "end" }, String(+v.toPrecision(3)) + (i === 4 ? " " + spec.unit : "")));
    }
    const span = hi - lo;
    for (let i = 0; i <= 4; i++) {
      const t = lo + span * i / 4;
      svg.appendChild(el("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, timeLabel(t, span)));
    }
    drawMarkers(svg, data, lo, hi, x);
    for (const s of series) {
      if (!s.pts.length) continue;
      // a gap in the data (no traffic to this release) is a gap in the line, not a slope across it
      const d = s.pts.map((p, i) => (i && p.t - s.pts[i - 1].t <= 2.5 * s.step ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.v).toFixed(1)).join(" ");
      svg.appendChild(el("path", { class: "series", d, stroke: s.color, "data-release": s.release }));
      s.pts.forEach((p, i) => {  // a point with no neighbour would be invisible as a line: draw it as a dot
        const near = (j) => j >= 0 && j < s.pts.length && Math.abs(s.pts[j].t - p.t) <= 2.5 * s.step;
        if (!near(i - 1) && !near(i + 1)) svg.appendChild(el("circle", { cx: x(p.t), cy: y(p.v), r: 2.5, fill: s.color }));
      });
    }
    if (!series.some((s) => s.pts.length)) {
      svg.appendChild(el("text", { class: "empty", x: (ML + W - MR) / 2, y: (MT + H - MB) / 2, "text-anchor": "middle" }, "no requests in this window"));
    }
    const hover = el("line", { class: "hover-line", y1: MT, y2: H - MB, visibility: "hidden" });
    svg.appendChild(hover);
    const overlay = el("rect", { x: ML, y: MT, width: W - ML - MR, height: H - MT - MB, fill: "transparent" });
    svg.appendChild(overlay);
    box.appendChild(svg);
    const tip = document.createElement("div");
    tip.className = "tip"; tip.hidden = true;
    box.appendChild(tip);

    function showAt(t) {
      const rows = [];
      for (const s of series) {
        let best = null;
        for (const p of s.pts) if (!best || Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
        if (best && Math.abs(best.t - t) <= Math.max(2 * s.step, span / 100)) rows.push("r" + s.release + ": " + spec.fmt(best.v) + " " + spec.unit);
      }
      const near = (data.markers || []).filter((m) => Math.abs(m.t - t) <= span / 80).map((m) => (MARKER_KINDS[m.kind] || m.kind) + " r" + m.release + " by " + (m.actor || "?"));
      hover.setAttribute("x1", x(t)); hover.setAttribute("x2", x(t)); hover.setAttribute("visibility", "visible");
      tip.textContent = "";
      const head = document.createElement("strong");
      head.textContent = new Date(t * 1000).toLocaleString();
      tip.appendChild(head);
      for (const r of rows.concat(near).concat(rows.length ? [] : ["no data"])) { tip.appendChild(document.createElement("br")); tip.appendChild(document.createTextNode(r)); }
      tip.hidden = false;
      const px = (x(t) / W) * svg.clientWidth;
      tip.style.left = Math.min(Math.max(0, px + 12), svg.clientWidth - 180) + "px";
      tip.style.top = "2.2rem";
    }
    let kbT = hi;
    svg.addEventListener("mousemove", (ev) => {
      const r = svg.getBoundingClientRect();
      const vx = (ev.clientX - r.left) * W / r.width;
      if (vx < ML || vx > W - MR) return;
      kbT = lo + (vx - ML) / (W - ML - MR) * span;
      showAt(kbT);
    });
    svg.addEventListener("mouseleave", () => { tip.hidden = true; hover.setAttribute("visibility", "hidden"); });
    svg.addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
      ev.preventDefault();
      kbT = Math.min(hi, Math.max(lo, kbT + (ev.key === "ArrowRight" ? 1 : -1) * span / 40));
      showAt(kbT);
    });
    svg.addEventListener("focus", () => showAt(kbT));
    svg.addEventListener("blur", () => { tip.hidden = true; hover.setAttribute("visibility", "hidden"); });

    const legend = document.createElement("div");
    legend.className = "legend";
    for (const s of series) {
      const span2 = document.createElement("span");
      const sw = document.createElement("i"); sw.style.background = s.color;
      span2.appendChild(sw); span2.appendChild(document.createTextNode("release " + s.release));
      legend.appendChild(span2);
    }
    const mk = document.createElement("span");
    mk.textContent = "┆ green: deploy · red: rollback or failure";
    legend.appendChild(mk);
    box.appendChild(legend);
    return box;
  }

  async function fetchJson(url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    return { status: resp.status, body: resp.ok ? await resp.json() : null };
  }

  async function load(set) {
    const status = document.getElementById("charts-status");
    const app = set.dataset.metricsApp, env = set.dataset.metricsEnv;
    const now = Date.now() / 1000;
    const hi = set.dataset.until ? parseFloat(set.dataset.until) + 60 : now;
    const lo = set.dataset.since ? parseFloat(set.dataset.since) : hi - parseFloat(set.dataset.window || "3600");
    const windowS = Math.min(30 * 86400, Math.max(60, Math.ceil(now - lo)));
    const r = await fetchJson("/api/v1/apps/" + encodeURIComponent(app) + "/metrics?env=" + encodeURIComponent(env) + "&window=" + windowS);
    // The audit log says who asked for each deployment (marker events are written by the orchestrator).
    const ev = await fetchJson("/api/v1/events?limit=1000&app=" + encodeURIComponent(app) + "&env=" + encodeURIComponent(env) + "&since=" + (now - windowS - 3600));
    const who = {};
    for (const e of ev.body || []) if (/_queued$/.test(e.kind) && e.data && e.data.deployment) who[e.data.deployment] = e.actor;
    let data = r.body, note = "";
    if (!data) {
      // No metrics endpoint (or no data for this environment): still show when deploys happened.
      const markers = (ev.body || []).filter((e) => e.kind in MARKER_KINDS).map((e) => ({
        t: e.at, kind: e.kind, release: (e.data || {}).release, actor: e.actor, message: e.message, deployment: (e.data || {}).deployment }));
      data = { series: {}, markers, resolution: 60, instances: {} };
      note = r.status === 404 ? "No request metrics for this environment yet; deploy markers come from the audit log." : "Could not load metrics (HTTP " + r.status + ").";
    }
    for (const m of data.markers || []) if (m.deployment != null && who[m.deployment]) m.actor = who[m.deployment];
    const only = set.dataset.releases ? set.dataset.releases.split(",") : null;
    set.textContent = "";
    for (const kind of (set.dataset.charts || "rate,errors,p50,p99").split(",")) set.appendChild(draw(set, kind, data, lo, hi, only));
    set.dataset.loaded = "true";
    if (status) status.textContent = note || ("Updated " + new Date().toLocaleTimeString() + ". One point per " + (data.step || data.resolution || 1) + " s.");
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".chart-set[data-metrics-app]").forEach((set) => {
      load(set);
      const every = parseFloat(set.dataset.refresh || "0");
      if (every > 0) setInterval(() => { if (!document.hidden) load(set); }, every * 1000);
    });
  });
  window.conveyorCharts = { downsample, niceMax };
})();
