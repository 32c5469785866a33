// The fleet page: one row per device, live. Rows are keyed by device id and rebuilt only when their
// device's summary changed; every device string is set as text.
//
// With a thousand devices the costs are layout and canvases, not data: so live values only patch text,
// summaries and re-sorting wait for the next animation frame (at most one pass per frame, however many
// events came), and sparklines (SVG, spark.js) are drawn only for rows in view (IntersectionObserver).
// Rows out of view skip rendering (content-visibility in style.css).
import { api, seg } from "./api.js";
import { h, clear, setText } from "./dom.js";
import { relTime, fmtValue, reasonText } from "./format.js";
import { drawSpark, makeSpark } from "./spark.js";

const BADGES = {
  duplicate_agent: "Duplicate agent",
  reconnects: "Reconnects",
  rejected_commands: "Rejected commands",
  dropped_telemetry: "Dropped telemetry",
};
const SPARK_POINTS = 120;
const collator = new Intl.Collator(); // what localeCompare uses, built once: sorting 1,000 names is then cheap

const DEPLOY_BADGES = {
  sending: "Deploying…",
  applied: "Profile applied",
  rolled_back: "Deploy rolled back",
  rejected: "Deploy rejected",
  no_answer: "Deploy: no answer",
};

/** The small rollout badge of a device's last profile deploy (its summary's `deploy`), or null. */
export function deployBadge(dep) {
  if (!dep || typeof dep !== "object" || typeof dep.state !== "string") return null;
  const state = dep.state.replace(/[^a-z_]/g, "");
  const when = Number.isFinite(dep.ts) ? new Date(dep.ts * 1000).toLocaleString() : "";
  const title = [dep.by ? `by ${dep.by}` : "", when, dep.reason ? reasonText(dep.reason) : ""].filter(Boolean).join(", ");
  return h("span.badge.deploy", { dataset: { deploy: state }, text: DEPLOY_BADGES[state] || `Deploy: ${state}`, title });
}

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

const haystacks = new WeakMap(); // summary -> the lower-cased fields a search looks in

function haystack(d) {
  let s = haystacks.get(d);
  if (s === undefined) {
    s = [d.id, d.name, d.model, d.profile, d.version]
      .filter((v) => v !== null && v !== undefined)
      .map((v) => String(v).toLowerCase());
    haystacks.set(d, s);
  }
  return s;
}

export class FleetPage {
  constructor(root, { navigate, onBroker }) {
    this.navigate = navigate;
    this.onBroker = onBroker;
    this.devices = new Map();
    this.rows = new Map();
    this.rebuild = new Set(); // ids whose summary changed: their rows are rebuilt in the next frame
    this.visible = new Set(); // ids of rows in (or near) the viewport: only their sparklines are drawn
    this.needRender = false;
    this.frame = 0;
    this.io =
      typeof IntersectionObserver === "function"
        ? new IntersectionObserver((entries) => this.onView(entries), { rootMargin: "300px 0px" })
        : null;
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
    if (this.io) this.io.disconnect();
    this.rows.clear();
    this.rebuild.clear();
    this.visible.clear();
    clear(this.list);
    if (data && data.broker) this.onBroker(data.broker);
    this.render();
  }

  /** An SSE `update`: whole summaries for changed devices, and single values. */
  update(data) {
    if (data.devices && typeof data.devices === "object") {
      for (const [id, d] of Object.entries(data.devices)) {
        if (!d || typeof d !== "object") continue;
        if (d.removed) this.drop(id);
        else {
          this.devices.set(id, { ...d, id });
          if (this.rows.has(id)) this.rebuild.add(id);
        }
        this.needRender = true;
      }
    }
    for (const id of Array.isArray(data.removed) ? data.removed : []) {
      this.drop(String(id));
      this.needRender = true;
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
      this.patchValue(String(id), k);
    }
    this.schedule();
  }

  drop(id) {
    this.devices.delete(id);
    this.rebuild.delete(id);
    this.visible.delete(id);
    const row = this.rows.get(id);
    if (row) {
      if (this.io) this.io.unobserve(row.el);
      row.el.remove();
      this.rows.delete(id);
    }
  }

