// The device page: entities by group with live values, a chart per sensor on click, controls per
// command platform, and the lists (agent audit, the console's presses, rules and schedules).
import { api, seg, canCommand, session } from "./api.js";
import { h, clear, setText } from "./dom.js";
import { relTime, fmtValue, isNumeric, reasonText } from "./format.js";
import { badgeText, statusClass, deployBadge } from "./fleet.js";
import { ChartPanel } from "./chart.js";

const GROUPS = [
  ["sensors", "Sensors"],
  ["controls", "Controls"],
  ["diagnostic", "Diagnostic"],
  ["configuration", "Configuration"],
];
const COMMAND_PLATFORMS = new Set(["button", "switch", "number", "select", "text"]);

/** What the device (or the console) answered, as one sentence and a class. */
export function describeAnswer(ans) {
  const status = (ans && ans.status) || "failed";
  switch (status) {
    case "armed": {
      const n = Number(ans.confirm_within);
      return `Armed: press again within ${isFinite(n) && n > 0 ? Math.round(n) : "a few"} s to confirm.`;
    }
    case "ok":
      return "Done: the device ran the command.";
    case "dry_run":
      return "Dry run: the device checked every guard and would make these calls:";
    case "rejected":
      return `Rejected: ${reasonText(ans.reason)}`;
    case "timeout":
      return "No answer from the device in time (it may be offline or busy).";
    case "interrupted":
      return "Interrupted: the device stopped while the command ran.";
    case "failed":
      return `Failed: ${ans.reason ? reasonText(ans.reason) : "the command did not complete."}`;
    default:
      return `Answer: ${status}`;
  }
}

