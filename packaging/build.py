#!/usr/bin/env python3
"""Build the pilot-agent .deb and .rpm from one description.

    python3 packaging/build.py deb rpm [--out dist] [--arch amd64|arm64]

(`make deb`, `make rpm`, `make packages` run this.) What goes in:

- the metadata: name, description, licence and Python dependencies from
  pyproject.toml, the version from engine/pilot/__init__.py, the rest from
  packaging/package.toml;
- one payload tree, staged once per format (the unit lives in /lib/systemd/system
  on Debian, /usr/lib/systemd/system on RPM systems):

    /opt/pilot/bin/pilot            launcher: /usr/bin/python3 -I + the libraries below
    /opt/pilot/lib/common/          Pilot and every pure-Python dependency
    /opt/pilot/lib/pythonX.Y/       compiled dependencies (ruamel.yaml.clib, rpds-py, ...)
                                    for each Python in package.toml, from PyPI wheels
    /usr/bin/pilot                  -> /opt/pilot/bin/pilot
    /etc/pilot/pilot.yaml           sample profile (a conffile)
    .../systemd/system/pilot.service
    /usr/lib/sysusers.d/pilot-agent.conf
    /usr/share/doc/pilot-agent/     README, the guides, reference.md (the profile language),
                                    copyright with every bundled library
    /usr/share/man/man1/pilot.1.gz  generated from pilot.cli.build_parser() (pilot.manpage)
    /usr/share/pilot/schemas/       profile.v1.schema.json, pack.v1.schema.json (for editors, CI)
    /usr/share/applications/pilot-settings.desktop   "Pilot settings": `pilot console --open`
    /usr/share/icons/hicolor/scalable/apps/pilot-settings.svg

docs/deploy.md explains why the libraries are bundled rather than taken from the
distribution. Needs: Python 3.11+ with pip (and PyPI, or a mirror pip is set up
for), dpkg-deb for the .deb, rpmbuild (Debian: apt-get install rpm) for the .rpm.
"""

from __future__ import annotations

import argparse
import email.parser
import email.utils
import filecmp
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "packaging"

# Debian architecture -> (wheel platform architecture, RPM architecture)
ARCHES = {"amd64": ("x86_64", "x86_64"), "arm64": ("aarch64", "aarch64")}
DOCS = [
    "README.md",
    "docs/deploy.md",
    "docs/reference.md",
    "docs/configuration.md",
    "docs/service.md",
    "docs/security.md",
    "docs/mqtt.md",
    "docs/validation.md",
    "docs/rules.md",
    "profiles/README.md",
]


