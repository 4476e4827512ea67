# @summary Debian's Python and venv, for the hub and the agent alike (a node may have both).
class dashboard::python {
  package { ['python3', 'python3-venv']:
    ensure => installed,
  }
}
