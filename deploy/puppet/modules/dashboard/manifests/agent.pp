# @summary This host's agent, reporting to a dashboard hub: the Puppet way to the
#   same result as the hub's one-line install (/agent/install.sh), healing alike.
#
# @param hub_url The hub's URL as agents reach it: behind the hub's Nginx,
#   https://HUB/agents.
# @param token The agent's token (`python -m server add-agent NAME` on the hub).
# @param token_file Or a file on the node holding it; one of the two.
# @param ca_file The CA that signed the hub's certificate, on the node (a private CA).
# @param source_dir The checkout to install from, as for the hub class.
# @param install_dir Where the agent's code and venv live.
# @param docker Read containers through Docker's socket: the agent joins the docker group.
class dashboard::agent (
  Pattern[/\Ahttps?:\/\/[^\s\/]+/] $hub_url,
  Optional[Sensitive[String[20, 200]]] $token = undef,
  Optional[Pattern[/\A\//]] $token_file = undef,
  Optional[Pattern[/\A\//]] $ca_file = undef,
  Pattern[/\A\//] $source_dir = '/vagrant',
  Pattern[/\A\//] $install_dir = '/opt/dashboard-agent',
  Boolean $docker = false,
) {
  if ($token == undef) == ($token_file == undef) {
    fail('dashboard::agent: give token or token_file, one of the two')
  }

  $user = 'dashboard-agent'
  $venv = "${install_dir}/venv"
  $src = "${install_dir}/src"
  $unit = '/etc/systemd/system/dashboard-agent.service'

  include dashboard::python

  group { $user:
    ensure => present,
    system => true,
  }

  user { $user:
    ensure     => present,
    system     => true,
    gid        => $user,
    home       => '/nonexistent',
    managehome => false,
    shell      => '/usr/sbin/nologin',
    require    => Group[$user],
  }

  file { '/etc/dashboard-agent':
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0700',
  }

  file { $install_dir:
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }

  # Read by systemd (LoadCredential), handed to the agent alone: never in the unit.
  $token_content = $token ? {
    undef   => undef,
    default => Sensitive("${token.unwrap}\n"),
  }
  file { '/etc/dashboard-agent/token':
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0600',
    content => $token_content,
    source  => $token_file,
    notify  => Service['dashboard-agent'],
  }

  if $ca_file != undef {
    file { "${install_dir}/hub-ca.pem":
      ensure => file,
      source => $ca_file,
      owner  => 'root',
      group  => 'root',
      mode   => '0644',
      notify => Service['dashboard-agent'],
    }
  }

  # Built from a copy: pip writes its build files beside the source.
  file { $src:
    ensure  => directory,
    source  => $source_dir,
    recurse => true,
    purge   => false,
    owner   => 'root',
    group   => 'root',
    ignore  => ['.git', '.venv', '.vagrant', '.ci', '.cache', '.mypy_cache', '.ruff_cache', '.pytest_cache',
    '.hypothesis', 'node_modules', 'build', 'logs', 'data', 'tests', 'testkit', 'bench', 'docs', '__pycache__', '*.pyc', '*.egg-info'],
  }

  exec { 'dashboard-agent-venv':
    command => "/usr/bin/python3 -m venv ${venv}",
    creates => "${venv}/bin/python",
    require => [Package['python3', 'python3-venv'], File[$install_dir]],
  }

  # As the hub's install: again whenever the venv does not import the agent or its
  # source changed; a run whose pip failed fails, and the next tries again.
  $marker = "${venv}/.installed-from"
  $source_hash = [
    "cd ${src} && find . -type f -print | LC_ALL=C sort",
    "| xargs -d '\\n' sha256sum | sha256sum | cut -d' ' -f1",
  ].join(' ')
  $imports = "test -x ${venv}/bin/python && cd / && ${venv}/bin/python -c 'import server.fleet.agent, psutil, socketio'"
  exec { 'dashboard-agent-install':
    command  => "${venv}/bin/pip install --quiet ${src} && (${source_hash}) > ${marker}",
    unless   => "${imports} && test \"$(cat ${marker} 2>/dev/null)\" = \"$(${source_hash})\"",
    provider => shell,
    require  => [File[$src], Exec['dashboard-agent-venv']],
    timeout  => 900,
  }

  file { $unit:
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => epp('dashboard/dashboard-agent.service.epp', {
        'install_dir' => $install_dir,
        'hub_url'     => $hub_url,
        'ca'          => $ca_file != undef,
        'docker'      => $docker,
    }),
  }

  exec { 'dashboard-agent-systemd-reload':
    command     => '/bin/systemctl daemon-reload',
    refreshonly => true,
    subscribe   => File[$unit],
  }

  service { 'dashboard-agent':
    ensure    => running,
    enable    => true,
    require   => [Exec['dashboard-agent-systemd-reload'], User[$user]],
    subscribe => [Exec['dashboard-agent-install'], File[$unit]],
  }
}
