# The demo VM: the dashboard behind Nginx on port 80 (Vagrant forwards 8080).
# Facts (FACTER_<name> in the environment) change the demo without editing it:
#   dashboard_source  the checkout to install (/vagrant)
#   dashboard_port    Nginx's port (80); the booted-guest test shares the host's network
#   dashboard_app_port  the app's port on 127.0.0.1 (5000)
#   dashboard_tls     "self-signed": HTTPS on dashboard_tls_port (443) with a generated pair
#   dashboard_web_workers, dashboard_queue_password  a core and N web processes on Redis
$install_source = $facts['dashboard_source'].lest || { '/vagrant' }
$listen_port = Integer($facts['dashboard_port'].lest || { '80' })
$app_port = Integer($facts['dashboard_app_port'].lest || { '5000' })
$tls = $facts['dashboard_tls'] == 'self-signed'
$web_workers = Integer($facts['dashboard_web_workers'].lest || { '0' })

node default {
  class { 'dashboard':
    source_dir      => $install_source,
    server_name     => 'localhost',
    listen_port     => $listen_port,
    app_port        => $app_port,
    tls_self_signed => $tls,
    tls_port        => Integer($facts['dashboard_tls_port'].lest || { '443' }),
    web_workers     => $web_workers,
    queue_password  => $facts['dashboard_queue_password'],
    # The demo VM only: open without a login, reachable from this machine alone
    # (Vagrant forwards 127.0.0.1:8080). A real server sets password_hash.
    allow_anonymous => true,
  }
}
