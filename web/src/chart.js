// Charts of one entity's history: uPlot for numbers (drag to zoom, double-click resets), a canvas
// timeline of ON/OFF bands for binary sensors.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, seg } from "./api.js";
import { h, clear } from "./dom.js";
import { absTime } from "./format.js";

export const RANGES = ["1h", "24h", "7d", "30d"];
const SPAN = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

export class ChartPanel {
  constructor(deviceId, entity) {
    this.deviceId = deviceId;
    this.entity = entity;
    this.binary = entity.platform === "binary_sensor";
    this.range = "24h";
    this.plot = null;
    this.body = h("div.chart-body");
    this.note = h("p.chart-note");
    this.buttons = RANGES.map((r) =>
      h("button.range", { type: "button", dataset: { range: r }, text: r, on: { click: () => this.load(r) } }),
    );
    this.el = h(
      "section#chart.chart",
      { dataset: { key: entity.key } },
      h("div.chart-head", h("h3.chart-title", { text: entity.name || entity.key }), h("div.ranges", this.buttons)),
      this.body,
      this.note,
    );
  }

  async load(range) {
    this.range = range;
    for (const b of this.buttons) b.classList.toggle("active", b.dataset.range === range);
    this.el.classList.add("loading");
    let data;
    try {
      data = await api("GET", `/api/devices/${seg(this.deviceId)}/history/${seg(this.entity.key)}?range=${range}`);
    } catch (e) {
      this.el.classList.remove("loading");
      this.note.textContent = `Could not load the history: ${e.message}`;
      return;
    }
    this.el.classList.remove("loading");
    if (this.range !== range) return; // a later click won
    const ts = Array.isArray(data && data.ts) ? data.ts : [];
    const values = Array.isArray(data && data.values) ? data.values : [];
    this.el.dataset.points = String(ts.length);
    this.el.dataset.range = range; // what is drawn now (the tests wait on it)
    this.el.dataset.tier = String((data && data.tier) || "");
    if (ts.length === 0) {
      this.destroy();
      clear(this.body).appendChild(h("p.empty", { text: "No data in this range." }));
      this.note.textContent = "";
      return;
    }
    // the axis spans the range asked for (the server says which), not just the readings in it, so a sensor
    // that started an hour ago shows as an hour at the right end of a 24 h chart
    const now = Date.now() / 1000;
    const end = Number.isFinite(data.end) ? data.end : now;
    const start = Number.isFinite(data.start) && data.start < end ? data.start : end - SPAN[range];
    this.el.dataset.start = String(Math.round(start));
    this.el.dataset.end = String(Math.round(end));
    if (this.binary) this.drawTimeline(ts, values, start, end);
    else this.drawPlot(ts, values, (data && data.unit) || this.entity.unit || "", start, end);
    this.note.textContent = this.binary
      ? `${ts.length} changes (${data.tier || "raw"}).`
      : `${ts.length} points (${data.tier || "raw"}). Drag across the chart to zoom; double-click to reset.`;
  }

  drawPlot(ts, values, unit, start, end) {
    this.destroy();
    const xs = ts.map(Number);
    const first = xs[0];
    const last = xs[xs.length - 1];
    clear(this.body);
    const width = Math.max(300, this.body.clientWidth || this.el.clientWidth || 800);
    const opts = {
      width,
      height: 260,
      cursor: { drag: { x: true, y: false, setScale: true } },
      scales: {
        x: {
          time: true,
          // uPlot auto-ranges x to the readings' extent (at first and on double-click): widen that to the
          // whole range; a drag-zoom's span is kept as chosen
          range: (u, min, max) => (min === first && (max === last || first === last) ? [Math.min(start, first), Math.max(end, last)] : [min, max]),
        },
      },
      series: [{}, { label: this.entity.name || this.entity.key, stroke: "#2a7ae2", width: 1.5, fill: "rgba(42,122,226,0.08)", value: (u, v) => (v == null ? "—" : `${v} ${unit}`.trim()) }],
      axes: [{}, { label: unit || undefined }],
      hooks: {
        // the shown time span, for the page's tests and for screen readers
        setScale: [
          (u, key) => {
            if (key !== "x") return;
            this.el.dataset.xmin = String(Math.round(u.scales.x.min));
            this.el.dataset.xmax = String(Math.round(u.scales.x.max));
          },
        ],
      },
    };
    this.plot = new uPlot(opts, [xs, values.map((v) => (v === null ? null : Number(v)))], this.body);
  }

  drawTimeline(ts, values, start, end) {
    this.destroy();
    clear(this.body);
    const canvas = h("canvas.timeline");
    const labels = h("div.timeline-axis", h("span", { text: absTime(start) }), h("span", { text: absTime(end) }));
    this.body.append(canvas, labels);
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(300, this.body.clientWidth || 800);
    const hgt = 40;
    canvas.width = w * dpr;
    canvas.height = hgt * dpr;
    canvas.style.width = `${w}px`;
    canvas.style.height = `${hgt}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#d9dde3";
    ctx.fillRect(0, 0, w, hgt);
    const x = (t) => ((Math.min(Math.max(t, start), end) - start) / (end - start)) * w;
    let on = 0;
    for (let i = 0; i < ts.length; i++) {
      const a = x(ts[i]);
      const b = x(i + 1 < ts.length ? ts[i + 1] : end);
      const isOn = Number(values[i]) >= 0.5;
      if (isOn) on += 1;
      ctx.fillStyle = isOn ? "#2fa84f" : "#9aa3ad";
      ctx.fillRect(a, 0, Math.max(1, b - a), hgt);
    }
    canvas.dataset.on = String(on);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `ON/OFF timeline, ${on} ON periods`);
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}
