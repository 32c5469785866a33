// The profile editor page (/editor): a profile from a local file, a shipped pack or a device, in a
// CodeMirror editor with live validation by the console's validator, completion and hover docs from
// the catalog; a form over the settings people change most; a diff before saving; deploy to devices.
//
// Loaded only here (a dynamic import in main.js), so the fleet page never downloads CodeMirror.
// CodeMirror adds its styles with style-mod, which writes a <style> element into a document but uses
// a constructed stylesheet (adoptedStyleSheets) inside a shadow root: the console's CSP forbids inline
// <style>, so the editor lives in a shadow root and no nonce or CSP change is needed.
import { EditorState, ChangeSet } from "@codemirror/state";
import {
  EditorView,
  keymap,
  lineNumbers,
  highlightActiveLine,
  highlightActiveLineGutter,
  drawSelection,
  hoverTooltip,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { syntaxHighlighting, defaultHighlightStyle, indentOnInput, bracketMatching, indentUnit } from "@codemirror/language";
import { setDiagnostics, lintKeymap, forEachDiagnostic } from "@codemirror/lint";
import { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { yaml } from "@codemirror/lang-yaml";
import { api, seg, session } from "./api.js";
import { h, clear, setText } from "./dom.js";
import { contextAt, completions, hoverDoc } from "./yamlctx.js";
import { reasonText } from "./format.js";

const MAX_TEXT = 262144; // bytes, the console's cap on editor texts
const MIN_GAP_MS = 150; // at most one validation in flight, and at most one started per this interval
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.ya?ml$/;
const encoder = new TextEncoder();

/** Where each form field lives in the profile: the paths /api/editor/apply edits. */
export const FORM_PATHS = {
  device: { name: ["device", "name"], id: ["device", "id"] },
  mqtt: { host: ["mqtt", "host"], port: ["mqtt", "port"], tls: ["mqtt", "tls"], username: ["mqtt", "username"] },
  sensor: {
    enabled: (id) => ["sensors", id, "enabled"],
    every: (id) => ["sensors", id, "every"],
    deadband: (id) => ["sensors", id, "publish", "min_change"],
  },
  command: {
    enabled: (id) => ["commands", id, "enabled"],
    confirm: (id) => ["commands", id, "policy", "confirm"],
    cooldown: (id) => ["commands", id, "policy", "cooldown"],
    signed: (id) => ["commands", id, "policy", "signed"],
  },
};

const DEPLOY_TEXT = {
  sending: "Sending…",
  applied: "Applied",
  rolled_back: "Rolled back",
  rejected: "Rejected",
  no_answer: "No answer",
  busy: "Busy: another deploy is running",
  failed: "Failed",
};

export function deployText(state) {
  return DEPLOY_TEXT[state] || String(state || "");
}

function isAdmin() {
  return session.role === "admin";
}

function errText(e) {
  if (!e) return "unknown error";
  if (e.status === 403) return "your role may not do this";
  if (e.status === 413) return "the profile is too large";
  return (e.body && (e.body.error || e.body.detail)) || e.message || String(e);
}

/** 1-based line and column to a document offset, clamped into the document. */
function posAt(doc, line, col) {
  const n = Math.min(Math.max(1, Number(line) || 1), doc.lines);
  const l = doc.line(n);
  return Math.min(l.from + Math.max(0, (Number(col) || 1) - 1), l.to);
}

/** A validator diagnostic as a CodeMirror one: the range (at least the word at its start) and its fix. */
export function toDiagnostic(doc, d) {
  let from = posAt(doc, d.line, d.col);
  let to = d.end_line ? posAt(doc, d.end_line, d.end_col) : from;
  if (to <= from) {
    const l = doc.lineAt(from);
    const rest = /^[^\s,:{}[\]]*/.exec(l.text.slice(from - l.from))[0];
    to = from + Math.max(rest.length, 0);
    if (to === from && from < l.to) to = from + 1;
  }
  const out = {
    from,
    to,
    severity: d.severity === "warning" ? "warning" : "error",
    message: String(d.message || ""),
    source: d.code ? String(d.code) : undefined,
    line: Number(d.line) || 1,
    col: Number(d.col) || 1,
  };
  const fix = d.fix;
  if (fix && typeof fix === "object" && typeof fix.insert === "string") {
    const ff = posAt(doc, fix.line, fix.col);
    const ft = Math.max(ff, posAt(doc, fix.end_line || fix.line, fix.end_col || fix.col));
    const rf = ff - from;
    const rt = ft - from;
    const insert = fix.insert;
    out.fixLabel = `Replace with “${insert}”`;
    out.actions = [
      {
        name: out.fixLabel,
        apply(view, at) {
          const len = view.state.doc.length;
          const a = Math.min(Math.max(0, at + rf), len);
          const b = Math.min(Math.max(a, at + rt), len);
          view.dispatch({ changes: { from: a, to: b, insert }, userEvent: "input.fix" });
        },
      },
    ];
  }
  return out;
}

const theme = EditorView.theme({
  "&": { height: "100%", fontSize: "13px", backgroundColor: "#fff", color: "#1d232b" },
  ".cm-scroller": { fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace', lineHeight: "1.45" },
  ".cm-gutters": { backgroundColor: "#f4f6f8", borderRight: "1px solid #dde2e8", color: "#66707c" },
  "&.cm-focused": { outline: "none" },
  ".cm-tooltip": { maxWidth: "560px", fontFamily: "system-ui, sans-serif", fontSize: "13px" },
  ".pilot-doc": { padding: "6px 9px" },
  ".pilot-doc-title": { fontWeight: "600", fontFamily: 'ui-monospace, Menlo, Consolas, monospace' },
  ".pilot-doc-body": { margin: "4px 0 0", whiteSpace: "pre-wrap" },
  ".pilot-doc-args": { margin: "4px 0 0", paddingLeft: "16px" },
  ".cm-diagnosticAction": { backgroundColor: "#2a7ae2" },
});

export class EditorPage {
  constructor(root, { navigate }) {
    this.navigate = navigate;
    this.catalog = null;
    this.source = null; // {kind: "file"|"pack"|"device"|"new", name, sha256, device}
    this.base = ""; // the text as opened or last saved: what the diff compares with
    this.devices = new Map();
    this.targets = new Map(); // device id -> {el, state, text}
    this.valid = { inflight: false, dirty: false, timer: 0, last: -Infinity, seq: 0, gen: 0, changes: null };
    this.problems = [];
    this.mode = "text";
    this.destroyed = false;

    this.openFile = h("select#open-file", { "aria-label": "Open a local file", on: { change: () => this.pick(this.openFile) } });
    this.openPack = h("select#open-pack", { "aria-label": "Start from a pack", on: { change: () => this.pick(this.openPack) } });
    this.openDevice = h("select#open-device", { "aria-label": "Open a device's profile", hidden: !isAdmin(), on: { change: () => this.pick(this.openDevice) } });
    this.title = h("span#editor-source.muted");
    this.openStatus = h("span#open-status", { role: "status" });

    this.tabs = {};
    const tab = (mode, label) =>
      (this.tabs[mode] = h(`button#tab-${mode}.tab`, { type: "button", text: label, "aria-pressed": "false", on: { click: () => this.show(mode) } }));

    this.host = h("div#editor-host.editor-host");
    this.shadow = this.host.attachShadow({ mode: "open" });
    this.summary = h("div#diag-summary.diag-summary", { role: "status", "aria-live": "polite", dataset: { state: "idle", seq: "0" } });
    this.problemList = h("ul#problems.problems");
    this.textView = h("section#text-view.view", this.host, this.summary, this.problemList);
    this.formView = h("section#form-view.view", { hidden: true });
    this.diffView = h("section#diff-view.view", { hidden: true });

    this.saveName = h("input#save-name", { type: "text", placeholder: "name.yaml", "aria-label": "File name", spellcheck: "false" });
    this.saveBtn = h("button#save", { type: "button", text: "Review and save…", on: { click: () => this.show("diff") } });
    this.saveStatus = h("span#save-status", { role: "status" });
    this.deployBox = h("section#deploy.deploy", { hidden: !isAdmin() });

    root.appendChild(
      h(
        "main#editor.editor",
        h("div.crumbs", h("a", { href: "/", text: "Fleet", on: { click: (ev) => { ev.preventDefault(); this.navigate("/"); } } }), " › Profile editor"),
        h(
          "div.toolbar.open-bar",
          h("label", "File ", this.openFile),
          h("label", "Pack ", this.openPack),
          isAdmin() ? h("label", "Device ", this.openDevice) : null,
          this.title,
          this.openStatus,
        ),
        h("div.tabs", { role: "group", "aria-label": "View" }, tab("text", "Text"), tab("form", "Form"), tab("diff", "Diff")),
        this.textView,
        this.formView,
        this.diffView,
        h("div.toolbar.save-bar", h("label", "Save as ", this.saveName), this.saveBtn, this.saveStatus),
        this.deployBox,
      ),
    );

    // Leaving the page (reload, closing the tab) with changes not saved asks first.
    this.onUnload = (ev) => {
      if (this.text !== this.base) ev.preventDefault();
    };
    window.addEventListener("beforeunload", this.onUnload);

    this.view = new EditorView({
      root: this.shadow,
      parent: this.shadow,
      state: this.makeState(""),
    });
    this.setTab("text");
  }

  makeState(text) {
    return EditorState.create({
      doc: text,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        closeBrackets(),
        highlightActiveLine(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        indentUnit.of("  "),
        EditorState.tabSize.of(2),
        yaml(),
        autocompletion({ override: [(c) => this.complete(c)], activateOnTyping: true }),
        hoverTooltip((view, pos) => this.hover(view, pos), { hoverTime: 300 }),
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap, ...lintKeymap, indentWithTab]),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) this.changed(u.changes);
        }),
        EditorView.contentAttributes.of({ "aria-label": "Profile YAML", "data-testid": "profile-text" }),
        theme,
      ],
    });
  }

  get text() {
    return this.view.state.doc.toString();
  }

  // ------------------------------------------------------------------ loading

  async load() {
    const tasks = [
      api("GET", "/api/editor/catalog").then((c) => (this.catalog = c && typeof c === "object" ? c : null)),
      this.loadFiles(),
      this.loadPacks(),
    ];
    if (isAdmin()) tasks.push(this.loadDevices());
    await Promise.all(tasks.map((t) => t.catch(() => {})));
    this.renderDeploy();
    const q = new URLSearchParams(location.search);
    if (q.get("file")) await this.open({ kind: "file", name: q.get("file") });
    else if (q.get("device")) await this.open({ kind: "device", device: q.get("device") });
    else if (q.get("pack")) {
      const [pack, profile] = q.get("pack").split("/", 2);
      await this.open({ kind: "pack", pack, profile });
    }
    if (q.get("device") && this.targets.has(q.get("device"))) this.targets.get(q.get("device")).check.checked = true;
    this.updateDeployButton();
  }

  async loadFiles() {
    let data;
    try {
      data = await api("GET", "/api/editor/files");
    } catch (e) {
      data = { dir: null, files: [], error: e };
    }
    this.filesDir = (data && data.dir) || null;
    const files = Array.isArray(data && data.files) ? data.files : [];
    clear(this.openFile).appendChild(h("option", { value: "", text: this.filesDir ? "Open a file…" : "No profile folder" }));
    for (const f of files) if (f && typeof f.name === "string") this.openFile.appendChild(h("option", { value: `file:${f.name}`, text: f.name }));
    this.openFile.disabled = !this.filesDir;
    this.updateSave();
  }

  async loadPacks() {
    const data = await api("GET", "/api/editor/packs");
    clear(this.openPack).appendChild(h("option", { value: "", text: "Start from a pack…" }));
    for (const p of Array.isArray(data && data.packs) ? data.packs : []) {
      if (!p || typeof p.name !== "string") continue;
      const group = h("optgroup", { label: p.name });
      for (const name of Array.isArray(p.profiles) ? p.profiles : []) {
        group.appendChild(h("option", { value: `pack:${p.name}/${name}`, text: `${p.name}/${name}`, title: p.description || "" }));
      }
      this.openPack.appendChild(group);
    }
  }

  async loadDevices() {
    const data = await api("GET", "/api/fleet");
    this.devices.clear();
    for (const d of Array.isArray(data && data.devices) ? data.devices : []) if (d && d.id !== undefined) this.devices.set(String(d.id), d);
    clear(this.openDevice).appendChild(h("option", { value: "", text: "Open a device's profile…" }));
    for (const d of this.devices.values()) this.openDevice.appendChild(h("option", { value: `device:${d.id}`, text: d.name ? `${d.name} (${d.id})` : String(d.id) }));
  }

  pick(select) {
    const v = select.value;
    select.value = "";
    if (v.startsWith("file:")) this.open({ kind: "file", name: v.slice(5) });
    else if (v.startsWith("pack:")) {
      const [pack, profile] = v.slice(5).split("/", 2);
      this.open({ kind: "pack", pack, profile });
    } else if (v.startsWith("device:")) this.open({ kind: "device", device: v.slice(7) });
  }

  async open(src) {
    if (this.text !== this.base && !confirm("Discard the changes not saved?")) return;
    setText(this.openStatus, "Opening…");
    this.openStatus.className = "muted";
    let text;
    let source;
    let note = "";
    try {
      if (src.kind === "file") {
        if (!NAME_RE.test(src.name)) throw new Error(`not a profile file name: ${src.name}`);
        const d = await api("GET", `/api/editor/files/${seg(src.name)}`);
        text = d.text;
        source = { kind: "file", name: src.name, sha256: d.sha256 || null };
      } else if (src.kind === "pack") {
        const d = await api("GET", `/api/editor/packs/${seg(src.pack)}/${seg(src.profile)}`);
        text = d.text;
        source = { kind: "pack", name: `${String(d.name || src.profile).replace(/\.ya?ml$/, "")}.yaml`, sha256: null, label: `pack ${src.pack}/${src.profile}` };
      } else if (src.kind === "device") {
        const d = await api("GET", `/api/devices/${seg(src.device)}/profile`);
        text = d.text;
        source = { kind: "device", name: NAME_RE.test(d.name || "") ? d.name : `${src.device}.yaml`, sha256: null, device: src.device, label: `device ${src.device}` };
        if (Array.isArray(d.redacted) && d.redacted.length) note = `Secrets at ${d.redacted.slice(0, 5).join(", ")} were replaced by <redacted>: put them back before deploying.`;
      }
    } catch (e) {
      if (e.status === 401) return;
      setText(this.openStatus, `Could not open: ${e.status === 504 ? "the device did not answer" : errText(e)}`);
      this.openStatus.className = "error";
      return;
    }
    if (typeof text !== "string") text = "";
    this.source = source;
    this.base = text;
    this.saveName.value = source.kind === "device" || source.kind === "pack" ? (this.filesDir ? source.name : "") : source.name;
    setText(this.title, source.label || source.name);
    setText(this.openStatus, note);
    this.openStatus.className = note ? "warn" : "muted";
    this.setText(text, { fresh: true });
    this.updateSave();
    if (this.mode !== "text") this.show(this.mode);
  }

  /** Replaces the whole text (a new profile, or a form edit): one transaction, so undo brings it back. */
  setText(text, { fresh = false } = {}) {
    if (fresh) {
      this.view.setState(this.makeState(text));
      this.valid.gen++; // a validation in flight was for another document: its answer is dropped
      this.valid.changes = null;
      this.changed(null);
    } else this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: text }, userEvent: "input.form" });
  }

  // ------------------------------------------------------------------ validation

  changed(changes) {
    const v = this.valid;
    if (changes && v.changes) v.changes = v.changes.compose(changes);
    v.dirty = true;
    this.summary.dataset.state = "pending";
    this.kick();
  }

  /** Validates now when nothing is in flight and the last start was long enough ago, else later. */
  kick() {
    const v = this.valid;
    if (this.destroyed || v.inflight || v.timer || !v.dirty) return;
    const wait = v.last + MIN_GAP_MS - performance.now();
    if (wait > 0) v.timer = setTimeout(() => { v.timer = 0; this.kick(); }, wait);
    else this.validate();
  }

  async validate() {
    const v = this.valid;
    v.dirty = false;
    v.inflight = true;
    v.last = performance.now();
    const state = this.view.state;
    const gen = v.gen;
    const text = state.doc.toString();
    v.changes = ChangeSet.empty(state.doc.length);
    let res = null;
    let failure = null;
    if (encoder.encode(text).length > MAX_TEXT) failure = `too large to validate (over ${MAX_TEXT / 1024} KiB)`;
    else {
      try {
        res = await api("POST", "/api/editor/validate", { text, name: (this.source && this.source.name) || "profile.yaml" });
      } catch (e) {
        failure = e.status === 429 ? "validation is rate limited, retrying" : `validation failed: ${errText(e)}`;
        if (e.status === 429) {
          v.dirty = true; // tried again once the console allows it
          v.last = performance.now() + Math.min(30, e.retryAfter || 1) * 1000 - MIN_GAP_MS;
        }
      }
    }
    v.inflight = false;
    if (this.destroyed) return;
    const changes = v.changes;
    v.changes = null;
    if (gen !== v.gen) res = failure = null;
    if (res && Array.isArray(res.diagnostics)) {
      const diags = res.diagnostics.filter((d) => d && typeof d === "object").slice(0, 500).map((d) => toDiagnostic(state.doc, d));
      if (changes && !changes.empty) {
        for (const d of diags) {
          d.from = changes.mapPos(d.from, 1);
          d.to = Math.max(d.from, changes.mapPos(d.to, -1));
        }
      }
      this.problems = diags;
      this.view.dispatch(setDiagnostics(this.view.state, diags));
      this.renderProblems(res.ok === true && diags.length === 0);
    } else if (failure) {
      this.summary.dataset.state = "failed";
      setText(this.summary, failure);
    }
    if (v.dirty) this.kick();
    else if (this.summary.dataset.state === "pending") this.summary.dataset.state = this.problems.length ? "errors" : "ok";
  }

  renderProblems(ok) {
    const errors = this.problems.filter((d) => d.severity === "error").length;
    const warnings = this.problems.length - errors;
    const parts = [];
    if (errors) parts.push(`${errors} error${errors === 1 ? "" : "s"}`);
    if (warnings) parts.push(`${warnings} warning${warnings === 1 ? "" : "s"}`);
    setText(this.summary, parts.length ? parts.join(", ") : ok ? "Valid: no problems" : "No problems");
    this.summary.dataset.state = this.valid.dirty ? "pending" : errors ? "errors" : warnings ? "warnings" : "ok";
    this.summary.dataset.seq = String(++this.valid.seq);
    this.summary.dataset.errors = String(errors);
    clear(this.problemList);
    for (const d of this.problems.slice(0, 100)) {
      const li = h(
        `li.problem.${d.severity}`,
        { dataset: { line: String(d.line), col: String(d.col), severity: d.severity } },
        h("button.link.problem-at", { type: "button", text: `${d.line}:${d.col}`, title: "Go to", on: { click: () => this.goto(d) } }),
        h("span.problem-message", { text: ` ${d.severity}: ${d.message}` }),
      );
      if (d.actions) li.appendChild(h("button.fix", { type: "button", text: d.fixLabel, on: { click: () => this.fix(d) } }));
      this.problemList.appendChild(li);
    }
  }

  /** The diagnostic's position now (diagnostics move with edits made since they came). */
  current(d) {
    let at = null;
    forEachDiagnostic(this.view.state, (x, from, to) => {
      if (x === d) at = { from, to };
    });
    return at;
  }

  goto(d) {
    const at = this.current(d) || d;
    this.view.dispatch({ selection: { anchor: at.from, head: at.to }, scrollIntoView: true });
    this.view.focus();
  }

  fix(d) {
    const at = this.current(d);
    if (!at || !d.actions) return;
    d.actions[0].apply(this.view, at.from, at.to);
    this.view.focus();
  }

  // ------------------------------------------------------------------ completion and hover

  complete(c) {
    if (!this.catalog) return null;
    const ctx = contextAt(c.state.doc, c.pos);
    if (!ctx) return null;
    if (!c.explicit && ctx.word === "" && ctx.at === "key" && !/^\s*(-\s+)?$/.test(c.state.doc.lineAt(c.pos).text.slice(0, c.pos - c.state.doc.lineAt(c.pos).from))) return null;
    const options = completions(this.catalog, c.state.doc, ctx, c.state.doc.lineAt(c.pos).number);
    if (!options.length) return null;
    if (ctx.at === "key") for (const o of options) o.apply = `${o.label}: `;
    return { from: ctx.from, options, validFor: /^[\w.-]*$/ };
  }

  hover(view, pos) {
    const info = hoverDoc(this.catalog, view.state.doc, pos);
    if (!info) return null;
    return {
      pos: info.from,
      end: info.to,
      above: true,
      create: () => {
        const dom = h(
          "div.pilot-doc",
          h("div.pilot-doc-title", { text: info.title }),
          info.doc ? h("p.pilot-doc-body", { text: info.doc }) : null,
        );
        if (info.args && info.args.length) {
          dom.appendChild(
            h(
              "ul.pilot-doc-args",
              info.args.map((a) => h("li", { text: `${a.name}${a.required ? " (required)" : ""}: ${a.type || ""}${a.doc ? ` — ${a.doc}` : ""}` })),
            ),
          );
        }
        return { dom };
      },
    };
  }

  // ------------------------------------------------------------------ views

  setTab(mode) {
    this.mode = mode;
    for (const [m, b] of Object.entries(this.tabs)) {
      b.setAttribute("aria-pressed", String(m === mode));
      b.classList.toggle("active", m === mode);
    }
    this.textView.hidden = mode !== "text";
    this.formView.hidden = mode !== "form";
    this.diffView.hidden = mode !== "diff";
    this.host.closest("main")?.setAttribute("data-mode", mode);
  }

  async show(mode) {
    this.setTab(mode);
    if (mode === "text") this.view.requestMeasure();
    if (mode === "form") await this.renderForm();
    if (mode === "diff") await this.renderDiff();
  }

  async renderForm() {
    const text = this.text;
    let res;
    this.formView.dataset.ready = "";
    try {
      res = await api("POST", "/api/editor/form", { text });
    } catch (e) {
      res = { ok: false, error: errText(e) };
    }
    if (this.mode !== "form" || this.text !== text) return;
    clear(this.formView);
    if (!res || res.ok !== true || !res.form) {
      this.formView.appendChild(h("p#form-error.error", { text: `The form needs a profile that parses: ${(res && res.error) || "no answer"}. Fix it in the text view.` }));
      this.formView.dataset.ready = "1";
      return;
    }
    const f = res.form;
    const dev = f.device || {};
    const mq = f.mqtt || {};
    const field = (label, input) => h("label.field", h("span.field-label", { text: label }), input);
    const text_ = (name, value, path, extra = {}) =>
      h(`input.form-input`, { type: "text", name, value: value === null || value === undefined ? "" : String(value), dataset: { path: path.join(".") }, on: { change: (ev) => this.edit(path, emptyNull(ev.target.value, extra.number)) }, ...extra.attrs });
    const check = (name, value, path, onValue = (v) => v) =>
      h("input.form-check", { type: "checkbox", name, checked: !!value, dataset: { path: path.join(".") }, on: { change: (ev) => this.edit(path, onValue(ev.target.checked)) } });

    const brokerResult = h("div#broker-result.broker-result", { role: "status" });
    const host = text_("mqtt.host", mq.host, FORM_PATHS.mqtt.host);
    const port = text_("mqtt.port", mq.port, FORM_PATHS.mqtt.port, { number: true, attrs: { inputmode: "numeric" } });
    const tls = check("mqtt.tls", mq.tls, FORM_PATHS.mqtt.tls);
    const testBtn = h("button#broker-test", { type: "button", text: "Test connection", hidden: !isAdmin(), on: { click: () => this.brokerTest(host.value, port.value, tls.checked, brokerResult, testBtn) } });

    // The sensors' and the commands' tables: an on switch (off is `enabled: false`) and the id, then their own cells.
    const listTable = (section, kind, label, items, headers, cells) =>
      h(
        `div.group.form-group#form-${section}`,
        h("h2", { text: `${label}s (${items.length})` }),
        items.length
          ? h(
              "table.form-table",
              h("thead", h("tr", ["On", label, ...headers].map((t) => h("th", t)))),
              h(
                "tbody",
                items.map((it) =>
                  h(
                    `tr.form-${kind}`,
                    { dataset: { id: it.id } },
                    [check(`${section}.${it.id}.enabled`, it.enabled !== false, FORM_PATHS[kind].enabled(it.id), (v) => (v ? null : false)), h("code", { text: it.id }), ...cells(it)].map((c) => h("td", c)),
                  ),
                ),
              ),
            )
          : h("p.empty", { text: `No ${section}.` }),
      );
    const sensors = (Array.isArray(f.sensors) ? f.sensors : []).filter((s) => s && typeof s.id === "string");
    const commands = (Array.isArray(f.commands) ? f.commands : []).filter((c) => c && typeof c.id === "string");
    append(this.formView, [
      h(
        "div.group.form-group#form-device",
        h("h2", { text: "Device" }),
        h("div.fields", field("Name", text_("device.name", dev.name, FORM_PATHS.device.name)), field("Id", text_("device.id", dev.id, FORM_PATHS.device.id))),
      ),
      h(
        "div.group.form-group#form-mqtt",
        h("h2", { text: "Broker" }),
        h("div.fields", field("Host", host), field("Port", port), h("label.field.inline", tls, " TLS"), field("User name", text_("mqtt.username", mq.username, FORM_PATHS.mqtt.username))),
        h("div.broker-test", testBtn, brokerResult),
      ),
      listTable("sensors", "sensor", "Sensor", sensors, ["Every", "Deadband"], (s) => [
        text_(`sensors.${s.id}.every`, s.every, FORM_PATHS.sensor.every(s.id), { attrs: { placeholder: "default" } }),
        text_(`sensors.${s.id}.deadband`, s.deadband, FORM_PATHS.sensor.deadband(s.id), { number: true, attrs: { placeholder: "none" } }),
      ]),
      listTable("commands", "command", "Command", commands, ["Confirm within", "Cooldown", "Signed"], (c) => [
        text_(`commands.${c.id}.confirm`, c.confirm, FORM_PATHS.command.confirm(c.id), { attrs: { placeholder: "no" } }),
        text_(`commands.${c.id}.cooldown`, c.cooldown, FORM_PATHS.command.cooldown(c.id), { attrs: { placeholder: "none" } }),
        check(`commands.${c.id}.signed`, c.signed, FORM_PATHS.command.signed(c.id), (v) => (v ? true : null)),
      ]),
      h("p#form-status.muted", { role: "status" }),
    ]);
    this.formView.dataset.ready = "1";
  }

  /** One form edit: the server edits the YAML in place (comments kept), the text is replaced. */
  async edit(path, value) {
    const status = this.formView.querySelector("#form-status");
    this.formView.dataset.ready = "";
    if (status) setText(status, "Saving the change into the text…");
    try {
      const res = await api("POST", "/api/editor/apply", { text: this.text, edits: [{ path, value }] });
      if (!res || typeof res.text !== "string") throw new Error("no text in the answer");
      this.setText(res.text);
    } catch (e) {
      if (status) {
        setText(status, `Not changed: ${errText(e)}`);
        status.className = "error";
      }
      this.formView.dataset.ready = "1";
      return;
    }
    await this.renderForm();
  }

  async brokerTest(host, port, tls, out, btn) {
    btn.disabled = true;
    out.className = "broker-result pending";
    setText(out, "Testing…");
    let res;
    try {
      res = await api("POST", "/api/editor/broker-test", { host: String(host).trim(), port: Number(port) || 1883, tls: !!tls });
    } catch (e) {
      res = { ok: false, summary: e.status === 429 ? "Too many tests: wait a little." : errText(e), advice: "" };
    }
    btn.disabled = false;
    out.className = `broker-result ${res && res.ok ? "ok" : "bad"}`;
    out.dataset.ok = String(!!(res && res.ok));
    clear(out).appendChild(h("strong", { text: (res && res.summary) || (res && res.ok ? "Connected." : "Failed.") }));
    if (res && res.advice) out.appendChild(h("div.advice", { text: res.advice }));
  }

  async renderDiff() {
    const text = this.text;
    clear(this.diffView);
    this.diffView.dataset.ready = "";
    let res;
    try {
      res = await api("POST", "/api/editor/diff", { old: this.base, new: text, name: this.saveName.value || (this.source && this.source.name) || "profile.yaml" });
    } catch (e) {
      res = { error: errText(e) };
    }
    if (this.mode !== "diff" || this.text !== text) return;
    const confirmBtn = h("button#save-confirm.primary", { type: "button", text: "Save", on: { click: () => this.save(confirmBtn) } });
    if (res && typeof res.diff === "string") {
      const pre = h("pre#diff.diff");
      for (const line of res.diff.split("\n").slice(0, 5000)) {
        const cls = line.startsWith("+++") || line.startsWith("---") ? "file" : line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "ctx";
        pre.appendChild(h(`span.dl.${cls}`, { text: line + "\n" }));
      }
      this.diffView.appendChild(res.changed ? pre : h("p#diff-none.empty", { text: "No changes since it was opened." }));
    } else this.diffView.appendChild(h("p.error", { text: `No diff: ${(res && res.error) || "no answer"}` }));
    this.diffView.appendChild(h("div.toolbar", confirmBtn, h("span.muted", { text: this.filesDir ? `into ${this.filesDir}` : "" })));
    confirmBtn.disabled = !this.canSave();
    this.diffView.dataset.ready = "1";
  }

  canSave() {
    return isAdmin() && !!this.filesDir;
  }

  updateSave() {
    this.saveBtn.disabled = !this.canSave();
    this.saveName.disabled = !this.canSave();
    this.saveBtn.title = !isAdmin() ? "Saving needs the admin role" : !this.filesDir ? "The console has no profile folder (editor.profiles_dir)" : "";
  }

  async save(btn) {
    const name = this.saveName.value.trim();
    this.saveStatus.className = "";
    if (!NAME_RE.test(name)) {
      this.saveStatus.className = "error";
      setText(this.saveStatus, "Give a file name like office.yaml (letters, digits, . _ -).");
      return;
    }
    const sameFile = this.source && this.source.kind === "file" && this.source.name === name;
    const text = this.text;
    btn.disabled = true;
    setText(this.saveStatus, "Saving…");
    try {
      const res = await api("PUT", `/api/editor/files/${seg(name)}`, { text, base_sha256: sameFile ? this.source.sha256 : null });
      this.source = { kind: "file", name, sha256: (res && res.sha256) || null };
      this.base = text;
      setText(this.title, name);
      this.saveStatus.className = "ok";
      setText(this.saveStatus, `Saved ${name}.`);
      this.loadFiles().catch(() => {});
      if (this.mode === "diff") await this.renderDiff();
    } catch (e) {
      if (e.status === 401) return;
      this.saveStatus.className = "error";
      if (e.status === 409) {
        setText(this.saveStatus, sameFile
          ? `Not saved: ${name} changed on disk since you opened it. Open it again to see the other change, or save under another name.`
          : `Not saved: ${name} already exists. Open it first, or choose another name.`);
      } else setText(this.saveStatus, `Not saved: ${errText(e)}`);
    }
    btn.disabled = !this.canSave();
  }

  // ------------------------------------------------------------------ deploy

  renderDeploy() {
    if (!isAdmin()) return;
    const checked = new Set([...this.targets].filter(([, t]) => t.check.checked).map(([id]) => id));
    clear(this.deployBox);
    this.targets.clear();
    const list = h("ul#deploy-targets.deploy-targets");
    for (const d of [...this.devices.values()].sort((a, b) => String(a.id).localeCompare(String(b.id)))) {
      const id = String(d.id);
      const check = h("input.deploy-check", { type: "checkbox", value: id, checked: checked.has(id), on: { change: () => this.updateDeployButton() } });
      const state = h("span.deploy-state", { role: "status" });
      const detail = h("div.deploy-detail");
      const li = h("li.deploy-target", { dataset: { id } }, h("label", check, " ", h("span.deploy-name", { text: d.name ? `${d.name} (${id})` : id })), state, detail);
      this.targets.set(id, { li, check, state, detail });
      this.showRollout(id, d.deploy);
      list.appendChild(li);
    }
    this.deployBtn = h("button#deploy-go.primary", { type: "button", text: "Deploy", on: { click: () => this.deploy() } });
    append(this.deployBox, [
      h("h2", { text: "Deploy to device(s)" }),
      h("p.muted", { text: "The console validates the profile, signs it and sends it; each device validates it with its own Pilot version, applies it, and rolls back if the new settings do not start or reach the broker." }),
      this.devices.size ? list : h("p.empty", { text: "No devices on the broker." }),
      h("div.toolbar", this.deployBtn),
    ]);
    this.updateDeployButton();
  }

  updateDeployButton() {
    if (!this.deployBtn) return;
    const n = [...this.targets.values()].filter((t) => t.check.checked).length;
    this.deployBtn.disabled = n === 0;
    setText(this.deployBtn, n ? `Deploy to ${n} device${n === 1 ? "" : "s"}` : "Deploy");
  }

  /** A device's rollout state (from its summary's `deploy`, or a deploy answer). */
  showRollout(id, dep, extra) {
    const t = this.targets.get(id);
    if (!t) return;
    if (!dep || typeof dep !== "object" || !dep.state) {
      if (!extra) return;
    }
    const state = (dep && dep.state) || "";
    t.li.dataset.state = state;
    t.state.className = `deploy-state deploy-${String(state).replace(/[^a-z_]/g, "")}`;
    const when = dep && Number.isFinite(dep.ts) ? ` · ${new Date(dep.ts * 1000).toLocaleTimeString()}` : "";
    const by = dep && dep.by ? ` by ${dep.by}` : "";
    setText(t.state, `${deployText(state)}${by}${when}${dep && dep.reason ? ` — ${reasonText(dep.reason)}` : ""}`);
    if (extra) {
      clear(t.detail);
      if (extra.detail) t.detail.appendChild(h("div.deploy-why", { text: String(extra.detail) }));
      const errors = Array.isArray(extra.errors) ? extra.errors.slice(0, 20) : [];
      if (errors.length) t.detail.appendChild(h("ul.deploy-errors", errors.map((e) => h("li", { text: typeof e === "string" ? e : `${e.line}:${e.col}: ${e.message}` }))));
    }
  }

  async deploy() {
    const ids = [...this.targets.entries()].filter(([, t]) => t.check.checked).map(([id]) => id);
    if (!ids.length) return;
    const text = this.text;
    this.deployBtn.disabled = true;
    await Promise.all(
      ids.map(async (id) => {
        this.showRollout(id, { state: "sending" }, {});
        let res;
        try {
          res = await api("POST", `/api/devices/${seg(id)}/deploy`, { text });
        } catch (e) {
          if (e.status === 401) return;
          if (e.status === 422) res = { status: "rejected", reason: "invalid_profile", errors: ((e.body && e.body.diagnostics) || []).map((d) => `${d.line}:${d.col}: ${d.severity}: ${d.message}`), detail: "Not sent: the profile does not validate." };
          else if (e.status === 504) res = { status: "no_answer", detail: "The device did not answer in time." };
          else res = { status: "failed", reason: null, detail: errText(e) };
        }
        const state = res.status === "ok" ? "applied" : res.status;
        this.showRollout(id, { state, reason: res.reason || null, ts: Math.floor(Date.now() / 1000) }, res);
        const t = this.targets.get(id);
        if (t && res.verified === false) t.detail.appendChild(h("div.unverified", { text: "The answer carried no valid signature." }));
      }),
    );
    this.updateDeployButton();
  }

  /** Live events: device summaries carry each device's rollout state. */
  update(data) {
    if (!data || !data.devices || typeof data.devices !== "object") return;
    for (const [id, d] of Object.entries(data.devices)) {
      if (!d || typeof d !== "object" || d.removed) continue;
      const known = this.devices.get(id);
      this.devices.set(id, { ...d, id });
      if (!known && isAdmin()) {
        this.renderDeploy();
        return;
      }
      const t = this.targets.get(id);
      if (t && d.deploy && t.li.dataset.state !== "sending") this.showRollout(id, d.deploy);
    }
  }

  destroy() {
    this.destroyed = true;
    window.removeEventListener("beforeunload", this.onUnload);
    clearTimeout(this.valid.timer);
    this.view.destroy();
  }
}

function emptyNull(value, number) {
  const s = String(value).trim();
  if (s === "") return null;
  if (number && /^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  return s;
}

function append(el, children) {
  for (const c of children) if (c) el.appendChild(c);
}

