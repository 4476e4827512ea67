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
# @param web_workers 0: one process does everything. N: a core process on
#   app_port and N web processes on the next N ports, on a Redis of their own.
# @param queue_password The password of that Redis (needed when web_workers > 0).
# @param tls_cert A certificate (with its chain) on the node: Nginx serves HTTPS
#   on tls_port with it, and sends plain HTTP there.
# @param tls_key Its private key, on the node.
# @param tls_self_signed Make a self-signed pair (the demo); not with tls_cert.
# @param tls_port The HTTPS port.
# @param hsts Send Strict-Transport-Security (off by default: a demo's
#   self-signed name should not be pinned to HTTPS in a browser for a year).
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
  Integer[0, 32] $web_workers = 0,
  Optional[String[16]] $queue_password = undef,
  Optional[Pattern[/\A\//]] $tls_cert = undef,
  Optional[Pattern[/\A\//]] $tls_key = undef,
  Boolean $tls_self_signed = false,
  Integer[1, 65535] $tls_port = 443,
  Boolean $hsts = false,
) {
  # Host metrics and process names are sensitive: no login only on purpose.
  if $password_hash == undef and !$allow_anonymous {
    fail('dashboard: set password_hash (python -m server hash-password) or allow_anonymous => true')
  }

  if $web_workers > 0 and $queue_password == undef {
    fail('dashboard: web_workers needs queue_password (16 characters or more) for its Redis')
  }

  if $tls_self_signed and $tls_cert != undef {
    fail('dashboard: tls_self_signed makes its own pair; leave out tls_cert and tls_key')
  }
  if ($tls_cert == undef) != ($tls_key == undef) {
    fail('dashboard: tls_cert and tls_key go together')
  }
  if $hsts and $tls_cert == undef and !$tls_self_signed {
    fail('dashboard: hsts needs TLS (tls_cert and tls_key, or tls_self_signed)')
  }

  $venv = "${install_dir}/.venv"
  $config_file = '/etc/dashboard/dashboard.toml'
  $queue_port = $app_port + 100
  $message_queue = $web_workers ? {
    0       => undef,
    default => "redis://:${queue_password}@127.0.0.1:${queue_port}/0",
  }
  $main_role = $web_workers ? {
    0       => 'all',
    default => 'core',
  }

  include dashboard::python

  package { 'nginx':
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

  # 0700, as the app keeps them (private_files): a second run changes nothing.
  file { [$log_dir, $data_dir]:
    ensure => directory,
    owner  => $user,
    group  => $user,
    mode   => '0700',
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
    ignore  => ['.git', '.venv', '.vagrant', '.ci', '.cache', '.mypy_cache', '.ruff_cache', '.pytest_cache',
    '.hypothesis', 'node_modules', 'build', 'logs', 'data', 'tests', 'testkit', 'bench', 'docs', '__pycache__', '*.pyc', '*.egg-info'],
  }

  exec { 'dashboard-venv':
    command => "/usr/bin/python3 -m venv ${venv}",
    creates => "${venv}/bin/python",
    require => [Package['python3', 'python3-venv'], File[$install_dir]],
  }

  # The install runs whenever the installed app does not match its source:
  # a marker holds the hash of the source it was installed from, and the venv
  # must import the app and its dependencies. A first run whose pip failed
  # (no network, an index down) fails that run, and the next run tries again;
  # a changed checkout installs again.
  $marker = "${venv}/.installed-from"
  $source_hash = [
    "cd ${install_dir} && find . -path ./.venv -prune -o -type f -print | LC_ALL=C sort",
    "| xargs -d '\\n' sha256sum | sha256sum | cut -d' ' -f1",
  ].join(' ')
  # test -x first: a missing venv is "install", not a check that cannot run (exit 127).
  $imports = "test -x ${venv}/bin/python && cd / && ${venv}/bin/python -c 'import server.app, eventlet, flask_socketio, psutil, orjson'"
  exec { 'dashboard-install':
    command  => "${venv}/bin/pip install --quiet ${install_dir} && (${source_hash}) > ${marker}",
    unless   => "${imports} && test \"$(cat ${marker} 2>/dev/null)\" = \"$(${source_hash})\"",
    provider => shell,
    require  => [File[$install_dir], Exec['dashboard-venv']],
    timeout  => 900,
  }

  # This version's wheel, served to new agents at /agent/install.sh (agent_wheel_dir):
  # built again whenever the install was, by the same marker.
  $wheels = "${data_dir}/agent"
  exec { 'dashboard-agent-wheel':
    command  => [
      "/bin/rm -rf ${wheels} && ${venv}/bin/pip wheel --quiet --no-deps -w ${wheels} ${install_dir}",
      "&& cp ${marker} ${wheels}/.built-from",
    ].join(' '),
    unless   => "test -f ${wheels}/.built-from && cmp -s ${marker} ${wheels}/.built-from",
    provider => shell,
    require  => [Exec['dashboard-install'], File[$data_dir]],
    timeout  => 900,
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
        'message_queue'   => $message_queue,
    }),
  }

  # The unit of the one process (or the core), and of each web process.
  $unit = {
    'install_dir' => $install_dir,
    'user'        => $user,
    'config_file' => $config_file,
    'log_dir'     => $log_dir,
    'data_dir'    => $data_dir,
  }

  file { '/etc/systemd/system/dashboard.service':
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => epp('dashboard/dashboard.service.epp', $unit + { 'role' => $main_role, 'port' => '' }),
  }

  if $web_workers > 0 {
    # Web processes: one systemd instance per port (dashboard-web@5001 ...).
    file { '/etc/systemd/system/dashboard-web@.service':
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      content => epp('dashboard/dashboard.service.epp', $unit + { 'role' => 'web', 'port' => '%i' }),
      notify  => Exec['dashboard-systemd-reload'],
    }

    package { 'redis-server':
      ensure => installed,
    }

    # A Redis of the dashboard's own: loopback only, a password, nothing on disk.
    file { '/etc/dashboard/redis.conf':
      ensure  => file,
      owner   => 'root',
      group   => $user,
      mode    => '0640',
      content => epp('dashboard/redis.conf.epp', {
          'port'     => $queue_port,
          'password' => $queue_password,
      }),
    }

    file { '/etc/systemd/system/dashboard-redis.service':
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      content => epp('dashboard/dashboard-redis.service.epp', { 'user' => $user }),
      notify  => Exec['dashboard-systemd-reload'],
    }

    service { 'dashboard-redis':
      ensure    => running,
      enable    => true,
      require   => [Package['redis-server'], Exec['dashboard-systemd-reload']],
      subscribe => File['/etc/dashboard/redis.conf'],
      before    => Service['dashboard'],
    }

    Integer[1, $web_workers].each |$i| {
      service { "dashboard-web@${$app_port + $i}":
        ensure    => running,
        enable    => true,
        require   => [Exec['dashboard-systemd-reload'], Service['dashboard']],
        subscribe => [Exec['dashboard-install'], File[$config_file]],
      }
    }
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

  if $tls_self_signed {
    $cert = '/etc/dashboard/tls/dashboard.crt'
    $key = '/etc/dashboard/tls/dashboard.key'
    file { '/etc/dashboard/tls':
      ensure => directory,
      owner  => 'root',
      group  => 'root',
      mode   => '0700',
    }
    exec { 'dashboard-self-signed':
      command => [
        '/usr/bin/openssl req -x509 -newkey rsa:2048 -nodes -days 825',
        "-subj '/CN=${server_name}'",
        "-addext 'subjectAltName=DNS:${server_name},DNS:localhost,IP:127.0.0.1'",
        "-keyout ${key} -out ${cert}",
      ].join(' '),
      creates => $cert,
      require => File['/etc/dashboard/tls'],
      before  => Service['nginx'],
    }
  } else {
    $cert = $tls_cert
    $key = $tls_key
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
        'web_workers' => $web_workers,
        'tls_cert'    => $cert,
        'tls_key'     => $key,
        'tls_listen'  => String($tls_port),
        'hsts'        => $hsts,
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
