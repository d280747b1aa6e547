// loopwise console: each page reads its views once (paged), then follows their deltas over server-sent events.
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || sessionStorage.getItem("lw-token") || "";
  if (token) sessionStorage.setItem("lw-token", token);
  const main = document.getElementById("main"), live = document.getElementById("live");
  const state = { page: null, stream: null, data: {}, workflow: localStorage.getItem("lw-workflow") || "", routeOffset: 0,
                  routeQuery: "", dirty: false, operator: localStorage.getItem("lw-operator") || "" };
  const PAGE_SIZE = 25;

  function esc(v) { return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
  function fmt(v, d) { return (v === null || v === undefined || isNaN(v)) ? "–" : (+v).toFixed(d === undefined ? 3 : d); }
  function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–"; }
  function badge(v) { return `<span class="badge b-${esc(v)}">${esc(v)}</span>`; }
  function headers() { const h = { "Content-Type": "application/json" }; if (token) h.Authorization = "Bearer " + token; return h; }

  async function view(name, q) {
    const qs = new URLSearchParams(q || {}); if (token) qs.set("token", token);
    const r = await fetch(`/api/view/${name}?${qs}`, { headers: headers() });
    if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
    return r.json();
  }
  async function post(path, body) {
    const r = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { alert(data.error || `HTTP ${r.status}`); return null; }
    return data;
  }

  function follow(channels, since, onDeltas) {
    if (state.stream) state.stream.close();
    const qs = new URLSearchParams({ ch: channels.join(","), since: String(since) }); if (token) qs.set("token", token);
    const es = new EventSource(`/events?${qs}`);
    es.onopen = () => live.classList.add("on");
    es.onerror = () => live.classList.remove("on");
    es.onmessage = ev => { onDeltas(JSON.parse(ev.data)); schedule(); };
    es.addEventListener("reset", () => show(state.page));
    state.stream = es;
  }
  function schedule() { if (!state.dirty) { state.dirty = true; requestAnimationFrame(() => { state.dirty = false; render(); }); } }
  function render() { const r = PAGES[state.page]; if (r) r.render(); }

  // ------------------------------------------------------------------ Workflows
  const workflows = {
    async load() {
      const wf = await view("workflows", { limit: 500 });
      state.data.workflows = Object.fromEntries(wf.rows.map(r => [r.workflow, r]));
      if (!state.data.workflows[state.workflow]) state.workflow = wf.rows.length ? wf.rows[0].workflow : "";
      await this.loadRoutes();
      const tl = state.workflow ? await view("timeline", { workflow: state.workflow, limit: 100 }) : { rows: [], rollouts: [] };
      state.data.timeline = tl.rows; state.data.rollouts = tl.rollouts;
      follow(["workflows", "routes", "timeline", "rollouts"], wf.seq, ds => ds.forEach(d => this.delta(d)));
    },
    async loadRoutes() {
      const r = state.workflow ? await view("routes", { workflow: state.workflow, offset: state.routeOffset, limit: PAGE_SIZE, q: state.routeQuery })
        : { rows: [], total: 0 };
      state.data.routes = r.rows; state.data.routeTotal = r.total;
    },
    delta(d) {
      if (d.ch === "workflows") state.data.workflows[d.key] = Object.assign(state.data.workflows[d.key] || {}, d.data);
      else if (d.ch === "routes" && d.data.workflow === state.workflow) {
        const i = state.data.routes.findIndex(r => r.segment === d.data.segment);
        if (i >= 0) state.data.routes[i] = d.data;
        else if (state.data.routes.length < PAGE_SIZE && state.routeOffset === 0) { state.data.routes.push(d.data); state.data.routeTotal++; }
        if (!state.data.workflows[state.workflow]) state.data.workflows[state.workflow] = { workflow: state.workflow, version: "?", routes: [] };
      } else if (d.ch === "routes" && !state.data.workflows[d.data.workflow]) {
        state.data.workflows[d.data.workflow] = { workflow: d.data.workflow, version: "?", routes: [] };
        if (!state.workflow) { state.workflow = d.data.workflow; state.data.routes = [d.data]; state.data.routeTotal = 1; }
      } else if (d.ch === "timeline" && d.key === state.workflow) state.data.timeline.unshift(d.data);
      else if (d.ch === "rollouts" && d.key === state.workflow) state.data.rollouts.push(d.data);
      else if (d.ch === "rollouts" && state.data.workflows[d.key]) state.data.workflows[d.key].rollout = d.data;
    },
    render() {
      const wfs = Object.values(state.data.workflows || {});
      const cards = wfs.map(w => {
        const ro = w.rollout, budget = w.budget_usd_per_hour;
        return `<div class="card ${w.workflow === state.workflow ? "sel" : ""}" data-wf="${esc(w.workflow)}">
          <b>${esc(w.workflow)}</b> <span class="badge">${esc(w.version)}</span>
          <div class="muted">${(w.routes || []).length} routes · ${w.segments || 0} segments</div>
          <div class="muted">spend $${fmt(w.spend_usd, 2)}${budget ? ` of $${fmt(budget, 2)}/h budget` : ""}</div>
          <div class="muted">rollout: ${ro ? `${esc(ro.version)} step ${ro.step} (${fmt(ro.traffic_share * 100, 0)}%) ${badge(ro.verdict)}` : "none"}</div></div>`;
      }).join("") || `<p class="muted">No workflow yet: publish one to lw.workflows.</p>`;
      const rows = (state.data.routes || []).map(p => {
        const routes = p.routes.map(r => {
          const ex = p.excluded[r.route];
          return `<div data-route="${esc(p.workflow + "/" + p.segment + "/" + r.route)}"><span class="bar" style="width:${Math.round(r.probability * 120)}px"></span>
            <b>${esc(r.route)}</b> <span class="num prob">${fmt(r.probability)}</span>
            <span class="muted">E[r] ${fmt(r.expected_reward)} ± ${fmt(r.reward_std)} · n ${r.n}</span> ${ex ? badge(/circuit/i.test(ex) ? "open" : "excluded") + ` <span class="muted">${esc(ex)}</span>` : ""}</div>`;
        }).join("");
        const excluded = Object.keys(p.excluded).filter(k => !p.routes.some(r => r.route === k))
          .map(k => `<div>${esc(k)} ${badge(/circuit/i.test(p.excluded[k]) ? "open" : "excluded")} <span class="muted">${esc(p.excluded[k])}</span></div>`).join("");
        return `<tr><td>${esc(p.segment)}<div class="muted">v${p.policy_version} · ${when(p.ts_ms)}</div></td><td>${routes}${excluded}</td>
          <td class="muted">${p.reasons.map(esc).join("<br>")}</td></tr>`;
      }).join("");
      const total = state.data.routeTotal || 0;
      const timeline = (state.data.timeline || []).slice(0, 40).map(t => `<tr><td>${when(t.ts_ms)}</td><td>${esc(t.segment)}</td>
        <td>${esc(t.top_before || "–")} → <b>${esc(t.top_after)}</b></td><td class="num">${Object.entries(t.moved).map(([k, v]) => `${esc(k)} ${v > 0 ? "+" : ""}${fmt(v, 2)}`).join(", ")}</td>
        <td class="muted">${t.reasons.map(esc).join("; ")}${Object.keys(t.excluded).length ? " · excluded: " + Object.keys(t.excluded).map(esc).join(", ") : ""}</td></tr>`).join("");
      const rollouts = (state.data.rollouts || []).slice(-10).reverse().map(r => `<tr><td>${when(r.ts_ms)}</td><td>${esc(r.version)}</td><td>${r.step}</td>
        <td>${fmt(r.traffic_share * 100, 0)}%</td><td>${badge(r.verdict)}</td><td class="muted">${esc(r.reason)}</td></tr>`).join("");
      main.innerHTML = `<div class="cards">${cards}</div>
        <h2>Routes of ${esc(state.workflow || "–")}</h2>
        <div class="pager"><input type="text" id="rq" placeholder="filter segments" value="${esc(state.routeQuery)}">
          <button id="prev" ${state.routeOffset ? "" : "disabled"}>‹</button>
          <span class="muted">${total ? state.routeOffset + 1 : 0}–${Math.min(state.routeOffset + PAGE_SIZE, total)} of ${total} segments</span>
          <button id="next" ${state.routeOffset + PAGE_SIZE < total ? "" : "disabled"}>›</button></div>
        <table id="routes"><tr><th>segment</th><th>routes: policy probability, expected reward ± std, circuit</th><th>why</th></tr>${rows}</table>
        <div class="row"><div><h2>Decision timeline</h2><table id="timeline"><tr><th>time</th><th>segment</th><th>top route</th><th>moved</th><th>why</th></tr>${timeline}</table></div>
        <div><h2>Rollout</h2><table><tr><th>time</th><th>version</th><th>step</th><th>share</th><th>verdict</th><th>why</th></tr>${rollouts}</table></div></div>`;
      main.querySelectorAll(".card").forEach(c => c.onclick = async () => {
        state.workflow = c.dataset.wf; localStorage.setItem("lw-workflow", state.workflow); state.routeOffset = 0; await this.load(); render();
      });
      const rq = document.getElementById("rq");
      rq.onchange = async () => { state.routeQuery = rq.value; state.routeOffset = 0; await this.loadRoutes(); render(); };
      document.getElementById("prev").onclick = async () => { state.routeOffset = Math.max(0, state.routeOffset - PAGE_SIZE); await this.loadRoutes(); render(); };
      document.getElementById("next").onclick = async () => { state.routeOffset += PAGE_SIZE; await this.loadRoutes(); render(); };
    },
  };

  // ------------------------------------------------------------------ Experiments
  const experiments = {
    async load() {
      const r = await view("experiments", { limit: 100 });
      state.data.experiments = Object.fromEntries(r.rows.map(e => [e.experiment, e]));
      follow(["experiments"], r.seq, ds => ds.forEach(d => {
        const e = state.data.experiments[d.key] || { history: [] };
        const history = e.history.concat([d.data.point]).slice(-500);
        state.data.experiments[d.key] = Object.assign({}, d.data, { history });
      }));
    },
    render() {
      const list = Object.values(state.data.experiments || {});
      main.innerHTML = list.length ? "" : `<p class="muted">No experiment yet: declare one in a workflow definition.</p>`;
      list.forEach(e => {
        const div = document.createElement("div");
        div.innerHTML = `<h2>${esc(e.experiment)} <span class="muted">(${esc(e.workflow)})</span> ${badge(e.status)} ${e.winner ? "winner: <b>" + esc(e.winner) + "</b>" : ""}</h2>
          <div class="muted">SRM p = ${fmt(e.srm_p_value, 4)} ${e.srm_ok ? badge("ok") : badge("rejected") + " sample ratio mismatch"} · decided ${when(e.decided_ts_ms)} · updated ${when(e.ts_ms)}</div>
          <table><tr><th>arm</th><th>traffic share</th><th>n</th><th>estimate [anytime-valid interval]</th><th>chance to win</th><th>expected loss</th><th>status</th></tr>
          ${e.arms.map(a => `<tr><td>${esc(a.variant)}</td><td><span class="bar" style="width:${Math.round(a.allocation * 100)}px"></span>${fmt(a.allocation * 100, 1)}%</td>
            <td class="num">${a.n}</td><td class="num">${fmt(a.mean)} [${fmt(a.ci_low)}, ${fmt(a.ci_high)}]</td><td class="num">${fmt(a.p_best * 100, 1)}%</td>
            <td class="num">${fmt(a.expected_loss, 4)}</td><td>${badge(a.status)}</td></tr>`).join("")}</table><h3>Estimate and interval over time</h3>`;
        const arms = e.arms.map(a => a.variant);
        div.appendChild(lineChart(arms.map((v, i) => ({
          name: v, color: PALETTE[i % PALETTE.length],
          points: e.history.filter(p => p.arms[v]).map(p => [p.ts_ms, p.arms[v][0]]),
          band: e.history.filter(p => p.arms[v]).map(p => [p.ts_ms, p.arms[v][1], p.arms[v][2]]),
        })), { width: 760, height: 200 }));
        main.appendChild(div);
      });
    },
  };

  // ------------------------------------------------------------------ Incidents & commands
  const incidents = {
    async load() {
      const [inc, cmd] = await Promise.all([view("incidents", { limit: 100 }), view("commands", { limit: 100 })]);
      state.data.incidents = Object.fromEntries(inc.rows.map(r => [r.incident_id, r]));
      state.data.commands = Object.fromEntries(cmd.rows.map(r => [r.command_id, r]));
      follow(["incidents", "commands"], Math.min(inc.seq, cmd.seq), ds => ds.forEach(d => {
        const table = d.ch === "incidents" ? state.data.incidents : state.data.commands;
        delete table[d.key]; table[d.key] = d.data;
      }));
    },
    render() {
      const cmds = Object.values(state.data.commands || {}).reverse();
      const pending = cmds.filter(c => c.state === "pending");
      const incs = Object.values(state.data.incidents || {}).reverse().sort((a, b) => (a.status !== "firing") - (b.status !== "firing"));
      const secs = (a, b) => (a && b) ? fmt((a - b) / 1000, 1) + " s" : "–";
      main.innerHTML = `<h2>Approval queue</h2>
        <div class="pager">operator <input type="text" id="operator" placeholder="your name" value="${esc(state.operator)}"></div>
        <table id="queue"><tr><th>command</th><th>action</th><th>target</th><th>why</th><th>expires</th><th></th></tr>
        ${pending.map(c => `<tr data-command="${esc(c.command_id)}"><td>${esc(c.command_id)}</td><td>${esc(c.action)} <span class="muted">${esc(JSON.stringify(c.params))}</span></td>
          <td>${esc(c.target)}</td><td>${esc(c.reason)}</td><td>${when(c.expires_ts_ms)}</td>
          <td><button class="approve" data-id="${esc(c.command_id)}">Approve</button> <button class="reject" data-id="${esc(c.command_id)}">Reject</button></td></tr>`).join("")
          || `<tr><td colspan="6" class="muted">Nothing waits for approval.</td></tr>`}</table>
        <h2>Incidents</h2><table id="incidents"><tr><th>incident</th><th>status</th><th>severity</th><th>root cause</th><th>members</th><th>detected after</th><th>mitigated after</th><th>summary</th></tr>
        ${incs.slice(0, 100).map(i => `<tr><td>${esc(i.incident_id)}<div class="muted">${when(i.started_ms)}</div></td><td>${badge(i.status)}</td><td>${badge(i.severity)}</td>
          <td>${esc(i.root_cause)}</td><td class="muted">${i.members.slice(0, 6).map(esc).join(", ")}${i.members.length > 6 ? " …" : ""}</td>
          <td class="num">${secs(i.detected_ms, i.started_ms)}</td><td class="num">${secs(i.mitigated_ms, i.started_ms)}</td><td class="muted">${esc(i.summary)}</td></tr>`).join("")}</table>
        <h2>Commands</h2><table id="commands"><tr><th>time</th><th>command</th><th>action</th><th>target</th><th>state</th><th>decided by</th><th>why</th></tr>
        ${cmds.slice(0, 100).map(c => `<tr data-command="${esc(c.command_id)}"><td>${when(c.ts_ms)}</td><td>${esc(c.command_id)}<div class="muted">${esc(c.topic)}</div></td>
          <td>${esc(c.action)}</td><td>${esc(c.target)}</td><td class="state">${badge(c.is_dry_run ? "dry-run" : c.state)}</td>
          <td>${c.decision ? esc(c.decision.operator) + " (" + esc(c.decision.decision) + ")" : ""}</td><td class="muted">${esc(c.reason)}</td></tr>`).join("")}</table>`;
      const op = document.getElementById("operator");
      op.onchange = () => { state.operator = op.value.trim(); localStorage.setItem("lw-operator", state.operator); };
      main.querySelectorAll("button.approve, button.reject").forEach(b => b.onclick = async () => {
        state.operator = op.value.trim(); localStorage.setItem("lw-operator", state.operator);
        if (!state.operator) { alert("Enter your name as operator first: it is recorded with the decision."); return; }
        b.disabled = true;
        const done = await post("/api/approvals", { command_id: b.dataset.id, decision: b.classList.contains("approve") ? "approve" : "reject", operator: state.operator });
        if (!done) b.disabled = false;
      });
    },
  };

  // ------------------------------------------------------------------ Insights & DLQ
  const insights = {
    async load() {
      const [ins, dlq] = await Promise.all([view("insights", { limit: 100 }), view("dlq", { limit: 200 })]);
      state.data.insights = Object.fromEntries(ins.rows.map(r => [r.insight_id, r]));
      state.data.dlq = Object.fromEntries(dlq.rows.map(r => [r.id, r]));
      state.data.selected = new Set();
      follow(["insights", "dlq"], Math.min(ins.seq, dlq.seq), ds => ds.forEach(d => {
        (d.ch === "insights" ? state.data.insights : state.data.dlq)[d.key] = d.data;
      }));
    },
    render() {
      const ins = Object.values(state.data.insights || {}).reverse().slice(0, 100);
      const dlq = Object.values(state.data.dlq || {}).reverse();
      const reasons = {}; dlq.forEach(d => { reasons[d.reason] = (reasons[d.reason] || 0) + 1; });
      main.innerHTML = `<div class="row"><div><h2>Latest insights</h2><table id="insights"><tr><th>time</th><th>kind</th><th>subject</th><th>finding</th></tr>
        ${ins.map(i => `<tr><td>${when(i.ts_ms)}</td><td>${badge(i.severity)} ${esc(i.kind)}</td><td>${esc(i.subject)}</td><td><b>${esc(i.title)}</b><pre>${esc(i.body)}</pre></td></tr>`).join("")
          || `<tr><td colspan="4" class="muted">No insight yet.</td></tr>`}</table></div>
        <div><h2>Dead letters</h2><div class="pager">${Object.entries(reasons).map(([r, n]) => `${badge(r)} ${n}`).join(" ") || "<span class='muted'>none</span>"}
          <button id="replay" ${state.data.selected.size ? "" : "disabled"}>Replay ${state.data.selected.size || ""} selected</button></div>
        <table id="dlq"><tr><th></th><th>source</th><th>reason</th><th>error</th><th>payload</th></tr>
        ${dlq.slice(0, 200).map(d => `<tr><td><input type="checkbox" data-id="${esc(d.id)}" ${state.data.selected.has(d.id) ? "checked" : ""}></td>
          <td>${esc(d.source_topic)}[${d.partition}]@${d.offset}<div class="muted">${when(d.ts_ms)}</div></td><td>${badge(d.reason)}</td>
          <td><pre>${esc(d.error)}</pre></td><td><pre>${esc(d.payload)}</pre></td></tr>`).join("")}</table></div></div>`;
      main.querySelectorAll("#dlq input[type=checkbox]").forEach(c => c.onchange = () => {
        if (c.checked) state.data.selected.add(c.dataset.id); else state.data.selected.delete(c.dataset.id); render();
      });
      document.getElementById("replay").onclick = async () => {
        const done = await post("/api/dlq/replay", { ids: Array.from(state.data.selected) });
        if (done) { state.data.selected.clear(); alert(`replayed ${done.replayed} to their source topics`); render(); }
      };
    },
  };

  // ------------------------------------------------------------------ Run (the simulator's or any live traffic)
  const run = {
    async load() {
      const r = await view("run");
      state.data.run = Object.fromEntries(r.rows.map(p => [String(p.t), p]));
      state.data.score = r.scorecard; state.data.runIncidents = r.incidents;
      follow(["run", "incidents"], r.seq, ds => ds.forEach(d => {
        if (d.ch === "run") state.data.run[d.key] = d.data;
        else { state.data.runIncidents = state.data.runIncidents.filter(i => i.incident_id !== d.key).concat([d.data]).slice(-20); }
      }));
    },
    render() {
      const points = Object.values(state.data.run || {}).sort((a, b) => a.t - b.t);
      const n = points.reduce((s, p) => s + p.n, 0), reward = points.reduce((s, p) => s + p.reward * p.n, 0) / Math.max(n, 1);
      const cost = points.reduce((s, p) => s + p.cost_usd, 0), errors = points.reduce((s, p) => s + p.error_rate * p.n, 0) / Math.max(n, 1);
      const secs = (a, b) => (a && b) ? fmt((a - b) / 1000, 1) + " s" : "–";
      main.innerHTML = `<h2>Live scorecard <span class="muted">(each request once, at its first outcome on lw.outcomes; 10 s event-time buckets)</span></h2>
        <div class="kpis" id="scorecard"><div><div class="big num">${n}</div><div class="muted">requests</div></div>
        <div><div class="big num">${fmt(reward)}</div><div class="muted">mean reward</div></div>
        <div><div class="big num">$${fmt(cost, 2)}</div><div class="muted">cost</div></div>
        <div><div class="big num">${fmt(errors * 100, 2)}%</div><div class="muted">errors</div></div></div><div id="charts"></div>
        <h2>Incidents: detect and mitigate</h2><table><tr><th>incident</th><th>root cause</th><th>status</th><th>detected after</th><th>mitigated after</th></tr>
        ${(state.data.runIncidents || []).slice().reverse().map(i => `<tr><td>${esc(i.incident_id)}</td><td>${esc(i.root_cause)}</td><td>${badge(i.status)}</td>
          <td class="num">${secs(i.detected_ms, i.started_ms)}</td><td class="num">${secs(i.mitigated_ms, i.started_ms)}</td></tr>`).join("")}</table>
        <p class="muted">The oracle's and the baselines' rewards on the same seeded traffic are in the report make run writes (reports/run.json).</p>`;
      const charts = document.getElementById("charts");
      charts.appendChild(lineChart([{ name: "mean reward", color: PALETTE[0], points: points.map(p => [p.t, p.reward]) }], { width: 760, height: 180 }));
      charts.appendChild(lineChart([{ name: "error rate", color: PALETTE[1], points: points.map(p => [p.t, p.error_rate]) }], { width: 760, height: 140, y0: 0 }));
    },
  };

  const PAGES = { workflows, experiments, incidents, insights, run };
  async function show(page) {
    if (!PAGES[page]) page = "workflows";
    state.page = page;
    document.querySelectorAll("nav a").forEach(a => a.classList.toggle("on", a.dataset.page === page));
    try { await PAGES[page].load(); render(); document.body.dataset.ready = page; }
    catch (err) { main.innerHTML = `<p class="muted">Could not load: ${esc(err.message)}</p>`; }
  }
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1) || "workflows");
})();
