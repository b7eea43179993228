// Conveyor web UI: confirmations, live updates (SSE and refresh), log tails. No dependencies.
"use strict";
(function () {
  const csrf = () => document.body.dataset.csrf || "";

  // --- relative times ------------------------------------------------------
  function rel(ts) {
    const d = Date.now() / 1000 - ts, a = Math.abs(d);
    let s;
    if (a < 5) return "just now";
    if (a < 60) s = Math.round(a) + " s";
    else if (a < 3600) s = Math.round(a / 60) + " min";
    else if (a < 86400) s = Math.round(a / 3600) + " h";
    else s = Math.round(a / 86400) + " d";
    return d < 0 ? "in " + s : s + " ago";
  }
  function refreshTimes(root) {
    (root || document).querySelectorAll("time[data-ts]").forEach((t) => {
      const ts = parseFloat(t.dataset.ts);
      t.textContent = rel(ts);
      t.title = new Date(ts * 1000).toLocaleString();
    });
  }

  // --- confirmation dialog ---------------------------------------------------
  const dialog = () => document.getElementById("confirm");
  let dialogOpen = false;
  function confirmThen(text, okLabel, action) {
    const dlg = dialog();
    if (!dlg || typeof dlg.showModal !== "function") { if (window.confirm(text)) action(); return; }
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel || "Yes, do it";
    dialogOpen = true;
    dlg.returnValue = "";
    dlg.showModal();
    dlg.addEventListener("close", function once() {
      dlg.removeEventListener("close", once);
      dialogOpen = false;
      if (dlg.returnValue === "ok") action();
    });
  }
  window.conveyorConfirm = confirmThen;

  function deployText(form) {
    const opt = form.image.options[form.image.selectedIndex];
    const env = form.env.value || "production";
    const strategy = form.strategy.value || (opt && opt.dataset.strategy) + " (the manifest's)";
    const commit = opt && opt.dataset.commit ? ", commit " + opt.dataset.commit : "";
    return "Deploy image " + (opt ? opt.dataset.short : "?") + commit + " of " + form.dataset.app +
      " to " + env + " as a new release, strategy " + strategy +
      ". Instances of the new release start first; traffic moves only once they are ready.";
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement)) return;
    let text = form.dataset.confirm;
    if (form.hasAttribute("data-confirm-deploy")) text = deployText(form);
    if (!text) return;
    ev.preventDefault();
    const label = ev.submitter ? ev.submitter.textContent.replace(/[…]/g, "").trim() : "Yes";
    confirmThen(text, "Yes: " + label, () => form.submit());
  });

  // --- buttons that call the JSON API (deployment controls) ------------------
  async function callApi(method, url, body) {
    const headers = { "X-CSRF-Token": csrf(), "Accept": "application/json" };
    if (body) headers["Content-Type"] = "application/json";
    const resp = await fetch(url, { method, credentials: "same-origin", headers, body: body || undefined });
    let answer = null;
    try { answer = await resp.json(); } catch (e) { answer = null; }
    return { status: resp.status, body: answer };
  }
  function flash(text, tone) {
    const main = document.getElementById("main");
    let el = document.getElementById("js-flash");
    if (!el) { el = document.createElement("div"); el.id = "js-flash"; el.setAttribute("role", "alert"); main.prepend(el); }
    el.className = "flash " + (tone || "bad");
    el.textContent = (tone === "good" ? "✓ " : "✕ ") + text;
  }
  const unsupported = new Set();
  function hideUnsupported(root) {
    (root || document).querySelectorAll("[data-action]").forEach((b) => { if (unsupported.has(b.dataset.action)) b.hidden = true; });
  }
  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest && ev.target.closest("button[data-action]");
    if (!btn || btn.disabled) return;
    const live = document.getElementById("live");
    const id = live && live.dataset.deployment;
    if (!id) return;
    const action = btn.dataset.action;
    confirmThen(btn.dataset.confirm || action + "?", "Yes: " + btn.textContent.trim(), async () => {
      btn.disabled = true;
      const r = await callApi("POST", "/api/v1/deployments/" + id + "/" + (btn.dataset.endpoint || action), btn.dataset.body);
      btn.disabled = false;
      if (r.status === 404) {
        unsupported.add(action); hideUnsupported();
        flash("This control plane does not offer " + action + " yet.", "bad");
      } else if (r.status >= 400) {
        flash((r.body && r.body.detail) || ("refused (" + r.status + ")"), "bad");
      } else {
        flash(action + " requested.", "good");
      }
    });
  });

  // --- live deployment page over Server-Sent Events ---------------------------
  function startStream(live) {
    const status = document.getElementById("live-status");
    const es = new EventSource(live.dataset.stream);
    es.addEventListener("open", () => { if (status) status.textContent = "live: updates as they happen"; });
    es.addEventListener("update", (ev) => {
      const data = JSON.parse(ev.data);
      // keep keyboard focus on the same control across the swap
      const focused = document.activeElement && live.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      live.innerHTML = data.html;
      if (focused) { const again = live.querySelector('[data-action="' + focused + '"]'); if (again) again.focus(); }
      live.dataset.state = data.state;
      hideUnsupported(live);
      refreshTimes(live);
    });
    es.addEventListener("end", () => {
      es.close();
      live.dataset.finished = "true";
      if (status) status.textContent = "finished: " + (live.dataset.state || "").replace("_", " ");
    });
    es.addEventListener("error", () => { if (status && !live.dataset.finished) status.textContent = "reconnecting…"; });
  }

  // --- periodic refresh of server-rendered regions ----------------------------
  function startRefresh(el) {
    const every = Math.max(2, parseFloat(el.dataset.live || "5")) * 1000;
    setInterval(async () => {
      if (dialogOpen || document.hidden) return;
      if (el.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")) return;
      try {
        const resp = await fetch(location.href, { credentials: "same-origin" });
        if (!resp.ok) return;
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const fresh = doc.getElementById(el.id);
        if (fresh) { el.innerHTML = fresh.innerHTML; refreshTimes(el); }
      } catch (e) { /* offline for a moment: try again next tick */ }
    }, every);
  }

  // --- log tails (build log, instance output) ---------------------------------
  function startLog(pre) {
    const status = document.getElementById("log-status");
    const follow = document.getElementById("follow");
    let ctrl = null;
    const MAX_CHARS = 400000;
    async function run() {
      ctrl = new AbortController();
      pre.textContent = "";
      let url = pre.dataset.logSrc;
      if (follow && !follow.checked) url = url.replace("follow=true", "follow=false");
      const streaming = url.includes("follow=true");
      if (status) status.textContent = streaming ? "live: following" : "loaded";
      try {
        const resp = await fetch(url, { credentials: "same-origin", signal: ctrl.signal });
        if (!resp.ok) { pre.textContent = "(could not load: HTTP " + resp.status + ")"; return; }
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 30;
          pre.textContent += dec.decode(value, { stream: true });
          if (pre.textContent.length > MAX_CHARS) pre.textContent = pre.textContent.slice(-MAX_CHARS / 2);
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        if (!pre.textContent) pre.textContent = "(no output yet)";
        if (status) status.textContent = "end of output";
        pre.dataset.done = "true";
        // a build that was running has finished: show its result (state, image, layers)
        if (streaming && pre.hasAttribute("data-reload-on-end")) setTimeout(() => location.reload(), 800);
      } catch (e) {
        if (e.name !== "AbortError" && status) status.textContent = "disconnected: reload to retry";
      }
    }
    if (follow) follow.addEventListener("change", () => { if (ctrl) ctrl.abort(); run(); });
    run();
  }

  // filter forms apply as soon as a choice changes (the button stays for keyboard and no-JS use)
  document.addEventListener("change", (ev) => {
    const form = ev.target.form;
    if (form && form.hasAttribute("data-autosubmit") && ev.target.matches("select, input[type=radio]")) form.requestSubmit();
  });

  document.addEventListener("DOMContentLoaded", () => {
    refreshTimes();
    setInterval(() => refreshTimes(), 15000);
    const live = document.getElementById("live");
    if (live && live.dataset.stream && !live.querySelector('[data-state="succeeded"], [data-state="failed"], [data-state="rolled_back"], [data-state="cancelled"]')) startStream(live);
    else if (live) { const s = document.getElementById("live-status"); if (s) s.textContent = "finished"; live.dataset.finished = "true"; }
    document.querySelectorAll("[data-live][id]").forEach(startRefresh);
    document.querySelectorAll("pre[data-log-src]").forEach(startLog);
  });
})();
