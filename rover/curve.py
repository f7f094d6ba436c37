"""ZeroMQ CURVE for every tcp endpoint another machine can reach.

The robot is the CURVE server. Every process that binds a CURVE socket runs a ZAP authenticator
(`zmq.auth.thread.ThreadAuthenticator`): without one libzmq lets any client key in. The
authenticator asks `AllowedKeys`, which rereads the key folder's ``authorized/`` when it
changes, so `rover keys revoke` refuses the next handshake without a restart; a process that
takes commands also checks each message's ZAP ``User-Id`` against it, so a revoked operator's
commands stop at once. A client watches its handshake with a socket monitor and turns a refusal
into one line (`wait_handshake`), never a silent hang.
"""

from __future__ import annotations

import os
import threading
import time

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from rover.errors import LinkError
from rover.keys import OPERATOR, ROBOT, KeyPair, KeyStore, check_curve

ZAP_DOMAIN = b"rover"
_HANDSHAKE_EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_authenticators: dict[int, ThreadAuthenticator] = {}
_allowed: dict[str, AllowedKeys] = {}
_lock = threading.Lock()


class AllowedKeys:
    """The public keys let in: the authorized operators and the robot's own (its nodes)."""

    def __init__(self, store: KeyStore):
        self.store = store
        self._stamp: tuple | None = None
        self._keys: dict[bytes, str] = {}
        self._robot = store.public(ROBOT)

    def _refresh(self) -> None:
        # names and inodes, not the folder's mtime: two edits within one clock tick differ too
        try:
            with os.scandir(self.store.authorized_dir) as it:
                stamp = tuple(sorted((e.name, e.inode()) for e in it))
        except FileNotFoundError:
            stamp = ()
        if stamp != self._stamp:
            self._keys = {k: n for n, k in self.store.authorized().items()}
            self._keys[self._robot] = ROBOT
            self._stamp = stamp

    def name(self, public_z85: bytes | str) -> str | None:
        """The operator's name when the key is let in, else None."""
        key = public_z85.encode() if isinstance(public_z85, str) else public_z85
        self._refresh()
        return self._keys.get(key)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: is this client key let in?"""
        return self.name(key) is not None


def allowed_keys(keys_dir: str | None = None) -> AllowedKeys:
    """The process's view of who may connect (one per key folder)."""
    store = KeyStore(keys_dir)
    with _lock:
        if str(store.root) not in _allowed:
            _allowed[str(store.root)] = AllowedKeys(store)
        return _allowed[str(store.root)]


def _authenticator(ctx: zmq.Context, allowed: AllowedKeys) -> None:
    with _lock:
        if id(ctx) in _authenticators:
            return
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve_callback(domain=ZAP_DOMAIN.decode(), credentials_provider=allowed)
        _authenticators[id(ctx)] = auth


def curve_server(sock: zmq.Socket, keys_dir: str | None = None) -> AllowedKeys:
    """Make `sock` (before bind) a CURVE server with the robot's key, behind the ZAP check."""
    check_curve()
    allowed = allowed_keys(keys_dir)
    pair = allowed.store.pair(ROBOT)
    _authenticator(sock.context, allowed)
    sock.curve_secretkey = pair.secret
    sock.curve_publickey = pair.public
    sock.zap_domain = ZAP_DOMAIN
    sock.curve_server = True
    return allowed


def curve_client(
    sock: zmq.Socket,
    keys_dir: str | None = None,
    *,
    pair: KeyPair | None = None,
    server_public: bytes | None = None,
) -> KeyPair:
    """Make `sock` (before connect) a CURVE client: by default the robot's own pair talking to
    the robot (its nodes over tcp); an operator passes its pair and the robot's public key."""
    check_curve()
    store = KeyStore(keys_dir)
    pair = pair or store.pair(ROBOT)
    sock.curve_secretkey = pair.secret
    sock.curve_publickey = pair.public
    sock.curve_serverkey = server_public or store.public(ROBOT)
    return pair


def operator_keys(keys_dir: str | None, robot_key: str | None) -> tuple[KeyPair, bytes]:
    """This machine's operator pair and the robot's public key (`--robot-key`, else the
    folder's robot.key)."""
    from rover.keys import parse_public_key

    store = KeyStore(keys_dir)
    pair = store.pair(OPERATOR)
    server = parse_public_key(robot_key) if robot_key else store.public(ROBOT)
    return pair, server


def wait_handshake(sock: zmq.Socket, where: str, pair: KeyPair, timeout_s: float = 5.0) -> None:
    """Block until `sock`'s CURVE handshake with `where` succeeded; raise LinkError in one line
    when the robot refuses the key, speaks no CURVE, or nothing answers."""
    mon = sock.get_monitor_socket(_HANDSHAKE_EVENTS)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    key = pair.public.decode()
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not mon.poll(left * 1000):
                break
            event = recv_monitor_message(mon)["event"]
            seen.add(event)
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise LinkError(
                    f"the robot at {where} refused this operator's key {key} (not authorized, "
                    f"or revoked): on the robot run `rover keys authorize -- '{key}'`"
                )
            if event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                raise LinkError(
                    f"CURVE handshake with {where} failed: is it a rover --listen port, and is "
                    "--robot-key the robot's public key (`rover keys list` on the robot)?"
                )
    finally:
        sock.disable_monitor()
        mon.close(linger=0)
    if zmq.EVENT_CONNECTED in seen:
        raise LinkError(
            f"{where} accepted the connection but finished no CURVE handshake in "
            f"{timeout_s:g} s: check --robot-key against `rover keys list` on the robot"
        )
    raise LinkError(
        f"nothing answers at {where} within {timeout_s:g} s: start the robot with "
        "`rover teleop --listen HOST:PORT` (or drive) and check the address"
    )
