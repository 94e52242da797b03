#!/usr/bin/env python3
"""A small Docker-Hub-style token server for the real registry peer (token auth).

GET  /token?service=S&scope=repository:NAME:ACTIONS[&scope=...]   (Basic credentials or none)
POST /token  grant_type=refresh_token&refresh_token=...&service=S&scope=...   (identity tokens)

Answers {"token", "access_token", "expires_in", "issued_at"}; the JWT is RS256 with the signing
certificate in the x5c header, as distribution's `auth.token` expects. Anonymous callers get pull
only. The user "shortlived" gets tokens that die after 2 s although they claim 300 s, so clients
must handle a 401 on a token they believe fresh. Signing uses the openssl command line, so the
script needs nothing beyond the Python standard library.

usage: registry-token-server.py PORT DIR   (DIR holds key.pem, cert.pem, users, identity-token)
"""
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT = int(sys.argv[1])
DIR = sys.argv[2]
ISSUER = "imagekit-token-issuer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der_b64() -> str:
    der = subprocess.run(
        ["openssl", "x509", "-in", os.path.join(DIR, "cert.pem"), "-outform", "DER"],
        check=True, capture_output=True,
    ).stdout
    return base64.b64encode(der).decode()


X5C = cert_der_b64()


def users() -> dict:
    out = {}
    with open(os.path.join(DIR, "users")) as f:
        for line in f:
            if ":" in line:
                u, p = line.rstrip("\n").split(":", 1)
                out[u] = p
    return out


def sign(claims: dict) -> str:
    header = {"typ": "JWT", "alg": "RS256", "x5c": [X5C]}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", os.path.join(DIR, "key.pem")],
        input=signing_input.encode(), check=True, capture_output=True,
    ).stdout
    return signing_input + "." + b64url(sig)


def access_for(subject, scopes):
    access = []
    for scope in scopes:
        for part in scope.split(" "):
            bits = part.split(":")
            if len(bits) < 3 or bits[0] != "repository":
                continue
            name, actions = ":".join(bits[1:-1]), bits[-1].split(",")
            allowed = [a for a in actions if a in ("pull", "push", "delete", "*")] if subject else \
                [a for a in actions if a == "pull"]
            access.append({"type": "repository", "name": name, "actions": allowed})
    return access


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("token-server: " + (fmt % args) + "\n")

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def issue(self, subject, service, scopes):
        now = int(time.time())
        real_ttl = 2 if subject == "shortlived" else 300
        claims = {
            "iss": ISSUER, "sub": subject or "", "aud": service, "exp": now + real_ttl,
            "nbf": now - 5, "iat": now, "jti": uuid.uuid4().hex, "access": access_for(subject, scopes),
        }
        token = sign(claims)
        self.reply(200, {"token": token, "access_token": token, "expires_in": 300,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/token":
            return self.reply(404, {"error": "not found"})
        q = parse_qs(url.query)
        subject = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, pw = base64.b64decode(auth[6:]).decode().split(":", 1)
            except Exception:
                return self.reply(400, {"details": "malformed Basic credentials"})
            if users().get(user) != pw:
                return self.reply(401, {"details": "incorrect username or password"})
            subject = user
        self.issue(subject, q.get("service", [""])[0], q.get("scope", []))

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        if url.path != "/token" or form.get("grant_type", [""])[0] != "refresh_token":
            return self.reply(400, {"error": "unsupported_grant_type"})
        with open(os.path.join(DIR, "identity-token")) as f:
            expected = f.read().strip()
        if form.get("refresh_token", [""])[0] != expected:
            return self.reply(401, {"error": "invalid_grant"})
        self.issue("identity-user", form.get("service", [""])[0], form.get("scope", []))


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
