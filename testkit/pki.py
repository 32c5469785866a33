"""Certificates for TLS tests, made with the openssl CLI: CAs, leaf certificates, an expired one."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        cwd=d,
    )


def make_csr(d: Path, name: str, san: str) -> None:
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        cwd=d,
    )
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")


def make_cert(d: Path, ca: str, name: str, san: str) -> None:
    make_csr(d, name, san)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=d,
    )


def make_expired_cert(d: Path, ca: str, name: str, san: str) -> None:
    """Valid CA, right names, validity 2020-01-01 to 2020-01-02 (`openssl ca` takes explicit dates)."""
    make_csr(d, name, san)
    (d / f"{ca}-ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
        "serial = serial.txt\ndefault_md = sha256\npolicy = p\n[p]\n"
        "commonName = supplied\n"
    )
    (d / "index.txt").touch()
    if not (d / "serial.txt").exists():
        (d / "serial.txt").write_text("1000\n")
    openssl(
        "ca",
        "-batch",
        "-config",
        f"{ca}-ca.cnf",
        "-cert",
        f"{ca}.crt",
        "-keyfile",
        f"{ca}.key",
        "-in",
        f"{name}.csr",
        "-out",
        f"{name}.crt",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
        "-extfile",
        f"{name}.ext",
        cwd=d,
    )