/** The calls of a dry run, each as one line of text (an argv as a command line, anything else as JSON). */
export function dryRunCalls(ans) {
  let src = ans && (ans.calls !== undefined ? ans.calls : ans.detail);
  if (typeof src === "string" && /^\s*[[{]/.test(src)) {
    try {
      src = JSON.parse(src);
    } catch {
      /* shown as it is */
    }
  }
  if (src === undefined || src === null || src === "") return [];
  const list = Array.isArray(src) ? src.flat(2) : [src];
  return list
    .map((c) => {
      if (c && typeof c === "object" && Array.isArray(c.argv)) return `${c.kind || "exec"}: ${c.argv.map(String).join(" ")}`;
      return typeof c === "string" ? c : JSON.stringify(c);
    })
    .map((s) => (s.length > 500 ? s.slice(0, 500) + "…" : s));
}

export class DevicePage {
  constructor(root, id, { navigate, onBroker }) {
    this.id = id;
    this.navigate = navigate;
    this.onBroker = onBroker;
    this.rows = new Map(); // entity key -> {value, updated, entity}
    this.chart = null;
    this.root = root;
    this.el = h("main#device.device-page", h("p.loading", { text: "Loading…" }));
    root.appendChild(this.el);
    this.ticker = setInterval(() => this.tick(), 5000);
    this.refreshTimer = null;
  }

  async load() {
    let d;
    try {
      d = await api("GET", `/api/devices/${seg(this.id)}`);
    } catch (e) {
      if (e.status === 404) {
        clear(this.el).append(this.crumbs(this.id), h("p#device-missing.empty", { text: `No device "${this.id}" is known to the console.` }));
        return;
      }
      throw e;
    }
    this.d = d;
    if (Number.isInteger(d.cursor)) this.cursor = d.cursor;
    if (d.broker) this.onBroker(d.broker);
    this.render();
  }

  crumbs(name) {
    return h(
      "nav.crumbs",
      h("a", { href: "/", text: "Fleet", on: { click: (ev) => { ev.preventDefault(); this.navigate("/"); } } }),
      " › ",
      h("span", { text: name }),
    );
  }

  render() {
    const d = this.d;
    clear(this.el);
    this.rows.clear();
    this.chartSlot = null;
    if (this.chart) this.chart.destroy();
    this.chart = null;
    this.head = h("header.device-head");
    this.renderHead();
    this.el.append(this.crumbs(d.name || d.id), this.head);
    if (!canCommand()) {
      this.el.append(
        h("p#viewer-note.note", {
          text: `Signed in as ${session.role || "a viewer"}: you can read everything here, but only operators and admins can send commands.`,
        }),
      );
    }
    const entities = Array.isArray(d.entities) ? d.entities : [];
    const withEntity = new Set();
    for (const [group, title] of GROUPS) {
      const list = entities.filter((e) => (e.group || "sensors") === group);
      if (!list.length) continue;
      const body = h("tbody");
      for (const e of list) {
        body.appendChild(this.entityRow(e));
        if (e.command) withEntity.add(String(e.command.id || e.key));
      }
      const section = h(
        "section.group",
        { dataset: { group } },
        h("h2", { text: title }),
        h("table.entities", body),
      );
      this.el.appendChild(section);
      if (group === "sensors") {
        this.chartSlot = h("div#chart-slot");
        this.el.appendChild(this.chartSlot);
      }
    }
    if (!this.chartSlot) {
      this.chartSlot = h("div#chart-slot");
      this.el.appendChild(this.chartSlot);
    }
    // Commands the device offers that have no entity (signed ones are not announced to Home Assistant).
    const extra = (Array.isArray(d.commands) ? d.commands : []).filter((c) => c && !withEntity.has(String(c.id)));
    if (extra.length) {
      const body = h("tbody");
      for (const c of extra) body.appendChild(this.commandRow(c));
      this.el.appendChild(h("section#more-commands.group", { dataset: { group: "commands" } }, h("h2", { text: "More commands" }), h("table.entities", body)));
    }
    const kids = Array.isArray(d.children) ? d.children : [];
    if (kids.length) {
      this.el.appendChild(
        h("section#children.list", h("h2", { text: "Sub-devices" }), h("ul", kids.map((k) => {
          const href = `/devices/${seg(k)}`;
          return h("li", h("a", { href, text: String(k), on: { click: (ev) => { ev.preventDefault(); this.navigate(href); } } }));
        }))),
      );
    }
    this.lists = h("div.lists");
    this.el.appendChild(this.lists);
    this.renderLists();
  }

  renderHead() {
    const d = this.d;
    const cls = statusClass(d.online);
    const meta = [
      h("span.status-text", { text: cls === "online" ? "online" : cls === "offline" ? "offline" : "status unknown" }),
      h("span.seen", { text: `last seen ${relTime(d.last_seen)}` }),
      d.version ? h("span.version", { text: `Pilot ${d.version}` }) : null,
      d.manufacturer || d.model ? h("span.model", { text: [d.manufacturer, d.model].filter(Boolean).join(" ") }) : null,
      d.profile ? h("span.profile", { text: `profile ${d.profile}` }) : null,
      d.dry_run ? h("span.badge.dry", { text: "dry run" }) : null,
    ];
    clear(this.head).append(
      h(`span.dot.${cls}`, { title: cls, role: "img", "aria-label": cls }),
      h("h1#device-name", { text: d.name || d.id }),
      h("div.device-meta", meta),
      h(
        "div.badges",
        (Array.isArray(d.badges) ? d.badges : []).map((b) => h("span.badge", { dataset: { badge: String(b) }, text: badgeText(b) })),
        deployBadge(d.deploy),
        session.role === "admin"
          ? h("a#edit-profile.edit-profile", {
              href: `/editor?device=${encodeURIComponent(String(d.id))}`,
              text: "Edit profile",
              title: "Open the profile this device runs in the editor, to change it and deploy it back",
              on: { click: (ev) => { ev.preventDefault(); this.navigate(`/editor?device=${encodeURIComponent(String(d.id))}`); } },
            })
          : null,
      ),
    );
    this.headSeen = this.head.querySelector(".seen");
  }

  entityRow(e) {
    const value = h("td.entity-value", { text: fmtValue(e.value, e.unit) });
    const updated = h("td.entity-updated.muted", { text: relTime(e.updated) });
    const chartable =
      e.history !== undefined ? e.history === true : e.platform === "binary_sensor" || (e.platform === "sensor" && isNumeric(e.value));
    const name = chartable
      ? h("button.entity-chart.link", { type: "button", text: e.name || e.key, title: "Show chart", on: { click: () => this.toggleChart(e) } })
      : h("span", { text: e.name || e.key });
    const control = e.command ? this.control({ ...e.command, platform: e.command.platform || e.platform, id: e.command.id || e.key }, e) : null;
    const tr = h(
      "tr.entity",
      { dataset: { key: String(e.key), platform: String(e.platform || "") } },
      h("td.entity-name", name),
      value,
      h("td.entity-control", control),
      updated,
    );
    this.rows.set(String(e.key), { value, updated, entity: e });
    return tr;
  }

  commandRow(c) {
    return h(
      "tr.entity",
      { dataset: { key: String(c.id), platform: String(c.platform || "button") } },
      h("td.entity-name", h("span", { text: c.name || c.id })),
      h("td.entity-value", { text: c.signed ? "signed" : "" }),
      h("td.entity-control", this.control(c, null)),
      h("td.entity-updated"),
    );
  }

  /** A control matching the command's platform; the answer appears beside it. */
  control(cmd, entity) {
    const platform = COMMAND_PLATFORMS.has(cmd.platform) ? cmd.platform : "button";
    const allowed = canCommand();
    const answer = h("div.cmd-answer", { role: "status", "aria-live": "polite" });
    const send = (value, btn) => this.press(cmd, value, answer, btn);
    let inputs;
    if (platform === "button") {
      const b = h("button.cmd.cmd-press", { type: "button", text: cmd.confirm_within ? "Press (confirm)" : "Press" });
      b.addEventListener("click", () => send("PRESS", b));
      inputs = [b];
    } else if (platform === "switch") {
      const on = h("button.cmd.cmd-on", { type: "button", text: "Turn on" });
      const off = h("button.cmd.cmd-off", { type: "button", text: "Turn off" });
      on.addEventListener("click", () => send("ON", on));
      off.addEventListener("click", () => send("OFF", off));
      inputs = [on, off];
    } else if (platform === "number") {
      const input = h("input.cmd-input", { type: "number", "aria-label": cmd.name || cmd.id });
      for (const k of ["min", "max", "step"]) if (cmd[k] !== undefined && cmd[k] !== null) input.setAttribute(k, String(cmd[k]));
      if (entity && isNumeric(entity.value)) input.value = String(entity.value);
      const b = h("button.cmd.cmd-set", { type: "button", text: "Set" });
      b.addEventListener("click", () => send(input.value, b));
      inputs = [input, b];
    } else if (platform === "select") {
      const sel = h("select.cmd-input", { "aria-label": cmd.name || cmd.id });
      for (const o of Array.isArray(cmd.options) ? cmd.options : []) sel.appendChild(h("option", { value: String(o), text: String(o) }));
      if (entity && entity.value !== null && entity.value !== undefined) sel.value = String(entity.value);
      const b = h("button.cmd.cmd-set", { type: "button", text: "Set" });
      b.addEventListener("click", () => send(sel.value, b));
      inputs = [sel, b];
    } else {
      const input = h("input.cmd-input", { type: "text", "aria-label": cmd.name || cmd.id });
      if (cmd.max_length) input.setAttribute("maxlength", String(cmd.max_length));
      const b = h("button.cmd.cmd-set", { type: "button", text: "Send" });
      b.addEventListener("click", () => send(input.value, b));
      inputs = [input, b];
    }
    for (const el of inputs) el.disabled = !allowed;
    return h("div.control", { dataset: { command: String(cmd.id), platform } }, inputs, answer);
  }

  async press(cmd, value, answerEl, btn) {
    btn.disabled = true;
    answerEl.className = "cmd-answer pending";
    answerEl.textContent = "Sending…";
    let ans;
    try {
      ans = await api("POST", `/api/devices/${seg(this.id)}/commands/${seg(cmd.id)}`, { value: String(value) });
    } catch (e) {
      if (e.status === 401) return; // on its way to sign-in
      if (e.status === 403) ans = { status: "rejected", reason: (e.body && e.body.reason) || "forbidden" };
      else if (e.status === 504) ans = { status: "timeout" };
      else if (e.body && e.body.status) ans = e.body;
      else ans = { status: "failed", reason: (e.body && (e.body.reason || e.body.error)) || `HTTP ${e.status || "error"}` };
    } finally {
      btn.disabled = !canCommand();
    }
    this.showAnswer(answerEl, ans || { status: "failed" });
    this.scheduleRefresh(300);
  }

  showAnswer(el, ans) {
    const status = String(ans.status || "failed");
    el.className = `cmd-answer answer-${status.replace(/[^a-z_]/g, "")}`;
    el.dataset.status = status;
    clear(el).appendChild(h("span.answer-text", { text: describeAnswer(ans) }));
    if (status === "dry_run") {
      const calls = dryRunCalls(ans);
      el.appendChild(calls.length ? h("ul.calls", calls.map((c) => h("li", h("code", { text: c })))) : h("span.muted", { text: " (no calls listed)" }));
    } else if (status !== "armed" && ans.detail) {
      el.appendChild(h("div.detail.muted", { text: typeof ans.detail === "string" ? ans.detail : JSON.stringify(ans.detail) }));
    }
    if (ans.verified === true) el.appendChild(h("span.verified", { text: " ✓ signed answer", title: "The device's answer carried a valid signature." }));
    else if (ans.verified === false) el.appendChild(h("span.unverified", { text: " (unverified answer)", title: "The answer carried no signature: anyone on the broker could have sent it." }));
  }

  renderLists() {
    const d = this.d;
    const rules = Array.isArray(d.rules) ? d.rules : [];
    const schedules = Array.isArray(d.schedules) ? d.schedules : [];
    const audit = Array.isArray(d.audit) ? d.audit : [];
    const presses = Array.isArray(d.presses) ? d.presses : [];
    const fired = (r) => {
      const last = r.last ?? (r.activity && r.activity.last);
      const count = r.count ?? (r.activity && r.activity.count);
      return last ? `last fired ${relTime(last)}${count ? ` (${count}×)` : ""}` : "never fired";
    };
    clear(this.lists).append(
      h(
        "section#rules.list",
        h("h2", { text: "Rules" }),
        rules.length
          ? h("ul", rules.map((r) => h("li.rule", { dataset: { id: String(r.id) } }, h("span.item-name", { text: r.name || r.id }), h("span.muted", { text: ` — ${fired(r)}` }))))
          : h("p.empty", { text: "No rules." }),
      ),
      h(
        "section#schedules.list",
        h("h2", { text: "Schedules" }),
        schedules.length
          ? h("ul", schedules.map((s) => h("li.schedule", { dataset: { id: String(s.id) } }, h("span.item-name", { text: s.name || s.id }), s.cron ? h("code.cron", { text: ` ${s.cron}` }) : null, h("span.muted", { text: ` — ${fired(s)}` }))))
          : h("p.empty", { text: "No schedules." }),
      ),
      h(
        "section#presses.list",
        h("h2", { text: "Presses from this console" }),
        presses.length
          ? h("ul", presses.map((p) =>
              h("li.press", { dataset: { status: String(p.status || "") } },
                h("span.when.muted", { text: `${relTime(p.ts)} ` }),
                h("span.who", { text: `${p.user || "?"} ` }),
                h("span.what", { text: `${p.command}${p.value && p.value !== "PRESS" ? ` = ${p.value}` : ""} ` }),
                h(`span.status.status-${String(p.status || "").replace(/[^a-z_]/g, "")}`, { text: p.status || "" }),
                p.reason ? h("span.reason.muted", { text: ` (${reasonText(p.reason)})` }) : null,
              ),
            ))
          : h("p.empty", { text: "No presses yet." }),
      ),
      h(
        "section#audit.list",
        h("h2", { text: "Command audit (from the device)" }),
        audit.length
          ? h("ul", audit.map((a) =>
              h("li.audit", { dataset: { event: String(a.event_type || "") } },
                a.ts ? h("span.when.muted", { text: `${relTime(a.ts)} ` }) : null,
                h("span.what", { text: `${a.command || "?"} ` }),
                h("span.status", { text: String(a.event_type || "") }),
                h("span.muted", { text: ` via ${a.origin || "?"}${a.by ? ` by ${a.by}` : ""}${a.kid ? ` (key ${a.kid})` : ""}` }),
                a.reason ? h("span.reason.muted", { text: ` — ${reasonText(a.reason)}` }) : null,
              ),
            ))
          : h("p.empty", { text: "No audit events yet." }),
      ),
    );
  }

  scheduleRefresh(delay = 2000) {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      try {
        const d = await api("GET", `/api/devices/${seg(this.id)}`);
        this.d = d;
        this.renderHead();
        for (const e of Array.isArray(d.entities) ? d.entities : []) this.setValue(String(e.key), e.value, e.updated);
        this.renderLists();
      } catch {
        /* the next update tries again */
      }
    }, delay);
  }

  setValue(key, value, ts) {
    const row = this.rows.get(key);
    if (!row) return;
    row.entity.value = value;
    if (ts) row.entity.updated = ts;
    setText(row.value, fmtValue(value, row.entity.unit));
    setText(row.updated, relTime(row.entity.updated));
  }

  /** An SSE `update`. */
  update(data) {
    if (data.devices && data.devices[this.id] && this.d) {
      Object.assign(this.d, data.devices[this.id]);
      this.renderHead();
      this.scheduleRefresh();
    }
    for (const s of Array.isArray(data.states) ? data.states : []) {
      if (Array.isArray(s) && String(s[0]) === this.id) this.setValue(String(s[1]), s[2], s[3]);
    }
    if (Array.isArray(data.audit) && this.d) {
      this.d.audit = data.audit;
      this.renderLists();
    }
    if (Array.isArray(data.removed) && data.removed.map(String).includes(this.id) && this.d) {
      this.d.online = null;
      this.renderHead();
    }
  }

  toggleChart(e) {
    if (this.chart && this.chart.entity.key === e.key) {
      this.chart.destroy();
      this.chart.el.remove();
      this.chart = null;
      return;
    }
    if (this.chart) {
      this.chart.destroy();
      this.chart.el.remove();
    }
    this.chart = new ChartPanel(this.id, e);
    clear(this.chartSlot).appendChild(this.chart.el);
    this.chart.load("24h");
  }

  tick() {
    if (!this.d) return;
    if (this.headSeen) setText(this.headSeen, `last seen ${relTime(this.d.last_seen)}`);
    for (const row of this.rows.values()) setText(row.updated, relTime(row.entity.updated));
  }

  destroy() {
    clearInterval(this.ticker);
    clearTimeout(this.refreshTimer);
    if (this.chart) this.chart.destroy();
  }
}

