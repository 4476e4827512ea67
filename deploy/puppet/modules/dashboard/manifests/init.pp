# @summary The live host dashboard behind Nginx, run by systemd.
#
# @param install_dir Where the app's source and its venv live.
# @param source_dir The checkout to install from (the Vagrant share in the demo).
# @param user The system user the app runs as.
# @param app_port The app's port on 127.0.0.1, behind Nginx.
# @param server_name The Host name Nginx answers to; any other Host is refused.
# @param listen_port The port Nginx listens on.
# @param log_dir The directory of the app's rotated logs.
# @param data_dir The app's writable data directory.
# @param password_hash The login password's hash (`python -m server hash-password`).
# @param allow_anonymous Serve without a login; only for a demo, on purpose.
class dashboard (
  Pattern[/\A\//] $install_dir = '/opt/dashboard',
  Pattern[/\A\//] $source_dir = '/vagrant',
  String[1] $user = 'dashboard',
  Integer[1, 65535] $app_port = 5000,
  String[1] $server_name = 'localhost',
  Integer[1, 65535] $listen_port = 80,
  Pattern[/\A\//] $log_dir = '/var/log/dashboard',
  Pattern[/\A\//] $data_dir = '/var/lib/dashboard',
  Optional[Pattern[/\A(scrypt|pbkdf2):/]] $password_hash = undef,
  Boolean $allow_anonymous = false,
) {
  # Host metrics and process names are sensitive: no login only on purpose.
  if $password_hash == undef and !$allow_anonymous {
    fail('dashboard: set password_hash (python -m server hash-password) or allow_anonymous => true')
  }

  $venv = "${install_dir}/.venv"
  $config_file = '/etc/dashboard/dashboard.toml'

  package { ['python3', 'python3-venv', 'nginx']:
    ensure => installed,
  }

  group { $user:
    ensure => present,
    system => true,
  }

  user { $user:
    ensure     => present,
    system     => true,
    gid        => $user,
    home       => $data_dir,
    managehome => false,
    shell      => '/usr/sbin/nologin',
    require    => Group[$user],
  }

  file { [$log_dir, $data_dir]:
    ensure => directory,
    owner  => $user,
    group  => $user,
    mode   => '0750',
  }

  # The code is root's; the service user can read it but not change it.
  file { $install_dir:
    ensure  => directory,
    source  => $source_dir,
    recurse => true,
    purge   => false,
    owner   => 'root',
    group   => 'root',
    # The app, its packaging and the error page; not the tests or the VM's state.
    ignore  => ['.git', '.venv', '.vagrant', '.ci', 'logs', 'data', 'tests', 'bench', 'docs',
    '__pycache__', '*.pyc', '*.egg-info'],
  }

  exec { 'dashboard-venv':
    command => "/usr/bin/python3 -m venv ${venv}",
    creates => "${venv}/bin/python",
    require => [Package['python3', 'python3-venv'], File[$install_dir]],
  }

  exec { 'dashboard-install':
    command     => "${venv}/bin/pip install --quiet ${install_dir}",
    refreshonly => true,
    subscribe   => [File[$install_dir], Exec['dashboard-venv']],
    timeout     => 900,
  }

  file { '/etc/dashboard':
    ensure => directory,
    owner  => 'root',
    group  => $user,
    mode   => '0750',
  }

  file { $config_file:
    ensure  => file,
    owner   => 'root',
    group   => $user,
    mode    => '0640',
    content => epp('dashboard/dashboard.toml.epp', {
        'app_port'        => $app_port,
        'log_dir'         => $log_dir,
        'log_config'      => "${install_dir}/logging.conf",
        'data_dir'        => $data_dir,
        'server_name'     => $server_name,
        'password_hash'   => $password_hash,
        'allow_anonymous' => $allow_anonymous,
    }),
  }

  file { '/etc/systemd/system/dashboard.service':
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => epp('dashboard/dashboard.service.epp', {
        'install_dir' => $install_dir,
        'user'        => $user,
        'config_file' => $config_file,
        'log_dir'     => $log_dir,
        'data_dir'    => $data_dir,
    }),
  }

  exec { 'dashboard-systemd-reload':
    command     => '/bin/systemctl daemon-reload',
    refreshonly => true,
    subscribe   => File['/etc/systemd/system/dashboard.service'],
  }

  service { 'dashboard':
    ensure    => running,
    enable    => true,
    require   => [Exec['dashboard-systemd-reload'], File[$log_dir, $data_dir], User[$user]],
    subscribe => [Exec['dashboard-install'], File[$config_file]],
  }

  file { '/etc/nginx/sites-available/dashboard':
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => epp('dashboard/nginx-site.conf.epp', {
        'server_name' => $server_name,
        'listen'      => String($listen_port),
        'app_port'    => $app_port,
        'static_dir'  => "${install_dir}/server/static",
        'errors_dir'  => "${install_dir}/deploy/nginx/errors",
    }),
    require => Package['nginx'],
  }

  file { '/etc/nginx/sites-enabled/dashboard':
    ensure  => link,
    target  => '/etc/nginx/sites-available/dashboard',
    require => File['/etc/nginx/sites-available/dashboard'],
  }

  # Debian's default site also claims default_server on port 80.
  file { '/etc/nginx/sites-enabled/default':
    ensure  => absent,
    require => Package['nginx'],
  }

  service { 'nginx':
    ensure    => running,
    enable    => true,
    subscribe => File['/etc/nginx/sites-enabled/dashboard', '/etc/nginx/sites-enabled/default',
    '/etc/nginx/sites-available/dashboard'],
  }
}
