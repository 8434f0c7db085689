#!/bin/sh
# Slim version of the official nginx entrypoint: for `nginx ...` commands,
# render /etc/nginx/templates/*.template with envsubst (only variables that
# are set are replaced) into /etc/nginx/conf.d, then run /docker-entrypoint.d/*.sh.
set -e
if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
    tdir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
    suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
    odir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
    if [ -d "$tdir" ]; then
        filter="${NGINX_ENVSUBST_FILTER:-}"
        defined_envs=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" < /dev/null ))
        find "$tdir" -follow -type f -name "*$suffix" -print | while read -r template; do
            rel="${template#"$tdir/"}"
            out="$odir/${rel%"$suffix"}"
            mkdir -p "$(dirname "$out")"
            envsubst "$defined_envs" < "$template" > "$out"
        done
    fi
    for f in /docker-entrypoint.d/*.sh; do
        if [ -x "$f" ]; then "$f"; fi
    done
fi
exec "$@"
