// Where the cursor is in a profile, in terms of the catalog: the YAML path of the mapping it is in and
// whether it is at a key or a value. Read from indentation and the current line's flow brackets, not
// from a parse tree, because the text being typed is usually not valid YAML yet.
//
// The catalog (GET /api/editor/catalog) is a key tree {doc, type, enum?, children?, items?} plus the
// probes and actions with their arguments; completion and hover docs both come from it.

const KEY_LINE = /^(\s*)(?:-\s+)*([^\s#:'"{}[\],][^#:{}[\],]*?|"[^"]*"|'[^']*')\s*:(?:\s+(.*?))?\s*(?:#.*)?$/;
const MAX_SCAN = 2000; // lines looked at above the cursor: a profile is never near this, a paste might be

function unquote(s) {
  return /^(["']).*\1$/.test(s) ? s.slice(1, -1) : s;
}

/** The column where a line's content starts, counting a list item's "- " as indentation. */
function contentIndent(text) {
  const m = /^(\s*)((?:-\s+)*)/.exec(text);
  return m[1].length + m[2].length;
}

function blank(text) {
  return /^\s*(#.*)?$/.test(text);
}

/**
 * The block path above a position: the keys of the mappings (and "[]" for list items) that contain
 * column `indent` of line `lineNo`. `lineAt(n)` gives line n's text (1-based).
 */
export function blockPath(lineAt, lineNo, indent) {
  const path = [];
  let want = indent;
  for (let n = lineNo - 1, seen = 0; n >= 1 && want > 0 && seen < MAX_SCAN; n--, seen++) {
    const text = lineAt(n);
    if (blank(text)) continue;
    const lead = /^(\s*)/.exec(text)[1].length;
    const content = contentIndent(text);
    if (content < want) {
      const m = KEY_LINE.exec(text);
      if (m && !m[3] && content === lead) {
        // "key:" with its value below
        path.unshift(unquote(m[2]));
        want = lead;
      } else if (content > lead) {
        // "- key: value": the cursor's mapping is this list item (or a key's block inside it)
        if (m && !m[3] && want > content) path.unshift(unquote(m[2]));
        path.unshift("[]");
        want = lead;
      } else {
        want = lead;
      }
    } else if (content === want && content > lead) {
      // "- key: value" at the cursor's indentation: the list item the cursor's mapping is
      path.unshift("[]");
      want = lead;
    }
  }
  return path;
}

/** The path of the mapping a line's keys belong to; a "- " item line adds its list's "[]". */
function linePath(lineAt, lineNo, text) {
  const lead = /^\s*/.exec(text)[0].length;
  const content = contentIndent(text);
  if (content === lead) return blockPath(lineAt, lineNo, lead);
  const path = blockPath(lineAt, lineNo, lead);
  const dashes = (text.slice(lead, content).match(/-/g) || []).length;
  for (let i = 0; i < dashes; i++) path.push("[]");
  return path;
}

/** Scans a line's text up to the cursor for open flow collections: [{kind, key, keys}] outermost first. */
function flowStack(before) {
  const stack = [];
  let token = "";
  let quote = "";
  let key = null; // the key whose value comes next at this level
  let startKey = null; // "key:" before the first bracket
  for (let i = 0; i < before.length; i++) {
    const c = before[i];
    if (quote) {
      if (c === quote) quote = "";
      token += c;
      continue;
    }
    if (c === "#" && (i === 0 || /\s/.test(before[i - 1]))) break;
    if (c === '"' || c === "'") {
      quote = c;
      token += c;
    } else if (c === "{" || c === "[") {
      const top = stack[stack.length - 1];
      const parentKey = top ? (top.kind === "{" ? key : "[]") : startKey;
      stack.push({ kind: c, key: parentKey });
      key = null;
      token = "";
    } else if (c === "}" || c === "]") {
      stack.pop();
      key = null;
      token = "";
    } else if (c === ":" && (i + 1 >= before.length || /\s/.test(before[i + 1]))) {
      const k = unquote(token.trim().replace(/^-\s+/, ""));
      if (stack.length) key = k;
      else startKey = k;
      token = "";
    } else if (c === ",") {
      key = null;
      token = "";
    } else token += c;
  }
  return { stack, key, token };
}

/**
 * The completion context at `pos`: {path, at: "key"|"value", key, word, from} where path is the
 * mapping's path, key the key whose value is being typed (at "value"), word the text typed so far
 * and from where that word starts. `doc` is a CodeMirror Text.
 */
export function contextAt(doc, pos) {
  const line = doc.lineAt(pos);
  const before = line.text.slice(0, pos - line.from);
  const lineAt = (n) => doc.line(n).text;
  const wm = /[\w.-]*$/.exec(before);
  const word = wm[0];
  const from = pos - word.length;
  const { stack, key } = flowStack(before.slice(0, before.length - word.length));
  if (stack.length) {
    const path = linePath(lineAt, line.number, line.text);
    for (const s of stack) path.push(s.key === null ? "[]" : s.key);
    const top = stack[stack.length - 1];
    if (top.kind === "[") return { path: path.slice(0, -1), at: "value", key: top.key, word, from, list: true };
    return key !== null ? { path, at: "value", key, word, from } : { path, at: "key", key: null, word, from };
  }
  const vm = /^(\s*(?:-\s+)*)([^\s#:'"{}[\],][^#:{}[\],]*?)\s*:\s+([\w.-]*)$/.exec(before);
  if (vm) return { path: linePath(lineAt, line.number, before), at: "value", key: unquote(vm[2]), word, from };
  if (/^\s*(?:-\s+)*[\w.-]*$/.test(before)) {
    return { path: linePath(lineAt, line.number, before), at: "key", key: null, word, from };
  }
  return null;
}

/** The catalog node at a path ("[]" for list items, any other name for a map's own keys). */
export function nodeAt(catalog, path) {
  let node = { children: (catalog && catalog.keys) || {} };
  for (const seg of path) {
    if (!node) return null;
    const kids = node.children && typeof node.children === "object" ? node.children : null;
    if (seg !== "[]" && kids && Object.prototype.hasOwnProperty.call(kids, seg)) node = kids[seg];
    else if (node.items && typeof node.items === "object") node = node.items;
    else return null;
  }
  return node;
}

/** The value of `name:` among the keys of the mapping that holds line `lineNo` (block or same-line flow). */
export function siblingValue(doc, lineNo, name) {
  const flow = new RegExp(`[{,]\\s*${name}\\s*:\\s*([\\w.-]+)`);
  const own = flow.exec(doc.line(lineNo).text);
  if (own) return own[1];
  const indent = contentIndent(doc.line(lineNo).text);
  const re = new RegExp(`^\\s*(?:-\\s+)?${name}\\s*:\\s*([\\w.-]+)`);
  const look = (n) => {
    const text = doc.line(n).text;
    if (blank(text)) return undefined;
    const m = re.exec(text);
    if (m && contentIndent(text) === indent) return m[1];
    return contentIndent(text) < indent ? null : undefined; // left the mapping
  };
  for (let n = lineNo; n >= 1 && lineNo - n < MAX_SCAN; n--) {
    const v = look(n);
    if (v !== undefined) return v;
    if (n !== lineNo && /^\s*-\s/.test(doc.line(n).text) && contentIndent(doc.line(n).text) === indent) break;
  }
  for (let n = lineNo + 1; n <= doc.lines && n - lineNo < MAX_SCAN; n++) {
    if (/^\s*-\s/.test(doc.line(n).text) && contentIndent(doc.line(n).text) === indent) break;
    const v = look(n);
    if (v !== undefined) return v;
  }
  return null;
}

function byName(list, name) {
  return Array.isArray(list) ? list.find((x) => x && x.name === name) || null : null;
}

/** The probe or action whose `args` mapping holds the context (args of a sensor or a command). */
function argsOwner(catalog, doc, ctx, lineNo) {
  if (ctx.path[ctx.path.length - 1] !== "args") return null;
  // the owner's line: the args mapping's parent; a flow {args: {...}} is on this line
  const holder = ctx.at === "key" && /[{]/.test(doc.line(lineNo).text) ? lineNo : ownerLine(doc, lineNo);
  if (holder === null) return null;
  const probe = siblingValue(doc, holder, "probe");
  if (probe) return byName(catalog.probes, probe);
  const action = siblingValue(doc, holder, "action");
  return action ? byName(catalog.actions, action) : null;
}

function ownerLine(doc, lineNo) {
  const indent = contentIndent(doc.line(lineNo).text);
  for (let n = lineNo - 1; n >= 1 && lineNo - n < MAX_SCAN; n--) {
    const text = doc.line(n).text;
    if (!blank(text) && contentIndent(text) < indent) return n;
  }
  return null;
}

/** Completion options [{label, type, detail, info}] for a context, from the catalog. */
export function completions(catalog, doc, ctx, lineNo) {
  if (!catalog || !ctx) return [];
  if (ctx.at === "value") {
    if (ctx.key === "probe") return (catalog.probes || []).map((p) => opt(p.name, "function", "probe", p.doc));
    if (ctx.key === "action") return (catalog.actions || []).map((a) => opt(a.name, "function", "action", a.doc));
    const owner = argsOwner(catalog, doc, ctx, lineNo);
    const arg = owner ? byName(owner.args, ctx.key) : null;
    const node = arg || nodeAt(catalog, [...ctx.path, ctx.key]);
    const item = node && ctx.list && node.items ? node.items : node;
    if (item && Array.isArray(item.enum)) return item.enum.map((v) => opt(String(v), "enum", item.type, item.doc));
    if (item && item.type === "boolean") return ["true", "false"].map((v) => opt(v, "keyword", "boolean"));
    return [];
  }
  const owner = argsOwner(catalog, doc, ctx, lineNo);
  if (owner) {
    return (owner.args || []).map((a) =>
      opt(a.name, "property", `${a.type || ""}${a.required ? ", required" : ""}`, a.doc),
    );
  }
  const node = nodeAt(catalog, ctx.path);
  if (!node || !node.children || typeof node.children !== "object") return [];
  return Object.entries(node.children).map(([name, n]) => opt(name, "property", n && n.type, n && n.doc));
}

function opt(label, type, detail, info) {
  const o = { label, type };
  if (detail) o.detail = String(detail);
  if (info) o.info = String(info);
  return o;
}

/**
 * Hover documentation for the word at `pos`: {title, doc, args?} or null. A key gets its catalog
 * entry; a probe or action name its description and arguments.
 */
export function hoverDoc(catalog, doc, pos) {
  if (!catalog) return null;
  const line = doc.lineAt(pos);
  const text = line.text;
  let s = pos - line.from;
  let e = s;
  while (s > 0 && /[\w.-]/.test(text[s - 1])) s--;
  while (e < text.length && /[\w.-]/.test(text[e])) e++;
  if (s === e) return null;
  const word = text.slice(s, e);
  const after = text.slice(e);
  if (/^\s*:(\s|$)/.test(after)) {
    const ctx = contextAt(doc, line.from + e);
    if (!ctx || ctx.at !== "key") return null;
    const owner = argsOwner(catalog, doc, ctx, line.number);
    const arg = owner ? byName(owner.args, word) : null;
    if (arg) return { title: `${word} (${arg.type || "argument"} of ${owner.name})`, doc: arg.doc || "", from: line.from + s, to: line.from + e };
    const node = nodeAt(catalog, [...ctx.path, word]);
    if (!node) return null;
    return { title: node.type ? `${word} (${node.type})` : word, doc: node.doc || "", from: line.from + s, to: line.from + e };
  }
  const ctx = contextAt(doc, line.from + e);
  if (ctx && ctx.at === "value" && (ctx.key === "probe" || ctx.key === "action")) {
    const entry = byName(ctx.key === "probe" ? catalog.probes : catalog.actions, word);
    if (!entry) return null;
    return { title: `${ctx.key} ${entry.name}`, doc: entry.doc || "", args: entry.args || [], from: line.from + s, to: line.from + e };
  }
  return null;
}
