"""`pilot check` against a real Mosquitto with a password, with probes and actions judged on a sysfs
tree the test controls (PILOT_SYSFS_ROOT) and installed privilege files under --root."""

from __future__ import annotations

import subprocess
import sys

from testkit.agent import pilot_env
from tests.live.newcomer.conftest import write_password


def check(*args: str, sysfs=None) -> subprocess.CompletedProcess:
    env = pilot_env({"PILOT_SYSFS_ROOT": str(sysfs)} if sysfs else None)
    return subprocess.run(
        [sys.executable, "-m", "pilot", "check", *args], capture_output=True, text=True, env=env, timeout=60
    )


def write(tmp_path, body: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text("pilot: 1\ndevice: {id: checkrig, name: Check rig}\n" + body)
    return path


SENSORS = "sensors:\n  cpu: {probe: cpu.percent, every: 10s}\n  mem: {probe: memory.used_percent, every: 10s}\n"
NOTE = "commands:\n  note: {action: mqtt.publish, args: {topic: note}, policy: {cooldown: 5m}}\n"


def test_all_is_well_with_a_password_broker(auth_broker, tmp_path):
    _, port = auth_broker
    secret = write_password(tmp_path)
    path = write(
        tmp_path,
        f"mqtt: {{host: 127.0.0.1, port: {port}, username: pilot, password_file: {secret}}}\n" + SENSORS + NOTE,
    )
    done = check(str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "[ ok ] valid: device 'Check rig' (checkrig)" in out
    assert f"[ ok ] mqtt.password_file {secret}: readable (mode 0600)" in out
    assert f"[ ok ] 127.0.0.1:{port}: connected and logged in as pilot, MQTT 3.1.1 (mosquitto version" in out
    assert "[ ok ] no command needs a privilege" in out
    assert "[ ok ] 2 sensor(s) work here: cpu, mem" in out
    assert "[ ok ] note (mqtt.publish): cooldown 5 min" in out
    assert "All is well" in out


def test_wrong_password_and_open_password_file_are_reported(auth_broker, tmp_path):
    _, port = auth_broker
    secret = write_password(tmp_path, "not it")
    secret.chmod(0o644)
    path = write(
        tmp_path, f"mqtt: {{host: 127.0.0.1, port: {port}, username: pilot, password_file: {secret}}}\n" + SENSORS
    )
    done = check(str(path))
    assert done.returncode == 1
    assert "[warn] mqtt.password_file" in done.stdout and f"chmod 600 {secret}" in done.stdout
    assert "[FAIL] 127.0.0.1" in done.stdout and "user name or password is wrong" in done.stdout
    assert "1 problem(s) would stop something from working" in done.stdout


def test_missing_files_unreachable_broker_and_web_server(tmp_path, http_server, closed_port):
    path = write(
        tmp_path,
        f"mqtt: {{host: 127.0.0.1, port: {http_server.port}, tls: {{ca_file: {tmp_path / 'ca.pem'}}}}}\n"
        + SENSORS
        + f"policies: {{hmac: {{keyring: {tmp_path / 'keyring'}}}}}\n",
    )
    done = check(str(path))
    assert done.returncode == 1
    assert f"[FAIL] mqtt.tls.ca_file {tmp_path / 'ca.pem'}: does not exist" in done.stdout
    assert f"[FAIL] policies.hmac.keyring {tmp_path / 'keyring'}: does not exist" in done.stdout
    assert "pilot keygen --keyring PATH" in done.stdout
    plain = check(str(write(tmp_path, f"mqtt: {{host: 127.0.0.1, port: {http_server.port}}}\n" + SENSORS, "h.yaml")))
    assert "is a web server, not an MQTT broker" in plain.stdout and plain.returncode == 1
    closed = check(
        str(write(tmp_path, "mqtt: {host: 127.0.0.1}\n" + SENSORS, "c.yaml")), "--broker", f"127.0.0.1:{closed_port}"
    )
    assert "nothing is listening" in closed.stdout and closed.returncode == 1


def test_invalid_profile_stops_with_positions(tmp_path):
    path = write(tmp_path, "sensors:\n  cpu: {probe: cpu.percnt, every: 10s}\n")
    done = check(str(path))
    assert done.returncode == 1
    assert f"{path}:4:" in done.stdout and "[FAIL] the profile is not valid" in done.stdout


def test_unavailable_sensors_actions_and_rules_that_can_never_fire(tmp_path, auth_broker):
    broker, _ = auth_broker
    sysfs = tmp_path / "sys"  # an empty sysfs: no thermal sensor, no backlight, no battery
    sysfs.mkdir()
    path = write(
        tmp_path,
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
        "sensors:\n"
        "  cpu: {probe: cpu.percent, every: 10s}\n"
        "  temp: {probe: thermal.cpu, every: 10s, optional: true}\n"
        "  battery: {probe: battery.level, every: 1m}\n"
        "  hot: {expr: 'temp > 90', platform: binary_sensor}\n"
        "commands:\n"
        "  dim: {action: display.brightness, platform: number, min: 0, max: 100}\n"
        "rules:\n"
        "  cool_down: {when: 'temp > 95', do: [{command: dim, value: 10}]}\n"
        "  busy: {when: 'cpu > 99', do: [{command: dim, value: 20}]}\n",
    )
    done = check(str(path), sysfs=sysfs)
    out = done.stdout
    assert done.returncode == 1, out
    assert "[skip] temp (thermal.cpu):" in out
    assert "[FAIL] battery (battery.level): unavailable here: no battery" in out
    assert "[skip] hot (derived): reads temp, which has no value here" in out
    assert "[FAIL] dim (display.brightness): unavailable here: no backlight" in out
    assert "[warn] rule cool_down can never fire here: it reads temp" in out
    assert "[FAIL] rule busy: its step `command: dim` fails here" in out


def test_privileges_compared_with_the_installed_polkit_rule(tmp_path):
    path = write(tmp_path, SENSORS + "commands:\n  reboot: {action: power.reboot, policy: {confirm: 20s}}\n")
    root = tmp_path / "root"
    rule = root / "etc/polkit-1/rules.d/50-pilot.rules"
    missing = check(str(path), "--root", str(root))
    assert "[info] command reboot needs org.freedesktop.login1.reboot" in missing.stdout
    assert "[warn] /etc/polkit-1/rules.d/50-pilot.rules is not installed" in missing.stdout

    printed = subprocess.run(
        [sys.executable, "-m", "pilot", "privileges", "--polkit", str(path)],
        capture_output=True,
        text=True,
        env=pilot_env(),
        check=True,
    ).stdout
    rule.parent.mkdir(parents=True)
    rule.write_text(printed)
    installed = check(str(path), "--root", str(root))
    assert "[ ok ] /etc/polkit-1/rules.d/50-pilot.rules is installed and grants exactly" in installed.stdout

    rule.write_text(printed.replace("pilot", "someone"))
    stale = check(str(path), "--root", str(root))
    assert "[warn] /etc/polkit-1/rules.d/50-pilot.rules differs from what `pilot privileges` prints" in stale.stdout
