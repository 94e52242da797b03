"""Create the projects, users, roles and image endpoint the tests need, through Keystone's v3 API.

Standard library only, so it runs with any python3. Used by dev/openstack-peers.
"""

import argparse
import json
import urllib.request


def call(base, method, path, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return resp.headers, (json.loads(raw) if raw else None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--keystone", required=True)
    p.add_argument("--admin-password", required=True)
    p.add_argument("--glance-url", required=True)
    p.add_argument("--glance-password", required=True)
    p.add_argument("--demo-password", required=True)
    p.add_argument("--baremetal-url", required=True)
    a = p.parse_args()
    base = a.keystone.rstrip("/") + "/v3"

    headers, _ = call(base, "POST", "/auth/tokens", body={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": a.admin_password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    tok = headers["X-Subject-Token"]

    def find(kind, name):
        _, body = call(base, "GET", f"/{kind}?name={name}", tok)
        items = body[kind]
        return items[0]["id"] if items else None

    def ensure(kind, single, name, extra=None):
        found = find(kind, name)
        if found:
            return found
        _, body = call(base, "POST", f"/{kind}", tok, {single: {"name": name, **(extra or {})}})
        return body[single]["id"]

    roles = {r: ensure("roles", "role", r) for r in ("admin", "member", "reader", "service")}
    service_p = ensure("projects", "project", "service", {"domain_id": "default"})
    demo_p = ensure("projects", "project", "demo", {"domain_id": "default"})
    glance_u = ensure("users", "user", "glance", {"domain_id": "default", "password": a.glance_password})
    demo_u = ensure("users", "user", "demo", {"domain_id": "default", "password": a.demo_password})
    for project, user, role in [(service_p, glance_u, "admin"), (service_p, glance_u, "service"),
                                (demo_p, demo_u, "member"), (demo_p, demo_u, "reader")]:
        call(base, "PUT", f"/projects/{project}/users/{user}/roles/{roles[role]}", tok)

    for stype, name, url in [("image", "glance", a.glance_url), ("baremetal", "ironic", a.baremetal_url)]:
        _, body = call(base, "POST", "/services", tok, {"service": {"type": stype, "name": name}})
        svc = body["service"]["id"]
        for interface in ("public", "internal", "admin"):
            call(base, "POST", "/endpoints", tok, {"endpoint": {
                "service_id": svc, "interface": interface, "region_id": "RegionOne", "url": url}})


if __name__ == "__main__":
    main()
