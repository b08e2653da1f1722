#!/usr/bin/env python3
"""An EST simpleenroll whose CSR carries the TLS channel binding, made on the same connection.

usage: est_binding.py HOST PORT CA CERT KEY CN TLS MODE

Connects with the factory certificate CERT/KEY, reads the connection's channel binding, makes a
CSR for CN with `openssl req` whose challengePassword is, by MODE:
  right   the binding, base64 (RFC 7030 3.5)
  wrong   another connection's binding (one made just before, on its own connection)
  none    no challengePassword at all
and posts it on the same connection. TLS is 1.2 (tls-unique, read with Python's ssl module) or
1.3 (tls-exporter, RFC 9266: read with `openssl s_client -keymatexport`, which then carries the
request). Prints the HTTP status line and the body.
"""
import base64
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile


def make_csr(cn, challenge, workdir):
    conf = os.path.join(workdir, "req.cnf")
    with open(conf, "w") as f:
        f.write("[req]\nprompt = no\ndistinguished_name = dn\n")
        if challenge is not None:
            f.write("attributes = attrs\n[attrs]\nchallengePassword = %s\n" % challenge)
        f.write("[dn]\nCN = %s\n" % cn)
    key = os.path.join(workdir, "op.key")
    der = subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-config", conf, "-outform", "DER"],
        check=True, capture_output=True).stdout
    return base64.encodebytes(der)


def request(host, body):
    return (b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: " + host.encode() +
            b"\r\nContent-Type: application/pkcs10\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def tls12(host, port, ca, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.check_hostname = False
    s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10))
    return s, base64.b64encode(s.get_channel_binding("tls-unique")).decode()


def run12(host, port, ca, cert, key, cn, mode, workdir):
    other = None
    if mode == "wrong":
        o, other = tls12(host, port, ca, cert, key)
        o.close()
    s, binding = tls12(host, port, ca, cert, key)
    challenge = {"right": binding, "wrong": other, "none": None}[mode]
    s.sendall(request(host, make_csr(cn, challenge, workdir)))
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def s_client(host, port, ca, cert, key):
    return subprocess.Popen(
        ["openssl", "s_client", "-connect", "%s:%d" % (host, port), "-tls1_3", "-CAfile", ca,
         "-cert", cert, "-key", key, "-keymatexport", "EXPORTER-Channel-Binding",
         "-keymatexportlen", "32", "-ign_eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def exported(p):
    for line in iter(p.stdout.readline, b""):
        m = re.match(rb"\s*Keying material: ([0-9A-Fa-f]+)", line)
        if m:
            return base64.b64encode(bytes.fromhex(m.group(1).decode())).decode()
    raise SystemExit("s_client printed no keying material")


def run13(host, port, ca, cert, key, cn, mode, workdir):
    other = None
    if mode == "wrong":
        o = s_client(host, port, ca, cert, key)
        other = exported(o)
        o.kill()
        o.wait()
    p = s_client(host, port, ca, cert, key)
    binding = exported(p)
    challenge = {"right": binding, "wrong": other, "none": None}[mode]
    out, _ = p.communicate(request(host, make_csr(cn, challenge, workdir)), timeout=20)
    i = out.find(b"HTTP/1.1 ")
    return out[i:] if i >= 0 else out


def main():
    host, port, ca, cert, key, cn, tls, mode = sys.argv[1:9]
    with tempfile.TemporaryDirectory() as workdir:
        run = run12 if tls == "1.2" else run13
        out = run(host, int(port), ca, cert, key, cn, mode, workdir)
    head, _, body = out.partition(b"\r\n\r\n")
    print(head.split(b"\r\n")[0].decode(errors="replace"))
    print(body.decode(errors="replace").strip())


if __name__ == "__main__":
    main()
