#!/usr/bin/env bash
# Talk to bitcask with nothing but bash, printf and nc: the Redis protocol.
#
# Run it (the server from `make run` listening on 127.0.0.1:7379):
#
#     bash examples/netcat.sh                 # or: bash examples/netcat.sh HOST PORT
#     BITCASK_HOST=db.internal BITCASK_PORT=7379 bash examples/netcat.sh
#
# Host and port: the arguments, else BITCASK_HOST / BITCASK_PORT, else
# 127.0.0.1 7379. With BITCASK_AUTH set, every connection starts with AUTH.
# Needs bash and any nc (netcat-openbsd, BSD/macOS nc, busybox): each
# connection ends with QUIT, so the server closes it and nc exits by itself.
# It stores a few keys under "netcat:", reads them back, deletes them, and exits.
#
# The protocol (docs/redis.md): a connection whose first byte is text speaks
# Redis's protocol, so nc sends inline commands, one per line, split as redis-cli
# splits them (double quotes with \" \\ \n \r \t \xHH escapes for arguments with
# spaces or odd bytes). Replies are RESP2: +OK (status), -ERR ... (error),
# :5 (integer), $N and then N bytes (a value; $-1 is nil), *N and then N replies
# (an array). read_reply below turns them into one line per value.

set -euo pipefail
export LC_ALL=C # `read -N` counts bytes, not characters

HOST=${1:-${BITCASK_HOST:-127.0.0.1}}
PORT=${2:-${BITCASK_PORT:-7379}}

# quote ARG: ARG as one inline argument (always double-quoted).
quote() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

# read_reply: read one RESP reply from stdin and print it, one line per value:
#   +OK -> OK   -ERR x -> (error) ERR x   :5 -> (integer) 5   $-1, *-1 -> (nil)
#   $N -> the N bytes of the value        *N -> its N replies, one after another
# (bash variables cannot hold a NUL byte: a value with one loses it here.)
read_reply() {
    local line n i
    IFS= read -r line || return 1
    line=${line%$'\r'}
    case $line in
    +*) printf '%s\n' "${line:1}" ;;
    -*) printf '(error) %s\n' "${line:1}" ;;
    :*) printf '(integer) %s\n' "${line:1}" ;;
    '$-1' | '*-1') echo '(nil)' ;;
    '$'*)
        n=${line:1} line=""
        if ((n > 0)); then IFS= read -r -N "$n" line; fi
        printf '%s\n' "$line"
        IFS= read -r _ # the CRLF after the value
        ;;
    '*'*) for ((i = 0; i < ${line:1}; i++)); do read_reply; done ;;
    *)
        echo "netcat.sh: not a RESP reply: $line" >&2
        return 1
        ;;
    esac
}

# session LINE...: send the command lines on one connection, print the replies.
# The replies of AUTH (first) and QUIT (last) are dropped.
session() {
    {
        if [[ -n ${BITCASK_AUTH:-} ]]; then printf 'AUTH %s\r\n' "$(quote "$BITCASK_AUTH")"; fi
        printf '%s\r\n' "$@" QUIT
    } | nc "$HOST" "$PORT" | {
        if [[ -n ${BITCASK_AUTH:-} ]]; then read_reply >/dev/null; fi
        while read_reply; do :; done
    } | sed '$d'
}

# call WORD...: one command built from words (each quoted), one connection.
call() {
    local line="" word
    for word in "$@"; do line+="$(quote "$word") "; done
    session "${line% }"
}

# must WORD...: like call, printing the reply; stop the script if it is an error.
must() {
    local reply
    reply=$(call "$@")
    printf '%s\n' "$reply"
    if [[ -z $reply || $reply == "(error) "* ]]; then
        echo "netcat.sh: $1 failed, stopping" >&2
        exit 1
    fi
}

echo "== ping"
session PING

echo "== set and get a value with spaces, a quote and a tab"
must SET netcat:motto $'say "hi"\tand wave'
call GET netcat:motto
echo "the same GET, raw (a \$length line, then the bytes):"
printf 'GET netcat:motto\r\nQUIT\r\n' | {
    if [[ -n ${BITCASK_AUTH:-} ]]; then printf 'AUTH %s\r\n' "$(quote "$BITCASK_AUTH")"; fi
    cat
} | nc "$HOST" "$PORT" | tr -d '\r' | grep -v '^+OK$'

echo "== a key that expires"
call SET netcat:session token EX 60
echo "seconds left: $(call TTL netcat:session)"

echo "== several commands, one connection (pipelined)"
session 'MSET netcat:1 one netcat:2 two netcat:3 three' \
    'MGET netcat:1 netcat:9 netcat:3' \
    'EXISTS netcat:2 netcat:3 netcat:9' \
    'INCR netcat:hits' \
    'INCRBY netcat:hits 10'

echo "== every key under netcat:, page by page (SCAN: a cursor, then a page)"
cursor=0 keys=()
while :; do
    mapfile -t page < <(session "SCAN $cursor MATCH netcat:* COUNT 2")
    cursor=${page[0]}
    keys+=("${page[@]:1}")
    [[ $cursor == 0 ]] && break
done
printf '%s\n' "${keys[@]}" | sort

echo "== errors are replies too"
session 'GET' 'NOSUCHCOMMAND x'

echo "== clean up"
for key in netcat:motto netcat:session netcat:1 netcat:2 netcat:3 netcat:hits; do
    printf '%s %s\n' "$key" "$(call DEL "$key")"
done
