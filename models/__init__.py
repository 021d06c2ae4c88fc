"""Architecture presets (TOML). Installed as the package edgekd.presets."""
