// DOM helpers. Device data comes from anyone on the broker, so it only ever reaches the page as text:
// these helpers create elements and set textContent, never innerHTML.

const specs = new Map(); // "li.device.online" -> {tag, cls, id}: parsed once, a fleet page makes 25,000 elements

function parseSpec(spec) {
  let p = specs.get(spec);
  if (p === undefined) {
    const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
    const cls = [];
    let id = "";
    for (const part of ((m && m[2]) || "").match(/[.#][\w-]+/g) || []) {
      if (part[0] === ".") cls.push(part.slice(1));
      else id = part.slice(1);
    }
    p = { tag: (m && m[1]) || "div", cls: cls.join(" "), id };
    if (specs.size < 1000) specs.set(spec, p);
  }
  return p;
}

/** h("div.cls#id", {attrs}, ...children): an element; string children become text nodes. */
export function h(spec, attrs, ...children) {
  const p = parseSpec(spec);
  const el = document.createElement(p.tag);
  if (p.cls) el.className = p.cls;
  if (p.id) el.id = p.id;
  if (attrs instanceof Node || Array.isArray(attrs) || typeof attrs !== "object") {
    children.unshift(attrs); // no attributes: the second argument is a child
    attrs = null;
  }
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === "text") el.textContent = String(v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "className") el.className = v;
      else if (k in el && typeof v !== "string") el[k] = v;
      else if (k === "style") throw new Error("no style attributes (CSP): use classes or element.style");
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function setText(el, text) {
  const s = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== s) el.textContent = s;
}
