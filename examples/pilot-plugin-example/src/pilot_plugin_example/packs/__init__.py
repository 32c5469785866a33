"""The folder of this plugin's packs: each sub-folder is one pack (pack.yaml plus its profiles)."""
