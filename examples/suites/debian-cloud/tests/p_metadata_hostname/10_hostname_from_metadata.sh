#!/bin/bash
# The hostname is the one the metadata gave, and it resolves (no "unable to resolve host").
want=$(t_InstanceData v1 local_hostname) || t_Fail "cloud-init's instance data cannot be read"
have=$(hostname)
t_Log "metadata: $want, hostname: $have"
[ -n "$want" ] && [ "$have" = "$want" ] || t_Fail "hostname $have is not the metadata's $want"
getent hosts "$have" >/dev/null || t_Fail "the hostname $have does not resolve"
