// The fleet page: one row per device, live. Rows are keyed by device id and rebuilt only when their
// device changed; every device string is set as text.
import { api, seg } from "./api.js";
import { h, clear, setText } from "./dom.js";
import { relTime, fmtValue } from "./format.js";
import { drawSpark } from "./spark.js";

const BADGES = {
  duplicate_agent: "Duplicate agent",
  reconnects: "Reconnects",
  rejected_commands: "Rejected commands",
  dropped_telemetry: "Dropped telemetry",
};
const SPARK_POINTS = 120;

export function badgeText(name) {
  return BADGES[name] || String(name).replace(/_/g, " ");
}

export function statusClass(online) {
  return online === true ? "online" : online === false ? "offline" : "unknown";
}

function statusRank(d) {
  return d.online === true ? 0 : d.online === null || d.online === undefined ? 1 : 2;
}

function nameOf(d) {
  return String(d.name || d.id || "");
}

export class FleetPage {
  constructor(root, { navigate, onBroker }) {
    this.navigate = navigate;
    this.onBroker = onBroker;
    this.devices = new Map();
    this.rows = new Map();
    this.search = h("input#search", {
      type: "search",
      placeholder: "Search devices",
      "aria-label": "Search devices",
      on: { input: () => this.render() },
    });
    this.sort = h(
      "select#sort",
      { "aria-label": "Sort by", on: { change: () => this.render() } },
      h("option", { value: "name", text: "Name" }),
      h("option", { value: "status", text: "Status" }),
      h("option", { value: "last_seen", text: "Last seen" }),
    );
    this.count = h("span#fleet-count.muted");
    this.list = h("ul#devices.devices");
    this.empty = h("p#fleet-empty.empty", { hidden: true, text: "No Pilot devices seen on the broker yet." });
    root.appendChild(
      h(
        "main#fleet.fleet",
        h("div.toolbar", this.search, h("label.sort", "Sort ", this.sort), this.count),
        this.list,
        this.empty,
      ),
    );
    this.ticker = setInterval(() => this.tick(), 5000);
  }

  async load() {
    const data = await api("GET", "/api/fleet");
    this.devices.clear();
    for (const d of (data && data.devices) || []) if (d && d.id !== undefined) this.devices.set(String(d.id), d);
    if (data && Number.isInteger(data.cursor)) this.cursor = data.cursor;
    this.rows.clear();
    clear(this.list);
    if (data && data.broker) this.onBroker(data.broker);
    this.render();
  }

  /** An SSE `update`: whole summaries for changed devices, and single values. */
  update(data) {
    const changed = new Set();
    if (data.devices && typeof data.devices === "object") {
      for (const [id, d] of Object.entries(data.devices)) {
        if (!d || typeof d !== "object") continue;
        if (d.removed) this.devices.delete(id);
        else this.devices.set(id, { ...d, id });
        changed.add(id);
        this.rows.delete(id);
      }
    }
    for (const id of Array.isArray(data.removed) ? data.removed : []) {
      this.devices.delete(String(id));
      this.rows.delete(String(id));
      changed.add(String(id));
    }
    for (const s of Array.isArray(data.states) ? data.states : []) {
      if (!Array.isArray(s) || s.length < 3) continue;
      const [id, key, value, ts] = s;
      const d = this.devices.get(String(id));
      if (!d || !Array.isArray(d.key)) continue;
      const k = d.key.find((k) => k && k.entity === key);
      if (!k) continue;
      k.value = value;
      const num = Number(value);
      if (isFinite(ts) && value !== null && value !== "" && isFinite(num)) {
        k.spark = Array.isArray(k.spark) ? k.spark : [];
        k.spark.push([ts, num]);
        if (k.spark.length > SPARK_POINTS) k.spark.splice(0, k.spark.length - SPARK_POINTS);
      }
      if (isFinite(ts)) d.last_seen = Math.max(d.last_seen || 0, ts);
      if (!changed.has(String(id))) this.patchValue(String(id), k);
    }
    if (changed.size) this.render();
  }

  patchValue(id, k) {
    const row = this.rows.get(id);
    if (!row) return;
    const cell = row.keys.get(k.entity);
    if (!cell) return;
    setText(cell.value, fmtValue(k.value, k.unit));
    drawSpark(cell.canvas, k.spark);
    setText(row.seen, relTime(this.devices.get(id).last_seen));
  }

