"""Self-signed TLS certificates for the HTTPS stand-in servers of the tests."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def self_signed_certificate(folder: Path, host: str, ip: str | None = None) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for ``host`` (and ``ip``), made with the openssl command; skips the
    test when openssl is not installed."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = f"DNS:{host}" + (f",IP:{ip}" if ip else "")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName={names}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
