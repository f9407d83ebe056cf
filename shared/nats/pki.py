"""The leaf link's certificates: a CA, the hub's leaf-port certificate and one client certificate per edge.

The hub's leaf port speaks TLS and asks every edge for a certificate signed by the fleet's leaf CA
(mutual TLS, ``verify: true``), on top of the edge's password; each edge trusts only that CA for the
hub. ``xiaozhi-cloud nats-config`` keeps everything under ``<out>/tls/`` (:class:`LeafPki`):

    tls/ca.pem, tls/ca.key                   the CA (the key never leaves the admin's machine)
    tls/hub/leaf.pem, tls/hub/leaf.key       the hub's leaf-port certificate (what the hub mounts)
    tls/hub/ca.pem                           the CA certificate again, next to it (one directory to mount)
    tls/hub/client.pem, tls/hub/client.key   the hub's client-port certificate (``nats-config --client-tls``)
    tls/edges/<edge>.pem, <edge>.key         each edge's client certificate, CN = the edge id

Files that exist are kept (re-running must not lock out deployed edges): a certificate is issued again
only when it is missing, not signed by the current CA, expiring within :data:`RENEW_BEFORE_DAYS`, or
(the hub's) not valid for a name the edges (for the client port: the cloud's processes) dial. Keys are
ECDSA P-256, PKCS#8 PEM, mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_DAYS",
    "DEFAULT_LEAF_HOSTS",
    "EDGE_DAYS",
    "HUB_DAYS",
    "RENEW_BEFORE_DAYS",
    "LeafPki",
    "PkiError",
    "TlsFiles",
    "cert_hosts",
    "check_ca",
    "copy_key",
    "issue",
    "load_cert",
    "load_key",
    "new_ca",
    "write_cert",
    "write_key",
]

CA_DAYS = 3650
HUB_DAYS = 825
EDGE_DAYS = 1825
RENEW_BEFORE_DAYS = 30
# Names the hub's leaf certificate is always valid for (a leaf on the hub's own machine, the tests).
DEFAULT_LEAF_HOSTS = ("localhost", "127.0.0.1")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PkiError(ValueError):
    """A CA or certificate file that cannot be used (unreadable, not a CA, key and certificate differ)."""


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its key and the CA certificate that checks the other side: one end of the leaf link."""

    cert_file: str
    key_file: str
    ca_file: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xiaozhi-fleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def new_ca(common_name: str = "xiaozhi leaf CA", days: int = CA_DAYS) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = _new_key()
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA keys encipher nothing); a CA's also sign certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _san(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    *,
    server_hosts: list[str] | None = None,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An end-entity certificate signed by the CA: with ``server_hosts`` a server's (those names as its
    SANs, server authentication), without a client's (client authentication, CN = ``common_name``)."""
    key = _new_key()
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts is not None else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server_hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_san(server_hosts)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_cert(cert: x509.Certificate, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def write_key(key: PrivateKey, path: Path) -> None:
    """A private key, readable by its owner only (created 0600: never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def copy_key(src: Path, dst: Path) -> None:
    """Copy a private key file; the copy is 0600 from its creation."""
    data = src.read_bytes()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    dst.chmod(0o600)


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read certificate {path}: {exc}") from exc


def load_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"cannot read private key {path} (an unencrypted PEM key): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: an ECDSA or RSA key is needed, not {type(key).__name__}")
    return key


def _same_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def check_ca(cert: x509.Certificate, key: PrivateKey, where: str) -> None:
    """Refuse a CA that cannot sign the leaf certificates: not a CA, expired, or not the key's certificate."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError(f"{where}: not a CA certificate (basicConstraints CA:TRUE)")
    if cert.not_valid_after_utc <= _now():
        raise PkiError(f"{where}: the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if not _same_key(cert, key):
        raise PkiError(f"{where}: the CA key does not belong to the CA certificate")


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _fresh(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    return _signed_by(cert, ca) and cert.not_valid_after_utc - _now() > dt.timedelta(days=RENEW_BEFORE_DAYS)


def _covers(cert: x509.Certificate, hosts: list[str]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not hosts
    have = set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(_san_text(hosts)) <= have


def _san_text(hosts: list[str]) -> list[str]:
    out = []
    for host in hosts:
        try:
            out.append(str(ipaddress.ip_address(host)))
        except ValueError:
            out.append(host)
    return out


def cert_hosts(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a server certificate is valid for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


@dataclass(frozen=True)
class LeafPki:
    """The leaf link's certificates in one directory (``<hub dir>/tls``); see the module's docstring."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def hub_dir(self) -> Path:
        """What the hub needs at run time, and nothing else (no CA key, no edge keys): mount this one."""
        return self.root / "hub"

    def hub_files(self, where: str | None = None) -> TlsFiles:
        """The hub's files, as paths under ``where`` (where the hub finds :attr:`hub_dir` at run time)."""
        base = where.rstrip("/") if where else str(self.hub_dir.resolve())
        return TlsFiles(f"{base}/leaf.pem", f"{base}/leaf.key", f"{base}/ca.pem")

    def edge_cert(self, edge: str) -> Path:
        return self.root / "edges" / f"{edge}.pem"

    def edge_key(self, edge: str) -> Path:
        return self.root / "edges" / f"{edge}.key"

    def edge_files(self, edge: str) -> TlsFiles:
        """Edge ``edge``'s client certificate and key and the CA, as files here (a leaf on this machine)."""
        return TlsFiles(
            str(self.edge_cert(edge).resolve()), str(self.edge_key(edge).resolve()), str(self.ca_cert.resolve())
        )

    def has_ca(self) -> bool:
        return self.ca_cert.is_file() and self.ca_key.is_file()

    def ensure_ca(self, ca_cert: Path | None = None, ca_key: Path | None = None) -> bool:
        """Make the CA, or take the one given (files copied here); an existing one is kept. True if new.

        A different CA than the one already here is refused: every deployed edge's certificate and
        trust hang on it (remove the directory to start over, then re-enroll every edge)."""
        if (ca_cert is None) != (ca_key is None):
            raise PkiError("give both the CA certificate and its key, or neither")
        if ca_cert is not None and ca_key is not None:
            cert, key = load_cert(ca_cert), load_key(ca_key)
            check_ca(cert, key, str(ca_cert))
            if self.has_ca():
                if load_cert(self.ca_cert) != cert:
                    raise PkiError(
                        f"{self.ca_cert} is another CA than {ca_cert}: the deployed edges' certificates hang on it; "
                        f"to change CA remove {self.root} and re-enroll every edge"
                    )
                return False
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o700)
            write_key(key, self.ca_key)
            shutil.copyfile(ca_cert, self.ca_cert)
            self.ca_cert.chmod(0o644)
            return True
        if self.has_ca():
            check_ca(load_cert(self.ca_cert), load_key(self.ca_key), str(self.ca_cert))
            return False
        if self.ca_cert.exists() or self.ca_key.exists():
            raise PkiError(f"{self.root} has only half a CA (ca.pem and ca.key go together)")
        cert, key = new_ca()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        write_key(key, self.ca_key)
        write_cert(cert, self.ca_cert)
        return True

    def _ca(self) -> tuple[x509.Certificate, PrivateKey]:
        if not self.has_ca():
            raise PkiError(f"no leaf CA in {self.root} (ca.pem, ca.key): run `xiaozhi-cloud nats-config` first")
        return load_cert(self.ca_cert), load_key(self.ca_key)

    def _keep(self, cert_path: Path, key_path: Path, ca: x509.Certificate, hosts: list[str] | None) -> bool:
        if not (cert_path.is_file() and key_path.is_file()):
            return False
        try:
            cert, key = load_cert(cert_path), load_key(key_path)
        except PkiError:
            return False
        return _same_key(cert, key) and _fresh(cert, ca) and (hosts is None or _covers(cert, hosts))

    def ensure_hub(self, hosts: list[str]) -> bool:
        """The hub's leaf-port certificate for ``hosts`` (the names edges dial); True if (re)issued."""
        return self._ensure_server("leaf", "xiaozhi leaf hub", hosts)

    def ensure_hub_client(self, hosts: list[str]) -> bool:
        """The hub's client-port certificate for ``hosts`` (the names workers, the console and provisioning
        dial); True if (re)issued. Same CA as the leaf link: a cloud process trusts ``hub/ca.pem``."""
        return self._ensure_server("client", "xiaozhi hub client port", hosts)

    def hub_client_files(self, where: str | None = None) -> TlsFiles:
        """The hub's client-port certificate, key and CA, as paths under ``where`` (see :meth:`hub_files`)."""
        base = where.rstrip("/") if where else str(self.hub_dir.resolve())
        return TlsFiles(f"{base}/client.pem", f"{base}/client.key", f"{base}/ca.pem")

    def _ensure_server(self, stem: str, common_name: str, hosts: list[str]) -> bool:
        """The hub's server certificate ``hub/<stem>.pem`` (and key) for ``hosts``; True if (re)issued."""
        ca_cert, ca_key = self._ca()
        cert_path, key_path = self.hub_dir / f"{stem}.pem", self.hub_dir / f"{stem}.key"
        if (
            not (self.hub_dir / "ca.pem").is_file()
            or (self.hub_dir / "ca.pem").read_bytes() != self.ca_cert.read_bytes()
        ):
            self.hub_dir.mkdir(parents=True, exist_ok=True)
            write_cert(ca_cert, self.hub_dir / "ca.pem")
        if self._keep(cert_path, key_path, ca_cert, hosts):
            return False
        if cert_path.is_file():  # keep the names it had: a re-run with fewer hosts must not cut anyone off
            try:
                hosts = [*hosts, *(h for h in cert_hosts(load_cert(cert_path)) if h not in _san_text(hosts))]
            except PkiError:
                pass
        cert, key = issue(ca_cert, ca_key, common_name, server_hosts=hosts, days=HUB_DAYS)
        write_key(key, key_path)
        write_cert(cert, cert_path)
        return True

    def hub_hosts(self, stem: str = "leaf") -> list[str]:
        """The names the hub's ``leaf`` (or ``client``) port certificate is valid for; [] if none yet."""
        path = self.hub_dir / f"{stem}.pem"
        return cert_hosts(load_cert(path)) if path.is_file() else []

    def ensure_edge(self, edge: str) -> bool:
        """Edge ``edge``'s client certificate (CN = the edge id); True if (re)issued."""
        ca_cert, ca_key = self._ca()
        if self._keep(self.edge_cert(edge), self.edge_key(edge), ca_cert, None):
            return False
        cert, key = issue(ca_cert, ca_key, edge, days=EDGE_DAYS)
        write_key(key, self.edge_key(edge))
        write_cert(cert, self.edge_cert(edge))
        return True
