"""Throwaway certificates for TLS tests, made with the ``openssl`` command line tool.

    from helpers.certs import make_ca

    ca = make_ca(tmp_path / "pki")
    server = ca.issue("server", server=True)           # SAN 127.0.0.1, localhost
    client = ca.issue("ada", server=False)              # clientAuth
    grpc.ssl_channel_credentials(ca.cert_pem(), client.key_pem(), client.cert_pem())

EC P-256 keys: generating them costs milliseconds. Everything is valid for one day.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPENSSL = "openssl"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        return self.key.read_bytes()


@dataclass(frozen=True)
class CertificateAuthority(KeyPair):
    """A self-signed CA that issues server and client certificates into its directory."""

    directory: Path

    def issue(
        self,
        name: str,
        *,
        server: bool,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> KeyPair:
        key, csr, cert = (self.directory / f"{name}{ext}" for ext in (".key", ".csr", ".pem"))
        _run("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj",
             f"/CN={name}", cwd=self.directory)  # fmt: skip
        san = ",".join(f"IP:{h}" if h[0].isdigit() else f"DNS:{h}" for h in hosts)
        usage = "serverAuth" if server else "clientAuth"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if server else "")
        )
        _run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
             "-CAcreateserial", "-days", "1", "-sha256", "-extfile", str(extensions),
             "-out", str(cert), cwd=self.directory)  # fmt: skip
        return KeyPair(cert, key)

    def issue_dated(
        self, name: str, not_before: datetime, not_after: datetime, *, key_of: KeyPair | None = None
    ) -> KeyPair:
        """A server certificate (SAN 127.0.0.1, localhost) valid from ``not_before`` to
        ``not_after``, made with ``cryptography`` (openssl's ``-days`` cannot date one in the
        past); with ``key_of``, its key file is that pair's (a key that is not this one's)."""
        ca_key = serialization.load_pem_private_key(self.key_pem(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.cert_pem())
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        cert_path, key_path = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_path.write_bytes(key_of.key_pem() if key_of is not None else key_bytes)
        return KeyPair(cert_path, key_path)


def make_ca(directory: Path, name: str = "prgate-test-ca") -> CertificateAuthority:
    """A new CA in ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _run("req", "-x509", *EC_KEY, "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-sha256", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    return CertificateAuthority(cert, key, directory)
