"""The profile compiler: YAML in, a validated Plan out. Never imported by the agent."""
