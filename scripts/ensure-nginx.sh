#!/usr/bin/env bash
# Prints the path of nginx, for the TLS tests (test/integration/security.test.ts): they put a
# real TLS-terminating gRPC proxy (nginx with grpc_pass and ssl_verify_client on) in front of a
# Temporal dev server. Installs Debian's nginx-light (apt-get, as root) when it is missing; the
# tests start their own nginx with their own config and never touch the system's service.
set -euo pipefail
find_nginx() {
  for p in /usr/sbin/nginx /usr/local/sbin/nginx; do [[ -x "$p" ]] && { echo "$p"; return 0; }; done
  command -v nginx 2>/dev/null
}
if n="$(find_nginx)"; then echo "$n"; exit 0; fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  {
    echo "ttt-curriculum: installing nginx-light (apt-get) for the TLS tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light
  } >&2
  if n="$(find_nginx)"; then echo "$n"; exit 0; fi
fi
echo "ttt-curriculum: nginx is missing and could not be installed: install it (Debian: apt-get install nginx-light) for the TLS tests" >&2
exit 1
