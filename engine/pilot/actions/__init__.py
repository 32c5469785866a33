"""Built-in actions: platform operations that commands, rules and schedules run.

Each action is registered on ACTIONS like a probe (see pilot.probes), with the
privilege it needs and a dry-run form. Profiles may declare only commands whose
action exists here; the first actions arrive with the command path.
"""
