# The demo VM: the dashboard behind Nginx on port 80 (Vagrant forwards 8080).
# The checkout to install comes from the dashboard_source fact, /vagrant by default.
$install_source = $facts['dashboard_source'] ? {
  undef   => '/vagrant',
  default => $facts['dashboard_source'],
}

node default {
  class { 'dashboard':
    source_dir  => $install_source,
    server_name => 'localhost',
    listen_port => 80,
  }
}
