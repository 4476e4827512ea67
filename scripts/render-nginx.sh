#!/usr/bin/env bash
# Render deploy/nginx/dashboard.conf from the Puppet template, with the
# module's defaults. The template is the one source; tests/test_deploy.py
# checks that the committed file is this rendering.
# dashboard-scaled.conf: the same with web_workers => 2 (a core and two web
# processes on a message queue).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
values="server_name => 'localhost', listen => '80', app_port => 5000,
        static_dir => '/opt/dashboard/server/static',
        errors_dir => '/opt/dashboard/deploy/nginx/errors'"
template="$root/deploy/puppet/modules/dashboard/templates/nginx-site.conf.epp"
puppet epp render "$template" --values "{$values}" > "$root/deploy/nginx/dashboard.conf"
puppet epp render "$template" --values "{$values, web_workers => 2}" \
    > "$root/deploy/nginx/dashboard-scaled.conf"
echo "wrote deploy/nginx/dashboard.conf and dashboard-scaled.conf"
