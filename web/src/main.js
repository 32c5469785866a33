// The console's one-page app: routes on location.pathname (/, /devices/<id>, /editor, /login) with
// history.pushState; a header with the signed-in user, and a banner while the broker or the live
// stream is away. The editor (CodeMirror) is a dynamic import: only /editor downloads it.
import "./style.css";
import { api, session, setSession, loginUrl, canCommand } from "./api.js";
import { h, clear } from "./dom.js";
import { Live } from "./live.js";
import { FleetPage } from "./fleet.js";
import { DevicePage } from "./device.js";
import { renderLogin } from "./login.js";

const app = document.getElementById("app");
let page = null;
let live = null;
let cleanupLogin = null;
const status = { broker: null, stream: true };

const userEl = h("span#user.muted");
const editorLink = h("a#nav-editor.nav", {
  href: "/editor",
  text: "Profile editor",
  hidden: true,
  on: { click: (ev) => { ev.preventDefault(); navigate("/editor"); } },
});
const signOut = h("button#signout", { type: "button", text: "Sign out", hidden: true });
const banner = h("div#banner.banner", { role: "alert", hidden: true });
const header = h(
  "header#top.top",
  h("a.brand", { href: "/", text: "Pilot console", on: { click: (ev) => { ev.preventDefault(); navigate("/"); } } }),
  editorLink,
  h("div.spacer"),
  userEl,
  signOut,
);
const content = h("div#content");
document.body.prepend(header, banner);
app.appendChild(content);

function renderBanner() {
  let text = "";
  let kind = "";
  if (!status.stream) {
    text = "Live updates lost: reconnecting…";
    kind = "stream";
  } else if (status.broker && status.broker.connected === false) {
    const since = status.broker.since ? ` since ${new Date(status.broker.since * 1000).toLocaleTimeString()}` : "";
    text = `The console is disconnected from the MQTT broker${since}; values shown may be stale.`;
    kind = "broker";
  }
  banner.textContent = text;
  banner.dataset.kind = kind;
  banner.hidden = !text;
}

function onBroker(b) {
  if (b && typeof b === "object") {
    status.broker = b;
    renderBanner();
  }
}

function renderUser() {
  userEl.textContent = session.user ? `${session.user} (${session.role})` : session.role ? `anonymous (${session.role})` : "";
  signOut.hidden = !session.user;
  editorLink.hidden = !canCommand();
}

signOut.addEventListener("click", async () => {
  signOut.disabled = true;
  try {
    await api("POST", "/api/logout", undefined, { noRedirect: true });
  } catch {
    /* signed out anyway below */
  }
  signOut.disabled = false;
  setSession(null);
  renderUser();
  navigate("/login", { replace: true });
});

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

function stopPage() {
  if (page) page.destroy();
  page = null;
  if (cleanupLogin) cleanupLogin();
  cleanupLogin = null;
  clear(content);
}

function startLive(current) {
  stopLive();
  live = new Live({
    url: () => {
      const q = new URLSearchParams();
      if (current.id !== undefined) q.set("device", current.id);
      if (current.cursor !== undefined && current.cursor !== null) q.set("cursor", String(current.cursor));
      const qs = q.toString();
      return qs ? `/api/events?${qs}` : "/api/events";
    },
    onUpdate: (data) => {
      if (data.broker) onBroker(data.broker);
      if (page === current) {
        if (Number.isInteger(data.cursor)) current.cursor = data.cursor;
        current.update(data);
      }
    },
    onResync: () => {
      if (page === current) current.load().catch(() => {});
    },
    onStatus: (up) => {
      status.stream = up;
      renderBanner();
    },
  });
  live.start();
}

function stopLive() {
  if (live) live.stop();
  live = null;
  status.stream = true;
  renderBanner();
}

async function route() {
  const path = location.pathname;
  stopPage();
  document.body.dataset.page = "";
  document.body.dataset.ready = "";
  if (path === "/login") {
    stopLive();
    document.body.dataset.page = "login";
    document.title = "Sign in · Pilot console";
    const expired = new URLSearchParams(location.search).has("next");
    cleanupLogin = renderLogin(content, { navigate, expired });
    document.body.dataset.ready = "1";
    return;
  }
  if (!session.role) {
    try {
      setSession(await api("GET", "/api/session"));
    } catch (e) {
      if (e.status !== 401) content.appendChild(h("p.error", { text: `The console cannot be reached: ${e.message}` }));
      return; // a 401 is already on its way to /login
    }
  }
  renderUser();
  if (path === "/editor" || path === "/editor/") {
    document.body.dataset.page = "editor";
    document.title = "Profile editor · Pilot console";
    let EditorPage;
    try {
      ({ EditorPage } = await import("./editor.js"));
    } catch (e) {
      content.appendChild(h("p.error", { text: `Could not load the editor: ${e.message}` }));
      return;
    }
    if (location.pathname !== path) return; // navigated away while it loaded
    await startPage(new EditorPage(content, { navigate, onBroker }));
    return;
  }
  const m = /^\/devices\/([^/]+)\/?$/.exec(path);
  let id = null;
  if (m) {
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      id = m[1];
    }
  }
  document.body.dataset.page = id !== null ? "device" : "fleet";
  document.title = id !== null ? `${id} · Pilot console` : "Fleet · Pilot console";
  await startPage(id !== null ? new DevicePage(content, id, { navigate, onBroker }) : new FleetPage(content, { navigate, onBroker }), id);
}

async function startPage(mine, id = null) {
  page = mine;
  try {
    await page.load();
    if (id !== null && page === mine && page.d) document.title = `${page.d.name || id} · Pilot console`;
  } catch (e) {
    if (e.status !== 401 && page === mine) content.appendChild(h("p.error", { text: `Could not load: ${e.message}` }));
  }
  if (page === mine) startLive(mine);
  if (page === mine) document.body.dataset.ready = "1";
}

window.addEventListener("popstate", route);
export { loginUrl };
route();
