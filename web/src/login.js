// The sign-in page: user name and password; wrong password and "too many attempts" are said plainly.
import { api, setSession } from "./api.js";
import { h } from "./dom.js";

/** Where to go after signing in: only a path on this site (never //host or a scheme). */
export function safeNext(raw) {
  if (typeof raw !== "string" || !raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\")) return "/";
  if (raw.startsWith("/login")) return "/";
  return raw;
}

export function renderLogin(root, { navigate, expired }) {
  const params = new URLSearchParams(location.search);
  const next = safeNext(params.get("next"));
  const user = h("input#username", { name: "username", autocomplete: "username", required: true, maxlength: "128" });
  const pass = h("input#password", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    maxlength: "1024",
  });
  const error = h("p#login-error.error", { role: "alert", hidden: true });
  const submit = h("button#login-submit", { type: "submit", text: "Sign in" });
  const form = h(
    "form#login-form.card",
    { novalidate: true },
    h("h1", { text: "Sign in to Pilot" }),
    expired ? h("p#login-note.note", { text: "Please sign in to continue." }) : null,
    h("label", { for: "username", text: "User name" }),
    user,
    h("label", { for: "password", text: "Password" }),
    pass,
    submit,
    error,
  );
  let waitTimer = null;
  const showError = (text) => {
    error.textContent = text;
    error.hidden = false;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    if (!user.value || !pass.value) {
      showError("Enter your user name and password.");
      return;
    }
    submit.disabled = true;
    try {
      const data = await api("POST", "/api/login", { username: user.value, password: pass.value }, { noRedirect: true });
      setSession(data);
      pass.value = "";
      navigate(next, { replace: true });
    } catch (e) {
      pass.value = "";
      if (e.status === 429) {
        let left = e.retryAfter || 60;
        const say = () => showError(`Too many attempts, wait ${left} s.`);
        say();
        clearInterval(waitTimer);
        waitTimer = setInterval(() => {
          left -= 1;
          if (left <= 0) {
            clearInterval(waitTimer);
            submit.disabled = false;
            error.hidden = true;
          } else say();
        }, 1000);
        return; // stays disabled until the wait is over
      }
      if (e.status === 401) showError("Wrong user name or password.");
      else if (e.status) showError(`Sign-in failed (HTTP ${e.status}).`);
      else showError("The console cannot be reached; try again.");
    }
    submit.disabled = false;
  });
  root.appendChild(h("main#login.login", form));
  user.focus();
  return () => clearInterval(waitTimer);
}