  /** A live value: its text now (cheap), its sparkline when the row is in view. */
  patchValue(id, k) {
    const row = this.rows.get(id);
    if (!row || this.rebuild.has(id)) return;
    const cell = row.keys.get(k.entity);
    if (!cell) return;
    cell.k = k;
    setText(cell.value, fmtValue(k.value, k.unit));
    setText(row.seen, relTime(this.devices.get(id).last_seen));
    row.stale = true;
  }

  /** One pass of DOM work in the next animation frame, however many events arrive before it. */
  schedule() {
    if (this.frame || this.destroyed) return;
    this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    if (this.destroyed) return;
    for (const id of this.rebuild) {
      const old = this.rows.get(id);
      const d = this.devices.get(id);
      if (!old || !d) continue;
      const row = this.row(d);
      this.rows.set(id, row);
      if (this.io) this.io.unobserve(old.el);
      if (old.el.parentNode) old.el.replaceWith(row.el);
      this.watch(id, row);
    }
    this.rebuild.clear();
    if (this.needRender) this.render();
    this.drawVisible();
  }

  onView(entries) {
    for (const e of entries) {
      const id = e.target.dataset.id;
      const row = this.rows.get(id);
      if (!row || row.el !== e.target) continue;
      if (e.isIntersecting) this.visible.add(id);
      else this.visible.delete(id);
    }
    this.schedule();
  }

  watch(id, row) {
    if (this.io) this.io.observe(row.el);
    else this.visible.add(id); // no observer: every row counts as in view
  }

  /** Sparklines of the rows in view whose data changed. */
  drawVisible() {
    for (const id of this.visible) {
      const row = this.rows.get(id);
      if (!row || !row.stale || !row.el.isConnected) continue;
      for (const c of row.keys.values()) {
        if (!c.spark) c.cell.appendChild((c.spark = makeSpark())); // made when first in view
        drawSpark(c.spark, c.k.spark);
      }
      row.stale = false;
    }
  }

  filtered() {
    const q = this.search.value.trim().toLowerCase();
    const all = [...this.devices.values()];
    const match = (d) => !q || haystack(d).some((s) => s.includes(q));
    const by = this.sort.value;
    const cmp = (a, b) => {
      if (by === "status") return statusRank(a) - statusRank(b) || collator.compare(nameOf(a), nameOf(b));
      if (by === "last_seen") return (b.last_seen || 0) - (a.last_seen || 0) || collator.compare(nameOf(a), nameOf(b));
      return collator.compare(nameOf(a), nameOf(b)) || collator.compare(String(a.id), String(b.id));
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

  /** Order and filter the rows now (search and sort answer at once; live changes come through flush). */
  render() {
    this.needRender = false;
    const shown = this.filtered();
    let online = 0;
    for (const d of this.devices.values()) if (d.online === true) online++;
    setText(this.count, `${this.devices.size} device${this.devices.size === 1 ? "" : "s"}, ${online} online`);
    this.empty.hidden = this.devices.size !== 0;
    const want = [];
    for (const d of shown) {
      const id = String(d.id);
      let row = this.rows.get(id);
      if (!row) {
        row = this.row(d);
        this.rows.set(id, row);
        this.watch(id, row);
      }
      want.push(row.el);
    }
    // Put rows in order with the fewest DOM moves; drop the rest.
    const keep = new Set(want);
    for (const el of [...this.list.children]) if (!keep.has(el)) el.remove();
    let at = this.list.firstElementChild;
    for (const el of want) {
      if (el === at) at = at.nextElementSibling;
      else this.list.insertBefore(el, at);
    }
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
      const cell = h("div.key", { dataset: { entity: String(k.entity) } }, h("span.key-name", { text: k.name || k.entity }), value);
      keys.set(k.entity, { cell, value, spark: null, k });
      return cell;
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
      h("div.badges", badges, deployBadge(d.deploy)),
      h("div.keys", cells),
    );
    if (d.parent) el.classList.add("child");
    return { el, seen, keys, stale: true };
  }

  tick() {
    for (const [id, row] of this.rows) {
      const d = this.devices.get(id);
      if (d) setText(row.seen, relTime(d.last_seen));
    }
  }

  destroy() {
    this.destroyed = true;
    clearInterval(this.ticker);
    if (this.frame) cancelAnimationFrame(this.frame);
    if (this.io) this.io.disconnect();
  }
}
