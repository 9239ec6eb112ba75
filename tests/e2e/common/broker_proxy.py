"""TLS terminator in front of a plaintext Kafka-protocol broker, for the TLS end-to-end test.

Neither broker that installs here speaks TLS itself (tansu 0.6.0's `--cert` and `--key` are
mutually exclusive in its command line and neither turns TLS on; noida-db has no TLS), so
the test puts this in front of a tansu whose advertised listener is this proxy: every
connection a client makes, bootstrap and broker, is a TLS connection to here, verified by
the client's OpenSSL against the CA written below, and forwarded byte for byte to the
broker.

    python tls_proxy.py --dir DIR --upstream 127.0.0.1:PORT [--port 0]

Writes into DIR (PEM):
  ca.pem                 the CA that signed the server and client certificates
  server.pem/.key        the proxy's certificate, for IP 127.0.0.1 and DNS localhost
  client.pem/.key        a client certificate signed by the CA (mutual TLS)
  other-ca.pem           a CA that signed nothing here (a client trusting only it must fail)
  other-client.pem/.key  a client certificate signed by other-ca (the proxy must refuse it)

Client certificates are required (mutual TLS, as MSK and Confluent deployments do). Prints
`listening PORT` once ready, then `accepted CN` for each completed handshake (CN of the
client's certificate); a failed handshake closes the connection.
"""

import argparse
import asyncio
import datetime
import ipaddress
import os
import ssl
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


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
        try:
            writer.close()
        except Exception:  # already closed by the other side
            pass


def _report(line):
    print(line, flush=True)


async def _serve(directory, upstream_host, upstream_port, port):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(
        os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")
    )
    context.load_verify_locations(os.path.join(directory, "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED

    async def handle(reader, writer):
        peer = writer.get_extra_info("peercert") or {}
        cn = next(
            (v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), "?"
        )
        _report(f"accepted {cn}")
        try:
            up_reader, up_writer = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError as e:
            _report(f"upstream unreachable: {e}")
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(
        handle, "127.0.0.1", port, ssl=context, ssl_handshake_timeout=10
    )
    _report(f"listening {server.sockets[0].getsockname()[1]}")
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where the certificates are written")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the plaintext broker")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    write_certificates(args.dir)
    try:
        asyncio.run(_serve(args.dir, host, int(port), args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
