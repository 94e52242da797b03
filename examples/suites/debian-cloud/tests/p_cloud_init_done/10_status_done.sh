#!/bin/bash
# cloud-init ran every stage and reported no error.
out=$(timeout 240 cloud-init status --wait --long 2>&1); rc=$?
echo "$out"
[ "$rc" -eq 0 ] || t_Fail "cloud-init status exited $rc"
echo "$out" | grep -qx 'status: done' || t_Fail "cloud-init is not done"
python3 - <<'PY' || t_Fail "cloud-init recorded errors in result.json"
import json, sys
r = json.load(open("/run/cloud-init/result.json"))["v1"]
print("datasource:", r.get("datasource"), "errors:", r.get("errors"))
sys.exit(1 if r.get("errors") else 0)
PY
if grep -n 'Traceback\|\bERROR\b' /var/log/cloud-init.log; then t_Fail "errors in /var/log/cloud-init.log"; fi