def say(message: str) -> None:
    print(f"build.py: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    # pip: no "running as root" lecture (a build as root is normal in CI and containers)
    kwargs.setdefault("env", {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    return subprocess.run(cmd, check=True, **kwargs)


# ---------------------------------------------------------------- metadata


def debian_version(version: str) -> str:
    """PEP 440 -> Debian: pre-releases and dev releases sort before the release (~)."""
    version = re.sub(r"\.?(a|b|rc|dev)(\d*)", r"~\1\2", version)
    return re.sub(r"\.?post(\d*)", r"+post\1", version)


@dataclass
class Meta:
    name: str
    version: str  # as Python sees it: 0.1.0
    revision: str  # packaging revision: 1
    summary: str
    description: str  # long description, plain paragraphs
    license: str
    maintainer: str
    homepage: str
    section: str
    requires_python: str
    dependencies: list[str]
    extras: list[str]
    pythons: list[str]
    platforms: list[str]
    deb: dict = field(default_factory=dict)
    rpm: dict = field(default_factory=dict)

    @property
    def pkg_version(self) -> str:
        return debian_version(self.version)  # valid for RPM's Version: too (~ sorts the same)

    @property
    def deb_full_version(self) -> str:
        return f"{self.pkg_version}-{self.revision}"


def load_meta(pythons: list[str] | None = None) -> Meta:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pkg = tomllib.loads((HERE / "package.toml").read_text(encoding="utf-8"))
    init = (REPO / "engine" / "pilot" / "__init__.py").read_text(encoding="utf-8")
    version = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", init, re.M).group(1)
    lic = project.get("license")
    lic = lic.get("text") if isinstance(lic, dict) else lic
    return Meta(
        name=project["name"],
        version=version,
        revision=str(pkg["package"]["revision"]),
        summary=pkg["package"]["summary"],
        description=project["description"] + "\n\n" + pkg["package"]["long_description"].strip(),
        license=lic,
        maintainer=pkg["package"]["maintainer"],
        homepage=pkg["package"].get("homepage", ""),
        section=pkg["package"]["section"],
        requires_python=project.get("requires-python", ""),
        dependencies=project.get("dependencies", []),
        extras=pkg["python"].get("extras", []),
        pythons=pythons or pkg["python"]["versions"],
        platforms=pkg["python"]["platforms"],
        deb=pkg.get("deb", {}),
        rpm=pkg.get("rpm", {}),
    )


def wrapped(text: str, width: int = 72) -> str:
    """Paragraphs re-flowed to `width`, separated by one empty line."""
    return "\n\n".join("\n".join(textwrap.wrap(" ".join(p.split()), width)) for p in text.split("\n\n"))


def next_minor(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}"


# ---------------------------------------------------------------- Python payload


SOURCES = ["pyproject.toml", "setup.py", "README.md", "engine", "schemas", "profiles"]


def build_wheel(work: Path) -> Path:
    """Build from a copy: setuptools writes build/ and *.egg-info into the tree it builds."""
    src, out = work / "src", work / "wheel"
    for path in (src, out):
        shutil.rmtree(path, ignore_errors=True)
    src.mkdir(parents=True)
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(REPO / name, src / name)
    say("building the Pilot wheel")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        stdout=subprocess.DEVNULL,
    )
    return next(out.glob("*.whl"))


def vendor(meta: Meta, wheel: Path, lib: Path, arch: str) -> None:
    """Install Pilot and its dependencies for each Python into lib/pythonX.Y, then move
    what is the same for every version into lib/common."""
    shutil.rmtree(lib, ignore_errors=True)
    wheel_arch = ARCHES[arch][0]
    requirement = f"{wheel}[{','.join(meta.extras)}]" if meta.extras else str(wheel)
    for version in meta.pythons:
        target = lib / f"python{version}"
        tag = version.replace(".", "")
        say(f"installing Pilot and its dependencies for CPython {version} ({wheel_arch})")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-warn-script-location",
            "--target",
            str(target),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            version,
            "--abi",
            f"cp{tag}",
        ]
        for platform in meta.platforms:
            cmd += ["--platform", platform.format(arch=wheel_arch)]
        run(cmd + [requirement], stdout=subprocess.DEVNULL)
        shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts with this build's interpreter
    dedupe(lib, [lib / f"python{v}" for v in meta.pythons])
    normalise_modes(lib)


def same_tree(a: Path, b: Path) -> bool:
    if a.is_file() or b.is_file():
        return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    if any(not filecmp.cmp(a / f, b / f, shallow=False) for f in cmp.common_files):
        return False
    return all(same_tree(a / d, b / d) for d in cmp.common_dirs)


def dedupe(lib: Path, targets: list[Path]) -> None:
    """Top-level entries (a package, a module, a .dist-info) identical in every target go to
    lib/common. Whole entries only: a package split between two path entries would not import."""
    common = lib / "common"
    common.mkdir(parents=True, exist_ok=True)
    first, others = targets[0], targets[1:]
    if not others:
        return  # one Python: nothing to share
    for entry in sorted(first.iterdir()):
        if all((o / entry.name).exists() and same_tree(entry, o / entry.name) for o in others):
            entry.rename(common / entry.name)
            for o in others:
                path = o / entry.name
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def normalise_modes(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def bundled(lib: Path) -> list[tuple[str, str, str, Path]]:
    """(name, version, licence, dist-info folder) of every installed distribution."""
    found = {}
    for info in sorted(lib.glob("*/*.dist-info")):
        meta = email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"), headersonly=True)
        lic = meta.get("License-Expression") or ""
        if not lic:
            classifiers = [
                c.rsplit("::", 1)[1].strip()
                for c in meta.get_all("Classifier") or []
                if c.startswith("License ::") and c.count("::") >= 2
            ]
            short = (meta.get("License") or "").strip()
            lic = "; ".join(classifiers) or (
                short if short and "\n" not in short and len(short) < 60 else "see METADATA"
            )
        found.setdefault(meta["Name"], (meta["Name"], meta["Version"], lic, info))
    return sorted(found.values(), key=lambda t: t[0].lower())


# ---------------------------------------------------------------- staging


def copyright_text(meta: Meta, lib: Path, payload_lib: str) -> str:
    lines = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        f"Upstream-Name: {meta.name}",
        "",
        "Files: *",
        "Copyright: the Pilot authors",
        f"License: {meta.license}",
        "",
        "Bundled Python libraries (/opt/pilot/lib), unchanged from their PyPI wheels;",
        "each one's licence text is in its .dist-info folder:",
        "",
    ]
    for name, version, lic, info in bundled(lib):
        if name == meta.name:
            continue
        where = info.relative_to(lib)
        if where.parts[0] != "common":
            where = Path("python3.*", *where.parts[1:])  # one copy per Python version
        lines.append(f"  {name} {version}: {lic}  ({payload_lib}/{where})")
    if meta.license == "Apache-2.0":
        lines += [
            "",
            "License: Apache-2.0",
            " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.",
        ]
    return "\n".join(lines) + "\n"


def stage(meta: Meta, lib: Path, payload: Path, unitdir: str) -> None:
    """The files of the package, laid out under `payload` as they will be installed."""
    shutil.rmtree(payload, ignore_errors=True)
    opt = payload / "opt" / "pilot"
    (opt / "bin").mkdir(parents=True)
    shutil.copytree(lib, opt / "lib", symlinks=True)
    launcher = (HERE / "launcher.py").read_text(encoding="utf-8").replace("@VERSIONS@", repr(tuple(meta.pythons)))
    (opt / "bin" / "pilot").write_text(launcher, encoding="utf-8")
    (opt / "bin" / "pilot").chmod(0o755)

    (payload / "usr" / "bin").mkdir(parents=True)
    (payload / "usr" / "bin" / "pilot").symlink_to("/opt/pilot/bin/pilot")  # absolute: Debian policy 10.5

    units = payload / unitdir.lstrip("/")
    units.mkdir(parents=True)
    shutil.copy(HERE / "pilot.service", units / "pilot.service")
    sysusers = payload / "usr" / "lib" / "sysusers.d"
    sysusers.mkdir(parents=True)
    shutil.copy(HERE / "pilot-agent.sysusers", sysusers / "pilot-agent.conf")

    (payload / "etc" / "pilot").mkdir(parents=True)
    shutil.copy(HERE / "pilot.yaml", payload / "etc" / "pilot" / "pilot.yaml")

    doc = payload / "usr" / "share" / "doc" / meta.name
    doc.mkdir(parents=True)
    for name in DOCS:
        if (REPO / name).is_file():
            target = "profiles.md" if name == "profiles/README.md" else Path(name).name
            shutil.copy(REPO / name, doc / target)
    (doc / "copyright").write_text(copyright_text(meta, lib, "/opt/pilot/lib"), encoding="utf-8")

    write_gzip(payload / "usr" / "share" / "man" / "man1" / "pilot.1.gz", manpage())
    # "Pilot settings" in the desktop's menu: `pilot console --open`, a console for this machine only
    apps = payload / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    shutil.copy(HERE / "pilot-settings.desktop", apps / "pilot-settings.desktop")
    icons = payload / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps"
    icons.mkdir(parents=True)
    shutil.copy(HERE / "pilot-settings.svg", icons / "pilot-settings.svg")
    schemas = payload / "usr" / "share" / "pilot" / "schemas"
    schemas.mkdir(parents=True)
    for schema in sorted((REPO / "schemas").glob("*.schema.json")):
        shutil.copy(schema, schemas / schema.name)
    normalise_modes(payload)
    (opt / "bin" / "pilot").chmod(0o755)


def manpage(date: str | None = None) -> str:
    """pilot(1), generated from this tree's argument parser (pilot.manpage; standard library only, so any
    Python 3.11+ runs it, whatever the Pythons the package carries)."""
    cmd = [sys.executable, "-m", "pilot.manpage"] + (["--date", date] if date else [])
    env = {**os.environ, "PYTHONPATH": str(REPO / "engine"), "PYTHONDONTWRITEBYTECODE": "1"}
    return run(cmd, env=env, capture_output=True, text=True).stdout


def write_gzip(path: Path, text: str) -> None:
    """gzip -9n: no name, no time stamp (reproducible; what Debian policy asks of manual pages)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def installed_size_kib(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_symlink() or path.is_dir():
            total += 1024 if path.is_dir() else 0
        else:
            total += (path.stat().st_size + 1023) // 1024 * 1024
    return total // 1024


# ---------------------------------------------------------------- .deb


def deb_control(meta: Meta, arch: str, size: int) -> str:
    low, high = meta.pythons[0], next_minor(meta.pythons[-1])
    depends = [f"python3 (>= {low})", f"python3 (<< {high})", *meta.deb.get("depends", [])]
    fields = [
        ("Package", meta.name),
        ("Version", meta.deb_full_version),
        ("Architecture", arch),
        ("Maintainer", meta.maintainer),
        ("Installed-Size", str(size)),
        ("Depends", ", ".join(depends)),
        ("Recommends", ", ".join(meta.deb.get("recommends", []))),
        ("Suggests", ", ".join(meta.deb.get("suggests", []))),
        ("Section", meta.section),
        ("Priority", "optional"),
        ("Homepage", meta.homepage),
    ]
    text = "".join(f"{k}: {v}\n" for k, v in fields if v)
    body = [" " + line if line else " ." for line in wrapped(meta.description).splitlines()]
    return text + f"Description: {meta.summary}\n" + "\n".join(body) + "\n"


def write_changelog(meta: Meta, path: Path) -> None:
    """The one-entry changelog Debian tools expect; the date is SOURCE_DATE_EPOCH's when set."""
    when = email.utils.formatdate(float(os.environ.get("SOURCE_DATE_EPOCH", time.time())))
    text = (
        f"{meta.name} ({meta.deb_full_version}) unstable; urgency=medium\n\n"
        f"  * Pilot {meta.version}, packaged by packaging/build.py.\n\n -- {meta.maintainer}  {when}\n"
    )
    write_gzip(path, text)
    path.chmod(0o644)


def build_deb(meta: Meta, lib: Path, work: Path, out: Path, arch: str) -> Path:
    root = work / "deb"
    stage(meta, lib, root, "/lib/systemd/system")
    write_changelog(meta, root / "usr" / "share" / "doc" / meta.name / "changelog.Debian.gz")
    control = root / "DEBIAN"
    control.mkdir()
    conffiles = ["/etc/pilot/pilot.yaml"]
    sums = []  # of every file but the conffiles, which dpkg tracks itself (as dh_md5sums does)
    for path in sorted(root.rglob("*")):
        if (
            path.is_file()
            and not path.is_symlink()
            and control not in path.parents
            and f"/{path.relative_to(root)}" not in conffiles
        ):
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            sums.append(f"{digest}  {path.relative_to(root)}\n")
    (control / "md5sums").write_text("".join(sums), encoding="utf-8")
    (control / "control").write_text(deb_control(meta, arch, installed_size_kib(root)), encoding="utf-8")
    (control / "conffiles").write_text("".join(f"{c}\n" for c in conffiles), encoding="utf-8")
    for script in ("postinst", "prerm", "postrm"):
        shutil.copy(HERE / "deb" / script, control / script)
        (control / script).chmod(0o755)
    for name in ("md5sums", "control", "conffiles"):
        (control / name).chmod(0o644)
    control.chmod(0o755)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{meta.name}_{meta.deb_full_version}_{arch}.deb"
    say(f"writing {deb}")
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z6", "--build", str(root), str(deb)], stdout=subprocess.DEVNULL)
    return deb


# ---------------------------------------------------------------- .rpm


def rpm_spec(meta: Meta, payload: Path, rpm_arch: str) -> str:
    low, high = meta.pythons[0], next_minor(meta.pythons[-1])
    # python3 itself where it is new enough (Fedora), else one of the versioned ones (RHEL 9's python3.11)
    alternatives = [f"(python3 >= {low} with python3 < {high})"] + [f"python{v}" for v in meta.pythons]
    requires = [f"({' or '.join(alternatives)})", *meta.rpm.get("requires", [])]
    template = (HERE / "pilot.spec.in").read_text(encoding="utf-8")
    values = {
        "NAME": meta.name,
        "VERSION": meta.pkg_version,
        "RELEASE": meta.revision,
        "SUMMARY": meta.summary,
        "LICENSE": meta.license,
        "URL": meta.homepage or "(none)",
        "ARCH": rpm_arch,
        "PAYLOAD": str(payload),
        "REQUIRES": "\n".join(f"Requires: {r}" for r in requires),
        "RECOMMENDS": "\n".join(f"Recommends: {r}" for r in meta.rpm.get("recommends", [])),
        "DESCRIPTION": wrapped(meta.description),
        "PACKAGER": meta.maintainer,
    }
    if not meta.homepage:
        template = template.replace("URL: @URL@\n", "")
    return re.sub(r"@([A-Z]+)@", lambda m: values[m.group(1)], template)


def build_rpm(meta: Meta, lib: Path, work: Path, out: Path, arch: str) -> Path:
    rpmbuild = shutil.which("rpmbuild")
    if not rpmbuild:
        raise SystemExit("build.py: rpmbuild not found (Debian/Ubuntu: apt-get install rpm)")
    rpm_arch = ARCHES[arch][1]
    payload = work / "rpm-payload"
    stage(meta, lib, payload, "/usr/lib/systemd/system")
    top = work / "rpmbuild"
    shutil.rmtree(top, ignore_errors=True)
    for sub in ("SPECS", "RPMS", "BUILD", "BUILDROOT", "SOURCES", "SRPMS"):
        (top / sub).mkdir(parents=True)
    spec = top / "SPECS" / f"{meta.name}.spec"
    spec.write_text(rpm_spec(meta, payload, rpm_arch), encoding="utf-8")
    say(f"running rpmbuild ({rpm_arch})")
    run(
        [
            rpmbuild,
            "-bb",
            "--nodeps",
            "--quiet",
            "--target",
            rpm_arch,
            "--define",
            f"_topdir {top}",
            "--define",
            "_build_id_links none",
            "--define",
            "_binary_payload w6.xzdio",
            str(spec),
        ],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "LC_ALL": "C"},
    )
    built = next((top / "RPMS").rglob("*.rpm"))
    out.mkdir(parents=True, exist_ok=True)
    target = out / built.name
    shutil.copy(built, target)
    say(f"writing {target}")
    return target


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the pilot-agent .deb and/or .rpm.")
    parser.add_argument("formats", nargs="+", choices=["deb", "rpm"])
    parser.add_argument("--out", default=str(REPO / "dist"), help="where the packages go (default: dist/)")
    parser.add_argument("--work", default=str(REPO / "build" / "packaging"), help="scratch folder")
    parser.add_argument("--arch", default="amd64", choices=sorted(ARCHES), help="Debian architecture name")
    parser.add_argument("--pythons", help="comma-separated Python versions to carry (default: package.toml)")
    args = parser.parse_args(argv)

    meta = load_meta(args.pythons.split(",") if args.pythons else None)
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", meta.requires_python.strip())
    for version in meta.pythons:
        if floor and tuple(map(int, version.split("."))) < (int(floor.group(1)), int(floor.group(2))):
            raise SystemExit(f"build.py: Python {version} is older than requires-python {meta.requires_python}")
    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    if "deb" in args.formats and not shutil.which("dpkg-deb"):
        raise SystemExit("build.py: dpkg-deb not found")
    if "rpm" in args.formats and not shutil.which("rpmbuild"):
        raise SystemExit("build.py: rpmbuild not found (Debian/Ubuntu: apt-get install rpm)")
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        raise SystemExit(
            f"build.py: {sys.executable} has no pip (Debian: apt-get install python3-pip, "
            "or run it with a virtual environment's python)"
        )
    work.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(work)
    lib = work / "lib"
    vendor(meta, wheel, lib, args.arch)
    made = []
    if "deb" in args.formats:
        made.append(build_deb(meta, lib, work, out, args.arch))
    if "rpm" in args.formats:
        made.append(build_rpm(meta, lib, work, out, args.arch))
    for path in made:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
