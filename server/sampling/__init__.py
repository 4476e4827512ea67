"""Everything that reads this machine: one module per collector, each of the
shape declared in collector.py (a name, read(), its null part, a success flag).

host.py: the static facts (StaticData). cpu.py: CPU busy share. memory.py:
memory and swap. disks.py: filesystems' usage, read off the loop by the
prober in mounts.py (which also reads the mount table). counters.py: disk
I/O and network rates. load.py: load averages and uptime. processes.py: the
busiest processes. server/data.py only assembles: StaticData from host.py,
DynamicData's sample from its list of collectors. data.py and worker.py stay
at the package's top, where the project's layout puts them.
"""
