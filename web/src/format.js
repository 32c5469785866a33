// Formatting of times and values for display (text only).

export function relTime(ts, now = Date.now() / 1000) {
  if (ts === null || ts === undefined || !isFinite(ts)) return "never";
  const d = Math.max(0, now - ts);
  if (d < 5) return "just now";
  if (d < 60) return `${Math.floor(d)} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return `${Math.floor(d / 86400)} d ago`;
}

export function absTime(ts) {
  if (ts === null || ts === undefined || !isFinite(ts)) return "";
  return new Date(ts * 1000).toLocaleString();
}

export function fmtValue(value, unit) {
  if (value === null || value === undefined || value === "") return "—";
  let s;
  if (typeof value === "number") {
    s = Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
  } else if (typeof value === "string" && /^-?\d+\.\d{3,}$/.test(value)) {
    s = String(Math.round(parseFloat(value) * 100) / 100);
  } else {
    s = typeof value === "string" ? value : JSON.stringify(value);
  }
  if (s.length > 200) s = s.slice(0, 200) + "…";
  return unit ? `${s} ${unit}` : s;
}

export function isNumeric(value) {
  if (typeof value === "number") return isFinite(value);
  return typeof value === "string" && value.trim() !== "" && isFinite(Number(value));
}

// What each refusal means, in plain English (reason codes of docs/security.md and the console's own).
const REASONS = {
  not_allowed: "This command is not allowed on the device (it is not in the profile's allowlist).",
  cooldown: "The command is cooling down after its last run; try again later.",
  confirm_expired: "The confirmation window passed; press again to arm it anew.",
  rate_limited: "Too many commands on this device in a short time; wait a moment.",
  busy: "The command is still running (or the device is running four actions already).",
  unauthorized: "The device did not accept the console's signature (unknown, revoked or expired key).",
  expired: "The signed command arrived outside the device's time window; check both clocks.",
  replayed: "The device had already seen this signed command and refused to run it twice.",
  malformed: "The device could not read the command.",
  too_large: "The command was larger than the device accepts.",
  retained: "The message was retained on the broker, so the device ignored it.",
  bad_value: "The device refused this value (out of range, not one of the options, or the wrong length).",
  unavailable: "The device cannot run commands right now (it is stopping, or its keyring is unusable).",
  exit_status: "The program run by the command exited with an error.",
  forbidden: "Your role may not send commands (viewers can only read).",
  offline: "The device is offline.",
  no_key: "The console has no signing key for this signed command.",
  unknown_command: "The device does not know this command.",
  csrf: "The page's security token is stale; reload the page.",
  console_has_no_key: "The console has no signing key for this signed command (see signing.keyring).",
  broker_unavailable: "The console is not connected to the MQTT broker.",
  // a profile deploy's (the agent's deployer)
  invalid_profile: "The profile does not validate.",
  start_failed: "The new profile did not start on the device, so its old one runs again.",
  broker_unreachable: "The new MQTT settings reached no broker, so the device went back to its old profile.",
};

export function reasonText(code) {
  if (!code) return "No reason given.";
  return REASONS[code] || `Refused (${code}).`;
}
