#!/usr/bin/env bash
# Render deploy/nginx/dashboard.conf from the Puppet template, with the
# module's defaults. The template is the one source; tests/test_deploy.py
# checks that the committed file is this rendering.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
puppet epp render "$root/deploy/puppet/modules/dashboard/templates/nginx-site.conf.epp" \
    --values "{server_name => 'localhost', listen => '80', app_port => 5000,
               static_dir => '/opt/dashboard/server/static',
               errors_dir => '/opt/dashboard/deploy/nginx/errors'}" \
    > "$root/deploy/nginx/dashboard.conf"
echo "wrote deploy/nginx/dashboard.conf"
