"""The long-running agent: runs a Plan over MQTT. Never imports the profile compiler."""
