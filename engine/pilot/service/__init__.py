"""Installing Pilot as a service: systemd units, polkit rules, the Windows service."""
