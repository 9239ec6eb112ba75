"""TLS and SASL in front of a plaintext Kafka-protocol broker, for the security end-to-end tests.

Neither broker that installs here terminates TLS or authenticates clients itself (tansu
0.6.0's `--cert` and `--key` are mutually exclusive in its command line and neither turns TLS
on; with `--authentication` it refuses to create the first SCRAM user, and without it it
refuses every SASL handshake; noida-db has neither), so the tests put this in front of a
tansu whose advertised listener is this proxy: every connection a client makes, bootstrap
and broker, goes through here.

    python broker_proxy.py --dir DIR --upstream 127.0.0.1:PORT [--port 0]
                           [--tls mutual|server|none] [--sasl-user USER:PASSWORD ...]

TLS (`--tls`, default `mutual`): Python's `ssl` with TLS 1.2 or newer, the server certificate
below; `mutual` requires a client certificate signed by `ca.pem` (as MSK and Confluent
mutual-TLS listeners do), `server` asks for none (as SASL_SSL listeners do), `none` is
plaintext.

SASL (`--sasl-user`, repeatable; none: no authentication): the listener requires SASL
authentication before any other request, as a broker's SASL listener does. The proxy
answers the Kafka protocol's ApiVersions (the broker's answer, with SaslHandshake v0-1 and
SaslAuthenticate v0-1 added), SaslHandshake and SaslAuthenticate itself, for the mechanisms
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (the SCRAM server is the `scramp` package's, an
implementation of RFC 5802 and RFC 7677 independent of librdkafka's client; 4,096
iterations, Kafka's minimum). A failed authentication is answered with Kafka's error 58
(SASL_AUTHENTICATION_FAILED) and the connection is closed; any other request before
authentication closes it too. Once authenticated, bytes are forwarded unchanged.

Writes into DIR (PEM):
  ca.pem                 the CA that signed the server and client certificates
  server.pem/.key        the proxy's certificate, for IP 127.0.0.1 and DNS localhost
  client.pem/.key        a client certificate signed by the CA (mutual TLS)
  other-ca.pem           a CA that signed nothing here (a client trusting only it must fail)
  other-client.pem/.key  a client certificate signed by other-ca (the proxy must refuse it)

Prints `listening PORT` once ready, then for each connection `accepted CN` after a TLS
handshake with a client certificate (CN of the certificate; a failed handshake closes the
connection), `authenticated USER MECHANISM` or `authentication failed USER MECHANISM: WHY`.
"""

import argparse
import asyncio
import datetime
import ipaddress
import os
import ssl
import struct
import sys

import scramp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Kafka protocol API keys and error codes used here.
API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58
# What this proxy answers for the SASL APIs (versions 0-1 of both: no flexible encoding).
SASL_API_RANGES = ((SASL_HANDSHAKE, 0, 1), (SASL_AUTHENTICATE, 0, 1))
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_ITERATIONS = 4096
# Largest request accepted before authentication (a SASL exchange is a few hundred bytes).
MAX_UNAUTHENTICATED_FRAME = 1 << 16


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, key, cert):
    with open(path + ".pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        with open(path + ".key", "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )


