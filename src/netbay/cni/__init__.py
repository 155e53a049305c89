"""CNI: the plugin executables (plugin.py, standard library only) and the daemon's side of
them (config, results, service). Importing this package imports nothing else."""
