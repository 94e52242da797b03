#!/bin/bash
# Nobody logs in as root with a password: the password is locked, and sshd takes no passwords.
field=$(getent shadow root | cut -d: -f2)
case "$field" in
'!'*|'*'*) t_Log "root's password is locked" ;;
*) t_Fail "root has a usable password" ;;
esac
conf=$(sshd -T 2>/dev/null)
echo "$conf" | grep -qx 'passwordauthentication no' || t_Fail "sshd accepts passwords: $(echo "$conf" | grep passwordauthentication)"
echo "$conf" | grep -qx 'permitrootlogin yes' && t_Fail "sshd lets root log in with a password"
t_Log "$(echo "$conf" | grep -E '^(passwordauthentication|permitrootlogin|kbdinteractiveauthentication) ' | tr '\n' ' ')"
