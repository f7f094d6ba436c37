"""`rover keys`: the CURVE key pairs of the robot and its operators, who may connect, and the
console's TLS certificate.

The folder (``$ROVER_KEYS_DIR``, else ``$XDG_CONFIG_HOME/rover/keys``, else
``~/.config/rover/keys``; mode 0700) holds:

- ``robot.key`` / ``robot.key_secret``: the robot's pair (it is the CURVE server);
- ``operator.key`` / ``operator.key_secret``: this machine's operator pair (the laptop's);
- ``authorized/NAME.key``: the public keys the robot lets in (``rover keys authorize``);
- ``console-cert.pem`` / ``console-key.pem``: the console's self-signed certificate.

Key files are ZeroMQ's certificate format (``zmq.auth.load_certificate`` reads them); every
secret file is written mode 0600, atomically, never overwritten by ``init`` without ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from rover.errors import ConfigError

KEYS_ENV = "ROVER_KEYS_DIR"
ROBOT = "robot"
OPERATOR = "operator"
AUTHORIZED = "authorized"
CERT_FILE = "console-cert.pem"
CERT_KEY_FILE = "console-key.pem"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_keys_dir() -> Path:
    """Where keys live unless ``--keys DIR`` says otherwise."""
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV])
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(config) / "rover" / "keys"


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, Z85-encoded (40 characters each)."""

    public: bytes
    secret: bytes


def check_curve() -> None:
    """Fail in one line when this libzmq was built without CURVE."""
    if not zmq.has("curve"):
        raise ConfigError(
            f"libzmq {zmq.zmq_version()} has no CURVE security: install pyzmq's wheel "
            "(`pip install --force-reinstall pyzmq`), which bundles libzmq with libsodium"
        )


def parse_public_key(text: str) -> bytes:
    """A Z85 public key from its 40 characters or from a ``.key`` file."""
    text = text.strip()
    if len(text) != 40 and os.path.isfile(text):
        public, _ = zmq.auth.load_certificate(text)
        return public
    try:
        raw = z85.decode(text.encode())
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"{text[:60]!r} is not a CURVE public key: give the 40-character key that "
            "`rover keys list` prints on the operator's machine, or its .key file"
        )
    return text.encode()


def key_id(public: bytes) -> str:
    """A short, file-name-safe id of a public key."""
    return hashlib.sha256(public).hexdigest()[:10]


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cert_text(pair: KeyPair, secret: bool) -> str:
    lines = [
        "#   ZeroMQ CURVE " + ("**Secret** Certificate" if secret else "Public Certificate"),
        "#   " + ("keep this file private (mode 0600)" if secret else "written by rover keys"),
        "",
        "metadata",
        "curve",
        f'    public-key = "{pair.public.decode()}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{pair.secret.decode()}"')
    return "\n".join(lines) + "\n"


