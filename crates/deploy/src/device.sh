#!/bin/sh
# Edgewise's device side. `edge-deploy` sends this script over SSH to the
# device's /bin/sh (`sh -s -- COMMAND ARGS...`, every argument quoted) and
# reads what it prints. Layout under the service folder DIR:
#   releases/<id>/   one folder per release (a bundle, unpacked)
#   current          symbolic link to releases/<id>, switched atomically
#   inbox/           the images the service watches
#   run/, log/       pid and log of the service where systemd is absent
# Exit codes: 0 done; 3 cannot write; 4 not enough space; 10 a checksum
# failed (nothing changed); 11 the new release failed its health check and
# the previous one runs again; 12 it failed and nothing could be restored.
set -u

fail() {
    code=$1
    shift
    echo "edgewise: $*" >&2
    exit "$code"
}

# systemd where the device runs it, else a pid file (containers, Buildroot).
service_mode() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        echo systemd
    else
        echo pidfile
    fi
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    else
        sudo -n "$@" || fail 3 "\`$*\` needs root: allow $(id -un) passwordless sudo for systemctl, or push as root"
    fi
}

# prepare DIR ID BYTES: make room for release ID (BYTES archive + unpacked),
# clear half-finished uploads; print `present` when the release is already
# on the device (nothing to upload), else `absent`.
prepare() {
    dir=$1 id=$2 bytes=$3
    mkdir -p "$dir/releases" "$dir/inbox" 2>/dev/null ||
        fail 3 "cannot create $dir/releases: let $(id -un) write to $dir"
    rm -rf "$dir/releases/.incoming-"*
    if [ -d "$dir/releases/$id" ] && (cd "$dir/releases/$id" && sha256sum -c --quiet SHA256SUMS >/dev/null 2>&1); then
        echo present
        return
    fi
    rm -rf "$dir/releases/$id"
    need_kib=$((bytes / 1024 + 1024))
    free_kib=$(df -Pk "$dir/releases" | awk 'NR == 2 { print $4 }')
    [ "$free_kib" -ge "$need_kib" ] ||
        fail 4 "$dir has $((free_kib / 1024)) MiB free; release $id needs about $((need_kib / 1024)) MiB: free some space on the device and push again"
    echo absent
}

switch_to() { # switch_to DIR TARGET: point DIR/current at TARGET, atomically
    rm -f "$1/.current.new"
    ln -s "$2" "$1/.current.new" && mv -T "$1/.current.new" "$1/current"
}

stop_pidfile() {
    pidfile="$1/run/edgewise.pid"
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        n=0
        while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do
            sleep 0.2
            n=$((n + 1))
        done
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

restart() { # restart DIR: (re)start the service on DIR/current
    if [ "$(service_mode)" = systemd ]; then
        as_root cp "$1/current/edgewise.service" /etc/systemd/system/edgewise.service &&
            as_root systemctl daemon-reload &&
            as_root systemctl enable --quiet edgewise.service &&
            as_root systemctl restart edgewise.service
    else
        stop_pidfile "$1"
        mkdir -p "$1/run" "$1/log"
        nohup "$1/current/run.sh" serve >>"$1/log/edgewise.log" 2>&1 </dev/null &
        echo $! >"$1/run/edgewise.pid"
    fi
}

active() { # active DIR: is the service running?
    if [ "$(service_mode)" = systemd ]; then
        systemctl is-active --quiet edgewise.service
    else
        [ -f "$1/run/edgewise.pid" ] && kill -0 "$(cat "$1/run/edgewise.pid")" 2>/dev/null
    fi
}

healthy() { # healthy DIR SETTLE: still running after SETTLE s, and the self-test passes
    sleep "$2"
    if ! active "$1"; then
        echo "edgewise: the service is not running $2 s after its start" >&2
        [ -f "$1/log/edgewise.log" ] && tail -n 5 "$1/log/edgewise.log" >&2
        return 1
    fi
    "$1/current/run.sh" self-test >&2
}

# activate DIR ID SHA256 KEEP SETTLE: check and unpack the uploaded release
# ID, make it current, restart the service and check its health; roll back to
# the previous release if anything fails; keep the KEEP newest releases.
activate() {
    dir=$1 id=$2 sha=$3 keep=$4 settle=$5
    cd "$dir/releases" || fail 3 "$dir/releases is missing"
    incoming=".incoming-$id"
    if [ -f "$incoming.tar.gz" ]; then
        got=$(sha256sum "$incoming.tar.gz" | cut -d ' ' -f 1)
        if [ "$got" != "$sha" ]; then
            rm -f "$incoming.tar.gz"
            fail 10 "the upload of $id is corrupt (SHA-256 $got on the device, $sha sent); nothing changed: push again"
        fi
        mkdir "$incoming" && tar -xzf "$incoming.tar.gz" -C "$incoming" 2>&1 >&2 || {
            rm -rf "$incoming" "$incoming.tar.gz"
            fail 4 "cannot unpack release $id in $dir/releases (is the disk full?); nothing changed"
        }
        rm -f "$incoming.tar.gz"
        if ! (cd "$incoming/$id" 2>/dev/null && sha256sum -c --quiet SHA256SUMS >&2 2>&1); then
            rm -rf "$incoming"
            fail 10 "release $id does not match its SHA256SUMS: the bundle is corrupt; nothing changed"
        fi
        mv "$incoming/$id" "$id" && rmdir "$incoming" || fail 3 "cannot move release $id into place"
    elif ! [ -d "$id" ]; then
        fail 3 "release $id was not uploaded"
    fi
    previous=$(readlink "$dir/current" 2>/dev/null)
    switch_to "$dir" "releases/$id" || fail 3 "cannot switch $dir/current to release $id"
    touch "$id"
    if restart "$dir" && healthy "$dir" "$settle"; then
        n=0
        for old in $(ls -1t); do
            n=$((n + 1))
            if [ $n -gt "$keep" ] && [ "$old" != "$id" ] && [ "releases/$old" != "$previous" ]; then
                rm -rf "$old" && echo "removed $old"
            fi
        done
        echo "active $id"
        exit 0
    fi
    if [ -z "$previous" ] || [ "$previous" = "releases/$id" ]; then
        fail 12 "release $id failed its health check and there is no earlier release to go back to"
    fi
    switch_to "$dir" "$previous" || fail 12 "release $id failed its health check and $dir/current could not be switched back"
    if restart "$dir" && healthy "$dir" "$settle"; then
        rm -rf "$id"
        fail 11 "release $id failed its health check; rolled back to ${previous#releases/}, which runs"
    fi
    fail 12 "release $id failed its health check, and ${previous#releases/} did not come back healthy either"
}

status() { # status DIR
    current=$(readlink "$1/current" 2>/dev/null) || fail 3 "no release in $1"
    if active "$1"; then state=active; else state=inactive; fi
    echo "current ${current#releases/} $state"
}

bench() { # bench DIR ARGS...: edge-bench on the current release, JSON on stdout
    dir=$1
    shift
    release="$dir/current"
    image=$(ls -1 "$release/selftest" | grep -v '\.jsonl$' | head -n 1)
    exec ${EDGEWISE_EXEC_PREFIX:-} "$release/bin/edge-bench" "$release/model/model.toml" \
        --image "$release/selftest/$image" --format json "$@"
}

command=$1
shift
case "$command" in
prepare | activate | status | bench) "$command" "$@" ;;
*) fail 2 "unknown command $command" ;;
esac
