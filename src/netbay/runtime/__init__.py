"""Lightweight containers: a process in its own network, UTS and mount namespaces."""
