# Helpers for the tests, after CentOS t_functional's tests/0_lib/functions.sh.
# Every test is a script that exits 0 when the image is right; what it prints is its evidence.

# t_Log MESSAGE: a timestamped line naming the running test.
t_Log() {
    printf '[+] %s %s -> %s\n' "$(date -u +%H:%M:%S)" "$(basename "${0}")" "$*"
}

# t_Fail MESSAGE: says why and fails the test.
t_Fail() {
    printf '[FAIL] %s: %s\n' "$(basename "${0}")" "$*" >&2
    exit 1
}

# t_CheckExitStatus STATUS: passes on 0, fails otherwise (as in t_functional).
t_CheckExitStatus() {
    [ "$1" -eq 0 ] && { t_Log "PASS"; return 0; }
    t_Fail "exit status $1"
}

# t_BootTime: the boot's start, in seconds since the epoch.
t_BootTime() {
    awk '/^btime/ {print $2}' /proc/stat
}

# t_InstanceData KEY...: a value of cloud-init's instance data (/run/cloud-init), read with
# Python's json module: `cloud-init query` says the same, at seconds per call on a slow machine.
t_InstanceData() {
    python3 - "$@" <<'PY'
import json, sys
try:
    v = json.load(open("/run/cloud-init/instance-data-sensitive.json"))
except OSError:
    v = json.load(open("/run/cloud-init/instance-data.json"))
for k in sys.argv[1:]:
    v = v.get(k) if isinstance(v, dict) else None
if v is not None:
    print(v if isinstance(v, str) else json.dumps(v))
PY
}

# t_CloudUser: the user cloud-init made for logins (system_info's default_user).
t_CloudUser() {
    local u
    u=$(t_InstanceData merged_cfg system_info default_user name 2>/dev/null)
    echo "${u:-debian}"
}
export -f t_Log t_Fail t_CheckExitStatus t_BootTime t_InstanceData t_CloudUser
