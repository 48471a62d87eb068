#!/usr/bin/env bash
# Talk to bitcask with nothing but bash, printf and nc: the inline text protocol.
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
# The protocol (docs/protocol.md, section 8): one command per line, arguments
# separated by spaces, double quotes with \" \\ \n \r \t \xNN escapes for
# arguments with spaces or odd bytes. One reply line per scalar: +OK, $value,
# :integer, ,float, _ (nil), -ERR CODE message; *N (array) and %N (map) are
# followed by their N elements.

set -euo pipefail

HOST=${1:-${BITCASK_HOST:-127.0.0.1}}
PORT=${2:-${BITCASK_PORT:-7379}}

# quote ARG: ARG as one inline-protocol argument (always double-quoted).
quote() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

# session LINE...: send the command lines on one connection, print the replies.
# The trailing QUIT's own "+OK" is dropped.
session() {
    {
        if [[ -n ${BITCASK_AUTH:-} ]]; then printf 'AUTH %s\r\n' "$(quote "$BITCASK_AUTH")"; fi
        printf '%s\r\n' "$@" QUIT
    } | nc "$HOST" "$PORT" | tr -d '\r' | {
        if [[ -n ${BITCASK_AUTH:-} ]]; then read -r _; fi # AUTH's +OK
        sed '$d'
    }
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
    if [[ $reply == -ERR* ]]; then
        echo "netcat.sh: $1 failed, stopping" >&2
        exit 1
    fi
}

# value REPLY: the text of a $value reply ($bare or $"quoted\x00"), or fail.
value() {
    local reply=$1
    case $reply in
    '$"'*)
        reply=${reply#\$\"}
        reply=${reply%\"}
        reply=${reply//\\\"/\"}
        printf '%b\n' "$reply"
        ;;
    '$'*) printf '%s\n' "${reply#\$}" ;;
    *)
        echo "unexpected reply: $reply" >&2
        return 1
        ;;
    esac
}

echo "== ping"
session PING

echo "== put and get a value with spaces, a quote and a tab"
must PUT netcat:motto $'say "hi"\tand wave'
reply=$(call GET netcat:motto)
echo "raw reply:  $reply"
echo "value:      $(value "$reply")"

echo "== a key that expires"
call PUT netcat:session token TTL 60
left=$(call TTL netcat:session)
echo "seconds left (a ,float reply): ${left#,}"

echo "== several commands, one connection (pipelined)"
session 'MPUT netcat:1 one netcat:2 two netcat:3 three' \
    'MGET netcat:1 netcat:9 netcat:3' \
    'EXISTS netcat:2' \
    'SCAN netcat: "" 2'

echo "== every key under netcat:, page by page"
cursor='""'
while :; do
    mapfile -t page < <(session "SCAN netcat: $cursor 2")
    # page: *2, cursor, *K, K keys
    for line in "${page[@]:3}"; do value "$line"; done
    [[ ${page[1]} == _ ]] && break
    cursor=${page[1]#\$}
done

echo "== errors are replies too"
session 'GET' 'NOSUCHCOMMAND x'

echo "== clean up"
for key in netcat:motto netcat:session netcat:1 netcat:2 netcat:3; do
    printf '%s %s\n' "$key" "$(call DEL "$key")"
done