def _issue(cn, issuer_key, issuer_name, *, ca, usage=None, sans=None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name or _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def write_certificates(directory):
    """Writes the CA, server and client certificates described in the module docstring."""
    ca_key, ca = _issue("spcvm test CA", None, None, ca=True)
    _write(os.path.join(directory, "ca"), None, ca)
    server_sans = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    key, cert = _issue(
        "127.0.0.1",
        ca_key,
        ca.subject,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=server_sans,
    )
    _write(os.path.join(directory, "server"), key, cert)
    key, cert = _issue(
        "spcvm-client", ca_key, ca.subject, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    _write(os.path.join(directory, "client"), key, cert)
    other_key, other = _issue("some other CA", None, None, ca=True)
    _write(os.path.join(directory, "other-ca"), None, other)
    key, cert = _issue(
        "stranger", other_key, other.subject, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    _write(os.path.join(directory, "other-client"), key, cert)


# --- Kafka protocol encoding (https://kafka.apache.org/protocol) -------------------------


class ProtocolError(Exception):
    """A request this proxy cannot parse or does not answer before authentication."""


def _uvarint(data, pos):
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ProtocolError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _put_uvarint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip_tagged_fields(data, pos):
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


def _string(value):
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _read_string(data, pos):
    (n,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if n < 0:
        return None, pos
    return data[pos : pos + n].decode(), pos + n


def _read_bytes(data, pos):
    (n,) = struct.unpack_from(">i", data, pos)
    pos += 4
    if n < 0 or pos + n > len(data):
        raise ProtocolError("bad BYTES length")
    return data[pos : pos + n], pos + n


async def _read_frame(reader, limit=None):
    """One size-prefixed frame's payload, or None when the peer closed the connection."""
    try:
        head = await reader.readexactly(4)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None
    (size,) = struct.unpack(">i", head)
    if size < 8 or (limit is not None and size > limit):
        raise ProtocolError(f"request of {size} bytes")
    try:
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None


def _frame(payload):
    return struct.pack(">i", len(payload)) + payload


def _response(correlation_id, body):
    return _frame(struct.pack(">i", correlation_id) + body)


def _request_body(frame):
    """The body of a request with header v1 (API versions without flexible encoding)."""
    _, pos = _read_string(frame, 8)
    return pos


def patch_api_versions(response, version):
    """The broker's ApiVersions response with this proxy's SASL API ranges in it.

    `response` is the frame's payload (correlation id, then the body); `version` is the
    request's. A response with an error (the broker's answer to a version it does not
    support is a v0 body) is returned unchanged.
    """
    head, body = response[:4], response[4:]
    (error,) = struct.unpack_from(">h", body, 0)
    if error != 0:
        return response
    pos = 2
    flexible = version >= 3
    if flexible:
        count, pos = _uvarint(body, pos)
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", body, pos)
        pos += 4
    entries = []
    for _ in range(count):
        key, lo, hi = struct.unpack_from(">hhh", body, pos)
        pos += 6
        start = pos
        if flexible:
            pos = _skip_tagged_fields(body, pos)
        entries.append((key, lo, hi, body[start:pos]))
    sasl_keys = {k for k, _, _ in SASL_API_RANGES}
    entries = [e for e in entries if e[0] not in sasl_keys]
    entries += [(k, lo, hi, b"\x00" if flexible else b"") for k, lo, hi in SASL_API_RANGES]
    out = bytearray(body[:2])
    out += _put_uvarint(len(entries) + 1) if flexible else struct.pack(">i", len(entries))
    for key, lo, hi, tags in entries:
        out += struct.pack(">hhh", key, lo, hi) + tags
    out += body[pos:]
    return head + bytes(out)


# --- SASL ---------------------------------------------------------------------------------


class Authenticator:
    """One connection's SASL exchange against the configured users."""

    def __init__(self, users, scram_info):
        self.users = users
        self.scram_info = scram_info
        self.mechanism = None
        self.scram = None
        self.user = None

    def handshake(self, mechanism):
        """Error code of a SaslHandshake for `mechanism`."""
        if mechanism not in MECHANISMS:
            return UNSUPPORTED_SASL_MECHANISM
        self.mechanism = mechanism
        return 0

    def step(self, message):
        """(done, reply): done is True once authenticated; raises ValueError on failure."""
        if self.mechanism is None:
            raise ValueError("SaslAuthenticate before SaslHandshake")
        if self.mechanism == "PLAIN":
            parts = message.split(b"\x00")
            if len(parts) != 3:
                raise ValueError("malformed PLAIN message")
            self.user = parts[1].decode(errors="replace")
            if self.users.get(self.user) != parts[2].decode(errors="replace"):
                raise ValueError("wrong user name or password")
            return True, b""
        text = message.decode(errors="replace")
        try:
            if self.scram is None:
                mech = scramp.ScramMechanism(self.mechanism)
                self.scram = mech.make_server(
                    lambda user: self.scram_info.get((self.mechanism, user))
                )
                self.user = text.split(",n=", 1)[-1].split(",", 1)[0]
                self.scram.set_client_first(text)
                return False, self.scram.get_server_first().encode()
            self.scram.set_client_final(text)
            return True, self.scram.get_server_final().encode()
        except scramp.ScramException as e:
            raise ValueError(str(e)) from None


def _authenticate_response(version, error, message, auth_bytes):
    body = struct.pack(">h", error) + _string(message)
    body += struct.pack(">i", len(auth_bytes)) + auth_bytes
    if version >= 1:
        body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
    return body


async def _authenticate(reader, writer, up_reader, up_writer, auth):
    """Runs the exchange before authentication; True once the client is authenticated."""
    while True:
        frame = await _read_frame(reader, MAX_UNAUTHENTICATED_FRAME)
        if frame is None:
            return False
        api_key, version, correlation_id = struct.unpack_from(">hhi", frame, 0)
        if api_key == API_VERSIONS:
            up_writer.write(_frame(frame))
            await up_writer.drain()
            response = await _read_frame(up_reader)
            if response is None:
                return False
            writer.write(_frame(patch_api_versions(response, version)))
        elif api_key == SASL_HANDSHAKE and version <= 1:
            mechanism, _ = _read_string(frame, _request_body(frame))
            error = auth.handshake(mechanism)
            body = struct.pack(">h", error) + struct.pack(">i", len(MECHANISMS))
            body += b"".join(_string(m) for m in MECHANISMS)
            writer.write(_response(correlation_id, body))
        elif api_key == SASL_AUTHENTICATE and version <= 1:
            message, _ = _read_bytes(frame, _request_body(frame))
            try:
                done, reply = auth.step(message)
            except ValueError as e:
                _report(f"authentication failed {auth.user} {auth.mechanism}: {e}")
                why = (
                    "Authentication failed during authentication due to invalid credentials "
                    f"with SASL mechanism {auth.mechanism}"
                )
                body = _authenticate_response(version, SASL_AUTHENTICATION_FAILED, why, b"")
                writer.write(_response(correlation_id, body))
                await writer.drain()
                return False
            writer.write(_response(correlation_id, _authenticate_response(version, 0, None, reply)))
            if done:
                await writer.drain()
                _report(f"authenticated {auth.user} {auth.mechanism}")
                return True
        else:
            raise ProtocolError(f"API {api_key} v{version} before authentication")
        await writer.drain()


# --- serving ------------------------------------------------------------------------------


async def _pipe(reader, writer):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        _close(writer)


def _close(writer):
    try:
        writer.close()
    except Exception:  # already closed by the other side
        pass


def _report(line):
    print(line, flush=True)


def _tls_context(directory, mode):
    if mode == "none":
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(
        os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")
    )
    if mode == "mutual":
        context.load_verify_locations(os.path.join(directory, "ca.pem"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _serve(directory, upstream_host, upstream_port, port, tls, users):
    context = _tls_context(directory, tls)
    scram_info = {}
    for mechanism in MECHANISMS[1:]:
        mech = scramp.ScramMechanism(mechanism)
        for user, password in users.items():
            scram_info[(mechanism, user)] = mech.make_auth_info(
                password, iteration_count=SCRAM_ITERATIONS
            )

    async def handle(reader, writer):
        if tls == "mutual":
            peer = writer.get_extra_info("peercert") or {}
            cn = next(
                (v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"),
                "?",
            )
            _report(f"accepted {cn}")
        try:
            up_reader, up_writer = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError as e:
            _report(f"upstream unreachable: {e}")
            _close(writer)
            return
        if users:
            try:
                ok = await _authenticate(
                    reader, writer, up_reader, up_writer, Authenticator(users, scram_info)
                )
            except (ProtocolError, struct.error, UnicodeDecodeError) as e:
                _report(f"closed before authentication: {e}")
                ok = False
            except (ConnectionError, ssl.SSLError):
                ok = False
            if not ok:
                _close(writer)
                _close(up_writer)
                return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(
        handle, "127.0.0.1", port, ssl=context, ssl_handshake_timeout=10 if context else None
    )
    _report(f"listening {server.sockets[0].getsockname()[1]}")
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where the certificates are written")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the plaintext broker")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument(
        "--tls",
        choices=("mutual", "server", "none"),
        default="mutual",
        help="mutual: client certificates required; server: none asked for; none: plaintext",
    )
    parser.add_argument(
        "--sasl-user",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="require SASL authentication, accepting this user (repeatable)",
    )
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    users = dict(u.split(":", 1) for u in args.sasl_user)
    write_certificates(args.dir)
    try:
        asyncio.run(_serve(args.dir, host, int(port), args.port, args.tls, users))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
