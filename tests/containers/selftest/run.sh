#!/usr/bin/env bash
# End-to-end proof of the stand: build + up --wait (service_healthy chain),
# requests from the host to published ports, DNS between services (also for a
# service with 2 replicas), down -v leaves nothing behind.
# Prints "selftest: N passed, M failed"; exit status 0 only if all passed.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAND="$HERE/../stand.sh"
PROJECT=chatlimit-stand-selftest
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# published host ports: free ones unless given (others' servers share the machine)
SELFTEST_WEB_PORT="${SELFTEST_WEB_PORT:-$(free_port)}"
SELFTEST_PROXY_PORT="${SELFTEST_PROXY_PORT:-$(free_port)}"
export SELFTEST_WEB_PORT SELFTEST_PROXY_PORT
passed=0 failed=0
check() {  # check NAME CMD...
    local name=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   - $name"
    else failed=$((failed + 1)); echo "FAIL - $name"; fi
}
compose() { "$STAND" compose -f "$HERE/compose.yaml" "$@"; }
pm() { "$STAND" podman "$@"; }
secs() { awk "BEGIN{printf \"%.1f\", $2 - $1}"; }

up()            { compose up -d --build --wait --wait-timeout 180; }
host_web()      { curl -fsS --max-time 5 "http://127.0.0.1:$SELFTEST_WEB_PORT/" | grep -q 'Directory listing'; }
host_proxy()    { curl -fsS --max-time 5 "http://127.0.0.1:$SELFTEST_PROXY_PORT/" | grep -q 'Directory listing'; }
web_to_redis()  { compose exec -T web python -c "import redis; assert redis.Redis(host='redis').ping()"; }
web_user()      { [ "$(compose exec -T web id -un)" = app ]; }
replica_dns()   { [ "$(compose exec -T proxy getent ahostsv4 replica | awk '{print $1}' | sort -u | wc -l)" = 2 ]; }
all_healthy()   { [ "$(pm ps -q --filter label=com.docker.compose.project=$PROJECT --filter health=healthy | wc -l)" = 3 ]; }
down()          { compose down -v --remove-orphans; }
no_containers() { [ -z "$(pm ps -aq --filter label=com.docker.compose.project=$PROJECT)" ]; }
no_networks()   { ! pm network ls --format '{{.Name}}' | grep -q "^$PROJECT"; }
no_volumes()    { [ -z "$(pm volume ls -q)" ]; }

"$STAND" prepare || exit 1
"$STAND" engine-start >/dev/null || exit 1

t0=$(date +%s.%N)
check "compose up -d --build --wait" up
t1=$(date +%s.%N)
echo "# up --wait took $(secs "$t0" "$t1") s"
compose ps
check "host -> web published port" host_web
check "host -> nginx -> web (service DNS)" host_proxy
check "web -> redis by service name (redis-py from PyPI)" web_to_redis
check "web runs as non-root user 'app' (useradd)" web_user
check "service with 2 replicas resolves to 2 addresses" replica_dns
check "redis, web, proxy report healthy" all_healthy
t2=$(date +%s.%N)
check "compose down -v" down
t3=$(date +%s.%N)
echo "# down -v took $(secs "$t2" "$t3") s"
check "no containers left" no_containers
check "no networks left" no_networks
check "no volumes left" no_volumes

echo "selftest: $passed passed, $failed failed"
[ "$failed" = 0 ]