class KeyStore:
    """The key folder: make, read, authorize, revoke."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_keys_dir()

    @property
    def authorized_dir(self) -> Path:
        return self.root / AUTHORIZED

    def _prepare(self) -> None:
        self.authorized_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def init(self, force: bool = False) -> list[Path]:
        """Make the robot and operator pairs that are missing (all of them with `force`);
        this machine's own operator key is authorized, so one machine works alone."""
        check_curve()
        self._prepare()
        made = []
        for name in (ROBOT, OPERATOR):
            if force or not (self.root / f"{name}.key_secret").exists():
                public, secret = zmq.curve_keypair()
                pair = KeyPair(public, secret)
                _write_atomic(self.root / f"{name}.key_secret", _cert_text(pair, True), 0o600)
                _write_atomic(self.root / f"{name}.key", _cert_text(pair, False), 0o644)
                made.append(self.root / f"{name}.key")
        self.authorize(self.pair(OPERATOR).public.decode(), name="this-machine")
        return made

    def pair(self, name: str) -> KeyPair:
        """The robot's or this machine's operator pair."""
        path = self.root / f"{name}.key_secret"
        if not path.exists():
            raise ConfigError(f"no {name} key in {self.root}: run `rover keys init` first")
        if path.stat().st_mode & 0o077:
            raise ConfigError(
                f"{path} is readable by other users: `chmod 600 {path}` (or `rover keys init "
                "--force` for new keys)"
            )
        public, secret = zmq.auth.load_certificate(path)
        if secret is None:
            raise ConfigError(f"{path} has no secret key: run `rover keys init --force`")
        return KeyPair(public, secret)

    def public(self, name: str) -> bytes:
        """A public key of the folder (`robot` or `operator`)."""
        path = self.root / f"{name}.key"
        if not path.exists():
            raise ConfigError(f"no {name} key in {self.root}: run `rover keys init` first")
        return zmq.auth.load_certificate(path)[0]

    def authorized(self) -> dict[str, bytes]:
        """Name -> public key of every operator the robot lets in."""
        if not self.authorized_dir.is_dir():
            return {}
        out = {}
        for path in sorted(self.authorized_dir.glob("*.key")):
            try:
                out[path.stem] = zmq.auth.load_certificate(path)[0]
            except (OSError, ValueError):
                continue  # a half-edited file is no key
        return out

    def authorize(self, key_text: str, name: str | None = None) -> Path:
        """Let the operator with this public key in; returns its file."""
        public = parse_public_key(key_text)
        name = name or f"operator-{key_id(public)}"
        if not _NAME_RE.match(name):
            raise ConfigError(f"operator name {name!r}: use letters, digits, '.', '-' and '_'")
        self._prepare()
        for old, key in self.authorized().items():
            if key == public and old != name:
                (self.authorized_dir / f"{old}.key").unlink(missing_ok=True)
        path = self.authorized_dir / f"{name}.key"
        _write_atomic(path, _cert_text(KeyPair(public, b""), False), 0o644)
        return path

    def revoke(self, who: str) -> list[str]:
        """Take an operator's access back, by name or public key; returns the names removed."""
        found = self.authorized()
        names = [n for n, k in found.items() if who in (n, k.decode())]
        if not names:
            listed = ", ".join(found) or "none"
            raise ConfigError(f"no authorized operator {who!r} (authorized: {listed})")
        for name in names:
            (self.authorized_dir / f"{name}.key").unlink()
        return names

    def tls_files(self, hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """The console's certificate and key, made (self-signed) when missing or when it
        does not name one of `hosts`."""
        from rover.tls import ensure_self_signed

        self._prepare()
        cert, key = self.root / CERT_FILE, self.root / CERT_KEY_FILE
        ensure_self_signed(cert, key, hosts, _write_atomic)
        return cert, key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", metavar="DIR", help=f"key folder (default: {default_keys_dir()})")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("init", help="make the robot's and this machine's operator key pairs")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    p = sub.add_parser("authorize", help="let an operator in (on the robot)")
    p.add_argument("key", help="the operator's public key (40 characters) or its .key file")
    p.add_argument("--name", help="a name for this operator (default: from the key)")
    p = sub.add_parser("revoke", help="take an operator's access back")
    p.add_argument("who", help="operator name or public key (see `rover keys list`)")
    sub.add_parser("list", help="this folder's public keys and the authorized operators")


def run(args: argparse.Namespace) -> int:
    store = KeyStore(args.keys)
    if args.action == "init":
        made = store.init(force=args.force)
        for path in made:
            print(f"made {path} (secret beside it, mode 0600)")
        if not made:
            print(f"keys already in {store.root} (--force makes new ones)")
        print(f"operator public key: {store.public(OPERATOR).decode()}")
        print(f"robot public key:    {store.public(ROBOT).decode()}")
        cert, _ = store.tls_files()
        print(f"console certificate: {cert} (SHA-256 {fingerprint(cert)})")
    elif args.action == "authorize":
        path = store.authorize(args.key, args.name)
        print(f"authorized {path.stem} ({path})")
    elif args.action == "revoke":
        for name in store.revoke(args.who):
            print(f"revoked {name}: its next connection is refused, its commands are dropped")
    else:
        _print_list(store)
    return 0


def fingerprint(cert: Path) -> str:
    from rover.tls import fingerprint as sha256

    return sha256(cert)


def _print_list(store: KeyStore) -> None:
    print(f"keys in {store.root}")
    for name in (ROBOT, OPERATOR):
        try:
            print(f"  {name:<9} {store.public(name).decode()}")
        except ConfigError:
            print(f"  {name:<9} (none: rover keys init)")
    cert = store.root / CERT_FILE
    if cert.exists():
        print(f"  console   {cert} (SHA-256 {fingerprint(cert)})")
    print("authorized operators:")
    for name, key in store.authorized().items() or {"(none)": b""}.items():
        print(f"  {name:<24} {key.decode()}")
