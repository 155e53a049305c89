"""Docker's engine drives netbay: the libnetwork remote NetworkDriver and IpamDriver that
netbayd serves on its own socket (NETBAY_DOCKER_PLUGIN, /run/docker/plugins/netbay.sock).
docs/docker-plugin.md says what is supported and what Docker calls."""
