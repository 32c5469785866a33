"""Pilot Console: the whole fleet in a browser.

A separate program beside the agent (`pilot console run`): it subscribes to the broker, keeps the latest state
of every Pilot device in memory and its history in a store (SQLite by default, PostgreSQL for large fleets),
serves a JSON API, live updates over Server-Sent Events and the pages built from `web/`, and sends commands
signed with its own key id on behalf of the signed-in user. It reads the wire through the agent's formats
(`pilot.agent.signing`) and never loads the profile compiler. docs/console.md is the guide.
"""
