"""Podman's netavark interface: the executable (netavark.py, standard library only) and the
daemon's side of it (options, service). Importing this package imports nothing else."""
