"""amf-lab: a real kvm-amf cluster on one machine, for hands-on use, tests and fault injection.

Every host is a set of Linux namespaces with its own Corosync, libvirt daemon and amfd; the hosts
share a cluster network, service networks (VLAN-capable) joined in a client namespace that probes
the services, and the machine's file system as shared storage. See docs/lab.md.
"""
