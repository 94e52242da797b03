#!/usr/bin/env python3
"""Compare the XML-RPC requests imagekit's koji-client sent with what the real `koji` CLI sent.

Usage: koji_crosscheck.py OURS.jsonl CAPTURE.jsonl START:END

OURS.jsonl holds one request per line: {"path", "headers", "raw"} (raw = the XML body we sent).
Lines START..END of CAPTURE.jsonl are what the koji CLI sent for the same command. Each of our
requests is decoded with the reference library (koji.xmlrpcplus.loads + koji.decode_args) and its
method, args, kwargs, path and session headers must equal the captured ones. Values are compared
parsed, never as bytes. Exit status 0 when all match, 1 with a report otherwise.
"""
import json
import sys

import koji
import koji.xmlrpcplus

SESSION_HEADERS = ("Koji-Session-Id", "Koji-Session-Key", "Koji-Session-Callnum")


def decode(entry):
    params, method = koji.xmlrpcplus.loads(entry["raw"])
    args, kwargs = koji.decode_args(*params)
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    session = {h: headers.get(h.lower()) for h in SESSION_HEADERS if headers.get(h.lower()) is not None}
    return {"path": entry["path"], "method": method, "args": list(args), "kw": kwargs, "session": session}


def normalise(value):
    # XML-RPC has no tuples; the CLI's capture went through JSON, where they became lists.
    return json.loads(json.dumps(value))


def main():
    ours_file, capture_file, span = sys.argv[1:4]
    start, end = (int(x) for x in span.split(":"))
    ours = [decode(json.loads(line)) for line in open(ours_file) if line.strip()]
    theirs = [json.loads(line) for line in open(capture_file)][start:end]
    problems = []
    if len(ours) != len(theirs):
        problems.append("we sent %d requests, the koji CLI %d: ours %s, theirs %s" % (
            len(ours), len(theirs), [o["method"] for o in ours], [t["method"] for t in theirs]))
    for i, (o, t) in enumerate(zip(ours, theirs)):
        expect = {
            "path": t["path"],
            "method": t["method"],
            "args": normalise(t["args"]),
            "kw": normalise(t["kw"]),
            "session": {h: t["headers"][h] for h in SESSION_HEADERS if h in t["headers"]},
        }
        got = normalise(o)
        for key in expect:
            if got[key] != expect[key]:
                problems.append("request %d (%s): %s differs\n  ours:   %r\n  koji's: %r" % (
                    i, t["method"], key, got[key], expect[key]))
    if problems:
        print("\n".join(problems))
        return 1
    print("%d requests match the koji CLI's" % len(ours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
