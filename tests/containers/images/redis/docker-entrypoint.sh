#!/bin/sh
# Mimics the official redis image entrypoint: `docker run redis --flag` and
# `docker run redis my.conf` mean redis-server; drops root to user redis.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
    find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
# The official image compiles protected-mode's default to "no"; Debian's is
# "yes". Add "--protected-mode no" unless a given config file sets it.
if [ "$1" = 'redis-server' ]; then
    shift
    if [ -n "${1:-}" ] && [ "${1#-}" = "$1" ]; then
        conf=$1; shift
        if grep -qiE '^[[:space:]]*protected-mode' "$conf" 2>/dev/null; then
            set -- redis-server "$conf" "$@"
        else
            set -- redis-server "$conf" --protected-mode no "$@"
        fi
    else
        set -- redis-server --protected-mode no "$@"
    fi
fi
exec "$@"
