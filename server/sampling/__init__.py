"""What DynamicData (server/data.py) reads besides psutil: mounts, off the
loop; /proc's processes; disk and network counters. data.py and worker.py
stay at the package's top, where the project's layout puts them."""
