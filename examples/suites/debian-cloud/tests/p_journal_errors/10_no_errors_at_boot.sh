#!/bin/bash
# No message of priority err or worse in this boot's journal.
errors=$(journalctl -b -p err --no-pager -q -o short-monotonic) || t_Fail "journalctl could not read this boot's journal"
if [ -n "$errors" ]; then echo "$errors"; t_Fail "$(echo "$errors" | wc -l) error message(s) in this boot's journal"; fi
t_Log "no error messages in $(journalctl -b -q --no-pager | wc -l) journal lines"
