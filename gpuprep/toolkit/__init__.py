"""The NVIDIA container toolkit as a Docker host uses it: its version against NVIDIA's security bulletins, its
runtime's mode (config.toml), the CDI specifications it writes, the /dev/char links legacy mode needs; the
install steps, seal step and doctor checks that keep those right."""