  filtered() {
    const q = this.search.value.trim().toLowerCase();
    const all = [...this.devices.values()];
    const match = (d) =>
      !q ||
      [d.id, d.name, d.model, d.profile, d.version].some((s) => s !== null && s !== undefined && String(s).toLowerCase().includes(q));
    const by = this.sort.value;
    const cmp = (a, b) => {
      if (by === "status") return statusRank(a) - statusRank(b) || nameOf(a).localeCompare(nameOf(b));
      if (by === "last_seen") return (b.last_seen || 0) - (a.last_seen || 0) || nameOf(a).localeCompare(nameOf(b));
      return nameOf(a).localeCompare(nameOf(b)) || String(a.id).localeCompare(String(b.id));
    };
    const top = all.filter((d) => !d.parent || !this.devices.has(String(d.parent)));
    const kids = new Map();
    for (const d of all) {
      if (d.parent && this.devices.has(String(d.parent))) {
        const p = String(d.parent);
        if (!kids.has(p)) kids.set(p, []);
        kids.get(p).push(d);
      }
    }
    const out = [];
    for (const d of top.sort(cmp)) {
      const children = (kids.get(String(d.id)) || []).sort(cmp).filter(match);
      if (match(d) || children.length) {
        out.push(d);
        out.push(...children);
      }
    }
    return out;
  }

  render() {
    const shown = this.filtered();
    const online = [...this.devices.values()].filter((d) => d.online === true).length;
    setText(this.count, `${this.devices.size} device${this.devices.size === 1 ? "" : "s"}, ${online} online`);
    this.empty.hidden = this.devices.size !== 0;
    const want = [];
    for (const d of shown) {
      const id = String(d.id);
      let row = this.rows.get(id);
      if (!row) {
        row = this.row(d);
        this.rows.set(id, row);
      }
      want.push(row.el);
    }
    // Put rows in order with the fewest DOM moves; drop the rest.
    const keep = new Set(want);
    for (const el of [...this.list.children]) if (!keep.has(el)) el.remove();
    want.forEach((el, i) => {
      if (this.list.children[i] !== el) this.list.insertBefore(el, this.list.children[i] || null);
    });
    for (const row of this.rows.values()) if (keep.has(row.el)) row.draw();
  }

  row(d) {
    const id = String(d.id);
    const href = `/devices/${seg(id)}`;
    const cls = statusClass(d.online);
    const seen = h("span.seen", { text: relTime(d.last_seen), title: d.last_seen ? new Date(d.last_seen * 1000).toLocaleString() : "" });
    const link = h("a.device-name", {
      href,
      text: nameOf(d),
      on: {
        click: (ev) => {
          if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
          ev.preventDefault();
          this.navigate(href);
        },
      },
    });
    const badges = (Array.isArray(d.badges) ? d.badges : []).map((b) =>
      h(`span.badge`, { dataset: { badge: String(b) }, text: badgeText(b) }),
    );
    const keys = new Map();
    const cells = (Array.isArray(d.key) ? d.key : []).slice(0, 3).map((k) => {
      const value = h("span.key-value", { text: fmtValue(k.value, k.unit) });
      const canvas = h("canvas.spark", { width: "96", height: "24", "aria-hidden": "true" });
      keys.set(k.entity, { value, canvas, k });
      return h("div.key", { dataset: { entity: String(k.entity) } }, h("span.key-name", { text: k.name || k.entity }), value, canvas);
    });
    const meta = [
      h("span.status-text", { text: cls === "online" ? "online" : cls === "offline" ? "offline" : "status unknown" }),
      seen,
      d.version ? h("span.version", { text: `v${d.version}` }) : null,
      d.model ? h("span.model", { text: d.model }) : null,
      d.children ? h("span.children", { text: `${d.children} sub-device${d.children === 1 ? "" : "s"}` }) : null,
    ];
    const el = h(
      `li.device.${cls}`,
      { dataset: { id, online: String(d.online) } },
      h(`span.dot.${cls}`, { title: cls, "aria-label": cls, role: "img" }),
      h("div.device-main", link, h("div.device-meta", meta)),
      h("div.badges", badges),
      h("div.keys", cells),
    );
    if (d.parent) el.classList.add("child");
    return {
      el,
      seen,
      keys,
      draw: () => {
        for (const { canvas, k } of keys.values()) drawSpark(canvas, k.spark);
      },
    };
  }

  tick() {
    for (const [id, row] of this.rows) {
      const d = this.devices.get(id);
      if (d) setText(row.seen, relTime(d.last_seen));
    }
  }

  destroy() {
    clearInterval(this.ticker);
  }
}
