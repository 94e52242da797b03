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

# t_CloudUser: the user cloud-init made for logins (system_info's default_user).
t_CloudUser() {
    local u
    u=$(cloud-init query --all 2>/dev/null | python3 -c '
import json, sys
try:
    print(json.load(sys.stdin)["merged_cfg"]["system_info"]["default_user"]["name"])
except Exception:
    pass' 2>/dev/null)
    echo "${u:-debian}"
}
export -f t_Log t_Fail t_CheckExitStatus t_BootTime t_CloudUser
