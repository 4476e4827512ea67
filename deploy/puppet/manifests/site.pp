# The demo VM: the dashboard behind Nginx on port 80 (Vagrant forwards 8080).
# The checkout to install comes from the dashboard_source fact, /vagrant by default.
$install_source = $facts['dashboard_source'] ? {
  undef   => '/vagrant',
  default => $facts['dashboard_source'],
}

node default {
  class { 'dashboard':
    source_dir      => $install_source,
    server_name     => 'localhost',
    listen_port     => 80,
    # The demo VM only: open without a login, reachable from this machine alone
    # (Vagrant forwards 127.0.0.1:8080). A real server sets password_hash.
    allow_anonymous => true,
  }
}
